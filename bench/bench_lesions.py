"""The whole lesion analysis on one large series: 300 slices of 512 x 512, 4 readers,
20 lesions, against the floor of only reading the readers' masks.

    .venv/bin/python bench/bench_lesions.py [--slices 300] [--size 512] [--lesions 20]
        [--readers 4] [--repeats 3] [--n-boot 1000]

The data: a series written straight into a FiftyOne dataset with the fields the DICOM
importer writes (geometry, patient key), and per reader a 3-D outline of every lesion
(ellipsoids of 3-15 mm radius; each reader dilates, erodes or shifts by a voxel or two,
one reader misses three small lesions) as one PNG mask per slice, imported with
``import_reader_labels`` as a user would. Timed alternately in one process:

* ``floor``: reading every reader's PNG masks of the series into arrays (PIL), what any
  3-D analysis of these masks must pay;
* ``ours``: ``compute_lesion_agreement`` end to end (geometry, volumes, components,
  matching, Dice/IoU/HD95/ASSD/NSD for every matched pair, 3-D STAPLE and majority,
  bootstrap intervals, writing the per-slice lesion labels and consensus masks, the run).

Reports medians, the ratio ours/floor, and peak RSS of this process and its workers.
The goal (issue 14): under 20 s on 2 cores. The machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np
from PIL import Image
from scipy import ndimage


def make_series(folder: str, n_slices: int, size: int, n_lesions: int, n_readers: int, seed: int):
    """Write the masks and a manifest; return (records, manifest path)."""
    rng = np.random.default_rng(seed)
    spacing = (2.5, 0.7, 0.7)
    shape = (n_slices, size, size)
    truth = np.zeros(shape, dtype=np.int32)
    centers = []
    for k in range(n_lesions):
        for _ in range(100):
            r_mm = rng.uniform(3, 15)
            c = (
                rng.uniform(r_mm / spacing[0] + 1, n_slices - r_mm / spacing[0] - 1),
                rng.uniform(0.15, 0.85) * size,
                rng.uniform(0.15, 0.85) * size,
            )
            if all(
                np.linalg.norm((np.subtract(c, c2)) * spacing) > r_mm + r2 + 5 for c2, r2 in centers
            ):
                break
        centers.append((c, r_mm))
        lo = [max(0, int(c[a] - r_mm / spacing[a]) - 1) for a in range(3)]
        hi = [min(shape[a], int(c[a] + r_mm / spacing[a]) + 2) for a in range(3)]
        z, y, x = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        d = (
            ((z - c[0]) * spacing[0]) ** 2
            + ((y - c[1]) * spacing[1]) ** 2
            + ((x - c[2]) * spacing[2]) ** 2
        )
        truth[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][d <= r_mm**2] = k + 1
    small = np.argsort([r for _, r in centers])[:3] + 1
    readers = [f"R{r + 1}" for r in range(n_readers)]
    rows = []
    for r, reader in enumerate(readers):
        vol = truth > 0
        if r == 1:
            vol = ndimage.binary_dilation(vol, iterations=1)
        elif r == 2:
            vol = ndimage.binary_erosion(vol, iterations=1) | (truth == 1)
        elif r == 3:
            vol = np.roll(vol, 1, axis=2) & ~np.isin(truth, small)
        os.makedirs(os.path.join(folder, reader), exist_ok=True)
        for k in range(n_slices):
            rel = f"{reader}/{k:04d}.png"
            Image.fromarray(vol[k].astype(np.uint8)).save(
                os.path.join(folder, rel), compress_level=1
            )
            rows.append(
                {"sop_instance_uid": f"1.2.3.{k}", "frame": 0, "reader": reader, "mask_path": rel}
            )
    manifest = os.path.join(folder, "masks.csv")
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return spacing, manifest, readers


def build_dataset(name: str, folder: str, n_slices: int, size: int, spacing, manifest: str):
    import fiftyone as fo

    from multireader.core import fields as F
    from multireader.ingest import readers as RD

    render = os.path.join(folder, "render.png")
    Image.fromarray(np.zeros((size, size), np.uint8)).save(render)
    ds = fo.Dataset(name)
    samples = [
        fo.Sample(
            filepath=render,
            **{
                F.SOP_UID: f"1.2.3.{k}",
                F.FRAME_INDEX: 0,
                F.DICOM_KEY: f"1.2.3.{k}:0",
                F.SERIES_UID: "1.2.3",
                F.SLICE_INDEX: k,
                F.IMAGE_POSITION: [-180.0, -180.0, -300.0 + k * spacing[0]],
                F.IMAGE_ORIENTATION: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                F.PIXEL_SPACING: [spacing[1], spacing[2]],
                F.ROWS: size,
                F.COLUMNS: size,
                F.PATIENT_KEY: "benchpatient0001",
            },
        )
        for k in range(n_slices)
    ]
    ds.add_samples(samples, progress=False)
    rep = RD.import_reader_labels(ds, manifest)
    if rep.errors:
        raise SystemExit(f"import failed: {rep.errors[:3]}")
    return ds


def read_floor(ds) -> float:
    from multireader.core import fields as F

    t = time.perf_counter()
    for f in F.reader_fields(ds, kinds=["mask"]):
        for p in ds.values(f"{f}.mask_path"):
            with Image.open(p) as im:
                np.asarray(im)
    return time.perf_counter() - t


def peak_rss_mb() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"process_mb": round(own, 1), "largest_worker_mb": round(kids, 1)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--lesions", type=int, default=20)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "lesions.json"))
    args = ap.parse_args(argv)

    import fiftyone as fo

    from multireader.analyses import lesions as AL

    with tempfile.TemporaryDirectory() as tmp:
        spacing, manifest, readers = make_series(
            tmp, args.slices, args.size, args.lesions, args.readers, 0
        )
        name = f"bench-lesions-{os.getpid()}"
        ds = build_dataset(name, tmp, args.slices, args.size, spacing, manifest)
        try:
            times = {"floor": [], "ours": []}
            result = None
            for _ in range(args.repeats):
                times["floor"].append(read_floor(ds))
                t = time.perf_counter()
                result = AL.compute_lesion_agreement(ds, n_boot=args.n_boot)
                times["ours"].append(time.perf_counter() - t)
        finally:
            fo.delete_dataset(name)
    med = {k: statistics.median(v) for k, v in times.items()}
    series = result["series"][0]
    out = {
        "slices": args.slices,
        "size": args.size,
        "readers": args.readers,
        "lesions_planted": args.lesions,
        "lesions_found": result["n_lesions"],
        "n_boot": args.n_boot,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "ratio_ours_over_floor": round(med["ours"] / med["floor"], 2),
        "goal_s": 20.0,
        "met": med["ours"] < 20.0,
        "series_worker_s": round(series["seconds"], 3),
        "peak_rss": peak_rss_mb(),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
