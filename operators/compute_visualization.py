"""Operator ``compute_visualization``: a UMAP map of a stored embedding for the App."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator


def embedding_field_input(inputs: types.Object, dataset) -> str | None:
    """A dropdown of the stored embeddings, or a warning when there is none yet."""
    from multireader.embed.maps import vector_fields

    found = vector_fields(dataset)
    if not found:
        inputs.view(
            "none",
            types.Warning(
                label="No embeddings yet",
                description="Run 'Compute embeddings' first (the radiomics embedding needs no download)",
            ),
        )
        return None
    choice = types.Dropdown()
    for name in found:
        choice.add_choice(name, label=name)
    default = next((f for f in found if "radiomics" in f), found[0])
    inputs.enum("embeddings", found, default=default, required=True, label="Embedding", view=choice)
    return default


class ComputeVisualization(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_visualization",
            risk_level=types.RiskLevel.LOW,
            label="Compute embedding map (UMAP)",
            description=(
                "A 2-D map of a stored embedding for the Embeddings panel, to colour by "
                "disagreement, reader, scanner or any quality metric"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        default = embedding_field_input(inputs, ctx.dataset)
        if default is None:
            return types.Property(inputs, view=types.View(label="Compute embedding map"))
        method = types.RadioGroup()
        method.add_choice("umap", label="UMAP")
        method.add_choice("tsne", label="t-SNE")
        method.add_choice("pca", label="PCA")
        inputs.enum("method", method.values(), default="umap", label="Method", view=method)
        field = ctx.params.get("embeddings") or default
        inputs.str(
            "brain_key",
            default=f"map_{field}",
            required=True,
            label="Brain key",
            description="The map's name in the Embeddings panel (replaced if it exists)",
        )
        I.analysis_target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Compute embedding map"))

    def execute(self, ctx):
        from multireader.embed import maps

        p = ctx.params
        result = maps.compute_visualization(
            I.analysis_target_view(ctx),
            embeddings=p["embeddings"],
            brain_key=(p.get("brain_key") or "").strip() or None,
            method=p.get("method") or "umap",
            progress=_common.progress_for(ctx),
        )
        self.reload(ctx)
        return result

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("brain_key", label="Map (open the Embeddings panel and choose it)")
        outputs.int("n_points", label="Samples on the map")
        outputs.int("n_missing", label="Samples without this embedding (left out)")
        return types.Property(outputs, view=types.View(label="Embedding map"))

    def __call__(
        self,
        sample_collection,
        embeddings: str,
        *,
        method: str = "umap",
        brain_key: str | None = None,
        delegate: bool = I.DEFAULTS["delegate"],
    ):
        """Compute the map from the SDK; returns its brain key and counts."""
        brain_key = brain_key or f"map_{embeddings}"
        return self.run_sdk_with(locals())
