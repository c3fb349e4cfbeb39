"""Which images to deface: pybids queries over the input dataset (nothing here reads voxels)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from bids_deface.dataset.filelist import participant_labels
from bids_deface.dataset.naming import NIFTI_EXTENSIONS, strip_extension, strip_prefix

# Every anatomical suffix of the BIDS schema (1.11) whose images can show a face: the
# non-parametric and parametric anatomical images, multi-echo/flip/inversion/MT series.
# Only ``defacemask`` is left out.
FACE_SUFFIXES: tuple[str, ...] = (
    "T1w", "T2w", "PDw", "T2starw", "FLAIR", "inplaneT1", "inplaneT2", "PDT2", "angio",
    "T2star", "FLASH", "PD",
    "UNIT1", "T1map", "T2map", "T2starmap", "R1map", "R2map", "R2starmap", "PDmap", "MTRmap",
    "MTsat", "T1rho", "MWFmap", "MTVmap", "Chimap", "S0map", "M0map",
    "MEGRE", "MESE", "VFA", "IRT1", "MP2RAGE", "MPM", "MTS", "MTR",
)

# Images of other datatypes that can show a face when they are fine enough (the rule of
# bids_deface.dataset.faces): fieldmap magnitudes and phases, EPI references (one volume each).
OTHER_FACE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "fmap": ("magnitude", "magnitude1", "magnitude2", "phasediff", "phase1", "phase2", "fieldmap", "epi"),
    "func": ("sbref",), "dwi": ("sbref",), "perf": ("m0scan",),
}


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



def load_layout(bids_dir: Path, *, participant_label=None, datatypes=None, index_metadata: bool = True,
                database_dir: Path | None = None):
    """A pybids layout of ``bids_dir`` (no validation here: bids-validator-deno does that).

    With ``participant_label``, only those participants' folders are indexed (an unknown label
    raises :class:`SelectionError` naming it); with ``datatypes``, only those datatype folders
    (:func:`selection_datatypes`); ``database_dir`` keeps the index for later runs
    (:mod:`bids_deface.dataset.index`).
    """
    from bids_deface.dataset.index import open_layout

    participants = selected_participants(bids_dir, participant_label)
    return open_layout(bids_dir, participants=participants, datatypes=datatypes,
                       index_metadata=index_metadata, database_dir=database_dir)


def selected_participants(bids_dir: Path, participant_label=None) -> list[str] | None:
    """The selected participants' labels (None: all), checked against the dataset's folders."""
    if not (bids_dir / "dataset_description.json").is_file():
        raise SelectionError(f"{bids_dir}: not a BIDS dataset (no dataset_description.json)")
    if not participant_label:
        return None
    participants = sorted({strip_prefix(label, "sub") for label in participant_label})
    check_participants([strip_prefix(label, "sub") for label in participant_label], participant_labels(bids_dir))
    return participants


def check_participants(wanted: list[str], known) -> None:
    """Raise :class:`SelectionError` naming the labels of ``wanted`` that are not in ``known``."""
    known = sorted(set(known))
    missing = [label for label in wanted if label not in set(known)]
    if missing:
        shown = ", ".join(known) if len(known) <= 12 else \
            ", ".join(known[:5]) + f", …, {known[-1]}: {len(known)} participants"
        raise SelectionError("participant label(s) not found in the dataset: " + ", ".join(missing)
                             + f" (it has: {shown or 'none'})")


def selection_datatypes(bids_filters: dict | None) -> list[str] | None:
    """The datatype folders a selection reads: ``anat``, and those a BIDS filter file asks for
    (None, i.e. all, when a filter asks for any datatype or for none)."""
    wanted = {"anat"}
    for flt in (bids_filters or {}).values():
        if "datatype" not in flt:
            continue
        values = flt["datatype"] if isinstance(flt["datatype"], list) else [flt["datatype"]]
        if not all(isinstance(v, str) for v in values):
            return None
        wanted |= set(values)
    return sorted(wanted)


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


def _queries(base: dict, suffixes: list[str], bids_filters: dict) -> list[dict]:
    """pybids queries for the suffixes: one for all those without a filter (each query costs
    tens of milliseconds, whatever it finds), one for each suffix with its filter."""
    plain = [s for s in suffixes if s.lower() not in bids_filters]
    queries = [{**base, "suffix": plain, "datatype": "anat"}] if plain else []
    for suffix in suffixes:
        if suffix.lower() in bids_filters:
            queries.append({"datatype": "anat", **base, "suffix": suffix, **bids_filters[suffix.lower()]})
    return queries


def select_face_images(layout, *, participant_label=None, session_label=None, suffixes=None,
                       bids_filters=None, metadata: bool = True) -> list[FaceImage]:
    """The face-bearing images to deface, sorted by path.

    Parameters
    ----------
    layout : pybids ``BIDSLayout`` of the input dataset.
    participant_label, session_label : labels with or without ``sub-``/``ses-``; an unknown
        label raises :class:`SelectionError` naming it.
    suffixes : image suffixes to consider (default :data:`FACE_SUFFIXES`).
    bids_filters : output of :func:`load_bids_filters`; a filter keyed by a suffix (any case)
        adds entity constraints for that suffix; other keys are ignored with a warning.
    metadata : read each image's sidecar metadata (the group level needs none).
    """
    canonical = {s.lower(): s for s in FACE_SUFFIXES}  # --suffix t1w means T1w
    explicit_suffixes = bool(suffixes)
    suffixes = [canonical.get(s.lower(), s) for s in (suffixes or FACE_SUFFIXES)]
    bids_filters = bids_filters or {}
    base: dict = {"extension": list(NIFTI_EXTENSIONS)}
    if participant_label:
        wanted = [strip_prefix(label, "sub") for label in participant_label]
        check_participants(wanted, layout.get_subjects())
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
    for query in _queries(base, suffixes, bids_filters):
        for bf in layout.get(return_type="object", **query):
            relpath = PurePosixPath(Path(bf.path).relative_to(layout.root)).as_posix()
            entities = {k: v for k, v in bf.get_entities().items() if k != "extension"}
            images[relpath] = FaceImage(Path(bf.path), relpath, entities,
                                        (bf.get_metadata() or {}) if metadata else {})
    if not explicit_suffixes and not bids_filters:  # the default: every image that can show a face
        subjects = base.get("subject") or layout.get_subjects()
        for image in other_face_images(Path(layout.root), subjects, base.get("session")):
            images.setdefault(image.relpath, image)
    return [images[key] for key in sorted(images)]


def other_face_images(bids_dir: Path, subjects, sessions=None) -> list[FaceImage]:
    """The images outside ``anat`` that can show a face (:data:`OTHER_FACE_SUFFIXES`, one volume,
    fine voxels over a head-sized field of view: ``bids_deface.dataset.faces``), listed from the
    participants' folders and judged by their headers."""
    import nibabel as nib

    from bids_deface.dataset.faces import can_show_face
    from bids_deface.dataset.naming import parse_name

    found = []
    for subject in subjects:
        top = bids_dir / f"sub-{subject}"
        folders = [(None, top)] + [(s.name[4:], s) for s in sorted(top.glob("ses-*")) if s.is_dir()]
        for session, folder in folders:
            if sessions and session not in sessions:
                continue
            for datatype, wanted in OTHER_FACE_SUFFIXES.items():
                for path in sorted((folder / datatype).glob("*.nii*")) if (folder / datatype).is_dir() else []:
                    try:
                        pairs, suffix, _ = parse_name(path.name)
                        header = nib.load(path).header
                    except Exception:  # not a BIDS name, or no readable header: the raw copy's business
                        continue
                    shape = header.get_data_shape()
                    volumes = int(np.prod(shape[3:])) if len(shape) > 3 else 1
                    if suffix not in wanted or volumes != 1 or not can_show_face(
                            path.relative_to(bids_dir).as_posix(), header):
                        continue
                    keys = {"sub": "subject", "ses": "session", "acq": "acquisition", "dir": "direction",
                            "run": "run", "echo": "echo", "part": "part", "task": "task", "rec": "reconstruction"}
                    entities = {keys.get(k, k): v for k, v in pairs} | {"suffix": suffix, "datatype": datatype}
                    relpath = path.relative_to(bids_dir).as_posix()
                    found.append(FaceImage(path, relpath, entities, {}))
    return found




def list_face_images(bids_dir: Path, *, participant_label=None, session_label=None, suffixes=None) -> list[FaceImage]:
    """The images :func:`select_face_images` selects without a BIDS filter file, found by listing
    the ``anat`` folders instead of indexing the dataset (the group level of thousands of
    participants lists them in a second; entities: subject, session, suffix, datatype only)."""
    participants = selected_participants(bids_dir, participant_label) or participant_labels(bids_dir)
    sessions = {strip_prefix(label, "ses") for label in session_label} if session_label else None
    canonical = {s.lower(): s for s in FACE_SUFFIXES}
    wanted = {canonical.get(s.lower(), s) for s in (suffixes or FACE_SUFFIXES)}
    images = []
    for label in participants:
        folders = [(None, bids_dir / f"sub-{label}" / "anat")]
        folders += [(ses.name[4:], ses / "anat") for ses in sorted((bids_dir / f"sub-{label}").glob("ses-*"))]
        for session, folder in folders:
            if (sessions is not None and session not in sessions) or not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                entities = _anat_entities(path.name, label, session)
                if entities and entities["suffix"] in wanted:
                    relpath = path.relative_to(bids_dir).as_posix()
                    images.append(FaceImage(path, relpath, entities))
    return images


def _anat_entities(name: str, subject: str, session: str | None) -> dict | None:
    from bids_deface.dataset.naming import parse_name

    if name.startswith(".") or not name.endswith(NIFTI_EXTENSIONS):
        return None
    try:
        pairs, suffix, _ = parse_name(name)
    except ValueError:
        return None
    found = dict(pairs)
    if found.get("sub") != subject or found.get("ses") != session:
        return None
    entities = {"subject": subject, "suffix": suffix, "datatype": "anat"}
    return entities if session is None else {**entities, "session": session}
