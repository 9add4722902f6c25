"""A synthetic multi-reader chest-CT study, written as real DICOM files.

Everything here is made up: no patient, no scan. The study has lesions whose truth is
known, reads from four simulated radiologists, and the problems this plugin exists to
find, planted on purpose and listed in ``truth.json`` (see docs/demo_study.md):

(a) blurred and low-dose series, where readers disagree far more;
(b) a reader biased toward "suspicious";
(c) a reader who drifts across reading sessions;
(d) a handful of clear-cut errors by one reader;
(e) a scanner model on which every reader is less reliable.

Run ``python -m multireader.demo OUT_DIR`` or call :func:`generate_demo_study`.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from .progress import ProgressFn, report

CLASSES = ["benign", "probably_benign", "suspicious", "malignant"]
READERS = ["R1", "R2", "R3", "R4"]
BIASED_READER, DRIFTING_READER, ERROR_READER = "R2", "R3", "R4"
SCANNERS = [
    {"manufacturer": "Acme Medical", "model": "Helix 64", "noise": 12.0},
    {"manufacturer": "Nordlys Imaging", "model": "Aurora 128", "noise": 22.0},
]
UNRELIABLE_SCANNER = SCANNERS[1]
LABEL_SCHEMA = {
    "classes": CLASSES,
    "ordered": True,
    "score_range": [1, 5],
    "mask_targets": {1: "lesion"},
}
_SPACING = 0.7  # mm per pixel
_THICKNESS = 2.5  # mm between slices


@dataclass
class DemoStudy:
    root: str
    dicom_dir: str
    reads_csv: str
    boxes_csv: str
    masks_csv: str
    truth_path: str
    seg_files: list = field(default_factory=list)
    rtstruct_files: list = field(default_factory=list)
    label_schema: dict = field(default_factory=lambda: dict(LABEL_SCHEMA))


class _Uids:
    """Deterministic UIDs: the same seed always gives the same study."""

    def __init__(self, seed: int):
        self.seed = seed

    def __call__(self, *parts) -> str:
        # one joined string: separate sources are concatenated, so ("1", "12") == ("11", "2")
        return generate_uid(
            entropy_srcs=["/".join(["multireader-demo", str(self.seed), *map(str, parts)])]
        )


def _lesion_mask(shape, center, radius, lobes, spikes, rng):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    dy, dx = yy - center[0], xx - center[1]
    theta = np.arctan2(dy, dx)
    r = radius * (1 + lobes * np.sin(3 * theta + rng.uniform(0, 2 * np.pi)))
    for angle in rng.uniform(-np.pi, np.pi, spikes):
        # narrow angular bumps: spiculae reaching ~60% beyond the margin
        delta = np.angle(np.exp(1j * (theta - angle)))
        r = r + 0.6 * radius * np.exp(-(delta**2) / (2 * 0.06**2))
    return np.hypot(dy, dx) <= r


_CLASS_SHAPE = {
    # radius px, lobulation, spiculae, density HU
    0: ((3.5, 5.0), 0.02, 0, 180.0),  # benign: small, round, calcified
    1: ((5.5, 7.5), 0.08, 0, 60.0),
    2: ((8.0, 11.0), 0.18, 2, 40.0),
    3: ((12.0, 16.0), 0.22, 7, 35.0),  # malignant: large, spiculated
}


def _image(rng, size, z, cls, scanner, degradation):
    """One slice in HU and its lesion mask."""
    from scipy.ndimage import gaussian_filter

    yy, xx = np.mgrid[:size, :size]
    s = size / 256.0
    hu = np.full((size, size), -1000.0)
    body = ((xx - 128 * s) / (112 * s)) ** 2 + ((yy - 128 * s) / (84 * s)) ** 2 <= 1
    hu[body] = 40.0
    breath = 1 + 0.08 * np.sin(z / 12.0)
    lungs = []
    for cx in (83 * s, 173 * s):
        lung = ((xx - cx) / (36 * s * breath)) ** 2 + ((yy - 122 * s) / (56 * s * breath)) ** 2 <= 1
        hu[lung] = -850.0
        lungs.append((cx, lung))
    spine = (xx - 128 * s) ** 2 + (yy - 188 * s) ** 2 <= (13 * s) ** 2
    hu[spine] = 700.0
    shell = body & ~(((xx - 128 * s) / (106 * s)) ** 2 + ((yy - 128 * s) / (78 * s)) ** 2 <= 1)
    hu[shell & (np.sin(np.arctan2(yy - 128 * s, xx - 128 * s) * 9) > 0.3)] = 500.0

    (rlo, rhi), lobes, spikes, density = _CLASS_SHAPE[cls]
    radius = rng.uniform(rlo, rhi) * s
    cx, lung = lungs[rng.integers(2)]
    for _ in range(50):
        center = (
            rng.uniform(122 * s - 35 * s, 122 * s + 35 * s),
            rng.uniform(cx - 18 * s, cx + 18 * s),
        )
        mask = _lesion_mask((size, size), center, radius, lobes, spikes, rng)
        if mask.any() and lung[mask].mean() > 0.97:
            break
    hu[mask] = density
    if degradation == "blurred":
        hu = gaussian_filter(hu, 2.6)
    noise = scanner["noise"] * (5.0 if degradation == "low_dose" else 1.0)
    hu = hu + rng.normal(0, noise, hu.shape)
    return np.clip(hu, -1024, 3071), mask


def _ct_dataset(path, uids, hu, meta) -> FileDataset:
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = CTImageStorage
    file_meta.MediaStorageSOPInstanceUID = meta["sop"]
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    file_meta.ImplementationClassUID = uids("implementation")
    ds = FileDataset(path, {}, file_meta=file_meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta["sop"]
    ds.StudyInstanceUID = meta["study"]
    ds.SeriesInstanceUID = meta["series"]
    ds.FrameOfReferenceUID = meta["frame_of_reference"]
    ds.Modality = "CT"
    ds.PatientName = meta["patient_name"]
    ds.PatientID = meta["patient_id"]
    ds.PatientSex = meta["sex"]
    ds.PatientBirthDate = f"{int(meta['study_date'][:4]) - meta['age']}0615"
    ds.AccessionNumber = f"DEMOACC{meta['series_number']:04d}"
    ds.ReferringPhysicianName = "DEMO^REFERRER"
    ds.StudyID = f"DEMO{meta['series_number']:03d}"
    ds.PatientAge = f"{meta['age']:03d}Y"
    ds.PatientWeight = f"{meta['weight']:.1f}"
    ds.StudyDate = meta["study_date"]
    ds.StudyTime = "090000"
    ds.Manufacturer = meta["scanner"]["manufacturer"]
    ds.ManufacturerModelName = meta["scanner"]["model"]
    ds.InstitutionName = "Demo Hospital (synthetic)"
    ds.BodyPartExamined = "CHEST"
    ds.KVP = "80" if meta["degradation"] == "low_dose" else "120"
    if meta["contrast"]:
        ds.ContrastBolusAgent = "IODINE"
    ds.SeriesNumber = meta["series_number"]
    ds.InstanceNumber = meta["instance"]
    ds.SeriesDescription = f"Chest CT {meta['series_number']}"
    ds.ImagePositionPatient = [-hu.shape[1] * _SPACING / 2, -hu.shape[0] * _SPACING / 2, meta["z"]]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [_SPACING, _SPACING]
    ds.SliceThickness = _THICKNESS
    ds.SliceLocation = meta["z"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = hu.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = [-600, 40]
    ds.WindowWidth = [1500, 400]
    ds.PixelData = np.round(hu + 1024).astype(np.uint16).tobytes()
    return ds


def _reader_call(rng, reader, truth, image, session, n_sessions):
    """A simulated read: the class index a reader assigns, and their confidence."""
    sigma = 0.25
    if image["degradation"]:
        sigma = 1.6
    elif image["scanner"] is UNRELIABLE_SCANNER:
        sigma = 0.85
    shift = 0.0
    if reader == DRIFTING_READER:
        # from sharp in the first session to loose and upgrading by the last
        progress = session / max(n_sessions - 1, 1)
        sigma += 0.9 * progress
        shift += 0.5 * progress
    latent = truth + shift + rng.normal(0, sigma)
    call = int(np.clip(np.rint(latent), 0, 3))
    if reader == BIASED_READER and call < 2 and rng.random() < 0.45:
        call = 2
    confidence = float(np.clip(1 - abs(latent - call) - 0.1 * sigma, 0.3, 0.99))
    return call, round(confidence, 2)


def _score(rng, cls):
    return {0: 1, 1: 2, 2: int(rng.choice([3, 4])), 3: 5}[cls]


def generate_demo_study(
    out_dir: str,
    *,
    seed: int = 0,
    n_series: int | None = None,
    slices_per_series: int = 14,
    image_size: int = 256,
    progress: ProgressFn | None = None,
) -> DemoStudy:
    """Write the demo study under ``out_dir`` and return where everything is.

    The default, 24 series of 14 slices, gives 336 images. Same seed, same study.
    """
    from PIL import Image

    n_series = 24 if n_series is None else int(n_series)
    rng = np.random.default_rng(seed)
    uids = _Uids(seed)
    root = os.path.abspath(out_dir)
    dicom_dir = os.path.join(root, "dicom")
    label_dir = os.path.join(root, "labels")
    os.makedirs(dicom_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)

    # series plan: ~1/3 on the unreliable scanner; degraded series on the reliable one,
    # so the two planted effects can be told apart
    n_patients = max(2, (n_series * 2) // 3)
    plan = []
    degraded = {1: "blurred", 5: "low_dose", 9: "blurred"} if n_series >= 10 else {1: "blurred"}
    for k in range(n_series):
        scanner = SCANNERS[1] if k % 3 == 2 else SCANNERS[0]
        deg = degraded.get(k)
        if deg:
            scanner = SCANNERS[0]
        plan.append({"k": k, "patient": k % n_patients, "scanner": scanner, "degradation": deg})

    images, datasets_by_series = [], {}
    base_date = dt.date(2026, 1, 5)
    for item in plan:
        k, p = item["k"], item["patient"]
        study_no = k // n_patients  # patients seen twice get a second study
        pid = f"DEMO{p:03d}"
        meta_base = {
            "patient_id": pid,
            "patient_name": f"DEMO^PATIENT^{p:03d}",
            "sex": "F" if p % 2 else "M",
            "age": 38 + (p * 7) % 45,
            "weight": 55 + (p * 11) % 50,
            "study": uids("study", p, study_no),
            "series": uids("series", k),
            "frame_of_reference": uids("for", k),
            "study_date": (base_date + dt.timedelta(days=30 * study_no + p)).strftime("%Y%m%d"),
            "scanner": item["scanner"],
            "degradation": item["degradation"],
            "contrast": k % 2 == 0,
            "series_number": k + 1,
        }
        folder = os.path.join(dicom_dir, pid, f"series_{k + 1:02d}")
        os.makedirs(folder, exist_ok=True)
        # file names in an order unrelated to slice position
        names = [f"IM{n:04d}.dcm" for n in rng.permutation(slices_per_series)]
        datasets_by_series[meta_base["series"]] = []
        for j in range(slices_per_series):
            cls = int(rng.choice(4, p=[0.35, 0.25, 0.2, 0.2]))
            z = -100.0 + j * _THICKNESS
            hu, mask = _image(rng, image_size, z, cls, item["scanner"], item["degradation"])
            sop = uids("sop", k, j)
            meta = {**meta_base, "sop": sop, "instance": j + 1, "z": z}
            path = os.path.join(folder, names[j])
            ds = _ct_dataset(path, uids, hu, meta)
            ds.save_as(path, enforce_file_format=True)
            datasets_by_series[meta_base["series"]].append(ds)
            rows_idx, cols_idx = np.nonzero(mask)
            images.append(
                {
                    "sop": sop,
                    "series": meta_base["series"],
                    "series_index": k,
                    "slice": j,
                    "class": cls,
                    "score": _score(rng, cls),
                    "mask": mask,
                    "box": [
                        int(cols_idx.min()),
                        int(rows_idx.min()),
                        int(cols_idx.max() - cols_idx.min() + 1),
                        int(rows_idx.max() - rows_idx.min() + 1),
                    ],
                    "scanner": item["scanner"],
                    "degradation": item["degradation"],
                    "easy": item["degradation"] is None
                    and item["scanner"] is SCANNERS[0]
                    and cls in (0, 3),
                }
            )
        report(progress, 0.6 * (k + 1) / n_series, f"wrote series {k + 1}/{n_series}")

    # (d) clear-cut errors: easy, unambiguous images where the reader calls the opposite extreme
    easy = [i for i, im in enumerate(images) if im["easy"]]
    n_errors = min(10, len(easy) // 4)
    error_idx = set(rng.choice(easy, n_errors, replace=False).tolist()) if n_errors else set()

    n_sessions = 6
    reads, boxes, masks_rows = [], [], []
    for reader_no, reader in enumerate(READERS):
        rrng = np.random.default_rng([seed, reader_no])
        # each reader works through the study in their own order, so a reading
        # session mixes series and the drift is not confounded with any one series
        order = rrng.permutation(len(images)).tolist()
        per_session = int(np.ceil(len(order) / n_sessions))
        mask_folder = os.path.join(label_dir, "masks", reader)
        os.makedirs(mask_folder, exist_ok=True)
        for pos, i in enumerate(order):
            im = images[i]
            session = pos // per_session
            forced = reader == ERROR_READER and i in error_idx
            if not forced and rrng.random() < 0.06:
                continue  # this reader did not read this image: a missing row, never a negative
            call, confidence = _reader_call(rrng, reader, im["class"], im, session, n_sessions)
            if forced:
                call, confidence = 3 - im["class"], 0.9
            when = dt.datetime(2026, 2, 2, 8, 0) + dt.timedelta(
                days=7 * session, minutes=3 * (pos % per_session)
            )
            common = {"sop_instance_uid": im["sop"], "reader": reader}
            reads.append(
                {
                    **common,
                    "label": CLASSES[call],
                    "score": _score(rrng, call),
                    "confidence": confidence,
                    "timestamp": when.isoformat(),
                    "session": f"S{session + 1}",
                }
            )
            x, y, w, h = im["box"]
            jitter = rrng.normal(0, 1.2, 4) * (3 if im["degradation"] else 1)
            bx, by = max(0.0, x + jitter[0]), max(0.0, y + jitter[1])
            bw = max(2.0, min(w + jitter[2], image_size - bx))
            bh = max(2.0, min(h + jitter[3], image_size - by))
            boxes.append(
                {
                    **common,
                    "label": CLASSES[call],
                    "x": round(bx, 1),
                    "y": round(by, 1),
                    "width": round(bw, 1),
                    "height": round(bh, 1),
                }
            )
            if im["series_index"] == 0 and reader in ("R1", "R2"):
                continue  # their outlines of the first series come as DICOM-SEG and RTSTRUCT
            mask = _reader_mask(im["mask"], reader_no, im["degradation"], rrng)
            rel = os.path.join("masks", reader, f"{im['sop']}.png")
            Image.fromarray(mask.astype(np.uint8)).save(os.path.join(label_dir, rel))
            masks_rows.append(
                {
                    **common,
                    "mask_path": rel,
                    "timestamp": when.isoformat(),
                    "session": f"S{session + 1}",
                }
            )
        report(progress, 0.6 + 0.25 * (reader_no + 1) / len(READERS), f"simulated reader {reader}")

    reads_csv = _write_csv(os.path.join(label_dir, "reads.csv"), reads)
    boxes_csv = _write_csv(os.path.join(label_dir, "boxes.csv"), boxes)
    masks_csv = _write_csv(os.path.join(label_dir, "masks.csv"), masks_rows)

    # DICOM-SEG by R1 and RTSTRUCT by R2 on the first series
    first = plan[0]
    series_uid = uids("series", first["k"])
    series_images = [im for im in images if im["series"] == series_uid]
    seg_files, rt_files = [], []
    seg_path = os.path.join(label_dir, "seg_R1.dcm")
    if _write_seg(seg_path, datasets_by_series[series_uid], series_images, uids, first["k"]):
        seg_files.append(("R1", seg_path))
    rt_path = os.path.join(label_dir, "rtstruct_R2.dcm")
    _write_rtstruct(rt_path, datasets_by_series[series_uid], series_images, uids, first["k"])
    rt_files.append(("R2", rt_path))

    truth = {
        "seed": seed,
        "classes": CLASSES,
        "readers": READERS,
        "images": {
            im["sop"]: {
                "class": CLASSES[im["class"]],
                "score": im["score"],
                "series_instance_uid": im["series"],
                "slice": im["slice"],
                "manufacturer": im["scanner"]["manufacturer"],
                "model": im["scanner"]["model"],
                "degradation": im["degradation"],
                "box": im["box"],
                "lesion_pixels": int(im["mask"].sum()),
            }
            for im in images
        },
        "planted": {
            "degraded_images": {
                "sop_instance_uids": [im["sop"] for im in images if im["degradation"]],
                "kinds": sorted({im["degradation"] for im in images if im["degradation"]}),
            },
            "biased_reader": {"reader": BIASED_READER, "toward": "suspicious", "rate": 0.45},
            "drifting_reader": {
                "reader": DRIFTING_READER,
                "sessions": n_sessions,
                "field": "session",
            },
            "clear_cut_errors": {
                "reader": ERROR_READER,
                "sop_instance_uids": sorted(images[i]["sop"] for i in error_idx),
            },
            "unreliable_scanner": {
                "manufacturer": UNRELIABLE_SCANNER["manufacturer"],
                "model": UNRELIABLE_SCANNER["model"],
            },
        },
    }
    truth_path = os.path.join(root, "truth.json")
    with open(truth_path, "w") as f:
        json.dump(truth, f, indent=1)
    report(progress, 1.0, f"demo study: {len(images)} images, {len(reads)} reads")
    return DemoStudy(
        root=root,
        dicom_dir=dicom_dir,
        reads_csv=reads_csv,
        boxes_csv=boxes_csv,
        masks_csv=masks_csv,
        truth_path=truth_path,
        seg_files=seg_files,
        rtstruct_files=rt_files,
    )


def _reader_mask(mask, reader_no, degradation, rng):
    """Each reader draws the boundary their own way (tight, generous, shifted)."""
    from scipy.ndimage import binary_dilation, binary_erosion, shift

    out = mask
    if reader_no == 0:
        out = binary_erosion(mask, iterations=1) if mask.sum() > 30 else mask
    elif reader_no == 1:
        out = binary_dilation(mask, iterations=1)
    elif reader_no == 2:
        out = shift(mask.astype(float), (rng.integers(-1, 2), rng.integers(-1, 2)), order=0) > 0.5
    else:
        out = binary_dilation(mask, iterations=2)
    if degradation:
        out = binary_dilation(out, iterations=int(rng.integers(1, 4)))
    return out.astype(np.uint8)


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_seg(path, source_datasets, series_images, uids, k) -> bool:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    by_sop = {im["sop"]: im for im in series_images}
    sources = sorted(source_datasets, key=lambda d: float(d.ImagePositionPatient[2]))
    pixel = np.stack([by_sop[d.SOPInstanceUID]["mask"] for d in sources]).astype(bool)
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixel,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=uids("seg-series", k),
        series_number=100 + k,
        sop_instance_uid=uids("seg", k),
        instance_number=1,
        manufacturer="multireader demo",
        manufacturer_model_name="synthetic reader R1",
        software_versions="0.1",
        device_serial_number="0",
    )
    seg.save_as(path)
    return True


def _write_rtstruct(path, source_datasets, series_images, uids, k) -> None:
    from pydicom.sequence import Sequence
    from skimage.measure import find_contours

    by_sop = {im["sop"]: im for im in series_images}
    first = source_datasets[0]
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = pydicom.uid.RTStructureSetStorage
    file_meta.MediaStorageSOPInstanceUID = uids("rtstruct", k)
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    file_meta.ImplementationClassUID = uids("implementation")
    ds = FileDataset(path, {}, file_meta=file_meta, preamble=b"\0" * 128)
    ds.SOPClassUID = pydicom.uid.RTStructureSetStorage
    ds.SOPInstanceUID = uids("rtstruct", k)
    ds.Modality = "RTSTRUCT"
    for keyword in (
        "StudyInstanceUID",
        "PatientID",
        "PatientName",
        "PatientSex",
        "PatientBirthDate",
        "StudyDate",
        "StudyTime",
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
    ):
        setattr(ds, keyword, getattr(first, keyword))
    ds.SeriesInstanceUID = uids("rtstruct-series", k)
    ds.SeriesNumber = 200 + k
    ds.Manufacturer = "multireader demo"
    ds.StructureSetLabel = "R2 lesions"
    ds.StructureSetDate = "20260301"
    roi = pydicom.Dataset()
    roi.ROINumber = 1
    roi.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
    roi.ROIName = "lesion"
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = Sequence([roi])
    contours = []
    for src in source_datasets:
        mask = by_sop[src.SOPInstanceUID]["mask"]
        pos = np.asarray(src.ImagePositionPatient, float)
        for c in find_contours(mask.astype(float), 0.5):
            if len(c) < 4:
                continue
            # (row, col) -> patient mm: x grows with column, y with row
            xyz = np.column_stack(
                [pos[0] + c[:, 1] * _SPACING, pos[1] + c[:, 0] * _SPACING, np.full(len(c), pos[2])]
            )
            item = pydicom.Dataset()
            ref = pydicom.Dataset()
            ref.ReferencedSOPClassUID = src.SOPClassUID
            ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
            item.ContourImageSequence = Sequence([ref])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(xyz)
            item.ContourData = [round(float(v), 3) for v in xyz.ravel()]
            contours.append(item)
    roi_contour = pydicom.Dataset()
    roi_contour.ReferencedROINumber = 1
    roi_contour.ROIDisplayColor = [255, 0, 0]
    roi_contour.ContourSequence = Sequence(contours)
    ds.ROIContourSequence = Sequence([roi_contour])
    obs = pydicom.Dataset()
    obs.ObservationNumber = 1
    obs.ReferencedROINumber = 1
    obs.RTROIInterpretedType = "ORGAN"
    obs.ROIInterpreter = "R2"
    ds.RTROIObservationsSequence = Sequence([obs])
    ds.save_as(path, enforce_file_format=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write the synthetic multi-reader demo study.")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--series", type=int, default=None)
    args = parser.parse_args()
    study = generate_demo_study(
        args.out_dir,
        seed=args.seed,
        n_series=args.series,
        progress=lambda f, m: print(f"{f:4.0%} {m}"),
    )
    print(json.dumps({k: str(v) for k, v in study.__dict__.items()}, indent=1))
