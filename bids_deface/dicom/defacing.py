"""Deface the pixels of one head series with the BIDS App's core.

:func:`deface_series` splits the series into stacks (:mod:`bids_deface.dicom.stacks`),
detects the eyes, nose and ears of each stack (on its own grid when that is regular,
else on a regular grid resampled from its slices, with the labels mapped back to each
slice's own plane: :mod:`bids_deface.dicom.resample`), distorts them on the slices as
they are and writes the stored values back. Detection and distortion are behind
:class:`Defacer`, so that other checks (a fail-closed gate) can be plugged in.

What cannot be defaced is never passed through with its face: a head series whose stacks
are all too small is kept only when it is a scout (fewer than ``MIN_SLICES`` frames in
all); beside a defaced volume, smaller stacks and stray slices fail, each with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset

from bids_deface.dicom.resample import labels_to_stack, regular_grid, resampled_image
from bids_deface.dicom.series import MIN_SLICES, Stack, stack_image, write_stack
from bids_deface.dicom.stacks import split_series
from bids_deface.images import stored_data

# Refuse a volume when the distortions would cover more than this (mL): the eye, nose and
# ear regions of an adult head, air in front of the face included, measure 0.3-0.6 L; a
# detection gone wrong (half the field of view called "nose") several litres. In litres,
# not as a share of the volume, because clinical fields of view crop the head tightly.
MAX_DISTORTED_ML = 1500.0


@dataclass
class Defacer:
    """The BIDS App's core, as two steps so a series' volumes share one detection.

    ``detect(img) -> (labels array, info)``; ``distort(img, labels, seed) -> (img, counts)``.
    """

    detect: Callable[[nib.Nifti1Image], tuple[np.ndarray, dict]]
    distort: Callable[[nib.Nifti1Image, np.ndarray, int], tuple[nib.Nifti1Image, dict]]


def core_defacer() -> Defacer:
    """The detector and distortions of the BIDS App (bids_deface.features, bids_deface.distort)."""
    from bids_deface.distort import deface_image
    from bids_deface.features import FEATURES
    from bids_deface.features.detect import detect_features

    def detect(img):
        found = detect_features(img)
        info = {"confidence": found.confidence, "warnings": list(found.warnings)}
        return np.asarray(found.labels.dataobj), info

    def distort(img, labels, seed):
        return deface_image(img, labels, features=FEATURES, seed=seed)

    return Defacer(detect, distort)


@dataclass
class SeriesOutcome:
    """Per data set (by ``id``): defaced, or why it failed; plus the series' notes."""

    defaced: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)
    kept: str = ""  # pixels kept for the whole series (a scout): why
    warnings: list[str] = field(default_factory=list)
    resampled: int = 0  # stacks detected on a resampled regular grid


def deface_series(datasets: list[Dataset], defacer: Defacer, seed: Callable[[int], int]) -> SeriesOutcome:
    """Deface every volume of a head series in place (``seed(n)``: the n-th stack's seed)."""
    split = split_series(datasets)
    outcome = SeriesOutcome()
    frames = sum(len(s.frames) for s in split.stacks) + len(split.strays)
    big = [s for s in split.stacks if s.shape[2] >= MIN_SLICES]
    if not big:
        if frames < MIN_SLICES:
            outcome.kept = f"fewer than {MIN_SLICES} slices"
            return outcome
        raise ValueError(f"not a volume: no stack of {MIN_SLICES} or more slices "
                         f"({len(split.stacks)} stacks, {len(split.strays)} stray slices)")
    for s in split.stacks:
        if s.shape[2] < MIN_SLICES:
            for f in s.frames:
                outcome.failed[id(f.ds)] = (f"stack of {s.shape[2]} slices beside the head volume: "
                                            "too few to deface, not written")
    for stray in split.strays:
        outcome.failed[id(stray.frame.ds)] = f"{stray.reason}; not defaced, not written"
    cache: dict = {}
    labels_by_grid: dict[tuple, np.ndarray] = {}
    for n, stack in enumerate(big):
        img = stack_image(stack, cache)
        labels = _labels(stack, img, defacer, labels_by_grid, outcome)
        defaced, counts = defacer.distort(img, labels, seed(n))
        volume_ml = sum(counts.values()) * abs(np.linalg.det(stack.affine[:3, :3])) / 1000.0
        if volume_ml > MAX_DISTORTED_ML:
            raise ValueError(f"implausible detection: {volume_ml:.0f} mL of the volume would be distorted")
        outcome.defaced |= write_stack(stack, stored_data(defaced), cache)
    outcome.defaced -= set(outcome.failed)  # a multi-frame file with a stray frame is not written
    return outcome


def _labels(stack: Stack, img: nib.Nifti1Image, defacer: Defacer, cache: dict, outcome: SeriesOutcome):
    """Labels on the stack's own slices: detected on its grid, or on a regular resampled one."""
    if stack.regular:
        key = (stack.shape, tuple(np.round(stack.affine, 3).ravel()))
        if key not in cache:  # one detection per geometry (echoes, repetitions)
            cache[key] = _detect(defacer, img, outcome)
        return cache[key]
    grid = regular_grid(stack)
    key = (grid.shape, tuple(np.round(grid.affine, 3).ravel()))
    if key not in cache:
        cache[key] = _detect(defacer, resampled_image(np.asanyarray(img.dataobj), grid), outcome)
        outcome.resampled += 1
    return labels_to_stack(cache[key], grid, stack.shape)


def _detect(defacer: Defacer, img: nib.Nifti1Image, outcome: SeriesOutcome) -> np.ndarray:
    labels, info = defacer.detect(img)
    outcome.warnings += [w for w in info.get("warnings", []) if w not in outcome.warnings]
    return labels
