"""Atomic writes: every output goes to a hidden temporary name beside its target and is renamed
into place, so that readers never see half a file.

The temporary name carries the run's token (``.<name>.<token>.<random>.part<ext>``): a run
killed mid-write (``kill -9``) leaves such a file, and the next run removes every ``.part`` file
of runs that are no longer alive (:func:`remove_stale_parts`) without touching those of a run
writing beside it (SLURM array tasks share one output).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

from bids_deface.dataset.runs import is_alive, read_marker, run_token, write_marker

RUNS_DIR = "logs/.runs"  # one marker per run writing into the output
PART = re.compile(r"^\..+\.([0-9a-f]{12}|x)\.[0-9a-f]{8}\.part(\.nii\.gz|\.nii|\.json|\.tsv)?$")


def _temporary(path: Path) -> Path:
    """A hidden name beside ``path`` with the same extension (nibabel picks gzip by it)."""
    ext = next((e for e in (".nii.gz", ".nii", ".json", ".tsv") if path.name.endswith(e)), "")
    stem = path.name[: len(path.name) - len(ext)]
    return path.with_name(f".{stem}.{run_token()}.{uuid.uuid4().hex[:8]}.part{ext}")


def register_run(output_dir: Path) -> Path:
    """Mark the output as being written by this run (see :func:`remove_stale_parts`)."""
    path = Path(output_dir) / RUNS_DIR / f"{run_token()}.json"
    write_marker(path)
    return path


def remove_stale_parts(output_dir: Path, *, only_this_run: bool = False) -> int:
    """Remove the ``.part`` files of runs no longer alive (or only this run's); returns how many."""
    output_dir = Path(output_dir)
    runs = output_dir / RUNS_DIR
    mine = run_token()
    alive = {p.stem: is_alive(read_marker(p)) for p in runs.glob("*.json")}

    def stale(token: str | None) -> bool:
        if only_this_run:
            return token == mine
        return token != mine and not alive.get(token, False)

    removed = 0
    for root, _, files in os.walk(output_dir):
        for name in files:
            found = PART.match(name)
            if found or (name.startswith(".") and ".part" in name):
                if stale(found.group(1) if found else None):
                    Path(root, name).unlink(missing_ok=True)
                    removed += 1
    for path in runs.glob("*.json"):
        if stale(path.stem):
            path.unlink(missing_ok=True)
    return removed


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


