"""The options of every subcommand of ``bids-deface`` (the one parser, ``cli/parser.py``, adds them),
with the value types they are read as: help text for every option."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from bids_deface.dataset.select import FACE_SUFFIXES
from bids_deface.distortion_params import Params
from bids_deface.features import FEATURES

PROG = "bids-deface"
_DEFAULTS = Params()
QC_CHECKS = ("face", "ears")  # bids_deface.qc.CHECKS (not imported here: the parser stays light)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def plugin_args(value: str) -> dict:
    """JSON text, or the path of a JSON file."""
    text = value
    if not value.lstrip().startswith("{") and Path(value).is_file():
        text = Path(value).read_text()
    try:
        args = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON (or a JSON file): {value!r} ({exc.msg})") from None
    if not isinstance(args, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {value!r}")
    return args


def existing_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value}: no such file")
    return path.absolute()


# ---------------------------------------------------------------------------- subcommands

def _bids_app_positionals(p: argparse.ArgumentParser) -> None:
    p.add_argument("bids_dir", type=Path, help="the input BIDS dataset (never written)")
    p.add_argument("output_dir", type=Path, help="where outputs go (must not be inside bids_dir)")


def _selection(p: argparse.ArgumentParser) -> None:
    sel = p.add_argument_group("which images")
    sel.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                     help="participants to process (with or without sub-); default: all")
    sel.add_argument("--session-label", "--session_label", nargs="+", metavar="LABEL",
                     help="sessions to process (with or without ses-); default: all")
    sel.add_argument("--suffix", nargs="+", metavar="SUFFIX",
                     help="image suffixes to deface; default: every anatomical suffix that can show a "
                          f"face ({', '.join(FACE_SUFFIXES)})")
    sel.add_argument("--bids-filter-file", type=existing_file, metavar="FILE",
                     help='JSON filters per suffix, as in fMRIPrep: {"t1w": {"acquisition": "mprage"}}; '
                          'null: entity absent, "*": entity present')
    sel.add_argument("--skip-bids-validation", action="store_true",
                     help="do not validate the input with bids-validator-deno")
    sel.add_argument("--bids-database-dir", type=Path, metavar="DIR",
                     help="keep the pybids index of the selected participants in DIR and reuse it while "
                          "their files are unchanged (as fMRIPrep); private: it holds the input's metadata")
    sel.add_argument("--qc-dir", type=Path, metavar="DIR",
                     help="participant: run quality control (3D renders before/after, face detectors, "
                          "brain-voxel check) and write its figures and reports to DIR; group: write the "
                          "QC index there. DIR must lie outside output_dir and bids_dir: the figures show "
                          "the original face")


def _vault_options(p: argparse.ArgumentParser) -> None:
    v = p.add_argument_group("vault (what was removed, encrypted for the data owner; see bids-deface restore)")
    v.add_argument("--vault-dir", type=Path, metavar="DIR",
                   help="write an encrypted vault entry per defaced, scrubbed or renamed file to DIR, from "
                        "which 'bids-deface restore' rebuilds the originals exactly; DIR must lie outside the "
                        "input and output folders (needs --vault-recipient)")
    v.add_argument("--vault-recipient", action="extend", nargs="+", metavar="PUBLIC_KEY.pem",
                   help="a public key (RSA >= 3072 bits or X25519, PEM) or X.509 certificate whose private key "
                        "may open the vault; repeat for several recipients ('bids-deface keygen' writes one)")


def _command(sub, name: str, summary: str, description: str, usage: str | None = None) -> argparse.ArgumentParser:
    """The subcommand's parser: ``summary`` in the command list, ``description`` in its help."""
    return sub.add_parser(name, prog=f"{PROG} {usage or name}", help=summary, description=description)


def _prose(text: str) -> str:
    """A help text written as a paragraph in the source: one line, single spaces."""
    return " ".join(text.split())


def _paths(p: argparse.ArgumentParser, *folders: tuple[str, str, str | None]) -> None:
    """Positional paths: (name, help, metavar or None)."""
    for dest, text, metavar in folders:
        p.add_argument(dest, type=Path, help=text, **({"metavar": metavar} if metavar else {}))


def _verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more messages (-vv: nipype's too)")


def _participant(sub) -> None:
    p = _command(sub, "participant", "deface every face-bearing image", _prose("""
    Deface every face-bearing image of BIDS_DIR: find the eyes, nose and ears with a 3D U-Net and
    distort only those; remove identifying metadata.
    """), usage="BIDS_DIR OUTPUT_DIR participant")
    _bids_app_positionals(p)
    _selection(p)
    p.add_argument_group("validation").add_argument(
        "--validation-cache", type=Path, metavar="DIR",
        help="where validation results are kept, keyed by the files they cover, so that unchanged files "
             "are validated once (default: ~/.cache/bids-deface/validation, or $BIDS_DEFACE_CACHE/validation)")
    dfc = p.add_argument_group("defacing")
    dfc.add_argument("--reference-suffix", default="T1w", metavar="SUFFIX",
                     help="each session's reference image, whose features are carried onto every other "
                          "image of the session (default T1w; without one, the best detected image)")
    dfc.add_argument("--features", nargs="+", choices=FEATURES, default=list(FEATURES),
                     help="facial features to distort (default: eyes nose ears)")
    dfc.add_argument("--allow-partial", action="store_true",
                     help="deface an image even when a selected feature is missing, doubled or implausible, "
                          "distorting what was found (recorded in the provenance sidecar); by default such an "
                          "image fails. Refused images (not a head, wrong orientation header, detector and "
                          "template disagreeing) fail either way")
    dfc.add_argument("--seed", type=int, default=0,
                     help="seed of the ear noise; the same seed gives the same output (default 0)")
    dfc.add_argument("--eye-margin-mm", type=float, dest="eye_box_margin_mm", metavar="MM",
                     help=f"periocular margin around each eye's footprint, mm (default {_DEFAULTS.eye_box_margin_mm:g}; "
                          "the paper's: 10)")
    dfc.add_argument("--eye-band-vox", type=int, dest="eye_surface_band_vox", metavar="N",
                     help=f"voxels of skin beneath the new face surface (default {_DEFAULTS.eye_surface_band_vox}; "
                          "the paper's band: 2)")
    dfc.add_argument("--nose-box-scale", type=float, dest="nose_box_scale", metavar="FACTOR",
                     help=f"the nose's window reaches its half-extent times this, minus one, beyond the nose "
                          f"(default {_DEFAULTS.nose_box_scale:g}, which also planes the upper lip; the paper's: 2)")
    dfc.add_argument("--metadata-policy", type=existing_file, metavar="FILE",
                     help="a metadata policy (JSON) that extends or overrides the shipped one")
    dfc.add_argument("--hash-key-file", type=existing_file, metavar="FILE", help="secret key (>= 16 bytes) of the "
                     "policy's 'hash' method and stable 'replace' surrogates (default: $BIDS_DEFACE_HASH_KEY)")
    p.add_argument_group("quality control (with --qc-dir)").add_argument(
        "--qc-override", nargs="+", choices=QC_CHECKS, metavar="CHECK",
        help="write images on which QC still finds a face (face) or an ear (ears) after defacing, instead of "
             "refusing them; the override is recorded in each image's sidecar and record. Look at the QC "
             "report before you share such an image")

    out = p.add_argument_group("outputs")
    out.add_argument("--labels-dir", type=Path, metavar="DIR",
                     help="also write the detected feature labels (..._desc-facialfeatures_dseg.nii.gz) to DIR, which "
                          "must lie outside output_dir and bids_dir: they outline the ears and the nose, which "
                          "identify a person (by default they are written nowhere)")
    out.add_argument("--output-layout", choices=["derivative", "raw"], default="derivative",
                     help="derivative (default): a BIDS derivative dataset with desc-defaced images, "
                          "feature labels and provenance; raw: a complete copy of the input dataset "
                          "with every face-bearing image defaced under its own name, ready to upload")
    out.add_argument("--relabel-participants", type=existing_file, metavar="KEY_FILE_OR_MAPPING", help="raw layout: "
                     "rename sub-/ses- labels everywhere (folders, names, TSVs, IntendedFor): a key file (>= 16 bytes) "
                     "gives keyed pseudonyms, a TSV of 'sub-01<TAB>sub-P001' rows your own")
    out.add_argument("--relabel-map-file", type=Path, metavar="FILE",
                     help="write the old-to-new label mapping here (private: outside bids_dir and output_dir)")

    _vault_options(p)
    _execution(p)


def _execution(p: argparse.ArgumentParser) -> None:
    """Where and how a run works (the participant level)."""
    run = p.add_argument_group("execution")
    run.add_argument("-w", "--work-dir", type=Path, metavar="DIR",
                     help="working directory, private (0700): what the run put there is removed at the end, "
                          "after failures too, unless --keep-work (default: a new temporary directory)")
    run.add_argument("--keep-work", action="store_true",
                     help="keep the working directory (it holds un-defaced intermediate images)")
    run.add_argument("--nprocs", "--nthreads", "--n_cpus", type=positive_int, default=cpu_count(), metavar="N",
                     help="processes to run in parallel (default: all available CPUs)")
    run.add_argument("--omp-nthreads", type=positive_int, metavar="N",
                     help="threads per detection (default: nprocs divided among the images)")
    run.add_argument("--plugin", default="MultiProc",
                     help="nipype execution plugin: MultiProc (default), Linear, SLURM, SGE, PBS, ...")
    run.add_argument("--plugin-args", type=plugin_args, default={}, metavar="JSON",
                     help='plugin arguments as JSON text or a JSON file, e.g. \'{"sbatch_args": "--mem=4G"}\'')
    _verbosity(run)


def _group(sub) -> None:
    p = _command(sub, "group", "summarise every image (TSV and HTML)", _prose("""
    Summarise the participant level's results in OUTPUT_DIR: one row per image (TSV and HTML).
    """), usage="BIDS_DIR OUTPUT_DIR group")
    _bids_app_positionals(p)
    _selection(p)
    _verbosity(p)


def _dicom(sub) -> None:
    p = _command(sub, "dicom", "de-identify and deface a folder of DICOM files", _prose("""
    De-identify DICOM headers to PS3.15 Annex E and deface the pixels of head MR/CT series (eyes,
    nose, ears), writing a mirrored tree with neutral names.
    """))
    _paths(p, ("in_dir", "folder of DICOM files (searched recursively; never written)", None),
           ("out_dir", "output folder (created; must not be inside IN_DIR nor contain it)", None))
    key = p.add_mutually_exclusive_group()
    key.add_argument("--key", help="secret key for UIDs, pseudonyms and date shifts (or set "
                                   "$BIDS_DEFACE_DICOM_KEY); keep it to re-run consistently")
    key.add_argument("--key-file", type=Path, metavar="FILE", help="file whose content is the secret key")
    p.add_argument("--pseudonyms", type=Path, metavar="FILE",
                   help="two-column file: PatientID<TAB>pseudonym (default: keyed hash)")
    g = p.add_argument_group("PS3.15 Annex E options")
    g.add_argument("--retain-modified-dates", action="store_true",
                   help="Retain Longitudinal Temporal Information with Modified Dates "
                        "(dates shifted per patient under the key)")
    g.add_argument("--retain-patient-characteristics", action="store_true",
                   help="Retain Patient Characteristics (sex, age, size, weight)")
    g.add_argument("--retain-device-identity", action="store_true",
                   help="Retain Device Identity (station name, device serial number)")
    g.add_argument("--retain-institution-identity", action="store_true",
                   help="Retain Institution Identity (institution name and address)")
    g.add_argument("--clean-descriptors", action="store_true",
                   help="keep descriptions, with the data set's identifying words and dates removed")
    g.add_argument("--retain-safe-private", action="store_true",
                   help="keep the private attributes listed as safe (otherwise all are removed)")
    p.add_argument("--map-file", type=Path, metavar="FILE",
                   help="write the curator's map (token -> input path) here; the log names files by "
                        "position and token only. Keep it private: never inside OUT_DIR or IN_DIR")
    p.add_argument("--no-deface", action="store_true", help="de-identify headers only")
    p.add_argument("--allow-partial", action="store_true",
                   help="deface a head series even when a feature is missing, doubled or implausible, distorting "
                        "what was found (noted in the log); by default such a series is withheld whole. Series "
                        "that are not a head, disagree with their orientation, or where detector and template "
                        "disagree are withheld either way")
    p.add_argument("--accept-burned-in", action="store_true",
                   help="process files marked Burned In Annotation YES (refused by default)")
    _vault_options(p)
    _verbosity(p)


def _keygen(sub) -> None:
    p = _command(sub, "keygen", "write a key pair for the vault", _prose("""
    Write a key pair for the vault: OUT_PREFIX.key.pem (private, encrypted under a passphrase read
    from $BIDS_DEFACE_KEY_PASSPHRASE or the terminal; mode 0600), OUT_PREFIX.pub.pem (public: give
    it to whoever runs bids-deface) and, for RSA, OUT_PREFIX.cert.pem (a self-signed certificate:
    the DICOM door's recipient). Existing files are never overwritten.
    """))
    _paths(p, ("out_prefix", "path and name of the key files, without extension", "OUT_PREFIX"))
    p.add_argument("--type", choices=["rsa", "x25519"], default="rsa", dest="key_type",
                   help="rsa (default; RSA-OAEP-SHA-256, and CMS for DICOM) or x25519 (ECDH + HKDF-SHA-256)")
    p.add_argument("--rsa-bits", type=int, choices=[3072, 4096], default=3072, help="RSA key size (default 3072)")
    p.add_argument("--common-name", default="bids-deface vault recipient", metavar="NAME",
                   help="the certificate's subject (RSA only), e.g. the data owner's name or role")
    _verbosity(p)


def _restore(sub) -> None:
    p = _command(sub, "restore", "rebuild the original files from the vault", _prose("""
    Rebuild, under RESTORED_DIR, the original of every file the vault covers: text files and .nii
    byte for byte, .nii.gz with the same decompressed stream, DICOM byte for byte. Each file that
    cannot be restored is named with the reason; exit status 1 if any. Reads the private key's
    passphrase from $BIDS_DEFACE_KEY_PASSPHRASE or the terminal.
    """))
    _paths(p, ("output_dir", "the output the vault was written with (never written)", None),
           ("vault_dir", "the vault folder (--vault-dir of the run)", None),
           ("restored_dir", "where the originals go (created, 0700; outside OUTPUT_DIR and VAULT_DIR)", None))
    p.add_argument("--identity", type=existing_file, required=True, metavar="PRIVATE_KEY.pem",
                   help="a recipient's private key (PREFIX.key.pem from 'bids-deface keygen')")
    _verbosity(p)


def _check(sub) -> None:
    p = _command(sub, "check", "privacy preflight of any dataset (faces, ears, metadata)", _prose("""
    Check any BIDS dataset (raw or derivative, defaced by any tool or not) before it is shared:
    renders of every image that can show a face (9 yaws x 3 pitches) read by three face detectors
    and an ear check; sidecars, tables and text files against the metadata allow-list and PHI
    detection; NIfTI headers. One line per flagged file (check and place, never the value); exit
    status 0 when nothing was found, 1 if any.
    """))
    _paths(p, ("dataset_dir", "the dataset to check (never written)", "DATASET_DIR"))
    p.add_argument("--report-dir", type=Path, required=True, metavar="DIR", help="where check.tsv, check.json and "
                   "check.html go (outside DATASET_DIR: the report shows the faces and ears it finds)")
    p.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                   help="participants to check (with or without sub-; default: all); top-level files are always checked")
    p.add_argument("--metadata-policy", type=existing_file, metavar="FILE",
                   help="the metadata policy (JSON) the data was scrubbed with, if not the shipped one")
    run = p.add_argument_group("execution")
    run.add_argument("-w", "--work-dir", type=Path, metavar="DIR", help="private working directory, removed at the "
                     "end (on a cluster: one every node reaches; default: a new temporary directory)")
    run.add_argument("--nprocs", "--nthreads", "--n_cpus", type=positive_int, default=cpu_count(), metavar="N",
                     help="images checked in parallel (default: all available CPUs)")
    run.add_argument("--plugin", default="MultiProc", help="nipype plugin: MultiProc (default), Linear, SLURM, SGE ...")
    run.add_argument("--plugin-args", type=plugin_args, default={}, metavar="JSON", help="plugin arguments (JSON)")
    _verbosity(run)


SUBCOMMANDS = {"participant": _participant, "group": _group, "dicom": _dicom, "keygen": _keygen,
               "restore": _restore, "check": _check}


