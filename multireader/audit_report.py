"""An audit report an auditor can read: one self-contained HTML file and the same
content as JSON, built from what the database already holds (stored runs, the label
history, frozen training sets, the audit log), with nothing kept by hand.

The HTML is rendered from the JSON document, so the two cannot disagree. Plots are
inline SVG; the file loads nothing from anywhere. No patient identifier is written:
only the dataset's salted ``patient_key`` pseudonyms are counted, never listed.

Sections (ids in the HTML): ``dataset``, ``readers``, ``agreement``, ``contested``,
``consensus``, ``model``, ``training_sets``, ``audit_log``. A section whose source is
missing says which operator produces it.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os

from . import __version__, audit, runs

SECTIONS = [
    ("dataset", "1. Dataset and provenance"),
    ("readers", "2. Readers and their reads"),
    ("agreement", "3. Inter-reader agreement"),
    ("contested", "4. Contested cases"),
    ("consensus", "5. Consensus and reader profiles"),
    ("model", "6. Model performance"),
    ("training_sets", "7. Frozen training sets"),
    ("audit_log", "8. Audit log"),
]
GLOSSARY = {
    "Cohen's kappa": "agreement of two readers beyond what chance alone would give: "
    "1 perfect, 0 chance level, below 0 worse than chance (Cohen 1960).",
    "Fleiss' kappa": "the same idea for all readers at once (Fleiss 1971).",
    "Krippendorff's alpha": "all-reader agreement that tolerates missing reads; the "
    "ordinal form counts near-misses on an ordered scale as partial agreement "
    "(Krippendorff 2011).",
    "Gwet's AC1": "an all-reader agreement coefficient less affected by rare classes (Gwet 2008).",
    "95% CI": "the range that, by bootstrap resampling of patients, holds the value "
    "with 95% confidence.",
    "Contested case": "an image on which no class got at least 75% of its readers' "
    "votes (a tie or a split).",
    "Dawid-Skene consensus": "a consensus that weighs each reader by their estimated "
    "accuracy per class, learned from all readers' labels (Dawid & Skene 1979).",
}
_NOT_AVAILABLE = "Not available: run '{op}' first."


def _num(v, digits=2):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _p(v) -> str:
    return "n/a" if v is None else f"{v:.2g}"


def _ci(e: dict | None) -> str:
    """``0.52 [0.47, 0.57]`` for a stored ``{"value", "ci"}`` (as the panels print it)."""
    from .panel_data import fmt_ci

    return fmt_ci((e or {}).get("value"), (e or {}).get("ci"))


def _newest(dataset, kind: str):
    best, t = None, ""
    for key in runs.list_runs(dataset, kind):
        try:
            r = runs.load(dataset, key)
        except Exception:
            continue
        created = str((r.get("config") or {}).get("created_at") or "")
        if best is None or created >= t:
            best, t = (key, r), created
    return best


# --- sections -----------------------------------------------------------------------


def _dataset_section(dataset) -> dict:
    from .fields import reader_fields

    n = len(dataset)
    counts = {}
    for f, label in (("patient_key", "patients"), ("study_uid", "studies"),
                     ("series_uid", "series")):  # fmt: skip
        if dataset.has_field(f):
            counts[label] = len(dataset.distinct(f))
    info = dict(dataset.info or {})
    prov = info.get("multireader") or {}
    return {
        "name": dataset.name,
        "n_samples": n,
        "counts": counts,
        "created_at": str(dataset.created_at) if dataset.created_at else None,
        "import": {k: v for k, v in prov.items() if k not in ("salt",)} if prov else None,
        "n_reader_fields": len(reader_fields(dataset)),
        "identifiers": "Patient identifiers are not stored unless the importer was asked "
        "to; patients are grouped by a salted pseudonymous key, counted here, never listed.",
    }


def _readers_section(dataset) -> dict:
    from .fields import reader_fields

    found = reader_fields(dataset)
    rows = {}
    paths = sorted(found)
    for f, v in zip(paths, dataset.values(paths), strict=True) if paths else []:
        meta = found[f]
        r = rows.setdefault(str(meta["reader"]), {"reader": str(meta["reader"]), "fields": {}})
        r["fields"][f] = {"kind": meta["kind"], "n_reads": sum(x is not None for x in v)}
    sessions = {}
    for f in [f for f in paths if found[f]["kind"] == "classification"]:
        if dataset.has_field(f"{f}.session"):
            sessions[str(found[f]["reader"])] = sorted(
                s for s in dataset.distinct(f"{f}.session") if s is not None
            )
    for reader, s in sessions.items():
        rows[reader]["sessions"] = s
    return {"readers": list(rows.values())}


def _agreement_section(dataset) -> dict:
    found = _newest(dataset, "agreement")
    if found is None:
        return {"available": False, "note": _NOT_AVAILABLE.format(op="Compute agreement")}
    key, run = found
    cls = run["results"]["kinds"].get("classification")
    out = {"available": True, "run_key": key, "created_at": run["config"].get("created_at")}
    if cls:
        s = cls["summary"]
        names = {
            "percent_agreement": "Percent agreement",
            "fleiss_kappa": "Fleiss' kappa",
            "krippendorff_alpha_nominal": "Krippendorff's alpha (nominal)",
            "krippendorff_alpha_ordinal": "Krippendorff's alpha (ordinal)",
            "gwet_ac1": "Gwet's AC1",
        }
        out["overall"] = [
            {"statistic": label, **s["overall"][k]} for k, label in names.items()
            if k in s["overall"]
        ]  # fmt: skip
        out["n_items"] = s["n_items"]
        unit = {"group": "patient", "item": "image"}.get(s["bootstrap_unit"], s["bootstrap_unit"])
        out["bootstrap"] = {"n_boot": s["n_boot"], "unit": unit}
        out["readers"] = cls["readers"]
        out["classes"] = cls["classes"]
        out["pairwise_kappa"] = s["pairwise"]["cohen_kappa"]
        out["per_class"] = [
            {"class": c, **e} for c, e in zip(cls["classes"], s["per_class"]["fleiss_kappa"],
                                              strict=True)
        ]  # fmt: skip
    for kind, stat in (("mask", "mean_pairwise_dice"), ("boxes", "mean_pairwise_f1")):
        k = run["results"]["kinds"].get(kind)
        if k and stat in k.get("overall", {}):
            out[f"{kind}_overall"] = {"statistic": stat, **k["overall"][stat]}
    out["subgroups"] = _subgroups(dataset)
    return out


def _subgroups(dataset) -> list[dict]:
    """Fleiss' kappa with a patient-bootstrap CI within each value of each slice field."""
    from . import agreement as A
    from . import collect as C
    from .slice_confusion import default_bins, slice_codes, slice_fields

    try:
        rs = C.select_readers(dataset, "classification")
    except C.ReaderSelectionError:
        return []
    wanted = [f for f in ("manufacturer_model", "patient_sex", "patient_age_bin", "contrast")
              if f in slice_fields(dataset)]  # fmt: skip
    reads = C.categorical_reads(dataset, rs, scores=False, sessions=False, extra=wanted)
    out = []
    for f in wanted:
        values = reads.extra[f]
        bins = default_bins(values)
        codes, names, _ = slice_codes(values, bins)
        for k, name in enumerate(names):
            m = codes == k
            if m.sum() < 2:
                continue
            groups = reads.groups[m] if reads.groups is not None else None
            s = A.categorical_summary(
                reads.codes[m], len(reads.classes), n_boot=500, seed=0, groups=groups
            )
            out.append(
                {**s["overall"]["fleiss_kappa"], "field": f, "group": name, "n": int(m.sum())}
            )
    return out


def _contested_section(dataset, limit: int) -> dict:
    from fiftyone import ViewField as VF

    from .fields import reader_fields

    if not dataset.has_field("disagreement"):
        return {"available": False, "note": _NOT_AVAILABLE.format(op="Compute agreement")}
    cls = sorted(reader_fields(dataset, ["classification"]))
    view = (
        dataset.match(VF("majority_share") < 0.75)
        if dataset.has_field("majority_share")
        else dataset.match(VF("readers_disagree"))
    )  # noqa: E712
    view = view.sort_by("disagreement", reverse=True)
    cons = _newest(dataset, "consensus")
    cons_field = cons[1]["config"].get("output_field") if cons else None
    n = view.count()
    top = view.limit(limit)
    paths = ["id", "filepath", "disagreement"] + [f"{f}.label" for f in cls]
    if cons_field and dataset.has_field(cons_field):
        paths.append(f"{cons_field}.label")
    cols = dict(zip(paths, top.values(paths), strict=True))
    rows = []
    for i, sid in enumerate(cols["id"]):
        rows.append(
            {
                "sample_id": sid,
                "file": os.path.basename(cols["filepath"][i]),
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
        "consensus_field": cons_field,
        "rows": rows,
    }


def _consensus_section(dataset) -> dict:
    found = _newest(dataset, "consensus")
    if found is None:
        return {"available": False, "note": _NOT_AVAILABLE.format(op="Compute consensus labels")}
    key, run = found
    cfg = run["config"]
    ran = list(audit.entries(dataset, action="compute_consensus"))
    prof = (run["results"] or {}).get("profiles") or {}
    readers = []
    for r, p in (prof.get("per_reader") or {}).items():
        readers.append(
            {
                "reader": r,
                "n_reads": p.get("n_reads"),
                "accuracy_vs_consensus": p.get("accuracy"),
                "kappa_vs_consensus": p.get("kappa_vs_consensus"),
                "prevalence": p.get("prevalence"),
                "drift_p_holm": (p.get("drift") or {}).get("p_holm"),
            }
        )
    return {
        "available": True,
        "run_key": key,
        "method": cfg.get("algorithm"),
        "output_field": cfg.get("output_field"),
        "params": cfg.get("params"),
        "created_at": cfg.get("created_at"),
        "run_by": [{"user": e["user"], "time": e["time"]} for e in ran][-3:],
        "readers": readers,
        "flags": prof.get("flags") or [],
        "classes": prof.get("classes"),
    }


def _model_section(dataset) -> dict:
    found = _newest(dataset, "model_evaluation")
    if found is None:
        return {"available": False, "note": "No predictions evaluated: run 'Evaluate model'."}
    key, run = found
    res = run["results"]
    return {"available": True, "run_key": key, "created_at": run["config"].get("created_at"),
            "headline": res.get("headline"), "results": res}  # fmt: skip


def _training_section(dataset) -> dict:
    from . import lineage

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
                "consensus": h.get("consensus"),
                "freeze_hash": h["freeze_hash"],
                "verification": {
                    "ok": v["ok"],
                    "freeze_hash_ok": v["freeze_hash_ok"],
                    **v["counts"],
                },  # fmt: skip
            }
        )
    return {"training_sets": out}


def _audit_section(dataset, limit: int = 500) -> dict:
    v = audit.verify(dataset)
    entries = audit.entries(dataset)
    keep = entries[-limit:]
    return {
        "verification": v,
        "n_entries": len(entries),
        "entries": [
            {
                k: e.get(k)
                for k in (
                    "seq",
                    "time",
                    "user",
                    "action",
                    "status",
                    "error",
                    "counts",
                    "wrote",
                    "hash",
                )
            }  # fmt: skip
            for e in keep
        ],
    }


def build_report(dataset, *, title: str | None = None, contested_limit: int = 100,
                 progress=None) -> dict:  # fmt: skip
    """The report's content as a JSON-ready dict (every section present)."""
    dataset = getattr(dataset, "_dataset", dataset)
    steps = [
        ("dataset", lambda: _dataset_section(dataset)),
        ("readers", lambda: _readers_section(dataset)),
        ("agreement", lambda: _agreement_section(dataset)),
        ("contested", lambda: _contested_section(dataset, contested_limit)),
        ("consensus", lambda: _consensus_section(dataset)),
        ("model", lambda: _model_section(dataset)),
        ("training_sets", lambda: _training_section(dataset)),
        ("audit_log", lambda: _audit_section(dataset)),
    ]
    report = {
        "title": title or f"Audit report: {dataset.name}",
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "generated_by": audit.actor(),
        "plugin_version": __version__,
        "glossary": GLOSSARY,
    }
    for k, (name, fn) in enumerate(steps):
        report[name] = runs.jsonable(fn())
        if progress:
            progress((k + 1) / len(steps), f"{name} done")
    return report


# --- HTML ---------------------------------------------------------------------------


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kappa_colour(v) -> str:
    if v is None:
        return "#eeeeee"
    v = max(-1.0, min(1.0, float(v)))
    # diverging: red below 0 (worse than chance), white at 0, blue towards 1
    if v < 0:
        t = -v
        return f"rgb({int(255 - 77 * t)},{int(255 - 231 * t)},{int(255 - 212 * t)})"
    return f"rgb({int(255 - 222 * v)},{int(255 - 153 * v)},{int(255 - 83 * v)})"


def _heatmap_svg(readers: list[str], m: dict) -> str:
    R, cell, pad = len(readers), 64, 48
    size = pad + R * cell + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{max(size, 560)}" height="{size + 30}" '
             'role="img" aria-label="Pairwise Cohen kappa between readers">']  # fmt: skip
    for i, r in enumerate(readers):
        parts.append(
            f'<text x="{pad + i * cell + cell / 2}" y="{pad - 10}" text-anchor="middle" font-size="14">{_e(r)}</text>'
        )
        parts.append(
            f'<text x="{pad - 8}" y="{pad + i * cell + cell / 2 + 5}" text-anchor="end" font-size="14">{_e(r)}</text>'
        )
        for j in range(R):
            v = m["value"][i][j]
            label = "" if i == j else _num(v)
            colour = "#dddddd" if i == j else _kappa_colour(v)
            x, y = pad + j * cell, pad + i * cell
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell - 3}" height="{cell - 3}" fill="{colour}"/>'
            )
            parts.append(
                f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2 + 5}" text-anchor="middle" font-size="14">{label}</text>'
            )
    parts.append(
        f'<text x="{pad}" y="{size + 20}" font-size="12">Colour: red below 0 (worse than chance), white at 0, blue towards 1.</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _forest_svg(rows: list[dict]) -> str:
    if not rows:
        return ""
    w, left, row_h = 760, 330, 24
    h = 30 + row_h * len(rows)

    def x(v):
        return left + (max(-0.2, min(1.0, v)) + 0.2) / 1.2 * (w - left - 20)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 20}" role="img" aria-label="Fleiss kappa by subgroup">'
    ]
    for t in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(f'<line x1="{x(t)}" x2="{x(t)}" y1="10" y2="{h}" stroke="#ccc"/>')
        parts.append(
            f'<text x="{x(t)}" y="{h + 15}" text-anchor="middle" font-size="11">{t:g}</text>'
        )
    for k, r in enumerate(rows):
        y = 22 + k * row_h
        parts.append(
            f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" font-size="12">{_e(r["field"])} = {_e(r["group"])} (n={r["n"]})</text>'
        )
        ci = r.get("ci") or [None, None]
        if ci[0] is not None:
            parts.append(
                f'<line x1="{x(ci[0])}" x2="{x(ci[1])}" y1="{y}" y2="{y}" stroke="#2166ac" stroke-width="2"/>'
            )
        if r.get("value") is not None:
            parts.append(f'<circle cx="{x(r["value"])}" cy="{y}" r="4" fill="#2166ac"/>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.7em}
h2{border-bottom:2px solid #2166ac;padding-bottom:.2em;margin-top:2em}table{border-collapse:
collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f0f4f8}.ok{color:#1a7f37;font-weight:600}
.bad{color:#b2182b;font-weight:600}.note{color:#666;font-style:italic}code{font-size:.9em}
.kv td:first-child{font-weight:600;width:16em}"""


def render_html(r: dict) -> str:
    """The report as one self-contained HTML page (no scripts, no external resources)."""
    out = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(r['title'])}</title><style>{_CSS}</style></head><body>"
    ]
    out.append(f"<h1>{_e(r['title'])}</h1>")
    out.append(
        f"<p>Generated {_e(r['generated'])} by <b>{_e(r['generated_by'])}</b> with the multireader plugin {_e(r['plugin_version'])}, from the FiftyOne database alone. The same content is in the JSON file beside this one.</p>"
    )
    out.append(
        "<h2 id='how'>How to read this report</h2><p>Each section states where its numbers come from (a stored run, the label history, the audit log). Agreement values come with their 95% confidence interval and the number of items (n). Definitions of each statistic are in the glossary at the end.</p>"
    )
    d = r["dataset"]
    out.append(f"<h2 id='dataset'>{SECTIONS[0][1]}</h2>")
    rows = [["Dataset", d["name"]], ["Images (samples)", d["n_samples"]]]
    rows += [[k.capitalize(), v] for k, v in d["counts"].items()]
    rows += [["Created", d.get("created_at")], ["Reader label fields", d["n_reader_fields"]]]
    if d.get("import"):
        rows.append(["Import provenance", json.dumps(d["import"], default=str)[:600]])
    out.append(_table(["", ""], rows).replace("<table>", "<table class='kv'>"))
    out.append(f"<p>{_e(d['identifiers'])}</p>")

    out.append(f"<h2 id='readers'>{SECTIONS[1][1]}</h2>")
    out.append(_table(["Reader", "Label fields and reads", "Sessions"], [
        [x["reader"], "; ".join(f"{f} ({m['kind']}): {m['n_reads']}" for f, m in x["fields"].items()),
         ", ".join(x.get("sessions") or [])] for x in r["readers"]["readers"]]))  # fmt: skip

    a = r["agreement"]
    out.append(f"<h2 id='agreement'>{SECTIONS[2][1]}</h2>")
    if not a.get("available"):
        out.append(f"<p class='note'>{_e(a['note'])}</p>")
    else:
        out.append(
            f"<p>From the agreement run <code>{_e(a['run_key'])}</code> ({_e(a['created_at'])}), on {a.get('n_items')} images read by at least two readers; 95% CIs from {a['bootstrap']['n_boot']} bootstrap resamples of {_e(a['bootstrap']['unit'])}s.</p>"
        )
        out.append(_table(["Statistic (all readers)", "Value [95% CI]", "n"],
                          [[o["statistic"], _ci(o), o.get("n")] for o in a.get("overall", [])]))  # fmt: skip
        for kind in ("mask", "boxes"):
            if a.get(f"{kind}_overall"):
                o = a[f"{kind}_overall"]
                out.append(
                    f"<p>{'Masks' if kind == 'mask' else 'Boxes'}: {_e(o['statistic'].replace('_', ' '))} {_ci(o)}.</p>"
                )
        if a.get("pairwise_kappa"):
            out.append("<h3>Cohen's kappa between every two readers</h3>")
            out.append(_heatmap_svg(a["readers"], a["pairwise_kappa"]))
        if a.get("per_class"):
            out.append("<h3>By class (Fleiss' kappa of that class against the rest)</h3>")
            out.append(
                _table(["Class", "Value [95% CI]"], [[c["class"], _ci(c)] for c in a["per_class"]])
            )
        if a.get("subgroups"):
            out.append("<h3>By subgroup (Fleiss' kappa, 95% CI over patients)</h3>")
            out.append(_forest_svg(a["subgroups"]))
            out.append(_table(["Subgroup", "Value", "n images"],
                              [[f"{s['field']} = {s['group']}", _ci(s), s["n"]] for s in a["subgroups"]]))  # fmt: skip

    c = r["contested"]
    out.append(f"<h2 id='contested'>{SECTIONS[3][1]}</h2>")
    if not c.get("available"):
        out.append(f"<p class='note'>{_e(c['note'])}</p>")
    else:
        out.append(
            f"<p>{_e(c['definition'])} <b>{c['n_contested']}</b> of {c['n_samples']} images are contested; the {c['shown']} most disputed are listed.</p>"
        )
        fields = list(c["rows"][0]["labels"]) if c["rows"] else []
        out.append(_table(["Sample", "File", "Disagreement"] + fields + ["Consensus"], [
            [x["sample_id"], x["file"], _num(x["disagreement"])] + [x["labels"][f] for f in fields]
            + [x["consensus"]] for x in c["rows"]]))  # fmt: skip

    s = r["consensus"]
    out.append(f"<h2 id='consensus'>{SECTIONS[4][1]}</h2>")
    if not s.get("available"):
        out.append(f"<p class='note'>{_e(s['note'])}</p>")
    else:
        who = (
            "; ".join(f"{x['user']} at {x['time']}" for x in s["run_by"]) or "not in the audit log"
        )
        out.append(
            f"<p>Method <b>{_e(s['method'])}</b>, written to <code>{_e(s['output_field'])}</code> beside the readers' labels (never over them), run <code>{_e(s['run_key'])}</code> created {_e(s['created_at'])}; run by {_e(who)}. Parameters: <code>{_e(json.dumps(s['params'], default=str))}</code>.</p>"
        )
        out.append(_table(["Reader", "Reads", "Accuracy vs consensus", "Kappa vs consensus", "Drift p (Holm)"], [
            [x["reader"], x["n_reads"], _num(x["accuracy_vs_consensus"]),
             _num(x["kappa_vs_consensus"]) if not isinstance(x["kappa_vs_consensus"], dict)
             else _num(x["kappa_vs_consensus"].get("value")), _p(x["drift_p_holm"])]
            for x in s["readers"]]))  # fmt: skip
        if s["flags"]:
            out.append(
                "<p><b>Readers flagged:</b></p><ul>"
                + "".join(
                    f"<li>{_e(f.get('reader'))}: {_e(f.get('detail'))}</li>" for f in s["flags"]
                )
                + "</ul>"
            )
        else:
            out.append("<p>No reader flagged for bias or drift.</p>")

    m = r["model"]
    out.append(f"<h2 id='model'>{SECTIONS[5][1]}</h2>")
    if not m.get("available"):
        out.append(f"<p class='note'>{_e(m['note'])}</p>")
    else:
        out.append(
            f"<p>From run <code>{_e(m['run_key'])}</code> ({_e(m['created_at'])}): {_e(m['headline'])}</p>"
        )
        out.append(_model_tables(m["results"]))

    t = r["training_sets"]["training_sets"]
    out.append(f"<h2 id='training_sets'>{SECTIONS[6][1]}</h2>")
    if not t:
        out.append("<p class='note'>No frozen training sets: run 'Freeze training set'.</p>")
    else:
        out.append(_table(["Name", "Model", "Frozen", "By", "Samples", "Consensus", "Verified now"], [
            [x["name"], x["model"], x["created"], x["user"], x["n_samples"],
             (x.get("consensus") or {}).get("method"),
             "unchanged" if x["verification"]["ok"] else
             f"{x['verification']['relabelled_samples']} relabelled, {x['verification']['removed']} removed, {x['verification']['added']} added"
             + ("" if x["verification"]["freeze_hash_ok"] else "; RECORD ALTERED")]
            for x in t]))  # fmt: skip

    g = r["audit_log"]
    v = g["verification"]
    out.append(f"<h2 id='audit_log'>{SECTIONS[7][1]}</h2>")
    if v["ok"]:
        out.append(
            f"<p class='ok'>Hash chain verified: {v['n_entries']} entries, unbroken. Head hash <code>{_e(v['head_hash'])}</code> (keep it elsewhere to detect a rewrite of the whole log).</p>"
        )
    else:
        out.append(
            "<p class='bad'>The hash chain is broken:</p><ul>"
            + "".join(f"<li>{_e(p['message'])}</li>" for p in v["problems"])
            + "</ul>"
        )
    out.append(_table(["#", "Time (UTC)", "Who", "Operation", "Status", "Wrote", "Counts"], [
        [e["seq"], e["time"], e["user"], e["action"], e["status"] + (f": {e['error']}" if e.get("error") else ""),
         ", ".join(sum(((e.get("wrote") or {}).get(k) or [] for k in ("new_fields", "new_runs", "named_outputs")), []))[:200],
         ", ".join(f"{k}={val}" for k, val in (e.get("counts") or {}).items())[:160]]
        for e in g["entries"]]))  # fmt: skip

    out.append(
        "<h2 id='glossary'>Glossary</h2><dl>"
        + "".join(f"<dt><b>{_e(k)}</b></dt><dd>{_e(v)}</dd>" for k, v in r["glossary"].items())
        + "</dl>"
    )
    out.append("</body></html>")
    return "\n".join(out)


def _model_tables(res: dict) -> str:
    """Accuracy and kappa with CIs against each reference: all, contested and
    uncontested cases, then every slice value."""
    rows = []
    for ref, e in (res.get("references") or {}).items():
        name = e.get("label") or ref
        for subset in ("all", "contested", "uncontested"):
            cell = e.get(subset) or {}
            rows.append(
                [name, subset, cell.get("n"), _ci(cell.get("accuracy")), _ci(cell.get("kappa"))]
            )
        for field, values in (e.get("slices") or {}).items():
            for value, cell in values.items():
                rows.append([name, f"{field} = {value}", cell.get("n"),
                             _ci(cell.get("accuracy")), _ci(cell.get("kappa"))])  # fmt: skip
    return _table(["Against", "Cases", "n", "Accuracy [95% CI]", "Kappa [95% CI]"], rows)


def write_report(dataset, path_html: str, path_json: str | None = None, *,
                 title: str | None = None, contested_limit: int = 100, progress=None):  # fmt: skip
    """Write the HTML and JSON report; returns ``(html_path, json_path)``."""
    report = build_report(dataset, title=title, contested_limit=contested_limit,
                          progress=progress)  # fmt: skip
    path_json = path_json or os.path.splitext(path_html)[0] + ".json"
    os.makedirs(os.path.dirname(os.path.abspath(path_html)), exist_ok=True)
    with open(path_html, "w", encoding="utf-8") as f:
        f.write(render_html(report))
    with open(path_json, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=str)
    return path_html, path_json
