"""3-D surface metrics: ours (multireader.stats.surface.pair_metrics) against MONAI's.

    .venv/bin/python bench/bench_surface.py [--repeats 7] [--tolerance 1.0]

The data: two readers' masks of one lesion in a 96 x 256 x 256 volume at spacing
(2.5, 0.8, 0.8) mm (a CT series). Each mask is an ellipsoid whose signed distance (mm)
gets reader-specific smooth boundary noise (a few mm) and, for the second reader, a
shift of one slice and a slight over-segmentation; see ``reader_pair``. Three scenarios:

- ``sphere``: a lesion of radius 40 mm, the case the goal is stated for;
- ``small``: a lesion of radius 8 mm in the same large volume, where cropping to the
  union of the masks saves most;
- ``large``: an ellipsoid spanning about 90 % of every axis, so the union's bounding box
  is nearly the whole volume: the worst case for our cropping.

Ours computes Dice, IoU, HD95, ASSD, NSD and both volumes in one call; the peer computes
MONAI 1.6.1's ``DiceMetric(include_background=False)``,
``HausdorffDistanceMetric(percentile=95)`` and ``SurfaceDiceMetric([tolerance])`` (spacing
passed to the call) on CPU with ``torch.set_num_threads(1)``. The peer's time includes
making the one-hot (1, 2, D, H, W) tensors from the numpy masks, which any caller from
numpy pays. Both run on the same masks in one process, alternating, ``--repeats`` times;
the table gives medians, the ratio MONAI / ours (above 1 means ours is faster) and the
absolute difference of each of Dice, HD95 and NSD. ``ours_edt_only`` is ours with the
distance transform forced in both directions (ours otherwise switches to a KD-tree when
the union's box holds many voxels per surface voxel; ``method`` says which it used), to
show what the switch buys. The machine is shared and noisy: read the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import monai
import numpy as np
import scipy
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric, SurfaceDiceMetric
from scipy import ndimage

from multireader.stats import surface
from multireader.stats.surface import pair_metrics

SHAPE = (96, 256, 256)
SPACING = (2.5, 0.8, 0.8)


def _smooth_noise(rng: np.random.Generator, shape: tuple, sigma_vox: tuple) -> np.ndarray:
    """Smooth random field, zero mean and unit standard deviation.

    Drawn at a quarter of the resolution and upsampled (the field is smooth anyway), so
    that building the data does not dominate the run.
    """
    small = tuple(max(4, s // 4) for s in shape)
    f = ndimage.gaussian_filter(rng.standard_normal(small), [s / 4 for s in sigma_vox])
    f = ndimage.zoom(f, [s / t for s, t in zip(shape, small, strict=True)], order=1)
    return (f - f.mean()) / f.std()


def reader_pair(scenario: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two (96, 256, 256) bool masks of one lesion, as two readers would draw it."""
    rng = np.random.default_rng(seed)
    extent = np.array(SHAPE) * np.array(SPACING)  # mm
    if scenario == "sphere":
        radii = np.array([40.0, 40.0, 40.0])
    elif scenario == "small":
        radii = np.array([8.0, 8.0, 8.0])
    elif scenario == "large":
        radii = 0.45 * extent
    else:
        raise ValueError(scenario)
    centre = extent / 2 + rng.uniform(-0.05, 0.05, 3) * (extent / 2 - radii)
    z, y, x = (np.arange(n) * s for n, s in zip(SHAPE, SPACING, strict=True))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij", sparse=True)
    r = np.sqrt(
        ((zz - centre[0]) / radii[0]) ** 2
        + ((yy - centre[1]) / radii[1]) ** 2
        + ((xx - centre[2]) / radii[2]) ** 2
    )
    # approximate signed distance in mm, positive inside
    sdf = (1.0 - r) * radii.mean()
    amplitude = min(3.0, 0.15 * radii.min())
    sigma_vox = tuple(max(1.0, 0.3 * radii.min() / s) for s in SPACING)
    a = sdf + amplitude * _smooth_noise(rng, SHAPE, sigma_vox) > 0
    b = sdf + 0.5 + amplitude * _smooth_noise(rng, SHAPE, sigma_vox) > 0
    b = np.roll(b, 1, axis=0)
    return a, b


def run_ours(a: np.ndarray, b: np.ndarray, tol: float) -> dict:
    m = pair_metrics(a, b, SPACING, tolerance_mm=tol)
    return {"dice": m["dice"], "hd95": m["hd95"], "nsd": m["nsd"]}


def run_ours_edt(a: np.ndarray, b: np.ndarray, tol: float) -> dict:
    """Ours with the distance transform forced in both directions (never the KD-tree)."""
    saved = surface._KDTREE_VOXELS_PER_SURFACE_VOXEL
    surface._KDTREE_VOXELS_PER_SURFACE_VOXEL = float("inf")
    try:
        return run_ours(a, b, tol)
    finally:
        surface._KDTREE_VOXELS_PER_SURFACE_VOXEL = saved


class Peer:
    def __init__(self, tol: float) -> None:
        self.dice = DiceMetric(include_background=False)
        self.hd95 = HausdorffDistanceMetric(percentile=95)
        self.nsd = SurfaceDiceMetric(class_thresholds=[tol])

    def __call__(self, a: np.ndarray, b: np.ndarray, tol: float) -> dict:
        ta, tb = torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]
        pred = torch.cat([~ta, ta], dim=1).float()
        gt = torch.cat([~tb, tb], dim=1).float()
        out = {
            "dice": self.dice(pred, gt).item(),
            "hd95": self.hd95(pred, gt, spacing=SPACING).item(),
            "nsd": self.nsd(pred, gt, spacing=SPACING).item(),
        }
        for m in (self.dice, self.hd95, self.nsd):
            m.reset()
        return out


def timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def scenario(a: np.ndarray, b: np.ndarray, tol: float, repeats: int) -> dict:
    fns = {"ours": run_ours, "ours_edt_only": run_ours_edt, "monai": Peer(tol)}
    times = {k: [] for k in fns}
    res = {}
    for rep in range(repeats):
        order = list(fns) if rep % 2 == 0 else list(fns)[::-1]
        for name in order:
            dt, res[name] = timed(fns[name], a, b, tol)
            times[name].append(round(dt, 5))
    med = {k: statistics.median(v) for k, v in times.items()}
    union = a | b
    nz = [np.flatnonzero(union.any(axis=tuple(j for j in range(3) if j != i))) for i in range(3)]
    box = int(np.prod([ix[-1] - ix[0] + 1 for ix in nz]))
    return {
        "foreground_fraction": round(float(union.mean()), 4),
        "union_box_fraction": round(box / union.size, 4),
        "seconds": times,
        "median_s": {k: round(v, 5) for k, v in med.items()},
        "ours_method": surface._Pair(a, b, SPACING)._method(),
        "ratio_monai_over_ours": round(med["monai"] / med["ours"], 2),
        "ratio_monai_over_ours_edt_only": round(med["monai"] / med["ours_edt_only"], 2),
        "values": {"ours": res["ours"], "monai": res["monai"]},
        "max_abs_diff": {k: abs(res["ours"][k] - res["monai"][k]) for k in res["ours"]},
        "max_abs_diff_edt_only": {
            k: abs(res["ours_edt_only"][k] - res["monai"][k]) for k in res["ours"]
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--tolerance", type=float, default=1.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="monai")

    results = {
        "shape": list(SHAPE),
        "spacing_mm": list(SPACING),
        "tolerance_mm": args.tolerance,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "scenarios": {},
    }
    for seed, name in enumerate(("sphere", "small", "large")):
        a, b = reader_pair(name, seed)
        results["scenarios"][name] = scenario(a, b, args.tolerance, args.repeats)

    print(
        f"Dice + HD95 + NSD@{args.tolerance} mm, {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} at "
        f"{SPACING} mm, medians of {args.repeats} (torch threads: 1)"
    )
    print(
        f"{'scenario':<8} {'fg':>6} {'box':>6} {'method':>7} {'ours ms':>8} {'edt ms':>8} "
        f"{'monai ms':>9} {'ratio':>6} {'r edt':>6} {'hd95':>7} {'nsd':>7} {'dice':>7} "
        f"{'d hd95':>8} {'d nsd':>8} {'d dice':>8}"
    )
    for name, r in results["scenarios"].items():
        v, d, med = r["values"]["ours"], r["max_abs_diff"], r["median_s"]
        print(
            f"{name:<8} {r['foreground_fraction']:>6.3f} {r['union_box_fraction']:>6.3f} "
            f"{r['ours_method']:>7} {med['ours'] * 1e3:>8.1f} {med['ours_edt_only'] * 1e3:>8.1f} "
            f"{med['monai'] * 1e3:>9.1f} {r['ratio_monai_over_ours']:>6.2f} "
            f"{r['ratio_monai_over_ours_edt_only']:>6.2f} {v['hd95']:>7.3f} {v['nsd']:>7.4f} "
            f"{v['dice']:>7.4f} {d['hd95']:>8.1e} {d['nsd']:>8.1e} {d['dice']:>8.1e}"
        )
    path = os.path.join(ROOT, "bench", "results", "surface.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(results, fh, indent=1)
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
