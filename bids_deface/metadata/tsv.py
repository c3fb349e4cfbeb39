"""``scans.tsv``, ``sessions.tsv``, ``participants.tsv``: acquisition times shifted or dropped,
identifying columns removed."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd

from bids_deface.metadata.policy import ACQ_TIME_MODES, SidecarPolicy, load_sidecar_policy


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None


def earliest_acq_time(tables) -> datetime | None:
    """The earliest ``acq_time`` over several TSV files or tables (one subject's, to shift them alike)."""
    times = []
    for table in tables:
        df = _read_tsv(table)
        if "acq_time" in df.columns:
            times += [t for t in map(_parse_time, df["acq_time"]) if t is not None]
    return min(times, key=lambda t: t.replace(tzinfo=None)) if times else None


def _read_tsv(table) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table.copy()
    # Everything as text: values are written back exactly as they were.
    return pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False, na_filter=False)


def scrub_scans_tsv(table, policy: SidecarPolicy | None = None, out: str | Path | None = None, *,
                    acq_time: str | None = None, reference: datetime | None = None
                    ) -> tuple[pd.DataFrame, list[str]]:
    """Scrub a ``scans.tsv`` (or ``sessions.tsv``): acquisition times and identifying columns.

    Inputs: ``table`` (path or DataFrame); ``policy`` (default: shipped); ``out`` (optional path
    to write the TSV to); ``acq_time`` ("shift", "drop" or "keep"; default from the policy);
    ``reference`` (the datetime moved to the policy's ``shift_to`` date; default: this
    table's earliest ``acq_time``; pass one subject's earliest, see :func:`earliest_acq_time`,
    to keep intervals between that subject's sessions).
    Shifting moves every parseable ``acq_time`` by one whole number of days, so the time of
    day and the intervals between scans are kept; unparseable values become ``n/a``.
    Returns ``(scrubbed table, names of removed columns)``; ``"acq_time"`` is among them
    when dropped, ``"acq_time (shifted)"`` when shifted.
    """
    # Also accepted: (table, out, policy), the order of bids.copy_raw_dataset.
    if not isinstance(policy, SidecarPolicy) and isinstance(out, SidecarPolicy):
        policy, out = out, policy
    policy = load_sidecar_policy() if policy is None else policy
    mode = policy.acq_time if acq_time is None else acq_time
    if mode not in ACQ_TIME_MODES:
        raise ValueError(f"acq_time must be one of {list(ACQ_TIME_MODES)}, got {mode!r}")
    df = _read_tsv(table)
    removed = [c for c in df.columns
               if c not in ("filename", "session_id", "participant_id", "acq_time")
               and (c.lower() in policy.remove_columns or policy.removes(c))]
    df = df.drop(columns=removed)
    if "acq_time" in df.columns:
        if mode == "drop":
            df = df.drop(columns=["acq_time"])
            removed.append("acq_time")
        elif mode == "shift":
            df["acq_time"] = _shift_times(df["acq_time"], policy.shift_to, reference)
            removed.append("acq_time (shifted)")
    if out is not None:
        df.to_csv(out, sep="\t", index=False, na_rep="n/a", lineterminator="\n")
    return df, removed


def _shift_times(values: pd.Series, shift_to: date, reference: datetime | None) -> pd.Series:
    parsed = [_parse_time(str(v)) for v in values]
    if reference is None:
        known = [t for t in parsed if t is not None]
        reference = min(known, key=lambda t: t.replace(tzinfo=None)) if known else None
    if reference is None:
        return pd.Series(["n/a"] * len(values), index=values.index, dtype=object)
    days = reference.date() - shift_to
    return pd.Series([(t - days).isoformat() if t is not None else "n/a" for t in parsed],
                     index=values.index, dtype=object)
