"""A real model for offline users: out-of-fold class probabilities from a stored embedding.

To find label errors a model must not have seen the label it judges. ``fit_label_model``
trains a scikit-learn classifier on a stored embedding (the weight-free radiomics
embedding works with nothing downloaded) against a label field (consensus by default),
with K-fold cross-validation, and keeps for every sample the probabilities predicted by
the fold model that did NOT train on it. Folds are grouped by patient by default: slices
of one patient look alike, and a model that trained on the neighbouring slice would
"remember" the label instead of predicting it. This is the standard set-up of confident
learning (Northcutt, Jiang & Chuang 2021, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 70) and of CROWDLAB.

Samples without a label in the training field get probabilities from a model fitted on
every labelled sample (they were never anybody's training example).
"""

from __future__ import annotations

import numpy as np

from multireader.core import fields as F
from multireader.core.predictions import PredictionError, write_predictions
from multireader.core.schema import get_label_schema
from multireader.errors import MultireaderError
from multireader.progress import ProgressFn, report

#: classifiers offered, by name
CLASSIFIERS = ("random_forest", "logistic")
#: the consensus fields tried, in order, when no label field is given
PREFERRED_CONSENSUS = ("consensus_dawid_skene", "consensus_majority")


class LabelModelError(MultireaderError):
    """The model cannot be fitted as asked; the message says why and what to change."""


def consensus_label_fields(dataset) -> list[str]:
    """Classification consensus fields of ``dataset``, preferred ones first."""
    import fiftyone as fo

    found = []
    for name, f in dataset.get_field_schema().items():
        meta = (getattr(f, "info", None) or {}).get(F.INFO_KEY) or {}
        if meta.get("role") != "consensus":
            continue
        if getattr(f, "document_type", None) is fo.Classification:
            found.append(name)
    rank = {n: i for i, n in enumerate(PREFERRED_CONSENSUS)}
    return sorted(found, key=lambda n: (rank.get(n, len(rank)), n))


def default_label_field(dataset) -> str:
    fields = consensus_label_fields(dataset)
    if not fields:
        raise LabelModelError(
            f"dataset {dataset.name!r} has no consensus classification field to train on; "
            "run compute_consensus first, or choose a label field"
        )
    return fields[0]


def _classifier(name: str, seed: int):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logistic":
        # L2-regularised multinomial logistic regression on standardised features: few
        # parameters, calibrated enough probabilities, fits in a second on thousands
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=300, min_samples_leaf=2, random_state=seed)
    raise LabelModelError(f"unknown classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")


def _check_counts(y, groups, classes, n_folds, label_field):
    counts = np.bincount(y, minlength=len(classes))
    short = [(classes[k], int(c)) for k, c in enumerate(counts) if c < n_folds]
    if short:
        listed = ", ".join(f"{c!r} has {n}" for c, n in short)
        raise LabelModelError(
            f"too few examples for {n_folds}-fold cross-validation in {label_field!r}: "
            f"{listed} (each class needs at least {n_folds}); lower n_folds, leave the "
            "class out of the schema, or label more samples"
        )
    if groups is not None:
        few = []
        for k, c in enumerate(classes):
            if counts[k] and len(np.unique(groups[y == k])) < 2:
                few.append(c)
        if few:
            raise LabelModelError(
                f"class(es) {', '.join(map(repr, few))} occur in only one patient, so "
                "every patient-grouped fold that tests them trains without them; set "
                "group_by=None to split by sample instead (slices of one patient then "
                "leak between folds)"
            )


def _proba(model, x, k):
    """``predict_proba`` spread onto all k classes (a fold may lack a class)."""
    p = np.zeros((len(x), k))
    p[:, model.classes_] = model.predict_proba(x)
    return p


def fit_label_model(
    samples,
    embedding_field: str,
    label_field: str | None = None,
    field: str = "predictions_label_model",
    *,
    classifier: str = "random_forest",
    n_folds: int = 5,
    n_repeats: int = 3,
    group_by: str | None = F.PATIENT_KEY,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> dict:
    """Fit ``classifier`` on ``embedding_field`` against ``label_field``, out of fold.

    ``n_repeats`` repeats of ``n_folds``-fold cross-validation, each with reshuffled
    folds (grouped by ``group_by`` when the field exists); a sample's probabilities are
    the mean over the repeats of the fold model that did not train on it.

    Writes ``field`` (see :mod:`multireader.core.predictions`) and returns a summary: the
    out-of-fold accuracy, log loss and Cohen's kappa against the training labels, the
    counts, and which samples were scored out of fold.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    from multireader.embed.maps import MapError, embedded_view
    from multireader.stats.agreement import cohen_kappa

    view = samples.view()
    dataset = view._dataset
    label_field = label_field or default_label_field(dataset)
    if not dataset.has_field(label_field):
        raise LabelModelError(f"no label field {label_field!r} on dataset {dataset.name!r}")
    schema = get_label_schema(dataset) or {}
    classes = list(schema.get("classes") or [])
    if not classes:
        raise LabelModelError("declare the label schema (classes) first: declare_label_schema")
    if classifier not in CLASSIFIERS:
        _classifier(classifier, seed)
    if int(n_folds) < 2:
        raise LabelModelError(f"n_folds must be at least 2, got {n_folds}")
    n_folds = int(n_folds)
    try:
        present, n_missing, dim = embedded_view(view, embedding_field, n_folds, "fit_label_model")
    except MapError as e:
        raise LabelModelError(str(e)) from e
    report(progress, 0.05, "reading embeddings and labels")
    paths = ["id", embedding_field, f"{label_field}.label"]
    use_groups = bool(group_by) and dataset.has_field(group_by)
    if use_groups:
        paths.append(group_by)
    cols = dict(zip(paths, present.values(paths), strict=True))
    ids = cols["id"]
    x = np.asarray(cols[embedding_field], dtype=float)
    if not np.isfinite(x).all():
        bad = [ids[i] for i in np.flatnonzero(~np.isfinite(x).all(axis=1))[:5]]
        raise LabelModelError(f"embedding {embedding_field!r} has NaN/inf in samples {bad}")
    index = {c: k for k, c in enumerate(classes)}
    raw = cols[f"{label_field}.label"]
    unknown = sorted({v for v in raw if v is not None and v not in index})
    if unknown:
        raise LabelModelError(
            f"{label_field!r} holds labels outside the schema: {', '.join(map(repr, unknown))} "
            f"(schema classes: {', '.join(classes)})"
        )
    y = np.array([index[v] if v is not None else -1 for v in raw], dtype=np.int64)
    labelled = y >= 0
    groups = None
    if use_groups:
        # the group values themselves (a missing one is its own group ""), so anyone
        # can rebuild the folds with scikit-learn from the stored field
        groups = np.array(["" if v is None else str(v) for v in cols[group_by]])
    yl, xl = y[labelled], x[labelled]
    gl = groups[labelled] if groups is not None else None
    _check_counts(yl, gl, classes, n_folds, label_field)
    n_groups = len(np.unique(gl)) if gl is not None else None
    if gl is not None and n_groups < n_folds:
        raise LabelModelError(
            f"{n_groups} patients cannot be split into {n_folds} patient-grouped folds; "
            "lower n_folds or set group_by=None"
        )
    if int(n_repeats) < 1:
        raise LabelModelError(f"n_repeats must be at least 1, got {n_repeats}")
    n_repeats = int(n_repeats)
    k = len(classes)
    oof = np.zeros((len(yl), k))
    import warnings

    # repeated K-fold: each repeat reshuffles the folds; every sample's probabilities are
    # the mean of its n_repeats out-of-fold predictions, each from a model that never
    # saw its label, which steadies the scores a single split leaves to chance
    n_fits, done = n_folds * n_repeats, 0
    for r in range(n_repeats):
        if gl is not None:
            splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed + r)
            splits = list(splitter.split(xl, yl, gl))
        else:
            splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed + r)
            splits = list(splitter.split(xl, yl))
        for train, test in splits:
            report(progress, 0.1 + 0.7 * done / n_fits, f"fit {done + 1} of {n_fits}")
            model = _classifier(classifier, seed + r)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                model.fit(xl[train], yl[train])
            oof[test] += _proba(model, xl[test], k)
            done += 1
    oof /= n_repeats
    probs = np.full((len(ids), k), np.nan)
    probs[np.flatnonzero(labelled)] = oof
    if (~labelled).any():
        report(progress, 0.82, "scoring unlabelled samples")
        model = _classifier(classifier, seed).fit(xl, yl)
        probs[~labelled] = _proba(model, x[~labelled], k)
    # a class a fold never saw gets probability 0: keep rows distributions
    probs = probs / probs.sum(axis=1, keepdims=True)

    pred = np.argmax(oof, axis=1)
    clipped = np.clip(oof[np.arange(len(yl)), yl], 1e-12, None)
    summary = {
        "label_field": label_field,
        "embedding_field": embedding_field,
        "embedding_dim": dim,
        "classifier": classifier,
        "n_folds": n_folds,
        "n_repeats": n_repeats,
        "group_by": group_by if use_groups else None,
        "n_groups": n_groups,
        "seed": seed,
        "classes": classes,
        "n_samples": len(ids),
        "n_without_embedding": n_missing,
        "n_labelled": int(labelled.sum()),
        "n_unlabelled": int((~labelled).sum()),
        "class_counts": {
            c: int(n) for c, n in zip(classes, np.bincount(yl, minlength=k), strict=True)
        },
        "oof_accuracy": float(np.mean(pred == yl)),
        "oof_log_loss": float(-np.mean(np.log(clipped))),
        "oof_kappa": cohen_kappa(yl, pred, k),
        "oof_kappa_quadratic": cohen_kappa(yl, pred, k, weights="quadratic")
        if schema.get("ordered")
        else None,
    }
    report(progress, 0.9, f"writing {field}")
    # samples of the view without an embedding get None, never a stale earlier prediction
    all_ids = view.values("id")
    row = {sid: i for i, sid in enumerate(ids)}
    full = np.full((len(all_ids), k), np.nan)
    for i, sid in enumerate(all_ids):
        if sid in row:
            full[i] = probs[row[sid]]
    try:
        write_predictions(
            view,
            all_ids,
            field,
            classes,
            probs=full,
            source="fit_label_model",
            parameters={k_: v for k_, v in summary.items() if k_ != "class_counts"},
        )
    except PredictionError as e:
        raise LabelModelError(str(e)) from e
    report(progress, 1.0, f"wrote {field}: out-of-fold accuracy {summary['oof_accuracy']:.2f}")
    summary["field"] = field
    return summary
