"""An audit report an auditor can read: one self-contained HTML file and the same
content as JSON, built from what the database already holds (stored runs, the label
history, frozen training sets, the audit log), with nothing kept by hand.

The HTML is rendered from the JSON document (:func:`render_html` takes only the dict
:func:`build_report` returns), so the two cannot disagree. Plots are inline SVG drawn
here; the file has no script and loads nothing from anywhere, so it opens offline.

No patient identifier is written: DICOM names and IDs are never read (not even the
``dicom_identifiers`` field an opted-in import keeps); patients are only counted,
through the dataset's salted ``patient_key`` pseudonyms.

Sections (ids in the HTML, keys in the JSON): ``dataset``, ``readers``, ``agreement``,
``contested``, ``consensus``, ``lesions``, ``recist``, ``model``, ``training_sets``, ``audit_log``.
A section whose source is missing is still present, with ``available: False`` and a note
naming the operator that produces it. Sections built from analysis runs read them as
typed results (:class:`multireader.core.results.AnalysisResults`, through ``newest`` /
``from_run``) and take their tables from the results' ``rows``, never from the run's raw
JSON; no table cell holds raw JSON (a mapping is written out as ``name: value`` pairs).

>>> html_path, json_path = write_report(dataset, "/tmp/report.html")
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re

from multireader import __version__
from multireader.analyses.agreement import AgreementResults, ConsensusResults
from multireader.analyses.lesions import LesionAgreementResults
from multireader.analyses.model_eval import EvaluationResults
from multireader.core import runs
from multireader.lineage import audit
from multireader.stats.estimates import fmt_ci, fmt_num, fmt_p, fmt_pct

SECTIONS = [
    ("dataset", "1. Dataset and provenance"),
    ("readers", "2. Readers and their reads"),
    ("agreement", "3. Inter-reader agreement"),
    ("contested", "4. Contested cases"),
    ("consensus", "5. Consensus and reader profiles"),
    ("lesions", "6. Lesion-level agreement (3-D)"),
    ("recist", "7. RECIST response agreement"),
    ("model", "8. Model performance"),
    ("training_sets", "9. Frozen training sets"),
    ("audit_log", "10. Audit log"),
]

#: all-reader statistics of the agreement run: key -> (name, one-sentence definition)
STATISTICS = {
    "percent_agreement": (
        "Percent agreement",
        "the share of pairs of reads of the same image that give the same class, "
        "averaged over images; not corrected for chance.",
    ),
    "fleiss_kappa": (
        "Fleiss' kappa",
        "agreement of all readers beyond what chance alone would give: 1 is perfect, "
        "0 is chance level, below 0 is worse than chance (Fleiss 1971).",
    ),
    "krippendorff_alpha_nominal": (
        "Krippendorff's alpha (nominal)",
        "all-reader agreement beyond chance that tolerates missing reads; any two "
        "different classes count as a full disagreement (Krippendorff 2011).",
    ),
    "krippendorff_alpha_ordinal": (
        "Krippendorff's alpha (ordinal)",
        "the same on the ordered scale: a near miss (for example benign against "
        "probably benign) counts as a partial disagreement (Krippendorff 2011).",
    ),
    "gwet_ac1": (
        "Gwet's AC1",
        "all-reader agreement beyond chance that is less depressed than kappa when one "
        "class is rare (Gwet 2008).",
    ),
}
#: the lesion section's statistics: key -> (name, one-sentence definition)
LESION_STATISTICS = {
    "found_by_k": (
        "Lesions found by k of n readers",
        "each lesion is matched across readers (3-D overlap, or centroid distance for "
        "small lesions) and counted by how many of the readers who read its series "
        "outlined it.",
    ),
    "fleiss_kappa_found": (
        "Fleiss' kappa on found / not found",
        "agreement of all readers on whether each lesion is there, beyond what chance "
        "alone would give, treating every lesion any reader outlined as an item (Fleiss "
        "1971).",
    ),
    "f1": (
        "Detection F1",
        "for two readers, twice the lesions they both found over the sum of the lesions "
        "each found (one-to-one matches of that pair).",
    ),
    "sensitivity": (
        "Detection sensitivity",
        "the share of the first reader's lesions that the second reader also found.",
    ),
    "ppv": (
        "Detection PPV",
        "the share of the second reader's lesions that the first reader also found "
        "(positive predictive value with the first reader as reference).",
    ),
    "dice": (
        "Dice (3-D)",
        "twice the volume two readers' outlines of a lesion share over the sum of their "
        "volumes: 1 identical, 0 disjoint; averaged over the lesions both found.",
    ),
    "iou": (
        "IoU (3-D)",
        "the shared volume over the volume of the union of the two outlines (Jaccard).",
    ),
    "hd95": (
        "HD95 (mm)",
        "the 95th-percentile Hausdorff distance as MONAI defines it: the larger of the two "
        "directed 95th percentiles of the distances from each outline's surface to the "
        "other's, in millimetres.",
    ),
    "assd": (
        "ASSD (mm)",
        "the average symmetric surface distance: the mean over both surfaces of each "
        "surface point's distance to the other outline's surface, in millimetres.",
    ),
    "nsd": (
        "NSD",
        "the normalised surface distance (Nikolov et al. 2021): the share of both "
        "outlines' surface lying within the stated tolerance of the other outline's "
        "surface.",
    ),
    "icc": (
        "Volume ICC",
        "intraclass correlation of the readers' lesion volumes (Shrout & Fleiss 1979) on "
        "the lesions every reader outlined: the share of the variance in volume that is "
        "between lesions rather than between readers.",
    ),
    "bland_altman": (
        "Bland-Altman (mL)",
        "for two readers, the mean difference of their volumes of the same lesion (bias) "
        "and the range within which 95% of such differences fall (limits of agreement; "
        "Bland & Altman 1986).",
    ),
    "rms_cv": (
        "RMS within-lesion CV",
        "the root mean square over lesions of the coefficient of variation (SD over "
        "mean) of the readers' volumes of each lesion.",
    ),
    "volume_ratio": (
        "Volume ratio",
        "a reader's lesion volumes relative to the other readers' on the same lesions "
        "(geometric mean ratio); flagged as larger or smaller volumes when a paired "
        "Wilcoxon test is significant after Holm correction and the ratio is off 1 by at "
        "least 5%.",
    ),
    "sensitivity_vs_others": (
        "Found of the others' lesions",
        "the share of the lesions at least half of the other readers found that this "
        "reader found too; flagged as missing (small) lesions when clearly below the "
        "panel's median.",
    ),
}
GLOSSARY = {
    **dict(STATISTICS.values()),
    **dict(LESION_STATISTICS.values()),
    "Cohen's kappa": "agreement of two readers beyond what chance alone would give, on "
    "the images both read: 1 perfect, 0 chance level, below 0 worse than chance "
    "(Cohen 1960).",
    "95% CI": "95% confidence interval: the range of values compatible with the data, "
    "from bootstrap resampling of whole patients (all images of a patient together), "
    "so that correlated images of one patient are not counted as independent evidence.",
    "n": "the number of images (or, for a pair of readers, of images both read) the "
    "value is computed on.",
    "Disagreement score": "the expected share of disagreement between two readers drawn "
    "at random from those who read the image: 0 when all agree, 1 when all differ "
    "(ordered classes: a near miss counts partly).",
    "Contested case": "an image read by at least two readers on which no class got at "
    "least 75% of the reads (a tie or a split vote).",
    "Dawid-Skene consensus": "a consensus that weighs each reader by their estimated "
    "accuracy for each class, learned from all readers' labels (Dawid & Skene 1979).",
    "Majority vote": "the class most readers chose; ties are marked contested, never "
    "broken at random.",
    "Prevalence bias": "a reader calls one class significantly more or less often than "
    "the other readers do on the same images (exact sign test on the images where they "
    "differ).",
    "Ordinal bias": "on an ordered scale, a reader calls consistently higher or lower "
    "than the other readers' median on the same images (mean shift in levels, Wilcoxon "
    "signed-rank test).",
    "Marginal homogeneity": "on an unordered scale, a reader's call rates over all "
    "classes differ from the consensus's on the same images (Stuart-Maxwell test).",
    "Readers and cases random": "an interval or test that treats the readers as a sample "
    "of readers too, not only the patients: its conclusion is meant to hold for other "
    "readers of the same kind (multi-reader multi-case analysis).",
    "Drift": "a reader's agreement with the consensus changes significantly across "
    "reading sessions (trend test over sessions).",
    "p (Holm)": "a p-value corrected for testing several readers and classes at once "
    "(Holm 1979); a flag is raised below the chosen significance level.",
    "Accuracy": "the share of images on which the model's class equals the reference label.",
    "Freeze hash": "a SHA-256 fingerprint of a frozen training set's sample list and "
    "labels; verifying recomputes every label's hash and compares.",
    "Hash chain": "each audit entry stores the SHA-256 of the previous one, so an "
    "edited, deleted or inserted entry breaks the chain where it happened.",
}
#: slice fields cut for per-subgroup agreement, with their names in plain language
SUBGROUP_FIELDS = {
    "manufacturer_model": "Scanner model",
    "manufacturer": "Scanner maker",
    "patient_sex": "Sex",
    "patient_age_bin": "Age band",
    "contrast": "Contrast",
}
METHOD_NAMES = {
    "dawid_skene": "Dawid-Skene (weighs readers by their estimated accuracy)",
    "majority": "Majority vote (ties marked contested)",
    "staple": "STAPLE (masks)",
    "wbf": "Weighted box fusion (boxes)",
}
_NOT_AVAILABLE = "Not available: run '{op}' first."
#: fields never read into the report, even when present on the dataset
_NEVER_READ = ("dicom_identifiers",)


def _who(dataset, action: str, last: int = 3) -> list[dict]:
    """Who ran ``action`` and when, from the audit log (newest ``last``)."""
    return [
        {"user": e.get("user"), "time": e.get("time"), "status": e.get("status")}
        for e in audit.entries(dataset, action=action)
    ][-last:]


def _iso_epoch(t) -> str | None:
    try:
        return dt.datetime.fromtimestamp(float(t), dt.UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError):
        return None


# --- sections -----------------------------------------------------------------------


def _dataset_section(dataset) -> dict:
    from multireader.core import fields as F
    from multireader.core.fields import reader_fields

    counts = {}
    for f, label in ((F.PATIENT_KEY, "patients"), (F.STUDY_UID, "studies"),
                     (F.SERIES_UID, "series")):  # fmt: skip
        if dataset.has_field(f):
            counts[label] = len(dataset.distinct(f))
    info = dict(dataset.info or {})
    schema = (info.get("multireader") or {}).get("label_schema") or {}
    imp = info.get("dicom_import") or {}
    imports = None
    if imp:
        imports = {
            "files": imp.get("files"),
            "imported": imp.get("imported"),
            "duplicates": imp.get("duplicates"),
            "skipped": len(imp.get("skipped") or []),
            "series": imp.get("series"),
            "seconds": imp.get("seconds"),
            "history": [
                {**{k: v for k, v in h.items() if k != "at"}, "at": _iso_epoch(h.get("at"))}
                for h in imp.get("history") or []
            ],
        }
    # the setting the import ran with, from its audit entry; else what the fields show
    ran = audit.entries(dataset, action="import_dicom")
    params = (ran[-1].get("params") or {}) if ran else {}
    n_ident = dataset.count(_NEVER_READ[0]) if dataset.has_field(_NEVER_READ[0]) else 0
    deid = {
        "identifiers_copied": bool(params.get("include_identifiers", n_ident > 0)),
        "study_dates_copied": bool(
            params.get("include_study_date", dataset.has_field("study_date"))
        ),
        "source": "import_dicom audit entry" if ran else "fields present on the dataset",
        "statement": (
            "Patient names, IDs, birth dates, addresses, institutions and physicians "
            "are not copied from the DICOM headers"
            + (
                " (except into one 'dicom_identifiers' field, at the user's request; "
                "this report never reads it)"
                if n_ident or params.get("include_identifiers")
                else ""
            )
            + ". Age and weight are kept only in bands. Images of one patient are "
            "grouped by a salted, keyed pseudonym ('patient_key'), counted here and "
            "never listed."
        ),
    }
    return {
        "name": dataset.name,
        "n_samples": len(dataset),
        "counts": counts,
        "created_at": str(dataset.created_at) if dataset.created_at else None,
        "media_type": dataset.media_type,
        "label_schema": {k: schema.get(k) for k in ("classes", "ordered")} if schema else None,
        "import": imports,
        "imported_by": _who(dataset, "import_dicom"),
        "n_reader_fields": len(reader_fields(dataset)),
        "deidentification": deid,
    }


def _readers_section(dataset) -> dict:
    from multireader.core.fields import reader_fields
    from multireader.lineage.records import HISTORY

    found = reader_fields(dataset)
    rows = {}
    paths = sorted(found)
    for f, v in zip(paths, dataset.values(paths), strict=True) if paths else []:
        meta = found[f]
        r = rows.setdefault(str(meta["reader"]), {"reader": str(meta["reader"]), "fields": {}})
        r["fields"][f] = {"kind": meta["kind"], "n_reads": sum(x is not None for x in v)}
    for f in [f for f in paths if found[f]["kind"] == "classification"]:
        if dataset.has_field(f"{f}.session"):
            rows[str(found[f]["reader"])]["sessions"] = sorted(
                s for s in dataset.distinct(f"{f}.session") if s is not None
            )
    ds_id, _ = audit.dataset_key(dataset)
    revisions = [
        {
            k: h.get(k) for k in ("sample_id", "field", "version", "kind", "reason", "user", "time")
        }  # fmt: skip
        for h in audit.database()[HISTORY]
        .find({"dataset_id": ds_id, "kind": {"$ne": "original"}}, {"_id": 0, "label": 0})
        .sort("time", 1)
    ]
    return {
        "readers": list(rows.values()),
        "imported_by": _who(dataset, "import_reader_labels", last=20),
        "revisions": revisions,
    }


def _agreement_section(dataset) -> dict:
    res = AgreementResults.newest(dataset)
    if res is None:
        return {"available": False, "note": _NOT_AVAILABLE.format(op="Compute agreement")}
    out = {
        "available": True,
        "run_key": res.run_key,
        "created_at": res.created_at,
        "run_by": _who(dataset, "compute_agreement"),
    }
    if res.classification:
        overall = {o["key"]: o for o in res.rows("overall")}
        out["overall"] = [
            {"statistic": name, "definition": text, **overall[k]}
            for k, (name, text) in STATISTICS.items()
            if k in overall
        ]
        out["n_items"] = res.classification["summary"]["n_items"]
        out["bootstrap"] = res.bootstrap()
        out["readers"] = res.readers
        out["classes"] = res.classes
        out["pairwise_kappa"] = res.pairwise_kappa()
        out["pairwise"] = res.rows("pairwise")
        out["per_class"] = res.rows("per_class")
        out["interval"] = res.interval()
        out["terms"] = res.rows("terms")
    for kind, stat, label in (
        ("mask", "mean_pairwise_dice", "Masks: mean Dice overlap between two readers' masks"),
        ("boxes", "mean_pairwise_f1", "Boxes: mean F1 of matched boxes between two readers"),
    ):
        e = res.overall(kind, stat)
        if e:
            out[f"{kind}_overall"] = {"statistic": stat, "label": label, **e}
    out["subgroups"] = _subgroups(dataset, n_boot=min(int(res.n_boot or 500), 500))
    return out


def _subgroups(dataset, n_boot: int = 500) -> list[dict]:
    """Fleiss' kappa with a patient-bootstrap CI within each value of each slice field,
    recomputed from the labels now (the stored agreement run has no subgroups)."""
    from multireader.analyses.slice_confusion import default_bins, slice_codes, slice_fields
    from multireader.core import collect as C
    from multireader.stats import agreement as A

    try:
        rs = C.select_readers(dataset, "classification")
    except C.ReaderSelectionError:
        return []
    wanted = [f for f in SUBGROUP_FIELDS if f in slice_fields(dataset)]
    reads = C.categorical_reads(dataset, rs, scores=False, sessions=False, extra=wanted)
    out = []
    for f in wanted:
        values = reads.extra[f]
        codes, names, _ = slice_codes(values, default_bins(values))
        for k, name in enumerate(names):
            m = codes == k
            if m.sum() < 2:
                continue
            groups = reads.groups[m] if reads.groups is not None else None
            s = A.categorical_summary(
                reads.codes[m], len(reads.classes), n_boot=n_boot, seed=0, groups=groups
            )
            out.append(
                {
                    **s["overall"]["fleiss_kappa"],
                    "krippendorff_alpha_nominal": s["overall"].get("krippendorff_alpha_nominal"),
                    "field": f,
                    "field_label": SUBGROUP_FIELDS[f],
                    "group": name,
                    "n": int(m.sum()),
                    "n_patients": int(len(set(groups.tolist()))) if groups is not None else None,
                }
            )
    return out


def _contested_section(dataset, limit: int) -> dict:
    from fiftyone import ViewField as VF

    from multireader.core.fields import reader_fields

    if not dataset.has_field("disagreement"):
        return {"available": False, "note": _NOT_AVAILABLE.format(op="Compute agreement")}
    cls = sorted(reader_fields(dataset, ["classification"]))
    view = (
        dataset.match(VF("majority_share") < 0.75)
        if dataset.has_field("majority_share")
        else dataset.match(VF("readers_disagree"))
    )
    view = view.sort_by("disagreement", reverse=True)
    cons = ConsensusResults.newest(dataset)
    cons_field = cons.output_field if cons else None
    n = view.count()
    top = view.limit(limit)
    key = "dicom_key" if dataset.has_field("dicom_key") else None
    paths = ["id", "filepath", "disagreement"] + [f"{f}.label" for f in cls]
    if key:
        paths.append(key)
    if cons_field and dataset.has_field(cons_field):
        paths.append(f"{cons_field}.label")
    cols = dict(zip(paths, top.values(paths), strict=True))
    rows = []
    for i, sid in enumerate(cols["id"]):
        rows.append(
            {
                "sample_id": sid,
                "file": os.path.basename(cols["filepath"][i]),
                "dicom_key": cols[key][i] if key else None,
                "disagreement": cols["disagreement"][i],
                "labels": {f: cols[f"{f}.label"][i] for f in cls},
                "consensus": cols.get(f"{cons_field}.label", [None] * len(cols["id"]))[i],
            }
        )
    return {
        "available": True,
        "definition": GLOSSARY["Contested case"],
        "n_contested": n,
        "n_samples": len(dataset),
        "shown": len(rows),
        "not_shown": n - len(rows),
        "consensus_field": cons_field,
        "reader_fields": cls,
        "rows": rows,
    }


def _consensus_section(dataset) -> dict:
    res = ConsensusResults.newest(dataset)
    if res is None:
        return {"available": False, "note": _NOT_AVAILABLE.format(op="Compute consensus labels")}
    prof = res.profiles
    return {
        "available": True,
        "run_key": res.run_key,
        "kind": res.label_kind,
        "method": res.method,
        "output_field": res.output_field,
        "readers_used": res.readers,
        "params": res.params,
        "param_rows": res.rows("params"),
        "created_at": res.created_at,
        "run_by": _who(dataset, "compute_consensus"),
        "profiles_available": bool(prof),
        "classes": prof.get("classes"),
        "alpha": (prof.get("parameters") or {}).get("alpha"),
        "readers": res.rows("readers"),
        "flags": res.rows("flags") if prof else [],
        "scale_test": (prof.get("parameters") or {}).get("scale") if prof else None,
        "convergence": res.convergence(),
        "convergence_text": res.convergence_text(),
        "warnings": res.warnings,
        "other_runs": [k for k in runs.list_runs(dataset, "consensus") if k != res.run_key],
    }


def _lesions_section(dataset) -> dict:
    res = LesionAgreementResults.newest(dataset)
    if res is None:
        return {
            "available": False,
            "note": _NOT_AVAILABLE.format(op="Compute lesion agreement (3-D)"),
        }
    r = res.results
    cfg = {**(r.get("config") or {}), **res.config}
    rule = cfg.get("rule")
    match = (
        f"centroids within {cfg.get('max_distance_mm')} mm"
        if rule == "centroid"
        else f"3-D {'IoU' if rule == 'iou' else 'Dice'} of at least {cfg.get('min_overlap')}"
    )
    volume = r.get("volume") or {}
    profiles = res.rows("profiles")
    return {
        "available": True,
        "run_key": res.run_key,
        "created_at": res.created_at,
        "run_by": _who(dataset, "compute_lesion_agreement"),
        "readers": res.readers,
        "n_series": r.get("n_series"),
        "n_patients": r.get("n_patients"),
        "n_lesions": r.get("n_lesions"),
        "level": res.level,
        "n_boot": r.get("n_boot", cfg.get("n_boot")),
        "match": match,
        "connectivity": cfg.get("connectivity"),
        "instances": cfg.get("instances"),
        "nsd_tolerance_mm": res.nsd_tolerance_mm,
        "definitions": {k: {"name": n, "definition": d} for k, (n, d) in LESION_STATISTICS.items()},
        "found_by": res.rows("found_by"),
        "fleiss_kappa_found": res.fleiss_kappa_found,
        "detection": res.rows("detection"),
        "boundary": res.rows("boundary"),
        "volume": {
            "icc": res.rows("volume_icc"),
            "icc_note": volume.get("icc_note"),
            "bland_altman": res.rows("bland_altman"),
            "rms_cv": res.rms_cv,
            "n_complete": volume.get("n_complete"),
        },
        "reader_profiles": profiles,
        "flagged": [
            {"reader": p["reader"], "flags": p["flags"]} for p in profiles if p.get("flags")
        ],
    }


def _model_section(dataset) -> dict:
    found = EvaluationResults.newest(dataset)
    if found is None:
        return {
            "available": False,
            "note": "No predictions evaluated: run 'Evaluate model' (after importing or "
            "fitting predictions).",
        }
    return {
        "available": True,
        "run_key": found.run_key,
        "created_at": found.created_at,
        "run_by": _who(dataset, "evaluate_model"),
        "headline": found.headline,
        "against_consensus": found.rows("consensus"),
        "against_readers": found.rows("readers"),
        "model_vs_readers": found.rows("model_vs_readers"),
        "model_vs_readers_slices": found.rows("model_vs_readers_slices"),
        "model_vs_readers_method": (found.results.get("model_vs_readers") or {}).get("method"),
        "model_vs_readers_truth": (found.results.get("model_vs_readers") or {}).get("truth"),
        "results": found.results,
    }


def _training_section(dataset) -> dict:
    from multireader.lineage import records as lineage

    out = []
    for h in lineage.list_training_sets(dataset):
        v = lineage.verify_training_set(dataset, h["name"])
        out.append(
            {
                "name": h["name"],
                "model": f"{h['model_name']} {h['model_version']}",
                "created": h["created"],
                "user": h["user"],
                "n_samples": h["n_samples"],
                "label_fields": h.get("label_fields"),
                "consensus": h.get("consensus"),
                "freeze_hash": h["freeze_hash"],
                "verification": {
                    "ok": v["ok"],
                    "freeze_hash_ok": v["freeze_hash_ok"],
                    **v["counts"],
                },  # fmt: skip
            }
        )
    return {
        "verified_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "training_sets": out,
        "deleted": [
            {"user": e.get("user"), "time": e.get("time"), **(e.get("params") or {})}
            for e in audit.entries(dataset, action="delete_training_set")
        ],
    }


def _audit_section(dataset, limit: int = 500) -> dict:
    v = audit.verify(dataset)
    entries = audit.entries(dataset)
    keep = entries[-limit:] if limit else entries
    cols = ("seq", "time", "user", "action", "status", "error", "counts", "wrote", "hash")
    return {
        "verification": v,
        "n_entries": len(entries),
        "shown": len(keep),
        "entries": [{k: e.get(k) for k in cols} for e in keep],
    }


def build_report(
    dataset,
    *,
    title: str | None = None,
    contested_limit: int = 100,
    audit_limit: int = 500,
    progress=None,
) -> dict:
    """The report's content as a JSON-ready dict; every section is present.

    ``contested_limit`` caps the contested cases listed (the count covers all);
    ``audit_limit`` the audit entries listed (the newest; the chain is verified whole).
    ``progress(fraction, message)`` is called after each section.
    """
    dataset = getattr(dataset, "_dataset", dataset)
    steps = [
        ("dataset", lambda: _dataset_section(dataset)),
        ("readers", lambda: _readers_section(dataset)),
        ("agreement", lambda: _agreement_section(dataset)),
        ("contested", lambda: _contested_section(dataset, contested_limit)),
        ("consensus", lambda: _consensus_section(dataset)),
        ("lesions", lambda: _lesions_section(dataset)),
        ("recist", lambda: _recist_section(dataset)),
        ("model", lambda: _model_section(dataset)),
        ("training_sets", lambda: _training_section(dataset)),
        ("audit_log", lambda: _audit_section(dataset, audit_limit)),
    ]
    report = {
        "title": title or f"Audit report: {dataset.name}",
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "generated_by": audit.actor(),
        "plugin_version": __version__,
        "sections": [{"id": k, "title": t} for k, t in SECTIONS],
        "glossary": GLOSSARY,
    }
    for k, (name, fn) in enumerate(steps):
        report[name] = runs.jsonable(fn())
        if progress:
            progress((k + 1) / len(steps), f"{name} done")
    return report


def summary(report: dict) -> list[dict]:
    """One line per section: whether its source exists and what it holds."""
    a, c, s, m = (report[k] for k in ("agreement", "contested", "consensus", "model"))
    les = report["lesions"]
    t, g = report["training_sets"]["training_sets"], report["audit_log"]
    fleiss = next((o for o in a.get("overall", []) if o["key"] == "fleiss_kappa"), None)
    lines = {
        "dataset": f"{report['dataset']['n_samples']} images, "
        + ", ".join(f"{v} {k}" for k, v in report["dataset"]["counts"].items()),
        "readers": f"{len(report['readers']['readers'])} readers, "
        f"{len(report['readers']['revisions'])} label revisions",
        "agreement": f"Fleiss' kappa {fmt_ci(fleiss)}; {len(a.get('subgroups', []))} subgroups"
        if a.get("available") and fleiss
        else a.get("note", "no class calls"),
        "contested": f"{c['n_contested']} of {c['n_samples']} images contested"
        if c.get("available")
        else c["note"],
        "consensus": f"{s['method']} ({s['run_key']}), {len(s['flags'])} reader flags"
        if s.get("available")
        else s["note"],
        "lesions": f"{les['n_lesions']} lesions in {les['n_series']} series, Fleiss' kappa "
        f"on found {fmt_ci(les['fleiss_kappa_found'])}; {len(les['flagged'])} readers flagged"
        if les.get("available")
        else les["note"],
        "recist": _recist_summary(report["recist"]),
        "model": m["headline"] if m.get("available") else m["note"],
        "training_sets": f"{len(t)} frozen, {sum(not x['verification']['ok'] for x in t)} "
        "changed since"
        if t
        else "no frozen training sets",
        "audit_log": f"{g['n_entries']} entries, chain "
        + ("verified" if g["verification"]["ok"] else "BROKEN"),
    }
    return [{"section": title, "summary": lines[sid]} for sid, title in SECTIONS]


# --- HTML ---------------------------------------------------------------------------


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


_CI_TEXT = re.compile(r"^-?\d+\.\d+ \[-?\d+\.\d+, -?\d+\.\d+\]$")
_TIME_TEXT = re.compile(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(\.\d+)?(\+00:00)?$")


def _t(x) -> str:
    """An ISO time as ``2026-11-24 02:24:17`` (the report says times are UTC)."""
    m = _TIME_TEXT.match(str(x or ""))
    return f"{m.group(1)} {m.group(2)}" if m else ("" if x is None else str(x))


def _plain(c) -> str:
    """A cell's value as text a person reads: a mapping as ``name: value`` pairs, a list
    as a comma-separated list, never raw JSON."""
    if isinstance(c, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {_plain(v)}" for k, v in c.items())
    if isinstance(c, (list, tuple)):
        return ", ".join(_plain(v) for v in c)
    if isinstance(c, bool):
        return "yes" if c else "no"
    if isinstance(c, float):
        return fmt_num(c, 3, significant=True)
    return "" if c is None else str(c)


def _td(c) -> str:
    if isinstance(c, (dict, list, tuple)):
        c = _plain(c)
    text = _t(c) if isinstance(c, str) else c
    nowrap = isinstance(text, str) and (_CI_TEXT.match(text) or _TIME_TEXT.match(str(c)))
    return f"<td class='nw'>{_e(text)}</td>" if nowrap else f"<td>{_e(text)}</td>"


def _table(headers: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_td(c) for c in r) + "</tr>" for r in rows)
    attr = f" class='{cls}'" if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv(rows: list[list]) -> str:
    body = "".join(f"<tr><th scope='row'>{_e(k)}</th>{_td(v)}</tr>" for k, v in rows)
    return f"<table class='kv'><tbody>{body}</tbody></table>"


def _who_text(run_by: list[dict]) -> str:
    return "; ".join(f"{x['user']} at {_t(x['time'])} UTC" for x in run_by) or (
        "not in the audit log"
    )


def _note(section: dict) -> str:
    return f"<p class='note'>{_e(section['note'])}</p>"


def _kappa_colour(v) -> str:
    """Diverging scale centred at 0: red below (worse than chance), white at 0, blue
    towards 1."""
    if v is None:
        return "#eeeeee"
    v = max(-1.0, min(1.0, float(v)))
    if v < 0:
        t = -v
        return f"rgb({int(255 - 77 * t)},{int(255 - 231 * t)},{int(255 - 212 * t)})"
    return f"rgb({int(255 - 222 * v)},{int(255 - 153 * v)},{int(255 - 83 * v)})"


def _heatmap_svg(readers: list[str], m: dict) -> str:
    R, cell, pad = len(readers), 64, 56
    size = pad + R * cell
    legend_x, legend_w = size + 40, 24
    width, height = legend_x + 130, max(size + 16, 300)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'role="img" aria-label="Pairwise Cohen kappa between readers" font-family="sans-serif">'
    ]
    for i, r in enumerate(readers):
        parts.append(
            f'<text x="{pad + i * cell + cell / 2}" y="{pad - 12}" text-anchor="middle" '
            f'font-size="14">{_e(r)}</text>'
            f'<text x="{pad - 10}" y="{pad + i * cell + cell / 2 + 5}" text-anchor="end" '
            f'font-size="14">{_e(r)}</text>'
        )
        for j in range(R):
            v = m["value"][i][j]
            x, y = pad + j * cell, pad + i * cell
            colour = "#dddddd" if i == j else _kappa_colour(v)
            dark = i != j and v is not None and abs(v) > 0.6
            label = "" if i == j else fmt_num(v)
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell - 3}" height="{cell - 3}" fill="{colour}">'
                f"<title>{_e(readers[i])} vs {_e(readers[j])}: {label}</title></rect>"
                f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2 + 5}" text-anchor="middle" '
                f'font-size="14" fill="{"#fff" if dark else "#222"}">{label}</text>'
            )
    # colour legend: -1 .. 1, white at 0
    steps, top, h = 40, pad, R * cell - 3
    for k in range(steps):
        v = 1 - 2 * k / (steps - 1)
        parts.append(
            f'<rect x="{legend_x}" y="{top + k * h / steps:.1f}" width="{legend_w}" '
            f'height="{h / steps + 0.6:.1f}" fill="{_kappa_colour(v)}"/>'
        )
    parts.append(
        f'<rect x="{legend_x}" y="{top}" width="{legend_w}" height="{h}" fill="none" '
        'stroke="#999"/>'
    )
    for v, label in ((1, "1 perfect"), (0, "0 chance"), (-1, "-1 worse")):
        y = top + (1 - v) / 2 * h
        parts.append(
            f'<line x1="{legend_x + legend_w}" x2="{legend_x + legend_w + 5}" y1="{y}" '
            f'y2="{y}" stroke="#555"/><text x="{legend_x + legend_w + 8}" y="{y + 4}" '
            f'font-size="12">{label}</text>'
        )
    parts.append(
        f'<text x="{legend_x - 4}" y="{top - 22}" font-size="12">Cohen\'s kappa</text></svg>'
    )
    return "".join(parts)


def _forest_svg(rows: list[dict]) -> str:
    """Fleiss' kappa (dot) and its 95% CI (line) for each subgroup, on a fixed axis."""
    if not rows:
        return ""
    w, left, row_h, lo_axis = 820, 300, 24, -0.2
    h = 34 + row_h * len(rows)

    def x(v):
        return left + (max(lo_axis, min(1.0, v)) - lo_axis) / (1 - lo_axis) * (w - left - 20)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 34}" role="img" '
        'aria-label="Fleiss kappa by subgroup with 95% CIs" font-family="sans-serif">'
    ]
    for t in (-0.2, 0, 0.2, 0.4, 0.6, 0.8, 1.0):
        colour = "#888" if t == 0 else "#ddd"
        parts.append(
            f'<line x1="{x(t)}" x2="{x(t)}" y1="10" y2="{h}" stroke="{colour}"/>'
            f'<text x="{x(t)}" y="{h + 15}" text-anchor="middle" font-size="11">{t:g}</text>'
        )
    parts.append(
        f'<text x="{x(0.4)}" y="{h + 31}" text-anchor="middle" font-size="12">'
        "Fleiss' kappa (dot) with 95% CI (line); 0 = chance level</text>"
    )
    prev = None
    for k, r in enumerate(rows):
        y = 22 + k * row_h
        if prev is not None and r["field"] != prev:
            parts.append(
                f'<line x1="10" x2="{w - 10}" y1="{y - row_h / 2}" y2="{y - row_h / 2}" '
                'stroke="#eee"/>'
            )
        prev = r["field"]
        name = f"{r.get('field_label') or r['field']}: {r['group']} (n={r['n']})"
        parts.append(
            f'<text x="{left - 10}" y="{y + 4}" text-anchor="end" font-size="12">{_e(name)}</text>'
        )
        ci = r.get("ci") or [None, None]
        if ci[0] is not None and ci[1] is not None:
            parts.append(
                f'<line x1="{x(ci[0])}" x2="{x(ci[1])}" y1="{y}" y2="{y}" stroke="#2166ac" '
                'stroke-width="2"/>'
            )
        if r.get("value") is not None:
            parts.append(
                f'<circle cx="{x(r["value"])}" cy="{y}" r="4" fill="#2166ac">'
                f"<title>{_e(name)}: {_e(fmt_ci(r))}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


_CSS = """body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.7em;margin-bottom:.2em}
h2{border-bottom:2px solid #2166ac;padding-bottom:.2em;margin-top:2.2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:left;vertical-align:top}thead th{background:#f0f4f8}
.kv th{background:#f7f9fb;width:15em}.ok{color:#1a7f37;font-weight:600}
.bad{color:#b2182b;font-weight:600}.note{color:#666;font-style:italic}code{font-size:.9em;
overflow-wrap:anywhere}.src{color:#555;font-size:.9em}.num td{font-variant-numeric:tabular-nums}
.toc{columns:2;margin:.4em 0;list-style:none;padding-left:1em}dt{font-weight:600;margin-top:.4em}dd{margin-left:1.5em}
.wide{overflow-x:auto}.nw{white-space:nowrap}svg{max-width:100%;height:auto}
@media print{h2{break-before:auto}.wide{overflow:visible}}"""


def render_html(r: dict) -> str:
    """The report as one self-contained HTML page (no scripts, no external resources)."""
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(r['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(r['title'])}</h1>",
        f"<p>Generated {_e(_t(r['generated']))} UTC by <b>{_e(r['generated_by'])}</b> with the "
        f"multireader plugin {_e(r['plugin_version'])}, from the FiftyOne database alone. "
        "The same content is in the JSON file of the same name beside this one.</p>",
        "<nav><ul class='toc'>"
        + "".join(f"<li><a href='#{s['id']}'>{_e(s['title'])}</a></li>" for s in r["sections"])
        + "<li><a href='#glossary'>Glossary</a></li></ul></nav>",
        "<h2 id='how'>How to read this report</h2><p>Each section says where its numbers "
        "come from: a stored analysis run (named, with who ran it and when), the label "
        "history, the frozen training sets, or the audit log. Agreement and performance "
        "values are given as <b>value [95% CI]</b> with <b>n</b>, the number of images "
        "they are computed on; the interval comes from resampling whole patients. A "
        "section whose analysis has not been run says so and names the step that "
        "produces it. Every statistic is defined in one sentence in the glossary at the "
        "end. No patient identifier appears in this report.</p>",
    ]
    out += _html_dataset(r["dataset"])
    out += _html_readers(r["readers"])
    out += _html_agreement(r["agreement"])
    out += _html_contested(r["contested"])
    out += _html_consensus(r["consensus"])
    out += _html_lesions(r["lesions"])
    out += _html_recist(r["recist"])
    out += _html_model(r["model"])
    out += _html_training(r["training_sets"])
    out += _html_audit(r["audit_log"])
    out.append(
        "<h2 id='glossary'>Glossary</h2><dl>"
        + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in r["glossary"].items())
        + "</dl>"
    )
    out.append("</body></html>")
    return "\n".join(out)


def _h2(sid: str) -> str:
    return f"<h2 id='{sid}'>{_e(dict(SECTIONS)[sid])}</h2>"


def _html_dataset(d: dict) -> list[str]:
    rows = [["Dataset", d["name"]], ["Images (samples)", d["n_samples"]]]
    rows += [[k.capitalize(), v] for k, v in d["counts"].items()]
    rows += [["Created in the database", d.get("created_at")],
             ["Reader label fields", d["n_reader_fields"]]]  # fmt: skip
    if d.get("label_schema"):
        s = d["label_schema"]
        rows.append(["Classes", ", ".join(s.get("classes") or [])
                     + (" (ordered scale)" if s.get("ordered") else "")])  # fmt: skip
    imp = d.get("import")
    if imp:
        rows.append(["DICOM import", f"{imp['imported']} images from {imp['files']} files in "
                     f"{imp['series']} series; {imp['duplicates']} duplicates ignored, "
                     f"{imp['skipped']} files skipped"])  # fmt: skip
        for h in imp.get("history") or []:
            rows.append(["Import run", f"{_t(h.get('at'))} UTC: {h.get('imported')} imported, "
                         f"{h.get('duplicates')} duplicates, {h.get('skipped')} skipped"])  # fmt: skip
    else:
        rows.append(["DICOM import", "no import record on the dataset"])
    rows.append(["Imported by", _who_text(d.get("imported_by") or [])])
    deid = d["deidentification"]
    rows.append(["Identifiers copied from DICOM", "yes" if deid["identifiers_copied"] else "no"])
    rows.append(["Study dates copied", "yes" if deid["study_dates_copied"] else "no"])
    return [
        _h2("dataset"),
        "<p class='src'>Source: the dataset, its import record and the audit log.</p>",
        _kv(rows),
        f"<p><b>De-identification.</b> {_e(deid['statement'])} "
        f"(Setting read from the {_e(deid['source'])}.)</p>",
    ]


def _html_readers(x: dict) -> list[str]:
    out = [
        _h2("readers"),
        "<p class='src'>Source: the readers' label fields (each reader's labels are kept "
        "in their own field and never overwritten) and the label history.</p>",
    ]
    kinds = list(dict.fromkeys(m["kind"] for rd in x["readers"] for m in rd["fields"].values()))
    kind_names = {"classification": "Class calls", "boxes": "Boxes", "mask": "Masks",
                  "series": "Series calls"}  # fmt: skip
    rows = []
    for rd in x["readers"]:
        by_kind = {m["kind"]: (f, m["n_reads"]) for f, m in rd["fields"].items()}
        rows.append(
            [rd["reader"]]
            + [f"{by_kind[k][1]} ({by_kind[k][0]})" if k in by_kind else "-" for k in kinds]
            + [", ".join(rd.get("sessions") or []) or "-"]
        )
    out.append(
        "<p>Images read by each reader, per label type (the field holding the labels in "
        "brackets), and the reading sessions their class calls were made in.</p>"
    )
    out.append(
        _table(
            ["Reader"] + [kind_names.get(k, k) for k in kinds] + ["Reading sessions"],
            rows,
            "num",
        )
    )
    if x.get("imported_by"):
        out.append(f"<p>Reader labels imported by: {_e(_who_text(x['imported_by']))}.</p>")
    revs = x.get("revisions") or []
    if revs:
        out.append(
            f"<h3>Label revisions and adjudications after import ({len(revs)})</h3>"
            "<p>The original label of each is kept in the label history.</p>"
        )
        out.append(
            _table(
                ["When (UTC)", "Who", "Sample", "Field", "Version", "Kind", "Reason"],
                [
                    [
                        v["time"],
                        v["user"],
                        v["sample_id"],
                        v["field"],
                        v["version"],
                        v["kind"],
                        v["reason"],
                    ]
                    for v in revs
                ],  # fmt: skip
            )
        )
    else:
        out.append("<p>No label was revised or adjudicated after import.</p>")
    return out


def _html_agreement(a: dict) -> list[str]:
    out = [_h2("agreement")]
    if not a.get("available"):
        return out + [_note(a)]
    out.append(
        f"<p class='src'>Source: agreement run <code>{_e(a['run_key'])}</code>, created "
        f"{_e(_t(a['created_at']))} UTC; run by {_e(_who_text(a.get('run_by') or []))}.</p>"
    )
    if a.get("overall"):
        b = a["bootstrap"]
        out.append(
            f"<p>All readers together, on {a.get('n_items')} images read by at least two "
            f"readers. {b['level']:.0%} CIs from {b['n_boot']} bootstrap resamples of "
            f"{_e(b['unit'])}s.</p>"
        )
        out.append(
            _table(
                ["Statistic (all readers)", "Value [95% CI]", "n", "What it measures"],
                [[o["statistic"], fmt_ci(o), o.get("n"), o["definition"]] for o in a["overall"]],
                "num",
            )
        )
        iv = a.get("interval") or {"kind": "cases"}
        if iv.get("kind") == "cases":
            out.append(
                "<p>Intervals: cases random, readers fixed (the readers who read are "
                "treated as the only readers).</p>"
            )
        else:
            names = {k: v[0] for k, v in STATISTICS.items()}
            done = [names.get(k, k) for k, v in (iv.get("statistics") or {}).items() if v.get("ci")]
            out.append(
                f"<p>Intervals of {_e(', '.join(done) or 'no statistic')}: "
                f"{_e(iv.get('description'))}. The other statistics' intervals are over "
                "cases only (readers fixed).</p>"
            )
    if a.get("terms"):
        names = {k: v[0] for k, v in STATISTICS.items()}
        out.append(
            "<h3>What n means</h3><p>The items and reads behind each statistic's two "
            "terms. Fleiss' kappa and Gwet's AC take observed agreement over the images "
            "read at least twice and chance agreement from every read, single reads "
            "included; with the same number of reads on every image the two coincide "
            "(Fleiss 1971). Krippendorff's alpha uses the pairable reads for both.</p>"
        )
        out.append(
            _table(
                ["Statistic", "Agreement term: images", "reads", "Chance term: images", "reads"],
                [
                    [
                        names.get(t["key"], t["key"]),
                        t["agreement_items"],
                        t["agreement_reads"],
                        "-" if t["chance_items"] is None else t["chance_items"],
                        "-" if t["chance_reads"] is None else t["chance_reads"],
                    ]
                    for t in a["terms"]
                ],
                "num",
            )  # fmt: skip
        )
    for kind in ("mask", "boxes"):
        if a.get(f"{kind}_overall"):
            o = a[f"{kind}_overall"]
            n = f", n = {o['n']}" if o.get("n") is not None else ""
            out.append(f"<p>{_e(o['label'])}: {_e(fmt_ci(o))}{_e(n)}.</p>")
    if a.get("pairwise_kappa"):
        out.append(
            "<h3>Cohen's kappa between every two readers</h3>"
            "<p>Each cell compares two readers on the images both read. Blue is agreement "
            "beyond chance, white chance level, red worse than chance.</p>"
        )
        out.append(
            "<div class='wide'>" + _heatmap_svg(a["readers"], a["pairwise_kappa"]) + "</div>"
        )
        out.append(
            _table(
                ["Readers", "Cohen's kappa [95% CI]", "n (images both read)"],
                [[" vs ".join(p["readers"]), fmt_ci(p), p["n"]] for p in a.get("pairwise", [])],
                "num",
            )
        )
    if a.get("per_class"):
        out.append(
            "<h3>By class</h3><p>Fleiss' kappa of each class against all the others: how "
            "well readers agree on whether an image is that class.</p>"
        )
        out.append(
            _table(
                ["Class", "Fleiss' kappa [95% CI]", "n"],
                [[c["class"], fmt_ci(c), c.get("n")] for c in a["per_class"]],
                "num",
            )
        )
    if a.get("subgroups"):
        out.append(
            "<h3>By subgroup</h3><p>Fleiss' kappa of all readers within each subgroup, "
            "recomputed from the labels for this report, with 95% CIs over patients. A "
            "subgroup whose interval lies well below the others is where labels are least "
            "reliable.</p>"
        )
        out.append("<div class='wide'>" + _forest_svg(a["subgroups"]) + "</div>")
        out.append(
            _table(
                [
                    "Subgroup",
                    "Value",
                    "Fleiss' kappa [95% CI]",
                    "Krippendorff's alpha [95% CI]",
                    "n images",
                    "n patients",
                ],  # fmt: skip
                [
                    [
                        s.get("field_label") or s["field"],
                        s["group"],
                        fmt_ci(s),
                        fmt_ci(s.get("krippendorff_alpha_nominal")),
                        s["n"],
                        s.get("n_patients"),
                    ]
                    for s in a["subgroups"]
                ],  # fmt: skip
                "num",
            )
        )
    return out


def _html_contested(c: dict) -> list[str]:
    out = [_h2("contested")]
    if not c.get("available"):
        return out + [_note(c)]
    rest = (
        f" The other {c['not_shown']} are counted but not listed; the App's 'contested' "
        "view shows them all."
        if c["not_shown"]
        else ""
    )
    out.append(
        f"<p>A contested case is {_e(c['definition'])} <b>{c['n_contested']}</b> of {c['n_samples']} images "
        f"are contested. The {c['shown']} most disputed (highest disagreement score) are "
        f"listed with every reader's label and the consensus "
        f"(<code>{_e(c['consensus_field'] or 'none yet')}</code>).{_e(rest)}</p>"
    )
    fields = c.get("reader_fields") or (list(c["rows"][0]["labels"]) if c["rows"] else [])
    out.append(
        "<div class='wide'>"
        + _table(
            ["#", "Image file", "Disagreement"]
            + [f.removeprefix("reader_").upper() for f in fields]
            + ["Consensus"],
            [
                [k + 1, x["file"], fmt_num(x["disagreement"])]
                + [x["labels"].get(f) or "-" for f in fields]
                + [x["consensus"] or "-"]
                for k, x in enumerate(c["rows"])
            ],
            "num",
        )
        + "</div>"
    )
    return out


def _html_consensus(s: dict) -> list[str]:
    out = [_h2("consensus")]
    if not s.get("available"):
        return out + [_note(s)]
    out.append(
        f"<p>Method <b>{_e(METHOD_NAMES.get(s['method'], s['method']))}</b> on the {_e(s.get('kind'))} labels of readers "
        f"{_e(', '.join(s.get('readers_used') or []))}, written to "
        f"<code>{_e(s['output_field'])}</code> beside the readers' labels (never over them).</p>"
        f"<p class='src'>Source: consensus run <code>{_e(s['run_key'])}</code>, created "
        f"{_e(_t(s['created_at']))} UTC; run by {_e(_who_text(s['run_by']))}."
        + (
            f" Other consensus runs stored: {_e(', '.join(s['other_runs']))}."
            if s.get("other_runs")
            else ""
        )
        + "</p>"
    )
    if s.get("param_rows"):
        out.append(
            "<p>Parameters of the method:</p>"
            + _kv([[p["parameter"].replace("_", " "), p["value"]] for p in s["param_rows"]])
        )
    if s.get("convergence_text"):
        out.append(f"<p>{_e(s['convergence_text'])}</p>")
    for w in s.get("warnings") or []:
        out.append(f"<p class='note'><b>Warning:</b> {_e(w)}</p>")
    if not s["readers"]:
        out.append("<p class='note'>No reader profiles stored with this run.</p>")
        return out
    out.append(
        "<h3>Each reader against the consensus</h3>"
        + _table(
            [
                "Reader",
                "Reads",
                "Accuracy vs consensus",
                "Cohen's kappa vs consensus (n)",
                "Drift across sessions: p (Holm)",
                _scale_header(s["readers"]),
            ],  # fmt: skip
            [
                [
                    x["reader"],
                    x["n_reads"],
                    fmt_pct(x["accuracy_vs_consensus"]),
                    f"{fmt_num(x['kappa_vs_consensus'])} (n={x.get('kappa_n')})",
                    fmt_p((x.get("drift") or {}).get("p_holm")),
                    _scale_cell(x),
                ]
                for x in s["readers"]
            ],  # fmt: skip
            "num",
        )
    )
    if s["flags"]:
        out.append(
            f"<p><b>Readers flagged</b> (significance level {_e(s.get('alpha') or 0.05)}, "
            "Holm-corrected):</p>"
        )
        out.append(
            _table(
                ["Reader", "Flag", "p (Holm)", "Finding"],
                [
                    [f.get("reader"), f.get("kind"), fmt_p(f.get("p_holm")), f.get("detail")]
                    for f in s["flags"]
                ],  # fmt: skip
            )
        )
    else:
        out.append(
            "<p>No reader flagged for prevalence bias, "
            + ("a shift along the ordered scale" if any(x.get("ordinal_bias") for x in s["readers"])
               else "call rates unlike the consensus's")
            + " or drift.</p>"
        )  # fmt: skip
    classes = s.get("classes") or []
    prev_rows = []
    for x in s["readers"]:
        for c in classes:
            p = (x.get("prevalence") or {}).get(c) or {}
            prev_rows.append(
                [x["reader"], c, fmt_pct(p.get("rate")), fmt_pct(p.get("consensus_rate")),
                 fmt_pct(p.get("others_rate")), fmt_p(p.get("p_holm")),
                 "yes" if p.get("flagged") else ""]
            )  # fmt: skip
    if prev_rows:
        out.append(
            "<h3>Prevalence: how often each reader calls each class</h3>"
            "<p>On the images the reader read: the reader's rate, the consensus rate and "
            "the other readers' rate, with the sign test's Holm-corrected p.</p>"
        )
        out.append(
            _table(
                [
                    "Reader",
                    "Class",
                    "Reader's rate",
                    "Consensus rate",
                    "Other readers' rate",
                    "p (Holm)",
                    "Flagged",
                ],  # fmt: skip
                prev_rows,
                "num",
            )
        )
    drift_rows = [
        [x["reader"]]
        + [
            f"{d['session']}: {fmt_pct(d.get('agreement'))} (n={d.get('n')})"
            for d in (x.get("drift") or {}).get("sessions") or []
        ]  # fmt: skip
        for x in s["readers"]
    ]
    if any(len(r) > 1 for r in drift_rows):
        width = max(len(r) for r in drift_rows)
        out.append(
            "<h3>Agreement with the consensus by reading session</h3>"
            + _table(
                ["Reader"] + [f"Session {k}" for k in range(1, width)],
                [r + [""] * (width - len(r)) for r in drift_rows],
                "num",
            )
        )
    if classes and any(x.get("confusion") for x in s["readers"]):
        out.append(
            "<h3>Confusion against the consensus</h3><p>Rows: the reader's call; "
            "columns: the consensus. The diagonal is agreement.</p>"
        )
        for x in s["readers"]:
            if x.get("confusion"):
                out.append(f"<p><b>{_e(x['reader'])}</b></p>")
                out.append(
                    _table(
                        ["reader \\ consensus"] + classes,
                        [[c] + row for c, row in zip(classes, x["confusion"], strict=False)],
                        "num",
                    )
                )
    return out


def _scale_header(readers: list[dict]) -> str:
    if any(x.get("ordinal_bias") for x in readers):
        return "Shift along the ordered scale, levels [95% CI] (n; Wilcoxon p, Holm)"
    return "Call rates vs consensus: Stuart-Maxwell chi2 (n; p, Holm)"


def _scale_cell(x: dict) -> str:
    """The reader's scale test: the ordinal level shift against the other readers'
    median, or Stuart-Maxwell marginal homogeneity against the consensus."""
    ob, mh = x.get("ordinal_bias"), x.get("marginal_homogeneity")
    if ob:
        ci = ob.get("shift_ci") or [None, None]
        return (
            f"{fmt_num(ob.get('shift'))} [{fmt_num(ci[0])}, {fmt_num(ci[1])}] "
            f"(n={ob.get('n_items')}; {fmt_p(ob.get('p_holm'))})"
            + (" flagged" if ob.get("flagged") else "")
        )
    if mh:
        return (
            f"{fmt_num(mh.get('statistic'))} on {mh.get('df')} df "
            f"(n={mh.get('n_items')}; {fmt_p(mh.get('p_holm'))})"
            + (" flagged" if mh.get("flagged") else "")
        )
    return "-"


def _ml(v) -> str:
    """A volume or volume difference in mL: tiny lesions need more than 2 decimals."""
    return fmt_num(v, 3, significant=True)


def _ml_ci(value, ci) -> str:
    if value is None:
        return fmt_num(None)
    if not ci or None in ci:
        return _ml(value)
    return f"{_ml(value)} [{_ml(ci[0])}, {_ml(ci[1])}]"


def _html_lesions(x: dict) -> list[str]:
    out = [_h2("lesions")]
    if not x.get("available"):
        return out + [_note(x)]
    d = {k: v["definition"] for k, v in x["definitions"].items()}
    names = {k: v["name"] for k, v in x["definitions"].items()}
    level = f"{x['level']:.0%}"
    tol = x.get("nsd_tolerance_mm")
    what = (
        "one of the reader's own instance labels (SEG segment, RTSTRUCT ROI, label value)"
        if x.get("instances") == "labels"
        else f"a 3-D connected component of a reader's mask ({x.get('connectivity')}-connectivity)"
    )
    out.append(
        f"<p class='src'>Source: lesion run <code>{_e(x['run_key'])}</code>, created "
        f"{_e(_t(x['created_at']))} UTC; run by {_e(_who_text(x.get('run_by') or []))}.</p>"
        f"<p>Readers {_e(', '.join(x['readers']))}: <b>{_e(x['n_lesions'])}</b> lesions in "
        f"{_e(x['n_series'])} series of {_e(x['n_patients'])} patients. Each reader's "
        f"outlines of a series are read as one 3-D volume; a lesion is {_e(what)}, and "
        f"lesions are matched across readers when {_e(x['match'])}. {level} CIs from "
        f"{_e(x['n_boot'])} bootstrap resamples of patients.</p>"
    )
    out.append(
        "<h3>Who found each lesion</h3>"
        + _table(
            ["Found by", "Lesions"],
            [[f"{f['k']} of {f['n_readers']} readers", f["n_lesions"]] for f in x["found_by"]],
            "num",
        )
    )
    fk = x["fleiss_kappa_found"]
    out.append(
        _table(
            ["Statistic (all readers)", "Value [95% CI]", "n lesions", "What it measures"],
            [
                [
                    names["found_by_k"],
                    ", ".join(f"{f['n_lesions']} by {f['k']}" for f in x["found_by"]),
                    x["n_lesions"],
                    d["found_by_k"],
                ],
                [
                    names["fleiss_kappa_found"],
                    fmt_ci(fk) if fk.get("value") is not None else fk.get("note") or fmt_ci(None),
                    fk.get("n"),
                    d["fleiss_kappa_found"],
                ],
            ],  # fmt: skip
            "num",
        )
    )
    if x["detection"]:
        out.append(
            "<h3>Detection between every two readers</h3><p>One-to-one matches of each "
            "pair's lesions on the series both read; the first reader of the pair is the "
            "reference.</p>"
            + _table(
                [
                    "Readers",
                    "Detection F1 [95% CI]",
                    "Sensitivity [95% CI]",
                    "PPV [95% CI]",
                    "Lesions (first, second)",
                    "Matched",
                ],
                [
                    [
                        p["pair"],
                        fmt_ci(p["f1"]),
                        fmt_ci(p["sensitivity"]),
                        fmt_ci(p["ppv"]),
                        _plain(p.get("n_lesions") or []),
                        p.get("matched"),
                    ]
                    for p in x["detection"]
                ],
                "num",
            )  # fmt: skip
        )
    if x["boundary"]:
        out.append(
            "<h3>Boundaries of the lesions both readers found</h3><p>Mean over the pair's "
            f"matched lesions, in millimetres; NSD at a tolerance of {_e(tol)} mm.</p>"
            + _table(
                [
                    "Readers",
                    "n lesions",
                    "Dice [95% CI]",
                    "IoU [95% CI]",
                    "HD95 mm [95% CI]",
                    "ASSD mm [95% CI]",
                    f"NSD at {tol} mm [95% CI]",
                ],
                [
                    [b["pair"], b["n"]]
                    + [fmt_ci(b.get(m)) for m in ("dice", "iou", "hd95", "assd", "nsd")]
                    for b in x["boundary"]
                ],
                "num",
            )  # fmt: skip
        )
    v = x["volume"]
    out.append(
        "<h3>Lesion volumes</h3><p>Volumes in mL of the lesions the readers outlined; ICC on "
        f"the {_e(v.get('n_complete'))} lesions every reader outlined.</p>"
    )
    if v["icc"]:
        out.append(
            _table(
                ["ICC form", "Value [95% CI]", "n lesions"],
                [[i["form"], fmt_ci(i), i.get("n")] for i in v["icc"]],
                "num",
            )
        )
    else:
        out.append(f"<p class='note'>Volume ICC not available: {_e(v.get('icc_note'))}</p>")
    ba = [
        [b["pair"], _ml_ci(b.get("bias"), b.get("bias_ci")),
         f"{_ml(b.get('loa_low'))} to {_ml(b.get('loa_high'))}", b.get("n")]
        if b.get("bias") is not None
        else [b["pair"], b.get("note") or fmt_num(None), "", b.get("n")]
        for b in v["bland_altman"]
    ]  # fmt: skip
    if ba:
        out.append(
            _table(
                [
                    "Readers (first - second)",
                    "Bias mL [95% CI]",
                    "95% limits of agreement mL",
                    "n lesions",
                ],
                ba,
                "num",
            )  # fmt: skip
        )
    cv = v.get("rms_cv") or {}
    out.append(
        _table(
            ["Statistic", "Value [95% CI]", "n lesions", "What it measures"],
            [[names["rms_cv"], fmt_ci(cv), cv.get("n"), d["rms_cv"]]],
            "num",
        )
    )
    out.append(
        "<h3>Each reader</h3>"
        + _table(
            [
                "Reader",
                "Lesions",
                "Found of the others' lesions",
                "Volume ratio (p Holm)",
                "Missed: small / large",
                "Flags",
            ],
            [
                [
                    p["reader"],
                    p["n_lesions"],
                    fmt_pct(p.get("sensitivity_vs_others")),
                    f"{fmt_num(p.get('volume_ratio'))} ({fmt_p(p.get('volume_ratio_p_holm'))})",
                    f"{p.get('missed_small')} / {p.get('missed_large')}",
                    ", ".join(p.get("flags") or []) or "-",
                ]
                for p in x["reader_profiles"]
            ],
            "num",
        )  # fmt: skip
    )
    if x["flagged"]:
        out.append(
            "<p><b>Readers flagged:</b> "
            + _e("; ".join(f"{f['reader']} ({', '.join(f['flags'])})" for f in x["flagged"]))
            + ".</p>"
        )
    else:
        out.append("<p>No reader flagged for larger or smaller volumes or missed lesions.</p>")
    out.append(
        "<h3>What each statistic measures</h3>"
        + _table(["Statistic", "Definition"], [[names[k], d[k]] for k in d])
    )
    return out


#: the columns of a model-vs-readers row (one per figure of merit, overall or per slice)
_MVR_HEADERS = (
    "Figure of merit",
    "Model",
    "Readers' mean",
    "Model - readers [95% CI]",
    "df (Hillis)",
    "p (model worse)",
    "n",
)


def _mvr_cells(x: dict) -> list:
    """One OR-Hillis model-vs-readers row's cells, 3 decimals (a note where it has none)."""
    if x.get("note"):
        return [x["fom"], "-", "-", "-", "-", "-", x["note"]]
    ci = x.get("ci") or [None, None]
    return [
        x["fom"],
        fmt_num(x.get("model"), 3),
        fmt_num(x.get("readers_mean"), 3),
        f"{fmt_num(x.get('difference'), 3)} [{fmt_num(ci[0], 3)}, {fmt_num(ci[1], 3)}]",
        fmt_num(x.get("df"), 1),
        fmt_p(x.get("p_noninferiority")),
        f"{x.get('n_readers')} readers x {x.get('n_cases')} cases",
    ]


def _html_model(m: dict) -> list[str]:
    out = [_h2("model")]
    if not m.get("available"):
        return out + [_note(m)]
    res = m["results"]
    out.append(
        f"<p><b>{_e(m['headline'])}</b></p><p>Predictions <code>{_e(res.get('pred_field'))}"
        f"</code> on {_e(res.get('n_predicted'))} of {_e(res.get('n_samples'))} images; "
        f"contested here means {_e(res.get('contested_definition'))} "
        f"({_e(res.get('n_contested'))} images). {res.get('level', 0.95):.0%} CIs from "
        f"{_e(res.get('n_boot'))} bootstrap resamples of {_e(res.get('resampling'))}.</p>"
        f"<p class='src'>Source: model evaluation run <code>{_e(m['run_key'])}</code>, created "
        f"{_e(_t(m['created_at']))} UTC; run by {_e(_who_text(m.get('run_by') or []))}.</p>"
    )
    out.append(_model_tables(m))
    if m.get("model_vs_readers"):
        out.append(
            "<h3>Model vs readers, readers and cases random</h3><p>"
            + _e(m.get("model_vs_readers_method") or "")
            + ". Truth: "
            + _e(m.get("model_vs_readers_truth") or "none")
            + ". The p-value tests &quot;the model is worse than the readers' mean&quot; "
            "(non-inferiority at the stated margin).</p>"
        )
        body = [_mvr_cells(x) for x in m["model_vs_readers"]]
        out.append(_table(list(_MVR_HEADERS), body, "num"))
    if m.get("model_vs_readers_slices"):
        out.append(
            "<h4>By subgroup</h4><p>The same comparison on each subgroup's cases alone "
            "(few cases or readers give wide intervals; a note says why a subgroup has none)."
            "</p>"
        )
        body = [
            [f"{x['slice']['field']} = {x['slice']['value']}", *_mvr_cells(x)]
            for x in m["model_vs_readers_slices"]
        ]
        out.append(_table(["Subgroup", *_MVR_HEADERS], body, "num"))
    return out


def _model_tables(m: dict) -> str:
    """Accuracy and kappa with CIs: against the consensus for all, contested and
    uncontested cases and every subgroup; against each reader for the first three (the
    readers' subgroups are in the JSON)."""
    cons, readers = m.get("against_consensus") or [], m.get("against_readers") or []
    out = ""
    if cons:
        out += "<h3>Against the consensus</h3>" + _model_rows(cons, slices=True)
    if readers:
        out += (
            "<h3>Against each reader</h3><p>Per-subgroup results against each reader are "
            "in the JSON file.</p>" + _model_rows(readers, slices=not cons)
        )
    return out


def _model_rows(rows: list[dict], slices: bool) -> str:
    body = []
    for x in rows:
        sl = x.get("slice")
        if sl is not None and not slices:
            continue
        subset = (
            x["subset"]
            if sl is None
            else f"{SUBGROUP_FIELDS.get(sl['field'], sl['field'])}: {sl['value']}"
        )
        body.append(
            [x["reference"], subset, x.get("n"), fmt_ci(x.get("accuracy")), fmt_ci(x.get("kappa"))]
        )
    return _table(
        ["Reference", "Cases", "n", "Accuracy [95% CI]", "Cohen's kappa [95% CI]"], body, "num"
    )


def _html_training(x: dict) -> list[str]:
    out = [_h2("training_sets")]
    t = x["training_sets"]
    if not t:
        out.append("<p class='note'>No frozen training sets: run 'Freeze training set'.</p>")
    else:
        out.append(
            f"<p>Each freeze records its samples and a hash of each of their labels. Every "
            f"freeze was verified again when this report was generated ({_e(_t(x['verified_at']))} UTC"
            "): unchanged means the same samples with the same labels, and an intact "
            "record.</p>"
        )
        rows = []
        for f in t:
            v = f["verification"]
            verdict = (
                "unchanged"
                if v["ok"]
                else f"{v['relabelled_samples']} relabelled, {v['removed']} removed, "
                f"{v['added']} added" + ("" if v["freeze_hash_ok"] else "; FREEZE RECORD ALTERED")
            )
            cons = f.get("consensus") or {}
            rows.append(
                [f["name"], f["model"], f["created"], f["user"], f["n_samples"],
                 ", ".join(f.get("label_fields") or []),
                 f"{cons.get('method') or '-'} ({cons.get('field') or '-'})",
                 verdict, f["freeze_hash"][:16] + "..."]
            )  # fmt: skip
        out.append(
            _table(
                [
                    "Name",
                    "Model",
                    "Frozen (UTC)",
                    "By",
                    "Samples",
                    "Label fields",
                    "Consensus",
                    "Verified now",
                    "Freeze hash",
                ],  # fmt: skip
                rows,
            )
        )
    if x.get("deleted"):
        out.append(
            _table(
                ["Deleted freeze", "By", "When", "Reason"],
                [
                    [d.get("name"), d.get("user"), d.get("time"), d.get("reason")]
                    for d in x["deleted"]
                ],  # fmt: skip
            )
        )
    return out


def _html_audit(g: dict) -> list[str]:
    v = g["verification"]
    out = [_h2("audit_log")]
    if v["ok"]:
        out.append(
            f"<p class='ok'>Hash chain verified: {v['n_entries']} entries, unbroken.</p>"
            f"<p>Head hash <code>{_e(v['head_hash'])}</code>. Keep this value somewhere "
            "else: a later report with a different history under the same head would show "
            "a rewrite of the whole log.</p>"
        )
    else:
        out.append(
            "<p class='bad'>The hash chain is broken:</p><ul>"
            + "".join(f"<li>{_e(p['message'])}</li>" for p in v["problems"])
            + "</ul>"
        )
    if not g["n_entries"]:
        out.append("<p class='note'>The audit log of this dataset is empty.</p>")
        return out
    shown = (
        f"All {g['n_entries']} entries"
        if g["shown"] == g["n_entries"]
        else f"The newest {g['shown']} of {g['n_entries']} entries (all are in the chain "
        "verified above)"
    )
    out.append(f"<p>{shown}, oldest first; times in UTC.</p>")
    rows = []
    for e in g["entries"]:
        wrote = e.get("wrote") or {}
        written = sum((wrote.get(k) or [] for k in ("new_fields", "new_runs", "named_outputs",
                                                   "fields")), [])  # fmt: skip
        rows.append(
            [e["seq"], e["time"], e["user"], e["action"],
             (e.get("status") or "") + (f": {e['error']}" if e.get("error") else ""),
             ", ".join(dict.fromkeys(map(str, written)))[:200],
             ", ".join(f"{k}={val}" for k, val in (e.get("counts") or {}).items())[:160]]
        )  # fmt: skip
    out.append(
        "<div class='wide'>"
        + _table(["#", "Time (UTC)", "Who", "Operation", "Status", "Wrote", "Counts"], rows)
        + "</div>"
    )
    return out


# --- RECIST response agreement --------------------------------------------------------

#: what a row of the RECIST run's ``followups`` table is, in the report's words
_RECIST_ROW_NAMES = {
    "all": "all follow-ups pooled",
    "best_overall_response": "best overall response",
}


def _recist_section(dataset) -> dict:
    """Response agreement per follow-up, the discordance rate and the adjudications, from
    the newest stored RECIST run (:class:`multireader.analyses.recist.RecistAgreementResults`)."""
    from multireader.analyses.recist import RecistAgreementResults
    from multireader.errors import MultireaderError

    res = RecistAgreementResults.newest(dataset)
    if res is None:
        return {
            "available": False,
            "note": _NOT_AVAILABLE.format(op="Compute RECIST agreement"),
        }
    r = res.results
    followups = []
    for row in res.rows("followups"):
        k = str(row["timepoint"])
        followups.append(
            {
                "timepoint": k,
                "label": _RECIST_ROW_NAMES.get(k, f"follow-up {k}"),
                "n": row["n"],
                "percent_agreement": row["percent_agreement"],
                "fleiss_kappa": row["fleiss_kappa"],
                "discordance_rate": row["discordance_rate"],
            }
        )
    readers = res.readers
    adjudications = []
    for a in res.rows("adjudications"):
        calls = dict.fromkeys(readers)
        try:
            prow = res.patient(a["patient"])
            k = prow["timepoints"].index(int(a["timepoint"])) - 1
        except (KeyError, ValueError, MultireaderError):
            k, prow = -1, None
        if prow is not None and k >= 0:
            calls = {
                w: (None if x is None else x["responses"][k]) for w, x in prow["readers"].items()
            }
        adjudications.append(
            {
                "patient": a["patient"],
                "timepoint": a["timepoint"],
                "readers_calls": calls,
                "response": a.get("response"),
                "adjudicator": a.get("adjudicator"),
                "at": a.get("at"),
                "reason": a.get("reason"),
            }
        )
    done = {(a["patient"], a["timepoint"]) for a in adjudications}
    listed = r.get("discordant") or []
    pooled = next((f for f in followups if f["timepoint"] == "all"), None)
    return {
        "available": True,
        "run_key": res.run_key,
        "created_at": res.created_at,
        "run_by": _who(dataset, "compute_recist_agreement"),
        "adjudicated_by": _who(dataset, "adjudicate_response"),
        "readers": readers,
        "n_patients": r.get("n_patients"),
        "n_followups": r.get("n_followups"),
        "n_patient_timepoints": r.get("n_patient_timepoints"),
        "level": r.get("level"),
        "n_boot": r.get("n_boot"),
        "ne": r.get("ne"),
        "followups": followups,
        "discordance_rate": None if pooled is None else pooled["discordance_rate"],
        "n_discordant": r.get("n_discordant"),
        "n_discordant_patients": r.get("n_discordant_patients"),
        "n_awaiting": sum(1 for d in listed if (d["patient"], d["timepoint"]) not in done)
        + max(0, (r.get("n_discordant") or 0) - len(listed)),
        "pairs": res.rows("pairs"),
        "bor_distribution": r.get("bor_distribution"),
        "adjudications": adjudications,
    }


def _recist_summary(x: dict) -> str:
    if not x.get("available"):
        return x["note"]
    return (
        f"{x['n_patients']} patients, {x['n_discordant']} discordant calls (discordance rate "
        f"{fmt_ci(x['discordance_rate'])}), {len(x['adjudications'])} adjudicated"
    )


def _html_recist(x: dict) -> list[str]:
    out = [_h2("recist")]
    if not x.get("available"):
        return out + [_note(x)]
    pct = int(round(100 * float(x.get("level") or 0.95)))
    ne = (
        "a not-evaluable (NE) call is a category of its own"
        if x.get("ne") == "class"
        else "not-evaluable (NE) calls are left out"
    )
    out.append(
        f"<p>From RECIST run <b>{_e(x['run_key'])}</b> (created {_e(_t(x['created_at']))} "
        f"UTC; run by {_e(_who_text(x['run_by']))}): each reader's RECIST 1.1 response at "
        f"every follow-up of {_e(x['n_patients'])} patients, readers "
        f"{_e(', '.join(x['readers']))}. Intervals are {pct}% percentile bootstraps over "
        f"patients ({_e(x['n_boot'])} resamples); {ne}. A discordance is a "
        "patient-timepoint where the readers' calls differ: what a trial sends to "
        "adjudication. Patients are named by their salted pseudonym only.</p>"
    )
    out.append(
        _kv(
            [
                ["Discordance rate, all follow-ups [95% CI]", fmt_ci(x["discordance_rate"])],
                ["Discordant patient-timepoints", x["n_discordant"]],
                ["Patients with a discordant follow-up", x["n_discordant_patients"]],
                ["Adjudicated patient-timepoints", len(x["adjudications"])],
                ["Discordant, awaiting adjudication", x["n_awaiting"]],
            ]
        )
    )
    out.append(
        "<h3>Response agreement per follow-up</h3>"
        + _table(
            [
                "Follow-up",
                "n",
                "Percent agreement [95% CI]",
                "Fleiss' kappa [95% CI]",
                "Discordance rate [95% CI]",
            ],
            [
                [
                    f["label"],
                    f["n"],
                    fmt_ci(f["percent_agreement"]),
                    fmt_ci(f["fleiss_kappa"]),
                    fmt_ci(f["discordance_rate"]),
                ]
                for f in x["followups"]
            ],
            "num",
        )
    )
    out.append(
        "<h3>Reader pairs</h3>"
        + _table(
            [
                "Readers",
                "Cohen's kappa, all follow-ups",
                "Target-lesion overlap (Jaccard) [95% CI]",
            ],
            [
                [p["pair"], fmt_num(p["cohen_kappa"]), fmt_ci(p["target_jaccard"])]
                for p in x["pairs"]
            ],
            "num",
        )
    )
    out.append("<h3>Adjudications</h3>")
    if not x["adjudications"]:
        out.append("<p class='note'>No discordant response has been adjudicated.</p>")
        return out
    readers = x["readers"]
    out.append(
        "<div class='wide'>"
        + _table(
            ["Patient (pseudonym)", "Timepoint"]
            + [f"{w}'s call" for w in readers]
            + ["Adjudicated call", "Adjudicator", "When (UTC)", "Why"],
            [
                [a["patient"], a["timepoint"]]
                + [a["readers_calls"].get(w) or "-" for w in readers]
                + [a["response"], a["adjudicator"], a["at"], a["reason"]]
                for a in x["adjudications"]
            ],
        )
        + "</div>"
    )
    return out


def write_report(
    dataset,
    path_html: str,
    path_json: str | None = None,
    *,
    title: str | None = None,
    contested_limit: int = 100,
    audit_limit: int = 500,
    progress=None,
) -> tuple[str, str]:
    """Write the HTML and JSON report; returns ``(html_path, json_path)``. The JSON goes
    beside the HTML (same name, ``.json``) unless ``path_json`` is given."""
    report = build_report(
        dataset,
        title=title,
        contested_limit=contested_limit,
        audit_limit=audit_limit,
        progress=progress,
    )
    path_html = os.path.abspath(path_html)
    path_json = os.path.abspath(path_json or os.path.splitext(path_html)[0] + ".json")
    for p in (path_html, path_json):
        os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(path_html, "w", encoding="utf-8") as f:
        f.write(render_html(report))
    with open(path_json, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=str)
    return path_html, path_json
