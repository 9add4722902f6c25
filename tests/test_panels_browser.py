"""The slice_confusion and reader_profiles panels in the real App, in Chromium.

For each panel: open it beside the grid, read the numbers Plotly drew and compare them
with recounts from the raw labels, click a cell (or bar, or point) with the mouse, and
check that the grid then shows exactly the samples behind it.

Set ``MULTIREADER_SCREENSHOTS=1`` to also write the panels' pictures into ``docs/``.
"""

import json
import os

import numpy as np
import pytest
from helpers_browser import (
    ROOT,
    app_page,
    browser_missing,
    choose,
    click_until_count,
    wait_count,
    wait_plots,
)

CLASSES = ["benign", "probably_benign", "suspicious", "malignant"]
pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))


@pytest.fixture(scope="module")
def studied(demo_dataset):
    """The demo study with a Dawid-Skene consensus beside the readers."""
    from multireader.analyses import agreement as analysis

    clone = demo_dataset.clone(demo_dataset.name + "-panels")
    clone.persistent = True  # the App server is another process
    analysis.compute_consensus(clone, method="dawid_skene")
    yield clone
    clone.delete()


def _labels(ds, field):
    return np.array(ds.values(f"{field}.label"), dtype=object)


def _docs_shot(page, name):
    if os.environ.get("MULTIREADER_SCREENSHOTS") == "1":
        page.wait_for_timeout(2500)  # let the grid draw its tiles, for the picture only
        page.screenshot(path=os.path.join(ROOT, "docs", name))


def test_slice_confusion_in_chromium(studied, monkeypatch, tmp_path):
    ds = studied
    a, b = _labels(ds, "reader_r1"), _labels(ds, "consensus_dawid_skene")
    scanner = np.array(ds.values("manufacturer_model"), dtype=object)
    names = sorted(set(scanner))
    with app_page(ds, "slice_confusion", monkeypatch, failure_shot=tmp_path / "failure.png") as (
        session,
        page,
        shot,
    ):
        wait_count(page, len(ds))
        shot.dismiss_banners(page)
        (traces,) = wait_plots(page, 1)
        assert [t["name"] for t in traces] == names
        for t, name in zip(traces, names, strict=True):
            m = scanner == name
            counts = [
                [str(int(np.sum(m & (a == ca) & (b == cb)))) for cb in CLASSES] for ca in CLASSES
            ]
            assert t["text"] == counts, name
        page.screenshot(path=str(tmp_path / "slice_confusion.png"))
        _docs_shot(page, "panel_slice_confusion.png")
        # Helix 128, reader_r1 said suspicious, consensus said suspicious
        s = names.index("Helix 128")
        want = int(np.sum((scanner == "Helix 128") & (a == "suspicious") & (b == "suspicious")))
        click_until_count(page, 0, s, 2, 2, want)
        # the matrices stay those the user clicked in, with a way back
        page.get_by_text(
            "reader_r1 = suspicious, consensus_dawid_skene = suspicious in "
            "manufacturer_model Helix 128",
            exact=False,
        ).first.wait_for()
        assert [t["text"] for t in wait_plots(page, 1)[0]] == [t["text"] for t in traces]
        page.screenshot(path=str(tmp_path / "slice_confusion_clicked.png"))
        page.get_by_role("button", name="Back to all samples").click()
        wait_count(page, len(ds))

        # another column field, picked in its drop-down: reader_r1 against reader_r2
        r2 = _labels(ds, "reader_r2")
        choose(page, "consensus_dawid_skene", "reader_r2")
        first = names[0]
        m = scanner == first
        want_text = [
            [str(int(np.sum(m & (a == ca) & (r2 == cb)))) for cb in CLASSES] for ca in CLASSES
        ]
        page.wait_for_function(
            "(want) => { const el = document.querySelector('.js-plotly-plot');"
            " return !!(el && el.data && JSON.stringify(el.data[0].text) === want); }",
            arg=json.dumps(want_text, separators=(",", ":")),
            timeout=120_000,
        )


def test_reader_profiles_in_chromium(studied, monkeypatch, tmp_path):
    from multireader.core import runs

    ds = studied
    r2, cons = _labels(ds, "reader_r2"), _labels(ds, "consensus_dawid_skene")
    stored = runs.load(ds, "consensus_dawid_skene")["results"]["profiles"]
    assert stored["flags"][0]["reader"] == "R2"  # the panel opens on the first flagged reader
    with app_page(ds, "reader_profiles", monkeypatch, failure_shot=tmp_path / "failure.png") as (
        session,
        page,
        shot,
    ):
        wait_count(page, len(ds))
        shot.dismiss_banners(page)
        rates, conf, drift = wait_plots(page, 3)
        read = r2 != None  # noqa: E711
        both = read & (cons != None)  # noqa: E711
        mine = [np.sum(both & (r2 == c)) / both.sum() for c in CLASSES]
        np.testing.assert_allclose(rates[0]["y"], mine, atol=1e-6)
        ref = [np.sum(both & (cons == c)) / both.sum() for c in CLASSES]
        np.testing.assert_allclose(rates[1]["y"], ref, atol=1e-6)
        counts = [[str(int(np.sum((r2 == ca) & (cons == cb)))) for cb in CLASSES] for ca in CLASSES]
        assert conf[0]["text"] == counts
        sessions = np.array(ds.values("reader_r2.session"), dtype=object)
        names = drift[0]["x"]
        agree = [np.mean(r2[both & (sessions == s)] == cons[both & (sessions == s)]) for s in names]
        np.testing.assert_allclose(drift[0]["y"], agree, atol=1e-6)
        # the scale test of the reader shown, flagged or not: R2's level shift
        ob = stored["per_reader"]["R2"]["ordinal_bias"]
        shift = ("+" if ob["shift"] > 0 else "") + f"{ob['shift']:.2f}"
        page.get_by_text(f"median: {shift} levels", exact=False).first.wait_for()
        page.screenshot(path=str(tmp_path / "reader_profiles.png"))
        _docs_shot(page, "panel_reader_profiles.png")

        # a confusion cell: R2 said suspicious where consensus said benign
        click_until_count(page, 1, 0, 0, 2, int(np.sum((r2 == "suspicious") & (cons == "benign"))))
        # the figures stay those of the whole view, with a way back
        page.get_by_text("R2 called suspicious and consensus benign", exact=False).first.wait_for()
        assert wait_plots(page, 3)[1][0]["text"] == counts

        # back to everything, then a session point: R2's labels of the last session
        session.view = None
        wait_count(page, len(ds))
        wait_plots(page, 3)
        last = names[-1]
        click_until_count(page, 2, 0, len(names) - 1, None, int(np.sum(read & (sessions == last))))

        # and a bar: every image R2 called malignant
        session.view = None
        wait_count(page, len(ds))
        wait_plots(page, 3)
        click_until_count(page, 0, 0, 3, None, int(np.sum(r2 == "malignant")))
        page.screenshot(path=str(tmp_path / "reader_profiles_clicked.png"))

        # another reader, picked in the drop-down: the confusion is R1's
        page.get_by_role("button", name="Back to all samples").click()
        wait_count(page, len(ds))
        r1 = _labels(ds, "reader_r1")
        choose(page, "R2", "R1")
        want = [[str(int(np.sum((r1 == ca) & (cons == cb)))) for cb in CLASSES] for ca in CLASSES]
        page.wait_for_function(
            "(want) => { const els = document.querySelectorAll('.js-plotly-plot');"
            " const el = els[1];"
            " return !!(el && el.data && JSON.stringify(el.data[0].text) === want); }",
            arg=json.dumps(want, separators=(",", ":")),
            timeout=120_000,
        )
