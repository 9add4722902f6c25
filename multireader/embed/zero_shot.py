"""Zero-shot classification with an open_clip model: a prompt per class, no training.

Each class of the dataset's label schema is described in words: one or more phrases
(default: the class name with underscores as spaces, followed by :data:`DEFAULT_SUBJECT`,
e.g. "probably benign lung nodule"), each put into every prompt template ("a CT image
of a {}."). A class's text embedding is the mean of the L2-normalised text features of
all its prompts, normalised again: the prompt ensembling of the CLIP paper (A. Radford
et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML
2021, section 3.1.4). An image's logit for a class is the model's own
``logit_scale.exp()`` times the cosine between image and class embedding (plus the
model's ``logit_bias`` where it has one, which softmax ignores), exactly the scores
CLIP is trained to put through a softmax.

Images reach the model as in :func:`multireader.embed.embeddings.compute_embeddings` (the
same windowing, rendering and DataLoader); when the dataset already holds embeddings
of the same model, checkpoint fingerprint and window, those vectors are used instead of
encoding the images again. Predictions are stored in the plugin's one format
(:mod:`multireader.core.predictions`), so mistakenness and the model evaluation read them.

A general CLIP model has seen few CT slices and no radiology reports: expect weak
zero-shot results on radiology unless a medical checkpoint (BiomedCLIP, or a CLIP
fine-tuned on your images) is supplied.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from multireader.core.predictions import check_prediction_field, write_predictions
from multireader.core.schema import get_label_schema
from multireader.embed import embeddings as E
from multireader.errors import MultireaderError
from multireader.progress import ProgressFn, report

#: radiology prompt templates; ``{}`` is replaced by each phrase of a class
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a CT image of a {}.",
    "an axial chest CT showing a {}.",
    "a computed tomography scan of a {}.",
    "a radiology image of a {}.",
)
#: what the default phrase of a class describes ("malignant" -> "malignant lung nodule")
DEFAULT_SUBJECT = "lung nodule"
#: the default model: a general CLIP, the pretrained tag open_clip recommends for it
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
DEFAULT_FIELD = "predictions_zero_shot"
#: prompts per ``encode_text`` call
TEXT_BATCH = 256


class ZeroShotError(MultireaderError):
    """Prompts, templates or a stored embedding that cannot be used; the message says why."""


def default_phrase(cls: str, subject: str = DEFAULT_SUBJECT) -> str:
    """The phrase a class is described by when none is given.

    >>> default_phrase("probably_benign")
    'probably benign lung nodule'
    """
    words = str(cls).replace("_", " ").strip()
    return f"{words} {subject}".strip() if subject else words


def check_templates(templates: Sequence[str] | str | None) -> list[str]:
    """The templates as a list; each must hold exactly one ``{}`` for the class phrase."""
    if templates is None:
        return list(DEFAULT_TEMPLATES)
    if isinstance(templates, str):
        templates = [templates]
    out = [str(t) for t in templates if str(t).strip()]
    if not out:
        raise ZeroShotError(
            "templates: give at least one prompt template, e.g. 'a CT image of a {}.'"
        )
    bad = []
    for t in out:
        try:
            ok = t.count("{}") == 1 and t.format("x") is not None
        except (IndexError, KeyError, ValueError):
            ok = False
        if not ok:
            bad.append(t)
    if bad:
        raise ZeroShotError(
            f"templates: {bad} must each hold exactly one '{{}}' where the class phrase goes "
            "and no other braces, e.g. 'a CT image of a {}.'"
        )
    return out


def check_prompts(
    classes: Sequence[str], prompts: Mapping[str, str | Sequence[str]] | None = None
) -> dict[str, list[str]]:
    """Phrases per class, in schema order: those given in ``prompts`` (a phrase or a list
    of phrases per class), :func:`default_phrase` for a class not named there.

    A class of ``prompts`` that the schema does not have, or a class given no phrase
    (an empty string or list), is a :class:`ZeroShotError` naming it.
    """
    prompts = dict(prompts or {})
    unknown = sorted(str(c) for c in prompts if c not in classes)
    if unknown:
        raise ZeroShotError(
            f"prompts: {unknown} are not classes of the label schema ({', '.join(classes)})"
        )
    out, empty = {}, []
    for cls in classes:
        given = prompts.get(cls)
        if given is None:
            out[cls] = [default_phrase(cls)]
            continue
        phrases = [given] if isinstance(given, str) else list(given)
        phrases = [str(p).strip() for p in phrases if str(p).strip()]
        if not phrases:
            empty.append(cls)
        out[cls] = phrases
    if empty:
        raise ZeroShotError(
            f"prompts: {empty} have no phrase; give each class at least one (or leave the "
            "class out to use its name)"
        )
    return out


def class_text_embeddings(
    torch_model, tokenizer, prompts: Mapping[str, Sequence[str]], device: str = "cpu"
) -> np.ndarray:
    """One unit vector per class (rows in the order of ``prompts``): the renormalised
    mean of the L2-normalised text features of the class's prompts (Radford et al. 2021).

    ``prompts`` maps each class to its full prompt texts (template x phrase).
    """
    import torch

    texts = [t for ps in prompts.values() for t in ps]
    feats = []
    with torch.inference_mode():
        for start in range(0, len(texts), TEXT_BATCH):
            tokens = tokenizer(texts[start : start + TEXT_BATCH]).to(device)
            feats.append(torch_model.encode_text(tokens).float().cpu().numpy())
    f = np.concatenate(feats).astype(np.float64)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    out, at = [], 0
    for ps in prompts.values():
        mean = f[at : at + len(ps)].mean(axis=0)
        out.append(mean / np.linalg.norm(mean))
        at += len(ps)
    return np.stack(out)


def _logit_scale_and_bias(torch_model) -> tuple[float, float]:
    scale = float(torch_model.logit_scale.exp().item())
    bias = getattr(torch_model, "logit_bias", None)
    return scale, (float(bias.item()) if bias is not None else 0.0)


def _stored_field(view, spec: E.ModelSpec, embedding_field: str | None) -> str | None:
    """The embedding field whose vectors stand in for encoding, or None to encode.

    A named field must hold vectors of this very model (same model key: name, weights,
    checkpoint fingerprint, window). Otherwise the field of this model that covers the
    most samples of ``view`` is used, if any.
    """
    dataset = view._dataset
    found = E.embedding_fields(dataset)
    if embedding_field:
        meta = found.get(embedding_field)
        if meta is None:
            raise ZeroShotError(
                f"embedding_field {embedding_field!r} is not an embedding field of dataset "
                f"{dataset.name!r} (fields made by compute_embeddings: "
                f"{', '.join(sorted(found)) or 'none'})"
            )
        if meta.get("model_key") != spec.key:
            raise ZeroShotError(
                f"embedding_field {embedding_field!r} holds vectors of model key "
                f"{meta.get('model_key')!r}, not of the model classifying ({spec.key!r}); "
                "image and text embeddings must come from the same model, weights and "
                "window. Leave embedding_field empty to encode the images"
            )
        return embedding_field
    same = [name for name, meta in found.items() if meta.get("model_key") == spec.key]
    if not same:
        return None
    counts = {name: len(view.exists(name)) for name in sorted(same)}
    best = max(counts, key=counts.get)
    return best if counts[best] else None


def zero_shot_classify(
    samples,
    model: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    field: str = DEFAULT_FIELD,
    *,
    prompts: Mapping[str, str | Sequence[str]] | None = None,
    templates: Sequence[str] | None = None,
    window: str = "auto",
    batch_size: int = 32,
    num_workers: int | None = None,
    device: str | None = None,
    embedding_field: str | None = None,
    reuse_embeddings: bool = True,
    progress: ProgressFn | None = None,
) -> dict:
    """Classify every sample of a dataset or view by open_clip zero-shot; returns a report.

    Args:
        samples: a FiftyOne dataset or view; its dataset must declare a label schema.
        model, pretrained: an open_clip model and its weights, named as for
            :func:`multireader.embed.embeddings.compute_embeddings` (``"biomedclip"``, an
            open_clip name with a pretrained tag or local checkpoint path, an ``hf-hub:``
            id, a model directory, a model config JSON with a checkpoint). A pretrained
            tag needs a download; offline, pass a local checkpoint.
        field: the prediction field written (never a reader or consensus field).
        prompts: phrases per class, ``{class: phrase or [phrases]}``; classes left out
            use :func:`default_phrase`.
        templates: prompt templates, each with one ``{}``; default
            :data:`DEFAULT_TEMPLATES`.
        window: how native values become 8-bit input (``"auto"`` or a preset name).
        batch_size, num_workers, device: as for ``compute_embeddings``.
        embedding_field: take image vectors from this field (it must hold vectors of
            the same model key). Without it, a field of the same model key is found
            and used when ``reuse_embeddings``. Samples without a stored vector are
            encoded.
        progress: ``progress(fraction, message)``.

    Returns ``{"field", "classes", "prompts", "phrases", "templates", "model",
    "model_key", "n_predicted", "n_reused", "n_encoded", "predicted_counts",
    "embedding_field", "logit_scale", "errors", "seconds", "device"}``: ``prompts``
    maps each class to its full prompt texts, ``embedding_field`` names the field
    vectors were reused from (None when every image was encoded), ``errors`` lists
    ``{"sample_id", "reason"}`` for images that could not be read (their prediction is
    left empty).
    """
    t0 = time.perf_counter()
    if batch_size < 1:
        raise E.EmbeddingError(f"batch_size must be at least 1, got {batch_size}")
    if num_workers is not None and num_workers < 0:
        raise E.EmbeddingError(f"num_workers must be 0 or more, got {num_workers}")
    view = samples.view()
    dataset = view._dataset
    schema = get_label_schema(dataset)
    if not schema or not schema.get("classes"):
        raise ZeroShotError(
            f"dataset {dataset.name!r} declares no label schema; zero-shot classes come "
            "from it: run declare_label_schema first"
        )
    classes = list(schema["classes"])
    phrases = check_prompts(classes, prompts)
    templates = check_templates(templates)
    full = {c: [t.format(p) for p in phrases[c] for t in templates] for c in classes}
    field = (field or DEFAULT_FIELD).strip()
    check_prediction_field(dataset, field)

    spec = E.resolve_model(model, pretrained, window)
    if spec.kind != "open_clip":
        raise E.EmbeddingError(
            f"{spec.model!r} has no text tower; zero-shot classification needs an open_clip "
            "model (e.g. 'biomedclip', or an open_clip name with a checkpoint)"
        )
    if spec.pretrained is None and ":" not in spec.model:
        raise E.EmbeddingError(
            f"{spec.model!r} without pretrained weights is a randomly initialised model; "
            "pass a pretrained tag or the path of a local checkpoint"
        )
    if embedding_field and not reuse_embeddings:
        raise ZeroShotError("embedding_field was given but reuse_embeddings is False")
    stored_field = _stored_field(view, spec, embedding_field) if reuse_embeddings else None
    ids = view.values("id")
    if not ids:
        raise ZeroShotError("no samples to classify (the view is empty)")

    report(progress, 0.0, f"loading {spec.model}")
    device = device or E.default_device()
    torch_model, preprocess = E.load_open_clip(spec, device)
    tokenizer = E.load_tokenizer(spec)
    report(progress, 0.05, f"encoding {sum(map(len, full.values()))} prompts")
    text = class_text_embeddings(torch_model, tokenizer, full, device)
    scale, bias = _logit_scale_and_bias(torch_model)

    image = np.full((len(ids), text.shape[1]), np.nan)
    if stored_field:
        for i, vec in enumerate(view.values(stored_field)):
            if vec is not None:
                image[i] = vec
    have = np.isfinite(image).all(axis=1)
    n_reused = int(have.sum())
    todo = np.flatnonzero(~have)
    report(progress, 0.1, f"{n_reused} image vectors from {stored_field}, {len(todo)} to encode")

    errors: list[dict] = []
    if len(todo):
        all_items = E.sample_items(view, len(ids))
        items = [all_items[i] for i in todo]
        workers = E.resolve_workers(num_workers, len(items))
        batches = E.encode_items(
            items, spec, window, torch_model, preprocess, batch_size, workers, device
        )
        n_seen = 0
        for idx, vecs, errs in batches:
            for i, err in errs:
                errors.append({"sample_id": ids[todo[i]], "reason": err})
            if vecs is not None:
                image[todo[idx]] = vecs
            n_seen += len(idx) + len(errs)
            report(progress, 0.1 + 0.85 * n_seen / len(items), f"encoded {n_seen}/{len(items)}")

    norms = np.linalg.norm(image, axis=1, keepdims=True)
    for i in np.flatnonzero(norms[:, 0] == 0):
        errors.append({"sample_id": ids[i], "reason": "the image vector is all zeros"})
    ok = np.isfinite(norms[:, 0]) & (norms[:, 0] > 0)
    # stored vectors are not necessarily unit length: normalise before the cosine
    logits = np.full((len(ids), len(classes)), np.nan)
    logits[ok] = scale * (image[ok] / norms[ok]) @ text.T + bias

    report(progress, 0.96, f"writing {int(ok.sum())} predictions to {field}")
    parameters = {
        "model": spec.to_dict(),
        "templates": templates,
        "phrases": phrases,
        "logit_scale": scale,
        "logit_bias": bias,
        "embedding_field": stored_field if n_reused else None,
        "n_reused": n_reused,
        "reference": "prompt ensembling, Radford et al. 2021 (CLIP), section 3.1.4",
    }
    record = write_predictions(
        view, list(ids), field, classes, logits=logits, source="zero_shot", parameters=parameters
    )
    top = np.argmax(logits[ok], axis=1)
    report(progress, 1.0, f"{record['n_predicted']} zero-shot predictions in {field}")
    return {
        "field": field,
        "classes": classes,
        "prompts": full,
        "phrases": phrases,
        "templates": templates,
        "model": spec.to_dict(),
        "model_key": spec.key,
        "n_predicted": record["n_predicted"],
        "n_reused": n_reused,
        "n_encoded": int(ok[todo].sum()),
        "predicted_counts": {c: int((top == k).sum()) for k, c in enumerate(classes)},
        "embedding_field": stored_field if n_reused else None,
        "logit_scale": scale,
        "errors": errors,
        "seconds": round(time.perf_counter() - t0, 3),
        "device": device,
    }
