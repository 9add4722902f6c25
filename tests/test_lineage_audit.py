"""Issue 7 end to end in the real database: the hash-chained audit log (tampering,
concurrent writers, every operator logging, failures), label history, frozen training
sets (freeze, relabel, verify, diff, tamper, delete) and the audit report."""

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import threading

import pytest
from helpers_browser import ROOT, browser_missing
from helpers_plugin import op, raw_reader_docs, run_queued

GENESIS = "0" * 64


def open_text(path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _independent_hash(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k not in ("_id", "hash")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture
def logged(dataset):
    from multireader.lineage import audit
    from multireader.lineage import records as lineage

    yield dataset
    audit.delete_log(dataset)
    lineage.delete_for_dataset(dataset)


@pytest.fixture
def clone(demo_clone):
    from multireader.lineage import audit
    from multireader.lineage import records as lineage

    yield demo_clone
    audit.delete_log(demo_clone)
    lineage.delete_for_dataset(demo_clone)


def _raw(dataset):
    from multireader.lineage import audit

    coll, _ = audit._collections()
    return coll, str(dataset._doc.id)


# --- the chain -------------------------------------------------------------------------


def test_chain_recomputes_independently_and_tampering_is_located(logged):
    from multireader.lineage import audit

    for i in range(6):
        audit.append(logged, "step", params={"i": i, "x": float("nan")}, counts={"n": i})
    rows = audit.entries(logged)
    assert [e["seq"] for e in rows] == list(range(6))
    prev = GENESIS
    for e in rows:
        assert e["prev_hash"] == prev and _independent_hash(e) == e["hash"]
        assert e["params"]["x"] is None  # NaN is stored as null, so the hash is stable
        prev = e["hash"]
    assert audit.verify(logged)["ok"]
    coll, ds_id = _raw(logged)

    # one changed value in one entry: that entry, and only it, is "altered"
    coll.update_one({"dataset_id": ds_id, "seq": 2}, {"$set": {"params.i": 99}})
    v = audit.verify(logged)
    assert not v["ok"] and v["first_break"] == 2
    assert [(p["seq"], p["problem"]) for p in v["problems"]] == [(2, "altered")]
    # rewritten with a fresh own hash: it now passes alone, and the next entry's link breaks
    e2 = coll.find_one({"dataset_id": ds_id, "seq": 2})
    coll.update_one({"_id": e2["_id"]}, {"$set": {"hash": _independent_hash(e2)}})
    v = audit.verify(logged)
    assert [(p["seq"], p["problem"]) for p in v["problems"]] == [(3, "relinked")]
    # a deleted middle entry is "missing"; deleted newest entries are "truncated"
    coll.delete_one({"dataset_id": ds_id, "seq": 4})
    coll.delete_one({"dataset_id": ds_id, "seq": 5})
    kinds = {(p["seq"], p["problem"]) for p in audit.verify(logged)["problems"]}
    assert (4, "truncated") in kinds and (3, "relinked") in kinds


_WRITER = """
import os, sys
sys.path.insert(0, {root!r})
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
import fiftyone as fo
from multireader.lineage import audit
ds = fo.load_dataset({name!r})
for i in range({n}):
    audit.append(ds, "writer", params={{"writer": {w}, "i": i}})
"""


def test_concurrent_writers_lose_nothing(logged):
    from multireader.lineage import audit

    logged.persistent = True  # other processes load it by name
    n, writers = 30, 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER.format(root=ROOT, name=logged.name, n=n, w=w)]
        )
        for w in range(writers)
    ]
    threads = [
        threading.Thread(
            target=lambda t=t: [
                audit.append(logged, "thread", params={"writer": 100 + t, "i": i}) for i in range(n)
            ]
        )
        for t in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.wait(timeout=300) == 0 for p in procs)
    rows = audit.entries(logged)
    total = n * (writers + 2)
    assert [e["seq"] for e in rows] == list(range(total))
    seen = sorted((e["params"]["writer"], e["params"]["i"]) for e in rows)
    want = sorted((w, i) for w in [*range(writers), 100, 101] for i in range(n))
    assert seen == want
    assert audit.verify(logged)["ok"]


# --- every operator logs ---------------------------------------------------------------


def test_every_registered_operator_is_wrapped():
    from operators import OPERATORS

    assert len(OPERATORS) > 20
    for cls in OPERATORS:
        assert getattr(cls.execute, "_multireader_audited", False), cls.__name__


def test_operator_runs_are_logged_with_what_they_wrote(clone, monkeypatch):
    from multireader.lineage import audit

    monkeypatch.setenv(audit.USER_ENV, "dr.auditor")
    op("compute_consensus")(clone, method="majority", run_key="cons_maj")
    (e,) = audit.entries(clone, action="compute_consensus")
    assert e["user"] == "dr.auditor" and e["status"] == "completed"
    assert e["params"]["method"] == "majority" and e["dataset_name"] == clone.name
    assert "consensus_majority" in e["wrote"]["new_fields"]
    assert "cons_maj" in e["wrote"]["new_runs"]
    # typed results declare what they wrote: logged as declared, not guessed from keys
    assert e["wrote"]["outputs_source"] == "declared"
    assert e["wrote"]["outputs"] == {
        "fields": ["consensus_majority"],
        "runs": ["cons_maj"],
        "saved_views": [],
    }
    assert e["wrote"]["named_outputs"] == ["consensus_majority", "cons_maj"]
    assert e["counts"]["n_contested"] == sum(
        bool(c) for c in clone.values("consensus_majority.contested")
    )
    assert e["detail"]["delegated"] is False

    # a delegated run logs when the worker runs it
    op("freeze_training_set")(clone, name="v0", model_name="m", model_version="0", delegate=True)
    assert audit.entries(clone, action="freeze_training_set") == []
    run_queued("freeze_training_set", clone)
    ops = [x for x in audit.entries(clone, action="freeze_training_set") if "detail" in x]
    assert any(x["detail"].get("delegated") for x in ops)
    # an operator without typed results: its outputs are still guessed from key names
    ran = [x for x in ops if "outputs_source" in (x.get("wrote") or {})]
    assert ran and all(x["wrote"]["outputs_source"] == "guessed" for x in ran)
    assert audit.verify(clone)["ok"]


def test_a_failing_operator_is_logged_and_its_half_written_field_marked(clone, monkeypatch):
    from multireader.analyses import agreement as analysis
    from multireader.lineage import audit

    op("compute_consensus")(clone, method="majority")  # a complete consensus first
    names, before = raw_reader_docs(clone)

    def half_then_fail(view, **kw):
        import fiftyone as fo

        # a first write, then...
        view.set_values("consensus_majority", [fo.Classification(label="benign")] * len(view))
        raise RuntimeError("disk full")

    monkeypatch.setattr(analysis, "compute_consensus", half_then_fail)
    with pytest.raises(Exception, match="disk full"):  # the SDK wraps it, message intact
        op("compute_consensus")(clone, method="majority")
    e = audit.entries(clone, action="compute_consensus")[-1]
    assert e["status"] == "failed" and e["error"] == "RuntimeError: disk full"
    clone.reload()
    mark = clone.get_field("consensus_majority").info["multireader"]["incomplete"]
    assert mark["audit_seq"] == e["seq"] and "disk full" in mark["error"]
    assert raw_reader_docs(clone) == (names, before)

    monkeypatch.undo()
    op("compute_consensus")(clone, method="majority")
    clone.reload()
    assert "incomplete" not in (clone.get_field("consensus_majority").info or {}).get(
        "multireader", {}
    )
    assert [x["status"] for x in audit.entries(clone, action="compute_consensus")] == [
        "completed",
        "failed",
        "completed",
    ]


def test_verify_and_export_operators(logged, tmp_path):
    import csv

    from multireader.lineage import audit

    for i in range(3):
        audit.append(logged, "x", params={"i": i})
    out = op("verify_audit_log")(logged)
    assert out["ok"] and out["n_entries"] == 3 and out["verdict"].startswith("Chain verified")
    path = str(tmp_path / "log.json")
    res = op("export_audit_log")(logged, path=path)
    doc = json.loads(open_text(path))
    assert res["path"] == path and doc["verification"]["ok"]
    assert [e["hash"] for e in doc["entries"]][:3] == [e["hash"] for e in audit.entries(logged)][:3]
    audit.export(logged, str(tmp_path / "log.csv"))
    rows = list(csv.DictReader(open_text(tmp_path / "log.csv").splitlines()))
    assert [r["hash"] for r in rows] == [e["hash"] for e in audit.entries(logged)]


# --- label history ---------------------------------------------------------------------


def test_label_hash_is_the_content_without_ids():
    import fiftyone as fo

    from multireader.lineage import records as lineage

    a = fo.Classification(label="benign", confidence=0.5)
    b = fo.Classification(label="benign", confidence=0.5)
    body = {k: v for k, v in a.to_dict().items() if k != "_id"}
    want = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert lineage.label_hash(a) == want == lineage.label_hash(b)
    assert lineage.label_hash(fo.Classification(label="malignant", confidence=0.5)) != want


def test_revisions_keep_every_version_and_reconstruct_the_past(clone):
    from multireader.lineage import audit
    from multireader.lineage import records as lineage

    ids, r2 = clone.values(["id", "reader_r2"])
    sid = next(i for i, v in zip(ids, r2, strict=True) if v is not None and v.label != "malignant")
    original = r2[ids.index(sid)]
    t1 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    t2 = dt.datetime(2030, 6, 1, tzinfo=dt.UTC)
    lineage.revise_label(clone, sid, "reader_r2", "malignant", reason="re-read", time=t1)
    lineage.revise_label(clone, sid, "reader_r2", "suspicious", reason="second opinion", time=t2)
    h = lineage.history(clone, sid, "reader_r2")
    assert [(v["version"], v["kind"]) for v in h] == [
        (0, "original"),
        (1, "revision"),
        (2, "revision"),
    ]
    assert h[0]["label"] == original.to_dict()  # the label as imported, byte for byte
    assert [v["label"]["label"] for v in h] == [original.label, "malignant", "suspicious"]
    assert [v["reason"] for v in h[1:]] == ["re-read", "second opinion"]
    assert clone[sid].reader_r2.label == "suspicious"
    mid = lineage.labels_as_of(clone, "reader_r2", t1 + dt.timedelta(days=1))
    late = lineage.labels_as_of(clone, "reader_r2", t2 + dt.timedelta(days=1))
    assert mid[sid]["label"] == "malignant" and late[sid]["label"] == "suspicious"
    other = next(i for i in ids if i != sid)
    assert mid[other] == (clone[other].reader_r2.to_dict() if clone[other].reader_r2 else None)
    assert [e["action"] for e in audit.entries(clone)].count("revise_label") == 2

    with pytest.raises(lineage.LineageError, match="'nodule' is not in the label schema"):
        lineage.revise_label(clone, sid, "reader_r2", "nodule", reason="x")
    with pytest.raises(lineage.LineageError, match="no sample 'nope'"):
        lineage.revise_label(clone, "nope", "reader_r2", "benign", reason="x")
    with pytest.raises(lineage.LineageError, match="'disagreement' is not a reader field"):
        lineage.revise_label(clone, sid, "disagreement", "benign", reason="x")
    with pytest.raises(lineage.LineageError, match="needs a reason"):
        lineage.revise_label(clone, sid, "reader_r2", "benign", reason=" ")


def test_adjudication_never_touches_reader_fields(clone):
    from multireader.lineage import records as lineage

    names, before = raw_reader_docs(clone)
    sid = clone.first().id
    lineage.adjudicate(clone, sid, "benign", reason="panel meeting", adjudicator="chief")
    assert clone[sid].adjudication.label == "benign"
    assert raw_reader_docs(clone) == (names, before)
    with pytest.raises(lineage.LineageError, match="reader's field"):
        lineage.adjudicate(clone, sid, "benign", reason="x", adjudicator="c", field="reader_r1")


# --- frozen training sets --------------------------------------------------------------


def test_freeze_relabel_verify_diff_tamper_delete(clone):
    import fiftyone as fo

    from multireader.lineage import audit
    from multireader.lineage import records as lineage

    op("compute_consensus")(clone, method="majority")
    h = op("freeze_training_set")(clone, name="v1", model_name="cnn", model_version="1.0")
    assert h["n_samples"] == len(clone) and "consensus_majority" in h["label_fields"]
    assert op("verify_training_set")(clone, name="v1")["ok"]
    header = lineage.load_training_set(clone, "v1")
    assert header["consensus"]["run_key"] == "consensus_majority"
    assert header["consensus"]["method"] == "majority"

    ids = clone.values("id")
    r1 = clone.values("reader_r1.label")
    relabel = [i for i, v in zip(ids, r1, strict=True) if v not in (None, "malignant")][:2]
    for sid in relabel:
        op("revise_label")(clone, sample_id=sid, field="reader_r1", label="malignant", reason="r")
    removed = ids[-1]
    clone.delete_samples([removed])
    new = fo.Sample(filepath=clone.first().filepath)
    clone.add_sample(new)

    out = op("verify_training_set")(clone, name="v1")
    assert not out["ok"] and out["freeze_hash_ok"]
    assert sorted({r["sample_id"] for r in out["relabelled"]}) == sorted(relabel)
    assert {r["field"] for r in out["relabelled"]} == {"reader_r1"}
    assert [r["sample_id"] for r in out["removed"]] == [removed]
    assert [r["sample_id"] for r in out["added"]] == [new.id]

    op("freeze_training_set")(clone, name="v2", model_name="cnn", model_version="1.1")
    d = op("diff_training_sets")(clone, a="v1", b="v2")
    assert [r["sample_id"] for r in d["added"]] == [new.id]
    assert [r["sample_id"] for r in d["removed"]] == [removed]
    assert sorted({r["sample_id"] for r in d["relabelled"]}) == sorted(relabel)

    with pytest.raises(Exception, match="already frozen"):
        op("freeze_training_set")(clone, name="v1", model_name="cnn", model_version="9")

    # tampering with a frozen row is caught by the freeze's own hash
    db = lineage._db()
    fid = db[lineage.FREEZES].find_one({"dataset_id": str(clone._doc.id), "name": "v2"})["_id"]
    db[lineage.ITEMS].update_one({"freeze_id": fid}, {"$set": {"hashes.reader_r1": "0" * 64}})
    assert lineage.verify_training_set(clone, "v2")["freeze_hash_ok"] is False

    with pytest.raises(Exception, match="reason"):
        op("delete_training_set")(clone, name="v1", reason="")
    op("delete_training_set")(clone, name="v1", reason="superseded by v2")
    assert [t["name"] for t in lineage.list_training_sets(clone)] == ["v2"]
    (gone,) = [
        e
        for e in audit.entries(clone, action="delete_training_set")
        if "deleted_header" in e["detail"]
    ]
    assert gone["detail"]["deleted_header"]["freeze_hash"] == header["freeze_hash"]
    assert gone["params"]["reason"] == "superseded by v2"
    assert audit.verify(clone)["ok"]


# --- the audit report ------------------------------------------------------------------


def test_audit_report_content_and_browser(clone, tmp_path):
    import re
    from html.parser import HTMLParser

    import krippendorff
    import numpy as np

    from multireader.core import runs
    from multireader.lineage import report as audit_report
    from multireader.stats.estimates import fmt_ci

    empty = audit_report.build_report(clone)
    assert empty["agreement"]["note"].startswith("Not available: run 'Compute agreement'")
    assert empty["model"]["available"] is False

    op("compute_agreement")(clone, kinds=["classification"], n_boot=100)
    op("compute_consensus")(clone, method="dawid_skene")
    op("freeze_training_set")(clone, name="v1", model_name="cnn", model_version="1")
    out = op("export_audit_report")(clone, path=str(tmp_path / "r.html"))
    html_path, json_path = out["html"], out["json"]
    report = json.loads(open_text(json_path))
    text = open_text(html_path)
    HTMLParser().feed(text)
    for sid, _ in audit_report.SECTIONS:
        assert f"id='{sid}'" in text and sid in report

    stored = runs.load(clone, "agreement")["results"]["kinds"]["classification"]["summary"]
    fleiss = next(o for o in report["agreement"]["overall"] if o["statistic"] == "Fleiss' kappa")
    assert fleiss["value"] == stored["overall"]["fleiss_kappa"]["value"]
    assert fmt_ci(fleiss) in text  # printed as the report formats every estimate
    # a subgroup's nominal alpha from the peer matches ours on the same labels
    sub = report["agreement"]["subgroups"][0]
    assert sub["n"] > 0
    scanners = np.array(clone.values(sub["field"]), dtype=object)
    fields = ["reader_r1", "reader_r2", "reader_r3", "reader_r4"]
    classes = ["benign", "probably_benign", "suspicious", "malignant"]
    m = scanners == sub["group"]
    data = np.array(
        [
            [classes.index(v) if v in classes else np.nan for v in clone.values(f"{f}.label")]
            for f in fields
        ],
        dtype=float,
    )[:, m]
    from multireader.stats import agreement as A

    codes = np.where(np.isnan(data.T), -1, data.T).astype(int)
    ours = A.krippendorff_alpha(np.where(codes < 0, np.nan, codes).astype(float), "nominal")
    assert ours == pytest.approx(
        krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"), abs=1e-9
    )
    assert report["contested"]["n_contested"] == len(
        [s for s in clone.values("majority_share") if s is not None and s < 0.75]
    )
    assert report["training_sets"]["training_sets"][0]["verification"]["ok"] is True
    assert report["audit_log"]["verification"]["ok"] is True
    # self-contained, and no patient identifier anywhere
    assert "<script" not in text and not re.search(r"(src|href)=['\"]https?://", text)
    assert "DEMO^PATIENT" not in text and "DEMO^PATIENT" not in open_text(json_path)

    if browser_missing() is not None:
        pytest.skip(str(browser_missing()))
    import importlib.util

    from playwright.sync_api import sync_playwright

    spec = importlib.util.spec_from_file_location(
        "shot", os.path.join(ROOT, "scripts", "screenshot.py")
    )
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shot.chromium_path(), args=shot.CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        errors = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(f"file://{html_path}")
        for _, title in audit_report.SECTIONS:
            assert page.get_by_role("heading", name=title).is_visible()
        assert page.get_by_text("Hash chain verified", exact=False).first.is_visible()
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []


# --- the audit log panel ---------------------------------------------------------------


def test_audit_log_panel_rows_and_in_chromium(clone, monkeypatch, tmp_path):
    from helpers_browser import app_page

    from multireader.lineage import audit
    from panels.audit_log import rows

    op("compute_consensus")(clone, method="majority")
    op("freeze_training_set")(clone, name="v1", model_name="m", model_version="1")
    v, table = rows(clone)
    entries = audit.entries(clone, newest_first=True)
    assert v["ok"] and [r["seq"] for r in table] == [e["seq"] for e in entries]
    assert [r["action"] for r in table] == [e["action"] for e in entries]
    assert "consensus_majority" in table[-1]["wrote"]
    if browser_missing() is not None:
        pytest.skip(str(browser_missing()))
    clone.persistent = True  # the App server is another process
    with app_page(clone, "audit_log", monkeypatch, failure_shot=tmp_path / "failure.png") as (
        session,
        page,
        shot,
    ):
        page.get_by_text(f"{len(entries)} entries, unbroken", exact=False).first.wait_for()
        shot.dismiss_banners(page)
        assert page.get_by_text("freeze_training_set", exact=True).count() >= 1
        # tampering in the database shows as a broken chain after "Verify again"
        coll, ds_id = _raw(clone)
        coll.update_one({"dataset_id": ds_id, "seq": 0}, {"$set": {"user": "someone else"}})
        page.get_by_role("button", name="Verify again").click()
        page.get_by_text("entry 0 (compute_consensus", exact=False).first.wait_for()
        page.screenshot(path=str(tmp_path / "audit_log_broken.png"))
