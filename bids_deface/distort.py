"""The paper's distortions of the eyes, nose and ears (Jeong et al., JMIR 2020).

Each operator changes only its own region of a head image, given a feature label image
on the same grid (0 background, 1 eyes, 2 nose, 3 ears; see ``bids_deface.features``):

* eyes: a box over the periocular area around each eye (the eye's bounding box plus
  ``eye_box_margin_mm``); inside it, the face surface (the first tissue voxel met when
  coming from the front) and the voxels within ``eye_surface_band_vox`` of it along the
  anterior axis are set to one skin-like intensity (the median of the skin in those bands);
* nose: the nose's bounding box with each half-extent multiplied by ``nose_box_scale``
  around its centre, set to zero (see ``nose_posterior_scale`` for the side facing the brain);
* ears: the ear voxels, replaced by values drawn (seeded) from the image's own air background
  (the air voxels of the volume's border; zero if the border holds no air).

Everything works on the stored (unscaled) values in the image's own voxel grid and
orientation: the anterior voxel axis is read from the affine, the output keeps dtype,
scale factor, shape (a singleton fourth axis included), affine and header, and every
voxel outside the regions keeps its stored value bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from bids_deface.features import LABELS
from bids_deface.images import scaling, stored_data
from bids_deface.unscaled import image_from_unscaled

# Paper defaults, in the units named.
EYE_BOX_MARGIN_MM = 10.0
EYE_SURFACE_BAND_VOX = 2
NOSE_BOX_SCALE = 2.0
# The paper doubles the nose box on every side. Doubled backwards too (towards the brain),
# a deep nose detection on MNI152 2009c reaches the brain mask (tests/test_distort.py), so
# by default the box keeps the nose's own posterior bound; set 2.0 for the paper's box.
NOSE_POSTERIOR_SCALE = 1.0
# Nose or eye components smaller than this fraction of the largest are ignored as specks.
MIN_COMPONENT_FRACTION = 0.1


@dataclass(frozen=True)
class Params:
    eye_box_margin_mm: float = EYE_BOX_MARGIN_MM
    eye_surface_band_vox: int = EYE_SURFACE_BAND_VOX
    nose_box_scale: float = NOSE_BOX_SCALE
    nose_posterior_scale: float = NOSE_POSTERIOR_SCALE


def _name(img) -> str:
    return str(img.get_filename() or "<in-memory image>")


def anterior_axis(affine: np.ndarray) -> tuple[int, int]:
    """The voxel axis that runs front-back, and +1 if increasing index goes anterior, else -1."""
    ornt = nib.io_orientation(affine)
    axis = int(np.flatnonzero(ornt[:, 0] == 1)[0])
    return axis, int(ornt[axis, 1])


def _as_volume(img, labels) -> tuple[np.ndarray, np.ndarray]:
    """Stored values of ``img`` (3D or 4D with one volume) and ``labels`` as a 3D uint8 array."""
    shape = img.shape
    if not (len(shape) == 3 or (len(shape) == 4 and shape[3] == 1)) or min(shape[:3]) < 2:
        raise ValueError(f"{_name(img)}: expected one 3D head volume, got an image of shape {shape}")
    if isinstance(labels, nib.spatialimages.SpatialImage):
        if not np.allclose(labels.affine, img.affine, atol=1e-3):
            raise ValueError(f"{_name(img)}: the feature labels are on another grid (their affine differs)")
        labels = labels.dataobj
    labels = np.asanyarray(labels)
    if labels.ndim == 4 and labels.shape[3] == 1:
        labels = labels[..., 0]
    if labels.shape != shape[:3]:
        raise ValueError(f"{_name(img)}: feature labels of shape {labels.shape} do not match the image grid {shape[:3]}")
    labels = np.rint(labels) if np.issubdtype(labels.dtype, np.floating) else np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 4):
        raise ValueError(f"{_name(img)}: feature labels must be 0-4 (0 bg, 1 eyes, 2 nose, 3 ears), "
                         f"found {labels.min()}..{labels.max()}")
    return np.array(stored_data(img), copy=True), labels.astype(np.uint8, copy=False)


def _check_features(features) -> tuple[str, ...]:
    features = (features,) if isinstance(features, str) else tuple(features)
    unknown = [f for f in features if f not in LABELS]
    if unknown:
        raise ValueError(f"unknown facial feature(s) {unknown}; choose from {list(LABELS)}")
    return features


# ----------------------------------------------------------------- intensities


def _otsu(hist: np.ndarray, centers: np.ndarray) -> float:
    w0 = np.cumsum(hist).astype(float)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    between = w0 * w1 * (m0 / np.maximum(w0, 1) - (m0[-1] - m0) / np.maximum(w1, 1)) ** 2
    return float(centers[np.argmax(between)])


def air_threshold(values: np.ndarray, bins: int = 4096) -> float:
    """Intensity separating air from skin in a head image with dark air.

    Otsu's split of the robustly clipped (1st-99.5th percentile) histogram lies between air
    and tissue; it is pulled towards the air level because skin is darker than the brain that
    dominates the histogram. Histograms of every voxel: fast, and independent of the grid's
    orientation.
    """
    finite = values.ravel(order="K")  # no copy, whatever the memory layout (NIfTI arrays are Fortran-ordered)
    if not np.isfinite(finite).all():
        finite = finite[np.isfinite(finite)]
    vmin, vmax = float(finite.min()), float(finite.max())
    if vmax <= vmin:
        return vmin
    hist, edges = np.histogram(finite, bins=bins, range=(vmin, vmax))
    cdf = np.cumsum(hist) / finite.size
    lo = float(edges[np.searchsorted(cdf, 0.01)])
    hi = float(edges[min(np.searchsorted(cdf, 0.995) + 1, bins)])
    if hi <= lo:
        return lo
    # Otsu on the clipped histogram, rebinned from the fine one.
    centers = (edges[:-1] + edges[1:]) / 2
    clipped = np.clip(centers, lo, hi)
    coarse, coarse_edges = np.histogram(clipped, bins=256, range=(lo, hi), weights=hist)
    otsu = _otsu(coarse, (coarse_edges[:-1] + coarse_edges[1:]) / 2)
    return float(lo + 0.6 * min(otsu - lo, 0.25 * (hi - lo)))


def zero_value(raw: np.ndarray, slope: float, inter: float):
    """The stored value that reads as 0, or the image's darkest stored value if 0 is not representable."""
    dtype = raw.dtype
    if np.issubdtype(dtype, np.floating):
        return dtype.type(-inter / slope)
    target = round(-inter / slope)
    info = np.iinfo(dtype)
    if info.min <= target <= info.max:
        return dtype.type(target)
    darkest = raw.min() if slope > 0 else raw.max()
    return dtype.type(darkest)


def air_background(raw: np.ndarray, values: np.ndarray, threshold: float) -> np.ndarray:
    """Stored values of air voxels near the volume's border, where no head is expected.

    A shell of 5% of each dimension (at least 2 voxels) around the volume, keeping the
    voxels darker than the air threshold (an ear or the neck touching the border is not air).
    """
    width = [min(n // 2, max(2, n // 20)) for n in raw.shape]
    samples = []
    inner = [slice(None)] * 3
    # The six faces of the shell, without counting an edge twice.
    for axis, w in enumerate(width):
        n = raw.shape[axis]
        for part in (slice(0, w), slice(n - w, n)):
            where = list(inner)
            where[axis] = part
            where = tuple(where)
            samples.append(raw[where][values[where] <= threshold])
        inner[axis] = slice(w, n - w)
    return np.concatenate(samples)


# ----------------------------------------------------------------- regions


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _components(mask: np.ndarray) -> list[tuple[slice, ...]]:
    """Bounding boxes (slices) of the connected components that are not specks, largest first."""
    outer = _bounding_box(mask)
    if outer is None:
        return []
    lab, n = ndi.label(mask[outer], structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(lab.ravel())[1:]
    boxes = [tuple(slice(b.start + o.start, b.stop + o.start) for b, o in zip(box, outer))
             for box in ndi.find_objects(lab)]
    order = np.argsort(sizes)[::-1]
    keep = sizes[order] >= MIN_COMPONENT_FRACTION * sizes[order[0]]
    return [boxes[i] for i, k in zip(order, keep) if k]


def eye_boxes(labels: np.ndarray, zooms, margin_mm: float) -> list[tuple[slice, ...]]:
    """Periocular boxes: each eye component's bounding box grown by ``margin_mm`` on every side."""
    boxes = []
    for box in _components(labels == LABELS["eyes"]):
        # (a tolerance: zooms read from a qform are often 0.99999994 mm)
        grow = [int(np.ceil(margin_mm / float(z) - 1e-4)) for z in zooms]
        boxes.append(tuple(slice(max(0, s.start - g), min(n, s.stop + g))
                           for s, g, n in zip(box, grow, labels.shape)))
    return boxes


def face_surface_band(tissue: np.ndarray, box: tuple[slice, ...], ant: tuple[int, int], band: int) -> np.ndarray:
    """Voxels of ``box`` within ``band`` voxels (along the anterior axis) of the face surface.

    ``tissue`` is the full-volume tissue mask; the surface in each front-back column of the
    box is the first tissue voxel met coming from the front of the volume (so a surface in
    front of the box is found, and then lies outside it). Returns a mask of ``box``'s shape.
    """
    axis, sign = ant
    # The column runs from the box's back to the front edge of the volume.
    ray = list(box)
    ray[axis] = slice(box[axis].start, tissue.shape[axis]) if sign > 0 else slice(0, box[axis].stop)
    sub = tissue[tuple(ray)]
    # Coordinates with index 0 at the front.
    front = np.flip(sub, axis) if sign > 0 else sub
    # Specks of bright noise in the air are not the face.
    front = ndi.binary_opening(front, structure=ndi.generate_binary_structure(3, 1))
    has_surface = front.any(axis=axis, keepdims=True)
    surface = np.argmax(front, axis=axis, keepdims=True)
    depth = np.arange(front.shape[axis]).reshape([-1 if a == axis else 1 for a in range(3)])
    near = (np.abs(depth - surface) <= band) & has_surface
    near = np.flip(near, axis) if sign > 0 else near
    # Back to the box: drop the part of the column in front of it.
    keep = [slice(None)] * 3
    length = box[axis].stop - box[axis].start
    keep[axis] = slice(0, length) if sign > 0 else slice(near.shape[axis] - length, None)
    return near[tuple(keep)]


def nose_box(labels: np.ndarray, ant: tuple[int, int], scale: float, posterior_scale: float) -> tuple[slice, ...] | None:
    """The nose's bounding box with each half-extent scaled around its centre (clipped to the volume)."""
    parts = _components(labels == LABELS["nose"])
    if not parts:
        return None
    lo = np.min([[s.start for s in p] for p in parts], axis=0)
    hi = np.max([[s.stop for s in p] for p in parts], axis=0)  # exclusive
    center, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    axis, sign = ant
    box = []
    for a, n in enumerate(labels.shape):
        before = after = scale
        if a == axis:  # the posterior side is the one towards lower anterior coordinate
            before, after = (posterior_scale, scale) if sign > 0 else (scale, posterior_scale)
        start = int(np.floor(center[a] - before * half[a]))
        stop = int(np.ceil(center[a] + after * half[a]))
        box.append(slice(max(0, start), min(n, stop)))
    return tuple(box)


def _regions(values: np.ndarray, labels: np.ndarray, affine: np.ndarray, zooms, features, params: Params,
             threshold: float | None = None) -> dict[str, np.ndarray]:
    """Boolean mask, per feature, of the voxels its operator changes."""
    ant = anterior_axis(affine)
    regions = {}
    for feature in features:
        mask = np.zeros(labels.shape, dtype=bool)
        if feature == "eyes":
            boxes = eye_boxes(labels, zooms, params.eye_box_margin_mm)
            if boxes:
                thr = air_threshold(values) if threshold is None else threshold
                tissue = values > thr
                for box in boxes:
                    mask[box] |= face_surface_band(tissue, box, ant, params.eye_surface_band_vox)
        elif feature == "nose":
            box = nose_box(labels, ant, params.nose_box_scale, params.nose_posterior_scale)
            if box is not None:
                mask[box] = True
        elif feature == "ears":
            mask = labels == LABELS["ears"]
        regions[feature] = mask
    return regions


def _scaled(raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    values = raw.astype(np.float32)
    if (slope, inter) != (1.0, 0.0):
        values *= np.float32(slope)
        values += np.float32(inter)
    return values


def distortion_mask(img: nib.spatialimages.SpatialImage, labels, feature: str, *,
                    eye_box_margin_mm: float = EYE_BOX_MARGIN_MM, eye_surface_band_vox: int = EYE_SURFACE_BAND_VOX,
                    nose_box_scale: float = NOSE_BOX_SCALE,
                    nose_posterior_scale: float = NOSE_POSTERIOR_SCALE) -> np.ndarray:
    """Boolean 3D mask (``img``'s grid) of the voxels that ``feature``'s operator may change.

    Inputs: ``img`` (3D, or 4D with one volume), ``labels`` (uint8 array or image on the same
    grid), ``feature`` ("eyes", "nose" or "ears") and the operator's parameters.
    """
    (feature,) = _check_features(feature)
    raw, labels = _as_volume(img, labels)
    raw3 = raw[..., 0] if raw.ndim == 4 else raw
    params = Params(eye_box_margin_mm, eye_surface_band_vox, nose_box_scale, nose_posterior_scale)
    values = _scaled(raw3, *scaling(img))
    return _regions(values, labels, img.affine, img.header.get_zooms()[:3], (feature,), params)[feature]


def deface_image(img: nib.spatialimages.SpatialImage, labels, *, features=("eyes", "nose", "ears"), seed: int = 0,
                 eye_box_margin_mm: float = EYE_BOX_MARGIN_MM, eye_surface_band_vox: int = EYE_SURFACE_BAND_VOX,
                 nose_box_scale: float = NOSE_BOX_SCALE, nose_posterior_scale: float = NOSE_POSTERIOR_SCALE,
                 ) -> tuple[nib.Nifti1Image, dict[str, int]]:
    """Distort the selected facial features of a head image.

    Inputs: ``img`` (NIfTI, 3D or 4D with one volume, any orientation, any dtype and scale
    factor); ``labels`` (uint8 array or image on ``img``'s grid: 0 bg, 1 eyes, 2 nose, 3 ears);
    ``features`` to distort; ``seed`` for the ear noise; the operators' margins.
    Returns ``(defaced image, {feature: number of voxels distorted})``. The defaced image has
    ``img``'s shape, affine, header, dtype and scale factor; ``nib.save`` writes every voxel
    outside the distorted regions with its original stored value. A feature absent from
    ``labels`` distorts nothing and counts 0.
    """
    features = _check_features(features)
    raw, labels = _as_volume(img, labels)
    raw3 = raw[..., 0] if raw.ndim == 4 else raw  # a view: edits land in ``raw``
    slope, inter = scaling(img)
    values = _scaled(raw3, slope, inter)
    params = Params(eye_box_margin_mm, eye_surface_band_vox, nose_box_scale, nose_posterior_scale)
    threshold = air_threshold(values)
    regions = _regions(values, labels, img.affine, img.header.get_zooms()[:3], features, params, threshold)

    # Ears first, eyes next, nose last: where regions overlap, zeroing wins.
    if "ears" in regions and regions["ears"].any():
        air = air_background(raw3, values, threshold)
        if air.size:
            rng = np.random.default_rng(seed)
            raw3[regions["ears"]] = rng.choice(air, size=int(regions["ears"].sum()))
        else:  # no air anywhere along the border (a field of view filled by the head): erase the ears
            raw3[regions["ears"]] = zero_value(raw3, slope, inter)
    if "eyes" in regions and regions["eyes"].any():
        band = regions["eyes"]
        skin = values[band] > threshold
        candidates_raw = raw3[band][skin] if skin.any() else raw3[band]
        candidates = values[band][skin] if skin.any() else values[band]
        # An existing stored value: the median skin voxel (scaling is monotonic).
        raw3[band] = candidates_raw[np.argsort(candidates, kind="stable")[candidates.size // 2]]
    if "nose" in regions and regions["nose"].any():
        raw3[regions["nose"]] = zero_value(raw3, slope, inter)

    counts = {f: int(regions[f].sum()) for f in features}
    return image_from_unscaled(raw, img), counts
