"""Auricle coverage and feature Dice of the full-resolution extent, on every annotated head and
perturbed versions of it (reoriented, tilted 20 degrees, resampled to 5 mm slices).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_surface.py [--heads ...]

Per head and perturbation: the auricle coverage (the smaller share, over the two labelled
auricles of ``training.labels``, of an auricle's voxels inside the ear operator's region, goal
>= 95%) with the shipped detector's labels, the Dice of those labels per feature against the
training labels carried onto the perturbed grid, and the seconds detect_features took.
"""

from __future__ import annotations

import argparse
import sys
import time

import nibabel as nib
import numpy as np

from bids_deface.distort import distortion_regions
from bids_deface.features import LABELS
from bids_deface.features.detect import detect_features
from bids_deface.features.surface import auricle_coverages
from tests.test_surface import reoriented, thick_slices, tilted
from training.labels import head_labels
from training.train import annotated_heads

PERTURBATIONS = {"as is": lambda img, lab: (img, lab), "reoriented": reoriented, "tilted 20": tilted,
                 "5 mm slices": thick_slices}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", nargs="*", default=annotated_heads())
    args = ap.parse_args(argv)
    print(f"{'head':16s} {'grid':12s} {'coverage':>16s} " + " ".join(f"{n + ' dice':>10s}" for n in LABELS) + "  seconds")
    worst = 1.0
    for head in args.heads:
        img, labels = head_labels(head)
        img = nib.Nifti1Image(np.asanyarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3]), img.affine)
        labels = np.asanyarray(labels.dataobj)
        for name, perturb in PERTURBATIONS.items():
            moved, truth = perturb(img, labels)
            t = time.perf_counter()
            detection = detect_features(moved)
            seconds = time.perf_counter() - t
            region = distortion_regions(moved, detection.labels, ("ears",))["ears"]
            coverage = auricle_coverages(region, truth)
            worst = min(worst, min(coverage, default=0.0))
            pred = np.asanyarray(detection.labels.dataobj)
            dice = [2 * ((pred == v) & (truth == v)).sum() / max(1, (pred == v).sum() + (truth == v).sum())
                    for v in LABELS.values()]
            print(f"{head:16s} {name:12s} {'/'.join(f'{c:.1%}' for c in coverage):>16s} "
                  + " ".join(f"{d:10.3f}" for d in dice) + f"  {seconds:7.2f}", flush=True)
    print(f"worst auricle coverage: {worst:.1%} (goal >= 95%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
