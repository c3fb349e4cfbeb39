"""The sealed envelope of one vault entry (format version 1).

::

    "BDVAULT" (7 bytes) | version (1 byte, 1) | N (4 bytes, big-endian) | header (N bytes, JSON)
    | ciphertext (AES-256-GCM of the payload, the 16-byte tag at its end)

The header (UTF-8 JSON) is in clear but authenticated: every byte before the ciphertext is the
AES-GCM associated data, so changing the entry id, the tool, the output file's SHA-256, the
nonce or a wrapped key makes decryption fail. Header fields::

    entry          opaque id of the entry (also its file name, without ".bdv")
    tool           "bids-deface <version>" that wrote it
    outputs_sha256 hex SHA-256 of the concatenated SHA-256 digests (32 bytes each, in the entry's
                   order) of the output files the entry belongs to (files left out contribute none)
    nonce          base64 of the 12-byte AES-GCM nonce
    recipients     one object per recipient, each wrapping the same fresh 32-byte content key:
      {"alg": "RSA-OAEP-SHA256", "kid": key id, "key": base64 RSA-OAEP(SHA-256, MGF1-SHA-256) of the key}
      {"alg": "X25519-HKDF-SHA256-A256KW", "kid": key id, "epk": base64 ephemeral X25519 public key,
       "key": base64 AES key wrap (RFC 3394) of the key under
              HKDF-SHA-256(shared secret, salt = epk || recipient public key, info = HKDF_INFO, 32 bytes)}

A key id is the hex SHA-256 of the recipient's DER SubjectPublicKeyInfo.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from bids_deface.vault.errors import VaultError
from bids_deface.vault.keys import Identity, Recipient

MAGIC = b"BDVAULT"
VERSION = 1
RSA_ALG = "RSA-OAEP-SHA256"
X25519_ALG = "X25519-HKDF-SHA256-A256KW"
HKDF_INFO = b"bids-deface vault v1 X25519 key wrap"
_PREFIX = struct.Struct(">7sBI")


@dataclass(frozen=True)
class Sealed:
    """An envelope split into its authenticated header and its ciphertext."""

    header: dict
    associated_data: bytes
    ciphertext: bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _x25519_kek(shared: bytes, epk: bytes, recipient_public: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + recipient_public, info=HKDF_INFO).derive(shared)


def _raw(public_key: x25519.X25519PublicKey) -> bytes:
    return public_key.public_bytes_raw()


def wrap_key(content_key: bytes, recipient: Recipient) -> dict:
    """The header object that lets ``recipient`` (and only it) recover ``content_key``."""
    if isinstance(recipient.public_key, rsa.RSAPublicKey):
        return {"alg": RSA_ALG, "kid": recipient.key_id,
                "key": _b64(recipient.public_key.encrypt(content_key, _oaep()))}
    ephemeral = x25519.X25519PrivateKey.generate()
    epk = _raw(ephemeral.public_key())
    kek = _x25519_kek(ephemeral.exchange(recipient.public_key), epk, _raw(recipient.public_key))
    return {"alg": X25519_ALG, "kid": recipient.key_id, "epk": _b64(epk), "key": _b64(aes_key_wrap(kek, content_key))}


def unwrap_key(wrapped: dict, identity: Identity) -> bytes:
    """The content key from a recipient object of the header; :class:`VaultError` if it fails."""
    try:
        key = base64.b64decode(wrapped["key"], validate=True)
        if wrapped["alg"] == RSA_ALG and isinstance(identity.private_key, rsa.RSAPrivateKey):
            return identity.private_key.decrypt(key, _oaep())
        if wrapped["alg"] == X25519_ALG and isinstance(identity.private_key, x25519.X25519PrivateKey):
            epk = base64.b64decode(wrapped["epk"], validate=True)
            shared = identity.private_key.exchange(x25519.X25519PublicKey.from_public_bytes(epk))
            kek = _x25519_kek(shared, epk, _raw(identity.private_key.public_key()))
            return aes_key_unwrap(kek, key)
    except (KeyError, TypeError, ValueError, InvalidUnwrap):
        pass
    raise VaultError("the private key cannot unwrap the entry's key (wrong key, or a tampered entry)")


def outputs_digest(output_digests: list[bytes]) -> str:
    """The header's ``outputs_sha256`` for outputs of these SHA-256 digests."""
    return hashlib.sha256(b"".join(output_digests)).hexdigest()


def seal(payload: bytes, *, entry: str, tool: str, outputs_sha256: str,
         recipients: list[Recipient]) -> bytes:
    """Encrypt ``payload`` under a fresh AES-256 key and nonce, wrapped for every recipient."""
    if not recipients:
        raise VaultError("no vault recipient: give at least one public key")
    content_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    header = {"entry": entry, "tool": tool, "outputs_sha256": outputs_sha256, "nonce": _b64(nonce),
              "recipients": [wrap_key(content_key, r) for r in recipients]}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    associated = _PREFIX.pack(MAGIC, VERSION, len(text)) + text
    return associated + AESGCM(content_key).encrypt(nonce, payload, associated)


def read_sealed(blob: bytes) -> Sealed:
    """Split an envelope; :class:`VaultError` when it is not one or its header is damaged."""
    if len(blob) < _PREFIX.size or blob[:len(MAGIC)] != MAGIC:
        raise VaultError("not a bids-deface vault entry (no BDVAULT signature)")
    _, version, length = _PREFIX.unpack_from(blob)
    if version != VERSION:
        raise VaultError(f"vault format version {version}: this bids-deface reads version {VERSION}")
    end = _PREFIX.size + length
    try:
        header = json.loads(blob[_PREFIX.size:end].decode("utf-8"))
        if not isinstance(header, dict) or not isinstance(header.get("recipients"), list):
            raise ValueError("no recipients")
        base64.b64decode(header["nonce"], validate=True)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise VaultError("damaged entry header (tampered or truncated)") from None
    if len(blob) < end + 16:
        raise VaultError("truncated entry (no ciphertext)")
    return Sealed(header, blob[:end], blob[end:])


def open_sealed(sealed: Sealed, identity: Identity) -> bytes:
    """The payload, decrypted and authenticated with ``identity``; :class:`VaultError` otherwise."""
    mine = [r for r in sealed.header["recipients"] if isinstance(r, dict) and r.get("kid") == identity.key_id]
    if not mine:
        raise VaultError(f"not encrypted for this key (key id {identity.key_id[:16]}…), "
                         "or its list of recipients was altered")
    content_key = unwrap_key(mine[0], identity)
    nonce = base64.b64decode(sealed.header["nonce"])
    try:
        return AESGCM(content_key).decrypt(nonce, sealed.ciphertext, sealed.associated_data)
    except (InvalidTag, ValueError):
        raise VaultError("the entry was tampered with or damaged (authentication failed)") from None
