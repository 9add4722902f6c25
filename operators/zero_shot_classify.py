"""Operator ``zero_shot_classify``: open_clip zero-shot classification into a prediction
field, with prompt templates and phrases per class."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator
from .compute_embeddings import (
    batch_input,
    batch_params,
    model_from_params,
    model_input,
    model_params,
)

#: the form's model choices: value -> label (radiomics has no text tower)
MODEL_CHOICES = {
    "open_clip": "An open_clip model (name + pretrained tag or local checkpoint path)",
    "biomedclip": "BiomedCLIP (medical; needs its weights from the HF hub or a local copy)",
}
#: what separates several phrases of one class in the form
PHRASE_SEPARATOR = "|"


def _phrases_from_params(value) -> dict | None:
    """``{class: [phrases]}`` from the form ("a | b" per class) or the SDK (str or list)."""
    if not value:
        return None
    out = {}
    for cls, given in dict(value).items():
        if isinstance(given, str):
            given = given.split(PHRASE_SEPARATOR)
        out[cls] = [str(p).strip() for p in (given or []) if str(p).strip()]
    return out


class ZeroShotClassify(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="zero_shot_classify",
            risk_level=types.RiskLevel.LOW,
            label="Zero-shot classify (open_clip)",
            description=(
                "Predict the label schema's classes with an open_clip model and prompt "
                "templates per class; writes logits and confidence to a prediction field, "
                "reusing a stored embedding of the same model"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        from multireader.embed import embeddings, zero_shot

        inputs = types.Object()
        schema = _common.label_schema_or_warning(
            inputs, ctx, "The classes to predict are the schema's"
        )
        if not schema:
            return types.Property(inputs)
        inputs.view(
            "caveat",
            types.Notice(
                label=(
                    "A general CLIP model has not learned CT: zero-shot results on "
                    "radiology are weak unless a medical CLIP checkpoint is supplied"
                )
            ),
        )
        model_input(
            inputs,
            ctx,
            MODEL_CHOICES,
            default="open_clip",
            default_pretrained=zero_shot.DEFAULT_PRETRAINED,
        )
        inputs.list(
            "templates",
            types.String(),
            default=list(zero_shot.DEFAULT_TEMPLATES),
            label="Prompt templates",
            description="Each holds {} where a class phrase goes, e.g. 'a CT image of a {}.'",
        )
        phrases = types.Object()
        for cls in schema["classes"]:
            phrases.str(
                cls,
                default=zero_shot.default_phrase(cls),
                label=cls,
                description=f"Phrases for {cls!r}, separated by '{PHRASE_SEPARATOR}'",
            )
        inputs.define_property(
            "phrases",
            phrases,
            label="Phrases per class",
            description=(
                "Every phrase goes into every template; a class's text embedding is the "
                "mean over its prompts (CLIP's prompt ensembling)"
            ),
        )
        inputs.str(
            "field",
            default=zero_shot.DEFAULT_FIELD,
            label="Predictions field",
            description="Where the predictions go (never a reader's or consensus field)",
        )
        stored = [
            name
            for name, meta in embeddings.embedding_fields(ctx.dataset).items()
            if (meta.get("model") or {}).get("kind") == "open_clip"
        ]
        if stored:
            choice = types.Dropdown()
            for name in sorted(stored):
                choice.add_choice(name, label=name)
            inputs.enum(
                "embedding_field",
                choice.values(),
                required=False,
                label="Image vectors from (optional)",
                description=(
                    "A field compute_embeddings wrote with this same model, weights and "
                    "window; empty: found automatically, else the images are encoded"
                ),
                view=choice,
            )
        batch_input(inputs)
        I.target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Zero-shot classify (open_clip)"))

    def execute(self, ctx):
        from multireader.core import fields
        from multireader.embed.zero_shot import DEFAULT_FIELD, zero_shot_classify

        p = ctx.params
        model, pretrained = model_from_params(p, default="open_clip")
        result = zero_shot_classify(
            I.target_view(ctx),
            model,
            pretrained,
            (p.get("field") or "").strip() or DEFAULT_FIELD,
            prompts=_phrases_from_params(p.get("phrases")),
            templates=p.get("templates") or None,
            **batch_params(p),
            embedding_field=p.get("embedding_field") or None,
            reuse_embeddings=bool(p.get("reuse_embeddings", True)),
            progress=_common.progress_for(ctx),
        )
        fields.update_sidebar_groups(ctx.dataset)
        self.reload(ctx)
        counts = result["predicted_counts"]
        return {
            **{k: v for k, v in result.items() if k != "model"},
            "model": result["model"]["model"],
            "n_errors": len(result["errors"]),
            "class_table": [
                {
                    "class": cls,
                    "phrases": f" {PHRASE_SEPARATOR} ".join(result["phrases"][cls]),
                    "n_prompts": len(result["prompts"][cls]),
                    "n_predicted": counts[cls],
                }
                for cls in result["classes"]
            ],
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("field", label="Predictions written to")
        outputs.str("model", label="Model")
        outputs.int("n_predicted", label="Samples predicted")
        outputs.int("n_reused", label="Image vectors reused from a stored embedding")
        outputs.str("embedding_field", label="Stored embedding used")
        outputs.int("n_encoded", label="Images encoded")
        outputs.str("device", label="Device")
        _common.table(
            outputs,
            "class_table",
            "Classes",
            {
                "class": "Class",
                "phrases": "Phrases",
                "n_prompts": "Prompts",
                "n_predicted": "Predicted",
            },
        )
        _common.table(
            outputs, "errors", "Images not classified", {"sample_id": "Sample", "reason": "Why"}
        )
        return types.Property(outputs, view=types.View(label="Zero-shot predictions"))

    def __call__(
        self,
        sample_collection,
        model: str = "ViT-B-32",
        pretrained: str | None = "laion2b_s34b_b79k",
        field: str = "predictions_zero_shot",
        *,
        prompts: dict | None = None,
        templates: list[str] | None = None,
        window: str = I.DEFAULTS["window"],
        batch_size: int = I.DEFAULTS["batch_size"],
        num_workers: int | None = None,
        embedding_field: str | None = None,
        reuse_embeddings: bool = True,
        delegate: bool = I.DEFAULTS["delegate"],
    ):
        """Zero-shot classify a dataset or view from the SDK; returns the result dict (or
        the queued operation when ``delegate=True``). Arguments as for
        :func:`multireader.embed.zero_shot.zero_shot_classify`."""
        return self.run_sdk(
            sample_collection,
            delegate,
            **model_params(model, pretrained, MODEL_CHOICES),
            field=field,
            phrases=prompts,
            templates=templates,
            window=window,
            batch_size=batch_size,
            num_workers=num_workers,
            embedding_field=embedding_field,
            reuse_embeddings=reuse_embeddings,
        )
