"""UMAP maps and uniqueness from a stored embedding, through the operators and Brain."""

import numpy as np
import pytest
from helpers_plugin import op


@pytest.fixture
def embedded(demo_clone):
    """Two well-separated groups of vectors, and 6 samples with no embedding."""
    rng = np.random.default_rng(0)
    n = len(demo_clone)
    group = np.arange(n) % 2
    vecs = rng.normal(size=(n, 8)) + 12.0 * group[:, None]
    values = [None if i < 6 else v for i, v in enumerate(vecs)]
    demo_clone.set_values("embedding_test", values)
    return demo_clone, group


def test_map_is_a_brain_run_of_the_embedded_samples(embedded):
    ds, group = embedded
    out = op("compute_visualization")(ds, "embedding_test")
    assert out == {
        "brain_key": "map_embedding_test",
        "embeddings": "embedding_test",
        "method": "umap",
        "n_points": len(ds) - 6,
        "n_missing": 6,
        "dim": 8,
        "num_dims": 2,
    }
    assert "map_embedding_test" in ds.list_brain_runs()
    results = ds.load_brain_results("map_embedding_test")
    points = np.asarray(results.points)
    assert points.shape == (len(ds) - 6, 2)
    # the two planted groups stay apart on the map: nearest neighbours share a group
    ids = ds.exists("embedding_test").values("id")
    g = group[[ds.values("id").index(i) for i in ids]]
    d = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (g[d.argmin(axis=1)] == g).mean() > 0.95


def test_uniqueness_from_the_stored_embedding(embedded):
    ds, _ = embedded
    out = op("compute_uniqueness")(ds, "embedding_test")
    assert out["uniqueness_field"] == "uniqueness_embedding_test"
    assert out["n_scored"] == len(ds) - 6 and out["n_missing"] == 6
    values = [v for v in ds.values("uniqueness_embedding_test") if v is not None]
    assert len(values) == len(ds) - 6
    assert min(values) >= 0 and max(values) == pytest.approx(1.0)


def test_clear_errors(embedded):
    from multireader.embed import maps

    ds, _ = embedded
    with pytest.raises(maps.MapError, match="no embedding field 'nope'.*embedding_test"):
        maps.compute_visualization(ds, embeddings="nope")
    with pytest.raises(maps.MapError, match="at least 17 samples.*has 4"):
        maps.compute_visualization(ds.skip(2).limit(8), embeddings="embedding_test")
    with pytest.raises(maps.MapError, match="not an embedding"):
        maps.compute_uniqueness(ds, embeddings="slice_index")
    with pytest.raises(maps.MapError, match="unknown method"):
        maps.compute_visualization(ds, embeddings="embedding_test", method="mds")
