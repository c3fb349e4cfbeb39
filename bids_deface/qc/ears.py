"""Is an ear left after defacing? Two measurements, either of which refuses the image.

- **Outline**: the auricle's outline in the profile renders of the defaced head, measured by
  the privacy check's ear check (:mod:`bids_deface.check.ears`: the region of a profile depth map
  standing more than 8 mm proud of the head's dome over at least 250 mm²), on the same profile
  views (yaw ±90° at every pitch of :mod:`bids_deface.check.views`), so that QC and
  ``bids-deface check`` say the same of the same output.
- **Distorted fraction**: of the tissue voxels (above the head's air/skin threshold) inside the
  detected ears, the share that defacing changed. The ear operator replaces an ear by air noise, so
  a distorted ear scores 1.0 and an ear left alone (``--features eyes nose``) 0.0; below
  :data:`MIN_DISTORTED_FRACTION` an ear is left.

The check measures the original too: an original without an outline (ears outside the field of
view, or smooth template ears) means the outline proves little, which QC flags.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw

from ..features import LABELS
from ..features.geometry import air_threshold, as_3d
from .render import RasVolume, RenderSetup

MIN_DISTORTED_FRACTION = 0.9


def profile_renders(vol: RasVolume, setup: RenderSetup):
    """The check's profile views of ``vol`` (:class:`bids_deface.check.views.Renders`)."""
    from bids_deface.check.ears import PROFILE_YAWS
    from bids_deface.check.views import all_views, render_all

    return render_all(vol, setup, [v for v in all_views() if v.yaw in PROFILE_YAWS])


def distorted_fraction(original: nib.spatialimages.SpatialImage, defaced: nib.spatialimages.SpatialImage,
                       labels: nib.spatialimages.SpatialImage) -> float | None:
    """Share of the detected ears' tissue voxels that defacing changed; None when no ear was
    detected (or the ear labels hold no tissue)."""
    ear = np.asanyarray(as_3d(labels).dataobj) == LABELS["ears"]
    if not ear.any():
        return None
    before = np.asanyarray(as_3d(original).dataobj, dtype=np.float32)
    tissue = ear & (before > air_threshold(before))
    if not tissue.any():
        return None
    after = np.asanyarray(as_3d(defaced).dataobj, dtype=np.float32)
    return float((after[tissue] != before[tissue]).mean())


def ear_check(before, after, original, defaced, labels) -> dict:
    """Both measurements: ``before``/``after`` are the profile renders (:func:`profile_renders`) of
    the original and the defaced head. JSON-ready; ``seen_after`` lists the views whose outline is
    an ear's."""
    from bids_deface.check.ears import MIN_AREA_MM2, MIN_PROTRUSION_MM, ear_areas

    areas_before, areas_after = ear_areas(before), ear_areas(after)
    fraction = distorted_fraction(original, defaced, labels)
    return {
        "areas_before_mm2": areas_before,
        "areas_after_mm2": areas_after,
        "min_area_mm2": MIN_AREA_MM2,
        "min_protrusion_mm": MIN_PROTRUSION_MM,
        "seen_before": [v for v, a in areas_before.items() if a >= MIN_AREA_MM2],
        "seen_after": [v for v, a in areas_after.items() if a >= MIN_AREA_MM2],
        "distorted_fraction": None if fraction is None else round(fraction, 4),
        "min_distorted_fraction": MIN_DISTORTED_FRACTION,
    }


def ears_left(ears: dict) -> list[str]:
    """One reason per measurement that finds an ear left (empty: the ears are gone)."""
    out = []
    if ears["seen_after"]:
        worst = max(ears["seen_after"], key=lambda v: ears["areas_after_mm2"][v])
        out.append(f"an ear's outline remains in the profile renders ({len(ears['seen_after'])} view(s); "
                   f"{worst}: {ears['areas_after_mm2'][worst]:.0f} mm² stand over {ears['min_protrusion_mm']:g} mm "
                   f"proud, an ear from {ears['min_area_mm2']:g} mm²)")
    fraction = ears["distorted_fraction"]
    if fraction is not None and fraction < ears["min_distorted_fraction"]:
        out.append(f"an ear is left: {fraction:.0%} of the detected ears' tissue was distorted "
                   f"(at least {ears['min_distorted_fraction']:.0%} must be)")
    return out


def ear_figure(before, after) -> Image.Image:
    """The level profiles before (top) and after (bottom), each protruding region outlined in blue."""
    from bids_deface.check.ears import ear_areas, outline_overlay

    level = [v for v in before.images if before.views[v].pitch == 0.0]
    h, w = before.images[level[0]].shape
    pad, top, left = 4, 16, 60
    fig = Image.new("RGB", (left + len(level) * (w + pad), 2 * (h + top + pad)), (20, 20, 20))
    draw = ImageDraw.Draw(fig)
    for row, (label, renders) in enumerate((("before", before), ("after", after))):
        y = row * (h + top + pad)
        draw.text((4, y + top + h // 2), label, fill=(255, 255, 255))
        areas = ear_areas(renders)
        for col, view in enumerate(level):
            x = left + col * (w + pad)
            picture = outline_overlay(renders.images[view], renders.depths[view], renders.pixel_mm)
            fig.paste(Image.fromarray(picture), (x, y + top))
            draw.text((x + 2, y + 2), f"{view}: {areas[view]:.0f} mm2", fill=(200, 200, 200))
    return fig
