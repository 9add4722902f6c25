"""compute_agreement end to end on a 100,000-sample dataset with 4 reader fields.

The dataset (class calls with scores, sessions, read times and a patient key per
sample) is built once and kept as ``bench-agreement-<n>``; rebuild with ``--rebuild``.
The run is timed as a user runs it (every class statistic, 1,000 bootstrap resamples
over patients, the per-sample fields written), and split into database reads, compute
and database writes from the run's own ``timings``. A second run with ``n_boot=0``
shows what the confidence intervals cost.

    .venv/bin/python bench/bench_compute_agreement.py [--n 100000] [--repeats 3]

Writes ``bench/results/compute_agreement.json``.
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

CLASSES = ["benign", "probably_benign", "suspicious", "malignant", "other"]


def build(name: str, n: int, seed: int = 0):
    import fiftyone as fo

    from multireader.core import fields, schema

    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    t = time.perf_counter()
    ds = fo.Dataset(name, persistent=True)
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(CLASSES), n)
    patients = rng.integers(0, n // 20, n)
    ds.add_samples(
        [
            fo.Sample(filepath=f"/bench/{i:07d}.png", patient_key=f"p{patients[i]}")
            for i in range(n)
        ],
        progress=False,
    )
    schema.declare_label_schema(ds, CLASSES, ordered=True, score_range=[1, 5])
    base = dt.datetime(2026, 1, 5)
    for r in range(4):
        noise = rng.normal(0, 0.4 + 0.2 * r, n)
        calls = np.clip(np.rint(truth + noise), 0, len(CLASSES) - 1).astype(int)
        missing = rng.random(n) < 0.05
        session = rng.integers(0, 6, n)
        labels = [
            None
            if missing[i]
            else fo.Classification(
                label=CLASSES[calls[i]],
                score=float(calls[i] + 1),
                session=f"S{session[i] + 1}",
                read_at=base + dt.timedelta(days=7 * int(session[i])),
                reader=f"R{r + 1}",
            )
            for i in range(n)
        ]
        field = fields.reader_field(f"R{r + 1}")
        ds.set_values(field, labels, validate=False)
        fields.mark_reader_field(ds, field, f"R{r + 1}", "classification")
    ds.add_dynamic_sample_fields()
    print(f"built {name}: {n} samples x 4 readers in {time.perf_counter() - t:.1f} s", flush=True)
    return ds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)

    import fiftyone as fo

    from multireader.analyses import agreement as analysis

    name = f"bench-agreement-{args.n}"
    ds = (
        fo.load_dataset(name)
        if fo.dataset_exists(name) and not args.rebuild
        else build(name, args.n)
    )
    runs = {"n_boot=1000": [], "n_boot=0": []}
    timings = {"n_boot=1000": [], "n_boot=0": []}
    for _ in range(args.repeats):
        for label, n_boot in (("n_boot=1000", 1000), ("n_boot=0", 0)):
            t = time.perf_counter()
            res = analysis.compute_agreement(ds, n_boot=n_boot, run_key="bench")
            runs[label].append(time.perf_counter() - t)
            timings[label].append(res["timings"])
    out = {
        "benchmark": "compute_agreement end to end",
        "n_samples": len(ds),
        "n_readers": 4,
        "n_classes": len(CLASSES),
        "repeats": args.repeats,
        "goal_s": 30.0,
        "machine": f"{os.cpu_count()} cores (shared, noisy)",
        "date": dt.date.today().isoformat(),
    }
    print(
        f"\n{'run':12s} {'median s':>9s} {'read s':>8s} {'compute s':>10s} {'write s':>8s} {'DB share':>9s}"
    )
    for label in runs:
        med = statistics.median(runs[label])
        parts = {k: statistics.median(t[k] for t in timings[label]) for k in timings[label][0]}
        share = (parts["read_s"] + parts["write_s"]) / med
        out[label] = {"median_s": med, "all_s": runs[label], **parts, "db_share": share}
        print(
            f"{label:12s} {med:9.2f} {parts['read_s']:8.2f} {parts['compute_s']:10.2f} "
            f"{parts['write_s']:8.2f} {share:9.0%}"
        )
    path = os.path.join(ROOT, "bench", "results", "compute_agreement.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
