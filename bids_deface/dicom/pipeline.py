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

import pydicom
from pydicom.errors import InvalidDicomError

from bids_deface.dicom.codecs import store_like
from bids_deface.dicom.deid import deidentify
from bids_deface.dicom.defacing import Defacer, core_defacer, deface_series
from bids_deface.dicom.folders import check_folders, write_map
from bids_deface.dicom.integrity import Corrupt, check_complete
from bids_deface.dicom.profile import ProfileOptions
from bids_deface.dicom.series import MIN_SLICES, NotAVolume, is_head_series
from bids_deface.dicom.uids import Keyed
from bids_deface.dicom.writing import write_dicom

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
LOG_NAME = "bids_deface_dicom_log.tsv"
LOG_FIELDS = ("input", "token", "output", "status", "pixels", "actions", "message")
MAP_FIELDS = ("input", "token", "path", "output", "status")


@dataclass
class RunOptions:
    key: bytes | str
    profile: ProfileOptions = field(default_factory=ProfileOptions)
    pseudonyms: dict[str, str] | None = None
    deface: bool = True
    accept_burned_in: bool = False
    defacer: Defacer | None = None  # None: core_defacer()
    map_file: Path | None = None  # curator-side map: token -> input path (never in OUT)


@dataclass
class LogRow:
    input: int  # position of the input file in sorted order (its name may identify)
    token: str = ""  # keyed: the curator's map file (--map-file) says which file it is
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
    check_folders(in_dir, out_dir, opts.map_file)  # before anything is created
    out_dir.mkdir(parents=True, exist_ok=True)
    keyed = Keyed(opts.key, opts.pseudonyms)
    files = sorted(p for p in in_dir.rglob("*") if p.is_file())
    rels = [p.relative_to(in_dir).as_posix() for p in files]
    rows = [LogRow(i, keyed.token(rel)) for i, rel in enumerate(rels)]
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
        row.output = mirror_path(Path(rels[i]), keyed).as_posix()
        if not opts.deface:
            try:
                check_complete(ds, path)
            except Corrupt as exc:
                row.status, row.output, row.message = "failed", "", str(exc)
                continue
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
    if opts.map_file is not None:
        write_map(opts.map_file, MAP_FIELDS, [(r.input, r.token, rel, r.output, r.status)
                                              for r, rel in zip(rows, rels)])
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
        write_dicom(ds, target)
        row.status, row.actions = "written", _actions(counts)
    except KeyError as exc:  # pseudonym missing from the mapping file
        row.status, row.message, row.output = "failed", str(exc).strip("'\""), ""
    except Exception as exc:  # noqa: BLE001
        row.status, row.message, row.output = "failed", f"could not de-identify ({type(exc).__name__})", ""
        target.unlink(missing_ok=True)


def _fail(rows, indices, message: str) -> None:
    for i in indices:
        rows[i].status, rows[i].output, rows[i].message = "failed", "", message


def _read_members(files, members, rows) -> dict[int, pydicom.Dataset]:
    """The whole data sets of a series; a file that is unreadable or cut fails on its own line."""
    datasets = {}
    for i in members:
        try:
            ds = pydicom.dcmread(files[i], force=True)
            check_complete(ds, files[i])
            datasets[i] = ds
        except Corrupt as exc:
            _fail(rows, [i], str(exc))
        except Exception as exc:  # noqa: BLE001
            _fail(rows, [i], f"unreadable DICOM ({type(exc).__name__})")
    return datasets


def _process_series(files, members, rows, out_dir, keyed, opts, defacer):
    datasets = _read_members(files, members, rows)
    if not datasets:
        return
    reason = is_head_series(next(iter(datasets.values())))
    broken = [i for i in members if i not in datasets]
    if reason is None and broken:  # its face cannot be proved gone: the series is withheld
        refs = ", ".join(f"#{i} [{rows[i].token}]" for i in broken[:3]) + (" …" if len(broken) > 3 else "")
        _fail(rows, datasets, f"head series withheld: input {refs} of the series is unreadable or cut")
        return
    originals = {i: ds.file_meta.TransferSyntaxUID for i, ds in datasets.items()}
    outcome = None
    if reason is None:
        uid = str(next(iter(datasets.values())).get("SeriesInstanceUID", ""))
        seed = lambda n: int.from_bytes(keyed.digest("seed", f"{uid}/{n}")[:4], "big")  # noqa: E731
        try:
            outcome = deface_series(list(datasets.values()), defacer, seed)
            reason = outcome.kept or None
        except NotAVolume as exc:
            if sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in datasets.values()) < MIN_SLICES:
                reason = f"not a volume: {exc}"  # a scout or a few slices: no face to speak of
            else:  # enough slices to hold a face we could not find: never written with it
                _fail(rows, datasets, f"head series not defaced (not a volume: {exc}); "
                                      "--no-deface writes headers only")
                return
        except Exception as exc:  # noqa: BLE001 - a head we could not deface is never written
            _fail(rows, datasets, f"head series not defaced ({type(exc).__name__}: {str(exc)[:120]})")
            return
    for i, ds in datasets.items():
        row = rows[i]
        if outcome is not None and not outcome.kept:
            if id(ds) in outcome.failed:
                _fail(rows, [i], outcome.failed[id(ds)])
                continue
            notes = [store_like(ds, originals[i])] if id(ds) in outcome.defaced else []
            if outcome.resampled:
                notes.append("detected on a regular grid resampled from the slices")
            if outcome.warnings:  # a missing, doubled or implausible feature: the curator should look
                notes.append("detector: " + "; ".join(outcome.warnings))
            row.message = "; ".join(n for n in notes if n)
            row.pixels = "defaced"
            _deidentify_and_write(ds, out_dir / row.output, keyed, opts, row, defaced=True)
        else:
            row.pixels = f"kept ({reason})"
            _deidentify_and_write(ds, out_dir / row.output, keyed, opts, row, defaced=False)


def write_log(rows: list[LogRow], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(LOG_FIELDS)
        for r in rows:
            writer.writerow([r.input, r.token, r.output, r.status, r.pixels, r.actions, r.message])
