"""Ordinal bias (issue 17, part 2): Wilcoxon on paired level differences against the
other readers' median, Stuart-Maxwell for nominal scales, and their rates over many
simulated panels (the full table: bench/bench_ordinal_bias.py)."""

import json
import os
import sys

import numpy as np
import pytest
from scipy import stats

from multireader.stats.profiles import (
    marginal_homogeneity,
    ordinal_bias,
    reader_confusion,
    reader_profiles,
    stuart_maxwell,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_ordinal_bias import K, simulate_panel  # noqa: E402

# ---------------------------------------------------------------- Stuart-Maxwell


def test_stuart_maxwell_matches_statsmodels_on_random_tables():
    from statsmodels.stats.contingency_tables import SquareTable

    rng = np.random.default_rng(0)
    for _ in range(50):
        k = int(rng.integers(2, 6))
        t = rng.integers(1, 40, (k, k))
        stat, df, p = stuart_maxwell(t)
        ref = SquareTable(t, shift_zeros=False).homogeneity()
        assert stat == pytest.approx(ref.statistic, rel=1e-10)
        assert df == ref.df and p == pytest.approx(ref.pvalue, rel=1e-9)


def test_stuart_maxwell_2x2_is_mcnemar_and_agresti_example():
    from statsmodels.stats.contingency_tables import mcnemar

    t = np.array([[794, 150], [86, 570]])  # Agresti (2002) Table 10.1, presidential votes
    stat, df, p = stuart_maxwell(t)
    assert df == 1 and stat == pytest.approx((150 - 86) ** 2 / (150 + 86))
    assert stat == pytest.approx(17.36, abs=0.01)  # published: z^2 = 17.36
    assert p == pytest.approx(mcnemar(t, exact=False, correction=False).pvalue)


def test_stuart_maxwell_drops_classes_without_discordant_pairs():
    from statsmodels.stats.contingency_tables import SquareTable

    # class 2 never used, class 3 always agreed on: both carry no information
    t = np.array([[30, 8, 0, 0], [2, 25, 0, 0], [0, 0, 0, 0], [0, 0, 0, 12]])
    stat, df, p = stuart_maxwell(t)
    ref = SquareTable(t[:2, :2], shift_zeros=False).homogeneity()
    assert df == 1 and stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert stuart_maxwell(np.diag([5, 6, 7])) == (0.0, 0, 1.0)
    for bad in ([[1, 2, 3]], [[1, -1], [0, 1]], [[np.nan, 1], [1, 1]], [["a", "b"], ["c", "d"]]):
        with pytest.raises(ValueError, match="table"):
            stuart_maxwell(np.array(bad))


def test_marginal_homogeneity_per_reader_and_holm():
    from statsmodels.stats.contingency_tables import SquareTable
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 500)
    r = np.where(rng.random((500, 4)) < 0.8, truth[:, None], rng.integers(0, 3, (500, 4)))
    r[(truth == 0) & (rng.random(500) < 0.35), 3] = 2  # reader 4 moves 0s to 2s
    r[rng.random(r.shape) < 0.1] = -1
    res = marginal_homogeneity(r, 3, reference=truth)
    conf = reader_confusion(r, truth, 3)
    for j in range(4):
        ref = SquareTable(conf[j].T, shift_zeros=False).homogeneity()
        assert res["statistic"][j] == pytest.approx(ref.statistic, rel=1e-10)
        assert res["p"][j] == pytest.approx(ref.pvalue, rel=1e-9)
    np.testing.assert_allclose(res["p_holm"], multipletests(res["p"], method="holm")[1])
    assert res["flagged"].tolist() == [False, False, False, True]
    # without a reference: the panel's Dawid-Skene consensus, as prevalence_bias
    assert marginal_homogeneity(r, 3)["flagged"].tolist() == [False, False, False, True]


# ---------------------------------------------------------------- ordinal bias


def test_ordinal_bias_is_wilcoxon_on_differences_from_the_others_median():
    rng = np.random.default_rng(5)
    r = rng.integers(0, 5, (120, 4))
    r[rng.random(r.shape) < 0.2] = -1
    res = ordinal_bias(r, 5, exclude_flagged=False)
    for j in range(4):
        others = np.delete(r, j, axis=1).astype(float)
        others[others < 0] = np.nan
        ok = (r[:, j] >= 0) & np.isfinite(others).any(axis=1)
        med = np.nanmedian(others[ok], axis=1)  # a half level with two others
        d = r[ok, j] - med
        ref = stats.wilcoxon(d, zero_method="wilcox", correction=False, method="approx")
        assert res["n_items"][j] == ok.sum()
        assert res["p"][j] == pytest.approx(ref.pvalue, rel=1e-10)
        assert res["shift"][j] == pytest.approx(d.mean())
        assert res["n_higher"][j] == (d > 0).sum() and res["n_lower"][j] == (d < 0).sum()
        lo, hi = stats.t.interval(0.95, len(d) - 1, d.mean(), stats.sem(d))
        assert (res["shift_low"][j], res["shift_high"][j]) == pytest.approx((lo, hi))


def test_ordinal_bias_against_a_reference_level():
    rng = np.random.default_rng(6)
    ref = rng.integers(0, 5, 300)
    r = np.clip(ref[:, None] + rng.choice([-1, 0, 1], (300, 3), p=[0.2, 0.6, 0.2]), 0, 4)
    r[:, 2] = np.minimum(r[:, 2] + (rng.random(300) < 0.5), 4)
    ref[:10] = -1  # no reference: left out
    res = ordinal_bias(r, 5, reference=ref)
    d = r[10:, 2] - ref[10:]
    assert res["n_items"].tolist() == [290] * 3 and res["shift"][2] == pytest.approx(d.mean())
    assert res["flagged"].tolist() == [False, False, True] and res["n_rounds"][0] == 1


def test_step_down_keeps_a_biased_reader_out_of_the_good_readers_medians():
    # without stepping down, the good readers look lower than a median the biased
    # reader pulls up; with it, only the biased reader is flagged
    flagged_plain = flagged_step = 0
    plain_shift, step_shift = [], []
    for seed in range(20):
        r = simulate_panel(seed, 400, 0.5)
        plain = ordinal_bias(r, K, exclude_flagged=False)
        step = ordinal_bias(r, K)
        assert step["flagged"][0] and step["excluded"][0]
        flagged_plain += int(plain["flagged"][1:].sum())
        flagged_step += int(step["flagged"][1:].sum())
        plain_shift.append(plain["shift"][1:])
        step_shift.append(step["shift"][1:])
    assert np.mean(plain_shift) < -0.1 and abs(np.mean(step_shift)) < 0.03
    # of 60 good readers: 50 flagged without stepping down, 2 with it
    assert flagged_step <= 3 and flagged_plain >= 30


def test_ordinal_bias_edge_cases():
    same = np.array([[0, 0, 0], [2, 2, 2], [4, 4, 4]])
    res = ordinal_bias(same, 5)
    np.testing.assert_array_equal(res["p"], 1.0)
    np.testing.assert_array_equal(res["shift"], 0.0)
    assert not res["flagged"].any()
    lonely = ordinal_bias(np.array([[0, -1], [-1, 1], [2, -1]]), 3)  # nobody shares
    assert lonely["n_items"].tolist() == [0, 0] and np.isnan(lonely["p"]).all()
    assert not lonely["flagged"].any()
    one = ordinal_bias(np.array([[0], [1]]), 2)
    assert one["n_items"].tolist() == [0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"level": 0.0}, "level"),
        ({"min_shift": -0.1}, "min_shift"),
        ({"min_shift": "big"}, "min_shift"),
        ({"reference": np.array([0, 1])}, "reference"),
        ({"reference": np.array([0, 1, 9])}, "reference holds 9"),
    ],
)
def test_ordinal_bias_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ordinal_bias(np.array([[0, 1], [1, 1], [2, 2]]), 3, **kwargs)


# ---------------------------------------------------------------- simulation


def test_detection_and_false_flags_over_simulated_panels():
    # 200 paired items, 4 readers, 5 levels; the bench runs 1,000 panels per cell
    seeds = 150
    hit = sum(
        bool(ordinal_bias(simulate_panel(s, 200, 0.3), K)["flagged"][0]) for s in range(seeds)
    )
    null = [ordinal_bias(simulate_panel(50_000 + s, 200, 0.0), K)["flagged"] for s in range(seeds)]
    any_flag = np.mean([f.any() for f in null])
    per_reader = np.mean(null)
    assert hit / seeds >= 0.95
    assert per_reader <= 0.05 and any_flag <= 0.08  # 0.05 +- Monte Carlo error


def test_bench_table_meets_the_issue_targets():
    path = os.path.join(ROOT, "bench", "results", "ordinal_bias.json")
    if not os.path.exists(path):
        pytest.skip("run bench/bench_ordinal_bias.py first")
    with open(path) as f:
        table = {(c["n_paired_items"], c["shift"]): c for c in json.load(f)["table"]}
    assert table[(200, 0.3)]["detection"] >= 0.95
    assert table[(200, 0.0)]["false_flag_any_reader_null"] <= 0.05
    assert all(c["false_flag_good_readers"] <= 0.05 for c in table.values())


# ---------------------------------------------------------------- profiles


def test_reader_profiles_carries_the_scale_test_and_its_flag():
    r = simulate_panel(1, 300, 0.5)
    truth = np.median(r[:, 1:], axis=1).astype(int)
    prof = reader_profiles(r, truth, K, scale="ordinal")
    json.dumps(prof, allow_nan=False)
    ob = prof["per_reader"]["R1"]["ordinal_bias"]
    assert ob["flagged"] and ob["shift"] > 0.3 and ob["excluded_from_medians"]
    assert ob["shift_ci"][0] < ob["shift"] < ob["shift_ci"][1]
    kinds = [(f["reader"], f["kind"], f["direction"]) for f in prof["flags"]]
    assert ("R1", "ordinal_bias", "higher") in kinds
    assert not any(f["kind"] == "ordinal_bias" and f["reader"] != "R1" for f in prof["flags"])
    assert "ordinal_bias" in prof["methods"] and prof["parameters"]["scale"] == "ordinal"
    nominal = reader_profiles(r, truth, K, scale="nominal")
    mh = nominal["per_reader"]["R1"]["marginal_homogeneity"]
    assert mh["flagged"] and mh["df"] >= 1
    plain = reader_profiles(r, truth, K)
    assert "ordinal_bias" not in plain["per_reader"]["R1"]
    with pytest.raises(ValueError, match="scale"):
        reader_profiles(r, truth, K, scale="interval")
