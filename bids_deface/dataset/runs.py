"""Which runs are alive: a marker names a run by process id, host and the process's start time.

A run writes a marker into each folder it works in (its temporary work folder; the output's
``logs/.runs/``). A later run treats a marker as stale, and what it marks as leftovers of a run
killed with ``kill -9``, when the marker is from this host and its process is gone (or the
process id now belongs to a process started at another time). A marker from another host
(a cluster node) is taken as alive unless it is older than :data:`FOREIGN_MARKER_DAYS`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import time
from pathlib import Path

TOKEN_ENV = "BIDS_DEFACE_RUN_TOKEN"
FOREIGN_MARKER_DAYS = 7.0


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def host_digest() -> str:
    """This host, as a digest (markers in the shared output do not name machines)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:16]


def run_token() -> str:
    """This run's token (set once per run and inherited by its worker processes)."""
    token = os.environ.get(TOKEN_ENV)
    if not token:
        token = os.environ[TOKEN_ENV] = secrets.token_hex(6)
    return token


def new_run_token() -> str:
    os.environ[TOKEN_ENV] = secrets.token_hex(6)
    return os.environ[TOKEN_ENV]


def marker(token: str | None = None) -> dict:
    pid = os.getpid()
    return {"token": token or run_token(), "pid": pid, "host": host_digest(), "start": process_start(pid),
            "time": time.time()}


def write_marker(path: Path, token: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(marker(token)))
    os.replace(tmp, path)


def read_marker(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "pid" in data else None


def is_alive(data: dict | None) -> bool:
    """Whether the run a marker describes may still be running."""
    if data is None:
        return False
    if data.get("host") != host_digest():
        return time.time() - float(data.get("time", 0)) < FOREIGN_MARKER_DAYS * 86400
    pid = int(data["pid"])
    if pid == os.getpid() and data.get("token") == os.environ.get(TOKEN_ENV):
        return True
    start = process_start(pid)
    if start is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return data.get("start") is None
    return data.get("start") in (None, start)
