"""Reports as a person sees them: pages opened in headless Chromium (Debian's ``chromium``).

:func:`screenshot` takes a picture of a page at a window size; :func:`measure` opens a copy of the
page with a probe script appended (run after the page's own scripts, as a click would be) and
returns what the probe found (layout sizes, what is visible after a click) from the rendered DOM.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
LAPTOP = (1366, 768)  # a common laptop screen


def chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/apt-packages.txt lists it)")
        pytest.skip("chromium is not installed")
    return exe


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def screenshot(page: Path, shot: Path, size=LAPTOP) -> Path:
    proc = _run([f"--window-size={size[0]},{size[1]}", f"--screenshot={shot}", page.as_uri()], shot.parent / "profile")
    assert shot.is_file(), proc.stderr[-2000:]
    return shot


def measure(page: Path, probe_js: str, workdir: Path, size=LAPTOP) -> dict:
    """Run ``probe_js`` (a function body returning a JSON-able value) in ``page`` at ``size``."""
    copy = workdir / f"probed_{page.name}"
    probe = ("<script>(function(){var out;try{out=(function(){" + probe_js + "})();}"
             "catch(e){out={probe_error:String(e)};}"
             "var pre=document.createElement('pre');pre.id='probe-result';"
             "pre.textContent=JSON.stringify(out);document.body.appendChild(pre);})();</script>")
    text = page.read_text(encoding="utf-8")
    copy.write_text(text.replace("</body>", probe + "</body>"), encoding="utf-8")
    proc = _run([f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()],
                workdir / "profile")
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', proc.stdout, re.S)
    assert found, "no probe result in the page (did it load?)"
    result = json.loads(html.unescape(found.group(1)))
    assert not (isinstance(result, dict) and "probe_error" in result), result
    return result


# what a person sees first on a laptop: the page's width against the window's, where a selector's
# first element sits
LAYOUT_JS = """
var first = function (sel) { var e = document.querySelector(sel); if (!e) { return null; }
  var r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, left: r.left, right: r.right,
  text: e.textContent.trim()}; };
return {scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth,
        innerWidth: window.innerWidth, innerHeight: window.innerHeight, first: {SELECTORS}};
"""


def layout(page: Path, workdir: Path, selectors: dict[str, str], size=LAPTOP) -> dict:
    """Width of the page and the box of the first element of each selector (``{name: css}``)."""
    js = LAYOUT_JS.replace("{SELECTORS}", "{" + ",".join(f"{json.dumps(k)}: first({json.dumps(v)})"
                                                        for k, v in selectors.items()) + "}")
    return measure(page, js, workdir, size)


def table_rows(text: str) -> list[dict]:
    """Rows of a report's verdict table (``<tr data-verdict=…>``): verdict, cell texts, image sources."""
    from html.parser import HTMLParser

    rows: list[dict] = []

    class Rows(HTMLParser):
        cell: list[str] | None = None
        inside = False  # in a verdict row (not in another table's row, e.g. a session's)

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "tr":
                self.inside = "data-verdict" in attrs
                if self.inside:
                    rows.append({"verdict": attrs["data-verdict"], "cells": [], "images": []})
            elif self.inside and tag == "td":
                self.cell = []
            elif rows and tag == "img" and self.cell is not None:
                rows[-1]["images"].append(attrs.get("src", ""))

        def handle_endtag(self, tag):
            if tag == "td" and self.cell is not None:
                rows[-1]["cells"].append(" ".join("".join(self.cell).split()))
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    Rows().feed(text)
    return rows
