"""A PNG screenshot of an HTML report (for the README), taken by headless Chromium.

    python scripts/report_screenshot.py report.html docs/report.png [--width 1200] [--full]

Uses Debian's `chromium` (apt-get install chromium) through Playwright's Python package;
`playwright install` (which downloads browsers) is not needed. Background networking is
off: a report must render with no request, and this script would not hide one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1600, help="viewport height")
    parser.add_argument("--full", action="store_true", help="the whole page, not the viewport")
    parser.add_argument("--chromium", default=CHROMIUM)
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        print(f"no Chromium at {args.chromium}: apt-get install chromium", file=sys.stderr)
        return 2
    with sync_playwright() as pw:
        # chromium_sandbox=False adds --no-sandbox (needed as root); Playwright gives the
        # browser a fresh temporary profile (user-data-dir).
        browser = pw.chromium.launch(
            executable_path=args.chromium, args=ARGS, chromium_sandbox=False
        )
        try:
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(args.html.resolve().as_uri(), wait_until="load")
            page.screenshot(path=str(args.png), full_page=args.full)
        finally:
            browser.close()
    others = [u for u in requests if u != args.html.resolve().as_uri()]
    if others:
        print(f"warning: the page made {len(others)} request(s): {others[:3]}", file=sys.stderr)
    print(f"{args.png} written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
