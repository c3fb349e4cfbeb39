"""DICOM slices <-> a NIfTI-like volume, and back, for defacing head series.

A :class:`Stack` is one 3D volume of a series: single-frame files (one slice each)
or the frames of one enhanced multi-frame file, ordered by Image Position
(Patient) along the slice normal (how a series splits into stacks:
:mod:`bids_deface.dicom.stacks`). :func:`stack_image` gives a nibabel image of the
stored pixel values whose affine maps voxels to RAS+ mm (DICOM is LPS+: x and y
flip); :func:`write_stack` puts an edited volume back, slice by slice, in the
original dtype, rescale and photometric interpretation.

Voxel axes: i runs along a row (column index, Image Orientation's first vector),
j down the columns (row index, its second vector), k along the slices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
DEFACEABLE_MODALITIES = frozenset({"MR", "CT"})
# Body parts that mean "not a head": anything else (or nothing) is treated as a head.
NOT_HEAD = ("CHEST", "ABDOMEN", "PELVIS", "KNEE", "SPINE", "LSPINE", "TSPINE", "HEART", "BREAST",
            "HAND", "FOOT", "ANKLE", "SHOULDER", "HIP", "LEG", "ARM", "ELBOW", "WRIST", "LIVER")
MIN_SLICES = 16  # fewer slices cannot hold a face worth detecting (scouts, single slabs)


class NotAVolume(ValueError):
    """The slices do not form one regular 3D volume (the reason is the message)."""


@dataclass
class Frame:
    ds: Dataset
    index: int | None  # frame number (0-based) in a multi-frame data set, None for single-frame
    position: np.ndarray  # Image Position (Patient), LPS mm
    orientation: np.ndarray  # Image Orientation (Patient), 6 direction cosines
    spacing: np.ndarray  # Pixel Spacing: (between rows, between columns), mm
    slope: float
    intercept: float


@dataclass
class Stack:
    """Frames in slice order; ``affine`` (RAS+) runs from the first slice to the last.

    ``regular``: the slices are evenly spaced along the normal with no in-plane drift, so
    ``affine`` places every slice where it is; otherwise each slice's own position
    (``positions``, LPS mm) is where it is (:mod:`bids_deface.dicom.resample`).
    """

    frames: list[Frame]
    affine: np.ndarray
    shape: tuple[int, int, int]
    regular: bool = True
    normal: np.ndarray | None = None
    positions: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def _seq_item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _functional(ds: Dataset, index: int, macro: str) -> Dataset | None:
    """The item of functional group ``macro`` for frame ``index`` (per-frame, else shared)."""
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is not None and index < len(per):
        item = _seq_item(per[index], macro)
        if item is not None:
            return item
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    return _seq_item(shared, macro) if shared is not None else None


def frames_of(ds: Dataset) -> list[Frame]:
    """The frames of one data set with their geometry; raises NotAVolume when it is missing."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        frames = []
        for i in range(n):
            pos, ori, meas = (_functional(ds, i, m) for m in (
                "PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence"))
            if pos is None or ori is None or meas is None or "PixelSpacing" not in meas:
                raise NotAVolume("frames without plane position, orientation or pixel spacing")
            tr = _functional(ds, i, "PixelValueTransformationSequence")
            slope = float(tr.get("RescaleSlope", 1) if tr is not None else ds.get("RescaleSlope", 1) or 1)
            inter = float(tr.get("RescaleIntercept", 0) if tr is not None else ds.get("RescaleIntercept", 0) or 0)
            frames.append(Frame(ds, i, np.array(pos.ImagePositionPatient, float),
                                np.array(ori.ImageOrientationPatient, float),
                                np.array(meas.PixelSpacing, float), slope, inter))
        return frames
    if n != 1:
        raise NotAVolume("multi-frame data set without functional groups")
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if keyword not in ds:
            raise NotAVolume(f"no {keyword}")
    return [Frame(ds, None, np.array(ds.ImagePositionPatient, float),
                  np.array(ds.ImageOrientationPatient, float), np.array(ds.PixelSpacing, float),
                  float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0))]


def is_head_series(ds: Dataset) -> str | None:
    """None when ``ds``'s series is a grey-scale head MR or CT; else why it is not."""
    modality = str(ds.get("Modality", ""))
    if modality not in DEFACEABLE_MODALITIES:
        return f"modality {modality or 'unknown'} is not MR or CT"
    body = str(ds.get("BodyPartExamined", "")).upper()
    if any(part in body for part in NOT_HEAD):
        return "body part is not the head"
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return "not a grey-scale image"
    if str(ds.get("PhotometricInterpretation", "")) not in ("MONOCHROME1", "MONOCHROME2"):
        return "not a grey-scale image"
    if "MOSAIC" in [str(v).upper() for v in ds.get("ImageType", [])]:
        return "Siemens mosaic (EPI tiles, not unpacked)"
    return None


def _pixels(ds: Dataset, cache: dict) -> np.ndarray:
    key = id(ds)
    if key not in cache:
        arr = ds.pixel_array
        cache[key] = arr if arr.ndim == 3 else arr[np.newaxis]
    return cache[key]


def _same_scaling(stack: Stack) -> bool:
    return len({(f.slope, f.intercept) for f in stack.frames}) == 1


def stack_image(stack: Stack, cache: dict | None = None) -> nib.Nifti1Image:
    """The volume of ``stack`` as a NIfTI image of stored values (RAS+ affine).

    When every slice shares one rescale, the data are the stored values in their own
    dtype (so edits map back exactly); otherwise float32 real-world values.
    MONOCHROME1 is inverted so that bright means signal, as in MONOCHROME2.
    """
    cache = {} if cache is None else cache
    planes = [_pixels(f.ds, cache)[f.index or 0] for f in stack.frames]
    if _same_scaling(stack):
        data = np.stack(planes, axis=-1).transpose(1, 0, 2)  # (rows, cols, k) -> (cols, rows, k)
    else:
        data = np.stack([p.astype(np.float32) * f.slope + f.intercept for p, f in zip(planes, stack.frames)],
                        axis=-1).transpose(1, 0, 2)
    if _monochrome1(stack):
        data = _invert(data, stack.frames[0].ds)
    img = nib.Nifti1Image(data, stack.affine)
    img.header.set_xyzt_units("mm")
    return img


def _monochrome1(stack: Stack) -> bool:
    return str(stack.frames[0].ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"


def _value_range(ds: Dataset) -> tuple[int, int]:
    bits = int(ds.get("BitsStored", ds.BitsAllocated))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _invert(data: np.ndarray, ds: Dataset) -> np.ndarray:
    lo, hi = _value_range(ds)
    return (hi + lo - data.astype(np.int64)).astype(data.dtype) if data.dtype.kind in "iu" else (hi + lo - data)


def write_stack(stack: Stack, volume: np.ndarray, cache: dict | None = None) -> set[int]:
    """Write ``volume`` (the shape of ``stack_image(stack)``) back into the frames' pixels.

    Returns the ids of the data sets whose Pixel Data were replaced: those with a frame
    that changed (the others keep their Pixel Data as read, compressed or not). Replaced
    Pixel Data are stored uncompressed (Explicit VR Little Endian) in the original dtype,
    Rescale Slope/Intercept and Photometric Interpretation unchanged.
    """
    cache = {} if cache is None else cache
    volume = np.asarray(volume)
    if _monochrome1(stack):
        volume = _invert(volume, stack.frames[0].ds)
    planes = np.moveaxis(volume, 2, 0).swapaxes(1, 2)  # (slices, rows, columns), a view
    first = stack.frames[0]
    if _same_scaling(stack):
        dtype, (lo, hi) = _pixels(first.ds, cache).dtype, _value_range(first.ds)
        if planes.dtype != dtype or planes.min() < lo or planes.max() > hi:
            planes = np.clip(planes, lo, hi).astype(dtype)
    else:  # back to each slice's own stored values
        planes = np.stack([_stored(p, f, _pixels(f.ds, cache).dtype) for p, f in zip(planes, stack.frames)])
    planes = np.ascontiguousarray(planes)
    original = np.stack([_pixels(f.ds, cache)[f.index or 0] for f in stack.frames])
    touched: dict[int, Dataset] = {}
    for k in np.flatnonzero(np.any(planes != original, axis=(1, 2))):
        f = stack.frames[k]
        pixels = _pixels(f.ds, cache)
        if not pixels.flags.writeable:
            pixels = cache[id(f.ds)] = pixels.copy()
        pixels[f.index or 0] = planes[k]
        touched[id(f.ds)] = f.ds
    for key, ds in touched.items():
        arr = cache[key]
        _set_pixels(ds, arr if int(ds.get("NumberOfFrames", 1) or 1) > 1 else arr[0])
    return set(touched)


def _stored(plane: np.ndarray, f: Frame, dtype) -> np.ndarray:
    lo, hi = _value_range(f.ds)
    return np.clip(np.rint((plane.astype(np.float64) - f.intercept) / f.slope), lo, hi).astype(dtype)


def _set_pixels(ds: Dataset, arr: np.ndarray) -> None:
    """Store ``arr`` as native little-endian Pixel Data, keeping the image pixel description."""
    ds.PixelData = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))).tobytes()
    ds["PixelData"].VR = "OW" if int(ds.BitsAllocated) > 8 else "OB"
    ds["PixelData"].is_undefined_length = False
    ts = ds.file_meta.TransferSyntaxUID
    if ts.is_compressed or ts.is_deflated or not ts.is_little_endian:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
