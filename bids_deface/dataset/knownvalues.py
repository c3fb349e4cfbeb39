"""The identifying values a dataset gives away about each participant, gathered before anything is
written, so that each of them is searched for in all of that participant's text.

Per participant: the values of the policy's identifying keys (PatientName, InstitutionName …)
in every sidecar of the participant (at any depth), the cells of the columns the policy drops
from participants.tsv, phenotype/*.tsv, sessions.tsv and scans.tsv (full_name, dob, mrn …), the
NIfTI header text of the participant's images, and, when participants are relabelled, the old
label. Values of the top-level sidecars apply to everyone. Dataset-level text (README …) is
searched for everyone's values. The earliest ``acq_time`` of each participant is kept too: all
of a participant's dates move by one offset.

Only digests of these values ever leave this module's callers (the copy manifest).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bids_deface.dataset.sidecars import SidecarError, read_sidecar

NIFTI_LABEL = "descrip"  # the category hint of header text (see metadata.phi.known_patterns)


def _extend(target: dict, values: dict | list, label: str | None = None) -> None:
    if isinstance(values, dict):
        for category, items in values.items():
            items = [items] if isinstance(items, str) else items
            target.setdefault(category, []).extend(str(v) for v in items if str(v).strip())
    else:
        target.setdefault(label or "known", []).extend(str(v) for v in values if str(v).strip())


@dataclass
class KnownValues:
    """Removed values by participant label (the input's labels) and for everyone."""

    dataset: dict[str, list[str]] = field(default_factory=dict)
    by_subject: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    references: dict[str, object] = field(default_factory=dict)  # label -> earliest acq_time

    def subject(self, label: str) -> dict[str, list[str]]:
        merged: dict[str, list[str]] = {}
        _extend(merged, self.dataset)
        _extend(merged, self.by_subject.get(label, {}))
        return {k: sorted(set(v)) for k, v in merged.items()}

    def everyone(self) -> dict[str, list[str]]:
        merged: dict[str, list[str]] = {}
        _extend(merged, self.dataset)
        for values in self.by_subject.values():
            _extend(merged, values)
        return {k: sorted(set(v)) for k, v in merged.items()}

    def digest(self, label: str | None) -> str:
        """A digest of the values that shape a participant's outputs (None: everyone's)."""
        values = self.everyone() if label is None else self.subject(label)
        reference = self.references.get(label) if label else None
        text = json.dumps([values, str(reference)], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def _read_table(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    except (OSError, ValueError, pd.errors.ParserError):
        return None  # the copy reports the file


def _table_values(df: pd.DataFrame, policy, kind: str, label: str | None = None) -> dict[str, list[str]]:
    from bids_deface.metadata import known_values_from_table

    if label is not None:
        df = df.copy()
        df.insert(0, "participant_id", f"sub-{label}")
    if "participant_id" not in df.columns:
        return {}
    return known_values_from_table(df, policy, kind)


def _nifti_text(path: Path) -> list[str]:
    from bids_deface.dataset.niftistream import header_of
    from bids_deface.metadata import NIFTI_TEXT_FIELDS

    try:
        header = header_of(path)
    except Exception:  # an unreadable image is reported by whoever copies or defaces it
        return []
    out = []
    for name in NIFTI_TEXT_FIELDS:
        if name in header:
            text = bytes(header[name]).split(b"\x00", 1)[0].decode("latin-1").strip()
            if text:
                out.append(text)
    return out


def _label_worth_searching(label: str) -> bool:
    """An old participant label is searched for when it could name someone (not ``01``)."""
    return len(label) >= 5 or (len(label) >= 4 and any(c.isalpha() for c in label))


def collect_known_values(bids_dir: Path, subjects, policy, *, relabelled: bool = False) -> KnownValues:
    """The removed values of ``subjects`` (labels) and of the dataset level (see module doc)."""
    from bids_deface.metadata import earliest_acq_time, known_values_from_sidecar

    bids_dir = Path(bids_dir)
    known = KnownValues()
    for path in sorted(bids_dir.glob("*.json")):
        if path.name not in ("dataset_description.json", "participants.json", "samples.json", "genetic_info.json"):
            try:
                _extend(known.dataset, known_values_from_sidecar(read_sidecar(path, path.name), policy))
            except SidecarError:
                pass
    tables = [(bids_dir / "participants.tsv", "participants"),
              *((p, "phenotype") for p in sorted((bids_dir / "phenotype").glob("*.tsv")))]
    for path, kind in tables:
        df = _read_table(path) if path.is_file() else None
        if df is not None:
            for label, values in _table_values(df, policy, kind).items():
                _extend(known.by_subject.setdefault(label, {}), values, "known")
    for label in subjects:
        values = known.by_subject.setdefault(label, {})
        folder = bids_dir / f"sub-{label}"
        readable = []
        for path in sorted([*folder.rglob("*_scans.tsv"), *folder.glob("*_sessions.tsv")]):
            df = _read_table(path)
            if df is not None:
                readable.append(df)
                kind = "sessions" if path.name.endswith("_sessions.tsv") else "scans"
                _extend(values, _table_values(df, policy, kind, label).get(label, []), "known")
        for path in sorted(folder.rglob("*.json")):
            try:
                _extend(values, known_values_from_sidecar(read_sidecar(path, path.name), policy))
            except SidecarError:
                pass
        for path in sorted([*folder.rglob("*.nii"), *folder.rglob("*.nii.gz")]):
            _extend(values, _nifti_text(path), NIFTI_LABEL)
        if relabelled and _label_worth_searching(label):
            _extend(values, [label], "id")
        try:
            known.references[label] = earliest_acq_time(readable) if readable else None
        except (ValueError, KeyError):
            known.references[label] = None
    return known
