"""Reader profiles: confusion, bias (McNemar + Holm), drift (Cochran-Armitage), the report,
and the acceptance test on the demo study's planted readers."""

import csv
import json
import os

import numpy as np
import pytest

from multireader.stats.consensus import DawidSkene, MajorityVote
from multireader.stats.profiles import (
    cochran_armitage,
    drift,
    holm,
    prevalence_bias,
    reader_confusion,
    reader_profiles,
)

CLASSES = ["benign", "probably_benign", "suspicious", "malignant"]


def _random_ratings(n, n_readers, k, missing, seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    r = np.where(
        rng.random((n, n_readers)) < 0.7, truth[:, None], rng.integers(0, k, (n, n_readers))
    )
    r[rng.random(r.shape) < missing] = -1
    ref = truth.copy()
    ref[rng.random(n) < missing] = -1
    return r, ref


# ---------------------------------------------------------------- confusion, Holm


def test_reader_confusion_by_hand():
    r = np.array([[0, 1], [1, 1], [1, -1], [2, 0]])
    ref = np.array([0, 1, -1, 2])
    c = reader_confusion(r, ref, 3)
    np.testing.assert_array_equal(c[0], [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(c[1], [[0, 1, 0], [0, 1, 0], [1, 0, 0]])


def test_reader_confusion_matches_sklearn_with_missing():
    from sklearn.metrics import confusion_matrix

    r, ref = _random_ratings(500, 4, 5, missing=0.15, seed=0)
    c = reader_confusion(r, ref, 5)
    for j in range(4):
        ok = (r[:, j] >= 0) & (ref >= 0)
        np.testing.assert_array_equal(c[j], confusion_matrix(ref[ok], r[ok, j], labels=range(5)))


def test_reader_confusion_rejects_bad_reference():
    with pytest.raises(ValueError, match="reference must be 1-D"):
        reader_confusion(np.zeros((3, 2), int), np.zeros(2, int), 2)
    with pytest.raises(ValueError, match="reference holds 5"):
        reader_confusion(np.zeros((3, 2), int), np.array([0, 1, 5]), 2)


def test_holm_matches_statsmodels_and_skips_nan():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(1)
    p = rng.random(30) ** 3
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], atol=1e-12)
    q = p.copy().reshape(5, 6)
    q[1, 2] = np.nan
    out = holm(q)
    assert np.isnan(out[1, 2])
    keep = ~np.isnan(q)
    np.testing.assert_allclose(out[keep], multipletests(q[keep], method="holm")[1], atol=1e-12)


# ---------------------------------------------------------------- bias


def test_prevalence_bias_is_mcnemar_exact_against_the_reference():
    from statsmodels.stats.contingency_tables import mcnemar

    r, ref = _random_ratings(400, 3, 4, missing=0.1, seed=2)
    # make reader 2 call class 3 more often
    rng = np.random.default_rng(7)
    r[(rng.random(400) < 0.25) & (r[:, 2] >= 0), 2] = 3
    res = prevalence_bias(r, 4, reference=ref)
    for j in range(3):
        ok = (r[:, j] >= 0) & (ref >= 0)
        assert res["n_items"][j] == ok.sum()
        for k in range(4):
            x, y = r[ok, j] == k, ref[ok] == k
            table = [[np.sum(x & y), np.sum(x & ~y)], [np.sum(~x & y), np.sum(~x & ~y)]]
            expected = mcnemar(table, exact=True).pvalue
            assert res["p"][j, k] == pytest.approx(expected, rel=1e-9, abs=1e-15)
            assert res["difference"][j, k] == pytest.approx(x.mean() - y.mean())
    from statsmodels.stats.multitest import multipletests

    np.testing.assert_allclose(
        res["p_holm"].ravel(), multipletests(res["p"].ravel(), method="holm")[1], atol=1e-12
    )
    assert res["flagged"][2, 3] and res["difference"][2, 3] > 0.10
    assert not res["flagged"][:2].any()


def test_prevalence_bias_finds_the_biased_reader_without_a_reference():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 3, 600)
    r = np.where(rng.random((600, 5)) < 0.85, truth[:, None], rng.integers(0, 3, (600, 5)))
    r[(truth == 0) & (rng.random(600) < 0.5), 4] = 2  # reader 5 turns half of 0s into 2s
    r[rng.random(r.shape) < 0.1] = -1
    for consensus in ("dawid_skene", "majority"):
        for loo in (False, True):
            res = prevalence_bias(r, 3, consensus=consensus, leave_one_out=loo)
            assert res["flagged"][4, 2] and res["difference"][4, 2] > 0.1, (consensus, loo)
            assert not res["flagged"][:4].any(), (consensus, loo)
            assert 0.2 < res["others_rate"][4, 2] < 0.45


def test_prevalence_bias_edge_cases():
    # every reader agrees: nothing to test, p = 1 everywhere; class 2 nobody used
    r = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 1]])
    res = prevalence_bias(r, 3)
    np.testing.assert_array_equal(res["p"], 1.0)
    np.testing.assert_array_equal(res["difference"], 0.0)
    np.testing.assert_array_equal(res["rate"][:, 2], 0.0)
    assert not res["flagged"].any()
    # a single reader: the consensus is that reader (p 1); leave-one-out has nobody (NaN)
    one = prevalence_bias(np.array([[0], [1], [1]]), 2)
    np.testing.assert_array_equal(one["p"], 1.0)
    loo = prevalence_bias(np.array([[0], [1], [1]]), 2, leave_one_out=True)
    assert loo["n_items"][0] == 0 and np.isnan(loo["p"]).all() and not loo["flagged"].any()
    # a reader with no reads: NaN rates, left out of Holm, never flagged
    r = np.array([[0, 0, -1], [1, 1, -1], [1, 0, -1]])
    res = prevalence_bias(r, 2)
    assert res["n_items"][2] == 0 and np.isnan(res["rate"][2]).all()
    assert not res["flagged"][2].any()
    with pytest.raises(ValueError, match="consensus"):
        prevalence_bias(r, 2, consensus="mean")
    with pytest.raises(ValueError, match="alpha"):
        prevalence_bias(r, 2, alpha=1.5)
    with pytest.raises(ValueError, match="min_difference"):
        prevalence_bias(r, 2, min_difference=-0.1)


# ---------------------------------------------------------------- drift


def test_cochran_armitage_reproduces_agresti_malformation_example():
    # Agresti (2002), Categorical Data Analysis 2nd ed., the trend-test example:
    # infant malformation by maternal alcohol consumption, scores 0, 0.5, 1.5, 4, 7;
    # published r = 0.0142, M^2 = 6.57 (Z^2 = N r^2 is the same to two decimals), P = 0.01.
    present = np.array([48, 38, 5, 1, 1])
    absent = np.array([17066, 14464, 788, 126, 37])
    z, p, slope = cochran_armitage(present, present + absent, [0, 0.5, 1.5, 4.0, 7.0])
    assert z**2 == pytest.approx(6.57, abs=0.005)
    assert round(p, 2) == 0.01
    assert slope > 0


def test_cochran_armitage_matches_statsmodels_linear_by_linear():
    from statsmodels.stats.contingency_tables import Table

    rng = np.random.default_rng(3)
    n = rng.integers(20, 80, 6)
    x = rng.binomial(n, np.linspace(0.9, 0.6, 6))
    z, p, slope = cochran_armitage(x, n)
    res = Table(np.stack([x, n - x], axis=1)).test_ordinal_association(
        row_scores=np.arange(6.0), col_scores=np.array([1.0, 0.0])
    )
    N = n.sum()
    # statsmodels uses the permutation variance, (N - 1) / N times ours
    assert z == pytest.approx(res.zscore * np.sqrt(N / (N - 1)), rel=1e-9)
    # the slope is the weighted least-squares slope of the proportion on the score
    w_slope = np.polyfit(np.arange(6.0), x / n, 1, w=np.sqrt(n))[0]
    assert slope == pytest.approx(w_slope, rel=1e-9)
    assert cochran_armitage([3, 3], [3, 3]) == (0.0, 1.0, 0.0)  # no variation
    assert cochran_armitage([0], [5]) == (0.0, 1.0, 0.0)


def _drifting_panel(seed):
    rng = np.random.default_rng(seed)
    n, n_readers, k = 600, 3, 4
    truth = rng.integers(0, k, n)
    sessions = np.tile(np.repeat(np.arange(6), n // 6)[:, None], (1, n_readers))
    p_right = np.full((n, n_readers), 0.85)
    p_right[:, 2] = 0.9 - 0.08 * sessions[:, 2]  # reader 3 declines 8 points a session
    right = rng.random((n, n_readers)) < p_right
    wrong = (truth[:, None] + rng.integers(1, k, (n, n_readers))) % k
    r = np.where(right, truth[:, None], wrong)
    r[rng.random(r.shape) < 0.05] = -1
    sessions = np.where(r >= 0, sessions, -1)
    return r, truth, sessions


def test_drift_flags_the_declining_reader_only():
    from statsmodels.stats.contingency_tables import Table

    r, truth, sessions = _drifting_panel(0)
    res = drift(r, truth, sessions)
    assert res["flagged"].tolist() == [False, False, True]
    assert res["decline"][2] > 0.3
    # per-session counts and the trend statistic against statsmodels
    for j in range(3):
        ok = r[:, j] >= 0
        for s in range(6):
            sel = ok & (sessions[:, j] == s)
            assert res["n"][j, s] == sel.sum()
            assert res["agree"][j, s] == (r[sel, j] == truth[sel]).sum()
        x, n = res["agree"][j], res["n"][j]
        sm = Table(np.stack([x, n - x], axis=1)).test_ordinal_association(
            row_scores=np.arange(6.0), col_scores=np.array([1.0, 0.0])
        )
        assert res["z"][j] == pytest.approx(sm.zscore * np.sqrt(n.sum() / (n.sum() - 1)))


def test_drift_edge_cases():
    r = np.array([[0, 1], [1, 1], [0, 0], [1, -1]])
    ref = np.array([0, 1, 0, -1])
    one_session = np.where(r >= 0, 0, -1)
    res = drift(r, ref, one_session)
    assert np.isnan(res["p"]).all() and not res["flagged"].any()
    np.testing.assert_array_equal(res["n_sessions"], [1, 1])
    # all agree across two sessions: p 1, never flagged
    res = drift(
        np.array([[0], [1], [0], [1]]), np.array([0, 1, 0, 1]), np.array([[0], [0], [1], [1]])
    )
    assert res["p"][0] == 1.0 and res["slope"][0] == 0.0
    with pytest.raises(ValueError, match="sessions must have the shape"):
        drift(r, ref, np.zeros((4, 3), int))
    with pytest.raises(ValueError, match="sessions must be integer"):
        drift(r, ref, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="min_decline"):
        drift(r, ref, one_session, min_decline=2)


# ---------------------------------------------------------------- the report


def test_reader_profiles_is_strict_json_with_notes_for_undefined_values():
    r, truth, sessions = _drifting_panel(1)
    r[:, 1] = -1  # reader 2 read nothing
    sessions[:, 1] = -1
    rep = reader_profiles(r, truth, 4, sessions=sessions, reader_names=["A", "B", "C"])
    text = json.dumps(rep, allow_nan=False)
    assert json.loads(text) == rep
    b = rep["per_reader"]["B"]
    assert b["n_reads"] == 0 and b["accuracy"] is None and b["drift"]["p"] is None
    assert any("accuracy is None" in n for n in b["notes"])
    assert any("fewer than two sessions" in n for n in b["notes"])
    assert rep["per_reader"]["A"]["accuracy"] == pytest.approx(
        float(np.mean(r[r[:, 0] >= 0, 0] == truth[r[:, 0] >= 0])), abs=1e-6
    )
    kinds = {(f["reader"], f["kind"]) for f in rep["flags"]}
    assert ("C", "drift") in kinds and not any(f["reader"] == "A" for f in rep["flags"])
    no_sessions = reader_profiles(r, truth, 4)
    assert no_sessions["per_reader"]["R1"]["drift"] is None
    with pytest.raises(ValueError, match="reader_names must have 3"):
        reader_profiles(r, truth, 4, reader_names=["A"])
    with pytest.raises(ValueError, match="bias_reference"):
        reader_profiles(r, truth, 4, bias_reference="truth")


# ---------------------------------------------------------------- the demo study


def _load_reads(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = sorted({(row["sop_instance_uid"], row["frame"]) for row in rows})
    item = {key: i for i, key in enumerate(keys)}
    readers = sorted({row["reader"] for row in rows})
    sessions = sorted({row["session"] for row in rows}, key=lambda s: int(s.lstrip("S")))
    ratings = np.full((len(keys), len(readers)), -1)
    ses = np.full_like(ratings, -1)
    for row in rows:
        i, j = item[(row["sop_instance_uid"], row["frame"])], readers.index(row["reader"])
        ratings[i, j] = CLASSES.index(row["label"])
        ses[i, j] = sessions.index(row["session"])
    return ratings, ses, readers, sessions


def _demo_flags(study, consensus):
    with open(study.truth_path) as f:
        planted = json.load(f)["planted"]
    ratings, ses, readers, sessions = _load_reads(study.reads_csv)
    model = DawidSkene if consensus == "dawid_skene" else MajorityVote
    reference = model(len(CLASSES)).fit(ratings).labels_
    rep = reader_profiles(
        ratings,
        reference,
        len(CLASSES),
        sessions=ses,
        reader_names=readers,
        class_names=CLASSES,
        session_names=sessions,
    )
    json.dumps(rep, allow_nan=False)
    return rep, planted


def _check_planted(rep, planted, consensus):
    biased = planted["biased_reader"]["reader"]
    toward = planted["biased_reader"]["toward"]
    drifting = planted["drifting_reader"]["reader"]
    assert (biased, toward, drifting) == ("R2", "suspicious", "R3")
    flags = rep["flags"]
    bias_flags = [(f["reader"], f["class"], f["direction"]) for f in flags if f["kind"] == "bias"]
    drift_flags = [f["reader"] for f in flags if f["kind"] == "drift"]
    assert (biased, toward, "more") in bias_flags
    assert drifting in drift_flags
    for steady in ("R1", "R4"):
        assert not any(f["reader"] == steady for f in flags), (consensus, steady, flags)
    if consensus == "dawid_skene":
        # with the product's default reference, nothing but the two planted findings
        assert {f["reader"] for f in flags} == {biased, drifting}
        assert drift_flags == [drifting]
    detail = next(f["detail"] for f in flags if f["kind"] == "bias" and f["class"] == toward)
    assert detail.startswith("R2 calls suspicious on ")


@pytest.fixture(scope="module")
def demo_seed0(tmp_path_factory):
    from multireader.io.demo import generate_demo_study

    return generate_demo_study(str(tmp_path_factory.mktemp("demo0")), seed=0)


@pytest.mark.parametrize("consensus", ["dawid_skene", "majority"])
def test_demo_study_planted_readers_are_flagged_by_name(demo_seed0, consensus):
    rep, planted = _demo_flags(demo_seed0, consensus)
    _check_planted(rep, planted, consensus)
    r2 = rep["per_reader"]["R2"]["prevalence"]["suspicious"]
    assert r2["rate"] - r2["consensus_rate"] > 0.2  # planted: half of the benign calls
    r3 = rep["per_reader"]["R3"]["drift"]
    assert r3["slope_per_session"] < -0.05
    assert r3["sessions"][0]["session"] == "S1" and len(r3["sessions"]) == 6


@pytest.mark.skipif(
    not os.environ.get("MULTIREADER_SLOW_TESTS"),
    reason="about 10-15 s per seed; set MULTIREADER_SLOW_TESTS=1",
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_demo_study_flags_hold_on_other_seeds(tmp_path, seed):
    from multireader.io.demo import generate_demo_study

    study = generate_demo_study(str(tmp_path), seed=seed)
    for consensus in ("dawid_skene", "majority"):
        rep, planted = _demo_flags(study, consensus)
        _check_planted(rep, planted, consensus)
