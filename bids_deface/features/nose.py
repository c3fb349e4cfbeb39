"""The external nose at full resolution, from landmarks found on the face's own surface.

Seen from the front, the face is a surface; in the face's own frame (the eyes give left-right,
the image's anterior axis forward) the midline profile shows the nasion, the tip (pronasale)
and the subnasale (:func:`nose_landmarks`). The nose is then what the training labels call the
nose (``training/labels.py``): the head in front of the line from nasion to subnasale, less
``NOSE_BACK_MM``, within a width that grows from the bridge to the alae
(:func:`nose_from_landmarks`), so that the detector's full-resolution nose and its training
labels mean the same thing.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from .surface import Head, _front_box, columns, head_in_box, surface_depth, world_box

NOSE_MARGIN_MM = 10.0  # around the detected nose, where its tip may lie
NOSE_SEARCH_MM = 45.0  # around the detected nose, where nasion and subnasale may lie
NASION_REACH_MM, SUBNASALE_REACH_MM = 35.0, 30.0  # from the tip, along the midline profile
NASION_ABOVE_EYES_MM = 3.0  # the nasion lies 2-6 mm above the eyes' centres on the annotated heads
NOSE_TIP_BELOW_EYES_MM = (12.0, 45.0)  # the pronasale, 22-32 mm below them
MIDLINE_MM = 2.5
SUBNASALE_DROP_MM = 5.0
SUBNASALE_RATIO, SUBNASALE_RANGE = 0.53, (0.42, 0.7)
# the training labels' nose (training/labels.py): its base lies NOSE_BACK_MM behind the line from
# nasion to subnasale; its half-width grows from the bridge to the alae
NOSE_BACK_MM = 4.0
NOSE_HALF_WIDTH_MM = (9.0, 19.0)


def _surface_points(head: Head, box: tuple[slice, ...], front: tuple[int, int]) -> np.ndarray:
    """World coordinates (n, 3) of the face surface (first tissue voxel from the front) in the
    front-back columns of ``box``."""
    reach, _ = _front_box(head.data.shape, head.affine, box, front)
    cols = columns(head.data[reach] > head.threshold, front)
    first, hit = surface_depth(cols)
    axis, sign = front
    others = [a for a in range(3) if a != axis]
    ijk = np.zeros(first.shape + (3,))
    for a, grid in zip(others, np.meshgrid(*[np.arange(reach[a].start, reach[a].stop) for a in others], indexing="ij")):
        ijk[..., a] = grid
    ijk[..., axis] = (reach[axis].stop - 1 - first) if sign > 0 else (reach[axis].start + first)
    return nib.affines.apply_affine(head.affine, ijk[hit])


def face_frame(eyes, anterior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Origin (the eyes' midpoint) and rows (left-right, up, forward) of the face's own frame."""
    eyes = np.asarray(eyes, float)
    lr = eyes[1] - eyes[0]
    lr = lr * np.sign(lr[0]) / np.linalg.norm(lr)  # towards +x (the subject's left in RAS)
    fwd = anterior - lr * float(anterior @ lr)
    fwd /= np.linalg.norm(fwd)
    return eyes.mean(0), np.stack([lr, np.cross(lr, fwd), fwd])


def _subnasale_height(up: np.ndarray, fwd: np.ndarray, tip_up: float, tip_fwd: float) -> float:
    """Height of the subnasale on the midline profile ``fwd(up)``: walking down from the tip,
    where the columella's descent ends (the profile levels off or turns forward again after
    falling at least SUBNASALE_DROP_MM); the profile's lowest point if it never does."""
    heights = np.arange(tip_up, tip_up - SUBNASALE_REACH_MM, -1.0)
    profile = np.full(heights.size, np.nan)
    for i, h in enumerate(heights):
        sel = np.abs(up - h) <= 0.5
        if sel.any():
            profile[i] = np.median(fwd[sel])
    ok = np.isfinite(profile)
    if ok.sum() < 3:
        return tip_up
    profile = np.interp(heights, heights[ok][::-1], profile[ok][::-1])
    profile = ndi.median_filter(profile, 3, mode="nearest")
    slope = np.diff(profile)  # change of forward position per millimetre down
    for i, d in enumerate(slope):
        if profile[i + 1] < tip_fwd - SUBNASALE_DROP_MM and d >= -0.25:
            return float(heights[i + 1])
    return float(heights[int(np.argmin(profile))])


def nose_landmarks(head: Head, lo_mm, hi_mm, front: tuple[int, int], eyes=None) -> dict[str, np.ndarray] | None:
    """Nasion, pronasale and subnasale (world mm) on the face surface near a nose detected within
    the world box ``lo_mm``..``hi_mm``; None when the surface there shows no nose.

    With the two eyes' centres (``eyes``), in the face's own frame: on the midline, the nasion
    at the eyes' height (NASION_ABOVE_EYES_MM higher), the pronasale the most anterior point
    between NOSE_TIP_BELOW_EYES_MM, the subnasale where the profile's descent under the tip ends.
    Without them, the same in world axes around the most anterior point near the box.
    """
    lo, hi = np.asarray(lo_mm, float), np.asarray(hi_mm, float)
    axis, sign = front
    anterior = head.affine[:3, axis] * sign
    anterior = anterior / np.linalg.norm(anterior)
    if eyes is not None and len(eyes) == 2:
        origin, rows = face_frame(eyes, anterior)
        box = world_box(head.data.shape, head.affine, np.minimum(lo, origin) - NOSE_SEARCH_MM,
                        np.maximum(hi, origin) + NOSE_SEARCH_MM)
        pts = _surface_points(head, box, front)
        lr, up, fwd = rows @ (pts - origin).T
        mid = np.abs(lr) <= MIDLINE_MM
        low, high = NOSE_TIP_BELOW_EYES_MM
        tips = mid & (up <= -low) & (up >= -high)
    else:
        rows, origin = np.eye(3)[[0, 2, 1]] * [[1], [1], [1]], np.zeros(3)
        rows[2] = anterior
        box = world_box(head.data.shape, head.affine, lo - NOSE_SEARCH_MM, hi + NOSE_SEARCH_MM)
        pts = _surface_points(head, box, front)
        lr, up, fwd = rows @ (pts - origin).T
        near = np.all((pts >= lo - NOSE_MARGIN_MM) & (pts <= hi + NOSE_MARGIN_MM), axis=-1)
        if not near.any():
            return None
        centre_lr = lr[near][np.argmax(fwd[near])]
        mid = np.abs(lr - centre_lr) <= MIDLINE_MM
        tips = mid & near
    if not tips.any():
        return None
    tip = np.flatnonzero(tips)[np.argmax(fwd[tips])]
    # the pronasale: the middle of the most anterior millimetre (a cut or blunt tip is flat)
    flat = tips & (fwd >= fwd[tip] - 1.0)
    pronasale = pts[flat].mean(0)
    tip_up = float(np.median(up[flat]))
    nasion_up = NASION_ABOVE_EYES_MM if eyes is not None and len(eyes) == 2 else \
        tip_up + NASION_REACH_MM  # (without eyes: no better guess than a typical nose length)
    # the subnasale where the profile levels off under the tip, if that is where noses have it
    # (0.46-0.63 of the nasion-tip height below the tip on the annotated heads), else there
    length = nasion_up - tip_up
    sub_up = _subnasale_height(up[mid], fwd[mid], tip_up, float(fwd[tip]))
    if not SUBNASALE_RANGE[0] <= (tip_up - sub_up) / max(length, 1.0) <= SUBNASALE_RANGE[1]:
        sub_up = tip_up - SUBNASALE_RATIO * length
    sub_up = max(sub_up, float(up[mid].min()) + 1.0)  # a field of view that ends under the nose

    def on_midline(h: float) -> np.ndarray | None:
        sel = mid & (np.abs(up - h) <= 1.0)
        return pts[sel][np.argmax(fwd[sel])] if sel.any() else None

    nasion, subnasale = on_midline(nasion_up), on_midline(sub_up)
    if nasion is None or subnasale is None:
        return None
    return {"nasion": nasion, "pronasale": pronasale, "subnasale": subnasale}


def _linear_form(affine: np.ndarray, box: tuple[slice, ...], direction: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """``direction · (world - origin)`` over the voxels of ``box`` (float32), without coordinates."""
    w = direction @ affine[:3, :3]
    c = float(direction @ (affine[:3, 3] - origin))
    ijk = [np.arange(s.start, s.stop, dtype=np.float32) * np.float32(w[a]) for a, s in enumerate(box)]
    return ijk[0][:, None, None] + ijk[1][None, :, None] + ijk[2][None, None, :] + np.float32(c)


def nose_from_landmarks(affine: np.ndarray, box: tuple[slice, ...], lm: dict[str, np.ndarray],
                        anterior: np.ndarray) -> np.ndarray:
    """Which voxels of ``box`` belong to the external nose of landmarks ``lm``: in front of the line
    from nasion to subnasale (less NOSE_BACK_MM), within a width that grows from the bridge to the
    alae (the training labels' rule, in the face's own frame, so that it holds on a tilted head too)."""
    n, t, s = lm["nasion"], lm["pronasale"], lm["subnasale"]
    up = n - s
    length = max(float(np.linalg.norm(up)), 1.0)
    up /= length
    fwd = anterior - up * float(anterior @ up)
    fwd /= max(float(np.linalg.norm(fwd)), 1e-6)
    along = _linear_form(affine, box, -up, n)
    frac = np.clip(along / length, 0, 1)
    base = frac * float((s - n) @ fwd) - NOSE_BACK_MM
    half = NOSE_HALF_WIDTH_MM[0] + frac * (NOSE_HALF_WIDTH_MM[1] - NOSE_HALF_WIDTH_MM[0])
    return ((along >= 0) & (along <= length + 3) & (_linear_form(affine, box, fwd, n) >= base)
            & (np.abs(_linear_form(affine, box, np.cross(up, fwd), t)) <= half))


def external_nose(head: Head, lo_mm, hi_mm, front: tuple[int, int], eyes=None) -> tuple[tuple[slice, ...], np.ndarray]:
    """The external nose detected within the world box ``lo_mm``..``hi_mm``: (voxel slices, mask).

    Landmarks found on the face surface (:func:`nose_landmarks`) and the training labels' rule
    (:func:`nose_from_landmarks`) over the head voxels (tissue and the nostrils behind the surface).
    """
    lm = nose_landmarks(head, lo_mm, hi_mm, front, eyes)
    if lm is None:
        return world_box(head.data.shape, head.affine, lo_mm, hi_mm), np.zeros((0, 0, 0), bool)
    pts = np.array(list(lm.values()))
    span = NOSE_HALF_WIDTH_MM[1] + 5
    box = world_box(head.data.shape, head.affine, pts.min(0) - span, pts.max(0) + span)
    inside, _ = head_in_box(head, box, front)
    axis, sign = front
    anterior = head.affine[:3, axis] * sign
    return box, inside & nose_from_landmarks(head.affine, box, lm, anterior / np.linalg.norm(anterior))
