"""Image embeddings of DICOM frames: open_clip models and a weight-free radiomics vector.

Two kinds of model:

* ``"radiomics"``: hand-made features on NATIVE values (Hounsfield units for CT):
  intensity statistics, the share of pixels in HU bands, GLCM texture, gradient and
  sharpness statistics, a noise estimate and frequency-band energies. No weights, no
  download, a few milliseconds per 256x256 image; blur and noise move it strongly, so
  degraded acquisitions cluster apart. See :data:`RADIOMICS_FEATURES`.
* any open_clip model: a built-in name with a pretrained tag or a local checkpoint file
  (``model="ViT-B-32", pretrained="/path/ckpt.pt"``), a model config JSON plus a
  checkpoint (custom architectures), an ``hf-hub:org/repo`` id or a local directory in
  open_clip's Hugging Face layout (``open_clip_config.json`` + weights). BiomedCLIP is
  the medical default (:data:`BIOMEDCLIP`, alias ``"biomedclip"``).

Images reach a model the way a radiologist sees them: native values through the
modality's window (the file's, or a named preset) to 8 bits, grey expanded to three
channels, then the model's own preprocess. Runs are resumable: a sample that already
holds an embedding from the same model (the model key in the field's ``info``) is
skipped. Vectors are written with ``set_values`` once per few thousand samples.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from multireader.core import fields
from multireader.errors import MultireaderError
from multireader.io import dicom
from multireader.progress import ProgressFn, report

#: the medical default: BiomedCLIP (PubMedBERT text tower, ViT-B/16 image tower)
BIOMEDCLIP = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
#: the weight-free model
RADIOMICS = "radiomics"
#: short names a person may type for a long model id
MODEL_ALIASES = {"biomedclip": BIOMEDCLIP}
#: bumped when a radiomics feature's definition changes, so old vectors are not mixed in
RADIOMICS_VERSION = 1
#: samples per ``set_values`` call: a bulk write, and the unit a crash can lose
WRITE_EVERY = 2048

# HU bands: (name, low inclusive, high exclusive)
HU_BANDS: tuple[tuple[str, float, float], ...] = (
    ("air", -np.inf, -900.0),
    ("lung", -900.0, -500.0),
    ("ground_glass", -500.0, -100.0),
    ("fat", -100.0, -10.0),
    ("soft_tissue", -10.0, 100.0),
    ("enhanced", 100.0, 300.0),
    ("bone", 300.0, np.inf),
)
#: radial frequency bands in cycles per pixel (upper edge of the last is the corner, 0.71)
FREQ_BANDS: tuple[tuple[float, float], ...] = (
    (0.0, 1 / 32),
    (1 / 32, 1 / 16),
    (1 / 16, 1 / 8),
    (1 / 8, 1 / 4),
    (1 / 4, 0.75),
)
#: GLCM grey levels and the HU range they quantise (25 HU per level)
GLCM_LEVELS = 64
GLCM_HU_RANGE = (-1000.0, 600.0)
#: gradient magnitude (Sobel, HU per pixel) above which a pixel counts as an edge
EDGE_HU = 150.0

RADIOMICS_FEATURES: tuple[str, ...] = (
    "mean",
    "log_std",
    "skewness",
    "excess_kurtosis",
    "p01",
    "p10",
    "p50",
    "p90",
    "p99",
    *(f"band_{name}" for name, _, _ in HU_BANDS),
    "glcm_log_contrast",
    "glcm_dissimilarity",
    "glcm_homogeneity",
    "glcm_energy",
    "glcm_correlation",
    "glcm_entropy",
    "log_gradient_mean",
    "log_gradient_std",
    "log_gradient_p90",
    "edge_density",
    "log_laplacian_var",
    "log_noise_sigma",
    *(f"log_freq_band_{i}" for i in range(len(FREQ_BANDS))),
)


# --- errors ------------------------------------------------------------------------
class EmbeddingError(MultireaderError):
    """An embedding run cannot start; the message says why and what to do."""


class UnknownModelError(EmbeddingError):
    """The model name is neither radiomics, an open_clip name, a hub id nor a path."""


class WeightsUnavailableError(EmbeddingError):
    """The model exists but its weights could not be fetched or found."""


class CheckpointMismatchError(EmbeddingError):
    """A checkpoint's tensors do not fit the architecture it was given with."""


class FieldConflictError(EmbeddingError):
    """The target field holds something else (another model's vectors, another type)."""


# --- model specs -------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """What produced a field's vectors: enough to tell whether a stored vector is ours.

    ``kind`` is ``"radiomics"`` or ``"open_clip"``; ``model`` the open_clip name,
    ``hf-hub:`` id, ``local-dir:`` directory or config JSON path; ``pretrained`` a tag
    or checkpoint path; ``window`` how native values became 8-bit input (open_clip only).
    ``checkpoint_id`` fingerprints a local checkpoint (size and modification time), so a
    retrained file under the same path is not mistaken for the old one.
    """

    kind: str
    model: str
    pretrained: str | None = None
    window: str | None = None
    checkpoint_id: str | None = None

    @property
    def key(self) -> str:
        """A string equal for two runs exactly when their vectors are comparable."""
        if self.kind == RADIOMICS:
            return f"radiomics-v{RADIOMICS_VERSION}"
        parts = [self.model, self.pretrained or "", self.checkpoint_id or "", self.window or ""]
        return "open_clip|" + "|".join(parts)

    def to_dict(self) -> dict:
        return {**asdict(self), "key": self.key}


def resolve_model(
    model: str = RADIOMICS, pretrained: str | None = None, window: str = "auto"
) -> ModelSpec:
    """Validate a model choice without loading weights; returns a :class:`ModelSpec`.

    Raises :class:`UnknownModelError` for a name open_clip does not know (with where to
    find valid names) and :class:`EmbeddingError` for a missing file.
    """
    if not model or not str(model).strip():
        raise UnknownModelError("no model given; pass 'radiomics' or an open_clip model name")
    model = str(model).strip()
    model = MODEL_ALIASES.get(model.lower(), model)
    if model.lower() == RADIOMICS:
        if pretrained:
            raise EmbeddingError("the radiomics model has no weights; leave pretrained empty")
        return ModelSpec(kind=RADIOMICS, model=RADIOMICS)
    dicom.check_window(window)
    if pretrained is not None and not str(pretrained).strip():
        pretrained = None
    checkpoint_id = None
    if model.startswith("hf-hub:"):
        if pretrained:
            raise EmbeddingError(
                f"{model!r} loads its own weights from the hub; to use a local checkpoint "
                "instead, pass the architecture's open_clip name (or a model config JSON) "
                "as model and the checkpoint path as pretrained"
            )
        return ModelSpec(kind="open_clip", model=model, window=window)
    if model.startswith("local-dir:") or os.path.isdir(model):
        path = model.split(":", 1)[1] if model.startswith("local-dir:") else model
        path = os.path.abspath(path)
        if not os.path.isfile(os.path.join(path, "open_clip_config.json")):
            raise EmbeddingError(
                f"model directory {path} has no open_clip_config.json (the layout open_clip "
                "saves to and reads from the Hugging Face hub)"
            )
        return ModelSpec(
            kind="open_clip",
            model=f"local-dir:{path}",
            window=window,
            checkpoint_id=_fingerprint_dir(path),
        )
    if model.lower().endswith(".json"):
        if not os.path.isfile(model):
            raise EmbeddingError(f"model config {model} does not exist")
        model = os.path.abspath(model)
    else:
        import open_clip

        if model.replace("/", "-") not in open_clip.list_models():
            raise UnknownModelError(
                f"unknown open_clip model {model!r}. Valid names: open_clip.list_models() "
                f"({len(open_clip.list_models())} names, e.g. 'ViT-B-32', 'ViT-B-16', "
                "'RN50'); pretrained tags per name: open_clip.list_pretrained(). Also "
                "accepted: 'radiomics', 'biomedclip', 'hf-hub:<org>/<repo>', a directory "
                "in open_clip's hub layout, or a model config JSON with a checkpoint"
            )
    if pretrained is not None:
        pretrained = str(pretrained).strip()
        if _looks_like_path(pretrained):
            if not os.path.isfile(pretrained):
                raise EmbeddingError(f"checkpoint {pretrained} for model {model!r} does not exist")
            pretrained = os.path.abspath(pretrained)
            checkpoint_id = _fingerprint(pretrained)
        elif not model.endswith(".json"):
            import open_clip

            tags = open_clip.list_pretrained_tags_by_model(model.replace("/", "-"))
            if pretrained not in tags:
                raise UnknownModelError(
                    f"{pretrained!r} is neither a pretrained tag of {model!r} nor a file. "
                    f"Its tags: {', '.join(tags) or 'none'} (open_clip.list_pretrained()); "
                    "or pass the path of a local checkpoint"
                )
    elif model.endswith(".json"):
        raise EmbeddingError(
            f"model config {model} needs its weights: pass the checkpoint path as pretrained"
        )
    return ModelSpec(
        kind="open_clip",
        model=model,
        pretrained=pretrained,
        window=window,
        checkpoint_id=checkpoint_id,
    )


def _looks_like_path(value: str) -> bool:
    return os.sep in value or os.path.isfile(value) or value.endswith((".pt", ".pth", ".bin"))


def _fingerprint(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}-{int(st.st_mtime)}"


def _fingerprint_dir(path: str) -> str:
    digest = hashlib.sha1()
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            digest.update(f"{name}:{_fingerprint(full)};".encode())
    return digest.hexdigest()[:12]


def default_field(model: str = RADIOMICS) -> str:
    """The field a model's vectors go to by default, e.g. ``embedding_vit_b_32``.

    >>> default_field("ViT-B-32")
    'embedding_vit_b_32'
    >>> default_field("biomedclip")
    'embedding_biomedclip'
    """
    model = str(model).strip()
    if model.lower() in MODEL_ALIASES or model == BIOMEDCLIP:
        name = "biomedclip"
    elif model.startswith(("hf-hub:", "local-dir:")):
        name = model.split(":", 1)[1].rstrip("/").rsplit("/", 1)[-1]
    elif model.lower().endswith(".json") or os.sep in model:
        name = os.path.splitext(os.path.basename(model.rstrip(os.sep)))[0]
    else:
        name = model
    return fields.EMBEDDING_PREFIX + fields.reader_slug(name)


# --- open_clip loading -------------------------------------------------------------
def load_open_clip(spec: ModelSpec, device: str = "cpu") -> tuple[Any, Callable]:
    """``(model, preprocess)`` for an open_clip spec, in eval mode on ``device``.

    Every way of naming weights goes through ``open_clip.create_model_and_transforms``
    with ``require_pretrained`` (so missing weights are an error, never a silently
    random model). Failures become :class:`WeightsUnavailableError` (could not be
    fetched or found: says to pass a local checkpoint) or
    :class:`CheckpointMismatchError` (the tensors do not fit the architecture).

    When weights are required, the architecture is built without drawing its random
    initial weights (:func:`_skip_random_init`): open_clip then loads the checkpoint
    with ``strict=True``, which overwrites every parameter and persistent buffer or
    fails, so the model is the same; on CPU drawing ViT-B-32's 150 M random numbers
    took 0.5-2 s of each run.
    """
    import open_clip

    name = spec.model
    if name.endswith(".json"):
        name = _register_config(name)
    _check_reachable(spec)
    required = bool(spec.pretrained or ":" in name)
    kwargs = {"require_pretrained": True} if required else {}
    try:
        with _skip_random_init() if required else contextlib.nullcontext():
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=spec.pretrained, device=device, **kwargs
            )
    except Exception as err:  # noqa: BLE001 - open_clip raises many types; we name the cause
        text = str(err).strip() or type(err).__name__
        if spec.checkpoint_id and spec.pretrained:
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            detail = "; ".join(lines[:4])[:500]
            raise CheckpointMismatchError(
                f"checkpoint {spec.pretrained} does not match model {spec.model!r} "
                f"({type(err).__name__}: {detail}). Pass the open_clip name or model config "
                "JSON of the architecture the checkpoint was saved from"
            ) from err
        raise WeightsUnavailableError(_unavailable_message(spec, text)) from err
    model.eval()
    return model, preprocess


@functools.lru_cache(maxsize=1)
def _skip_random_init_class():
    import torch
    from torch.overrides import TorchFunctionMode

    init = torch.nn.init
    skipped = {
        init.normal_,
        init.uniform_,
        init.trunc_normal_,
        init.kaiming_uniform_,
        init.kaiming_normal_,
        init.xavier_uniform_,
        init.xavier_normal_,
        init.orthogonal_,
        torch.Tensor.normal_,
        torch.Tensor.uniform_,
    }

    class SkipRandomInit(TorchFunctionMode):
        """Random initialisers return their tensor untouched (uninitialised memory):
        only for a model whose every weight a strict checkpoint load then overwrites."""

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in skipped:
                return args[0] if args else (kwargs or {})["tensor"]
            return func(*args, **(kwargs or {}))

    return SkipRandomInit


def _skip_random_init():
    """A context in which torch's random initialisers leave their tensors as they are."""
    return _skip_random_init_class()()


def load_tokenizer(spec: ModelSpec) -> Callable:
    """open_clip's tokenizer for the text tower of an open_clip spec (zero-shot prompts).

    Call after :func:`load_open_clip`, which has already checked that hub files are
    reachable; a tokenizer that cannot be loaded is :class:`WeightsUnavailableError`.
    """
    import open_clip

    if spec.kind != "open_clip":
        raise EmbeddingError(f"{spec.model!r} has no text tower")
    name = _register_config(spec.model) if spec.model.endswith(".json") else spec.model
    try:
        return open_clip.get_tokenizer(name)
    except Exception as err:  # noqa: BLE001 - hub and HF tokenizer errors come in many types
        text = f"its tokenizer could not be loaded ({type(err).__name__}: {err})"
        raise WeightsUnavailableError(_unavailable_message(spec, text)) from err


def _hub_repo(spec: ModelSpec) -> str | None:
    """The Hugging Face repository a spec's weights come from, if any."""
    if spec.model.startswith("hf-hub:"):
        return spec.model.split(":", 1)[1]
    if spec.pretrained and not spec.checkpoint_id:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained) or {}
        return cfg.get("hf_hub", "").rstrip("/") or None
    return None


def _check_reachable(spec: ModelSpec, timeout: float = 3.0) -> None:
    """Fail fast, with the reason, when hub weights are neither cached nor reachable.

    Without this, an offline machine spends about half a minute in the hub client's
    retries before open_clip reports a download error.
    """
    repo = _hub_repo(spec)
    if repo is None:
        return
    import socket

    from huggingface_hub import try_to_load_from_cache

    wanted = "open_clip_config.json" if spec.model.startswith("hf-hub:") else None
    names = [wanted] if wanted else ["open_clip_pytorch_model.bin", "open_clip_model.safetensors"]
    if any(isinstance(try_to_load_from_cache(repo, n), str) for n in names):
        return
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as err:
        raise WeightsUnavailableError(
            _unavailable_message(
                spec, f"{host} cannot be reached ({err}) and {repo} is not in the local HF cache"
            )
        ) from err


def _unavailable_message(spec: ModelSpec, reason: str) -> str:
    what = spec.model if not spec.pretrained else f"{spec.model} ({spec.pretrained})"
    where = (
        "from the Hugging Face hub"
        if spec.model.startswith("hf-hub:")
        else ("from disk" if spec.checkpoint_id else "from open_clip's download sources")
    )
    return (
        f"the weights of {what} could not be fetched or found {where}: "
        f"{reason.strip().splitlines()[0][:300] if reason.strip() else 'no detail'}. "
        "Without internet, download them elsewhere and pass a local checkpoint: "
        "model='<open_clip name or config JSON>', pretrained='/path/to/checkpoint', or "
        "model='/path/to/dir' holding open_clip_config.json and the weights "
        "(Hugging Face models also need their text-tower files in the local HF cache); "
        "or use model='radiomics', which needs no weights"
    )


def _register_config(path: str) -> str:
    """Make a model config JSON known to open_clip; returns the name it is known by."""
    import open_clip

    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise EmbeddingError(f"cannot read model config {path}: {err}") from err
    if "model_cfg" in cfg:
        raise EmbeddingError(
            f"{path} is in open_clip's hub layout (it has 'model_cfg'); pass its directory "
            "as the model instead"
        )
    if not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise EmbeddingError(
            f"{path} is not an open_clip model config (it needs embed_dim, vision_cfg and text_cfg)"
        )
    open_clip.add_model_config(path)
    return os.path.splitext(os.path.basename(path))[0]


# --- input rendering ---------------------------------------------------------------
def model_input(
    native: np.ndarray,
    window: str = "auto",
    center: float | None = None,
    width: float | None = None,
    photometric: str | None = None,
) -> np.ndarray:
    """Native values -> the 8-bit RGB image (H, W, 3) a CLIP model is given.

    ``window="auto"`` uses the stored window (``center``/``width``, the file's), else a
    robust percentile window; a preset name uses :data:`dicom.WINDOW_PRESETS`.
    MONOCHROME1 is inverted so bone is white, as readers see it.
    """
    if native.ndim == 3:
        return dicom.to_uint8_color(native)[..., :3]
    invert = str(photometric or "").upper() == "MONOCHROME1"
    if window != "auto":
        center, width = dicom.WINDOW_PRESETS[window]
    elif center is None or width is None or not width > 0:
        center, width = dicom.auto_window(native)
    grey = dicom.window_to_uint8(native, float(center), float(width), invert)
    return np.repeat(grey[..., None], 3, axis=2)


# --- radiomics ---------------------------------------------------------------------
_FREQ_CACHE: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, int]] = {}


def _freq_bins(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per rfft2 coefficient: its band (len(FREQ_BANDS) = outside every band) and weight.

    rfft2 keeps one of each conjugate pair of columns; those count twice, so band
    shares equal those of the full spectrum.
    """
    if shape not in _FREQ_CACHE:
        fy = np.fft.fftfreq(shape[0])[:, None]
        fx = np.fft.rfftfreq(shape[1])[None, :]
        radius = np.hypot(fy, fx)
        bins = np.full(radius.shape, len(FREQ_BANDS), dtype=np.intp)
        for i, (lo, hi) in enumerate(FREQ_BANDS):
            bins[(radius >= lo) & (radius < hi)] = i
        bins[0, 0] = len(FREQ_BANDS)  # the mean carries no texture
        weight = np.full(radius.shape, 2.0)
        weight[:, 0] = 1.0
        if shape[1] % 2 == 0:
            weight[:, -1] = 1.0  # the Nyquist column has no twin
        _FREQ_CACHE[shape] = (bins.ravel(), weight.ravel(), len(FREQ_BANDS) + 1)
    return _FREQ_CACHE[shape]


#: the percentiles in the intensity features
PERCENTILES = (1, 10, 50, 90, 99)


def _percentiles_and_bands(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The :data:`PERCENTILES` (numpy's ``inverted_cdf`` definition) and HU-band shares.

    Integer images (CT in HU) go through one ``bincount`` of their values: the
    cumulative counts give every percentile and every band at once, about ten times
    faster than partitioning for percentiles and searching for bands separately.
    """
    n = x.size
    edges = np.array([hi for _, _, hi in HU_BANDS[:-1]], dtype=np.float64)
    q = np.asarray(PERCENTILES, dtype=np.float64) / 100.0 * n
    if x.dtype.kind in "iu" and n:
        lo = int(x.min())
        span = int(x.max()) - lo
        if span < 1 << 18:
            cum = np.cumsum(np.bincount((x.ravel() - lo).astype(np.intp), minlength=span + 1))
            pcts = lo + np.searchsorted(cum, q, side="left").astype(np.float64)
            # pixels below each band edge: cum at (edge - 1), edges being whole HU
            below = np.clip(edges - lo - 1, -1, span).astype(np.intp)
            less = np.where(below >= 0, cum[np.maximum(below, 0)], 0)
            counts = np.diff(np.concatenate([[0], less, [n]]))
            return pcts, counts / n
    pcts = np.percentile(x, PERCENTILES, method="inverted_cdf").astype(np.float64)
    idx = np.searchsorted(edges.astype(np.float32), x.ravel(), side="right")
    return pcts, np.bincount(idx, minlength=len(HU_BANDS)) / n


def radiomics_features(native: np.ndarray, unit: str = "HU") -> np.ndarray:
    """The raw radiomics vector of one 2-D image, in the order of :data:`RADIOMICS_FEATURES`.

    Values are in native units (HU for CT). For other units the image's 1-99
    percentile range is mapped onto -1000..1000 "pseudo-HU" first, so the HU-specific
    constants (bands, GLCM range, edge threshold) still mean the same fraction of the
    range and an MR image gets a comparable vector. Definitions are in
    ``docs/embeddings.md``. Texture is Haralick's GLCM (R. M. Haralick, K. Shanmugam,
    I. Dinstein, "Textural Features for Image Classification", IEEE SMC 3(6), 1973),
    via scikit-image; the noise estimate is Immerkaer's (J. Immerkaer, "Fast Noise
    Variance Estimation", CVIU 64(2), 1996).
    """
    import scipy.fft
    from skimage.feature import graycomatrix

    x = np.asarray(native)
    if x.ndim == 3:  # colour: luminance
        x = x[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if x.ndim != 2 or min(x.shape) < 3:
        raise ValueError(f"expected a 2-D image of at least 3x3 pixels, got shape {x.shape}")
    pcts, bands = _percentiles_and_bands(x)
    x = x.astype(np.float32, copy=False)
    if str(unit or "").upper() == "HU":
        y = x
    else:  # map the 1-99 percentile range onto -1000..1000 "pseudo-HU"
        span = float(pcts[4] - pcts[0]) or 1.0
        y = (x - np.float32(pcts[0])) * np.float32(2000.0 / span) - np.float32(1000.0)
        pcts = (pcts - pcts[0]) * (2000.0 / span) - 1000.0
        _, bands = _percentiles_and_bands(y)
    flat = y.ravel()
    n = flat.size
    mean = float(flat.mean(dtype=np.float64))
    c = flat - np.float32(mean)
    c2 = c * c
    var = float(c2.sum(dtype=np.float64)) / n
    std = math.sqrt(var)
    if std > 0:
        skew = float(np.dot(c2, c)) / n / std**3
        kurt = float(np.dot(c2, c2)) / n / var**2 - 3.0
    else:
        skew = kurt = 0.0

    # GLCM at distance 1 in four directions; features averaged over the directions
    lo, hi = GLCM_HU_RANGE
    q = np.clip((y - lo) * (GLCM_LEVELS / (hi - lo)), 0, GLCM_LEVELS - 1).astype(np.uint8)
    angles = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    glcm = graycomatrix(q, [1], angles, levels=GLCM_LEVELS, symmetric=True, normed=True)
    texture = glcm_features(glcm[:, :, 0, :])

    # gradients (Sobel, HU per pixel) and second differences, all separable
    dx = y[:, 2:] - y[:, :-2]
    dy = y[2:, :] - y[:-2, :]
    gx = (dx[:-2] + 2 * dx[1:-1] + dx[2:]) / 8.0
    gy = (dy[:, :-2] + 2 * dy[:, 1:-1] + dy[:, 2:]) / 8.0
    grad = np.sqrt(gx * gx + gy * gy)
    g_mean = float(grad.mean(dtype=np.float64))
    g_std = float(grad.std(dtype=np.float64))
    # the 90th percentile of a quarter of the pixels: within a fraction of a HU of all
    g90 = float(np.percentile(grad[::2, ::2], 90, method="inverted_cdf"))
    d2x = y[:, :-2] - 2 * y[:, 1:-1] + y[:, 2:]
    d2y = y[:-2, :] - 2 * y[1:-1, :] + y[2:, :]
    # the 4-neighbour Laplacian: its variance is the classic focus (sharpness) measure
    lap = d2x[1:-1] + d2y[:, 1:-1]
    # Immerkaer's mask [[1,-2,1],[-2,4,-2],[1,-2,1]] is d2x followed by d2y
    m = d2x[:-2] - 2 * d2x[1:-1] + d2x[2:]
    h, w = y.shape
    noise = (
        math.sqrt(math.pi / 2) * float(np.abs(m).sum(dtype=np.float64)) / (6 * (h - 2) * (w - 2))
    )

    # energy in radial frequency bands, as log10 of each band's share of non-DC power
    spec = scipy.fft.rfft2(y - np.float32(mean))
    power = spec.real**2 + spec.imag**2
    bins, weight, n_bins = _freq_bins(y.shape)
    band_power = np.bincount(bins, weights=power.ravel() * weight, minlength=n_bins)
    band_power = band_power[: len(FREQ_BANDS)]
    band_share = band_power / max(float(band_power.sum()), 1e-12)

    return np.array(
        [
            mean,
            math.log1p(std),
            skew,
            kurt,
            *pcts,
            *bands,
            math.log1p(texture["contrast"]),
            texture["dissimilarity"],
            texture["homogeneity"],
            texture["energy"],
            texture["correlation"],
            texture["entropy"],
            math.log1p(g_mean),
            math.log1p(g_std),
            math.log1p(g90),
            float(np.count_nonzero(grad > EDGE_HU)) / grad.size,
            math.log1p(float(lap.var(dtype=np.float64))),
            math.log1p(noise),
            *np.log10(band_share + 1e-9),
        ],
        dtype=np.float64,
    )


_GLCM_IJ: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def glcm_features(p: np.ndarray) -> dict[str, float]:
    """Haralick features of normalised GLCMs ``p`` (levels, levels, n_angles), averaged.

    The definitions of scikit-image's ``graycoprops`` (contrast, dissimilarity,
    homogeneity, energy, correlation, entropy), computed for all angles at once.
    """
    levels = p.shape[0]
    if levels not in _GLCM_IJ:
        i, j = np.ogrid[:levels, :levels]
        _GLCM_IJ[levels] = (i.astype(np.float64), j.astype(np.float64))
    i, j = _GLCM_IJ[levels]
    d = (i - j)[..., None]
    p = p.astype(np.float64, copy=False)
    pi = p.sum(axis=1)  # row marginals (levels, angles)
    pj = p.sum(axis=0)
    lv = i[:, 0][:, None]
    mu_i = (lv * pi).sum(0)
    mu_j = (lv * pj).sum(0)
    sd_i = np.sqrt(((lv - mu_i) ** 2 * pi).sum(0))
    sd_j = np.sqrt(((lv - mu_j) ** 2 * pj).sum(0))
    cov = (p * (i[..., None] - mu_i) * (j[..., None] - mu_j)).sum((0, 1))
    denom = sd_i * sd_j
    # a constant image has zero variance; scikit-image reports correlation 1 there
    corr = np.where(denom > 1e-15, cov / np.where(denom > 1e-15, denom, 1.0), 1.0)
    logp = np.log(np.where(p > 0, p, 1.0))
    return {
        "contrast": float((p * d**2).sum((0, 1)).mean()),
        "dissimilarity": float((p * np.abs(d)).sum((0, 1)).mean()),
        "homogeneity": float((p / (1.0 + d**2)).sum((0, 1)).mean()),
        "energy": float(np.sqrt((p**2).sum((0, 1))).mean()),
        "correlation": float(corr.mean()),
        "entropy": float((-p * logp).sum((0, 1)).mean()),
    }


def robust_standardiser(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature centre (median) and scale: max(1.4826 x MAD, 0.25 x std), else 1.

    Median and MAD, so a minority of degraded images does not set the scale used to
    find them; the floor of a quarter standard deviation, so a feature that is nearly
    constant on clean images (the share of air in a fixed field of view) cannot blow a
    small difference up into a z-score in the hundreds and drown every other feature.
    """
    raw = np.asarray(raw, dtype=np.float64)
    center = np.median(raw, axis=0)
    mad = 1.4826 * np.median(np.abs(raw - center), axis=0)
    scale = np.maximum(mad, 0.25 * raw.std(axis=0))
    return center, np.where(scale > 1e-9, scale, 1.0)


# --- the per-sample work, run in DataLoader workers --------------------------------
@dataclass
class _Item:
    native_path: str | None
    filepath: str | None
    unit: str | None
    center: float | None
    width: float | None
    photometric: str | None


class _SampleImages:
    """A torch-style map dataset: index -> (index, array or tensor, error or None)."""

    def __init__(self, items: list[_Item], kind: str, window: str, preprocess=None):
        self.items, self.kind, self.window, self.preprocess = items, kind, window, preprocess
        self.grey = grey_preprocess(preprocess) if kind != RADIOMICS else None

    def __len__(self) -> int:
        return len(self.items)

    def _native(self, item: _Item) -> tuple[np.ndarray, str]:
        if item.native_path:
            try:
                return np.load(item.native_path, allow_pickle=False), item.unit or ""
            except Exception as err:  # noqa: BLE001 - any read failure is reported per sample
                raise OSError(
                    f"cannot read native values {item.native_path}: {type(err).__name__}: {err}"
                ) from err
        if item.filepath:
            from PIL import Image

            try:
                with Image.open(item.filepath) as im:
                    return np.asarray(im.convert("L")), ""
            except Exception as err:  # noqa: BLE001
                raise OSError(
                    f"cannot read image {item.filepath}: {type(err).__name__}: {err}"
                ) from err
        raise OSError("sample has neither native_path nor filepath")

    def __getitem__(self, i: int):
        item = self.items[i]
        try:
            native, unit = self._native(item)
            if self.kind == RADIOMICS:
                vec = radiomics_features(native, unit)
                if not np.all(np.isfinite(vec)):
                    raise ValueError("features are not finite (constant or corrupt image)")
                return i, vec, None
            from PIL import Image

            if item.native_path:
                rgb = model_input(native, self.window, item.center, item.width, item.photometric)
            else:
                rgb = np.repeat(native[..., None], 3, axis=2)
            if self.grey is not None and rgb.ndim == 3 and native.ndim == 2:
                # grey: resize one channel, not three identical ones; the batch is
                # scaled and normalised as one tensor (GreyPreprocess.to_model)
                return i, self.grey.geometry(Image.fromarray(rgb[..., 0], mode="L")), None
            return i, self.preprocess(Image.fromarray(rgb, mode="RGB")), None
        except Exception as err:  # noqa: BLE001 - one bad image must not stop a run
            return i, None, str(err) if isinstance(err, OSError) else f"{type(err).__name__}: {err}"


class GreyPreprocess:
    """open_clip's evaluation preprocess split for grey images, same numbers bitwise.

    open_clip's transform is ``Resize``, ``CenterCrop``, to RGB, ``ToTensor`` (divide
    by 255), ``Normalize``. For a grey image rendered to RGB the three channels are
    equal, and PIL resamples each channel alike, so: ``geometry`` (the transform's own
    Resize and CenterCrop) runs on the one grey channel, per image, in the loader; and
    ``to_model`` turns a batch of those 8-bit images into the model's input in one
    tensor operation (the same float32 divide, subtract and divide as torchvision's).
    """

    def __init__(self, geometry: list, mean, std):
        self.steps, self.mean, self.std = geometry, tuple(mean), tuple(std)

    def geometry(self, image) -> np.ndarray:
        for step in self.steps:
            image = step(image)
        return np.asarray(image, dtype=np.uint8)

    def to_model(self, batch):
        """(B, H, W) uint8 tensor -> (B, 3, H, W) float32, on the batch's device."""
        import torch

        mean = torch.as_tensor(self.mean, dtype=torch.float32, device=batch.device)
        std = torch.as_tensor(self.std, dtype=torch.float32, device=batch.device)
        x = batch.to(torch.float32).div(255).unsqueeze(1).expand(-1, len(self.mean), -1, -1)
        return x.sub(mean.view(1, -1, 1, 1)).div(std.view(1, -1, 1, 1))


def grey_preprocess(preprocess) -> GreyPreprocess | None:
    """A :class:`GreyPreprocess` for open_clip's usual evaluation transform, or None
    (any other transform: then every image goes through ``preprocess`` itself)."""
    steps = getattr(preprocess, "transforms", None)
    if not steps:
        return None
    names = [type(t).__name__ for t in steps]
    geometry = []
    k = 0
    while k < len(names) and names[k] in ("Resize", "CenterCrop"):
        geometry.append(steps[k])
        k += 1
    rest = names[k:]
    if rest and rest[0] in ("MaybeConvertMode", "_convert_to_rgb", "function"):
        rest = rest[1:]
    if rest != ["MaybeToTensor", "Normalize"] and rest != ["ToTensor", "Normalize"]:
        return None
    norm = steps[-1]
    if getattr(norm, "inplace", False) or len(norm.mean) != 3 or len(norm.std) != 3:
        return None
    return GreyPreprocess(geometry, norm.mean, norm.std)


def _collate(batch):
    import torch

    ok = [(i, x) for i, x, err in batch if err is None]
    errors = [(i, err) for i, _, err in batch if err is not None]
    idx = [i for i, _ in ok]
    if not ok:
        return idx, None, errors
    first = ok[0][1]
    grey = [isinstance(x, np.ndarray) and x.dtype == np.uint8 for _, x in ok]
    if all(grey):
        # grey model inputs (GreyPreprocess): 8-bit, a quarter of float32's bytes
        return idx, torch.from_numpy(np.stack([x for _, x in ok])), errors
    if any(grey):
        # a colour image among grey ones: the grey ones become model input here
        return (
            idx,
            [torch.from_numpy(x) if g else x for (_, x), g in zip(ok, grey, strict=True)],
            errors,
        )
    if isinstance(first, np.ndarray):
        return idx, np.stack([x for _, x in ok]), errors
    return idx, torch.stack([x for _, x in ok]), errors


def sample_items(view, n: int | None = None) -> list[_Item]:
    """What :class:`_SampleImages` needs of each sample of ``view``, in view order."""
    n = len(view) if n is None else n
    cols = {
        "native_path": _values(view, fields.NATIVE_PATH, n),
        "filepath": view.values("filepath"),
        "unit": _values(view, fields.NATIVE_UNIT, n),
        "center": _values(view, "window_center", n),
        "width": _values(view, "window_width", n),
        "photometric": _values(view, "photometric", n),
    }
    return [_Item(**{k: v[i] for k, v in cols.items()}) for i in range(n)]


def resolve_workers(num_workers: int | None, n_items: int) -> int:
    """DataLoader workers for ``n_items`` images: ``num_workers``, else the default."""
    if num_workers is not None:
        return num_workers
    # starting workers costs about a second; below a few hundred images it never pays
    return default_workers() if n_items >= 512 else 0


def encode_items(
    items: list[_Item],
    spec: ModelSpec,
    window: str,
    torch_model,
    preprocess,
    batch_size: int,
    num_workers: int,
    device: str,
):
    """Read, render and encode ``items`` batch by batch; yields ``(indices, vectors,
    errors)``: the positions in ``items`` that were encoded, their vectors (an array,
    None when no image of the batch could be read) and ``(position, reason)`` for the
    images that could not. The one path from a sample to its vector, shared by
    :func:`compute_embeddings` and zero-shot classification.
    """
    import torch
    from torch.utils.data import DataLoader

    data = _SampleImages(items, spec.kind, window, preprocess)
    loader = DataLoader(
        data,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.startswith("cuda"),
    )
    # without worker processes, a thread reads and renders the next batches while the
    # model encodes this one (numpy, PIL and torch release the GIL while they work)
    batches = loader if num_workers > 0 else _prefetched(loader)
    with torch.inference_mode():
        for idx, batch, errs in batches:
            vecs = None
            if batch is not None:
                if spec.kind == RADIOMICS:
                    vecs = batch
                else:
                    if isinstance(batch, list):
                        batch = torch.stack(
                            [data.grey.to_model(x[None])[0] if x.ndim == 2 else x for x in batch]
                        )
                    batch = batch.to(device, non_blocking=True)
                    if batch.dtype == torch.uint8:
                        batch = data.grey.to_model(batch)
                    out = torch_model.encode_image(batch)
                    vecs = out.float().cpu().numpy()
            yield idx, vecs, errs


def _prefetched(iterable, depth: int = 2):
    """Iterate ``iterable`` in a background thread that keeps ``depth`` items ready.

    An exception in the thread is raised here, at the item where it happened; when
    the consumer stops early the thread stops too.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterable:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as err:  # noqa: BLE001 - re-raised in the consumer
            put((end, err))

    thread = threading.Thread(target=produce, name="multireader-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = ready.get()
            if item is end:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)


def default_workers() -> int:
    """DataLoader workers: one per core but one (the model runs in the main process), <= 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --- the run -----------------------------------------------------------------------
def _field_meta(dataset, field: str) -> dict | None:
    f = dataset.get_field(field)
    if f is None:
        return None
    import fiftyone as fo

    if not isinstance(f, fo.VectorField):
        raise FieldConflictError(
            f"field {field!r} exists as {type(f).__name__}, not a vector field; pass another "
            "field name"
        )
    return ((f.info or {}).get(fields.INFO_KEY)) or {}


def _values(view, name: str, n: int) -> list:
    return view.values(name) if view.has_field(name) else [None] * n


def compute_embeddings(
    samples,
    *,
    model: str = RADIOMICS,
    pretrained: str | None = None,
    field: str | None = None,
    window: str = "auto",
    batch_size: int = 32,
    num_workers: int | None = None,
    device: str | None = None,
    skip_existing: bool = True,
    similarity_index: bool = False,
    brain_key: str | None = None,
    progress: ProgressFn | None = None,
) -> dict:
    """Embed every sample of a dataset or view into a vector field; returns a report.

    Args:
        samples: a FiftyOne dataset or view.
        model: ``"radiomics"`` (weight-free), ``"biomedclip"``, an open_clip name, an
            ``hf-hub:`` id, a model directory or a model config JSON.
        pretrained: an open_clip pretrained tag or a local checkpoint path.
        field: the vector field; default :func:`default_field` of ``model``.
        window: ``"auto"`` (the file's window) or a :data:`dicom.WINDOW_PRESETS` name;
            open_clip models only (radiomics reads native values).
        batch_size, num_workers, device: the DataLoader and where the model runs
            (default workers: :func:`default_workers`, none for under 512 images;
            device: CUDA when present, else CPU).
        skip_existing: keep vectors already stored by the same model (resume).
        similarity_index: also build a FiftyOne similarity index on the field under
            ``brain_key`` (default ``sim_<field>``).
        progress: ``progress(fraction, message)``.

    Returns ``{"field", "dim", "model", "n_embedded", "n_skipped", "errors",
    "seconds", "images_per_s", "device", "brain_key"}``; ``errors`` lists
    ``{"sample_id", "reason"}`` for images that could not be read (they get no vector).
    """
    import fiftyone as fo

    t0 = time.perf_counter()
    if batch_size < 1:
        raise EmbeddingError(f"batch_size must be at least 1, got {batch_size}")
    if num_workers is not None and num_workers < 0:
        raise EmbeddingError(f"num_workers must be 0 or more, got {num_workers}")
    spec = resolve_model(model, pretrained, window)
    field = field or default_field(model)
    view = samples.view()
    dataset = view._dataset
    meta = _field_meta(dataset, field)
    if meta is not None and meta.get("model_key") != spec.key:
        source = (
            f"embeddings of {meta.get('model', {}).get('model')!r} (model key "
            f"{meta.get('model_key')!r})"
            if meta.get("model_key")
            else "vectors not written by compute_embeddings (no model recorded)"
        )
        raise FieldConflictError(
            f"field {field!r} holds {source}, not of this model ({spec.key!r}); "
            "pass another field name, or delete the field first"
        )

    ids = view.values("id")
    done = set()
    if skip_existing and meta is not None:
        done = set(view.exists(field).values("id"))
    todo = [i for i, sid in enumerate(ids) if sid not in done]
    n_skipped = len(ids) - len(todo)
    report(progress, 0.0, f"{len(todo)} to embed, {n_skipped} already embedded")

    device = device or default_device()
    torch_model = preprocess = None
    if spec.kind != RADIOMICS and todo:
        torch_model, preprocess = load_open_clip(spec, device)

    all_items = sample_items(view, len(ids))
    center = scale = None
    if spec.kind == RADIOMICS and meta and meta.get("center") is not None:
        center, scale = np.asarray(meta["center"]), np.asarray(meta["scale"])
    order = list(todo)
    if spec.kind == RADIOMICS and center is None and len(order) > WRITE_EVERY:
        # the standardiser is fixed on the first write; let that be a random sample
        order = [order[i] for i in np.random.default_rng(0).permutation(len(order))]
    items = [all_items[i] for i in order]

    errors: list[dict] = []
    pending_ids: list[str] = []
    pending_vecs: list[np.ndarray] = []
    n_written = 0
    dim = meta.get("dim") if meta else None
    workers = resolve_workers(num_workers, len(items))

    def flush() -> None:
        nonlocal center, scale, n_written, dim
        if not pending_ids:
            return
        vecs = np.stack(pending_vecs).astype(np.float64)
        info = {
            "role": "embedding",
            "model_key": spec.key,
            "model": spec.to_dict(),
            "dim": int(vecs.shape[1]),
        }
        if spec.kind == RADIOMICS:
            if center is None:
                center, scale = robust_standardiser(vecs)
            vecs = (vecs - center) / scale
            info.update(
                feature_names=list(RADIOMICS_FEATURES),
                center=[float(v) for v in center],
                scale=[float(v) for v in scale],
            )
        dim = int(vecs.shape[1])
        if dataset.get_field(field) is None:
            dataset.add_sample_field(field, fo.VectorField, info={fields.INFO_KEY: info})
        else:
            f = dataset.get_field(field)
            f.info = {**(f.info or {}), fields.INFO_KEY: info}
            f.save()
        view.set_values(
            field,
            dict(zip(pending_ids, [v.astype(np.float32) for v in vecs], strict=True)),
            key_field="id",
        )
        n_written += len(pending_ids)
        pending_ids.clear()
        pending_vecs.clear()

    if items:
        n_seen = 0
        batches = encode_items(
            items, spec, window, torch_model, preprocess, batch_size, workers, device
        )
        for idx, vecs, errs in batches:
            for i, err in errs:
                errors.append({"sample_id": ids[order[i]], "reason": err})
            n_seen += len(idx) + len(errs)
            if vecs is not None:
                pending_ids.extend(ids[order[i]] for i in idx)
                pending_vecs.extend(vecs)
            if len(pending_ids) >= WRITE_EVERY:
                flush()
            report(progress, 0.95 * n_seen / len(items), f"embedded {n_seen}/{len(items)}")
        flush()

    key = None
    if similarity_index:
        key = brain_key or f"sim_{field}"
        report(progress, 0.96, f"building similarity index {key!r}")
        build_similarity_index(view, field, key)
    seconds = time.perf_counter() - t0
    report(progress, 1.0, f"embedded {n_written} samples into {field}")
    return {
        "field": field,
        "dim": dim,
        "model": spec.to_dict(),
        "n_embedded": n_written,
        "n_skipped": n_skipped,
        "errors": errors,
        "seconds": round(seconds, 3),
        "images_per_s": round(n_written / seconds, 2) if n_written and seconds > 0 else 0.0,
        "device": device,
        "brain_key": key,
    }


def build_similarity_index(view, field: str, brain_key: str) -> Any:
    """A FiftyOne similarity index (sklearn backend) over the samples that have ``field``."""
    import fiftyone.brain as fob

    with_vectors = view.exists(field)
    if len(with_vectors) == 0:
        raise EmbeddingError(f"no sample has {field!r}; nothing to index")
    return fob.compute_similarity(
        with_vectors, embeddings=field, brain_key=brain_key, backend="sklearn"
    )


def embedding_fields(dataset) -> dict[str, dict]:
    """The embedding fields of a dataset, found from field metadata: ``{field: info}``."""
    out = {}
    for name, f in dataset.get_field_schema().items():
        meta = (getattr(f, "info", None) or {}).get(fields.INFO_KEY) or {}
        if meta.get("role") == "embedding":
            out[name] = meta
    return out
