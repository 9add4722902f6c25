"""How strongly a model contests a label: per-label scores for one or several readers.

Pure numpy, no I/O. Class codes are integers ``0..K-1`` with ``-1`` for "not read";
``probs`` are a model's class probabilities, one row per item. The dataset layer
(:mod:`multireader.analyses.label_errors`) reads fields into these arrays and writes the scores.

Two families of score:

- :func:`brain_mistakenness` is FiftyOne brain's classification mistakenness, written
  out so it can be computed in bulk for every reader at once: it only asks whether the
  model's top class differs from the label and how confident the model is.
- :func:`crowdlab` is CROWDLAB (Goh, Tkachenko & Mueller 2022), which weighs the other
  readers' votes together with the model, each by how reliable it has proved, and scores
  every reader's label by its posterior probability. It uses how far off a label is (a
  "benign" call on a confidently malignant nodule scores worse than "probably benign")
  and whether the panel backs it, so it ranks label errors better when several readers
  read the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multireader.stats.ratings import class_counts

#: lower bound CROWDLAB clips weights and error rates to (as in the paper's code)
_CLIP = 1e-6


def _check(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=float)
    y = np.asarray(labels)
    if p.ndim != 2:
        raise ValueError(f"probs must be (n_items, n_classes), got shape {p.shape}")
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"labels have {y.shape[0]} items, probs {p.shape[0]}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError("labels must be integer class codes (-1 for missing)")
    if (y >= p.shape[1]).any() or (y < -1).any():
        raise ValueError(f"labels must be in -1..{p.shape[1] - 1}")
    return y, p


def confidence_entropy(probs: np.ndarray) -> np.ndarray:
    """``exp(-H(p))`` with the natural-log entropy H: 1 for a certain model, 1/K at worst."""
    p = np.asarray(probs, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return np.exp(-h)


def brain_mistakenness(
    labels: np.ndarray, probs: np.ndarray, predicted: np.ndarray | None = None
) -> np.ndarray:
    """FiftyOne brain's classification mistakenness of each label, NaN where unread.

    With ``c = exp(-H(softmax(logits)))`` and ``m = +1`` when the model's label differs
    from the given one (``-1`` when it agrees), mistakenness is ``(m * c + 1) / 2``: near
    1 for a confident model that disagrees, near 0 for a confident model that agrees,
    about 0.5 when the model is unsure (``fiftyone.brain.compute_mistakenness`` with
    ``use_logits=True``; Voxel51). ``predicted`` is the model's stored label (default:
    the most probable class).

    >>> brain_mistakenness(np.array([0, 1]), np.array([[0.9, 0.1], [0.9, 0.1]])).round(3)
    array([0.139, 0.861])
    """
    y, p = _check(labels, probs)
    top = np.argmax(p, axis=1) if predicted is None else np.asarray(predicted)
    c = confidence_entropy(p)
    out = np.full(y.shape, np.nan)
    if y.ndim == 1:
        read = y >= 0
        m = np.where(top[read] != y[read], 1.0, -1.0)
        out[read] = (m * c[read] + 1.0) / 2.0
        return out
    for j in range(y.shape[1]):
        out[:, j] = brain_mistakenness(y[:, j], p, top)
    return out


def self_confidence(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``p[label]`` per item (NaN where unread): the standard label-quality score of
    confident learning (Northcutt, Jiang & Chuang 2021); lower means more likely wrong."""
    y, p = _check(labels, probs)
    if y.ndim == 2:
        return np.column_stack([self_confidence(y[:, j], p) for j in range(y.shape[1])])
    out = np.full(y.shape, np.nan)
    read = y >= 0
    out[read] = p[np.flatnonzero(read), y[read]]
    return out


def majority_vote_with_model(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Majority vote; a tie goes to the tied class the model finds most probable, then to
    the rarer class overall, then to the tied class whose voters agree most with the
    untied majority (CROWDLAB's initial consensus). -1 where nobody read the item."""
    y, p = _check(labels, probs)
    k = p.shape[1]
    counts = class_counts(y, k)
    has = counts.sum(axis=1) > 0
    top = counts.max(axis=1, keepdims=True)
    tied = (counts == top) & has[:, None]
    out = np.where(has, np.argmax(counts, axis=1), -1)
    multi = tied.sum(axis=1) > 1
    if not multi.any():
        return out
    # 1: the model's preference among the tied classes
    cand = np.where(tied, p, -np.inf)
    best = cand == cand.max(axis=1, keepdims=True)
    tied = tied & best
    # 2: the rarer class among all votes
    freq = counts.sum(axis=0)
    cand = np.where(tied, -freq[None, :], -np.inf)
    tied = tied & (cand == cand.max(axis=1, keepdims=True))
    still = tied.sum(axis=1) > 1
    if still.any():
        # 3: the class whose voters agree most with the untied majority elsewhere
        clear = has & ~multi
        acc = np.full(y.shape[1], np.nan)
        for j in range(y.shape[1]):
            rj = clear & (y[:, j] >= 0)
            if rj.any():
                acc[j] = np.mean(y[rj, j] == out[rj])
        acc = np.where(np.isnan(acc), np.nanmean(acc) if np.isfinite(acc).any() else 0, acc)
        for i in np.flatnonzero(still):
            score = np.full(k, -np.inf)
            for c in np.flatnonzero(tied[i]):
                score[c] = acc[y[i] == c].mean()
            tied[i] &= score == score.max()
    # whatever is still tied goes to the lowest class code: deterministic, never random
    return np.where(has, np.argmax(tied, axis=1), -1)


@dataclass
class CrowdlabResult:
    """What :func:`crowdlab` found; arrays are per item, or per item and reader."""

    consensus: np.ndarray  # (n,) class code, -1 where unread
    consensus_quality: np.ndarray  # (n,) posterior probability of the consensus class
    label_quality: np.ndarray  # (n, R) posterior probability of each reader's label, NaN unread
    posterior: np.ndarray  # (n, K)
    model_weight: float
    reader_weights: np.ndarray  # (R,)
    reader_agreement: np.ndarray  # (R,) agreement with the other readers on shared items
    consensus_likelihood: float  # P: chance a reader's label is the consensus class
    model_error: float  # model's top class vs consensus on multiply-read items
    baseline_error: float  # always-the-commonest-class error on the same items


def _reader_agreement(y: np.ndarray, n_reads: np.ndarray) -> np.ndarray:
    """Each reader's mean share of the *other* readers agreeing with them, weighted by the
    number of other readers per item; NaN for a reader who shares no item."""
    r = y.shape[1]
    out = np.full(r, np.nan)
    for j in range(r):
        rows = (y[:, j] >= 0) & (n_reads > 1)
        if not rows.any():
            continue
        same = (y[rows] == y[rows, j][:, None]).sum(axis=1) - 1
        others = n_reads[rows] - 1
        out[j] = same.sum() / others.sum()
    if np.isnan(out).any() and np.isfinite(out).any():
        out[np.isnan(out)] = np.nanmean(out)
    return out


def _crowdlab_posterior(y, p, consensus, n_reads):
    k = p.shape[1]
    multi = n_reads > 1
    agree = np.zeros(len(y))
    for j in range(y.shape[1]):
        agree += y[:, j] == consensus
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = agree / n_reads
    likelihood = float(np.mean(agreement[multi]))
    other = (1.0 - likelihood) / (k - 1)
    cons_m = consensus[multi]
    commonest = np.argmax(np.bincount(cons_m, minlength=k))
    baseline = max(float(np.mean(cons_m != commonest)), _CLIP)
    reader_agreement = _reader_agreement(y, n_reads)
    reader_w = np.clip(1.0 - (1.0 - reader_agreement) / baseline, _CLIP, None)
    model_error = float(np.mean(np.argmax(p[multi], axis=1) != cons_m))
    model_w = max(1.0 - model_error / baseline, _CLIP) * np.sqrt(np.mean(n_reads))
    post = model_w * p
    total = np.full(len(y), model_w)
    for j in range(y.shape[1]):
        read = y[:, j] >= 0
        vote = np.full((int(read.sum()), k), other)
        vote[np.arange(vote.shape[0]), y[read, j]] = likelihood
        post[read] += reader_w[j] * vote
        total[read] += reader_w[j]
    post /= total[:, None]
    return post, likelihood, baseline, reader_agreement, reader_w, model_w, model_error


def crowdlab(labels: np.ndarray, probs: np.ndarray) -> CrowdlabResult:
    """CROWDLAB label quality for items read by several readers (Goh et al. 2022).

    The posterior class distribution of item i is a weighted average of the model's
    probabilities and one vote vector per reader who read it::

        post_i = (w_M p_i + sum_j w_j v_ij) / (w_M + sum_j w_j)

    where ``v_ij`` puts ``P`` on reader j's label and ``(1 - P) / (K - 1)`` on every other
    class, and ``P`` is the mean share of readers agreeing with the consensus on items
    read more than once. Weights compare each source's error with that of always
    answering the commonest consensus class (``e_B``): ``w_j = 1 - (1 - a_j) / e_B`` with
    ``a_j`` reader j's agreement with the *other* readers, and
    ``w_M = (1 - e_M / e_B) * sqrt(mean reads per item)`` with ``e_M`` the model's error
    against consensus; both clipped at 1e-6. The consensus starts as a majority vote
    (ties broken by the model), and is then replaced by the posterior's most probable
    class (ties keep the vote), after which everything is recomputed once.

    The quality of reader j's label on item i is ``post_i[label_ij]``; the consensus
    quality is ``post_i[consensus_i]``. Items with no read get NaN / -1. Needs at least
    one item read by two readers.

    References
    ----------
    Goh, H. W., Tkachenko, U. & Mueller, J. (2022). CROWDLAB: Supervised learning to
    infer consensus labels and quality scores for data with multiple annotators.
    NeurIPS 2022 Workshop on Human in the Loop Learning; arXiv:2210.06812.
    """
    y, p = _check(labels, probs)
    if y.ndim != 2:
        raise ValueError("labels must be (n_items, n_readers)")
    n_reads = (y >= 0).sum(axis=1)
    if not (n_reads > 1).any():
        raise ValueError("CROWDLAB needs at least one item read by two or more readers")
    if p.shape[1] < 2:
        raise ValueError("CROWDLAB needs at least two classes")
    read = n_reads > 0
    yy, pp, nn = y[read], p[read], n_reads[read]
    mv = majority_vote_with_model(yy, pp)
    post = _crowdlab_posterior(yy, pp, mv, nn)[0]
    top = post == post.max(axis=1, keepdims=True)
    consensus = np.where(top.sum(axis=1) == 1, np.argmax(post, axis=1), mv)
    post, like, base, agree, rw, mw, me = _crowdlab_posterior(yy, pp, consensus, nn)

    n, k = p.shape
    full_post = np.full((n, k), np.nan)
    full_post[read] = post
    cons = np.full(n, -1)
    cons[read] = consensus
    quality = np.full(n, np.nan)
    quality[read] = post[np.arange(len(post)), consensus]
    label_q = np.full(y.shape, np.nan)
    rows = np.flatnonzero(read)
    for j in range(y.shape[1]):
        rj = yy[:, j] >= 0
        label_q[rows[rj], j] = post[np.flatnonzero(rj), yy[rj, j]]
    return CrowdlabResult(
        consensus=cons,
        consensus_quality=quality,
        label_quality=label_q,
        posterior=full_post,
        model_weight=float(mw),
        reader_weights=rw,
        reader_agreement=agree,
        consensus_likelihood=like,
        model_error=me,
        baseline_error=base,
    )


def mask_mistakenness(reader_mask: np.ndarray | None, predicted: np.ndarray | None) -> float:
    """``1 - Dice`` between a reader's mask and a predicted mask (foreground = nonzero).

    Both empty agree (0.0); either missing gives NaN (nothing to compare).
    """
    from multireader.stats.masks import dice

    if reader_mask is None or predicted is None:
        return float("nan")
    a = np.asarray(reader_mask) > 0
    b = np.asarray(predicted) > 0
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: reader {a.shape}, predicted {b.shape}")
    if not a.any() and not b.any():
        return 0.0
    return 1.0 - dice(a, b)


def precision_at_k(scores: np.ndarray, positives: np.ndarray, k: int | None = None) -> float:
    """Share of true positives among the ``k`` highest ``scores`` (NaN scores never rank,
    so with fewer than ``k`` scores the missing places count as misses); ``k`` defaults
    to the number of positives (R-precision)."""
    s = np.asarray(scores, dtype=float)
    pos = np.asarray(positives, dtype=bool)
    k = int(pos.sum()) if k is None else int(k)
    if k <= 0:
        raise ValueError("k must be positive (no positives to find)")
    order = np.argsort(np.where(np.isnan(s), np.inf, -s), kind="stable")[:k]
    return float((pos[order] & ~np.isnan(s[order])).sum() / k)
