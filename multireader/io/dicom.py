"""DICOM decoding and rendering: pydicom and numpy only, no FiftyOne.

One file becomes a list of frames. Each frame keeps its native values after the
Modality LUT (Hounsfield units for CT), its own geometry, and an 8-bit render through
the file's VOI window or a named preset. Files that cannot be read raise a subclass of
:class:`DicomSkip` whose message says what is wrong in words a person can act on, so
an import can report it per file and go on with the rest.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

from multireader.errors import MultireaderError
from multireader.io import deid, source_paths
from multireader.io import png as fast_png
from multireader.io.deid import lookup

#: standard radiology windows, (center, width) in HU
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "soft_tissue": (40.0, 400.0),
}

#: objects that carry labels or documents, not images to look at
NON_IMAGE_MODALITIES = {
    "SEG": "a DICOM-SEG segmentation, not an image; import it with import_reader_labels",
    "RTSTRUCT": "an RT structure set (contours), not an image; import it with import_reader_labels",
    "SR": "a structured report, not an image",
    "PR": "a presentation state, not an image",
    "KO": "a key object selection, not an image",
    "RTPLAN": "an RT plan, not an image",
}

#: transfer syntaxes whose pixel data is stored uncompressed (size is predictable)
_NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian
}

#: uncompressed little-endian syntaxes: their pixels are read straight from the bytes
_LITTLE_ENDIAN_NATIVE = {
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
}


# --- why a file is skipped ---------------------------------------------------------
class DicomSkip(MultireaderError):
    """A file that cannot be imported; ``str(err)`` says why.

    Subclasses name the kind of problem, so callers (and tests) can tell a truncated
    file from one that is simply not DICOM without parsing the message.
    """


class NotDicomError(DicomSkip):
    """The file is not DICOM at all (no DICM prefix, nothing parses as DICOM)."""


class TruncatedError(DicomSkip):
    """The file is DICOM but ends early (empty, cut-off elements or pixel data)."""


class NoPixelDataError(DicomSkip):
    """A DICOM object without pixel data (waveforms, bare headers)."""


class NotAnImageError(DicomSkip):
    """An object that holds labels or an index, not an image: SEG, RTSTRUCT, SR, DICOMDIR."""


class UnsupportedTransferSyntaxError(DicomSkip):
    """No installed decoder handles the file's transfer syntax (named in the message)."""


class UndecodablePixelDataError(DicomSkip):
    """A decoder exists but the pixel data or its describing attributes are broken."""


@dataclass
class Frame:
    """One 2-D frame: native values, geometry, and what the importer stores."""

    index: int
    native: np.ndarray
    position: list[float] | None = None
    orientation: list[float] | None = None
    spacing: list[float] | None = None
    instance_number: int | None = None


@dataclass
class DecodedFile:
    """Every frame of one file, with the header that renders them."""

    path: str
    dataset: pydicom.Dataset
    frames: list[Frame] = field(default_factory=list)
    photometric: str = ""
    is_color: bool = False


@dataclass
class FrameRecord:
    """One frame ready to store: native values, its 8-bit render(s), geometry, metadata."""

    dicom_key: str
    frame_index: int
    n_frames: int
    native: np.ndarray
    render: np.ndarray
    presets: dict[str, np.ndarray]
    position: list[float] | None
    orientation: list[float] | None
    spacing: list[float] | None
    metadata: dict


# --- reading -----------------------------------------------------------------------
def read_header(path: str) -> pydicom.Dataset:
    """Read a file's header (no pixels), raising :class:`DicomSkip` with a reason."""
    return _read(path, stop_before_pixels=True)


def _read(path: str, stop_before_pixels: bool = False) -> pydicom.Dataset:
    try:
        size = os.path.getsize(path)
    except OSError as err:
        raise NotDicomError(f"cannot open: {err.strerror or err}") from err
    if size == 0:
        raise TruncatedError("empty file (0 bytes)")
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        ds = None
    except EOFError as err:
        raise TruncatedError(
            f"truncated DICOM: the file ends inside an element ({_short(err)})"
        ) from err
    except (ValueError, OSError, KeyError, TypeError, AttributeError) as err:
        raise TruncatedError(f"unreadable or truncated DICOM: {_short(err)}") from err
    if ds is None:
        # files written without the 128-byte preamble and file meta (older writers) are
        # still DICOM; accept them only if they parse and look like an image object
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
        except Exception as err:  # noqa: BLE001 - any parser failure means "not DICOM"
            raise NotDicomError(f"not a DICOM file: {_short(err)}") from err
        if "SOPClassUID" not in ds and "PixelData" not in ds and "Rows" not in ds:
            raise NotDicomError("not a DICOM file (no DICM prefix and no DICOM image attributes)")
    if len(ds) == 0:
        raise TruncatedError("truncated DICOM: the file ends after its file meta header")
    return ds


def _short(err: BaseException, limit: int = 200) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:limit]


def transfer_syntax_name(ds: pydicom.Dataset) -> str:
    """The transfer syntax as a person reads it, e.g. ``"JPEG 2000 Image Compression"``."""
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None:
        return "Implicit VR Little Endian (no file meta)"
    return uid.name or str(uid)


def header_metadata(ds: pydicom.Dataset, *, include_study_date: bool = False) -> dict:
    """The typed, non-identifying metadata of a file: de-identification's allow-list
    (:func:`multireader.io.deid.extract_metadata`) plus the transfer syntax and the file's
    VOI window."""
    meta = deid.extract_metadata(ds, include_study_date=include_study_date)
    win = file_window(ds)
    meta["transfer_syntax"] = transfer_syntax_name(ds)
    meta["window_center"] = win[0] if win else None
    meta["window_width"] = win[1] if win else None
    return meta


def skip_reason_for_header(ds: pydicom.Dataset) -> str | None:
    """Why a file with this header holds no image to import, or None if it does."""
    if "DirectoryRecordSequence" in ds:
        return (
            "a DICOMDIR (a directory index); pass the DICOMDIR itself to import the files it lists"
        )
    modality = str(ds.get("Modality", "")).upper()
    if modality in NON_IMAGE_MODALITIES:
        return NON_IMAGE_MODALITIES[modality]
    return None


def sop_instance_uid(ds: pydicom.Dataset, path: str) -> str:
    """The SOPInstanceUID, or a stable stand-in derived from the file's bytes.

    A few legacy files lack the UID; hashing the content keeps re-imports idempotent
    without inventing identity from the file name.
    """
    uid = ds.get("SOPInstanceUID")
    if uid:
        return str(uid)
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha1-{digest.hexdigest()}"


def n_frames(ds: pydicom.Dataset) -> int:
    """NumberOfFrames, 1 when absent or unreadable."""
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _check_decodable(ds: pydicom.Dataset) -> None:
    """Name the problem before pydicom's decoder does, where it can be named exactly."""
    reason = skip_reason_for_header(ds)
    if reason:
        raise NotAnImageError(reason)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise NoPixelDataError(f"no pixel data (Modality {ds.get('Modality', 'unknown')})")
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" not in ds:
        return
    if uid is None:
        raise UndecodablePixelDataError(
            "no Transfer Syntax UID (the file has no file meta header), so the encoding "
            "of its pixel data is unknown"
        )
    from pydicom.pixels.decoders.base import get_decoder

    try:
        decoder = get_decoder(uid)
    except NotImplementedError as err:
        raise UnsupportedTransferSyntaxError(
            f"unsupported transfer syntax {transfer_syntax_name(ds)} ({uid}): "
            "pydicom has no decoder for it"
        ) from err
    if not decoder.is_available:
        raise UnsupportedTransferSyntaxError(
            f"unsupported transfer syntax {transfer_syntax_name(ds)} ({uid}): "
            "no installed decoder plugin (install pylibjpeg or python-gdcm)"
        )


def _truncation(ds: pydicom.Dataset) -> str | None:
    """After a failed decode: say "truncated" when uncompressed pixel data is too short.

    Only asked once pydicom has failed, so layouts the byte count does not foresee
    (YBR_FULL_422 stores two bytes per pixel) never reject a file pydicom can read.
    """
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None or str(uid) not in _NATIVE_SYNTAXES or "PixelData" not in ds:
        return None
    try:
        bits = int(ds.BitsAllocated)
        n = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
        n *= n_frames(ds)
        have = len(ds.PixelData)
    except (AttributeError, TypeError, ValueError):
        return None
    expected = (n * bits + 7) // 8
    if str(ds.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422":
        expected = expected * 2 // 3
    if have >= expected:
        return None
    return (
        f"truncated pixel data: {have} bytes where {expected} are expected "
        f"({ds.get('Rows')}x{ds.get('Columns')}, {n_frames(ds)} frame(s))"
    )


# --- decoding ----------------------------------------------------------------------
def decode(path: str, ds: pydicom.Dataset | None = None) -> DecodedFile:
    """Decode every frame of a file into native values (after the Modality LUT).

    ``ds`` is the file already read in full, to avoid reading it twice. Raises a
    :class:`DicomSkip` subclass naming the problem.
    """
    ds = _read(path) if ds is None else ds
    _check_decodable(ds)
    try:
        arr = _pixel_array(ds)
    except NotImplementedError as err:
        raise UnsupportedTransferSyntaxError(
            f"unsupported transfer syntax {transfer_syntax_name(ds)}: {_short(err)}"
        ) from err
    except EOFError as err:
        raise TruncatedError(f"truncated pixel data: {_short(err)}") from err
    except Exception as err:  # noqa: BLE001 - pydicom raises many types for bad pixel data
        truncated = _truncation(ds)
        if truncated:
            raise TruncatedError(truncated) from err
        raise UndecodablePixelDataError(
            f"cannot decode pixel data ({transfer_syntax_name(ds)}): {_short(err)}"
        ) from err

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples_per_pixel = int(ds.get("SamplesPerPixel", 1) or 1)
    if photometric == "PALETTE COLOR":
        try:
            arr = apply_color_lut(arr, ds)
        except Exception as err:  # noqa: BLE001
            raise UndecodablePixelDataError(f"unusable colour palette: {_short(err)}") from err
        samples_per_pixel = 3
    is_color = samples_per_pixel == 3
    # pixel_array drops the frame axis for single-frame data; put it back
    if arr.ndim == (3 if is_color else 2):
        arr = arr[np.newaxis]
    nf = arr.shape[0]

    out = DecodedFile(path=path, dataset=ds, photometric=photometric, is_color=is_color)
    geometry = _frame_geometry(ds, nf)
    instance = _int_or_none(ds.get("InstanceNumber"))
    for i in range(nf):
        native = arr[i] if is_color else _modality_lut(arr[i], ds, i)
        pos, orient, spacing = geometry[i]
        out.frames.append(
            Frame(
                index=i,
                native=native,
                position=pos,
                orientation=orient,
                spacing=spacing,
                instance_number=instance,
            )
        )
    return out


def _pixel_array(ds: pydicom.Dataset) -> np.ndarray:
    """The decoded pixels, as ``ds.pixel_array`` gives them, without its overhead.

    Uncompressed little-endian greyscale (most CT and MR slices) is read straight from
    the pixel bytes (:func:`_uncompressed_grey`); everything else goes through
    pydicom's own ``pixel_array`` function, the one ``ds.pixel_array`` calls, without
    the dataset's caching of the result (about 0.5 ms a slice that an import never
    uses: it decodes each file once).
    """
    arr = _uncompressed_grey(ds)
    return arr if arr is not None else pixel_array(ds)


def _uncompressed_grey(ds: pydicom.Dataset) -> np.ndarray | None:
    """Uncompressed little-endian MONOCHROME pixels as a view on the bytes, or None.

    Gives exactly what pydicom's native decoder gives (tests/test_dicom_decode.py
    compares the two on every file pydicom ships): the stored integer type, one frame
    as ``(rows, columns)``, several as ``(frames, rows, columns)``, and the bits above
    Bits Stored ignored (pydicom shifts them out; here the shift runs only when some
    pixel has them set). Returns None, so that pydicom decodes the file and reports
    any problem, whenever anything is out of the ordinary: another syntax, colour,
    1-bit or float data, missing or odd attributes, too few bytes.
    """
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid is None or str(uid) not in _LITTLE_ENDIAN_NATIVE:
        return None
    try:
        if (
            str(ds.get("PhotometricInterpretation", "")).strip()
            not in (
                "MONOCHROME1",
                "MONOCHROME2",
            )
            or int(ds.get("SamplesPerPixel", 0) or 0) != 1
        ):
            return None
        bits, stored = int(ds.BitsAllocated), int(ds.BitsStored)
        signed, rows, cols = int(ds.PixelRepresentation), int(ds.Rows), int(ds.Columns)
        frames = ds.get("NumberOfFrames", 1)
        frames = int(frames) if frames not in (None, "") else 1
        data = ds.get("PixelData")
    except (AttributeError, TypeError, ValueError):
        return None
    if (
        bits not in (8, 16, 32)
        or not 1 <= stored <= bits
        or signed not in (0, 1)
        or rows < 1
        or cols < 1
        or frames < 1
        or not isinstance(data, bytes)
    ):
        return None
    count = frames * rows * cols
    if len(data) < count * bits // 8:
        return None
    arr = np.frombuffer(data, dtype=f"<{'i' if signed else 'u'}{bits // 8}", count=count)
    arr = arr.reshape((rows, cols) if frames == 1 else (frames, rows, cols))
    if stored < bits:
        lo, hi = (
            (-(1 << (stored - 1)), (1 << (stored - 1)) - 1) if signed else (0, (1 << stored) - 1)
        )
        if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
            shift = bits - stored
            arr = np.right_shift(np.left_shift(arr, shift), shift)
    return arr


def decode_frames(
    path: str, window: str = "auto", presets=(), *, include_study_date: bool = False
) -> list[FrameRecord]:
    """Decode one file into per-frame records: native values, renders, geometry, metadata.

    The one-call entry point for code that wants frames, not files. Metadata are the
    non-identifying allow-list of :mod:`multireader.io.deid`. Raises a :class:`DicomSkip`
    subclass with the reason when the file holds no decodable image.
    """
    check_window(window)
    presets = [check_window(p) for p in presets]
    decoded = decode(path)
    ds = decoded.dataset
    meta = header_metadata(ds, include_study_date=include_study_date)
    sop = sop_instance_uid(ds, path)
    n = len(decoded.frames)
    return [
        FrameRecord(
            dicom_key=f"{sop}:{fr.index}",
            frame_index=fr.index,
            n_frames=n,
            native=fr.native,
            render=render(decoded, fr, window),
            presets={p: render(decoded, fr, p) for p in presets},
            position=fr.position,
            orientation=fr.orientation,
            spacing=fr.spacing,
            metadata=meta,
        )
        for fr in decoded.frames
    ]


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _floats(value, n: int) -> list[float] | None:
    try:
        vals = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return vals if len(vals) == n else None


def functional_group_sequence(ds: pydicom.Dataset, frame: int, seq_name: str):
    """A functional-group sequence for a frame: per-frame first, then shared; or None."""
    for groups, tag, idx in (
        ("PerFrameFunctionalGroupsSequence", 0x52009230, frame),
        ("SharedFunctionalGroupsSequence", 0x52009229, 0),
    ):
        if tag not in ds:  # a tag test is ~20x cheaper than a keyword lookup that misses
            continue
        seq = ds.get(groups)
        if seq is not None and len(seq) > idx and seq[idx].get(seq_name):
            return seq[idx].get(seq_name)
    return None


def functional_group(ds: pydicom.Dataset, frame: int, seq_name: str):
    """The first item of that sequence, or None."""
    seq = functional_group_sequence(ds, frame, seq_name)
    return seq[0] if seq else None


def _frame_geometry(ds: pydicom.Dataset, nf: int):
    pos = _floats(ds.get("ImagePositionPatient"), 3)
    orient = _floats(ds.get("ImageOrientationPatient"), 6)
    spacing = _floats(ds.get("PixelSpacing"), 2) or _floats(ds.get("ImagerPixelSpacing"), 2)
    out = []
    for i in range(nf):
        p, o, s = pos, orient, spacing
        plane = functional_group(ds, i, "PlanePositionSequence")
        if plane is not None:
            p = _floats(plane.get("ImagePositionPatient"), 3) or p
        elif nf > 1 and pos is not None and orient is not None:
            # a classic multi-frame file with one position: frames stack along the normal
            step = float(ds.get("SpacingBetweenSlices", 0) or ds.get("SliceThickness", 0) or 0)
            if step:
                normal = np.cross(orient[:3], orient[3:])
                p = [float(v) for v in np.asarray(pos) + i * step * normal]
        po = functional_group(ds, i, "PlaneOrientationSequence")
        if po is not None:
            o = _floats(po.get("ImageOrientationPatient"), 6) or o
        pm = functional_group(ds, i, "PixelMeasuresSequence")
        if pm is not None:
            s = _floats(pm.get("PixelSpacing"), 2) or s
        out.append((p, o, s))
    return out


def _compact(values: np.ndarray) -> np.ndarray:
    """int16 when that holds the values exactly (half the disk of int32), else float32."""
    if values.dtype.kind == "f":
        return values.astype(np.float32, copy=False)
    if values.size == 0 or (values.min() >= -32768 and values.max() <= 32767):
        return values.astype(np.int16, copy=False)
    return values.astype(np.float32)


def _modality_lut(frame: np.ndarray, ds: pydicom.Dataset, index: int) -> np.ndarray:
    """Stored values -> native units (HU for CT), int16 when that is lossless.

    Slope and intercept come from the top level, else from the frame's Pixel Value
    Transformation functional group (enhanced CT keeps them there). Integer rescales
    stay integers: a CT slice in int16 HU is exact and half the size of float32.
    A Modality LUT Sequence goes through pydicom's own ``apply_modality_lut``.
    """
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None and intercept is None:
        pvt = functional_group(ds, index, "PixelValueTransformationSequence")
        if pvt is not None:
            slope, intercept = pvt.get("RescaleSlope"), pvt.get("RescaleIntercept")
    if slope is None and intercept is None and "ModalityLUTSequence" in ds:
        return _compact(np.asarray(apply_modality_lut(frame, ds)))
    slope = float(slope) if slope is not None else 1.0
    intercept = float(intercept) if intercept is not None else 0.0
    if frame.dtype.kind == "f":
        return (frame * slope + intercept).astype(np.float32)
    if slope == 1.0 and intercept == 0.0:
        return _compact(frame)
    if slope.is_integer() and intercept.is_integer():
        return _integer_rescale(frame, int(slope), int(intercept))
    return (frame.astype(np.float64) * slope + intercept).astype(np.float32)


def _integer_rescale(frame: np.ndarray, slope: int, intercept: int) -> np.ndarray:
    """``frame * slope + intercept`` as :func:`_compact` would store it, in fewer passes.

    The value range follows from the frame's minimum and maximum, so the arithmetic
    runs in int16 when the result fits (the usual CT slice: 12 stored bits, intercept
    -1024) instead of a round trip through int64.
    """
    if frame.size and frame.dtype.kind in "iu" and frame.dtype.itemsize <= 2:
        lo, hi = int(frame.min()), int(frame.max())
        ends = (lo * slope + intercept, hi * slope + intercept)
        # int16/int32 arithmetic wraps, so it is exact whenever the result fits
        if min(ends) >= -32768 and max(ends) <= 32767 and max(abs(slope), abs(intercept)) < 2**31:
            if slope == 1 and lo >= -32768 and hi <= 32767 and abs(intercept) <= 32767:
                out = frame.astype(np.int16)
                out += np.int16(intercept)
                return out
            out = frame.astype(np.int32)
            out *= slope
            out += intercept
            return out.astype(np.int16)
    return _compact(frame.astype(np.int64) * slope + intercept)


# --- rendering ---------------------------------------------------------------------
def _first(value) -> float:
    if isinstance(value, (pydicom.multival.MultiValue, list, tuple)):
        value = value[0]
    return float(value)


def file_window(ds: pydicom.Dataset, frame: int = 0) -> tuple[float, float] | None:
    """The file's first VOI window (center, width) for a frame, if it has a usable one.

    Multi-valued windows are alternatives offered by the modality; the first is the one
    it recommends. Enhanced files keep windows per frame in Frame VOI LUT items.
    """
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        voi = functional_group(ds, frame, "FrameVOILUTSequence")
        if voi is not None:
            center, width = voi.get("WindowCenter"), voi.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        c, w = _first(center), _first(width)
    except (TypeError, ValueError, IndexError):
        return None
    return (c, w) if w > 0 and np.isfinite(c) and np.isfinite(w) else None


def window_to_uint8(
    native: np.ndarray,
    center: float,
    width: float,
    invert: bool = False,
    function: str = "LINEAR",
) -> np.ndarray:
    """A VOI window onto 0..255 as DICOM defines it (PS3.3 C.11.2.1.2).

    ``LINEAR`` (the default) maps ``[c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2]``;
    ``LINEAR_EXACT`` maps ``[c - w/2, c + w/2]``; ``SIGMOID`` is the logistic curve.
    """
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        x = native.astype(np.float32, copy=False)
        scaled = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / max(width, 1e-6)))
        scaled = scaled * 255.0 + 0.5
    else:
        if function == "LINEAR_EXACT":
            low, span = center - width / 2, max(width, 1e-6)
        else:
            low, span = center - 0.5 - (width - 1) / 2, max(width - 1, 1e-6)
        # in place on one float32 copy, the same operations in the same order as
        # ((x - low) / span) * 255 + 0.5, so the result is identical, with fewer passes
        scaled = native.astype(np.float32)
        scaled -= low
        scaled /= span
        scaled *= 255.0
        scaled += 0.5
    out = np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)
    if invert:
        np.subtract(255, out, out=out)
    return out


def auto_window(native: np.ndarray) -> tuple[float, float]:
    """A robust window (0.5-99.5 percentiles) for files without one.

    Percentiles rather than min/max, so a few hot pixels or the padding value around
    a CT field of view do not squeeze the anatomy into a handful of grey levels. Large
    images are subsampled: the percentiles of every fourth pixel differ by well under a
    grey level, at a quarter of the cost.
    """
    sample = native[::2, ::2] if native.size > 1 << 18 else native
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(native.min()), float(native.max()) + 1.0
    return (float(lo + hi) / 2.0, float(hi - lo) + 1.0)


def render(decoded: DecodedFile, frame: Frame, window: str = "auto") -> np.ndarray:
    """An 8-bit render of one frame: ``"auto"`` (the file's window) or a preset name.

    Order for ``"auto"``: the file's window (with its VOI LUT function), else its VOI
    LUT Sequence, else a percentile window. MONOCHROME1 is inverted so bone is white.
    """
    native = frame.native
    if decoded.is_color:
        return to_uint8_color(native)
    invert = decoded.photometric == "MONOCHROME1"
    if window != "auto":
        center, width = WINDOW_PRESETS[window]
        return window_to_uint8(native, center, width, invert)
    ds = decoded.dataset
    win = file_window(ds, frame.index)
    if win is not None:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR")
        return window_to_uint8(native, *win, invert, function=function)
    if "VOILUTSequence" in ds:
        try:
            out = np.asarray(apply_voi_lut(native, ds, prefer_lut=True), dtype=np.float32)
            bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
            top = float(2**bits - 1) if 8 <= bits <= 16 else float(out.max() or 1.0)
            image = np.clip(out * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
            return 255 - image if invert else image
        except Exception:  # noqa: BLE001 - a broken LUT falls back to the percentile window
            pass
    return window_to_uint8(native, *auto_window(native), invert)


def to_uint8_color(native: np.ndarray) -> np.ndarray:
    """Colour to 8 bits: as is when already 8-bit, else scaled by the image maximum."""
    if native.dtype == np.uint8:
        return native
    hi = float(native.max()) or 1.0
    return np.clip(native.astype(np.float32) * (255.0 / hi), 0, 255).astype(np.uint8)


def check_window(name: str) -> str:
    """Validate a window name: ``"auto"`` or a key of :data:`WINDOW_PRESETS`."""
    if name != "auto" and name not in WINDOW_PRESETS:
        raise ValueError(
            f"unknown window {name!r}; expected 'auto' or one of {sorted(WINDOW_PRESETS)}"
        )
    return name


# --- the per-file work of an import, run in worker processes --------------------------


def media_name(dicom_key: str) -> str:
    """File stem for a frame's render and native array: a hash, never patient data."""
    return hashlib.sha1(dicom_key.encode()).hexdigest()[:20]


def staging_suffix(path: str) -> str:
    """Suffix of a worker's staged files for the source ``path``.

    Two files in one import can hold the same SOP instance (a copy, or the same image
    in two transfer syntaxes). Workers write to ``<stem>.<suffix>.*`` so they never
    race on the final name; the parent keeps one copy and moves it into place.
    """
    return hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]


def encode_png(image: np.ndarray) -> bytes:
    """An 8-bit render as PNG bytes, fast.

    Encoding was the importer's hottest step. With ISA-L installed (the ``isal``
    package, a requirement) :func:`multireader.io.png.encode_png` writes the PNG:
    0.2 ms for a 512x512 CT render at the same size (see that module). Without it,
    OpenCV's encoder with zlib level 1, the
    RLE strategy and the single "Up" row filter measured here at 1.4 ms and 38 KB for
    pydicom's 512x512 CT (693_UNCR) against 3.1 ms and 37 KB when libpng tries every
    filter per row, and 57 ms against 92 ms for a 1955x1841 radiograph; Pillow's level 1
    was slower still. Pillow stays as the fallback.
    """
    if fast_png.HAVE_FAST_DEFLATE:
        return fast_png.encode_png(image)
    try:
        import cv2
    except ImportError:  # pragma: no cover - fiftyone depends on opencv
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()
    bgr = image[..., ::-1] if image.ndim == 3 else image
    params = [
        cv2.IMWRITE_PNG_COMPRESSION,
        1,
        cv2.IMWRITE_PNG_STRATEGY,
        cv2.IMWRITE_PNG_STRATEGY_RLE,
    ]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr), params)
    if not ok:
        raise OSError("cannot encode PNG")
    return buf.tobytes()


def save_png(image: np.ndarray, path: str) -> None:
    """Write an 8-bit render as PNG (see :func:`encode_png` for why it is fast)."""
    with open(path, "wb") as f:
        f.write(encode_png(image))


def _ensure_dir(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)`` in one system call when the parent exists."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


def _save_npy(native: np.ndarray, path: str) -> None:
    with open(path, "wb") as f:
        np.save(f, native)


def import_file(path: str, options: dict) -> dict:
    """Decode one file and write its renders and native arrays (staged names).

    Returns ``{"path", "frames": [record, ...]}`` or ``{"path", "skip": reason}`` or
    ``{"path", "duplicate": n}``. Records are small dicts; pixels stay on disk. Each
    record's ``staged`` maps staged file -> final file (see :func:`staging_suffix`).
    """
    import warnings

    with warnings.catch_warnings():
        # pydicom warns about every non-conformant value; the import report is the
        # place for problems that matter, and per-file warnings would drown it
        warnings.simplefilter("ignore")
        return _import_file(path, options)


def _import_file(path: str, options: dict) -> dict:
    try:
        # one full read: the pixel bytes of a typical slice cost less to read than a
        # second parse of the header would
        header = _read(path)
        reason = skip_reason_for_header(header)
        if reason:
            return {"path": path, "skip": reason}
        sop = sop_instance_uid(header, path)
        existing = options.get("existing_sops") or ()
        if sop in existing:
            return {"path": path, "duplicate": n_frames(header), "sop": sop}
        decoded = decode(path, header)
    except DicomSkip as err:
        return {"path": path, "skip": str(err), "kind": type(err).__name__}
    except Exception as err:  # noqa: BLE001 - one bad file must never stop an import
        return {
            "path": path,
            "skip": f"unexpected error while reading: {type(err).__name__}: {_short(err)}",
        }

    ds = decoded.dataset
    meta = header_metadata(ds, include_study_date=options.get("include_study_date", False))
    if options.get("include_identifiers"):
        meta["dicom_identifiers"] = deid.extract_identifiers(ds)
    meta["patient_key"] = deid.patient_key(ds, options["salt"])
    common = {
        "sop_instance_uid": sop,
        "series_instance_uid": str(ds.get("SeriesInstanceUID") or f"series-of-{sop}"),
        "study_instance_uid": str(ds.get("StudyInstanceUID") or "") or None,
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID") or "") or None,
        "n_frames": len(decoded.frames),
        "rows": int(decoded.frames[0].native.shape[0]),
        "columns": int(decoded.frames[0].native.shape[1]),
        "native_unit": _native_unit(ds),
        **meta,
    }
    out_dir = options["render_dir"]
    window = options.get("window", "auto")
    presets = options.get("presets") or ()
    tag = staging_suffix(path)
    # no identifier from a folder or file name reaches the dataset (io/source_paths.py)
    source = source_paths.stored_path(path, ds, options)
    records = []
    for frame in decoded.frames:
        key = f"{sop}:{frame.index}"
        stem = media_name(key)
        sub = os.path.join(out_dir, stem[:2])
        _ensure_dir(sub)
        staged = {}

        def final(name, _sub=sub, _staged=staged):
            path_final = os.path.join(_sub, name)
            stage = os.path.join(_sub, f".{tag}.{name}")
            _staged[stage] = path_final
            return stage, path_final

        stage, png = final(f"{stem}.png")
        save_png(render(decoded, frame, window), stage)
        stage, npy = final(f"{stem}.npy")
        _save_npy(frame.native, stage)
        renders = {}
        for preset in presets:
            if decoded.is_color:
                renders[preset] = png
                continue
            stage, renders[preset] = final(f"{stem}_{preset}.png")
            save_png(render(decoded, frame, preset), stage)
        records.append(
            {
                **common,
                "dicom_key": key,
                "dicom_path": source,
                "frame_index": frame.index,
                "filepath": png,
                "native_path": npy,
                "renders": renders,
                "staged": staged,
                "image_position": frame.position,
                "image_orientation": frame.orientation,
                "pixel_spacing": frame.spacing,
                "instance_number": frame.instance_number,
                "channels": 3 if decoded.is_color else 1,
            }
        )
    return {"path": path, "frames": records}


def _native_unit(ds: pydicom.Dataset) -> str:
    if str(ds.get("Modality", "")).upper() == "CT" and lookup(ds, "RescaleIntercept") is not None:
        return "HU"
    return str(lookup(ds, "RescaleType") or "")


def render_native(native_path: str, out_path: str, preset: str, invert: bool) -> str:
    """Re-render a stored native array with a preset window (used after import)."""
    native = np.load(native_path)
    if native.ndim == 3:
        image = to_uint8_color(native)
    else:
        center, width = WINDOW_PRESETS[preset]
        image = window_to_uint8(native, center, width, invert)
    save_png(image, out_path)
    return out_path


def render_native_batch(jobs: list[tuple[str, str, str, bool]]) -> list[str]:
    """:func:`render_native` over a chunk of jobs, one task per chunk for a pool."""
    return [render_native(*job) for job in jobs]
