"""Data hygiene on real DICOM: no identifier from a folder or file name reaches the
dataset, masks follow the dataset's storage folder, and deleting a study leaves
nothing behind but its archived audit trail."""

from __future__ import annotations

import json
import os
import uuid

import bson
import numpy as np
import pydicom
import pytest
from helpers_dicom import write_ct_study
from helpers_plugin import form, op
from PIL import Image

from multireader.core import fields as F
from multireader.core import schema, storage
from multireader.io import source_paths
from multireader.lineage import audit, deletion

CLASSES = ["benign", "suspicious", "malignant"]
#: what a PACS export put in the names; none of it may reach the database
FORBIDDEN = ("DOE", "JANE", "MRN4711", "_4711", "4711.dcm", "19800101")


@pytest.fixture(autouse=True)
def own_index(tmp_path, monkeypatch):
    """Each test gets its own source-path lookup, so its rows can be counted."""
    monkeypatch.setenv(source_paths.INDEX_ENV, str(tmp_path / "lookup" / "sources.sqlite"))


def _pacs_export(root) -> tuple[object, list[str]]:
    """A CT series under ``DOE^JANE_MRN4711/CT_1/`` whose headers name the patient;
    one file is named after her, and a broken file too (it is skipped)."""
    folder = os.path.join(str(root), "DOE^JANE_MRN4711", "CT_1")
    study = write_ct_study(folder, n_slices=3, n_frames=0)
    files = []
    for i, path in enumerate(study.paths):
        ds = pydicom.dcmread(path)
        ds.PatientName = "DOE^JANE"
        ds.PatientID = "MRN4711"
        ds.PatientBirthDate = "19800101"
        os.remove(path)
        if i == 0:
            path = os.path.join(folder, "DOE_JANE_4711.dcm")
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    study.paths = files
    with open(os.path.join(folder, "DOE_JANE_notes_4711.dcm"), "w") as f:
        f.write("not DICOM")
    return study, files


def _salt() -> bytes:
    from multireader.io import deid

    return deid.load_salt()


def _docs_for(ds_id: str) -> dict[str, list[dict]]:
    """Every raw MongoDB document, in any collection, that refers to the dataset."""
    from bson import ObjectId

    db = audit.database()
    oid = ObjectId(ds_id)
    query = {
        "$or": [
            {"_id": ds_id},
            {"_id": oid},
            {"dataset_id": ds_id},
            {"dataset_id": oid},
            {"_dataset_id": oid},
        ]
    }
    out = {}
    for name in db.list_collection_names():
        if name.startswith("system."):
            continue
        docs = list(db[name].find(query))
        if docs:
            out[name] = docs
    return out


def _scan(docs, where: str) -> None:
    text = json.dumps(docs, default=str)
    for word in FORBIDDEN:
        assert word not in text, f"{word!r} found in {where}"


# --- identifiers in paths -------------------------------------------------------------


def test_no_identifier_from_folder_or_file_names_reaches_the_dataset(dataset_name, tmp_path):
    import fiftyone as fo

    study, files = _pacs_export(tmp_path / "export")
    store = tmp_path / "store"
    rep = op("import_dicom")(
        dataset_name, str(tmp_path / "export"), render_dir=str(store), num_workers=1
    )
    assert rep["imported"] == 3 and len(rep["skipped"]) == 1
    ds = fo.load_dataset(dataset_name)
    ds_id = str(ds._doc.id)

    # the samples, the dataset document (info), the audit log: every raw document
    docs = _docs_for(ds_id)
    samples = list(ds._sample_collection.find())
    assert len(samples) == 3
    _scan(samples, "a sample document")
    assert "datasets" in docs and docs["datasets"][0]["info"]["dicom_import"]["skipped"]
    for name, found in docs.items():
        _scan(found, f"collection {name}")
    assert audit.entries(ds)[-1]["action"] == "import_dicom"
    # renders and native arrays carry no source folder name either
    written = [os.path.join(b, n) for b, _, names in os.walk(store) for n in names]
    assert len(written) == 6
    for path in written:
        assert not any(w in os.path.relpath(path, tmp_path) for w in FORBIDDEN), path
    for column in ds.values(["filepath", F.NATIVE_PATH]):
        assert all(p.startswith(str(store)) for p in column)

    # what is stored: the import root as a token, identifying names as tokens
    stored = ds.values(F.DICOM_PATH)
    assert all(source_paths.is_stored_form(p) for p in stored)
    parts = [p.split("/") for p in stored]
    assert {len(x) for x in parts} == {4}
    assert len({x[0] for x in parts}) == 1 and parts[0][0].startswith("src-")  # the root
    assert {x[1] for x in parts} == {source_paths.token("DOE^JANE_MRN4711", _salt())}
    assert {x[2] for x in parts} == {"CT_1"}  # a name that identifies no one stays
    assert sorted(x[3] for x in parts) == sorted(
        ["ct_01.dcm", "ct_02.dcm", source_paths.token("DOE_JANE_4711", _salt()) + ".dcm"]
    )
    # ... and the local lookup, outside the dataset, opens the real files again
    assert sorted(source_paths.resolve_all(stored)) == sorted(files)
    assert pydicom.dcmread(source_paths.resolve(stored[0])).PatientID == "MRN4711"
    looked_up = source_paths.recorded(ds_id)
    assert "DOE^JANE_MRN4711" in looked_up.values()

    # a reads table naming the real source files still lands (key=path)
    by_sop = dict(zip(ds.values(F.SOP_UID), source_paths.resolve_all(stored), strict=True))
    csv = tmp_path / "reads.csv"
    lines = ["path,reader,label"]
    for i, sop in enumerate(study.sop_uids):
        lines.append(f"{by_sop[sop]},R1,{CLASSES[i % 3]}")
    csv.write_text("\n".join(lines) + "\n")
    schema.declare_label_schema(ds, CLASSES)
    out = op("import_reader_labels")(ds, str(csv), key="path")
    assert out["errors"] == [] and out["n_labels"] == 3
    got = dict(zip(ds.values(F.SOP_UID), ds.values("reader_r1.label"), strict=True))
    assert got == {sop: CLASSES[i % 3] for i, sop in enumerate(study.sop_uids)}


def test_the_audit_log_names_an_input_folder_by_its_token(dataset_name, tmp_path):
    import fiftyone as fo

    _, files = _pacs_export(tmp_path / "export")
    patient = os.path.join(str(tmp_path / "export"), "DOE^JANE_MRN4711")
    op("import_dicom")(dataset_name, patient, render_dir=str(tmp_path / "store"))
    ds = fo.load_dataset(dataset_name)
    (entry,) = audit.entries(ds, action="import_dicom")
    _scan(entry, "the audit entry")
    (logged,) = entry["params"]["inputs"]
    assert logged == source_paths.token(os.path.abspath(patient), _salt(), "src-")
    assert source_paths.resolve(logged) == os.path.abspath(patient)
    assert sorted(source_paths.resolve_all(ds.values(F.DICOM_PATH))) == sorted(files)


def test_include_identifiers_keeps_absolute_paths(dataset, tmp_path):
    from multireader.ingest import importer

    _, files = _pacs_export(tmp_path / "export")
    importer.import_dicom(
        dataset,
        str(tmp_path / "export"),
        render_dir=str(tmp_path / "store"),
        include_identifiers=True,
        num_workers=1,
    )
    assert sorted(dataset.values(F.DICOM_PATH)) == sorted(files)
    assert source_paths.recorded(str(dataset._doc.id)) == {}


@pytest.mark.parametrize(
    "name, identifying",
    [
        ("MRN4711", True),  # a marker word
        ("Smith^John", True),  # a DICOM person-name separator
        ("1980-01-01", True),
        ("scan_19800101.dcm", True),
        ("0012345678", True),  # a long digit run (an MRN, a phone number)
        ("CT_SERIES_2", False),
        ("IM-0001-0123.dcm", False),
        ("1.2.840.113619.2.55.3.604688119.dcm", False),  # a UID is stored anyway
    ],
)
def test_names_that_look_like_identifiers_without_a_header(name, identifying):
    assert source_paths.is_identifying(name) is identifying


def test_header_identifiers_are_matched_in_names():
    ds = pydicom.Dataset()
    ds.PatientName = "Doe^Jane^Q^Mrs"
    ds.PatientID = "MRN4711"
    ds.PatientBirthDate = "19800101"
    terms = source_paths.identifier_terms(ds)
    for name in ("doe_jane", "JaneDoe", "4711", "p-0004711.dcm", "01011980", "jane"):
        assert source_paths.is_identifying(name, terms), name
    # the prefix "Mrs" and short words are no identifier; neither is the series folder
    for name in ("MRS", "CT_1", "series_3", "ct_01.dcm"):
        assert not source_paths.is_identifying(name, terms), name


# --- where files go, and the reader-label form ----------------------------------------


def _mask_manifest(tmp_path, study, readers=("R1", "R2")) -> str:
    rows = ["sop_instance_uid,reader,mask_path"]
    for r, reader in enumerate(readers):
        for i, sop in enumerate(study.sop_uids):
            mask = np.zeros((study.rows, study.columns), np.uint8)
            mask[4 : 12 + r, 5 + i : 20] = 1
            path = tmp_path / "input_masks" / f"{reader}_{i}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(mask).save(path)
            rows.append(f"{sop},{reader},{path}")
    path = tmp_path / "masks.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def _imported(dataset, tmp_path, store):
    from multireader.ingest import importer

    study = write_ct_study(str(tmp_path / "dicom"), n_slices=3, n_frames=0)
    importer.import_dicom(dataset, study.folder, render_dir=str(store), num_workers=1)
    schema.declare_label_schema(dataset, CLASSES, mask_targets={1: "lesion"})
    return study


def test_consensus_masks_follow_the_render_dir(dataset, tmp_path):
    import fiftyone as fo

    store = tmp_path / "elsewhere"
    study = _imported(dataset, tmp_path, store)
    assert storage.storage_dir(dataset) == str(store)
    op("import_reader_labels")(dataset, _mask_manifest(tmp_path, study))
    op("compute_consensus")(dataset, kind="mask", method="majority", output_field="cons_mask")
    paths = [p for p in dataset.values("cons_mask.mask_path") if p]
    assert len(paths) == 3
    assert all(p.startswith(os.path.join(str(store), "consensus", "cons_mask")) for p in paths)
    default = os.path.join(fo.config.default_dataset_dir, "multireader", dataset.name)
    assert not os.path.exists(default)
    # reader masks are written beside the renders too
    r1 = [p for p in dataset.values("reader_r1_mask.mask_path") if p]
    assert all(p.startswith(os.path.join(str(store), "masks")) for p in r1)


def test_import_reader_labels_form_and_sdk_take_key_and_mask_dir(dataset, tmp_path):
    study = _imported(dataset, tmp_path, tmp_path / "store")
    props = form("import_reader_labels", dataset, {"source": "x.csv"})
    assert {"key", "mask_dir"} <= set(props)
    assert set(props["key"]["type"]["values"]) == {
        "sop_instance_uid",
        "series_instance_uid",
        "filepath",
        "path",
    }
    # rows whose first key column is wrong: only key=path makes them land
    rows = ["sop_instance_uid,path,reader,mask_path"]
    for i, path in enumerate(study.paths):
        mask = np.zeros((study.rows, study.columns), np.uint8)
        mask[1:5, i : i + 6] = 1
        png = tmp_path / f"m{i}.png"
        Image.fromarray(mask).save(png)
        rows.append(f"1.2.3.999.{i},{path},R1,{png}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    refused = op("import_reader_labels")(dataset, str(manifest), kind="masks")
    assert len(refused["errors"]) == 3 and refused["n_labels"] == 0
    mine = tmp_path / "my_masks"
    got = op("import_reader_labels")(
        dataset, str(manifest), kind="masks", key="path", mask_dir=str(mine)
    )
    assert got["errors"] == [] and got["n_labels"] == 3
    paths = [p for p in dataset.values("reader_r1_mask.mask_path") if p]
    assert len(paths) == 3 and all(p.startswith(str(mine)) for p in paths)
    sops, masks = dataset.values([F.SOP_UID, "reader_r1_mask.mask_path"])
    by_sop = dict(zip(sops, masks, strict=True))
    for i, sop in enumerate(study.sop_uids):
        assert np.asarray(Image.open(by_sop[sop]))[1:5, i : i + 6].all()


# --- deleting a study ---------------------------------------------------------------


def _files(*roots) -> set[str]:
    """Every file under ``roots``, but the source-path lookup (shared by all datasets
    of a machine; its rows for a study are checked on their own)."""
    out = set()
    index = os.path.abspath(source_paths.index_path())
    for root in roots:
        for base, _, names in os.walk(str(root)):
            out.update(os.path.join(base, n) for n in names)
    return {p for p in out if not os.path.abspath(p).startswith(os.path.dirname(index))}


def test_delete_study_leaves_nothing_behind_and_keeps_the_audit_trail(tmp_path):
    import fiftyone as fo

    name = f"test-mr-del-{uuid.uuid4().hex[:8]}"
    try:
        study, files = _pacs_export(tmp_path / "export")
        reads = tmp_path / "reads.csv"
        reads.write_text(
            "sop_instance_uid,reader,label\n"
            + "".join(
                f"{sop},{r},{CLASSES[(i + k) % 3]}\n"
                for i, sop in enumerate(study.sop_uids)
                for k, r in enumerate(("R1", "R2"))
            )
        )
        manifest = _mask_manifest(tmp_path, study)
        # a file of the user's in the storage folder's masks/: not the plugin's to delete
        keep = tmp_path / "store" / "masks" / "keep_me.png"
        keep.parent.mkdir(parents=True)
        keep.write_bytes(b"mine")
        inputs = _files(tmp_path)  # the user's own files: they stay

        op("import_dicom")(name, str(tmp_path / "export"), render_dir=str(tmp_path / "store"))
        ds = fo.load_dataset(name)
        ds_id = str(ds._doc.id)
        op("declare_label_schema")(ds, classes=CLASSES, mask_targets={"1": "lesion"})
        op("import_reader_labels")(ds, str(reads))
        op("import_reader_labels")(ds, manifest)
        op("compute_agreement")(ds, n_boot=20)
        op("compute_consensus")(ds, method="majority")
        op("compute_consensus")(ds, kind="mask", method="majority")
        sid = ds.first().id
        op("revise_label")(ds, sample_id=sid, field="reader_r2", label="benign", reason="re-read")
        op("freeze_training_set")(ds, name="v0", model_name="m", model_version="1")

        # every file and record the pipeline wrote
        default = storage.default_dir(ds)
        written = _files(tmp_path, default) - inputs
        assert any("/consensus/" in p for p in written)
        assert any("/masks/" in p for p in written)
        assert any(p.endswith(".npy") for p in written)
        before = _docs_for(ds_id)
        assert {
            audit.COLLECTION,
            audit.HEADS,
            "multireader_label_history",
            "multireader_training_sets",
            "runs",
            "datasets",
        } <= set(before)
        n_entries = len(before[audit.COLLECTION])
        assert source_paths.recorded(ds_id)
        sample_coll = ds._sample_collection_name

        with pytest.raises(Exception, match="reason"):
            op("delete_study")(ds, reason="  ")
        assert fo.dataset_exists(name)
        n_entries += 1  # the refused attempt is logged as failed
        assert audit.entries(ds)[-1]["status"] == "failed"
        tomb = op("delete_study")(ds, reason="consent withdrawn")

        assert not fo.dataset_exists(name)
        assert tomb["n_audit_entries"] == n_entries + 1
        left = {p for p in written if os.path.exists(p)}
        assert left == set(), sorted(left)[:5]
        assert _files(tmp_path / "store") == {str(keep)}
        assert os.listdir(tmp_path / "store") == ["masks"]  # empty folders pruned
        assert os.listdir(tmp_path / "store" / "masks") == ["keep_me.png"]
        assert _files(tmp_path) == inputs  # the sources and label files stay
        db = audit.database()
        assert sample_coll not in db.list_collection_names()
        after = _docs_for(ds_id)
        assert set(after) <= {deletion.TOMBSTONES, deletion.ARCHIVE}, set(after)
        assert source_paths.recorded(ds_id) == {}

        # the trail survives outside the deleted data, verifies and exports
        check = deletion.verify_archived_audit(name)
        assert check["ok"] and check["n_entries"] == n_entries + 1
        out = deletion.export_archived_audit(ds_id, str(tmp_path / "trail" / "audit.json"))
        with open(out) as f:
            exported = json.load(f)
        actions = [e["action"] for e in exported["entries"]]
        assert actions[0] == "import_dicom" and actions[-1] == "delete_study"
        assert exported["entries"][-1]["params"]["reason"] == "consent withdrawn"
        assert exported["verification"]["ok"]
        assert exported["tombstone"]["reason"] == "consent withdrawn"
        _scan(exported, "the exported trail")
        assert any(t["dataset_id"] == ds_id for t in deletion.deleted_studies())

        # tampering with the archive is caught
        db[deletion.ARCHIVE].update_one(
            {"dataset_id": ds_id, "seq": 1}, {"$set": {"user": "someone else"}}
        )
        assert not deletion.verify_archived_audit(ds_id)["ok"]
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
        if "ds_id" in locals():
            db = audit.database()
            db[deletion.TOMBSTONES].delete_many({"_id": ds_id})
            db[deletion.ARCHIVE].delete_many({"dataset_id": ds_id})


def test_deleting_a_clone_keeps_the_files_the_original_uses(dataset, tmp_path):
    _imported(dataset, tmp_path, tmp_path / "store")
    clone = dataset.clone(f"{dataset.name}-clone")
    try:
        todo = deletion.plan(clone)
        assert todo["shared_with"] == [dataset.name] and todo["folders"] == []
        deletion.delete_study(clone, reason="a scratch copy")
        assert all(os.path.exists(p) for p in dataset.values("filepath"))
        assert all(os.path.exists(p) for p in dataset.values(F.NATIVE_PATH))
    finally:
        import fiftyone as fo

        if fo.dataset_exists(f"{dataset.name}-clone"):
            fo.delete_dataset(f"{dataset.name}-clone")
        db = audit.database()
        db[deletion.TOMBSTONES].delete_many({"dataset": f"{dataset.name}-clone"})


def test_stored_paths_are_bson_safe():
    # a stored path is an ordinary string: nothing in it needs escaping in MongoDB
    value = "src-0123456789abcdef/id-0123456789abcdef/CT_1/id-fedcba9876543210.dcm"
    assert bson.decode(bson.encode({"p": value}))["p"] == value
    assert source_paths.is_stored_form(value)
