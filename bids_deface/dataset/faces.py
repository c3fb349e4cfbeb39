"""Can this image show a face? The one rule, from the file's place in the dataset and its header.

A face can be rebuilt from an image (surface rendering, then face recognition) when the image
is fine enough to resolve eyes, nose and lips, and its field of view is large enough to hold
them. So an image *can show a face* when:

1. it lies in an ``anat`` folder, whatever its suffix (every anatomical image is a structural
   scan of the head; only ``defacemask`` is exempt), or its suffix is one of the face-bearing
   anatomical suffixes (``bids_deface.dataset.select.FACE_SUFFIXES``) wherever it lies; or
2. whatever its datatype (fmap magnitudes, PET, BOLD …), its voxels are finer than
   :data:`FACE_MAX_VOXEL_MM` along its two finest axes **and** its field of view spans at least
   :data:`FACE_MIN_SPAN_MM` along two axes and :data:`FACE_MIN_DEPTH_MM` along the third.

The thresholds are deliberately generous: a 2 mm isotropic whole-head EPI or a 2.4 mm field-map
magnitude is blurred and distorted beyond recognition, while a 1.5 mm magnitude image or a 1 mm
PET/CT is not. An image whose header cannot be read counts as one that can show a face (fail
closed). A face-bearing image is defaced or left out, never copied as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

# Finer than this along the two finest axes, an image resolves facial features.
FACE_MAX_VOXEL_MM = 2.0
# A face (eyes to chin, ear to ear) needs at least this much field of view …
FACE_MIN_SPAN_MM = 100.0
# … and this much along the third axis (eyes and the bridge of the nose fit in 40 mm).
FACE_MIN_DEPTH_MM = 40.0
EXEMPT_ANAT_SUFFIXES = ("defacemask",)


@dataclass(frozen=True)
class FaceVerdict:
    """Whether an image can show a face, and why (a reason a curator reads in the report)."""

    can_show_face: bool
    reason: str

    def __bool__(self) -> bool:
        return self.can_show_face


def _suffix_and_datatype(relpath: str) -> tuple[str, str]:
    path = PurePosixPath(relpath)
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    suffix = name.rsplit("_", 1)[-1] if "_" in name else name
    return suffix, path.parent.name


def geometry_can_show_face(shape, zooms) -> FaceVerdict:
    """Rule 2 on a grid: ``shape`` (3 or more axes) and ``zooms`` (voxel sizes, mm)."""
    shape = [int(n) for n in shape[:3]]
    zooms = [abs(float(z)) for z in zooms[:3]]
    if len(shape) < 3 or len(zooms) < 3:
        shape, zooms = (shape + [1, 1, 1])[:3], (zooms + [1.0, 1.0, 1.0])[:3]
    spans = sorted((n * z for n, z in zip(shape, zooms)), reverse=True)
    finest = sorted(zooms)[:2]
    if not all(np.isfinite(zooms)) or min(zooms) <= 0:
        return FaceVerdict(True, "voxel sizes not usable")
    if max(finest) >= FACE_MAX_VOXEL_MM:
        return FaceVerdict(False, f"voxels of {max(finest):.1f} mm or coarser cannot resolve a face")
    if spans[1] < FACE_MIN_SPAN_MM or spans[2] < FACE_MIN_DEPTH_MM:
        return FaceVerdict(False, f"field of view {spans[0]:.0f}×{spans[1]:.0f}×{spans[2]:.0f} mm cannot hold a face")
    return FaceVerdict(True, f"{max(finest):.1f} mm voxels over a {spans[0]:.0f}×{spans[1]:.0f}×{spans[2]:.0f} mm "
                             "field of view")


def can_show_face(relpath: str, header=None, face_suffixes=None) -> FaceVerdict:
    """Whether the image at ``relpath`` (its path in the dataset) can show a face.

    ``header``: its NIfTI header (nibabel), or None when it could not be read;
    ``face_suffixes``: the anatomical suffixes that always can (default: ``FACE_SUFFIXES``).
    """
    if face_suffixes is None:
        from bids_deface.dataset.select import FACE_SUFFIXES as face_suffixes
    suffix, datatype = _suffix_and_datatype(relpath)
    if suffix in face_suffixes:
        return FaceVerdict(True, f"a {suffix} image")
    if datatype == "anat" and suffix not in EXEMPT_ANAT_SUFFIXES:
        return FaceVerdict(True, "an anatomical image")
    if header is None:
        return FaceVerdict(True, "header unreadable")
    try:
        shape, zooms = header.get_data_shape(), header.get_zooms()
    except Exception:  # a header nibabel read but cannot interpret
        return FaceVerdict(True, "header unreadable")
    if suffix in EXEMPT_ANAT_SUFFIXES:
        return FaceVerdict(False, "a defacing mask")
    return geometry_can_show_face(shape, zooms)
