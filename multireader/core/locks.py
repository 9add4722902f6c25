"""A per-dataset lock shared by every process on one FiftyOne database.

FiftyOne keeps a dataset's schema (its field list), ``info`` and ``mask_targets`` in
one document that each process holds in memory and writes back whole: when two
processes add fields to the same dataset at once (two users importing reads for
different readers, two delegated workers), the second write drops the first one's
fields from the schema, although their values stay in the samples. Code that changes a
dataset's schema or ``info`` from a possibly concurrent process does it inside
:func:`dataset_lock` and reloads the dataset first, so it starts from the latest
document and the writes follow one another.

The lock is one document in the database (collection ``multireader_locks``), inserted
to take it and deleted to give it back, so it holds across machines. A holder that
dies keeps it at most ``lease_s`` seconds, or not at all when it ran on this host
(its pid is gone).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import time
import uuid

from multireader.errors import MultireaderError

COLLECTION = "multireader_locks"


class LockTimeout(MultireaderError, TimeoutError):
    """The lock stayed taken for longer than the caller would wait."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _collection():
    import fiftyone.core.odm as foo

    return foo.get_db_conn()[COLLECTION]


def _holder_gone(doc: dict) -> bool:
    if doc.get("host") != socket.gethostname() or not doc.get("pid"):
        return False
    try:
        os.kill(int(doc["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError, ValueError):
        return False
    return False


@contextlib.contextmanager
def dataset_lock(dataset, purpose: str = "schema", *, lease_s: float = 600, wait_s: float = 600):
    """Hold the ``purpose`` lock of ``dataset`` for the block (other holders wait).

    Raises :class:`LockTimeout` naming the holder after ``wait_s`` seconds."""
    from pymongo.errors import DuplicateKeyError

    coll = _collection()
    key = f"{dataset._doc.id}:{purpose}"
    token = uuid.uuid4().hex
    me = {"host": socket.gethostname(), "pid": os.getpid(), "token": token}
    deadline = time.monotonic() + wait_s
    delay = 0.01
    while True:
        now = _now()
        doc = {"_id": key, **me, "dataset": dataset.name, "taken": now}
        doc["expires"] = now + dt.timedelta(seconds=lease_s)
        try:
            coll.insert_one(doc)
            break
        except DuplicateKeyError:
            pass
        held = coll.find_one({"_id": key})
        # an expired or dead holder's lock is taken over, atomically
        stale = held is not None and (held.get("expires", now) < now or _holder_gone(held))
        if stale and coll.find_one_and_update({"_id": key, "token": held["token"]}, {"$set": doc}):
            break
        if time.monotonic() > deadline:
            who = f"{held.get('host')}:{held.get('pid')}" if held else "another process"
            raise LockTimeout(
                f"dataset {dataset.name!r} is locked ({purpose}) by {who} "
                f"since {held.get('taken') if held else '?'}; waited {wait_s:.0f} s"
            )
        time.sleep(delay)
        delay = min(0.2, delay * 2)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            coll.delete_one({"_id": key, "token": token})
