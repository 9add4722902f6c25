"""A tiny real CT study written with pydicom, and its samples as DESIGN.md describes them.

Reader-label tests need real DICOM (SEG and RTSTRUCT reference real SOP instances and
real geometry) but should not depend on the importer, which is tested on its own. This
helper writes the files, then adds one sample per frame with the fields the importer
would write, in one bulk ``add_samples``.

The geometry is deliberately unhelpful: rows and columns differ, the row and column
spacings differ and the origin is off zero, so a label that swaps x/y or ignores the
origin lands on the wrong pixels.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from multireader.core import fields as F

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SC_MULTIFRAME_WORD = "1.2.840.10008.5.1.4.1.1.7.3"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


@dataclass
class CTStudy:
    """What a test needs to know about the written study."""

    folder: str
    paths: list[str]  # one single-frame CT file per slice, in slice order
    sop_uids: list[str]
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    rows: int
    columns: int
    spacing: tuple[float, float]  # [row spacing, column spacing] mm
    origin: tuple[float, float, float]  # ImagePositionPatient of slice 0
    thickness: float
    multiframe_path: str = ""
    multiframe_sop: str = ""
    multiframe_series: str = ""
    n_frames: int = 0
    datasets: list = field(default_factory=list)  # the pydicom CT datasets, for highdicom

    def position(self, index: int) -> list[float]:
        x, y, z = self.origin
        return [x, y, z + index * self.thickness]

    def key(self, index: int) -> str:
        return f"{self.sop_uids[index]}:0"

    def mm(self, row: float, col: float, index: int) -> list[float]:
        """Patient coordinates (mm) of pixel centre (row, col) on slice ``index``."""
        x, y, z = self.position(index)
        return [x + col * self.spacing[1], y + row * self.spacing[0], z]


def _base(sop_class: str, sop_uid: str, modality: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid()
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.PatientName = "Test^Phantom"
    ds.PatientID = "PHANTOM-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260301"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "090000"
    ds.AccessionNumber = "A1"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.Manufacturer = "pydicom"
    return ds


def _ct_pixels(rows: int, columns: int, index: int) -> np.ndarray:
    """Water with a brighter disc that moves with the slice: renders differ per slice."""
    yy, xx = np.mgrid[:rows, :columns]
    disc = (yy - rows / 2) ** 2 + (xx - columns / 3 - index) ** 2 < (rows / 4) ** 2
    return np.where(disc, 1100, 1000).astype(np.uint16)  # stored; HU = stored - 1024


def write_ct_study(
    folder: str,
    *,
    n_slices: int = 4,
    rows: int = 24,
    columns: int = 32,
    spacing: tuple[float, float] = (0.8, 0.6),
    origin: tuple[float, float, float] = (-10.0, -20.0, 30.0),
    thickness: float = 2.5,
    n_frames: int = 3,
    frame_of_reference_uid: str | None = None,
    study_uid: str | None = None,
) -> CTStudy:
    """Write a CT series of ``n_slices`` single-frame files and one multi-frame file.

    The multi-frame file is its own series in the same frame of reference, stacked
    beyond the CT slices, so plane matching must pick the right series by position.
    Passing another study's ``frame_of_reference_uid`` (and ``study_uid``) writes a
    repeat series on the very same planes, which only series references tell apart.
    """
    os.makedirs(folder, exist_ok=True)
    study = CTStudy(
        folder=folder,
        paths=[],
        sop_uids=[],
        series_uid=generate_uid(),
        study_uid=study_uid or generate_uid(),
        frame_of_reference_uid=frame_of_reference_uid or generate_uid(),
        rows=rows,
        columns=columns,
        spacing=tuple(float(s) for s in spacing),
        origin=tuple(float(o) for o in origin),
        thickness=float(thickness),
    )
    for i in range(n_slices):
        sop = generate_uid()
        ds = _base(CT_IMAGE_STORAGE, sop, "CT")
        _image_module(ds, study, rows, columns)
        ds.SeriesInstanceUID = study.series_uid
        ds.SeriesNumber = 1
        ds.InstanceNumber = n_slices - i  # reversed on purpose: order comes from position
        ds.ImagePositionPatient = study.position(i)
        ds.SliceLocation = study.position(i)[2]
        ds.PixelData = _ct_pixels(rows, columns, i).tobytes()
        path = os.path.join(folder, f"ct_{i:02d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        study.paths.append(path)
        study.sop_uids.append(sop)
        study.datasets.append(pydicom.dcmread(path))

    if n_frames:
        sop = generate_uid()
        ds = _base(SC_MULTIFRAME_WORD, sop, "CT")
        _image_module(ds, study, rows, columns)
        study.multiframe_series = ds.SeriesInstanceUID = generate_uid()
        ds.SeriesNumber = 2
        ds.InstanceNumber = 1
        ds.NumberOfFrames = n_frames
        ds.ImagePositionPatient = study.position(n_slices + 10)
        frames = np.stack([_ct_pixels(rows, columns, k) for k in range(n_frames)])
        ds.PixelData = frames.tobytes()
        path = os.path.join(folder, "multiframe.dcm")
        ds.save_as(path, enforce_file_format=True)
        study.multiframe_path, study.multiframe_sop, study.n_frames = path, sop, n_frames
    return study


def _image_module(ds, study: CTStudy, rows: int, columns: int) -> None:
    ds.StudyInstanceUID = study.study_uid
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = list(study.spacing)
    ds.SliceThickness = study.thickness
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.KVP = 120
    ds.BodyPartExamined = "CHEST"


def _frame_records(study: CTStudy, render_dir: str) -> list[dict]:
    """One record per frame with the sample fields of DESIGN.md."""
    from multireader.io.dicom import media_name

    records = []
    # (file, SOP instance, frame, position index, which pixels _ct_pixels drew)
    frames = [
        (p, sop, 0, i, i)
        for i, (p, sop) in enumerate(zip(study.paths, study.sop_uids, strict=True))
    ]
    if study.multiframe_path:
        frames += [
            (study.multiframe_path, study.multiframe_sop, k, len(study.paths) + 10 + k, k)
            for k in range(study.n_frames)
        ]
    for path, sop, frame, pos_index, drawn in frames:
        key = f"{sop}:{frame}"
        stem = media_name(key)
        native = _ct_pixels(study.rows, study.columns, drawn).astype(np.int16)
        native = native - 1024
        png = os.path.join(render_dir, f"{stem}.png")
        npy = os.path.join(render_dir, f"{stem}.npy")
        render = np.clip((native - (40 - 200)) / 400 * 255, 0, 255).astype(np.uint8)
        Image.fromarray(render).save(png)
        np.save(npy, native)
        multi = path == study.multiframe_path
        position = study.position(pos_index)
        records.append(
            {
                "filepath": png,
                F.DICOM_PATH: os.path.abspath(path),
                F.FRAME_INDEX: frame,
                F.N_FRAMES: study.n_frames if multi else 1,
                F.DICOM_KEY: key,
                F.SOP_UID: sop,
                F.SERIES_UID: study.multiframe_series if multi else study.series_uid,
                F.STUDY_UID: study.study_uid,
                F.FRAME_OF_REFERENCE: study.frame_of_reference_uid,
                F.INSTANCE_NUMBER: 1 if multi else len(study.paths) - pos_index,
                F.NATIVE_PATH: npy,
                F.NATIVE_UNIT: "HU",
                F.SLICE_INDEX: frame if multi else pos_index,
                F.SLICE_POSITION: position[2],
                F.IMAGE_POSITION: position,
                F.IMAGE_ORIENTATION: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                F.PIXEL_SPACING: list(study.spacing),
                F.ROWS: study.rows,
                F.COLUMNS: study.columns,
                F.PATIENT_KEY: "0123456789abcdef",
                "modality": "CT",
                "slice_thickness": study.thickness,
            }
        )
    return records


def add_study_samples(dataset, study: CTStudy, render_dir: str) -> None:
    """Add the study's frames to ``dataset`` in one bulk write, as the importer would."""
    import fiftyone as fo

    os.makedirs(render_dir, exist_ok=True)
    samples = []
    for rec in _frame_records(study, render_dir):
        sample = fo.Sample(filepath=rec.pop("filepath"), **rec)
        sample["metadata"] = fo.ImageMetadata(
            width=study.columns, height=study.rows, num_channels=1, mime_type="image/png"
        )
        samples.append(sample)
    dataset.add_samples(samples, progress=False)


def make_study(dataset, folder: str, **kwargs) -> CTStudy:
    """Write the files under ``folder/dicom`` and add their samples to ``dataset``."""
    study = write_ct_study(os.path.join(folder, "dicom"), **kwargs)
    add_study_samples(dataset, study, os.path.join(folder, "renders"))
    return study


# --- label files -------------------------------------------------------------------


def write_rtstruct(
    path: str,
    study: CTStudy,
    rois: dict[str, list[tuple[int, list[list[float]]]]],
    *,
    reference_images: bool = True,
    reference_series: bool = True,
) -> str:
    """An RTSTRUCT with one ROI per entry: ``{name: [(slice index, [[x, y, z], ...]), ...]}``.

    Several contours of one ROI on one slice are written as separate items, the way
    planning systems write a hole. ``reference_images=False`` leaves out the
    ContourImageSequence, so contours must be matched by their plane;
    ``reference_series=False`` also leaves out which series the structures were drawn on.
    """
    ds = _base(RTSTRUCT_STORAGE, generate_uid(), "RTSTRUCT")
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 90
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "reader"
    ds.StructureSetDate = dt.date(2026, 3, 1).strftime("%Y%m%d")
    ref_series = pydicom.Dataset()
    ref_series.SeriesInstanceUID = study.series_uid
    ref_series.ContourImageSequence = []
    for sop in study.sop_uids:
        image = pydicom.Dataset()
        image.ReferencedSOPClassUID = CT_IMAGE_STORAGE
        image.ReferencedSOPInstanceUID = sop
        ref_series.ContourImageSequence.append(image)
    ref_study = pydicom.Dataset()
    ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # detached study management
    ref_study.ReferencedSOPInstanceUID = study.study_uid
    ref_study.RTReferencedSeriesSequence = [ref_series]
    ref_for = pydicom.Dataset()
    ref_for.FrameOfReferenceUID = study.frame_of_reference_uid
    if reference_series:
        ref_for.RTReferencedStudySequence = [ref_study]
    ds.ReferencedFrameOfReferenceSequence = [ref_for]
    ds.StructureSetROISequence = []
    ds.ROIContourSequence = []
    ds.RTROIObservationsSequence = []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = pydicom.Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = study.frame_of_reference_uid
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(roi)
        item = pydicom.Dataset()
        item.ReferencedROINumber = number
        item.ROIDisplayColor = [255, 0, 0]
        item.ContourSequence = []
        for index, points in contours:
            contour = pydicom.Dataset()
            if reference_images:
                image = pydicom.Dataset()
                image.ReferencedSOPClassUID = CT_IMAGE_STORAGE
                image.ReferencedSOPInstanceUID = study.sop_uids[index]
                contour.ContourImageSequence = [image]
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points)
            contour.ContourData = [f"{v:.4f}" for p in points for v in p]
            item.ContourSequence.append(contour)
        ds.ROIContourSequence.append(item)
        obs = pydicom.Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = "ORGAN"
        obs.ROIInterpreter = ""
        ds.RTROIObservationsSequence.append(obs)
    ds.save_as(path, enforce_file_format=True)
    return path


def rectangle_mm(study: CTStudy, index: int, r0: float, c0: float, r1: float, c1: float):
    """Corners (mm) of a rectangle whose corners are pixel centres (r0, c0)-(r1, c1)."""
    return [
        study.mm(r0, c0, index),
        study.mm(r0, c1, index),
        study.mm(r1, c1, index),
        study.mm(r1, c0, index),
    ]


def circle_mm(study: CTStudy, index: int, row: float, col: float, radius_mm: float, n=64):
    """A polygon approximating a circle of ``radius_mm`` centred on pixel (row, col)."""
    cx, cy, z = study.mm(row, col, index)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return [[cx + radius_mm * np.cos(a), cy + radius_mm * np.sin(a), z] for a in t]


def write_seg(path: str, study: CTStudy, labelmap: np.ndarray, names: list[str]) -> str:
    """A BINARY DICOM-SEG made by highdicom from ``labelmap`` (slices, rows, columns).

    Value ``k`` in the label map is segment ``k`` named ``names[k - 1]``. highdicom
    leaves out empty frames and references each frame's source image in its
    DerivationImageSequence, as clinical SEG writers do.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=k,
            segment_label=name,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for k, name in enumerate(names, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=study.datasets,
        pixel_array=labelmap.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=80,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="helpers_dicom",
        software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(path)
    return path
