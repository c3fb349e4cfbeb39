"""The metadata policy: which sidecar keys and TSV columns go, and what happens to acquisition times.

:func:`load_sidecar_policy` reads the shipped policy (``data/sidecar_policy.json``, which
documents its decisions) and an optional user file that extends or overrides it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path

ACQ_TIME_MODES = ("shift", "drop", "keep")
_POLICY_SECTIONS = ("remove", "acquisition_times", "demographics", "keep")
_POLICY_KEYS = set(_POLICY_SECTIONS) | {"keep_acquisition_times", "keep_demographics", "scans_tsv"}


class PolicyError(ValueError):
    """A metadata policy file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class _Rule:
    keys: frozenset[str] = frozenset()  # lower case
    patterns: tuple[re.Pattern, ...] = ()

    def matches(self, key: str) -> bool:
        return key.lower() in self.keys or any(p.search(key) for p in self.patterns)


@dataclass(frozen=True)
class SidecarPolicy:
    """Which sidecar keys and scans.tsv columns to remove, and what to do with acq_time."""

    remove: _Rule
    acquisition_times: _Rule
    demographics: _Rule
    keep: _Rule
    keep_acquisition_times: bool = False
    keep_demographics: bool = False
    acq_time: str = "shift"
    shift_to: date = date(1800, 1, 1)
    remove_columns: frozenset[str] = frozenset()
    sources: tuple[str, ...] = field(default=())

    def removes(self, key: str) -> bool:
        """Whether ``key`` (a sidecar key or a TSV column) is removed."""
        if self.keep.matches(key):
            return False
        if self.remove.matches(key):
            return True
        if not self.keep_acquisition_times and self.acquisition_times.matches(key):
            return True
        return not self.keep_demographics and self.demographics.matches(key)


def _compile(patterns, where: str) -> tuple[re.Pattern, ...]:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as exc:
            raise PolicyError(f"{where}: invalid pattern {p!r} ({exc})") from None
    return tuple(out)


def _read_policy(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PolicyError(f"{path}: metadata policy file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: not a JSON metadata policy ({exc})") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: a metadata policy must be a JSON object")
    unknown = sorted(k for k in data if not k.startswith("_") and k not in _POLICY_KEYS)
    if unknown:
        raise PolicyError(f"{path}: unknown policy entries {unknown}; expected {sorted(_POLICY_KEYS)}")
    for section in _POLICY_SECTIONS:
        value = data.get(section, {})
        if not isinstance(value, dict) or not all(
                isinstance(value.get(k, []), list) and all(isinstance(s, str) for s in value.get(k, []))
                for k in ("keys", "patterns")):
            raise PolicyError(f"{path}: '{section}' must be an object with lists of strings 'keys' and 'patterns'")
    return data


def shipped_policy_path() -> Path:
    return Path(str(resources.files("bids_deface") / "data" / "sidecar_policy.json"))


def load_sidecar_policy(user_policy: str | Path | None = None) -> SidecarPolicy:
    """The shipped sidecar policy, extended or overridden by ``user_policy`` (a JSON file).

    A user file has the shipped file's layout: its ``keys``/``patterns`` are *added* to each
    section (``remove``, ``acquisition_times``, ``demographics``, ``keep``); ``keep`` wins
    over every removal; ``keep_acquisition_times``, ``keep_demographics`` and the
    ``scans_tsv`` settings replace the shipped ones. Raises :class:`PolicyError` naming the
    file for unreadable JSON, unknown entries or invalid patterns.
    """
    layers = [(shipped_policy_path(), _read_policy(shipped_policy_path()))]
    if user_policy:
        layers.append((Path(user_policy), _read_policy(Path(user_policy))))
    keys = {s: set() for s in _POLICY_SECTIONS}
    patterns = {s: [] for s in _POLICY_SECTIONS}
    switches = {"keep_acquisition_times": False, "keep_demographics": False}
    scans = {}
    for path, data in layers:
        for section in _POLICY_SECTIONS:
            keys[section] |= {k.lower() for k in data.get(section, {}).get("keys", [])}
            patterns[section] += list(_compile(data.get(section, {}).get("patterns", []), str(path)))
        for name in switches:
            if name in data:
                if not isinstance(data[name], bool):
                    raise PolicyError(f"{path}: '{name}' must be true or false")
                switches[name] = data[name]
        scans.update({k: v for k, v in data.get("scans_tsv", {}).items() if not k.startswith("_")})
    user_scans = layers[-1][1].get("scans_tsv", {}) if len(layers) > 1 else {}
    if "acq_time" in user_scans:
        acq_time = user_scans["acq_time"]
    elif switches["keep_acquisition_times"]:
        acq_time = "keep"  # asking to keep acquisition times keeps them in scans.tsv too
    else:
        acq_time = scans.get("acq_time", "shift")
    if acq_time not in ACQ_TIME_MODES:
        raise PolicyError(f"{layers[-1][0]}: scans_tsv.acq_time must be one of {list(ACQ_TIME_MODES)}, got {acq_time!r}")
    try:
        shift_to = date.fromisoformat(str(scans.get("shift_to", "1800-01-01")))
    except ValueError:
        raise PolicyError(f"{layers[-1][0]}: scans_tsv.shift_to must be a date YYYY-MM-DD") from None
    rules = {s: _Rule(frozenset(keys[s]), tuple(patterns[s])) for s in _POLICY_SECTIONS}
    return SidecarPolicy(**rules, **switches, acq_time=acq_time, shift_to=shift_to,
                         remove_columns=frozenset(c.lower() for c in scans.get("remove_columns", [])),
                         sources=tuple(str(p) for p, _ in layers))

