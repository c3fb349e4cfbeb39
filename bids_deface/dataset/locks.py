"""One process at a time on a cache entry: array tasks that start together wait for the first
one's result instead of each computing it (the lock goes with the process, even if it dies)."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


def private_dir(path: Path) -> Path:
    """``path`` created if missing, readable by its owner only (it holds facts about the input)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@contextmanager
def exclusive(lock_file: Path):
    """Hold an exclusive ``flock`` on ``lock_file`` (created) for the ``with`` block."""
    private_dir(lock_file.parent)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
