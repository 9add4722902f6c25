"""Operator ``import_reader_labels``: one label field per radiologist, never fused."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common

KIND_CHOICES = {
    "auto": "Detect from the file (columns, or the DICOM modality)",
    "classification": "Class reads (CSV/JSON): key, reader, label, score, ...",
    "boxes": "Boxes in pixels (CSV/JSON): key, reader, label, x, y, width, height",
    "masks": "Mask manifest (CSV/JSON): key, reader, mask_path (PNG or NPY)",
    "seg": "DICOM-SEG file (one reader)",
    "rtstruct": "RTSTRUCT file (one reader); contours are rasterised",
}


class ImportReaderLabels(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="import_reader_labels",
            label="Import reader labels",
            description=(
                "Add each radiologist's reads to their own reader_<id> field; "
                "a missing read stays missing, bad rows are reported by line"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if ctx.dataset is None:
            inputs.view(
                "no_dataset",
                types.Warning(label="Open a dataset imported with Import DICOM first"),
            )
            return types.Property(inputs)
        inputs.str(
            "source",
            required=True,
            label="Reads file",
            description=(
                "Path of a CSV or JSON reads table, a mask manifest, a DICOM-SEG "
                "or an RTSTRUCT file. Keys: sop_instance_uid (+ frame), "
                "series_instance_uid, or filepath"
            ),
        )
        kind = types.Dropdown(label="Kind")
        for key, label in KIND_CHOICES.items():
            kind.add_choice(key, label=label)
        inputs.enum(
            "kind",
            kind.values(),
            default="auto",
            label="What the file holds",
            view=kind,
        )
        inputs.str(
            "reader",
            required=False,
            label="Reader id",
            description=(
                "Required for DICOM-SEG and RTSTRUCT (who drew it); tables "
                "name the reader on every row"
            ),
        )
        schema = _label_schema(ctx.dataset)
        if schema:
            inputs.view(
                "schema_notice",
                types.Notice(
                    label=f"Labels are validated against: {', '.join(schema.get('classes') or [])}"
                ),
            )
        _common.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Import reader labels"))

    def resolve_delegation(self, ctx):
        return _common.resolve_delegation(ctx)

    def execute(self, ctx):
        from multireader.core import fields
        from multireader.ingest import readers

        report = readers.import_reader_labels(
            ctx.dataset,
            ctx.params["source"],
            kind=ctx.params.get("kind") or "auto",
            reader=(ctx.params.get("reader") or None),
            progress=_common.progress_for(ctx),
        )
        fields.update_sidebar_groups(ctx.dataset)
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return report.to_dict()

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("n_labels", label="Labels written")
        outputs.list("fields", types.String(), label="Reader fields written")
        _common.table(
            outputs,
            "errors",
            "Rows rejected, and why (nothing else was dropped)",
            {"line": "Line", "source": "File", "reason": "Reason"},
        )
        return types.Property(outputs, view=types.View(label="Reader labels"))

    def __call__(
        self,
        dataset,
        source,
        *,
        kind: str = "auto",
        reader: str | None = None,
        delegate: bool = False,
    ):
        """Import reader labels from the SDK; returns the import report as a dict."""
        params = dict(source=str(source), kind=kind, reader=reader)
        return _common.run_from_sdk(self, dataset, params, delegate=delegate)


def _label_schema(dataset):
    from multireader.core import schema

    return schema.get_label_schema(dataset)
