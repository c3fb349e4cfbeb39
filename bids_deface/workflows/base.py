"""The workflow over all selected images of a dataset: one node per image.

Each node runs one image's whole journey in memory (:func:`bids_deface.defacing.image.deface_one`):
the input is read once and nothing intermediate is written; every step records its own outcome in the
image's step log. nipype provides the execution: in this process (Linear), on local processes
(MultiProc) or as cluster jobs (SLURM …), one job per image.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict
from pathlib import Path

from nipype.pipeline import engine as pe

from bids_deface.dataset.naming import derivative_paths, qc_paths, raw_paths
from bids_deface.dataset.select import FaceImage
from bids_deface.defacing.settings import ImageJob, RunSettings
from bids_deface.interfaces.image import DefaceImage

# memory of one image's journey (a 1 mm head: input, RAS copy, defaced copy, detector, QC renders)
MEM_GB = 1.5


def image_seed(seed: int, relpath: str) -> int:
    """A seed per image from the run's seed and the image's path: reruns draw the same ear
    noise, while two images of one run do not share it."""
    digest = hashlib.sha256(f"{seed}:{relpath}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def node_name(image: FaceImage, taken: set[str]) -> str:
    """A nipype-safe, readable, unique name: ``deface_sub_01_ses_a_T1w``."""
    base = "deface_" + re.sub(r"[^0-9A-Za-z]", "_", image.stem)
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def step_log_path(step_dir, image: FaceImage) -> Path:
    """Where the steps of ``image`` record their outcome (one JSON line each)."""
    key = hashlib.sha256(image.relpath.encode()).hexdigest()[:16]
    return Path(step_dir) / f"{key}.jsonl"


def image_job(image: FaceImage, settings: RunSettings, *, seed: int, step_dir, qc_dir=None, **extra) -> ImageJob:
    """What the node of ``image`` needs to know, as plain data."""
    paths = derivative_paths(image) if settings.output_layout == "derivative" else raw_paths(image)
    qc_figures, qc_json = qc_paths(image, qc_dir) if qc_dir is not None else (None, None)
    bids_dir = Path(image.path).absolute().parents[len(Path(image.relpath).parts) - 1]
    return ImageJob(path=str(image.path), relpath=image.relpath, bids_dir=str(bids_dir),
                    metadata=dict(image.metadata) if image.metadata else None,
                    outputs={k: v for k, v in asdict(paths).items() if v}, seed=image_seed(seed, image.relpath),
                    step_log=str(step_log_path(step_dir, image)), stem=image.stem, suffix=image.suffix,
                    qc_figures_dir=str(qc_figures) if qc_figures else None,
                    qc_json=str(qc_json) if qc_json else None, **extra)


def init_bids_deface_wf(*, images, settings: RunSettings, step_dir, seed: int = 0, qc_dir=None,
                        name: str = "bids_deface_wf"):
    """One :class:`~bids_deface.interfaces.image.DefaceImage` node per image.

    Parameters
    ----------
    images : list of :class:`bids_deface.dataset.select.FaceImage`.
    settings : the run's :class:`~bids_deface.defacing.settings.RunSettings`.
    step_dir : folder (in the private work directory) of the images' step logs
        (:func:`step_log_path`).
    seed : the run's seed (each image gets its own, :func:`image_seed`).
    qc_dir : where QC keeps its figures and results (outside the output), when QC runs.

    Returns
    -------
    (workflow, {node name: image})
    """
    wf = pe.Workflow(name=name)
    by_name: dict[str, FaceImage] = {}
    taken: set[str] = set()
    for image in images:
        job = image_job(image, settings, seed=seed, step_dir=step_dir, qc_dir=qc_dir)
        node = pe.Node(DefaceImage(job=job.as_dict(), settings=settings.as_dict()), name=node_name(image, taken),
                       n_procs=settings.threads, mem_gb=MEM_GB)
        # always run: the outputs live outside the work directory, which nipype's cache cannot see
        node.overwrite = True
        wf.add_nodes([node])
        by_name[node.name] = image
    return wf, by_name
