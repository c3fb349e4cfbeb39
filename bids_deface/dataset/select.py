"""Which images to deface: pybids queries over the input dataset (nothing here reads voxels)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from bids_deface.dataset.naming import NIFTI_EXTENSIONS, strip_extension, strip_prefix

from pathlib import Path, PurePosixPath

# Every anatomical suffix of the BIDS schema (1.11) whose images can show a face: the
# non-parametric and parametric anatomical images, multi-echo/flip/inversion/MT series.
# Only ``defacemask`` is left out. Images of other datatypes (func, dwi, fmap) are not
# defaced: their faces are blurred beyond recognition by their resolution and distortion.
FACE_SUFFIXES: tuple[str, ...] = (
    "T1w", "T2w", "PDw", "T2starw", "FLAIR", "inplaneT1", "inplaneT2", "PDT2", "angio",
    "T2star", "FLASH", "PD",
    "UNIT1", "T1map", "T2map", "T2starmap", "R1map", "R2map", "R2starmap", "PDmap", "MTRmap",
    "MTsat", "T1rho", "MWFmap", "MTVmap", "Chimap", "S0map", "M0map",
    "MEGRE", "MESE", "VFA", "IRT1", "MP2RAGE", "MPM", "MTS", "MTR",
)



class SelectionError(ValueError):
    """A command-line selection that does not match the dataset (unknown label, bad filter)."""



@dataclass(frozen=True)
class FaceImage:
    """One face-bearing image of the input dataset."""

    path: Path  # absolute path in bids_dir (may be a symlink, e.g. git-annex)
    relpath: str  # POSIX path relative to bids_dir, e.g. sub-01/anat/sub-01_T1w.nii.gz
    entities: dict = field(default_factory=dict, hash=False)  # pybids entities (subject, session, suffix …)
    metadata: dict = field(default_factory=dict, hash=False)  # sidecar metadata after inheritance

    @property
    def suffix(self) -> str:
        return self.entities["suffix"]

    @property
    def subject(self) -> str:
        return self.entities["subject"]

    @property
    def session(self) -> str | None:
        return self.entities.get("session")

    @property
    def stem(self) -> str:
        """File name without the NIfTI extension, e.g. ``sub-01_ses-a_T1w``."""
        return strip_extension(PurePosixPath(self.relpath).name)



def load_layout(bids_dir: Path):
    """A pybids layout of ``bids_dir`` (no validation here: bids-validator-deno does that)."""
    from bids import BIDSLayout

    if not (bids_dir / "dataset_description.json").is_file():
        raise SelectionError(f"{bids_dir}: not a BIDS dataset (no dataset_description.json)")
    return BIDSLayout(str(bids_dir), validate=False)


def load_bids_filters(path: Path | None) -> dict[str, dict]:
    """Read a ``--bids-filter-file`` (fMRIPrep's format): ``{"t1w": {"acquisition": "mprage"}}``.

    Keys are suffixes (any case); values are pybids entity filters. ``null`` means the entity
    must be absent and ``"*"`` that it must be present, as in fMRIPrep.
    """
    if path is None:
        return {}
    from bids.layout import Query

    try:
        filters = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SelectionError(f"{path}: cannot read the BIDS filter file ({exc})") from None
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise SelectionError(f"{path}: a BIDS filter file maps suffixes to filters, "
                             '''e.g. {"t1w": {"acquisition": "mprage"}}''')

    def convert(value):
        if value is None:
            return Query.NONE
        if value == "*":
            return Query.ANY
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    return {key.lower(): {k: convert(v) for k, v in flt.items()} for key, flt in filters.items()}


def select_face_images(layout, *, participant_label=None, session_label=None, suffixes=None,
                       bids_filters=None) -> list[FaceImage]:
    """The face-bearing images to deface, sorted by path.

    Parameters
    ----------
    layout : pybids ``BIDSLayout`` of the input dataset.
    participant_label, session_label : labels with or without ``sub-``/``ses-``; an unknown
        label raises :class:`SelectionError` naming it.
    suffixes : image suffixes to consider (default :data:`FACE_SUFFIXES`).
    bids_filters : output of :func:`load_bids_filters`; a filter keyed by a suffix (any case)
        adds entity constraints for that suffix; other keys are ignored with a warning.
    """
    canonical = {s.lower(): s for s in FACE_SUFFIXES}  # --suffix t1w means T1w
    suffixes = [canonical.get(s.lower(), s) for s in (suffixes or FACE_SUFFIXES)]
    bids_filters = bids_filters or {}
    base: dict = {"extension": list(NIFTI_EXTENSIONS)}
    if participant_label:
        wanted = [strip_prefix(label, "sub") for label in participant_label]
        known = set(layout.get_subjects())
        missing = [label for label in wanted if label not in known]
        if missing:
            raise SelectionError(
                "participant label(s) not found in the dataset: " + ", ".join(missing)
                + f" (it has: {', '.join(sorted(known)) or 'none'})")
        base["subject"] = wanted
    if session_label:
        wanted = [strip_prefix(label, "ses") for label in session_label]
        known = set(layout.get_sessions(**({"subject": base["subject"]} if "subject" in base else {})))
        missing = [label for label in wanted if label not in known]
        if missing:
            raise SelectionError("session label(s) not found for the selected participants: " + ", ".join(missing))
        base["session"] = wanted
    unknown = [key for key in bids_filters if key not in {s.lower() for s in suffixes}]
    if unknown:  # e.g. fMRIPrep's "bold" or "fmap" in a filter file made for fMRIPrep
        logging.getLogger("bids_deface").warning(
            "BIDS filter file: ignoring %s (not among the selected suffixes)", ", ".join(unknown))

    images: dict[str, FaceImage] = {}
    for suffix in suffixes:
        query = {**base, "suffix": suffix, **bids_filters.get(suffix.lower(), {})}
        query.setdefault("datatype", "anat")
        for bf in layout.get(return_type="object", **query):
            relpath = PurePosixPath(Path(bf.path).relative_to(layout.root)).as_posix()
            entities = {k: v for k, v in bf.get_entities().items() if k != "extension"}
            images[relpath] = FaceImage(Path(bf.path), relpath, entities, bf.get_metadata() or {})
    return [images[key] for key in sorted(images)]


