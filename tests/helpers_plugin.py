"""The plugin's operators by name, as the SDK reaches them (the conftest points FiftyOne's
plugins directory at this repository for every test)."""

PLUGIN = "@multireader/disagreement"


def op(name: str):
    """The registered operator ``name`` of this plugin, callable with SDK keyword arguments."""
    import fiftyone.operators as foo

    return foo.get_operator(f"{PLUGIN}/{name}")
