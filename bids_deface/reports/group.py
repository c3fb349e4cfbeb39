"""The group summary: one row per image (status, features found, voxels distorted, errors), as TSV and HTML.

Reads the per-image records that the participant level leaves in ``logs/images/`` and lists
the selected images of the input dataset that have none as ``not processed``.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
from pathlib import Path

from bids_deface.dataset.naming import parse_name, strip_extension
from bids_deface.dataset.select import FaceImage
from bids_deface.features import FEATURES

LOGGER = logging.getLogger("bids_deface")
SUMMARY_TSV = "group_summary.tsv"
SUMMARY_HTML = "group_summary.html"
COLUMNS = (
    "image", "subject", "session", "suffix", "status",
    *(f"{f}_found" for f in FEATURES),
    *(f"{f}_voxels" for f in FEATURES),
    *(f"{f}_confidence" for f in FEATURES),
    "face_detected_after", "brain_voxels_changed", "features", "warnings", "error", "output",
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
            "brain_voxels_changed": prov.get("QC", {}).get("BrainVoxelsChanged", ""),
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


_STATUS_COLOURS = {"defaced": "#d4edda", "refused": "#fff3cd", "failed": "#f8d7da",
                   "not processed": "#e2e3e5"}


def summary_html(rows: list[dict], title: str) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = []
    for row in rows:
        colour = _STATUS_COLOURS.get(row["status"], "#ffffff")
        cells = "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in COLUMNS)
        body.append(f'<tr style="background:{colour}">{cells}</tr>')
    tally = ", ".join(f"{n} {html.escape(status)}" for status, n in sorted(counts.items()))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:0.85em}"
        "td,th{border:1px solid #999;padding:2px 6px;text-align:left}th{background:#eee}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n<p>{len(rows)} image(s): {tally}.</p>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>\n"
        "<p>Voxel counts are the voxels each distortion changed; confidence is the detector's mean "
        "probability inside each feature.</p></body></html>\n"
    )


def write_qc_reports(qc_dir: Path, output_dir: Path, participants=None) -> list[Path]:
    """``sub-<label>.html`` for each participant (those given, or all) and ``index.html``, in
    ``qc_dir``, from the QC results there and the per-image records (for errors)."""
    from bids_deface.qc import write_group_index, write_participant_report

    entries: dict[str, list[dict]] = {}
    for relpath, record in read_records(output_dir).items():
        pairs, _ = _entities(relpath)
        subject, stem = pairs.get("sub", ""), strip_extension(Path(relpath).name)
        result = qc_dir / f"sub-{subject}" / f"{stem}_qc.json"
        entry = json.loads(result.read_text()) if result.is_file() else {"image": stem}
        if record.get("Error"):
            entry["error"] = record["Error"]
        elif not result.is_file():
            continue  # defaced by a run without QC
        entries.setdefault(subject, []).append(entry)
    written, rows = [], []
    for subject, images in sorted(entries.items()):
        report = qc_dir / f"sub-{subject}.html"
        if participants is None or subject in participants:
            written.append(write_participant_report(report, f"sub-{subject}", images))
        rows += [{**image, "participant": f"sub-{subject}", "report": str(report)} for image in images]
    written.append(write_group_index(qc_dir / "index.html", rows))
    return written
