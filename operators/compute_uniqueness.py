"""Operator ``compute_uniqueness``: Brain uniqueness from a stored embedding, no download."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator
from .compute_visualization import embedding_field_input


class ComputeUniqueness(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_uniqueness",
            risk_level=types.RiskLevel.LOW,
            label="Compute uniqueness",
            description=(
                "How unusual each image is, from a stored embedding (no model download): "
                "the rare images are often the contested ones"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        default = embedding_field_input(inputs, ctx.dataset)
        if default is None:
            return types.Property(inputs, view=types.View(label="Compute uniqueness"))
        field = ctx.params.get("embeddings") or default
        inputs.str(
            "uniqueness_field",
            default=f"uniqueness_{field}",
            required=True,
            label="Output field",
        )
        I.analysis_target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Compute uniqueness"))

    def execute(self, ctx):
        from multireader.embed import maps

        p = ctx.params
        result = maps.compute_uniqueness(
            I.analysis_target_view(ctx),
            embeddings=p["embeddings"],
            uniqueness_field=(p.get("uniqueness_field") or "").strip() or None,
            progress=_common.progress_for(ctx),
        )
        self.reload(ctx)
        return result

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("uniqueness_field", label="Written to")
        outputs.int("n_scored", label="Samples scored")
        outputs.int("n_missing", label="Samples without this embedding (left out)")
        return types.Property(outputs, view=types.View(label="Uniqueness"))

    def __call__(
        self,
        sample_collection,
        embeddings: str,
        *,
        uniqueness_field: str | None = None,
        delegate: bool = I.DEFAULTS["delegate"],
    ):
        """Compute uniqueness from the SDK; returns the field written and counts."""
        uniqueness_field = uniqueness_field or f"uniqueness_{embeddings}"
        return self.run_sdk_with(locals())
