"""One image's journey, in memory: load → detect → localise → gate → distort → scrub → (QC → QC gate →)
write.

Each step is its own function and records its own outcome in the image's step log
(:class:`~.steps.StepLog`); a step that refuses raises :class:`~.steps.ImageRefused`, and nothing
after it runs: in particular nothing is written. The input is read once; nothing intermediate is
written to disk. The core sees the head in RAS voxel order (a transposed copy in memory, exact:
:func:`bids_deface.images.reorient_to_ras`), so results do not depend on how a file orders its
voxels, and the outputs are put back on the input's own grid, dtype and scale factor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_deface.background import Background
from bids_deface.dataset.atomic import write_json_atomic
from bids_deface.dataset.outputs import write_defaced
from bids_deface.dataset.provenance import provenance
from bids_deface.defacing.settings import ImageJob, RunSettings
from bids_deface.defacing.steps import ImageRefused, StepLog, read_step_log, verdict_of
from bids_deface.images import load_volume, reorient_to_ras, restore_grid, restore_labels


@dataclass
class Loaded:
    img: nib.spatialimages.SpatialImage  # as stored
    ras: nib.spatialimages.SpatialImage  # the same voxels in RAS order (in memory)
    metadata: dict  # its sidecar metadata after inheritance


@dataclass
class Found:
    detection: object  # bids_deface.features.detect.FeatureDetection (RAS grid)
    localisation: object = None  # bids_deface.features.template.Localisation (RAS grid)
    decision: object = None  # bids_deface.features.gate.Decision: what to distort and protect
    labels_ras: nib.Nifti1Image | None = None  # what to distort, RAS grid
    labels: nib.Nifti1Image | None = None  # the same on the input's grid (written as the dseg)
    brain: np.ndarray | None = None  # the registered brain mask, RAS grid
    carried: np.ndarray | None = None  # the session reference's features on this image's RAS grid
    session: dict | None = None  # provenance: reference, registration, or the image shared with
    regions: object = None  # bids_deface.dataset.regions.KeptRegions: what the output keeps of the regions
    distorted: np.ndarray | None = None  # uint8, RAS grid: per voxel, the feature whose operator changed it
    shared_distorted: np.ndarray | None = None  # the same of the first image of its acquisition (shared)


def load(log: StepLog, job: ImageJob, *, structure: bool = True) -> Loaded:
    with log.step("load"):
        from bids_deface.dataset.sidecars import image_metadata

        # a sidecar that cannot be read fails this image only
        metadata = job.metadata if job.metadata is not None else image_metadata(Path(job.bids_dir), job.relpath)
        img, stored = load_volume(job.path, job.relpath, structure=structure)
        return Loaded(img, reorient_to_ras(img, stored), metadata)


def detect(log: StepLog, loaded: Loaded, settings: RunSettings, labelled_elsewhere=None) -> Found:
    with log.step("detect"):
        from bids_deface.features.detect import detect_features
        from bids_deface.features.inference import load_network

        return Found(detect_features(loaded.ras, network=load_network(threads=settings.threads),
                                     labelled_elsewhere=labelled_elsewhere))


def template_localisation(loaded: Loaded, job: ImageJob) -> Background:
    """The template registration of ``loaded``, started in the background."""
    from bids_deface.features.template import localise as localise_template

    return Background(localise_template, loaded.ras, contrast=job.suffix)


def localise(log: StepLog, job: ImageJob, loaded: Loaded, found: Found, pending: Background | None = None) -> None:
    """The second, independent localisation: the template head registered onto the image (or, for
    another image of a session, the reference's registration composed with the session's).
    ``pending``: the registration already started (the step's seconds are then what it was
    still waited for)."""
    with log.step("localise"):
        if found.localisation is None:
            found.localisation = (pending or template_localisation(loaded, job)).result()


def gate(log: StepLog, loaded: Loaded, found: Found, settings: RunSettings) -> None:
    """Fail closed: every selected feature found and agreed on, or shown outside the field of view."""
    with log.step("gate"):
        from bids_deface.features.gate import decide

        detection = found.detection
        if found.carried is not None:  # the session's reference seen on this image, with its own detection
            from bids_deface.defacing.session import united_detection

            detection = united_detection(detection, found.carried, loaded.ras.affine)
        decision = decide(detection, found.localisation, loaded.ras, features=tuple(settings.features),
                          allow_partial=settings.allow_partial)
        if not decision.defaced:
            raise ImageRefused(f"{log.name}: {decision.reason}")
        found.decision, found.brain = decision, found.localisation.brain
        found.labels_ras = nib.Nifti1Image(decision.labels, loaded.ras.affine)
        found.labels = restore_labels(found.labels_ras, loaded.img)


def distort(log: StepLog, job: ImageJob, loaded: Loaded, found: Found, settings: RunSettings, *,
            in_session: bool = False, keep: bool = False):
    """The operators, then the brain guard: no voxel of the protect mask keeps a changed value.
    ``in_session``: the image has others in its session (the group report shows its regions);
    ``keep``: others take its distortion (what each voxel's change came from is kept)."""
    with log.step("distort"):
        from bids_deface.dataset.regions import head_centre_mm, keep_regions
        from bids_deface.distort import deface_image
        from bids_deface.features.brainguard import smallest_distance_mm
        from bids_deface.images import image_from_unscaled, stored_data

        regions: dict = {}
        defaced, counts = deface_image(loaded.ras, found.labels_ras, features=tuple(settings.features),
                                       seed=job.seed, regions=regions, **settings.margins)[:2]
        before, after = stored_data(loaded.ras), np.array(stored_data(defaced))
        protect = found.decision.protect.reshape(after.shape)
        guard = found.decision.provenance.setdefault("brain_guard", {})
        guard["voxels_kept_by_the_guard"] = int((after[protect] != before[protect]).sum())
        after[protect] = before[protect]
        if found.shared_distorted is not None:  # one acquisition, one distortion: the same voxels
            changed_like(after, before, loaded.ras, found.shared_distorted, job.seed)
        changed = (after != before).reshape(before.shape[:3])
        if keep:
            found.distorted = distorted_by_feature(regions, changed)
        if in_session and found.regions is None:  # (for the group report; a shared image has its first's)
            centre = head_centre_mm(found.brain, loaded.ras.affine, loaded.ras.shape)
            found.regions = keep_regions(regions, loaded.ras.affine, centre)
        guard["smallest_distance_to_brain_mm"] = smallest_distance_mm(changed, found.brain, loaded.ras.affine)
        defaced = image_from_unscaled(after, loaded.ras)
        return restore_grid(defaced, loaded.img), {k: int(v) for k, v in counts.items()}


def distorted_by_feature(regions: dict, changed: np.ndarray) -> np.ndarray:
    """uint8: per voxel, the (label value of the) feature whose operator changed it; 0 unchanged."""
    from bids_deface.features import LABELS

    out = np.zeros(changed.shape, np.uint8)
    for name, region in regions.items():
        out[region.reshape(changed.shape) & changed & (out == 0)] = LABELS[name]
    return out


def changed_like(after: np.ndarray, before: np.ndarray, ras, shared: np.ndarray, seed: int) -> None:
    """An image sharing the distortion of the first image of its acquisition changes exactly the
    voxels that one changed (``shared``): its own operators' values where they changed them, its own
    air noise where they did not (a phase map's smooth tissue is no surface to the operators, yet
    it shows the face), nothing beyond. ``after`` is edited."""
    from bids_deface.distort import air_noise

    must = (shared > 0).reshape(after.shape)
    after[~must] = before[~must]
    still = must & (after == before)
    after[still] = air_noise(ras, int(still.sum()), seed)


def scrub(log: StepLog, job: ImageJob, loaded: Loaded, defaced, settings: RunSettings):
    """(image without identifying header text, scrubbed metadata, removed key names, cleared fields)."""
    with log.step("scrub"):
        from bids_deface.dataset.imagemeta import scrub_image_metadata
        from bids_deface.metadata import Deidentifier, load_hash_key, load_metadata_policy

        subject = job.relpath.split("/")[0]
        return scrub_image_metadata(
            defaced, loaded.metadata, policy=load_metadata_policy(settings.policy_file),
            known_values=job.known_values, reference=job.reference_time,
            deidentifier=Deidentifier(hash_key=load_hash_key(settings.hash_key_file)).for_subject(subject))


def quality_control(log: StepLog, job: ImageJob, loaded: Loaded, defaced, found: Found, counts: dict,
                    settings: RunSettings | None = None) -> dict:
    """Renders, face, ear and brain checks; the QC gate refuses an image on which a face or an
    ear remains, unless the run's ``--qc-override`` releases that check (recorded in ``override``)."""
    from bids_deface.qc import refusal_reasons, run_qc
    from bids_deface.qc.brainmask import brain_mask_from

    def on_input_grid(mask: np.ndarray) -> np.ndarray:
        return np.asarray(restore_labels(nib.Nifti1Image(mask.astype(np.uint8), loaded.ras.affine),
                                         loaded.img).dataobj) > 0

    with log.step("qc"):
        brain = None
        if found.localisation is not None:  # the journey's registration
            brain = brain_mask_from(found.localisation)
            brain.mask, brain.affine = on_input_grid(brain.mask), loaded.img.affine
        # QC judges the features as far as defacing may change them: the brain guard's voxels never
        # change (an ear label reaching deep into the head is no auricle; the ear outline check
        # still sees any auricle left)
        labels = found.labels
        if found.decision is not None:
            kept = np.asarray(labels.dataobj).copy()
            kept[on_input_grid(found.decision.protect.reshape(loaded.ras.shape[:3]))] = 0
            labels = nib.Nifti1Image(kept, labels.affine, labels.header)
        result = run_qc(loaded.img, defaced, labels, Path(job.qc_figures_dir), job.stem, brain=brain)
    with log.step("qc-gate"):
        released = set(settings.qc_override if settings else ())
        result["override"] = sorted({r["check"] for r in result["refusals"]} & released)
        if job.qc_json:  # the curator's report: names and numbers only
            write_json_atomic(Path(job.qc_json), {**result, "distorted_voxels": counts,
                                                  "feature_confidence": found.detection.confidence})
        reasons = refusal_reasons(result, released)
        if reasons:
            raise ImageRefused(f"{log.name}: not written: " + "; ".join(reasons)
                               + " (see the QC report; --qc-override releases such an image)")
    return result


def write(log: StepLog, job: ImageJob, settings: RunSettings, scrubbed: tuple, found: Found, counts: dict,
          qc: dict | None) -> dict:
    img, metadata, removed, cleared = scrubbed
    det = found.detection
    prov = provenance(source_relpath=job.relpath, features=settings.features, seed=job.seed,
                      model_sha256=det.model_sha256, voxel_counts=counts, confidence=det.confidence,
                      components=det.components, warnings=det.warnings, removed_keys=removed,
                      cleared_fields=cleared, qc=qc, fail_closed=found.decision.provenance, session=found.session)
    with log.step("write"):
        record = write_defaced(settings.output_dir, job.outputs, job.relpath, img, found.labels, metadata, prov,
                               settings.labels_dir, regions=found.regions)
        if settings.vault_dir:
            seal_in_vault(job, settings, record["Outputs"])
        return record


def seal_in_vault(job: ImageJob, settings: RunSettings, written: dict) -> None:
    """Vault entries that rebuild the input image and its own sidecar from what was written; if one
    cannot be sealed the outputs go too (they could not be reversed as promised)."""
    from bids_deface.vault.writer import VaultWriter

    root = Path(settings.output_dir)
    try:
        writer = VaultWriter(settings.vault_dir, settings.vault_recipients, input_root=job.bids_dir, output_root=root)
        writer.add(job.path, root / written["image"])
        own_sidecar = Path(job.path).with_name(job.stem + ".json")
        if written.get("sidecar") and own_sidecar.is_file():
            writer.add(own_sidecar, root / written["sidecar"])
    except BaseException:
        for rel in written.values():
            (root / rel).unlink(missing_ok=True)
        (root / job.outputs["record"]).unlink(missing_ok=True)
        raise


# what every journey imports; QC's when it runs
JOURNEY_MODULES = ("onnxruntime", "bids_deface.dataset.sidecars", "bids_deface.features.detect",
                   "bids_deface.features.template", "bids_deface.features.gate", "bids_deface.distort",
                   "bids_deface.features.brainguard", "bids_deface.dataset.imagemeta", "bids_deface.metadata",
                   "bids_deface.dataset.outputs", "bids_deface.defacing.session")
QC_MODULES = ("bids_deface.qc",)


def warm_up(settings: RunSettings) -> None:
    """Load what the journeys need (modules, the template) in this process before nipype's
    MultiProc forks its workers from it, so that each worker starts warm instead of importing it
    all again. No ONNX Runtime session is made here: its threads would not survive the fork."""
    import importlib

    from bids_deface.features.template_files import load_template

    for name in JOURNEY_MODULES + (QC_MODULES if settings.qc else ()):
        importlib.import_module(name)
    load_template("T1w")


def image_steps(settings: RunSettings, *, reference: bool = False, shared: bool = False) -> tuple[str, ...]:
    """The names of the steps an image goes through, in order (with a session reference to register,
    or a distortion shared with the first image of its acquisition)."""
    middle = ("share",) if shared else ("detect",) + (("register",) if reference else ()) + ("localise", "gate")
    return ("load", *middle, "distort", "scrub") + (("qc", "qc-gate") if settings.qc else ()) + ("write",)


def deface_one(job: ImageJob, settings: RunSettings, *, reference: str | None = None, shared: str | None = None,
               keep: str | None = None, reference_ready=None) -> tuple[str, str]:
    """Deface one image end to end; returns its verdict and reason ("defaced", "refused", "failed").

    ``reference``: a session reference (:class:`~.session.SessionReference` file) registered onto the
    image and united with its detection; ``shared``: the first image of its acquisition, whose
    distortion it takes as is; ``keep``: where to keep this image's own for the others of its session;
    ``reference_ready``: when the reference is still being defaced, a call that returns once it is
    done (this image is loaded and its network run meanwhile).
    Never raises for a bad image (its step log says why); interrupts pass through.
    """
    from bids_deface.defacing import session as sessions

    log = StepLog(job.step_log, job.relpath)
    try:
        loaded = load(log, job, structure=not shared)
        if shared:
            found = sessions.share(log, loaded, shared)
        else:
            registered = bool(reference) and (reference_ready is not None or Path(reference).is_file())
            # beside the detector: the session's registration to its reference, or the template's
            pending = Background(sessions.carry_reference, loaded.ras, reference, reference_ready) if registered \
                else template_localisation(loaded, job)
            found = detect(log, loaded, settings,
                           labelled_elsewhere=(lambda: sessions.carried_features(pending)) if registered else None)
            if registered:
                sessions.register(log, found, pending)
                pending = None
            elif reference:  # the reference was refused or failed: this image on its own
                found.session = {"Fallback": "own detection only (the session's reference was not defaced)"}
            localise(log, job, loaded, found, pending)
            gate(log, loaded, found, settings)
        defaced, counts = distort(log, job, loaded, found, settings, in_session=bool(reference or shared or keep),
                                  keep=bool(keep))
        scrubbed = scrub(log, job, loaded, defaced, settings)
        qc = quality_control(log, job, loaded, scrubbed[0], found, counts, settings) if settings.qc else None
        write(log, job, settings, scrubbed, found, counts, qc)
        if keep:
            sessions.keep_reference(job, loaded, found, keep)
    except Exception:  # recorded by the step that raised it
        pass
    return verdict_of(read_step_log(job.step_log)) or ("failed", f"{job.relpath}: not defaced")
