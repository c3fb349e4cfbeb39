"""Identifying NIfTI header content: free-text fields and header extensions."""

from __future__ import annotations

import nibabel as nib

from bids_deface.images import with_header

# Free-text fields of the NIfTI-1/-2 headers (db_name, data_type: unused Analyze leftovers).
NIFTI_TEXT_FIELDS = ("descrip", "aux_file", "db_name", "intent_name", "data_type", "unused_str")


def scrub_nifti_header(img: nib.Nifti1Image) -> tuple[nib.Nifti1Image, list[str]]:
    """Clear ``img``'s free-text header fields and drop its header extensions.

    Input: a NIfTI-1 or NIfTI-2 image. Output: ``(image, names)`` where the image has the
    same voxels (stored values and scale factor, saved exactly by ``nib.save``), affine and
    other header fields, and ``names`` lists the fields that held text (e.g. ``"descrip"``)
    and one ``"extension:<code>"`` per dropped extension.
    """
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise TypeError(f"{img.get_filename() or 'image'}: expected a NIfTI image, got {type(img).__name__}")
    header = img.header.copy()
    cleared = []
    for name in NIFTI_TEXT_FIELDS:
        if name in header and bytes(header[name]).strip(b"\x00 "):
            header[name] = b""
            cleared.append(name)
    for ext in header.extensions:
        code = ext.get_code()
        cleared.append(f"extension:{nib.nifti1.extension_codes.label[code] if code in nib.nifti1.extension_codes else code}")
    header.extensions.clear()
    return with_header(img, header), cleared

