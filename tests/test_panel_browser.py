"""The ``agreement_heatmap`` panel in a real browser, and the numbers behind it.

The browser test launches the App on the demo dataset with the panel open beside the
sample grid, reads the heatmap Plotly drew from the DOM, checks every kappa against
scikit-learn on the raw labels, then clicks cells with the mouse and checks that the
grid shows exactly the samples behind each cell.

Set ``MULTIREADER_SCREENSHOTS=1`` to also write ``docs/panel_agreement_heatmap.png``.
"""

import os
import time

import numpy as np
import pytest
from helpers_browser import (
    ROOT,
    TIMEOUT_MS,
    app_page,
    browser_missing,
    click_until_count,
    hover_point,
    wait_count,
)

PANEL_TYPE = "agreement_heatmap"  # the panel's config name is its type in fo.Panel


# --- the numbers, without a browser ---------------------------------------------------


def _expected(dataset):
    """Independent answer: kappa with scikit-learn on labels read with ``values()``."""
    from sklearn.metrics import cohen_kappa_score

    from multireader import fields as F
    from multireader import schema as S

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
    from multireader import panel_data as PD

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
    from multireader import panel_data as PD

    with pytest.raises(PD.NoMatrix, match="no reader class labels"):
        PD.agreement_matrix(dataset.view())
    with pytest.raises(PD.NoMatrix, match="no samples"):
        PD.agreement_matrix(demo_dataset.limit(0))
    one = demo_dataset.select_fields(["reader_r1"])
    with pytest.raises(PD.NoMatrix, match=r"Only one reader \(R1\)"):
        PD.agreement_matrix(one)


def test_view_key_ignores_stage_uuids(demo_dataset):
    from fiftyone.operators.operations import _serialize_view

    from multireader import panel_data as PD

    a = _serialize_view(demo_dataset.limit(3))
    b = _serialize_view(demo_dataset.limit(3))
    assert a != b and PD.view_key(a) == PD.view_key(b)
    assert PD.view_key(a) != PD.view_key(_serialize_view(demo_dataset.limit(4)))


# --- the panel in Chromium -------------------------------------------------------------

_PLOT_JS = """() => {
  const el = document.querySelector('.js-plotly-plot');
  if (!el || !el.data || !el.data.length || !el._fullLayout || !el._fullLayout.xaxis) return null;
  const d = el.data[0];
  return {x: d.x, y: d.y, z: d.z, text: d.text};
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
    assert f"n = {n[0, 1]} samples both read" in hover
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
    page.get_by_text("Click a cell to open its samples", exact=False).first.wait_for()

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
