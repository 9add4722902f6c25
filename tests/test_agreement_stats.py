"""Agreement statistics against published worked examples and peer implementations.

Published data are typed in here; peers (scikit-learn, statsmodels, krippendorff,
pingouin) are only used in tests, never imported by ``multireader``.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from multireader.stats import agreement as A

nan = np.nan

# Fleiss (1971), Table 1: 30 patients, 6 psychiatrists, 5 diagnoses (1 depression,
# 2 personality disorder, 3 schizophrenia, 4 neurosis, 5 other), one row per patient.
FLEISS_1971 = (
    np.array(
        [
            [4, 4, 4, 4, 4, 4],
            [2, 2, 2, 5, 5, 5],
            [2, 3, 3, 3, 3, 5],
            [5, 5, 5, 5, 5, 5],
            [2, 2, 2, 4, 4, 4],
            [1, 1, 3, 3, 3, 3],
            [3, 3, 3, 3, 5, 5],
            [1, 1, 3, 3, 3, 4],
            [1, 1, 4, 4, 4, 4],
            [5, 5, 5, 5, 5, 5],
            [1, 4, 4, 4, 4, 4],
            [1, 2, 4, 4, 4, 4],
            [2, 2, 2, 3, 3, 3],
            [1, 4, 4, 4, 4, 4],
            [2, 2, 4, 4, 4, 5],
            [3, 3, 3, 3, 3, 5],
            [1, 1, 1, 4, 5, 5],
            [1, 1, 1, 1, 1, 2],
            [2, 2, 4, 4, 4, 4],
            [1, 3, 3, 5, 5, 5],
            [5, 5, 5, 5, 5, 5],
            [2, 4, 4, 4, 4, 4],
            [2, 2, 4, 5, 5, 5],
            [1, 1, 4, 4, 4, 4],
            [1, 4, 4, 4, 4, 5],
            [2, 2, 2, 2, 2, 4],
            [1, 1, 1, 1, 5, 5],
            [2, 2, 4, 4, 4, 4],
            [1, 3, 3, 3, 3, 3],
            [5, 5, 5, 5, 5, 5],
        ]
    )
    - 1
)

# Wikipedia "Fleiss' kappa" worked example: 10 subjects, 14 raters, counts per category.
WIKI_COUNTS = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", sec. C: 4 observers
# (columns A-D) x 12 units, values 1-5, missing = nan.
KRIPP_2011 = np.array(
    [
        [1, 1, nan, 1],
        [2, 2, 3, 2],
        [3, 3, 3, 3],
        [3, 3, 3, 3],
        [2, 2, 2, 2],
        [1, 2, 3, 4],
        [4, 4, 4, 4],
        [1, 1, 2, 1],
        [2, 2, 2, 2],
        [nan, 5, 5, 5],
        [nan, nan, 1, 1],
        [nan, 3, nan, nan],
    ]
)
KRIPP_CODES = np.where(np.isnan(KRIPP_2011), -1, KRIPP_2011 - 1).astype(int)

# Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
    dtype=float,
)

# Bland & Altman (1986), Table 1: PEFR (l/min) by Wright and mini Wright meters, first
# reading of each, 17 subjects.
PEFR_WRIGHT = np.array(
    [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427.0]
)
PEFR_MINI = np.array(
    [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451.0]
)

# irr's `anxiety` data (Fleiss' example via the R package irr), raters 2 and 3; the
# observed levels are 1, 2, 3, 4, 6 (irr's weights use level ranks).
ANXIETY_R2 = [3, 6, 4, 6, 2, 4, 2, 4, 3, 3, 2, 3, 3, 3, 2, 2, 1, 3, 3, 4]
ANXIETY_R3 = [2, 1, 4, 4, 3, 2, 1, 6, 1, 1, 1, 2, 3, 3, 1, 1, 3, 3, 2, 2]


def counts_to_ratings(counts: np.ndarray) -> np.ndarray:
    return np.array([np.repeat(np.arange(counts.shape[1]), row) for row in counts])


def random_ratings(
    seed: int, n: int = 300, r: int = 4, k: int = 4, p_missing: float = 0.2
) -> np.ndarray:
    """Correlated reads (a latent class plus noise) with missing reads."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    noise = rng.integers(-1, 2, (n, r))
    x = np.clip(truth[:, None] + noise * (rng.random((n, r)) < 0.4), 0, k - 1)
    x[rng.random((n, r)) < p_missing] = -1
    return x


# ------------------------------------------------------------- published worked examples


def test_fleiss_1971_kappa_and_per_category_kappas():
    assert A.fleiss_kappa(FLEISS_1971, 5) == pytest.approx(0.430, abs=5e-4)
    # Fleiss (1971), p. 381: kappa_j for the five diagnoses
    assert_allclose(
        A.fleiss_kappa_per_class(FLEISS_1971, 5), [0.245, 0.245, 0.520, 0.471, 0.566], atol=5e-4
    )


def test_fleiss_wikipedia_example():
    assert A.fleiss_kappa(counts_to_ratings(WIKI_COUNTS), 5) == pytest.approx(0.210, abs=5e-4)


@pytest.mark.parametrize(
    "level,published",
    [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)],
)
def test_krippendorff_2011_example(level, published):
    assert A.krippendorff_alpha(KRIPP_2011, level) == pytest.approx(published, abs=5e-4)
    # integer codes with -1 = missing give the same (alpha is invariant to a shift of
    # the values at every level except ratio)
    if level != "ratio":
        assert A.krippendorff_alpha(KRIPP_CODES, level) == pytest.approx(published, abs=5e-4)


def test_weighted_kappa_sas_example():
    # statsmodels' SAS reference (PROC FREQ, AGREE): 3x3 table, kappa 0.4842,
    # weighted kappa with weights (0, 1, 2) = linear 0.4701
    table = np.array([[0, 4, 1], [0, 8, 0], [0, 1, 5]])
    pairs = np.array([(i, j) for i in range(3) for j in range(3) for _ in range(table[i, j])])
    assert A.cohen_kappa(pairs[:, 0], pairs[:, 1], 3) == pytest.approx(0.4842, abs=5e-5)
    assert A.cohen_kappa(pairs[:, 0], pairs[:, 1], 3, "linear") == pytest.approx(0.4701, abs=5e-5)


def test_weighted_kappa_irr_anxiety_example():
    # R irr::kappa2(anxiety[, 2:3]) with weights unweighted / "equal" / "squared"
    level = {1: 0, 2: 1, 3: 2, 4: 3, 6: 4}
    a = np.array([level[v] for v in ANXIETY_R2])
    b = np.array([level[v] for v in ANXIETY_R3])
    assert A.cohen_kappa(a, b, 5) == pytest.approx(-0.006289308, abs=1e-6)
    assert A.cohen_kappa(a, b, 5, "linear") == pytest.approx(0.1459075, abs=1e-6)
    assert A.cohen_kappa(a, b, 5, "quadratic") == pytest.approx(0.2520325, abs=1e-6)


def test_shrout_fleiss_1979_table_2():
    r = A.icc(SHROUT_FLEISS)
    published = {
        "ICC(1,1)": 0.17,
        "ICC(2,1)": 0.29,
        "ICC(3,1)": 0.71,
        "ICC(1,k)": 0.44,
        "ICC(2,k)": 0.62,
        "ICC(3,k)": 0.91,
    }
    for form, v in published.items():
        assert round(r.value[form], 2) == v, form
    # three decimals from the published mean squares (BMS 11.24, WMS 6.26, JMS 32.49,
    # EMS 1.02): ICC(3,1) = (11.24 - 1.02) / (11.24 + 3 * 1.02) = 0.7147
    assert r.value["ICC(3,1)"] == pytest.approx(0.7148, abs=5e-4)
    assert r.mean_squares["MSR"] == pytest.approx(11.24, abs=5e-3)
    assert r.mean_squares["MSW"] == pytest.approx(6.26, abs=5e-3)
    assert r.mean_squares["MSC"] == pytest.approx(32.49, abs=5e-3)
    assert r.mean_squares["MSE"] == pytest.approx(1.02, abs=5e-3)
    assert (r.n_used, r.n_dropped, r.n_readers) == (6, 0, 4)


def test_gwet_ac1_irrcac_example():
    # irrCAC::gwet.ac1.raw(cac.raw4raters) (Gwet 2014 handbook data, = Krippendorff's
    # 12 x 4 table): pa 0.8181818, pe 0.1903212, AC1 0.77544;
    # fleiss.kappa.raw: 0.76117
    assert A.percent_agreement(KRIPP_CODES, 5) == pytest.approx(0.8181818, abs=1e-6)
    assert A.gwet_ac(KRIPP_CODES, 5) == pytest.approx(0.77544, abs=5e-5)
    pe = (0.8181818 - 0.77544) / (1 - 0.77544)
    assert pe == pytest.approx(0.1903212, abs=1e-4)
    assert A.fleiss_kappa(KRIPP_CODES, 5) == pytest.approx(0.76117, abs=5e-5)


def test_bland_altman_1986_pefr():
    # published: mean difference -2.1, SD 38.8, limits (mean -/+ 2 SD) -79.7 to 75.4
    level = 2 * 0.9772498680518208 - 1  # z = 2 exactly, as in the paper
    r = A.bland_altman(PEFR_WRIGHT, PEFR_MINI, level=level)
    assert round(r["bias"], 1) == -2.1
    assert round(r["sd"], 1) == 38.8
    # the paper rounds bias and SD before forming the limits (-2.1 -/+ 2 * 38.8)
    assert r["loa_low"] == pytest.approx(-79.7, abs=0.06)
    assert r["loa_high"] == pytest.approx(75.4, abs=0.06)
    assert r["n"] == 17
    # the limit's SE is ~ sqrt(3 s^2 / n) in the paper (16.3), here
    # s sqrt(1/n + z^2 / (2 (n - 1))) with z = 2 (Bland & Altman 1999, sec. 4.2)
    t = stats.t.ppf(1 - (1 - level) / 2, 16)
    se = (r["loa_low_ci"][1] - r["loa_low_ci"][0]) / 2 / t
    assert se == pytest.approx(math.sqrt(3 * r["sd"] ** 2 / 17), rel=0.03)
    assert se == pytest.approx(r["sd"] * math.sqrt(1 / 17 + 4 / 32), rel=1e-9)
    assert r["bias_ci"][1] - r["bias"] == pytest.approx(t * r["sd"] / math.sqrt(17))


def test_specific_agreement_two_readers_is_positive_and_negative_agreement():
    # 2x2 table a=40, b=5, c=10, d=45: positive 2a/(2a+b+c), negative 2d/(2d+b+c)
    a = np.array([1] * 40 + [1] * 5 + [0] * 10 + [0] * 45)
    b = np.array([1] * 40 + [0] * 5 + [1] * 10 + [0] * 45)
    ps = A.specific_agreement(np.stack([a, b], 1), 2)
    assert_allclose(ps, [90 / 105, 80 / 95])


# ---------------------------------------------------------------- peers on random data


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_sklearn_with_missing(seed, weights):
    from sklearn.metrics import cohen_kappa_score

    x = random_ratings(seed, r=3, k=5)
    both = (x[:, 0] >= 0) & (x[:, 1] >= 0)
    ref = cohen_kappa_score(x[both, 0], x[both, 1], labels=range(5), weights=weights)
    assert A.cohen_kappa(x[:, 0], x[:, 1], 5, weights) == pytest.approx(ref, abs=1e-12)
    k, n = A.pairwise_cohen_kappa(x, 5, weights)
    for a in range(3):
        for b in range(3):
            m = (x[:, a] >= 0) & (x[:, b] >= 0)
            assert n[a, b] == m.sum()
            if a != b:
                ref = cohen_kappa_score(x[m, a], x[m, b], labels=range(5), weights=weights)
                assert k[a, b] == pytest.approx(ref, abs=1e-12)
    assert_allclose(np.diag(k), 1.0)


@pytest.mark.parametrize("wt", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_statsmodels(wt):
    from statsmodels.stats.inter_rater import cohens_kappa

    x = random_ratings(3, r=2, k=4)
    both = (x >= 0).all(1)
    table = np.zeros((4, 4))
    np.add.at(table, (x[both, 0], x[both, 1]), 1)
    ref = cohens_kappa(table, wt=wt, return_results=False)
    assert A.cohen_kappa(x[:, 0], x[:, 1], 4, wt) == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fleiss_kappa_matches_statsmodels_on_complete_data(seed):
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    x = random_ratings(seed, n=500, r=5, k=4, p_missing=0.0)
    table, _ = aggregate_raters(x, n_cat=4)
    assert A.fleiss_kappa(x, 4) == pytest.approx(fleiss_kappa(table), abs=1e-12)
    # dichotomised Fleiss kappa is the per-class kappa_j
    for j in range(4):
        t2, _ = aggregate_raters((x == j).astype(int), n_cat=2)
        assert A.fleiss_kappa_per_class(x, 4)[j] == pytest.approx(fleiss_kappa(t2), abs=1e-12)


def fleiss_gwet_loops(x: np.ndarray, k: int) -> float:
    """Gwet's generalised Fleiss kappa by plain loops (irrCAC fleiss.kappa.raw)."""
    rows = [[v for v in row if v >= 0] for row in x]
    rows = [r for r in rows if r]
    pa_terms = []
    for r in rows:
        if len(r) >= 2:
            pa_terms.append(
                sum(r.count(c) * (r.count(c) - 1) for c in range(k)) / (len(r) * (len(r) - 1))
            )
    pi = [sum(r.count(c) / len(r) for r in rows) / len(rows) for c in range(k)]
    pa, pe = sum(pa_terms) / len(pa_terms), sum(p * p for p in pi)
    return (pa - pe) / (1 - pe)


@pytest.mark.parametrize("r", [3, 5, 9])  # 9 readers: the class-count path, not reader pairs
def test_fleiss_kappa_with_missing_matches_loop_definition(r):
    x = random_ratings(5, n=200, r=r, k=4, p_missing=0.35)
    assert A.fleiss_kappa(x, 4) == pytest.approx(fleiss_gwet_loops(x, 4), abs=1e-12)
    assert A.gwet_ac(x, 4) == pytest.approx(gwet_loops(x, 4, None), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_krippendorff_matches_package_with_nan(seed, level):
    import krippendorff

    rng = np.random.default_rng(seed)
    codes = random_ratings(seed, n=400, r=5, k=6, p_missing=0.3)
    x = np.where(codes >= 0, codes + 1.0, nan)
    ref = krippendorff.alpha(x.T, level_of_measurement=level)
    assert A.krippendorff_alpha(x, level) == pytest.approx(ref, abs=1e-10)
    # continuous values with many distinct values
    y = rng.gamma(3.0, 2.0, (150, 4)) + rng.gamma(3.0, 2.0, (150, 1))
    y = np.round(y, 1)
    y[rng.random(y.shape) < 0.25] = nan
    ref = krippendorff.alpha(y.T, level_of_measurement=level)
    assert A.krippendorff_alpha(y, level) == pytest.approx(ref, abs=1e-10)


def test_icc_matches_pingouin_with_missing_items_dropped():
    import pandas as pd
    import pingouin

    rng = np.random.default_rng(4)
    y = rng.normal(0, 2, (40, 1)) + rng.normal(0, 1, (40, 3)) + np.array([0, 0.5, 1.0])
    y[[3, 17, 29], [0, 2, 1]] = nan
    complete = np.isfinite(y).all(1)
    long = pd.DataFrame(
        [(i, j, y[i, j]) for i in np.flatnonzero(complete) for j in range(3)],
        columns=["t", "r", "v"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pingouin.intraclass_corr(long, targets="t", raters="r", ratings="v")
    # pingouin names McGraw & Wong's forms: A = absolute agreement (Shrout & Fleiss
    # case 2), C = consistency (case 3)
    names = {
        "ICC(1,1)": "ICC(1,1)",
        "ICC(A,1)": "ICC(2,1)",
        "ICC(C,1)": "ICC(3,1)",
        "ICC(1,k)": "ICC(1,k)",
        "ICC(A,k)": "ICC(2,k)",
        "ICC(C,k)": "ICC(3,k)",
    }
    r = A.icc(y)
    assert (r.n_used, r.n_dropped) == (37, 3)
    assert len(ref) == 6
    for _, row in ref.iterrows():
        form = names[row["Type"]]
        assert r.value[form] == pytest.approx(row["ICC"], abs=1e-10)
        # pingouin rounds its interval to two decimals
        assert_allclose(r.ci[form], row["CI95"], atol=0.0051)


def gwet_loops(x: np.ndarray, k: int, weights: str | None) -> float:
    """Gwet's AC1/AC2 by plain loops, straight from the handbook's formulas."""
    w = [
        [
            1.0
            if weights is None and a == b
            else 0.0
            if weights is None
            else 1 - abs(a - b) / (k - 1)
            if weights == "linear"
            else 1 - (a - b) ** 2 / (k - 1) ** 2
            for b in range(k)
        ]
        for a in range(k)
    ]
    rows = [[v for v in row if v >= 0] for row in x]
    rows = [r for r in rows if r]
    pa_sum, n2 = 0.0, 0
    for r in rows:
        ri = len(r)
        if ri < 2:
            continue
        n2 += 1
        cnt = [r.count(c) for c in range(k)]
        s = 0.0
        for c in range(k):
            star = sum(w[c][d] * cnt[d] for d in range(k))
            s += cnt[c] * (star - 1)
        pa_sum += s / (ri * (ri - 1))
    pa = pa_sum / n2
    pi = [sum(r.count(c) / len(r) for r in rows) / len(rows) for c in range(k)]
    tw = sum(sum(row) for row in w)
    pe = tw / (k * (k - 1)) * sum(p * (1 - p) for p in pi)
    return (pa - pe) / (1 - pe)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_gwet_matches_loop_reimplementation_with_missing(seed, weights):
    x = random_ratings(seed, n=150, r=5, k=5, p_missing=0.4)
    assert A.gwet_ac(x, 5, weights) == pytest.approx(gwet_loops(x, 5, weights), abs=1e-12)


def test_percent_agreement_matches_reader_pair_loops():
    # percent agreement by loops over reader pairs
    x = random_ratings(7, n=120, r=4, k=3, p_missing=0.3)
    shares = []
    for row in x:
        v = [c for c in row if c >= 0]
        if len(v) >= 2:
            pairs = [(a, b) for i, a in enumerate(v) for b in v[i + 1 :]]
            shares.append(sum(a == b for a, b in pairs) / len(pairs))
    assert A.percent_agreement(x, 3) == pytest.approx(np.mean(shares), abs=1e-12)


def test_specific_agreement_matches_pair_count_definition():
    x = random_ratings(8, n=150, r=4, k=4, p_missing=0.3)
    num, den = np.zeros(4), np.zeros(4)
    for row in x:
        v = [c for c in row if c >= 0]
        for i, a in enumerate(v):
            for j, b in enumerate(v):
                if i != j:
                    den[a] += 1
                    num[a] += a == b
    assert_allclose(A.specific_agreement(x, 4), num / den)


def test_summary_matches_the_individual_functions():
    x = random_ratings(9, n=250, r=4, k=5, p_missing=0.25)
    s = A.categorical_summary(x, 5, ordinal=True, n_boot=50)
    o = s["overall"]
    xf = np.where(x >= 0, x.astype(float), nan)
    assert o["fleiss_kappa"]["value"] == pytest.approx(A.fleiss_kappa(x, 5))
    assert o["percent_agreement"]["value"] == pytest.approx(A.percent_agreement(x, 5))
    assert o["gwet_ac1"]["value"] == pytest.approx(A.gwet_ac(x, 5))
    assert o["gwet_ac2_quadratic"]["value"] == pytest.approx(A.gwet_ac(x, 5, "quadratic"))
    for lv in ("nominal", "ordinal", "interval"):
        assert o[f"krippendorff_alpha_{lv}"]["value"] == pytest.approx(
            A.krippendorff_alpha(xf, lv), abs=1e-12
        )
    k, n = A.pairwise_cohen_kappa(x, 5, "linear")
    assert_allclose(np.array(s["pairwise"]["cohen_kappa_linear"]["value"], float), k)
    assert s["pairwise"]["cohen_kappa"]["n"] == n.tolist()
    assert_allclose(
        [e["value"] for e in s["per_class"]["fleiss_kappa"]], A.fleiss_kappa_per_class(x, 5)
    )
    assert s["n_items"] == int(((x >= 0).sum(1) >= 2).sum())


def test_continuous_summary_matches_functions_and_peer():
    import krippendorff

    rng = np.random.default_rng(10)
    y = rng.normal(0, 2, (80, 1)) + rng.normal(0, 1, (80, 3))
    y[rng.random(y.shape) < 0.1] = nan
    s = A.continuous_summary(y, n_boot=100)
    json.dumps(s, allow_nan=False)
    ref = krippendorff.alpha(y.T, level_of_measurement="interval")
    assert s["krippendorff_alpha_interval"]["value"] == pytest.approx(ref, abs=1e-10)
    r = A.icc(y)
    assert s["icc"]["ICC(2,1)"]["value"] == pytest.approx(r.value["ICC(2,1)"])
    assert s["icc"]["ICC(2,1)"]["n"] == r.n_used
    assert s["icc_n_dropped"] == r.n_dropped > 0
    assert str(r.n_dropped) in s["icc"]["ICC(1,1)"]["note"]
    ba = s["bland_altman"]
    assert ba[0][0] is None
    ref = A.bland_altman(y[:, 0], y[:, 2])
    assert ba[0][2]["bias"] == pytest.approx(ref["bias"])
    assert ba[2][0]["bias"] == pytest.approx(-ref["bias"])


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_seeded_and_contains_the_estimate():
    x = random_ratings(11, n=400)
    r1 = A.bootstrap_ci(x, 4, "fleiss_kappa", n_boot=300, seed=3)
    r2 = A.bootstrap_ci(x, 4, "fleiss_kappa", n_boot=300, seed=3)
    r3 = A.bootstrap_ci(x, 4, "fleiss_kappa", n_boot=300, seed=4)
    assert (r1.ci_low, r1.ci_high) == (r2.ci_low, r2.ci_high)
    assert (r1.ci_low, r1.ci_high) != (r3.ci_low, r3.ci_high)
    assert r1.ci_low < r1.value < r1.ci_high
    assert r1.value == pytest.approx(A.fleiss_kappa(x, 4))
    assert r1.n_valid == 300 and r1.unit == "item"


def naive_bootstrap_sd(x: np.ndarray, k: int, n_boot: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    vals = [A.fleiss_kappa(x[rng.integers(0, len(x), len(x))], k) for _ in range(n_boot)]
    return float(np.std(vals))


@pytest.mark.parametrize("n,r", [(2000, 3), (300, 8)])
def test_reweighted_bootstrap_matches_naive_resampling(n, r):
    # both the multinomial-over-distinct-rows path (few distinct rows) and the
    # index-draw path (most rows distinct) against re-running on resampled copies
    x = random_ratings(12, n=n, r=r, k=3, p_missing=0.2)
    ours = A.bootstrap_ci(x, 3, "fleiss_kappa", n_boot=800, seed=1)
    sd = np.std(ours.replicates)
    ref = naive_bootstrap_sd(x, 3, 400, seed=2)
    assert sd == pytest.approx(ref, rel=0.15)
    assert np.mean(ours.replicates) == pytest.approx(ours.value, abs=sd / 5)


def test_group_bootstrap_is_wider_when_items_of_a_group_are_correlated():
    # 60 patients x 10 identical-looking slices: the effective sample is 60, not 600
    rng = np.random.default_rng(13)
    base = random_ratings(13, n=60, r=3, k=3, p_missing=0.0)
    x = np.repeat(base, 10, axis=0)
    groups = np.repeat(np.arange(60), 10)
    rng.shuffle(perm := np.arange(600))
    x, groups = x[perm], groups[perm]
    item = A.bootstrap_ci(x, 3, "fleiss_kappa", n_boot=500, seed=0)
    grp = A.bootstrap_ci(x, 3, "fleiss_kappa", n_boot=500, seed=0, groups=groups)
    assert grp.unit == "group" and grp.n_units == 60
    assert grp.value == pytest.approx(item.value)
    assert (grp.ci_high - grp.ci_low) > 2.0 * (item.ci_high - item.ci_low)
    # singleton groups are the item bootstrap (same distribution)
    single = A.bootstrap_ci(x, 3, "fleiss_kappa", n_boot=500, seed=5, groups=np.arange(600))
    assert np.std(single.replicates) == pytest.approx(np.std(item.replicates), rel=0.15)


def test_bootstrap_coverage_on_simulated_data():
    # readers copy the true class with p = 0.7, else one of the other two classes:
    # pair agreement p^2 + (1-p)^2 / 2 = 0.535; Fleiss kappa (0.535 - 1/3) / (2/3)
    rng = np.random.default_rng(14)
    true_pa = 0.7**2 + 0.3**2 / 2
    true_kappa = (true_pa - 1 / 3) / (2 / 3)
    hit_pa = hit_k = 0
    n_sim = 200
    for s in range(n_sim):
        t = rng.integers(0, 3, 150)
        wrong = (t[:, None] + rng.integers(1, 3, (150, 3))) % 3
        x = np.where(rng.random((150, 3)) < 0.7, t[:, None], wrong)
        res = A._categorical_bootstrap(
            x,
            3,
            ["percent_agreement", "fleiss_kappa"],
            n_boot=300,
            level=0.95,
            seed=s,
            groups=None,
        )
        pa, kp = res["percent_agreement"], res["fleiss_kappa"]
        hit_pa += pa.ci_low <= true_pa <= pa.ci_high
        hit_k += kp.ci_low <= true_kappa <= kp.ci_high
    assert 0.88 <= hit_pa / n_sim <= 0.99
    assert 0.88 <= hit_k / n_sim <= 0.99


def test_bootstrap_pairwise_and_per_class_shapes():
    x = random_ratings(15, n=200, r=3, k=4)
    r = A.bootstrap_ci(x, 4, "pairwise_cohen_kappa", n_boot=100)
    assert r.value.shape == r.ci_low.shape == (3, 3)
    assert np.all(r.ci_low <= r.value + 1e-12) and np.all(r.value <= r.ci_high + 1e-12)
    r = A.bootstrap_ci(x, 4, "specific_agreement", n_boot=100)
    assert r.value.shape == (4,)


# ------------------------------------------------------------------------- edge cases


def test_single_reader():
    x = np.array([[0], [1], [2]])
    with pytest.raises(ValueError, match="at least two readers"):
        A.fleiss_kappa(x, 3)
    with pytest.raises(ValueError, match="at least two readers"):
        A.krippendorff_alpha(x.astype(float))
    with pytest.raises(ValueError, match="at least two readers"):
        A.icc(x.astype(float))
    s = A.categorical_summary(x, 3, ordinal=True)
    json.dumps(s, allow_nan=False)
    assert s["n_items"] == 0 and s["n_readers"] == 1
    for e in s["overall"].values():
        assert e["value"] is None and e["note"] == "needs at least two readers"
    assert s["per_class"]["specific_agreement"][0]["value"] is None
    assert s["pairwise"]["cohen_kappa"]["value"] == [[1.0]]
    c = A.continuous_summary(x.astype(float))
    json.dumps(c, allow_nan=False)
    assert c["icc"]["ICC(1,1)"]["note"] == "needs at least two readers"
    assert c["krippendorff_alpha_interval"]["value"] is None
    assert c["bland_altman"] == [[None]]


def test_class_nobody_used():
    x = random_ratings(16, n=100, r=3, k=3)
    # a fourth class nobody used: Fleiss and alpha unchanged, per-class entry undefined
    assert A.fleiss_kappa(x, 4) == pytest.approx(A.fleiss_kappa(x, 3))
    assert np.isnan(A.specific_agreement(x, 4)[3])
    assert np.isnan(A.fleiss_kappa_per_class(x, 4)[3])
    # Gwet's chance agreement counts the unused class (q = n_classes), as Gwet does
    assert A.gwet_ac(x, 4) != pytest.approx(A.gwet_ac(x, 3))
    s = A.categorical_summary(x, 4, n_boot=20)
    json.dumps(s, allow_nan=False)
    e = s["per_class"]["specific_agreement"][3]
    assert e["value"] is None and e["ci"] is None and "not used" in e["note"]
    assert s["per_class"]["fleiss_kappa"][3]["value"] is None
    assert s["overall"]["fleiss_kappa"]["value"] == pytest.approx(A.fleiss_kappa(x, 3))


def test_every_reader_agrees():
    x = np.repeat(np.array([0, 1, 2, 1, 0, 2])[:, None], 3, axis=1)
    assert A.fleiss_kappa(x, 3) == 1.0
    assert A.gwet_ac(x, 3) == 1.0
    assert A.krippendorff_alpha(x.astype(float), "ordinal") == 1.0
    assert A.cohen_kappa(x[:, 0], x[:, 1], 3, "quadratic") == 1.0
    r = A.icc(x.astype(float))
    assert all(v == 1.0 for v in r.value.values())
    assert all(ci == (1.0, 1.0) for ci in r.ci.values())


def test_all_reads_in_one_class():
    x = np.zeros((5, 3), int)
    with pytest.raises(A.UndefinedStatisticError, match="chance agreement"):
        A.fleiss_kappa(x, 2)
    with pytest.raises(A.UndefinedStatisticError, match="chance agreement"):
        A.cohen_kappa(x[:, 0], x[:, 1], 2)
    with pytest.raises(A.UndefinedStatisticError, match="D_e"):
        A.krippendorff_alpha(x.astype(float))
    with pytest.raises(A.UndefinedStatisticError, match="0/0"):
        A.icc(x.astype(float))
    assert A.percent_agreement(x, 2) == 1.0
    assert A.gwet_ac(x, 2) == 1.0  # AC1's chance agreement is 0 here
    s = A.categorical_summary(x, 2, n_boot=20)
    json.dumps(s, allow_nan=False)
    fk = s["overall"]["fleiss_kappa"]
    assert fk["value"] is None and "chance agreement" in fk["note"]
    assert s["overall"]["gwet_ac1"]["value"] == 1.0
    assert s["overall"]["krippendorff_alpha_nominal"]["value"] is None
    assert s["pairwise"]["cohen_kappa"]["value"][0][1] is None
    assert s["pairwise"]["percent_agreement"]["value"][0][1] == 1.0


def test_items_with_all_reads_missing_are_excluded_and_counted():
    x = random_ratings(17, n=100, r=3, k=3, p_missing=0.0)
    padded = np.vstack([x, np.full((7, 3), -1), [[0, -1, -1]]])
    assert A.fleiss_kappa(padded, 3) == pytest.approx(fleiss_gwet_loops(padded, 3))
    assert A.percent_agreement(padded, 3) == pytest.approx(A.percent_agreement(x, 3))
    s = A.categorical_summary(padded, 3, n_boot=20)
    assert (s["n_items"], s["n_items_total"], s["n_units"]) == (100, 108, 101)
    assert s["n_reads"] == 301
    y = np.vstack([np.where(x >= 0, x + 0.0, nan), np.full((4, 3), nan)])
    c = A.continuous_summary(y, n_boot=20)
    assert (c["n_items"], c["n_items_total"], c["icc_n_dropped"]) == (100, 104, 4)


def test_no_item_with_two_reads():
    x = np.array([[0, -1], [-1, 1], [-1, -1]])
    with pytest.raises(ValueError, match="no item has at least two reads"):
        A.fleiss_kappa(x, 2)
    with pytest.raises(ValueError, match="share 0"):
        A.cohen_kappa(x[:, 0], x[:, 1], 2)
    s = A.categorical_summary(x, 2)
    assert s["n_items"] == 0
    assert "no item has at least two reads" in s["overall"]["gwet_ac1"]["note"]
    assert s["pairwise"]["cohen_kappa"]["value"] == [[1.0, None], [None, 1.0]]


def test_n_boot_zero_gives_no_intervals():
    x = random_ratings(18, n=80)
    s = A.categorical_summary(x, 4, ordinal=True, n_boot=0)
    json.dumps(s, allow_nan=False)
    assert all(e["ci"] is None and e["value"] is not None for e in s["overall"].values())
    assert s["pairwise"]["cohen_kappa"]["ci_low"][0][1] is None
    c = A.continuous_summary(np.where(x >= 0, x + 0.0, nan), n_boot=0)
    assert c["krippendorff_alpha_interval"]["ci"] is None


def test_summary_json_and_group_bootstrap_unit():
    x = random_ratings(19, n=300, r=4, k=5)
    groups = np.repeat([f"patient-{i}" for i in range(75)], 4)
    s = A.categorical_summary(x, 5, ordinal=True, n_boot=100, groups=groups)
    text = json.dumps(s, allow_nan=False)
    assert "NaN" not in text
    assert s["bootstrap_unit"] == "group" and s["n_units"] == 75
    for e in s["overall"].values():
        assert e["ci"][0] <= e["value"] <= e["ci"][1]
    assert set(s["pairwise"]) == {
        "cohen_kappa",
        "percent_agreement",
        "cohen_kappa_linear",
        "cohen_kappa_quadratic",
    }


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: A.fleiss_kappa(np.array([[0.0, 1.0]]), 2), "integer class codes"),
        (lambda: A.fleiss_kappa(np.array([[0, 3]]), 3), "code 3"),
        (lambda: A.fleiss_kappa(np.array([0, 1]), 2), "2-D"),
        (lambda: A.fleiss_kappa(np.array([[0, 1]]), 0), "n_classes"),
        (lambda: A.cohen_kappa(np.array([0, 1]), np.array([0]), 2), "same length"),
        (lambda: A.cohen_kappa(np.array([0, 1]), np.array([0, 1]), 2, "cubic"), "weights"),
        (lambda: A.krippendorff_alpha(np.ones((3, 2)), "metric"), "level"),
        (lambda: A.krippendorff_alpha(np.array([[1.0, np.inf]]), "interval"), "infinite"),
        (lambda: A.krippendorff_alpha(np.array([[1.0, -2]]), "ratio"), "non-negative"),
        (lambda: A.gwet_ac(np.array([[0, 0]]), 1), "n_classes"),
        (lambda: A.bootstrap_ci(np.array([[0, 1]]), 2, "kappa"), "statistic"),
        (lambda: A.bootstrap_ci(np.array([[0, 1]]), 2, n_boot=-1), "n_boot"),
        (lambda: A.bootstrap_ci(np.array([[0, 1]]), 2, groups=[1, 2]), "groups"),
        (lambda: A.icc(np.ones((3, 2)), level=1.5), "level"),
        (lambda: A.bland_altman(np.array([1.0, nan]), np.array([1.0, 2.0])), "share 1"),
    ],
)
def test_input_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_docstring_examples_print_what_they_show():
    import doctest

    globs = {**vars(A), "np": np}
    res = doctest.testmod(A, globs=globs, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 10 and res.failed == 0
