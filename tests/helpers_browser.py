"""Driving the real App in Debian's headless Chromium: launch it with a panel beside the
grid, read what Plotly drew, click cells with the mouse, read the grid's sample count.

Shared by the panel tests. Every wait polls a condition with a generous timeout (the CI
machine is small and shared); nothing sleeps a fixed time to "let it load".
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_MS = 120_000

# the grid's "N samples" count in the top bar: a div holding only the number and the
# word (a panel's own sentences are longer, so they never match)
COUNT_JS = """() => {
  for (const e of document.querySelectorAll('div')) {
    const m = /^([\\d,]+) samples?$/.exec((e.textContent || '').trim());
    if (m) return parseInt(m[1].replace(/,/g, ''), 10);
  }
  return null;
}"""

# the traces of the index-th Plotly figure on the page, or null until it is drawn
PLOT_JS = """(index) => {
  const el = document.querySelectorAll('.js-plotly-plot')[index];
  if (!el || !el.data || !el.data.length || !el._fullLayout) return null;
  return el.data.map(d => ({name: d.name, type: d.type, x: d.x, y: d.y, z: d.z,
                            text: d.text}));
}"""

# page position of point (xi, yi) of trace t in figure `index`: plotly's axis l2p gives
# the pixel inside the plot area, _offset the plot area inside the figure; a null yi
# means "the trace's y value at xi" (bars, lines)
POINT_JS = """([index, t, xi, yi]) => {
  const el = document.querySelectorAll('.js-plotly-plot')[index];
  el.scrollIntoView({block: 'center'});
  const fl = el._fullLayout, tr = el._fullData[t];
  const xa = fl[tr.xaxis.replace('x', 'xaxis')], ya = fl[tr.yaxis.replace('y', 'yaxis')];
  const r = el.getBoundingClientRect();
  if (tr.type === 'bar') {  // grouped bars sit beside the category centre: use the drawn bar
    const bar = el.querySelectorAll('.barlayer .trace')[t].querySelectorAll('.point')[xi];
    const b = bar.getBoundingClientRect();
    return [b.left + b.width / 2, b.top + b.height / 2];
  }
  const yl = (yi === null) ? ya.r2l(el.data[t].y[xi]) : yi;
  return [r.left + xa._offset + xa.l2p(xi), r.top + ya._offset + ya.l2p(yl)];
}"""


def screenshot_module():
    spec = importlib.util.spec_from_file_location(
        "_mr_screenshot", os.path.join(ROOT, "scripts", "screenshot.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def browser_missing() -> str | None:
    """Why a browser test cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright; never `playwright install`)"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "Debian's chromium is not installed (apt-get install chromium)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def panel_spaces(panel_type: str):
    """The grid on the left, ``panel_type`` on the right."""
    import fiftyone as fo

    grid, panel = fo.Panel(type="Samples", pinned=True), fo.Panel(type=panel_type)
    return fo.Space(
        children=[
            fo.Space(children=[grid], active_child=grid.component_id),
            fo.Space(children=[panel], active_child=panel.component_id),
        ],
        orientation="horizontal",
    )


@contextlib.contextmanager
def app_page(
    dataset,
    panel_type: str,
    monkeypatch,
    width: int = 1800,
    height: int = 1100,
    failure_shot: str | None = None,
):
    """``(session, page, shot)`` with the App open on ``dataset`` and ``panel_type``
    beside the grid; on an error the page is saved to ``failure_shot``; closes the
    browser and stops the App server afterwards."""
    import fiftyone as fo
    import fiftyone.core.session.session as fos
    from playwright.sync_api import sync_playwright

    shot = screenshot_module()
    # the App server is a subprocess: it finds the plugin through the environment
    monkeypatch.setenv("FIFTYONE_PLUGINS_DIR", ROOT)
    port = free_port()
    session = fo.launch_app(
        dataset, remote=True, address="127.0.0.1", port=port, spaces=panel_spaces(panel_type)
    )
    server = fos._server_services.get(port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shot.chromium_path(), args=shot.CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(f"http://127.0.0.1:{port}/datasets/{dataset.name}")
                try:
                    yield session, page, shot
                except Exception:
                    if failure_shot:
                        page.screenshot(path=str(failure_shot))
                    raise
            finally:
                browser.close()
    finally:
        session.close()
        if server is not None and server.child.is_running():
            server.child.kill()


def wait_count(page, n: int, timeout_ms: int = TIMEOUT_MS) -> None:
    """Wait until the grid says it shows ``n`` samples."""
    page.wait_for_function(f"() => ({COUNT_JS})() === {n}", timeout=timeout_ms)


def wait_plots(page, n: int) -> list:
    """Wait until ``n`` Plotly figures are drawn; returns their traces."""
    page.wait_for_function(
        f"() => [...Array({n}).keys()].every(i => ({PLOT_JS})(i) !== null)", timeout=TIMEOUT_MS
    )
    return [page.evaluate(PLOT_JS, i) for i in range(n)]


def hover_point(page, figure: int, trace: int, xi: int, yi: int | None) -> str:
    """Hover a point until Plotly shows its label (see :func:`click_point`); its text."""
    return click_point(page, figure, trace, xi, yi, click=False)


def click_point(page, figure: int, trace: int, xi: int, yi: int | None, click: bool = True) -> str:
    """Move to, then click, a point of a drawn figure with the real mouse.

    A panel may redraw its figure just after it first appears (its load and its first
    view change both refresh it); a figure mounted under a still mouse shows no hover.
    So the mouse leaves and comes back until Plotly shows the point's hover label, whose
    text is returned.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    # the figure's own hover label (a figure replaced by a redraw may leave its own)
    hover = page.locator(".js-plotly-plot").nth(figure).locator(".hoverlayer .hovertext").first
    for _ in range(TIMEOUT_MS // 10_000):
        x, y = page.evaluate(POINT_JS, [figure, trace, xi, yi])
        page.mouse.move(1, 1)
        # a label left from an earlier hover of a since-redrawn figure would be read as
        # this point's: clear them all, so only a fresh hover can satisfy the wait
        page.evaluate(
            "() => document.querySelectorAll('.hoverlayer').forEach(h => h.replaceChildren())"
        )
        page.mouse.move(x, y, steps=5)
        try:
            hover.wait_for(timeout=10_000)
            text = hover.text_content(timeout=2_000) or ""
        except PlaywrightTimeout:  # no label yet, or it vanished in a redraw: again
            continue
        if click:
            x, y = page.evaluate(POINT_JS, [figure, trace, xi, yi])
            page.mouse.click(x, y)
        return text
    raise AssertionError(f"no hover on figure {figure}, trace {trace}, point ({xi}, {yi})")


def click_until_count(page, figure: int, trace: int, xi: int, yi: int | None, n: int) -> str:
    """Click a point and wait for the grid to show ``n`` samples; click again if the
    click was lost (a panel that redraws between the hover and the click drops it)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(4):
        text = click_point(page, figure, trace, xi, yi)
        try:
            wait_count(page, n, timeout_ms=30_000)
            return text
        except PlaywrightTimeout:
            continue
    wait_count(page, n)  # a last, long wait, which raises with the page's state
    return text


def choose(page, current: str, option: str) -> None:
    """Pick ``option`` in the panel drop-down that now shows ``current`` (MUI selects
    are comboboxes; the App's own view selector is one too, so match by its text)."""
    box = page.locator("[role=combobox]").filter(has_text=current).last
    box.click()
    page.get_by_role("option", name=option, exact=True).click()


#: console lines that are not a panel's: an offline App, and the grid's own image worker
#: ("DataCloneError ... ArrayBuffer", FiftyOne's looker posting a buffer it already
#: transferred while tiles redraw; in the lesion panel test it came and went run to run,
#: about one in two, on the code before and after the 2026-12-02 changes alike)
HARMLESS_CONSOLE = (
    "ERR_NAME_NOT_RESOLVED",
    "ERR_INTERNET_DISCONNECTED",
    "Failed to load resource",
    "Error posting message to worker DataCloneError",
)
