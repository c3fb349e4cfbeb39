"""Where the DICOM door may write, checked before anything is created; the curator's map.

The input is read-only to us: an output folder inside the input (or the input inside
the output, or the two the same) is refused before any folder exists. The map file
links each keyed token of the log to the input's own path, so it belongs to the
curator: it may lie neither in the output (which is shared) nor in the input.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path


def _real(path: Path) -> Path:
    return Path(os.path.realpath(Path(path).absolute()))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_folders(in_dir: Path, out_dir: Path, map_file: Path | None = None) -> None:
    """Raise ValueError (or NotADirectoryError) when the folders are not safe to use."""
    if not Path(in_dir).is_dir():
        raise NotADirectoryError(f"{in_dir}: input is not a folder")
    src, dst = _real(in_dir), _real(out_dir)
    if _inside(dst, src):
        raise ValueError(f"{out_dir}: output folder must not be inside the input folder")
    if _inside(src, dst):
        raise ValueError(f"{out_dir}: output folder must not contain the input folder")
    if map_file is not None:
        where = _real(map_file)
        if _inside(where, dst):
            raise ValueError(f"{map_file}: the map file names input files: keep it out of the output folder")
        if _inside(where, src):
            raise ValueError(f"{map_file}: the map file must not be written into the input folder")


def write_map(path: Path, fields: tuple[str, ...], rows: list[tuple]) -> None:
    """Write the curator's map (TSV, readable by its owner only), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".map-", suffix=".tsv")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
            writer.writerow(fields)
            writer.writerows(rows)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
