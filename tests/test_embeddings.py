"""compute_embeddings: the radiomics vector against independent computations and the
demo's planted degradations, the open_clip path against open_clip's own encode_image on
a checkpoint saved here, resumability, per-image errors, model errors, the similarity
index, and the operator through FiftyOne's executor (immediate and delegated)."""

import json
import os

import numpy as np
import pytest
from helpers_plugin import form, op, run_queued

#: a tiny open_clip architecture, so tests save and load a real checkpoint in seconds
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A randomly initialised tiny open_clip model saved the ways a user's model arrives:
    a model config JSON with a checkpoint file, and a directory in open_clip's hub layout."""
    import open_clip
    import torch

    root = tmp_path_factory.mktemp("tiny_clip")
    cfg_path = root / "tiny-test-clip.json"
    cfg_path.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(str(cfg_path))
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-test-clip")
    ckpt = root / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    hub = root / "hub_layout"
    hub.mkdir()
    (hub / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_CFG, "preprocess_cfg": {}})
    )
    torch.save(model.state_dict(), hub / "open_clip_pytorch_model.bin")
    return {"config": str(cfg_path), "checkpoint": str(ckpt), "dir": str(hub)}


def _truth_labels(dataset, study):
    with open(study.truth_path) as f:
        truth = json.load(f)
    by_key = {v["dicom_key"]: v for v in truth["images"].values()}
    keys = dataset.values("dicom_key")
    return np.array([by_key[k]["degradation"] or "clean" for k in keys])


# --- radiomics against independent computations -------------------------------------
def _glcm_numpy(q, levels):
    """A symmetric, normalised GLCM at distance 1 for 0, 45, 90, 135 degrees, by bincount."""
    h, w = q.shape
    pairs = [
        (q[:, :-1], q[:, 1:]),  # 0: right neighbour
        (q[1:, :-1], q[:-1, 1:]),  # 45: up-right (row - 1, col + 1)
        (q[:-1, :], q[1:, :]),  # 90: scikit-image's pi/2 pairs (r, c) with (r - 1, c)
        (q[1:, 1:], q[:-1, :-1]),  # 135: up-left
    ]
    out = np.zeros((levels, levels, len(pairs)))
    for k, (a, b) in enumerate(pairs):
        m = np.bincount(a.ravel() * levels + b.ravel(), minlength=levels * levels)
        m = m.reshape(levels, levels).astype(float)
        m = m + m.T
        out[:, :, k] = m / m.sum()
    return out


def _haralick(p):
    i, j = np.meshgrid(np.arange(p.shape[0]), np.arange(p.shape[1]), indexing="ij")
    res = {k: [] for k in ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")}
    res["entropy"] = []
    for k in range(p.shape[2]):
        q = p[:, :, k]
        mi, mj = (i * q).sum(), (j * q).sum()
        si = np.sqrt(((i - mi) ** 2 * q).sum())
        sj = np.sqrt(((j - mj) ** 2 * q).sum())
        res["contrast"].append((q * (i - j) ** 2).sum())
        res["dissimilarity"].append((q * abs(i - j)).sum())
        res["homogeneity"].append((q / (1 + (i - j) ** 2)).sum())
        res["energy"].append(np.sqrt((q**2).sum()))
        res["correlation"].append((q * (i - mi) * (j - mj)).sum() / (si * sj))
        res["entropy"].append(-(q[q > 0] * np.log(q[q > 0])).sum())
    return {k: float(np.mean(v)) for k, v in res.items()}


def test_radiomics_features_match_independent_computations():
    from scipy import ndimage, stats

    from multireader.embed import embeddings as E

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:128, :160]
    hu = np.where((yy - 64) ** 2 / 50**2 + (xx - 80) ** 2 / 60**2 < 1, 40.0, -1000.0)
    hu[40:60, 50:70] = -800.0
    hu[90:100, 70:90] = 700.0
    native = np.clip(hu + rng.normal(0, 25, hu.shape), -1024, 3071).astype(np.int16)
    f = dict(zip(E.RADIOMICS_FEATURES, E.radiomics_features(native, "HU"), strict=True))
    x = native.astype(float).ravel()

    assert f["mean"] == pytest.approx(x.mean(), rel=1e-6)
    assert f["log_std"] == pytest.approx(np.log1p(x.std()), rel=1e-6)
    assert f["skewness"] == pytest.approx(stats.skew(x), rel=1e-5)
    assert f["excess_kurtosis"] == pytest.approx(stats.kurtosis(x), rel=1e-5)
    pcts = np.percentile(x, [1, 10, 50, 90, 99], method="inverted_cdf")
    assert [f[k] for k in ("p01", "p10", "p50", "p90", "p99")] == pytest.approx(pcts)
    for name, lo, hi in E.HU_BANDS:
        assert f[f"band_{name}"] == pytest.approx(np.mean((x >= lo) & (x < hi))), name

    lo, hi = E.GLCM_HU_RANGE
    q = np.clip((native - lo) * (E.GLCM_LEVELS / (hi - lo)), 0, E.GLCM_LEVELS - 1).astype(int)
    ref = _haralick(_glcm_numpy(q, E.GLCM_LEVELS))
    assert f["glcm_log_contrast"] == pytest.approx(np.log1p(ref["contrast"]), rel=1e-6)
    for k in ("dissimilarity", "homogeneity", "energy", "correlation", "entropy"):
        assert f[f"glcm_{k}"] == pytest.approx(ref[k], rel=1e-6), k

    y = native.astype(float)
    grad = np.hypot(ndimage.sobel(y, axis=1), ndimage.sobel(y, axis=0))[1:-1, 1:-1] / 8.0
    assert f["log_gradient_mean"] == pytest.approx(np.log1p(grad.mean()), rel=1e-5)
    assert f["log_gradient_std"] == pytest.approx(np.log1p(grad.std()), rel=1e-5)
    assert f["edge_density"] == pytest.approx(np.mean(grad > E.EDGE_HU), abs=1e-6)
    g90 = np.percentile(grad[::2, ::2], 90, method="inverted_cdf")
    assert f["log_gradient_p90"] == pytest.approx(np.log1p(g90), rel=1e-4)
    lap = ndimage.laplace(y)[1:-1, 1:-1]
    assert f["log_laplacian_var"] == pytest.approx(np.log1p(lap.var()), rel=1e-5)
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], float)
    conv = ndimage.convolve(y, mask)[1:-1, 1:-1]
    sigma = np.sqrt(np.pi / 2) * np.abs(conv).sum() / (6 * conv.size)
    assert f["log_noise_sigma"] == pytest.approx(np.log1p(sigma), rel=1e-5)

    power = np.abs(np.fft.fft2(y - y.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(y.shape[0]), np.fft.fftfreq(y.shape[1]), indexing="ij")
    r = np.hypot(fy, fx)
    r[0, 0] = -1  # the mean carries no texture
    total = power[r >= 0].sum()
    for k, (b_lo, b_hi) in enumerate(E.FREQ_BANDS):
        share = power[(r >= b_lo) & (r < b_hi)].sum() / total
        assert f[f"log_freq_band_{k}"] == pytest.approx(np.log10(share + 1e-9), abs=1e-6)


def test_noise_and_frequency_estimates_recover_known_values():
    from multireader.embed import embeddings as E

    names = list(E.RADIOMICS_FEATURES)
    rng = np.random.default_rng(0)
    flat = 40.0 + rng.normal(0, 20.0, (256, 256))
    noise = np.expm1(E.radiomics_features(flat.astype(np.float32))[names.index("log_noise_sigma")])
    assert noise == pytest.approx(20.0, rel=0.03)  # Immerkaer on pure Gaussian noise

    xx = np.arange(256)[None, :].repeat(256, 0)
    # 26 whole cycles across 256 pixels (0.102 cycles/pixel, in band [1/16, 1/8)): no leakage
    wave = 100.0 * np.cos(2 * np.pi * 26 / 256 * xx)
    f = E.radiomics_features(wave)
    shares = 10 ** f[[names.index(f"log_freq_band_{k}") for k in range(len(E.FREQ_BANDS))]]
    assert shares[2] == pytest.approx(1.0, abs=1e-6)
    assert shares[[0, 1, 3, 4]].max() < 1e-6


def test_non_hu_images_are_read_relative_to_their_own_range():
    from multireader.embed import embeddings as E

    rng = np.random.default_rng(1)
    mr = rng.gamma(2.0, 150.0, (96, 96))
    a = E.radiomics_features(mr, unit="")
    b = E.radiomics_features(mr * 3.0 + 500.0, unit="")  # another scanner's gain and offset
    assert a == pytest.approx(b, rel=1e-3, abs=1e-3)
    with pytest.raises(ValueError, match="2-D image"):
        E.radiomics_features(np.zeros(10))


def test_default_field_names_and_model_specs():
    from multireader.embed import embeddings as E

    assert E.default_field() == "embedding_radiomics"
    assert E.default_field("ViT-B-32") == "embedding_vit_b_32"
    assert E.default_field("biomedclip") == "embedding_biomedclip"
    assert E.default_field(E.BIOMEDCLIP) == "embedding_biomedclip"
    assert E.default_field("/models/my-ct-clip.json") == "embedding_my_ct_clip"
    assert E.resolve_model("biomedclip").model == E.BIOMEDCLIP
    assert E.resolve_model("radiomics").key == E.resolve_model("Radiomics").key
    a = E.resolve_model("ViT-B-32", "openai", window="auto")
    b = E.resolve_model("ViT-B-32", "openai", window="lung")
    assert a.key != b.key  # another window is another input, so other vectors


# --- radiomics on the demo study ------------------------------------------------------
def test_radiomics_separates_the_planted_degraded_images(demo_clone, demo_study):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from sklearn.neighbors import NearestNeighbors

    from multireader.embed import embeddings as E

    seen = []
    report = E.compute_embeddings(demo_clone, progress=lambda f, m: seen.append(f))
    assert report["field"] == "embedding_radiomics" and report["dim"] == 33
    assert report["n_embedded"] == len(demo_clone) and report["errors"] == []
    assert seen[-1] == 1.0 and seen == sorted(seen)
    X = np.stack(demo_clone.values("embedding_radiomics"))
    labels = _truth_labels(demo_clone, demo_study)
    assert {"blurred", "low_dose"} <= set(labels)

    # every image's five nearest neighbours share its degradation
    _, idx = NearestNeighbors(n_neighbors=6).fit(X).kneighbors(X)
    assert (labels[idx[:, 1:]] == labels[:, None]).mean() > 0.95
    clusters = KMeans(3, n_init=10, random_state=0).fit_predict(X)
    assert adjusted_rand_score(labels, clusters) > 0.9

    # the features that should move, move the right way
    info = demo_clone.get_field("embedding_radiomics").info["multireader"]
    assert info["feature_names"] == list(E.RADIOMICS_FEATURES)
    raw = X * np.array(info["scale"]) + np.array(info["center"])
    col = {n: raw[:, i] for i, n in enumerate(info["feature_names"])}
    clean = labels == "clean"
    assert (
        col["log_laplacian_var"][labels == "blurred"].max() < col["log_laplacian_var"][clean].min()
    )
    assert col["log_noise_sigma"][labels == "low_dose"].min() > col["log_noise_sigma"][clean].max()

    # the stored vector is the standardised raw vector of the native file
    path = demo_clone.first()["native_path"]
    expect = (E.radiomics_features(np.load(path), "HU") - info["center"]) / info["scale"]
    assert X[0] == pytest.approx(expect, rel=1e-5, abs=1e-5)


def test_resume_skips_samples_already_embedded(demo_clone):
    from multireader.embed import embeddings as E

    first = demo_clone.limit(40)
    r1 = E.compute_embeddings(first)
    assert (r1["n_embedded"], r1["n_skipped"]) == (40, 0)
    stored = demo_clone.limit(40).values("embedding_radiomics")
    # break an embedded sample's image: a resumed run must not even read it
    broken = demo_clone.first()
    broken["native_path"] = "/nonexistent/never-read.npy"
    broken.save()

    r2 = E.compute_embeddings(demo_clone)
    assert (r2["n_embedded"], r2["n_skipped"]) == (len(demo_clone) - 40, 40)
    assert r2["errors"] == []
    again = demo_clone.limit(40).values("embedding_radiomics")
    assert all(np.array_equal(a, b) for a, b in zip(stored, again, strict=True))
    # new samples share the standardisation fixed by the first run
    info = demo_clone.get_field("embedding_radiomics").info["multireader"]
    last = demo_clone.skip(len(demo_clone) - 1).first()
    raw = E.radiomics_features(np.load(last["native_path"]), "HU")
    assert last["embedding_radiomics"] == pytest.approx(
        (raw - info["center"]) / info["scale"], rel=1e-5, abs=1e-5
    )

    r3 = E.compute_embeddings(demo_clone, skip_existing=False)
    assert r3["n_embedded"] == len(demo_clone) - 1
    assert [e["sample_id"] for e in r3["errors"]] == [broken.id]


def test_unreadable_images_are_named_and_the_rest_go_on(demo_clone, tmp_path):
    from multireader.embed import embeddings as E

    view = demo_clone.limit(12)
    bad_npy = tmp_path / "corrupt.npy"
    bad_npy.write_bytes(b"this is not a numpy file")
    s0, s1 = view.first(), view.skip(1).first()
    s0["native_path"] = str(tmp_path / "missing.npy")
    s0.save()
    s1["native_path"] = str(bad_npy)
    s1.save()

    report = E.compute_embeddings(view, num_workers=1, batch_size=5)
    assert report["n_embedded"] == 10
    reasons = {e["sample_id"]: e["reason"] for e in report["errors"]}
    assert set(reasons) == {s0.id, s1.id}
    assert "missing.npy" in reasons[s0.id] and "corrupt.npy" in reasons[s1.id]
    assert demo_clone[s0.id]["embedding_radiomics"] is None
    assert len(view.exists("embedding_radiomics")) == 10


# --- open_clip --------------------------------------------------------------------
def _reference_embeddings(samples, tiny, window):
    """What open_clip itself gives: our window, grey to RGB, open_clip's preprocess and
    encode_image, with the model built and loaded by open_clip directly."""
    import open_clip
    import torch
    from PIL import Image

    from multireader.io import dicom

    model, _, preprocess = open_clip.create_model_and_transforms(
        "tiny-test-clip", pretrained=tiny["checkpoint"]
    )
    model.eval()
    tensors = []
    for s in samples:
        native = np.load(s["native_path"])
        if window == "auto":
            center, width = s["window_center"], s["window_width"]
        else:
            center, width = dicom.WINDOW_PRESETS[window]
        grey = dicom.window_to_uint8(native, center, width)
        tensors.append(preprocess(Image.fromarray(grey).convert("RGB")))
    with torch.no_grad():
        return model.encode_image(torch.stack(tensors)).numpy()


@pytest.mark.parametrize("window", ["auto", "lung"])
def test_open_clip_embeddings_equal_open_clips_own(demo_clone, tiny, window):
    from multireader.embed import embeddings as E

    view = demo_clone.limit(9)
    report = E.compute_embeddings(
        view,
        model=tiny["config"],
        pretrained=tiny["checkpoint"],
        window=window,
        batch_size=4,
        num_workers=1 if window == "auto" else 0,
    )
    field = "embedding_tiny_test_clip"
    assert report["field"] == field and report["dim"] == 16 and report["n_embedded"] == 9
    assert report["device"] == ("cuda" if _cuda() else "cpu")
    ours = np.stack(view.values(field))
    ref = _reference_embeddings(list(view), tiny, window)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    info = demo_clone.get_field(field).info["multireader"]
    assert info["model"]["pretrained"] == tiny["checkpoint"]
    assert info["model"]["window"] == window and info["model_key"] == report["model"]["key"]


def _cuda():
    import torch

    return torch.cuda.is_available()


def test_hub_layout_directory_loads_like_the_hub(demo_clone, tiny):
    from multireader.embed import embeddings as E

    view = demo_clone.limit(3)
    report = E.compute_embeddings(view, model=tiny["dir"], field="embedding_tiny_dir")
    assert report["n_embedded"] == 3
    ref = _reference_embeddings(list(view), tiny, "auto")
    np.testing.assert_allclose(np.stack(view.values("embedding_tiny_dir")), ref, atol=1e-5)


def test_model_errors_are_clear_and_write_nothing(demo_clone, tiny):
    from multireader.embed import embeddings as E

    view = demo_clone.limit(3)
    with pytest.raises(E.UnknownModelError, match=r"open_clip.list_models\(\)"):
        E.compute_embeddings(view, model="ViT-Q-99")
    with pytest.raises(E.CheckpointMismatchError, match="does not match model 'ViT-B-32'"):
        E.compute_embeddings(view, model="ViT-B-32", pretrained=tiny["checkpoint"])
    with pytest.raises(E.EmbeddingError, match="does not exist"):
        E.compute_embeddings(view, model="ViT-B-32", pretrained="/nowhere/ckpt.pt")
    with pytest.raises(E.UnknownModelError, match="laion2b_s34b_b79k"):
        E.compute_embeddings(view, model="ViT-B-32", pretrained="no_such_tag")
    with pytest.raises(E.EmbeddingError, match="not an open_clip model config"):
        bad = os.path.join(os.path.dirname(tiny["config"]), "bad.json")
        with open(bad, "w") as f:
            json.dump({"hello": 1}, f)
        E.compute_embeddings(view, model=bad, pretrained=tiny["checkpoint"])
    assert not demo_clone.has_field("embedding_vit_b_32")
    assert not demo_clone.has_field("embedding_vit_q_99")


def test_biomedclip_without_its_weights_says_so(demo_clone):
    from huggingface_hub import try_to_load_from_cache

    from multireader.embed import embeddings as E

    if isinstance(try_to_load_from_cache(E.BIOMEDCLIP[7:], "open_clip_config.json"), str):
        pytest.skip("BiomedCLIP is in the local Hugging Face cache on this machine")
    spec = E.resolve_model("biomedclip")
    try:
        E._check_reachable(spec)
    except E.WeightsUnavailableError:
        pass
    else:
        pytest.skip("the Hugging Face hub is reachable from this machine")
    with pytest.raises(E.WeightsUnavailableError) as err:
        E.compute_embeddings(demo_clone.limit(2), model="biomedclip")
    text = str(err.value)
    assert E.BIOMEDCLIP in text and "could not be fetched" in text
    assert "local checkpoint" in text
    assert not demo_clone.has_field("embedding_biomedclip")


def test_a_field_holding_another_models_vectors_is_not_mixed(demo_clone, tiny):
    from multireader.embed import embeddings as E

    view = demo_clone.limit(4)
    E.compute_embeddings(view, field="embedding_shared")
    with pytest.raises(E.FieldConflictError, match="holds embeddings of 'radiomics'"):
        E.compute_embeddings(
            view, model=tiny["config"], pretrained=tiny["checkpoint"], field="embedding_shared"
        )
    import fiftyone as fo

    demo_clone.add_sample_field("not_vectors", fo.StringField)
    with pytest.raises(E.FieldConflictError, match="not a vector field"):
        E.compute_embeddings(view, field="not_vectors")
    demo_clone.add_sample_field("someone_elses", fo.VectorField)
    with pytest.raises(E.FieldConflictError, match="not written by compute_embeddings"):
        E.compute_embeddings(view, field="someone_elses")


def test_similarity_index_finds_each_image_first(demo_clone):
    from multireader.embed import embeddings as E

    report = E.compute_embeddings(demo_clone, similarity_index=True)
    assert report["brain_key"] == "sim_embedding_radiomics"
    assert "sim_embedding_radiomics" in demo_clone.list_brain_runs()
    query = demo_clone.skip(17).first()
    nearest = demo_clone.sort_by_similarity(query.id, k=3, brain_key="sim_embedding_radiomics")
    assert nearest.first().id == query.id


# --- the operator -------------------------------------------------------------------
def test_operator_form_offers_models_and_fields(demo_dataset):
    properties = form("compute_embeddings", demo_dataset)
    assert properties["model_choice"]["default"] == "radiomics"
    assert properties["field"]["default"] == "embedding_radiomics"
    assert "window" not in properties and "model_name" not in properties
    assert {"batch_size", "num_workers", "similarity_index", "target", "delegate"} <= set(
        properties
    )
    clip = form("compute_embeddings", demo_dataset, {"model_choice": "open_clip"})
    assert clip["model_name"]["default"] == "ViT-B-32" and "pretrained" in clip
    assert clip["window"]["default"] == "auto"
    assert clip["field"]["default"] == "embedding_vit_b_32"
    bio = form("compute_embeddings", demo_dataset, {"model_choice": "biomedclip"})
    assert bio["field"]["default"] == "embedding_biomedclip"


def test_operator_from_the_sdk(demo_clone, tiny):
    out = op("compute_embeddings")(demo_clone.limit(20), num_workers=0)
    assert out["field"] == "embedding_radiomics" and out["n_embedded"] == 20
    assert out["n_errors"] == 0 and out["model"] == "radiomics"
    out = op("compute_embeddings")(
        demo_clone.limit(5), model=tiny["config"], pretrained=tiny["checkpoint"], window="lung"
    )
    assert out["field"] == "embedding_tiny_test_clip" and out["dim"] == 16
    with pytest.raises(Exception, match="unknown open_clip model"):
        op("compute_embeddings")(demo_clone, model="ViT-Q-99")


def test_operator_delegated_run_reports_progress(demo_clone):
    op("compute_embeddings")(demo_clone, similarity_index=True, delegate=True)
    assert not demo_clone.has_field("embedding_radiomics")  # queued, not run
    result = run_queued("compute_embeddings", demo_clone)
    assert result["n_embedded"] == len(demo_clone)
    assert len(demo_clone.exists("embedding_radiomics")) == len(demo_clone)
    assert "sim_embedding_radiomics" in demo_clone.list_brain_runs()


# --- loading without random initial weights, and the prefetch thread -------------------
def test_model_built_without_random_init_equals_the_checkpoint_bitwise(tiny, tmp_path):
    import open_clip
    import torch

    from multireader.embed import embeddings as E

    spec = E.resolve_model(tiny["config"], tiny["checkpoint"])
    model, _ = E.load_open_clip(spec)
    saved = torch.load(tiny["checkpoint"], weights_only=True)
    state = model.state_dict()
    assert set(state) == set(saved)
    for key, value in saved.items():
        assert torch.equal(state[key], value), key
    # the buffers a checkpoint does not hold (the text tower's causal mask) are built,
    # not drawn: equal to those of a model open_clip initialises the ordinary way
    plain = open_clip.create_model("tiny-test-clip")
    for (name, a), (_, b) in zip(model.named_buffers(), plain.named_buffers(), strict=True):
        assert torch.equal(a, b), name
    # a checkpoint missing one tensor is an error, never a model with one tensor unset
    partial = {k: v for k, v in saved.items() if k != "visual.proj"}
    path = tmp_path / "partial.pt"
    torch.save(partial, path)
    with pytest.raises(E.CheckpointMismatchError, match="visual.proj"):
        E.load_open_clip(E.resolve_model(tiny["config"], str(path)))
    # random initialisers work again after the load
    assert torch.nn.init.normal_(torch.zeros(1000)).std() > 0.5


def test_prefetch_keeps_the_order_and_raises_where_the_source_failed():
    from multireader.embed import embeddings as E

    assert list(E._prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise OSError("disk gone at item 3")

    got = []
    with pytest.raises(OSError, match="item 3"):
        for x in E._prefetched(failing()):
            got.append(x)
    assert got == [1, 2]
    # a consumer that stops early does not leave the thread blocked
    gen = E._prefetched(iter(range(10**6)), depth=2)
    assert next(gen) == 0
    gen.close()


@pytest.mark.parametrize("size", [32, 224, 300])
def test_grey_preprocess_equals_open_clips_transform_bitwise(demo_dataset, size):
    import open_clip
    import torch
    from PIL import Image

    from multireader.embed import embeddings as E

    preprocess = open_clip.image_transform(size, is_train=False)
    grey = E.grey_preprocess(preprocess)
    assert grey is not None
    samples = list(demo_dataset.limit(6))
    rgbs = [
        E.model_input(np.load(s["native_path"]), "auto", s["window_center"], s["window_width"])
        for s in samples
    ]
    ref = torch.stack([preprocess(Image.fromarray(r, mode="RGB")) for r in rgbs])
    batch = np.stack([grey.geometry(Image.fromarray(r[..., 0], mode="L")) for r in rgbs])
    assert torch.equal(grey.to_model(torch.from_numpy(batch)), ref)
    # a transform it does not know is left to open_clip, image by image
    augment = open_clip.image_transform(size, is_train=True)
    assert E.grey_preprocess(augment) is None
