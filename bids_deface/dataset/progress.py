"""Progress of a long copy: one log line every ``every`` files or ``seconds``, whichever first."""

from __future__ import annotations

import logging
import time

LOGGER = logging.getLogger("bids_deface")


class Progress:
    def __init__(self, total: int, what: str = "raw copy", every: int = 500, seconds: float = 30.0):
        self.total, self.what, self.every, self.seconds = total, what, every, seconds
        self.done = self.skipped = self.nbytes = 0
        self.started = self._last = time.monotonic()

    def step(self, nbytes: int = 0, skipped: bool = False) -> None:
        self.done += 1
        self.skipped += int(skipped)
        self.nbytes += nbytes
        now = time.monotonic()
        if self.done % self.every == 0 or now - self._last >= self.seconds:
            self._last = now
            self.report()

    def report(self) -> None:
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        kept = f", {self.skipped} already written and verified" if self.skipped else ""
        LOGGER.info("%s: %d of %d files%s%s, %.1f GB, %.0f s", self.what, self.done, self.total, share, kept,
                    self.nbytes / 1e9, time.monotonic() - self.started)
