"""The detector network at run time: the trained U-Net, exported to ONNX, run by ONNX Runtime.

Training happens in torch (``training/``, ``features/unet.py``); the app only runs the network,
and ONNX Runtime does that at a tenth of torch's start-up cost (~0.15 s against ~1.8 s of CPU
to import) and faster on CPU. The exported file ships beside the torch weights it was made from
(``training/export.py`` writes both the ``.onnx`` and a ``.onnx.json`` naming the weights' sha256;
a test checks that they still agree).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import shipped_weights

ONNX_SUFFIX = ".onnx"


def shipped_network() -> Path:
    """The exported network that ships in the package, beside :func:`shipped_weights`."""
    return shipped_weights().with_suffix(ONNX_SUFFIX)


def sha256sum(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def mirror_averaged_probabilities(logits, x: np.ndarray) -> np.ndarray:
    """Class probabilities (classes, *grid) for one normalised grid image ``x``.

    The mean of the prediction on the grid and on its left-right mirror image (the classes are
    symmetric: both eyes are "eyes", both ears "ears"), run as one batch of two through
    ``logits(batch (2, 1, *grid) float32) -> (2, classes, *grid)``.
    """
    batch = np.ascontiguousarray(np.stack([x, x[::-1]])[:, None], dtype=np.float32)
    out = np.asarray(logits(batch), dtype=np.float32)
    out -= out.max(axis=1, keepdims=True)
    probs = np.exp(out)
    probs /= probs.sum(axis=1, keepdims=True)
    return (probs[0] + probs[1][:, ::-1]) / 2


@dataclass(frozen=True)
class Network:
    """A loaded detector network: ``predict(x)`` gives class probabilities for a grid image."""

    session: object  # onnxruntime.InferenceSession
    sha256: str  # of the .onnx file
    weights_sha256: str  # of the torch weights it was exported from

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.session.get_inputs()[0].name: batch})[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return mirror_averaged_probabilities(self.logits, x)


@lru_cache(maxsize=4)
def load_network(path: str | None = None, threads: int | None = None):
    """The shipped (or given) detector, ready to run on ``threads`` threads.

    An ``.onnx`` file runs in ONNX Runtime (the app); trained torch weights (``.pt``, e.g. a
    candidate being evaluated in ``training/``) run in torch (:class:`~.unet.TorchNetwork`).
    """
    if path and str(path).endswith(".pt"):
        from .unet import TorchNetwork

        return TorchNetwork.load(Path(path), sha256sum(Path(path)))
    import onnxruntime as ort

    onnx = Path(path) if path else shipped_network()
    if not onnx.is_file():
        raise FileNotFoundError(f"{onnx.name}: detector network not found (export it with python -m training.export)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the app reports what matters itself
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    about = onnx.with_name(onnx.name + ".json")
    weights_sha = json.loads(about.read_text()).get("weights_sha256", "") if about.is_file() else ""
    return Network(session, sha256sum(onnx), weights_sha)
