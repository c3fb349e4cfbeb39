"""``bids-deface dicom IN_DIR OUT_DIR``: de-identify and deface a folder of DICOM files.

Exit status: 0 when every DICOM file was written; 1 when any file was unreadable,
failed, or was refused (burned-in annotation, a head series the fail-closed gate withheld);
2 on a usage error.
"""

from __future__ import annotations

import os
import sys

from bids_deface.cli.parser import UsageError
from bids_deface.dicom.pipeline import LOG_NAME, RunOptions, run as run_dicom
from bids_deface.dicom.profile import ProfileOptions
from bids_deface.dicom.uids import read_pseudonyms
from bids_deface.vault import VaultError

KEY_ENV = "BIDS_DEFACE_DICOM_KEY"


def _key(args) -> str | bytes:
    if args.key_file:
        key = args.key_file.read_bytes().strip()
    else:
        key = args.key or os.environ.get(KEY_ENV, "")
    if not key:
        raise UsageError(f"no key: give --key, --key-file or set {KEY_ENV}")
    return key


def run(args, argv=None) -> int:
    """Run the DICOM door with parsed options; the exit status."""
    try:
        opts = RunOptions(
            key=_key(args),
            profile=ProfileOptions(
                retain_long_modified_dates=args.retain_modified_dates,
                retain_patient_characteristics=args.retain_patient_characteristics,
                retain_device_identity=args.retain_device_identity,
                retain_institution_identity=args.retain_institution_identity,
                clean_descriptors=args.clean_descriptors,
                retain_safe_private=args.retain_safe_private,
            ),
            pseudonyms=read_pseudonyms(args.pseudonyms) if args.pseudonyms else None,
            deface=not args.no_deface,
            accept_burned_in=args.accept_burned_in,
            map_file=args.map_file,
            allow_partial=args.allow_partial,
            vault_dir=args.vault_dir,
            vault_recipients=tuple(args.vault_recipient or ()),
        )
        rows = run_dicom(args.in_dir, args.out_dir, opts)
    except (OSError, ValueError, VaultError) as exc:  # folders, key, pseudonyms, vault: one line, as every usage error
        raise UsageError(str(exc)) from None
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    defaced = sum(r.pixels == "defaced" for r in rows)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"bids-deface dicom: {summary}; {defaced} defaced; log: {args.out_dir / LOG_NAME}")
    _report_failures(rows)
    return 1 if any(r.failed for r in rows) else 0


def _report_failures(rows) -> None:
    """One stderr line per failed input, and one per series withheld whole (its message names
    it). Inputs are named by position and keyed token: their names may identify."""
    shown = set()
    for r in rows:
        if not r.failed or (r.status, r.message) in shown:
            continue
        if r.message.startswith("head series withheld ("):  # the same line for every file of the series
            shown.add((r.status, r.message))
            print(f"  {r.status}: {r.message}", file=sys.stderr)
        else:
            print(f"  input #{r.input} [{r.token}]: {r.status}: {r.message}", file=sys.stderr)
