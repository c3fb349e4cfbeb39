"""The private working directory: it holds un-defaced intermediates, so only we read it and it
does not outlive the run."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# what a run puts in a work directory it did not create
RUN_FOLDERS = ("bids_deface_wf", "crash", "steps")


def private_work_dir(requested: Path | None) -> tuple[Path, bool]:
    """A working directory only we can read: (path, created by this run)."""
    if requested is None:
        return Path(tempfile.mkdtemp(prefix="bids-deface-work-")), True
    created = not requested.exists()
    requested.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (requested.stat().st_mode & 0o777) != 0o700:
        os.chmod(requested, 0o700)
    return requested, created


def remove_work(work_dir: Path, created: bool) -> None:
    """Remove what this run put in the work directory (all of it if we created it)."""
    if created:
        shutil.rmtree(work_dir, ignore_errors=True)
        return
    for name in RUN_FOLDERS:
        shutil.rmtree(work_dir / name, ignore_errors=True)
