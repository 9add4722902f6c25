"""Agreement statistics for several readers labelling the same items.

Pure numpy/scipy, one public function per statistic, vectorised and linear in the number
of reads. Conventions shared by the whole project:

* categorical / ordinal ratings: int array ``(n_items, n_readers)``, class codes
  ``0..n_classes-1``, ``-1`` = not read. For ordinal data the code order is the scale.
  ``n_classes`` is explicit, so a class nobody used still counts (it matters for Gwet's
  chance agreement and for the per-class tables).
* continuous measurements: float array ``(n_items, n_readers)``, ``NaN`` = not read.

Undefined results are never a silent NaN. Scalar functions raise
:class:`UndefinedStatisticError` (a ``ValueError``) with the reason, e.g. when chance
agreement is 1 and kappa is 0/0. Functions returning arrays (per class, per reader
pair) document which entries are NaN and why. The two summaries used by the dataset
layer (:func:`categorical_summary`, :func:`continuous_summary`) return JSON-ready dicts
where every undefined value is ``None`` next to a ``note`` saying why.

Bootstrap intervals re-weight per-item sufficient statistics (class counts, coincidence
contributions, per-pair confusion cells) instead of re-running a statistic on copied
data: items with identical rating rows are collapsed first, and one replicate is a
multinomial draw of how often each distinct row (or group of items) is picked
(:mod:`multireader.stats.bootstrap`, the package's one bootstrap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import sparse
from scipy import stats as _st

from multireader.errors import MultireaderError
from multireader.stats.bootstrap import (
    BootstrapResult,
    Units,
    check_level,
    check_n_boot,
    group_codes,
    percentile_interval,
    resampled_sums,
    resampling_units,
)
from multireader.stats.estimates import Estimate, finite
from multireader.stats.ratings import check_n_classes, class_counts, validate_ratings

__all__ = [
    "UndefinedStatisticError",
    "percent_agreement",
    "cohen_kappa",
    "pairwise_cohen_kappa",
    "fleiss_kappa",
    "fleiss_kappa_per_class",
    "krippendorff_alpha",
    "gwet_ac",
    "specific_agreement",
    "term_counts",
    "icc",
    "ICCResult",
    "bland_altman",
    "bootstrap_ci",
    "BootstrapResult",
    "categorical_summary",
    "continuous_summary",
    "BOOTSTRAP_STATISTICS",
    "kappa_from_confusion",
    "weight_matrix",
]

Weights = Literal["linear", "quadratic"] | None
Level = Literal["nominal", "ordinal", "interval", "ratio"]

#: below this, 1 - p_e (or D_e) is treated as 0: the statistic is 0/0
_EPS = 1e-12


class UndefinedStatisticError(MultireaderError):
    """The statistic is 0/0 on these data; the message says which term vanished and why."""


# --------------------------------------------------------------------------- validation


def _check_weights(weights: Any) -> str | None:
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic'; got {weights!r}")
    return weights


def _check_values(values: Any, name: str = "values", min_readers: int = 2) -> np.ndarray:
    x = np.asarray(values)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_items, n_readers); got shape {x.shape}")
    if x.dtype.kind in "iub":
        # integer input follows the categorical convention: -1 = not read
        x = np.where(x == -1, np.nan, x.astype(np.float64))
    elif x.dtype.kind == "f":
        x = x.astype(np.float64, copy=False)
    else:
        raise ValueError(f"{name} must be numeric (NaN = not read); got dtype {x.dtype}")
    if np.isinf(x).any():
        raise ValueError(f"{name} holds an infinite value; use NaN for a missing read")
    if x.shape[1] < min_readers:
        raise ValueError(
            f"{name} has {x.shape[1]} reader column(s); agreement needs at least two readers"
        )
    return x


def weight_matrix(n_classes: int, weights: Weights = None) -> np.ndarray:
    """Agreement weights ``w_kl`` of Cohen (1968), 1 on the diagonal.

    ``w = I`` without weights; linear ``w_kl = 1 - |k - l| / (K - 1)``; quadratic
    ``w_kl = 1 - (k - l)^2 / (K - 1)^2`` (Cohen 1968; Gwet 2014, sec. 3.1). With one
    class every weighting is the identity.

    Parameters
    ----------
    n_classes : number of classes K.
    weights : None, "linear" or "quadratic".

    Returns
    -------
    float array (K, K).

    References
    ----------
    Cohen, J. (1968). Weighted kappa. Psychological Bulletin, 70(4), 213-220.
    Gwet, K. L. (2014). Handbook of Inter-Rater Reliability, 4th ed. Advanced Analytics.

    Examples
    --------
    >>> weight_matrix(3, "linear").tolist()
    [[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]]
    """
    n_classes = check_n_classes(n_classes)
    weights = _check_weights(weights)
    k = np.arange(n_classes, dtype=np.float64)
    if weights is None or n_classes == 1:
        return np.eye(n_classes)
    d = np.abs(k[:, None] - k[None, :]) / (n_classes - 1)
    return 1.0 - d if weights == "linear" else 1.0 - d**2


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den is 0 (internal; callers turn NaN into a reason)."""
    num, den = np.broadcast_arrays(np.asarray(num, float), np.asarray(den, float))
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=np.abs(den) > _EPS)
    return out


def _chance_corrected(pa: np.ndarray, pe: np.ndarray) -> np.ndarray:
    return _div(pa - pe, 1.0 - pe)


# ------------------------------------------------------------- per-item sufficient stats
#
# Every categorical statistic below is a function of sums over items of per-item
# features. Point estimates sum them once; the bootstrap sums them with resample
# weights. Feature blocks (each an (items x width) array):
#   has1, has2    item has >= 1 / >= 2 reads
#   pa            sum_k C_k (C_k - 1) / (r (r - 1))           (items with r >= 2)
#   pi            C_k / r                                        (items with r >= 1)
#   dis           C_k (r - C_k) / (r (r - 1))                    (r >= 2)
#   sa_num/sa_den C_k (C_k - 1) and C_k (r - 1)                  (r >= 2)
#   ka_nc         C_k, ka_agree sum_k C_k (C_k - 1) / (r - 1)    (r >= 2, Krippendorff)
#   pa_linear/pa_quadratic, ka_int, ka_coinc (K*K)               (ordinal only)


def _item_features(
    C: np.ndarray, *, ordinal: bool, want: frozenset[str] | None = None
) -> dict[str, np.ndarray]:
    """The feature blocks above (only those in ``want``, all when None)."""

    def need(name: str) -> bool:
        return want is None or name in want

    K = C.shape[1]
    Cf = C.astype(np.float64)
    ones = np.ones(K)
    r = Cf @ ones  # row sums by BLAS: reductions along a short axis are slow in numpy
    h2 = (r >= 2).astype(np.float64)
    rr = np.where(r >= 2, r * (r - 1), 1.0)
    r1 = np.where(r >= 2, r - 1, 1.0)
    f: dict[str, np.ndarray] = {}
    if need("has1"):
        f["has1"] = (r >= 1).astype(np.float64)[:, None]
    f["has2"] = h2[:, None]
    if need("pa") or need("ka_agree"):
        same = (Cf * Cf) @ ones - r
        f["pa"] = (same / rr * h2)[:, None]
        if need("ka_agree"):
            f["ka_agree"] = (same / r1 * h2)[:, None]
    if need("pi"):
        f["pi"] = Cf / np.where(r >= 1, r, 1.0)[:, None]
    if need("dis"):
        f["dis"] = Cf * (r[:, None] - Cf) / rr[:, None] * h2[:, None]
    if need("sa_num"):
        f["sa_num"] = Cf * (Cf - 1) * h2[:, None]
        f["sa_den"] = Cf * (r - 1)[:, None] * h2[:, None]
    if need("ka_nc"):
        f["ka_nc"] = Cf * h2[:, None]
    if ordinal:
        for w in ("linear", "quadratic"):
            if need(f"pa_{w}"):
                W = weight_matrix(K, w)
                f[f"pa_{w}"] = ((((Cf @ W) * Cf).sum(1) - r) / rr * h2)[:, None]
        if need("ka_int"):
            codes = np.arange(K, dtype=np.float64)
            s1, s2 = Cf @ codes, Cf @ codes**2
            f["ka_int"] = ((2 * r * s2 - 2 * s1**2) / r1 * h2)[:, None]
        if need("ka_coinc"):
            co = Cf[:, :, None] * Cf[:, None, :]
            co[:, np.arange(K), np.arange(K)] -= Cf
            f["ka_coinc"] = (co / r1[:, None, None] * h2[:, None, None]).reshape(len(C), K * K)
    return f


def _pair_index(n_readers: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n_readers, k=1)


def _pair_features(x: np.ndarray, n_classes: int) -> sparse.csr_matrix:
    """Items x (pairs*K*K) one-hot confusion cells, one block of K*K per reader pair."""
    n = x.shape[0]
    ia, ib = _pair_index(x.shape[1])
    KK = n_classes * n_classes
    rows, cols = [], []
    for p, (a, b) in enumerate(zip(ia, ib, strict=True)):  # loop over reader pairs only
        both = (x[:, a] >= 0) & (x[:, b] >= 0)
        rows.append(np.flatnonzero(both))
        cols.append(p * KK + x[both, a] * n_classes + x[both, b])
    rows_a = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cols_a = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return sparse.csr_matrix(
        (np.ones(len(rows_a)), (rows_a, cols_a)), shape=(n, max(len(ia), 1) * KK)
    )


def _stack(feats: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, slice]]:
    layout, start = {}, 0
    for k, v in feats.items():
        layout[k] = slice(start, start + v.shape[1])
        start += v.shape[1]
    return np.hstack(list(feats.values())), layout


# --------------------------------------------------------- statistics from summed stats


def kappa_from_confusion(conf: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Cohen's (weighted) kappa of confusion tables, vectorised over leading axes.

    With ``p = conf / n``, ``p_o = sum_kl w_kl p_kl`` and
    ``p_e = sum_kl w_kl p_k. p_.l``, ``kappa = (p_o - p_e) / (1 - p_e)`` (Cohen 1960,
    1968): :func:`cohen_kappa` on a table of counts instead of two label arrays, so a
    bootstrap can evaluate many resampled tables at once.

    Parameters
    ----------
    conf : array (..., K, K) of counts, rows one reader (or the reference), columns
        the other.
    W : agreement weights (K, K), see :func:`weight_matrix`.

    Returns
    -------
    float array (...). NaN where a table has fewer than two items or chance agreement
    is 1 (kappa is 0/0).

    References
    ----------
    Cohen, J. (1960, 1968), see :func:`cohen_kappa`.

    Examples
    --------
    >>> round(float(kappa_from_confusion(np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1]]),
    ...                                  weight_matrix(3))), 4)
    0.6364
    """
    conf = np.asarray(conf, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    if conf.ndim < 2 or conf.shape[-1] != conf.shape[-2] or W.shape != conf.shape[-2:]:
        raise ValueError(
            f"conf must be (..., K, K) and W (K, K); got shapes {conf.shape}, {W.shape}"
        )
    n = conf.sum((-2, -1))
    p = _div(conf, n[..., None, None])
    po = (p * W).sum((-2, -1))
    pe = (p.sum(-1)[..., :, None] * p.sum(-2)[..., None, :] * W).sum((-2, -1))
    k = _chance_corrected(po, pe)
    return np.where(n >= 2, k, np.nan)


def _alpha_from_sums(S: dict[str, np.ndarray], level: str, K: int) -> np.ndarray:
    nc = S["ka_nc"]
    n = nc.sum(-1)
    codes = np.arange(K, dtype=np.float64)
    if level == "nominal":
        do = n - S["ka_agree"][..., 0]
        de = n**2 - (nc**2).sum(-1)
    elif level == "interval":
        do = S["ka_int"][..., 0]
        de = 2 * n * (nc @ codes**2) - 2 * (nc @ codes) ** 2
    else:  # ordinal: metric (M_k - M_c)^2 on mid-ranks M = cumsum(n) - n/2
        o = S["ka_coinc"].reshape(*nc.shape[:-1], K, K)
        M = np.cumsum(nc, -1) - nc / 2
        d = (M[..., :, None] - M[..., None, :]) ** 2
        do = (o * d).sum((-2, -1))
        de = (nc[..., :, None] * nc[..., None, :] * d).sum((-2, -1))
    return 1.0 - (n - 1) * _div(do, de)


def _categorical_from_sums(
    S: dict[str, np.ndarray], name: str, K: int, n_readers: int
) -> np.ndarray:
    """One statistic, vectorised over the leading (replicate) axis of the sums."""
    pa = _div(S["pa"][..., 0], S["has2"][..., 0]) if "pa" in S else None
    pi = _div(S["pi"], S["has1"]) if "pi" in S else None
    if name == "percent_agreement":
        return pa
    if name == "fleiss_kappa":
        return _chance_corrected(pa, (pi**2).sum(-1))
    if name.startswith("gwet_ac"):
        w = None if name == "gwet_ac1" else name.rsplit("_", 1)[1]
        if w is not None:
            pa = _div(S[f"pa_{w}"][..., 0], S["has2"][..., 0])
        tw = weight_matrix(K, w).sum()
        pe = tw * (pi * (1 - pi)).sum(-1) / (K * (K - 1))
        return _chance_corrected(pa, pe)
    if name.startswith("krippendorff_alpha_"):
        return _alpha_from_sums(S, name.rsplit("_", 1)[1], K)
    if name == "specific_agreement":
        return _div(S["sa_num"], S["sa_den"])
    if name == "fleiss_kappa_per_class":
        return 1.0 - _div(_div(S["dis"], S["has2"]), pi * (1 - pi))
    if name.startswith("pairwise_"):
        conf = S["pairs"].reshape(*S["pairs"].shape[:-1], -1, K, K)
        if name == "pairwise_percent_agreement":
            n = conf.sum((-2, -1))
            v = np.where(n >= 2, _div(np.trace(conf, axis1=-2, axis2=-1), n), np.nan)
        else:
            w = {"pairwise_cohen_kappa": None}.get(name, name.rsplit("_", 1)[-1])
            v = kappa_from_confusion(conf, weight_matrix(K, w))
        ia, ib = _pair_index(n_readers)
        out = np.full((*v.shape[:-1], n_readers, n_readers), np.nan)
        out[..., ia, ib] = v[..., : len(ia)]
        out[..., ib, ia] = v[..., : len(ia)]
        out[..., np.arange(n_readers), np.arange(n_readers)] = 1.0
        return out
    raise ValueError(f"unknown statistic {name!r}")


#: statistic names :func:`bootstrap_ci` accepts for categorical ratings
BOOTSTRAP_STATISTICS = (
    "percent_agreement",
    "fleiss_kappa",
    "fleiss_kappa_per_class",
    "specific_agreement",
    "gwet_ac1",
    "gwet_ac2_linear",
    "gwet_ac2_quadratic",
    "krippendorff_alpha_nominal",
    "krippendorff_alpha_ordinal",
    "krippendorff_alpha_interval",
    "pairwise_cohen_kappa",
    "pairwise_cohen_kappa_linear",
    "pairwise_cohen_kappa_quadratic",
    "pairwise_percent_agreement",
)
_NEEDS_ORDINAL = (
    "gwet_ac2_linear",
    "gwet_ac2_quadratic",
    "krippendorff_alpha_ordinal",
    "krippendorff_alpha_interval",
)


def _point_sums(
    x: np.ndarray, K: int, want: tuple[str, ...], *, ordinal: bool = False
) -> dict[str, np.ndarray]:
    feats = _item_features(class_counts(x, K), ordinal=ordinal, want=frozenset(want))
    ones = np.ones(len(x))
    return {k: ones @ v for k, v in feats.items()}


def _agreement_sums(x: np.ndarray, K: int) -> dict[str, np.ndarray]:
    """Sums of has1, has2, pa and pi straight from the ratings, for few readers.

    ``sum_k C_k (C_k - 1)`` is twice the number of agreeing reader pairs, counted with
    one comparison per reader pair (R (R - 1) / 2 passes over the items), and
    ``sum_i C_ik / r_i`` is one bincount of (class, reads-per-item): no items x classes
    float arrays. Falls back to the class-count features when readers are many.
    """
    n, R = x.shape
    if R * (R - 1) // 2 > 2 * K + 4:
        return _point_sums(x, K, ("has1", "pa", "pi"))
    xt = np.ascontiguousarray(x.T)
    v = xt >= 0
    r = v.sum(0, dtype=np.int64)
    match = np.zeros(n, np.int64)
    for j in range(R - 1):  # loop over reader pairs, not items
        for k in range(j + 1, R):
            match += (xt[j] == xt[k]) & v[j]
    h2 = r >= 2
    pa = 2.0 * (match[h2] / (r[h2] * (r[h2] - 1.0))).sum()
    cnt = np.bincount((xt + K * r)[v], minlength=K * (R + 1)).reshape(R + 1, K)
    pi = (cnt[1:] / np.arange(1, R + 1)[:, None]).sum(0)
    return {
        "has1": np.array([float((r >= 1).sum())]),
        "has2": np.array([float(h2.sum())]),
        "pa": np.array([pa]),
        "pi": pi,
    }


def _need_two_reads(S: dict[str, np.ndarray]) -> None:
    if S["has2"][0] == 0:
        raise ValueError("no item has at least two reads, so there is no agreement to measure")


def _scalar(v: np.ndarray, why: str) -> float:
    v = float(v)
    if not math.isfinite(v):
        raise UndefinedStatisticError(why)
    return v


_WHY_KAPPA = (
    "chance agreement p_e is 1 (every read falls in one class), so "
    "(p_o - p_e) / (1 - p_e) is 0/0; percent agreement stays defined, and so does "
    "Gwet's AC1 when the scale has two or more classes"
)
_WHY_ALPHA = (
    "every pairable value is the same, so the expected disagreement D_e is 0 and "
    "alpha = 1 - D_o / D_e is 0/0"
)


# ------------------------------------------------------------------ public statistics


def percent_agreement(ratings: np.ndarray, n_classes: int) -> float:
    """Mean share of agreeing reader pairs per item.

    For item i with r_i >= 2 reads and C_ik reads in class k,
    ``P_i = sum_k C_ik (C_ik - 1) / (r_i (r_i - 1))`` and the result is the mean of P_i
    over the items with at least two reads (Fleiss 1971, eq. 2, with r_i in place of a
    constant n; Gwet 2014, sec. 2.3). Items with fewer than two reads are left out.

    Parameters
    ----------
    ratings : int array (n_items, n_readers), class codes, -1 = not read.
    n_classes : number of classes.

    Returns
    -------
    float in [0, 1].

    Raises
    ------
    ValueError
        fewer than two reader columns, or no item with two reads.

    References
    ----------
    Fleiss, J. L. (1971). Measuring nominal scale agreement among many raters.
    Psychological Bulletin, 76(5), 378-382.

    Examples
    --------
    >>> percent_agreement(np.array([[0, 0, 1], [1, 1, -1]]), 2)
    0.6666666666666666
    """
    K = check_n_classes(n_classes)
    x = validate_ratings(ratings, K, min_readers=2, floats=False)
    S = _agreement_sums(x, K)
    _need_two_reads(S)
    return float(_categorical_from_sums(S, "percent_agreement", K, x.shape[1]))


def cohen_kappa(a: np.ndarray, b: np.ndarray, n_classes: int, weights: Weights = None) -> float:
    """Cohen's kappa between two readers, on the items both read.

    ``kappa_w = (p_o - p_e) / (1 - p_e)`` with ``p_o = sum_kl w_kl p_kl`` and
    ``p_e = sum_kl w_kl p_k. p_.l`` over the joint proportions p_kl of the items read by
    both. Agreement weights: ``w = I`` (Cohen 1960), linear ``1 - |k-l|/(K-1)`` or
    quadratic ``1 - (k-l)^2/(K-1)^2`` (Cohen 1968). Equal to
    ``sklearn.metrics.cohen_kappa_score(a, b, labels=range(K), weights=...)``.

    Parameters
    ----------
    a, b : int arrays (n_items,), class codes, -1 = not read.
    n_classes : number of classes (a class neither reader used still sets the weights).
    weights : None, "linear" or "quadratic".

    Returns
    -------
    float in [-1, 1].

    Raises
    ------
    ValueError
        fewer than two items read by both.
    UndefinedStatisticError
        both readers put every shared item in one and the same class (p_e = 1).

    References
    ----------
    Cohen, J. (1960). A coefficient of agreement for nominal scales. Educational and
    Psychological Measurement, 20(1), 37-46.
    Cohen, J. (1968). Weighted kappa. Psychological Bulletin, 70(4), 213-220.

    Examples
    --------
    >>> round(cohen_kappa(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3), 4)
    0.6364
    """
    K = check_n_classes(n_classes)
    w = _check_weights(weights)
    a1, b1 = np.asarray(a), np.asarray(b)
    if a1.ndim != 1 or b1.ndim != 1 or a1.shape != b1.shape:
        raise ValueError(
            f"a and b must be 1-D arrays of the same length; got shapes {a1.shape}, {b1.shape}"
        )
    x = validate_ratings(np.stack([a1, b1], 1), K, "a, b", min_readers=2, floats=False)
    both = (x >= 0).all(1)
    if both.sum() < 2:
        raise ValueError(f"a and b share {int(both.sum())} read item(s); kappa needs two")
    conf = np.bincount(x[both, 0] * K + x[both, 1], minlength=K * K).reshape(K, K)
    return _scalar(kappa_from_confusion(conf, weight_matrix(K, w)), _WHY_KAPPA)


def pairwise_cohen_kappa(
    ratings: np.ndarray, n_classes: int, weights: Weights = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cohen's kappa for every pair of readers, each on the items that pair both read.

    Entry (a, b) is :func:`cohen_kappa` of columns a and b.

    Returns
    -------
    kappa : float array (n_readers, n_readers), symmetric, diagonal 1.0. NaN where a pair
        shares fewer than two items, or where chance agreement is 1 for that pair.
    n : int array (n_readers, n_readers), items both read; diagonal = that reader's reads.

    References
    ----------
    Cohen, J. (1960, 1968), see :func:`cohen_kappa`.

    Examples
    --------
    >>> k, n = pairwise_cohen_kappa(np.array([[0, 0, 1], [1, 1, 1], [0, 1, -1]]), 2)
    >>> n.tolist()
    [[3, 3, 2], [3, 3, 2], [2, 2, 2]]
    """
    K = check_n_classes(n_classes)
    w = _check_weights(weights)
    x = validate_ratings(ratings, K, min_readers=2, floats=False)
    R = x.shape[1]
    P = _pair_features(x, K)
    conf = np.asarray(P.sum(0)).reshape(-1, K, K)
    ia, ib = _pair_index(R)
    kappa = np.eye(R)
    kappa[ia, ib] = kappa[ib, ia] = kappa_from_confusion(conf, weight_matrix(K, w))
    v = (x >= 0).astype(np.int64)
    return kappa, v.T @ v


def fleiss_kappa(ratings: np.ndarray, n_classes: int) -> float:
    """Fleiss' kappa, generalised to a different number of reads per item.

    ``kappa = (p_a - p_e) / (1 - p_e)`` where p_a is :func:`percent_agreement` (mean over
    items with r_i >= 2 reads of ``sum_k C_ik (C_ik - 1) / (r_i (r_i - 1))``),
    ``p_e = sum_k pi_k^2`` and ``pi_k = mean_i C_ik / r_i`` over the items with at least
    one read. This is the generalisation of Gwet (2014, sec. 2.3.3; ``fleiss.kappa.raw``
    in Gwet's irrCAC); with the same number of reads on every item it is exactly
    Fleiss (1971): p_a = P-bar and pi_k = p_j.

    Returns
    -------
    float.

    Raises
    ------
    ValueError
        fewer than two readers or no item with two reads.
    UndefinedStatisticError
        every read is in one class (p_e = 1).

    References
    ----------
    Fleiss, J. L. (1971). Measuring nominal scale agreement among many raters.
    Psychological Bulletin, 76(5), 378-382.
    Gwet, K. L. (2014). Handbook of Inter-Rater Reliability, 4th ed. Advanced Analytics.

    Examples
    --------
    >>> round(fleiss_kappa(np.array([[0, 0, 0], [1, 1, 0], [1, 1, 1], [0, 1, -1]]), 2), 4)
    0.1608
    """
    K = check_n_classes(n_classes)
    x = validate_ratings(ratings, K, min_readers=2, floats=False)
    S = _agreement_sums(x, K)
    _need_two_reads(S)
    return _scalar(_categorical_from_sums(S, "fleiss_kappa", K, x.shape[1]), _WHY_KAPPA)


def fleiss_kappa_per_class(ratings: np.ndarray, n_classes: int) -> np.ndarray:
    """Fleiss' category-specific kappa kappa_j (Fleiss 1971, eq. 9).

    ``kappa_j = 1 - mean_i [C_ij (r_i - C_ij) / (r_i (r_i - 1))] / (pi_j (1 - pi_j))``,
    the mean over items with r_i >= 2 and pi_j as in :func:`fleiss_kappa`. With a constant
    number of reads n it is Fleiss' ``1 - sum_i x_ij (n - x_ij) / (N n (n-1) p_j q_j)``; it
    equals :func:`fleiss_kappa` on the data dichotomised into "class j" vs "not j".

    Returns
    -------
    float array (n_classes,). NaN for a class that no read used or that every read used
    (pi_j (1 - pi_j) = 0, so kappa_j is 0/0).

    Raises
    ------
    ValueError
        fewer than two readers or no item with two reads.

    References
    ----------
    Fleiss, J. L. (1971). Psychological Bulletin, 76(5), 378-382, eq. 9.

    Examples
    --------
    >>> fleiss_kappa_per_class(np.array([[0, 0], [1, 1], [0, 1]]), 3).round(3).tolist()
    [0.333, 0.333, nan]
    """
    K = check_n_classes(n_classes)
    x = validate_ratings(ratings, K, min_readers=2, floats=False)
    S = _point_sums(x, K, ("has1", "pi", "dis"))
    _need_two_reads(S)
    return _categorical_from_sums(S, "fleiss_kappa_per_class", K, x.shape[1])


def specific_agreement(ratings: np.ndarray, n_classes: int) -> np.ndarray:
    """Category-specific agreement per class, for any number of readers.

    ``p_s(j) = sum_i C_ij (C_ij - 1) / sum_i C_ij (r_i - 1)`` over items with r_i >= 2:
    of all (ordered) pairs of reads in which one read says j, the share where the other
    says j too. For two readers and a binary scale it is the positive (and negative)
    agreement ``2a / (2a + b + c)`` of Spitzer & Fleiss (1974) / Cicchetti & Feinstein
    (1990); the many-reader form is Uebersax's.

    Returns
    -------
    float array (n_classes,) in [0, 1]. NaN for a class no read used on an item with at
    least two reads (0/0).

    Raises
    ------
    ValueError
        fewer than two readers or no item with two reads.

    References
    ----------
    Uebersax, J. S. (1982). A design-independent method for measuring the reliability of
    psychiatric diagnosis. Journal of Psychiatric Research, 17(4), 335-342.
    Cicchetti, D. V., & Feinstein, A. R. (1990). High agreement but low kappa: II.
    Resolving the paradoxes. Journal of Clinical Epidemiology, 43(6), 551-558.

    Examples
    --------
    >>> specific_agreement(np.array([[1, 1], [1, 0], [0, 0], [0, 0]]), 3).round(3).tolist()
    [0.8, 0.667, nan]
    """
    K = check_n_classes(n_classes)
    x = validate_ratings(ratings, K, min_readers=2, floats=False)
    S = _point_sums(x, K, ("sa_num",))
    _need_two_reads(S)
    return _categorical_from_sums(S, "specific_agreement", K, x.shape[1])


def gwet_ac(ratings: np.ndarray, n_classes: int, weights: Weights = None) -> float:
    """Gwet's AC1 (``weights=None``) or AC2 (linear / quadratic weights).

    ``AC = (p_a - p_e) / (1 - p_e)`` with, over items with r_i >= 2 reads,
    ``p_a = mean_i sum_k C_ik (C*_ik - 1) / (r_i (r_i - 1))``, ``C*_ik = sum_l w_kl C_il``,
    and ``p_e = T_w / (q (q - 1)) sum_k pi_k (1 - pi_k)``, ``T_w = sum_kl w_kl``,
    ``pi_k = mean_i C_ik / r_i`` over items with at least one read, q = n_classes.
    Missing reads are handled as Gwet (2014, sec. 2.5; irrCAC ``gwet.ac1.raw``): items
    with one read count in pi_k only.

    Returns
    -------
    float.

    Raises
    ------
    ValueError
        n_classes < 2, fewer than two readers, or no item with two reads.

    References
    ----------
    Gwet, K. L. (2008). Computing inter-rater reliability and its variance in the
    presence of high agreement. British Journal of Mathematical and Statistical
    Psychology, 61(1), 29-48.
    Gwet, K. L. (2014). Handbook of Inter-Rater Reliability, 4th ed., ch. 2-3.

    Examples
    --------
    >>> round(gwet_ac(np.array([[0, 0, 0], [1, 1, 0], [1, 1, 1], [0, 1, -1]]), 2), 4)
    0.1724
    """
    K = check_n_classes(n_classes, minimum=2)
    w = _check_weights(weights)
    x = validate_ratings(ratings, K, min_readers=2, floats=False)
    S = (
        _agreement_sums(x, K)
        if w is None
        else _point_sums(x, K, ("has1", "pa", "pi", f"pa_{w}"), ordinal=True)
    )
    _need_two_reads(S)
    name = "gwet_ac1" if w is None else f"gwet_ac2_{w}"
    why = "chance agreement p_e is 1, so (p_a - p_e) / (1 - p_e) is 0/0"
    return _scalar(_categorical_from_sums(S, name, K, x.shape[1]), why)


def _value_codes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..V-1 of the finite values (-1 for NaN) and the sorted distinct values."""
    fin = np.isfinite(x)
    v = x[fin]
    if v.size == 0:
        return np.full(x.shape, -1, np.int64), np.zeros(0)
    lo, hi = v.min(), v.max()
    codes = np.full(x.shape, -1, np.int64)
    if hi - lo <= 4 * v.size + 1024 and np.all(v == np.round(v)):
        # integer-valued data (e.g. class codes as floats): one bincount, no sort
        off = (v - lo).astype(np.int64)
        used = np.bincount(off, minlength=int(hi - lo) + 1) > 0
        remap = np.cumsum(used) - 1
        codes[fin] = remap[off]
        return codes, lo + np.flatnonzero(used).astype(np.float64)
    values, inv = np.unique(v, return_inverse=True)
    codes[fin] = inv
    return codes, values


def _value_counts(v: np.ndarray) -> np.ndarray:
    """Counts of the distinct values of a 1-D finite array (bincount when integral)."""
    if v.size == 0:
        return np.zeros(0)
    lo, hi = v.min(), v.max()
    if hi - lo <= 4 * v.size + 1024:
        d = v - lo
        iv = d.astype(np.int64)
        if (iv == d).all():
            c = np.bincount(iv)
            return c[c > 0]
    return np.unique(v, return_counts=True)[1]


def _nominal_alpha(x: np.ndarray) -> float:
    """Nominal alpha from matching reader pairs per unit: no values x values matrix."""
    xt = np.ascontiguousarray(x.T)  # one contiguous row per reader
    fin = np.isfinite(xt)
    m = fin.sum(0)
    pairable = m >= 2
    if not pairable.any():
        raise ValueError("no unit has at least two values, so alpha has nothing to compare")
    match = np.zeros(xt.shape[1])
    for j in range(len(xt) - 1):  # loop over reader pairs, not items; NaN never matches
        for k in range(j + 1, len(xt)):
            match += xt[j] == xt[k]
    n = float(m[pairable].sum())
    do = n - 2 * _div(match, m - 1.0)[pairable].sum()
    nc = _value_counts(xt[fin & pairable]).astype(np.float64)
    de = n * n - (nc * nc).sum()
    return _scalar(1.0 - (n - 1) * _div(do, de), _WHY_ALPHA)


def krippendorff_alpha(data: np.ndarray, level: Level = "nominal") -> float:
    """Krippendorff's alpha for any number of readers, missing reads allowed.

    ``alpha = 1 - D_o / D_e = 1 - (n - 1) sum_ck o_ck d_ck / sum_ck n_c n_k d_ck``, with
    the coincidences ``o_ck = sum_u (number of ordered pairs (c, k) in unit u)/(m_u - 1)``
    over units with m_u >= 2 values, ``n_c = sum_k o_ck``, n the number of pairable values,
    and the difference function d: nominal ``[c != k]``; ordinal
    ``(sum_{g=c..k} n_g - (n_c + n_k)/2)^2``; interval ``(c - k)^2``; ratio
    ``((c - k)/(c + k))^2`` (Krippendorff 2011). Nominal and interval need no values x
    values matrix: nominal uses the per-unit count of matching pairs, interval the
    identity ``sum_{i != j} (x_i - x_j)^2 = 2 m sum x^2 - 2 (sum x)^2`` per unit. Ordinal
    and ratio build the V x V coincidence matrix of the V distinct values with one
    sparse product.

    Parameters
    ----------
    data : float array (n_items, n_readers), NaN = not read. Integer arrays are taken as
        class codes with -1 = not read.
    level : "nominal", "ordinal", "interval" or "ratio".

    Returns
    -------
    float, at most 1.

    Raises
    ------
    ValueError
        bad level, fewer than two readers, no unit with two values, negative values at
        the ratio level.
    UndefinedStatisticError
        every pairable value is the same (D_e = 0).

    References
    ----------
    Krippendorff, K. (2011). Computing Krippendorff's alpha-reliability. Annenberg
    School for Communication, University of Pennsylvania. https://repository.upenn.edu/asc_papers/43

    Examples
    --------
    >>> round(krippendorff_alpha(np.array([[1, 1.0], [2, 2], [3, 2], [np.nan, 1]])), 3)
    0.545
    """
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ValueError(
            f"level must be 'nominal', 'ordinal', 'interval' or 'ratio'; got {level!r}"
        )
    x = _check_values(data, name="data")
    if level == "nominal":
        return _nominal_alpha(x)
    fin = np.isfinite(x)
    m = fin.sum(1)
    pairable = m >= 2
    if not pairable.any():
        raise ValueError("no unit has at least two values, so alpha has nothing to compare")
    x, fin, m = x[pairable], fin[pairable], m[pairable].astype(np.float64)
    n = m.sum()
    if level == "ratio" and np.nanmin(x) < 0:
        raise ValueError("ratio level needs non-negative values; data has a negative value")
    if level == "interval":
        xc = np.where(fin, x - np.nanmean(x), 0.0)  # centred: the identity stays exact
        s1, s2 = xc.sum(1), (xc * xc).sum(1)
        do = ((2 * m * s2 - 2 * s1 * s1) / (m - 1)).sum()
        de = 2 * n * s2.sum() - 2 * s1.sum() ** 2
        return _scalar(1.0 - (n - 1) * _div(do, de), _WHY_ALPHA)
    codes, values = _value_codes(x)
    V = len(values)
    nc = np.bincount(codes[fin], minlength=V).astype(np.float64)
    rows = np.broadcast_to(np.arange(len(x))[:, None], x.shape)[fin]
    Cs = sparse.csr_matrix((np.ones(len(rows)), (rows, codes[fin])), shape=(len(x), V))
    Dm = sparse.diags(1.0 / (m - 1))
    o = (Cs.T @ (Dm @ Cs)).toarray()
    o[np.diag_indices(V)] -= np.asarray((Dm @ Cs).sum(0)).ravel()
    if level == "ordinal":
        M = np.cumsum(nc) - nc / 2
        d = (M[:, None] - M[None, :]) ** 2
    else:
        tot = values[:, None] + values[None, :]
        d = _div(values[:, None] - values[None, :], tot) ** 2
        d[tot == 0] = 0.0
    do = (o * d).sum()
    de = (nc[:, None] * nc[None, :] * d).sum()
    return _scalar(1.0 - (n - 1) * _div(do, de), _WHY_ALPHA)


# --------------------------------------------------------------------- continuous data

ICC_FORMS = ("ICC(1,1)", "ICC(2,1)", "ICC(3,1)", "ICC(1,k)", "ICC(2,k)", "ICC(3,k)")


@dataclass
class ICCResult:
    """The six Shrout & Fleiss (1979) intraclass correlations of one table.

    Attributes
    ----------
    value : dict form -> float, forms ``ICC(1,1) ICC(2,1) ICC(3,1) ICC(1,k) ICC(2,k)
        ICC(3,k)``; NaN only where the form is 0/0 (see :func:`icc`).
    ci : dict form -> (low, high) or None, the F-test confidence interval at ``level``.
    level : confidence level of ``ci``.
    n_used : items with a value from every reader (the ones the ANOVA is computed on).
    n_dropped : items left out because at least one reader's value was missing.
    n_readers : k.
    mean_squares : {"MSR", "MSC", "MSE", "MSW"} of the two-way ANOVA.
    """

    value: dict[str, float]
    ci: dict[str, tuple[float, float] | None]
    level: float
    n_used: int
    n_dropped: int
    n_readers: int
    mean_squares: dict[str, float]


def icc(values: np.ndarray, level: float = 0.95) -> ICCResult:
    """Intraclass correlations ICC(1,1), ICC(2,1), ICC(3,1), ICC(1,k), ICC(2,k), ICC(3,k).

    From the two-way ANOVA of the n x k table of complete items (mean squares for rows
    MSR, columns MSC, residual MSE, within rows MSW = (SSC + SSE) / (n (k - 1))):

    * ICC(1,1) = (MSR - MSW) / (MSR + (k-1) MSW);  ICC(1,k) = (MSR - MSW) / MSR
    * ICC(2,1) = (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n);
      ICC(2,k) = (MSR - MSE) / (MSR + (MSC - MSE) / n)
    * ICC(3,1) = (MSR - MSE) / (MSR + (k-1) MSE);  ICC(3,k) = (MSR - MSE) / MSR

    Confidence intervals are the F-test intervals of Shrout & Fleiss (1979) for forms 1
    and 3 and McGraw & Wong's (1996, Table 7) Satterthwaite interval for form 2 (the
    k-reader bound is its Spearman-Brown step-up), as in ``pingouin.intraclass_corr``.

    Items with any missing value (NaN) are dropped: the result reports ``n_used`` and
    ``n_dropped``. When every reader gives each item the same value (MSE = MSW = 0 while
    MSR > 0), every form is 1 and its interval is (1, 1).

    Parameters
    ----------
    values : float array (n_items, n_readers), NaN = not read.
    level : confidence level of the intervals.

    Raises
    ------
    ValueError
        fewer than two readers, or fewer than two complete items.
    UndefinedStatisticError
        every complete item has one and the same value (all mean squares are 0).

    References
    ----------
    Shrout, P. E., & Fleiss, J. L. (1979). Intraclass correlations: uses in assessing
    rater reliability. Psychological Bulletin, 86(2), 420-428.
    McGraw, K. O., & Wong, S. P. (1996). Forming inferences about some intraclass
    correlation coefficients. Psychological Methods, 1(1), 30-46.

    Examples
    --------
    >>> r = icc(np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6],
    ...                   [10, 5, 6, 9], [6, 2, 4, 7]], float))
    >>> round(r.value["ICC(3,1)"], 2)
    0.71
    """
    level = check_level(level)
    x = _check_values(values)
    complete = np.isfinite(x).all(1)
    n, k = int(complete.sum()), x.shape[1]
    if n < 2:
        raise ValueError(f"icc needs at least two items read by every reader; got {n}")
    y = x[complete]
    grand = y.mean()
    ssr = k * ((y.mean(1) - grand) ** 2).sum()
    ssc = n * ((y.mean(0) - grand) ** 2).sum()
    sst = ((y - grand) ** 2).sum()
    sse = max(sst - ssr - ssc, 0.0)
    msr, msc = ssr / (n - 1), ssc / (k - 1)
    mse, msw = sse / ((n - 1) * (k - 1)), (ssc + sse) / (n * (k - 1))
    scale = max(msr, msc, mse, msw, abs(grand), 1.0)
    if msr <= _EPS * scale and msw <= _EPS * scale:
        raise UndefinedStatisticError(
            "every complete item has the same value: between- and within-item variance "
            "are both 0, so the ICC is 0/0"
        )
    if mse <= _EPS * scale:
        mse = 0.0
    if msw <= _EPS * scale:
        msw = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        v = {
            "ICC(1,1)": (msr - msw) / (msr + (k - 1) * msw),
            "ICC(2,1)": (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n),
            "ICC(3,1)": (msr - mse) / (msr + (k - 1) * mse),
            "ICC(1,k)": (msr - msw) / msr,
            "ICC(2,k)": (msr - mse) / (msr + (msc - mse) / n),
            "ICC(3,k)": (msr - mse) / msr,
        }
        q = 1 - (1 - level) / 2
        ci: dict[str, tuple[float, float] | None] = {}
        for form, ms_err, df2 in (("1", msw, n * (k - 1)), ("3", mse, (n - 1) * (k - 1))):
            f = msr / ms_err if ms_err > 0 else math.inf
            fl = f / _st.f.ppf(q, n - 1, df2)
            fu = f * _st.f.ppf(q, df2, n - 1)
            ci[f"ICC({form},1)"] = ((fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1))
            ci[f"ICC({form},k)"] = (1 - 1 / fl, 1 - 1 / fu)
        r2 = v["ICC(2,1)"]
        if mse > 0 and r2 < 1:
            a = k * r2 / (n * (1 - r2))
            b = 1 + k * r2 * (n - 1) / (n * (1 - r2))
            dfv = (a * msc + b * mse) ** 2 / (
                (a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1))
            )
            fl, fu = _st.f.ppf(q, n - 1, dfv), _st.f.ppf(q, dfv, n - 1)
            c = k * msc + (k * n - k - n) * mse
            lo = n * (msr - fl * mse) / (fl * c + n * msr)
            hi = n * (fu * msr - mse) / (c + n * fu * msr)
            ci["ICC(2,1)"] = (lo, hi)
            ci["ICC(2,k)"] = (lo * k / (1 + lo * (k - 1)), hi * k / (1 + hi * (k - 1)))
        else:
            ci["ICC(2,1)"] = ci["ICC(2,k)"] = (math.nan, math.nan)
    out_ci: dict[str, tuple[float, float] | None] = {}
    for form in ICC_FORMS:
        lo, hi = ci[form]
        if v[form] == 1.0 and not (math.isfinite(lo) and math.isfinite(hi)):
            out_ci[form] = (1.0, 1.0)
        elif math.isfinite(lo) and math.isfinite(hi):
            out_ci[form] = (float(lo), float(hi))
        else:
            out_ci[form] = None
    return ICCResult(
        value={f: float(v[f]) for f in ICC_FORMS},
        ci=out_ci,
        level=level,
        n_used=n,
        n_dropped=int(len(x) - n),
        n_readers=k,
        mean_squares={"MSR": msr, "MSC": msc, "MSE": mse, "MSW": msw},
    )


def bland_altman(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """Bland-Altman bias and limits of agreement of two readers' measurements.

    On the n items both read, with differences d = a - b: bias = mean(d), sd = SD(d)
    (n - 1 denominator), limits ``bias -/+ z sd`` with z the normal quantile at
    ``level`` (1.96 for 0.95). Confidence intervals (Bland & Altman 1986, sec. 5;
    1999, sec. 4.2): bias ``+/- t_{n-1} sd / sqrt(n)``; each limit
    ``+/- t_{n-1} sd sqrt(1/n + z^2 / (2 (n - 1)))``.

    Returns
    -------
    dict with "bias", "bias_ci", "sd", "loa_low", "loa_high", "loa_low_ci",
    "loa_high_ci" (each ci a [low, high] list), "n", "level". Identical reads give
    sd 0 and zero-width intervals.

    Raises
    ------
    ValueError
        a and b of different shapes, or fewer than two items read by both.

    References
    ----------
    Bland, J. M., & Altman, D. G. (1986). Statistical methods for assessing agreement
    between two methods of clinical measurement. The Lancet, 327(8476), 307-310.
    Bland, J. M., & Altman, D. G. (1999). Measuring agreement in method comparison
    studies. Statistical Methods in Medical Research, 8(2), 135-160.

    Examples
    --------
    >>> bland_altman(np.array([1.0, 2, 3, 4]), np.array([1.5, 2, 2.5, 4.5]))["bias"]
    -0.125
    """
    level = check_level(level)
    a1 = np.asarray(a, dtype=np.float64)
    b1 = np.asarray(b, dtype=np.float64)
    if a1.ndim != 1 or a1.shape != b1.shape:
        raise ValueError(
            f"a and b must be 1-D arrays of the same length; got shapes {a1.shape}, {b1.shape}"
        )
    both = np.isfinite(a1) & np.isfinite(b1)
    n = int(both.sum())
    if n < 2:
        raise ValueError(f"a and b share {n} measured item(s); Bland-Altman needs two")
    d = a1[both] - b1[both]
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    z = float(_st.norm.ppf(1 - (1 - level) / 2))
    t = float(_st.t.ppf(1 - (1 - level) / 2, n - 1))
    se_bias = sd / math.sqrt(n)
    se_loa = sd * math.sqrt(1 / n + z * z / (2 * (n - 1)))
    lo, hi = bias - z * sd, bias + z * sd
    return {
        "bias": bias,
        "bias_ci": [bias - t * se_bias, bias + t * se_bias],
        "sd": sd,
        "loa_low": lo,
        "loa_high": hi,
        "loa_low_ci": [lo - t * se_loa, lo + t * se_loa],
        "loa_high_ci": [hi - t * se_loa, hi + t * se_loa],
        "n": n,
        "level": level,
    }


# --------------------------------------------------------------------------- bootstrap


def _split(flat: np.ndarray, layout: dict[str, slice]) -> dict[str, np.ndarray]:
    return {k: flat[..., s] for k, s in layout.items()}


def _categorical_units(
    x: np.ndarray, K: int, *, ordinal: bool, pairwise: bool, groups: np.ndarray | None
) -> tuple[Units, dict[str, slice], int, np.ndarray]:
    """Distinct rating rows -> features -> resampling units; drops unread items."""
    read = (x >= 0).any(1)
    x_read = x[read]
    g = None if groups is None else groups[read]
    if g is not None:
        g = np.unique(g, return_inverse=True)[1].ravel()
    R = x.shape[1]
    if R * math.log2(K + 1) < 62:
        key = ((x_read + 1) * ((K + 1) ** np.arange(R, dtype=np.int64))).sum(1)
        _, first, inverse, freq = np.unique(
            key, return_index=True, return_inverse=True, return_counts=True
        )
    else:
        _, first, inverse, freq = np.unique(
            x_read, axis=0, return_index=True, return_inverse=True, return_counts=True
        )
    inverse = inverse.ravel()
    rows = x_read[first]
    dense, layout = _stack(_item_features(class_counts(rows, K), ordinal=ordinal))
    pairs = _pair_features(rows, K) if pairwise else None
    units = resampling_units([dense, pairs], rows=inverse, groups=g)
    return units, layout, int(read.sum()), rows


def _categorical_bootstrap(
    x: np.ndarray,
    K: int,
    names: list[str],
    *,
    n_boot: int,
    level: float,
    seed: int,
    groups: np.ndarray | None,
) -> dict[str, BootstrapResult]:
    ordinal = any(nm in _NEEDS_ORDINAL or nm.endswith(("_linear", "_quadratic")) for nm in names)
    pairwise = any(nm.startswith("pairwise_") for nm in names)
    units, layout, _, _ = _categorical_units(
        x, K, ordinal=ordinal, pairwise=pairwise, groups=groups
    )
    R = x.shape[1]

    def sums(dense: np.ndarray, pairs: np.ndarray | None) -> dict[str, np.ndarray]:
        S = _split(dense, layout)
        if pairs is not None:
            S["pairs"] = pairs
        return S

    dense0, pairs0 = units.blocks
    S0 = sums(
        units.freq @ dense0,
        None if pairs0 is None else np.asarray(pairs0.T @ units.freq).ravel(),
    )
    values = {nm: _categorical_from_sums(S0, nm, K, R) for nm in names}
    reps: dict[str, list[np.ndarray]] = {nm: [] for nm in names}
    for dense, pairs in resampled_sums(units, n_boot, seed, method="auto"):
        S = sums(dense, pairs)
        for nm in names:
            reps[nm].append(_categorical_from_sums(S, nm, K, R))
    return {
        nm: BootstrapResult.from_replicates(
            values[nm], reps[nm], level=level, seed=seed, unit=units.kind, n_units=units.n_units
        )
        for nm in names
    }


def bootstrap_ci(
    ratings: np.ndarray,
    n_classes: int,
    statistic: str = "fleiss_kappa",
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> BootstrapResult:
    """Percentile bootstrap interval of a categorical agreement statistic.

    Resamples items with replacement, or, when ``groups`` is given (e.g. patient ids,
    one per item), resamples groups: every item of a drawn group comes along, so the
    interval reflects correlation within a patient (Davison & Hinkley 1997, sec. 3.8).
    Items without any read are left out before resampling. The interval is the
    ``(1 - level)/2`` and ``(1 + level)/2`` percentiles of the replicates that are
    defined (Efron & Tibshirani 1993, ch. 13).

    Nothing is re-run on copied data: the statistic is a function of per-item feature
    sums (class counts, pair agreements, coincidences, per-pair confusion cells), the
    features are computed once per distinct rating row (or summed per group), and each
    replicate re-weights them with its resample counts, chunk by chunk.

    Parameters
    ----------
    ratings : int array (n_items, n_readers), -1 = not read.
    n_classes : number of classes.
    statistic : one of :data:`BOOTSTRAP_STATISTICS` (the "pairwise_*" ones return
        reader x reader matrices, the per-class ones arrays of n_classes).
    n_boot : replicates; 0 gives the point estimate with NaN bounds.
    level : confidence level.
    seed : seed of ``numpy.random.default_rng``; the same seed gives the same interval.
    groups : optional array (n_items,) of group ids.

    Returns
    -------
    BootstrapResult

    References
    ----------
    Efron, B., & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman &
    Hall.
    Davison, A. C., & Hinkley, D. V. (1997). Bootstrap Methods and their Application.
    Cambridge University Press.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.where(rng.random((200, 3)) < 0.8, rng.integers(0, 2, (200, 1)), 1)
    >>> r = bootstrap_ci(x, 2, "percent_agreement", n_boot=200)
    >>> bool(r.ci_low < r.value < r.ci_high)
    True
    """
    K = check_n_classes(n_classes)
    x = validate_ratings(ratings, K, min_readers=2, floats=False)
    if statistic not in BOOTSTRAP_STATISTICS:
        raise ValueError(f"statistic must be one of {BOOTSTRAP_STATISTICS}; got {statistic!r}")
    if statistic.startswith("gwet") and K < 2:
        raise ValueError("n_classes must be at least 2 for Gwet's AC")
    n_boot = check_n_boot(n_boot)
    level = check_level(level)
    g = group_codes(groups, len(x))
    if not ((x >= 0).sum(1) >= 2).any():
        raise ValueError("no item has at least two reads, so there is no agreement to measure")
    return _categorical_bootstrap(
        x, K, [statistic], n_boot=n_boot, level=level, seed=seed, groups=g
    )[statistic]


# --------------------------------------------------------------------------- summaries

_OVERALL = ("percent_agreement", "fleiss_kappa", "krippendorff_alpha_nominal", "gwet_ac1")
_OVERALL_ORDINAL = (
    "krippendorff_alpha_ordinal",
    "krippendorff_alpha_interval",
    "gwet_ac2_linear",
    "gwet_ac2_quadratic",
)
_PER_CLASS = {"specific_agreement": "specific_agreement", "fleiss_kappa": "fleiss_kappa_per_class"}
_PAIRWISE = {
    "cohen_kappa": "pairwise_cohen_kappa",
    "percent_agreement": "pairwise_percent_agreement",
}
_PAIRWISE_ORDINAL = {
    "cohen_kappa_linear": "pairwise_cohen_kappa_linear",
    "cohen_kappa_quadratic": "pairwise_cohen_kappa_quadratic",
}
_WHY = {
    "fleiss_kappa": _WHY_KAPPA,
    "krippendorff_alpha": _WHY_ALPHA,
    "gwet_ac": "chance agreement p_e is 1, so (p_a - p_e) / (1 - p_e) is 0/0",
    "percent_agreement": "no item has at least two reads",
}
_PAIRWISE_NOTE = (
    "None where a pair of readers shares fewer than two items, or (kappa) where chance "
    "agreement is 1 for that pair; diagonal 1.0 with n = that reader's reads"
)


def _entry(
    value: float,
    lo: float,
    hi: float,
    n_valid: int,
    n_boot: int,
    n: int,
    why: str,
) -> dict[str, Any]:
    """One JSON entry; every None comes with the reason in "note"."""
    if not math.isfinite(value):
        return Estimate(None, None, n, f"undefined: {why}").to_json()
    note = None
    ci = None
    if n_boot == 0:
        note = "no interval: n_boot=0"
    elif n_valid == 0:
        note = "no interval: the statistic was undefined in every bootstrap replicate"
    else:
        ci = (float(lo), float(hi))
        if n_valid < n_boot:
            note = (
                f"{n_boot - n_valid} of {n_boot} bootstrap replicates were undefined "
                f"({why}) and are left out of the interval"
            )
    return Estimate(float(value), ci, n, note).to_json()


def _none_entry(n: int, note: str) -> dict[str, Any]:
    return Estimate(None, None, n, note).to_json()


def _matrix(a: np.ndarray) -> list[list[float | None]]:
    return [[finite(v) for v in row] for row in np.asarray(a, dtype=np.float64)]


def term_counts(ratings: np.ndarray, n_classes: int) -> dict[str, dict[str, int]]:
    """The items and reads behind the two terms of a chance-corrected agreement.

    With ``r_i`` reads on item i, the generalised Fleiss' kappa (and Gwet's AC) of
    :func:`fleiss_kappa` takes its observed agreement ``p_a`` over the items with
    ``r_i >= 2`` and its chance agreement from ``pi_k = mean_i C_ik / r_i`` over the
    items with ``r_i >= 1``, i.e. from every read, single reads included. When every
    item has the same number of reads (>= 2) the two coincide and the statistic is
    Fleiss (1971)'s.

    Returns
    -------
    dict
        ``{"agreement": {"n_items", "n_reads"}, "chance": {"n_items", "n_reads"}}``:
        items with at least two reads and the reads on them; items with at least one
        read and every read.

    References
    ----------
    Fleiss, J. L. (1971). Psychological Bulletin, 76(5), 378-382.
    Gwet, K. L. (2014). Handbook of Inter-Rater Reliability, 4th ed., sec. 2.3.3.

    Examples
    --------
    >>> term_counts(np.array([[0, 0, -1], [1, -1, -1], [0, 1, 1]]), 2)
    {'agreement': {'n_items': 2, 'n_reads': 5}, 'chance': {'n_items': 3, 'n_reads': 6}}
    """
    x = validate_ratings(ratings, n_classes, floats=False)
    reads = (x >= 0).sum(axis=1)
    two = reads >= 2
    return {
        "agreement": {"n_items": int(two.sum()), "n_reads": int(reads[two].sum())},
        "chance": {"n_items": int((reads >= 1).sum()), "n_reads": int(reads.sum())},
    }


def _terms_by_statistic(
    terms: dict[str, dict[str, int]], names: list[str]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for nm in names:
        if nm == "percent_agreement":
            chance = None
        elif nm.startswith("krippendorff"):
            chance = dict(terms["agreement"])  # D_e over the pairable values only
        else:  # Fleiss' kappa, Gwet's AC1/AC2: pi_k from every read
            chance = dict(terms["chance"])
        out[nm] = {"agreement": dict(terms["agreement"]), "chance": chance}
    return out


def categorical_summary(
    ratings: np.ndarray,
    n_classes: int,
    *,
    ordinal: bool = False,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every categorical agreement statistic with bootstrap intervals, JSON-ready.

    Overall: percent agreement, Fleiss' kappa, nominal Krippendorff's alpha, Gwet's AC1;
    with ``ordinal=True`` also ordinal and interval alpha and Gwet's AC2 (linear,
    quadratic). Per class: specific agreement and Fleiss' kappa_j. Pairwise (reader x
    reader): Cohen's kappa and percent agreement, with ``ordinal=True`` also linear and
    quadratic weighted kappa. All intervals come from one set of bootstrap replicates
    (:func:`bootstrap_ci`), over items or over ``groups``.

    Returns a dict of plain floats, ints, lists and None (never NaN)::

        {"n_items", "n_items_total", "n_reads", "n_readers", "n_classes", "level",
         "n_boot", "bootstrap_unit", "n_units",
         "overall": {name: {"value", "ci", "n", "note"}},
         "per_class": {name: [{"value", "ci", "n", "note"} per class]},
         "pairwise": {name: {"value", "ci_low", "ci_high", "n", "note"}}}

    ``n_items`` counts the items with at least two reads (the ones agreement is measured
    on); items nobody read are counted in ``n_items_total`` only. ``"terms"`` says, for
    each overall statistic, which items and reads are behind each of its terms (see
    :func:`term_counts`): ``{name: {"agreement": {"n_items", "n_reads"}, "chance":
    {"n_items", "n_reads"} | None}}``. With a varying number of reads per item the two
    differ for Fleiss' kappa and Gwet's AC: the observed agreement uses the items with
    two or more reads, the chance term every read (single reads included);
    Krippendorff's alpha uses the pairable values (items with two or more reads) for
    both; percent agreement has no chance term. Undefined values are
    None with a "note": a single reader column ("needs at least two readers"), no item
    with two reads, kappa when every read is in one class (chance agreement 1, 0/0;
    percent agreement and AC1 are still given), a class nobody used (per-class None).
    ``n_boot=0`` gives every "ci" as None. Per-class "n" is the number of reads in that
    class on items with at least two reads; overall "n" is ``n_items``.

    References
    ----------
    See :func:`percent_agreement`, :func:`fleiss_kappa`, :func:`krippendorff_alpha`,
    :func:`gwet_ac`, :func:`specific_agreement`, :func:`cohen_kappa`,
    :func:`bootstrap_ci`.
    """
    K = check_n_classes(n_classes)
    x = validate_ratings(ratings, K, floats=False)
    level = check_level(level)
    n_boot = check_n_boot(n_boot)
    g = group_codes(groups, len(x))
    R = x.shape[1]
    valid = x >= 0
    reads = valid.sum(1)
    n_items = int((reads >= 2).sum())
    overall_names = list(_OVERALL) + (list(_OVERALL_ORDINAL) if ordinal else [])
    pair_names = dict(_PAIRWISE, **(_PAIRWISE_ORDINAL if ordinal else {}))
    n_pair = valid.T.astype(np.int64) @ valid.astype(np.int64)
    out: dict[str, Any] = {
        "n_items": n_items,
        "n_items_total": int(len(x)),
        "n_reads": int(valid.sum()),
        "n_readers": R,
        "n_classes": K,
        "level": level,
        "n_boot": n_boot,
        "bootstrap_unit": "item" if g is None else "group",
        "n_units": int((reads >= 1).sum()) if g is None else int(len(np.unique(g[reads >= 1]))),
        "terms": _terms_by_statistic(term_counts(x, K), overall_names),
    }
    if R < 2 or n_items == 0:
        note = (
            "needs at least two readers"
            if R < 2
            else "no item has at least two reads, so there is no agreement to measure"
        )
        eye = np.where(np.eye(R, dtype=bool), 1.0, np.nan)
        out["overall"] = {nm: _none_entry(0, note) for nm in overall_names}
        out["per_class"] = {nm: [_none_entry(0, note) for _ in range(K)] for nm in _PER_CLASS}
        out["pairwise"] = {
            nm: {
                "value": _matrix(eye),
                "ci_low": _matrix(eye),
                "ci_high": _matrix(eye),
                "n": n_pair.tolist(),
                "note": f"{note}; {_PAIRWISE_NOTE}",
            }
            for nm in pair_names
        }
        return out
    internal = [nm for nm in overall_names if K >= 2 or not nm.startswith("gwet")]
    internal += list(_PER_CLASS.values()) + list(pair_names.values())
    res = _categorical_bootstrap(x, K, internal, n_boot=n_boot, level=level, seed=seed, groups=g)
    overall = {}
    for nm in overall_names:
        if nm not in res:
            overall[nm] = _none_entry(n_items, "Gwet's AC needs n_classes >= 2")
            continue
        r = res[nm]
        why = next(v for k, v in _WHY.items() if nm.startswith(k))
        overall[nm] = _entry(r.value, r.ci_low, r.ci_high, r.n_valid, n_boot, n_items, why)
    out["overall"] = overall
    on_measured = (reads >= 2)[:, None] & valid
    n_class = np.bincount(x[on_measured], minlength=K)
    per_class = {}
    for nm, inner in _PER_CLASS.items():
        r = res[inner]
        why = (
            "class not used on any item with at least two reads, so 0/0"
            if nm == "specific_agreement"
            else "class used by no read or by every read, so pi_j (1 - pi_j) is 0"
        )
        per_class[nm] = [
            _entry(r.value[j], r.ci_low[j], r.ci_high[j], r.n_valid[j], n_boot, n_class[j], why)
            for j in range(K)
        ]
    out["per_class"] = per_class
    pairwise = {}
    for nm, inner in pair_names.items():
        r = res[inner]
        lo, hi = np.asarray(r.ci_low), np.asarray(r.ci_high)
        undefined = ~np.isfinite(r.value)
        lo = np.where(undefined, np.nan, lo)
        hi = np.where(undefined, np.nan, hi)
        pairwise[nm] = {
            "value": _matrix(r.value),
            "ci_low": _matrix(lo),
            "ci_high": _matrix(hi),
            "n": n_pair.tolist(),
            "note": _PAIRWISE_NOTE + ("; no intervals: n_boot=0" if n_boot == 0 else ""),
        }
    out["pairwise"] = pairwise
    return out


def _interval_alpha_units(
    x: np.ndarray, groups: np.ndarray | None
) -> tuple[Units, dict[str, slice]]:
    read = np.isfinite(x).any(1)
    y = x[read]
    fin = np.isfinite(y)
    m = fin.sum(1).astype(np.float64)
    h2 = (m >= 2).astype(np.float64)
    pair_vals = y[m >= 2]
    centre = float(np.nanmean(pair_vals)) if np.isfinite(pair_vals).any() else 0.0
    yc = np.where(fin, y - centre, 0.0)
    s1, s2 = yc.sum(1), (yc * yc).sum(1)
    r1 = np.where(m >= 2, m - 1, 1.0)
    feats = {
        "m": (m * h2)[:, None],
        "s1": (s1 * h2)[:, None],
        "s2": (s2 * h2)[:, None],
        "do": ((2 * m * s2 - 2 * s1 * s1) / r1 * h2)[:, None],
    }
    dense, layout = _stack(feats)
    g = None if groups is None else np.unique(groups[read], return_inverse=True)[1].ravel()
    return resampling_units([dense], groups=g), layout


def _interval_alpha_from_sums(S: dict[str, np.ndarray]) -> np.ndarray:
    n = S["m"][..., 0]
    de = 2 * n * S["s2"][..., 0] - 2 * S["s1"][..., 0] ** 2
    return 1.0 - (n - 1) * _div(S["do"][..., 0], de)


def continuous_summary(
    values: np.ndarray,
    *,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """ICCs, interval Krippendorff's alpha and pairwise Bland-Altman, JSON-ready.

    Returns::

        {"n_items", "n_items_total", "n_reads", "n_readers", "level", "n_boot",
         "bootstrap_unit", "icc_n_used", "icc_n_dropped",
         "icc": {form: {"value", "ci", "n", "note"}},      # six Shrout & Fleiss forms
         "krippendorff_alpha_interval": {"value", "ci", "n", "note"},
         "bland_altman": R x R list of None or {"bias", "sd", "loa_low", "loa_high",
                         "bias_ci", "loa_low_ci", "loa_high_ci", "n", "level"}}

    ICC intervals are the F-test intervals of :func:`icc` (on the items every reader
    read; dropped items are counted and named in the note); alpha's interval is the
    percentile bootstrap over items or ``groups`` (interval alpha is a function of
    per-item sums m, sum x, sum x^2 and sum of squared pair differences, re-weighted per
    replicate). Entry (a, b) of "bland_altman" is reader a minus reader b on the items
    both read; None on the diagonal and where a pair shares fewer than two items.
    A single reader gives every statistic None with the note "needs at least two
    readers". Never NaN.

    References
    ----------
    See :func:`icc`, :func:`krippendorff_alpha`, :func:`bland_altman`,
    :func:`bootstrap_ci`.
    """
    x = _check_values(values, min_readers=1)
    level = check_level(level)
    n_boot = check_n_boot(n_boot)
    g = group_codes(groups, len(x))
    R = x.shape[1]
    fin = np.isfinite(x)
    m = fin.sum(1)
    n_items = int((m >= 2).sum())
    out: dict[str, Any] = {
        "n_items": n_items,
        "n_items_total": int(len(x)),
        "n_reads": int(fin.sum()),
        "n_readers": R,
        "level": level,
        "n_boot": n_boot,
        "bootstrap_unit": "item" if g is None else "group",
    }
    complete = int(fin.all(1).sum())
    out["icc_n_used"], out["icc_n_dropped"] = complete, int(len(x) - complete)
    if R < 2 or n_items == 0:
        note = (
            "needs at least two readers"
            if R < 2
            else "no item has at least two reads, so there is no agreement to measure"
        )
        out["icc"] = {f: _none_entry(0, note) for f in ICC_FORMS}
        out["krippendorff_alpha_interval"] = _none_entry(0, note)
        out["bland_altman"] = [[None] * R for _ in range(R)]
        return out
    try:
        r = icc(x, level)
        dropped = f"{r.n_dropped} item(s) with a missing read dropped; " if r.n_dropped else ""
        out["icc"] = {}
        for f in ICC_FORMS:
            val, ci = r.value[f], r.ci[f]
            if not math.isfinite(val):
                out["icc"][f] = _none_entry(r.n_used, f"{dropped}undefined (0/0)")
                continue
            note = f"{dropped}F-test interval" if ci else f"{dropped}no F-test interval (0/0)"
            out["icc"][f] = {
                "value": val,
                "ci": list(ci) if ci else None,
                "n": r.n_used,
                "note": note,
            }
    except ValueError as e:  # includes UndefinedStatisticError
        out["icc"] = {f: _none_entry(complete, str(e)) for f in ICC_FORMS}
    units, layout = _interval_alpha_units(x, g)
    S0 = _split(units.freq @ units.blocks[0], layout)
    a0 = float(_interval_alpha_from_sums(S0))
    reps = [
        _interval_alpha_from_sums(_split(d, layout))
        for (d,) in resampled_sums(units, n_boot, seed, method="auto")
    ]
    lo, hi, nv = percentile_interval(np.concatenate(reps) if reps else np.zeros(0), level)
    out["krippendorff_alpha_interval"] = _entry(a0, lo, hi, int(nv), n_boot, n_items, _WHY_ALPHA)
    ba: list[list[dict[str, Any] | None]] = [[None] * R for _ in range(R)]
    for a in range(R):  # loop over reader pairs only
        for b in range(R):
            if a != b and (fin[:, a] & fin[:, b]).sum() >= 2:
                ba[a][b] = bland_altman(x[:, a], x[:, b], level)
    out["bland_altman"] = ba
    return out
