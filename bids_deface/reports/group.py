"""The group summary: one row per image (its verdict, the reason, features found, voxels distorted,
QC's findings), as TSV (for tools) and HTML (for people: sortable, filterable by verdict, a
thumbnail of each defaced image; below it each session's distorted regions in its reference's
space, :mod:`bids_deface.reports.sessions`); and the curator's QC reports from the same records.

Reads the per-image records that the participant level leaves in ``logs/images/`` and lists
the selected images of the input dataset that have none as ``not processed``. The verdict is the
record's: the one the participant level's CLI line and exit status gave.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

from bids_deface.dataset.naming import parse_name, strip_extension
from bids_deface.dataset.select import FaceImage
from bids_deface.features import FEATURES
from bids_deface.reports.templating import png_uri, render, verdict_counts, write_html

LOGGER = logging.getLogger("bids_deface")
SUMMARY_TSV = "group_summary.tsv"
SUMMARY_HTML = "group_summary.html"
COLUMNS = (
    "image", "subject", "session", "suffix", "status",
    *(f"{f}_found" for f in FEATURES),
    *(f"{f}_voxels" for f in FEATURES),
    *(f"{f}_confidence" for f in FEATURES),
    "face_detected_after", "ears_left_after", "brain_voxels_changed", "qc_override", "features", "warnings",
    "error", "output",
)


def read_records(output_dir: Path) -> dict[str, dict]:
    """{source relpath: record} from ``output_dir/logs/images/*.json``."""
    records = {}
    for path in sorted((output_dir / "logs" / "images").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            LOGGER.warning("%s: unreadable record (%s)", path, exc)
            continue
        records[record.get("Source", path.stem)] = record
    return records


def summary_rows(records: dict[str, dict], images: list[FaceImage] | None = None) -> list[dict]:
    """One row per image: those selected in the input (when given) and those with a record."""
    by_path = {image.relpath: image for image in images or []}
    rows = []
    for relpath in sorted(set(by_path) | set(records)):
        record = records.get(relpath, {})
        prov = record.get("Provenance", {})
        pairs, suffix = _entities(relpath)
        row = {
            "image": relpath,
            "subject": pairs.get("sub", ""),
            "session": pairs.get("ses", ""),
            "suffix": suffix,
            "status": record.get("Status", "not processed"),
            "features": " ".join(prov.get("Features", [])),
            "warnings": "; ".join(prov.get("Warnings", [])),
            "error": record.get("Error", ""),
            "output": record.get("Outputs", {}).get("image", ""),
            "face_detected_after": _yes_no(prov.get("QC", {}).get("FaceDetectedAfter")),
            "ears_left_after": _yes_no(prov.get("QC", {}).get("EarsLeft")),
            "brain_voxels_changed": prov.get("QC", {}).get("BrainVoxelsChanged", ""),
            "qc_override": " ".join(prov.get("QC", {}).get("Override", [])),
        }
        for feature in FEATURES:
            row[f"{feature}_found"] = prov.get("DetectedComponents", {}).get(feature, "")
            row[f"{feature}_voxels"] = prov.get("VoxelCounts", {}).get(feature, "")
            row[f"{feature}_confidence"] = prov.get("DetectorConfidence", {}).get(feature, "")
        rows.append(row)
    return rows


def _yes_no(value) -> str:
    return "" if value is None else ("yes" if value else "no")


def _entities(relpath: str) -> tuple[dict, str]:
    try:
        pairs, suffix, _ = parse_name(Path(relpath).name)
    except ValueError:
        return {}, ""
    return dict(pairs), suffix


def summary_tsv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("n/a" if row.get(k, "") == "" else row[k]) for k in COLUMNS})
    return out.getvalue()


def _thumbnail(output_dir: Path | None, row: dict) -> tuple[str | None, str]:
    """(data: URI of the defaced output's render, or None; why there is none)."""
    if row["status"] != "defaced":
        return None, "not written" if row["status"] in ("refused", "failed") else "–"
    if output_dir is None or not row.get("output"):
        return None, "no output named"
    path = (Path(output_dir) / row["output"]).resolve()
    if Path(output_dir).resolve() not in path.parents or not path.is_file():
        return None, "output missing"
    from bids_deface.reports.thumbnail import thumbnail_png

    try:
        return png_uri(thumbnail_png(path)), ""
    except Exception as exc:  # an output that cannot be rendered: say so, summarise the rest
        LOGGER.warning("%s: no thumbnail (%s)", row["output"], type(exc).__name__)
        return None, "cannot be rendered"


def _html_row(row: dict, output_dir: Path | None) -> dict:
    thumb, no_thumb = _thumbnail(output_dir, row)
    notes = [f"Released with --qc-override {row['qc_override']}: QC's findings were overridden."] if row.get(
        "qc_override") else []
    notes += [w for w in row["warnings"].split("; ") if w]
    face = row["face_detected_after"]
    if row["ears_left_after"] == "yes":
        face = f"{face}, ear left" if face else "ear left"
    reason = row["error"].removeprefix(f"{row['image']}: ")  # the row names the image already
    if row["status"] == "not processed":
        reason = "no record: the participant level has not run on it"
    return {"status": row["status"], "image": row["image"], "path": row["image"].split("/"), "thumb": thumb,
            "no_thumb": no_thumb, "reason": reason, "notes": notes, "face_after": face, "brain_changed": row["brain_voxels_changed"],
            "voxels": {f: row[f"{f}_voxels"] for f in FEATURES},
            "confidence": {f: row[f"{f}_confidence"] for f in FEATURES}}


def summary_html(rows: list[dict], title: str, output_dir: Path | None = None, sessions=()) -> str:
    """The group summary page; with ``output_dir``, a thumbnail of each defaced output in it;
    ``sessions``: the sessions' overlays (:func:`bids_deface.reports.sessions.session_views`)."""
    from bids_deface.reports.sessions import AGREEMENT

    views = [_html_row(row, output_dir) for row in rows]
    return render("group_summary.html.j2", title=title, rows=views, features=list(FEATURES),
                  counts=verdict_counts([row["status"] for row in rows]), sessions=list(sessions),
                  agreement=AGREEMENT)


def qc_entry(result: dict | None, record: dict, stem: str) -> dict:
    """One image for the QC reports: its QC result (None when QC did not get to it) and what its
    record says (the verdict, the reason, the override, what defacing did)."""
    entry = dict(result) if result else {"image": stem}
    prov = record.get("Provenance", {})
    entry["status"] = record.get("Status", "not processed")
    if record.get("Error"):
        entry["error"] = record["Error"]
    entry["override"] = list(prov.get("QC", {}).get("Override", entry.get("override", [])))
    for key, field in (("distorted_voxels", "VoxelCounts"), ("feature_confidence", "DetectorConfidence"),
                       ("feature_parts", "DetectedComponents"), ("scrubbed_keys", "ScrubbedSidecarKeys")):
        if field in prov:
            entry[key] = prov[field]
    return entry


def write_qc_reports(qc_dir: Path, output_dir: Path, participants=None) -> list[Path]:
    """``sub-<label>.html`` for each participant (those given, or all) and ``index.html``, in
    ``qc_dir``, from the QC results there and the per-image records (the verdicts)."""
    from bids_deface.reports.participant import write_group_index, write_participant_report

    entries: dict[str, list[dict]] = {}
    for relpath, record in read_records(output_dir).items():
        pairs, _ = _entities(relpath)
        subject, stem = pairs.get("sub", ""), strip_extension(Path(relpath).name)
        result = qc_dir / f"sub-{subject}" / f"{stem}_qc.json"
        if not result.is_file() and not record.get("Error"):
            continue  # defaced by a run without QC
        qc = json.loads(result.read_text()) if result.is_file() else None
        entries.setdefault(subject, []).append(qc_entry(qc, record, stem))
    written, rows = [], []
    for subject, images in sorted(entries.items()):
        report = qc_dir / f"sub-{subject}.html"
        if participants is None or subject in participants:
            written.append(write_participant_report(report, f"sub-{subject}", images))
        rows += [{**image, "participant": f"sub-{subject}", "report": str(report)} for image in images]
    written.append(write_group_index(qc_dir / "index.html", rows))
    return written
