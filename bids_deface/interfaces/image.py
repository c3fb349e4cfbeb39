"""The nipype nodes that deface images: one image (:func:`bids_deface.defacing.image.deface_one`), or
every image of a session in order (:func:`bids_deface.defacing.session_plan.deface_session`)."""

from __future__ import annotations

from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, TraitedSpec, isdefined, traits


class _DefaceImageInputSpec(BaseInterfaceInputSpec):
    job = traits.Dict(mandatory=True, desc="bids_deface.defacing.settings.ImageJob as a dict")
    settings = traits.Dict(mandatory=True, desc="bids_deface.defacing.settings.RunSettings as a dict")
    reference_file = traits.Str(desc="the session reference's kept result, to register and unite with")
    shared_file = traits.Str(desc="the first image of this acquisition's kept result, to share")
    keep_file = traits.Str(desc="where to keep this image's result for the others of its session")


class _DefaceImageOutputSpec(TraitedSpec):
    verdict = traits.Str(desc="defaced, refused or failed")
    reason = traits.Str(desc="why it was refused or failed (one line)")
    kept = traits.Str(desc="keep_file (it exists only when the image was defaced)")


class DefaceImage(SimpleInterface):
    """Deface one image; its steps record their outcomes in its step log, so the node itself never
    fails for a bad image (and the images that depend on it still run, on their own)."""

    input_spec = _DefaceImageInputSpec
    output_spec = _DefaceImageOutputSpec

    def _run_interface(self, runtime):
        from bids_deface.defacing.image import deface_one
        from bids_deface.defacing.settings import ImageJob, RunSettings

        def given(name):
            value = getattr(self.inputs, name)
            return value if isdefined(value) and value else None

        verdict, reason = deface_one(ImageJob.from_dict(self.inputs.job), RunSettings.from_dict(self.inputs.settings),
                                     reference=given("reference_file"), shared=given("shared_file"),
                                     keep=given("keep_file"))
        self._results.update(verdict=verdict, reason=reason, kept=given("keep_file") or "")
        return runtime


class _DefaceSessionInputSpec(BaseInterfaceInputSpec):
    jobs = traits.List(traits.Dict, mandatory=True, desc="the session's ImageJobs as dicts")
    keys = traits.List(traits.Str, mandatory=True, desc="each image's acquisition key (defacing.session)")
    settings = traits.Dict(mandatory=True, desc="bids_deface.defacing.settings.RunSettings as a dict")
    reference_suffix = traits.Str("T1w", usedefault=True, desc="the suffix of the session's reference")


class _DefaceSessionOutputSpec(TraitedSpec):
    verdicts = traits.List(traits.Str, desc="one verdict per image, in the order of jobs")


class DefaceSession(SimpleInterface):
    """Deface every image of one session, in order, in one process: the unit of work of a cluster job."""

    input_spec = _DefaceSessionInputSpec
    output_spec = _DefaceSessionOutputSpec

    def _run_interface(self, runtime):
        from bids_deface.defacing.session_plan import deface_session
        from bids_deface.defacing.settings import ImageJob, RunSettings

        jobs = [ImageJob.from_dict(job) for job in self.inputs.jobs]
        verdicts = deface_session(jobs, list(self.inputs.keys), RunSettings.from_dict(self.inputs.settings), self.inputs.reference_suffix)
        self._results["verdicts"] = [verdict for verdict, _ in verdicts]
        return runtime
