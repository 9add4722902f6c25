"""Dawid-Skene: ours against crowd-kit's, same data, same settings, one run.

    .venv/bin/python bench/bench_dawid_skene.py [--items 100000] [--readers 4]
        [--classes 5] [--missing 0.05] [--repeats 5]

The data: simulated readers, each with their own confusion matrix (accuracy drawn in
0.55-0.85, the rest of each row spread unevenly over the other classes), a skewed class
prior, and about 5 % of reads missing. Both fit it in alternating order, ``--repeats``
times each; the table gives medians and the ratio crowd-kit / ours (above 1 means ours
is faster).

Two scenarios in the one run: "main" (the sizes above: few readers, so many items
share the same row of calls, which ours fits once per distinct row), and
"distinct_rows" (20,000 items x 12 readers, 30 % missing: nearly every row distinct,
the case where collapsing rows saves nothing), so the speed-up is not read as
independent of the data.

Matched settings: crowd-kit ``DawidSkene(n_iter=100, tol=1e-5)``; ours
``DawidSkene.crowdkit_settings(K)`` (100 iterations, tol 1e-5, no prior, the vote-share
start, stopped on crowd-kit's per-read evidence lower bound, as crowd-kit does; our
default fit differs: see the class docstring).
crowd-kit takes a pandas DataFrame (task, worker, label): it is built once, outside the
timed region, and so is our ratings matrix; each timed call is ``fit`` alone. The
posteriors are compared item by item (max absolute difference over items and classes),
as are the iteration counts. The machine is shared and noisy: read the ratio.

The profile line splits our fit (cProfile, after the timed runs) into building the
design (distinct rows, column-group codes), E-steps, M-steps and crowd-kit's bound.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import crowdkit  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene  # noqa: E402

from multireader.stats.consensus import DawidSkene  # noqa: E402


def simulate(n_items: int, n_readers: int, k: int, missing: float, seed: int = 0) -> np.ndarray:
    """Ratings (n_items, n_readers) from readers with their own confusion matrices."""
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.full(k, 3.0))
    truth = rng.choice(k, n_items, p=prior)
    ratings = np.empty((n_items, n_readers), np.int64)
    for j in range(n_readers):
        conf = rng.dirichlet(np.ones(k), size=k)
        acc = rng.uniform(0.55, 0.85, k)
        np.fill_diagonal(conf, 0)
        conf = conf / conf.sum(axis=1, keepdims=True) * (1 - acc)[:, None]
        conf[np.arange(k), np.arange(k)] = acc
        cum = np.cumsum(conf[truth], axis=1)
        ratings[:, j] = np.minimum((rng.random(n_items)[:, None] > cum).sum(axis=1), k - 1)
    ratings[rng.random(ratings.shape) < missing] = -1
    return ratings


def run_scenario(
    n_items: int, n_readers: int, k: int, missing: float, repeats: int
) -> dict[str, object]:
    """Time both fits on one simulated study, alternating, and compare their outputs."""
    ratings = simulate(n_items, n_readers, k, missing)
    # outside the timed region: the peer's long-format input
    item, reader = np.nonzero(ratings >= 0)
    frame = pd.DataFrame({"task": item, "worker": reader, "label": ratings[item, reader]})

    times: dict[str, list[float]] = {"ours": [], "crowdkit": []}
    ours = peer = None
    for rep in range(repeats):
        order = ("ours", "crowdkit") if rep % 2 == 0 else ("crowdkit", "ours")
        for who in order:
            t0 = time.perf_counter()
            if who == "ours":
                ours = DawidSkene.crowdkit_settings(k).fit(ratings)
            else:
                peer = CrowdKitDawidSkene(n_iter=100, tol=1e-5).fit(frame)
            times[who].append(time.perf_counter() - t0)

    peer_p = peer.probas_.reindex(index=range(n_items), columns=range(k)).to_numpy()
    has = ours.n_reads_ > 0
    max_diff = float(np.abs(ours.probas_[has] - peer_p[has]).max())
    label_agreement = float((ours.labels_[has] == peer_p[has].argmax(axis=1)).mean())
    med = {who: statistics.median(ts) for who, ts in times.items()}
    n_patterns = len(np.unique(ratings, axis=0))
    return {
        "profile": profile_ours(ratings, k),
        "items": n_items,
        "readers": n_readers,
        "classes": k,
        "missing_rate": missing,
        "reads": int(len(frame)),
        "distinct_rows": n_patterns,
        "seconds": {who: [round(t, 4) for t in ts] for who, ts in times.items()},
        "median_s": {who: round(t, 4) for who, t in med.items()},
        "ratio_crowdkit_over_ours": round(med["crowdkit"] / med["ours"], 2),
        "iterations": {"ours": int(ours.n_iter_), "crowdkit": len(peer.loss_history_)},
        "max_abs_posterior_difference": max_diff,
        "label_agreement": label_agreement,
    }


def profile_ours(ratings: np.ndarray, k: int, repeats: int = 3) -> dict[str, float]:
    """Share of our fit's time in each part (cProfile cumulative, outside the timing)."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(repeats):
        DawidSkene.crowdkit_settings(k).fit(ratings)
    prof.disable()
    stats = pstats.Stats(prof).stats
    cum: dict[str, float] = {}
    for (path, _line, name), entry in stats.items():
        if path.endswith("consensus.py"):  # the design's __init__ outweighs the model's
            cum[name] = max(cum.get(name, 0.0), entry[3])
    total = cum.get("fit", 0.0) or 1.0
    parts = {"design": "__init__", "e_step": "_e_step", "m_step": "_m_step", "bound": "_elbo"}
    shares = {name: cum.get(fn, 0.0) / total for name, fn in parts.items()}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return {name: round(v, 3) for name, v in shares.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--missing", type=float, default=0.05)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "dawid_skene.json"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # crowd-kit / pandas deprecation chatter

    scenarios = {
        # the target: a few readers, so many items share a row of calls
        "main": run_scenario(args.items, args.readers, args.classes, args.missing, args.repeats),
        # the worst case for ours: many readers, sparse reads, nearly every row distinct,
        # so collapsing identical rows saves nothing
        "distinct_rows": run_scenario(20_000, 12, args.classes, 0.3, args.repeats),
    }
    result = {
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "crowdkit": getattr(crowdkit, "__version__", "unknown"),
        "settings": {
            "ours": "DawidSkene.crowdkit_settings(K)",
            "crowdkit": "DawidSkene(n_iter=100, tol=1e-5)",
            "timed": "fit() only; the DataFrame and the ratings matrix are built beforehand",
        },
        "scenarios": scenarios,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)

    print(f"Dawid-Skene, ours vs crowd-kit, {args.repeats} repeats, {os.cpu_count()} cpus")
    head = f"{'scenario':14}{'items x readers x K':>22}{'rows':>8}{'ours s':>9}"
    print(head + f"{'crowd-kit s':>13}{'ratio':>8}{'iters':>9}{'max |dP|':>10}")
    for name, sc in scenarios.items():
        shape = f"{sc['items']} x {sc['readers']} x {sc['classes']}"
        its = f"{sc['iterations']['ours']}/{sc['iterations']['crowdkit']}"
        print(
            f"{name:14}{shape:>22}{sc['distinct_rows']:>8}{sc['median_s']['ours']:>9.3f}"
            f"{sc['median_s']['crowdkit']:>13.3f}{sc['ratio_crowdkit_over_ours']:>7.1f}x"
            f"{its:>9}{sc['max_abs_posterior_difference']:>10.1e}"
        )
    for name, sc in scenarios.items():
        prof = ", ".join(f"{part} {100 * v:.0f}%" for part, v in sc["profile"].items())
        print(f"profile {name}: {prof} of our fit")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
