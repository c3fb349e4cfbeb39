"""Command-line arguments of ``bids-deface`` (BIDS-Apps conventions, as fMRIPrep and MRIQC)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from bids_deface.bids import FACE_SUFFIXES, FEATURES, package_version

EXAMPLES = """\
examples:
  # deface every face-bearing image into a BIDS derivative dataset
  bids-deface /data/bids /data/bids-defaced participant

  # two participants, T1w only, eyes and nose only, 4 processes
  bids-deface /data/bids /data/out participant --participant-label 01 sub-02 \\
      --suffix T1w --features eyes nose --nprocs 4

  # a complete copy of the dataset, ready to upload, with every face defaced
  bids-deface /data/bids /data/bids-shareable participant --output-layout raw

  # on a SLURM cluster (each image is one job)
  bids-deface /data/bids /data/out participant --plugin SLURM \\
      --plugin-args '{"sbatch_args": "--time=00:30:00 --mem=4G"}'

  # then a summary of every image (TSV and HTML)
  bids-deface /data/bids /data/out group

  # DICOM: de-identify and deface a folder of DICOM files
  bids-deface dicom /data/dicom-in /data/dicom-out
"""


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _plugin_args(value: str) -> dict:
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


def _existing_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value}: no such file")
    return path.absolute()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bids-deface",
        description="Deface head MRI before sharing: find the eyes, nose and ears with a 3D U-Net and "
                    "distort only those (after Jeong et al., JMIR 2020); remove identifying metadata "
                    "(NIfTI header fields and extensions, sidecar keys, scans.tsv times).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bids_dir", type=Path, help="the input BIDS dataset (never written)")
    parser.add_argument("output_dir", type=Path, help="where outputs go (must not be inside bids_dir)")
    parser.add_argument("analysis_level", choices=["participant", "group"],
                        help="participant: deface images; group: summarise every image (TSV and HTML)")
    parser.add_argument("--version", action="version", version=f"bids-deface {package_version()}")

    sel = parser.add_argument_group("which images")
    sel.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                     help="participants to process (with or without sub-); default: all")
    sel.add_argument("--session-label", "--session_label", nargs="+", metavar="LABEL",
                     help="sessions to process (with or without ses-); default: all")
    sel.add_argument("--suffix", nargs="+", metavar="SUFFIX",
                     help="image suffixes to deface; default: every anatomical suffix that can show a "
                          f"face ({', '.join(FACE_SUFFIXES)})")
    sel.add_argument("--bids-filter-file", type=_existing_file, metavar="FILE",
                     help='JSON filters per suffix, as in fMRIPrep: {"t1w": {"acquisition": "mprage"}}; '
                          'null: entity absent, "*": entity present')
    sel.add_argument("--skip-bids-validation", action="store_true",
                     help="do not validate the input with bids-validator-deno")

    dfc = parser.add_argument_group("defacing")
    dfc.add_argument("--features", nargs="+", choices=FEATURES, default=list(FEATURES),
                     help="facial features to distort (default: eyes nose ears)")
    dfc.add_argument("--seed", type=int, default=0,
                     help="seed of the ear noise; the same seed gives the same output (default 0)")
    dfc.add_argument("--eye-margin-mm", type=float, dest="eye_box_margin_mm",
                     help="margin of the periocular boxes around each eye, mm (paper default: 10)")
    dfc.add_argument("--eye-band-vox", type=int, dest="eye_surface_band_vox",
                     help="voxels on each side of the face surface flattened in the eye boxes (paper: 2)")
    dfc.add_argument("--nose-box-scale", type=float, dest="nose_box_scale",
                     help="factor on the nose box's half-extent (paper: 2, i.e. doubled on each side)")
    dfc.add_argument("--metadata-policy", type=_existing_file, metavar="FILE",
                     help="a sidecar policy (JSON) that extends or overrides the shipped list of "
                          "identifying keys")

    out = parser.add_argument_group("outputs")
    out.add_argument("--output-layout", choices=["derivative", "raw"], default="derivative",
                     help="derivative (default): a BIDS derivative dataset with desc-defaced images, "
                          "feature labels and provenance; raw: a complete copy of the input dataset "
                          "with every face-bearing image defaced under its own name, ready to upload")
    out.add_argument("--qc-dir", type=Path, metavar="DIR",
                     help="run quality control (3D renders before/after, face detectors, brain-voxel "
                          "check; ~11 s per image) and write its figures, sub-<label>.html and "
                          "index.html to DIR, which must lie outside output_dir and bids_dir: they show "
                          "the original face. An image on which a face is still found is not written "
                          "and counts as failed")

    run = parser.add_argument_group("execution")
    run.add_argument("-w", "--work-dir", type=Path, metavar="DIR",
                     help="working directory, private (0700): what the run put there is removed at the end, "
                          "after failures too, unless --keep-work (default: a new temporary directory)")
    run.add_argument("--keep-work", action="store_true",
                     help="keep the working directory (it holds un-defaced intermediate images)")
    run.add_argument("--nprocs", "--nthreads", "--n_cpus", type=_positive_int, default=_cpu_count(),
                     help="processes to run in parallel (default: all available CPUs)")
    run.add_argument("--omp-nthreads", type=_positive_int,
                     help="threads per detection (default: nprocs divided among the images)")
    run.add_argument("--plugin", default="MultiProc",
                     help="nipype execution plugin: MultiProc (default), Linear, SLURM, SGE, PBS, ...")
    run.add_argument("--plugin-args", type=_plugin_args, default={}, metavar="JSON",
                     help='plugin arguments as JSON text or a JSON file, e.g. \'{"sbatch_args": "--mem=4G"}\'')
    run.add_argument("-v", "--verbose", action="count", default=0,
                     help="more messages (-vv: nipype's too)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments; errors exit with status 2 and one line, as argparse does."""
    parser = build_parser()
    opts = parser.parse_args(argv)
    bids_dir = opts.bids_dir.absolute()
    if not bids_dir.is_dir():
        parser.error(f"bids_dir {opts.bids_dir}: no such directory")
    output_dir = opts.output_dir.absolute()
    real_in, real_out = bids_dir.resolve(), output_dir.resolve()
    if real_out == real_in or real_in in real_out.parents:
        parser.error(f"output_dir {opts.output_dir} is inside bids_dir {opts.bids_dir}: "
                     "the input is never written, choose a folder outside it")
    if opts.work_dir is not None:
        work = opts.work_dir.absolute().resolve()
        if work == real_in or real_in in work.parents:
            parser.error(f"work dir {opts.work_dir} is inside bids_dir {opts.bids_dir}")
    if opts.qc_dir is not None:
        qc = opts.qc_dir.absolute().resolve()
        for name, root in (("bids_dir", real_in), ("output_dir", real_out)):
            if qc == root or root in qc.parents:
                parser.error(f"--qc-dir {opts.qc_dir} is inside {name}: QC figures show the original face, "
                             "keep them apart from the data you share")
        opts.qc_dir = opts.qc_dir.absolute()
    opts.bids_dir, opts.output_dir = bids_dir, output_dir
    opts.work_dir = opts.work_dir.absolute() if opts.work_dir is not None else None
    opts.features = list(dict.fromkeys(opts.features))
    return opts
