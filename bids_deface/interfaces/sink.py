"""The sink: write one defaced image and its companions into the output dataset, atomically."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
from nipype.interfaces.base import File, TraitedSpec, isdefined, traits

from bids_deface.dataset.atomic import write_atomic, write_json_atomic
from bids_deface.dataset.provenance import defaced_sidecar, dseg_sidecar, image_record, provenance
from bids_deface.images import save_exact
from bids_deface.interfaces.steps import RecordedStep, StepInputSpec


class _SinkInputSpec(StepInputSpec):
    output_dir = traits.Str(mandatory=True, desc="root of the output dataset")
    out_image = traits.Str(mandatory=True, desc="defaced image, relative to output_dir")
    out_sidecar = traits.Str(desc="its sidecar (derivative layout)")
    out_dseg = traits.Str(desc="feature labels (derivative layout)")
    out_dseg_sidecar = traits.Str(desc="sidecar of the labels")
    out_record = traits.Str(mandatory=True, desc="per-image record for the group level")
    source_relpath = traits.Str(mandatory=True, desc="the input image's path in its dataset")
    defaced_file = File(exists=True, mandatory=True, desc="defaced, scrubbed image on the input grid")
    labels_file = File(exists=True, mandatory=True, desc="feature labels on the input grid")
    metadata = traits.Dict(desc="scrubbed sidecar metadata")
    features = traits.List(traits.Str, mandatory=True)
    seed = traits.Int(mandatory=True)
    model_sha256 = traits.Str("", usedefault=True)
    voxel_counts = traits.Dict()
    confidence = traits.Dict()
    components = traits.Dict()
    warnings = traits.List(traits.Str)
    removed_keys = traits.List(traits.Str)
    cleared_fields = traits.List(traits.Str)
    qc = traits.Dict(desc="bids_deface.qc.run_qc's result, when QC ran (and passed its gate)")


class _SinkOutputSpec(TraitedSpec):
    out_file = File(desc="the defaced image in the output dataset")
    out_record = File(desc="the per-image record")


class DefacedSink(RecordedStep):
    """Write the defaced image (+ sidecar, + labels in the derivative layout) and its record.

    The sink only writes: every decision (fail-closed gate, QC gate) was taken by an earlier step.
    Every file goes to a temporary hidden name first and is renamed into place, so an
    interrupted run leaves either the previous file or the new one, never half a file.
    """

    input_spec = _SinkInputSpec
    output_spec = _SinkOutputSpec
    step = "write"

    def _run_step(self, runtime):
        inp = self.inputs
        root = Path(inp.output_dir)

        def opt(name):
            value = getattr(inp, name)
            return value if isdefined(value) else None

        prov = provenance(
            source_relpath=inp.source_relpath, features=inp.features, seed=inp.seed,
            model_sha256=inp.model_sha256, voxel_counts=opt("voxel_counts") or {},
            confidence=opt("confidence") or {}, components=opt("components") or {},
            warnings=opt("warnings") or [], removed_keys=opt("removed_keys") or [],
            cleared_fields=opt("cleared_fields") or [], qc=opt("qc"))
        image = root / inp.out_image
        defaced = nib.load(inp.defaced_file)
        write_atomic(image, lambda tmp: save_exact(defaced, tmp))
        outputs = {"image": inp.out_image}
        if opt("out_sidecar"):
            write_json_atomic(root / inp.out_sidecar,
                              defaced_sidecar(opt("metadata") or {}, inp.source_relpath, prov))
            outputs["sidecar"] = inp.out_sidecar
        if opt("out_dseg"):
            labels = nib.load(inp.labels_file)
            write_atomic(root / inp.out_dseg, lambda tmp: nib.save(labels, tmp))
            outputs["dseg"] = inp.out_dseg
            if opt("out_dseg_sidecar"):
                write_json_atomic(root / inp.out_dseg_sidecar, dseg_sidecar(inp.source_relpath, prov))
        record = image_record(source_relpath=inp.source_relpath, status="defaced", outputs=outputs, prov=prov)
        write_json_atomic(root / inp.out_record, record)
        self._results.update(out_file=str(image), out_record=str(root / inp.out_record))
        return runtime
