"""Atomic writes: every output goes to a hidden temporary name beside its target and is renamed
into place, so that readers never see half a file."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

def _temporary(path: Path) -> Path:
    """A hidden name beside ``path`` with the same extension (nibabel picks gzip by it)."""
    ext = next((e for e in (".nii.gz", ".nii", ".json", ".tsv") if path.name.endswith(e)), "")
    return path.with_name(f".{path.name[: len(path.name) - len(ext)]}.{uuid.uuid4().hex[:8]}.part{ext}")


def write_atomic(path: Path, write) -> None:
    """Run ``write(tmp)`` then rename ``tmp`` to ``path``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


