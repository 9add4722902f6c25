"""A real replica set and real `fiftyone delegated launch` workers for the tests.

The replica set and the workers are started by :class:`scripts.cluster.Cluster` (the
same code ``./setup.sh cluster`` runs): the bundled ``mongod`` 6.0.5 with
``--replSet rs0 --bind_ip 127.0.0.1`` on a free loopback port, its own data
directory, ``replSetInitiate`` through pymongo, then worker processes, each in its own
session so a SIGKILL to its process group takes its decoding pool with it.

FiftyOne's database connection is process-global and the rest of the suite uses the
embedded database, so everything that needs FiftyOne *on the cluster* runs in a
subprocess: :func:`client` runs one of this module's ``client_*`` functions with the
cluster's environment and returns its JSON result. The test process itself watches the
queue with plain pymongo (:meth:`ClusterHandle.op`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from cluster import Cluster  # noqa: E402

PLUGIN = "@multireader/disagreement"
#: heartbeat of the workers' runs in the tests (seconds)
HEARTBEAT_S = "1"


class ClusterHandle:
    """A started cluster plus a pymongo view of its FiftyOne database."""

    def __init__(self, directory: str, members: int = 1, workers: int = 2):
        import pymongo

        self.cluster = Cluster(directory, database_name=f"mrcluster{uuid.uuid4().hex[:8]}")
        self.cluster.extra_env = {"MULTIREADER_HEARTBEAT_S": HEARTBEAT_S}
        self.cluster.start_replica_set(members)
        for i in range(workers):
            self.start_worker(f"worker-{i}")
        self.mongo = pymongo.MongoClient(self.cluster.uri, serverSelectionTimeoutMS=30000)
        self.db = self.mongo[self.cluster.database_name]

    def env(self, **extra) -> dict:
        return self.cluster.env(PYTHONPATH=ROOT, **extra)

    def start_worker(self, user: str) -> dict:
        return self.cluster.start_worker(user)

    @property
    def workers(self) -> list[dict]:
        return self.cluster.workers

    def kill_worker(self, worker: dict) -> None:
        self.cluster.kill_worker(worker)

    @contextlib.contextmanager
    def workers_paused(self):
        """SIGSTOP every worker (its process group) for the block, SIGCONT after: work
        queued in the block is claimed only once the test watches it."""
        groups = [w["pid"] for w in self.workers]
        for pid in groups:
            os.killpg(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in groups:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGCONT)

    def worker_by_pid(self, pid: int) -> dict:
        return next(w for w in self.workers if w["pid"] == pid)

    def op(self, op_id: str) -> dict:
        from bson import ObjectId

        return self.db.delegated_ops.find_one({"_id": ObjectId(op_id)})

    def wait(self, op_id: str, states=("completed", "failed"), timeout: float = 240) -> dict:
        deadline = time.time() + timeout
        doc = None
        while time.time() < deadline:
            doc = self.op(op_id)
            if doc and doc["run_state"] in states:
                return doc
            time.sleep(0.2)
        raise AssertionError(
            f"operation {op_id} still {doc and doc['run_state']} after {timeout} s"
        )

    def wait_progress(self, op_id: str, at_least: float, timeout: float = 240) -> dict:
        """Wait until the op runs with progress >= ``at_least`` (fails if it ends first)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            doc = self.op(op_id)
            state = doc["run_state"]
            if state in ("completed", "failed"):
                raise AssertionError(f"{op_id} ended ({state}) before reaching {at_least}")
            prog = ((doc.get("status") or {}).get("progress")) or 0.0
            if state == "running" and prog >= at_least and doc.get("multireader_worker"):
                return doc
            time.sleep(0.05)
        raise AssertionError(f"{op_id} did not reach progress {at_least} in {timeout} s")

    def worker_logs(self) -> str:
        out = []
        for w in self.workers:
            try:
                with open(w["log"], errors="replace") as f:
                    out.append(f"--- {w['log']}\n" + f.read()[-3000:])
            except OSError:
                pass
        return "\n".join(out)

    def stop(self):
        proc = getattr(self, "_client", None)
        if proc is not None and proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.mongo.close()
        self.cluster.stop()


def client(handle: ClusterHandle, func: str, timeout: float = 300, **kwargs):
    """Run ``client_<func>(**kwargs)`` in the handle's FiftyOne process on the cluster
    (one long-lived process, started on first use: each new one costs seconds)."""
    proc = getattr(handle, "_client", None)
    if proc is None or proc.poll() is not None:
        log = open(os.path.join(handle.cluster.dir, "client.log"), "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "serve", "{}"],
            env=handle.env(MULTIREADER_AUDIT_USER="sdk-user"),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        handle._client = proc
    proc.stdin.write(json.dumps({"func": func, "kwargs": kwargs}) + "\n")
    proc.stdin.flush()
    while True:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"the client process exited (rc {proc.wait(10)}); see client.log")
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
        if line.startswith("ERROR "):
            raise AssertionError(f"client_{func} failed:\n{json.loads(line[len('ERROR ') :])}")


def client_serve() -> None:
    """Run ``client_*`` calls read from stdin (one JSON object a line) until EOF."""
    import traceback

    for line in sys.stdin:
        call = json.loads(line)
        try:
            result = globals()[f"client_{call['func']}"](**call["kwargs"])
            print("RESULT " + json.dumps(result, default=str), flush=True)
        except Exception:
            print("ERROR " + json.dumps(traceback.format_exc()), flush=True)


def client_start(handle: ClusterHandle, func: str, user: str = "sdk-user", **kwargs):
    argv = [sys.executable, os.path.abspath(__file__), func, json.dumps(kwargs)]
    env = handle.env(MULTIREADER_AUDIT_USER=user)
    return subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_ready(go_file: str, n: int, procs=(), timeout: float = 180) -> None:
    """Wait until ``n`` clients said they are ready (see :func:`client_import_reads`)."""
    import glob

    deadline = time.time() + timeout
    while len(glob.glob(go_file + ".*.ready")) < n:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise AssertionError(
                f"client exited (rc {dead[0].returncode}): {dead[0].stderr.read()[-4000:]}"
            )
        if time.time() > deadline:
            raise AssertionError(f"clients not ready after {timeout} s")
        time.sleep(0.05)


def client_result(proc, timeout: float = 300):
    out, err = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"client failed (rc {proc.returncode}):\n{err[-6000:]}\n{out[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


# --- what runs inside the client process (FiftyOne on the cluster) -------------------
def _op(name):
    import fiftyone.operators as foo

    return foo.get_operator(f"{PLUGIN}/{name}")


def _wait_ops(op_ids, timeout=240):
    from bson import ObjectId
    from fiftyone.operators.delegated import DelegatedOperationService

    svc = DelegatedOperationService()
    deadline = time.time() + timeout
    while time.time() < deadline:
        docs = [svc.get(ObjectId(i)) for i in op_ids]
        if all(d.run_state in ("completed", "failed") for d in docs):
            return docs
        time.sleep(0.25)
    raise TimeoutError(f"operations still running after {timeout} s: {op_ids}")


def _queue(op_name, *args, **kwargs) -> str:
    queued = _op(op_name)(*args, **kwargs, delegate=True)  # the queued operation's __dict__
    return str(queued["id"] if isinstance(queued, dict) else queued.id)


VOLATILE = {
    "seconds",
    "duration_s",
    "time",
    "at",
    "timestamp",
    "created_at",
    "frozen_at",
    "dataset",
    "dataset_name",
    "dataset_id",
    "history",
    "images_per_s",
    "timings",
    # a freeze's who/when and the hash over them
    "user",
    "created",
    "run_created_at",
    "freeze_hash",
}


def normalise(obj):
    """A result with what differs between two datasets by nature taken out: timings,
    dataset names and ids, sample ids (24 hex digits)."""
    import re

    if isinstance(obj, dict):
        return {k: normalise(v) for k, v in sorted(obj.items()) if k not in VOLATILE}
    if isinstance(obj, (list, tuple)):
        return [normalise(v) for v in obj]
    if isinstance(obj, str) and re.fullmatch(r"[0-9a-f]{24}", obj):
        return "<id>"
    if isinstance(obj, float):
        return round(obj, 9)
    return obj


def diff_paths(x, y, path="", out=None, limit=8):
    """Where two JSON-like values differ (the first ``limit`` paths)."""
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y)):
            diff_paths(x.get(k), y.get(k), f"{path}/{k}", out, limit)
    elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (a, b) in enumerate(zip(x, y, strict=True)):
            diff_paths(a, b, f"{path}[{i}]", out, limit)
    elif x != y:
        out.append(f"{path}: {str(x)[:80]} != {str(y)[:80]}")
    return out


def _sample_docs(ds, skip=()):
    """Raw sample documents by dicom_key, without ids, timestamps, paths and ``skip``."""
    import bson

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if k != "_id"}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    out = {}
    for doc in ds._sample_collection.find({}).sort("dicom_key", 1):
        body = {
            k: clean(v)
            for k, v in doc.items()
            if k not in ("_id", "_rand", "_dataset_id", "created_at", "last_modified_at", *skip)
            and not k.startswith("filepath")
            and not k.endswith("_path")
            and k != "_media_type"
        }
        out[doc["dicom_key"]] = {k: bson.encode({"v": v}).hex() for k, v in body.items()}
    return out


def client_workflow(data_dir: str, tiny: dict) -> dict:
    """Queue every operator on dataset A, run each immediately on B, compare."""
    import fiftyone as fo
    import numpy as np
    import open_clip

    from multireader.core import runs
    from multireader.core.schema import declare_label_schema
    from multireader.io import demo
    from multireader.lineage import audit, records

    open_clip.add_model_config(tiny["config"])
    study = demo.generate_demo_study(data_dir, seed=3, n_series=3, image_size=64)
    tag = uuid.uuid4().hex[:8]
    a, b = f"cl-delegated-{tag}", f"cl-immediate-{tag}"
    out = {"a": a, "b": b, "queued": []}

    def both(op_name, *args, **kwargs):
        """Queue on A; run on B meanwhile; wait for A's run."""
        ds_a, ds_b = fo.load_dataset(a), fo.load_dataset(b)
        op_id = _queue(op_name, ds_a, *args, **kwargs)
        out["queued"].append({"op": op_name, "id": op_id})
        _op(op_name)(ds_b, *args, **kwargs)
        (doc,) = _wait_ops([op_id])
        if doc.run_state != "completed":
            raise AssertionError(f"{op_name} failed on the worker: {doc.result}")
        return doc

    # import_dicom creates the dataset by name; the schema goes in first, on both
    import_dicom = _op("import_dicom")
    op_id = _queue("import_dicom", a, study.dicom_dir, num_workers=1)
    out["queued"].append({"op": "import_dicom", "id": op_id})
    import_dicom(b, study.dicom_dir, num_workers=1)
    (doc,) = _wait_ops([op_id])
    assert doc.run_state == "completed", doc.result
    for name in (a, b):
        declare_label_schema(fo.load_dataset(name), **study.label_schema)
    both("import_reader_labels", str(study.reads_csv))
    both("import_reader_labels", str(study.boxes_csv))
    both("compute_agreement", kinds=["classification", "boxes"], n_boot=50)
    both("compute_consensus", kind="classification")
    both(
        "compute_embeddings",
        model=tiny["config"],
        pretrained=tiny["checkpoint"],
        field="embedding_tiny",
        num_workers=1,
    )
    both(
        "freeze_training_set",
        name="v1",
        model_name="nodule-net",
        model_version="1.0",
    )

    ds_a, ds_b = fo.load_dataset(a), fo.load_dataset(b)
    ds_a.reload()
    ds_b.reload()
    emb_a = np.array(ds_a.sort_by("dicom_key").values("embedding_tiny"), dtype=float)
    emb_b = np.array(ds_b.sort_by("dicom_key").values("embedding_tiny"), dtype=float)
    out["n_samples"] = [len(ds_a), len(ds_b)]
    out["embedding_max_abs_diff"] = float(np.max(np.abs(emb_a - emb_b)))
    out["embedding_shape"] = list(emb_a.shape)
    docs_a = _sample_docs(ds_a, skip=("embedding_tiny",))
    docs_b = _sample_docs(ds_b, skip=("embedding_tiny",))
    out["samples_equal"] = docs_a == docs_b
    out["sample_fields_differing"] = sorted(
        {
            f
            for k in docs_a
            for f in set(docs_a[k]) | set(docs_b.get(k, {}))
            if docs_a[k].get(f) != docs_b.get(k, {}).get(f)
        }
    )
    out["fields"] = [sorted(ds_a.get_field_schema()), sorted(ds_b.get_field_schema())]
    out["runs"] = [sorted(runs.list_runs(ds_a)), sorted(runs.list_runs(ds_b))]
    out["run_results_diff"] = {
        key: diff_paths(
            normalise(runs.load(ds_a, key)["results"]), normalise(runs.load(ds_b, key)["results"])
        )
        for key in runs.list_runs(ds_a)
    }
    fa = records.load_training_set(ds_a, "v1")
    fb = records.load_training_set(ds_b, "v1")
    out["freeze"] = [normalise(fa), normalise(fb)]
    out["audit_a"] = [
        {
            "action": e["action"],
            "status": e["status"],
            "user": e["user"],
            "delegated": e["detail"].get("delegated"),
        }
        for e in audit.entries(ds_a)
    ]
    out["audit_b_actions"] = [e["action"] for e in audit.entries(ds_b)]
    out["verify_a"] = audit.verify(ds_a)["ok"]
    out["verify_b"] = audit.verify(ds_b)["ok"]
    return out


def client_delete(names: list[str]) -> dict:
    import fiftyone as fo
    from fiftyone.operators.delegated import DelegatedOperationService

    svc = DelegatedOperationService()
    for name in names:
        for op in svc.list_operations(dataset_name=name):
            svc.delete_operation(op.id)
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
    return {"deleted": names}


def main() -> None:
    func, kwargs = sys.argv[1], json.loads(sys.argv[2])
    sys.path.insert(0, ROOT)
    import fiftyone as fo

    fo.config.plugins_dir = ROOT
    if func == "serve":
        client_serve()
        return
    result = globals()[f"client_{func}"](**kwargs)
    print("RESULT " + json.dumps(result, default=str), flush=True)


# --- fault tests: client side ---------------------------------------------------------
def _reader_digest(ds) -> str:
    """SHA-256 over every reader field of every sample as stored (BSON)."""
    import hashlib

    import bson

    from multireader.core import fields

    names = sorted(fields.reader_fields(ds))
    h = hashlib.sha256(json.dumps(names).encode())
    for doc in ds._sample_collection.find({}, dict.fromkeys(names, 1)).sort("_id", 1):
        h.update(bson.encode({"_id": doc["_id"], **{n: doc.get(n) for n in names}}))
    return h.hexdigest()


def _incomplete(ds) -> dict:
    ds.reload()
    out = {}
    for name, field in ds.get_field_schema().items():
        meta = (field.info or {}).get("multireader") or {}
        if "incomplete" in meta:
            out[name] = meta["incomplete"]
    return out


def _audit_summary(ds) -> dict:
    from multireader.lineage import audit

    return {
        "entries": [
            {"action": e["action"], "status": e["status"], "error": e["error"], "user": e["user"]}
            for e in audit.entries(ds)
        ],
        "ok": audit.verify(ds)["ok"],
    }


def client_queue_import(data_dir: str, n_files: int) -> dict:
    """A few hundred small CT files, a dataset, and a delegated import of them."""
    sys.path.insert(0, HERE)
    from helpers_dicom import write_ct_study

    study = write_ct_study(data_dir, n_slices=n_files, rows=64, columns=64, n_frames=2)
    name = f"cl-kill-import-{uuid.uuid4().hex[:8]}"
    op_id = _queue("import_dicom", name, data_dir, num_workers=1)
    return {"name": name, "op_id": op_id, "n_frames": len(study.paths) + study.n_frames}


def client_reap(rerun: bool = False) -> dict:
    from multireader.lineage import delegated

    return {"reaped": delegated.reap_orphans(rerun=rerun)}


def client_check(name: str) -> dict:
    import fiftyone as fo

    ds = fo.load_dataset(name)
    ds.reload()
    keys = ds.values("dicom_key") if "dicom_key" in ds.get_field_schema() else []
    return {
        "n": len(ds),
        "n_unique_keys": len(set(keys)),
        "incomplete": _incomplete(ds),
        "audit": _audit_summary(ds),
        "reader_digest": _reader_digest(ds),
        "fields": sorted(ds.get_field_schema()),
        "runs": sorted(ds.list_runs()),
    }


def client_agreement_study(data_dir: str) -> dict:
    """The demo study imported with its reads (immediately), for agreement runs."""
    import fiftyone as fo

    from multireader.core.schema import declare_label_schema
    from multireader.io import demo

    study = demo.generate_demo_study(data_dir, seed=5, n_series=3, image_size=64)
    name = f"cl-agree-{uuid.uuid4().hex[:8]}"
    _op("import_dicom")(name, study.dicom_dir, num_workers=1)
    ds = fo.load_dataset(name)
    declare_label_schema(ds, **study.label_schema)
    _op("import_reader_labels")(ds, str(study.reads_csv))
    _op("import_reader_labels")(ds, str(study.masks_csv))
    ds.reload()
    return {
        "name": name,
        "reader_digest": _reader_digest(ds),
        "fields": sorted(ds.get_field_schema()),
    }


def client_queue(op_name: str, name: str, params: dict) -> dict:
    import fiftyone as fo

    return {"op_id": _queue(op_name, fo.load_dataset(name), **params)}


def client_import_reads(name: str, csv: str, go_file: str) -> dict:
    """One user's immediate import of reads: loads everything, says it is ready, waits
    until ``go_file`` exists (the test creates it when every user is ready), imports."""
    import fiftyone as fo

    ds = fo.load_dataset(name)
    op = _op("import_reader_labels")
    with open(f"{go_file}.{os.getpid()}.ready", "w"):
        pass
    deadline = time.time() + 120
    while not os.path.exists(go_file) and time.time() < deadline:
        time.sleep(0.005)
    began = time.time()
    return {"result": op(ds, csv), "began": began, "ended": time.time()}


def client_reader_values(name: str) -> dict:
    import fiftyone as fo

    from multireader.core import fields

    ds = fo.load_dataset(name)
    ds.reload()
    readers = sorted(fields.reader_fields(ds))
    ds_sorted = ds.sort_by("dicom_key")
    # what is stored, whether the dataset's schema knows it or not
    raw = set()
    for doc in ds._sample_collection.find({}, {"_id": 0}):
        raw.update(doc)
    return {
        "readers": readers,
        "values": {r: ds_sorted.values(f"{r}.label") for r in readers},
        "stored_fields": sorted(raw),
        "schema_fields": sorted(ds.get_field_schema()),
        # the plugin's reader registry in the dataset's info
        "registry": (ds.info or {}).get("multireader", {}).get("readers"),
        "field_info": {r: ds.get_field(r).info for r in readers},
        "n_samples": len(ds),
    }


def client_two_user_study(data_dir: str) -> dict:
    """A study without reads, its clone, and the reads split by reader into two files."""
    import csv

    import fiftyone as fo

    from multireader.core.schema import declare_label_schema
    from multireader.io import demo

    study = demo.generate_demo_study(data_dir, seed=7, n_series=3, image_size=64)
    name = f"cl-users-{uuid.uuid4().hex[:8]}"
    _op("import_dicom")(name, study.dicom_dir, num_workers=1)
    ds = fo.load_dataset(name)
    declare_label_schema(ds, **study.label_schema)
    ref = ds.clone(f"{name}-ref", persistent=True)
    with open(study.reads_csv, newline="") as f:
        rows = list(csv.DictReader(f))
        columns = list(rows[0])
    readers = sorted({r["reader"] for r in rows})
    half = len(readers) // 2
    parts = [readers[:half], readers[half:]]
    paths = []
    for i, part in enumerate(parts):
        path = os.path.join(data_dir, f"reads_user{i}.csv")
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, columns)
            w.writeheader()
            w.writerows(r for r in rows if r["reader"] in part)
        paths.append(path)
    _op("import_reader_labels")(ref, str(study.reads_csv))
    return {"name": name, "ref": ref.name, "csvs": paths, "readers": parts}


if __name__ == "__main__":
    main()
