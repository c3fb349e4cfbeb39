"""Facial-feature detection: the label contract shared by the whole package, defined once here.

A feature label image is uint8 on the input image's own grid:
0 background, 1 eyes, 2 nose, 3 ears, 4 mouth (optional, off by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class Feature:
    """One facial feature: its label value, how many separate parts a normal head shows, and how
    the outputs name and colour it (``dseg.tsv``, QC overlays)."""

    name: str
    value: int
    expected_components: int
    abbreviation: str
    colour: str  # hex RGB


FEATURE_TABLE: tuple[Feature, ...] = (
    Feature("eyes", 1, 2, "EYE", "#ff3c3c"),
    Feature("nose", 2, 1, "NOS", "#3cdc3c"),
    Feature("ears", 3, 2, "EAR", "#4682ff"),
)
LABELS: dict[str, int] = {f.name: f.value for f in FEATURE_TABLE}
FEATURES: tuple[str, ...] = tuple(LABELS)
EXPECTED_COMPONENTS: dict[str, int] = {f.name: f.expected_components for f in FEATURE_TABLE}

DSEG_TSV = "desc-facialfeatures_dseg.tsv"


def colour_rgb(name: str) -> tuple[int, int, int]:
    """A feature's colour as an (r, g, b) tuple of 0-255 integers."""
    hexa = next(f.colour for f in FEATURE_TABLE if f.name == name).lstrip("#")
    return tuple(int(hexa[i:i + 2], 16) for i in (0, 2, 4))


def dseg_tsv() -> str:
    """The BIDS ``dseg.tsv`` that names the label values."""
    lines = ["index\tname\tabbreviation\tcolor"]
    lines += [f"{f.value}\t{f.name}\t{f.abbreviation}\t{f.colour}" for f in FEATURE_TABLE]
    return "\n".join(lines) + "\n"


WEIGHTS_FILE = "facialfeatures_unet.pt"


def shipped_weights() -> Path:
    """The detector weights that ship in the package (found without importing torch)."""
    return Path(str(resources.files("bids_deface") / "data" / WEIGHTS_FILE))
