"""Operator ``compute_mistakenness``: how strongly the model contests each reader's
label (and consensus), and a ranked queue of the likeliest label errors."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common


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


class ComputeMistakenness(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_mistakenness",
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
        from multireader.core.fields import reader_fields

        inputs = types.Object()
        if prediction_field_input(inputs, ctx.dataset) is None:
            return types.Property(inputs, view=types.View(label="Compute mistakenness"))
        prediction_field_input(inputs, ctx.dataset, kind="mask")
        readers = sorted(
            {str(m["reader"]) for m in reader_fields(ctx.dataset, ["classification"]).values()}
        )
        pick = types.Dropdown(multiple=True)
        for r in readers:
            pick.add_choice(r, label=r)
        inputs.list(
            "readers",
            types.String(),
            default=readers,
            label="Readers",
            description="Whose labels to score (all by default)",
            view=pick,
        )
        inputs.int(
            "queue_size",
            default=50,
            label="Queue size",
            description="How many of the least credible labels the saved view label_error_queue holds",
        )
        inputs.str("run_key", default="mistakenness", label="Run key")
        _common.target_input(inputs)
        _common.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Compute mistakenness"))

    def resolve_delegation(self, ctx):
        return _common.resolve_delegation(ctx)

    def execute(self, ctx):
        from multireader.core import fields
        from multireader.analyses import label_errors

        result = label_errors.compute_mistakenness(
            _common.target_view(ctx),
            ctx.params.get("pred_field") or None,
            readers=ctx.params.get("readers") or None,
            pred_mask_field=ctx.params.get("pred_mask_field") or None,
            queue_size=int(ctx.params.get("queue_size") or 50),
            run_key=ctx.params.get("run_key") or "mistakenness",
            progress=_common.progress_for(ctx),
        )
        fields.update_sidebar_groups(ctx.dataset)
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
            ctx.ops.set_view(name=label_errors.QUEUE_VIEW)
        return {
            "run_key": result["run_key"],
            "queue_view": result["queue"]["view"],
            "n_in_queue": result["queue"]["n"],
            "reader_rows": [
                {
                    "reader": r,
                    "n_labels": v["n_labels"],
                    "n_model_disagrees": v["n_model_disagrees"],
                    "n_in_queue": v["n_in_queue"],
                    "mean_label_quality": _round(v["mean_label_quality"]),
                    "weight": _round(v["weight"]),
                    "view": v["queue_view"],
                }
                for r, v in result["readers"].items()
            ],
            "fields": result["fields"],
        }

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
        queue_size: int = 50,
        run_key: str = "mistakenness",
        delegate: bool = False,
    ):
        """Score labels from the SDK on a dataset or view; returns the summary dict."""
        params = dict(
            pred_field=pred_field,
            readers=readers,
            pred_mask_field=pred_mask_field,
            queue_size=queue_size,
            run_key=run_key,
            target="CURRENT_VIEW",
        )
        return _common.run_from_sdk(self, sample_collection, params, delegate=delegate)


def _round(v):
    return None if v is None else round(float(v), 3)
