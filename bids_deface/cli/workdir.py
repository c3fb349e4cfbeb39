"""The private working directory: it holds un-defaced intermediates, so only we read it and it
does not outlive the run.

Each work directory carries a marker (:mod:`bids_deface.dataset.runs`: process id, host, start
time). A run killed with ``kill -9`` cannot clean up; the next run on the same host removes the
temporary work folders whose marker names a process that is gone, and empties a ``-w`` folder
left by such a run. A ``-w`` folder in use by a live run is refused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from bids_deface.dataset.runs import is_alive, read_marker, write_marker

# what a run puts in a work directory it did not create
RUN_FOLDERS = ("bids_deface_wf", "crash", "steps")
MARKER = ".bids-deface-run.json"
PREFIX = "bids-deface-work-"
UNMARKED_GRACE_S = 600  # a folder without a marker this old is a run killed while starting


class WorkDirError(ValueError):
    """A work directory that cannot be used; the message says why."""


def _inside(path: Path, root: Path) -> bool:
    path, root = Path(path).resolve(), Path(root).resolve()
    return path == root or root in path.parents


def private_work_dir(requested: Path | None, forbidden: dict[str, Path] | None = None) -> tuple[Path, bool]:
    """A working directory only we can read: (path, created by this run).

    ``forbidden``: folders it must not lie in (the input, the output), by the name messages use.
    """
    forbidden = forbidden or {}
    if requested is None:
        tmp = Path(tempfile.gettempdir())
        for name, root in forbidden.items():
            if _inside(tmp, root):
                raise WorkDirError(f"the temporary folder ($TMPDIR) is inside {name}: it would receive "
                                   "un-defaced images; set TMPDIR elsewhere or give -w")
        work = Path(tempfile.mkdtemp(prefix=PREFIX))
        write_marker(work / MARKER)
        return work, True
    previous = read_marker(requested / MARKER)
    if previous is not None and is_alive(previous):
        raise WorkDirError(f"work dir {requested} is in use by another run (process {previous['pid']}); "
                           "give each run its own -w")
    created = not requested.exists()
    requested.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (requested.stat().st_mode & 0o777) != 0o700:
        os.chmod(requested, 0o700)
    if previous is not None:  # left by a run that was killed: its intermediates go
        for name in RUN_FOLDERS:
            shutil.rmtree(requested / name, ignore_errors=True)
    write_marker(requested / MARKER)
    return requested, created


def remove_work(work_dir: Path, created: bool) -> None:
    """Remove what this run put in the work directory (all of it if we created it)."""
    if created:
        shutil.rmtree(work_dir, ignore_errors=True)
        return
    for name in RUN_FOLDERS:
        shutil.rmtree(work_dir / name, ignore_errors=True)
    (work_dir / MARKER).unlink(missing_ok=True)


def remove_stale_work_dirs(tmp_root: Path | None = None) -> int:
    """Remove the temporary work folders of earlier runs of ours that were killed; returns how many."""
    tmp_root = Path(tmp_root or tempfile.gettempdir())
    removed = 0
    for folder in tmp_root.glob(PREFIX + "*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            data = read_marker(folder / MARKER)
            if data is None and time.time() - folder.stat().st_mtime < UNMARKED_GRACE_S:
                continue  # a run that is starting right now
        except OSError:
            continue
        if not is_alive(data):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
