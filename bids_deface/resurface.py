"""The new surface over a feature: where the distortions plane the face and the sides of the head.

A :class:`SurfacePlan` looks at the head along one direction (from the front for the eyes and the
nose, from either side for an ear) as front-back columns. Each feature's window is its footprint
seen that way, grown by its margin and feathered (a smooth step to 0); the new surface is the
face envelope (:func:`bids_deface.features.surface.face_envelope`), made to meet the old surface
around the features, and mixed into it by the window's weight. :mod:`bids_deface.distort` applies
the plans: air in front of the new surface, skin beneath it. The parameters are
:class:`bids_deface.distort.Params`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from bids_deface.features import LABELS
from bids_deface.features.surface import axis_towards, columns, face_envelope, from_columns, surface_depth, voxel_sizes

FACE_FEATURES = ("eyes", "nose")  # the operators on the face surface
# Where the skin-like intensity is sampled, mm beneath the face surface: the surface voxel is
# partly air, and on average heads, whose skin fades over several voxels, barely brighter.
SKIN_DEPTH_MM = (1.0, 4.0)
GHOST_MM = 2.0  # in front of a cut surface: its partial-volume rim goes with it
MEET_CLEARANCE_MM, MEET_SMOOTH_MM = 4.0, 10.0  # where and how the envelope is made to meet the face
WINDOW_SMOOTH_MM = 8.0  # where two windows meet


@dataclass
class SurfacePlan:
    """A surface operator over a box of columns along ``front`` (index 0 at the volume's edge
    on that side: the front of the face, or the side of the head for an ear).

    ``box``: voxel slices of the image covered; ``depth``: first tissue voxel of each column
    (float; inf where none); ``envelope``: depth of the face envelope; ``windows``: per feature,
    the weight (0-1) with which the envelope replaces the face in each column.
    """

    box: tuple[slice, ...]
    front: tuple[int, int]
    depth: np.ndarray
    envelope: np.ndarray
    windows: dict[str, np.ndarray]
    band: int
    ghost: int
    length: int
    pixel_mm: tuple[float, float] = (1.0, 1.0)

    def ranges(self, weight: np.ndarray):
        """Per column: where air starts, the new surface (its voxel and the fraction of that
        voxel that is air), where skin ends, and which columns change."""
        hit = np.isfinite(self.depth) & (weight > 0)
        d = np.where(hit, self.depth, 0.0)
        s = np.clip(d + weight * (self.envelope - d), 0, self.length - 1)
        surface = np.floor(s).astype(int)
        d = d.astype(int)
        top = np.maximum(np.where(surface > d, d - self.ghost, surface), 0)
        end = np.minimum(np.maximum(d, surface + 1) + self.band, self.length)
        return top, surface, s - surface, end, hit

    def to_image(self, cols: np.ndarray, shape) -> np.ndarray:
        out = np.zeros(shape, bool)
        out[self.box] = from_columns(cols, self.front)
        return out

    def indices(self, cols: np.ndarray) -> np.ndarray:
        """Image indices (n, 3) of the voxels a column-space mask holds (no volume-sized mask)."""
        return np.argwhere(from_columns(cols, self.front)) + np.array([b.start for b in self.box])

    def _span(self, lo: np.ndarray, hi: np.ndarray, hit: np.ndarray) -> np.ndarray:
        index = np.arange(self.length).reshape(-1, 1, 1)
        return (index >= lo[None]) & (index < hi[None]) & hit[None]

    def weight(self, features) -> np.ndarray:
        """The windows of ``features`` as one weight: where windows meet (the corner between the
        eyes and the nose), the weight is raised to its local mean, so that no crease marks
        where they meet; never beyond the windows themselves."""
        names = [f for f in features if f in self.windows]
        if not names:
            return np.zeros(self.depth.shape, np.float32)
        weight = np.max([self.windows[f] for f in names], axis=0)
        pixel = self.pixel_mm
        smooth = ndi.gaussian_filter(weight, [WINDOW_SMOOTH_MM / p for p in pixel], mode="constant")
        return np.where(weight > 0, np.maximum(weight, smooth), 0).astype(np.float32)

    def region(self, weight: np.ndarray, shape, within: np.ndarray | None = None) -> np.ndarray:
        """Voxels that ``weight`` may change, in the columns ``within`` (default: all)."""
        top, _, _, end, hit = self.ranges(weight)
        if within is not None:
            hit = hit & within
        return self.to_image(self._span(top, end, hit), shape)

    def operation(self, weight: np.ndarray):
        """(air voxels, skin voxels, surface voxels, as image indices (n, 3); the surface voxels'
        air fractions)."""
        top, surface, frac, end, hit = self.ranges(weight)
        air = self.indices(self._span(top, surface, hit))
        skin = self.indices(self._span(surface + 1, end, hit))
        u, v = np.nonzero(hit)
        axis, sign = self.front
        others = [a for a in range(3) if a != axis]
        index = np.zeros((u.size, 3), int)
        index[:, others[0]] = self.box[others[0]].start + u
        index[:, others[1]] = self.box[others[1]].start + v
        c = surface[u, v]
        index[:, axis] = self.box[axis].start + (self.length - 1 - c if sign > 0 else c)
        return air, skin, index, frac[u, v]


def _footprint_weight(footprint: np.ndarray, pixel_mm, margin_mm: float, feather_mm: float) -> np.ndarray:
    """1 within ``margin_mm`` of ``footprint`` (2D), falling smoothly to 0 over ``feather_mm``."""
    if not footprint.any():
        return np.zeros(footprint.shape, np.float32)
    distance = ndi.distance_transform_edt(~footprint, sampling=pixel_mm)
    t = np.clip((margin_mm + feather_mm - distance) / max(feather_mm, 1e-6), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep: no crease where the blend ends


def _margin_mm(feature: str, footprint: np.ndarray, pixel_mm, params) -> float:
    if feature == "eyes":
        return params.eye_box_margin_mm
    idx = np.argwhere(footprint)  # the paper's box: each half-extent times nose_box_scale
    half = (idx.max(0) - idx.min(0) + 1) * np.asarray(pixel_mm) / 2
    return float(max(params.nose_box_scale - 1.0, 0.0) * half.mean())


def _meet_surface(envelope: np.ndarray, depth: np.ndarray, hit: np.ndarray, feet: np.ndarray, pixel_mm) -> np.ndarray:
    """The envelope corrected so that it meets the surface around the features: planing a curved
    head leaves a shallow, smooth difference (the dome of the skull under a flat filter) that
    would show the window's outline; that difference, measured around the features' footprints
    and interpolated under them (normalised Gaussian of MEET_SMOOTH_MM), is taken off."""
    near = ndi.distance_transform_edt(~feet, sampling=pixel_mm)
    around = hit & (near > MEET_CLEARANCE_MM)
    sigma = [MEET_SMOOTH_MM / p for p in pixel_mm]
    weight = ndi.gaussian_filter(around.astype(np.float32), sigma)
    bias = ndi.gaussian_filter(np.where(around, envelope - depth, 0).astype(np.float32), sigma)
    return envelope - np.where(weight > 1e-3, bias / np.maximum(weight, 1e-3), 0)


def surface_plan(values: np.ndarray, affine: np.ndarray, front: tuple[int, int], parts: dict[str, np.ndarray],
                 margins: dict[str, float], width_mm: float, params, threshold: float,
                 band_mm: float | None = None) -> SurfacePlan | None:
    """Where and how a surface operator works, seen along ``front``, for the feature masks
    ``parts`` (None if all are empty): each feature's window is its footprint grown by its margin
    and feathered; the new surface is the envelope (:func:`face_envelope` with ``width_mm``)."""
    axis = front[0]
    zooms = voxel_sizes(affine)
    pixel = [float(zooms[a]) for a in range(3) if a != axis]
    weights, deepest = {}, 0
    for name, part in parts.items():
        cols = columns(part, front)
        foot = cols.any(axis=0)
        if foot.any():
            weights[name] = _footprint_weight(foot, pixel, margins[name], params.feather_mm)
            deepest = max(deepest, int(np.nonzero(cols.any(axis=(1, 2)))[0].max()))
    if not weights:
        return None
    reach = np.any([w > 0 for w in weights.values()], axis=0)
    # the envelope needs the surface around the windows; columns reach to the features' depth
    pad = [int(np.ceil(width_mm / p)) for p in pixel]
    uv = [(max(0, int(i.min()) - q), min(n, int(i.max()) + q + 1)) for i, q, n in zip(np.nonzero(reach), pad, reach.shape)]
    n = values.shape[axis]
    length = int(min(n, deepest + np.ceil((params.max_cut_mm + 10) / zooms[axis])))
    box = [slice(None)] * 3
    others = [a for a in range(3) if a != axis]
    box[others[0]], box[others[1]] = slice(*uv[0]), slice(*uv[1])
    box[axis] = slice(n - length, n) if front[1] > 0 else slice(0, length)
    box = tuple(box)
    first, hit = surface_depth(columns(values[box] > threshold, front))
    d0 = np.where(hit, first, 0)
    envelope = face_envelope(d0 * zooms[axis], hit, pixel, width_mm) / zooms[axis]
    feet = np.any([columns(part, front).any(axis=0) for part in parts.values()], axis=0)[box[others[0]], box[others[1]]]
    envelope = _meet_surface(envelope, d0, hit, feet, pixel)
    envelope = np.clip(envelope, d0 - params.max_fill_mm / zooms[axis], d0 + params.max_cut_mm / zooms[axis])
    band = int(params.eye_surface_band_vox) if band_mm is None else int(np.ceil(band_mm / zooms[axis] - 1e-4))
    band = max(2, band)
    ghost = int(np.ceil(GHOST_MM / zooms[axis]))
    return SurfacePlan(box, front, np.where(hit, first, np.inf), envelope,
                       {f: w[slice(*uv[0]), slice(*uv[1])] for f, w in weights.items()}, band, ghost,
                       length, tuple(pixel))



def face_plan(values, labels, affine, features, params, threshold: float) -> SurfacePlan | None:
    """The face operator (eyes, nose) seen from the front."""
    front = axis_towards(affine, 1)
    pixel = [float(z) for a, z in enumerate(voxel_sizes(affine)) if a != front[0]]
    parts = {f: labels == LABELS[f] for f in features if f in FACE_FEATURES}
    margins = {f: _margin_mm(f, columns(m, front).any(axis=0), pixel, params) if m.any() else 0.0
               for f, m in parts.items()}
    return surface_plan(values, affine, front, parts, margins, params.envelope_width_mm, params, threshold)


def ear_plans(values, labels, affine, params, threshold: float) -> list[SurfacePlan]:
    """The ear operator, one per side of the head, seen from that side: the auricle is planed off
    into the head's smooth side surface."""
    ears = labels == LABELS["ears"]
    if not ears.any():
        return []
    axis, sign = axis_towards(affine, 0)
    lateral = np.nonzero(ears.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    face = np.nonzero(((labels == LABELS["eyes"]) | (labels == LABELS["nose"])).any(
        axis=tuple(a for a in range(3) if a != axis)))[0]
    midline = float(np.median(face)) if face.size else (lateral.min() + lateral.max()) / 2
    index = np.arange(labels.shape[axis]).reshape([-1 if a == axis else 1 for a in range(3)])
    plans = []
    for side in (1, -1):  # the half of the volume beyond the midline, seen from its edge
        part = ears & ((index > midline) if side > 0 else (index < midline))
        plan = surface_plan(values, affine, (axis, side), {"ears": part}, {"ears": params.ear_margin_mm},
                            params.ear_envelope_width_mm, params, threshold,
                            band_mm=params.ear_band_mm)
        if plan is not None:
            plans.append(plan)
    return plans


def skin_layer(plan: SurfacePlan, shape, zooms) -> np.ndarray:
    """Voxels ``SKIN_DEPTH_MM`` beneath the face surface in the columns of the windows' cores."""
    lo, hi = (int(np.ceil(mm / float(zooms[plan.front[0]]) - 1e-4)) for mm in SKIN_DEPTH_MM)
    core = np.max(list(plan.windows.values()), axis=0) >= 0.5
    ok = np.isfinite(plan.depth) & core
    d = np.where(ok, plan.depth, -10 * plan.length).astype(int)
    index = np.arange(plan.length).reshape(-1, 1, 1)
    return plan.to_image((index >= (d + lo)[None]) & (index <= (d + hi)[None]), shape)


