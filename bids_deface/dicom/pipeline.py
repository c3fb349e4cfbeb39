"""De-identify (and deface) every DICOM file under a folder into a mirrored output tree.

:func:`run` reads each file under ``in_dir`` that pydicom can decode (DICOMDIR and
non-DICOM files are skipped, unreadable ones reported and never copied), groups the
files into series, defaces the pixels of head MR and CT series with the same
detector and distortions as the BIDS App, de-identifies every header to PS3.15
Annex E and writes each file to ``out_dir`` under a keyed, neutral name at the
same depth as the input. It returns one :class:`LogRow` per input file; the rows
hold statuses and action counts, never a removed value nor an input name.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pydicom
from nibabel.arrayproxy import ArrayProxy
from pydicom.errors import InvalidDicomError

from bids_deface.dicom.deid import deidentify
from bids_deface.dicom.profile import ProfileOptions
from bids_deface.dicom.series import MIN_SLICES, NotAVolume, is_head_series, stack_image, stacks, write_stack
from bids_deface.dicom.uids import Keyed

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
LOG_NAME = "bids_deface_dicom_log.tsv"
# Refuse a volume when the distortions would change more than this share of its voxels:
# the brain must survive, and a head that cannot be defaced is not written at all.
MAX_DISTORTED_SHARE = 0.05
LOG_FIELDS = ("input", "output", "status", "pixels", "actions", "message")


@dataclass
class Defacer:
    """The BIDS App's core, as two steps so a series' volumes share one detection.

    ``detect(img) -> (labels array, info)``; ``distort(img, labels, seed) -> (img, counts)``.
    """

    detect: Callable[[nib.Nifti1Image], tuple[np.ndarray, dict]]
    distort: Callable[[nib.Nifti1Image, np.ndarray, int], tuple[nib.Nifti1Image, dict]]


def core_defacer() -> Defacer:
    """The detector and distortions of the BIDS App (bids_deface.features, bids_deface.distort)."""
    from bids_deface.distort import deface_image
    from bids_deface.features import FEATURES
    from bids_deface.features.detect import detect_features

    def detect(img):
        found = detect_features(img)
        info = {"confidence": found.confidence, "warnings": list(found.warnings)}
        return np.asarray(found.labels.dataobj), info

    def distort(img, labels, seed):
        return deface_image(img, labels, features=FEATURES, seed=seed)

    return Defacer(detect, distort)


@dataclass
class RunOptions:
    key: bytes | str
    profile: ProfileOptions = field(default_factory=ProfileOptions)
    pseudonyms: dict[str, str] | None = None
    deface: bool = True
    accept_burned_in: bool = False
    defacer: Defacer | None = None  # None: core_defacer()


@dataclass
class LogRow:
    input: int  # position of the input file in sorted order (its name may identify)
    output: str = ""
    status: str = ""  # written | skipped | failed | refused
    pixels: str = ""
    actions: str = ""
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "refused")


def mirror_path(rel: Path, keyed: Keyed) -> Path:
    """A neutral path at the same depth as ``rel``: each component a keyed name."""
    parts = rel.parts
    dirs = [keyed.name("/".join(parts[: i + 1])) for i in range(len(parts) - 1)]
    return Path(*dirs, keyed.name("/".join(parts)) + ".dcm")


def read_dicom(path: Path, *, headers_only: bool = False) -> pydicom.Dataset | None:
    """The data set in ``path``, or None when the file is not DICOM at all."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=headers_only)
    except InvalidDicomError:
        pass
    # No preamble: accept a raw data set only when it names its SOP instance.
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=headers_only)
        if "SOPClassUID" in ds and "SOPInstanceUID" in ds:
            return ds
    except Exception:  # noqa: BLE001 - garbage read with force is "not DICOM"
        pass
    return None


def _actions(counts) -> str:
    return " ".join(f"{k.replace(' ', '_')}={v}" for k, v in sorted(counts.items()))


def _is_dicomdir(ds) -> bool:
    meta = getattr(ds, "file_meta", None)
    return (meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == DICOMDIR_CLASS) \
        or "DirectoryRecordSequence" in ds


def run(in_dir: Path, out_dir: Path, opts: RunOptions) -> list[LogRow]:
    """De-identify ``in_dir`` into ``out_dir``; write and return the per-file log."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise NotADirectoryError(f"{in_dir}: input is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir.resolve().is_relative_to(in_dir.resolve()):
        raise ValueError(f"{out_dir}: output folder must not be inside the input folder")
    keyed = Keyed(opts.key, opts.pseudonyms)
    files = sorted(p for p in in_dir.rglob("*") if p.is_file())
    rows = [LogRow(i) for i in range(len(files))]
    series: dict[str, list[int]] = defaultdict(list)

    for i, path in enumerate(files):
        row = rows[i]
        try:
            ds = read_dicom(path, headers_only=opts.deface)
        except Exception as exc:  # noqa: BLE001 - any decoding error: report, never copy
            row.status, row.message = "failed", f"unreadable DICOM ({type(exc).__name__})"
            continue
        if ds is None:
            row.status, row.message = "skipped", "not a DICOM file"
            continue
        if _is_dicomdir(ds):
            row.status, row.message = "skipped", "DICOMDIR"
            continue
        if str(ds.get("BurnedInAnnotation", "")).upper() == "YES" and not opts.accept_burned_in:
            row.status, row.message = "refused", "Burned In Annotation is YES (use --accept-burned-in)"
            continue
        row.output = mirror_path(path.relative_to(in_dir), keyed).as_posix()
        if not opts.deface:
            row.pixels = "kept (header only)"
            _deidentify_and_write(ds, out_dir / row.output, keyed, opts, row, defaced=False)
        else:
            unit = str(ds.get("SeriesInstanceUID", f"no-series-{i}"))
            if int(ds.get("NumberOfFrames", 1) or 1) > 1:  # a multi-frame file is a volume of its own
                unit += f"/{i}"
            series[unit].append(i)

    if opts.deface:
        defacer = opts.defacer
        for members in series.values():
            if defacer is None and _needs_defacer([files[i] for i in members]):
                defacer = core_defacer()
            _process_series(files, members, rows, out_dir, keyed, opts, defacer)

    write_log(rows, out_dir / LOG_NAME)
    return rows


def _needs_defacer(paths: list[Path]) -> bool:
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    return is_head_series(ds) is None


def _deidentify_and_write(ds, target: Path, keyed: Keyed, opts: RunOptions, row: LogRow, *, defaced: bool):
    if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
        row.status, row.output = "failed", ""
        row.message = "no SOP Class/Instance UID: cannot be written as a DICOM file"
        return
    try:
        counts = deidentify(ds, keyed, opts.profile, pixels_defaced=defaced)
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
        row.status, row.actions = "written", _actions(counts)
    except KeyError as exc:  # pseudonym missing from the mapping file
        row.status, row.message, row.output = "failed", str(exc).strip("'\""), ""
    except Exception as exc:  # noqa: BLE001
        row.status, row.message, row.output = "failed", f"could not de-identify ({type(exc).__name__})", ""
        target.unlink(missing_ok=True)


def _process_series(files, members, rows, out_dir, keyed, opts, defacer):
    datasets = {}
    for i in members:
        try:
            datasets[i] = pydicom.dcmread(files[i])
        except Exception as exc:  # noqa: BLE001
            rows[i].status, rows[i].message, rows[i].output = "failed", f"unreadable DICOM ({type(exc).__name__})", ""
    if not datasets:
        return
    first = next(iter(datasets.values()))
    reason = is_head_series(first)
    defaced, warnings = False, []
    if reason is None:
        try:
            defaced, note, warnings = _deface(list(datasets.values()), keyed, defacer)
            reason = None if defaced else note
        except NotAVolume as exc:
            if _frame_count(datasets.values()) < MIN_SLICES:  # a scout or a few slices: no face to speak of
                reason = f"not a volume: {exc}"
            else:  # enough slices to hold a face we could not find: never written with it
                for i in datasets:
                    rows[i].status, rows[i].output = "failed", ""
                    rows[i].message = f"head series not defaced (not a volume: {exc}); --no-deface writes headers only"
                return
        except Exception as exc:  # noqa: BLE001 - a head we could not deface is never written
            for i in datasets:
                rows[i].status, rows[i].output = "failed", ""
                rows[i].message = f"head series not defaced ({type(exc).__name__}: {str(exc)[:120]})"
            return
    for i, ds in datasets.items():
        rows[i].pixels = "defaced" if defaced else f"kept ({reason})"
        if warnings:  # a missing, doubled or implausible feature: the curator should look
            rows[i].message = "detector: " + "; ".join(warnings)
        _deidentify_and_write(ds, out_dir / rows[i].output, keyed, opts, rows[i], defaced=defaced)


def _frame_count(datasets) -> int:
    return sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in datasets)


def _deface(datasets, keyed: Keyed, defacer: Defacer) -> tuple[bool, str, list[str]]:
    """Deface every volume of a head series in place; (defaced?, why not, detector warnings)."""
    volumes = stacks(datasets)
    if max(v.shape[2] for v in volumes) < MIN_SLICES:
        return False, f"fewer than {MIN_SLICES} slices", []
    warnings: list[str] = []
    cache: dict = {}
    labels_by_grid: dict[tuple, np.ndarray] = {}
    series_uid = str(datasets[0].get("SeriesInstanceUID", ""))
    for n, stack in enumerate(volumes):
        if stack.shape[2] < MIN_SLICES:
            raise NotAVolume("volumes of different sizes in one series")
        img = stack_image(stack, cache)
        grid = (stack.shape, tuple(np.round(stack.affine, 3).ravel()))
        if grid not in labels_by_grid:  # one detection per geometry (echoes, repetitions)
            labels_by_grid[grid], info = defacer.detect(img)
            warnings += [w for w in info.get("warnings", []) if w not in warnings]
        seed = int.from_bytes(keyed.digest("seed", f"{series_uid}/{n}")[:4], "big")
        defaced_img, counts = defacer.distort(img, labels_by_grid[grid], seed)
        share = sum(counts.values()) / float(np.prod(stack.shape))
        if share > MAX_DISTORTED_SHARE:  # eyes, nose and ears are a few percent of a head scan
            raise ValueError(f"implausible detection: {share:.0%} of the volume would be distorted")
        write_stack(stack, _stored_values(defaced_img), cache)
    return True, "", warnings


def _stored_values(img) -> np.ndarray:
    """The stored (unscaled) voxel values of ``img``, as the distortions wrote them."""
    proxy = img.dataobj
    if isinstance(proxy, ArrayProxy):
        return np.asarray(proxy.get_unscaled())
    return np.asarray(proxy)


def write_log(rows: list[LogRow], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(LOG_FIELDS)
        for r in rows:
            writer.writerow([r.input, r.output, r.status, r.pixels, r.actions, r.message])
