"""Where disagreement concentrates: clusters of a stored embedding, ranked by enrichment.

Reads an embedding, the per-sample disagreement written by ``compute_agreement`` and the
quality metrics and metadata, all with ``values()``; clusters with
:func:`multireader.stats.clusters.cluster_embeddings`; ranks the clusters with
:func:`multireader.stats.clusters.cluster_enrichment`; writes the cluster id to one field;
saves a view for each of the top enriched clusters (one click in the App's view
selector); and stores the ranked result as a run.
"""

from __future__ import annotations

import numpy as np

from multireader.core import fields as F
from multireader.core import runs as RUNS
from multireader.core.bulk import write_sample_fields
from multireader.core.results import AnalysisResults
from multireader.embed.maps import MapError, embedded_view
from multireader.errors import MultireaderError
from multireader.progress import ProgressFn, report

#: numeric metadata worth testing as an explanation (besides every ``quality_*`` field)
NUMERIC_METADATA = ("slice_thickness", "kvp", "window_center", "window_width")
#: categorical metadata worth testing
CATEGORICAL_METADATA = (
    "manufacturer",
    "manufacturer_model",
    "contrast",
    "patient_sex",
    "patient_age_bin",
    "patient_weight_bin",
    "body_part",
)


#: distinguishing features kept per cluster
TOP_FEATURES = 3
#: quality metrics defined to measure a degradation: listed first among equal effects
DEGRADATION_MEASURES = ("sharpness", "noise")


class ClusterError(MultireaderError):
    """Clusters cannot be found as asked; the message says why and what to run first."""


def feature_phrase(name: str) -> str:
    """How a feature reads in a sentence: quality metrics say which way is worse."""
    phrases = {
        "sharpness": "sharpness ({}; lower = blurrier)",
        "noise": "noise ({}; higher = noisier)",
        "entropy": "entropy ({})",
        "contrast": "contrast ({})",
        "brightness": "brightness ({})",
        "clip": "clipping ({})",
        "saturat": "clipping ({})",
    }
    if name.startswith(F.QUALITY_PREFIX):
        for key, text in phrases.items():
            if key in name:
                return text.format(name)
    return name


def reason(feature: dict) -> str | None:
    """A one-word reason for a distinguishing feature, when it has one: e.g. "blurrier"."""
    name, direction = feature.get("feature", ""), feature.get("direction")
    if "sharpness" in name:
        return "blurrier" if direction == "lower" else "sharper"
    if "noise" in name:
        return "noisier" if direction == "higher" else "less noisy"
    return None


def _default_features(dataset) -> tuple[list[str], list[str]]:
    schema = dataset.get_field_schema()
    numeric = [
        n
        for n, f in schema.items()
        # not uniqueness: it comes from the clustered embedding itself, so it would only
        # restate the clustering
        if (n.startswith(F.QUALITY_PREFIX) or n in NUMERIC_METADATA)
        and type(f).__name__ in ("FloatField", "IntField")
    ]
    categorical = [
        n for n in CATEGORICAL_METADATA if n in schema and type(schema[n]).__name__ == "StringField"
    ]
    return sorted(numeric), categorical


def find_disagreement_clusters(
    samples,
    *,
    embeddings: str,
    method: str = "hdbscan",
    n_clusters: int | None = None,
    min_cluster_size: int | None = None,
    features: list[str] | None = None,
    cluster_field: str | None = None,
    run_key: str = "disagreement_clusters",
    alpha: float = 0.05,
    seed: int = 0,
    save_views: int = 3,
    outcome: str = "high_disagreement",
    quantile: float = 0.75,
    score_field: str | None = None,
    n_components: int | None = None,
    progress: ProgressFn | None = None,
) -> ClusterResults:
    """Cluster ``embeddings`` on ``samples`` and rank the clusters by disagreement.

    Needs the ``readers_disagree`` / ``disagreement`` fields of ``compute_agreement``.
    ``features`` (default: every ``quality_*`` field and the slicing metadata) are the
    candidate explanations; each cluster lists those that distinguish it most, as effect
    sizes. Writes the cluster id (``-1`` = noise for HDBSCAN; None without an embedding)
    to ``cluster_field`` (default ``cluster_<embeddings>``) and saves views
    ``disagreement_cluster_1`` .. for the top ``save_views`` enriched clusters.

    ``outcome`` is what "disagreement" means for the enrichment test:
    ``high_disagreement`` (default): the sample's ``disagreement`` score is in the top
    ``1 - quantile`` of the view (the top quarter by default), so a cluster is enriched
    when it holds more of the most contested images; ``readers_disagree``: any
    disagreement at all. With four readers on an ordinal scale almost every image has
    some disagreement (88% on the demo study), which leaves the boolean little room to
    separate clusters; the score's top quarter does. ``score_field`` is the score used:
    by default the class-call part ``disagreement_class`` when class calls were analysed
    (what the diagnosis is), else the combined ``disagreement``. Outline disagreement
    (masks, boxes) reflects drawing style as much as doubt about the finding: on the demo
    study it is no higher on blurred images, where the class calls fall apart.

    ``n_components``: reduce the embedding with PCA before clustering; by default 50
    components when it has more than 64 dimensions (CLIP-size vectors make HDBSCAN slow:
    about 28 s against 3 s for 5,000 x 512 here), none otherwise.
    """
    from multireader.stats import clusters as CL

    RUNS.check_key(run_key)
    view = samples.view()
    dataset = view._dataset
    if not dataset.has_field(F.READERS_DISAGREE):
        raise ClusterError(
            "no per-sample disagreement on this dataset: run compute_agreement first "
            "(it writes readers_disagree and disagreement)"
        )
    try:
        present, n_missing, dim = embedded_view(view, embeddings, 10, "clustering")
    except MapError as e:
        raise ClusterError(str(e)) from e
    report(progress, 0.05, f"reading {len(present)} embeddings ({dim}-d) and features")
    if features is None:
        numeric, categorical = _default_features(dataset)
    else:
        schema = dataset.get_field_schema()
        unknown = [f for f in features if f not in schema]
        if unknown:
            raise ClusterError(f"no such fields: {', '.join(unknown)}")
        numeric = [f for f in features if type(schema[f]).__name__ in ("FloatField", "IntField")]
        categorical = [f for f in features if f not in numeric]
    if score_field is None:
        score_field = (
            "disagreement_class" if dataset.has_field("disagreement_class") else F.DISAGREEMENT
        )
    elif not dataset.has_field(score_field):
        raise ClusterError(f"no score field {score_field!r}; run compute_agreement first")
    paths = ["id", embeddings, F.READERS_DISAGREE, score_field, *numeric, *categorical]
    cols = dict(zip(paths, present.values(paths), strict=True))
    ids = cols["id"]
    X = np.asarray(cols[embeddings], dtype=float)
    score = np.array([np.nan if v is None else float(v) for v in cols[score_field]])
    if outcome == "readers_disagree":
        raw = cols[F.READERS_DISAGREE]
        disagree = np.array([np.nan if v is None else float(bool(v)) for v in raw])
        threshold = None
    elif outcome == "high_disagreement":
        if not 0 < quantile < 1:
            raise ClusterError(f"quantile must be between 0 and 1, got {quantile}")
        if np.isnan(score).all():
            raise ClusterError("no sample of this view has a disagreement score")
        threshold = float(np.nanquantile(score, quantile))
        # at or above the threshold; NaN (fewer than two readers) stays undefined
        disagree = np.where(np.isnan(score), np.nan, (score >= threshold).astype(float))
    else:
        raise ClusterError(
            f"unknown outcome {outcome!r}; choose high_disagreement or readers_disagree"
        )
    n_unscored = int(np.isnan(disagree).sum())
    feats: dict[str, np.ndarray] = {}
    for name in numeric:
        feats[name] = np.array([np.nan if v is None else float(v) for v in cols[name]])
    for name in categorical:
        feats[name] = np.array([None if v is None else str(v) for v in cols[name]], dtype=object)

    report(progress, 0.2, f"clustering with {method}")
    try:
        if n_components is None and dim > 64:
            n_components = 50
        labels = CL.cluster_embeddings(
            X,
            method=method,
            n_clusters=n_clusters,
            min_cluster_size=min_cluster_size,
            seed=seed,
            n_components=n_components,
        )
    except ValueError as e:
        raise ClusterError(f"cannot cluster {embeddings!r}: {e}") from e
    report(progress, 0.6, "enrichment and distinguishing features")
    # Cliff's delta saturates at +-1 whenever a cluster and the rest do not overlap,
    # which happens to several quality metrics at once for a degraded series (a blurred
    # series is also darker and less noisy by these measures, because blur mixes tissue
    # with air and smooths noise): the metrics DEFINED to measure a degradation come first
    result = CL.cluster_enrichment(
        labels,
        disagree,
        disagreement=score,
        features=feats,
        alpha=alpha,
        feature_labels={n: feature_phrase(n) for n in feats},
        top_features=TOP_FEATURES,
        preferred_features=[n for n in feats if any(k in n for k in DEGRADATION_MEASURES)],
        outcome=(
            f"at or above the {100 * quantile:.0f}th percentile of {score_field}"
            if outcome == "high_disagreement"
            else "disagreed on"
        ),
    )
    for cl in result["clusters"]:
        for feat in cl["distinguishing"]:
            feat["reason"] = reason(feat)
        cl["reason"] = next((f["reason"] for f in cl["distinguishing"] if f["reason"]), None)

    field = cluster_field or f"cluster_{embeddings}"
    if field in F.reader_fields(dataset) or field.startswith(F.READER_PREFIX):
        raise ClusterError(f"{field!r} is a reader field; choose another cluster field")
    report(progress, 0.85, f"writing {field}")
    write_sample_fields(present, ids, {field: labels.astype(np.int64)})
    F.update_sidebar_groups(dataset)

    from fiftyone import ViewField as VF

    saved = []
    ranked = [c for c in result["clusters"] if c.get("enriched")][: max(0, save_views)]
    for rank, cl in enumerate(ranked, start=1):
        name = f"disagreement_cluster_{rank}"
        desc = f"cluster {cl['cluster']} of {embeddings}: " + (
            cl["distinguishing"][0]["sentence"] if cl.get("distinguishing") else ""
        )
        dataset.save_view(
            name,
            view.match(VF(field) == int(cl["cluster"])).sort_by(F.DISAGREEMENT, reverse=True),
            description=desc[:250],
            overwrite=True,
        )
        cl["saved_view"] = name
        saved.append(name)
    result.update(
        {
            "embeddings": embeddings,
            "method": method,
            "cluster_field": field,
            "n_samples": len(present),
            "n_without_embedding": n_missing,
            "n_without_disagreement": n_unscored,
            "outcome": outcome,
            "score_field": score_field,
            "threshold": threshold,
            "features": {"numeric": numeric, "categorical": categorical},
            "saved_views": saved,
        }
    )
    config = {
        "embeddings": embeddings,
        "algorithm": method,
        "n_clusters": n_clusters,
        "min_cluster_size": min_cluster_size,
        "n_components": n_components,
        "alpha": alpha,
        "seed": seed,
        "outcome": outcome,
        "score_field": score_field,
        "quantile": quantile if outcome == "high_disagreement" else None,
        "cluster_field": field,
        "n_samples": len(present),
    }
    RUNS.save(present, run_key, "clusters", config, result)
    result["run_key"] = run_key
    report(progress, 1.0, "clusters done")
    return ClusterResults(result, run_key=run_key, config=config)


def _fmt(v, pct=False) -> str:
    if v is None:
        return ""
    return f"{100 * v:.0f}%" if pct else f"{v:.2g}"


class ClusterResults(AnalysisResults):
    """What :func:`find_disagreement_clusters` found: clusters of the embedding ranked
    by how enriched they are in contested images, and what sets each apart.

    Tables: ``clusters`` (rank, size, disagreement rate in and outside, BH-adjusted p,
    the distinguishing sentence, its saved view; most enriched first).
    """

    run_kind = "clusters"
    sections = ("clusters",)

    @property
    def cluster_field(self) -> str | None:
        return self.results.get("cluster_field") or self.config.get("cluster_field")

    @property
    def outputs(self) -> dict[str, list[str]]:
        return self._outputs(
            fields=[self.cluster_field], saved_views=self.results.get("saved_views") or []
        )

    def summary(self) -> dict:
        return {
            "run_key": self.run_key,
            "cluster_field": self.cluster_field,
            "summary": self.results.get("summary") or "",
            "clusters": self.rows("clusters"),
            "outputs": self.outputs,
        }

    def _rows(self, section: str) -> list[dict]:
        rows = []
        for rank, cl in enumerate(self.results.get("clusters") or [], start=1):
            top = (cl.get("distinguishing") or [{}])[0]
            rows.append(
                {
                    "rank": rank,
                    "cluster": cl["cluster"],
                    "size": cl["size"],
                    "rate": _fmt(cl.get("rate"), pct=True),
                    "rest_rate": _fmt(cl.get("rest_rate"), pct=True),
                    "p_adj": _fmt(cl.get("p_adj")),
                    "enriched": "yes" if cl.get("enriched") else "",
                    "why": top.get("sentence", ""),
                    "view": cl.get("saved_view", ""),
                }
            )
        return rows
