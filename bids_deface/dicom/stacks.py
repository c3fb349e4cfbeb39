"""Split the frames of a series into stacks of slices, as scanners really place them.

A stack is a set of frames that share orientation and pixel grid and lie on one line
along the slice normal: the spacing may jitter, a slice may be missing, the gap may vary,
and with a gantry tilt each slice's origin moves within the plane as the stack goes on.
Only a series that is not one stack (several orientations or pixel grids, localisers
mixed in, slabs far apart) is split; a frame that fits no stack is returned as a
:class:`Stray` with the reason, never silently dropped.

Frames at one position (echoes, repetitions, diffusion directions) go to successive
stacks in acquisition order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from bids_deface.dicom.series import Frame, NotAVolume, Stack, frames_of, LPS_TO_RAS

SAME_POSITION_MM = 0.02  # frames closer than this along the normal share a position
MAX_GAP_STEPS = 4.0  # a gap wider than this many median steps starts a new stack
REGULAR_STEP_TOLERANCE = 0.01  # steps within 1 % of the median (+1 µm): a regular grid
IN_PLANE_TOLERANCE_MM = 0.5  # a slice's origin this far off its stack's line fits no stack
SHEAR_TOLERANCE_MM = 0.01  # in-plane drift over the whole stack below this: no tilt


@dataclass
class Stray:
    frame: Frame
    reason: str


@dataclass
class Split:
    stacks: list[Stack]
    strays: list[Stray]


def _acquisition_order(f: Frame) -> tuple:
    return (int(f.ds.get("InstanceNumber", 0) or 0), f.index or 0)


def _grid_key(f: Frame) -> tuple:
    return (tuple(np.round(f.orientation, 3)), tuple(np.round(f.spacing, 4)), int(f.ds.Rows), int(f.ds.Columns))


def split_series(datasets: list[Dataset]) -> Split:
    """The stacks and the stray frames of a series (raises NotAVolume without geometry)."""
    groups: dict[tuple, list[Frame]] = defaultdict(list)
    for ds in datasets:
        for f in frames_of(ds):
            groups[_grid_key(f)].append(f)
    result = Split([], [])
    for group in groups.values():
        if len(group) == 1:
            result.strays.append(Stray(group[0], "slice fits no stack: alone in its orientation and pixel grid"))
            continue
        _split_group(group, result)
    return result


def stacks(datasets: list[Dataset]) -> list[Stack]:
    """The stacks of a series that is stacks only; NotAVolume names the first stray."""
    split = split_series(datasets)
    if split.strays:
        raise NotAVolume(split.strays[0].reason)
    return split.stacks


def _split_group(group: list[Frame], result: Split) -> None:
    normal = np.cross(group[0].orientation[:3], group[0].orientation[3:])
    ordered = sorted(group, key=lambda f: (float(f.position @ normal), _acquisition_order(f)))
    bins: list[list[Frame]] = []
    for f in ordered:  # frames at one position, in acquisition order
        if bins and float((f.position - bins[-1][0].position) @ normal) < SAME_POSITION_MM:
            bins[-1].append(f)
        else:
            bins.append([f])
    for b in bins:
        b.sort(key=_acquisition_order)
    for run in _runs(bins, normal):
        for r in range(max(len(b) for b in run)):
            volume = [b[r] for b in run if len(b) > r]
            if len(volume) == 1:
                why = "repeats a position of its stack" if len(run) > 1 else "beyond a gap, alone"
                result.strays.append(Stray(volume[0], f"slice fits no stack: {why}"))
                continue
            _line_up(volume, normal, result)


def _runs(bins: list[list[Frame]], normal: np.ndarray) -> list[list[list[Frame]]]:
    """Positions split where the gap is wider than MAX_GAP_STEPS median steps."""
    if len(bins) < 2:
        return [bins]
    n = np.array([float(b[0].position @ normal) for b in bins])
    steps = np.diff(n)
    limit = MAX_GAP_STEPS * float(np.median(steps))
    runs, start = [], 0
    for i, step in enumerate(steps):
        if step > limit:
            runs.append(bins[start:i + 1])
            start = i + 1
    runs.append(bins[start:])
    return runs


def _line_up(frames: list[Frame], normal: np.ndarray, result: Split) -> None:
    """Frames whose origins lie on one line (any tilt) form a stack; the rest are strays."""
    row, col = frames[0].orientation[:3], frames[0].orientation[3:]
    pos = np.array([f.position for f in frames])
    n = pos @ normal
    inplane = np.stack([pos @ row, pos @ col], axis=1)
    keep = np.ones(len(frames), bool)
    for _ in range(3):  # refit without the worst outlier while one is off the line
        fit = np.polyfit(n[keep], inplane[keep], 1) if keep.sum() > 1 else None
        if fit is None:
            break
        off = np.linalg.norm(inplane - (np.outer(n, fit[0]) + fit[1]), axis=1)
        worst = int(np.argmax(np.where(keep, off, -1)))
        if off[worst] <= IN_PLANE_TOLERANCE_MM:
            break
        keep[worst] = False
    for f, k in zip(frames, keep):
        if not k:
            result.strays.append(Stray(f, "slice fits no stack: off the line of its stack's slices"))
    kept = [f for f, k in zip(frames, keep) if k]
    if len(kept) == 1:
        result.strays.append(Stray(kept[0], "slice fits no stack: alone on its line"))
    elif kept:
        result.stacks.append(make_stack(kept, normal))


def make_stack(frames: list[Frame], normal: np.ndarray) -> Stack:
    """A stack of frames sorted along ``normal``; its affine runs from the first to the last."""
    first = frames[0]
    rows, cols = int(first.ds.Rows), int(first.ds.Columns)
    k = len(frames)
    positions = np.array([f.position for f in frames])
    n = positions @ normal
    steps = np.diff(n)
    step = float(np.median(steps))
    row_cos, col_cos = first.orientation[:3], first.orientation[3:]
    drift = positions - positions[0] - np.outer(n - n[0], normal)  # in-plane movement of the origin
    regular = bool(step > 0 and np.max(np.abs(steps - step)) <= REGULAR_STEP_TOLERANCE * step + 1e-3
                   and np.max(np.linalg.norm(drift, axis=1)) <= SHEAR_TOLERANCE_MM)
    lps = np.eye(4)
    lps[:3, 0] = row_cos * first.spacing[1]
    lps[:3, 1] = col_cos * first.spacing[0]
    lps[:3, 2] = (positions[-1] - positions[0]) / (k - 1)
    lps[:3, 3] = positions[0]
    return Stack(frames, LPS_TO_RAS @ lps, (cols, rows, k), regular=regular, normal=normal, positions=positions)
