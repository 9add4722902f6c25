"""The importer's fast paths give what the slow, reference paths give.

Each fast path (pixels straight from the bytes, int16 rescale, in-place windowing, the
PNG writer, plain-dict inserts with slice order computed in memory, the shared worker
pool) is compared here with the implementation it replaces or with an independent one
(pydicom's decoder, Pillow's and OpenCV's PNG readers, FiftyOne's ``add_samples``).
"""

import datetime as dt
import io
import os
import warnings

import cv2
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file, get_testdata_files

from multireader.core import fields as F
from multireader.core import parallel
from multireader.ingest import importer
from multireader.io import dicom, png

# --- pixels straight from the bytes ---------------------------------------------------


def _readable(path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path)
    except Exception:  # noqa: BLE001 - not every shipped file is DICOM
        return None


def test_uncompressed_grey_pixels_equal_pydicoms_on_every_shipped_file():
    compared = 0
    for path in sorted(get_testdata_files()):
        ds = _readable(path)
        if ds is None or "PixelData" not in ds:
            continue
        ours = dicom._uncompressed_grey(ds)
        if ours is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = pydicom.dcmread(path).pixel_array
        assert ours.dtype == theirs.dtype, path
        np.testing.assert_array_equal(ours, theirs, err_msg=path)
        compared += 1
    assert compared >= 20  # the fast path is really taken on the usual files


def _with_pixels(arr, bits_stored, signed, frames=1):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = (
        arr.dtype.itemsize * 8,
        bits_stored,
        bits_stored - 1,
    )
    ds.PixelRepresentation = int(signed)
    ds.Rows, ds.Columns = arr.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = arr.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf)
    buf.seek(0)
    return pydicom.dcmread(buf)


@pytest.mark.parametrize(
    ("dtype", "bits_stored", "frames"),
    [
        (np.uint16, 12, 1),  # garbage in the 4 unused bits: pydicom masks them
        (np.int16, 12, 1),  # signed 12-bit values: sign extension from bit 11
        (np.int16, 16, 1),
        (np.uint8, 8, 3),  # multi-frame 8-bit
        (np.uint8, 6, 2),
        (np.uint32, 20, 1),
    ],
)
def test_uncompressed_grey_pixels_mask_unused_bits_as_pydicom_does(dtype, bits_stored, frames):
    rng = np.random.default_rng(bits_stored + frames)
    info = np.iinfo(dtype)
    shape = (frames, 7, 5) if frames > 1 else (7, 5)
    arr = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    ds = _with_pixels(arr, bits_stored, info.min < 0, frames)
    ours = dicom._uncompressed_grey(ds)
    assert ours is not None
    theirs = ds.pixel_array
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_uncompressed_grey_leaves_short_or_compressed_data_to_pydicom():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PixelData = ds.PixelData[:-10]
    assert dicom._uncompressed_grey(ds) is None  # pydicom reports the problem
    assert dicom._uncompressed_grey(pydicom.dcmread(get_testdata_file("JPEG2000.dcm"))) is None
    assert dicom._uncompressed_grey(pydicom.dcmread(get_testdata_file("SC_rgb.dcm"))) is None


# --- rescale and window ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
@pytest.mark.parametrize(
    ("slope", "intercept"), [(1, -1024), (1, 0), (2, -3000), (-1, 5), (1, 40000), (3, -70000)]
)
def test_integer_rescale_equals_the_int64_computation(dtype, slope, intercept):
    rng = np.random.default_rng(abs(intercept) + slope)
    info = np.iinfo(dtype)
    frame = rng.integers(info.min, info.max, (33, 17), dtype=dtype, endpoint=True)
    ours = dicom._integer_rescale(frame, slope, intercept)
    reference = dicom._compact(frame.astype(np.int64) * slope + intercept)
    assert ours.dtype == reference.dtype
    np.testing.assert_array_equal(ours, reference)


def _window_reference(native, center, width, invert, function):
    """The formula as it was written before the in-place version (PS3.3 C.11.2.1.2)."""
    x = native.astype(np.float32, copy=False)
    if function == "SIGMOID":
        scaled = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / max(width, 1e-6)))
    elif function == "LINEAR_EXACT":
        scaled = (x - (center - width / 2)) / max(width, 1e-6)
    else:
        scaled = (x - (center - 0.5 - (width - 1) / 2)) / max(width - 1, 1e-6)
    out = np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return 255 - out if invert else out


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_window_is_bit_identical_to_the_reference_formula(function, invert, dtype):
    rng = np.random.default_rng(3)
    native = (rng.normal(40, 500, (64, 48))).clip(-1024, 3000)
    native = native.clip(0, 255).astype(dtype) if dtype == np.uint8 else native.astype(dtype)
    for center, width in ((40.0, 400.0), (-600.0, 1500.0), (127.5, 1.0), (10.0, 1e-9)):
        with np.errstate(over="ignore"):  # the sigmoid of a 1e-9 window saturates
            ours = dicom.window_to_uint8(native, center, width, invert, function)
            reference = _window_reference(native, center, width, invert, function)
        np.testing.assert_array_equal(ours, reference)


# --- PNG ------------------------------------------------------------------------------


def _images():
    rng = np.random.default_rng(7)
    yield rng.integers(0, 256, (512, 512), dtype=np.uint8)
    yield np.tile(np.arange(256, dtype=np.uint8), (40, 1))
    yield rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    yield np.zeros((1, 1), np.uint8)
    yield rng.integers(0, 256, (1, 9, 3), dtype=np.uint8)
    yield rng.integers(0, 256, (9, 1), dtype=np.uint8)


@pytest.mark.parametrize("fast", [True, False])
def test_png_reads_back_exactly_in_pillow_and_opencv(fast, monkeypatch):
    if not fast:
        monkeypatch.setattr(png, "_fast_zlib", None)  # the standard library's zlib
    elif not png.HAVE_FAST_DEFLATE:
        pytest.skip("isal is not installed")
    for image in _images():
        data = png.encode_png(image)
        pil = np.asarray(Image.open(io.BytesIO(data)))
        np.testing.assert_array_equal(pil, image)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image.ndim == 3:
            decoded = decoded[..., ::-1]
        np.testing.assert_array_equal(decoded.reshape(image.shape), image)


def test_png_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="uint8"):
        png.encode_png(np.zeros((4, 4), np.uint16))
    with pytest.raises(ValueError, match=r"\(h, w\)"):
        png.encode_png(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="pixel"):
        png.encode_png(np.zeros((0, 4), np.uint8))


def test_the_importer_writes_renders_with_the_fast_writer():
    decoded = dicom.decode(get_testdata_file("CT_small.dcm"))
    image = dicom.render(decoded, decoded.frames[0])
    data = dicom.encode_png(image)
    if png.HAVE_FAST_DEFLATE:
        assert data == png.encode_png(image)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), image)


# --- plain-dict inserts and slice order in memory ---------------------------------------


def _series_files(folder, n=6):
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series = pydicom.uid.generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        ds = src.copy()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        # positions against the file order; two slices tie on position and instance
        ds.ImagePositionPatient = [0.0, 0.0, float((i * 7) % n) if i != 5 else 0.0]
        ds.InstanceNumber = 1 if i in (0, 5) else i + 1
        ds.StudyDate = "20240131"
        path = str(folder / f"s{i}.dcm")
        ds.save_as(path)
        paths.append(path)
    return paths


def _mixed_inputs(tmp_path):
    return _series_files(tmp_path / "series") + [
        get_testdata_file(name)
        for name in ("MR_small.dcm", "emri_small.dcm", "SC_rgb.dcm", "US1_UNCR.dcm", "rtdose.dcm")
    ]


def _documents(dataset):
    """Stored documents without what differs by construction (ids, times, media paths)."""
    drop = {"_id", "_rand", "created_at", "last_modified_at", "_dataset_id", "filepath"}
    out = []
    for doc in dataset._sample_collection.find({}, sort=[(F.DICOM_KEY, 1)]):
        out.append(
            {
                k: v
                for k, v in doc.items()
                if k not in drop
                and v is not None
                and k != F.NATIVE_PATH
                and not k.startswith("filepath_")
            }
        )
    return out


def _slice_order_by_key(dataset):
    return dict(zip(dataset.values(F.DICOM_KEY), dataset.values(F.SLICE_INDEX), strict=True))


def test_plain_documents_are_the_ones_add_samples_stores(tmp_path, monkeypatch):
    import uuid

    import fiftyone as fo

    inputs = _mixed_inputs(tmp_path)
    kwargs = dict(presets=["lung"], include_study_date=True, include_identifiers=True)
    fast_ds = fo.Dataset(f"test-mr-fast-{uuid.uuid4().hex[:8]}")
    slow_ds = fo.Dataset(f"test-mr-slow-{uuid.uuid4().hex[:8]}")
    try:
        used = []
        original = importer._plain_documents

        def spy(dataset, records):
            docs = original(dataset, records)
            used.append(docs is not None)
            return docs

        monkeypatch.setattr(importer, "_plain_documents", spy)
        fast = importer.import_dicom(
            fast_ds, inputs, render_dir=str(tmp_path / "fast"), num_workers=2, **kwargs
        )
        assert used == [True]  # the fast path ran, it did not fall back
        monkeypatch.setattr(importer, "_plain_documents", lambda dataset, records: None)
        slow = importer.import_dicom(
            slow_ds, inputs, render_dir=str(tmp_path / "slow"), num_workers=1, **kwargs
        )
        assert fast.imported == slow.imported == len(slow_ds) == len(fast_ds) > len(inputs)
        assert _documents(fast_ds) == _documents(slow_ds)
        assert fast_ds.distinct("study_date") == slow_ds.distinct("study_date")
        assert dt.date(2024, 1, 31) in {
            getattr(d, "date", lambda d=d: d)() for d in fast_ds.distinct("study_date")
        }
        fast_schema = fast_ds.get_field_schema(include_private=True)
        slow_schema = slow_ds.get_field_schema(include_private=True)
        assert {k: str(v) for k, v in fast_schema.items()} == {
            k: str(v) for k, v in slow_schema.items()
        }
        assert _slice_order_by_key(fast_ds) == _slice_order_by_key(slow_ds)
        assert fast_ds.list_saved_views() == slow_ds.list_saved_views() == [F.VOLUME_VIEW]
        assert fast_ds.app_config.media_fields == slow_ds.app_config.media_fields
        assert fast_ds.media_type == "image"
        # the documents load as FiftyOne samples with typed metadata
        sample = fast_ds.first()
        assert isinstance(sample.metadata, fo.ImageMetadata) and sample.metadata.width > 0
        assert len(fast_ds.take(3)) == 3  # _rand is set
        idx = fast_ds.get_index_information()
        assert idx[F.DICOM_KEY]["unique"] and F.SERIES_UID in idx
    finally:
        fast_ds.delete()
        slow_ds.delete()


def test_slices_added_to_a_series_are_ordered_with_those_already_there(dataset, tmp_path):
    paths = _series_files(tmp_path / "series", n=6)
    importer.import_dicom(dataset, paths[:3], render_dir=str(tmp_path / "r"))
    importer.import_dicom(dataset, paths[3:], render_dir=str(tmp_path / "r"))
    ranks = dataset.sort_by(F.SLICE_INDEX).values(F.SLICE_INDEX)
    assert ranks == list(range(6))
    pos = dataset.sort_by(F.SLICE_INDEX).values(F.SLICE_POSITION)
    assert pos == sorted(pos)


def test_slice_order_in_memory_matches_the_database_order(dataset, tmp_path):
    paths = _series_files(tmp_path / "series", n=6)
    importer.import_dicom(dataset, paths, render_dir=str(tmp_path / "r"))
    in_memory = _slice_order_by_key(dataset)
    positions = dict(
        zip(dataset.values(F.DICOM_KEY), dataset.values(F.SLICE_POSITION), strict=True)
    )
    dataset.set_values(F.SLICE_INDEX, [None] * len(dataset))
    importer.order_slices(dataset, dataset.distinct(F.SERIES_UID))
    assert _slice_order_by_key(dataset) == in_memory
    assert (
        dict(zip(dataset.values(F.DICOM_KEY), dataset.values(F.SLICE_POSITION), strict=True))
        == positions
    )


# --- the shared worker pool -------------------------------------------------------------


def test_the_worker_pool_is_kept_between_imports_and_replaced_when_broken(tmp_path):
    paths = _series_files(tmp_path / "series", n=8)
    options = {"render_dir": str(tmp_path / "r"), "salt": b"t", "existing_sops": set()}
    os.makedirs(options["render_dir"])
    first = list(importer._run(paths, options, 2))
    pool = parallel.shared_pool(2)
    again = list(importer._run(paths, options, 2))
    assert parallel.shared_pool(2) is pool
    assert len(first) == len(again) == 8 and all("frames" in r for r in again)
    # a killed worker breaks the pool: at most the import running then fails, with
    # BrokenProcessPool; the next one gets a new pool
    for process in list(pool._processes.values()):
        process.kill()
        process.join()
    try:
        results = list(importer._run(paths, options, 2))
    except parallel.BrokenProcessPool:
        results = list(importer._run(paths, options, 2))
    assert len(results) == 8 and all("frames" in r for r in results)
    assert parallel.shared_pool(2) is not pool
