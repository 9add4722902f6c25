"""How the model does on the cases the radiologists disputed, and on each subgroup.

Compares a prediction field with each reference (every consensus field and every
reader) on all samples, on *contested* and *uncontested* samples separately, and on
each value of each slice field (scanner, sex, age bin...). For each cell: the number of
samples, accuracy and Cohen's kappa (quadratic-weighted too for an ordered scale) with
percentile-bootstrap confidence intervals that resample patients (slices of one
patient are not independent), and the confusion matrix (rows: reference, columns:
model). Beside them, "model vs readers, readers and cases random": single-modality
OR-Hillis (:func:`multireader.stats.mrmc.model_vs_readers`) on accuracy against the
consensus, and on AUC when the readers gave ordinal scores on an ordered scale. Stored
as a run of kind ``model_evaluation``, which panels and the audit report read.

A sample is *contested* when at least two readers read it and no class has at least
``contested_share`` of their reads (default 0.75: with four readers, no three agreed).
"""

from __future__ import annotations

import numpy as np

from multireader.analyses.slice_confusion import MISSING, default_bins, slice_codes
from multireader.core import collect as C
from multireader.core import runs as RUNS
from multireader.core.predictions import PredictionError, read_probabilities
from multireader.core.results import AnalysisResults
from multireader.errors import MultireaderError
from multireader.progress import ProgressFn, report
from multireader.stats.agreement import kappa_from_confusion, weight_matrix
from multireader.stats.bootstrap import bootstrap
from multireader.stats.estimates import fmt_ci
from multireader.stats.ratings import class_counts

#: slice fields used when none are given (the ones the dataset has)
DEFAULT_SLICES = ("manufacturer_model", "patient_sex", "patient_age_bin", "contrast")


class EvaluationError(MultireaderError):
    """The evaluation cannot run as asked; the message says why."""


def contested_mask(codes: np.ndarray, n_classes: int, share: float) -> np.ndarray:
    """True where >= 2 readers read an item and no class holds ``share`` of the reads."""
    counts = class_counts(codes, n_classes)
    n = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        top = counts.max(axis=1) / n
    return (n >= 2) & (top < share)


def _slice_values(values: list) -> tuple[list[str], dict]:
    """String slice labels per sample, cut the way the slice_confusion panel cuts them
    (numeric fields with many values into quartiles)."""
    bins = default_bins(values)
    codes, names, _ = slice_codes(values, bins)
    return [names[c] for c in codes], ({"binned": "quartiles", "edges": bins} if bins else {})


class _Scorer:
    """Accuracy and kappa with patient-bootstrap CIs from per-group confusion tables."""

    def __init__(self, k, ordered, groups, level, n_boot, seed):
        self.k, self.ordered, self.level, self.n_boot = k, ordered, level, n_boot
        self.groups = groups
        self.rng_seed = seed
        self.weights = {"kappa": weight_matrix(k, None)}
        if ordered:
            self.weights["kappa_quadratic"] = weight_matrix(k, "quadratic")

    def _statistics(self, sums: np.ndarray) -> np.ndarray:
        """(..., K*K) summed confusion cells -> (..., S) accuracy and kappa(s)."""
        conf = sums.reshape(*sums.shape[:-1], self.k, self.k)
        acc = np.trace(conf, axis1=-2, axis2=-1) / np.maximum(conf.sum((-2, -1)), 1)
        kappas = [kappa_from_confusion(conf, w) for w in self.weights.values()]
        return np.stack([acc, *kappas], axis=-1)

    def score(self, ref: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> dict:
        k = self.k
        ok = idx[(ref[idx] >= 0) & (pred[idx] >= 0)]
        out: dict = {"n": int(len(ok))}
        conf = np.bincount(ref[ok] * k + pred[ok], minlength=k * k).reshape(k, k)
        out["confusion"] = conf.tolist()
        if len(ok) == 0:
            out["accuracy"] = out["kappa"] = {"value": None, "ci": [None, None]}
            return out
        # one row per confusion cell; patients (groups) are resampled whole
        r = bootstrap(
            np.eye(k * k),
            self._statistics,
            rows=ref[ok] * k + pred[ok],
            groups=self.groups[ok],
            n_boot=self.n_boot,
            level=self.level,
            seed=self.rng_seed,
        )
        n_groups = r.n_units
        for i, name in enumerate(["accuracy", *self.weights]):
            ci = [RUNS.jsonable(float(r.ci_low[i])), RUNS.jsonable(float(r.ci_high[i]))]
            out[name] = {
                "value": RUNS.jsonable(float(r.value[i])),
                # resampling one patient gives the same table every time: no interval
                "ci": ci if n_groups >= 2 else [None, None],
            }
        out["n_patients"] = n_groups
        return out


def evaluate_predictions(
    samples,
    pred_field: str | None = None,
    *,
    references: list[str] | None = None,
    slice_fields: list[str] | None = None,
    contested_share: float = 0.75,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    run_key: str = "model_evaluation",
    progress: ProgressFn | None = None,
) -> EvaluationResults:
    """Evaluate ``pred_field`` against consensus and each reader, by contested/uncontested
    and by slice; see the module docstring. Returns (and stores) the results, as
    :class:`EvaluationResults`."""
    from multireader.analyses.label_errors import default_prediction_field
    from multireader.core.schema import get_label_schema
    from multireader.embed.label_model import consensus_label_fields

    view = samples.view()
    dataset = view._dataset
    RUNS.check_key(run_key)
    if not 0.5 < contested_share <= 1:
        raise EvaluationError(f"contested_share must be in (0.5, 1], got {contested_share}")
    if not 0 < level < 1:
        raise EvaluationError(f"level must be in (0, 1), got {level}")
    try:
        pred_field = pred_field or default_prediction_field(dataset)
        ids, classes, probs = read_probabilities(view, pred_field)
    except (PredictionError, ValueError) as e:
        raise EvaluationError(str(e)) from e
    k = len(classes)
    index = {c: i for i, c in enumerate(classes)}
    have = np.isfinite(probs).all(axis=1)
    pred = np.where(have, np.argmax(np.nan_to_num(probs), axis=1), -1)
    schema = get_label_schema(dataset) or {}
    ordered = bool(schema.get("ordered"))

    report(progress, 0.05, "reading labels")
    rs = C.select_readers(dataset, "classification")
    reads = C.categorical_reads(view, rs, classes=classes, scores=True, sessions=False)
    if reads.item_ids != ids:
        raise EvaluationError("sample order changed while reading; run again")
    contested = contested_mask(reads.codes, k, contested_share)
    groups = reads.groups if reads.groups is not None else np.arange(len(ids))

    refs: dict[str, dict] = {}
    for f in consensus_label_fields(dataset):
        refs[f] = {"label": f, "kind": "consensus"}
    for f, r in zip(rs.fields, rs.readers, strict=True):
        refs[f] = {"label": r, "kind": "reader"}
    if references is not None:
        unknown = [r for r in references if r not in refs]
        if unknown:
            raise EvaluationError(
                f"not consensus or reader fields: {', '.join(unknown)}; "
                f"available: {', '.join(refs)}"
            )
        refs = {r: refs[r] for r in references}
    if not refs:
        raise EvaluationError("no consensus or reader classification fields to compare with")

    if slice_fields is None:
        slice_fields = [s for s in DEFAULT_SLICES if dataset.has_field(s)]
    missing = [s for s in slice_fields if not dataset.has_field(s)]
    if missing:
        raise EvaluationError(f"no slice field(s) {', '.join(missing)} on {dataset.name!r}")
    slices, slice_info = {}, {}
    for s in slice_fields:
        slices[s], slice_info[s] = _slice_values(view.values(s))

    scorer = _Scorer(k, ordered, groups, level, n_boot, seed)
    everything = np.arange(len(ids))
    out_refs = {}
    for n_done, (f, meta) in enumerate(refs.items()):
        report(progress, 0.1 + 0.85 * n_done / len(refs), f"comparing with {meta['label']}")
        if f in rs.fields:
            ref = reads.codes[:, rs.fields.index(f)]
        else:
            labels = view.values(f"{f}.label")
            ref = np.array([index.get(v, -1) if v is not None else -1 for v in labels])
        entry = {
            **meta,
            "all": scorer.score(ref, pred, everything),
            "contested": scorer.score(ref, pred, np.flatnonzero(contested)),
            "uncontested": scorer.score(ref, pred, np.flatnonzero(~contested)),
            "slices": {},
        }
        for s, labels in slices.items():
            arr = np.array(labels, dtype=object)
            entry["slices"][s] = {
                str(v): scorer.score(ref, pred, np.flatnonzero(arr == v))
                for v in sorted(set(labels), key=lambda x: (x == MISSING, x))
            }
        out_refs[f] = entry

    report(progress, 0.96, "model vs readers, readers and cases random")
    mvr_ref = next((f for f, m in refs.items() if m["kind"] == "consensus"), None)
    mvr_truth = None
    if mvr_ref is not None:
        labels = view.values(f"{mvr_ref}.label")
        mvr_truth = np.array([index.get(v, -1) if v is not None else -1 for v in labels])
    mvr = model_vs_readers_block(
        reads.codes, reads.scores, pred, probs, mvr_truth, ordered, level, reference=mvr_ref
    )
    if mvr_truth is not None:
        mvr["slices"] = _mvr_by_slice(reads, pred, probs, mvr_truth, ordered, level, slices)

    results = {
        "pred_field": pred_field,
        "classes": classes,
        "ordered": ordered,
        "n_samples": len(ids),
        "n_predicted": int(have.sum()),
        "n_contested": int(contested.sum()),
        "contested_definition": (
            f"read by >= 2 readers and no class holds {contested_share:.0%} of the reads"
        ),
        "level": level,
        "n_boot": n_boot,
        "resampling": "patients" if reads.groups is not None else "samples",
        "slice_fields": {s: slice_info[s] for s in slice_fields},
        "references": out_refs,
        "model_vs_readers": mvr,
    }
    results["headline"] = headline(results)
    config = {
        "pred_field": pred_field,
        "references": list(refs),
        "slice_fields": list(slice_fields),
        "contested_share": contested_share,
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
    }
    RUNS.save(view, run_key, "model_evaluation", config=config, results=results)
    report(progress, 1.0, results["headline"])
    return EvaluationResults(results, run_key=run_key, config=config)


def model_vs_readers_block(
    codes: np.ndarray,
    scores: np.ndarray,
    pred: np.ndarray,
    probs: np.ndarray,
    truth: np.ndarray | None,
    ordered: bool,
    level: float = 0.95,
    *,
    reference: str | None = None,
) -> dict:
    """Is the model at least as accurate as the readers? Readers and cases random:
    :func:`multireader.stats.mrmc.model_vs_readers` (single-modality OR-Hillis on the
    model-minus-reader differences) against ``truth`` (class codes of the reference,
    ``-1`` none) on the cases every reader read and the model predicted.

    ``accuracy``: the model's class against each reader's call. ``auc`` (only on an
    ordered scale where every reader gave a score on those cases): diseased = a
    reference class in the upper half of the scale; the readers' ordinal scores against
    the model's probability of the upper half. Each is the result's ``to_json()`` with
    ``n_cases``, or ``{"note"}`` saying why it is not there.
    """
    from multireader.stats import mrmc

    k = probs.shape[1]
    out: dict = {
        "method": (
            "single-modality Obuchowski-Rockette with Hillis's ddf on the model-minus-"
            "reader differences, readers and cases random (jackknife over cases)"
        ),
        "reference": reference,
    }
    if truth is None:
        note = "no consensus field to serve as the truth: run compute_consensus first"
        return {**out, "accuracy": {"note": note}, "auc": {"note": note}}
    out["truth"] = (
        f"{reference} (a consensus of the same readers: it favours them, so a model "
        "found not inferior here is not inferior to readers judged by their own panel)"
    )
    ok = (codes >= 0).all(axis=1) & (pred >= 0) & (truth >= 0)
    out["n_readers"] = int(codes.shape[1])
    if ok.sum() < 2 or codes.shape[1] < 2:
        out["accuracy"] = {
            "note": f"{int(ok.sum())} cases read by every reader and predicted; "
            "OR-Hillis needs every reader on every case and two readers"
        }
    else:
        try:
            res = mrmc.model_vs_readers(pred[ok], codes[ok], truth[ok], fom="accuracy", level=level)
            out["accuracy"] = res.to_json()
        except ValueError as e:
            out["accuracy"] = {"note": str(e)}
    if not ordered:
        out["auc"] = {"note": "the label schema is not ordered: no ROC on the calls"}
        return out
    pos_from = (k + 1) // 2
    binary = (truth >= pos_from).astype(int)
    have = ok & np.isfinite(scores).all(axis=1)
    if have.sum() < 2 or len(np.unique(binary[have])) < 2:
        out["auc"] = {
            "note": "the readers gave no ordinal score on every case (or the cases are "
            "all of one kind): no AUC"
        }
        return out
    model_score = np.nan_to_num(probs[:, pos_from:]).sum(axis=1)
    try:
        res = mrmc.model_vs_readers(
            model_score[have], scores[have], binary[have], fom="auc", level=level
        )
        out["auc"] = res.to_json()
    except ValueError as e:
        out["auc"] = {"note": str(e)}
    out["auc_positive"] = f"reference class code >= {pos_from} (upper half of the scale)"
    return out


#: what a slice's model-vs-readers entry keeps of the full result (the stored run stays
#: small: one entry per slice value and figure of merit)
_MVR_SLICE_KEYS = (
    "model", "readers_mean", "difference", "ci", "df", "std_err", "p_noninferiority",
    "p_two_sided", "margin", "n_readers", "n_cases", "note",
)  # fmt: skip


def _mvr_by_slice(reads, pred, probs, truth, ordered, level, slices) -> dict:
    """OR-Hillis model vs readers on each slice value's cases: ``{field: {value: {fom:
    entry}}}``, each entry the fields of :data:`_MVR_SLICE_KEYS` (or a ``note``)."""
    out: dict = {}
    for s, labels in slices.items():
        arr = np.array(labels, dtype=object)
        out[s] = {}
        for v in sorted(set(labels), key=lambda x: (x == MISSING, x)):
            idx = np.flatnonzero(arr == v)
            block = model_vs_readers_block(
                reads.codes[idx], reads.scores[idx], pred[idx], probs[idx], truth[idx],
                ordered, level,
            )  # fmt: skip
            out[s][str(v)] = {
                fom: {k: e[k] for k in _MVR_SLICE_KEYS if k in e}
                for fom in ("accuracy", "auc")
                if isinstance(e := block.get(fom), dict)
            }
    return out


def _mvr_slice_rows(results: dict) -> list[dict]:
    """One row per slice field, value and figure of merit of the OR-Hillis comparison."""
    mvr = results.get("model_vs_readers") or {}
    rows = []
    for field, values in (mvr.get("slices") or {}).items():
        for value, foms in values.items():
            for fom, e in foms.items():
                rows.append(
                    {"slice": {"field": field, "value": value}, "fom": fom,
                     "reference": mvr.get("reference"), **e}
                )  # fmt: skip
    return rows


def _mvr_rows(results: dict) -> list[dict]:
    mvr = results.get("model_vs_readers") or {}
    rows = []
    for fom in ("accuracy", "auc"):
        e = mvr.get(fom)
        if not e:
            continue
        if e.get("note"):
            rows.append({"fom": fom, "note": e["note"], "reference": mvr.get("reference")})
            continue
        rows.append(
            {
                "fom": fom,
                "reference": mvr.get("reference"),
                "model": e.get("model"),
                "readers_mean": e.get("readers_mean"),
                "difference": e.get("difference"),
                "ci": e.get("ci"),
                "df": e.get("df"),
                "std_err": e.get("std_err"),
                "p_noninferiority": e.get("p_noninferiority"),
                "p_two_sided": e.get("p_two_sided"),
                "margin": e.get("margin"),
                "n_readers": e.get("n_readers"),
                "n_cases": e.get("n_cases"),
            }
        )
    return rows


def headline(results: dict) -> str:
    """One sentence answering "how does the model do on the disputed cases?"."""
    refs = results["references"]
    ref = next((f for f, m in refs.items() if m["kind"] == "consensus"), next(iter(refs)))
    e = refs[ref]
    return (
        f"Against {e['label']}, accuracy {fmt_ci(e['contested'].get('accuracy'))} on "
        f"{e['contested']['n']} contested samples vs {fmt_ci(e['uncontested'].get('accuracy'))} "
        f"on {e['uncontested']['n']} uncontested ({results['level']:.0%} CIs, "
        f"{results['resampling']} resampled)"
    )


class EvaluationResults(AnalysisResults):
    """What :func:`evaluate_predictions` measured: the model's accuracy and kappa with
    intervals against each reference, on all, contested and uncontested cases and per
    slice.

    Tables: ``subsets`` (every reference x subset, CIs formatted, as the operator shows
    them); ``consensus`` and ``readers`` (the same as stored estimates, against the
    consensus fields or against each reader; a row's ``slice`` is None for the all,
    contested and uncontested cases).
    """

    run_kind = "model_evaluation"
    sections = ("subsets", "consensus", "readers", "model_vs_readers", "model_vs_readers_slices")

    @property
    def headline(self) -> str | None:
        return self.results.get("headline")

    @property
    def outputs(self) -> dict[str, list[str]]:
        return self._outputs()

    def summary(self) -> dict:
        return {
            "run_key": self.run_key,
            "headline": self.headline,
            "n_contested": self.results.get("n_contested"),
            "rows": self.rows("subsets"),
            "model_vs_readers": [_mvr_display(r) for r in self.rows("model_vs_readers")],
            "outputs": self.outputs,
        }

    def references(self, kind: str) -> dict:
        """``{field: entry}`` of the references of ``kind`` ("consensus" or "reader")."""
        return {
            f: e
            for f, e in (self.results.get("references") or {}).items()
            if (e.get("kind") == "consensus") == (kind == "consensus")
        }

    def _rows(self, section: str) -> list[dict]:
        if section == "subsets":
            return _subset_rows(self.results)
        if section == "model_vs_readers":
            return _mvr_rows(self.results)
        if section == "model_vs_readers_slices":
            return _mvr_slice_rows(self.results)
        out = []
        for ref, e in self.references("consensus" if section == "consensus" else "reader").items():
            parts = [(s, None, e.get(s) or {}) for s in ("all", "contested", "uncontested")]
            for field, values in (e.get("slices") or {}).items():
                parts += [(f"{field} = {v}", (field, v), cell) for v, cell in values.items()]
            for subset, sl, cell in parts:
                out.append(
                    {
                        "reference": e.get("label") or ref,
                        "field": ref,
                        "subset": subset,
                        "slice": None if sl is None else {"field": sl[0], "value": sl[1]},
                        "n": cell.get("n"),
                        "accuracy": cell.get("accuracy"),
                        "kappa": cell.get("kappa"),
                    }
                )
        return out


def _subset_rows(results: dict) -> list[dict]:
    """One row per reference and subset (all, contested, uncontested, each slice value)."""
    rows = []
    for e in results["references"].values():
        parts = [
            ("all", e["all"]),
            ("contested", e["contested"]),
            ("uncontested", e["uncontested"]),
        ]
        for s, vals in e["slices"].items():
            parts += [(f"{s} = {v}", cell) for v, cell in vals.items()]
        for subset, cell in parts:
            rows.append(
                {
                    "reference": e["label"],
                    "subset": subset,
                    "n": cell["n"],
                    "accuracy": fmt_ci(cell.get("accuracy")),
                    "kappa": fmt_ci(cell.get("kappa")),
                    "kappa_quadratic": fmt_ci(cell.get("kappa_quadratic")),
                }
            )
    return rows


def _mvr_display(row: dict) -> dict:
    """A model-vs-readers row formatted to 3 decimals, as the operator shows it."""
    from multireader.stats.estimates import fmt_num, fmt_p

    if row.get("note"):
        return {"fom": row["fom"], "difference": "", "p_noninferiority": "", "note": row["note"]}
    ci = row.get("ci") or [None, None]
    return {
        "fom": row["fom"],
        "model": fmt_num(row.get("model"), 3),
        "readers_mean": fmt_num(row.get("readers_mean"), 3),
        "difference": f"{fmt_num(row.get('difference'), 3)} "
        f"[{fmt_num(ci[0], 3)}, {fmt_num(ci[1], 3)}]",
        "df": fmt_num(row.get("df"), 1),
        "p_noninferiority": fmt_p(row.get("p_noninferiority")),
        "n": f"{row.get('n_readers')} readers x {row.get('n_cases')} cases",
        "note": "",
    }
