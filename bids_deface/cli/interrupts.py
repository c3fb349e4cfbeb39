"""Ctrl-C, SIGTERM and SIGHUP end a run cleanly: workers stopped, work folder and partial files gone.

The signals raise :class:`Interrupted` in the main thread, so the run unwinds through its
``finally`` (which stops the workers, then removes the work folder and this run's ``.part``
files). nipype's MultiProc workers are forked child processes: each one is made to die with the
run (Linux ``PR_SET_PDEATHSIG``, so a ``kill -9`` of the run does not leave them computing), to
leave the signals to the run, and is terminated when the run stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from pathlib import Path

SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)
PR_SET_PDEATHSIG = 1


class Interrupted(BaseException):
    """The run received a signal to stop (a BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def _raise(signum, frame):
    for sig in SIGNALS:  # cleanup must not be interrupted by a second Ctrl-C
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals():
    """Within the block, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted`."""
    previous = {sig: signal.signal(sig, _raise) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def die_with_parent() -> None:
    """In a worker: receive SIGKILL when the run's process dies, however it dies (Linux)."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the run still terminates its workers
        pass
    if os.getppid() != parent:  # the run died before the call
        os._exit(1)


def _worker_setup(original, cwd):
    for sig in SIGNALS:  # forked from the run: its handlers would make terminate() a no-op
        signal.signal(sig, signal.SIG_IGN if sig == signal.SIGINT else signal.SIG_DFL)
    die_with_parent()
    original(cwd)


def guard_multiproc_workers() -> None:
    """Make nipype's MultiProc workers die with the run (nipype offers no hook of its own: its
    pool initializer is wrapped)."""
    from nipype.pipeline.plugins import multiproc

    original = multiproc.process_initializer
    if getattr(original, "_bids_deface_guard", False):
        return

    def initializer(cwd):
        _worker_setup(original, cwd)

    initializer._bids_deface_guard = True
    multiproc.process_initializer = initializer


def _children(pid: int) -> list[int]:
    """Process ids of every descendant of ``pid`` (Linux /proc; empty elsewhere)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop_workers(timeout: float = 5.0) -> int:
    """Terminate every process this run started (workers and theirs); returns how many."""
    pids = set(_children(os.getpid())) | {p.pid for p in multiprocessing.active_children()}
    if pids:  # the pool's callbacks then fail on purpose ("process pool broken"): not news to a curator
        logging.getLogger("concurrent.futures").setLevel(logging.CRITICAL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_exists(pid) for pid in pids):
        multiprocessing.active_children()  # reaps the ones that exited
        time.sleep(0.05)
    for pid in pids:
        if _exists(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    multiprocessing.active_children()
    return len(pids)


def _exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        if state == "Z":  # exited, waiting to be reaped
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
        return True
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
