"""Restoring: every entry of a vault opened with a private key, each file checked against the
output file it belongs to, and its original rebuilt under RESTORED_DIR, or a one-line reason why not.

Nothing is written for a file that fails any check (signature, entry id, recipient, key unwrap,
authentication, output file present and unchanged, rebuilt SHA-256); each restored file is
written under a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bids_deface.dataset.atomic import write_atomic
from bids_deface.vault import content
from bids_deface.vault.envelope import open_sealed, outputs_digest, read_sealed
from bids_deface.vault.errors import VaultError
from bids_deface.vault.keys import Identity
from bids_deface.vault.writer import ENTRY_SUFFIX, read_naming_key

RESTORED, FAILED = "restored", "failed"


@dataclass(frozen=True)
class RestoreRow:
    """One file's outcome: its original path (or the entry's file name when the entry cannot be opened)."""

    relpath: str
    status: str
    reason: str = ""


def _safe_relpath(relpath) -> PurePosixPath:
    path = PurePosixPath(str(relpath))
    if not str(relpath) or path.is_absolute() or ".." in path.parts:
        raise VaultError(f"the entry names an unsafe path ({relpath!r})")
    return path


def open_entry(path: Path, identity: Identity) -> list[content.FilePart]:
    """The files of the entry file ``path``, decrypted and authenticated."""
    sealed = read_sealed(path.read_bytes())
    if sealed.header.get("entry") != path.name.removesuffix(ENTRY_SUFFIX):
        raise VaultError("the entry's file was renamed or moved onto another entry's name "
                         f"(it is entry {str(sealed.header.get('entry'))[:32]})")
    try:
        files = content.unpack(open_sealed(sealed, identity))
        digests = [bytes.fromhex(f.meta["output_sha256"]) for f in files if f.meta.get("output") is not None]
    except VaultError:
        raise
    except (KeyError, TypeError, ValueError) as exc:  # authenticated yet unreadable: a writer's bug
        raise VaultError(f"the entry's content cannot be read ({type(exc).__name__})") from None
    if outputs_digest(digests) != sealed.header.get("outputs_sha256"):
        raise VaultError("the entry's list of output files does not match its authenticated header")
    return files


def _output_of(part: content.FilePart, output_dir: Path) -> bytes | None:
    if part.meta.get("output") is None:
        return None
    rel = _safe_relpath(part.meta["output"])
    try:
        data = (output_dir / rel).read_bytes()
    except OSError:
        raise VaultError(f"its output file {rel} is missing from {output_dir}") from None
    if hashlib.sha256(data).hexdigest() != part.meta["output_sha256"]:
        raise VaultError(f"the output file {rel} is not the one this entry belongs to "
                         "(changed since the vault was written, or another file put in its place)")
    return data


def restore_file(part: content.FilePart, output_dir: Path, restored_dir: Path, written: dict[str, str]) -> RestoreRow:
    """Restore one file of an entry; ``written`` maps the paths restored so far to their SHA-256."""
    label = str(part.meta.get("original"))
    try:
        label = str(_safe_relpath(part.meta["original"]))
        data = content.rebuild(part, _output_of(part, output_dir))
    except VaultError as exc:
        return RestoreRow(label, FAILED, str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        return RestoreRow(label, FAILED, f"the entry's content cannot be read ({type(exc).__name__})")
    digest = hashlib.sha256(data).hexdigest()
    if written.get(label, digest) != digest:
        return RestoreRow(label, FAILED, "another entry restored a different file at this path")
    try:
        restored_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(restored_dir / label, lambda tmp: tmp.write_bytes(data))
    except OSError as exc:
        return RestoreRow(label, FAILED, f"cannot write it ({exc.strerror or exc})")
    written[label] = digest
    return RestoreRow(label, RESTORED)


def restore_tree(output_dir: str | Path, vault_dir: str | Path, restored_dir: str | Path,
                 identity: Identity) -> list[RestoreRow]:
    """Rebuild under ``restored_dir`` the original of every file in ``vault_dir``; one row per file
    (one per entry for an entry that cannot be opened)."""
    vault_dir, output_dir, restored_dir = Path(vault_dir), Path(output_dir), Path(restored_dir)
    read_naming_key(vault_dir)  # refuses a folder that is not a vault
    entries = sorted(vault_dir.glob(f"*{ENTRY_SUFFIX}"))
    if not entries:
        raise VaultError(f"{vault_dir}: the vault holds no entries")
    rows, written = [], {}
    for path in entries:
        try:
            files = open_entry(path, identity)
        except VaultError as exc:
            rows.append(RestoreRow(f"vault entry {path.name}", FAILED, str(exc)))
            continue
        rows += [restore_file(part, output_dir, restored_dir, written) for part in files]
    return rows
