"""Eye, nose and ear label images made from a few landmarks per head and geometric rules.

Each training head has a small committed annotation, ``annotations/<head>.json``: landmark
coordinates in world (RAS, mm) space, placed by looking at slices and surface views
(``python -m training.overlays`` draws them). The rules below turn landmarks into
labels on a 1 mm RAS grid; the result is then sampled back onto the head's own grid.

- eyes: a sphere over each eyeball reaching the eyelid skin, inside the head;
- nose: the whole external nose, i.e. head voxels in front of the line from nasion to
  subnasale, within a width that grows from the bridge to the alae;
- ears: the auricle, i.e. the thin flap that a morphological opening of the head removes,
  inside an ellipsoid around the ear landmark (never the tissue over the skull).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from bids_deface.features import LABELS
from bids_deface.features.geometry import as_3d, head_mask, resample, to_ras

EYE_RADIUS_MM = 17.0
NOSE_BACK_MM = 4.0  # the nose's base lies this far behind the nasion-subnasale line
NOSE_HALF_WIDTH_MM = (9.0, 19.0)  # at the nasion, at the subnasale
EAR_SEMI_AXES_MM = (16.0, 24.0, 34.0)  # x (lateral), y, z
EAR_OPENING_MM = 9


@dataclass(frozen=True)
class Landmarks:
    """World RAS coordinates (mm) of one head's facial landmarks."""

    eyes: tuple[tuple[float, float, float], tuple[float, float, float]]
    nasion: tuple[float, float, float]
    pronasale: tuple[float, float, float]
    subnasale: tuple[float, float, float]
    ears: tuple[tuple[float, float, float], tuple[float, float, float]]

    @classmethod
    def from_dict(cls, d: dict) -> "Landmarks":
        return cls(
            eyes=tuple(tuple(map(float, p)) for p in d["eyes"]),
            nasion=tuple(map(float, d["nasion"])),
            pronasale=tuple(map(float, d["pronasale"])),
            subnasale=tuple(map(float, d["subnasale"])),
            ears=tuple(tuple(map(float, p)) for p in d["ears"]),
        )

    def to_dict(self) -> dict:
        r = lambda p: [round(float(v), 1) for v in p]  # noqa: E731
        return {"eyes": [r(p) for p in self.eyes], "nasion": r(self.nasion), "pronasale": r(self.pronasale),
                "subnasale": r(self.subnasale), "ears": [r(p) for p in self.ears]}

    def feature_points(self) -> dict[str, np.ndarray]:
        """One representative point per component: eyes (2), nose (1), ears (2)."""
        nose = (np.array(self.nasion) + np.array(self.pronasale) + np.array(self.subnasale)) / 3
        return {"eyes": np.array(self.eyes), "nose": nose[None], "ears": np.array(self.ears)}


def annotation_path(head: str) -> Path:
    return Path(__file__).with_name("annotations") / f"{head}.json"


def load_annotation(head: str) -> dict:
    """The committed annotation of ``head``: landmarks plus which heads share them."""
    return json.loads(annotation_path(head).read_text())


def load_landmarks(head: str) -> Landmarks:
    return Landmarks.from_dict(load_annotation(head)["landmarks"])


def _world_coords(shape, affine) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axes = [affine[a, a] * np.arange(shape[a]) + affine[a, 3] for a in range(3)]
    return np.meshgrid(*axes, indexing="ij", sparse=True)


def eye_label(mask: np.ndarray, affine: np.ndarray, eye: np.ndarray) -> np.ndarray:
    x, y, z = _world_coords(mask.shape, affine)
    return mask & ((x - eye[0]) ** 2 + (y - eye[1]) ** 2 + (z - eye[2]) ** 2 <= EYE_RADIUS_MM**2)


def nose_label(mask: np.ndarray, affine: np.ndarray, lm: Landmarks) -> np.ndarray:
    x, y, z = _world_coords(mask.shape, affine)
    n, t, s = map(np.asarray, (lm.nasion, lm.pronasale, lm.subnasale))
    # position along the bridge: 0 at the nasion, 1 at the subnasale
    frac = np.clip((n[2] - z) / max(n[2] - s[2], 1.0), 0, 1)
    base_y = n[1] + frac * (s[1] - n[1]) - NOSE_BACK_MM
    half_width = NOSE_HALF_WIDTH_MM[0] + frac * (NOSE_HALF_WIDTH_MM[1] - NOSE_HALF_WIDTH_MM[0])
    inside_z = (z <= n[2]) & (z >= s[2] - 3)
    return mask & inside_z & (y >= base_y) & (np.abs(x - t[0]) <= half_width)


def ear_label(mask: np.ndarray, affine: np.ndarray, ear: np.ndarray) -> np.ndarray:
    """Auricle around ``ear``: head voxels a ball-opening of the head removes, inside an ellipsoid."""
    x, y, z = _world_coords(mask.shape, affine)
    a, b, c = EAR_SEMI_AXES_MM
    ellipsoid = ((x - ear[0]) / a) ** 2 + ((y - ear[1]) / b) ** 2 + ((z - ear[2]) / c) ** 2 <= 1
    out = np.zeros_like(mask)
    idx = np.nonzero(ellipsoid)
    if idx[0].size == 0:
        return out
    pad = EAR_OPENING_MM + 2
    sl = tuple(slice(max(i.min() - pad, 0), i.max() + pad + 1) for i in idx)
    r = EAR_OPENING_MM
    ball = np.add.outer(np.add.outer(np.arange(-r, r + 1) ** 2, np.arange(-r, r + 1) ** 2), np.arange(-r, r + 1) ** 2) <= r * r
    local = mask[sl]
    opened = ndi.binary_opening(local, structure=ball)
    flap = local & ~opened
    # keep the flap components that touch the ellipsoid core; thin tissue elsewhere is not ear
    flap &= ellipsoid[sl]
    out[sl] = flap
    return out


def label_ras(data: np.ndarray, affine: np.ndarray, lm: Landmarks) -> np.ndarray:
    """Label image on a 1 mm RAS grid (the grid of ``data``) from landmarks."""
    mask = head_mask(data)
    labels = np.zeros(data.shape, np.uint8)
    for ear in lm.ears:
        labels[ear_label(mask, affine, np.asarray(ear))] = LABELS["ears"]
    labels[nose_label(mask, affine, lm)] = LABELS["nose"]
    for eye in lm.eyes:
        labels[eye_label(mask, affine, np.asarray(eye))] = LABELS["eyes"]
    return labels


def make_label_image(img: nib.spatialimages.SpatialImage, lm: Landmarks) -> nib.Nifti1Image:
    """uint8 label image (0 bg, 1 eyes, 2 nose, 3 ears) on ``img``'s own grid."""
    img3 = as_3d(img)
    data, ras_affine = to_ras(img3, 1.0)
    labels = label_ras(data, ras_affine, lm)
    on_grid = np.zeros(img3.shape, np.uint8)
    # nearest-neighbour per class (order=0 on the label image keeps classes exact)
    on_grid[...] = np.rint(resample(labels, ras_affine, img3.shape, img3.affine, order=0)).astype(np.uint8)
    out = nib.Nifti1Image(on_grid, img3.affine)
    out.set_data_dtype(np.uint8)
    return out


def head_labels(head: str) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """(image, label image) of a named training head (see tools.heads)."""
    from tools.heads import fetch_head

    img = nib.load(fetch_head(head))
    return img, make_label_image(img, load_landmarks(head))
