"""Operator ``import_measurements``: RECIST calipers into one field per reader."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator

#: this operator's defaults: the form's, execute's and the SDK's
DEFAULTS = {**I.DEFAULTS, "kind": "auto", "tolerance_mm": 0.5, "tolerance_fraction": 0.02}

KIND_CHOICES = {
    "auto": "Detect: .csv/.tsv/.json are tables, anything else DICOM SR",
    "table": (
        "Table (CSV/JSON): reader, sop_instance_uid (+ frame) / series_instance_uid / "
        "study_instance_uid, lesion_id, long_axis_mm, short_axis_mm, target, site, "
        "new_lesion, optional lymph_node, timepoint, x1, y1, x2, y2 (pixels)"
    ),
    "sr": "DICOM SR measurement reports (TID 1500): one file or a folder",
}

#: rejected rows returned to the App (the full list stays in the library's report)
MAX_ERRORS = 50


class ImportMeasurements(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="import_measurements",
            risk_level=types.RiskLevel.MEDIUM,
            label="Import measurements",
            description=(
                "Add RECIST lesion measurements (tables or DICOM SR) to each reader's "
                "reader_<id>_measurements field, with baseline/follow-up timepoints; bad "
                "rows are reported by line"
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
            label="Measurements",
            description=(
                "Path of a CSV/JSON measurements table, a DICOM SR measurement report "
                "(TID 1500), or a folder of SR files"
            ),
        )
        kind = types.Dropdown(label="Kind")
        for key, label in KIND_CHOICES.items():
            kind.add_choice(key, label=label)
        inputs.enum(
            "kind", kind.values(), default=DEFAULTS["kind"], label="What it holds", view=kind
        )
        inputs.str(
            "reader",
            required=False,
            label="Reader id",
            description=(
                "Tables: fills empty reader cells, rejects rows naming someone else. SR: "
                "replaces the observer the report names (e.g. with a pseudonym)"
            ),
        )
        inputs.float(
            "tolerance_mm",
            default=DEFAULTS["tolerance_mm"],
            min=0.0,
            label="Length tolerance (mm)",
            description=(
                "A length agrees with its caliper endpoints within max(this, the "
                "fraction below x the caliper length)"
            ),
        )
        inputs.float(
            "tolerance_fraction",
            default=DEFAULTS["tolerance_fraction"],
            min=0.0,
            max=1.0,
            label="Length tolerance (fraction)",
        )
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Import measurements"))

    def execute(self, ctx):
        from multireader.core import fields
        from multireader.ingest import measurements

        report = measurements.import_measurements(
            ctx.dataset,
            ctx.params["source"],
            kind=ctx.params.get("kind") or DEFAULTS["kind"],
            reader=(ctx.params.get("reader") or None),
            tolerance_mm=float(I.value(ctx, "tolerance_mm", DEFAULTS)),
            tolerance_fraction=float(I.value(ctx, "tolerance_fraction", DEFAULTS)),
            progress=_common.progress_for(ctx),
        )
        fields.update_sidebar_groups(ctx.dataset)
        self.reload(ctx)
        return {
            "n_rows": report.n_rows,
            "n_measurements": report.n_labels,
            "counts": dict(report.counts),
            "fields": list(report.fields),
            "n_files": len(report.files),
            "n_errors": len(report.errors),
            "errors": [_json_row(e) for e in report.errors[:MAX_ERRORS]],
            "n_warnings": len(report.warnings),
            "timepoints": dict(report.timepoints),
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("n_measurements", label="Measurements written")
        outputs.int("n_errors", label="Rows rejected")
        outputs.list("fields", types.String(), label="Measurement fields written")
        _common.table(
            outputs,
            "errors",
            f"Rows rejected, and why (first {MAX_ERRORS}; nothing else was dropped)",
            {"line": "Line", "source": "File", "reason": "Reason"},
        )
        return types.Property(outputs, view=types.View(label="Measurements"))

    def __call__(
        self,
        dataset,
        source,
        *,
        kind: str = DEFAULTS["kind"],
        reader: str | None = None,
        tolerance_mm: float = DEFAULTS["tolerance_mm"],
        tolerance_fraction: float = DEFAULTS["tolerance_fraction"],
        delegate: bool = DEFAULTS["delegate"],
    ):
        """Import RECIST measurements from the SDK; returns a small JSON-safe summary.

        ``source``: a CSV/JSON table, a DICOM SR measurement report or a folder of them.
        The result holds the counts, the fields written, the first 50 rejected rows
        (``{"line", "source", "reason"}``) and how timepoints were assigned; with
        ``delegate=True`` the queued operation instead."""
        return self.run_sdk(
            dataset,
            delegate,
            source=source,
            kind=kind,
            reader=reader,
            tolerance_mm=tolerance_mm,
            tolerance_fraction=tolerance_fraction,
        )


def _json_row(error: dict) -> dict:
    line = error.get("line")
    return {
        "line": line if isinstance(line, int) else None,
        "source": str(error.get("source") or ""),
        "reason": str(error.get("reason") or ""),
    }
