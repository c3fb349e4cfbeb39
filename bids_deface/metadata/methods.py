"""The five de-identification methods, applied to one value (a whole sidecar value or TSV cell, or a
span that :mod:`.phi` found in free text).

- ``redact``: the value is removed (a sidecar key is dropped, a TSV cell becomes ``n/a``, a span
  of text is cut out). The default.
- ``mask``: the first letter of each word is kept, every other letter and every digit becomes
  ``*`` (``John Doe`` → ``J*** D**``, ``MRN-8841207`` → ``M**-*******``).
- ``hash``: a keyed HMAC-SHA-256 token (``name-3f1c…``, 16 hex digits): the same value gives the
  same token in every run under the same key, and nobody without the key can test a guess.
  Values are compared case- and space-insensitively (``DOE^JOHN`` and ``Doe^John`` agree).
- ``replace``: a realistic surrogate of the same kind and shape, the same for the same value of
  the same subject: names from Faker's name lists (each part of a name mapped alone, so "John"
  reads the same everywhere in a subject's files), dates moved by the subject's own offset (so
  intervals hold), digits of numbers and identifiers replaced keyed, addresses from Faker, e-mail
  addresses, URLs and IPs in reserved example ranges (example.org, 192.0.2.0/24, 2001:db8::/32).
  Surrogates are derived from the hash key when one is given (stable across runs), else from a
  random key of the run (give the same :class:`Deidentifier` to every worker).
- ``encrypt``: the value is sealed in the run's vault and replaced by the vault's token; refused
  until a vault is given (``--vault-dir`` and ``--vault-recipient``).

Nothing here logs or puts a value in an exception message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from bids_deface.readfile import read_bytes

METHODS = ("replace", "redact", "mask", "hash", "encrypt")
DEFAULT_METHOD = "redact"
HASH_KEY_ENV = "BIDS_DEFACE_HASH_KEY"
MIN_KEY_BYTES = 16


class MethodError(ValueError):
    """A de-identification method that cannot be applied as asked (no key, no vault, unknown)."""


class ValueVault(Protocol):
    """What ``encrypt`` needs from the vault: seal one value, get back the token to write instead."""

    def seal(self, value: str, *, where: str) -> str: ...


def load_hash_key(path: str | Path | None = None, environ=None) -> bytes | None:
    """The HMAC key of a run: the bytes of ``path`` (one trailing newline ignored), else
    ``$BIDS_DEFACE_HASH_KEY``, else None. At least 16 bytes; the key is never echoed."""
    environ = os.environ if environ is None else environ
    if path is not None:
        key = read_bytes(path, str(path), MethodError, "hash key file")
        key = key[:-1] if key.endswith(b"\n") else key
        where = str(path)
    elif environ.get(HASH_KEY_ENV):
        key, where = environ[HASH_KEY_ENV].encode(), f"${HASH_KEY_ENV}"
    else:
        return None
    if len(key) < MIN_KEY_BYTES:
        raise MethodError(f"{where}: a hash key needs at least {MIN_KEY_BYTES} bytes, got {len(key)}")
    return key


def _normal(value: str) -> str:
    return " ".join(str(value).replace("^", " ").split()).casefold()


def mask(value: str) -> str:
    out, start_of_word = [], True
    for ch in str(value):
        if ch.isalpha():
            out.append(ch if start_of_word else "*")
            start_of_word = False
        elif ch.isdigit():
            out.append("*")
            start_of_word = False
        else:
            out.append(ch)
            start_of_word = True
    return "".join(out)


@dataclasses.dataclass(frozen=True)
class Deidentifier:
    """The per-run state of the methods: the hash key, the vault, and whose values these are."""

    # keys never appear in a repr (a log line or a traceback)
    hash_key: bytes | None = dataclasses.field(default=None, repr=False)
    vault: ValueVault | None = dataclasses.field(default=None, repr=False)
    subject: str = ""
    surrogate_key: bytes = dataclasses.field(default=b"", repr=False)

    def __post_init__(self):
        if self.hash_key is not None and len(self.hash_key) < MIN_KEY_BYTES:
            raise MethodError(f"a hash key needs at least {MIN_KEY_BYTES} bytes")
        if not self.surrogate_key:
            key = (hmac.new(self.hash_key, b"bids-deface surrogates", hashlib.sha256).digest()
                   if self.hash_key else secrets.token_bytes(32))
            object.__setattr__(self, "surrogate_key", key)

    def for_subject(self, subject: str) -> "Deidentifier":
        """The same keys, for another subject's values (surrogates are consistent per subject)."""
        return dataclasses.replace(self, subject=str(subject))

    def check(self, method: str) -> None:
        """Raise :class:`MethodError` when ``method`` cannot run in this configuration."""
        if method not in METHODS:
            raise MethodError(f"unknown method {method!r}; expected one of {list(METHODS)}")
        if method == "hash" and self.hash_key is None:
            raise MethodError("method 'hash' needs a key: --hash-key-file FILE or $" + HASH_KEY_ENV)
        if method == "encrypt" and self.vault is None:
            raise MethodError("method 'encrypt' needs --vault-dir and --vault-recipient")

    def apply(self, value, method: str = DEFAULT_METHOD, category: str | None = None, where: str = "") -> str | None:
        """``value`` de-identified by ``method``; None for ``redact`` (the caller removes it)."""
        self.check(method)
        value = str(value)
        if method == "redact":
            return None
        if method == "mask":
            return mask(value)
        if method == "hash":
            digest = hmac.new(self.hash_key, _normal(value).encode(), hashlib.sha256).hexdigest()
            return f"{category or 'value'}-{digest[:16]}"
        if method == "encrypt":
            return self.vault.seal(value, where=where)
        return _surrogate(self, value, category)

    def _stream(self, *parts: str) -> bytes:
        message = "\x00".join((self.subject, *parts)).encode()
        return hmac.new(self.surrogate_key, message, hashlib.sha256).digest()

    def _number(self, *parts: str) -> int:
        return int.from_bytes(self._stream(*parts), "big")

    def date_offset(self) -> timedelta:
        """This subject's date shift for surrogate dates: 30 to 395 days back."""
        return timedelta(days=30 + self._number("date offset") % 366)


def _styled(word: str, like: str) -> str:
    if like.isupper():
        return word.upper()
    if like.islower():
        return word.lower()
    return word[:1].upper() + word[1:].lower()


def _surrogate_name(d: Deidentifier, value: str) -> str:
    from bids_deface.metadata.names import name_dictionaries

    first, last = (sorted(n for n in names if n.isascii() and n.isalpha()) for names in name_dictionaries())

    def swap(m: re.Match) -> str:
        token = m.group(0)
        if len(token) < 2:
            return token
        pool = first if token.casefold() in name_dictionaries()[0] else last
        return _styled(pool[d._number("name", token.casefold()) % len(pool)], token)

    return re.sub(r"[^\W\d_]+", swap, value)


_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%d-%m-%Y", "%d %b %Y",
                 "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%d-%b-%Y", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
                 "%Y%m%d%H%M%S", "%d/%m/%y", "%m/%d/%y")


def _surrogate_date(d: Deidentifier, value: str) -> str:
    for fmt in _DATE_FORMATS:
        try:
            parsed = datetime.strptime(value.strip(), fmt)
        except ValueError:
            continue
        return (parsed - d.date_offset()).strftime(fmt)
    return _surrogate_chars(d, value, "date")


def _surrogate_chars(d: Deidentifier, value: str, category: str) -> str:
    """Digits replaced by digits (and, but in identifiers and phone numbers, letters by letters),
    keyed: the shape kept, a prefix such as "MRN-" too."""
    stream = d._stream(category, _normal(value))
    out = []
    for i, ch in enumerate(value):
        byte = stream[i % len(stream)] ^ (i // len(stream))
        if ch.isdigit():
            out.append(str(byte % 10))
        elif ch.isascii() and ch.isalpha() and category not in ("id", "phone"):
            letter = chr(ord("a") + byte % 26)
            out.append(letter.upper() if ch.isupper() else letter)
        else:
            out.append(ch)
    return "".join(out)


def _surrogate(d: Deidentifier, value: str, category: str | None) -> str:
    n = d._number(category or "", _normal(value))
    if category == "name":
        return _surrogate_name(d, value)
    if category == "date":
        return _surrogate_date(d, value)
    if category == "age":
        return "89+"
    if category == "email":
        name = _surrogate_name(d, re.sub(r"[^A-Za-z]+", " ", value.split("@")[0]).strip() or "x").lower()
        return f"{'.'.join(name.split()) or 'x'}@example.org"
    if category == "url":
        return f"https://example.org/{n % 16**8:08x}"
    if category == "ip":
        return f"2001:db8::{n % 16**4:x}" if ":" in value else f"192.0.2.{1 + n % 254}"
    if category == "address":
        return _faker(n).street_address()
    return _surrogate_chars(d, value, category or "value")


_FAKER = {}


def _faker(seed: int):
    if "en_US" not in _FAKER:
        from faker import Faker

        _FAKER["en_US"] = Faker("en_US")
    fake = _FAKER["en_US"]
    fake.seed_instance(seed % 2**63)
    return fake
