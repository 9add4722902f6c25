"""The audit report (issue 7, part C) on an analysed copy of the demo study: every
section in the JSON and the HTML, numbers equal to the stored runs and to independent
recounts, the contested list equal to a direct query, a self-contained file with no
patient identifier, the "not available" notes of an un-analysed dataset, and the file
opening in headless Chromium."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser

import helpers_lesions
import numpy as np
import pytest
from helpers_browser import ROOT, browser_missing
from helpers_plugin import op

from multireader.core import runs
from multireader.lineage import report as AR

lesion_study = helpers_lesions.lesion_study

# what multireader/io/demo.py writes into the DICOM headers (PatientName, PatientID)
DEMO_NAME = "DEMO^PATIENT^001"
DEMO_ID = "DEMO001"


def _read(path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def analysed(demo_dataset, tmp_path_factory):
    """Agreement, consensus, a label model and its evaluation, a freeze and one
    revision, through the operators; identifiers planted where an opted-in import keeps
    them; then the report through the operator."""
    ds = demo_dataset.clone(demo_dataset.name + "-report")
    op("compute_agreement")(ds, kinds=["classification"], n_boot=50)
    op("compute_consensus")(ds, method="dawid_skene")
    op("compute_embeddings")(ds, model="radiomics")
    fit = op("fit_label_model")(ds, "embedding_radiomics")
    op("evaluate_model")(ds, fit["field"], n_boot=50)
    op("freeze_training_set")(ds, name="v1", model_name="cnn", model_version="1")
    ids, r2 = ds.values(["id", "reader_r2.label"])
    sid = next(i for i, v in zip(ids, r2, strict=True) if v == "suspicious")
    op("revise_label")(ds, sample_id=sid, field="reader_r2", label="benign", reason="re-read")
    ds.set_values(
        "dicom_identifiers",
        [{"PatientName": DEMO_NAME, "PatientID": DEMO_ID}] * len(ds),
    )
    out = tmp_path_factory.mktemp("report")
    res = op("export_audit_report")(ds, path=str(out / "report.html"), contested_limit=20)
    yield {
        "ds": ds,
        "res": res,
        "report": json.loads(_read(res["json"])),
        "html": _read(res["html"]),
        "revised": sid,
    }
    ds.delete()


class _Tables(HTMLParser):
    """Rows of every table as lists of cell texts (the HTML as a reader sees it)."""

    def __init__(self):
        super().__init__()
        self.rows, self._row, self._cell = [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _rows(html_text: str) -> list[list[str]]:
    p = _Tables()
    p.feed(html_text)
    p.close()
    return p.rows


def test_every_section_in_json_and_html(analysed):
    report, text, res = analysed["report"], analysed["html"], analysed["res"]
    assert res["html"].endswith("report.html") and res["json"].endswith("report.json")
    assert [s["section"] for s in res["sections"]] == [t for _, t in AR.SECTIONS]
    for sid, title in AR.SECTIONS:
        assert sid in report, sid
        assert f"<h2 id='{sid}'>{title}</h2>" in text
        # the demo study has no lesion or RECIST run: those sections say what to run
        assert report[sid].get("available", True) is (sid not in ("lesions", "recist")), sid
    assert "<h2 id='how'>How to read this report</h2>" in text
    assert "<h2 id='glossary'>Glossary</h2>" in text
    for term in ("Fleiss' kappa", "Cohen's kappa", "95% CI", "Contested case"):
        assert f"<dt>{term}</dt>" in text.replace("&#x27;", "'")
    # who generated it, and when (as the report prints times: short, UTC)
    assert report["generated_by"] and f"Generated {AR._t(report['generated'])} UTC" in text


def test_numbers_equal_the_stored_runs(analysed):
    ds, report, text = analysed["ds"], analysed["report"], analysed["html"]
    stored = runs.load(ds, "agreement")["results"]["kinds"]["classification"]["summary"]
    rows = _rows(text)
    for o in report["agreement"]["overall"]:
        e = stored["overall"][o["key"]]
        assert (o["value"], o["ci"], o["n"]) == (e["value"], e["ci"], e["n"])
        # printed as value [CI] with its n, in the statistic's row
        lo, hi = e["ci"]
        printed = f"{e['value']:.2f} [{lo:.2f}, {hi:.2f}]"
        assert [o["statistic"], printed, str(e["n"])] in [r[:3] for r in rows]
    pk = stored["pairwise"]["cohen_kappa"]
    readers = report["agreement"]["readers"]
    for p in report["agreement"]["pairwise"]:
        i, j = (readers.index(r) for r in p["readers"])
        assert p["value"] == pk["value"][i][j] and p["n"] == pk["n"][i][j]
        assert p["ci"] == [pk["ci_low"][i][j], pk["ci_high"][i][j]]
    ev = runs.load(ds, "model_evaluation")["results"]
    assert report["model"]["headline"] == ev["headline"]
    assert ev["headline"] in text.replace("&gt;", ">").replace("&#x27;", "'")
    cons = runs.load(ds, "consensus_dawid_skene")
    assert report["consensus"]["method"] == "dawid_skene"
    assert report["consensus"]["run_by"][-1]["user"]
    flags = cons["results"]["profiles"]["flags"]
    assert len(report["consensus"]["flags"]) == len(flags)
    # the freeze is verified now: the revision after it shows
    (t,) = report["training_sets"]["training_sets"]
    assert t["name"] == "v1" and t["verification"]["relabelled_samples"] == 1
    assert "1 relabelled, 0 removed, 0 added" in text
    assert [r["sample_id"] for r in report["readers"]["revisions"]] == [analysed["revised"]]
    log = report["audit_log"]
    assert log["verification"]["ok"] and log["n_entries"] == len(log["entries"]) > 5
    assert log["verification"]["head_hash"] in text


def test_subgroup_agreement_equals_an_independent_recount(analysed):
    """Each subgroup's Krippendorff alpha equals the ``krippendorff`` package's on that
    subgroup's labels, and its n is the subgroup's size."""
    import krippendorff

    ds, report = analysed["ds"], analysed["report"]
    subs = report["agreement"]["subgroups"]
    assert {s["field"] for s in subs} >= {"manufacturer_model", "patient_sex"}
    classes = report["agreement"]["classes"]
    fields = [f"reader_r{k}" for k in range(1, 5)]
    labels = np.array(
        [[classes.index(v) if v else np.nan for v in ds.values(f"{f}.label")] for f in fields],
        dtype=float,
    )
    checked = 0
    for s in subs:
        if s["field"] == "patient_age_bin" or s["group"] == "(missing)":
            continue
        checked += 1
        values = np.array([str(v) for v in ds.values(s["field"])], dtype=object)
        m = values == s["group"]
        assert m.sum() == s["n"], s
        ref = krippendorff.alpha(reliability_data=labels[:, m], level_of_measurement="nominal")
        assert s["krippendorff_alpha_nominal"]["value"] == pytest.approx(ref, abs=1e-9), s
        assert s["ci"][0] <= s["value"] <= s["ci"][1]
    assert checked >= 4


def test_contested_list_equals_a_direct_query(analysed):
    from fiftyone import ViewField as F

    ds, c = analysed["ds"], analysed["report"]["contested"]
    view = ds.match(F("majority_share") < 0.75).sort_by("disagreement", reverse=True)
    assert c["n_contested"] == len(view) and c["shown"] == 20
    assert c["not_shown"] == len(view) - 20
    top = view.limit(20)
    assert [r["sample_id"] for r in c["rows"]] == top.values("id")
    assert [r["labels"]["reader_r1"] for r in c["rows"]] == top.values("reader_r1.label")
    assert [r["consensus"] for r in c["rows"]] == top.values("consensus_dawid_skene.label")
    assert [r["dicom_key"] for r in c["rows"]] == top.values("dicom_key")
    for r in c["rows"][:3]:
        assert f"<td>{r['file']}</td>" in analysed["html"]


def _no_raw_json(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.lstrip().startswith(("{", "[{", "[[")), cell
            assert not re.search(r"""['"]\w+['"]\s*:""", cell), cell


def test_no_table_cell_holds_raw_json(analysed):
    rows = _rows(analysed["html"])
    _no_raw_json(rows)
    # the consensus method's parameters are rows of their own, not a JSON string
    params = analysed["report"]["consensus"]["params"]
    assert params and "{" not in analysed["html"].split("id='consensus'")[1].split("<h2")[0]
    for k, v in params.items():
        assert [k.replace("_", " "), str(v)] in rows


def test_lesion_section_prints_the_stored_run(lesion_study, tmp_path):
    """The lesion-level section on a real series with three readers' 3-D outlines: every
    number printed is the stored run's, each statistic defined, no raw JSON in a cell."""
    from multireader.analyses.lesions import LesionAgreementResults, compute_lesion_agreement
    from multireader.core.results import AnalysisResults
    from multireader.stats.estimates import fmt_ci, fmt_pct

    ds = lesion_study[0]
    returned = compute_lesion_agreement(ds, n_boot=50, num_workers=1)
    html_path, json_path = AR.write_report(ds, str(tmp_path / "lesions.html"))
    report, text = json.loads(_read(json_path)), _read(html_path)
    les = report["lesions"]
    stored = runs.load(ds, "lesions")["results"]
    typed = AnalysisResults.from_run(ds, "lesions")
    assert isinstance(typed, LesionAgreementResults)
    assert typed.summary() == json.loads(json.dumps(returned.summary()))
    assert les["available"] and les["run_key"] == "lesions"
    assert les["readers"] == stored["readers"] == ["R1", "R2", "R3"]
    assert les["n_lesions"] == stored["n_lesions"] == 2
    rows = _rows(text)
    _no_raw_json(rows)
    first = [r[:2] for r in rows]
    for k, n in stored["found_by_k"].items():
        assert [f"{k} of 3 readers", str(n)] in first
    fk = stored["fleiss_kappa_found"]
    assert les["fleiss_kappa_found"]["value"] == fk["value"]
    printed = fmt_ci(fk) if fk["value"] is not None else fk["note"]
    assert ["Fleiss' kappa on found / not found", printed] in first
    readers = stored["readers"]
    det = stored["detection"]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        pair = f"{readers[a]} vs {readers[b]}"

        def est(name, a=a, b=b):
            m = det[name]
            return fmt_ci(m["value"][a][b], [m["ci_low"][a][b], m["ci_high"][a][b]])

        assert [pair, est("f1"), est("sensitivity"), est("ppv")] in [r[:4] for r in rows]
        bd = stored["boundary"][f"{readers[a]}|{readers[b]}"]
        expected = [pair, str(bd["n"])] + [
            fmt_ci(bd[m]) for m in ("dice", "iou", "hd95", "assd", "nsd")
        ]
        assert expected in rows, expected
    # R3 missed the small lesion: the R1-R3 detection, and the flag
    assert det["sensitivity"]["value"][0][2] == pytest.approx(0.5)
    prof = {p["reader"]: p for p in stored["reader_profiles"]}
    for name, p in prof.items():
        assert [name, str(p["n_lesions"]), fmt_pct(p["sensitivity_vs_others"])] in [
            r[:3] for r in rows
        ]
    assert [f["reader"] for f in les["flagged"]] == [r for r, p in prof.items() if p["flags"]]
    assert "R3" in [f["reader"] for f in les["flagged"]]
    # volumes: Bland-Altman where two readers share lesions, else its note; RMS CV
    vol = stored["volume"]
    for key, ba in vol["bland_altman"].items():
        pair = key.replace("|", " vs ")
        if "bias" in ba:
            lo, hi = ba["bias_ci"]
            cell = f"{ba['bias']:.3g} [{lo:.3g}, {hi:.3g}]"
            assert [pair, cell, f"{ba['loa_low']:.3g} to {ba['loa_high']:.3g}"] in [
                r[:3] for r in rows
            ]
        else:
            assert [pair, ba["note"]] in first
    cv = vol["rms_cv"]
    assert ["RMS within-lesion CV", fmt_ci(cv), str(cv["n"])] in [r[:3] for r in rows]
    if vol["icc"] is None:
        assert "Volume ICC not available" in text
    # each statistic defined: HD95 as MONAI does, NSD at the run's tolerance
    plain = text.replace("&#x27;", "'")
    assert "directed 95th percentiles" in plain and "MONAI" in plain
    assert "Nikolov et al. 2021" in plain and "NSD at 2.0 mm" in plain
    for name, definition in AR.LESION_STATISTICS.values():
        assert [name, definition] in rows
    line = {x["section"]: x["summary"] for x in AR.summary(report)}
    assert line[dict(AR.SECTIONS)["lesions"]].startswith("2 lesions in 1 series")


def test_self_contained_and_no_patient_identifiers(analysed):
    text, js = analysed["html"], _read(analysed["res"]["json"])
    HTMLParser().feed(text)  # parses
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*['"]?\s*(https?:)?//""", text, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text, re.I)
    assert "@import" not in text
    # the identifiers the demo's DICOM headers carry, even though they are on the dataset
    assert analysed["ds"].count("dicom_identifiers") == len(analysed["ds"])
    for secret in (DEMO_NAME, "DEMO^PATIENT", DEMO_ID, "PatientName", "PatientID"):
        assert secret not in text and secret not in js, secret
    assert analysed["report"]["dataset"]["counts"]["patients"] == len(
        analysed["ds"].distinct("patient_key")
    )


def test_unanalysed_dataset_says_what_to_run(demo_clone, tmp_path):
    html_path, json_path = AR.write_report(demo_clone, str(tmp_path / "empty.html"))
    report, text = json.loads(_read(json_path)), _read(html_path)
    assert report["agreement"] == {
        "available": False,
        "note": "Not available: run 'Compute agreement' first.",
    }
    assert report["contested"]["note"] == "Not available: run 'Compute agreement' first."
    assert report["consensus"]["note"] == "Not available: run 'Compute consensus labels' first."
    assert report["model"]["available"] is False
    assert "Evaluate model" in report["model"]["note"]
    assert report["training_sets"]["training_sets"] == []
    assert report["lesions"] == {
        "available": False,
        "note": "Not available: run 'Compute lesion agreement (3-D)' first.",
    }
    assert report["recist"] == {
        "available": False,
        "note": "Not available: run 'Compute RECIST agreement' first.",
    }
    for note in (
        "Not available: run &#x27;Compute agreement&#x27; first.",
        "Not available: run &#x27;Compute consensus labels&#x27; first.",
        "No predictions evaluated",
        "No frozen training sets",
        "Not available: run &#x27;Compute lesion agreement (3-D)&#x27; first.",
        "Not available: run &#x27;Compute RECIST agreement&#x27; first.",
    ):
        assert note in text
    for sid, title in AR.SECTIONS:
        assert f"<h2 id='{sid}'>{title}</h2>" in text
    assert report["dataset"]["n_samples"] == len(demo_clone)


def test_opens_in_chromium(analysed, tmp_path):
    """No console error, no network request, every section heading visible; with
    MULTIREADER_SCREENSHOTS=1 the full page goes to docs/audit_report.png."""
    missing = browser_missing()
    if missing is not None:
        pytest.skip(missing)
    import importlib.util

    from playwright.sync_api import sync_playwright

    spec = importlib.util.spec_from_file_location(
        "shot", os.path.join(ROOT, "scripts", "screenshot.py")
    )
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    path = analysed["res"]["html"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shot.chromium_path(), args=shot.CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        errors, requests = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"file://{path}")
        for _, title in AR.SECTIONS:
            assert page.get_by_role("heading", name=title).is_visible(), title
        assert page.get_by_text("Hash chain verified", exact=False).first.is_visible()
        assert page.locator("svg[aria-label='Pairwise Cohen kappa between readers']").is_visible()
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        if os.environ.get("MULTIREADER_SCREENSHOTS") == "1":
            # the first screen, and the agreement section (the two the README shows)
            page.screenshot(path=os.path.join(ROOT, "docs", "audit_report.png"))
            top = page.evaluate("document.getElementById('agreement').offsetTop")
            page.screenshot(
                path=os.path.join(ROOT, "docs", "audit_report_agreement.png"),
                clip={"x": 0, "y": top - 10, "width": 1200, "height": 1400},
                full_page=True,
            )
        browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith("file://")] == []


def _reads_when_analysed(analysed):
    """The class calls as the runs saw them: the fixture revised one R2 label (from
    "suspicious") after every analysis, so that revision is undone here."""
    from multireader.core import collect as C

    ds = analysed["ds"]
    rs = C.select_readers(ds, "classification")
    reads = C.categorical_reads(ds.view(), rs)
    from multireader.lineage import records

    sid = analysed["revised"]
    i, j = reads.item_ids.index(sid), reads.readers.index("R2")
    (first, *_) = records.history(ds, sid, "reader_r2")  # the original read
    label = first.get("label") or {}
    assert label.get("label") == "suspicious"
    reads.codes[i, j] = reads.classes.index("suspicious")
    reads.scores[i, j] = np.nan if label.get("score") is None else float(label["score"])
    return reads


def test_consensus_section_reports_convergence_and_the_ordinal_test(analysed):
    from multireader.stats.consensus import DawidSkene
    from multireader.stats.profiles import ordinal_bias

    report, text = analysed["report"], analysed["html"]
    reads = _reads_when_analysed(analysed)
    k = len(reads.classes)
    # the operator's defaults (DawidSkene's: to tolerance, diagonal prior of 5)
    ds = DawidSkene(k, max_iter=1000, tol=1e-6, diagonal_prior=5.0,
                    single_reads="fit", init="vote_shares").fit(reads.codes)  # fmt: skip
    c = report["consensus"]
    assert c["convergence"]["converged"] is bool(ds.converged_)
    assert (c["warnings"] == []) is bool(ds.converged_)
    assert c["convergence"]["n_iter"] == ds.n_iter_
    assert c["convergence"]["log_likelihood"] == pytest.approx(ds.log_likelihood_, rel=1e-12)
    sentence = c["convergence_text"]
    assert f"{ds.log_likelihood_:.3f}" in sentence and sentence in text
    assert c["scale_test"] == "ordinal"
    ob = ordinal_bias(reads.codes, k, alpha=0.05)
    rows = {}  # the first table keyed by reader: each reader against the consensus
    for r in _rows(text.split("id='consensus'")[1].split("<h2")[0]):
        rows.setdefault(r[0], r)
    for j, x in enumerate(c["readers"]):
        assert x["ordinal_bias"]["shift"] == pytest.approx(float(ob["shift"][j]), abs=1e-3)
        assert rows[x["reader"]][-1].startswith(f"{ob['shift'][j]:.2f} [")
    flagged = {f["reader"] for f in c["flags"] if f["kind"] == "ordinal_bias"}
    assert flagged == {reads.readers[j] for j in np.flatnonzero(ob["flagged"])}


def test_agreement_section_names_the_interval_and_the_terms(analysed):
    from multireader.stats.agreement import term_counts

    a, text = analysed["report"]["agreement"], analysed["html"]
    reads = _reads_when_analysed(analysed)
    t = term_counts(reads.codes, len(reads.classes))
    terms = {x["key"]: x for x in a["terms"]}
    fk = terms["fleiss_kappa"]
    assert (fk["agreement_items"], fk["agreement_reads"]) == tuple(t["agreement"].values())
    assert (fk["chance_items"], fk["chance_reads"]) == tuple(t["chance"].values())
    assert terms["percent_agreement"]["chance_items"] is None
    html_rows = _rows(text.split("id='agreement'")[1].split("<h2")[0])
    assert [
        "Fleiss' kappa",
        *map(str, t["agreement"].values()),
        *map(str, t["chance"].values()),
    ] in html_rows
    assert a["interval"]["kind"] == "cases"
    assert "cases random, readers fixed" in text


def test_model_section_has_model_vs_readers_equal_to_or_hillis(analysed):
    from multireader.core.predictions import read_probabilities
    from multireader.stats import mrmc

    ds, m, text = analysed["ds"], analysed["report"]["model"], analysed["html"]
    mvr = m["results"]["model_vs_readers"]
    reads = _reads_when_analysed(analysed)
    ids, classes, probs = read_probabilities(ds.view(), m["results"]["pred_field"])
    assert ids == reads.item_ids and classes == reads.classes
    pred = np.where(np.isfinite(probs).all(1), np.argmax(np.nan_to_num(probs), 1), -1)
    index = {c: i for i, c in enumerate(classes)}
    truth = np.array([index.get(v, -1) for v in ds.values(f"{mvr['reference']}.label")])
    ok = (reads.codes >= 0).all(1) & (pred >= 0) & (truth >= 0)
    acc = mrmc.model_vs_readers(pred[ok], reads.codes[ok], truth[ok], fom="accuracy")
    rows = {r["fom"]: r for r in m["model_vs_readers"]}
    got = rows["accuracy"]
    assert got["difference"] == pytest.approx(acc.difference, abs=1e-12)
    assert got["ci"] == pytest.approx(list(acc.ci), abs=1e-12)
    assert got["df"] == pytest.approx(acc.df, rel=1e-9)
    assert got["p_noninferiority"] == pytest.approx(acc.p_noninferiority, abs=1e-12)
    assert got["n_cases"] == int(ok.sum()) and got["n_readers"] == 4
    lo, hi = acc.ci
    model_rows = _rows(text.split("id='model'")[1].split("<h2")[0])
    assert any(r[0] == "accuracy" and r[3] == f"{acc.difference:.3f} [{lo:.3f}, {hi:.3f}]"
               for r in model_rows)  # fmt: skip
    # the demo readers give an ordinal score 1-5: AUC on the upper half of the scale
    have = ok & np.isfinite(reads.scores).all(1)
    binary = (truth >= 2).astype(int)
    auc = mrmc.model_vs_readers(
        probs[:, 2:].sum(1)[have], reads.scores[have], binary[have], fom="auc"
    )
    assert rows["auc"]["difference"] == pytest.approx(auc.difference, abs=1e-12)
    assert rows["auc"]["ci"] == pytest.approx(list(auc.ci), abs=1e-12)
    # the operator's summary shows the same numbers (now, on the revised labels)
    from multireader.core import collect as C

    now = C.categorical_reads(ds.view(), C.select_readers(ds, "classification")).codes
    ok = (now >= 0).all(1) & (pred >= 0) & (truth >= 0)
    acc = mrmc.model_vs_readers(pred[ok], now[ok], truth[ok], fom="accuracy")
    summ = {r["fom"]: r for r in op("evaluate_model")(
        ds, m["results"]["pred_field"], n_boot=10, run_key="mvr_check")["model_vs_readers"]}  # fmt: skip
    lo, hi = acc.ci
    assert summ["accuracy"]["difference"] == f"{acc.difference:.3f} [{lo:.3f}, {hi:.3f}]"
    runs.delete(ds, "mvr_check")


def test_model_vs_readers_by_subgroup_is_or_hillis_on_that_subgroup(analysed):
    """Each slice row is OR-Hillis recomputed from scratch on that subgroup's cases, and
    the report prints it."""
    from multireader.core.predictions import read_probabilities
    from multireader.stats import mrmc

    ds, m, text = analysed["ds"], analysed["report"]["model"], analysed["html"]
    mvr = m["results"]["model_vs_readers"]
    reads = _reads_when_analysed(analysed)
    _, classes, probs = read_probabilities(ds.view(), m["results"]["pred_field"])
    pred = np.where(np.isfinite(probs).all(1), np.argmax(np.nan_to_num(probs), 1), -1)
    index = {c: i for i, c in enumerate(classes)}
    truth = np.array([index.get(v, -1) for v in ds.values(f"{mvr['reference']}.label")])
    rows = m["model_vs_readers_slices"]
    sexes = {r["slice"]["value"] for r in rows if r["slice"]["field"] == "patient_sex"}
    assert sexes and sexes <= {"F", "M", "(missing)"}
    sex = np.array([str(v) if v is not None else "(missing)" for v in ds.values("patient_sex")])
    checked = 0
    html_rows = _rows(text.split("id='model'")[1].split("<h2")[0])
    for r in rows:
        if r["slice"]["field"] != "patient_sex" or r["fom"] != "accuracy":
            continue
        sel = sex == r["slice"]["value"]
        ok = sel & (reads.codes >= 0).all(1) & (pred >= 0) & (truth >= 0)
        want = mrmc.model_vs_readers(pred[ok], reads.codes[ok], truth[ok], fom="accuracy")
        assert r["n_cases"] == int(ok.sum())
        assert r["difference"] == pytest.approx(want.difference, abs=1e-12)
        assert r["ci"] == pytest.approx(list(want.ci), abs=1e-12)
        assert r["p_noninferiority"] == pytest.approx(want.p_noninferiority, abs=1e-12)
        lo, hi = want.ci
        cell = f"{want.difference:.3f} [{lo:.3f}, {hi:.3f}]"
        assert [f"patient_sex = {r['slice']['value']}", "accuracy"] in [h[:2] for h in html_rows]
        assert any(h[0] == f"patient_sex = {r['slice']['value']}" and h[4] == cell
                   for h in html_rows)  # fmt: skip
        checked += 1
    assert checked == len(sexes)


def test_recist_section_prints_the_stored_run(tmp_path):
    """The RECIST section on the longitudinal study of ``helpers_recist`` (P1: A's PR
    against B's and C's SD at both follow-ups), with P1's first follow-up adjudicated:
    every number printed is the newest RECIST run's, and the adjudication says who,
    when and why beside the readers' calls."""
    import uuid

    import fiftyone as fo
    from helpers_recist import make_longitudinal

    from multireader.analyses import recist as RA
    from multireader.stats.estimates import fmt_ci, fmt_num

    ds = fo.Dataset(f"test-mr-report-recist-{uuid.uuid4().hex[:8]}")
    try:
        make_longitudinal(ds, tmp_path / "study")
        RA.compute_recist_agreement(ds, n_boot=50, seed=1, num_workers=1, run_key="older")
        op("adjudicate_response")(
            ds, patient_key="P1", timepoint=1, response="PR",
            reason="A's calipers follow the margin", adjudicator="Dr Adj",
        )  # fmt: skip
        RA.compute_recist_agreement(ds, n_boot=50, seed=2, num_workers=1, run_key="newest")
        html_path, json_path = AR.write_report(ds, str(tmp_path / "recist.html"))
        report, text = json.loads(_read(json_path)), _read(html_path)
        sec = report["recist"]
        stored = runs.load(ds, "newest")["results"]
        assert sec["available"] and sec["run_key"] == "newest"
        assert f"<h2 id='recist'>{dict(AR.SECTIONS)['recist']}</h2>" in text
        rows = _rows(text)
        _no_raw_json(rows)
        ra = stored["response_agreement"]
        names = {
            "1": "follow-up 1",
            "2": "follow-up 2",
            "all": "all follow-ups pooled",
            "best_overall_response": "best overall response",
        }
        for key, label in names.items():
            r = ra[key]
            expected = [label, str(r["n_items"])] + [
                fmt_ci(r[m]) for m in ("percent_agreement", "fleiss_kappa", "discordance_rate")
            ]
            assert expected in rows, expected
            assert "[" in expected[-1]  # with its interval
        kv = [r[:2] for r in rows]
        assert [
            "Discordance rate, all follow-ups [95% CI]",
            fmt_ci(ra["all"]["discordance_rate"]),
        ] in kv
        assert ["Discordant patient-timepoints", str(stored["n_discordant"])] in kv
        assert ["Patients with a discordant follow-up", str(stored["n_discordant_patients"])] in kv
        assert ["Adjudicated patient-timepoints", "1"] in kv
        assert ["Discordant, awaiting adjudication", str(stored["n_discordant"] - 1)] in kv
        kap = ra["all"]["pairwise_cohen_kappa"]
        ts = stored["target_selection"]
        for i, j in ((0, 1), (0, 2), (1, 2)):
            a, b = stored["readers"][i], stored["readers"][j]
            cells = [f"{a} vs {b}", fmt_num(round(kap[i][j], 3)), fmt_ci(ts[f"{a}|{b}"])]
            assert cells in rows, cells
        # the adjudication beside the readers' calls: who, when, why
        (adj,) = stored["adjudications"]
        assert (adj["patient"], adj["timepoint"], adj["response"]) == ("P1", 1, "PR")
        calls = RA.RecistAgreementResults.from_run(ds, "newest").patient("P1")["readers"]
        row = ["P1", "1"] + [calls[w]["responses"][0] for w in stored["readers"]]
        row += ["PR", "Dr Adj", AR._t(adj["at"]), "A's calipers follow the margin"]
        assert row == ["P1", "1", "PR", "SD", "SD", "PR", "Dr Adj"] + row[7:]
        assert row in rows, row
        line = {x["section"]: x["summary"] for x in AR.summary(report)}
        assert line[dict(AR.SECTIONS)["recist"]] == (
            f"6 patients, {stored['n_discordant']} discordant calls (discordance rate "
            f"{fmt_ci(ra['all']['discordance_rate'])}), 1 adjudicated"
        )
    finally:
        if fo.dataset_exists(ds.name):
            fo.delete_dataset(ds.name)
