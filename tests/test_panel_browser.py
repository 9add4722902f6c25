"""The ``agreement_heatmap`` panel in a real browser, and the numbers behind it.

The browser test launches the App on the demo dataset with the panel open beside the
sample grid, reads the heatmap Plotly drew from the DOM, checks every kappa against
scikit-learn on the raw labels, then clicks cells with the mouse and checks that the
grid shows exactly the samples behind each cell.

Set ``MULTIREADER_SCREENSHOTS=1`` to also write ``docs/panel_agreement_heatmap.png``.
"""

import json
import os
import time

import numpy as np
import pytest
from helpers_browser import (
    ROOT,
    TIMEOUT_MS,
    app_page,
    browser_missing,
    choose,
    click_until_count,
    hover_point,
    wait_count,
)

PANEL_TYPE = "agreement_heatmap"  # the panel's config name is its type in fo.Panel


# --- the numbers, without a browser ---------------------------------------------------


def _expected(dataset):
    """Independent answer: kappa with scikit-learn on labels read with ``values()``."""
    from sklearn.metrics import cohen_kappa_score

    from multireader.core import fields as F
    from multireader.core import schema as S

    classes = S.get_label_schema(dataset)["classes"]
    found = F.reader_fields(dataset, ["classification"])
    fields = sorted(found, key=lambda f: found[f]["reader"])
    readers = [found[f]["reader"] for f in fields]
    labels = dict(zip(fields, dataset.values([f"{f}.label" for f in fields]), strict=True))
    R = len(fields)
    kappa, n, differ = np.full((R, R), np.nan), np.zeros((R, R), int), np.zeros((R, R), int)
    for i, fa in enumerate(fields):
        for j, fb in enumerate(fields):
            pairs = [
                (a, b)
                for a, b in zip(labels[fa], labels[fb], strict=True)
                if a in classes and b in classes
            ]
            n[i, j] = len(pairs)
            differ[i, j] = sum(a != b for a, b in pairs)
            if i != j:
                a, b = zip(*pairs, strict=True)
                kappa[i, j] = cohen_kappa_score(a, b, labels=classes)
    return readers, fields, kappa, n, differ


def test_matrix_and_cell_views_match_sklearn(demo_dataset):
    from multireader.figures import agreement_matrix as PD

    readers, fields, kappa, n, differ = _expected(demo_dataset)
    m = PD.agreement_matrix(demo_dataset.view())
    assert m.readers == readers and m.fields == fields
    off = ~np.eye(len(readers), dtype=bool)
    np.testing.assert_allclose(m.kappa[off], kappa[off], atol=1e-12)
    assert (m.n == n).all() and (m.n_disagree[off] == differ[off]).all()
    state = m.state()
    for i, ry in enumerate(readers):
        for j, rx in enumerate(readers):
            want = n[i, i] if i == j else differ[i, j]
            assert len(PD.cell_view(demo_dataset.view(), state, rx, ry)) == want, (ry, rx)
    trace = PD.heatmap_trace(m)
    assert trace["z"][0][0] is None and trace["text"][0][0].startswith(str(n[0, 0]))
    assert (trace["zmin"], trace["zmid"], trace["zmax"]) == (-1, 0, 1)


def test_empty_states(dataset, demo_dataset):
    from multireader.figures import agreement_matrix as PD

    with pytest.raises(PD.NoMatrix, match="no reader class labels"):
        PD.agreement_matrix(dataset.view())
    with pytest.raises(PD.NoMatrix, match="no samples"):
        PD.agreement_matrix(demo_dataset.limit(0))
    one = demo_dataset.select_fields(["reader_r1"])
    with pytest.raises(PD.NoMatrix, match=r"Only one reader \(R1\)"):
        PD.agreement_matrix(one)


def test_view_key_ignores_stage_uuids(demo_dataset):
    from fiftyone.operators.operations import _serialize_view

    from multireader.figures import agreement_matrix as PD

    a = _serialize_view(demo_dataset.limit(3))
    b = _serialize_view(demo_dataset.limit(3))
    assert a != b and PD.view_key(a) == PD.view_key(b)
    assert PD.view_key(a) != PD.view_key(_serialize_view(demo_dataset.limit(4)))


# --- the panel in Chromium -------------------------------------------------------------

_PLOT_JS = """() => {
  const el = document.querySelector('.js-plotly-plot');
  if (!el || !el.data || !el.data.length || !el._fullLayout || !el._fullLayout.xaxis) return null;
  const d = el.data[0];
  return {x: d.x, y: d.y, z: d.z, text: d.text, name: d.name, customdata: d.customdata,
          n: document.querySelectorAll('.js-plotly-plot').length};
}"""


def _settle_grid(page, timeout_s: float = 30.0) -> None:
    """For a picture only: wait until the grid's tiles stop appearing, plus a moment for
    their images to be drawn (the App draws tiles on canvases the page cannot inspect)."""
    last, same, end = -1, 0, time.time() + timeout_s
    while time.time() < end and same < 4:
        count = page.evaluate("() => document.querySelectorAll('canvas').length")
        same = same + 1 if count == last and count > 0 else 0
        last = count
        page.wait_for_timeout(500)
    page.wait_for_timeout(1500)


def _drive(page, session, dataset, shot, tmp_path, timings) -> None:
    """Everything the test does in the browser, once the page is loading."""
    readers, fields, kappa, n, differ = _expected(dataset)
    total = len(dataset)
    t0 = time.time()
    page.wait_for_function(f"() => ({_PLOT_JS})() !== null", timeout=TIMEOUT_MS)
    timings["first_plot"] = time.time() - t0
    wait_count(page, total)
    shot.dismiss_banners(page)

    # the numbers drawn are the numbers sklearn gets from the raw labels
    plot = page.evaluate(_PLOT_JS)
    assert plot["x"] == readers and plot["y"] == readers
    R = len(readers)
    for i in range(R):
        for j in range(R):
            if i == j:
                assert plot["z"][i][i] is None
                assert plot["text"][i][i].startswith(f"{n[i, i]}<br>")
            else:
                assert plot["z"][i][j] == pytest.approx(kappa[i, j], abs=1e-6)
                assert plot["text"][i][j] == f"{kappa[i, j]:.2f}"
    page.screenshot(path=str(tmp_path / "loaded.png"))

    # off-diagonal: row R1, column R2 -> samples both read and labelled differently
    t0 = time.time()
    hover = click_until_count(page, 0, 0, 1, 0, int(differ[0, 1]))
    assert f"{readers[0]} vs {readers[1]}" in hover
    assert f"n = {n[0, 1]} samples both labelled" in hover
    assert f"{differ[0, 1]} labelled differently" in hover
    timings["click_to_count"] = time.time() - t0
    page.get_by_text("labelled differently.", exact=False).first.wait_for()
    # the matrix stays the one the user clicked in (not recomputed on its drill-down)
    assert page.evaluate(_PLOT_JS)["z"] == plot["z"]
    page.screenshot(path=str(tmp_path / "pair_clicked.png"))
    if os.environ.get("MULTIREADER_SCREENSHOTS") == "1":
        _settle_grid(page)
        hover_point(page, 0, 0, 1, 0)  # the plot moved down: hover again
        page.screenshot(path=os.path.join(ROOT, "docs", "panel_agreement_heatmap.png"))

    # diagonal: the samples reader R3 labelled, from the matrix's view (not the drill)
    click_until_count(page, 0, 0, 2, 2, int(n[2, 2]))
    page.get_by_text(f"labelled by {readers[2]}", exact=False).first.wait_for()

    # back to the view the matrix is of
    page.get_by_role("button", name="Back to all samples").click()
    wait_count(page, total)
    page.get_by_text("click a cell to open its samples", exact=False).first.wait_for()

    # views set from Python reach the panel: an empty view, one reader, then three
    session.view = dataset.limit(0)
    page.get_by_text("The current view has no samples", exact=False).first.wait_for()
    assert page.locator(".js-plotly-plot").count() == 0
    page.screenshot(path=str(tmp_path / "empty_view.png"))
    session.view = dataset.select_fields([fields[0]])
    page.get_by_text(f"Only one reader ({readers[0]})", exact=False).first.wait_for()
    session.view = dataset.exclude_fields([fields[3]])
    page.wait_for_function(
        f"() => {{ const p = ({_PLOT_JS})(); return p !== null && p.x.length === 3; }}",
        timeout=TIMEOUT_MS,
    )
    plot3 = page.evaluate(_PLOT_JS)
    assert plot3["x"] == readers[:3]
    assert plot3["z"][0][2] == pytest.approx(kappa[0, 2], abs=1e-6)
    page.screenshot(path=str(tmp_path / "three_readers.png"))

    # the statistic and class choices, back on all four readers
    session.view = None
    page.wait_for_function(
        f"() => {{ const p = ({_PLOT_JS})(); return p !== null && p.x.length === 4; }}",
        timeout=TIMEOUT_MS,
    )
    _choices(page, session, dataset, readers, fields, tmp_path)


def _wait_plot(page, predicate_js: str) -> dict:
    page.wait_for_function(
        f"() => {{ const p = ({_PLOT_JS})(); return p !== null && ({predicate_js})(p); }}",
        timeout=TIMEOUT_MS,
    )
    return page.evaluate(_PLOT_JS)


def _wait_matrix(page, want: np.ndarray, name: str) -> dict:
    """Wait until the one figure is ``name``'s and draws ``want`` off the diagonal (to
    1e-6), checked in the page in one go: the App can draw the previous figure once
    more while it swaps them, so a later read could see that one."""
    w = json.dumps(
        [
            [None if i == j else float(want[i, j]) for j in range(len(want))]
            for i in range(len(want))
        ]
    )
    pred = (
        f"p => {{ const w = {w}; if (p.n !== 1 || p.name !== '{name}') return false;"
        " for (let i = 0; i < w.length; i++) for (let j = 0; j < w.length; j++)"
        "   if (w[i][j] !== null && (p.z[i][j] === null || Math.abs(p.z[i][j] - w[i][j]) > 1e-6))"
        "     return false;"
        " return true; }"
    )
    return _wait_plot(page, pred)


def _choices(page, session, dataset, readers, fields, tmp_path) -> None:
    """Percent agreement; one class against the rest (with its CI on hover and a click);
    the all-reader line against peers; Dice on the whole dataset, then on one scanner's
    samples (no agreement run needed: it follows the view)."""
    import krippendorff
    from sklearn.metrics import cohen_kappa_score

    from multireader.core import collect as C
    from multireader.core import schema as S
    from multireader.stats import agreement as A

    classes = S.get_label_schema(dataset)["classes"]
    labels = [np.array(v, dtype=object) for v in dataset.values([f"{f}.label" for f in fields])]
    ok = [np.isin(v, classes) for v in labels]
    R = len(readers)

    # percent agreement: the share of samples both labelled with the same class
    pa = np.full((R, R), np.nan)
    for i in range(R):
        for j in range(R):
            if i != j:
                both = ok[i] & ok[j]
                pa[i, j] = np.mean(labels[i][both] == labels[j][both])
    choose(page, "Cohen's kappa", "Percent agreement")
    _wait_matrix(page, pa, "percent_agreement")

    # one class against the rest: kappa of "called malignant" between two readers
    # (one choice at a time, each waited for, as a person would: choices made faster
    # than the panel answers are events that can finish in any order)
    choose(page, "Percent agreement", "Cohen's kappa")
    _wait_plot(page, "p => p.n === 1 && p.name === 'cohen_kappa'")
    choose(page, "All classes", "malignant")
    want = np.full((R, R), np.nan)
    for i in range(R):
        for j in range(R):
            if i != j:
                both = ok[i] & ok[j]
                a, b = labels[i][both] == "malignant", labels[j][both] == "malignant"
                want[i, j] = cohen_kappa_score(a, b)
    # (a redraw can leave the previous figure in the page for a moment: wait for one)
    _wait_matrix(page, want, "cohen_kappa")
    # the hover's CI is the bootstrap interval of the same recoding over patients
    rs = C.select_readers(dataset, "classification")
    reads = C.categorical_reads(dataset, rs, scores=False, sessions=False)
    c = reads.classes.index("malignant")
    xb = np.where(reads.codes < 0, -1, (reads.codes == c).astype(int))
    summary = A.categorical_summary(xb, 2, n_boot=500, seed=0, groups=reads.groups)
    lo = summary["pairwise"]["cohen_kappa"]["ci_low"][0][1]
    hi = summary["pairwise"]["cohen_kappa"]["ci_high"][0][1]
    only_one = int(
        np.sum(ok[0] & ok[1] & ((labels[0] == "malignant") != (labels[1] == "malignant")))
    )
    # the App may draw the previous figure once more while it swaps them (seen on the
    # loaded 2-core machine): read the hover until it is the class figure's, then click
    for _ in range(20):
        r1r2 = hover_point(page, 0, 0, 1, 0)
        if "malignant vs rest" in r1r2:
            break
        page.wait_for_timeout(1000)
    assert f"95% CI {lo:.2f} to {hi:.2f}" in r1r2, r1r2
    assert f"{only_one} where only one called malignant" in r1r2, r1r2
    click_until_count(page, 0, 0, 1, 0, only_one)
    page.get_by_text(f"only one of {readers[0]} and {readers[1]} called malignant", exact=False)
    page.get_by_role("button", name="Back to all samples").click()
    wait_count(page, len(dataset))
    # the all-reader line: Krippendorff's alpha on the class recoding equals the peer's
    alpha = krippendorff.alpha(
        reliability_data=np.where(xb < 0, np.nan, xb).T.astype(float),
        level_of_measurement="nominal",
    )
    line_el = page.get_by_text("Fleiss' κ for malignant", exact=False).first
    line_el.wait_for()
    line = line_el.text_content()
    fleiss = summary["overall"]["fleiss_kappa"]
    assert f"Fleiss' κ for malignant {fleiss['value']:.2f}" in line, line
    assert abs(summary["overall"]["krippendorff_alpha_nominal"]["value"] - alpha) < 1e-9
    page.screenshot(path=str(tmp_path / "class_malignant.png"))

    # Dice is measured on the view (there is no agreement run): the numpy recount of the
    # readers' mask files, on the whole dataset and then on one scanner's samples
    from multireader.core import fields as F

    found = F.reader_fields(dataset, ["mask"])
    mask_fields = sorted(found, key=lambda f: found[f]["reader"])
    choose(page, "malignant", "All classes")
    _wait_plot(page, "p => p.n === 1 && !p.customdata[0][1].includes('malignant')")
    choose(page, "Cohen's kappa", "Dice (masks)")
    dice, _, _ = _numpy_dice(dataset, mask_fields)
    _wait_matrix(page, dice, "dice")
    helix = _helix64(dataset)
    dice, _, n = _numpy_dice(helix, mask_fields)
    session.view = helix
    wait_count(page, len(helix))
    _wait_matrix(page, dice, "dice")
    for _ in range(20):  # as above: the previous figure may be drawn once more
        r1r2 = hover_point(page, 0, 0, 1, 0)
        if f"Dice = {dice[0, 1]:.2f}" in r1r2:
            break
        page.wait_for_timeout(1000)
    from multireader.figures import agreement_matrix as PD

    m = PD.agreement_matrix(helix, "dice")  # the interval: the stored run's bootstrap
    assert f"Dice = {dice[0, 1]:.2f}95% CI {m.ci_low[0, 1]:.2f} to {m.ci_high[0, 1]:.2f}" in (
        r1r2
    ), r1r2
    assert f"n = {n[0, 1]} samples both labelled" in r1r2, r1r2
    page.get_by_text("two or more readers segmented", exact=False).first.wait_for()
    page.get_by_text("mean pairwise Dice", exact=False).first.wait_for()
    assert page.get_by_text("stored run", exact=False).count() == 0
    page.screenshot(path=str(tmp_path / "dice_one_scanner.png"))


@pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))
def test_heatmap_panel_in_chromium(demo_dataset, tmp_path, monkeypatch):
    timings = {}
    t0 = time.time()
    with app_page(
        demo_dataset,
        PANEL_TYPE,
        monkeypatch,
        width=1600,
        height=1000,
        failure_shot=tmp_path / "failure.png",
    ) as (session, page, shot):
        timings["launch"] = time.time() - t0
        _drive(page, session, demo_dataset, shot, tmp_path, timings)
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()})


# --- the statistic and class choices, without a browser -------------------------------


def test_weighted_percent_and_class_matrices_match_peers(demo_dataset):
    """Every class statistic the panel offers equals scikit-learn / a recount on the
    raw labels, and a class choice compares "called it" against "did not"."""
    from sklearn.metrics import cohen_kappa_score

    from multireader.figures import agreement_matrix as PD

    readers, fields, _, n, _ = _expected(demo_dataset)
    classes = ["benign", "probably_benign", "suspicious", "malignant"]
    labels = [
        np.array(v, dtype=object) for v in demo_dataset.values([f"{f}.label" for f in fields])
    ]
    ok = [np.isin(v, classes) for v in labels]
    assert PD.available_statistics(demo_dataset) == list(PD.STATISTICS)  # ordinal + masks + boxes
    R = len(fields)
    for stat, weights in (("cohen_kappa_linear", "linear"), ("cohen_kappa_quadratic", "quadratic")):
        m = PD.agreement_matrix(demo_dataset.view(), stat, n_boot=0)
        for i in range(R):
            for j in range(R):
                if i != j:
                    both = ok[i] & ok[j]
                    want = cohen_kappa_score(
                        labels[i][both], labels[j][both], labels=classes, weights=weights
                    )
                    assert m.value[i, j] == pytest.approx(want, abs=1e-12), (stat, i, j)
    m = PD.agreement_matrix(demo_dataset.view(), "percent_agreement", n_boot=50)
    both = ok[0] & ok[2]
    assert m.value[0, 2] == pytest.approx(np.mean(labels[0][both] == labels[2][both]), abs=1e-12)
    assert m.ci_low[0, 2] <= m.value[0, 2] <= m.ci_high[0, 2]
    assert PD.STATISTICS[m.statistic].signed is False
    assert PD.heatmap_trace(m)["zmin"] == 0 and "zmid" not in PD.heatmap_trace(m)

    m = PD.agreement_matrix(demo_dataset.view(), "cohen_kappa", "suspicious", n_boot=0)
    state = m.state()
    for i in range(R):
        assert m.diag[i] == np.sum(labels[i] == "suspicious")
        view = PD.cell_view(demo_dataset.view(), state, readers[i], readers[i])
        assert len(view) == m.diag[i]
        for j in range(R):
            if i == j:
                continue
            both = ok[i] & ok[j]
            a, b = labels[i][both] == "suspicious", labels[j][both] == "suspicious"
            assert m.value[i, j] == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
            assert m.n_disagree[i, j] == np.sum(a != b)
            assert len(PD.cell_view(demo_dataset.view(), state, readers[j], readers[i])) == np.sum(
                a != b
            )
    assert m.overall[0]["label"] == "Fleiss' κ for suspicious"
    assert "specific agreement on suspicious" in PD.overall_text(m)
    with pytest.raises(PD.NoMatrix, match="not one of the classes"):
        PD.agreement_matrix(demo_dataset.view(), "cohen_kappa", "nodule")
    with pytest.raises(ValueError, match="unknown statistic"):
        PD.agreement_matrix(demo_dataset.view(), "fleiss")


def _numpy_dice(view, fields):
    """Independent answer: pairwise Dice and IoU of the readers' mask files (read with
    PIL, compared with numpy), averaged over the samples both readers segmented, and
    each reader's mask count."""
    from PIL import Image

    paths = view.values([f"{f}.mask_path" for f in fields])
    R = len(fields)
    dice, iou = np.full((R, R), np.nan), np.full((R, R), np.nan)
    n = np.zeros((R, R), int)
    for i in range(R):
        for j in range(R):
            d, u = [], []
            for pa, pb in zip(paths[i], paths[j], strict=True):
                if pa is None or pb is None:
                    continue
                a = np.asarray(Image.open(pa)) > 0
                b = np.asarray(Image.open(pb)) > 0
                inter, total, union = (a & b).sum(), a.sum() + b.sum(), (a | b).sum()
                d.append(1.0 if total == 0 else 2 * inter / total)
                u.append(1.0 if union == 0 else inter / union)
            n[i, j] = len(d)
            if i != j and d:
                dice[i, j], iou[i, j] = np.mean(d), np.mean(u)
    return dice, iou, n


def _helix64(dataset):
    from fiftyone import ViewField as VF

    return dataset.match(VF("manufacturer_model") == "Helix 64")


def _assert_like_run(m, pairwise: dict, overall: dict, keys: list[str]) -> None:
    off = ~np.eye(len(m.readers), dtype=bool)
    for k in ("value", "ci_low", "ci_high"):
        want = np.array([[np.nan if v is None else v for v in r] for r in pairwise[k]], float)
        np.testing.assert_allclose(getattr(m, k)[off], want[off], rtol=1e-12, err_msg=k)
    assert (m.n[off] == np.array(pairwise["n"])[off]).all()
    for e, k in zip(m.overall, keys, strict=True):
        assert e["value"] == pytest.approx(overall[k]["value"], rel=1e-12), k
        assert e["ci"] == pytest.approx(overall[k]["ci"], rel=1e-12), k
        assert e["n"] == overall[k]["n"], k


def test_mask_and_box_matrices_follow_the_view(demo_clone):
    """Dice, IoU and F1 are computed on the current view: on the whole dataset they equal
    the stored agreement run (values, CIs with the same replicates, n, the all-reader
    line); on one scanner's samples a numpy recount and a run of that view."""
    from multireader.analyses import agreement as analysis
    from multireader.core import runs
    from multireader.figures import agreement_matrix as PD

    PD.clear_cache()
    # no agreement run needed any more: the view is measured
    m = PD.agreement_matrix(demo_clone.view(), "dice", n_boot=0)
    assert m.source["kind"] == "view" and m.source["n_items_rated"] > 0
    with pytest.raises(PD.NoMatrix) as e:
        PD.agreement_matrix(demo_clone.limit(0), "cohen_kappa")
    assert e.value.action == "clear_view"

    analysis.compute_agreement(demo_clone, kinds=["mask", "boxes"], n_boot=50, run_key="agr_masks")
    stored = runs.load(demo_clone, "agr_masks")["results"]["kinds"]
    mask_keys = ["mean_pairwise_dice", "generalized_dice"]
    for stat in ("dice", "iou"):
        m = PD.agreement_matrix(demo_clone.view(), stat, n_boot=50)
        assert m.source["kind"] == "view" and m.n_boot == 50 and m.unit == "patient"
        _assert_like_run(m, stored["mask"]["pairwise"][stat], stored["mask"]["overall"], mask_keys)
    f1 = PD.agreement_matrix(demo_clone.view(), "f1", n_boot=50)
    assert f1.source == {"kind": "view", "n_items_rated": 336, "iou_threshold": 0.5}
    boxes = stored["boxes"]
    _assert_like_run(f1, boxes["pairwise"]["f1"], boxes["overall"], ["mean_pairwise_f1"])

    # one scanner: a numpy recount of every reader pair's Dice and IoU
    helix = _helix64(demo_clone)
    assert 0 < len(helix) < len(demo_clone)
    m = PD.agreement_matrix(helix, "dice")
    dice, iou, n = _numpy_dice(helix, m.fields)
    off = ~np.eye(len(m.readers), dtype=bool)
    np.testing.assert_allclose(m.value[off], dice[off], rtol=1e-12)
    assert (m.n[off] == n[off]).all() and (m.diag == np.diag(n)).all()
    assert (m.ci_low[off] <= m.value[off]).all() and (m.value[off] <= m.ci_high[off]).all()
    np.testing.assert_allclose(PD.agreement_matrix(helix, "iou").value[off], iou[off])
    has = np.array(
        [[p is not None for p in v] for v in helix.values([f"{f}.mask_path" for f in m.fields])]
    )
    assert m.source["n_items_rated"] == int((has.sum(0) >= 2).sum())
    # the hover has value, CI and n as for kappa; the matrix differs from the dataset's
    hover = PD.heatmap_trace(m)["customdata"][0][1]
    assert f"Dice = {dice[0, 1]:.2f}<br>95% CI " in hover and f"n = {n[0, 1]} samples" in hover
    assert not np.allclose(
        m.value[off], np.array(stored["mask"]["pairwise"]["dice"]["value"], float)[off]
    )
    # ... and the same samples' run (F1 included)
    analysis.compute_agreement(
        helix, kinds=["mask", "boxes"], n_boot=50, run_key="agr_helix", write_fields=False
    )
    run = runs.load(demo_clone, "agr_helix")["results"]["kinds"]
    m = PD.agreement_matrix(helix, "dice", n_boot=50)
    _assert_like_run(m, run["mask"]["pairwise"]["dice"], run["mask"]["overall"], mask_keys)
    f1 = PD.agreement_matrix(helix, "f1", n_boot=50)
    _assert_like_run(
        f1, run["boxes"]["pairwise"]["f1"], run["boxes"]["overall"], ["mean_pairwise_f1"]
    )

    # a mask cell opens the samples both readers segmented, least agreeing first
    m = PD.agreement_matrix(demo_clone.view(), "dice", n_boot=0)
    state = m.state()
    view = PD.cell_view(demo_clone.view(), state, m.readers[1], m.readers[0])
    assert len(view) == m.n[0, 1]
    d = view.values("mean_pairwise_dice")
    assert d == sorted(d, key=lambda x: (x is not None, x))


def test_mask_and_box_fallbacks_to_the_stored_run(demo_clone):
    """Only when the view cannot be measured (too many masks or boxes, mask files
    missing) do the numbers come from the stored run, saying why; without a run the
    panel says what to do."""
    from multireader.analyses import agreement as analysis
    from multireader.figures import agreement_matrix as PD

    PD.clear_cache()
    with pytest.raises(PD.NoMatrix, match="up to 10 masks") as e:
        PD.agreement_matrix(demo_clone.view(), "dice", max_masks=10)
    assert e.value.action == "compute_agreement"
    with pytest.raises(PD.NoMatrix, match="up to 10. Narrow"):
        PD.agreement_matrix(demo_clone.view(), "f1", max_box_samples=10)

    # a missing mask file and no run: measured without it, and named
    sample = demo_clone.first()
    lost = "/nonexistent/multireader/lost_mask.png"
    sample["reader_r1_mask"].mask_path = lost
    sample.save()
    m = PD.agreement_matrix(demo_clone.view(), "dice", n_boot=0)
    assert m.source["kind"] == "view" and lost in m.source["note"]

    analysis.compute_agreement(demo_clone, kinds=["mask", "boxes"], n_boot=0, run_key="agr")
    m = PD.agreement_matrix(demo_clone.view(), "dice")
    assert m.source["kind"] == "run" and m.source["run_key"] == "agr"
    assert m.source["of_this_view"] is True and lost in m.source["reason"]
    m = PD.agreement_matrix(demo_clone.limit(40), "iou", max_masks=10)
    assert m.source["kind"] == "run" and m.source["of_this_view"] is False
    assert "up to 10 masks" in m.source["reason"]
    # boxes have no files: the view is measured
    assert PD.agreement_matrix(demo_clone.limit(40), "f1").source["kind"] == "view"
