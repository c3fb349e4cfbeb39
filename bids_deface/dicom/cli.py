"""``bids-deface dicom IN_DIR OUT_DIR``: de-identify and deface a folder of DICOM files.

Exit status: 0 when every DICOM file was written; 1 when any file was unreadable,
failed, or was refused (burned-in annotation); 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bids_deface.dicom.pipeline import LOG_NAME, RunOptions, run
from bids_deface.dicom.profile import ProfileOptions
from bids_deface.dicom.uids import read_pseudonyms

KEY_ENV = "BIDS_DEFACE_DICOM_KEY"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bids-deface dicom",
        description="De-identify DICOM headers to PS3.15 Annex E and deface the pixels of head "
                    "MR/CT series (eyes, nose, ears), writing a mirrored tree with neutral names.")
    p.add_argument("in_dir", type=Path, help="folder of DICOM files (searched recursively)")
    p.add_argument("out_dir", type=Path, help="output folder (created; must not be inside IN_DIR)")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--key", help=f"secret key for UIDs, pseudonyms and date shifts "
                                   f"(or set ${KEY_ENV}); keep it to re-run consistently")
    key.add_argument("--key-file", type=Path, help="file whose content is the secret key")
    p.add_argument("--pseudonyms", type=Path, metavar="FILE",
                   help="two-column file: PatientID<TAB>pseudonym (default: keyed hash)")
    g = p.add_argument_group("PS3.15 Annex E options")
    g.add_argument("--retain-modified-dates", action="store_true",
                   help="Retain Longitudinal Temporal Information with Modified Dates "
                        "(dates shifted per patient under the key)")
    g.add_argument("--retain-patient-characteristics", action="store_true")
    g.add_argument("--retain-device-identity", action="store_true")
    g.add_argument("--retain-institution-identity", action="store_true")
    g.add_argument("--clean-descriptors", action="store_true",
                   help="keep descriptions, with the data set's identifying words and dates removed")
    g.add_argument("--retain-safe-private", action="store_true",
                   help="keep the private attributes listed as safe (otherwise all are removed)")
    p.add_argument("--no-deface", action="store_true", help="de-identify headers only")
    p.add_argument("--accept-burned-in", action="store_true",
                   help="process files marked Burned In Annotation YES (refused by default)")
    return p


def _key(args) -> str | bytes:
    if args.key_file:
        key = args.key_file.read_bytes().strip()
    else:
        key = args.key or os.environ.get(KEY_ENV, "")
    if not key:
        raise ValueError(f"no key: give --key, --key-file or set {KEY_ENV}")
    return key


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
        )
        rows = run(args.in_dir, args.out_dir, opts)
    except (OSError, ValueError) as exc:
        print(f"bids-deface dicom: error: {exc}", file=sys.stderr)
        return 2
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    defaced = sum(r.pixels == "defaced" for r in rows)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"bids-deface dicom: {summary}; {defaced} defaced; log: {args.out_dir / LOG_NAME}")
    for r in rows:
        if r.failed:  # inputs named by position: their names may identify
            print(f"  input #{r.input}: {r.status}: {r.message}", file=sys.stderr)
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
