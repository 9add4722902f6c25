"""Agreement statistics against their peers, side by side in one run on the same data.

    .venv/bin/python bench/bench_agreement.py [--repeats 5] [--quick]

Cases (ours vs peer, alternating order, medians of ``--repeats`` runs):

* Fleiss' kappa, 1,000,000 items x 4 readers x 5 classes, complete reads: ours from the
  raw ratings vs statsmodels ``aggregate_raters`` + ``fleiss_kappa`` (timed from the same
  raw ratings).
* Nominal Krippendorff's alpha on the same items with 10% of reads missing (NaN) vs the
  ``krippendorff`` package.
* Interval alpha, 20,000 items x 4 readers, 200 distinct values, 10% missing, vs
  ``krippendorff``.
* ``categorical_summary`` on 100,000 items x 4 readers x 5 classes with n_boot=1000
  (every statistic, per class and pairwise, with bootstrap intervals): seconds, nominal
  and ordinal, by item and by patient group. For scale: the naive bootstrap (re-running
  our own ``fleiss_kappa`` on 1000 resampled copies) is estimated from 20 copies.

Values are checked to agree before timing. The machine is shared and noisy: read the
ratios. Results go to ``bench/results/agreement.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import krippendorff  # noqa: E402
import numpy as np  # noqa: E402
from statsmodels.stats import inter_rater as sm  # noqa: E402

from multireader.stats import agreement as A  # noqa: E402


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def side_by_side(name: str, ours, peer, repeats: int, tol: float) -> dict:
    """Alternate ours and peer ``repeats`` times; medians, ratio peer/ours."""
    t_ours, t_peer = [], []
    v_ours = v_peer = None
    for i in range(repeats):
        order = [("ours", ours), ("peer", peer)] if i % 2 == 0 else [("peer", peer), ("ours", ours)]
        for who, fn in order:
            dt, v = timed(fn)
            if who == "ours":
                t_ours.append(dt)
                v_ours = float(v)
            else:
                t_peer.append(dt)
                v_peer = float(v)
    if abs(v_ours - v_peer) > tol:
        raise AssertionError(f"{name}: ours {v_ours} vs peer {v_peer}")
    m_ours, m_peer = statistics.median(t_ours), statistics.median(t_peer)
    return {
        "case": name,
        "ours_s": m_ours,
        "peer_s": m_peer,
        "ratio_peer_over_ours": m_peer / m_ours,
        "ours_all_s": t_ours,
        "peer_all_s": t_peer,
        "value_ours": v_ours,
        "value_peer": v_peer,
    }


def correlated(rng, n: int, r: int, k: int) -> np.ndarray:
    truth = rng.integers(0, k, n)
    noise = rng.integers(-1, 2, (n, r)) * (rng.random((n, r)) < 0.4)
    return np.clip(truth[:, None] + noise, 0, k - 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="10x smaller data, for a smoke run")
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    rng = np.random.default_rng(0)
    rows = []

    n = 1_000_000 // scale
    x = correlated(rng, n, 4, 5)
    rows.append(
        side_by_side(
            f"Fleiss kappa, {n:,} items x 4 readers x 5 classes (statsmodels)",
            lambda: A.fleiss_kappa(x, 5),
            lambda: sm.fleiss_kappa(sm.aggregate_raters(x, n_cat=5)[0]),
            args.repeats,
            1e-9,
        )
    )
    xf = x.astype(np.float64)
    xf[rng.random(xf.shape) < 0.1] = np.nan
    rows.append(
        side_by_side(
            f"Krippendorff alpha nominal, {n:,} x 4 x 5, 10% missing (krippendorff)",
            lambda: A.krippendorff_alpha(xf, "nominal"),
            lambda: krippendorff.alpha(xf.T, level_of_measurement="nominal"),
            args.repeats,
            1e-9,
        )
    )

    n_int = 20_000 // scale
    values = np.linspace(0.0, 99.5, 200)
    latent = rng.integers(0, 200, n_int)
    y = values[np.clip(latent[:, None] + rng.integers(-10, 11, (n_int, 4)), 0, 199)]
    y[rng.random(y.shape) < 0.1] = np.nan
    rows.append(
        side_by_side(
            f"Krippendorff alpha interval, {n_int:,} items x 4, "
            f"{len(np.unique(y[np.isfinite(y)]))} distinct values, 10% missing (krippendorff)",
            lambda: A.krippendorff_alpha(y, "interval"),
            lambda: krippendorff.alpha(y.T, level_of_measurement="interval"),
            min(args.repeats, 3),  # the peer takes ~20 s a run here
            1e-9,
        )
    )

    n_sum = 100_000 // scale
    xs = correlated(rng, n_sum, 4, 5)
    xs[rng.random(xs.shape) < 0.1] = -1
    groups = np.repeat(np.arange(n_sum // 4), 4)
    summary = []
    for label, kw in (
        ("nominal, item bootstrap", {}),
        ("ordinal, item bootstrap", {"ordinal": True}),
        ("nominal, group bootstrap (4 items/group)", {"groups": groups}),
    ):
        ts = [
            timed(lambda kw=kw: A.categorical_summary(xs, 5, n_boot=1000, **kw))[0]
            for _ in range(max(1, args.repeats // 2))
        ]
        summary.append(
            {
                "case": f"categorical_summary {n_sum:,} x 4 x 5, n_boot=1000, {label}",
                "ours_s": statistics.median(ts),
                "ours_all_s": ts,
            }
        )
    yc = rng.normal(0, 2, (n_sum, 1)) + rng.normal(0, 1, (n_sum, 4))
    yc[rng.random(yc.shape) < 0.1] = np.nan
    ts = [
        timed(lambda: A.continuous_summary(yc, n_boot=1000))[0]
        for _ in range(max(1, args.repeats // 2))
    ]
    summary.append(
        {
            "case": f"continuous_summary {n_sum:,} x 4, 10% missing, n_boot=1000, item bootstrap",
            "ours_s": statistics.median(ts),
            "ours_all_s": ts,
        }
    )
    boot_rng = np.random.default_rng(1)
    dt = timed(
        lambda: [A.fleiss_kappa(xs[boot_rng.integers(0, n_sum, n_sum)], 5) for _ in range(20)]
    )[0]
    dt_ours = timed(lambda: A.bootstrap_ci(xs, 5, "fleiss_kappa", n_boot=1000))[0]
    naive = {
        "case": f"Fleiss kappa bootstrap n_boot=1000 on {n_sum:,} x 4 x 5",
        "ours_s": dt_ours,
        "naive_rerun_estimated_s": dt * 1000 / 20,
        "ratio_naive_over_ours": dt * 1000 / 20 / dt_ours,
        "note": "naive = our fleiss_kappa on resampled copies; 20 copies timed, x50",
    }

    print(f"{'case':<92} {'ours s':>9} {'peer s':>9} {'peer/ours':>9}")
    for r in rows:
        print(
            f"{r['case']:<92} {r['ours_s']:9.4f} {r['peer_s']:9.4f} "
            f"{r['ratio_peer_over_ours']:9.1f}"
        )
    for r in summary:
        print(f"{r['case']:<92} {r['ours_s']:9.3f}")
    print(
        f"{naive['case']:<92} {naive['ours_s']:9.3f} {naive['naive_rerun_estimated_s']:9.1f} "
        f"{naive['ratio_naive_over_ours']:9.1f}  (naive re-run, estimated)"
    )
    out = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "repeats": args.repeats,
        "quick": args.quick,
        "numpy": np.__version__,
        "side_by_side": rows,
        "categorical_summary": summary,
        "bootstrap_vs_naive": naive,
    }
    if not args.quick:
        path = os.path.join(ROOT, "bench", "results", "agreement.json")
        with open(path, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
