"""Maps and uniqueness from a stored embedding, through FiftyOne Brain.

A 2-D UMAP of any embedding field becomes a Brain visualization run, so the App's
Embeddings panel shows it and colours it by any field (``disagreement``, a reader's
label, the scanner, a quality metric). Uniqueness scores come from the same stored
embedding, so nothing is downloaded. Both check their input first and say exactly what
is wrong: a missing field, a field that is not a vector, too few embedded samples.
"""

from __future__ import annotations

import numpy as np

from multireader.errors import MultireaderError
from multireader.progress import ProgressFn, report

#: UMAP's default neighbourhood; a map needs more samples than this
UMAP_NEIGHBORS = 15


class MapError(MultireaderError):
    """The map or uniqueness cannot be computed as asked; the message says why."""


def vector_fields(dataset) -> list[str]:
    """The dataset's vector fields: the embeddings a map, uniqueness or clusters can use."""
    return sorted(
        name
        for name, f in dataset.get_field_schema().items()
        if type(f).__name__ in ("VectorField", "ArrayField")
    )


def embedded_view(samples, field: str, minimum: int, what: str):
    """The samples of ``samples`` that have a vector in ``field`` (at least ``minimum``).

    Returns ``(view, n_missing, dim)``.
    """
    from fiftyone import ViewField as VF

    view = samples.view()
    dataset = view._dataset
    if not field or not dataset.has_field(field):
        vectors = vector_fields(dataset)
        raise MapError(
            f"no embedding field {field!r} on dataset {dataset.name!r}; "
            + (
                f"vector fields: {', '.join(vectors)}"
                if vectors
                else "run compute_embeddings first"
            )
        )
    kind = type(dataset.get_field(field)).__name__
    if kind not in ("VectorField", "ArrayField", "ListField"):
        raise MapError(f"field {field!r} is a {kind}, not an embedding (a vector per sample)")
    present = view.match(VF(field) != None)  # noqa: E711 - MongoDB null test
    n, n_missing = len(present), len(view) - len(present)
    if n < minimum:
        raise MapError(
            f"{what} needs at least {minimum} samples with an embedding in {field!r}; "
            f"this view has {n}" + (f" ({n_missing} without one)" if n_missing else "")
        )
    first = np.asarray(present.first()[field], dtype=float)
    if first.ndim != 1 or first.size < 2:
        raise MapError(f"field {field!r} does not hold 1-D vectors (found shape {first.shape})")
    return present, n_missing, int(first.size)


def compute_visualization(
    samples,
    *,
    embeddings: str,
    brain_key: str | None = None,
    method: str = "umap",
    num_dims: int = 2,
    n_neighbors: int = UMAP_NEIGHBORS,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> dict:
    """A 2-D (or ``num_dims``) map of a stored embedding as a Brain visualization run.

    ``method``: ``umap`` (umap-learn, McInnes et al. 2018), ``tsne`` or ``pca``. Samples
    without an embedding are left out and counted. The App's Embeddings panel shows the
    run under ``brain_key`` (default ``map_<field>``).
    """
    import fiftyone.brain as fob

    if method not in ("umap", "tsne", "pca"):
        raise MapError(f"unknown method {method!r}; choose umap, tsne or pca")
    minimum = n_neighbors + 2 if method == "umap" else max(num_dims + 1, 3)
    view, n_missing, dim = embedded_view(samples, embeddings, minimum, f"a {method} map")
    brain_key = brain_key or f"map_{embeddings}"
    dataset = view._dataset
    if brain_key in dataset.list_brain_runs():
        dataset.delete_brain_run(brain_key)
    report(progress, 0.05, f"{method} of {len(view)} samples ({dim}-d {embeddings})")
    kwargs = {"seed": seed}
    if method == "umap":
        kwargs["num_neighbors"] = n_neighbors
    results = fob.compute_visualization(
        view,
        embeddings=embeddings,
        brain_key=brain_key,
        num_dims=num_dims,
        method=method,
        progress=False,
        **kwargs,
    )
    report(progress, 1.0, "map done")
    points = np.asarray(results.points)
    return {
        "brain_key": brain_key,
        "embeddings": embeddings,
        "method": method,
        "n_points": int(points.shape[0]),
        "n_missing": n_missing,
        "dim": dim,
        "num_dims": num_dims,
    }


def compute_uniqueness(
    samples,
    *,
    embeddings: str,
    uniqueness_field: str | None = None,
    progress: ProgressFn | None = None,
) -> dict:
    """Brain uniqueness scores (0 = a near-duplicate, 1 = the most unusual) from a stored
    embedding, written to ``uniqueness_field`` (default ``uniqueness_<embeddings>``)."""
    import fiftyone.brain as fob

    view, n_missing, dim = embedded_view(samples, embeddings, 3, "uniqueness")
    field = uniqueness_field or f"uniqueness_{embeddings}"
    report(progress, 0.05, f"uniqueness of {len(view)} samples from {embeddings}")
    fob.compute_uniqueness(view, uniqueness_field=field, embeddings=embeddings, progress=False)
    values = np.array(view.values(field), dtype=float)
    report(progress, 1.0, "uniqueness done")
    return {
        "uniqueness_field": field,
        "embeddings": embeddings,
        "n_scored": int((~np.isnan(values)).sum()),
        "n_missing": n_missing,
        "dim": dim,
    }
