"""The user's cache folder of bids-deface: what may be kept between runs (never identifying data of
the input's participants unless a module says so and keeps it private)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$BIDS_DEFACE_CACHE``, else ``$XDG_CACHE_HOME/bids-deface``, else ``~/.cache/bids-deface``."""
    if os.environ.get("BIDS_DEFACE_CACHE"):
        return Path(os.environ["BIDS_DEFACE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bids-deface"
