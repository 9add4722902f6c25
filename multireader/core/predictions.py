"""Model predictions as FiftyOne fields: one format, whoever made them.

Three operators produce predictions (``fit_label_model``, ``zero_shot_classify``,
``import_predictions``); mistakenness and the slice evaluation read them. They meet
here, so every prediction field looks the same:

- a ``fo.Classification`` per sample with ``label`` (the most probable class),
  ``confidence`` (its probability) and ``logits``, one per class of the label schema in
  schema order. ``softmax(logits)`` gives the class probabilities back; for imported
  probabilities the logits are their natural logarithms (a zero clipped to 1e-12), so
  FiftyOne brain's ``compute_mistakenness(use_logits=True)`` reads them too;
- the field's ``info["multireader"]`` says ``role: "prediction"``, the classes, where
  the predictions came from and with what parameters;
- a predicted mask is a ``fo.Segmentation`` in its own field, marked the same way with
  ``kind: "mask"``.

A prediction field is never a reader field: writing one over a reader's labels is
refused, so no operator can replace what a radiologist said.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from multireader import __version__
from multireader.core.fields import INFO_KEY
from multireader.errors import MultireaderError

#: smallest probability kept before taking logs (log(1e-12) = -27.6)
PROB_FLOOR = 1e-12
#: a row of probabilities may differ from 1 by this much (CSV round-off)
SUM_TOLERANCE = 1e-3


class PredictionError(MultireaderError):
    """Predictions that cannot be stored or read: the message names what and where."""


def prediction_fields(dataset, kind: str | None = "classification") -> dict[str, dict]:
    """Prediction fields of ``dataset`` found from field metadata: ``{name: info}``."""
    out = {}
    for name, field in dataset.get_field_schema().items():
        meta = (getattr(field, "info", None) or {}).get(INFO_KEY)
        if not meta or meta.get("role") != "prediction":
            continue
        if kind is not None and meta.get("kind", "classification") != kind:
            continue
        out[name] = dict(meta)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=float)
    z = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def check_probabilities(
    probs: np.ndarray, where: list[str] | None = None, tolerance: float = SUM_TOLERANCE
) -> np.ndarray:
    """Raise :class:`PredictionError` naming every row that is not a distribution.

    ``where`` names each row for the message (a sample, a line of a file).
    """
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2:
        raise PredictionError(f"probabilities must be a 2-D array, got shape {p.shape}")
    names = where or [f"row {i}" for i in range(len(p))]
    bad = [f"{names[i]}: {why}" for i, why in distribution_problems(p, tolerance)]
    if bad:
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        raise PredictionError(
            f"{len(bad)} prediction(s) are not probability distributions: "
            + "; ".join(bad[:10])
            + more
        )
    return p


def distribution_problems(
    probs: np.ndarray, tolerance: float = SUM_TOLERANCE
) -> list[tuple[int, str]]:
    """``(row, why)`` for every row of a 2-D array that is not a probability distribution.

    Non-finite rows first, then negative ones, then wrong sums; a row can appear twice
    (negative and a wrong sum). Importers use it to skip bad rows one by one.
    """
    p = np.asarray(probs, dtype=float)
    finite = np.isfinite(p).all(axis=1)
    out = [(int(i), "a probability is missing or not a number") for i in np.flatnonzero(~finite)]
    negative = np.flatnonzero(finite & (p < 0).any(axis=1))
    out += [(int(i), "a probability is negative") for i in negative]
    sums = p.sum(axis=1)
    for i in np.flatnonzero(np.isfinite(sums) & (np.abs(sums - 1.0) > tolerance)):
        out.append((int(i), f"probabilities sum to {sums[i]:.4f}, not 1"))
    return out


def check_prediction_field(dataset, field: str) -> None:
    """Raise :class:`PredictionError` unless ``field`` is new or already holds predictions
    (a reader's or a consensus field is never overwritten)."""
    _guard_not_reader_field(dataset, field)


def _guard_not_reader_field(dataset, field: str) -> None:
    existing = dataset.get_field(field)
    if existing is None:
        return
    meta = (getattr(existing, "info", None) or {}).get(INFO_KEY) or {}
    if meta.get("role") in ("reader", "consensus"):
        raise PredictionError(
            f"field {field!r} holds {meta.get('role')} labels; predictions go in their own "
            "field (choose another name)"
        )
    if meta and meta.get("role") != "prediction":
        raise PredictionError(
            f"field {field!r} is a {meta.get('role')!r} field of this plugin, not predictions"
        )


def write_predictions(
    view,
    ids: list[str],
    field: str,
    classes: list[str],
    *,
    probs: np.ndarray | None = None,
    logits: np.ndarray | None = None,
    source: str,
    parameters: dict | None = None,
) -> dict:
    """Store one classification prediction per sample id in ``field``.

    Give ``logits`` (a model's raw scores) or ``probs`` (rows summing to 1). Rows of NaN
    mean "no prediction" and store None. Returns the field's provenance record.
    """
    import fiftyone as fo

    dataset = view._dataset
    _guard_not_reader_field(dataset, field)
    if (probs is None) == (logits is None):
        raise PredictionError("give exactly one of probs and logits")
    k = len(classes)
    if logits is None:
        p = np.asarray(probs, dtype=float)
        have = np.isfinite(p).all(axis=1)
        check_probabilities(p[have], [str(i) for i in np.asarray(ids)[have]])
        lg = np.full(p.shape, np.nan)
        lg[have] = np.log(np.clip(p[have], PROB_FLOOR, None))
    else:
        lg = np.asarray(logits, dtype=float)
        have = np.isfinite(lg).all(axis=1)
    if lg.shape != (len(ids), k):
        raise PredictionError(f"expected {len(ids)} x {k} scores (one per class), got {lg.shape}")
    pr = np.full(lg.shape, np.nan)
    pr[have] = softmax(lg[have])
    top = np.argmax(np.nan_to_num(pr, nan=-1.0), axis=1)
    values = [
        fo.Classification(
            label=classes[top[i]],
            confidence=float(pr[i, top[i]]),
            logits=[float(v) for v in lg[i]],
        )
        if have[i]
        else None
        for i in range(len(ids))
    ]
    record = {
        "role": "prediction",
        "kind": "classification",
        "classes": list(classes),
        "source": source,
        "parameters": parameters or {},
        "n_predicted": int(have.sum()),
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "plugin_version": __version__,
    }
    if not dataset.has_field(field):
        # declared first: with every row empty FiftyOne could not infer the type
        dataset.add_sample_field(
            field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification
        )
    view.set_values(field, dict(zip(ids, values, strict=True)), key_field="id")
    mark_prediction_field(dataset, field, record)
    return record


def mark_prediction_field(dataset, field: str, record: dict) -> None:
    """Record on the field itself that it holds predictions, and how they were made."""
    from multireader.core.runs import jsonable

    f = dataset.get_field(field)
    info = dict(f.info or {})
    info[INFO_KEY] = jsonable(record)
    f.info = info
    f.save()


def read_probabilities(view, field: str) -> tuple[list[str], list[str], np.ndarray]:
    """``(ids, classes, probs)`` of a prediction field on ``view``; NaN rows where none.

    The probabilities are ``softmax(logits)`` in the field's class order. A field made
    elsewhere (no ``multireader`` info) is accepted when its classifications carry
    logits; its classes are then those of the dataset's label schema.
    """
    from multireader.core.schema import get_label_schema

    dataset = view._dataset
    f = dataset.get_field(field)
    if f is None:
        raise PredictionError(f"no field {field!r} on dataset {dataset.name!r}")
    meta = (getattr(f, "info", None) or {}).get(INFO_KEY) or {}
    classes = meta.get("classes")
    if classes is None:
        schema = get_label_schema(dataset) or {}
        classes = schema.get("classes")
    if not classes:
        raise PredictionError(
            f"field {field!r} does not say which class each logit belongs to and the "
            "dataset declares no label schema; run declare_label_schema first"
        )
    ids, logits = view.values(["id", f"{field}.logits"])
    k = len(classes)
    out = np.full((len(ids), k), np.nan)
    for i, lg in enumerate(logits):
        if lg is None:
            continue
        if len(lg) != k:
            raise PredictionError(
                f"sample {ids[i]}: field {field!r} has {len(lg)} logits for {k} classes"
            )
        out[i] = lg
    have = np.isfinite(out).all(axis=1)
    out[have] = softmax(out[have])
    return list(ids), list(classes), out
