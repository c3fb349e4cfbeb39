"""Names of persons in short scanner free text, offline: dictionaries plus context.

The first- and last-name dictionaries are those Faker ships (its person providers, 86 locales,
about 20,000 first and 18,000 last names in Latin script): nothing is downloaded. A dictionary
word alone is weak evidence in scanner text ("Dixon", "Grace", "Star" and "Echo" are sequence
names too), so a span is taken for a name only when

- it is written as a DICOM person name (``Doe^John``), or
- an honorific stands before it (``Dr Smith``), or a role word before it and a dictionary
  name in it (``tech: A. Lopez``, ``scanned by Maria``), or a degree after it (``Lopez RN``), or
- it is a run of capitalised words whose first is a first name and whose last is a last name
  (``Maria Lopez``, ``LOPEZ, MARIA``), none of them scanner vocabulary
  (``data/scanner_vocabulary.txt``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pkgutil
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

_LETTERS = "A-Za-zÀ-ÖØ-öø-ÿĀ-ž"
_WORD = rf"[{_LETTERS}][{_LETTERS}'’-]*"
_CAP = rf"(?:[A-ZÀ-ÖØ-ÞĀ-Ž][{_LETTERS}'’-]+)"          # Title or CAPS word, 2+ letters
_INITIAL = r"(?:[A-Z]\.?)"
_NAME_TOKEN = rf"(?:{_CAP}|{_INITIAL}(?=\s))"

HONORIFICS = r"(?:Dr|Doctor|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Sr|Sra|Herr|Frau|Mme|Mlle|Dott|Sir|Dame)\.?"
# Words after which capitalised words are a person's name (strong) or may be one (weak: a
# dictionary name is needed then).
STRONG_ROLES = (r"(?:patient|pt|name|tech|techs|technologist|technician|radiographer|radiologist|operator|"
                r"physician|nurse|PI|attn|contact|mother|father|parent|guardian|carer|caregiver|"
                r"(?:scanned|performed|acquired|reviewed|read|reported|signed|entered|checked|run|referred|"
                r"requested|ordered|approved|consented)\s+by|referring|ref)")
WEAK_ROLES = (r"(?:by|with|from|for|to|and|per|called|informed|cc|signed|wife|husband|spouse|son|daughter|"
              r"sister|brother|family|participant|subject|resident|fellow|coordinator|RA|née|nee|aka)")
AFTER_ROLES = (r"(?:,?\s+(?:MD|M\.D\.|RN|RT|RT\(R\)\(MR\)|PhD|DO|NP|PA|MBBS|FRCR|CRA|BSc|MSc)(?![^\W_])"
               r"|\s*\((?:mother|father|parent|guardian|wife|husband|carer|radiographer|tech|technologist|"
               r"nurse|RN|MD|PI|radiologist|physician|operator)\)"
               r"|['’]s\s+(?:wife|husband|partner|mother|father|son|daughter|sister|brother|carer|parents?))")
PARTICLES = r"(?:van|von|de|der|den|di|da|du|del|della|le|la|ten|ter|bin|al|el)"

_B = r"(?<![^\W_])"  # a word starts here: underscores separate words in scanner text
_PN = re.compile(rf"(?<![{_LETTERS}\d])({_WORD})\^({_WORD})?(?:\^[{_LETTERS}.'’ -]*){{0,3}}")
_HONORIFIC = re.compile(rf"{_B}({HONORIFICS}[\s_]+)((?:{_INITIAL}\s*)?{_CAP}(?:[\s-]+{_CAP})?)")
_NAME_RUN = rf"((?:{_NAME_TOKEN}\s+){{0,2}}{_CAP})"
_STRONG = re.compile(rf"(?i:{_B}{STRONG_ROLES})(?![^\W_])[\s:=#,(-]*(?:{HONORIFICS}\s*)?{_NAME_RUN}")
_WEAK = re.compile(rf"(?i:{_B}{WEAK_ROLES})(?![^\W_])[\s:=#,(-]*(?:{HONORIFICS}\s*)?{_NAME_RUN}")
_AFTER = re.compile(rf"{_B}{_NAME_RUN}{AFTER_ROLES}")
_RUN_TOKEN = rf"(?:{_CAP}|[A-Z]\.|[A-Z](?![{_LETTERS}]))"
_RUN = re.compile(rf"(?<![{_LETTERS}])({_RUN_TOKEN}(?:(?:[ _]+|,\s*){_RUN_TOKEN}){{1,3}})(?![{_LETTERS}])")
_TOKEN = re.compile(rf"[{_LETTERS}][{_LETTERS}'’-]*\.?")
_PARTICLE_NAME = re.compile(rf"{_B}((?:{PARTICLES}\s+){{1,2}}({_CAP}))(?:,\s*({_CAP}))?(?![^\W_])")


@lru_cache(maxsize=1)
def name_dictionaries() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, last names), case-folded, from Faker's person providers of every locale.

    Gathering them imports 86 locale modules (about half a second); the result is kept in the
    user's cache folder (:func:`bids_deface.cache.cache_root`: public name lists, nothing of the
    input) for this Faker release and this filter, and read from there by later runs."""
    path = _names_cache_path()
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        return frozenset(cached["first"]), frozenset(cached["last"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    first, last = _faker_names()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"first": sorted(first), "last": sorted(last)}), encoding="utf-8")
        os.replace(tmp, path)  # a reader never sees half a file
    except OSError:  # a read-only home: gathered again next run
        pass
    return first, last


def _names_cache_path() -> Path:
    from importlib.metadata import version

    from bids_deface.cache import cache_root

    key = hashlib.sha256(f"{version('faker')}|{_LETTERS}".encode()).hexdigest()[:16]
    return cache_root() / "names" / f"faker-names-{key}.json"


def _faker_names() -> tuple[frozenset[str], frozenset[str]]:
    import faker.providers.person as person

    first: set[str] = set()
    last: set[str] = set()
    latin = re.compile(rf"^[{_LETTERS}'’-]{{2,}}$")
    for module in pkgutil.iter_modules(person.__path__):
        provider = importlib.import_module(f"{person.__name__}.{module.name}").Provider
        for attr, out in (("first_names", first), ("first_names_male", first), ("first_names_female", first),
                          ("last_names", last)):
            values = next((base.__dict__[attr] for base in provider.__mro__ if attr in base.__dict__), ())
            if isinstance(values, dict):
                values = values.keys()
            if isinstance(values, (tuple, list, set, frozenset, type({}.keys()))):
                out.update(v.casefold() for v in values if isinstance(v, str) and latin.match(v))
    return frozenset(first), frozenset(last)


@lru_cache(maxsize=1)
def scanner_vocabulary() -> frozenset[str]:
    text = (resources.files("bids_deface") / "data" / "scanner_vocabulary.txt").read_text(encoding="utf-8")
    return frozenset(w.strip().casefold() for w in text.splitlines() if w.strip() and not w.startswith("#"))


@lru_cache(maxsize=1)
def _english():
    """Word frequencies of English (pyspellchecker's list, shipped in the package)."""
    from spellchecker import SpellChecker

    return SpellChecker(language="en", distance=1).word_frequency


COMMON_WORD_FREQUENCY = 5000


def common_word(token: str) -> bool:
    """An everyday English word (Position, Routine …) that is not a first or last name."""
    word = _known_word(token)
    first, last = name_dictionaries()
    return word not in first and word not in last and _english()[word] >= COMMON_WORD_FREQUENCY


EVERYDAY_WORD_FREQUENCY = 20000


def everyday_word(token: str) -> bool:
    """A word frequent in English whether or not it is also a name (Mark, Will, Grace)."""
    return _english()[_known_word(token)] >= EVERYDAY_WORD_FREQUENCY


def _name_like(token: str) -> bool:
    """A capitalised token that may be part of a name where context says a name follows: a
    dictionary name (even one that is also a scanner word: "Patient Mark Luce"), or a word that
    is neither scanner vocabulary nor everyday English ("Okafor")."""
    word = _known_word(token)
    first, last = name_dictionaries()
    return _is_initial(token) or word in first or word in last or (
        word not in scanner_vocabulary() and not common_word(token))


def _is_initial(token: str) -> bool:
    return len(token.rstrip(".")) == 1


def _known_word(token: str) -> str:
    return token.rstrip(".").casefold()


def _plausible(tokens: list[str], *, need_dictionary: bool) -> bool:
    """Capitalised tokens that could be a name: none of them scanner vocabulary; with
    ``need_dictionary``, one of them in a name dictionary."""
    first, last = name_dictionaries()
    vocab = scanner_vocabulary()
    words = [t for t in tokens if not _is_initial(t)]
    if not words:
        return False
    if not need_dictionary:
        # after a first name or an initial, a surname may be an everyday word (Christine Sheets, T. Sink)
        return all(_name_like(t) or (i > 0 and _known_word(t) not in vocab and (
            _is_initial(tokens[i - 1]) or _known_word(tokens[i - 1]) in first)) for i, t in enumerate(tokens))
    if any(_known_word(t) in vocab or common_word(t) for t in words):
        return False
    return any(_known_word(t) in first or _known_word(t) in last for t in words)


def _pair(a: str, b: str, comma: bool) -> bool:
    """Two capitalised tokens that read as a name: First Last, First I., I. Last, LAST FIRST,
    Last, First or Last, I."""
    first, last = name_dictionaries()
    vocab = scanner_vocabulary()
    ka, kb = _known_word(a), _known_word(b)
    if ka in vocab or kb in vocab or (_is_initial(a) and _is_initial(b)):
        return False
    if _is_initial(a):
        return kb in last
    if _is_initial(b):
        return (ka in first and not comma) or (comma and _name_like(a) and not common_word(a))
    if ka in first and not comma:
        # Maria Lopez, Bernard Shorter; after an everyday first name (Mark), a real surname
        return not everyday_word(a) or kb in last or not common_word(b)
    if kb in first and (comma or (a.isupper() and b.isupper())):
        return True                               # Lopez, Maria / LOPEZ MARIA / CUFF SERENA
    return kb in first and ka in last and not common_word(a)


def _tail_name(tokens: list[str], need_dictionary: bool) -> list[str] | None:
    """The longest tail of ``tokens`` after a role word that is a name."""
    for i in range(len(tokens)):
        tail = tokens[i:]
        if _plausible(tail, need_dictionary=need_dictionary) and not _is_initial(tail[-1]):
            return tail
    return None


def find_names(text: str) -> list[tuple[int, int]]:
    """Spans of ``text`` taken for persons' names (see the module docstring)."""
    spans: list[tuple[int, int]] = []
    first = name_dictionaries()[0]
    for m in _PN.finditer(text):
        parts = [p for p in m.groups()[:2] if p]
        # HEAD^ROUTINE, MRI^BRAIN: DICOM descriptions use "^" too
        if any(_known_word(p) in first and _known_word(p) not in scanner_vocabulary() for p in parts) or not all(
                _known_word(p) in scanner_vocabulary() or common_word(p) for p in parts):
            spans.append((m.start(), m.end()))
    for m in _HONORIFIC.finditer(text):
        tokens = _TOKEN.findall(m.group(2))
        for n in range(len(tokens), 0, -1):  # "Mrs Styborski - Scan aborted": the name is the first word
            if _plausible(tokens[:n], need_dictionary=False) and not _is_initial(tokens[n - 1]):
                spans.append((m.start(1), m.start(2) + m.group(2).find(tokens[n - 1]) + len(tokens[n - 1])))
                break
    for m in _PARTICLE_NAME.finditer(text):
        if _name_like(m.group(2)) and not common_word(m.group(2)) and (m.group(3) or _known_word(m.group(2)) in name_dictionaries()[1]):
            spans.append(m.span())
    for pattern, need_dictionary in ((_STRONG, False), (_WEAK, True), (_AFTER, False)):
        for m in pattern.finditer(text):
            tail = _tail_name(_TOKEN.findall(m.group(1)), need_dictionary)
            if tail:
                spans.append((m.start(1) + m.group(1).find(tail[0]), m.end(1)))
    for m in _RUN.finditer(text):
        spans += _runs_of_names(text, m.start(1), m.group(1))
    return spans


def _runs_of_names(text: str, offset: int, run: str) -> list[tuple[int, int]]:
    """Pairs (and a middle name or initial between) of capitalised tokens that read as a name."""
    pieces = [(m.group(0), offset + m.start()) for m in re.finditer(rf"[{_LETTERS}][{_LETTERS}'’-]*\.?", run)]
    out, i = [], 0
    while i < len(pieces) - 1:
        (a, sa), (b, sb) = pieces[i], pieces[i + 1]
        comma = "," in text[sa + len(a):sb]
        if _pair(a, b, comma):
            end = sb + len(b)
            if i + 2 < len(pieces) and not comma and _is_initial(b):  # Maria L. Lopez
                c, sc = pieces[i + 2]
                if _known_word(c) not in scanner_vocabulary():
                    end, i = sc + len(c), i + 1
            out.append((sa, end))
            i += 2
        else:
            i += 1
    return out
