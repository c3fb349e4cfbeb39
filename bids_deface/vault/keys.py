"""Recipients (public keys, read by the participant level) and identities (private keys, read
only by ``restore``), key pairs for curators, and the passphrase that protects a private key.

A recipient is an RSA key of at least 3072 bits or an X25519 key, given as a PEM public key
(SubjectPublicKeyInfo) or as a PEM X.509 certificate (CMS, used by DICOM's Encrypted Attributes
Sequence, addresses recipients by certificate). A key is named by its *key id*: the SHA-256 of
its DER SubjectPublicKeyInfo, in hex.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa, x25519
from cryptography.x509.oid import NameOID

from bids_deface.vault.errors import VaultError

PASSPHRASE_ENV = "BIDS_DEFACE_KEY_PASSPHRASE"
MIN_RSA_BITS = 3072
MIN_PASSPHRASE = 8
KEY_TYPES = ("rsa", "x25519")


@dataclass(frozen=True)
class Recipient:
    """A public key the vault encrypts for; ``certificate`` when it was given as one."""

    public_key: rsa.RSAPublicKey | x25519.X25519PublicKey
    key_id: str
    certificate: x509.Certificate | None = None

    @property
    def cms_certificate(self) -> x509.Certificate | None:
        """The certificate CMS (DICOM's Encrypted Attributes Sequence) can encrypt for, if any."""
        return self.certificate if isinstance(self.public_key, rsa.RSAPublicKey) else None


@dataclass(frozen=True)
class Identity:
    """A private key that opens the entries encrypted for its public key."""

    private_key: rsa.RSAPrivateKey | x25519.X25519PrivateKey
    key_id: str


def key_id(public_key) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _check_public(public_key, where: str) -> None:
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise VaultError(f"{where}: an RSA key of {public_key.key_size} bits; at least {MIN_RSA_BITS} are needed")
    elif not isinstance(public_key, x25519.X25519PublicKey):
        raise VaultError(f"{where}: a {type(public_key).__name__.removeprefix('_')}; "
                         f"a vault recipient is an RSA (>= {MIN_RSA_BITS} bits) or X25519 key")


def load_recipient(path: str | Path) -> Recipient:
    """The public key (or certificate) in PEM file ``path``; a private key is refused unread."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(64)
            if b"PRIVATE KEY" not in data:  # a private key is refused on its first line, never read on
                data += fh.read()
    except OSError as exc:
        raise VaultError(f"{path}: cannot read the recipient key ({exc.strerror or exc})") from None
    if b"PRIVATE KEY" in data:
        raise VaultError(f"{path}: this is a private key; give the recipient's public key (PREFIX.pub.pem) "
                         "or certificate (PREFIX.cert.pem)")
    certificate = None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            certificate = x509.load_pem_x509_certificate(data)
            public_key = certificate.public_key()
        else:
            public_key = serialization.load_pem_public_key(data)
    except ValueError:
        raise VaultError(f"{path}: not a PEM public key or X.509 certificate") from None
    _check_public(public_key, str(path))
    return Recipient(public_key, key_id(public_key), certificate)


def read_passphrase(*, confirm: bool = False) -> bytes:
    """``$BIDS_DEFACE_KEY_PASSPHRASE``, else asked on the terminal (twice when ``confirm``)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value.encode()
    if not sys.stdin.isatty():
        raise VaultError(f"no passphrase: set ${PASSPHRASE_ENV} or run in a terminal")
    value = getpass.getpass("passphrase of the private key: ")
    if confirm and getpass.getpass("the same passphrase again: ") != value:
        raise VaultError("the two passphrases differ")
    return value.encode()


def load_identity(path: str | Path, passphrase: bytes | None = None) -> Identity:
    """The private key in PEM file ``path``; asks for its passphrase when it is encrypted."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VaultError(f"{path}: cannot read the private key ({exc.strerror or exc})") from None
    if b"PRIVATE KEY" not in data:
        raise VaultError(f"{path}: not a PEM private key (give PREFIX.key.pem, as keygen wrote it)")
    encrypted = b"ENCRYPTED" in data
    if encrypted and passphrase is None:
        passphrase = read_passphrase()
    try:
        private_key = serialization.load_pem_private_key(data, passphrase if encrypted else None)
    except (ValueError, TypeError):
        raise VaultError(f"{path}: wrong passphrase, or not a readable private key") from None
    if not isinstance(private_key, (rsa.RSAPrivateKey, x25519.X25519PrivateKey)):
        raise VaultError(f"{path}: a vault identity is an RSA or X25519 private key")
    return Identity(private_key, key_id(private_key.public_key()))


def generate_key_pair(kind: str, passphrase: bytes, *, rsa_bits: int = MIN_RSA_BITS,
                      common_name: str = "bids-deface vault recipient") -> dict[str, bytes]:
    """PEM texts of a new key pair: ``key`` (private, PKCS#8 encrypted under ``passphrase``),
    ``pub`` (public) and, for RSA, ``cert`` (self-signed X.509, the CMS recipient of DICOM)."""
    if kind not in KEY_TYPES:
        raise VaultError(f"key type {kind!r}: expected one of {', '.join(KEY_TYPES)}")
    if len(passphrase) < MIN_PASSPHRASE:
        raise VaultError(f"the passphrase is too short: at least {MIN_PASSPHRASE} characters")
    if kind == "rsa":
        if rsa_bits < MIN_RSA_BITS:
            raise VaultError(f"RSA keys of {rsa_bits} bits are too short: at least {MIN_RSA_BITS}")
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        private_key = x25519.X25519PrivateKey.generate()
    pems = {
        "key": private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(passphrase)),
        "pub": private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo),
    }
    if kind == "rsa":
        pems["cert"] = self_signed_certificate(private_key, common_name).public_bytes(serialization.Encoding.PEM)
    return pems


def self_signed_certificate(private_key: rsa.RSAPrivateKey, common_name: str,
                            years: int = 30) -> x509.Certificate:
    """A certificate that names ``private_key``'s public key as a key-transport recipient."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=True,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False,
                          crl_sign=False, encipher_only=False, decipher_only=False)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(private_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365 * years))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .sign(private_key, hashes.SHA256()))


def load_certificate(path: str | Path) -> x509.Certificate:
    """The X.509 certificate in PEM file ``path`` (CMS decryption names its recipient by it)."""
    path = Path(path)
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise VaultError(f"{path}: cannot read the certificate ({exc.strerror or exc})") from None
    except ValueError:
        raise VaultError(f"{path}: not a PEM X.509 certificate") from None
