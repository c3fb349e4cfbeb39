"""The curator's QC reports: one ``sub-<label>.html`` per participant and the QC ``index.html``.

Each image shows its verdict first (the same one the CLI, the record and the group summary give),
then the renders, then the numbers, from the templates ``participant.html.j2`` and
``qc_index.html.j2``. They show the *original* face: they belong in the QC folder with the
curator, never in a shared dataset.
"""

from __future__ import annotations

from pathlib import Path

from bids_deface.features import FEATURES
from bids_deface.qc import qc_failed, refusal_reasons
from bids_deface.qc.facecheck import DETECTORS, THRESHOLDS, TITLES
from bids_deface.qc.render import VIEWS, view_title
from bids_deface.reports.templating import file_uri, render, verdict_counts, write_html

FIGURES = (("render", "Head surface before (top) and after (bottom) defacing, from the left profile to the right"),
           ("ears", "Profiles before (top) and after (bottom); what stands out like an ear outlined in blue"),
           ("labels", "Detected features: eyes (red), nose (green), ears (blue)"),
           ("brain", "Defaced image: brain mask (yellow outline), changed voxels (magenta)"))


def verdict_of_entry(entry: dict) -> str:
    """The image's verdict: the record's when known, else what its QC result implies."""
    if entry.get("status"):
        return entry["status"]
    if entry.get("error"):
        return "failed"
    return "refused" if qc_failed(entry, entry.get("override", ())) else "defaced"


def _headline(status: str, entry: dict) -> tuple[str, list[str]]:
    if status == "defaced":
        if entry.get("override"):
            return "Defaced and written, released by the run's override of QC's findings.", []
        return "Defaced and written: every check passed.", []
    if status == "refused":
        reasons = refusal_reasons(entry, entry.get("override", ())) or [entry.get("error") or "refused"]
        return "Refused: not written, because after defacing", reasons
    if status == "failed":
        return "Failed: an error stopped it, nothing was written.", [entry.get("error") or "no reason recorded"]
    return status.capitalize() + ".", []


def _face_table(face: dict) -> dict | None:
    if not face:
        return None
    if not face.get("enabled"):
        return {"enabled": False}
    views = list(face.get("views") or VIEWS)
    rows = []
    for when in ("before", "after"):
        for det in (d for d in DETECTORS if d in face.get(when, {})):
            scores, threshold = face[when][det], THRESHOLDS[det]
            cells = [{"text": "–" if scores.get(v) is None else f"{scores[v]:.2f}",
                      "hit": scores.get(v) is not None and scores[v] >= threshold} for v in views]
            rows.append({"when": "Original" if when == "before" else "Defaced", "after": when == "after",
                         "detector": TITLES.get(det, det), "threshold": f"{threshold:g}", "cells": cells})
    return {"enabled": True, "views": [view_title(VIEWS.get(v, 0.0)).capitalize() for v in views], "rows": rows}


def _view_title(name: str) -> str:
    """``yaw+90_pitch-20`` (the check's view names) in words."""
    try:
        yaw, pitch = (float(part[len(key):]) for part, key in zip(name.split("_"), ("yaw", "pitch")))
    except ValueError:
        return name
    return view_title(yaw, pitch)


def _ears_table(ears: dict) -> dict | None:
    if not ears:
        return None
    before, after = ears.get("areas_before_mm2", {}), ears.get("areas_after_mm2", {})
    rows = [{"view": _view_title(v).capitalize(), "before": before.get(v), "after": after.get(v),
             "seen_before": v in ears.get("seen_before", []), "seen_after": v in ears.get("seen_after", [])}
            for v in sorted(set(before) | set(after), key=lambda v: (v.split("_")[1:], v))]
    fraction = ears.get("distorted_fraction")
    return {"rows": rows, "min_area": f"{ears.get('min_area_mm2', 0):g}", "min_protrusion": f"{ears.get('min_protrusion_mm', 0):g}",
            "fraction": "no ear detected, so nothing" if fraction is None else f"{fraction:.0%}",
            "min_fraction": f"{ears.get('min_distorted_fraction', 0):.0%}"}


def _features(entry: dict) -> list[dict]:
    voxels, confidence = entry.get("distorted_voxels") or {}, entry.get("feature_confidence") or {}
    parts = entry.get("feature_parts") or {}
    if not (voxels or confidence):
        return []
    return [{"feature": f.capitalize(), "parts": parts.get(f), "voxels": voxels.get(f), "confidence": confidence.get(f)}
            for f in FEATURES]


def _numbers(entry: dict) -> list[tuple[str, str]]:
    rows = [("Brain voxels changed", entry.get("brain_voxels_changed")),
            ("Brain mask volume", None if entry.get("brain_mask_litres") is None else f"{entry['brain_mask_litres']:.2f} l"),
            ("Brain mask from", entry.get("brain_mask_method")),
            ("QC time", None if entry.get("seconds") is None else f"{entry['seconds']:.1f} s")]
    return [(label, f"{value:,}" if isinstance(value, int) else str(value)) for label, value in rows if value is not None]


def image_view(entry: dict) -> dict:
    """What the template shows of one image (a QC result, with what the record adds)."""
    name = entry.get("image") or "image"
    status = verdict_of_entry(entry)
    headline, reasons = _headline(status, entry)
    override = sorted(entry.get("override") or [])
    figures = entry.get("figures") or {}
    return {
        "name": name, "anchor": name, "status": status, "headline": headline, "reasons": reasons,
        "override": {"checks": override, "reasons": [r["reason"] for r in entry.get("refusals", [])
                                                     if r["check"] in override]} if override else None,
        "flags": list(entry.get("flags", [])),
        "figures": [(file_uri(figures.get(key)), caption) for key, caption in FIGURES if key in figures],
        "face": _face_table(entry.get("face_check")),
        "ears": _ears_table(entry.get("ears")),
        "features": _features(entry),
        "numbers": _numbers(entry),
        "removed_keys": entry.get("scrubbed_keys"),
    }


def write_participant_report(out_html: Path, participant: str, images: list[dict]) -> Path:
    """Write ``out_html`` (``sub-<label>.html``) for one participant.

    ``images``: one dict per image as returned by :func:`bids_deface.qc.run_qc`, with what the
    image's record adds: ``status`` (its verdict), ``error``, ``override`` (the checks released),
    ``scrubbed_keys`` (names), ``distorted_voxels``, ``feature_confidence``, ``feature_parts``.
    Figures are embedded from their paths.
    """
    label = participant.removeprefix("sub-")
    views = [image_view(entry) for entry in images]
    out_html = Path(out_html)
    return write_html(out_html, render("participant.html.j2", title=f"bids-deface QC: sub-{label}",
                                       participant=f"sub-{label}", images=views))


def _index_row(row: dict, out_dir: Path) -> dict:
    status = verdict_of_entry(row)
    href = None
    if row.get("report"):
        try:
            href = Path(row["report"]).resolve().relative_to(out_dir.resolve()).as_posix()
        except ValueError:
            href = Path(row["report"]).name
        href += f"#{row.get('image', '')}"
    _, reasons = _headline(status, row)
    face = row.get("face_detected_after")
    return {"status": status, "participant": row.get("participant", ""), "image": row.get("image", ""), "href": href,
            "reason": "; ".join(reasons), "notes": list(row.get("flags", [])),
            "face_after": "" if face is None else ("yes" if face else "no"),
            "ears_left": "" if "ears_left" not in row else ("yes" if row["ears_left"] else "no"),
            "brain_changed": row.get("brain_voxels_changed", "")}


def write_group_index(out_html: Path, rows: list[dict]) -> Path:
    """Write the QC ``index.html``: one row per image, linking to its participant report.

    Each row: what :func:`write_participant_report` takes for an image, plus ``participant`` and
    ``report`` (the participant report's path, linked relative to ``out_html``).
    """
    out_html = Path(out_html)
    views = [_index_row(row, out_html.parent) for row in rows]
    return write_html(out_html, render("qc_index.html.j2", title="bids-deface QC: every image", rows=views,
                                       counts=verdict_counts([v["status"] for v in views])))
