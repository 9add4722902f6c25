"""The README's main job, `./setup.sh demo`, short of opening the App."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_builds_the_study_through_every_operator(dataset_name, tmp_path):
    import fiftyone as fo

    from multireader.core import fields

    env = {**os.environ, "FIFTYONE_PLUGINS_DIR": ROOT}
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "demo.py"), "--no-app"]
    cmd += ["--dataset", dataset_name, "--data-dir", str(tmp_path / "demo")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rows rejected" in out.stdout and "skipped 0" in out.stdout
    dataset = fo.load_dataset(dataset_name)
    assert len(dataset) == 336
    readers = fields.reader_fields(dataset)
    assert {m["reader"] for m in readers.values()} == {"R1", "R2", "R3", "R4"}
    kinds = {"classification", "boxes", "mask", "measurements"}
    assert {m["kind"] for m in readers.values()} == kinds
    # the App opens on this: readers first in the sidebar, volumes saved
    assert dataset.app_config.sidebar_groups[1].name == "readers"
    assert fields.VOLUME_VIEW in dataset.list_saved_views()
    # nothing was rejected on the way
    for line in out.stdout.splitlines():
        if "rows rejected" in line:
            assert line.rstrip().endswith("; 0 rows rejected"), line
    # the label-error pipeline ran: the queue is saved, the evaluation stored, and the
    # planted errors of R4 top its ranking (the bar: precision@k >= 0.8)
    assert "label_error_queue" in dataset.list_saved_views()
    assert "model_evaluation" in dataset.list_runs()
    check = next(line for line in out.stdout.splitlines() if "truth check" in line)
    assert float(check.rsplit("= ", 1)[1].rstrip(")")) >= 0.8, check
    # lineage and audit: the freeze catches the revision, the chain holds, the report
    # is written
    assert "1 relabelled, 0 removed, 0 added since the freeze" in out.stdout
    assert "Chain verified:" in out.stdout
    # the two planted lesion-level readers are found (truth.json: planted.boundary_reader,
    # planted.missing_reader)
    flagged = {
        line.split(":")[0].strip(): line
        for line in out.stdout.splitlines()
        if "lesions, found" in line and "FLAG" in line
    }
    assert "larger volumes" in flagged.get("R2", ""), out.stdout[-4000:]
    assert "misses small lesions" in flagged.get("R3", ""), out.stdout[-4000:]
    assert (
        "lesions" in dataset.get_field_schema()
        and "lesion_disagreement" in dataset.get_field_schema()
    )
    # the two planted RECIST problems are found (truth.json: planted.recist_flip_patient,
    # planted.recist_drift_reader): the flip patient is discordant, the drift reader flagged
    recist = next(line for line in out.stdout.splitlines() if "flip patient" in line)
    assert recist.strip().endswith("discordant: True; drift reader R3 flagged: True"), recist
    assert any(line.strip().startswith("DRIFT R3 (by_session)") for line in out.stdout.splitlines())
    assert "DISCORDANT patient" in out.stdout
    measured = fields.reader_fields(dataset, kinds=["measurements"])
    assert {m["reader"] for m in measured.values()} == {"R1", "R2", "R3", "R4"}
    assert "recist" in dataset.list_runs() and "recist_discordant" in dataset.get_field_schema()
    assert os.path.exists(tmp_path / "demo" / "audit_report.html")
    from multireader.lineage import audit
    from multireader.lineage import records as lineage

    assert audit.verify(dataset)["ok"]
    assert [t["name"] for t in lineage.list_training_sets(dataset)] == ["demo_v1"]
    lineage.delete_for_dataset(dataset)
    audit.delete_log(dataset)
