"""STAPLE: ours (multireader.stats.masks.Staple) against SimpleITK's STAPLEImageFilter.

    .venv/bin/python bench/bench_staple.py [--size 512] [--readers 4] [--repeats 7]

The data: a random ground truth, and per reader a copy with reader-specific errors
(under- or over-segmentation by a few pixels, smooth boundary noise, one reader's
false-positive blob; see ``reader_masks``). Two scenarios: ``lesion`` (foreground a few percent of the image, the usual case
for lesion masks) and ``large`` (foreground about half the image, the worst case for our
cropping to the union of foreground). Both implementations run on the same masks in one
process, alternating, ``--repeats`` times; the table gives medians, the ratio peer/ours
(above 1 means ours is faster) and the largest absolute difference of the probability
map, sensitivities and specificities. The peer's time includes turning the numpy masks
into SimpleITK images and the result back, which any caller from numpy pays.

It also times ``mask_sample_stats`` (overlaps, surface distances for all pairs, STAPLE
uncertainty) on the same 4 readers. The machine is shared and noisy: read the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from multireader.stats.masks import Staple, mask_sample_stats


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Smooth random field, zero mean and unit standard deviation."""
    f = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma)
    return (f - f.mean()) / f.std()


def reader_masks(size: int, n_readers: int, scenario: str, seed: int) -> np.ndarray:
    """(R, size, size) uint8 masks: a ground truth with reader-specific errors.

    ``lesion``: three elliptic lesions of 4-8 % of the image side in radius. ``large``:
    a smooth random region covering about half the image. Each reader's mask is the
    truth's signed distance (pixels, positive inside) plus a reader bias (under- or
    over-segmentation by a few pixels) plus smooth boundary noise, thresholded at 0;
    reader 2 also draws a false-positive blob.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    if scenario == "lesion":
        truth = np.zeros((size, size), dtype=bool)
        for _ in range(3):
            cy, cx = rng.uniform(0.2, 0.8, 2) * size
            ry, rx = rng.uniform(0.04, 0.08, 2) * size
            truth |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    else:
        truth = _smooth_noise(rng, size, size / 32) > 0
    sdf = ndimage.distance_transform_edt(truth) - ndimage.distance_transform_edt(~truth)
    biases = [-3.0, 2.0, 0.0, 4.0, -1.0, 1.0]
    out = []
    for r in range(n_readers):
        m = sdf + biases[r % len(biases)] + 3.0 * _smooth_noise(rng, size, size / 64) > 0
        if r == 2:
            cy, cx = rng.uniform(0.1, 0.9, 2) * size
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= (0.03 * size) ** 2
        out.append(m.astype(np.uint8))
    return np.stack(out)


def run_ours(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    est = Staple().fit(masks)
    return est.probability_, est.sensitivity_, est.specificity_


def run_peer(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f = sitk.STAPLEImageFilter()
    f.SetForegroundValue(1)
    out = f.Execute([sitk.GetImageFromArray(m) for m in masks])
    return (
        sitk.GetArrayFromImage(out),
        np.array(f.GetSensitivity()),
        np.array(f.GetSpecificity()),
    )


def timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def scenario(masks: np.ndarray, repeats: int) -> dict:
    times = {"ours": [], "peer": []}
    ours = peer = None
    for rep in range(repeats):
        order = ("ours", "peer") if rep % 2 == 0 else ("peer", "ours")
        for name in order:
            dt, res = timed(run_ours if name == "ours" else run_peer, masks)
            times[name].append(round(dt, 5))
            if name == "ours":
                ours = res
            else:
                peer = res
    med = {k: statistics.median(v) for k, v in times.items()}
    sample_times = [timed(mask_sample_stats, list(masks), (0.7, 0.7))[0] for _ in range(repeats)]
    return {
        "foreground_fraction": round(float(masks.mean()), 4),
        "seconds": times,
        "median_s": {k: round(v, 5) for k, v in med.items()},
        "ratio_peer_over_ours": round(med["peer"] / med["ours"], 2),
        "max_abs_diff": {
            "probability": float(np.abs(ours[0] - peer[0]).max()),
            "sensitivity": float(np.abs(ours[1] - peer[1]).max()),
            "specificity": float(np.abs(ours[2] - peer[2]).max()),
        },
        "mask_sample_stats_median_s": round(statistics.median(sample_times), 5),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    scenarios = ("lesion", "large")
    results = {
        "image_size": args.size,
        "readers": args.readers,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "simpleitk": sitk.Version.VersionString(),
        "scenarios": {},
    }
    for seed, name in enumerate(scenarios):
        masks = reader_masks(args.size, args.readers, name, seed)
        results["scenarios"][name] = scenario(masks, args.repeats)

    header = (
        f"{'scenario':<8} {'fg':>6} {'ours ms':>9} {'sitk ms':>9} {'sitk/ours':>9} "
        f"{'d prob':>9} {'d sens':>9} {'d spec':>9} {'sample ms':>10}"
    )
    print(f"STAPLE, {args.readers} readers x {args.size}x{args.size}, medians of {args.repeats}")
    print(header)
    for name, r in results["scenarios"].items():
        d = r["max_abs_diff"]
        print(
            f"{name:<8} {r['foreground_fraction']:>6.3f} {r['median_s']['ours'] * 1e3:>9.2f} "
            f"{r['median_s']['peer'] * 1e3:>9.2f} {r['ratio_peer_over_ours']:>9.2f} "
            f"{d['probability']:>9.1e} {d['sensitivity']:>9.1e} {d['specificity']:>9.1e} "
            f"{r['mask_sample_stats_median_s'] * 1e3:>10.2f}"
        )
    # mask_sample_stats at the size the dataset layer meets most often, too.
    small = {}
    for seed, name in enumerate(scenarios):
        masks = list(reader_masks(256, args.readers, name, seed))
        ts = [timed(mask_sample_stats, masks, (0.7, 0.7))[0] for _ in range(args.repeats)]
        small[name] = round(statistics.median(ts), 5)
    results["mask_sample_stats_256_median_s"] = small
    print(
        f"mask_sample_stats, {args.readers} readers x 256x256: "
        + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in small.items())
    )
    path = os.path.join(ROOT, "bench", "results", "staple.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(results, fh, indent=1)
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
