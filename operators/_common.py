"""Helpers shared by the thin operator classes: progress and result tables.

The operator base class is :mod:`operators._base`; shared form inputs and their
defaults are :mod:`operators._inputs`.
"""

from __future__ import annotations

import fiftyone.operators.types as types


def current_dataset(ctx):
    """``ctx.dataset``, or None when the request names a dataset that does not exist yet
    (an agent asking ``import_dicom`` to create it: the MCP server always sends a name)."""
    from fiftyone.core.dataset import DatasetNotFoundError

    try:
        return ctx.dataset
    except DatasetNotFoundError:
        return None


def progress_for(ctx):
    """A ``progress(fraction, message)`` callback that reports through ``ctx``."""

    def _progress(fraction: float, message: str) -> None:
        ctx.set_progress(progress=fraction, label=message)

    return _progress


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
