"""The fail-closed decision: deface an image only when every selected feature is accounted for.

``decide(detection, localisation, img, features, allow_partial)`` weighs the U-Net detection
(``features.detect``) against the registered template (``features.template``) and returns a
:class:`Decision`. For each selected feature, each expected part (right/left eye, nose,
right/left ear) must be

- found by the detector, within ``TOLERANCE_MM`` of where the registered template puts it
  (source ``unet``); or
- not found, but placed by a sound registration that the detector confirms elsewhere (at least
  ``MIN_CONFIRMING`` detected parts agree with it) on head tissue in the field of view: the
  template region is distorted instead (source ``template``); or
- shown to lie outside the field of view: the template puts (almost) all of it beyond the
  image's edge, and the head reaches that edge where the part leaves it (source ``outside-fov``).

Always refused: no feature found at all (not a head, a phantom, a skull-stripped or defaced
image), data that disagree with the orientation header (the face behind the ears, the nose
above the eyes in world space), a registration that fails its quality checks, and a detection
that disagrees with the template. Refused unless ``allow_partial`` (then defaced with what was
found, and recorded): a part neither found nor accounted for, a feature found more often than
a head has it (the extra part would stay undistorted), implausible distances between the
features and left/right sides that do not match the header.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np

from . import EXPECTED_COMPONENTS, FEATURES, LABELS
from .brainguard import BRAIN_MARGIN_MM, MIN_DEPTH_MM, protect_mask
from .geometry import as_3d
from .template import QUALITY, Localisation, Region

TOLERANCE_MM = {"eyes": 15.0, "nose": 25.0, "ears": 25.0}  # detector vs template, see tests/test_template.py
MIN_VISIBLE = 0.05  # a part with less of itself inside the field of view may lie outside it
MIN_CUT = 0.5  # ... if the head reaches the edge where at least this much of it leaves the view
MIN_TISSUE = 0.5  # the template stands in only where the image holds head tissue
MIN_CONFIRMING = 2  # detected parts that must agree with the template before it may stand in
LABELLED_WITHIN_MM = 20.0  # a detected part counts as found only with label voxels this near its centroid
FALLBACK_MARGIN_MM = 6.0  # a template region grown by this much covers one head's own feature
EYE_DISTANCE_MM = (35.0, 95.0)
EAR_DISTANCE_MM = (100.0, 220.0)
NOSE_FROM_EYES_MM = 80.0
EARS_BEHIND_EYES_MM = 30.0
NOSE_ABOVE_EYES_MM = 10.0
BRAIN_SIZED_LITRES = 2.2  # a head with its skull holds over 3 l even cut at the chin


@dataclass(eq=False)
class Part:
    """One expected part of a feature and what accounts for it."""

    region: Region
    source: str = "missing"  # "unet", "template", "outside-fov", "disagrees" or "missing"
    detected_mm: np.ndarray | None = None  # the detector's centroid matched to it
    agreement_mm: float | None = None

    def as_dict(self) -> dict:
        return {"part": self.region.name, "source": self.source,
                "agreement_mm": None if self.agreement_mm is None else round(self.agreement_mm, 1),
                "visible_fraction": round(self.region.visible_fraction, 3)}


@dataclass
class Decision:
    verdict: str  # "defaced" or "refused"
    reason: str  # one line for a curator; the caller names the file
    labels: np.ndarray  # uint8, the image grid: what to distort (0 background, 1 eyes, 2 nose, 3 ears)
    protect: np.ndarray  # bool, the image grid: what no distortion may change
    provenance: dict = field(default_factory=dict)  # JSON-ready: names and numbers only

    @property
    def defaced(self) -> bool:
        return self.verdict == "defaced"


def _match(found: list[np.ndarray], parts: list[Part]) -> None:
    """Pair detected centroids with the template's parts of one feature (least total distance)."""
    where = [p.region.visible_centroid_mm if p.region.visible_centroid_mm is not None else p.region.centroid_mm
             for p in parts]
    best, best_cost = (), np.inf
    for chosen in itertools.permutations(range(len(parts)), min(len(found), len(parts))):
        cost = sum(np.linalg.norm(found[i] - where[j]) for i, j in enumerate(chosen))
        if cost < best_cost:
            best, best_cost = chosen, cost
    for i, j in enumerate(best):
        parts[j].detected_mm = found[i]
        parts[j].agreement_mm = float(np.linalg.norm(found[i] - where[j]))


def _orientation_problems(c: dict[str, list[np.ndarray]]) -> list[str]:
    """World-space layouts no head has in a correct orientation header (always refused)."""
    out = []
    eyes, nose, ears = c.get("eyes", []), c.get("nose", []), c.get("ears", [])
    if len(eyes) == 2:
        mid = (eyes[0] + eyes[1]) / 2
        if nose and nose[0][1] < mid[1]:
            out.append("the nose lies behind the eyes in world space: the data disagree with the orientation "
                       "header (flipped front to back?)")
        if nose and nose[0][2] > mid[2] + NOSE_ABOVE_EYES_MM:
            out.append("the nose lies above the eyes in world space: the data disagree with the orientation "
                       "header (upside down?)")
        if len(ears) == 2 and (ears[0][1] + ears[1][1]) / 2 > mid[1] - EARS_BEHIND_EYES_MM:
            out.append("the eyes do not lie in front of the ears in world space: the data disagree with the "
                       "orientation header (flipped front to back?)")
    return out


def _plausibility_problems(c: dict[str, list[np.ndarray]]) -> list[str]:
    out = []
    eyes, nose, ears = c.get("eyes", []), c.get("nose", []), c.get("ears", [])
    if len(eyes) == 2:
        d = float(np.linalg.norm(eyes[0] - eyes[1]))
        if not EYE_DISTANCE_MM[0] <= d <= EYE_DISTANCE_MM[1]:
            out.append(f"eyes {d:.0f} mm apart (a head's are {EYE_DISTANCE_MM[0]:.0f}-{EYE_DISTANCE_MM[1]:.0f})")
        mid = (eyes[0] + eyes[1]) / 2
        if nose and np.linalg.norm(nose[0] - mid) > NOSE_FROM_EYES_MM:
            out.append(f"nose {np.linalg.norm(nose[0] - mid):.0f} mm from between the eyes")
        if nose and not min(eyes[0][0], eyes[1][0]) < nose[0][0] < max(eyes[0][0], eyes[1][0]):
            out.append("the eyes do not lie on either side of the nose (left/right against the header)")
        if len(ears) == 2 and (ears[0][0] - mid[0]) * (ears[1][0] - mid[0]) >= 0:
            out.append("both ears lie on one side of the eyes' midline (left/right against the header)")
    if len(ears) == 2:
        d = float(np.linalg.norm(ears[0] - ears[1]))
        if not EAR_DISTANCE_MM[0] <= d <= EAR_DISTANCE_MM[1]:
            out.append(f"ears {d:.0f} mm apart (a head's are {EAR_DISTANCE_MM[0]:.0f}-{EAR_DISTANCE_MM[1]:.0f})")
    return out


def _what_it_may_be(loc: Localisation) -> str:
    """A curator's hint, when the image is no head with a face in the template's sense."""
    structured = loc.registration.mutual_information >= QUALITY["min_mutual_information"]
    if loc.head_litres < BRAIN_SIZED_LITRES and structured:
        return f" (the image holds {loc.head_litres:.1f} l of tissue, a brain's volume: skull-stripped?)"
    if not loc.registration.sound:
        return " (a phantom, or not a head?)" if not structured else ""
    return ""


def _account(parts: list[Part], sound: bool, confirmed: bool) -> None:
    """Set each undetected part's source: template, outside-fov or missing."""
    for p in parts:
        if p.source != "missing" or not sound:
            continue
        r = p.region
        if r.visible_fraction < MIN_VISIBLE and r.cut_fraction >= MIN_CUT:
            p.source = "outside-fov"
        elif confirmed and r.visible_fraction >= MIN_VISIBLE and r.tissue_fraction >= MIN_TISSUE:
            p.source = "template"


def _part_problem(p: Part) -> str:
    r = p.region
    if r.visible_fraction < MIN_VISIBLE:
        return (f"{r.name}: not found; the registered template puts it outside the field of view, but the "
                "head does not reach the edge there")
    if r.tissue_fraction < MIN_TISSUE:
        return f"{r.name}: not found, and the image holds no head tissue where the registered template puts it"
    return f"{r.name}: not found, and the registered template is not confirmed by the detector elsewhere"


def decide(detection, localisation: Localisation, img: nib.spatialimages.SpatialImage,
           features: tuple[str, ...] = FEATURES, allow_partial: bool = False) -> Decision:
    """Whether ``img`` may be defaced, what to distort, and what to protect (see module docstring).

    ``detection``: ``features.detect.detect_features(img)``; ``localisation``:
    ``features.template.localise(img)``; both of this very image's grid. ``features``: the
    selected ones. The labels are what to distort when defaced (also filled when refused, for
    a curator's look); the protect mask is what no distortion may change.
    """
    img, loc = as_3d(img), localisation
    det_labels = np.asarray(detection.labels.dataobj)
    if det_labels.shape != tuple(img.shape) or tuple(loc.shape) != tuple(img.shape):
        raise ValueError(f"detection {det_labels.shape}, localisation {loc.shape} and image {img.shape} differ in shape")
    seen = {f: [np.asarray(c, float) for c in detection.centroids_mm.get(f, [])] for f in FEATURES}
    parts = _accounted_parts(_labelled_centroids(seen, det_labels, img.affine), loc, features)
    always, partial = _problems(detection, seen, loc, parts, features)  # layout: whatever the network saw
    refused = bool(always) or (bool(partial) and not allow_partial)
    data = np.asarray(img.dataobj, dtype=np.float32)
    labels = _labels(det_labels, data, loc, parts, features)
    protect = protect_mask(data, img.affine, loc)
    verdict = "refused" if refused else "defaced"
    reason = _reason(always, partial, allow_partial)
    provenance = _provenance(detection, loc, parts, features, allow_partial, labels, protect,
                             always + partial, verdict, reason)
    return Decision(verdict, reason, labels, protect, provenance)


def _labelled_centroids(seen: dict[str, list[np.ndarray]], det_labels: np.ndarray,
                        affine: np.ndarray) -> dict[str, list[np.ndarray]]:
    """The detector's centroids that its full-resolution labels hold voxels of (within
    ``LABELLED_WITHIN_MM``): a part the network saw but whose extent came out empty would
    otherwise count as found while nothing of it is distorted."""
    inverse = np.linalg.inv(affine)
    reach = LABELLED_WITHIN_MM / np.sqrt((affine[:3, :3] ** 2).sum(0))  # voxels along each axis

    def labelled(centre: np.ndarray, value: int) -> bool:
        ijk = nib.affines.apply_affine(inverse, centre)
        lo = np.clip(np.floor(ijk - reach).astype(int), 0, det_labels.shape)
        hi = np.clip(np.ceil(ijk + reach).astype(int) + 1, 0, det_labels.shape)
        idx = np.argwhere(det_labels[tuple(slice(a, b) for a, b in zip(lo, hi))] == value)
        if idx.size == 0:
            return False
        world = nib.affines.apply_affine(affine, idx + lo)
        return bool(np.min(np.linalg.norm(world - centre, axis=1)) <= LABELLED_WITHIN_MM)

    return {f: [c for c in seen[f] if labelled(c, LABELS[f])] for f in FEATURES}


def _accounted_parts(found: dict[str, list[np.ndarray]], loc: Localisation, features) -> dict[str, list[Part]]:
    """Each template part, matched to the detector's parts, with the source that accounts for it."""
    parts = {f: [Part(r) for r in loc.regions if r.feature == f] for f in FEATURES}
    for f in FEATURES:
        _match(found[f], parts[f])
        for p in parts[f]:
            if p.agreement_mm is None:
                continue
            p.source = "disagrees" if p.agreement_mm > TOLERANCE_MM[f] and f in features else "unet"
    confirmed = sum(p.source == "unet" for f in FEATURES for p in parts[f]) >= MIN_CONFIRMING
    for f in features:
        _account(parts[f], loc.registration.sound, confirmed)
    return parts


def _problems(detection, found, loc: Localisation, parts: dict[str, list[Part]], features) -> tuple[list, list]:
    """(problems that always refuse, problems that refuse unless partial defacing is allowed)."""
    reg, always = loc.registration, []
    if not any(found.values()):
        always.append("no eyes, nose or ears found: not a head with its face in the field of view"
                      + _what_it_may_be(loc))
    always += _orientation_problems(found)
    if loc.header_mismatch and not always:
        always.append(f"the template head fits only with the data flipped {loc.header_mismatch}: the data "
                      "disagree with the orientation header")
    if not reg.sound and not always:
        always.append("the template head does not register soundly onto the image" + _what_it_may_be(loc)
                      + ": " + "; ".join(reg.failures))
    always += [f"{p.region.name}: the detector and the registered template disagree by {p.agreement_mm:.0f} mm "
               f"(tolerance {TOLERANCE_MM[f]:.0f} mm)" for f in features for p in parts[f] if p.source == "disagrees"]
    partial = _plausibility_problems(found)
    for f in features:
        if detection.components.get(f, 0) > EXPECTED_COMPONENTS[f]:
            partial.append(f"{f}: {detection.components[f]} found where a head has {EXPECTED_COMPONENTS[f]}; "
                           "the extra one would stay undistorted")
        partial += [_part_problem(p) for p in parts[f] if p.source == "missing"]
    return always, partial


def _reason(always: list[str], partial: list[str], allow_partial: bool) -> str:
    if always:
        more = len(always) - 1 + (0 if allow_partial else len(partial))
        return always[0] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
    if partial:
        return "; ".join(partial) + (" (--allow-partial given: defaced with what was found)" if allow_partial
                                     else "; --allow-partial defaces what was found")
    return "every selected feature found by the detector, placed by the template, or outside the field of view"


def _labels(det_labels: np.ndarray, data: np.ndarray, loc: Localisation, parts: dict[str, list[Part]],
            features) -> np.ndarray:
    """What to distort: the detector's labels of the selected features, plus template stand-ins."""
    labels = np.zeros(det_labels.shape, np.uint8)
    tissue = data > loc.air_threshold
    for f in features:
        value = LABELS[f]
        if any(p.source == "unet" for p in parts[f]):
            labels[(det_labels == value) & (labels == 0)] = value
        for p in parts[f]:
            if p.source == "template":
                labels[loc.region_mask(p.region, FALLBACK_MARGIN_MM) & tissue & (labels == 0)] = value
    return labels


def _provenance(detection, loc, parts, features, allow_partial, labels, protect, problems, verdict, reason) -> dict:
    return {
        "verdict": verdict,
        "reason": reason,
        "allow_partial": bool(allow_partial),
        "problems": list(problems),
        "features": {f: {"selected": f in features, "expected": EXPECTED_COMPONENTS[f],
                         "detector_components": int(detection.components.get(f, 0)),
                         "detector_confidence": round(float(detection.confidence.get(f, 0.0)), 3),
                         "parts": [p.as_dict() for p in parts[f]],
                         "voxels": int(np.count_nonzero(labels == LABELS[f]))} for f in FEATURES},
        "tolerance_mm": dict(TOLERANCE_MM),
        "registration": loc.registration.as_dict(),
        "head_litres": round(loc.head_litres, 2),
        "brain_guard": {"brain_margin_mm": BRAIN_MARGIN_MM, "min_depth_mm": MIN_DEPTH_MM,
                        "protected_voxels": int(np.count_nonzero(protect)),
                        "label_voxels_protected": int(np.count_nonzero(protect & (labels > 0)))},
    }
