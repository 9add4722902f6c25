"""Operator ``compute_agreement``: inter-reader agreement on any view, stored as a run."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common

KIND_LABELS = {
    "classification": "Class calls (per image)",
    "series": "Class calls (per series)",
    "mask": "Masks",
    "boxes": "Boxes",
}


def reader_choices_input(inputs: types.Object, dataset, kinds=None, name: str = "readers") -> list:
    """Multi-select of the readers found in the dataset's reader fields (default: all)."""
    from multireader.core import fields

    found = sorted({str(m["reader"]) for m in fields.reader_fields(dataset, kinds=kinds).values()})
    choices = types.Dropdown(multiple=True)
    for r in found:
        choices.add_choice(r, label=r)
    inputs.list(
        name,
        types.String(),
        default=found,
        label="Readers",
        description=f"Found in this dataset's reader fields: {', '.join(found) or 'none'}",
        view=choices,
    )
    return found


def target_input(inputs: types.Object) -> None:
    """Analysis operators default to the current view, so agreement follows a slice."""
    _common.target_input(
        inputs, default="CURRENT_VIEW", current_label="Current view (e.g. one scanner)"
    )


def target_view(ctx):
    return _common.target_view(ctx, default="CURRENT_VIEW")


class ComputeAgreement(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_agreement",
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
        from multireader.core import fields

        inputs = types.Object()
        kinds = sorted({m["kind"] for m in fields.reader_fields(ctx.dataset).values()})
        if not kinds:
            inputs.view(
                "none",
                types.Warning(
                    label="No reader fields",
                    description="Import reader labels first (Import reader labels)",
                ),
            )
            return types.Property(inputs, view=types.View(label="Compute reader agreement"))
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
        reader_choices_input(inputs, ctx.dataset)
        stats = types.Dropdown(multiple=True)
        from multireader.analyses.agreement import STATISTIC_GROUPS

        for key, label in STATISTIC_GROUPS.items():
            stats.add_choice(key, label=label)
        inputs.list(
            "statistics",
            types.String(),
            default=list(STATISTIC_GROUPS),
            label="Statistics",
            view=stats,
        )
        inputs.float(
            "level",
            default=0.95,
            min=0.5,
            max=0.999,
            label="Confidence level",
            description="Percentile bootstrap intervals at this level",
        )
        inputs.int("n_boot", default=1000, min=0, label="Bootstrap resamples")
        inputs.bool(
            "by_patient",
            default=True,
            label="Resample patients",
            description="Bootstrap over patients (patient_key) rather than images",
            view=types.CheckboxView(),
        )
        inputs.str(
            "run_key",
            default="agreement",
            required=True,
            label="Run key",
            description="Stored under this key (an existing agreement run is replaced)",
        )
        target_input(inputs)
        _common.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Compute reader agreement"))

    def resolve_delegation(self, ctx):
        return _common.resolve_delegation(ctx)

    def execute(self, ctx):
        from multireader.analyses import agreement as analysis

        p = ctx.params
        results = analysis.compute_agreement(
            target_view(ctx),
            kinds=p.get("kinds") or None,
            readers=p.get("readers") or None,
            statistics=p.get("statistics") or None,
            level=float(p.get("level", 0.95)),
            n_boot=int(p.get("n_boot", 1000)),
            by_patient=bool(p.get("by_patient", True)),
            run_key=(p.get("run_key") or "agreement").strip(),
            progress=_common.progress_for(ctx),
        )
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return {
            "run_key": results.get("run_key"),
            "fields_written": results.get("fields_written", []),
            "n_disagree": results.get("per_sample", {}).get("n_disagree"),
            "statistics": analysis.summary_rows(results),
            "skipped": [{"kind": k, "reason": v} for k, v in results.get("skipped", {}).items()],
        }

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
        level: float = 0.95,
        n_boot: int = 1000,
        by_patient: bool = True,
        run_key: str = "agreement",
        delegate: bool = False,
    ):
        """Compute agreement from the SDK on a dataset or view; returns the summary.

        The full results are stored as run ``run_key``:
        ``multireader.core.runs.load(dataset, run_key)``.
        """
        params = dict(
            kinds=list(kinds) if kinds else [],
            readers=list(readers) if readers else [],
            statistics=list(statistics) if statistics else [],
            level=level,
            n_boot=n_boot,
            by_patient=by_patient,
            run_key=run_key,
            target="CURRENT_VIEW",
        )
        return _common.run_from_sdk(self, sample_collection, params, delegate=delegate)
