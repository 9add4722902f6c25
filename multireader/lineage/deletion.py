"""Delete a study with everything this plugin wrote for it, and keep its audit trail.

``fo.delete_dataset`` removes the samples, runs, stored results, saved views and
delegated operations (FiftyOne's own records), but not what this plugin wrote beside
them. :func:`delete_study` removes all of it:

- files: renders and native arrays, preset renders, reader masks, consensus masks,
  lesion volumes (the dataset's storage folder, :mod:`multireader.core.storage`), and
  converted prediction masks;
- database records: the audit log and its head record, label history, frozen training
  sets and their items (:mod:`multireader.lineage.records`);
- the local lookup of source-path tokens (:mod:`multireader.io.source_paths`);
- the dataset itself, with FiftyOne's runs, results and delegated operations.

A reason is required. Before anything is deleted, a final ``delete_study`` entry is
appended to the audit chain and the whole chain is archived outside the deleted data:
its entries go, unchanged and with their hashes, to the collection
``multireader_audit_archive`` and a tombstone (who, when, why, what was deleted, the
chain's head) to ``multireader_tombstones``, both in FiftyOne's database. The trail of
a deleted study stays listable (:func:`deleted_studies`), verifiable
(:func:`verify_archived_audit`) and exportable (:func:`export_archived_audit`).

Source DICOM files and label files given to an import are never deleted: they are the
user's. Files another dataset still references (a clone shares its renders) stay too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re

from multireader.core import fields as F
from multireader.core import storage
from multireader.errors import MultireaderError
from multireader.io import source_paths
from multireader.lineage import audit, records

TOMBSTONES = "multireader_tombstones"
ARCHIVE = "multireader_audit_archive"
ACTION = "delete_study"

_MASK_TYPES = ("Segmentation", "Heatmap")
_PATH_ATTRS = {"Segmentation": "mask_path", "Heatmap": "map_path"}


class DeletionError(MultireaderError):
    """A study that cannot be deleted as asked; the message says why."""


# --- what the plugin wrote ----------------------------------------------------------


def _label_path_fields(dataset) -> list[tuple[str, str, str | None]]:
    """``(field, path attribute, role)`` for every mask/heatmap label field."""
    import fiftyone as fo

    out = []
    for name, field in dataset.get_field_schema().items():
        if not isinstance(field, fo.EmbeddedDocumentField):
            continue
        kind = getattr(field.document_type, "__name__", "")
        role = ((getattr(field, "info", None) or {}).get(F.INFO_KEY) or {}).get("role")
        if kind in _PATH_ATTRS:
            out.append((name, _PATH_ATTRS[kind], role))
        elif kind == "Detections":
            out.append((name, "detections.mask_path", role))
    return out


def _flatten(values):
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _flatten(v)
        elif v:
            yield v


def _media_fields(dataset) -> list[str]:
    schema = dataset.get_field_schema()
    names = [F.NATIVE_PATH] if F.NATIVE_PATH in schema else []
    names += [n for n in schema if n.startswith("filepath_")]
    return names


def referenced_files(dataset) -> dict[str, set[str]]:
    """Files the dataset's samples point at, by kind: ``renders`` (renders, native
    arrays, preset renders of imported DICOM frames), ``plugin_masks`` (reader and
    consensus masks, which this plugin always writes itself) and ``other_masks``
    (any other mask or heatmap, e.g. a model's, which may be the user's own file)."""
    from fiftyone import ViewField as VF

    out = {"renders": set(), "plugin_masks": set(), "other_masks": set()}
    schema = dataset.get_field_schema()
    if F.DICOM_KEY in schema:
        frames = dataset.match(VF(F.DICOM_KEY).exists())
        names = ["filepath", *_media_fields(dataset)]
        for column in frames.values(names):
            out["renders"].update(os.path.abspath(p) for p in _flatten(column))
    specs = _label_path_fields(dataset)
    if specs:
        columns = dataset.values([f"{name}.{attr}" for name, attr, _ in specs])
        for (_, _, role), column in zip(specs, columns, strict=True):
            kind = "plugin_masks" if role in ("reader", "consensus") else "other_masks"
            out[kind].update(os.path.abspath(p) for p in _flatten(column))
    return out


def _plugin_folders(dataset) -> list[str]:
    """Folders only this plugin writes for the dataset, removed whole.

    ``<default_dataset_dir>/multireader/<name>`` is the plugin's own namespace. In a
    storage folder the user chose (``render_dir=``) only the subfolders named after
    this dataset's readers, consensus fields and runs are, never a whole ``masks/``
    that may hold other files.
    """
    import fiftyone as fo

    default = os.path.abspath(storage.default_dir(dataset))
    root = os.path.abspath(storage.storage_dir(dataset))
    folders = [default]
    if not _inside(root, [default]):
        readers = {m.get("reader") for m in F.reader_fields(dataset).values() if m.get("reader")}
        folders += [os.path.join(root, "masks", F.reader_slug(r)) for r in sorted(readers)]
        for name, field in dataset.get_field_schema().items():
            role = ((getattr(field, "info", None) or {}).get(F.INFO_KEY) or {}).get("role")
            if role == "consensus" and isinstance(field, fo.EmbeddedDocumentField):
                folders.append(os.path.join(root, "consensus", name))
        folders += [os.path.join(root, "lesions", key) for key in dataset.list_runs()]
    return list(dict.fromkeys(folders))


def _inside(path: str, folders) -> bool:
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def _converted_prediction_mask(path: str) -> bool:
    """A PNG the prediction import converted from an array: ``<field>_png/<sample id>.png``."""
    folder = os.path.basename(os.path.dirname(path))
    return folder.endswith("_png") and bool(
        re.fullmatch(r"[0-9a-f]{24}\.png", os.path.basename(path))
    )


def _sharing_datasets(dataset) -> list[str]:
    """Other datasets that record the same storage folder (a clone shares its files)."""
    import fiftyone.core.odm as foo

    mine = storage.storage_dir(dataset)
    db = foo.get_db_conn()
    out = []
    for doc in db.datasets.find({}, {"name": 1, "info": 1}):
        if doc.get("name") == dataset.name:
            continue
        meta = (doc.get("info") or {}).get(F.INFO_KEY) or {}
        if meta.get("storage_dir") == mine:
            out.append(doc["name"])
    return out


def plan(dataset) -> dict:
    """What :func:`delete_study` would remove, without removing anything.

    ``{"files": [...], "folders": [...], "kept_shared": [...], "records": {...}}``.
    """
    import fiftyone as fo

    dataset = _dataset(dataset)
    ds_id, _ = audit.dataset_key(dataset)
    refs = referenced_files(dataset)
    folders = _plugin_folders(dataset)
    files = set(refs["renders"]) | set(refs["plugin_masks"])
    files |= {
        p for p in refs["other_masks"] if _inside(p, folders) or _converted_prediction_mask(p)
    }
    for folder in folders:
        for base, _, names in os.walk(folder):
            files.update(os.path.join(base, n) for n in names)
    shared = _sharing_datasets(dataset)
    kept = set()
    if shared:
        for name in shared:
            other = referenced_files(fo.load_dataset(name))
            kept |= set().union(*other.values())
        # a shared storage folder stays; only this dataset's own files leave it
        folders = []
    kept &= files
    files -= kept
    return {
        "dataset": dataset.name,
        "dataset_id": ds_id,
        "files": sorted(files),
        "folders": folders,
        "kept_shared": sorted(kept),
        "shared_with": shared,
        "records": _record_counts(dataset, ds_id),
    }


def _record_counts(dataset, ds_id: str) -> dict:
    db = audit.database()
    freezes = [h["_id"] for h in db[records.FREEZES].find({"dataset_id": ds_id}, {"_id": 1})]
    return {
        "samples": len(dataset),
        audit.COLLECTION: db[audit.COLLECTION].count_documents({"dataset_id": ds_id}),
        audit.HEADS: db[audit.HEADS].count_documents({"_id": ds_id}),
        records.HISTORY: db[records.HISTORY].count_documents({"dataset_id": ds_id}),
        records.FREEZES: len(freezes),
        records.ITEMS: db[records.ITEMS].count_documents({"freeze_id": {"$in": freezes}}),
        "runs": len(dataset.list_runs()) + len(dataset.list_brain_runs()),
        "source_path_tokens": len(source_paths.recorded(ds_id)),
    }


# --- deleting -----------------------------------------------------------------------


def _dataset(dataset):
    import fiftyone as fo

    if isinstance(dataset, str):
        if not fo.dataset_exists(dataset):
            raise DeletionError(f"no dataset named {dataset!r}")
        return fo.load_dataset(dataset)
    return getattr(dataset, "_dataset", dataset)


def delete_study(dataset, *, reason: str, user: str | None = None) -> dict:
    """Delete ``dataset`` (a dataset or its name) and everything this plugin wrote for it.

    ``reason`` is required and recorded. The audit chain, with a final ``delete_study``
    entry, is archived first (see the module docstring), then files, the plugin's
    database records, the source-path lookup and the dataset are removed. Returns the
    tombstone: ``{"dataset", "dataset_id", "reason", "user", "deleted_at",
    "n_files", "n_audit_entries", "head_hash", "records", ...}``.
    """
    if not reason or not str(reason).strip():
        raise DeletionError("deleting a study needs a reason (it is kept in its audit trail)")
    dataset = _dataset(dataset)
    ds_id, name = audit.dataset_key(dataset)
    todo = plan(dataset)
    final = audit.append(
        dataset,
        ACTION,
        params={"reason": str(reason)},
        counts={
            "n_files": len(todo["files"]),
            "n_samples": todo["records"]["samples"],
        },
        detail={"records": todo["records"], "shared_with": todo["shared_with"]},
        user=user,
    )
    tomb = _archive(dataset, ds_id, name, reason, final, todo)

    removed = 0
    for path in todo["files"]:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed += 1
    for folder in todo["folders"]:
        _remove_tree(folder)
    _prune_empty(storage.storage_dir(dataset))

    records.delete_for_dataset(dataset)
    audit.delete_log(dataset)
    source_paths.forget(ds_id)
    dataset.delete()

    db = audit.database()
    db[TOMBSTONES].update_one(
        {"_id": ds_id}, {"$set": {"status": "deleted", "n_files_removed": removed}}
    )
    tomb.update(status="deleted", n_files_removed=removed)
    return tomb


def _archive(dataset, ds_id, name, reason, final, todo) -> dict:
    """Copy the chain (unchanged) and its head to the archive; write the tombstone."""
    import pymongo.errors

    db = audit.database()
    coll = db[ARCHIVE]
    coll.create_index([("dataset_id", 1), ("seq", 1)], unique=True)
    entries = audit.entries(dataset)
    if entries:
        with contextlib.suppress(pymongo.errors.BulkWriteError):  # a retried deletion
            coll.insert_many([dict(e) for e in entries], ordered=False)
    head = db[audit.HEADS].find_one({"_id": ds_id}) or {}
    tomb = {
        "_id": ds_id,
        "dataset_id": ds_id,
        "dataset": name,
        "reason": str(reason),
        "user": final["user"],
        "deleted_at": final["time"],
        "status": "archived",
        "n_audit_entries": len(entries),
        "head_seq": head.get("seq", final["seq"]),
        "head_hash": head.get("hash", final["hash"]),
        "n_files": len(todo["files"]),
        "records": todo["records"],
        "shared_with": todo["shared_with"],
        "plugin_version": final["plugin_version"],
    }
    db[TOMBSTONES].replace_one({"_id": ds_id}, tomb, upsert=True)
    return dict(tomb)


def _remove_tree(folder: str) -> None:
    import shutil

    if os.path.isdir(folder):
        shutil.rmtree(folder, ignore_errors=True)


def _prune_empty(root: str) -> None:
    """Remove empty folders left under ``root`` (the render shards), and ``root``."""
    if not os.path.isdir(root):
        return
    for base, _, _ in sorted(os.walk(root), key=lambda t: -len(t[0])):
        with contextlib.suppress(OSError):
            os.rmdir(base)  # only succeeds when empty


# --- the trail of deleted studies ---------------------------------------------------


def deleted_studies() -> list[dict]:
    """Tombstones of every deleted study, newest first."""
    db = audit.database()
    return list(db[TOMBSTONES].find({}, {"_id": 0}).sort("deleted_at", -1))


def _tombstone(study: str) -> dict:
    """The tombstone of a deleted study, by dataset id or name (the newest deletion)."""
    db = audit.database()
    tomb = db[TOMBSTONES].find_one({"_id": study})
    if tomb is None:
        found = list(db[TOMBSTONES].find({"dataset": study}).sort("deleted_at", -1).limit(1))
        tomb = found[0] if found else None
    if tomb is None:
        raise DeletionError(f"no deleted study {study!r} in {TOMBSTONES}")
    return tomb


def archived_audit(study: str) -> list[dict]:
    """The archived audit entries of a deleted study (id or name), in chain order."""
    tomb = _tombstone(study)
    db = audit.database()
    return list(db[ARCHIVE].find({"dataset_id": tomb["dataset_id"]}, {"_id": 0}).sort("seq", 1))


def verify_archived_audit(study: str) -> dict:
    """Check a deleted study's archived chain as :func:`multireader.lineage.audit.verify`
    checks a live one: sequence, links, each entry's hash, and the head recorded in
    the tombstone (so entries removed from the archive's end are caught too)."""
    tomb = _tombstone(study)
    rows = archived_audit(tomb["dataset_id"])
    problems = []
    expected, prev = 0, audit.GENESIS
    for e in rows:
        seq = e.get("seq")
        if seq != expected:
            problems.append({"seq": expected, "problem": "missing"})
        elif e.get("prev_hash") != prev:
            problems.append({"seq": seq, "problem": "relinked"})
        if audit.entry_hash(e) != e.get("hash"):
            problems.append({"seq": seq, "problem": "altered"})
        expected = (seq if isinstance(seq, int) else expected) + 1
        prev = e.get("hash")
    last = rows[-1] if rows else None
    if last is None or last.get("seq") != tomb["head_seq"] or last.get("hash") != tomb["head_hash"]:
        problems.append({"seq": tomb["head_seq"], "problem": "truncated"})
    return {
        "dataset": tomb["dataset"],
        "dataset_id": tomb["dataset_id"],
        "ok": not problems,
        "n_entries": len(rows),
        "head_hash": tomb["head_hash"],
        "problems": problems,
    }


def export_archived_audit(study: str, path: str) -> str:
    """Write a deleted study's tombstone, verification and archived entries to ``path``
    (JSON). Returns the path."""
    tomb = _tombstone(study)
    body = {
        "tombstone": {k: v for k, v in tomb.items() if k != "_id"},
        "verification": verify_archived_audit(tomb["dataset_id"]),
        "entries": archived_audit(tomb["dataset_id"]),
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(body, f, indent=1, default=str)
    return path
