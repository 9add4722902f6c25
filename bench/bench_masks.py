"""Mask agreement end to end: compute_agreement on 256x256 masks of 4 readers, the
worker pool against the same loop in one process, alternately, in one run.

    .venv/bin/python bench/bench_masks.py [--n 2000] [--repeats 3] [--rebuild]

Data. ``bench-masks-<n>``: ``n`` samples, each with four readers' 256x256 PNG masks of
one large lesion (a disc of radius 50-90 px, each reader's outline shifted and scaled a
little, about 20 % of the image foreground), 2 % of reads missing, pixel spacing
0.7 mm, a patient key per 10 samples. Built once and kept (``--rebuild``).

Timed: ``compute_agreement(ds, kinds=["mask"], n_boot=1000)`` (pairwise Dice, IoU, HD95
and mean surface distance, STAPLE, per-sample fields written) with
``MASK_WORKERS = None`` (one worker per CPU, ours) and ``MASK_WORKERS = 1`` (the loop in
this process, as before the pool), alternating, medians of ``--repeats``. The results of
the two are checked identical. The 100,000-sample figure is an explicit extrapolation
(time per sample x 100,000): a 100,000 x 4 mask study (400,000 PNG files) does not fit
this session's time. Writes ``bench/results/masks.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")

import numpy as np  # noqa: E402

SIZE = 256


def build(name: str, n: int, seed: int = 0):
    import fiftyone as fo
    from PIL import Image

    from multireader.core import fields

    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    out_dir = os.path.join(fo.config.default_dataset_dir, name)
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    ds = fo.Dataset(name, persistent=True)
    ds.add_samples(
        [
            fo.Sample(
                filepath=f"/bench/m{i:06d}.png",
                patient_key=f"p{i // 10}",
                pixel_spacing=[0.7, 0.7],
            )
            for i in range(n)
        ],
        progress=False,
    )
    ids = ds.values("id")
    for r in range(4):
        field = fields.reader_field(f"R{r + 1}", "mask")
        values = []
        for i in range(n):
            if rng.random() < 0.02:
                values.append(None)
                continue
            g = np.random.default_rng(seed * 1000 + i)  # the lesion of sample i
            cy, cx, rad = g.uniform(100, 156), g.uniform(100, 156), g.uniform(50, 90)
            dy, dx, s = rng.normal(0, 3), rng.normal(0, 3), rng.normal(1, 0.06)
            m = (yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 <= (rad * s) ** 2
            path = os.path.join(out_dir, f"{i:06d}_r{r + 1}.png")
            Image.fromarray((m * 255).astype(np.uint8)).save(path)
            values.append(fo.Segmentation(mask_path=path))
        ds.set_values(field, dict(zip(ids, values, strict=True)), key_field="id")
        fields.mark_reader_field(ds, field, f"R{r + 1}", "mask")
    return ds


def _run(ds, workers):
    from multireader.analyses import agreement as analysis

    analysis.MASK_WORKERS = workers
    t = time.perf_counter()
    res = analysis.compute_agreement(ds, kinds=["mask"], n_boot=1000, run_key=None)
    return time.perf_counter() - t, res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument(
        "--pool-only",
        action="store_true",
        help="time the pool alone, once (the end-to-end figure at a size the loop is too slow for)",
    )
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "masks.json"))
    args = ap.parse_args(argv)
    import fiftyone as fo

    name = f"bench-masks-{args.n}"
    if fo.dataset_exists(name) and not args.rebuild:
        ds = fo.load_dataset(name)
    else:
        t = time.perf_counter()
        ds = build(name, args.n)
        print(f"built {name} in {time.perf_counter() - t:.1f} s", flush=True)
    if args.pool_only:
        secs, res = _run(ds, None)
        out = {
            "benchmark": "compute_agreement on masks, worker pool alone, end to end",
            "n_samples": len(ds),
            "n_readers": 4,
            "mask_size": [SIZE, SIZE],
            "cpus": os.cpu_count(),
            "date": dt.date.today().isoformat(),
            "seconds": secs,
            "ms_per_sample": 1000 * secs / len(ds),
            "n_items": res["kinds"]["mask"]["n_items"],
        }
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
        print(json.dumps(out, indent=1))
        return
    times = {"pool": [], "one process": []}
    results = {}
    for rep in range(args.repeats):
        order = [("pool", None), ("one process", 1)]
        for label, workers in order if rep % 2 == 0 else order[::-1]:
            secs, res = _run(ds, workers)
            times[label].append(secs)
            results[label] = res["kinds"]["mask"]
            print(f"{label:12s} {secs:.2f} s", flush=True)
    a, b = (json.dumps(results[k], sort_keys=True, default=str) for k in times)
    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(ds)
    out = {
        "benchmark": "compute_agreement on masks: worker pool vs one process",
        "n_samples": n,
        "n_readers": 4,
        "mask_size": [SIZE, SIZE],
        "cpus": os.cpu_count(),
        "date": dt.date.today().isoformat(),
        "seconds": times,
        "median_s": med,
        "speedup": med["one process"] / med["pool"],
        "identical_results": a == b,
        "ms_per_sample": {k: 1000 * v / n for k, v in med.items()},
        "extrapolated_100k_s": {k: v / n * 100_000 for k, v in med.items()},
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(
        json.dumps(
            {
                k: out[k]
                for k in (
                    "median_s",
                    "speedup",
                    "identical_results",
                    "ms_per_sample",
                    "extrapolated_100k_s",
                )
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
