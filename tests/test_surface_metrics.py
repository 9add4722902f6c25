"""3-D surface metrics (multireader.stats.surface) against hand-worked answers, a
brute-force oracle, MONAI 1.6.1 and DeepMind's ``surface_distance``.

Everything runs the real libraries on small volumes (at most 24 x 48 x 48).
"""

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import surface_distance as deepmind
import torch
from monai.metrics import (
    DiceMetric,
    HausdorffDistanceMetric,
    SurfaceDiceMetric,
    SurfaceDistanceMetric,
)
from monai.metrics.utils import get_edge_surface_distance
from scipy import ndimage
from scipy.spatial.distance import cdist

from multireader.errors import MultireaderError
from multireader.stats import surface
from multireader.stats.surface import (
    SurfaceMetricError,
    assd,
    dice,
    hd95,
    iou,
    nsd,
    pair_metrics,
    surface_distances,
)

SHAPE = (24, 48, 48)
SPACINGS = [(2.5, 0.8, 0.8), (1.0, 1.0, 1.0), (2.0, 0.7, 0.9)]


# --------------------------------------------------------------------------- helpers
def blob_pair(seed: int, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """Two correlated irregular blobs: thresholded smoothed noise, the second perturbed.

    Low thresholds make blobs that touch the edge of the volume, which exercises the
    "outside the volume is background" rule of the surface.
    """
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.standard_normal(shape), (1.5, 3, 3))
    base /= base.std()
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), (1, 2, 2))
    noise /= noise.std()
    thr = rng.uniform(-0.3, 1.2)
    a = base > thr
    b = base + 0.6 * noise > thr + rng.uniform(-0.2, 0.2)
    return a, b


def ball(shape, spacing, centre_mm, radius_mm) -> np.ndarray:
    grids = np.meshgrid(
        *[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)],
        indexing="ij",
        sparse=True,
    )
    return sum((g - c) ** 2 for g, c in zip(grids, centre_mm, strict=True)) <= radius_mm**2


def onehot(mask: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(mask)[None, None]
    return torch.cat([~t, t], dim=1).float()


def monai_values(a, b, spacing, tol) -> dict[str, float]:
    pred, gt = onehot(a), onehot(b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "dice": DiceMetric(include_background=False)(pred, gt).item(),
            "hd95": HausdorffDistanceMetric(percentile=95)(pred, gt, spacing=spacing).item(),
            "assd": SurfaceDistanceMetric(symmetric=True)(pred, gt, spacing=spacing).item(),
            "nsd": SurfaceDiceMetric(class_thresholds=[tol])(pred, gt, spacing=spacing).item(),
        }


def oracle_distances(a, b, spacing) -> tuple[np.ndarray, np.ndarray]:
    """All-pairs brute force over scipy's own erosion: independent of the module."""
    sa = a ^ ndimage.binary_erosion(a)
    sb = b ^ ndimage.binary_erosion(b)
    pa, pb = np.argwhere(sa) * np.array(spacing), np.argwhere(sb) * np.array(spacing)
    d = cdist(pa, pb)
    return d.min(axis=1), d.min(axis=0)


def z_shifted_box():
    """A 4 x 8 x 8 box and the same box one slice further along z."""
    a = np.zeros((10, 12, 12), bool)
    a[2:6, 2:10, 2:10] = True
    return a, np.roll(a, 1, axis=0)


SP = (2.5, 0.8, 0.8)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """MONAI on one thread: on a shared 2-core machine more threads only contend."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# --------------------------------------------------------------------------- worked examples
def test_z_shift_by_hand():
    """Every number of a one-slice shift at dz = 2.5 mm, counted by hand.

    Surface of the 4x8x8 box: the two end slices (64 voxels each) and a ring of 28 on
    each of the two middle slices: 184 voxels. From A to B (B is A one slice up):
    A's bottom slice is 2.5 mm from B's bottom slice (64 x 2.5); A's two rings lie on
    B's surface (56 x 0); A's top slice: its ring is on B's ring (28 x 0), its 6x6
    interior is 0.8, 1.6 or 2.4 mm in-plane from that ring (20, 12 and 4 voxels), nearer
    than B's top slice at 2.5 mm. B to A is the mirror image.
    """
    a, b = z_shifted_box()
    d_ab, d_ba = surface_distances(a, b, SP)
    expected = np.sort(np.r_[np.full(84, 0.0), [0.8] * 20, [1.6] * 12, [2.4] * 4, [2.5] * 64])
    np.testing.assert_allclose(np.sort(d_ab), expected, atol=1e-12)
    np.testing.assert_allclose(np.sort(d_ba), expected, atol=1e-12)

    assert dice(a, b) == pytest.approx(2 * 192 / 512)
    assert iou(a, b) == pytest.approx(192 / 320)
    # P95 of 184 values: position 0.95 * 183 = 173.85, inside the 64 values of 2.5
    assert hd95(a, b, SP) == pytest.approx(2.5)
    total = 64 * 2.5 + 20 * 0.8 + 12 * 1.6 + 4 * 2.4
    assert assd(a, b, SP) == pytest.approx(total / 184)
    assert assd(a, b, SP, pooled=False) == pytest.approx(total / 184)
    assert nsd(a, b, SP, 1.0) == pytest.approx(104 / 184)
    assert nsd(a, b, SP, 2.4) == pytest.approx(120 / 184)
    # the tie: distances of exactly 2.5 mm count as within a 2.5 mm tolerance
    assert nsd(a, b, SP, 2.5) == 1.0
    m = pair_metrics(a, b, SP, tolerance_mm=1.0)
    assert m["volume_a_ml"] == pytest.approx(256 * 2.5 * 0.8 * 0.8 / 1000)
    assert m["volume_b_ml"] == m["volume_a_ml"]


def test_concentric_cubes():
    """A 10-voxel cube around a 6-voxel one, 2 voxels of gap on every side.

    Every inner surface voxel is exactly 2 voxels (along one axis) from the outer
    surface; outer surface voxels are between 2 (face centres) and 2*sqrt(3) (corners).
    """
    outer = np.zeros((14, 14, 14), bool)
    outer[2:12, 2:12, 2:12] = True
    inner = np.zeros_like(outer)
    inner[4:10, 4:10, 4:10] = True
    sp = (1.5, 1.5, 1.5)
    d_oi, d_io = surface_distances(outer, inner, sp)
    np.testing.assert_allclose(d_io, 3.0)  # 2 voxels x 1.5 mm
    assert d_oi.min() == pytest.approx(3.0)
    assert d_oi.max() == pytest.approx(3.0 * math.sqrt(3))
    assert dice(outer, inner) == pytest.approx(2 * 216 / (1000 + 216))
    assert iou(outer, inner) == pytest.approx(216 / 1000)
    assert nsd(outer, inner, sp, 2.9) == 0.0
    assert nsd(outer, inner, sp, 3.0 * math.sqrt(3)) == 1.0
    # HD95 = max of the two directed P95s; the inner one is 3.0 everywhere
    assert hd95(outer, inner, sp) == pytest.approx(np.percentile(d_oi, 95))
    assert hd95(outer, inner, sp) > 3.0


def test_single_voxels_are_their_own_surface():
    a = np.zeros((5, 6, 7), bool)
    b = np.zeros_like(a)
    a[1, 2, 3] = True
    b[3, 5, 1] = True
    expect = math.sqrt((2 * 2.5) ** 2 + (3 * 0.8) ** 2 + (2 * 0.7) ** 2)
    d_ab, d_ba = surface_distances(a, b, (2.5, 0.8, 0.7))
    np.testing.assert_allclose(d_ab, [expect])
    np.testing.assert_allclose(d_ba, [expect])
    assert hd95(a, b, (2.5, 0.8, 0.7)) == pytest.approx(expect)


def test_identical_masks():
    a, _ = blob_pair(3)
    m = pair_metrics(a, a, SP, tolerance_mm=0.0)
    assert m["dice"] == m["iou"] == m["nsd"] == 1.0
    assert m["hd95"] == m["assd"] == 0.0


# --------------------------------------------------------------------------- definitions
@pytest.mark.parametrize("seed", range(4))
def test_surface_distances_match_brute_force(seed):
    a, b = blob_pair(seed, shape=(10, 20, 20))
    sp = SPACINGS[seed % len(SPACINGS)]
    d_ab, d_ba = surface_distances(a, b, sp)
    o_ab, o_ba = oracle_distances(a, b, sp)
    np.testing.assert_allclose(d_ab, o_ab, atol=1e-12)  # same voxels, same raster order
    np.testing.assert_allclose(d_ba, o_ba, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_edt_and_kdtree_paths_agree(seed):
    a, b = blob_pair(seed)
    pair = surface._Pair(a, b, (2.0, 0.7, 0.9))
    for e, k in zip(pair.distances("edt"), pair.distances("kdtree"), strict=True):
        np.testing.assert_allclose(e, k, rtol=0, atol=1e-12)


def test_surface_is_mask_xor_scipy_erosion():
    for seed in range(3):
        a, _ = blob_pair(seed)
        np.testing.assert_array_equal(surface._surface(a), a ^ ndimage.binary_erosion(a))


def test_numeric_masks_equal_boolean():
    a, b = blob_pair(1)
    ref = pair_metrics(a, b, SP)
    assert pair_metrics(a.astype(np.uint8), b.astype(np.float32) * 3, SP) == ref


def test_pair_metrics_equal_single_functions():
    a, b = blob_pair(2)
    m = pair_metrics(a, b, SP, tolerance_mm=1.5)
    assert m["dice"] == dice(a, b)
    assert m["iou"] == iou(a, b)
    assert m["hd95"] == hd95(a, b, SP)
    assert m["assd"] == assd(a, b, SP)
    assert m["nsd"] == nsd(a, b, SP, 1.5)
    assert m["volume_a_ml"] == pytest.approx(a.sum() * 2.5 * 0.8 * 0.8 / 1000)


def test_assd_pooled_and_mean_of_means():
    """Pooled weighs each surface voxel once; the other weighs each direction once."""
    a = np.zeros((12, 30, 30), bool)
    a[2:10, 3:27, 3:27] = True
    b = np.zeros_like(a)
    b[4:8, 10:16, 10:16] = True  # a much smaller surface
    d_ab, d_ba = surface_distances(a, b, SP)
    assert assd(a, b, SP) == pytest.approx(np.concatenate([d_ab, d_ba]).mean())
    assert assd(a, b, SP, pooled=False) == pytest.approx((d_ab.mean() + d_ba.mean()) / 2)
    assert abs(assd(a, b, SP) - assd(a, b, SP, pooled=False)) > 0.5


def test_metrics_are_symmetric():
    a, b = blob_pair(4)
    m_ab, m_ba = pair_metrics(a, b, SP, 1.0), pair_metrics(b, a, SP, 1.0)
    assert m_ab["hd95"] == m_ba["hd95"]
    assert m_ab["nsd"] == m_ba["nsd"]
    assert m_ab["assd"] == pytest.approx(m_ba["assd"], rel=1e-12)
    assert m_ab["dice"] == m_ba["dice"]


# --------------------------------------------------------------------------- MONAI 1.6.1
@pytest.mark.parametrize("seed", range(6))
def test_against_monai_random_blobs(seed):
    a, b = blob_pair(seed)
    sp = SPACINGS[seed % len(SPACINGS)]
    tol = [1.0, 1.5, 2.5][seed % 3]
    assert a.any() and b.any() and (a != b).any()
    ours = pair_metrics(a, b, sp, tolerance_mm=tol)
    peer = monai_values(a, b, sp, tol)
    # MONAI returns float32; its distances are float32 too
    for key in ("dice", "hd95", "assd", "nsd"):
        assert ours[key] == pytest.approx(peer[key], rel=2e-6, abs=1e-6), key


@pytest.mark.parametrize("seed", range(3))
def test_against_monai_perturbed_spheres(seed):
    rng = np.random.default_rng(100 + seed)
    sp = SPACINGS[seed]
    extent = np.array(SHAPE) * sp
    centre = extent / 2
    r = 0.3 * extent.min()
    a = ball(SHAPE, sp, centre, r)
    b = ball(SHAPE, sp, centre + rng.uniform(-1.5, 1.5, 3), r + rng.uniform(-1.5, 1.5))
    ours = pair_metrics(a, b, sp, tolerance_mm=1.0)
    peer = monai_values(a, b, sp, 1.0)
    for key in ("dice", "hd95", "assd", "nsd"):
        assert ours[key] == pytest.approx(peer[key], rel=2e-6, abs=1e-6), key


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")
def test_directed_distances_equal_monai_elementwise():
    """Same surface voxels, same surface target, same order as MONAI's distances."""
    a, b = blob_pair(5)
    sp = (2.0, 0.7, 0.9)
    _, (m_ab, m_ba), _ = get_edge_surface_distance(
        torch.from_numpy(a), torch.from_numpy(b), spacing=sp, symmetric=True
    )
    d_ab, d_ba = surface_distances(a, b, sp)
    np.testing.assert_allclose(d_ab, m_ab.numpy(), rtol=1e-6)
    np.testing.assert_allclose(d_ba, m_ba.numpy(), rtol=1e-6)


def test_mask_filling_the_volume_against_monai():
    """All-foreground: the surface is the edge of the volume, as in MONAI."""
    a = np.ones((8, 16, 16), bool)
    b = a.copy()
    b[:, :, 12:] = False
    ours = pair_metrics(a, b, SP, tolerance_mm=1.0)
    peer = monai_values(a, b, SP, 1.0)
    for key in ("dice", "hd95", "assd", "nsd"):
        assert ours[key] == pytest.approx(peer[key], rel=2e-6, abs=1e-6), key


# --------------------------------------------------------------------------- DeepMind
def test_against_deepmind_dice_exact():
    """Volumetric Dice is the same definition in both: voxel counts."""
    for seed in range(3):
        a, b = blob_pair(seed)
        assert dice(a, b) == pytest.approx(deepmind.compute_dice_coefficient(a, b), abs=1e-12)


@pytest.mark.parametrize("sp", SPACINGS)
def test_against_deepmind_smooth_spheres(sp):
    """Different by definition: DeepMind's surfels sit on voxel corners, weighted by area.

    Stated loose tolerances, on spheres of radius 30 % of the volume's shortest extent
    (found on 24 random such pairs: worst 0.26 voxel diagonal for HD95, 0.29 of the
    largest voxel side for ASSD, 0.13 / 0.09 for NSD at 1x / 2x the largest side):

    - HD95 within half a voxel diagonal;
    - ASSD (DeepMind's mean of the two area-weighted directed means) within half the
      largest voxel side;
    - NSD within 0.2 at a tolerance of one largest voxel side, 0.1 at two.
    """
    rng = np.random.default_rng(7)
    extent = np.array(SHAPE) * sp
    diag = float(np.sqrt(np.sum(np.square(sp))))
    big = max(sp)
    for _ in range(3):
        r = 0.3 * extent.min()
        a = ball(SHAPE, sp, extent / 2, r)
        b = ball(SHAPE, sp, extent / 2 + rng.uniform(-2, 2, 3), r + rng.uniform(0, 3))
        dm = deepmind.compute_surface_distances(a, b, sp)
        assert hd95(a, b, sp) == pytest.approx(
            deepmind.compute_robust_hausdorff(dm, 95), abs=0.5 * diag
        )
        dm_assd = float(np.mean(deepmind.compute_average_surface_distance(dm)))
        assert assd(a, b, sp, pooled=False) == pytest.approx(dm_assd, abs=0.5 * big)
        for k, tol in ((1, 0.2), (2, 0.1)):
            assert nsd(a, b, sp, k * big) == pytest.approx(
                deepmind.compute_surface_dice_at_tolerance(dm, k * big), abs=tol
            )


def test_deepmind_and_ours_agree_on_identical_and_far_apart():
    a = ball(SHAPE, SP, np.array(SHAPE) * SP / 2, 12.0)
    dm = deepmind.compute_surface_distances(a, a, SP)
    assert nsd(a, a, SP, 0.0) == deepmind.compute_surface_dice_at_tolerance(dm, 0.0) == 1.0
    assert hd95(a, a, SP) == deepmind.compute_robust_hausdorff(dm, 95) == 0.0
    centre = np.array(SHAPE) * SP / 2
    a = ball(SHAPE, SP, centre - [0, 0, 11], 6.0)
    b = ball(SHAPE, SP, centre + [0, 0, 11], 6.0)  # 10 mm apart
    dm = deepmind.compute_surface_distances(a, b, SP)
    assert nsd(a, b, SP, 1.0) == deepmind.compute_surface_dice_at_tolerance(dm, 1.0) == 0.0


# --------------------------------------------------------------------------- empty masks
@pytest.mark.parametrize("order", ["a_empty", "b_empty"])
def test_one_mask_empty_matches_monai_convention(order):
    full, _ = blob_pair(0)
    empty = np.zeros_like(full)
    a, b = (empty, full) if order == "a_empty" else (full, empty)
    m = pair_metrics(a, b, SP, tolerance_mm=1.0)
    assert math.isnan(m["hd95"])  # MONAI 1.6.1: nan (quantile of inf distances)
    assert m["assd"] == math.inf
    assert m["nsd"] == 0.0
    assert m["dice"] == 0.0 and m["iou"] == 0.0
    peer = monai_values(a, b, SP, 1.0)
    assert math.isnan(peer["hd95"])
    assert peer["assd"] == math.inf
    assert peer["nsd"] == 0.0
    d_ab, d_ba = surface_distances(a, b, SP)
    n_surface = int((full ^ ndimage.binary_erosion(full)).sum())
    if order == "b_empty":
        assert d_ab.shape == (n_surface,) and np.isinf(d_ab).all() and d_ba.size == 0
    else:
        assert d_ba.shape == (n_surface,) and np.isinf(d_ba).all() and d_ab.size == 0


def test_both_empty_is_nan_like_monai():
    e = np.zeros(SHAPE, bool)
    m = pair_metrics(e, e, SP)
    assert m["volume_a_ml"] == m["volume_b_ml"] == 0.0
    for key in ("dice", "iou", "hd95", "assd", "nsd"):
        assert math.isnan(m[key]), key
    assert math.isnan(dice(e, e)) and math.isnan(iou(e, e))
    assert math.isnan(hd95(e, e, SP)) and math.isnan(assd(e, e, SP))
    assert math.isnan(nsd(e, e, SP, 1.0))
    d_ab, d_ba = surface_distances(e, e, SP)
    assert d_ab.size == d_ba.size == 0
    peer = monai_values(e, e, SP, 1.0)
    assert all(math.isnan(v) for v in peer.values())


# --------------------------------------------------------------------------- validation
def test_shape_mismatch_names_both_shapes():
    with pytest.raises(SurfaceMetricError, match=r"\(4, 5, 6\).*\(4, 5, 7\)"):
        pair_metrics(np.zeros((4, 5, 6), bool), np.zeros((4, 5, 7), bool), SP)


def test_error_family():
    assert issubclass(SurfaceMetricError, MultireaderError)
    assert issubclass(SurfaceMetricError, ValueError)


@pytest.mark.parametrize(
    "spacing",
    [(1.0, 1.0), (1.0, 1.0, 1.0, 1.0), (0.0, 1.0, 1.0), (1.0, -0.5, 1.0), (1.0, 1.0, math.nan)]
    + [(1.0, math.inf, 1.0), 2.5, None, ("a", 1, 1)],
)
def test_bad_spacing(spacing):
    a = np.zeros((3, 4, 5), bool)
    with pytest.raises(SurfaceMetricError, match="spacing"):
        hd95(a, a, spacing)


@pytest.mark.parametrize("tol", [-0.1, math.nan, math.inf, "x", None])
def test_bad_tolerance(tol):
    a = np.zeros((3, 4, 5), bool)
    with pytest.raises(SurfaceMetricError, match="tolerance_mm"):
        nsd(a, a, SP, tol)
    with pytest.raises(SurfaceMetricError, match="tolerance_mm"):
        pair_metrics(a, a, SP, tol)


def test_bad_masks():
    good = np.zeros((3, 4, 5), bool)
    with pytest.raises(SurfaceMetricError, match=r"3-D.*\(4, 5\)"):
        dice(np.zeros((4, 5)), np.zeros((4, 5)))
    with pytest.raises(SurfaceMetricError, match="NaN"):
        iou(np.full((3, 4, 5), np.nan), good)
    with pytest.raises(SurfaceMetricError, match="dtype"):
        surface_distances(np.full((3, 4, 5), "x"), good, SP)


def test_module_imports_neither_torch_nor_monai_nor_fiftyone():
    code = (
        "import sys; import multireader.stats.surface; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'monai', 'fiftyone')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = __file__.rsplit("/tests/", 1)[0]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_docstring_examples():
    import doctest

    result = doctest.testmod(surface, extraglobs={"np": np})
    assert result.attempted >= 15 and result.failed == 0
