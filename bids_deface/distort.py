"""The paper's distortions of the eyes, nose and ears (Jeong et al., JMIR 2020).

Each operator changes only its own region of a head image, given a feature label image
on the same grid (0 background, 1 eyes, 2 nose, 3 ears; see ``bids_deface.features``):

* eyes: a box over the periocular area around each eye (the eye's bounding box plus
  ``eye_box_margin_mm``); inside it, the face surface (the first tissue voxel met when
  coming from the front) and the voxels within ``eye_surface_band_vox`` of it along the
  anterior axis are set to one skin-like intensity, as in the paper. The paper's band
  flattens the *intensity* but keeps the *shape*: in a 3D render the eyelids and sockets
  stay, and face detectors still find them. So the air in front of the surface, up to the
  box's anterior face, gets the same intensity (``eye_fill``): each box shows one flat face;
* nose: the nose's bounding box with each half-extent multiplied by ``nose_box_scale``
  around its centre, set to zero (see ``nose_posterior_scale`` for the side facing the brain).
  Zeroing alone opens the nasal cavity and sinuses, which render as a skull's face (eye
  sockets and a nose hole), so the box's posterior ``nose_wall_mm`` are set to the
  skin-like intensity: a flat wall closes the hole;
* ears: the ear voxels, replaced by values drawn (seeded) from the image's own air background
  (the air voxels of the volume's border; zero if the border holds no air).

The skin-like intensity is one stored value per image: the median of the tissue 1-4 mm
beneath the face surface in the eye and nose boxes (``SKIN_DEPTH_MM``).

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
from bids_deface.images import image_from_unscaled, scaling, stored_data

# Paper defaults, in the units named.
EYE_BOX_MARGIN_MM = 10.0
EYE_SURFACE_BAND_VOX = 2
NOSE_BOX_SCALE = 2.0
# The paper doubles the nose box on every side. Doubled backwards too (towards the brain),
# a deep nose detection on MNI152 2009c reaches the brain mask (tests/test_distort.py), so
# by default the box keeps the nose's own posterior bound; set 2.0 for the paper's box.
NOSE_POSTERIOR_SCALE = 1.0
# Ours, so that a 3D render shows no face (benchmarks/bench_qc.py; False / 0 turn them off).
EYE_FILL = True
# Thick enough for a renderer that needs two voxels above its threshold in a row.
NOSE_WALL_MM = 3.0
# Where the skin-like intensity is sampled, mm beneath the face surface: the surface voxel is
# partly air, and on average heads, whose skin fades over several voxels, barely brighter.
SKIN_DEPTH_MM = (1.0, 4.0)
# Nose or eye components smaller than this fraction of the largest are ignored as specks.
MIN_COMPONENT_FRACTION = 0.1


@dataclass(frozen=True)
class Params:
    """The operators' parameters (keywords of :func:`deface_image` and :func:`distortion_mask`).

    ``eye_box_margin_mm``: periocular box around each eye's bounding box;
    ``eye_surface_band_vox``: voxels on each side of the face surface set to skin;
    ``eye_fill``: also the air between the surface and the box's anterior face (False: the
    paper's band only); ``nose_box_scale``: factor on the nose box's half-extents;
    ``nose_posterior_scale``: the same towards the brain; ``nose_wall_mm``: skin wall at the
    back of the zeroed nose box (0: the paper's plain zeroing).
    """

    eye_box_margin_mm: float = EYE_BOX_MARGIN_MM
    eye_surface_band_vox: int = EYE_SURFACE_BAND_VOX
    eye_fill: bool = EYE_FILL
    nose_box_scale: float = NOSE_BOX_SCALE
    nose_posterior_scale: float = NOSE_POSTERIOR_SCALE
    nose_wall_mm: float = NOSE_WALL_MM


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


def _columns_from_front(mask: np.ndarray, box: tuple[slice, ...], ant: tuple[int, int]) -> tuple[np.ndarray, int]:
    """``mask`` over ``box``'s front-back columns, each run from the front edge of the volume
    to the back of the box, with index 0 at the front; and how many of those indices lie in
    front of the box."""
    axis, sign = ant
    ray = list(box)
    ray[axis] = slice(box[axis].start, mask.shape[axis]) if sign > 0 else slice(0, box[axis].stop)
    sub = mask[tuple(ray)]
    front = np.flip(sub, axis) if sign > 0 else sub
    return front, front.shape[axis] - (box[axis].stop - box[axis].start)


def _back_to_box(front: np.ndarray, ant: tuple[int, int], ahead: int) -> np.ndarray:
    """Inverse of :func:`_columns_from_front` for a mask: the part of the columns inside the box."""
    axis, sign = ant
    keep = [slice(None)] * 3
    keep[axis] = slice(ahead, None)
    inside = front[tuple(keep)]
    return np.flip(inside, axis) if sign > 0 else inside


def face_surface_depth(tissue: np.ndarray, box: tuple[slice, ...], ant: tuple[int, int]):
    """Depth of the face surface in each front-back column of ``box``.

    The surface is the first tissue voxel met coming from the front of the volume (so a
    surface in front of the box is found, and then lies outside it). Returns
    ``(depth, has_surface, ahead, length)``: depth in voxels from the front edge of the volume
    (2D, over the box's other two axes), where a column has tissue, how many of those voxels
    lie in front of the box, and the column length (to the back of the box).
    """
    axis, _ = ant
    front, ahead = _columns_from_front(tissue, box, ant)
    # Specks of bright noise in the air are not the face.
    front = ndi.binary_opening(front, structure=ndi.generate_binary_structure(3, 1))
    return front.argmax(axis=axis), front.any(axis=axis), ahead, front.shape[axis]


def _depth_range_mask(lo: np.ndarray, hi: np.ndarray, ok: np.ndarray, axis: int, length: int) -> np.ndarray:
    """3D mask, index 0 at the front along ``axis``: columns where ``ok``, depths lo..hi inclusive."""
    depth = np.arange(length).reshape([-1 if a == axis else 1 for a in range(3)])
    lo, hi, ok = (np.expand_dims(x, axis) for x in (lo, hi, ok))
    return (depth >= lo) & (depth <= hi) & ok


def eye_region(tissue: np.ndarray, box: tuple[slice, ...], ant: tuple[int, int], band: int,
               fill: bool = True) -> np.ndarray:
    """Voxels of a periocular ``box`` that the eye operator sets to skin: a mask of ``box``'s shape.

    The voxels within ``band`` voxels (along the anterior axis) of the face surface, as in the
    paper; with ``fill``, also the air in front of the surface up to the box's anterior face,
    so that sockets, eyelids and brows vanish behind one flat face in a 3D render.
    """
    axis, _ = ant
    depth, has, ahead, length = face_surface_depth(tissue, box, ant)
    # ``ahead`` is the box's anterior face, in depths counted from the front of the volume
    top = np.minimum(depth - band, ahead) if fill else depth - band
    return _back_to_box(_depth_range_mask(top, depth + band, has, axis, length), ant, ahead)


def skin_layer(tissue: np.ndarray, box: tuple[slice, ...], ant: tuple[int, int], zooms) -> np.ndarray:
    """Voxels of ``box`` ``SKIN_DEPTH_MM`` beneath the face surface: a mask of ``box``'s shape."""
    axis, _ = ant
    lo, hi = (int(np.ceil(mm / float(zooms[axis]) - 1e-4)) for mm in SKIN_DEPTH_MM)
    depth, has, ahead, length = face_surface_depth(tissue, box, ant)
    return _back_to_box(_depth_range_mask(depth + lo, depth + hi, has, axis, length), ant, ahead)


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


def nose_wall(box: tuple[slice, ...], ant: tuple[int, int], zooms, wall_mm: float) -> tuple[slice, ...] | None:
    """The posterior slab of the nose ``box``, ``wall_mm`` thick (at least 2 voxels), or None if ``wall_mm`` <= 0."""
    if wall_mm <= 0:
        return None
    axis, sign = ant
    n = max(2, int(np.ceil(wall_mm / float(zooms[axis]) - 1e-4)))
    s = box[axis]
    wall = list(box)
    wall[axis] = slice(s.start, min(s.stop, s.start + n)) if sign > 0 else slice(max(s.start, s.stop - n), s.stop)
    return tuple(wall)


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
                    mask[box] |= eye_region(tissue, box, ant, params.eye_surface_band_vox, params.eye_fill)
        elif feature == "nose":
            box = nose_box(labels, ant, params.nose_box_scale, params.nose_posterior_scale)
            if box is not None:
                mask[box] = True
        elif feature == "ears":
            mask = labels == LABELS["ears"]
        regions[feature] = mask
    return regions


def skin_value(raw: np.ndarray, values: np.ndarray, threshold: float, skin: np.ndarray):
    """One skin-like stored value: the median of the tissue voxels in the mask ``skin``.

    An existing stored value (scaling is monotonic, so the stored value of the median voxel
    is the median of the stored values). Falls back to the median of all tissue when ``skin``
    holds none, and to the brightest voxel when the image holds no tissue at all.
    """
    for where in (skin & (values > threshold), values > threshold):
        if where.any():
            candidates, candidates_raw = values[where], raw[where]
            return candidates_raw[np.argsort(candidates, kind="stable")[candidates.size // 2]]
    return raw.ravel(order="K")[np.argmax(values.ravel(order="K"))]


def _scaled(raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    values = raw.astype(np.float32)
    if (slope, inter) != (1.0, 0.0):
        values *= np.float32(slope)
        values += np.float32(inter)
    return values


def distortion_mask(img: nib.spatialimages.SpatialImage, labels, feature: str, **params) -> np.ndarray:
    """Boolean 3D mask (``img``'s grid) of the voxels that ``feature``'s operator may change.

    Inputs: ``img`` (3D, or 4D with one volume), ``labels`` (uint8 array or image on the same
    grid), ``feature`` ("eyes", "nose" or "ears") and the operators' parameters (:class:`Params`).
    """
    (feature,) = _check_features(feature)
    params = Params(**params)
    raw, labels = _as_volume(img, labels)
    raw3 = raw[..., 0] if raw.ndim == 4 else raw
    values = _scaled(raw3, *scaling(img))
    return _regions(values, labels, img.affine, img.header.get_zooms()[:3], (feature,), params)[feature]


def deface_image(img: nib.spatialimages.SpatialImage, labels, *, features=("eyes", "nose", "ears"), seed: int = 0,
                 **params) -> tuple[nib.Nifti1Image, dict[str, int]]:
    """Distort the selected facial features of a head image.

    Inputs: ``img`` (NIfTI, 3D or 4D with one volume, any orientation, any dtype and scale
    factor); ``labels`` (uint8 array or image on ``img``'s grid: 0 bg, 1 eyes, 2 nose, 3 ears);
    ``features`` to distort; ``seed`` for the ear noise; the operators' parameters as keywords
    (:class:`Params`: margins, band, fill, wall thickness).
    Returns ``(defaced image, {feature: number of voxels distorted})``. The defaced image has
    ``img``'s shape, affine, header, dtype and scale factor; ``nib.save`` writes every voxel
    outside the distorted regions with its original stored value. A feature absent from
    ``labels`` distorts nothing and counts 0.
    """
    features = _check_features(features)
    params = Params(**params)
    raw, labels = _as_volume(img, labels)
    raw3 = raw[..., 0] if raw.ndim == 4 else raw  # a view: edits land in ``raw``
    slope, inter = scaling(img)
    values = _scaled(raw3, slope, inter)
    zooms = img.header.get_zooms()[:3]
    ant = anterior_axis(img.affine)
    threshold = air_threshold(values)
    regions = _regions(values, labels, img.affine, zooms, features, params, threshold)
    box = nose_box(labels, ant, params.nose_box_scale, params.nose_posterior_scale) if "nose" in features else None
    wall = nose_wall(box, ant, zooms, params.nose_wall_mm) if box is not None else None

    skin = None
    if regions.get("eyes", np.zeros(0, bool)).any() or wall is not None:
        # One skin-like value for every flattened surface: the skin around the eyes and the nose.
        tissue = values > threshold
        layer = np.zeros(values.shape, bool)
        for b in eye_boxes(labels, zooms, params.eye_box_margin_mm) + ([box] if box is not None else []):
            layer[b] |= skin_layer(tissue, b, ant, zooms)
        skin = skin_value(raw3, values, threshold, layer)

    # Ears first, eyes next, nose last: where regions overlap, zeroing (and its wall) wins.
    if "ears" in regions and regions["ears"].any():
        air = air_background(raw3, values, threshold)
        if air.size:
            rng = np.random.default_rng(seed)
            raw3[regions["ears"]] = rng.choice(air, size=int(regions["ears"].sum()))
        else:  # no air anywhere along the border (a field of view filled by the head): erase the ears
            raw3[regions["ears"]] = zero_value(raw3, slope, inter)
    if "eyes" in regions and regions["eyes"].any():
        raw3[regions["eyes"]] = skin
    if "nose" in regions and regions["nose"].any():
        raw3[regions["nose"]] = zero_value(raw3, slope, inter)
        if wall is not None:
            # The zeroed box opens the nasal cavity and sinuses, which render as a skull's
            # face; a wall of skin at its back shows a flat plane instead.
            raw3[wall] = skin

    counts = {f: int(regions[f].sum()) for f in features}
    return image_from_unscaled(raw, img), counts
