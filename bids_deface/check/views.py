"""Renders of one head from every view the privacy check looks at: 9 yaws by 3 pitches.

The yaws sweep the camera from the left profile (-90°) to the right profile (+90°) in 22.5°
steps, as :mod:`bids_deface.qc.render` names them (positive towards the subject's right).
A pitch turns the head about its left-right axis before the yaw sweep, as a subject nodding in
the coil would (positive: chin down, so the frontal camera sees the face from above). Heads
are scanned in any of these poses, and a face detector finds a face over a narrower range of
poses than a person does.

The renderer is QC's (:func:`bids_deface.qc.render.depth_map` and ``shade``), with one threshold
and camera for every view of an image. For speed the volume is resampled once per pitch onto a
grid of :data:`WORK_VOXEL_MM` along the anterior and superior axes (a render's cost grows with
the number of axial slices; QC's detectors were calibrated on 1 and 2 mm heads).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bids_deface.qc.render import RasVolume, RenderSetup, depth_map, shade

YAWS: tuple[float, ...] = tuple(np.linspace(-90.0, 90.0, 9))
PITCHES: tuple[float, ...] = (-20.0, 0.0, 20.0)
WORK_VOXEL_MM = (1.5, 2.0)  # along the anterior and the superior axis


def view_name(yaw: float, pitch: float) -> str:
    """``yaw+45_pitch-20``: the name of a view in reports and tables."""
    return f"yaw{yaw:+g}_pitch{pitch:+g}"


@dataclass(frozen=True)
class View:
    name: str
    yaw: float
    pitch: float


def all_views(yaws=YAWS, pitches=PITCHES) -> list[View]:
    return [View(view_name(y, p), float(y), float(p)) for p in pitches for y in yaws]


def pitched(vol: RasVolume, setup: RenderSetup, pitch_deg: float, voxel_mm=WORK_VOXEL_MM) -> RasVolume:
    """``vol`` turned by ``pitch_deg`` about the left-right axis through the camera centre,
    resampled (trilinear in each sagittal plane) onto ``voxel_mm`` = (along y, along z) voxels.

    The new grid holds the rotated field of view as far as the canvas reaches, less the axial
    slices without head (a render's cost grows with the number of slices).
    """
    nx, ny, nz = vol.data.shape
    dx, dy, dz = vol.zooms
    vy, vz = voxel_mm
    cy, cz = setup.center_mm[1], setup.center_mm[2]
    ys = vol.origin[1] + np.array([0, ny - 1]) * dy - cy  # the field of view around the centre
    zs = vol.origin[2] + np.array([0, nz - 1]) * dz - cz
    th = np.deg2rad(pitch_deg)
    c, s = np.cos(th), np.sin(th)
    corners = np.array([[c * y + s * z, -s * y + c * z] for y in ys for z in zs])
    half = setup.size * setup.pixel_mm / 2 + vz  # the canvas's reach above and below the centre
    y0, y1 = corners[:, 0].min(), corners[:, 0].max()
    z0, z1 = max(corners[:, 1].min(), -half), min(corners[:, 1].max(), half)
    ny2, nz2 = int((y1 - y0) / vy) + 1, int((z1 - z0) / vz) + 1
    # output (row a: y', col b: z') -> rotated back by -pitch -> source voxel (row: y, col: z);
    # source = R^T (y', z'): y = c y' - s z', z = s y' + c z'. cv2's inverse map takes
    # (column, row, 1) of the output to (column, row) of the source.
    to_src = np.array([[c * vz / dz, s * vy / dz, (s * y0 + c * z0 + cz - vol.origin[2]) / dz],
                       [-s * vz / dy, c * vy / dy, (c * y0 - s * z0 + cy - vol.origin[1]) / dy]])
    out = np.empty((nx, ny2, nz2), np.float32)
    for i in range(nx):
        out[i] = cv2.warpAffine(np.ascontiguousarray(vol.data[i]), to_src, (nz2, ny2),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    head = np.flatnonzero((out > setup.threshold).any(axis=(0, 1)))
    lo, hi = (max(head[0] - 2, 0), min(head[-1] + 3, nz2)) if head.size else (0, nz2)
    origin = np.array([vol.origin[0], y0 + cy, z0 + cz + lo * vz])
    return RasVolume(np.ascontiguousarray(out[:, :, lo:hi]), (dx, vy, vz), origin)


@dataclass
class Renders:
    """Every view of one image: grey renders (uint8) and depth maps (mm, ``inf`` off the head)."""

    images: dict[str, np.ndarray]
    depths: dict[str, np.ndarray]
    views: dict[str, View]
    pixel_mm: float


def render_all(vol: RasVolume, setup: RenderSetup, views: list[View] | None = None) -> Renders:
    """Render ``vol`` from every view (default :func:`all_views`) with one threshold and camera."""
    views = all_views() if views is None else views
    images, depths = {}, {}
    for pitch in sorted({v.pitch for v in views}):
        turned = pitched(vol, setup, pitch)
        for view in (v for v in views if v.pitch == pitch):
            depth = depth_map(turned, setup, view.yaw)
            depths[view.name] = depth
            images[view.name] = shade(depth, setup.pixel_mm)
    return Renders(images, depths, {v.name: v for v in views}, setup.pixel_mm)
