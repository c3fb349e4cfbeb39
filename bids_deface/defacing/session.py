"""One face per session: every image of a session defaced from a shared, registered detection.

The images of one subject and session show one face. The session's *reference* (T1w by default)
is detected and defaced first; what was distorted on it (its final feature labels) is carried onto
each other image by a rigid registration (mutual information: contrasts differ), united with that
image's own detection, and the union goes through the image's own fail-closed gate. A low-contrast
or thick-slice image then loses no feature the reference shows plainly, and the distorted regions
agree between contrasts. Images of one acquisition on one grid (echoes, parts, inversions of
MEGRE/MP2RAGE/MPM, a fieldmap's magnitude and phase) share one distortion: the first of them is
defaced, the others take its labels and protect mask as they are.

A registration that fails its quality check leaves the image with its own detection (the
provenance says so); if that fails the gate too, the image is refused (fail closed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from bids_deface.features import EXPECTED_COMPONENTS, LABELS

# entities that tell apart the images of one acquisition (same grid, same head position)
ACQUISITION_PARTS = ("echo", "part", "inv", "flip", "mt")
# fieldmap images of one acquisition
FIELDMAP_PARTS = {"magnitude": "fmap", "magnitude1": "fmap", "magnitude2": "fmap", "phasediff": "fmap",
                  "phase1": "fmap", "phase2": "fmap"}
# a session's images share the scanner's frame: the head moves a little between them
MAX_MOTION_MM, MAX_MOTION_DEG = 30.0, 20.0
MIN_MUTUAL_INFORMATION = 0.25
MIN_HEAD_DICE = 0.80
MIN_PART_VOXELS = 20  # a carried component smaller than this is a rounding speck
MIN_RELATIVE_SIZE = 0.2  # of the feature's largest part (as the detector counts parts)
MERGE_MM = 4.0


@dataclass
class SessionReference:
    """What the other images of a session need from the reference (or an acquisition's first
    image): its relpath, what was distorted on it, what was protected, and its image at 4 mm."""

    relpath: str
    affine: np.ndarray  # RAS affine of the labels and protect mask
    labels: np.ndarray  # uint8: the distorted features
    protect: np.ndarray  # bool: the brain guard
    brain: np.ndarray  # bool: the registered brain mask
    coarse: np.ndarray  # the image at about 4 mm, for the registration
    coarse_affine: np.ndarray
    grid: tuple = ()  # (shape, affine) of the image as stored: an acquisition shares it
    detection: dict = field(default_factory=dict)  # model sha256, confidence, components (JSON-ready)
    distorted: np.ndarray | None = None  # uint8: per voxel, the feature whose operator changed it
    regions: object = None  # its KeptRegions (the group report's), which a shared image keeps as its own

    def save(self, path: str | Path) -> None:
        if self.regions is not None:
            self.regions.save(_regions_path(path))
        np.savez(path, relpath=self.relpath, affine=self.affine, labels=self.labels,
                            protect=np.packbits(self.protect), brain=np.packbits(self.brain),
                            shape=np.array(self.labels.shape), coarse=self.coarse, coarse_affine=self.coarse_affine,
                            grid_shape=np.array(self.grid[0]), grid_affine=np.asarray(self.grid[1]),
                            detection=json.dumps(self.detection),
                            distorted=self.distorted if self.distorted is not None else np.zeros(0, np.uint8))

    @classmethod
    def load(cls, path: str | Path) -> "SessionReference":
        z = np.load(path)
        shape = tuple(int(n) for n in z["shape"])

        def bits(name):
            return np.unpackbits(z[name])[: int(np.prod(shape))].reshape(shape).astype(bool)

        return cls(str(z["relpath"]), z["affine"], z["labels"], bits("protect"), bits("brain"), z["coarse"],
                   z["coarse_affine"], (tuple(int(n) for n in z["grid_shape"]), z["grid_affine"]),
                   json.loads(str(z["detection"])), z["distorted"].reshape(shape) if z["distorted"].size else None,
                   _kept_regions(path))


def _regions_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".regions.npz")


def _kept_regions(path: str | Path):
    from bids_deface.dataset.regions import KeptRegions

    return KeptRegions.load(_regions_path(path)) if _regions_path(path).is_file() else None


def acquisition_key(entities: dict, shape, affine) -> str:
    """Images with one key are one acquisition on one grid: they share one distortion."""
    kept = tuple(sorted((k, str(v)) for k, v in entities.items()
                        if k not in ACQUISITION_PARTS + ("suffix", "extension", "datatype")))
    suffix = entities.get("suffix", "")
    kind = FIELDMAP_PARTS.get(suffix, suffix if entities.get("part") or entities.get("echo") or entities.get("inv")
                              or entities.get("flip") or entities.get("mt") else f"single:{suffix}")
    return repr((kept, kind, tuple(int(n) for n in shape[:3]), tuple(np.round(np.asarray(affine), 4).ravel().tolist())))


def choose_reference(suffixes: list[str], reference_suffix: str = "T1w") -> int | None:
    """Index of the session's reference among its images' suffixes (the first ``reference_suffix``),
    or None when the session has none (then the best detected image serves)."""
    return next((i for i, s in enumerate(suffixes) if s == reference_suffix), None)


# ----------------------------------------------------------------------------- registration


@dataclass
class SessionRegistration:
    """The reference registered onto an image of its session, and whether that is sound."""

    reference_to_image: np.ndarray  # 4x4, reference world (mm) -> image world (mm)
    mutual_information: float
    motion_mm: float
    motion_deg: float
    head_dice: float
    failures: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        return {"sound": self.sound, "failures": list(self.failures),
                "mutual_information": round(self.mutual_information, 3), "motion_mm": round(self.motion_mm, 1),
                "motion_deg": round(self.motion_deg, 1), "head_dice": round(self.head_dice, 3),
                "reference_to_image": np.round(self.reference_to_image, 4).tolist()}


def register_to_reference(ras: nib.spatialimages.SpatialImage, reference: SessionReference) -> SessionRegistration:
    """Rigid registration of the reference onto ``ras`` (any contrast), checked."""
    from bids_deface.features.registration import block_mean, coarse_head, register_rigid, sample_moved

    data = np.asarray(ras.dataobj, np.float32)
    image2, affine2 = block_mean(np.nan_to_num(data), ras.affine, 2.0)
    matrix, mi = register_rigid(image2, affine2, reference.coarse, reference.coarse_affine)
    motion_mm = float(np.linalg.norm(matrix[:3, 3] + matrix[:3, :3] @ _centre(reference) - _centre(reference)))
    motion_deg = float(np.degrees(np.arccos(np.clip((np.trace(matrix[:3, :3]) - 1) / 2, -1, 1))))
    coarse, coarse_affine = block_mean(image2, affine2, 4.0)
    mine = coarse_head(coarse)
    theirs = sample_moved(coarse_head(reference.coarse).astype(np.float32), reference.coarse_affine, matrix,
                          mine.shape, coarse_affine) > 0.5
    both = mine.sum() + theirs.sum()
    dice = float(2 * (mine & theirs).sum() / both) if both else 0.0
    failures = []
    if mi < MIN_MUTUAL_INFORMATION:
        failures.append(f"mutual information {mi:.2f} (at least {MIN_MUTUAL_INFORMATION})")
    if motion_mm > MAX_MOTION_MM or motion_deg > MAX_MOTION_DEG:
        failures.append(f"the head moved {motion_mm:.0f} mm / {motion_deg:.0f}° between the images "
                        f"(at most {MAX_MOTION_MM:.0f} mm / {MAX_MOTION_DEG:.0f}° within a session)")
    if dice < MIN_HEAD_DICE:
        failures.append(f"the registered heads overlap by Dice {dice:.2f} (at least {MIN_HEAD_DICE})")
    return SessionRegistration(matrix, mi, motion_mm, motion_deg, dice, failures)


def _centre(reference: SessionReference) -> np.ndarray:
    return nib.affines.apply_affine(reference.coarse_affine, (np.array(reference.coarse.shape) - 1) / 2)


def carried_labels(reference: SessionReference, registration: SessionRegistration, shape, affine) -> np.ndarray:
    """The reference's distorted features on an image's RAS grid (nearest neighbour)."""
    from bids_deface.features.registration import sample_moved

    out = np.zeros(tuple(int(n) for n in shape[:3]), np.uint8)
    idx = np.argwhere(reference.labels)
    if idx.size == 0:
        return out
    # only the box of the image's grid that the reference's labelled box lands in (plus a voxel)
    corners = np.array([[a, b, c, 1.0] for a in (idx[:, 0].min(), idx[:, 0].max())
                        for b in (idx[:, 1].min(), idx[:, 1].max()) for c in (idx[:, 2].min(), idx[:, 2].max())]).T
    vox = (np.linalg.inv(affine) @ registration.reference_to_image @ reference.affine @ corners)[:3]
    # half a reference voxel rounds to a label: that many of this grid's voxels, and one more
    margin = 2 + int(np.ceil(0.5 * np.sqrt((reference.affine[:3, :3] ** 2).sum(0)).max()
                             / np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0)).min()))
    start = np.clip(np.floor(vox.min(1)).astype(int) - margin, 0, out.shape)
    stop = np.clip(np.ceil(vox.max(1)).astype(int) + margin + 1, 0, out.shape)
    if np.any(stop <= start):
        return out
    box_affine = affine.copy()
    box_affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
    out[box] = np.rint(sample_moved(reference.labels, reference.affine, registration.reference_to_image,
                                    stop - start, box_affine, order=0)).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------- the union


def united_detection(detection, carried: np.ndarray, affine: np.ndarray):
    """``detection`` (a FeatureDetection on ``affine``'s grid) united with ``carried`` labels: where
    the image's own detection found nothing, the reference's feature; components and centroids
    recounted from the union, so the fail-closed gate judges what will be distorted."""
    from dataclasses import replace

    own = np.asarray(detection.labels.dataobj)
    union = np.zeros(own.shape, np.uint8)
    for value in LABELS.values():  # a feature the reference shows is taken from it (one region in
        # every contrast); the image's own detection adds what the reference does not show
        source = carried if np.count_nonzero(carried == value) >= MIN_PART_VOXELS else own
        union[(source == value) & (union == 0)] = value
    components, centroids = {}, {}
    spacing = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0))
    grow = np.ceil(MERGE_MM / spacing).astype(int) + 1
    for name, value in LABELS.items():
        idx = np.argwhere(union == value)
        if idx.size == 0:
            components[name], centroids[name] = 0, []
            continue
        # in the feature's box, grown by MERGE_MM: nothing beyond it is that near
        start = np.maximum(idx.min(0) - grow, 0)
        box = tuple(slice(int(a), int(b)) for a, b in zip(start, idx.max(0) + grow + 1))
        mask = union[box] == value
        # fragments of one part (a thin auricle carried onto a coarser grid) within MERGE_MM are one
        near = ndi.distance_transform_edt(~mask, sampling=spacing) <= MERGE_MM
        lab, n = ndi.label(near, structure=np.ones((3, 3, 3), bool))
        lab = np.where(mask, lab, 0)
        sizes = ndi.sum_labels(mask, lab, np.arange(1, n + 1)) if n else np.zeros(0)
        floor = max(MIN_PART_VOXELS, MIN_RELATIVE_SIZE * (sizes.max() if sizes.size else 0))
        keep = [i + 1 for i in np.argsort(sizes)[::-1] if sizes[i] >= floor]
        components[name] = len(keep)
        centroids[name] = [np.round(nib.affines.apply_affine(affine, np.argwhere(lab == i).mean(0) + start), 1).tolist()
                           for i in keep[: max(EXPECTED_COMPONENTS[name], len(keep))]]
    labels = nib.Nifti1Image(union, affine)
    labels.set_data_dtype(np.uint8)
    return replace(detection, labels=labels, components=components, centroids_mm=centroids)


# ----------------------------------------------------------------------------- the steps


def keep_reference(job, loaded, found, path: str | Path) -> None:
    """Keep what the other images of the session need from this (defaced) image."""
    from bids_deface.features.registration import block_mean

    coarse, coarse_affine = block_mean(np.nan_to_num(np.asarray(loaded.ras.dataobj, np.float32)),
                                       loaded.ras.affine, 4.0)
    det = found.detection
    SessionReference(job.relpath, loaded.ras.affine, np.asarray(found.labels_ras.dataobj, np.uint8),
                     found.decision.protect, found.brain, coarse, coarse_affine,
                     (tuple(int(n) for n in loaded.img.shape[:3]), np.asarray(loaded.img.affine)),
                     {"model_sha256": det.model_sha256, "confidence": dict(det.confidence),
                      "components": dict(det.components),
                      "template_registration": _registration_fields(found.localisation)},
                     found.distorted, found.regions).save(path)


def _registration_fields(localisation) -> dict | None:
    """The reference's sound template registration (plain data), for the others to compose with."""
    if localisation is None or not localisation.registration.sound:
        return None
    reg = localisation.registration
    return {"template_to_image": np.asarray(reg.template_to_image).tolist(), "template": reg.template,
            "mutual_information": reg.mutual_information, "scales": list(reg.scales),
            "rotation_deg": reg.rotation_deg, "brain_litres": reg.brain_litres, "head_dice": reg.head_dice}


def composed_localisation(ras, reference: SessionReference, registration: SessionRegistration):
    """This image's template localisation through the reference's (no registration of its own):
    template -> reference (the reference's) then reference -> this image (the session's)."""
    from bids_deface.features.template import Registration, localise_through

    fields = reference.detection.get("template_registration")
    if not fields:
        return None
    composed = Registration(**{**fields, "template_to_image": registration.reference_to_image
                               @ np.asarray(fields["template_to_image"]), "scales": tuple(fields["scales"])})
    return localise_through(ras, composed)


@dataclass
class Carried:
    """What the session's reference gives one of its images: the registration, and, when it is
    sound, the reference's features and template localisation on the image's RAS grid."""

    reference: str  # the reference's relpath
    registration: SessionRegistration
    labels: np.ndarray | None = None
    localisation: object = None  # bids_deface.features.template.Localisation


def carry_reference(ras, path: str | Path, ready=None) -> Carried | None:
    """Register the session's reference (kept at ``path``) onto ``ras`` and carry what it shows
    (no step of its own: it runs on a thread beside the detector, :func:`register` awaits it).
    ``ready``: called first, returns once the reference is done (the image's own network runs
    meanwhile); None when the reference was not defaced (nothing kept at ``path``)."""
    if ready is not None:
        ready()
    if not Path(path).is_file():
        return None
    reference = SessionReference.load(path)
    registration = register_to_reference(ras, reference)
    if not registration.sound:
        return Carried(reference.relpath, registration)
    return Carried(reference.relpath, registration, carried_labels(reference, registration, ras.shape, ras.affine),
                   composed_localisation(ras, reference, registration))


def carried_features(pending) -> set[str]:
    """The features the reference gives an image (``pending``: its :func:`carry_reference`), for
    which its own full-resolution extent is not needed (:func:`united_detection` takes the
    reference's); none when the registration failed or is not sound (the register step says why)."""
    try:
        carried = pending.result()
    except Exception:  # noqa: BLE001 - reported by the register step
        return set()
    if carried is None or carried.labels is None:
        return set()
    return {name for name, value in LABELS.items() if np.count_nonzero(carried.labels == value) >= MIN_PART_VOXELS}


def register(log, found, pending) -> None:
    """Carry the session reference's features onto this image (``pending``: the
    :func:`carry_reference` started beside the detector), when the registration is sound; else this
    image keeps its own detection, and the provenance says why."""
    from bids_deface.dataset.naming import bids_uri

    with log.step("register"):
        carried = pending.result()
        if carried is None:  # the reference was refused or failed: this image on its own
            found.session = {"Fallback": "own detection only (the session's reference was not defaced)"}
            return
        found.session = {"Reference": bids_uri(carried.reference), "Registration": carried.registration.as_dict()}
        if carried.registration.sound:
            found.carried, found.localisation = carried.labels, carried.localisation
        else:
            found.session["Fallback"] = "own detection only (the registration to the reference is not sound)"


def share(log, loaded, path: str | Path):
    """The distortion of the first image of this acquisition (same grid), as it is."""
    from bids_deface.dataset.naming import bids_uri
    from bids_deface.defacing.image import Found
    from bids_deface.features.detect import FeatureDetection
    from bids_deface.defacing.steps import ImageRefused
    from bids_deface.features.gate import Decision

    with log.step("share"):
        if not Path(path).is_file():  # one acquisition, one distortion: never a distortion of its own
            raise ImageRefused(f"{log.name}: the first image of its acquisition was not defaced, so neither is this one")
        reference = SessionReference.load(path)
        if reference.distorted is None:  # which voxels it changed is what this image must change
            raise ImageRefused(f"{log.name}: the first image of its acquisition kept no record of the voxels it "
                               "changed, so this one is not defaced")
        shape, affine = reference.grid
        if tuple(loaded.img.shape[:3]) != tuple(shape) or not np.allclose(loaded.img.affine, affine, atol=1e-4):
            raise ValueError(f"not on the grid of {reference.relpath}, the first image of its acquisition")
        labels = nib.Nifti1Image(reference.labels, loaded.ras.affine)
        det = reference.detection
        detection = FeatureDetection(labels=labels, confidence=det.get("confidence", {}),
                                     components=det.get("components", {}), model_sha256=det.get("model_sha256", ""))
        decision = Decision("defaced", f"shares the distortion of {reference.relpath}", reference.labels,
                            reference.protect, {"shared_with": bids_uri(reference.relpath), "brain_guard": {}})
        from bids_deface.images import restore_labels

        return Found(detection, decision=decision, labels_ras=labels, labels=restore_labels(labels, loaded.img),
                     brain=reference.brain, session={"SharedWith": bids_uri(reference.relpath)},
                     shared_distorted=reference.distorted, regions=reference.regions)
