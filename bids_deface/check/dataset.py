"""Which files of a dataset the privacy check reads, and what it makes of each.

Every file under the dataset's root is looked at (links followed, as in DataLad datasets),
except hidden files and folders (version control, converter state). With a participant
selection, the other participants' folders are left out; the files at the top are always read.
Raw and derivative datasets alike: nothing here depends on the dataset's type.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bids_deface.check.findings import FileResult, Finding
from bids_deface.check.metadata import metadata_kind
from bids_deface.dataset.naming import NIFTI_EXTENSIONS, strip_prefix


@dataclass(frozen=True)
class DatasetFile:
    path: Path
    relpath: str
    kind: str  # image, dicom, or a metadata kind (sidecar, table, text …)


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".ima"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def dataset_files(root: Path, participants=None) -> list[DatasetFile]:
    """The files of the dataset at ``root`` to check, sorted by path."""
    wanted = {strip_prefix(p, "sub") for p in participants} if participants else None
    out = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        rel_folder = PurePosixPath(Path(folder).relative_to(root).as_posix())
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (
            wanted is not None and d.startswith("sub-") and strip_prefix(d, "sub") not in wanted))
        for name in sorted(files):
            if name.startswith("."):
                continue
            rel = name if str(rel_folder) == "." else (rel_folder / name).as_posix()
            path = Path(folder) / name
            if name.endswith(NIFTI_EXTENSIONS):
                kind = "image"
            elif _is_dicom(path):
                kind = "dicom"
            else:
                kind = metadata_kind(rel)
            if kind is not None:
                out.append(DatasetFile(path, rel, kind))
    return sorted(out, key=lambda f: f.relpath)


def dicom_result(file: DatasetFile) -> FileResult:
    """A DICOM file is never shareable as it is: its header names the patient."""
    return FileResult(file.relpath, "dicom", [Finding(
        file.relpath, "dicom", "", "a DICOM file (patient header, un-defaced pixels); "
                                   "de-identify it with bids-deface dicom, or leave it out")])


def participant_labels(root: Path) -> set[str]:
    return {strip_prefix(p.name, "sub") for p in Path(root).glob("sub-*") if p.is_dir()}
