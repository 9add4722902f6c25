"""Disagreement clusters: planted clusters recovered, statistics against scipy/statsmodels.

statsmodels is a test-only peer (``multipletests``); ``multireader`` never imports it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats
from sklearn.metrics import adjusted_rand_score
from statsmodels.stats.multitest import multipletests

from multireader.stats import clusters as C

SHARP = "quality_sharpness_laplacian"
SHARP_LABEL = "sharpness (variance of the Laplacian; lower = blurrier)"
K, M, D = 5, 60, 16
BLUR = 3  # the planted blurred cluster
VENDOR_B = 1  # a cluster with its own scanner model but ordinary disagreement


def _synthetic(seed: int = 1) -> dict:
    """Five Gaussian clusters in 16-d; cluster 3 is blurred and disagreed on far more often."""
    rng = np.random.default_rng(seed)
    n = K * M
    centers = rng.normal(0, 6, (K, D))
    X = np.vstack([c + rng.normal(0, 1, (M, D)) for c in centers])
    truth = np.repeat(np.arange(K), M)
    sharp = np.where(
        truth == BLUR,
        rng.lognormal(np.log(35), 0.3, n),
        rng.lognormal(np.log(400), 0.3, n),
    )
    disagree = rng.random(n) < np.where(truth == BLUR, 0.6, 0.1)
    score = np.where(disagree, rng.uniform(0.4, 1, n), rng.uniform(0, 0.2, n))
    manufacturer = np.where(
        truth == VENDOR_B, "Vendor B", rng.choice(["Vendor A", "Vendor C"], n)
    ).astype(object)
    features = {
        SHARP: sharp,
        "quality_noise": rng.normal(5, 1, n),
        "kvp": rng.choice([100.0, 120.0, np.nan], n),
        "manufacturer_model": manufacturer,
        "patient_sex": rng.choice(np.array(["F", "M", None], dtype=object), n),
    }
    return {"X": X, "truth": truth, "disagree": disagree, "score": score, "features": features}


@pytest.fixture(scope="module")
def data() -> dict:
    return _synthetic()


def _majority(labels: np.ndarray, truth: np.ndarray, planted: int) -> int:
    return int(np.bincount(labels[(truth == planted) & (labels >= 0)]).argmax())


def _all_json(res: dict) -> None:
    json.dumps(res, allow_nan=False)


# --------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("method", ["hdbscan", "kmeans"])
def test_planted_blurred_cluster_recovered_and_ranked_first(data, method):
    labels, info = C.cluster_embeddings(data["X"], method, return_info=True)
    assert adjusted_rand_score(data["truth"], labels) > 0.95
    assert info["n_clusters"] == K
    blur = _majority(labels, data["truth"], BLUR)

    res = C.cluster_enrichment(
        labels,
        data["disagree"],
        data["score"],
        data["features"],
        feature_labels={SHARP: SHARP_LABEL},
    )
    _all_json(res)
    top = res["clusters"][0]
    assert top["cluster"] == blur and top["rank"] == 1
    assert top["enriched"] and top["rate"] > 3 * top["rest_rate"]
    assert top["mean_disagreement"] > top["rest_mean_disagreement"]
    assert [c["enriched"] for c in res["clusters"]].count(True) == 1
    feat = top["distinguishing"][0]
    assert feat["feature"] == SHARP and feat["kind"] == "numeric"
    assert feat["direction"] == "lower" and feat["effect"] < -0.9
    assert feat["effect_name"] == "cliffs_delta"
    assert feat["cluster_value"] < feat["rest_value"] / 5
    assert feat["sentence"].startswith(f"{SHARP_LABEL} is much lower in this cluster")
    assert f"Cluster {blur} " in res["summary"] and SHARP_LABEL in res["summary"]
    # the unrelated noise feature does not distinguish the blurred cluster
    assert all(f["feature"] != "quality_noise" for f in top["distinguishing"])


def test_categorical_feature_found_in_its_cluster(data):
    labels = C.cluster_embeddings(data["X"], "kmeans", n_clusters=K)
    vendor = _majority(labels, data["truth"], VENDOR_B)
    res = C.cluster_enrichment(labels, data["disagree"], features=data["features"])
    entry = next(c for c in res["clusters"] if c["cluster"] == vendor)
    assert not entry["enriched"]
    f = entry["distinguishing"][0]
    assert f["feature"] == "manufacturer_model" and f["kind"] == "categorical"
    assert f["direction"] == "Vendor B" and f["effect_name"] == "cramers_v"
    assert f["cluster_value"] == 1.0 and f["rest_value"] == 0.0
    assert "'Vendor B' is strongly over-represented" in f["sentence"]


@pytest.mark.parametrize("method", ["hdbscan", "kmeans"])
def test_pca_reduction_keeps_the_clusters(data, method):
    labels, info = C.cluster_embeddings(data["X"], method, n_components=4, return_info=True)
    assert info["n_components"] == 4
    assert adjusted_rand_score(data["truth"], labels) > 0.95
    _, info = C.cluster_embeddings(data["X"], method, n_components=D, return_info=True)
    assert info["n_components"] is None  # not fewer than d: X kept as is


def test_kmeans_chooses_k_by_silhouette_and_is_seeded(data):
    a, info = C.cluster_embeddings(data["X"], "kmeans", return_info=True, seed=3)
    b = C.cluster_embeddings(data["X"], "kmeans", seed=3)
    np.testing.assert_array_equal(a, b)
    assert set(info["silhouette"]) == set(range(2, 11))
    assert max(info["silhouette"], key=info["silhouette"].get) == info["n_clusters"] == K


def test_hdbscan_marks_outliers_as_noise_reported_separately(data):
    rng = np.random.default_rng(5)
    X = np.vstack([data["X"], rng.uniform(-60, 60, (10, D))])
    labels = C.cluster_embeddings(X, "hdbscan")
    assert (labels[-10:] == -1).sum() >= 8
    n = X.shape[0]
    disagree = np.r_[data["disagree"], np.ones(10, bool)]
    res = C.cluster_enrichment(labels, disagree)
    _all_json(res)
    assert all(c["cluster"] >= 0 for c in res["clusters"])
    assert res["noise"]["cluster"] == -1 and res["noise"]["size"] == (labels == -1).sum()
    assert res["noise"]["p"] is None and "rank" not in res["noise"]
    assert res["n_samples"] == n


# --------------------------------------------------------------------------- peers


def test_fisher_and_bh_equal_scipy_and_statsmodels(data):
    labels = C.cluster_embeddings(data["X"], "kmeans", n_clusters=K)
    dis = data["disagree"]
    res = C.cluster_enrichment(labels, dis, features=data["features"])
    by_id = {c["cluster"]: c for c in res["clusters"]}
    ids = sorted(by_id)
    p_ref = []
    for c in ids:
        m = labels == c
        a, b = dis[m].sum(), dis[~m].sum()
        table = [[a, m.sum() - a], [b, (~m).sum() - b]]
        ref = stats.fisher_exact(table, alternative="greater")
        p_ref.append(ref.pvalue)
        assert_allclose(by_id[c]["p"], ref.pvalue, rtol=1e-12)
        assert_allclose(by_id[c]["odds_ratio"], ref.statistic, rtol=1e-12)
        assert_allclose(by_id[c]["rate_ratio"], (a / m.sum()) / (b / (~m).sum()), rtol=1e-12)
    p_adj_ref = multipletests(p_ref, method="fdr_bh")[1]
    assert_allclose([by_id[c]["p_adj"] for c in ids], p_adj_ref, rtol=1e-12)

    # one BH family over every feature test of every cluster
    tests = [f for c in ids for f in by_id[c]["features"]]
    assert len(tests) == K * len(data["features"])
    adj = multipletests([f["p"] for f in tests], method="fdr_bh")[1]
    assert_allclose([f["p_adj"] for f in tests], adj, rtol=1e-12)


def test_feature_tests_equal_scipy(data):
    labels = C.cluster_embeddings(data["X"], "kmeans", n_clusters=K)
    feats = data["features"]
    res = C.cluster_enrichment(labels, data["disagree"], features=feats)
    for entry in res["clusters"]:
        m = labels == entry["cluster"]
        by_name = {f["feature"]: f for f in entry["features"]}
        for name in (SHARP, "quality_noise", "kvp"):
            x = feats[name]
            a, b = x[m & ~np.isnan(x)], x[~m & ~np.isnan(x)]
            ref = stats.mannwhitneyu(a, b, alternative="two-sided")
            assert_allclose(by_name[name]["p"], ref.pvalue, rtol=1e-12)
            assert_allclose(by_name[name]["effect"], 2 * ref.statistic / (a.size * b.size) - 1)
            assert by_name[name]["cluster_value"] == np.median(a)
        for name in ("manufacturer_model", "patient_sex"):
            x = feats[name]
            ok = np.array([v is not None for v in x])
            cats = sorted({v for v in x if v is not None})
            table = np.array(
                [
                    [np.sum((x == c) & m & ok) for c in cats],
                    [np.sum((x == c) & ~m & ok) for c in cats],
                ]
            )
            table = table[:, table.sum(axis=0) > 0]
            if table.shape[1] == 2:
                ref_p = stats.fisher_exact(table).pvalue
            else:
                ref_p = stats.chi2_contingency(table, correction=False).pvalue
            assert_allclose(by_name[name]["p"], ref_p, rtol=1e-12)
            v = stats.contingency.association(table, method="cramer")
            assert_allclose(by_name[name]["effect"], v, rtol=1e-12)


def _cliff_brute(x, y):
    x, y = np.asarray(x, float)[:, None], np.asarray(y, float)[None, :]
    return ((x > y).sum() - (x < y).sum()) / (x.size * y.size)


def _cohen_ref(x, y):
    nx, ny = len(x), len(y)
    sx = sum((v - sum(x) / nx) ** 2 for v in x) / (nx - 1)
    sy = sum((v - sum(y) / ny) ** 2 for v in y) / (ny - 1)
    sp = (((nx - 1) * sx + (ny - 1) * sy) / (nx + ny - 2)) ** 0.5
    return (sum(x) / nx - sum(y) / ny) / sp


def test_effect_sizes_equal_independent_computation():
    rng = np.random.default_rng(7)
    for _ in range(20):
        x = rng.integers(0, 6, rng.integers(2, 30)).astype(float)  # ties on purpose
        y = rng.normal(2, 2, rng.integers(2, 30)).round(0)
        assert_allclose(C.cliffs_delta(x, y), _cliff_brute(x, y), atol=1e-12)
        if x.std() + y.std() > 0:
            assert_allclose(C.cohens_d(x, y), _cohen_ref(list(x), list(y)), rtol=1e-10)
    assert C.cliffs_delta([5, 6, np.nan], [1, 2, 3]) == 1.0
    assert C.cliffs_delta([1, 1], [1, 1]) == 0.0
    assert np.isnan(C.cohens_d([1, 1], [2, 2]))
    # Cohen (1988): d = 0.2 / 0.5 / 0.8 = small / medium / large; here exactly -2
    assert_allclose(C.cohens_d([1, 2, 3], [3, 4, 5]), -2.0)
    assert_allclose(C.cramers_v([[10, 0], [0, 10]]), 1.0)
    assert_allclose(C.cramers_v([[5, 5], [5, 5]]), 0.0)


def test_effect_size_errors():
    with pytest.raises(ValueError, match="cliffs_delta needs at least one value"):
        C.cliffs_delta([np.nan], [1.0])
    with pytest.raises(ValueError, match="cohens_d needs at least two values"):
        C.cohens_d([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="table must be 2-D"):
        C.cramers_v([1, 2])
    with pytest.raises(ValueError, match="non-empty rows or columns"):
        C.cramers_v([[3, 0], [4, 0]])


# --------------------------------------------------------------------------- ranking


def test_ranking_enriched_by_rate_ratio_then_rest_by_p():
    # cluster 0: 20/40, cluster 1: 30/40, cluster 2: 2/40, cluster 3: 4/40, cluster 4: 3/40
    labels = np.repeat(np.arange(5), 40)
    hits = [20, 30, 2, 4, 3]
    disagree = np.concatenate([np.arange(40) < h for h in hits])
    res = C.cluster_enrichment(labels, disagree)
    order = [c["cluster"] for c in res["clusters"]]
    enriched = [c["cluster"] for c in res["clusters"] if c["enriched"]]
    assert enriched == [1, 0]
    rest = [c for c in res["clusters"] if not c["enriched"]]
    assert [c["p"] for c in rest] == sorted(c["p"] for c in rest)
    assert order[:2] == [1, 0] and [c["rank"] for c in res["clusters"]] == [1, 2, 3, 4, 5]
    assert "rate ratio" in res["ranking"] and "noise" in res["ranking"]


def test_infinite_rate_ratio_is_none_with_note_and_ranked_first():
    labels = np.repeat([0, 1, 2], 20)
    disagree = np.zeros(60, bool)
    disagree[:12] = True  # 12/20 in cluster 0, none elsewhere
    res = C.cluster_enrichment(labels, disagree)
    _all_json(res)
    top = res["clusters"][0]
    assert top["cluster"] == 0 and top["enriched"] and top["rest_rate"] == 0
    assert top["rate_ratio"] is None and top["odds_ratio"] is None
    assert any("infinite" in n for n in top["notes"])
    assert "rate ratio infinite" in res["summary"]


# --------------------------------------------------------------------------- edge cases


def test_no_disagreement_anywhere_means_nothing_enriched(data):
    labels = C.cluster_embeddings(data["X"], "kmeans", n_clusters=K)
    res = C.cluster_enrichment(labels, np.zeros(K * M, bool), features=data["features"])
    _all_json(res)
    assert not any(c["enriched"] for c in res["clusters"])
    assert all(c["p"] == 1.0 and c["rate_ratio"] is None for c in res["clusters"])
    assert "agreed on all" in res["summary"]
    assert any("no sample is disagreed on" in n for n in res["notes"])
    # features are still described: the blurred cluster is still the blurry one
    blur = _majority(labels, data["truth"], BLUR)
    entry = next(c for c in res["clusters"] if c["cluster"] == blur)
    assert entry["distinguishing"][0]["feature"] == SHARP


def test_everyone_disagrees_nothing_enriched():
    labels = np.repeat([0, 1], 10)
    res = C.cluster_enrichment(labels, np.ones(20, bool))
    assert not any(c["enriched"] for c in res["clusters"])
    assert "No cluster has significantly more disagreement" in res["summary"]


def test_single_cluster_no_rest():
    res = C.cluster_enrichment(np.zeros(30, int), np.arange(30) % 3 == 0)
    _all_json(res)
    (c,) = res["clusters"]
    assert c["p"] is None and c["p_adj"] is None and not c["enriched"]
    assert c["rest_rate"] is None and c["rate"] == 10 / 30
    assert any("nothing to compare against" in n for n in c["notes"])
    assert "single cluster" in res["summary"]


def test_single_cluster_with_noise_is_tested_against_noise():
    labels = np.r_[np.zeros(30, int), -np.ones(10, int)]
    disagree = np.r_[np.ones(20), np.zeros(10), np.zeros(10)].astype(bool)
    res = C.cluster_enrichment(labels, disagree)
    (c,) = res["clusters"]
    ref = stats.fisher_exact([[20, 10], [0, 10]], alternative="greater").pvalue
    assert_allclose(c["p"], ref)
    assert res["noise"]["size"] == 10 and res["noise"]["rate"] == 0


def test_all_noise():
    res = C.cluster_enrichment(-np.ones(25, int), np.arange(25) % 2 == 0)
    _all_json(res)
    assert res["clusters"] == [] and res["n_clusters"] == 0
    assert res["noise"]["size"] == 25
    assert "all 25 samples are noise" in res["summary"]


def test_hdbscan_all_identical_rows_is_all_noise():
    labels = C.cluster_embeddings(np.ones((30, 4)), "hdbscan")
    assert (labels == -1).all()


def test_constant_feature_not_tested_with_reason():
    labels = np.repeat([0, 1], 15)
    res = C.cluster_enrichment(
        labels,
        np.arange(30) < 10,
        features={"slice_thickness": np.full(30, 1.25), "contrast": np.array(["yes"] * 30)},
    )
    for c in res["clusters"]:
        assert c["features"] == [] and c["distinguishing"] == []
        reasons = " ".join(c["features_not_tested"])
        assert "slice_thickness: not tested, it takes one value (1.25)" in reasons
        assert "contrast: not tested, it takes one value ('yes')" in reasons


def test_missing_feature_values_ignored_and_counted(data):
    labels = C.cluster_embeddings(data["X"], "kmeans", n_clusters=K)
    blur = _majority(labels, data["truth"], BLUR)
    sharp = data["features"][SHARP].copy()
    m = labels == blur
    holes = np.flatnonzero(m)[:7]
    sharp[holes] = np.nan
    sharp[np.flatnonzero(~m)[:11]] = np.nan
    res = C.cluster_enrichment(labels, data["disagree"], features={SHARP: sharp})
    entry = next(c for c in res["clusters"] if c["cluster"] == blur)
    f = entry["distinguishing"][0]
    assert f["n_missing_cluster"] == 7 and f["n_cluster"] == m.sum() - 7
    assert f["n_missing_rest"] == 11 and f["n_rest"] == (~m).sum() - 11
    ok = ~np.isnan(sharp)
    ref = stats.mannwhitneyu(sharp[m & ok], sharp[~m & ok], alternative="two-sided")
    assert_allclose(f["p"], ref.pvalue, rtol=1e-12)


def test_object_feature_with_none_is_numeric():
    labels = np.repeat([0, 1], 10)
    kvp = np.array([120, None] * 5 + [80, 81] * 5, dtype=object)
    res = C.cluster_enrichment(labels, np.arange(20) < 8, features={"kvp": kvp})
    f = next(c for c in res["clusters"] if c["cluster"] == 0)["features"][0]
    assert f["kind"] == "numeric" and f["n_cluster"] == 5 and f["n_missing_cluster"] == 5


def test_feature_with_too_few_values_not_tested():
    labels = np.repeat([0, 1], 10)
    x = np.full(20, np.nan)
    x[0] = 1.0
    x[10:] = np.arange(10)
    res = C.cluster_enrichment(labels, np.arange(20) < 8, features={"kvp": x})
    c0 = next(c for c in res["clusters"] if c["cluster"] == 0)
    assert c0["features"] == []
    assert (
        "needs 2 observed values in the cluster and in the rest; has 1 and 10"
        in (c0["features_not_tested"][0])
    )


def test_constant_groups_that_differ_give_delta_one_and_no_cohens_d():
    labels = np.repeat([0, 1], 10)
    x = np.r_[np.full(10, 1.0), np.full(10, 3.0)]
    res = C.cluster_enrichment(labels, np.arange(20) < 8, features={"kvp": x})
    f = next(c for c in res["clusters"] if c["cluster"] == 0)["distinguishing"][0]
    assert f["effect"] == -1.0 and f["cohens_d"] is None and "pooled SD = 0" in f["note"]
    _all_json(res)


def test_undefined_disagree_left_out_of_counts():
    labels = np.repeat([0, 1], 10)
    dis = np.r_[np.ones(6), np.full(4, np.nan), np.zeros(10)]
    score = np.r_[np.full(6, 0.8), np.full(4, np.nan), np.full(10, 0.1)]
    res = C.cluster_enrichment(labels, dis, score)
    c0 = next(c for c in res["clusters"] if c["cluster"] == 0)
    assert c0["size"] == 10 and c0["n_rated"] == 6 and c0["rate"] == 1.0
    assert c0["mean_disagreement"] == pytest.approx(0.8)
    assert res["n_rated"] == 16 and any("undefined" in n for n in c0["notes"])


def test_top_features_and_min_effect(data):
    labels = C.cluster_embeddings(data["X"], "kmeans", n_clusters=K)
    res = C.cluster_enrichment(
        labels, data["disagree"], features=data["features"], min_effect=0.0, top_features=1
    )
    assert all(len(c["distinguishing"]) <= 1 for c in res["clusters"])
    top = res["clusters"][0]
    top["distinguishing"][0]["reason"] = "annotated by a caller"
    assert all("reason" not in f for f in top["features"])
    strict = C.cluster_enrichment(labels, data["disagree"], features=data["features"])
    for c in strict["clusters"]:
        for f in c["distinguishing"]:
            assert f["p_adj"] < 0.05 and abs(f["effect"]) >= 0.5


# --------------------------------------------------------------------------- errors


def test_cluster_embeddings_too_few_samples():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="needs at least 10 samples.*X has 7"):
        C.cluster_embeddings(rng.normal(size=(7, 3)), "hdbscan")
    with pytest.raises(ValueError, match="min_cluster_size=8 needs at least 16 samples"):
        C.cluster_embeddings(rng.normal(size=(15, 3)), "hdbscan", min_cluster_size=8)
    with pytest.raises(ValueError, match="n_clusters=5 needs at least 5 samples; X has 3"):
        C.cluster_embeddings(rng.normal(size=(3, 3)), "kmeans", n_clusters=5)
    with pytest.raises(ValueError, match="needs at least 3 samples; X has 2"):
        C.cluster_embeddings(rng.normal(size=(2, 3)), "kmeans")


def test_cluster_embeddings_bad_X():
    X = np.random.default_rng(0).normal(size=(20, 3))
    X[[1, 4], 0] = np.nan
    X[9, 2] = np.inf
    with pytest.raises(ValueError, match=r"NaN or infinite values in 3 row\(s\): 1, 4, 9"):
        C.cluster_embeddings(X)
    with pytest.raises(ValueError, match=r"X has no columns \(d = 0\)"):
        C.cluster_embeddings(np.empty((20, 0)))
    with pytest.raises(ValueError, match="X must be 2-D"):
        C.cluster_embeddings(np.zeros(20))
    with pytest.raises(ValueError, match="X has no rows"):
        C.cluster_embeddings(np.empty((0, 3)))
    with pytest.raises(ValueError, match="X must hold numbers"):
        C.cluster_embeddings(np.array([["a", "b"]] * 20))
    with pytest.raises(ValueError, match="only 1 distinct row"):
        C.cluster_embeddings(np.ones((20, 3)), "kmeans")
    with pytest.raises(ValueError, match="only 2 distinct row"):
        C.cluster_embeddings(
            np.repeat([[0.0, 1.0], [5.0, 2.0]], 10, axis=0), "kmeans", n_clusters=3
        )


def test_cluster_embeddings_bad_arguments():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="method must be 'hdbscan' or 'kmeans'"):
        C.cluster_embeddings(X, "dbscan")
    with pytest.raises(ValueError, match="n_clusters must be at least 2"):
        C.cluster_embeddings(X, "kmeans", n_clusters=1)
    with pytest.raises(ValueError, match="min_cluster_size must be an integer"):
        C.cluster_embeddings(X, min_cluster_size=2.5)
    with pytest.raises(ValueError, match="n_components must be at least 1"):
        C.cluster_embeddings(X, n_components=0)
    with pytest.raises(ValueError, match="standardize must be True or False"):
        C.cluster_embeddings(X, standardize="yes")


def test_cluster_enrichment_bad_arguments():
    labels = np.repeat([0, 1], 5)
    ok = np.arange(10) < 3
    with pytest.raises(ValueError, match=r"disagree must have shape \(10,\)"):
        C.cluster_enrichment(labels, ok[:9])
    with pytest.raises(ValueError, match="disagree must be 0/1"):
        C.cluster_enrichment(labels, np.arange(10))
    with pytest.raises(ValueError, match="labels holds -2"):
        C.cluster_enrichment(np.r_[labels[:-1], -2], ok)
    with pytest.raises(ValueError, match="labels must hold integer"):
        C.cluster_enrichment(labels.astype(str), ok)
    with pytest.raises(ValueError, match="disagreement must lie in"):
        C.cluster_enrichment(labels, ok, np.full(10, 1.5))
    with pytest.raises(ValueError, match="alpha must be a number strictly between 0 and 1"):
        C.cluster_enrichment(labels, ok, alpha=0)
    with pytest.raises(ValueError, match="min_effect must be a number in"):
        C.cluster_enrichment(labels, ok, min_effect=2)
    with pytest.raises(ValueError, match=r"features\['kvp'\] must have shape \(10,\)"):
        C.cluster_enrichment(labels, ok, features={"kvp": np.ones(3)})
    with pytest.raises(ValueError, match=r"features\['kvp'\] holds infinite"):
        C.cluster_enrichment(labels, ok, features={"kvp": np.r_[np.ones(9), np.inf]})
    with pytest.raises(ValueError, match="features must be a dict"):
        C.cluster_enrichment(labels, ok, features=[1, 2])


def test_preferred_features_lead_among_equal_effects_and_outcome_names_the_summary():
    """Two features both separate the cluster completely (Cliff's delta -1): by default
    the larger Cohen's d leads; a preferred feature leads whatever its d."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [40, 160])
    disagree = np.r_[np.ones(40, bool), rng.random(160) < 0.2]
    darker = np.r_[rng.normal(-20, 1, 40), rng.normal(50, 5, 160)]  # d about -19
    sharp = np.r_[rng.normal(10, 2, 40), rng.normal(80, 12, 160)]  # d about -6
    feats = {"brightness": darker, "sharpness": sharp}
    plain = C.cluster_enrichment(labels, disagree, features=feats)
    top = next(c for c in plain["clusters"] if c["cluster"] == 0)
    assert [f["effect"] for f in top["distinguishing"]] == [-1.0, -1.0]
    assert top["distinguishing"][0]["feature"] == "brightness"
    pref = C.cluster_enrichment(
        labels, disagree, features=feats, preferred_features=["sharpness"], outcome="contested"
    )
    top = next(c for c in pref["clusters"] if c["cluster"] == 0)
    assert top["distinguishing"][0]["feature"] == "sharpness"
    assert "of its samples are contested vs" in pref["summary"]
