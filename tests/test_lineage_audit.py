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


def _ref_dump(c) -> str:
    return json.dumps(c, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _ref_canon(v, base: str = ""):
    """A reference implementation of label hash scheme 2 (docs/DESIGN.md, "Label
    hashes"), written from the rules, on a label as MongoDB extended JSON: what a
    FiftyOne export writes, or ``bson.json_util`` makes of the raw document."""
    if isinstance(v, dict):
        if list(v) == ["$date"]:
            t = dt.datetime.fromisoformat(v["$date"].replace("Z", "+00:00"))
            t = t.astimezone(dt.UTC)
            return {"$date": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"}
        if list(v) == ["$oid"]:
            return v
        out = {}
        for k, x in v.items():
            if k == "id" or (k.startswith("_") and k != "_cls"):
                continue
            if k in ("mask_path", "map_path") and isinstance(x, str):
                path = os.path.join(base, x)  # an export's relative paths
                if os.path.isfile(path):
                    with open(path, "rb") as fh:
                        out[k + "_sha256"] = hashlib.sha256(fh.read()).hexdigest()
                else:
                    out[k + "_sha256"] = "missing"
                continue
            c = _ref_canon(x, base)
            if c is None or c == [] or c == {}:
                continue
            out[k] = c
        key = {"Detections": "detections", "Polylines": "polylines", "Keypoints": "keypoints"}
        key = key.get(out.get("_cls"))
        if key in out:
            out[key] = sorted(out[key], key=_ref_dump)
        return out
    if isinstance(v, list):
        return [_ref_canon(x, base) for x in v]
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


def _ref_hash(label_json, base: str = "") -> str | None:
    if label_json is None:
        return None
    return hashlib.sha256(_ref_dump(_ref_canon(label_json, base)).encode("utf-8")).hexdigest()


def test_label_hash_is_the_content_without_ids():
    import fiftyone as fo

    from multireader.lineage import records as lineage

    a = fo.Classification(label="benign", confidence=0.5)
    b = fo.Classification(label="benign", confidence=0.5)
    # scheme 2: the stored document without ids and empty defaults (tags)
    want = hashlib.sha256(b'{"_cls":"Classification","confidence":0.5,"label":"benign"}')
    assert lineage.label_hash(a) == want.hexdigest() == lineage.label_hash(b)
    assert lineage.label_hash(fo.Classification(label="malignant", confidence=0.5)) != want
    # scheme 1, kept for older freezes: to_dict() as sorted compact JSON without the id
    body = {k: v for k, v in a.to_dict().items() if k != "_id"}
    v1 = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    assert lineage.label_hash(a, scheme=1) == v1.hexdigest() == lineage.label_hash(b, scheme=1)
    with pytest.raises(lineage.LineageError, match="unknown label hash scheme 7"):
        lineage.label_hash(a, scheme=7)


def test_canonical_form_known_bytes():
    from bson import Int64, ObjectId

    from multireader.lineage import canonical

    doc = {
        "_id": ObjectId(),
        "_cls": "Classification",
        "tags": [],
        "attributes": {},
        "label": "bénin",
        "confidence": 1.0,
        "logits": None,
        "x": -0.0,
        "n": Int64(3),
        "f": 0.1,
        "tiny": 1e-07,
        "nan": float("nan"),
        "ok": True,
        "read_at": dt.datetime(2026, 1, 5, 1, 2, 3, 456789),
        "ref": ObjectId("0123456789abcdef01234567"),
        "pts": [[0.5, None], []],
        "note": 'a"b\n',
    }
    want = (
        '{"_cls":"Classification","confidence":1,"f":0.1,"label":"bénin","n":3,"nan":NaN,'
        '"note":"a\\"b\\n","ok":true,"pts":[[0.5,null],[]],"read_at":{"$date":'
        '"2026-01-05T01:02:03.456Z"},"ref":{"$oid":"0123456789abcdef01234567"},'
        '"tiny":1e-07,"x":0}'
    ).encode()
    assert canonical.canonical_bytes(doc) == want
    assert canonical.content_hash(doc) == hashlib.sha256(want).hexdigest()
    # a timezone-aware time is the same instant in UTC
    aware = dt.datetime(2026, 1, 5, 2, 2, 3, 456000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert canonical.canonical({"t": aware}) == {"t": {"$date": "2026-01-05T01:02:03.456Z"}}
    # boxes in another order are the same content; a moved box is not
    box = [{"_cls": "Detection", "label": "a", "bounding_box": [0.1, 0.2, 0.3, 0.4]},
           {"_cls": "Detection", "label": "b", "bounding_box": [0.5, 0.5, 0.1, 0.1]}]  # fmt: skip
    h = canonical.content_hash({"_cls": "Detections", "detections": box})
    assert canonical.content_hash({"_cls": "Detections", "detections": box[::-1]}) == h
    moved = [box[0], {**box[1], "bounding_box": [0.5, 0.5, 0.1, 0.2]}]
    assert canonical.content_hash({"_cls": "Detections", "detections": moved}) != h
    with pytest.raises(canonical.CanonicalError, match=r"label\.bad: a complex value"):
        canonical.content_hash({"_cls": "Classification", "bad": 1j})


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
    db[lineage.ITEMS].update_one({"freeze_id": fid}, {"$set": {"hashes.reader_r1.0": "0" * 64}})
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


def test_frozen_hashes_recompute_from_an_export_and_the_raw_documents(clone, tmp_path):
    """Scheme 2 is reproducible without this code: from a FiftyOne export (media and
    masks copied, so every path differs) and from the raw database documents."""
    import fiftyone as fo
    from bson import json_util

    from multireader.core.fields import reader_fields
    from multireader.lineage import records as lineage

    fields = sorted(reader_fields(clone))
    kinds = {v["kind"] for v in reader_fields(clone).values()}
    assert {"classification", "boxes", "mask"} <= kinds, kinds
    lineage.freeze_training_set(
        clone.view(), "v1", model_name="cnn", model_version="1", label_fields=fields
    )
    header, stored = lineage._load(clone, "v1")
    frozen = stored.as_dict()
    assert len(frozen) == len(clone) and header["hash_scheme"] == 2
    # the record's own hash is over the rows as the reference computes it
    rows = [{"sample_id": i, "hashes": h} for i, h in frozen.items()]
    assert _v1_freeze_hash(header, rows) == header["freeze_hash"]

    export = tmp_path / "export"
    clone.export(export_dir=str(export), dataset_type=fo.types.FiftyOneDataset)
    with open(export / "samples.json", encoding="utf-8") as f:
        exported = json.load(f)["samples"]
    n_masks = 0
    for s in exported:
        sid = s["_id"]["$oid"]
        got = {f: _ref_hash(s.get(f), str(export)) for f in fields}
        assert got == frozen[sid], sid
        for f in fields:
            if isinstance(s.get(f), dict) and "mask_path" in s[f]:
                assert s[f]["mask_path"] != clone[sid][f].mask_path  # copied by the export
                n_masks += 1
    assert n_masks > 0

    opts = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, tz_aware=True)
    for doc in clone._sample_collection.find({}, dict.fromkeys(fields, 1)):
        raw = json.loads(json_util.dumps(doc, json_options=opts))
        assert {f: _ref_hash(raw.get(f)) for f in fields} == frozen[str(doc["_id"])]

    # the public label_hash of FiftyOne's own label objects agrees, sample by sample
    for sample in clone.iter_samples():
        assert {f: lineage.label_hash(sample[f]) for f in fields} == frozen[sample.id]

    # a mask edited in place is a relabel of that mask only
    masks = [f for f, v in reader_fields(clone).items() if v["kind"] == "mask"]
    sid, f = next((i, f) for i in frozen for f in masks if clone[i][f] is not None)
    path = clone[sid][f].mask_path
    with open(path, "r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))
    try:
        out = lineage.verify_training_set(clone, "v1")
    finally:
        with open(path, "r+b") as fh:
            fh.write(first)
    assert [(r["sample_id"], r["field"]) for r in out["relabelled"]] == [(sid, f)]
    assert out["hash_scheme"] == 2 and out["freeze_hash_ok"]


def _v1_hash(label) -> str | None:
    """Scheme 1 as the code before scheme 2 computed it, for class labels."""
    if label is None:
        return None
    body = {
        k: (v.isoformat() if isinstance(v, dt.datetime) else v)
        for k, v in label.to_dict().items()
        if k not in ("_id", "id")
    }
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def _v1_freeze_hash(header: dict, rows: list[dict]) -> str:
    body = {k: header[k] for k in sorted(header) if k not in ("_id", "freeze_hash", "audit_seq")}
    h = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode())
    for r in sorted(rows, key=lambda r: r["sample_id"]):
        h.update(json.dumps([r["sample_id"], r["hashes"]], sort_keys=True).encode())
    return h.hexdigest()


def test_a_scheme_1_freeze_still_verifies(clone):
    """A freeze recorded before scheme 2 (no ``hash_scheme``, scheme-1 hashes) verifies
    with the scheme it was made with, and still catches a relabel."""
    from multireader.core.fields import reader_fields
    from multireader.lineage import records as lineage

    fields = sorted(reader_fields(clone, ["classification"]))
    lineage.freeze_training_set(
        clone.view(), "old", model_name="cnn", model_version="0", label_fields=fields
    )
    # rewrite the record into what the earlier code stored
    db = lineage._db()
    header = db[lineage.FREEZES].find_one({"dataset_id": str(clone._doc.id), "name": "old"})
    header.pop("hash_scheme")
    rows = [
        {"sample_id": sample.id, "hashes": {f: _v1_hash(sample[f]) for f in fields}}
        for sample in clone.iter_samples()
    ]
    db[lineage.ITEMS].delete_many({"freeze_id": header["_id"]})
    db[lineage.ITEMS].insert_many([{"freeze_id": header["_id"], **r} for r in rows])
    header["freeze_hash"] = _v1_freeze_hash(header, rows)
    db[lineage.FREEZES].replace_one({"_id": header["_id"]}, header)

    out = lineage.verify_training_set(clone, "old")
    assert out["ok"] and out["hash_scheme"] == 1, out["counts"]
    ids, r1 = clone.values(["id", fields[0] + ".label"])
    sid = next(i for i, v in zip(ids, r1, strict=True) if v not in (None, "malignant"))
    lineage.revise_label(clone, sid, fields[0], "malignant", reason="re-read")
    out = lineage.verify_training_set(clone, "old")
    assert [(r["sample_id"], r["field"]) for r in out["relabelled"]] == [(sid, fields[0])]
    assert out["relabelled"][0]["current_hash"] == _v1_hash(clone[sid][fields[0]])
    assert out["freeze_hash_ok"] and not out["removed"] and not out["added"]
    # and an edited old row is still caught by the record's own hash
    db[lineage.ITEMS].update_one(
        {"freeze_id": header["_id"], "sample_id": sid}, {"$set": {f"hashes.{fields[1]}": "0"}}
    )
    assert lineage.verify_training_set(clone, "old")["freeze_hash_ok"] is False

    lineage.freeze_training_set(
        clone.view(), "new", model_name="cnn", model_version="1", label_fields=fields
    )
    with pytest.raises(lineage.LineageError, match="scheme 1 and 'new' with scheme 2"):
        lineage.diff_training_sets(clone, "old", "new")


def test_a_label_without_canonical_form_is_named(clone):
    from bson import ObjectId, Regex

    from multireader.core.fields import reader_fields
    from multireader.lineage import records as lineage

    field = sorted(reader_fields(clone, ["classification"]))[0]
    ids, labels = clone.values(["id", field])
    sid = next(i for i, v in zip(ids, labels, strict=True) if v is not None)
    clone._sample_collection.update_one(
        {"_id": ObjectId(sid)}, {"$set": {f"{field}.pattern": Regex("^a")}}
    )
    with pytest.raises(lineage.LineageError, match=rf"sample {sid}: {field}\.pattern: a Regex"):
        lineage.freeze_training_set(
            clone.view(), "x", model_name="m", model_version="1", label_fields=[field]
        )


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
