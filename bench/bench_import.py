"""import_dicom against FiftyOne's built-in DICOMDataset importer, on the same files.

    .venv/bin/python bench/bench_import.py [--series 12] [--size 512] [--repeats 3]

Both import the same synthetic CT series (real DICOM files, 512x512 by default) into a
fresh dataset, in alternating order, several times; the report gives medians and the
ratio peer/ours (above 1 means ours is faster). Ours does more on the way: HU values
kept as .npy, the file's window applied, series ordered by position, identifiers left
behind. The machine is shared and noisy: read the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")

import fiftyone as fo
import pydicom

from multireader import demo, importer


def run_ours(files_dir: str, work: str) -> tuple[float, int]:
    ds = fo.Dataset()
    try:
        t0 = time.perf_counter()
        rep = importer.import_dicom(ds, files_dir, render_dir=os.path.join(work, "ours"))
        return time.perf_counter() - t0, rep.imported
    finally:
        ds.delete()


def run_peer(files_dir: str, work: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    ds = fo.Dataset.from_dir(
        dicom_path=os.path.join(files_dir, "*.dcm"),
        dataset_type=fo.types.DICOMDataset,
        images_dir=os.path.join(work, "peer"),
        progress=False,
    )
    elapsed = time.perf_counter() - t0
    n = len(ds)
    ds.delete()
    return elapsed, n


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=12)
    parser.add_argument("--slices", type=int, default=14)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "import.json"))
    args = parser.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="bench-import-")
    try:
        study = demo.generate_demo_study(
            os.path.join(tmp, "study"),
            seed=1,
            n_series=args.series,
            slices_per_series=args.slices,
            image_size=args.size,
        )
        # the peer cannot import multi-frame files (it writes one image per file and
        # fails on a frame stack), so both import the study's single-frame files
        files_dir = os.path.join(tmp, "flat")
        os.makedirs(files_dir)
        for root, _, names in os.walk(study.dicom_dir):
            for name in names:
                path = os.path.join(root, name)
                if "NumberOfFrames" not in pydicom.dcmread(path, stop_before_pixels=True):
                    shutil.copy(
                        path, os.path.join(files_dir, f"{len(os.listdir(files_dir)):05d}.dcm")
                    )
        times = {"ours": [], "peer": []}
        counts = {}
        for r in range(args.repeats):
            order = ("ours", "peer") if r % 2 == 0 else ("peer", "ours")
            for name in order:
                work = os.path.join(tmp, f"run-{r}-{name}")
                os.makedirs(work)
                seconds, n = (run_ours if name == "ours" else run_peer)(files_dir, work)
                times[name].append(seconds)
                counts[name] = n
                shutil.rmtree(work)
                print(f"repeat {r + 1} {name:4s} {seconds:7.2f} s  {n} samples", flush=True)
        ours, peer = statistics.median(times["ours"]), statistics.median(times["peer"])
        result = {
            "files": len(os.listdir(files_dir)),
            "image_size": args.size,
            "cpus": os.cpu_count(),
            "samples": counts,
            "seconds": times,
            "median_s": {"ours": round(ours, 3), "peer": round(peer, 3)},
            "ratio_peer_over_ours": round(peer / ours, 2),
            "images_per_s": {
                "ours": round(counts["ours"] / ours, 1),
                "peer": round(counts["peer"] / peer, 1),
            },
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(
        f"\n| importer | median s | images/s |\n|---|---|---|\n"
        f"| multireader import_dicom | {result['median_s']['ours']} | {result['images_per_s']['ours']} |\n"
        f"| fo.types.DICOMDataset | {result['median_s']['peer']} | {result['images_per_s']['peer']} |\n"
        f"\nratio (peer / ours): {result['ratio_peer_over_ours']}x on {result['files']} files, {args.size}x{args.size}, {result['cpus']} CPUs"
    )
    return result


if __name__ == "__main__":
    main()
