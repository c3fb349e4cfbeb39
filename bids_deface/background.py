"""A computation on a thread of its own: started now, awaited later.

ONNX Runtime, OpenCV, numpy and scipy's resampling release the interpreter for most of their
work, so two such computations share two cores: the template registration beside the detector,
QC's ear and brain checks beside its face detectors. A daemon thread: an interrupted run does not
wait for it."""

from __future__ import annotations

import threading


class Background:
    """``fn(*args, **kwargs)`` on a daemon thread; :meth:`result` waits and raises what it raised."""

    def __init__(self, fn, *args, **kwargs):
        self._done, self._value, self._error = threading.Event(), None, None
        threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True).start()

    def _run(self, fn, args, kwargs) -> None:
        try:
            self._value = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits it
            self._error = exc
        finally:
            self._done.set()

    def result(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value
