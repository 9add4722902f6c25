"""MRMC (issue 17, part 1): OR-Hillis on the Van Dyke data against OR-DBM MRMC 2.51,
model vs readers, and agreement with raters random (jackknife, two-way bootstrap).

The Van Dyke et al. (1993) data: cine MRI (modality 1) vs spin-echo MRI (modality 2)
for aortic dissection, 5 radiologists, 114 patients (69 without, 45 with), ratings
1-5. ``tests/data/vandyke_1993.lrc`` is the LRC file distributed with RJafroc
(``inst/extdata/datasets/VD.lrc``; the package's ``dataset02``). The expected numbers
are those printed by OR-DBM MRMC 2.51 (Schartz, Hillis, Pesce & Berbaum, University
of Iowa), "VanDyke trap area jackknife anova" (RJafroc ``inst/Iowa/VanDyke.txt``), the
analysis of Hillis (2007, Stat Med 26:596-619) and Hillis, Berbaum & Metz (2008), and
the hand calculation in Chakraborty's RJafroc book, ch. "Obuchowski-Rockette
applications" (F = 4.456, ddf = 15.26, p = 0.05167, CI -0.0879595 to 0.0003589).
"""

import math
import os

import numpy as np
import pytest

from multireader.stats.agreement import fleiss_kappa, gwet_ac, percent_agreement
from multireader.stats.mrmc import (
    _onehot,
    _weighted_agreement,
    figure_of_merit,
    model_vs_readers,
    or_hillis,
    rater_subject_variance,
    two_way_bootstrap,
)

DATA = os.path.join(os.path.dirname(__file__), "data", "vandyke_1993.lrc")


def read_lrc(path):
    """(scores (2, n_cases, n_readers), truth): the MRMC LRC format, two modalities."""
    with open(path) as f:
        lines = [ln.strip() for ln in f]
    i, blocks = 4, []  # title, first reader, modality names, "L L"
    while True:
        reader = []
        for _ in range(2):  # non-diseased, then diseased cases, each ended by "*"
            rows = []
            while lines[i] != "*":
                rows.append([float(v) for v in lines[i].split()[:2]])
                i += 1
            i += 1
            reader.append(np.array(rows))
        blocks.append(reader)
        if lines[i] == "#":
            break
        i += 1  # the next reader's id
    n0, n1 = len(blocks[0][0]), len(blocks[0][1])
    scores = np.stack(
        [np.stack([np.r_[b[0][:, m], b[1][:, m]] for b in blocks], axis=1) for m in (0, 1)]
    )
    return scores, np.r_[np.zeros(n0, int), np.ones(n1, int)]


@pytest.fixture(scope="module")
def vandyke():
    return read_lrc(DATA)


# OR-DBM MRMC 2.51 output for the Van Dyke data (trapezoidal AUC, jackknife)
PUBLISHED_AUC = [
    [0.91964573, 0.85877617, 0.90386473, 0.97310789, 0.82979066],
    [0.94782609, 0.90531401, 0.92173913, 0.99935588, 0.92995169],
]


def test_vandyke_data_is_the_published_design(vandyke):
    scores, truth = vandyke
    assert scores.shape == (2, 114, 5) and truth.sum() == 45 and (truth == 0).sum() == 69


def test_or_hillis_reproduces_or_dbm_mrmc_on_vandyke(vandyke):
    res = or_hillis(*vandyke)
    np.testing.assert_allclose(res.foms, PUBLISHED_AUC, atol=5e-9)
    np.testing.assert_allclose(res.means, [0.89703704, 0.94083736], atol=5e-9)
    assert res.ms_t == pytest.approx(0.00479617, abs=5e-9)
    assert res.ms_r == pytest.approx(0.00383620, abs=5e-9)
    assert res.ms_tr == pytest.approx(0.00055103, abs=5e-9)
    assert res.var_r == pytest.approx(0.00153500, abs=5e-9)
    assert res.var_tr == pytest.approx(0.00020040, abs=5e-9)
    assert res.cov1 == pytest.approx(0.00034661, abs=5e-9)
    assert res.cov2 == pytest.approx(0.00034407, abs=5e-9)
    assert res.cov3 == pytest.approx(0.00023903, abs=5e-9)
    assert res.var == pytest.approx(0.00080229, abs=5e-9)
    # a) F(1, 15.26) = 4.46, p = 0.0517; error term 0.00107626
    assert round(res.f_stat, 2) == 4.46 and round(res.f_stat, 3) == 4.456
    assert round(res.ddf, 2) == 15.26 and res.ndf == 1
    assert round(res.p_value, 4) == 0.0517 and round(res.p_value, 5) == 0.05167
    assert res.ms_tr + 5 * max(res.cov2 - res.cov3, 0) == pytest.approx(0.00107626, abs=5e-9)
    # b) difference -0.04380, StdErr 0.02075, t -2.11, 95% CI (-0.08796, 0.00036)
    d = res.differences[0]
    assert round(d["estimate"], 5) == -0.04380 and round(d["std_err"], 5) == 0.02075
    assert round(d["t"], 2) == -2.11 and round(d["p_value"], 4) == 0.0517
    assert [round(v, 5) for v in d["ci"]] == [-0.08796, 0.00036]
    assert d["ci"][0] == pytest.approx(-0.0879595, abs=5e-8)  # the RJafroc book's digits
    assert d["ci"][1] == pytest.approx(0.0003589, abs=5e-8)
    # c) single-treatment intervals (Hillis's ddf_H_single)
    published = [
        (0.03317360, 12.74, 0.82522360, 0.96885048, 0.00048396, 0.00308263),
        (0.02156637, 12.71, 0.89413783, 0.98753689, 0.00020419, 0.00130460),
    ]
    for got, (se, df, lo, hi, cov2, msr) in zip(res.per_modality, published, strict=True):
        assert got["std_err"] == pytest.approx(se, abs=5e-9)
        assert round(got["df"], 2) == df
        assert got["ci"][0] == pytest.approx(lo, abs=5e-9)
        assert got["ci"][1] == pytest.approx(hi, abs=5e-9)
        assert got["cov2"] == pytest.approx(cov2, abs=5e-9)
        assert got["ms_r"] == pytest.approx(msr, abs=5e-9)
    js = res.to_json()
    assert js["f_test"]["ddf"] == pytest.approx(res.ddf) and js["differences"][0]["ci"][1] > 0


def test_auc_jackknife_equals_brute_force_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 60)
    x = rng.integers(1, 6, (60, 3)).astype(float) + truth[:, None]  # ordinal, many ties
    f = figure_of_merit(x, truth)
    for j in range(3):
        assert f.value[j] == pytest.approx(roc_auc_score(truth, x[:, j]))
        for k in range(60):
            keep = np.arange(60) != k
            assert f.jackknife[j, k] == pytest.approx(roc_auc_score(truth[keep], x[keep, j]))


def test_accuracy_figure_of_merit_and_its_jackknife():
    truth = np.array([0, 1, 2, 1, 0, 2])
    calls = np.array([[0, 0], [1, 1], [2, 1], [1, 1], [1, 0], [2, 2]])
    f = figure_of_merit(calls, truth, "accuracy")
    np.testing.assert_allclose(f.value, [5 / 6, 5 / 6])
    np.testing.assert_allclose(f.jackknife[0, 4], 1.0)
    np.testing.assert_allclose(f.jackknife[0, 0], 4 / 5)


def test_model_vs_readers_is_or_hillis_with_the_model_as_a_second_modality(vandyke):
    scores, truth = vandyke
    readers = scores[1]
    model = scores[0].mean(axis=1) + 0.01 * np.arange(114) % 0.3  # any score per case
    res = model_vs_readers(model, readers, truth)
    two = or_hillis(np.stack([np.repeat(model[:, None], 5, axis=1), readers]), truth)
    d = two.differences[0]
    assert res.difference == pytest.approx(d["estimate"], abs=1e-12)
    assert res.std_err == pytest.approx(d["std_err"], rel=1e-10)
    assert res.df == pytest.approx(d["df"], rel=1e-10)
    np.testing.assert_allclose(res.ci, d["ci"], rtol=1e-10)
    assert res.p_two_sided == pytest.approx(d["p_value"], rel=1e-9)
    # non-inferiority: the one-sided p at margin 0 is half the two-sided one (t > 0)
    if res.difference > 0:
        assert res.p_noninferiority == pytest.approx(res.p_two_sided / 2, rel=1e-9)
    wider = model_vs_readers(model, readers, truth, margin=0.05)
    assert wider.p_noninferiority < res.p_noninferiority
    json_ = res.to_json()
    assert json_["n_readers"] == 5 and json_["fom"] == "auc"


def test_model_vs_readers_on_accuracy():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 3, 150)
    readers = np.where(rng.random((150, 4)) < 0.75, truth[:, None], rng.integers(0, 3, (150, 4)))
    model = np.where(rng.random(150) < 0.85, truth, (truth + 1) % 3)
    res = model_vs_readers(model, readers, truth, fom="accuracy", margin=0.05)
    assert res.model == pytest.approx((model == truth).mean())
    np.testing.assert_allclose(res.readers, (readers == truth[:, None]).mean(axis=0))
    assert res.ci[0] < res.difference < res.ci[1]


def test_or_hillis_type_one_error_under_the_null():
    # readers and cases random, equal modalities: the Hillis test rejects about 5 %
    rng = np.random.default_rng(7)
    rejections = 0
    n_sim = 300
    for _ in range(n_sim):
        truth = np.r_[np.zeros(50, int), np.ones(50, int)]
        skill = rng.normal(1.2, 0.3, 4)  # random readers
        case = rng.normal(0, 1, 100)[:, None]  # case difficulty shared by readers
        scores = np.stack(
            [truth[:, None] * skill + case + rng.normal(0, 1, (100, 4)) for _ in range(2)]
        )
        rejections += or_hillis(scores, truth).p_value < 0.05
    assert rejections / n_sim < 0.085


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s, t: or_hillis(s[:1], t), "modalities"),
        (lambda s, t: or_hillis(s[:, :, :1], t), "two readers"),
        (lambda s, t: or_hillis(s[0], t), "3-D"),
        (lambda s, t: or_hillis(s, t[:-1]), "truth"),
        (lambda s, t: or_hillis(np.where(s == 1, np.nan, s), t), "NaN"),
        (lambda s, t: or_hillis(s, t, fom="sens"), "fom"),
        (lambda s, t: model_vs_readers(s[0, :, 0], s[1], t, margin=-0.1), "margin"),
        (lambda s, t: model_vs_readers(s[0, :-1, 0], s[1], t), "model_scores"),
        (lambda s, t: model_vs_readers(s[0, :, 0], s[1, :, :1], t), "two readers"),
    ],
)
def test_mrmc_bad_arguments_name_themselves(vandyke, call, match):
    with pytest.raises(ValueError, match=match):
        call(*vandyke)


# ---------------------------------------------------------------- agreement, raters random


def _panel(seed, n=150, R=5, K=3, missing=0.1):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, K, n)
    acc = rng.uniform(0.5, 0.9, R)
    r = np.where(rng.random((n, R)) < acc, truth[:, None], rng.integers(0, K, (n, R)))
    r[rng.random(r.shape) < missing] = -1
    return r


@pytest.mark.parametrize("stat", ["fleiss_kappa", "gwet_ac1", "percent_agreement"])
def test_weighted_agreement_with_unit_weights_is_the_package_statistic(stat):
    r = _panel(1)
    Y = _onehot(r, 3)
    ref = {
        "fleiss_kappa": fleiss_kappa,
        "gwet_ac1": gwet_ac,
        "percent_agreement": percent_agreement,
    }
    got = _weighted_agreement(Y, stat, np.ones((1, len(r))), np.ones((1, 5)))[0]
    assert got == pytest.approx(ref[stat](r, 3), rel=1e-12)
    # a reader weight of 0 is that reader left out; an item weight of 2 the item twice
    w = np.array([[1, 0, 1, 1, 0.0]])
    got = _weighted_agreement(Y, stat, np.ones((1, len(r))), w)[0]
    assert got == pytest.approx(ref[stat](r[:, [0, 2, 3]], 3), rel=1e-12)
    u = np.ones((1, len(r)))
    u[0, :10] = 2
    got = _weighted_agreement(Y, stat, u, np.ones((1, 5)))[0]
    assert got == pytest.approx(ref[stat](np.vstack([r, r[:10]]), 3), rel=1e-12)


def test_a_reader_drawn_twice_adds_no_self_agreement():
    # readers 0 and 1 always disagree; drawing reader 0 twice must not create agreement
    r = np.array([[0, 1], [1, 0], [0, 1], [1, 0]])
    Y = _onehot(r, 2)
    pa = _weighted_agreement(Y, "percent_agreement", np.ones((1, 4)), np.array([[2.0, 1.0]]))
    assert pa[0] == 0.0
    only = _weighted_agreement(Y, "percent_agreement", np.ones((1, 4)), np.array([[2.0, 0.0]]))
    assert np.isnan(only[0])  # one distinct reader: no pair, undefined


def test_rater_subject_variance_is_two_delete_one_jackknifes():
    r = _panel(2, n=80)
    v = rater_subject_variance(r, 3, "fleiss_kappa")
    n, R = r.shape
    th_s = np.array([fleiss_kappa(np.delete(r, i, axis=0), 3) for i in range(n)])
    th_r = np.array([fleiss_kappa(np.delete(r, j, axis=1), 3) for j in range(R)])
    vs = (n - 1) / n * ((th_s - th_s.mean()) ** 2).sum()
    vr = (R - 1) / R * ((th_r - th_r.mean()) ** 2).sum()
    assert v["value"] == pytest.approx(fleiss_kappa(r, 3))
    assert v["var_subjects"] == pytest.approx(vs, rel=1e-9)
    assert v["var_raters"] == pytest.approx(vr, rel=1e-9)
    assert v["var_total"] == pytest.approx(vs + vr, rel=1e-9)
    z = 1.959963984540054
    assert v["ci"][1] - v["value"] == pytest.approx(z * math.sqrt(vs + vr), rel=1e-9)
    # patients: a patient's items are deleted together
    groups = np.repeat(np.arange(40), 2)
    vg = rater_subject_variance(r, 3, "fleiss_kappa", groups=groups)
    th_g = np.array([fleiss_kappa(r[groups != g], 3) for g in range(40)])
    assert vg["var_subjects"] == pytest.approx(39 / 40 * ((th_g - th_g.mean()) ** 2).sum())
    two = rater_subject_variance(r[:, :2], 3)
    assert two["var_raters"] is None and "two raters" in two["note"]


def _population_panels(n_sims, n, R, seed):
    """Panels of R raters drawn from a population of raters of varying accuracy."""
    rng = np.random.default_rng(seed)
    for _ in range(n_sims):
        truth = rng.integers(0, 3, n)
        acc = rng.beta(6, 2, R)  # each study draws its raters
        yield np.where(rng.random((n, R)) < acc, truth[:, None], rng.integers(0, 3, (n, R)))


def test_raters_random_intervals_cover_the_population_value():
    # the population coefficient: a very large panel from the same rater population
    big = next(_population_panels(1, 4000, 400, seed=99))
    Y = _onehot(big, 3)
    target = _weighted_agreement(Y, "gwet_ac1", np.ones((1, 4000)), np.ones((1, 400)))[0]
    cover_total = cover_subjects = cover_boot = 0
    sims = 120
    for i, r in enumerate(_population_panels(sims, 100, 4, seed=5)):
        v = rater_subject_variance(r, 3)
        cover_total += v["ci"][0] <= target <= v["ci"][1]
        cover_subjects += v["ci_subjects"][0] <= target <= v["ci_subjects"][1]
        if i < 60:
            b = two_way_bootstrap(r, 3, n_boot=300, seed=i)
            cover_boot += b["ci"][0] <= target <= b["ci"][1]
    # cases-only intervals ignore the rater draw and under-cover; both-random ones do not
    assert cover_subjects / sims < 0.85
    assert cover_total / sims >= 0.88
    assert cover_boot / 60 >= 0.85


def test_two_way_bootstrap_modes_and_seed():
    r = _panel(4)
    a = two_way_bootstrap(r, 3, n_boot=400, seed=1)
    b = two_way_bootstrap(r, 3, n_boot=400, seed=1)
    np.testing.assert_array_equal(a["replicates"], b["replicates"])
    s = two_way_bootstrap(r, 3, n_boot=400, seed=1, resample="subjects")
    w = a["ci"][1] - a["ci"][0]
    assert w > s["ci"][1] - s["ci"][0]
    assert a["value"] == pytest.approx(gwet_ac(r, 3))
    g = two_way_bootstrap(r, 3, n_boot=50, groups=np.arange(len(r)) // 3)
    assert g["unit"] == "group" and g["n_units"] == 50
    with pytest.raises(ValueError, match="resample"):
        two_way_bootstrap(r, 3, resample="cases")
    with pytest.raises(ValueError, match="statistic"):
        two_way_bootstrap(r, 3, "cohen")
    with pytest.raises(ValueError, match="rater_fraction"):
        rater_subject_variance(r, 3, rater_fraction=1.0)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_weighted_alpha_is_krippendorff_and_its_weights_are_copies(level):
    """With unit weights, alpha equals the package's and the `krippendorff` package's
    (measured against, not depended on); integer item weights equal duplicated items;
    0/1 reader weights equal the alpha of the kept readers."""
    import krippendorff

    from multireader.stats.agreement import krippendorff_alpha

    stat = f"krippendorff_alpha_{level}"
    r = _panel(7, n=120, R=5, K=4, missing=0.25)
    Y = _onehot(r, 4)
    n, R = r.shape
    got = _weighted_agreement(Y, stat, np.ones((1, n)), np.ones((1, R)))[0]
    data = np.where(r >= 0, r, np.nan).astype(float)
    assert got == pytest.approx(krippendorff_alpha(data, level), abs=1e-12)
    peer = krippendorff.alpha(reliability_data=data.T, level_of_measurement=level)
    assert got == pytest.approx(peer, abs=1e-10)
    u = np.random.default_rng(1).integers(0, 3, n).astype(float)
    dup = np.repeat(data, u.astype(int), axis=0)
    got_u = _weighted_agreement(Y, stat, u[None], np.ones((1, R)))[0]
    assert got_u == pytest.approx(krippendorff_alpha(dup, level), abs=1e-12)
    keep = np.array([1.0, 0, 1, 1, 0])
    got_w = _weighted_agreement(Y, stat, np.ones((1, n)), keep[None])[0]
    assert got_w == pytest.approx(krippendorff_alpha(data[:, keep > 0], level), abs=1e-12)


def test_alpha_readers_random_interval_is_wider_and_jackknifes_readers():
    from multireader.stats.agreement import krippendorff_alpha

    r = _panel(3, n=100, R=5, K=3, missing=0.1)
    data = np.where(r >= 0, r, np.nan).astype(float)
    v = rater_subject_variance(r, 3, "krippendorff_alpha_nominal")
    th_r = np.array([krippendorff_alpha(np.delete(data, j, axis=1)) for j in range(5)])
    assert v["value"] == pytest.approx(krippendorff_alpha(data), abs=1e-12)
    assert v["var_raters"] == pytest.approx(4 / 5 * ((th_r - th_r.mean()) ** 2).sum(), rel=1e-9)
    b = two_way_bootstrap(r, 3, "krippendorff_alpha_nominal", n_boot=300, seed=2)
    s = two_way_bootstrap(r, 3, "krippendorff_alpha_nominal", n_boot=300, seed=2,
                          resample="subjects")  # fmt: skip
    assert b["ci"][1] - b["ci"][0] > s["ci"][1] - s["ci"][0]
