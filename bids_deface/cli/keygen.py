"""``bids-deface keygen OUT_PREFIX``: a key pair for the vault.

Writes ``OUT_PREFIX.key.pem`` (the private key, PKCS#8 encrypted under a passphrase from
``$BIDS_DEFACE_KEY_PASSPHRASE`` or the terminal, mode 0600), ``OUT_PREFIX.pub.pem`` (the public
key, for ``--vault-recipient``) and, for RSA, ``OUT_PREFIX.cert.pem`` (a self-signed certificate,
the DICOM door's recipient). Existing files are never overwritten. Exit 0 when written, 1 otherwise.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from bids_deface.cli.logs import LOGGER
from bids_deface.vault.errors import VaultError
from bids_deface.vault.keys import generate_key_pair, read_passphrase


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole or not at all, and never over an existing file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)  # the umask may have narrowed it; never widened
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def run(opts, argv=None) -> int:
    prefix = opts.out_prefix.absolute()
    names = ("key", "pub", "cert") if opts.key_type == "rsa" else ("key", "pub")
    paths = {name: prefix.with_name(f"{prefix.name}.{name}.pem") for name in names}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing:
        LOGGER.error("%s already exists: key files are never overwritten", existing[0])
        return 1
    if not prefix.parent.is_dir():
        LOGGER.error("%s: no such directory", prefix.parent)
        return 1
    try:
        pems = generate_key_pair(opts.key_type, read_passphrase(confirm=True), rsa_bits=opts.rsa_bits,
                                 common_name=opts.common_name)
        for name, path in paths.items():
            _write_new(path, pems[name], 0o600 if name == "key" else 0o644)
    except VaultError as exc:
        LOGGER.error("%s", exc)
        return 1
    except OSError as exc:
        LOGGER.error("cannot write the key files: %s", exc.strerror or exc)
        return 1
    LOGGER.info("private key: %s (keep it, and its passphrase, with the data owner only)", paths["key"])
    LOGGER.info("public key: %s (give it to whoever runs bids-deface: --vault-recipient)", paths["pub"])
    if "cert" in paths:
        LOGGER.info("certificate: %s (the recipient for the DICOM door: --vault-recipient)", paths["cert"])
    return 0
