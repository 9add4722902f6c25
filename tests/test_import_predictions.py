"""import_predictions on the demo study, in a real database, from real files: the round
trip, every way of naming a sample (multi-frame frames included), each kind of bad input
with its message, masks, the reader-field guard, the operator (SDK and delegated) and
FiftyOne brain's mistakenness reading the imported field."""

import csv
import hashlib
import json
import os

import numpy as np
import pytest
from helpers_plugin import form, op, raw_reader_docs, run_queued
from PIL import Image

from multireader.core import predictions as P
from multireader.ingest.prediction_import import import_predictions

CLASSES = ["benign", "probably_benign", "suspicious", "malignant"]
#: one column per class, spelled each accepted way, in an order that is not the schema's
COLUMNS = {
    "malignant": "p_malignant",
    "benign": "benign",
    "suspicious": "prob_suspicious",
    "probably_benign": "p_probably_benign",
}


def _samples(ds):
    names = ["id", "sop_instance_uid", "frame_index", "n_frames", "dicom_key"]
    names += ["filepath", "dicom_path", "rows", "columns"]
    return [dict(zip(names, row, strict=True)) for row in zip(*ds.values(names), strict=True)]


def _dirichlet(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(len(CLASSES), 0.7), size=n)


def _write_csv(path, key_columns, rows, probs):
    """One line per row: the key cells, then the class columns (repr keeps every digit)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*key_columns, *COLUMNS.values()])
        for keys, p in zip(rows, probs, strict=True):
            cells = [p[CLASSES.index(c)] for c in COLUMNS]
            w.writerow([*keys, *(repr(float(v)) if isinstance(v, float) else v for v in cells)])
    return str(path)


def _stored(ds, field):
    """{sample id: probabilities} of a prediction field, None where no prediction."""
    ids, classes, probs = P.read_probabilities(ds, field)
    assert classes == CLASSES
    return {i: (None if np.isnan(p).any() else p) for i, p in zip(ids, probs, strict=True)}


def _multiframe(samples):
    mf = [s for s in samples if (s["n_frames"] or 1) > 1]
    assert len(mf) == 14 and len({s["sop_instance_uid"] for s in mf}) == 1
    return mf


# --- round trips ----------------------------------------------------------------------


def test_round_trip_by_sop_instance_uid_and_frame(demo_clone, tmp_path):
    samples = _samples(demo_clone)
    probs = _dirichlet(len(samples))
    order = np.random.default_rng(1).permutation(len(samples))  # rows in no sample order
    rows = [(samples[i]["sop_instance_uid"], samples[i]["frame_index"]) for i in order]
    path = _write_csv(tmp_path / "preds.csv", ["sop_instance_uid", "frame"], rows, probs[order])

    res = import_predictions(demo_clone, path)

    assert res["imported"] == len(samples) == 336 and res["skipped"] == []
    assert res["key"] == "sop_instance_uid" and res["n_without_prediction"] == 0
    stored = _stored(demo_clone, "predictions_imported")
    for s, p in zip(samples, probs, strict=True):
        np.testing.assert_allclose(stored[s["id"]], p, rtol=0, atol=1e-9)
    # the label is the most probable class, the confidence its probability
    labels = dict(zip(*demo_clone.values(["id", "predictions_imported.label"]), strict=True))
    conf = dict(zip(*demo_clone.values(["id", "predictions_imported.confidence"]), strict=True))
    for s, p in zip(samples, probs, strict=True):
        assert labels[s["id"]] == CLASSES[int(np.argmax(p))]
        assert conf[s["id"]] == pytest.approx(p.max(), abs=1e-9)
    # provenance on the field: where from, which bytes, matched how, how many
    meta = demo_clone.get_field("predictions_imported").info["multireader"]
    assert meta["role"] == "prediction" and meta["source"] == "import"
    assert meta["classes"] == CLASSES
    with open(path, "rb") as f:
        assert meta["parameters"]["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert meta["parameters"]["path"] == os.path.abspath(path)
    assert meta["parameters"]["key"] == "sop_instance_uid"
    assert meta["parameters"]["n_imported"] == 336 and meta["n_predicted"] == 336


def test_multi_frame_samples_are_matched_by_frame(demo_clone, tmp_path):
    samples = _samples(demo_clone)
    mf = _multiframe(samples)
    probs = _dirichlet(len(mf), seed=3)  # a different distribution for every frame
    rows = [(s["sop_instance_uid"], s["frame_index"]) for s in mf[::-1]]
    sop = mf[0]["sop_instance_uid"]
    path = _write_csv(tmp_path / "mf.csv", ["sop_instance_uid", "frame"], rows, probs[::-1])
    with open(path, "a", newline="") as f:  # lines 16 and 17
        csv.writer(f).writerow([sop, "", 0.25, 0.25, 0.25, 0.25])
        csv.writer(f).writerow([sop, 99, 0.25, 0.25, 0.25, 0.25])

    res = import_predictions(demo_clone, path, "predictions_mf")

    assert res["imported"] == 14
    assert res["n_without_prediction"] == len(samples) - 14
    assert [(s["line"], s["key"], s["reason"]) for s in res["skipped"]] == [
        (16, sop, f"sop_instance_uid {sop!r} names 14 frames: give the frame column (0-based)"),
        (17, f"{sop} frame 99", f"sop_instance_uid {sop!r} has no frame 99 in the dataset"),
    ]
    stored = _stored(demo_clone, "predictions_mf")
    for s, p in zip(mf, probs, strict=True):
        np.testing.assert_allclose(stored[s["id"]], p, atol=1e-9)
    others = [s["id"] for s in samples if (s["n_frames"] or 1) == 1]
    assert all(stored[i] is None for i in others)


def test_match_by_dicom_key_from_json(demo_clone, tmp_path):
    samples = _samples(demo_clone)[::2]  # every other sample; the rest get None
    probs = _dirichlet(len(samples), seed=5)
    items = [
        {"dicom_key": s["dicom_key"], "probabilities": dict(zip(CLASSES, p.tolist(), strict=True))}
        for s, p in zip(samples, probs, strict=True)
    ]
    path = tmp_path / "preds.json"
    path.write_text(json.dumps({"predictions": items}))

    res = import_predictions(demo_clone, str(path), "predictions_json")

    assert res["key"] == "dicom_key" and res["imported"] == len(samples) == 168
    stored = _stored(demo_clone, "predictions_json")
    for s, p in zip(samples, probs, strict=True):
        np.testing.assert_allclose(stored[s["id"]], p, atol=1e-9)
    assert sum(v is None for v in stored.values()) == 168


def test_match_by_path_relative_absolute_and_dicom_path_with_frame(demo_clone, tmp_path):
    samples = _samples(demo_clone)
    probs = _dirichlet(len(samples), seed=7)
    table = tmp_path / "model_out"
    table.mkdir()
    rows = []
    for n, s in enumerate(samples):
        if (s["n_frames"] or 1) > 1:  # one DICOM file holds 14 frames: path + frame
            rows.append((s["dicom_path"], s["frame_index"]))
        elif n % 3 == 0:  # the rendered image, relative to the table's folder
            rows.append((os.path.relpath(s["filepath"], table), ""))
        elif n % 3 == 1:
            rows.append((s["filepath"], ""))
        else:
            rows.append((s["dicom_path"], ""))
    assert any(not os.path.isabs(r[0]) for r in rows)
    path = _write_csv(table / "preds.csv", ["path", "frame"], rows, probs)

    res = import_predictions(demo_clone, path, "predictions_path")

    assert res["key"] == "path" and res["imported"] == 336 and res["skipped"] == []
    stored = _stored(demo_clone, "predictions_path")
    for s, p in zip(samples, probs, strict=True):
        np.testing.assert_allclose(stored[s["id"]], p, atol=1e-9)


def test_reimport_replaces_and_a_view_leaves_the_rest_alone(demo_clone, tmp_path):
    samples = _samples(demo_clone)
    first = _write_csv(
        tmp_path / "a.csv",
        ["dicom_key"],
        [(s["dicom_key"],) for s in samples],
        _dirichlet(len(samples), seed=11),
    )
    import_predictions(demo_clone, first, "predictions_re")
    # a second file covering half the samples: the other half must not keep stale values
    half = samples[:100]
    probs = _dirichlet(len(half), seed=12)
    second = _write_csv(tmp_path / "b.csv", ["dicom_key"], [(s["dicom_key"],) for s in half], probs)
    res = import_predictions(demo_clone, second, "predictions_re")
    assert res["imported"] == 100 and res["n_without_prediction"] == 236
    stored = _stored(demo_clone, "predictions_re")
    assert sum(v is not None for v in stored.values()) == 100
    for s, p in zip(half, probs, strict=True):
        np.testing.assert_allclose(stored[s["id"]], p, atol=1e-9)
    meta = demo_clone.get_field("predictions_re").info["multireader"]["parameters"]
    assert meta["path"] == second


# --- bad input ------------------------------------------------------------------------


def _bad_rows_file(samples, tmp_path):
    """A table with six bad lines among good ones; returns (path, good, expected skips)."""
    good = samples[:20]
    probs = _dirichlet(len(good), seed=2)
    a, b, c, d, e, f = (s["dicom_key"] for s in samples[20:26])
    lines = [
        [s["dicom_key"], *(repr(float(v)) for v in p)] for s, p in zip(good, probs, strict=True)
    ]
    header = ["dicom_key", "benign", "probably_benign", "suspicious", "malignant"]
    bad = [
        ["1.2.3.999:0", "0.25", "0.25", "0.25", "0.25"],  # line 22: no such sample
        [good[3]["dicom_key"], "0.1", "0.2", "0.3", "0.4"],  # line 23: a duplicate
        [a, "0.3", "0.3", "0.2", "0.1"],  # line 24: sums to 0.9
        [b, "-0.1", "0.6", "0.3", "0.2"],  # line 25: negative
        [c, "abc", "0.6", "0.2", "0.2"],  # line 26: not a number
        [d, "", "0.6", "0.2", "0.2"],  # line 27: empty
        [e, "0.5", "0.5", "0", "0"],  # line 28: fine (zeros are probabilities)
        [f, "nan", "0.5", "0.5", "0"],  # line 29: not finite
    ]
    path = tmp_path / "bad.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *lines, *bad])
    expected = [
        (22, "1.2.3.999:0", "no sample in the dataset has dicom_key '1.2.3.999:0'"),
        (
            23,
            good[3]["dicom_key"],
            "a second prediction for this sample (the first, on line 5, is kept)",
        ),
        (24, a, "probabilities sum to 0.9000, not 1"),
        (25, b, "a probability is negative"),
        (26, c, "column 'benign': 'abc' is not a number"),
        (27, d, "column 'benign' is empty"),
        (29, f, "column 'benign': 'nan' is not a finite number"),
    ]
    return str(path), good, probs, expected


def test_bad_rows_are_reported_by_line_and_the_rest_imported(demo_clone, tmp_path):
    samples = _samples(demo_clone)
    path, good, probs, expected = _bad_rows_file(samples, tmp_path)

    res = import_predictions(demo_clone, path, "predictions_bad")

    assert [(s["line"], s["key"], s["reason"]) for s in res["skipped"]] == expected
    assert all(s["file"] == path for s in res["skipped"])
    assert res["imported"] == 21 and res["n_skipped"] == 7 and res["n_rows"] == 28
    stored = _stored(demo_clone, "predictions_bad")
    for s, p in zip(good, probs, strict=True):  # the duplicate's first line stands
        np.testing.assert_allclose(stored[s["id"]], p, atol=1e-9)
    np.testing.assert_allclose(stored[samples[24]["id"]], [0.5, 0.5, 0, 0], atol=1e-9)
    for s in samples[20:24] + samples[25:]:
        assert stored[s["id"]] is None
    params = demo_clone.get_field("predictions_bad").info["multireader"]["parameters"]
    assert (params["n_rows"], params["n_imported"], params["n_skipped"]) == (28, 21, 7)


def test_strict_mode_writes_nothing(demo_clone, tmp_path):
    samples = _samples(demo_clone)
    path, *_ = _bad_rows_file(samples, tmp_path)
    with pytest.raises(P.PredictionError) as err:
        import_predictions(demo_clone, path, "predictions_strict", strict=True)
    message = str(err.value)
    assert message.startswith(
        "7 row(s) cannot be imported and strict mode is on, so nothing was written: "
        "line 22: no sample in the dataset has dicom_key '1.2.3.999:0'; line 23: a second"
    )
    assert "line 26: column 'benign': 'abc' is not a number" in message
    assert demo_clone.get_field("predictions_strict") is None


def test_unknown_and_missing_classes_are_file_level_errors(demo_clone, tmp_path):
    key = _samples(demo_clone)[0]["dicom_key"]
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(
        "dicom_key,benign,probably_benign,suspicious,malignant,p_nodule\n"
        f"{key},0.2,0.2,0.2,0.2,0.2\n"
    )
    with pytest.raises(P.PredictionError) as err:
        import_predictions(demo_clone, str(unknown))
    assert str(err.value) == (
        f"{unknown}: class 'nodule' (column 'p_nodule') is not in the label schema; its "
        "classes are ['benign', 'probably_benign', 'suspicious', 'malignant']"
    )

    missing = tmp_path / "missing.csv"
    missing.write_text(f"dicom_key,benign,p_probably_benign,suspicious\n{key},0.2,0.3,0.5\n")
    with pytest.raises(P.PredictionError) as err:
        import_predictions(demo_clone, str(missing))
    assert str(err.value) == (
        f"{missing}: no column gives the schema class(es) ['malignant']; name a column after "
        "each class, e.g. 'malignant', 'p_malignant' or 'prob_malignant'"
    )

    items = [
        {"dicom_key": key, "probabilities": {"benign": 0.5, "cyst": 0.5}},
        {"dicom_key": key, "probabilities": {"benign": 0.5, "cyst": 0.5, "nodule": 0}},
    ]
    js = tmp_path / "unknown.json"
    js.write_text(json.dumps(items))
    with pytest.raises(P.PredictionError) as err:
        import_predictions(demo_clone, str(js))
    assert str(err.value) == (
        f"{js}: class 'cyst' (items 1, 2), class 'nodule' (item 2) are not in the label "
        "schema; its classes are ['benign', 'probably_benign', 'suspicious', 'malignant']"
    )

    nokey = tmp_path / "nokey.csv"
    nokey.write_text("benign,probably_benign,suspicious,malignant\n0.25,0.25,0.25,0.25\n")
    with pytest.raises(P.PredictionError, match="no column names the samples; give one of"):
        import_predictions(demo_clone, str(nokey))
    keyed = tmp_path / "keyed.csv"
    keyed.write_text(f"dicom_key,benign,probably_benign,suspicious,malignant\n{key},1,0,0,0\n")
    with pytest.raises(P.PredictionError, match="no 'filepath' column to match samples by"):
        import_predictions(demo_clone, str(keyed), key="filepath")
    # nothing was written by any of them
    assert demo_clone.get_field("predictions_imported") is None


def test_json_items_are_reported_by_position(demo_clone, tmp_path):
    samples = _samples(demo_clone)
    ok = {"benign": 0.1, "probably_benign": 0.2, "suspicious": 0.3, "malignant": 0.4}
    items = [
        {"dicom_key": samples[0]["dicom_key"], "probabilities": ok},
        "not an object",
        {"dicom_key": samples[1]["dicom_key"], "probabilities": {"benign": 1.0}},
        {"dicom_key": samples[2]["dicom_key"]},
        {"dicom_key": samples[3]["dicom_key"], "probabilities": {**ok, "benign": "high"}},
        {"probabilities": ok},
    ]
    path = tmp_path / "items.json"
    path.write_text(json.dumps(items))
    res = import_predictions(demo_clone, str(path), "predictions_items")
    assert res["imported"] == 1
    assert [(s["line"], s["reason"]) for s in res["skipped"]] == [
        (2, "not a JSON object: 'not an object'"),
        (3, "no probability for class 'probably_benign'"),
        (4, "no 'probabilities' object ({class: probability})"),
        (5, "probability of 'benign': 'high' is not a number"),
        (6, "empty dicom_key"),
    ]
    with pytest.raises(P.PredictionError) as err:
        import_predictions(demo_clone, str(path), "predictions_strict", strict=True)
    assert str(err.value).startswith(
        "5 row(s) cannot be imported and strict mode is on, so nothing was written: "
        "item 2: not a JSON object: 'not an object'; item 3: no probability for class"
    )


def test_no_label_schema_and_nothing_importable(dataset, demo_clone, tmp_path):
    import fiftyone as fo

    path = tmp_path / "p.csv"
    path.write_text("filepath,benign\n/nowhere.png,1\n")
    dataset.add_sample(fo.Sample(filepath="/nowhere.png"))
    with pytest.raises(P.PredictionError, match="declares no label schema: run declare_label"):
        import_predictions(dataset, str(path))
    bad = tmp_path / "none.csv"
    bad.write_text("dicom_key,benign,probably_benign,suspicious,malignant\nx:0,1,0,0,0\n")
    with pytest.raises(P.PredictionError) as err:
        import_predictions(demo_clone, str(bad))
    assert str(err.value) == (
        f"{bad}: none of its 1 row(s) can be imported: line 2: no sample in the dataset has "
        "dicom_key 'x:0'"
    )


# --- masks ----------------------------------------------------------------------------


def test_masks_imported_checked_and_reported(demo_clone, tmp_path):
    samples = [s for s in _samples(demo_clone) if (s["n_frames"] or 1) == 1][:6]
    rows, cols = samples[0]["rows"], samples[0]["columns"]
    masks_dir = tmp_path / "masks"
    masks_dir.mkdir()
    expected = {}
    lines = [["sop_instance_uid", "mask_path"]]
    for n, s in enumerate(samples[:3]):
        m = np.zeros((rows, cols), np.uint8)
        m[10 + n : 40 + n, 20:60] = 1
        expected[s["id"]] = m
        if n == 2:  # an NPY, relative path
            np.save(masks_dir / f"{n}.npy", m)
            lines.append([s["sop_instance_uid"], f"masks/{n}.npy"])
        else:
            Image.fromarray(m).save(masks_dir / f"{n}.png")
            lines.append([s["sop_instance_uid"], str(masks_dir / f"{n}.png")])
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(masks_dir / "small.png")
    lines.append([samples[3]["sop_instance_uid"], "masks/small.png"])  # line 5
    (masks_dir / "broken.png").write_bytes(b"not a png")
    lines.append([samples[4]["sop_instance_uid"], "masks/broken.png"])  # line 6
    two = np.zeros((rows, cols), np.uint8)
    two[0, 0] = 2
    Image.fromarray(two).save(masks_dir / "two.png")
    lines.append([samples[5]["sop_instance_uid"], "masks/two.png"])  # line 7
    manifest = tmp_path / "masks.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows(lines)
    probs = _dirichlet(len(samples))
    preds = _write_csv(
        tmp_path / "p.csv", ["sop_instance_uid"], [(s["sop_instance_uid"],) for s in samples], probs
    )

    res = import_predictions(demo_clone, preds, "predictions_seg", masks=str(manifest))

    assert res["imported"] == 6 and res["masks_imported"] == 3
    assert res["mask_field"] == "predictions_seg_mask"
    reasons = [(s["line"], s["reason"]) for s in res["skipped"]]
    assert reasons[0] == (
        5,
        f"mask shape (10, 12) does not match the image (rows, columns) ({rows}, {cols})",
    )
    assert reasons[1][0] == 6 and reasons[1][1].startswith("cannot read mask 'masks/broken.png':")
    assert reasons[2] == (7, "mask values [2] are not in the declared mask targets [1]")
    assert all(s["file"] == str(manifest) for s in res["skipped"])
    segs = dict(zip(*demo_clone.values(["id", "predictions_seg_mask"]), strict=True))
    for sid, m in expected.items():
        assert os.path.isabs(segs[sid].mask_path)
        np.testing.assert_array_equal(segs[sid].get_mask(), m)  # as FiftyOne reads it
    assert segs[samples[0]["id"]].mask_path == str(masks_dir / "0.png")
    assert segs[samples[2]["id"]].mask_path.endswith(".png")  # the NPY, written as a PNG
    assert sum(v is not None for v in segs.values()) == 3
    meta = demo_clone.get_field("predictions_seg_mask").info["multireader"]
    assert meta["role"] == "prediction" and meta["kind"] == "mask"
    assert meta["parameters"]["path"] == str(manifest) and meta["n_predicted"] == 3
    assert P.prediction_fields(demo_clone, kind="mask") == {"predictions_seg_mask": meta}

    # strict: the wrong-shape mask alone refuses the whole import
    with pytest.raises(P.PredictionError, match=r"masks.csv line 5: mask shape \(10, 12\)"):
        import_predictions(demo_clone, preds, "predictions_seg2", masks=str(manifest), strict=True)
    assert demo_clone.get_field("predictions_seg2") is None


# --- reader fields are never written --------------------------------------------------


def test_refuses_to_write_into_a_reader_field(demo_clone, tmp_path):
    samples = _samples(demo_clone)
    path = _write_csv(
        tmp_path / "p.csv",
        ["dicom_key"],
        [(s["dicom_key"],) for s in samples],
        _dirichlet(len(samples)),
    )
    names, before = raw_reader_docs(demo_clone)
    info_before = demo_clone.get_field("reader_r1").info
    assert "reader_r1" in names and "reader_r1_mask" in names
    with pytest.raises(P.PredictionError, match="field 'reader_r1' holds reader labels"):
        import_predictions(demo_clone, path, "reader_r1")
    with pytest.raises(P.PredictionError, match="field 'reader_r1_mask' holds reader labels"):
        import_predictions(demo_clone, path, "ok_field", masks=path, mask_field="reader_r1_mask")
    with pytest.raises(P.PredictionError, match="does not hold Classification labels"):
        import_predictions(demo_clone, path, "filepath")
    names_after, after = raw_reader_docs(demo_clone)
    assert names_after == names and after == before
    assert demo_clone.get_field("reader_r1").info == info_before
    assert demo_clone.get_field("ok_field") is None


# --- the operator -----------------------------------------------------------------------


def test_operator_form_sdk_and_delegated(demo_clone, tmp_path):
    props = form("import_predictions", demo_clone)
    assert props["field"]["default"] == "predictions_imported"
    assert props["key"]["default"] == "auto" and props["strict"]["default"] is False
    assert {"path", "masks", "delegate", "target"} <= set(props)
    assert "benign, probably_benign, suspicious, malignant" in str(props["path"])

    samples = _samples(demo_clone)
    path, good, probs, expected = _bad_rows_file(samples, tmp_path)
    res = op("import_predictions")(demo_clone, path, "predictions_sdk")
    assert res["imported"] == 21 and res["n_skipped"] == 7
    assert [(s["line"], s["reason"]) for s in res["skipped"]] == [
        (line, reason) for line, _, reason in expected
    ]
    stored = _stored(demo_clone, "predictions_sdk")
    np.testing.assert_allclose(stored[good[0]["id"]], probs[0], atol=1e-9)
    groups = {g.name: g.paths for g in demo_clone.app_config.sidebar_groups}
    assert "predictions_sdk" in groups["predictions"]

    # the SDK call on a view imports into that view only
    view = demo_clone.limit(10)
    res = op("import_predictions")(view, path, "predictions_view")
    assert res["imported"] == 10 and res["n_samples"] == 10
    assert res["skipped"][0]["reason"].startswith("no sample in the view has dicom_key")

    queued = op("import_predictions")(demo_clone, path, "predictions_queued", delegate=True)
    assert demo_clone.get_field("predictions_queued") is None  # only queued so far
    assert queued is not None
    res = run_queued("import_predictions", demo_clone)
    assert res["imported"] == 21 and res["field"] == "predictions_queued"
    queued_stored = _stored(demo_clone, "predictions_queued")
    assert queued_stored.keys() == stored.keys()
    for sid, p in stored.items():
        if p is None:
            assert queued_stored[sid] is None
        else:
            np.testing.assert_allclose(queued_stored[sid], p, atol=1e-12)

    with pytest.raises(Exception, match="holds reader labels"):
        op("import_predictions")(demo_clone, path, "reader_r2")


# --- FiftyOne brain reads it -----------------------------------------------------------------


def test_brain_mistakenness_accepts_the_imported_field(demo_clone, tmp_path):
    import fiftyone.brain as fob

    samples = _samples(demo_clone)
    probs = _dirichlet(len(samples), seed=21)
    probs[0] = [1.0, 0.0, 0.0, 0.0]  # a zero becomes log(1e-12), still a valid logit
    path = _write_csv(
        tmp_path / "p.csv", ["dicom_key"], [(s["dicom_key"],) for s in samples], probs
    )
    import_predictions(demo_clone, path, "predictions_brain")
    view = demo_clone.exists("reader_r1").exists("predictions_brain")
    assert 0 < len(view) < len(demo_clone)

    fob.compute_mistakenness(
        view,
        "predictions_brain",
        label_field="reader_r1",
        mistakenness_field="mistakenness_imported",
        use_logits=True,
    )

    by_id = {s["id"]: p for s, p in zip(samples, probs, strict=True)}
    ids, labels, got = view.values(["id", "reader_r1.label", "mistakenness_imported"])
    for sid, label, value in zip(ids, labels, got, strict=True):
        p = by_id[sid]
        h = -np.sum(p * np.log(np.clip(p, 1e-300, None)))
        m = -1.0 if CLASSES[int(np.argmax(p))] == label else 1.0
        assert value == pytest.approx((m * np.exp(-h) + 1) / 2, abs=1e-6)
