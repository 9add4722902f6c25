"""Clusters of images where readers disagree, and what sets those clusters apart.

Two steps, both pure numpy / scipy / scikit-learn:

1. :func:`cluster_embeddings` groups samples by an embedding matrix ``X (n, d)``
   (HDBSCAN, or k-means with k chosen by silhouette).
2. :func:`cluster_enrichment` asks, for each cluster, whether readers disagree there more
   often than in the rest of the data (one-sided Fisher exact test, Benjamini-Hochberg
   across clusters), and which per-sample features (quality metrics, acquisition
   parameters, scanner model, ...) distinguish the cluster from the rest (Mann-Whitney U
   with Cliff's delta for numeric features, chi-square / Fisher with Cramer's V for
   categorical ones, Benjamini-Hochberg across every feature test).

The result of :func:`cluster_enrichment` is a JSON-ready dict: no NaN or infinity
anywhere; an undefined value is ``None`` with a ``note`` saying why.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Mapping
from typing import Any, Literal

import numpy as np
from scipy import stats as _st

from multireader.stats.estimates import finite, fmt_num, fmt_p, fmt_pct

__all__ = [
    "cluster_embeddings",
    "cluster_enrichment",
    "cliffs_delta",
    "cohens_d",
    "cramers_v",
    "RANKING_RULE",
]

Method = Literal["hdbscan", "kmeans"]

#: Cliff's delta magnitude thresholds (Romano et al. 2006): negligible / small / medium / large
_DELTA_WORDS = ((0.474, "much"), (0.33, "moderately"), (0.147, "slightly"))
#: Cramer's V magnitude thresholds (Cohen 1988, w for one degree of freedom)
_V_WORDS = ((0.5, "strongly"), (0.3, "moderately"), (0.1, "slightly"))
#: at most this many non-finite rows are named in an error message
_MAX_ROWS_SHOWN = 10
#: silhouette is O(n^2); above this many samples it is estimated on a random subsample
_SILHOUETTE_SAMPLE = 5000
#: numeric and categorical features need this many observed values on each side
_MIN_FEATURE_VALUES = 2

RANKING_RULE = (
    "Enriched clusters first (BH-adjusted one-sided Fisher p < alpha and a higher "
    "disagreement rate than the rest), ordered by rate ratio (cluster rate / rest rate, "
    "highest first; an infinite ratio, when the rest has no disagreement, counts as "
    "highest), ties broken by smaller p, then by larger size. Then the other clusters, "
    "ordered by p (smallest first), ties by rate ratio (highest first), then by size. The "
    "noise group (-1) is reported separately under 'noise' and never ranked."
)


# --------------------------------------------------------------------------- validation


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {value}")
    return int(value)


def _check_fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1; got {value!r}")
    return float(value)


def _check_X(X: Any) -> np.ndarray:
    x = np.asarray(X)
    if x.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"X must hold numbers; got dtype {x.dtype}")
    if x.shape[1] == 0:
        raise ValueError(f"X has no columns (d = 0); got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("X has no rows (n = 0); there is nothing to cluster")
    x = x.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:_MAX_ROWS_SHOWN])
        more = f" and {bad.size - _MAX_ROWS_SHOWN} more" if bad.size > _MAX_ROWS_SHOWN else ""
        raise ValueError(
            f"X has NaN or infinite values in {bad.size} row(s): {shown}{more}; "
            "drop or impute those samples first"
        )
    return x


def _check_labels(labels: Any) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(f"labels must be 1-D (n_samples,); got shape {lab.shape}")
    if lab.size == 0:
        raise ValueError("labels is empty; there are no samples to compare")
    if lab.dtype.kind not in "iu":
        if lab.dtype.kind == "f" and np.isfinite(lab).all() and (lab == np.round(lab)).all():
            lab = lab.astype(np.int64)
        else:
            raise ValueError(f"labels must hold integer cluster ids (-1 = noise); got {lab.dtype}")
    lab = lab.astype(np.int64, copy=False)
    if lab.min() < -1:
        raise ValueError(f"labels holds {lab.min()}; cluster ids must be >= 0, or -1 for noise")
    return lab


def _check_disagree(disagree: Any, n: int) -> np.ndarray:
    """Return float (n,) of 0/1 with NaN where undefined."""
    d = np.asarray(disagree)
    if d.shape != (n,):
        raise ValueError(f"disagree must have shape ({n},) like labels; got {d.shape}")
    if d.dtype.kind == "b":
        return d.astype(np.float64)
    if d.dtype.kind == "O":
        d = np.array([np.nan if v is None else v for v in d], dtype=np.float64)
    if d.dtype.kind not in "iuf":
        raise ValueError(f"disagree must be boolean (or 0/1, NaN = undefined); got {d.dtype}")
    d = d.astype(np.float64)
    ok = np.isnan(d) | (d == 0) | (d == 1)
    if not ok.all():
        bad = d[~ok][0]
        raise ValueError(f"disagree must be 0/1 or True/False (NaN = undefined); got {bad!r}")
    return d


def _check_disagreement(disagreement: Any, n: int) -> np.ndarray | None:
    if disagreement is None:
        return None
    s = np.asarray(disagreement)
    if s.dtype.kind == "O":
        s = np.array([np.nan if v is None else v for v in s], dtype=np.float64)
    if s.shape != (n,):
        raise ValueError(f"disagreement must have shape ({n},) like labels; got {s.shape}")
    if s.dtype.kind not in "biuf":
        raise ValueError(
            f"disagreement must hold numbers in [0, 1] (NaN = undefined); got {s.dtype}"
        )
    s = s.astype(np.float64)
    fin = s[~np.isnan(s)]
    if fin.size and (not np.isfinite(fin).all() or fin.min() < 0 or fin.max() > 1):
        raise ValueError("disagreement must lie in [0, 1] (NaN = undefined)")
    return s


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float | np.floating):
        return bool(np.isnan(v))
    return isinstance(v, str) and v == ""


def _prepare_feature(name: str, values: Any, n: int) -> tuple[str, np.ndarray]:
    """Return ``(kind, values)``: float with NaN, or object with None for missing.

    Numbers (but not booleans) are numeric; strings, booleans and anything else are
    categorical. An object array counts as numeric when every present value is a number.
    """
    v = np.asarray(values)
    if v.shape != (n,):
        raise ValueError(f"features[{name!r}] must have shape ({n},) like labels; got {v.shape}")
    if v.dtype.kind in "iuf":
        out = v.astype(np.float64)
        if np.isinf(out).any():
            raise ValueError(f"features[{name!r}] holds infinite values; use NaN for missing")
        return "numeric", out
    if v.dtype.kind == "O":
        present = [x for x in v if not _is_missing(x)]
        if present and all(
            isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_) for x in present
        ):
            out = np.array([np.nan if _is_missing(x) else float(x) for x in v])
            if np.isinf(out).any():
                raise ValueError(f"features[{name!r}] holds infinite values; use NaN for missing")
            return "numeric", out
    cat = np.array([None if _is_missing(x) else str(x) for x in v], dtype=object)
    return "categorical", cat


# --------------------------------------------------------------------------- clustering


def _standardize(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    # a constant column carries no information; centre it but do not divide by zero
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def cluster_embeddings(
    X: Any,
    method: Method = "hdbscan",
    *,
    n_clusters: int | None = None,
    min_cluster_size: int | None = None,
    standardize: bool = True,
    seed: int = 0,
    max_clusters: int = 10,
    n_components: int | None = None,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Cluster samples by their embeddings.

    ``method="hdbscan"`` runs :class:`sklearn.cluster.HDBSCAN` (Campello et al. 2013):
    clusters are dense regions that persist over a range of density thresholds; samples
    in no such region are noise (label ``-1``). The number of clusters is found, not set.
    ``min_cluster_size`` defaults to ``max(5, n // 50)``, so a cluster must hold at least
    2 % of the data (and at least 5 samples); ``min_samples`` is left at scikit-learn's
    default (equal to ``min_cluster_size``).

    ``method="kmeans"`` runs :class:`sklearn.cluster.KMeans` (k-means++, 4 starts, seeded).
    Every sample gets a cluster (no noise). When ``n_clusters`` is None, k is the value in
    ``2 .. min(max_clusters, n - 1, distinct rows)`` with the highest mean silhouette
    (Rousseeuw 1987)

    .. math:: s(i) = \\frac{b(i) - a(i)}{\\max(a(i), b(i))},

    with ``a(i)`` the mean distance of ``i`` to its own cluster and ``b(i)`` to the nearest
    other one; above 5000 samples the silhouette is estimated on a seeded random subsample
    of 5000.

    With ``standardize=True`` (default) each column of ``X`` is centred and scaled to unit
    variance first (a constant column is only centred), so no single dimension dominates
    the Euclidean distances both methods use. With ``n_components`` set, ``X`` is then
    projected on its first ``n_components`` principal components (seeded PCA); this is
    advisable for HDBSCAN on image embeddings of hundreds of dimensions, where density
    estimates are poor and the run is slow (about 30 s for 5000 x 512 on 2 cores, 1 s
    for 5000 x 32).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Embeddings, finite numbers. High-dimensional embeddings (hundreds of
        dimensions) are best reduced first (e.g. PCA to 10-50 dimensions) for HDBSCAN.
    method : {"hdbscan", "kmeans"}
    n_clusters : int >= 2, optional
        k for k-means; None chooses it by silhouette. Not used by HDBSCAN.
    min_cluster_size : int >= 2, optional
        Smallest HDBSCAN cluster. Not used by k-means.
    standardize : bool
        z-score each column before clustering.
    seed : int
        Seeds k-means and the silhouette subsample (HDBSCAN is deterministic).
    max_clusters : int >= 2
        Largest k tried when k-means chooses k.
    n_components : int >= 1, optional
        Reduce ``X`` to this many principal components first; None (default) or a value
        >= ``min(n, d)`` keeps ``X`` as is.
    return_info : bool
        Also return a dict with the parameters used (``method``, ``standardize``,
        ``n_components`` (None when not reduced), ``n_clusters``, ``min_cluster_size``,
        ``n_noise``, and for k-means ``silhouette``: mean silhouette per k tried, or None
        when k was given).

    Returns
    -------
    labels : ndarray of shape (n_samples,)
        Cluster ids ``0 .. k-1``; ``-1`` = noise (HDBSCAN only).
    info : dict
        Only when ``return_info=True``.

    Raises
    ------
    ValueError
        ``X`` is not 2-D, has no rows or columns, or has NaN / infinite rows (named);
        too few samples for the method (the message says how many are needed); k-means
        on data with fewer distinct rows than clusters.

    References
    ----------
    Campello, R. J. G. B., Moulavi, D. & Sander, J. (2013). Density-based clustering based
    on hierarchical density estimates. PAKDD 2013, LNCS 7819, 160-172.

    Rousseeuw, P. J. (1987). Silhouettes: a graphical aid to the interpretation and
    validation of cluster analysis. J. Comput. Appl. Math. 20, 53-65.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (30, 2)), rng.normal(10, 1, (30, 2))])
    >>> labels = cluster_embeddings(X, "kmeans")
    >>> sorted(np.bincount(labels).tolist())
    [30, 30]
    """
    from sklearn.cluster import HDBSCAN, KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    if method not in ("hdbscan", "kmeans"):
        raise ValueError(f"method must be 'hdbscan' or 'kmeans'; got {method!r}")
    x = _check_X(X)
    standardize = _check_bool(standardize, "standardize")
    return_info = _check_bool(return_info, "return_info")
    seed = _check_int(seed, "seed", 0)
    max_clusters = _check_int(max_clusters, "max_clusters", 2)
    if n_clusters is not None:
        n_clusters = _check_int(n_clusters, "n_clusters", 2)
    if min_cluster_size is not None:
        min_cluster_size = _check_int(min_cluster_size, "min_cluster_size", 2)
    if n_components is not None:
        n_components = _check_int(n_components, "n_components", 1)
    n = x.shape[0]
    if standardize:
        x = _standardize(x)
    if n_components is not None and n_components < min(x.shape):
        x = PCA(n_components, random_state=seed).fit_transform(x)
    else:
        n_components = None
    info: dict[str, Any] = {
        "method": method,
        "standardize": standardize,
        "n_components": n_components,
    }

    if method == "hdbscan":
        mcs = max(5, n // 50) if min_cluster_size is None else min_cluster_size
        if n < 2 * mcs:
            raise ValueError(
                f"HDBSCAN with min_cluster_size={mcs} needs at least {2 * mcs} samples "
                f"(two clusters of {mcs}); X has {n}"
            )
        labels = HDBSCAN(min_cluster_size=mcs, copy=True).fit_predict(x).astype(np.int64)
        info.update(
            n_clusters=int(labels.max() + 1),
            min_cluster_size=mcs,
            n_noise=int((labels == -1).sum()),
        )
        return (labels, info) if return_info else labels

    n_distinct = np.unique(x, axis=0).shape[0]
    if n_clusters is not None:
        if n < n_clusters:
            raise ValueError(
                f"k-means with n_clusters={n_clusters} needs at least {n_clusters} samples; "
                f"X has {n}"
            )
        if n_distinct < n_clusters:
            raise ValueError(
                f"X has only {n_distinct} distinct row(s); k-means cannot form "
                f"n_clusters={n_clusters} clusters"
            )
        labels = KMeans(n_clusters, n_init=4, random_state=seed).fit_predict(x)
        scores = None
        k = n_clusters
    else:
        if n < 3:
            raise ValueError(
                f"k-means choosing k by silhouette needs at least 3 samples; X has {n}"
            )
        if n_distinct < 2:
            raise ValueError("X has only 1 distinct row (after standardizing); nothing to cluster")
        ks = range(2, min(max_clusters, n - 1, n_distinct) + 1)
        sample = min(n, _SILHOUETTE_SAMPLE)
        scores, fits = {}, {}
        for kk in ks:
            lab = KMeans(kk, n_init=4, random_state=seed).fit_predict(x)
            fits[kk] = lab
            if np.unique(lab).size < 2:
                continue
            scores[kk] = float(
                silhouette_score(
                    x, lab, sample_size=sample if sample < n else None, random_state=seed
                )
            )
        # a tie keeps the smaller k: fewer clusters are easier to read
        k = max(scores, key=lambda kk: (scores[kk], -kk))
        labels = fits[k]
    labels = labels.astype(np.int64)
    info.update(n_clusters=k, min_cluster_size=None, n_noise=0, silhouette=scores)
    return (labels, info) if return_info else labels


# --------------------------------------------------------------------------- effect sizes


def cliffs_delta(x: Any, y: Any) -> float:
    """Cliff's delta: how often a value of ``x`` exceeds one of ``y``, minus the reverse.

    .. math:: \\delta = \\frac{\\#\\{(i,j): x_i > y_j\\} - \\#\\{(i,j): x_i < y_j\\}}{n_x n_y}
              = \\frac{2 U_x}{n_x n_y} - 1,

    where ``U_x`` is the Mann-Whitney U statistic of ``x`` (ties count one half), computed
    here from mid-ranks in O(n log n). It lies in [-1, 1]; 0 = the two groups overlap
    completely. NaN values are ignored.

    References
    ----------
    Cliff, N. (1993). Dominance statistics: ordinal analyses to answer ordinal questions.
    Psychological Bulletin 114(3), 494-509.

    Examples
    --------
    >>> cliffs_delta([1, 2, 3], [2, 2, 2])
    0.0
    >>> cliffs_delta([5, 6], [1, 2, 3])
    1.0
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        raise ValueError("cliffs_delta needs at least one value in each group (x and y)")
    ranks = _st.rankdata(np.concatenate([a, b]))
    u = ranks[: a.size].sum() - a.size * (a.size + 1) / 2
    return float(2 * u / (a.size * b.size) - 1)


def cohens_d(x: Any, y: Any) -> float:
    """Cohen's d: difference of means in units of the pooled standard deviation.

    .. math:: d = \\frac{\\bar x - \\bar y}{s_p}, \\quad
              s_p = \\sqrt{\\frac{(n_x - 1) s_x^2 + (n_y - 1) s_y^2}{n_x + n_y - 2}}

    NaN values are ignored. Returns NaN when ``s_p = 0`` (both groups constant).

    References
    ----------
    Cohen, J. (1988). Statistical Power Analysis for the Behavioral Sciences (2nd ed.),
    section 2.2. Lawrence Erlbaum.

    Examples
    --------
    >>> round(cohens_d([1, 2, 3], [3, 4, 5]), 3)
    -2.0
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size < 2 or b.size < 2:
        raise ValueError("cohens_d needs at least two values in each group (x and y)")
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    if pooled <= 0:
        return float("nan")
    return float((a.mean() - b.mean()) / math.sqrt(pooled))


def cramers_v(table: Any) -> float:
    """Cramer's V of an ``r x c`` contingency table of counts.

    .. math:: V = \\sqrt{\\frac{\\chi^2 / N}{\\min(r, c) - 1}}

    with the Pearson chi-square statistic without continuity correction. It lies in
    [0, 1]; for a 2 x 2 table it is the absolute phi coefficient.

    References
    ----------
    Cramer, H. (1946). Mathematical Methods of Statistics, p. 282. Princeton University
    Press.

    Examples
    --------
    >>> cramers_v([[10, 0], [0, 10]])
    1.0
    """
    t = np.asarray(table, dtype=np.float64)
    if t.ndim != 2 or min(t.shape) < 2:
        raise ValueError(f"table must be 2-D with at least 2 rows and 2 columns; got {t.shape}")
    if (t < 0).any():
        raise ValueError("table must hold non-negative counts")
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    if min(t.shape) < 2:
        raise ValueError("table has fewer than 2 non-empty rows or columns; V is undefined")
    chi2 = _st.chi2_contingency(t, correction=False).statistic
    return float(math.sqrt(chi2 / t.sum() / (min(t.shape) - 1)))


# --------------------------------------------------------------------------- enrichment


def _bh(p: list[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values over the non-None entries."""
    idx = [i for i, v in enumerate(p) if v is not None]
    out: list[float | None] = [None] * len(p)
    if idx:
        adj = _st.false_discovery_control(np.array([p[i] for i in idx]), method="bh")
        for i, a in zip(idx, adj, strict=True):
            out[i] = float(a)
    return out


def _word(effect: float, words: tuple[tuple[float, str], ...]) -> str:
    for threshold, word in words:
        if abs(effect) >= threshold:
            return word
    return "barely"


def _observed(
    name: str, a: np.ndarray, b: np.ndarray, mi: np.ndarray, mo: np.ndarray
) -> tuple[dict[str, int], str | None]:
    """Observed and missing counts of a feature in the cluster (a) and the rest (b), and
    why it cannot be tested when either side has too few observed values."""
    counts = {
        "n_cluster": int(a.size),
        "n_rest": int(b.size),
        "n_missing_cluster": int(mi.sum()),
        "n_missing_rest": int(mo.sum()),
    }
    if a.size < _MIN_FEATURE_VALUES or b.size < _MIN_FEATURE_VALUES:
        return counts, (
            f"{name}: not tested, it needs {_MIN_FEATURE_VALUES} observed values in the "
            f"cluster and in the rest; has {a.size} and {b.size}"
        )
    return counts, None


def _numeric_test(
    name: str, phrase: str, xin: np.ndarray, xout: np.ndarray
) -> tuple[dict[str, Any] | None, str | None]:
    mi, mo = np.isnan(xin), np.isnan(xout)
    a, b = xin[~mi], xout[~mo]
    counts, why = _observed(name, a, b, mi, mo)
    if why:
        return None, why
    if np.ptp(np.concatenate([a, b])) == 0:
        only = fmt_num(a[0], 3, significant=True)
        return None, f"{name}: not tested, it takes one value ({only}) everywhere"
    p = float(_st.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    delta = cliffs_delta(a, b)
    d = cohens_d(a, b)
    med_a, med_b = float(np.median(a)), float(np.median(b))
    med_text = f"{fmt_num(med_a, 3, significant=True)} vs {fmt_num(med_b, 3, significant=True)}"
    direction = "higher" if delta > 0 else "lower"
    d_text = f"; Cohen's d = {d:.2f}" if math.isfinite(d) else ""
    sentence = (
        f"{phrase} is {_word(delta, _DELTA_WORDS)} {direction} in this cluster "
        f"(Cliff's delta = {delta:.2f}{d_text}; median {med_text} "
        "in the rest)"
    )
    if delta == 0:
        direction, sentence = "same", f"{phrase} is the same in this cluster as in the rest"
    out = {
        "feature": name,
        "kind": "numeric",
        "effect": delta,
        "effect_name": "cliffs_delta",
        "cohens_d": finite(d),
        "cluster_value": med_a,
        "rest_value": med_b,
        "value_name": "median",
        "p": p,
        "p_adj": None,
        "test": "Mann-Whitney U, two-sided",
        "direction": direction,
        "sentence": sentence,
        **counts,
    }
    if not math.isfinite(d):
        out["note"] = "Cohen's d undefined: both groups are constant (pooled SD = 0)"
    return out, None


def _categorical_test(
    name: str, phrase: str, xin: np.ndarray, xout: np.ndarray
) -> tuple[dict[str, Any] | None, str | None]:
    mi = np.array([v is None for v in xin], dtype=bool)
    mo = np.array([v is None for v in xout], dtype=bool)
    a, b = xin[~mi].astype(str), xout[~mo].astype(str)
    counts, why = _observed(name, a, b, mi, mo)
    if why:
        return None, why
    cats = np.unique(np.concatenate([a, b]))
    if cats.size < 2:
        return None, f"{name}: not tested, it takes one value ({str(cats[0])!r}) everywhere"
    table = np.array([[np.sum(a == c) for c in cats], [np.sum(b == c) for c in cats]])
    share_a, share_b = table[0] / a.size, table[1] / b.size
    top = int(np.argmax(share_a - share_b))
    if cats.size == 2:
        p = float(_st.fisher_exact(table, alternative="two-sided").pvalue)
        test = "Fisher exact, two-sided"
    else:
        p = float(_st.chi2_contingency(table, correction=False).pvalue)
        test = "chi-square test of independence (no continuity correction)"
    v = cramers_v(table)
    cat = str(cats[top])
    sentence = (
        f"{phrase} '{cat}' is {_word(v, _V_WORDS)} over-represented in this cluster "
        f"(Cramer's V = {v:.2f}; {fmt_pct(share_a[top])} of the cluster vs "
        f"{fmt_pct(share_b[top])} of the rest)"
    )
    out = {
        "feature": name,
        "kind": "categorical",
        "effect": v,
        "effect_name": "cramers_v",
        "cluster_value": float(share_a[top]),
        "rest_value": float(share_b[top]),
        "value_name": f"share of {cat!r}",
        "p": p,
        "p_adj": None,
        "test": test,
        "direction": cat,
        "sentence": sentence,
        "categories": {
            str(c): {"cluster": int(table[0, j]), "rest": int(table[1, j])}
            for j, c in enumerate(cats)
        },
        **counts,
    }
    return out, None


def _rate_entry(
    cid: int,
    member: np.ndarray,
    dis: np.ndarray,
    score: np.ndarray | None,
) -> dict[str, Any]:
    """Counts, rates, Fisher test of one group against everything else."""
    notes: list[str] = []
    din, dout = dis[member], dis[~member]
    rin, rout = din[~np.isnan(din)], dout[~np.isnan(dout)]
    a, n1 = int(rin.sum()), int(rin.size)
    b, n2 = int(rout.sum()), int(rout.size)
    entry: dict[str, Any] = {
        "cluster": cid,
        "size": int(member.sum()),
        "n_rated": n1,
        "n_disagree": a,
        "rate": a / n1 if n1 else None,
        "rest_size": int((~member).sum()),
        "rest_n_rated": n2,
        "rest_n_disagree": b,
        "rest_rate": b / n2 if n2 else None,
        "rate_ratio": None,
        "odds_ratio": None,
        "p": None,
        "p_adj": None,
        "enriched": False,
        "mean_disagreement": None,
        "rest_mean_disagreement": None,
    }
    if n1 < member.sum():
        notes.append(f"{int(member.sum()) - n1} sample(s) with undefined disagreement left out")
    if n1 == 0:
        notes.append("no sample in this cluster has a defined disagreement indicator")
    elif n2 == 0:
        notes.append("nothing to compare against: the rest has no rated samples")
    else:
        table = [[a, n1 - a], [b, n2 - b]]
        res = _st.fisher_exact(table, alternative="greater")
        entry["p"] = float(res.pvalue)
        if b > 0:
            entry["rate_ratio"] = (a / n1) / (b / n2)
        elif a > 0:
            notes.append("rate_ratio is infinite: the rest has no disagreement")
        else:
            notes.append("rate_ratio undefined: no disagreement in the cluster or the rest")
        o = finite(res.statistic)
        entry["odds_ratio"] = o
        if o is None:
            notes.append("odds_ratio undefined or infinite: a cell of the 2 x 2 table is 0")
    if score is not None:
        sin, sout = score[member], score[~member]
        sin, sout = sin[~np.isnan(sin)], sout[~np.isnan(sout)]
        entry["mean_disagreement"] = float(sin.mean()) if sin.size else None
        entry["rest_mean_disagreement"] = float(sout.mean()) if sout.size else None
        if not sin.size:
            notes.append("mean_disagreement undefined: no score in this cluster")
    entry["notes"] = notes
    return entry


def cluster_enrichment(
    labels: Any,
    disagree: Any,
    disagreement: Any = None,
    features: Mapping[str, Any] | None = None,
    *,
    alpha: float = 0.05,
    min_effect: float = 0.5,
    feature_labels: Mapping[str, str] | None = None,
    top_features: int = 3,
    preferred_features: Collection[str] | None = None,
    outcome: str = "disagreed on",
) -> dict[str, Any]:
    """Which clusters hold more reader disagreement than the rest, and what sets them apart.

    **Enrichment.** For each cluster ``c`` (noise ``-1`` excluded) the 2 x 2 table

    ============  ===============  =====================
    ..            disagreed        agreed
    ============  ===============  =====================
    cluster c     a                n_c - a
    rest          b                n_rest - b
    ============  ===============  =====================

    gets a one-sided Fisher exact test (alternative: the odds of disagreement are higher in
    the cluster), with ``rate = a / n_c``, ``rest_rate = b / n_rest``, ``rate_ratio =
    rate / rest_rate`` and the sample ``odds_ratio = a (n_rest - b) / (b (n_c - a))``. The
    rest is every other sample, noise included. p-values are adjusted across clusters with
    Benjamini-Hochberg (1995): ``p_adj(i) = min_{j >= i} m p_(j) / j``. A cluster is
    ``enriched`` when ``p_adj < alpha`` and ``rate > rest_rate``. Samples whose
    ``disagree`` is NaN (undefined, e.g. read once) are left out of the counts.

    **Distinguishing features.** Each feature is compared between the cluster and the rest,
    missing values (NaN / None / "") ignored and counted:

    * numeric: two-sided Mann-Whitney U test; effect = Cliff's delta (cluster vs rest, in
      [-1, 1]; the probability a cluster value is larger minus the probability it is
      smaller). Cliff's delta is the effect size of the very test used, and is robust to
      the skewed, heavy-tailed distributions of quality metrics. Cohen's d is reported
      alongside (``cohens_d``). ``cluster_value`` / ``rest_value`` are medians.
    * categorical: Fisher exact test (2 categories) or Pearson chi-square test (more) of
      the cluster-vs-rest by category table; effect = Cramer's V in [0, 1];
      ``direction`` = the most over-represented category (largest share in the cluster
      minus share in the rest), ``cluster_value`` / ``rest_value`` its shares.

    p-values are BH-adjusted across every feature test of every cluster (one family). A
    feature distinguishes a cluster when ``p_adj < alpha`` and ``|effect| >= min_effect``;
    the default 0.5 is a "large" effect on both scales (Cliff's delta >= 0.474, Romano et
    al. 2006; Cramer's V with one degree of freedom >= 0.5, Cohen 1988). Those features
    are ranked by ``|effect|``, ties (e.g. Cliff's delta saturated at +-1) by
    ``preferred_features`` first, then ``|cohens_d|``, and the first ``top_features`` kept.

    **Ranking** of clusters: :data:`RANKING_RULE`.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Cluster ids, ``-1`` = noise (as from :func:`cluster_embeddings`).
    disagree : array-like of bool, shape (n,)
        Whether readers disagreed on each sample; 0/1 floats with NaN = undefined also
        accepted.
    disagreement : array-like of float in [0, 1], shape (n,), optional
        A disagreement score, NaN = undefined; its mean per cluster is reported.
    features : dict of str -> array-like (n,), optional
        Numeric features (numbers, NaN = missing) or categorical ones (str / None).
        Numbers are numeric; strings and booleans categorical.
    alpha : float in (0, 1)
        Significance level for BH-adjusted p-values.
    min_effect : float in [0, 1]
        Smallest ``|effect|`` for a distinguishing feature.
    feature_labels : dict of str -> str, optional
        Human phrases for feature names, used in sentences.
    top_features : int >= 1
        How many distinguishing features to keep per cluster.
    preferred_features : collection of str, optional
        Among features with equal ``|effect|`` (e.g. several saturated at +-1), these
        come first: a caller can put the metrics that directly measure a cause (sharpness
        for blur) before those it shifts as a side effect.
    outcome : str, default "disagreed on"
        How the summary names the outcome, e.g. "at or above the 75th percentile of
        disagreement_class" when ``disagree`` marks the most contested samples.

    Returns
    -------
    dict
        JSON-ready: ``n_samples``, ``n_clusters``, ``n_rated``, ``n_disagree``,
        ``overall_rate``, ``alpha``, ``min_effect``, ``clusters`` (ranked list, fields
        below), ``noise`` (the same fields without tests, or None), ``ranking`` (the rule),
        ``summary`` (one sentence) and ``notes``. Each cluster: ``cluster``, ``rank``,
        ``size``, ``n_rated``, ``n_disagree``, ``rate``, ``rest_rate``, ``rate_ratio``,
        ``odds_ratio``, ``p``, ``p_adj``, ``enriched``, ``mean_disagreement``,
        ``rest_mean_disagreement``, ``distinguishing`` (features, each with ``feature``,
        ``kind``, ``effect``, ``effect_name``, ``cluster_value``, ``rest_value``, ``p``,
        ``p_adj``, ``direction``, ``sentence``, counts of observed / missing values),
        ``features`` (every feature tested, in input order, same fields),
        ``features_not_tested`` (one reason per skipped feature) and ``notes``.
        Undefined numbers are None with a note.

    Raises
    ------
    ValueError
        A bad argument, named: shapes that differ from ``labels``, non-integer or < -1
        labels, non-boolean ``disagree``, a score outside [0, 1], infinite feature values.

    References
    ----------
    Fisher, R. A. (1922). On the interpretation of chi-square from contingency tables,
    and the calculation of P. J. R. Stat. Soc. 85(1), 87-94.

    Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate: a practical
    and powerful approach to multiple testing. J. R. Stat. Soc. B 57(1), 289-300.

    Mann, H. B. & Whitney, D. R. (1947). On a test of whether one of two random variables
    is stochastically larger than the other. Ann. Math. Stat. 18(1), 50-60.

    Cliff, N. (1993). Dominance statistics. Psychological Bulletin 114(3), 494-509.

    Cohen, J. (1988). Statistical Power Analysis for the Behavioral Sciences (2nd ed.).

    Romano, J., Kromrey, J. D., Coraggio, J. & Skowronek, J. (2006). Appropriate statistics
    for ordinal level data. Annual meeting of the Florida Association of Institutional
    Research.

    Examples
    --------
    >>> labels = np.repeat([0, 1], 20)
    >>> disagree = np.r_[np.ones(15), np.zeros(5), np.zeros(18), np.ones(2)].astype(bool)
    >>> res = cluster_enrichment(labels, disagree)
    >>> top = res["clusters"][0]
    >>> top["cluster"], top["rate"], top["rest_rate"], top["enriched"]
    (0, 0.75, 0.1, True)
    """
    lab = _check_labels(labels)
    n = lab.size
    dis = _check_disagree(disagree, n)
    score = _check_disagreement(disagreement, n)
    alpha = _check_fraction(alpha, "alpha")
    if (
        isinstance(min_effect, bool)
        or not isinstance(min_effect, numbers.Real)
        or not 0 <= min_effect <= 1
    ):
        raise ValueError(f"min_effect must be a number in [0, 1]; got {min_effect!r}")
    min_effect = float(min_effect)
    top_features = _check_int(top_features, "top_features", 1)
    if features is None:
        features = {}
    if not isinstance(features, Mapping):
        raise ValueError(f"features must be a dict of name -> array; got {type(features).__name__}")
    if feature_labels is None:
        feature_labels = {}
    if not isinstance(feature_labels, Mapping):
        raise ValueError(
            f"feature_labels must be a dict of name -> phrase; got {type(feature_labels).__name__}"
        )
    prepared = {str(k): _prepare_feature(str(k), v, n) for k, v in features.items()}
    preferred = set(preferred_features or ())

    notes: list[str] = []
    rated = ~np.isnan(dis)
    n_rated, n_dis = int(rated.sum()), int(np.nansum(dis))
    if n_rated < n:
        notes.append(f"{n - n_rated} sample(s) have an undefined disagreement indicator")
    cids = [int(c) for c in np.unique(lab) if c >= 0]

    entries = []
    for c in cids:
        member = lab == c
        e = _rate_entry(c, member, dis, score)
        tested, skipped = [], []
        for name, (kind, vals) in prepared.items():
            phrase = feature_labels.get(name, name)
            test = _numeric_test if kind == "numeric" else _categorical_test
            res, why = test(name, phrase, vals[member], vals[~member])
            if res is None:
                skipped.append(why)
            else:
                tested.append(res)
        e["_tested"] = tested
        e["features_not_tested"] = skipped
        entries.append(e)

    # one BH family for clusters, one for every feature test of every cluster
    for e, pa in zip(entries, _bh([e["p"] for e in entries]), strict=True):
        e["p_adj"] = pa
        e["enriched"] = bool(
            pa is not None
            and pa < alpha
            and e["rate"] is not None
            and e["rest_rate"] is not None
            and e["rate"] > e["rest_rate"]
        )
    all_tests = [t for e in entries for t in e["_tested"]]
    for t, pa in zip(all_tests, _bh([t["p"] for t in all_tests]), strict=True):
        t["p_adj"] = pa
    for e in entries:
        e["features"] = e.pop("_tested")
        keep = [t for t in e["features"] if t["p_adj"] < alpha and abs(t["effect"]) >= min_effect]
        # Cliff's delta saturates at +-1 when the groups do not overlap, which is common
        # for image-quality metrics (a blurred series is blurrier than every clean image);
        # among equal deltas the larger standardised difference (Cohen's d) comes first
        # (and ``preferred_features``, e.g. metrics defined to measure a degradation, come
        # before intensity summaries the degradation shifts as a side effect)
        keep.sort(
            key=lambda t: (
                -round(abs(t["effect"]), 9),
                t["feature"] not in preferred,
                -abs(t.get("cohens_d") or 0.0),
                t["p"],
                t["feature"],
            )
        )
        # copies: a caller annotating a distinguishing feature should not alter "features"
        e["distinguishing"] = [dict(t) for t in keep[:top_features]]

    def ratio_key(e: dict[str, Any]) -> float:
        if e["rate_ratio"] is not None:
            return e["rate_ratio"]
        if e["rate"] and e["rest_rate"] == 0:
            return math.inf
        return -math.inf

    def sort_key(e: dict[str, Any]) -> tuple:
        p = e["p"] if e["p"] is not None else 2.0
        if e["enriched"]:
            return (0, -ratio_key(e), p, -e["size"], e["cluster"])
        return (1, p, -ratio_key(e), -e["size"], e["cluster"])

    entries.sort(key=sort_key)
    for r, e in enumerate(entries, 1):
        e["rank"] = r

    noise = None
    if (lab == -1).any():
        noise = _rate_entry(-1, lab == -1, dis, score)
        noise["p"] = None
        noise["notes"].append("noise is not a cluster: described here, not tested or ranked")

    summary = _summary(entries, noise, n, n_rated, n_dis, alpha, outcome)
    if not cids:
        notes.append("no clusters: every sample is noise (-1)")
    elif len(cids) == 1 and noise is None:
        notes.append("a single cluster and no noise: there is no rest to compare it with")
    if n_rated and n_dis == 0:
        notes.append("no sample is disagreed on, so no cluster can be enriched")

    return {
        "n_samples": n,
        "n_clusters": len(cids),
        "n_rated": n_rated,
        "n_disagree": n_dis,
        "overall_rate": n_dis / n_rated if n_rated else None,
        "alpha": alpha,
        "min_effect": min_effect,
        "clusters": [_ordered(e) for e in entries],
        "noise": None if noise is None else _ordered(noise),
        "ranking": RANKING_RULE,
        "summary": summary,
        "notes": notes,
    }


_KEY_ORDER = (
    "cluster",
    "rank",
    "size",
    "n_rated",
    "n_disagree",
    "rate",
    "rest_size",
    "rest_n_rated",
    "rest_n_disagree",
    "rest_rate",
    "rate_ratio",
    "odds_ratio",
    "p",
    "p_adj",
    "enriched",
    "mean_disagreement",
    "rest_mean_disagreement",
    "distinguishing",
    "features",
    "features_not_tested",
    "notes",
)


def _ordered(e: dict[str, Any]) -> dict[str, Any]:
    return {k: e[k] for k in _KEY_ORDER if k in e}


def _summary(
    entries: list[dict[str, Any]],
    noise: dict[str, Any] | None,
    n: int,
    n_rated: int,
    n_dis: int,
    alpha: float,
    outcome: str,
) -> str:
    if not entries:
        return f"There are no clusters: all {n} samples are noise, so nothing can be compared."
    if n_rated == 0:
        return "No sample has a defined disagreement indicator, so no cluster can be tested."
    if len(entries) == 1 and noise is None:
        return (
            f"All {n} samples form a single cluster; there is no rest to compare it with, "
            "so no cluster can be enriched."
        )
    if n_dis == 0:
        return (
            f"Readers agreed on all {n_rated} rated samples, so no cluster can be enriched "
            "in disagreement."
        )
    top = entries[0]
    if not top["enriched"]:
        best = max(
            (e for e in entries if e["rate"] is not None),
            key=lambda e: (e["rate"], -e["cluster"]),
            default=top,
        )
        rr = "" if best["rest_rate"] is None else f" vs {fmt_pct(best['rest_rate'])} elsewhere"
        rate = "n/a" if best["rate"] is None else fmt_pct(best["rate"])
        return (
            f"No cluster has significantly more disagreement than the rest (BH-adjusted "
            f"one-sided Fisher p >= {alpha:g} for all {len(entries)} clusters); the highest "
            f"rate is cluster {best['cluster']} ({rate}{rr})."
        )
    rr = "infinite" if top["rate_ratio"] is None else f"{top['rate_ratio']:.1f}"
    s = (
        f"Cluster {top['cluster']} ({top['size']} samples) has the most disagreement: "
        f"{fmt_pct(top['rate'])} of its samples are {outcome} vs {fmt_pct(top['rest_rate'])} "
        f"elsewhere (rate ratio {rr}, BH-adjusted {fmt_p(top['p_adj'], 'p')})"
    )
    if top["distinguishing"]:
        s += "; " + top["distinguishing"][0]["sentence"]
    return s + "."
