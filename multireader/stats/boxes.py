"""Agreement between readers' bounding boxes, and weighted box fusion.

Boxes are ``(n, 4)`` arrays ``[x, y, width, height]`` (FiftyOne's top-left format, all in
the same units, relative or pixels); an empty reading is a ``(0, 4)`` array (or an empty
list); a reader who did not read the image is ``None``. Optional ``labels`` (n,) str and
``scores`` (n,) float accompany them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "box_iou",
    "box_pair_agreement",
    "match_boxes",
    "pairwise_box_agreement",
    "weighted_box_fusion",
]


# --------------------------------------------------------------------------- validation
def _as_boxes(boxes: object, name: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(
            f"{name} must be an (n, 4) array of [x, y, width, height], got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    if (arr[:, 2:] < 0).any():
        raise ValueError(f"{name} has a negative width or height")
    return arr


def _as_labels(labels: object, n: int, name: str) -> np.ndarray | None:
    if labels is None:
        return None
    arr = np.asarray(labels, dtype=object).ravel()
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries for {n} boxes")
    return arr


def _as_scores(scores: object, n: int, name: str) -> np.ndarray:
    if scores is None:
        return np.ones(n)
    arr = np.asarray(scores, dtype=np.float64).ravel()
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries for {n} boxes")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    return arr


def _check_threshold(iou_threshold: float) -> float:
    if not (isinstance(iou_threshold, int | float) and 0.0 < float(iou_threshold) <= 1.0):
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    return float(iou_threshold)


def _per_reader(values: object, n_readers: int, name: str) -> list:
    if values is None:
        return [None] * n_readers
    if not isinstance(values, Sequence) or len(values) != n_readers:
        raise ValueError(f"{name} must be a list with one entry per reader ({n_readers})")
    return list(values)


# --------------------------------------------------------------------------- IoU
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    ``IoU(A, B) = area(A ∩ B) / (area(A) + area(B) - area(A ∩ B))``.

    Parameters
    ----------
    a : (n, 4), b : (m, 4)
        ``[x, y, width, height]`` boxes.

    Returns
    -------
    ndarray (n, m)
        IoU in [0, 1]. A pair whose union has zero area (two degenerate boxes) is 0.0.

    References
    ----------
    Everingham, M. et al. (2010). The PASCAL Visual Object Classes (VOC) challenge.
    International Journal of Computer Vision 88, 303-338.

    Examples
    --------
    >>> box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 2, 2], [5, 5, 1, 1]]))
    array([[0.33333333, 0.        ]])
    """
    ba, bb = _as_boxes(a, "a"), _as_boxes(b, "b")
    lo = np.maximum(ba[:, None, :2], bb[None, :, :2])
    hi = np.minimum(ba[:, None, :2] + ba[:, None, 2:], bb[None, :, :2] + bb[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=2)
    union = (ba[:, 2] * ba[:, 3])[:, None] + (bb[:, 2] * bb[:, 3])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# --------------------------------------------------------------------------- matching
def match_boxes(
    a: np.ndarray,
    b: np.ndarray,
    iou_threshold: float = 0.5,
    labels_a: Sequence[str] | np.ndarray | None = None,
    labels_b: Sequence[str] | np.ndarray | None = None,
    match_labels: bool = False,
) -> dict[str, np.ndarray]:
    """One-to-one matching of two readers' boxes maximising total IoU.

    Pairs with ``IoU < iou_threshold`` (and, with ``match_labels``, pairs of different
    labels) are ineligible. Among eligible pairs the Hungarian algorithm picks the
    one-to-one assignment with the largest sum of IoU.

    Returns
    -------
    dict
        ``pairs`` (k, 2) int indices ``(i in a, j in b)`` sorted by ``i``; ``ious`` (k,);
        ``unmatched_a``, ``unmatched_b``: int index arrays of boxes left unmatched.
        Empty inputs give empty arrays.

    References
    ----------
    Kuhn, H. W. (1955). The Hungarian method for the assignment problem. Naval Research
    Logistics Quarterly 2, 83-97.
    """
    thr = _check_threshold(iou_threshold)
    ba, bb = _as_boxes(a, "a"), _as_boxes(b, "b")
    la, lb = _as_labels(labels_a, len(ba), "labels_a"), _as_labels(labels_b, len(bb), "labels_b")
    if match_labels and (la is None or lb is None):
        raise ValueError("match_labels=True needs labels_a and labels_b")
    ious = box_iou(ba, bb)
    eligible = ious >= thr
    if match_labels:
        eligible &= la[:, None] == lb[None, :]
    pairs = np.zeros((0, 2), dtype=np.intp)
    if eligible.any():
        rows, cols = linear_sum_assignment(np.where(eligible, ious, 0.0), maximize=True)
        keep = eligible[rows, cols]
        pairs = np.stack([rows[keep], cols[keep]], axis=1).astype(np.intp)
    return {
        "pairs": pairs,
        "ious": ious[pairs[:, 0], pairs[:, 1]],
        "unmatched_a": np.setdiff1d(np.arange(len(ba)), pairs[:, 0]),
        "unmatched_b": np.setdiff1d(np.arange(len(bb)), pairs[:, 1]),
    }


def box_pair_agreement(a: np.ndarray, b: np.ndarray, **kwargs: object) -> dict[str, object]:
    """Detection agreement between two readers, treating either as the reference.

    ``F1 = 2 k / (n_a + n_b)`` with ``k`` matched pairs from :func:`match_boxes`
    (keyword arguments go there); symmetric in ``a`` and ``b``.

    Returns
    -------
    dict
        ``f1`` (1.0 when both readers drew no box: both say "no finding"; 0.0 when only
        one did), ``mean_iou`` over matched pairs (None when there are none),
        ``n_matched``, ``unmatched_a``, ``unmatched_b`` (counts).

    References
    ----------
    Van Rijsbergen, C. J. (1979). Information Retrieval, 2nd ed., ch. 7. Butterworths.
    """
    m = match_boxes(a, b, **kwargs)  # type: ignore[arg-type]
    k = len(m["pairs"])
    n_a, n_b = k + len(m["unmatched_a"]), k + len(m["unmatched_b"])
    return {
        "f1": 1.0 if n_a + n_b == 0 else 2.0 * k / (n_a + n_b),
        "mean_iou": float(m["ious"].mean()) if k else None,
        "n_matched": k,
        "unmatched_a": len(m["unmatched_a"]),
        "unmatched_b": len(m["unmatched_b"]),
    }


def pairwise_box_agreement(
    boxes_per_reader: Sequence[np.ndarray | None],
    labels_per_reader: Sequence[Sequence[str] | None] | None = None,
    iou_threshold: float = 0.5,
    match_labels: bool = False,
) -> dict[str, object]:
    """Box agreement between every pair of readers of one image.

    Returns
    -------
    dict
        - ``f1``, ``mean_iou``: R x R nested lists from :func:`box_pair_agreement`; None
          where either reader is missing. Diagonal: ``f1`` 1.0, ``mean_iou`` 1.0 (None
          if the reader drew no box).
        - ``n_unmatched``: number of boxes, over all present readers, that have no match
          in at least one other present reader (each such finding is counted once, however
          many readers missed it); 0 with fewer than two readers.
        - ``n_readers``: readers present.
    """
    thr = _check_threshold(iou_threshold)
    n = len(boxes_per_reader)
    labels = _per_reader(labels_per_reader, n, "labels_per_reader")
    present = [i for i, b in enumerate(boxes_per_reader) if b is not None]
    boxes = {i: _as_boxes(boxes_per_reader[i], f"boxes_per_reader[{i}]") for i in present}
    f1 = [[None] * n for _ in range(n)]
    mean_iou = [[None] * n for _ in range(n)]
    missed = {i: np.zeros(len(boxes[i]), dtype=bool) for i in present}
    for i in present:
        f1[i][i] = 1.0
        mean_iou[i][i] = 1.0 if len(boxes[i]) else None
    for x, i in enumerate(present):
        for j in present[x + 1 :]:
            m = match_boxes(
                boxes[i], boxes[j], thr, labels[i], labels[j], match_labels=match_labels
            )
            k = len(m["pairs"])
            total = len(boxes[i]) + len(boxes[j])
            f1[i][j] = f1[j][i] = 1.0 if total == 0 else 2.0 * k / total
            mean_iou[i][j] = mean_iou[j][i] = float(m["ious"].mean()) if k else None
            missed[i][m["unmatched_a"]] = True
            missed[j][m["unmatched_b"]] = True
    return {
        "f1": f1,
        "mean_iou": mean_iou,
        "n_unmatched": int(sum(int(v.sum()) for v in missed.values())),
        "n_readers": len(present),
    }


# --------------------------------------------------------------------------- fusion
def weighted_box_fusion(
    boxes_per_reader: Sequence[np.ndarray | None],
    scores_per_reader: Sequence[Sequence[float] | None] | None = None,
    labels_per_reader: Sequence[Sequence[str] | None] | None = None,
    iou_threshold: float = 0.55,
    min_readers: int = 1,
) -> dict[str, object]:
    """Weighted boxes fusion (WBF) of several readers' boxes into consensus boxes.

    Per label, all boxes are visited in decreasing score. A box joins the cluster whose
    current fused box it overlaps most, if that IoU exceeds ``iou_threshold`` (strictly,
    as in the paper's code); otherwise it starts a cluster. A cluster's fused box is the
    score-weighted mean of its members' corners, ``X = Σ s_k x_k / Σ s_k``, updated as
    members join. Its confidence is the mean member score scaled by the share of readers
    that contributed, ``C = mean(s_k) * n_readers / R`` with ``R`` the readers present;
    the paper scales by ``min(T, n_boxes) / T`` for ``T`` models, which is the same when
    each reader adds at most one box to a cluster. Clusters with fewer than
    ``min_readers`` distinct readers are dropped.

    Parameters
    ----------
    boxes_per_reader : list of (n_r, 4) arrays or None (reader did not read the image)
    scores_per_reader : list of (n_r,) or None; default 1.0 for every box
    labels_per_reader : list of (n_r,) str or None; default one common label (None)
    iou_threshold : float in (0, 1]
    min_readers : int >= 1

    Returns
    -------
    dict
        ``boxes`` (n, 4) ``[x, y, w, h]``; ``scores`` (n,); ``labels`` (n,) object (None
        when no labels were given); ``n_readers`` (n,) distinct contributing readers;
        ``members``: per fused box, the list of ``(reader_index, box_index)``. Sorted by
        decreasing score. No present reader or no box: empty arrays.

    References
    ----------
    Solovyev, R., Wang, W., & Gabruseva, T. (2021). Weighted boxes fusion: Ensembling
    boxes from different object detection models. Image and Vision Computing 107, 104117.

    Examples
    --------
    >>> out = weighted_box_fusion([np.array([[0.0, 0, 10, 10]]), np.array([[1.0, 0, 10, 10]])],
    ...                           scores_per_reader=[[0.9], [0.3]])
    >>> out["boxes"].round(3).tolist(), out["scores"].round(3).tolist()
    ([[0.25, 0.0, 10.0, 10.0]], [0.6])
    """
    thr = _check_threshold(iou_threshold)
    if not isinstance(min_readers, int | np.integer) or min_readers < 1:
        raise ValueError(f"min_readers must be a positive integer, got {min_readers!r}")
    n = len(boxes_per_reader)
    scores_in = _per_reader(scores_per_reader, n, "scores_per_reader")
    labels_in = _per_reader(labels_per_reader, n, "labels_per_reader")
    present = [i for i, b in enumerate(boxes_per_reader) if b is not None]

    rows = []  # (score, reader, index, label, x1, y1, x2, y2)
    for r in present:
        b = _as_boxes(boxes_per_reader[r], f"boxes_per_reader[{r}]")
        s = _as_scores(scores_in[r], len(b), f"scores_per_reader[{r}]")
        lab = _as_labels(labels_in[r], len(b), f"labels_per_reader[{r}]")
        for k in range(len(b)):
            x, y, w, h = b[k]
            rows.append((s[k], r, k, None if lab is None else lab[k], x, y, x + w, y + h))

    fused_boxes, fused_scores, fused_labels, fused_n, members = [], [], [], [], []
    by_label: dict[object, list] = {}
    for row in rows:
        by_label.setdefault(row[3], []).append(row)
    for label, group in by_label.items():
        # Stable sort: ties keep reader order, so the result does not depend on set order.
        group.sort(key=lambda t: -t[0])
        clusters: list[list] = []
        fused = np.zeros((0, 4))  # current fused corners per cluster
        for row in group:
            corners = np.array(row[4:8])
            j = -1
            if len(fused):
                xywh = np.column_stack([fused[:, :2], fused[:, 2:] - fused[:, :2]])
                ious = box_iou(np.array([[*corners[:2], *(corners[2:] - corners[:2])]]), xywh)[0]
                best = int(np.argmax(ious))
                if ious[best] > thr:
                    j = best
            if j < 0:
                clusters.append([row])
                fused = np.vstack([fused, corners])
            else:
                clusters[j].append(row)
                s = np.array([m[0] for m in clusters[j]])
                c = np.array([m[4:8] for m in clusters[j]])
                fused[j] = (s @ c) / s.sum() if s.sum() > 0 else c.mean(axis=0)
        for j, cl in enumerate(clusters):
            readers = {m[1] for m in cl}
            if len(readers) < min_readers:
                continue
            fused_boxes.append([*fused[j, :2], *(fused[j, 2:] - fused[j, :2])])
            fused_scores.append(np.mean([m[0] for m in cl]) * len(readers) / len(present))
            fused_labels.append(label)
            fused_n.append(len(readers))
            members.append([(m[1], m[2]) for m in cl])

    order = np.argsort(-np.asarray(fused_scores, dtype=np.float64), kind="stable")
    labels_out = np.empty(len(order), dtype=object)
    labels_out[:] = [fused_labels[i] for i in order]
    return {
        "boxes": np.asarray(fused_boxes, dtype=np.float64).reshape(-1, 4)[order],
        "scores": np.asarray(fused_scores, dtype=np.float64)[order],
        "labels": labels_out,
        "n_readers": np.asarray(fused_n, dtype=np.intp)[order],
        "members": [members[i] for i in order],
    }
