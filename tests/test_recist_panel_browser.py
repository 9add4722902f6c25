"""The ``recist_timeline`` panel, without a browser and in the real App in Chromium.

On the longitudinal study of ``helpers_recist`` (six patients x three studies, three
readers' measurements, P1 planted PR for A against SD for B), stored as a RECIST run:
the sums Plotly draws are the run's sums, the discordant patients come first, the
threshold lines are the run's rules applied to each reader's sums, a click on a
reader's point shows exactly the samples where that reader measured that patient at
that timepoint, and the page logs no errors.

Set ``MULTIREADER_SCREENSHOTS=1`` to also write ``docs/panel_recist_timeline.png``.
"""

from __future__ import annotations

import os
import uuid

import pytest
from fiftyone import ViewField as F
from helpers_browser import (
    HARMLESS_CONSOLE,
    ROOT,
    TIMEOUT_MS,
    app_page,
    browser_missing,
    wait_count,
    wait_plots,
)

PANEL_TYPE = "recist_timeline"
#: console errors of an offline App that say nothing about the panel
_HARMLESS = HARMLESS_CONSOLE


@pytest.fixture(scope="module")
def recist_run(tmp_path_factory):
    """A persistent dataset (the App server is another process) with the longitudinal
    study and its stored RECIST run; deleted afterwards."""
    import fiftyone as fo
    from helpers_recist import make_longitudinal

    from multireader.analyses import recist as AR

    ds = fo.Dataset(f"test-mr-recist-panel-{uuid.uuid4().hex[:8]}")
    ds.persistent = True
    try:
        rows, studies = make_longitudinal(ds, str(tmp_path_factory.mktemp("recist_panel")))
        res = AR.compute_recist_agreement(ds, n_boot=20, seed=1, num_workers=1)
        yield ds, res, studies
    finally:
        if fo.dataset_exists(ds.name):
            fo.delete_dataset(ds.name)


def _measured_ids(ds, patient: str, t: int, field: str) -> list[str]:
    """The ids of the samples of ``patient`` at ``t`` holding ``field``, found directly."""
    view = ds.match((F("patient_key") == patient) & (F("timepoint") == t))
    return [s.id for s in view if s[field] is not None and s[field].polylines]


# --- the numbers and views, without a browser ------------------------------------------


def test_timeline_numbers_order_and_views(recist_run, dataset):
    from multireader.figures import recist_timeline as RT

    ds, res, studies = recist_run
    stored_disc = {d["patient"] for d in res["discordant"]}
    order = RT.view_patients(ds.view(), res)
    assert set(order) == set(res.patient_keys) and "P1" in stored_disc
    n = len(stored_disc)
    assert set(order[:n]) == stored_disc and not stored_disc & set(order[n:])
    for p in order:
        assert bool(RT.discordant_followups(res, p)) == (p in stored_disc)
    tl = RT.timeline(res, "P1")
    traces = {t["name"]: t for t in RT.traces(tl)}
    for w in res.readers:
        assert traces[w]["y"] == pytest.approx(res.patient("P1")["readers"][w]["sums"])
        assert traces[w]["text"][1:] == res.patient("P1")["readers"][w]["responses"]
    # A: 100 -> 68 -> 66 mm: PR under 70 mm; PD from 120 mm, then from max(68 x 1.2, 73)
    assert traces["A PR line"]["y"] == pytest.approx([70.0, 70.0])
    pd = [v for v in traces["A PD line"]["y"] if v is not None]
    assert pd == pytest.approx([120.0, 120.0, 81.6, 81.6])
    assert tl.discordant == [1, 2]
    table = RT.calls_table(tl)
    assert "**PR** · 68.0 mm (-32 %)" in table and "**SD** · 75.0 mm (-25 %)" in table
    # a click: the samples of P1 at follow-up 1 where B measured, B's targets only
    state = tl.state()
    assert RT.point_of(state, "B", 1) == ("B", 1)
    assert RT.point_of(state, "B PD line", 1) is None
    fld = res["fields"][res.readers.index("B")]
    view = RT.point_view(ds.view(), state, "B", 1)
    assert view.values("id") == _measured_ids(ds, "P1", 1, fld)
    assert len(view) == 1 and studies[("P1", 1)].sop_uids[0] in view.values("sop_instance_uid")
    shown = [p.lesion_id for v in view.values(fld) for p in v.polylines]
    assert sorted(shown) == sorted(res.patient("P1")["readers"]["B"]["targets"])
    others = [f for f in res["fields"] if f != fld]
    assert not any(f in view.get_field_schema() for f in others)
    # empty states
    with pytest.raises(RT.NoRecist, match="No RECIST analysis") as e:
        RT.load_run(dataset)
    assert e.value.action == "compute_recist_agreement"
    with pytest.raises(RT.NoRecist, match="None of the 6 patients") as e:
        RT.view_patients(ds.match(F("patient_key") == "nobody"), res)
    assert e.value.action == "clear_view"


# --- the panel in Chromium -------------------------------------------------------------

#: page position of point ``idx`` of trace ``t`` of figure ``i`` (its own x, which is
#: offset to the side of the timepoint)
_POINT_JS = """([i, t, idx]) => {
  const el = document.querySelectorAll('.js-plotly-plot')[i];
  el.scrollIntoView({block: 'center'});
  const fl = el._fullLayout, tr = el._fullData[t];
  const xa = fl[tr.xaxis.replace('x', 'xaxis')], ya = fl[tr.yaxis.replace('y', 'yaxis')];
  const r = el.getBoundingClientRect();
  return [r.left + xa._offset + xa.l2p(el.data[t].x[idx]),
          r.top + ya._offset + ya.l2p(el.data[t].y[idx])];
}"""


def _click_until_count(page, trace: int, idx: int, n: int, expect: str) -> str:
    """Hover point ``idx`` of ``trace`` until its own label (holding ``expect``) shows,
    click it, and wait for the grid to show ``n`` samples; again if a click was lost."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(8):
        x, y = page.evaluate(_POINT_JS, [0, trace, idx])
        page.mouse.move(1, 1)
        page.evaluate(
            "() => document.querySelectorAll('.hoverlayer').forEach(h => h.replaceChildren())"
        )
        page.mouse.move(x, y, steps=5)
        try:
            page.wait_for_function(
                "(want) => [...document.querySelectorAll('.js-plotly-plot')[0]"
                ".querySelectorAll('.hoverlayer .hovertext')]"
                ".some(h => (h.textContent || '').includes(want))",
                arg=expect,
                timeout=10_000,
            )
        except PlaywrightTimeout:
            continue
        text = page.locator(".js-plotly-plot").first.locator(".hoverlayer").text_content()
        page.mouse.click(x, y)
        try:
            wait_count(page, n, timeout_ms=30_000)
            return text or ""
        except PlaywrightTimeout:
            continue
    wait_count(page, n)
    return ""


def _watch_console(page) -> list[str]:
    import time

    errors: list[str] = []
    t0 = time.time()
    page.on(
        "console",
        lambda msg: (
            errors.append(f"{time.time() - t0:.1f}s {msg.text}") if msg.type == "error" else None
        ),
    )
    page.on("pageerror", lambda exc: errors.append(f"{time.time() - t0:.1f}s page error: {exc}"))
    return errors


@pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))
def test_recist_panel_in_chromium(recist_run, monkeypatch, tmp_path):
    from multireader.figures import recist_timeline as RT

    ds, res, studies = recist_run
    total = len(ds)
    readers = res.readers
    stored_disc = {d["patient"] for d in res["discordant"]}
    first = RT.view_patients(ds.view(), res)[0]
    assert first in stored_disc
    row = res.patient(first)
    with app_page(
        ds, PANEL_TYPE, monkeypatch, height=1300, failure_shot=tmp_path / "failure.png"
    ) as (session, page, shot):
        wait_count(page, total)
        errors = _watch_console(page)
        page.reload()
        wait_count(page, total)
        shot.dismiss_banners(page)
        (drawn,) = wait_plots(page, 1)

        # the patient shown first is a discordant one, and the drop-down says so
        page.get_by_text(
            f"Patient {first}: the readers' calls differ", exact=False
        ).first.wait_for()
        n_disc = len(stored_disc)
        page.get_by_text(f"({n_disc} of 6 discordant)", exact=False).first.wait_for()
        # one line per reader: the run's sums and calls, then the threshold lines
        by_name = {t["name"]: t for t in drawn}
        assert [t["name"] for t in drawn[: len(readers)]] == readers
        for w in readers:
            stored = row["readers"][w]
            assert by_name[w]["y"] == pytest.approx(stored["sums"]), w
            assert by_name[w]["text"] == [""] + stored["responses"], w
            assert by_name[f"{w} PR line"]["y"][0] == pytest.approx(0.7 * stored["sums"][0])
        # the calls side by side
        for w in readers:
            for call in row["readers"][w]["responses"]:
                page.locator("td", has_text=call).first.wait_for()
        if os.environ.get("MULTIREADER_SCREENSHOTS") == "1":
            page.wait_for_timeout(2500)  # the grid's tiles, for the picture only
            x, y = page.evaluate(_POINT_JS, [0, readers.index("B"), 1])
            page.mouse.move(x, y)
            page.wait_for_timeout(500)
            page.screenshot(path=os.path.join(ROOT, "docs", "panel_recist_timeline.png"))
        page.screenshot(path=str(tmp_path / "loaded.png"))

        # a click on B's follow-up 1 point: exactly the samples where B measured it
        b = readers.index("B")
        fld = res["fields"][b]
        want = _measured_ids(ds, first, 1, fld)
        assert 0 < len(want) < len(ds.match((F("patient_key") == first) & (F("timepoint") == 1)))
        text = _click_until_count(page, b, 1, len(want), "B · follow-up 1")
        assert "B" in text, text
        page.get_by_text(
            f"where B measured patient {first} at follow-up 1", exact=False
        ).first.wait_for(timeout=TIMEOUT_MS)
        # the figure stays that of the whole view
        assert wait_plots(page, 1)[0][b]["y"] == by_name["B"]["y"]
        page.screenshot(path=str(tmp_path / "clicked.png"))
        page.get_by_role("button", name="Back to all samples").click()
        wait_count(page, total)
        real = [e for e in errors if not any(h in e for h in _HARMLESS)]
        assert not real, real
