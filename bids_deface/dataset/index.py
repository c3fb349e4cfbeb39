"""The pybids index of a selection: only the selected participants' folders (and datatypes) are
read, as fMRIPrep does with ``ignore`` patterns, so indexing one participant of a dataset of
thousands costs what it costs alone.

With a database folder (``--bids-database-dir``), each selection's index is kept as pybids'
SQLite database in a folder of its own and reused while the files it covers are unchanged
(:mod:`.filelist`): a database built for another selection, another dataset, another pybids or
an older file list is never used; it is rebuilt, under a lock, into a new folder renamed into
place (a reader never sees half a database). A database of every participant, when one is
there and still fresh for the selection, serves any selection.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from pathlib import Path

from bids_deface.dataset.atomic import write_json_atomic
from bids_deface.dataset.filelist import fresh, matcher, part_digests
from bids_deface.dataset.locks import exclusive, private_dir
from bids_deface.dataset.schema import datatypes as schema_datatypes

INDEX_FORMAT = 1
META = "bids-deface-index.json"
# not indexed: folders a BIDS App does not read (pybids' own defaults, plus derivatives and the
# schema's other opaque folders) and hidden files and folders at any depth
NOT_INDEXED = (re.compile(r"^/(?:code|derivatives|docs|logs|models|rawbids|sourcedata|stimuli)(?:/|$)"),
               re.compile(r"/\."))


PARTICIPANT_SIDECARS = re.compile(r"^/sub-[^/]+/.*\.json$")


def ignore_patterns(participants=None, datatypes=None, sidecars: bool = True) -> list[re.Pattern]:
    """pybids ``ignore`` patterns (matched against ``/relpath``) that leave out every participant
    folder but the selected ones, every datatype folder but the selected ones and, without
    ``sidecars``, the participants' JSON sidecars (an index without metadata needs none)."""
    patterns = list(NOT_INDEXED) + ([] if sidecars else [PARTICIPANT_SIDECARS])
    if participants is not None:
        wanted = "|".join(re.escape(label) for label in sorted(participants)) or "(?!)"
        patterns.append(re.compile(rf"^/sub-(?!(?:{wanted})(?:/|$))[^/]+"))
    if datatypes is not None:
        others = [d for d in schema_datatypes() if d not in datatypes]
        if others:
            patterns.append(re.compile(rf"^/sub-[^/]+/(?:ses-[^/]+/)?(?:{'|'.join(others)})(?:/|$)"))
    return patterns


def _index(bids_dir: Path, ignore: list[re.Pattern], index_metadata: bool, database_path: Path | None):
    from bids import BIDSLayout
    from bids.layout import BIDSLayoutIndexer

    indexer = BIDSLayoutIndexer(validate=False, ignore=ignore, index_metadata=index_metadata)
    return BIDSLayout(str(bids_dir), validate=False, indexer=indexer,
                      database_path=None if database_path is None else str(database_path))


def open_layout(bids_dir: Path, *, participants=None, datatypes=None, index_metadata: bool = True,
                database_dir: Path | None = None):
    """A pybids layout of the selected participants (all when None) and datatypes (all when None)."""
    participants = None if participants is None else sorted(set(participants))
    datatypes = None if datatypes is None else sorted(set(datatypes))
    ignore = ignore_patterns(participants, datatypes, sidecars=index_metadata)
    if database_dir is None:
        return _index(bids_dir, ignore, index_metadata, None)
    return IndexDatabase(Path(database_dir), bids_dir, participants, datatypes, index_metadata).open(ignore)


class IndexDatabase:
    """The database folder of one selection's index (see the module's description)."""

    def __init__(self, database_dir: Path, bids_dir: Path, participants, datatypes, index_metadata: bool):
        import bids

        self.root, self.bids_dir = database_dir, Path(bids_dir)
        self.identity = {"Format": INDEX_FORMAT, "Dataset": str(Path(bids_dir).resolve()),
                         "PyBIDS": bids.__version__, "Datatypes": datatypes, "IndexMetadata": index_metadata}
        self.participants = participants

    def _folder(self, participants) -> Path:
        key = json.dumps({**self.identity, "Participants": participants}, sort_keys=True)
        return self.root / hashlib.sha256(key.encode()).hexdigest()[:20]

    def _fresh(self, folder: Path, parts: dict[str, str], exact: bool) -> bool:
        try:
            meta = json.loads((folder / META).read_text())
        except (OSError, ValueError):
            return False
        same = {k: meta.get(k) for k in self.identity} == self.identity
        return same and (meta.get("Parts") == parts if exact else fresh(meta.get("Parts", {}), parts))

    def open(self, ignore: list[re.Pattern]):
        from bids import BIDSLayout

        private_dir(self.root)
        parts = part_digests(self.bids_dir, self.participants, skip=matcher(ignore))
        mine = self._folder(self.participants)
        candidates = [(mine, True)]
        if self.participants is not None:  # an index of everyone serves any selection
            candidates.append((self._folder(None), False))
        for folder, exact in candidates:
            if self._fresh(folder, parts, exact):
                return BIDSLayout(database_path=str(folder), validate=False)
        with exclusive(self.root / f".{mine.name}.lock"):
            if not self._fresh(mine, parts, True):  # another task may have built it meanwhile
                self._build(mine, parts, ignore)
        return BIDSLayout(database_path=str(mine), validate=False)

    def _build(self, folder: Path, parts: dict[str, str], ignore: list[re.Pattern]) -> None:
        tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.part")
        old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.old")
        try:
            _index(self.bids_dir, ignore, self.identity["IndexMetadata"], tmp)
            write_json_atomic(tmp / META, {**self.identity, "Participants": self.participants, "Parts": parts})
            if folder.exists():
                folder.rename(old)
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
