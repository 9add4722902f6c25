"""Operator ``find_disagreement_clusters``: where in embedding space readers disagree."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator
from .compute_visualization import embedding_field_input

#: this operator's defaults: the form's, execute's and the SDK's
DEFAULTS = {**I.DEFAULTS, "run_key": "disagreement_clusters", "method": "hdbscan"}


class FindDisagreementClusters(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="find_disagreement_clusters",
            risk_level=types.RiskLevel.LOW,
            label="Find disagreement clusters",
            description=(
                "Cluster a stored embedding, rank clusters by how much more often readers "
                "disagree there, and name what distinguishes each (quality, scanner, ...)"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        from multireader.core import fields

        inputs = types.Object()
        if not ctx.dataset.has_field(fields.READERS_DISAGREE):
            inputs.view(
                "no_agreement",
                types.Warning(
                    label="No disagreement scores yet",
                    description="Run 'Compute reader agreement' first",
                ),
            )
            return types.Property(inputs, view=types.View(label="Find disagreement clusters"))
        default = embedding_field_input(inputs, ctx.dataset)
        if default is None:
            return types.Property(inputs, view=types.View(label="Find disagreement clusters"))
        method = types.RadioGroup()
        method.add_choice("hdbscan", label="HDBSCAN (finds the number of clusters; noise allowed)")
        method.add_choice("kmeans", label="k-means")
        inputs.enum(
            "method", method.values(), default=DEFAULTS["method"], label="Clustering", view=method
        )
        if ctx.params.get("method") == "kmeans":
            inputs.int(
                "n_clusters",
                label="Number of clusters",
                description="Empty: chosen by silhouette",
            )
        else:
            inputs.int(
                "min_cluster_size",
                label="Smallest cluster",
                description="Empty: max(5, n / 50)",
            )
        I.alpha_input(inputs, "For the enrichment test (Benjamini-Hochberg across clusters)")
        I.run_key_input(inputs, ctx, "clusters", DEFAULTS["run_key"])
        I.analysis_target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Find disagreement clusters"))

    def execute(self, ctx):
        from multireader.analyses import disagreement_clusters as DC

        p = ctx.params
        res = DC.find_disagreement_clusters(
            I.analysis_target_view(ctx),
            embeddings=p["embeddings"],
            method=p.get("method") or DEFAULTS["method"],
            n_clusters=p.get("n_clusters") or None,
            min_cluster_size=p.get("min_cluster_size") or None,
            alpha=float(I.value(ctx, "alpha")),
            run_key=I.run_key_param(ctx, DEFAULTS["run_key"]),
            progress=_common.progress_for(ctx),
        )
        self.reload(ctx)
        return res.summary()

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("summary", label="Top cluster")
        outputs.str("cluster_field", label="Cluster ids written to")
        outputs.str("run_key", label="Stored as run")
        _common.table(
            outputs,
            "clusters",
            "Clusters, most enriched first (open a saved view to see its samples)",
            {
                "rank": "#",
                "cluster": "Cluster",
                "size": "Size",
                "rate": "Disagree",
                "rest_rate": "Rest",
                "p_adj": "p (BH)",
                "enriched": "Enriched",
                "why": "What distinguishes it",
                "view": "Saved view",
            },
        )
        return types.Property(outputs, view=types.View(label="Disagreement clusters"))

    def __call__(
        self,
        sample_collection,
        embeddings: str,
        *,
        method: str = DEFAULTS["method"],
        n_clusters: int | None = None,
        min_cluster_size: int | None = None,
        alpha: float = DEFAULTS["alpha"],
        run_key: str = DEFAULTS["run_key"],
        delegate: bool = DEFAULTS["delegate"],
    ):
        """Find clusters from the SDK; the full ranked result is stored as run ``run_key``."""
        return self.run_sdk_with(locals())
