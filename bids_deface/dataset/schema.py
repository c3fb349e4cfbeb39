"""Facts read from the BIDS schema that ``bidsschematools`` ships (the schema pybids uses)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def _schema() -> dict:
    return json.loads((resources.files("bidsschematools") / "data" / "schema.json").read_text())


def datatypes() -> tuple[str, ...]:
    """The datatype folder names (anat, func, dwi …)."""
    return tuple(sorted(_schema()["objects"]["datatypes"]))


def unread_folders() -> tuple[str, ...]:
    """Top-level folders whose content a validator does not read: the raw dataset's opaque
    folders, but ``stimuli`` (events files name files there, and the validator checks them)."""
    raw = _schema()["rules"]["directories"]["raw"]
    return tuple(sorted(rule["name"] for rule in raw.values()
                        if rule.get("opaque") and "name" in rule and rule["name"] != "stimuli"))


@lru_cache(maxsize=1)
def field_names() -> frozenset[str]:
    """Every sidecar key and table column the schema defines (names, not the user's text)."""
    objects = _schema()["objects"]
    return frozenset(entry["name"] for group in ("metadata", "columns") for entry in objects[group].values()
                     if "name" in entry)
