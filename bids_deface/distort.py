"""The distortions of the eyes, nose and ears (after Jeong et al., JMIR 2020), blended into the face.

Each operator changes only its own region of a head image, given a feature label image on the
same grid (0 background, 1 eyes, 2 nose, 3 ears; see ``bids_deface.features``):

* eyes and nose, one operator on the face surface: seen from the front, the face is a depth map;
  its smooth envelope (:func:`bids_deface.features.surface.face_envelope`: the face with every
  bump and pit narrower than ``envelope_width_mm`` planed off: no nose, no lids, no sockets) is
  the new surface over each feature's window: the feature's footprint seen from the front grown
  by its margin (``eye_box_margin_mm``; the nose's half-extent times ``nose_box_scale`` - 1),
  blended back into the untouched face over ``feather_mm`` (a smooth step). Tissue in front of
  the new surface becomes the image's own air (the nose is removed, its partial-volume rim too),
  air behind it becomes skin (the sockets are filled), and a band of ``eye_surface_band_vox``
  voxels beneath it is set to one skin-like intensity, as the paper flattens the eyes: a closed
  surface with no edge, so that no block or hole reads as a face in a 3D render;
* ears: the ear voxels, and the air within ``ear_air_margin_mm`` of them (the ear's
  partial-volume outline), replaced by values drawn (seeded) from the image's own air background
  (the air voxels of the volume's border; zero if the border holds no air).

No voxel of a ``protect`` mask (the brain guard, :mod:`bids_deface.features.brainguard`) ever
changes, whatever the operators would do. The skin-like intensity is one stored value per image:
the median of the tissue 1-4 mm beneath the face surface in the windows (``SKIN_DEPTH_MM``).

Everything works on the stored (unscaled) values in the image's own voxel grid and orientation:
the anterior voxel axis is read from the affine, the output keeps dtype, scale factor, shape (a
singleton fourth axis included), affine and header, and every voxel outside the regions keeps its
stored value bit for bit (:func:`distortion_regions` gives the regions, :func:`changed_voxels`
what changed).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from bids_deface.distortion_params import Params
from bids_deface.features import LABELS
from bids_deface.features.geometry import air_threshold
from bids_deface.features.surface import axis_towards, voxel_sizes
from bids_deface.images import image_from_unscaled, scaling, stored_data
from bids_deface.resurface import SurfacePlan, ear_plans, face_plan, skin_layer

__all__ = ["Params", "air_threshold", "anterior_axis", "changed_voxels", "deface_image", "distortion_mask",
           "distortion_regions"]



def _name(img) -> str:
    return str(img.get_filename() or "<in-memory image>")


def anterior_axis(affine: np.ndarray) -> tuple[int, int]:
    """The voxel axis that runs front-back, and +1 if increasing index goes anterior, else -1."""
    return axis_towards(affine, 1)


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


def _as_protect(img, protect) -> np.ndarray | None:
    if protect is None:
        return None
    protect = np.asanyarray(protect.dataobj if isinstance(protect, nib.spatialimages.SpatialImage) else protect)
    if protect.ndim == 4 and protect.shape[3] == 1:
        protect = protect[..., 0]
    if protect.shape != img.shape[:3]:
        raise ValueError(f"{_name(img)}: protect mask of shape {protect.shape} does not match the image grid {img.shape[:3]}")
    return protect.astype(bool, copy=False)


def _check_features(features) -> tuple[str, ...]:
    features = (features,) if isinstance(features, str) else tuple(features)
    unknown = [f for f in features if f not in LABELS]
    if unknown:
        raise ValueError(f"unknown facial feature(s) {unknown}; choose from {list(LABELS)}")
    return features


# ----------------------------------------------------------------- intensities


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


def air_noise(img: nib.spatialimages.SpatialImage, n: int, seed: int = 0) -> np.ndarray:
    """``n`` stored values drawn from ``img``'s own air (:func:`air_background`), or the value
    that reads as 0 when no air lines its border."""
    raw = np.asanyarray(img.dataobj)
    raw3 = raw[..., 0] if raw.ndim == 4 else raw
    slope, inter = scaling(img)
    values = _scaled(raw3, slope, inter)
    air = air_background(raw3, values, air_threshold(values))
    if not air.size:
        return np.full(n, zero_value(raw3, slope, inter), raw3.dtype)
    return np.random.default_rng(seed + 1).choice(air, size=n)


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


def _stored(values: np.ndarray, dtype, slope: float, inter: float) -> np.ndarray:
    """Stored values (``dtype``) that read as ``values``."""
    raw = (np.asarray(values, np.float64) - inter) / slope
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        raw = np.clip(np.rint(raw), info.min, info.max)
    return raw.astype(dtype)


def _scaled(raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    values = raw.astype(np.float32)
    if (slope, inter) != (1.0, 0.0):
        values *= np.float32(slope)
        values += np.float32(inter)
    return values


# ----------------------------------------------------------------- regions


def _apart(idx: np.ndarray, gap: np.ndarray) -> list[np.ndarray]:
    """``idx`` (voxel indices) split into groups no box of which comes within ``gap`` voxels of
    another's along some axis (the two ears: two small boxes instead of one across the head)."""
    for axis in range(idx.shape[1]):
        values = np.unique(idx[:, axis])
        jumps = np.nonzero(np.diff(values) > gap[axis])[0]
        if jumps.size:
            cut = values[jumps[0]]
            return _apart(idx[idx[:, axis] <= cut], gap) + _apart(idx[idx[:, axis] > cut], gap)
    return [idx]


def ear_region(labels: np.ndarray, values: np.ndarray, threshold: float, zooms, margin_mm: float) -> np.ndarray:
    """The ear voxels and the air within ``margin_mm`` of them (bool, the image grid)."""
    ears = labels == LABELS["ears"]
    region = ears.copy()
    idx = np.argwhere(ears)
    if idx.size == 0 or margin_mm <= 0:
        return region
    grow = np.ceil(margin_mm / np.asarray(zooms, float)).astype(int) + 1
    for part in _apart(idx, 2 * grow + 1):  # boxes apart by more than two margins do not meet
        box = tuple(slice(max(0, lo - g), hi + g + 1) for lo, hi, g in zip(part.min(0), part.max(0), grow))
        near = ndi.distance_transform_edt(~ears[box], sampling=zooms) <= margin_mm
        region[box] |= near & (values[box] <= threshold)
    return region


def _regions(values, labels, affine, features, params: Params, threshold: float, protect):
    """Per feature, the voxels its operator may change (bool, image grid, protect excluded), the
    surface plans (face, ears) and the ears' outline (:func:`ear_region`; None without ears)."""
    zooms = voxel_sizes(affine)
    plan = face_plan(values, labels, affine, features, params, threshold)
    ears = ear_plans(values, labels, affine, params, threshold) if "ears" in features else []
    regions, outline = {}, None
    for feature in features:
        if feature == "ears":
            outline = ear_region(labels, values, threshold, zooms, params.ear_air_margin_mm)
            region = outline.copy()
            for ear in ears:
                region |= ear.region(ear.weight(("ears",)), labels.shape)
        elif plan is not None and feature in plan.windows:  # its columns, as the selected features change them
            region = plan.region(plan.weight(features), labels.shape, within=plan.windows[feature] > 0)
        else:
            region = np.zeros(labels.shape, bool)
        regions[feature] = region & ~protect if protect is not None else region
    return regions, plan, ears, outline


def _prepare(img, labels, features, protect, params):
    features = _check_features(features)
    params = Params(**params)
    raw, labels = _as_volume(img, labels)
    protect = _as_protect(img, protect)
    raw3 = raw[..., 0] if raw.ndim == 4 else raw  # a view: edits land in ``raw``
    values = _scaled(raw3, *scaling(img))
    return features, params, raw, raw3, labels, protect, values


def distortion_regions(img: nib.spatialimages.SpatialImage, labels, features=("eyes", "nose", "ears"), *,
                       protect=None, **params) -> dict[str, np.ndarray]:
    """Per feature, the boolean 3D mask (``img``'s grid) of the voxels its operator may change.

    Inputs as :func:`deface_image`. Every voxel that :func:`deface_image` changes with the same
    inputs lies in one of these masks, and none of them meets ``protect``.
    """
    features, params, _, _, labels, protect, values = _prepare(img, labels, features, protect, params)
    return _regions(values, labels, img.affine, features, params, air_threshold(values), protect)[0]


def distortion_mask(img: nib.spatialimages.SpatialImage, labels, feature: str, *, protect=None, **params) -> np.ndarray:
    """The mask of :func:`distortion_regions` for one ``feature``."""
    return distortion_regions(img, labels, (feature,), protect=protect, **params)[feature]


def changed_voxels(original: nib.spatialimages.SpatialImage, defaced: nib.spatialimages.SpatialImage) -> np.ndarray:
    """Boolean 3D mask of the voxels whose stored value differs between two images on one grid."""
    a, b = stored_data(original), stored_data(defaced)
    if a.shape != b.shape:
        raise ValueError(f"original {a.shape} and defaced {b.shape} differ in shape")
    changed = a != b
    if np.issubdtype(a.dtype, np.floating):
        changed &= ~(np.isnan(a) & np.isnan(b))
    return changed.reshape(a.shape[:3]) if changed.ndim == 4 else changed


def _resurface(raw3, plan: SurfacePlan, weight, protect, noise, skin, air_level: float, slope, inter) -> None:
    """Apply one surface plan: air in front of the new surface, skin beneath it, and its surface
    voxel partly skin, so that the iso-surface follows the smooth envelope without terraces.
    Where the window fades out, each new value is mixed with the voxel's own by the window's
    weight: the new surface meets the old one without a seam."""
    to_air, to_skin, surface, frac = plan.operation(weight)
    skin_level = float(_scaled(np.asarray([skin]), slope, inter)[0])
    axis = plan.front[0]
    others = [a for a in range(3) if a != axis]
    targets = []
    for idx, value in ((to_air, None), (to_skin, skin_level),
                       (surface, air_level + (skin_level - air_level) * (1.0 - frac))):
        if protect is not None:
            keep = ~protect[tuple(idx.T)]
            idx = idx[keep]
            value = value[keep] if isinstance(value, np.ndarray) else value
        if value is None:
            value = _scaled(noise(len(idx)), slope, inter)
        targets.append((idx, value))
    for idx, value in targets:
        w = weight[idx[:, others[0]] - plan.box[others[0]].start, idx[:, others[1]] - plan.box[others[1]].start]
        now = _scaled(raw3[tuple(idx.T)], slope, inter)
        raw3[tuple(idx.T)] = _stored(w * value + (1.0 - w) * now, raw3.dtype, slope, inter)


def deface_image(img: nib.spatialimages.SpatialImage, labels, *, features=("eyes", "nose", "ears"), seed: int = 0,
                 protect=None, regions: dict | None = None, **params) -> tuple[nib.Nifti1Image, dict[str, int]]:
    """Distort the selected facial features of a head image.

    Inputs: ``img`` (NIfTI, 3D or 4D with one volume, any orientation, any dtype and scale
    factor); ``labels`` (uint8 array or image on ``img``'s grid: 0 bg, 1 eyes, 2 nose, 3 ears);
    ``features`` to distort; ``seed`` for the air noise; ``protect``: boolean mask (array or
    image on ``img``'s grid) of voxels that must not change (the brain guard); the operators'
    parameters as keywords (:class:`Params`).
    Returns ``(defaced image, {feature: number of voxels in its region})`` (:func:`distortion_regions`;
    :func:`changed_voxels` gives what changed). The defaced image has ``img``'s shape, affine,
    header, dtype and scale factor; ``nib.save`` writes every voxel outside the regions with its
    original stored value. A feature absent from ``labels`` distorts nothing and counts 0.
    """
    features, params, raw, raw3, labels, protect, values = _prepare(img, labels, features, protect, params)
    slope, inter = scaling(img)
    threshold = air_threshold(values)
    regions_, plan, ears, outline = _regions(values, labels, img.affine, features, params, threshold, protect)
    if regions is not None:  # the caller's: each feature's region (bool, ``img``'s grid)
        regions.update(regions_)
    rng = np.random.default_rng(seed)
    air = air_background(raw3, values, threshold)

    def noise(n: int) -> np.ndarray:  # no air along the border (a field of view filled by the head): zero
        return rng.choice(air, size=n) if air.size else np.full(n, zero_value(raw3, slope, inter), raw3.dtype)

    def put_air(where: np.ndarray) -> None:
        raw3[where] = noise(int(where.sum()))

    plans = ears + ([plan] if plan is not None else [])
    zooms = voxel_sizes(img.affine)
    layer = np.zeros(labels.shape, bool)
    for p in plans:
        layer |= skin_layer(p, labels.shape, zooms)
    skin = skin_value(raw3, values, threshold, layer)  # (before any voxel changes)
    if outline is not None:  # the ear and its outline in the air go to noise, then the side is resurfaced
        put_air(outline & ~protect if protect is not None else outline)
    air_level = float(np.median(_scaled(air, slope, inter))) if air.size else 0.0
    for p in plans:
        names = [f for f in features if f in p.windows]
        if names:
            _resurface(raw3, p, p.weight(names), protect, noise, skin,
                       air_level, slope, inter)
    counts = {f: int(regions_[f].sum()) for f in features}
    return image_from_unscaled(raw, img), counts
