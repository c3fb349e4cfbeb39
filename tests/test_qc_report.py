"""HTML reports (bids_deface.qc.report) from a real QC run: self-contained, and they render in
headless Chromium (Debian's ``chromium``) to a screenshot that is not blank."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from bids_deface.distort import deface_image
from bids_deface.qc import run_qc, write_group_index, write_participant_report
from training.labels import head_labels


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("qc_out")
    img, labels = head_labels("icbm152_t2")
    defaced, counts = deface_image(img, labels)
    result = run_qc(img, defaced, labels, out / "figures", "sub-01_T2w")
    result.update(distorted_voxels=counts, scrubbed_keys=["InstitutionName", "DeviceSerialNumber"])
    broken = {"image": "sub-01_run-2_T2w", "error": "sub-01/anat/sub-01_run-2_T2w.nii.gz: not a 3D volume"}
    sub = write_participant_report(out / "sub-01.html", "sub-01", [result, broken])
    rows = [dict(result, participant="sub-01", report=str(sub)), dict(broken, participant="sub-01", report=str(sub))]
    index = write_group_index(out / "index.html", rows)
    return out, sub, index, result


def test_reports_are_self_contained(reports):
    _, sub, index, result = reports
    for page in (sub, index):
        text = page.read_text()
        assert "http://" not in text and "https://" not in text and "//" not in re.sub(r"data:[^\"]+", "", text)
        for src in re.findall(r'src="([^"]*)"', text):
            assert src.startswith("data:image/png;base64,"), src[:40]
    text = sub.read_text()
    assert text.count("<img") == 3  # renders, feature overlay, brain overlay of the image that ran
    assert "DeviceSerialNumber" in text and "not a 3D volume" in text
    assert f"brain voxels changed</th><td>{result['brain_voxels_changed']}" in text
    assert 'href="sub-01.html#sub-01_T2w"' in index.read_text()


def _chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/apt-packages.txt lists it)")
        pytest.skip("chromium is not installed")
    return exe


@pytest.mark.parametrize("page", ["sub-01.html", "index.html"])
def test_reports_render_in_headless_chromium(reports, tmp_path, page):
    out = reports[0]
    shot = tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--window-size=1280,1600", f"--screenshot={shot}", (out / page).as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    # text and tables (and, in the participant report, renders) make a varied page
    assert pixels.std() > 10, pixels.std()
    assert (pixels < 128).mean() > 0.005
