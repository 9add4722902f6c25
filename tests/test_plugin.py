"""The plugin loads through FiftyOne's own loader with no errors, and lists everything."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _declared(kind):
    with open(os.path.join(ROOT, "fiftyone.yml")) as f:
        text = f.read()
    block = re.search(rf"^{kind}:\s*\n((?:\s+- .*\n)+)", text, re.M)
    return set(re.findall(r"- (\w+)", block.group(1))) if block else set()


@pytest.fixture(scope="module")
def registry():
    import fiftyone as fo
    import fiftyone.plugins as fop
    from fiftyone.operators.registry import OperatorRegistry

    old = fo.config.plugins_dir
    fo.config.plugins_dir = ROOT
    try:
        assert "@multireader/disagreement" in [p.name for p in fop.list_plugins(enabled=True)]
        yield OperatorRegistry()
    finally:
        fo.config.plugins_dir = old


def test_plugin_loads_without_errors(registry):
    assert registry.list_errors() == []


def test_every_operator_and_panel_is_listed_and_registered(registry):
    from operators import OPERATORS
    from panels import PANELS

    declared_ops, declared_panels = _declared("operators"), _declared("panels")
    uris = {op.uri for op in registry.list_operators()}
    names = {cls().config.name for cls in OPERATORS}
    assert names == declared_ops
    assert {cls().config.name for cls in PANELS} == declared_panels
    for name in declared_ops | declared_panels:
        assert f"@multireader/disagreement/{name}" in uris, name


def test_operators_reachable_from_sdk(registry):
    import fiftyone.operators as foo

    for name in _declared("operators"):
        op = foo.get_operator(f"@multireader/disagreement/{name}")
        assert callable(op), name
