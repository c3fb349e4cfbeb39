"""De-identify (and deface) every DICOM file under a folder into a mirrored output tree.

:func:`run` reads each file under ``in_dir`` that pydicom can decode (DICOMDIR and
non-DICOM files are skipped, unreadable ones reported and never copied), groups the
files into series, defaces the pixels of head MR and CT series with the same
detector and distortions as the BIDS App, de-identifies every header to PS3.15
Annex E and writes each file to ``out_dir`` under a keyed, neutral name at the
same depth as the input. It returns one :class:`LogRow` per input file; the rows
hold statuses and action counts, never a removed value nor an input name.

With a vault (``vault_dir`` and recipients' certificates) every written file carries the
original values of the attributes de-identification changed in its Encrypted Attributes
Sequence (0400,0500), and the vault gets one entry per series (its files as written, or whole
where they were withheld) and one per other file left out, so that ``bids-deface restore``
gives back every input file byte for byte.
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
from bids_deface.dicom.defacing import Defacer, SeriesRefused, core_defacer, deface_series
from bids_deface.dicom.folders import check_folders, write_map
from bids_deface.dicom.integrity import Corrupt, check_complete
from bids_deface.dicom.originals import EncryptedAttributes
from bids_deface.dicom.profile import ProfileOptions
from bids_deface.dicom.series import MIN_SLICES, NotAVolume, is_head_series
from bids_deface.dicom.uids import Keyed
from bids_deface.dicom.writing import write_dicom
from bids_deface.vault import VaultError, VaultWriter, check_vault_dir

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
    defacer: Defacer | None = None  # None: core_defacer(allow_partial=allow_partial)
    map_file: Path | None = None  # curator-side map: token -> input path (never in OUT)
    allow_partial: bool = False  # the fail-closed gate's override (--allow-partial), noted in the log
    vault_dir: Path | None = None  # encrypted entries of what was removed (bids_deface.vault)
    vault_recipients: tuple = ()  # X.509 certificates of RSA keys (paths or vault Recipients)


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


@dataclass
class _Run:
    """What every step of one run shares."""

    files: list[Path]
    rows: list[LogRow]
    out_dir: Path
    keyed: Keyed
    opts: RunOptions
    vault: VaultWriter | None = None
    sealed: set[int] = field(default_factory=set)  # inputs the vault holds an entry for
    encrypted: EncryptedAttributes | None = None  # with a vault: each written file's (0400,0500)

    def __post_init__(self):
        if self.vault is not None:
            self.encrypted = EncryptedAttributes(r.cms_certificate for r in self.vault.recipients)


def open_vault(in_dir: Path, out_dir: Path, opts: RunOptions) -> VaultWriter | None:
    """The run's vault writer (None without ``vault_dir``); :class:`VaultError` when the vault
    lies inside IN_DIR or OUT_DIR or a recipient has no RSA certificate for the Encrypted
    Attributes Sequence. Creates the vault folder: call after the folders are checked."""
    if opts.vault_dir is None and not opts.vault_recipients:
        return None
    if opts.vault_dir is None or not opts.vault_recipients:
        raise VaultError("a vault needs both a folder (--vault-dir) and at least one recipient (--vault-recipient)")
    vault_dir = check_vault_dir(opts.vault_dir, IN_DIR=in_dir, OUT_DIR=out_dir)
    writer = VaultWriter(vault_dir, opts.vault_recipients, input_root=in_dir, output_root=out_dir)
    if any(r.cms_certificate is None for r in writer.recipients):
        raise VaultError("the dicom door's vault recipients must be X.509 certificates of RSA keys (CMS, for the "
                         "Encrypted Attributes Sequence): bids-deface keygen PREFIX writes PREFIX.cert.pem")
    return writer


def run(in_dir: Path, out_dir: Path, opts: RunOptions) -> list[LogRow]:
    """De-identify ``in_dir`` into ``out_dir``; write and return the per-file log."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    check_folders(in_dir, out_dir, opts.map_file)  # before anything is created
    if opts.vault_dir is not None:
        check_vault_dir(opts.vault_dir, IN_DIR=in_dir, OUT_DIR=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keyed = Keyed(opts.key, opts.pseudonyms)
    files = sorted(p for p in in_dir.rglob("*") if p.is_file())
    rels = [p.relative_to(in_dir).as_posix() for p in files]
    ctx = _Run(files, [LogRow(i, keyed.token(rel)) for i, rel in enumerate(rels)], out_dir, keyed, opts,
               open_vault(in_dir, out_dir, opts))
    series: dict[str, list[int]] = defaultdict(list)
    for i in range(len(files)):
        unit = _read_one(ctx, i, rels[i])
        if unit is not None:
            series[unit].append(i)
    defacer = opts.defacer
    for members in series.values():
        if opts.deface:
            if defacer is None and _needs_defacer([files[i] for i in members]):
                defacer = core_defacer(allow_partial=opts.allow_partial)
            _process_series(ctx, members, defacer)
        if ctx.encrypted is not None:
            ctx.encrypted.release()  # the attributes kept of files withheld
        _seal(ctx, members)  # header only: each file was written as it was read
    for i in range(len(files)):
        if i not in ctx.sealed:
            _seal(ctx, [i])  # not DICOM, DICOMDIR, unreadable, refused: left out, kept by the vault
    write_log(ctx.rows, out_dir / LOG_NAME)
    if opts.map_file is not None:
        write_map(opts.map_file, MAP_FIELDS, [(r.input, r.token, rel, r.output, r.status)
                                              for r, rel in zip(ctx.rows, rels)])
    return ctx.rows


def _read_one(ctx: _Run, i: int, rel: str) -> str | None:
    """Read input ``i``: the series it belongs to, or None when it is not processed further.
    Header only (``--no-deface``), it is de-identified and written here."""
    path, row, opts = ctx.files[i], ctx.rows[i], ctx.opts
    try:
        ds = read_dicom(path, headers_only=opts.deface)
    except Exception as exc:  # noqa: BLE001 - any decoding error: report, never copy
        row.status, row.message = "failed", f"unreadable DICOM ({type(exc).__name__})"
        return None
    if ds is None:
        row.status, row.message = "skipped", "not a DICOM file"
        return None
    if _is_dicomdir(ds):
        row.status, row.message = "skipped", "DICOMDIR"
        return None
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES" and not opts.accept_burned_in:
        row.status, row.message = "refused", "Burned In Annotation is YES (use --accept-burned-in)"
        return None
    row.output = mirror_path(Path(rel), ctx.keyed).as_posix()
    unit = str(ds.get("SeriesInstanceUID", f"no-series-{i}"))
    if not opts.deface:
        try:
            check_complete(ds, path)
        except Corrupt as exc:
            row.status, row.output, row.message = "failed", "", str(exc)
            return unit
        row.pixels = "kept (header only)"
        if ctx.encrypted is not None:
            ctx.encrypted.keep(path, ds)
        _deidentify_and_write(ctx, i, ds, defaced=False)
        return unit
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:  # a multi-frame file is a volume of its own
        unit += f"/{i}"
    return unit


def _needs_defacer(paths: list[Path]) -> bool:
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    return is_head_series(ds) is None


def _deidentify_and_write(ctx: _Run, i: int, ds, *, defaced: bool):
    row, target = ctx.rows[i], ctx.out_dir / ctx.rows[i].output
    if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
        row.status, row.output = "failed", ""
        row.message = "no SOP Class/Instance UID: cannot be written as a DICOM file"
        return
    try:
        counts = deidentify(ds, ctx.keyed, ctx.opts.profile, pixels_defaced=defaced)
        if ctx.encrypted is not None:  # the original values of what changed, for the certificates' holders
            encrypted = ctx.encrypted(ctx.files[i], ds)
            if encrypted is not None:
                ds.EncryptedAttributesSequence = encrypted
        target.parent.mkdir(parents=True, exist_ok=True)
        write_dicom(ds, target)
        row.status, row.actions = "written", _actions(counts)
    except KeyError as exc:  # pseudonym missing from the mapping file
        row.status, row.message, row.output = "failed", str(exc).strip("'\""), ""
    except Exception as exc:  # noqa: BLE001
        row.status, row.message, row.output = "failed", f"could not de-identify ({type(exc).__name__})", ""
        target.unlink(missing_ok=True)


def _seal(ctx: _Run, indices: list[int]) -> None:
    """One vault entry for these inputs (a series): each written file as a difference from its
    output, each file left out whole. If it cannot be sealed, their outputs go too."""
    if ctx.vault is None:
        return
    written = [i for i in indices if ctx.rows[i].status == "written"]
    pairs = [(ctx.files[i], ctx.out_dir / ctx.rows[i].output if i in written else None) for i in indices]
    try:
        ctx.vault.add_group(pairs)
    except (VaultError, OSError) as exc:
        reason = str(exc) if isinstance(exc, VaultError) else f"vault: {exc.strerror or type(exc).__name__}"
        for i in indices:
            row = ctx.rows[i]
            if i in written:
                (ctx.out_dir / row.output).unlink(missing_ok=True)
                row.status, row.output = "failed", ""
                row.message = f"not written: its vault entry could not be sealed ({reason})"
            else:
                row.status = "failed"
                row.message = "; ".join(m for m in (row.message, f"not in the vault ({reason})") if m)
        return
    ctx.sealed.update(indices)


def _fail(rows, indices, message: str, status: str = "failed") -> None:
    for i in indices:
        rows[i].status, rows[i].output, rows[i].message = status, "", message


def _read_members(ctx: _Run, members) -> dict[int, pydicom.Dataset]:
    """The whole data sets of a series; a file that is unreadable or cut fails on its own line."""
    datasets = {}
    for i in members:
        try:
            ds = pydicom.dcmread(ctx.files[i], force=True)
            check_complete(ds, ctx.files[i])
            datasets[i] = ds
            if ctx.encrypted is not None:  # its original attributes, before defacing touches any
                ctx.encrypted.keep(ctx.files[i], ds)
        except Corrupt as exc:
            _fail(ctx.rows, [i], str(exc))
        except Exception as exc:  # noqa: BLE001
            _fail(ctx.rows, [i], f"unreadable DICOM ({type(exc).__name__})")
    return datasets


def _series_ref(ctx: _Run, members) -> str:
    """The series named as a curator can find it: its first input's position and token."""
    first = min(members)
    return f"series of input #{first} [{ctx.rows[first].token}], {len(members)} files"


def _deface(ctx: _Run, members, datasets, defacer):
    """(the series' SeriesOutcome or None when its pixels are kept, why they are kept); None when
    the series was withheld (its rows say why)."""
    rows = ctx.rows
    uid = str(next(iter(datasets.values())).get("SeriesInstanceUID", ""))
    seed = lambda n: int.from_bytes(ctx.keyed.digest("seed", f"{uid}/{n}")[:4], "big")  # noqa: E731
    try:
        outcome = deface_series(list(datasets.values()), defacer, seed)
        return outcome, outcome.kept or None
    except SeriesRefused as exc:  # the gate: its features cannot all be shown gone
        _fail(rows, datasets, f"head series withheld ({_series_ref(ctx, members)}): {exc.reason}", "refused")
    except NotAVolume as exc:
        if sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in datasets.values()) < MIN_SLICES:
            return None, f"not a volume: {exc}"  # a scout or a few slices: no face to speak of
        # enough slices to hold a face we could not find: never written with it
        _fail(rows, datasets, f"head series not defaced (not a volume: {exc}); --no-deface writes headers only")
    except Exception as exc:  # noqa: BLE001 - a head we could not deface is never written
        _fail(rows, datasets, f"head series not defaced ({type(exc).__name__}: {str(exc)[:120]})")
    return None


def _process_series(ctx: _Run, members, defacer):
    rows = ctx.rows
    datasets = _read_members(ctx, members)
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
        defaced = _deface(ctx, members, datasets, defacer)
        if defaced is None:
            return
        outcome, reason = defaced
    for i, ds in datasets.items():
        row = rows[i]
        if outcome is not None and not outcome.kept:
            if id(ds) in outcome.failed:
                _fail(rows, [i], outcome.failed[id(ds)])
                continue
            row.message = "; ".join(n for n in _notes(outcome, ds, originals[i]) if n)
            row.pixels = "defaced"
            _deidentify_and_write(ctx, i, ds, defaced=True)
        else:
            row.pixels = f"kept ({reason})"
            _deidentify_and_write(ctx, i, ds, defaced=False)


def _notes(outcome, ds, original_syntax) -> list[str]:
    notes = [store_like(ds, original_syntax)] if id(ds) in outcome.defaced else []
    if outcome.resampled:
        notes.append("detected on a regular grid resampled from the slices")
    if outcome.gate:  # stand-ins, features outside the field of view, the --allow-partial override
        notes.append("gate: " + "; ".join(outcome.gate))
    if outcome.warnings:  # a missing, doubled or implausible feature: the curator should look
        notes.append("detector: " + "; ".join(outcome.warnings))
    return notes


def write_log(rows: list[LogRow], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(LOG_FIELDS)
        for r in rows:
            writer.writerow([r.input, r.token, r.output, r.status, r.pixels, r.actions, r.message])
