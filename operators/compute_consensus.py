"""Operator ``compute_consensus``: a consensus label beside the readers', plus reader profiles."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator
from .compute_agreement import KIND_LABELS

METHOD_LABELS = {
    "dawid_skene": "Dawid-Skene (EM): weighs readers by their estimated accuracy",
    "majority": "Majority vote: ties are marked contested, never broken",
    "staple": "STAPLE (EM): per-reader sensitivity and specificity",
    "wbf": "Weighted box fusion",
}


#: Dawid-Skene's defaults in the form, execute and the SDK, those of
#: ``multireader.stats.consensus.DawidSkene``: run to tolerance (1e-6 per read, capped at
#: 1000 iterations) with a diagonal prior of 5 reads, from the vote shares, every read
#: fitted (why: that class's Notes, and the README's "A consensus that converged")
DS_DEFAULTS = {
    "max_iter": 1000,
    "tol": 1e-6,
    "diagonal_prior": 5.0,
    "single_reads": "fit",
    "init": "vote_shares",
}
DEFAULTS = {**I.DEFAULTS, **DS_DEFAULTS}
SINGLE_READS_LABELS = {
    "posterior_only": "Fit on images read twice or more; single reads get a posterior only",
    "fit": "Every read fits the readers' error matrices (the 1979 paper)",
}
INIT_LABELS = {
    "majority": "The majority vote",
    "vote_shares": "Each image's vote shares (the 1979 paper)",
}


def default_run_key(method: str, kind: str) -> str:
    """``consensus_<method>``, with ``_<kind>`` for labels other than class calls."""
    return f"consensus_{method}" + ("" if kind == "classification" else f"_{kind}")


class ComputeConsensus(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_consensus",
            risk_level=types.RiskLevel.LOW,
            label="Compute consensus labels",
            description=(
                "A consensus label in its own field, beside the readers' labels (never "
                "over them), with its provenance; for class calls also each reader's "
                "profile: confusion against consensus, prevalence bias and drift"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        from multireader.analyses import agreement as analysis
        from multireader.core import fields

        inputs = types.Object()
        kinds = sorted(
            {m["kind"] for m in fields.reader_fields(ctx.dataset).values()}
            & set(analysis.CONSENSUS_METHODS)
        )
        if not kinds:
            return I.no_reader_fields(inputs, "Compute consensus labels")
        kind_view = types.RadioGroup()
        for k in kinds:
            kind_view.add_choice(k, label=KIND_LABELS.get(k, k))
        default_kind = "classification" if "classification" in kinds else kinds[0]
        inputs.enum(
            "kind", kind_view.values(), default=default_kind, label="Label type", view=kind_view
        )
        kind = ctx.params.get("kind") or default_kind
        methods = analysis.CONSENSUS_METHODS[kind]
        method_view = types.RadioGroup()
        for m in methods:
            method_view.add_choice(m, label=METHOD_LABELS[m])
        inputs.enum(
            "method", method_view.values(), default=methods[0], label="Method", view=method_view
        )
        method = ctx.params.get("method") if ctx.params.get("method") in methods else methods[0]
        I.reader_choices_input(inputs, ctx.dataset, kinds=[kind])
        inputs.str(
            "output_field",
            default=fields.consensus_field(method, kind),
            required=True,
            label="Output field",
            description="A new field; reader fields are refused",
        )
        if kind in ("classification", "series"):
            inputs.bool(
                "profiles",
                default=True,
                label="Reader profiles",
                description="Confusion against consensus, prevalence bias, drift across sessions",
                view=types.CheckboxView(),
            )
            I.alpha_input(inputs, "For the bias and drift tests (Holm-corrected)")
        if method == "dawid_skene":
            _dawid_skene_inputs(inputs)
        if kind == "boxes":
            inputs.float("iou_threshold", default=0.55, min=0.05, max=1.0, label="IoU to fuse")
            inputs.int("min_readers", default=1, min=1, label="Keep boxes drawn by at least")
        I.run_key_input(inputs, ctx, "consensus", default_run_key(method, kind))
        I.analysis_target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Compute consensus labels"))

    def execute(self, ctx):
        from multireader.analyses import agreement as analysis

        p = ctx.params
        results = analysis.compute_consensus(
            I.analysis_target_view(ctx),
            kind=p.get("kind") or "classification",
            method=p.get("method") or None,
            readers=p.get("readers") or None,
            output_field=(p.get("output_field") or "").strip() or None,
            run_key=I.run_key_param(ctx, None),
            profiles=bool(p.get("profiles", True)),
            alpha=float(I.value(ctx, "alpha")),
            max_iter=int(I.value(ctx, "max_iter", DEFAULTS)),
            tol=float(I.value(ctx, "tol", DEFAULTS)),
            diagonal_prior=float(I.value(ctx, "diagonal_prior", DEFAULTS)),
            single_reads=str(I.value(ctx, "single_reads", DEFAULTS)),
            init=str(I.value(ctx, "init", DEFAULTS)),
            iou_threshold=float(p.get("iou_threshold", 0.55)),
            min_readers=int(p.get("min_readers", 1)),
            progress=_common.progress_for(ctx),
        )
        self.reload(ctx)
        return results.summary()

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("output_field", label="Consensus written to")
        outputs.str("run_key", label="Stored as run")
        outputs.int("n_contested", label="Contested (tied) samples")
        outputs.str("convergence", label="Dawid-Skene")
        outputs.bool("converged", label="Converged")
        outputs.int("n_iter", label="EM iterations")
        outputs.float("log_likelihood", label="Final log-likelihood")
        outputs.list("warnings", types.String(), label="Warnings")
        _common.table(
            outputs,
            "flags",
            "Readers flagged",
            {"reader": "Reader", "kind": "Flag", "detail": "Why"},
        )
        return types.Property(outputs, view=types.View(label="Consensus"))

    def __call__(
        self,
        sample_collection,
        *,
        kind: str = "classification",
        method: str | None = None,
        readers=None,
        output_field: str | None = None,
        run_key: str | None = None,
        profiles: bool = True,
        alpha: float = I.DEFAULTS["alpha"],
        max_iter: int = DEFAULTS["max_iter"],
        tol: float = DEFAULTS["tol"],
        diagonal_prior: float = DEFAULTS["diagonal_prior"],
        single_reads: str = DEFAULTS["single_reads"],
        init: str = DEFAULTS["init"],
        iou_threshold: float = 0.55,
        min_readers: int = 1,
        delegate: bool = I.DEFAULTS["delegate"],
    ):
        """Build a consensus from the SDK; returns its field, run key and flagged readers,
        and for Dawid-Skene ``converged``, ``n_iter``, ``log_likelihood`` and
        ``warnings`` (a fit stopped at ``max_iter``). ``max_iter``, ``tol``,
        ``diagonal_prior``, ``single_reads`` and ``init`` are Dawid-Skene's (see
        :func:`multireader.analyses.agreement.compute_consensus`).

        Full results (confusions, posteriors' summary, reader profiles) are stored as run
        ``run_key``: ``multireader.core.runs.load(dataset, run_key)``.
        """
        from multireader.analyses import agreement as analysis
        from multireader.core import fields
        from multireader.errors import MultireaderError

        if kind not in analysis.CONSENSUS_METHODS:
            raise MultireaderError(
                f"no consensus for label kind {kind!r}; choose one of "
                f"{sorted(analysis.CONSENSUS_METHODS)}"
            )
        method = method or analysis.CONSENSUS_METHODS[kind][0]
        if method not in analysis.CONSENSUS_METHODS[kind]:
            raise MultireaderError(
                f"method {method!r} does not apply to {kind} labels; choose one of "
                f"{list(analysis.CONSENSUS_METHODS[kind])}"
            )
        # the form's defaults, so required inputs validate as they do in the App
        output_field = output_field or fields.consensus_field(method, kind)
        run_key = run_key or default_run_key(method, kind)
        return self.run_sdk_with(locals())


def _dawid_skene_inputs(inputs: types.Object) -> None:
    """Dawid-Skene's options: when to stop, the prior, single reads, the start."""
    inputs.int(
        "max_iter",
        default=DEFAULTS["max_iter"],
        min=1,
        required=True,
        label="Maximum EM iterations",
        description="Stopping here before the tolerance is met is reported as not converged",
    )
    inputs.float(
        "tol",
        default=DEFAULTS["tol"],
        min=0.0,
        required=True,
        label="Tolerance (log-likelihood per read)",
        description="Converged when an iteration raises the log-likelihood by less",
    )
    inputs.float(
        "diagonal_prior",
        default=DEFAULTS["diagonal_prior"],
        min=0.0,
        required=True,
        label="Prior: pseudo-reads on each reader's correct calls",
        description="Keeps sparse panels from relabelling the classes; 0 = the 1979 paper",
    )
    single = types.RadioGroup()
    for k, label in SINGLE_READS_LABELS.items():
        single.add_choice(k, label=label)
    inputs.enum(
        "single_reads",
        single.values(),
        default=DEFAULTS["single_reads"],
        required=True,
        label="Images read once",
        view=single,
    )
    start = types.RadioGroup()
    for k, label in INIT_LABELS.items():
        start.add_choice(k, label=label)
    inputs.enum(
        "init", start.values(), default=DEFAULTS["init"], required=True, label="Start from",
        view=start,
    )  # fmt: skip
