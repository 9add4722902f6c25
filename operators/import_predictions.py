"""Operator ``import_predictions``: a model's class probabilities (and masks) from a file,
stored in the plugin's one prediction format."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator

#: this operator's defaults: the form's, execute's and the SDK's
DEFAULTS = {**I.DEFAULTS, "field": "predictions_imported", "key": "auto", "strict": False}

KEY_LABELS = {
    "auto": "Detect from the columns (the first of the choices below the file has)",
    "sop_instance_uid": "sop_instance_uid (+ frame, 0-based, for multi-frame files)",
    "dicom_key": "dicom_key (<SOPInstanceUID>:<frame>)",
    "filepath": "filepath column: a sample's image or DICOM path",
    "path": "path column: a sample's image or DICOM path",
}


class ImportPredictions(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="import_predictions",
            risk_level=types.RiskLevel.MEDIUM,
            label="Import model predictions",
            description=(
                "Add a model's class probabilities (CSV or JSON) and optional masks to a "
                "prediction field, matched by SOPInstanceUID and frame or by path; bad "
                "rows are reported by line"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        from multireader.ingest.prediction_import import KEYS

        inputs = types.Object()
        schema = _common.label_schema_or_warning(
            inputs, ctx, "Predictions are stored in the order of the schema's classes"
        )
        if not schema:
            return types.Property(inputs)
        classes = schema["classes"]
        inputs.str(
            "path",
            label="Predictions file",
            description=(
                "CSV: a key column, then one column per class named <class>, p_<class> "
                f"or prob_<class> ({', '.join(classes)}). JSON: a list of objects with "
                "the key and probabilities: {class: p}. Leave empty to import masks only"
            ),
        )
        inputs.str(
            "field",
            default=DEFAULTS["field"],
            label="Predictions field",
            description="Where the predictions go (never a reader's or consensus field)",
        )
        inputs.str(
            "masks",
            required=False,
            label="Mask manifest (optional)",
            description=(
                "CSV with the same key column and mask_path (PNG or NPY of class values, "
                "the image's rows x columns); stored in <field>_mask"
            ),
        )
        key = types.Dropdown(label="Match samples by")
        for choice in KEYS:
            key.add_choice(choice, label=KEY_LABELS.get(choice, choice))
        inputs.enum(
            "key",
            list(KEYS),
            default=DEFAULTS["key"],
            label="Match samples by",
            description="Paths may be absolute or relative to the file's folder",
            view=key,
        )
        inputs.bool(
            "strict",
            default=DEFAULTS["strict"],
            label="Strict",
            description=(
                "Write nothing if any row is bad (default: skip bad rows, report them "
                "by line, import the rest)"
            ),
            view=types.CheckboxView(),
        )
        I.target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Import model predictions"))

    def execute(self, ctx):
        from multireader.core import fields
        from multireader.ingest.prediction_import import import_predictions

        result = import_predictions(
            I.target_view(ctx),
            ctx.params.get("path") or None,
            ctx.params.get("field") or DEFAULTS["field"],
            key=ctx.params.get("key") or DEFAULTS["key"],
            masks=ctx.params.get("masks") or None,
            strict=bool(I.value(ctx, "strict", DEFAULTS)),
            progress=_common.progress_for(ctx),
        )
        fields.update_sidebar_groups(ctx.dataset)
        self.reload(ctx)
        return result

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("field", label="Predictions written to")
        outputs.int("imported", label="Predictions imported")
        outputs.int("n_without_prediction", label="Samples without a prediction (left empty)")
        outputs.str("mask_field", label="Masks written to")
        outputs.int("masks_imported", label="Masks imported")
        outputs.int("n_skipped", label="Rows skipped")
        _common.table(
            outputs,
            "skipped",
            "Rows skipped, and why (everything else was imported)",
            {"line": "Line", "key": "Key", "reason": "Reason", "file": "File"},
        )
        return types.Property(outputs, view=types.View(label="Imported predictions"))

    def __call__(
        self,
        sample_collection,
        path,
        field: str = DEFAULTS["field"],
        *,
        masks=None,
        key: str = DEFAULTS["key"],
        strict: bool = DEFAULTS["strict"],
        delegate: bool = DEFAULTS["delegate"],
    ):
        """Import predictions into a dataset or view from the SDK; returns the result
        dict (or the queued operation when ``delegate=True``)."""
        return self.run_sdk_with(locals())
