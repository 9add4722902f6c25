"""Readers and cases both random: multi-reader multi-case (MRMC) inference.

Every other interval of the package resamples cases (patients) only, which treats the
readers who read as the only readers there are. The functions here let the readers be
a sample too:

- :func:`figure_of_merit`: each reader's AUC (empirical, Wilcoxon) or accuracy, with its
  leave-one-case-out (jackknife) values, the input of the Obuchowski-Rockette method.
- :func:`or_hillis`: the Obuchowski-Rockette (1995) test of equal figures of merit
  across modalities with Hillis's (2007) denominator degrees of freedom, confidence
  intervals of the differences and of each modality, readers and cases random.
- :func:`model_vs_readers`: "is the model at least as accurate as the readers?", the
  single-modality Obuchowski-Rockette analysis (Hillis 2007, ``ddf_H_single``) of the
  differences model minus reader, with a non-inferiority p-value.
- :func:`rater_subject_variance`: the variance of Fleiss' kappa, Gwet's AC1 or percent
  agreement over both the subjects and the raters (Gwet 2008; Gwet 2014, ch. 5): the
  subject part and the rater part, each by the delete-one jackknife.
- :func:`two_way_bootstrap`: the percentile bootstrap drawing patients and readers,
  independently, with replacement.

Inputs follow :mod:`multireader.stats.ratings` where they are class codes (``-1`` not
read); scores for the AUC are floats (``NaN`` not read). The Obuchowski-Rockette
functions need every reader to have read every case (the factorial design of the
papers). Numpy and scipy only.

References
----------
N. A. Obuchowski and H. E. Rockette (1995). Hypothesis testing of diagnostic accuracy
for multiple readers and multiple tests: an ANOVA approach with dependent observations.
Communications in Statistics - Simulation and Computation 24(2), 285-308.

S. L. Hillis (2007). A comparison of denominator degrees of freedom methods for
multiple observer ROC analysis. Statistics in Medicine 26(3), 596-619.

S. L. Hillis, K. S. Berbaum and C. E. Metz (2008). Recent developments in the
Dorfman-Berbaum-Metz procedure for multireader ROC study analysis. Academic Radiology
15(5), 647-661.

K. L. Gwet (2008). Variance estimation of nominal-scale inter-rater reliability with
random selection of raters. Psychometrika 73(3), 407-430.

K. L. Gwet (2014). Handbook of Inter-Rater Reliability, 4th ed. Advanced Analytics,
ch. 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from multireader.stats.bootstrap import check_level, check_n_boot, group_codes
from multireader.stats.ratings import check_n_classes, validate_ratings

__all__ = [
    "FigureOfMerit",
    "ORHillisResult",
    "ModelVsReadersResult",
    "figure_of_merit",
    "or_hillis",
    "model_vs_readers",
    "rater_subject_variance",
    "two_way_bootstrap",
    "AGREEMENT_STATISTICS",
]

Fom = Literal["auc", "accuracy"]


# ---------------------------------------------------------------- figures of merit


@dataclass
class FigureOfMerit:
    """Figures of merit and their leave-one-case-out values.

    Attributes
    ----------
    value : ndarray of shape (n_readers,)
        The figure of merit of each reader (column).
    jackknife : ndarray of shape (n_readers, n_cases)
        ``jackknife[j, k]``: reader j's figure of merit with case k left out.
    fom : "auc" or "accuracy".
    n_cases, n_positive : int
        Cases, and diseased cases (``truth == 1``; for accuracy, cases with a truth).
    """

    value: np.ndarray
    jackknife: np.ndarray
    fom: str
    n_cases: int
    n_positive: int


def _check_truth_binary(truth: ArrayLike, n: int) -> np.ndarray:
    t = np.asarray(truth)
    if t.ndim != 1 or len(t) != n:
        raise ValueError(f"truth must be 1-D with one entry per case ({n}); got shape {t.shape}")
    if t.dtype.kind not in "iub" or not np.isin(t, [0, 1]).all():
        raise ValueError("truth must be 0 (non-diseased) or 1 (diseased) for the AUC")
    if t.sum() < 2 or (1 - t).sum() < 2:
        raise ValueError(
            "truth needs at least two diseased and two non-diseased cases for a jackknife AUC"
        )
    return t.astype(bool)


def _auc_jackknife(x: np.ndarray, truth: np.ndarray) -> tuple[float, np.ndarray]:
    """Empirical AUC of one reader and its leave-one-case-out values, in O(n log n).

    ``AUC = sum_{i pos, j neg} psi(x_i, x_j) / (n1 n0)``, psi = 1 if x_i > x_j, 1/2 if
    equal. Leaving out a case removes its row (or column) of psi terms.
    """
    pos, neg = x[truth], x[~truth]
    n1, n0 = len(pos), len(neg)
    sneg = np.sort(neg)
    spos = np.sort(pos)
    # psi sums of each diseased case over the non-diseased, and vice versa
    s_pos = np.searchsorted(sneg, pos, "left") + 0.5 * (
        np.searchsorted(sneg, pos, "right") - np.searchsorted(sneg, pos, "left")
    )
    s_neg = (n1 - np.searchsorted(spos, neg, "right")) + 0.5 * (
        np.searchsorted(spos, neg, "right") - np.searchsorted(spos, neg, "left")
    )
    total = float(s_pos.sum())
    jk = np.empty(len(x))
    jk[truth] = (total - s_pos) / ((n1 - 1) * n0)
    jk[~truth] = (total - s_neg) / (n1 * (n0 - 1))
    return total / (n1 * n0), jk


def figure_of_merit(scores: ArrayLike, truth: ArrayLike, fom: Fom = "auc") -> FigureOfMerit:
    r"""Each reader's figure of merit and its jackknife (leave-one-case-out) values.

    - ``fom="auc"``: the empirical (trapezoidal, Wilcoxon-Mann-Whitney) area under the
      ROC curve of each column of ``scores`` (ordinal ratings or confidence scores,
      larger = more likely diseased) against ``truth`` (0/1), ties counted 1/2:
      :math:`\hat\theta = \frac{1}{n_1 n_0} \sum_{i \in D^+} \sum_{j \in D^-}
      \psi(x_i, x_j)`.
    - ``fom="accuracy"``: the share of cases where the call (class code) equals
      ``truth`` (class codes).

    Every reader must have read every case (no ``NaN`` / ``-1``): the
    Obuchowski-Rockette covariances are over a common set of cases.

    Parameters
    ----------
    scores : array-like of shape (n_cases, n_readers)
        Scores (AUC) or class calls (accuracy).
    truth : array-like of shape (n_cases,)
        0/1 (AUC) or class codes (accuracy).
    fom : {"auc", "accuracy"}, default "auc"

    Returns
    -------
    FigureOfMerit

    References
    ----------
    D. Bamber (1975). The area above the ordinal dominance graph and the area below the
    receiver operating characteristic graph. J. Math. Psychol. 12, 387-415.

    Examples
    --------
    >>> f = figure_of_merit([[1, 2], [2, 2], [3, 5], [4, 3]], [0, 0, 1, 1])
    >>> f.value.tolist(), f.jackknife[1].round(3).tolist()
    ([1.0, 1.0], [1.0, 1.0, 1.0, 1.0])
    """
    if fom not in ("auc", "accuracy"):
        raise ValueError(f"fom must be 'auc' or 'accuracy', got {fom!r}")
    s = np.asarray(scores)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2 or s.shape[0] < 3:
        raise ValueError(f"scores must be 2-D (n_cases >= 3, n_readers); got shape {s.shape}")
    n, R = s.shape
    if fom == "auc":
        if s.dtype.kind not in "iufb":
            raise ValueError(f"scores must be numeric for the AUC, got dtype {s.dtype}")
        s = s.astype(float)
        if not np.isfinite(s).all():
            raise ValueError(
                "scores has NaN or infinite values: every reader must score every case"
            )
        t = _check_truth_binary(truth, n)
        val = np.empty(R)
        jk = np.empty((R, n))
        for j in range(R):
            val[j], jk[j] = _auc_jackknife(s[:, j], t)
        return FigureOfMerit(val, jk, "auc", n, int(t.sum()))
    calls = validate_ratings(s, int(max(s.max(), np.max(truth)) + 1), name="scores")
    if (calls < 0).any():
        raise ValueError("scores has a missing call (-1): every reader must call every case")
    t = np.asarray(truth)
    if t.ndim != 1 or len(t) != n or t.dtype.kind not in "iu" or (t < 0).any():
        raise ValueError(f"truth must be {n} class codes >= 0 for accuracy")
    hit = (calls == t[:, None]).astype(float)
    total = hit.sum(axis=0)
    jk = (total[:, None] - hit.T) / (n - 1)
    return FigureOfMerit(total / n, jk, "accuracy", n, n)


def _jackknife_cov(jk: np.ndarray) -> np.ndarray:
    """Jackknife covariance of the rows of ``jk`` (m, n): (n - 1)/n sum (x - x.)(y - y.)."""
    n = jk.shape[1]
    d = jk - jk.mean(axis=1, keepdims=True)
    return (n - 1) / n * (d @ d.T)


# ---------------------------------------------------------------- OR-Hillis


@dataclass
class ORHillisResult:
    """Obuchowski-Rockette analysis with Hillis's degrees of freedom, random readers
    and random cases.

    Attributes
    ----------
    foms : (t, r) figures of merit, modality x reader.
    means : (t,) modality means over readers.
    ms_t, ms_r, ms_tr : the modality, reader and modality x reader mean squares.
    var, cov1, cov2, cov3 : jackknife error variance and covariances (same reader
        other modality; same modality other reader; both other).
    var_r, var_tr : reader and modality x reader variance components (may be < 0).
    f_stat, ndf, ddf, p_value : the test of equal modality means.
    differences : list of dicts, one per pair (i < i'): ``modalities`` (i, i'),
        ``estimate`` (mean_i - mean_i'), ``std_err``, ``df``, ``t``, ``p_value``,
        ``ci``.
    per_modality : list of dicts: ``estimate``, ``std_err``, ``df``, ``ci``, ``ms_r``,
        ``cov2`` (each modality's own readers and covariance, Hillis's
        ``ddf_H_single``).
    level : confidence level; n_readers, n_cases; fom.
    """

    foms: np.ndarray
    means: np.ndarray
    ms_t: float
    ms_r: float
    ms_tr: float
    var: float
    cov1: float
    cov2: float
    cov3: float
    var_r: float
    var_tr: float
    f_stat: float
    ndf: int
    ddf: float
    p_value: float
    differences: list[dict[str, Any]]
    per_modality: list[dict[str, Any]]
    level: float
    n_readers: int
    n_cases: int
    fom: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain floats and lists (inf ddf written as None with a note)."""

        def f(v):
            return None if v is None or not math.isfinite(v) else float(v)

        def entry(d):
            return {
                k: (
                    [f(x) for x in v]
                    if k == "ci"
                    else list(v)
                    if isinstance(v, tuple)
                    else f(v)
                    if isinstance(v, float)
                    else v
                )
                for k, v in d.items()
            }

        return {
            "method": "Obuchowski-Rockette, Hillis ddf (readers and cases random)",
            "fom": self.fom,
            "n_readers": self.n_readers,
            "n_cases": self.n_cases,
            "level": self.level,
            "foms": self.foms.tolist(),
            "means": self.means.tolist(),
            "mean_squares": {"T": f(self.ms_t), "R": f(self.ms_r), "TR": f(self.ms_tr)},
            "covariances": {
                "var": f(self.var),
                "cov1": f(self.cov1),
                "cov2": f(self.cov2),
                "cov3": f(self.cov3),
            },
            "variance_components": {"var_r": f(self.var_r), "var_tr": f(self.var_tr)},
            "f_test": {
                "f": f(self.f_stat),
                "ndf": self.ndf,
                "ddf": f(self.ddf),
                "p_value": f(self.p_value),
            },
            "differences": [entry(d) for d in self.differences],
            "per_modality": [entry(d) for d in self.per_modality],
            "notes": list(self.notes),
        }


def _t_interval(est: float, se: float, df: float, level: float) -> tuple[float, float]:
    q = stats.t.ppf((1 + level) / 2, df) if math.isfinite(df) else stats.norm.ppf((1 + level) / 2)
    return est - q * se, est + q * se


def _single(theta: np.ndarray, cov: np.ndarray, level: float) -> dict[str, Any]:
    """One modality's (or one difference's) mean over readers, readers and cases random:
    Hillis (2007) single-test inference, error term MS(R) + r max(Cov2, 0)."""
    r = len(theta)
    est = float(theta.mean())
    ms_r = float(((theta - est) ** 2).sum() / (r - 1))
    off = ~np.eye(r, dtype=bool)
    cov2 = float(cov[off].mean())
    den = ms_r + r * max(cov2, 0.0)
    se = math.sqrt(den / r)
    df = den**2 / (ms_r**2 / (r - 1)) if ms_r > 0 else math.inf
    lo, hi = _t_interval(est, se, df, level)
    return {"estimate": est, "std_err": se, "df": df, "ci": (lo, hi), "ms_r": ms_r, "cov2": cov2}


def _check_foms(foms: list[FigureOfMerit], name: str) -> tuple[np.ndarray, np.ndarray]:
    kinds = {f.fom for f in foms}
    if len(kinds) != 1:
        raise ValueError(f"{name}: every figure of merit must be of one kind, got {kinds}")
    shapes = {f.jackknife.shape for f in foms}
    if len(shapes) != 1:
        raise ValueError(f"{name}: every modality needs the same readers and cases, got {shapes}")
    theta = np.stack([f.value for f in foms])
    jk = np.stack([f.jackknife for f in foms])  # (t, r, n)
    return theta, jk


def or_hillis(
    scores: ArrayLike | list[FigureOfMerit],
    truth: ArrayLike | None = None,
    fom: Fom = "auc",
    level: float = 0.95,
) -> ORHillisResult:
    r"""Obuchowski-Rockette test of equal figures of merit across modalities, readers
    and cases random, with Hillis's denominator degrees of freedom.

    With :math:`\hat\theta_{ij}` the figure of merit of modality i (t of them) and
    reader j (r of them), the OR model is :math:`\hat\theta_{ij} = \mu + \tau_i + R_j +
    (\tau R)_{ij} + \epsilon_{ij}`, the errors correlated through the common cases:
    :math:`\mathrm{Var}(\epsilon) = \sigma^2`, and Cov1 (same reader, other modality),
    Cov2 (same modality, other reader), Cov3 (both other), estimated by the jackknife
    over cases, :math:`\widehat{\mathrm{Cov}}(\hat\theta_a, \hat\theta_b) = \frac{n-1}{n}
    \sum_k (\hat\theta_{a(k)} - \hat\theta_{a(\cdot)})(\hat\theta_{b(k)} -
    \hat\theta_{b(\cdot)})` averaged over the pairs of each kind. Then

    .. math:: F = \frac{MS(T)}{MS(T{\times}R) + r \max(\widehat{Cov}_2 - \widehat{Cov}_3,
              0)}, \quad \mathrm{ddf}_H = \frac{[MS(T{\times}R) + r \max(\widehat{Cov}_2
              - \widehat{Cov}_3, 0)]^2}{MS(T{\times}R)^2 / ((t-1)(r-1))}

    with :math:`p = P(F_{t-1, \mathrm{ddf}_H} > F)`; the difference of two modality
    means has standard error :math:`\sqrt{(2/r)[MS(T{\times}R) + r \max(Cov_2 - Cov_3,
    0)]}` and a t interval on :math:`\mathrm{ddf}_H`. Each modality alone gets the
    single-test interval, error term :math:`MS(R) + r \max(Cov_2, 0)` on
    :math:`\mathrm{ddf}_{H,single} = [MS(R) + r \max(Cov_2, 0)]^2 / (MS(R)^2 / (r-1))`.

    Parameters
    ----------
    scores : array-like of shape (t, n_cases, n_readers), or a list of FigureOfMerit
        Each modality's scores (AUC) or calls (accuracy), every reader on every case;
        or the figures of merit already computed (one per modality).
    truth : array-like of shape (n_cases,)
        0/1 (AUC) or class codes (accuracy); not needed with FigureOfMerit input.
    fom : {"auc", "accuracy"}, default "auc"
    level : float, default 0.95

    Returns
    -------
    ORHillisResult

    Raises
    ------
    ValueError
        Fewer than two modalities or two readers, missing reads, a bad truth.

    References
    ----------
    Obuchowski & Rockette (1995); Hillis (2007), Stat. Med. 26, 596-619; Hillis,
    Berbaum & Metz (2008), Acad. Radiol. 15, 647-661. Reproduced here: the Van Dyke et
    al. (1993) cine MRI vs spin-echo data (2 modalities, 5 readers, 114 cases) as
    analysed by OR-DBM MRMC 2.51 (Schartz, Hillis, Pesce & Berbaum): F = 4.46 on 1 and
    15.26 df, p = 0.0517, difference -0.04380 (95% CI -0.08796 to 0.00036), see
    ``tests/test_mrmc.py``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = np.r_[np.zeros(40, int), np.ones(40, int)]
    >>> a = truth[:, None] * 1.0 + rng.normal(0, 1, (80, 4))
    >>> b = truth[:, None] * 1.6 + rng.normal(0, 1, (80, 4))
    >>> res = or_hillis(np.stack([a, b]), truth)
    >>> res.means.round(3).tolist(), round(res.p_value, 4) < 0.05
    ([0.735, 0.868], True)
    """
    level = check_level(level)
    if isinstance(scores, list) and scores and isinstance(scores[0], FigureOfMerit):
        foms = scores
    else:
        s = np.asarray(scores)
        if s.ndim != 3:
            raise ValueError(
                f"scores must be 3-D (modalities, n_cases, n_readers); got shape {s.shape}"
            )
        if truth is None:
            raise ValueError("truth is needed with scores (it is not with FigureOfMerit input)")
        foms = [figure_of_merit(m, truth, fom) for m in s]
    theta, jk = _check_foms(foms, "scores")
    t, r = theta.shape
    n = jk.shape[2]
    if t < 2:
        raise ValueError(f"or_hillis compares modalities: got {t}; see model_vs_readers")
    if r < 2:
        raise ValueError(f"or_hillis needs at least two readers (random readers); got {r}")
    C = _jackknife_cov(jk.reshape(t * r, n)).reshape(t, r, t, r)
    same_t = np.eye(t, dtype=bool)[:, None, :, None]
    same_r = np.eye(r, dtype=bool)[None, :, None, :]
    var = float(C[same_t & same_r].mean())
    cov1 = float(C[~same_t & same_r].mean())
    cov2 = float(C[same_t & ~same_r].mean())
    cov3 = float(C[~same_t & ~same_r].mean())
    grand = theta.mean()
    mi, mj = theta.mean(axis=1), theta.mean(axis=0)
    ms_t = float(r * ((mi - grand) ** 2).sum() / (t - 1))
    ms_r = float(t * ((mj - grand) ** 2).sum() / (r - 1))
    resid = theta - mi[:, None] - mj[None, :] + grand
    ms_tr = float((resid**2).sum() / ((t - 1) * (r - 1)))
    notes: list[str] = []
    den = ms_tr + r * max(cov2 - cov3, 0.0)
    if ms_tr > 0:
        ddf = den**2 / (ms_tr**2 / ((t - 1) * (r - 1)))
    else:
        ddf = math.inf
        notes.append("MS(T*R) is 0: ddf is infinite, normal quantiles used")
    if den > 0:
        f_stat = ms_t / den
        p = (
            float(stats.f.sf(f_stat, t - 1, ddf))
            if math.isfinite(ddf)
            else float(stats.chi2.sf(f_stat * (t - 1), t - 1))
        )
    else:
        f_stat, p = math.nan, math.nan
        notes.append("the error term is 0 (identical figures of merit): no test")
    diffs = []
    se = math.sqrt(2 / r * den)
    for i in range(t):
        for k in range(i + 1, t):
            est = float(mi[i] - mi[k])
            tt = est / se if se > 0 else math.nan
            pv = (
                float(2 * stats.t.sf(abs(tt), ddf))
                if math.isfinite(tt) and math.isfinite(ddf)
                else float(2 * stats.norm.sf(abs(tt)))
                if math.isfinite(tt)
                else math.nan
            )
            diffs.append(
                {
                    "modalities": (i, k),
                    "estimate": est,
                    "std_err": se,
                    "df": ddf,
                    "t": tt,
                    "p_value": pv,
                    "ci": _t_interval(est, se, ddf, level),
                }
            )
    per = [_single(theta[i], C[i, :, i, :], level) for i in range(t)]
    return ORHillisResult(
        foms=theta,
        means=mi,
        ms_t=ms_t,
        ms_r=ms_r,
        ms_tr=ms_tr,
        var=var,
        cov1=cov1,
        cov2=cov2,
        cov3=cov3,
        var_r=(ms_r - ms_tr) / t - cov1 + cov3,
        var_tr=ms_tr - var + cov1 + cov2 - cov3,
        f_stat=f_stat,
        ndf=t - 1,
        ddf=ddf,
        p_value=p,
        differences=diffs,
        per_modality=per,
        level=level,
        n_readers=r,
        n_cases=n,
        fom=foms[0].fom,
        notes=notes,
    )


@dataclass
class ModelVsReadersResult:
    """The model's figure of merit minus the readers', readers and cases random.

    Attributes
    ----------
    model : the model's figure of merit; readers : (r,) each reader's; readers_mean.
    difference : model - readers_mean; std_err, df (Hillis ``ddf_H_single``), ci.
    t : (difference + margin) / std_err; p_noninferiority : one-sided p of
        H0 "model worse than the readers by margin or more"; p_two_sided : of
        H0 "difference = 0".
    ms_r, cov2 : the readers' mean square of the differences and their jackknife
        covariance between readers.
    margin, level, n_readers, n_cases, fom.
    """

    model: float
    readers: np.ndarray
    readers_mean: float
    difference: float
    std_err: float
    df: float
    ci: tuple[float, float]
    t: float
    p_noninferiority: float
    p_two_sided: float
    ms_r: float
    cov2: float
    margin: float
    level: float
    n_readers: int
    n_cases: int
    fom: str

    def to_json(self) -> dict[str, Any]:
        def f(v):
            return None if not math.isfinite(v) else float(v)

        return {
            "method": (
                "single-modality Obuchowski-Rockette on model - reader differences, "
                "Hillis ddf (readers and cases random)"
            ),
            "fom": self.fom,
            "model": f(self.model),
            "readers": self.readers.tolist(),
            "readers_mean": f(self.readers_mean),
            "difference": f(self.difference),
            "std_err": f(self.std_err),
            "df": f(self.df),
            "ci": [f(self.ci[0]), f(self.ci[1])],
            "level": self.level,
            "margin": self.margin,
            "t": f(self.t),
            "p_noninferiority": f(self.p_noninferiority),
            "p_two_sided": f(self.p_two_sided),
            "n_readers": self.n_readers,
            "n_cases": self.n_cases,
        }


def model_vs_readers(
    model_scores: ArrayLike,
    reader_scores: ArrayLike,
    truth: ArrayLike,
    fom: Fom = "auc",
    margin: float = 0.0,
    level: float = 0.95,
) -> ModelVsReadersResult:
    r"""Is the model at least as accurate as the readers? Readers and cases random.

    With :math:`D_j = \hat\theta_{model} - \hat\theta_j` for each of the r readers (the
    same cases), the single-modality Obuchowski-Rockette analysis of Hillis (2007) on
    the :math:`D_j`: :math:`\bar D`, :math:`MS(R) = \sum_j (D_j - \bar D)^2/(r-1)`,
    :math:`\widehat{Cov}_2` the mean jackknife covariance of :math:`D_j, D_{j'}`
    (:math:`j \ne j'`), standard error :math:`\sqrt{[MS(R) + r\max(Cov_2, 0)]/r}` on
    :math:`\mathrm{ddf}_{H,single} = [MS(R) + r \max(Cov_2, 0)]^2/(MS(R)^2/(r-1))`.
    This equals the two-modality OR-Hillis analysis in which the model is a second
    modality read identically by every reader (its Cov2 - Cov3 is half this Cov2).
    Non-inferiority: :math:`H_0: \theta_{model} - \bar\theta_{readers} \le -\delta`
    against :math:`> -\delta`, :math:`t = (\bar D + \delta)/SE`, one-sided p from
    :math:`t_{\mathrm{ddf}}`; ``margin`` = :math:`\delta` (0: "at least as accurate").

    Parameters
    ----------
    model_scores : array-like of shape (n_cases,)
        The model's score (AUC) or predicted class (accuracy) per case.
    reader_scores : array-like of shape (n_cases, n_readers)
        Each reader's ordinal rating or confidence (AUC) or call (accuracy), every
        reader on every case.
    truth : array-like of shape (n_cases,)
    fom : {"auc", "accuracy"}, default "auc"
    margin : float, default 0.0
        Non-inferiority margin in figure-of-merit units (e.g. 0.05 AUC).
    level : float, default 0.95
        Level of the two-sided interval of the difference.

    Returns
    -------
    ModelVsReadersResult

    References
    ----------
    Hillis (2007), Stat. Med. 26, 596-619 (single-test inference, ``ddf_H_single``);
    Obuchowski & Rockette (1995); D. P. Chakraborty (2017), Observer Performance
    Methods for Diagnostic Imaging, CRC Press, ch. 22 (CAD vs radiologists,
    "1T-RRRC"). The single-modality machinery reproduces OR-DBM MRMC 2.51's
    single-treatment intervals on the Van Dyke data (``tests/test_mrmc.py``).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> truth = np.r_[np.zeros(100, int), np.ones(100, int)]
    >>> readers = truth[:, None] * 1.0 + rng.normal(0, 1, (200, 5))
    >>> model = truth * 2.0 + rng.normal(0, 1, 200)
    >>> res = model_vs_readers(model, readers, truth, margin=0.05)
    >>> round(res.difference, 3), res.p_noninferiority < 0.05
    (0.175, True)
    """
    level = check_level(level)
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not margin >= 0:
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    rs = np.asarray(reader_scores)
    ms = np.asarray(model_scores)
    if rs.ndim != 2:
        raise ValueError(f"reader_scores must be 2-D (n_cases, n_readers); got shape {rs.shape}")
    if ms.ndim != 1 or len(ms) != rs.shape[0]:
        raise ValueError(
            f"model_scores must be 1-D with one entry per case ({rs.shape[0]}); "
            f"got shape {ms.shape}"
        )
    if rs.shape[1] < 2:
        raise ValueError(
            f"reader_scores needs at least two readers (random readers); got {rs.shape[1]}"
        )
    fr = figure_of_merit(rs, truth, fom)
    fm = figure_of_merit(ms[:, None], truth, fom)
    d = fm.value[0] - fr.value
    jk = fm.jackknife[0][None, :] - fr.jackknife
    s = _single(d, _jackknife_cov(jk), level)
    r = len(d)
    se = s["std_err"]
    df = s["df"]
    tt = (s["estimate"] + margin) / se if se > 0 else math.nan
    dist = stats.t(df) if math.isfinite(df) else stats.norm()
    p_ni = float(dist.sf(tt)) if math.isfinite(tt) else math.nan
    t0 = s["estimate"] / se if se > 0 else math.nan
    p2 = float(2 * dist.sf(abs(t0))) if math.isfinite(t0) else math.nan
    return ModelVsReadersResult(
        model=float(fm.value[0]),
        readers=fr.value,
        readers_mean=float(fr.value.mean()),
        difference=s["estimate"],
        std_err=se,
        df=df,
        ci=s["ci"],
        t=tt,
        p_noninferiority=p_ni,
        p_two_sided=p2,
        ms_r=s["ms_r"],
        cov2=s["cov2"],
        margin=float(margin),
        level=level,
        n_readers=r,
        n_cases=fr.n_cases,
        fom=fom,
    )


# ---------------------------------------------------------------- agreement, raters random

#: statistics :func:`rater_subject_variance` and :func:`two_way_bootstrap` compute
AGREEMENT_STATISTICS = (
    "fleiss_kappa",
    "gwet_ac1",
    "percent_agreement",
    "krippendorff_alpha_nominal",
    "krippendorff_alpha_ordinal",
    "krippendorff_alpha_interval",
)


def _onehot(x: np.ndarray, K: int) -> np.ndarray:
    return (x[:, :, None] == np.arange(K)).astype(np.float64)  # (n, R, K), 0 if missing


def _weighted_agreement(Y: np.ndarray, statistic: str, u: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The statistic with item weights ``u`` (B, n) and reader weights ``w`` (B, R).

    A reader of weight w stands for w copies of that reader (a bootstrap draw); pairs
    of copies of one reader are not pairs of raters, so the agreement of item i is
    over ordered pairs of distinct readers:
    ``sum_k (C_ik^2 - S_ik) / (W_i^2 - S_i)``, with ``C_ik = sum_j w_j y_ijk``,
    ``S_ik = sum_j w_j^2 y_ijk``, ``W_i = sum_k C_ik``. With 0/1 weights this is the
    package's generalised Fleiss p_a; ``pi_k`` is the mean over items with a read of
    ``C_ik / W_i``.
    """
    K = Y.shape[2]
    C = np.einsum("nrk,br->bnk", Y, w)
    S = np.einsum("nrk,br->bnk", Y, w * w)
    W = C.sum(axis=2)
    pairs = W * W - S.sum(axis=2)
    if statistic.startswith("krippendorff_alpha_"):
        return _weighted_alpha(C, S, W, pairs, u, statistic.rsplit("_", 1)[1])
    agree = (C * C - S).sum(axis=2)
    ok2 = pairs > 0
    pa_i = np.where(ok2, agree / np.where(ok2, pairs, 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pa = (u * pa_i).sum(axis=1) / (u * ok2).sum(axis=1)
        if statistic == "percent_agreement":
            return pa
        ok1 = W > 0
        share = np.where(ok1[..., None], C / np.where(ok1, W, 1)[..., None], 0.0)
        pi = (u[..., None] * share).sum(axis=1) / (u * ok1).sum(axis=1)[:, None]
        if statistic == "fleiss_kappa":
            pe = (pi**2).sum(axis=1)
        else:  # gwet_ac1
            pe = (pi * (1 - pi)).sum(axis=1) / (K - 1)
        out = (pa - pe) / (1 - pe)
    return np.where(np.isfinite(out), out, np.nan)


def _weighted_alpha(C, S, W, pairs, u, level: str) -> np.ndarray:
    """Krippendorff's alpha (class codes as values) with item and reader weights.

    Unit u's ordered pairs of distinct readers (i, j) each add ``w_i w_j W_u / (W_u^2 -
    sum_j w_j^2)`` to the coincidence of their two values, so a unit still contributes
    ``W_u`` pairable values; with 0/1 weights that is Krippendorff's ``1 / (m_u - 1)``
    per pair and the coincidences, ``n_c``, n and alpha are his (2011). A drawn reader's
    copies are not pairs, as in ``_weighted_agreement``.
    """
    ok2 = pairs > 0
    scale = u * np.where(ok2, W / np.where(ok2, pairs, 1), 0.0)  # (B, n)
    o = np.matmul((scale[..., None] * C).transpose(0, 2, 1), C)  # (B, K, K)
    K = C.shape[2]
    o[:, np.arange(K), np.arange(K)] -= np.einsum("bn,bnk->bk", scale, S)
    nc = o.sum(axis=2)
    n = nc.sum(axis=1)
    c = np.arange(K, dtype=np.float64)
    if level == "nominal":
        d = np.broadcast_to(1.0 - np.eye(K), o.shape)
    elif level == "interval":
        d = np.broadcast_to((c[:, None] - c[None, :]) ** 2, o.shape)
    else:  # ordinal: mid-ranks of the pairable values' marginal frequencies
        M = np.cumsum(nc, axis=1) - nc / 2
        d = (M[:, :, None] - M[:, None, :]) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        do = (o * d).sum(axis=(1, 2))
        de = (nc[:, :, None] * nc[:, None, :] * d).sum(axis=(1, 2))
        out = 1.0 - (n - 1) * do / de
    return np.where(np.isfinite(out), out, np.nan)


def _agreement_input(ratings, n_classes, statistic) -> tuple[np.ndarray, int]:
    K = check_n_classes(n_classes, 2 if statistic == "gwet_ac1" else 1)
    x = validate_ratings(ratings, K, min_readers=2, floats=False)
    if statistic not in AGREEMENT_STATISTICS:
        raise ValueError(f"statistic must be one of {AGREEMENT_STATISTICS}, got {statistic!r}")
    if not ((x >= 0).sum(axis=1) >= 2).any():
        raise ValueError("ratings: no item has at least two reads, so there is no agreement")
    return x, K


def rater_subject_variance(
    ratings: ArrayLike,
    n_classes: int,
    statistic: str = "gwet_ac1",
    *,
    groups: ArrayLike | None = None,
    level: float = 0.95,
    subject_fraction: float = 0.0,
    rater_fraction: float = 0.0,
) -> dict[str, Any]:
    r"""Variance of an agreement coefficient over the sampling of subjects *and* raters.

    Gwet (2008; 2014, ch. 5) writes the variance of a coefficient :math:`\hat\gamma`
    computed on n subjects rated by r raters, both sampled, as the sum of a subject
    part and a rater part,
    :math:`v(\hat\gamma) = (1 - f_s) v_s + (1 - f_r) v_r`, with :math:`f_s, f_r` the
    sampling fractions of the subject and rater populations (0 for populations much
    larger than the study). Here each part is the delete-one jackknife:

    .. math:: v_s = \frac{n-1}{n} \sum_{i=1}^n (\hat\gamma_{(i)} - \hat\gamma_{(\cdot)})^2,
              \qquad v_r = \frac{r-1}{r} \sum_{j=1}^r (\hat\gamma_{(j)} -
              \hat\gamma_{(\cdot)})^2

    deleting one subject (or one patient with ``groups``), resp. one rater, and the
    interval is :math:`\hat\gamma \pm z_{(1+level)/2} \sqrt{v}`. Gwet derives the
    subject part by linearisation instead; the jackknife estimates the same quantity
    and handles missing reads (the package's generalised coefficients). ``v_s`` alone
    is the usual, raters-fixed variance.

    Parameters
    ----------
    ratings : array-like of shape (n_items, n_readers)
        Class codes, ``-1`` not read; at least three readers for a rater part.
    n_classes : int
    statistic : {"fleiss_kappa", "gwet_ac1", "percent_agreement", "krippendorff_alpha_nominal",
        "krippendorff_alpha_ordinal", "krippendorff_alpha_interval"}, default "gwet_ac1"
        Alpha takes the class codes as its values (ordinal and interval: codes in
        scale order).
    groups : array-like of shape (n_items,), optional, keyword-only
        Patient ids: a patient's items are deleted together.
    level : float, default 0.95
    subject_fraction, rater_fraction : float in [0, 1), default 0
        Finite-population fractions :math:`f_s, f_r`.

    Returns
    -------
    dict
        ``value``, ``var_subjects``, ``var_raters``, ``var_total``, ``se_subjects``,
        ``se_total``, ``ci_subjects`` (raters fixed), ``ci`` (raters and subjects
        random), ``n_subjects`` (units deleted), ``n_raters``, ``statistic``,
        ``level``, ``note``. ``var_raters`` is None (and ``ci`` the subjects-only one,
        with a note) with fewer than three raters: deleting one of two leaves no pair.

    References
    ----------
    K. L. Gwet (2008). Variance estimation of nominal-scale inter-rater reliability with
    random selection of raters. Psychometrika 73(3), 407-430.
    K. L. Gwet (2014). Handbook of Inter-Rater Reliability, 4th ed., ch. 5.
    B. Efron and C. Stein (1981). The jackknife estimate of variance. Annals of
    Statistics 9(3), 586-596.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.integers(0, 3, 200)
    >>> r = np.where(rng.random((200, 5)) < 0.7, truth[:, None], rng.integers(0, 3, (200, 5)))
    >>> v = rater_subject_variance(r, 3)
    >>> round(v["value"], 3), v["se_total"] > v["se_subjects"]
    (0.487, True)
    """
    x, K = _agreement_input(ratings, n_classes, statistic)
    level = check_level(level)
    for name, f in (("subject_fraction", subject_fraction), ("rater_fraction", rater_fraction)):
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0 <= f < 1:
            raise ValueError(f"{name} must be in [0, 1), got {f!r}")
    n, R = x.shape
    Y = _onehot(x, K)
    g = group_codes(groups, n)
    if g is None:
        g = np.arange(n)
    G = int(g.max()) + 1
    ones_u, ones_w = np.ones((1, n)), np.ones((1, R))
    value = float(_weighted_agreement(Y, statistic, ones_u, ones_w)[0])
    if not math.isfinite(value):
        raise ValueError(f"{statistic} is undefined on these ratings (chance agreement 1)")
    # delete-one subject (patient): one weight row per deleted unit
    U = np.ones((G, n))
    U[g, np.arange(n)] = 0.0
    blocks = [
        _weighted_agreement(Y, statistic, U[a : a + 256], np.ones((min(256, G - a), R)))
        for a in range(0, G, 256)
    ]
    th_s = np.concatenate(blocks)
    th_s = th_s[np.isfinite(th_s)]
    m = len(th_s)
    var_s = (m - 1) / m * float(((th_s - th_s.mean()) ** 2).sum()) if m > 1 else math.nan
    var_s *= 1 - subject_fraction
    z = stats.norm.ppf((1 + level) / 2)
    out: dict[str, Any] = {
        "statistic": statistic,
        "value": value,
        "level": level,
        "n_subjects": G,
        "n_raters": R,
        "var_subjects": var_s,
        "se_subjects": math.sqrt(var_s),
        "ci_subjects": (value - z * math.sqrt(var_s), value + z * math.sqrt(var_s)),
    }
    if R < 3:
        out.update(
            var_raters=None,
            var_total=var_s,
            se_total=math.sqrt(var_s),
            ci=out["ci_subjects"],
            note="two raters: no rater part (deleting one leaves no pair); raters fixed",
        )
        return out
    Wd = 1.0 - np.eye(R)
    th_r = _weighted_agreement(Y, statistic, np.ones((R, n)), Wd)
    th_r = th_r[np.isfinite(th_r)]
    var_r = (len(th_r) - 1) / len(th_r) * float(((th_r - th_r.mean()) ** 2).sum())
    var_r *= 1 - rater_fraction
    total = var_s + var_r
    se = math.sqrt(total)
    out.update(
        var_raters=var_r,
        var_total=total,
        se_total=se,
        ci=(value - z * se, value + z * se),
        note="subjects and raters random (jackknife over each)",
    )
    return out


def two_way_bootstrap(
    ratings: ArrayLike,
    n_classes: int,
    statistic: str = "gwet_ac1",
    *,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | np.random.Generator = 0,
    resample: Literal["both", "subjects", "raters"] = "both",
) -> dict[str, Any]:
    """Percentile bootstrap of an agreement coefficient drawing patients and readers.

    Each replicate draws n subjects (or G patients with ``groups``, a patient's items
    together) and, independently, r readers, both with replacement, and recomputes the
    coefficient on the drawn panel. A reader drawn twice stands for two readers with
    identical calls, which would agree with each other perfectly; the pairs of its two
    copies are therefore not counted as pairs of raters (agreement is over pairs of
    distinct readers, see ``_weighted_agreement``), so the coefficient of a replicate
    is the coefficient of the distinct readers drawn, weighted by how often each was
    drawn. The interval is the (1 - level)/2 and (1 + level)/2 percentiles of the
    defined replicates. ``resample="subjects"`` gives the usual case-only bootstrap
    (the package's :func:`multireader.stats.agreement.bootstrap_ci` draws the same way),
    ``"raters"`` the readers only.

    Parameters
    ----------
    ratings : array-like of shape (n_items, n_readers)
    n_classes : int
    statistic : {"fleiss_kappa", "gwet_ac1", "percent_agreement", "krippendorff_alpha_nominal",
        "krippendorff_alpha_ordinal", "krippendorff_alpha_interval"}, default "gwet_ac1"
        Alpha takes the class codes as its values (ordinal and interval: codes in
        scale order).
    groups : array-like, optional, keyword-only
    n_boot : int, default 1000
    level : float, default 0.95
    seed : int or Generator, default 0
    resample : {"both", "subjects", "raters"}, default "both"

    Returns
    -------
    dict
        ``value``, ``ci`` (None when no replicate is defined), ``n_valid``, ``n_boot``,
        ``level``, ``seed``, ``resample``, ``unit`` ("item" or "group"), ``n_units``,
        ``n_raters``, ``statistic``, ``replicates`` (ndarray).

    References
    ----------
    Efron & Tibshirani (1993), ch. 13; Davison & Hinkley (1997), sec. 3.8 (clusters).
    Gwet (2008), Psychometrika 73(3), 407-430 (raters as a sample).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.integers(0, 3, 200)
    >>> r = np.where(rng.random((200, 5)) < 0.7, truth[:, None], rng.integers(0, 3, (200, 5)))
    >>> b = two_way_bootstrap(r, 3, n_boot=300)
    >>> round(b["value"], 3), b["ci"][0] < b["value"] < b["ci"][1]
    (0.487, True)
    """
    x, K = _agreement_input(ratings, n_classes, statistic)
    n_boot = check_n_boot(n_boot)
    level = check_level(level)
    if resample not in ("both", "subjects", "raters"):
        raise ValueError(f"resample must be 'both', 'subjects' or 'raters', got {resample!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n, R = x.shape
    Y = _onehot(x, K)
    g = group_codes(groups, n)
    G = n if g is None else int(g.max()) + 1
    value = float(_weighted_agreement(Y, statistic, np.ones((1, n)), np.ones((1, R)))[0])
    reps = []
    chunk = max(1, min(n_boot, 2_000_000 // max(n * R * K, 1)))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        if resample in ("both", "subjects"):
            cu = rng.multinomial(G, np.full(G, 1 / G), size=b).astype(float)
            u = cu if g is None else cu[:, g]
        else:
            u = np.ones((b, n))
        if resample in ("both", "raters"):
            w = rng.multinomial(R, np.full(R, 1 / R), size=b).astype(float)
        else:
            w = np.ones((b, R))
        reps.append(_weighted_agreement(Y, statistic, u, w))
        done += b
    rep = np.concatenate(reps) if reps else np.zeros(0)
    ok = np.isfinite(rep)
    ci = None
    if ok.any():
        a = (1 - level) / 2
        lo, hi = np.quantile(rep[ok], [a, 1 - a])
        ci = (float(lo), float(hi))
    return {
        "statistic": statistic,
        "value": value,
        "ci": ci,
        "n_valid": int(ok.sum()),
        "n_boot": n_boot,
        "level": level,
        "seed": seed if not isinstance(seed, np.random.Generator) else None,
        "resample": resample,
        "unit": "item" if g is None else "group",
        "n_units": G,
        "n_raters": R,
        "replicates": rep,
    }
