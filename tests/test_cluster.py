"""A real distributed setup: a MongoDB replica set started here, two `fiftyone delegated
launch` workers as separate OS processes, the SDK in a third process queueing work.

Every operator of a workflow is queued with ``delegate=True`` on one dataset and run
immediately on another made from the same files; the stored results must be equal and
the audit log must hold one entry per run, written by whichever worker ran it. The
fault tests (SIGKILLed workers, a primary restarted mid-run, two users at once) are in
``tests/test_cluster_faults.py``; both modules share the helpers of
``tests/helpers_cluster.py``.
"""

from __future__ import annotations

import json

import pytest
from helpers_cluster import ClusterHandle, client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: a tiny open_clip architecture (as in test_embeddings): a real checkpoint in seconds
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    handle = ClusterHandle(str(tmp_path_factory.mktemp("cluster")), members=1, workers=2)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import open_clip
    import torch

    root = tmp_path_factory.mktemp("tiny_clip")
    cfg = root / "tiny-cluster-clip.json"
    cfg.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(str(cfg))
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-cluster-clip")
    ckpt = root / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    return {"config": str(cfg), "checkpoint": str(ckpt)}


def test_replica_set_is_a_replica_set(cluster):
    status = cluster.mongo.admin.command("replSetGetStatus")
    assert status["set"] == "rs0"
    assert [m["stateStr"] for m in status["members"]] == ["PRIMARY"]
    assert all(m["name"].startswith("127.0.0.1:") for m in status["members"])
    assert len(cluster.workers) == 2
    pids = [w["pid"] for w in cluster.workers]
    assert len(set(pids)) == 2


def test_queued_workflow_equals_immediate_runs(cluster, tiny, tmp_path):
    out = client(cluster, "workflow", data_dir=str(tmp_path / "study"), tiny=tiny, timeout=540)
    try:
        n_a, n_b = out["n_samples"]
        assert n_a == n_b > 0
        # every sample field equal byte for byte (BSON), paths and ids aside
        assert out["samples_equal"], out["sample_fields_differing"]
        assert out["fields"][0] == out["fields"][1]
        assert out["embedding_shape"] == [n_a, 16]
        assert out["embedding_max_abs_diff"] < 1e-5
        # every stored run (agreement, consensus) equal, timings and ids aside
        assert out["runs"][0] == out["runs"][1] and out["runs"][0]
        assert not any(out["run_results_diff"].values()), out["run_results_diff"]
        assert out["freeze"][0] == out["freeze"][1]
        # one run entry per queued run, each delegated and completed, by a worker; the
        # library's own entries (the freeze record) as in the immediate runs
        queued = [q["op"] for q in out["queued"]]
        run_entries = [e for e in out["audit_a"] if e["delegated"] is not None]
        assert [e["action"] for e in run_entries] == queued
        assert all(e["status"] == "completed" and e["delegated"] for e in run_entries)
        assert {e["user"] for e in run_entries} <= {"worker-0", "worker-1"}
        assert [e["action"] for e in out["audit_a"]] == out["audit_b_actions"]
        assert out["verify_a"] and out["verify_b"]
    finally:
        client(cluster, "delete", names=[out["a"], out["b"]])
