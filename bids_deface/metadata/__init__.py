"""Identifying metadata: NIfTI header text fields and extensions, JSON sidecars, TSV files, text files.

Pure functions; nothing here logs or returns an identifying *value*: callers get back the
scrubbed object and the *names* of what was removed or changed.

- :mod:`.nifti`: clears the free-text header fields and drops every header extension
  (converters can embed a whole DICOM header there), keeping the stored voxel values.
- :mod:`.policy`: the allow-list (BIDS-defined keys and columns, from the BIDS schema) with the
  shipped policy and an optional user policy file.
- :mod:`.sidecar`, :mod:`.tsv`, :mod:`.textfiles`: sidecars, BIDS tables and README-like files
  through the policy.
- :mod:`.phi`: free-text PHI detection (known values, checked patterns, name dictionaries).
- :mod:`.methods`: replace, redact, mask, hash, encrypt.
"""

from bids_deface.metadata.methods import (DEFAULT_METHOD, HASH_KEY_ENV, METHODS, Deidentifier, MethodError,
                                          load_hash_key, mask)
from bids_deface.metadata.nifti import NIFTI_TEXT_FIELDS, scrub_nifti_header
from bids_deface.metadata.phi import CATEGORIES, Finding, clean_text, find_phi, known_patterns
from bids_deface.metadata.policy import (ACQ_TIME_MODES, MetadataPolicy, PolicyError, SidecarPolicy, bids_allowlist,
                                         load_metadata_policy, load_sidecar_policy, shipped_policy_path)
from bids_deface.metadata.sidecar import known_values_from_sidecar, scrub_sidecar
from bids_deface.metadata.textfiles import is_text_file, scrub_text_file
from bids_deface.metadata.tsv import (AGE_CAPPED, earliest_acq_time, known_values_from_table, scrub_scans_tsv,
                                      scrub_table, table_kind)

__all__ = ["DEFAULT_METHOD", "HASH_KEY_ENV", "METHODS", "Deidentifier", "MethodError", "load_hash_key", "mask",
           "NIFTI_TEXT_FIELDS", "scrub_nifti_header", "CATEGORIES", "Finding", "clean_text", "find_phi",
           "known_patterns", "ACQ_TIME_MODES", "MetadataPolicy", "PolicyError", "SidecarPolicy", "bids_allowlist",
           "load_metadata_policy", "load_sidecar_policy", "shipped_policy_path", "known_values_from_sidecar",
           "scrub_sidecar", "is_text_file", "scrub_text_file", "AGE_CAPPED", "earliest_acq_time",
           "known_values_from_table", "scrub_scans_tsv", "scrub_table", "table_kind"]
