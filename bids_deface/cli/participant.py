"""``bids-deface BIDS_DIR OUTPUT_DIR participant``: validate, select, write the dataset-level files,
run the defacing workflow, report."""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import platform
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
                                        select_face_images, selected_participants, selection_datatypes)
from bids_deface.cli.progress import RunProgress
from bids_deface.defacing.image import image_steps
from bids_deface.defacing.settings import RunSettings
from bids_deface.defacing.steps import read_step_log, verdict_of
from bids_deface.workflows.base import step_log_path


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

    for image in images:  # this run's records only
        (output_dir / record_path(image)).unlink(missing_ok=True)
    step_dir = work_dir / "steps"
    shutil.rmtree(step_dir, ignore_errors=True)
    announced = _run_workflow(opts, images, work_dir, step_dir, omp)
    failures = {}
    for image in images:
        status, reason = image_outcome(read_step_log(step_log_path(step_dir, image)), image.relpath)
        if status == "defaced":
            continue
        failures[image.relpath] = reason
        if image.relpath not in announced:
            LOGGER.error("%s", reason)
        _write_json(output_dir / record_path(image), image_record(
            source_relpath=image.relpath, status=status, error=reason))
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
    """The face-bearing images to deface: what the run reads is validated (once: the result is
    cached) and indexed (the selected participants' folders only)."""
    from bids_deface.dataset.validate import ValidatorFailure
    from bids_deface.dataset.validation_cache import default_cache_dir
    from bids_deface.dataset.validation_report import InvalidDataset, check_input

    try:
        participants = selected_participants(opts.bids_dir, opts.participant_label)
        if not opts.skip_bids_validation:
            cache = getattr(opts, "validation_cache", None) or default_cache_dir()
            # relabelled outputs must not name the input's participants: the report stays private
            private = getattr(opts, "relabel_participants", None)
            check_input(opts.bids_dir, participants, cache_dir=cache, output_dir=opts.output_dir,
                        report_dir=cache / "reports" if private else opts.output_dir / "logs")
        filters = load_bids_filters(opts.bids_filter_file)
        # sidecars are read per image (dataset/sidecars.py): a bad one fails its image, not the run
        layout = load_layout(opts.bids_dir, participant_label=participants, datatypes=selection_datatypes(filters),
                             database_dir=getattr(opts, "bids_database_dir", None), index_metadata=False)
        images = select_face_images(
            layout, participant_label=opts.participant_label, session_label=opts.session_label,
            suffixes=opts.suffix, bids_filters=filters, metadata=False)
    except SelectionError as exc:
        raise UsageError(str(exc)) from None
    except (InvalidDataset, ValidatorFailure) as exc:
        raise UsageError(f"{exc}; fix it, or run with --skip-bids-validation") from None
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


def image_outcome(steps: list[dict], relpath: str) -> tuple[str, str]:
    """(verdict, reason) of one image from its step log: "defaced" when its last step wrote it,
    else "refused" or "failed" with the first step's reason."""
    return verdict_of(steps) or ("failed", f"{relpath}: not defaced (the run stopped before its last step)")


def execution_plugin(opts, n_images: int) -> tuple[str, dict]:
    """The nipype plugin and its arguments for this run.

    One image, or one process, runs in this process (nipype's Linear plugin): a MultiProc worker
    would import the detector's libraries (~2 s of CPU) again, for nothing to run in parallel.
    """
    plugin_args = dict(opts.plugin_args)
    if opts.plugin == "MultiProc" and (n_images == 1 or opts.nprocs == 1) and not plugin_args:
        return "Linear", {}
    if opts.plugin == "MultiProc":
        plugin_args.setdefault("n_procs", opts.nprocs)
        plugin_args.setdefault("raise_insufficient", False)
    return opts.plugin, plugin_args


def _run_workflow(opts, images, work_dir: Path, step_dir: Path, omp: int) -> set[str]:
    """Build and run the workflow, showing its progress; every step records its outcome under
    ``step_dir``. Returns the images whose verdict was already reported."""
    os.environ.setdefault("NIPYPE_NO_ET", "1")  # no version check over the network
    if not os.environ.get("LOGNAME"):  # nipype's SLURM plugin needs it
        os.environ["LOGNAME"] = _user()
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    from bids_deface.workflows.base import init_bids_deface_wf

    crash_dir = work_dir / "crash"
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

    settings = RunSettings(
        output_dir=str(opts.output_dir), output_layout=opts.output_layout, features=tuple(opts.features),
        margins=_margins(opts), policy_file=str(opts.metadata_policy) if opts.metadata_policy else None,
        hash_key_file=str(getattr(opts, "hash_key_file", None) or "") or None, qc=opts.qc_dir is not None,
        allow_partial=bool(getattr(opts, "allow_partial", False)), threads=omp,
        vault_dir=str(opts.vault_dir) if getattr(opts, "vault_dir", None) else None,
        vault_recipients=tuple(str(r) for r in (getattr(opts, "vault_recipient", None) or ())))
    wf, _ = init_bids_deface_wf(images=images, settings=settings, step_dir=step_dir, seed=opts.seed,
                                qc_dir=opts.qc_dir)
    wf.base_dir = str(work_dir)
    wf.config["execution"].update(execution)
    plugin, plugin_args = execution_plugin(opts, len(images))
    steps = len(image_steps(settings))
    logs = {image.relpath: step_log_path(step_dir, image) for image in images}
    with RunProgress(logs, steps) as progress:
        try:
            wf.run(plugin=plugin, plugin_args=plugin_args)
        except RuntimeError:
            pass  # failed steps recorded their outcome in the step logs
    return progress.announced()


def _write_json(path: Path, data: dict) -> None:
    write_json_atomic(path, data)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


