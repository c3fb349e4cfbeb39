"""Writing the vault: one sealed entry per file that was defaced, scrubbed, renamed or left out
(or per group of files that share most of their bytes: the slices of a DICOM series).

A vault is a folder holding ``bids-deface-vault.json`` (format, version, and the key that names
entries) and one ``<entry id>.bdv`` file per entry. An entry id is an HMAC-SHA-256, under that
naming key, of the *output* paths the entry belongs to (already public: they are in the shared
dataset), so entry names carry no input name nor original label, and a rerun replaces the
entry of the same output files instead of adding a second one.

The writer reads public keys only. Many processes may write one vault at the same time (one
per image); every file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from pathlib import Path

from bids_deface.dataset.atomic import write_atomic
from bids_deface.dataset.provenance import package_version
from bids_deface.vault import content
from bids_deface.vault.envelope import outputs_digest, seal
from bids_deface.vault.errors import VaultError
from bids_deface.vault.keys import Recipient, load_recipient

VAULT_FILE = "bids-deface-vault.json"
ENTRY_SUFFIX = ".bdv"
FORMAT = "bids-deface vault"
FORMAT_VERSION = 1


def _inside(path: Path, root: Path) -> bool:
    path, root = Path(path).absolute().resolve(), Path(root).absolute().resolve()
    return path == root or root in path.parents


def check_vault_dir(vault_dir: str | Path, **roots: str | Path | None) -> Path:
    """The absolute vault folder, refused (:class:`VaultError`) when it lies inside one of ``roots``
    (``output_dir=…, bids_dir=…``), is a file, or is a folder with other things than a vault."""
    vault = Path(vault_dir).absolute()
    for name, root in roots.items():
        if root is not None and _inside(vault, Path(root)):
            raise VaultError(f"--vault-dir {vault_dir} is inside {name} {root}: the vault holds what was removed, "
                             "keep it apart from the data you share")
    if vault.exists() and not vault.is_dir():
        raise VaultError(f"--vault-dir {vault_dir} is a file, not a folder")
    if vault.is_dir() and not (vault / VAULT_FILE).is_file() and any(
            not p.name.startswith(".") for p in vault.iterdir()):
        raise VaultError(f"--vault-dir {vault_dir} is a folder that is not a bids-deface vault: "
                         "give an empty or new folder, or an existing vault")
    return vault


def read_naming_key(vault_dir: Path) -> bytes:
    """The vault's naming key; :class:`VaultError` when ``vault_dir`` is not a vault."""
    try:
        info = json.loads((Path(vault_dir) / VAULT_FILE).read_text())
        if info.get("format") != FORMAT:
            raise ValueError
    except (OSError, ValueError, AttributeError):
        raise VaultError(f"{vault_dir}: not a bids-deface vault (no readable {VAULT_FILE})") from None
    if info.get("version") != FORMAT_VERSION:
        raise VaultError(f"{vault_dir}: vault version {info.get('version')}; this bids-deface reads {FORMAT_VERSION}")
    return base64.b64decode(info["naming_key"])


def open_or_create_vault(vault_dir: str | Path) -> bytes:
    """Create the vault folder (0700) and its description once, even with writers racing; its naming key."""
    vault = Path(vault_dir)
    target = vault / VAULT_FILE
    if not target.exists():
        vault.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = {"format": FORMAT, "version": FORMAT_VERSION,
                "naming_key": base64.b64encode(os.urandom(32)).decode("ascii"),
                "about": "bids-deface vault: each .bdv entry opens only with a recipient's private key; "
                         "see the README section 'The vault'"}
        tmp = vault / f".{VAULT_FILE}.{uuid.uuid4().hex[:8]}.part"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        try:
            os.link(tmp, target)  # fails if another writer got there first: theirs is kept
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return read_naming_key(vault)


def entry_id(naming_key: bytes, names: str) -> str:
    """The opaque id of the entry of these files (output paths, or input path and SHA-256 for a
    file left out): an HMAC under the vault's naming key, so a rerun replaces its own entry."""
    return hmac.new(naming_key, names.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def _relative(path: Path, root: Path, what: str) -> str:
    try:
        return Path(path).absolute().relative_to(Path(root).absolute()).as_posix()
    except ValueError:
        raise VaultError(f"the {what} file is not under the {what} folder given to the vault") from None


class VaultWriter:
    """Seals vault entries for ``recipients`` (public keys, or paths of PEM files).

    ``input_root`` and ``output_root``: the folders the original and output paths are relative to
    (BIDS_DIR and OUTPUT_DIR, or the DICOM door's IN and OUT); restore puts each original back at
    its path under RESTORED_DIR. Error messages never name an input file.
    """

    def __init__(self, vault_dir: str | Path, recipients, *, input_root: str | Path, output_root: str | Path):
        self.vault_dir = Path(vault_dir).absolute()
        self.recipients = [r if isinstance(r, Recipient) else load_recipient(r) for r in recipients]
        if not self.recipients:
            raise VaultError("no vault recipient: give at least one --vault-recipient")
        self.input_root, self.output_root = Path(input_root), Path(output_root)
        self._naming_key = open_or_create_vault(self.vault_dir)
        self._tool = f"bids-deface {package_version()}"

    def add(self, original: str | Path, output: str | Path) -> Path:
        """Seal what rebuilds ``original`` from ``output`` (written already); the entry's path."""
        return self.add_group([(original, output)])

    def add_group(self, pairs) -> Path:
        """One entry for several ``(original, output)`` pairs that share most of their bytes (the
        files of a DICOM series): what they share is stored once. ``output`` None: a file left
        out of the output (an allow-list dropped it), kept whole so restore brings it back."""
        files, names, digests = [], [], []
        for original, output in pairs:
            original_rel = _relative(original, self.input_root, "input")
            output_rel = None if output is None else _relative(output, self.output_root, "output")
            shown = output_rel or "a file left out of the output"
            output_bytes = None if output is None else self._read(output, f"the output file {output_rel}")
            part = content.diff_file(self._read(original, f"the input file of {shown}"), output_bytes)
            part.meta.update(original=original_rel, output=output_rel, output_sha256=None)
            if output_bytes is not None:
                digest = hashlib.sha256(output_bytes).digest()
                part.meta["output_sha256"] = digest.hex()
                digests.append(digest)
                names.append(f"output\0{output_rel}")
            else:
                names.append(f"removed\0{original_rel}\0{part.meta['sha256']}")
            files.append(part)
        if not files:
            raise VaultError("a vault entry needs at least one file")
        entry = entry_id(self._naming_key, "\n".join(names))
        blob = seal(content.pack(files), entry=entry, tool=self._tool, outputs_sha256=outputs_digest(digests),
                    recipients=self.recipients)
        path = self.vault_dir / f"{entry}{ENTRY_SUFFIX}"
        write_atomic(path, lambda tmp: tmp.write_bytes(blob))
        return path

    def add_removed(self, original: str | Path) -> Path:
        """Seal a file left out of the output so that restore brings it back."""
        return self.add_group([(original, None)])

    @staticmethod
    def _read(path: str | Path, what: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError:
            raise VaultError(f"vault: cannot read {what}") from None
