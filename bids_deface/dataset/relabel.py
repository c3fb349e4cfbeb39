"""Participant relabelling (``--relabel-participants KEY_FILE_OR_MAPPING``, raw layout).

``sub-<label>`` and ``ses-<label>`` become pseudonyms everywhere the raw copy writes them:
folder and file names, TSV cells (``participant_id``, ``session_id``, scans.tsv ``filename``),
JSON values (``IntendedFor``, ``Sources`` …) and text files. Two ways to say how:

- a **key** (a file of at least 16 bytes): each label becomes a keyed pseudonym,
  HMAC-SHA-256(key, label) written in lower-case base32 (10 characters; BIDS labels are
  alphanumeric). The same key gives the same pseudonyms in every run; without the key nobody
  can test a guess;
- a **mapping** (a TSV file): one row per label, ``sub-01<TAB>sub-P001`` (``ses-…`` rows map
  sessions; a header row ``participant_id<TAB>…`` is allowed). Every selected participant must
  be mapped; sessions without a row keep their label.

The mapping of a keyed run is written only where the curator asks (``--relabel-map-file``),
never into the output. Nothing here logs a label.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path

from bids_deface.readfile import read_bytes
from bids_deface.dataset.atomic import write_text_atomic

LABEL = re.compile(r"^[0-9A-Za-z]+$")
TOKEN = re.compile(r"(?<![0-9A-Za-z])(sub|ses)-([0-9A-Za-z]+)(?![0-9A-Za-z])")
PSEUDONYM_CHARS = 10
MIN_KEY_BYTES = 16


class RelabelError(ValueError):
    """A key or mapping that cannot be used; the message names the file and the problem."""


def _pseudonym(key: bytes, kind: str, label: str) -> str:
    digest = hmac.new(key, f"bids-deface {kind}\x00{label}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:PSEUDONYM_CHARS]


@dataclass
class Relabeller:
    """Maps participant and session labels (without ``sub-``/``ses-``); the identity when empty."""

    key: bytes | None = None
    subjects: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.key is not None or bool(self.subjects)

    def label(self, kind: str, label: str) -> str:
        table = self.subjects if kind == "sub" else self.sessions
        if label in table:
            return table[label]
        if self.key is None:
            return label
        new = _pseudonym(self.key, "participant" if kind == "sub" else "session", label)
        table[label] = new
        return new

    def subject(self, label: str) -> str:
        return self.label("sub", label)

    def session(self, label: str) -> str:
        return self.label("ses", label)

    def text(self, text: str) -> str:
        """Every ``sub-<label>`` / ``ses-<label>`` token of ``text`` relabelled."""
        if not self.active or not isinstance(text, str):
            return text
        return TOKEN.sub(lambda m: f"{m.group(1)}-{self.label(m.group(1), m.group(2))}", text)

    def path(self, relpath: str) -> str:
        return self.text(relpath)

    def json(self, value):
        """Every string value (not the keys) of a JSON document relabelled."""
        if not self.active:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        return value

    def check_unique(self) -> None:
        for kind, table in (("participant", self.subjects), ("session", self.sessions)):
            if len(set(table.values())) != len(table):
                raise RelabelError(f"two {kind}s would get the same new label; use another key or mapping")

    def write_map(self, path: Path) -> None:
        """The curator's mapping: ``participant_id<TAB>pseudonym`` rows (and sessions)."""
        rows = [f"sub-{old}\tsub-{new}" for old, new in sorted(self.subjects.items())]
        rows += [f"ses-{old}\tses-{new}" for old, new in sorted(self.sessions.items())]
        write_text_atomic(Path(path), "label\tpseudonym\n" + "".join(r + "\n" for r in rows))
        Path(path).chmod(0o600)


def _mapping(text: str, where: str) -> Relabeller:
    relabeller = Relabeller()
    for number, line in enumerate(text.splitlines(), 1):
        cells = [c.strip() for c in line.split("\t")]
        if not line.strip() or (number == 1 and not cells[0].startswith(("sub-", "ses-"))):
            continue  # blank line, or the header row
        if len(cells) < 2:
            raise RelabelError(f"{where}: line {number}: expected two tab-separated labels")
        old, new = cells[0], cells[1]
        kind = old[:3]
        if kind not in ("sub", "ses") or not old.startswith(f"{kind}-"):
            raise RelabelError(f"{where}: line {number}: the first column must be sub-<label> or ses-<label>")
        new = new[4:] if new.startswith(f"{kind}-") else new
        if not LABEL.match(new) or not LABEL.match(old[4:]):
            raise RelabelError(f"{where}: line {number}: labels must be letters and digits only")
        (relabeller.subjects if kind == "sub" else relabeller.sessions)[old[4:]] = new
    if not relabeller.subjects:
        raise RelabelError(f"{where}: no sub-<label> rows in the mapping")
    relabeller.check_unique()
    return relabeller


def load_relabeller(path: str | Path | None) -> Relabeller:
    """The relabelling of ``--relabel-participants PATH``: a TSV mapping (a file whose rows are
    ``sub-…<TAB>…``) or a key (any other file of at least 16 bytes); the identity for None."""
    if path is None:
        return Relabeller()
    where = str(path)
    raw = read_bytes(path, where, RelabelError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if "\t" in text and re.search(r"^\s*(sub|ses)-", text, re.M):
        return _mapping(text, where)
    key = raw[:-1] if raw.endswith(b"\n") else raw
    if len(key) < MIN_KEY_BYTES:
        raise RelabelError(f"{where}: neither a mapping (sub-<label><TAB><new label> rows) nor a key "
                           f"(at least {MIN_KEY_BYTES} bytes)")
    return Relabeller(key=key)


def check_selected(relabeller: Relabeller, subjects, sessions) -> None:
    """Every selected participant has a new label (a mapping must name them all)."""
    if relabeller.key is None and relabeller.subjects:
        missing = sorted(set(subjects) - set(relabeller.subjects))
        if missing:
            raise RelabelError(f"the mapping has no new label for {len(missing)} selected participant(s)")
    for label in subjects:
        relabeller.subject(label)
    for label in sessions:
        relabeller.session(label)
    relabeller.check_unique()
