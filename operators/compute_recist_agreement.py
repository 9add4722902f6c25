"""Operators ``compute_recist_agreement`` (RECIST 1.1 per reader and agreement between
readers, a stored run) and ``adjudicate_response`` (an adjudicator's response for one
discordant patient-timepoint, in its own versioned field)."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator

#: this operator's defaults: the form's, execute's and the SDK's
DEFAULTS = {
    **I.DEFAULTS,
    "source": "measurements",
    "ne": "class",
    "min_sd_days": 42.0,
    "confirmation_days": None,
    "lesion_run_key": "lesions",
    "max_targets": 5,
    "max_per_organ": 2,
    "pr_change_pct": -30.0,
    "pd_change_pct": 20.0,
    "pd_min_increase_mm": 5.0,
    "run_key": "recist",
}
SOURCE_LABELS = {
    "measurements": "The readers' measurements (calipers)",
    "masks": "Per-lesion diameters measured on the readers' masks (needs a lesion run)",
}
NE_LABELS = {
    "class": "A category of its own (NE vs PR is a discordance)",
    "missing": "Left out (only evaluable calls are compared)",
}
FORM_LABEL = "Compute RECIST agreement"
ADJ_LABEL = "Adjudicate a RECIST response"
RULE_PARAMS = (
    "max_targets",
    "max_per_organ",
    "pr_change_pct",
    "pd_change_pct",
    "pd_min_increase_mm",
)


class ComputeRecistAgreement(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_recist_agreement",
            risk_level=types.RiskLevel.LOW,
            label=FORM_LABEL,
            description=(
                "Each reader's RECIST 1.1 targets, sums of diameters, responses and best "
                "overall response; agreement between readers (kappas, discordance rate, "
                "ICC of sums, target-selection overlap, per-lesion diameters, drift); "
                "stored as a run"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        from multireader.core import fields

        inputs = types.Object()
        found = fields.reader_fields(ctx.dataset, kinds=["measurements"])
        if len({m["reader"] for m in found.values()}) < 2:
            return I.warning_form(
                inputs,
                FORM_LABEL,
                "Needs RECIST measurements from at least two readers",
                "Import each reader's measurements first (Import measurements: a table "
                "or DICOM SR TID 1500)",
            )
        I.reader_choices_input(inputs, ctx.dataset, kinds=["measurements"])
        src = types.RadioGroup()
        for k, label in SOURCE_LABELS.items():
            src.add_choice(k, label=label)
        inputs.enum(
            "source", src.values(), default=DEFAULTS["source"], label="Diameters from", view=src
        )
        if I.value(ctx, "source", DEFAULTS) == "masks":
            I.run_key_input(
                inputs,
                ctx,
                "lesions",
                DEFAULTS["lesion_run_key"],
                name="lesion_run_key",
                label="Lesion run",
                description="The compute_lesion_agreement run whose matched lesions are measured",
            )
        ne = types.RadioGroup()
        for k, label in NE_LABELS.items():
            ne.add_choice(k, label=label)
        inputs.enum("ne", ne.values(), default=DEFAULTS["ne"], label="Not evaluable (NE)", view=ne)
        inputs.int("max_targets", default=DEFAULTS["max_targets"], min=1, label="Targets at most")
        inputs.int(
            "max_per_organ", default=DEFAULTS["max_per_organ"], min=1, label="Targets per organ"
        )
        inputs.float(
            "pr_change_pct",
            default=DEFAULTS["pr_change_pct"],
            max=-0.1,
            label="PR: change from baseline at most (%)",
        )
        inputs.float(
            "pd_change_pct",
            default=DEFAULTS["pd_change_pct"],
            min=0.0,
            label="PD: increase from the nadir at least (%)",
        )
        inputs.float(
            "pd_min_increase_mm",
            default=DEFAULTS["pd_min_increase_mm"],
            min=0.0,
            label="PD: and at least (mm)",
        )
        inputs.float(
            "min_sd_days",
            default=DEFAULTS["min_sd_days"],
            min=0.0,
            label="SD counts from day",
            description="Best overall response: SD needs a follow-up at least this many days "
            "after baseline (taken as met when the dataset keeps no study dates)",
        )
        inputs.float(
            "confirmation_days",
            label="Confirmation interval (days)",
            description="Leave empty for the unconfirmed best response",
        )
        I.level_input(inputs)
        I.n_boot_input(inputs, min=0)
        I.alpha_input(inputs, "Family-wise level of the reader drift flags")
        I.run_key_input(
            inputs,
            ctx,
            "recist",
            DEFAULTS["run_key"],
            description="Stored under this key (an existing RECIST run is replaced)",
        )
        I.analysis_target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label=FORM_LABEL))

    def execute(self, ctx):
        from multireader.analyses import recist as AR

        p = ctx.params
        conf = p.get("confirmation_days")
        results = AR.compute_recist_agreement(
            I.analysis_target_view(ctx),
            readers=p.get("readers") or None,
            source=I.value(ctx, "source", DEFAULTS),
            rules={
                k: (int if k.startswith("max") else float)(I.value(ctx, k, DEFAULTS))
                for k in RULE_PARAMS
            },
            ne=I.value(ctx, "ne", DEFAULTS),
            min_sd_days=float(I.value(ctx, "min_sd_days", DEFAULTS)),
            confirmation_days=None if conf is None else float(conf),
            lesion_run_key=I.value(ctx, "lesion_run_key", DEFAULTS),
            level=float(I.value(ctx, "level", DEFAULTS)),
            n_boot=int(I.value(ctx, "n_boot", DEFAULTS)),
            alpha=float(I.value(ctx, "alpha", DEFAULTS)),
            run_key=I.run_key_param(ctx, DEFAULTS["run_key"]),
            progress=_common.progress_for(ctx),
        )
        self.reload(ctx)
        summary = results.summary()
        summary["followup_rows"] = [
            {"timepoint": k, **v} for k, v in (summary.get("followups") or {}).items()
        ]
        summary["reader_rows"] = [
            {
                "reader": w,
                **dict((summary["bor_distribution"].get(w) or {}).items()),
                "violations": (summary.get("n_violations") or {}).get(w, 0),
                "drifting": ", ".join(
                    k for k, v in (summary.get("drift_flags") or {}).items() if w in v
                ),
            }
            for w in summary.get("bor_distribution") or {}
        ]
        return summary

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("run_key", label="Stored as run")
        outputs.int("n_patients", label="Patients")
        outputs.int("n_discordant", label="Discordant patient-timepoints")
        outputs.int("n_adjudicated", label="Adjudicated")
        outputs.float("sum_icc", label="ICC(2,1) of the sums of diameters")
        _common.table(
            outputs,
            "followup_rows",
            "Response agreement per follow-up",
            {
                "timepoint": "Timepoint",
                "n": "Patients",
                "discordance_rate": "Discordance rate",
                "fleiss_kappa": "Fleiss' kappa",
            },
        )
        _common.table(
            outputs,
            "reader_rows",
            "Best overall response per reader",
            {
                "reader": "Reader",
                "CR": "CR",
                "PR": "PR",
                "SD": "SD",
                "PD": "PD",
                "NE": "NE",
                "violations": "Target-rule violations",
                "drifting": "Drift",
            },
        )
        return types.Property(outputs, view=types.View(label="RECIST agreement"))

    def __call__(
        self,
        sample_collection,
        *,
        readers=None,
        source: str = DEFAULTS["source"],
        ne: str = DEFAULTS["ne"],
        max_targets: int = DEFAULTS["max_targets"],
        max_per_organ: int = DEFAULTS["max_per_organ"],
        pr_change_pct: float = DEFAULTS["pr_change_pct"],
        pd_change_pct: float = DEFAULTS["pd_change_pct"],
        pd_min_increase_mm: float = DEFAULTS["pd_min_increase_mm"],
        min_sd_days: float = DEFAULTS["min_sd_days"],
        confirmation_days: float | None = DEFAULTS["confirmation_days"],
        lesion_run_key: str = DEFAULTS["lesion_run_key"],
        level: float = DEFAULTS["level"],
        n_boot: int = DEFAULTS["n_boot"],
        alpha: float = DEFAULTS["alpha"],
        run_key: str = DEFAULTS["run_key"],
        delegate: bool = DEFAULTS["delegate"],
    ):
        """RECIST agreement from the SDK on a dataset or view; returns the summary.

        Each reader's targets (their ``target`` flags, checked against RECIST 1.1, or
        chosen by the rule when they flagged none), sums, responses and best overall
        response per patient; agreement on responses per follow-up (Cohen's and
        Fleiss' kappa, percent agreement, discordance rate), on sums and percent
        changes (ICC, Bland-Altman, repeatability coefficient), on target selection
        and per-lesion diameters, and each reader's drift, with patient-bootstrap
        intervals (``n_boot``, ``level``). ``source="masks"`` measures the lesions of
        lesion run ``lesion_run_key`` on the readers' masks. The full results are
        stored as run ``run_key``: ``multireader.core.runs.load(dataset, run_key)``.
        """
        return self.run_sdk_with(locals())


class AdjudicateResponse(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="adjudicate_response",
            risk_level=types.RiskLevel.MEDIUM,
            label=ADJ_LABEL,
            description=(
                "An adjudicator's RECIST response for one patient at one timepoint, with a "
                "reason; kept in its own field beside the readers' calls, every version "
                "in the label history"
            ),
            dynamic=True,
            allow_immediate_execution=True,
        )

    def resolve_input(self, ctx):
        from multireader.analyses import recist as AR
        from multireader.core import fields as F

        inputs = types.Object()
        dataset = ctx.dataset
        patient, timepoint = ctx.params.get("patient_key"), ctx.params.get("timepoint")
        if (patient is None or timepoint is None) and dataset is not None:
            # from the open or the one selected sample, when the App has one
            sid = ctx.current_sample or (ctx.selected[0] if len(ctx.selected or []) == 1 else None)
            if sid:
                try:
                    s = dataset[sid]
                    patient = patient or s[F.PATIENT_KEY]
                    timepoint = s[F.TIMEPOINT] if timepoint is None else timepoint
                except Exception:  # noqa: BLE001 - the fields stay empty, required
                    pass
        res = AR.RecistAgreementResults.newest(dataset) if dataset is not None else None
        choices = types.AutocompleteView()
        for d in (res.results.get("discordant") or []) if res is not None else []:
            choices.add_choice(d["patient"], label=d["patient"])
        prop = inputs.str(
            "patient_key",
            default=patient,
            required=True,
            label="Patient",
            description="The patient_key (discordant patients of the newest RECIST run offered)",
            view=choices,
        )
        inputs.int("timepoint", default=timepoint, required=True, label="Timepoint", min=1)
        if patient and timepoint is not None and dataset is not None:
            try:
                AR.adjudication_samples(dataset, patient, timepoint)
                calls = AR.readers_calls(dataset, patient, timepoint)
                if calls:
                    inputs.view(
                        "calls",
                        types.Notice(
                            label="Readers' calls: "
                            + ", ".join(f"{w} {c}" for w, c in calls.items())
                        ),
                    )
            except AR.RecistAnalysisError as e:
                prop.invalid, prop.error_message = True, str(e)
        resp = types.Dropdown()
        for c in AR.ADJUDICABLE:
            resp.add_choice(c, label=c)
        inputs.enum("response", list(AR.ADJUDICABLE), required=True, label="Response", view=resp)
        inputs.str("reason", required=True, label="Reason", description="Kept with the version")
        inputs.str("adjudicator", required=True, label="Adjudicator")
        return types.Property(inputs, view=types.View(label=ADJ_LABEL))

    def execute(self, ctx):
        import fiftyone as fo

        from multireader.analyses import recist as AR
        from multireader.lineage import records

        p = ctx.params
        dataset = ctx.dataset
        response = AR.check_adjudicable(p.get("response"))
        ids = AR.adjudication_samples(dataset, p.get("patient_key"), p.get("timepoint"))
        calls = AR.readers_calls(dataset, p["patient_key"], p["timepoint"])
        label = fo.Classification(
            label=response,
            reason=p.get("reason"),
            patient_key=p["patient_key"],
            timepoint=int(p["timepoint"]),
            readers_calls=", ".join(f"{w}: {c}" for w, c in calls.items()) or None,
        )
        doc = records.adjudicate(
            dataset,
            ids[0],
            label,
            reason=p.get("reason"),
            adjudicator=p.get("adjudicator"),
            field=AR.ADJUDICATED_FIELD,
        )
        AR.copy_adjudication(dataset, ids)
        self.reload(ctx)
        return {
            "field": doc["field"],
            "version": doc["version"],
            "response": response,
            "patient_key": p["patient_key"],
            "timepoint": int(p["timepoint"]),
            "n_samples": len(ids),
            "readers": calls,
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("field", label="Field")
        outputs.int("version", label="Version")
        outputs.str("response", label="Adjudicated response")
        outputs.int("n_samples", label="Samples of the timepoint")
        return types.Property(outputs, view=types.View(label="Response adjudicated"))

    def __call__(self, sample_collection, *, patient_key, timepoint, response, reason, adjudicator):
        """Record an adjudicator's RECIST ``response`` for ``patient_key`` at
        ``timepoint`` with a ``reason``: written to ``adjudicated_response`` on every
        sample of that patient-timepoint (the first one keeps the versioned history,
        ``lineage.records.history``), never over a reader's field. Returns the version
        and the readers' calls of the newest RECIST run."""
        return self.run_sdk_with(locals())
