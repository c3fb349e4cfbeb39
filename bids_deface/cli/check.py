"""``bids-deface check DATASET_DIR --report-dir DIR``: the privacy preflight of any dataset.

Reads every file (never writes into the dataset), checks metadata here and images in a workflow
(one node per image, any nipype plugin), prints one line per flagged file and writes
``check.tsv``, ``check.json`` and ``check.html`` into DIR. Exit status 0 when nothing was found,
1 when anything was, 2 for a usage error.
"""

from __future__ import annotations

import json
import os
import shutil
import time

from bids_deface.check.dataset import dataset_files, dicom_result, participant_labels
from bids_deface.check.findings import FileResult, Finding, summary_line, write_tables
from bids_deface.check.metadata import check_metadata_file
from bids_deface.check.report import write_report
from bids_deface.check.views import PITCHES, YAWS
from bids_deface.cli.logs import LOGGER
from bids_deface.cli.parser import UsageError
from bids_deface.cli.workdir import WorkDirError, private_work_dir, remove_work
from bids_deface.dataset.naming import strip_prefix
from bids_deface.metadata import PolicyError, load_metadata_policy
from bids_deface.workflows.execution import execution_plugin


def inside(path, root) -> bool:
    path, root = path.absolute().resolve(), root.absolute().resolve()
    return path == root or root in path.parents


def check_paths(opts) -> None:
    dataset = opts.dataset_dir.absolute()
    if not dataset.is_dir():
        raise UsageError(f"DATASET_DIR {opts.dataset_dir}: no such directory")
    if inside(opts.report_dir, dataset):
        raise UsageError(f"--report-dir {opts.report_dir} is inside DATASET_DIR: the dataset is never written, "
                         "and the report shows the faces it finds")
    if opts.report_dir.exists() and not opts.report_dir.is_dir():
        raise UsageError(f"--report-dir {opts.report_dir} is a file, not a folder")
    if opts.work_dir is not None and inside(opts.work_dir, dataset):
        raise UsageError(f"work dir {opts.work_dir} is inside DATASET_DIR")
    if opts.participant_label:
        known = participant_labels(dataset)
        missing = [p for p in opts.participant_label if strip_prefix(p, "sub") not in known]
        if missing:
            raise UsageError(f"participant label(s) not found in {opts.dataset_dir}: {', '.join(missing)}")
    opts.dataset_dir, opts.report_dir = dataset, opts.report_dir.absolute()


def run(opts, argv=None) -> int:
    started = time.time()
    check_paths(opts)
    try:
        policy = load_metadata_policy(opts.metadata_policy)
    except PolicyError as exc:
        raise UsageError(str(exc)) from None
    files = dataset_files(opts.dataset_dir, opts.participant_label)
    images = [f for f in files if f.kind == "image"]
    LOGGER.info("checking %d file(s) of %s, %d image(s)", len(files), opts.dataset_dir, len(images))
    results = [dicom_result(f) if f.kind == "dicom" else check_metadata_file(f.path, f.relpath, policy)
               for f in files if f.kind != "image"]
    try:
        work_dir, created = private_work_dir(opts.work_dir, {"DATASET_DIR": opts.dataset_dir})
    except WorkDirError as exc:
        raise UsageError(str(exc)) from None
    try:
        results += _check_images(opts, images, work_dir / "check")
        results.sort(key=lambda r: r.path)
        opts.report_dir.mkdir(parents=True, exist_ok=True)
        summary = {"dataset": str(opts.dataset_dir), "files_checked": len(results), "images": len(images),
                   "flagged": sum(r.flagged for r in results), "yaws": list(YAWS), "pitches": list(PITCHES),
                   "seconds": round(time.time() - started, 1)}
        tsv, js = write_tables(opts.report_dir, results, summary)
        html = write_report(opts.report_dir / "check.html", opts.dataset_dir.name, results, YAWS, PITCHES)
    finally:
        shutil.rmtree(work_dir / "check", ignore_errors=True)  # renders of faces: gone with the run
        remove_work(work_dir, created)
    flagged = [r for r in results if r.flagged]
    for r in flagged:
        print(summary_line(r), flush=True)
    LOGGER.info("%d of %d file(s) flagged in %.1f s; %s, %s, %s (the report shows what was found: keep it private)",
                len(flagged), len(results), time.time() - started, tsv, js, html)
    return 1 if flagged else 0


def _check_images(opts, images, work) -> list[FileResult]:
    """Run the image workflow; an image whose node did not finish is reported as unchecked."""
    if not images:
        return []
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    from bids_deface.workflows.check import init_check_wf

    wf, result_files = init_check_wf(images=[(f.path, f.relpath) for f in images],
                                     results_dir=work / "results", figures_dir=work / "figures")
    _configure_nipype(wf, work, opts)
    plugin, plugin_args = execution_plugin(opts, len(images))
    try:
        wf.run(plugin=plugin, plugin_args=plugin_args)
    except RuntimeError:
        pass  # a node that crashed left no result: reported below
    out = []
    for relpath, path in result_files.items():
        if path.is_file():
            out.append(FileResult.from_json(json.loads(path.read_text())))
        else:
            out.append(FileResult(relpath, "image", [Finding(relpath, "unreadable", "", "the check did not finish")]))
    return out


def _configure_nipype(wf, work, opts) -> None:
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    if not os.environ.get("LOGNAME"):  # nipype's SLURM plugin needs it
        os.environ["LOGNAME"] = f"uid{os.getuid()}"
    local = opts.plugin in ("MultiProc", "Linear")
    execution = {"crashdump_dir": str(work / "crash"), "crashfile_format": "pklz", "stop_on_first_crash": False,
                 "poll_sleep_duration": 0.05 if local else 2, "hash_method": "timestamp",
                 "remove_unnecessary_outputs": True, "check_version": False}
    quiet = "INFO" if opts.verbose >= 2 else "CRITICAL"
    nipype_config.update_config({"execution": execution, "monitoring": {"enabled": False},
                                 "logging": {"workflow_level": quiet, "interface_level": quiet,
                                             "utils_level": quiet, "log_to_file": False}})
    nipype_logging.update_logging(nipype_config)
    wf.base_dir = str(work)
    wf.config["execution"].update(execution)
