"""The fast paths of a small local run, without nipype: a lone image in this process, and a lone
session on this machine's cores.

A workflow engine earns its keep on many images and on clusters; for one image, or for the few
images of one session, importing it and running its machinery costs about a second of a run of
five. Both paths call each image's journey (:func:`bids_deface.defacing.image.deface_one`) exactly
as nipype's node would, with the same jobs and step logs, so the outputs are byte for byte those of
the workflow.

A lone session: the reference is defaced in this process while the first image of each other
acquisition, each with the images that share its distortion, is loaded and run through the network
in processes forked from this one (they inherit what it loaded; as many as ``--nprocs``); those then
wait for the reference, register to it and go on. The forked processes die with the run
(``PR_SET_PDEATHSIG``), leave the signals to it, and are stopped by it
(:func:`bids_deface.cli.interrupts.stop_workers`).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from dataclasses import replace
from pathlib import Path

from bids_deface.cli.deidentify import job_with_values
from bids_deface.cli.interrupts import SIGNALS, die_with_parent
from bids_deface.cli.progress import RunProgress
from bids_deface.defacing.image import deface_one, image_steps, warm_up
from bids_deface.defacing.jobs import acquisition_keys, image_job, sessions_of
from bids_deface.defacing.session import choose_reference
from bids_deface.defacing.session_plan import kept_path, plan_session
from bids_deface.defacing.settings import ImageJob, RunSettings


def lone_session(images, reference_suffix: str) -> bool:
    """Whether the run's images are one session with a reference image (the fast path's case)."""
    sessions = sessions_of(images)
    if len(sessions) != 1 or len(images) < 2:
        return False
    return choose_reference([image.suffix for image in images], reference_suffix) is not None


def _jobs(opts, images, settings: RunSettings, step_dir: Path, run) -> list[ImageJob]:
    jobs = []
    for image in images:
        job = image_job(image, settings, seed=opts.seed, step_dir=step_dir, qc_dir=opts.qc_dir).as_dict()
        if run is not None:  # its sidecar is searched for its participant's removed values
            job = job_with_values(job, run.settings, run.sources)
        jobs.append(ImageJob.from_dict(job))
    return jobs


def run_alone(opts, image, settings: RunSettings, step_dir: Path, run) -> set[str]:
    """A lone image, in this process, on every thread the run has."""
    (job,) = _jobs(opts, [image], settings, step_dir, run)
    with RunProgress({image.relpath: Path(job.step_log)}, len(image_steps(settings))) as progress:
        deface_one(job, settings)
    return progress.announced()


def run_session(opts, images, settings: RunSettings, step_dir: Path, run) -> set[str]:
    """A lone session: the reference here, the others in workers beside it (module docstring)."""
    members = next(iter(sessions_of(images).values()))
    jobs = _jobs(opts, members, settings, step_dir, run)
    reference = choose_reference([job.suffix for job in jobs], opts.reference_suffix)
    plan = plan_session([job.suffix for job in jobs], acquisition_keys(members), reference)
    first, rest = plan[0], plan[1:]
    # each other acquisition's first image with the images that share its distortion
    groups: dict[int, list] = {}
    for step in rest:
        groups.setdefault(step.index if step.shared in (None, first.index) else step.shared, []).append(step)
    nprocs = max(1, opts.nprocs)
    parallel = min(nprocs, len(groups)) or 1
    others = replace(settings, threads=opts.omp_nthreads or max(1, nprocs // parallel))
    warm_up(settings)
    # forked now, before this process starts any thread (the detector's, the progress display's):
    # a lock another thread holds at a fork stays held in the child for ever
    workers = _start_workers(jobs, [list(groups.values())[i::parallel] for i in range(parallel)], others,
                             first.index) if parallel > 1 else []
    logs = {members[step.index].relpath: Path(jobs[step.index].step_log) for step in plan}
    try:
        with RunProgress(logs, len(image_steps(settings, reference=True))) as progress:
            # beside the workers, one thread each; alone, every core
            _deface_steps(jobs, [first], replace(settings, threads=opts.omp_nthreads or
                                                 (max(1, nprocs // (parallel + 1)) if workers else nprocs)))
            if workers:
                for _, go in workers:
                    go.send_bytes(b"go")
                for process, _ in workers:
                    process.join()
            else:  # one core: one after the other, here
                _deface_steps(jobs, [step for steps in groups.values() for step in steps], others)
    finally:
        for process, _ in workers:  # an interrupted run: the run's handler stops them too
            if process.is_alive():
                process.terminate()
    return progress.announced()


def _deface_steps(jobs: list[ImageJob], steps, settings: RunSettings, reference_ready=None, first=None) -> None:
    """``steps`` in order; ``reference_ready`` (a call returning once the image ``first`` is done)
    is awaited by an image registered to ``first`` only where it needs it, before an image that
    shares ``first``'s distortion."""
    for step in steps:
        waits = reference_ready is not None and step.reference == first
        if reference_ready is not None and step.shared == first:
            reference_ready()
        deface_one(jobs[step.index], settings,
                   reference=kept_path(jobs[step.reference]) if step.reference is not None else None,
                   shared=kept_path(jobs[step.shared]) if step.shared is not None else None,
                   keep=kept_path(jobs[step.index]) if step.keep else None,
                   reference_ready=reference_ready if waits else None)


def _start_workers(jobs, shares: list[list[list]], settings: RunSettings, first: int) -> list:
    """One forked process per share of the groups, started now: each loads its images and runs
    their network while the reference is defaced here, and waits for the word that the reference is
    done (or failed: its images then fall back to their own detection) where they need it."""
    context = multiprocessing.get_context("fork")
    workers = []
    for share in shares:
        wait_end, go_end = context.Pipe(duplex=False)
        steps = [step for group in share for step in group]
        process = context.Process(target=_worker, args=(jobs, steps, settings, wait_end, first), daemon=True)
        process.start()
        workers.append((process, go_end))
    return workers


def _worker(jobs, steps, settings: RunSettings, go, first: int) -> None:
    for sig in SIGNALS:  # the run handles the signals and stops its workers
        signal.signal(sig, signal.SIG_IGN if sig == signal.SIGINT else signal.SIG_DFL)
    die_with_parent()
    told = []

    def reference_ready() -> None:  # once: the word that the reference is done (or failed)
        if not told:
            try:
                go.recv_bytes()
            except EOFError:  # the run ended before the reference was done
                os._exit(1)
            told.append(True)

    _deface_steps(jobs, steps, settings, reference_ready, first)
