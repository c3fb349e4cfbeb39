"""Validation results kept outside the input, so that a dataset's files are validated once.

One folder per dataset (its resolved path) and validator (version and executable), under
``--validation-cache`` (default ``~/.cache/bids-deface/validation``, or
``$BIDS_DEFACE_CACHE/validation``); in it one JSON entry per selection of participants
(``all.json`` for the whole dataset), holding the file list it was computed from (one digest per
part, :mod:`.filelist`) and the findings (codes, schema names and relative paths only).

An entry is used only while every part the selection reads has the digest it had then: a file
added, removed, rewritten or touched in the selected participants' folders or among the
dataset-level files makes the next run validate again. A change in *another* participant's
folder does not: the selection does not read it, and that participant's run validates it. The
whole dataset's entry serves any selection whose parts are unchanged since. Entries are written
by atomic rename, under a lock per entry, so array tasks that start together never read half
an entry and run one validator per selection, not one each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from bids_deface.cache import cache_root
from bids_deface.dataset.atomic import write_json_atomic
from bids_deface.dataset.filelist import fresh
from bids_deface.dataset.locks import exclusive, private_dir
from bids_deface.dataset.validate import Issue, Validation

CACHE_FORMAT = 1


class CacheUnavailable(OSError):
    """The cache folder cannot be created or written (validation then runs uncached)."""


def default_cache_dir() -> Path:
    return cache_root() / "validation"


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:20]


class ValidationCache:
    """The entries of one dataset and validator in ``cache_dir``."""

    def __init__(self, cache_dir: Path, bids_dir: Path, validator: str):
        self.identity = {"Format": CACHE_FORMAT, "Dataset": str(Path(bids_dir).resolve()), "Validator": validator}
        self.dir = Path(cache_dir) / _digest(self.identity)
        try:
            private_dir(self.dir)
            if not os.access(self.dir, os.W_OK):
                raise PermissionError(13, "not writable")
        except OSError as exc:
            raise CacheUnavailable(f"{cache_dir}: {exc.strerror or exc}") from None

    def _entry(self, participants) -> Path:
        return self.dir / ("all.json" if participants is None else f"sel-{_digest(participants)}.json")

    def _read(self, participants) -> dict | None:
        try:
            entry = json.loads(self._entry(participants).read_text())
        except (OSError, ValueError):
            return None
        same = {k: entry.get(k) for k in self.identity} == self.identity
        return entry if same and entry.get("Participants") == participants else None

    def lookup(self, participants, parts: dict[str, str]) -> Validation | None:
        """The cached findings for the selection whose file list is ``parts``, or None."""
        entry = self._read(participants)
        if entry is not None and entry.get("Parts") == parts:
            return _validation(entry, None)
        if participants is not None:
            whole = self._read(None)
            if whole is not None and fresh(whole.get("Parts", {}), parts):
                return _validation(whole, set(parts))
        return None

    def store(self, participants, parts: dict[str, str], result: Validation) -> None:
        entry = {**self.identity, "Participants": participants, "Validated": result.validated, "Parts": parts,
                 "Messages": result.messages,
                 "Issues": [[i.severity, i.code, i.sub_code, i.location] for i in result.issues]}
        try:
            write_json_atomic(self._entry(participants), entry)
        except OSError as exc:  # a full disk must not fail the run: it only costs a validation later
            logging.getLogger("bids_deface").warning("validation not cached: %s", exc)
        self._forget_vanished()

    def _forget_vanished(self) -> None:
        """Drop the entries of datasets that no longer exist (temporary copies, moved datasets)."""
        for folder in self.dir.parent.iterdir():
            entry = next(folder.glob("*.json"), None) if folder.is_dir() and folder != self.dir else None
            try:
                dataset = json.loads(entry.read_text()).get("Dataset") if entry else None
            except (OSError, ValueError):
                continue
            if dataset and not os.path.exists(dataset):
                shutil.rmtree(folder, ignore_errors=True)

    def lock(self, participants):
        return exclusive(self.dir / f".{self._entry(participants).stem}.lock")


def _validation(entry: dict, parts: set[str] | None) -> Validation:
    issues = [Issue(*row) for row in entry.get("Issues", [])]
    if parts is not None:  # the whole dataset's findings, cut to the selection's parts
        issues = [i for i in issues if i.part in parts]
    codes = {i.code for i in issues}
    messages = {k: v for k, v in entry.get("Messages", {}).items() if k in codes}
    return Validation(issues, messages, entry.get("Validated", ""), reused=True)
