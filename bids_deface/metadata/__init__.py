"""Identifying metadata: NIfTI header text fields and extensions, JSON sidecars, TSV files.

Pure functions; nothing here logs or returns an identifying *value*: callers get back the
scrubbed object and the *names* of what was removed.

- :mod:`.nifti`: clears the free-text header fields and drops every header extension
  (converters can embed a whole DICOM header there), keeping the stored voxel values.
- :mod:`.policy`: the shipped policy and an optional user file that extends or overrides it.
- :mod:`.sidecar`: removes the policy's keys from a sidecar, at any depth.
- :mod:`.tsv`: shifts or drops ``acq_time`` and drops identifying columns.
"""

from bids_deface.metadata.nifti import NIFTI_TEXT_FIELDS, scrub_nifti_header
from bids_deface.metadata.policy import (ACQ_TIME_MODES, PolicyError, SidecarPolicy, load_sidecar_policy,
                                         shipped_policy_path)
from bids_deface.metadata.sidecar import scrub_sidecar
from bids_deface.metadata.tsv import earliest_acq_time, scrub_scans_tsv

__all__ = ["NIFTI_TEXT_FIELDS", "scrub_nifti_header", "ACQ_TIME_MODES", "PolicyError", "SidecarPolicy",
           "load_sidecar_policy", "shipped_policy_path", "scrub_sidecar", "earliest_acq_time", "scrub_scans_tsv"]
