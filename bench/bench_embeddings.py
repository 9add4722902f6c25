"""compute_embeddings against FiftyOne's own compute_embeddings, same model, same images.

    .venv/bin/python bench/bench_embeddings.py [--model ViT-B-32] [--repeats 3]
        [--images 336] [--batch-size 32] [--workers 1] [--out bench/results/embeddings.json]

The images: the demo study (256x256 CT slices, imported by our importer). The model:
``--model`` (an open_clip name) randomly initialised, saved to a local checkpoint, and
loaded from that file by both sides, so nothing downloads:

* ours: ``multireader.embed.embeddings.compute_embeddings(model=NAME, pretrained=CKPT)``:
  native HU -> the file's window -> 8-bit grey -> 3 channels -> open_clip's preprocess,
  a torch DataLoader, ``encode_image``, ``set_values`` per few thousand samples;
* peer: ``fiftyone.utils.open_clip.TorchOpenClipModel`` (clip_model=NAME,
  pretrained=CKPT, embeddings from its ``visual`` tower, as FiftyOne's zoo entry
  declares) through ``SampleCollection.compute_embeddings``, reading the 8-bit PNGs.

Each repeat runs both, in alternating order, end to end (model load included, fields
deleted first; open_clip is imported once before any timing); the report gives medians and peer/ours (above 1 means ours is faster)
and how far the two sides' vectors are apart. Also the radiomics model's images/s
(whole run, and the feature function alone). The machine is shared and noisy: read
the ratio, not the seconds.
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
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import fiftyone as fo  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from multireader.embed import embeddings  # noqa: E402


def save_random_checkpoint(name: str, folder: str) -> str:
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model(name)
    path = os.path.join(folder, f"{name}-random.pt")
    torch.save(model.state_dict(), path)
    return path


def run_ours(view, name, ckpt, field, batch_size, workers) -> tuple[float, dict]:
    if view._dataset.has_field(field):
        view._dataset.delete_sample_field(field)
    t = time.perf_counter()
    report = embeddings.compute_embeddings(
        view,
        model=name,
        pretrained=ckpt,
        field=field,
        batch_size=batch_size,
        num_workers=workers,
    )
    return time.perf_counter() - t, report


def run_peer(view, name, ckpt, field, batch_size, workers) -> float:
    import fiftyone.utils.open_clip as fouc

    if view._dataset.has_field(field):
        view._dataset.delete_sample_field(field)
    t = time.perf_counter()
    config = fouc.TorchOpenClipModelConfig(
        {
            "clip_model": name,
            "pretrained": ckpt,
            "classes": ["normal", "abnormal"],
            "text_prompt": "A CT image of",
            "embeddings_layer": "visual",
            "output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor",
            "device": "cuda" if torch.cuda.is_available() else "cpu",
        }
    )
    model = fouc.TorchOpenClipModel(config)
    view.compute_embeddings(
        model,
        embeddings_field=field,
        batch_size=batch_size,
        num_workers=workers,
        skip_failures=False,
        progress=False,
    )
    return time.perf_counter() - t


def side_by_side(view, name, ckpt, repeats, batch_size, workers) -> dict:
    """Both sides on the same images, alternating which goes first; medians and ratios."""
    ours, peer = [], []
    for r in range(repeats):
        order = ("ours", "peer") if r % 2 == 0 else ("peer", "ours")
        for side in order:
            if side == "ours":
                s, report = run_ours(view, name, ckpt, "emb_ours", batch_size, workers)
                ours.append(s)
            else:
                peer.append(run_peer(view, name, ckpt, "emb_peer", batch_size, workers))
            print(f"{name} repeat {r} {side}: {(ours if side == 'ours' else peer)[-1]:.2f} s")
    a = np.stack(view.values("emb_ours"))
    b = np.stack(view.values("emb_peer"))
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    n = len(view)
    return {
        "model": name,
        "images": n,
        "batch_size": batch_size,
        "workers": workers,
        "device": report["device"],
        "ours_s": ours,
        "peer_s": peer,
        "ours_median_s": statistics.median(ours),
        "peer_median_s": statistics.median(peer),
        "ours_images_per_s": n / statistics.median(ours),
        "peer_images_per_s": n / statistics.median(peer),
        "ratio_peer_over_ours": statistics.median(peer) / statistics.median(ours),
        "median_of_paired_ratios": statistics.median(
            [p / o for o, p in zip(ours, peer, strict=True)]
        ),
        "max_abs_diff": float(np.abs(a - b).max()),
        "min_cosine": float(cos.min()),
    }


def profile_ours(view, name, ckpt, batch_size) -> dict:
    """Where one of our runs spends its time, each step timed alone (no overlap):
    loading the model, reading + windowing + preprocessing every image, encoding."""
    spec = embeddings.resolve_model(name, ckpt)
    t = time.perf_counter()
    model, preprocess = embeddings.load_open_clip(spec, "cpu")
    load_s = time.perf_counter() - t
    items = embeddings.sample_items(view)
    data = embeddings._SampleImages(items, spec.kind, "auto", preprocess)
    t = time.perf_counter()
    batches = []
    for k in range(0, len(data), batch_size):
        _, batch, _ = embeddings._collate(
            [data[i] for i in range(k, min(k + batch_size, len(data)))]
        )
        batches.append(data.grey.to_model(batch) if batch.dtype == torch.uint8 else batch)
    prep_s = time.perf_counter() - t
    t = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            model.encode_image(batch)
    encode_s = time.perf_counter() - t
    line = (
        f"load {load_s:.2f} s, read+render+preprocess {prep_s:.2f} s "
        f"({1e3 * prep_s / len(data):.1f} ms/img), encode {encode_s:.2f} s"
    )
    print(f"{name} profile: {line}")
    return {"load_s": load_s, "prepare_s": prep_s, "encode_s": encode_s, "line": line}


#: a tiny open_clip architecture: the model costs almost nothing, so what is timed is
#: everything around it (loading, reading, rendering, preprocessing, batching, writing)
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16, "patch_size": 32},
    "text_cfg": {
        # FiftyOne's wrapper tokenises class prompts with the CLIP vocabulary
        "context_length": 77,
        "vocab_size": 49408,
        "width": 16,
        "heads": 2,
        "layers": 1,
    },
}


def save_tiny_checkpoint(folder: str) -> tuple[str, str]:
    import open_clip

    cfg = os.path.join(folder, "bench-tiny-clip.json")
    with open(cfg, "w") as f:
        json.dump(TINY_CFG, f)
    open_clip.add_model_config(cfg)
    return "bench-tiny-clip", save_random_checkpoint("bench-tiny-clip", folder)


def bench_radiomics(view, repeats: int) -> dict:
    runs, runs_workers = [], []
    for _ in range(repeats):
        for workers, out in ((0, runs), (1, runs_workers)):
            if view._dataset.has_field("embedding_radiomics"):
                view._dataset.delete_sample_field("embedding_radiomics")
            t = time.perf_counter()
            embeddings.compute_embeddings(view, num_workers=workers)
            out.append(time.perf_counter() - t)
    natives = [np.load(p) for p in view.values("native_path")]
    per_image = []
    for _ in range(repeats):
        t = time.perf_counter()
        for x in natives:
            embeddings.radiomics_features(x, "HU")
        per_image.append((time.perf_counter() - t) / len(natives))
    n = len(view)
    return {
        "images": n,
        "run_s_workers_0": runs,
        "run_s_workers_1": runs_workers,
        "images_per_s_workers_0": n / statistics.median(runs),
        "images_per_s_workers_1": n / statistics.median(runs_workers),
        "feature_ms_per_image": [1e3 * v for v in per_image],
        "feature_ms_per_image_median": 1e3 * statistics.median(per_image),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=336)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "embeddings.json"))
    args = ap.parse_args()

    import fiftyone.utils.open_clip  # noqa: F401 - imported once, outside every timing
    import open_clip  # noqa: F401
    from conftest import build_demo_dataset

    work = tempfile.mkdtemp(prefix="bench-emb-")
    name = f"bench-emb-{uuid.uuid4().hex[:8]}"
    ds, _ = build_demo_dataset(name, os.path.join(work, "demo"))
    try:
        view = ds.limit(args.images)
        ckpt = save_random_checkpoint(args.model, work)
        print(f"{len(view)} images, {args.model} checkpoint {os.path.getsize(ckpt) >> 20} MiB")
        clip = side_by_side(view, args.model, ckpt, args.repeats, args.batch_size, args.workers)
        clip["checkpoint"] = "randomly initialised, saved locally, loaded by both"
        clip["profile"] = profile_ours(view, args.model, ckpt, args.batch_size)
        print(json.dumps(clip, indent=1))
        tiny_name, tiny_ckpt = save_tiny_checkpoint(work)
        overhead = side_by_side(
            ds.view(), tiny_name, tiny_ckpt, args.repeats, args.batch_size, args.workers
        )
        overhead["checkpoint"] = "tiny architecture (1 layer): times the pipeline, not the model"
        overhead["profile"] = profile_ours(ds.view(), tiny_name, tiny_ckpt, args.batch_size)
        print(json.dumps(overhead, indent=1))
        rad = bench_radiomics(ds.view(), args.repeats)  # every demo image: it is cheap
        print(json.dumps(rad, indent=1))
        result = {
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(),
                "cuda": torch.cuda.is_available(),
            },
            "fiftyone": fo.__version__,
            "repeats": args.repeats,
            "open_clip_side_by_side": clip,
            "pipeline_side_by_side_tiny_model": overhead,
            "radiomics": rad,
        }
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")
    finally:
        fo.delete_dataset(name)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
