"""DICOM decoding and rendering: pydicom and numpy only, no FiftyOne.

One file becomes a list of frames. Each frame keeps its native values after the
Modality LUT (Hounsfield units for CT), its own geometry, and an 8-bit render through
the file's VOI window or a named preset. Files that cannot be read raise
:class:`DicomSkip` with a reason a person can act on, so an import can report it and
go on with the rest.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_voi_lut

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


class DicomSkip(Exception):
    """A file that cannot be imported; ``str(err)`` says why."""


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
    path: str
    dataset: pydicom.Dataset
    frames: list[Frame] = field(default_factory=list)
    photometric: str = ""
    is_color: bool = False


def read_header(path: str) -> pydicom.Dataset:
    """Read a file's header (no pixels), raising :class:`DicomSkip` with a reason."""
    return _read(path, stop_before_pixels=True)


def _read(path: str, stop_before_pixels: bool = False) -> pydicom.Dataset:
    try:
        size = os.path.getsize(path)
    except OSError as err:
        raise DicomSkip(f"cannot open: {err.strerror or err}") from err
    if size == 0:
        raise DicomSkip("empty file (0 bytes)")
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        pass
    except (EOFError, ValueError, OSError, KeyError, TypeError, AttributeError) as err:
        raise DicomSkip(f"unreadable or truncated DICOM: {_short(err)}") from err
    # files written without the 128-byte preamble and file meta (older writers) are
    # still DICOM; accept them only if they parse and look like an image object
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
    except Exception as err:  # noqa: BLE001 - any parser failure means "not DICOM"
        raise DicomSkip(f"not a DICOM file: {_short(err)}") from err
    if "SOPClassUID" not in ds and "PixelData" not in ds and "Rows" not in ds:
        raise DicomSkip("not a DICOM file (no DICM prefix and no DICOM image attributes)")
    return ds


def _short(err: BaseException, limit: int = 200) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:limit]


def transfer_syntax_name(ds: pydicom.Dataset) -> str:
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None:
        return "Implicit VR Little Endian (no file meta)"
    return uid.name or str(uid)


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
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def decode(path: str) -> DecodedFile:
    """Decode every frame of a file into native values (after the Modality LUT)."""
    ds = _read(path)
    reason = skip_reason_for_header(ds)
    if reason:
        raise DicomSkip(reason)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DicomSkip(f"no pixel data (Modality {ds.get('Modality', 'unknown')})")
    try:
        arr = ds.pixel_array
    except NotImplementedError as err:
        raise DicomSkip(
            f"unsupported transfer syntax {transfer_syntax_name(ds)}: no installed decoder ({_short(err)})"
        ) from err
    except Exception as err:  # noqa: BLE001 - pydicom raises many types for bad pixel data
        raise DicomSkip(
            f"cannot decode pixel data ({transfer_syntax_name(ds)}): {_short(err)}"
        ) from err

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    nf = n_frames(ds)
    samples_per_pixel = int(ds.get("SamplesPerPixel", 1) or 1)
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        samples_per_pixel = 3
    is_color = samples_per_pixel == 3
    # pixel_array drops the frame axis for single-frame data; put it back
    if arr.ndim == (3 if is_color else 2):
        arr = arr[np.newaxis]
    nf = arr.shape[0]

    out = DecodedFile(path=path, dataset=ds, photometric=photometric, is_color=is_color)
    geometry = _frame_geometry(ds, nf)
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
                instance_number=_int_or_none(ds.get("InstanceNumber")),
            )
        )
    return out


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
    for groups, idx in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
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
                p = list(np.asarray(pos) + i * step * normal)
        po = functional_group(ds, i, "PlaneOrientationSequence")
        if po is not None:
            o = _floats(po.get("ImageOrientationPatient"), 6) or o
        pm = functional_group(ds, i, "PixelMeasuresSequence")
        if pm is not None:
            s = _floats(pm.get("PixelSpacing"), 2) or s
        out.append((p, o, s))
    return out


def _modality_lut(frame: np.ndarray, ds: pydicom.Dataset, index: int) -> np.ndarray:
    """Stored values -> native units (HU for CT), int16 when that is lossless."""
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None and intercept is None:
        pvt = functional_group(ds, index, "PixelValueTransformationSequence")
        if pvt is not None:
            slope, intercept = pvt.get("RescaleSlope"), pvt.get("RescaleIntercept")
    if "ModalityLUTSequence" in ds and slope is None:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(frame, ds))
    slope = float(slope) if slope is not None else 1.0
    intercept = float(intercept) if intercept is not None else 0.0
    if frame.dtype.kind == "f":
        return (frame * slope + intercept).astype(np.float32)
    if slope == 1.0 and intercept == 0.0:
        native = frame
    elif float(slope).is_integer() and float(intercept).is_integer():
        native = frame.astype(np.int64) * int(slope) + int(intercept)
    else:
        return (frame.astype(np.float64) * slope + intercept).astype(np.float32)
    if native.min(initial=0) >= -32768 and native.max(initial=0) <= 32767:
        return native.astype(np.int16)
    return native.astype(np.float32)


def file_window(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """The file's first VOI window (center, width), if it has a usable one."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        voi = functional_group(ds, 0, "FrameVOILUTSequence")
        if voi is not None:
            center, width = voi.get("WindowCenter"), voi.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        c = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
        w = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
    except (TypeError, ValueError, IndexError):
        return None
    return (c, w) if w > 0 else None


def window_to_uint8(
    native: np.ndarray, center: float, width: float, invert: bool = False
) -> np.ndarray:
    """The DICOM linear VOI function (PS3.3 C.11.2.1.2) mapped onto 0..255."""
    x = native.astype(np.float32)
    lo = center - 0.5 - (width - 1) / 2
    scaled = (x - lo) / max(width - 1, 1e-6)
    out = np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return 255 - out if invert else out


def auto_window(native: np.ndarray) -> tuple[float, float]:
    """A robust window (0.5-99.5 percentiles) for files without one."""
    lo, hi = np.percentile(native, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(native.min()), float(native.max()) + 1.0
    return (float(lo + hi) / 2.0, float(hi - lo) + 1.0)


def render(decoded: DecodedFile, frame: Frame, window: str = "auto") -> np.ndarray:
    """An 8-bit render of one frame: ``"auto"`` (the file's window) or a preset name."""
    native = frame.native
    if decoded.is_color:
        return to_uint8_color(native)
    invert = decoded.photometric == "MONOCHROME1"
    if window != "auto":
        center, width = WINDOW_PRESETS[window]
        return window_to_uint8(native, center, width, invert)
    ds = decoded.dataset
    win = file_window(ds)
    if win is not None:
        return window_to_uint8(native, *win, invert)
    if "VOILUTSequence" in ds:
        out = np.asarray(apply_voi_lut(native, ds), dtype=np.float32)
        return window_to_uint8(out, *auto_window(out), invert)
    return window_to_uint8(native, *auto_window(native), invert)


def to_uint8_color(native: np.ndarray) -> np.ndarray:
    if native.dtype == np.uint8:
        return native
    hi = float(native.max()) or 1.0
    return np.clip(native.astype(np.float32) * (255.0 / hi), 0, 255).astype(np.uint8)


def check_window(name: str) -> str:
    if name != "auto" and name not in WINDOW_PRESETS:
        raise ValueError(
            f"unknown window {name!r}; expected 'auto' or one of {sorted(WINDOW_PRESETS)}"
        )
    return name


# --- the per-file work of an import, run in worker processes --------------------------


def media_name(dicom_key: str) -> str:
    """File stem for a frame's render and native array: a hash, never patient data."""
    return hashlib.sha1(dicom_key.encode()).hexdigest()[:20]


def save_png(image: np.ndarray, path: str) -> None:
    """Write an 8-bit render as PNG, fast.

    Encoding is the importer's hottest step. OpenCV's encoder with zlib level 1 and the
    RLE strategy measured here at 6 ms for a 512x512 CT render and ~113 KB, against
    10 ms and ~138 KB for Pillow's level 1; Pillow stays as the fallback.
    """
    try:
        import cv2
    except ImportError:  # pragma: no cover - fiftyone depends on opencv
        from PIL import Image

        Image.fromarray(image).save(path, compress_level=1)
        return
    bgr = image[..., ::-1] if image.ndim == 3 else image
    params = [
        cv2.IMWRITE_PNG_COMPRESSION,
        1,
        cv2.IMWRITE_PNG_STRATEGY,
        cv2.IMWRITE_PNG_STRATEGY_RLE,
    ]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr), params)
    if not ok:
        raise OSError(f"cannot encode PNG for {path}")
    buf.tofile(path)


def import_file(path: str, options: dict) -> dict:
    """Decode one file and write its renders and native arrays.

    Returns ``{"path", "frames": [record, ...]}`` or ``{"path", "skip": reason}`` or
    ``{"path", "duplicate": n}``. Records are small dicts; pixels stay on disk.
    """
    import warnings

    with warnings.catch_warnings():
        # pydicom warns about every non-conformant value; the import report is the
        # place for problems that matter, and per-file warnings would drown it
        warnings.simplefilter("ignore")
        return _import_file(path, options)


def _import_file(path: str, options: dict) -> dict:
    from . import deid

    try:
        header = read_header(path)
        reason = skip_reason_for_header(header)
        if reason:
            return {"path": path, "skip": reason}
        sop = sop_instance_uid(header, path)
        existing = options.get("existing_sops") or ()
        if sop in existing:
            return {"path": path, "duplicate": n_frames(header), "sop": sop}
        decoded = decode(path)
    except DicomSkip as err:
        return {"path": path, "skip": str(err)}
    except Exception as err:  # noqa: BLE001 - one bad file must never stop an import
        return {
            "path": path,
            "skip": f"unexpected error while reading: {type(err).__name__}: {_short(err)}",
        }

    ds = decoded.dataset
    meta = deid.extract_metadata(ds, include_study_date=options.get("include_study_date", False))
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
    records = []
    for frame in decoded.frames:
        key = f"{sop}:{frame.index}"
        stem = media_name(key)
        sub = os.path.join(out_dir, stem[:2])
        os.makedirs(sub, exist_ok=True)
        png = os.path.join(sub, f"{stem}.png")
        save_png(render(decoded, frame, window), png)
        npy = os.path.join(sub, f"{stem}.npy")
        np.save(npy, frame.native)
        renders = {}
        for preset in presets:
            if decoded.is_color:
                renders[preset] = png
                continue
            ppath = os.path.join(sub, f"{stem}_{preset}.png")
            save_png(render(decoded, frame, preset), ppath)
            renders[preset] = ppath
        records.append(
            {
                **common,
                "dicom_key": key,
                "dicom_path": os.path.abspath(path),
                "frame_index": frame.index,
                "filepath": png,
                "native_path": npy,
                "renders": renders,
                "image_position": frame.position,
                "image_orientation": frame.orientation,
                "pixel_spacing": frame.spacing,
                "instance_number": frame.instance_number,
                "channels": 3 if decoded.is_color else 1,
            }
        )
    return {"path": path, "frames": records}


def _native_unit(ds: pydicom.Dataset) -> str:
    from .deid import lookup

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
