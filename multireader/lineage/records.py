"""Label history and frozen training sets: who changed which label when, and exactly
which samples and labels trained which model.

Label history. A reader's revision (:func:`revise_label`) or an adjudication
(:func:`adjudicate`) is a new version of a label, kept in the collection
``multireader_label_history`` of FiftyOne's database; versions are only ever inserted
(unique ``(dataset, sample, field, version)``), never updated. Before the first
revision of a label, its label as imported is kept as version 0 ("original", valid
from its read time, or from import when none is recorded). The sample field holds
the newest version. :func:`history` lists a label's versions; :func:`labels_as_of`
reconstructs a whole field at a past time. Every change appends an audit entry.

Frozen training sets. :func:`freeze_training_set` records, for a view, the exact
sample ids, a content hash of every label in the chosen fields, the consensus field,
method and run, the view's definition, and the model name and version. Freezes are
immutable: there is no update; :func:`delete_training_set` needs a reason and leaves
the whole header in the audit log. :func:`verify_training_set` reports every sample
removed, relabelled, or added (now matching the frozen view definition) since, and
whether the freeze record itself still matches its own hash.
:func:`diff_training_sets` compares two freezes.

Label content hash (:func:`label_hash`): SHA-256 of the label as canonical JSON
(sorted keys, compact), without ``_id`` and the database's internal keys; a mask's
``mask_path`` is replaced by the SHA-256 of the mask file's bytes, so editing a mask
file in place is a relabel; detections are hashed each without its id, in sorted order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os

from multireader.errors import MultireaderError
from multireader.lineage import audit

HISTORY = "multireader_label_history"
FREEZES = "multireader_training_sets"
ITEMS = "multireader_training_set_items"
_BATCH = 5000
_INDEXED = False


class LineageError(MultireaderError):
    """A revision, freeze or verification that cannot be done; the message says why."""


def _db():
    global _INDEXED
    import fiftyone.core.odm as foo

    db = foo.get_db_conn()
    if not _INDEXED:
        db[HISTORY].create_index(
            [("dataset_id", 1), ("sample_id", 1), ("field", 1), ("version", 1)], unique=True
        )
        db[HISTORY].create_index([("dataset_id", 1), ("field", 1)])
        db[FREEZES].create_index([("dataset_id", 1), ("name", 1)], unique=True)
        db[ITEMS].create_index([("freeze_id", 1)])
        _INDEXED = True
    return db


# --- hashing ------------------------------------------------------------------------


def _file_hash(path) -> str | None:
    if not path or not os.path.exists(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _content(d):
    """A label dict without ids and database internals; masks by file content."""
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            if k in ("_id", "id"):
                continue
            if k == "mask_path":
                out["mask_sha256"] = _file_hash(v)
                continue
            if k == "detections" and isinstance(v, list):
                items = [_content(x) for x in v]
                out[k] = sorted(items, key=lambda x: json.dumps(x, sort_keys=True, default=str))
                continue
            out[k] = _content(v)
        return out
    if isinstance(d, list):
        return [_content(x) for x in d]
    if isinstance(d, (dt.datetime, dt.date)):
        return d.isoformat()
    if hasattr(d, "binary"):  # bson ObjectId and friends
        return str(d)
    return d


def label_hash(label) -> str | None:
    """SHA-256 of a label's content (see the module docstring); None for no label."""
    if label is None:
        return None
    d = label.to_dict() if hasattr(label, "to_dict") else dict(label)
    body = json.dumps(_content(d), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


# --- label history ------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _iso(t) -> str | None:
    if t is None:
        return None
    if isinstance(t, str):
        t = dt.datetime.fromisoformat(t)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _sample(dataset, sample_id: str):
    try:
        return dataset[sample_id]
    except Exception as e:
        raise LineageError(f"no sample {sample_id!r} in dataset {dataset.name!r}") from e


def _new_label(dataset, field: str, new_label, reader: str | None):
    import fiftyone as fo

    from multireader.core import schema as S

    if isinstance(new_label, fo.Label):
        return new_label.copy()
    if isinstance(new_label, str):
        classes = (S.get_label_schema(dataset) or {}).get("classes") or []
        if classes and new_label not in classes:
            raise LineageError(
                f"label {new_label!r} is not in the label schema; choose one of {classes}"
            )
        return fo.Classification(label=new_label)
    raise LineageError(f"a new label must be a class name or a FiftyOne label, not {new_label!r}")


def _versions(db, ds_id: str, sample_id: str, field: str) -> list[dict]:
    return list(
        db[HISTORY]
        .find({"dataset_id": ds_id, "sample_id": sample_id, "field": field}, {"_id": 0})
        .sort("version", 1)
    )


def _write_version(dataset, sample, field, label, *, kind, reader, reason, when):
    import pymongo.errors

    db = _db()
    ds_id, _ = audit.dataset_key(dataset)
    versions = _versions(db, ds_id, sample.id, field)
    if not versions:
        current = sample[field] if sample.has_field(field) else None
        if current is not None:
            entry = audit.append(
                dataset,
                "label_original_kept",
                params={"sample_id": sample.id, "field": field},
                counts={"version": 0},
                detail={"hash": label_hash(current)},
            )
            versions = [
                {
                    "dataset_id": ds_id,
                    "sample_id": sample.id,
                    "field": field,
                    "version": 0,
                    "label": current.to_dict(),
                    "content_hash": label_hash(current),
                    "reader": getattr(current, "reader", None),
                    "time": _iso(getattr(current, "read_at", None)),
                    "reason": "as imported",
                    "kind": "original",
                    "user": audit.actor(),
                    "audit_seq": entry["seq"],
                }
            ]
            db[HISTORY].insert_one(dict(versions[0]))
    version = (versions[-1]["version"] + 1) if versions else 0
    new = label
    if reader is not None:
        new["reader"] = reader
    new["read_at"] = dt.datetime.fromisoformat(when).replace(tzinfo=None)
    entry = audit.append(
        dataset,
        "revise_label" if kind == "revision" else "adjudicate_label",
        params={"sample_id": sample.id, "field": field, "reason": reason, "reader": reader},
        wrote={"fields": [field]},
        counts={"version": version},
        detail={
            "old_hash": versions[-1]["content_hash"] if versions else None,
            "new_hash": label_hash(new),
        },
    )
    doc = {
        "dataset_id": ds_id,
        "sample_id": sample.id,
        "field": field,
        "version": version,
        "label": new.to_dict(),
        "content_hash": label_hash(new),
        "reader": reader,
        "time": when,
        "reason": reason,
        "kind": kind,
        "user": audit.actor(),
        "audit_seq": entry["seq"],
    }
    try:
        db[HISTORY].insert_one(dict(doc))
    except pymongo.errors.DuplicateKeyError as e:
        raise LineageError(
            f"{field} of sample {sample.id} was changed by someone else at the same time; "
            "reload and try again"
        ) from e
    sample[field] = new
    sample.save()
    return doc


def revise_label(dataset, sample_id: str, field: str, new_label, *, reason: str,
                 reader: str | None = None, time=None) -> dict:  # fmt: skip
    """A reader's revision of their label: a new version; every earlier one is kept.

    ``new_label``: a class name (checked against the label schema) or a FiftyOne label.
    Returns the new version's record.
    """
    from multireader.core.fields import reader_fields

    dataset = getattr(dataset, "_dataset", dataset)
    if not reason or not str(reason).strip():
        raise LineageError("a revision needs a reason (it is kept with the new version)")
    found = reader_fields(dataset)
    if field not in found:
        raise LineageError(
            f"{field!r} is not a reader field of {dataset.name!r}; reader fields: "
            f"{sorted(found)} (adjudications go to their own field: adjudicate())"
        )
    sample = _sample(dataset, sample_id)
    label = _new_label(dataset, field, new_label, reader)
    return _write_version(
        dataset, sample, field, label, kind="revision",
        reader=reader or found[field]["reader"], reason=str(reason),
        when=_iso(time) or _now(),
    )  # fmt: skip


def adjudicate(dataset, sample_id: str, label, *, reason: str, adjudicator: str,
               field: str = "adjudication", time=None) -> dict:  # fmt: skip
    """An adjudicator's decision, in its own field (never a reader's), versioned."""
    from multireader.core.fields import reader_fields

    dataset = getattr(dataset, "_dataset", dataset)
    if field in reader_fields(dataset):
        raise LineageError(f"{field!r} is a reader's field: adjudications go to their own field")
    if not reason or not str(reason).strip():
        raise LineageError("an adjudication needs a reason")
    if not adjudicator:
        raise LineageError("an adjudication needs the adjudicator's name")
    sample = _sample(dataset, sample_id)
    new = _new_label(dataset, field, label, adjudicator)
    doc = _write_version(
        dataset, sample, field, new, kind="adjudication", reader=adjudicator,
        reason=str(reason), when=_iso(time) or _now(),
    )  # fmt: skip
    f = dataset.get_field(field)
    info = dict(f.info or {})
    info["multireader"] = {"role": "adjudication", "versions": HISTORY}
    f.info = info
    f.save()
    return doc


def history(dataset, sample_id: str, field: str) -> list[dict]:
    """Every version of one label, oldest first."""
    ds_id, _ = audit.dataset_key(dataset)
    return _versions(_db(), ds_id, sample_id, field)


def labels_as_of(samples, field: str, when) -> dict:
    """``{sample_id: label dict or None}`` of ``field`` as it stood at ``when`` (UTC).

    A sample with no recorded versions has had its current label throughout. For one
    with versions, the newest version with ``time <= when``; an original whose read
    time is unknown counts as there since import; before the first version's time
    there was no label.
    """
    when = _iso(when)
    ds_id, _ = audit.dataset_key(samples)
    ids, labels = samples.values(["id", field])
    out = {i: (v.to_dict() if v is not None else None) for i, v in zip(ids, labels, strict=True)}
    chosen: dict = {}
    for doc in (
        _db()[HISTORY].find({"dataset_id": ds_id, "field": field}, {"_id": 0}).sort("version", 1)
    ):
        if doc["sample_id"] not in out:
            continue
        t = doc.get("time")
        if t is None or t <= when:
            chosen[doc["sample_id"]] = doc["label"]
        elif doc["sample_id"] not in chosen:
            chosen[doc["sample_id"]] = None
    out.update(chosen)
    return out


# --- frozen training sets -----------------------------------------------------------


def _freeze_hash(header: dict, rows: list[dict]) -> str:
    body = {k: header[k] for k in sorted(header) if k not in ("_id", "freeze_hash", "audit_seq")}
    h = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode())
    for r in sorted(rows, key=lambda r: r["sample_id"]):
        h.update(json.dumps([r["sample_id"], r["hashes"]], sort_keys=True).encode())
    return h.hexdigest()


def _hash_fields(view, fields: list[str], progress=None) -> tuple[list[str], list[dict]]:
    ids = view.values("id")
    hashes = [dict() for _ in ids]
    for k, f in enumerate(fields):
        for row, label in zip(hashes, view.values(f), strict=True):
            row[f] = label_hash(label)
        if progress:
            progress((k + 1) / (len(fields) + 1), f"hashed {f}")
    return ids, hashes


def default_consensus_field(dataset) -> str | None:
    from multireader.embed.label_model import consensus_label_fields

    found = consensus_label_fields(dataset)
    return found[0] if found else None


def freeze_training_set(view, name: str, *, model_name: str, model_version: str,
                        label_fields=None, consensus_field: str | None = None,
                        notes: str | None = None, progress=None) -> dict:  # fmt: skip
    """Freeze ``view`` as training set ``name`` for a model; returns the header."""
    from multireader.core import runs
    from multireader.core.fields import reader_fields

    dataset = view._dataset
    if not name or not str(name).strip():
        raise LineageError("a training set needs a name")
    if not model_name or not str(model_version or "").strip():
        raise LineageError("a training set needs the model's name and version")
    ds_id, _ = audit.dataset_key(dataset)
    db = _db()
    if db[FREEZES].find_one({"dataset_id": ds_id, "name": name}):
        raise LineageError(
            f"a training set {name!r} is already frozen on {dataset.name!r}; freezes are "
            "immutable: choose a new name"
        )
    if view.count() == 0:
        raise LineageError("the view is empty: there is nothing to freeze")
    consensus_field = consensus_field or default_consensus_field(dataset)
    if label_fields is None:
        label_fields = sorted(reader_fields(dataset, ["classification"]))
        if consensus_field:
            label_fields.append(consensus_field)
    missing = [f for f in label_fields if not dataset.has_field(f)]
    if missing:
        raise LineageError(f"no field {missing} on {dataset.name!r}")
    consensus = None
    if consensus_field:
        for key in runs.list_runs(dataset, "consensus"):
            cfg = runs.load(dataset, key)["config"]
            if cfg.get("output_field") == consensus_field:
                consensus = {
                    "field": consensus_field,
                    "method": cfg.get("algorithm") or (cfg.get("params") or {}).get("method"),
                    "run_key": key,
                    "run_created_at": cfg.get("created_at"),
                }
        consensus = consensus or {"field": consensus_field, "method": None, "run_key": None}
    ids, hashes = _hash_fields(view, list(label_fields), progress)
    header = {
        "dataset_id": ds_id,
        "dataset_name": dataset.name,
        "name": str(name),
        "model_name": str(model_name),
        "model_version": str(model_version),
        "notes": notes,
        "created": _now(),
        "user": audit.actor(),
        "label_fields": list(label_fields),
        "consensus": consensus,
        "view": json.dumps(view._serialize()),
        "n_samples": len(ids),
    }
    rows = [{"sample_id": i, "hashes": h} for i, h in zip(ids, hashes, strict=True)]
    header["freeze_hash"] = _freeze_hash(header, rows)
    entry = audit.append(
        dataset,
        "freeze_training_set",
        params={"name": name, "model_name": model_name, "model_version": model_version},
        view=view,
        counts={"n_samples": len(ids)},
        detail={"freeze_hash": header["freeze_hash"], "label_fields": list(label_fields)},
    )
    header["audit_seq"] = entry["seq"]
    res = db[FREEZES].insert_one(dict(header))
    fid = res.inserted_id
    for start in range(0, len(rows), _BATCH):
        db[ITEMS].insert_many([{"freeze_id": fid, **r} for r in rows[start : start + _BATCH]])
    if progress:
        progress(1.0, f"froze {len(ids)} samples")
    header.pop("_id", None)
    return header


def list_training_sets(dataset) -> list[dict]:
    ds_id, _ = audit.dataset_key(dataset)
    return list(_db()[FREEZES].find({"dataset_id": ds_id}, {"_id": 0}).sort("created", 1))


def _load(dataset, name):
    ds_id, _ = audit.dataset_key(dataset)
    db = _db()
    header = db[FREEZES].find_one({"dataset_id": ds_id, "name": name})
    if header is None:
        names = [h["name"] for h in list_training_sets(dataset)]
        raise LineageError(f"no frozen training set {name!r}; frozen: {names}")
    rows = list(db[ITEMS].find({"freeze_id": header["_id"]}, {"_id": 0, "freeze_id": 0}))
    return header, rows


def load_training_set(dataset, name: str, ids: bool = False) -> dict:
    header, rows = _load(dataset, name)
    header.pop("_id", None)
    if ids:
        header["sample_ids"] = sorted(r["sample_id"] for r in rows)
    return header


def verify_training_set(dataset, name: str, progress=None) -> dict:
    """What changed since the freeze: removed, relabelled and added samples."""
    import fiftyone.server.view as fosv

    dataset = getattr(dataset, "_dataset", dataset)
    header, rows = _load(dataset, name)
    stored = header.get("freeze_hash")
    freeze_ok = _freeze_hash({k: v for k, v in header.items() if k != "_id"}, rows) == stored
    frozen = {r["sample_id"]: r["hashes"] for r in rows}
    fields = [f for f in header["label_fields"] if dataset.has_field(f)]
    # the whole dataset read in bulk, then restricted in Python: a select() stage of
    # 100,000 ids costs more than reading the few extra samples
    ids = dataset.values("id")
    keep = [k for k, i in enumerate(ids) if i in frozen]
    now = {ids[k]: {} for k in keep}
    for n_done, f in enumerate(fields):
        values = dataset.values(f)
        for k in keep:
            now[ids[k]][f] = label_hash(values[k])
        if progress:
            progress((n_done + 1) / (len(fields) + 1), f"hashed {f}")
    removed = sorted(set(frozen) - set(now))
    relabelled = []
    for sid, h in now.items():
        for f in header["label_fields"]:
            if frozen[sid].get(f) != h.get(f):
                relabelled.append(
                    {"sample_id": sid, "field": f, "frozen_hash": frozen[sid].get(f),
                     "current_hash": h.get(f)}
                )  # fmt: skip
    view = fosv.get_view(dataset.name, stages=json.loads(header["view"]))
    added = sorted(set(view.values("id")) - set(frozen))
    ok = freeze_ok and not removed and not relabelled and not added
    result = {
        "name": name,
        "ok": ok,
        "freeze_hash_ok": freeze_ok,
        "removed": removed,
        "relabelled": relabelled,
        "added": added,
        "counts": {
            "frozen": len(frozen),
            "removed": len(removed),
            "relabelled_samples": len({r["sample_id"] for r in relabelled}),
            "relabelled_labels": len(relabelled),
            "added": len(added),
        },
    }
    return result


def diff_training_sets(dataset, name_a: str, name_b: str) -> dict:
    """What ``name_b`` has that ``name_a`` did not: samples added, removed, relabelled."""
    ha, ra = _load(dataset, name_a)
    hb, rb = _load(dataset, name_b)
    a = {r["sample_id"]: r["hashes"] for r in ra}
    b = {r["sample_id"]: r["hashes"] for r in rb}
    relabelled = [
        {"sample_id": s, "field": f}
        for s in sorted(set(a) & set(b))
        for f in sorted(set(a[s]) | set(b[s]))
        if a[s].get(f) != b[s].get(f)
    ]
    header = {
        k: {"a": ha.get(k), "b": hb.get(k)}
        for k in ("model_name", "model_version", "label_fields", "consensus", "view")
        if ha.get(k) != hb.get(k)
    }
    return {
        "a": name_a,
        "b": name_b,
        "added": sorted(set(b) - set(a)),
        "removed": sorted(set(a) - set(b)),
        "relabelled": relabelled,
        "header_changes": header,
    }


def delete_training_set(dataset, name: str, *, reason: str) -> dict:
    """Delete a freeze (a reason is required); its full header stays in the audit log."""
    if not reason or not str(reason).strip():
        raise LineageError("deleting a frozen training set needs a reason")
    header, rows = _load(dataset, name)
    fid = header.pop("_id")
    entry = audit.append(
        dataset,
        "delete_training_set",
        params={"name": name, "reason": reason},
        counts={"n_samples": len(rows)},
        detail={"deleted_header": header},
    )
    db = _db()
    db[ITEMS].delete_many({"freeze_id": fid})
    db[FREEZES].delete_one({"_id": fid})
    return entry


def delete_for_dataset(dataset) -> None:
    """Remove a dataset's history and freezes (for deleted datasets and tests)."""
    ds_id, _ = audit.dataset_key(dataset)
    db = _db()
    db[HISTORY].delete_many({"dataset_id": ds_id})
    for h in db[FREEZES].find({"dataset_id": ds_id}, {"_id": 1}):
        db[ITEMS].delete_many({"freeze_id": h["_id"]})
    db[FREEZES].delete_many({"dataset_id": ds_id})
