"""Operator ``import_reader_labels``: one label field per radiologist, never fused."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator

#: this operator's defaults: the form's, execute's and the SDK's
DEFAULTS = {**I.DEFAULTS, "kind": "auto", "overwrite": False}

KIND_CHOICES = {
    "auto": "Detect from the file (columns, or the DICOM modality)",
    "classification": "Class reads (CSV/JSON): key, reader, label, score, ...",
    "boxes": "Boxes in pixels (CSV/JSON): key, reader, label, x, y, width, height",
    "masks": "Mask manifest (CSV/JSON): key, reader, mask_path (PNG or NPY)",
    "seg": "DICOM-SEG file (one reader)",
    "rtstruct": "RTSTRUCT file (one reader); contours are rasterised",
    "volume": (
        "3-D volumes (NIfTI/NRRD): one .nii/.nii.gz/.nrrd/.nhdr file, or a manifest "
        "(CSV/JSON): reader, series_instance_uid, volume_path"
    ),
}

#: key columns a table may be forced to use (the library's ``key=``)
KEY_CHOICES = {
    "sop_instance_uid": "sop_instance_uid (+ frame)",
    "series_instance_uid": "series_instance_uid (+ slice_index)",
    "filepath": "filepath (the sample's render)",
    "path": "path (the source DICOM file, absolute or relative to the table)",
}

#: most series offered as choices for a single label volume
_MAX_SERIES_CHOICES = 1000


class ImportReaderLabels(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="import_reader_labels",
            risk_level=types.RiskLevel.MEDIUM,
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
                "or an RTSTRUCT file, or a 3-D label volume (NIfTI/NRRD) or a manifest "
                "of them. Keys: sop_instance_uid (+ frame), series_instance_uid, or "
                "filepath"
            ),
        )
        kind = types.Dropdown(label="Kind")
        for key, label in KIND_CHOICES.items():
            kind.add_choice(key, label=label)
        inputs.enum(
            "kind",
            kind.values(),
            default=DEFAULTS["kind"],
            label="What the file holds",
            view=kind,
        )
        inputs.str(
            "reader",
            required=False,
            label="Reader id",
            description=(
                "Required for DICOM-SEG, RTSTRUCT and a single label volume (who "
                "drew it); tables name the reader on every row"
            ),
        )
        _key_inputs(inputs)
        if _is_volume(ctx.params):
            _volume_inputs(inputs, ctx)
        schema = _label_schema(ctx.dataset)
        if schema:
            inputs.view(
                "schema_notice",
                types.Notice(
                    label=f"Labels are validated against: {', '.join(schema.get('classes') or [])}"
                ),
            )
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Import reader labels"))

    def execute(self, ctx):
        from multireader.core import fields
        from multireader.ingest import readers

        report = readers.import_reader_labels(
            ctx.dataset,
            ctx.params["source"],
            kind=ctx.params.get("kind") or DEFAULTS["kind"],
            reader=(ctx.params.get("reader") or None),
            key=(ctx.params.get("key") or None),
            mask_dir=(ctx.params.get("mask_dir") or None),
            series_instance_uid=(ctx.params.get("series_instance_uid") or None),
            overwrite=bool(I.value(ctx, "overwrite", DEFAULTS)),
            progress=_common.progress_for(ctx),
        )
        fields.update_sidebar_groups(ctx.dataset)
        self.reload(ctx)
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
        kind: str = DEFAULTS["kind"],
        reader: str | None = None,
        key: str | None = None,
        mask_dir: str | None = None,
        series_instance_uid: str | None = None,
        overwrite: bool = DEFAULTS["overwrite"],
        delegate: bool = DEFAULTS["delegate"],
    ):
        """Import reader labels from the SDK; returns the import report as a dict.

        ``key`` forces one key column of a table (see :data:`KEY_CHOICES`) instead of
        the first non-empty one per row; ``mask_dir`` is where mask PNGs are written
        (default: ``masks/<reader>/`` beside the dataset's renders).

        ``series_instance_uid`` and ``overwrite`` apply to 3-D label volumes (kind
        ``volume``): the series a single NIfTI/NRRD was drawn on, and whether it may
        replace the reader's existing masks on that series."""
        return self.run_sdk(
            dataset,
            delegate,
            source=source,
            kind=kind,
            reader=reader,
            key=key,
            mask_dir=None if mask_dir is None else str(mask_dir),
            # a pydicom UID is a str subclass, which the form's validation refuses
            series_instance_uid=None if series_instance_uid is None else str(series_instance_uid),
            overwrite=overwrite,
        )


def _is_volume(params) -> bool:
    from multireader.ingest import readers

    kind = params.get("kind") or DEFAULTS["kind"]
    return kind == "volume" or (
        kind == "auto" and readers.is_volume_path(params.get("source") or "")
    )


def _key_inputs(inputs: types.Object) -> None:
    """The table's key column and where masks are written (the library's options)."""
    choices = types.Dropdown(label="Key column")
    for value, label in KEY_CHOICES.items():
        choices.add_choice(value, label=label)
    inputs.enum(
        "key",
        choices.values(),
        required=False,
        label="Key column",
        description=(
            "Force one key column for every row of a table (default: the first "
            "non-empty one of each row)"
        ),
        view=choices,
    )
    inputs.str(
        "mask_dir",
        required=False,
        label="Mask folder",
        description="Where mask PNGs are written (default: masks/<reader>/ beside the renders)",
    )


def _volume_inputs(inputs: types.Object, ctx) -> None:
    """Which series a single volume was drawn on, and whether it may replace masks."""
    from multireader.core import fields
    from multireader.ingest import readers

    series = []
    if fields.SERIES_UID in ctx.dataset.get_field_schema():
        series = [s for s in ctx.dataset.distinct(fields.SERIES_UID) if s]
    single = readers.is_volume_path(ctx.params.get("source") or "")
    view = None
    if 0 < len(series) <= _MAX_SERIES_CHOICES:
        view = types.AutocompleteView()
        for uid in series:
            view.add_choice(uid, label=uid)
    inputs.str(
        "series_instance_uid",
        required=single,
        label="Series instance UID",
        description=(
            "The series the volume was drawn on (a single NIfTI/NRRD file does not say); "
            "a manifest names it on every row"
        ),
        view=view,
    )
    inputs.bool(
        "overwrite",
        default=DEFAULTS["overwrite"],
        label="Replace existing masks",
        description=(
            "Replace the reader's masks on a series that already has some; otherwise "
            "that volume is refused and reported (never replaced silently)"
        ),
        view=types.CheckboxView(),
    )


def _label_schema(dataset):
    from multireader.core import schema

    return schema.get_label_schema(dataset)
