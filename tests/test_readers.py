"""Reader labels from tables (class reads, boxes, masks) on a real tiny CT study.

The study is written with pydicom by ``helpers_dicom`` and its samples are added
directly, so these tests do not depend on the importer.
"""

import datetime as dt
import json
import os

import numpy as np
import pytest
from helpers_dicom import make_study
from PIL import Image

from multireader.core import fields as F
from multireader.core import schema
from multireader.ingest import readers

CLASSES = ["benign", "probably_benign", "suspicious", "malignant"]


@pytest.fixture
def study(dataset, tmp_path):
    st = make_study(dataset, str(tmp_path / "study"))
    schema.declare_label_schema(
        dataset, CLASSES, ordered=True, score_range=[1, 5], mask_targets={1: "lesion", 2: "cyst"}
    )
    return st


def _write(path, text):
    path.write_text(text)
    return str(path)


def _by_key(ds, field, attr=None):
    keys, values = ds.values([F.DICOM_KEY, f"{field}.{attr}" if attr else field])
    return dict(zip(keys, values, strict=True))


def _dump(ds, field):
    """A field's values without label ids, to compare labels before and after."""

    def clean(d):
        if isinstance(d, dict):
            return {k: clean(v) for k, v in d.items() if k != "_id"}
        if isinstance(d, list):
            return [clean(v) for v in d]
        return d

    return [clean(v.to_dict()) if v is not None else None for v in ds.values(field)]


# --- classification reads -------------------------------------------------------------


def test_csv_reads_with_provenance_and_missing_reads_none(dataset, study, tmp_path):
    s = study.sop_uids
    path = _write(
        tmp_path / "reads.csv",
        "sop_instance_uid,reader,label,score,confidence,timestamp,session\n"
        f"{s[0]},Dr. A,benign,1,0.9,2026-03-01T09:30:00,S1\n"
        f"{s[1]},Dr. A,malignant,5,,2026-03-01T10:00:00Z,S1\n"
        f"{s[2]},Dr. A,suspicious,4,0.5,2026-03-01T12:00:00+02:00,\n"
        f"{s[0]},R2,probably_benign,,,,S7\n",
    )
    seen = []
    rep = readers.import_reader_labels(dataset, path, progress=lambda f, m: seen.append(f))
    assert rep.errors == [] and rep.n_rows == 4 and rep.n_labels == 4
    assert rep.counts == {"Dr. A": 3, "R2": 1}
    assert sorted(rep.fields) == ["reader_dr_a", "reader_r2"]
    assert seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)

    labels = _by_key(dataset, "reader_dr_a")
    assert labels[study.key(0)].label == "benign"
    a0, a1, a2 = (labels[study.key(i)] for i in range(3))
    assert (a0.reader, a0.score, a0.confidence, a0.session) == ("Dr. A", 1.0, 0.9, "S1")
    assert a0.source == os.path.abspath(path)
    assert a0.read_at == dt.datetime(2026, 3, 1, 9, 30)
    assert a1.read_at == dt.datetime(2026, 3, 1, 10, 0)  # Z is UTC
    assert a2.read_at == dt.datetime(2026, 3, 1, 10, 0)  # +02:00 converted to UTC
    assert a1.confidence is None and a2.session is None
    # missing reads stay missing: never a negative label
    assert labels[study.key(3)] is None
    assert sum(v is None for v in labels.values()) == len(dataset) - 3
    r2 = _by_key(dataset, "reader_r2", "label")
    assert [k for k, v in r2.items() if v is not None] == [study.key(0)]

    assert F.reader_fields(dataset) == {
        "reader_dr_a": {"reader": "Dr. A", "kind": "classification", "level": "slice"},
        "reader_r2": {"reader": "R2", "kind": "classification", "level": "slice"},
    }
    registry = dataset.info[F.INFO_KEY]["readers"]
    assert registry["Dr. A"] == {"slug": "dr_a", "fields": ["reader_dr_a"]}


def test_json_reads_series_level_and_multiframe(dataset, study, tmp_path):
    reads = [
        {"series_instance_uid": study.series_uid, "reader": "R1", "label": "suspicious"},
        {"sop_instance_uid": study.multiframe_sop, "reader": "R1", "label": "benign", "score": 2},
        {"sop_instance_uid": study.multiframe_sop, "frame": 1, "reader": "R2", "label": 4.0},
    ]
    path = _write(tmp_path / "reads.json", json.dumps({"reads": reads}))
    schema.declare_label_schema(dataset, CLASSES + ["4"], overwrite=True)
    rep = readers.import_reader_labels(dataset, path)
    assert rep.errors == []
    assert sorted(rep.fields) == ["reader_r1", "reader_r1_series", "reader_r2"]
    series = _by_key(dataset, "reader_r1_series", "label")
    in_series = {study.key(i) for i in range(len(study.sop_uids))}
    assert {k for k, v in series.items() if v == "suspicious"} == in_series
    assert all(v is None for k, v in series.items() if k not in in_series)
    assert F.reader_fields(dataset)["reader_r1_series"]["level"] == "series"
    # a multi-frame read without a frame applies to every frame; with one, to that frame
    frames = _by_key(dataset, "reader_r1")
    mf = [f"{study.multiframe_sop}:{k}" for k in range(study.n_frames)]
    assert [frames[k].label for k in mf] == ["benign"] * 3 and frames[mf[0]].score == 2.0
    r2 = _by_key(dataset, "reader_r2", "label")
    assert [r2[k] for k in mf] == [None, "4", None]  # 4.0 in JSON names class "4"


def test_json_list_with_malformed_objects_by_position(dataset, study, tmp_path):
    reads = [
        {"sop_instance_uid": study.sop_uids[0], "reader": "R1", "label": "benign"},
        "not an object",
        {"sop_instance_uid": study.sop_uids[1], "reader": "R1", "label": ["benign"]},
        {"sop_instance_uid": study.sop_uids[2], "reader": "R1", "label": "malignant"},
    ]
    rep = readers.import_reader_labels(dataset, _write(tmp_path / "r.json", json.dumps(reads)))
    assert [(e["line"], e["reason"][:14]) for e in rep.errors] == [
        (2, "malformed row:"),
        (3, "malformed row:"),
    ]
    assert "not a JSON object" in rep.errors[0]["reason"]
    assert "lists or objects" in rep.errors[1]["reason"]
    assert rep.n_labels == 2


def test_filepath_keys_resolve_against_the_table_folder(dataset, study, tmp_path):
    rel = os.path.relpath(study.paths[1], tmp_path)
    render = dataset.match({F.DICOM_KEY: study.key(2)}).first().filepath
    path = _write(
        tmp_path / "paths.csv",
        f"filepath,reader,label\n{rel},R1,benign\n{render},R1,malignant\nnope.dcm,R1,benign\n",
    )
    rep = readers.import_reader_labels(dataset, path)
    labels = _by_key(dataset, "reader_r1", "label")
    assert labels[study.key(1)] == "benign" and labels[study.key(2)] == "malignant"
    assert [(e["line"], "unknown filepath" in e["reason"]) for e in rep.errors] == [(4, True)]


def test_key_and_reader_arguments(dataset, study, tmp_path):
    s = study.sop_uids
    # a one-reader file without a reader column
    path = _write(tmp_path / "one.csv", f"sop_instance_uid,label\n{s[0]},benign\n")
    rep = readers.import_reader_labels(dataset, path, reader="R5")
    assert rep.errors == [] and _by_key(dataset, "reader_r5", "label")[study.key(0)] == "benign"
    # reader= also guards a file naming readers: other ids are rejected by line
    path = _write(
        tmp_path / "two.csv",
        f"sop_instance_uid,reader,label\n{s[1]},R5,benign\n{s[2]},R6,benign\n{s[3]},,benign\n",
    )
    rep = readers.import_reader_labels(dataset, path, reader="R5")
    assert [e["line"] for e in rep.errors] == [3]
    assert "not the reader this import is for ('R5')" in rep.errors[0]["reason"]
    assert rep.n_labels == 2 and "reader_r6" not in dataset.get_field_schema()
    # key= picks the column even when another key column is filled
    path = _write(
        tmp_path / "both.csv",
        f"sop_instance_uid,series_instance_uid,reader,label\n{s[0]},{study.series_uid},R7,benign\n",
    )
    rep = readers.import_reader_labels(dataset, path, key="series_instance_uid")
    assert rep.fields == ["reader_r7_series"]
    with pytest.raises(readers.LabelImportError, match="missing the key column 'filepath'"):
        readers.import_reader_labels(dataset, path, key="filepath")


# --- boxes ----------------------------------------------------------------------------


def test_boxes_are_normalised_exactly_and_reimport_replaces(dataset, study, tmp_path):
    s, mf = study.sop_uids, study.multiframe_sop
    path = _write(
        tmp_path / "boxes.csv",
        "sop_instance_uid,frame,reader,label,x,y,width,height,confidence,session\n"
        f"{s[0]},,R1,suspicious,4,6,10,8,0.7,S1\n"
        f"{s[0]},,R1,benign,0,0,32,24,,S1\n"
        f"{mf},2,R1,malignant,1.5,2.5,3,4,,\n"
        f"{s[1]},,R2,benign,3,3,2,2,,\n",
    )
    rep = readers.import_reader_labels(dataset, path)
    assert rep.errors == [] and rep.kind == "boxes"
    boxes = _by_key(dataset, "reader_r1_boxes")
    first, whole = boxes[study.key(0)].detections
    assert first.bounding_box == [4 / 32, 6 / 24, 10 / 32, 8 / 24]
    assert whole.bounding_box == [0.0, 0.0, 1.0, 1.0]
    assert (first.label, first.confidence, first.reader, first.session) == (
        "suspicious",
        0.7,
        "R1",
        "S1",
    )
    assert first.source == os.path.abspath(path)
    (det,) = boxes[f"{mf}:2"].detections
    assert det.bounding_box == [1.5 / 32, 2.5 / 24, 3 / 32, 4 / 24]
    assert boxes[f"{mf}:0"] is None and boxes[study.key(1)] is None
    assert F.reader_fields(dataset, kinds=["boxes"]).keys() == {
        "reader_r1_boxes",
        "reader_r2_boxes",
    }

    before = {f: _dump(dataset, f) for f in ("reader_r1_boxes", "reader_r2_boxes")}
    readers.import_reader_labels(dataset, path)
    assert {f: _dump(dataset, f) for f in before} == before  # replaced, not duplicated


def test_bad_box_rows(dataset, study, tmp_path):
    s, mf = study.sop_uids, study.multiframe_sop
    path = _write(
        tmp_path / "boxes.csv",
        "sop_instance_uid,frame,reader,label,x,y,width,height\n"
        f"{s[0]},,R1,benign,1,1,2,2\n"  # 2 good
        f"{s[0]},,R1,benign,one,1,2,2\n"  # 3 non-numeric
        f"{s[0]},,R1,benign,1,1,0,2\n"  # 4 zero width
        f"{s[0]},,R1,benign,30,1,5,2\n"  # 5 outside the 32 x 24 image
        f"{mf},,R1,benign,1,1,2,2\n"  # 6 multi-frame without frame
        f"{s[0]},,R1,tumour,1,1,2,2\n"  # 7 label not in the schema
        f"{s[0]},,R1,benign,1,,2,2\n",  # 8 missing y
    )
    rep = readers.import_reader_labels(dataset, path)
    reasons = {e["line"]: e["reason"] for e in rep.errors}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert "x 'one' is not a number" in reasons[3]
    assert "must be positive" in reasons[4]
    assert "outside the 32x24 image" in reasons[5]
    assert "give the frame column" in reasons[6]
    assert "not in the declared classes" in reasons[7]
    assert "needs x, y, width and height" in reasons[8]
    assert rep.n_labels == 1


# --- masks ----------------------------------------------------------------------------


def test_png_and_npy_masks_round_trip(dataset, study, tmp_path):
    png_mask = np.zeros((study.rows, study.columns), np.uint8)
    png_mask[2:9, 5:20] = 1
    png_mask[12:14, 0:3] = 2
    Image.fromarray(png_mask).save(tmp_path / "a.png")
    npy_mask = np.zeros((study.rows, study.columns), np.int64)
    npy_mask[10:20, 30:32] = 2
    os.makedirs(tmp_path / "sub")
    np.save(tmp_path / "sub" / "b.npy", npy_mask)
    path = _write(
        tmp_path / "masks.csv",
        "sop_instance_uid,frame,reader,mask_path,timestamp,session\n"
        f"{study.sop_uids[0]},,R1,a.png,2026-03-02T08:00:00,S2\n"
        f"{study.multiframe_sop},1,R2,{tmp_path / 'sub' / 'b.npy'},,\n",
    )
    rep = readers.import_reader_labels(dataset, path)
    assert rep.errors == [] and rep.kind == "masks"
    r1 = _by_key(dataset, "reader_r1_mask")
    seg = r1[study.key(0)]
    np.testing.assert_array_equal(np.asarray(Image.open(seg.mask_path)), png_mask)
    assert (seg.reader, seg.session, seg.read_at) == ("R1", "S2", dt.datetime(2026, 3, 2, 8))
    # written beside the renders, not over the reader's own file
    renders = os.path.dirname(dataset.first().filepath)
    assert seg.mask_path.startswith(os.path.join(renders, "masks", "r1"))
    assert sum(v is not None for v in r1.values()) == 1
    r2 = _by_key(dataset, "reader_r2_mask", "mask_path")
    stored = np.asarray(Image.open(r2[f"{study.multiframe_sop}:1"]))
    np.testing.assert_array_equal(stored, npy_mask)
    assert F.reader_fields(dataset)["reader_r2_mask"]["kind"] == "mask"


def test_bad_mask_rows(dataset, study, tmp_path):
    shape = (study.rows, study.columns)
    np.save(tmp_path / "small.npy", np.zeros((4, 4), np.uint8))
    np.save(tmp_path / "transposed.npy", np.zeros(shape[::-1], np.uint8))
    np.save(tmp_path / "float.npy", np.zeros(shape, np.float32))
    np.save(tmp_path / "nine.npy", np.full(shape, 9, np.uint8))
    np.save(tmp_path / "ok.npy", np.ones(shape, np.uint8))
    s = study.sop_uids
    path = _write(
        tmp_path / "m.csv",
        "sop_instance_uid,reader,mask_path\n"
        f"{s[0]},R1,small.npy\n"  # 2
        f"{s[0]},R1,transposed.npy\n"  # 3
        f"{s[0]},R1,float.npy\n"  # 4
        f"{s[0]},R1,nine.npy\n"  # 5
        f"{s[0]},R1,missing.png\n"  # 6
        f"{s[1]},R1,ok.npy\n"  # 7 good
        f"{s[1]},R1,ok.npy\n"  # 8 second mask for the same image
        f"{study.multiframe_sop},R1,ok.npy\n",  # 9 multi-frame without frame
    )
    rep = readers.import_reader_labels(dataset, path)
    reasons = {e["line"]: e["reason"] for e in rep.errors}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 8, 9]
    assert "(4, 4) does not match the image (rows, columns) (24, 32)" in reasons[2]
    assert "(32, 24) does not match" in reasons[3]
    assert "float32" in reasons[4]
    assert "[9] are not in the declared mask targets" in reasons[5]
    assert "cannot read mask 'missing.png'" in reasons[6]
    assert "already has a mask for this image on line 7" in reasons[8]
    assert "give the frame column" in reasons[9]
    assert rep.n_labels == 1


# --- bad input ------------------------------------------------------------------------


def test_bad_rows_are_reported_by_line_and_good_rows_land(dataset, study, tmp_path):
    s = study.sop_uids[0]
    path = _write(
        tmp_path / "reads.csv",
        "sop_instance_uid,frame,reader,label,score,confidence,timestamp\n"
        f"{s},,R1,benign,1,0.9,2026-03-01T09:00:00\n"  # 2 good
        "1.2.3.4,,R1,benign,1,,\n"  # 3 unknown key
        f"{s},,R2,maligant,,,\n"  # 4 label not in the schema
        f"{s},,R3,benign,9,,\n"  # 5 score out of range
        f"{s},,R3,benign,high,,\n"  # 6 score not a number
        f"{s},,R4,benign,,1.5,\n"  # 7 confidence out of [0, 1]
        f"{s},,R5,benign,,,yesterday\n"  # 8 bad timestamp
        f"{s},,,benign,,,\n"  # 9 empty reader
        f'{s},,"!!",benign,,,\n'  # 10 reader id with no letters or digits
        f"{s},,R1,malignant,,,\n"  # 11 contradicts line 2
        f"{s},,R1,benign,,,\n"  # 12 same read again: not an error
        f"{s},,R6,benign,,,,extra\n"  # 13 more cells than columns
        f"{s},7,R6,benign,,,\n"  # 14 no such frame
        f"{s},,R7,,,,\n"  # 15 empty label
        f"{study.sop_uids[1]},,R7,suspicious,4,0.5,\n",  # 16 good
    )
    before = dataset.values(F.DICOM_KEY)
    rep = readers.import_reader_labels(dataset, path)
    lines = {e["line"]: e["reason"] for e in rep.errors}
    assert sorted(lines) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15]
    assert "unknown sop_instance_uid '1.2.3.4'" in lines[3]
    assert "'maligant' is not in the declared classes" in lines[4]
    assert "score 9 is outside the declared range [1, 5]" in lines[5]
    assert "score 'high' is not a number" in lines[6]
    assert "confidence 1.5 is outside [0, 1]" in lines[7]
    assert "'yesterday' is not ISO 8601" in lines[8]
    assert "empty reader id" in lines[9]
    assert "no letters or digits" in lines[10]
    assert "R1 already read this sample as 'benign' on line 2" in lines[11]
    assert "more cells than the header" in lines[13]
    assert "frame 7 does not exist" in lines[14]
    assert "empty label" in lines[15]
    assert all(e["source"] == os.path.abspath(path) for e in rep.errors)
    assert rep.n_labels == 2 and sorted(rep.fields) == ["reader_r1", "reader_r7"]
    assert _by_key(dataset, "reader_r1", "label")[study.key(0)] == "benign"
    assert dataset.values(F.DICOM_KEY) == before  # no sample added or lost


def test_reader_ids_that_share_a_field_are_refused(dataset, study, tmp_path):
    s = study.sop_uids
    path = _write(
        tmp_path / "r.csv",
        f"sop_instance_uid,reader,label\n{s[0]},Dr A,benign\n{s[1]},dr_a,benign\n",
    )
    rep = readers.import_reader_labels(dataset, path)
    assert rep.errors[0]["line"] == 3
    assert "'Dr A' and 'dr_a' both map to the field reader_dr_a" in rep.errors[0]["reason"]
    # and against readers imported earlier
    later = _write(tmp_path / "later.csv", f"sop_instance_uid,reader,label\n{s[2]},DR-A,benign\n")
    rep = readers.import_reader_labels(dataset, later)
    assert "'Dr A' and 'DR-A'" in rep.errors[0]["reason"] and rep.n_labels == 0
    labels = _by_key(dataset, "reader_dr_a")
    assert {k for k, v in labels.items() if v} == {study.key(0)}
    assert labels[study.key(0)].reader == "Dr A"


def test_whole_file_errors_name_the_problem(dataset, study, tmp_path):
    def fails(text, match, name="f.csv", **kwargs):
        with pytest.raises(readers.LabelImportError, match=match):
            readers.import_reader_labels(dataset, _write(tmp_path / name, text), **kwargs)

    fails("sop_instance_uid,reader\n1.2,R1\n", "cannot tell what the table holds")
    fails("reader,label\nR1,benign\n", "missing a key column")
    fails("sop_instance_uid,label\n1.2,benign\n", r"missing required column\(s\) \['reader'\]")
    fails(
        "sop_instance_uid,reader,label,x,y\n1,R1,a,1,1\n",
        r"missing required column\(s\) \['width', 'height'\]",
        kind="boxes",
    )
    fails("", "empty file")
    fails("{not json", "invalid JSON at line 1", name="f.json")
    fails('{"rows": []}', "expected a list of objects", name="g.json")
    fails("x", "kind 'pictures'", kind="pictures")
    fails("x", r"pass reader=<id>", name="s.dcm", kind="seg")
    fails("not dicom", "neither a CSV/JSON table nor readable DICOM", name="t.dcm", reader="R1")
    with pytest.raises(readers.LabelImportError, match="no such file"):
        readers.import_reader_labels(dataset, str(tmp_path / "absent.csv"))


def test_importing_reader_b_never_changes_reader_a(dataset, study, tmp_path):
    s = study.sop_uids
    a = _write(
        tmp_path / "a.csv",
        f"sop_instance_uid,reader,label,x,y,width,height\n{s[0]},A,benign,1,1,4,4\n",
    )
    readers.import_reader_labels(dataset, a)
    reads = _write(tmp_path / "ar.csv", f"sop_instance_uid,reader,label\n{s[0]},A,benign\n")
    readers.import_reader_labels(dataset, reads)
    before = {f: _dump(dataset, f) for f in F.reader_fields(dataset)}
    info_before = dataset.info[F.INFO_KEY]["readers"]["A"]
    b = _write(
        tmp_path / "b.csv",
        "sop_instance_uid,reader,label,x,y,width,height\n"
        f"{s[0]},B,malignant,2,2,5,5\n{s[1]},B,benign,1,1,2,2\n",
    )
    readers.import_reader_labels(dataset, b)
    readers.import_reader_labels(
        dataset, _write(tmp_path / "br.csv", f"sop_instance_uid,reader,label\n{s[0]},B,malignant\n")
    )
    for field, values in before.items():
        assert _dump(dataset, field) == values, field
    assert dataset.info[F.INFO_KEY]["readers"]["A"] == info_before
    assert set(F.reader_fields(dataset)) == {
        "reader_a",
        "reader_a_boxes",
        "reader_b",
        "reader_b_boxes",
    }


def test_one_bulk_write_per_field(dataset, study, tmp_path, monkeypatch):
    calls = []
    original = type(dataset).set_values

    def counting(self, field_name, *args, **kwargs):
        calls.append((field_name, kwargs.get("key_field")))
        return original(self, field_name, *args, **kwargs)

    monkeypatch.setattr(type(dataset), "set_values", counting)
    rows = "".join(f"{sop},R{i % 3},benign\n" for sop in study.sop_uids for i in range(3))
    path = _write(tmp_path / "many.csv", "sop_instance_uid,reader,label\n" + rows)
    rep = readers.import_reader_labels(dataset, path)
    assert rep.n_labels == 3 * len(study.sop_uids)
    assert sorted(calls) == [(f"reader_r{i}", F.DICOM_KEY) for i in range(3)]


def test_a_same_named_field_of_another_type_is_refused(dataset, study, tmp_path):
    import fiftyone as fo

    dataset.add_sample_field("reader_r1", fo.StringField)
    s = study.sop_uids[0]
    path = _write(
        tmp_path / "r.csv", f"sop_instance_uid,reader,label\n{s},R0,benign\n{s},R1,benign\n"
    )
    with pytest.raises(readers.LabelImportError, match="reader_r1 already exists as"):
        readers.import_reader_labels(dataset, path)
    assert "reader_r0" not in dataset.get_field_schema()  # nothing written
