"""The raw layout's copy at scale (issue 18 item 5): streaming, progress, restart.

Builds, outside the repository, a dataset of N participants x 2 sessions x (T1w, T2w, 2 BOLD runs,
each with its sidecar, a scans.tsv per session, a sessions.tsv per participant) with tiny NIfTI
files, and runs the raw layout's copy (``bids_deface.dataset.rawcopy.copy_raw_dataset``, what
``participant --output-layout raw`` runs before defacing) in a child process each time:

1. the whole copy: wall seconds and peak memory (``ru_maxrss``), for N/10 and N participants:
   memory should not grow with the dataset (constant-memory streaming);
2. the peer, in the same run: ``shutil.copytree`` of the same dataset (no cleaning at all);
3. restart: a copy killed (SIGKILL) once 40 % of the files are written, then the rerun: how
   many files it skipped as written and verified (manifest: size + SHA-256) and its seconds,
   against the full copy's.

Run:  OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/bench_rawcopy.py [--subjects 1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from bids_deface.dataset.cleaners import CopyContext
from bids_deface.dataset.knownvalues import collect_known_values
from bids_deface.dataset.rawcopy import copy_raw_dataset
from bids_deface.dataset.relabel import Relabeller
from bids_deface.metadata import Deidentifier, load_metadata_policy
bids, out = Path(sys.argv[1]), Path(sys.argv[2])
started = time.perf_counter()
policy = load_metadata_policy()
subjects = sorted(p.name[4:] for p in bids.glob("sub-*"))
known = collect_known_values(bids, subjects, policy)
ctx = CopyContext(bids_dir=bids, policy=policy, deidentifier=Deidentifier(hash_key=b"k" * 32), relabel=Relabeller(),
                  known=known, source_desc=json.loads((bids / "dataset_description.json").read_text()),
                  participants=subjects)
result = copy_raw_dataset(ctx, out, selected=set(), subjects=set(subjects), fingerprint="bench", every=1000)
print(json.dumps({"seconds": time.perf_counter() - started, "written": result.written, "skipped": result.skipped,
                  "left_out": len(result.left_out), "problems": len(result.problems),
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _tiny(shape) -> bytes:
    img = nib.Nifti1Image(np.arange(np.prod(shape), dtype=np.int16).reshape(shape), np.diag([4, 4, 4, 1]))
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = b"TE=30;Time=153152.362"
    return gzip.compress(img.to_bytes(), mtime=0)


def build(root: Path, n: int) -> int:
    """The dataset; returns its number of files."""
    anat, bold = _tiny((4, 4, 4)), _tiny((4, 4, 4, 3))
    root.mkdir(parents=True)
    files = {"dataset_description.json": json.dumps({"Name": "bench", "BIDSVersion": "1.10.0", "Authors": ["b"]}),
             "README": "Benchmark dataset: tiny images, realistic sidecars and tables.\n",
             "participants.tsv": "participant_id\tage\tsex\tfull_name\n" + "".join(
                 f"sub-{i:04d}\t{20 + i % 70}\tF\tPerson Number{i}\n" for i in range(1, n + 1)),
             "task-rest_bold.json": json.dumps({"TaskName": "rest", "RepetitionTime": 2.0})}
    for rel, text in files.items():
        (root / rel).write_text(text)
    count = len(files)
    for i in range(1, n + 1):
        sub = f"sub-{i:04d}"
        (root / sub).mkdir()
        (root / sub / f"{sub}_sessions.tsv").write_text("session_id\tacq_time\nses-1\t2019-03-14T09:00:00\n"
                                                         "ses-2\t2019-09-14T09:00:00\n")
        count += 1
        for ses in ("1", "2"):
            folder = root / sub / f"ses-{ses}"
            (folder / "anat").mkdir(parents=True)
            (folder / "func").mkdir()
            stem = f"{sub}_ses-{ses}"
            scans = ["filename\tacq_time\toperator"]
            for suffix in ("T1w", "T2w"):
                (folder / "anat" / f"{stem}_{suffix}.nii.gz").write_bytes(anat)
                (folder / "anat" / f"{stem}_{suffix}.json").write_text(json.dumps(
                    {"RepetitionTime": 2.3, "EchoTime": 0.003, "PatientName": f"DOE^{i}",
                     "SeriesDescription": f"t1_mprage_sag_p2_iso {stem}", "InstitutionName": "Hospital"}))
            for run in ("1", "2"):
                name = f"{stem}_task-rest_run-{run}_bold"
                (folder / "func" / f"{name}.nii.gz").write_bytes(bold)
                (folder / "func" / f"{name}.json").write_text(json.dumps({"TaskName": "rest", "EchoTime": 0.03}))
                scans.append(f"func/{name}.nii.gz\t2019-03-14T09:{10 + int(run)}:00\tNurse Ratched")
            (folder / f"{stem}_scans.tsv").write_text("\n".join(scans) + "\n")
            count += 9
    return count


def child(bids: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(bids), str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def killed_at(bids: Path, out: Path, share: float, total: int) -> int:
    """Start a copy, kill it (SIGKILL) once ``share`` of the files are written; returns how many were."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(bids), str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    manifest = out / "logs" / "raw-copy-manifest.jsonl"
    while proc.poll() is None:
        lines = manifest.read_text().count("\n") - 1 if manifest.exists() else 0
        if lines >= share * total:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return lines
        time.sleep(0.05)
    raise RuntimeError("the copy finished before it could be interrupted; use more --subjects")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="build and keep everything in this folder")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-rawcopy-"))
    try:
        rows = []
        for n in (max(1, args.subjects // 10), args.subjects):
            bids = work / f"bids-{n}"
            total = build(bids, n)
            full = child(bids, work / f"out-{n}")
            started = time.perf_counter()
            shutil.copytree(bids, work / f"copytree-{n}")
            peer = time.perf_counter() - started
            rows.append((n, total, full, peer))
            print(f"{n} participants, {total} files: raw copy {full['seconds']:.1f} s "
                  f"({full['written']} written, {full['left_out']} left out, {full['problems']} problems), "
                  f"peak memory {full['max_rss_mb']:.0f} MB; shutil.copytree {peer:.1f} s "
                  f"(ratio {full['seconds'] / peer:.1f}x)", flush=True)
        (small_n, _, small, _), (n, total, full, _) = rows
        print(f"memory at {n} vs {small_n} participants: {full['max_rss_mb'] / small['max_rss_mb']:.2f}x")
        out = work / "restart"
        written = killed_at(work / f"bids-{n}", out, 0.4, full["written"])
        rerun = child(work / f"bids-{n}", out)
        print(f"restart after kill -9 at {written} written files: rerun skipped {rerun['skipped']} as written and "
              f"verified, wrote {rerun['written']}, {rerun['seconds']:.1f} s (full copy {full['seconds']:.1f} s, "
              f"{rerun['seconds'] / full['seconds']:.2f}x)")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
