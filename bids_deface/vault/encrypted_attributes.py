"""DICOM's own way back for the key holder: the Encrypted Attributes Sequence (0400,0500).

PS3.15 E.1.1 (and C.12.1.1.4 of PS3.3): the original values of the attributes a de-identifier
modified or removed go into the one item of a Modified Attributes Sequence (0400,0550); that
sequence, as a data set in Explicit VR Little Endian, is the content of a CMS EnvelopedData
(RFC 5652) whose DER bytes are the Encrypted Content (0400,0520) of an item of the Encrypted
Attributes Sequence, beside its Encrypted Content Transfer Syntax UID (0400,0510). Standard-aware
tools with a recipient's certificate and private key recover the values.

CMS from ``cryptography``: key transport RSA (PKCS #1 v1.5, the only one its EnvelopedData builder
offers), content encryption AES-256-CBC, one RecipientInfo per certificate. Pixel data (group
7FE0) is never put here: defaced pixels go to the vault, which restores files byte for byte.
"""

from __future__ import annotations

import copy
import struct
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_data_element, write_dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from bids_deface.vault.errors import VaultError
from bids_deface.vault.keys import MIN_RSA_BITS

PIXEL_GROUP = 0x7FE0
ENCRYPTED_ATTRIBUTES = 0x04000500
MODIFIED_ATTRIBUTES = 0x04000550
# how pydicom writes a data set holding one Modified Attributes item, Explicit VR Little Endian:
# the sequence and its item, each of defined length, before the item's attributes
_SEQUENCE_HEAD = struct.pack("<HH", 0x0400, 0x0550) + b"SQ\0\0"
_ITEM_TAG = struct.pack("<HH", 0xFFFE, 0xE000)
_LENGTH = struct.Struct("<I")


def own_copy(elem):
    """A copy of ``elem`` the item owns: deep for sequences and multiple values, shallow for a
    single value (str, bytes, a number, a person name: immutable), which a deep copy costs 5x for."""
    if elem.VR == "SQ" or isinstance(elem.value, (list, MultiValue)):
        return copy.deepcopy(elem)
    return copy.copy(elem)


def modified_attributes(original: Dataset, deidentified: Dataset) -> Dataset:
    """The original top-level attributes that ``deidentified`` changed or lacks (pixels excluded),
    with the original Specific Character Set so their text decodes as it did."""
    item = Dataset()
    for elem in original:
        if elem.tag.group == PIXEL_GROUP or elem.tag == ENCRYPTED_ATTRIBUTES:
            continue
        if elem.tag not in deidentified or deidentified[elem.tag] != elem:
            item.add(own_copy(elem))
    if len(item) and "SpecificCharacterSet" in original:
        item.SpecificCharacterSet = original.SpecificCharacterSet
    return item


def _explicit_little(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def encode_attribute(elem, encodings) -> bytes:
    """``elem`` as pydicom writes it among the attributes of a Modified Attributes item whose text
    is in ``encodings`` (the item's Specific Character Set). Exactly so only while ``elem`` holds
    no ambiguous VR ('US or SS' …), which pydicom resolves from the attributes around it."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, elem, encodings)
    return fp.getvalue()


def modified_attributes_content(attributes: bytes) -> bytes:
    """The data set the CMS envelope holds: a Modified Attributes Sequence of one item whose
    attributes are ``attributes`` (encoded, in tag order), as pydicom writes it."""
    item = _ITEM_TAG + _LENGTH.pack(len(attributes)) + attributes
    return _SEQUENCE_HEAD + _LENGTH.pack(len(item)) + item


def _check_certificate(cert: x509.Certificate) -> None:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        raise VaultError(f"an Encrypted Attributes recipient needs an X.509 certificate of an RSA key of at "
                         f"least {MIN_RSA_BITS} bits ('bids-deface keygen PREFIX --type rsa' writes PREFIX.cert.pem)")


def build_encrypted_attributes(original: Dataset, deidentified: Dataset,
                               certificates: list[x509.Certificate]) -> Sequence | None:
    """The Encrypted Attributes Sequence for ``deidentified``: one item whose CMS envelope, opened
    by any of ``certificates``' private keys, holds the original values of what changed.

    Pure: neither data set is modified. None when nothing changed. Use as
    ``deidentified.EncryptedAttributesSequence = build_encrypted_attributes(original, deidentified, certs)``.
    """
    _check_certificates(certificates)
    item = modified_attributes(original, deidentified)
    if not len(item):
        return None
    content = Dataset()
    content.ModifiedAttributesSequence = Sequence([item])
    return encrypt_content(_explicit_little(content), envelope_builder(certificates))


def _check_certificates(certificates) -> None:
    if not certificates:
        raise VaultError("no certificate to encrypt the original attributes for")
    for cert in certificates:
        _check_certificate(cert)


def envelope_builder(certificates: list[x509.Certificate]) -> pkcs7.PKCS7EnvelopeBuilder:
    """A CMS EnvelopedData builder (AES-256, one RecipientInfo per certificate) without content:
    each envelope gets its own content key when it is encrypted."""
    _check_certificates(certificates)
    builder = pkcs7.PKCS7EnvelopeBuilder().set_content_encryption_algorithm(algorithms.AES256)
    for cert in certificates:
        builder = builder.add_recipient(cert)
    return builder


def encrypt_content(content: bytes, builder: pkcs7.PKCS7EnvelopeBuilder) -> Sequence:
    """The Encrypted Attributes Sequence whose one item's CMS envelope holds ``content`` (the
    encoded data set of a Modified Attributes Sequence), built by ``builder`` (:func:`envelope_builder`)."""
    envelope = builder.set_data(content).encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    encrypted = Dataset()
    encrypted.EncryptedContentTransferSyntaxUID = ExplicitVRLittleEndian
    encrypted.EncryptedContent = envelope
    return Sequence([encrypted])


def der_value(blob: bytes) -> bytes:
    """The one DER value at the start of ``blob``, without what follows: an OB value of odd length
    is written with a 0x00 byte after it (PS3.5 7.1.1), which a DER parser refuses as extra data."""
    if len(blob) < 2:
        return blob
    first = blob[1]
    if first < 0x80:
        return blob[:2 + first]
    n = first & 0x7F
    return blob[:2 + n + int.from_bytes(blob[2:2 + n], "big")]


def _open(item: Dataset, certificate: x509.Certificate, private_key) -> Dataset | None:
    """The Modified Attributes item inside one Encrypted Attributes item, or None if it does not
    open. CMS with AES-CBC carries no integrity check: about one wrong key in 250 decrypts to
    noise instead of failing, and this strict parse is what rejects it."""
    try:
        data = pkcs7.pkcs7_decrypt_der(der_value(bytes(item.EncryptedContent)), certificate, private_key, [])
        with warnings.catch_warnings():  # pydicom warns about the noise it is reading
            warnings.simplefilter("ignore")
            content = read_dataset(DicomBytesIO(data), is_implicit_VR=False, is_little_endian=True)
        if list(content.keys()) != [MODIFIED_ATTRIBUTES] or len(content[MODIFIED_ATTRIBUTES].value) != 1:
            return None
        modified = content[MODIFIED_ATTRIBUTES].value[0]
        for _ in modified:  # every value decoded now, so that noise fails here
            pass
        return modified
    except Exception:  # noqa: BLE001 - whatever noise raises, it is not our content
        return None


def recover_original_attributes(ds: Dataset, certificate: x509.Certificate, private_key) -> Dataset:
    """The item of the Modified Attributes Sequence that ``certificate`` and ``private_key`` open.

    ``ds.update(recover_original_attributes(ds, cert, key))`` puts the original values back.
    :class:`VaultError` when ``ds`` has no Encrypted Attributes Sequence or no item opens.
    """
    items = ds.get("EncryptedAttributesSequence") or []
    if not items:
        raise VaultError("the data set has no Encrypted Attributes Sequence (0400,0500)")
    for item in items:
        if item.get("EncryptedContentTransferSyntaxUID") != ExplicitVRLittleEndian:
            continue  # the only encoding we write; others are someone else's items
        modified = _open(item, certificate, private_key)
        if modified is not None:
            return modified
    raise VaultError("no item of the Encrypted Attributes Sequence opens with this certificate and key")
