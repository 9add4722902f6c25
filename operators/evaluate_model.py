"""Operator ``evaluate_model``: the model against consensus and each reader, on contested
and uncontested samples and on every slice, with patient-bootstrap CIs."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from .compute_mistakenness import prediction_field_input


class EvaluateModel(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="evaluate_model",
            label="Evaluate model on contested cases and slices",
            description=(
                "Accuracy and kappa of a predictions field against consensus and each "
                "reader: contested vs uncontested samples, and per scanner, sex, age..."
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        from multireader.analyses.model_eval import DEFAULT_SLICES

        inputs = types.Object()
        if prediction_field_input(inputs, ctx.dataset) is None:
            return types.Property(inputs, view=types.View(label="Evaluate model"))
        schema = ctx.dataset.get_field_schema()
        candidates = sorted(
            n
            for n, f in schema.items()
            if type(f).__name__ in ("StringField", "BooleanField", "IntField", "FloatField")
            and not n.startswith(("label_quality_", "mistakenness_", "quality_", "filepath"))
        )
        pick = types.Dropdown(multiple=True)
        for n in candidates:
            pick.add_choice(n, label=n)
        inputs.list(
            "slice_fields",
            types.String(),
            default=[s for s in DEFAULT_SLICES if s in schema],
            label="Slice by",
            description="Numeric fields with many values are split into quartiles",
            view=pick,
        )
        inputs.float(
            "contested_share",
            default=0.75,
            label="Contested when no class holds this share of the reads",
            description="0.75: with four readers, no three agreed",
        )
        inputs.int("n_boot", default=1000, label="Bootstrap resamples (by patient)")
        inputs.str("run_key", default="model_evaluation", label="Run key")
        _common.target_input(inputs)
        _common.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Evaluate model"))

    def resolve_delegation(self, ctx):
        return _common.resolve_delegation(ctx)

    def execute(self, ctx):
        from multireader.analyses import model_eval

        result = model_eval.evaluate_predictions(
            _common.target_view(ctx),
            ctx.params.get("pred_field") or None,
            slice_fields=ctx.params.get("slice_fields"),
            contested_share=float(ctx.params.get("contested_share") or 0.75),
            n_boot=int(ctx.params.get("n_boot") or 1000),
            run_key=ctx.params.get("run_key") or "model_evaluation",
            progress=_common.progress_for(ctx),
        )
        return {
            "run_key": result["run_key"],
            "headline": result["headline"],
            "n_contested": result["n_contested"],
            "rows": model_eval.summary_rows(result),
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("headline", label="On the disputed cases")
        outputs.int("n_contested", label="Contested samples")
        _common.table(
            outputs,
            "rows",
            "Model against each reference (95% CIs)",
            {
                "reference": "Reference",
                "subset": "Samples",
                "n": "n",
                "accuracy": "Accuracy",
                "kappa": "Kappa",
                "kappa_quadratic": "Quadratic kappa",
            },
        )
        outputs.str("run_key", label="Stored as run")
        return types.Property(outputs, view=types.View(label="Model evaluation"))

    def __call__(
        self,
        sample_collection,
        pred_field: str | None = None,
        *,
        slice_fields: list[str] | None = None,
        contested_share: float = 0.75,
        n_boot: int = 1000,
        run_key: str = "model_evaluation",
        delegate: bool = False,
    ):
        """Evaluate from the SDK on a dataset or view; returns headline and rows."""
        params = dict(
            pred_field=pred_field,
            slice_fields=slice_fields,
            contested_share=contested_share,
            n_boot=n_boot,
            run_key=run_key,
            target="CURRENT_VIEW",
        )
        return _common.run_from_sdk(self, sample_collection, params, delegate=delegate)
