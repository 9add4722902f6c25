"""RECIST agreement on a trial-sized dataset: 1,000 patients x 3 timepoints x 4 readers,
against the floor of only reading the readers' measurement fields.

    .venv/bin/python bench/bench_recist.py [--patients 1000] [--timepoints 3]
        [--readers 4] [--repeats 3] [--n-boot 1000]

The data: per patient 3 studies of 2 slices each, written straight into a FiftyOne
dataset with the fields the DICOM importer and ``import_measurements`` write
(``patient_key``, ``study_instance_uid``, ``timepoint``, ``days_from_baseline``), and per
reader a ``reader_<id>_measurements`` field (``fo.Polylines``, one per lesion, with
``lesion_id``, ``long_axis_mm``, ``short_axis_mm``, ``target``, ``site``, ``lymph_node``,
``new_lesion``, ``session``, ``read_at``) on the first slice of each study, marked as a
reader field. Each patient has 2-5 lesions (one in five a lymph node) whose size follows
a response trajectory; each reader measures with 5 % noise, the last reader drifts
upward 4 % per timepoint, and a few readers skip target flags (the rule chooses).
Timed alternately in one process:

* ``floor``: one ``values`` call reading every reader's measurement attributes with each
  sample's patient, timepoint and study: what any analysis of these fields must pay;
* ``ours``: ``compute_recist_agreement`` end to end (reading, RECIST per reader per
  patient, response/sum/percent-change/target/lesion agreement with patient-bootstrap
  intervals, drift by timepoint and session, writing ``recist_discordant``, the run).

Reports medians and the ratio ours/floor. The goal (issue 15): under 5 s on 2 cores.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np
from PIL import Image

SITES = ("liver", "lung", "bone", "adrenal")


def build_dataset(name: str, folder: str, n_patients: int, n_tp: int, n_readers: int, seed: int):
    import fiftyone as fo

    from multireader.core import fields as F

    rng = np.random.default_rng(seed)
    render = os.path.join(folder, "render.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(render)
    ds = fo.Dataset(name)
    readers = [f"R{r + 1}" for r in range(n_readers)]
    samples = []
    n_meas = 0
    t0 = dt.datetime(2026, 1, 1)
    for p in range(n_patients):
        n_les = int(rng.integers(2, 6))
        base = rng.uniform(12, 45, n_les)
        node = rng.random(n_les) < 0.2
        sites = [
            ("node" if node[i] else SITES[int(rng.integers(len(SITES)))]) for i in range(n_les)
        ]
        traj = np.cumprod(np.r_[1.0, rng.uniform(0.55, 1.35, n_tp - 1)])
        for t in range(n_tp):
            key = f"1.2.{p}.{t}"
            first = len(samples)
            for k in range(2):
                samples.append(
                    fo.Sample(
                        filepath=render,
                        **{
                            F.DICOM_KEY: f"{key}.{k}:0",
                            F.SOP_UID: f"{key}.{k}",
                            F.STUDY_UID: key,
                            F.SERIES_UID: key + ".1",
                            F.SLICE_INDEX: k,
                            F.PATIENT_KEY: f"p{p:06d}",
                            F.TIMEPOINT: t,
                            F.DAYS_FROM_BASELINE: 56 * t,
                        },
                    )
                )
            for r, who in enumerate(readers):
                drift = 1 + (0.04 * t if r == n_readers - 1 else 0.0)
                flags = p % 17 != r  # now and then a reader flags no target
                polys = []
                for i in range(n_les):
                    size = base[i] * traj[t] * drift * (1 + rng.normal(0, 0.05))
                    long_mm = float(size * (1.6 if node[i] else 1.0))
                    short_mm = float(size if node[i] else size * 0.6)
                    polys.append(
                        fo.Polyline(
                            label=f"L{i + 1}",
                            points=[],
                            closed=False,
                            filled=False,
                            reader=who,
                            lesion_id=f"L{i + 1}",
                            long_axis_mm=long_mm,
                            short_axis_mm=short_mm,
                            target=bool(flags and i < 4),
                            site=sites[i],
                            lymph_node=bool(node[i]),
                            new_lesion=False,
                            level="slice",
                            session=f"session {t + 1}",
                            read_at=t0 + dt.timedelta(days=60 * t, minutes=p),
                        )
                    )
                samples[first][F.reader_field(who, "measurements")] = fo.Polylines(polylines=polys)
                n_meas += len(polys)
    ds.add_samples(samples, progress=False)
    for who in readers:
        F.mark_reader_field(ds, F.reader_field(who, "measurements"), who, "measurements")
    return ds, n_meas


def read_floor(ds) -> float:
    from multireader.analyses import recist as AR
    from multireader.core import fields as F

    t = time.perf_counter()
    fields = sorted(F.reader_fields(ds, kinds=["measurements"]))
    paths = ["id", F.PATIENT_KEY, F.TIMEPOINT, F.STUDY_UID] + [
        f"{f}.polylines.{a}" for f in fields for a in AR.MEASUREMENT_ATTRS
    ]
    ds.values(paths)
    return time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--timepoints", type=int, default=3)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--profile", action="store_true", help="print the top of a cProfile run")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "recist.json"))
    args = ap.parse_args(argv)

    import fiftyone as fo

    from multireader.analyses import recist as AR

    with tempfile.TemporaryDirectory() as tmp:
        name = f"bench-recist-{os.getpid()}"
        t = time.perf_counter()
        ds, n_meas = build_dataset(name, tmp, args.patients, args.timepoints, args.readers, 0)
        build_s = time.perf_counter() - t
        try:
            times = {"floor": [], "ours": []}
            result = None
            for _ in range(args.repeats):
                times["floor"].append(read_floor(ds))
                t = time.perf_counter()
                result = AR.compute_recist_agreement(ds, n_boot=args.n_boot)
                times["ours"].append(time.perf_counter() - t)
            if args.profile:
                prof = cProfile.Profile()
                prof.enable()
                AR.compute_recist_agreement(ds, n_boot=args.n_boot)
                prof.disable()
                pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
        finally:
            fo.delete_dataset(name)
    med = {k: statistics.median(v) for k, v in times.items()}
    s = result.summary()
    out = {
        "patients": args.patients,
        "timepoints": args.timepoints,
        "readers": args.readers,
        "samples": args.patients * args.timepoints * 2,
        "measurements": n_meas,
        "n_boot": args.n_boot,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "build_s": round(build_s, 1),
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "ratio_ours_over_floor": round(med["ours"] / med["floor"], 2),
        "goal_s": 5.0,
        "met": med["ours"] < 5.0,
        "found": {
            "n_discordant": s["n_discordant"],
            "followups": s["followups"],
            "drift_flags": s["drift_flags"],
        },
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
