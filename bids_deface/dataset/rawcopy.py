"""The raw layout: a copy of the input dataset with everything but the defaced images themselves
(the workflow writes those), cleaned, relabelled, streamed and restartable.

Only what the BIDS schema knows and bids-deface can clean is copied (:mod:`.inventory`); every
image that can show a face (:mod:`.faces`) and is not defaced in this run is left out with its
sidecar. Each participant's files are written one by one (constant memory), dataset-level files
last (they are searched for everyone's removed values). A manifest (:mod:`.manifest`, in the
output's ``logs/``) lets a rerun skip files already written and verified. What was left out is
returned by path in the dataset (relabelled, identifying words replaced), never copied.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from bids_deface.dataset import cleaners, inventory
from bids_deface.dataset.atomic import write_atomic, write_text_atomic
from bids_deface.dataset.description import BIDSIGNORE
from bids_deface.dataset.faces import can_show_face
from bids_deface.dataset.inventory import DatasetFile, LeftOut
from bids_deface.dataset.manifest import CopyManifest, digest_of
from bids_deface.dataset.naming import strip_prefix
from bids_deface.dataset.progress import Progress

LOGGER = logging.getLogger("bids_deface")
MANIFEST = "logs/raw-copy-manifest.jsonl"
DATASET_LEVEL_DIRS = ("phenotype",)


@dataclass
class RawCopyResult:
    """``problems``: one line per file that could not be copied (the run fails); ``left_out``:
    files and folders not copied, with the reason; counts of files written and skipped."""

    problems: list[str] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    written: int = 0
    skipped: int = 0


def _image_stem(rel: str) -> str | None:
    for ext in (".nii.gz", ".nii"):
        if rel.endswith(ext):
            return rel[: -len(ext)]
    return None


class RawCopy:
    """One raw copy (see :func:`copy_raw_dataset`)."""

    def __init__(self, ctx: cleaners.CopyContext, output_dir: Path, *, selected: set[str], face_suffixes,
                 fingerprint: str, every: int):
        self.ctx, self.output_dir, self.selected = ctx, Path(output_dir), selected
        self.face_suffixes = face_suffixes
        self.root_real = os.path.realpath(ctx.bids_dir)
        self.ignore = inventory.read_bidsignore(ctx.bids_dir)
        self.result = RawCopyResult()
        self.manifest = CopyManifest(self.output_dir / MANIFEST, self.output_dir, fingerprint)
        self.every = every
        self.progress: Progress | None = None
        self._faces: dict[str, bool] = {}

    # ------------------------------------------------------------------ decisions
    def face_left_out(self, rel: str) -> str | None:
        """Why the image ``rel`` is left out (it can show a face and is not defaced here), or None."""
        if rel in self.selected:
            return None
        if rel not in self._faces:
            from bids_deface.dataset.niftistream import header_of

            try:
                header = header_of(self.ctx.bids_dir / rel)
            except Exception:  # unreadable: can_show_face fails closed
                header = None
            verdict = can_show_face(rel, header, self.face_suffixes)
            self._faces[rel] = verdict.reason if verdict else None
        return self._faces[rel]

    def sidecar_goes_with_face(self, rel: str) -> bool:
        """A sidecar (or any companion: .bval, .bvec) of an image that is left out goes with it."""
        stem = rel.rsplit(".", 1)[0] if not rel.endswith(".tsv.gz") else rel[: -len(".tsv.gz")]
        for ext in (".nii.gz", ".nii"):
            image = stem + ext
            if (self.ctx.bids_dir / image).exists() and self.face_left_out(image):
                return True
        return False

    # ------------------------------------------------------------------ writing
    def leave_out(self, rel: str, reason: str, seal: bool = True) -> None:
        self.result.left_out.append(LeftOut(self.ctx.relabel.path(rel), reason))
        if seal:
            self.seal_removed(rel)

    def seal_removed(self, rel: str) -> None:
        """A left-out file (or the files of a left-out folder) sealed whole in the vault, so that
        restore rebuilds the input; hidden folders and links out of the dataset are not its content."""
        if self.ctx.vault is None:
            return
        path = self.ctx.bids_dir / rel.rstrip("/")
        if not inventory.inside(path, self.root_real) or (rel.endswith("/") and path.name.startswith(".")):
            return
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                   and inventory.inside(p, self.root_real))
        try:
            for file in files:
                self.ctx.vault.add_removed(file)
        except Exception as exc:  # VaultError, OSError: named, the copy goes on
            self.result.problems.append(f"{self.ctx.relabel.path(rel)}: not sealed in the vault ({exc})")

    def handle(self, entry, subject: str | None) -> None:
        nbytes, skipped = self._handle(entry, subject)
        self.progress.step(nbytes, skipped)

    def _handle(self, entry, subject: str | None) -> tuple[int, bool]:
        """Copy, skip or leave out one entry of the walk; (bytes read, skipped as verified)."""
        if isinstance(entry, tuple):  # ("broken", rel)
            self.result.problems.append(f"{self.ctx.relabel.path(entry[1])}: broken link, its content is not "
                                        "available (datalad get?)")
            return 0, False
        if isinstance(entry, LeftOut):
            self.leave_out(entry.relpath, entry.reason)
            return 0, False
        rel = entry.relpath
        if entry.kind == "image":
            if rel in self.selected:
                return 0, False  # the workflow writes its defaced version
            reason = self.face_left_out(rel)
            if reason:
                self.leave_out(rel, f"can show a face ({reason}) and is not defaced in this run")
                return 0, False
        elif entry.kind in ("sidecar", "numbers") and self.sidecar_goes_with_face(rel):
            self.leave_out(rel, "goes with an image that is left out")
            return 0, False
        return self.write(entry, subject)

    def write(self, entry: DatasetFile, subject: str | None) -> tuple[int, bool]:
        src = self.ctx.bids_dir / entry.relpath
        out_rel = self.ctx.relabel.path(entry.relpath)
        stat = src.stat()
        source = digest_of(entry.relpath, stat.st_size, stat.st_mtime_ns, self.ctx.known.digest(subject),
                           sorted(self.ctx.present) if entry.table == "scans" else "")
        if self.manifest.is_done(out_rel, source):
            self.ctx.present.add(out_rel)
            return stat.st_size, True
        writer = cleaners.WRITERS[entry.kind]
        try:
            write_atomic(self.output_dir / out_rel,
                         lambda tmp: writer(self.ctx, src, entry.relpath, subject, entry.table, tmp))
        except cleaners.LeaveOut as exc:
            self.leave_out(entry.relpath, str(exc))
            (self.output_dir / out_rel).unlink(missing_ok=True)
            return 0, False
        except Exception as exc:  # one unusable file must not stop the copy of the others
            message = str(exc) if str(exc).startswith(entry.relpath) else f"{entry.relpath}: {_reason(exc)}"
            self.result.problems.append(self.ctx.relabel.text(message))
            (self.output_dir / out_rel).unlink(missing_ok=True)
            return 0, False
        if self.ctx.vault is not None:
            try:
                self.ctx.vault.add(src, self.output_dir / out_rel)
            except Exception as exc:  # an output that cannot be reversed as promised does not stay
                (self.output_dir / out_rel).unlink(missing_ok=True)
                self.result.problems.append(f"{out_rel}: not copied: it could not be sealed in the vault ({exc})")
                return 0, False
        self.manifest.record(out_rel, source)
        self.ctx.present.add(out_rel)
        self.result.written += 1
        return stat.st_size, False

    # ------------------------------------------------------------------ order
    def subject(self, label: str) -> None:
        top = f"sub-{label}"

        def selected_dir(rel: str) -> bool:
            name = PurePosixPath(rel).name
            sessions = self.ctx.sessions_in
            return not (sessions is not None and name.startswith("ses-") and rel.count("/") == 1
                        and strip_prefix(name, "ses") not in sessions)

        self.ctx.present = set()  # this participant's output files (scans.tsv keeps their rows)
        self._faces = {}
        tables = []
        for entry in inventory.walk(self.ctx.bids_dir, top, self.root_real, self.ignore, selected_dir):
            if isinstance(entry, DatasetFile) and entry.kind in ("table", "table_sidecar"):
                tables.append(entry)  # after the files: scans.tsv keeps rows of files present
            else:
                self.handle(entry, label)
        self.ctx.present |= {self.ctx.relabel.path(r) for r in self.selected if r.startswith(top + "/")}
        for entry in tables:
            self.handle(entry, label)

    def dataset_level(self, files: list[str], dirs: list[str]) -> None:
        for name in dirs:
            for entry in inventory.walk(self.ctx.bids_dir, name, self.root_real, self.ignore):
                self.handle(entry, None)
        for name in files:
            path = self.ctx.bids_dir / name
            if not inventory.inside(path, self.root_real):
                self.leave_out(name, "symbolic link to a file outside the dataset")
            elif not path.exists():
                self.handle(("broken", name), None)
            else:
                self.handle(inventory.classify(name, inventory.is_ignored(name, self.ignore)), None)


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"could not be copied ({exc.strerror or type(exc).__name__})"
    return " ".join(str(exc).split()) or type(exc).__name__


def _top_level(bids_dir: Path, subjects) -> tuple[list[str], list[str], list[str], list[LeftOut]]:
    """(dataset-level files, dataset-level folders, selected subject labels, left-out folders)."""
    files, dirs, labels, left = [], [], [], []
    for entry in sorted(os.scandir(bids_dir), key=lambda e: e.name):
        name = entry.name
        if not entry.is_dir():
            if name.startswith("."):
                if name != ".bidsignore":
                    left.append(LeftOut(name, "hidden file"))
            else:
                files.append(name)
        elif name.startswith("sub-"):
            if subjects is None or strip_prefix(name, "sub") in subjects:
                labels.append(strip_prefix(name, "sub"))
        elif name in DATASET_LEVEL_DIRS:
            dirs.append(name)
        elif name.startswith("."):
            left.append(LeftOut(name + "/", "hidden folder"))
        elif name in inventory.opaque_folders():
            left.append(LeftOut(name + "/", f"{name}/ is not copied"))
        else:
            left.append(LeftOut(name + "/", "not a BIDS folder"))
    return files, dirs, labels, left


def count_files(bids_dir: Path, labels, files, dirs) -> int:
    total = len(files)
    for top in [f"sub-{label}" for label in labels] + list(dirs):
        total += sum(len(names) for _, _, names in os.walk(Path(bids_dir) / top, followlinks=True))
    return total


def copy_raw_dataset(ctx: cleaners.CopyContext, output_dir: Path, *, selected, subjects=None,
                     face_suffixes=None, fingerprint: str = "", every: int = 500) -> RawCopyResult:
    """Everything of the raw layout except the defaced images themselves.

    ``ctx``: the run's policy, methods, relabelling and removed values (``ctx.participants`` /
    ``ctx.sessions``: table rows kept, new labels; ``ctx.sessions_in``: the selected session
    labels of the input, or None); ``selected``: input paths of the images the workflow defaces;
    ``subjects``: selected participant labels (None: all); ``fingerprint``: the run's settings
    (another fingerprint starts the manifest over); ``every``: a progress line every N files.
    """
    copy = RawCopy(ctx, output_dir, selected=set(selected), face_suffixes=face_suffixes,
                   fingerprint=fingerprint, every=every)
    files, dirs, labels, left = _top_level(ctx.bids_dir, subjects)
    for item in left:
        copy.leave_out(item.relpath, item.reason)
    copy.progress = Progress(count_files(ctx.bids_dir, labels, files, dirs), every=every)
    try:
        for label in labels:
            copy.subject(label)
        copy.dataset_level(files, dirs)
        write_text_atomic(Path(output_dir) / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")
        if ctx.vault is not None and (ctx.bids_dir / ".bidsignore").is_file():  # restore brings the input's back
            ctx.vault.add(ctx.bids_dir / ".bidsignore", Path(output_dir) / ".bidsignore")
    finally:
        copy.manifest.close()
    copy.result.skipped = copy.manifest.skipped
    copy.progress.report()
    return copy.result


def left_out_lines(left_out: list[LeftOut], known_values) -> list[str]:
    """``path<TAB>reason`` per left-out file, for the run's report: what in a name could identify
    someone (the participants' removed values, names, dates, numbers) becomes ``[category]``."""
    from bids_deface.metadata import find_phi, known_patterns

    patterns = known_patterns(known_values)
    lines = []
    for item in sorted(left_out, key=lambda x: x.relpath):
        name = item.relpath
        for finding in reversed(find_phi(name, patterns=patterns)):
            name = name[:finding.start] + f"[{finding.category}]" + name[finding.end:]
        lines.append(f"{name}\t{item.reason}")
    return lines
