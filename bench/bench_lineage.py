"""Freezing and verifying a training set on 100,000 samples x 5 label fields, against the
plain ``iter_samples()`` loop a user would otherwise write.

    .venv/bin/python bench/bench_lineage.py [--n 100000] [--repeats 3] [--rebuild]

Data: ``bench-lineage-<n>``, built once and kept (``--rebuild`` builds it again) with
bulk inserts of the sample documents as FiftyOne stores them (``insert_many`` in
batches of 10,000; the fields then declared through FiftyOne). Four reader fields
``reader_r1``-``reader_r4`` (class calls in 5 classes, about 5 % missing, each with a
score, a confidence, a session, a read time and the reader's name) and a
``consensus_majority`` (the majority call, its vote share as confidence). The freeze
is deleted after each repeat, so the data is not modified.

Timed, in one run, in turn (the order reversed on odd repeats):
- ours: ``lineage.freeze_training_set`` (one projected aggregation returning raw BSON,
  each distinct label document decoded, put in canonical form and SHA-256'd once, the
  rows inserted in chunks of 5,000) and ``lineage.verify_training_set`` (the record read
  back and its own hash checked, the same bulk hashing of the dataset, the comparison);
- the floor: the loop a user writes for the same record, iterating
  ``dataset.iter_samples()`` and hashing each sample's five FiftyOne labels with the
  public :func:`multireader.lineage.records.label_hash` (same scheme; no database
  writes, so the loop does less than a freeze).

Checked, outside the timing: the loop's hashes equal the freeze's row for row (the same
hash from FiftyOne label objects as from the raw documents), and the verification is
clean. Reports medians, the ratios loop / ours, and a one-line profile of where a
freeze's and a verification's time goes (one extra cProfile'd run of each). Writes
``bench/results/lineage.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import pstats
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")

import numpy as np  # noqa: E402

READERS = ["reader_r1", "reader_r2", "reader_r3", "reader_r4"]
CONSENSUS = "consensus_majority"
FIELDS = [*READERS, CONSENSUS]
CLASSES = ["benign", "probably_benign", "suspicious", "malignant", "other"]
_BATCH = 10_000


def build(name: str, n: int, seed: int = 0):
    """The dataset, from bulk inserts of FiftyOne-shaped documents."""
    import fiftyone as fo
    from bson import ObjectId

    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    t = time.perf_counter()
    ds = fo.Dataset(name, persistent=True)
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(CLASSES), n)
    calls = np.stack(
        [np.clip(np.rint(truth + rng.normal(0, 0.4 + 0.2 * r, n)), 0, 4) for r in range(4)], 1
    ).astype(int)
    missing = rng.random((n, 4)) < 0.05
    session = rng.integers(0, 6, (n, 4))
    conf = rng.random((n, 4))
    base = dt.datetime(2026, 1, 5)
    dates = [base + dt.timedelta(days=7 * s, minutes=13 * s) for s in range(6)]
    ds_id = ds._doc.id
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    coll = ds._sample_collection
    for start in range(0, n, _BATCH):
        docs = []
        for i in range(start, min(n, start + _BATCH)):
            doc = {
                "_id": ObjectId(),
                "filepath": f"/bench/{i:07d}.png",
                "tags": [],
                "metadata": None,
                "_media_type": "image",
                "_rand": float(rng.random()),
                "_dataset_id": ds_id,
                "created_at": now,
                "last_modified_at": now,
            }
            votes = np.zeros(len(CLASSES), int)
            for r in range(4):
                if missing[i, r]:
                    doc[READERS[r]] = None
                    continue
                c = calls[i, r]
                votes[c] += 1
                doc[READERS[r]] = {
                    "_id": ObjectId(),
                    "_cls": "Classification",
                    "tags": [],
                    "label": CLASSES[c],
                    "confidence": float(conf[i, r]),
                    "score": float(c + 1),
                    "session": f"S{session[i, r] + 1}",
                    "read_at": dates[session[i, r]],
                    "reader": f"R{r + 1}",
                }
            top = int(np.argmax(votes))
            doc[CONSENSUS] = (
                None
                if votes.sum() == 0
                else {
                    "_id": ObjectId(),
                    "_cls": "Classification",
                    "tags": [],
                    "label": CLASSES[top],
                    "confidence": float(votes[top] / votes.sum()),
                }
            )
            docs.append(doc)
        coll.insert_many(docs, ordered=False)
    for f in FIELDS:
        ds.add_sample_field(f, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    ds.add_dynamic_sample_fields()
    ds.reload()
    print(f"built {name}: {len(ds)} samples x 5 fields in {time.perf_counter() - t:.1f} s")
    return ds


def prepare(n: int, rebuild: bool):
    import fiftyone as fo

    name = f"bench-lineage-{n}"
    if fo.dataset_exists(name) and not rebuild:
        ds = fo.load_dataset(name)
        if len(ds) == n and all(ds.has_field(f) for f in FIELDS):
            return ds
    return build(name, n)


def _profile_line(fn, groups: dict[str, tuple[str, str]]) -> tuple[str, float]:
    """One cProfile'd call; the time under each ``(file part, function)``, and its share."""
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.runcall(fn)
    total = time.perf_counter() - t
    stats = pstats.Stats(prof).stats
    parts = []
    for label, (part, name) in groups.items():
        cum = sum(v[3] for (file, _, func), v in stats.items() if func == name and part in file)
        parts.append(f"{label} {cum:.2f} s ({100 * cum / total:.0f}%)")
    return f"{total:.2f} s under cProfile: " + ", ".join(parts), total


def main(argv=None):
    from multireader.lineage import audit
    from multireader.lineage import records as lineage

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args(argv)
    ds = prepare(args.n, args.rebuild)

    def freeze(name):
        return lineage.freeze_training_set(
            ds.view(), name, model_name="bench", model_version=name, label_fields=FIELDS,
            consensus_field=CONSENSUS,
        )  # fmt: skip

    def loop():
        return {s.id: {f: lineage.label_hash(s[f]) for f in FIELDS} for s in ds.iter_samples()}

    times = {"freeze": [], "verify": [], "loop": []}
    checked = False
    for r in range(args.repeats):
        name = f"bench_{r}"
        order = ["ours", "loop"] if r % 2 == 0 else ["loop", "ours"]
        for who in order:
            if who == "ours":
                t = time.perf_counter()
                freeze(name)
                times["freeze"].append(time.perf_counter() - t)
                t = time.perf_counter()
                v = lineage.verify_training_set(ds, name)
                times["verify"].append(time.perf_counter() - t)
                assert v["ok"], v["counts"]
            else:
                t = time.perf_counter()
                rows = loop()
                times["loop"].append(time.perf_counter() - t)
        if not checked:  # the loop's hashes are the freeze's, row for row
            header = lineage.load_training_set(ds, name)
            assert header["hash_scheme"] == lineage.HASH_SCHEME
            frozen = lineage._load(ds, name)[1].as_dict()
            assert len(frozen) == len(rows) == len(ds) and frozen == rows
            checked = True
        lineage.delete_training_set(ds, name, reason="benchmark")
        print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))

    freeze_line, _ = _profile_line(
        lambda: freeze("bench_profile"),
        {
            "raw read": ("records", "_read_raw"),
            "decode+canonical+SHA-256": ("canonical", "raw_column_hashes"),
            "freeze hash": ("records", "_freeze_hash_columns"),
            "row inserts": ("pymongo", "insert_many"),
        },
    )
    verify_line, _ = _profile_line(
        lambda: lineage.verify_training_set(ds, "bench_profile"),
        {
            "record read": ("records", "_load"),
            "raw read": ("records", "_read_raw"),
            "decode+canonical+SHA-256": ("canonical", "raw_column_hashes"),
            "freeze hash": ("records", "_freeze_hash_columns"),
        },
    )
    lineage.delete_training_set(ds, "bench_profile", reason="benchmark")
    audit.delete_log(ds)  # the benchmark's own freeze/delete entries
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "n": len(ds),
        "fields": FIELDS,
        "hash_scheme": lineage.HASH_SCHEME,
        "repeats": args.repeats,
        "freeze_s": med["freeze"],
        "verify_s": med["verify"],
        "loop_s": med["loop"],
        "ratio_loop_over_freeze": med["loop"] / med["freeze"],
        "ratio_loop_over_verify": med["loop"] / med["verify"],
        "all_s": times,
        "profile_freeze": freeze_line,
        "profile_verify": verify_line,
        "cpus": os.cpu_count(),
    }
    print(json.dumps({k: v for k, v in res.items() if k != "all_s"}, indent=1))
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "lineage.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
