"""The demo: build the synthetic study, run every operator on it, open the App.

Run it through ``./setup.sh demo`` (which installs everything first), or directly with
the project's virtual environment: ``.venv/bin/python scripts/demo.py [--no-app]``.
Every step goes through the plugin's operators exactly as an SDK user calls them, so
the demo also proves the operators work end to end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("FIFTYONE_PLUGINS_DIR", ROOT)
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")

import fiftyone as fo  # noqa: E402
import fiftyone.operators as foo  # noqa: E402
from fiftyone import ViewField as F  # noqa: E402

from multireader.core import fields  # noqa: E402
from multireader.io import demo  # noqa: E402

PLUGIN = "@multireader/disagreement"


def op(name):
    return foo.get_operator(f"{PLUGIN}/{name}")


def step(message):
    print(f"\n== {message}", flush=True)


def build(dataset_name: str, data_dir: str, seed: int) -> fo.Dataset:
    t0 = time.time()
    step(f"generating the synthetic demo study in {data_dir}")
    study = demo.generate_demo_study(data_dir, seed=seed)
    print(f"   DICOM: {study.dicom_dir}\n   truth: {study.truth_path}")

    if fo.dataset_exists(dataset_name):
        from multireader.lineage import audit
        from multireader.lineage import records as lineage

        old = fo.load_dataset(dataset_name)
        lineage.delete_for_dataset(old)  # its freezes, label history and audit log go too
        audit.delete_log(old)
        fo.delete_dataset(dataset_name)
    dataset = fo.Dataset(dataset_name, persistent=True)

    step("declare_label_schema")
    op("declare_label_schema")(dataset, **study.label_schema)

    step("import_dicom (every frame, series as volumes, lung + mediastinum presets)")
    report = op("import_dicom")(dataset, study.dicom_dir, presets=["lung", "mediastinum"])
    print(
        f"   imported {report['imported']} samples in {report['series']} series; skipped {len(report['skipped'])}"
    )
    for item in report["skipped"]:
        print(f"   skipped {item['path']}: {item['reason']}")

    sources = [
        (study.reads_csv, "auto", None),
        (study.boxes_csv, "auto", None),
        (study.masks_csv, "auto", None),
    ]
    sources += [(path, "seg", reader) for reader, path in study.seg_files]
    sources += [(path, "rtstruct", reader) for reader, path in study.rtstruct_files]
    for path, kind, reader in sources:
        step(f"import_reader_labels {os.path.basename(str(path))}")
        result = op("import_reader_labels")(dataset, str(path), kind=kind, reader=reader)
        print(
            f"   {result['n_labels']} labels -> {', '.join(result['fields'])}; {len(result['errors'])} rows rejected"
        )
        for err in result["errors"][:5]:
            print(f"   line {err['line']}: {err['reason']}")

    step("reader fields")
    for name, meta in sorted(fields.reader_fields(dataset).items()):
        print(f"   {name:28s} reader={meta['reader']} kind={meta['kind']} level={meta['level']}")
    analyse(dataset)
    planted_errors_found(dataset, study.truth_path)
    recist(dataset, study)
    lineage_and_report(dataset, data_dir)
    print(f"\n   built and analysed in {time.time() - t0:.1f} s: {len(dataset)} samples")
    return dataset


def analyse(dataset: fo.Dataset) -> None:
    """Agreement, consensus and reader profiles, each through its operator."""
    step("compute_agreement (every label type, 95% CIs by patient bootstrap)")
    out = op("compute_agreement")(dataset)
    for row in out["statistics"]:
        print(f"   {row['kind']:15s} {row['statistic']:30s} {row['value']:>8s} {row['ci']}")
    print(f"   readers disagree on {out['n_disagree']} of {len(dataset)} images")

    for kind, method in (("classification", "dawid_skene"), ("mask", "staple"), ("boxes", "wbf")):
        step(f"compute_consensus {kind} ({method}), beside the readers")
        res = op("compute_consensus")(dataset, kind=kind, method=method)
        print(f"   -> {res['output_field']} (run {res['run_key']})")
        for flag in res["flags"]:
            print(f"   FLAG {flag['reader']} {flag['kind']}: {flag['detail']}")

    step("compute_lesion_agreement (3-D nodules matched across readers, volumes in mL)")
    les = op("compute_lesion_agreement")(dataset)
    print(f"   {les['n_lesions']} lesions in {les['n_series']} series; found by {les['found_by']}")
    print(f"   Fleiss' kappa on found / not found: {les['fleiss_kappa_found']}")
    for row in les["readers"]:
        flags = f"  FLAG {row['flags']}" if row["flags"] else ""
        print(
            f"   {row['reader']}: {row['n_lesions']} lesions, found {row['sensitivity']} of "
            f"the others' lesions, volumes x{row['volume_ratio']} the others'{flags}"
        )

    step("compute_quality_metrics (on native HU values)")
    q = op("compute_quality_metrics")(dataset)
    print(f"   {q.get('n_computed')} images: {', '.join(q.get('fields', []))}")

    step("compute_embeddings (weight-free radiomics features; no download)")
    e = op("compute_embeddings")(dataset, model="radiomics")
    print(f"   {e.get('n_embedded')} embedded into {e.get('field')} ({e.get('dim')}-d)")

    step("compute_visualization (UMAP) and compute_uniqueness")
    m = op("compute_visualization")(dataset, e["field"])
    print(f"   map {m['brain_key']}: open the Embeddings panel, colour by disagreement_class")
    op("compute_uniqueness")(dataset, e["field"])

    step("find_disagreement_clusters")
    c = op("find_disagreement_clusters")(dataset, e["field"])
    print(f"   {c['summary']}")
    for row in c["clusters"][:4]:
        print(
            f"   #{row['rank']} cluster {row['cluster']} ({row['size']} images): "
            f"{row['rate']} contested vs {row['rest_rate']}, p={row['p_adj']} {row['view']}"
        )
        if row["why"]:
            print(f"      {row['why']}")

    step("fit_label_model (out-of-fold random forest on the radiomics embedding, by patient)")
    lm = op("fit_label_model")(dataset, e["field"])
    print(
        f"   -> {lm['field']}: out-of-fold accuracy {lm['oof_accuracy']:.2f} and kappa "
        f"{lm['oof_kappa']:.2f} against {lm['label_field']}"
    )

    step("compute_mistakenness (brain's formula and CROWDLAB label quality, per reader)")
    mk = op("compute_mistakenness")(dataset, lm["field"])
    for row in mk["reader_rows"]:
        print(
            f"   {row['reader']}: {row['n_in_queue']} labels in the queue, mean label quality "
            f"{row['mean_label_quality']}, model disagrees on {row['n_model_disagrees']}"
        )
    print(f"   saved view '{mk['queue_view']}': the {mk['n_in_queue']} least credible labels")

    step("evaluate_model (contested vs uncontested, by scanner, sex, age)")
    ev = op("evaluate_model")(dataset, lm["field"])
    print(f"   {ev['headline']}")

    # the view a radiology lead opens first: contested images, most contested first
    contested = dataset.match(F(fields.READERS_DISAGREE) == True).sort_by(  # noqa: E712
        fields.DISAGREEMENT, reverse=True
    )
    dataset.save_view(
        "contested",
        contested,
        description="Images where readers disagree, most contested first",
        overwrite=True,
    )
    print(f"   saved view 'contested': {len(contested)} images, sorted by disagreement")


def recist(dataset: fo.Dataset, study) -> None:
    """RECIST: import the readers' target measurements, then their agreement and drift."""
    import json

    from multireader.analyses.recist import RecistAgreementResults

    step("import_measurements (RECIST target diameters at baseline and follow-up)")
    result = op("import_measurements")(dataset, study.measurements_csv)
    print(
        f"   {result['n_measurements']} measurements -> {', '.join(result['fields'])}; "
        f"{result['n_errors']} rows rejected"
    )
    step("compute_recist_agreement (responses per reader, discordance, drift)")
    out = op("compute_recist_agreement")(dataset)
    print(
        f"   {out['n_patients']} patients with a follow-up; {out['n_discordant_patients']} "
        f"discordant; ICC(2,1) of the sums {out['sum_icc']}"
    )
    for tp, row in out["followups"].items():
        print(
            f"   follow-up {tp}: discordance rate {row['discordance_rate']}, Fleiss' kappa "
            f"{row['fleiss_kappa']} ({row['n']} patients)"
        )
    res = RecistAgreementResults.newest(dataset)
    for row in res.rows("discordant"):
        calls = ", ".join(f"{r} {c}" for r, c in row["responses"].items())
        print(f"   DISCORDANT patient {row['patient']} at follow-up {row['timepoint']}: {calls}")
    for row in res.rows("drift"):
        if row.get("drifting"):
            print(
                f"   DRIFT {row['reader']} ({row['by']}): diameters "
                f"{100 * row['slope_per_session']:+.1f} % per session against the others, "
                f"p={row['slope_p']:.2g}"
            )
    with open(study.truth_path) as f:
        planted = json.load(f)["planted"]
    flip, drift = planted["recist_flip_patient"], planted["recist_drift_reader"]["reader"]
    keys = dataset.match(F(fields.STUDY_UID) == flip["study_instance_uids"][0]).distinct(
        fields.PATIENT_KEY
    )
    discordant = {row["patient"] for row in res.rows("discordant")}
    flagged = set(out["drift_flags"].get("by_session", []))
    print(
        f"   truth check: flip patient {flip['patient_id']} discordant: "
        f"{bool(set(keys) & discordant)}; drift reader {drift} flagged: {drift in flagged}"
    )


def lineage_and_report(dataset: fo.Dataset, data_dir: str) -> None:
    """Freeze the training set, revise one label, catch it; then the audit report."""
    step("freeze_training_set 'demo_v1' (model label-model 1)")
    frozen = op("freeze_training_set")(
        dataset, name="demo_v1", model_name="label-model", model_version="1"
    )
    print(f"   {frozen['n_samples']} samples, freeze hash {frozen['freeze_hash'][:16]}...")
    step("revise_label: R2 revises one call after a second look")
    ids, r2 = dataset.values(["id", "reader_r2.label"])
    sid, old = next((i, v) for i, v in zip(ids, r2, strict=True) if v == "suspicious")
    op("revise_label")(
        dataset, sample_id=sid, field="reader_r2", label="benign", reason="second look"
    )
    print(f"   sample {sid}: suspicious -> benign (version 0 kept in the label history)")
    step("verify_training_set 'demo_v1'")
    print(f"   {op('verify_training_set')(dataset, name='demo_v1')['verdict']}")
    step("verify_audit_log")
    print(f"   {op('verify_audit_log')(dataset)['verdict']}")
    step("export_audit_report")
    out = op("export_audit_report")(dataset, path=os.path.join(data_dir, "audit_report.html"))
    print(f"   {out['html']}\n   {out['json']}")


def planted_errors_found(dataset: fo.Dataset, truth_path: str) -> None:
    """How many of the planted clear-cut errors top their reader's label-error ranking."""
    import json

    from multireader.analyses import label_errors

    with open(truth_path) as f:
        truth = json.load(f)
    planted = truth["planted"]["clear_cut_errors"]
    keys = {truth["images"][k]["dicom_key"] for k in planted["keys"]}
    field = label_errors.quality_field(fields.reader_field(planted["reader"]))
    ranked = dataset.exists(field).sort_by(field).limit(len(keys)).values("dicom_key")
    hits = len(keys & set(ranked))
    print(
        f"   truth check: {hits} of {planted['reader']}'s {len(keys)} planted errors are its "
        f"{len(keys)} least credible labels (precision@{len(keys)} = {hits / len(keys):.2f})"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dataset",
        default="multireader-demo",
        help="dataset name (replaced if it exists)",
    )
    parser.add_argument(
        "--data-dir",
        default=os.path.join(ROOT, "demo_data"),
        help="where the study is written",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=int(os.environ.get("MULTIREADER_PORT", 5151)))
    parser.add_argument(
        "--no-app",
        action="store_true",
        help="build the dataset but do not open the App",
    )
    args = parser.parse_args(argv)

    dataset = build(args.dataset, args.data_dir, args.seed)
    if args.no_app:
        return
    step("opening the App on the contested images, most contested first")
    session = fo.launch_app(
        dataset.load_saved_view("contested"), remote=True, address="127.0.0.1", port=args.port
    )
    print(f"   the App is at http://127.0.0.1:{args.port} (Ctrl-C to stop)", flush=True)
    session.wait(-1)


if __name__ == "__main__":
    main()
