"""The raw layout: a copy of the input dataset with everything but the defaced images themselves."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path, PurePosixPath

from bids_deface.dataset.atomic import write_atomic, write_json_atomic, write_text_atomic
from bids_deface.dataset.description import merged_bidsignore, raw_description
from bids_deface.dataset.naming import NIFTI_EXTENSIONS, parse_name, strip_extension, strip_prefix

# Top-level folders a raw copy never takes from the input: original DICOMs and processed
# images that were never defaced. (Hidden folders, e.g. .git or .heudiconv, are skipped too.)
RAW_COPY_SKIP = ("sourcedata", "derivatives")


def is_face_image(name: str, face_suffixes, folder: str = "") -> bool:
    """Whether a file may show a face and so must never be copied as it is: an image with a
    face-bearing suffix, or any image in an ``anat`` folder (whatever its name says) except a
    defacing mask."""
    if not name.endswith(NIFTI_EXTENSIONS):
        return False
    try:
        suffix = parse_name(name)[1]
    except ValueError:
        suffix = ""
    return suffix in face_suffixes or (PurePosixPath(folder).name == "anat" and suffix != "defacemask")


def copy_raw_dataset(bids_dir: Path, output_dir: Path, source_desc: dict, *, selected, face_suffixes,
                     subjects=None, sessions=None, policy_file=None) -> list[str]:
    """Everything of the raw layout except the defaced images themselves (the workflow writes those).

    Walks ``bids_dir`` (symlinks followed, as in DataLad datasets) and writes into
    ``output_dir``: sidecars (``*.json``) scrubbed of identifying keys, ``scans.tsv``,
    ``sessions.tsv``, ``participants.tsv`` and ``phenotype/*.tsv`` scrubbed by the policy
    (acquisition times shifted alike per participant, or dropped; identifying columns removed), NIfTI headers of the images that
    are not defaced (func, dwi, fmap …) cleared with their voxels unchanged, every other file
    copied. Never copied: face-bearing images, and any other image in an ``anat`` folder but a
    defacing mask (only defaced versions reach the output),
    ``sourcedata/`` (original DICOMs), ``derivatives/``, hidden files and folders (version
    control, converter state), and participants/sessions outside ``subjects``/``sessions``.

    Returns one line per file that could not be written.
    """
    from bids_deface import metadata as md

    policy = md.load_sidecar_policy(policy_file)
    selected_paths = {image.relpath for image in selected}
    left_out: list[str] = []
    problems: list[str] = []
    for root, dirs, files in os.walk(bids_dir, followlinks=True):
        rel_root = PurePosixPath(Path(root).relative_to(bids_dir).as_posix())
        dirs[:] = sorted(d for d in dirs if _copy_dir(rel_root, d, subjects, sessions))

        def relative(name: str) -> str:
            return name if str(rel_root) == "." else (rel_root / name).as_posix()

        # Sidecars of face images that are not defaced in this run go with their images.
        skipped_stems = {strip_extension(n) for n in files
                         if is_face_image(n, face_suffixes, str(rel_root)) and relative(n) not in selected_paths}
        for name in sorted(files):
            rel = relative(name)
            src, dst = Path(root) / name, output_dir / rel
            if name.startswith("."):
                continue
            if is_face_image(name, face_suffixes, str(rel_root)):
                if rel not in selected_paths:
                    left_out.append(rel)
                continue
            if name.endswith(".json") and strip_extension(name) in skipped_stems:
                continue
            if not src.exists():
                problems.append(f"{rel}: broken link, its content is not available (datalad get?)")
                continue
            try:
                _copy_one(src, dst, rel, source_desc, policy, md, bids_dir)
            except Exception as exc:  # one unreadable file must not stop the copy of the others
                problems.append(f"{rel}: could not be copied ({exc})")
    ignore = bids_dir / ".bidsignore"
    write_text_atomic(output_dir / ".bidsignore", merged_bidsignore(ignore.read_text() if ignore.is_file() else None))
    if left_out:
        logging.getLogger("bids_deface").warning(
            "%d face-bearing image(s) not selected were left out of the raw copy, e.g. %s",
            len(left_out), left_out[0])
    return problems


def _copy_dir(rel_root: PurePosixPath, name: str, subjects, sessions) -> bool:
    if name.startswith("."):
        return False
    if str(rel_root) == ".":
        if name in RAW_COPY_SKIP:
            return False
        if subjects is not None and name.startswith("sub-") and strip_prefix(name, "sub") not in subjects:
            return False
    if sessions is not None and name.startswith("ses-") and rel_root.name.startswith("sub-") \
            and strip_prefix(name, "ses") not in sessions:
        return False
    return True


def _participant_tables(bids_dir: Path, rel: str, src: Path) -> list[Path]:
    """The scans/sessions tables of ``rel``'s participant: shifting all of them by one offset
    keeps the intervals between that participant's sessions."""
    subject = rel.split("/")[0]
    if not subject.startswith("sub-"):
        return [src]
    tables = [*(bids_dir / subject).rglob("*_scans.tsv"), *(bids_dir / subject).glob("*_sessions.tsv")]
    return sorted(t for t in tables if t.exists())


def _copy_one(src: Path, dst: Path, rel: str, source_desc: dict, policy, md, bids_dir: Path) -> None:
    name = src.name
    if rel == "dataset_description.json":
        write_json_atomic(dst, raw_description(source_desc))
    elif name.endswith(".json"):
        metadata, _ = md.scrub_sidecar(json.loads(src.read_text()), policy)
        write_json_atomic(dst, metadata)
    elif name.endswith(("_scans.tsv", "_sessions.tsv")) or rel == "participants.tsv" \
            or (rel.startswith("phenotype/") and name.endswith(".tsv")):
        reference = md.earliest_acq_time(_participant_tables(bids_dir, rel, src))
        write_atomic(dst, lambda tmp: md.scrub_scans_tsv(src, policy, tmp, reference=reference))
    elif name.endswith(NIFTI_EXTENSIONS):
        import nibabel as nib

        from bids_deface.images import save_exact

        img, _ = md.scrub_nifti_header(nib.load(src))
        write_atomic(dst, lambda tmp: save_exact(img, tmp))
    else:
        write_atomic(dst, lambda tmp: shutil.copyfile(src, tmp))
