"""Quality control of one defaced image, as a nipype interface around :func:`bids_deface.qc.run_qc`."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
from nipype.interfaces.base import BaseInterfaceInputSpec, Directory, File, SimpleInterface, TraitedSpec, traits


class _QCInputSpec(BaseInterfaceInputSpec):
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


class QC(SimpleInterface):
    """Renders, face check, brain-preservation check and figures for one image."""

    input_spec = _QCInputSpec
    output_spec = _QCOutputSpec

    def _run_interface(self, runtime):
        from bids_deface.qc import qc_failed, run_qc

        result = run_qc(nib.load(self.inputs.original), nib.load(self.inputs.defaced), nib.load(self.inputs.labels),
                        Path(self.inputs.figures_dir), self.inputs.stem, face_check=self.inputs.face_check)
        out = Path(runtime.cwd, "qc.json")
        out.write_text(json.dumps(result, indent=1))
        self._results.update(qc=result, qc_file=str(out), failed=qc_failed(result))
        return runtime
