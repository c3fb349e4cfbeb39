"""The check's HTML report: one self-contained file (styles inline, renders as ``data:`` URIs).

It lists every flagged file with its findings (check, where, why; never a value) and the renders
that triggered the image checks: a face detector's view, or a profile with the protruding
auricle outlined in blue. Those renders show what was found, a face or an ear: the report
belongs with the curator, not with the shared data.
"""

from __future__ import annotations

import base64
from pathlib import Path

from jinja2 import Environment, select_autoescape

from bids_deface.check.findings import CHECKS, FileResult

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>bids-deface check: {{ dataset }}</title>
<style>
body{font-family:sans-serif;margin:1.5em;background:#fafafa;color:#222;max-width:1400px}
h1{font-size:1.5em} h2{font-size:1.15em;border-bottom:1px solid #ccc;padding-top:.6em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left}
th{background:#eee} .flag{background:#f8d0d0;color:#700;font-weight:bold} .ok{background:#d6f0d6;color:#064}
.warn{border:2px solid #c60;background:#fff4e0;padding:.5em 1em;margin:1em 0}
figure{display:inline-block;margin:.3em} img{border:1px solid #999;background:#000;width:256px}
figcaption{font-size:.85em}
</style></head><body>
<h1>bids-deface check: {{ dataset }}</h1>
<p class="warn">The renders below show what the check found (faces, ears). Keep this report with the
curator; never share it with the data.</p>
<p>{{ n_files }} file(s) checked ({{ n_images }} image(s) rendered), <span class="{{ 'flag' if n_flagged else 'ok' }}">
{{ n_flagged }} flagged</span>, {{ n_findings }} finding(s). Views: yaws {{ yaws }}, pitches {{ pitches }}.</p>
<table><tr><th>check</th><th>what it means</th><th>findings</th></tr>
{% for check, meaning in checks.items() if counts.get(check) %}
<tr><td>{{ check }}</td><td>{{ meaning }}</td><td>{{ counts[check] }}</td></tr>{% endfor %}
</table>
{% for r in flagged %}
<h2 id="f{{ loop.index }}">{{ r.path }} <span class="flag">flagged</span></h2>
<table><tr><th>check</th><th>where</th><th>why</th></tr>
{% for f in r.findings %}<tr><td>{{ f.check }}</td><td>{{ f.where }}</td><td>{{ f.detail }}</td></tr>{% endfor %}
</table>
{% for view, uri in r.uris %}<figure><img src="{{ uri }}" alt="{{ view }}"><figcaption>{{ view }}</figcaption></figure>{% endfor %}
{% endfor %}
{% if not flagged %}<p class="ok">Nothing found.</p>{% endif %}
</body></html>
"""


def _uri(png: str) -> str | None:
    path = Path(png)
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def write_report(out_html: Path, dataset: str, results: list[FileResult], yaws, pitches) -> Path:
    """Write the report for ``results`` (every file checked) to ``out_html``."""
    flagged = []
    for r in results:
        if r.flagged:
            uris = [(view, uri) for view, png in sorted(r.figures.items()) if (uri := _uri(png))]
            flagged.append({"path": r.path, "findings": r.findings, "uris": uris})
    counts: dict[str, int] = {}
    for r in results:
        for f in r.findings:
            counts[f.check] = counts.get(f.check, 0) + 1
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    html = env.from_string(TEMPLATE).render(
        dataset=dataset, n_files=len(results), n_images=sum(r.kind == "image" and "views" in r.facts for r in results),
        n_flagged=len(flagged), n_findings=sum(counts.values()), checks=CHECKS, counts=counts, flagged=flagged,
        yaws=", ".join(f"{y:+g}°" for y in yaws), pitches=", ".join(f"{p:+g}°" for p in pitches))
    out_html = Path(out_html)
    out_html.write_text(html, encoding="utf-8")
    return out_html
