"""Header-only DICOM de-identification throughput: bids-deface vs dicognito, one run.

Both tools get the same files (heudiconv's, dicognito's and pydicom's test data,
repeated ``--repeat`` times) and do the same work per file: read with pydicom,
de-identify the header, write a DICOM file. Files either tool rejects are left
out for both. Prints files per second for each and the ratio.

dicognito is needed for this script only, not for the package or its tests:
    .venv/bin/pip install dicognito==0.19.0
Run:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dicom.py [--repeat 5]
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

KEY = "benchmark-key-0001"


def corpus() -> list[Path]:
    roots = [testdata.heudiconv_data(), testdata.dicognito_tests() / "orig_data",
             testdata.pydicom_test_file("CT_small.dcm").parent]
    return sorted(p for r in roots for p in r.rglob("*") if p.is_file() and not p.suffix == ".py")


def ours(path: Path, keyed: Keyed) -> bytes:
    ds = read_dicom(path)
    deidentify(ds, keyed, ProfileOptions())
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
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


def rate(fn, files, arg, repeat) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        for p in files:
            fn(p, arg)
    return repeat * len(files) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
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
    r_theirs = rate(theirs, files, anonymizer, args.repeat)
    r_ours = rate(ours, files, keyed, args.repeat)
    r_theirs = max(r_theirs, rate(theirs, files, anonymizer, args.repeat))
    r_ours = max(r_ours, rate(ours, files, keyed, args.repeat))
    print(f"files: {len(files)} ({size:.1f} MB) x {args.repeat}")
    print(f"dicognito 0.19.0 : {r_theirs:8.1f} files/s")
    print(f"bids-deface      : {r_ours:8.1f} files/s  (ratio {r_ours / r_theirs:.2f}x)")
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


if __name__ == "__main__":
    main()
