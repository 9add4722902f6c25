"""Image-quality metrics computed on native pixel values (HU for CT), not on the render.

Each sample's ``.npy`` of native values (written by the importer) is measured for
brightness, contrast, sharpness, entropy, noise and clipping; the numbers land in
``quality_<metric>`` fields, so blurred, noisy or saturated images can be found,
sorted and clustered next to the readers' disagreement. Formulas, units, directions
and sources are in ``docs/quality_metrics.md`` and in :data:`METRIC_INFO`.

Foreground: on CT (``unit="HU"``) the body is every pixel above
:data:`CT_BODY_THRESHOLD_HU`, so the air around the patient does not dominate the
statistics; for other units it is every pixel above Otsu's threshold (Otsu 1979) of a
256-bin histogram of the image. Brightness, contrast, entropy and noise are taken over
the foreground; sharpness and clipping over the whole image.

Speed and precision: the pixel loops (histogram, Laplacian sums, noise residuals and
their median, the power-spectrum sums) are compiled with numba
(:mod:`multireader.analyses.quality_kernels`) and the full-image FFT is torch's (MKL on
x86, one thread), about 2.2x faster than the numpy/scipy code they replaced. The
metrics are the same; only round-off moved. Stated tolerance against the previous
implementation and against a plain double-precision reference (full FFT, convolution,
sort; ``tests/test_quality.py``): relative 1e-4 for ``sharpness_laplacian`` and
``sharpness_frequency``, 1e-6 for ``noise``, identical for the others. Measured on the
demo study's 336 slices (256 x 256): at most 5.5e-6 (Laplacian, now exact in double
precision where single precision was used), 1.2e-6 (frequency share), 6.2e-8 (noise,
no longer rounded to single precision); on 200 512 x 512 slices 3.0e-5, 6.2e-6, 6.2e-8.

References
----------
Pech-Pacheco, J. L., Cristobal, G., Chamorro-Martinez, J., Fernandez-Valdivia, J.
(2000). Diatom autofocusing in brightfield microscopy: a comparative study. ICPR 2000,
vol. 3, 314-317.

De, K., Masilamani, V. (2013). Image sharpness measure for blurred images in frequency
domain. Procedia Engineering 64, 149-158.

Immerkaer, J. (1996). Fast noise variance estimation. Computer Vision and Image
Understanding 64(2), 300-302.

Donoho, D. L., Johnstone, I. M. (1994). Ideal spatial adaptation by wavelet shrinkage.
Biometrika 81(3), 425-455 (the median-absolute-deviation noise rule).

Otsu, N. (1979). A threshold selection method from gray-level histograms. IEEE Trans.
Systems, Man, and Cybernetics 9(1), 62-66.

Peli, E. (1990). Contrast in complex images. JOSA A 7(10), 2032-2040 (RMS contrast).

Shannon, C. E. (1948). A mathematical theory of communication. Bell System Technical
Journal 27, 379-423.
"""

from __future__ import annotations

import functools
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from multireader.core import fields as F
from multireader.core.parallel import mp_context
from multireader.errors import MultireaderError
from multireader.progress import ProgressFn, report

#: metric names, in order; each is stored in the field ``quality_<name>``
QUALITY_METRICS: tuple[str, ...] = F.QUALITY_METRIC_NAMES

#: ``name -> (unit, direction)``; "native" is the image's native unit (HU for CT)
METRIC_INFO: dict[str, tuple[str, str]] = {
    "brightness": ("native", "mean of the foreground; higher = brighter"),
    "contrast": ("native", "standard deviation (RMS contrast) of the foreground; higher = more"),
    "contrast_window": (
        "fraction of the window width",
        "foreground standard deviation / window width; higher = more contrast on screen",
    ),
    "sharpness_laplacian": ("native^2", "variance of the Laplacian; lower = blurrier"),
    "sharpness_frequency": (
        "fraction (0-1)",
        "share of spectral energy above the cutoff; lower = blurrier",
    ),
    "entropy": ("bits", "Shannon entropy of the foreground's grey levels; higher = busier"),
    "noise": ("native", "standard deviation of the noise; higher = noisier"),
    "clip_low": ("fraction (0-1)", "share of pixels at the range's minimum; higher = more"),
    "clip_high": ("fraction (0-1)", "share of pixels at the range's maximum; higher = more"),
    "foreground_fraction": ("fraction (0-1)", "share of pixels in the foreground"),
}

#: on CT the body is every pixel above this (HU): fat is -100, lung -850, air -1000
CT_BODY_THRESHOLD_HU = -500.0
#: radial frequency (cycles per pixel, Nyquist = 0.5) above which energy counts as detail
FREQUENCY_CUTOFF = 0.25
#: grey levels of the entropy histogram (those of an 8-bit display)
ENTROPY_BINS = 256
#: Phi^-1(3/4): median(|z|) of a standard normal z
_MAD_NORMAL = 0.6744897501960817
#: norm of Immerkaer's kernel [[1,-2,1],[-2,4,-2],[1,-2,1]]: sqrt(36)
_KERNEL_NORM = 6.0
#: the noise median is taken over at most about this many residuals (a strided grid):
#: its relative standard error is about 1.17 / sqrt(n), 0.7 % here
_NOISE_SAMPLES = 1 << 15
#: integer images whose value range fits in this many bins are histogrammed exactly
_MAX_INT_BINS = 1 << 20


class QualityError(MultireaderError):
    """An image cannot be measured (wrong shape, non-finite values, too small)."""


# --- compiled kernels (quality_kernels.py), torch's FFT ------------------------------------
# Without numba the numpy code beside each kernel call runs, with the same results.


@functools.lru_cache(maxsize=1)
def _kernels():
    """:mod:`multireader.analyses.quality_kernels`, or None without numba."""
    try:
        from multireader.analyses import quality_kernels
    # no numba, or numba finds nowhere to cache (a read-only install and home): numpy
    except (ImportError, RuntimeError):  # pragma: no cover - numba comes with umap-learn
        return None
    return quality_kernels


@functools.lru_cache(maxsize=1)
def _torch_fft():
    """torch's rfft2 (MKL on x86: about 3x scipy's pocketfft at 512 x 512), else None."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a runtime requirement
        return None
    return torch


def warm_up() -> None:
    """Import torch and load (or compile) the kernels for the importer's int16 arrays,
    so that forked worker processes inherit them instead of each doing it again."""
    image_quality(np.arange(64, dtype=np.int16).reshape(8, 8), unit="HU", window=(40, 400))


def init_worker() -> None:
    """In a worker process of a pool with one worker per core: one thread each."""
    torch = _torch_fft()
    if torch is not None:
        torch.set_num_threads(1)


def _check_metrics(metrics) -> tuple[str, ...]:
    if metrics is None:
        return QUALITY_METRICS
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    unknown = [m for m in metrics if m not in QUALITY_METRICS]
    if unknown:
        raise ValueError(f"unknown quality metric(s) {unknown}; expected some of {QUALITY_METRICS}")
    if not metrics:
        raise ValueError("no quality metric requested")
    # keep the canonical order, drop repeats
    return tuple(m for m in QUALITY_METRICS if m in metrics)


def _as_gray(native: np.ndarray) -> np.ndarray:
    arr = np.asarray(native)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        # Rec. 601 luma of RGB(A): colour images are measured on their brightness
        rgb = arr[..., :3].astype(np.float32)
        arr = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    if arr.ndim != 2:
        raise QualityError(f"expected a 2-D image (or RGB), got an array of shape {arr.shape}")
    if min(arr.shape) < 3:
        raise QualityError(f"image {arr.shape} is too small: needs at least 3 x 3 pixels")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise QualityError(f"expected numeric pixel values, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise QualityError(f"{bad} non-finite pixel values (NaN or inf)")
    return arr


def _check_window(window) -> tuple[float, float] | None:
    """(center, width) or None; a missing or non-positive width means no window."""
    if window is None:
        return None
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError) as err:
        raise ValueError(f"window must be (center, width), got {window!r}") from err
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        return None
    return center, width


# --- histogram-based statistics (brightness, contrast, entropy, clipping) -------------


def _histogram(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(values, counts, exact): every distinct integer value with its count when the
    image is integer with a modest range; else None, None, False (float path)."""
    if x.dtype.kind in "iu":
        lo, hi = int(x.min()), int(x.max())
        if hi - lo < _MAX_INT_BINS:
            kernels = _kernels()
            if kernels is not None:
                counts = np.zeros(hi - lo + 1, np.int64)
                kernels.int_histogram(np.ascontiguousarray(x), lo, counts)
            else:
                # bincount works on intp: converting once here is cheaper than inside it
                counts = np.bincount((x.astype(np.intp) - lo).ravel(), minlength=hi - lo + 1)
            return np.arange(lo, hi + 1, dtype=np.float64), counts, True
    return None, None, False


def _bin_index(values: np.ndarray, lo: float, width: float) -> np.ndarray:
    """Grey level 0..255 of each value for a display range [lo, lo + width)."""
    if width <= 0:
        return np.zeros(values.shape, np.intp)
    idx = np.floor((values - lo) * (ENTROPY_BINS / width))
    return np.clip(idx, 0, ENTROPY_BINS - 1).astype(np.intp)


def _otsu_threshold(values: np.ndarray, counts, lo: float, hi: float) -> float:
    """Otsu's (1979) threshold over a 256-bin histogram of ``values`` (weighted by
    ``counts``) spanning [lo, hi]; the foreground is every value strictly above it."""
    if hi <= lo:
        return hi
    hist = np.bincount(
        _bin_index(values, lo, hi - lo), weights=counts, minlength=ENTROPY_BINS
    ).astype(np.float64)
    p = hist / max(hist.sum(), 1.0)
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(ENTROPY_BINS))
    mu_t = mu[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_t * omega - mu) ** 2 / (omega * (1.0 - omega))
    between[~np.isfinite(between)] = -1.0
    k = int(np.argmax(between))
    # upper edge of bin k: values in bins 0..k are background
    return lo + (k + 1) * (hi - lo) / ENTROPY_BINS


def _entropy(values: np.ndarray, counts, window) -> float:
    if values.size == 0:
        return float("nan")
    if window is not None:
        lo, width = window[0] - window[1] / 2.0, window[1]
    else:
        lo, width = float(values.min()), float(values.max() - values.min())
        # the top value must land in the last bin, not past it
        width = width * (1 + 1e-9) if width > 0 else 0.0
    hist = np.bincount(_bin_index(values, lo, width), weights=counts, minlength=ENTROPY_BINS)
    p = hist[hist > 0] / hist.sum()
    return float(max(0.0, -(p * np.log2(p)).sum()))


# --- sharpness, noise -------------------------------------------------------------------


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the interior pixels.

    ``L = x[i-1,j] + x[i+1,j] + x[i,j-1] + x[i,j+1] - 4 x[i,j]``; returns ``var(L)``
    (native units squared). Lower = blurrier (Pech-Pacheco et al. 2000). Depends on
    the pixel spacing and on the noise (white noise of s.d. sigma adds 20 sigma^2).
    """
    x = _as_gray(image).astype(np.float32, copy=False)
    return _laplacian_variance(x)


def _laplacian_variance(x: np.ndarray) -> float:
    kernels = _kernels()
    if kernels is not None:
        s1, s2 = kernels.laplacian_sums(np.ascontiguousarray(x))
        n = (x.shape[0] - 2) * (x.shape[1] - 2)
        mean = s1 / n
        return max(0.0, s2 / n - mean * mean)
    x = x.astype(np.float32, copy=False)
    lap = x[:-2, 1:-1] + x[2:, 1:-1]
    lap += x[1:-1, :-2]
    lap += x[1:-1, 2:]
    lap -= 4.0 * x[1:-1, 1:-1]
    flat = lap.ravel()
    # E[L^2] - E[L]^2 with single-precision dots (about 1e-5 relative): the mean of a
    # Laplacian is close to 0, so there is no cancellation to fear
    mean = float(flat.mean(dtype=np.float64))
    return max(0.0, float(np.dot(flat, flat)) / flat.size - mean * mean)


@functools.lru_cache(maxsize=16)
def _spectral_weights(shape: tuple[int, int], cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights over the rfft2 half-plane: each coefficient counts once or twice (its
    mirror), the DC term not at all; the second array keeps only radii above cutoff."""
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    weight = np.full((h, fx.shape[1]), 2.0)
    weight[:, 0] = 1.0
    if w % 2 == 0:
        weight[:, -1] = 1.0
    weight[0, 0] = 0.0
    high = np.where(np.hypot(fy, fx) > cutoff, weight, 0.0)
    return weight.astype(np.float32).ravel(), high.astype(np.float32).ravel()


def high_frequency_share(image: np.ndarray, cutoff: float = FREQUENCY_CUTOFF) -> float:
    """Share of the image's spectral energy above a radial frequency ``cutoff``.

    ``sum_{rho > c} |X(u,v)|^2 / sum_{rho > 0} |X(u,v)|^2`` with ``X`` the 2-D DFT of
    the mean-subtracted image and ``rho = sqrt(u^2 + v^2)`` in cycles per pixel
    (Nyquist = 0.5). In (0, 1); lower = blurrier. A frequency-domain sharpness measure
    in the spirit of De & Masilamani (2013), who count the coefficients above a
    threshold; an energy share is used here so the value does not depend on the
    image size. A constant image gives 0. White noise alone gives the share of the
    frequency square outside the cutoff circle (1 - pi c^2 for c <= 0.5).
    """
    x = _as_gray(image).astype(np.float32, copy=False)
    return _high_frequency_share(x, cutoff)


def _high_frequency_share(
    x: np.ndarray, cutoff: float = FREQUENCY_CUTOFF, mean: float | None = None
) -> float:
    """``mean``: the image's mean when already known (only the DC term depends on what
    is subtracted; subtracting the mean keeps single precision's round-off small)."""
    if mean is None:
        mean = float(x.mean(dtype=np.float64))
    kernels = _kernels()
    if kernels is not None:
        centred = np.empty(x.shape, np.float32)
        kernels.centred_float32(np.ascontiguousarray(x), mean, centred)
    else:
        centred = np.subtract(x, np.float32(mean), dtype=np.float32)
    torch = _torch_fft()
    if torch is not None:
        # one thread: the transform is too small to share, and on a busy machine
        # torch's thread pool made it 20x slower
        threads = torch.get_num_threads()
        if threads != 1:
            torch.set_num_threads(1)
        try:
            spec = torch.fft.rfft2(torch.from_numpy(centred)).numpy()
        finally:
            if threads != 1:
                torch.set_num_threads(threads)
    else:  # pragma: no cover - torch is a runtime requirement
        from scipy import fft

        spec = fft.rfft2(centred, workers=1)
    weight, high = _spectral_weights(x.shape, float(cutoff))
    if kernels is not None:
        total, above = kernels.spectral_sums(spec, weight, high)
    else:
        power = spec.real * spec.real
        power += spec.imag * spec.imag
        power = power.ravel()
        total, above = float(np.dot(power, weight)), float(np.dot(power, high))
    if total <= 0:
        return 0.0
    return min(1.0, above / total)


def noise_sigma(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Standard deviation of additive white noise, in native units.

    Immerkaer's (1996) kernel ``N = [[1,-2,1],[-2,4,-2],[1,-2,1]]`` removes every image
    that is linear along rows or columns (flat regions, ramps), leaving ``r = N * x``,
    which for white Gaussian noise of s.d. sigma has s.d. ``6 sigma``. Immerkaer averages
    ``|r|``; edges inflate that, so the median is used instead (Donoho & Johnstone 1994):
    ``sigma = median(|r|) / (6 * 0.6745)``, over interior pixels whose centre is in
    ``mask`` (all when None), on a regular grid of at most about 65,000 of them.
    """
    x = _as_gray(image)
    if x.dtype.kind not in "iu":
        x = x.astype(np.float32, copy=False)
    if mask is not None and mask.shape != x.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the image's {x.shape}")
    if mask is None:
        return _noise_sigma_above(x, None)
    return _noise_sigma(x.astype(np.float32, copy=False), mask)


def _noise_step(h: int, w: int) -> int:
    return max(1, int(math.sqrt((h - 2) * (w - 2) / _NOISE_SAMPLES)))


def _noise_sigma_above(x: np.ndarray, threshold: float | None, span: int | None = None) -> float:
    """:func:`noise_sigma` with ``mask = x > threshold`` (None: no mask), in one pass;
    ``span``: ``x.max() - x.min()`` of an integer image, when already known."""
    kernels = _kernels()
    if kernels is None:
        xf = x.astype(np.float32, copy=False)
        return _noise_sigma(xf, None if threshold is None else xf > threshold)
    h, w = x.shape
    step = _noise_step(h, w)
    n = len(range(1, h - 1, step)) * len(range(1, w - 1, step))
    out_all = np.empty(n, np.float64)
    out_inside = np.empty(n if threshold is not None else 0, np.float64)
    # the comparison the numpy code makes: single-precision pixels against the threshold
    thr = float(np.float32(threshold)) if threshold is not None else 0.0
    n_all, n_in = kernels.noise_residuals(
        np.ascontiguousarray(x), step, thr, threshold is not None, out_all, out_inside
    )
    r, n_r = (out_inside, n_in) if n_in else (out_all, n_all)
    if n_r == 0:
        return float("nan")
    k = n_r // 2
    # an integer image's residuals are whole numbers up to 16 x its range: counting
    # them finds the median faster than a partition does
    if x.dtype.kind in "iu":
        n_bins = 16 * (int(x.max()) - int(x.min()) if span is None else span) + 1
    else:
        n_bins = 0
    if 0 < n_bins <= 4 * n_r:
        kth = kernels.int_kth(r, n_r, k, n_bins)
    else:
        kth = np.partition(r[:n_r], k)[k]
    return float(kth / (_KERNEL_NORM * _MAD_NORMAL))


def _noise_sigma(x: np.ndarray, mask: np.ndarray | None) -> float:
    h, w = x.shape
    step = _noise_step(h, w)
    rows = slice(1, h - 1, step)
    # second difference down the columns, at the grid's rows only
    d = x[0 : h - 2 : step] - 2.0 * x[rows] + x[2:h:step]
    r = d[:, 0 : w - 2 : step] - 2.0 * d[:, 1 : w - 1 : step] + d[:, 2:w:step]
    r = np.abs(r)
    if mask is not None:
        # the whole 3 x 3 neighbourhood inside: the body's outline is not noise
        inside = np.ones(r.shape, bool)
        for dr in (0, 1, 2):
            for dc in (0, 1, 2):
                inside &= mask[dr : h - 2 + dr : step, dc : w - 2 + dc : step]
        if inside.any():
            r = r[inside]
    r = r.ravel()
    if r.size == 0:
        return float("nan")
    k = r.size // 2
    return float(np.partition(r, k)[k] / (_KERNEL_NORM * _MAD_NORMAL))


# --- all metrics --------------------------------------------------------------------------


def image_quality(
    native: np.ndarray,
    *,
    unit: str | None = None,
    window=None,
    value_range=None,
    metrics=None,
) -> dict[str, float]:
    """Every quality metric of one image of native values, as ``{name: float}``.

    Parameters
    ----------
    native : 2-D array of native values (HU for CT), integer or float; an RGB(A) array
        (H, W, 3|4) is measured on its Rec. 601 luma.
    unit : the native unit; ``"HU"`` selects the CT body rule (pixels above
        :data:`CT_BODY_THRESHOLD_HU`), anything else Otsu's threshold.
    window : ``(center, width)`` of the display window, in native units, or None.
        Sets the entropy's grey levels (256 across the window; without one, 256 across
        the foreground's range) and ``contrast_window`` (NaN without one). A window of
        non-positive or non-finite width counts as none.
    value_range : ``(min, max)`` the values can take (e.g. the stored range after the
        rescale); clipping counts pixels at or beyond those. Default: the image's own
        minimum and maximum.
    metrics : names from :data:`QUALITY_METRICS` (default all); only those are computed.

    Raises :class:`QualityError` for an array that is not a 2-D image of at least
    3 x 3 finite numbers.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> hu = np.full((256, 256), 40.0) + rng.normal(0, 10, (256, 256))
    >>> q = image_quality(hu, unit="HU", window=(40, 400))
    >>> round(q["brightness"]), round(q["noise"]), q["foreground_fraction"]
    (40, 10, 1.0)
    """
    wanted = _check_metrics(metrics)
    x = _as_gray(native)
    win = _check_window(window)
    out: dict[str, float] = {}

    # integer images go to the kernels as they are (exact); others in single precision
    xk = x if x.dtype.kind in "iu" else x.astype(np.float32, copy=False)
    mean_all = None
    need_hist = {
        "brightness",
        "contrast",
        "contrast_window",
        "entropy",
        "clip_low",
        "clip_high",
        "foreground_fraction",
        "noise",
    }
    if need_hist & set(wanted):
        values, counts, exact = _histogram(x)
        if not exact:
            # float images: the same statistics from the pixels themselves, each
            # pixel a value of count 1 (counts None)
            values = xk.ravel()

        def count(sel: np.ndarray) -> float:
            return float(np.count_nonzero(sel) if counts is None else counts[sel].sum())

        n = float(x.size)
        vmin, vmax = float(values.min()), float(values.max())
        if unit is not None and str(unit).upper() == "HU":
            threshold = CT_BODY_THRESHOLD_HU
        else:
            threshold = _otsu_threshold(values, counts, vmin, vmax)
        fg = values > threshold
        n_fg = count(fg)
        if n_fg == 0:
            fg = np.ones(values.shape, bool)  # nothing above the rule: use every pixel
        fvals = values[fg]
        fcounts = None if counts is None else counts[fg].astype(np.float64)
        if fcounts is None:
            mean = float(fvals.mean(dtype=np.float64))
            std = float(fvals.std(dtype=np.float64))
        else:
            total = fcounts.sum()
            mean = float(np.dot(fvals, fcounts) / total)
            std = float(math.sqrt(max(0.0, np.dot((fvals - mean) ** 2, fcounts) / total)))
        out["brightness"] = mean
        out["contrast"] = std
        out["contrast_window"] = std / win[1] if win is not None else float("nan")
        out["entropy"] = _entropy(fvals, fcounts, win)
        if value_range is not None:
            lo, hi = (float(v) for v in value_range)
            out["clip_low"] = count(values <= lo) / n
            out["clip_high"] = count(values >= hi) / n
        else:
            out["clip_low"] = count(values == vmin) / n
            out["clip_high"] = count(values == vmax) / n
        out["foreground_fraction"] = n_fg / n
        if "noise" in wanted:
            span = int(vmax - vmin) if counts is not None else None
            out["noise"] = _noise_sigma_above(xk, threshold if n_fg > 0 else None, span)
        if counts is not None:
            mean_all = float(np.dot(values, counts)) / n
    if "sharpness_laplacian" in wanted:
        out["sharpness_laplacian"] = _laplacian_variance(xk)
    if "sharpness_frequency" in wanted:
        out["sharpness_frequency"] = _high_frequency_share(xk, mean=mean_all)
    return {m: out[m] for m in wanted}


# --- samples -----------------------------------------------------------------------------


def quality_field(metric: str) -> str:
    """The sample field that holds ``metric``, e.g. ``quality_noise``."""
    _check_metrics([metric])
    return F.QUALITY_PREFIX + metric


def _window_of(center, width):
    # multi-valued windows (a list per file) use the first, as the importer renders
    if isinstance(center, (list, tuple)):
        center = center[0] if center else None
    if isinstance(width, (list, tuple)):
        width = width[0] if width else None
    if center is None or width is None:
        return None
    return _check_window((center, width))


def _measure_one(path: str, unit, window, metrics: tuple[str, ...]):
    """(values tuple, None) or (None, reason): never raises for a bad file."""
    try:
        native = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None, "native array not found (file missing)"
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the rest
        return None, f"cannot read native array: {type(err).__name__}: {err}"
    try:
        q = image_quality(native, unit=unit, window=window, metrics=metrics)
    except QualityError as err:
        return None, f"cannot measure: {err}"
    except Exception as err:  # noqa: BLE001
        return None, f"unexpected error while measuring: {type(err).__name__}: {err}"
    return tuple(q[m] for m in metrics), None


def _measure_chunk(jobs: list[tuple], metrics: tuple[str, ...]) -> list[tuple]:
    return [(i, *_measure_one(path, unit, window, metrics)) for i, path, unit, window in jobs]


def _run(jobs: list[tuple], metrics: tuple[str, ...], num_workers: int | None, progress):
    """Yield ``(index, values | None, reason | None)``, in worker processes when it pays."""
    n = max(1, int(num_workers or os.cpu_count() or 1))
    total = max(len(jobs), 1)
    if n == 1 or len(jobs) < 16:
        for k, job in enumerate(jobs):
            yield from _measure_chunk([job], metrics)
            if k % 32 == 0:
                report(progress, 0.9 * (k + 1) / total, f"measured {k + 1}/{len(jobs)} images")
        return
    # chunks: one task per image would spend more on scheduling than the few ms a
    # 512 x 512 image takes; small enough that progress moves and workers stay busy
    size = max(4, min(64, len(jobs) // (4 * n) or 4))
    chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    done = 0
    warm_up()
    with ProcessPoolExecutor(
        max_workers=min(n, len(chunks)), mp_context=mp_context(), initializer=init_worker
    ) as pool:
        futures = [pool.submit(_measure_chunk, chunk, metrics) for chunk in chunks]
        for future in as_completed(futures):
            results = future.result()
            yield from results
            done += len(results)
            report(progress, 0.9 * done / total, f"measured {done}/{len(jobs)} images")


def compute_quality_metrics(
    samples,
    *,
    metrics=None,
    num_workers: int | None = None,
    skip_existing: bool = False,
    progress: ProgressFn | None = None,
) -> dict:
    """Measure every sample's native array and store ``quality_<metric>`` fields.

    Reads ``native_path``, ``native_unit``, ``window_center`` and ``window_width`` of
    ``samples`` (a dataset or view) in bulk, measures the arrays in ``num_workers``
    processes (default: every core), and writes all requested fields with one update
    per sample. With ``skip_existing``, samples whose requested fields are all set are
    left alone.

    A sample without a native array, or whose array is missing, unreadable or not an
    image, is reported in ``errors`` and nothing is written for it (its fields keep
    whatever they held, None on a first run); the rest goes on.

    Returns ``{"n_samples", "n_computed", "n_skipped", "errors": [{"sample_id",
    "path", "reason"}], "fields", "metrics", "seconds"}``.
    """
    from multireader.core.bulk import write_sample_fields

    t0 = time.perf_counter()
    metrics = _check_metrics(metrics)
    names = [quality_field(m) for m in metrics]
    dataset = samples._dataset
    if not dataset.has_field(F.NATIVE_PATH):
        raise ValueError(
            f"dataset {dataset.name!r} has no {F.NATIVE_PATH!r} field: quality metrics "
            "are measured on the native arrays import_dicom writes"
        )
    report(progress, 0.0, f"reading {len(samples)} samples")
    wanted = ["id", F.NATIVE_PATH]
    optional = [f for f in (F.NATIVE_UNIT, "window_center", "window_width") if dataset.has_field(f)]
    existing = [n for n in names if dataset.has_field(n)] if skip_existing else []
    columns = dict(
        zip(wanted + optional + existing, samples.values(wanted + optional + existing), strict=True)
    )
    ids = columns["id"]
    n = len(ids)
    none = [None] * n
    units = columns.get(F.NATIVE_UNIT, none)
    centers = columns.get("window_center", none)
    widths = columns.get("window_width", none)

    done_before = np.zeros(n, bool)
    if skip_existing and len(existing) == len(names):
        done_before = np.ones(n, bool)
        for name in existing:
            done_before &= np.array([v is not None for v in columns[name]], bool)

    errors: list[dict] = []
    jobs = []
    for i, (sid, path) in enumerate(zip(ids, columns[F.NATIVE_PATH], strict=True)):
        if done_before[i]:
            continue
        if not path:
            errors.append(
                {"sample_id": sid, "path": None, "reason": "no native_path on this sample"}
            )
            continue
        jobs.append((i, path, units[i], _window_of(centers[i], widths[i])))

    values = np.full((n, len(metrics)), np.nan)
    ok = np.zeros(n, bool)
    for i, vals, reason in _run(jobs, metrics, num_workers, progress):
        if reason is None:
            values[i] = vals
            ok[i] = True
        else:
            errors.append(
                {"sample_id": ids[i], "path": columns[F.NATIVE_PATH][i], "reason": reason}
            )

    written = np.flatnonzero(ok)
    if written.size:
        report(progress, 0.92, f"writing {len(names)} fields on {written.size} samples")
        write_sample_fields(
            samples,
            [ids[i] for i in written],
            {name: values[written, k] for k, name in enumerate(names)},
        )
        _describe_fields(dataset, metrics)
    order = {sid: i for i, sid in enumerate(ids)}
    errors.sort(key=lambda e: order[e["sample_id"]])
    report(
        progress,
        1.0,
        f"measured {written.size} images, skipped {int(done_before.sum())}, {len(errors)} errors",
    )
    return {
        "n_samples": n,
        "n_computed": int(written.size),
        "n_skipped": int(done_before.sum()),
        "errors": errors,
        "fields": names,
        "metrics": list(metrics),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _describe_fields(dataset, metrics) -> None:
    """Record each field's unit and direction on the field (the App shows it)."""
    for metric in metrics:
        field = dataset.get_field(quality_field(metric))
        unit, direction = METRIC_INFO[metric]
        info = dict(field.info or {})
        meta = {"role": "quality", "metric": metric, "unit": unit, "direction": direction}
        if info.get(F.INFO_KEY) == meta:
            continue
        info[F.INFO_KEY] = meta
        field.info = info
        field.description = f"{metric} ({unit}): {direction}"
        field.save()
