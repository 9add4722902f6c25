"""DICOM-SEG (made with highdicom) and RTSTRUCT (made with pydicom) into reader masks.

The CT study has unequal row/column spacing and an off-zero origin, so a contour
projected with x and y swapped, or without the origin, lands visibly elsewhere.
"""

import numpy as np
import pydicom
import pytest
from helpers_dicom import (
    add_study_samples,
    circle_mm,
    make_study,
    rectangle_mm,
    write_ct_study,
    write_rtstruct,
    write_seg,
)
from PIL import Image

from multireader.core import fields as F
from multireader.core import schema
from multireader.ingest import readers


@pytest.fixture
def study(dataset, tmp_path):
    return make_study(dataset, str(tmp_path / "study"))


def _masks(ds, field):
    """{dicom_key: mask array or None} for a mask field."""
    keys, paths = ds.values([F.DICOM_KEY, f"{field}.mask_path"])
    return {k: (np.asarray(Image.open(p)) if p else None) for k, p in zip(keys, paths, strict=True)}


def _labelmap(study):
    lm = np.zeros((len(study.sop_uids), study.rows, study.columns), np.uint8)
    lm[1, 2:7, 3:12] = 1
    lm[2, 10:15, 10:25] = 2
    lm[2, 0:3, 0:2] = 1
    return lm


# --- DICOM-SEG --------------------------------------------------------------------------


def test_seg_frames_land_on_their_referenced_slices(dataset, study, tmp_path):
    lm = _labelmap(study)
    path = write_seg(str(tmp_path / "seg.dcm"), study, lm, ["lesion", "cyst"])
    rep = readers.import_reader_labels(dataset, path, reader="Dr. S")  # kind from Modality
    assert rep.errors == [] and rep.kind == "seg"
    assert rep.fields == ["reader_dr_s_mask"] and rep.counts == {"Dr. S": 2}
    assert rep.n_rows == 3  # three non-empty frames: slice 1, and slice 2 twice
    masks = _masks(dataset, "reader_dr_s_mask")
    np.testing.assert_array_equal(masks[study.key(1)], lm[1])
    np.testing.assert_array_equal(masks[study.key(2)], lm[2])
    assert sum(m is not None for m in masks.values()) == 2  # other slices: no mask
    assert dataset.mask_targets["reader_dr_s_mask"] == {1: "lesion", 2: "cyst"}
    label = dataset.match({F.DICOM_KEY: study.key(1)}).first()["reader_dr_s_mask"]
    assert (label.reader, label.source, label.read_at) == ("Dr. S", path, None)
    assert F.reader_fields(dataset)["reader_dr_s_mask"]["kind"] == "mask"


def test_seg_without_source_references_is_matched_by_position(dataset, study, tmp_path):
    lm = _labelmap(study)
    path = write_seg(str(tmp_path / "seg.dcm"), study, lm, ["lesion", "cyst"])
    seg = pydicom.dcmread(path)
    for group in seg.PerFrameFunctionalGroupsSequence:
        del group.DerivationImageSequence
    del seg.ReferencedSeriesSequence
    stripped = str(tmp_path / "noref.dcm")
    seg.save_as(stripped)
    rep = readers.import_reader_labels(dataset, stripped, reader="B", kind="seg")
    assert rep.errors == []
    masks = _masks(dataset, "reader_b_mask")
    for i in range(len(study.sop_uids)):
        if lm[i].any():
            np.testing.assert_array_equal(masks[study.key(i)], lm[i])
        else:
            assert masks[study.key(i)] is None


def test_seg_values_follow_the_declared_mask_targets_by_name(dataset, study, tmp_path):
    schema.declare_label_schema(dataset, ["lesion", "cyst"], mask_targets={1: "lesion", 2: "cyst"})
    lm = _labelmap(study)
    swapped = np.where(lm == 1, 2, np.where(lm == 2, 1, 0)).astype(np.uint8)
    # this file numbers "cyst" 1 and "lesion" 2; plus a segment the schema does not know
    swapped[3, 5:8, 5:8] = 3
    path = write_seg(str(tmp_path / "seg.dcm"), study, swapped, ["cyst", "lesion", "vessel"])
    rep = readers.import_reader_labels(dataset, path, reader="C")
    assert [e["reason"] for e in rep.errors] == [
        "segment 3 'vessel' is not in the declared mask targets ['cyst', 'lesion']; left out"
    ]
    masks = _masks(dataset, "reader_c_mask")
    np.testing.assert_array_equal(masks[study.key(1)], lm[1])
    np.testing.assert_array_equal(masks[study.key(2)], lm[2])
    assert masks[study.key(3)] is None  # only the left-out segment was there
    assert dataset.mask_targets["reader_c_mask"] == {1: "lesion", 2: "cyst"}


def test_seg_needs_a_reader_and_never_touches_another_reader(dataset, study, tmp_path):
    path = write_seg(str(tmp_path / "seg.dcm"), study, _labelmap(study), ["lesion", "cyst"])
    with pytest.raises(readers.LabelImportError, match="pass reader=<id>"):
        readers.import_reader_labels(dataset, path)
    readers.import_reader_labels(dataset, path, reader="A")
    before = dataset.values("reader_a_mask")
    before = [(v.mask_path, v.reader) if v else None for v in before]
    readers.import_reader_labels(dataset, path, reader="B")
    after = [(v.mask_path, v.reader) if v else None for v in dataset.values("reader_a_mask")]
    assert after == before
    # re-import: same masks, same files, no duplicates
    readers.import_reader_labels(dataset, path, reader="A")
    again = [(v.mask_path, v.reader) if v else None for v in dataset.values("reader_a_mask")]
    assert again == before


# --- RTSTRUCT ---------------------------------------------------------------------------


def test_rtstruct_square_and_circle_rasterised_on_their_slices(dataset, study, tmp_path):
    square = rectangle_mm(study, 1, 4, 6, 12, 20)  # pixel centres, rows 4..12, cols 6..20
    circle = circle_mm(study, 2, 12, 16, radius_mm=3.0)
    path = write_rtstruct(
        str(tmp_path / "rt.dcm"), study, {"lesion": [(1, square)], "cyst": [(2, circle)]}
    )
    rep = readers.import_reader_labels(dataset, path, reader="R1")
    assert rep.errors == [] and rep.kind == "rtstruct" and rep.n_rows == 2
    masks = _masks(dataset, "reader_r1_mask")
    assert dataset.mask_targets["reader_r1_mask"] == {1: "lesion", 2: "cyst"}

    sq = masks[study.key(1)]
    rows, cols = np.nonzero(sq)
    assert set(np.unique(sq)) == {0, 1}
    assert abs(rows.min() - 4) <= 1 and abs(rows.max() - 12) <= 1
    assert abs(cols.min() - 6) <= 1 and abs(cols.max() - 20) <= 1
    assert (12 - 4 - 1) * (20 - 6 - 1) <= sq.sum() <= (12 - 4 + 1) * (20 - 6 + 1)

    disc = masks[study.key(2)] == 2
    rows, cols = np.nonzero(disc)
    # 3 mm is 3.75 pixels down a column (0.8 mm rows) and 5 pixels along a row (0.6 mm)
    assert abs(rows.mean() - 12) <= 0.5 and abs(cols.mean() - 16) <= 0.5
    assert abs(rows.min() - (12 - 3.75)) <= 1 and abs(rows.max() - (12 + 3.75)) <= 1
    assert abs(cols.min() - (16 - 5)) <= 1 and abs(cols.max() - (16 + 5)) <= 1
    expected = np.pi * 3.75 * 5
    perimeter = 2 * np.pi * np.sqrt((3.75**2 + 5**2) / 2)
    assert abs(disc.sum() - expected) <= perimeter / 2

    others = [k for k in masks if k not in (study.key(1), study.key(2))]
    assert all(masks[k] is None for k in others)  # slices without a contour: no mask


def test_rtstruct_inner_contour_is_a_hole(dataset, study, tmp_path):
    outer = rectangle_mm(study, 0, 2, 2, 20, 28)
    inner = rectangle_mm(study, 0, 8, 10, 14, 20)
    path = write_rtstruct(str(tmp_path / "ring.dcm"), study, {"ring": [(0, outer), (0, inner)]})
    assert readers.import_reader_labels(dataset, path, reader="R1").errors == []
    ring = _masks(dataset, "reader_r1_mask")[study.key(0)]
    assert ring[3, 3] == 1 and ring[19, 27] == 1  # inside the outer contour
    assert ring[11, 15] == 0  # inside the inner contour: even-odd fill leaves a hole
    assert ring[0, 0] == 0 and ring[23, 31] == 0
    assert ring[9:14, 11:20].sum() == 0


def test_rtstruct_without_image_references_is_matched_by_plane(dataset, study, tmp_path):
    rois = {
        "lesion": [(1, rectangle_mm(study, 1, 4, 6, 12, 20))],
        "cyst": [(3, circle_mm(study, 3, 10, 10, 2.0))],
    }
    ref = write_rtstruct(str(tmp_path / "ref.dcm"), study, rois)
    noref = write_rtstruct(str(tmp_path / "noref.dcm"), study, rois, reference_images=False)
    assert (
        "ContourImageSequence"
        not in pydicom.dcmread(noref).ROIContourSequence[0]["ContourSequence"][0]
    )
    readers.import_reader_labels(dataset, ref, reader="A", kind="rtstruct")
    rep = readers.import_reader_labels(dataset, noref, reader="B", kind="rtstruct")
    assert rep.errors == []
    a, b = _masks(dataset, "reader_a_mask"), _masks(dataset, "reader_b_mask")
    assert {k for k, m in b.items() if m is not None} == {study.key(1), study.key(3)}
    for key in a:
        if a[key] is None:
            assert b[key] is None
        else:
            np.testing.assert_array_equal(a[key], b[key])


def test_rtstruct_contour_on_a_multiframe_plane_and_off_every_plane(dataset, study, tmp_path):
    # the multi-frame series is stacked beyond the CT: frame 1 sits at position index n + 11
    n = len(study.sop_uids)
    on_frame = [[x, y, study.position(n + 11)[2]] for x, y, _ in rectangle_mm(study, 0, 1, 1, 5, 5)]
    between = [
        [x, y, study.position(1)[2] + study.thickness / 2]
        for x, y, _ in rectangle_mm(study, 0, 1, 1, 5, 5)
    ]
    path = write_rtstruct(
        str(tmp_path / "mf.dcm"),
        study,
        {"lesion": [(0, on_frame), (0, between)]},
        reference_images=False,
        reference_series=False,
    )
    rep = readers.import_reader_labels(dataset, path, reader="R1")
    assert (
        len(rep.errors) == 1
        and "no slice of the dataset lies in its plane" in (rep.errors[0]["reason"])
    )
    masks = _masks(dataset, "reader_r1_mask")
    assert {k for k, m in masks.items() if m is not None} == {f"{study.multiframe_sop}:1"}


def _repeat_series(dataset, study, tmp_path):
    """A second series on exactly the same planes, in the same frame of reference."""
    repeat = write_ct_study(
        str(tmp_path / "repeat"),
        n_frames=0,
        frame_of_reference_uid=study.frame_of_reference_uid,
        study_uid=study.study_uid,
    )
    add_study_samples(dataset, repeat, str(tmp_path / "repeat_renders"))
    assert repeat.position(1) == study.position(1)
    return repeat


def test_position_matching_keeps_to_the_referenced_series(dataset, study, tmp_path):
    repeat = _repeat_series(dataset, study, tmp_path)
    lm = _labelmap(study)
    seg = pydicom.dcmread(write_seg(str(tmp_path / "seg.dcm"), study, lm, ["lesion", "cyst"]))
    for group in seg.PerFrameFunctionalGroupsSequence:
        del group.DerivationImageSequence  # left: ReferencedSeriesSequence and positions
    seg.save_as(tmp_path / "noref.dcm")
    rois = {"lesion": [(1, rectangle_mm(study, 1, 4, 6, 12, 20))]}
    rt = write_rtstruct(str(tmp_path / "rt.dcm"), study, rois, reference_images=False)
    assert (
        readers.import_reader_labels(dataset, str(tmp_path / "noref.dcm"), reader="S").errors == []
    )
    assert readers.import_reader_labels(dataset, rt, reader="T").errors == []
    for field, expected in (("reader_s_mask", {1, 2}), ("reader_t_mask", {1})):
        masks = _masks(dataset, field)
        assert {k for k, m in masks.items() if m is not None} == {study.key(i) for i in expected}
        assert all(masks[repeat.key(i)] is None for i in range(len(repeat.sop_uids)))
