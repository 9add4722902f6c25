"""Operator ``evaluate_model``: the model against consensus and each reader, on contested
and uncontested samples and on every slice, with patient-bootstrap CIs."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator
from .compute_mistakenness import prediction_field_input

#: this operator's defaults: the form's, execute's and the SDK's
DEFAULTS = {**I.DEFAULTS, "run_key": "model_evaluation", "contested_share": 0.75}


class EvaluateModel(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="evaluate_model",
            risk_level=types.RiskLevel.LOW,
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
            default=DEFAULTS["contested_share"],
            label="Contested when no class holds this share of the reads",
            description="0.75: with four readers, no three agreed",
        )
        I.n_boot_input(inputs, label="Bootstrap resamples (by patient)")
        I.run_key_input(inputs, ctx, "model_evaluation", DEFAULTS["run_key"])
        I.target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Evaluate model"))

    def execute(self, ctx):
        from multireader.analyses import model_eval

        result = model_eval.evaluate_predictions(
            I.target_view(ctx),
            ctx.params.get("pred_field") or None,
            slice_fields=ctx.params.get("slice_fields"),
            contested_share=float(ctx.params.get("contested_share") or DEFAULTS["contested_share"]),
            n_boot=int(ctx.params.get("n_boot") or DEFAULTS["n_boot"]),
            run_key=I.run_key_param(ctx, DEFAULTS["run_key"]),
            progress=_common.progress_for(ctx),
        )
        return result.summary()

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
        _common.table(
            outputs,
            "model_vs_readers",
            "Model vs readers, readers and cases random (OR-Hillis)",
            {
                "fom": "Figure of merit",
                "model": "Model",
                "readers_mean": "Readers' mean",
                "difference": "Model - readers [95% CI]",
                "df": "df",
                "p_noninferiority": "p (model worse)",
                "n": "n",
                "note": "Note",
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
        contested_share: float = DEFAULTS["contested_share"],
        n_boot: int = DEFAULTS["n_boot"],
        run_key: str = DEFAULTS["run_key"],
        delegate: bool = DEFAULTS["delegate"],
    ):
        """Evaluate from the SDK on a dataset or view; returns headline and rows."""
        return self.run_sdk_with(locals())
