"""zero_shot_classify: stored logits against open_clip's own encode_image / encode_text
on a tiny checkpoint saved here, prompt ensembling, reuse of a stored embedding,
prompt validation, offline weights, per-image errors, the operator (SDK and delegated),
reader fields untouched, and FiftyOne brain's mistakenness reading the result."""

import json

import numpy as np
import pytest
from helpers_plugin import form, op, raw_reader_docs, run_queued

from multireader.embed import embeddings as E
from multireader.embed import zero_shot as Z

CLASSES = ["benign", "probably_benign", "suspicious", "malignant"]
#: a tiny open_clip architecture with CLIP's real tokenizer vocabulary (49,408 tokens) and
#: room for a whole prompt (32 tokens), so prompts that differ late still differ
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
NAME = "tiny-zs-clip"
TEMPLATES = ["a CT image of a {}.", "an axial chest CT showing a {}."]
PROMPTS = {"malignant": ["malignant lung nodule", "lung cancer"], "benign": "benign nodule"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A randomly initialised tiny open_clip model saved as a model config JSON plus a
    checkpoint file, the way a user's own model arrives."""
    import open_clip
    import torch

    root = tmp_path_factory.mktemp("tiny_zs_clip")
    cfg_path = root / f"{NAME}.json"
    cfg_path.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(str(cfg_path))
    torch.manual_seed(1)
    model = open_clip.create_model(NAME)
    with torch.no_grad():  # a random model's logit scale is 1/0.07; make it distinct
        model.logit_scale.fill_(np.log(30.0))
    ckpt = root / "tiny_zs.pt"
    torch.save(model.state_dict(), ckpt)
    return {"config": str(cfg_path), "checkpoint": str(ckpt)}


def _run(view, tiny, field="predictions_zero_shot", **kwargs):
    kwargs.setdefault("num_workers", 0)
    return Z.zero_shot_classify(view, tiny["config"], tiny["checkpoint"], field, **kwargs)


def _reference_logits(samples, tiny, phrases, templates):
    """Zero-shot logits with open_clip's own API only: its model, preprocess, tokenizer,
    encode_image, encode_text and logit_scale; the CLIP paper's prompt ensembling."""
    import open_clip
    import torch
    from PIL import Image

    from multireader.io import dicom

    model, _, preprocess = open_clip.create_model_and_transforms(
        NAME, pretrained=tiny["checkpoint"]
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(NAME)
    images = []
    for s in samples:
        grey = dicom.window_to_uint8(
            np.load(s["native_path"]), s["window_center"], s["window_width"]
        )
        images.append(preprocess(Image.fromarray(grey).convert("RGB")))
    with torch.no_grad():
        img = model.encode_image(torch.stack(images))
        img = img / img.norm(dim=-1, keepdim=True)
        weights = []
        for cls in CLASSES:
            texts = [t.format(p) for p in phrases[cls] for t in templates]
            txt = model.encode_text(tokenizer(texts))
            txt = txt / txt.norm(dim=-1, keepdim=True)
            mean = txt.mean(dim=0)
            weights.append(mean / mean.norm())
        logits = model.logit_scale.exp() * img @ torch.stack(weights).T
    return logits.numpy().astype(float)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _stored(view, field):
    logits, labels, conf = view.values([f"{field}.logits", f"{field}.label", f"{field}.confidence"])
    return np.array(logits, dtype=float), labels, np.array(conf, dtype=float)


# --- the computation against open_clip's own ------------------------------------------
def test_logits_equal_open_clips_own_zero_shot(demo_clone, tiny):
    view = demo_clone.limit(6)
    seen = []
    result = _run(
        view, tiny, prompts=PROMPTS, templates=TEMPLATES, progress=lambda f, m: seen.append(f)
    )
    phrases = {
        "benign": ["benign nodule"],
        "probably_benign": ["probably benign lung nodule"],
        "suspicious": ["suspicious lung nodule"],
        "malignant": ["malignant lung nodule", "lung cancer"],
    }
    assert result["classes"] == CLASSES and result["phrases"] == phrases
    assert result["prompts"]["malignant"] == [
        "a CT image of a malignant lung nodule.",
        "an axial chest CT showing a malignant lung nodule.",
        "a CT image of a lung cancer.",
        "an axial chest CT showing a lung cancer.",
    ]
    assert (result["n_predicted"], result["n_encoded"], result["n_reused"]) == (6, 6, 0)
    assert result["embedding_field"] is None and result["errors"] == []
    assert result["logit_scale"] == pytest.approx(30.0, rel=1e-5)
    assert result["model_key"] == E.resolve_model(tiny["config"], tiny["checkpoint"]).key
    assert seen[-1] == 1.0 and seen == sorted(seen)

    logits, labels, conf = _stored(view, "predictions_zero_shot")
    ref = _reference_logits(list(view), tiny, phrases, TEMPLATES)
    np.testing.assert_allclose(logits, ref, atol=1e-4, rtol=0)
    assert np.ptp(ref, axis=1).min() > 1e-3  # the classes do score differently
    probs = _softmax(ref)
    assert conf == pytest.approx(probs.max(axis=1), abs=1e-5)
    assert labels == [CLASSES[i] for i in probs.argmax(axis=1)]
    assert sum(result["predicted_counts"].values()) == 6

    info = demo_clone.get_field("predictions_zero_shot").info["multireader"]
    assert info["role"] == "prediction" and info["source"] == "zero_shot"
    assert info["classes"] == CLASSES and info["n_predicted"] == 6
    assert info["parameters"]["templates"] == TEMPLATES
    assert info["parameters"]["phrases"] == phrases
    assert info["parameters"]["model"]["key"] == result["model_key"]


def test_every_prompt_counts_in_the_ensemble(demo_clone, tiny):
    """A class's embedding is the mean over all its prompts: a second phrase, or other
    templates, change that class's logits and no other's."""
    view = demo_clone.limit(4)
    _run(view, tiny, "pred_one", templates=TEMPLATES)
    _run(view, tiny, "pred_two", templates=TEMPLATES, prompts={"suspicious": ["a", "b c"]})
    one, _, _ = _stored(view, "pred_one")
    two, _, _ = _stored(view, "pred_two")
    k = CLASSES.index("suspicious")
    others = [i for i in range(4) if i != k]
    np.testing.assert_allclose(one[:, others], two[:, others], atol=1e-6)
    assert np.abs(one[:, k] - two[:, k]).min() > 1e-4
    default = Z.zero_shot_classify(
        view, tiny["config"], tiny["checkpoint"], "pred_default", num_workers=0
    )
    assert default["templates"] == list(Z.DEFAULT_TEMPLATES)
    assert default["phrases"]["probably_benign"] == ["probably benign lung nodule"]
    three, _, _ = _stored(view, "pred_default")
    ref = _reference_logits(list(view), tiny, default["phrases"], list(Z.DEFAULT_TEMPLATES))
    np.testing.assert_allclose(three, ref, atol=1e-4, rtol=0)


# --- stored embeddings --------------------------------------------------------------
def test_a_stored_embedding_of_the_same_model_replaces_encoding(demo_clone, tiny):
    view = demo_clone.limit(5)
    encoded = _run(view, tiny, "pred_encoded", prompts=PROMPTS)
    assert encoded["n_encoded"] == 5
    E.compute_embeddings(
        view.limit(3), model=tiny["config"], pretrained=tiny["checkpoint"], num_workers=0
    )
    field = "embedding_tiny_zs_clip"

    partial = _run(view, tiny, "pred_partial", prompts=PROMPTS)
    assert (partial["n_reused"], partial["n_encoded"]) == (3, 2)
    assert partial["embedding_field"] == field

    E.compute_embeddings(view, model=tiny["config"], pretrained=tiny["checkpoint"], num_workers=0)
    # stored vectors need not be unit length: scale them, the cosine must not change
    ids, vecs = view.values(["id", field])
    view.set_values(
        field, {i: 3.0 * np.asarray(v) for i, v in zip(ids, vecs, strict=True)}, key_field="id"
    )
    # and the images are not read again: break them all
    view.set_values("native_path", ["/nonexistent/never-read.npy"] * len(view))
    reused = _run(view, tiny, "pred_reused", prompts=PROMPTS)
    assert (reused["n_reused"], reused["n_encoded"], reused["errors"]) == (5, 0, [])
    assert reused["embedding_field"] == field
    info = demo_clone.get_field("pred_reused").info["multireader"]["parameters"]
    assert info["embedding_field"] == field and info["n_reused"] == 5

    a, _, _ = _stored(view, "pred_encoded")
    for name in ("pred_partial", "pred_reused"):
        b, _, _ = _stored(view, name)
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)

    # without reuse the broken images are reported, sample by sample
    fresh = _run(view, tiny, "pred_fresh", prompts=PROMPTS, reuse_embeddings=False)
    assert fresh["n_predicted"] == 0 and len(fresh["errors"]) == 5
    assert all("never-read.npy" in e["reason"] for e in fresh["errors"])


def test_a_stored_embedding_of_another_model_is_refused(demo_clone, tiny):
    view = demo_clone.limit(3)
    E.compute_embeddings(view, num_workers=0)  # radiomics
    E.compute_embeddings(
        view,
        model=tiny["config"],
        pretrained=tiny["checkpoint"],
        window="lung",
        field="embedding_lung",
        num_workers=0,
    )
    with pytest.raises(Z.ZeroShotError, match="holds vectors of model key 'radiomics-v1'"):
        _run(view, tiny, embedding_field="embedding_radiomics")
    with pytest.raises(Z.ZeroShotError, match="not an embedding field"):
        _run(view, tiny, embedding_field="reader_r1")
    # another window is another input: not reused automatically, refused when named
    result = _run(view, tiny)
    assert result["n_reused"] == 0 and result["embedding_field"] is None
    with pytest.raises(Z.ZeroShotError, match="same model, weights and window"):
        _run(view, tiny, embedding_field="embedding_lung")
    lung = _run(view, tiny, "pred_lung", window="lung")
    assert lung["n_reused"] == 3 and lung["embedding_field"] == "embedding_lung"


# --- errors -------------------------------------------------------------------------
def test_prompt_and_template_errors_are_clear_and_write_nothing(demo_clone, tiny):
    view = demo_clone.limit(2)
    with pytest.raises(Z.ZeroShotError, match=r"\['maligant', 'normal'\] are not classes"):
        _run(view, tiny, prompts={"maligant": "x", "normal": "y", "benign": "z"})
    with pytest.raises(Z.ZeroShotError, match=r"\['suspicious'\] have no phrase"):
        _run(view, tiny, prompts={"suspicious": []})
    with pytest.raises(Z.ZeroShotError, match=r"\['benign', 'suspicious'\] have no phrase"):
        _run(view, tiny, prompts={"suspicious": " ", "benign": [""]})
    with pytest.raises(Z.ZeroShotError, match=r"\['a CT image'\] must each hold exactly one"):
        _run(view, tiny, templates=["a CT image of a {}.", "a CT image"])
    with pytest.raises(Z.ZeroShotError, match="exactly one"):
        _run(view, tiny, templates=["a {} and a {}"])
    with pytest.raises(Z.ZeroShotError, match="exactly one"):
        _run(view, tiny, templates=["a {name} of a {}"])
    with pytest.raises(Z.ZeroShotError, match="at least one prompt template"):
        _run(view, tiny, templates=[])
    with pytest.raises(E.EmbeddingError, match="randomly initialised"):
        Z.zero_shot_classify(view, "ViT-B-32", None)
    with pytest.raises(E.EmbeddingError, match="no text tower"):
        Z.zero_shot_classify(view, "radiomics", None)
    with pytest.raises(Exception, match="holds reader labels"):
        _run(view, tiny, "reader_r1")
    assert not demo_clone.has_field("predictions_zero_shot")


def test_a_dataset_without_a_label_schema_is_refused(dataset, tiny):
    import fiftyone as fo

    dataset.add_sample(fo.Sample(filepath="/tmp/none.png"))
    with pytest.raises(Z.ZeroShotError, match="declare_label_schema first"):
        _run(dataset, tiny)


def test_a_pretrained_tag_offline_gives_compute_embeddings_message(demo_clone):
    spec = E.resolve_model("ViT-B-32", "laion2b_s34b_b79k")
    try:
        E._check_reachable(spec)
    except E.WeightsUnavailableError:
        pass
    else:
        pytest.skip("the weights are cached or the Hugging Face hub is reachable here")
    view = demo_clone.limit(2)
    with pytest.raises(E.WeightsUnavailableError) as ours:
        Z.zero_shot_classify(view)  # the defaults: ViT-B-32, laion2b_s34b_b79k
    with pytest.raises(E.WeightsUnavailableError) as theirs:
        E.compute_embeddings(view, model="ViT-B-32", pretrained="laion2b_s34b_b79k")
    text = str(ours.value)
    assert "ViT-B-32 (laion2b_s34b_b79k)" in text and "could not be fetched" in text
    assert "pass a local checkpoint" in text
    # the same message, but for the socket error's wording, which may vary
    other = str(theirs.value)
    assert text.split(":")[0] == other.split(":")[0]
    assert text[text.index("Without internet") :] == other[other.index("Without internet") :]
    assert not demo_clone.has_field("predictions_zero_shot")


def test_unreadable_images_are_named_and_the_rest_go_on(demo_clone, tiny, tmp_path):
    view = demo_clone.limit(5)
    bad = view.skip(1).first()
    bad["native_path"] = str(tmp_path / "missing.npy")
    bad.save()
    result = _run(view, tiny, batch_size=2)
    assert result["n_predicted"] == 4 and result["n_encoded"] == 4
    assert [e["sample_id"] for e in result["errors"]] == [bad.id]
    assert "missing.npy" in result["errors"][0]["reason"]
    assert demo_clone[bad.id]["predictions_zero_shot"] is None
    assert len(view.exists("predictions_zero_shot")) == 4


# --- the operator, readers and FiftyOne brain ---------------------------------------
def test_operator_form(demo_dataset):
    props = form("zero_shot_classify", demo_dataset)
    assert props["model_choice"]["default"] == "open_clip"
    assert props["model_name"]["default"] == "ViT-B-32"
    assert props["pretrained"]["default"] == "laion2b_s34b_b79k"
    assert props["templates"]["default"] == list(Z.DEFAULT_TEMPLATES)
    phrases = props["phrases"]["type"]["properties"]
    assert list(phrases) == CLASSES
    assert phrases["probably_benign"]["default"] == "probably benign lung nodule"
    assert props["field"]["default"] == "predictions_zero_shot"
    assert {"window", "batch_size", "num_workers", "target", "delegate"} <= set(props)


def test_operator_from_the_sdk_and_delegated(demo_clone, tiny):
    view = demo_clone.limit(4)
    names, before = raw_reader_docs(demo_clone)
    out = op("zero_shot_classify")(
        view,
        tiny["config"],
        tiny["checkpoint"],
        prompts={"malignant": "malignant lung nodule | lung cancer", "benign": "benign nodule"},
        templates=TEMPLATES,
        num_workers=0,
    )
    assert out["field"] == "predictions_zero_shot" and out["n_predicted"] == 4
    assert out["phrases"]["malignant"] == ["malignant lung nodule", "lung cancer"]
    assert [r["class"] for r in out["class_table"]] == CLASSES
    assert out["class_table"][3]["n_prompts"] == 4 and out["n_errors"] == 0
    direct = _run(view, tiny, "pred_direct", prompts=PROMPTS, templates=TEMPLATES)
    assert direct["prompts"] == out["prompts"]
    a, la, _ = _stored(view, "predictions_zero_shot")
    b, lb, _ = _stored(view, "pred_direct")
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    assert la == lb

    op("zero_shot_classify")(
        view, tiny["config"], tiny["checkpoint"], "pred_queued", num_workers=0, delegate=True
    )
    assert not demo_clone.has_field("pred_queued")  # queued, not run
    result = run_queued("zero_shot_classify", demo_clone)
    assert result["n_predicted"] == 4 and result["field"] == "pred_queued"
    assert len(demo_clone.exists("pred_queued")) == 4
    assert (
        "pred_queued"
        in demo_clone.app_config.sidebar_groups[
            [g.name for g in demo_clone.app_config.sidebar_groups].index("predictions")
        ].paths
    )

    names_after, after = raw_reader_docs(demo_clone)
    assert names_after == names and after == before

    with pytest.raises(Exception, match="not classes of the label schema"):
        op("zero_shot_classify")(view, tiny["config"], tiny["checkpoint"], prompts={"x": "y"})


def test_brain_mistakenness_reads_the_zero_shot_field(demo_clone, tiny):
    import fiftyone.brain as fob

    view = demo_clone.exists("reader_r1").limit(8)
    _run(view, tiny, prompts=PROMPTS, templates=TEMPLATES)
    fob.compute_mistakenness(
        view, "predictions_zero_shot", label_field="reader_r1", use_logits=True
    )
    logits, _, _ = _stored(view, "predictions_zero_shot")
    labels, got = view.values(["reader_r1.label", "mistakenness"])
    p = _softmax(logits)
    h = -(p * np.log(p)).sum(axis=1)
    m = np.where(np.array(CLASSES)[p.argmax(axis=1)] == np.array(labels), -1.0, 1.0)
    assert got == pytest.approx((m * np.exp(-h) + 1) / 2, abs=1e-6)
