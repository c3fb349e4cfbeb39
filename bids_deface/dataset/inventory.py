"""What the raw copy may take from the input: a file is copied only if the BIDS schema knows it
*and* bids-deface knows how to clean it. Everything else is left out and named in the report.

File names are matched against the rules of the BIDS schema shipped with ``bidsschematools``
(the schema pybids uses). What can be cleaned:

- ``dataset_description.json``; README, CHANGES, LICENSE, CITATION.cff (text, scanned);
- tables (participants, samples, phenotype, sessions, scans, and any other table with a column
  allow-list) and their JSON descriptions;
- JSON sidecars (allow-listed keys);
- NIfTI images (headers cleared; those that can show a face are defaced or left out,
  :mod:`bids_deface.dataset.faces`);
- numbers only: ``.bval``, ``.bvec``, ``*_physio.tsv.gz`` / ``*_stim.tsv.gz`` (checked to hold
  nothing but numbers).

Left out: files the schema does not know (``.bidsignore``d files, backups such as
``.nii.gz.bak``, ``.mgz``, Analyze ``.img/.hdr``, DICOM, MINC, NRRD, notes), BIDS files of
formats we cannot clean (EEG/MEG raw data, microscopy …), opaque folders (``sourcedata/``,
``derivatives/``, ``code/``, ``stimuli/``, ``logs/``, ``docs/``), hidden files and folders, and
symbolic links whose target lies outside the dataset.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

TEXT_FILES = ("README", "CHANGES", "LICENSE", "CITATION")
BASE_TABLES = ("participants", "samples", "phenotype", "sessions", "scans")
NUMBERS_ONLY = (".bval", ".bvec", ".tsv.gz")


@dataclass(frozen=True)
class DatasetFile:
    """A file the raw copy takes: ``kind`` is description, text, table, table_sidecar, sidecar,
    image or numbers; ``table`` the table kind of a table or its JSON description."""

    relpath: str
    kind: str
    table: str | None = None


@dataclass(frozen=True)
class LeftOut:
    """A file (or a folder, with a trailing ``/``) not copied, and why."""

    relpath: str
    reason: str


@lru_cache(maxsize=1)
def _schema_rules():
    import bidsschematools.schema  # noqa: F401  (the rules module needs it loaded)
    from bidsschematools.rules import regexify_all

    rules, schema = regexify_all()
    compiled = [re.compile(rule["regex"]) for rule in rules]
    tables = set()
    for group in schema.rules.files.raw.values():
        for rule in group.values():
            if ".tsv" in rule.get("extensions", []):
                tables |= set(rule.get("suffixes", []))
    opaque = {rule["path"] for rule in schema.rules.files.common.core.values()
              if "path" in rule and "." not in rule["path"] and rule["path"] != "CHANGES"}
    return compiled, frozenset(tables), frozenset(opaque), str(schema.bids_version)


def schema_version() -> str:
    return _schema_rules()[3]


def opaque_folders() -> frozenset[str]:
    """Top-level folders the schema allows but does not describe (code, sourcedata …)."""
    return _schema_rules()[2]


def _match(relpath: str) -> dict | None:
    for rule in _schema_rules()[0]:
        found = rule.match(relpath)
        if found:
            return {k: v for k, v in found.groupdict().items() if v is not None}
    return None


def allowlisted_tables() -> set[str]:
    from bids_deface.metadata import bids_allowlist

    return set(bids_allowlist()["table_columns"])


def classify(relpath: str, ignored: bool = False) -> DatasetFile | LeftOut:
    """What the raw copy does with the file at ``relpath`` (POSIX, relative to the dataset)."""
    match = _match(relpath)
    if match is None:
        return LeftOut(relpath, "not a BIDS file" + (" (listed in .bidsignore)" if ignored else ""))
    if ignored:
        return LeftOut(relpath, "listed in .bidsignore")
    path, stem, suffix = match.get("path"), match.get("stem"), match.get("suffix")
    ext = match.get("extension", "")
    if path == "dataset_description.json":
        return DatasetFile(relpath, "description")
    if path in ("CHANGES", "CITATION.cff") or stem in TEXT_FILES:
        return DatasetFile(relpath, "text")
    if path == "genetic_info.json":
        return DatasetFile(relpath, "sidecar")
    if path is not None:
        return LeftOut(relpath, f"{path}/ is not copied")
    table = "phenotype" if match.get("datatype") == "phenotype" else (stem if stem in BASE_TABLES else suffix)
    if ext in (".tsv", ".json") and (table in BASE_TABLES or table in _schema_rules()[1]):
        if table not in BASE_TABLES and table not in allowlisted_tables():
            return LeftOut(relpath, f"no column allow-list for {table} tables")
        return DatasetFile(relpath, "table" if ext == ".tsv" else "table_sidecar", table)
    if ext == ".json":
        return DatasetFile(relpath, "sidecar")
    if ext in (".nii", ".nii.gz"):
        return DatasetFile(relpath, "image")
    if ext in NUMBERS_ONLY:
        return DatasetFile(relpath, "numbers")
    return LeftOut(relpath, f"bids-deface cannot clean {ext or 'these'} files")


def read_bidsignore(bids_dir: Path) -> list[str]:
    try:
        lines = (Path(bids_dir) / ".bidsignore").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def is_ignored(relpath: str, patterns: list[str]) -> bool:
    """``.bidsignore`` (gitignore-style) matching, enough to say why a file was left out."""
    parts = PurePosixPath(relpath).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
        body = pattern.strip("/")
        for prefix in prefixes:
            target = prefix if anchored else prefix.rsplit("/", 1)[-1]
            if fnmatch.fnmatchcase(target, body) or fnmatch.fnmatchcase(prefix, body):
                return True
    return False


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def inside(path: Path, root_real: str) -> bool:
    """Whether ``path`` belongs to the dataset: it is no symbolic link, or its link points into the
    dataset (only the first hop counts: a DataLad/git-annex link points into the dataset's
    ``.git/annex``, which may itself lie elsewhere, e.g. in an ephemeral clone)."""
    path = Path(path)
    parent = os.path.realpath(path.parent)
    if not _within(parent, root_real):
        return False
    if not path.is_symlink():
        return True
    target = os.readlink(path)
    return _within(os.path.normpath(os.path.join(parent, target)), root_real)


def walk(bids_dir: Path, top: str, root_real: str, ignore: list[str], selected_dir=lambda rel: True):
    """Yield :class:`DatasetFile`, :class:`LeftOut` and ``("broken", relpath)`` for every file
    under ``bids_dir/top`` (symbolic links followed inside the dataset, sorted); folders for
    which ``selected_dir(relpath)`` is false (sessions not selected) are skipped unlisted."""
    seen: set[str] = set()
    for root, dirs, files in os.walk(Path(bids_dir) / top, followlinks=True):
        rel_root = PurePosixPath(Path(root).relative_to(bids_dir).as_posix())
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        keep = []
        for name in sorted(dirs):
            rel = (rel_root / name).as_posix()
            if not selected_dir(rel):
                continue
            if name.startswith("."):
                yield LeftOut(rel + "/", "hidden folder")
            elif not inside(Path(root) / name, root_real):
                yield LeftOut(rel + "/", "symbolic link to a folder outside the dataset")
            else:
                keep.append(name)
        dirs[:] = keep
        for name in sorted(files):
            rel = (rel_root / name).as_posix()
            path = Path(root) / name
            if name.startswith("."):
                yield LeftOut(rel, "hidden file")
            elif not inside(path, root_real):
                yield LeftOut(rel, "symbolic link to a file outside the dataset")
            elif not path.exists():
                yield ("broken", rel)
            else:
                yield classify(rel, is_ignored(rel, ignore))
