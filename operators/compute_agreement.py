"""Operator ``compute_agreement``: inter-reader agreement on any view, stored as a run."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator

KIND_LABELS = {
    "classification": "Class calls (per image)",
    "series": "Class calls (per series)",
    "mask": "Masks",
    "boxes": "Boxes",
}

#: this operator's defaults: the form's, execute's and the SDK's
DEFAULTS = {**I.DEFAULTS, "run_key": "agreement", "interval": "cases"}


class ComputeAgreement(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_agreement",
            risk_level=types.RiskLevel.LOW,
            label="Compute reader agreement",
            description=(
                "Chance-corrected agreement between readers (kappa, alpha, AC1, ICC, "
                "Dice, box F1) with confidence intervals, and a disagreement score on "
                "every sample; stored as a run"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        from multireader.analyses.agreement import AGREEMENT_KINDS, INTERVALS, STATISTIC_GROUPS
        from multireader.core import fields

        inputs = types.Object()
        # measurements and other kinds have their own analyses (RECIST, lesions)
        kinds = sorted(
            {m["kind"] for m in fields.reader_fields(ctx.dataset).values()} & set(AGREEMENT_KINDS)
        )
        if not kinds:
            return I.no_reader_fields(inputs, "Compute reader agreement")
        kind_view = types.Dropdown(multiple=True)
        for k in kinds:
            kind_view.add_choice(k, label=KIND_LABELS.get(k, k))
        inputs.list(
            "kinds",
            types.String(),
            default=kinds,
            label="Label types",
            description="Each type is analysed on its own; the per-sample score averages them",
            view=kind_view,
        )
        I.reader_choices_input(inputs, ctx.dataset)
        stats = types.Dropdown(multiple=True)
        for key, label in STATISTIC_GROUPS.items():
            stats.add_choice(key, label=label)
        inputs.list(
            "statistics",
            types.String(),
            default=list(STATISTIC_GROUPS),
            label="Statistics",
            view=stats,
        )
        I.level_input(inputs)
        I.n_boot_input(inputs, min=0)
        I.by_patient_input(inputs)
        interval_view = types.RadioGroup()
        for key, label in INTERVALS.items():
            interval_view.add_choice(key, label=label)
        inputs.enum(
            "interval",
            interval_view.values(),
            default=DEFAULTS["interval"],
            required=True,
            label="Intervals of Fleiss' kappa and Gwet's AC1 (class calls)",
            description="Readers random too: the conclusion is meant to hold for other readers",
            view=interval_view,
        )
        I.run_key_input(
            inputs,
            ctx,
            "agreement",
            DEFAULTS["run_key"],
            description="Stored under this key (an existing agreement run is replaced)",
        )
        I.analysis_target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Compute reader agreement"))

    def execute(self, ctx):
        from multireader.analyses import agreement as analysis

        p = ctx.params
        results = analysis.compute_agreement(
            I.analysis_target_view(ctx),
            kinds=p.get("kinds") or None,
            readers=p.get("readers") or None,
            statistics=p.get("statistics") or None,
            level=float(I.value(ctx, "level")),
            n_boot=int(I.value(ctx, "n_boot")),
            by_patient=bool(I.value(ctx, "by_patient")),
            interval=str(I.value(ctx, "interval", DEFAULTS)),
            run_key=I.run_key_param(ctx, DEFAULTS["run_key"]),
            progress=_common.progress_for(ctx),
        )
        self.reload(ctx)
        return results.summary()

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("run_key", label="Stored as run")
        outputs.int("n_disagree", label="Samples where readers disagree")
        _common.table(
            outputs,
            "statistics",
            "Agreement",
            {"kind": "Labels", "statistic": "Statistic", "value": "Value", "ci": "CI", "n": "n"},
        )
        _common.table(outputs, "skipped", "Not analysed", {"kind": "Labels", "reason": "Why"})
        return types.Property(outputs, view=types.View(label="Reader agreement"))

    def __call__(
        self,
        sample_collection,
        *,
        kinds=None,
        readers=None,
        statistics=None,
        level: float = DEFAULTS["level"],
        n_boot: int = DEFAULTS["n_boot"],
        by_patient: bool = DEFAULTS["by_patient"],
        interval: str = DEFAULTS["interval"],
        run_key: str = DEFAULTS["run_key"],
        delegate: bool = DEFAULTS["delegate"],
    ):
        """Compute agreement from the SDK on a dataset or view; returns the summary.

        ``interval``: "cases" (readers fixed), "cases_and_readers" (two-way bootstrap
        over patients and readers) or "cases_and_readers_jackknife" (Gwet's subject +
        rater variance), for the class calls' Fleiss' kappa and Gwet's AC1.

        The full results are stored as run ``run_key``:
        ``multireader.core.runs.load(dataset, run_key)``.
        """
        return self.run_sdk_with(locals())
