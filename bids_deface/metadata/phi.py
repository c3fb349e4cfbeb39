"""Free-text PHI detection, fully offline: which spans of a string identify a person.

Three kinds of evidence, merged into non-overlapping :class:`Finding` spans:

(a) **known values**: what was already removed from the same subject (a PatientName "Doe^John"
    means "Doe", "John" and "Doe^John" are searched everywhere; a birth date is searched in a
    dozen spellings; an identifier also by its digits alone);
(b) **pattern recognisers** with context words and checks (:mod:`.recognizers`: libphonenumber,
    python-stdnum checksums, calendar-valid dates, :mod:`ipaddress`);
(c) a **name recogniser** on first/last-name dictionaries shipped in Faker, gated by context and
    by a scanner vocabulary (:mod:`.names`).

Why not Presidio's analyzer (evaluated, and run as the peer in ``benchmarks/bench_phi.py``): its
name detection is spaCy NER, and spaCy's trained pipelines are not published on PyPI by spaCy
(third-party re-uploads only); without them Presidio has pattern recognisers alone, which find no
names, and it pulls spaCy and tldextract (≈250 MB), the latter trying to download the public
suffix list at first use. philter-lite's POS step needs NLTK data that is not on PyPI; scrubadub's
name detectors need spaCy or Stanford models. names-dataset loads several GB of memory. So: the
well-kept checkers (phonenumbers, python-stdnum) and Faker's name lists, with rules tuned for
scanner text, where precision matters ("t1_mprage_sag_p2_iso", "AX FLAIR", "T1 Dixon").

Categories: ``name``, ``date``, ``age`` (over 89), ``phone`` (and fax), ``email``, ``url``, ``ip``,
``address`` (streets, postcodes, hospitals), ``id`` (record numbers, accession numbers, UIDs,
NHS/social-security/card numbers, other long identifiers). A :class:`Finding` holds positions and
a category, never the value; nothing here logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from bids_deface.metadata import recognizers as rec
from bids_deface.metadata.methods import DEFAULT_METHOD, Deidentifier
from bids_deface.metadata.names import find_names

CATEGORIES = ("name", "date", "age", "phone", "email", "url", "ip", "address", "id")
# When spans of two categories overlap, the merged span takes the first of these.
_PRIORITY = ("email", "url", "ip", "date", "age", "phone", "id", "address", "name")
_RECOGNISERS = (("email", rec.find_emails), ("url", rec.find_urls), ("ip", rec.find_ips),
                ("date", rec.find_dates), ("age", rec.find_ages_over_89), ("id", rec.find_ids),
                ("phone", rec.find_phones), ("address", rec.find_addresses), ("name", find_names))
# Parts of a known name that say nothing about the person.
_NAME_NOISE = frozenset("dr mr mrs ms miss prof md phd jr sr ii iii iv von van de der den la le du da di del "
                        "of the and st tech technologist radiographer operator nurse patient doctor".split())
_NOT_A_VALUE = frozenset({"", "n/a", "na", "none", "null", "unknown", "anonymous", "anon", "removed", "0"})


@dataclass(frozen=True, order=True)
class Finding:
    """One span of identifying text: ``text[start:end]`` is of ``category``; ``source`` says which
    evidence found it ("known", "pattern" or "name")."""

    start: int
    end: int
    category: str
    source: str = "pattern"


def _as_date(value: str) -> datetime | None:
    text = value.strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", "%Y-%m-%dT%H:%M:%S", "%Y%m%d%H%M%S"):
        try:
            return datetime.strptime(text[:len(datetime(2000, 1, 1).strftime(fmt))], fmt)
        except ValueError:
            continue
    return None


def _date_spellings(d: datetime) -> set[str]:
    forms = {"%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%d-%m-%Y",
             "%m-%d-%Y", "%d/%m/%y", "%m/%d/%y", "%d.%m.%y", "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y",
             "%d-%b-%Y", "%d%b%Y"}
    out = {d.strftime(f) for f in forms}
    # unpadded day and month: 4/2/1961, 2.4.61
    for sep in "/.-":
        for y in (d.strftime("%Y"), d.strftime("%y")):
            out |= {f"{d.day}{sep}{d.month}{sep}{y}", f"{d.month}{sep}{d.day}{sep}{y}"}
    out |= {f"{d.day} {d.strftime('%b')} {d.year}", f"{d.strftime('%B')} {d.day}, {d.year}"}
    return out


def _category_of(label: str | None, value: str) -> str:
    if label in CATEGORIES:
        return label
    if _as_date(value):
        return "date"
    label = (label or "").lower()
    for hint, category in (("name", "name"), ("address", "address"), ("phone", "phone"), ("telephone", "phone"),
                           ("mail", "email"), ("date", "date"), ("birth", "date"), ("institution", "address")):
        if hint in label:
            return category
    letters = sum(c.isalpha() for c in value)
    return "name" if letters and letters >= sum(c.isdigit() for c in value) * 3 else "id"


def _boundary(part: str) -> str:
    # underscores and camel case separate words in scanner text (t1_mprage_Doe, JaneDoe)
    return rf"(?<![^\W_])(?:{re.escape(part)})(?![^\W_])"


_PATTERN_CACHE: dict[tuple, list] = {}  # one participant's values are compiled once, not per file
_PATTERN_CACHE_SIZE = 256


def known_patterns(known_values) -> list[tuple[str, re.Pattern]]:
    """(category, compiled pattern) for each known value, its parts and its spellings.

    ``known_values``: strings, or a mapping from a category or a key name (``PatientName``)
    to values (a string or several)."""
    items: list[tuple[str | None, str]] = []
    if isinstance(known_values, Mapping):
        for label, values in known_values.items():
            values = [values] if isinstance(values, (str, int, float)) else values
            items += [(str(label), str(v)) for v in values if v is not None]
    else:
        items = [(None, str(v)) for v in known_values if v is not None]
    key = tuple(items)
    if key not in _PATTERN_CACHE:
        if len(_PATTERN_CACHE) >= _PATTERN_CACHE_SIZE:
            _PATTERN_CACHE.pop(next(iter(_PATTERN_CACHE)))
        _PATTERN_CACHE[key] = _compile_known(items)
    return list(_PATTERN_CACHE[key])


def _compile_known(items: list[tuple[str | None, str]]) -> list[tuple[str, re.Pattern]]:
    out: dict[tuple[str, str], re.Pattern] = {}
    for label, value in items:
        value = " ".join(value.split())
        if value.casefold() in _NOT_A_VALUE or len(value) < 2:
            continue
        category = _category_of(label, value)
        parts = {value, value.replace("^", " ").strip()}
        if category == "date":
            parts |= _date_spellings(_as_date(value)) if _as_date(value) else set()
        elif category in ("name", "address"):
            words = [w for w in re.split(r"[\^\s,;/]+", value) if w]
            parts |= {w for w in words if len(w) >= 2 and w.casefold() not in _NAME_NOISE and not w.isdigit()}
            if category == "name" and len(words) >= 2:  # Doe^John is also "John Doe"
                parts.add(" ".join(reversed(words[:2])))
        else:
            digits = re.sub(r"\D", "", value)
            if len(digits) >= 4 and digits != value:
                parts.add(digits)
        for part in parts:
            part = part.strip()
            if len(part) < 2:
                continue
            key = (category, part.casefold())
            if key not in out:
                pattern = rf"(?i:{_boundary(part)})"
                if part[:1].isalpha():  # camel case: JaneDoe
                    title = re.escape(part[:1].upper() + part[1:].lower())
                    pattern += rf"|(?<=[a-z]){title}(?![a-z])|(?<![^\W_]){title}(?=[A-Z])"
                out[key] = re.compile(pattern)
    return [(category, pattern) for (category, _), pattern in out.items()]


def _merge(raw: list[Finding]) -> list[Finding]:
    merged: list[Finding] = []
    for f in sorted(raw, key=lambda f: (f.start, -f.end)):
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            category = min((last.category, f.category), key=_PRIORITY.index)
            source = "known" if "known" in (last.source, f.source) else last.source
            merged[-1] = Finding(last.start, max(last.end, f.end), category, source)
        else:
            merged.append(f)
    return merged


def find_phi(text: str, known_values=(), *, patterns: Iterable[tuple[str, re.Pattern]] | None = None
             ) -> list[Finding]:
    """The identifying spans of ``text``, sorted and non-overlapping.

    ``known_values``: values removed from the same subject (see :func:`known_patterns`); pass
    ``patterns=known_patterns(values)`` instead when scanning many strings with the same values.
    """
    if not text or not isinstance(text, str):
        return []
    raw: list[Finding] = []
    for category, pattern in (known_patterns(known_values) if patterns is None else patterns):
        raw += [Finding(m.start(), m.end(), category, "known") for m in pattern.finditer(text) if m.end() > m.start()]
    for category, recognise in _RECOGNISERS:
        source = "name" if category == "name" else "pattern"
        raw += [Finding(s, e, category, source) for s, e in recognise(text) if e > s]
    return _merge(raw)


def clean_text(text: str, known_values=(), method: str = DEFAULT_METHOD, key: bytes | None = None, *,
               deidentifier: Deidentifier | None = None, where: str = "",
               patterns: Iterable[tuple[str, re.Pattern]] | None = None) -> tuple[str, list[str]]:
    """``text`` with every finding of :func:`find_phi` de-identified by ``method``.

    ``key``: the HMAC key for ``hash`` (and stable ``replace``), unless ``deidentifier`` (which
    also carries the vault and the subject) is given. Returns ``(cleaned text, sorted categories
    found)``; ``redact`` cuts each span out (and one of the spaces around it).
    """
    findings = find_phi(text, known_values, patterns=patterns)
    if not findings:
        return text, []
    methods = deidentifier if deidentifier is not None else Deidentifier(hash_key=key)
    methods.check(method)
    out = text
    for f in reversed(findings):
        new = methods.apply(out[f.start:f.end], method, f.category, where=where)
        start, end = f.start, f.end
        if new is None:
            new = ""
            # one separator goes with the span: "t1_mprage_Doe" -> "t1_mprage", "by Doe, ok" -> "by, ok"
            if start > 0 and out[start - 1] in " _" and (end == len(out) or out[end] in " _,.;:)"):
                start -= 1
            elif start == 0 and out[end:end + 1] in (" ", "_"):
                end += 1
        out = out[:start] + new + out[end:]
    return out, sorted({f.category for f in findings})
