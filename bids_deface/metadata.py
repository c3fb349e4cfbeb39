"""Identifying metadata: NIfTI header text fields and extensions, JSON sidecars, scans.tsv.

Pure functions; nothing here logs or returns an identifying *value*: callers get back the
scrubbed object and the *names* of what was removed.

- :func:`scrub_nifti_header` clears the free-text header fields and drops every header
  extension (converters can embed a whole DICOM header there), keeping the voxels'
  stored values and scale factor.
- :func:`load_sidecar_policy` reads the shipped policy (``data/sidecar_policy.json``, which
  documents its decisions) and an optional user file that extends or overrides it.
- :func:`scrub_sidecar` removes the policy's keys from a sidecar, at any depth.
- :func:`scrub_scans_tsv` shifts or drops ``acq_time`` in a ``scans.tsv``/``sessions.tsv``
  and drops identifying columns.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from pathlib import Path

import nibabel as nib
import pandas as pd

from bids_deface.unscaled import with_header

# Free-text fields of the NIfTI-1/-2 headers (db_name, data_type: unused Analyze leftovers).
NIFTI_TEXT_FIELDS = ("descrip", "aux_file", "db_name", "intent_name", "data_type", "unused_str")
ACQ_TIME_MODES = ("shift", "drop", "keep")
_POLICY_SECTIONS = ("remove", "acquisition_times", "demographics", "keep")
_POLICY_KEYS = set(_POLICY_SECTIONS) | {"keep_acquisition_times", "keep_demographics", "scans_tsv"}


class PolicyError(ValueError):
    """A metadata policy file that cannot be used; the message names the file."""


# ----------------------------------------------------------------- NIfTI


def scrub_nifti_header(img: nib.Nifti1Image) -> tuple[nib.Nifti1Image, list[str]]:
    """Clear ``img``'s free-text header fields and drop its header extensions.

    Input: a NIfTI-1 or NIfTI-2 image. Output: ``(image, names)`` where the image has the
    same voxels (stored values and scale factor, saved exactly by ``nib.save``), affine and
    other header fields, and ``names`` lists the fields that held text (e.g. ``"descrip"``)
    and one ``"extension:<code>"`` per dropped extension.
    """
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise TypeError(f"{img.get_filename() or 'image'}: expected a NIfTI image, got {type(img).__name__}")
    header = img.header.copy()
    cleared = []
    for name in NIFTI_TEXT_FIELDS:
        if name in header and bytes(header[name]).strip(b"\x00 "):
            header[name] = b""
            cleared.append(name)
    for ext in header.extensions:
        code = ext.get_code()
        cleared.append(f"extension:{nib.nifti1.extension_codes.label[code] if code in nib.nifti1.extension_codes else code}")
    header.extensions.clear()
    return with_header(img, header), cleared


# ----------------------------------------------------------------- policy


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


# ----------------------------------------------------------------- sidecars


def scrub_sidecar(metadata: dict, policy: SidecarPolicy | None = None) -> tuple[dict, list[str]]:
    """A copy of ``metadata`` without the keys ``policy`` removes, at any depth.

    Input: a sidecar as a dict (nested objects and lists of objects are scrubbed too) and a
    policy (default: the shipped one). Output: ``(scrubbed copy, removed key names)``; nested
    names are dotted paths (``"Parent.Child"``, ``"List[0].Child"``). Never values.
    """
    policy = load_sidecar_policy() if policy is None else policy
    removed: list[str] = []

    def scrub(value, path: str):
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                name = f"{path}.{key}" if path else str(key)
                if policy.removes(str(key)):
                    removed.append(name)
                else:
                    out[key] = scrub(item, name)
            return out
        if isinstance(value, list):
            return [scrub(item, f"{path}[{i}]") for i, item in enumerate(value)]
        return value

    return scrub(metadata, ""), removed


# ----------------------------------------------------------------- scans.tsv


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None


def earliest_acq_time(tables) -> datetime | None:
    """The earliest ``acq_time`` over several TSV files or tables (one subject's, to shift them alike)."""
    times = []
    for table in tables:
        df = _read_tsv(table)
        if "acq_time" in df.columns:
            times += [t for t in map(_parse_time, df["acq_time"]) if t is not None]
    return min(times, key=lambda t: t.replace(tzinfo=None)) if times else None


def _read_tsv(table) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table.copy()
    # Everything as text: values are written back exactly as they were.
    return pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False, na_filter=False)


def scrub_scans_tsv(table, policy: SidecarPolicy | None = None, out: str | Path | None = None, *,
                    acq_time: str | None = None, reference: datetime | None = None
                    ) -> tuple[pd.DataFrame, list[str]]:
    """Scrub a ``scans.tsv`` (or ``sessions.tsv``): acquisition times and identifying columns.

    Inputs: ``table`` (path or DataFrame); ``policy`` (default: shipped); ``out`` (optional path
    to write the TSV to); ``acq_time`` ("shift", "drop" or "keep"; default from the policy);
    ``reference`` (the datetime moved to the policy's ``shift_to`` date; default: this
    table's earliest ``acq_time``; pass one subject's earliest, see :func:`earliest_acq_time`,
    to keep intervals between that subject's sessions).
    Shifting moves every parseable ``acq_time`` by one whole number of days, so the time of
    day and the intervals between scans are kept; unparseable values become ``n/a``.
    Returns ``(scrubbed table, names of removed columns)``; ``"acq_time"`` is among them
    when dropped, ``"acq_time (shifted)"`` when shifted.
    """
    # Also accepted: (table, out, policy), the order of bids.copy_raw_dataset.
    if not isinstance(policy, SidecarPolicy) and isinstance(out, SidecarPolicy):
        policy, out = out, policy
    policy = load_sidecar_policy() if policy is None else policy
    mode = policy.acq_time if acq_time is None else acq_time
    if mode not in ACQ_TIME_MODES:
        raise ValueError(f"acq_time must be one of {list(ACQ_TIME_MODES)}, got {mode!r}")
    df = _read_tsv(table)
    removed = [c for c in df.columns
               if c not in ("filename", "session_id", "participant_id", "acq_time")
               and (c.lower() in policy.remove_columns or policy.removes(c))]
    df = df.drop(columns=removed)
    if "acq_time" in df.columns:
        if mode == "drop":
            df = df.drop(columns=["acq_time"])
            removed.append("acq_time")
        elif mode == "shift":
            df["acq_time"] = _shift_times(df["acq_time"], policy.shift_to, reference)
            removed.append("acq_time (shifted)")
    if out is not None:
        df.to_csv(out, sep="\t", index=False, na_rep="n/a", lineterminator="\n")
    return df, removed


def _shift_times(values: pd.Series, shift_to: date, reference: datetime | None) -> pd.Series:
    parsed = [_parse_time(str(v)) for v in values]
    if reference is None:
        known = [t for t in parsed if t is not None]
        reference = min(known, key=lambda t: t.replace(tzinfo=None)) if known else None
    if reference is None:
        return pd.Series(["n/a"] * len(values), index=values.index, dtype=object)
    days = reference.date() - shift_to
    return pd.Series([(t - days).isoformat() if t is not None else "n/a" for t in parsed],
                     index=values.index, dtype=object)
