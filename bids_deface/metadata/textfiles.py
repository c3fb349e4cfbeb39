"""README, CHANGES, LICENSE and other plain-text files of a dataset: scanned, findings replaced."""

from __future__ import annotations

from pathlib import PurePosixPath

from bids_deface.metadata.methods import Deidentifier
from bids_deface.metadata.phi import clean_text, known_patterns
from bids_deface.metadata.policy import MetadataPolicy, load_metadata_policy

TEXT_FILE_NAMES = ("README", "CHANGES", "LICENSE", "CITATION")
TEXT_FILE_SUFFIXES = (".txt", ".md", ".rst", ".cff")


def is_text_file(relpath: str) -> bool:
    """Whether a dataset file is free text to scan (README*, CHANGES*, LICENSE*, *.txt, *.md …)."""
    path = PurePosixPath(relpath)
    return path.name.upper().startswith(TEXT_FILE_NAMES) or path.suffix.lower() in TEXT_FILE_SUFFIXES


def scrub_text_file(text: str, policy: MetadataPolicy | None = None, *, known_values=(),
                    deidentifier: Deidentifier | None = None, where: str = "") -> tuple[str, list[str]]:
    """``text`` with identifying content de-identified line by line by the policy's text-file
    method (default: removed); returns ``(text, sorted categories found)``. Line endings and
    every line without a finding are kept byte for byte."""
    policy = load_metadata_policy() if policy is None else policy
    if not policy.text_files_scan:
        return text, []
    methods = deidentifier or Deidentifier()
    patterns = known_patterns(known_values)
    found: set[str] = set()
    lines = text.splitlines(keepends=True)
    out = []
    for line in lines:
        body = line.rstrip("\r\n")
        cleaned, categories = clean_text(body, method=policy.text_files_method, deidentifier=methods,
                                         where=where, patterns=patterns)
        found |= set(categories)
        out.append(cleaned + line[len(body):])
    return "".join(out), sorted(found)
