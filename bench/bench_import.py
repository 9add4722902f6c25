"""import_dicom against FiftyOne's built-in DICOMDataset importer, on the same files.

    .venv/bin/python bench/bench_import.py [--slices 200] [--size 512] [--repeats 5]

The file set: a synthetic CT series (``--slices`` real DICOM files written with pydicom,
int16 with a rescale to HU, a window, positions, valid file meta) plus every real file
shipped with pydicom / pydicom-data that the peer importer can also take (single
frame, decodable, one file per SOP instance, so both importers write the same number
of samples). Both import that folder into a fresh dataset, in alternating order, several
times; the report gives medians and the ratio peer/ours (above 1 means ours is faster).

Ours does more on the way: HU values kept as .npy, the file's VOI window applied,
MONOCHROME1/palette/YBR handled, image metadata filled, series ordered by position,
identifiers left behind. The peer (``fo.types.DICOMDataset``) min-max scales each
file to 8 bits, writes a JPEG and copies every header attribute. The machine is shared
and noisy: read the ratio, not the seconds.
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

from multireader.ingest import importer  # noqa: E402


def write_ct_series(folder: str, n: int, size: int, seed: int = 0) -> list[str]:
    """A synthetic chest-like CT series: body, lungs, spine, noise; int16, HU rescale."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    body = (xx / 0.42) ** 2 + (yy / 0.32) ** 2 < 1
    study, series, frame_of_ref = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for i in range(n):
        z = -200.0 + i * 1.25
        r = 0.12 + 0.04 * np.sin(i / n * np.pi)
        lungs = ((xx - 0.18) ** 2 + yy**2 < r**2) | ((xx + 0.18) ** 2 + yy**2 < r**2)
        spine = xx**2 + (yy - 0.22) ** 2 < 0.04**2
        hu = np.full((size, size), -1000.0, np.float32)
        hu[body] = 40.0
        hu[lungs] = -850.0
        hu[spine] = 700.0
        hu += rng.normal(0, 12, hu.shape).astype(np.float32)
        stored = np.clip(hu + 1024, 0, 4095).astype(np.uint16)

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
        dataset_dir=files_dir,
        dataset_type=fo.types.DICOMDataset,
        images_dir=os.path.join(work, "peer"),
        progress=False,
    )
    elapsed = time.perf_counter() - t0
    n = len(ds)
    ds.delete()
    return elapsed, n


def measure(files_dir: str, tmp: str, repeats: int, label: str) -> dict:
    """Both importers on one folder, alternating which goes first, ``repeats`` times."""
    times: dict[str, list[float]] = {"ours": [], "peer": []}
    counts = {}
    for r in range(repeats):
        order = ("ours", "peer") if r % 2 == 0 else ("peer", "ours")
        for name in order:
            work = os.path.join(tmp, f"run-{label}-{r}-{name}")
            os.makedirs(work)
            seconds, n = (run_ours if name == "ours" else run_peer)(files_dir, work)
            times[name].append(round(seconds, 3))
            counts[name] = n
            shutil.rmtree(work)
            print(f"{label} repeat {r + 1} {name:4s} {seconds:7.2f} s  {n} samples", flush=True)
    ours, peer = statistics.median(times["ours"]), statistics.median(times["peer"])
    return {
        "files": len(os.listdir(files_dir)),
        "samples": counts,
        "seconds": times,
        "median_s": {"ours": round(ours, 3), "peer": round(peer, 3)},
        "ratio_peer_over_ours": round(peer / ours, 2),
        "images_per_s": {
            "ours": round(counts["ours"] / ours, 1),
            "peer": round(counts["peer"] / peer, 1),
        },
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "import.json"))
    args = parser.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="bench-import-")
    try:
        ct_dir = os.path.join(tmp, "ct")
        os.makedirs(ct_dir)
        write_ct_series(ct_dir, args.slices, args.size)
        mixed_dir = os.path.join(tmp, "mixed")
        shutil.copytree(ct_dir, mixed_dir)
        # the peer globs *.dcm in one folder: CT first, then the corpus files
        corpus = peer_compatible_corpus_files(mixed_dir, tmp)
        print(f"{args.slices} synthetic CT slices + {len(corpus)} pydicom files", flush=True)
        scenarios = {
            "ct_plus_pydicom_files": measure(mixed_dir, tmp, args.repeats, "mixed"),
            "ct_only": measure(ct_dir, tmp, args.repeats, "ct"),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "synthetic_ct_slices": args.slices,
        "pydicom_files": len(corpus),
        "image_size": args.size,
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "fiftyone": fo.__version__,
        "scenarios": scenarios,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    lines = [
        "| files | importer | median s | samples | images/s | peer / ours |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "ct_plus_pydicom_files": f"{args.slices} CT + {len(corpus)} pydicom files",
        "ct_only": f"{args.slices} CT slices only",
    }
    for key, sc in scenarios.items():
        for who, label in (
            ("ours", "multireader `import_dicom`"),
            ("peer", "`fo.types.DICOMDataset`"),
        ):
            ratio = f"{sc['ratio_peer_over_ours']}x" if who == "ours" else ""
            lines.append(
                f"| {names[key]} | {label} | {sc['median_s'][who]} | {sc['samples'][who]} "
                f"| {sc['images_per_s'][who]} | {ratio} |"
            )
    print("\n" + "\n".join(lines))
    print(
        f"\n{args.size}x{args.size} CT, {result['cpus']} CPUs, median of {args.repeats} "
        "alternating runs; above 1x means ours is faster"
    )
    return result


if __name__ == "__main__":
    main()
