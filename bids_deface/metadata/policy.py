"""The metadata policy: an allow-list of sidecar keys and TSV columns, and what happens to each.

What is kept: the keys and columns the BIDS specification defines (``data/bids_metadata_allowlist.json``,
written from the BIDS schema by ``tools/build_bids_allowlist.py``) minus the ones that identify,
plus what the shipped policy (``data/sidecar_policy.json``) and a user policy (``--metadata-policy
FILE``) add. Every other key and column is dropped.

Policy file (JSON object; entries starting with ``_`` are comments)::

    {
      "default_method": "redact",             # replace | redact | mask | hash | encrypt
      "scan_text": true,                      # scan free-text values of kept keys (BIDS: 'text')
      "acquisition_times": {"tables": "shift", "sidecars": "shift", "shift_to": "1800-01-01"},
      "sidecar_keys": {"SeriesDescription": "scan", "ImageType": "keep", "PatientID": "hash",
                       "ScanNotes": {"scan": true, "method": "mask"}, "SoftwareVersions": "drop"},
      "sidecar_key_patterns": {"^Siemens": "keep"},          # Python regular expressions
      "columns": {"group": "keep", "notes": "scan", "mrn": "hash"},
      "column_patterns": {"^bdi_[0-9]+$": "keep"},
      "text_files": {"scan": true, "method": "redact"},
      "identifying_keys": {"name": ["PatientName"], "id": ["PatientID"]}
    }

An entry is ``"keep"`` (as it is), ``"scan"`` (free text scanned, findings de-identified by
``default_method``), ``"drop"``, ``"shift"`` (a date moved by the subject's offset), a method
name (the whole value de-identified by it), or ``{"scan": bool, "method": NAME}``. A user file
overrides the shipped one entry by entry. ``identifying_keys`` name keys whose values are searched
for in all other text of the same subject (whether the key is kept or not).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path

from bids_deface.metadata.methods import DEFAULT_METHOD, METHODS, Deidentifier, MethodError

ACQ_TIME_MODES = ("shift", "drop", "keep")
ACTIONS = ("keep", "scan", "drop", "shift") + METHODS
ALWAYS_KEPT_COLUMNS = ("participant_id", "session_id", "filename")
_ENTRIES = {"default_method", "scan_text", "acquisition_times", "sidecar_keys", "sidecar_key_patterns",
            "columns", "column_patterns", "text_files", "identifying_keys"}


class PolicyError(ValueError):
    """A metadata policy file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Rule:
    """What happens to one key or column: ``action`` is keep, scan, drop, shift or value (the
    whole value de-identified); ``method`` de-identifies the findings (scan) or the value."""

    action: str
    method: str | None = None


@lru_cache(maxsize=1)
def bids_allowlist() -> dict:
    """The shipped allow-list of BIDS-defined keys and columns (with its BIDS version)."""
    return json.loads((resources.files("bids_deface") / "data" / "bids_metadata_allowlist.json").read_text())


def shipped_policy_path() -> Path:
    return Path(str(resources.files("bids_deface") / "data" / "sidecar_policy.json"))


@dataclass(frozen=True)
class MetadataPolicy:
    """The allow-list with the shipped and user policies applied (see the module docstring)."""

    # name -> (layer, Rule) and (layer, compiled pattern, Rule): layer 0 is the shipped policy,
    # 1 the user's; a later layer wins, and within a layer a name wins over a pattern
    keys: dict = field(default_factory=dict)            # case-folded key name
    key_patterns: tuple = ()
    columns: dict = field(default_factory=dict)         # case-folded column name
    column_patterns: tuple = ()
    default_method: str = DEFAULT_METHOD
    scan_text: bool = True
    acq_time: str = "shift"                              # tables (scans.tsv, sessions.tsv)
    sidecar_times: str = "shift"
    shift_to: date = date(1800, 1, 1)
    text_files_scan: bool = True
    text_files_method: str = DEFAULT_METHOD
    identifying_keys: dict = field(default_factory=dict)  # key -> category
    sources: tuple = ()

    def sidecar_rule(self, key: str) -> Rule | None:
        """The rule for sidecar ``key``; None when the key is dropped."""
        rule = _layered(self.keys.get(key.casefold()), self.key_patterns, key)
        if rule is None:
            entry = bids_allowlist()["sidecar_keys"].get(key)
            if entry is None:
                return None
            if entry.get("time_format"):
                rule = Rule("shift") if self.sidecar_times == "shift" else Rule(self.sidecar_times)
            else:
                rule = Rule("scan", self.default_method) if entry.get("text") and self.scan_text else Rule("keep")
        return None if rule.action == "drop" else rule

    def is_mapping(self, key: str) -> bool:
        return bool(bids_allowlist()["sidecar_keys"].get(key, {}).get("mapping"))

    def column_rule(self, column: str, table: str | None = None) -> Rule | None:
        """The rule for a TSV ``column`` of ``table`` (participants, sessions, scans, phenotype,
        samples); None when the column is dropped."""
        rule = _layered(self.columns.get(column.casefold()), self.column_patterns, column)
        if rule is None:
            known = bids_allowlist()["table_columns"]
            allowed = set(known.get(table, [])) if table else set().union(*known.values())
            if column in ALWAYS_KEPT_COLUMNS or column in allowed:
                rule = Rule("keep")
        return None if rule is None or rule.action == "drop" else rule

    def removes(self, key: str) -> bool:
        """Whether sidecar ``key`` is dropped (kept for callers of the block-list policy)."""
        return self.sidecar_rule(key) is None

    def methods_used(self) -> set[str]:
        rules = [*(r for _, r in self.keys.values()), *(r for _, _, r in self.key_patterns),
                 *(r for _, r in self.columns.values()), *(r for _, _, r in self.column_patterns)]
        used = {r.method for r in rules if r.method} | {self.default_method}
        return used | ({self.text_files_method} if self.text_files_scan else set())

    def check_methods(self, deidentifier: Deidentifier) -> None:
        """Raise :class:`PolicyError` if the policy needs what the run lacks (a key, a vault)."""
        for method in sorted(self.methods_used()):
            try:
                deidentifier.check(method)
            except MethodError as exc:
                raise PolicyError(f"{self.sources[-1] if self.sources else 'metadata policy'}: {exc}") from None


def _layered(exact, patterns, name: str) -> Rule | None:
    pattern = next(((layer, rule) for layer, compiled, rule in patterns if compiled.search(name)), None)
    if exact is None or (pattern is not None and pattern[0] > exact[0]):
        return pattern[1] if pattern else None
    return exact[1]


# Kept for callers that still use the old name.
SidecarPolicy = MetadataPolicy


def _rule(value, where: str, default_method: str) -> Rule:
    if isinstance(value, str):
        if value not in ACTIONS:
            raise PolicyError(f"{where}: {value!r} is not one of {list(ACTIONS)}")
        if value in METHODS:
            return Rule("value", value)
        return Rule(value, default_method if value == "scan" else None)
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"scan", "method"})
        if unknown:
            raise PolicyError(f"{where}: unknown fields {unknown}; expected 'scan' and 'method'")
        method = value.get("method")
        if method is not None and method not in METHODS:
            raise PolicyError(f"{where}: method {method!r} is not one of {list(METHODS)}")
        if not isinstance(value.get("scan", False), bool):
            raise PolicyError(f"{where}: 'scan' must be true or false")
        if value.get("scan"):
            return Rule("scan", method or default_method)
        return Rule("value", method) if method else Rule("keep")
    raise PolicyError(f"{where}: expected a string or an object, got {type(value).__name__}")


def _read(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path}: metadata policy file not found") from None
    except OSError as exc:
        raise PolicyError(f"{path}: metadata policy file cannot be read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: not a JSON metadata policy ({exc})") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: a metadata policy must be a JSON object")
    unknown = sorted(k for k in data if not k.startswith("_") and k not in _ENTRIES)
    if unknown:
        raise PolicyError(f"{path}: unknown policy entries {unknown}; expected {sorted(_ENTRIES)}")
    return data


def _object(data: dict, name: str, path: Path) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise PolicyError(f"{path}: '{name}' must be an object")
    return {k: v for k, v in value.items() if not k.startswith("_")}


def _compile(pattern: str, where: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise PolicyError(f"{where}: invalid pattern {pattern!r} ({exc})") from None


def _switch(data: dict, name: str, path: Path, current):
    if name not in data:
        return current
    if not isinstance(data[name], bool):
        raise PolicyError(f"{path}: '{name}' must be true or false")
    return data[name]


def _apply(state: dict, data: dict, path: Path, layer: int) -> None:
    """Layer one policy file over ``state``."""
    if "default_method" in data:
        if data["default_method"] not in METHODS:
            raise PolicyError(f"{path}: default_method must be one of {list(METHODS)}, got {data['default_method']!r}")
        state["default_method"] = data["default_method"]
    state["scan_text"] = _switch(data, "scan_text", path, state["scan_text"])
    times = _object(data, "acquisition_times", path)
    for name, target in (("tables", "acq_time"), ("sidecars", "sidecar_times")):
        if name in times:
            if times[name] not in ACQ_TIME_MODES:
                raise PolicyError(f"{path}: acquisition_times.{name} must be one of {list(ACQ_TIME_MODES)}, "
                                  f"got {times[name]!r}")
            state[target] = times[name]
    unknown = sorted(set(times) - {"tables", "sidecars", "shift_to"})
    if unknown:
        raise PolicyError(f"{path}: unknown acquisition_times entries {unknown}")
    if "shift_to" in times:
        try:
            state["shift_to"] = date.fromisoformat(str(times["shift_to"]))
        except ValueError:
            raise PolicyError(f"{path}: acquisition_times.shift_to must be a date YYYY-MM-DD") from None
    method = state["default_method"]
    for name, value in _object(data, "sidecar_keys", path).items():
        state["keys"][name.casefold()] = (layer, _rule(value, f"{path}: sidecar_keys.{name}", method))
    for pattern, value in _object(data, "sidecar_key_patterns", path).items():
        where = f"{path}: sidecar_key_patterns"
        state["key_patterns"].insert(0, (layer, _compile(pattern, where), _rule(value, f"{where}.{pattern}", method)))
    for name, value in _object(data, "columns", path).items():
        state["columns"][name.casefold()] = (layer, _rule(value, f"{path}: columns.{name}", method))
    for pattern, value in _object(data, "column_patterns", path).items():
        where = f"{path}: column_patterns"
        state["column_patterns"].insert(0, (layer, _compile(pattern, where), _rule(value, f"{where}.{pattern}", method)))
    text = _object(data, "text_files", path)
    if sorted(set(text) - {"scan", "method"}):
        raise PolicyError(f"{path}: text_files takes 'scan' and 'method'")
    state["text_files_scan"] = _switch(text, "scan", path, state["text_files_scan"])
    if "method" in text:
        if text["method"] not in METHODS:
            raise PolicyError(f"{path}: text_files.method must be one of {list(METHODS)}, got {text['method']!r}")
        state["text_files_method"] = text["method"]
    for category, names in _object(data, "identifying_keys", path).items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise PolicyError(f"{path}: identifying_keys.{category} must be a list of key names")
        state["identifying_keys"].update({n: category for n in names})


def load_metadata_policy(user_policy: str | Path | None = None) -> MetadataPolicy:
    """The shipped policy, with ``user_policy`` (a JSON file) layered over it.

    Raises :class:`PolicyError` naming the file for an unreadable or non-object file, an unknown
    entry, a bad action or method, or an invalid pattern.
    """
    state = {"keys": {}, "key_patterns": [], "columns": {}, "column_patterns": [], "default_method": DEFAULT_METHOD,
             "scan_text": True, "acq_time": "shift", "sidecar_times": "shift", "shift_to": date(1800, 1, 1),
             "text_files_scan": True, "text_files_method": DEFAULT_METHOD, "identifying_keys": {}}
    paths = [shipped_policy_path()] + ([Path(user_policy)] if user_policy else [])
    for layer, path in enumerate(paths):
        _apply(state, _read(path), path, layer)
    return MetadataPolicy(**{**state, "key_patterns": tuple(state["key_patterns"]),
                             "column_patterns": tuple(state["column_patterns"])},
                          sources=tuple(str(p) for p in paths))


# The name the callers of the first policy use.
load_sidecar_policy = load_metadata_policy
