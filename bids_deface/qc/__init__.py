"""Quality control: proof that the face is gone and the brain is not.

For each defaced image, :func:`run_qc` writes before/after 3D renders and slice overlays,
scores every render with offline face detectors, and counts the voxels changed inside a
brain mask registered from a template. :func:`write_participant_report` and
:func:`write_group_index` turn the results into self-contained HTML.

Policy: an image on which a detector still finds a face after defacing, on a render between
−45° and +45° of yaw, *fails* (``result["failed"]``; the app exits non-zero) unless the face
check is turned off; a face read in a pure profile (±90°) after defacing, changed
brain voxels, and an original on which no face was found (so the check proves little), are
*flagged* for a curator (``result["flags"]``).
"""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw

from .brainmask import brain_mask, brain_voxels_changed
from .facecheck import DETECTORS, THRESHOLDS, face_detected, face_scores, faces_found
from .overlay import brain_figure, labels_figure
from .render import VIEWS, ras_volume, render_setup, render_views
from .report import write_group_index, write_participant_report

# views whose face detection after defacing fails the image (yaw within ±45°)
GATED_VIEWS = frozenset({"left45", "frontal", "right45"})

__all__ = ["run_qc", "qc_failed", "figure_name", "write_participant_report", "write_group_index"]


def figure_name(stem: str, desc: str, ext: str = ".png") -> str:
    """BIDS-style figure name: ``sub-01_ses-1_T1w`` + ``render`` -> ``sub-01_ses-1_desc-render_T1w.png``.

    ``stem`` is the source image's file name without extension; its last part, the suffix,
    stays last, and an existing ``desc`` entity is replaced.
    """
    parts = Path(stem).name.split("_")
    if len(parts) < 2 or "-" in parts[-1]:
        raise ValueError(f"QC figures: {stem!r} does not end with a BIDS suffix (e.g. sub-01_T1w)")
    entities = [p for p in parts[:-1] if not p.startswith("desc-")]
    return "_".join(entities + [f"desc-{desc}", parts[-1]]) + ext


def _render_figure(before: dict[str, np.ndarray], after: dict[str, np.ndarray],
                   found_after: dict[str, list[str]]) -> Image.Image:
    """Two rows of renders (before, after); views where a face was found after are framed red."""
    views = list(before)
    h, w = next(iter(before.values())).shape
    pad, top = 4, 16
    fig = Image.new("RGB", (len(views) * (w + pad) + 60, 2 * (h + top + pad)), (20, 20, 20))
    draw = ImageDraw.Draw(fig)
    for row, (label, renders) in enumerate((("before", before), ("after", after))):
        y = row * (h + top + pad)
        draw.text((4, y + top + h // 2), label, fill=(255, 255, 255))
        for col, view in enumerate(views):
            x = 60 + col * (w + pad)
            fig.paste(Image.fromarray(renders[view]).convert("RGB"), (x, y + top))
            hits = [d for d, vs in found_after.items() if view in vs] if row == 1 else []
            draw.text((x + 2, y + 2), view + (" FACE: " + ",".join(hits) if hits else ""),
                      fill=(255, 80, 80) if hits else (200, 200, 200))
            if hits:
                draw.rectangle([x, y + top, x + w - 1, y + top + h - 1], outline=(255, 0, 0), width=3)
    return fig


def _suffix(stem: str) -> str:
    return Path(stem).name.split("_")[-1]


def run_qc(original: nib.Nifti1Image, defaced: nib.Nifti1Image, labels: nib.Nifti1Image,
           figures_dir: Path, stem: str, *, face_check: bool = True) -> dict:
    """Check one defaced image against its original; write its figures.

    Inputs: the original and defaced images (same grid), the feature label image (same grid),
    the folder for figures, the source image's name without extension (``sub-01_T1w``), and
    whether to run the face detectors.
    Writes ``figures_dir/<entities>_desc-{render,facialfeatures,brainmask}_<suffix>.png``.
    Returns a JSON-serialisable dict: ``face_check`` (scores per detector and view, before and
    after, thresholds), ``face_detected_after`` (None when the check is off),
    ``face_detected_before``, ``brain_voxels_changed``, ``brain_mask_voxels``,
    ``brain_mask_method``, ``figures`` (paths), ``failed``, ``failures``, ``flags``,
    ``seconds``, ``seconds_per_view``.
    """
    t0 = time.perf_counter()
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    names = {k: figure_name(stem, d) for k, d in (("render", "render"), ("labels", "facialfeatures"), ("brain", "brainmask"))}

    vol_before = ras_volume(original)
    setup = render_setup(vol_before)  # one threshold and camera for both
    t_render = time.perf_counter()
    before = render_views(vol_before, setup)
    after = render_views(defaced, setup)
    seconds_per_view = (time.perf_counter() - t_render) / (2 * len(VIEWS))

    face: dict = {"enabled": face_check, "views": dict(VIEWS), "thresholds": dict(THRESHOLDS),
                  "render_threshold": setup.threshold, "pixel_mm": setup.pixel_mm}
    found_after: dict[str, list[str]] = {}
    if face_check:
        face["before"] = face_scores(before, DETECTORS)
        face["after"] = face_scores(after, DETECTORS)
        found_after = faces_found(face["after"])
        face["found_before"] = faces_found(face["before"])
        face["found_after"] = found_after
    _render_figure(before, after, found_after).save(figures_dir / names["render"])
    labels_figure(original, labels).save(figures_dir / names["labels"])

    bm = brain_mask(original, _suffix(stem))
    changed = brain_voxels_changed(original, defaced, bm.mask)
    brain_figure(defaced, bm.mask, original).save(figures_dir / names["brain"])

    failures, flags = [], []
    detected_before = face_detected(face["before"]) if face_check else None
    # the pass/fail gate looks at the views face recognition works on (frontal to ±45°);
    # a detector firing on a pure profile is flagged for the curator to look at
    gated = {d: [v for v in views if v in GATED_VIEWS] for d, views in found_after.items()}
    gated = {d: v for d, v in gated.items() if v}
    profiles = {d: [v for v in views if v not in GATED_VIEWS] for d, views in found_after.items()}
    profiles = {d: v for d, v in profiles.items() if v}
    detected_after = bool(gated) if face_check else None
    if face_check:
        face["gated_views"] = sorted(GATED_VIEWS)
    if gated:
        where = "; ".join(f"{d} on {', '.join(v)}" for d, v in gated.items())
        failures.append(f"{stem}: a face is still detected after defacing ({where})")
    if profiles:
        where = "; ".join(f"{d} on {', '.join(v)}" for d, v in profiles.items())
        flags.append(f"{stem}: a detector reads a face in a profile render after defacing ({where}); look at it")
    if face_check and not detected_before:
        flags.append(f"{stem}: no detector found a face on the original renders, so the face check proves little")
    if changed:
        flags.append(f"{stem}: {changed} voxels changed inside the brain mask")
    litres = float(bm.mask.sum() * np.prod(np.abs(original.header.get_zooms()[:3]))) / 1e6
    if not 0.8 < litres < 2.5:  # adult intracranial volumes lie within ~1.1-1.9 l
        flags.append(f"{stem}: the registered brain mask holds {litres:.2f} l, implausible for a brain: "
                     "registration doubtful, brain preservation not shown")
    return {
        "image": stem,
        "face_check": face,
        "face_detected_after": detected_after,
        "face_detected_before": detected_before,
        "brain_voxels_changed": changed,
        "brain_mask_voxels": int(bm.mask.sum()),
        "brain_mask_litres": round(litres, 3),
        "brain_mask_method": bm.method,
        "brain_mask_template": bm.template,
        "figures": {k: str(figures_dir / n) for k, n in names.items()},
        "failed": bool(failures),
        "failures": failures,
        "flags": flags,
        "seconds": round(time.perf_counter() - t0, 2),
        "seconds_per_view": round(seconds_per_view, 3),
    }


def qc_failed(result: dict) -> bool:
    """True when QC says the image must not be released (a face still detected after defacing)."""
    return bool(result.get("failed"))
