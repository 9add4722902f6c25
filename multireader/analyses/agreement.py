"""Agreement and consensus on a FiftyOne view: read in bulk, compute, write in bulk, store a run.

This is the layer between the database and the statistics. It reads the readers' fields
with :mod:`multireader.core.collect`, hands plain arrays to :mod:`multireader.stats.agreement`,
:mod:`multireader.stats.masks`, :mod:`multireader.stats.boxes`, :mod:`multireader.stats.consensus` and
:mod:`multireader.stats.profiles`, writes per-sample fields in one bulk write (one update per
sample, all fields at once) and consensus labels with one ``set_values``, and stores the
dataset-level results as a FiftyOne run (:mod:`multireader.core.runs`).

It never writes into a reader's field: consensus goes to its own ``consensus_*`` field,
and every write here is checked against the reader-field registry first.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from multireader import __version__
from multireader.core import collect as C
from multireader.core import fields as F
from multireader.core import runs as RUNS
from multireader.core import storage
from multireader.core.bulk import write_labels, write_sample_fields
from multireader.core.results import AnalysisResults
from multireader.errors import MultireaderError
from multireader.progress import ProgressFn, report, scaled
from multireader.stats import disagreement as D
from multireader.stats.bootstrap import bootstrap
from multireader.stats.estimates import Estimate, fmt_num

#: label kinds compute_agreement can analyse, in the order they are processed
AGREEMENT_KINDS = ("classification", "series", "mask", "boxes")
CONSENSUS_METHODS = {
    "classification": ("dawid_skene", "majority"),
    "series": ("dawid_skene", "majority"),
    "mask": ("staple", "majority"),
    "boxes": ("wbf",),
}
#: statistic groups a user can choose (operator form and ``statistics=``)
STATISTIC_GROUPS = {
    "percent_agreement": "Percent agreement",
    "cohen_kappa": "Cohen's kappa per reader pair (unweighted; linear, quadratic if ordered)",
    "fleiss_kappa": "Fleiss' kappa, overall and per class",
    "krippendorff_alpha": "Krippendorff's alpha (nominal; ordinal, interval if ordered)",
    "gwet_ac": "Gwet's AC1 (AC2 if ordered)",
    "specific_agreement": "Category-specific agreement",
    "icc": "ICC of scores (Shrout & Fleiss, six forms)",
    "bland_altman": "Bland-Altman limits of scores, per reader pair",
    "overlap": "Masks: Dice and IoU per pair, generalised Dice, STAPLE uncertainty",
    "surface_distances": "Masks: HD95 and mean surface distance (mm)",
    "box_f1": "Boxes: matched F1 and IoU per pair, unmatched findings",
}


def profile_scale(ordered: bool) -> str:
    """The reader profiles' scale test for a label schema: "ordinal" when its classes are
    ordered (paired level shift, Wilcoxon), else "nominal" (Stuart-Maxwell)."""
    return "ordinal" if ordered else "nominal"


#: how the class calls' Fleiss' kappa, Gwet's AC1 and Krippendorff's alpha intervals are drawn
#: (operator form and ``interval=``)
INTERVALS = {
    "cases": "Cases random (bootstrap over patients or images; readers fixed)",
    "cases_and_readers": "Cases and readers random: two-way bootstrap over patients and readers",
    "cases_and_readers_jackknife": (
        "Cases and readers random: Gwet's variance, subject part + rater part (jackknife)"
    ),
}
#: the statistics a readers-random interval is computed for (summary key -> mrmc name)
READER_RANDOM_STATISTICS = {
    "fleiss_kappa": "fleiss_kappa",
    "gwet_ac1": "gwet_ac1",
    "krippendorff_alpha_nominal": "krippendorff_alpha_nominal",
    "krippendorff_alpha_ordinal": "krippendorff_alpha_ordinal",
    "krippendorff_alpha_interval": "krippendorff_alpha_interval",
}


#: how many problem items (unknown labels, unreadable masks) a run keeps verbatim
MAX_LISTED = 200


class AnalysisError(MultireaderError):
    """The analysis cannot run as asked; the message says why and what to change."""


# --------------------------------------------------------------------------- helpers
class _Clock:
    """Seconds spent reading the database, computing, and writing, for the run record."""

    def __init__(self):
        self.t = {"read_s": 0.0, "compute_s": 0.0, "write_s": 0.0}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.t[phase] += now - self._last
        self._last = now


def _mean_ci(values: np.ndarray, groups: np.ndarray | None, level: float, n_boot: int, seed: int):
    """Mean of per-item values with a percentile bootstrap CI over items or groups."""
    ok = ~np.isnan(values)
    v = values[ok]
    if v.size == 0:
        return Estimate(None, None, 0, "no item has two or more readers").to_json()
    mean = float(v.mean())
    if n_boot <= 0 or v.size < 2:
        return Estimate(mean, None, v.size).to_json()
    r = bootstrap(
        np.column_stack([v, np.ones(v.size)]),
        _mean_of_sums,
        groups=None if groups is None else groups[ok],
        n_boot=n_boot,
        level=level,
        seed=seed,
    )
    return Estimate(mean, (r.ci_low, r.ci_high), v.size).to_json()


def _mean_of_sums(sums: np.ndarray) -> np.ndarray:
    """(..., 2) summed (value, count) -> the mean."""
    return sums[..., 0] / np.maximum(sums[..., 1], 1e-12)


def _pairwise_mean(per_item: np.ndarray, groups, level: float, n_boot: int, seed: int) -> dict:
    """``per_item`` (n, R, R) with NaN where undefined -> RxR value/ci/n matrices."""
    r = per_item.shape[1]
    out = {k: [[None] * r for _ in range(r)] for k in ("value", "ci_low", "ci_high", "n")}
    for a in range(r):
        for b in range(a, r):
            s = _mean_ci(per_item[:, a, b], groups, level, n_boot, seed + 31 * a + b)
            for x, y in ((a, b), (b, a)):
                out["value"][x][y] = s["value"]
                out["ci_low"][x][y] = s["ci"][0] if s["ci"] else None
                out["ci_high"][x][y] = s["ci"][1] if s["ci"] else None
                out["n"][x][y] = s["n"]
    return out


def _matrix(m) -> np.ndarray:
    return np.array([[np.nan if v is None else float(v) for v in row] for row in m], dtype=float)


def _guard_not_reader_field(dataset, name: str) -> None:
    if name in F.reader_fields(dataset) or name.startswith(F.READER_PREFIX):
        raise AnalysisError(
            f"{name!r} is a reader field; results are never written into a reader's labels"
        )


def _expand_series(reads: C.CategoricalReads, columns: dict[str, np.ndarray]):
    """Series-level items -> every slice of the series gets its series' value."""
    if reads.members is None:
        return reads.item_ids, columns
    ids, index = [], []
    for i, members in enumerate(reads.members):
        ids.extend(members)
        index.extend([i] * len(members))
    index = np.asarray(index, dtype=np.int64)
    return ids, {k: np.asarray(v)[index] for k, v in columns.items()}


# --------------------------------------------------------------------------- agreement
def _keep_statistics(result: dict, chosen: set[str]) -> None:
    """Drop the class-call statistics the user did not choose (computing them is cheap)."""

    def keep(name: str) -> bool:
        return any(name.startswith(g) for g in chosen)

    summary = result["summary"]
    for block in ("overall", "per_class", "pairwise"):
        if isinstance(summary.get(block), dict):
            summary[block] = {k: v for k, v in summary[block].items() if keep(k)}
    scores = result.get("scores")
    if scores:
        if "icc" not in chosen:
            scores.pop("icc", None)
            scores.pop("krippendorff_alpha_interval", None)
        if "bland_altman" not in chosen:
            scores.pop("bland_altman", None)
        if not {"icc", "bland_altman"} & chosen:
            result["scores"] = None


@dataclass
class _KindResult:
    summary: dict
    ids: list[str]
    columns: dict[str, np.ndarray]
    disagreement: np.ndarray


def _readers_random_intervals(codes, k, summary, interval, level, n_boot, seed, groups):
    """Replace the case-only CI of Fleiss' kappa and Gwet's AC1 in ``summary["overall"]``
    with one where readers are random too (the case-only one is kept as ``ci_cases``),
    and say in ``summary["interval"]`` which was used."""
    from multireader.stats import mrmc

    info: dict = {"kind": interval, "description": INTERVALS[interval], "statistics": {}}
    summary["interval"] = info
    if interval == "cases":
        return
    overall = summary.get("overall") or {}
    for key, stat in READER_RANDOM_STATISTICS.items():
        entry = overall.get(key)
        if not isinstance(entry, dict) or entry.get("value") is None:
            continue
        try:
            if interval == "cases_and_readers":
                if n_boot <= 0:
                    continue
                r = mrmc.two_way_bootstrap(
                    codes, k, stat, groups=groups, n_boot=n_boot, level=level, seed=seed
                )
                detail = {
                    "value": r["value"],
                    "ci": list(r["ci"]) if r["ci"] else None,
                    "n_valid": r["n_valid"],
                    "n_boot": r["n_boot"],
                    "unit": "patient" if r["unit"] == "group" else "image",
                    "n_units": r["n_units"],
                    "n_raters": r["n_raters"],
                }
            else:
                r = mrmc.rater_subject_variance(codes, k, stat, groups=groups, level=level)
                detail = {
                    k2: (list(v) if isinstance(v, tuple) else v)
                    for k2, v in r.items()
                    if k2 != "statistic"
                }
        except ValueError as e:
            info["statistics"][key] = {"note": str(e)}
            continue
        info["statistics"][key] = detail
        entry["ci_cases"] = entry.get("ci")
        entry["ci"] = detail.get("ci")
        entry["interval"] = interval


def _classification_agreement(
    view, rs, level, n_boot, seed, by_patient, progress, clock, interval="cases"
) -> _KindResult:
    from multireader.stats import agreement as A

    reads = C.categorical_reads(view, rs)
    clock.lap("read_s")
    if not reads.classes:
        raise AnalysisError(f"no class labels found in {', '.join(rs.fields)} on this view")
    report(progress, 0.1, f"{len(rs.fields)} readers, {reads.n_items} items: statistics")
    groups = reads.groups if by_patient else None
    k = len(reads.classes)
    summary = A.categorical_summary(
        reads.codes, k, ordinal=reads.ordered, level=level, n_boot=n_boot, seed=seed, groups=groups
    )
    if interval != "cases":
        report(progress, 0.4, "readers and cases random: intervals of kappa and AC1")
    _readers_random_intervals(reads.codes, k, summary, interval, level, n_boot, seed, groups)
    scored = (~np.isnan(reads.scores)).sum(axis=0)
    scores_summary = None
    if (scored >= 2).sum() >= 2:
        report(progress, 0.6, "scores: ICC and Bland-Altman")
        scores_summary = A.continuous_summary(
            reads.scores, level=level, n_boot=n_boot, seed=seed, groups=groups
        )
    cols = D.categorical_disagreement(reads.codes, k, reads.ordered)
    if (scored > 0).any():
        cols.update(D.score_spread(reads.scores))
    dis = cols.pop("disagreement")
    cols["disagreement_class"] = dis
    ids, cols = _expand_series(reads, cols)
    dis_expanded = cols["disagreement_class"]
    n_unknown = len(reads.unknown)
    result = {
        "readers": reads.readers,
        "fields": reads.fields,
        "level": rs.level,
        "classes": reads.classes,
        "ordered": reads.ordered,
        "summary": summary,
        "scores": scores_summary,
        "n_unknown_labels": n_unknown,
        "unknown_labels": reads.unknown[:MAX_LISTED],
    }
    return _KindResult(result, ids, cols, dis_expanded)


#: worker processes for mask agreement (None: one per CPU); below MASK_POOL_MIN samples
#: the masks are compared in this process (starting workers would cost more)
MASK_WORKERS: int | None = None
MASK_POOL_MIN = 200


def _mask_item(item):
    """One sample's masks read and compared: (masks read, stats or None, errors, whether
    some readers drew nothing where others drew a lesion). Runs in a worker process."""
    from multireader.stats import masks as M

    paths, spacing, sample_id, fields = item
    masks, errors = [], []
    for j, path in enumerate(paths):
        try:
            masks.append(C.load_mask(path))
        except Exception as e:  # noqa: BLE001 - every unreadable mask is reported by name
            masks.append(None)
            errors.append({"sample_id": sample_id, "field": fields[j], "reason": str(e)})
    present = [m for m in masks if m is not None]
    if len(present) < 2:
        return len(present), None, errors, False
    shapes = {m.shape for m in present}
    if len(shapes) > 1:
        errors.append(
            {
                "sample_id": sample_id,
                "field": ", ".join(fields),
                "reason": f"readers' masks differ in shape: {sorted(shapes)}",
            }
        )
        return len(present), None, errors, False
    stats = M.mask_sample_stats(masks, spacing)
    empty = [not m.any() for m in present]
    return len(present), stats, errors, any(empty) and not all(empty)


def _map_masks(items, n: int):
    """:func:`_mask_item` of every item, in order, on a pool of worker processes (the
    masks are decoded and compared there; only the small results come back)."""
    from multireader.core.parallel import mp_context

    workers = MASK_WORKERS or os.cpu_count() or 1
    if workers < 2 or n < MASK_POOL_MIN:
        yield from map(_mask_item, items)
        return
    chunk = max(1, min(64, n // (workers * 8)))
    with mp_context().Pool(workers) as pool:
        yield from pool.imap(_mask_item, items, chunksize=chunk)


def _mask_agreement(
    view, rs, level, n_boot, seed, by_patient, surface, progress, clock
) -> _KindResult:
    reads = C.mask_reads(view, rs)
    clock.lap("read_s")
    n, r = len(reads.item_ids), len(rs.fields)
    pair = {k: np.full((n, r, r), np.nan) for k in ("dice", "iou", "hd95", "msd")}
    per = {
        k: np.full(n, np.nan)
        for k in ("mean_pairwise_dice", "generalized_dice", "staple_uncertainty")
    }
    n_read = np.zeros(n, dtype=np.int64)
    presence_split = np.zeros(n, dtype=bool)
    errors = []
    step = max(1, n // 100)
    items = (
        ([paths[i] for paths in reads.paths], reads.spacing[i], reads.item_ids[i], rs.fields)
        for i in range(n)
    )
    for i, (k, stats, errs, split) in enumerate(_map_masks(items, n)):
        if i % step == 0:
            report(progress, 0.05 + 0.85 * i / max(n, 1), f"masks: sample {i + 1} of {n}")
        errors += errs
        n_read[i] = k
        if stats is None:
            continue
        pair["dice"][i] = _matrix(stats["pairwise_dice"])
        pair["iou"][i] = _matrix(stats["pairwise_iou"])
        if surface:
            pair["hd95"][i] = _matrix(stats["pairwise_hd95"])
            pair["msd"][i] = _matrix(stats["pairwise_msd"])
        for key in per:
            v = stats.get(key)
            per[key][i] = np.nan if v is None else float(v)
        presence_split[i] = split
    groups = reads.groups if by_patient else None
    report(progress, 0.92, "masks: confidence intervals")
    pairwise = {
        "dice": _pairwise_mean(pair["dice"], groups, level, n_boot, seed),
        "iou": _pairwise_mean(pair["iou"], groups, level, n_boot, seed),
    }
    if surface:
        pairwise["hd95_mm"] = _pairwise_mean(pair["hd95"], groups, level, n_boot, seed)
        pairwise["msd_mm"] = _pairwise_mean(pair["msd"], groups, level, n_boot, seed)
    overall = {k: _mean_ci(v, groups, level, n_boot, seed) for k, v in per.items()}
    dis = np.where(n_read >= 2, 1.0 - per["mean_pairwise_dice"], np.nan)
    summary = {
        "readers": reads.readers,
        "fields": reads.fields,
        "n_items": int((n_read >= 2).sum()),
        "n_items_total": n,
        "spacing_known": bool(reads.spacing_known.all()),
        "pairwise": pairwise,
        "overall": overall,
        "n_errors": len(errors),
        "errors": errors[:MAX_LISTED],
    }
    cols = {
        "mask_n_readers": n_read,
        "mean_pairwise_dice": per["mean_pairwise_dice"],
        "generalized_dice": per["generalized_dice"],
        "staple_uncertainty": per["staple_uncertainty"],
        "disagreement_mask": dis,
        "_presence_split": presence_split,
    }
    return _KindResult(summary, reads.item_ids, cols, dis)


def _box_agreement(
    view, rs, level, n_boot, seed, by_patient, iou_threshold, progress, clock
) -> _KindResult:
    from multireader.stats import boxes as B

    reads = C.box_reads(view, rs)
    clock.lap("read_s")
    n, r = len(reads.item_ids), len(rs.fields)
    f1 = np.full((n, r, r), np.nan)
    miou = np.full((n, r, r), np.nan)
    unmatched = np.zeros(n, dtype=np.int64)
    n_read = np.zeros(n, dtype=np.int64)
    step = max(1, n // 100)
    for i in range(n):
        if i % step == 0:
            report(progress, 0.05 + 0.85 * i / max(n, 1), f"boxes: sample {i + 1} of {n}")
        per_reader = [reads.boxes[j][i] for j in range(r)]
        labels = [reads.labels[j][i] for j in range(r)]
        n_read[i] = sum(b is not None for b in per_reader)
        if n_read[i] < 2:
            continue
        res = B.pairwise_box_agreement(
            per_reader, labels_per_reader=labels, iou_threshold=iou_threshold
        )
        f1[i] = _matrix(res["f1"])
        miou[i] = _matrix(res["mean_iou"])
        unmatched[i] = int(res["n_unmatched"])
    groups = reads.groups if by_patient else None
    iu = np.triu_indices(r, 1)
    with np.errstate(invalid="ignore"), D.quiet_nan_warnings():
        mean_f1 = np.nanmean(f1[:, iu[0], iu[1]], axis=1) if r > 1 else np.full(n, np.nan)
    mean_f1 = np.where(n_read >= 2, mean_f1, np.nan)
    summary = {
        "readers": reads.readers,
        "fields": reads.fields,
        "iou_threshold": iou_threshold,
        "n_items": int((n_read >= 2).sum()),
        "n_items_total": n,
        "pairwise": {
            "f1": _pairwise_mean(f1, groups, level, n_boot, seed),
            "mean_iou": _pairwise_mean(miou, groups, level, n_boot, seed),
        },
        "overall": {
            "mean_pairwise_f1": _mean_ci(mean_f1, groups, level, n_boot, seed),
            "unmatched_per_sample": _mean_ci(
                np.where(n_read >= 2, unmatched, np.nan).astype(float), groups, level, n_boot, seed
            ),
        },
    }
    dis = np.where(n_read >= 2, 1.0 - mean_f1, np.nan)
    cols = {
        "unmatched_boxes": np.where(n_read >= 2, unmatched, 0),
        "mean_pairwise_box_f1": mean_f1,
        "disagreement_boxes": dis,
    }
    return _KindResult(summary, reads.item_ids, cols, dis)


def compute_agreement(
    samples,
    *,
    kinds: list[str] | None = None,
    readers: list[str] | None = None,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    by_patient: bool = True,
    statistics: list[str] | None = None,
    iou_threshold: float = 0.5,
    interval: str = "cases",
    write_fields: bool = True,
    run_key: str | None = "agreement",
    progress: ProgressFn | None = None,
) -> AgreementResults:
    """Inter-reader agreement on ``samples`` (a dataset or any view), per label kind.

    For each kind (class calls, series calls, masks, boxes) with at least two readers
    on the view: dataset-level statistics with bootstrap confidence intervals (over
    patients when ``by_patient`` and a ``patient_key`` exists, else over samples), and
    per-sample disagreement fields written in bulk on the view's samples (see
    :mod:`multireader.stats.disagreement`). The result is stored as run ``run_key`` (None:
    not stored) and returned as :class:`AgreementResults`.

    ``readers`` restricts the analysis to those reader ids (every kind must then have
    labels from each of them, or that kind is skipped with a note). ``statistics``
    chooses among :data:`STATISTIC_GROUPS` (default: all); a kind none of whose
    statistics is chosen is skipped.

    ``interval`` (:data:`INTERVALS`) chooses how the class calls' Fleiss' kappa and
    Gwet's AC1 intervals are drawn: ``"cases"`` (the bootstrap over patients, readers
    fixed), ``"cases_and_readers"`` (:func:`multireader.stats.mrmc.two_way_bootstrap`,
    patients and readers drawn independently) or ``"cases_and_readers_jackknife"``
    (:func:`multireader.stats.mrmc.rater_subject_variance`, Gwet's subject + rater
    variance). The case-only interval stays beside it as ``ci_cases``; the summary's
    ``interval`` block says which was used.
    """
    if interval not in INTERVALS:
        raise AnalysisError(f"unknown interval {interval!r}; choose one of {list(INTERVALS)}")
    chosen = set(statistics or STATISTIC_GROUPS)
    bad = sorted(chosen - set(STATISTIC_GROUPS))
    if bad:
        raise AnalysisError(f"unknown statistics {bad}; choose from {list(STATISTIC_GROUPS)}")
    surface_distances = "surface_distances" in chosen
    if not 0 < level < 1:
        raise AnalysisError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")
    if n_boot < 0:
        raise AnalysisError(f"n_boot must be 0 or more, got {n_boot}")
    if run_key is not None:
        RUNS.check_key(run_key)
    clock = _Clock()
    view = samples.view()
    dataset = view._dataset
    n_samples = len(view)
    if n_samples == 0:
        raise AnalysisError("the view is empty: there is nothing to measure agreement on")
    present = {m["kind"] for m in F.reader_fields(dataset).values()}
    if not present:
        raise AnalysisError(
            f"dataset {dataset.name!r} has no reader fields; import reader labels first "
            "(import_reader_labels)"
        )
    wanted = [k for k in AGREEMENT_KINDS if k in present] if not kinds else list(kinds)
    unknown = [k for k in wanted if k not in AGREEMENT_KINDS]
    if unknown:
        raise AnalysisError(
            f"unknown label kind(s) {unknown}; expected some of {list(AGREEMENT_KINDS)}"
        )

    results: dict = {"n_samples": n_samples, "kinds": {}, "skipped": {}}
    parts: list[tuple[list[str], np.ndarray]] = []
    columns: dict[str, dict[str, object]] = {}
    split = {}
    for idx, kind in enumerate(wanted):
        sub = scaled(progress, idx / len(wanted), (idx + 1) / len(wanted))
        if (kind == "mask" and not chosen & {"overlap", "surface_distances"}) or (
            kind == "boxes" and "box_f1" not in chosen
        ):
            results["skipped"][kind] = "none of its statistics was chosen"
            continue
        try:
            rs = C.select_readers(dataset, kind, readers=readers)
        except C.ReaderSelectionError as e:
            results["skipped"][kind] = str(e)
            continue
        if len(rs.fields) < 2:
            results["skipped"][kind] = (
                f"only one reader ({rs.readers[0]}) has {kind} labels: agreement needs two"
            )
            continue
        report(sub, 0.0, f"{kind}: reading {len(rs.fields)} reader fields")
        if kind in C.CATEGORICAL_KINDS:
            kr = _classification_agreement(
                view, rs, level, n_boot, seed, by_patient, sub, clock, interval
            )
            _keep_statistics(kr.summary, chosen)
        elif kind == "mask":
            kr = _mask_agreement(
                view, rs, level, n_boot, seed, by_patient, surface_distances, sub, clock
            )
        else:
            kr = _box_agreement(
                view, rs, level, n_boot, seed, by_patient, iou_threshold, sub, clock
            )
        clock.lap("compute_s")
        results["kinds"][kind] = kr.summary
        parts.append((kr.ids, kr.disagreement))
        if kind == "series":  # series calls repeat on every slice: keep slice fields for slices
            kr.columns = {
                "series_" + k if not k.startswith("disagreement") else "disagreement_series": v
                for k, v in kr.columns.items()
            }
        for name, arr in kr.columns.items():
            if name == "_presence_split":
                split.update(dict(zip(kr.ids, np.asarray(arr), strict=True)))
                continue
            columns.setdefault(name, {}).update(dict(zip(kr.ids, np.asarray(arr), strict=True)))
    if not results["kinds"]:
        raise AnalysisError(
            "no label kind has two or more readers on this view: "
            + "; ".join(f"{k}: {v}" for k, v in results["skipped"].items())
        )

    fields_written = []
    if write_fields:
        report(progress, 0.95, "writing per-sample disagreement fields")
        ids = C.sample_ids(view)
        clock.lap("read_s")
        pos = {sid: i for i, sid in enumerate(ids)}
        stack = np.full((len(parts), len(ids)), np.nan)
        for p, (pids, dis) in enumerate(parts):
            idx = np.fromiter((pos[s] for s in pids), dtype=np.int64, count=len(pids))
            stack[p, idx] = dis
        out: dict[str, np.ndarray] = {F.DISAGREEMENT: D.combine(list(stack))}
        n_readers = np.zeros(len(ids), dtype=np.int64)
        disagree = np.zeros(len(ids), dtype=bool)
        for name, mapping in columns.items():
            first = next(iter(mapping.values()))
            if isinstance(first, (bool, np.bool_)):
                arr = np.zeros(len(ids), dtype=bool)
            elif isinstance(first, (int, np.integer)):
                arr = np.zeros(len(ids), dtype=np.int64)
            else:
                arr = np.full(len(ids), np.nan)
            idx = np.fromiter((pos[s] for s in mapping), dtype=np.int64, count=len(mapping))
            arr[idx] = np.fromiter(mapping.values(), dtype=arr.dtype, count=len(mapping))
            if name in ("n_readers", "mask_n_readers", "series_n_readers"):
                n_readers = np.maximum(n_readers, arr)
                if name != "n_readers":
                    continue
            if name in ("readers_disagree", "series_readers_disagree"):
                disagree |= arr
                continue
            if name == "unmatched_boxes":
                disagree |= arr > 0
            out[name] = arr
        if split:
            idx = np.fromiter((pos[s] for s in split), dtype=np.int64, count=len(split))
            disagree[idx] |= np.fromiter(split.values(), dtype=bool, count=len(split))
        out[F.N_READERS] = n_readers
        out[F.READERS_DISAGREE] = disagree
        for name in out:
            _guard_not_reader_field(dataset, name)
        clock.lap("compute_s")
        fields_written = write_sample_fields(view, ids, out)
        F.update_sidebar_groups(dataset)
        clock.lap("write_s")
        dis = out[F.DISAGREEMENT]
        results["per_sample"] = {
            "n_disagree": int(disagree.sum()),
            "n_scored": int((~np.isnan(dis)).sum()),
            "mean_disagreement": float(np.nanmean(dis)) if (~np.isnan(dis)).any() else None,
        }
    results["fields_written"] = fields_written
    config = {
        "kinds": list(results["kinds"]),
        "readers": sorted({r for k in results["kinds"].values() for r in k["readers"]}),
        "fields": sorted({f for k in results["kinds"].values() for f in k["fields"]}),
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
        "bootstrap_unit": "patient"
        if by_patient and dataset.has_field(F.PATIENT_KEY)
        else "sample",
        "statistics": sorted(chosen),
        "iou_threshold": iou_threshold,
        "interval": interval,
        "fields_written": fields_written,
        "n_samples": n_samples,
    }
    results["config"] = config
    clock.lap("compute_s")
    results["timings"] = dict(clock.t)
    if run_key is not None:
        RUNS.save(view, run_key, "agreement", config, results)
        results["run_key"] = run_key
        clock.lap("write_s")
        results["timings"] = dict(clock.t)
    report(progress, 1.0, "agreement done")
    return AgreementResults(results, run_key=run_key, config=config)


# --------------------------------------------------------------------------- consensus
def _consensus_dir(dataset, field: str) -> str:
    """``consensus/<field>`` in the dataset's storage folder, beside its renders."""
    return os.path.join(storage.storage_dir(dataset), "consensus", field)


def _prepare_output_field(dataset, name: str, label_type) -> None:
    _guard_not_reader_field(dataset, name)
    existing = dataset.get_field(name)
    if existing is not None:
        import fiftyone as fo

        doc_type = getattr(existing, "document_type", None)
        if not isinstance(existing, fo.EmbeddedDocumentField) or doc_type is not label_type:
            raise AnalysisError(
                f"field {name!r} already exists as {existing}, not {label_type.__name__}; "
                "choose another output field"
            )
        meta = (existing.info or {}).get(F.INFO_KEY, {})
        if meta and meta.get("role") != "consensus":
            raise AnalysisError(f"field {name!r} is not a consensus field; choose another")


def _mark_consensus_field(dataset, name: str, provenance: dict) -> None:
    field = dataset.get_field(name)
    info = dict(field.info or {})
    info[F.INFO_KEY] = {"role": "consensus", **RUNS.jsonable(provenance)}
    field.info = info
    field.save()


def compute_consensus(
    samples,
    *,
    kind: str = "classification",
    method: str | None = None,
    readers: list[str] | None = None,
    output_field: str | None = None,
    run_key: str | None = None,
    profiles: bool = True,
    alpha: float = 0.05,
    max_iter: int = 1000,
    tol: float = 1e-6,
    diagonal_prior: float = 5.0,
    single_reads: str = "fit",
    init: str = "vote_shares",
    iou_threshold: float = 0.55,
    min_readers: int = 1,
    by_label: bool = False,
    progress: ProgressFn | None = None,
) -> ConsensusResults:
    """A consensus label from the readers' labels, written BESIDE them in its own field.

    Methods: class calls ``dawid_skene`` (default) or ``majority`` (ties are marked
    ``contested`` and get no label); masks ``staple`` (default) or ``majority``; boxes
    ``wbf`` (weighted box fusion). The field's metadata and the run record the method,
    its parameters, the readers used, the time and the plugin version. For class calls
    the run also holds each reader's profile against the consensus (confusion, prevalence
    bias, drift across sessions) with the flagged readers named, and the test made for
    the scale: on an ordered label schema the paired level shift of each reader against
    the others' median (``ordinal_bias``), else Stuart-Maxwell marginal homogeneity.

    Dawid-Skene (:class:`multireader.stats.consensus.DawidSkene`) runs until the
    objective rises by less than ``tol`` per read, or ``max_iter`` iterations;
    ``diagonal_prior`` (pseudo-reads on each confusion row's diagonal), ``single_reads``
    ("posterior_only": items read once do not fit the matrices) and ``init``
    ("majority" or "vote_shares") are passed through. The defaults (5, "fit",
    "vote_shares", 1000, 1e-6) are DawidSkene's: run to tolerance, with a prior that
    keeps sparse panels from drifting into relabelled latent classes; the
    majority-vote start is offered but not the default, since on the demo it lowered
    the planted-error precision@10 downstream (0.8 against 0.9). The run stores ``converged``,
    ``n_iter`` and ``log_likelihood``; a fit stopped at ``max_iter`` is named in the
    result's ``warnings``.
    """
    if kind not in CONSENSUS_METHODS:
        raise AnalysisError(
            f"no consensus for label kind {kind!r}; choose one of {sorted(CONSENSUS_METHODS)}"
        )
    method = method or CONSENSUS_METHODS[kind][0]
    if method not in CONSENSUS_METHODS[kind]:
        raise AnalysisError(
            f"method {method!r} does not apply to {kind} labels; choose one of {list(CONSENSUS_METHODS[kind])}"
        )
    view = samples.view()
    dataset = view._dataset
    if len(view) == 0:
        raise AnalysisError("the view is empty: there is nothing to build a consensus from")
    try:
        rs = C.select_readers(dataset, kind, readers=readers)
    except C.ReaderSelectionError as e:
        raise AnalysisError(str(e)) from e
    output_field = output_field or F.consensus_field(method, kind)
    run_key = run_key or f"consensus_{method}" + ("" if kind == "classification" else f"_{kind}")
    RUNS.check_key(run_key)
    params = {"alpha": alpha}
    if method == "dawid_skene":
        ds_options = {
            "max_iter": max_iter,
            "tol": tol,
            "diagonal_prior": diagonal_prior,
            "single_reads": single_reads,
            "init": init,
        }
        _check_ds_options(ds_options)
        params.update(ds_options)
    else:
        ds_options = None
    if kind == "boxes":
        params.update(iou_threshold=iou_threshold, min_readers=min_readers, by_label=by_label)
    provenance = {
        "method": method,
        "kind": kind,
        "params": params,
        "readers": rs.readers,
        "fields": rs.fields,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "plugin_version": __version__,
        "run_key": run_key,
    }
    report(progress, 0.02, f"{method}: reading {len(rs.fields)} reader fields")
    if kind in C.CATEGORICAL_KINDS:
        values, results = _class_consensus(
            view, rs, method, provenance, profiles, alpha, ds_options, progress
        )
        import fiftyone as fo

        label_type = fo.Classification
    elif kind == "mask":
        values, results = _mask_consensus(view, rs, method, provenance, output_field, progress)
        import fiftyone as fo

        label_type = fo.Segmentation
    else:
        values, results = _box_consensus(
            view, rs, provenance, iou_threshold, min_readers, by_label, progress
        )
        import fiftyone as fo

        label_type = fo.Detections
    report(progress, 0.95, f"writing {output_field}")
    _prepare_output_field(dataset, output_field, label_type)
    if isinstance(values, _Labels):
        if dataset.get_field(output_field) is None:  # as set_values would declare it
            dataset.add_sample_field(
                output_field, fo.EmbeddedDocumentField, embedded_doc_type=label_type
            )
        write_labels(view, output_field, values.ids, values.make())
    else:
        view.set_values(output_field, values, key_field="id")
    _mark_consensus_field(dataset, output_field, provenance)
    if kind == "mask":
        targets = dict(dataset.mask_targets)
        src = next((targets[f] for f in rs.fields if f in targets), None)
        if src:
            targets[output_field] = src
            dataset.mask_targets = targets
            dataset.save()
    dataset.add_dynamic_sample_fields(fields=[output_field])
    F.update_sidebar_groups(dataset)
    results.update({"output_field": output_field, "provenance": provenance})
    # "method" names the run type in FiftyOne's run config: the algorithm goes beside it
    config = {k: v for k, v in provenance.items() if k != "method"}
    config.update(algorithm=method, output_field=output_field, n_samples=len(view))
    RUNS.save(view, run_key, "consensus", config, results)
    results["run_key"] = run_key
    report(progress, 1.0, "consensus done")
    return ConsensusResults(results, run_key=run_key, config=config)


@dataclass
class _Labels:
    """Consensus labels to write: the sample ids and a function making the labels in
    the same order (called once, while they are written)."""

    ids: list[str]
    make: object


def _check_ds_options(o: dict) -> None:
    """Refuse bad Dawid-Skene options before anything is read, naming the option."""
    from multireader.stats import consensus as CN

    try:
        CN.DawidSkene(2, **o)._check_params()
    except ValueError as e:
        raise AnalysisError(f"Dawid-Skene: {e}") from e


def _not_converged_warning(ds, options: dict) -> str:
    return (
        f"Dawid-Skene did not converge: stopped at max_iter={options['max_iter']} "
        f"before the log-likelihood rose by less than tol={options['tol']:g} per read; "
        "the consensus may still change. Raise max_iter (or a diagonal_prior keeps "
        "sparse panels from drifting)."
    )


def _class_consensus(view, rs, method, provenance, want_profiles, alpha, ds_options, progress):
    import warnings

    import fiftyone as fo

    from multireader.stats import consensus as CN
    from multireader.stats import profiles as P

    reads = C.categorical_reads(view, rs)
    k = len(reads.classes)
    if k < 2:
        raise AnalysisError(f"a consensus needs at least two classes; found {reads.classes}")
    report(progress, 0.2, f"{method} on {reads.n_items} items")
    vote = CN.MajorityVote(k).fit(reads.codes)
    results: dict = {
        "classes": reads.classes,
        "readers": reads.readers,
        "n_items": reads.n_items,
        "warnings": [],
    }
    if method == "majority":
        labels, probas, contested = vote.labels_, vote.probas_, vote.contested_
        confidence = vote.share_
    else:
        with warnings.catch_warnings():
            # recorded in the run's warnings instead of printed
            warnings.simplefilter("ignore", CN.ConvergenceWarning)
            ds = CN.DawidSkene(k, **ds_options).fit(reads.codes)
        if not ds.converged_:
            results["warnings"].append(_not_converged_warning(ds, ds_options))
        labels, probas = ds.labels_, ds.probas_
        # an exact tie of posteriors is left unlabelled (-1), like a majority tie
        contested = (labels < 0) & (vote.n_reads_ > 0)
        confidence = probas.max(axis=1)
        results["dawid_skene"] = {
            "confusions": ds.confusions_,
            "priors": ds.priors_,
            "n_iter": ds.n_iter_,
            "converged": bool(ds.converged_),
            "log_likelihood": ds.log_likelihood_,
            "log_posterior": ds.log_posterior_,
            "n_fit_items": int(ds.n_fit_items_),
            **ds_options,
        }
    n_reads = vote.n_reads_
    results["n_contested"] = int(contested.sum())
    results["n_unread"] = int((n_reads == 0).sum())
    results["n_unknown_labels"] = len(reads.unknown)
    results["unknown_labels"] = reads.unknown[:MAX_LISTED]
    if want_profiles:
        report(progress, 0.6, "reader profiles: confusion, bias, drift")
        sessions = reads.sessions if (reads.sessions >= 0).any() else None
        prof = P.reader_profiles(
            reads.codes,
            labels,
            k,
            sessions=sessions,
            reader_names=reads.readers,
            class_names=reads.classes,
            session_names=reads.session_names if sessions is not None else None,
            alpha=alpha,
            reference_name=f"the {method.replace('_', '-')} consensus",
            scale=profile_scale(reads.ordered),
        )
        _add_pairwise_agreement(prof, reads, labels, k)
        results["profiles"] = prof
        results["flags"] = prof.get("flags", [])

    def label(i: int):
        if n_reads[i] == 0:
            return None
        lab = int(labels[i])
        return fo.Classification(
            label=reads.classes[lab] if lab >= 0 else None,
            confidence=float(confidence[i]),
            contested=bool(contested[i]),
            n_reads=int(n_reads[i]),
            probabilities=[float(x) for x in probas[i]],
            method=method,
        )

    def stored():
        """The labels as ``label(i).to_dict()`` stores them, without building each
        FiftyOne label (about 1 ms apiece): the same keys in the same order."""
        from bson import ObjectId

        conf, cont, nr = confidence.tolist(), contested.tolist(), n_reads.tolist()
        prob = probas.tolist()
        for i, lab in enumerate(labels.tolist()):
            if nr[i] == 0:
                yield None
                continue
            doc = {"_id": ObjectId(), "_cls": "Classification", "tags": []}
            if lab >= 0:
                doc["label"] = reads.classes[lab]
            doc.update(
                confidence=float(conf[i]),
                contested=bool(cont[i]),
                n_reads=int(nr[i]),
                probabilities=[float(x) for x in prob[i]],
                method=method,
            )
            yield doc

    if reads.members is None:
        # written a chunk at a time: never one label per sample of a million-sample
        # view in memory at once
        return _Labels(reads.item_ids, stored), results
    values = {}
    item_values = [label(i) for i in range(reads.n_items)]
    for members, v in zip(reads.members, item_values, strict=True):
        for sid in members:
            values[sid] = v.copy() if v is not None else None
    return values, results


def _add_pairwise_agreement(prof: dict, reads, reference: np.ndarray, k: int) -> None:
    """Each reader's Cohen's kappa with every other reader and with the consensus.

    Linearly weighted on an ordered scale. NaN (a pair sharing too few images, or a
    single class used) is stored as None with the profile's other undefined values.
    """
    from multireader.stats import agreement as A

    weights = "linear" if reads.ordered else None
    kappa, n = A.pairwise_cohen_kappa(reads.codes, k, weights=weights)
    for j, name in enumerate(reads.readers):
        entry = prof["per_reader"].setdefault(name, {})
        entry["kappa_weights"] = weights or "none"
        entry["pairwise_kappa"] = {
            other: {"value": kappa[j, o], "n": int(n[j, o])}
            for o, other in enumerate(reads.readers)
            if o != j
        }
        both = (reads.codes[:, j] >= 0) & (reference >= 0)
        try:
            value = A.cohen_kappa(reads.codes[both, j], reference[both], k, weights=weights)
        except ValueError as e:  # undefined (e.g. one class only): say why
            entry["kappa_vs_consensus"] = {"value": None, "n": int(both.sum()), "note": str(e)}
        else:
            entry["kappa_vs_consensus"] = {"value": value, "n": int(both.sum())}


def _mask_consensus(view, rs, method, provenance, output_field, progress):
    import fiftyone as fo
    from PIL import Image

    from multireader.io.dicom import media_name
    from multireader.stats import masks as M

    reads = C.mask_reads(view, rs)
    folder = _consensus_dir(view._dataset, output_field)
    os.makedirs(folder, exist_ok=True)
    n, r = len(reads.item_ids), len(rs.fields)
    sens = np.full((n, r), np.nan)
    spec = np.full((n, r), np.nan)
    values, errors = {}, []
    contested_px = 0
    step = max(1, n // 100)
    for i in range(n):
        if i % step == 0:
            report(progress, 0.05 + 0.85 * i / max(n, 1), f"{method}: sample {i + 1} of {n}")
        sid = reads.item_ids[i]
        masks = []
        for j, paths in enumerate(reads.paths):
            try:
                masks.append(C.load_mask(paths[i]))
            except Exception as e:  # noqa: BLE001 - reported by name, the rest goes on
                masks.append(None)
                errors.append({"sample_id": sid, "field": rs.fields[j], "reason": str(e)})
        present = [(j, m) for j, m in enumerate(masks) if m is not None]
        if not present:
            values[sid] = None
            continue
        if len({m.shape for _, m in present}) > 1:
            errors.append(
                {
                    "sample_id": sid,
                    "field": ", ".join(rs.fields),
                    "reason": "readers' masks differ in shape",
                }
            )
            values[sid] = None
            continue
        stack = np.stack([m for _, m in present])
        if method == "staple" and len(present) >= 2:
            res = M.staple(stack)
            prob = np.asarray(res.probability)
            fused = prob > 0.5
            for (j, _), se, sp in zip(present, res.sensitivity, res.specificity, strict=True):
                sens[i, j], spec[i, j] = se, sp
        else:
            votes = stack.sum(axis=0)
            fused = votes * 2 > len(present)
            contested_px += int((votes * 2 == len(present)).sum())
        path = os.path.join(folder, f"{media_name(sid)}.png")
        Image.fromarray(fused.astype(np.uint8)).save(path, compress_level=1)
        values[sid] = fo.Segmentation(mask_path=path, method=method, n_reads=len(present))
    results = {
        "readers": reads.readers,
        "n_items": n,
        "n_errors": len(errors),
        "errors": errors[:MAX_LISTED],
    }
    if method == "staple":
        with D.quiet_nan_warnings():
            results["staple"] = {
                "mean_sensitivity": np.nanmean(sens, axis=0),
                "mean_specificity": np.nanmean(spec, axis=0),
                "n_items": (~np.isnan(sens)).sum(axis=0),
            }
    else:
        results["contested_pixels"] = contested_px
    return values, results


def _box_consensus(view, rs, provenance, iou_threshold, min_readers, by_label, progress):
    import fiftyone as fo

    from multireader.stats import boxes as B

    reads = C.box_reads(view, rs)
    n, r = len(reads.item_ids), len(rs.fields)
    values = {}
    n_boxes = n_contested = 0
    step = max(1, n // 100)
    for i in range(n):
        if i % step == 0:
            report(progress, 0.05 + 0.85 * i / max(n, 1), f"wbf: sample {i + 1} of {n}")
        per = [reads.boxes[j][i] for j in range(r)]
        if all(b is None for b in per):
            values[reads.item_ids[i]] = None
            continue
        labels = [reads.labels[j][i] for j in range(r)]
        # A reader who did not read the image stays None: fusion scales confidence by
        # the share of readers present, and an absent reader is not a negative read.
        # Readers outline the same finding but may call it differently, so outlines are
        # fused regardless of label (unless by_label), and the label is then voted.
        fused = B.weighted_box_fusion(
            per,
            scores_per_reader=[reads.scores[j][i] for j in range(r)],
            labels_per_reader=labels if by_label else None,
            iou_threshold=iou_threshold,
            min_readers=min_readers,
        )
        dets = []
        for b, s, nr, mem in zip(
            fused["boxes"], fused["scores"], fused["n_readers"], fused["members"], strict=True
        ):
            calls = [labels[j][k] for j, k in mem if labels[j] is not None]
            top = Counter(c for c in calls if c is not None).most_common()
            contested = len(top) > 1 and top[0][1] == top[1][1]
            n_contested += contested
            dets.append(
                fo.Detection(
                    label=None if not top or contested else str(top[0][0]),
                    bounding_box=[float(x) for x in b],
                    confidence=float(s),
                    n_readers=int(nr),
                    readers=sorted({reads.readers[j] for j, _ in mem}),
                    calls=[str(c) for c in calls],
                    contested=bool(contested),
                    method="wbf",
                )
            )
        n_boxes += len(dets)
        values[reads.item_ids[i]] = fo.Detections(detections=dets)
    return values, {
        "readers": reads.readers,
        "n_items": n,
        "n_boxes": n_boxes,
        "n_contested_labels": n_contested,
    }


# --------------------------------------------------------------------------- results
class AgreementResults(AnalysisResults):
    """What :func:`compute_agreement` found: per label kind, the dataset-level
    statistics with their intervals; the per-sample fields it wrote.

    Tables (:meth:`rows`): ``statistics`` (every kind's all-reader statistics, formatted
    to 3 decimals, as the operator shows them), ``skipped`` (kinds not analysed and why),
    ``overall`` (the class calls' all-reader statistics as stored estimates, with their
    key), ``pairwise`` (Cohen's kappa of every two readers on class calls, with CI and n),
    ``per_class`` (Fleiss' kappa of each class), ``terms`` (the items and reads behind
    each statistic's agreement and chance terms).
    """

    run_kind = "agreement"
    sections = ("statistics", "skipped", "overall", "pairwise", "per_class", "terms")

    @property
    def classification(self) -> dict | None:
        """The class-call block (``readers``, ``classes``, ``summary``, ...) or None."""
        return (self.results.get("kinds") or {}).get("classification")

    @property
    def readers(self) -> list[str]:
        return list((self.classification or {}).get("readers") or [])

    @property
    def classes(self) -> list[str]:
        return list((self.classification or {}).get("classes") or [])

    @property
    def n_boot(self) -> int | None:
        return self.config.get("n_boot", self.results.get("config", {}).get("n_boot"))

    def bootstrap(self) -> dict | None:
        """``{"n_boot", "unit", "level"}`` of the class calls' intervals (None without)."""
        cls = self.classification
        if not cls:
            return None
        s = cls["summary"]
        unit = {"group": "patient", "item": "image"}.get(s["bootstrap_unit"], s["bootstrap_unit"])
        return {"n_boot": s["n_boot"], "unit": unit, "level": s.get("level", 0.95)}

    def interval(self) -> dict | None:
        """The class calls' interval choice ``{"kind", "description", "statistics"}``
        (kind "cases" for a run stored before the choice existed)."""
        cls = self.classification
        if not cls:
            return None
        return cls["summary"].get("interval") or {
            "kind": "cases",
            "description": INTERVALS["cases"],
            "statistics": {},
        }

    def pairwise_kappa(self) -> dict | None:
        """The class calls' Cohen's kappa matrices ``{"value", "ci_low", "ci_high", "n"}``."""
        cls = self.classification
        return (cls["summary"].get("pairwise") or {}).get("cohen_kappa") if cls else None

    def overall(self, kind: str, statistic: str) -> dict | None:
        """The stored estimate of dataset-level ``statistic`` for masks or boxes."""
        k = (self.results.get("kinds") or {}).get(kind) or {}
        return (k.get("overall") or {}).get(statistic)

    @property
    def outputs(self) -> dict[str, list[str]]:
        return self._outputs(fields=self.results.get("fields_written") or [])

    def summary(self) -> dict:
        return {
            "run_key": self.run_key,
            "fields_written": self.results.get("fields_written", []),
            "n_disagree": (self.results.get("per_sample") or {}).get("n_disagree"),
            "statistics": self.rows("statistics"),
            "skipped": self.rows("skipped"),
            "outputs": self.outputs,
        }

    def _rows(self, section: str) -> list[dict]:
        if section == "statistics":
            return _statistic_rows(self.results)
        if section == "skipped":
            return [
                {"kind": k, "reason": v} for k, v in (self.results.get("skipped") or {}).items()
            ]
        cls = self.classification
        if not cls:
            return []
        s = cls["summary"]
        if section == "overall":
            return [{"key": k, **e} for k, e in (s.get("overall") or {}).items()]
        if section == "terms":
            shown = s.get("overall") or {}
            return [
                {
                    "key": k,
                    "agreement_items": (t.get("agreement") or {}).get("n_items"),
                    "agreement_reads": (t.get("agreement") or {}).get("n_reads"),
                    "chance_items": (t.get("chance") or {}).get("n_items"),
                    "chance_reads": (t.get("chance") or {}).get("n_reads"),
                }
                for k, t in (s.get("terms") or {}).items()
                if k in shown
            ]
        if section == "per_class":
            per = (s.get("per_class") or {}).get("fleiss_kappa") or []
            return [{"class": c, **e} for c, e in zip(cls["classes"], per, strict=False)]
        pk = self.pairwise_kappa()
        if not pk:
            return []
        r = cls["readers"]
        return [
            {
                "readers": [r[i], r[j]],
                "value": pk["value"][i][j],
                "ci": [pk["ci_low"][i][j], pk["ci_high"][i][j]],
                "n": pk["n"][i][j],
            }
            for i in range(len(r))
            for j in range(i + 1, len(r))
        ]


class ConsensusResults(AnalysisResults):
    """What :func:`compute_consensus` built: the consensus field, its method and
    parameters, the contested count, and (class calls) each reader's profile.

    Tables: ``flags`` (readers flagged for bias or drift), ``readers`` (each reader
    against the consensus: reads, accuracy, kappa, confusion, prevalence, drift),
    ``params`` (the method's parameters, one per row).
    """

    run_kind = "consensus"
    sections = ("flags", "readers", "params")

    @property
    def output_field(self) -> str | None:
        return self.results.get("output_field") or self.config.get("output_field")

    @property
    def method(self) -> str | None:
        return self.config.get("algorithm") or (self.results.get("provenance") or {}).get("method")

    @property
    def label_kind(self) -> str | None:
        """The label kind the consensus is of (classification, series, mask, boxes)."""
        return self.config.get("kind") or (self.results.get("provenance") or {}).get("kind")

    @property
    def readers(self) -> list[str]:
        return list(self.config.get("readers") or self.results.get("readers") or [])

    @property
    def params(self) -> dict:
        return dict(
            self.config.get("params") or (self.results.get("provenance") or {}).get("params") or {}
        )

    @property
    def profiles(self) -> dict:
        return self.results.get("profiles") or {}

    @property
    def warnings(self) -> list[str]:
        """What the user should know about this consensus (e.g. Dawid-Skene stopped at
        ``max_iter`` before converging)."""
        return list(self.results.get("warnings") or [])

    def convergence(self) -> dict | None:
        """Dawid-Skene's ``{"converged", "n_iter", "log_likelihood", "max_iter", "tol",
        ...}`` (None for a method without EM iterations)."""
        ds = self.results.get("dawid_skene")
        if not ds:
            return None
        keys = ("converged", "n_iter", "log_likelihood", "max_iter", "tol",
                "diagonal_prior", "single_reads", "init")  # fmt: skip
        return {k: ds.get(k) for k in keys if k in ds}

    def convergence_text(self) -> str | None:
        """One sentence: whether Dawid-Skene converged, in how many iterations, with
        its final log-likelihood."""
        c = self.convergence()
        if not c:
            return None
        ll = c.get("log_likelihood")
        ll_text = f"{ll:.3f}" if isinstance(ll, int | float) else "undefined"
        if c.get("converged"):
            head = f"Dawid-Skene converged in {c.get('n_iter')} iterations"
        else:
            head = (
                f"Dawid-Skene did NOT converge: stopped at max_iter={c.get('max_iter')} "
                f"({c.get('n_iter')} iterations)"
            )
        tol = c.get("tol")
        tol_text = f" (tol {tol:g} per read)" if isinstance(tol, int | float) else ""
        return f"{head}{tol_text}; final log-likelihood {ll_text}."

    @property
    def outputs(self) -> dict[str, list[str]]:
        return self._outputs(fields=[self.output_field])

    def summary(self) -> dict:
        out = {
            "run_key": self.run_key,
            "output_field": self.output_field,
            "n_contested": self.results.get("n_contested"),
            "flags": self.rows("flags"),
            "warnings": self.warnings,
            "outputs": self.outputs,
        }
        c = self.convergence()
        if c:
            out.update(
                converged=c.get("converged"),
                n_iter=c.get("n_iter"),
                log_likelihood=c.get("log_likelihood"),
                convergence=self.convergence_text(),
            )
        return out

    def _rows(self, section: str) -> list[dict]:
        if section == "params":
            return [{"parameter": k, "value": v} for k, v in self.params.items()]
        if section == "flags":
            return [
                {
                    "reader": f.get("reader"),
                    "kind": f.get("kind"),
                    "p_holm": f.get("p_holm"),
                    "detail": f.get("detail"),
                }
                for f in self.results.get("flags") or self.profiles.get("flags") or []
            ]
        out = []
        for r, p in (self.profiles.get("per_reader") or {}).items():
            kvc = p.get("kappa_vs_consensus")
            out.append(
                {
                    "reader": r,
                    "n_reads": p.get("n_reads"),
                    "accuracy_vs_consensus": p.get("accuracy"),
                    "kappa_vs_consensus": kvc.get("value") if isinstance(kvc, dict) else kvc,
                    "kappa_n": kvc.get("n") if isinstance(kvc, dict) else None,
                    "confusion": p.get("confusion"),
                    "prevalence": p.get("prevalence"),
                    "drift": p.get("drift"),
                    "ordinal_bias": p.get("ordinal_bias"),
                    "marginal_homogeneity": p.get("marginal_homogeneity"),
                }
            )
        return out


# --------------------------------------------------------------------------- display
def _statistic_rows(results) -> list[dict]:
    """Dataset-level statistics of an agreement result as flat table rows for display.

    ``{"kind", "statistic", "value", "ci", "n"}``: value and CI formatted to 3 decimals,
    an empty value where the statistic is undefined (its note says why).
    """
    rows = []
    for kind, res in results.get("kinds", {}).items():
        blocks = []
        if "summary" in res:
            blocks.append(("", res["summary"].get("overall", {})))
            if res.get("scores"):
                blocks.append(("score ", res["scores"].get("icc", {})))
        else:
            blocks.append(("", res.get("overall", {})))
        for prefix, block in blocks:
            for name, s in block.items():
                if not isinstance(s, dict) or "value" not in s:
                    continue
                ci = s.get("ci")
                rows.append(
                    {
                        "kind": kind,
                        "statistic": prefix + name,
                        "value": fmt_num(s.get("value"), 3, missing="")
                        or (s.get("note") or "undefined"),
                        "ci": f"[{fmt_num(ci[0], 3)}, {fmt_num(ci[1], 3)}]" if ci else "",
                        "n": s.get("n"),
                    }
                )
    return rows
