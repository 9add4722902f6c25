"""Reader profiles: each reader's confusion against a reference, bias and drift.

Three statistics, each a function in the manner of scikit-learn's metrics, and
:func:`reader_profiles`, which puts them together in one JSON-serialisable report with
a list of human-readable flags:

- :func:`reader_confusion`: counts of reference class (rows) against the reader's call.
- :func:`prevalence_bias`: does a reader call a class more (or less) often than the
  other readers on the same images? Paired sign test, Holm-corrected.
- :func:`drift`: does a reader's agreement with the reference change across ordered
  reading sessions? Cochran-Armitage trend test, Holm-corrected.
- :func:`ordinal_bias`: on an ordered scale, does a reader call higher (or lower) than
  the other readers on the same images? Paired rank differences against the other
  readers' median, Wilcoxon signed-rank, Holm-corrected, effect size in levels.
- :func:`stuart_maxwell` and :func:`marginal_homogeneity`: on a nominal scale, do a
  reader's call rates over all classes at once differ from the consensus's?

Inputs follow :mod:`multireader.stats.consensus`: ratings ``(n_items, n_readers)`` of class
codes with ``-1`` missing; a reference ``(n_items,)`` with ``-1`` where there is none.
Numpy and scipy only; loops run over readers and classes, never over items.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from multireader.stats.consensus import DawidSkene, MajorityVote
from multireader.stats.estimates import finite, fmt_p, fmt_pct
from multireader.stats.ratings import class_counts, validate_ratings

__all__ = [
    "reader_confusion",
    "prevalence_bias",
    "drift",
    "holm",
    "cochran_armitage",
    "ordinal_bias",
    "stuart_maxwell",
    "marginal_homogeneity",
    "reader_profiles",
]


def _validate_reference(reference: ArrayLike, n_items: int, n_classes: int) -> np.ndarray:
    ref = np.asarray(reference)
    if ref.ndim != 1 or ref.shape[0] != n_items:
        raise ValueError(
            f"reference must be 1-D with one entry per item ({n_items}), got shape {ref.shape}"
        )
    return validate_ratings(ref[:, None], n_classes, name="reference")[:, 0]


def reader_confusion(ratings: ArrayLike, reference: ArrayLike, n_classes: int) -> np.ndarray:
    """Count each reader's calls against a reference label.

    ``C[r, k, l]`` is the number of items whose reference class is k and which reader r
    called l. Missing reads (``-1``) and items without a reference (``-1``) are left out,
    so ``C[r].sum()`` is the number of items reader r read that have a reference.

    Parameters
    ----------
    ratings : array-like of shape (n_items, n_readers)
        Class codes ``0..n_classes-1``, ``-1`` missing.
    reference : array-like of shape (n_items,)
        Reference class per item (a consensus or the truth), ``-1`` where none.
    n_classes : int
        Number of classes K.

    Returns
    -------
    ndarray of shape (n_readers, K, K), int64

    Examples
    --------
    >>> reader_confusion([[0, 1], [1, 1], [1, -1]], [0, 1, -1], 2)[1]
    array([[0, 1],
           [0, 1]])
    """
    r = validate_ratings(ratings, n_classes)
    ref = _validate_reference(reference, r.shape[0], n_classes)
    n_items, n_readers = r.shape
    K = n_classes
    ok = (r >= 0) & (ref[:, None] >= 0)
    reader = np.broadcast_to(np.arange(n_readers)[None, :], r.shape)
    refb = np.broadcast_to(ref[:, None], r.shape)
    flat = (reader[ok] * K + refb[ok]) * K + r[ok]
    return np.bincount(flat, minlength=n_readers * K * K).reshape(n_readers, K, K)


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate).

    With the m p-values sorted ascending, :math:`p_{(i)}`, the adjusted value is
    :math:`\\max_{j \\le i} \\min(1, (m - j + 1) p_{(j)})`. NaN entries are left out of
    the family and stay NaN.

    References
    ----------
    S. Holm (1979). A simple sequentially rejective multiple test procedure.
    Scandinavian Journal of Statistics 6(2), 65-70.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03])
    array([0.03, 0.06, 0.06])
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.flatnonzero(~np.isnan(flat))
    m = len(ok)
    if m:
        order = ok[np.argsort(flat[ok], kind="stable")]
        adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * flat[order]))
        res = out.ravel()
        res[order] = adj
        out = res.reshape(p.shape)
    return out


def _sign_test(n_pos: np.ndarray, n_neg: np.ndarray) -> np.ndarray:
    """Two-sided exact sign test, p = min(1, 2 P(X <= min)) with X ~ Bin(n, 1/2)."""
    n = n_pos + n_neg
    low = np.minimum(n_pos, n_neg)
    p = np.minimum(1.0, 2.0 * stats.binom.cdf(low, n, 0.5))
    return np.where(n > 0, p, 1.0)


def prevalence_bias(
    ratings: ArrayLike,
    n_classes: int,
    alpha: float = 0.05,
    min_difference: float = 0.10,
    *,
    reference: ArrayLike | None = None,
    consensus: Literal["dawid_skene", "majority"] = "dawid_skene",
    leave_one_out: bool = False,
) -> dict[str, np.ndarray]:
    """Does each reader call a class more (or less) often than the panel does on the
    same images?

    Each reader's calls are compared, image for image, with the panel's consensus
    call: ``reference`` when given, else the consensus of ``ratings`` (Dawid-Skene by
    default, or the majority vote; with ``leave_one_out`` the consensus of the *other*
    readers only, refitted for each reader). Images the reader did not read and
    images without a consensus (no reads, or a tie) are left out. On the remaining
    :math:`n_r` images, for each class k:

    - ``rate[r, k]``: share of r's calls that are k; ``consensus_rate[r, k]``: share of
      the consensus calls that are k, on the same images; ``difference`` =
      rate - consensus_rate, which equals :math:`(b - c) / n_r`;
    - the test is McNemar's exact test of marginal homogeneity for "k vs not k":
      :math:`b` = images r calls k and the consensus does not, :math:`c` = the reverse,
      :math:`p = \\min(1, 2 P(X \\le \\min(b, c)))`, :math:`X \\sim \\mathrm{Bin}(b + c,
      1/2)` (the exact sign test on the discordant pairs). Pairing on the same images
      keeps case mix out of the comparison;
    - ``p_holm``: Holm's correction across all readers x classes;
    - ``flagged`` = ``p_holm < alpha`` and ``|difference| >= min_difference``.

    Why the whole panel's Dawid-Skene consensus by default: comparing a reader with the
    other readers' pooled or majority calls makes every unbiased reader look biased the
    opposite way whenever another reader is biased, and a consensus of only the other
    readers (``leave_one_out``) is weaker and easily carried by two readers leaning
    the same way. Dawid-Skene learns each reader's confusion matrix and discounts a
    biased reader. Including the reader in the consensus pulls the consensus toward
    them, which makes the test conservative, never anti-conservative. On the demo study
    (seeds 0-7) this separates the planted biased reader (27-32 points) from the steady
    readers (at most 5 points); see docs/consensus_and_profiles.md.

    Parameters
    ----------
    ratings : array-like of shape (n_items, n_readers)
        Class codes ``0..n_classes-1``, ``-1`` missing.
    n_classes : int
        Number of classes K.
    alpha : float, default 0.05
        Family-wise significance level after Holm's correction.
    min_difference : float, default 0.10
        Smallest absolute difference in call rate (0.10 = 10 points) worth flagging.
    reference : array-like of shape (n_items,), optional, keyword-only
        The consensus call per image (``-1`` where none). Default: computed.
    consensus : {"dawid_skene", "majority"}, default "dawid_skene"
        How the consensus is computed when ``reference`` is not given.
    leave_one_out : bool, default False
        Compare each reader with the consensus of the other readers only. Ignored when
        ``reference`` is given.

    Returns
    -------
    dict of ndarrays
        ``rate``, ``consensus_rate``, ``difference``, ``p``, ``p_holm`` (float, (R, K));
        ``others_rate`` (float, (R, K)), descriptive only: the share of the other
        readers' reads of the same images that are k (NaN where they have none);
        ``n_more``, ``n_less`` (int, (R, K)): the discordant images b and c;
        ``flagged`` (bool, (R, K)); ``n_items`` (int, (R,)): the images compared.
        A reader with no image to compare (no read with a consensus; with
        ``leave_one_out``, a single-reader study) has ``n_items`` 0, NaN rates,
        difference and p (left out of Holm's family) and is never flagged. A class
        nobody used has rates 0 and p 1; when the reader always agrees with the
        consensus (every reader agreeing; a single reader without ``leave_one_out``),
        every p is 1.

    References
    ----------
    Q. McNemar (1947). Note on the sampling error of the difference between correlated
    proportions or percentages. Psychometrika 12(2), 153-157.

    A. P. Dawid and A. M. Skene (1979). Maximum likelihood estimation of observer
    error-rates using the EM algorithm. Applied Statistics 28(1), 20-28.

    S. Holm (1979). A simple sequentially rejective multiple test procedure.
    Scandinavian Journal of Statistics 6(2), 65-70.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.integers(0, 2, 400)
    >>> r = np.stack([truth, truth, truth, np.where(rng.random(400) < 0.3, 1, truth)], 1)
    >>> res = prevalence_bias(r, 2)
    >>> res["flagged"][:, 1].tolist(), round(float(res["difference"][3, 1]), 2)
    ([False, False, False, True], 0.13)
    """
    r = validate_ratings(ratings, n_classes)
    _check_level(alpha, "alpha")
    _check_fraction(min_difference, "min_difference")
    if consensus not in ("dawid_skene", "majority"):
        raise ValueError(f"consensus must be 'dawid_skene' or 'majority', got {consensus!r}")
    n_items, n_readers = r.shape
    K = n_classes
    model = DawidSkene if consensus == "dawid_skene" else MajorityVote
    if reference is not None:
        ref = _validate_reference(reference, n_items, K)
    elif not leave_one_out and (r >= 0).any():
        ref = model(K).fit(r).labels_
    else:
        ref = np.full(n_items, -1)
    shape = (n_readers, K)
    rate, cons_rate, oth_rate, p = (np.full(shape, np.nan) for _ in range(4))
    counts = class_counts(r, K)
    n_more, n_less = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    n_used = np.zeros(n_readers, np.int64)
    for j in range(n_readers):
        if reference is None and leave_one_out:
            rest = np.delete(r, j, axis=1)
            ref = np.full(n_items, -1)
            has = (rest >= 0).any(axis=1)
            if has.any():
                ref[has] = model(K).fit(rest[has]).labels_
        use = (r[:, j] >= 0) & (ref >= 0)
        n_used[j] = int(use.sum())
        if not n_used[j]:
            continue
        x = r[use, j][:, None] == np.arange(K)
        y = ref[use][:, None] == np.arange(K)
        n_more[j] = (x & ~y).sum(axis=0)
        n_less[j] = (~x & y).sum(axis=0)
        rate[j] = x.mean(axis=0)
        cons_rate[j] = y.mean(axis=0)
        oth = (counts[use] - x).sum(axis=0)
        if oth.sum():
            oth_rate[j] = oth / oth.sum()
        p[j] = _sign_test(n_more[j], n_less[j])
    diff = rate - cons_rate
    p_holm = holm(p)
    flagged = (p_holm < alpha) & (np.abs(np.nan_to_num(diff)) >= min_difference)
    return {
        "rate": rate,
        "consensus_rate": cons_rate,
        "others_rate": oth_rate,
        "difference": diff,
        "n_more": n_more,
        "n_less": n_less,
        "p": p,
        "p_holm": p_holm,
        "flagged": flagged,
        "n_items": n_used,
    }


def cochran_armitage(
    successes: ArrayLike, totals: ArrayLike, scores: ArrayLike | None = None
) -> tuple[float, float, float]:
    """Cochran-Armitage test for a linear trend in proportions across ordered groups.

    With :math:`x_s` successes out of :math:`n_s` in group s scored :math:`c_s`,
    :math:`N = \\sum n_s`, :math:`\\bar p = \\sum x_s / N`:

    .. math:: T = \\sum_s c_s (x_s - n_s \\bar p), \\quad
              \\mathrm{Var}(T) = \\bar p (1 - \\bar p) \\Big[\\sum_s n_s c_s^2 -
              \\frac{(\\sum_s n_s c_s)^2}{N}\\Big], \\quad Z = T / \\sqrt{\\mathrm{Var}(T)}

    and the two-sided p-value from the standard normal. The slope is the weighted
    least-squares slope of the proportion on the score,
    :math:`b = T / \\sum_s n_s (c_s - \\bar c)^2`, in proportion per unit score.
    :math:`Z^2` equals :math:`N r^2`, the linear-by-linear association statistic times
    :math:`N / (N - 1)`.

    Parameters
    ----------
    successes, totals : array-like of int, shape (n_groups,)
    scores : array-like of float, shape (n_groups,), optional
        Default ``0, 1, ..., n_groups-1``.

    Returns
    -------
    (z, p, slope) : tuple of float
        ``(0.0, 1.0, 0.0)`` when there is no variation to test: fewer than two groups
        with data, or every outcome the same (all successes or none).

    References
    ----------
    W. G. Cochran (1954). Some methods for strengthening the common chi-squared tests.
    Biometrics 10(4), 417-451.

    P. Armitage (1955). Tests for linear trends in proportions and frequencies.
    Biometrics 11(3), 375-386.

    A. Agresti (2002). Categorical Data Analysis, 2nd ed. (worked example of the trend
    test: maternal alcohol consumption and infant malformation).
    """
    x = np.asarray(successes, dtype=float)
    n = np.asarray(totals, dtype=float)
    c = np.arange(len(x), dtype=float) if scores is None else np.asarray(scores, dtype=float)
    if x.ndim != 1 or n.shape != x.shape or c.shape != x.shape:
        raise ValueError("successes, totals and scores must be 1-D of equal length")
    if np.any(n < 0) or np.any(x < 0) or np.any(x > n):
        raise ValueError("need 0 <= successes <= totals")
    N = n.sum()
    if N == 0:
        return 0.0, 1.0, 0.0
    pbar = x.sum() / N
    cbar = (n * c).sum() / N
    sxx = (n * (c - cbar) ** 2).sum()
    var = pbar * (1 - pbar) * sxx
    if var <= 0 or sxx <= 0:
        return 0.0, 1.0, 0.0
    t = (c * (x - n * pbar)).sum()
    z = t / math.sqrt(var)
    return float(z), float(2 * stats.norm.sf(abs(z))), float(t / sxx)


def drift(
    ratings: ArrayLike,
    reference: ArrayLike,
    sessions: ArrayLike,
    alpha: float = 0.05,
    min_decline: float = 0.10,
    n_classes: int | None = None,
) -> dict[str, Any]:
    """Does each reader's agreement with the reference change across reading sessions?

    For reader r and each ordered session s, ``n[r, s]`` reads with a reference and
    ``agree[r, s]`` of them equal to it; ``rate = agree / n``. The trend test is the
    Cochran-Armitage test (:func:`cochran_armitage`) with the session index as score,
    over the sessions in which r read something; ``slope`` is the fitted change in
    agreement per session and ``decline = -slope * (last - first observed session)``,
    the fitted drop over the sessions observed. Holm's correction runs across readers.
    ``flagged`` = ``p_holm < alpha`` and ``decline >= min_decline`` (improvement is never
    flagged).

    Parameters
    ----------
    ratings : array-like of shape (n_items, n_readers)
        Class codes, ``-1`` missing.
    reference : array-like of shape (n_items,)
        Reference class per item, ``-1`` where none.
    sessions : array-like of int, shape (n_items, n_readers)
        Ordered session (or time-window) index of each read, ``0..n_sessions-1``; ``-1``
        where unknown (the read is then left out).
    alpha : float, default 0.05
    min_decline : float, default 0.10
        Smallest fitted fall in agreement over the observed sessions worth flagging.
    n_classes : int, optional
        For validation; default: inferred from the largest code.

    Returns
    -------
    dict
        ``n``, ``agree`` (int, (R, S)); ``rate`` (float, (R, S), NaN where ``n`` is 0);
        ``z``, ``p``, ``p_holm``, ``slope``, ``decline`` (float, (R,)); ``flagged`` (bool,
        (R,)); ``n_sessions`` (int, (R,)), the sessions with reads. A reader with fewer
        than two sessions with reads gets z 0, slope 0, decline 0 and p NaN (no trend can
        be tested; left out of Holm's family); one whose reads all agree (or all
        disagree) gets z 0, p 1.

    References
    ----------
    W. G. Cochran (1954). Biometrics 10(4), 417-451. P. Armitage (1955). Biometrics
    11(3), 375-386. S. Holm (1979). Scand. J. Statist. 6(2), 65-70.
    """
    raw = np.asarray(ratings)
    if n_classes is None:
        n_classes = max(int(raw.max()) + 1, 1) if raw.size and raw.dtype.kind in "iuf" else 1
    r = validate_ratings(raw, n_classes)
    ref = _validate_reference(reference, r.shape[0], n_classes)
    ses = np.asarray(sessions)
    if ses.shape != r.shape:
        raise ValueError(f"sessions must have the shape of ratings {r.shape}, got {ses.shape}")
    if ses.dtype.kind not in "iu":
        raise ValueError(f"sessions must be integer session indices, got dtype {ses.dtype}")
    if ses.size and ses.min() < -1:
        raise ValueError("sessions must be >= 0, or -1 for unknown")
    _check_level(alpha, "alpha")
    _check_fraction(min_decline, "min_decline")
    n_items, n_readers = r.shape
    S = int(ses.max()) + 1 if ses.size and ses.max() >= 0 else 0
    ok = (r >= 0) & (ref[:, None] >= 0) & (ses >= 0)
    reader = np.broadcast_to(np.arange(n_readers)[None, :], r.shape)[ok]
    flat = reader * S + ses[ok]
    hit = (r == ref[:, None])[ok]
    n = np.bincount(flat, minlength=n_readers * S).reshape(n_readers, S)
    agree = np.bincount(flat, weights=hit, minlength=n_readers * S).reshape(n_readers, S)
    agree = agree.astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, agree / np.maximum(n, 1), np.nan)
    z = np.zeros(n_readers)
    p = np.full(n_readers, np.nan)
    slope = np.zeros(n_readers)
    decline = np.zeros(n_readers)
    n_sessions = (n > 0).sum(axis=1)
    for j in range(n_readers):
        present = np.flatnonzero(n[j] > 0)
        if len(present) < 2:
            continue
        z[j], p[j], slope[j] = cochran_armitage(agree[j, present], n[j, present], present)
        decline[j] = -slope[j] * (present[-1] - present[0])
    p_holm = holm(p)
    flagged = (p_holm < alpha) & (decline >= min_decline)
    return {
        "n": n,
        "agree": agree,
        "rate": rate,
        "z": z,
        "p": p,
        "p_holm": p_holm,
        "slope": slope,
        "decline": decline,
        "n_sessions": n_sessions,
        "flagged": flagged,
    }


def _median_of_others(r: np.ndarray, j: int, use: np.ndarray) -> np.ndarray:
    """Median call of the readers in ``use`` other than j, per item (NaN if none)."""
    cols = [c for c in np.flatnonzero(use) if c != j]
    if not cols:
        return np.full(r.shape[0], np.nan)
    x = r[:, cols].astype(float)
    x[x < 0] = np.nan
    out = np.full(r.shape[0], np.nan)
    has = np.isfinite(x).any(axis=1)
    out[has] = np.nanmedian(x[has], axis=1)
    return out


def _signed_rank(d: np.ndarray) -> tuple[float, float]:
    """Wilcoxon signed-rank z (normal approximation, tie-corrected, zeros dropped) and
    its two-sided p; (0, 1) when every difference is 0."""
    if not np.any(d != 0):
        return 0.0, 1.0
    res = stats.wilcoxon(d, zero_method="wilcox", correction=False, method="approx")
    return float(res.zstatistic), float(res.pvalue)


def ordinal_bias(
    ratings: ArrayLike,
    n_classes: int,
    alpha: float = 0.05,
    min_shift: float = 0.10,
    *,
    reference: ArrayLike | None = None,
    exclude_flagged: bool = True,
    level: float = 0.95,
) -> dict[str, np.ndarray]:
    r"""Does each reader call higher (or lower) on an ordered scale than the others do
    on the same images?

    For reader r and each image r read, the paired difference in levels is
    :math:`d_i = y_{ir} - m_i`, where :math:`m_i` is the median of the other readers'
    calls of image i (a half level when they are an even number), or ``reference[i]``
    when a reference (a consensus level) is given. Images no other reader read, or
    without a reference, are left out. On the remaining :math:`n_r` images:

    - ``shift[r]`` = :math:`\bar d`, the effect size in levels (+0.3: on average 0.3
      levels higher, e.g. one level higher on 30 % of images), with a Student-t
      interval :math:`\bar d \pm t_{n_r-1} s_d / \sqrt{n_r}` at ``level``;
    - the test is Wilcoxon's signed-rank test of :math:`d_i` symmetric about 0: zero
      differences dropped (Wilcoxon's convention), the normal approximation with the
      variance corrected for tied ranks, no continuity correction; a paired rank test
      needs no scale beyond the order of the levels;
    - ``p_holm``: Holm's correction across readers; ``flagged`` = ``p_holm < alpha``
      and :math:`|\bar d| \ge` ``min_shift``.

    A biased reader moves the other readers' medians too, by about a third of their
    shift in a panel of four, enough to flag good readers on a few hundred images. With
    ``exclude_flagged`` (the default, and only without ``reference``) the test therefore
    steps down: the most significant flagged reader is taken out of every other
    reader's median and all readers are tested again, until no new reader is flagged
    or fewer than two readers would remain in the medians. The returned values are
    those of the last round; ``excluded`` says whose calls were left out of the
    medians. On simulated panels (``bench/bench_ordinal_bias.py``; 4 readers, 200 images
    read by all, 5 levels) this detects a +0.3-level shift in at least 95 % of panels and
    flags at most 5 % of unbiased panels (any reader), see
    ``bench/results/ordinal_bias.json``.

    Parameters
    ----------
    ratings : array-like of shape (n_items, n_readers)
        Ordinal codes ``0..n_classes-1`` in scale order, ``-1`` missing.
    n_classes : int
        Number of levels.
    alpha : float, default 0.05
        Family-wise level after Holm's correction.
    min_shift : float, default 0.10
        Smallest absolute mean shift, in levels, worth flagging.
    reference : array-like of shape (n_items,), optional, keyword-only
        A consensus level per image (``-1`` where none) to compare with instead of the
        other readers' median.
    exclude_flagged : bool, default True
        Step down as described above (ignored with ``reference``).
    level : float, default 0.95
        Confidence level of the interval of the shift.

    Returns
    -------
    dict of ndarrays, one entry per reader
        ``n_items`` (int): images compared; ``shift``, ``shift_low``, ``shift_high``,
        ``median_shift`` (float, levels); ``n_higher``, ``n_lower`` (int): images with
        :math:`d_i > 0`, :math:`< 0`; ``z``, ``p``, ``p_holm`` (float); ``flagged``,
        ``excluded`` (bool); and ``n_rounds`` (int array of one element). A reader
        with no image to compare has ``n_items`` 0, NaN shift and p (left out of Holm's
        family), and is never flagged; one whose differences are all 0 has z 0, p 1.

    References
    ----------
    F. Wilcoxon (1945). Individual comparisons by ranking methods. Biometrics Bulletin
    1(6), 80-83.

    J. W. Pratt (1959). Remarks on zeros and ties in the Wilcoxon signed rank
    procedures. JASA 54(287), 655-667 (the tie-corrected variance).

    S. Holm (1979). A simple sequentially rejective multiple test procedure.
    Scandinavian Journal of Statistics 6(2), 65-70.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.integers(0, 5, 300)
    >>> noise = rng.choice([-1, 0, 1], (300, 4), p=[0.15, 0.7, 0.15])
    >>> r = np.clip(truth[:, None] + noise, 0, 4)
    >>> r[:, 3] = np.minimum(r[:, 3] + (rng.random(300) < 0.4), 4)  # one level up on 40 %
    >>> res = ordinal_bias(r, 5)
    >>> res["flagged"].tolist(), round(float(res["shift"][3]), 2)
    ([False, False, False, True], 0.26)
    """
    r = validate_ratings(ratings, n_classes)
    _check_level(alpha, "alpha")
    _check_level(level, "level")
    if isinstance(min_shift, bool) or not isinstance(min_shift, int | float):
        raise ValueError(f"min_shift must be a number >= 0 (levels), got {min_shift!r}")
    if not math.isfinite(min_shift) or min_shift < 0:
        raise ValueError(f"min_shift must be a number >= 0 (levels), got {min_shift!r}")
    n_items, n_readers = r.shape
    ref = None
    if reference is not None:
        ref = _validate_reference(reference, n_items, n_classes).astype(float)
        ref[ref < 0] = np.nan
    excluded = np.zeros(n_readers, bool)
    rounds = 0
    while True:
        rounds += 1
        res = _ordinal_round(r, ref, ~excluded, alpha, min_shift, level)
        if ref is not None or not exclude_flagged:
            break
        new = res["flagged"] & ~excluded
        if not new.any() or (~excluded).sum() - 1 < 2:
            break
        cand = np.flatnonzero(new)
        # the most significant first; a tie goes to the larger shift
        order = np.lexsort((-np.abs(res["shift"][cand]), res["p_holm"][cand]))
        excluded[cand[order[0]]] = True
    res["excluded"] = excluded
    res["n_rounds"] = np.array([rounds])
    return res


def _ordinal_round(
    r: np.ndarray,
    ref: np.ndarray | None,
    use: np.ndarray,
    alpha: float,
    min_shift: float,
    level: float,
) -> dict[str, np.ndarray]:
    n_readers = r.shape[1]
    out = {k: np.full(n_readers, np.nan) for k in ("shift", "shift_low", "shift_high")}
    out.update({k: np.full(n_readers, np.nan) for k in ("median_shift", "z", "p")})
    for k in ("n_items", "n_higher", "n_lower"):
        out[k] = np.zeros(n_readers, np.int64)
    for j in range(n_readers):
        m = ref if ref is not None else _median_of_others(r, j, use)
        ok = (r[:, j] >= 0) & np.isfinite(m)
        n = int(ok.sum())
        out["n_items"][j] = n
        if not n:
            continue
        d = r[ok, j] - m[ok]
        out["n_higher"][j] = int((d > 0).sum())
        out["n_lower"][j] = int((d < 0).sum())
        mean = float(d.mean())
        out["shift"][j] = mean
        out["median_shift"][j] = float(np.median(d))
        if n >= 2:
            half = stats.t.ppf((1 + level) / 2, n - 1) * d.std(ddof=1) / math.sqrt(n)
            out["shift_low"][j], out["shift_high"][j] = mean - half, mean + half
        out["z"][j], out["p"][j] = _signed_rank(d)
    out["p_holm"] = holm(out["p"])
    out["flagged"] = (out["p_holm"] < alpha) & (np.abs(np.nan_to_num(out["shift"])) >= min_shift)
    return out


def stuart_maxwell(table: ArrayLike) -> tuple[float, int, float]:
    r"""Stuart-Maxwell test of marginal homogeneity of a square paired table.

    With :math:`n_{kl}` the pairs rated k by the first rating and l by the second,
    :math:`d_k = n_{k\cdot} - n_{\cdot k}` and the covariance
    :math:`V_{kk} = n_{k\cdot} + n_{\cdot k} - 2 n_{kk}`,
    :math:`V_{kl} = -(n_{kl} + n_{lk})`, the statistic over K - 1 of the classes is

    .. math:: X^2 = d^\top V^{-1} d \sim \chi^2_{K-1}

    under the null that the two margins are equal. A class without any discordant pair
    (:math:`V_{kk} = 0`) has :math:`d_k = 0` and carries no information; it is dropped
    before one more class is, so the statistic exists whenever two classes have
    discordant pairs, with ``df`` = those classes - 1. For a 2 x 2 table it is McNemar's
    statistic :math:`(b - c)^2 / (b + c)`.

    Parameters
    ----------
    table : array-like of shape (K, K)
        Non-negative counts.

    Returns
    -------
    (statistic, df, p) : tuple
        ``(0.0, 0, 1.0)`` when fewer than two classes have discordant pairs.

    References
    ----------
    A. Stuart (1955). A test for homogeneity of the marginal distributions in a two-way
    classification. Biometrika 42(3/4), 412-416.

    A. E. Maxwell (1970). Comparing the classification of subjects by two independent
    judges. British Journal of Psychiatry 116, 651-655.

    A. Agresti (2002). Categorical Data Analysis, 2nd ed., sec. 10.3.

    Examples
    --------
    >>> stat, df, p = stuart_maxwell([[20, 10, 5], [3, 30, 15], [0, 5, 40]])
    >>> round(stat, 3), df, round(p, 5)
    (13.765, 2, 0.00103)
    """
    t = np.asarray(table)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 1:
        raise ValueError(f"table must be a square 2-D array of counts, got shape {t.shape}")
    if t.dtype.kind not in "iuf" or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("table must hold finite non-negative counts")
    t = t.astype(float)
    row, col = t.sum(axis=1), t.sum(axis=0)
    var = row + col - 2 * np.diag(t)
    keep = np.flatnonzero(var > 0)
    if len(keep) < 2:
        return 0.0, 0, 1.0
    keep = keep[:-1]
    d = (row - col)[keep]
    V = -(t + t.T)[np.ix_(keep, keep)]
    V[np.diag_indices(len(keep))] = var[keep]
    stat = float(d @ np.linalg.solve(V, d))
    df = len(keep)
    return stat, df, float(stats.chi2.sf(stat, df))


def marginal_homogeneity(
    ratings: ArrayLike,
    n_classes: int,
    alpha: float = 0.05,
    min_difference: float = 0.10,
    *,
    reference: ArrayLike | None = None,
    consensus: Literal["dawid_skene", "majority"] = "dawid_skene",
) -> dict[str, np.ndarray]:
    r"""Do a reader's call rates, over all classes at once, differ from the consensus's
    on the same images? (Nominal scales.)

    For each reader, the paired table of the reader's call (rows) against the
    consensus call (columns) on the images both have, and the Stuart-Maxwell test of
    equal margins (:func:`stuart_maxwell`): one test per reader instead of one per
    class, so a reader who moves a few points of calls between several classes is seen
    as a whole. The consensus is ``reference`` when given, else the panel's
    Dawid-Skene (or majority) consensus, as in :func:`prevalence_bias`. Holm across
    readers; ``flagged`` = ``p_holm < alpha`` and the largest absolute difference of
    call rates :math:`\max_k |n_{k\cdot} - n_{\cdot k}| / n` >= ``min_difference``.

    Returns
    -------
    dict of ndarrays
        ``n_items`` (int, (R,)); ``statistic``, ``p``, ``p_holm``, ``max_difference``
        (float, (R,)); ``df`` (int, (R,)); ``flagged`` (bool, (R,)); ``table`` (int,
        (R, K, K)). A reader with no image to compare has NaN statistic and p (left out
        of Holm's family).

    References
    ----------
    A. Stuart (1955). Biometrika 42(3/4), 412-416. A. E. Maxwell (1970). Brit. J.
    Psychiatry 116, 651-655. S. Holm (1979). Scand. J. Statist. 6(2), 65-70.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> truth = rng.integers(0, 3, 400)
    >>> shifted = np.where((truth == 0) & (rng.random(400) < 0.4), 2, truth)
    >>> res = marginal_homogeneity(np.stack([truth] * 3 + [shifted], 1), 3, reference=truth)
    >>> res["flagged"].tolist(), round(float(res["max_difference"][3]), 2)
    ([False, False, False, True], 0.14)
    """
    r = validate_ratings(ratings, n_classes)
    _check_level(alpha, "alpha")
    _check_fraction(min_difference, "min_difference")
    if consensus not in ("dawid_skene", "majority"):
        raise ValueError(f"consensus must be 'dawid_skene' or 'majority', got {consensus!r}")
    n_items, n_readers = r.shape
    K = n_classes
    if reference is not None:
        ref = _validate_reference(reference, n_items, K)
    elif (r >= 0).any():
        ref = (DawidSkene if consensus == "dawid_skene" else MajorityVote)(K).fit(r).labels_
    else:
        ref = np.full(n_items, -1)
    tables = reader_confusion(r, ref, K).transpose(0, 2, 1)  # rows: the reader's call
    stat, p, maxd = (np.full(n_readers, np.nan) for _ in range(3))
    df = np.zeros(n_readers, np.int64)
    n_used = tables.sum(axis=(1, 2))
    for j in range(n_readers):
        if n_used[j]:
            stat[j], df[j], p[j] = stuart_maxwell(tables[j])
            maxd[j] = np.abs(tables[j].sum(1) - tables[j].sum(0)).max() / n_used[j]
    p_holm = holm(p)
    flagged = (p_holm < alpha) & (np.nan_to_num(maxd) >= min_difference)
    return {
        "n_items": n_used,
        "statistic": stat,
        "df": df,
        "p": p,
        "p_holm": p_holm,
        "max_difference": maxd,
        "flagged": flagged,
        "table": tables,
    }


def _check_level(alpha: float, name: str) -> None:
    if not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ValueError(f"{name} must be in (0, 1), got {alpha!r}")


def _check_fraction(value: float, name: str) -> None:
    if not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


#: decimals stored for rates and statistics (p-values keep 12)
_DIGITS = 6


def reader_profiles(
    ratings: ArrayLike,
    reference: ArrayLike,
    n_classes: int,
    sessions: ArrayLike | None = None,
    reader_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.05,
    min_difference: float = 0.10,
    min_decline: float = 0.10,
    session_names: Sequence[str] | None = None,
    bias_reference: Literal["reference", "dawid_skene", "majority"] = "reference",
    reference_name: str = "the reference",
    scale: Literal["nominal", "ordinal"] | None = None,
    min_shift: float = 0.10,
) -> dict[str, Any]:
    """One report per reader: reads, confusion and accuracy against the reference, call
    rates against the other readers with the bias test, agreement by session with the
    drift test, and a list of flags.

    Parameters
    ----------
    ratings : array-like of shape (n_items, n_readers)
        Class codes, ``-1`` missing.
    reference : array-like of shape (n_items,)
        Reference class per item (e.g. ``DawidSkene(...).fit(ratings).labels_``), ``-1``
        where none.
    n_classes : int
    sessions : array-like of int, shape (n_items, n_readers), optional
        Ordered session index per read, ``-1`` unknown. Without it there is no drift
        section.
    reader_names, class_names, session_names : sequences of str, optional
        Default ``R1..``, ``class 0..``, ``session 0..``.
    alpha, min_difference, min_decline : float
        See :func:`prevalence_bias` and :func:`drift`.
    bias_reference : {"reference", "dawid_skene", "majority"}, default "reference"
        What the bias test compares each reader's calls with: ``reference`` itself
        (the panel's consensus), or a leave-one-out consensus of the other readers.
    reference_name : str, default "the reference"
        How the drift flag's sentence names the reference, e.g. "the dawid-skene
        consensus".
    scale : {"nominal", "ordinal"}, optional
        Adds the test made for the scale to each reader's entry and to the flags:
        ``"ordinal"``, :func:`ordinal_bias` (paired level differences against the other
        readers' median, Wilcoxon, Holm) as ``"ordinal_bias"``; ``"nominal"``,
        :func:`marginal_homogeneity` (Stuart-Maxwell against the same consensus as the
        per-class test) as ``"marginal_homogeneity"``. Default: neither.
    min_shift : float, default 0.10
        Smallest mean shift in levels the ordinal test flags.

    Returns
    -------
    dict
        JSON-serialisable (plain Python types, no NaN: an undefined value is ``None``
        with a ``note`` saying why)::

            {"n_items", "n_readers", "classes", "readers", "parameters", "methods",
             "per_reader": {name: {"n_reads", "n_with_reference", "accuracy",
                                   "confusion", "prevalence": {class: {...}},
                                   "drift": {...} | None, "notes": [...]}},
             "flags": [{"reader", "kind": "bias" | "drift" | "ordinal_bias" |
                        "marginal_homogeneity", "class" (bias only),
                        "direction", "p_holm", "detail"}]}

        With ``scale``, each reader's entry also has ``"ordinal_bias"`` (``n_items``,
        ``shift`` in levels with ``shift_ci``, ``median_shift``, ``n_higher``,
        ``n_lower``, ``z``, ``p``, ``p_holm``, ``flagged``, ``excluded_from_medians``)
        or ``"marginal_homogeneity"`` (``n_items``, ``statistic``, ``df``, ``p``,
        ``p_holm``, ``max_difference``, ``flagged``).
    """
    r = validate_ratings(ratings, n_classes)
    ref = _validate_reference(reference, r.shape[0], n_classes)
    n_items, n_readers = r.shape
    readers = _names(reader_names, n_readers, "reader_names", lambda i: f"R{i + 1}")
    classes = _names(class_names, n_classes, "class_names", lambda i: f"class {i}")

    conf = reader_confusion(r, ref, n_classes)
    if bias_reference not in ("reference", "dawid_skene", "majority"):
        raise ValueError(
            "bias_reference must be 'reference', 'dawid_skene' or 'majority', "
            f"got {bias_reference!r}"
        )
    bias = prevalence_bias(
        r,
        n_classes,
        reference=ref if bias_reference == "reference" else None,
        alpha=alpha,
        min_difference=min_difference,
        consensus="majority" if bias_reference == "majority" else "dawid_skene",
        leave_one_out=bias_reference != "reference",
    )
    if scale not in (None, "nominal", "ordinal"):
        raise ValueError(f"scale must be None, 'nominal' or 'ordinal', got {scale!r}")
    ob = (
        ordinal_bias(r, n_classes, alpha=alpha, min_shift=min_shift) if scale == "ordinal" else None
    )
    mh = None
    if scale == "nominal":
        mh = marginal_homogeneity(
            r,
            n_classes,
            alpha=alpha,
            min_difference=min_difference,
            reference=ref if bias_reference == "reference" else None,
            consensus="majority" if bias_reference == "majority" else "dawid_skene",
        )
    dr = None
    if sessions is not None:
        dr = drift(r, ref, sessions, alpha=alpha, min_decline=min_decline, n_classes=n_classes)
        n_s = dr["n"].shape[1]
        sessions_named = _names(session_names, n_s, "session_names", lambda i: f"session {i}")

    per_reader: dict[str, Any] = {}
    flags: list[dict[str, Any]] = []
    for j, name in enumerate(readers):
        notes: list[str] = []
        n_ref = int(conf[j].sum())
        acc = finite(np.trace(conf[j]) / n_ref, _DIGITS) if n_ref else None
        if n_ref == 0:
            notes.append("accuracy is None: no read of this reader has a reference label")
        prev: dict[str, Any] = {}
        if bias["n_items"][j] == 0:
            notes.append("call rates are None: no image read by this reader and another")
        for k, cname in enumerate(classes):
            prev[cname] = {
                "rate": finite(bias["rate"][j, k], _DIGITS),
                "consensus_rate": finite(bias["consensus_rate"][j, k], _DIGITS),
                "others_rate": finite(bias["others_rate"][j, k], _DIGITS),
                "difference": finite(bias["difference"][j, k], _DIGITS),
                "n_more": int(bias["n_more"][j, k]),
                "n_less": int(bias["n_less"][j, k]),
                "p": finite(bias["p"][j, k], 12),
                "p_holm": finite(bias["p_holm"][j, k], 12),
                "flagged": bool(bias["flagged"][j, k]),
            }
            if bias["flagged"][j, k]:
                d = float(bias["difference"][j, k])
                flags.append(
                    {
                        "reader": name,
                        "kind": "bias",
                        "class": cname,
                        "direction": "more" if d > 0 else "fewer",
                        "p_holm": finite(bias["p_holm"][j, k], 12),
                        "detail": (
                            f"{name} calls {cname} on {fmt_pct(bias['rate'][j, k])} of images vs "
                            f"{fmt_pct(bias['consensus_rate'][j, k])} for the panel's consensus "
                            f"and {fmt_pct(bias['others_rate'][j, k])} for the other readers "
                            f"on the same {int(bias['n_items'][j])} images "
                            f"({fmt_p(float(bias['p_holm'][j, k]), 'p')}, Holm)"
                        ),
                    }
                )
        entry: dict[str, Any] = {
            "n_reads": int((r[:, j] >= 0).sum()),
            "n_with_reference": n_ref,
            "accuracy": acc,
            "confusion": conf[j].tolist(),
            "n_shared_images": int(bias["n_items"][j]),
            "prevalence": prev,
            "drift": None,
            "notes": notes,
        }
        if dr is not None:
            per_session = [
                {
                    "session": sessions_named[s],
                    "n": int(dr["n"][j, s]),
                    "agreement": finite(dr["rate"][j, s], _DIGITS),
                }
                for s in range(dr["n"].shape[1])
            ]
            testable = not np.isnan(dr["p"][j])
            if not testable:
                notes.append("drift p is None: reads in fewer than two sessions")
            entry["drift"] = {
                "sessions": per_session,
                "slope_per_session": finite(dr["slope"][j], _DIGITS),
                "fitted_decline": finite(dr["decline"][j], _DIGITS),
                "z": finite(dr["z"][j], _DIGITS),
                "p": finite(dr["p"][j], 12),
                "p_holm": finite(dr["p_holm"][j], 12),
                "flagged": bool(dr["flagged"][j]),
            }
            if dr["flagged"][j]:
                present = np.flatnonzero(dr["n"][j] > 0)
                first, last = present[0], present[-1]
                flags.append(
                    {
                        "reader": name,
                        "kind": "drift",
                        "direction": "decline",
                        "p_holm": finite(dr["p_holm"][j], 12),
                        "detail": (
                            f"{name}'s agreement with {reference_name} falls from "
                            f"{fmt_pct(dr['rate'][j, first])} in {sessions_named[first]} to "
                            f"{fmt_pct(dr['rate'][j, last])} in {sessions_named[last]} "
                            f"(fitted {100 * dr['slope'][j]:+.1f} points per session, "
                            f"{fmt_p(float(dr['p_holm'][j]), 'p')}, Holm)"
                        ),
                    }
                )
        if ob is not None:
            entry["ordinal_bias"], flag = _ordinal_entry(ob, j, name)
            flags.extend(flag)
        if mh is not None:
            entry["marginal_homogeneity"], flag = _homogeneity_entry(mh, j, name)
            flags.extend(flag)
        per_reader[name] = entry

    methods = {
        "bias": (
            "McNemar's exact test, per class, of the reader's calls against the panel "
            f"consensus ({bias_reference}) on the same images; Holm across "
            "readers x classes"
        ),
        "drift": (
            "Cochran-Armitage trend test of agreement with the reference across "
            "ordered sessions; Holm across readers"
        ),
    }
    if ob is not None:
        methods["ordinal_bias"] = (
            "Wilcoxon signed-rank test of the reader's level minus the other readers' "
            "median on the same images, stepping down (a flagged reader leaves the "
            "others' medians); Holm across readers; effect size: mean shift in levels"
        )
    if mh is not None:
        methods["marginal_homogeneity"] = (
            "Stuart-Maxwell test of equal call rates over all classes, the reader's "
            f"calls against the panel consensus ({bias_reference}); Holm across readers"
        )
    return {
        "n_items": int(n_items),
        "n_readers": int(n_readers),
        "classes": list(classes),
        "readers": list(readers),
        "parameters": {
            "bias_reference": bias_reference,
            "alpha": alpha,
            "min_difference": min_difference,
            "min_decline": min_decline,
            "scale": scale,
            "min_shift": min_shift,
        },
        "methods": methods,
        "per_reader": per_reader,
        "flags": flags,
    }


def _ordinal_entry(ob: dict, j: int, name: str) -> tuple[dict[str, Any], list[dict]]:
    entry = {
        "n_items": int(ob["n_items"][j]),
        "shift": finite(ob["shift"][j], _DIGITS),
        "shift_ci": [finite(ob["shift_low"][j], _DIGITS), finite(ob["shift_high"][j], _DIGITS)],
        "median_shift": finite(ob["median_shift"][j], _DIGITS),
        "n_higher": int(ob["n_higher"][j]),
        "n_lower": int(ob["n_lower"][j]),
        "z": finite(ob["z"][j], _DIGITS),
        "p": finite(ob["p"][j], 12),
        "p_holm": finite(ob["p_holm"][j], 12),
        "flagged": bool(ob["flagged"][j]),
        "excluded_from_medians": bool(ob["excluded"][j]),
    }
    if not ob["n_items"][j]:
        entry["note"] = "no image read by this reader and another"
    flags = []
    if ob["flagged"][j]:
        d = float(ob["shift"][j])
        flags.append(
            {
                "reader": name,
                "kind": "ordinal_bias",
                "direction": "higher" if d > 0 else "lower",
                "p_holm": entry["p_holm"],
                "detail": (
                    f"{name} calls {abs(d):.2f} levels {'higher' if d > 0 else 'lower'} "
                    f"than the other readers' median on the same {entry['n_items']} images "
                    f"(95% CI {ob['shift_low'][j]:+.2f} to {ob['shift_high'][j]:+.2f}; higher on "
                    f"{entry['n_higher']}, lower on {entry['n_lower']}; Wilcoxon "
                    f"{fmt_p(float(ob['p_holm'][j]), 'p')}, Holm)"
                ),
            }
        )
    return entry, flags


def _homogeneity_entry(mh: dict, j: int, name: str) -> tuple[dict[str, Any], list[dict]]:
    entry = {
        "n_items": int(mh["n_items"][j]),
        "statistic": finite(mh["statistic"][j], _DIGITS),
        "df": int(mh["df"][j]),
        "p": finite(mh["p"][j], 12),
        "p_holm": finite(mh["p_holm"][j], 12),
        "max_difference": finite(mh["max_difference"][j], _DIGITS),
        "flagged": bool(mh["flagged"][j]),
    }
    if not mh["n_items"][j]:
        entry["note"] = "no image read by this reader with a consensus"
    flags = []
    if mh["flagged"][j]:
        flags.append(
            {
                "reader": name,
                "kind": "marginal_homogeneity",
                "direction": "different",
                "p_holm": entry["p_holm"],
                "detail": (
                    f"{name}'s call rates differ from the consensus's on the same "
                    f"{entry['n_items']} images (largest gap "
                    f"{fmt_pct(mh['max_difference'][j])}; Stuart-Maxwell chi2 "
                    f"{mh['statistic'][j]:.1f} on {entry['df']} df, "
                    f"{fmt_p(float(mh['p_holm'][j]), 'p')}, Holm)"
                ),
            }
        )
    return entry, flags


def _names(names: Sequence[str] | None, n: int, arg: str, default) -> list[str]:
    if names is None:
        return [default(i) for i in range(n)]
    names = [str(x) for x in names]
    if len(names) != n:
        raise ValueError(f"{arg} must have {n} entries, got {len(names)}")
    if len(set(names)) != n:
        raise ValueError(f"{arg} has duplicates: {names}")
    return names
