"""Mistakenness: ours against cleanlab's CROWDLAB and FiftyOne brain's, one run.

    .venv/bin/python bench/bench_mistakenness.py [--items 100000] [--readers 4]
        [--classes 5] [--missing 0.05] [--repeats 5] [--samples 20000]
        [--dataset-repeats 3]

Two scenarios, each timed in alternating order (ours first on even repeats, the peer
first on odd ones); the table gives medians and the ratio peer / ours (above 1 means
ours is faster). The machine is shared and noisy: read the ratio, not the seconds.

"crowdlab" (in memory, no database). Simulated study: ``--items`` items read by
``--readers`` readers into ``--classes`` classes. A hidden truth is drawn from a skewed
prior; reader j calls the truth with an accuracy drawn in 0.60-0.90 and otherwise a
class drawn uniformly from the others; about ``--missing`` of reads are missing, and an
item that lost every read gets one back, so every item keeps at least one read (cleanlab
rejects an item with none). The model's probabilities are a Dirichlet tilted to the
truth (``alpha = 0.5`` everywhere plus ``3`` on the true class; top class right about
80 % of the time). Ours: ``multireader.stats.mistakenness.crowdlab(labels, probs)`` with int
codes, -1 for missing. cleanlab: ``get_label_quality_multiannotator(labels_nan, probs,
consensus_method="best_quality", quality_method="crowdlab",
return_detailed_quality=True, return_annotator_stats=False, verbose=False)`` with a
float array, NaN for missing. Both inputs are built once, outside the timed region.
``return_annotator_stats=False`` keeps cleanlab from computing its per-annotator table
(quality, worst class), which ours does not make; it still computes one extra per-item
column (``annotator_agreement``, the share of readers agreeing with the consensus) and
wraps its results in DataFrames: that is in its timed region, as it is in a user's.
Agreement: max absolute difference of each reader's label quality and of the consensus
quality, and the number of items whose consensus label differs (cleanlab breaks a tie
that survives its tie-breaks at random; ``np.random`` is seeded before each of its
calls, outside the timed region, so the run is reproducible).

"dataset" (the FiftyOne database). A dataset of ``--samples`` samples (dummy
filepaths, no media), added in one ``add_samples`` call before any timing, each with a
prediction ``pred = fo.Classification(label, confidence, logits)`` (logits = log of the
Dirichlet probabilities above plus a per-sample offset, label = the top class) and a
label ``gt = fo.Classification(label)`` taken from one simulated reader; about 5 % of
samples have no ``gt``. FiftyOne brain: ``fob.compute_mistakenness(ds, "pred",
label_field="gt", mistakenness_field=..., use_logits=True, progress=False)``, which
iterates over the samples and saves each one. Ours, the whole read-compute-write path:
``ds.values(["id", "pred.label", "pred.logits", "gt.label"])``, class names to codes,
``softmax``, ``multireader.stats.mistakenness.brain_mistakenness(labels, probs, predicted)``
and ``multireader.core.bulk.write_sample_fields(ds, ids, {field: scores})``. Between
repeats the written field (and brain's run record) is deleted, outside the timed
region, so every repeat does the same work. Agreement: both stored fields are read
back and compared where a ``gt`` label exists. Where it does not, brain scores the
absent label as if the model agreed with it (a low score); ours stores None; the count
of such samples is reported, not compared. The dataset has a unique name, is not
persistent, and is deleted at the end.

Writes ``bench/results/mistakenness.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import sys
import time
import uuid
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")

import numpy as np  # noqa: E402

from multireader.stats.mistakenness import brain_mistakenness, crowdlab  # noqa: E402

CLASSES = ["benign", "probably_benign", "suspicious", "malignant", "other"]


def simulate(
    n_items: int, n_readers: int, k: int, missing: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(truth, labels, probs)``: int labels with -1 missing, at least one read per item."""
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.full(k, 3.0))
    truth = rng.choice(k, n_items, p=prior)
    labels = np.empty((n_items, n_readers), np.int64)
    for j in range(n_readers):
        acc = rng.uniform(0.60, 0.90)
        wrong = (truth + rng.integers(1, k, n_items)) % k  # uniform over the other classes
        labels[:, j] = np.where(rng.random(n_items) < acc, truth, wrong)
    gone = rng.random(labels.shape) < missing
    empty = np.flatnonzero(gone.all(axis=1))
    gone[empty, rng.integers(0, n_readers, len(empty))] = False
    labels[gone] = -1
    alpha = np.full((n_items, k), 0.5)
    alpha[np.arange(n_items), truth] += 3.0
    probs = rng.gamma(alpha)
    probs /= probs.sum(axis=1, keepdims=True)
    return truth, labels, probs


def _alternate(repeats: int, runs: dict) -> dict[str, list[float]]:
    """Call each of ``runs`` (name -> (setup, timed)) ``repeats`` times, alternating."""
    times: dict[str, list[float]] = {who: [] for who in runs}
    names = list(runs)
    for rep in range(repeats):
        for who in names if rep % 2 == 0 else names[::-1]:
            setup, timed = runs[who]
            setup()
            t0 = time.perf_counter()
            timed()
            times[who].append(time.perf_counter() - t0)
    return times


def _summary(times: dict[str, list[float]], peer: str) -> dict:
    med = {who: statistics.median(ts) for who, ts in times.items()}
    return {
        "seconds": {who: [round(t, 4) for t in ts] for who, ts in times.items()},
        "median_s": {who: round(t, 4) for who, t in med.items()},
        f"ratio_{peer}_over_ours": round(med[peer] / med["ours"], 2),
    }


def run_crowdlab(n_items: int, n_readers: int, k: int, missing: float, repeats: int) -> dict:
    """Time ours and cleanlab's CROWDLAB on one simulated study and compare outputs."""
    from cleanlab.multiannotator import get_label_quality_multiannotator

    _, labels, probs = simulate(n_items, n_readers, k, missing)
    # outside the timed region: the peer's float-with-NaN input
    labels_nan = np.where(labels >= 0, labels, np.nan).astype(float)
    out: dict = {}

    def ours():
        out["ours"] = crowdlab(labels, probs)

    def peer():
        out["cleanlab"] = get_label_quality_multiannotator(
            labels_nan,
            probs,
            consensus_method="best_quality",
            quality_method="crowdlab",
            return_detailed_quality=True,
            return_annotator_stats=False,
            verbose=False,
        )

    times = _alternate(
        repeats,
        {"ours": (lambda: None, ours), "cleanlab": (lambda: np.random.seed(0), peer)},
    )
    res, cl = out["ours"], out["cleanlab"]
    cl_lq = cl["detailed_label_quality"].to_numpy(dtype=float)
    cl_cons = cl["label_quality"]["consensus_label"].to_numpy()
    cl_cq = cl["label_quality"]["consensus_quality_score"].to_numpy(dtype=float)
    same_nan = bool((np.isnan(cl_lq) == np.isnan(res.label_quality)).all())
    both = np.isfinite(cl_lq) & np.isfinite(res.label_quality)
    per_reader = [
        float(np.abs(res.label_quality[both[:, j], j] - cl_lq[both[:, j], j]).max())
        for j in range(n_readers)
    ]
    return {
        "items": n_items,
        "readers": n_readers,
        "classes": k,
        "missing_rate": missing,
        "reads": int((labels >= 0).sum()),
        "items_read_once": int(((labels >= 0).sum(axis=1) == 1).sum()),
        **_summary(times, "cleanlab"),
        "agreement": {
            "max_abs_label_quality_difference": max(per_reader),
            "max_abs_label_quality_difference_per_reader": per_reader,
            "missing_pattern_identical": same_nan,
            "max_abs_consensus_quality_difference": float(
                np.abs(res.consensus_quality - cl_cq).max()
            ),
            "consensus_labels_differing": int((res.consensus != cl_cons).sum()),
        },
    }


def build_dataset(name: str, n: int, seed: int = 1):
    """A non-persistent dataset with ``pred`` (label, confidence, logits) and ``gt``."""
    import fiftyone as fo

    k = len(CLASSES)
    truth, labels, probs = simulate(n, 1, k, 0.0, seed=seed)
    rng = np.random.default_rng(seed + 1)
    logits = np.log(probs) + rng.normal(0.0, 2.0, (n, 1))  # softmax-invariant offset
    top = probs.argmax(axis=1)
    no_gt = rng.random(n) < 0.05
    ds = fo.Dataset(name)
    ds.add_samples(
        [
            fo.Sample(
                filepath=f"/bench/mistakenness/{i:07d}.png",
                pred=fo.Classification(
                    label=CLASSES[top[i]],
                    confidence=float(probs[i, top[i]]),
                    logits=logits[i].tolist(),
                ),
                gt=None if no_gt[i] else fo.Classification(label=CLASSES[labels[i, 0]]),
            )
            for i in range(n)
        ],
        progress=False,
    )
    return ds, int(no_gt.sum())


def ours_dataset(ds, field: str) -> None:
    """Read with ``values``, score in bulk, write with one bulk update per sample."""
    from multireader.core.bulk import write_sample_fields
    from multireader.core.predictions import softmax

    index = {c: i for i, c in enumerate(CLASSES)}
    ids, pred_label, logits, gt_label = ds.values(["id", "pred.label", "pred.logits", "gt.label"])
    y = np.array([-1 if v is None else index[v] for v in gt_label])
    predicted = np.array([-1 if v is None else index[v] for v in pred_label])
    probs = softmax(np.array(logits, dtype=float))
    scores = brain_mistakenness(y, probs, predicted)
    write_sample_fields(ds, ids, {field: scores})


def run_dataset(n: int, repeats: int) -> dict:
    """Time brain's compute_mistakenness and ours on one real dataset; compare fields."""
    import fiftyone as fo
    import fiftyone.brain as fob

    name = f"bench-mistakenness-{uuid.uuid4().hex[:10]}"
    t0 = time.perf_counter()
    ds, n_no_gt = build_dataset(name, n)
    build_s = time.perf_counter() - t0
    print(f"built {name}: {n} samples in {build_s:.1f} s", flush=True)
    f_ours, f_brain = "mistakenness_ours", "mistakenness_brain"
    try:

        def clear(field, brain_run=False):
            def setup():
                if brain_run and field in ds.list_brain_runs():
                    ds.delete_brain_run(field)
                if ds.has_sample_field(field):
                    ds.delete_sample_field(field)

            return setup

        def brain():
            fob.compute_mistakenness(
                ds,
                "pred",
                label_field="gt",
                mistakenness_field=f_brain,
                use_logits=True,
                progress=False,
            )

        times = _alternate(
            repeats,
            {
                "ours": (clear(f_ours), lambda: ours_dataset(ds, f_ours)),
                "brain": (clear(f_brain, brain_run=True), brain),
            },
        )
        gt, a, b = ds.values(["gt.label", f_ours, f_brain])
        has = np.array([v is not None for v in gt])
        a = np.array([np.nan if v is None else v for v in a], dtype=float)
        b = np.array([np.nan if v is None else v for v in b], dtype=float)
        agreement = {
            "compared_samples": int(has.sum()),
            "max_abs_difference": float(np.abs(a[has] - b[has]).max()),
            "ours_missing_where_label": int(np.isnan(a[has]).sum()),
            "brain_missing_where_label": int(np.isnan(b[has]).sum()),
            "samples_without_label": n_no_gt,
            "ours_none_without_label": int(np.isnan(a[~has]).sum()),
            "brain_value_without_label": int(np.isfinite(b[~has]).sum()),
        }
    finally:
        fo.delete_dataset(name)
    return {
        "samples": n,
        "classes": len(CLASSES),
        "build_s": round(build_s, 2),
        **_summary(times, "brain"),
        "agreement": agreement,
    }


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "not installed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--missing", type=float, default=0.05)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--dataset-repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "mistakenness.json"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # pandas / cleanlab deprecation chatter
    logging.getLogger("fiftyone.brain").setLevel(logging.WARNING)  # "Computing..." lines

    scenarios = {
        "crowdlab": run_crowdlab(
            args.items, args.readers, args.classes, args.missing, args.repeats
        ),
        "dataset": run_dataset(args.samples, args.dataset_repeats),
    }
    result = {
        "benchmark": "mistakenness: ours vs cleanlab CROWDLAB and FiftyOne brain",
        "cpus": os.cpu_count(),
        "date": dt.date.today().isoformat(),
        "repeats": {"crowdlab": args.repeats, "dataset": args.dataset_repeats},
        "versions": {
            p: _version(p) for p in ("fiftyone", "fiftyone-brain", "cleanlab", "numpy", "pandas")
        },
        "settings": {
            "crowdlab_ours": "multireader.stats.mistakenness.crowdlab(labels_int_minus1, probs)",
            "crowdlab_cleanlab": (
                "get_label_quality_multiannotator(labels_nan, probs, "
                "consensus_method='best_quality', quality_method='crowdlab', "
                "return_detailed_quality=True, return_annotator_stats=False, verbose=False)"
            ),
            "crowdlab_timed": "the call alone; both label arrays built beforehand",
            "dataset_ours": (
                "ds.values([id, pred.label, pred.logits, gt.label]) -> softmax -> "
                "brain_mistakenness -> write_sample_fields"
            ),
            "dataset_brain": (
                "fob.compute_mistakenness(ds, 'pred', label_field='gt', "
                "mistakenness_field=..., use_logits=True, progress=False)"
            ),
            "dataset_timed": "read, compute and write; the field is deleted between repeats",
        },
        "scenarios": scenarios,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)

    cl, dsr = scenarios["crowdlab"], scenarios["dataset"]
    print(
        f"\nMistakenness, ours vs peers, {os.cpu_count()} cpus "
        f"(repeats: crowdlab {args.repeats}, dataset {args.dataset_repeats})"
    )
    print(
        f"{'scenario':10}{'size':>26}{'peer':>10}{'ours s':>9}{'peer s':>9}{'ratio':>8}"
        f"{'max |diff|':>12}"
    )
    ca = cl["agreement"]
    diff = max(ca["max_abs_label_quality_difference"], ca["max_abs_consensus_quality_difference"])
    size = f"{cl['items']} x {cl['readers']} x {cl['classes']}"
    print(
        f"{'crowdlab':10}{size:>26}{'cleanlab':>10}{cl['median_s']['ours']:>9.3f}"
        f"{cl['median_s']['cleanlab']:>9.3f}{cl['ratio_cleanlab_over_ours']:>7.1f}x{diff:>12.1e}"
    )
    size = f"{dsr['samples']} samples"
    print(
        f"{'dataset':10}{size:>26}{'brain':>10}{dsr['median_s']['ours']:>9.3f}"
        f"{dsr['median_s']['brain']:>9.3f}{dsr['ratio_brain_over_ours']:>7.1f}x"
        f"{dsr['agreement']['max_abs_difference']:>12.1e}"
    )
    print(
        f"crowdlab: consensus labels differing {ca['consensus_labels_differing']}; "
        f"dataset: {dsr['agreement']['compared_samples']} labelled samples compared, "
        f"{dsr['agreement']['samples_without_label']} without a label (brain scores them, "
        "ours stores None)"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
