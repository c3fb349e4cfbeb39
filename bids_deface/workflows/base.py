"""The workflow over all selected images of a dataset."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from nipype.pipeline import engine as pe

from bids_deface.features import FEATURES
from bids_deface.dataset.naming import derivative_paths, qc_paths, raw_paths
from bids_deface.dataset.select import FaceImage
from bids_deface.workflows.deface import init_deface_wf


def image_seed(seed: int, relpath: str) -> int:
    """A seed per image from the run's seed and the image's path: reruns draw the same ear
    noise, while two images of one run do not share it."""
    digest = hashlib.sha256(f"{seed}:{relpath}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def workflow_name(image: FaceImage, taken: set[str]) -> str:
    """A nipype-safe, readable, unique name: ``deface_sub_01_ses_a_T1w_wf``."""
    base = "deface_" + re.sub(r"[^0-9A-Za-z]", "_", image.stem)
    name, i = f"{base}_wf", 1
    while name in taken:
        i += 1
        name = f"{base}_{i}_wf"
    taken.add(name)
    return name


def step_log_path(step_dir, image: FaceImage) -> Path:
    """Where the steps of ``image`` record their outcome (one JSON line each)."""
    key = hashlib.sha256(image.relpath.encode()).hexdigest()[:16]
    return Path(step_dir) / f"{key}.jsonl"


def init_bids_deface_wf(*, images, output_dir, step_dir, output_layout="derivative", features=FEATURES, seed=0,
                        omp_nthreads=1, policy_file=None, margins=None, qc_dir=None, name="bids_deface_wf"):
    """One :func:`init_deface_wf` per image, all in one workflow.

    Parameters
    ----------
    images : list of :class:`bids_deface.bids.FaceImage`.
    output_dir : root of the output dataset.
    step_dir : folder (in the private work directory) of the images' step logs, see
        :func:`step_log_path`.
    output_layout : ``"derivative"`` (``…_desc-defaced_<suffix>`` + labels) or ``"raw"`` (the
        input's own names; sidecars are written by the raw copy, not here).
    features, seed, omp_nthreads, policy_file, margins : see :func:`init_deface_wf`.
    qc_dir : run QC and keep its figures and results here (see :func:`qc_paths`).

    Returns
    -------
    (workflow, {per-image workflow name: image})
    """
    wf = pe.Workflow(name=name)
    by_name: dict[str, FaceImage] = {}
    taken: set[str] = set()
    for image in images:
        paths = derivative_paths(image) if output_layout == "derivative" else raw_paths(image)
        sub = init_deface_wf(features=features, omp_nthreads=omp_nthreads, policy_file=policy_file,
                             margins=margins, qc=qc_dir is not None, name=workflow_name(image, taken))
        inputs = sub.get_node("inputnode").inputs
        inputs.in_file = str(image.path)
        inputs.source_relpath = image.relpath
        inputs.metadata = dict(image.metadata)
        inputs.seed = image_seed(seed, image.relpath)
        inputs.output_dir = str(output_dir)
        inputs.out_image = paths.image
        inputs.out_sidecar = paths.sidecar if output_layout == "derivative" else ""
        inputs.out_dseg = paths.dseg or ""
        inputs.out_dseg_sidecar = paths.dseg_sidecar or ""
        inputs.out_record = paths.record
        inputs.stem = image.stem
        inputs.step_log = str(step_log_path(step_dir, image))
        if qc_dir is not None:
            figures, result = qc_paths(image, qc_dir)
            inputs.qc_figures_dir, inputs.qc_json = str(figures), str(result)
        wf.add_nodes([sub])
        by_name[sub.name] = image
    return wf, by_name
