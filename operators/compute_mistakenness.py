"""Operator ``compute_mistakenness``: how strongly the model contests each reader's
label (and consensus), and a ranked queue of the likeliest label errors."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator

#: this operator's defaults: the form's, execute's and the SDK's
DEFAULTS = {**I.DEFAULTS, "run_key": "mistakenness", "queue_size": 50}


def prediction_field_input(inputs: types.Object, dataset, kind: str = "classification"):
    """A dropdown of the prediction fields, or a warning saying how to make one."""
    from multireader.core.predictions import prediction_fields

    found = sorted(prediction_fields(dataset, kind))
    if not found:
        if kind == "classification":
            inputs.view(
                "no_predictions",
                types.Warning(
                    label="No predictions yet",
                    description=(
                        "Run 'Fit label model' (no download needed), 'Zero-shot classify' "
                        "or 'Import model predictions' first"
                    ),
                ),
            )
        return None
    choice = types.Dropdown()
    for name in found:
        choice.add_choice(name, label=name)
    name = "pred_field" if kind == "classification" else "pred_mask_field"
    default = "predictions_label_model" if "predictions_label_model" in found else found[0]
    if kind == "classification":
        inputs.enum(name, found, default=default, label="Predictions", view=choice)
    else:
        inputs.enum(
            name,
            found,
            default=None,
            label="Predicted masks (optional)",
            description="Scores each reader's mask by 1 - Dice against it",
            view=choice,
        )
    return default


class ComputeMistakenness(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_mistakenness",
            risk_level=types.RiskLevel.LOW,
            label="Compute mistakenness (label errors)",
            description=(
                "Score every reader's label, and consensus, by how strongly the model and "
                "the other readers contest it; rank the likeliest label errors for re-reading"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if prediction_field_input(inputs, ctx.dataset) is None:
            return types.Property(inputs, view=types.View(label="Compute mistakenness"))
        prediction_field_input(inputs, ctx.dataset, kind="mask")
        I.reader_choices_input(
            inputs,
            ctx.dataset,
            kinds=["classification"],
            description="Whose labels to score (all by default)",
        )
        inputs.int(
            "queue_size",
            default=DEFAULTS["queue_size"],
            label="Queue size",
            description="How many of the least credible labels the saved view label_error_queue holds",
        )
        I.run_key_input(inputs, ctx, "mistakenness", DEFAULTS["run_key"])
        I.target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Compute mistakenness"))

    def execute(self, ctx):
        from multireader.analyses import label_errors
        from multireader.core import fields

        result = label_errors.compute_mistakenness(
            I.target_view(ctx),
            ctx.params.get("pred_field") or None,
            readers=ctx.params.get("readers") or None,
            pred_mask_field=ctx.params.get("pred_mask_field") or None,
            queue_size=int(ctx.params.get("queue_size") or DEFAULTS["queue_size"]),
            run_key=I.run_key_param(ctx, DEFAULTS["run_key"]),
            progress=_common.progress_for(ctx),
        )
        fields.update_sidebar_groups(ctx.dataset)
        self.reload(ctx)
        if not ctx.delegated:
            ctx.ops.set_view(name=label_errors.QUEUE_VIEW)
        return result.summary()

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("queue_view", label="Saved view of the re-read queue (now open)")
        outputs.int("n_in_queue", label="Samples in the queue")
        _common.table(
            outputs,
            "reader_rows",
            "Per reader",
            {
                "reader": "Reader",
                "n_labels": "Labels",
                "n_model_disagrees": "Model disagrees",
                "n_in_queue": "In queue",
                "mean_label_quality": "Mean label quality",
                "weight": "CROWDLAB weight",
                "view": "Saved view",
            },
        )
        outputs.list("fields", types.String(), label="Fields written")
        return types.Property(outputs, view=types.View(label="Mistakenness"))

    def __call__(
        self,
        sample_collection,
        pred_field: str | None = None,
        *,
        readers: list[str] | None = None,
        pred_mask_field: str | None = None,
        queue_size: int = DEFAULTS["queue_size"],
        run_key: str = DEFAULTS["run_key"],
        delegate: bool = DEFAULTS["delegate"],
    ):
        """Score labels from the SDK on a dataset or view; returns the summary dict."""
        return self.run_sdk_with(locals())
