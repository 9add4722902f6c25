"""Where a model contests a reader's label: mistakenness fields, a ranked re-read queue.

The dataset layer over :mod:`multireader.stats.mistakenness`. Reads every reader's class calls
and a prediction field in bulk, scores every label, writes the scores to their own
fields (never into a reader's label), saves ranked views and stores the result as a run
(kind ``mistakenness``).

Fields written, for each reader field ``reader_x`` (and each consensus field):

- ``mistakenness_reader_x``: FiftyOne brain's classification mistakenness in [0, 1];
- ``label_quality_reader_x``: CROWDLAB's quality of that label in [0, 1] (low = likely
  wrong), which also weighs the other readers' votes;
- ``mistakenness_reader_x_mask``: ``1 - Dice`` against a predicted mask, when one is
  given;
- ``label_error_score`` = max over readers of ``1 - label_quality``, with
  ``label_error_reader`` and ``label_error_label`` naming whose label it is: the queue.
"""

from __future__ import annotations

import datetime as dt
import getpass

import numpy as np

from multireader.core import collect as C
from multireader.core import fields as F
from multireader.core import runs as RUNS
from multireader.core.bulk import write_sample_fields
from multireader.core.predictions import PredictionError, prediction_fields, read_probabilities
from multireader.core.results import AnalysisResults
from multireader.errors import MultireaderError
from multireader.progress import ProgressFn, report
from multireader.stats import mistakenness as M

MISTAKENNESS_PREFIX = "mistakenness_"
QUALITY_PREFIX = "label_quality_"
ERROR_SCORE, ERROR_READER, ERROR_LABEL = F.LABEL_ERROR_FIELDS[:3]
#: the saved view of the most likely label errors across readers, worst first
QUEUE_VIEW = "label_error_queue"
#: the sample tag and field the "flag for re-read" action writes
REREAD_TAG = "reread"
REREAD_FIELD = F.LABEL_ERROR_FIELDS[3]
#: labels kept per reader in the run's ranked list
TOP_N = 25


class MistakennessError(MultireaderError):
    """Mistakenness cannot be computed as asked; the message says why."""


def mistakenness_field(label_field: str) -> str:
    return MISTAKENNESS_PREFIX + label_field


def quality_field(label_field: str) -> str:
    return QUALITY_PREFIX + label_field


def reader_queue_view(reader: str) -> str:
    return f"label_errors_{F.reader_slug(reader)}"


def default_prediction_field(dataset) -> str:
    """The prediction field mistakenness and the model evaluation use when none is
    named: the label model's, else imported, else zero-shot predictions."""
    found = prediction_fields(dataset, "classification")
    if not found:
        raise MistakennessError(
            f"dataset {dataset.name!r} has no prediction field; run fit_label_model, "
            "zero_shot_classify or import_predictions first"
        )
    order = ("predictions_label_model", "predictions_imported", "predictions_zero_shot")
    return sorted(found, key=lambda n: (order.index(n) if n in order else len(order), n))[0]


def _consensus_fields(dataset) -> list[str]:
    from multireader.embed.label_model import consensus_label_fields

    return consensus_label_fields(dataset)


def _mask_scores(view, ids, pred_mask_field, readers, progress) -> dict[str, np.ndarray]:
    rs = C.select_readers(view._dataset, "mask", readers=readers)
    reads = C.mask_reads(view, rs)
    if reads.item_ids != ids:
        raise MistakennessError("sample order changed while reading masks; run again")
    pred_paths = view.values(f"{pred_mask_field}.mask_path")
    out = {f: np.full(len(ids), np.nan) for f in rs.fields}
    for i, pp in enumerate(pred_paths):
        if i % 50 == 0:
            report(progress, i / max(len(ids), 1), f"comparing masks {i}/{len(ids)}")
        pred = C.load_mask(pp) if pp else None
        if pred is None:
            continue
        for j, f in enumerate(rs.fields):
            path = reads.paths[j][i]
            if path:
                out[f][i] = M.mask_mistakenness(C.load_mask(path), pred)
    return {mistakenness_field(f): v for f, v in out.items()}


def compute_mistakenness(
    samples,
    pred_field: str | None = None,
    *,
    readers: list[str] | None = None,
    consensus_fields: list[str] | None = None,
    pred_mask_field: str | None = None,
    queue_size: int = 50,
    queue_threshold: float | None = None,
    run_key: str = "mistakenness",
    progress: ProgressFn | None = None,
) -> MistakennessResults:
    """Score every reader's (and consensus) label against ``pred_field``; see the module.

    The queue (saved view ``label_error_queue``) holds the ``queue_size`` samples whose
    least credible label (``label_error_score``) is the least credible of the study;
    give ``queue_threshold`` instead to keep every sample with ``label_error_score`` at
    least that. On a noisy study most samples have some reader outvoted, so a fixed
    threshold such as 0.5 would queue most of the study: a ranked top is what a team
    can actually re-read.

    Each reader's own queue (saved view ``label_errors_<reader>``) ranks THAT reader's
    labels by their own label quality (CROWDLAB's; with one reader, mistakenness) with
    its own cut: the reader's ``queue_size`` least credible labels, or every label of
    theirs with ``1 - label_quality >= queue_threshold``. It is not the reader's share
    of the overall queue: there a reader with many weakly contested labels (a biased or
    drifting one) can fill the whole top and leave a reliable reader's few clear-cut
    errors just below the overall cut, so that reader's re-read list would be empty.
    The results keep both: per reader ``n_in_queue`` (their labels above the overall
    cut) and ``n_in_queue_view`` / ``queue_view_cut`` (their own queue and its cut, in
    the ranked field's units).
    """
    view = samples.view()
    dataset = view._dataset
    RUNS.check_key(run_key)
    pred_field = pred_field or default_prediction_field(dataset)
    report(progress, 0.02, "reading reader labels")
    try:
        rs = C.select_readers(dataset, "classification", readers=readers)
    except C.ReaderSelectionError as e:
        raise MistakennessError(str(e)) from e
    if rs.level == "series":
        raise MistakennessError(
            "series-level reads give one label per series; mistakenness scores one label "
            "per image. Import slice-level reads to score them"
        )
    reads = C.categorical_reads(view, rs, scores=False, sessions=False)
    try:
        ids, classes, probs = read_probabilities(view, pred_field)
    except PredictionError as e:
        raise MistakennessError(str(e)) from e
    if ids != reads.item_ids:
        raise MistakennessError("sample order changed while reading; run again")
    if list(classes) != list(reads.classes):
        raise MistakennessError(
            f"{pred_field!r} predicts classes {classes}, the readers use {reads.classes}"
        )
    have = np.isfinite(probs).all(axis=1)
    if not have.any():
        raise MistakennessError(f"no sample of this view has a prediction in {pred_field!r}")
    codes = np.where(have[:, None], reads.codes, -1)
    p = np.where(have[:, None], probs, 1.0 / len(classes))
    cons_fields = _consensus_fields(dataset) if consensus_fields is None else list(consensus_fields)
    index = {c: k for k, c in enumerate(classes)}

    report(progress, 0.2, "scoring labels")
    columns: dict[str, np.ndarray] = {}
    brain = M.brain_mistakenness(codes, p)
    multi = (codes >= 0).sum(axis=1) >= 2
    cl = M.crowdlab(codes, p) if multi.any() and len(rs.fields) >= 2 else None
    for j, f in enumerate(rs.fields):
        columns[mistakenness_field(f)] = brain[:, j]
        if cl is not None:
            columns[quality_field(f)] = cl.label_quality[:, j]
    cons_results = {}
    for f in cons_fields:
        if not dataset.has_field(f):
            raise MistakennessError(f"no consensus field {f!r} on dataset {dataset.name!r}")
        labels = view.values(f"{f}.label")
        y = np.array([index.get(v, -1) if v is not None else -1 for v in labels])
        y = np.where(have, y, -1)
        columns[mistakenness_field(f)] = M.brain_mistakenness(y, p)
        if cl is not None:
            q = np.full(len(y), np.nan)
            ok = (y >= 0) & np.isfinite(cl.posterior).all(axis=1)
            q[ok] = cl.posterior[np.flatnonzero(ok), y[ok]]
            columns[quality_field(f)] = q
        pred = np.argmax(p, axis=1)
        read = y >= 0
        cons_results[f] = {
            "n_labels": int(read.sum()),
            "n_model_disagrees": int((pred[read] != y[read]).sum()),
            "mean_mistakenness": _mean(columns[mistakenness_field(f)]),
            "mean_label_quality": _mean(columns.get(quality_field(f))),
        }

    # the queue: the least credible label of each sample
    if cl is not None:
        doubt = 1.0 - cl.label_quality
        any_read = np.isfinite(doubt).any(axis=1)
        worst = np.argmax(np.where(np.isfinite(doubt), doubt, -1.0), axis=1)
        score = np.where(any_read, doubt[np.arange(len(ids)), worst], np.nan)
    else:  # one reader: the model alone
        doubt = 1.0 - M.self_confidence(codes, p)
        worst = np.zeros(len(ids), dtype=int)
        score = doubt[:, 0]
        any_read = np.isfinite(score)
    columns[ERROR_SCORE] = score
    threshold_given = queue_threshold
    queue_threshold = _cut(score, queue_size, queue_threshold)

    if pred_mask_field:
        columns.update(
            _mask_scores(view, ids, pred_mask_field, readers, _scaled(progress, 0.3, 0.7))
        )

    columns[ERROR_READER] = np.array(
        [rs.readers[w] if any_read[i] else None for i, w in enumerate(worst)], dtype=object
    )
    columns[ERROR_LABEL] = np.array(
        [
            classes[codes[i, w]] if any_read[i] and codes[i, w] >= 0 else None
            for i, w in enumerate(worst)
        ],
        dtype=object,
    )
    report(progress, 0.75, f"writing {len(columns)} fields")
    write_sample_fields(view, ids, columns)
    for name in columns:
        _mark_field(dataset, name, pred_field, run_key)

    report(progress, 0.85, "saving ranked views")
    shown = [pred_field, *rs.fields, *cons_fields, *columns]
    cuts = _reader_cuts(rs, codes, brain, cl, queue_size, threshold_given)
    _save_queue_views(dataset, view, rs, queue_threshold, cuts, shown)
    results = _summary(ids, rs, classes, codes, p, brain, cl, score, queue_threshold, cuts)
    results["consensus"] = cons_results
    results["fields"] = sorted(columns)
    results["n_samples"] = len(ids)
    results["n_predicted"] = int(have.sum())
    config = {
        "pred_field": pred_field,
        "pred_mask_field": pred_mask_field,
        "readers": rs.readers,
        "reader_fields": rs.fields,
        "consensus_fields": cons_fields,
        "classes": classes,
        "queue_size": queue_size,
        "queue_threshold": queue_threshold,
        "label_quality_method": "crowdlab" if cl is not None else "self_confidence",
    }
    RUNS.save(view, run_key, "mistakenness", config=config, results=results)
    report(progress, 1.0, f"{results['queue']['n']} labels in the re-read queue")
    return MistakennessResults(results, run_key=run_key, config=config)


class MistakennessResults(AnalysisResults):
    """What :func:`compute_mistakenness` scored: per reader, how many of their labels
    the model contests and how credible they are; the re-read queue.

    Tables: ``readers`` (labels, model disagrees, in queue, mean label quality,
    CROWDLAB weight, the reader's saved view), ``consensus`` (the same per consensus
    field).
    """

    run_kind = "mistakenness"
    sections = ("readers", "consensus")

    @property
    def queue(self) -> dict:
        return dict(self.results.get("queue") or {})

    @property
    def outputs(self) -> dict[str, list[str]]:
        views = [self.queue.get("view")] + [
            r.get("queue_view") for r in (self.results.get("readers") or {}).values()
        ]
        return self._outputs(fields=self.results.get("fields") or [], saved_views=views)

    def summary(self) -> dict:
        return {
            "run_key": self.run_key,
            "queue_view": self.queue.get("view"),
            "n_in_queue": self.queue.get("n"),
            "reader_rows": self.rows("readers"),
            "fields": self.results.get("fields") or [],
            "outputs": self.outputs,
        }

    def _rows(self, section: str) -> list[dict]:
        if section == "consensus":
            return [
                {"field": f, **{k: _round(v) if isinstance(v, float) else v for k, v in e.items()}}
                for f, e in (self.results.get("consensus") or {}).items()
            ]
        return [
            {
                "reader": r,
                "n_labels": v["n_labels"],
                "n_model_disagrees": v["n_model_disagrees"],
                "n_in_queue": v["n_in_queue"],
                "mean_label_quality": _round(v["mean_label_quality"]),
                "weight": _round(v["weight"]),
                "view": v["queue_view"],
            }
            for r, v in (self.results.get("readers") or {}).items()
        ]


def _round(v):
    return None if v is None else round(float(v), 3)


def _cut(score: np.ndarray, size: int, threshold: float | None) -> float:
    """The score a label needs to enter the queue: the given threshold, or the score of
    the ``size``-th worst label."""
    if threshold is not None:
        if not 0 <= threshold <= 1:
            raise MistakennessError(f"queue_threshold must be in [0, 1], got {threshold}")
        return float(threshold)
    if int(size) < 1:
        raise MistakennessError(f"queue_size must be at least 1, got {size}")
    s = np.sort(score[np.isfinite(score)])[::-1]
    if not len(s):
        return 1.0
    return float(s[min(int(size), len(s)) - 1])


def _reader_cuts(rs, codes, brain, cl, size: int, threshold: float | None) -> list[dict]:
    """Per reader, the field their own queue view ranks and the cut a label of theirs
    needs to enter it: label quality at most the quality of their ``size``-th least
    credible label (or ``1 - threshold``); with one reader (no CROWDLAB), mistakenness at
    least the ``size``-th largest (or ``threshold``). The cut is a stored value itself, so
    the view's ``<=`` / ``>=`` keeps exactly the labels counted here."""
    out = []
    for j, f in enumerate(rs.fields):
        read = codes[:, j] >= 0
        if cl is not None:
            q = np.where(read, cl.label_quality[:, j], np.nan)
            ok = q[np.isfinite(q)]
            if threshold is not None:
                cut = 1.0 - float(threshold)
            else:
                cut = float(np.sort(ok)[min(int(size), len(ok)) - 1]) if len(ok) else -1.0
            n = int(np.sum(ok <= cut))
            out.append({"field": quality_field(f), "ascending": True, "cut": cut, "n": n})
        else:
            m = np.where(read, brain[:, j], np.nan)
            cut = _cut(m, size, threshold) if np.isfinite(m).any() else 2.0
            n = int(np.sum(m[np.isfinite(m)] >= cut))
            out.append({"field": mistakenness_field(f), "ascending": False, "cut": cut, "n": n})
    return out


def _scaled(progress, a, b):
    from multireader.progress import scaled

    return scaled(progress, a, b)


def _mean(v) -> float | None:
    if v is None:
        return None
    v = np.asarray(v, dtype=float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else None


def _mark_field(dataset, name: str, pred_field: str, run_key: str) -> None:
    f = dataset.get_field(name)
    if f is None:
        return
    if name.startswith(QUALITY_PREFIX):
        meaning = "CROWDLAB label quality (0 = surely wrong, 1 = surely right)"
    elif name == ERROR_SCORE:
        meaning = "1 - the lowest label quality among the readers of the sample"
    else:
        meaning = "mistakenness (FiftyOne brain's formula; 1 = the model confidently disagrees)"
    info = dict(f.info or {})
    info[F.INFO_KEY] = {
        "role": "mistakenness",
        "meaning": meaning,
        "pred_field": pred_field,
        "run_key": run_key,
    }
    f.info = info
    f.save()


def _save_queue_views(dataset, view, rs, threshold, cuts, shown) -> None:
    """The queue views show the class calls, consensus, the model and the scores, plus
    the slicing metadata: what a reviewer needs to judge a label, without the boxes and
    masks that crowd the grid. Each reader's view ranks their own labels with their own
    cut (:func:`_reader_cuts`), not their share of the overall queue."""
    from fiftyone import ViewField as VF

    keep = [f for f in (*shown, *F.METADATA_FIELDS, REREAD_FIELD) if dataset.has_field(f)]
    view = view.select_fields(list(dict.fromkeys(keep)))
    queue = view.match(VF(ERROR_SCORE) >= threshold).sort_by(ERROR_SCORE, reverse=True)
    dataset.save_view(
        QUEUE_VIEW,
        queue,
        description=(
            f"The least credible labels (label_error_score >= {threshold:.3f}), worst "
            "first; label_error_reader says whose label"
        ),
        overwrite=True,
    )
    for reader, cut in zip(rs.readers, cuts, strict=True):
        name = cut["field"]
        ranked = (
            # null sorts below numbers in MongoDB: an unread label must not look certain
            view.match((VF(name) != None) & (VF(name) <= cut["cut"])).sort_by(name)  # noqa: E711
            if cut["ascending"]
            else view.match(VF(name) >= cut["cut"]).sort_by(name, reverse=True)
        )
        rel = "<=" if cut["ascending"] else ">="
        dataset.save_view(
            reader_queue_view(reader),
            ranked,
            description=(
                f"{reader}'s labels the evidence contests most ({name} {rel} "
                f"{cut['cut']:.3f}), worst first"
            ),
            overwrite=True,
        )


def _summary(ids, rs, classes, codes, p, brain, cl, score, threshold, cuts) -> dict:
    pred = np.argmax(p, axis=1)
    readers = {}
    for j, (reader, f) in enumerate(zip(rs.readers, rs.fields, strict=True)):
        read = codes[:, j] >= 0
        q = cl.label_quality[:, j] if cl is not None else 1.0 - brain[:, j]
        order = np.argsort(np.where(read, q, np.inf), kind="stable")[: min(TOP_N, read.sum())]
        readers[reader] = {
            "field": f,
            "n_labels": int(read.sum()),
            "n_model_disagrees": int((pred[read] != codes[read, j]).sum()),
            "mean_mistakenness": _mean(brain[:, j]),
            "mean_label_quality": _mean(cl.label_quality[:, j]) if cl is not None else None,
            "n_in_queue": int(np.sum(read & (1.0 - q >= threshold))),
            "weight": float(cl.reader_weights[j]) if cl is not None else None,
            "agreement_with_others": float(cl.reader_agreement[j]) if cl is not None else None,
            "queue_view": reader_queue_view(reader),
            "n_in_queue_view": cuts[j]["n"],
            "queue_view_cut": cuts[j]["cut"],
            "top": [
                {
                    "sample_id": ids[i],
                    "label": classes[codes[i, j]],
                    "model_label": classes[pred[i]],
                    "model_probability_of_label": float(p[i, codes[i, j]]),
                    "label_quality": float(q[i]),
                    "mistakenness": float(brain[i, j]),
                }
                for i in order
            ],
        }
    in_queue = np.isfinite(score) & (score >= threshold)
    out = {
        "readers": readers,
        "queue": {"view": QUEUE_VIEW, "threshold": threshold, "n": int(in_queue.sum())},
    }
    if cl is not None:
        out["crowdlab"] = {
            "model_weight": cl.model_weight,
            "model_error": cl.model_error,
            "baseline_error": cl.baseline_error,
            "consensus_likelihood": cl.consensus_likelihood,
        }
    return out


def flag_for_reread(
    samples,
    sample_ids: list[str] | None = None,
    *,
    reader: str | None = None,
    reason: str = "",
    requested_by: str | None = None,
    tag: str = REREAD_TAG,
) -> dict:
    """Tag samples for re-reading and record whose label is to be re-read, and why.

    ``reader`` defaults, per sample, to ``label_error_reader`` (the reader whose label the
    evidence doubts most). Adds ``tag`` to the samples and appends a request
    ``{reader, label_field, label, score, reason, requested_by, requested_at}`` to
    ``reread_requests``; reader labels are never touched. Returns the counts.
    """
    import fiftyone as fo

    view = samples.view()
    dataset = view._dataset
    if sample_ids is not None:
        view = view.select(sample_ids)
        missing = set(sample_ids) - set(view.values("id"))
        if missing:
            raise MistakennessError(
                f"{len(missing)} sample id(s) are not in this dataset: {sorted(missing)[:5]}"
            )
    if len(view) == 0:
        raise MistakennessError("no samples to flag: select samples in the grid first")
    paths = ["id", ERROR_READER if dataset.has_field(ERROR_READER) else "id"]
    ids, auto = view.values(paths)
    if not dataset.has_field(ERROR_READER):
        auto = [None] * len(ids)
    fields = F.reader_fields(dataset, ["classification"])
    by_reader = {str(m["reader"]): n for n, m in fields.items()}
    if reader is not None and str(reader) not in by_reader:
        raise MistakennessError(
            f"no classification field for reader {reader!r}; readers: {sorted(by_reader)}"
        )
    chosen = [str(reader) if reader is not None else a for a in auto]
    unknown = [ids[i] for i, r in enumerate(chosen) if r is None]
    if unknown:
        raise MistakennessError(
            f"{len(unknown)} sample(s) have no label_error_reader (run compute_mistakenness, "
            f"or choose the reader): {unknown[:5]}"
        )
    labels = {}
    for r in set(chosen):
        labels[r] = dict(zip(ids, view.values(f"{by_reader[r]}.label"), strict=True))
    scores = (
        dict(zip(ids, view.values(ERROR_SCORE), strict=True))
        if dataset.has_field(ERROR_SCORE)
        else {}
    )
    existing = (
        dict(zip(ids, view.values(REREAD_FIELD), strict=True))
        if dataset.has_field(REREAD_FIELD)
        else {}
    )
    who = requested_by or getpass.getuser()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    new = {}
    for sid, r in zip(ids, chosen, strict=True):
        req = fo.DynamicEmbeddedDocument(
            reader=r,
            label_field=by_reader[r],
            label=labels[r][sid],
            score=scores.get(sid) if reader is None else None,
            reason=reason or None,
            requested_by=who,
            requested_at=now,
        )
        new[sid] = list(existing.get(sid) or []) + [req]
    view.set_values(REREAD_FIELD, new, key_field="id")
    view.tag_samples(tag)
    return {"n_flagged": len(ids), "tag": tag, "readers": sorted(set(chosen))}
