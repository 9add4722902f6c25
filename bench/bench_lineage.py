"""Freezing and verifying a training set on 100,000 samples, against the loop a user
would otherwise write.

    .venv/bin/python bench/bench_lineage.py [--n 100000] [--repeats 3]

Data: the cached ``bench-panels-<n>`` dataset of ``bench/bench_panels.py`` (4 reader
class fields and a majority consensus; built there if missing). It is not modified: the
freeze is deleted after each repeat.

Timed, in one run, the two in turn:
- ours: ``lineage.freeze_training_set`` (bulk ``values()`` of 5 label fields, hashing,
  batched inserts) and ``lineage.verify_training_set`` (bulk re-read and compare);
- the peer: what a user without this plugin writes to get the same record, iterating
  ``dataset.iter_samples()`` and hashing each sample's five labels with the same
  :func:`multireader.lineage.records.label_hash` (no database writes; so the peer does less).

Reports medians and the ratio peer / ours. Writes ``bench/results/lineage.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")

FIELDS = ["reader_r1", "reader_r2", "reader_r3", "reader_r4", "consensus_majority"]


def main(argv=None):
    from bench_panels import prepare

    from multireader.lineage import audit
    from multireader.lineage import records as lineage

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    ds = prepare(f"bench-panels-{args.n}", args.n, rebuild=False)
    ours_freeze, ours_verify, peer = [], [], []
    for r in range(args.repeats):
        name = f"bench_{r}"
        t = time.perf_counter()
        lineage.freeze_training_set(
            ds.view(), name, model_name="bench", model_version=str(r), label_fields=FIELDS,
            consensus_field="consensus_majority",
        )  # fmt: skip
        ours_freeze.append(time.perf_counter() - t)
        t = time.perf_counter()
        v = lineage.verify_training_set(ds, name)
        ours_verify.append(time.perf_counter() - t)
        assert v["ok"], v["counts"]
        lineage.delete_training_set(ds, name, reason="benchmark")
        t = time.perf_counter()
        rows = {}
        for sample in ds.iter_samples():
            rows[sample.id] = {f: lineage.label_hash(sample[f]) for f in FIELDS}
        peer.append(time.perf_counter() - t)
    audit.delete_log(ds)  # the benchmark's own freeze/delete entries
    res = {
        "n": len(ds),
        "fields": FIELDS,
        "freeze_s": statistics.median(ours_freeze),
        "verify_s": statistics.median(ours_verify),
        "peer_loop_s": statistics.median(peer),
        "ratio_peer_over_freeze": statistics.median(peer) / statistics.median(ours_freeze),
        "ratio_peer_over_verify": statistics.median(peer) / statistics.median(ours_verify),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(res, indent=1))
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "lineage.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
