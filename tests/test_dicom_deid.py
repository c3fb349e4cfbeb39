"""Header de-identification of real DICOM files (heudiconv, pydicom, dicognito test data).

Every test runs the real ``bids-deface dicom`` entry point and then hunts, in the
bytes of every output file, for the identifying values of its input.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pydicom
import pytest

from tools import dicom_testdata as testdata
from bids_deface.cli.run import main as bids_deface_main


def main(args):
    """``bids-deface dicom ARGS`` in this process."""
    return bids_deface_main(["dicom", *args])
from bids_deface.dicom.pipeline import LOG_NAME
from bids_deface.dicom.profile import ProfileOptions, load_table, resolve, tag_rules
from bids_deface.dicom.uids import is_registered

KEY = "a-test-key-not-for-production"
STRING_VRS = {"PN", "LO", "SH", "DA", "DT", "TM", "AE", "ST", "LT", "UT", "UC", "CS", "AS", "UI"}


# ---------------------------------------------------------------- helpers

def _log(out: Path) -> list[dict]:
    with open(out / LOG_NAME, encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _values(elem) -> list[str]:
    value = elem.value
    values = value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    return [str(v).strip() for v in values if v is not None and str(v).strip()]


def identifying_values(ds: pydicom.Dataset) -> set[str]:
    """Values the Basic Profile must not let through: every Table E.1-1 attribute whose
    action is not Keep, person names and dates anywhere, and non-standard UIDs; minus
    values also held by attributes that are legitimately kept (e.g. equal descriptions)."""
    rules = tag_rules()
    hunted, kept = set(), set()
    for elem in ds.iterall():
        if elem.tag.is_private or elem.VR in ("SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            continue
        if elem.VR not in STRING_VRS:  # numbers kept as they are (DS '15.512' is not a time)
            kept.update(_values(elem))
            continue
        rule = rules.get(int(elem.tag))
        values = _values(elem)
        if elem.VR == "UI":
            hunted.update(v for v in values if not is_registered(v))
        elif rule is not None and resolve(rule, ProfileOptions()) != "K":
            hunted.update(values)
        elif elem.VR in ("PN", "DA", "DT"):
            hunted.update(values)
        else:
            kept.update(values)
    words = set()
    for v in hunted:
        words.add(v)
        words.update(w for w in v.replace("^", " ").split() if len(w) >= 5)
    # a word that is also part of a kept value (Manufacturer 'Siemens Healthineers' for
    # Institution 'Baycrest Health Sciences') proves nothing
    return {w for w in words if len(w) >= 5 and w not in {"19000101", "ANONYMIZED"}
            and not any(w in k for k in kept)}


def _input_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.py", "*.pyc", "__pycache__"))
    return dst


@pytest.fixture(scope="module")
def real_inputs(tmp_path_factory) -> Path:
    """heudiconv's Siemens files, dicognito's test files and pydicom's test files in one tree."""
    root = tmp_path_factory.mktemp("dicom-in")
    _copy_tree(testdata.heudiconv_data(), root / "heudiconv")
    _copy_tree(testdata.dicognito_tests() / "orig_data", root / "dicognito")
    _copy_tree(testdata.pydicom_test_file("CT_small.dcm").parent, root / "pydicom")
    return root


@pytest.fixture(scope="module")
def header_run(real_inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("dicom-out")
    code = main([str(real_inputs), str(out), "--key", KEY, "--no-deface"])
    return real_inputs, out, code, _log(out)


# ---------------------------------------------------------------- tests

def test_table_covers_annex_e():
    table = load_table()
    assert len(table) >= 650  # Table E.1-1 of the 2026c edition has ~655 rows
    for keyword, basic in {"PatientName": "Z", "PatientBirthDate": "Z", "InstitutionName": "X/Z/D",
                           "StudyInstanceUID": "U", "ReferencedImageSequence": "X/Z/U*",
                           "DeviceSerialNumber": "X/Z/D", "AccessionNumber": "Z"}.items():
        assert [r.basic for r in table.values() if r.keyword == keyword] == [basic]
    actions = {r.basic for r in table.values()}
    assert actions <= {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
    rule = next(r for r in table.values() if r.keyword == "StudyDate")
    assert resolve(rule, ProfileOptions()) == "Z"
    assert resolve(rule, ProfileOptions(retain_long_modified_dates=True)) == "C"
    serial = next(r for r in table.values() if r.keyword == "DeviceSerialNumber")
    assert resolve(serial, ProfileOptions(retain_device_identity=True)) == "K"
    assert table["private"].option("retain_safe_private") == "C"


def test_shipped_table_is_what_the_generator_writes():
    from tools.annex_e_build import TABLE, build_rows, fetch_basic_profile_source, render_tsv

    assert TABLE.read_text(encoding="utf-8") == render_tsv(build_rows(fetch_basic_profile_source()))


def test_every_readable_file_is_deidentified(header_run):
    inputs, out, code, log = header_run
    files = _input_files(inputs)
    assert len(log) == len(files)
    assert code == 1  # dicognito's burned-in files are refused, some pydicom files have no SOP UIDs
    written = [r for r in log if r["status"] == "written"]
    assert len(written) >= 150
    leaks, hunted = [], 0
    for row in written:
        original = pydicom.dcmread(files[int(row["input"])], force=True)
        target = out / row["output"]
        ds = pydicom.dcmread(target)  # pydicom reads every output
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.LongitudinalTemporalInformationModified == "REMOVED"
        assert not any(e.tag.is_private for e in ds.iterall())
        blob = target.read_bytes()
        values = identifying_values(original)
        hunted += len(values)
        if files[int(row["input"])].name == "0001.dcm":  # heudiconv's scout: a full Siemens header
            in_blob = files[int(row["input"])].read_bytes()
            assert len(values) >= 15 and all(v.encode() in in_blob for v in values)
        for value in values:
            # a UID counts only whole (not as the root of another UID)
            if re.search(re.escape(value.encode("utf-8", "ignore")) + rb"(?![0-9.])", blob):
                leaks.append((row["input"], value, files[int(row["input"])].name))
    assert hunted > 1000
    assert not leaks


def test_output_names_carry_nothing_from_input_names(header_run):
    inputs, out, _, log = header_run
    in_names = {part for p in _input_files(inputs) for part in p.relative_to(inputs).parts}
    out_names = {part for p in out.rglob("*") for part in p.relative_to(out).parts}
    assert not in_names & out_names
    assert not any("Chen" in n or "1.3.12.2" in n for n in out_names)
    # the log names inputs by position only
    text = (out / LOG_NAME).read_text()
    assert "Chen_Matthews" not in text and "heudiconv" not in text


def test_unreadable_refused_and_non_dicom_are_reported_not_copied(header_run):
    inputs, out, _, log = header_run
    files = _input_files(inputs)
    by_name = {files[int(r["input"])].name: r for r in log}
    assert by_name["not_a_dicom_file.txt"]["status"] == "skipped"
    assert by_name["burned_in_yes.dcm"]["status"] == "refused"
    assert by_name["burned_in_no.dcm"]["status"] == "written"
    assert by_name["DICOMDIR"]["status"] == "skipped"
    for row in log:
        if row["status"] != "written":
            assert row["output"] == ""
    n_written = sum(r["status"] == "written" for r in log)
    assert len([p for p in out.rglob("*.dcm")]) == n_written


def test_uids_are_remapped_consistently_across_files(header_run):
    inputs, out, _, log = header_run
    files = _input_files(inputs)
    pairs = [(pydicom.dcmread(files[int(r["input"])], force=True), pydicom.dcmread(out / r["output"]))
             for r in log if r["status"] == "written" and "heudiconv" in str(files[int(r["input"])])]
    mapping: dict[str, set[str]] = {}
    for orig, new in pairs:
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            if kw in orig:
                assert str(new[kw].value) != str(orig[kw].value)
                mapping.setdefault(str(orig[kw].value), set()).add(str(new[kw].value))
        assert new.file_meta.MediaStorageSOPInstanceUID == new.SOPInstanceUID
    assert all(len(v) == 1 for v in mapping.values())
    assert len({next(iter(v)) for v in mapping.values()}) == len(mapping)  # no two UIDs merged
    # the three b0 DWI files share study, series and frame of reference after remapping
    dwi = [new for orig, new in pairs if str(orig.get("SeriesDescription", "")).startswith("b0")
           or "b0dwi" in str(orig.get("ProtocolName", ""))]
    if len(dwi) >= 2:
        assert len({d.SeriesInstanceUID for d in dwi}) == 1


def test_same_key_same_output_other_key_other_uids(real_inputs, header_run, tmp_path):
    _, out1, _, log1 = header_run
    sub = _copy_tree(testdata.heudiconv_data(), tmp_path / "in")
    out2, out3 = tmp_path / "o2", tmp_path / "o3"
    main([str(sub), str(out2), "--key", KEY, "--no-deface"])
    main([str(sub), str(out3), "--key", KEY + "-other", "--no-deface"])
    a = {pydicom.dcmread(p).SOPInstanceUID for p in out1.rglob("*.dcm")}
    b = {pydicom.dcmread(p).SOPInstanceUID for p in out2.rglob("*.dcm")}
    c = {pydicom.dcmread(p).SOPInstanceUID for p in out3.rglob("*.dcm")}
    assert b <= a  # the same instances map to the same new UIDs in another run
    assert not b & c


def test_options_modified_dates_safe_private_and_pseudonyms(tmp_path):
    src = testdata.heudiconv_data()
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("phantom.dcm", "axasc35.dcm"):
        shutil.copy(src / name, inp / name)
    (inp / "b0").mkdir()
    for p in sorted((src / "b0dwiForFmap").glob("*.dcm")):
        shutil.copy(p, inp / "b0" / p.name)
    originals = {p.name: pydicom.dcmread(p) for p in inp.rglob("*.dcm")}
    pid = {str(ds.PatientID) for ds in originals.values()}
    mapping = tmp_path / "pseudonyms.tsv"
    mapping.write_text("PatientID\tpseudonym\n" + "".join(f"{p}\tsub-{i:02d}\n" for i, p in enumerate(sorted(pid))))
    out = tmp_path / "out"
    code = main([str(inp), str(out), "--key", KEY, "--no-deface", "--retain-modified-dates",
                 "--retain-safe-private", "--retain-device-identity", "--pseudonyms", str(mapping)])
    assert code == 0
    log = _log(out)
    files = _input_files(inp)
    shifts = set()
    for row in log:
        orig = pydicom.dcmread(files[int(row["input"])])
        new = pydicom.dcmread(out / row["output"])
        assert str(new.PatientName) == str(new.PatientID) == f"sub-{sorted(pid).index(str(orig.PatientID)):02d}"
        assert new.LongitudinalTemporalInformationModified == "MODIFIED"
        codes = [i.CodeValue for i in new.DeidentificationMethodCodeSequence]
        assert codes[0] == "113100" and {"113107", "113111", "113109"} <= set(codes)
        import datetime as dt
        d0 = dt.datetime.strptime(orig.StudyDate, "%Y%m%d")
        d1 = dt.datetime.strptime(new.StudyDate, "%Y%m%d")
        assert d1 < d0
        shifts.add((str(orig.PatientID), (d0 - d1).days))
        assert new.AcquisitionDate == (dt.datetime.strptime(orig.AcquisitionDate, "%Y%m%d")
                                       - (d0 - d1)).strftime("%Y%m%d")
        assert new.DeviceSerialNumber == orig.DeviceSerialNumber  # Retain Device Identity
        assert "InstitutionName" not in new or new.InstitutionName in ("", "ANONYMIZED")
        # safe private: Siemens diffusion b-value kept, CSA headers (not safe) removed
        priv = {(e.tag.group, e.tag.element & 0xFF) for e in new if e.tag.is_private and e.tag.element > 0xFF}
        assert (0x0029, 0x10) not in priv
        if any(e.tag.group == 0x0019 and (e.tag.element & 0xFF) == 0x0C and e.tag.element > 0xFF
               for e in orig if e.tag.is_private):
            assert (0x0019, 0x0C) in priv
    assert len({s for _, s in shifts}) == len(pid)  # one shift per patient


def test_missing_key_and_unknown_patient_are_clear_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BIDS_DEFACE_DICOM_KEY", raising=False)
    src = testdata.heudiconv_data()
    assert main([str(src), str(tmp_path / "o")]) == 2
    assert "no key" in capsys.readouterr().err
    mapping = tmp_path / "m.tsv"
    mapping.write_text("someone-else\tsub-01\n")
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(src / "phantom.dcm", inp / "x.dcm")
    assert main([str(inp), str(tmp_path / "o2"), "--key", KEY, "--no-deface", "--pseudonyms", str(mapping)]) == 1
    (row,) = _log(tmp_path / "o2")
    assert row["status"] == "failed" and "pseudonym" in row["message"] and row["output"] == ""


def test_accept_burned_in(tmp_path):
    src = testdata.dicognito_tests() / "orig_data" / "test_burned_in_annotation_default"
    out = tmp_path / "out"
    assert main([str(src), str(out), "--key", KEY, "--no-deface", "--accept-burned-in"]) == 0
    assert {r["status"] for r in _log(out)} == {"written"}


def test_clean_descriptors_keeps_descriptions_without_identifying_words(tmp_path):
    src = pydicom.dcmread(testdata.heudiconv_data() / "phantom.dcm")
    src.PatientName = "Quagmire^Glenda"
    src.SeriesDescription = "Quagmire t1 mprage 2016-10-14"
    src.StudyDescription = "Glenda follow up 20161014"
    inp = tmp_path / "in"
    inp.mkdir()
    src.save_as(inp / "x.dcm")
    for flag, kept in ((["--clean-descriptors"], True), ([], False)):
        out = tmp_path / f"out{len(flag)}"
        assert main([str(inp), str(out), "--key", KEY, "--no-deface", *flag]) == 0
        ds = pydicom.dcmread(next(out.rglob("*.dcm")))
        blob = next(out.rglob("*.dcm")).read_bytes()
        assert b"Quagmire" not in blob and b"Glenda" not in blob and b"2016-10-14" not in blob
        if kept:
            assert "t1 mprage" in ds.SeriesDescription and "follow up" in ds.StudyDescription
            assert "113105" in [i.CodeValue for i in ds.DeidentificationMethodCodeSequence]
        else:
            assert "SeriesDescription" not in ds and "StudyDescription" not in ds


def test_clean_descriptors_removes_dates_phones_names_and_ids_from_free_text(tmp_path):
    """Image Comments with a date and a phone number, a name typed into Sequence Name: under
    --clean-descriptors the descriptions stay, the identifying spans go (the BIDS side's
    free-text detection, fed with the values removed from the same file)."""
    src = pydicom.dcmread(testdata.heudiconv_data() / "phantom.dcm")
    src.PatientName = "Quagmire^Glenda"
    src.PatientID = "MRN-77123"
    src.ImageComments = "motion in run 2; called 555-867-5309 on 03/14/2019, Glenda was fine"
    src.SequenceName = "*tfl3d1_Quagmire"
    src.ProtocolName = "t1_mprage MRN-77123"
    inp = tmp_path / "in"
    inp.mkdir()
    src.save_as(inp / "x.dcm")
    out = tmp_path / "out"
    assert main([str(inp), str(out), "--key", KEY, "--no-deface", "--clean-descriptors"]) == 0
    path = next(out.rglob("*.dcm"))
    ds, blob = pydicom.dcmread(path), path.read_bytes()
    for leak in (b"867-5309", b"555", b"03/14/2019", b"2019", b"Glenda", b"Quagmire", b"77123"):
        assert leak not in blob, leak
    assert ds.ImageComments.startswith("motion in run 2; called") and "was fine" in ds.ImageComments
    assert ds.SequenceName == "*tfl3d1" and ds.ProtocolName.startswith("t1_mprage")


def test_our_writer_writes_what_pydicom_writes(real_inputs):
    """write_dicom skips save_as's copy and re-check of the rebuilt File Meta Information: the
    bytes must be the same as save_as(enforce_file_format=True) writes, file for file."""
    import io

    from bids_deface.dicom.deid import deidentify
    from bids_deface.dicom.pipeline import read_dicom
    from bids_deface.dicom.uids import Keyed
    from bids_deface.dicom.writing import write_dicom

    compared = 0
    for path in _input_files(real_inputs):
        try:
            ours, theirs = read_dicom(path), read_dicom(path)
        except Exception:  # noqa: BLE001 - unreadable: not this test's business
            continue
        if ours is None or "SOPInstanceUID" not in ours:
            continue
        try:
            for ds in (ours, theirs):
                deidentify(ds, Keyed(KEY), ProfileOptions())
        except Exception:  # noqa: BLE001
            continue
        a, b = io.BytesIO(), io.BytesIO()
        write_dicom(ours, a)
        theirs.save_as(b, enforce_file_format=True)
        assert a.getvalue() == b.getvalue(), path.name
        compared += 1
    assert compared > 150
