"""Lesions in 3-D: instances, matching across readers, detection and volume agreement.

Pure numpy/scipy. A reader's outline of a series is a 3-D integer volume
``(slices, rows, cols)``; its lesions are either the 3-D connected components of the
foreground (:func:`label_lesions`) or the reader's own instance values
(:func:`instances_from_labels`: SEG segment numbers, RTSTRUCT ROIs, NIfTI label values).

Lesions are matched across readers (:func:`match_pair`, :func:`match_readers`) under one
stated rule, and each matched lesion ("candidate") records which readers found it. The
dataset-level statistics then follow from a table of candidates x readers:

* detection agreement (:func:`detection_agreement`): per reader pair lesion-level F1,
  sensitivity and PPV of one reader against the other as reference; over all readers
  Fleiss' kappa on found / not found per candidate; how many lesions were found by
  exactly k of n readers;
* volume agreement (:func:`volume_agreement`): per reader per lesion in mL, ICC
  (Shrout & Fleiss 1979), Bland-Altman per pair, the within-lesion coefficient of
  variation (root mean square CV, Glüer et al. 1995);
* reader characterisation (:func:`reader_volume_bias`, :func:`reader_detection`): a
  reader whose volumes run larger than the others', a reader who misses small lesions.

Boundary metrics of one matched pair (Dice, IoU, HD95, ASSD, NSD in mm) are in
:mod:`multireader.stats.surface`.

References
----------
Eisenhauer E.A. et al. (2009). New response evaluation criteria in solid tumours:
    revised RECIST guideline (version 1.1). Eur J Cancer 45:228-247 (lesion-level
    reading that these statistics serve).
Fleiss J.L. (1971). Measuring nominal scale agreement among many raters. Psychol Bull
    76(5):378-382.
Glüer C.C. et al. (1995). Accurate assessment of precision errors: how to measure the
    reproducibility of bone densitometry techniques. Osteoporos Int 5:262-270.
Kuhn H.W. (1955). The Hungarian method for the assignment problem. Nav Res Logist Q
    2:83-97.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from multireader.errors import MultireaderError

#: 3-D neighbourhoods: faces only (6), faces and edges (18), and corners too (26)
CONNECTIVITY = {6: 1, 18: 2, 26: 3}
MATCH_RULES = ("dice", "iou", "centroid")
MatchRule = Literal["dice", "iou", "centroid"]


class LesionError(MultireaderError):
    """Bad input to a lesion statistic (the message names the argument)."""


# --- instances ---------------------------------------------------------------------


def _check_volume(volume: Any, name: str = "volume") -> np.ndarray:
    arr = np.asarray(volume)
    if arr.ndim != 3:
        raise LesionError(
            f"{name}: expected a 3-D (slices, rows, cols) array, got shape {arr.shape}"
        )
    return arr


def _check_spacing(spacing: Any) -> np.ndarray:
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise LesionError(
            f"spacing: expected three positive mm values (slice, row, col), got {spacing!r}"
        )
    return sp


def _occupied_boxes(fg: np.ndarray, box: tuple, out: list) -> None:
    """Split ``box`` of the foreground at empty planes, recursively: no component can
    cross a plane with no foreground voxel, so each piece can be labelled on its own."""
    sub = fg[box]
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        occ = sub.any(axis=other)
        idx = np.flatnonzero(occ)
        if idx.size == 0:
            return
        lo, hi = idx[0], idx[-1] + 1
        gaps = np.flatnonzero(~occ[lo:hi])
        if lo > 0 or hi < occ.size or gaps.size:
            # trim empty margins and split at interior empty planes
            runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
            for r in runs:
                piece = list(box)
                start = box[axis].start
                piece[axis] = slice(start + int(r[0]), start + int(r[-1]) + 1)
                _occupied_boxes(fg, tuple(piece), out)
            return
    out.append(box)


def label_lesions(mask: Any, connectivity: int = 26, return_boxes: bool = False):
    """The 3-D connected components of a mask's foreground (any value > 0).

    ``connectivity`` is 6 (voxels sharing a face), 18 (a face or an edge) or 26 (any
    contact, the default: an outline drawn on adjacent slices whose cross-sections only
    touch diagonally is still one lesion). Returns ``(labels, n)``: int32 labels 1..n,
    0 background, numbered in the order ``scipy.ndimage.label`` would give within each
    part of the volume separated by empty planes (labelling those parts on their own
    is what keeps a 300-slice series fast: lesions are small and sparse). With
    ``return_boxes`` the lesions' bounding boxes come third.
    """
    arr = _check_volume(mask, "mask")
    if connectivity not in CONNECTIVITY:
        raise LesionError(f"connectivity: expected 6, 18 or 26, got {connectivity!r}")
    structure = ndimage.generate_binary_structure(3, CONNECTIVITY[connectivity])
    fg = arr > 0
    boxes: list = []
    _occupied_boxes(fg, tuple(slice(0, n) for n in fg.shape), boxes)
    labels = np.zeros(fg.shape, dtype=np.int32)
    n = 0
    found: list = []
    for box in sorted(boxes, key=lambda b: tuple(s.start for s in b)):
        lab, k = ndimage.label(fg[box], structure=structure)
        if k:
            view = labels[box]
            hit = lab > 0
            view[hit] = lab[hit] + n
            n += k
            for sub in ndimage.find_objects(lab):
                found.append(
                    tuple(
                        slice(b.start + x.start, b.start + x.stop)
                        for b, x in zip(box, sub, strict=True)
                    )
                )
    return (labels, int(n), found) if return_boxes else (labels, int(n))


def instances_from_labels(volume: Any) -> tuple[np.ndarray, int, list[int]]:
    """A reader's own instances: each distinct value > 0 is one lesion.

    Returns ``(labels, n, values)``: labels renumbered 1..n in increasing order of the
    source value, and the source values (``values[i - 1]`` is lesion ``i``'s value, e.g.
    its SEG segment number or NIfTI label).
    """
    arr = _check_volume(volume)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise LesionError("volume: instance labels must be integers")
        arr = arr.astype(np.int64)
    if np.any(arr < 0):
        raise LesionError("volume: instance labels must be >= 0 (0 = background)")
    top = int(arr.max()) if arr.size else 0
    if top < (1 << 16):  # label maps: a lookup table instead of a sort of every voxel
        values = np.flatnonzero(np.bincount(arr.ravel(), minlength=1)[1:]) + 1
        lut = np.zeros(top + 1, dtype=np.int32)
        lut[values] = np.arange(1, values.size + 1, dtype=np.int32)
        return lut[arr], int(values.size), [int(v) for v in values]
    values, inverse = np.unique(arr, return_inverse=True)
    inverse = inverse.reshape(arr.shape).astype(np.int32)
    if values.size and values[0] == 0:
        return inverse, int(values.size - 1), [int(v) for v in values[1:]]
    return inverse + 1, int(values.size), [int(v) for v in values]


@dataclass(frozen=True)
class Lesions:
    """The lesions of one reader on one series.

    Attributes
    ----------
    labels : int32 (slices, rows, cols), 1..n, 0 background.
    n : number of lesions.
    voxels : (n,) voxel counts.
    volume_ml : (n,) volumes in mL (voxels x the voxel volume in mm^3 / 1000).
    centroid_mm : (n, 3) centroids in mm along (slice, row, col) from voxel (0, 0, 0).
    bbox : n tuples of slices (the lesion's bounding box).
    values : source instance values (or 1..n for connected components).
    """

    labels: np.ndarray
    n: int
    voxels: np.ndarray
    volume_ml: np.ndarray
    centroid_mm: np.ndarray
    bbox: list
    values: list = field(default_factory=list)


def lesions_of(
    labels: np.ndarray,
    n: int,
    spacing: Any,
    values: list | None = None,
    bbox: list | None = None,
) -> Lesions:
    """Voxel counts, volumes, centroids and bounding boxes of labelled lesions.

    ``bbox``: the lesions' bounding boxes when already known (``label_lesions(...,
    return_boxes=True)``), which saves a pass over the volume."""
    sp = _check_spacing(spacing)
    labels = _check_volume(labels, "labels")
    if bbox is None:
        bbox = ndimage.find_objects(labels, max_label=n) if n else []
    voxels = np.zeros(n, dtype=np.int64)
    cent = np.zeros((n, 3))
    for i, box in enumerate(bbox):
        if box is None:  # a label value with no voxel
            continue
        idx = np.nonzero(labels[box] == i + 1)
        voxels[i] = idx[0].size
        cent[i] = [idx[a].mean() + box[a].start for a in range(3)]
    cent = cent * sp
    return Lesions(
        labels=labels,
        n=int(n),
        voxels=voxels,
        volume_ml=voxels * float(np.prod(sp)) / 1000.0,
        centroid_mm=cent,
        bbox=list(bbox),
        values=list(values) if values is not None else list(range(1, n + 1)),
    )


# --- matching ----------------------------------------------------------------------


def intersections(a: Lesions, b: Lesions) -> np.ndarray:
    """Voxels shared by each lesion of ``a`` and each of ``b``: (a.n, b.n) counts."""
    if a.labels.shape != b.labels.shape:
        raise LesionError(
            f"labels: the two readers' volumes differ in shape ({a.labels.shape} vs "
            f"{b.labels.shape})"
        )
    # lesion by lesion inside its bounding box: the cost follows the lesions' size, not
    # the volume's
    table = np.zeros((a.n, b.n), dtype=np.int64)
    for i, box in enumerate(a.bbox):
        if box is None or b.n == 0:
            continue
        under = b.labels[box][a.labels[box] == i + 1]
        table[i] = np.bincount(under, minlength=b.n + 1)[1:]
    return table


def pair_scores(a: Lesions, b: Lesions, rule: MatchRule = "dice") -> np.ndarray:
    """The matching score of every lesion pair: Dice or IoU of the two lesions, or the
    distance between their centroids in mm (``rule="centroid"``)."""
    if rule not in MATCH_RULES:
        raise LesionError(f"rule: expected one of {MATCH_RULES}, got {rule!r}")
    if rule == "centroid":
        d = a.centroid_mm[:, None, :] - b.centroid_mm[None, :, :]
        return np.sqrt((d**2).sum(-1))
    inter = intersections(a, b).astype(float)
    sa, sb = a.voxels[:, None].astype(float), b.voxels[None, :].astype(float)
    if rule == "dice":
        return np.divide(2 * inter, sa + sb, out=np.zeros_like(inter), where=(sa + sb) > 0)
    union = sa + sb - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _accept(scores: np.ndarray, rule: str, threshold: float) -> np.ndarray:
    if rule == "centroid":
        return scores <= threshold
    return (scores >= threshold) & (scores > 0)


def match_pair(scores: np.ndarray, rule: MatchRule, threshold: float) -> list[tuple[int, int]]:
    """One-to-one matches of two readers' lesions (Kuhn 1955, Hungarian assignment).

    For ``rule`` "dice"/"iou" the assignment maximises the total overlap and a pair is
    kept when its overlap is at least ``threshold`` (and above zero); for "centroid" it
    minimises the total centroid distance and keeps pairs within ``threshold`` mm.
    Returns sorted (i, j) index pairs.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0:
        return []
    ok = _accept(scores, rule, threshold)
    if rule == "centroid":
        cost = np.where(ok, scores, 1e12)
    else:
        cost = np.where(ok, -scores, 1e12)
    rows, cols = linear_sum_assignment(cost)
    return sorted((int(i), int(j)) for i, j in zip(rows, cols, strict=True) if ok[i, j])


def match_readers(
    lesions: list[Lesions | None],
    rule: MatchRule = "dice",
    threshold: float = 0.1,
    scores: dict[tuple[int, int], np.ndarray] | None = None,
) -> np.ndarray:
    """Candidate lesions across readers: ``(n_candidates, n_readers)`` lesion indices
    (0-based), -1 where that reader did not find the candidate.

    The rule: readers are taken in order; the first reader's lesions open the candidate
    list; each later reader's lesions are assigned to the candidates so far by Hungarian
    assignment, a lesion scoring against a candidate its best score with any lesion
    already in it (highest overlap, or nearest centroid), accepted under ``threshold``
    as in :func:`match_pair`; an unassigned lesion opens a new candidate. A candidate
    holds at most one lesion of each reader. A reader who is ``None`` (did not read the
    series) finds nothing and opens nothing.
    """
    n_readers = len(lesions)
    if scores is None:
        scores = {}
    candidates: list[list[int]] = []

    def score(r1, r2):
        if (r1, r2) not in scores:
            if (r2, r1) in scores:
                return scores[(r2, r1)].T
            scores[(r1, r2)] = pair_scores(lesions[r1], lesions[r2], rule)
        return scores[(r1, r2)]

    worst = np.inf if rule == "centroid" else -np.inf
    for r, les in enumerate(lesions):
        if les is None or les.n == 0:
            continue
        if candidates:
            m = np.full((les.n, len(candidates)), worst)
            for c, members in enumerate(candidates):
                for r0, i0 in enumerate(members):
                    if i0 < 0 or r0 == r:
                        continue
                    col = score(r, r0)[:, i0]
                    m[:, c] = (
                        np.minimum(m[:, c], col) if rule == "centroid" else np.maximum(m[:, c], col)
                    )
            m = np.where(np.isfinite(m), m, np.inf if rule == "centroid" else 0.0)
            pairs = match_pair(m, rule, threshold)
        else:
            pairs = []
        taken = set()
        for i, c in pairs:
            candidates[c][r] = i
            taken.add(i)
        for i in range(les.n):
            if i not in taken:
                row = [-1] * n_readers
                row[r] = i
                candidates.append(row)
    return np.array(candidates, dtype=np.int64).reshape(len(candidates), n_readers)


# --- detection agreement -------------------------------------------------------------


def _check_found(found: Any) -> np.ndarray:
    f = np.asarray(found)
    if f.ndim != 2:
        raise LesionError(f"found: expected (candidates, readers), got shape {f.shape}")
    return f.astype(bool)


def detection_counts(n_lesions: np.ndarray, matched: np.ndarray) -> dict[str, np.ndarray]:
    """Pairwise lesion-level F1, sensitivity and PPV from counts.

    ``n_lesions[a]``: lesions reader a found; ``matched[a, b]``: lesions of a matched one
    to one with lesions of b (symmetric). With reader a as reference for reader b:
    ``sensitivity[a, b] = matched / n_a``, ``ppv[a, b] = matched / n_b``,
    ``f1[a, b] = 2 matched / (n_a + n_b)`` (symmetric). Undefined entries are NaN.
    """
    n = np.asarray(n_lesions, dtype=float)
    m = np.asarray(matched, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = m / n[:, None]
        ppv = m / n[None, :]
        f1 = 2 * m / (n[:, None] + n[None, :])
    for x in (sens, ppv, f1):
        np.fill_diagonal(x, np.nan)
    return {"f1": f1, "sensitivity": sens, "ppv": ppv}


def found_by_k(found: Any) -> np.ndarray:
    """How many candidates were found by exactly k of the n readers, k = 1..n."""
    f = _check_found(found)
    return np.bincount(f.sum(1), minlength=f.shape[1] + 1)[1:]


def found_ratings(found: Any, present: Any | None = None) -> np.ndarray:
    """Found / not found as ratings for Fleiss' kappa: (candidates, readers) int, 1 found,
    0 not found, -1 where the reader did not read the candidate's series."""
    f = _check_found(found).astype(np.int64)
    if present is not None:
        f = np.where(np.asarray(present, dtype=bool), f, -1)
    return f


# --- volume agreement ---------------------------------------------------------------


def within_lesion_cv(volumes: Any) -> tuple[float, np.ndarray]:
    """Root mean square within-lesion coefficient of variation (Glüer et al. 1995).

    ``volumes``: (lesions, readers) in mL, NaN where a reader did not find the lesion.
    Per lesion with at least two readers' volumes: ``cv = sd / mean`` (sd with n - 1);
    the summary is ``sqrt(mean(cv^2))``, the precision figure Glüer et al. recommend
    over the mean CV. Returns ``(rms_cv, per_lesion_cv)`` (NaN where undefined).
    """
    v = np.asarray(volumes, dtype=float)
    if v.ndim != 2:
        raise LesionError(f"volumes: expected (lesions, readers), got shape {v.shape}")
    k = np.sum(np.isfinite(v), 1)
    cv = np.full(v.shape[0], np.nan)
    ok = k >= 2
    if ok.any():
        mean = np.nanmean(v[ok], 1)
        sd = np.nanstd(v[ok], 1, ddof=1)
        cv[ok] = np.divide(sd, mean, out=np.full(sd.shape, np.nan), where=mean > 0)
    good = np.isfinite(cv)
    rms = float(np.sqrt(np.mean(cv[good] ** 2))) if good.any() else float("nan")
    return rms, cv


def reader_volume_ratio(volumes: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each reader's volume against the median of the other readers' on the same lesion.

    Returns ``(ratio, log_ratios)``: per reader the geometric mean of
    ``v_reader / median(v_others)`` over the lesions that reader and at least one other
    found, and the per-lesion log ratios behind it (for a paired test). A reader who
    draws every boundary 10 % larger has a ratio of about 1.1.
    """
    v = np.asarray(volumes, dtype=float)
    ratios, logs = [], []
    for r in range(v.shape[1]):
        others = np.delete(v, r, axis=1)
        with np.errstate(all="ignore"):
            med = np.nanmedian(others, axis=1) if others.shape[1] else np.full(len(v), np.nan)
        ok = np.isfinite(v[:, r]) & np.isfinite(med) & (med > 0) & (v[:, r] > 0)
        lr = np.log(v[ok, r] / med[ok])
        logs.append(lr)
        ratios.append(float(np.exp(lr.mean())) if lr.size else float("nan"))
    return np.array(ratios), logs
