"""The raw copy's manifest: which output files are written and verified, so that a rerun after an
interruption skips them instead of starting a ten-hour copy over.

One JSON line per written file, appended as soon as the file is in place (a line cut by a kill
is ignored on reading): its output path (relative, as shared), size, SHA-256, and ``source``, a
digest of what it was made from (input file stat, the subject's removed values, the run's
settings). A file is skipped when it is still there with that size and hash and the same
``source``. The first line holds the fingerprint of the settings: another policy, key,
relabelling or version starts a new manifest. No input path, label or value is written, only
digests and output paths.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CHUNK = 1 << 20


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256) of a file, read in chunks (constant memory)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def digest_of(*parts) -> str:
    """A short digest of ``parts`` (strings, numbers): what an output was made from."""
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:32]


class CopyManifest:
    """Written-and-verified output files of the raw copy (see the module docstring)."""

    def __init__(self, path: Path, output_dir: Path, fingerprint: str):
        self.path, self.output_dir, self.fingerprint = Path(path), Path(output_dir), fingerprint
        self.entries: dict[str, dict] = {}
        self.skipped = 0
        if self._load():
            self._handle = open(self.path, "a", encoding="utf-8")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")
            tmp.write_text(json.dumps({"fingerprint": fingerprint}) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
            self._handle = open(self.path, "a", encoding="utf-8")

    def _load(self) -> bool:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return False
        try:
            if not lines or json.loads(lines[0]).get("fingerprint") != self.fingerprint:
                return False
        except (json.JSONDecodeError, AttributeError):
            return False
        for line in lines[1:]:
            try:
                entry = json.loads(line)
                self.entries[entry["path"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a kill
        return True

    def is_done(self, out_rel: str, source: str) -> bool:
        """Whether ``out_rel`` was written from ``source`` and is still intact."""
        entry = self.entries.get(out_rel)
        target = self.output_dir / out_rel
        if entry is None or entry.get("source") != source or not target.is_file() or target.is_symlink():
            return False
        if target.stat().st_size != entry.get("size"):
            return False
        if file_digest(target) != (entry["size"], entry.get("sha256")):
            return False
        self.skipped += 1
        return True

    def record(self, out_rel: str, source: str) -> None:
        size, sha = file_digest(self.output_dir / out_rel)
        entry = {"path": out_rel, "source": source, "size": size, "sha256": sha}
        self.entries[out_rel] = entry
        self._handle.write(json.dumps(entry) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()
