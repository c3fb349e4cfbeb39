"""The peers the benchmarks measure bids-deface against, installed on first use into the cache (never
into the project's environment: deepbet ships a top-level ``data/`` folder that would shadow others).

- quickshear 1.2.0 with a deepbet 1.0.2 brain mask: the fastest defacer runnable here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools.heads import cache_dir

PEERS = ("deepbet==1.0.2", "quickshear==1.2.0", "connected-components-3d==4.1.1", "fill_voids==2.1.2",
         "fastremap==1.21.0")
QUICKSHEAR = ("import sys, nibabel as nib; from deepbet.bet import BrainExtraction; from quickshear import quickshear;"
              "img = nib.load(sys.argv[1]); _, mask, _ = BrainExtraction(no_gpu=True).run(img);"
              "nib.save(quickshear(img, mask), sys.argv[2])")


def peer_site() -> Path:
    site = cache_dir() / "peers" / "deepbet-1.0.2"
    if not (site / "quickshear.py").is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), *PEERS],
                       check=True)
    return site


def quickshear_command(path: Path, out: Path) -> list[str]:
    """The command that defaces ``path`` into ``out`` with quickshear and a deepbet mask, as a process
    of its own (start-up included, as a curator would run it); run it with :func:`peer_env`."""
    return [sys.executable, "-W", "ignore", "-c", QUICKSHEAR, str(path), str(out)]


def peer_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(peer_site()))


def deface_quickshear(path: Path, out: Path) -> None:
    subprocess.run(quickshear_command(path, out), check=True, env=peer_env(), capture_output=True)
