"""BIDS file names: parsing, building, and where each output of one image goes.

Derivative names follow BIDS-Derivatives (``…_desc-defaced_<suffix>.nii.gz``,
``…_space-<suffix>_desc-facialfeatures_dseg.nii.gz``); the raw layout keeps the input's names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

NIFTI_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")

# Order of entities in a BIDS file name (schema rules.entities).
ENTITY_ORDER: tuple[str, ...] = (
    "sub", "tpl", "ses", "cohort", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc",
    "stain", "rec", "dir", "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi",
    "space", "split", "recording", "chunk", "atlas", "seg", "scale", "res", "den", "label", "desc",
)
# Entities a derivative ``dseg`` may not carry: folded into its ``space`` label instead.
_NOT_IN_DSEG = ("dir", "flip", "inv", "mt", "mod", "proc")


def strip_extension(name: str) -> str:
    for ext in NIFTI_EXTENSIONS + (".json",):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def strip_prefix(label: str, prefix: str) -> str:
    """``sub-01`` or ``01`` → ``01``."""
    return label[len(prefix) + 1:] if label.startswith(prefix + "-") else label


def bids_uri(relpath: str, dataset: str = "raw") -> str:
    """A BIDS URI naming a file of the source dataset (``bids:raw:sub-01/anat/…``)."""
    return f"bids:{dataset}:{relpath}"



def parse_name(name: str) -> tuple[list[tuple[str, str]], str, str]:
    """``sub-01_ses-a_T1w.nii.gz`` → ([("sub","01"), ("ses","a")], "T1w", ".nii.gz")."""
    ext = next((e for e in NIFTI_EXTENSIONS + (".json",) if name.endswith(e)), "")
    parts = name[: len(name) - len(ext)].split("_")
    pairs = [tuple(p.split("-", 1)) for p in parts[:-1]]
    if not all(len(p) == 2 for p in pairs):
        raise ValueError(f"{name}: not a BIDS file name")
    return [(k, v) for k, v in pairs], parts[-1], ext


def build_name(pairs, suffix: str, ext: str) -> str:
    order = {key: i for i, key in enumerate(ENTITY_ORDER)}
    pairs = sorted(pairs, key=lambda kv: order.get(kv[0], len(order)))
    return "_".join([f"{k}-{v}" for k, v in pairs] + [suffix]) + ext


@dataclass(frozen=True)
class OutputPaths:
    """Where one defaced image and its companions go (relative to output_dir)."""

    image: str
    sidecar: str
    dseg: str | None = None  # derivative layout only
    dseg_sidecar: str | None = None
    record: str = ""  # per-image status record for the group level


def derivative_paths(image) -> OutputPaths:
    """``…_desc-defaced_<suffix>.nii.gz`` (+ .json) and ``…_space-<suffix>_desc-facialfeatures_dseg.nii.gz``.

    The dseg lives on the source image's grid, which ``space-<label>`` names (as fMRIPrep's
    ``space-T1w``); entities a dseg may not carry (``inv``, ``flip``, ``mt`` …) are folded into
    that label so that every source keeps its own dseg.
    """
    rel = PurePosixPath(image.relpath)
    pairs, suffix, _ = parse_name(rel.name)
    pairs = [(k, v) for k, v in pairs if k != "desc"]
    defaced = build_name(pairs + [("desc", "defaced")], suffix, ".nii.gz")
    kept = [(k, v) for k, v in pairs if k not in _NOT_IN_DSEG]
    space = suffix + "".join(f"{k}{v}" for k, v in pairs if k in _NOT_IN_DSEG)
    space = re.sub(r"[^A-Za-z0-9]", "", space)
    dseg = build_name(kept + [("space", space), ("desc", "facialfeatures")], "dseg", ".nii.gz")
    folder = rel.parent
    return OutputPaths(
        image=(folder / defaced).as_posix(),
        sidecar=(folder / (strip_extension(defaced) + ".json")).as_posix(),
        dseg=(folder / dseg).as_posix(),
        dseg_sidecar=(folder / (strip_extension(dseg) + ".json")).as_posix(),
        record=record_path(image),
    )


def raw_paths(image) -> OutputPaths:
    """The input's own name; a ``.nii`` input stays ``.nii``. Its sidecar is written only when
    the input has one beside it (inherited sidecars are scrubbed where they are)."""
    rel = PurePosixPath(image.relpath)
    return OutputPaths(
        image=rel.as_posix(),
        sidecar=(rel.parent / (strip_extension(rel.name) + ".json")).as_posix(),
        record=record_path(image),
    )


def record_path(image) -> str:
    return f"logs/images/{image.stem}.json"


def qc_paths(image, qc_dir: Path) -> tuple[Path, Path]:
    """(figures folder, QC result file) of an image under ``qc_dir``: ``sub-<label>/figures/``
    and ``sub-<label>/<stem>_qc.json``; the reports are ``sub-<label>.html`` and ``index.html``."""
    participant = Path(qc_dir) / f"sub-{image.subject}"
    return participant / "figures", participant / f"{image.stem}_qc.json"


