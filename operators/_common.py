"""Helpers shared by the thin operator classes: delegation, progress, SDK calls."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

PLUGIN = "@multireader/disagreement"


def uri(name: str) -> str:
    return f"{PLUGIN}/{name}"


def progress_for(ctx):
    """A ``progress(fraction, message)`` callback that reports through ``ctx``."""

    def _progress(fraction: float, message: str) -> None:
        ctx.set_progress(progress=fraction, label=message)

    return _progress


def delegation_input(inputs: types.Object) -> None:
    """The "run in the background" choice every long operator offers."""
    inputs.bool(
        "delegate",
        default=False,
        label="Delegate",
        description=(
            "Queue this as a delegated operation and run it with "
            "`fiftyone delegated launch` (recommended for large studies)"
        ),
        view=types.CheckboxView(),
    )


def target_input(
    inputs: types.Object, default: str = "DATASET", current_label: str = "Current view"
) -> None:
    """The "whole dataset or current view" choice of operators that work on samples."""
    target = types.RadioGroup()
    target.add_choice("DATASET", label="Whole dataset")
    target.add_choice("CURRENT_VIEW", label=current_label)
    inputs.enum("target", target.values(), default=default, label="Samples", view=target)


def target_view(ctx, default: str = "DATASET"):
    """The samples the user chose with :func:`target_input`."""
    return ctx.dataset if ctx.params.get("target", default) == "DATASET" else ctx.view


def resolve_delegation(ctx):
    # None lets the App offer both "Execute" and "Schedule"
    return ctx.params.get("delegate", None)


def run_from_sdk(operator: foo.Operator, sample_collection, params: dict, delegate: bool = False):
    """Run ``operator`` from the SDK through FiftyOne's executor, as the App would.

    Returns the dict the operator's ``execute`` returned, or the queued delegated
    operation when ``delegate=True``.
    """
    if isinstance(sample_collection, str):
        sample_collection = fo.load_dataset(sample_collection)
    ctx = {"view": sample_collection.view(), "params": {**params, "delegate": delegate}}
    return foo.execute_operator(operator.uri, ctx).result


def table(outputs: types.Object, name: str, label: str, columns: dict[str, str]) -> None:
    """Declare a read-only table output, e.g. the list of skipped files."""
    view = types.TableView(label=label)
    for key, col_label in columns.items():
        view.add_column(key, label=col_label)
    outputs.list(name, types.Object(), view=view)


def label_schema_or_warning(inputs: types.Object, ctx, why: str) -> dict | None:
    """The dataset's label schema, or a warning in the form saying to declare it first
    (``why``: what the operator needs the classes for)."""
    from multireader.core.schema import get_label_schema

    schema = get_label_schema(ctx.dataset) if ctx.dataset is not None else None
    if not schema:
        inputs.view(
            "no_schema",
            types.Warning(
                label="Declare the label schema first",
                description=f"{why}: run 'Declare label schema'",
            ),
        )
    return schema or None
