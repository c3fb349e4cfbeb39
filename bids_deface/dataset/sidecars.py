"""JSON sidecars read safely, and merged along BIDS's inheritance principle.

A sidecar that is not valid JSON, not an object, or nested deeper than any converter writes is
a :class:`SidecarError` naming the file (by its path in the dataset) and the problem: the image
it describes fails, the others go on. pybids raises on the first bad sidecar of the whole
dataset, so the metadata of each image is merged here instead.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from bids_deface.readfile import read_bytes

# Deeper nesting is no sidecar a converter writes (and recursion limits lie not far beyond).
MAX_SIDECAR_DEPTH = 64


class SidecarError(ValueError):
    """A JSON sidecar that cannot be used; the message names the file and the problem."""


def _depth(text: str) -> int:
    """The deepest nesting of brackets outside strings, without parsing (parsers recurse)."""
    deepest = depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def read_sidecar(path: Path, relpath: str) -> dict:
    """The JSON object in ``path``; ``relpath`` names it in messages."""
    raw = read_bytes(path, relpath, SidecarError)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SidecarError(f"{relpath}: not a JSON sidecar (not UTF-8 text)") from None
    depth = _depth(text)
    if depth > MAX_SIDECAR_DEPTH:
        raise SidecarError(f"{relpath}: JSON nested {depth} levels deep (at most {MAX_SIDECAR_DEPTH}); "
                           "not a sidecar a converter writes")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SidecarError(f"{relpath}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise SidecarError(f"{relpath}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise SidecarError(f"{relpath}: a sidecar must be a JSON object, this one is a {type(data).__name__}")
    return data


def _entities(name: str) -> tuple[dict[str, str], str]:
    stem = name.split(".", 1)[0]
    parts = stem.split("_")
    pairs = dict(p.split("-", 1) for p in parts[:-1] if "-" in p)
    return pairs, parts[-1]


def inherited_sidecars(bids_dir: Path, relpath: str) -> list[str]:
    """The sidecars that apply to the data file ``relpath``, least specific first (BIDS
    inheritance principle: same suffix, entities a subset of the file's, in its folder or a
    folder above it)."""
    rel = PurePosixPath(relpath)
    entities, suffix = _entities(rel.name)
    folders = [PurePosixPath(*rel.parent.parts[:i]) for i in range(len(rel.parent.parts) + 1)]
    found = []
    for folder in folders:
        directory = Path(bids_dir) / folder
        if not directory.is_dir():
            continue
        level = []
        for candidate in directory.glob(f"*{suffix}.json"):
            their, their_suffix = _entities(candidate.name)
            if their_suffix == suffix and all(entities.get(k) == v for k, v in their.items()):
                level.append(((folder / candidate.name).as_posix(), len(their)))
        found += [name for name, _ in sorted(level, key=lambda item: (item[1], item[0]))]
    return found


def image_metadata(bids_dir: Path, relpath: str) -> dict:
    """The merged metadata of the data file ``relpath`` (more specific sidecars win); raises
    :class:`SidecarError` for the first sidecar that cannot be used."""
    merged: dict = {}
    for sidecar in inherited_sidecars(bids_dir, relpath):
        merged.update(read_sidecar(Path(bids_dir) / sidecar, sidecar))
    return merged
