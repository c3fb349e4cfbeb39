"""``bids-deface check`` on the real heads of DATA.md, before and after defacing by bids-deface and
by the peers runnable here: how many images each leaves with a detectable face or ears.

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/bench_check.py [--heads …] [--jobs 2]
        [--defacers none bids-deface …] [--versions orig augmented] [--redo]

Inputs: every head of ``tools.heads.HEADS`` (no reserved head), as shipped and augmented
(:func:`augment`: turned 12° yaw, -15° pitch, 8° roll in world space, the lowest 20 mm of the field
of view cut, gamma 0.85, a ±20% bias field and Rician noise of 1% of the bright level; seeded). Each input is checked
(:func:`bids_deface.check.image.check_image`, the unit of work of ``bids-deface check``) as it is and
after defacing by:

- ``bids-deface``: what the participant level writes by default: the installed ``bids-deface``
  run on a one-image BIDS dataset (:func:`deface_bids_deface`: the whole journey, its fail-closed
  gate included); an image it refuses has no output and is counted apart (``refused``);
- ``bids-deface --qc-dir``: the same with quality control, whose gate refuses an image on which
  QC still finds a face or an ear (QC's views are among the check's, rendered and judged alike);
- ``quickshear``: quickshear 1.2.0 with a deepbet 1.0.2 brain mask (both from PyPI, installed with
  ``pip --target`` into the cache on first use: deepbet ships a top-level ``data/`` folder that
  would clash in the project's environment);
- ``pydeface``: pydeface 2.1.0's template and face mask, the template registered to the image
  by bids-deface's affine Mattes-MI registration, the mask carried over (1 keeps, 0 removes);
- controls (as-shipped inputs only): ``wedge`` (``tools.check_controls.wedge_deface``, the face
  cut, ears left: must be flagged for ears) and ``no-ears`` (``remove_ears``: the auricles cut away,
  face left: the ear check must pass it).

Prints one line per image and a table per defacer; results are kept in
``~/.cache/bids-deface/bench_check/results.jsonl`` (a rerun skips what is there; ``--fresh`` starts
over). Time: CPU seconds of one check of a ~1 mm head (``time.process_time`` in its process), and
the wall time per head with ``--jobs`` processes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np

from benchmarks.peers import deface_quickshear, peer_site
from tools.heads import HEADS, _extract, cache_dir, fetch_head

DEFACERS = ("none", "bids-deface", "bids-deface --qc-dir", "quickshear", "pydeface")
CONTROLS = ("wedge", "no-ears")


def work() -> Path:
    path = cache_dir() / "bench_check"
    path.mkdir(parents=True, exist_ok=True)
    return path


def augment(img: nib.Nifti1Image, seed: int = 0) -> nib.Nifti1Image:
    """Turned in world space, the bottom of the field of view cut, another contrast, noise."""
    rng = np.random.default_rng(seed)
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    axis = int(np.argmax(np.abs(img.affine[2, :3])))  # the voxel axis closest to superior
    cut = int(round(20.0 / abs(img.affine[2, axis])))
    keep = [slice(None)] * 3
    keep[axis] = slice(cut, None) if img.affine[2, axis] > 0 else slice(0, data.shape[axis] - cut)
    offset = np.eye(4)
    offset[axis, 3] = cut if img.affine[2, axis] > 0 else 0
    data, affine = data[tuple(keep)], img.affine @ offset
    lo, hi = np.percentile(data, [1, 99.5])
    x = np.clip((data - lo) / (hi - lo), 0, 1) ** 0.85
    bias = np.linspace(0.8, 1.2, data.shape[0], dtype=np.float32)[:, None, None]
    noise = 0.01
    x = np.sqrt((x * bias + rng.normal(0, noise, x.shape)) ** 2 + rng.normal(0, noise, x.shape) ** 2)
    centre = affine @ np.r_[(np.array(data.shape) - 1) / 2, 1]
    turn = np.eye(4)
    turn[:3, :3] = _rotation(12.0, -15.0, 8.0)
    move = np.eye(4)
    move[:3, 3] = centre[:3]
    return nib.Nifti1Image((x * 1000).astype(np.float32), move @ turn @ np.linalg.inv(move) @ affine)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.deg2rad([yaw, pitch, roll])
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(r), 0, np.sin(r)], [0, 1, 0], [-np.sin(r), 0, np.cos(r)]])
    return rz @ rx @ ry


class Refused(Exception):
    """The app refused the image (fail closed): no output, a row of its own."""


def deface_bids_deface(src: Path, out: Path, head: str, qc: bool = False) -> None:
    """What the participant level writes: the installed ``bids-deface`` run as a curator runs it,
    on a one-image BIDS dataset in a temporary folder (every step of the journey: the gate, the
    registered-template localisation, the brain guard, QC and its gate). Raises :class:`Refused`
    when the app writes no output for the image."""
    import shutil
    import subprocess
    import tempfile

    suffix = HEADS[head].contrast
    with tempfile.TemporaryDirectory(dir=work()) as tmp:
        bids = Path(tmp) / "bids"
        (bids / "sub-01" / "anat").mkdir(parents=True)
        (bids / "dataset_description.json").write_text(json.dumps({"Name": "bench_check", "BIDSVersion": "1.10.0"}))
        shutil.copy(src, bids / "sub-01" / "anat" / f"sub-01_{suffix}.nii.gz")
        cli = Path(sys.executable).parent / "bids-deface"
        qc_dir = ["--qc-dir", str(Path(tmp) / "qc")] if qc else []
        proc = subprocess.run([str(cli), str(bids), str(Path(tmp) / "out"), "participant", "--skip-bids-validation",
                               "--nprocs", "1", *qc_dir], capture_output=True, text=True, timeout=1800)
        record = Path(tmp) / "out" / "logs" / "images" / f"sub-01_{suffix}.json"
        status = json.loads(record.read_text())["Status"] if record.is_file() else "no record"
        if status != "defaced":
            lines = (proc.stdout + proc.stderr).splitlines()
            last = [line for line in lines if f"[{status}]" in line][-1:] or [proc.stderr[-300:]]
            raise Refused(f"{status}: {last[0][:300]}")
        shutil.copy(Path(tmp) / "out" / json.loads(record.read_text())["Outputs"]["image"], out)


def deface_pydeface(img):
    from bids_deface.features.registration import register_template, sample_moved

    tpl = nib.load(fetch_head("pydeface_mean"))
    mask = nib.load(_extract("pydeface", "2.1.0", "pydeface/data/facemask.nii.gz", False))
    data = np.asarray(img.dataobj, dtype=np.float32)
    matrix, _ = register_template(data, img.affine, np.asarray(tpl.dataobj, np.float32), tpl.affine)
    keep = sample_moved(np.asarray(mask.dataobj, np.float32), mask.affine, matrix, data.shape, img.affine,
                        order=0, cval=1.0)
    return nib.Nifti1Image(data * (keep > 0.5), img.affine)


def prepare(head: str, version: str, defacer: str) -> Path:
    """The input image for one row of the table (cached)."""
    from tools.check_controls import remove_ears, wedge_deface

    out = work() / f"{head}_{version}_{defacer.replace(' --', '_')}.nii.gz"
    if out.is_file():
        return out
    src = work() / f"{head}_{version}_none.nii.gz"
    if not src.is_file():
        img = nib.load(fetch_head(head))
        img = augment(img) if version == "augmented" else nib.Nifti1Image(
            np.asarray(img.dataobj, np.float32).reshape(img.shape[:3]), img.affine)
        nib.save(img, src)
    if defacer == "none":
        return src
    img = nib.load(src)
    if defacer == "quickshear":
        deface_quickshear(src, out)
        return out
    if defacer.startswith("bids-deface"):
        deface_bids_deface(src, out, head, qc=defacer.endswith("--qc-dir"))
        return out
    made = {"pydeface": deface_pydeface,
            "wedge": wedge_deface, "no-ears": remove_ears}[defacer](img)
    nib.save(nib.Nifti1Image(np.asarray(made.dataobj, np.float32), img.affine), out)
    return out


def run_one(job: tuple[str, str, str]) -> dict:
    try:
        return _run_one(job)
    except Refused as exc:  # the app wrote nothing: not an output, counted apart
        head, version, defacer = job
        return {"head": head, "version": version, "defacer": defacer, "checks": ["refused"], "error": str(exc),
                "face_views": [], "ear_areas": {}, "zoom_mm": 0.0, "cpu_s": 0.0, "wall_s": 0.0, "prepare_s": 0.0}
    except Exception as exc:  # a peer that fails on an image is a row of its own, not the end of the run
        head, version, defacer = job
        return {"head": head, "version": version, "defacer": defacer, "checks": ["error"], "error": repr(exc)[:200],
                "face_views": [], "ear_areas": {}, "zoom_mm": 0.0, "cpu_s": 0.0, "wall_s": 0.0, "prepare_s": 0.0}


def _run_one(job: tuple[str, str, str]) -> dict:
    from bids_deface.check.image import check_image

    head, version, defacer = job
    t = time.perf_counter()
    path = prepare(head, version, defacer)
    prep = time.perf_counter() - t
    relpath = f"sub-{head.replace('_', '')}/anat/sub-{head.replace('_', '')}_T1w.nii.gz"
    c0, w0 = time.process_time(), time.perf_counter()
    result = check_image(path, relpath)
    checks = sorted({f.check for f in result.findings})
    return {"head": head, "version": version, "defacer": defacer, "checks": checks,
            "face_views": sorted(f.where for f in result.findings if f.check == "face"),
            "ear_areas": result.facts.get("ear_areas_mm2", {}),
            "zoom_mm": float(min(nib.load(path).header.get_zooms()[:3])),
            "cpu_s": round(time.process_time() - c0, 2), "wall_s": round(time.perf_counter() - w0, 2),
            "prepare_s": round(prep, 1)}


def table(rows: list[dict]) -> str:
    lines = ["| images | defaced by | face detected | ears detected | face or ears | passed | refused (no output) |",
             "|---|---|---|---|---|---|---|"]
    for version in ("as shipped", "augmented"):
        for defacer in DEFACERS + CONTROLS:
            sel = [r for r in rows if r["defacer"] == defacer and (r["version"] == "orig") == (version == "as shipped")]
            if not sel:
                continue
            n = len(sel)
            face = sum("face" in r["checks"] for r in sel)
            ears = sum("ears" in r["checks"] for r in sel)
            either = sum(bool({"face", "ears"} & set(r["checks"])) for r in sel)
            refused = sum("refused" in r["checks"] for r in sel)
            passed = sum(not r["checks"] for r in sel)
            lines.append(f"| {version} | {defacer} | {face}/{n} | {ears}/{n} | {either}/{n} | {passed}/{n} | "
                         f"{refused}/{n} |")
    return "\n".join(lines)


def _every() -> set[tuple[str, str, str]]:
    return {(h, v, d) for h in HEADS for v in ("orig", "augmented") for d in DEFACERS + CONTROLS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", nargs="*", default=list(HEADS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--defacers", nargs="*", default=list(DEFACERS + CONTROLS), choices=DEFACERS + CONTROLS,
                    help="rows to run (default: all)")
    ap.add_argument("--versions", nargs="*", default=["orig", "augmented"], choices=["orig", "augmented"])
    ap.add_argument("--fresh", action="store_true", help="forget every cached result and defaced image")
    ap.add_argument("--redo", action="store_true",
                    help="forget the cached results and outputs of the chosen rows (after the app changed)")
    args = ap.parse_args(argv)
    log = work() / "results.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() and not args.fresh else []
    chosen = {(h, v, d) for h in args.heads for v in args.versions for d in args.defacers}
    if args.fresh or args.redo:  # the defaced images go too (the inputs are made the same again)
        done = [r for r in done if (r["head"], r["version"], r["defacer"]) not in chosen]
        log.write_text("".join(json.dumps(r) + "\n" for r in done))
        for h, v, d in {(h, v, d) for h, v, d in (chosen if args.redo else _every()) if d != "none"}:
            (work() / f"{h}_{v}_{d.replace(' --', '_')}.nii.gz").unlink(missing_ok=True)
    seen = {(r["head"], r["version"], r["defacer"]) for r in done}
    # as-shipped heads first, every defacer over every head, then the augmented ones
    jobs = [(h, v, d) for v in ("orig", "augmented") for d in DEFACERS + (CONTROLS if v == "orig" else ())
            for h in args.heads if (h, v, d) in chosen and (h, v, d) not in seen]
    peer_site()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool, open(log, "a") as out:
        for row in pool.map(run_one, jobs):
            out.write(json.dumps(row) + "\n")
            out.flush()
            done.append(row)
            print(f"{row['head']:16s} {row['version']:9s} {row['defacer']:20s} {','.join(row['checks']) or 'passed':24s}"
                  f" check {row['cpu_s']:5.1f} s CPU, {row['wall_s']:5.1f} s wall", flush=True)
    wall = time.perf_counter() - t0
    rows = [r for r in done if r["head"] in args.heads]
    print()
    print(table(rows))
    fine = [r for r in rows if r["zoom_mm"] <= 1.05]
    if fine:
        print(f"\ncheck of a ~1 mm head: median {statistics.median(r['cpu_s'] for r in fine):.1f} s CPU "
              f"(n={len(fine)}), i.e. {statistics.median(r['cpu_s'] for r in fine) / 2:.1f} s per head on 2 cores "
              f"with 2 images in parallel; median wall {statistics.median(r['wall_s'] for r in fine):.1f} s "
              f"with {args.jobs} jobs on this (shared) machine")
    if jobs:
        print(f"this run: {len(jobs)} images prepared and checked in {wall:.0f} s")
    missed = [f"{r['head']}/{r['version']}" for r in rows if r["defacer"] == "none" and not r["checks"]]
    ours = [f"{r['head']}/{r['version']}: {','.join(r['checks'])}" for r in rows if r["defacer"].startswith("bids-deface") and {"face", "ears"} & set(r["checks"])]
    print(f"originals not flagged: {missed or 'none'}")
    print(f"bids-deface outputs flagged (findings): {ours or 'none'}")
    for r in rows:
        if r.get("error"):
            print(f"{r['head']}/{r['version']}/{r['defacer']}: {r['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
