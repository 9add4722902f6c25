"""Image-quality metrics: each checked against an independent computation or a known
analytic value, the dataset function's error handling and bulk write, the planted
degradations of the demo study, and the operator (SDK and delegated)."""

import json
import os

import numpy as np
import pytest
from helpers_plugin import form, op, run_queued
from scipy import ndimage

from multireader.analyses import quality
from multireader.analyses.quality import QualityError, image_quality


def _scene(size=256, seed=0):
    """A structured, noiseless CT-like slice (HU): air, body, lungs, bone, fine bars."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    hu = np.full((size, size), -1000.0)
    hu[(xx / 0.45) ** 2 + (yy / 0.35) ** 2 < 1] = 40.0
    hu[((xx - 0.2) / 0.12) ** 2 + (yy / 0.2) ** 2 < 1] = -850.0
    hu[((xx + 0.2) / 0.12) ** 2 + (yy / 0.2) ** 2 < 1] = -850.0
    hu[xx**2 + (yy - 0.25) ** 2 < 0.04**2] = 700.0
    bars = (np.abs(xx) < 0.05) & (np.abs(yy) < 0.2) & (np.sin(yy * size * 1.2) > 0)
    hu[bars] = 300.0
    return hu


# --- noise ------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [2.0, 10.0, 40.0])
def test_noise_recovers_sigma_of_added_gaussian_noise(sigma):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:300, :300].astype(float)
    # a ramp and a curve along one axis: Immerkaer's kernel removes both
    background = 40.0 + 0.5 * xx - 0.3 * yy + 0.01 * yy**2
    img = background + rng.normal(0, sigma, background.shape)
    assert quality.noise_sigma(img) == pytest.approx(sigma, rel=0.03)


def test_noise_ignores_edges_of_the_body_and_the_air_outside():
    rng = np.random.default_rng(2)
    hu = _scene(512) + rng.normal(0, 15.0, (512, 512))
    hu[_scene(512) == -1000.0] = -1024.0  # outside the body: flat, clipped air
    q = image_quality(hu, unit="HU")
    assert q["noise"] == pytest.approx(15.0, rel=0.05)
    # the whole image, without the body mask, sees the flat air and the edges instead
    assert quality.noise_sigma(hu) != pytest.approx(15.0, rel=0.05)


def test_noise_scales_with_the_noise():
    rng = np.random.default_rng(3)
    base = _scene(256)
    values = [
        image_quality(base + rng.normal(0, s, base.shape), unit="HU")["noise"]
        for s in (5, 10, 20, 40)
    ]
    assert np.all(np.diff(values) > 0)
    assert values[3] / values[0] == pytest.approx(8.0, rel=0.1)


# --- sharpness --------------------------------------------------------------------------


def test_laplacian_variance_matches_an_independent_convolution():
    rng = np.random.default_rng(4)
    img = _scene(200) + rng.normal(0, 10, (200, 200))
    kernel = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float)
    lap = ndimage.convolve(img, kernel)[1:-1, 1:-1]  # interior: no border rule involved
    assert quality.laplacian_variance(img) == pytest.approx(np.var(lap), rel=1e-4)


def test_laplacian_variance_of_white_noise_is_20_sigma_squared():
    rng = np.random.default_rng(5)
    img = rng.normal(0, 7.0, (400, 400))
    assert quality.laplacian_variance(img) == pytest.approx(20 * 49.0, rel=0.02)


def test_sharpness_falls_monotonically_with_blur():
    scene = _scene(256)
    # beyond about 2.5 px the detail left is below single precision's round-off
    sigmas = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    lap, freq = [], []
    for s in sigmas:
        img = ndimage.gaussian_filter(scene, s) if s else scene
        q = image_quality(img, unit="HU")
        lap.append(q["sharpness_laplacian"])
        freq.append(q["sharpness_frequency"])
    assert np.all(np.diff(lap) < 0), lap
    assert np.all(np.diff(freq) < 0), freq
    assert lap[-1] < lap[0] / 100 and freq[-1] < freq[0] / 100


def test_high_frequency_share_matches_a_full_fft_in_double_precision():
    rng = np.random.default_rng(6)
    img = _scene(128) + rng.normal(0, 20, (128, 128))
    img = img[:, :127]  # an odd width: the half-spectrum weights must still be right
    spec = np.fft.fft2(img - img.mean())
    power = np.abs(spec) ** 2
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.fftfreq(img.shape[1])[None, :]
    rho = np.hypot(fy, fx)
    expected = power[rho > 0.25].sum() / power[rho > 0].sum()
    assert quality.high_frequency_share(img) == pytest.approx(expected, rel=1e-4)


def test_high_frequency_share_analytic_values():
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 1, (512, 512))
    # white noise: the share of the frequency square outside the cutoff circle
    assert quality.high_frequency_share(noise, 0.25) == pytest.approx(1 - np.pi / 16, rel=0.01)
    x = np.arange(256)
    # whole numbers of periods (104 and 24 over 256 px), so no leakage between bins
    fine = np.tile(np.cos(2 * np.pi * 104 / 256 * x), (256, 1))
    coarse = np.tile(np.cos(2 * np.pi * 24 / 256 * x), (256, 1))
    assert quality.high_frequency_share(fine) == pytest.approx(1.0, abs=1e-6)
    assert quality.high_frequency_share(coarse) == pytest.approx(0.0, abs=1e-6)


# --- brightness, contrast, entropy, clipping -----------------------------------------------


def test_brightness_and_contrast_are_over_the_body_only():
    rng = np.random.default_rng(8)
    hu = np.rint(_scene(256) + rng.normal(0, 12, (256, 256))).astype(np.int16)
    body = hu > -500
    q = image_quality(hu, unit="HU", window=(40, 400))
    assert q["brightness"] == pytest.approx(hu[body].mean(), rel=1e-9)
    assert q["contrast"] == pytest.approx(hu[body].std(), rel=1e-9)
    assert q["contrast_window"] == pytest.approx(hu[body].std() / 400, rel=1e-9)
    assert q["foreground_fraction"] == pytest.approx(body.mean())
    # the float path (no integer histogram) gives the same numbers
    qf = image_quality(hu.astype(np.float32), unit="HU", window=(40, 400))
    for name in quality.QUALITY_METRICS:
        assert qf[name] == pytest.approx(q[name], rel=1e-6), name


def test_foreground_of_non_ct_is_otsu():
    from skimage.filters import threshold_otsu  # independent implementation

    rng = np.random.default_rng(9)
    img = np.where(_scene(256) > -500, 600.0, 80.0) + rng.normal(0, 20, (256, 256))
    img = np.rint(img).astype(np.uint16)
    q = image_quality(img, unit="")
    fg = img > threshold_otsu(img, nbins=256)
    assert q["foreground_fraction"] == pytest.approx(fg.mean(), abs=0.002)
    assert q["brightness"] == pytest.approx(img[fg].mean(), rel=0.002)


def test_entropy_known_values_and_against_scipy():
    from scipy.stats import entropy

    ramp = np.tile(np.arange(256, dtype=np.int16), (16, 1))  # every grey level once a row
    assert image_quality(ramp, unit="HU", window=(128, 256))["entropy"] == pytest.approx(8.0)
    two = np.where(np.arange(64)[:, None] < 32, 0, 100) + np.zeros((64, 64), int)
    assert image_quality(two, unit="HU", window=(50, 400))["entropy"] == pytest.approx(1.0)
    rng = np.random.default_rng(10)
    img = rng.normal(40, 60, (128, 128))
    hist, _ = np.histogram(np.clip(img, -160, 240 - 1e-9), bins=256, range=(-160, 240))
    q = image_quality(img, unit="HU", window=(40, 400))
    assert q["entropy"] == pytest.approx(entropy(hist, base=2), rel=1e-6)


def test_clipping_fractions_on_a_constructed_image():
    rng = np.random.default_rng(11)
    img = rng.integers(-900, 2000, (100, 100)).astype(np.int16)
    img.flat[:1000] = -1024  # 10 % at the minimum
    img.flat[1000:1500] = 3071  # 5 % at the maximum
    q = image_quality(img, unit="HU")
    assert q["clip_low"] == pytest.approx(0.10)
    assert q["clip_high"] == pytest.approx(0.05)
    # against a stored range the image does not reach: nothing is clipped at the top
    q = image_quality(img, unit="HU", value_range=(-1024, 4000))
    assert q["clip_low"] == pytest.approx(0.10) and q["clip_high"] == 0.0


# --- edge cases ----------------------------------------------------------------------------


def test_constant_image():
    q = image_quality(np.full((32, 32), 40, np.int16), unit="HU", window=(40, 400))
    assert q["sharpness_laplacian"] == 0.0 and q["sharpness_frequency"] == 0.0
    assert q["noise"] == 0.0 and q["entropy"] == 0.0 and q["contrast"] == 0.0
    assert q["clip_low"] == 1.0 and q["clip_high"] == 1.0 and q["brightness"] == 40.0


def test_all_air_falls_back_to_every_pixel():
    q = image_quality(np.full((16, 16), -1000.0), unit="HU")
    assert q["foreground_fraction"] == 0.0 and q["brightness"] == -1000.0


def test_bad_images_raise_with_the_reason():
    with pytest.raises(QualityError, match="2-D"):
        image_quality(np.zeros(100))
    with pytest.raises(QualityError, match="too small"):
        image_quality(np.zeros((2, 50)))
    bad = np.zeros((8, 8))
    bad[3, 3] = np.nan
    with pytest.raises(QualityError, match="1 non-finite"):
        image_quality(bad)
    with pytest.raises(ValueError, match="unknown quality metric"):
        image_quality(np.zeros((8, 8)), metrics=["sharpness"])


def test_metric_subset_window_and_colour():
    rng = np.random.default_rng(12)
    img = rng.normal(0, 5, (64, 64))
    q = image_quality(img, metrics=["noise", "brightness"])
    assert list(q) == ["brightness", "noise"]  # canonical order
    assert np.isnan(image_quality(img, window=(0, 0))["contrast_window"])
    rgb = np.stack([img, img, img], axis=-1)
    assert image_quality(rgb)["brightness"] == pytest.approx(
        image_quality(img.astype(np.float32))["brightness"], rel=1e-5
    )
    assert list(image_quality(img)) == list(quality.QUALITY_METRICS)


# --- compute_quality_metrics on a dataset ----------------------------------------------------


def _image_samples(dataset, folder, n=20, seed=0):
    import fiftyone as fo

    rng = np.random.default_rng(seed)
    samples, arrays = [], []
    for i in range(n):
        hu = np.rint(ndimage.gaussian_filter(_scene(64), i % 3) + rng.normal(0, 5 + i, (64, 64)))
        hu = hu.astype(np.int16)
        path = os.path.join(folder, f"im{i}.npy")
        np.save(path, hu)
        arrays.append(hu)
        samples.append(
            fo.Sample(
                filepath=os.path.join(folder, f"im{i}.png"),
                native_path=path,
                native_unit="HU",
                window_center=40.0,
                window_width=400.0,
            )
        )
    dataset.add_samples(samples)
    return arrays


def test_compute_writes_every_field_once_and_reports_bad_files(dataset, tmp_path, monkeypatch):
    import fiftyone as fo

    from multireader.core import bulk

    arrays = _image_samples(dataset, str(tmp_path), n=20)
    paths = dataset.values("native_path")
    os.remove(paths[3])
    with open(paths[5], "wb") as f:
        f.write(b"not an npy file")
    np.save(paths[7], np.zeros(10))
    dataset.add_sample(fo.Sample(filepath=str(tmp_path / "x.png")))  # no native array
    calls = []
    real = bulk.write_sample_fields
    monkeypatch.setattr(bulk, "write_sample_fields", lambda *a: calls.append(a) or real(*a))
    seen = []
    rep = quality.compute_quality_metrics(
        dataset, num_workers=2, progress=lambda f, m: seen.append(f)
    )
    assert len(calls) == 1
    assert rep["n_computed"] == 17 and rep["n_skipped"] == 0
    ids = dataset.values("id")
    assert [e["sample_id"] for e in rep["errors"]] == [ids[3], ids[5], ids[7], ids[20]]
    reasons = [e["reason"] for e in rep["errors"]]
    assert "file missing" in reasons[0]
    assert "cannot read" in reasons[1]
    assert "2-D" in reasons[2]
    assert "no native_path" in reasons[3]
    assert rep["errors"][0]["path"] == paths[3]
    assert rep["fields"] == [f"quality_{m}" for m in quality.QUALITY_METRICS]
    assert seen[-1] == 1.0 and seen == sorted(seen)
    for name in rep["fields"]:
        vals = dataset.values(name)
        assert [i for i, v in enumerate(vals) if v is None] == [3, 5, 7, 20]
    expected = image_quality(arrays[11], unit="HU", window=(40, 400))
    got = dataset.skip(11).first()
    for metric, value in expected.items():
        assert got[f"quality_{metric}"] == pytest.approx(value, rel=1e-9)
    info = dataset.get_field("quality_noise").info["multireader"]
    assert info["role"] == "quality" and "noisier" in info["direction"]


def test_parallel_equals_serial_and_skip_existing(dataset, tmp_path):
    _image_samples(dataset, str(tmp_path), n=24)
    quality.compute_quality_metrics(dataset, num_workers=1, metrics=["noise", "entropy"])
    serial = dataset.values("quality_noise")
    dataset.set_values("quality_noise", [None] * len(dataset))
    rep = quality.compute_quality_metrics(dataset, num_workers=2, metrics=["noise", "entropy"])
    assert rep["n_computed"] == 24
    assert dataset.values("quality_noise") == serial
    dataset.take(5, seed=0).set_field("quality_noise", None).save()
    rep = quality.compute_quality_metrics(dataset, metrics=["noise", "entropy"], skip_existing=True)
    assert rep["n_computed"] == 5 and rep["n_skipped"] == 19
    assert dataset.values("quality_noise") == serial
    assert not dataset.has_field("quality_sharpness_laplacian")


def test_dataset_without_native_arrays_is_refused(dataset):
    with pytest.raises(ValueError, match="native_path"):
        quality.compute_quality_metrics(dataset)


# --- the demo study's planted degradations ------------------------------------------------


def test_demo_blurred_and_low_dose_series_stand_out(demo_clone, demo_study):
    with open(demo_study.truth_path) as f:
        truth = json.load(f)
    rep = quality.compute_quality_metrics(demo_clone)
    assert rep["n_computed"] == len(demo_clone) and not rep["errors"]
    kind = {img["dicom_key"]: img["degradation"] for img in truth["images"].values()}
    keys, models = demo_clone.values(["dicom_key", "manufacturer_model"])
    cols = {m: np.array(demo_clone.values(f"quality_{m}")) for m in quality.QUALITY_METRICS}
    kinds = np.array([kind[k] or "clean" for k in keys])
    models = np.array(models)
    planted = truth["planted"]["degraded_images"]
    assert set(planted["kinds"]) == {"blurred", "low_dose"}
    blurred = kinds == "blurred"
    low_dose = kinds == "low_dose"
    for model in set(models[blurred]):
        clean = (kinds == "clean") & (models == model)
        assert clean.sum() >= 14
        for measure in ("sharpness_laplacian", "sharpness_frequency"):
            worst_clean = cols[measure][clean].min()
            best_blurred = cols[measure][blurred & (models == model)].max()
            assert best_blurred < worst_clean / 5, (model, measure)
    for model in set(models[low_dose]):
        clean = (kinds == "clean") & (models == model)
        assert cols["noise"][low_dose & (models == model)].min() > 3 * cols["noise"][clean].max()
    # the low-dose series is noisier than the noisy scanner too, by more than twice
    aurora = (kinds == "clean") & (models == "Aurora 16")
    assert cols["noise"][low_dose].min() > 2 * cols["noise"][aurora].max()
    assert cols["noise"][aurora].min() > cols["noise"][(kinds == "clean") & ~aurora].max()


# --- the operator ------------------------------------------------------------------------------


def test_operator_form_lists_every_metric(demo_dataset):
    properties = form("compute_quality_metrics", demo_dataset)
    assert properties["metrics"]["default"] == list(quality.QUALITY_METRICS)
    assert {"metrics", "target", "skip_existing", "num_workers", "delegate"} <= set(properties)


def test_operator_from_sdk_and_delegated(demo_clone):
    quality_op = op("compute_quality_metrics")
    view = demo_clone.limit(20)
    out = quality_op(view, metrics=["noise", "sharpness_laplacian"], num_workers=2)
    assert out["n_computed"] == 20 and out["n_errors"] == 0
    assert out["fields"] == ["quality_sharpness_laplacian", "quality_noise"]
    assert len(demo_clone.exists("quality_noise")) == 20  # only the view
    demo_clone.reload()
    groups = {g.name: g.paths for g in demo_clone.app_config.sidebar_groups}
    assert {"quality_noise", "quality_sharpness_laplacian"} <= set(groups["image quality"])

    quality_op(demo_clone, metrics=["entropy"], delegate=True)
    assert not demo_clone.has_field("quality_entropy")  # queued, not run
    result = run_queued("compute_quality_metrics", demo_clone)
    assert result["n_computed"] == len(demo_clone)
    assert len(demo_clone.exists("quality_entropy")) == len(demo_clone)


# --- the compiled kernels against a plain numpy reference ------------------------------------


def _reference_quality(hu: np.ndarray, window) -> dict:
    """Every metric the slow, obvious way: a full double-precision FFT, a convolution
    for the Laplacian, masks for the foreground statistics, a sort for the median."""
    x = hu.astype(np.float64)
    body = x > quality.CT_BODY_THRESHOLD_HU
    fg = x[body]
    spec = np.abs(np.fft.fft2(x - x.mean())) ** 2
    rho = np.hypot(np.fft.fftfreq(x.shape[0])[:, None], np.fft.fftfreq(x.shape[1])[None, :])
    lap = ndimage.convolve(x, np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float))[1:-1, 1:-1]
    kernel = np.outer([1, -2, 1], [1, -2, 1]).astype(float)
    resid = np.abs(ndimage.correlate(x, kernel))
    h, w = x.shape
    step = max(1, int(np.sqrt((h - 2) * (w - 2) / quality._NOISE_SAMPLES)))
    inside = ndimage.binary_erosion(body, np.ones((3, 3)), border_value=0)
    grid = np.zeros(x.shape, bool)
    grid[1 : h - 1 : step, 1 : w - 1 : step] = True
    r = np.sort(resid[grid & inside])
    lo = window[0] - window[1] / 2
    hist, _ = np.histogram(
        np.clip(fg, lo, lo + window[1] - 1e-9), bins=256, range=(lo, lo + window[1])
    )
    p = hist[hist > 0] / hist.sum()
    return {
        "brightness": fg.mean(),
        "contrast": fg.std(),
        "sharpness_laplacian": lap.var(),
        "sharpness_frequency": spec[rho > 0.25].sum() / spec[rho > 0].sum(),
        "entropy": -(p * np.log2(p)).sum(),
        "noise": r[r.size // 2] / (6 * 0.6744897501960817),
        "clip_low": (x == x.min()).mean(),
        "clip_high": (x == x.max()).mean(),
        "foreground_fraction": body.mean(),
    }


#: the stated tolerance of the fast path (docs/quality_metrics.md): relative, per metric
_FAST_TOLERANCE = {"sharpness_laplacian": 1e-4, "sharpness_frequency": 1e-4, "noise": 1e-6}


@pytest.mark.parametrize("size, blur", [(512, 0.0), (512, 2.0), (255, 1.0)])
def test_fast_metrics_match_a_plain_full_fft_reference(size, blur):
    rng = np.random.default_rng(13)
    scene = _scene(size)
    if blur:
        scene = ndimage.gaussian_filter(scene, blur)
    hu = np.clip(np.rint(scene + rng.normal(0, 15, scene.shape)), -1024, 3071).astype(np.int16)
    got = image_quality(hu, unit="HU", window=(40, 400))
    want = _reference_quality(hu, (40, 400))
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=_FAST_TOLERANCE.get(name, 1e-9)), name
    # the same image as floats goes through numpy and the float kernels: same numbers
    gotf = image_quality(hu.astype(np.float32), unit="HU", window=(40, 400))
    for name, value in want.items():
        assert gotf[name] == pytest.approx(value, rel=_FAST_TOLERANCE.get(name, 1e-6)), name


def test_noise_median_by_counting_equals_the_partition():
    # integer residuals take the counting path; the same image as floats, the partition
    rng = np.random.default_rng(14)
    for sigma in (0.4, 3.0, 200.0):
        hu = np.rint(_scene(128) + rng.normal(0, sigma, (128, 128))).astype(np.int16)
        for unit in ("HU", ""):  # with the body mask, and with Otsu's
            a = image_quality(hu, unit=unit, metrics=["noise"])["noise"]
            b = image_quality(hu.astype(np.float32), unit=unit, metrics=["noise"])["noise"]
            assert a == pytest.approx(b, rel=1e-6), (sigma, unit)
        assert quality.noise_sigma(hu) == pytest.approx(
            quality.noise_sigma(hu.astype(np.float64)), rel=1e-6
        )
