"""import_dicom against FiftyOne's built-in DICOMDataset importer, on the same files.

    .venv/bin/python bench/bench_import.py [--slices 300] [--mixed 300] [--size 512]
        [--repeats 5] [--large 10000 [--large-size 512] [--large-peer]]

Two file sets, each imported into a fresh dataset by three runners in rotating order,
``--repeats`` times, in one run: ours with the process's worker pool already started
(the steady state of a session), the peer, and ours as the first import of a process
(the pool starts inside the timing). The report gives medians, the ratio peer/ours
(above 1 means ours is faster) and two one-line profiles of ours: the import's phases
in the parent, and a worker's per-file steps.

- ``ct_series``: ``--slices`` synthetic 512x512 CT slices of one series (real DICOM
  files written with pydicom: int16 with a rescale to HU, a window, positions).
- ``real_mixed``: ``--mixed`` real files: every file shipped with pydicom /
  pydicom-data that the peer can also take (single frame, decodable, one SOP instance
  each, header types the peer accepts in that order; about 55), then byte copies of
  them as new instances (only the SOP Instance UID changes) up to ``--mixed``.
- ``--large N``: one import of N CT slices (64 distinct images cycled, every file its
  own instance and position): files/s and the peak PSS of the process and its workers.

Ours does more on the way: HU values kept as .npy, the file's VOI window applied,
MONOCHROME1/palette/YBR handled, image metadata filled, series ordered by position,
identifiers left behind. The peer (``fo.types.DICOMDataset``) min-max scales each
file to 8 bits, writes a JPEG and copies every header attribute. The machine is shared
and noisy: read the ratio, not the seconds; the load average is reported.
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
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import fiftyone as fo  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from pydicom.dataset import FileMetaDataset  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

from multireader.core.parallel import discard_shared_pool  # noqa: E402
from multireader.ingest import importer  # noqa: E402


def write_ct_series(
    folder: str, n: int, size: int, seed: int = 0, distinct: int | None = None
) -> list[str]:
    """A synthetic chest-like CT series: body, lungs, spine, noise; int16, HU rescale.

    ``distinct``: draw only that many different images and cycle through them (every
    file is still its own instance at its own position); makes 10,000 files quickly.
    """
    rng = np.random.default_rng(seed)
    cache: dict[int, np.ndarray] = {}
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    body = (xx / 0.42) ** 2 + (yy / 0.32) ** 2 < 1
    study, series, frame_of_ref = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for i in range(n):
        z = -200.0 + i * 1.25
        key = i % distinct if distinct else i
        if key not in cache:
            r = 0.12 + 0.04 * np.sin(key / n * np.pi)
            lungs = ((xx - 0.18) ** 2 + yy**2 < r**2) | ((xx + 0.18) ** 2 + yy**2 < r**2)
            spine = xx**2 + (yy - 0.22) ** 2 < 0.04**2
            hu = np.full((size, size), -1000.0, np.float32)
            hu[body] = 40.0
            hu[lungs] = -850.0
            hu[spine] = 700.0
            hu += rng.normal(0, 12, hu.shape).astype(np.float32)
            stored = np.clip(hu + 1024, 0, 4095).astype(np.uint16)
            if distinct:
                cache[key] = stored
        else:
            stored = cache[key]

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame_of_ref
        ds.Modality, ds.Manufacturer, ds.BodyPartExamined = "CT", "BENCH", "CHEST"
        ds.PatientName, ds.PatientID, ds.PatientSex, ds.PatientAge = (
            "Bench^Patient",
            "B1",
            "F",
            "061Y",
        )
        ds.InstanceNumber = n - i  # instance numbers run against position on purpose
        ds.ImagePositionPatient = [-180.0, -180.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness, ds.KVP = [0.7, 0.7], 1.25, 120
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = stored.tobytes()
        path = os.path.join(folder, f"0_ct_{i:04d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def peer_compatible_corpus_files(files_dir: str, work: str) -> list[str]:
    """pydicom's real files the peer can import, copied into ``files_dir`` after the CT.

    Single-frame, decodable, one file per SOP instance, and accepted by the peer next to
    the files before it: the peer copies every header attribute into a field and
    stops the whole import at the first attribute whose type differs from an earlier
    file's, so each candidate is tried in a probe dataset in the final glob order.
    """
    from fiftyone.utils.dicom import _get_image
    from pydicom.data import get_testdata_files

    probe = fo.Dataset()
    kept, sops = [], set()
    try:
        probe.add_dir(
            dataset_dir=files_dir,
            dataset_type=fo.types.DICOMDataset,
            images_dir=os.path.join(work, "probe"),
            progress=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for path in sorted(get_testdata_files()):
                target = os.path.join(files_dir, f"1_corpus_{len(kept):04d}.dcm")
                try:
                    ds = pydicom.dcmread(path)
                    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
                        continue
                    if not ds.get("SOPInstanceUID") or ds.SOPInstanceUID in sops:
                        continue
                    if str(ds.get("Modality", "")) in ("SEG", "RTSTRUCT"):
                        continue
                    img = _get_image(ds)
                    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] != 3):
                        continue
                    shutil.copy(path, target)
                    probe.add_dir(
                        dicom_path=target,
                        dataset_type=fo.types.DICOMDataset,
                        images_dir=os.path.join(work, "probe"),
                        progress=False,
                    )
                except Exception:  # noqa: BLE001 - the peer fails on it: leave it out
                    if os.path.exists(target):
                        os.remove(target)
                    continue
                sops.add(ds.SOPInstanceUID)
                kept.append(path)
    finally:
        probe.delete()
        shutil.rmtree(os.path.join(work, "probe"), ignore_errors=True)
    return kept


def copy_with_new_uids(src: str, target: str, rng: np.random.Generator) -> bool:
    """A byte copy of a real file as another instance: only its SOP Instance UID changes.

    The UID's bytes are replaced by a fresh ``2.25.<digits>`` UID of the same length
    wherever they occur (file meta and data set), so every other byte stays as the
    original writer made it (pydicom cannot re-save some of these files). False when
    the data set's UID is not found verbatim (a deflated data set) or too short.
    """
    uid = str(pydicom.dcmread(src, stop_before_pixels=True).get("SOPInstanceUID", ""))
    if len(uid) < 12:
        return False
    with open(src, "rb") as f:
        data = f.read()
    old = uid.encode()
    if old not in data:
        return False
    digits = "".join(str(d) for d in rng.integers(0, 10, len(uid) - 5))
    fresh = ("2.25." + "1" + digits[1:]).encode()
    with open(target, "wb") as f:
        f.write(data.replace(old, fresh))
    if (
        str(pydicom.dcmread(target, stop_before_pixels=True).get("SOPInstanceUID"))
        != fresh.decode()
    ):
        os.remove(target)  # the bytes were not the data set's own UID (a deflated data set)
        return False
    return True


def real_mixed_set(folder: str, work: str, total: int) -> tuple[list[str], int]:
    """``total`` real files the peer can import: pydicom's files, then copies of them.

    pydicom ships about 55 files the peer takes (see
    :func:`peer_compatible_corpus_files`); each is repeated, as a new instance (fresh
    SOPInstanceUID, same pixels and header), until ``total`` files: CT, MR, US,
    radiographs, RGB, palette, big-endian, JPEG, JPEG 2000, JPEG-LS, RLE.
    """
    kept = peer_compatible_corpus_files(folder, work)
    originals = sorted(os.listdir(folder))
    rng = np.random.default_rng(0)
    count, k, failed = len(originals), 0, set()
    while count < total and len(failed) < len(originals):
        name = originals[k % len(originals)]
        k += 1
        if name in failed:
            continue
        target = os.path.join(folder, f"{os.path.splitext(name)[0]}_copy{k:04d}.dcm")
        if copy_with_new_uids(os.path.join(folder, name), target, rng):
            count += 1
        else:
            failed.add(name)
    return kept, count


def run_ours(files_dir: str, work: str, cold: bool = False) -> tuple[float, int]:
    ds = fo.Dataset()
    try:
        if cold:  # the first import of a process: the worker pool starts inside the timing
            discard_shared_pool()
        t0 = time.perf_counter()
        rep = importer.import_dicom(ds, files_dir, render_dir=os.path.join(work, "ours"))
        return time.perf_counter() - t0, rep.imported
    finally:
        ds.delete()


def run_peer(files_dir: str, work: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    ds = fo.Dataset.from_dir(
        dataset_dir=files_dir,
        dataset_type=fo.types.DICOMDataset,
        images_dir=os.path.join(work, "peer"),
        progress=False,
    )
    elapsed = time.perf_counter() - t0
    n = len(ds)
    ds.delete()
    return elapsed, n


RUNNERS = {
    "ours": run_ours,
    "ours_cold": lambda d, w: run_ours(d, w, cold=True),
    "peer": run_peer,
}


def measure(files_dir: str, tmp: str, repeats: int, label: str) -> dict:
    """Ours (warm pool), the peer and ours (fresh pool), rotating the order, ``repeats`` times."""
    names = list(RUNNERS)
    times: dict[str, list[float]] = {n: [] for n in names}
    counts = {}
    for r in range(repeats):
        order = names[r % 3 :] + names[: r % 3]
        for name in order:
            work = os.path.join(tmp, f"run-{label}-{r}-{name}")
            os.makedirs(work)
            seconds, n = RUNNERS[name](files_dir, work)
            times[name].append(round(seconds, 3))
            counts[name] = n
            shutil.rmtree(work)
            print(f"{label} repeat {r + 1} {name:9s} {seconds:7.2f} s  {n} samples", flush=True)
    med = {n: statistics.median(times[n]) for n in names}
    return {
        "files": len(os.listdir(files_dir)),
        "samples": counts,
        "seconds": times,
        "median_s": {n: round(v, 3) for n, v in med.items()},
        "ratio_peer_over_ours": round(med["peer"] / med["ours"], 2),
        "ratio_peer_over_ours_cold": round(med["peer"] / med["ours_cold"], 2),
        "images_per_s": {n: round(counts[n] / med[n], 1) for n in names},
        "profile": profile_ours(files_dir, tmp, label),
    }


def measure_cpu(files_dir: str, tmp: str, repeats: int) -> dict:
    """CPU seconds of ours with one worker (in this process) and of the peer, alternating.

    ``time.process_time`` counts this process only, so ours decodes in-process here
    (``num_workers=1``): the figure says how much work each importer does per file,
    whatever the load on the machine (the database server's CPU is not counted).
    """
    cpu: dict[str, list[float]] = {"ours_1_worker": [], "peer": []}

    def ours_1(work):
        ds = fo.Dataset()
        try:
            importer.import_dicom(ds, files_dir, render_dir=os.path.join(work, "o"), num_workers=1)
        finally:
            ds.delete()

    def peer(work):
        run_peer(files_dir, work)

    for r in range(repeats):
        order = (("ours_1_worker", ours_1), ("peer", peer))
        for name, fn in order if r % 2 == 0 else order[::-1]:
            work = os.path.join(tmp, f"cpu-{r}-{name}")
            os.makedirs(work)
            c = time.process_time()
            fn(work)
            cpu[name].append(round(time.process_time() - c, 3))
            shutil.rmtree(work)
            print(f"cpu repeat {r + 1} {name:13s} {cpu[name][-1]:6.2f} s CPU", flush=True)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    n = len(os.listdir(files_dir))
    return {
        "cpu_s": cpu,
        "median_cpu_s": {k: round(v, 3) for k, v in med.items()},
        "cpu_ms_per_file": {k: round(1000 * v / n, 2) for k, v in med.items()},
        "ratio_peer_over_ours": round(med["peer"] / med["ours_1_worker"], 2),
    }


# --- where our time goes -------------------------------------------------------------
def worker_stages(files: list[str], render_dir: str, source_root: str) -> dict:
    """Per-file seconds of each step a worker takes, timed one by one in this process.

    The same functions, in the same order, as :func:`multireader.io.dicom.import_file`
    (read, decode, metadata and the stored path, window, PNG encode, the two writes),
    on the given files; no profiler, so the shares are the real ones.
    """
    from multireader.io import deid, dicom, source_paths

    opts = {"salt": b"bench", "source_roots": source_paths.import_roots(source_root)}
    steps: dict[str, float] = {}

    def lap(name, t0):
        now = time.perf_counter()
        steps[name] = steps.get(name, 0.0) + now - t0
        return now

    done = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            t = time.perf_counter()
            try:
                header = dicom._read(path)
                t = lap("read + parse", t)
                decoded = dicom.decode(path, header)
            except dicom.DicomSkip:
                continue
            t = lap("decode + rescale", t)
            dicom.header_metadata(header)
            deid.patient_key(header, b"bench")
            source_paths.stored_path(path, header, opts)
            t = lap("metadata + stored path", t)
            for frame in decoded.frames:
                stem = os.path.join(render_dir, f"{done}-{frame.index}")
                image = dicom.render(decoded, frame)
                t = lap("window", t)
                data = dicom.encode_png(image)
                t = lap("PNG encode", t)
                with open(stem + ".png", "wb") as f:
                    f.write(data)
                dicom._save_npy(frame.native, stem + ".npy")
                t = lap("write .png + .npy", t)
            done += 1
    return {k: v / max(done, 1) for k, v in steps.items()}


def profile_ours(files_dir: str, tmp: str, label: str, sample_files: int = 60) -> dict:
    """Two one-line profiles: the import's phases (wall clock, in the parent) and a
    worker's per-file steps (:func:`worker_stages` on ``sample_files`` files)."""
    from multireader.io import source_paths

    phases = {}

    def timed(module, name, phase):
        original = getattr(module, name)

        def add(seconds):
            phases[phase] = phases.get(phase, 0.0) + seconds

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                add(time.perf_counter() - t)

        def generator_wrapper(*args, **kwargs):
            # time spent waiting for the next result, not the caller's work between them
            it = original(*args, **kwargs)
            while True:
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    add(time.perf_counter() - t)
                    return
                add(time.perf_counter() - t)
                yield item

        setattr(module, name, generator_wrapper if name == "_run" else wrapper)
        return original

    patched = [
        (importer, "_run", "waiting for the workers"),
        (importer, "_prepare_dataset", "schema, media type, indexes (while decoding)"),
        (importer, "_commit_media", "rename staged files"),
        (source_paths, "remember_import", "source-path index"),
        (importer, "_write_samples", "bulk insert"),
        (importer, "order_slices", "order in database"),
        (importer, "_save_volume_view", "volume view"),
        (importer, "_store_report", "store report"),
    ]
    originals = [(m, n, timed(m, n, p)) for m, n, p in patched]
    work = os.path.join(tmp, f"profile-{label}")
    os.makedirs(work)
    try:
        total, _ = run_ours(files_dir, work)
    finally:
        for module, name, original in originals:
            setattr(module, name, original)
        shutil.rmtree(work, ignore_errors=True)
    phases["other"] = max(0.0, total - sum(phases.values()))

    files = sorted(os.path.join(files_dir, f) for f in os.listdir(files_dir))[:sample_files]
    stage_dir = os.path.join(tmp, f"profile-{label}-stages")
    os.makedirs(stage_dir)
    try:
        stages = worker_stages(files, stage_dir, files_dir)
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)
    per_file = sum(stages.values())
    return {
        "phases_s": {k: round(v, 3) for k, v in phases.items()},
        "total_s": round(total, 3),
        "worker_ms_per_file": round(1000 * per_file, 2),
        "worker_shares": {
            k: round(v / per_file, 3) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])
        },
    }


def profile_line(p: dict) -> str:
    phases = ", ".join(
        f"{k} {v:.2f} s"
        for k, v in sorted(p["phases_s"].items(), key=lambda kv: -kv[1])
        if v >= 0.005
    )
    shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in p["worker_shares"].items())
    return (
        f"import {p['total_s']:.2f} s = {phases}; one worker's file "
        f"{p['worker_ms_per_file']:.1f} ms = {shares}"
    )


# --- a large import: files/s and peak memory ------------------------------------------
class PeakMemory:
    """Peak proportional set size (PSS) of this process plus its children, sampled.

    PSS splits pages shared after fork between the processes, so the sum does not
    count the parent's copy-on-write pages once per worker.
    """

    def __init__(self, interval: float = 0.2):
        import threading

        import psutil

        self._proc = psutil.Process()
        self.interval, self.peak, self.parent_peak = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            try:
                pss = p.memory_full_info().pss
            except Exception:  # noqa: BLE001 - a worker that just exited
                continue
            total += pss
            if p.pid == self._proc.pid:
                self.parent_peak = max(self.parent_peak, pss)
        self.peak = max(self.peak, total)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def measure_large(tmp: str, n: int, size: int, with_peer: bool) -> dict:
    folder = os.path.join(tmp, "large")
    os.makedirs(folder)
    t = time.perf_counter()
    write_ct_series(folder, n, size, distinct=64)
    written = time.perf_counter() - t
    print(f"wrote {n} {size}x{size} slices in {written:.0f} s", flush=True)
    out = {"files": n, "size": size}
    order = ("ours", "peer") if with_peer else ("ours",)
    for name in order:
        work = os.path.join(tmp, f"large-{name}")
        os.makedirs(work)
        with PeakMemory() as mem:
            seconds, count = (run_ours if name == "ours" else run_peer)(folder, work)
        shutil.rmtree(work)
        out[name] = {
            "seconds": round(seconds, 2),
            "samples": count,
            "files_per_s": round(n / seconds, 1),
            "peak_pss_mb": round(mem.peak / 2**20, 1),
            "peak_parent_pss_mb": round(mem.parent_peak / 2**20, 1),
        }
        print(f"large {name}: {out[name]}", flush=True)
    shutil.rmtree(folder)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300, help="CT slices of the series")
    parser.add_argument("--mixed", type=int, default=300, help="real files in the mixed set")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5, help="0: only the --large import")
    parser.add_argument(
        "--cpu-repeats", type=int, default=0, help="also compare CPU seconds on the CT set"
    )
    parser.add_argument("--large", type=int, default=0, help="also import this many slices once")
    parser.add_argument("--large-size", type=int, default=512)
    parser.add_argument("--large-peer", action="store_true", help="run the peer on it too")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "import.json"))
    args = parser.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="bench-import-")
    try:
        ct_dir = os.path.join(tmp, "ct")
        os.makedirs(ct_dir)
        write_ct_series(ct_dir, args.slices, args.size)
        mixed_dir = os.path.join(tmp, "mixed")
        os.makedirs(mixed_dir)
        corpus, n_mixed = real_mixed_set(mixed_dir, tmp, args.mixed)
        print(
            f"{args.slices} synthetic CT slices; {n_mixed} real files "
            f"({len(corpus)} pydicom files and copies)",
            flush=True,
        )
        scenarios = (
            {
                "ct_series": measure(ct_dir, tmp, args.repeats, "ct"),
                "real_mixed": measure(mixed_dir, tmp, args.repeats, "mixed"),
            }
            if args.repeats
            else {}  # --repeats 0: only the large import
        )
        cpu = measure_cpu(ct_dir, tmp, args.cpu_repeats) if args.cpu_repeats else None
        large = (
            measure_large(tmp, args.large, args.large_size, args.large_peer) if args.large else None
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "synthetic_ct_slices": args.slices,
        "pydicom_files": len(corpus),
        "mixed_files": n_mixed,
        "image_size": args.size,
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "repeats": args.repeats,
        "fiftyone": fo.__version__,
        "scenarios": scenarios,
        "cpu_time_ct": cpu,
        "large": large,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    lines = [
        "| files | importer | median s | samples | images/s | peer / ours |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "ct_series": f"{args.slices} CT slices, {args.size}x{args.size}, one series",
        "real_mixed": f"{n_mixed} real files ({len(corpus)} pydicom files and copies)",
    }
    labels = {
        "ours": "multireader `import_dicom`",
        "ours_cold": "`import_dicom`, first in the process",
        "peer": "`fo.types.DICOMDataset`",
    }
    for key, sc in scenarios.items():
        for who, label in labels.items():
            ratio = {
                "ours": f"**{sc['ratio_peer_over_ours']}x**",
                "ours_cold": f"{sc['ratio_peer_over_ours_cold']}x",
            }.get(who, "")
            lines.append(
                f"| {names[key]} | {label} | {sc['median_s'][who]} | {sc['samples'][who]} "
                f"| {sc['images_per_s'][who]} | {ratio} |"
            )
    print("\n" + "\n".join(lines))
    print(
        f"\n{result['cpus']} CPUs, median of {args.repeats} rotating runs, load average at "
        f"the end {result['load_average_at_end']}; above 1x means ours is faster"
    )
    for key, sc in scenarios.items():
        print(f"profile {key}: {profile_line(sc['profile'])}")
    if cpu:
        print(f"CPU seconds on the CT set: {json.dumps(cpu['median_cpu_s'])}")
    if large:
        print(f"large: {json.dumps(large)}")
    return result


if __name__ == "__main__":
    main()
