"""End to end: `--qc-dir`, quality control inside the per-image workflow.

QC (bids_deface.qc: renders before/after, face detectors, brain check) runs between scrubbing
and writing. Its figures and reports show the original face, so they go to the QC folder and
never into the output dataset; an image on which a face is still found is not written at all.
"""

from __future__ import annotations

import json

import pytest

from bids_deface.dataset.naming import derivative_paths
from bids_deface.dataset.select import FaceImage

from conftest import ImageSpec, build_dataset, run_cli

pytestmark = pytest.mark.slow

IMAGE = "sub-01/anat/sub-01_T1w.nii.gz"


def test_qc_reports_stay_apart_and_gate_the_output(tmp_path):
    root = build_dataset(tmp_path / "bids", {IMAGE: ImageSpec("pydeface_mean")})
    out, qc = tmp_path / "out", tmp_path / "qc"
    proc = run_cli(root, out, "participant", "--qc-dir", qc, "--nprocs", "2", "--skip-bids-validation")
    assert proc.returncode in (0, 1), proc.stderr[-3000:]

    figures = sorted(p.name for p in (qc / "sub-01" / "figures").glob("*.png"))
    assert figures == ["sub-01_desc-brainmask_T1w.png", "sub-01_desc-facialfeatures_T1w.png",
                       "sub-01_desc-render_T1w.png"]
    assert (qc / "sub-01.html").is_file() and (qc / "index.html").is_file()
    result = json.loads((qc / "sub-01" / "sub-01_T1w_qc.json").read_text())
    assert result["brain_voxels_changed"] == 0
    # nothing of QC in the dataset to share
    assert not [p for p in out.rglob("*") if p.suffix in (".png", ".html", ".svg") or p.name == "figures"]

    paths = derivative_paths(FaceImage(root / IMAGE, IMAGE, {"suffix": "T1w"}))
    record = json.loads((out / paths.record).read_text())
    if result["face_detected_after"]:
        assert proc.returncode == 1 and record["Status"] == "failed"
        assert f"bids-deface: ERROR: {IMAGE}: not written, QC still finds a face" in proc.stderr
        assert not (out / paths.image).exists() and not (out / paths.sidecar).exists()
    else:
        assert proc.returncode == 0 and record["Status"].startswith("defaced")
        sidecar = json.loads((out / paths.sidecar).read_text())
        assert sidecar["BidsDeface"]["QC"]["FaceDetectedAfter"] is False
        assert sidecar["BidsDeface"]["QC"]["BrainVoxelsChanged"] == 0

    group = run_cli(root, out, "group", "--qc-dir", qc)
    assert group.returncode == 0, group.stderr
    assert "sub-01_T1w" in (qc / "index.html").read_text()
