"""Tissue maps of the training heads, for domain-randomised contrasts (as SynthSeg/SynthStrip do).

No head here comes with a tissue segmentation, so one is derived reproducibly: the intensities
inside the head mask are clustered into ``N_INTENSITY_CLASSES`` classes (1-D k-means, started
at fixed quantiles, so the same head always gives the same map), and each class is split by
depth under the skin (scalp, fat, muscle and cartilage versus skull and brain), so that two
tissues of one brightness in the source contrast can take different brightnesses in a
synthetic one. Class 0 is air. The feature labels are not classes: a synthetic contrast must
not draw their geometric outlines into the image.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from bids_deface.features.geometry import head_mask

N_INTENSITY_CLASSES = 6
SKIN_DEPTH_MM = 14.0  # tissue shallower than this counts as the outer layer
N_CLASSES = 1 + 2 * N_INTENSITY_CLASSES


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 30) -> np.ndarray:
    """Sorted cluster centres of 1-D ``values`` (Lloyd's algorithm from quantile starts)."""
    centres = np.quantile(values, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        edges = (centres[:-1] + centres[1:]) / 2
        member = np.searchsorted(edges, values)
        sums = np.bincount(member, weights=values, minlength=k)
        counts = np.bincount(member, minlength=k)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        if np.allclose(new, centres):
            break
        centres = np.sort(new)
    return centres


def tissue_map(data: np.ndarray, voxel_mm: float = 1.0) -> np.ndarray:
    """uint8 class map of a head on an isotropic grid: 0 air, then intensity class × depth."""
    mask = head_mask(data)
    values = data[mask]
    centres = kmeans_1d(values[:: max(1, values.size // 500_000)].astype(np.float64), N_INTENSITY_CLASSES)
    member = np.searchsorted((centres[:-1] + centres[1:]) / 2, data)
    # depth under the skin on a 2 mm grid (a quarter of the cost of the full grid, same layers)
    coarse = mask[::2, ::2, ::2]
    depth = ndi.distance_transform_edt(coarse) * 2 * voxel_mm
    deep = np.repeat(np.repeat(np.repeat(depth > SKIN_DEPTH_MM, 2, 0), 2, 1), 2, 2)[: data.shape[0], : data.shape[1], : data.shape[2]]
    out = np.zeros(data.shape, np.uint8)
    out[mask] = 1 + member[mask] + N_INTENSITY_CLASSES * deep[mask]
    return out
