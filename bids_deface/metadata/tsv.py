"""``participants.tsv``, ``sessions.tsv``, ``scans.tsv``, ``phenotype/*.tsv``, ``samples.tsv``
through the allow-list: only kept columns, only selected participants and sessions, ages over
89 collapsed, acquisition times shifted or dropped, free text cleaned. Only column names are
reported."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path, PurePosixPath

import pandas as pd

from bids_deface.metadata.methods import Deidentifier
from bids_deface.metadata.phi import clean_text, known_patterns
from bids_deface.metadata.policy import ACQ_TIME_MODES, MetadataPolicy, load_metadata_policy
from bids_deface.metadata.sidecar import safe_name

AGE_CAP = 89  # HIPAA Safe Harbor: ages over 89 are aggregated
AGE_CAPPED = "89+"
_NOT_A_VALUE = {"", "n/a", "na", "nan", "none"}


def table_kind(relpath: str | Path) -> str | None:
    """Which BIDS table a TSV is (participants, sessions, scans, phenotype, samples), or None."""
    path = PurePosixPath(str(relpath).replace("\\", "/"))
    if path.suffix != ".tsv":
        return None
    if path.name == "participants.tsv" and len(path.parts) == 1:
        return "participants"
    if path.name == "samples.tsv" and len(path.parts) == 1:
        return "samples"
    if path.parts[0] == "phenotype":
        return "phenotype"
    for kind in ("sessions", "scans"):
        if path.name.endswith(f"_{kind}.tsv"):
            return kind
    return None


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return None


def _read_tsv(table) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table.copy()
    # Everything as text: values are written back exactly as they were.
    return pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False, na_filter=False)


def earliest_acq_time(tables) -> datetime | None:
    """The earliest ``acq_time`` over several TSV files or tables (one subject's, to shift them alike)."""
    times = []
    for table in tables:
        df = _read_tsv(table)
        if "acq_time" in df.columns:
            times += [t for t in map(_parse_time, df["acq_time"]) if t is not None]
    return min(times, key=lambda t: t.replace(tzinfo=None)) if times else None


def _label(value: str, prefix: str) -> str:
    value = str(value).strip()
    return value[len(prefix) + 1:] if value.startswith(f"{prefix}-") else value


def known_values_from_table(table, policy: MetadataPolicy | None = None, kind: str = "participants"
                            ) -> dict[str, list[str]]:
    """Per participant label, the values of the columns the policy drops that look identifying
    (text of three letters or more, numbers of five digits or more, dates), to be searched for in
    that participant's other files."""
    policy = load_metadata_policy() if policy is None else policy
    df = _read_tsv(table)
    if "participant_id" not in df.columns:
        return {}
    dropped = [c for c in df.columns if policy.column_rule(c, kind) is None]
    out: dict[str, list[str]] = {}
    for _, row in df.iterrows():
        values = [str(row[c]) for c in dropped if _identifying_looking(str(row[c]))]
        if values:
            out.setdefault(_label(row["participant_id"], "sub"), []).extend(values)
    return out


def _identifying_looking(value: str) -> bool:
    value = value.strip()
    if value.casefold() in _NOT_A_VALUE:
        return False
    return bool(re.search(r"[^\W\d_]{3,}", value) or re.search(r"\d{5,}", re.sub(r"\D", "", value))
                or _parse_time(value))


def _cap_age(value: str) -> str:
    try:
        return AGE_CAPPED if float(str(value).strip()) > AGE_CAP else value
    except ValueError:
        text = str(value).strip()
        return AGE_CAPPED if re.fullmatch(r"(9\d|[1-9]\d\d)\s*\+?", text) else value


def _select_rows(df: pd.DataFrame, kind: str, participants, sessions) -> pd.DataFrame:
    keep = pd.Series(True, index=df.index)
    if participants is not None and "participant_id" in df.columns:
        wanted = {_label(p, "sub") for p in participants}
        keep &= df["participant_id"].map(lambda v: _label(v, "sub") in wanted)
    if sessions is not None and "session_id" in df.columns:
        wanted = {_label(s, "ses") for s in sessions}
        keep &= df["session_id"].map(lambda v: _label(v, "ses") in wanted)
    if sessions is not None and kind == "scans" and "filename" in df.columns:
        wanted = {_label(s, "ses") for s in sessions}

        def selected(name: str) -> bool:
            found = re.search(r"(?:^|/)ses-([A-Za-z0-9]+)/", str(name))
            return found is None or found.group(1) in wanted
        keep &= df["filename"].map(selected)
    return df[keep]


def scrub_table(table, policy: MetadataPolicy | None = None, out: str | Path | None = None, *,
                kind: str | None = None, participants=None, sessions=None, known_values=(),
                known_by_participant=None, deidentifier: Deidentifier | None = None,
                acq_time: str | None = None, reference: datetime | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Scrub one BIDS table (see the module docstring).

    ``kind``: participants, sessions, scans, phenotype or samples (default: from the file name,
    else scans); ``participants``/``sessions``: the selected labels (rows of others are removed;
    None keeps all); ``known_values`` (all rows) and ``known_by_participant`` (label → values):
    searched for in kept free-text cells; ``acq_time``/``reference``: see :func:`scrub_scans_tsv`.
    Returns ``(table, report)``: dropped column names, ``"age (over 89 collapsed)"``,
    ``"acq_time (shifted)"``, ``"N row(s) of unselected participants or sessions"``,
    ``"col (cleaned)"``, ``"col (hash)"``.
    """
    policy = load_metadata_policy() if policy is None else policy
    if kind is None and not isinstance(table, pd.DataFrame):
        kind = table_kind("/".join(Path(table).parts[-2:])) or table_kind(Path(table).name)
    kind = kind or "scans"
    mode = policy.acq_time if acq_time is None else acq_time
    if mode not in ACQ_TIME_MODES:
        raise ValueError(f"acq_time must be one of {list(ACQ_TIME_MODES)}, got {mode!r}")
    df = _read_tsv(table)
    before = len(df)
    df = _select_rows(df, kind, participants, sessions)
    report = [c for c in df.columns if policy.column_rule(c, kind) is None]
    df = df.drop(columns=report)
    if len(df) < before:
        report.append(f"{before - len(df)} row(s) of unselected participants or sessions")
    if "age" in df.columns:
        capped = df["age"].map(_cap_age)
        if (capped != df["age"]).any():
            report.append("age (over 89 collapsed)")
        df["age"] = capped
    if "acq_time" in df.columns and mode != "keep":
        if mode == "drop":
            df = df.drop(columns=["acq_time"])
            report.append("acq_time")
        else:
            df["acq_time"] = _shift_times(df["acq_time"], policy.shift_to, reference)
            report.append("acq_time (shifted)")
    report += _transform_cells(df, kind, policy, deidentifier or Deidentifier(), known_values, known_by_participant or {})
    if out is not None:
        df.to_csv(out, sep="\t", index=False, na_rep="n/a", lineterminator="\n")
    return df, [safe_name(line) for line in report]


def _transform_cells(df, kind, policy, methods: Deidentifier, known_values, by_participant) -> list[str]:
    report = []
    shared = list(known_values.items()) if isinstance(known_values, dict) else [("known", v) for v in known_values]
    shared_values = [v for _, vs in shared for v in ([vs] if isinstance(vs, str) else vs)]
    patterns: dict[str, list] = {}  # per participant, compiled once

    def known_for(participant: str):
        if participant not in patterns:
            patterns[participant] = known_patterns({"known": shared_values + list(by_participant.get(participant, []))})
        return patterns[participant]

    for column in list(df.columns):
        rule = policy.column_rule(column, kind)
        if rule is None or rule.action not in ("scan", "value"):
            continue
        changed, cells = False, []
        for index, value in df[column].items():
            participant = _label(df.at[index, "participant_id"], "sub") if "participant_id" in df.columns else ""
            subject = methods.for_subject(participant)
            if str(value).strip().casefold() in _NOT_A_VALUE:
                cells.append(value)
                continue
            if rule.action == "value":
                new = subject.apply(value, rule.method, None, where=column)
                new = "n/a" if new is None else new
            else:
                new, _ = clean_text(str(value), method=rule.method, deidentifier=subject, where=column,
                                    patterns=known_for(participant))
            changed |= new != value
            cells.append(new)
        df[column] = cells
        if changed:
            report.append(f"{column} ({'cleaned' if rule.action == 'scan' else rule.method})")
    return report


def scrub_scans_tsv(table, policy: MetadataPolicy | None = None, out: str | Path | None = None, *,
                    acq_time: str | None = None, reference: datetime | None = None, **kwargs
                    ) -> tuple[pd.DataFrame, list[str]]:
    """Scrub a ``scans.tsv`` (or any BIDS table: :func:`scrub_table` takes the same arguments).

    ``acq_time``: "shift", "drop" or "keep" (default from the policy); ``reference``: the
    datetime moved to the policy's ``shift_to`` date (default: this table's earliest
    ``acq_time``; pass one subject's earliest, see :func:`earliest_acq_time`, to keep intervals
    between that subject's sessions). Shifting moves every parseable ``acq_time`` by one whole
    number of days, so the time of day and the intervals between scans are kept; unparseable
    values become ``n/a``.
    """
    # Also accepted: (table, out, policy), the order of bids.copy_raw_dataset.
    if not isinstance(policy, MetadataPolicy) and isinstance(out, MetadataPolicy):
        policy, out = out, policy
    return scrub_table(table, policy, out, acq_time=acq_time, reference=reference, **kwargs)


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
