"""Self-contained HTML reports: one ``sub-<label>.html`` per participant and a group ``index.html``.

Every figure is embedded as a ``data:`` URI and the styles are inline, so a report is one
file that opens anywhere, offline, with no external URL. Reports show renders of the
*original* faces: they belong with the curator, never in a shared dataset.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

STYLE = """
body{font-family:sans-serif;margin:1.5em;background:#fafafa;color:#222;max-width:1400px}
h1{font-size:1.6em} h2{font-size:1.3em;border-bottom:1px solid #ccc;padding-top:.6em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left}
th{background:#eee} .fail{background:#f8d0d0;color:#700;font-weight:bold} .ok{background:#d6f0d6;color:#064}
.flag{background:#fff0c0;color:#640} img{max-width:100%;border:1px solid #999;background:#000}
.warn{border:2px solid #c60;background:#fff4e0;padding:.5em 1em;margin:1em 0}
code{background:#eee;padding:0 .2em}
"""
PRIVACY = ("These figures show the <b>original</b> face. Keep this report with the data curator; "
           "never share it with the defaced data.")


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(path: str | Path | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    kind = "image/svg+xml" if str(path).endswith(".svg") else "image/png"
    return f"data:{kind};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _figure(path, caption: str) -> str:
    uri = _data_uri(path)
    if uri is None:
        return f'<p class="flag">{_esc(caption)}: figure missing ({_esc(Path(path).name if path else "none")})</p>'
    return f'<figure><img src="{uri}" alt="{_esc(caption)}"><figcaption>{_esc(caption)}</figcaption></figure>'


def _score(v) -> str:
    return "&ndash;" if v is None else f"{v:.2f}"


def _scores_table(face: dict) -> str:
    if not face or not face.get("enabled"):
        return "<p class=\"flag\">Face check turned off for this run.</p>"
    views = list(face.get("views", {}))
    head = "".join(f"<th>{_esc(v)}</th>" for v in views)
    rows = []
    for when in ("before", "after"):
        for det, per_view in face.get(when, {}).items():
            thr = face.get("thresholds", {}).get(det)
            cells = []
            for v in views:
                s = per_view.get(v)
                hit = s is not None and thr is not None and s >= thr
                cls = (' class="fail"' if when == "after" else ' class="ok"') if hit else ""
                cells.append(f"<td{cls}>{_score(s)}</td>")
            rows.append(f"<tr><td>{when}</td><td>{_esc(det)} (&ge; {thr})</td>{''.join(cells)}</tr>")
    return (f"<table><tr><th>renders</th><th>detector (finds a face at)</th>{head}</tr>{''.join(rows)}</table>"
            "<p>A score is the detector's best face on that render; &ndash; means no candidate at all.</p>")


def _status(image: dict) -> tuple[str, str]:
    if image.get("error"):
        return "fail", "error"
    if image.get("failed"):
        return "fail", "failed"
    if image.get("flags"):
        return "flag", "flagged"
    return "ok", "passed"


def _image_section(image: dict) -> str:
    name = image.get("image") or image.get("stem") or "image"
    cls, word = _status(image)
    parts = [f'<h2 id="{_esc(name)}">{_esc(name)} <span class="{cls}">{word}</span></h2>']
    if image.get("error"):
        parts.append(f'<p class="fail">Error: {_esc(image["error"])}</p>')
    for msg in image.get("failures", []):
        parts.append(f'<p class="fail">{_esc(msg)}</p>')
    for msg in image.get("flags", []):
        parts.append(f'<p class="flag">{_esc(msg)}</p>')
    facts = [("face detected after defacing", image.get("face_detected_after")),
             ("face detected on the original", image.get("face_detected_before")),
             ("brain voxels changed", image.get("brain_voxels_changed")),
             ("brain mask voxels", image.get("brain_mask_voxels")),
             ("brain mask volume (litres)", image.get("brain_mask_litres")),
             ("brain mask", image.get("brain_mask_method")),
             ("voxels distorted per feature", image.get("distorted_voxels")),
             ("detector confidence per feature", image.get("feature_confidence")),
             ("QC seconds", image.get("seconds"))]
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(json.dumps(v) if isinstance(v, (dict, list)) else v)}</td></tr>"
                   for k, v in facts if v is not None)
    parts.append(f"<table>{rows}</table>")
    scrubbed = image.get("scrubbed_keys")
    if scrubbed is not None:
        items = "".join(f"<li><code>{_esc(k)}</code></li>" for k in scrubbed) or "<li>none</li>"
        parts.append(f"<h3>Metadata keys removed (names only)</h3><ul>{items}</ul>")
    figs = image.get("figures", {})
    parts.append(_figure(figs.get("render"), "Head surface before (top) and after (bottom) defacing"))
    parts.append("<h3>Face detector scores</h3>" + _scores_table(image.get("face_check", {})))
    parts.append(_figure(figs.get("labels"), "Detected features: eyes (red), nose (green), ears (blue)"))
    parts.append(_figure(figs.get("brain"), "Defaced image: brain mask (yellow outline), changed voxels (magenta)"))
    return "\n".join(parts)


def write_participant_report(out_html: Path, participant: str, images: list[dict]) -> Path:
    """Write ``out_html`` (``sub-<label>.html``) for one participant.

    ``images``: one dict per image as returned by :func:`bids_deface.qc.run_qc`, optionally
    with ``error`` (a message), ``scrubbed_keys`` (names), ``distorted_voxels`` and
    ``feature_confidence`` added by the caller. Figures are embedded from their paths.
    """
    out_html = Path(out_html)
    label = participant.removeprefix("sub-")
    n_fail = sum(_status(i)[0] == "fail" for i in images)
    n_flag = sum(_status(i)[0] == "flag" for i in images)
    toc = "".join(f'<li><a href="#{_esc(i.get("image", "image"))}">{_esc(i.get("image", "image"))}</a> '
                  f'<span class="{_status(i)[0]}">{_status(i)[1]}</span></li>' for i in images)
    body = "\n".join(_image_section(i) for i in images)
    doc = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>bids-deface: sub-{_esc(label)}</title>"
           f"<style>{STYLE}</style></head><body><h1>bids-deface quality control: sub-{_esc(label)}</h1>"
           f'<p class="warn">{PRIVACY}</p>'
           f"<p>{len(images)} image(s): {n_fail} failed, {n_flag} flagged.</p><ul>{toc}</ul>{body}</body></html>")
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(doc, encoding="utf-8")
    return out_html


def write_group_index(out_html: Path, rows: list[dict]) -> Path:
    """Write the group ``index.html``: one row per image, linking to its participant report.

    Each row: ``participant``, ``image`` and optionally ``report`` (path of the participant's
    HTML; linked relative to ``out_html``), ``face_detected_after``, ``brain_voxels_changed``,
    ``failed``, ``flags``, ``error``.
    """
    out_html = Path(out_html)
    lines = []
    for r in rows:
        cls, word = _status(r)
        report = r.get("report")
        if report:
            try:
                href = Path(report).resolve().relative_to(out_html.parent.resolve()).as_posix()
            except ValueError:
                href = Path(report).name
            link = f'<a href="{_esc(href)}#{_esc(r.get("image", ""))}">{_esc(r.get("participant", ""))}</a>'
        else:
            link = _esc(r.get("participant", ""))
        face = r.get("face_detected_after")
        lines.append(f"<tr><td>{link}</td><td>{_esc(r.get('image', ''))}</td><td class=\"{cls}\">{word}</td>"
                     f"<td>{'&ndash;' if face is None else ('yes' if face else 'no')}</td>"
                     f"<td>{'&ndash;' if r.get('brain_voxels_changed') is None else _esc(r['brain_voxels_changed'])}</td>"
                     f"<td>{_esc(r.get('error') or '; '.join(r.get('failures', []) + r.get('flags', [])))}</td></tr>")
    n_fail = sum(_status(r)[0] == "fail" for r in rows)
    doc = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>bids-deface: group report</title>"
           f"<style>{STYLE}</style></head><body><h1>bids-deface quality control: all images</h1>"
           f"<p>{len(rows)} image(s), {n_fail} failed.</p>"
           "<table><tr><th>participant</th><th>image</th><th>status</th><th>face detected after</th>"
           f"<th>brain voxels changed</th><th>notes</th></tr>{''.join(lines)}</table></body></html>")
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(doc, encoding="utf-8")
    return out_html
