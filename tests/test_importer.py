"""DICOM import on real files: values, frames, ordering, duplicates, bad files."""

import os
import shutil

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from multireader.core import fields as F
from multireader.ingest import importer
from multireader.io import demo, source_paths


def _sources(view) -> list:
    """The samples' source files: ``dicom_path`` stores them without folder names."""
    return source_paths.resolve_all(view.values(F.DICOM_PATH))


def _import(dataset, inputs, tmp_path, **kwargs):
    return importer.import_dicom(dataset, inputs, render_dir=str(tmp_path / "renders"), **kwargs)


def test_ct_values_are_hounsfield_units(dataset, tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = 40, 400
    path = str(tmp_path / "ct_windowed.dcm")
    ds.save_as(path)
    _import(dataset, path, tmp_path)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept
    )
    sample = dataset.first()
    native = np.load(sample[F.NATIVE_PATH])
    np.testing.assert_array_equal(native, expected)
    assert sample[F.NATIVE_UNIT] == "HU"
    assert sample["modality"] == "CT"
    assert sample[F.PIXEL_SPACING] == pytest.approx([float(v) for v in ds.PixelSpacing])
    # the render follows the file's own window: [c - w/2, c + w/2] -> [0, 255]
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    render = np.asarray(Image.open(sample.filepath))
    assert render.shape == native.shape
    assert np.all(render[native <= c - w / 2] == 0)
    assert np.all(render[native >= c + w / 2] == 255)


def test_monochrome1_is_inverted_and_colour_keeps_three_channels(dataset, tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for k in ("WindowCenter", "WindowWidth"):
        if k in ds:
            del ds[k]
    written = {}
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        ds.PhotometricInterpretation = photometric
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        written[photometric] = str(tmp_path / f"{photometric}.dcm")
        ds.save_as(written[photometric])
    inverted, mono1 = written["MONOCHROME1"], written["MONOCHROME2"]
    rgb = get_testdata_file("SC_rgb.dcm")
    _import(dataset, [inverted, mono1, rgb], tmp_path, num_workers=1)
    by_path = dict(zip(_sources(dataset), dataset, strict=True))
    a = np.asarray(Image.open(by_path[os.path.abspath(inverted)].filepath)).astype(int)
    b = np.asarray(Image.open(by_path[os.path.abspath(mono1)].filepath)).astype(int)
    # same pixels, same auto window, opposite polarity
    assert np.abs(a + b - 255).max() <= 1
    colour = by_path[os.path.abspath(rgb)]
    assert colour.metadata.num_channels == 3
    assert np.asarray(Image.open(colour.filepath)).shape[-1] == 3
    np.testing.assert_array_equal(np.load(colour[F.NATIVE_PATH]), pydicom.dcmread(rgb).pixel_array)


def test_every_frame_of_a_multiframe_file_is_a_sample(dataset, tmp_path):
    path = get_testdata_file("emri_small.dcm")
    frames = pydicom.dcmread(path).pixel_array
    rep = _import(dataset, path, tmp_path)
    assert rep.imported == len(dataset) == frames.shape[0] > 1
    for sample in dataset.sort_by(F.FRAME_INDEX):
        np.testing.assert_array_equal(np.load(sample[F.NATIVE_PATH]), frames[sample[F.FRAME_INDEX]])
        assert sample[F.N_FRAMES] == frames.shape[0]


def test_series_are_ordered_by_position_not_file_name(dataset, tmp_path):
    study = demo.generate_demo_study(
        str(tmp_path / "study"), seed=5, n_series=2, slices_per_series=6
    )
    _import(dataset, study.dicom_dir, tmp_path)
    for series in dataset.distinct(F.SERIES_UID):
        view = dataset.match({F.SERIES_UID: series})
        paths, index = _sources(view), view.values(F.SLICE_INDEX)
        z = [
            float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])
            for p in paths
        ]
        by_position = [paths[i] for i in np.argsort(z)]
        by_index = [paths[i] for i in np.argsort(index)]
        assert by_index == by_position
        assert sorted(index) == list(range(len(paths)))
        assert sorted(paths) != by_position  # the names really are shuffled
    assert F.VOLUME_VIEW in dataset.list_saved_views()
    assert len(dataset.load_saved_view(F.VOLUME_VIEW)) == 2


def test_reimport_adds_nothing_and_bad_files_are_reported(dataset, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = get_testdata_file("CT_small.dcm")
    shutil.copy(good, folder / "ct.dcm")
    (folder / "notes.txt").write_text("not an image")
    with open(get_testdata_file("MR_small.dcm"), "rb") as f:
        data = f.read()
    (folder / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (folder / "empty.dcm").write_bytes(b"")
    rep = _import(dataset, [str(folder), str(tmp_path / "missing")], tmp_path)
    assert rep.imported == 1
    reasons = {os.path.basename(s["path"]): s["reason"] for s in rep.skipped}
    assert set(reasons) == {"notes.txt", "truncated.dcm", "empty.dcm", "missing"}
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "truncated" in reasons["truncated.dcm"] or "pixel data" in reasons["truncated.dcm"]
    assert "empty" in reasons["empty.dcm"]
    assert "no such file" in reasons["missing"]
    # the stored report names the files without their folder or file names
    stored = dataset.info["dicom_import"]["skipped"]
    assert [s["reason"] for s in stored] == [s["reason"] for s in rep.skipped]
    assert all(source_paths.is_stored_form(s["path"]) for s in stored)
    assert source_paths.resolve_all(s["path"] for s in stored) == [
        os.path.abspath(s["path"]) for s in rep.skipped
    ]

    again = _import(dataset, str(folder), tmp_path)
    assert again.imported == 0 and again.duplicates == 1
    assert len(dataset) == 1


def test_presets_render_from_native_values(dataset, tmp_path):
    _import(dataset, get_testdata_file("CT_small.dcm"), tmp_path, presets=["bone"])
    out = importer.render_presets(dataset, ["lung"])
    assert out["fields"] == ["filepath_lung"]
    sample = dataset.first()
    native = np.load(sample[F.NATIVE_PATH])
    lung = np.asarray(Image.open(sample["filepath_lung"])).astype(int)
    bone = np.asarray(Image.open(sample["filepath_bone"])).astype(int)
    for image, (c, w) in ((lung, (-600, 1500)), (bone, (400, 1800))):
        expected = np.clip((native - (c - 0.5 - (w - 1) / 2)) / (w - 1) * 255 + 0.5, 0, 255).astype(
            int
        )
        assert np.abs(image - expected).max() <= 1
    assert {"filepath_lung", "filepath_bone"} <= set(dataset.app_config.media_fields)


def test_identifiers_only_on_request_and_patient_key_is_a_stable_pseudonym(
    dataset, tmp_path, monkeypatch
):
    monkeypatch.setenv("MULTIREADER_SALT", "test-salt")
    path = get_testdata_file("CT_small.dcm")
    header = pydicom.dcmread(path, stop_before_pixels=True)
    _import(dataset, path, tmp_path)
    sample = dataset.first()
    assert "dicom_identifiers" not in dataset.get_field_schema()
    assert sample[F.PATIENT_KEY] and str(header.PatientID) not in sample[F.PATIENT_KEY]
    assert (
        sample["patient_age_bin"] is None
        or "-" in sample["patient_age_bin"]
        or "+" in sample["patient_age_bin"]
    )

    import fiftyone as fo

    other = fo.Dataset()
    try:
        importer.import_dicom(
            other, path, render_dir=str(tmp_path / "r2"), include_identifiers=True
        )
        copied = other.first()["dicom_identifiers"]
        assert copied["PatientName"] == str(header.PatientName)
        assert other.first()[F.PATIENT_KEY] == sample[F.PATIENT_KEY]  # stable across imports
    finally:
        other.delete()


def test_enhanced_multiframe_metadata_comes_from_functional_groups(dataset, tmp_path):
    study = demo.generate_demo_study(
        str(tmp_path / "study"), seed=2, n_series=3, slices_per_series=4
    )
    _import(dataset, study.dicom_dir, tmp_path)
    frames = dataset.match({F.N_FRAMES: {"$gt": 1}})
    assert len(frames) == 4
    mf = pydicom.dcmread(_sources(frames.limit(1))[0], stop_before_pixels=True)
    assert "KVP" not in mf and "RescaleIntercept" not in mf  # only in the functional groups
    kvps = [
        float(item.KVP)
        for element in mf.SharedFunctionalGroupsSequence[0]
        if element.VR == "SQ"
        for item in element.value
        if "KVP" in item
    ]
    assert kvps and set(frames.values("kvp")) == {kvps[0]}
    assert set(frames.values(F.NATIVE_UNIT)) == {"HU"}
    # frames stack by their own positions
    z = [p[2] for p in frames.sort_by(F.SLICE_INDEX).values(F.IMAGE_POSITION)]
    assert z == sorted(z) and len(set(z)) == 4


def _series(folder, z_by_name):
    """Copies of CT_small.dcm as one series; file name -> slice z (mm)."""
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series = pydicom.uid.generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for number, (name, z) in enumerate(sorted(z_by_name.items())):
        ds = src.copy()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, float(z)]
        ds.InstanceNumber = number + 1  # instance numbers follow the names, not z
        ds.save_as(str(folder / name))
    return series


def test_slice_index_follows_position_not_file_name_or_instance_number(dataset, tmp_path):
    z_by_name = {"a.dcm": 30.0, "b.dcm": -10.0, "c.dcm": 50.0, "d.dcm": 0.0, "e.dcm": 12.5}
    _series(tmp_path / "series", z_by_name)
    # a glob pattern as input
    rep = _import(dataset, str(tmp_path / "series" / "*.dcm"), tmp_path)
    assert rep.imported == 5 and rep.series == 1
    got = dict(
        zip(
            (os.path.basename(p) for p in _sources(dataset)),
            dataset.values(F.SLICE_INDEX),
            strict=True,
        )
    )
    expected = {name: rank for rank, name in enumerate(sorted(z_by_name, key=z_by_name.get))}
    assert got == expected == {"b.dcm": 0, "d.dcm": 1, "e.dcm": 2, "a.dcm": 3, "c.dcm": 4}
    positions = dataset.sort_by(F.SLICE_INDEX).values(F.SLICE_POSITION)
    assert positions == sorted(z_by_name.values())
    volume = dataset.load_saved_view(F.VOLUME_VIEW)
    assert len(volume) == 1


def test_copies_of_one_instance_import_once_and_leave_no_stray_files(dataset, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("one.dcm", "two.dcm", "three.dcm", "four.dcm", "five.dcm"):
        shutil.copy(get_testdata_file("CT_small.dcm"), folder / name)
    rep = _import(dataset, str(folder), tmp_path, num_workers=2)
    assert rep.imported == 1 and rep.duplicates == 4 and len(dataset) == 1
    # the first file given wins, whichever worker finished first
    assert _sources(dataset) == [os.path.abspath(folder / "five.dcm")]
    files = [f for _, _, names in os.walk(tmp_path / "renders") for f in names]
    assert sorted(os.path.splitext(f)[1] for f in files) == [".npy", ".png"]
    assert not any(f.startswith(".") for f in files)
    # the database itself refuses a second sample with the same key
    import fiftyone as fo

    clone = fo.Sample(filepath=dataset.first().filepath, dicom_key=dataset.first()[F.DICOM_KEY])
    with pytest.raises(Exception, match="(?i)duplicate"):
        dataset.add_sample(clone)
    assert len(dataset) == 1


def test_a_dicomdir_imports_the_files_it_lists(dataset, tmp_path):
    from pydicom.fileset import FileSet

    dicomdir = get_testdata_file("DICOMDIR")
    listed = [os.path.abspath(i.path) for i in FileSet(dicomdir)]
    rep = _import(dataset, dicomdir, tmp_path)
    assert rep.indexes == [{"path": os.path.abspath(dicomdir), "files": len(listed)}]
    imported = set(_sources(dataset))
    skipped = {s["path"] for s in rep.skipped}
    assert imported | skipped == set(listed)
    assert len(imported) > 0
    assert len(dataset) == rep.imported
    # one sample per frame, each with its image metadata
    widths = dataset.values("metadata.width")
    assert all(w and w > 0 for w in widths)
    assert dataset.values("metadata.width") == dataset.values(F.COLUMNS)
