"""``bids-deface BIDS_DIR OUTPUT_DIR participant``: validate, select, write the dataset-level files,
run the defacing workflow, report."""

from __future__ import annotations

import datetime as _dt
from concurrent.futures import ThreadPoolExecutor
import getpass
import json
import os
import platform
import secrets
import shutil
import string
import time
from dataclasses import dataclass
from pathlib import Path

from bids_deface.cli import fastpath
from bids_deface.cli.deidentify import (Deidentification, fingerprint, load_settings,
                                        participant_values, prepare_participants, read_image_metadata,
                                        safe_command_line, table_rows)
from bids_deface.cli.lifecycle import Interrupted, guarded_run, keep_paths_out_of_log_files
from bids_deface.cli.logs import LOGGER, add_file_logging
from bids_deface.cli.parser import UsageError
from bids_deface.dataset.atomic import write_json_atomic, write_text_atomic
from bids_deface.dataset.cleaners import CopyContext
from bids_deface.dataset.description import write_derivative_dataset, write_labels_dataset
from bids_deface.dataset.naming import raw_paths, record_path, strip_prefix
from bids_deface.dataset.provenance import image_record, package_version
from bids_deface.dataset.rawcopy import copy_raw_dataset, left_out_lines
from bids_deface.dataset.select import (FACE_SUFFIXES, SelectionError, load_bids_filters, load_layout,
                                        select_face_images, selected_participants, selection_datatypes)
from bids_deface.cli.progress import RunProgress
from bids_deface.defacing.image import image_steps
from bids_deface.defacing.settings import RunSettings
from bids_deface.defacing.steps import read_step_log, verdict_of
from bids_deface.defacing.jobs import step_log_path
from bids_deface.workflows.execution import execution_plugin


@dataclass
class _Run:
    """One participant run: its settings, its images (as the output names them), their sources."""

    opts: object
    argv: list
    settings: Deidentification
    images: list  # to deface, named as in the output (relabelled)
    sources: dict  # output relpath -> the selected input image
    unusable: list  # (image named as in the output, why it cannot be defaced: a bad sidecar)
    run_id: str
    log_file: Path
    started: float
    work_dir: Path | None = None


def run(opts, argv: list[str]) -> int:
    """Validate, select, write the dataset-level files, run the workflow, report; exit status."""
    started = time.time()
    settings = load_settings(opts)  # a bad policy, key or mapping: exit 2 before any image is touched
    _check_writable(opts.output_dir)
    selected, unusable = read_image_metadata(opts.bids_dir, _select_images(opts))
    outputs = prepare_participants(opts, settings, selected)
    sources = {out.relpath: image for out, image in zip(outputs, selected)}
    images = [out for out in outputs if sources[out.relpath].relpath not in unusable]
    unusable = [(out, settings.relabel.text(unusable[sources[out.relpath].relpath]))
                for out in outputs if sources[out.relpath].relpath in unusable]
    LOGGER.info("%d image(s) to deface, %s layout", len(outputs), opts.output_layout)
    try:
        opts.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"output_dir {opts.output_dir}: cannot be created ({exc.strerror}): "
                         "choose a folder you can write to") from None
    run_id = new_run_id()
    log_file = opts.output_dir / "logs" / f"bids-deface_{run_id}.log"
    add_file_logging(log_file)
    keep_paths_out_of_log_files()
    state = _Run(opts, argv, settings, images, sources, unusable, run_id, log_file, started)
    try:
        with guarded_run(opts) as guard:
            state.work_dir = guard.work_dir
            return _deface(state)
    except Interrupted as exc:
        LOGGER.error("interrupted (%s): every worker stopped, the work folder and partial files removed", exc)
        return exc.exit_status


def _check_writable(output_dir: Path) -> None:
    """A read-only output folder (or the folder that would hold it) is a usage error, found before
    any work is done."""
    existing = next(p for p in (output_dir, *output_dir.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == output_dir else f" ({existing} is not writable)"
        raise UsageError(f"output_dir {output_dir}: cannot be created or written{where}: "
                         "choose a folder you can write to")


def _deface(run: _Run) -> int:
    """The dataset-level files, the workflow over the images, their records; exit status."""
    opts, output_dir, images = run.opts, run.opts.output_dir, run.images
    problems = _write_dataset_files(run)
    omp = opts.omp_nthreads or max(1, opts.nprocs // max(1, min(len(images), opts.nprocs)))
    _write_json(output_dir / "logs" / f"bids-deface_{run.run_id}.json",
                {"CommandLine": ["bids-deface", *safe_command_line(run.argv, opts)],
                 "Config": _config(run, omp)})
    for image in [*images, *(image for image, _ in run.unusable)]:  # this run's records only
        (output_dir / record_path(image)).unlink(missing_ok=True)
    step_dir = run.work_dir / "steps"
    shutil.rmtree(step_dir, ignore_errors=True)
    announced = _run_workflow(opts, images, run.work_dir, step_dir, omp, run) if images else set()
    failures = {}
    outcomes = [(image, image_outcome(read_step_log(step_log_path(step_dir, image)), image.relpath))
                for image in images] + [(image, ("failed", reason)) for image, reason in run.unusable]
    for image, (status, reason) in outcomes:
        if status == "defaced":
            continue
        failures[image.relpath] = reason
        if image.relpath not in announced:
            LOGGER.error("%s", reason)
        _write_json(output_dir / record_path(image), image_record(
            source_relpath=image.relpath, status=status, error=reason))
        if opts.output_layout == "raw":  # a sidecar without its image is not a valid raw dataset
            (output_dir / raw_paths(image).sidecar).unlink(missing_ok=True)

    if opts.qc_dir is not None and images:
        from bids_deface.reports.group import write_qc_reports

        reports = write_qc_reports(opts.qc_dir, output_dir, participants={image.subject for image in images})
        LOGGER.info("QC reports (they show the original face: do not share them): %s",
                    ", ".join(str(p) for p in reports))
    total = len(images) + len(run.unusable)
    refused = sum(status == "refused" for _, (status, _) in outcomes)
    LOGGER.info("%d of %d image(s) defaced%s, %d failed, %d refused%s, in %.1f s; log %s",
                total - len(failures), total, _released(opts, output_dir, outcomes), len(failures) - refused, refused,
                f", {len(problems)} file(s) not copied" if problems else "", time.time() - run.started,
                run.log_file.relative_to(output_dir))
    return 0 if not failures and not problems else 1


def _released(opts, output_dir: Path, outcomes) -> str:
    """`` (N released by --qc-override)`` when the override wrote images QC would have refused."""
    if not getattr(opts, "qc_override", None):
        return ""
    released = 0
    for image, (status, _) in outcomes:
        record = output_dir / record_path(image)
        if status == "defaced" and record.is_file():
            released += bool(json.loads(record.read_text()).get("Provenance", {}).get("QC", {}).get("Override"))
    return f" ({released} released by --qc-override {' '.join(opts.qc_override)})"


def _select_images(opts) -> list:
    """The face-bearing images to deface: what the run reads is validated (once: the result is
    cached) and indexed (the selected participants' folders only)."""
    from bids_deface.dataset.validate import ValidatorFailure
    from bids_deface.dataset.validation_cache import default_cache_dir
    from bids_deface.dataset.validation_report import InvalidDataset, check_input

    validation = None
    try:
        participants = selected_participants(opts.bids_dir, opts.participant_label)
        if not opts.skip_bids_validation:
            cache = getattr(opts, "validation_cache", None) or default_cache_dir()
            # relabelled outputs must not name the input's participants: the report stays private
            private = getattr(opts, "relabel_participants", None)
            # the validator (a process of its own) runs while the selection is indexed; nothing is
            # written before its verdict
            validation = ThreadPoolExecutor(1).submit(
                check_input, opts.bids_dir, participants, cache_dir=cache, output_dir=opts.output_dir,
                report_dir=cache / "reports" if private else opts.output_dir / "logs")
        filters = load_bids_filters(opts.bids_filter_file)
        # sidecars are read per image (dataset/sidecars.py): a bad one fails its image, not the run
        layout = load_layout(opts.bids_dir, participant_label=participants, datatypes=selection_datatypes(filters),
                             database_dir=getattr(opts, "bids_database_dir", None), index_metadata=False)
        images = select_face_images(
            layout, participant_label=opts.participant_label, session_label=opts.session_label,
            suffixes=opts.suffix, bids_filters=filters, metadata=False)
        if validation is not None:
            validation.result()
    except SelectionError as exc:
        if validation is not None:
            validation.cancel()
        raise UsageError(str(exc)) from None
    except (InvalidDataset, ValidatorFailure) as exc:
        raise UsageError(f"{exc}; fix it, or run with --skip-bids-validation") from None
    if not images:
        raise UsageError(f"no face-bearing images selected in {opts.bids_dir} "
                         f"(suffixes: {', '.join(opts.suffix or FACE_SUFFIXES)})")
    return images


def _write_dataset_files(run: _Run) -> list[str]:
    """The derivative dataset's own files, or the raw copy of everything but the faces;
    returns one line per file that could not be copied."""
    opts, settings = run.opts, run.settings
    source_desc = json.loads((opts.bids_dir / "dataset_description.json").read_text())
    if getattr(opts, "labels_dir", None) is not None:  # the curator's copy of the feature labels
        write_labels_dataset(opts.labels_dir, source_desc)
    if opts.output_layout == "derivative":
        write_derivative_dataset(opts.bids_dir, opts.output_dir, source_desc)
        return []
    ctx = CopyContext(bids_dir=opts.bids_dir, policy=settings.policy, deidentifier=settings.deidentifier,
                      relabel=settings.relabel, known=settings.known, source_desc=source_desc,
                      participants=table_rows(opts, settings),
                      sessions=[settings.relabel.session(strip_prefix(s, "ses")) for s in opts.session_label]
                      if opts.session_label else None,
                      sessions_in={strip_prefix(s, "ses") for s in opts.session_label} if opts.session_label else None,
                      vault=_vault_writer(opts))
    result = copy_raw_dataset(ctx, opts.output_dir, selected={image.relpath for image in run.sources.values()},
                              subjects=set(settings.subjects), face_suffixes=set(FACE_SUFFIXES) | set(opts.suffix or ()),
                              fingerprint=fingerprint(opts, settings, run.images))
    for line in result.problems:
        LOGGER.error("%s", line)
    if result.left_out:
        name = f"bids-deface_{run.run_id}_left-out.tsv"
        lines = left_out_lines(result.left_out, settings.known.everyone())
        write_text_atomic(opts.output_dir / "logs" / name, "path\treason\n" + "".join(f"{l}\n" for l in lines))
        LOGGER.warning("%d file(s) or folder(s) left out of the raw copy, never copied (not BIDS files bids-deface "
                       "can clean, or images that can show a face and are not defaced): logs/%s; e.g. %s",
                       len(lines), name, "; ".join(line.replace("\t", ": ") for line in lines[:3]))
    return result.problems


def _vault_writer(opts):
    """The raw copy's vault writer (what it changes or leaves out is sealed), or None."""
    if not getattr(opts, "vault_dir", None):
        return None
    from bids_deface.vault import VaultError, VaultWriter

    try:
        return VaultWriter(opts.vault_dir, opts.vault_recipient, input_root=opts.bids_dir, output_root=opts.output_dir)
    except VaultError as exc:
        raise UsageError(str(exc)) from None


def _config(run: _Run, omp: int) -> dict:
    """What the run was asked, as the output records it: no path, no removed value."""
    opts = run.opts
    relabel = run.settings.relabel
    return {
        "RunId": run.run_id,
        "Version": package_version(),
        "Python": platform.python_version(),
        "OutputLayout": opts.output_layout,
        "ParticipantLabel": [relabel.subject(strip_prefix(p, "sub")) for p in opts.participant_label or []] or None,
        "SessionLabel": [relabel.session(strip_prefix(p, "ses")) for p in opts.session_label or []] or None,
        "Suffix": opts.suffix,
        "BidsFilterFile": bool(opts.bids_filter_file),
        "Features": opts.features,
        "Seed": opts.seed,
        "Margins": _margins(opts),
        "MetadataPolicy": bool(opts.metadata_policy),
        "HashKey": run.settings.deidentifier.hash_key is not None,
        "RelabelledParticipants": relabel.active,
        "KeepWork": opts.keep_work,
        "Plugin": opts.plugin,
        "PluginArgs": sorted(opts.plugin_args),
        "NProcs": opts.nprocs,
        "OmpNThreads": omp,
        "SkipBidsValidation": opts.skip_bids_validation,
        "QC": opts.qc_dir is not None,
        "QCOverride": list(getattr(opts, "qc_override", None) or []),
        "Images": [image.relpath for image in run.images] + [image.relpath for image, _ in run.unusable],
    }


def _margins(opts) -> dict:
    keys = ("eye_box_margin_mm", "eye_surface_band_vox", "nose_box_scale")
    return {key: getattr(opts, key) for key in keys if getattr(opts, key) is not None}


def image_outcome(steps: list[dict], relpath: str) -> tuple[str, str]:
    """(verdict, reason) of one image from its step log: "defaced" when its last step wrote it,
    else "refused" or "failed" with the first step's reason."""
    return verdict_of(steps) or ("failed", f"{relpath}: not defaced (the run stopped before its last step)")


def new_run_id() -> str:
    """``20261202-093015_kqzmvwta``: when, and eight random letters. Letters only: a random hex
    token of digits alone (``22329728``) reads as a record number to a PHI scanner, and the run's
    log file names it."""
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "_" + "".join(
        secrets.choice(string.ascii_lowercase) for _ in range(8))


def _run_settings(opts, omp: int) -> RunSettings:
    return RunSettings(
        output_dir=str(opts.output_dir), output_layout=opts.output_layout, features=tuple(opts.features),
        margins=_margins(opts), policy_file=str(opts.metadata_policy) if opts.metadata_policy else None,
        hash_key_file=str(getattr(opts, "hash_key_file", None) or "") or None, qc=opts.qc_dir is not None,
        qc_override=tuple(getattr(opts, "qc_override", None) or ()),
        allow_partial=bool(getattr(opts, "allow_partial", False)), threads=omp,
        labels_dir=str(opts.labels_dir) if getattr(opts, "labels_dir", None) else None,
        vault_dir=str(opts.vault_dir) if getattr(opts, "vault_dir", None) else None,
        vault_recipients=tuple(str(r) for r in (getattr(opts, "vault_recipient", None) or ())))


def _run_workflow(opts, images, work_dir: Path, step_dir: Path, omp: int, run: _Run | None = None) -> set[str]:
    """Build and run the workflow, showing its progress; every step records its outcome under
    ``step_dir``. Returns the images whose verdict was already reported."""
    settings = _run_settings(opts, omp)
    plugin, plugin_args = execution_plugin(opts, len(images))
    if plugin == "Linear" and len(images) == 1:
        return fastpath.run_alone(opts, images[0], settings, step_dir, run)
    if opts.plugin == "MultiProc" and not opts.plugin_args and fastpath.lone_session(images, opts.reference_suffix):
        return fastpath.run_session(opts, images, settings, step_dir, run)
    os.environ.setdefault("NIPYPE_NO_ET", "1")  # no version check over the network
    if not os.environ.get("LOGNAME"):  # nipype's SLURM plugin needs it
        os.environ["LOGNAME"] = _user()
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    from bids_deface.cli.interrupts import guard_multiproc_workers
    from bids_deface.workflows.base import init_bids_deface_wf

    guard_multiproc_workers()  # MultiProc's workers die with the run, even after kill -9

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

    wf, by_name = init_bids_deface_wf(images=images, settings=settings, step_dir=step_dir, seed=opts.seed,
                                      qc_dir=opts.qc_dir, reference_suffix=opts.reference_suffix,
                                      session_nodes=opts.plugin not in ("MultiProc", "Linear"))
    if run is not None:  # each image's sidecar is searched for its participant's removed values
        participant_values(wf, by_name, run.settings, run.sources)
    wf.base_dir = str(work_dir)
    wf.config["execution"].update(execution)
    if plugin == "MultiProc":  # its workers are forked from this process: they inherit what it loaded
        from bids_deface.defacing.image import warm_up

        warm_up(settings)
    steps = len(image_steps(settings, reference=True))
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


