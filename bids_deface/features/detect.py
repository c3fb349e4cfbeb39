"""Detect the eyes, nose and ears of a head MRI.

``detect_features(img)`` takes any nibabel image (any orientation, 3D or 4D with a singleton
fourth axis, any voxel size or field of view) and returns a :class:`FeatureDetection`: the label
image on the input's own grid, a confidence and a component count per feature, and warnings for
missing, doubled or implausible features. It never raises for an odd head; it raises
``ValueError`` only for input that is not one head volume.

Coarse to fine: the attention U-Net (run by ONNX Runtime, :mod:`.inference`) localises the
features on a 64³ grid of 4 mm voxels over the whole head (averaged with its prediction on the
left-right mirror image); each detected component then gets its whole extent at the input's full
resolution from the head's own surface (:mod:`.surface`): the auricle that stands out from the
side of the head, the eye with its lids and periocular skin, the external nose in front of the
face's smooth envelope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from . import EXPECTED_COMPONENTS, LABELS
from .geometry import air_threshold, as_3d
from .inference import load_network
from .preprocess import grid_affine, head_box, normalise, sample_to_grid
from .nose import external_nose
from .surface import Head, auricle, axis_towards, coarse_solid_head, eye_region, head_in_box, world_box

MIN_COMPONENT_VOXELS = 3  # on the 4 mm grid: 192 mm³
MIN_RELATIVE_SIZE = 0.2  # fragments smaller than this fraction of the feature's largest component are noise
# distance (mm) from the midpoint between the eyes at which a nose or an ear can be
PLAUSIBLE_DISTANCE_MM = {"nose": (10.0, 80.0), "ears": (50.0, 160.0)}
# the surface rule's nose or ear is kept where it agrees with the network's own region at least this
# well (Dice); on the evaluation's held-out heads (training/evaluate.py) a nose rule that followed
# something else scores 0-0.31 against the network, a sound one 0.45-0.93; an ear rule 0.11-0.93,
# and trimmed to within EAR_MARGIN_MM of the network's region it matches the labelled auricle
# better than either alone on most of them, so only an ear rule that all but misses the network's
# region is replaced. The eyes' rule (a sphere on the detected centre) needs no check.
AGREEMENT_MIN = {"nose": 0.4, "ears": 0.1}
EAR_MARGIN_MM = 3.0


@dataclass
class FeatureDetection:
    labels: nib.Nifti1Image  # uint8, input grid, 0 bg / 1 eyes / 2 nose / 3 ears
    confidence: dict[str, float]  # mean softmax probability inside each feature, 0 if absent
    components: dict[str, int]  # connected components found per feature
    warnings: list[str] = field(default_factory=list)  # missing / doubled / implausible features
    model_sha256: str = ""
    centroids_mm: dict[str, list[list[float]]] = field(default_factory=dict)  # world RAS, per component

    def voxel_counts(self) -> dict[str, int]:
        data = np.asanyarray(self.labels.dataobj)
        return {name: int((data == value).sum()) for name, value in LABELS.items()}


def _components(mask: np.ndarray, keep: int) -> tuple[list[np.ndarray], int]:
    """The ``keep`` largest 26-connected components and how many real ones there were.

    A component counts when it has at least MIN_COMPONENT_VOXELS voxels and at least
    MIN_RELATIVE_SIZE of the largest one: a second eye is about as big as the first, a
    stray voxel next to the nose is not a second nose.
    """
    lab, n = ndi.label(mask, structure=np.ones((3, 3, 3)))
    if n == 0:
        return [], 0
    sizes = ndi.sum_labels(mask, lab, np.arange(1, n + 1))
    floor = max(MIN_COMPONENT_VOXELS, MIN_RELATIVE_SIZE * sizes.max())
    order = [i + 1 for i in np.argsort(sizes)[::-1] if sizes[i] >= floor]
    return [lab == i for i in order[:keep]], len(order)


def _centroid(probs: np.ndarray, component: np.ndarray, net_affine: np.ndarray) -> np.ndarray:
    """World centroid of a component, weighted by its class probability (finer than the 4 mm grid)."""
    idx = np.argwhere(component)
    weight = probs[tuple(idx.T)]
    return nib.affines.apply_affine(net_affine, (idx * weight[:, None]).sum(0) / max(float(weight.sum()), 1e-6))


def _extent(head: Head, name: str, component: np.ndarray, centre: np.ndarray, net_affine: np.ndarray,
            eyes: list[np.ndarray]):
    """(voxel slices, full-resolution mask) of one detected component (:mod:`.surface`); the
    eyes' centres place the nose's landmarks."""
    front = axis_towards(head.affine, 1)
    if name == "ears":
        return auricle(head, centre)
    if name == "eyes":
        return eye_region(head, centre, front)
    idx = np.argwhere(component)
    corners = nib.affines.apply_affine(net_affine, np.array([idx.min(0) - 0.5, idx.max(0) + 0.5]))
    return external_nose(head, corners.min(0), corners.max(0), front, eyes if len(eyes) == 2 else None)


def _grown_component(head: Head, component: np.ndarray, net_affine: np.ndarray):
    """(voxel slices, mask, grid cells) of the network's component on the input grid, grown by one
    4 mm cell; the cells are each voxel's (fractional) position on the network grid."""
    grown = ndi.binary_dilation(component)
    idx = np.argwhere(grown)
    corners = nib.affines.apply_affine(net_affine, np.array([idx.min(0) - 0.5, idx.max(0) + 0.5]))
    box = world_box(head.data.shape, head.affine, corners.min(0), corners.max(0))
    ijk = np.stack(np.meshgrid(*[np.arange(b.start, b.stop) for b in box], indexing="ij"), axis=-1)
    cells = nib.affines.apply_affine(np.linalg.inv(net_affine) @ head.affine, ijk)
    cell = np.rint(cells).astype(int)
    inside = np.all((cell >= 0) & (cell < np.array(grown.shape)), axis=-1)
    mask = np.zeros(ijk.shape[:3], bool)
    mask[inside] = grown[tuple(cell[inside].T)]
    return box, mask, cells


def _network_region(head: Head, prob: np.ndarray, component: np.ndarray, net_affine: np.ndarray):
    """(voxel slices, mask) of the network's own region at the input's resolution: its class
    probability ``prob``, interpolated onto the input grid, above one half, on head tissue, within
    its component grown by one cell; the grown component itself where that leaves nothing (a nose
    across a few thick slices), so that a feature the network found is never left with no voxels."""
    box, grown, cells = _grown_component(head, component, net_affine)
    p = ndi.map_coordinates(prob, np.moveaxis(cells, -1, 0), order=1, mode="constant")
    tissue, _ = head_in_box(head, box, axis_towards(head.affine, 1))
    region = grown & tissue & (p > 0.5)
    return box, region if region.any() else grown


def _on_union(a_box, a, b_box, b):
    """Masks ``a`` and ``b`` (on their own voxel slices) placed on the box holding both: (box, a, b)."""
    box = tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a_box, b_box))
    out = []
    for sub, mask in ((a_box, a), (b_box, b)):
        full = np.zeros([s.stop - s.start for s in box], bool)
        full[tuple(slice(s.start - u.start, s.stop - u.start) for s, u in zip(sub, box))] = mask
        out.append(full)
    return box, out[0], out[1]


def _checked_extent(head: Head, name: str, surface, network) -> tuple[tuple[slice, ...], np.ndarray, str | None]:
    """The full-resolution extent of a nose or an ear: the surface rule's (``surface``: voxel
    slices, mask) checked against the network's own region (``network``); (slices, mask, warning).

    Where the two agree (Dice at least ``AGREEMENT_MIN``) the nose's surface extent, whole (it
    reaches the nose's edge, which the 4 mm grid does not: a nose trimmed to the network's region
    kept a profile that read as a face), and the ear's within EAR_MARGIN_MM of the network's
    region; where they do not, the surface rule followed
    something else (a cheek, a thick slice's step, the other side of a tilted face) and the
    network's region is used.
    """
    if not surface[1].any():
        return (*network, f"{name}: the surface shows no {name} at full resolution; the network's region is used")
    box, rule, net = _on_union(*surface, *network)
    agreement = 2 * float((rule & net).sum()) / float(rule.sum() + net.sum())
    if agreement < AGREEMENT_MIN[name]:
        return (*network, f"{name}: the surface's {name} disagrees with the network's (Dice {agreement:.2f}); "
                          f"the network's region is used")
    if name != "ears":
        return (*surface, None)
    # the ear: the flap within EAR_MARGIN_MM of the network's region (the flap rule reaches over
    # the scalp behind and above the auricle; the ear operator's envelope still covers it whole)
    zooms = np.sqrt((head.affine[:3, :3] ** 2).sum(0))
    return box, rule & (ndi.distance_transform_edt(~net, sampling=zooms) <= EAR_MARGIN_MM), None


def _full_extent(head: Head, name: str, component: np.ndarray, centre: np.ndarray, prob: np.ndarray,
                 net_affine: np.ndarray, eyes: list[np.ndarray]):
    """(voxel slices, mask, warning or None): one detected component's extent at full resolution,
    from the surface (:func:`_extent`); a nose's or an ear's checked against the network's own
    region (:func:`_checked_extent`); the network's region where the surface shows nothing."""
    box, mask = _extent(head, name, component, centre, net_affine, eyes)
    if name != "eyes":
        return _checked_extent(head, name, (box, mask), _network_region(head, prob, component, net_affine))
    if not mask.any():
        return (*_network_region(head, prob, component, net_affine),
                f"{name}: the surface shows no {name} at full resolution; the network's region is used")
    return box, mask, None


def _count_warnings(name: str, found: int, expected: int) -> list[str]:
    if found == 0:
        return [f"{name}: not found"]
    if found < expected:
        return [f"{name}: {found} of {expected} expected components found"]
    if found > expected:
        return [f"{name}: {found} components found, {expected} expected; kept the largest"]
    return []


def _plausibility(centroids: dict[str, list[np.ndarray]]) -> list[str]:
    warnings = []
    eyes, noses, ears = centroids.get("eyes", []), centroids.get("nose", []), centroids.get("ears", [])
    if len(eyes) == 2:
        d = float(np.linalg.norm(eyes[0] - eyes[1]))
        if not 35 <= d <= 95:
            warnings.append(f"eyes: implausible distance between the eyes ({d:.0f} mm)")
    if len(ears) == 2:
        d = float(np.linalg.norm(ears[0] - ears[1]))
        if not 100 <= d <= 220:
            warnings.append(f"ears: implausible distance between the ears ({d:.0f} mm)")
    if len(eyes) == 2 and noses:
        mid = (eyes[0] + eyes[1]) / 2
        d = float(np.linalg.norm(noses[0] - mid))
        if d > 80:
            warnings.append(f"nose: {d:.0f} mm from between the eyes")
    return warnings


def detect_features(img: nib.spatialimages.SpatialImage, weights: str | Path | None = None,
                    features: tuple[str, ...] = tuple(LABELS), *, network=None, labelled_elsewhere=None) -> FeatureDetection:
    """Label the eyes, nose and ears of ``img`` on its own grid (see module docstring).

    The network: ``network`` (:func:`.inference.load_network`), else ``weights`` (``.onnx`` or torch
    ``.pt``), else the shipped one. ``labelled_elsewhere()``, called after the network: features
    whose full-resolution extent is not needed (a session's reference gives them), still scored.
    """
    img3 = as_3d(img)
    data = np.asanyarray(img3.dataobj, dtype=np.float32)
    data = data if np.isfinite(data).all() else np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)  # as air
    network = network or load_network(str(weights) if weights else None)
    lo, hi = head_box(data, img3.affine)
    net_affine = grid_affine(lo, hi)
    grid = sample_to_grid(data, img3.affine, net_affine)
    probs = network.predict(normalise(grid))
    coarse = probs.argmax(0)
    head = Head(data, img3.affine, air_threshold(data), coarse_solid_head(grid, air_threshold(grid)), net_affine)
    labels = np.zeros(img3.shape, np.uint8)
    confidence, counts, warnings, centroids = {}, {}, [], {}
    elsewhere = set(labelled_elsewhere()) if labelled_elsewhere is not None else set()
    # eyes first: their midpoint anchors where a nose and ears can plausibly be
    anchor = None
    for name in ("eyes", "nose", "ears"):
        value = LABELS[name]
        expected = EXPECTED_COMPONENTS[name]
        comps, _ = _components(coarse == value, 4)
        cents = [_centroid(probs[value], c, net_affine) for c in comps]
        if anchor is not None and name in PLAUSIBLE_DISTANCE_MM:
            near, far = PLAUSIBLE_DISTANCE_MM[name]
            keep = [near <= np.linalg.norm(p - anchor) <= far for p in cents]
            for p, k in zip(cents, keep):
                if not k:
                    warnings.append(f"{name}: ignored a {name}-like region {np.linalg.norm(p - anchor):.0f} mm from the eyes")
            comps = [c for c, k in zip(comps, keep) if k]
            cents = [p for p, k in zip(cents, keep) if k]
        found = len(comps)
        comps, cents = comps[:expected], cents[:expected]
        if name == "eyes" and len(cents) == 2:
            anchor = (cents[0] + cents[1]) / 2
        counts[name] = found
        warnings += _count_warnings(name, found, expected)
        confidence[name] = float(np.mean([probs[value][c].mean() for c in comps])) if comps else 0.0
        centroids[name] = cents
        if name not in features or name in elsewhere:
            continue
        for comp, centre in zip(comps, cents):
            box, mask, warning = _full_extent(head, name, comp, centre, probs[value], net_affine, centroids["eyes"])
            warnings += [warning] if warning else []
            if mask.size:
                region = labels[box]
                region[mask & (region == 0)] = value
    warnings += _plausibility(centroids)
    out = nib.Nifti1Image(labels, img3.affine, dtype=np.uint8)
    out.header.set_xyzt_units("mm")
    return FeatureDetection(labels=out, confidence=confidence, components=counts, warnings=warnings,
                            model_sha256=network.sha256,
                            centroids_mm={k: [np.round(c, 1).tolist() for c in v] for k, v in centroids.items()})
