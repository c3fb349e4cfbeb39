"""The validator's findings as a person reads them: one short block grouped by code on the
terminal, every finding in a TSV file in the output's ``logs/`` (paths relative to the dataset)."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import logging
import uuid
from collections import defaultdict
from pathlib import Path

from bids_deface.dataset.atomic import write_text_atomic
from bids_deface.dataset.validate import Issue, Validation, validate_selection

LOGGER = logging.getLogger("bids_deface")
FILES_SHOWN = 3
CODES_SHOWN = 10


def _first_sentence(text: str, limit: int = 110) -> str:
    sentence = text.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def grouped(issues: list[Issue]) -> list[tuple[str, list[str]]]:
    """(code, sorted distinct locations), the most frequent code first."""
    by_code: dict[str, set[str]] = defaultdict(set)
    for issue in issues:
        by_code[issue.code].add(issue.location or "(the dataset)")
    return sorted(((code, sorted(files)) for code, files in by_code.items()), key=lambda kv: (-len(kv[1]), kv[0]))


def summary_lines(issues: list[Issue], messages: dict[str, str]) -> list[str]:
    """One line per code (at most :data:`CODES_SHOWN`): how many files, the first few, what it means."""
    lines = []
    groups = grouped(issues)
    for code, files in groups[:CODES_SHOWN]:
        shown = ", ".join(files[:FILES_SHOWN])
        more = f" and {len(files) - FILES_SHOWN} more" if len(files) > FILES_SHOWN else ""
        meaning = f" ({_first_sentence(messages[code])})" if messages.get(code) else ""
        lines.append(f"  {code}: {len(files)} file(s): {shown}{more}{meaning}")
    if len(groups) > CODES_SHOWN:
        lines.append(f"  … and {len(groups) - CODES_SHOWN} more kind(s) of error")
    return lines


def counts(issues: list[Issue], noun: str) -> str:
    """``3 error(s) of 2 kind(s)``."""
    return f"{len(issues)} {noun}(s) of {len({i.code for i in issues})} kind(s)"


def report_tsv(validation: Validation) -> str:
    """Every finding: severity, code, schema name, file (relative), and the validator's text."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["severity", "code", "sub_code", "location", "meaning"])
    order = {"error": 0, "warning": 1}
    for issue in sorted(validation.issues, key=lambda i: (order.get(i.severity, 2), i.code, i.location, i.sub_code)):
        writer.writerow([issue.severity, issue.code, issue.sub_code or "n/a", issue.location or "n/a",
                         validation.messages.get(issue.code, "n/a")])
    return out.getvalue()


def write_report(path: Path, validation: Validation) -> Path:
    write_text_atomic(path, report_tsv(validation))
    return path


class InvalidDataset(ValueError):
    """The files a run reads have validator errors (the message is one line; the block before it
    in the log lists them)."""


def check_input(bids_dir: Path, participants, *, cache_dir: Path, report_dir: Path,
                output_dir: Path | None = None) -> Validation:
    """Validate what a run on ``participants`` (all when None) reads, once (cached), and tell
    the curator: errors as one block grouped by code, every finding in a TSV in ``report_dir``
    (named relative to ``output_dir`` in the lines the log file keeps). Raises :class:`InvalidDataset` when there are errors."""
    validation = validate_selection(bids_dir, participants, cache_dir=cache_dir)
    scope = "the dataset" if participants is None else \
        f"the dataset-level files and {_participants(participants)}"
    if validation.reused:
        LOGGER.info("input validated: the validation of %s reused (no file of %s has changed since)",
                    validation.validated.replace("T", " "), scope)
    if not validation.issues:
        return validation
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "_" + uuid.uuid4().hex[:6]
    report = write_report(report_dir / f"bids-validator_{stamp}.tsv", validation)
    shown = report.relative_to(output_dir) if output_dir and output_dir in report.parents else report
    errors = validation.errors
    if errors:  # names files: said on the terminal only (the run stops before its log file opens)
        LOGGER.error("invalid input dataset: %s in %s; every finding in %s", counts(errors, "error"), scope, report)
        for line in summary_lines(errors, validation.messages):
            LOGGER.error("%s", line)
        raise InvalidDataset(f"{bids_dir} is not a valid BIDS dataset ({len(errors)} error(s) above)")
    LOGGER.info("input valid; bids-validator-deno: %s (every finding in %s)",
                counts(validation.warnings, "warning"), shown)
    return validation


def _participants(labels) -> str:
    shown = ", ".join(f"sub-{label}" for label in labels[:5])
    return shown + (f" and {len(labels) - 5} more participant(s)" if len(labels) > 5 else "")
