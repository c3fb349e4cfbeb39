"""JSON sidecars through the allow-list: only kept keys stay, free text is cleaned, at any depth.

Only key *names* (dotted paths such as ``global.const.PatientName`` or ``Sources[0].URI``) are
reported, never values.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from bids_deface.metadata.methods import Deidentifier
from bids_deface.metadata.phi import clean_text, known_patterns
from bids_deface.metadata.policy import MetadataPolicy, Rule, bids_allowlist, load_metadata_policy

MAX_DEPTH = 64  # deeper nesting is no sidecar a converter writes; it is dropped, not recursed


def known_values_from_sidecar(metadata, policy: MetadataPolicy | None = None) -> dict[str, list[str]]:
    """The values of the policy's identifying keys (PatientName …) found at any depth, by category."""
    policy = load_metadata_policy() if policy is None else policy
    wanted = {k.casefold(): c for k, c in policy.identifying_keys.items()}
    found: dict[str, list[str]] = {}

    def walk(value, depth):
        if depth > MAX_DEPTH:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                category = wanted.get(str(key).casefold())
                if category and isinstance(item, (str, int, float)) and str(item).strip():
                    found.setdefault(category, []).append(str(item))
                elif category and isinstance(item, list):
                    found.setdefault(category, []).extend(str(i) for i in item if isinstance(i, (str, int)))
                walk(item, depth + 1)
        elif isinstance(value, list):
            for item in value:
                walk(item, depth + 1)

    walk(metadata, 0)
    return found


class _Scrubber:
    def __init__(self, policy, patterns, deidentifier, reference, table):
        self.policy, self.patterns, self.methods = policy, patterns, deidentifier
        self.reference, self.table = reference, table
        self.report: list[str] = []

    def text(self, value: str, method: str, path: str) -> str:
        cleaned, categories = clean_text(value, method=method, deidentifier=self.methods, where=path,
                                         patterns=self.patterns)
        if categories:
            self.report.append(f"{path} (cleaned: {', '.join(categories)})")
        return cleaned

    def scanned(self, value, method: str, path: str, depth: int):
        """Every string inside ``value`` (mapping keys too) cleaned; numbers and booleans kept."""
        if depth > MAX_DEPTH:
            self.report.append(f"{path} (nested too deep)")
            return None
        if isinstance(value, str):
            return self.text(value, method, path)
        if isinstance(value, list):
            return [self.scanned(v, method, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                key = self.text(str(k), method, f"{path}.<key>")
                out[key] = self.scanned(v, method, f"{path}.{key}", depth + 1)
            return out
        return value

    def whole(self, value, method: str, path: str, depth: int):
        """Each leaf value de-identified by ``method`` (None: the leaf is removed)."""
        if depth > MAX_DEPTH or value is None or isinstance(value, bool):
            return value
        if isinstance(value, list):
            return [v for v in (self.whole(v, method, path, depth + 1) for v in value) if v is not None]
        if isinstance(value, dict):
            return {k: v for k, v in ((k, self.whole(v, method, path, depth + 1)) for k, v in value.items())
                    if v is not None}
        return self.methods.apply(value, method, None, where=path)

    def shifted(self, value, path: str):
        """A date or date-time moved by the subject's offset; a clock time kept; else dropped."""
        if isinstance(value, str) and self.reference is not None:
            text = value.strip()
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                moment = None
            if moment is not None and ("-" in text[:10]):
                days = (self.reference.date() - self.policy.shift_to).days
                return (moment - timedelta(days=days)).isoformat() if "T" in text or " " in text \
                    else (moment - timedelta(days=days)).date().isoformat()
        if isinstance(value, str) and _clock_time(value):
            return value
        return None

    def apply(self, rule: Rule, value, path: str, key: str, depth: int):
        if rule.action == "shift":
            out = self.shifted(value, path)
            self.report.append(f"{path} (shifted)" if out is not None and out != value else path)
            return out
        if rule.action == "value":
            self.report.append(f"{path} ({rule.method})")
            return self.whole(value, rule.method, path, depth)
        if rule.action == "scan":
            return self.scanned(value, rule.method, path, depth)
        if isinstance(value, dict):
            if self.policy.is_mapping(key):  # keys chosen by the user: kept, their text scanned
                return self.scanned(value, self.policy.default_method, path, depth) if self.policy.scan_text else value
            return self.object(value, path, depth + 1)
        if isinstance(value, list):
            return [self.object(v, f"{path}[{i}]", depth + 1) if isinstance(v, dict) else v
                    for i, v in enumerate(value)]
        return value

    def object(self, value: dict, path: str, depth: int) -> dict | None:
        if depth > MAX_DEPTH:
            self.report.append(f"{path} (nested too deep)")
            return {}
        out = {}
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            rule = self.rule(str(key), depth, path)
            if rule is None:
                self.report.append(name)
                continue
            new = self.apply(rule, item, name, str(key), depth)
            if new is not None:
                out[key] = new
        return out

    def rule(self, key: str, depth: int, path: str) -> Rule | None:
        if self.table is not None and depth == 0:
            # a tabular sidecar (participants.json …): top-level keys describe the kept columns
            column = self.policy.column_rule(key, self.table)
            if column is not None:
                return Rule("column")
        if self.table is not None and depth == 1:
            # LongName, Description, Levels, Units …: kept, their text scanned
            if key in bids_allowlist()["column_description_keys"]:
                return Rule("scan", self.policy.default_method)
            return None
        return self.policy.sidecar_rule(key)


def _clock_time(value: str) -> bool:
    return bool(re.fullmatch(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?", value.strip()))


def scrub_sidecar(metadata: dict, policy: MetadataPolicy | None = None, *, known_values=(),
                  deidentifier: Deidentifier | None = None, reference: datetime | None = None,
                  table: str | None = None) -> tuple[dict, list[str]]:
    """A copy of ``metadata`` with only the keys the policy keeps, free text cleaned.

    Inputs: a sidecar (dict); ``policy`` (default: shipped); ``known_values`` (the subject's
    values already removed elsewhere; this sidecar's own identifying keys are added); the
    ``deidentifier`` of the run (hash key, vault, subject; default: none, so only ``redact``,
    ``mask`` and ``replace`` work); ``reference``: the subject's earliest acquisition time, to
    shift dates alike (without it dates are dropped); ``table``: for the sidecar of a TSV
    (``participants``, ``sessions``, ``scans``, ``phenotype``, ``samples``), whose top-level
    keys are column names. Output: ``(scrubbed copy, report)``: the dotted names of dropped keys,
    and ``"Name (cleaned: name, date)"``, ``"Name (hash)"``, ``"Name (shifted)"`` for changed ones.
    """
    policy = load_metadata_policy() if policy is None else policy
    known = known_values_from_sidecar(metadata, policy)
    if isinstance(known_values, dict):
        for category, values in known_values.items():
            known.setdefault(category, []).extend([values] if isinstance(values, str) else values)
    else:
        known.setdefault("known", []).extend(str(v) for v in known_values)
    patterns = known_patterns(known)
    scrubber = _Scrubber(policy, patterns, deidentifier or Deidentifier(), reference, table)
    if not isinstance(metadata, dict):
        raise TypeError(f"a sidecar must be a JSON object, got {type(metadata).__name__}")
    scrubbed = scrubber.object(metadata, "", 0)
    # a key name can itself carry a name or a number: the report masks what it finds there
    return scrubbed, [safe_name(line, patterns) for line in scrubber.report]


def safe_name(name: str, patterns=()) -> str:
    """A key or column name fit for a report: identifying content in it masked."""
    return clean_text(name, method="mask", patterns=patterns)[0]
