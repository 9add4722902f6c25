"""Image-quality metrics against the cost of only reading the pixels, on the same files.

    .venv/bin/python bench/bench_quality.py [--images 10000] [--size 512] [--workers 2]
        [--repeats 3] [--dicom 10000] [--dataset]

Writes ``--images`` synthetic CT-like slices (int16 HU: air, body, lungs, spine, ribs,
a lesion, scanner noise; a third of them blurred) as ``.npy`` files, the way the
importer stores native arrays, and the same slices as DICOM files (int16 with a HU
rescale) for ``--dicom`` of them. Then, in the same run, with the same fork pool of
``--workers`` processes and the same chunking on every side:

- ``read_npy``: only ``np.load`` of each ``.npy`` (the floor: the pixels must be read);
- ``metrics``: ``np.load`` + every quality metric (the code compute_quality_metrics runs);
- ``read_dicom``: ``pydicom.dcmread`` + ``pixel_array`` + the rescale to HU (what a user
  without native arrays would have to pay just to get the pixels).

Each side runs ``--repeats`` times, in rotating order, twice: with the files in the page
cache ("warm") and after asking the kernel to drop these files from it
(``posix_fadvise(DONTNEED)``, only our own files: "cold"). Reported: images/s
(medians) and the ratios metrics / read. ``--dataset`` also times the whole
``compute_quality_metrics`` on a dataset of those samples (database read and write
included). The machine is shared and noisy: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import numpy as np
from scipy import ndimage

from multireader.analyses import quality
from multireader.core.parallel import mp_context

WINDOW = (40.0, 400.0)


def scenes(size: int, n: int = 12) -> list[np.ndarray]:
    """A few noiseless chest-like slices (HU); every third one blurred (sigma 2.6 px)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    out = []
    for k in range(n):
        hu = np.full((size, size), -1000.0, np.float32)
        hu[(xx / 0.44) ** 2 + (yy / 0.33) ** 2 < 1] = -100.0
        hu[(xx / 0.41) ** 2 + (yy / 0.30) ** 2 < 1] = 40.0
        r = 0.11 + 0.01 * k
        hu[((xx - 0.17) / r) ** 2 + (yy / 0.2) ** 2 < 1] = -850.0
        hu[((xx + 0.17) / r) ** 2 + (yy / 0.2) ** 2 < 1] = -850.0
        hu[xx**2 + (yy - 0.24) ** 2 < 0.035**2] = 700.0
        shell = ((xx / 0.41) ** 2 + (yy / 0.30) ** 2 < 1) & (
            (xx / 0.38) ** 2 + (yy / 0.28) ** 2 > 1
        )
        hu[shell & (np.sin(np.arctan2(yy, xx) * 9 + k) > 0.3)] = 500.0
        hu[(xx - 0.15) ** 2 + (yy + 0.05 - 0.005 * k) ** 2 < 0.02**2] = 45.0
        if k % 3 == 2:
            hu = ndimage.gaussian_filter(hu, 2.6 * size / 512)
        out.append(hu)
    return out


def write_images(folder: str, n: int, size: int, n_dicom: int, seed: int = 0):
    """``n`` .npy files and the first ``n_dicom`` of them as DICOM; returns both lists."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(seed)
    base = scenes(size)
    # a pool of noise fields, rolled per image: every image differs, cheaply
    noise = [rng.normal(0, 1, (size, size)).astype(np.float32) for _ in range(16)]
    npys, dcms = [], []
    series = generate_uid()
    for i in range(n):
        sigma = (10.0, 12.0, 22.0, 60.0)[i % 4]
        field = np.roll(noise[i % 16], (i * 37) % size, axis=i % 2)
        hu = np.clip(np.rint(base[i % len(base)] + sigma * field), -1024, 3071).astype(np.int16)
        sub = os.path.join(folder, f"{i % 100:02d}")
        os.makedirs(sub, exist_ok=True)
        path = os.path.join(sub, f"im{i:05d}.npy")
        np.save(path, hu)
        npys.append(path)
        if i < n_dicom:
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = pydicom.Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.SeriesInstanceUID = series
            ds.Modality = "CT"
            ds.Rows = ds.Columns = size
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = 16
            ds.BitsStored = 12
            ds.HighBit = 11
            ds.PixelRepresentation = 0
            ds.RescaleSlope = 1
            ds.RescaleIntercept = -1024
            ds.WindowCenter = WINDOW[0]
            ds.WindowWidth = WINDOW[1]
            ds.PixelData = (hu.astype(np.int32) + 1024).astype(np.uint16).tobytes()
            dpath = os.path.join(sub, f"im{i:05d}.dcm")
            ds.save_as(dpath, enforce_file_format=True)
            dcms.append(dpath)
    return npys, dcms


# --- the three sides: same pool, same chunks ------------------------------------------------


def _read_npy_chunk(jobs):
    # the array must be materialised, exactly as the metrics side gets it
    return [(i, (np.load(path, allow_pickle=False).shape, None), None) for i, path, *_ in jobs]


def _read_dicom_chunk(jobs):
    import pydicom

    out = []
    for i, path, *_ in jobs:
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.int16) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        out.append((i, (hu.shape, None), None))
    return out


def _metrics_chunk(jobs):
    return quality._measure_chunk(jobs, quality.QUALITY_METRICS)


def run_side(fn, paths: list[str], workers: int) -> float:
    """Seconds to process every path with ``fn`` over chunks in a fork pool."""
    jobs = [(i, p, "HU", WINDOW) for i, p in enumerate(paths)]
    # the chunk size compute_quality_metrics uses
    size = max(4, min(64, len(jobs) // (4 * workers) or 4))
    chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    t0 = time.perf_counter()
    # the same pool set-up as compute_quality_metrics: kernels loaded before the fork,
    # one torch thread per worker (the read sides pay the same, so nothing is hidden)
    quality.warm_up()
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=mp_context(), initializer=quality.init_worker
    ) as pool:
        done = 0
        for result in pool.map(fn, chunks):
            done += len(result)
            bad = [r for r in result if r[2] is not None]
            if bad:
                raise RuntimeError(f"benchmark image failed: {bad[0]}")
    assert done == len(paths)
    return time.perf_counter() - t0


def drop_from_cache(paths: list[str]) -> None:
    """Ask the kernel to forget these files' pages (ours only; nothing system-wide)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def per_metric_ms(paths: list[str], n: int = 200) -> dict[str, float]:
    """Single-process milliseconds per image of each metric alone (load excluded)."""
    arrays = [np.load(p) for p in paths[:n]]
    out = {}
    for name in ("all", *quality.QUALITY_METRICS):
        metrics = None if name == "all" else [name]
        quality.image_quality(arrays[0], unit="HU", window=WINDOW, metrics=metrics)
        t0 = time.perf_counter()
        for a in arrays:
            quality.image_quality(a, unit="HU", window=WINDOW, metrics=metrics)
        out[name] = round((time.perf_counter() - t0) / len(arrays) * 1e3, 3)
    t0 = time.perf_counter()
    for p in paths[:n]:
        np.load(p)
    out["np.load (warm)"] = round((time.perf_counter() - t0) / n * 1e3, 3)
    return out


def time_dataset(paths: list[str], workers: int) -> dict:
    import fiftyone as fo

    name = f"bench-quality-{os.getpid()}"
    ds = fo.Dataset(name)
    try:
        ds.add_samples(
            [
                fo.Sample(
                    filepath=p[:-4] + ".png",
                    native_path=p,
                    native_unit="HU",
                    window_center=WINDOW[0],
                    window_width=WINDOW[1],
                )
                for p in paths
            ],
            progress=False,
        )
        t0 = time.perf_counter()
        rep = quality.compute_quality_metrics(ds, num_workers=workers)
        total = time.perf_counter() - t0
        assert rep["n_computed"] == len(paths), rep["errors"][:3]
        return {"seconds": round(total, 2), "images_per_s": round(len(paths) / total, 1)}
    finally:
        fo.delete_dataset(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dicom", type=int, default=10000, help="how many also as DICOM")
    parser.add_argument("--dataset", action="store_true", help="also time the dataset call")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "quality.json"))
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="bench-quality-")
    try:
        t0 = time.perf_counter()
        npys, dcms = write_images(folder, args.images, args.size, min(args.dicom, args.images))
        print(
            f"wrote {len(npys)} .npy and {len(dcms)} DICOM files in {time.perf_counter() - t0:.0f} s"
        )
        sides = {
            "read_npy": (_read_npy_chunk, npys),
            "metrics": (_metrics_chunk, npys),
            "read_dicom": (_read_dicom_chunk, dcms),
        }
        sides = {k: v for k, v in sides.items() if v[1]}
        times = {cache: {k: [] for k in sides} for cache in ("warm", "cold")}
        order = list(sides)
        for rep in range(args.repeats):
            rot = order[rep % len(order) :] + order[: rep % len(order)]
            for cache in ("warm", "cold"):
                for side in rot:
                    fn, paths = sides[side]
                    if cache == "cold":
                        drop_from_cache(paths)
                    else:
                        run_side(_read_npy_chunk if side != "read_dicom" else fn, paths, 1)
                    sec = run_side(fn, paths, args.workers)
                    times[cache][side].append(sec)
                    print(f"repeat {rep} {cache:4s} {side:10s} {len(paths) / sec:8.1f} images/s")
        result = {
            "images": len(npys),
            "dicom_images": len(dcms),
            "size": args.size,
            "workers": args.workers,
            "repeats": args.repeats,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}",
            "date": time.strftime("%Y-%m-%d"),
        }
        for cache, per in times.items():
            med = {k: statistics.median(v) for k, v in per.items()}
            rate = {k: round(len(sides[k][1]) / s, 1) for k, s in med.items()}
            result[cache] = {
                "images_per_s": rate,
                "seconds_median": {k: round(s, 2) for k, s in med.items()},
                "seconds_all": {k: [round(s, 2) for s in v] for k, v in per.items()},
                "ratio_metrics_to_read_npy": round(rate["read_npy"] / rate["metrics"], 2),
            }
            if "read_dicom" in rate:
                result[cache]["ratio_metrics_to_read_dicom"] = round(
                    rate["read_dicom"] / rate["metrics"], 2
                )
            # per repeat: others' load on a shared machine moves every side's seconds
            for base in ("read_npy", "read_dicom"):
                if base in per:
                    result[cache][f"ratio_metrics_to_{base}_per_repeat"] = [
                        round((m / len(npys)) / (r / len(sides[base][1])), 2)
                        for m, r in zip(per["metrics"], per[base], strict=True)
                    ]
        per = result["single_process_ms_per_image"] = per_metric_ms(npys)
        # where the time goes, one process, one image; single metrics each include the
        # shared histogram, so they do not add up to "all"
        result["profile"] = (
            f"per image, one process: np.load {per['np.load (warm)']} ms; all metrics "
            f"{per['all']} ms, of which alone: frequency share (FFT) "
            f"{per['sharpness_frequency']}, noise {per['noise']}, Laplacian "
            f"{per['sharpness_laplacian']}, histogram statistics {per['brightness']}"
        )
        print(result["profile"])
        if args.dataset:
            result["compute_quality_metrics_dataset"] = time_dataset(npys, args.workers)
        print(json.dumps(result, indent=2))
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
