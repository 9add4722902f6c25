"""Series geometry and 3-D label volumes on real DICOM, NIfTI and NRRD files.

Each test writes a real single-frame CT series with pydicom, reads its geometry back
from the files (as the importer does) and builds the SeriesGeometry from that. Label
files are written the way the tools write them (ITK/nnU-Net, dcm2niix, nibabel's RAS
reorientation, 3D Slicer's LPS NRRD, SimpleITK itself), with affines computed here
straight from the DICOM headers by the PS3.3 C.7.6.2.1.1 formula, not from the module
under test. The planted labels are random, so any flip, transpose or shift of an axis
changes voxels. The geometry is deliberately unhelpful: rows != columns, row spacing !=
column spacing, origin off zero, and files written in reverse slice order.

tests/helpers_dicom.py is not used: its series is always axial and evenly spaced, and
these tests need oblique, tilted and unevenly spaced series too.
"""

from __future__ import annotations

import math
import os

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from multireader.errors import MultireaderError
from multireader.io.volume import (
    SeriesGeometry,
    VolumeFormatError,
    VolumeGeometryError,
    label_instances,
    load_label_volume,
    series_geometry,
)

ROWS, COLS = 24, 32
SPACING = (0.8, 0.6)  # PixelSpacing: row spacing, column spacing
ORIGIN = (-10.0, -20.0, 30.0)
SLICE = 2.5
N = 6
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


# --- writing and reading a real DICOM series ----------------------------------------


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def write_series(
    folder,
    positions,
    orientation=AXIAL,
    *,
    orientations=None,
    spacing=SPACING,
    rows=ROWS,
    cols=COLS,
) -> list[str]:
    """One CT file per position; files and instance numbers run in reverse order."""
    os.makedirs(folder, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    n = len(positions)
    for i, pos in enumerate(positions):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = sop = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, sop, "CT"
        ds.PatientName, ds.PatientID = "Test^Geometry", "GEOM-1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.InstanceNumber = 1, n - i
        if pos is not None:
            ds.ImagePositionPatient = [_ds(v) for v in pos]
        orient = orientations[i] if orientations is not None else orientation
        ds.ImageOrientationPatient = [_ds(v) for v in orient]
        ds.PixelSpacing = [_ds(v) for v in spacing]
        ds.SliceThickness = _ds(SLICE)
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.full((rows, cols), 1000 + i, np.uint16).tobytes()
        path = os.path.join(folder, f"im_{n - 1 - i:03d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def read_headers(folder) -> list[pydicom.Dataset]:
    """The series' headers in file-name order (which is not slice order)."""
    names = sorted(f for f in os.listdir(folder) if f.endswith(".dcm"))
    return [pydicom.dcmread(os.path.join(folder, f), stop_before_pixels=True) for f in names]


def geometry_of(folder, **kwargs) -> SeriesGeometry:
    """The geometry from the per-frame header values, as samples carry them."""
    headers = read_headers(folder)
    return series_geometry(
        [list(h.ImagePositionPatient) if "ImagePositionPatient" in h else None for h in headers],
        [list(h.ImageOrientationPatient) for h in headers],
        [list(h.PixelSpacing) for h in headers],
        [int(h.Rows) for h in headers],
        [int(h.Columns) for h in headers],
        slice_ids=[os.path.basename(h.filename) for h in headers],
        **kwargs,
    )


def dicom_sorted(folder) -> list[pydicom.Dataset]:
    """Headers sorted along the normal, computed here from the DICOM values."""
    headers = read_headers(folder)
    o = np.array(headers[0].ImageOrientationPatient, float)
    normal = np.cross(o[:3], o[3:])
    return sorted(headers, key=lambda h: float(np.array(h.ImagePositionPatient, float) @ normal))


def dicom_lps_affine_ijk(folder) -> np.ndarray:
    """LPS affine of (i=col, j=row, k=slice) from the DICOM headers, as dcm2niix and ITK
    compute it: PS3.3 C.7.6.2.1.1 in-plane, first-to-last position for the slice step."""
    hs = dicom_sorted(folder)
    o = np.array(hs[0].ImageOrientationPatient, float)
    row_spacing, col_spacing = (float(v) for v in hs[0].PixelSpacing)
    first = np.array(hs[0].ImagePositionPatient, float)
    last = np.array(hs[-1].ImagePositionPatient, float)
    affine = np.eye(4)
    affine[:3, 0] = o[:3] * col_spacing  # i: along a row, column index increases
    affine[:3, 1] = o[3:] * row_spacing  # j: down a column, row index increases
    affine[:3, 2] = (last - first) / (len(hs) - 1)
    affine[:3, 3] = first
    return affine


LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def save_nifti(path, data_ijk, affine_lps, dtype=np.uint8) -> str:
    img = nib.Nifti1Image(np.asarray(data_ijk).astype(dtype), LPS_TO_RAS @ affine_lps)
    img.set_qform(LPS_TO_RAS @ affine_lps, code=1)  # scanner: both forms, as ITK/dcm2niix
    img.set_sform(LPS_TO_RAS @ affine_lps, code=1)
    nib.save(img, str(path))
    return str(path)


def itk_layout(volume, affine):
    """ITK / nnU-Net: i=col, j=row, k=slice, no flips."""
    return volume.transpose(2, 1, 0), affine


def dcm2niix_layout(volume, affine, reverse_slices=False):
    """dcm2niix: i=col, j=row reversed (the image is flipped up-down), k=slice possibly
    reversed; the affine moves its origin to the new first voxel."""
    data = volume.transpose(2, 1, 0)[:, ::-1, :]
    aff = affine.copy()
    aff[:3, 3] = affine[:3, 3] + affine[:3, 1] * (data.shape[1] - 1)
    aff[:3, 1] = -affine[:3, 1]
    if reverse_slices:
        data = data[:, :, ::-1]
        aff[:3, 3] = aff[:3, 3] + aff[:3, 2] * (data.shape[2] - 1)
        aff[:3, 2] = -aff[:3, 2]
    return np.ascontiguousarray(data), aff


def permuted_layout(volume, affine):
    """An exotic but exact grid: file axes (slice, col reversed, row)."""
    data, aff = itk_layout(volume, affine)
    data = data.transpose(2, 0, 1)[:, ::-1, :]  # (k, i, j), then i reversed
    new = np.eye(4)
    new[:3, 0], new[:3, 1], new[:3, 2] = aff[:3, 2], -aff[:3, 0], aff[:3, 1]
    new[:3, 3] = aff[:3, 3] + aff[:3, 0] * (volume.shape[2] - 1)
    return np.ascontiguousarray(data), new


def planted(shape, seed=0) -> np.ndarray:
    """Random labels 0..4: asymmetric along every axis, so any flip changes voxels."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 5, size=shape).astype(np.uint8)


def axial_positions(n=N, spacing=SLICE, origin=ORIGIN):
    return [[origin[0], origin[1], origin[2] + k * spacing] for k in range(n)]


@pytest.fixture
def axial(tmp_path):
    folder = tmp_path / "ct"
    write_series(folder, axial_positions())
    return folder, geometry_of(folder)


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (
        f(math.radians(a)) for a in (ax, ay, az) for f in (math.cos, math.sin)
    )
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


# --- series geometry -----------------------------------------------------------------


def test_axial_geometry_from_files(axial):
    folder, geo = axial
    assert geo.shape == (N, ROWS, COLS)
    assert geo.pixel_spacing == pytest.approx(SPACING)
    assert geo.spacing_zyx == pytest.approx((SLICE, 0.8, 0.6))
    assert geo.slice_spacing == pytest.approx(SLICE)
    assert geo.origin == pytest.approx(ORIGIN)
    assert geo.normal == pytest.approx((0, 0, 1))
    # files are named in reverse slice order: order maps slice k back to its file
    names = [os.path.basename(h.filename) for h in read_headers(folder)]
    assert [names[i] for i in geo.order] == [f"im_{N - 1 - k:03d}.dcm" for k in range(N)]
    # affines: (i=col, j=row, k=slice) and (slice, row, col) agree with PS3.3 C.7.6.2.1.1
    expected = dicom_lps_affine_ijk(folder)
    np.testing.assert_allclose(geo.affine_lps(), expected, atol=1e-9)
    np.testing.assert_allclose(geo.affine_ras(), LPS_TO_RAS @ expected, atol=1e-9)
    s, r, c = 3, 5, 7
    x, y, z = (geo.affine_lps_zyx() @ [s, r, c, 1])[:3]
    assert (x, y, z) == pytest.approx((ORIGIN[0] + c * 0.6, ORIGIN[1] + r * 0.8, 30 + s * 2.5))
    assert geo.voxel_lps([s, r, c]) == pytest.approx([x, y, z])


def test_geometry_matches_simpleitk(axial):
    """ITK (which nnU-Net reads DICOM with) puts the series at the same place."""
    sitk = pytest.importorskip("SimpleITK")
    folder, geo = axial
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    assert image.GetSize() == (COLS, ROWS, N)
    affine = np.eye(4)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    affine[:3, :3] = direction * np.array(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    np.testing.assert_allclose(geo.affine_lps(), affine, atol=1e-6)


def test_single_slice_needs_fallback_thickness(tmp_path):
    folder = tmp_path / "one"
    write_series(folder, axial_positions(1))
    with pytest.raises(VolumeGeometryError, match="single slice.*fallback_thickness"):
        geometry_of(folder)
    geo = geometry_of(folder, fallback_thickness=5.0)
    assert geo.shape == (1, ROWS, COLS) and geo.slice_spacing == 5.0


def test_refuses_uneven_spacing(tmp_path):
    folder = tmp_path / "gap"
    positions = axial_positions(N + 1)
    del positions[4]  # a missing slice: the gap between slices 3 and 4 is 5.0 mm
    write_series(folder, positions)
    with pytest.raises(VolumeGeometryError) as err:
        geometry_of(folder)
    msg = str(err.value)
    assert "uneven slice spacing" in msg
    assert "between slice 3" in msg and "slice 4" in msg
    assert "5.00 mm" in msg and "typical gap is 2.50 mm" in msg and "differs by 2.50 mm" in msg
    assert "missing" in msg

    folder = tmp_path / "jitter"
    positions = axial_positions()
    positions[2][2] += 0.3
    write_series(folder, positions)
    with pytest.raises(VolumeGeometryError, match=r"2\.80 mm.*differs by 0\.30 mm"):
        geometry_of(folder)


def test_accepts_rounded_positions(tmp_path):
    """Positions written to 2 decimals (0.005 mm rounding) are within tolerance."""
    folder = tmp_path / "round"
    write_series(folder, [[-10.0, -20.0, round(30 + k * 2.333333, 2)] for k in range(N)])
    assert geometry_of(folder).slice_spacing == pytest.approx(2.3333, abs=1e-3)


def test_refuses_gantry_tilt(tmp_path):
    folder = tmp_path / "tilt"
    tilt = 15.0
    step = np.array([0.0, SLICE * math.tan(math.radians(tilt)), SLICE])
    write_series(folder, [list(np.array(ORIGIN) + k * step) for k in range(N)])
    with pytest.raises(VolumeGeometryError) as err:
        geometry_of(folder)
    msg = str(err.value)
    assert "not along the slice normal" in msg and "15.00 degrees" in msg
    assert "gantry tilt" in msg and "0.67 mm sideways per 2.50 mm" in msg


def test_refuses_differing_orientation(tmp_path):
    folder = tmp_path / "orient"
    r = rotation(0, 0, 2.0)
    tilted = tuple(r[:, 0]) + tuple(r[:, 1])
    write_series(folder, axial_positions(), orientations=[AXIAL] * 3 + [tilted] + [AXIAL] * 2)
    with pytest.raises(VolumeGeometryError) as err:
        geometry_of(folder)
    msg = str(err.value)
    # written at index 3 = file im_002.dcm, which is frame 2 in file-name order
    assert "orientations differ" in msg and "im_002.dcm" in msg and "2.000 degrees" in msg


def test_refuses_missing_and_duplicate_positions(tmp_path):
    folder = tmp_path / "missing"
    positions = axial_positions()
    positions[1] = None
    write_series(folder, positions)
    with pytest.raises(
        VolumeGeometryError, match=r"missing or malformed geometry.*im_004\.dcm.*image position"
    ):
        geometry_of(folder)

    folder = tmp_path / "dup"
    positions = axial_positions()
    positions[3] = list(positions[2])
    write_series(folder, positions)
    with pytest.raises(VolumeGeometryError, match=r"duplicate slice positions.*slice 2.*slice 3"):
        geometry_of(folder)

    with pytest.raises(VolumeGeometryError, match="no slices"):
        series_geometry([], AXIAL, SPACING, ROWS, COLS)


def test_shared_and_per_slice_arguments_agree(axial):
    folder, geo = axial
    headers = dicom_sorted(folder)
    shared = series_geometry(
        [list(h.ImagePositionPatient) for h in headers], AXIAL, SPACING, ROWS, COLS
    )
    assert shared.shape == geo.shape
    np.testing.assert_allclose(shared.positions, geo.positions)
    with pytest.raises(VolumeGeometryError, match="matrix size differs.*30 rows"):
        series_geometry(
            [list(h.ImagePositionPatient) for h in headers],
            AXIAL,
            SPACING,
            [ROWS] * (N - 1) + [30],
            COLS,
        )


def test_errors_are_multireader_errors():
    assert issubclass(VolumeGeometryError, MultireaderError)
    assert issubclass(VolumeFormatError, MultireaderError)
    assert issubclass(VolumeGeometryError, ValueError)


# --- label volumes: exact round trips --------------------------------------------


@pytest.mark.parametrize(
    "layout",
    ["itk", "dcm2niix", "dcm2niix_reversed", "canonical_ras", "permuted"],
)
def test_nifti_round_trip(axial, tmp_path, layout):
    folder, geo = axial
    volume = planted(geo.shape)
    affine = dicom_lps_affine_ijk(folder)
    if layout == "itk":
        data, aff = itk_layout(volume, affine)
    elif layout == "dcm2niix":
        data, aff = dcm2niix_layout(volume, affine)
    elif layout == "dcm2niix_reversed":
        data, aff = dcm2niix_layout(volume, affine, reverse_slices=True)
    elif layout == "permuted":
        data, aff = permuted_layout(volume, affine)
    else:  # nibabel's reorientation to the closest RAS axes, as MONAI's Orientation("RAS")
        data, aff = itk_layout(volume, affine)
        img = nib.as_closest_canonical(nib.Nifti1Image(data, LPS_TO_RAS @ aff))
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
        data, aff = np.asarray(img.dataobj), LPS_TO_RAS @ img.affine
        assert not np.array_equal(data, volume.transpose(2, 1, 0))  # really reordered
    path = save_nifti(tmp_path / f"{layout}.nii.gz", data, aff)
    loaded = load_label_volume(path, geo)
    assert loaded.shape == geo.shape
    np.testing.assert_array_equal(loaded, volume)
    assert np.issubdtype(loaded.dtype, np.integer)


def test_uncompressed_nifti_sform_only(axial, tmp_path):
    """nibabel's default (sform_code 2, qform_code 0) is read through the sform."""
    folder, geo = axial
    volume = planted(geo.shape, seed=1)
    data, aff = dcm2niix_layout(volume, dicom_lps_affine_ijk(folder))
    path = str(tmp_path / "plain.nii")
    nib.save(nib.Nifti1Image(data, LPS_TO_RAS @ aff), path)
    assert nib.load(path).header["qform_code"] == 0
    np.testing.assert_array_equal(load_label_volume(path, geo), volume)


def test_nrrd_round_trip_lps_ras_and_detached(axial, tmp_path):
    folder, geo = axial
    volume = planted(geo.shape, seed=2)
    affine = dicom_lps_affine_ijk(folder)
    # 3D Slicer: i=col, j=row, k=slice in LPS
    data, aff = itk_layout(volume, affine)
    header = {
        "space": "left-posterior-superior",
        "space directions": aff[:3, :3].T,
        "space origin": aff[:3, 3],
        "kinds": ["domain"] * 3,
    }
    path = str(tmp_path / "slicer.seg.nrrd")
    nrrd.write(path, data, header)
    np.testing.assert_array_equal(load_label_volume(path, geo), volume)
    # detached header
    nhdr = str(tmp_path / "slicer.nhdr")
    nrrd.write(nhdr, data, header, detached_header=True)
    np.testing.assert_array_equal(load_label_volume(nhdr, geo), volume)
    # RAS space with a permuted, flipped grid
    data, aff = permuted_layout(volume, affine)
    ras = LPS_TO_RAS @ aff
    header = {
        "space": "right-anterior-superior",
        "space directions": ras[:3, :3].T,
        "space origin": ras[:3, 3],
    }
    path = str(tmp_path / "ras.nrrd")
    nrrd.write(path, data, header)
    np.testing.assert_array_equal(load_label_volume(path, geo), volume)
    # a non-spatial axis of size 1 (a one-layer segmentation) is dropped
    data, aff = itk_layout(volume, affine)
    header = {
        "space": "LPS",
        "space directions": np.vstack([np.full(3, np.nan), aff[:3, :3].T]),
        "space origin": aff[:3, 3],
        "kinds": ["list", "domain", "domain", "domain"],
    }
    path = str(tmp_path / "layer.nrrd")
    nrrd.write(path, data[np.newaxis], header)
    np.testing.assert_array_equal(load_label_volume(path, geo), volume)


def test_simpleitk_written_labels(axial, tmp_path):
    """The nnU-Net path: read the series with ITK, write labels on its grid."""
    sitk = pytest.importorskip("SimpleITK")
    folder, geo = axial
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    volume = planted(geo.shape, seed=3)
    label = sitk.GetImageFromArray(volume)  # ITK arrays are [slice, row, col]
    label.CopyInformation(image)
    for name in ("itk.nii.gz", "itk.nrrd"):
        path = str(tmp_path / name)
        sitk.WriteImage(label, path)
        np.testing.assert_array_equal(load_label_volume(path, geo), volume)


def test_oblique_round_trip(tmp_path):
    """A double-oblique series (IOP to 6 decimals, as scanners write it) round-trips."""
    r = rotation(20.0, -35.0, 50.0)
    orientation = tuple(np.round(np.r_[r[:, 0], r[:, 1]], 6))
    normal = r[:, 2]
    folder = tmp_path / "oblique"
    write_series(
        folder,
        [list(np.round(np.array(ORIGIN) + k * SLICE * normal, 4)) for k in range(N)],
        orientation,
    )
    geo = geometry_of(folder)
    assert geo.normal == pytest.approx(tuple(normal), abs=1e-5)
    assert geo.slice_spacing == pytest.approx(SLICE, abs=1e-4)
    volume = planted(geo.shape, seed=4)
    affine = dicom_lps_affine_ijk(folder)
    for name, (data, aff) in {
        "itk": itk_layout(volume, affine),
        "dcm2niix": dcm2niix_layout(volume, affine, reverse_slices=True),
        "permuted": permuted_layout(volume, affine),
    }.items():
        path = save_nifti(tmp_path / f"{name}.nii.gz", data, aff)
        np.testing.assert_array_equal(load_label_volume(path, geo), volume)
    data, aff = itk_layout(volume, affine)
    path = str(tmp_path / "oblique.nrrd")
    header = {"space": "LPS", "space directions": aff[:3, :3].T, "space origin": aff[:3, 3]}
    nrrd.write(path, data, header)
    np.testing.assert_array_equal(load_label_volume(path, geo), volume)


def test_integral_float_labels_accepted_fractional_refused(axial, tmp_path):
    folder, geo = axial
    volume = planted(geo.shape, seed=5)
    data, aff = itk_layout(volume, dicom_lps_affine_ijk(folder))
    path = save_nifti(tmp_path / "float.nii.gz", data, aff, dtype=np.float32)
    loaded = load_label_volume(path, geo)
    assert np.issubdtype(loaded.dtype, np.integer)
    np.testing.assert_array_equal(loaded, volume)
    soft = data.astype(np.float32) * 0.5
    path = save_nifti(tmp_path / "prob.nii.gz", soft, aff, dtype=np.float32)
    with pytest.raises(VolumeFormatError, match=r"not integer labels \(e\.g\. \d\.5 at voxel"):
        load_label_volume(path, geo)


def test_label_instances():
    volume = np.zeros((2, 3, 4), np.uint8)
    volume[0, 0, :2] = 3
    volume[1, 2, 3] = 7
    assert label_instances(volume) == {3: 2, 7: 1}
    assert list(label_instances(volume)) == [3, 7]
    assert label_instances(np.zeros((2, 2, 2), np.int16)) == {}
    assert label_instances(volume.astype(np.int64) * 100000) == {300000: 2, 700000: 1}


# --- label volumes: refusals name the axis and the amount ------------------------


def _load_modified(folder, geo, tmp_path, edit, name="bad.nii.gz"):
    volume = planted(geo.shape)
    data, aff = edit(*itk_layout(volume, dicom_lps_affine_ijk(folder)))
    path = save_nifti(tmp_path / name, data, aff)
    with pytest.raises(VolumeGeometryError) as err:
        load_label_volume(path, geo)
    return str(err.value)


def test_refuses_wrong_slice_spacing(axial, tmp_path):
    folder, geo = axial

    def edit(data, aff):
        aff = aff.copy()
        aff[:3, 2] *= 3.0 / SLICE
        return data, aff

    msg = _load_modified(folder, geo, tmp_path, edit)
    assert "slice spacing 3.00 mm in the file, 2.50 mm in the series" in msg
    assert "file axis k" in msg


def test_refuses_shifted_origin(axial, tmp_path):
    folder, geo = axial

    def edit(data, aff):
        aff = aff.copy()
        aff[:3, 3] += [0.0, 1.6, 0.0]  # two rows down (row spacing 0.8 mm)
        return data, aff

    msg = _load_modified(folder, geo, tmp_path, edit)
    assert "origin" in msg and "1.60 mm from the series origin" in msg
    assert "+1.60 mm along the row axis (+2.00 voxels)" in msg
    assert "slice axis" not in msg and "column axis" not in msg


def test_refuses_swapped_axes(axial, tmp_path):
    """Rows and columns transposed in the data but not in the affine."""
    folder, geo = axial
    msg = _load_modified(folder, geo, tmp_path, lambda d, a: (d.transpose(1, 0, 2), a))
    assert "row axis (file axis j) has 32 voxels in the file, 24 in the series (+8)" in msg
    assert "column axis (file axis i) has 24 voxels in the file, 32 in the series (-8)" in msg


def test_refuses_wrong_shape(axial, tmp_path):
    folder, geo = axial
    msg = _load_modified(folder, geo, tmp_path, lambda d, a: (d[:, :, :-1], a))
    assert "slice axis (file axis k) has 5 voxels in the file, 6 in the series (-1)" in msg
    assert "row axis" not in msg and "column axis" not in msg


def test_refuses_rotated_grid(axial, tmp_path):
    folder, geo = axial

    def edit(data, aff):
        aff = aff.copy()
        aff[:3, :3] = rotation(0, 0, 5.0) @ aff[:3, :3]
        return data, aff

    msg = _load_modified(folder, geo, tmp_path, edit)
    assert "file axis i runs 5.00 degrees off the series column axis" in msg
    assert "file axis j runs 5.00 degrees off the series row axis" in msg
    assert "slice axis" not in msg


def test_refuses_unoriented_and_unknown_space(axial, tmp_path):
    folder, geo = axial
    data, aff = itk_layout(planted(geo.shape), dicom_lps_affine_ijk(folder))
    img = nib.Nifti1Image(data, LPS_TO_RAS @ aff)
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    path = str(tmp_path / "analyze.nii.gz")
    nib.save(img, path)
    with pytest.raises(VolumeGeometryError, match="no orientation"):
        load_label_volume(path, geo)
    path = str(tmp_path / "scanner.nrrd")
    header = {"space": "scanner-xyz", "space directions": aff[:3, :3].T, "space origin": aff[:3, 3]}
    nrrd.write(path, data, header)
    with pytest.raises(VolumeGeometryError, match="not an anatomical 3-D space"):
        load_label_volume(path, geo)
    with pytest.raises(VolumeFormatError, match="unknown label volume format"):
        load_label_volume(str(tmp_path / "labels.mha"), geo)


def test_refuses_disagreeing_forms_negative_labels_and_layers(axial, tmp_path):
    folder, geo = axial
    volume = planted(geo.shape)
    data, aff = itk_layout(volume, dicom_lps_affine_ijk(folder))
    img = nib.Nifti1Image(data, LPS_TO_RAS @ aff)
    shifted = aff.copy()
    shifted[:3, 3] += [0.0, 0.0, 2.5]
    img.set_qform(LPS_TO_RAS @ shifted, code=1)
    img.set_sform(LPS_TO_RAS @ aff, code=1)
    path = str(tmp_path / "forms.nii.gz")
    nib.save(img, path)
    with pytest.raises(VolumeGeometryError, match=r"sform and qform disagree by up to 2\.50 mm"):
        load_label_volume(path, geo)

    path = save_nifti(tmp_path / "neg.nii.gz", data.astype(np.int16) - 1, aff, dtype=np.int16)
    with pytest.raises(VolumeFormatError, match="negative label value -1"):
        load_label_volume(path, geo)

    layers = np.stack([data, data])
    header = {
        "space": "LPS",
        "space directions": np.vstack([np.full(3, np.nan), aff[:3, :3].T]),
        "space origin": aff[:3, 3],
        "kinds": ["list", "domain", "domain", "domain"],
    }
    path = str(tmp_path / "layers.seg.nrrd")
    nrrd.write(path, layers, header)
    with pytest.raises(VolumeFormatError, match="NRRD axis 0 is a non-spatial axis of size 2"):
        load_label_volume(path, geo)


def test_single_slice_series_with_2d_label(tmp_path):
    """nnU-Net 2-D: a one-slice series and a label file with k of length 1."""
    folder = tmp_path / "one"
    write_series(folder, axial_positions(1))
    geo = geometry_of(folder, fallback_thickness=SLICE)
    volume = planted(geo.shape, seed=6)
    affine = geo.affine_lps()  # one slice: no second position to take the step from
    path = save_nifti(tmp_path / "one.nii.gz", volume.transpose(2, 1, 0), affine)
    assert nib.load(path).shape == (COLS, ROWS, 1)
    np.testing.assert_array_equal(load_label_volume(path, geo), volume)


def test_module_does_not_import_fiftyone():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "import sys, multireader.io.volume; print('fiftyone' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
