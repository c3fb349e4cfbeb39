"""The steps of defacing one image, as nipype interfaces.

Each interface wraps one core function (``bids_deface.images``, ``…features.detect``,
``…distort``, ``…metadata``), records its outcome in the image's step log
(:mod:`bids_deface.interfaces.steps`) and passes images between steps as files in its node's
working directory (uncompressed: they are read back at once). That directory lies in the
private work directory: only the final sink writes to the output dataset.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
from nipype.interfaces.base import File, TraitedSpec, isdefined, traits

from bids_deface.images import load_volume, reorient_to_ras, restore_grid, restore_labels, save_exact
from bids_deface.interfaces.steps import ImageRefused, RecordedStep, StepInputSpec


class _LoadImageInputSpec(StepInputSpec):
    # No exists=True: a missing file or broken link gets our one-line message, not nipype's.
    in_file = File(mandatory=True, desc="input image")


class _LoadImageOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the same image, checked: one complete 3D volume")


class LoadImage(RecordedStep):
    """Check that the input is one complete, readable 3D volume (the core works in any orientation:
    nothing is rewritten)."""

    input_spec = _LoadImageInputSpec
    output_spec = _LoadImageOutputSpec
    step = "load"

    def _run_step(self, runtime):
        name = self.inputs.source_name if isdefined(self.inputs.source_name) else self.inputs.in_file
        load_volume(self.inputs.in_file, name)
        self._results["out_file"] = str(Path(self.inputs.in_file).absolute())
        return runtime


class _DetectInputSpec(StepInputSpec):
    in_file = File(exists=True, mandatory=True, desc="head volume (any orientation)")
    weights = File(exists=True, desc="detector network (default: the shipped one); an input, so "
                                     "that a new network invalidates cached detections")
    omp_nthreads = traits.Int(1, usedefault=True, desc="threads for the network")


class _DetectOutputSpec(TraitedSpec):
    labels_file = File(exists=True, desc="uint8 labels on in_file's grid: 0 bg, 1 eyes, 2 nose, 3 ears")
    confidence = traits.Dict(desc="mean probability inside each feature (0 when absent)")
    components = traits.Dict(desc="connected components found per feature")
    warnings = traits.List(traits.Str, desc="missing, doubled or implausible features")
    model_sha256 = traits.Str(desc="sha256 of the detector's weights")


class DetectFeatures(RecordedStep):
    """Find the eyes, nose and ears with the U-Net detector.

    A head in which none of them is found is refused (it is not a head with a face in the
    field of view, or it was defaced or skull-stripped already): distorting nothing and
    reporting success would let a face through unnoticed.
    """

    input_spec = _DetectInputSpec
    output_spec = _DetectOutputSpec
    step = "detect"

    def _run_step(self, runtime):
        from bids_deface.features.detect import detect_features
        from bids_deface.features.inference import load_network

        name = self.inputs.source_name if isdefined(self.inputs.source_name) else self.inputs.in_file
        weights = self.inputs.weights if isdefined(self.inputs.weights) else None
        network = load_network(weights, threads=max(1, self.inputs.omp_nthreads))
        img = nib.load(self.inputs.in_file)
        # The detector sees the head in RAS voxel order (a transposed copy in memory): its result
        # is then the same whatever order the file stores the voxels in.
        detection = detect_features(reorient_to_ras(img), network=network)
        if not any(detection.components.get(f, 0) for f in ("eyes", "nose", "ears")):
            raise ImageRefused(
                f"{name}: no head with a face found (no eyes, nose or ears detected); "
                "is it a head image with the face in the field of view?")
        out = Path(runtime.cwd, "labels.nii.gz")
        nib.save(restore_labels(detection.labels, img), out)
        self._results.update(
            labels_file=str(out),
            confidence={k: float(v) for k, v in detection.confidence.items()},
            components={k: int(v) for k, v in detection.components.items()},
            warnings=[str(w) for w in detection.warnings],
            model_sha256=detection.model_sha256,
        )
        return runtime


class _DistortInputSpec(StepInputSpec):
    in_file = File(exists=True, mandatory=True, desc="head volume")
    labels_file = File(exists=True, mandatory=True, desc="feature labels on the same grid")
    features = traits.List(traits.Enum("eyes", "nose", "ears"), mandatory=True, desc="features to distort")
    seed = traits.Int(0, usedefault=True, desc="seed of the ear noise")
    eye_box_margin_mm = traits.Float(desc="periocular box margin (paper default when unset)")
    eye_surface_band_vox = traits.Int(desc="half-width of the eye surface band, voxels")
    nose_box_scale = traits.Float(desc="nose box half-extent factor")


class _DistortOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="defaced volume, same grid, dtype and scaling")
    voxel_counts = traits.Dict(desc="voxels changed per feature")


class DistortFeatures(RecordedStep):
    """Apply the paper's eye, nose and ear distortions (``bids_deface.distort.deface_image``)."""

    input_spec = _DistortInputSpec
    output_spec = _DistortOutputSpec
    step = "distort"

    def _run_step(self, runtime):
        from bids_deface.distort import deface_image

        margins = {key: getattr(self.inputs, key)
                   for key in ("eye_box_margin_mm", "eye_surface_band_vox", "nose_box_scale")
                   if isdefined(getattr(self.inputs, key))}
        img = nib.load(self.inputs.in_file)
        ras = reorient_to_ras(img)  # in memory, as for detection: the same result in any voxel order
        labels = reorient_to_ras(nib.load(self.inputs.labels_file))
        defaced, counts = deface_image(ras, labels, features=tuple(self.inputs.features),
                                       seed=self.inputs.seed, **margins)
        out = Path(runtime.cwd, "defaced.nii")
        save_exact(restore_grid(defaced, img), out)
        self._results.update(out_file=str(out), voxel_counts={k: int(v) for k, v in counts.items()})
        return runtime


class _ScrubInputSpec(StepInputSpec):
    in_file = File(exists=True, mandatory=True, desc="defaced image")
    metadata = traits.Dict(desc="the source's sidecar metadata (after inheritance)")
    policy_file = traits.Str(desc="user metadata policy that extends or overrides the shipped one")
    known_values = traits.Dict(desc="values removed from the same participant elsewhere (category -> values), "
                                    "searched for in every kept free-text value")
    reference_time = traits.Str(desc="the participant's earliest acquisition time (ISO): dates move by one offset")
    hash_key_file = traits.Str(desc="the HMAC key of the 'hash' method (else $BIDS_DEFACE_HASH_KEY)")


class _ScrubOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="image with identifying header fields and extensions removed")
    metadata = traits.Dict(desc="metadata through the allow-list, free text cleaned")
    removed_keys = traits.List(traits.Str, desc="names of the sidecar keys removed or changed")
    cleared_fields = traits.List(traits.Str, desc="names of the NIfTI header fields cleared")


class ScrubMetadata(RecordedStep):
    """Clear identifying NIfTI header fields and extensions; pass the sidecar metadata through the
    allow-list (:func:`bids_deface.metadata.scrub_sidecar`), searching its free text for the
    participant's removed values."""

    input_spec = _ScrubInputSpec
    output_spec = _ScrubOutputSpec
    step = "scrub"

    def _run_step(self, runtime):
        from bids_deface.dataset.imagemeta import scrub_image_metadata
        from bids_deface.metadata import Deidentifier, load_hash_key, load_metadata_policy

        def given(name):
            value = getattr(self.inputs, name)
            return value if isdefined(value) and value else None

        subject = self.inputs.source_name.split("/")[0] if isdefined(self.inputs.source_name) else ""
        img, metadata, removed, cleared = scrub_image_metadata(
            nib.load(self.inputs.in_file), given("metadata") or {}, policy=load_metadata_policy(given("policy_file")),
            known_values=given("known_values"), reference=given("reference_time"),
            deidentifier=Deidentifier(hash_key=load_hash_key(given("hash_key_file"))).for_subject(subject))
        out = Path(runtime.cwd, "scrubbed.nii")
        save_exact(img, out)
        self._results.update(out_file=str(out), metadata=metadata, removed_keys=removed, cleared_fields=cleared)
        return runtime
