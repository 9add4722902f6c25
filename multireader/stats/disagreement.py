"""Per-sample disagreement: how much the readers of one image disagree, as numbers.

Every function here takes the arrays of :mod:`multireader.core.collect` and returns one value
per item, vectorised; nothing here touches the database. The dataset layer
(:mod:`multireader.analyses.agreement`) writes them in bulk as sample fields.

The one ``disagreement`` score is in [0, 1] and means the same for every label kind:
**the expected share of disagreement between two readers drawn at random** from those
who read the image.

* Class calls, nominal scale: the share of reader pairs whose calls differ.
* Class calls, ordinal scale: the mean pairwise distance between calls, divided by the
  largest possible distance (``K - 1``): two readers one class apart on a 4-class scale
  disagree by 1/3, at opposite ends by 1. This is the per-item disagreement behind
  linearly weighted kappa.
* Masks: ``1 - `` the mean pairwise Dice coefficient.
* Boxes: ``1 - `` the mean pairwise F1 of optimally matched boxes.

Where a sample has several label kinds the score is the mean over the kinds that have at
least two readers on it. A sample read by fewer than two readers has no disagreement to
measure: its score is None (not 0), so it never sorts as a confident agreement.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np


def counts_matrix(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_items, n_classes)`` number of readers who called each class."""
    n = codes.shape[0]
    valid = codes >= 0
    rows = np.broadcast_to(np.arange(n)[:, None], codes.shape)[valid]
    flat = rows * n_classes + codes[valid]
    return np.bincount(flat, minlength=n * n_classes).reshape(n, n_classes)


def categorical_disagreement(codes: np.ndarray, n_classes: int, ordered: bool) -> dict:
    """Per-item disagreement fields for class calls ``codes`` ``(n, R)``, -1 missing.

    Returns arrays (float with NaN where undefined, which the writer turns into None):
    ``n_readers``, ``readers_disagree`` (bool; False below two reads), ``vote_entropy``
    (Shannon entropy of the vote shares, in bits, normalised by ``log2(min(m, K))`` so 1
    means the m reads are spread as evenly as they can be), ``majority_share`` (the top
    class's share of the reads), ``disagreement`` (see the module docstring) and, for an
    ordinal scale, ``ordinal_range`` and ``ordinal_std`` of the class ranks.
    """
    counts = counts_matrix(codes, n_classes).astype(float)
    m = counts.sum(axis=1)
    two = m >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        p = counts / m[:, None]
        plogp = np.where(counts > 0, p * np.log2(np.where(p > 0, p, 1)), 0.0)
        entropy = -plogp.sum(axis=1)
        denom = np.log2(np.minimum(m, n_classes))
        vote_entropy = np.where(two & (denom > 0), entropy / np.where(denom > 0, denom, 1), np.nan)
        majority_share = np.where(m > 0, counts.max(axis=1) / np.where(m > 0, m, 1), np.nan)
        pairs = m * (m - 1)
        if ordered and n_classes > 1:
            k = np.arange(n_classes, dtype=float)
            # sum over ordered pairs of |k_a - k_b| = sum_ab n_a n_b |a - b|
            dist = np.abs(k[:, None] - k[None, :])
            pair_dist = np.einsum("ia,ab,ib->i", counts, dist, counts)
            dis = pair_dist / np.where(two, pairs, 1) / (n_classes - 1)
        else:
            agree_pairs = (counts * (counts - 1)).sum(axis=1)
            dis = 1.0 - agree_pairs / np.where(two, pairs, 1)
        dis = np.where(two, dis, np.nan)
    out = {
        "n_readers": m.astype(np.int64),
        "readers_disagree": two & ((counts > 0).sum(axis=1) > 1),
        "vote_entropy": vote_entropy,
        "majority_share": majority_share,
        "disagreement": np.clip(dis, 0.0, 1.0),
    }
    if ordered:
        ranks = np.where(codes >= 0, codes, np.nan).astype(float)
        with np.errstate(invalid="ignore"), quiet_nan_warnings():
            hi = np.nanmax(np.where(m[:, None] > 0, ranks, 0), axis=1)
            lo = np.nanmin(np.where(m[:, None] > 0, ranks, 0), axis=1)
            std = np.nanstd(ranks, axis=1)
        out["ordinal_range"] = np.where(m > 0, hi - lo, np.nan)
        out["ordinal_std"] = np.where(m > 0, std, np.nan)
    return out


def score_spread(scores: np.ndarray) -> dict:
    """Range and standard deviation of the readers' numeric scores per item (NaN missing)."""
    n_scored = (~np.isnan(scores)).sum(axis=1)
    with quiet_nan_warnings():
        rng = np.nanmax(scores, axis=1) - np.nanmin(scores, axis=1)
        std = np.nanstd(scores, axis=1)
    return {
        "score_range": np.where(n_scored >= 1, rng, np.nan),
        "score_std": np.where(n_scored >= 1, std, np.nan),
    }


def combine(parts: list[np.ndarray]) -> np.ndarray:
    """The mean of per-kind disagreement scores over the kinds defined on each item."""
    stack = np.vstack(parts)
    defined = ~np.isnan(stack)
    total = np.where(defined, stack, 0.0).sum(axis=0)
    n = defined.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.where(n > 0, n, 1), np.nan)


@contextlib.contextmanager
def quiet_nan_warnings() -> Iterator[None]:
    """Silence numpy's all-NaN slice warnings: those items are masked out afterwards."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
