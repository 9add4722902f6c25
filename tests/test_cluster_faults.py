"""Faults on a real replica set with real workers (see tests/helpers_cluster.py).

- A worker SIGKILLed halfway through a delegated ``import_dicom`` of a few hundred
  files, and halfway through ``compute_agreement``: the test watches the run's progress
  in its delegated-operation document and kills the worker that document names (its
  process group) as soon as the progress is inside a window well before the run's
  writes end, then checks that the kill did land mid-run. FiftyOne's open-source
  scheduler would leave the run "running" forever;
  ``multireader.lineage.delegated.reap_orphans`` (``./setup.sh cluster reap``) marks
  it failed, logs it, marks what it created incomplete and queues it again; the re-run
  completes on the other worker, with no duplicate sample, no reader field changed
  byte for byte, and the audit chain intact.
- The replica set's only member restarted while an operation runs: the run completes
  or fails with a clear error (never stays "running"), nothing is corrupted, the next
  run works.
- Two users importing reads for different readers into the same dataset at once: both
  land, values and schema, equal to one import of all the reads.
"""

from __future__ import annotations

import time

import pytest
from helpers_cluster import ClusterHandle, client, client_result, client_start, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

USERS = ("worker-0", "worker-1")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    handle = ClusterHandle(str(tmp_path_factory.mktemp("cluster")), members=1, workers=2)
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def two_workers(cluster):
    """Two live workers at the start of every test, whatever the last one killed."""
    for user in USERS:
        if not any(w["user"] == user for w in cluster.workers):
            cluster.start_worker(user)
    yield


@pytest.fixture(scope="module")
def agreement_study(cluster, tmp_path_factory):
    out = client(cluster, "agreement_study", data_dir=str(tmp_path_factory.mktemp("agree")))
    yield out
    client(cluster, "delete", names=[out["name"]])


def _progress(doc) -> float:
    return float(((doc.get("status") or {}).get("progress")) or 0.0)


def _kill_mid_run(cluster, op_id: str, lo: float, hi: float, timeout: float = 240) -> dict:
    """SIGKILL the worker running ``op_id`` as soon as its progress is in [lo, hi).

    The worker is the one whose pid the run recorded in its delegated-operation
    document (``multireader_worker``), so whichever worker claimed the run is the one
    killed. Fails if the run ends or passes ``hi`` before it is seen in the window."""
    deadline = time.time() + timeout
    while True:
        doc = cluster.op(op_id)
        state, prog = doc["run_state"], _progress(doc)
        assert state in ("queued", "running"), f"{op_id} ended ({state}) before the kill"
        assert prog < hi, f"{op_id} passed {hi} ({prog}) before it was seen in [{lo}, {hi})"
        if state == "running" and prog >= lo and doc.get("multireader_worker"):
            break
        assert time.time() < deadline, f"{op_id} never reached progress {lo}"
        time.sleep(0.02)
    worker = cluster.worker_by_pid(doc["multireader_worker"]["pid"])
    cluster.kill_worker(worker)  # SIGKILL to its process group; waits until it is gone
    cluster.workers.remove(worker)
    after = cluster.op(op_id)
    # the kill landed mid-run: the run is still "running", short of ``hi``
    assert after["run_state"] == "running", after["run_state"]
    assert _progress(after) < hi, after.get("status")
    return {**worker, "progress": _progress(after), "label": after["status"].get("label")}


def _reap(cluster, op_id: str, rerun: bool) -> dict:
    # the killed run is still "running" in FiftyOne's queue: nobody else would end it
    time.sleep(1.0)
    assert cluster.op(op_id)["run_state"] == "running"
    reaped = client(cluster, "reap", rerun=rerun)["reaped"]
    (row,) = [r for r in reaped if r["id"] == op_id]
    failed = cluster.op(op_id)
    assert failed["run_state"] == "failed"
    error = failed["result"]["error"]
    assert "worker process" in error and "is gone" in error, error
    return row


def test_worker_killed_mid_import(cluster, tmp_path):
    with cluster.workers_paused():  # claimed only once the test watches the run
        q = client(cluster, "queue_import", data_dir=str(tmp_path / "ct"), n_files=400)
    try:
        # decoding is 0 .. 0.85 of the progress; samples are written after 0.88
        killed = _kill_mid_run(cluster, q["op_id"], lo=0.1, hi=0.7)
        assert killed["label"].startswith("decoded"), killed
        mid = client(cluster, "check", name=q["name"])
        assert mid["n"] < q["n_frames"]  # the run did not get to write its samples
        row = _reap(cluster, q["op_id"], rerun=True)
        # the schema the killed run had declared was marked incomplete
        assert "dicom_key" in row["incomplete"], row
        assert row["audit_seq"] == 0
        rerun = cluster.wait(row["rerun_id"])
        assert rerun["run_state"] == "completed", rerun.get("result")
        assert rerun["multireader_worker"]["user"] != killed["user"]  # the other worker
        out = client(cluster, "check", name=q["name"])
        assert out["n"] == q["n_frames"] == out["n_unique_keys"]  # all there, none twice
        # the failed run's entry, then the re-run's; the chain verifies
        statuses = [(e["action"], e["status"]) for e in out["audit"]["entries"]]
        assert statuses == [("import_dicom", "failed"), ("import_dicom", "completed")]
        assert out["audit"]["entries"][0]["error"].startswith("WorkerLost:")
        assert out["audit"]["entries"][0]["user"] == killed["user"]
        assert out["audit"]["ok"]
        # what the killed run created was marked incomplete; the re-run cleared the mark
        assert out["incomplete"] == {}
    finally:
        client(cluster, "delete", names=[q["name"]])


def test_worker_killed_mid_agreement(cluster, agreement_study):
    name = agreement_study["name"]
    params = {"kinds": ["classification", "mask"], "n_boot": 20000}
    with cluster.workers_paused():
        q = client(cluster, "queue", op_name="compute_agreement", name=name, params=params)
    # classification is 0 .. 0.5, masks 0.5 .. 0.95, per-sample fields are written at 0.95
    killed = _kill_mid_run(cluster, q["op_id"], lo=0.05, hi=0.9)
    mid = client(cluster, "check", name=name)  # before the reap: nothing marked yet
    assert mid["incomplete"] == {}
    row = _reap(cluster, q["op_id"], rerun=False)
    after_reap = client(cluster, "check", name=name)
    # every field the killed run created is marked incomplete, naming the failed entry
    created = sorted(set(after_reap["fields"]) - set(agreement_study["fields"]))
    assert sorted(row["incomplete"]) == sorted(after_reap["incomplete"]) == created
    for info in after_reap["incomplete"].values():
        assert info["audit_seq"] == row["audit_seq"] and "WorkerLost" in info["error"]
    assert "agreement" not in after_reap["runs"]  # killed before it saved its run
    assert after_reap["reader_digest"] == agreement_study["reader_digest"] == mid["reader_digest"]
    failed = after_reap["audit"]["entries"][-1]
    assert (failed["action"], failed["status"], failed["user"]) == (
        "compute_agreement",
        "failed",
        killed["user"],
    )
    assert after_reap["audit"]["ok"]
    # a re-run on the surviving worker completes and clears the marks
    rerun = client(cluster, "queue", op_name="compute_agreement", name=name, params=params)
    done = cluster.wait(rerun["op_id"], timeout=300)
    assert done["run_state"] == "completed", done.get("result")
    assert done["multireader_worker"]["user"] != killed["user"]
    out = client(cluster, "check", name=name)
    assert out["reader_digest"] == agreement_study["reader_digest"]  # byte for byte
    assert out["incomplete"] == {}
    assert "agreement" in out["runs"]
    tail = [(e["action"], e["status"]) for e in out["audit"]["entries"][-2:]]
    assert tail == [("compute_agreement", "failed"), ("compute_agreement", "completed")]
    assert out["audit"]["ok"]


def test_primary_restarted_mid_run(cluster, agreement_study):
    name = agreement_study["name"]
    params = {"kinds": ["classification", "mask"], "n_boot": 20000, "run_key": "agreement_restart"}
    with cluster.workers_paused():
        q = client(cluster, "queue", op_name="compute_agreement", name=name, params=params)
    deadline = time.time() + 120
    while not (cluster.op(q["op_id"]) or {}).get("multireader_worker"):
        assert time.time() < deadline, "the run was never claimed"
        time.sleep(0.02)
    primary = cluster.cluster.wait_primary()
    before = cluster.op(q["op_id"])
    assert before["run_state"] == "running"  # the restart begins while it runs
    cluster.cluster.restart_member(primary, down_s=2.0)
    cluster.cluster.wait_primary()
    doc = cluster.wait(q["op_id"], timeout=300)
    if doc["run_state"] == "failed":
        assert doc["result"]["error"]  # a clear error, not silence
    out = client(cluster, "check", name=name)
    assert out["reader_digest"] == agreement_study["reader_digest"]
    assert out["audit"]["ok"]
    # the next run works
    again = client(cluster, "queue", op_name="compute_agreement", name=name, params=params)
    done = cluster.wait(again["op_id"], timeout=300)
    assert done["run_state"] == "completed", done.get("result")
    out = client(cluster, "check", name=name)
    assert "agreement_restart" in out["runs"] and out["incomplete"] == {}
    assert out["audit"]["ok"]
    # what the test saw, for the README's claim
    print(
        f"primary restart: first run {doc['run_state']}; {(doc.get('result') or {}).get('error')}"
    )


def test_two_users_import_reads_at_once(cluster, tmp_path):
    s = client(cluster, "two_user_study", data_dir=str(tmp_path / "users"))
    try:
        go = str(tmp_path / "go")
        procs = [
            client_start(cluster, "import_reads", user=f"user-{i}", name=s["name"], csv=c,
                         go_file=go)
            for i, c in enumerate(s["csvs"])
        ]  # fmt: skip
        wait_ready(go, len(procs), procs)  # both loaded, waiting
        open(go, "w").close()
        results = [client_result(p, 300) for p in procs]
        # the two imports overlapped
        assert max(r["began"] for r in results) < min(r["ended"] for r in results), results
        got = client(cluster, "reader_values", name=s["name"])
        ref = client(cluster, "reader_values", name=s["ref"])
        # both readers' fields are stored and in the dataset's schema (two processes
        # adding fields to one dataset at once), with the values of one import of all
        assert got["stored_fields"] == ref["stored_fields"]
        assert got["schema_fields"] == ref["schema_fields"]
        assert got["readers"] == ref["readers"] and len(got["readers"]) >= 2
        assert got["values"] == ref["values"]
        assert got["registry"] == ref["registry"]
        assert got["field_info"] == ref["field_info"]
        out = client(cluster, "check", name=s["name"])
        users = [
            e["user"] for e in out["audit"]["entries"] if e["action"] == "import_reader_labels"
        ]
        assert sorted(users) == ["user-0", "user-1"] and out["audit"]["ok"]
    finally:
        client(cluster, "delete", names=[s["name"], s["ref"]])
