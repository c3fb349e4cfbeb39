"""Messages of a run: one line each on the terminal, the same lines with times in the log file."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

LOGGER = logging.getLogger("bids_deface")
# lines said before the log file exists (validation, selection) go into it when it opens
_EARLY = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)


class _OneLine(logging.Formatter):
    def format(self, record):
        level = "" if record.levelno == logging.INFO else f"{record.levelname}: "
        return f"bids-deface: {level}{record.getMessage()}"


def setup_console_logging(verbose: int) -> None:
    LOGGER.setLevel(logging.DEBUG if verbose else logging.INFO)
    LOGGER.propagate = False
    if not any(getattr(h, "_bids_deface_console", False) for h in LOGGER.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_OneLine())
        handler._bids_deface_console = True
        LOGGER.addHandler(handler)
    if _EARLY not in LOGGER.handlers:
        LOGGER.addHandler(_EARLY)


def add_file_logging(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for handler in [h for h in LOGGER.handlers if isinstance(h, logging.FileHandler)]:
        LOGGER.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    if _EARLY in LOGGER.handlers:  # the lines said so far, then stop buffering
        _EARLY.setTarget(handler)
        _EARLY.flush()
        LOGGER.removeHandler(_EARLY)
    LOGGER.addHandler(handler)
