"""Deface the pixels of one head series with the BIDS App's core.

:func:`deface_series` splits the series into stacks (:mod:`bids_deface.dicom.stacks`),
detects the eyes, nose and ears of each stack (on its own grid when that is regular,
else on a regular grid resampled from its slices, with the labels mapped back to each
slice's own plane: :mod:`bids_deface.dicom.resample`), distorts them on the slices as
they are and writes the stored values back. Detection and distortion are behind
:class:`Defacer`.

The shipped defacer (:func:`core_defacer`) fails closed, as the BIDS side does: each detection
is weighed against a registered template head (:func:`bids_deface.features.template.localise`,
:func:`bids_deface.features.gate.decide`). A stack whose selected features cannot all be shown
gone (found, placed by the template, or outside the field of view) raises
:class:`SeriesRefused`, and the whole series is withheld; ``allow_partial`` defaces with what was
found instead, and says so. The gate's brain guard is a protect mask: no voxel in it changes.

What cannot be defaced is never passed through with its face: a head series whose stacks
are all too small is kept only when it is a scout (fewer than ``MIN_SLICES`` frames in
all); beside a defaced volume, smaller stacks and stray slices fail, each with its reason.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset

from bids_deface.dicom.resample import labels_to_stack, regular_grid, resampled_image
from bids_deface.dicom.series import MIN_SLICES, Stack, stack_image, write_stack
from bids_deface.dicom.stacks import split_series
from bids_deface.images import stored_data

# Refuse a volume when the feature labels or the distortions would cover more than this (mL):
# the eye, nose and ear regions of an adult head, air in front of the face included, measure
# 0.3-0.6 L; a detection gone wrong (half the field of view called "nose") several litres. In
# litres, not as a share of the volume, because clinical fields of view crop the head tightly.
MAX_DISTORTED_ML = 1500.0


class SeriesRefused(Exception):
    """A head series the gate will not let out with its face: withheld whole. ``reason``: one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Defacer:
    """The BIDS App's core, as two steps so a series' volumes share one detection.

    ``detect(img) -> (labels array, info)``; ``distort(img, labels, seed) -> (img, counts)``.
    ``info`` may hold ``warnings`` and ``gate`` (notes for the log) and ``protect`` (bool array,
    ``img``'s grid: voxels no distortion may change, then also passed to ``distort`` as
    ``protect=``). ``detect`` raises :class:`SeriesRefused` for a volume it will not deface.
    """

    detect: Callable[[nib.Nifti1Image], tuple[np.ndarray, dict]]
    distort: Callable[..., tuple[nib.Nifti1Image, dict]]


def _gate_notes(decision) -> list[str]:
    """What a curator should know about a volume the gate let through: stand-ins and overrides."""
    notes = []
    for info in decision.provenance["features"].values():
        for part in info["parts"]:
            if info["selected"] and part["source"] == "template":
                notes.append(f"{part['part']}: not found by the detector, placed by the registered template")
            elif info["selected"] and part["source"] == "outside-fov":
                notes.append(f"{part['part']}: outside the field of view")
    if decision.provenance["problems"]:  # let through only because --allow-partial was given
        notes.append("--allow-partial: " + decision.reason)
    return notes


def core_defacer(features: tuple[str, ...] | None = None, allow_partial: bool = False) -> Defacer:
    """The detector, fail-closed gate and distortions of the BIDS App (bids_deface.features,
    bids_deface.distort). ``allow_partial``: deface with what was found where a feature is
    missing, doubled or implausible (the gate's override, recorded in the notes)."""
    from bids_deface.distort import deface_image
    from bids_deface.features import FEATURES
    from bids_deface.features.detect import detect_features
    from bids_deface.features.gate import decide
    from bids_deface.features.template import localise

    features = tuple(features or FEATURES)
    # distort.py's protect keyword (the brain guard inside the operators) where it has one;
    # deface_series puts protected voxels back either way
    takes_protect = "protect" in inspect.signature(deface_image).parameters

    def detect(img):
        found = detect_features(img)
        decision = decide(found, localise(img, "T1w"), img, features, allow_partial)
        if not decision.defaced:
            raise SeriesRefused(decision.reason)
        info = {"confidence": found.confidence, "warnings": list(found.warnings),
                "gate": _gate_notes(decision), "protect": decision.protect}
        return decision.labels, info

    def distort(img, labels, seed, protect=None):
        extra = {"protect": protect} if protect is not None and takes_protect else {}
        return deface_image(img, labels, features=features, seed=seed, **extra)

    return Defacer(detect, distort)


@dataclass
class SeriesOutcome:
    """Per data set (by ``id``): defaced, or why it failed; plus the series' notes."""

    defaced: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)
    kept: str = ""  # pixels kept for the whole series (a scout): why
    warnings: list[str] = field(default_factory=list)
    gate: list[str] = field(default_factory=list)  # the fail-closed gate's notes (stand-ins, override)
    resampled: int = 0  # stacks detected on a resampled regular grid


def deface_series(datasets: list[Dataset], defacer: Defacer, seed: Callable[[int], int]) -> SeriesOutcome:
    """Deface every volume of a head series in place (``seed(n)``: the n-th stack's seed).

    Raises :class:`SeriesRefused` (from the defacer's gate) when any of its volumes may not be
    defaced: the caller then writes nothing of the series."""
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
        labels, protect = _labels(stack, img, defacer, labels_by_grid, outcome)
        voxel_ml = abs(np.linalg.det(stack.affine[:3, :3])) / 1000.0
        _check_plausible(np.count_nonzero(labels) * voxel_ml, "labelled")  # whatever the operators count
        extra = {} if protect is None else {"protect": protect}
        defaced, counts = defacer.distort(img, labels, seed(n), **extra)
        _check_plausible(sum(counts.values()) * voxel_ml, "distorted")
        volume = stored_data(defaced)
        if protect is not None:  # the brain guard, whatever the operators did: stored values as read
            volume = np.where(protect, stored_data(img), volume)
        outcome.defaced |= write_stack(stack, volume, cache)
    outcome.defaced -= set(outcome.failed)  # a multi-frame file with a stray frame is not written
    return outcome


def _check_plausible(volume_ml: float, what: str) -> None:
    if volume_ml > MAX_DISTORTED_ML:
        raise ValueError(f"implausible detection: {volume_ml:.0f} mL of the volume would be {what}")


def _labels(stack: Stack, img: nib.Nifti1Image, defacer: Defacer, cache: dict, outcome: SeriesOutcome):
    """(labels, protect mask or None) on the stack's own slices: detected on its grid, or on a
    regular resampled one and mapped back (nearest grid point)."""
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
    labels, protect = cache[key]
    if protect is not None:
        protect = labels_to_stack(protect.astype(np.uint8), grid, stack.shape).astype(bool)
    return labels_to_stack(labels, grid, stack.shape), protect


def _detect(defacer: Defacer, img: nib.Nifti1Image, outcome: SeriesOutcome) -> tuple[np.ndarray, np.ndarray | None]:
    labels, info = defacer.detect(img)
    outcome.warnings += [w for w in info.get("warnings", []) if w not in outcome.warnings]
    outcome.gate += [g for g in info.get("gate", []) if g not in outcome.gate]
    protect = info.get("protect")
    return labels, None if protect is None else np.asarray(protect, bool)
