"""3-D reader volumes (NIfTI, NRRD) imported as per-slice reader masks.

The CT series is written with pydicom and imported by the real importer, so the masks
land on the samples exactly as a user's would. The label files are written the way
nnU-Net / ITK (NIfTI, RAS affine, i = column) and 3D Slicer (NRRD, LPS) write them, with
the geometry read straight from the DICOM headers, not from the dataset. The planted
objects are asymmetric and differ per slice, so any flip, transpose or slice shift
changes voxels; every slice is compared voxel for voxel, matched by ``slice_index``.
"""

from __future__ import annotations

import json
import os

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
from helpers_dicom import write_ct_study
from PIL import Image

from multireader.core import fields as F
from multireader.ingest import importer, readers
from multireader.io.volume import series_geometry

N_SLICES = 5


@pytest.fixture
def study(dataset, tmp_path):
    """A 5-slice CT series (plus a 3-frame series) imported by ``import_dicom``."""
    study = write_ct_study(str(tmp_path / "dicom"), n_slices=N_SLICES)
    # file names in reverse slice order, so the samples are stored in reverse too: only
    # the geometry can put a volume's slices on the right samples
    renamed = [os.path.join(study.folder, f"im_{N_SLICES - i:02d}.dcm") for i in range(N_SLICES)]
    for old, new in zip(study.paths, renamed, strict=True):
        os.rename(old, new)
    study.paths = renamed
    rep = importer.import_dicom(dataset, study.folder, render_dir=str(tmp_path / "renders"))
    assert len(dataset) == N_SLICES + study.n_frames, rep
    ct = dataset.match({F.SERIES_UID: study.series_uid})
    assert ct.values(F.SLICE_INDEX) == list(range(N_SLICES))[::-1]
    return study


def _geometry(study):
    """The series grid from the DICOM headers themselves (files in any order)."""
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in reversed(study.paths)]
    return series_geometry(
        [[float(v) for v in h.ImagePositionPatient] for h in headers],
        [float(v) for v in headers[0].ImageOrientationPatient],
        [float(v) for v in headers[0].PixelSpacing],
        int(headers[0].Rows),
        int(headers[0].Columns),
    )


def _planted(geometry, values=(1, 2), dtype=np.uint8):
    """Two lesions, asymmetric in every axis: an L on slices 1-2, a wedge on 2-4."""
    vol = np.zeros(geometry.shape, dtype)
    a, b = values
    vol[1, 3:10, 4:6] = a
    vol[1, 8:10, 6:14] = a
    vol[2, 4:9, 4:7] = a
    for k, width in ((2, 3), (3, 6), (4, 9)):
        vol[k, 14:20, 18 : 18 + width] = b
    vol[4, 0, 31] = b  # a corner voxel: a reversed row or column axis moves it
    return vol


def _write_nifti(path, vol, affine):
    nib.save(nib.Nifti1Image(vol.transpose(2, 1, 0), affine), str(path))
    return str(path)


def _write_nrrd(path, vol, geometry):
    lps = geometry.affine_lps()
    header = {
        "space": "left-posterior-superior",
        "space directions": lps[:3, :3].T,  # one row per file axis (i=col, j=row, k=slice)
        "space origin": lps[:3, 3],
    }
    nrrd.write(str(path), np.ascontiguousarray(vol.transpose(2, 1, 0)), header)
    return str(path)


def _series_masks(dataset, study, field):
    """{slice_index: mask array} of the CT series' samples, read from the mask files."""
    view = dataset.match({F.SERIES_UID: study.series_uid})
    idx, paths = view.values([F.SLICE_INDEX, f"{field}.mask_path"])
    return {i: (np.asarray(Image.open(p)) if p else None) for i, p in zip(idx, paths, strict=True)}


def _files(folder):
    return sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names)


def _assert_volume_imported(dataset, study, field, vol):
    masks = _series_masks(dataset, study, field)
    assert sorted(masks) == list(range(N_SLICES))
    for k in range(N_SLICES):
        assert masks[k] is not None, k  # a volume is a read of the whole series
        assert masks[k].shape == vol[k].shape
        np.testing.assert_array_equal(masks[k], vol[k], err_msg=f"slice {k}")
    # the other series is untouched
    other = dataset.match({F.SERIES_UID: {"$ne": study.series_uid}})
    assert other.values(field) == [None] * len(other)


# --- one file ---------------------------------------------------------------------------


def test_nifti_lands_on_its_slices_voxel_for_voxel(dataset, study, tmp_path):
    geometry = _geometry(study)
    vol = _planted(geometry)
    path = _write_nifti(tmp_path / "r1.nii.gz", vol, geometry.affine_ras())
    rep = readers.import_volume_labels(
        dataset,
        path,
        reader="Dr. V",
        series_instance_uid=study.series_uid,
        timestamp="2026-03-01T09:30:00Z",
        session="S1",
    )
    assert rep.errors == [] and rep.kind == "volume"
    assert rep.fields == ["reader_dr_v_mask"] and rep.counts == {"Dr. V": N_SLICES}
    _assert_volume_imported(dataset, study, "reader_dr_v_mask", vol)
    label = dataset.match({F.SLICE_INDEX: 2, F.SERIES_UID: study.series_uid}).first()
    seg = label["reader_dr_v_mask"]
    assert (seg.reader, seg.session, seg.source) == ("Dr. V", "S1", os.path.abspath(path))
    assert seg.read_at.isoformat() == "2026-03-01T09:30:00"
    assert (seg.source_kind, seg.volume_format, seg.label_values) == ("volume", "nifti", [1, 2])
    assert np.asarray(Image.open(seg.mask_path)).dtype == np.uint8
    meta = F.reader_fields(dataset)["reader_dr_v_mask"]
    assert (meta["reader"], meta["kind"]) == ("Dr. V", "mask")


def test_nrrd_with_labels_above_255_is_written_as_16_bit(dataset, study, tmp_path):
    geometry = _geometry(study)
    vol = _planted(geometry, values=(3, 300), dtype=np.uint16)
    path = _write_nrrd(tmp_path / "r2.nrrd", vol, geometry)
    # through the generic entry point: the kind comes from the file ending
    rep = readers.import_reader_labels(
        dataset, path, reader="R2", series_instance_uid=study.series_uid
    )
    assert rep.errors == [] and rep.kind == "volume"
    _assert_volume_imported(dataset, study, "reader_r2_mask", vol)
    seg = dataset.match({F.SERIES_UID: study.series_uid}).first()["reader_r2_mask"]
    assert (seg.volume_format, seg.label_values) == ("nrrd", [3, 300])
    assert np.asarray(Image.open(seg.mask_path)).dtype == np.uint16


def test_dcm2niix_layout_with_reversed_rows_and_slices_lands_the_same(dataset, study, tmp_path):
    geometry = _geometry(study)
    vol = _planted(geometry)
    # the file stores rows bottom-up and slices top-down; its affine says so
    flipped = vol[::-1, ::-1, :]
    affine = geometry.affine_ras().copy()
    ras_steps = affine[:3, :3].copy()
    affine[:3, 3] = (
        affine[:3, :3] @ [0, geometry.shape[1] - 1, geometry.shape[0] - 1] + affine[:3, 3]
    )
    affine[:3, 1], affine[:3, 2] = -ras_steps[:, 1], -ras_steps[:, 2]
    path = _write_nifti(tmp_path / "dcm2niix.nii", flipped, affine)
    rep = readers.import_volume_labels(
        dataset, path, reader="R3", series_instance_uid=study.series_uid
    )
    assert rep.errors == []
    _assert_volume_imported(dataset, study, "reader_r3_mask", vol)


def test_wrong_slice_spacing_is_refused_and_nothing_is_written(dataset, study, tmp_path):
    geometry = _geometry(study)
    affine = geometry.affine_ras().copy()
    affine[:3, 2] *= 3.0 / geometry.slice_spacing  # 3 mm slices on a 2.5 mm series
    path = _write_nifti(tmp_path / "resampled.nii.gz", _planted(geometry), affine)
    before = _files(tmp_path / "renders")
    rep = readers.import_volume_labels(
        dataset, path, reader="R4", series_instance_uid=study.series_uid
    )
    assert rep.fields == [] and rep.n_labels == 0
    (err,) = rep.errors
    assert err["line"] is None
    assert err["reason"].startswith(f"resampled.nii.gz (series {study.series_uid}): ")
    assert "slice spacing 3.00 mm in the file, 2.50 mm in the series" in err["reason"]
    assert "reader_r4_mask" not in dataset.get_field_schema()
    assert _files(tmp_path / "renders") == before  # no mask folder, no file


def test_a_volume_never_replaces_existing_masks_silently(dataset, study, tmp_path):
    geometry = _geometry(study)
    first = _planted(geometry)
    path = _write_nifti(tmp_path / "a.nii.gz", first, geometry.affine_ras())
    kw = dict(reader="R5", series_instance_uid=study.series_uid)
    assert readers.import_volume_labels(dataset, path, **kw).errors == []
    field = "reader_r5_mask"
    labels_before = [(s.mask_path, s.source) if s else None for s in dataset.values(field)]
    second = np.zeros_like(first)
    second[0, 0:4, 0:4] = 7
    path2 = _write_nifti(tmp_path / "b.nii.gz", second, geometry.affine_ras())
    before = _files(tmp_path / "renders")
    rep = readers.import_volume_labels(dataset, path2, **kw)
    (err,) = rep.errors
    assert "reader_r5_mask already holds masks on this series" in err["reason"]
    assert "overwrite=True" in err["reason"]
    assert [(s.mask_path, s.source) if s else None for s in dataset.values(field)] == (
        labels_before
    )
    assert _files(tmp_path / "renders") == before
    _assert_volume_imported(dataset, study, field, first)
    # asked for: replaced on every slice of the series, in the same files
    rep = readers.import_volume_labels(dataset, path2, overwrite=True, **kw)
    assert rep.errors == [] and rep.n_labels == N_SLICES
    _assert_volume_imported(dataset, study, field, second)
    assert _files(tmp_path / "renders") == before
    seg = dataset.match({F.SERIES_UID: study.series_uid}).first()[field]
    assert (seg.source, seg.label_values) == (os.path.abspath(path2), [7])


def test_a_single_file_needs_reader_and_series(dataset, study, tmp_path):
    geometry = _geometry(study)
    path = _write_nifti(tmp_path / "x.nii.gz", _planted(geometry), geometry.affine_ras())
    with pytest.raises(readers.LabelImportError, match="series_instance_uid=<uid>"):
        readers.import_volume_labels(dataset, path, reader="R")
    with pytest.raises(readers.LabelImportError, match="reader=<id>"):
        readers.import_reader_labels(dataset, path, series_instance_uid=study.series_uid)


# --- manifests --------------------------------------------------------------------------


def test_manifest_imports_good_rows_and_reports_bad_ones_by_line(dataset, study, tmp_path):
    geometry = _geometry(study)
    vol = _planted(geometry)
    os.makedirs(tmp_path / "vols")
    _write_nifti(tmp_path / "vols" / "good.nii.gz", vol, geometry.affine_ras())
    shifted = geometry.affine_ras().copy()
    shifted[:3, 3] += shifted[:3, 0] * 2  # two columns off
    _write_nifti(tmp_path / "vols" / "bad.nii.gz", vol, shifted)
    manifest = tmp_path / "volumes.csv"
    manifest.write_text(
        "reader,series_instance_uid,volume_path,timestamp,session\n"
        f"R1,{study.series_uid},vols/good.nii.gz,2026-03-02T10:00:00,S2\n"
        f"R2,{study.series_uid},vols/bad.nii.gz,,\n"
        f"R3,1.2.3.999,vols/good.nii.gz,,\n"
        f"R4,{study.series_uid},vols/missing.nii.gz,,\n"
        f"R1,{study.series_uid},vols/good.nii.gz,,\n"
        f"R5,{study.multiframe_series},vols/good.nii.gz,,\n"
    )
    before = _files(tmp_path / "renders")
    rep = readers.import_reader_labels(dataset, str(manifest))  # kind from the columns
    assert rep.kind == "volume" and rep.n_rows == 6
    assert rep.fields == ["reader_r1_mask"] and rep.counts == {"R1": N_SLICES}
    _assert_volume_imported(dataset, study, "reader_r1_mask", vol)
    seg = dataset.match({F.SERIES_UID: study.series_uid}).first()["reader_r1_mask"]
    assert (seg.session, seg.source) == ("S2", str(tmp_path / "vols" / "good.nii.gz"))
    errors = {e["line"]: e["reason"] for e in rep.errors}
    assert sorted(errors) == [3, 4, 5, 6, 7]
    assert errors[3].startswith(f"vols/bad.nii.gz (series {study.series_uid}): ")
    assert "origin" in errors[3] and "+1.20 mm along the column axis (+2.00 voxels)" in errors[3]
    assert "unknown series_instance_uid '1.2.3.999'" in errors[4]
    assert "volume file not found" in errors[5]
    assert "R1 already has a volume for this series on line 2" in errors[6]
    assert errors[7].startswith(f"vols/good.nii.gz (series {study.multiframe_series}): ")
    assert "shape" in errors[7]  # 3 frames, not 5 slices
    for reader in ("r2", "r3", "r4", "r5"):
        assert f"reader_{reader}_mask" not in dataset.get_field_schema()
    new = sorted(set(_files(tmp_path / "renders")) - set(before))
    assert len(new) == N_SLICES and all("/masks/r1/" in p for p in new)


def test_json_manifest_with_a_default_reader_and_series(dataset, study, tmp_path):
    geometry = _geometry(study)
    vol = _planted(geometry)
    _write_nrrd(tmp_path / "v.nrrd", vol, geometry)
    manifest = tmp_path / "volumes.json"
    manifest.write_text(
        json.dumps(
            [
                {"volume_path": "v.nrrd"},
                {"reader": "Other", "volume_path": "v.nrrd"},
                {"reader": "R9", "series_instance_uid": study.series_uid, "volume_path": "v.nrrd"},
            ]
        )
    )
    rep = readers.import_volume_labels(
        dataset, str(manifest), reader="R9", series_instance_uid=study.series_uid
    )
    assert rep.fields == ["reader_r9_mask"]
    assert [e["line"] for e in rep.errors] == [2, 3]
    assert "is not the reader this import is for" in rep.errors[0]["reason"]
    assert "R9 already has a volume for this series on line 1" in rep.errors[1]["reason"]
    _assert_volume_imported(dataset, study, "reader_r9_mask", vol)


def test_manifest_without_a_volume_column_is_refused(dataset, study, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("reader,series_instance_uid\nR1,1.2.3\n")
    with pytest.raises(readers.LabelImportError, match=r"\['volume_path'\]"):
        readers.import_volume_labels(dataset, str(manifest))


# --- the operator -----------------------------------------------------------------------


def test_operator_form_offers_volumes_and_their_series(dataset, study, tmp_path):
    from helpers_plugin import form

    props = form("import_reader_labels", dataset, {"kind": "auto", "source": "x.csv"})
    kinds = [c["value"] for c in props["kind"]["view"]["choices"]]
    assert "volume" in kinds
    assert "series_instance_uid" not in props and "overwrite" not in props
    props = form("import_reader_labels", dataset, {"kind": "auto", "source": "/a/r1.nii.gz"})
    assert props["series_instance_uid"]["required"] is True
    choices = {c["value"] for c in props["series_instance_uid"]["view"]["choices"]}
    assert choices == {study.series_uid, study.multiframe_series}
    assert props["overwrite"]["default"] is False
    props = form("import_reader_labels", dataset, {"kind": "volume", "source": "m.csv"})
    assert props["series_instance_uid"]["required"] is False


def test_operator_imports_a_volume_and_refuses_to_replace_it(dataset, study, tmp_path):
    from helpers_plugin import op

    geometry = _geometry(study)
    vol = _planted(geometry)
    path = _write_nifti(tmp_path / "op.nii.gz", vol, geometry.affine_ras())
    kw = dict(reader="Op", series_instance_uid=study.series_uid)
    result = op("import_reader_labels")(dataset, path, **kw)
    assert result["errors"] == [] and result["fields"] == ["reader_op_mask"]
    assert result["n_labels"] == N_SLICES
    _assert_volume_imported(dataset, study, "reader_op_mask", vol)
    again = op("import_reader_labels")(dataset, path, **kw)
    assert again["n_labels"] == 0
    assert "already holds masks" in again["errors"][0]["reason"]
    # a manifest through the operator, kind chosen explicitly, replacing on request
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        f"reader,series_instance_uid,volume_path\nOp,{study.series_uid},op.nii.gz\n"
    )
    result = op("import_reader_labels")(dataset, manifest, kind="volume", overwrite=True)
    assert result["errors"] == [] and result["n_labels"] == N_SLICES
    _assert_volume_imported(dataset, study, "reader_op_mask", vol)
