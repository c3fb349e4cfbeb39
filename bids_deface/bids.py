"""The BIDS side of bids-deface: which images to deface, and where their outputs go.

Queries run through pybids over the input dataset; the file names of the outputs follow
BIDS-Derivatives (``…_desc-defaced_<suffix>.nii.gz``, ``…_desc-facialfeatures_dseg.nii.gz``)
or, for the raw layout, the input's own names. Nothing here reads voxel data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version as _dist_version
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

FEATURES: tuple[str, ...] = ("eyes", "nose", "ears")
NIFTI_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")

# Order of entities in a BIDS file name (schema rules.entities).
ENTITY_ORDER: tuple[str, ...] = (
    "sub", "tpl", "ses", "cohort", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc",
    "stain", "rec", "dir", "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi",
    "space", "split", "recording", "chunk", "atlas", "seg", "scale", "res", "den", "label", "desc",
)
# Entities a derivative ``dseg`` may not carry: folded into its ``space`` label instead.
_NOT_IN_DSEG = ("dir", "flip", "inv", "mt", "mod", "proc")

DSEG_TSV = "desc-facialfeatures_dseg.tsv"
DSEG_ROWS = (  # index, name, abbreviation, color: the label contract of bids_deface.features
    (1, "eyes", "EYE", "#1f77b4"),
    (2, "nose", "NOS", "#ff7f0e"),
    (3, "ears", "EAR", "#2ca02c"),
)
CODE_URL = "https://github.com/bids-deface/bids-deface"
BIDS_VERSION = "1.10.0"
# Top-level folders a raw copy never takes from the input: original DICOMs and processed
# images that were never defaced. (Hidden folders, e.g. .git or .heudiconv, are skipped too.)
RAW_COPY_SKIP = ("sourcedata", "derivatives")
BIDSIGNORE = ("logs/", "figures/", "*.html", "group_summary.tsv")


class SelectionError(ValueError):
    """A command-line selection that does not match the dataset (unknown label, bad filter)."""


def package_version() -> str:
    try:
        return _dist_version("bids-deface")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


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


# ---------------------------------------------------------------------------- input queries

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
        import logging

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


# ---------------------------------------------------------------------------- validation

def validator_executable() -> str:
    """``bids-validator-deno`` from this environment (the venv's bin), else from PATH."""
    beside = Path(sys.executable).parent / "bids-validator-deno"
    if beside.exists():
        return str(beside)
    found = shutil.which("bids-validator-deno")
    if not found:
        raise FileNotFoundError("bids-validator-deno not found (pip install bids-validator-deno)")
    return found


def validate_dataset(path: Path, *, ignore_nifti_headers: bool = False) -> list[str]:
    """Run bids-validator-deno on ``path``; one line per error (code, location), [] if valid."""
    cmd = [validator_executable(), str(path), "--format", "json", "--no-color"]
    if ignore_nifti_headers:
        cmd.append("--ignoreNiftiHeaders")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return [f"bids-validator-deno failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"]
    issues = report.get("issues", {}).get("issues", [])
    errors = [i for i in issues if i.get("severity") == "error"]
    lines = []
    for issue in errors:
        sub = f" {issue['subCode']}" if issue.get("subCode") else ""
        lines.append(f"{issue.get('code')}{sub}: {issue.get('location', '')}")
    if not lines and proc.returncode not in (0,):
        lines.append(f"bids-validator-deno exited with {proc.returncode}")
    return lines


# ---------------------------------------------------------------------------- output names

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


def derivative_paths(image: FaceImage) -> OutputPaths:
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


def raw_paths(image: FaceImage) -> OutputPaths:
    """The input's own name; a ``.nii`` input stays ``.nii``. Its sidecar is written only when
    the input has one beside it (inherited sidecars are scrubbed where they are)."""
    rel = PurePosixPath(image.relpath)
    return OutputPaths(
        image=rel.as_posix(),
        sidecar=(rel.parent / (strip_extension(rel.name) + ".json")).as_posix(),
        record=record_path(image),
    )


def record_path(image: FaceImage) -> str:
    return f"logs/images/{image.stem}.json"


def qc_paths(image: FaceImage, qc_dir: Path) -> tuple[Path, Path]:
    """(figures folder, QC result file) of an image under ``qc_dir``: ``sub-<label>/figures/``
    and ``sub-<label>/<stem>_qc.json``; the reports are ``sub-<label>.html`` and ``index.html``."""
    participant = Path(qc_dir) / f"sub-{image.subject}"
    return participant / "figures", participant / f"{image.stem}_qc.json"


# ---------------------------------------------------------------------------- dataset files

def container_info() -> dict | None:
    """The container this process runs in, for ``GeneratedBy.Container`` (None when none).

    Our images set ``BIDS_DEFACE_CONTAINER`` to a JSON object (``{"Type": "docker", "Tag":
    "bids-deface"}``); ``<type>:<tag>`` is read too. Apptainer/Singularity also announce
    themselves in the environment.
    """
    spec = os.environ.get("BIDS_DEFACE_CONTAINER", "").strip()
    info: dict = {}
    if spec.startswith("{"):
        try:
            info = {k: v for k, v in json.loads(spec).items() if k in ("Type", "Tag", "URI")}
        except (json.JSONDecodeError, AttributeError):
            info = {}
    elif spec:
        kind, _, tag = spec.partition(":")
        info = {"Type": kind or "docker", **({"Tag": tag} if tag else {})}
    for var in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        if os.environ.get(var):
            info["Type"] = "singularity"
            info.setdefault("URI", Path(os.environ[var]).name)
            break
    return info or None


def generated_by() -> dict:
    entry = {
        "Name": "bids-deface",
        "Version": package_version(),
        "CodeURL": CODE_URL,
        "Description": "Eyes, nose and ears detected by a 3D attention-gated U-Net and distorted "
                       "(after Jeong et al., JMIR 2020); identifying metadata removed.",
    }
    container = container_info()
    if container:
        entry["Container"] = container
    return entry


def source_reference(bids_dir: Path, output_dir: Path, source_desc: dict) -> dict:
    """How the output refers to its source dataset: its DOI if it has one, else a relative
    path (an absolute path could name a person's home folder)."""
    ref: dict = {}
    doi = source_desc.get("DatasetDOI")
    if doi:
        ref["DOI"] = doi if doi.startswith("doi:") else f"doi:{doi}"
    ref["URL"] = Path(os.path.relpath(bids_dir.resolve(), output_dir.resolve())).as_posix()
    if source_desc.get("Version") or source_desc.get("DatasetVersion"):
        ref["Version"] = str(source_desc.get("Version") or source_desc.get("DatasetVersion"))
    return ref


def derivative_description(source_desc: dict, source_ref: dict) -> dict:
    """``dataset_description.json`` of the derivative dataset."""
    desc = {
        "Name": f"bids-deface: {source_desc.get('Name', 'defaced dataset')}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by()],
        "SourceDatasets": [source_ref],
        "DatasetLinks": {"raw": source_ref.get("DOI", source_ref["URL"])},
    }
    if source_desc.get("License"):
        desc["License"] = source_desc["License"]
    return desc


def raw_description(source_desc: dict) -> dict:
    """The input's ``dataset_description.json`` with our ``GeneratedBy`` entry appended."""
    desc = dict(source_desc)
    # Said explicitly: with GeneratedBy and no DatasetType, validators take it for a derivative.
    desc.setdefault("DatasetType", "raw")
    previous = [g for g in desc.get("GeneratedBy", []) if g.get("Name") != "bids-deface"]
    desc["GeneratedBy"] = previous + [generated_by()]
    return desc


def dseg_tsv() -> str:
    lines = ["index\tname\tabbreviation\tcolor"]
    lines += [f"{i}\t{name}\t{abbr}\t{color}" for i, name, abbr, color in DSEG_ROWS]
    return "\n".join(lines) + "\n"


def derivative_readme(source_name: str) -> str:
    return (
        f"# bids-deface outputs for {source_name}\n\n"
        "Each face-bearing anatomical image of the source dataset, defaced: the eyes, nose and\n"
        "ears found by bids-deface's detector are distorted (`*_desc-defaced_<suffix>.nii.gz`),\n"
        "everything else is left unchanged voxel for voxel. The detected features are in\n"
        "`*_desc-facialfeatures_dseg.nii.gz` (labels in `desc-facialfeatures_dseg.tsv`).\n"
        "Sidecars carry the source's metadata without identifying keys, and the provenance of\n"
        "the defacing (`BidsDeface`). `logs/` holds the command lines and per-image records.\n"
    )


def merged_bidsignore(existing: str | None) -> str:
    lines = [line for line in (existing or "").splitlines()]
    for entry in BIDSIGNORE:
        if entry not in lines:
            lines.append(entry)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- sidecars and records

def provenance(*, source_relpath: str, features, seed: int, model_sha256: str, voxel_counts: dict,
               confidence: dict, components: dict, warnings, removed_keys, cleared_fields, qc=None) -> dict:
    """What was done to one image: names and numbers only, never a metadata value."""
    prov = {
        "Version": package_version(),
        "ModelSHA256": model_sha256,
        "Features": list(features),
        "VoxelCounts": {f: int(voxel_counts.get(f, 0)) for f in features},
        "DetectorConfidence": {k: round(float(v), 4) for k, v in sorted(confidence.items())},
        "DetectedComponents": {k: int(v) for k, v in sorted(components.items())},
        "Warnings": list(warnings),
        "Seed": int(seed),
        "ScrubbedSidecarKeys": sorted(removed_keys),
        "ClearedNiftiFields": sorted(cleared_fields),
    }
    if qc is not None:  # the verdicts of bids_deface.qc.run_qc
        prov["QC"] = {
            "FaceDetectedAfter": qc.get("face_detected_after"),
            "FaceDetectedBefore": qc.get("face_detected_before"),
            "BrainVoxelsChanged": qc.get("brain_voxels_changed"),
            "Failures": list(qc.get("failures", [])),
            "Flags": list(qc.get("flags", [])),
        }
    return prov


def defaced_sidecar(metadata: dict, source_relpath: str, prov: dict) -> dict:
    """Sidecar of ``…_desc-defaced_<suffix>.nii.gz``: scrubbed source metadata + provenance."""
    sidecar = dict(metadata)
    sidecar.update({
        "Description": "Defaced by bids-deface: " + ", ".join(prov["Features"]) + " distorted.",
        "Sources": [bids_uri(source_relpath)],
        "SkullStripped": False,
        "BidsDeface": prov,
    })
    return sidecar


def dseg_sidecar(source_relpath: str, prov: dict) -> dict:
    return {
        "Description": "Eyes, nose and ears found by the bids-deface detector "
                       "(labels in desc-facialfeatures_dseg.tsv).",
        "Sources": [bids_uri(source_relpath)],
        "SpatialReference": bids_uri(source_relpath),
        "Manual": False,
        "BidsDeface": {k: prov[k] for k in ("Version", "ModelSHA256", "DetectorConfidence", "DetectedComponents")},
    }


def image_record(*, source_relpath: str, status: str, outputs: dict | None = None, prov: dict | None = None,
                 error: str | None = None) -> dict:
    """The per-image record in ``logs/images/`` that the group level summarises."""
    record = {"Source": source_relpath, "Status": status, "Outputs": outputs or {}}
    if prov is not None:
        record["Provenance"] = prov
    if error:
        record["Error"] = error
    return record


# ---------------------------------------------------------------------------- writing outputs

def _temporary(path: Path) -> Path:
    """A hidden name beside ``path`` with the same extension (nibabel picks gzip by it)."""
    ext = next((e for e in (".nii.gz", ".nii", ".json", ".tsv") if path.name.endswith(e)), "")
    return path.with_name(f".{path.name[: len(path.name) - len(ext)]}.{uuid.uuid4().hex[:8]}.part{ext}")


def write_atomic(path: Path, write) -> None:
    """Run ``write(tmp)`` then rename ``tmp`` to ``path``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def write_derivative_dataset(bids_dir: Path, output_dir: Path, source_desc: dict) -> None:
    """The dataset-level files of the derivative layout (idempotent)."""
    ref = source_reference(bids_dir, output_dir, source_desc)
    write_json_atomic(output_dir / "dataset_description.json", derivative_description(source_desc, ref))
    write_text_atomic(output_dir / "README.md", derivative_readme(source_desc.get("Name", bids_dir.name)))
    write_text_atomic(output_dir / DSEG_TSV, dseg_tsv())
    ignore = output_dir / ".bidsignore"
    write_text_atomic(ignore, merged_bidsignore(ignore.read_text() if ignore.exists() else None))


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
        import logging

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
