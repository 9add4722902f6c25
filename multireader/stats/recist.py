"""RECIST 1.1 per reader, and agreement between readers on it.

Pure numpy/scipy. Five steps, each a small set of functions on plain arrays and records:

1. diameters from a reader's mask (:func:`lesion_diameters`): the longest axial
   diameter on the slice where it is largest, and the longest diameter perpendicular to
   it on that slice, in mm, with anisotropic pixel spacing;
2. target lesions at baseline (:func:`lesion_measurability`, :func:`validate_targets`,
   :func:`select_targets`): at most 5 targets, 2 per organ, measurable lesions only;
3. the sum of diameters per timepoint (:func:`sum_of_diameters`, :func:`nadir`,
   :func:`percent_change_from_baseline`, :func:`percent_change_from_nadir`);
4. the response per follow-up (:func:`target_response`, :func:`overall_response`,
   :func:`timepoint_responses`) and the best overall response
   (:func:`best_overall_response`);
5. agreement between readers: on response categories (:func:`response_agreement`,
   :func:`discordance_rate`), on sums, percent changes and per-lesion diameters
   (:func:`measurement_agreement`, :func:`repeatability_coefficient`), on target
   selection (:func:`target_selection_jaccard`), and each reader's drift over reading
   sessions (:func:`reader_drift`).

Every threshold of the guideline is a field of :class:`RecistRules` (the defaults,
:data:`RECIST_1_1`, are the published ones), so a protocol that deviates says so in one
place. Thresholds are inclusive where the guideline says "at least" and compared with a
tolerance of ``1e-9`` (relative to the sum), so that a change of exactly -30 % or
exactly +5 mm, computed in floating point, counts as the guideline means.

Statistics that a trial reports with a confidence interval take ``groups`` (patient
ids, one per row) and resample patients with :func:`multireader.stats.bootstrap.bootstrap`
or :func:`multireader.stats.agreement.bootstrap_ci`: a patient's timepoints and lesions
are correlated, so patients, not rows, are the units.

References
----------
Eisenhauer E.A. et al. (2009). New response evaluation criteria in solid tumours:
    revised RECIST guideline (version 1.1). Eur J Cancer 45:228-247.
Schwartz L.H. et al. (2016). RECIST 1.1 - Update and clarification: from the RECIST
    committee. Eur J Cancer 62:132-137.
Bland J.M., Altman D.G. (1999). Measuring agreement in method comparison studies.
    Stat Methods Med Res 8(2):135-160.
Raunig D.L. et al. (2015). Quantitative imaging biomarkers: a review of statistical
    methods for technical performance assessment. Stat Methods Med Res 24(1):27-67.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage
from scipy import stats as _st
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from multireader.errors import MultireaderError
from multireader.stats.agreement import (
    UndefinedStatisticError,
    bootstrap_ci,
    continuous_summary,
    fleiss_kappa,
    pairwise_cohen_kappa,
    percent_agreement,
)
from multireader.stats.bootstrap import bootstrap, check_level, check_n_boot, group_codes
from multireader.stats.estimates import Estimate

__all__ = [
    "RecistError",
    "RecistRules",
    "RECIST_1_1",
    "RESPONSES",
    "NON_TARGET_STATUSES",
    "Diameters",
    "Lesion",
    "RuleViolation",
    "lesion_diameters",
    "labelled_lesion_diameters",
    "lesion_measurability",
    "validate_targets",
    "select_targets",
    "sum_of_diameters",
    "nadir",
    "percent_change_from_baseline",
    "percent_change_from_nadir",
    "target_response",
    "overall_response",
    "timepoint_responses",
    "best_overall_response",
    "response_codes",
    "discordance_rate",
    "response_agreement",
    "repeatability_coefficient",
    "measurement_agreement",
    "target_selection_jaccard",
    "pairwise_target_selection_jaccard",
    "reader_drift",
]

#: response categories of target disease, in the order used for codes 0..4
RESPONSES = ("CR", "PR", "SD", "PD", "NE")
#: the response of non-target disease alone (RECIST 1.1, Table 2)
NON_CR_NON_PD = "non-CR/non-PD"
#: what a reader can record for the non-target lesions at a follow-up
NON_TARGET_STATUSES = ("CR", NON_CR_NON_PD, "PD", "NE")

Convention = Literal["edges", "centers"]

#: relative tolerance of the inclusive thresholds
_TOL = 1e-9


class RecistError(MultireaderError):
    """Bad input to a RECIST function (the message names the argument)."""


@dataclass(frozen=True)
class RecistRules:
    """The thresholds of RECIST 1.1 (Eisenhauer et al. 2009), one field each.

    Attributes
    ----------
    max_targets : at most this many target lesions in all (sec. 3.3.1: 5).
    max_per_organ : at most this many per organ (2).
    min_long_axis_mm : a non-nodal lesion is measurable with a long axis of at least
        this (10 mm by CT).
    slice_thickness_mm : when given, the minimum is ``max(min_long_axis_mm,
        2 x slice_thickness_mm)`` (sec. 3.1.2: twice the slice thickness when that is
        larger than 5 mm).
    node_target_mm : a lymph node is measurable (a target candidate) with a short axis
        of at least this (15 mm).
    node_pathological_mm : a node with a short axis of at least this and below
        ``node_target_mm`` is pathological but non-measurable (a non-target lesion);
        below it the node is not pathological (10 mm).
    nodes_one_organ : all lymph nodes count as one organ for ``max_per_organ``, the
        RECIST committee's reading (Schwartz et al. 2016); False uses each record's
        organ.
    pr_change_pct : partial response at a change from baseline of at most this (-30 %).
    pd_change_pct : progression at an increase from the nadir of at least this (20 %)...
    pd_min_increase_mm : ...that is also at least this many mm (5 mm).
    cr_node_mm : at complete response every target node's short axis is below this
        (10 mm).
    """

    max_targets: int = 5
    max_per_organ: int = 2
    min_long_axis_mm: float = 10.0
    slice_thickness_mm: float | None = None
    node_target_mm: float = 15.0
    node_pathological_mm: float = 10.0
    nodes_one_organ: bool = True
    pr_change_pct: float = -30.0
    pd_change_pct: float = 20.0
    pd_min_increase_mm: float = 5.0
    cr_node_mm: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_targets", "max_per_organ"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise RecistError(f"{name} must be an integer >= 1; got {v!r}")
        for name in (
            "min_long_axis_mm",
            "node_target_mm",
            "node_pathological_mm",
            "pd_change_pct",
            "pd_min_increase_mm",
            "cr_node_mm",
        ):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise RecistError(f"{name} must be a finite number >= 0; got {v!r}")
        t = self.slice_thickness_mm
        if t is not None and (not isinstance(t, int | float) or not math.isfinite(t) or t <= 0):
            raise RecistError(f"slice_thickness_mm must be None or a number > 0; got {t!r}")
        if not isinstance(self.pr_change_pct, int | float) or not -100 <= self.pr_change_pct < 0:
            raise RecistError(f"pr_change_pct must be in [-100, 0); got {self.pr_change_pct!r}")
        if self.node_pathological_mm > self.node_target_mm:
            raise RecistError("node_pathological_mm must not exceed node_target_mm")

    @property
    def measurable_long_axis_mm(self) -> float:
        """The minimum long axis of a measurable non-nodal lesion."""
        if self.slice_thickness_mm is None:
            return float(self.min_long_axis_mm)
        return float(max(self.min_long_axis_mm, 2.0 * self.slice_thickness_mm))


#: the published thresholds
RECIST_1_1 = RecistRules()


def _check_rules(rules: Any) -> RecistRules:
    if not isinstance(rules, RecistRules):
        raise RecistError(f"rules must be a RecistRules; got {type(rules).__name__}")
    return rules


# ------------------------------------------------------------------ 1. diameters


@dataclass(frozen=True)
class Diameters:
    """The RECIST diameters of one lesion.

    Attributes
    ----------
    long_axis_mm : the longest in-plane diameter, on the slice where it is largest.
    short_axis_mm : the longest diameter perpendicular to it, on the same slice.
    slice_index : that slice (0 for a 2-D mask; None for an empty mask).
    long_axis_ends, short_axis_ends : the two ends of each axis as (row, col) in pixel
        index coordinates of that slice (None for an empty mask), to draw them.
    convention : "edges" or "centers", see :func:`lesion_diameters`.
    """

    long_axis_mm: float
    short_axis_mm: float
    slice_index: int | None
    long_axis_ends: tuple[tuple[float, float], tuple[float, float]] | None = None
    short_axis_ends: tuple[tuple[float, float], tuple[float, float]] | None = None
    convention: str = "edges"


def _check_spacing2(spacing: Any) -> np.ndarray:
    sp = np.asarray(spacing, dtype=float).ravel()
    if sp.shape == (3,):
        sp = sp[1:]  # (slice, row, col): the slice spacing plays no part in-plane
    if sp.shape != (2,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise RecistError(
            "spacing must be two positive mm values (row, col), or three "
            f"(slice, row, col); got {spacing!r}"
        )
    return sp


_CORNERS = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])


def _plane_points(boundary: np.ndarray, convention: str) -> np.ndarray:
    """The points whose convex hull is the lesion on one slice, in pixel units."""
    idx = np.argwhere(boundary).astype(float)
    if convention == "edges":
        idx = (idx[:, None, :] + _CORNERS[None]).reshape(-1, 2)
        idx = np.unique(idx, axis=0)
    return idx


def _hull(points_mm: np.ndarray) -> np.ndarray:
    """Hull vertices in order; collinear points give their two extremes."""
    if len(points_mm) >= 3:
        try:
            return points_mm[ConvexHull(points_mm).vertices]
        except QhullError:  # collinear: a one-pixel-wide line of centres
            pass
    if len(points_mm) == 1:
        return points_mm
    d = points_mm - points_mm[0]
    far = points_mm[np.argmax((d**2).sum(1))]
    t = (points_mm - far) @ (points_mm[0] - far)
    return points_mm[[np.argmin(t), np.argmax(t)]]


def _axes(hull: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Long axis (the hull's diameter) and the longest chord perpendicular to it.

    In the frame of the long axis (t along it, s across it) the chord at t is
    upper(t) - lower(t), a concave piecewise-linear function whose breakpoints are the
    vertices' t: its maximum is at one of them, so every vertex t is tried against
    every edge (H x H, H = hull vertices, a few dozen).
    """
    H = len(hull)
    if H == 1:
        return 0.0, 0.0, hull[[0, 0]], hull[[0, 0]]
    d = pdist(hull)
    k = int(np.argmax(d))
    iu = np.triu_indices(H, 1)  # pdist's order of the pairs
    i, j = int(iu[0][k]), int(iu[1][k])
    long_ends = hull[[i, j]]
    L = float(d[k])
    u = (long_ends[1] - long_ends[0]) / L
    n = np.array([-u[1], u[0]])
    rel = hull - long_ends[0]
    t, s = rel @ u, rel @ n
    if H == 2:
        return L, 0.0, long_ends, long_ends[[0, 0]]
    ta, tb = t[None, :], np.roll(t, -1)[None, :]
    sa, sb = s[None, :], np.roll(s, -1)[None, :]
    tq = t[:, None]
    eps = 1e-9 * max(L, 1.0)
    inside = (tq >= np.minimum(ta, tb) - eps) & (tq <= np.maximum(ta, tb) + eps)
    vertical = np.abs(tb - ta) <= eps
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.clip(np.where(vertical, 0.0, (tq - ta) / (tb - ta)), 0.0, 1.0)
    s1 = np.where(vertical, sa, sa + frac * (sb - sa))
    s2 = np.where(vertical, sb, s1)
    hi = np.where(inside, np.maximum(s1, s2), -np.inf).max(1)
    lo = np.where(inside, np.minimum(s1, s2), np.inf).min(1)
    q = int(np.argmax(hi - lo))
    short = float(hi[q] - lo[q])
    base = long_ends[0] + t[q] * u
    short_ends = np.stack([base + lo[q] * n, base + hi[q] * n])
    return L, short, long_ends, short_ends


def _ends(p: np.ndarray, sp: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    px = p / sp
    return (float(px[0, 0]), float(px[0, 1])), (float(px[1, 0]), float(px[1, 1]))


def lesion_diameters(mask: Any, spacing: Any, convention: Convention = "edges") -> Diameters:
    """RECIST diameters of one lesion's mask: long axis and perpendicular short axis.

    On each axial slice the lesion is the convex hull of its pixels (the boundary
    pixels suffice). The long axis on a slice is the hull's diameter, the largest
    distance between two of its points; the slice whose long axis is the largest is
    the one RECIST measures (ties: the first). The short axis is the longest chord of
    that slice's hull perpendicular to the long axis (sec. 4.2: "the longest diameter
    perpendicular to the long axis"), which is the shape's width across the long axis
    for a convex symmetric outline such as an ellipse. Distances are in mm with
    ``spacing = (row, col)``, so ``|p - q| = sqrt((dr * s_row)^2 + (dc * s_col)^2)``.

    Two conventions for where a pixel is:

    * ``"edges"`` (default): a pixel is the square it covers, so the hull is that of
      the pixel corners. A run of n pixels along a row measures ``n * s_col``: the
      extent of the drawn region, unbiased for a rasterised shape.
    * ``"centers"``: a pixel is its centre point. A run of n pixels measures
      ``(n - 1) * s_col``: one pixel less along the axis. This is SimpleITK's
      ``LabelShapeStatisticsImageFilter.GetFeretDiameter`` (the largest distance
      between the physical centres of boundary pixels), and equal to it.

    The mask is taken as one lesion: label the reader's outline first
    (:func:`multireader.stats.lesions.label_lesions`) and pass one component, or use
    :func:`labelled_lesion_diameters`.

    Parameters
    ----------
    mask : bool/int array (rows, cols) or (slices, rows, cols); foreground is > 0.
    spacing : (row, col) in mm, or (slice, row, col) (the slice spacing is unused).
    convention : "edges" or "centers".

    Returns
    -------
    Diameters. An empty mask gives 0 mm for both axes and ``slice_index=None`` (a
    target that disappeared measures 0 mm).

    References
    ----------
    Eisenhauer E.A. et al. (2009), sec. 3.1 and 4.2.
    Lehmann G. (2007). Label object representation and manipulation with ITK. Insight
    Journal (the Feret diameter of ITK's shape label maps).

    Examples
    --------
    A 10 x 4 pixel rectangle at 0.5 mm x 1 mm pixels covers 5 mm x 4 mm: the long axis
    is its diagonal, sqrt(5^2 + 4^2), and the short axis the longest chord across it,
    from a corner to the far side; between pixel centres it spans 4.5 mm x 3 mm:

    >>> m = np.zeros((12, 8), bool); m[1:11, 2:6] = True
    >>> d = lesion_diameters(m, (0.5, 1.0))
    >>> round(d.long_axis_mm, 3), round(d.short_axis_mm, 3)
    (6.403, 5.122)
    >>> round(lesion_diameters(m, (0.5, 1.0), "centers").long_axis_mm, 3)
    5.408
    """
    if convention not in ("edges", "centers"):
        raise RecistError(f"convention must be 'edges' or 'centers'; got {convention!r}")
    arr = np.asarray(mask)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.size == 0:
        raise RecistError(
            f"mask must be a non-empty 2-D (rows, cols) or 3-D (slices, rows, cols) "
            f"array; got shape {np.asarray(mask).shape}"
        )
    sp = _check_spacing2(spacing)
    fg = arr > 0
    # boundary pixels in-plane: a pixel with a background 4-neighbour on its slice
    inner = ndimage.binary_erosion(
        fg, structure=ndimage.generate_binary_structure(2, 1)[None], border_value=0
    )
    boundary = fg & ~inner
    best: tuple | None = None
    for z in np.flatnonzero(boundary.any(axis=(1, 2))):
        hull = _hull(_plane_points(boundary[z], convention) * sp)
        axes = _axes(hull)
        if best is None or axes[0] > best[1][0]:
            best = (int(z), axes)
    if best is None:
        return Diameters(0.0, 0.0, None, None, None, convention)
    z, (L, S, le, se) = best
    return Diameters(L, S, z, _ends(le, sp), _ends(se, sp), convention)


def labelled_lesion_diameters(
    labels: Any, n: int, spacing: Any, convention: Convention = "edges"
) -> list[Diameters]:
    """:func:`lesion_diameters` of every lesion 1..n of a labelled volume.

    ``labels`` is (slices, rows, cols) with 1..n, 0 background, as returned by
    :func:`multireader.stats.lesions.label_lesions` or ``instances_from_labels``; each
    lesion is measured on its bounding box. A label with no voxel measures 0 mm.
    """
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise RecistError(f"labels must be 3-D (slices, rows, cols); got shape {lab.shape}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise RecistError(f"n must be a non-negative integer; got {n!r}")
    out = []
    for i, box in enumerate(ndimage.find_objects(lab, max_label=int(n)) if n else []):
        if box is None:
            out.append(Diameters(0.0, 0.0, None, None, None, convention))
            continue
        d = lesion_diameters(lab[box] == i + 1, spacing, convention)
        z0, r0, c0 = box[0].start, box[1].start, box[2].start

        def shift(e: Any, r0: int = r0, c0: int = c0) -> Any:
            return None if e is None else tuple((p[0] + r0, p[1] + c0) for p in e)

        out.append(
            Diameters(
                d.long_axis_mm,
                d.short_axis_mm,
                None if d.slice_index is None else d.slice_index + z0,
                shift(d.long_axis_ends),
                shift(d.short_axis_ends),
                convention,
            )
        )
    return out


# ------------------------------------------------------------ 2. target selection


@dataclass(frozen=True)
class Lesion:
    """One lesion a reader recorded at baseline.

    Attributes
    ----------
    lesion_id : the reader's (or, after matching, the common) id of the lesion.
    organ : the organ or site (per-organ cap); nodes share one organ by default.
    long_axis_mm : the longest axial diameter.
    short_axis_mm : the perpendicular short axis (required for a lymph node).
    nodal : True for a lymph node.
    """

    lesion_id: str
    organ: str
    long_axis_mm: float
    short_axis_mm: float = math.nan
    nodal: bool = False

    @property
    def diameter_mm(self) -> float:
        """The diameter that enters the sum: short axis for a node, long axis else."""
        return float(self.short_axis_mm if self.nodal else self.long_axis_mm)


_LESION_KEYS = ("lesion_id", "organ", "long_axis_mm", "short_axis_mm", "nodal")


def _as_lesion(x: Any, where: str) -> Lesion:
    if isinstance(x, Lesion):
        les = x
    elif isinstance(x, Mapping):
        missing = [k for k in ("lesion_id", "organ") if k not in x]
        if missing:
            raise RecistError(f"{where}: missing key(s) {missing}")
        les = Lesion(
            lesion_id=str(x["lesion_id"]),
            organ=str(x["organ"]),
            long_axis_mm=float(x.get("long_axis_mm", math.nan)),
            short_axis_mm=float(x.get("short_axis_mm", math.nan)),
            nodal=bool(x.get("nodal", False)),
        )
    else:
        raise RecistError(f"{where}: expected a Lesion or a mapping with keys {_LESION_KEYS}")
    need = les.short_axis_mm if les.nodal else les.long_axis_mm
    axis = "short_axis_mm" if les.nodal else "long_axis_mm"
    if not (math.isfinite(need) and need >= 0):
        raise RecistError(
            f"{where} ({les.lesion_id!r}): {axis} must be a finite number >= 0 for a "
            f"{'lymph node' if les.nodal else 'non-nodal lesion'}; got {need!r}"
        )
    return les


def _as_lesions(lesions: Any, name: str = "lesions") -> list[Lesion]:
    if isinstance(lesions, Lesion | Mapping) or not isinstance(lesions, Iterable):
        raise RecistError(f"{name} must be a sequence of Lesion records or mappings")
    out = [_as_lesion(x, f"{name}[{i}]") for i, x in enumerate(lesions)]
    ids = [x.lesion_id for x in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise RecistError(f"{name}: lesion ids must be unique; repeated {dup}")
    return out


def lesion_measurability(lesion: Any, rules: RecistRules = RECIST_1_1) -> str:
    """Whether a baseline lesion is measurable (RECIST 1.1, sec. 3.1).

    * non-nodal: "measurable" with a long axis >= ``rules.measurable_long_axis_mm``
      (10 mm, or twice the slice thickness when that is larger), "non_measurable"
      otherwise (a non-target lesion);
    * lymph node: "measurable" with a short axis >= 15 mm; "non_measurable" (a
      pathological non-target node) with 10 <= short axis < 15 mm; "non_pathological"
      below 10 mm (not a lesion at all).

    Examples
    --------
    >>> lesion_measurability(Lesion("n1", "node", 20.0, 14.0, nodal=True))
    'non_measurable'
    """
    r = _check_rules(rules)
    les = _as_lesion(lesion, "lesion")
    tol = _TOL * max(1.0, les.diameter_mm)
    if les.nodal:
        if les.short_axis_mm >= r.node_target_mm - tol:
            return "measurable"
        if les.short_axis_mm >= r.node_pathological_mm - tol:
            return "non_measurable"
        return "non_pathological"
    return "measurable" if les.long_axis_mm >= r.measurable_long_axis_mm - tol else "non_measurable"


#: the rules :func:`validate_targets` checks, by name
RULES = {
    "unknown_lesion": "a target id that is not among the reader's baseline lesions",
    "duplicate_target": "a lesion chosen as target more than once",
    "non_nodal_too_small": "a non-nodal target below the measurable long axis",
    "node_too_small": "a nodal target with a short axis below the target minimum",
    "max_per_organ": "more targets in one organ than the per-organ cap",
    "max_targets": "more targets in all than the total cap",
}


@dataclass(frozen=True)
class RuleViolation:
    """One broken target-selection rule.

    Attributes
    ----------
    rule : a key of :data:`RULES`.
    lesion_ids : the targets involved (for a cap: every target counted against it).
    message : what is wrong, in words, with the numbers.
    """

    rule: str
    lesion_ids: tuple[str, ...]
    message: str


def _organ(les: Lesion, rules: RecistRules) -> str:
    return "lymph node" if les.nodal and rules.nodes_one_organ else les.organ


def validate_targets(
    lesions: Any, target_ids: Sequence[str], rules: RecistRules = RECIST_1_1
) -> list[RuleViolation]:
    """Check a reader's choice of baseline target lesions against RECIST 1.1.

    Rules (sec. 3.3.1 and 3.1): every target is one of the reader's lesions and is
    chosen once; a non-nodal target has a long axis >= 10 mm (or twice the slice
    thickness when larger); a nodal target has a short axis >= 15 mm (a 10-15 mm node
    is a non-target lesion, a < 10 mm node is not pathological); at most 2 targets per
    organ (all nodes count as one organ, :attr:`RecistRules.nodes_one_organ`); at most 5
    targets in all.

    Parameters
    ----------
    lesions : the reader's baseline lesions (:class:`Lesion` or mappings).
    target_ids : the ids the reader chose as targets.
    rules : the thresholds.

    Returns
    -------
    list of :class:`RuleViolation`, empty when the choice follows the rules; in the
    order of :data:`RULES`.

    References
    ----------
    Eisenhauer E.A. et al. (2009), sec. 3.1, 3.3.1; Schwartz L.H. et al. (2016).

    Examples
    --------
    >>> les = [Lesion("a", "liver", 30.0), Lesion("b", "lung", 9.0)]
    >>> [v.rule for v in validate_targets(les, ["a", "b"])]
    ['non_nodal_too_small']
    """
    r = _check_rules(rules)
    pool = {x.lesion_id: x for x in _as_lesions(lesions)}
    if isinstance(target_ids, str) or not isinstance(target_ids, Iterable):
        raise RecistError("target_ids must be a sequence of lesion ids")
    ids = [str(t) for t in target_ids]
    out: list[RuleViolation] = []
    unknown = [t for t in ids if t not in pool]
    if unknown:
        out.append(
            RuleViolation(
                "unknown_lesion",
                tuple(unknown),
                f"target(s) {unknown} are not among the reader's baseline lesions",
            )
        )
    dup = sorted({t for t in ids if ids.count(t) > 1})
    if dup:
        out.append(RuleViolation("duplicate_target", tuple(dup), f"chosen twice: {dup}"))
    chosen = [pool[t] for t in dict.fromkeys(ids) if t in pool]
    small = [x for x in chosen if not x.nodal and lesion_measurability(x, r) != "measurable"]
    for x in small:
        out.append(
            RuleViolation(
                "non_nodal_too_small",
                (x.lesion_id,),
                f"{x.lesion_id!r}: long axis {x.long_axis_mm:g} mm < "
                f"{r.measurable_long_axis_mm:g} mm, not measurable (non-target)",
            )
        )
    for x in chosen:
        if x.nodal and lesion_measurability(x, r) != "measurable":
            kind = (
                "a pathological non-target node"
                if x.short_axis_mm >= r.node_pathological_mm - _TOL
                else "not a pathological node"
            )
            out.append(
                RuleViolation(
                    "node_too_small",
                    (x.lesion_id,),
                    f"{x.lesion_id!r}: short axis {x.short_axis_mm:g} mm < "
                    f"{r.node_target_mm:g} mm, {kind}",
                )
            )
    by_organ: dict[str, list[str]] = {}
    for x in chosen:
        by_organ.setdefault(_organ(x, r), []).append(x.lesion_id)
    for organ, members in by_organ.items():
        if len(members) > r.max_per_organ:
            out.append(
                RuleViolation(
                    "max_per_organ",
                    tuple(members),
                    f"{len(members)} targets in {organ!r}, at most {r.max_per_organ}",
                )
            )
    if len(chosen) > r.max_targets:
        out.append(
            RuleViolation(
                "max_targets",
                tuple(x.lesion_id for x in chosen),
                f"{len(chosen)} targets, at most {r.max_targets}",
            )
        )
    order = list(RULES)
    return sorted(out, key=lambda v: order.index(v.rule))


def select_targets(
    lesions: Any, rules: RecistRules = RECIST_1_1, *, cover_organs: bool = False
) -> list[str]:
    """Target lesions chosen by the rule, for a reader who did not choose.

    Measurable lesions (:func:`lesion_measurability`) are taken largest first, by the
    diameter that enters the sum (short axis for a node, long axis otherwise; ties by
    id), skipping a lesion whose organ already has ``rules.max_per_organ`` targets,
    until ``rules.max_targets``. RECIST also asks targets to be "representative of all
    involved organs": with ``cover_organs=True`` the largest lesion of each organ is
    taken first (largest organs first), then the rest by size. The guideline leaves the
    choice to the reader; this is a reproducible stand-in, not a claim of what a reader
    would pick.

    Returns
    -------
    list of lesion ids, in the order chosen.

    Examples
    --------
    >>> les = [Lesion("a", "liver", 30.0), Lesion("b", "liver", 40.0),
    ...        Lesion("c", "liver", 50.0), Lesion("d", "lung", 12.0)]
    >>> select_targets(les)
    ['c', 'b', 'd']
    """
    r = _check_rules(rules)
    pool = [x for x in _as_lesions(lesions) if lesion_measurability(x, r) == "measurable"]
    pool.sort(key=lambda x: (-x.diameter_mm, x.lesion_id))
    chosen: list[str] = []
    per_organ: dict[str, int] = {}

    def take(x: Lesion) -> None:
        if len(chosen) < r.max_targets and x.lesion_id not in chosen:
            organ = _organ(x, r)
            if per_organ.get(organ, 0) < r.max_per_organ:
                chosen.append(x.lesion_id)
                per_organ[organ] = per_organ.get(organ, 0) + 1

    if cover_organs:
        seen: set[str] = set()
        for x in pool:
            if _organ(x, r) not in seen:
                seen.add(_organ(x, r))
                take(x)
    for x in pool:
        take(x)
    return chosen


# --------------------------------------------------------------- 3. sum of diameters


def _diameters_table(
    long_axis_mm: Any, short_axis_mm: Any = None, nodal: Any = None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(timepoints, targets) diameters that enter the sum, the nodal flags, and whether
    the input was one timepoint."""
    L = np.asarray(long_axis_mm, dtype=float)
    one = L.ndim == 1
    L = np.atleast_2d(L)
    if L.ndim != 2:
        raise RecistError(
            f"long_axis_mm must be (targets,) or (timepoints, targets); got {L.shape}"
        )
    nod = np.zeros(L.shape[1], bool) if nodal is None else np.asarray(nodal, bool).ravel()
    if nod.shape != (L.shape[1],):
        raise RecistError(f"nodal must have one flag per target ({L.shape[1]}); got {nod.shape}")
    if nod.any():
        if short_axis_mm is None:
            raise RecistError("short_axis_mm is required when a target is nodal")
        S = np.atleast_2d(np.asarray(short_axis_mm, dtype=float))
        if S.shape != L.shape:
            raise RecistError(
                f"short_axis_mm must have the shape of long_axis_mm {L.shape}; got {S.shape}"
            )
        D = np.where(nod[None, :], S, L)
    else:
        D = L.copy()
    if np.any(D[np.isfinite(D)] < 0) or np.any(np.isinf(D)):
        raise RecistError("diameters must be finite and >= 0 (NaN = not assessed)")
    return D, nod, one


def sum_of_diameters(long_axis_mm: Any, short_axis_mm: Any = None, nodal: Any = None) -> Any:
    """The sum of diameters of the target lesions, per timepoint (RECIST 1.1, sec. 4.2).

    ``SLD_t = sum_{non-nodal i} long_i,t + sum_{nodal i} short_i,t``. A target that
    disappeared is 0 mm; one too small to measure is recorded by the reader as 5 mm
    (sec. 4.3 / Appendix II); a target not assessed (NaN) makes the sum NaN (not
    evaluable).

    Parameters
    ----------
    long_axis_mm : float array (targets,) or (timepoints, targets).
    short_axis_mm : same shape; needed where a target is nodal.
    nodal : bool array (targets,), or None when no target is a node.

    Returns
    -------
    float for one timepoint, else float array (timepoints,).

    Examples
    --------
    >>> sum_of_diameters([[30.0, 20.0, 40.0]], [[15.0, 12.0, 18.0]], [False, False, True])
    array([68.])
    """
    D, _, one = _diameters_table(long_axis_mm, short_axis_mm, nodal)
    s = D.sum(1)
    return float(s[0]) if one else s


def _check_sums(sums: Any) -> np.ndarray:
    s = np.asarray(sums, dtype=float)
    if s.ndim != 1 or len(s) == 0:
        raise RecistError(f"sums must be 1-D (timepoints,), baseline first; got shape {s.shape}")
    if not math.isfinite(s[0]) or s[0] <= 0:
        raise RecistError(f"sums[0] (the baseline sum) must be a finite number > 0; got {s[0]}")
    if np.any(s[np.isfinite(s)] < 0) or np.any(np.isinf(s)):
        raise RecistError("sums must be finite and >= 0 (NaN = not evaluable)")
    return s


def nadir(sums: Any) -> np.ndarray:
    """The reference for progression at each timepoint: the smallest sum before it.

    ``nadir_t = min(SLD_0, ..., SLD_{t-1})`` over the evaluable (non-NaN) sums, the
    baseline included (RECIST 1.1, sec. 4.3.1: "the smallest sum on study (this
    includes the baseline sum if that is the smallest on study)"); ``nadir_0 = SLD_0``.

    Examples
    --------
    >>> nadir([100.0, 60.0, np.nan, 80.0, 50.0]).tolist()
    [100.0, 100.0, 60.0, 60.0, 60.0]
    """
    s = _check_sums(sums)
    run = np.fmin.accumulate(s)
    return np.concatenate([s[:1], run[:-1]])


def percent_change_from_baseline(sums: Any) -> np.ndarray:
    """``100 (SLD_t - SLD_0) / SLD_0`` per timepoint (NaN where not evaluable).

    Examples
    --------
    >>> percent_change_from_baseline([50.0, 35.0, 40.0]).tolist()
    [0.0, -30.0, -20.0]
    """
    s = _check_sums(sums)
    return 100.0 * (s - s[0]) / s[0]


def percent_change_from_nadir(sums: Any) -> np.ndarray:
    """``100 (SLD_t - nadir_t) / nadir_t`` per timepoint, :func:`nadir` as reference.

    ``inf`` where the nadir is 0 mm and the sum grew (every target gone, then back);
    NaN where not evaluable.

    Examples
    --------
    >>> percent_change_from_nadir([100.0, 50.0, 60.0]).tolist()
    [0.0, -50.0, 20.0]
    """
    s = _check_sums(sums)
    nd = nadir(s)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 * (s - nd) / nd
    return np.where((nd == 0) & (s == 0), 0.0, out)


# ------------------------------------------------------------------- 4. responses


def target_response(
    long_axis_mm: Any,
    short_axis_mm: Any = None,
    nodal: Any = None,
    rules: RecistRules = RECIST_1_1,
) -> list[str]:
    """The target-lesion response at each follow-up (RECIST 1.1, sec. 4.3.1).

    Row 0 is baseline; for each follow-up t, with ``SLD`` the sum of diameters
    (:func:`sum_of_diameters`) and ``nadir_t`` the smallest evaluable sum before t:

    * CR: every non-nodal target is 0 mm and every nodal target's short axis is
      < 10 mm (``rules.cr_node_mm``; the sum need not be 0 with nodes);
    * PD: ``SLD_t - nadir_t >= 0.20 nadir_t`` and ``SLD_t - nadir_t >= 5 mm``;
    * PR: ``SLD_t - SLD_0 <= -0.30 SLD_0``;
    * SD: otherwise;
    * NE: a target not assessed (NaN), unless the targets that were assessed already
      meet PD (missing targets could only add to the sum; sec. 4.3.3).

    CR is tested before PD: nodes that all stay below 10 mm are normal even if their
    small sum grows by 20 % and 5 mm (our reading; the guideline does not order them).

    Parameters
    ----------
    long_axis_mm, short_axis_mm, nodal : as in :func:`sum_of_diameters`, with
        (timepoints, targets) arrays, baseline first; NaN = not assessed.
    rules : the thresholds.

    Returns
    -------
    list of "CR", "PR", "SD", "PD", "NE", one per follow-up (timepoints - 1).

    References
    ----------
    Eisenhauer E.A. et al. (2009), sec. 4.3.1, 4.3.3.

    Examples
    --------
    Baseline 100 mm, then 70 mm (-30 %), then 84 mm (+20 % and +14 mm over the nadir):

    >>> target_response([[60.0, 40.0], [42.0, 28.0], [50.0, 34.0]])
    ['PR', 'PD']
    """
    r = _check_rules(rules)
    D, nod, _ = _diameters_table(long_axis_mm, short_axis_mm, nodal)
    if len(D) < 1 or D.shape[1] == 0:
        raise RecistError("long_axis_mm needs a baseline row and at least one target")
    if not np.isfinite(D[0]).all():
        raise RecistError("every target must be measured at baseline (row 0 of the table)")
    complete = np.isfinite(D).all(1)
    full = np.where(complete, D.sum(1), np.nan)
    s0 = full[0]
    if s0 <= 0:
        raise RecistError("the baseline sum of diameters must be > 0")
    partial = np.nansum(D, 1)
    nd = nadir(full)
    out = []
    for t in range(1, len(D)):
        tol = _TOL * max(1.0, s0, nd[t])
        grow = partial[t] - nd[t]
        pd = grow >= r.pd_change_pct / 100.0 * nd[t] - tol and grow >= r.pd_min_increase_mm - tol
        cr = (
            complete[t]
            and bool(np.all(D[t, ~nod] <= tol))
            and bool(np.all(D[t, nod] < r.cr_node_mm - tol))
        )
        if cr:
            out.append("CR")
        elif pd:
            out.append("PD")
        elif not complete[t]:
            out.append("NE")
        elif full[t] - s0 <= r.pr_change_pct / 100.0 * s0 + tol:
            out.append("PR")
        else:
            out.append("SD")
    return out


def _check_choice(v: Any, allowed: Sequence[Any], name: str) -> Any:
    if v not in allowed:
        raise RecistError(f"{name} must be one of {list(allowed)}; got {v!r}")
    return v


def overall_response(
    target: str | None, non_target: str | None = None, new_lesions: bool = False
) -> str:
    """The overall response at one timepoint (RECIST 1.1, Tables 1 and 2).

    With target disease (``target`` one of :data:`RESPONSES`), Table 1: PD if the
    target response is PD, the non-target response is PD (unequivocal progression) or
    there is a new lesion; otherwise CR if targets and non-targets are CR (or there
    were no non-targets, ``non_target=None``); PR if targets are CR and non-targets are
    non-CR/non-PD or not evaluated, or targets are PR; SD if targets are SD; NE if
    targets are NE.

    Without target disease (``target=None``), Table 2: PD on a new lesion or
    non-target PD, else the non-target response ("CR", "non-CR/non-PD", "NE").

    Examples
    --------
    >>> overall_response("CR", "non-CR/non-PD"), overall_response("SD", None, True)
    ('PR', 'PD')
    """
    _check_choice(target, (*RESPONSES, None), "target")
    _check_choice(non_target, (*NON_TARGET_STATUSES, None), "non_target")
    if not isinstance(new_lesions, bool | np.bool_):
        raise RecistError(f"new_lesions must be True or False; got {new_lesions!r}")
    if new_lesions or target == "PD" or non_target == "PD":
        return "PD"
    if target is None:
        if non_target is None:
            raise RecistError("target and non_target are both None: no disease to assess")
        return non_target
    if target == "CR":
        return "CR" if non_target in ("CR", None) else "PR"
    return target


def timepoint_responses(
    long_axis_mm: Any,
    short_axis_mm: Any = None,
    nodal: Any = None,
    *,
    new_lesions: Any = None,
    non_target: Sequence[str | None] | None = None,
    rules: RecistRules = RECIST_1_1,
) -> list[str]:
    """The overall response at each follow-up: :func:`target_response` combined with
    the non-target status and new lesions by :func:`overall_response`.

    Parameters
    ----------
    long_axis_mm, short_axis_mm, nodal : the target table, baseline first.
    new_lesions : bool per follow-up (timepoints - 1), None = none seen.
    non_target : status per follow-up ("CR", "non-CR/non-PD", "PD", "NE"), or None
        when there were no non-target lesions at baseline.
    rules : the thresholds.

    Examples
    --------
    A new lesion is PD whatever the sum:

    >>> timepoint_responses([[50.0], [20.0]], new_lesions=[True])
    ['PD']
    """
    tr = target_response(long_axis_mm, short_axis_mm, nodal, rules)
    n = len(tr)
    new = np.zeros(n, bool) if new_lesions is None else np.asarray(new_lesions, bool).ravel()
    if new.shape != (n,):
        raise RecistError(f"new_lesions must have one flag per follow-up ({n}); got {new.shape}")
    nt = [None] * n if non_target is None else list(non_target)
    if len(nt) != n:
        raise RecistError(f"non_target must have one status per follow-up ({n}); got {len(nt)}")
    return [overall_response(tr[i], nt[i], bool(new[i])) for i in range(n)]


def best_overall_response(
    responses: Sequence[str],
    days: Sequence[float],
    *,
    min_sd_days: float = 42.0,
    confirmation_days: float | None = None,
) -> str:
    """The best overall response of one patient (RECIST 1.1, sec. 4.4).

    The best response recorded from the start of treatment until progression (the
    timepoints after the first PD are ignored), in the order CR > PR > SD > PD > NE:

    * CR or PR at any follow-up gives CR or PR (the *unconfirmed* best response, the
      default; trials with response as primary endpoint require confirmation);
    * SD counts only when a follow-up at least ``min_sd_days`` after baseline is SD or
      better (sec. 4.4.1: the protocol's minimum interval, often 6-8 weeks);
    * otherwise PD if a PD was recorded, else NE.

    With ``confirmation_days`` (e.g. 28), a CR counts only when a later CR is at least
    that many days after it, a PR (or an unconfirmed CR) only when a later PR or CR
    is; an unconfirmed one counts as SD (Table 3; its footnote on a CR re-read as PR is
    left to the reader).

    Parameters
    ----------
    responses : overall responses per follow-up, in time order.
    days : days from baseline of each follow-up.
    min_sd_days : minimum interval from baseline for SD.
    confirmation_days : None (unconfirmed) or the confirmation interval in days.

    Examples
    --------
    >>> best_overall_response(["SD", "PD"], [35, 70])
    'PD'
    >>> best_overall_response(["SD", "SD", "PD"], [35, 70, 105])
    'SD'
    """
    resp = [_check_choice(x, RESPONSES, "responses[i]") for x in responses]
    d = np.asarray(days, dtype=float).ravel()
    if d.shape != (len(resp),) or not np.all(np.isfinite(d)):
        raise RecistError(
            f"days must be finite, one per response ({len(resp)}); got shape {d.shape}"
        )
    if np.any(np.diff(d) < 0):
        raise RecistError("days must be in time order, as the responses are")
    if confirmation_days is not None and not (
        isinstance(confirmation_days, int | float) and confirmation_days >= 0
    ):
        raise RecistError(f"confirmation_days must be None or >= 0; got {confirmation_days!r}")
    if "PD" in resp:
        stop = resp.index("PD")
        resp, d, progressed = resp[:stop], d[:stop], True
    else:
        progressed = False
    if confirmation_days is not None:
        conf = []
        for i, x in enumerate(resp):
            later = [resp[j] for j in range(i + 1, len(resp)) if d[j] - d[i] >= confirmation_days]
            if x == "CR" and "CR" in later:
                conf.append("CR")
            elif x in ("CR", "PR") and ("CR" in later or "PR" in later):
                conf.append("PR")
            elif x in ("CR", "PR"):
                conf.append("SD")
            else:
                conf.append(x)
        resp = conf
    if "CR" in resp:
        return "CR"
    if "PR" in resp:
        return "PR"
    if any(x == "SD" and dd >= min_sd_days for x, dd in zip(resp, d, strict=True)):
        return "SD"
    return "PD" if progressed else "NE"


# ------------------------------------------------------------------- 5. agreement


def response_codes(categories: Any, ne: Literal["missing", "class"] = "missing") -> np.ndarray:
    """Response categories (strings) as the int codes of :mod:`agreement`.

    CR, PR, SD, PD are 0..3 (the ordinal scale); NE is -1 (not read) with
    ``ne="missing"`` or class 4 with ``ne="class"``; None or "" is -1.

    Examples
    --------
    >>> response_codes([["CR", "PR"], ["NE", None]]).tolist()
    [[0, 1], [-1, -1]]
    """
    _check_choice(ne, ("missing", "class"), "ne")
    a = np.asarray(categories, dtype=object)
    codes = {c: i for i, c in enumerate(RESPONSES)}
    codes["NE"] = -1 if ne == "missing" else 4
    flat = []
    for v in a.ravel():
        if v is None or v == "":
            flat.append(-1)
        elif isinstance(v, str) and v in codes:
            flat.append(codes[v])
        else:
            raise RecistError(f"categories must be {list(RESPONSES)} or None; got {v!r}")
    return np.array(flat, dtype=np.int64).reshape(a.shape)


def _codes2d(categories: Any, ne: str, name: str = "categories") -> tuple[np.ndarray, int]:
    x = response_codes(categories, ne)  # type: ignore[arg-type]
    if x.ndim != 2 or x.shape[1] < 2:
        raise RecistError(
            f"{name} must be (patient-timepoints, readers) with two readers or more; "
            f"got shape {x.shape}"
        )
    return x, 5 if ne == "class" else 4


def _discordance_features(x: np.ndarray) -> np.ndarray:
    read = x >= 0
    has2 = read.sum(1) >= 2
    big = np.iinfo(np.int64).max
    hi = np.where(read, x, -1).max(1)
    lo = np.where(read, x, big).min(1)
    return np.c_[has2 & (hi != lo), has2].astype(float)


def discordance_rate(ratings: Any) -> float:
    """Share of items (patient-timepoints) on which the readers' categories differ.

    Over the items with at least two reads: ``#{items where not all reads agree} /
    #{items}``. These are the cases a trial with independent central review sends to
    adjudication (for two readers it is 1 - percent agreement).

    Parameters
    ----------
    ratings : int array (items, readers) of codes, -1 = not read (see
        :func:`response_codes`), or the category strings themselves.

    References
    ----------
    Ford R. et al. (2009). Lessons learned from independent central review. Eur J
    Cancer 45:268-274.

    Examples
    --------
    >>> discordance_rate([["PR", "PR"], ["PR", "SD"], ["SD", "SD"], ["PD", "PD"]])
    0.25
    """
    x = np.asarray(ratings)
    if x.dtype.kind in "OUS":
        x = response_codes(x, "class")
    x = x.astype(np.int64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise RecistError(f"ratings must be (items, readers >= 2); got shape {x.shape}")
    f = _discordance_features(x)
    if f[:, 1].sum() == 0:
        raise RecistError("ratings: no item has two reads, so there is nothing to compare")
    return float(f[:, 0].sum() / f[:, 1].sum())


def _est(value: Any, res: Any = None, n: int | None = None, note: str | None = None) -> dict:
    if res is None:
        return Estimate(value, None, n, note).to_json()
    return Estimate(value, (res.ci_low, res.ci_high), n, note).to_json()


def response_agreement(
    categories: Any,
    *,
    ne: Literal["missing", "class"] = "missing",
    weights: Literal["linear", "quadratic"] | None = None,
    groups: Any = None,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Agreement of readers on response categories, per patient-timepoint.

    Percent agreement (mean share of agreeing reader pairs), Fleiss' kappa, Cohen's
    kappa per reader pair (unweighted, or ``weights`` on the ordinal CR < PR < SD < PD
    scale; then ``ne`` must be "missing") and the discordance rate
    (:func:`discordance_rate`), all from :mod:`multireader.stats.agreement`. With
    ``n_boot > 0`` each gets a percentile bootstrap interval over patient-timepoints,
    or over patients with ``groups`` (patient ids, one per row): pass every follow-up
    of a patient with the same id.

    Parameters
    ----------
    categories : (patient-timepoints, readers) of "CR", "PR", "SD", "PD", "NE" or None.
    ne : "missing" (an NE read is left out) or "class" (NE is a fifth category).
    weights : None, "linear" or "quadratic" for the pairwise kappa.
    groups, n_boot, level, seed : the bootstrap.

    Returns
    -------
    dict ``{"n_items", "n_readers", "percent_agreement", "fleiss_kappa",
    "discordance_rate"}`` (each ``{"value", "ci", "n", "note"}``) and
    ``"pairwise_cohen_kappa"`` (readers x readers, None where undefined).

    References
    ----------
    Cohen J. (1960); Fleiss J.L. (1971); see :mod:`multireader.stats.agreement`.

    Examples
    --------
    >>> cats = [["PR", "PR"], ["PR", "SD"], ["SD", "SD"], ["PD", "PD"]]
    >>> out = response_agreement(cats)
    >>> out["discordance_rate"]["value"], round(out["fleiss_kappa"]["value"], 3)
    (0.25, 0.619)
    """
    x, K = _codes2d(categories, ne)
    if weights is not None and ne == "class":
        raise RecistError("weights need the ordinal scale: use ne='missing' with weights")
    n_boot = check_n_boot(n_boot)
    level = check_level(level)
    g = group_codes(groups, len(x))
    f = _discordance_features(x)
    n = int(f[:, 1].sum())
    if n == 0:
        raise RecistError("categories: no patient-timepoint has two readers' categories")
    out: dict[str, Any] = {"n_items": n, "n_readers": int(x.shape[1])}
    for name, fn in (("percent_agreement", percent_agreement), ("fleiss_kappa", fleiss_kappa)):
        try:
            v = fn(x, K)
        except UndefinedStatisticError as e:
            out[name] = _est(None, None, n, str(e))
            continue
        res = bootstrap_ci(x, K, name, n_boot=n_boot, level=level, seed=seed, groups=g)
        out[name] = _est(v, res if n_boot else None, n)
    dis = f[:, 0].sum() / n
    res = None
    if n_boot:
        keep = f[:, 1] > 0
        res = bootstrap(
            f[keep],
            lambda s: s[..., 0] / s[..., 1],
            groups=None if g is None else g[keep],
            n_boot=n_boot,
            level=level,
            seed=seed,
        )
    out["discordance_rate"] = _est(dis, res, n)
    kappa, _ = pairwise_cohen_kappa(x, K, weights)
    out["pairwise_cohen_kappa"] = [
        [None if not np.isfinite(v) else float(v) for v in row] for row in kappa
    ]
    return out


def _check_values(values: Any, name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] < 2:
        raise RecistError(f"{name} must be (items, readers >= 2); got shape {v.shape}")
    if np.isinf(v).any():
        raise RecistError(f"{name} must be finite (NaN = not measured)")
    return v


def _within_features(v: np.ndarray) -> np.ndarray:
    fin = np.isfinite(v)
    m = fin.sum(1)
    ok = m >= 2
    mean = np.nanmean(np.where(fin[ok], v[ok], np.nan), 1)
    ss = np.nansum((v[ok] - mean[:, None]) ** 2, 1)
    return np.c_[ss, m[ok] - 1.0]


def repeatability_coefficient(values: Any, level: float = 0.95) -> dict[str, Any]:
    """Repeatability (or, across readers, reproducibility) coefficient.

    The within-subject SD pooled over items with at least two measurements,
    ``wSD = sqrt(sum_i sum_j (x_ij - xbar_i)^2 / sum_i (m_i - 1))``, and
    ``RC = z_{(1+level)/2} sqrt(2) wSD`` (2.77 wSD at 95 %): two measurements of the same
    item differ by less than RC in 95 % of cases. Across readers of the same images
    QIBA calls it the reproducibility coefficient; the formula is the same. The
    interval of wSD is the chi-square one with ``sum (m_i - 1)`` degrees of freedom
    (items independent; for a patient bootstrap see :func:`measurement_agreement`).

    Parameters
    ----------
    values : float array (items, readers), NaN = not measured.
    level : the coverage of RC and the confidence level of the intervals.

    Returns
    -------
    dict ``{"rc", "rc_ci", "wsd", "wsd_ci", "df", "n_items", "level"}``.

    References
    ----------
    Bland J.M., Altman D.G. (1999), sec. 4; Raunig D.L. et al. (2015), sec. 3.

    Examples
    --------
    >>> round(repeatability_coefficient([[10.0, 12.0], [20.0, 19.0], [30.0, 30.0]])["rc"], 3)
    2.53
    """
    level = check_level(level)
    v = _check_values(values)
    f = _within_features(v)
    df = float(f[:, 1].sum())
    if df == 0:
        raise RecistError("values: no item has two measurements")
    wsd = math.sqrt(f[:, 0].sum() / df)
    z = float(_st.norm.ppf(0.5 + level / 2)) * math.sqrt(2.0)
    a = (1 - level) / 2
    lo = wsd * math.sqrt(df / _st.chi2.ppf(1 - a, df))
    hi = wsd * math.sqrt(df / _st.chi2.ppf(a, df))
    return {
        "rc": z * wsd,
        "rc_ci": [z * lo, z * hi],
        "wsd": wsd,
        "wsd_ci": [lo, hi],
        "df": int(df),
        "n_items": int(len(f)),
        "level": level,
    }


def _icc_features(v: np.ndarray) -> np.ndarray:
    """Additive per-item features of the two-way ANOVA: 1, row sum, its square, the k
    column values and the sum of squares (centred, for numerical accuracy)."""
    y = v - v.mean()
    r = y.sum(1)
    return np.c_[np.ones(len(y)), r, r**2, y, (y**2).sum(1)]


def _icc_from_sums(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    N, R, A, C, Q = S[..., 0], S[..., 1], S[..., 2], S[..., 3 : 3 + k], S[..., 3 + k]
    corr = R**2 / (N * k)
    ssr = A / k - corr
    ssc = (C**2).sum(-1) / N - corr
    sse = np.maximum(Q - corr - ssr - ssc, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        msr, msc = ssr / (N - 1), ssc / (k - 1)
        mse = sse / ((N - 1) * (k - 1))
        icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / N)
        icc3 = (msr - mse) / (msr + (k - 1) * mse)
    return icc2, icc3


def measurement_agreement(
    values: Any,
    *,
    groups: Any = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Agreement of readers on a measurement: sums of diameters, percent changes, or the
    diameters of matched lesions.

    :func:`multireader.stats.agreement.continuous_summary` (the six ICCs with F-test
    intervals, interval Krippendorff's alpha, pairwise Bland-Altman) plus the
    :func:`repeatability_coefficient` and ICC(2,1) / ICC(3,1) with percentile bootstrap
    intervals over rows, or over patients with ``groups`` (patient ids, one per row):
    a patient's timepoints and lesions are not independent, so the F-test intervals
    are too narrow for them and the patient bootstrap is the one to report.

    Parameters
    ----------
    values : float array (rows, readers), NaN = not measured. Rows are
        patient-timepoints (sums, percent changes) or matched lesion-timepoints.
    groups, n_boot, level, seed : the bootstrap.

    Returns
    -------
    The dict of ``continuous_summary`` with ``"repeatability_coefficient"`` (RC as
    ``{"value", "ci", "n", "note"}``, ``"wsd"`` likewise) and ``"icc_bootstrap"``
    (``{"ICC(2,1)": ..., "ICC(3,1)": ...}`` on the rows every reader measured).

    References
    ----------
    Shrout P.E., Fleiss J.L. (1979); Bland J.M., Altman D.G. (1999); Raunig D.L. et al.
    (2015).
    """
    v = _check_values(values)
    n_boot = check_n_boot(n_boot)
    level = check_level(level)
    g = group_codes(groups, len(v))
    out = continuous_summary(v, level=level, n_boot=n_boot, seed=seed, groups=groups)
    f = _within_features(v)
    fin = np.isfinite(v)
    ok = fin.sum(1) >= 2
    z = float(_st.norm.ppf(0.5 + level / 2)) * math.sqrt(2.0)
    if f[:, 1].sum() > 0:
        res = bootstrap(
            f,
            lambda s: z * np.sqrt(s[..., 0] / s[..., 1]),
            groups=None if g is None else g[ok],
            n_boot=n_boot,
            level=level,
            seed=seed,
        )
        note = f"percentile bootstrap over {res.unit}s"
        out["repeatability_coefficient"] = _est(res.value, res, int(ok.sum()), note)
        ci = (res.ci_low / z, res.ci_high / z)
        out["wsd"] = Estimate(res.value / z, ci, int(ok.sum()), note).to_json()
    else:
        why = "no row has two measurements"
        out["repeatability_coefficient"] = _est(None, None, 0, why)
        out["wsd"] = _est(None, None, 0, why)
    complete = fin.all(1)
    k = v.shape[1]
    icc_out: dict[str, Any] = {}
    if complete.sum() >= 2:
        F = _icc_features(v[complete])
        for j, form in enumerate(("ICC(2,1)", "ICC(3,1)")):
            res = bootstrap(
                F,
                lambda s, j=j: _icc_from_sums(s, k)[j],
                groups=None if g is None else g[complete],
                n_boot=n_boot,
                level=level,
                seed=seed,
            )
            icc_out[form] = _est(res.value, res, int(complete.sum()), f"bootstrap over {res.unit}s")
    else:
        for form in ("ICC(2,1)", "ICC(3,1)"):
            icc_out[form] = _est(None, None, int(complete.sum()), "fewer than two complete rows")
    out["icc_bootstrap"] = icc_out
    return out


def target_selection_jaccard(a: Iterable[Any], b: Iterable[Any]) -> float:
    """Overlap of two readers' target lesions: ``|A & B| / |A | B|``.

    ``a`` and ``b`` are the ids of the lesions each reader chose as targets, in a common
    id space (match the readers' lesions first, e.g. with
    :func:`multireader.stats.lesions.match_readers`, and use the candidate ids).

    Raises
    ------
    UndefinedStatisticError
        neither reader chose a target (0/0).

    Examples
    --------
    >>> target_selection_jaccard(["L1", "L2", "L3"], ["L2", "L3", "L4"])
    0.5
    """
    A, B = _id_set(a, "a"), _id_set(b, "b")
    if not A | B:
        raise UndefinedStatisticError("neither reader chose a target: Jaccard is 0/0")
    return len(A & B) / len(A | B)


def _id_set(x: Any, name: str) -> set:
    if isinstance(x, str) or not isinstance(x, Iterable):
        raise RecistError(f"{name} must be a collection of lesion ids; got {x!r}")
    return set(x)


def pairwise_target_selection_jaccard(selections: Sequence[Iterable[Any]]) -> np.ndarray:
    """:func:`target_selection_jaccard` for every pair of readers: (R, R), diagonal 1,
    NaN where neither of a pair chose a target.

    Examples
    --------
    >>> pairwise_target_selection_jaccard([{"L1", "L2"}, {"L2"}]).tolist()
    [[1.0, 0.5], [0.5, 1.0]]
    """
    sets = [_id_set(s, f"selections[{i}]") for i, s in enumerate(selections)]
    R = len(sets)
    out = np.eye(R)
    for i in range(R):
        for j in range(i + 1, R):
            u = sets[i] | sets[j]
            out[i, j] = out[j, i] = len(sets[i] & sets[j]) / len(u) if u else np.nan
    return out


def _drift_test(
    pos: np.ndarray, s: np.ndarray, r: int, ref_readers: list[int], min_n: int
) -> dict[str, Any]:
    """Log ratio of reader r to the mean of ``ref_readers`` and its trend over sessions."""
    others = pos[:, ref_readers]
    cnt = np.isfinite(others).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.nansum(others, 1) / cnt
    ok = np.isfinite(pos[:, r]) & (cnt > 0)
    lr = np.log(pos[ok, r] / ref[ok])
    x = s[ok, r]
    rec: dict[str, Any] = {
        "reader": r,
        "reference_readers": list(ref_readers),
        "n": int(ok.sum()),
        "bias": float(np.exp(lr.mean())) if lr.size else None,
        "bias_by_session": {float(k): float(np.exp(lr[x == k].mean())) for k in np.unique(x)},
        "slope_per_session": None,
        "slope_p": None,
        "spearman_rho": None,
        "spearman_p": None,
    }
    if lr.size >= max(min_n, 3) and np.ptp(x) > 0:
        fit = _st.linregress(x, lr)
        if math.isfinite(fit.pvalue):
            rec["slope_per_session"], rec["slope_p"] = float(fit.slope), float(fit.pvalue)
            rec["_t"] = abs(fit.slope / fit.stderr) if fit.stderr > 0 else math.inf
        rho = _st.spearmanr(x, lr)
        if math.isfinite(rho.statistic):
            rec["spearman_rho"], rec["spearman_p"] = float(rho.statistic), float(rho.pvalue)
    return rec


def reader_drift(
    values: Any,
    session: Any,
    *,
    alpha: float = 0.05,
    min_n: int = 5,
) -> list[dict[str, Any]]:
    """Each reader's measurement bias against the others by reading session, and its trend.

    For reader r on each row (a matched lesion at a timepoint) that r and at least one
    reference reader measured (> 0 mm), the log ratio ``l = log(x_r / mean(x_ref))``.
    Per session index (the timepoint, or the order in which r read the cases) the bias
    is ``exp(mean l)`` (1.10 = 10 % larger than the others). The trend is the
    least-squares slope of l on the session index with its t-test, and Spearman's rho
    with its p-value (robust to outliers).

    A drifting reader also drags the others' reference, so that against "the others'
    mean" every reader would seem to drift. Readers are therefore flagged step by step
    (in the manner of Holm's step-down test): with the m readers not yet flagged as
    references, the reader with the strongest trend (largest |t|) is flagged when its
    p-value is below ``alpha / m``, and the others are tested again without it. When
    two readers are left, a trend between them cannot be attributed to either: both
    are flagged together. The reported statistics are those against the final
    reference (the readers not flagged, the reader itself left out).

    Parameters
    ----------
    values : float array (rows, readers) of diameters (mm), NaN = not measured.
    session : (rows,) session index shared by all readers, or (rows, readers) when each
        reader has their own reading order.
    alpha : family-wise level of the drift flags.
    min_n : fewer usable rows than this gives no test (None values, not flagged).

    Returns
    -------
    list per reader of dicts ``{"reader", "reference_readers", "n", "bias",
    "bias_by_session": {session: ratio}, "slope_per_session", "slope_p",
    "spearman_rho", "spearman_p", "drifting", "flag_step"}`` (None where undefined;
    ``flag_step`` is the step at which the reader was flagged).

    References
    ----------
    Bland J.M., Altman D.G. (1999) (log-ratio bias); Holm S. (1979). A simple
    sequentially rejective multiple test procedure. Scand J Stat 6:65-70.
    """
    v = _check_values(values)
    s = np.asarray(session, dtype=float)
    n_readers = v.shape[1]
    if s.shape == (len(v),):
        s = np.repeat(s[:, None], n_readers, 1)
    if s.shape != v.shape or not np.isfinite(s).all():
        raise RecistError(
            f"session must be finite, (rows,) or (rows, readers) = {v.shape}; got {s.shape}"
        )
    if not 0 < alpha < 1:
        raise RecistError(f"alpha must be strictly between 0 and 1; got {alpha!r}")
    pos = np.where(np.isfinite(v) & (v > 0), v, np.nan)
    flag_step: dict[int, int] = {}
    step = 0
    while True:
        free = [r for r in range(n_readers) if r not in flag_step]
        if len(free) < 2:
            break
        tests = [_drift_test(pos, s, r, [q for q in free if q != r], min_n) for r in free]
        tested = [t for t in tests if t["slope_p"] is not None]
        if not tested:
            break
        top = max(tested, key=lambda t: t["_t"])
        if top["slope_p"] >= alpha / len(free):
            break
        if len(free) == 2:
            for r in free:
                flag_step[r] = step
            break
        flag_step[top["reader"]] = step
        step += 1
    free = [r for r in range(n_readers) if r not in flag_step]
    out = []
    for r in range(n_readers):
        ref = [q for q in free if q != r] or [q for q in range(n_readers) if q != r]
        rec = _drift_test(pos, s, r, ref, min_n)
        rec.pop("_t", None)
        rec["drifting"] = r in flag_step
        rec["flag_step"] = flag_step.get(r)
        out.append(rec)
    return out
