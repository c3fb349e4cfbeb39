"""Test images made from real heads: the perturbations and the refused cases of issue 10.

Each function takes a nibabel image (a head from ``tools.heads``) and returns a new image, and
where the head moves in world space, the 4x4 world motion too, so that a test can carry its
landmarks or masks along. Nothing here is installed or shipped.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform
from scipy import ndimage as ndi


def data_of(img) -> np.ndarray:
    return np.asarray(img.dataobj, dtype=np.float32)


def reoriented(img, axcodes=("P", "I", "L")):
    """The same head stored in another voxel order; the header follows (world unchanged)."""
    return img.as_reoriented(ornt_transform(io_orientation(img.affine), axcodes2ornt(axcodes)))


def rotation_about(centre, degrees: float, axis: int = 0) -> np.ndarray:
    """World motion: a rotation of ``degrees`` about the world ``axis`` through ``centre``."""
    a = np.deg2rad(degrees)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(4)
    r[i, i], r[i, j], r[j, i], r[j, j] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
    return nib.affines.from_matvec(np.eye(3), centre) @ r @ nib.affines.from_matvec(np.eye(3), -np.asarray(centre))


def head_centre(img) -> np.ndarray:
    return nib.affines.apply_affine(img.affine, (np.array(img.shape[:3]) - 1) / 2)


def oblique(img, degrees: float = 20.0, axis: int = 0):
    """The head tilted in world space through its header alone (an oblique grid); and the motion."""
    move = rotation_about(head_centre(img), degrees, axis)
    return nib.Nifti1Image(data_of(img), move @ img.affine), move


def resampled(img, zooms=(1.0, 1.0, 1.0), move: np.ndarray | None = None, order: int = 1):
    """The head moved by ``move`` (world) and sampled (trilinear) onto a RAS grid of ``zooms``
    covering it: tilted data, or thick slices. Returns the image and the motion."""
    move = np.eye(4) if move is None else move
    src = move @ img.affine
    shape = np.array(img.shape[:3])
    corners = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    world = nib.affines.apply_affine(src, corners)
    lo, hi = world.min(0), world.max(0)
    zooms = np.asarray(zooms, float)
    out_shape = tuple(int(s) for s in np.ceil((hi - lo) / zooms).astype(int) + 1)
    affine = nib.affines.from_matvec(np.diag(zooms), lo)
    vox2vox = np.linalg.solve(src, affine)
    data = ndi.affine_transform(data_of(img), vox2vox[:3, :3], vox2vox[:3, 3], output_shape=out_shape,
                                order=order, mode="constant", cval=0.0)
    return nib.Nifti1Image(data, affine), move


def carried(mask: np.ndarray, mask_affine: np.ndarray, move: np.ndarray, like) -> np.ndarray:
    """A boolean mask of the unperturbed head carried onto a perturbed image's grid (nearest)."""
    vox2vox = np.linalg.solve(move @ mask_affine, like.affine)
    out = ndi.affine_transform(mask.astype(np.float32), vox2vox[:3, :3], vox2vox[:3, 3],
                               output_shape=like.shape[:3], order=1, mode="constant", cval=0.0)
    return out >= 0.5


def flipped_front_to_back(img):
    """The data flipped along their voxel axis nearest to anterior, the header left as it was."""
    axis = int(np.argmax(np.abs(img.affine[1, :3])))
    return nib.Nifti1Image(np.flip(data_of(img), axis=axis).copy(), img.affine)


def skull_stripped(img, brain_mask_img):
    """Only the brain: the head multiplied by its brain mask."""
    return nib.Nifti1Image(data_of(img) * (np.asarray(brain_mask_img.dataobj) > 0.5), img.affine)


def phantom_sphere(radius_mm: float = 75.0, shape=(160, 192, 160), seed: int = 0):
    """A uniform sphere of head size in noise, 1 mm, centred on the world origin."""
    rng = np.random.default_rng(seed)
    affine = nib.affines.from_matvec(np.eye(3), -(np.array(shape) - 1) / 2)
    r = np.sqrt(sum(((np.arange(n) - (n - 1) / 2) ** 2).reshape([-1 if a == k else 1 for k in range(3)])
                    for a, n in enumerate(shape)))
    data = np.abs(np.where(r <= radius_mm, 500.0, 0.0) + rng.normal(0, 5, shape)).astype(np.float32)
    return nib.Nifti1Image(data, affine)


def world_mask(img, keep) -> np.ndarray:
    """Voxels of ``img`` whose world coordinates (x, y, z arrays) satisfy ``keep``."""
    ijk = np.indices(img.shape[:3]).reshape(3, -1).T
    x, y, z = nib.affines.apply_affine(img.affine, ijk).T
    return keep(x, y, z).reshape(img.shape[:3])


def blanked(img, remove) -> nib.Nifti1Image:
    """The image with the voxels where ``remove(x, y, z)`` holds (world mm) set to zero, grid kept."""
    data = data_of(img).copy()
    data[world_mask(img, remove)] = 0
    return nib.Nifti1Image(data, img.affine)


def cropped(img, keep) -> nib.Nifti1Image:
    """The smallest box of voxels holding every voxel where ``keep(x, y, z)`` holds: a field of
    view that cuts the head (the grid's affine follows)."""
    inside = np.argwhere(world_mask(img, keep))
    lo, hi = inside.min(0), inside.max(0) + 1
    return img.slicer[tuple(slice(a, b) for a, b in zip(lo, hi))]
