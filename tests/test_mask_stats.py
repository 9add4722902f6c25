"""Mask agreement, surface distances and STAPLE: hand-worked cases, brute force, SimpleITK."""

import itertools
import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.distance import cdist

from multireader.stats.masks import (
    Staple,
    dice,
    generalized_dice,
    iou,
    mask_sample_stats,
    pairwise_overlap,
    staple,
    staple_uncertainty,
    surface_distances,
)


# --------------------------------------------------------------------------- helpers
def _pixels(mask):
    return {tuple(p) for p in np.argwhere(np.asarray(mask) != 0)}


def _brute_dice(a, b):
    pa, pb = _pixels(a), _pixels(b)
    return 1.0 if not pa and not pb else 2 * len(pa & pb) / (len(pa) + len(pb))


def _brute_iou(a, b):
    pa, pb = _pixels(a), _pixels(b)
    return 1.0 if not pa | pb else len(pa & pb) / len(pa | pb)


def _brute_boundary(mask):
    """Foreground pixels with a background (or off-image) 4-neighbour, by explicit check."""
    m = np.asarray(mask) != 0
    h, w = m.shape
    pts = []
    for r, c in zip(*np.nonzero(m), strict=True):
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            rr, cc = r + dr, c + dc
            if not (0 <= rr < h and 0 <= cc < w) or not m[rr, cc]:
                pts.append((r, c))
                break
    return np.array(pts, dtype=float)


def _brute_surface(a, b, spacing):
    pa = _brute_boundary(a) * spacing
    pb = _brute_boundary(b) * spacing
    dist = cdist(pa, pb)
    d_ab, d_ba = dist.min(axis=1), dist.min(axis=0)
    return {
        "hd95": max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)),
        "msd": (d_ab.sum() + d_ba.sum()) / (len(d_ab) + len(d_ba)),
        "hd": max(d_ab.max(), d_ba.max()),
    }


def _random_blob(rng, shape=(48, 48), level=0.55, sigma=3.0):
    return ndimage.gaussian_filter(rng.random(shape), sigma) > level


def _reader_masks(rng, shape=(96, 96), n_readers=4):
    """A smooth ground truth with reader-specific under/over-segmentation and noise."""
    truth = ndimage.gaussian_filter(rng.random(shape), 4) > 0.52
    out = []
    for r in range(n_readers):
        m = truth.copy()
        if r % 2:
            m = ndimage.binary_dilation(m, iterations=r)
        elif r:
            m = ndimage.binary_erosion(m, iterations=r)
        m ^= ndimage.gaussian_filter(rng.random(shape), 2) > 0.6 + 0.02 * r
        out.append(m.astype(np.uint8))
    return np.stack(out)


def _sitk_staple(masks):
    f = sitk.STAPLEImageFilter()
    f.SetForegroundValue(1)
    out = f.Execute([sitk.GetImageFromArray(np.asarray(m, dtype=np.uint8)) for m in masks])
    return (
        sitk.GetArrayFromImage(out),
        np.array(f.GetSensitivity()),
        np.array(f.GetSpecificity()),
        f.GetElapsedIterations(),
    )


def _plain_staple(masks, tol=1e-7, max_iter=1000):
    """Per-pixel STAPLE written from Warfield et al. (2004), ITK's initialisation/stopping."""
    d = np.stack([np.asarray(m) != 0 for m in masks]).reshape(len(masks), -1).astype(float)
    w = d.mean(axis=0)
    g = w.mean()
    p_old = q_old = None
    for it in range(max_iter):
        p = (d * w).sum(axis=1) / w.sum()
        q = ((1 - d) * (1 - w)).sum(axis=1) / (1 - w).sum()
        a = g * np.prod(np.where(d == 1, p[:, None], 1 - p[:, None]), axis=0)
        b = (1 - g) * np.prod(np.where(d == 1, 1 - q[:, None], q[:, None]), axis=0)
        w = a / (a + b)
        if it > 0 and max(abs(p - p_old).max(), abs(q - q_old).max()) <= tol:
            break
        p_old, q_old = p, q
    return w.reshape(np.shape(masks[0])), p, q, it + 1


# --------------------------------------------------------------------------- dice / iou
def test_dice_iou_hand_worked():
    a = np.zeros((4, 4))
    a[:2, :2] = 1  # 4 pixels
    b = np.zeros((4, 4))
    b[:2, :3] = 1  # 6 pixels, 4 shared
    assert dice(a, b) == pytest.approx(2 * 4 / 10)
    assert iou(a, b) == pytest.approx(4 / 6)
    assert dice(a, np.zeros((4, 4))) == 0.0
    assert iou(a, np.zeros((4, 4))) == 0.0


def test_dice_iou_both_empty_is_agreement():
    z = np.zeros((5, 5), dtype=np.uint8)
    assert dice(z, z) == 1.0
    assert iou(z, z) == 1.0


def test_dice_iou_random_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(30):
        a, b = _random_blob(rng, (20, 20)), _random_blob(rng, (20, 20), level=0.5)
        assert dice(a, b) == pytest.approx(_brute_dice(a, b))
        assert iou(a, b) == pytest.approx(_brute_iou(a, b))
        d = dice(a, b)
        assert iou(a, b) == pytest.approx(d / (2 - d))


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"a \(4, 4\) and b \(4, 5\)"):
        dice(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="same shape"):
        iou(np.zeros((4, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="same shape"):
        surface_distances(np.ones((4, 4)), np.ones((5, 4)))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="a must be a 2-D"):
        dice(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        iou(np.full((2, 2), np.nan), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(np.ones((3, 3)), np.ones((3, 3)), spacing=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"masks\[2\] has shape \(3, 4\)"):
        pairwise_overlap([np.ones((3, 3)), None, np.ones((3, 4))])


# --------------------------------------------------------------------------- pairwise
def test_pairwise_overlap_with_missing_reader_and_brute_force():
    rng = np.random.default_rng(1)
    masks = [_random_blob(rng), None, _random_blob(rng), _random_blob(rng, level=0.6)]
    out = pairwise_overlap(masks)
    for i, j in itertools.product(range(4), repeat=2):
        if masks[i] is None or masks[j] is None:
            assert out["dice"][i][j] is None and out["iou"][i][j] is None
        else:
            assert out["dice"][i][j] == pytest.approx(_brute_dice(masks[i], masks[j]))
            assert out["iou"][i][j] == pytest.approx(_brute_iou(masks[i], masks[j]))


def test_pairwise_overlap_all_missing():
    assert pairwise_overlap([None, None]) == {"dice": [[None] * 2] * 2, "iou": [[None] * 2] * 2}


def test_generalized_dice_hand_worked_and_brute_force():
    a = np.zeros((4, 4))
    a[0, :2] = 1  # |A| = 2
    b = np.zeros((4, 4))
    b[0, :3] = 1  # |B| = 3, |A∩B| = 2
    c = np.zeros((4, 4))
    c[0, 1:4] = 1  # |C| = 3, |A∩C| = 1, |B∩C| = 2
    # 2 (2 + 1 + 2) / ((2+3) + (2+3) + (3+3)) = 10 / 16
    assert generalized_dice([a, b, None, c]) == pytest.approx(10 / 16)
    assert generalized_dice([a, b]) == pytest.approx(dice(a, b))

    rng = np.random.default_rng(2)
    for _ in range(10):
        ms = [_random_blob(rng, (16, 16), level=rng.uniform(0.45, 0.6)) for _ in range(4)]
        num = sum(2 * len(_pixels(x) & _pixels(y)) for x, y in itertools.combinations(ms, 2))
        den = sum(len(_pixels(x)) + len(_pixels(y)) for x, y in itertools.combinations(ms, 2))
        assert generalized_dice(ms) == pytest.approx(num / den)


def test_generalized_dice_edge_cases():
    z = np.zeros((3, 3))
    assert generalized_dice([z, z, None]) == 1.0
    assert generalized_dice([np.ones((3, 3))]) is None
    assert generalized_dice([None, None]) is None
    assert generalized_dice([]) is None


# --------------------------------------------------------------------------- distances
def test_surface_distances_hand_worked_anisotropic_squares():
    # Two 5x5 squares, B two rows below A; spacing 2 mm per row, 0.5 mm per column.
    # Distances from the 16 boundary pixels of A to B's boundary (B's by symmetry):
    # top row 5 x 4 mm; bottom row 0, .5, 1, .5, 0; left/right sides 2, 0, 0 each.
    a = np.zeros((12, 10), dtype=np.uint8)
    a[2:7, 3:8] = 1
    b = np.zeros_like(a)
    b[4:9, 3:8] = 1
    out = surface_distances(a, b, spacing=(2.0, 0.5))
    assert out["msd"] == pytest.approx(26 / 16)
    assert out["hd"] == pytest.approx(4.0)
    assert out["hd95"] == pytest.approx(4.0)  # 95th pct of 16 values: 14.25 -> 4.0


def test_surface_distances_random_against_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(25):
        a = _random_blob(rng, (32, 40), level=rng.uniform(0.5, 0.6))
        b = _random_blob(rng, (32, 40), level=rng.uniform(0.5, 0.6))
        if not a.any() or not b.any():
            continue
        sp = tuple(rng.uniform(0.3, 2.5, 2))
        ours, ref = surface_distances(a, b, sp), _brute_surface(a, b, np.array(sp))
        for key in ("hd95", "msd", "hd"):
            assert ours[key] == pytest.approx(ref[key], abs=1e-9), key


def test_hausdorff_matches_simpleitk():
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:64, :64]
    for _ in range(30):
        c1, c2 = rng.uniform(15, 50, 2), rng.uniform(15, 50, 2)
        r1, r2 = rng.uniform(3, 12, 2)
        a = ((yy - c1[0]) ** 2 + (xx - c1[1]) ** 2 <= r1**2).astype(np.uint8)
        b = ((yy - c2[0]) ** 2 + (xx - c2[1]) ** 2 <= r2**2).astype(np.uint8)
        row_mm, col_mm = rng.uniform(0.3, 2.0, 2)
        ia, ib = sitk.GetImageFromArray(a), sitk.GetImageFromArray(b)
        ia.SetSpacing((col_mm, row_mm))  # SimpleITK spacing is (x, y)
        ib.SetSpacing((col_mm, row_mm))
        f = sitk.HausdorffDistanceImageFilter()
        f.Execute(ia, ib)
        ours = surface_distances(a, b, (row_mm, col_mm))["hd"]
        assert ours == pytest.approx(f.GetHausdorffDistance(), abs=1e-6)


def test_surface_distances_edge_cases():
    z = np.zeros((8, 8))
    one = np.zeros((8, 8))
    one[3, 3] = 1
    assert surface_distances(z, z) == {"hd95": 0.0, "msd": 0.0, "hd": 0.0}
    assert surface_distances(one, z) == {"hd95": None, "msd": None, "hd": None}
    assert surface_distances(z, one) == {"hd95": None, "msd": None, "hd": None}
    assert surface_distances(one, one) == {"hd95": 0.0, "msd": 0.0, "hd": 0.0}
    full = np.ones((8, 8))  # the whole image: its boundary is the image edge
    assert surface_distances(full, full)["hd"] == 0.0
    other = np.zeros((8, 8))
    other[0, 7] = 1
    assert surface_distances(one, other, (1.0, 1.0))["hd"] == pytest.approx(math.hypot(3, 4))


# --------------------------------------------------------------------------- STAPLE
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_staple_matches_simpleitk(seed):
    masks = _reader_masks(np.random.default_rng(seed))
    prob, sens, spec, elapsed = _sitk_staple(masks)
    est = Staple().fit(masks)
    assert np.abs(est.probability_ - prob).max() <= 1e-3
    assert np.abs(est.sensitivity_ - sens).max() <= 1e-3
    assert np.abs(est.specificity_ - spec).max() <= 1e-3
    # In practice the match is to rounding; keep the stricter check too.
    assert np.abs(est.probability_ - prob).max() <= 1e-9
    assert est.converged_ and est.n_iter_ == elapsed + 1


def test_staple_random_against_plain_per_pixel_em():
    rng = np.random.default_rng(5)
    for n_readers in (2, 3, 5):
        masks = _reader_masks(rng, shape=(40, 40), n_readers=n_readers)
        w, p, q, n_iter = _plain_staple(masks)
        est = Staple().fit(list(masks))
        np.testing.assert_allclose(est.probability_, w, atol=1e-10)
        np.testing.assert_allclose(est.sensitivity_, p, atol=1e-10)
        np.testing.assert_allclose(est.specificity_, q, atol=1e-10)
        assert est.n_iter_ == n_iter


def test_staple_many_readers_unique_path():
    # > 20 readers takes the np.unique pattern path; compare with the plain EM.
    rng = np.random.default_rng(6)
    masks = _reader_masks(rng, shape=(24, 24), n_readers=22)
    w, p, q, _ = _plain_staple(masks)
    est = Staple().fit(masks)
    np.testing.assert_allclose(est.probability_, w, atol=1e-10)
    np.testing.assert_allclose(est.sensitivity_, p, atol=1e-10)


def test_staple_hand_worked_identical_readers():
    m = np.zeros((3, 8, 8), dtype=bool)
    m[:, 2:6, 2:6] = True
    est = Staple().fit(m)
    np.testing.assert_array_equal(est.probability_, m[0].astype(float))
    np.testing.assert_array_equal(est.sensitivity_, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(est.specificity_, [1.0, 1.0, 1.0])
    assert est.prior_ == pytest.approx(16 / 64)
    # One over-segmenting reader: 4 extra pixels of 48 true background -> q = 44/48.
    m[2, 2:6, 6] = True
    est = Staple().fit(m)
    assert est.specificity_[2] == pytest.approx(44 / 48)
    np.testing.assert_array_equal(est.fit_predict(m), m[0])


def test_staple_none_reader_is_skipped():
    masks = list(_reader_masks(np.random.default_rng(7), shape=(48, 48)))
    est = Staple().fit([masks[0], None, masks[1], masks[2]])
    ref = Staple().fit([masks[0], masks[1], masks[2]])
    np.testing.assert_array_equal(est.present_, [True, False, True, True])
    assert np.isnan(est.sensitivity_[1]) and np.isnan(est.specificity_[1])
    np.testing.assert_allclose(est.sensitivity_[[0, 2, 3]], ref.sensitivity_)
    np.testing.assert_allclose(est.probability_, ref.probability_)


def test_staple_edge_cases():
    z = np.zeros((3, 6, 6))
    est = Staple().fit(z)  # all readers empty: certain background, vacuous 1.0 rates
    np.testing.assert_array_equal(est.probability_, 0.0)
    np.testing.assert_array_equal(est.sensitivity_, 1.0)
    np.testing.assert_array_equal(est.specificity_, 1.0)
    assert est.converged_

    one = np.zeros((6, 6))
    one[1:3, 1:4] = 1
    res = staple([one])  # one reader: the consensus is that reader
    np.testing.assert_array_equal(res.probability, one)
    assert res.uncertainty == 0.0

    full = np.ones((2, 4, 4))
    np.testing.assert_array_equal(Staple().fit(full).probability_, 1.0)

    with pytest.raises(ValueError, match="no reader present"):
        Staple().fit([None, None])
    with pytest.raises(ValueError, match=r"masks\[1\] has shape"):
        Staple().fit([np.zeros((4, 4)), np.zeros((4, 5))])
    with pytest.raises(ValueError, match="prior"):
        Staple(prior=1.5).fit(z)
    with pytest.raises(ValueError, match="max_iter"):
        Staple(max_iter=0).fit(z)
    with pytest.raises(ValueError, match=r"\(R, H, W\)"):
        Staple().fit(np.zeros((4, 4)))


def test_staple_fixed_prior_and_max_iter_warning():
    masks = _reader_masks(np.random.default_rng(8), shape=(40, 40))
    est = Staple(prior=0.3).fit(masks)
    assert est.prior_ == 0.3
    with pytest.warns(RuntimeWarning, match="did not converge"):
        est = Staple(max_iter=2).fit(masks)
    assert est.n_iter_ == 2 and not est.converged_
    f = sitk.STAPLEImageFilter()
    f.SetForegroundValue(1)
    f.SetMaximumIterations(2)
    out = f.Execute([sitk.GetImageFromArray(m) for m in masks])
    np.testing.assert_allclose(est.probability_, sitk.GetArrayFromImage(out), atol=1e-9)


def test_staple_uncertainty_values():
    p = np.array([[0.5, 0.0], [1.0, 0.25]])
    h25 = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert staple_uncertainty(p) == pytest.approx((1.0 + 0 + 0 + h25) / 4)
    region = np.array([[True, False], [False, False]])
    assert staple_uncertainty(p, region=region) == pytest.approx(1.0)
    assert staple_uncertainty(p, region=np.zeros((2, 2), bool)) == 0.0
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        staple_uncertainty(np.array([[1.5]]))
    with pytest.raises(ValueError, match="region has shape"):
        staple_uncertainty(p, region=np.ones((3, 3), bool))


# --------------------------------------------------------------------------- per sample
def test_mask_sample_stats_consistent_with_single_functions():
    rng = np.random.default_rng(9)
    masks = list(_reader_masks(rng, shape=(64, 64)))
    masks[1] = None
    masks.append(np.zeros((64, 64)))  # a reader who saw no lesion
    sp = (0.7, 1.3)
    out = mask_sample_stats(masks, spacing=sp)
    assert out["n_readers"] == 4
    present = [0, 2, 3, 4]
    pairs = list(itertools.combinations(present, 2))
    assert out["mean_pairwise_dice"] == pytest.approx(
        np.mean([_brute_dice(masks[i], masks[j]) for i, j in pairs])
    )
    assert out["generalized_dice"] == pytest.approx(generalized_dice(masks))
    res = staple(masks)
    assert out["staple_uncertainty"] == pytest.approx(res.uncertainty)
    for i, j in itertools.product(range(5), repeat=2):
        if masks[i] is None or masks[j] is None:
            for key in ("pairwise_dice", "pairwise_iou", "pairwise_hd95", "pairwise_msd"):
                assert out[key][i][j] is None
            continue
        assert out["pairwise_dice"][i][j] == pytest.approx(_brute_dice(masks[i], masks[j]))
        assert out["pairwise_iou"][i][j] == pytest.approx(_brute_iou(masks[i], masks[j]))
        sd = surface_distances(masks[i], masks[j], sp)
        assert out["pairwise_hd95"][i][j] == pytest.approx(sd["hd95"])
        assert out["pairwise_msd"][i][j] == pytest.approx(sd["msd"])
    assert out["pairwise_hd95"][0][4] is None  # exactly one of the pair is empty


def test_mask_sample_stats_edge_cases():
    out = mask_sample_stats([None, None])
    assert out["n_readers"] == 0 and out["staple_uncertainty"] is None
    assert out["pairwise_dice"] == [[None, None], [None, None]]

    one = np.zeros((10, 10))
    one[2:5, 2:5] = 1
    out = mask_sample_stats([one, None])
    assert out["n_readers"] == 1
    assert out["mean_pairwise_dice"] is None and out["generalized_dice"] is None
    assert out["staple_uncertainty"] == 0.0
    assert out["pairwise_dice"][0][0] == 1.0 and out["pairwise_hd95"][0][0] == 0.0

    z = np.zeros((10, 10))
    out = mask_sample_stats([z, z, z])
    assert out["mean_pairwise_dice"] == 1.0 and out["generalized_dice"] == 1.0
    assert out["staple_uncertainty"] == 0.0 and out["pairwise_msd"][0][2] == 0.0

    with pytest.raises(ValueError, match="same shape"):
        mask_sample_stats([z, np.zeros((9, 10))])


def test_staple_posterior_stays_a_probability_on_a_real_near_degenerate_case():
    """Three demo readers' masks of one image (R1 eroded, R4 dilated) on which p and q
    reach 1 - 1e-16 and, unclipped, the posterior dipped to -3e-26."""
    import os

    path = os.path.join(os.path.dirname(__file__), "data", "staple_near_degenerate.npz")
    stack = np.unpackbits(np.load(path)["masks"], axis=-1).astype(bool)
    assert stack.shape == (3, 256, 256)
    fit = Staple().fit(stack)
    assert fit.probability_.min() >= 0.0 and fit.probability_.max() <= 1.0
    stats = mask_sample_stats(list(stack))
    assert 0.0 <= stats["staple_uncertainty"] <= 1.0
