"""Write ``bids_deface/data/bids_metadata_allowlist.json`` from the BIDS schema (bidsschematools).

The allow-list of sidecar keys and TSV columns that bids-deface keeps is the set of names the
BIDS specification defines, minus the BIDS-defined keys that identify a person, a place or a
device, minus the dataset-level keys of ``dataset_description.json`` (those describe the
dataset, not an acquisition). Each kept key records whether its value is free text (a string
the schema does not restrict by an enum, a pattern or a format), so that the text is scanned for
identifying content, and whether it holds a date or a clock time.

Usage: ``python tools/build_bids_allowlist.py [OUT.json]`` (default: the shipped file).
``tests/test_metadata.py`` checks that the shipped file is exactly what this writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bidsschematools import schema as bst

OUT = Path(__file__).resolve().parents[1] / "bids_deface" / "data" / "bids_metadata_allowlist.json"

# BIDS-defined keys whose values identify the site, the device or a person (HIPAA Safe Harbor:
# names, geographic units smaller than a state, device identifiers and serial numbers).
IDENTIFYING = {
    "InstitutionName": "names the site",
    "InstitutionAddress": "street address of the site",
    "InstitutionalDepartmentName": "names the site",
    "StationName": "names the scanner (a device identifier)",
    "DeviceSerialNumber": "device serial number",
    "SampleExtractionInstitution": "names the site",
}
# The tables whose columns the allow-list covers (the modality-agnostic ones of BIDS).
TABLES = ("Participants", "Sessions", "Scans", "Phenotype", "Samples")
# Keys of a column description in a tabular sidecar (participants.json …), BIDS common principles.
COLUMN_DESCRIPTION_KEYS = ("LongName", "Description", "Levels", "Units", "Delimiter", "TermURL", "HED",
                           "Format", "Maximum", "Minimum")


def _fields(namespace) -> set[str]:
    found: set[str] = set()
    for value in namespace.values():
        if hasattr(value, "keys") and "fields" in value:
            found |= set(value["fields"].keys())
        elif hasattr(value, "keys") and "selectors" not in value:
            found |= _fields(value)
    return found


def _is_free_text(definition) -> bool:
    """A string the schema leaves open: no enum, pattern, format or fixed value."""
    if "anyOf" in definition:
        return any(_is_free_text(option) for option in definition["anyOf"])
    if definition.get("type") == "array" and "items" in definition:
        return _is_free_text(definition["items"])
    return definition.get("type") == "string" and not any(
        k in definition for k in ("enum", "pattern", "format", "const"))


def _time_format(definition) -> str | None:
    formats = {definition.get("format")} | {o.get("format") for o in definition.get("anyOf", [])}
    for fmt in ("datetime", "date", "time"):
        if fmt in formats:
            return fmt
    return None


def _is_mapping(definition) -> bool:
    """An object whose keys the user chooses (SoftwareFilters, AnatomicalLandmarkCoordinates …)."""
    if "anyOf" in definition:
        return any(_is_mapping(option) for option in definition["anyOf"])
    return definition.get("type") == "object" and "properties" not in definition


def build() -> dict:
    schema = bst.load_schema()
    dataset_level = _fields(schema.rules.json.dataset) | set(
        schema.rules.json.genetics.dataset_description_with_genetics.fields.keys()) | _fields(schema.rules.json.atlas)
    used_elsewhere = _fields(schema.rules.sidecars) | (_fields(schema.rules.json) - dataset_level)
    keys: dict[str, dict] = {}
    excluded_dataset = set()
    for object_name, definition in schema.objects.metadata.items():
        name = definition["name"]
        if name in IDENTIFYING:
            continue
        if object_name in dataset_level and object_name not in used_elsewhere:
            excluded_dataset.add(name)
            continue
        entry = keys.setdefault(name, {})
        if _is_free_text(definition):
            entry["text"] = True
        if _is_mapping(definition):
            entry["mapping"] = True
        fmt = _time_format(definition)
        if fmt:
            entry["time_format"] = fmt
    tables = {}
    for table in TABLES:
        rule = schema.rules.tabular_data.modality_agnostic[table]
        tables[table.lower()] = sorted({schema.objects.columns[c]["name"] for c in rule["columns"]})
    return {
        "_about": ("Sidecar keys and TSV columns defined by the BIDS specification that bids-deface keeps. "
                   "Written by tools/build_bids_allowlist.py from the BIDS schema; do not edit by hand. "
                   "'text': the value is free text and is scanned for identifying content; 'time_format': "
                   "the value is a date, a date-time or a clock time (handled by the policy's "
                   "acquisition_times); 'mapping': an object whose keys are chosen by the user (kept, and "
                   "scanned as text). Keys not listed here are dropped unless a policy adds them."),
        "bids_version": schema["bids_version"],
        "schema_version": schema["schema_version"],
        "sidecar_keys": dict(sorted(keys.items())),
        "excluded_identifying": dict(sorted(IDENTIFYING.items())),
        "excluded_dataset_level": sorted(excluded_dataset - set(keys)),
        "column_description_keys": list(COLUMN_DESCRIPTION_KEYS),
        "table_columns": tables,
    }


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=False) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else OUT
    out.write_text(render())
    data = json.loads(out.read_text())
    print(f"{out}: {len(data['sidecar_keys'])} sidecar keys (BIDS {data['bids_version']}, "
          f"schema {data['schema_version']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
