"""A synthetic multi-reader chest-CT study, written as real DICOM files.

Everything here is made up: no patient, no scan. The plugin needs a study whose truth
is known to show (and to test) that it finds what it claims to find, and no public
multi-reader data set can be shipped with it. So this module draws chest CT series whose
slices are covered by 3-D nodules (each spans 2-6 adjacent slices, one nodule per
slice) whose class follows from what is visible (size, margin, density), simulates
four radiologists reading them slice by slice and outlining each nodule in 3-D, and
plants the problems the plugin exists to find, each listed with its parameters in
``truth.json`` (see docs/demo_study.md):

(a) blurred and low-dose images, where readers disagree far more;
(b) a reader biased toward "suspicious";
(c) a reader who drifts across reading sessions (weeks apart);
(d) a handful of clear-cut errors by one reader on easy images;
(e) a scanner model on which every reader is less reliable;
(f) a reader whose nodule outlines are 10-15 % larger in volume than the truth;
(g) a reader who misses small nodules (all-zero masks on their slices);
(h) a reader whose RECIST diameters drift upward over sessions (+3 % per session);
(i) a patient whose RECIST response flips between PR and SD across readers.

RECIST target measurements (baseline and follow-up, each reader's diameters from its
own outlines) are in ``labels/measurements.csv``.

Run ``python -m multireader.io.demo OUT_DIR`` or call :func:`generate_demo_study`.
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
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from multireader.progress import ProgressFn, report

CLASSES = ["benign", "probably_benign", "suspicious", "malignant"]
READERS = ["R1", "R2", "R3", "R4"]
STEADY_READER, BIASED_READER, DRIFTING_READER, ERROR_READER = READERS
# the two lesion-level (outline) problems, on readers whose calls the outlines cannot
# confound: R2 over-calls "suspicious" and over-draws boundaries (a generous reader, the
# role R2's outlines always had; it is also the RTSTRUCT author, whose contours only
# grow); R3 drifts in its calls and misses small nodules. Not R1: the steady reference
# and the DICOM-SEG author (a missed nodule would leave empty SEG frames). Not R4: its
# clear-cut errors are calls on easy images, half of them small benign nodules, and a
# call on a nodule the reader did not see would be no clear-cut error.
BOUNDARY_READER, MISSING_READER = "R2", "R3"
SCANNERS = [
    {"manufacturer": "Acme Medical", "model": "Helix 64", "noise": 12.0, "kernel": "B45f"},
    {"manufacturer": "Acme Medical", "model": "Helix 128", "noise": 10.0, "kernel": "B45f"},
    {"manufacturer": "Nordlys Imaging", "model": "Aurora 16", "noise": 22.0, "kernel": "LUNG"},
]
UNRELIABLE_SCANNER = SCANNERS[2]
LABEL_SCHEMA = {
    "classes": CLASSES,
    "ordered": True,
    "score_range": [1, 5],
    "mask_targets": {1: "lesion"},
}
N_SESSIONS = 6

#: the columns of the three tables, in order (docs/demo_study.md)
READS_COLUMNS = [
    "sop_instance_uid",
    "frame",
    "reader",
    "label",
    "score",
    "confidence",
    "timestamp",
    "session",
]
BOXES_COLUMNS = ["sop_instance_uid", "frame", "reader", "label", "x", "y", "width", "height"]
MASKS_COLUMNS = ["sop_instance_uid", "frame", "reader", "mask_path", "timestamp", "session"]
MEASUREMENTS_COLUMNS = [
    "reader",
    "sop_instance_uid",
    "frame",
    "lesion_id",
    "long_axis_mm",
    "short_axis_mm",
    "target",
    "site",
    "new_lesion",
    "timepoint",
    "x1",
    "y1",
    "x2",
    "y2",
    "timestamp",
    "session",
]

# RECIST measurements (labels/measurements.csv, docs/demo_study.md): every reader measures
# the same targets, the (at most) RECIST_MAX_TARGETS largest nodules of the patient's
# baseline series whose true long axis is at least RECIST_MIN_TARGET_MM and that no
# reader missed, at baseline and at the follow-up. The baseline diameters are the
# reader's own outline's (stats.recist.lesion_diameters); a follow-up diameter is the
# reader's baseline one times the patient's planned course, with RECIST_NOISE of
# relative noise per measurement.
RECIST_MIN_TARGET_MM = 12.0
RECIST_MAX_TARGETS = 2  # one organ (lung): RECIST 1.1 takes at most 2 targets per organ
RECIST_NOISE = 0.015
#: planted: this reader's diameters grow by RECIST_DRIFT_PER_SESSION of their size per
#: reading session (S1 x1.00 .. S6 x1.15), its RECIST measurements as well as any other
RECIST_DRIFT_READER, RECIST_DRIFT_PER_SESSION = DRIFTING_READER, 0.03
#: the follow-up patients' courses in turn: (response, factor on every target diameter,
#: whether a second target disappears (0 mm): the first such patient with two targets
#: only); far from the 30 % / 20 % thresholds, so that
#: neither the noise nor the drift (at most x1.15 / 1.00) changes a reader's call
RECIST_COURSES = (
    ("PR", 0.45, True),
    ("SD", 1.0, False),
    ("PD", 1.8, False),
    ("SD", 0.95, False),
    ("PR", 0.40, True),
)
#: planted: the first follow-up patient's course per reader, flipping PR / SD across
#: readers (R1's sum -32 %, R2's -25 %: the 30 % threshold between them); no noise
RECIST_FLIP = {"R1": 0.68, "R2": 0.75, "R3": 0.70, "R4": 0.72}

#: the simulated readers' noise: the standard deviation of their latent call, in classes
READER_SIGMA = {"clean": 0.30, "unreliable_scanner": 1.0, "degraded": 2.0}
BIAS_RATE = 0.5  # share of the biased reader's benign / probably-benign calls turned suspicious
# the drifting reader, by the last session: extra sigma, upward shift of the latent class,
# and the share of reads that slip to a neighbouring class (fatigue, a looser threshold)
DRIFT_SIGMA, DRIFT_SHIFT, DRIFT_LAPSE = 0.35, 0.3, 0.65
MISSING_RATE = 0.06  # share of images a reader did not read
# each reader's 3-D outline volume as a ratio of the true nodule volume, one ratio drawn
# uniformly per reader and nodule; the boundary reader's 10-15 % is planted problem (f)
VOLUME_RATIO = {"R1": (0.95, 0.99), "R2": (1.10, 1.15), "R3": (0.98, 1.02), "R4": (1.01, 1.05)}
# planted problem (g): the missing reader overlooks a nodule whose volume-equivalent
# diameter is below MISS_DIAMETER_MM with probability MISS_PROB, and never a larger one
MISS_DIAMETER_MM, MISS_PROB = 7.0, 0.7

_SPACING = 0.7  # mm per pixel at 256 px
_THICKNESS = 2.5  # mm between slices
_IMPLEMENTATION_UID = generate_uid(entropy_srcs=["multireader-demo-implementation"])

# class index -> (radius range px at 256 px, lobulation, spiculae, density HU); the class
# follows from what is visible, so an image-feature model could learn it
_CLASS_SHAPE = {
    0: ((3.5, 5.0), 0.02, 0, 180.0),  # benign: small, round, calcified
    1: ((5.5, 7.5), 0.08, 0, 60.0),  # probably benign: small, smooth, soft tissue
    2: ((8.0, 11.0), 0.18, 2, 40.0),  # suspicious: larger, lobulated, a few spiculae
    3: ((12.0, 16.0), 0.22, 7, 35.0),  # malignant: large, spiculated
}
# nodule classes are dealt from shuffled decks of 20 (9 benign, 5 probably benign, 3
# suspicious, 3 malignant), so every study gets about the same mix; larger nodules span
# more slices, so per slice the classes come out at about 30 / 26 / 20 / 24 %
NODULE_DECK = [0] * 9 + [1] * 5 + [2] * 3 + [3] * 3
EASY_SECTION = 0.8  # an "easy" slice shows at least this share of its nodule's radius


@dataclass
class DemoStudy:
    """Where everything of a generated study lies (absolute paths)."""

    root: str
    dicom_dir: str
    reads_csv: str
    boxes_csv: str
    masks_csv: str
    truth_path: str
    seg_files: list = field(default_factory=list)  # [(reader_id, path)]
    rtstruct_files: list = field(default_factory=list)  # [(reader_id, path)]
    #: RECIST measurements of every patient's targets, baseline and follow-up
    measurements_csv: str = ""
    label_schema: dict = field(default_factory=lambda: dict(LABEL_SCHEMA))


def truth_key(sop_instance_uid: str, frame: int | str | None = None) -> str:
    """The key of an image in ``truth.json``: the SOP instance UID, plus ``:<frame>``
    for a frame of the multi-frame file, exactly as a reads row names it."""
    if frame is None or str(frame) == "":
        return str(sop_instance_uid)
    return f"{sop_instance_uid}:{int(frame)}"


class _Uids:
    """Deterministic UIDs: the same seed always gives the same study."""

    def __init__(self, seed: int):
        self.seed = seed

    def __call__(self, *parts) -> str:
        # one joined string: separate sources are concatenated, so ("1", "12") == ("11", "2")
        return generate_uid(
            entropy_srcs=["/".join(["multireader-demo", str(self.seed), *map(str, parts)])]
        )


def _lesion_mask(shape, center, radius, lobes, phase, spike_angles):
    """A lobulated blob with narrow spiculae, drawn in a window around its centre.

    ``phase`` (of the lobulation) and ``spike_angles`` belong to the nodule, so every
    cross-section of one nodule has the same shape at its own radius.
    """
    reach = int(np.ceil(radius * (1 + lobes) * 1.7)) + 2
    r0, c0 = int(center[0]) - reach, int(center[1]) - reach
    yy, xx = np.mgrid[r0 : r0 + 2 * reach + 1, c0 : c0 + 2 * reach + 1]
    dy, dx = yy - center[0], xx - center[1]
    theta = np.arctan2(dy, dx)
    r = radius * (1 + lobes * np.sin(3 * theta + phase))
    for angle in spike_angles:
        # narrow angular bumps: spiculae reaching ~60% beyond the margin
        delta = np.angle(np.exp(1j * (theta - angle)))
        r = r + 0.6 * radius * np.exp(-(delta**2) / (2 * 0.06**2))
    inside = np.hypot(dy, dx) <= r
    mask = np.zeros(shape, bool)
    rr, cc = yy[inside], xx[inside]
    keep = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
    mask[rr[keep], cc[keep]] = True
    return mask


def _lung_fraction(mask, size, z, cx) -> float:
    """The share of a mask's pixels inside the lung centred on column ``cx`` at ``z``
    (the lung ellipse of :func:`_anatomy`, without drawing the whole slice)."""
    s = size / 256.0
    breath = 1 + 0.08 * np.sin(z / 12.0)
    rr, cc = np.nonzero(mask)
    inside = ((cc - cx) / (36 * s * breath)) ** 2 + ((rr - 122 * s) / (56 * s * breath)) ** 2 <= 1
    return float(inside.mean()) if len(rr) else 0.0


def _nodule_lengths(rng, n_slices: int, deck: list[int]) -> list[tuple[int, int, float]]:
    """(class, number of slices, radius in px at 256 px) of the nodules that cover a
    series, in order along z.

    The class is dealt per nodule from ``deck`` (refilled with a shuffled
    :data:`NODULE_DECK` when empty); its length follows its size (about a sphere of its
    radius sampled every 2.5 mm), 2 to 6 slices, shortened where the series ends and
    lengthened by one where a single slice would be left over (a nodule is never one
    slice).
    """
    out, left = [], n_slices
    while left > 0:
        if not deck:
            deck.extend(int(c) for c in rng.permutation(NODULE_DECK))
        cls = deck.pop()
        (rlo, rhi), *_ = _CLASS_SHAPE[cls]
        radius_mm = float(rng.uniform(rlo, rhi)) * _SPACING
        n = int(np.clip(np.rint(2 * radius_mm / _THICKNESS + rng.uniform(-0.6, 0.6)), 2, 6))
        n = min(n, left)
        if left - n == 1:  # never leave a single slice for the next nodule
            n = n + 1 if n < 6 else n - 1
        out.append((cls, n, radius_mm / _SPACING))
        left -= n
    return out


def _plan_nodules(rng, size: int, z: list[float], k: int, deck: list[int]) -> list[dict]:
    """The 3-D nodules of series ``k``: consecutive runs of slices, one nodule each.

    Each nodule is an ellipsoid-like body: a fixed in-plane centre and shape (lobulation
    phase, spiculae angles) whose cross-section radius shrinks along z as
    ``R * sqrt(1 - (dz / c)**2)``; the z semi-axis ``c`` ends between the nodule's last
    slice and the next, so the nodule is visible on its own slices only. Consecutive
    nodules sit at clearly different in-plane positions, so they never touch in 3-D.
    """
    from scipy.ndimage import binary_dilation

    s = size / 256.0
    nodules, first, prev = [], 0, None
    for m, (cls, n, radius_256) in enumerate(_nodule_lengths(rng, len(z), deck)):
        _, lobes, spikes, density = _CLASS_SHAPE[cls]
        radius = radius_256 * s
        z_end = (n - 1) / 2 * _THICKNESS
        c_mm = z_end + float(rng.uniform(0.6, 0.9)) * _THICKNESS
        phase = float(rng.uniform(0, 2 * np.pi))
        angles = rng.uniform(-np.pi, np.pi, spikes)
        zc = (z[first] + z[first + n - 1]) / 2
        radii = [
            radius * float(np.sqrt(1 - ((z[j] - zc) / c_mm) ** 2)) for j in range(first, first + n)
        ]
        for _ in range(200):
            side = int(rng.integers(2))
            cx = (83 if side == 0 else 173) * s
            center = (
                float(rng.uniform(122 * s - 35 * s, 122 * s + 35 * s)),
                float(rng.uniform(cx - 18 * s, cx + 18 * s)),
            )
            masks = [_lesion_mask((size, size), center, r, lobes, phase, angles) for r in radii]
            ok = all(
                mk.any() and _lung_fraction(mk, size, z[j], cx) > 0.97
                for j, mk in zip(range(first, first + n), masks, strict=True)
            )
            if ok and prev is not None:
                gap = np.hypot(center[0] - prev["center"][0], center[1] - prev["center"][1])
                near = binary_dilation(prev["masks"][-1], iterations=max(2, int(3 * s)))
                ok = gap >= 1.2 * (radius + prev["radius"]) + 4 * s and not (near & masks[0]).any()
            if ok:
                break
        nodule = {
            "id": f"S{k + 1:02d}N{m + 1}",
            "series_index": k,
            "slices": list(range(first, first + n)),
            "class": cls,
            "radius": radius,
            "radius_256": radius_256,
            "slice_radii": radii,
            "z_semi_axis_mm": c_mm,
            "center": center,
            "lobulation": lobes,
            "spiculae": spikes,
            "density": density,
            "masks": masks,
        }
        nodules.append(nodule)
        prev, first = nodule, first + n
    return nodules


def _anatomy(size: int, z: float, contrast: bool):
    """A chest cross-section in HU (no noise) and the two lung masks."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    s = size / 256.0
    c = 128 * s
    hu = np.full((size, size), -1000.0)

    def ellipse(cx, cy, rx, ry):
        return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1

    body = ellipse(c, c, 112 * s, 84 * s)
    hu[body] = -100.0  # subcutaneous fat
    inner = ellipse(c, c, 104 * s, 77 * s)
    hu[inner] = 40.0  # muscle and mediastinum
    shell = inner & ~ellipse(c, c, 98 * s, 72 * s)
    hu[shell & (np.sin(np.arctan2(yy - c, xx - c) * 9 + z / 20.0) > 0.3)] = 500.0  # ribs
    breath = 1 + 0.08 * np.sin(z / 12.0)
    lungs = []
    for cx in (83 * s, 173 * s):
        lung = ellipse(cx, 122 * s, 36 * s * breath, 56 * s * breath)
        # dependent lung is a little denser (gravity), as on real supine CT
        hu[lung] = -870.0 + 40.0 * (yy[lung] - 66 * s) / (112 * s)
        lungs.append((cx, lung))
    hu[ellipse(c - 6 * s, 118 * s, 20 * s, 24 * s)] = 40.0  # heart
    hu[ellipse(c + 12 * s, 160 * s, 9 * s, 9 * s)] = 250.0 if contrast else 45.0  # aorta
    spine = ellipse(c, 188 * s, 13 * s, 13 * s)
    hu[spine] = 700.0  # cortical bone
    hu[ellipse(c, 188 * s, 8 * s, 8 * s)] = 250.0  # cancellous bone
    return hu, lungs


def _image(rng, size, z, mask, density, scanner, degradation, contrast):
    """One slice in HU with its nodule's cross-section ``mask`` drawn at ``density``."""
    from scipy.ndimage import gaussian_filter

    s = size / 256.0
    hu, _ = _anatomy(size, z, contrast)
    hu[mask] = density
    if degradation == "blurred":  # motion: margins and spiculae smear out
        hu = gaussian_filter(hu, 2.6 * s)
    noise = scanner["noise"] * (5.0 if degradation == "low_dose" else 1.0)
    hu = hu + rng.normal(0, noise, hu.shape)
    return np.clip(hu, -1024, 3071)


def _score(nodule) -> int:
    """The ordinal score refines the class: a large suspicious nodule scores 4, not 3."""
    (rlo, rhi), *_ = _CLASS_SHAPE[nodule["class"]]
    return {0: 1, 1: 2, 2: 3 if nodule["radius_256"] < (rlo + rhi) / 2 else 4, 3: 5}[
        nodule["class"]
    ]


def _calibrated_outline(truth, ratio, spacing, rng, roughness=0.0):
    """A reader's 3-D outline of one nodule whose volume is ``ratio`` times the truth's.

    ``truth`` is the nodule's stack of cross-sections ``[slice, row, col]`` (a crop with
    room around it). The reader grows (ratio > 1) or shrinks (ratio < 1) the whole
    nodule by a 3-D distance: voxels are added in order of their anisotropic distance to
    the nodule (mm, slice spacing 2.5), or removed in order of their distance to the
    outside, until the voxel count is ``round(ratio * truth voxels)``. The outline stays
    on the nodule's own slices and is one consistent surface, not per-slice noise.
    ``roughness`` (mm) perturbs the distances with smooth noise: a wavy boundary at the
    same volume (the degraded images).
    """
    from scipy.ndimage import distance_transform_edt, gaussian_filter, label

    n_true = int(truth.sum())
    k = int(round(ratio * n_true)) - n_true
    if k == 0 or n_true == 0:
        return truth.copy()
    sampling = (_THICKNESS, spacing, spacing)
    # an empty slice beyond each end: the nodule's ends face the outside along z too
    padded = np.pad(truth, ((1, 1), (0, 0), (0, 0)))
    # among voxels at the same distance, grow toward the nodule's axis first and shrink
    # from the outermost first (spicula tips before their necks, so nothing breaks off)
    _, rows, cols = np.indices(truth.shape)
    rc = np.argwhere(truth)[:, 1:].mean(axis=0)
    radial = np.hypot(rows - rc[0], cols - rc[1]) * spacing
    jitter = 1e-3 * radial / (radial.max() + 1e-12) + 1e-6 * rng.random(truth.shape)
    if roughness:
        field = gaussian_filter(rng.normal(size=truth.shape), (0, 1.5, 1.5))
        jitter = jitter + roughness * field / (field.std() + 1e-12)
    out = truth.copy()
    if k > 0:
        dist = distance_transform_edt(~padded, sampling=sampling)[1:-1] + jitter
        dist[truth] = np.inf
        order = np.argsort(dist, axis=None, kind="stable")[:k]
        out.flat[order] = True
    else:
        dist = distance_transform_edt(padded, sampling=sampling)[1:-1] - jitter
        dist[~truth] = np.inf
        order = np.argsort(dist, axis=None, kind="stable")[:-k]
        out.flat[order] = False
    # one piece: a spiculum cut at its neck, or a stray voxel of the wavy boundary, is
    # dropped, and the count is made up from the voxels nearest to what remains
    pieces, n_pieces = label(out, structure=np.ones((3, 3, 3)))
    if n_pieces > 1:
        sizes = np.bincount(pieces.ravel())[1:]
        out = pieces == 1 + int(np.argmax(sizes))
        allowed = ~out if k > 0 else truth & ~out
        near = distance_transform_edt(~out, sampling=sampling) + 1e-6 * rng.random(truth.shape)
        near[~allowed] = np.inf
        deficit = int(round(ratio * n_true)) - int(out.sum())
        if deficit > 0:
            out.flat[np.argsort(near, axis=None, kind="stable")[:deficit]] = True
    return out


def _reader_outlines(nodule, size, reader_no, degradation, rng) -> tuple[np.ndarray, float]:
    """One reader's outline of one nodule: per-slice masks (full size) and volume ratio.

    Each reader has a volume ratio range (:data:`VOLUME_RATIO`) from which one ratio is
    drawn per nodule; R3 also places the whole nodule a little off (one in-plane shift
    for all its slices). On degraded images everyone's outline is displaced by up to
    1 px more and its boundary is wavy, at the same intended volume.
    """
    spacing = _SPACING * 256 / size
    truth = np.stack(nodule["masks"])
    rows = np.nonzero(truth.any(axis=(0, 2)))[0]
    cols = np.nonzero(truth.any(axis=(0, 1)))[0]
    margin = int(np.ceil(0.3 * nodule["radius"])) + 6
    r0, r1 = max(0, rows[0] - margin), min(size, rows[-1] + margin + 1)
    c0, c1 = max(0, cols[0] - margin), min(size, cols[-1] + margin + 1)
    crop = truth[:, r0:r1, c0:c1]
    lo, hi = VOLUME_RATIO[READERS[reader_no]]
    ratio = float(rng.uniform(lo, hi))
    offset = np.zeros(2, int)
    if reader_no == 2:
        offset += rng.integers(-2, 3, 2)
    if degradation:
        offset += rng.integers(-1, 2, 2)
    base = np.roll(crop, tuple(offset), axis=(1, 2)) if offset.any() else crop
    out = _calibrated_outline(base, ratio, spacing, rng, 0.35 if degradation else 0.0)
    full = np.zeros(truth.shape, bool)
    full[:, r0:r1, c0:c1] = out
    return full.astype(np.uint8), int(full.sum()) / int(truth.sum())


def _ct_dataset(path: str, hu: np.ndarray, meta: dict) -> FileDataset:
    """A CT Image Storage instance whose stored values map to HU through the rescale."""
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = CTImageStorage
    file_meta.MediaStorageSOPInstanceUID = meta["sop"]
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    file_meta.ImplementationClassUID = _IMPLEMENTATION_UID
    file_meta.ImplementationVersionName = "MRDEMO_01"
    ds = FileDataset(path, {}, file_meta=file_meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta["sop"]
    ds.StudyInstanceUID = meta["study"]
    ds.SeriesInstanceUID = meta["series"]
    ds.FrameOfReferenceUID = meta["frame_of_reference"]
    ds.PositionReferenceIndicator = ""
    ds.Modality = "CT"
    # obviously synthetic identifiers, there so the importer's identifier policy is exercised
    ds.PatientName = meta["patient_name"]
    ds.PatientID = meta["patient_id"]
    ds.PatientBirthDate = f"{int(meta['study_date'][:4]) - meta['age']}0615"
    ds.PatientSex = meta["sex"]
    ds.PatientAge = f"{meta['age']:03d}Y"
    ds.PatientWeight = f"{meta['weight']:.1f}"
    ds.AccessionNumber = f"DEMOACC{meta['series_number']:04d}"
    ds.ReferringPhysicianName = "DEMO^REFERRER"
    ds.InstitutionName = "Demo Hospital (synthetic)"
    ds.StudyID = f"DEMO{meta['study_number']:03d}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = meta["study_date"]
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "090000"
    ds.StudyDescription = "CT CHEST (synthetic demo)"
    ds.SeriesDescription = meta["series_description"]
    ds.Manufacturer = meta["scanner"]["manufacturer"]
    ds.ManufacturerModelName = meta["scanner"]["model"]
    ds.DeviceSerialNumber = "DEMO-0001"
    ds.SoftwareVersions = "demo-1.0"
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    low_dose = meta["degradation"] == "low_dose"
    ds.KVP = "100" if low_dose else "120"
    ds.XRayTubeCurrent = 20 if low_dose else 180
    ds.ConvolutionKernel = meta["scanner"]["kernel"]
    if meta["contrast"]:
        ds.ContrastBolusAgent = "Iohexol 350 mgI/ml"
        ds.ContrastBolusRoute = "IV"
    ds.SeriesNumber = meta["series_number"]
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = meta["instance"]
    rows, cols = hu.shape
    spacing = _SPACING * 256 / cols
    ds.ImagePositionPatient = [-cols * spacing / 2, -rows * spacing / 2, meta["z"]]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [spacing, spacing]
    ds.SliceThickness = _THICKNESS
    ds.SpacingBetweenSlices = _THICKNESS
    ds.SliceLocation = meta["z"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    # contrast studies are set up for the mediastinum, the others for the lungs
    ds.WindowCenter, ds.WindowWidth = (40, 400) if meta["contrast"] else (-600, 1500)
    ds.WindowCenterWidthExplanation = "MEDIASTINUM" if meta["contrast"] else "LUNG"
    ds.PixelData = np.round(hu + 1024).astype(np.uint16).tobytes()
    return ds


def _reader_call(rng, reader, truth_class, image, session):
    """A simulated read: the class a reader assigns, the score, and their confidence.

    Each reader sees the true class through Gaussian noise on an ordinal latent scale
    (a standard model of ordinal rating); the planted problems change that noise or add
    a systematic shift, so they show in any honest agreement statistic.
    """
    if image["degradation"]:
        sigma = READER_SIGMA["degraded"]
    elif image["scanner"] is UNRELIABLE_SCANNER:
        sigma = READER_SIGMA["unreliable_scanner"]
    else:
        sigma = READER_SIGMA["clean"]
    shift = 0.0
    progress = session / (N_SESSIONS - 1)
    if reader == DRIFTING_READER:
        # sharp in the first session, sloppier and slightly upgrading by the last
        sigma += DRIFT_SIGMA * progress
        shift += DRIFT_SHIFT * progress
    latent = truth_class + shift + rng.normal(0, sigma)
    call = int(np.clip(np.rint(latent), 0, 3))
    if reader == DRIFTING_READER and rng.random() < DRIFT_LAPSE * progress:
        # a slip to a neighbouring class, never across the scale
        call = 1 if call == 0 else 2 if call == 3 else call + int(rng.choice([-1, 1]))
    if reader == BIASED_READER and call < 2 and rng.random() < BIAS_RATE:
        call = 2
    score = {0: 1, 1: 2, 2: 3 if latent < 2.0 else 4, 3: 5}[call]
    confidence = float(np.clip(1 - abs(latent - call) - 0.1 * sigma, 0.3, 0.99))
    return call, score, round(confidence, 2)


def _box_of(mask) -> list[int]:
    rows, cols = np.nonzero(mask)
    return [
        int(cols.min()),
        int(rows.min()),
        int(cols.max() - cols.min() + 1),
        int(rows.max() - rows.min() + 1),
    ]


def _plan(n_series: int, rng) -> list[dict]:
    """Which series goes on which scanner, which is degraded, and whose it is.

    The degraded series sit on the reliable scanners, so the two planted effects can be
    told apart; the last series is the one written as a multi-frame file.
    """
    n_patients = max(1, int(np.ceil(n_series * 2 / 3)))  # a third of the patients come back
    degraded = {1: "blurred", 4: "low_dose", 9: "blurred"} if n_series >= 10 else {1: "blurred"}
    plan = []
    for k in range(n_series):
        scanner = SCANNERS[2] if k % 4 == 2 else SCANNERS[k % 2]
        deg = degraded.get(k)
        plan.append(
            {
                "k": k,
                "patient": k % n_patients,
                "study_number": k // n_patients,  # 0: baseline, 1: follow-up
                "scanner": scanner,
                "degradation": deg,
                "contrast": bool(rng.random() < 0.4),
                "multiframe": n_series >= 3 and k == n_series - 1,
            }
        )
    return plan


def _pick_errors(images, reads, rng, exclude) -> set[int]:
    """Where the error reader makes a clear-cut error (planted problem d).

    Easy, unambiguous single-frame images (a clear scan, an extreme class) on which the
    rest of the panel already read the truth or a neighbour of it, with at least two of
    them exactly right; the error reader will call the opposite extreme there (a large
    spiculated malignancy "benign", a calcified granuloma "malignant"). Mostly missed
    cancers, the error that matters most, and a few over-calls.
    """
    calls: dict[str, list[int]] = {}
    for r in reads:
        calls.setdefault(r["sop_instance_uid"], []).append(CLASSES.index(r["label"]))
    candidates = {0: [], 3: []}
    for i, im in enumerate(images):
        if not im["easy"] or im["frame"] is not None or im["series_index"] in exclude:
            continue
        panel = calls.get(im["sop"], [])
        exact = sum(c == im["class"] for c in panel)
        if exact >= 2 and all(abs(c - im["class"]) <= 1 for c in panel):
            candidates[im["class"]].append(i)
    picked = set()
    for cls, n in ((3, 6), (0, 4)):
        n = min(n, len(candidates[cls]) // 3)
        if n:
            picked |= set(rng.choice(candidates[cls], n, replace=False).tolist())
    return picked


def _sessions(plan: list[dict], rng) -> dict[int, int]:
    """Deal a reader's series into weekly sessions, each kind of series spread evenly.

    Each reader reads whole series in their own order; dealing degraded, unreliable-scanner
    and clean series round-robin keeps every session a similar mix, so a change across
    sessions is the reader's drift, not a harder worklist.
    """
    strata: dict[str, list[int]] = {}
    for item in plan:
        kind = "degraded" if item["degradation"] else item["scanner"]["model"]
        strata.setdefault(kind, []).append(item["k"])
    session_of, dealt = {}, int(rng.integers(N_SESSIONS))
    for kind in sorted(strata):
        for k in rng.permutation(strata[kind]).tolist():
            session_of[k] = dealt % N_SESSIONS
            dealt += 1
    return session_of


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

    The default, 24 series of 14 slices, gives 336 images (one series of them in one
    multi-frame file). Same seed, same study: UIDs, pixels, reads and file names. The
    planted problems are sized for the default; a few series still import and read the
    same way (for quick tests) but may be too small to hold every planted problem.
    """
    from PIL import Image

    n_series = 24 if n_series is None else int(n_series)
    if n_series < 1 or slices_per_series < 2:
        raise ValueError("n_series must be >= 1 and slices_per_series >= 2")
    rng = np.random.default_rng(seed)
    uids = _Uids(seed)
    root = os.path.abspath(out_dir)
    dicom_dir = os.path.join(root, "dicom")
    label_dir = os.path.join(root, "labels")
    os.makedirs(dicom_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)

    plan = _plan(n_series, rng)
    images: list[dict] = []
    nodules: list[dict] = []
    deck: list[int] = []  # the nodule classes still to deal
    datasets_by_series: dict[int, list] = {}
    base_date = dt.date(2025, 9, 1)
    for item in plan:
        k, p = item["k"], item["patient"]
        prng = np.random.default_rng([seed, 1000 + p])  # one patient, one set of demographics
        meta_base = {
            "patient_id": f"DEMO{p:03d}",
            "patient_name": f"DEMO^PATIENT^{p:03d}",
            "sex": "F" if prng.random() < 0.5 else "M",
            "age": int(prng.integers(38, 84)),
            "weight": float(np.round(prng.uniform(52, 105), 1)),
            "study": uids("study", p, item["study_number"]),
            "study_number": p * 10 + item["study_number"],
            "series": uids("series", k),
            "frame_of_reference": uids("for", k),
            "study_date": (
                base_date + dt.timedelta(days=7 * p + 120 * item["study_number"])
            ).strftime("%Y%m%d"),
            "scanner": item["scanner"],
            "degradation": item["degradation"],
            "contrast": item["contrast"],
            "series_number": k + 1,
            "series_description": "CT CHEST" + (" WITH CONTRAST" if item["contrast"] else ""),
        }
        folder = os.path.join(
            dicom_dir, meta_base["patient_id"], f"study_{item['study_number'] + 1}"
        )
        if not item["multiframe"]:
            folder = os.path.join(folder, f"series_{k + 1:02d}")
        os.makedirs(folder, exist_ok=True)
        # file names in an order unrelated to slice position
        names = [f"IM{n:04d}.dcm" for n in rng.permutation(slices_per_series) + 1]
        datasets_by_series[k] = []
        z0 = -150.0 + 40.0 * rng.random()
        zs = [round(z0 + j * _THICKNESS, 2) for j in range(slices_per_series)]
        series_nodules = _plan_nodules(rng, image_size, zs, k, deck)
        nodule_of = {j: (nod, pos) for nod in series_nodules for pos, j in enumerate(nod["slices"])}
        for j in range(slices_per_series):
            nod, pos = nodule_of[j]
            cls, z, mask = nod["class"], zs[j], nod["masks"][pos]
            hu = _image(
                rng,
                image_size,
                z,
                mask,
                nod["density"],
                item["scanner"],
                item["degradation"],
                item["contrast"],
            )
            sop = uids("sop", k, j)
            meta = {**meta_base, "sop": sop, "instance": j + 1, "z": z}
            path = os.path.join(folder, names[j])
            ds = _ct_dataset(path, hu, meta)
            if not item["multiframe"]:
                ds.save_as(path, enforce_file_format=True)
            datasets_by_series[k].append(ds)
            nod.setdefault("image_idx", []).append(len(images))
            images.append(
                {
                    "sop": sop,
                    "frame": None,
                    "series": meta_base["series"],
                    "study": meta_base["study"],
                    "patient_id": meta_base["patient_id"],
                    "series_index": k,
                    "slice": j,
                    "z": z,
                    "class": cls,
                    "score": _score(nod),
                    "mask": mask,
                    "nodule": nod["id"],
                    "lesion": {
                        "nodule_id": nod["id"],
                        "radius_px": round(nod["radius"], 2),
                        "slice_radius_px": round(nod["slice_radii"][pos], 2),
                        "lobulation": nod["lobulation"],
                        "spiculae": nod["spiculae"],
                        "density_hu": nod["density"],
                        "center_rc": [round(nod["center"][0], 1), round(nod["center"][1], 1)],
                    },
                    "box": _box_of(mask),
                    "scanner": item["scanner"],
                    "degradation": item["degradation"],
                    "contrast": item["contrast"],
                    # unambiguous: a clear image, an extreme class, far from any boundary,
                    # and a cross-section near the nodule's largest (not one of its ends)
                    "easy": item["degradation"] is None
                    and item["scanner"] is not UNRELIABLE_SCANNER
                    and cls in (0, 3)
                    and nod["slice_radii"][pos] >= EASY_SECTION * nod["radius"],
                }
            )
        for nod in series_nodules:
            nod["degradation"] = item["degradation"]
        nodules.extend(series_nodules)
        if item["multiframe"]:
            _write_multiframe(os.path.join(folder, "MF_SERIES.dcm"), item, datasets_by_series, uids)
            # the converter orders frames its own way; each frame names its source instance
            mf = datasets_by_series[k][0]
            frame_of = {
                str(g.ConversionSourceAttributesSequence[0].ReferencedSOPInstanceUID): n
                for n, g in enumerate(mf.PerFrameFunctionalGroupsSequence)
            }
            for im in images:
                if im["series_index"] == k:
                    im["sop"], im["frame"] = mf.SOPInstanceUID, frame_of[im["sop"]]
        report(progress, 0.55 * (k + 1) / n_series, f"wrote series {k + 1}/{n_series}")

    # the ground-truth outline of every lesion, next to truth.json
    os.makedirs(os.path.join(root, "truth_masks"), exist_ok=True)
    for im in images:
        im["key"] = truth_key(im["sop"], im["frame"])
        stem = im["sop"] if im["frame"] is None else f"{im['sop']}_f{im['frame']}"
        im["mask_path"] = f"truth_masks/{stem}.png"
        Image.fromarray(im["mask"].astype(np.uint8)).save(os.path.join(root, im["mask_path"]))

    seg_series, rt_series = 0, min(2, n_series - 1)
    error_idx: set[int] = set()

    by_series: dict[int, list[int]] = {}
    for i, im in enumerate(images):
        by_series.setdefault(im["series_index"], []).append(i)

    # every nodule's true volume, and each reader's 3-D outline of it, drawn in advance
    # (one consistent surface per reader and nodule, never per-slice noise)
    spacing = _SPACING * 256 / image_size
    voxel_ml = spacing * spacing * _THICKNESS / 1000.0
    for nod in nodules:
        nod["voxels"] = int(sum(int(m.sum()) for m in nod["masks"]))
        nod["volume_ml"] = nod["voxels"] * voxel_ml
        nod["diameter_mm"] = float(np.cbrt(6 * nod["volume_ml"] * 1000 / np.pi))
        nod["keys"] = [images[i]["key"] for i in nod["image_idx"]]
    outlines: dict[tuple[str, int], np.ndarray] = {}
    for reader_no, reader in enumerate(READERS):
        orng = np.random.default_rng([seed, 100 + reader_no])
        for nod in nodules:
            stack, _ = _reader_outlines(nod, image_size, reader_no, nod["degradation"], orng)
            missed = (
                reader == MISSING_READER
                and nod["diameter_mm"] < MISS_DIAMETER_MM
                and orng.random() < MISS_PROB
            )
            if missed:  # read, and nothing drawn: an all-zero mask on each of its slices
                stack = np.zeros_like(stack)
                nod["missed_by"] = reader
            for pos, i in enumerate(nod["image_idx"]):
                if not (missed or stack[pos].any()):  # an end eroded away: keep the truth
                    stack[pos] = images[i]["mask"]
                outlines[(reader, i)] = stack[pos]
            nod.setdefault("reader_ratio", {})[reader] = int(stack.sum()) / nod["voxels"]

    reads, boxes, mask_rows = [], [], []
    sessions_by_reader: dict[str, dict[int, int]] = {}
    reader_masks: dict[tuple[str, int], np.ndarray] = {}
    start = dt.datetime(2026, 1, 12, 8, 0)
    for reader_no, reader in enumerate(READERS):
        rrng = np.random.default_rng([seed, reader_no])
        if reader == ERROR_READER:  # read last, so the rest of the panel is known
            error_idx = _pick_errors(images, reads, rng, exclude=(seg_series, rt_series))
        session_of = _sessions(plan, rrng)
        sessions_by_reader[reader] = session_of
        series_order = sorted(by_series, key=lambda s: (session_of[s], rrng.random()))
        minutes = dict.fromkeys(range(N_SESSIONS), 0)
        os.makedirs(os.path.join(label_dir, "masks", reader), exist_ok=True)
        for s in series_order:
            session = session_of[s]
            for i in by_series[s]:
                im = images[i]
                forced = reader == ERROR_READER and i in error_idx
                # the SEG / RTSTRUCT authors outlined every slice of their series
                complete = (reader, s) in (("R1", seg_series), ("R2", rt_series))
                frame = "" if im["frame"] is None else im["frame"]
                common = {"sop_instance_uid": im["sop"], "frame": frame, "reader": reader}
                if not (forced or complete) and rrng.random() < MISSING_RATE:
                    # no class call here (a missing row, never a negative), but the
                    # reader outlined the series as a volume: the outline is still drawn
                    if not complete:
                        when = start + dt.timedelta(
                            days=7 * session + reader_no, hours=reader_no, minutes=minutes[session]
                        )
                        stamp = {"timestamp": when.isoformat(), "session": f"S{session + 1}"}
                        _write_outline(
                            label_dir, reader, im, outlines[(reader, i)], common, stamp, mask_rows
                        )
                    reader_masks[(reader, i)] = outlines[(reader, i)]
                    continue
                call, score, confidence = _reader_call(rrng, reader, im["class"], im, session)
                if forced:
                    call = 3 - im["class"]
                    score, confidence = (1 if call == 0 else 5), 0.9
                minutes[session] += int(rrng.integers(1, 4))
                when = start + dt.timedelta(
                    days=7 * session + reader_no, hours=reader_no, minutes=minutes[session]
                )
                stamp = {"timestamp": when.isoformat(), "session": f"S{session + 1}"}
                reads.append(
                    {
                        **common,
                        "label": CLASSES[call],
                        "score": score,
                        "confidence": confidence,
                        **stamp,
                    }
                )
                mask = outlines[(reader, i)]
                reader_masks[(reader, i)] = mask
                if mask.any():  # a missed nodule gets no box: the reader saw no lesion
                    # each edge of the box is placed by hand, a little off their outline
                    x, y, w, h = _box_of(mask)
                    edge = rrng.normal(0, 0.8, 4) * (2.5 if im["degradation"] else 1)
                    # never off by more than about a third of the outline's extent
                    lim = np.maximum(1.0, 0.3 * np.array([w, h, w, h], float))
                    edge = np.clip(edge, -lim, lim)
                    x0, y0 = max(0.0, x + edge[0]), max(0.0, y + edge[1])
                    x1 = min(float(image_size), max(x0 + 2, x + w + edge[2]))
                    y1 = min(float(image_size), max(y0 + 2, y + h + edge[3]))
                    boxes.append(
                        {
                            **common,
                            "label": CLASSES[call],
                            "x": round(x0, 1),
                            "y": round(y0, 1),
                            "width": round(x1 - x0, 1),
                            "height": round(y1 - y0, 1),
                        }
                    )
                if complete:
                    continue  # their outlines of this series come as DICOM-SEG / RTSTRUCT
                _write_outline(label_dir, reader, im, mask, common, stamp, mask_rows)
        report(progress, 0.55 + 0.3 * (reader_no + 1) / len(READERS), f"simulated {reader}")

    # one reading order for every table: by reader, then by time
    reads.sort(key=lambda r: (r["reader"], r["timestamp"]))
    reads_csv = _write_csv(os.path.join(label_dir, "reads.csv"), READS_COLUMNS, reads)
    boxes_csv = _write_csv(os.path.join(label_dir, "boxes.csv"), BOXES_COLUMNS, boxes)
    masks_csv = _write_csv(os.path.join(label_dir, "masks.csv"), MASKS_COLUMNS, mask_rows)
    recist_rows, recist = _recist_measurements(
        seed, plan, images, nodules, outlines, sessions_by_reader, image_size, start
    )
    measurements_csv = _write_csv(
        os.path.join(label_dir, "measurements.csv"), MEASUREMENTS_COLUMNS, recist_rows
    )

    seg_files, rt_files = [], []
    if not plan[seg_series]["multiframe"]:
        seg_path = os.path.join(label_dir, "seg_R1.dcm")
        masks = [reader_masks[("R1", i)] for i in by_series[seg_series]]
        _write_seg(seg_path, datasets_by_series[seg_series], masks, uids, seg_series, "R1")
        seg_files.append(("R1", seg_path))
    if not plan[rt_series]["multiframe"]:
        rt_path = os.path.join(label_dir, "rtstruct_R2.dcm")
        masks = [reader_masks[("R2", i)] for i in by_series[rt_series]]
        _write_rtstruct(rt_path, datasets_by_series[rt_series], masks, uids, rt_series, "R2")
        rt_files.append(("R2", rt_path))
    report(progress, 0.95, "wrote DICOM-SEG and RTSTRUCT")

    truth_path = os.path.join(root, "truth.json")
    truth = _truth(
        seed, root, images, nodules, error_idx, seg_files, rt_files, seg_series, rt_series
    )
    truth["planted"].update(recist.pop("planted"))
    truth["recist"] = recist
    with open(truth_path, "w") as f:
        json.dump(truth, f, indent=1)
    report(progress, 1.0, f"demo study: {len(images)} images, {len(reads)} reads")
    return DemoStudy(
        root=root,
        dicom_dir=dicom_dir,
        reads_csv=reads_csv,
        boxes_csv=boxes_csv,
        masks_csv=masks_csv,
        measurements_csv=measurements_csv,
        truth_path=truth_path,
        seg_files=seg_files,
        rtstruct_files=rt_files,
    )


def _recist_measurements(seed, plan, images, nodules, outlines, sessions, size, start):
    """The RECIST table (rows of :data:`MEASUREMENTS_COLUMNS`) and its truth.

    Per patient, targets as in :data:`RECIST_MIN_TARGET_MM`; each reader measures each
    target at baseline on the slice where its own outline's long axis is largest, with
    the calipers at that axis's ends (x = column, y = row, pixel edges), and at the
    follow-up on the follow-up series' nodule of the same rank (the same lesion, seen
    again), the caliper centred on it along the reader's baseline direction. Every
    length is a multiple of 0.1 mm and the calipers measure it within 0.01 mm.
    """
    from multireader.stats.recist import lesion_diameters

    rng = np.random.default_rng([seed, 300])
    sp = _SPACING * 256 / size
    series_of = {(it["patient"], it["study_number"]): it["k"] for it in plan}
    by_series: dict[int, list[dict]] = {}
    for nod in nodules:
        by_series.setdefault(nod["series_index"], []).append(nod)
    rows, patients, stamp_minutes = [], {}, {}
    flip, course_no, disappear = None, 0, True

    def truth_long(nod):
        return lesion_diameters(np.stack(nod["masks"]), (sp, sp)).long_axis_mm

    def caliper(centre, unit, length_mm):
        half = np.asarray(unit) * (length_mm / sp) / 2
        a, b = np.asarray(centre) - half, np.asarray(centre) + half
        a, b = np.clip(a, 0, size), np.clip(b, 0, size)
        return [round(float(a[0]), 3), round(float(a[1]), 3)] + [
            round(float(b[0]), 3),
            round(float(b[1]), 3),
        ]

    def row(reader, im, lesion, long_mm, short_mm, tp, session, points):
        reader_no = READERS.index(reader)
        minutes = stamp_minutes.get((reader, session), 0) + int(rng.integers(2, 6))
        stamp_minutes[(reader, session)] = minutes
        when = start + dt.timedelta(
            days=7 * session + reader_no, hours=reader_no + 6, minutes=minutes
        )
        x1, y1, x2, y2 = points if points else ("", "", "", "")
        return {
            "reader": reader,
            "sop_instance_uid": im["sop"],
            "frame": "" if im["frame"] is None else im["frame"],
            "lesion_id": lesion,
            "long_axis_mm": long_mm,
            "short_axis_mm": short_mm,
            "target": "true",
            "site": "lung",
            "new_lesion": "false",
            "timepoint": tp,
            "x1": x1,
            "y1": y1,
            "x2": x2,
            "y2": y2,
            "timestamp": when.isoformat(),
            "session": f"S{session + 1}",
        }

    for p in sorted({it["patient"] for it in plan}):
        k0 = series_of[(p, 0)]
        candidates = [
            (truth_long(nod), nod)
            for nod in by_series[k0]
            if "missed_by" not in nod and len(nod["slices"]) >= 2
        ]
        candidates.sort(key=lambda c: -c[0])
        large = [c for c in candidates if c[0] >= RECIST_MIN_TARGET_MM]
        # else the largest measurable one (10 mm on CT), so every patient is measured
        candidates = large or [c for c in candidates[:1] if c[0] >= 10.0]
        targets = [nod for _, nod in candidates[:RECIST_MAX_TARGETS]]
        if not targets:
            continue
        k1 = series_of.get((p, 1))
        course = None
        if k1 is not None:
            if flip is None:
                flip, course = p, ("flip", None, False)
            else:
                course = RECIST_COURSES[course_no % len(RECIST_COURSES)]
                course_no += 1
        entry = {
            "patient_id": images[targets[0]["image_idx"][0]]["patient_id"],
            "study_instance_uids": [
                images[by_series[k][0]["image_idx"][0]]["study"] for k in (k0, k1) if k is not None
            ],
            "targets": {},
            "course": None if course is None else course[0],
            "factor": None if course is None else (course[1] if course[1] else RECIST_FLIP),
            "sums": {},
            "percent_change": {},
        }
        fu_nodules = by_series[k1] if k1 is not None else []
        for j, nod in enumerate(targets):
            lesion = f"L{j + 1}"
            fu = fu_nodules[j % len(fu_nodules)] if fu_nodules else None
            entry["targets"][lesion] = [nod["id"]] + ([fu["id"]] if fu else [])
            entry.setdefault("disappeared", [])
            disappears = bool(j == 1 and course and course[2] and disappear)
            for reader in READERS:
                stack = np.stack([outlines[(reader, i)] for i in nod["image_idx"]])
                d = lesion_diameters(stack, (sp, sp))
                drift = reader == RECIST_DRIFT_READER
                s0 = sessions[reader][k0]
                scale = 1 + RECIST_DRIFT_PER_SESSION * s0 if drift else 1.0
                noise = 1.0 + RECIST_NOISE * float(rng.standard_normal())
                long0 = round(d.long_axis_mm * noise * scale, 1)
                short0 = min(long0, round(d.short_axis_mm * noise * scale, 1))
                (r1, c1), (r2, c2) = d.long_axis_ends
                a, b = np.array([c1 + 0.5, r1 + 0.5]), np.array([c2 + 0.5, r2 + 0.5])
                unit = (b - a) / (np.hypot(*(b - a)) or 1.0)
                im0 = images[nod["image_idx"][d.slice_index]]
                rows.append(
                    row(
                        reader, im0, lesion, long0, short0, 0, s0, caliper((a + b) / 2, unit, long0)
                    )
                )
                sums = entry["sums"].setdefault(reader, [0.0, 0.0] if fu else [0.0])
                sums[0] = round(sums[0] + long0, 1)
                if fu is None:
                    continue
                s1 = sessions[reader][k1]
                pos = int(np.argmax(fu["slice_radii"]))
                im1 = images[fu["image_idx"][pos]]
                if disappears:
                    long1 = short1 = 0.0
                    points = None
                elif course[0] == "flip":
                    if drift:  # the drift reader's own size, drifted to its follow-up session
                        base = long0 / scale
                        long1 = round(
                            base * RECIST_FLIP[reader] * (1 + RECIST_DRIFT_PER_SESSION * s1), 1
                        )
                    else:
                        long1 = round(long0 * RECIST_FLIP[reader], 1)
                    short1 = min(long1, round(short0 * RECIST_FLIP[reader], 1))
                else:
                    scale1 = 1 + RECIST_DRIFT_PER_SESSION * s1 if drift else 1.0
                    noise1 = 1.0 + RECIST_NOISE * float(rng.standard_normal())
                    base = long0 / scale
                    long1 = round(base * course[1] * noise1 * scale1, 1)
                    short1 = min(long1, round(short0 / scale * course[1] * noise1 * scale1, 1))
                if not disappears:
                    centre = np.array([fu["center"][1] + 0.5, fu["center"][0] + 0.5])
                    points = caliper(centre, unit, long1)
                rows.append(row(reader, im1, lesion, long1, short1, 1, s1, points))
                sums[1] = round(sums[1] + long1, 1)
        if course and course[2] and disappear and len(targets) > 1:
            disappear = False  # once: one target disappears in the whole study
            entry["disappeared"] = ["L2"]
        for reader, sums in entry["sums"].items():
            if len(sums) == 2:
                entry["percent_change"][reader] = round(100 * (sums[1] / sums[0] - 1), 2)
        patients[entry["patient_id"]] = entry
    flip_entry = None
    if flip is not None:
        flip_entry = next(e for e in patients.values() if e["course"] == "flip")
        flip_entry = {
            "patient_id": flip_entry["patient_id"],
            "study_instance_uids": flip_entry["study_instance_uids"],
            "percent_change": flip_entry["percent_change"],
            "responses": {
                r: "PR" if v <= -30 else "SD" for r, v in flip_entry["percent_change"].items()
            },
            "parameters": {"factor": RECIST_FLIP, "threshold": "PR at a sum <= -30 %"},
        }
    rows.sort(key=lambda r: (r["reader"], r["timestamp"]))
    return rows, {
        "columns": MEASUREMENTS_COLUMNS,
        "parameters": {
            "min_target_mm": RECIST_MIN_TARGET_MM,
            "max_targets": RECIST_MAX_TARGETS,
            "noise": RECIST_NOISE,
            "courses": [list(c) for c in RECIST_COURSES],
        },
        "patients": patients,
        "planted": {
            "recist_drift_reader": {
                "reader": RECIST_DRIFT_READER,
                "parameters": {
                    "per_session": RECIST_DRIFT_PER_SESSION,
                    "factor": "1 + per_session x session number (S1 = 0) of the reading",
                    "sessions": [f"S{n + 1}" for n in range(N_SESSIONS)],
                },
            },
            "recist_flip_patient": flip_entry,
        },
    }


def _write_outline(label_dir, reader, im, mask, common, stamp, mask_rows) -> None:
    """One slice of a reader's 3-D outline: a PNG and its row in masks.csv."""
    from PIL import Image

    stem = im["sop"] if im["frame"] is None else f"{im['sop']}_f{im['frame']}"
    rel = f"masks/{reader}/{stem}.png"
    Image.fromarray(mask).save(os.path.join(label_dir, rel))
    mask_rows.append({**common, "mask_path": rel, **stamp})


def _truth(
    seed, root, images, nodules, error_idx, seg_files, rt_files, seg_series, rt_series
) -> dict:
    """What was planted, where, and with which parameters (keys: :func:`truth_key`)."""
    rel = os.path.relpath
    return {
        "seed": seed,
        "classes": CLASSES,
        "score_range": LABEL_SCHEMA["score_range"],
        "readers": READERS,
        "reader_model": {
            "latent_sigma": READER_SIGMA,
            "missing_rate": MISSING_RATE,
            "description": "call = round(class + shift + N(0, sigma)), clipped to the scale",
            "volume_ratio_range": {r: list(v) for r, v in VOLUME_RATIO.items()},
            "outline": "one 3-D distance-based dilation or erosion per reader and nodule, "
            "calibrated to a volume ratio drawn from volume_ratio_range; R3 also shifts the "
            "whole nodule by up to 2 px, and on degraded images every outline is shifted by "
            "up to 1 px more with a wavy boundary",
        },
        "nodules": {
            nod["id"]: {
                "series_index": nod["series_index"],
                "series_instance_uid": images[nod["image_idx"][0]]["series"],
                "slice_indices": nod["slices"],
                "keys": nod["keys"],
                "class": CLASSES[nod["class"]],
                "radius_px": round(nod["radius"], 2),
                "z_semi_axis_mm": round(nod["z_semi_axis_mm"], 2),
                "center_rc": [round(nod["center"][0], 1), round(nod["center"][1], 1)],
                "voxels": nod["voxels"],
                "volume_ml": round(nod["volume_ml"], 5),
                "equivalent_diameter_mm": round(nod["diameter_mm"], 3),
                "reader_volume_ratio": {r: round(v, 6) for r, v in nod["reader_ratio"].items()},
                "missed_by": [nod["missed_by"]] if "missed_by" in nod else [],
            }
            for nod in nodules
        },
        "images": {
            im["key"]: {
                "sop_instance_uid": im["sop"],
                "frame": im["frame"],
                "dicom_key": f"{im['sop']}:{im['frame'] or 0}",
                "series_instance_uid": im["series"],
                "study_instance_uid": im["study"],
                "slice_index": im["slice"],
                "z_mm": im["z"],
                "class": CLASSES[im["class"]],
                "score": im["score"],
                "manufacturer": im["scanner"]["manufacturer"],
                "model": im["scanner"]["model"],
                "degradation": im["degradation"],
                "contrast": im["contrast"],
                "easy": im["easy"],
                "nodule_id": im["nodule"],
                "lesion": im["lesion"],
                "box": im["box"],
                "lesion_pixels": int(im["mask"].sum()),
                "mask_path": im["mask_path"],
            }
            for im in images
        },
        "planted": {
            "degraded_images": {
                "keys": [im["key"] for im in images if im["degradation"]],
                "kinds": sorted({im["degradation"] for im in images if im["degradation"]}),
                "parameters": {
                    "blurred_gaussian_sigma_px": 2.6,
                    "low_dose_noise_factor": 5.0,
                    "reader_sigma": READER_SIGMA["degraded"],
                },
            },
            "biased_reader": {
                "reader": BIASED_READER,
                "toward": "suspicious",
                "parameters": {"rate": BIAS_RATE, "applies_to": ["benign", "probably_benign"]},
            },
            "drifting_reader": {
                "reader": DRIFTING_READER,
                "sessions": [f"S{n + 1}" for n in range(N_SESSIONS)],
                "parameters": {
                    "extra_sigma_by_last_session": DRIFT_SIGMA,
                    "upward_shift_by_last_session": DRIFT_SHIFT,
                    "slip_rate_by_last_session": DRIFT_LAPSE,
                    "growth": "linear in session number",
                },
            },
            "clear_cut_errors": {
                "reader": ERROR_READER,
                "keys": sorted(images[i]["key"] for i in error_idx),
                "parameters": {"call": "the opposite extreme of the scale"},
            },
            "unreliable_scanner": {
                "manufacturer": UNRELIABLE_SCANNER["manufacturer"],
                "model": UNRELIABLE_SCANNER["model"],
                "parameters": {
                    "reader_sigma": READER_SIGMA["unreliable_scanner"],
                    "image_noise_hu": UNRELIABLE_SCANNER["noise"],
                },
            },
            "boundary_reader": {
                "reader": BOUNDARY_READER,
                "parameters": {
                    "volume_ratio_range": list(VOLUME_RATIO[BOUNDARY_READER]),
                    "method": "3-D distance-based dilation calibrated per nodule",
                },
                "volume_ratios": {
                    nod["id"]: round(nod["reader_ratio"][BOUNDARY_READER], 6) for nod in nodules
                },
                "mean_volume_ratio": round(
                    float(np.mean([nod["reader_ratio"][BOUNDARY_READER] for nod in nodules])), 6
                ),
            },
            "missing_reader": {
                "reader": MISSING_READER,
                "parameters": {
                    "diameter_threshold_mm": MISS_DIAMETER_MM,
                    "miss_probability": MISS_PROB,
                    "diameter": "volume-equivalent sphere diameter, (6 V / pi) ** (1 / 3)",
                },
                "n_small": sum(nod["diameter_mm"] < MISS_DIAMETER_MM for nod in nodules),
                "missed": [nod["id"] for nod in nodules if "missed_by" in nod],
                "keys": sorted(k for nod in nodules if "missed_by" in nod for k in nod["keys"]),
            },
        },
        "label_files": {
            "seg": [
                {"reader": r, "path": rel(p, root), "series_index": seg_series}
                for r, p in seg_files
            ],
            "rtstruct": [
                {"reader": r, "path": rel(p, root), "series_index": rt_series} for r, p in rt_files
            ],
        },
    }


def _write_csv(path: str, columns: list[str], rows: list[dict]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_multiframe(path, item, datasets_by_series, uids) -> None:
    """One series as a Legacy Converted Enhanced CT file (per-frame plane positions).

    highdicom's converter builds the functional groups from the single-frame instances,
    so each frame carries its own PlanePositionSequence and the pixel transformation.
    """
    import highdicom as hd

    k = item["k"]
    sources = datasets_by_series[k]
    mf = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=sources,
        series_instance_uid=uids("multiframe-series", k),
        series_number=sources[0].SeriesNumber,
        sop_instance_uid=uids("multiframe", k),
        instance_number=1,
    )
    mf.BodyPartExamined = "CHEST"  # General Series; the converter leaves it out
    mf.save_as(path, enforce_file_format=True)
    datasets_by_series[k] = [mf]


def _write_seg(path, source_datasets, masks, uids, k, reader) -> None:
    """The reader's outlines of one series as a DICOM-SEG referencing the CT instances."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    order = np.argsort([float(d.ImagePositionPatient[2]) for d in source_datasets])
    sources = [source_datasets[i] for i in order]
    pixel = np.stack([masks[i] for i in order]).astype(bool)
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
        manufacturer_model_name=f"synthetic reader {reader}",
        software_versions="0.1",
        device_serial_number="0",
        content_creator_name=f"DEMO^{reader}",
        content_label="LESION",
    )
    seg.save_as(path)


def _write_rtstruct(path, source_datasets, masks, uids, k, reader) -> None:
    """The reader's outlines of one series as an RTSTRUCT: closed planar contours in
    patient millimetres, each referencing the CT image it was drawn on."""
    from skimage.measure import find_contours

    first = source_datasets[0]
    sop = uids("rtstruct", k)
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = pydicom.uid.RTStructureSetStorage
    file_meta.MediaStorageSOPInstanceUID = sop
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    file_meta.ImplementationClassUID = _IMPLEMENTATION_UID
    ds = FileDataset(path, {}, file_meta=file_meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = pydicom.uid.RTStructureSetStorage
    ds.SOPInstanceUID = sop
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
    ds.OperatorsName = f"DEMO^{reader}"
    ds.StructureSetLabel = f"{reader} lesions"
    ds.StructureSetDate = "20260301"
    ds.StructureSetTime = "120000"

    images = []
    for src in source_datasets:
        ref = pydicom.Dataset()
        ref.ReferencedSOPClassUID = src.SOPClassUID
        ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
        images.append(ref)
    series_ref = pydicom.Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    series_ref.ContourImageSequence = Sequence(images)
    study_ref = pydicom.Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    for_ref = pydicom.Dataset()
    for_ref.FrameOfReferenceUID = first.FrameOfReferenceUID
    for_ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([for_ref])

    roi = pydicom.Dataset()
    roi.ROINumber = 1
    roi.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
    roi.ROIName = "lesion"
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = Sequence([roi])
    contours = []
    for src, mask in zip(source_datasets, masks, strict=True):
        pos = np.asarray(src.ImagePositionPatient, float)
        row_mm, col_mm = (float(v) for v in src.PixelSpacing)
        # pad so a lesion touching the border still closes
        for c in find_contours(np.pad(mask.astype(float), 1), 0.5):
            if len(c) < 4:
                continue
            c = c - 1
            # (row, col) -> patient mm for an axial slice: x grows with column, y with row
            xyz = np.column_stack(
                [pos[0] + c[:, 1] * col_mm, pos[1] + c[:, 0] * row_mm, np.full(len(c), pos[2])]
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
    obs.ROIInterpreter = f"DEMO^{reader}"
    ds.RTROIObservationsSequence = Sequence([obs])
    ds.save_as(path, enforce_file_format=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m multireader.io.demo OUT_DIR [--seed N] [--series N] [--size PX]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Write the synthetic multi-reader demo study.")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--series", type=int, default=None, help="number of series (24)")
    parser.add_argument("--size", type=int, default=256, help="image rows and columns")
    args = parser.parse_args(argv)
    study = generate_demo_study(
        args.out_dir,
        seed=args.seed,
        n_series=args.series,
        image_size=args.size,
        progress=lambda f, m: print(f"{f:4.0%} {m}", flush=True),
    )
    print(json.dumps({k: v for k, v in study.__dict__.items() if k != "label_schema"}, indent=1))


if __name__ == "__main__":
    main()
