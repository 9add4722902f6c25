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

Label content hashes (:func:`label_hash`), versioned; every freeze header records its
``hash_scheme`` and is verified with that scheme:

- scheme 2 (current): SHA-256 of the canonical form of the label's stored document,
  defined in :mod:`multireader.lineage.canonical` and ``docs/DESIGN.md``, computed in
  bulk from one projected database read, and reproducible from a FiftyOne export;
- scheme 1 (freezes without ``hash_scheme``): SHA-256 of the label's ``to_dict()`` as
  sorted compact JSON without ``_id``/``id``; a ``mask_path`` replaced by the SHA-256
  of the file (``mask_sha256``), detections in sorted order, dates as ``isoformat()``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import struct

from multireader.errors import MultireaderError
from multireader.lineage import audit, canonical

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

#: the label hash scheme new freezes use; each freeze header records its own
HASH_SCHEME = canonical.SCHEME
HASH_SCHEMES = (1, 2)


def _file_hash(path) -> str | None:
    if not path or not os.path.exists(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _content(d):
    """Scheme 1: a label dict without ids and database internals; masks by file content."""
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


def _label_hash_v1(label) -> str | None:
    if label is None:
        return None
    d = label.to_dict() if hasattr(label, "to_dict") else dict(label)
    body = json.dumps(_content(d), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def label_hash(label, scheme: int = HASH_SCHEME) -> str | None:
    """Content hash of a label (a FiftyOne label, or its stored document); None for none.

    Scheme 2 (the default): SHA-256 of the canonical form of the stored document
    (:mod:`multireader.lineage.canonical`). Scheme 1 (freezes made before it): SHA-256
    of ``to_dict()`` as sorted compact JSON without ids (see the module docstring).
    """
    if scheme == 1:
        return _label_hash_v1(label)
    if scheme != 2:
        raise LineageError(f"unknown label hash scheme {scheme!r}; known: {list(HASH_SCHEMES)}")
    if label is None:
        return None
    return canonical.content_hash(label.to_mongo() if hasattr(label, "to_mongo") else label)


def _read_raw(samples, fields: list[str], batch_size: int = 10_000):
    """Yield ``(sample ids, {field: each label's raw BSON bytes, a decoded document or
    None})`` a batch at a time, from one projected aggregation over the view.

    The labels stay raw BSON (nothing is decoded into FiftyOne or Python objects);
    label ids are projected away in the database, since no hash uses them, so equal
    bytes are equal content.
    """
    from bson.raw_bson import RawBSONDocument

    pipeline = getattr(samples, "_pipeline", None)
    dataset = getattr(samples, "_dataset", None)
    coll = getattr(dataset, "_sample_collection", None)
    if pipeline is None or coll is None:  # pragma: no cover - FiftyOne dropped internals
        ids = samples.values("id")
        cols = {f: [None if v is None else v.to_mongo() for v in samples.values(f)]
                for f in fields}  # fmt: skip
        yield ids, cols
        return
    project = {"_id": 1, **dict.fromkeys(fields, 1)}
    drop = {f"{f}._id": 0 for f in fields}
    opts = coll.codec_options.with_options(document_class=RawBSONDocument)
    cursor = coll.with_options(codec_options=opts).aggregate(
        pipeline(post_pipeline=[{"$project": project}, {"$project": drop}]),
        allowDiskUse=True,
        batchSize=batch_size,
    )
    top = all("." not in f for f in fields)
    ids: list[str] = []
    cols: dict[str, list] = {f: [] for f in fields}
    adds = [(f, cols[f].append) for f in fields]
    for doc in cursor:
        parts = _split_raw(doc.raw) if top else None
        if parts is None:  # a nested path or an unusual value: decode this document
            d = _bson_decode(doc.raw)
            ids.append(str(d["_id"]))
            for f, add in adds:
                v = d
                for key in f.split("."):
                    v = v.get(key) if isinstance(v, dict) else None
                add(v)
        else:
            ids.append(parts.pop("_id"))
            get = parts.get
            for f, add in adds:
                add(get(f))
        if len(ids) == batch_size:
            yield ids, cols
            ids, cols = [], {f: [] for f in fields}
            adds = [(f, cols[f].append) for f in fields]
    if ids:
        yield ids, cols


def _bson_decode(raw: bytes) -> dict:
    import bson

    return bson.decode(raw)


_I32 = struct.Struct("<i").unpack_from


def _split_raw(raw: bytes) -> dict | None:
    """The top level of a projected sample document: ``_id`` as hex, each embedded
    document as its raw bytes, null as None; None for anything else (then the caller
    decodes). Walking the six elements here is much cheaper than the driver's inflation
    of a raw document, which runs in Python."""
    out: dict = {}
    pos, end = 4, len(raw) - 1
    index = raw.index
    while pos < end:
        kind = raw[pos]
        z = index(0, pos + 1)
        key = raw[pos + 1 : z].decode("utf-8")
        pos = z + 1
        if kind == 3:  # embedded document
            n = _I32(raw, pos)[0]
            out[key] = raw[pos : pos + n]
            pos += n
        elif kind == 7:  # ObjectId
            out[key] = raw[pos : pos + 12].hex()
            pos += 12
        elif kind == 10:  # null
            out[key] = None
        else:
            return None
    return out


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
                    "hash_scheme": HASH_SCHEME,
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
        "hash_scheme": HASH_SCHEME,
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


def _header_digest(header: dict):
    body = {k: header[k] for k in sorted(header) if k not in ("_id", "freeze_hash", "audit_seq")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode())


def _freeze_hash(header: dict, rows: list[dict]) -> str:
    """The record's own hash: its header, then every ``[sample_id, hashes]`` row in
    sample-id order, each as ``json.dumps(row, sort_keys=True)``."""
    h = _header_digest(header)
    for r in sorted(rows, key=lambda r: r["sample_id"]):
        h.update(json.dumps([r["sample_id"], r["hashes"]], sort_keys=True).encode())
    return h.hexdigest()


def _freeze_hash_columns(header: dict, ids: list[str], columns: dict[str, list]) -> str:
    """:func:`_freeze_hash` of the rows these columns hold, without building them: each
    row's JSON is formatted directly (ids are hex and hashes hex or null, so nothing
    needs escaping; field names are escaped once)."""
    h = _header_digest(header)
    fields = sorted(columns)
    keys = [json.dumps(f) for f in fields]
    cols = [columns[f] for f in fields]
    update = h.update
    for k in sorted(range(len(ids)), key=ids.__getitem__):
        inner = ", ".join(
            f'{key}: "{c[k]}"' if c[k] is not None else f"{key}: null"
            for key, c in zip(keys, cols, strict=True)
        )
        update(f'["{ids[k]}", {{{inner}}}]'.encode())
    return h.hexdigest()


def _hash_fields(samples, fields: list[str], progress=None,
                 scheme: int = HASH_SCHEME) -> tuple[list[str], dict[str, list]]:  # fmt: skip
    """Sample ids of ``samples`` (a view) and, per field, the column of label hashes.

    Scheme 2 hashes the stored documents of one bulk read, a batch at a time; scheme 1
    (kept to verify older freezes) hashes FiftyOne label objects one by one, as it did.
    """
    if scheme == 1:
        ids = samples.values("id")
        columns = {}
        for k, f in enumerate(fields):
            columns[f] = [_label_hash_v1(label) for label in samples.values(f)]
            if progress:
                progress((k + 1) / (len(fields) + 1), f"hashed {f}")
        return ids, columns
    if scheme != 2:
        raise LineageError(f"unknown label hash scheme {scheme!r}; known: {list(HASH_SCHEMES)}")
    ids: list[str] = []
    columns = {f: [] for f in fields}
    memos: dict[str, dict] = {f: {} for f in fields}
    total = max(1, samples.count()) if progress else 1
    for batch_ids, batch in _read_raw(samples, fields):
        for f in fields:
            try:
                col = canonical.raw_column_hashes(batch[f], f, batch_ids, memos[f])
            except canonical.CanonicalError as e:
                raise LineageError(f"cannot hash {e}") from None
            columns[f].extend(col)
        ids.extend(batch_ids)
        if progress:
            progress(0.9 * len(ids) / total, f"hashed {len(ids)} samples")
    return ids, columns


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
    ids, columns = _hash_fields(view, list(label_fields), progress)
    header = {
        "hash_scheme": HASH_SCHEME,
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
    header["freeze_hash"] = _freeze_hash_columns(header, ids, columns)
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
    # the rows in chunks of _BATCH samples, as parallel arrays: a hundred documents
    # for 100,000 samples instead of 100,000 (the freeze hash is over the rows either way)
    chunks = [
        {
            "freeze_id": fid,
            "chunk": c,
            "sample_ids": ids[start : start + _BATCH],
            "hashes": {f: col[start : start + _BATCH] for f, col in columns.items()},
        }
        for c, start in enumerate(range(0, len(ids), _BATCH))
    ]
    for start in range(0, len(chunks), 10):
        db[ITEMS].insert_many(chunks[start : start + 10])
    if progress:
        progress(1.0, f"froze {len(ids)} samples")
    header.pop("_id", None)
    return header


def list_training_sets(dataset) -> list[dict]:
    ds_id, _ = audit.dataset_key(dataset)
    return list(_db()[FREEZES].find({"dataset_id": ds_id}, {"_id": 0}).sort("created", 1))


class _Frozen:
    """A freeze's rows: sample ids and one column of label hashes per field.

    Stored in chunks of parallel arrays; freezes made before that stored one document
    per sample (``sample_id``, ``hashes``), kept as ``rows`` so their freeze hash is
    recomputed from exactly what was stored.
    """

    def __init__(self, docs: list[dict], fields: list[str]):
        self.rows = None
        if docs and all("sample_id" in d for d in docs):
            self.rows = docs
            self.ids = [d["sample_id"] for d in docs]
            self.columns = {f: [(d.get("hashes") or {}).get(f) for d in docs] for f in fields}
            return
        self.ids, self.columns = [], {f: [] for f in fields}
        for d in sorted(docs, key=lambda d: (d.get("chunk", -1), str(d.get("sample_id")))):
            ids = d.get("sample_ids") or [d.get("sample_id")]
            hashes = d.get("hashes") or {}
            for f in fields:
                col = hashes.get(f) if "sample_ids" in d else [hashes.get(f)]
                col = list(col or [])[: len(ids)]
                self.columns[f].extend(col + [None] * (len(ids) - len(col)))
            self.ids.extend(ids)

    def freeze_hash(self, header: dict) -> str:
        header = {k: v for k, v in header.items() if k != "_id"}
        if self.rows is not None:
            return _freeze_hash(header, self.rows)
        return _freeze_hash_columns(header, self.ids, self.columns)

    def as_dict(self) -> dict[str, dict]:
        """``{sample_id: {field: hash}}``."""
        fields = list(self.columns)
        cols = [self.columns[f] for f in fields]
        return {
            i: dict(zip(fields, row, strict=True)) for i, *row in zip(self.ids, *cols, strict=True)
        }


def _load(dataset, name) -> tuple[dict, _Frozen]:
    ds_id, _ = audit.dataset_key(dataset)
    db = _db()
    header = db[FREEZES].find_one({"dataset_id": ds_id, "name": name})
    if header is None:
        names = [h["name"] for h in list_training_sets(dataset)]
        raise LineageError(f"no frozen training set {name!r}; frozen: {names}")
    docs = list(db[ITEMS].find({"freeze_id": header["_id"]}, {"_id": 0, "freeze_id": 0}))
    return header, _Frozen(docs, list(header.get("label_fields") or []))


def load_training_set(dataset, name: str, ids: bool = False) -> dict:
    header, frozen = _load(dataset, name)
    header.pop("_id", None)
    if ids:
        header["sample_ids"] = sorted(frozen.ids)
    return header


def verify_training_set(dataset, name: str, progress=None) -> dict:
    """What changed since the freeze: removed, relabelled and added samples."""
    import fiftyone.server.view as fosv

    dataset = getattr(dataset, "_dataset", dataset)
    header, frozen = _load(dataset, name)
    freeze_ok = frozen.freeze_hash(header) == header.get("freeze_hash")
    label_fields = list(header["label_fields"])
    fields = [f for f in label_fields if dataset.has_field(f)]
    # freezes made before scheme 2 carry no scheme and are verified the way they were made
    scheme = header.get("hash_scheme", 1)
    # the whole dataset read in bulk, then restricted in Python: a select() stage of
    # 100,000 ids costs more than reading the few extra samples
    ids, now = _hash_fields(dataset, fields, progress, scheme)
    pos = {i: k for k, i in enumerate(ids)}
    where = [pos.get(i) for i in frozen.ids]
    removed = sorted(i for i, j in zip(frozen.ids, where, strict=True) if j is None)
    changed = []  # (frozen row, field index, frozen hash, current hash)
    for n_f, f in enumerate(label_fields):
        was = frozen.columns[f]
        col = now.get(f)
        cur = [None if j is None or col is None else col[j] for j in where]
        if cur == was:
            continue
        changed.extend(
            (k, n_f, a, b)
            for k, (a, b, j) in enumerate(zip(was, cur, where, strict=True))
            if a != b and j is not None
        )
    changed.sort()
    relabelled = [
        {"sample_id": frozen.ids[k], "field": label_fields[n_f], "frozen_hash": a,
         "current_hash": b}
        for k, n_f, a, b in changed
    ]  # fmt: skip
    stages = json.loads(header["view"])
    in_view = ids if not stages else fosv.get_view(dataset.name, stages=stages).values("id")
    known = set(frozen.ids)
    added = sorted(i for i in in_view if i not in known)
    ok = freeze_ok and not removed and not relabelled and not added
    if progress:
        progress(1.0, f"verified {len(frozen.ids)} samples")
    result = {
        "name": name,
        "hash_scheme": scheme,
        "ok": ok,
        "freeze_hash_ok": freeze_ok,
        "removed": removed,
        "relabelled": relabelled,
        "added": added,
        "counts": {
            "frozen": len(frozen.ids),
            "removed": len(removed),
            "relabelled_samples": len({r["sample_id"] for r in relabelled}),
            "relabelled_labels": len(relabelled),
            "added": len(added),
        },
    }
    return result


def diff_training_sets(dataset, name_a: str, name_b: str) -> dict:
    """What ``name_b`` has that ``name_a`` did not: samples added, removed, relabelled."""
    ha, fa = _load(dataset, name_a)
    hb, fb = _load(dataset, name_b)
    sa, sb = ha.get("hash_scheme", 1), hb.get("hash_scheme", 1)
    if sa != sb:
        raise LineageError(
            f"{name_a!r} hashed its labels with scheme {sa} and {name_b!r} with scheme {sb}: "
            "their label hashes cannot be compared; verify each against the dataset "
            "(verify_training_set) instead"
        )
    a, b = fa.as_dict(), fb.as_dict()
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
    header, frozen = _load(dataset, name)
    fid = header.pop("_id")
    entry = audit.append(
        dataset,
        "delete_training_set",
        params={"name": name, "reason": reason},
        counts={"n_samples": len(frozen.ids)},
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
