"""Is there a face on any render? QC's three offline detectors, at QC's thresholds, by QC's rule.

Which detector reads which view, the thresholds and what counts as a face found are QC's
(:mod:`bids_deface.qc.facecheck`: :func:`~bids_deface.qc.facecheck.detector_views`,
:data:`~bids_deface.qc.facecheck.THRESHOLDS`, :func:`~bids_deface.qc.facecheck.finds_face`,
calibrated on the real heads of DATA.md against crudely defaced ones); they are not retuned
here. As in QC, every view counts, the pure profiles too.
"""

from __future__ import annotations

from bids_deface.check.findings import Finding
from bids_deface.check.views import Renders
from bids_deface.qc.facecheck import THRESHOLDS, finds_face, view_scores
from bids_deface.qc.facecheck import detector_views as _detector_views


def detector_views(renders: Renders) -> dict[str, list[str]]:
    """``{detector: [views it reads]}``."""
    return _detector_views({name: view.pitch for name, view in renders.views.items()})


def face_scores(renders: Renders) -> dict[str, dict[str, float | None]]:
    """``{detector: {view: best score or None}}`` over :func:`detector_views`."""
    return view_scores(renders.images, {name: view.pitch for name, view in renders.views.items()})


def face_findings(path: str, scores: dict[str, dict[str, float | None]]) -> list[Finding]:
    """One finding per view on which at least one detector finds a face."""
    hits: dict[str, list[str]] = {}
    for det, per_view in scores.items():
        for view, value in per_view.items():
            if finds_face(det, value):
                hits.setdefault(view, []).append(f"{det} {value:.2f} >= {THRESHOLDS[det]:g}")
    return [Finding(path, "face", view, "; ".join(dets)) for view, dets in hits.items()]
