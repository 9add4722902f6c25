"""The demo study: valid DICOM in Hounsfield units, the documented table formats, and
each planted problem measurable from the reads against truth.json with plain numpy.

The full default study is generated once for the module (about 10 s); the determinism
and CLI checks use small studies of their own.
"""

import csv
import datetime as dt
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from PIL import Image

from multireader.io import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def progress_calls():
    return []


@pytest.fixture(scope="module")
def study(tmp_path_factory, progress_calls):
    out = tmp_path_factory.mktemp("demo")
    return demo.generate_demo_study(
        str(out), seed=0, progress=lambda f, m: progress_calls.append((f, m))
    )


@pytest.fixture(scope="module")
def truth(study):
    with open(study.truth_path) as f:
        return json.load(f)


def _table(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    for row in rows:
        row["key"] = demo.truth_key(row["sop_instance_uid"], row["frame"])
    return reader.fieldnames, rows


@pytest.fixture(scope="module")
def reads(study):
    return _table(study.reads_csv)[1]


@pytest.fixture(scope="module")
def headers(study):
    return {p: pydicom.dcmread(p, stop_before_pixels=True) for p in _files(study.dicom_dir)}


def _files(folder):
    return sorted(os.path.join(r, n) for r, _, names in os.walk(folder) for n in names)


def _hu_frames(ds):
    """(frame, HU array) for every frame, with the rescale from wherever the file keeps it."""
    arr = ds.pixel_array
    arr = arr[np.newaxis] if arr.ndim == 2 else arr
    out = []
    for i, frame in enumerate(arr):
        slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
        if slope is None:
            groups = ds.get("PerFrameFunctionalGroupsSequence")[i]
            pvt = groups.get("PixelValueTransformationSequence")
            if pvt is None:
                pvt = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence
            slope, intercept = pvt[0].RescaleSlope, pvt[0].RescaleIntercept
        out.append((i, frame * float(slope) + float(intercept)))
    return out


# --- the DICOM files ---------------------------------------------------------------


def test_files_are_real_dicom_with_valid_file_meta(headers):
    for path, ds in headers.items():
        with open(path, "rb") as f:
            assert f.read(132)[128:] == b"DICM", path
        meta = ds.file_meta
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert meta.ImplementationClassUID
        assert ds.SOPClassUID in (
            pydicom.uid.CTImageStorage,
            pydicom.uid.LegacyConvertedEnhancedCTImageStorage,
        )
        assert ds.Modality == "CT" and ds.BodyPartExamined == "CHEST"
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
            assert pydicom.uid.UID(ds[keyword].value).is_valid
        assert str(ds.PatientName).startswith("DEMO^PATIENT^")  # obviously synthetic
        assert ds.PatientID.startswith("DEMO")
        assert ds.PatientSex in ("M", "F") and ds.PatientAge.endswith("Y")
        assert 40 <= float(ds.PatientWeight) <= 110
        assert ds.StudyDate.startswith(("2025", "2026"))
    uids = [ds.SOPInstanceUID for ds in headers.values()]
    assert len(set(uids)) == len(uids)


def test_single_frame_geometry_and_tags(headers, truth):
    single = {p: ds for p, ds in headers.items() if "NumberOfFrames" not in ds}
    assert len(single) >= 300
    for ds in single.values():
        tr = truth["images"][ds.SOPInstanceUID]
        assert ds.SeriesInstanceUID == tr["series_instance_uid"]
        assert float(ds.ImagePositionPatient[2]) == pytest.approx(tr["z_mm"])
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert len(ds.PixelSpacing) == 2 and float(ds.SliceThickness) > 0
        assert int(ds.InstanceNumber) == tr["slice_index"] + 1
        assert float(ds.RescaleSlope) == 1 and float(ds.RescaleIntercept) == -1024
        assert (float(ds.WindowCenter), float(ds.WindowWidth)) in ((-600, 1500), (40, 400))
        assert float(ds.KVP) in (100, 120)
        assert ("ContrastBolusAgent" in ds) == tr["contrast"]


def test_pixels_are_hounsfield_units_per_tissue(headers, truth):
    checked = 0
    for path in list(headers)[::7]:
        ds = pydicom.dcmread(path)
        for frame, hu in _hu_frames(ds):
            key = demo.truth_key(ds.SOPInstanceUID, frame if "NumberOfFrames" in ds else None)
            tr = truth["images"][key]
            assert hu.shape == (256, 256)
            assert np.median(hu[:8, :8]) < -950  # air outside the body
            # lung parenchyma, in whichever lung the slice's one nodule leaves free
            x, y, w, h = tr["box"]
            c0 = 80 if x > 86 + 2 or x + w < 80 - 2 or y > 78 + 2 else 170
            assert -950 < np.median(hu[72:78, c0 : c0 + 6]) < -750
            assert -30 < np.median(hu[62:67, 124:132]) < 110  # soft tissue
            assert np.median(hu[186:190, 138:140]) > 400  # cortical bone of the spine
            r, c = (int(v) for v in tr["lesion"]["center_rc"])
            assert np.median(hu[r - 1 : r + 2, c - 1 : c + 2]) > -400  # a solid lesion
            checked += 1
    assert checked >= 40


def test_counts_patients_studies_scanners(headers, truth, reads):
    assert len(truth["images"]) >= 300
    assert len({r["reader"] for r in reads}) >= 3
    makers = {(ds.Manufacturer, ds.ManufacturerModelName) for ds in headers.values()}
    assert len({m for m, _ in makers}) >= 2 and len(makers) >= 3
    series = {ds.SeriesInstanceUID for ds in headers.values()}
    assert len(series) >= 20
    studies_of = {}
    for ds in headers.values():
        studies_of.setdefault(ds.PatientID, set()).add(ds.StudyInstanceUID)
    assert len(studies_of) >= 10
    assert sum(len(s) == 2 for s in studies_of.values()) >= 4  # follow-up studies
    contrast = [bool(ds.get("ContrastBolusAgent")) for ds in headers.values()]
    assert 0 < sum(contrast) < len(contrast)


def test_one_series_is_a_multiframe_file_with_per_frame_positions(headers, truth, reads):
    multi = [(p, ds) for p, ds in headers.items() if "NumberOfFrames" in ds]
    assert len(multi) == 1
    path, ds = multi[0]
    assert ds.SOPClassUID == pydicom.uid.LegacyConvertedEnhancedCTImageStorage
    assert int(ds.NumberOfFrames) == 14
    for frame, groups in enumerate(ds.PerFrameFunctionalGroupsSequence):
        z = float(groups.PlanePositionSequence[0].ImagePositionPatient[2])
        assert z == pytest.approx(truth["images"][f"{ds.SOPInstanceUID}:{frame}"]["z_mm"])
    frames = {int(r["frame"]) for r in reads if r["sop_instance_uid"] == ds.SOPInstanceUID}
    assert frames == set(range(14))
    assert all(r["frame"] == "" for r in reads if r["sop_instance_uid"] != ds.SOPInstanceUID)


def test_file_names_do_not_follow_slice_position(headers):
    by_folder = {}
    for path, ds in headers.items():
        if "NumberOfFrames" not in ds:
            by_folder.setdefault(os.path.dirname(path), []).append(
                (os.path.basename(path), float(ds.ImagePositionPatient[2]))
            )
    assert len(by_folder) >= 20
    for items in by_folder.values():
        z_by_name = [z for _, z in sorted(items)]
        assert z_by_name != sorted(z_by_name) and z_by_name != sorted(z_by_name, reverse=True)


def test_same_seed_same_study_other_seed_other_study(tmp_path):
    def small(name, seed):
        return demo.generate_demo_study(str(tmp_path / name), seed=seed, n_series=3, image_size=64)

    a, b, c = small("a", 0), small("b", 0), small("c", 1)

    def content(s):
        files = _files(s.dicom_dir)
        names = [os.path.relpath(p, s.dicom_dir) for p in files]
        dicoms = [pydicom.dcmread(p) for p in files]
        tables = []
        for p in (s.reads_csv, s.boxes_csv, s.masks_csv, s.measurements_csv, s.truth_path):
            with open(p) as f:
                tables.append(f.read())
        return names, [(d.SOPInstanceUID, d.PixelData) for d in dicoms], tables

    assert content(a) == content(b)
    assert content(a)[1][0][0] != content(c)[1][0][0]
    assert content(a)[2][0] != content(c)[2][0]


def test_progress_is_reported_up_to_done(progress_calls):
    fractions = [f for f, _ in progress_calls]
    assert len(fractions) > 5 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(isinstance(m, str) and m for _, m in progress_calls)


def test_cli_writes_a_study(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "multireader.io.demo", str(out), "--series", "2", "--size", "96"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(out / "truth.json") and os.path.exists(out / "labels" / "reads.csv")
    ds = pydicom.dcmread(_files(str(out / "dicom"))[0])
    assert (ds.Rows, ds.Columns) == (96, 96)


# --- the reads tables --------------------------------------------------------------


def test_tables_have_exactly_the_documented_columns(study, reads, truth):
    assert _table(study.reads_csv)[0] == [
        "sop_instance_uid",
        "frame",
        "reader",
        "label",
        "score",
        "confidence",
        "timestamp",
        "session",
    ]
    assert _table(study.boxes_csv)[0] == [
        "sop_instance_uid",
        "frame",
        "reader",
        "label",
        "x",
        "y",
        "width",
        "height",
    ]
    assert _table(study.masks_csv)[0] == [
        "sop_instance_uid",
        "frame",
        "reader",
        "mask_path",
        "timestamp",
        "session",
    ]
    schema = study.label_schema
    assert schema == {
        "classes": ["benign", "probably_benign", "suspicious", "malignant"],
        "ordered": True,
        "score_range": [1, 5],
        "mask_targets": {1: "lesion"},
    }
    for r in reads:
        assert r["key"] in truth["images"]
        assert r["label"] in schema["classes"]
        assert 1 <= int(r["score"]) <= 5 and 0 < float(r["confidence"]) <= 1
        assert dt.datetime.fromisoformat(r["timestamp"])
        assert r["session"] in {f"S{n}" for n in range(1, 7)}


def test_missing_reads_are_missing_rows(reads, truth):
    n_images = len(truth["images"])
    pairs = [(r["reader"], r["key"]) for r in reads]
    assert len(set(pairs)) == len(pairs)  # one read per reader and image
    for reader in truth["readers"]:
        n = sum(1 for r, _ in pairs if r == reader)
        assert 0.85 * n_images < n < n_images  # each reader skipped a few images


def test_sessions_are_weeks_apart(reads):
    for reader in {r["reader"] for r in reads}:
        days = {}
        for r in reads:
            if r["reader"] == reader:
                days.setdefault(r["session"], set()).add(r["timestamp"][:10])
        assert len(days) == 6 and all(len(d) == 1 for d in days.values())
        first = dt.date.fromisoformat(min(days["S1"]))
        last = dt.date.fromisoformat(min(days["S6"]))
        assert (last - first).days >= 28


def test_boxes_are_in_bounds_and_on_the_lesion(study, truth):
    rows = _table(study.boxes_csv)[1]
    reads = _table(study.reads_csv)[1]
    # one box per read, except where the missing reader read a slice of a nodule it missed
    missing = truth["planted"]["missing_reader"]
    missed = {(missing["reader"], k) for k in missing["keys"]}
    assert not missed & {(r["reader"], r["key"]) for r in rows}
    assert len(rows) == sum((r["reader"], r["key"]) not in missed for r in reads)
    assert sum((r["reader"], r["key"]) in missed for r in reads) > 0
    ious = []
    for r in rows:
        x, y, w, h = (float(r[k]) for k in ("x", "y", "width", "height"))
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 256 and y + h <= 256
        tx, ty, tw, th = truth["images"][r["key"]]["box"]
        iw = max(0.0, min(x + w, tx + tw) - max(x, tx))
        ih = max(0.0, min(y + h, ty + th) - max(y, ty))
        ious.append(iw * ih / (w * h + tw * th - iw * ih))
    assert min(ious) > 0.05 and np.median(ious) > 0.5


def test_masks_match_the_image_shape_and_the_lesion(study, truth):
    rows = _table(study.masks_csv)[1]
    folder = os.path.dirname(study.masks_csv)
    missing = truth["planted"]["missing_reader"]
    missed = {(missing["reader"], k) for k in missing["keys"]}
    for r in rows[::5]:
        mask = np.asarray(Image.open(os.path.join(folder, r["mask_path"])))
        assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 1}
        if (r["reader"], r["key"]) in missed:
            assert not mask.any()  # read, and nothing drawn
            continue
        x, y, w, h = truth["images"][r["key"]]["box"]
        # a reader's outline of the true lesion: tight, generous or a little shifted
        assert mask[y : y + h, x : x + w].sum() > 0
        assert mask[max(0, y - 6) : y + h + 6, max(0, x - 6) : x + w + 6].sum() == mask.sum()
    # readers draw the same lesion differently
    by_key = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(
            np.asarray(Image.open(os.path.join(folder, r["mask_path"])))
        )
        if len(by_key[r["key"]]) == 4:
            areas = {int(m.sum()) for m in by_key[r["key"]]}
            assert len(areas) >= 3
            break


def _sop_index(headers):
    return {ds.SOPInstanceUID: ds for ds in headers.values()}


def test_seg_references_the_source_ct_instances(study, headers, truth):
    assert [r for r, _ in study.seg_files] == ["R1"]
    listed = truth["label_files"]["seg"][0]
    assert os.path.join(study.root, listed["path"]) == study.seg_files[0][1]
    seg = pydicom.dcmread(study.seg_files[0][1])
    assert seg.Modality == "SEG" and seg.SOPClassUID == pydicom.uid.SegmentationStorage
    sops = _sop_index(headers)
    referenced = [
        item.ReferencedSOPInstanceUID
        for series in seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    ]
    assert len(referenced) == 14 and all(s in sops for s in referenced)
    assert int(seg.NumberOfFrames) == 14
    pixels = seg.pixel_array
    for n, groups in enumerate(seg.PerFrameFunctionalGroupsSequence):
        src = groups.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        tr = truth["images"][src]
        z = float(groups.PlanePositionSequence[0].ImagePositionPatient[2])
        assert z == pytest.approx(tr["z_mm"])
        x, y, w, h = tr["box"]
        assert pixels[n][y : y + h, x : x + w].sum() >= 0.5 * pixels[n].sum() > 0


def test_rtstruct_contours_lie_on_the_referenced_slices(study, headers, truth):
    assert [r for r, _ in study.rtstruct_files] == ["R2"]
    listed = truth["label_files"]["rtstruct"][0]
    assert os.path.join(study.root, listed["path"]) == study.rtstruct_files[0][1]
    rt = pydicom.dcmread(study.rtstruct_files[0][1])
    assert rt.Modality == "RTSTRUCT"
    sops = _sop_index(headers)
    refs = rt.ReferencedFrameOfReferenceSequence[0]
    listed = refs.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0].ContourImageSequence
    assert all(item.ReferencedSOPInstanceUID in sops for item in listed)
    contours = rt.ROIContourSequence[0].ContourSequence
    seen = set()
    for contour in contours:
        sop = contour.ContourImageSequence[0].ReferencedSOPInstanceUID
        ct = sops[sop]
        assert ct.FrameOfReferenceUID == refs.FrameOfReferenceUID
        xyz = np.asarray(contour.ContourData, float).reshape(-1, 3)
        assert np.allclose(xyz[:, 2], float(ct.ImagePositionPatient[2]))
        origin = np.asarray(ct.ImagePositionPatient[:2], float)
        col_row = (xyz[:, :2] - origin) / np.asarray(ct.PixelSpacing, float)[::-1]
        x, y, w, h = truth["images"][sop]["box"]
        assert (col_row[:, 0] > x - 4).all() and (col_row[:, 0] < x + w + 4).all()
        assert (col_row[:, 1] > y - 4).all() and (col_row[:, 1] < y + h + 4).all()
        seen.add(sop)
    assert len(seen) == 14


# --- the planted problems, measured against truth.json -----------------------------

CLASSES = ["benign", "probably_benign", "suspicious", "malignant"]


def _calls(reads):
    return {(r["reader"], r["key"]): CLASSES.index(r["label"]) for r in reads}


def _cohen_kappa(a, b):
    """Cohen's (1960) kappa: (p_o - p_e) / (1 - p_e), chance from each rater's marginals."""
    a, b = np.asarray(a), np.asarray(b)
    p_o = np.mean(a == b)
    p_e = sum(np.mean(a == c) * np.mean(b == c) for c in range(len(CLASSES)))
    return (p_o - p_e) / (1 - p_e)


def _mean_pairwise_kappa(calls, readers, keys):
    kappas = []
    for r1, r2 in itertools.combinations(readers, 2):
        both = [k for k in keys if (r1, k) in calls and (r2, k) in calls]
        kappas.append(_cohen_kappa([calls[r1, k] for k in both], [calls[r2, k] for k in both]))
    return float(np.mean(kappas))


def _accuracy(rows, truth):
    return float(np.mean([r["label"] == truth["images"][r["key"]]["class"] for r in rows]))


def _subsets(truth):
    model = truth["planted"]["unreliable_scanner"]["model"]
    degraded = set(truth["planted"]["degraded_images"]["keys"])
    images = truth["images"]
    clean = {k for k, v in images.items() if k not in degraded and v["model"] != model}
    scanner = {k for k, v in images.items() if k not in degraded and v["model"] == model}
    return degraded, scanner, clean


def test_planted_degraded_images_have_far_more_disagreement(reads, truth):
    degraded, _, clean = _subsets(truth)
    assert len(degraded) >= 30
    assert {truth["images"][k]["degradation"] for k in degraded} == {"blurred", "low_dose"}
    assert all(truth["images"][k]["degradation"] is None for k in clean)
    calls = _calls(reads)
    kappa_degraded = _mean_pairwise_kappa(calls, truth["readers"], degraded)
    kappa_clean = _mean_pairwise_kappa(calls, truth["readers"], clean)
    assert kappa_degraded < kappa_clean - 0.25
    on = [r for r in reads if r["key"] in degraded]
    off = [r for r in reads if r["key"] in clean]
    assert _accuracy(on, truth) < _accuracy(off, truth) - 0.2


def test_planted_biased_reader_calls_suspicious_far_more(reads, truth):
    biased = truth["planted"]["biased_reader"]["reader"]
    assert truth["planted"]["biased_reader"]["toward"] == "suspicious"
    low = {k for k, v in truth["images"].items() if v["class"] in ("benign", "probably_benign")}
    rate = {
        reader: np.mean(
            [r["label"] == "suspicious" for r in reads if r["reader"] == reader and r["key"] in low]
        )
        for reader in truth["readers"]
    }
    others = [v for k, v in rate.items() if k != biased]
    assert rate[biased] > max(others) + 0.15 and rate[biased] > 2 * max(others)
    # and the bias is one way: the biased reader over-calls on average, the others do not
    calls = _calls(reads)
    images = truth["images"]

    def mean_error(reader):
        keys = [k for (r, k) in calls if r == reader]
        return np.mean([calls[reader, k] - CLASSES.index(images[k]["class"]) for k in keys])

    assert mean_error(biased) > 0.2
    assert all(
        abs(mean_error(r)) < 0.15
        for r in truth["readers"]
        if r not in (biased,) and r != truth["planted"]["drifting_reader"]["reader"]
    )


def test_planted_drifting_reader_gets_worse_by_session(reads, truth):
    drifting = truth["planted"]["drifting_reader"]["reader"]
    _, _, clean = _subsets(truth)
    clean -= set(truth["planted"]["clear_cut_errors"]["keys"])  # another planted problem

    def by_session(reader):
        return [
            _accuracy(
                [
                    r
                    for r in reads
                    if r["reader"] == reader and r["session"] == s and r["key"] in clean
                ],
                truth,
            )
            for s in truth["planted"]["drifting_reader"]["sessions"]
        ]

    def slope(acc):
        return np.polyfit(np.arange(len(acc)), acc, 1)[0]

    acc = by_session(drifting)
    assert slope(acc) < -0.06  # loses more than 6 points of accuracy per weekly session
    assert np.mean(acc[:2]) > np.mean(acc[-2:]) + 0.25
    # 0.065, not 0.045 as with independent slices: the slices of one nodule share a class
    # and a session, so a session holds fewer independent lesions and the biased reader's
    # accuracy (which depends on the benign share) swings more (up to 0.058 on seeds 0-5,
    # against the drifting reader's -0.10 or steeper)
    for reader in truth["readers"]:
        if reader != drifting:
            assert abs(slope(by_session(reader))) < 0.065, reader


def test_planted_clear_cut_errors_are_exactly_where_truth_says(reads, truth):
    planted = truth["planted"]["clear_cut_errors"]
    errors = set(planted["keys"])
    assert 8 <= len(errors) <= 12
    calls = _calls(reads)
    images = truth["images"]
    for key in errors:
        tr = images[key]
        assert tr["easy"] and tr["degradation"] is None and tr["class"] in ("benign", "malignant")
        assert calls[planted["reader"], key] == 3 - CLASSES.index(tr["class"])
        others = [
            calls[r, key] for r in truth["readers"] if r != planted["reader"] and (r, key) in calls
        ]
        # the rest of the panel sides with the truth, not with the error
        truth_class = CLASSES.index(tr["class"])
        assert abs(np.mean(others) - truth_class) < abs(np.mean(others) - (3 - truth_class))
        assert truth_class in others
    # opposite-extreme calls on easy images are (almost) only the planted ones
    extreme = {r: set() for r in truth["readers"]}
    for (reader, key), call in calls.items():
        if images[key]["easy"] and abs(call - CLASSES.index(images[key]["class"])) == 3:
            extreme[reader].add(key)
    assert extreme[planted["reader"]] == errors
    assert all(len(v) <= 1 for r, v in extreme.items() if r != planted["reader"])


def test_planted_unreliable_scanner_has_far_more_disagreement(reads, truth):
    _, scanner, clean = _subsets(truth)
    model = truth["planted"]["unreliable_scanner"]["model"]
    calls = _calls(reads)
    kappa_scanner = _mean_pairwise_kappa(calls, truth["readers"], scanner)
    kappa_clean = _mean_pairwise_kappa(calls, truth["readers"], clean)
    assert kappa_scanner < kappa_clean - 0.2
    # it is the worst model, also without separating out the degraded images
    models = {v["model"] for v in truth["images"].values()}
    kappa = {
        m: _mean_pairwise_kappa(
            calls, truth["readers"], {k for k, v in truth["images"].items() if v["model"] == m}
        )
        for m in models
    }
    assert min(kappa, key=kappa.get) == model
    assert kappa[model] < min(v for m, v in kappa.items() if m != model) - 0.1


def test_truth_masks_match_the_truth_boxes(study, truth):
    for v in list(truth["images"].values())[::9]:
        mask = np.asarray(Image.open(os.path.join(study.root, v["mask_path"])))
        assert mask.shape == (256, 256) and int(mask.sum()) == v["lesion_pixels"] > 0
        rows, cols = np.nonzero(mask)
        x, y, w, h = v["box"]
        assert (cols.min(), rows.min(), cols.max() + 1 - x, rows.max() + 1 - y) == (x, y, w, h)


def test_truth_class_follows_visible_lesion_properties(truth):
    """An image-feature model could learn the class: size alone orders the classes."""
    radius = {c: [] for c in CLASSES}
    for v in truth["images"].values():
        radius[v["class"]].append(v["lesion"]["radius_px"])
        spiculated = v["lesion"]["spiculae"] > 0
        assert spiculated == (v["class"] in ("suspicious", "malignant"))
        assert {"benign": [1], "probably_benign": [2], "suspicious": [3, 4], "malignant": [5]}[
            v["class"]
        ].count(v["score"])
    for lo, hi in itertools.pairwise(CLASSES):
        assert max(radius[lo]) < min(radius[hi])


# --- the 3-D nodules and the two lesion-level readers ------------------------------

VOXEL_ML = 0.7 * 0.7 * 2.5 / 1000  # mm^3 -> mL at 256 px and 2.5 mm between slices


@pytest.fixture(scope="module")
def truth_stacks(study, truth):
    """series UID -> (slice-ordered keys, stacked truth masks [slice, row, col])."""
    by_series = {}
    for key, v in truth["images"].items():
        by_series.setdefault(v["series_instance_uid"], []).append((v["slice_index"], key))
    out = {}
    for uid, items in by_series.items():
        keys = [k for _, k in sorted(items)]
        masks = [
            np.asarray(Image.open(os.path.join(study.root, truth["images"][k]["mask_path"])))
            for k in keys
        ]
        out[uid] = (keys, np.stack(masks) > 0)
    return out


@pytest.fixture(scope="module")
def reader_pngs(study):
    """(reader, key) -> the reader's written mask (bool), for every masks.csv row."""
    folder = os.path.dirname(study.masks_csv)
    return {
        (r["reader"], r["key"]): np.asarray(Image.open(os.path.join(folder, r["mask_path"]))) > 0
        for r in _table(study.masks_csv)[1]
    }


def _png_ratios(truth, reader_pngs, reader):
    """nodule id -> the reader's volume / the true volume, from the written PNGs, for the
    nodules the reader read on every slice (a slice not read has no PNG)."""
    out = {}
    for nid, nod in truth["nodules"].items():
        if all((reader, k) in reader_pngs for k in nod["keys"]):
            out[nid] = sum(int(reader_pngs[reader, k].sum()) for k in nod["keys"]) / nod["voxels"]
    return out


def test_every_slice_belongs_to_one_nodule_of_adjacent_slices(truth):
    images, nodules = truth["images"], truth["nodules"]
    assert 60 <= len(nodules) <= 140
    covered = {}
    for nid, nod in nodules.items():
        idx = nod["slice_indices"]
        assert 2 <= len(idx) <= 6 and idx == list(range(idx[0], idx[0] + len(idx)))
        assert [images[k]["slice_index"] for k in nod["keys"]] == idx
        for k in nod["keys"]:
            v = images[k]
            assert k not in covered
            covered[k] = nid
            assert v["nodule_id"] == nid and v["lesion"]["nodule_id"] == nid
            assert v["series_instance_uid"] == nod["series_instance_uid"]
            # one class per nodule, and the class-dependent shape constant through it
            assert v["class"] == nod["class"]
            assert v["lesion"]["radius_px"] == nod["radius_px"]
            assert v["lesion"]["center_rc"] == nod["center_rc"]
        for field in ("lobulation", "spiculae", "density_hu"):
            assert len({images[k]["lesion"][field] for k in nod["keys"]}) == 1
        assert len({images[k]["score"] for k in nod["keys"]}) == 1
        # an ellipsoid along z: the cross-section is largest inside, smaller at the ends
        radii = [images[k]["lesion"]["slice_radius_px"] for k in nod["keys"]]
        assert max(radii) <= nod["radius_px"] and radii[0] < nod["radius_px"]
        assert radii[0] < max(radii) or len(radii) == 2
        assert radii[0] == pytest.approx(radii[-1], abs=0.01)
        # the true volume and its equivalent diameter, from the truth masks
        voxels = sum(images[k]["lesion_pixels"] for k in nod["keys"])
        assert nod["voxels"] == voxels
        assert nod["volume_ml"] == pytest.approx(voxels * VOXEL_ML, abs=1e-5)
        diameter = (6 * nod["volume_ml"] * 1000 / np.pi) ** (1 / 3)
        assert nod["equivalent_diameter_mm"] == pytest.approx(diameter, abs=1e-2)
    assert set(covered) == set(images)
    # the class still follows size, now per nodule
    diameters = {
        c: [n["equivalent_diameter_mm"] for n in nodules.values() if n["class"] == c]
        for c in CLASSES
    }
    for lo, hi in itertools.pairwise(CLASSES):
        assert np.median(diameters[lo]) < np.median(diameters[hi])


def test_truth_masks_stack_into_exactly_the_planted_nodules(truth, truth_stacks):
    from scipy import ndimage

    by_series = {}
    for nid, nod in truth["nodules"].items():
        by_series.setdefault(nod["series_instance_uid"], []).append(nid)
    assert set(by_series) == set(truth_stacks)
    for uid, (_keys, stack) in truth_stacks.items():
        # 26-connectivity: consecutive nodules do not even touch at a corner
        labels, n = ndimage.label(stack, structure=np.ones((3, 3, 3)))
        assert n == len(by_series[uid]), uid
        for nid in by_series[uid]:
            nod = truth["nodules"][nid]
            idx = nod["slice_indices"]
            found = set(np.unique(labels[idx][stack[idx]]))
            assert len(found) == 1  # one component on all its slices...
            (label,) = found
            zs = np.nonzero((labels == label).any(axis=(1, 2)))[0].tolist()
            assert zs == idx  # ...and on no other slice
            assert int((labels == label).sum()) == nod["voxels"]
            # the in-plane centre is fixed through the nodule
            centres = [ndimage.center_of_mass(stack[j]) for j in idx]
            assert np.ptp(np.array(centres), axis=0).max() < 3.0


def test_reader_outlines_are_one_consistent_3d_surface_per_nodule(truth, reader_pngs):
    from scipy import ndimage

    missed = set(truth["planted"]["missing_reader"]["missed"])
    degraded = set(truth["planted"]["degraded_images"]["keys"])
    checked = 0
    for reader in truth["readers"]:
        for nid, nod in truth["nodules"].items():
            keys = nod["keys"]
            if nid in missed or not all((reader, k) in reader_pngs for k in keys):
                continue
            stack = np.stack([reader_pngs[reader, k] for k in keys])
            assert all(m.any() for m in stack)
            _, n = ndimage.label(stack, structure=np.ones((3, 3, 3)))
            assert n == 1, (reader, nid)
            if keys[0] in degraded:
                continue
            # the reader's displacement of the outline is the same on every slice, not noise
            r, c = nod["center_rc"]
            offsets = np.array([ndimage.center_of_mass(m) for m in stack]) - [r, c]
            assert np.ptp(offsets, axis=0).max() < 2.5, (reader, nid)
            checked += 1
    assert checked > 120


def test_planted_boundary_reader_draws_nodules_10_to_15_percent_larger(truth, reader_pngs):
    planted = truth["planted"]["boundary_reader"]
    reader = planted["reader"]
    lo, hi = planted["parameters"]["volume_ratio_range"]
    assert (lo, hi) == (1.10, 1.15)
    ratios = _png_ratios(truth, reader_pngs, reader)
    assert len(ratios) >= 40
    assert lo <= np.mean(list(ratios.values())) <= hi
    # each nodule on target (to a voxel), and as recorded in truth.json
    for nid, ratio in ratios.items():
        assert lo - 0.01 <= ratio <= hi + 0.01, nid
        assert ratio == pytest.approx(planted["volume_ratios"][nid], abs=1e-5)
        assert ratio == pytest.approx(
            truth["nodules"][nid]["reader_volume_ratio"][reader], abs=1e-5
        )
    assert lo <= planted["mean_volume_ratio"] <= hi
    assert planted["mean_volume_ratio"] == pytest.approx(
        np.mean(list(planted["volume_ratios"].values())), abs=1e-5
    )


def test_other_readers_volumes_stay_within_a_few_percent(truth, reader_pngs):
    boundary = truth["planted"]["boundary_reader"]["reader"]
    missed = set(truth["planted"]["missing_reader"]["missed"])
    means = {}
    for reader in truth["readers"]:
        ratios = _png_ratios(truth, reader_pngs, reader)
        kept = [v for nid, v in ratios.items() if nid not in missed]
        assert len(kept) >= 40
        means[reader] = float(np.mean(kept))
    for reader, mean in means.items():
        if reader != boundary:
            assert abs(mean - 1) < 0.05, (reader, mean)
    assert means[boundary] > max(v for r, v in means.items() if r != boundary) + 0.05


def test_planted_missing_reader_misses_only_small_nodules(study, truth, reads, reader_pngs):
    planted = truth["planted"]["missing_reader"]
    reader, params = planted["reader"], planted["parameters"]
    threshold = params["diameter_threshold_mm"]
    nodules = truth["nodules"]
    small = [nid for nid, n in nodules.items() if n["equivalent_diameter_mm"] < threshold]
    missed = set(planted["missed"])
    assert len(small) == planted["n_small"] >= 10
    assert missed <= set(small) and len(missed) >= 5
    assert 0.4 <= len(missed) / len(small) <= 0.95  # planted: probability 0.7
    assert sorted(k for nid in missed for k in nodules[nid]["keys"]) == planted["keys"]
    read = {(r["reader"], r["key"]) for r in reads}
    assert sum((reader, k) in reader_pngs for k in planted["keys"]) >= 0.8 * len(planted["keys"])
    for nid, nod in nodules.items():
        assert nod["missed_by"] == ([reader] if nid in missed else [])
        written = [reader_pngs[reader, k] for k in nod["keys"] if (reader, k) in reader_pngs]
        if nid in missed:
            # outlined as a volume (a manifest row on every slice, even where the class
            # call is missing), nothing drawn: all-zero masks
            assert not any(m.any() for m in written)
            assert all((reader, k) in reader_pngs for k in nod["keys"] if (reader, k) in read)
        else:
            assert all(m.any() for m in written)
    # nobody else leaves a slice empty
    for (r, key), mask in reader_pngs.items():
        if r != reader:
            assert mask.any(), (r, key)


# --- RECIST measurements ------------------------------------------------------------


def test_recist_measurements_plant_a_flip_and_a_drifting_reader(study, truth):
    """measurements.csv, recounted with plain numpy: the documented columns, calipers
    that measure the stated lengths, two timepoints per returning patient, the flip
    patient's sums on both sides of -30 %, and the drift reader's diameters growing
    against the others' with its reading session."""
    columns, rows = _table(study.measurements_csv)
    assert columns == demo.MEASUREMENTS_COLUMNS
    images = truth["images"]
    spacing = 0.7
    for r in rows:
        assert r["target"] == "true" and r["site"] == "lung" and r["timepoint"] in ("0", "1")
        assert images[r["key"]]["study_instance_uid"]  # every row names a demo image
        long_mm = float(r["long_axis_mm"])
        assert 0 <= float(r["short_axis_mm"]) <= long_mm
        if r["x1"] == "":
            assert long_mm == 0 and r["timepoint"] == "1"  # the disappeared target
            continue
        x1, y1, x2, y2 = (float(r[c]) for c in ("x1", "y1", "x2", "y2"))
        assert abs(np.hypot(x2 - x1, y2 - y1) * spacing - long_mm) < 0.06
        assert min(x1, x2, y1, y2) >= 0 and max(x1, x2, y1, y2) <= 256
    patients = truth["recist"]["patients"]
    returning = [p for p, e in patients.items() if e["course"] is not None]
    assert len(returning) >= 5 and any(e["disappeared"] for e in patients.values())
    # sums per (patient, reader, timepoint), recounted
    study_of = {k: v["study_instance_uid"] for k, v in images.items()}
    patient_of = {s: p for p, e in patients.items() for s in e["study_instance_uids"]}
    sums = {}
    for r in rows:
        key = (patient_of[study_of[r["key"]]], r["reader"], int(r["timepoint"]))
        sums[key] = sums.get(key, 0.0) + float(r["long_axis_mm"])
    flip = truth["planted"]["recist_flip_patient"]
    change = {
        w: 100 * (sums[(flip["patient_id"], w, 1)] / sums[(flip["patient_id"], w, 0)] - 1)
        for w in demo.READERS
    }
    assert change["R1"] == pytest.approx(-32, abs=0.6) and change["R2"] == pytest.approx(
        -25, abs=0.6
    )
    assert change == pytest.approx(flip["percent_change"], abs=0.01)
    assert flip["responses"]["R1"] == "PR" and flip["responses"]["R2"] == "SD"
    # every other returning patient: the four readers agree on the response
    for p in returning:
        if p == flip["patient_id"]:
            continue
        calls = set()
        for w in demo.READERS:
            pct = 100 * (sums[(p, w, 1)] / sums[(p, w, 0)] - 1)
            calls.add("PR" if pct <= -30 else "PD" if pct >= 20 else "SD")
        assert len(calls) == 1, (p, calls)
    # drift: the drift reader's log ratio to the others' mean grows with its session
    drift = truth["planted"]["recist_drift_reader"]
    reader = drift["reader"]
    by_lesion = {}
    for r in rows:
        lesion = (patient_of[study_of[r["key"]]], r["lesion_id"], r["timepoint"])
        by_lesion.setdefault(lesion, {})[r["reader"]] = (float(r["long_axis_mm"]), r["session"])
    slopes = {}
    for w in demo.READERS:
        x, y = [], []
        for m in by_lesion.values():
            if m[w][0] > 0:  # against the readers not drifting
                ref = np.mean([m[o][0] for o in demo.READERS if o not in (w, reader)])
                x.append(int(m[w][1][1:]))
                y.append(np.log(m[w][0] / ref))
        slopes[w] = np.polyfit(x, y, 1)[0]
    assert slopes[reader] > 0.02, slopes
    assert all(abs(v) < 0.015 for w, v in slopes.items() if w != reader), slopes
