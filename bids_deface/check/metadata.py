"""Check the metadata of a dataset with the rules bids-deface scrubs by: the allow-list and the
free-text PHI detection of :mod:`bids_deface.metadata`, read-only, reporting names, never values.

- a BIDS sidecar (``sub-*/…/*.json`` and the inherited ones at the top): every key outside the
  policy's allow-list, identifying text in the keys the policy scans (with the values of the
  sidecar's own identifying keys searched for everywhere), dates of the keys it shifts that were
  not shifted (a year after :data:`SHIFTED_BEFORE`);
- a BIDS table (participants, sessions, scans, phenotype, samples): columns outside the
  allow-list, unshifted ``acq_time``, ages over 89, identifying text in the columns it scans;
- a table's sidecar (``participants.json`` …): descriptions of columns outside the allow-list,
  identifying text in the descriptions;
- a segmentation's lookup table (``*dseg.tsv``): columns BIDS defines for it, names scanned;
- ``dataset_description.json``: keys that BIDS does not define for it (its authors and
  acknowledgements are meant to name people, so its text is not scanned);
- README, CHANGES, ``*.txt``, ``*.md`` …: identifying text, by line;
- any other JSON (a tool's logs): identifying text in its strings, dates aside (a log's
  timestamps are the run's, not the subject's).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path, PurePosixPath

from bids_deface.check.findings import FileResult, Finding
from bids_deface.dataset.sidecars import SidecarError, read_sidecar
from bids_deface.metadata import (find_phi, is_text_file, known_patterns, known_values_from_sidecar,
                                  load_metadata_policy, table_kind)
from bids_deface.metadata.policy import bids_allowlist

SHIFTED_BEFORE = 1900  # bids-deface shifts dates to 1800-01-01; no scan is older than this
# the provenance bids-deface writes into its own sidecars (bids_deface.dataset.provenance):
# names and numbers; kept, and its text scanned like any other
PROVENANCE_KEYS = ("BidsDeface",)
DESCRIPTION_KEYS = ("Name", "BIDSVersion", "DatasetType")
AGE_CAP = 89
# BIDS's columns of a segmentation lookup table (derivatives, "Common image-derived labels")
LOOKUP_COLUMNS = ("index", "name", "abbreviation", "color", "mapping")


def _strings(value, path: str):
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{path or '(top level)'} (a key)", str(key)
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


def _text_findings(path: str, where: str, value, patterns, skip=()) -> list[Finding]:
    out = []
    for place, text in _strings(value, where):
        categories = sorted({f.category for f in find_phi(text, patterns=patterns)} - set(skip))
        if categories:
            out.append(Finding(path, "text", place, ", ".join(categories)))
    return out


def real_date(value) -> bool:
    """Whether ``value`` is a date or date-time of the last centuries (not one shifted away)."""
    match = re.match(r"\s*(\d{4})-?(\d{2})-?(\d{2})", str(value))
    if not match:
        return False
    try:
        moment = datetime(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return False
    return moment.year >= SHIFTED_BEFORE


def check_sidecar(path: str, metadata: dict, policy=None) -> list[Finding]:
    """An image's sidecar against the allow-list (see the module docstring)."""
    policy = load_metadata_policy() if policy is None else policy
    patterns = known_patterns(known_values_from_sidecar(metadata, policy))
    out = []
    for key, value in metadata.items():
        rule = None if key in PROVENANCE_KEYS else policy.sidecar_rule(key)
        if key in PROVENANCE_KEYS or (rule is not None and (rule.action == "scan" or policy.is_mapping(key))):
            out += _text_findings(path, key, value, patterns)
        elif rule is None:
            out.append(Finding(path, "key", key, "not on the allow-list"))
        elif rule.action == "shift" and real_date(value):
            out.append(Finding(path, "date", key, "not shifted"))
    return out


def check_table_sidecar(path: str, metadata: dict, kind: str, policy=None) -> list[Finding]:
    policy = load_metadata_policy() if policy is None else policy
    out = []
    for column, description in metadata.items():
        if policy.column_rule(column, kind) is None:
            out.append(Finding(path, "column", column, "describes a column outside the allow-list"))
        else:
            out += _text_findings(path, column, description, ())
    return out


def check_description(path: str, metadata: dict) -> list[Finding]:
    allowed = set(bids_allowlist()["excluded_dataset_level"]) | set(DESCRIPTION_KEYS)
    return [Finding(path, "key", key, "not a dataset_description key") for key in metadata if key not in allowed]


def check_table(path: str, file: Path, kind: str, policy=None) -> list[Finding]:
    """A BIDS table (TSV) against the allow-list."""
    import pandas as pd

    policy = load_metadata_policy() if policy is None else policy
    df = pd.read_csv(file, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    out = []
    for column in df.columns:
        rule = policy.column_rule(column, kind)
        if rule is None:
            out.append(Finding(path, "column", column, "not on the allow-list"))
            continue
        cells = df[column].tolist()
        if column == "acq_time" and policy.acq_time != "keep":
            rows = [i + 2 for i, v in enumerate(cells) if real_date(v)]
            if rows:
                out.append(Finding(path, "date", column, f"not shifted on {len(rows)} row(s), e.g. line {rows[0]}"))
        elif column == "age":
            rows = [i + 2 for i, v in enumerate(cells) if _over_cap(v)]
            if rows:
                out.append(Finding(path, "age", column, f"over {AGE_CAP} on {len(rows)} row(s), e.g. line {rows[0]}"))
        elif rule.action in ("scan", "value"):
            for i, cell in enumerate(cells):
                categories = sorted({f.category for f in find_phi(cell)})
                if categories:
                    out.append(Finding(path, "text", f"{column} line {i + 2}", ", ".join(categories)))
    return out


def check_lookup(path: str, file: Path) -> list[Finding]:
    """A segmentation's lookup table: only BIDS's columns; its label names scanned."""
    import pandas as pd

    df = pd.read_csv(file, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    out = [Finding(path, "column", c, "not a lookup-table column") for c in df.columns if c not in LOOKUP_COLUMNS]
    for i, cell in enumerate(df["name"] if "name" in df.columns else []):
        categories = sorted({f.category for f in find_phi(cell)})
        if categories:
            out.append(Finding(path, "text", f"name line {i + 2}", ", ".join(categories)))
    return out


def _over_cap(value: str) -> bool:
    try:
        return float(value) > AGE_CAP
    except ValueError:
        return False


def check_text(path: str, text: str, skip=()) -> list[Finding]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        categories = sorted({f.category for f in find_phi(line)} - set(skip))
        if categories:
            out.append(Finding(path, "text", f"line {number}", ", ".join(categories)))
    return out


def metadata_kind(relpath: str) -> str | None:
    """How a file is checked: sidecar, table_sidecar, description, table, text, json; or None."""
    path = PurePosixPath(relpath)
    bids_place = len(path.parts) == 1 or path.parts[0].startswith("sub-") or path.parts[0] == "phenotype"
    if relpath == "dataset_description.json":
        return "description"
    if path.suffix == ".json":
        if bids_place and table_kind(str(path.with_suffix(".tsv"))):
            return "table_sidecar"
        return "sidecar" if bids_place else "json"
    if path.suffix == ".tsv":
        return "table" if table_kind(relpath) else "lookup" if path.name.endswith("dseg.tsv") else "text"
    if is_text_file(relpath):
        return "text"
    return None


def check_metadata_file(file: Path, relpath: str, policy=None) -> FileResult:
    """Every metadata check of one file (``kind`` from :func:`metadata_kind`)."""
    kind = metadata_kind(relpath) or "text"
    result = FileResult(relpath, kind)
    policy = load_metadata_policy() if policy is None else policy
    try:
        if kind in ("sidecar", "table_sidecar", "description", "json"):
            data = read_sidecar(file, relpath) if kind != "json" else json.loads(Path(file).read_text("utf-8-sig"))
            if kind == "sidecar" and isinstance(data, dict):
                result.findings += check_sidecar(relpath, data, policy)
            elif kind == "table_sidecar" and isinstance(data, dict):
                table = table_kind(str(PurePosixPath(relpath).with_suffix(".tsv")))
                result.findings += check_table_sidecar(relpath, data, table, policy)
            elif kind == "description" and isinstance(data, dict):
                result.findings += check_description(relpath, data)
            else:
                result.findings += _text_findings(relpath, "", data, (), skip=("date",))
        elif kind == "table":
            result.findings += check_table(relpath, file, table_kind(relpath), policy)
        elif kind == "lookup":
            result.findings += check_lookup(relpath, file)
        else:
            result.findings += check_text(relpath, Path(file).read_text("utf-8", errors="replace"))
    except (SidecarError, OSError, ValueError, UnicodeDecodeError) as exc:
        reason = str(exc).split(": ", 1)[-1] if isinstance(exc, SidecarError) else type(exc).__name__
        result.findings.append(Finding(relpath, "unreadable", "", reason))
    return result
