"""Quality control of one defaced image, as a nipype interface around :func:`bids_deface.qc.run_qc`."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
from nipype.interfaces.base import Directory, File, TraitedSpec, isdefined, traits

from bids_deface.dataset.atomic import write_json_atomic
from bids_deface.interfaces.steps import ImageRefused, RecordedStep, StepInputSpec


class _QCInputSpec(StepInputSpec):
    original = File(exists=True, mandatory=True, desc="the image before defacing")
    defaced = File(exists=True, mandatory=True, desc="the defaced image (original's grid)")
    labels = File(exists=True, mandatory=True, desc="uint8 feature labels (original's grid)")
    figures_dir = Directory(mandatory=True, desc="where the figures go (created if missing)")
    stem = traits.Str(mandatory=True, desc="source file name without extension, e.g. sub-01_T1w")
    face_check = traits.Bool(True, usedefault=True, desc="run the face detectors (failing when a face remains)")


class _QCOutputSpec(TraitedSpec):
    qc = traits.Dict(desc="run_qc's result (JSON-serialisable)")
    qc_file = File(exists=True, desc="the same result as JSON")
    failed = traits.Bool(desc="a face is still detected after defacing")


class QC(RecordedStep):
    """Renders, face check, brain-preservation check and figures for one image."""

    input_spec = _QCInputSpec
    output_spec = _QCOutputSpec
    step = "qc"

    def _run_step(self, runtime):
        from bids_deface.qc import qc_failed, run_qc

        result = run_qc(nib.load(self.inputs.original), nib.load(self.inputs.defaced), nib.load(self.inputs.labels),
                        Path(self.inputs.figures_dir), self.inputs.stem, face_check=self.inputs.face_check)
        out = Path(runtime.cwd, "qc.json")
        out.write_text(json.dumps(result, indent=1))
        self._results.update(qc=result, qc_file=str(out), failed=qc_failed(result))
        return runtime


class _QCGateInputSpec(StepInputSpec):
    qc = traits.Dict(mandatory=True, desc="run_qc's result")
    qc_json = traits.Str(desc="where to keep that result for the QC reports (outside output_dir)")
    voxel_counts = traits.Dict(desc="voxels changed per feature")
    confidence = traits.Dict(desc="detector confidence per feature")
    removed_keys = traits.List(traits.Str, desc="names of the sidecar keys removed")


class _QCGateOutputSpec(TraitedSpec):
    qc = traits.Dict(desc="run_qc's result, passed on when the image may be released")


class QCGate(RecordedStep):
    """Refuse an image on which QC still finds a face; keep QC's result for the reports either way."""

    input_spec = _QCGateInputSpec
    output_spec = _QCGateOutputSpec
    step = "qc-gate"

    def _run_step(self, runtime):
        from bids_deface.qc import qc_failed

        qc = dict(self.inputs.qc)
        if isdefined(self.inputs.qc_json) and self.inputs.qc_json:  # names and numbers only
            extra = {"distorted_voxels": self.inputs.voxel_counts if isdefined(self.inputs.voxel_counts) else {},
                     "feature_confidence": self.inputs.confidence if isdefined(self.inputs.confidence) else {},
                     "scrubbed_keys": self.inputs.removed_keys if isdefined(self.inputs.removed_keys) else []}
            write_json_atomic(Path(self.inputs.qc_json), {**qc, **extra})
        if qc_failed(qc):
            name = self.inputs.source_name if isdefined(self.inputs.source_name) else "image"
            raise ImageRefused(f"{name}: not written, QC still finds a face: " + "; ".join(qc.get("failures", [])))
        self._results["qc"] = qc
        return runtime
