"""A regular grid for a stack whose slices are not one: detect there, map labels back.

Real series are rarely a perfect lattice: the spacing jitters, a slice is missing, the gap
varies, a gantry tilt moves each slice's origin within its plane. :func:`regular_grid`
lays an orthogonal grid along the slices' own axes (rows, columns, normal) that covers
every slice, with the median step between planes; :func:`resample` fills it by linear
interpolation along the normal between the two slices around each plane, each sampled in
its own plane; :func:`labels_to_stack` gives each original slice the labels of the grid
points it passes through (nearest grid point), so the distortions then run on the slices
as they are, and every voxel outside the distorted regions keeps its stored value.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from bids_deface.dicom.series import LPS_TO_RAS, Stack

INTEGER_SHIFT = 1e-3  # a shift closer than this to a whole pixel is one


@dataclass(frozen=True)
class RegularGrid:
    affine: np.ndarray  # RAS+ voxel -> mm
    shape: tuple[int, int, int]
    offsets: np.ndarray  # per slice: (column, row) of its first pixel on the grid
    planes: np.ndarray  # per slice: its position along the grid's third axis (fractional)


def regular_grid(stack: Stack) -> RegularGrid:
    """The orthogonal grid on the stack's axes that holds every slice (median step)."""
    row, col = stack.frames[0].orientation[:3], stack.frames[0].orientation[3:]
    normal = stack.normal
    spacing = stack.frames[0].spacing  # (between rows, between columns)
    pos = stack.positions
    n = pos @ normal
    step = float(np.median(np.diff(n)))
    planes = int(round((n[-1] - n[0]) / step)) + 1
    step = (n[-1] - n[0]) / (planes - 1)
    u, v = pos @ row, pos @ col
    cols, rows = stack.shape[:2]
    du, dv = (u - u.min()) / spacing[1], (v - v.min()) / spacing[0]
    shape = (cols + int(np.ceil(du.max() - INTEGER_SHIFT)), rows + int(np.ceil(dv.max() - INTEGER_SHIFT)), planes)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * spacing[1], col * spacing[0], normal * step
    lps[:3, 3] = u.min() * row + v.min() * col + n[0] * normal
    return RegularGrid(LPS_TO_RAS @ lps, shape, np.stack([du, dv], axis=1), (n - n[0]) / step)


def _place(plane: np.ndarray, offset: np.ndarray, shape: tuple[int, int], fill: float) -> np.ndarray:
    """``plane`` on a canvas of ``shape`` with its first pixel at ``offset`` (linear)."""
    canvas = np.full(shape, fill, np.float32)
    whole = np.rint(offset)
    if np.all(np.abs(offset - whole) < INTEGER_SHIFT):
        i, j = whole.astype(int)
        canvas[i:i + plane.shape[0], j:j + plane.shape[1]] = plane
        return canvas
    canvas[:plane.shape[0], :plane.shape[1]] = plane
    return ndi.shift(canvas, offset, order=1, mode="constant", cval=fill, prefilter=False)


def resample(stack_volume: np.ndarray, grid: RegularGrid) -> np.ndarray:
    """The stack's volume (columns, rows, slices) on ``grid``, float32, linear along the normal."""
    data = np.asarray(stack_volume, np.float32)
    fill = float(data.min())
    out = np.empty(grid.shape, np.float32)
    k = np.arange(data.shape[2])
    for m in range(grid.shape[2]):
        t = float(np.interp(m, grid.planes, k))
        k0 = min(int(np.floor(t)), data.shape[2] - 2)
        w = t - k0
        low = _place(data[:, :, k0], grid.offsets[k0], grid.shape[:2], fill)
        if w < 1e-6:
            out[:, :, m] = low
        else:
            high = _place(data[:, :, k0 + 1], grid.offsets[k0 + 1], grid.shape[:2], fill)
            out[:, :, m] = (1 - w) * low + w * high
    return out


def resampled_image(stack_volume: np.ndarray, grid: RegularGrid) -> nib.Nifti1Image:
    img = nib.Nifti1Image(resample(stack_volume, grid), grid.affine)
    img.header.set_xyzt_units("mm")
    return img


def labels_to_stack(labels: np.ndarray, grid: RegularGrid, stack_shape: tuple[int, int, int]) -> np.ndarray:
    """Labels on ``grid`` -> labels on the stack's own slices (nearest grid point)."""
    labels = np.asarray(labels)
    cols, rows, count = stack_shape
    out = np.zeros(stack_shape, labels.dtype)
    for k in range(count):
        i = np.rint(np.arange(cols) + grid.offsets[k, 0]).astype(int)
        j = np.rint(np.arange(rows) + grid.offsets[k, 1]).astype(int)
        m = int(np.rint(grid.planes[k]))
        ok_i, ok_j = (i >= 0) & (i < grid.shape[0]), (j >= 0) & (j < grid.shape[1])
        if 0 <= m < grid.shape[2]:
            out[np.ix_(ok_i, ok_j, [k])] = labels[np.ix_(i[ok_i], j[ok_j], [m])]
    return out
