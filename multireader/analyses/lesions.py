"""Lesion agreement in 3-D on a FiftyOne view: every reader's volume of every series,
lesions matched across readers, detection, boundary and volume agreement in mm.

The flow, one series at a time (memory bounded by one series; series in a worker pool):

1. read every slice's geometry and each reader's mask path in bulk (``values``);
2. per series: the voxel grid from the slice positions (:mod:`multireader.io.volume`:
   slice spacing from the sorted positions, uneven spacing and gantry tilt refused with
   the reason), each reader's 3-D label volume (:mod:`multireader.io.mask_volume`), the
   reader's lesions (3-D connected components, or the reader's own instance values),
   the candidates matched across readers (:func:`multireader.stats.lesions.match_readers`),
   per matched pair Dice, IoU, HD95, ASSD and NSD in mm
   (:func:`multireader.stats.surface.pair_metrics`), and a 3-D STAPLE / majority
   consensus of the readers' volumes;
3. dataset-level statistics with patient-bootstrap intervals; per-slice lesion labels,
   the series disagreement score and the consensus masks written in bulk; the whole
   result stored as a run.

Reader fields are only read. Everything written is a new field: ``lesions``
(``fo.Detections``, one detection per reader per lesion per slice, linked across slices
and readers by a shared ``fo.Instance``), ``lesion_disagreement`` and
``consensus_<method>_volume``.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from itertools import combinations

import numpy as np

from multireader import __version__
from multireader.core import collect as C
from multireader.core import fields as F
from multireader.core import runs as RUNS
from multireader.core import storage
from multireader.core.bulk import write_sample_fields
from multireader.core.results import AnalysisResults
from multireader.errors import MultireaderError
from multireader.io import mask_volume as MV
from multireader.io import volume as VOL
from multireader.progress import ProgressFn, report
from multireader.stats import agreement as A
from multireader.stats import lesions as L

RUN_KIND = "lesions"
LESIONS_FIELD = F.LESIONS
LESION_DISAGREEMENT = F.LESION_DISAGREEMENT
CONSENSUS_METHODS = ("staple", "majority")
PAIR_METRICS = ("dice", "iou", "hd95", "assd", "nsd")
INSTANCE_SOURCES = ("components", "labels")
MAX_LISTED = 200


class LesionAnalysisError(MultireaderError):
    """The lesion analysis cannot run on this view (the message says why)."""


consensus_volume_field = F.consensus_volume_field


# --------------------------------------------------------------------- one series


def _bbox_union(b1, b2):
    return tuple(
        slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(b1, b2, strict=True)
    )


def _grow(bbox, shape, margin: int = 1):
    return tuple(
        slice(max(0, s.start - margin), min(n, s.stop + margin))
        for s, n in zip(bbox, shape, strict=True)
    )


def _slice_boxes(
    mask3d: np.ndarray, offset: tuple, shape
) -> list[tuple[int, list[float], np.ndarray]]:
    """Per slice of one lesion: (slice index, relative [x, y, w, h], cropped bool mask).

    ``mask3d`` is the lesion's bounding box, which starts at voxel ``offset`` of the
    series volume of ``shape``."""
    out = []
    z0, y0, x0 = offset
    for dz in range(mask3d.shape[0]):
        plane = mask3d[dz]
        if not plane.any():
            continue
        rows = np.flatnonzero(plane.any(1))
        cols = np.flatnonzero(plane.any(0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        box = [
            (x0 + c0) / shape[2],
            (y0 + r0) / shape[1],
            (c1 - c0) / shape[2],
            (r1 - r0) / shape[1],
        ]
        out.append((z0 + dz, box, plane[r0:r1, c0:c1].copy()))
    return out


def _union_box(volumes: list, shape) -> tuple | None:
    """The bounding box of every reader's foreground, one voxel wider (None if empty)."""
    occ = [np.zeros(n, bool) for n in shape]
    for v in volumes:
        if v is None:
            continue
        flat = v.reshape(shape[0], -1).any(1)
        if not flat.any():
            continue
        occ[0] |= flat
        z = np.flatnonzero(flat)
        sub = v[z[0] : z[-1] + 1]
        occ[1] |= sub.any(axis=(0, 2))
        occ[2] |= sub.any(axis=(0, 1))
    if not occ[0].any():
        return None
    box = []
    for a in range(3):
        idx = np.flatnonzero(occ[a])
        box.append(slice(max(0, idx[0] - 1), min(shape[a], idx[-1] + 2)))
    return tuple(box)


def analyse_series(job: dict) -> dict:
    """Everything about one series that needs its voxels; runs in a worker process.

    The readers' volumes are cropped to the bounding box of their union (every voxel
    outside is background for every reader), so the cost follows the lesions, not the
    series. Returns small results only: lesion tables, matched pairs' metrics, per-slice
    boxes with cropped masks, and the consensus masks' file paths.
    """
    from multireader.stats import masks as M
    from multireader.stats import surface as S

    t0 = time.perf_counter()
    shape = tuple(job["shape"])
    spacing = tuple(job["spacing"])
    readers = job["readers"]
    n_readers = len(readers)
    out = {"series": job["series"], "errors": []}
    volumes = []
    for r, paths in enumerate(job["paths"]):
        try:
            volumes.append(MV.assemble_volume(paths, shape, threads=job.get("threads", 1)))
        except MultireaderError as e:
            out["errors"].append({"series": job["series"], "reader": readers[r], "reason": str(e)})
            volumes.append(None)
    present = [v is not None for v in volumes]
    out["present"] = present
    box = _union_box(volumes, shape)
    if box is None:
        box = tuple(slice(0, 1) for _ in shape)
    origin = tuple(b.start for b in box)
    crop_shape = tuple(b.stop - b.start for b in box)
    crops = [None if v is None else v[box] for v in volumes]
    del volumes
    lesions: list[L.Lesions | None] = []
    for v in crops:
        if v is None:
            lesions.append(None)
        elif job["instances"] == "labels":
            lab, n, values = L.instances_from_labels(v)
            lesions.append(L.lesions_of(lab, n, spacing, values))
        else:
            lab, n, boxes = L.label_lesions(v, job["connectivity"], return_boxes=True)
            lesions.append(L.lesions_of(lab, n, spacing, bbox=boxes))
    rule = job["rule"]
    threshold = job["max_distance_mm"] if rule == "centroid" else job["min_overlap"]
    scores: dict = {}
    cand = L.match_readers(lesions, rule, threshold, scores)
    # pairwise one-to-one matches for detection F1 (each pair on its own, not through
    # the candidates)
    n_les = np.array([les.n if les is not None else 0 for les in lesions])
    matched = np.zeros((n_readers, n_readers), dtype=np.int64)
    for a, b in combinations(range(n_readers), 2):
        if lesions[a] is None or lesions[b] is None:
            continue
        sc = scores.get((a, b))
        if sc is None:
            sc = (
                scores[(b, a)].T
                if (b, a) in scores
                else L.pair_scores(lesions[a], lesions[b], rule)
            )
        matched[a, b] = matched[b, a] = len(L.match_pair(sc, rule, threshold))
    out["n_lesions"] = n_les.tolist()
    out["matched"] = matched.tolist()
    offset_mm = np.asarray(origin, float) * np.asarray(spacing)
    cands = []
    for c, row in enumerate(cand):
        members = [(r, int(i)) for r, i in enumerate(row) if i >= 0]
        vol = [None] * n_readers
        for r, i in members:
            vol[r] = float(lesions[r].volume_ml[i])
        pairs = {}
        for (ra, ia), (rb, ib) in combinations(members, 2):
            la, lb = lesions[ra], lesions[rb]
            pbox = _grow(_bbox_union(la.bbox[ia], lb.bbox[ib]), crop_shape)
            m = S.pair_metrics(
                la.labels[pbox] == ia + 1,
                lb.labels[pbox] == ib + 1,
                spacing,
                tolerance_mm=job["nsd_tolerance_mm"],
            )
            pairs[f"{readers[ra]}|{readers[rb]}"] = {k: m[k] for k in PAIR_METRICS}
        boxes = []
        for r, i in members:
            les = lesions[r]
            lb = les.bbox[i]
            start = tuple(o + b.start for o, b in zip(origin, lb, strict=True))
            for z, rel, crop in _slice_boxes(les.labels[lb] == i + 1, start, shape):
                boxes.append({"reader": readers[r], "slice": int(z), "box": rel, "mask": crop})
        zr = [lesions[r].bbox[i][0] for r, i in members]
        centroid = np.mean([lesions[r].centroid_mm[i] for r, i in members], axis=0) + offset_mm
        cands.append(
            {
                "index": c,
                "found": [bool(i >= 0) for i in row],
                "volume_ml": vol,
                "pairs": pairs,
                "slices": [
                    origin[0] + min(s.start for s in zr),
                    origin[0] + max(s.stop for s in zr) - 1,
                ],
                "centroid_mm": centroid.tolist(),
                "instance_values": [
                    lesions[r].values[i] if i >= 0 else None for r, i in enumerate(row)
                ],
                "boxes": boxes,
            }
        )
    out["candidates"] = cands
    # whole-series overlap and consensus work on the voxels some reader outlined (the
    # union); every other voxel of the series is background for every reader
    idx = [r for r in range(n_readers) if crops[r] is not None]
    union = np.zeros(crop_shape, dtype=bool)
    for r in idx:
        union |= crops[r] > 0
    where = np.flatnonzero(union)
    votes_of = {r: (crops[r].reshape(-1)[where] > 0) for r in idx}
    n_total = int(np.prod(shape))
    dices = []
    for a, b in combinations(idx, 2):
        s = votes_of[a].sum() + votes_of[b].sum()
        dices.append(2 * np.logical_and(votes_of[a], votes_of[b]).sum() / s if s else 1.0)
    out["series_dice"] = float(np.mean(dices)) if dices else None
    # STAPLE has no spatial term: the union voxels are fitted as a (R, n, 1) image with
    # every other voxel of the series as background, the estimate of the whole volume
    out["consensus"] = {}
    if len(idx) >= 2 and job.get("consensus"):
        stack = np.stack([votes_of[r] for r in idx])
        for method in job["consensus"]:
            entry = {"readers": [readers[r] for r in idx]}
            if method == "staple":
                st = M.Staple().fit(stack[:, :, None], background=n_total - where.size)
                fused_u = st.probability_[:, 0] > 0.5
                entry.update(
                    sensitivity=[float(x) for x in st.sensitivity_],
                    specificity=[float(x) for x in st.specificity_],
                    converged=bool(st.converged_),
                    n_iter=int(st.n_iter_),
                )
            else:
                votes = stack.sum(0)
                fused_u = votes * 2 > len(idx)
                pos = int(fused_u.sum())
                neg = n_total - pos
                entry.update(
                    sensitivity=[
                        float((votes_of[r] & fused_u).sum() / pos) if pos else None for r in idx
                    ],
                    specificity=[
                        float((n_total - where.size) + ((~votes_of[r]) & (~fused_u)).sum()) / neg
                        if neg
                        else None
                        for r in idx
                    ],
                    tied_voxels=int((votes * 2 == len(idx)).sum()),
                )
            fused = np.zeros(crop_shape, dtype=bool)
            fused.reshape(-1)[where] = fused_u
            entry["volume_ml"] = float(fused.sum() * np.prod(spacing) / 1000.0)
            entry["paths"] = _write_consensus(
                fused, origin, shape, job["consensus_dir"], method, job["slice_ids"]
            )
            out["consensus"][method] = entry
    out["seconds"] = time.perf_counter() - t0
    return out


def _write_consensus(fused, origin, shape, folder: str, method: str, slice_ids: list[str]) -> list:
    """One PNG per slice; every slice without consensus foreground shares one empty PNG."""
    from PIL import Image

    d = os.path.join(folder, method)
    os.makedirs(d, exist_ok=True)
    empty = os.path.join(d, "empty.png")
    Image.fromarray(np.zeros(shape[1:], np.uint8)).save(empty, compress_level=1)
    paths = [empty] * len(slice_ids)
    z0, y0, x0 = origin
    for dz in range(fused.shape[0]):
        plane = fused[dz]
        if not plane.any():
            continue
        canvas = np.zeros(shape[1:], np.uint8)
        canvas[y0 : y0 + plane.shape[0], x0 : x0 + plane.shape[1]] = plane
        p = os.path.join(d, f"{slice_ids[z0 + dz]}.png")
        Image.fromarray(canvas).save(p, compress_level=1)
        paths[z0 + dz] = p
    return paths


# ------------------------------------------------------------------ the whole view


def _check_params(rule, min_overlap, max_distance_mm, connectivity, instances, nsd_tol, consensus):
    if rule not in L.MATCH_RULES:
        raise LesionAnalysisError(f"rule: expected one of {L.MATCH_RULES}, got {rule!r}")
    if not 0 < float(min_overlap) <= 1:
        raise LesionAnalysisError(f"min_overlap: expected a value in (0, 1], got {min_overlap!r}")
    if not float(max_distance_mm) > 0:
        raise LesionAnalysisError(f"max_distance_mm: expected > 0 mm, got {max_distance_mm!r}")
    if connectivity not in L.CONNECTIVITY:
        raise LesionAnalysisError(f"connectivity: expected 6, 18 or 26, got {connectivity!r}")
    if instances not in INSTANCE_SOURCES:
        raise LesionAnalysisError(
            f"instances: expected one of {INSTANCE_SOURCES}, got {instances!r}"
        )
    if not float(nsd_tol) > 0:
        raise LesionAnalysisError(f"nsd_tolerance_mm: expected > 0 mm, got {nsd_tol!r}")
    bad = [m for m in consensus if m not in CONSENSUS_METHODS]
    if bad:
        raise LesionAnalysisError(
            f"consensus: unknown method(s) {bad}; expected {CONSENSUS_METHODS}"
        )


def _jobs(view, rs, params: dict, consensus_root: str) -> tuple[list[dict], list[dict], dict]:
    """One job per series, and the series skipped with the reason."""
    paths = [
        "id",
        F.SERIES_UID,
        F.SLICE_INDEX,
        F.IMAGE_POSITION,
        F.IMAGE_ORIENTATION,
        F.PIXEL_SPACING,
        F.ROWS,
        F.COLUMNS,
    ]
    dataset = view._dataset
    has_patient = dataset.has_field(F.PATIENT_KEY)
    if has_patient:
        paths.append(F.PATIENT_KEY)
    missing = [p for p in paths[1:] if not dataset.has_field(p)]
    if missing:
        raise LesionAnalysisError(
            f"dataset {dataset.name!r} lacks {', '.join(missing)}: import the series with "
            "import_dicom, which records each slice's geometry"
        )
    mask_paths = [f"{f}.mask_path" for f in rs.fields]
    cols = dict(zip(paths + mask_paths, view.values(paths + mask_paths), strict=True))
    by_series: dict[str, list[int]] = {}
    for i, s in enumerate(cols[F.SERIES_UID]):
        by_series.setdefault(s, []).append(i)
    jobs, skipped, meta = [], [], {}
    for series, idx in by_series.items():
        if series is None:
            skipped.append({"series": None, "reason": f"{len(idx)} samples without a series UID"})
            continue
        reader_paths = [[cols[m][i] for i in idx] for m in mask_paths]
        if not any(p is not None for rp in reader_paths for p in rp):
            continue  # no reader outlined anything on this series
        try:
            geo = VOL.series_geometry(
                [cols[F.IMAGE_POSITION][i] for i in idx],
                [cols[F.IMAGE_ORIENTATION][i] for i in idx],
                [cols[F.PIXEL_SPACING][i] for i in idx],
                [cols[F.ROWS][i] for i in idx],
                [cols[F.COLUMNS][i] for i in idx],
                slice_ids=[cols["id"][i] for i in idx],
            )
        except VOL.VolumeGeometryError as e:
            skipped.append({"series": series, "reason": str(e)})
            continue
        order = [idx[k] for k in geo.order]
        patient = cols[F.PATIENT_KEY][order[0]] if has_patient else series
        meta[series] = {"patient": patient or series, "slice_ids": [cols["id"][i] for i in order]}
        jobs.append(
            {
                **params,
                "series": series,
                "readers": list(rs.readers),
                "shape": list(geo.shape),
                "spacing": list(geo.spacing_zyx),
                "slice_ids": [cols["id"][i] for i in order],
                "paths": [[cols[m][i] for i in order] for m in mask_paths],
                "consensus_dir": os.path.join(consensus_root, F.reader_slug(series)[:48]),
            }
        )
    return jobs, skipped, meta


def _run_jobs(jobs: list[dict], num_workers: int | None, progress) -> list[dict]:
    from multireader.core.parallel import mp_context

    n = len(jobs)
    workers = min(num_workers or os.cpu_count() or 1, n)
    results = []
    if workers <= 1:
        for k, job in enumerate(jobs):
            job["threads"] = num_workers or os.cpu_count() or 1  # decode one series in threads
            results.append(analyse_series(job))
            report(progress, 0.1 + 0.7 * (k + 1) / n, f"series {k + 1} of {n}")
        return results
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp_context(),
    ) as pool:
        futures = [pool.submit(analyse_series, job) for job in jobs]
        for k, fut in enumerate(as_completed(futures)):
            results.append(fut.result())
            report(progress, 0.1 + 0.7 * (k + 1) / n, f"series {k + 1} of {n}")
    order = {j["series"]: k for k, j in enumerate(jobs)}
    return sorted(results, key=lambda r: order[r["series"]])


def compute_lesion_agreement(
    samples,
    *,
    readers: list[str] | None = None,
    rule: str = "dice",
    min_overlap: float = 0.1,
    max_distance_mm: float = 10.0,
    connectivity: int = 26,
    instances: str = "components",
    nsd_tolerance_mm: float = 2.0,
    consensus: tuple[str, ...] | list[str] = CONSENSUS_METHODS,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    run_key: str = "lesions",
    num_workers: int | None = None,
    progress: ProgressFn | None = None,
) -> LesionAgreementResults:
    """Lesion-level agreement of the readers' masks on ``samples``, stored as run ``run_key``.

    ``rule`` matches lesions across readers: "dice" or "iou" (an overlap of at least
    ``min_overlap``), or "centroid" (centroids within ``max_distance_mm``, for lesions too
    small to overlap reliably). Lesions are the 3-D connected components of each
    reader's mask (``connectivity`` 6, 18 or 26) or, with ``instances="labels"``, each
    distinct mask value (SEG segments, RTSTRUCT ROIs, NIfTI labels imported as values).
    NSD is at ``nsd_tolerance_mm``. Intervals resample patients (``n_boot``, ``seed``).

    Returns the stored results as :class:`LesionAgreementResults` (see docs/lesions.md).
    """
    t0 = time.perf_counter()
    consensus = list(consensus or ())
    _check_params(
        rule, min_overlap, max_distance_mm, connectivity, instances, nsd_tolerance_mm, consensus
    )
    RUNS.check_key(run_key)
    view = samples.view()
    dataset = view._dataset
    try:
        rs = C.select_readers(dataset, "mask", readers=readers)
    except C.ReaderSelectionError as e:
        raise LesionAnalysisError(f"no masks to analyse: {e}") from e
    if len(rs.readers) < 2:
        raise LesionAnalysisError(
            f"lesion agreement needs at least two readers with masks; found {rs.readers}"
        )
    report(progress, 0.02, "reading geometry and mask paths")
    params = {
        "rule": rule,
        "min_overlap": float(min_overlap),
        "max_distance_mm": float(max_distance_mm),
        "connectivity": int(connectivity),
        "instances": instances,
        "nsd_tolerance_mm": float(nsd_tolerance_mm),
        "consensus": consensus,
    }
    root = os.path.join(storage.storage_dir(dataset), "lesions", run_key)
    jobs, skipped, meta = _jobs(view, rs, params, root)
    if not jobs:
        why = (
            "; ".join(f"{s['series']}: {s['reason']}" for s in skipped[:5])
            or "no reader outlined any series"
        )
        raise LesionAnalysisError(f"no series to analyse ({why})")
    report(progress, 0.08, f"{len(jobs)} series, {len(rs.readers)} readers")
    series_results = _run_jobs(jobs, num_workers, progress)
    report(progress, 0.82, "dataset-level statistics")
    results = summarise(
        series_results, meta, rs.readers, level=level, n_boot=n_boot, seed=seed, alpha=alpha
    )
    results["config"] = {
        **params,
        "readers": rs.readers,
        "fields": rs.fields,
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
    }
    results["skipped"] = skipped[:MAX_LISTED]
    results["n_skipped"] = len(skipped)
    report(progress, 0.88, "writing lesion labels")
    written = _write(view, series_results, meta, rs.readers, results)
    results["fields_written"] = written
    results["run_key"] = run_key
    results["seconds"] = time.perf_counter() - t0
    config = {
        "readers": rs.readers,
        "fields": rs.fields,
        **params,
        "level": level,
        "n_boot": n_boot,
        "plugin_version": __version__,
    }
    RUNS.save(view, run_key, RUN_KIND, config, results)
    report(progress, 1.0, f"{results['n_lesions']} lesions in {len(jobs)} series")
    return LesionAgreementResults(results, run_key=run_key, config=config)


# ------------------------------------------------------------------ statistics


def _interval(features: np.ndarray, statistic, groups, n_boot: int, seed: int, level: float):
    """(low, high) of ``statistic`` of summed ``features`` over patient resamples
    (:func:`multireader.stats.bootstrap.bootstrap`); None without resamples, rows or
    with fewer than two patients."""
    from multireader.stats.bootstrap import bootstrap

    g = np.asarray(groups)
    if n_boot <= 0 or len(features) == 0 or np.unique(g).size < 2:
        return None
    r = bootstrap(features, statistic, groups=g, n_boot=n_boot, level=level, seed=seed)
    return np.asarray(r.ci_low), np.asarray(r.ci_high)


def summarise(
    series_results: list[dict],
    meta: dict,
    readers: list[str],
    *,
    level: float,
    n_boot: int,
    seed: int,
    alpha: float,
) -> dict:
    """Dataset-level lesion statistics from the per-series results."""
    from scipy import stats as sps

    R = len(readers)
    lesions, series_rows = [], []
    n_les = np.zeros((len(series_results), R))
    matched = np.zeros((len(series_results), R, R))
    present = np.zeros((len(series_results), R), dtype=bool)
    patients = []
    errors = []
    for s, res in enumerate(series_results):
        info = meta[res["series"]]
        patients.append(info["patient"])
        n_les[s] = res["n_lesions"]
        matched[s] = res["matched"]
        present[s] = res["present"]
        errors.extend(res["errors"])
        for c in res["candidates"]:
            found = np.array(c["found"])
            pres = np.array(res["present"])
            lid = f"L{len(lesions) + 1}"
            mean_dice = [p["dice"] for p in c["pairs"].values() if p["dice"] is not None]
            lesions.append(
                {
                    "lesion_id": lid,
                    "series": res["series"],
                    "series_index": s,
                    "patient": info["patient"],
                    "found": found.tolist(),
                    "present": pres.tolist(),
                    "found_by": int(found.sum()),
                    "readers_found": [readers[r] for r in range(R) if found[r]],
                    "readers_missed": [readers[r] for r in range(R) if pres[r] and not found[r]],
                    "volume_ml": c["volume_ml"],
                    "pairs": c["pairs"],
                    "mean_dice": float(np.mean(mean_dice)) if mean_dice else None,
                    "slices": c["slices"],
                    "slice_ids": info["slice_ids"][c["slices"][0] : c["slices"][1] + 1],
                    "centroid_mm": c["centroid_mm"],
                    "instance_values": c["instance_values"],
                }
            )
        cand = res["candidates"]
        pres = np.array(res["present"])
        not_all = [not all(np.array(c["found"])[pres]) for c in cand]
        det = float(np.mean(not_all)) if cand else 0.0
        sd = res["series_dice"]
        score = det if sd is None else 0.5 * (det + (1.0 - sd))
        series_rows.append(
            {
                "series": res["series"],
                "patient": info["patient"],
                "n_slices": len(info["slice_ids"]),
                "readers_present": [readers[r] for r in range(R) if pres[r]],
                "n_lesions": len(cand),
                "n_contested": int(np.sum(not_all)),
                "series_dice": sd,
                "disagreement": score,
                "consensus": {
                    m: {k: v for k, v in e.items() if k != "paths"}
                    for m, e in res["consensus"].items()
                },
                "seconds": res["seconds"],
            }
        )
    codes, pat_codes = np.unique(np.array(patients, dtype=str), return_inverse=True)
    les_series = np.array([x["series_index"] for x in lesions], dtype=int)
    les_groups = pat_codes[les_series] if lesions else np.zeros(0, int)
    found = np.array([x["found"] for x in lesions], dtype=bool).reshape(len(lesions), R)
    pres_l = np.array([x["present"] for x in lesions], dtype=bool).reshape(len(lesions), R)
    vols = np.array(
        [[np.nan if v is None else v for v in x["volume_ml"]] for x in lesions], dtype=float
    ).reshape(len(lesions), R)

    # detection: pairwise F1 / sensitivity / PPV from per-patient summed counts
    n_p = len(codes)
    nl_p = np.zeros((n_p, R))
    m_p = np.zeros((n_p, R, R))
    np.add.at(nl_p, pat_codes, n_les)
    np.add.at(m_p, pat_codes, matched)
    # a pair's counts only on series both read
    pair_n = np.zeros((n_p, R, R))
    for s in range(len(series_results)):
        pr = np.outer(present[s], present[s])
        pair_n[pat_codes[s]] += pr * n_les[s][:, None]
    point = _pair_detection(pair_n.sum(0), m_p.sum(0))

    rr = R * R
    det_features = np.c_[pair_n.reshape(n_p, rr), m_p.reshape(n_p, rr)]

    def det_stat(S):
        pn = S[..., :rr].reshape(*S.shape[:-1], R, R)
        mm = S[..., rr:].reshape(*S.shape[:-1], R, R)
        d = _pair_detection(pn, mm)
        return np.stack([d["f1"], d["sensitivity"], d["ppv"]], axis=-3)

    det_ci = _interval(det_features, det_stat, np.arange(n_p), n_boot, seed, level)
    detection = {}
    for k, (name, val) in enumerate(point.items()):
        lo = det_ci[0][k].reshape(R, R) if det_ci is not None else np.full((R, R), np.nan)
        hi = det_ci[1][k].reshape(R, R) if det_ci is not None else np.full((R, R), np.nan)
        detection[name] = {"value": val, "ci_low": lo, "ci_high": hi}
    detection["n_lesions"] = nl_p.sum(0)
    detection["matched"] = m_p.sum(0)

    ratings = L.found_ratings(found, pres_l)
    fk = {"value": None, "ci": None, "n": len(lesions), "note": None}
    if len(lesions) >= 2:
        try:
            b = A.bootstrap_ci(
                ratings, 2, "fleiss_kappa", n_boot=n_boot, level=level, seed=seed, groups=les_groups
            )
            fk.update(value=float(b.value), ci=[b.ci_low, b.ci_high])
        except ValueError as e:
            fk["note"] = str(e)
    hist = L.found_by_k(found) if len(lesions) else np.zeros(R, int)

    # boundary metrics per reader pair, mean over matched lesions with patient CIs
    boundary = {}
    for a, b in combinations(range(R), 2):
        key = f"{readers[a]}|{readers[b]}"
        rows = [
            (x["pairs"][key], les_groups[i]) for i, x in enumerate(lesions) if key in x["pairs"]
        ]
        entry = {"n": len(rows)}
        for m in PAIR_METRICS:
            vals = np.array([np.nan if r[m] is None else r[m] for r, _ in rows], dtype=float)
            g = np.array([gg for _, gg in rows], dtype=int)
            ok = np.isfinite(vals)
            entry[m] = _mean_with_ci(vals[ok], g[ok], n_boot, seed, level)
        boundary[key] = entry

    # volumes
    volume = {"n_lesions": len(lesions)}
    complete = np.all(np.isfinite(vols), 1) if len(lesions) else np.zeros(0, bool)
    try:
        icc = A.icc(vols, level=level)
        volume["icc"] = {f: {"value": icc.value[f], "ci": icc.ci[f]} for f in icc.value}
        volume["icc_n_used"] = icc.n_used
    except ValueError as e:  # too few complete lesions: said in the note
        volume["icc"] = None
        volume["icc_note"] = str(e)
    ba = {}
    for a, b in combinations(range(R), 2):
        try:
            ba[f"{readers[a]}|{readers[b]}"] = A.bland_altman(vols[:, a], vols[:, b], level=level)
        except ValueError as e:
            ba[f"{readers[a]}|{readers[b]}"] = {"note": str(e)}
    volume["bland_altman"] = ba
    rms, cv = L.within_lesion_cv(vols) if len(lesions) else (float("nan"), np.zeros(0))
    ok = np.isfinite(cv)

    cv_features = np.c_[cv[ok] ** 2, np.ones(int(ok.sum()))]

    def cv_stat(S):
        return np.sqrt(S[..., 0] / S[..., 1])

    ci = _interval(cv_features, cv_stat, les_groups[ok], n_boot, seed, level)
    volume["rms_cv"] = {
        "value": rms,
        "ci": None if ci is None else [float(ci[0]), float(ci[1])],
        "n": int(ok.sum()),
    }
    volume["n_complete"] = int(complete.sum())

    # readers
    ratio, logs = L.reader_volume_ratio(vols)
    profiles = []
    pvals = []
    # a lesion's size: the median of the volumes of the readers who found it
    with np.errstate(all="ignore"):
        size = np.nanmedian(vols, 1) if len(lesions) else np.zeros(0)
    size_median = float(np.nanmedian(size)) if len(lesions) else np.nan
    for r in range(R):
        lr = logs[r]
        p = (
            float(sps.wilcoxon(lr, method="exact" if lr.size <= 25 else "asymptotic").pvalue)
            if lr.size >= 6 and np.any(lr != 0)
            else None
        )
        pvals.append(p)
        # sensitivity against the other readers' majority: candidates at least half of
        # the other present readers found
        others = np.delete(found, r, 1)
        opres = np.delete(pres_l, r, 1)
        k_oth = opres.sum(1)
        ref = (others.sum(1) * 2 >= k_oth) & (k_oth > 0) & pres_l[:, r]
        sens = float(found[ref, r].mean()) if ref.any() else None
        small = size < size_median
        missed_small = int((ref & small & ~found[:, r]).sum())
        missed_large = int((ref & ~small & ~found[:, r]).sum())
        profiles.append(
            {
                "reader": readers[r],
                "n_lesions": int(found[:, r].sum()),
                "volume_ratio": ratio[r],
                "volume_ratio_n": int(lr.size),
                "volume_ratio_p": p,
                "sensitivity_vs_others": sens,
                "n_reference": int(ref.sum()),
                "missed_small": missed_small,
                "missed_large": missed_large,
                "n_small_reference": int((ref & small).sum()),
                "n_large_reference": int((ref & ~small).sum()),
            }
        )
    _flag_readers(profiles, pvals, alpha)
    return {
        "readers": readers,
        "n_series": len(series_results),
        "n_patients": n_p,
        "n_lesions": len(lesions),
        "lesions": lesions,
        "series": series_rows,
        "detection": detection,
        "fleiss_kappa_found": fk,
        "found_by_k": {str(k + 1): int(v) for k, v in enumerate(hist)},
        "boundary": boundary,
        "volume": volume,
        "reader_profiles": profiles,
        "errors": errors[:MAX_LISTED],
        "n_errors": len(errors),
        "level": level,
        "n_boot": n_boot,
    }


def _pair_detection(pair_n: np.ndarray, matched: np.ndarray) -> dict:
    """F1, sensitivity and PPV of each pair from lesion counts on the series both read
    (``pair_n[..., a, b]``: a's lesions on the series b also read; leading axes are
    bootstrap replicates). Reader a is the reference of entry (a, b)."""
    pn_t = np.swapaxes(pair_n, -1, -2)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = matched / pair_n
        ppv = matched / pn_t
        f1 = 2 * matched / (pair_n + pn_t)
    eye = np.eye(pair_n.shape[-1], dtype=bool)
    for x in (sens, ppv, f1):
        x[..., eye] = np.nan
    return {"f1": f1, "sensitivity": sens, "ppv": ppv}


def _mean_with_ci(
    vals: np.ndarray, groups: np.ndarray, n_boot: int, seed: int, level: float
) -> dict:
    if not vals.size:
        return {"value": None, "ci": None, "n": 0}

    def stat(S):
        return S[..., 0] / S[..., 1]

    ci = _interval(np.c_[vals, np.ones(vals.size)], stat, groups, n_boot, seed, level)
    return {
        "value": float(vals.mean()),
        "ci": None if ci is None else [float(ci[0]), float(ci[1])],
        "n": int(vals.size),
    }


def _flag_readers(profiles: list[dict], pvals: list, alpha: float) -> None:
    """Holm-adjusted flags: volumes systematically larger/smaller (paired Wilcoxon on
    log ratios, and a ratio off 1 by at least 5 %); sensitivity clearly below the panel."""
    idx = [i for i, p in enumerate(pvals) if p is not None]
    order = sorted(idx, key=lambda i: pvals[i])
    m = len(order)
    adj = {}
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvals[i]))
        adj[i] = running
    sens = [p["sensitivity_vs_others"] for p in profiles if p["sensitivity_vs_others"] is not None]
    med = float(np.median(sens)) if sens else None
    for i, p in enumerate(profiles):
        flags = []
        p["volume_ratio_p_holm"] = adj.get(i)
        r = p["volume_ratio"]
        if adj.get(i) is not None and adj[i] < alpha and np.isfinite(r) and abs(r - 1) >= 0.05:
            flags.append("larger volumes" if r > 1 else "smaller volumes")
        s = p["sensitivity_vs_others"]
        if s is not None and med is not None and s < med - 0.15:
            flags.append(
                "misses small lesions"
                if p["missed_small"] > 2 * max(p["missed_large"], 0) + 1
                else "misses lesions"
            )
        p["flags"] = flags


# ------------------------------------------------------------------ writing


def _write(view, series_results, meta, readers, results) -> list[str]:
    import fiftyone as fo

    dataset = view._dataset
    by_series = {x["series"]: x for x in results["series"]}
    values: dict[str, fo.Detections] = {}
    score: dict[str, float] = {}
    lesion_iter = iter(results["lesions"])
    cons_values: dict[str, dict] = {m: {} for m in CONSENSUS_METHODS}
    for res in series_results:
        ids = meta[res["series"]]["slice_ids"]
        dets: dict[int, list] = {}
        for c in res["candidates"]:
            row = next(lesion_iter)
            inst = fo.Instance()
            for b in c["boxes"]:
                r = readers.index(b["reader"])
                dets.setdefault(b["slice"], []).append(
                    fo.Detection(
                        label=b["reader"],
                        bounding_box=b["box"],
                        mask=b["mask"],
                        instance=inst,
                        lesion_id=row["lesion_id"],
                        found_by=row["found_by"],
                        n_readers=int(sum(res["present"])),
                        volume_ml=c["volume_ml"][r],
                        mean_dice=row["mean_dice"],
                    )
                )
        for k, sid in enumerate(ids):
            values[sid] = fo.Detections(detections=dets.get(k, []))
            score[sid] = by_series[res["series"]]["disagreement"]
        for m, e in res["consensus"].items():
            for sid, p in zip(ids, e["paths"], strict=True):
                cons_values[m][sid] = fo.Segmentation(mask_path=p, method=f"{m}_3d")
    for name in [LESIONS_FIELD] + [consensus_volume_field(m) for m in CONSENSUS_METHODS]:
        if name in F.reader_fields(dataset):
            raise LesionAnalysisError(f"{name!r} is a reader field; it is never overwritten")
    written = []
    view.set_values(LESIONS_FIELD, values, key_field="id")
    written.append(LESIONS_FIELD)
    for m, vals in cons_values.items():
        if vals:
            view.set_values(consensus_volume_field(m), vals, key_field="id")
            written.append(consensus_volume_field(m))
    ids = list(score)
    written += write_sample_fields(
        view, ids, {LESION_DISAGREEMENT: np.array([score[i] for i in ids], float)}
    )
    return written


def _r(v, digits: int = 3):
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


def _est(matrix: dict, a: int, b: int) -> dict:
    """Entry (a, b) of a stored ``{"value", "ci_low", "ci_high"}`` matrix as an estimate."""

    def at(m):
        return None if m is None else _r(np.asarray(m, float)[a, b], 6)

    lo, hi = at(matrix.get("ci_low")), at(matrix.get("ci_high"))
    return {"value": at(matrix.get("value")), "ci": None if lo is None or hi is None else [lo, hi]}


class LesionAgreementResults(AnalysisResults):
    """What :func:`compute_lesion_agreement` found: the lesions matched across readers,
    detection, boundary and volume agreement, and each reader's profile.

    Tables (:meth:`rows`): for the operator ``readers`` (lesions, sensitivity against the
    others, volume ratio, flags), ``pairs`` (F1, Dice, HD95, NSD per pair, rounded) and
    ``skipped``; for the report, as stored estimates with their intervals,
    ``found_by`` (lesions found by k of n readers), ``detection`` (F1, sensitivity, PPV
    per pair; the first reader of the pair is the reference), ``boundary`` (Dice, IoU,
    HD95, ASSD, NSD per pair over the lesions both found), ``volume_icc`` (the six ICC
    forms of the lesion volumes), ``bland_altman`` (per pair, mL) and ``profiles``
    (every reader, with the flags).
    """

    run_kind = RUN_KIND
    sections = (
        "readers",
        "pairs",
        "skipped",
        "found_by",
        "detection",
        "boundary",
        "volume_icc",
        "bland_altman",
        "profiles",
    )

    @property
    def readers(self) -> list[str]:
        return list(self.results.get("readers") or [])

    def _pairs(self):
        r = self.readers
        return [(a, b, r[a], r[b]) for a, b in combinations(range(len(r)), 2)]

    @property
    def fleiss_kappa_found(self) -> dict:
        """Fleiss' kappa on found / not found: ``{"value", "ci", "n", "note"}``."""
        return dict(self.results.get("fleiss_kappa_found") or {})

    @property
    def rms_cv(self) -> dict:
        """RMS within-lesion coefficient of variation of the volumes: ``{"value", "ci", "n"}``."""
        return dict((self.results.get("volume") or {}).get("rms_cv") or {})

    @property
    def nsd_tolerance_mm(self) -> float | None:
        return self.config.get(
            "nsd_tolerance_mm", (self.results.get("config") or {}).get("nsd_tolerance_mm")
        )

    @property
    def level(self) -> float:
        return float(self.results.get("level") or self.config.get("level") or 0.95)

    @property
    def outputs(self) -> dict[str, list[str]]:
        return self._outputs(fields=self.results.get("fields_written") or [])

    def summary(self) -> dict:
        """The small, JSON-safe summary an operator returns (the run holds everything)."""
        results = self.results
        fk = self.fleiss_kappa_found
        k = results.get("found_by_k") or {}
        return {
            "run_key": self.run_key,
            "n_series": results["n_series"],
            "n_lesions": results["n_lesions"],
            "found_by": ", ".join(f"{n} by {j}" for j, n in k.items()),
            "fleiss_kappa_found": "n/a"
            if fk.get("value") is None
            else f"{fk['value']:.3f}"
            + (
                f" [{fk['ci'][0]:.3f}, {fk['ci'][1]:.3f}]"
                if fk.get("ci") and None not in fk["ci"]
                else ""
            ),
            "readers": self.rows("readers"),
            "pairs": self.rows("pairs"),
            "flagged": {p["reader"]: p["flags"] for p in results["reader_profiles"] if p["flags"]},
            "fields_written": results.get("fields_written", []),
            "skipped": self.rows("skipped"),
            "n_skipped": results.get("n_skipped", 0),
            "seconds": _r(results.get("seconds"), 1),
            "outputs": self.outputs,
        }

    def _rows(self, section: str) -> list[dict]:
        res = self.results
        det = res.get("detection") or {}
        if section == "readers":
            return [
                {
                    "reader": p["reader"],
                    "n_lesions": p["n_lesions"],
                    "sensitivity": _r(p["sensitivity_vs_others"]),
                    "volume_ratio": _r(p["volume_ratio"]),
                    "flags": ", ".join(p["flags"]),
                }
                for p in res.get("reader_profiles") or []
            ]
        if section == "pairs":
            out = []
            for a, b, ra, rb in self._pairs():
                bd = (res.get("boundary") or {}).get(f"{ra}|{rb}", {})
                out.append(
                    {
                        "pair": f"{ra} vs {rb}",
                        "f1": _r(_est(det.get("f1") or {}, a, b)["value"]),
                        "dice": _r((bd.get("dice") or {}).get("value")),
                        "hd95": _r((bd.get("hd95") or {}).get("value"), 2),
                        "nsd": _r((bd.get("nsd") or {}).get("value")),
                        "n": bd.get("n", 0),
                    }
                )
            return out
        if section == "skipped":
            return list(res.get("skipped") or [])[:20]
        if section == "found_by":
            n = len(self.readers)
            return [
                {"k": int(k), "n_readers": n, "n_lesions": v}
                for k, v in (res.get("found_by_k") or {}).items()
            ]
        if section == "detection":
            return [
                {
                    "pair": f"{ra} vs {rb}",
                    "readers": [ra, rb],
                    "n_lesions": [
                        int(np.asarray(det["n_lesions"], float)[a]),
                        int(np.asarray(det["n_lesions"], float)[b]),
                    ]
                    if det.get("n_lesions") is not None
                    else None,
                    "matched": int(np.asarray(det["matched"], float)[a, b])
                    if det.get("matched") is not None
                    else None,
                    **{m: _est(det.get(m) or {}, a, b) for m in ("f1", "sensitivity", "ppv")},
                }
                for a, b, ra, rb in self._pairs()
            ]
        if section == "boundary":
            out = []
            for _, _, ra, rb in self._pairs():
                bd = (res.get("boundary") or {}).get(f"{ra}|{rb}")
                if bd is None:
                    continue
                out.append(
                    {"pair": f"{ra} vs {rb}", "readers": [ra, rb], "n": bd.get("n", 0)}
                    | {m: bd.get(m) for m in PAIR_METRICS}
                )
            return out
        volume = res.get("volume") or {}
        if section == "volume_icc":
            icc = volume.get("icc") or {}
            return [
                {
                    "form": f,
                    "value": e.get("value"),
                    "ci": e.get("ci"),
                    "n": volume.get("icc_n_used"),
                }
                for f, e in icc.items()
            ]
        if section == "bland_altman":
            return [
                {
                    "pair": f"{ra} vs {rb}",
                    "readers": [ra, rb],
                    **((volume.get("bland_altman") or {}).get(f"{ra}|{rb}") or {}),
                }
                for _, _, ra, rb in self._pairs()
            ]
        return [dict(p) for p in res.get("reader_profiles") or []]
