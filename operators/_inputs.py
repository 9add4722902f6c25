"""Form inputs the operators share, and their defaults, each defined once.

:data:`DEFAULTS` is read by the forms (``default=``), by ``execute`` (:func:`value`, for
a parameter the caller left unset) and by the ``__call__`` signatures, so the App, the
operator browser and the SDK cannot drift apart.
"""

from __future__ import annotations

import fiftyone.operators.types as types

DEFAULTS = {
    "target": "DATASET",
    "level": 0.95,
    "n_boot": 1000,
    "by_patient": True,
    "alpha": 0.05,
    "window": "auto",
    "batch_size": 32,
    "delegate": False,
}

#: analyses follow the App's current view, so agreement on one scanner is a filter away
ANALYSIS_TARGET = "CURRENT_VIEW"


def value(ctx, name: str, defaults: dict = DEFAULTS):
    """``ctx.params[name]``, or ``defaults[name]`` when the caller left it unset (None).

    An operator with defaults of its own passes its mapping, ``{**DEFAULTS, ...}``.
    """
    given = ctx.params.get(name)
    return defaults[name] if given is None else given


def warning_form(
    inputs: types.Object, form_label: str, label: str, description: str | None = None
) -> types.Property:
    """The form, ending on a warning that says what to do first."""
    inputs.view("none", types.Warning(label=label, description=description))
    return types.Property(inputs, view=types.View(label=form_label))


def no_reader_fields(inputs: types.Object, form_label: str) -> types.Property:
    return warning_form(
        inputs,
        form_label,
        "No reader fields",
        "Import reader labels first (Import reader labels)",
    )


def delegation_input(inputs: types.Object) -> None:
    """The "run in the background" choice every long operator offers."""
    inputs.bool(
        "delegate",
        default=DEFAULTS["delegate"],
        label="Delegate",
        description=(
            "Queue this as a delegated operation and run it with "
            "`fiftyone delegated launch` (recommended for large studies)"
        ),
        view=types.CheckboxView(),
    )


#: the "Samples" choices; SAVED_VIEW and TAG need no App, so an agent or a script that has
#: only a dataset name and params can still work on part of a dataset
TARGETS = {
    "DATASET": "Whole dataset",
    "CURRENT_VIEW": "Current view",
    "SAVED_VIEW": "A saved view (param saved_view)",
    "TAG": "Samples with a tag (param tag)",
}


def chosen_target(params: dict, default: str = DEFAULTS["target"]) -> str:
    """The target the params ask for: ``target`` if given, else SAVED_VIEW when only
    ``saved_view`` is given, TAG when only ``tag`` is, else ``default``."""
    given = params.get("target")
    if given is not None:
        return given
    if params.get("saved_view"):
        return "SAVED_VIEW"
    if params.get("tag"):
        return "TAG"
    return default


def _target_error(dataset, params: dict, default: str) -> tuple[str, str] | None:
    """(param, message) of what is wrong with the target params, or None."""
    target = chosen_target(params, default)
    if target not in TARGETS:
        return "target", f"target must be one of {', '.join(TARGETS)}, not {target!r}"
    for name, needs in (("saved_view", "SAVED_VIEW"), ("tag", "TAG")):
        if params.get(name) and target != needs:
            return name, f"{name} is only used with target {needs!r} (target is {target!r})"
    if dataset is None:
        return None
    if target == "SAVED_VIEW":
        name = params.get("saved_view")
        if not name:
            return "saved_view", "target 'SAVED_VIEW' needs saved_view, the name of a saved view"
        names = dataset.list_saved_views()
        if name not in names:
            return "saved_view", (
                f"no saved view {name!r} on dataset {dataset.name!r}; its saved views: "
                f"{', '.join(names) or 'none'}"
            )
    if target == "TAG":
        tag = params.get("tag")
        if not tag:
            return "tag", "target 'TAG' needs tag, a sample tag"
        tags = sorted(dataset.distinct("tags"))
        if tag not in tags:
            return "tag", (
                f"no sample of dataset {dataset.name!r} is tagged {tag!r}; its sample tags: "
                f"{', '.join(tags) or 'none'}"
            )
    return None


def target_input(
    inputs: types.Object,
    default: str = DEFAULTS["target"],
    current_label: str = TARGETS["CURRENT_VIEW"],
    ctx=None,
) -> None:
    """The "Samples" choice of operators that work on samples: the whole dataset, the
    current view, a saved view (``saved_view``) or the samples with a tag (``tag``).

    With ``ctx`` the form shows the saved view or tag field the choice needs and marks a
    wrong one invalid with a message naming the param, so the executor refuses it
    before ``execute``; :func:`target_view` checks the same again.
    """
    target = types.RadioGroup()
    for key, label in {**TARGETS, "CURRENT_VIEW": current_label}.items():
        target.add_choice(key, label=label)
    target_prop = inputs.enum(
        "target",
        target.values(),
        default=default,
        label="Samples",
        description=(
            "Without the App (an agent, a script) there is no current view: use the whole "
            "dataset, a saved view (saved_view) or a sample tag (tag)"
        ),
        view=target,
    )
    params = dict(ctx.params or {}) if ctx is not None else {}
    dataset = ctx.dataset if ctx is not None else None
    chosen = chosen_target(params, default)
    props = {}
    if chosen == "SAVED_VIEW" or params.get("saved_view"):
        names = dataset.list_saved_views() if dataset is not None else []
        choice = types.AutocompleteView()
        for n in names:
            choice.add_choice(n, label=n)
        props["saved_view"] = inputs.str(
            "saved_view",
            required=chosen == "SAVED_VIEW",
            label="Saved view",
            description=f"Saved views: {', '.join(names) or 'none'}",
            view=choice,
        )
    if chosen == "TAG" or params.get("tag"):
        tags = sorted(dataset.distinct("tags")) if dataset is not None else []
        choice = types.AutocompleteView()
        for t in tags:
            choice.add_choice(t, label=t)
        props["tag"] = inputs.str(
            "tag",
            required=chosen == "TAG",
            label="Sample tag",
            description=f"Sample tags: {', '.join(tags) or 'none'}",
            view=choice,
        )
    error = _target_error(dataset, params, default) if ctx is not None else None
    if error is not None:
        name, message = error
        prop = target_prop if name == "target" else props[name]
        prop.invalid, prop.error_message = True, f"parameter {name}: {message}"


def target_view(ctx, default: str = DEFAULTS["target"]):
    """The samples the params choose (see :func:`target_input`); raises
    :class:`multireader.errors.MultireaderError` naming the param that is wrong."""
    from multireader.errors import MultireaderError

    params = dict(ctx.params or {})
    error = _target_error(ctx.dataset, params, default)
    if error is not None:
        raise MultireaderError(f"parameter {error[0]}: {error[1]}")
    target = chosen_target(params, default)
    if target == "DATASET":
        return ctx.dataset
    if target == "SAVED_VIEW":
        return ctx.dataset.load_saved_view(params["saved_view"])
    if target == "TAG":
        return ctx.dataset.match_tags(params["tag"])
    return ctx.view


def analysis_target_input(inputs: types.Object, ctx=None) -> None:
    """:func:`target_input` of the analyses: the current view by default."""
    target_input(
        inputs, default=ANALYSIS_TARGET, current_label="Current view (e.g. one scanner)", ctx=ctx
    )


def analysis_target_view(ctx):
    return target_view(ctx, default=ANALYSIS_TARGET)


def reader_choices_input(
    inputs: types.Object,
    dataset,
    kinds=None,
    name: str = "readers",
    description: str | None = None,
) -> list:
    """Multi-select of the readers found in the dataset's reader fields (default: all)."""
    from multireader.core import fields

    found = sorted({str(m["reader"]) for m in fields.reader_fields(dataset, kinds=kinds).values()})
    choices = types.Dropdown(multiple=True)
    for r in found:
        choices.add_choice(r, label=r)
    inputs.list(
        name,
        types.String(),
        default=found,
        label="Readers",
        description=description
        or f"Found in this dataset's reader fields: {', '.join(found) or 'none'}",
        view=choices,
    )
    return found


def level_input(inputs: types.Object) -> None:
    inputs.float(
        "level",
        default=DEFAULTS["level"],
        min=0.5,
        max=0.999,
        label="Confidence level",
        description="Percentile bootstrap intervals at this level",
    )


def n_boot_input(inputs: types.Object, **kwargs) -> None:
    """Bootstrap resamples; ``kwargs`` (``label=``, ``min=``) refine the field."""
    inputs.int("n_boot", default=DEFAULTS["n_boot"], **{"label": "Bootstrap resamples", **kwargs})


def by_patient_input(inputs: types.Object) -> None:
    inputs.bool(
        "by_patient",
        default=DEFAULTS["by_patient"],
        label="Resample patients",
        description="Bootstrap over patients (patient_key) rather than images",
        view=types.CheckboxView(),
    )


def alpha_input(inputs: types.Object, description: str) -> None:
    """The significance level of an operator's tests (``description``: which tests)."""
    inputs.float(
        "alpha",
        default=DEFAULTS["alpha"],
        min=0.0001,
        max=0.5,
        label="Significance level",
        description=description,
    )


def run_key_input(
    inputs: types.Object,
    ctx,
    kind: str | None,
    default: str | None,
    description: str | None = None,
    name: str = "run_key",
    label: str = "Run key",
) -> str | None:
    """The run key field, checked as the user types (as FiftyOne's brain operators check
    brain keys). A key that is not an identifier, or one that holds another kind of run,
    is an error in the form; one that holds a ``kind`` run is a warning, since storing
    the run replaces it (``kind=None``: nothing is replaced, every taken key is an
    error). Returns the key when it can be used, else None.
    """
    from multireader.core import runs

    prop = inputs.str(name, default=default, required=True, label=label, description=description)
    given = ctx.params.get(name)
    key = default if given is None else str(given).strip()
    if not key:
        return None  # the required field says so
    try:
        runs.check_key(key)
    except runs.RunError as e:
        prop.invalid, prop.error_message = True, str(e)
        return None
    dataset = ctx.dataset
    if dataset is None or not dataset.has_run(key):
        return key
    method = dataset.get_run_info(key).config.method
    if kind is None:
        prop.invalid, prop.error_message = True, f"run key {key!r} is taken"
        return None
    if method != runs.method_name(kind):
        prop.invalid = True
        prop.error_message = f"run key {key!r} already holds a {method!r} run; choose another key"
        return None
    inputs.view(
        f"{name}_exists",
        types.Warning(
            label=f"Run {key!r} exists and will be replaced",
            description="Choose another run key to keep it",
        ),
    )
    return key


def run_key_param(ctx, default: str | None) -> str | None:
    """The run key ``execute`` stores under: the form's (stripped), else ``default``;
    raises :class:`multireader.core.runs.RunError` naming the parameter if it is invalid."""
    from multireader.core import runs

    given = ctx.params.get("run_key")
    key = (str(given).strip() if given is not None else "") or default
    if key is None:
        return None
    try:
        return runs.check_key(key)
    except runs.RunError as e:
        raise runs.RunError(f"parameter run_key: {e}") from e
