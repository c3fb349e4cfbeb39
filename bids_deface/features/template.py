"""A second, independent localisation: the MNI152NLin2009cSym head registered onto the image.

bids-deface ships reduced copies of TemplateFlow's MNI152NLin2009cSym (4 mm T1w and T2w heads,
a 2 mm brain mask, and 2 mm eye/nose/ear labels made by ``tools/build_template_labels.py`` with
the training label rules), read through the ``templateflow`` client from
``bids_deface/data/templateflow``. The template head is registered onto the image (affine,
mutual information: ``registration.py``, the one implementation; QC's brain check uses it too),
the registration is measured (:func:`assess_registration`), and the template's brain mask and
feature labels are carried onto the image's own grid.

:func:`localise` returns a :class:`Localisation`: the brain mask and labels on the image's grid
and one :class:`Region` per expected feature part (right and left eye, nose, right and left
ear), each saying where the template puts it, how much of it lies inside the field of view,
whether the image holds head tissue there, and whether the head is cut by the field of view
where the part leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from . import LABELS
from .geometry import air_threshold, as_3d
from .registration import block_mean, coarse_head, register_downsampled, sample_moved
from .template_files import (BRAIN_BOX_MM, CONTRASTS, SHIPPED_TEMPLATEFLOW, TEMPLATE, Template,  # noqa: F401
                             feature_labels_file, load_template, template_files)

METHOD = (f"{TEMPLATE} (bids-deface's reduced copy), affine registration of the 4 mm template head "
          "by Mattes mutual information")
# When a registration is sound (measured on the training heads, their perturbations, and the
# refused cases of tests/test_template.py and tests/test_failclosed.py)
QUALITY = {
    "min_mutual_information": 0.40,  # nats; heads 0.5-2.3 (any contrast), a sphere 0.33, flipped 0.25
    "scale": (0.75, 1.35),  # singular values of the linear part
    "max_anisotropy": 1.30,  # largest / smallest singular value
    "max_rotation_deg": 50.0,  # a head is scanned roughly upright; a flip is not a rotation
    "brain_litres": (0.8, 2.4),  # registered template brain: adult intracranial volumes 1.1-1.9 l
    "min_head_dice": 0.80,  # registered template head vs the image's head, where both are seen
}
TISSUE_NEAR_MM = 4.0
CUT_NEAR_MM = 20.0
CARRY_ERROR_MM = 1.0  # the carried distance, sampled every 2 mm and linear between, is within 0.9 mm


@dataclass
class Registration:
    """A template-to-image registration and the measures that say whether it is sound."""

    template_to_image: np.ndarray  # 4x4, template world (mm) -> image world (mm)
    template: str
    mutual_information: float
    scales: tuple[float, float, float]  # singular values of the linear part
    rotation_deg: float  # of the rotation nearest to the linear part
    brain_litres: float  # the template's brain, carried onto the image
    head_dice: float  # registered template head vs the image's head, where both are seen
    failures: list[str] = field(default_factory=list)  # one phrase per failed check

    @property
    def sound(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        """JSON-ready numbers (for provenance): no arrays but the 4x4 matrix, rounded."""
        return {"template": self.template, "method": METHOD, "sound": self.sound, "failures": list(self.failures),
                "mutual_information": round(self.mutual_information, 3),
                "scales": [round(s, 3) for s in self.scales], "rotation_deg": round(self.rotation_deg, 1),
                "brain_litres": round(self.brain_litres, 3), "head_dice": round(self.head_dice, 3),
                "template_to_image": np.round(self.template_to_image, 4).tolist()}


def assess_registration(matrix: np.ndarray, mi: float, coarse: np.ndarray, coarse_affine: np.ndarray,
                        tpl: Template) -> Registration:
    """Measure a registration and list the checks it fails (``QUALITY``)."""
    linear = matrix[:3, :3]
    u, s, vt = np.linalg.svd(linear)
    rotation = u @ vt
    angle = float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1))))
    litres = float(tpl.brain.sum() * abs(np.linalg.det(tpl.brain_affine[:3, :3])) * abs(np.linalg.det(linear))) / 1e6
    image_head = coarse_head(coarse)
    seen = sample_moved(np.ones(tpl.head.shape), tpl.head_affine, matrix, coarse.shape, coarse_affine) > 0.5
    tpl_head = sample_moved(coarse_head(tpl.head), tpl.head_affine, matrix, coarse.shape, coarse_affine) > 0.5
    a, b = image_head & seen, tpl_head & seen
    dice = float(2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1))
    q, failures = QUALITY, []
    if mi < q["min_mutual_information"]:
        failures.append(f"little shared information with the template head (mutual information {mi:.2f})")
    if np.linalg.det(linear) <= 0 or s.min() < q["scale"][0] or s.max() > q["scale"][1]:
        failures.append(f"implausible scaling ({', '.join(f'{v:.2f}' for v in s)})")
    elif s.max() / s.min() > q["max_anisotropy"]:
        failures.append(f"implausible shear or stretch (axes {s.min():.2f} to {s.max():.2f})")
    if angle > q["max_rotation_deg"]:
        failures.append(f"the head is turned {angle:.0f} degrees from upright in world space")
    if not q["brain_litres"][0] <= litres <= q["brain_litres"][1]:
        failures.append(f"the registered brain holds {litres:.2f} l")
    if dice < q["min_head_dice"]:
        failures.append(f"the registered template head overlaps the image's head poorly (Dice {dice:.2f})")
    return Registration(matrix, tpl.name, float(mi), tuple(float(v) for v in s), angle, litres, dice, failures)


# --- localisation ---------------------------------------------------------------------------

@dataclass
class Region:
    """Where the registered template puts one part of a feature, seen from the image."""

    feature: str  # "eyes", "nose" or "ears"
    side: str  # "right", "left" (world RAS: x < 0 is right) or "" for the nose
    voxels: np.ndarray  # (n, 3) indices of the part on the template's label grid
    centroid_mm: np.ndarray  # world (image) RAS, the whole part
    visible_centroid_mm: np.ndarray | None  # the part inside the field of view, on head tissue
    # (None: none of it; where no visible voxel is near tissue, the visible part's centroid)
    visible_fraction: float  # of the part's voxels, inside the image's field of view
    tissue_fraction: float  # of the visible voxels, head tissue in the image
    cut_fraction: float  # of the voxels outside: head tissue where they leave the field of view

    @property
    def name(self) -> str:
        singular = {"eyes": "eye", "ears": "ear"}.get(self.feature, self.feature)
        return f"{self.side} {singular}".strip()


@dataclass
class Localisation:
    """The template's localisation of brain and features on one image's grid."""

    registration: Registration
    brain: np.ndarray  # bool, the image's grid: the template's brain mask carried over
    regions: list[Region]
    shape: tuple[int, int, int]
    affine: np.ndarray
    air_threshold: float  # the image's intensity between air and skin
    head_litres: float  # volume of the image's head (holes filled)
    template: Template = field(repr=False)
    brain_box: tuple[slice, ...] = field(repr=False, default=())
    brain_distance: np.ndarray = field(repr=False, default=None)  # mm beyond the brain (< 0 inside), over brain_box
    # when the registration fails but would pass with the data flipped in world space: how
    # ("front to back", "top to bottom"), i.e. the data disagree with the orientation header
    header_mismatch: str | None = None

    def brain_within(self, mm: float) -> np.ndarray:
        """Voxels (bool, image grid) within ``mm`` of the registered brain mask: a dilated brain.

        The distance is measured in the template and divided by the registration's smallest
        scale, and carried onto the image within CARRY_ERROR_MM, which is added: no image voxel
        closer than ``mm`` is left out.
        """
        if mm > BRAIN_BOX_MM:
            raise ValueError(f"brain dilation above {BRAIN_BOX_MM} mm is not kept")
        out = np.zeros(self.shape, bool)
        if self.brain_distance is not None:
            out[self.brain_box] = self.brain_distance <= mm / min(self.registration.scales) + CARRY_ERROR_MM
        return out

    def template_labels(self) -> np.ndarray:
        """The template's feature labels (uint8) carried onto the image grid, nearest neighbour."""
        tpl, m = self.template, self.registration.template_to_image
        out = np.zeros(self.shape, np.uint8)
        box, values = _carry(tpl.labels, tpl.labels_affine, m, self.shape, self.affine, 0)
        out[box] = np.rint(values).astype(np.uint8)
        return out

    def region_mask(self, region: Region, margin_mm: float = 0.0) -> np.ndarray:
        """One region (bool, image grid), grown by ``margin_mm`` in the template."""
        tpl = self.template
        part = np.zeros(tpl.labels.shape, bool)
        part[tuple(region.voxels.T)] = True
        if margin_mm > 0:
            spacing = np.sqrt((tpl.labels_affine[:3, :3] ** 2).sum(0))
            part = ndi.distance_transform_edt(~part, sampling=spacing) <= margin_mm / min(self.registration.scales)
        out = np.zeros(self.shape, bool)
        box, values = _carry(part.astype(np.float32), tpl.labels_affine, self.registration.template_to_image,
                             self.shape, self.affine, 0)
        out[box] = values >= 0.5
        return out


def _parts(tpl: Template) -> list[tuple[str, str, np.ndarray]]:
    """(feature, side, template voxel indices) of each expected part of each feature."""
    parts = []
    for name, value in LABELS.items():
        idx = np.argwhere(tpl.labels == value)
        if name == "nose":
            parts.append((name, "", idx))
            continue
        x = tpl.labels_affine[0, :3] @ idx.T + tpl.labels_affine[0, 3]
        parts += [(name, "right", idx[x < 0]), (name, "left", idx[x >= 0])]
    return parts


def _tissue_nearby(tissue: np.ndarray, affine2: np.ndarray, mm: float) -> np.ndarray:
    """Voxels of the 2 mm grid with head tissue within ``mm`` (a box of that half-width)."""
    zooms = np.sqrt((affine2[:3, :3] ** 2).sum(0))
    return ndi.maximum_filter(tissue, size=tuple(int(2 * np.ceil(mm / z) + 1) for z in zooms))


def _region(feature: str, side: str, idx: np.ndarray, to_image: np.ndarray, shape, affine: np.ndarray,
            near_tissue, affine2: np.ndarray) -> Region:
    """Measure one template part on the image.

    A registered template misses a thin auricle or a prominent nose by a few millimetres, so
    a visible part "holds tissue" where tissue lies within TISSUE_NEAR_MM. Outside the field of
    view, the lookup is clamped to the border where the part leaves it: the head is cut there
    when tissue reaches the border within CUT_NEAR_MM (a nose or an ear stands out from the
    head, so straight beyond the border of a cut above it there is air).
    """
    world = idx @ to_image[:3, :3].T + to_image[:3, 3]
    vox = (world - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    inside = ((vox >= -0.5) & (vox <= np.array(shape) - 0.5)).all(1)
    tvox = (world - affine2[:3, 3]) @ np.linalg.inv(affine2[:3, :3]).T
    near = tuple(np.clip(np.rint(tvox).astype(int), 0, np.array(near_tissue(0.0).shape) - 1).T)
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    on_tissue = near_tissue(TISSUE_NEAR_MM)[near] & inside
    seen = on_tissue if on_tissue.any() else inside
    cut = float(near_tissue(CUT_NEAR_MM)[near][~inside].mean()) if n_out else 0.0
    return Region(feature, side, idx, world.mean(0) if len(world) else np.full(3, np.nan),
                  world[seen].mean(0) if n_in else None, n_in / max(len(idx), 1),
                  on_tissue.sum() / n_in if n_in else 0.0, cut)


def _carry(values: np.ndarray, values_affine: np.ndarray, to_image: np.ndarray, shape, affine: np.ndarray,
           order: int, where: np.ndarray | None = None) -> tuple[tuple[slice, ...], np.ndarray]:
    """Template-space ``values`` sampled on the image grid over the bounding box of ``where``
    (default: the nonzero values); returns the box (slices of the image grid) and the samples."""
    nz = np.argwhere(values if where is None else where)
    empty = (tuple(slice(0, 0) for _ in range(3)), np.zeros((0, 0, 0), np.float32))
    if not len(nz):
        return empty
    lo, hi = nz.min(0) - 1, nz.max(0) + 1
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])], float)
    vox = nib.affines.apply_affine(np.linalg.inv(affine) @ to_image @ values_affine, corners)
    start = np.clip(np.floor(vox.min(0)).astype(int), 0, np.array(shape))
    stop = np.clip(np.ceil(vox.max(0)).astype(int) + 1, 0, np.array(shape))
    if np.any(stop <= start):
        return empty
    box = tuple(slice(a, b) for a, b in zip(start, stop))
    box_affine = affine.copy()
    box_affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    if order == 0:
        return box, sample_moved(values, values_affine, to_image, stop - start, box_affine)
    # a smooth field (a distance): sampled every ~2 mm, then linearly between (8x fewer samples on
    # a 1 mm image; the field is itself linear between the template's 2 mm voxels); it runs on
    # beyond the template's grid
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    step = np.maximum(1, np.round(2.0 / zooms)).astype(int)
    coarse_shape = -(-(stop - start - 1) // step) + 1
    coarse_affine = box_affine.copy()
    coarse_affine[:3, :3] = affine[:3, :3] * step
    coarse = sample_moved(values, values_affine, to_image, coarse_shape, coarse_affine, order=1, mode="nearest")
    return box, _upsample_linear(coarse, step, stop - start)


def _upsample_linear(coarse: np.ndarray, step, shape) -> np.ndarray:
    """Linear interpolation, axis by axis, of samples taken every ``step`` voxels onto ``shape``."""
    out = coarse
    for axis, (k, n) in enumerate(zip(step, shape)):
        if k == 1:
            continue
        i = np.arange(n)
        i0, f = i // k, (i % k / k).astype(np.float32)
        i1 = np.minimum(i0 + 1, out.shape[axis] - 1)
        grid = [1, 1, 1]
        grid[axis] = n
        f = f.reshape(grid)
        out = np.take(out, i0, axis=axis) * (1 - f) + np.take(out, i1, axis=axis) * f
    return out


def _registration(image2, affine2, coarse, coarse_affine, tpl: Template) -> Registration:
    try:
        matrix, mi = register_downsampled(image2, affine2, tpl.head, tpl.head_affine)
    except ValueError as err:  # no head at all
        return Registration(np.eye(4), tpl.name, 0.0, (1.0, 1.0, 1.0), 0.0, 0.0, 0.0, [str(err)])
    return assess_registration(matrix, mi, coarse, coarse_affine, tpl)


def localise(img: nib.spatialimages.SpatialImage, contrast: str | None = "T1w") -> Localisation:
    """Register the template head onto ``img`` and carry its brain and feature regions over.

    ``contrast`` picks the template (T1w or T2w); anything else uses T1w (mutual information
    copes); where that registration fails, the other template is tried. Never raises for an odd
    image: a registration that fails or is implausible says so in ``registration.failures``.
    """
    img = as_3d(img)
    tpl = load_template(contrast if contrast in CONTRASTS else "T1w")
    data = np.asarray(img.dataobj, dtype=np.float32)
    if not np.isfinite(data).all():  # NaN or inf voxels (some float images): treat as air
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    image2, affine2 = block_mean(data, img.affine, 2.0)
    coarse, coarse_affine = block_mean(image2, affine2, 4.0)
    reg = _registration(image2, affine2, coarse, coarse_affine, tpl)
    if not reg.sound:  # a contrast unlike its name, or neither: the other template may fit
        other = load_template(next(c for c in CONTRASTS if f"{TEMPLATE} {c}" != tpl.name))
        again = _registration(image2, affine2, coarse, coarse_affine, other)
        if again.sound:
            tpl, reg = other, again
    mismatch = None
    if not reg.sound:  # would the data fit if the header were wrong? (a left-right flip cannot show)
        for axis, what in ((1, "front to back"), (2, "top to bottom")):
            flip = np.diag([-1.0 if a == axis else 1.0 for a in range(3)] + [1.0])
            if _registration(image2, flip @ affine2, coarse, flip @ coarse_affine, tpl).sound:
                mismatch = what
                break
    return _carried_onto(img, data, image2, affine2, coarse, coarse_affine, tpl, reg, mismatch)


def localise_through(img: nib.spatialimages.SpatialImage, registration: Registration) -> Localisation:
    """The localisation of an image whose template registration is known already: the template
    registered onto the session's reference, composed with the reference-to-image registration
    (``registration.template_to_image``); no registration of its own (a second contrast of one head)."""
    img = as_3d(img)
    tpl = load_template(registration.template.split()[-1])
    data = np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    image2, affine2 = block_mean(data, img.affine, 2.0)
    coarse, coarse_affine = block_mean(image2, affine2, 4.0)
    return _carried_onto(img, data, image2, affine2, coarse, coarse_affine, tpl, registration, None)


def _carried_onto(img, data, image2, affine2, coarse, coarse_affine, tpl: Template, reg: Registration,
                  mismatch) -> Localisation:
    """The template's regions and brain carried onto ``img`` by ``reg``."""
    m = reg.template_to_image
    threshold = air_threshold(data[::2, ::2, ::2])
    tissue2 = image2 > threshold
    near_tissue = lru_cache(maxsize=None)(lambda mm: _tissue_nearby(tissue2, affine2, mm) if mm else tissue2)
    regions = [_region(f, s, idx, m @ tpl.labels_affine, img.shape, img.affine, near_tissue, affine2)
               for f, s, idx in _parts(tpl)]
    box, distance = _carry(tpl.brain_distance, tpl.brain_distance_affine, m, img.shape, img.affine, 1,
                           where=tpl.brain_distance <= BRAIN_BOX_MM)
    brain = np.zeros(img.shape, bool)
    brain[box] = distance <= 0
    litres = float(coarse_head(coarse).sum() * abs(np.linalg.det(coarse_affine[:3, :3]))) / 1e6
    return Localisation(reg, brain, regions, tuple(img.shape), img.affine.copy(), float(threshold), litres, tpl,
                        box, distance, mismatch)
