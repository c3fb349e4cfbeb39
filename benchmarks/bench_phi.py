"""Precision and recall of free-text PHI detection on planted scanner text, against Presidio.

Corpus: ``benchmarks/data/phi_corpus.tsv`` (written by ``tools/phi_corpus.py``, seeded): strings of
SeriesDescription, ProtocolName, ImageComments, ScanNotes, README lines and TSV notes, two thirds
with identifying values planted at known spans, one third plain scanner text.

Scored per category:
- recall: a planted span counts as found when every letter and digit of it lies inside some
  finding (of any category: what matters is that it does not leak);
- precision: a finding counts as right when it overlaps a planted span.

Rows: bids-deface without the subject's removed values, bids-deface with them (PatientName,
PatientID, birth date: what the DICOM/sidecar scrubber removed before), and the peer, Presidio
2.2's pattern recognisers (no NER: spaCy's trained pipelines are not on PyPI; its e-mail and URL
checks made offline). Timing per string is printed for both.

Usage: ``python benchmarks/bench_phi.py [--corpus FILE] [--misses]``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from pathlib import Path

from bids_deface.metadata.phi import CATEGORIES, find_phi, known_patterns

DATA = Path(__file__).resolve().parent / "data"
CORPUS = DATA / "phi_corpus.tsv"
HANDWRITTEN = DATA / "phi_handwritten.txt"
HELD_OUT_SEED = 7
PRESIDIO_CATEGORY = {"PERSON": "name", "DATE_TIME": "date", "PHONE_NUMBER": "phone", "EMAIL_ADDRESS": "email",
                     "URL": "url", "IP_ADDRESS": "ip", "US_SSN": "id", "UK_NHS": "id", "CREDIT_CARD": "id",
                     "MEDICAL_LICENSE": "id", "US_BANK_NUMBER": "id", "US_DRIVER_LICENSE": "id", "US_PASSPORT": "id",
                     "IBAN_CODE": "id", "US_ITIN": "id", "LOCATION": "address"}


def load(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        _, field, text, spans, known = line.split("\t")
        rows.append({"field": field, "text": text, "spans": json.loads(spans), "known": json.loads(known)})
    return rows


def load_handwritten(path: Path) -> list[dict]:
    """FIELD<TAB>TEXT lines with planted values marked ``{category|value}``."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        field, marked = line.split("\t", 1)
        text, spans, pos = "", [], 0
        for m in re.finditer(r"\{(\w+)\|([^}]*)\}", marked):
            text += marked[pos:m.start()]
            spans.append([m.group(1), len(text), len(text) + len(m.group(2))])
            text += m.group(2)
            pos = m.end()
        rows.append({"field": field, "text": text + marked[pos:], "spans": spans, "known": {}})
    return rows


def held_out(seed: int) -> list[dict]:
    """The templated corpus drawn again with another seed (other names, numbers and dates)."""
    from tools.phi_corpus import Corpus

    return [{**r, "known": r["known"]} for r in Corpus(seed).rows()]


def presidio_detector():
    """Presidio's predefined pattern recognisers, offline (tldextract's bundled suffix list)."""
    import tldextract
    from presidio_analyzer import predefined_recognizers as pr
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    email_recognizer.tldextract = type("offline", (), {"extract": staticmethod(
        tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None))})
    names = ["EmailRecognizer", "UrlRecognizer", "IpRecognizer", "DateRecognizer", "PhoneRecognizer",
             "UsSsnRecognizer", "NhsRecognizer", "CreditCardRecognizer", "MedicalLicenseRecognizer",
             "UsBankRecognizer", "UsLicenseRecognizer", "UsPassportRecognizer", "IbanRecognizer", "UsItinRecognizer"]
    recognisers = [getattr(pr, n)() for n in names if hasattr(pr, n)]

    def detect(text: str, known) -> list[tuple[int, int, str]]:
        out = []
        for r in recognisers:
            for res in r.analyze(text, r.supported_entities, None) or []:
                if res.score >= 0.3:  # Presidio's own low-confidence cut for pattern-only results
                    out.append((res.start, res.end, PRESIDIO_CATEGORY.get(res.entity_type, "id")))
        return out
    return detect


def ours(use_known: bool):
    def detect(text: str, known) -> list[tuple[int, int, str]]:
        patterns = known_patterns(known) if use_known else []
        return [(f.start, f.end, f.category) for f in find_phi(text, patterns=patterns)]
    return detect


def score(rows, detect, misses: list | None = None) -> tuple[dict, float]:
    planted, found = defaultdict(int), defaultdict(int)
    predicted, right = defaultdict(int), defaultdict(int)
    start = time.perf_counter()
    for row in rows:
        text = row["text"]
        findings = detect(text, row["known"])
        covered = set()
        for s, e, _ in findings:
            covered |= set(range(s, e))
        for category, s, e in row["spans"]:
            planted[category] += 1
            needed = {i for i in range(s, e) if text[i].isalnum()}
            if needed <= covered:
                found[category] += 1
            elif misses is not None:
                misses.append(("missed", category, text))
        for s, e, category in findings:
            predicted[category] += 1
            if any(s < ge and gs < e for _, gs, ge in row["spans"]):
                right[category] += 1
            elif misses is not None:
                misses.append(("false positive", category, text))
    seconds = (time.perf_counter() - start) / len(rows)
    table = {c: {"planted": planted[c], "recall": found[c] / planted[c] if planted[c] else None,
                 "predicted": predicted[c], "precision": right[c] / predicted[c] if predicted[c] else None}
             for c in CATEGORIES}
    total_p, total_f = sum(planted.values()), sum(found.values())
    table["all"] = {"planted": total_p, "recall": total_f / total_p, "predicted": sum(predicted.values()),
                    "precision": sum(right.values()) / max(1, sum(predicted.values()))}
    return table, seconds


def _fmt(x) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--misses", action="store_true", help="print the strings missed or wrongly flagged")
    args = parser.parse_args(argv)
    corpora = [(f"templated corpus ({args.corpus.name})", load(args.corpus)),
               (f"templated, held-out seed {HELD_OUT_SEED}", held_out(HELD_OUT_SEED)),
               (f"hand-written ({HANDWRITTEN.name}, never tuned on)", load_handwritten(HANDWRITTEN))]
    detectors = [("bids-deface", ours(False)), ("bids-deface + known values", ours(True))]
    try:
        detectors.append(("Presidio 2.2 patterns (peer)", presidio_detector()))
    except ImportError as exc:
        print(f"peer not run: {exc} (pip install 'presidio-analyzer==2.2.366')")
    for title, rows in corpora:
        n_neg = sum(1 for r in rows if not r["spans"])
        print(f"\n=== {title}: {len(rows)} strings ({len(rows) - n_neg} with planted values, {n_neg} plain "
              f"scanner text), {sum(len(r['spans']) for r in rows)} planted spans")
        for name, detect in detectors:
            if name.endswith("known values") and not any(r["known"] for r in rows):
                continue
            misses = [] if args.misses else None
            table, seconds = score(rows, detect, misses)
            print(f"\n{name}: {seconds * 1000:.2f} ms per string")
            print(f"{'category':10s} {'planted':>7s} {'recall':>7s} {'found':>7s} {'precision':>9s}")
            for category, row in table.items():
                print(f"{category:10s} {row['planted']:7d} {_fmt(row['recall']):>7s} {row['predicted']:7d} "
                      f"{_fmt(row['precision']):>9s}")
            for kind, category, text in misses or []:
                print(f"  {kind:14s} {category:8s} {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
