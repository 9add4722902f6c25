"""The demo study: valid DICOM, the documented formats, and each planted problem
measurable from the reads against truth.json with plain numpy."""

import csv
import json
import os

import numpy as np
import pydicom
import pytest

from multireader import demo


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return demo.generate_demo_study(str(tmp_path_factory.mktemp("demo")), seed=0)


@pytest.fixture(scope="module")
def truth(study):
    with open(study.truth_path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def reads(study):
    with open(study.reads_csv) as f:
        return list(csv.DictReader(f))


def _files(study):
    return [os.path.join(r, n) for r, _, names in os.walk(study.dicom_dir) for n in names]


def test_real_ct_dicom_in_hounsfield_units(study, truth):
    files = _files(study)
    assert len(files) >= 300
    makers, patients = set(), set()
    for path in files[:40]:
        ds = pydicom.dcmread(path)
        assert (
            ds.file_meta.TransferSyntaxUID
            and ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        )
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert hu.min() < -900 and hu.max() > 400  # air and bone
        assert -1000 <= np.median(hu) <= 100
        assert ds.SOPInstanceUID in truth["images"]
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        makers.add(ds.Manufacturer)
        patients.add(ds.PatientID)
    assert len(makers) >= 2 and len(patients) >= 2
    assert len(truth["images"]) == len(files)


def test_same_seed_same_study(study, tmp_path):
    again = demo.generate_demo_study(str(tmp_path), seed=0, n_series=2)
    with open(again.reads_csv) as f:
        first = {r["sop_instance_uid"] for r in csv.DictReader(f)}
    with open(study.reads_csv) as f:
        assert first <= {r["sop_instance_uid"] for r in csv.DictReader(f)}


def test_file_names_do_not_follow_position(study):
    folder = os.path.dirname(_files(study)[0])
    names = sorted(os.listdir(folder))
    z = [
        float(
            pydicom.dcmread(os.path.join(folder, n), stop_before_pixels=True).ImagePositionPatient[
                2
            ]
        )
        for n in names
    ]
    assert z != sorted(z)


def test_tables_have_the_documented_columns(study, reads):
    assert list(reads[0]) == [
        "sop_instance_uid",
        "reader",
        "label",
        "score",
        "confidence",
        "timestamp",
        "session",
    ]
    with open(study.boxes_csv) as f:
        assert list(csv.DictReader(f).fieldnames) == [
            "sop_instance_uid",
            "reader",
            "label",
            "x",
            "y",
            "width",
            "height",
        ]
    with open(study.masks_csv) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["sop_instance_uid", "reader", "mask_path", "timestamp", "session"]
    assert len({r["reader"] for r in reads}) >= 3
    seg = pydicom.dcmread(study.seg_files[0][1])
    rt = pydicom.dcmread(study.rtstruct_files[0][1])
    assert seg.Modality == "SEG" and rt.Modality == "RTSTRUCT"


def _accuracy(rows, truth):
    return np.mean([r["label"] == truth["images"][r["sop_instance_uid"]]["class"] for r in rows])


def test_planted_degraded_images_have_more_disagreement(reads, truth):
    degraded = set(truth["planted"]["degraded_images"]["sop_instance_uids"])
    on = [r for r in reads if r["sop_instance_uid"] in degraded]
    off = [r for r in reads if r["sop_instance_uid"] not in degraded]
    assert len(degraded) >= 30
    assert _accuracy(on, truth) < _accuracy(off, truth) - 0.3


def test_planted_biased_reader_calls_suspicious_more(reads, truth):
    biased = truth["planted"]["biased_reader"]["reader"]
    rate = {
        r: np.mean([x["label"] == "suspicious" for x in reads if x["reader"] == r])
        for r in truth["readers"]
    }
    others = [v for k, v in rate.items() if k != biased]
    assert rate[biased] > max(others) + 0.1


def test_planted_drifting_reader_gets_worse_by_session(reads, truth):
    drifting = truth["planted"]["drifting_reader"]["reader"]
    mine = [r for r in reads if r["reader"] == drifting]
    first = [r for r in mine if r["session"] == "S1"]
    last = [r for r in mine if r["session"] == "S6"]
    assert _accuracy(first, truth) > _accuracy(last, truth) + 0.25
    steady = [r for r in reads if r["reader"] == "R1"]
    s1 = [r for r in steady if r["session"] == "S1"]
    s6 = [r for r in steady if r["session"] == "S6"]
    assert abs(_accuracy(s1, truth) - _accuracy(s6, truth)) < 0.2


def test_planted_clear_cut_errors_are_where_truth_says(reads, truth):
    planted = truth["planted"]["clear_cut_errors"]
    errors = set(planted["sop_instance_uids"])
    assert 8 <= len(errors) <= 12
    by_reader = {(r["reader"], r["sop_instance_uid"]): r["label"] for r in reads}
    for sop in errors:
        truth_class = truth["images"][sop]["class"]
        assert (
            truth_class in ("benign", "malignant") and truth["images"][sop]["degradation"] is None
        )
        assert by_reader[(planted["reader"], sop)] == (
            "malignant" if truth_class == "benign" else "benign"
        )
        # most other readers get these easy images right
        others = [by_reader.get((r, sop)) for r in truth["readers"] if r != planted["reader"]]
        others = [o for o in others if o]
        assert 2 * sum(o == truth_class for o in others) >= len(others)


def test_planted_unreliable_scanner(reads, truth):
    model = truth["planted"]["unreliable_scanner"]["model"]
    clean = {s for s, im in truth["images"].items() if im["degradation"] is None}
    on = [
        r
        for r in reads
        if r["sop_instance_uid"] in clean
        and truth["images"][r["sop_instance_uid"]]["model"] == model
    ]
    off = [
        r
        for r in reads
        if r["sop_instance_uid"] in clean
        and truth["images"][r["sop_instance_uid"]]["model"] != model
    ]
    assert _accuracy(on, truth) < _accuracy(off, truth) - 0.1
