"""``bids-deface BIDS_DIR OUTPUT_DIR participant``: validate, select, write the dataset-level files,
run the defacing workflow, report."""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import platform
import re
import shutil
import time
import uuid
from pathlib import Path

from bids_deface.cli.logs import LOGGER, add_file_logging
from bids_deface.cli.parser import UsageError
from bids_deface.cli.workdir import private_work_dir, remove_work
from bids_deface.dataset.atomic import write_json_atomic
from bids_deface.dataset.description import write_derivative_dataset
from bids_deface.dataset.naming import raw_paths, record_path, strip_prefix
from bids_deface.dataset.provenance import image_record, package_version
from bids_deface.dataset.rawcopy import copy_raw_dataset
from bids_deface.dataset.select import (FACE_SUFFIXES, SelectionError, load_bids_filters, load_layout,
                                        select_face_images)
from bids_deface.dataset.validate import validate_dataset


def run(opts, argv: list[str]) -> int:
    """Validate, select, write the dataset-level files, run the workflow, report; exit status."""
    started = time.time()
    images = _select_images(opts)
    LOGGER.info("%d image(s) to deface, %s layout, into %s", len(images), opts.output_layout, opts.output_dir)

    output_dir = opts.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    run_id = _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "_" + uuid.uuid4().hex[:8]
    log_file = output_dir / "logs" / f"bids-deface_{run_id}.log"
    add_file_logging(log_file)
    problems = _write_dataset_files(opts, images)

    work_dir, created = private_work_dir(opts.work_dir)
    omp = opts.omp_nthreads or max(1, opts.nprocs // max(1, min(len(images), opts.nprocs)))
    _write_json(output_dir / "logs" / f"bids-deface_{run_id}.json",
                {"CommandLine": ["bids-deface", *argv], "Config": _config(opts, run_id, images, work_dir, omp)})

    # An image succeeded when its sink wrote its record in this run.
    for image in images:
        (output_dir / record_path(image)).unlink(missing_ok=True)
    crashed = _run_workflow(opts, images, work_dir, omp)
    failures = {}
    for image in images:
        if not (output_dir / record_path(image)).exists():
            failures[image.relpath] = crashed.get(
                image.relpath, f"{image.relpath}: not defaced (the workflow stopped before its last step)")
            LOGGER.error("%s", failures[image.relpath])
            _write_json(output_dir / record_path(image), image_record(
                source_relpath=image.relpath, status="failed", error=failures[image.relpath]))
            if opts.output_layout == "raw":  # a sidecar without its image is not a valid raw dataset
                (output_dir / raw_paths(image).sidecar).unlink(missing_ok=True)

    if opts.qc_dir is not None:
        from bids_deface.reports.group import write_qc_reports

        reports = write_qc_reports(opts.qc_dir, output_dir, participants={image.subject for image in images})
        LOGGER.info("QC reports (they show the original face: do not share them): %s",
                    ", ".join(str(p) for p in reports))

    ok = not failures and not problems
    if opts.keep_work:
        LOGGER.warning("work directory kept (--keep-work): %s (private; it holds un-defaced intermediate "
                       "images: delete it when done)", work_dir)
    else:  # un-defaced intermediates never outlive the run unless asked for, failures or not
        remove_work(work_dir, created)
    done = len(images) - len(failures)
    LOGGER.info("%d of %d image(s) defaced, %d failed%s, in %.1f s; outputs in %s; log %s",
                done, len(images), len(failures), f", {len(problems)} file(s) not copied" if problems else "",
                time.time() - started, output_dir, log_file.relative_to(output_dir))
    return 0 if ok else 1


def _select_images(opts) -> list:
    """The face-bearing images to deface, after validating the input dataset."""
    if not opts.skip_bids_validation:
        errors = validate_dataset(opts.bids_dir)
        if errors:
            for line in errors[:20]:
                LOGGER.error("invalid input dataset: %s", line)
            raise UsageError(f"{opts.bids_dir} is not a valid BIDS dataset ({len(errors)} errors above); "
                             "fix it, or run with --skip-bids-validation")
    try:
        layout = load_layout(opts.bids_dir)
        images = select_face_images(
            layout, participant_label=opts.participant_label, session_label=opts.session_label,
            suffixes=opts.suffix, bids_filters=load_bids_filters(opts.bids_filter_file))
    except SelectionError as exc:
        raise UsageError(str(exc)) from None
    if not images:
        raise UsageError(f"no face-bearing images selected in {opts.bids_dir} "
                         f"(suffixes: {', '.join(opts.suffix or FACE_SUFFIXES)})")
    return images


def _write_dataset_files(opts, images) -> list[str]:
    """The derivative dataset's own files, or the raw copy of everything but the faces;
    returns one line per file that could not be copied."""
    source_desc = json.loads((opts.bids_dir / "dataset_description.json").read_text())
    if opts.output_layout == "derivative":
        write_derivative_dataset(opts.bids_dir, opts.output_dir, source_desc)
        return []
    problems = copy_raw_dataset(
        opts.bids_dir, opts.output_dir, source_desc, selected=images,
        face_suffixes=set(FACE_SUFFIXES) | set(opts.suffix or ()),
        subjects={strip_prefix(s, "sub") for s in opts.participant_label} if opts.participant_label else None,
        sessions={strip_prefix(s, "ses") for s in opts.session_label} if opts.session_label else None,
        policy_file=opts.metadata_policy)
    for line in problems:
        LOGGER.error("%s", line)
    return problems


def _config(opts, run_id, images, work_dir, omp) -> dict:
    return {
        "RunId": run_id,
        "Version": package_version(),
        "Python": platform.python_version(),
        "BidsDir": str(opts.bids_dir),
        "OutputDir": str(opts.output_dir),
        "OutputLayout": opts.output_layout,
        "ParticipantLabel": opts.participant_label,
        "SessionLabel": opts.session_label,
        "Suffix": opts.suffix,
        "BidsFilterFile": str(opts.bids_filter_file) if opts.bids_filter_file else None,
        "Features": opts.features,
        "Seed": opts.seed,
        "Margins": _margins(opts),
        "MetadataPolicy": str(opts.metadata_policy) if opts.metadata_policy else None,
        "WorkDir": str(work_dir),
        "KeepWork": opts.keep_work,
        "Plugin": opts.plugin,
        "PluginArgs": opts.plugin_args,
        "NProcs": opts.nprocs,
        "OmpNThreads": omp,
        "SkipBidsValidation": opts.skip_bids_validation,
        "QcDir": str(opts.qc_dir) if opts.qc_dir else None,
        "Images": [image.relpath for image in images],
    }


def _margins(opts) -> dict:
    keys = ("eye_box_margin_mm", "eye_surface_band_vox", "nose_box_scale")
    return {key: getattr(opts, key) for key in keys if getattr(opts, key) is not None}


def _run_workflow(opts, images, work_dir: Path, omp: int) -> dict[str, str]:
    """Build and run the workflow; returns {image relpath: one-line error} for failed images."""
    os.environ.setdefault("NIPYPE_NO_ET", "1")  # no version check over the network
    if not os.environ.get("LOGNAME"):  # nipype's SLURM plugin needs it
        os.environ["LOGNAME"] = _user()
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    from bids_deface.workflows.base import init_bids_deface_wf

    crash_dir = work_dir / "crash"
    if crash_dir.exists():
        shutil.rmtree(crash_dir)
    local = opts.plugin in ("MultiProc", "Linear")
    execution = {
        "crashdump_dir": str(crash_dir),
        "crashfile_format": "pklz",
        "stop_on_first_crash": False,
        # MultiProc polls for finished jobs; its 2 s default would dominate a 3 s image.
        "poll_sleep_duration": 0.05 if local else 2,
        "hash_method": "timestamp",
        "remove_unnecessary_outputs": True,
        "check_version": False,
    }
    quiet = "INFO" if opts.verbose >= 2 else "CRITICAL"  # our own lines report failures
    nipype_config.update_config({"execution": execution, "monitoring": {"enabled": False},
                                 "logging": {"workflow_level": quiet, "interface_level": quiet,
                                             "utils_level": quiet, "log_to_file": False}})
    nipype_logging.update_logging(nipype_config)

    wf, by_name = init_bids_deface_wf(
        images=images, output_dir=opts.output_dir, output_layout=opts.output_layout, features=opts.features,
        seed=opts.seed, omp_nthreads=omp, policy_file=opts.metadata_policy, margins=_margins(opts),
        qc_dir=opts.qc_dir)
    wf.base_dir = str(work_dir)
    wf.config["execution"].update(execution)
    plugin_args = dict(opts.plugin_args)
    if opts.plugin == "MultiProc":
        plugin_args.setdefault("n_procs", opts.nprocs)
        plugin_args.setdefault("raise_insufficient", False)
    try:
        wf.run(plugin=opts.plugin, plugin_args=plugin_args)
    except RuntimeError:
        pass  # failed nodes: read from their crash files below
    return _failures(crash_dir, by_name)


def _failures(crash_dir: Path, by_name: dict) -> dict[str, str]:
    """One line per failed image, from nipype's crash files."""
    from nipype.utils.filemanip import loadcrash

    failures: dict[str, str] = {}
    for crashfile in sorted(crash_dir.glob("crash-*.pklz")) if crash_dir.exists() else []:
        try:
            crash = loadcrash(str(crashfile))
            fullname = crash["node"].fullname
            text = "".join(crash["traceback"])
        except Exception as exc:  # an unreadable crash file still means a failure
            fullname, text = crashfile.name, f"unreadable crash file ({exc})"
        image = next((img for name, img in by_name.items() if f".{name}." in f".{fullname}."), None)
        if image is None:
            continue
        failures.setdefault(image.relpath, _error_line(text, image.relpath, fullname))
    return failures


_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|Interrupt)): (.+)$")


def _error_line(traceback_text: str, relpath: str, node: str) -> str:
    """The last ``SomethingError: message`` line of a traceback, naming the image."""
    message = None
    for line in traceback_text.splitlines():
        match = _ERROR_LINE.match(line)
        if match and not match.group(1).startswith("NodeExecution"):
            # our own errors name the image and the problem already
            message = match.group(2).strip() if match.group(1) in ("InputImageError", "QualityCheckError") \
                else f"{match.group(1)}: {match.group(2).strip()}"
    step = node.rsplit(".", 1)[-1]
    if message is None:
        message = f"step '{step}' failed (see the crash file in the work directory)"
    if relpath not in message:
        message = f"{relpath}: {message} (step '{step}')"
    return message


def _write_json(path: Path, data: dict) -> None:
    write_json_atomic(path, data)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


