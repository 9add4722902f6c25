"""Operator ``compute_embeddings``: a vector per image, from radiomics or an open_clip model."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator

#: the form's model choices: value -> label
MODEL_CHOICES = {
    "radiomics": "Radiomics (weight-free: intensity, HU bands, texture, noise, blur)",
    "biomedclip": "BiomedCLIP (medical; needs its weights from the HF hub or a local copy)",
    "open_clip": "Another open_clip model (name + pretrained tag or checkpoint path)",
}


def model_from_params(params: dict, default: str = "radiomics") -> tuple[str, str | None]:
    """``(model, pretrained)`` from the form of :func:`model_input`."""
    choice = params.get("model_choice") or default
    if choice == "open_clip":
        name = (params.get("model_name") or "").strip()
        if not name:
            from multireader.errors import MultireaderError

            raise MultireaderError("choose a model: type an open_clip model name, e.g. ViT-B-32")
        return name, (params.get("pretrained") or "").strip() or None
    return choice, None


def model_input(
    inputs: types.Object,
    ctx,
    choices: dict[str, str] = MODEL_CHOICES,
    default: str = "radiomics",
    default_pretrained: str | None = None,
) -> str:
    """The model part of a form (a choice of ``choices``; for "open_clip" its name and
    weights; the window for any image model); returns the choice picked so far."""
    from multireader.io import dicom

    choice = types.RadioGroup()
    for value, label in choices.items():
        choice.add_choice(value, label=label)
    inputs.enum(
        "model_choice",
        choice.values(),
        default=default,
        required=True,
        label="Model",
        view=choice,
    )
    picked = ctx.params.get("model_choice") or default
    if picked == "open_clip":
        inputs.str(
            "model_name",
            required=True,
            default="ViT-B-32",
            label="open_clip model",
            description=(
                "A name from open_clip.list_models(), an hf-hub:<org>/<repo> id, a "
                "directory with open_clip_config.json, or a model config JSON path"
            ),
        )
        inputs.str(
            "pretrained",
            default=default_pretrained,
            label="Pretrained tag or checkpoint path",
            description=(
                "e.g. laion2b_s34b_b79k (downloads), or /path/to/checkpoint.pt on this "
                "machine; empty for hub ids and model directories"
            ),
        )
    if picked != "radiomics":
        window = types.Dropdown()
        window.add_choice("auto", label="The file's window")
        for name, (c, w) in dicom.WINDOW_PRESETS.items():
            window.add_choice(name, label=f"{name} (C {c:g}, W {w:g})")
        inputs.enum(
            "window",
            window.values(),
            default=I.DEFAULTS["window"],
            label="Window",
            description="How native values become the 8-bit image the model sees",
            view=window,
        )
    return picked


def model_params(model: str, pretrained: str | None, choices: dict[str, str]) -> dict:
    """The form parameters of :func:`model_input` for an SDK ``model`` (a choice of
    ``choices`` by name, else an open_clip model name) and ``pretrained``."""
    choice = model if model in choices and model != "open_clip" else "open_clip"
    return {
        "model_choice": choice,
        "model_name": model if choice == "open_clip" else "",
        "pretrained": pretrained or "",
    }


def batch_input(inputs: types.Object) -> None:
    """Batch size and data loader workers of an image model's run."""
    from multireader.embed import embeddings

    inputs.int("batch_size", default=I.DEFAULTS["batch_size"], min=1, label="Batch size")
    inputs.int(
        "num_workers",
        default=embeddings.default_workers(),
        min=0,
        label="Data loader workers",
        description="Processes reading and rendering images while the model runs",
    )


def batch_params(params: dict) -> dict:
    """``window``, ``batch_size`` and ``num_workers`` from the form of :func:`model_input`
    and :func:`batch_input`."""
    workers = params.get("num_workers")
    return {
        "window": params.get("window") or I.DEFAULTS["window"],
        "batch_size": int(params.get("batch_size") or I.DEFAULTS["batch_size"]),
        "num_workers": None if workers is None else int(workers),
    }


class ComputeEmbeddings(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_embeddings",
            risk_level=types.RiskLevel.LOW,
            label="Compute embeddings",
            description=(
                "A vector per image: weight-free radiomics on native HU, or any open_clip "
                "model (BiomedCLIP, a local checkpoint) on windowed images; resumable, "
                "optionally with a similarity index"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        from multireader.embed import embeddings

        inputs = types.Object()
        picked = model_input(inputs, ctx)
        model, _ = (
            model_from_params(ctx.params)
            if picked != "open_clip" or ctx.params.get("model_name")
            else ("ViT-B-32", None)
        )
        inputs.str(
            "field",
            default=embeddings.default_field(model),
            label="Field",
            description="Vector field to write; samples that already have it are skipped",
        )
        batch_input(inputs)
        inputs.bool(
            "skip_existing",
            default=True,
            label="Skip samples already embedded by this model",
            view=types.CheckboxView(),
        )
        inputs.bool(
            "similarity_index",
            default=False,
            label="Build a similarity index",
            description="FiftyOne Brain similarity (sort by similarity in the App)",
            view=types.CheckboxView(),
        )
        I.target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Compute embeddings"))

    def execute(self, ctx):
        from multireader.embed import embeddings

        p = ctx.params
        model, pretrained = model_from_params(p)
        report = embeddings.compute_embeddings(
            I.target_view(ctx),
            model=model,
            pretrained=pretrained,
            field=(p.get("field") or "").strip() or None,
            **batch_params(p),
            skip_existing=bool(p.get("skip_existing", True)),
            similarity_index=bool(p.get("similarity_index", False)),
            progress=_common.progress_for(ctx),
        )
        self.reload(ctx)
        return {
            "field": report["field"],
            "dim": report["dim"],
            "model": report["model"]["model"],
            "model_key": report["model"]["key"],
            "n_embedded": report["n_embedded"],
            "n_skipped": report["n_skipped"],
            "n_errors": len(report["errors"]),
            "errors": report["errors"],
            "seconds": report["seconds"],
            "images_per_s": report["images_per_s"],
            "device": report["device"],
            "brain_key": report["brain_key"],
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("field", label="Field")
        outputs.str("model", label="Model")
        outputs.int("dim", label="Dimensions")
        outputs.int("n_embedded", label="Embedded")
        outputs.int("n_skipped", label="Skipped (already embedded)")
        outputs.float("images_per_s", label="Images per second")
        outputs.str("device", label="Device")
        outputs.str("brain_key", label="Similarity index")
        _common.table(
            outputs, "errors", "Images not embedded", {"sample_id": "Sample", "reason": "Why"}
        )
        return types.Property(outputs, view=types.View(label="Embeddings"))

    def __call__(
        self,
        sample_collection,
        *,
        model: str = "radiomics",
        pretrained: str | None = None,
        field: str | None = None,
        window: str = I.DEFAULTS["window"],
        batch_size: int = I.DEFAULTS["batch_size"],
        num_workers: int | None = None,
        skip_existing: bool = True,
        similarity_index: bool = False,
        delegate: bool = I.DEFAULTS["delegate"],
    ):
        """Compute embeddings from the SDK for a dataset or view; returns the report.

        ``model`` is ``"radiomics"``, ``"biomedclip"`` or any open_clip name / hub id /
        model directory / config JSON (see :func:`multireader.embed.embeddings.compute_embeddings`).
        """
        return self.run_sdk(
            sample_collection,
            delegate,
            **model_params(model, pretrained, MODEL_CHOICES),
            field=field or "",
            window=window,
            batch_size=batch_size,
            num_workers=num_workers,
            skip_existing=skip_existing,
            similarity_index=similarity_index,
        )
