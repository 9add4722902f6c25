"""Series geometry of a DICOM series, and 3-D label volumes placed exactly on it.

Readers outline lesions either slice by slice or as one 3-D label file from nnU-Net,
MONAI, 3D Slicer or ITK-SNAP (NIfTI or NRRD). A 3-D file is only useful here if every
one of its voxels can be put on one pixel of one frame of the series the samples show.
Tools disagree on how they lay a DICOM series out as an array (dcm2niix reverses the
rows, MONAI reorients to RAS, Slicer writes LPS), so this module never trusts an axis
order or a file name: it compares the file's affine with the series' own geometry and
accepts only an exact match up to a permutation and flips of the axes. Anything else
(a resampled, cropped, shifted or tilted grid) is refused with a message that says
which axis differs and by how much, since a silently misplaced label corrupts every
agreement statistic computed from it.

Pure module: numpy, nibabel and pynrrd only. It reads files and writes nothing.

Conventions
-----------
* Patient coordinates are DICOM LPS (x to the patient's left, y posterior, z superior),
  in mm, as in ImagePositionPatient (DICOM PS3.3 C.7.6.2.1.1).
* Arrays returned here are indexed ``[slice, row, col]`` ("zyx"): ``volume[k]`` is the
  2-D frame with ``slice_index == k``, laid out as the frame's own pixels (rows top to
  bottom, columns left to right), i.e. the same layout as a per-slice 2-D mask.
* Slices are ordered by their position projected on the normal
  ``row_cosine x col_cosine``, ascending, as the importer assigns ``slice_index``.
* :meth:`SeriesGeometry.affine_lps` and :meth:`SeriesGeometry.affine_ras` use the
  NIfTI/ITK voxel convention ``(i, j, k) = (col, row, slice)``, so
  ``nibabel.Nifti1Image(volume.transpose(2, 1, 0), geometry.affine_ras())`` is a
  correct NIfTI file of a ``[slice, row, col]`` volume.
  :meth:`SeriesGeometry.affine_lps_zyx` is the same mapping for ``[slice, row, col]``
  indices.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from multireader.errors import MultireaderError

__all__ = [
    "DEFAULT_TOLERANCE_MM",
    "SeriesGeometry",
    "VolumeError",
    "VolumeFormatError",
    "VolumeGeometryError",
    "label_instances",
    "load_label_volume",
    "series_geometry",
]

#: Largest displacement (mm) of any voxel centre that still counts as "the same place".
#: DICOM positions are decimal strings rounded to a few digits and NIfTI stores float32,
#: so exact equality never holds; 0.01 mm is far below any CT/MR voxel (>= 0.1 mm) and
#: above the rounding of positions written with 3 or more decimals.
DEFAULT_TOLERANCE_MM = 0.01

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse
_AXIS_NAMES = ("slice", "row", "column")


class VolumeError(MultireaderError):
    """A series or a label volume that cannot be used as a 3-D volume."""


class VolumeGeometryError(VolumeError):
    """Geometry that is missing, irregular, or does not match the series grid."""


class VolumeFormatError(VolumeError):
    """A label file that cannot be read, or whose values are not integer labels."""


# --- series geometry ---------------------------------------------------------------


@dataclass(frozen=True)
class SeriesGeometry:
    """The voxel grid of one DICOM series, in DICOM LPS patient coordinates (mm).

    Built from the per-frame Image Plane module (DICOM PS3.3 C.7.6.2.1.1): a pixel at
    row ``r``, column ``c`` of the slice at ``positions[k]`` has its centre at
    ``positions[k] + c * pixel_spacing[1] * row_cosine + r * pixel_spacing[0] *
    col_cosine``. Note the crossing: the *row* cosine is the direction along a row,
    i.e. of increasing *column* index, and it is scaled by the *column* spacing.

    Attributes:
        origin: ImagePositionPatient of slice 0 (centre of its first pixel).
        row_cosine: ImageOrientationPatient[0:3], direction of increasing column index.
        col_cosine: ImageOrientationPatient[3:6], direction of increasing row index.
        normal: ``row_cosine x col_cosine``; slices are sorted ascending along it, so it
            is also the direction of increasing slice index.
        pixel_spacing: (row spacing, column spacing) in mm, as DICOM PixelSpacing:
            row spacing is the distance between adjacent rows.
        slice_spacing: distance between adjacent slice centres along the normal (mm),
            measured from the positions (never SliceThickness, which is the slab
            width and differs from the spacing for overlapping or gapped series).
        shape: (slices, rows, columns).
        positions: (slices, 3) ImagePositionPatient of every slice, in slice order.
        order: for each slice, the index of its entry in the input sequences.
    """

    origin: tuple[float, float, float]
    row_cosine: tuple[float, float, float]
    col_cosine: tuple[float, float, float]
    normal: tuple[float, float, float]
    pixel_spacing: tuple[float, float]
    slice_spacing: float
    shape: tuple[int, int, int]
    positions: tuple[tuple[float, float, float], ...]
    order: tuple[int, ...] = ()

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """(slice spacing, row spacing, column spacing) in mm, the array axis order."""
        return (self.slice_spacing, self.pixel_spacing[0], self.pixel_spacing[1])

    def axis_vectors_lps(self) -> np.ndarray:
        """(3, 3) array: row ``a`` is the LPS step (mm) of one voxel along array axis
        ``a`` of a ``[slice, row, col]`` volume."""
        return np.array(
            [
                np.asarray(self.normal) * self.slice_spacing,
                np.asarray(self.col_cosine) * self.pixel_spacing[0],
                np.asarray(self.row_cosine) * self.pixel_spacing[1],
            ]
        )

    def affine_lps_zyx(self) -> np.ndarray:
        """4x4 affine from ``(slice, row, col, 1)`` to LPS mm."""
        affine = np.eye(4)
        affine[:3, :3] = self.axis_vectors_lps().T
        affine[:3, 3] = self.origin
        return affine

    def affine_lps(self) -> np.ndarray:
        """4x4 affine from NIfTI/ITK voxel indices ``(i, j, k) = (col, row, slice)`` to
        LPS mm, the convention of ITK images and of NRRD files in LPS space."""
        affine = np.eye(4)
        affine[:3, :3] = self.axis_vectors_lps()[::-1].T
        affine[:3, 3] = self.origin
        return affine

    def affine_ras(self) -> np.ndarray:
        """4x4 affine from ``(i, j, k) = (col, row, slice)`` to RAS mm: the NIfTI
        qform/sform of this series written without reordering (as ITK, and so nnU-Net,
        write it). NIfTI world space is RAS+ (NIfTI-1 header, qform/sform fields)."""
        return _LPS_FROM_RAS @ self.affine_lps()

    def voxel_lps(self, index_zyx) -> np.ndarray:
        """LPS mm of voxel centre(s) at ``[slice, row, col]`` index(es), shape (..., 3)."""
        index = np.asarray(index_zyx, dtype=float)
        return index @ self.axis_vectors_lps() + np.asarray(self.origin)


def _is_seq(value) -> bool:
    return isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, bytes))


def _per_slice(value, n: int, width: int | None) -> list:
    """``value`` as one entry per slice: shared values are repeated."""
    if width is None:  # a scalar per slice (rows, columns)
        if _is_seq(value):
            if len(value) != n:
                raise VolumeGeometryError(f"expected {n} values, one per slice, got {len(value)}")
            return list(value)
        return [value] * n
    if _is_seq(value) and len(value) == n and any(v is None or _is_seq(v) for v in value):
        return list(value)
    return [value] * n


def _vector(value, width: int) -> np.ndarray | None:
    if value is None or not _is_seq(value) or len(value) != width:
        return None
    try:
        vec = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return vec if np.all(np.isfinite(vec)) else None


def series_geometry(
    image_positions: Sequence[Sequence[float]],
    image_orientation: Sequence[float] | Sequence[Sequence[float]],
    pixel_spacing: Sequence[float] | Sequence[Sequence[float]],
    rows: int | Sequence[int],
    columns: int | Sequence[int],
    *,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    fallback_thickness: float | None = None,
    slice_ids: Sequence[str] | None = None,
) -> SeriesGeometry:
    """The regular voxel grid of a series, or a :class:`VolumeGeometryError` saying why
    the frames do not form one.

    The geometry is that of DICOM PS3.3 C.7.6.2.1.1 (Image Plane module). One entry of
    ``image_positions`` per frame, in any order; ``image_orientation``,
    ``pixel_spacing``, ``rows`` and ``columns`` are either shared or one per frame (then
    they must agree). Slices are sorted along the normal ``row x col`` as the importer's
    ``slice_index``; :attr:`SeriesGeometry.order` maps slices back to input entries.

    The slice spacing is measured from the positions (first to last slice along the
    normal, divided by the number of gaps, as ITK and dcm2niix measure it, so their
    files land on this grid), not taken from SliceThickness, which is the
    reconstructed slab width and differs from the spacing in overlapping or gapped
    reconstructions. A 3-D array is only a faithful picture of the series if the slices
    are evenly spaced, parallel, and stacked along the normal, so this refuses:

    * missing or malformed geometry on any frame (the frame is named);
    * orientation, pixel spacing, rows or columns that differ between frames;
    * two frames at the same position along the normal (duplicates, mixed series);
    * uneven spacing (the gap that differs and by how many mm; often a missing slice);
    * positions that step sideways (gantry tilt; the angle in degrees).

    A single frame is accepted only with ``fallback_thickness`` (e.g. SpacingBetween
    Slices or SliceThickness), used as its slice spacing; without it there is no
    spacing to measure and the call is refused rather than guessing 1 mm.

    Args:
        tolerance_mm: largest displacement (mm) of any voxel centre from the regular
            grid that is still accepted; absolute, since what matters is where a voxel
            lands, not the spacing's relative error.
        slice_ids: optional names for the frames (sample ids, SOP UIDs) used in error
            messages; by default frames are named by their input index.
    """
    tol = float(tolerance_mm)
    if not tol > 0:
        raise ValueError(f"tolerance_mm must be positive, got {tolerance_mm!r}")
    n = len(image_positions)
    if n == 0:
        raise VolumeGeometryError("no slices: the series has no frames with a position")

    def name(i: int) -> str:
        if slice_ids is not None:
            return f"frame {i} ({slice_ids[i]})"
        return f"frame {i}"

    orients = _per_slice(image_orientation, n, 6)
    spacings = _per_slice(pixel_spacing, n, 2)
    rows_l, cols_l = _per_slice(rows, n, None), _per_slice(columns, n, None)

    # 1. every frame has complete geometry
    problems = []
    pos, ori, spa = [], [], []
    for i in range(n):
        missing = []
        p, o, s = (
            _vector(image_positions[i], 3),
            _vector(orients[i], 6),
            _vector(spacings[i], 2),
        )
        if p is None:
            missing.append(f"image position {image_positions[i]!r}")
        if o is None or np.any(np.abs(np.linalg.norm(o.reshape(2, 3), axis=1) - 1) > 1e-3):
            missing.append(f"image orientation {orients[i]!r}")
        if s is None or np.any(s <= 0):
            missing.append(f"pixel spacing {spacings[i]!r}")
        for label, v in (("rows", rows_l[i]), ("columns", cols_l[i])):
            if v is None or not float(v).is_integer() or int(v) <= 0:
                missing.append(f"{label} {v!r}")
        if missing:
            problems.append(f"{name(i)}: " + ", ".join(missing))
        pos.append(p)
        ori.append(o)
        spa.append(s)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise VolumeGeometryError(
            "missing or malformed geometry, cannot place the frames in 3-D: "
            + "; ".join(problems[:5])
            + more
        )

    # 2. one orientation, spacing and matrix for all frames
    row_cos, col_cos = ori[0][:3], ori[0][3:]
    row_cos, col_cos = row_cos / np.linalg.norm(row_cos), col_cos / np.linalg.norm(col_cos)
    dot = float(row_cos @ col_cos)
    if abs(dot) > 1e-3:
        raise VolumeGeometryError(
            f"{name(0)}: the row and column direction cosines are not perpendicular "
            f"({math.degrees(math.acos(max(-1.0, min(1.0, dot)))):.2f} degrees apart)"
        )
    extent = max(int(rows_l[0]) * spa[0][0], int(cols_l[0]) * spa[0][1])
    for i in range(1, n):
        for label, a, b in (
            ("row", row_cos, ori[i][:3] / np.linalg.norm(ori[i][:3])),
            ("column", col_cos, ori[i][3:] / np.linalg.norm(ori[i][3:])),
        ):
            angle = _angle(a, b)
            if math.sin(angle) * extent > tol:
                raise VolumeGeometryError(
                    f"orientations differ across slices: the {label} direction of {name(i)} "
                    f"is {math.degrees(angle):.3f} degrees from that of {name(0)} "
                    f"({ori[i].tolist()} vs {ori[0].tolist()})"
                )
        for label, a, b in (
            ("row spacing", spa[0][0], spa[i][0]),
            ("column spacing", spa[0][1], spa[i][1]),
        ):
            if abs(a - b) * extent / min(a, b) > tol:
                raise VolumeGeometryError(
                    f"pixel spacing differs across slices: {label} {b:.4f} mm in {name(i)}, "
                    f"{a:.4f} mm in {name(0)}"
                )
        for label, a, b in (("rows", rows_l[0], rows_l[i]), ("columns", cols_l[0], cols_l[i])):
            if int(a) != int(b):
                raise VolumeGeometryError(
                    f"matrix size differs across slices: {int(b)} {label} in {name(i)}, "
                    f"{int(a)} in {name(0)}"
                )
    normal = np.cross(row_cos, col_cos)
    normal /= np.linalg.norm(normal)
    n_rows, n_cols = int(rows_l[0]), int(cols_l[0])
    row_spacing, col_spacing = float(spa[0][0]), float(spa[0][1])

    # 3. sort along the normal, as slice_index is assigned
    positions = np.array(pos)
    proj = positions @ normal
    order = np.argsort(proj, kind="stable")
    positions, proj = positions[order], proj[order]

    def sname(k: int) -> str:
        return f"slice {k} ({name(int(order[k]))}, {proj[k]:.2f} mm along the normal)"

    if n == 1:
        if fallback_thickness is None or not float(fallback_thickness) > 0:
            raise VolumeGeometryError(
                f"a single slice ({name(0)}) has no slice spacing to measure; pass "
                "fallback_thickness (e.g. SpacingBetweenSlices or SliceThickness) to use it"
            )
        slice_spacing = float(fallback_thickness)
    else:
        gaps = np.diff(proj)
        dup = np.flatnonzero(gaps <= tol)
        if dup.size:
            k = int(dup[0])
            raise VolumeGeometryError(
                f"duplicate slice positions: {sname(k)} and {sname(k + 1)} are "
                f"{gaps[k]:.4f} mm apart along the normal ({dup.size} such pair(s)); "
                "the frames may mix two series or repeat a slice"
            )
        # the grid runs from the first to the last slice, as ITK's ImageSeriesReader and
        # dcm2niix lay it out, so their files land on it exactly
        idx = np.arange(n, dtype=float)
        step = (positions[-1] - positions[0]) / (n - 1)
        slice_spacing = float(step @ normal)

        # 4. even spacing along the normal
        fitted = proj[0] + idx * slice_spacing
        if np.abs(proj - fitted).max() > tol:
            typical = float(np.median(gaps))
            k = int(np.argmax(np.abs(gaps - typical)))
            odd = np.flatnonzero(np.abs(gaps - typical) > tol)
            hint = ""
            ratio = gaps[k] / typical
            if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1:
                hint = f"; {round(ratio) - 1} slice(s) missing?"
            raise VolumeGeometryError(
                f"uneven slice spacing: the gap between {sname(k)} and {sname(k + 1)} is "
                f"{gaps[k]:.2f} mm where the typical gap is {typical:.2f} mm (differs by "
                f"{abs(gaps[k] - typical):.2f} mm; {odd.size} of {n - 1} gaps differ by more "
                f"than {tol:g} mm{hint})"
            )

        # 5. the stack runs along the normal (no gantry tilt, no sideways steps)
        in_plane = step - (step @ normal) * normal
        drift = float(np.linalg.norm(in_plane)) * (n - 1)
        rel = positions - positions[0]
        sideways = rel - np.outer(rel @ normal, normal)
        off = np.linalg.norm(sideways, axis=1)
        if drift > tol:
            tilt = math.degrees(math.atan2(float(np.linalg.norm(in_plane)), abs(slice_spacing)))
            raise VolumeGeometryError(
                f"slice positions are not along the slice normal: they step "
                f"{np.linalg.norm(in_plane):.2f} mm sideways per {slice_spacing:.2f} mm slice, "
                f"a tilt of {tilt:.2f} degrees (gantry tilt?) from {sname(0)} to "
                f"{sname(n - 1)}, {off.max():.2f} mm in all; resample the series "
                "(e.g. dcm2niix's tilt correction) before using it as a volume"
            )
        line = sideways - np.outer(idx, in_plane)
        worst = int(np.argmax(np.linalg.norm(line, axis=1)))
        if np.linalg.norm(line[worst]) > tol:
            raise VolumeGeometryError(
                f"{sname(worst)} lies {np.linalg.norm(line[worst]):.2f} mm sideways of the "
                "line from the first to the last slice"
            )

    return SeriesGeometry(
        origin=tuple(float(v) for v in positions[0]),
        row_cosine=tuple(float(v) for v in row_cos),
        col_cosine=tuple(float(v) for v in col_cos),
        normal=tuple(float(v) for v in normal),
        pixel_spacing=(row_spacing, col_spacing),
        slice_spacing=slice_spacing,
        shape=(n, n_rows, n_cols),
        positions=tuple(tuple(float(v) for v in p) for p in positions),
        order=tuple(int(i) for i in order),
    )


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (radians) between two vectors."""
    cos = float(a @ b) / (float(np.linalg.norm(a)) * float(np.linalg.norm(b)))
    return math.acos(max(-1.0, min(1.0, cos)))


# --- label files -------------------------------------------------------------------


def _read_nifti(path: str, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Data and LPS affine of a NIfTI file.

    NIfTI-1 header spec: world coordinates are RAS+; the sform (method 3, sform_code >
    0) takes precedence over the qform (method 2, qform_code > 0), which is what
    nibabel's ``affine`` returns. With both codes 0 (method 1, the ANALYZE fallback)
    the file has no orientation at all and is refused. When both are set and
    disagree, tools disagree on which wins (ITK may prefer the qform), so a label's
    place would depend on the reader's tool: refused too.
    """
    import nibabel as nib

    try:
        img = nib.load(path)
    except FileNotFoundError as exc:
        raise VolumeFormatError(f"label file not found: {path}") from exc
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise VolumeFormatError(f"cannot read {path} as NIfTI: {exc}") from exc
    header = img.header
    sform, s_code = header.get_sform(coded=True)
    qform, q_code = header.get_qform(coded=True)
    s_code, q_code = int(s_code or 0), int(q_code or 0)
    if s_code == 0 and q_code == 0:
        raise VolumeGeometryError(
            f"{os.path.basename(path)} has no orientation (NIfTI qform_code and sform_code "
            "are both 0), so its voxels cannot be placed on the series"
        )
    data = np.asanyarray(img.dataobj)
    if s_code > 0 and q_code > 0:
        shape = np.array(data.shape[:3] + (1,) * (3 - min(3, data.ndim)))
        corners = np.array(list(itertools.product(*[(0, m - 1) for m in shape])), float)
        hom = np.c_[corners, np.ones(len(corners))]
        gap = np.linalg.norm((hom @ sform.T - hom @ qform.T)[:, :3], axis=1).max()
        if gap > tol:
            raise VolumeGeometryError(
                f"{os.path.basename(path)}: the NIfTI sform and qform disagree by up to "
                f"{gap:.2f} mm, so tools would place it differently; rewrite it with one "
                "affine (e.g. set the qform from the sform)"
            )
    affine = sform if s_code > 0 else qform
    return data, _LPS_FROM_RAS @ np.asarray(affine, dtype=float)


# NRRD "space" values (NRRD format spec) and the flips from that space to LPS
_NRRD_SPACES = {
    "left-posterior-superior": (1, 1, 1),
    "lps": (1, 1, 1),
    "right-anterior-superior": (-1, -1, 1),
    "ras": (-1, -1, 1),
    "left-anterior-superior": (1, -1, 1),
    "las": (1, -1, 1),
}


def _read_nrrd(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Data and LPS affine of an NRRD (``.nrrd``, or ``.nhdr`` with detached data).

    The affine is built from ``space directions`` (one row per axis: the world step of
    one voxel along it) and ``space origin``, expressed in ``space``; pynrrd's default
    Fortran index order keeps the data axes in the header's axis order. Non-spatial
    axes (``none`` directions) of size 1 are dropped; larger ones (one-hot channels,
    Slicer multi-layer segmentations) are refused, as are files with no anatomical
    space (``scanner-xyz``, ``3D-right-handed``) or no origin.
    """
    import nrrd

    try:
        data, header = nrrd.read(path)
    except FileNotFoundError as exc:
        raise VolumeFormatError(f"label file not found: {path}") from exc
    except Exception as exc:  # pynrrd raises NRRDError, OSError, ValueError ...
        raise VolumeFormatError(f"cannot read {path} as NRRD: {exc}") from exc
    base = os.path.basename(path)
    space = str(header.get("space", "")).strip().lower()
    if space not in _NRRD_SPACES:
        raise VolumeGeometryError(
            f"{base}: NRRD space {header.get('space')!r} is not an anatomical 3-D space "
            f"(expected one of left-posterior-superior, right-anterior-superior, "
            "left-anterior-superior), so its voxels cannot be placed on the series"
        )
    if "space directions" not in header:
        raise VolumeGeometryError(f"{base}: the NRRD header has no 'space directions'")
    if "space origin" not in header:
        raise VolumeGeometryError(f"{base}: the NRRD header has no 'space origin'")
    directions = np.asarray(header["space directions"], dtype=float)
    origin = np.asarray(header["space origin"], dtype=float).reshape(-1)
    if directions.ndim != 2 or directions.shape[0] != data.ndim or origin.shape != (3,):
        raise VolumeGeometryError(
            f"{base}: 'space directions' {directions.tolist()} and 'space origin' "
            f"{origin.tolist()} do not describe a {data.ndim}-D volume in 3-D space"
        )
    spatial = [a for a in range(data.ndim) if np.all(np.isfinite(directions[a]))]
    other = [a for a in range(data.ndim) if a not in spatial]
    if len(spatial) != 3:
        raise VolumeGeometryError(
            f"{base}: {len(spatial)} spatial axes, expected 3 (sizes {list(data.shape)})"
        )
    for a in other:
        if data.shape[a] != 1:
            raise VolumeFormatError(
                f"{base}: NRRD axis {a} is a non-spatial axis of size {data.shape[a]} (one-hot "
                "channels or a multi-layer segmentation); export a single label map"
            )
    data = data.reshape([data.shape[a] for a in spatial]) if other else data
    flip = np.diag(_NRRD_SPACES[space] + (1,))
    affine = np.eye(4)
    affine[:3, :3] = directions[spatial].T
    affine[:3, 3] = origin
    return data, flip @ affine


def _as_labels(data: np.ndarray, base: str) -> np.ndarray:
    """Integer label values; integral floats are accepted, anything else is refused."""
    if data.dtype == bool:
        return data.astype(np.uint8)
    if np.issubdtype(data.dtype, np.integer):
        if np.issubdtype(data.dtype, np.signedinteger) and data.size and data.min() < 0:
            raise VolumeFormatError(
                f"{base}: negative label value {int(data.min())}; labels are 0 (background) "
                "or positive integers"
            )
        return data
    if not np.issubdtype(data.dtype, np.floating):
        raise VolumeFormatError(f"{base}: data type {data.dtype} is not a label map")
    if not np.all(np.isfinite(data)):
        raise VolumeFormatError(f"{base}: non-finite values (NaN or inf) in a label map")
    frac = np.abs(data - np.round(data))
    if frac.max(initial=0.0) > 1e-6:
        where = tuple(int(v) for v in np.unravel_index(int(np.argmax(frac)), data.shape))
        raise VolumeFormatError(
            f"{base}: values are not integer labels (e.g. {float(data[where]):g} at voxel "
            f"{where}); a probability map or a resampled label must be thresholded or "
            "re-exported with nearest-neighbour interpolation"
        )
    labels = np.round(data)
    if labels.size and labels.min() < 0:
        raise VolumeFormatError(
            f"{base}: negative label value {int(labels.min())}; labels are 0 (background) or "
            "positive integers"
        )
    dtype = np.int32 if labels.size == 0 or labels.max() < 2**31 else np.int64
    return labels.astype(dtype)


def _file_axis_name(kind: str, a: int) -> str:
    return f"file axis {'ijk'[a]}" if kind == "nifti" else f"NRRD axis {a}"


def load_label_volume(
    path: str | os.PathLike,
    geometry: SeriesGeometry,
    *,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
) -> np.ndarray:
    """The label map of a NIfTI (``.nii``, ``.nii.gz``) or NRRD (``.nrrd``, ``.nhdr``)
    file as an integer array ``[slice, row, col]`` of shape ``geometry.shape``.

    The file's voxel grid must coincide with the series grid: each file axis must run
    along one series axis (either way), with the same number of voxels and spacing,
    and the first voxel at a corner of the series grid. The axis mapping is found from
    the file affine's direction cosines, never assumed, so ITK/nnU-Net (i=col, j=row,
    k=slice), dcm2niix (rows reversed, slices in either order), RAS-reoriented MONAI
    or nibabel output and Slicer LPS NRRDs all load the same. NIfTI affines are RAS
    (NIfTI-1 qform/sform) and are converted to DICOM LPS by negating x and y.

    Nothing is resampled: a file on another grid (resampled, cropped, shifted, tilted)
    raises :class:`VolumeGeometryError` naming each axis that differs and by how much
    (voxel counts, spacing in mm, origin offset in mm and voxels, direction in degrees).
    ``tolerance_mm`` bounds the displacement of any voxel centre. Non-integral values
    (probability maps, linear resampling) raise :class:`VolumeFormatError`.
    """
    path = os.fspath(path)
    base = os.path.basename(path)
    lower = base.lower()
    if lower.endswith((".nii", ".nii.gz")):
        kind = "nifti"
        data, affine = _read_nifti(path, float(tolerance_mm))
    elif lower.endswith((".nrrd", ".nhdr")):
        kind = "nrrd"
        data, affine = _read_nrrd(path)
    else:
        raise VolumeFormatError(
            f"{base}: unknown label volume format; expected .nii, .nii.gz, .nrrd or .nhdr"
        )
    # trailing singleton axes (e.g. NIfTI (X, Y, Z, 1)) carry nothing; 2-D gains k=1
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., np.newaxis]
    if data.ndim != 3:
        raise VolumeFormatError(
            f"{base}: a {data.ndim}-D image of shape {list(data.shape)}; expected one 3-D "
            "label map (export multi-channel or one-hot outputs as a single label map)"
        )
    data = _as_labels(data, base)
    mapping = _match_grid(affine, data.shape, geometry, tolerance_mm, base, kind)
    axes = tuple(a for a, _ in mapping)
    out = np.transpose(data, axes)
    flips = tuple(b for b, (_, sign) in enumerate(mapping) if sign < 0)
    if flips:
        out = np.flip(out, axis=flips)
    return np.ascontiguousarray(out)


def _match_grid(
    affine: np.ndarray,
    file_shape: tuple[int, ...],
    geometry: SeriesGeometry,
    tolerance_mm: float,
    base: str,
    kind: str,
) -> list[tuple[int, int]]:
    """For each series axis (slice, row, col): (file axis, +1 or -1 if reversed).

    Raises VolumeGeometryError listing every difference found.
    """
    tol = float(tolerance_mm)
    series_vecs = geometry.axis_vectors_lps()  # rows: slice, row, col steps
    series_spacing = np.array(geometry.spacing_zyx)
    series_dirs = series_vecs / series_spacing[:, None]
    file_vecs = affine[:3, :3].T  # rows: file axis steps (LPS mm)
    file_spacing = np.linalg.norm(file_vecs, axis=1)
    if np.any(file_spacing <= 0):
        raise VolumeGeometryError(f"{base}: the file affine has a zero-length axis")
    file_dirs = file_vecs / file_spacing[:, None]
    cos = file_dirs @ series_dirs.T  # [file axis, series axis]

    # the assignment of file axes to series axes that aligns them best
    perm = max(
        itertools.permutations(range(3)),
        key=lambda p: sum(abs(cos[p[b], b]) for b in range(3)),
    )
    mapping = [(perm[b], 1 if cos[perm[b], b] >= 0 else -1) for b in range(3)]
    problems = []
    for b, (a, sign) in enumerate(mapping):
        axis, fname = _AXIS_NAMES[b], _file_axis_name(kind, a)
        angle = _angle(sign * file_dirs[a], series_dirs[b])
        span = max(geometry.shape[b] - 1, 1) * series_spacing[b]
        if math.sin(angle) * span > tol or angle > math.pi / 4:
            problems.append(
                f"direction: {fname} runs {math.degrees(angle):.2f} degrees off the series "
                f"{axis} axis"
            )
        m, n = file_shape[a], geometry.shape[b]
        if m != n:
            problems.append(
                f"shape: {axis} axis ({fname}) has {m} voxels in the file, {n} in the "
                f"series ({'+' if m > n else '-'}{abs(m - n)})"
            )
        ds = file_spacing[a] - series_spacing[b]
        if n > 1 and abs(ds) * (n - 1) > tol:
            problems.append(
                f"{axis} spacing {file_spacing[a]:.2f} mm in the file, "
                f"{series_spacing[b]:.2f} mm in the series ({fname}; differs by "
                f"{abs(ds):.3f} mm, {abs(ds) * (n - 1):.2f} mm across the series)"
            )
    # the file voxel that should sit on series voxel (0, 0, 0)
    start = np.zeros(3)
    for a, sign in mapping:
        if sign < 0:
            start[a] = file_shape[a] - 1
    file_origin = affine[:3, :3] @ start + affine[:3, 3]
    offset = file_origin - np.asarray(geometry.origin)
    if np.linalg.norm(offset) > tol:
        along = series_dirs @ offset
        parts = ", ".join(
            f"{along[b]:+.2f} mm along the {_AXIS_NAMES[b]} axis "
            f"({along[b] / series_spacing[b]:+.2f} voxels)"
            for b in range(3)
            if abs(along[b]) >= 0.005
        )
        problems.append(
            f"origin: the file's first voxel is {np.linalg.norm(offset):.2f} mm from the "
            f"series origin ({parts})"
        )
    if problems:
        raise VolumeGeometryError(
            f"{base} does not lie on the series grid (shape {list(geometry.shape)}, spacing "
            f"{', '.join(f'{s:.2f}' for s in series_spacing)} mm slice/row/column): "
            + "; ".join(problems)
        )
    # catch-all: every corner of the grid within tolerance (combined small errors, shear)
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in geometry.shape])), float)
    file_index = np.zeros_like(corners)
    for b, (a, sign) in enumerate(mapping):
        file_index[:, a] = corners[:, b] if sign > 0 else file_shape[a] - 1 - corners[:, b]
    gap = np.linalg.norm(
        (file_index @ affine[:3, :3].T + affine[:3, 3]) - geometry.voxel_lps(corners), axis=1
    )
    if gap.max() > tol:
        k = int(np.argmax(gap))
        raise VolumeGeometryError(
            f"{base} does not lie on the series grid: the voxel at series [slice, row, col] "
            f"{[int(v) for v in corners[k]]} is {gap[k]:.3f} mm from where the file puts it"
        )
    return mapping


def label_instances(volume: np.ndarray) -> dict[int, int]:
    """The label values present (> 0), each with its voxel count, by ascending value.

    In a reader's NIfTI/NRRD each positive value is one of that reader's own lesion
    instances (nnU-Net class maps use values as classes; the caller decides which
    applies). Background 0 is left out. Iterating the result gives the values.
    """
    volume = np.asarray(volume)
    if volume.size == 0:
        return {}
    flat = volume.ravel()
    if np.issubdtype(volume.dtype, np.integer) and flat.min() >= 0 and flat.max() < 2**20:
        counts = np.bincount(flat.astype(np.int64, copy=False))
        return {int(v): int(counts[v]) for v in np.flatnonzero(counts) if v > 0}
    values, counts = np.unique(flat, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True) if v > 0}
