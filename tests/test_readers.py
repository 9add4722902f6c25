"""Reader labels from every source, on a real imported study, with bad input."""

import csv
import json
import os

import numpy as np
import pydicom
import pytest
from PIL import Image

from multireader import demo, importer, readers, schema
from multireader import fields as F


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return demo.generate_demo_study(
        str(tmp_path_factory.mktemp("study")), seed=11, n_series=4, slices_per_series=5
    )


@pytest.fixture
def ds(dataset, study, tmp_path):
    importer.import_dicom(dataset, study.dicom_dir, render_dir=str(tmp_path / "renders"))
    schema.declare_label_schema(dataset, **study.label_schema)
    return dataset


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _key(row):
    """The dataset key a table row names (single-frame rows leave `frame` empty)."""
    return f"{row['sop_instance_uid']}:{int(row['frame']) if row.get('frame') else 0}"


def _by_key(ds, field, attr="label"):
    keys, values = ds.values([F.DICOM_KEY, f"{field}.{attr}"])
    return dict(zip(keys, values, strict=True))


def _sample(ds, row):
    return ds.match({F.DICOM_KEY: _key(row)}).first()


def test_class_reads_land_in_one_field_per_reader_with_provenance(ds, study):
    rep = readers.import_reader_labels(ds, study.reads_csv)
    rows = _rows(study.reads_csv)
    assert rep.errors == [] and rep.n_labels == len(rows)
    for reader in {r["reader"] for r in rows}:
        mine = {_key(r): r for r in rows if r["reader"] == reader}
        field = F.reader_field(reader)
        labels = _by_key(ds, field)
        # exactly this reader's reads; samples they did not read stay empty (None)
        assert {k: v for k, v in labels.items() if v is not None} == {
            k: r["label"] for k, r in mine.items()
        }
        assert sum(v is None for v in labels.values()) == len(ds) - len(mine)
        sample = ds.match({F.DICOM_KEY: next(iter(mine))}).first()
        label, row = sample[field], mine[sample[F.DICOM_KEY]]
        assert label.reader == reader and label.session == row["session"]
        assert label.score == float(row["score"]) and label.confidence == pytest.approx(
            float(row["confidence"])
        )
        assert label.read_at.isoformat() == row["timestamp"]
        assert label.source == os.path.abspath(study.reads_csv)
    assert {m["reader"] for m in F.reader_fields(ds).values()} == {r["reader"] for r in rows}


def test_json_reads_and_series_level_reads(ds, study, tmp_path):
    series = ds.distinct(F.SERIES_UID)
    reads = [
        {
            "series_instance_uid": series[0],
            "reader": "Dr. X",
            "label": "suspicious",
            "timestamp": "2026-03-01T10:00:00Z",
        }
    ]
    path = tmp_path / "series.json"
    path.write_text(json.dumps({"reads": reads}))
    rep = readers.import_reader_labels(ds, str(path))
    assert rep.errors == [] and rep.fields == ["reader_dr_x_series"]
    labels = _by_key(ds, "reader_dr_x_series")
    in_series = set(ds.match({F.SERIES_UID: series[0]}).values(F.DICOM_KEY))
    assert {s for s, v in labels.items() if v == "suspicious"} == in_series
    assert F.reader_fields(ds)["reader_dr_x_series"] == {
        "reader": "Dr. X",
        "kind": "series",
        "level": "series",
    }


def test_boxes_are_normalised_exactly(ds, study):
    rep = readers.import_reader_labels(ds, study.boxes_csv)
    assert rep.errors == []
    row = _rows(study.boxes_csv)[0]
    sample = _sample(ds, row)
    (det,) = sample[F.reader_field(row["reader"], "boxes")].detections
    cols, rows = sample[F.COLUMNS], sample[F.ROWS]
    expected = [
        float(row["x"]) / cols,
        float(row["y"]) / rows,
        float(row["width"]) / cols,
        float(row["height"]) / rows,
    ]
    assert det.bounding_box == pytest.approx(expected, abs=1e-12)
    assert det.label == row["label"] and det.reader == row["reader"]
    # importing again replaces, never duplicates
    readers.import_reader_labels(ds, study.boxes_csv)
    sample.reload()
    assert len(sample[F.reader_field(row["reader"], "boxes")].detections) == 1


def test_png_and_npy_masks_round_trip(ds, study, tmp_path):
    rep = readers.import_reader_labels(ds, study.masks_csv)
    assert rep.errors == []
    row = _rows(study.masks_csv)[0]
    sample = _sample(ds, row)
    original = np.asarray(
        Image.open(os.path.join(os.path.dirname(study.masks_csv), row["mask_path"]))
    )
    stored = np.asarray(Image.open(sample[F.reader_field(row["reader"], "mask")].mask_path))
    np.testing.assert_array_equal(stored, original)

    sample = ds.match({F.N_FRAMES: 1}).first()
    npy = tmp_path / "m.npy"
    mask = np.zeros((sample[F.ROWS], sample[F.COLUMNS]), np.uint8)
    mask[10:20, 30:45] = 1
    np.save(npy, mask)
    manifest = tmp_path / "npy.csv"
    manifest.write_text(f"sop_instance_uid,reader,mask_path\n{sample[F.SOP_UID]},R9,{npy}\n")
    assert readers.import_reader_labels(ds, str(manifest)).errors == []
    sample.reload()
    np.testing.assert_array_equal(np.asarray(Image.open(sample.reader_r9_mask.mask_path)), mask)


def test_dicom_seg_lands_on_the_referenced_slices(ds, study):
    reader, path = study.seg_files[0]
    rep = readers.import_reader_labels(ds, path, reader=reader)
    assert rep.errors == [] and rep.fields == [F.reader_field(reader, "mask")]
    seg = pydicom.dcmread(path)
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    refs = [
        fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for fg in seg.PerFrameFunctionalGroupsSequence
    ]
    for sop, frame in zip(refs, frames, strict=True):
        sample = ds.match({F.SOP_UID: sop}).first()
        stored = np.asarray(Image.open(sample[F.reader_field(reader, "mask")].mask_path))
        np.testing.assert_array_equal(stored > 0, frame > 0)
    assert ds.mask_targets[F.reader_field(reader, "mask")] == {1: "lesion"}


def test_rtstruct_contours_are_rasterised_on_their_slices(ds, study):
    reader, path = study.rtstruct_files[0]
    rep = readers.import_reader_labels(ds, path, reader=reader, kind="rtstruct")
    assert rep.errors == []
    field = F.reader_field(reader, "mask")
    rt = pydicom.dcmread(path)
    checked = 0
    for contour in rt.ROIContourSequence[0].ContourSequence:
        sop = contour.ContourImageSequence[0].ReferencedSOPInstanceUID
        sample = ds.match({F.SOP_UID: sop}).first()
        # independently: the CT file's own geometry, the polygon's extent and area
        ct = pydicom.dcmread(sample[F.DICOM_PATH], stop_before_pixels=True)
        origin = np.asarray(ct.ImagePositionPatient, float)
        xyz = np.asarray(contour.ContourData, float).reshape(-1, 3)
        col = (xyz[:, 0] - origin[0]) / float(ct.PixelSpacing[1])
        row = (xyz[:, 1] - origin[1]) / float(ct.PixelSpacing[0])
        area = 0.5 * abs(np.dot(col, np.roll(row, 1)) - np.dot(row, np.roll(col, 1)))
        mask = np.asarray(Image.open(sample[field].mask_path)) > 0
        rows, cols = np.nonzero(mask)
        assert abs(cols.min() - col.min()) <= 1 and abs(cols.max() - col.max()) <= 1
        assert abs(rows.min() - row.min()) <= 1 and abs(rows.max() - row.max()) <= 1
        assert abs(mask.sum() - area) <= 0.25 * area + 4
        checked += 1
    assert checked > 0
    # slices without a contour stay without a mask
    referenced = {
        c.ContourImageSequence[0].ReferencedSOPInstanceUID
        for c in rt.ROIContourSequence[0].ContourSequence
    }
    others = ds.match({F.SOP_UID: {"$nin": sorted(referenced)}})
    assert all(v is None for v in others.values(f"{field}.mask_path"))


def test_rtstruct_without_image_references_is_matched_by_plane(ds, study, tmp_path):
    reader, path = study.rtstruct_files[0]
    rt = pydicom.dcmread(path)
    for contour in rt.ROIContourSequence[0].ContourSequence:
        del contour.ContourImageSequence
    stripped = tmp_path / "noref.dcm"
    rt.save_as(stripped)
    readers.import_reader_labels(ds, path, reader="A", kind="rtstruct")
    readers.import_reader_labels(ds, str(stripped), reader="B", kind="rtstruct")
    a = ds.values("reader_a_mask.mask_path")
    b = ds.values("reader_b_mask.mask_path")
    assert sum(p is not None for p in a) == sum(p is not None for p in b) > 0
    for pa, pb in zip(a, b, strict=True):
        if pa:
            np.testing.assert_array_equal(np.asarray(Image.open(pa)), np.asarray(Image.open(pb)))


def test_bad_rows_are_reported_by_line_and_good_rows_land(ds, tmp_path):
    sop = ds.first()[F.SOP_UID]
    text = (
        "sop_instance_uid,reader,label,score,confidence,timestamp\n"
        f"{sop},R1,benign,1,0.9,2026-03-01T09:00:00\n"  # line 2: good
        f"1.2.3.4,R1,benign,1,,\n"  # 3: unknown key
        f"{sop},R2,maligant,,,\n"  # 4: label not in schema
        f"{sop},R3,benign,9,,\n"  # 5: score out of range
        f"{sop},R4,benign,,1.5,\n"  # 6: confidence out of [0, 1]
        f"{sop},R5,benign,,,yesterday\n"  # 7: bad timestamp
        f"{sop},,benign,,,\n"  # 8: empty reader
        f"{sop},R1,malignant,,,\n"  # 9: contradicts line 2
        f"{sop},R6,benign,,,,extra\n"  # 10: more cells than columns
        f"{sop},R7,suspicious,4,0.5,\n"  # 11: good
    )
    path = tmp_path / "reads.csv"
    path.write_text(text)
    before = ds.values(F.SOP_UID)
    rep = readers.import_reader_labels(ds, str(path))
    lines = {e["line"]: e["reason"] for e in rep.errors}
    assert sorted(lines) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert "unknown sop_instance_uid" in lines[3]
    assert "not in the declared classes" in lines[4]
    assert "outside the declared range" in lines[5]
    assert "outside [0, 1]" in lines[6]
    assert "ISO 8601" in lines[7]
    assert "empty reader" in lines[8]
    assert "already read this sample as 'benign' on line 2" in lines[9]
    assert "more cells" in lines[10]
    assert rep.n_labels == 2 and set(rep.fields) == {"reader_r1", "reader_r7"}
    assert ds.values(F.SOP_UID) == before


def test_whole_file_errors_name_the_problem(ds, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("sop_instance_uid,reader\n1.2,R1\n")
    with pytest.raises(readers.LabelImportError, match="cannot tell what the table holds"):
        readers.import_reader_labels(ds, str(bad))
    nokey = tmp_path / "nokey.csv"
    nokey.write_text("reader,label\nR1,benign\n")
    with pytest.raises(readers.LabelImportError, match="missing a key column"):
        readers.import_reader_labels(ds, str(nokey))
    with pytest.raises(readers.LabelImportError, match="pass reader="):
        seg = tmp_path / "x.dcm"
        seg.write_bytes(b"")
        readers.import_reader_labels(ds, str(seg), kind="seg")


def test_wrong_mask_shape_is_rejected(ds, tmp_path):
    sample = ds.match({F.N_FRAMES: 1}).first()
    np.save(tmp_path / "small.npy", np.zeros((4, 4), np.uint8))
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"sop_instance_uid,reader,mask_path\n{sample[F.SOP_UID]},R1,small.npy\n")
    rep = readers.import_reader_labels(ds, str(manifest))
    assert rep.errors[0]["line"] == 2 and "does not match the image" in rep.errors[0]["reason"]
    assert rep.n_labels == 0


def test_importing_one_reader_never_changes_another(ds, study, tmp_path):
    readers.import_reader_labels(ds, study.reads_csv)
    before = {name: ds.values(name) for name in F.reader_fields(ds)}
    sop = ds.first()[F.SOP_UID]
    path = tmp_path / "new.csv"
    path.write_text(f"sop_instance_uid,reader,label\n{sop},R9,malignant\n")
    readers.import_reader_labels(ds, str(path))
    for name, values in before.items():
        assert [v.to_dict() if v else None for v in ds.values(name)] == [
            v.to_dict() if v else None for v in values
        ]
