"""The reports' templates (package data under ``templates/``) and what they share: one Jinja2
environment with autoescaping, figures embedded as ``data:`` URIs, the words for verdicts.

Every report is one self-contained file: styles and scripts inline, figures as ``data:`` URIs,
no external URL, so that it opens anywhere, offline.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from pathlib import Path

import jinja2

from bids_deface.dataset.atomic import write_atomic

# the one verdict of an image (bids_deface.defacing.steps) and how reports say it
VERDICTS = {
    "defaced": "Defaced",
    "refused": "Refused",
    "failed": "Failed",
    "not processed": "Not processed",
}


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("bids_deface.reports", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context) -> str:
    return environment().get_template(template).render(verdicts=VERDICTS, **context)


def write_html(path: Path, text: str) -> Path:
    """Write a report atomically (readers never see half a page), in UTF-8."""
    path = Path(path)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def file_uri(path: str | Path | None) -> str | None:
    """A PNG file as a ``data:`` URI; None when there is no such file."""
    if not path or not Path(path).is_file():
        return None
    return png_uri(Path(path).read_bytes())


def verdict_counts(statuses: list[str]) -> list[tuple[str, int]]:
    """(verdict, images) for each verdict present, in the order of :data:`VERDICTS`."""
    order = list(VERDICTS)
    return [(s, statuses.count(s)) for s in sorted(set(statuses), key=lambda s: (order.index(s) if s in order else 9, s))]
