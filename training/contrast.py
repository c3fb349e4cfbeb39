"""How a sample's intensities are made: the head's own image, or a random contrast from its tissue map.

A renderer turns source voxel coordinates (from a :class:`training.deform.Warp`) into
intensities. :func:`source_renderer` reads the head's own image (trilinear);
:func:`synthetic_renderer` reads the tissue map (nearest) and gives every tissue class a random
mean and spread, SynthSeg-style: any contrast, including ones no scanner makes, so the network
has to rely on shape. Air stays darker than most tissue (MRI air is noise), but not always
darker than every tissue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage as ndi

from .tissue import N_CLASSES

Renderer = Callable[[np.ndarray], np.ndarray]


@dataclass
class ContrastConfig:
    synthetic_probability: float = 0.5
    air_max: float = 0.12  # air's mean intensity (tissue means are drawn in 0..1)
    max_spread: float = 0.12  # per-class standard deviation, relative
    max_blur_vox: float = 0.8  # partial volume between classes


def source_renderer(data: np.ndarray) -> Renderer:
    background = float(data.min())

    def render(coords: np.ndarray) -> np.ndarray:
        return ndi.map_coordinates(data, coords, order=1, mode="constant", cval=background)

    return render


def random_tissue_intensities(rng: np.random.Generator, cfg: ContrastConfig) -> tuple[np.ndarray, np.ndarray]:
    """(means, spreads) for every tissue class; class 0 (air) dark."""
    means = rng.uniform(0.0, 1.0, size=N_CLASSES)
    means[0] = rng.uniform(0.0, cfg.air_max)
    # a skin that vanishes into the air would make the head shape unknowable: keep some contrast
    means[1:] = np.maximum(means[1:], means[0] + 0.08)
    spreads = rng.uniform(0.0, cfg.max_spread, size=N_CLASSES) * means
    return means.astype(np.float32), spreads.astype(np.float32)


def synthetic_renderer(rng: np.random.Generator, tissue: np.ndarray, cfg: ContrastConfig) -> Renderer:
    """Random per-tissue intensities with per-voxel spread and a little partial-volume blur."""
    means, spreads = random_tissue_intensities(rng, cfg)
    blur = float(rng.uniform(0, cfg.max_blur_vox))
    seed = int(rng.integers(2**31))

    def render(coords: np.ndarray) -> np.ndarray:
        classes = ndi.map_coordinates(tissue, coords, order=0, mode="constant", cval=0).astype(np.intp)
        noise = np.random.default_rng(seed).standard_normal(classes.shape, dtype=np.float32)
        image = means[classes] + spreads[classes] * noise
        if blur > 0.1 and image.ndim == 3:
            image = ndi.gaussian_filter(image, blur)
        return image

    return render


def random_renderer(rng: np.random.Generator, data: np.ndarray, tissue: np.ndarray | None,
                    cfg: ContrastConfig | None) -> Renderer:
    if cfg is not None and tissue is not None and rng.random() < cfg.synthetic_probability:
        return synthetic_renderer(rng, tissue, cfg)
    return source_renderer(data)
