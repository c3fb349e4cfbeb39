"""The file list of a selection of participants: what keys the validation cache and the index.

A dataset is cut into *parts*: one per participant folder (``sub-<label>``) and one for
everything else (the dataset-level files: ``dataset_description.json``, ``participants.tsv``,
top-level sidecars, ``phenotype/`` …, part ``""``). A selection reads the dataset-level part and
its participants' parts only, so its file list, and the work keyed by it, costs the same whatever
the number of other participants. Each part's digest covers every file's path, size and
modification time (of the file a symbolic link points to, as git-annex datasets have them).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

DATASET_LEVEL = ""
_MAX_DEPTH = 24  # a symbolic link loop stops here instead of recursing for ever


def participant_labels(bids_dir: Path) -> list[str]:
    """Labels of the ``sub-<label>`` folders of ``bids_dir``, sorted (one directory listing)."""
    with os.scandir(bids_dir) as entries:
        return sorted(e.name[4:] for e in entries if e.name.startswith("sub-") and e.is_dir())


def part_of(relpath: str) -> str:
    """The part a path relative to the dataset belongs to: ``sub-<label>`` or the dataset level."""
    first = relpath.lstrip("/").split("/", 1)[0]
    return first if first.startswith("sub-") and "/" in relpath.lstrip("/") else DATASET_LEVEL


def _stat(entry: os.DirEntry) -> tuple[int, int, str]:
    try:
        st = entry.stat()
        return st.st_size, st.st_mtime_ns, ""
    except FileNotFoundError:  # a broken link (content not fetched): the link itself
        st = entry.stat(follow_symlinks=False)
        return st.st_size, st.st_mtime_ns, "L"


def _entries(path: str, rel: str, skip) -> Iterable[tuple[os.DirEntry, str]]:
    """(entry, ``rel/name``) of the folder ``path``, sorted by name, without what ``skip`` leaves out."""
    with os.scandir(path) as listing:
        entries = sorted(listing, key=lambda e: e.name)
    for entry in entries:
        sub = f"{rel}/{entry.name}"
        if not skip(sub):
            yield entry, sub


def _lines(entry: os.DirEntry, sub: str, skip, shallow, depth: int) -> Iterable[str]:
    """Lines ``/rel<TAB>size<TAB>mtime_ns`` of one entry: a file, or the files under a folder."""
    if not entry.is_dir():
        size, mtime, link = _stat(entry)
        yield f"{sub}\t{size}\t{mtime}{link}"
    elif shallow(sub) or depth >= _MAX_DEPTH:
        yield f"{sub}/\t-\t-"  # its presence counts, not its content
    else:
        yield from _walk(entry.path, sub, skip, shallow, depth + 1)


def _walk(path: str, rel: str, skip, shallow, depth: int = 0) -> Iterable[str]:
    """Lines ``/rel<TAB>size<TAB>mtime_ns`` of the files under ``path``, sorted by name."""
    for entry, sub in _entries(path, rel, skip):
        yield from _lines(entry, sub, skip, shallow, depth)


def _never(_rel: str) -> bool:
    return False


def matcher(patterns: Iterable[re.Pattern]):
    """A predicate on ``/relpath`` strings: does any pattern match (pybids' convention)."""
    patterns = list(patterns)
    return lambda rel: any(p.search(rel) for p in patterns)


def part_digests(bids_dir: Path, participants: Iterable[str] | None = None, *,
                 skip=_never, shallow=_never) -> dict[str, str]:
    """{part: sha256 of its file list} for the dataset level and each selected participant
    (every participant folder when ``participants`` is None).

    ``skip(rel)`` leaves a path out entirely (what an index ignores); ``shallow(rel)`` counts a
    folder by its name only (folders whose content a validator does not read). ``rel`` is the
    path relative to the dataset with a leading ``/``.
    """
    wanted = None if participants is None else {f"sub-{label}" for label in participants}
    digests: dict[str, hashlib._Hash] = {DATASET_LEVEL: hashlib.sha256()}
    for entry, rel in _entries(bids_dir, "", skip):
        if entry.name.startswith("sub-") and entry.is_dir():
            if wanted is not None and entry.name not in wanted:
                continue
            digest = digests.setdefault(entry.name, hashlib.sha256())
        else:
            digest = digests[DATASET_LEVEL]
        for line in _lines(entry, rel, skip, shallow, 0):
            digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    for label in wanted or ():
        digests.setdefault(label, hashlib.sha256())  # a selected participant without a folder
    return {part: digest.hexdigest() for part, digest in digests.items()}


def fresh(recorded: dict[str, str], now: dict[str, str]) -> bool:
    """Do the parts of ``now`` all have the digest ``recorded`` for them?"""
    return all(recorded.get(part) == digest for part, digest in now.items())
