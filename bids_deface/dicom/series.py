"""DICOM slices <-> a NIfTI-like volume, and back, for defacing head series.

A :class:`Stack` is one 3D volume of a series: single-frame files (one slice each)
or the frames of one enhanced multi-frame file, ordered by Image Position
(Patient) along the slice normal. :func:`stack_image` gives a nibabel image of the
stored pixel values whose affine maps voxels to RAS+ mm (DICOM is LPS+: x and y
flip); :func:`write_stack` puts an edited volume back, slice by slice, in the
original dtype, rescale and photometric interpretation.

Voxel axes: i runs along a row (column index, Image Orientation's first vector),
j down the columns (row index, its second vector), k along the slices.
"""

from __future__ import annotations

from collections import defaultdict
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
    frames: list[Frame]  # in slice order
    affine: np.ndarray  # RAS+ voxel -> mm
    shape: tuple[int, int, int]
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


def stacks(datasets: list[Dataset]) -> list[Stack]:
    """Split the frames of a series into regular 3D volumes.

    Frames are grouped by orientation and in-plane geometry; frames at the same
    position (echoes, repetitions, diffusion directions) go to successive volumes
    in acquisition order. Raises NotAVolume when they do not form regular volumes.
    """
    frames = [f for ds in datasets for f in frames_of(ds)]
    groups: dict[tuple, list[Frame]] = defaultdict(list)
    for f in frames:
        key = (tuple(np.round(f.orientation, 3)), tuple(np.round(f.spacing, 4)),
               int(f.ds.Rows), int(f.ds.Columns))
        groups[key].append(f)
    result = []
    for group in groups.values():
        normal = np.cross(group[0].orientation[:3], group[0].orientation[3:])
        by_position: dict[float, list[Frame]] = defaultdict(list)
        for f in sorted(group, key=_acquisition_order):
            by_position[round(float(f.position @ normal), 2)].append(f)
        repeats = {len(v) for v in by_position.values()}
        if len(repeats) != 1:
            raise NotAVolume("slice positions repeat unevenly")
        for r in range(repeats.pop()):
            ordered = [by_position[p][r] for p in sorted(by_position)]
            result.append(_stack(ordered, normal))
    return result


def _acquisition_order(f: Frame) -> tuple:
    return (int(f.ds.get("InstanceNumber", 0) or 0), f.index or 0)


def _stack(frames: list[Frame], normal: np.ndarray) -> Stack:
    first = frames[0]
    rows, cols = int(first.ds.Rows), int(first.ds.Columns)
    n = len(frames)
    if n > 1:
        steps = np.diff([f.position @ normal for f in frames])
        step = float(np.median(steps))
        if step <= 0 or np.max(np.abs(steps - step)) > 0.01 * step + 1e-3:
            raise NotAVolume("slices are not evenly spaced")
        slice_vec = (frames[-1].position - first.position) / (n - 1)
    else:
        thickness = float(first.ds.get("SliceThickness", 1) or 1)
        slice_vec = normal * thickness
    row_cos, col_cos = first.orientation[:3], first.orientation[3:]
    lps = np.eye(4)
    lps[:3, 0] = row_cos * first.spacing[1]
    lps[:3, 1] = col_cos * first.spacing[0]
    lps[:3, 2] = slice_vec
    lps[:3, 3] = first.position
    return Stack(frames, LPS_TO_RAS @ lps, (cols, rows, n))


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
    cols, rows, n = stack.shape
    first = _pixels(stack.frames[0].ds, cache)
    same = _same_scaling(stack)
    data = np.empty((cols, rows, n), dtype=first.dtype if same else np.float32)
    for k, f in enumerate(stack.frames):
        plane = _pixels(f.ds, cache)[f.index or 0]
        data[:, :, k] = plane.T if same else (plane.astype(np.float32) * f.slope + f.intercept).T
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

    Returns the ids of the data sets whose Pixel Data were replaced. Their Pixel Data
    are stored uncompressed (Explicit VR Little Endian) in the original dtype, Rescale
    Slope/Intercept and Photometric Interpretation unchanged.
    """
    cache = {} if cache is None else cache
    same = _same_scaling(stack)
    if _monochrome1(stack):
        volume = _invert(np.asarray(volume), stack.frames[0].ds)
    touched: dict[int, Dataset] = {}
    for k, f in enumerate(stack.frames):
        pixels = _pixels(f.ds, cache)
        if not pixels.flags.writeable:
            pixels = cache[id(f.ds)] = pixels.copy()
        plane = np.asarray(volume[:, :, k]).T
        if not same:
            plane = np.rint((plane.astype(np.float64) - f.intercept) / f.slope)
        lo, hi = _value_range(f.ds)
        pixels[f.index or 0] = np.clip(plane, lo, hi).astype(pixels.dtype)
        touched[id(f.ds)] = f.ds
    for key, ds in touched.items():
        arr = cache[key]
        _set_pixels(ds, arr if int(ds.get("NumberOfFrames", 1) or 1) > 1 else arr[0])
    return set(touched)


def _set_pixels(ds: Dataset, arr: np.ndarray) -> None:
    """Store ``arr`` as native little-endian Pixel Data, keeping the image pixel description."""
    ds.PixelData = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))).tobytes()
    ds["PixelData"].VR = "OW" if int(ds.BitsAllocated) > 8 else "OB"
    ds["PixelData"].is_undefined_length = False
    ts = ds.file_meta.TransferSyntaxUID
    if ts.is_compressed or ts.is_deflated or not ts.is_little_endian:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
