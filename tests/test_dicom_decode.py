"""Decoding and rendering on real files from pydicom and pydicom-data (no database).

The independent checks: lossless encodings of one image must decode to the same
values; HU must equal stored value x slope + intercept; palettes and Modality LUTs are
looked up by hand from the raw LUT bytes; windows follow DICOM's formula written out
here again.
"""

import hashlib
import hmac
import os
import stat
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import UID

from multireader.io import deid, dicom


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _data(name: str) -> str:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pydicom-data missing)")
    return path


def _natives(name: str) -> np.ndarray:
    return np.stack([f.native for f in dicom.decode(_data(name)).frames])


def _linear(native, center, width):
    """DICOM PS3.3 C.11.2.1.2, written out independently of the module."""
    x = np.asarray(native, dtype=np.float64)
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255
    y = np.where(x <= center - 0.5 - (width - 1) / 2, 0, y)
    y = np.where(x > center - 0.5 + (width - 1) / 2, 255, y)
    return y


# --- every transfer syntax -------------------------------------------------------
@pytest.mark.parametrize(
    "reference, variants",
    [
        (
            "MR_small.dcm",
            [
                "MR_small_RLE.dcm",  # RLE
                "MR_small_bigendian.dcm",  # explicit VR big endian
                "MR_small_implicit.dcm",  # implicit VR little endian
                "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
                "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
            ],
        ),
        (
            "emri_small.dcm",  # 10 frames
            [
                "emri_small_RLE.dcm",
                "emri_small_big_endian.dcm",
                "emri_small_jpeg_2k_lossless.dcm",
                "emri_small_jpeg_ls_lossless.dcm",
            ],
        ),
        ("693_UNCR.dcm", ["693_J2KR.dcm"]),  # CT, JPEG 2000 lossless
        ("RG1_UNCR.dcm", ["RG1_J2KR.dcm"]),  # MONOCHROME1 CR
        ("US1_UNCR.dcm", ["US1_J2KR.dcm"]),  # colour, JPEG 2000 YBR_RCT -> RGB
        # lossy JPEG 2000 against the reference decompression that ships beside it
        ("693_UNCI.dcm", ["693_J2KI.dcm"]),
        ("MR2_UNCI.dcm", ["MR2_J2KI.dcm"]),
        ("RG1_UNCI.dcm", ["RG1_J2KI.dcm"]),
        ("US1_UNCI.dcm", ["US1_J2KI.dcm"]),  # YBR_ICT -> RGB
        ("rtdose.dcm", ["rtdose_rle.dcm", "rtdose_expb.dcm"]),  # 15-frame dose grid
    ],
)
def test_lossless_encodings_decode_to_the_same_values(reference, variants):
    expected = _natives(reference)
    for name in variants:
        got = _natives(name)
        assert got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_jpeg_lossless_jpeg_baseline_and_deflate_decode():
    # JPEG lossless (process 14): pixel values as pydicom decodes them, no rescale present
    ll = pydicom.dcmread(_data("JPEG-LL.dcm"))
    np.testing.assert_array_equal(_natives("JPEG-LL.dcm")[0], ll.pixel_array)
    # deflated explicit VR little endian
    dfl = pydicom.dcmread(_data("image_dfl.dcm"))
    np.testing.assert_array_equal(_natives("image_dfl.dcm")[0], dfl.pixel_array)
    # JPEG baseline in YBR comes out as RGB close to the uncompressed original
    rgb = _natives("SC_rgb.dcm")[0].astype(int)
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_jpeg_gdcm.dcm"):
        got = _natives(name)[0].astype(int)
        assert got.shape == rgb.shape == (100, 100, 3)
        assert np.abs(got - rgb).mean() < 3, name


def test_ct_comes_out_in_hounsfield_units_as_int16():
    path = _data("CT_small.dcm")
    raw = pydicom.dcmread(path)
    expected = raw.pixel_array.astype(np.int64) * int(raw.RescaleSlope) + int(raw.RescaleIntercept)
    decoded = dicom.decode(path)
    native = decoded.frames[0].native
    assert native.dtype == np.int16
    np.testing.assert_array_equal(native, expected)
    # air outside the body, soft tissue inside
    assert native.min() < -800 and -100 < np.median(native) < 200


def test_non_integer_rescale_is_float32():
    ds = pydicom.dcmread(_data("CT_small.dcm"))
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, -1024.25
    ds.WindowCenter, ds.WindowWidth = 40, 400
    native = dicom._modality_lut(ds.pixel_array, ds, 0)
    assert native.dtype == np.float32
    np.testing.assert_allclose(native, ds.pixel_array * 0.5 - 1024.25, rtol=0, atol=1e-3)


def test_modality_lut_sequence_is_looked_up():
    path = _data("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    item = ds.ModalityLUTSequence[0]
    n, first, bits = (int(v) for v in item.LUTDescriptor)
    n = n or 65536
    data = item.LUTData
    lut = (
        np.asarray(data)
        if isinstance(data, (list, pydicom.multival.MultiValue))
        else np.frombuffer(data, dtype="<u2" if bits > 8 else "u1")
    )
    expected = lut[np.clip(ds.pixel_array.astype(int) - first, 0, n - 1)]
    np.testing.assert_array_equal(_natives("mlut_18.dcm")[0], expected)


def test_palette_colour_is_mapped_through_the_palette():
    path = _data("OBXXXX1A.dcm")
    ds = pydicom.dcmread(path)
    idx = ds.pixel_array.astype(int)
    channels = []
    for colour in ("Red", "Green", "Blue"):
        n, first, bits = (int(v) for v in ds[f"{colour}PaletteColorLookupTableDescriptor"].value)
        lut = np.frombuffer(ds[f"{colour}PaletteColorLookupTableData"].value, dtype="<u2")
        channels.append(lut[np.clip(idx - first, 0, (n or 65536) - 1)])
    expected = np.stack(channels, axis=-1)
    decoded = dicom.decode(path)
    assert decoded.is_color
    np.testing.assert_array_equal(decoded.frames[0].native, expected)
    image = dicom.render(decoded, decoded.frames[0])
    assert image.dtype == np.uint8 and image.shape == expected.shape


def test_rgb_keeps_three_channels_in_every_frame():
    decoded = dicom.decode(_data("SC_rgb_2frame.dcm"))
    raw = pydicom.dcmread(_data("SC_rgb_2frame.dcm")).pixel_array
    assert len(decoded.frames) == 2
    for frame in decoded.frames:
        assert frame.native.shape == (100, 100, 3)
        np.testing.assert_array_equal(frame.native, raw[frame.index])
        assert dicom.render(decoded, frame).shape == (100, 100, 3)
    # 16-bit colour renders to 8 bits by its own maximum
    d16 = dicom.decode(_data("SC_rgb_16bit.dcm"))
    img = dicom.render(d16, d16.frames[0])
    assert img.dtype == np.uint8 and img.max() == 255


# --- windows ---------------------------------------------------------------------
def test_the_files_first_window_renders_the_frame():
    path = _data("MR_small.dcm")
    ds = pydicom.dcmread(path)
    center, width = ds.WindowCenter, ds.WindowWidth
    c = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
    w = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
    decoded = dicom.decode(path)
    image = dicom.render(decoded, decoded.frames[0]).astype(int)
    expected = _linear(decoded.frames[0].native, c, w)
    assert np.abs(image - expected).max() <= 1


def test_monochrome1_is_inverted():
    path = _data("RG1_UNCR.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    c, w = dicom.file_window(ds)
    decoded = dicom.decode(path)
    native = decoded.frames[0].native
    image = dicom.render(decoded, decoded.frames[0]).astype(int)
    assert np.abs(image - (255 - _linear(native, c, w))).max() <= 1
    # the brightest stored values (low attenuation in MONOCHROME1) render dark
    assert image[native >= np.percentile(native, 99)].mean() < image.mean()


def test_voi_lut_sequence_is_used_when_there_is_no_window():
    path = _data("vlut_04.dcm")
    ds = pydicom.dcmread(path)
    assert "WindowCenter" not in ds
    item = ds.VOILUTSequence[0]
    n, first, bits = (int(v) for v in item.LUTDescriptor)
    lut = np.asarray(item.LUTData, dtype=float)
    native = dicom.decode(path).frames[0].native
    expected = lut[np.clip(native.astype(int) - first, 0, (n or 65536) - 1)] / (2**bits - 1) * 255
    decoded = dicom.decode(path)
    image = dicom.render(decoded, decoded.frames[0]).astype(int)
    assert np.abs(image - expected).max() <= 1


def test_percentile_window_when_the_file_has_none():
    decoded = dicom.decode(_data("CT_small.dcm"))
    assert dicom.file_window(decoded.dataset) is None
    native = decoded.frames[0].native.astype(float)
    image = dicom.render(decoded, decoded.frames[0])
    lo, hi = np.percentile(native, [0.5, 99.5])
    assert np.all(image[native < lo] == 0) and np.all(image[native > hi] == 255)
    # about 1% of pixels fall outside the window, not the half that min/max or a
    # wrong window would clip
    assert np.mean((image == 0) | (image == 255)) < 0.05


def test_presets_are_standard_windows_in_hu():
    assert dicom.WINDOW_PRESETS["lung"] == (-600.0, 1500.0)
    assert dicom.WINDOW_PRESETS["brain"] == (40.0, 80.0)
    decoded = dicom.decode(_data("CT_small.dcm"))
    frame = decoded.frames[0]
    renders = {p: dicom.render(decoded, frame, p).astype(int) for p in dicom.WINDOW_PRESETS}
    for preset, (c, w) in dicom.WINDOW_PRESETS.items():
        assert np.abs(renders[preset] - _linear(frame.native, c, w)).max() <= 1, preset
    assert not np.array_equal(renders["lung"], renders["bone"])
    with pytest.raises(ValueError, match="unknown window"):
        dicom.check_window("liver")


def test_voi_lut_functions():
    x = np.array([-1000.0, 0.0, 40.0, 80.0, 1000.0])
    exact = dicom.window_to_uint8(x, 40, 80, function="LINEAR_EXACT").astype(int)
    assert list(exact) == [0, 0, 128, 255, 255]
    sigmoid = dicom.window_to_uint8(x, 40, 80, function="SIGMOID").astype(int)
    assert sigmoid[2] == 128 and sigmoid[0] == 0 and sigmoid[-1] == 255
    assert list(dicom.window_to_uint8(x, 40, 80, invert=True)) == list(
        255 - dicom.window_to_uint8(x, 40, 80)
    )


# --- frames and geometry -----------------------------------------------------------
def test_enhanced_multiframe_frames_have_their_own_positions():
    path = _data("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    frames = dicom.decode(path).frames
    assert [f.index for f in frames] == list(range(int(ds.NumberOfFrames)))
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        expected = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert frame.position == pytest.approx(expected)
    shared = ds.SharedFunctionalGroupsSequence[0]
    if "PixelMeasuresSequence" in shared:
        spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
        assert frames[0].spacing == pytest.approx(spacing)


def test_decode_frames_gives_one_record_per_frame():
    path = _data("emri_small.dcm")
    records = dicom.decode_frames(path, presets=["brain"])
    sop = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    assert [r.dicom_key for r in records] == [f"{sop}:{i}" for i in range(10)]
    assert {r.n_frames for r in records} == {10}
    for r in records:
        assert r.render.dtype == np.uint8 and r.render.shape == r.native.shape
        assert set(r.presets) == {"brain"}
        assert r.metadata["modality"] == "MR"
        assert not set(r.metadata) & set(deid.IDENTIFIER_KEYWORDS)


# --- skip reasons ------------------------------------------------------------------
def test_every_bad_file_raises_its_own_reason(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not an image\n" * 20)
    with pytest.raises(dicom.NotDicomError, match="not a DICOM file"):
        dicom.decode(str(text))

    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(dicom.TruncatedError, match="empty"):
        dicom.decode(str(empty))

    with pytest.raises(dicom.TruncatedError, match="8130 bytes where 8192"):
        dicom.decode(_data("MR_truncated.dcm"))

    with open(_data("CT_small.dcm"), "rb") as f:
        data = f.read()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(dicom.TruncatedError):
        dicom.decode(str(cut))

    with pytest.raises(dicom.NoPixelDataError, match="no pixel data"):
        dicom.decode(_data("waveform_ecg.dcm"))
    with pytest.raises(dicom.NotAnImageError, match="DICOM-SEG"):
        dicom.decode(_data("liver.dcm"))
    with pytest.raises(dicom.NotAnImageError, match="RT structure set"):
        dicom.decode(_data("rtstruct.dcm"))
    with pytest.raises(dicom.NotAnImageError, match="DICOMDIR"):
        dicom.decode(_data("DICOMDIR"))

    ds = pydicom.dcmread(_data("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2
    ds.PixelData = encapsulate([ds.PixelData])
    mpeg = tmp_path / "mpeg2.dcm"
    ds.save_as(mpeg, enforce_file_format=False)
    with pytest.raises(dicom.UnsupportedTransferSyntaxError, match="MPEG2"):
        dicom.decode(str(mpeg))

    with pytest.raises(dicom.UndecodablePixelDataError, match="JPEG Extended"):
        dicom.decode(_data("JPEG-lossy.dcm"))
    # all of them are DicomSkip, which is what the importer catches
    assert issubclass(dicom.UndecodablePixelDataError, dicom.DicomSkip)


# --- identifiers and binning -------------------------------------------------------
def test_patient_key_is_hmac_of_id_and_issuer():
    ds = pydicom.Dataset()
    ds.PatientID, ds.IssuerOfPatientID = "12345", "HOSP"
    salt = b"s3cret"
    expected = hmac.new(salt, b"12345|HOSP", hashlib.sha256).hexdigest()[:16]
    assert deid.patient_key(ds, salt) == expected
    ds.IssuerOfPatientID = "OTHER"
    assert deid.patient_key(ds, salt) != expected  # same number, other hospital
    assert deid.patient_key(ds, b"other-salt") != deid.patient_key(ds, salt)
    assert deid.patient_key(pydicom.Dataset(), salt) is None


def test_salt_file_is_created_once_and_private(tmp_path, monkeypatch):
    monkeypatch.delenv(deid.SALT_ENV, raising=False)
    monkeypatch.setattr(deid, "SALT_FILE", str(tmp_path / "cfg" / "salt"))
    first = deid.load_salt()
    assert len(first) == 64
    assert stat.S_IMODE(os.stat(deid.SALT_FILE).st_mode) == 0o600
    assert deid.load_salt() == first
    monkeypatch.setenv(deid.SALT_ENV, "from-env")
    assert deid.load_salt() == b"from-env"


@pytest.mark.parametrize(
    "age, birth, study, expected",
    [
        ("045Y", None, None, "40-49"),
        ("006M", None, None, "0-9"),
        ("003W", None, None, "0-9"),
        ("093Y", None, None, "90+"),
        (None, "19600305", "20200304", "50-59"),
        (None, "19600305", "20200305", "60-69"),
        (None, None, None, None),
    ],
)
def test_age_is_binned_by_decade(age, birth, study, expected):
    ds = pydicom.Dataset()
    if age:
        ds.PatientAge = age
    if birth:
        ds.PatientBirthDate, ds.StudyDate = birth, study
    assert deid.age_bin(deid.age_years(ds)) == expected


def test_metadata_is_typed_binned_and_free_of_identifiers():
    ds = pydicom.dcmread(_data("CT_small.dcm"), stop_before_pixels=True)
    ds.PatientWeight = "71.5"
    ds.ContrastBolusAgent = "IOPAMIDOL"
    meta = dicom.header_metadata(ds)
    assert meta["modality"] == "CT"
    assert meta["kvp"] == float(ds.KVP)
    assert meta["slice_thickness"] == float(ds.SliceThickness)
    assert meta["contrast"] is True
    assert meta["patient_weight_bin"] == "60-79kg"
    assert "study_date" not in meta
    assert deid.extract_metadata(ds, include_study_date=True)["study_date"].isoformat() == (
        f"{ds.StudyDate[:4]}-{ds.StudyDate[4:6]}-{ds.StudyDate[6:8]}"
    )
    values = {str(v) for v in meta.values()}
    assert str(ds.PatientName) not in values and str(ds.PatientID) not in values
    ids = deid.extract_identifiers(ds)
    assert ids["PatientName"] == str(ds.PatientName)
    assert ids["PatientID"] == str(ds.PatientID)
