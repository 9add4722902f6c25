"""The operators end to end, the way an SDK user and a delegated worker run them.

A small demo study is imported through the plugin's operators (FiftyOne's executor,
not the library functions directly), and every count is checked against what an
independent reading of the files says.
"""

import csv
import os

import pydicom
import pytest
from helpers_plugin import PLUGIN, op


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from multireader.io import demo

    return demo.generate_demo_study(str(tmp_path_factory.mktemp("study")), seed=3, n_series=4)


def _count_frames(dicom_dir):
    """Frames with pixel data in the study, read independently of the importer."""
    n = 0
    for root, _, files in os.walk(dicom_dir):
        for name in files:
            ds = pydicom.dcmread(os.path.join(root, name))
            if "PixelData" in ds and ds.get("Modality") not in ("SEG", "RTSTRUCT", "SR"):
                n += int(ds.get("NumberOfFrames", 1) or 1)
    return n


def test_import_through_operators(study, dataset):
    from multireader.core import fields

    op("declare_label_schema")(dataset, **study.label_schema)
    report = op("import_dicom")(dataset, str(study.dicom_dir))
    assert report["imported"] == _count_frames(study.dicom_dir) == len(dataset)
    assert report["skipped"] == []
    assert dataset.info["dicom_import"]["imported"] == report["imported"]

    again = op("import_dicom")(dataset, str(study.dicom_dir))
    assert again["imported"] == 0 and again["duplicates"] == report["imported"]
    assert len(dataset) == report["imported"]

    result = op("import_reader_labels")(dataset, str(study.reads_csv))
    with open(study.reads_csv) as f:
        rows = list(csv.DictReader(f))
    readers = {r["reader"] for r in rows}
    assert set(result["fields"]) == {fields.reader_field(r) for r in readers}
    assert result["errors"] == []
    for reader in readers:
        field = fields.reader_field(reader)
        expected = {
            f"{r['sop_instance_uid']}:{int(r['frame']) if r.get('frame') else 0}": r["label"]
            for r in rows
            if r["reader"] == reader
        }
        keys, labels = dataset.values([fields.DICOM_KEY, f"{field}.label"])
        got = {k: lab for k, lab in zip(keys, labels, strict=True) if lab is not None}
        assert got == expected, reader
    rendered = op("render_window_presets")(dataset.limit(5), ["bone"])
    assert rendered["rendered"] == 5
    bone = [p for p in dataset.values("filepath_bone") if p]
    assert len(bone) == 5 and all(os.path.isfile(p) for p in bone)
    assert "filepath_bone" in dataset.app_config.media_fields
    found = fields.reader_fields(dataset)
    assert {meta["reader"] for meta in found.values()} == readers


def test_delegated_import_reports_progress(study, dataset):
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionRunState

    op("import_dicom")(dataset, str(study.dicom_dir), delegate=True)
    assert len(dataset) == 0  # queued, not run

    svc = DelegatedOperationService()
    queued = svc.get_queued_operations(operator=f"{PLUGIN}/import_dicom", dataset_name=dataset.name)
    assert len(queued) == 1
    svc.execute_operation(queued[0])
    doc = svc.get(queued[0].id)
    assert doc.run_state == ExecutionRunState.COMPLETED, doc.result
    assert doc.status.progress == pytest.approx(1.0)
    assert doc.status.label
    dataset.reload()
    assert len(dataset) == _count_frames(study.dicom_dir)
    svc.delete_operation(doc.id)


def test_every_demo_label_source_imports_through_the_operator(study, dataset):
    """Boxes, masks, DICOM-SEG and RTSTRUCT of the demo, end to end, with no rejected row."""
    from multireader.core import fields

    op("declare_label_schema")(dataset, **study.label_schema)
    op("import_dicom")(dataset, str(study.dicom_dir))
    sources = [(study.boxes_csv, "auto", None), (study.masks_csv, "auto", None)]
    sources += [(p, "seg", r) for r, p in study.seg_files]
    sources += [(p, "rtstruct", r) for r, p in study.rtstruct_files]
    assert study.seg_files and study.rtstruct_files
    for path, kind, reader in sources:
        result = op("import_reader_labels")(dataset, str(path), kind=kind, reader=reader)
        assert result["errors"] == [], (path, result["errors"][:3])
        assert result["n_labels"] > 0
    for reader, path in study.seg_files + study.rtstruct_files:
        ref = pydicom.dcmread(path, stop_before_pixels=True)
        field = fields.reader_field(reader, "mask")
        # the outlines land on the slices of the series the object refers to
        if ref.Modality == "RTSTRUCT":
            sops = {
                c.ContourImageSequence[0].ReferencedSOPInstanceUID
                for c in ref.ROIContourSequence[0].ContourSequence
            }
        else:
            sops = {
                fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                for fg in ref.PerFrameFunctionalGroupsSequence
            }
        view = dataset.match({fields.SOP_UID: {"$in": sorted(sops)}})
        assert len(view) == len(sops)
        assert all(p is not None for p in view.values(f"{field}.mask_path"))
