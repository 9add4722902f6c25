"""The pixel loops of :mod:`multireader.analyses.quality`, compiled by numba.

Each is one pass over the pixels where numpy needs several temporaries: the histogram
of an integer image, the sums of its Laplacian, the noise residuals on a grid, the
median of whole-number residuals by counting, the weighted sums of a power spectrum.
Compiled once and cached on disk beside this module (``cache=True``). numba is
installed with umap-learn; :mod:`quality` falls back to numpy without it.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "int_histogram",
    "laplacian_sums",
    "noise_residuals",
    "int_kth",
    "spectral_sums",
    "centred_float32",
]

_jit = numba.njit(cache=True, nogil=True)
# reassociated sums: the loops vectorise; the sums are double precision, so the order
# changes them by about 1e-16 relative
_jit_sum = numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"})


@_jit
def int_histogram(x, lo, counts):
    flat = x.ravel()
    for k in range(flat.size):
        counts[np.int64(flat[k]) - lo] += 1


@_jit_sum
def laplacian_sums(x):
    # the sum and sum of squares of the 4-neighbour Laplacian over interior pixels: a
    # row of it in single precision (exact for 16-bit integer images, whose Laplacian
    # stays below 2^24), summed in double precision
    h, w = x.shape
    s1 = 0.0
    s2 = 0.0
    row = np.empty(w - 2, np.float32)
    four = np.float32(4.0)
    for i in range(1, h - 1):
        up, mid, down = x[i - 1], x[i], x[i + 1]
        for j in range(1, w - 1):
            row[j - 1] = (
                np.float32(up[j])
                + np.float32(down[j])
                + np.float32(mid[j - 1])
                + np.float32(mid[j + 1])
                - four * np.float32(mid[j])
            )
        for j in range(w - 2):
            v = np.float64(row[j])
            s1 += v
            s2 += v * v
    return s1, s2


@_jit
def noise_residuals(x, step, threshold, use_mask, out_all, out_inside):
    # |Immerkaer residual| on the grid (1 + step k, 1 + step l): all of them, and
    # those whose 3 x 3 neighbourhood is above threshold; returns how many of each
    h, w = x.shape
    n_all = 0
    n_in = 0
    for i in range(1, h - 1, step):
        up, mid, down = x[i - 1], x[i], x[i + 1]
        for j in range(1, w - 1, step):
            a0, a1, a2 = np.float64(up[j - 1]), np.float64(up[j]), np.float64(up[j + 1])
            b0, b1, b2 = np.float64(mid[j - 1]), np.float64(mid[j]), np.float64(mid[j + 1])
            c0, c1, c2 = (
                np.float64(down[j - 1]),
                np.float64(down[j]),
                np.float64(down[j + 1]),
            )
            r = abs((a0 - 2.0 * a1 + a2) - 2.0 * (b0 - 2.0 * b1 + b2) + (c0 - 2.0 * c1 + c2))
            out_all[n_all] = r
            n_all += 1
            if use_mask:
                lowest = min(min(min(a0, a1), min(a2, b0)), min(min(b1, b2), min(c0, c1)))
                if min(lowest, c2) > threshold:
                    out_inside[n_in] = r
                    n_in += 1
    return n_all, n_in


@_jit
def int_kth(values, n, k, n_bins):
    # the k-th smallest (0-based) of n non-negative integers held as floats
    counts = np.zeros(n_bins, np.int64)
    for t in range(n):
        counts[np.int64(values[t])] += 1
    seen = 0
    for b in range(n_bins):
        seen += counts[b]
        if seen > k:
            return float(b)
    return float(n_bins - 1)


@_jit_sum
def spectral_sums(spec, weight, high):
    # weighted sums of |X|^2 over the rfft2 half-plane, in double precision
    flat = spec.ravel()
    total = 0.0
    above = 0.0
    for k in range(flat.size):
        re = np.float64(flat[k].real)
        im = np.float64(flat[k].imag)
        p = re * re + im * im
        total += weight[k] * p
        above += high[k] * p
    return total, above


@_jit
def centred_float32(x, mean, out):
    # out = x - mean in single precision (numpy's int16 -> float32 cast is slower)
    flat = x.ravel()
    dst = out.ravel()
    m = np.float32(mean)
    for k in range(flat.size):
        dst[k] = np.float32(flat[k]) - m
