"""Every step of defacing one image records its own outcome.

A step appends one JSON line to the image's step log (a file in the private work directory):
``{"step": "detect", "status": "ok" | "refused" | "failed", "reason": "…", "seconds": 0.8}``.
The run reads these logs to tell, per image, which step refused or failed and why: nothing is
learnt from nipype's crash files. Reasons name the image by its path in the dataset (never an
absolute input path) and hold no metadata value.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, isdefined, traits

from bids_deface.images import InputImageError


class ImageRefused(RuntimeError):
    """An image that must not be released: a feature that cannot be shown gone, a face QC still
    finds. The message names the image and the reason."""


# exceptions whose message already names the image and says what is wrong
OWN_ERRORS = (InputImageError, ImageRefused)


class StepInputSpec(BaseInterfaceInputSpec):
    source_name = traits.Str(desc="the image's path in its dataset: how messages name it")
    step_log = traits.Str(desc="JSON-lines file where this step records its outcome")


def one_line(exc: BaseException, name: str, step: str) -> str:
    """A curator's one-line reason for ``exc`` raised by ``step`` on image ``name``."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OWN_ERRORS):
        return text if name in text else f"{name}: {text}"
    # absolute paths (work folder, input location) say nothing useful and may identify
    text = re.sub(r"(?<![\w.])/[^\s:'\"]+", "<path>", text)
    return f"{name}: {type(exc).__name__}: {text} (step '{step}')"


def record_step(step_log: str | None, step: str, status: str, reason: str = "", seconds: float = 0.0) -> None:
    if not step_log:
        return
    path = Path(step_log)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"step": step, "status": status, "reason": reason, "seconds": round(seconds, 3)})
    with open(path, "a", encoding="utf-8") as log:  # one short write: safe between processes
        log.write(line + "\n")
        log.flush()
        os.fsync(log.fileno())


def read_step_log(step_log: Path) -> list[dict]:
    """The recorded outcomes of one image's steps, in order (empty when none ran)."""
    try:
        lines = Path(step_log).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


class RecordedStep(SimpleInterface):
    """A SimpleInterface that records its outcome in the image's step log.

    Subclasses implement ``_run_step(runtime)`` and name themselves with ``step``.
    """

    step = "step"

    def _run_interface(self, runtime):
        name = self.inputs.source_name if isdefined(self.inputs.source_name) else "image"
        log = self.inputs.step_log if isdefined(self.inputs.step_log) else None
        started = time.perf_counter()
        try:
            runtime = self._run_step(runtime)
        except BaseException as exc:
            status = "refused" if isinstance(exc, ImageRefused) else "failed"
            record_step(log, self.step, status, one_line(exc, name, self.step), time.perf_counter() - started)
            raise
        record_step(log, self.step, "ok", "", time.perf_counter() - started)
        return runtime

    def _run_step(self, runtime):  # pragma: no cover - every subclass defines it
        raise NotImplementedError
