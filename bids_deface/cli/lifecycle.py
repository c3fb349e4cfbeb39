"""A participant run leaves nothing behind: not on success, not on failure, not when stopped.

:func:`guarded_run` wraps the run. On entry: a new run token; the temporary work folders and the
output's ``.part`` files left by earlier runs that were killed (``kill -9``) are removed; this
run is registered in the output; SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted`; the
private work folder is made. On exit, however the block ends: every worker process is stopped,
the work folder is removed (unless ``--keep-work``), and this run's ``.part`` files go.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from bids_deface.cli.interrupts import Interrupted, stop_on_signals, stop_workers
from bids_deface.cli.parser import UsageError
from bids_deface.cli.workdir import WorkDirError, private_work_dir, remove_stale_work_dirs, remove_work
from bids_deface.dataset.atomic import register_run, remove_stale_parts
from bids_deface.dataset.runs import new_run_token

LOGGER = logging.getLogger("bids_deface")

__all__ = ["Interrupted", "RunState", "guarded_run", "keep_paths_out_of_log_files"]


@dataclass
class RunState:
    work_dir: Path | None = None
    created: bool = False


@contextlib.contextmanager
def guarded_run(opts):
    """See the module docstring; yields the :class:`RunState` (its work folder)."""
    new_run_token()
    stale_dirs = remove_stale_work_dirs()
    stale_parts = remove_stale_parts(opts.output_dir)
    if stale_dirs or stale_parts:
        LOGGER.info("removed what killed runs left: %d temporary work folder(s), %d partial file(s) in the output",
                    stale_dirs, stale_parts)
    register_run(opts.output_dir)
    state = RunState()
    try:
        with stop_on_signals():
            try:
                state.work_dir, state.created = private_work_dir(
                    opts.work_dir, {"bids_dir": opts.bids_dir, "output_dir": opts.output_dir})
            except WorkDirError as exc:
                raise UsageError(str(exc)) from None
            yield state
    finally:
        stopped = stop_workers()
        if stopped:
            LOGGER.debug("stopped %d worker process(es)", stopped)
        if state.work_dir is not None:
            if opts.keep_work:
                LOGGER.warning("work directory kept (--keep-work): %s (private; it holds un-defaced intermediate "
                               "images: delete it when done)", state.work_dir)
            else:  # un-defaced intermediates never outlive the run unless asked for
                remove_work(state.work_dir, state.created)
        remove_stale_parts(opts.output_dir, only_this_run=True)


class NoPathsInLog(logging.Formatter):
    """For the log file in the output: absolute paths (input, work folder, home …, which can name
    a person) become ``<path>`` (the terminal still shows them)."""

    PATH = re.compile(r"(?<![\w.<])/[^\s:'\"),;]+")

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return self.PATH.sub("<path>", self.inner.format(record))


def keep_paths_out_of_log_files() -> None:
    for handler in LOGGER.handlers:
        if isinstance(handler, logging.FileHandler) and not isinstance(handler.formatter, NoPathsInLog):
            handler.setFormatter(NoPathsInLog(handler.formatter))
