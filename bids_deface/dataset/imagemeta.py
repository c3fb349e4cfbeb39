"""The metadata of one defaced image: its NIfTI header text and its sidecar, through the policy."""

from __future__ import annotations

from datetime import datetime


def scrub_image_metadata(img, metadata: dict, *, policy, known_values=None, deidentifier=None,
                         reference: datetime | str | None = None):
    """``(image, metadata, removed key names, cleared header fields)`` of a defaced image.

    The header's free-text fields are cleared and its extensions dropped (voxels kept exactly);
    the sidecar ``metadata`` (after inheritance) keeps the allow-listed keys, its free text
    searched for ``known_values`` (the participant's values removed elsewhere, by category);
    ``reference``: the participant's earliest acquisition time, so dates move by one offset.
    """
    from bids_deface.metadata import scrub_nifti_header, scrub_sidecar

    if isinstance(reference, str):
        reference = datetime.fromisoformat(reference) if reference else None
    scrubbed_img, cleared = scrub_nifti_header(img)
    scrubbed, removed = scrub_sidecar(dict(metadata or {}), policy, known_values=known_values or {},
                                      deidentifier=deidentifier, reference=reference)
    return scrubbed_img, scrubbed, sorted(removed), sorted(cleared)
