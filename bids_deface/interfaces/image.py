"""The nipype node that defaces one image (:func:`bids_deface.defacing.image.deface_one`)."""

from __future__ import annotations

from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, TraitedSpec, traits


class _DefaceImageInputSpec(BaseInterfaceInputSpec):
    job = traits.Dict(mandatory=True, desc="bids_deface.defacing.settings.ImageJob as a dict")
    settings = traits.Dict(mandatory=True, desc="bids_deface.defacing.settings.RunSettings as a dict")


class _DefaceImageOutputSpec(TraitedSpec):
    verdict = traits.Str(desc="defaced, refused or failed")
    reason = traits.Str(desc="why it was refused or failed (one line)")


class DefaceImage(SimpleInterface):
    """Deface one image; its steps record their outcomes in its step log, so the node itself never
    fails for a bad image."""

    input_spec = _DefaceImageInputSpec
    output_spec = _DefaceImageOutputSpec

    def _run_interface(self, runtime):
        from bids_deface.defacing.image import deface_one
        from bids_deface.defacing.settings import ImageJob, RunSettings

        verdict, reason = deface_one(ImageJob.from_dict(self.inputs.job), RunSettings.from_dict(self.inputs.settings))
        self._results.update(verdict=verdict, reason=reason)
        return runtime
