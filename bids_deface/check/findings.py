"""What the privacy check found: one :class:`Finding` per problem, never the value itself.

A finding names the file (its path in the dataset), the check that fired, where in the file
(a render view, a key path, a column, a line, a header field) and a detail that says why
(a detector and its score, a category of identifying text), so that a curator can look without
the check repeating what it found.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

# check -> what it means, for the report's legend and the terminal
CHECKS: dict[str, str] = {
    "face": "a face detector finds a face on a render of the head surface",
    "ears": "an auricle stands out of the side of the head in a profile render",
    "header": "a NIfTI header text field holds text",
    "extension": "the NIfTI header carries an extension (converters store DICOM headers there)",
    "key": "a sidecar key outside the allow-list (BIDS keys minus identifying ones, plus the policy)",
    "text": "identifying free text (names, dates, numbers, addresses …) in a value",
    "date": "a date that was not shifted away from the real one",
    "column": "a table column outside the allow-list",
    "age": "an age over 89 (HIPAA: to be aggregated)",
    "dicom": "a DICOM file (patient header and un-defaced pixels; not checked further)",
    "unreadable": "the file could not be read, so it could not be checked",
}


@dataclass(frozen=True, order=True)
class Finding:
    """One problem in one file: ``check`` (a key of :data:`CHECKS`) at ``where``, because ``detail``."""

    path: str
    check: str
    where: str = ""
    detail: str = ""

    def line(self) -> str:
        where = f" at {self.where}" if self.where else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.check}{where}{detail}"


@dataclass
class FileResult:
    """Everything checked in one file: its findings, the figures behind them, timings."""

    path: str
    kind: str  # image, sidecar, table, text, description, json
    findings: list[Finding] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)  # view name -> PNG file (image checks)
    facts: dict = field(default_factory=dict)  # scores, views looked at, seconds (no values)

    @property
    def flagged(self) -> bool:
        return bool(self.findings)

    def to_json(self) -> dict:
        return {"path": self.path, "kind": self.kind, "flagged": self.flagged,
                "findings": [asdict(f) for f in self.findings], "figures": dict(self.figures),
                "facts": self.facts}

    @classmethod
    def from_json(cls, data: dict) -> "FileResult":
        return cls(data["path"], data["kind"], [Finding(**f) for f in data.get("findings", [])],
                   dict(data.get("figures", {})), dict(data.get("facts", {})))


def summary_line(result: FileResult, most: int = 3) -> str:
    """One terminal line per flagged file: each check once, with up to ``most`` places."""
    by_check: dict[str, list[str]] = {}
    for f in result.findings:
        by_check.setdefault(f.check, []).append(f.where or f.detail)
    parts = []
    for check, places in by_check.items():
        places = [p for p in dict.fromkeys(places) if p]
        shown = ", ".join(places[:most]) + (f" and {len(places) - most} more" if len(places) > most else "")
        parts.append(f"{check} ({shown})" if shown else check)
    return f"{result.path}: " + "; ".join(parts)


TSV_COLUMNS = ("path", "check", "where", "detail")


def findings_tsv(results: list[FileResult]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(TSV_COLUMNS)
    for result in results:
        for f in result.findings:
            writer.writerow([f.path, f.check, f.where, f.detail])
    return out.getvalue()


def write_tables(report_dir: Path, results: list[FileResult], summary: dict) -> tuple[Path, Path]:
    """``check.tsv`` (one row per finding) and ``check.json`` (every file, flagged or not)."""
    tsv, js = Path(report_dir) / "check.tsv", Path(report_dir) / "check.json"
    tsv.write_text(findings_tsv(results), encoding="utf-8")
    files = []
    for r in results:
        entry = r.to_json()
        entry["figures"] = sorted(entry["figures"])  # view names; the PNGs live in the HTML
        files.append(entry)
    js.write_text(json.dumps({**summary, "files": files}, indent=2) + "\n", encoding="utf-8")
    return tsv, js
