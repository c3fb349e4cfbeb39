"""Every step of defacing an image records its own outcome.

A step appends one JSON line to the image's step log (a file in the private work directory):
``{"step": "detect", "status": "ok" | "refused" | "failed", "reason": "…", "seconds": 0.8}``.
The run reads these logs to tell, per image, which step refused or failed and why, wherever the step
ran (this process, a worker, a cluster node); nothing is learnt from nipype's crash files. Reasons
name the image by its path in the dataset (never an absolute input path) and hold no metadata value.
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

from bids_deface.images import InputImageError

LAST_STEP = "write"


class ImageRefused(RuntimeError):
    """An image that must not be released: a feature that cannot be shown gone, a face QC still
    finds. The message names the image and the reason."""


# exceptions whose message already names the image and says what is wrong
OWN_ERRORS = (InputImageError, ImageRefused)


def one_line(exc: BaseException, name: str, step: str) -> str:
    """A curator's one-line reason for ``exc`` raised by ``step`` on image ``name``."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OWN_ERRORS):
        return text if name in text else f"{name}: {text}"
    # absolute paths (work folder, input location) say nothing useful and may identify
    text = re.sub(r"(?<![\w.])/[^\s:'\"]+", "<path>", text)
    return f"{name}: {type(exc).__name__}: {text} (step '{step}')"


def record_step(step_log: str | Path | None, step: str, status: str, reason: str = "", seconds: float = 0.0) -> None:
    if not step_log:
        return
    path = Path(step_log)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"step": step, "status": status, "reason": reason, "seconds": round(seconds, 3)})
    with open(path, "a", encoding="utf-8") as log:  # one short write: safe between processes
        log.write(line + "\n")
        log.flush()
        os.fsync(log.fileno())


def read_step_log(step_log: str | Path) -> list[dict]:
    """The recorded outcomes of one image's steps, in order (empty when none ran)."""
    try:
        lines = Path(step_log).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def verdict_of(steps: list[dict]) -> tuple[str, str] | None:
    """(verdict, reason) once an image is finished, else None: "defaced" when its last step wrote
    it, "refused"/"failed" with the reason of the step that stopped it."""
    for entry in steps:
        if entry["status"] != "ok":
            return entry["status"], entry["reason"]
    if steps and steps[-1]["step"] == LAST_STEP:
        return "defaced", ""
    return None


class StepLog:
    """The step log of one image: ``with log.step("detect"): …`` records the step's outcome."""

    def __init__(self, path: str | Path | None, name: str):
        self.path, self.name = path, name

    @contextmanager
    def step(self, step: str):
        started = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            status = "refused" if isinstance(exc, ImageRefused) else "failed"
            record_step(self.path, step, status, one_line(exc, self.name, step), time.perf_counter() - started)
            raise
        record_step(self.path, step, "ok", "", time.perf_counter() - started)

    def refuse(self, step: str, reason: str) -> None:
        """Refuse the image at ``step`` (records it and raises :class:`ImageRefused`)."""
        with self.step(step):
            raise ImageRefused(reason if self.name in reason else f"{self.name}: {reason}")
