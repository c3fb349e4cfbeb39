"""What the output keeps of the distorted regions (bids_deface/dataset/regions.py), on known geometry.

A "nose" (a block in front of the head's centre) and two "ears" (blocks at its sides) on a 1 mm
grid; the same head moved by a known rigid motion and sampled on an oblique 1.2 mm grid, as another
scan of the session. The kept masks are swept outward (no outer boundary), and carried into the
reference's space with the motion they land where the reference's are; carried the wrong way
round, they do not.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from bids_deface.dataset.regions import KeptRegions, dice, in_reference_space, keep_regions

SHAPE = (120, 140, 120)
AFFINE = nib.affines.from_matvec(np.eye(3), (-60.0, -70.0, -60.0))  # 1 mm, centre near the origin
CENTRE = np.zeros(3)


def regions_on(affine, shape, motion=np.eye(4)) -> dict[str, np.ndarray]:
    """The head's regions on a grid, the head moved by ``motion`` (world -> world)."""
    index = np.indices(shape).reshape(3, -1).T
    world = nib.affines.apply_affine(np.linalg.inv(motion) @ affine, index)  # where the head was
    x, y, z = world.T
    nose = (np.abs(x) < 12) & (y > 50) & (y < 66) & (np.abs(z + 10) < 15)
    ears = (np.abs(np.abs(x) - 50) < 6) & (np.abs(y) < 15) & (np.abs(z) < 20)
    return {"nose": nose.reshape(shape), "ears": ears.reshape(shape)}


def oblique_grid(zoom: float, degrees: float) -> tuple[np.ndarray, tuple]:
    angle = np.radians(degrees)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    shape = tuple(int(n / zoom) for n in SHAPE)
    offset = -rotation @ (np.asarray(shape) - 1) * zoom / 2
    return nib.affines.from_matvec(rotation * zoom, offset), shape


MOTION = nib.affines.from_matvec(
    np.array([[1, 0, 0], [0, np.cos(0.08), -np.sin(0.08)], [0, np.sin(0.08), np.cos(0.08)]]), (3.0, -4.0, 2.0))


def extent(mask: np.ndarray, axis: int) -> tuple[int, int]:
    hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
    return int(hit[0]), int(hit[-1])


def test_the_kept_masks_are_swept_outward_to_the_edge_of_the_field_of_view():
    kept = keep_regions(regions_on(AFFINE, SHAPE), AFFINE, CENTRE)
    nose = kept.masks["nose"]
    assert nose.sum() > 100
    # everything in front of the nose (+y) is in the mask: it has no front boundary
    assert not np.any(np.logical_or.accumulate(nose, axis=1) & kept.fov & ~nose)
    assert extent(nose, 1)[1] == extent(kept.fov, 1)[1]  # it reaches the field of view's front edge
    ears = kept.masks["ears"]  # each ear swept out to its own side's edge
    assert ndi.label(ears)[1] == 2 and extent(ears, 0) == extent(kept.fov, 0)


def test_an_image_moved_with_its_head_lands_on_the_reference_and_not_the_wrong_way_round():
    reference = keep_regions(regions_on(AFFINE, SHAPE), AFFINE, CENTRE)
    affine, shape = oblique_grid(1.2, 15.0)
    image = keep_regions(regions_on(affine, shape, MOTION), affine, MOTION[:3, 3])
    right = in_reference_space(image, reference, MOTION)
    wrong = in_reference_space(image, reference, np.linalg.inv(MOTION))
    for feature in ("nose", "ears"):
        good = dice(reference.masks[feature], right.masks[feature], reference.fov & right.fov)
        bad = dice(reference.masks[feature], wrong.masks[feature], reference.fov & wrong.fov)
        assert good >= 0.9 and bad < 0.6, (feature, good, bad)  # (measured: 0.92 and 0.34-0.51)


def test_kept_regions_read_back_as_written(tmp_path):
    kept = keep_regions(regions_on(AFFINE, SHAPE), AFFINE, CENTRE)
    kept.save(tmp_path / "regions.npz")
    back = KeptRegions.load(tmp_path / "regions.npz")
    assert np.array_equal(back.origin, kept.origin) and np.array_equal(back.fov, kept.fov)
    assert set(back.masks) == set(kept.masks) and all(np.array_equal(back.masks[f], kept.masks[f]) for f in kept.masks)
