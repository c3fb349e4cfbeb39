"""How the raw copy writes each kind of file it takes (see :mod:`.inventory`): relabelled first,
then through the metadata allow-list, with the participant's removed values searched for.

Each cleaner writes one output file to ``tmp`` (the atomic writer renames it into place) and
raises :class:`LeaveOut` when the content is not what the name promised (a ``.bval`` with
words in it, a README that is not text): such a file is left out, not copied.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bids_deface.dataset.description import raw_description
from bids_deface.dataset.niftistream import copy_scrubbed_nifti
from bids_deface.dataset.sidecars import read_sidecar

NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^n/a$|^nan$", re.I)


class LeaveOut(ValueError):
    """A file whose content cannot be cleaned: it is left out (the message says why)."""


@dataclass
class CopyContext:
    """What every cleaner needs: the run's policy, methods, relabelling and removed values."""

    bids_dir: Path
    policy: object
    deidentifier: object
    relabel: object
    known: object
    source_desc: dict
    participants: list | None = None  # rows kept (new labels); None keeps all
    sessions: list | None = None
    sessions_in: set | None = None  # the selected sessions (input labels); None: all
    present: set = field(default_factory=set)  # output paths that will exist
    vault: object = None  # a bids_deface.vault.VaultWriter: what the copy changes or leaves out, sealed
    _by_participant: dict | None = None

    def values(self, subject: str | None) -> dict:
        return self.known.everyone() if subject is None else self.known.subject(subject)

    def methods(self, subject: str | None):
        return self.deidentifier.for_subject(subject or "")

    def reference(self, subject: str | None):
        return self.known.references.get(subject) if subject else None


def _dump(data, tmp: Path) -> None:
    # UTF-8, not \u escapes: what is written is what a byte scan sees
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# free-text fields of dataset_description.json that could mention a participant (Authors,
# Name, License and the like are the dataset's own public statements and are kept as written)
DESCRIPTION_TEXT = ("Acknowledgements", "HowToAcknowledge", "Funding", "EthicsApprovals")


def description(ctx: CopyContext, src: Path, rel: str, subject, table, tmp: Path) -> None:
    from bids_deface.metadata import clean_text, known_patterns

    desc = raw_description(ctx.source_desc)
    patterns = known_patterns(ctx.values(None))
    method = getattr(ctx.policy, "text_files_method", "redact")

    def clean(value):
        if isinstance(value, str):
            return clean_text(value, method=method, deidentifier=ctx.methods(None), where=rel, patterns=patterns)[0]
        return [clean(v) for v in value] if isinstance(value, list) else value

    for key in DESCRIPTION_TEXT:
        if key in desc:
            desc[key] = clean(ctx.relabel.json(desc[key]))
    _dump(desc, tmp)


def read_text(src: Path) -> str:
    raw = src.read_bytes()
    for bom, encoding in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if raw.startswith(bom):
            return raw.decode(encoding)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LeaveOut("not UTF-8 or UTF-16 text, so it cannot be scanned") from None


def text(ctx: CopyContext, src: Path, rel: str, subject, table, tmp: Path) -> None:
    from bids_deface.metadata import scrub_text_file

    content = ctx.relabel.text(read_text(src))
    cleaned, _ = scrub_text_file(content, ctx.policy, known_values=ctx.values(subject),
                                 deidentifier=ctx.methods(subject), where=rel)
    tmp.write_text(cleaned, encoding="utf-8")


def sidecar(ctx: CopyContext, src: Path, rel: str, subject, table, tmp: Path) -> None:
    from bids_deface.metadata import scrub_sidecar

    metadata = ctx.relabel.json(read_sidecar(src, rel))
    scrubbed, _ = scrub_sidecar(metadata, ctx.policy, known_values=ctx.values(subject),
                                deidentifier=ctx.methods(subject), reference=ctx.reference(subject), table=table)
    _dump(scrubbed, tmp)


def table_sidecar(ctx: CopyContext, src: Path, rel: str, subject, table, tmp: Path) -> None:
    sidecar(ctx, src, rel, subject, table, tmp)


def _present_rows(df: pd.DataFrame, ctx: CopyContext, folder: str) -> pd.DataFrame:
    """scans.tsv rows of files that are in the output (a row naming a left-out file would
    make the copy invalid)."""
    if "filename" not in df.columns:
        return df
    return df[df["filename"].map(lambda name: f"{folder}/{name}" in ctx.present)]


def tsv(ctx: CopyContext, src: Path, rel: str, subject, table, tmp: Path) -> None:
    from bids_deface.metadata import scrub_table

    try:
        df = pd.read_csv(src, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a readable TSV table ({type(exc).__name__})") from None
    if ctx.relabel.active:
        df = df.map(ctx.relabel.text)
    if table == "scans":
        df = _present_rows(df, ctx, ctx.relabel.path(str(Path(rel).parent.as_posix())))
    scrub_table(df, ctx.policy, tmp, kind=table, participants=ctx.participants,
                sessions=ctx.sessions if table != "participants" else None,
                known_values=ctx.values(subject) if subject else ctx.known.dataset,
                known_by_participant=_by_participant(ctx) if subject is None else {},
                deidentifier=ctx.methods(subject),
                reference=ctx.reference(subject))


def _by_participant(ctx: CopyContext) -> dict[str, list[str]]:
    """Each participant's removed values, keyed by the label the table now holds (for the
    dataset-level tables, whose rows are participants)."""
    if ctx._by_participant is None:
        ctx._by_participant = {ctx.relabel.subject(label): [v for vs in ctx.known.subject(label).values() for v in vs]
                               for label in ctx.known.by_subject}
    return ctx._by_participant


def image(ctx: CopyContext, src: Path, rel: str, subject, table, tmp: Path) -> None:
    from bids_deface.metadata import NIFTI_TEXT_FIELDS

    copy_scrubbed_nifti(src, tmp, NIFTI_TEXT_FIELDS)


def _numbers_only(lines, sep=None) -> None:
    for number, line in enumerate(lines, 1):
        cells = line.strip().split(sep) if sep else line.split()
        if any(cell.strip() and not NUMBER.match(cell.strip()) for cell in cells):
            raise LeaveOut(f"line {number} holds something other than numbers")


def numbers(ctx: CopyContext, src: Path, rel: str, subject, table, tmp: Path) -> None:
    if rel.endswith(".tsv.gz"):
        with gzip.open(src, "rt", encoding="utf-8", errors="strict") as handle:
            _numbers_only(handle, "\t")
        # rewritten, not copied: a gzip header can carry the original file name
        from isal import igzip

        with gzip.open(src, "rb") as source, open(tmp, "wb") as raw, \
                igzip.IGzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
            shutil.copyfileobj(source, out, 1 << 20)
        return
    with open(src, encoding="utf-8") as handle:
        _numbers_only(handle)
    shutil.copyfile(src, tmp)


WRITERS = {"description": description, "text": text, "sidecar": sidecar, "table_sidecar": table_sidecar,
           "table": tsv, "image": image, "numbers": numbers}
