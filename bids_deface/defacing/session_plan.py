"""The order of a session's images and the links between them, and a session defaced in order in
one process (a cluster job; a session without a reference suffix). What each image does with its
links is :mod:`.session`'s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_deface.defacing.session import choose_reference
from bids_deface.features import LABELS


@dataclass(frozen=True)
class PlannedImage:
    """How one image of a session is defaced: on its own (the reference, or a session without
    one), registered to the reference, or sharing the first image of its acquisition."""

    index: int  # into the session's images
    reference: int | None = None  # registered to (and united with) this image's kept result
    shared: int | None = None  # takes this image's distortion as is
    keep: bool = False  # keeps its result for others


def plan_session(suffixes: list[str], keys: list[str], reference: int | None) -> list[PlannedImage]:
    """The order and the links of a session's images: the reference first, the first image of each
    other acquisition next (registered to the reference), the rest of each acquisition after it."""
    leaders: dict[tuple, int] = {}
    for i, key in enumerate(keys):
        leaders.setdefault(key, i)
    if reference is not None:  # the reference leads its own acquisition
        leaders[keys[reference]] = reference
    order = ([reference] if reference is not None else []) + [i for i in leaders.values() if i != reference]
    order += [i for i in range(len(keys)) if i not in order]
    kept = {leaders[keys[i]] for i in range(len(keys)) if leaders[keys[i]] != i}
    if reference is not None and len(leaders) > 1:
        kept.add(reference)
    plan = []
    for i in order:
        leader = leaders[keys[i]]
        if leader != i:
            plan.append(PlannedImage(i, shared=leader))
        else:
            plan.append(PlannedImage(i, reference=reference if reference not in (None, i) else None, keep=i in kept))
    return plan


def kept_path(job) -> str:
    """Where an image keeps its result for the others of its session (private work directory)."""
    return str(Path(job.step_log).with_suffix(".reference.npz"))


def best_detected(jobs, settings) -> int:
    """The image whose detection is the most confident (a session without a reference suffix)."""
    from bids_deface.features.detect import detect_features
    from bids_deface.features.inference import load_network
    from bids_deface.images import load_volume, reorient_to_ras

    def confidence(job) -> float:
        try:
            img, stored = load_volume(job.path, job.relpath)
            found = detect_features(reorient_to_ras(img, stored), network=load_network(threads=settings.threads))
            return float(np.mean([found.confidence.get(f, 0.0) for f in LABELS]))
        except Exception:  # such an image fails in its own journey, with its own reason
            return -1.0

    return int(np.argmax([confidence(job) for job in jobs]))


def deface_session(jobs, keys, settings, reference_suffix: str = "T1w") -> list[tuple[str, str]]:
    """Every image of one session, in order, in this process (a cluster job, or a session without a
    reference suffix); the verdict of each, in the order of ``jobs``."""
    from bids_deface.defacing.image import deface_one

    reference = choose_reference([job.suffix for job in jobs], reference_suffix)
    if reference is None and len(jobs) > 1:
        reference = best_detected(jobs, settings)
    verdicts: dict[int, tuple[str, str]] = {}
    for step in plan_session([job.suffix for job in jobs], keys, reference):
        job = jobs[step.index]
        verdicts[step.index] = deface_one(
            job, settings,
            reference=kept_path(jobs[step.reference]) if step.reference is not None else None,
            shared=kept_path(jobs[step.shared]) if step.shared is not None else None,
            keep=kept_path(job) if step.keep else None)
    return [verdicts[i] for i in range(len(jobs))]
