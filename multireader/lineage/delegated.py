"""Delegated runs whose worker died: found, marked failed, optionally queued again.

FiftyOne's open-source scheduler (``fiftyone delegated launch``) moves an operation
from QUEUED to RUNNING when a worker claims it, and to COMPLETED or FAILED when the
worker finishes. A worker that is SIGKILLed, runs out of memory or loses its machine
never writes the last step, so the operation stays RUNNING forever (``fiftyone
delegated fail <id>`` fixes that by hand; ``cleanup`` refuses running operations).

Every delegated run of this plugin therefore records, in its own delegated-operation
document (field ``multireader_worker``), which worker runs it (host, pid and the
process's start time, so a reused pid is not mistaken for it) and a heartbeat that a
background thread refreshes every :func:`heartbeat_s` seconds (``$MULTIREADER_HEARTBEAT_S``,
default 10). :func:`reap_orphans` then treats a RUNNING operation as orphaned when

- its worker ran on this host and that process is gone (found at once), or
- its heartbeat is older than ``stale_after`` seconds (any host; default six
  heartbeats, at least 60 s), or
- it is one of this plugin's operations that was claimed but never reached
  ``execute`` (no record) and was claimed more than ``stale_after`` seconds ago.

An orphan is marked FAILED (atomically: only if it is still RUNNING), gets a "failed"
entry in its dataset's audit log as the worker would have written (same user, the
reason, which worker), and every field the run created or names as its output is
marked ``incomplete`` in its field info, exactly as a run that raises
(``operators/_auditing.py``): a half-written field cannot pass for a complete one, and
the next successful run that writes it clears the mark. Reader fields are never
touched. ``rerun=True`` queues each reaped operation again (FiftyOne's own rerun: same
operator, parameters and dataset).

    >>> reap_orphans()                 # what `./setup.sh cluster reap` runs
    [{"id": ..., "operator": ..., "dataset": ..., "reason": ..., "incomplete": [...]}]
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import threading

from multireader.lineage import audit

#: FiftyOne's collection of delegated operations
COLLECTION = "delegated_ops"
#: where a run's worker and heartbeat are kept in its delegated-operation document
WORKER_FIELD = "multireader_worker"
HEARTBEAT_ENV = "MULTIREADER_HEARTBEAT_S"
PLUGIN_PREFIX = "@multireader/disagreement/"
RUNNING, FAILED = "running", "failed"
_OUTPUT_KEYS = ("field", "fields")


def heartbeat_s() -> float:
    """Seconds between heartbeats (``$MULTIREADER_HEARTBEAT_S``, default 10)."""
    try:
        return max(0.2, float(os.environ.get(HEARTBEAT_ENV, "10")))
    except ValueError:
        return 10.0


def default_stale_after() -> float:
    return max(60.0, 6 * heartbeat_s())


def _now() -> dt.datetime:
    # naive UTC, as FiftyOne stores its own timestamps in this collection
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _collection():
    return audit.database()[COLLECTION]


def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def worker_identity() -> dict:
    """This process as a worker: host, pid, and the pid's start time."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_started": _process_start(pid)}


class _Heartbeat:
    def __init__(self, op_id, interval: float):
        self.op_id, self.interval = op_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="multireader-heartbeat", daemon=True)

    def _run(self):
        coll = _collection()
        while not self._stop.wait(self.interval):
            # the database may be away (a primary restarting): keep beating, never raise
            with contextlib.suppress(Exception):
                now = _now()
                coll.update_one(
                    {"_id": self.op_id, "run_state": RUNNING},
                    {"$set": {f"{WORKER_FIELD}.beat": now, "updated_at": now}},
                )

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(self.interval + 5)


@contextlib.contextmanager
def track(op_id, fields_before=(), user: str | None = None):
    """Record this process as the worker of delegated operation ``op_id`` and keep its
    heartbeat while the block runs. ``fields_before``: the dataset's top-level fields
    when the run started (what the run created is told apart from them later)."""
    if op_id is None:
        yield None
        return
    now = _now()
    record = {
        **worker_identity(),
        "user": audit.actor(user),
        "started": now,
        "beat": now,
        "interval_s": heartbeat_s(),
        "fields_before": sorted(fields_before),
    }
    try:
        _collection().update_one({"_id": op_id}, {"$set": {WORKER_FIELD: record}})
    except Exception:  # the run itself must not fail because its bookkeeping did
        yield None
        return
    beat = _Heartbeat(op_id, record["interval_s"])
    beat.start()
    try:
        yield record
    finally:
        beat.stop()


def _orphan_reason(doc: dict, now: dt.datetime, stale_after: float, host: str) -> str | None:
    rec = doc.get(WORKER_FIELD)
    if rec:
        if rec.get("host") == host:
            pid = rec.get("pid")
            started = _process_start(pid) if pid else None
            if started is None or (
                rec.get("pid_started") is not None and abs(started - rec["pid_started"]) > 1
            ):
                return f"worker process {host}:{pid} is gone"
        beat = rec.get("beat")
        if beat is not None and (now - beat).total_seconds() > stale_after:
            age = (now - beat).total_seconds()
            return (
                f"no heartbeat from worker {rec.get('host')}:{rec.get('pid')} for {age:.0f} s "
                f"(stale after {stale_after:.0f} s)"
            )
        return None
    claimed = doc.get("started_at") or doc.get("updated_at")
    if claimed is not None and (now - claimed).total_seconds() > stale_after:
        return (
            f"claimed {(now - claimed).total_seconds():.0f} s ago and never started "
            "(no worker record)"
        )
    return None


def find_orphans(stale_after: float | None = None, *, any_operator: bool = False) -> list[dict]:
    """RUNNING delegated operations whose worker is gone, each ``{"doc", "reason"}``.

    Only this plugin's operations carry a worker record; ``any_operator=True`` also
    considers other plugins' operations whose ``updated_at`` is older than
    ``stale_after`` (right only when their workers run with ``--monitor``, which
    refreshes it)."""
    stale_after = default_stale_after() if stale_after is None else float(stale_after)
    now, host = _now(), socket.gethostname()
    out = []
    for doc in _collection().find({"run_state": RUNNING}):
        ours = str(doc.get("operator", "")).startswith(PLUGIN_PREFIX)
        if not ours and not any_operator:
            continue
        reason = _orphan_reason(doc, now, stale_after, host)
        if reason:
            out.append({"doc": doc, "reason": reason})
    return out


def _dataset_of(doc):
    import fiftyone as fo

    row = audit.database().datasets.find_one({"_id": doc.get("dataset_id")}, {"name": 1})
    if row is None or not fo.dataset_exists(row["name"]):
        return None
    ds = fo.load_dataset(row["name"])
    ds.reload()
    return ds


def _params(doc) -> dict:
    ctx = doc.get("context") or {}
    params = (ctx.get("request_params") or {}).get("params") or {}
    return {k: v for k, v in params.items() if k not in ("panel_id", "panel_state")}


def _logged_params(operator_uri: str, params: dict) -> dict:
    """``params`` as the operator's own audit entry keeps them (its ``audit_params``:
    import_dicom logs its input folders as tokens, never their names), so the reaped
    run's entry matches what the worker would have written, and a re-run's entry."""
    try:
        import fiftyone.operators as foo

        keep = getattr(foo.get_operator(operator_uri), "audit_params", None)
        return dict(keep(params)) if keep else dict(params)
    except Exception:
        # without the operator its filter is unknown: log the names, not the values
        return dict.fromkeys(params, "<not logged: operator unavailable>")


def _named_fields(params: dict) -> list[str]:
    out = []
    for k, v in params.items():
        if any(k == key or k.endswith("_" + key) for key in _OUTPUT_KEYS):
            for item in v if isinstance(v, (list, tuple)) else [v]:
                if isinstance(item, str) and item and item not in out:
                    out.append(item)
    return out


def _mark_failed(doc: dict, reason: str) -> bool:
    now = _now()
    message = f"marked failed by multireader reap_orphans: {reason}"
    result = {
        "result": None,
        "executor": None,
        "error": message,
        "error_message": message,
        "delegated": True,
        "validation_ctx": None,
        "outputs_schema": None,
    }
    updated = _collection().find_one_and_update(
        {"_id": doc["_id"], "run_state": RUNNING},
        {"$set": {"run_state": FAILED, "failed_at": now, "updated_at": now, "result": result}},
    )
    return updated is not None


def _rerun(doc_id):
    from fiftyone.factory.repo_factory import RepositoryFactory

    repo = RepositoryFactory.delegated_operation_repo()
    old = repo.get(_id=doc_id)
    return repo.queue_operation(**old.__dict__).id


def reap_orphans(
    stale_after: float | None = None, *, rerun: bool = False, any_operator: bool = False
) -> list[dict]:
    """Mark every orphaned RUNNING operation (:func:`find_orphans`) FAILED, log it in
    the audit log, mark what it half-wrote incomplete; ``rerun`` queues it again.

    Returns one dict per reaped operation: ``id``, ``operator``, ``dataset``,
    ``reason``, ``incomplete`` (fields marked), ``audit_seq`` and ``rerun_id``."""
    out = []
    for orphan in find_orphans(stale_after, any_operator=any_operator):
        doc, reason = orphan["doc"], orphan["reason"]
        if not _mark_failed(doc, reason):
            continue  # it finished or was failed while we looked
        rec = doc.get(WORKER_FIELD) or {}
        params = _params(doc)
        dataset = _dataset_of(doc)
        row = {
            "id": str(doc["_id"]),
            "operator": doc.get("operator"),
            "dataset": dataset.name if dataset is not None else None,
            "reason": reason,
            "incomplete": [],
            "audit_seq": None,
            "rerun_id": None,
        }
        if dataset is not None and str(doc.get("operator", "")).startswith(PLUGIN_PREFIX):
            error = f"WorkerLost: {reason}"
            entry = audit.append(
                dataset,
                str(doc.get("operator", "")).split("/")[-1],
                params=_logged_params(str(doc.get("operator", "")), params),
                status="failed",
                error=error,
                detail={
                    "delegated": True,
                    "operation_id": str(doc["_id"]),
                    "worker": {k: rec.get(k) for k in ("host", "pid")} if rec else None,
                    "reaped_by": worker_identity(),
                },
                user=rec.get("user"),
            )
            before = set(rec.get("fields_before") or [])
            created = [f for f in dataset.get_field_schema() if rec and f not in before]
            row["incomplete"] = audit.mark_incomplete(
                dataset, created + _named_fields(params), entry, error
            )
            row["audit_seq"] = entry["seq"]
        if rerun:
            row["rerun_id"] = str(_rerun(doc["_id"]))
        out.append(row)
    return out
