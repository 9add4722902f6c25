"""Screenshot a page of the running App with Debian's headless Chromium.

    .venv/bin/python scripts/screenshot.py http://127.0.0.1:5151 docs/app.png [--wait 8]

Used to look at what a person sees; the browser tests drive Chromium the same way.
"""

from __future__ import annotations

import argparse
import shutil

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("Debian's chromium is not installed (apt-get install chromium)")
    return path


def screenshot(
    url: str, out: str, *, wait_s: float = 8.0, width: int = 1600, height: int = 1000
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_timeout(wait_s * 1000)
        dismiss_banners(page)
        page.screenshot(path=out)
        browser.close()


def dismiss_banners(page) -> None:
    """Close the App's advertising pop-over, then its analytics banner, so they hide nothing."""
    for text in ("Dismiss", "Disable"):
        loc = page.get_by_text(text, exact=True)
        if loc.count():
            loc.first.click(force=True)
            page.wait_for_timeout(400)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--wait", type=float, default=8.0)
    args = parser.parse_args()
    screenshot(args.url, args.out, wait_s=args.wait)
