"""An append-only, hash-chained audit log kept in FiftyOne's own database.

Every operator of this plugin appends one entry per execution (see
``operators/_audit.py``): who, when (UTC), which operator, its parameters, the dataset
and view, the plugin version, what it wrote, counts, and whether it completed or
failed. Library code that changes labels (label revisions, training-set freezes and
their deletion) appends entries too.

Each dataset has its own chain. Entry ``seq`` n stores the SHA-256 of entry n-1
(``prev_hash``) and its own ``hash`` over a canonical JSON form of everything else, so
editing an entry breaks its own hash and deleting one breaks the sequence and the link
of the next. A separate head record keeps the last ``seq`` and hash, so deleting the
newest entries is caught too. :func:`verify` says exactly where the chain breaks.

Concurrency: ``(dataset_id, seq)`` is a unique index. Two writers that read the same
head race to insert the same ``seq``; the loser gets a duplicate-key error, re-reads
the head and retries, so no entry is ever lost and the chain stays linear.

>>> append(dataset, "compute_agreement", params={...}, wrote={"fields": [...]})
>>> verify(dataset)["ok"]
True
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import random
import time

from multireader import __version__
from multireader.errors import MultireaderError

COLLECTION = "multireader_audit"
HEADS = "multireader_audit_heads"
GENESIS = "0" * 64
#: environment variable naming the person to record instead of the OS user
USER_ENV = "MULTIREADER_AUDIT_USER"
_HASHED_OUT = ("_id", "hash")


class AuditError(MultireaderError, RuntimeError):
    """The audit log could not be written."""


def database():
    """FiftyOne's MongoDB database, where the audit log and the label history live."""
    import fiftyone.core.odm as foo

    return foo.get_db_conn()


_INDEXED = False


def _collections():
    global _INDEXED
    db = database()
    coll, heads = db[COLLECTION], db[HEADS]
    if not _INDEXED:
        coll.create_index([("dataset_id", 1), ("seq", 1)], unique=True)
        coll.create_index([("dataset_id", 1), ("time", 1)])
        _INDEXED = True
    return coll, heads


def actor(user: str | None = None) -> str:
    """The person to record: ``user``, else ``$MULTIREADER_AUDIT_USER``, else the OS user."""
    if user:
        return str(user)
    env = os.environ.get(USER_ENV, "").strip()
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def utc_now() -> str:
    """UTC time as an ISO-8601 string with microseconds (stored as text, so the hash
    survives the database's millisecond datetimes)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _plain(obj):
    """JSON-safe copy: numpy values to Python, NaN to None, unknown objects to str."""
    from multireader.core.runs import jsonable

    def fallback(o):
        if isinstance(o, dict):
            return {str(k): fallback(v) for k, v in o.items()}
        if isinstance(o, (list, tuple, set)):
            return [fallback(v) for v in o]
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        try:
            return jsonable(o)
        except Exception:
            return str(o)

    return jsonable(fallback(obj))


def canonical(entry: dict) -> bytes:
    """The bytes an entry's hash covers: sorted-key compact JSON, without _id and hash."""
    body = {k: v for k, v in entry.items() if k not in _HASHED_OUT}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def entry_hash(entry: dict) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def dataset_key(dataset) -> tuple[str, str]:
    """(id, name) of a dataset, a view's dataset, or a dataset name."""
    if isinstance(dataset, str):
        import fiftyone as fo

        dataset = fo.load_dataset(dataset)
    ds = getattr(dataset, "_dataset", dataset)
    return str(ds._doc.id), ds.name


def view_stages(view) -> list | None:
    """The view's stages as FiftyOne serialises them (None for a whole dataset)."""
    if view is None:
        return None
    try:
        stages = view._serialize()
    except Exception:
        return None
    return _plain(stages) or None


def append(
    dataset,
    action: str,
    *,
    params: dict | None = None,
    view=None,
    wrote: dict | None = None,
    counts: dict | None = None,
    status: str = "completed",
    error: str | None = None,
    detail: dict | None = None,
    user: str | None = None,
    max_tries: int = 200,
) -> dict:
    """Append one entry to ``dataset``'s chain and return it (with seq and hash).

    ``action``: the operator or library action (``"compute_agreement"``,
    ``"revise_label"``, ...). ``view``: the view it ran on. ``wrote``: what it wrote,
    e.g. ``{"fields": [...], "runs": [...]}``. ``counts``: numbers worth keeping.
    ``status``: ``"completed"``, ``"failed"`` or ``"queued"``.
    """
    ds_id, ds_name = dataset_key(dataset)
    coll, heads = _collections()
    import pymongo.errors

    base = {
        "dataset_id": ds_id,
        "dataset_name": ds_name,
        "user": actor(user),
        "action": str(action),
        "params": _plain(params or {}),
        "view": view_stages(view) if view is not None and not isinstance(view, list) else view,
        "plugin_version": __version__,
        "wrote": _plain(wrote or {}),
        "counts": _plain(counts or {}),
        "status": status,
        "error": error,
        "detail": _plain(detail or {}),
    }
    for attempt in range(max_tries):
        last = coll.find_one(
            {"dataset_id": ds_id}, sort=[("seq", -1)], projection={"seq": 1, "hash": 1}
        )
        seq = 0 if last is None else int(last["seq"]) + 1
        prev = GENESIS if last is None else last["hash"]
        entry = {**base, "seq": seq, "time": utc_now(), "prev_hash": prev}
        entry["hash"] = entry_hash(entry)
        try:
            coll.insert_one(dict(entry))
        except pymongo.errors.DuplicateKeyError:
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))
            continue
        _advance_head(heads, ds_id, seq, entry["hash"])
        return entry
    raise AuditError(
        f"could not append to the audit log of {ds_name!r} after {max_tries} tries "
        "(too many concurrent writers)"
    )


def _advance_head(heads, ds_id: str, seq: int, h: str) -> None:
    import contextlib

    import pymongo.errors

    # a DuplicateKeyError: the head is already past seq (a later writer advanced it first)
    with contextlib.suppress(pymongo.errors.DuplicateKeyError):
        heads.update_one(
            {"_id": ds_id, "seq": {"$lt": seq}},
            {"$set": {"seq": seq, "hash": h}},
            upsert=True,
        )


def entries(
    dataset,
    *,
    action: str | None = None,
    since: str | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[dict]:
    """The dataset's entries in chain order (``newest_first`` to reverse)."""
    ds_id, _ = dataset_key(dataset)
    coll, _ = _collections()
    query: dict = {"dataset_id": ds_id}
    if action:
        query["action"] = action
    if since:
        query["time"] = {"$gte": since}
    cur = coll.find(query, projection={"_id": 0}).sort("seq", -1 if newest_first else 1)
    if limit:
        cur = cur.limit(int(limit))
    return list(cur)


def verify(dataset) -> dict:
    """Check ``dataset``'s chain. Returns ``{"ok", "n_entries", "head_hash",
    "first_break", "problems"}``; each problem names the entry (seq, action, time) and
    what is wrong with it: altered, missing (deleted), out of chain, or the newest
    entries deleted (the head record is ahead of the log)."""
    ds_id, ds_name = dataset_key(dataset)
    coll, heads = _collections()
    problems = []

    def problem(seq, kind, message, entry=None):
        problems.append(
            {
                "seq": seq,
                "problem": kind,
                "action": (entry or {}).get("action"),
                "time": (entry or {}).get("time"),
                "message": message,
            }
        )

    expected_seq, prev_hash, n, last = 0, GENESIS, 0, None
    for e in coll.find({"dataset_id": ds_id}).sort("seq", 1):
        n += 1
        seq = e.get("seq")
        if seq != expected_seq:
            missing = f"{expected_seq}" + (f"-{seq - 1}" if seq - 1 > expected_seq else "")
            problem(
                expected_seq,
                "missing",
                f"entry {missing} is missing: deleted from the log "
                f"(the next entry present is {seq}, {e.get('action')} at {e.get('time')})",
            )
        elif e.get("prev_hash") != prev_hash:
            problem(
                seq,
                "relinked",
                f"entry {seq} ({e.get('action')} at {e.get('time')}) does not point at "
                "the entry before it: the chain was rewritten here",
                e,
            )
        actual = entry_hash(e)
        if actual != e.get("hash"):
            problem(
                seq,
                "altered",
                f"entry {seq} ({e.get('action')} at {e.get('time')}) was altered after "
                "it was written: its content no longer matches its hash",
                e,
            )
        expected_seq = (seq if isinstance(seq, int) else expected_seq) + 1
        prev_hash = e.get("hash")
        last = e
    head = heads.find_one({"_id": ds_id})
    if head is not None:
        last_seq = -1 if last is None else last["seq"]
        if head["seq"] > last_seq:
            problem(
                last_seq + 1,
                "truncated",
                f"entries {last_seq + 1}-{head['seq']} are missing: the newest entries "
                "were deleted (the head record says the log reached "
                f"entry {head['seq']})",
            )
        elif head["seq"] == last_seq and head.get("hash") != last.get("hash"):
            problem(
                last_seq,
                "altered",
                f"entry {last_seq} does not match the head record's hash",
                last,
            )
    problems.sort(key=lambda p: p["seq"] if p["seq"] is not None else -1)
    return {
        "dataset": ds_name,
        "ok": not problems,
        "n_entries": n,
        "head_seq": None if last is None else last["seq"],
        "head_hash": None if last is None else last["hash"],
        "first_break": problems[0]["seq"] if problems else None,
        "problems": problems,
    }


def export(dataset, path: str, fmt: str | None = None) -> str:
    """Write the dataset's log to ``path`` as JSON (with the verification), JSON Lines
    or CSV (chosen by ``fmt`` or the extension). Returns the path."""
    fmt = (fmt or os.path.splitext(path)[1].lstrip(".") or "json").lower()
    rows = entries(dataset)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if fmt == "json":
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"verification": verify(dataset), "entries": rows}, f, indent=1)
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, sort_keys=True) + "\n")
    elif fmt == "csv":
        import csv

        cols = ["seq", "time", "user", "action", "status", "error", "params", "wrote",
                "counts", "view", "plugin_version", "prev_hash", "hash"]  # fmt: skip
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in rows:
                w.writerow(
                    [
                        json.dumps(r.get(c), sort_keys=True)
                        if isinstance(r.get(c), (dict, list))
                        else r.get(c)
                        for c in cols
                    ]
                )
    else:
        raise ValueError(f"unknown export format {fmt!r}: use json, jsonl or csv")
    return path


def delete_log(dataset) -> int:
    """Remove a dataset's whole chain (for deleted datasets and tests). Returns the
    number of entries removed."""
    ds_id, _ = dataset_key(dataset)
    coll, heads = _collections()
    n = coll.delete_many({"dataset_id": ds_id}).deleted_count
    heads.delete_one({"_id": ds_id})
    return n


def mark_incomplete(dataset, names, entry: dict | None, error: str | None) -> list[str]:
    """Mark (``error`` given) or clear (``error`` None) the incomplete flag of the
    fields ``names`` of ``dataset``: ``info["multireader"]["incomplete"]`` names the
    audit entry and the error. A reader's field (or a path inside one) is never touched.
    Returns the fields changed. The audit wrapper of the operators marks what a failed
    run half-wrote; :func:`multireader.lineage.delegated.reap_orphans` does the same
    for a run whose worker died."""
    from multireader.core.fields import reader_fields

    readers = set(reader_fields(dataset))
    schema = dataset.get_field_schema(flat=True)
    done = []
    for name in dict.fromkeys(names):
        if name not in schema or name in readers or name.split(".")[0] in readers:
            continue
        field = dataset.get_field(name)
        info = dict(field.info or {})
        meta = dict(info.get("multireader") or {})
        if error is None:
            if "incomplete" not in meta:
                continue
            meta.pop("incomplete")
        else:
            meta["incomplete"] = {
                "audit_seq": (entry or {}).get("seq"),
                "error": error,
                "time": (entry or {}).get("time"),
            }
        info["multireader"] = meta
        field.info = info
        field.save()
        done.append(name)
    return done
