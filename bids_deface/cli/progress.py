"""Progress a curator can follow, read from the images' step logs while the workflow runs.

Every step of every image appends its outcome to that image's step log
(:mod:`bids_deface.defacing.steps`), wherever it runs (this process, a MultiProc worker, a SLURM
node): a thread here reads those logs a few times a second. On a terminal, a tqdm bar shows the
steps done, the images finished and the step running; elsewhere (and always in the log file) one
plain line per finished image says its verdict and time. The same lines reach the terminal and the
log, since both are handlers of one logger.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from bids_deface.cli.logs import LOGGER
from bids_deface.defacing.steps import read_step_log, verdict_of

POLL_SECONDS = 0.25


def verdict_line(relpath: str, verdict: str, reason: str, seconds: float) -> str:
    if verdict == "defaced":
        return f"{relpath}: defaced ({seconds:.1f} s)"
    return f"{reason or relpath + ': ' + verdict} [{verdict}]"


@dataclass
class _Image:
    relpath: str
    step_log: Path
    seen: int = 0  # step-log entries read
    counted: int = 0  # steps shown on the bar
    done: bool = False
    steps: list = field(default_factory=list)


class RunProgress:
    """Watch the step logs of ``images`` ({relpath: step log path}) each having ``n_steps`` steps."""

    def __init__(self, images: dict[str, Path], n_steps: int, *, bar: bool | None = None):
        self.images = [_Image(rel, Path(log)) for rel, log in images.items()]
        self.n_steps = n_steps
        self.bar = sys.stderr.isatty() if bar is None else bar
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bids-deface-progress", daemon=True)
        self._tqdm = None
        self._lock = threading.Lock()

    def __enter__(self) -> "RunProgress":
        if self.bar and LOGGER.isEnabledFor(logging.INFO):
            from tqdm import tqdm

            self._tqdm = tqdm(total=len(self.images) * self.n_steps, unit="step", leave=False, file=sys.stderr,
                              dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} steps [{elapsed}]")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # what finished between the last poll and the end
        if self._tqdm is not None:
            self._tqdm.close()

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            for image in self.images:
                if not image.done:
                    self._update(image)
            if self._tqdm is not None:
                finished = sum(i.done for i in self.images)
                running = [i for i in self.images if i.steps and not i.done]
                where = f" · {Path(running[0].relpath).name}: {running[0].steps[-1]['step']} done" if running else ""
                self._tqdm.set_description_str(f"{finished}/{len(self.images)} images{where}")

    def _update(self, image: _Image) -> None:
        try:
            image.steps = read_step_log(image.step_log)
        except (OSError, ValueError):  # a line being written: read it next time
            return
        new = len(image.steps) - image.seen
        if new <= 0:
            return
        image.seen = len(image.steps)
        for entry in image.steps[-new:]:
            LOGGER.debug("%s: step %s %s (%.1f s)", image.relpath, entry["step"], entry["status"], entry["seconds"])
        verdict = verdict_of(image.steps)
        units = self.n_steps if verdict else min(image.seen, self.n_steps)
        if self._tqdm is not None and units > image.counted:
            self._tqdm.update(units - image.counted)
        image.counted = units
        if verdict is not None:
            image.done = True
            seconds = sum(e["seconds"] for e in image.steps)
            line = verdict_line(image.relpath, *verdict, seconds)
            self._emit(logging.INFO if verdict[0] == "defaced" else logging.ERROR, line)

    def _emit(self, level: int, line: str) -> None:
        if self._tqdm is not None:
            self._tqdm.clear()
        LOGGER.log(level, "%s", line)
        if self._tqdm is not None:
            self._tqdm.refresh()

    def announced(self) -> set[str]:
        """The images whose verdict was already reported."""
        return {image.relpath for image in self.images if image.done}
