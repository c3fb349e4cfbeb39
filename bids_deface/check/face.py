"""Is there a face on any render? QC's three offline detectors, at QC's thresholds.

CenterFace and dlib's HOG detector (a few hundredths of a second a render) read every view;
dlib's CNN (about 0.35 s a render on one core) reads the nine yaws of the level head
(:data:`CNN_PITCHES`), which keeps a 1 mm head within a few seconds. The thresholds are QC's
(:data:`bids_deface.qc.facecheck.THRESHOLDS`, calibrated on the real heads of DATA.md against
crudely defaced ones); they are not retuned here. Unlike QC, every view counts: a face read in a
pure profile flags the image too (a curator looks, rather than the check deciding it away).
"""

from __future__ import annotations

from bids_deface.check.findings import Finding
from bids_deface.check.views import Renders
from bids_deface.qc.facecheck import DETECTORS, THRESHOLDS, finds_face, score

CNN_PITCHES: tuple[float, ...] = (0.0,)


def detector_views(renders: Renders) -> dict[str, list[str]]:
    """``{detector: [views it reads]}``."""
    every = list(renders.images)
    cnn = [name for name in every if renders.views[name].pitch in CNN_PITCHES]
    return {det: (cnn if det == "dlib_cnn" else every) for det in DETECTORS}


def face_scores(renders: Renders) -> dict[str, dict[str, float | None]]:
    """``{detector: {view: best score or None}}`` over :func:`detector_views`."""
    return {det: {view: score(det, renders.images[view]) for view in views}
            for det, views in detector_views(renders).items()}


def face_findings(path: str, scores: dict[str, dict[str, float | None]]) -> list[Finding]:
    """One finding per view on which at least one detector finds a face."""
    hits: dict[str, list[str]] = {}
    for det, per_view in scores.items():
        for view, value in per_view.items():
            if finds_face(det, value):
                hits.setdefault(view, []).append(f"{det} {value:.2f} >= {THRESHOLDS[det]:g}")
    return [Finding(path, "face", view, "; ".join(dets)) for view, dets in hits.items()]
