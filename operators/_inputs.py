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


def target_input(
    inputs: types.Object,
    default: str = DEFAULTS["target"],
    current_label: str = "Current view",
) -> None:
    """The "whole dataset or current view" choice of operators that work on samples."""
    target = types.RadioGroup()
    target.add_choice("DATASET", label="Whole dataset")
    target.add_choice("CURRENT_VIEW", label=current_label)
    inputs.enum("target", target.values(), default=default, label="Samples", view=target)


def target_view(ctx, default: str = DEFAULTS["target"]):
    """The samples the user chose with :func:`target_input`."""
    return ctx.dataset if value(ctx, "target", {"target": default}) == "DATASET" else ctx.view


def analysis_target_input(inputs: types.Object) -> None:
    """:func:`target_input` of the analyses: the current view by default."""
    target_input(inputs, default=ANALYSIS_TARGET, current_label="Current view (e.g. one scanner)")


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
