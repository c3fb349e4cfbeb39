"""Keyed, deterministic replacements: UIDs, patient pseudonyms, per-patient date shifts.

Everything is derived with HMAC-SHA256 under the user's key, so the same input maps
to the same output across files and runs (references between files stay intact),
and nobody without the key can go back or test a guess.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
from pathlib import Path

from pydicom.uid import UID_dictionary

# Shift dates back by 1 to 3650 days: far enough that the scan date is unknowable,
# the same for every file of one patient so intervals survive.
MAX_SHIFT_DAYS = 3650


class Keyed:
    """Keyed derivations for one de-identification run."""

    def __init__(self, key: bytes | str, pseudonyms: dict[str, str] | None = None):
        if isinstance(key, str):
            key = key.encode("utf-8")
        if len(key) < 8:
            raise ValueError("the de-identification key must be at least 8 bytes long")
        self._key = key
        self._uids: dict[str, str] = {}
        self.pseudonyms = pseudonyms

    def digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._key, f"{purpose}\0{value}".encode("utf-8"), hashlib.sha256).digest()

    def uid(self, uid: str) -> str:
        """A new UID for ``uid`` under the 2.25 root (UUID-derived form, PS3.5 B.2)."""
        uid = uid.strip().rstrip("\0")
        new = self._uids.get(uid)
        if new is None:
            new = "2.25." + str(int.from_bytes(self.digest("uid", uid)[:16], "big"))
            self._uids[uid] = new
        return new

    def pseudonym(self, patient_id: str) -> str:
        """Pseudonym for a patient: from the mapping file when given, else keyed hash."""
        if self.pseudonyms is not None:
            try:
                return self.pseudonyms[patient_id]
            except KeyError:
                raise KeyError("patient not listed in the pseudonym mapping file") from None
        return "ANON" + self.digest("patient", patient_id).hex()[:12].upper()

    def date_shift(self, patient_id: str) -> dt.timedelta:
        days = 1 + int.from_bytes(self.digest("dates", patient_id)[:4], "big") % MAX_SHIFT_DAYS
        return dt.timedelta(days=-days)

    def name(self, value: str, length: int = 12) -> str:
        """A neutral file or folder name standing for ``value``."""
        return self.digest("path", value).hex()[:length]

    def token(self, input_path: str) -> str:
        """The log's stand-in for an input file; only the curator's map links it to the path."""
        return "t" + self.digest("token", input_path).hex()[:11]


def is_registered(uid: str) -> bool:
    """True for UIDs defined by the DICOM standard (SOP classes, transfer syntaxes ...)."""
    return uid in UID_dictionary


def read_pseudonyms(path: Path) -> dict[str, str]:
    """Read a two-column mapping file (tab or comma separated): PatientID, pseudonym.

    A first row whose first cell is ``PatientID`` (any case) is a header.
    """
    text = Path(path).read_text(encoding="utf-8-sig")
    dialect = "excel-tab" if "\t" in text.splitlines()[0] else "excel"
    mapping: dict[str, str] = {}
    for i, row in enumerate(csv.reader(text.splitlines(), dialect=dialect)):
        if not row or not "".join(row).strip():
            continue
        if i == 0 and row[0].strip().lower() in {"patientid", "patient_id", "original"}:
            continue
        if len(row) < 2 or not row[1].strip():
            raise ValueError(f"{path}: line {i + 1}: expected 'PatientID<TAB>pseudonym'")
        mapping[row[0].strip()] = row[1].strip()
    if not mapping:
        raise ValueError(f"{path}: no pseudonyms found")
    return mapping
