"""Slice overlays for curators: the feature labels, and the brain mask with what defacing changed.

Slices are taken on the image's closest-to-RAS voxel grid (axes permuted and flipped, never
resampled), superior up, the subject's left on the viewer's left (neurological convention, as
in nilearn and fMRIPrep reports).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw

from ..features import LABELS, colour_rgb
from ..features.geometry import as_3d, robust_range

COLOURS = {value: colour_rgb(name) for name, value in LABELS.items()}
BRAIN = (255, 210, 0)
CHANGED = (255, 0, 255)
SCALE = 2  # screen pixels per millimetre


def _canonical(img: nib.spatialimages.SpatialImage, dtype) -> tuple[np.ndarray, tuple[float, float, float]]:
    img = nib.as_closest_canonical(as_3d(img))
    return np.asarray(img.dataobj, dtype=dtype), tuple(float(z) for z in img.header.get_zooms()[:3])


def _grey(data: np.ndarray) -> np.ndarray:
    lo, hi = robust_range(data)
    return np.round(np.clip((data - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def _slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """2D slice of a RAS volume: superior (or anterior, axial) at the top; axial and coronal
    columns run from the subject's left to right, sagittal columns from back to face."""
    if plane == "axial":
        return volume[:, :, index].T[::-1]
    if plane == "coronal":
        return volume[:, index, :].T[::-1]
    if plane == "sagittal":
        return volume[index, :, :].T[::-1]
    raise ValueError(f"unknown plane {plane!r}")


def _panel(grey2d: np.ndarray, layers: list[tuple[np.ndarray, tuple[int, int, int], bool]], zooms2d: tuple[float, float],
           title: str) -> Image.Image:
    """RGB panel at SCALE px/mm; each layer is (mask, colour, filled?)."""
    rgb = np.repeat(grey2d[..., None], 3, axis=2).astype(np.float32)
    for mask, colour, filled in layers:
        if filled:
            rgb[mask] = 0.45 * rgb[mask] + 0.55 * np.array(colour)
        else:
            edge = mask & ~_erode(mask)
            rgb[edge] = colour
    im = Image.fromarray(rgb.astype(np.uint8))
    h_mm, w_mm = grey2d.shape[0] * zooms2d[0], grey2d.shape[1] * zooms2d[1]
    im = im.resize((max(1, int(round(w_mm * SCALE))), max(1, int(round(h_mm * SCALE)))), Image.NEAREST)
    ImageDraw.Draw(im).text((6, 6), title, fill=(255, 255, 255))
    return im


def _erode(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    return out


def _row(panels: list[Image.Image], gap: int = 6) -> Image.Image:
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    height = max(p.height for p in panels)
    out = Image.new("RGB", (width, height), (0, 0, 0))
    x = 0
    for p in panels:
        out.paste(p, (x, (height - p.height) // 2))
        x += p.width + gap
    return out


_ZOOMS = {"axial": (1, 0), "coronal": (2, 0), "sagittal": (2, 1)}  # (row axis, column axis)


def _plane_zooms(zooms, plane):
    r, c = _ZOOMS[plane]
    return zooms[r], zooms[c]


def labels_figure(image: nib.spatialimages.SpatialImage, labels: nib.spatialimages.SpatialImage) -> Image.Image:
    """Axial slice through the eyes, sagittal through the nose, coronal through the ears, labels tinted.

    Inputs: the image and its uint8 label image (same grid: 0 bg, 1 eyes, 2 nose, 3 ears).
    """
    data, zooms = _canonical(image, np.float32)
    lab, _ = _canonical(labels, np.uint8)
    if lab.shape != data.shape:
        raise ValueError(f"labels {lab.shape} and image {data.shape} are not on the same grid")
    grey = _grey(data)
    centre = np.array(data.shape) // 2
    panels = []
    for feature, plane, axis in (("eyes", "axial", 2), ("nose", "sagittal", 0), ("ears", "coronal", 1)):
        where = np.argwhere(lab == LABELS[feature])
        index = int(np.round(where[:, axis].mean())) if len(where) else int(centre[axis])
        title = f"{plane} through the {feature}" if len(where) else f"{plane} (no {feature} labelled)"
        layers = [(_slice(lab == v, plane, index), c, True) for v, c in COLOURS.items()]
        panels.append(_panel(_slice(grey, plane, index), layers, _plane_zooms(zooms, plane), title))
    return _row(panels)


def brain_figure(defaced: nib.spatialimages.SpatialImage, mask: np.ndarray,
                 original: nib.spatialimages.SpatialImage) -> Image.Image:
    """The defaced image with the brain mask outlined (yellow) and changed voxels (magenta).

    Slices pass through the changed voxel nearest to the brain mask when any voxel changed,
    else through the mask's centre. ``mask`` is a bool array on the images' own grid.
    """
    img = as_3d(defaced)
    after, zooms = _canonical(img, np.float32)
    before, _ = _canonical(original, np.float32)
    brain, _ = _canonical(nib.Nifti1Image(mask.astype(np.uint8), img.affine), np.uint8)
    brain = brain.astype(bool)
    changed = ~((before == after) | (np.isnan(before) & np.isnan(after)))
    inside = np.argwhere(changed & brain)
    if len(inside):
        at = inside[len(inside) // 2]
    elif brain.any():
        at = np.round(np.argwhere(brain).mean(0)).astype(int)
    else:
        at = np.array(after.shape) // 2
    grey = _grey(after)
    panels = []
    for plane, axis in (("sagittal", 0), ("coronal", 1), ("axial", 2)):
        layers = [(_slice(changed, plane, int(at[axis])), CHANGED, True), (_slice(brain, plane, int(at[axis])), BRAIN, False)]
        panels.append(_panel(_slice(grey, plane, int(at[axis])), layers, _plane_zooms(zooms, plane), plane))
    return _row(panels)
