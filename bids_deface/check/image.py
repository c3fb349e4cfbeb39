"""Check one image: its header (text fields, extensions) and, when it can show a face, renders
of its head surface read by the face detectors and the ear check.

:func:`check_image` is the unit of work (one nipype node, one process): it reads the file, never
writes into the dataset, and writes the renders behind its findings as PNGs into ``figures_dir``
(a private folder: they show the face it found).
"""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from bids_deface.check.ears import ear_areas, ear_findings, outline_overlay
from bids_deface.check.face import detector_views, face_findings, face_scores
from bids_deface.check.findings import FileResult, Finding
from bids_deface.check.views import PITCHES, YAWS, check_renders
from bids_deface.dataset.faces import can_show_face
from bids_deface.metadata.nifti import NIFTI_TEXT_FIELDS
from bids_deface.qc.render import RasVolume, ras_volume, render_setup


def header_findings(path: str, header) -> list[Finding]:
    """Free-text header fields that hold text, and every header extension (named by code)."""
    out = [Finding(path, "header", name, "holds text") for name in NIFTI_TEXT_FIELDS
           if name in header and bytes(header[name]).strip(b"\x00 ")]
    for ext in getattr(header, "extensions", []):
        code = ext.get_code()
        label = nib.nifti1.extension_codes.label[code] if code in nib.nifti1.extension_codes else str(code)
        out.append(Finding(path, "extension", label, f"{len(ext.get_content())} bytes"))
    return out


def first_volume(img: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    """The first 3D volume of ``img`` (the whole image when it is one)."""
    if img.ndim == 3:
        return img
    if img.ndim > 3 and min(img.shape[:3]) >= 2:
        data = np.asanyarray(img.dataobj[(slice(None),) * 3 + (0,) * (img.ndim - 3)], dtype=np.float32)
        return nib.Nifti1Image(data, img.affine)
    raise ValueError(f"shape {img.shape} is not a volume")


def _save_figures(renders, views: set[str], ear_views: set[str], figures_dir: Path, stem: str) -> dict[str, str]:
    figures_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for view in sorted(views):
        picture = renders.images[view]
        if view in ear_views:
            picture = outline_overlay(picture, renders.depths[view], renders.pixel_mm)
        png = figures_dir / f"{stem}_{view}.png"
        Image.fromarray(picture).save(png)
        out[view] = str(png)
    return out


def check_surface(path: str, vol: RasVolume, figures_dir: Path | None = None, stem: str = "image") -> FileResult:
    """Render ``vol`` from every view and read the renders (faces, ears)."""
    result = FileResult(path, "image")
    t0 = time.perf_counter()
    renders = check_renders(vol, render_setup(vol))
    t1 = time.perf_counter()
    scores = face_scores(renders)
    areas = ear_areas(renders)
    faces, ears = face_findings(path, scores), ear_findings(path, areas)
    result.findings += faces + ears
    result.facts.update({
        "views": {"yaws": list(YAWS), "pitches": list(PITCHES)},
        "detector_views": {d: len(v) for d, v in detector_views(renders).items()},
        "face_scores": {d: {v: (None if s is None else round(s, 3)) for v, s in per.items()} for d, per in scores.items()},
        "ear_areas_mm2": areas,
        "seconds_render": round(t1 - t0, 2), "seconds_read": round(time.perf_counter() - t1, 2)})
    if figures_dir is not None and result.findings:
        result.figures = _save_figures(renders, {f.where for f in faces + ears}, {f.where for f in ears},
                                       Path(figures_dir), stem)
    return result


def check_image(file: str | Path, relpath: str, figures_dir: str | Path | None = None) -> FileResult:
    """Every check of one NIfTI file of the dataset (see the module docstring)."""
    t0 = time.perf_counter()
    result = FileResult(relpath, "image")
    try:
        img = nib.load(str(file))
        header = img.header
    except Exception as exc:  # nibabel raises many kinds for a bad file
        result.findings.append(Finding(relpath, "unreadable", "", f"not a readable NIfTI image: {type(exc).__name__}"))
        return result
    result.findings += header_findings(relpath, header)
    verdict = can_show_face(relpath, header)
    result.facts["can_show_face"] = verdict.reason
    if verdict:
        stem = Path(relpath).name.split(".")[0]
        try:
            vol = ras_volume(first_volume(img))
            surface = check_surface(relpath, vol, figures_dir, stem)
        except Exception as exc:  # a truncated file, no head above the threshold …
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            result.findings.append(Finding(relpath, "unreadable", "", f"no surface could be rendered: {message}"))
        else:
            result.findings += surface.findings
            result.figures, result.facts = surface.figures, {**result.facts, **surface.facts}
    result.facts["seconds"] = round(time.perf_counter() - t0, 2)
    return result
