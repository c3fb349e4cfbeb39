"""A thumbnail per image for the group summary: a small render of the *defaced* output's head.

The group summary lives in the output dataset, which is shared, so a thumbnail shows only what
is already there: the defaced image read back from the output, never the original. It is QC's
surface render (:mod:`bids_deface.qc.render`) seen from the right, 45° off the nose, where the
eyes, the nose and an ear are all in view.
"""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
from PIL import Image

from bids_deface.qc.render import ras_volume, render_setup, render_views

YAW = 45.0
PIXELS = 160  # shown at 96 CSS pixels: sharp on a high-density screen too


def thumbnail_png(path: str | Path) -> bytes:
    """PNG bytes of the render of the image at ``path``; raises for an image that cannot be rendered."""
    vol = ras_volume(nib.load(str(path)))
    render = render_views(vol, render_setup(vol), {"thumbnail": YAW})["thumbnail"]
    picture = Image.fromarray(render).resize((PIXELS, PIXELS), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()
