"""A million samples with four readers: compute_agreement, compute_consensus and each
panel's refresh, with time and peak memory, on a MongoDB replica set.

    .venv/bin/python bench/bench_scale.py [--n 1000000] [--embedded] [--keep]
        [--steps build,agreement,consensus,panels]

Issue 19, "Scale". The database is a single-member replica set started for the run with
``scripts/cluster.py`` (the bundled ``mongod``, ``--replSet rs0``, on a loopback port,
its own data directory, stopped and removed at the end unless ``--keep``);
``--embedded`` uses FiftyOne's own database instead.

Data. ``bench-scale-<n>``: ``n`` samples without images, built with bulk inserts of raw
documents (``insert_many`` of 20,000 at a time, never one Python object per sample):
4 readers R1-R4 with ordinal calls in 5 classes (about 5 % of reads missing), each with
a score, one of 6 sessions and a read date, a patient key (``n / 20`` patients), a
scanner model (3) and a mistakenness score for R1, as ``bench_panels.py`` uses.

What is timed, each step in a fresh child process (so its peak resident memory,
``VmHWM``, is its own; the child's memory right after importing FiftyOne is given as
the baseline): ``compute_agreement(ds)`` (every class statistic, 1,000 bootstrap
resamples over patients, per-sample fields written), ``compute_consensus(ds,
method="majority")`` (labels written), and each panel's ``on_change_view`` on the whole
dataset through a real ``ExecutionContext`` (``bench_panels.Contender``), called twice:
the first call and the second (caches warm). There is no peer at this size: the figure
is what a user waits for. Writes ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

CLASSES = ["benign", "probably_benign", "suspicious", "malignant", "other"]
MODELS = ["Aquilion ONE", "Revolution CT", "SOMATOM Force"]
CHUNK = 20_000


def _hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build(name: str, n: int, seed: int = 0) -> dict:
    """The dataset, from raw documents inserted in chunks (see the module docstring)."""
    import fiftyone as fo
    import numpy as np
    from bson import ObjectId

    from multireader.core import fields, schema

    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = fo.Dataset(name, persistent=True)
    # one sample added through FiftyOne gives the exact document layout to copy
    ds.add_sample(fo.Sample(filepath="/bench/template.png"))
    template = ds._sample_collection.find_one({})
    ds._sample_collection.delete_many({})
    for f in ("patient_key", "manufacturer_model"):
        ds.add_sample_field(f, fo.StringField)
    ds.add_sample_field("mistakenness_reader_r1", fo.FloatField)
    names = [fields.reader_field(f"R{r + 1}") for r in range(4)]
    for f in names:
        ds.add_sample_field(f, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    schema.declare_label_schema(ds, CLASSES, ordered=True, score_range=[1, 5])
    rng = np.random.default_rng(seed)
    base = dt.datetime(2026, 1, 5)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    coll = ds._sample_collection
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        truth = rng.integers(0, len(CLASSES), m)
        patients = rng.integers(0, max(n // 20, 1), m)
        model = rng.integers(0, len(MODELS), m)
        shade = rng.random(m)
        rand = rng.random(m)
        docs = []
        calls = []
        for r in range(4):
            noise = rng.normal(0, 0.4 + 0.2 * r, m)
            c = np.clip(np.rint(truth + noise), 0, len(CLASSES) - 1).astype(int)
            calls.append((c, rng.random(m) < 0.05, rng.integers(0, 6, m)))
        for i in range(m):
            doc = {k: v for k, v in template.items() if k not in ("_id", "filepath", "created_at")}
            doc.update(
                _id=ObjectId(),
                filepath=f"/bench/{start + i:07d}.png",
                created_at=now,
                last_modified_at=now,
                patient_key=f"p{patients[i]}",
                manufacturer_model=MODELS[model[i]],
                mistakenness_reader_r1=float(shade[i]),
            )
            if "_rand" in doc:  # FiftyOne's random key (take, shuffle): one per sample
                doc["_rand"] = float(rand[i])
            for r, (c, missing, session) in enumerate(calls):
                if missing[i]:
                    doc[names[r]] = None
                    continue
                doc[names[r]] = {
                    "_id": ObjectId(),
                    "_cls": "Classification",
                    "tags": [],
                    "label": CLASSES[c[i]],
                    "score": float(c[i] + 1),
                    "session": f"S{session[i] + 1}",
                    "read_at": base + dt.timedelta(days=7 * int(session[i])),
                    "reader": f"R{r + 1}",
                }
            docs.append(doc)
        coll.insert_many(docs, ordered=False)
    for r, f in enumerate(names):
        fields.mark_reader_field(ds, f, f"R{r + 1}", "classification")
    ds.add_dynamic_sample_fields(fields=names)
    return {"n_samples": len(ds)}


def _step(name: str, step: str) -> dict:
    """One step, run in this (child) process; returns its figures."""
    import fiftyone as fo

    base_mb = _rss_mb()
    if step == "build":
        t = time.perf_counter()
        out = build(name, int(os.environ["BENCH_SCALE_N"]))
        return {"seconds": time.perf_counter() - t, **out, "baseline_mb": base_mb}
    ds = fo.load_dataset(name)
    if step == "agreement":
        from multireader.analyses import agreement as analysis

        t = time.perf_counter()
        res = analysis.compute_agreement(ds, n_boot=1000, run_key="scale")
        return {
            "seconds": time.perf_counter() - t,
            "timings": res["timings"],
            "baseline_mb": base_mb,
        }
    if step == "consensus":
        from multireader.analyses import agreement as analysis

        t = time.perf_counter()
        analysis.compute_consensus(ds, method="majority")
        return {"seconds": time.perf_counter() - t, "baseline_mb": base_mb}
    from bench_panels import Contender

    c = Contender(step, name, [])
    times = []
    for _ in range(2):
        c.setup()
        t = time.perf_counter()
        c.timed()
        times.append(time.perf_counter() - t)
    return {
        "first_s": times[0],
        "second_s": times[1],
        "check": c.check(),
        "baseline_mb": base_mb,
    }


def _cluster(directory: str, cache_gb: float):
    """scripts/cluster.py's replica set, its members with a ``cache_gb`` WiredTiger cache
    (the tests' 0.25 GB is sized for their small datasets, not for a million samples)."""
    import cluster as CL

    class Cluster(CL.Cluster):
        def _spawn(self, argv, log, env=None):
            if argv and argv[0] == CL.mongod_path() and "--wiredTigerCacheSizeGB" in argv:
                argv = list(argv)
                argv[argv.index("--wiredTigerCacheSizeGB") + 1] = str(cache_gb)
            return super()._spawn(argv, log, env)

    return Cluster(directory)


def _child(name: str, step: str, env: dict) -> dict:
    bench_dir = os.path.join(ROOT, "bench")
    code = (
        f"import json, sys; sys.path.insert(0, {bench_dir!r}); import bench_scale as b; "
        f"r = b._step({name!r}, {step!r}); r['peak_mb'] = b._hwm_mb(); "
        "print('RESULT ' + json.dumps(r))"
    )
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT
    )
    wall = time.perf_counter() - t
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"step {step} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(lines[-1][7:])
    out["process_wall_s"] = wall
    print(f"{step:18s} {json.dumps(out)}", flush=True)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--embedded", action="store_true", help="FiftyOne's own database")
    ap.add_argument("--keep", action="store_true", help="keep the replica set and data")
    ap.add_argument("--dir", default=None, help="replica set directory (default: a temp dir)")
    ap.add_argument(
        "--steps",
        default="build,agreement,consensus,slice_confusion,reader_profiles,agreement_heatmap",
    )
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "scale.json"))
    ap.add_argument(
        "--cache-gb", type=float, default=2.0, help="the replica set's WiredTiger cache"
    )
    args = ap.parse_args(argv)

    name = f"bench-scale-{args.n}"
    env = dict(os.environ, BENCH_SCALE_N=str(args.n), PYTHONPATH=ROOT)
    cluster = None
    where = "embedded FiftyOne database"
    if not args.embedded:
        cluster = _cluster(args.dir or tempfile.mkdtemp(prefix="bench-scale-rs-"), args.cache_gb)
        cluster.start_replica_set(1)
        cluster.wait_primary()
        env = dict(cluster.env(), BENCH_SCALE_N=str(args.n), PYTHONPATH=ROOT)
        where = f"single-member replica set rs0 ({cluster.uri})"
    print(f"database: {where}", flush=True)
    results = {}
    try:
        for step in args.steps.split(","):
            results[step] = _child(name, step, env)
    finally:
        if cluster is not None and not args.keep:
            cluster.stop(remove=True)
    out = {
        "benchmark": "1M samples x 4 readers: agreement, consensus, panel refresh",
        "n_samples": args.n,
        "database": "replica set (1 member)" if cluster is not None else "embedded",
        "cpus": os.cpu_count(),
        "date": dt.date.today().isoformat(),
        "steps": results,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"\n{'step':20s}{'seconds':>10s}{'peak MB':>10s}{'baseline MB':>13s}")
    for step, r in results.items():
        secs = r.get("seconds", r.get("first_s"))
        print(f"{step:20s}{secs:>10.1f}{r['peak_mb']:>10.0f}{r['baseline_mb']:>13.0f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
