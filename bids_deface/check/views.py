"""The views the privacy check looks at: 9 yaws by 3 pitches.

The yaws sweep the camera from the left profile (-90°) to the right profile (+90°) in 22.5°
steps, as :mod:`bids_deface.qc.render` names them (positive towards the subject's right).
A pitch turns the head about its left-right axis before the yaw sweep, as a subject nodding in
the coil would (positive: chin down, so the frontal camera sees the face from above). Heads
are scanned in any of these poses, and a face detector finds a face over a narrower range of
poses than a person does.

The renderer is QC's, one for both (:func:`bids_deface.qc.render.render_all`, with one threshold
and camera for every view of an image): the level views are rendered on the image's own grid,
exactly as the participant level's QC renders them (its views are among these), the nodded ones
from the head turned and resampled once per pitch.
"""

from __future__ import annotations

import numpy as np

from bids_deface.qc.render import VIEWS, RasVolume, Renders, RenderSetup, View, render_all, view_name

YAWS: tuple[float, ...] = tuple(np.linspace(-90.0, 90.0, 9))
PITCHES: tuple[float, ...] = (-20.0, 0.0, 20.0)
__all__ = ["YAWS", "PITCHES", "VIEWS", "Renders", "View", "all_views", "check_renders", "render_all", "view_name"]


def all_views(yaws=YAWS, pitches=PITCHES) -> list[View]:
    return [View(view_name(y, p), float(y), float(p)) for p in pitches for y in yaws]


def check_renders(vol: RasVolume, setup: RenderSetup, views: list[View] | None = None) -> Renders:
    """``vol`` from every view of the check (default :func:`all_views`)."""
    return render_all(vol, setup, all_views() if views is None else views)
