"""What the DICOM door does with bad input and with the input folder itself.

Truncated files fail on their own line and are never written, and a head series with one
of them is withheld whole; the output may lie neither inside the input nor around it,
refused before anything is created; a read-only input is read and left unchanged; the
log names files by position and keyed token, the curator's map by path.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import stat
from pathlib import Path

import pydicom

from bids_deface.cli.run import main as bids_deface_main
from bids_deface.dicom.pipeline import LOG_NAME, RunOptions, run
from tools import dicom_testdata as testdata

KEY = "inputs-test-key-0001"


def _log(out: Path) -> list[dict]:
    with open(out / LOG_NAME, encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cut(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def test_truncated_files_fail_on_their_own_line_and_are_not_written(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(testdata.pydicom_test_file("MR_truncated.dcm"), inp / "a_truncated.dcm")
    _cut(testdata.pydicom_test_file("CT_small.dcm"), inp / "b_half_ct.dcm")  # cut in its pixel data
    _cut(testdata.pydicom_test_file("MR_small.dcm"), inp / "c_header_cut.dcm", 0.03)  # cut in the header
    _cut(testdata.pydicom_test_file("JPEG2000.dcm"), inp / "d_half_j2k.dcm", 0.9)  # inside a fragment
    shutil.copy(testdata.heudiconv_data() / "phantom.dcm", inp / "e_whole.dcm")  # another series
    for deface in (False, True):
        out = tmp_path / f"out-{deface}"
        run(inp, out, RunOptions(key=KEY, deface=deface))
        log = _log(out)
        by_input = {int(r["input"]): r for r in log}
        assert by_input[0]["message"] == "dataset ends early: element (7FE0,0010) holds 8130 of 8192 bytes"
        assert by_input[1]["message"].startswith("dataset ends early: element (7FE0,0010) holds")
        assert by_input[2]["status"] in ("failed", "skipped")
        assert by_input[3]["message"].startswith(("dataset ends early", "encapsulated pixel data"))
        assert [r["status"] for r in log] == ["failed", "failed", by_input[2]["status"], "failed", "written"]
        assert len(list(out.rglob("*.dcm"))) == 1


def test_a_head_series_with_one_cut_slice_is_withheld_whole(tmp_path):
    series = testdata.build_series(tmp_path / "in" / "head", step=4)
    slices = sorted(series.iterdir())
    _cut(slices[20], slices[20], 0.6)  # half a slice: pixel data shorter than rows × columns
    out = tmp_path / "out"
    rows = run(tmp_path / "in", out, RunOptions(key=KEY))
    assert {r.status for r in rows} == {"failed"} and not list(out.rglob("*.dcm"))
    assert rows[20].message.startswith("dataset ends early: element (7FE0,0010) holds")
    others = {r.message for i, r in enumerate(rows) if i != 20}
    assert others == {f"head series withheld: input #20 [{rows[20].token}] of the series is unreadable or cut"}


def _dicom_main(args):
    return bids_deface_main(["dicom", *map(str, args)])


def test_output_inside_or_around_the_input_is_refused_before_anything_is_created(tmp_path, capsys):
    inp = tmp_path / "in"
    shutil.copytree(testdata.heudiconv_data() / "b0dwiForFmap", inp / "dwi")
    before = _digests(inp)
    listing = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert _dicom_main([inp, inp / "sub", "--key", KEY]) == 2
    assert "must not be inside the input" in capsys.readouterr().err
    assert _dicom_main([inp / "dwi", inp, "--key", KEY]) == 2  # the input inside the output
    assert "must not contain the input" in capsys.readouterr().err
    assert _dicom_main([inp, inp, "--key", KEY]) == 2
    assert _dicom_main([inp, tmp_path / "out", "--key", KEY, "--map-file", tmp_path / "out" / "map.tsv"]) == 2
    assert "keep it out of the output folder" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == listing  # nothing created
    assert _digests(inp) == before


def test_read_only_input_is_left_unchanged_and_files_are_named_by_position_and_token(tmp_path, capsys):
    inp = tmp_path / "Doe_Janet_private"
    shutil.copytree(testdata.heudiconv_data() / "b0dwiForFmap", inp / "dwi_Doe")
    shutil.copy(testdata.pydicom_test_file("MR_truncated.dcm"), inp / "Doe_cut.dcm")
    for p in [inp, *inp.rglob("*")]:
        p.chmod(stat.S_IREAD | (stat.S_IEXEC if p.is_dir() else 0) | stat.S_IRGRP | stat.S_IROTH)
    before = _digests(inp)
    out, curator = tmp_path / "out", tmp_path / "curator" / "map.tsv"
    try:
        code = _dicom_main([inp, out, "--key", KEY, "--no-deface", "--map-file", curator])
    finally:
        for p in [inp, *inp.rglob("*")]:
            p.chmod(stat.S_IRWXU)
    err = capsys.readouterr().err
    assert code == 1 and _digests(inp) == before
    log = _log(out)
    (failed,) = [r for r in log if r["status"] == "failed"]
    assert f"input #{failed['input']} [{failed['token']}]: failed: dataset ends early" in err
    text = (out / LOG_NAME).read_text() + err
    assert "Doe" not in text and "dwi" not in text  # no input name anywhere a reader of OUT sees
    assert stat.S_IMODE(os.stat(curator).st_mode) == 0o600
    with open(curator, encoding="utf-8") as fh:
        mapping = {r["token"]: r for r in csv.DictReader(fh, delimiter="\t")}
    assert mapping[failed["token"]]["path"] == "Doe_cut.dcm"
    assert len(mapping) == len(log) == len(set(mapping)) and all(t.startswith("t") for t in mapping)
    for r in log:
        assert mapping[r["token"]]["output"] == r["output"]
        if r["output"]:
            assert pydicom.dcmread(out / r["output"]).PatientIdentityRemoved == "YES"
