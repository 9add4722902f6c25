"""DICOM-SEG and RTSTRUCT into per-frame label masks on the dataset's own frames.

SEG frames map to images through their referenced SOP instance (and frame), else
through their plane position. RTSTRUCT contours are in patient millimetres: each is
projected onto the slice whose plane holds it, using that slice's position, orientation
and pixel spacing, and filled. Contours of one ROI on one slice combine by even-odd
(XOR), so an inner contour cuts a hole, as RTSTRUCT writers intend.
"""

from __future__ import annotations

import numpy as np
import pydicom

from multireader.io.dicom import functional_group, functional_group_sequence


def _geometry(index, key):
    pos, orient, spacing = index.geometry.get(key, (None, None, None))
    if pos is None or orient is None or spacing is None:
        return None
    row_dir, col_dir = np.asarray(orient[:3], float), np.asarray(orient[3:], float)
    return (
        np.asarray(pos, float),
        row_dir,
        col_dir,
        np.cross(row_dir, col_dir),
        np.asarray(spacing, float),
    )


def _same_space(index, frame_of_reference_uid):
    """Candidate frames in the same patient coordinate system: planes of different
    series share z values, so a position means nothing without its frame of reference."""
    if frame_of_reference_uid:
        return index.by_frame_of_reference.get(str(frame_of_reference_uid), [])
    return None


def _key_by_position(index, point, tolerance_mm: float = 0.5, candidates=None):
    """The frame whose plane contains ``point`` (within ``tolerance_mm``), if any."""
    best, best_d = None, tolerance_mm
    for key in candidates if candidates is not None else index.keys:
        geo = _geometry(index, key)
        if geo is None:
            continue
        pos, _, _, normal, _ = geo
        d = abs(float(np.dot(np.asarray(point, float) - pos, normal)))
        if d <= best_d:
            best, best_d = key, d
    return best


def read_seg(path: str, index, rep) -> tuple[dict, dict]:
    """Masks ``{dicom_key: uint8 array}`` and mask targets ``{number: label}`` of a SEG."""
    ds = pydicom.dcmread(path)
    if str(ds.get("Modality", "")).upper() != "SEG":
        raise ValueError(f"{path}: Modality is {ds.get('Modality')}, not SEG")
    frames = ds.pixel_array
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    fractional = str(ds.get("SegmentationType", "BINARY")).upper() == "FRACTIONAL"
    threshold = 0.5 * float(ds.get("MaximumFractionalValue", 255) or 255) if fractional else 0
    targets = {
        int(s.SegmentNumber): str(s.get("SegmentLabel", f"segment {s.SegmentNumber}"))
        for s in ds.SegmentSequence
    }
    masks: dict[str, np.ndarray] = {}
    for i in range(frames.shape[0]):
        ident = functional_group(ds, i, "SegmentIdentificationSequence")
        seg_number = int(ident.ReferencedSegmentNumber) if ident is not None else 1
        key = None
        deriv = functional_group_sequence(ds, i, "DerivationImageSequence")
        if deriv:
            for source in deriv[0].get("SourceImageSequence") or []:
                sop = str(source.ReferencedSOPInstanceUID)
                frame = int(source.get("ReferencedFrameNumber", 1) or 1) - 1
                key = index.by_sop_frame.get((sop, frame)) or index.by_sop_frame.get((sop, 0))
                if key:
                    break
        plane = functional_group(ds, i, "PlanePositionSequence")
        if key is None and plane is not None:
            space = _same_space(index, ds.get("FrameOfReferenceUID"))
            key = _key_by_position(index, plane.ImagePositionPatient, candidates=space)
        if key is None:
            rep.error(
                i + 1,
                f"SEG frame {i + 1} references no image in the dataset (by SOP instance or position)",
            )
            continue
        frame = frames[i] > threshold
        if frame.shape != tuple(index.shape[key]):
            rep.error(
                i + 1, f"SEG frame {i + 1} is {frame.shape}, its image is {tuple(index.shape[key])}"
            )
            continue
        mask = masks.setdefault(key, np.zeros(frame.shape, np.uint8))
        mask[frame] = seg_number
    return masks, targets


def read_rtstruct(path: str, index, rep) -> tuple[dict, dict]:
    """Rasterised masks ``{dicom_key: uint8 array}`` and ``{roi value: ROIName}``."""
    from skimage.draw import polygon

    ds = pydicom.dcmread(path)
    if str(ds.get("Modality", "")).upper() != "RTSTRUCT":
        raise ValueError(f"{path}: Modality is {ds.get('Modality')}, not RTSTRUCT")
    names = {
        int(r.ROINumber): str(r.get("ROIName", f"ROI {r.ROINumber}"))
        for r in ds.get("StructureSetROISequence") or []
    }
    frames_of_reference = {
        int(r.ROINumber): r.get("ReferencedFrameOfReferenceUID")
        for r in ds.get("StructureSetROISequence") or []
    }
    values = {number: i + 1 for i, number in enumerate(sorted(names))}
    targets = {values[n]: names[n] for n in names}
    masks: dict[str, np.ndarray] = {}
    for roi in ds.get("ROIContourSequence") or []:
        number = int(roi.ReferencedROINumber)
        value = values.get(number)
        if value is None:
            value = values[number] = len(values) + 1
            targets[value] = f"ROI {number}"
        layers: dict[str, np.ndarray] = {}
        for c, contour in enumerate(roi.get("ContourSequence") or []):
            points = np.asarray(contour.ContourData, float).reshape(-1, 3)
            key = None
            for ref in contour.get("ContourImageSequence") or []:
                key = index.by_sop_frame.get(
                    (
                        str(ref.ReferencedSOPInstanceUID),
                        int(ref.get("ReferencedFrameNumber", 1) or 1) - 1,
                    )
                )
                if key:
                    break
            if key is None:
                space = _same_space(index, frames_of_reference.get(number))
                key = _key_by_position(index, points.mean(axis=0), candidates=space)
            if key is None:
                rep.error(
                    None,
                    f"ROI {names.get(number, number)} contour {c + 1}: no slice of the dataset lies in its plane",
                )
                continue
            geo = _geometry(index, key)
            if geo is None:
                rep.error(
                    None,
                    f"ROI {names.get(number, number)} contour {c + 1}: its slice has no geometry",
                )
                continue
            pos, row_dir, col_dir, _, spacing = geo
            d = points - pos
            cols = d @ row_dir / spacing[1]
            rows = d @ col_dir / spacing[0]
            shape = tuple(index.shape[key])
            rr, cc = polygon(rows, cols, shape)
            layer = layers.setdefault(key, np.zeros(shape, bool))
            layer[rr, cc] ^= True
        for key, layer in layers.items():
            mask = masks.setdefault(key, np.zeros(layer.shape, np.uint8))
            mask[layer] = value
    return masks, targets
