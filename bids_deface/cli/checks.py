"""Checks of the parsed arguments that argparse cannot make: where folders lie, which options need
each other. Each failure is a :class:`~bids_deface.cli.errors.UsageError` (one line, exit 2)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bids_deface.cli.errors import UsageError


def check_vault_options(opts: argparse.Namespace) -> None:
    """Both vault options or neither; the vault outside the input and output; recipients readable."""
    if opts.vault_dir is None and not opts.vault_recipient:
        return
    from bids_deface.vault import VaultError, check_vault_dir, load_recipient  # (cryptography: ~1 s to import)

    if opts.vault_dir is None:
        raise UsageError("--vault-recipient needs --vault-dir (the folder the encrypted vault goes to)")
    if not opts.vault_recipient:
        raise UsageError("--vault-dir needs at least one --vault-recipient (a public key; bids-deface keygen writes one)")
    if opts.command == "dicom":
        roots = {"IN_DIR": opts.in_dir, "OUT_DIR": opts.out_dir}
    else:
        roots = {"bids_dir": opts.bids_dir, "output_dir": opts.output_dir}
    try:
        opts.vault_dir = check_vault_dir(opts.vault_dir, **roots)
        recipients = [load_recipient(path) for path in opts.vault_recipient]
    except VaultError as exc:
        raise UsageError(str(exc)) from None
    if opts.command == "dicom":
        for path, recipient in zip(opts.vault_recipient, recipients):
            if recipient.cms_certificate is None:
                raise UsageError(f"--vault-recipient {path}: the dicom door needs an X.509 certificate of an RSA key "
                                 "(CMS, for the Encrypted Attributes Sequence): bids-deface keygen PREFIX writes PREFIX.cert.pem")
    opts.vault_recipient = [Path(path).absolute() for path in opts.vault_recipient]


def check_restore_paths(opts: argparse.Namespace) -> None:
    """The output and vault exist; the restored originals go nowhere near the shared data."""
    for name in ("output_dir", "vault_dir"):
        if not getattr(opts, name).is_dir():
            raise UsageError(f"{name.upper()} {getattr(opts, name)}: no such directory")
    for name in ("output_dir", "vault_dir"):
        if _inside(opts.restored_dir, getattr(opts, name)):
            raise UsageError(f"RESTORED_DIR {opts.restored_dir} is inside {name.upper()}: the originals must not "
                             "land in the data you share nor in the vault")
    if opts.restored_dir.exists() and not opts.restored_dir.is_dir():
        raise UsageError(f"RESTORED_DIR {opts.restored_dir} is a file, not a folder")
    opts.output_dir, opts.vault_dir = opts.output_dir.absolute(), opts.vault_dir.absolute()
    opts.restored_dir = opts.restored_dir.absolute()


def _inside(path: Path, root: Path) -> bool:
    path, root = path.absolute().resolve(), root.absolute().resolve()
    return path == root or root in path.parents


def check_bids_app_paths(opts: argparse.Namespace) -> None:
    """Absolute paths; the input exists; outputs, work and QC folders lie where they may."""
    bids_dir = opts.bids_dir.absolute()
    if not bids_dir.is_dir():
        raise UsageError(f"bids_dir {opts.bids_dir}: {'a file, not a folder' if bids_dir.exists() else 'no such directory'}")
    if not os.access(bids_dir, os.R_OK | os.X_OK):
        raise UsageError(f"bids_dir {opts.bids_dir}: not readable")
    output_dir = opts.output_dir.absolute()
    if _inside(output_dir, bids_dir):
        raise UsageError(f"output_dir {opts.output_dir} is inside bids_dir {opts.bids_dir}: "
                         "the input is never written, choose a folder outside it")
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"output_dir {opts.output_dir} is a file, not a folder")
    for option, attribute, why in (("work dir", "work_dir", "it holds un-defaced images"),
                                   ("--relabel-map-file", "relabel_map_file", "it undoes the relabelling: keep it private"),
                                   ("--bids-database-dir", "bids_database_dir", "it holds the input's metadata, "
                                                                                "un-cleaned: keep it private"),
                                   ("--validation-cache", "validation_cache", "it names the input's files: keep it "
                                                                              "apart from the data you share"),
                                   ("--qc-dir", "qc_dir", "QC figures show the original face, keep them apart from the "
                                                          "data you share"),
                                   ("--labels-dir", "labels_dir", "the labels outline the ears and the nose, keep them "
                                                                  "apart from the data you share")):
        path = getattr(opts, attribute, None)
        for name, root in (("bids_dir", bids_dir), ("output_dir", output_dir)) if path is not None else ():
            if _inside(path, root):
                raise UsageError(f"{option} {path} is inside {name}: {why}")
            setattr(opts, attribute, path.absolute())
    opts.bids_dir, opts.output_dir = bids_dir, output_dir
    if hasattr(opts, "features"):
        opts.features = list(dict.fromkeys(opts.features))
