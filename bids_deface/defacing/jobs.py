"""Each selected image's job, as plain data (:class:`~.settings.ImageJob`), and how the images of a
run group into sessions: what any executor needs, nipype's workflow or the lone image's fast path."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bids_deface.dataset.naming import derivative_paths, qc_paths, raw_paths
from bids_deface.dataset.select import FaceImage
from bids_deface.defacing.session import acquisition_key
from bids_deface.defacing.settings import ImageJob, RunSettings


def image_seed(seed: int, relpath: str) -> int:
    """A seed per image from the run's seed and the image's path: reruns draw the same ear
    noise, while two images of one run do not share it."""
    digest = hashlib.sha256(f"{seed}:{relpath}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def step_log_path(step_dir, image: FaceImage) -> Path:
    """Where the steps of ``image`` record their outcome (one JSON line each)."""
    key = hashlib.sha256(image.relpath.encode()).hexdigest()[:16]
    return Path(step_dir) / f"{key}.jsonl"


def image_job(image: FaceImage, settings: RunSettings, *, seed: int, step_dir, qc_dir=None, **extra) -> ImageJob:
    """What the node of ``image`` needs to know, as plain data."""
    paths = derivative_paths(image) if settings.output_layout == "derivative" else raw_paths(image)
    names = derivative_paths(image)  # the labels' names (written to the curator's --labels-dir only)
    qc_figures, qc_json = qc_paths(image, qc_dir) if qc_dir is not None else (None, None)
    bids_dir = Path(image.path).absolute().parents[len(Path(image.relpath).parts) - 1]
    return ImageJob(path=str(image.path), relpath=image.relpath, bids_dir=str(bids_dir),
                    metadata=dict(image.metadata) if image.metadata else None,
                    outputs={**{k: v for k, v in asdict(paths).items() if v and k not in ("dseg", "dseg_sidecar")},
                             "labels": names.dseg, "labels_sidecar": names.dseg_sidecar,
                             "layout": settings.output_layout},
                    seed=image_seed(seed, image.relpath),
                    step_log=str(step_log_path(step_dir, image)), stem=image.stem, suffix=image.suffix,
                    qc_figures_dir=str(qc_figures) if qc_figures else None,
                    qc_json=str(qc_json) if qc_json else None, **extra)


def sessions_of(images) -> dict[tuple, list[FaceImage]]:
    """The images of each subject and session (or subject, without sessions), in path order."""
    sessions: dict[tuple, list[FaceImage]] = {}
    for image in sorted(images, key=lambda i: i.relpath):
        sessions.setdefault((image.subject, image.session or ""), []).append(image)
    return sessions


def acquisition_keys(images) -> list[str]:
    """Each image's acquisition key: one grid, one acquisition, one distortion (header only)."""
    import nibabel as nib

    keys = []
    for image in images:
        try:
            header = nib.load(image.path)
            shape, affine = header.shape, header.affine
        except Exception:  # unreadable: its own journey reports it; it shares with nobody
            shape, affine = (0, 0, 0), np.eye(4) * (len(keys) + 1)
        keys.append(acquisition_key(image.entities, shape, affine))
    return keys
