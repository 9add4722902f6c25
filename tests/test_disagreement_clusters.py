"""find_disagreement_clusters end to end on the demo study: the planted degraded images
form the top-ranked clusters, and the blurred one is explained by blur."""

import json

import numpy as np
import pytest
from helpers_plugin import op


@pytest.fixture(scope="module")
def analysed(demo_dataset, demo_study):
    """Agreement, the weight-free embedding and the quality metrics, through the operators."""
    clone = demo_dataset.clone(demo_dataset.name + "-clusters")
    op("compute_agreement")(clone, kinds=["classification"], n_boot=0)
    op("compute_embeddings")(clone, model="radiomics")
    op("compute_quality_metrics")(clone)
    with open(demo_study.truth_path) as f:
        truth = json.load(f)
    planted = {
        truth["images"][k]["dicom_key"]: truth["images"][k]["degradation"]
        for k in truth["planted"]["degraded_images"]["keys"]
    }
    yield clone, planted
    clone.delete()


def _composition(ds, field, cluster, planted):
    keys = ds.match({field: cluster}).values("dicom_key")
    kinds = [planted.get(k, "clean") for k in keys]
    return {k: kinds.count(k) for k in set(kinds)}


@pytest.mark.parametrize("method", ["hdbscan", "kmeans"])
def test_planted_degraded_images_rank_first_and_blur_is_named(analysed, method):
    from multireader.analyses import disagreement_clusters as DC

    ds, planted = analysed
    res = DC.find_disagreement_clusters(
        ds, embeddings="embedding_radiomics", method=method, run_key=f"clusters_{method}"
    )
    field = res["cluster_field"]
    top = res["clusters"][0]
    comp = _composition(ds, field, top["cluster"], planted)
    print(
        method,
        [
            (c["cluster"], c["size"], c["rate"], c["p_adj"], c.get("reason"))
            for c in res["clusters"]
        ],
    )
    # the first-ranked cluster is (almost) only planted degraded images, and enriched
    assert top["enriched"]
    assert sum(v for k, v in comp.items() if k != "clean") >= 0.9 * top["size"]
    # the blurred images' cluster is enriched and explained by blur
    blurred = [
        c
        for c in res["clusters"]
        if _composition(ds, field, c["cluster"], planted).get("blurred", 0) >= 0.9 * c["size"]
    ]
    assert blurred, "no cluster of blurred images"
    cl = blurred[0]
    assert cl["enriched"] and cl["rank"] <= 2
    first = cl["distinguishing"][0]
    assert first["feature"].startswith("quality_sharpness") and first["direction"] == "lower"
    assert cl["reason"] == "blurrier"
    assert "blurrier" in first["sentence"]


def test_operator_writes_ids_saves_views_and_stores_the_run(analysed):
    from multireader.core import runs

    ds, planted = analysed
    out = op("find_disagreement_clusters")(ds, "embedding_radiomics", run_key="clusters_op")
    assert out["cluster_field"] == "cluster_embedding_radiomics"
    ids = ds.values(out["cluster_field"])
    assert all(isinstance(v, int) for v in ids)
    rows = out["clusters"]
    assert rows[0]["rank"] == 1 and rows[0]["enriched"] == "yes" and rows[0]["view"]
    # one click: the saved view is exactly that cluster's samples
    view = ds.load_saved_view(rows[0]["view"])
    assert len(view) == rows[0]["size"] == ids.count(rows[0]["cluster"])
    stored = runs.load(ds, "clusters_op", "clusters")
    assert stored["results"]["clusters"][0]["cluster"] == rows[0]["cluster"]
    assert stored["config"]["embeddings"] == "embedding_radiomics"
    assert np.isfinite(stored["results"]["threshold"])


def test_clear_errors(demo_clone):
    from multireader.analyses import disagreement_clusters as DC

    demo_clone.set_values("emb", [np.ones(4) * i for i in range(len(demo_clone))])
    with pytest.raises(DC.ClusterError, match="compute_agreement first"):
        DC.find_disagreement_clusters(demo_clone, embeddings="emb")
    op("compute_agreement")(demo_clone, kinds=["classification"], n_boot=0)
    with pytest.raises(DC.ClusterError, match="no embedding field 'nope'"):
        DC.find_disagreement_clusters(demo_clone, embeddings="nope")
    with pytest.raises(DC.ClusterError, match="at least 10 samples"):
        DC.find_disagreement_clusters(demo_clone.limit(5), embeddings="emb")
    with pytest.raises(DC.ClusterError, match="unknown outcome"):
        DC.find_disagreement_clusters(demo_clone, embeddings="emb", outcome="vibes")


def test_wide_embeddings_are_reduced_with_pca_first(analysed):
    """A 128-d embedding (CLIP-like width) is projected to 50 components before HDBSCAN,
    and the same planted cluster still ranks first."""
    from multireader.analyses import disagreement_clusters as DC
    from multireader.core import runs

    ds, planted = analysed
    X = np.array(ds.values("embedding_radiomics"))
    W = np.random.default_rng(0).normal(size=(X.shape[1], 128))
    ds.set_values("embedding_wide", list(X @ W))
    narrow = DC.find_disagreement_clusters(ds, embeddings="embedding_radiomics", run_key="n")
    wide = DC.find_disagreement_clusters(ds, embeddings="embedding_wide", run_key="w")
    assert runs.load(ds, "w")["config"]["n_components"] == 50
    assert runs.load(ds, "n")["config"]["n_components"] is None

    def top(res):
        first = res["clusters"][0]["cluster"]
        return set(ds.match({res["cluster_field"]: first}).values("id"))

    assert top(wide) == top(narrow)
