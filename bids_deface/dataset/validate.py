"""Validation of the input dataset with bids-validator-deno: of the files a selection reads, once.

A run on some participants validates what it reads: the dataset-level files and those
participants' folders, presented to the validator as a *view* (a private folder of symbolic
links: the dataset's top-level entries but the other participants' folders). Its cost does not
grow with the number of other participants, and an error in another participant's files does
not stop this one (that participant's own run reports it). The result is cached
(:mod:`.validation_cache`) under the file list it was computed from, so a later run over the
same, unchanged files runs no validator; a validation of the whole dataset serves every
selection whose files are unchanged since.

The view is faithful to the validator's per-file and per-participant checks; what it cannot see
are references from the selection into another participant's folder (``IntendedFor`` or
``AssociatedEmptyRoom`` naming another participant's file), which a whole-dataset run checks.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bids_deface.dataset.filelist import part_digests, part_of
from bids_deface.dataset.schema import field_names, unread_folders

LOGGER = logging.getLogger("bids_deface")


class ValidatorFailure(RuntimeError):
    """The validator could not be run, or gave no report (not a verdict on the dataset)."""


@dataclass(frozen=True)
class Issue:
    """One validator finding, with nothing of the input's content in it: the code, the schema
    name it concerns (or ``(not a BIDS name)``), and the path relative to the dataset."""

    severity: str
    code: str
    sub_code: str
    location: str  # e.g. sub-01/anat/sub-01_T1w.nii.gz; "" for the dataset as a whole

    @property
    def part(self) -> str:
        return part_of(self.location) if self.location else ""


@dataclass
class Validation:
    """The validator's findings about a selection; ``reused``: read from the cache."""

    issues: list[Issue]
    messages: dict[str, str] = field(default_factory=dict)  # code -> the validator's own text
    validated: str = ""  # when the validator ran (local time, ISO)
    reused: bool = False

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]


def validator_executable() -> str:
    """``bids-validator-deno`` from this environment (the venv's bin), else from PATH."""
    beside = Path(sys.executable).parent / "bids-validator-deno"
    if beside.exists():
        return str(beside)
    found = shutil.which("bids-validator-deno")
    if not found:
        raise ValidatorFailure("bids-validator-deno not found (pip install bids-validator-deno)")
    return found


def validator_identity() -> str:
    """Which validator this is, cheaply (no process started): its distribution's version and
    the executable's size and time, so that an upgrade invalidates cached results."""
    from importlib import metadata

    exe = validator_executable()
    try:
        version = metadata.version("bids-validator-deno")
    except metadata.PackageNotFoundError:
        version = "?"
    st = os.stat(exe)
    return f"bids-validator-deno {version} ({exe}, {st.st_size} bytes, {st.st_mtime_ns})"


def _issue(raw: dict) -> Issue:
    sub = raw.get("subCode") or ""
    if sub and sub not in field_names():  # e.g. a column the user named: it could name a person
        sub = "(not a BIDS name)"
    return Issue(raw.get("severity", "error"), raw.get("code", "UNKNOWN"), sub,
                 str(raw.get("location") or "").lstrip("/"))


def run_validator(path: Path, *, ignore_nifti_headers: bool = False) -> tuple[list[Issue], dict[str, str]]:
    """Run bids-validator-deno on ``path``: its issues and its text for each code."""
    cmd = [validator_executable(), str(path), "--format", "json", "--no-color"]
    if ignore_nifti_headers:
        cmd.append("--ignoreNiftiHeaders")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        report = json.loads(proc.stdout)["issues"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValidatorFailure(f"bids-validator-deno failed (exit {proc.returncode}): "
                               f"{proc.stderr.strip()[-500:]}") from None
    issues = [_issue(raw) for raw in report.get("issues", [])]
    if proc.returncode not in (0, 16) and not any(i.severity == "error" for i in issues):
        raise ValidatorFailure(f"bids-validator-deno exited with {proc.returncode}: {proc.stderr.strip()[-500:]}")
    codes = {i.code for i in issues}
    messages = {code: " ".join(str(text).split()) for code, text in report.get("codeMessages", {}).items()
                if code in codes}
    return issues, messages


def validate_dataset(path: Path, *, ignore_nifti_headers: bool = False) -> list[str]:
    """Run bids-validator-deno on ``path``; one line per error (code, location), [] if valid."""
    try:
        issues, _ = run_validator(path, ignore_nifti_headers=ignore_nifti_headers)
    except ValidatorFailure as exc:
        return [str(exc)]
    return [f"{i.code}{' ' + i.sub_code if i.sub_code else ''}: /{i.location}" for i in issues
            if i.severity == "error"]


def selection_view(bids_dir: Path, participants, into: Path) -> Path:
    """A folder of symbolic links showing the validator ``bids_dir`` without the participant
    folders that are not selected."""
    wanted = {f"sub-{label}" for label in participants}
    view = into / "dataset"
    view.mkdir()
    with os.scandir(bids_dir) as entries:
        for entry in entries:
            if entry.name.startswith("sub-") and entry.is_dir() and entry.name not in wanted:
                continue
            (view / entry.name).symlink_to(Path(bids_dir).absolute() / entry.name)
    return view


def _unread(rel: str) -> bool:
    """A folder the validator does not look into (or the hidden ones: .git, .datalad …)."""
    name = rel.rsplit("/", 1)[-1]
    return name.startswith(".") or (rel.count("/") == 1 and name in unread_folders())


def validation_parts(bids_dir: Path, participants=None) -> dict[str, str]:
    """The file list a validation of the selection is keyed by (:func:`part_digests`)."""
    return part_digests(bids_dir, participants, shallow=_unread)


def validate_selection(bids_dir: Path, participants=None, *, cache_dir: Path | None = None) -> Validation:
    """The validator's findings about the dataset-level files and the selected participants
    (every participant when None): from the cache when its files are unchanged, else from
    bids-validator-deno (whose result is then cached).

    Raises :class:`ValidatorFailure` when the validator cannot run.
    """
    from bids_deface.dataset.validation_cache import CacheUnavailable, ValidationCache

    participants = None if participants is None else sorted(set(participants))
    parts = validation_parts(bids_dir, participants)  # before validating: a change meanwhile shows later
    cache = None
    if cache_dir is not None:
        try:
            cache = ValidationCache(cache_dir, bids_dir, validator_identity())
        except CacheUnavailable as exc:
            LOGGER.warning("validation not cached: %s", exc)
    if cache is not None and (hit := cache.lookup(participants, parts)):
        return hit
    if cache is None:
        return _validate(bids_dir, participants)
    with cache.lock(participants):  # array tasks on the same selection: one validates
        if hit := cache.lookup(participants, parts):
            return hit
        result = _validate(bids_dir, participants)
        cache.store(participants, parts, result)
    return result


def _validate(bids_dir: Path, participants) -> Validation:
    when = _dt.datetime.now().isoformat(timespec="seconds")
    if participants is None:
        issues, messages = run_validator(bids_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="bids-deface-view-") as tmp:
            issues, messages = run_validator(selection_view(bids_dir, participants, Path(tmp)))
    return Validation(issues, messages, when)

