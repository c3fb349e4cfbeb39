"""Conformance of bids-deface's DICOM de-identification against an independent PS3.15 reading.

The independent side is idiscore 1.6.0 (PyPI, pure Python): its Table E.1-1 was scraped
from the standard's own HTML rendering (``chapter_E.html``, 2025-06-24) by its own
generator into ``idiscore/_public_dicom.py``. Ours was built another way (dicom-anonymizer's
2026c field lists plus the innolitics JSON option columns: :mod:`tools.annex_e_build`).
The wheel is fetched once into the cache and the file is parsed with ``ast``, never
imported (idiscore asks for Python 3.12).

Two checks, each a list of disagreements:

* :func:`table_disagreements`: every tag whose Basic Profile action differs between the
  two tables (or that one table lacks);
* :func:`option_disagreements`: every option cell (Retain Device Identity, Clean
  Descriptors, ...) that differs; ours come from an older edition's rendering, so where the
  standard added a K or C cell later, ours applies the (stricter) Basic Profile action;
* :func:`corpus_disagreements`: for every attribute of every input file of a corpus, what
  our output did to it (removed, emptied, dummy, new UID, kept, cleaned) against what the
  independent table allows for it; attributes neither table lists must be kept by the
  Basic Profile.

``EXPLAINED`` gives the reason for each disagreement we have; the test
(``tests/test_dicom_conformance.py``) fails on any disagreement not explained there.
Run ``python -m tools.annex_e_conformance`` for the report as a Markdown table.
"""

from __future__ import annotations

import ast
import zipfile
from collections import Counter
from pathlib import Path

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from tools.dicom_testdata import distribution

IDISCORE = ("idiscore", "1.6.0")
MEMBER = "idiscore/_public_dicom.py"
# idiscore's ActionCodes -> Table E.1-1 letters
_LETTERS = {"DUMMY": "D", "EMPTY": "Z", "REMOVE": "X", "KEEP": "K", "CLEAN": "C", "UID": "U",
            "EMPTY_OR_DUMMY": "Z/D", "REMOVE_OR_EMPTY": "X/Z", "REPLACE_OR_DUMMY": "X/Z",
            "REMOVE_OR_DUMMY": "X/D", "REMOVE_OR_EMPTY_OR_DUMMY": "X/Z/D", "REMOVE_OR_EMPTY_OR_UID": "X/Z/U*"}
# What each action allows an output to show. Z: "a zero length value, or a non-zero length
# value that may be a dummy value" (Table E.1-1, legend); X/Z: X unless Z is required ...
ALLOWED = {"D": {"D"}, "Z": {"Z", "D"}, "X": {"X"}, "K": {"K"}, "C": {"C", "K", "Z", "X"}, "U": {"U"},
           "Z/D": {"Z", "D"}, "X/Z": {"X", "Z", "D"}, "X/D": {"X", "D"}, "X/Z/D": {"X", "Z", "D"},
           "X/Z/U*": {"X", "Z", "U*"}}

NEWER_EDITION = ("listed in the 2026c edition of Table E.1-1 that ours follows, not yet in the 2025 "
                 "rendering idiscore scraped (table_disagreements: every tag that differs is of this kind)")
# (keyword or class, independent action, ours) -> why. "class" names: see _class_of.
EXPLAINED = {
    ("unlisted date/time", "K", "Z"): "stricter than the profile by design: a date, time or datetime the "
    "table does not list (e.g. Acquisition Date of a private module, Date of Last Calibration, "
    "Instance Creation Time) still dates the visit, so it is emptied (shifted under Modified Dates)",
    ("unlisted person name", "K", "Z"): "stricter by design: a person name the table does not list "
    "(e.g. Verifying Observer Name in an item) is emptied",
    ("unlisted UID", "K", "U"): "stricter by design: a UID the standard does not define (instance "
    "UIDs often embed a serial number and a time) is replaced under the key, consistently",
    ("PatientIdentityRemoved", "K", "D"): "PS3.15 E.1.1 requires Patient Identity Removed YES in the output",
    ("LongitudinalTemporalInformationModified", "K", "D"): "PS3.15 E.1.1: set to REMOVED (or MODIFIED) "
    "when dates were removed (shifted)",
    ("DeidentificationMethod", "K", "D"): "PS3.15 E.1.1: the method is recorded (our profile and options)",
    ("DeidentificationMethodCodeSequence", "K", "U*"): "PS3.15 E.1.1: the codes of the profile and "
    "options used are recorded",
    ("group length", "K", "X"): "group lengths (gggg,0000) are retired (PS3.5 7.2) and would be wrong "
    "after de-identification",
    ("MultiplexGroupLabel", "K", "X"): NEWER_EDITION,
    ("WaveformAnnotationSequence", "K", "X"): NEWER_EDITION,
}


def _source() -> str:
    wheel = distribution(*IDISCORE, python_version="3.12")
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(MEMBER).decode("utf-8")


def _tag_of(call: ast.Call) -> str:
    name = call.func.id if isinstance(call.func, ast.Name) else call.func.attr
    if name == "PrivateTags":
        return "private"
    return call.args[0].value.upper().replace("X", "x")


def idiscore_tables() -> dict[str, dict[str, str]]:
    """``{rule set name: {tag (GGGGEEEE, 'x' repeats, 'private'): action letters}}``."""
    tables: dict[str, dict[str, str]] = {}
    for node in ast.walk(ast.parse(_source())):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        kwargs = {k.arg: k.value for k in node.value.keywords}
        if "rules" not in kwargs or "name" not in kwargs:
            continue
        rules = {}
        for item in kwargs["rules"].elts:
            ident, action = item.elts
            rules[_tag_of(ident)] = _LETTERS[action.attr]
        tables[kwargs["name"].value] = rules
    return tables


def independent_basic_profile() -> dict[str, str]:
    return idiscore_tables()["Basic Application Level Confidentiality Profile"]


def table_disagreements(ours: dict, theirs: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """``(tag, keyword, ours, theirs)`` for every tag whose Basic Profile action differs."""
    out = []
    for tag in sorted(set(ours) | set(theirs)):
        a = ours[tag].basic if tag in ours else "-"
        b = theirs.get(tag, "-")
        if a != b:
            keyword = ours[tag].keyword if tag in ours else (_keyword(tag) or "")
            out.append((tag, keyword, a, b))
    return out


# idiscore's option rule sets -> the option columns we offer (bids_deface/data/annex_e.tsv;
# Retain UIDs, Full Dates and Clean Structured Content are not offered)
OPTION_SETS = {
    "Retain Device Identity Option": "retain_device_identity",
    "Retain Institution Identity Option": "retain_institution_identity",
    "Retain Patient Characteristics Option": "retain_patient_characteristics",
    "Retain Longitudinal Temporal Information with Modified Dates Option": "retain_long_modified_dates",
    "Clean Descriptors Option": "clean_descriptors",
}


def option_disagreements(ours: dict, tables: dict[str, dict[str, str]]) -> list[tuple[str, str, str, str, str]]:
    """``(option, tag, keyword, ours, theirs)`` for every option cell that differs ('' = none:
    the Basic Profile action applies)."""
    out = []
    for name, column in OPTION_SETS.items():
        theirs = tables.get(name, {})
        tags = set(theirs) | {t for t, r in ours.items() if r.option(column)}
        for tag in sorted(tags):
            a = ours[tag].option(column) if tag in ours else ""
            b = theirs.get(tag, "")
            if a != b:
                out.append((column, tag, ours[tag].keyword if tag in ours else _keyword(tag), a, b))
    return out


def _keyword(tag: str) -> str:
    try:
        return keyword_for_tag(int(tag, 16))
    except ValueError:
        return ""


def _rule_for(tag: int, theirs: dict[str, str]) -> str | None:
    group, element = tag >> 16, tag & 0xFFFF
    if group & 1:
        return theirs.get("private")
    key = f"{tag:08X}"
    if key in theirs:
        return theirs[key]
    if 0x5000 <= group < 0x5100:
        return theirs.get("50xxxxxx")
    if 0x6000 <= group < 0x6100:
        return theirs.get(f"60xx{element:04X}")
    return None


def observed(orig, new: Dataset) -> str:
    """What the output did to attribute ``orig`` (of the input): X Z D U K C or U* (a kept
    sequence whose items changed)."""
    if orig.tag not in new:
        return "X"
    elem = new[orig.tag]
    if orig.VR == "SQ":
        if not elem.value:
            return "Z" if orig.value else "K"
        return "K" if elem.value == orig.value else "U*"
    if _empty(elem.value):
        return "Z"
    if elem.value == orig.value:
        return "K"
    if orig.VR == "UI":
        return "U"
    return "D"


def _class_of(orig, theirs_action: str | None) -> str:
    if orig.tag.element == 0 and not orig.tag.is_private:
        return "group length"
    if theirs_action is None:
        if orig.VR in ("DA", "TM", "DT"):
            return "unlisted date/time"
        if orig.VR == "PN":
            return "unlisted person name"
        if orig.VR == "UI":
            return "unlisted UID"
    return orig.keyword or f"({orig.tag.group:04X},{orig.tag.element:04X})"


def _empty(value) -> bool:
    return value in (None, "", b"") or (isinstance(value, (list, tuple)) and not value)


def _compare(orig_ds: Dataset, new_ds: Dataset, theirs: dict[str, str], seen: set) -> None:
    """Add ``(what, independent action, ours)`` to ``seen`` for each attribute of ``orig_ds``
    (recursing into sequences kept item for item: each item's attributes have their own rules)."""
    for orig in orig_ds:
        if orig.tag.group == 0x0002 or orig.tag == 0x7FE00010:
            continue
        if orig.VR != "SQ" and _empty(orig.value):
            continue  # nothing to identify
        action = _rule_for(int(orig.tag), theirs)
        ours = observed(orig, new_ds)
        if orig.VR == "SQ" and ours in ("K", "U*") and len(new_ds[orig.tag].value) == len(orig.value):
            if action in (None, "K", "D", "X/Z/U*", "C") or ours == "K":
                for a, b in zip(orig.value, new_ds[orig.tag].value):
                    _compare(a, b, theirs, seen)
                continue
        if ours not in ALLOWED[action or "K"]:
            seen.add((_class_of(orig, action), action or "K", ours))


def corpus_disagreements(pairs, theirs: dict[str, str]) -> Counter:
    """``Counter({(keyword or class, independent action, ours): files})`` over ``pairs`` of
    (input data set, output data set), inside sequences too, File Meta excluded."""
    found: Counter = Counter()
    for orig_ds, new_ds in pairs:
        seen: set = set()
        _compare(orig_ds, new_ds, theirs, seen)
        found.update(seen)
    return found


def report_corpus(out_dir: Path | None = None):
    """Run the DICOM test corpus (heudiconv, pydicom, dicognito) header-only through
    ``bids_deface.dicom.pipeline.run`` and return its disagreements."""
    import shutil
    import tempfile

    import pydicom

    from bids_deface.dicom.pipeline import RunOptions, run
    from tools import dicom_testdata as testdata

    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in"
        for name, src in (("heudiconv", testdata.heudiconv_data()),
                          ("dicognito", testdata.dicognito_tests() / "orig_data"),
                          ("pydicom", testdata.pydicom_test_file("CT_small.dcm").parent)):
            shutil.copytree(src, inp / name, ignore=shutil.ignore_patterns("*.py", "*.pyc", "__pycache__"))
        out = Path(out_dir or Path(tmp) / "out")
        rows = run(inp, out, RunOptions(key="conformance-key-0001", deface=False))
        files = sorted(p for p in inp.rglob("*") if p.is_file())
        pairs = [(pydicom.dcmread(files[r.input], force=True), pydicom.dcmread(out / r.output))
                 for r in rows if r.status == "written"]
        return len(pairs), corpus_disagreements(pairs, independent_basic_profile())


def main() -> None:
    from bids_deface.dicom.profile import load_table

    tables = table_disagreements(load_table(), independent_basic_profile())
    print(f"Table E.1-1, Basic Profile column: {len(tables)} tags differ\n")
    print("| tag | attribute | ours (2026c) | idiscore (2025) |\n|---|---|---|---|")
    for tag, keyword, a, b in tables:
        print(f"| {tag} | {keyword} | {a} | {b} |")
    options = option_disagreements(load_table(), idiscore_tables())
    print(f"\nOption columns: {len(options)} cells differ ('' = no option cell: the Basic Profile "
          "action applies, so ours is stricter where theirs keeps or cleans)\n")
    print("| option | tag | attribute | ours | idiscore |\n|---|---|---|---|---|")
    for column, tag, keyword, a, b in options:
        print(f"| {column} | {tag} | {keyword} | {a} | {b} |")
    files, found = report_corpus()
    print(f"\nCorpus: {files} files written; disagreements with what the independent table allows\n")
    print("| attribute | independent | ours | files | why |\n|---|---|---|---|---|")
    for (what, theirs, ours), n in sorted(found.items()):
        print(f"| {what} | {theirs} | {ours} | {n} | {EXPLAINED.get((what, theirs, ours), 'NOT EXPLAINED')} |")


if __name__ == "__main__":
    main()
