"""The workflow over all selected images of a dataset, session by session.

Each node runs one image's whole journey in memory (:func:`bids_deface.defacing.image.deface_one`):
the input is read once and nothing intermediate is written; every step records its own outcome in the
image's step log. In a session, the reference image's node runs first and the others are linked to
it (:mod:`bids_deface.defacing.session`). nipype provides the execution: in this process (Linear), on
local processes (MultiProc), or as cluster jobs (SLURM …), one job per session.
"""

from __future__ import annotations

from nipype.pipeline import engine as pe

from bids_deface.dataset.select import FaceImage
from bids_deface.defacing.jobs import acquisition_keys, image_job, sessions_of
from bids_deface.defacing.session import choose_reference
from bids_deface.defacing.session_plan import kept_path, plan_session
from bids_deface.defacing.settings import RunSettings
from bids_deface.interfaces.image import DefaceImage, DefaceSession
from bids_deface.workflows.execution import unique_node_name

# memory of one image's journey (a 1 mm head: input, RAS copy, defaced copy, detector, QC renders)
MEM_GB = 1.5


def node_name(image: FaceImage, taken: set[str], what: str = "") -> str:
    """A nipype-safe, readable, unique name: ``deface_sub_01_ses_a_T1w`` (``deface_session_sub_01_ses_a``)."""
    stem = image.stem if not what else "_".join(p for p in image.stem.split("_") if p.startswith(("sub-", "ses-")))
    return unique_node_name("deface_" + what if what else "deface", stem, taken)


def init_bids_deface_wf(*, images, settings: RunSettings, step_dir, seed: int = 0, qc_dir=None,
                        reference_suffix: str = "T1w", session_nodes: bool = False, name: str = "bids_deface_wf"):
    """The images of each session, defaced from one shared reference detection.

    Parameters
    ----------
    images : list of :class:`bids_deface.dataset.select.FaceImage`.
    settings : the run's :class:`~bids_deface.defacing.settings.RunSettings`.
    step_dir : folder (in the private work directory) of the images' step logs
        (:func:`step_log_path`).
    seed : the run's seed (each image gets its own, :func:`image_seed`).
    qc_dir : where QC keeps its figures and results (outside the output), when QC runs.
    reference_suffix : the suffix of each session's reference image (T1w).
    session_nodes : one node per session (a cluster job: the session is the unit of work), else one
        node per image, linked to the image it registers to or shares with (parallel locally).

    Returns
    -------
    (workflow, {node name: images})
    """
    wf = pe.Workflow(name=name)
    by_name: dict[str, list[FaceImage]] = {}
    taken: set[str] = set()
    for (subject, session), members in sessions_of(images).items():
        jobs = [image_job(image, settings, seed=seed, step_dir=step_dir, qc_dir=qc_dir) for image in members]
        keys = acquisition_keys(members)
        reference = choose_reference([image.suffix for image in members], reference_suffix)
        if session_nodes or (reference is None and len(members) > 1):
            node = pe.Node(DefaceSession(jobs=[j.as_dict() for j in jobs], keys=keys, settings=settings.as_dict(),
                                         reference_suffix=reference_suffix),
                           name=node_name(members[0], taken, "session"), n_procs=settings.threads, mem_gb=MEM_GB)
            node.overwrite = True
            wf.add_nodes([node])
            by_name[node.name] = members
            continue
        nodes: dict[int, pe.Node] = {}
        for step in plan_session([image.suffix for image in members], keys, reference):
            job = jobs[step.index]
            node = pe.Node(DefaceImage(job=job.as_dict(), settings=settings.as_dict(),
                                       keep_file=kept_path(job) if step.keep else ""),
                           name=node_name(members[step.index], taken), n_procs=settings.threads, mem_gb=MEM_GB)
            # always run: the outputs live outside the work directory, which nipype's cache cannot see
            node.overwrite = True
            nodes[step.index] = node
            wf.add_nodes([node])
            if step.reference is not None:
                wf.connect(nodes[step.reference], "kept", node, "reference_file")
            if step.shared is not None:
                wf.connect(nodes[step.shared], "kept", node, "shared_file")
            by_name[node.name] = [members[step.index]]
    return wf, by_name
