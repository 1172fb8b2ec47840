"""Build the modeling table: one cleaned row per unit of analysis.

:func:`load_table` reads every configured source, cleans it (see
:mod:`icp_lib._clean`), joins outcomes, accounts and contacts to the
opportunities, derives the outcome from the config, and returns a
:class:`ModelingTable` that every later step reads. Each cleaning rule that
changed something is logged as a :class:`CleaningStep`, so the audit report
can say what was cleaned.

Choices worth knowing:

- Exact duplicate rows are dropped from every source.
- An opportunity repeated once per product line (same record id) is kept
  once; its amount is taken once (CRM "opportunities with products" reports
  repeat the opportunity amount on every line, so summing would inflate it).
  Multi-valued fields of the opportunity collect the values of every line.
- Without a mapped ``record_id``, records are named ``row-<n>`` after their
  row in the source file.
- Values outside a field's ``valid_range`` are read as missing.
- With ``unit: account`` an account is won when any of its opportunities is
  won, lost when all are lost, open otherwise; its record date is its first
  opportunity's date and its amount the sum of won amounts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import _clean
from ._clean import (
    FALSE_TEXT,
    SENIORITY_LEVELS,
    TRUE_TEXT,
    category_key,
    parse_bool,
    parse_number_text,
)
from ._io import SourceData, read_source
from .config import Config, FieldConfig, Segment
from .errors import ConfigError, DataError

__all__ = [
    "FieldSpec",
    "CleaningStep",
    "ModelingTable",
    "load_table",
    "select_segment",
    "save_table",
    "read_table",
    "parse_quarter",
    "quarter_bounds",
    "shift_quarter",
    "training_quarters",
    "last_complete_quarter",
    "quarters_of",
]

logger = logging.getLogger(__name__)

BASE_COLUMNS = (
    "record_id",
    "account_id",
    "record_date",
    "close_date",
    "amount",
    "stage",
    "outcome",
    "won",
    "qualified",
    "quarter",
)
DATE_COLUMNS = ("record_date", "close_date", "changed_at", "date")
HISTORY_COLUMNS = ("record_id", "field", "changed_at", "stage")
FEEDBACK_COLUMNS = ("record_id", "date", "verdict", "reason", "rep")
VERDICTS = ("good", "bad")
OUTCOMES = ("won", "lost", "open")
_QUARTER_RE = re.compile(r"^(\d{4})\s*-?\s*Q([1-4])$", re.IGNORECASE)
_FILLED = "_outcome_filled"


@dataclass(frozen=True)
class FieldSpec:
    """A candidate field of the ICP score, as the config declares it."""

    name: str
    kind: str
    label: str
    known_late: bool
    source: str
    valid_range: tuple[float | None, float | None] | None
    decision: str | None


@dataclass(frozen=True)
class CleaningStep:
    """One cleaning rule that changed a column of a source."""

    source: str
    column: str
    rule: str
    rows: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class ModelingTable:
    """The cleaned table every step of the kit reads.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per unit of analysis: the base columns (``BASE_COLUMNS``),
        one column per candidate field and any other mapped column.
    fields : tuple of FieldSpec
        The candidate fields, in config order.
    cleaning : tuple of CleaningStep
        What the cleaning rules changed.
    history, feedback : pandas.DataFrame or None
        Field history and sales feedback, when configured.
    fingerprints : dict
        Source role to ``"sha256:<hex>"``.
    has_dates : bool
        False when no record has a record date.
    """

    frame: pd.DataFrame
    fields: tuple[FieldSpec, ...]
    cleaning: tuple[CleaningStep, ...]
    history: pd.DataFrame | None = None
    feedback: pd.DataFrame | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)
    has_dates: bool = True


class _Log:
    """Collects cleaning steps in the order they happen."""

    def __init__(self) -> None:
        self.steps: list[CleaningStep] = []

    def add(self, role: str, column: str, rule: str, cleaned: _clean.Cleaned):
        if cleaned.rows:
            step = CleaningStep(role, column, rule, cleaned.rows, cleaned.examples)
            self.steps.append(step)
            logger.info("%s.%s: %s (%d rows)", role, column, rule, cleaned.rows)
        return cleaned.values

    def count(self, role, column, rule, rows, examples=()) -> None:
        if rows:
            self.add(role, column, rule, _clean.Cleaned(None, int(rows), examples))


# --------------------------------------------------------------------------
# Quarters


def parse_quarter(text: str) -> tuple[int, int]:
    """Read a quarter written like ``"2026Q3"``.

    Returns
    -------
    tuple of (int, int)
        The year and the quarter number (1 to 4).

    Raises
    ------
    ConfigError
        If the text is not a year followed by Q1 to Q4.
    """
    match = _QUARTER_RE.match(str(text).strip())
    if not match:
        raise ConfigError(
            f"quarter {text!r} is not valid; write a year and a quarter "
            "number 1 to 4, for example 2026Q3"
        )
    return int(match.group(1)), int(match.group(2))


def _format_quarter(year: int, number: int) -> str:
    return f"{year}Q{number}"


def shift_quarter(quarter: str, n: int) -> str:
    """Return the quarter ``n`` quarters after ``quarter`` (before if n < 0).

    >>> shift_quarter("2026Q3", -4)
    '2025Q3'
    """
    year, number = parse_quarter(quarter)
    index = year * 4 + number - 1 + n
    return _format_quarter(index // 4, index % 4 + 1)


def quarter_bounds(quarter: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Return the first day of ``quarter`` and the first day after it."""
    year, number = parse_quarter(quarter)
    start = pd.Timestamp(year=year, month=3 * number - 2, day=1)
    return start, start + pd.DateOffset(months=3)


def training_quarters(review_quarter: str, n: int) -> list[str]:
    """Return the ``n`` quarters before ``review_quarter``, oldest first.

    >>> training_quarters("2026Q3", 2)
    ['2026Q1', '2026Q2']
    """
    return [shift_quarter(review_quarter, -k) for k in range(n, 0, -1)]


def quarters_of(dates: pd.Series) -> pd.Series:
    """Return the quarter text ("2026Q3") of each date; NA for NaT."""
    dates = pd.to_datetime(dates)
    text = dates.dt.year.astype("Int64").astype(str) + "Q"
    text = text + dates.dt.quarter.astype("Int64").astype(str)
    return text.where(dates.notna()).astype("str")


def last_complete_quarter(
    table: ModelingTable, *, today: pd.Timestamp | None = None
) -> str:
    """Return the last complete quarter of the data.

    That is the quarter of the latest record date, unless that quarter has
    not ended yet on ``today`` (default: the current date), in which case
    it is the quarter before today's.

    Raises
    ------
    DataError
        If the table has no record dates.
    """
    latest = table.frame["record_date"].max()
    if pd.isna(latest):
        raise DataError(
            "the data has no record dates, so there is no last complete "
            "quarter; map record_date in the opportunities source to review "
            "by quarter"
        )
    today = pd.Timestamp.now() if today is None else pd.Timestamp(today)
    before_today = shift_quarter(quarters_of(pd.Series([today])).iloc[0], -1)
    latest_q = quarters_of(pd.Series([latest])).iloc[0]
    return min(latest_q, before_today, key=parse_quarter)


# --------------------------------------------------------------------------
# Reading and cleaning one source


def _id_columns(role: str, config: Config) -> tuple[str, ...]:
    key = config.join.account_key
    if role in ("opportunities", "outcomes", "history", "feedback"):
        return ("record_id", key, "account_id")
    return (key, "account_id")


def _footer_id(role: str, frame: pd.DataFrame, config: Config) -> str | None:
    for column in _id_columns(role, config):
        if column in frame:
            return column
    return None


def _describe_row(row: pd.Series) -> str:
    text = ", ".join(str(v) for v in row if pd.notna(v)) or "(empty)"
    return text if len(text) <= 80 else text[:77] + "..."


def _drop_rows(frame, drop: pd.Series, role: str, rule: str, log: _Log):
    if drop.any():
        shown = frame[drop].head(50).astype(object).apply(_describe_row, axis=1)
        log.count(role, "(all)", rule, drop.sum(), tuple(shown.unique()[:3]))
    return frame[~drop]


def _clean_field(series, spec: FieldConfig, role, name, log) -> pd.Series:
    kind = spec.kind
    if kind == "numeric":
        values = log.add(role, name, "number text", _clean.clean_numbers(series))
    elif kind == "range":
        values = log.add(role, name, "range midpoint", _clean.clean_ranges(series))
    elif kind == "boolean":
        values = log.add(role, name, "unreadable yes/no", _clean.clean_booleans(series))
    elif kind == "multi":
        cleaned = _clean.clean_multi(series, separator=spec.separator)
        values = log.add(role, name, "multi values split and merged", cleaned)
    else:
        cleaned = _clean.merge_category_variants(series)
        values = log.add(role, name, "case/spacing variants merged", cleaned)
    if spec.valid_range is not None and kind in ("numeric", "range"):
        values = _apply_range(values, spec.valid_range, role, name, log)
    return values


def _apply_range(values, bounds, role, name, log) -> pd.Series:
    low, high = bounds
    outside = pd.Series(False, index=values.index)
    if low is not None:
        outside |= values < low
    if high is not None:
        outside |= values > high
    examples = tuple(str(v) for v in values[outside].unique()[:3])
    log.count(role, name, "outside valid range", outside.sum(), examples)
    return values.where(~outside)


def _typed_column(series, column, role, src, config, log) -> pd.Series:
    spec = config.fields.get(column)
    if column in _id_columns(role, config):
        if config.join.normalize_ids:
            cleaned = _clean.normalize_salesforce_ids(series)
            series = log.add(role, column, "salesforce id 15->18", cleaned)
        return _clean.map_values(series, _clean.normalize_category).astype("str")
    if column in DATE_COLUMNS:
        cleaned = _clean.parse_dates(
            series, dayfirst=src.dayfirst, date_format=src.date_format
        )
        return log.add(role, column, "unparsed dates", cleaned)
    if column == "amount":
        return log.add(role, column, "currency text", _clean.clean_numbers(series))
    if spec is not None and spec.source == role:
        return _clean_field(series, spec, role, column, log)
    if column in ("stage", config.outcome.column, "title", "verdict"):
        return _clean.map_values(series, _clean.normalize_category).astype("str")
    cleaned = _clean.merge_category_variants(series)
    return log.add(role, column, "case/spacing variants merged", cleaned)


def _clean_source(data: SourceData, role: str, config: Config, log: _Log):
    src = config.sources[role]
    frame = data.frame.set_axis(pd.RangeIndex(1, len(data.frame) + 1))
    footer = _clean.find_footer_rows(frame, id_column=_footer_id(role, frame, config))
    # Exact duplicates compare every column of the file, mapped or not.
    repeated = pd.Series(data.duplicated, index=frame.index) & ~footer
    frame = _drop_rows(frame, footer, role, "footer rows dropped", log)
    frame = _drop_rows(frame, repeated[frame.index], role, "exact duplicate rows", log)

    placeholders = {
        column: log.add(
            role,
            column,
            "placeholder as missing",
            _clean.clean_placeholders(frame[column]),
        )
        for column in frame.columns
    }
    frame = pd.DataFrame(placeholders, index=frame.index)

    if config.outcome.rule == "filled" and config.outcome.column in frame:
        frame = frame.assign(**{_FILLED: frame[config.outcome.column].notna()})
    typed = {
        column: _typed_column(frame[column], column, role, src, config, log)
        for column in frame.columns
        if column != _FILLED
    }
    return frame.assign(**typed)


def _load_sources(config: Config, log: _Log):
    frames, fingerprints = {}, {}
    for role, src in config.sources.items():
        path = None if src.format == "sql" else config.source_path(role)
        data = read_source(src, role=role, path=path)
        fingerprints[role] = data.fingerprint
        frames[role] = _clean_source(data, role, config, log)
    return frames, fingerprints


# --------------------------------------------------------------------------
# Records, joins and outcome


def _collapse_repeats(frame: pd.DataFrame, config: Config, log: _Log):
    repeated = frame["record_id"].duplicated(keep="first") & frame["record_id"].notna()
    if not repeated.any():
        return frame
    examples = tuple(frame.loc[repeated, "record_id"].unique()[:3])
    log.count(
        "opportunities",
        "record_id",
        "repeated per product line",
        repeated.sum(),
        examples,
    )
    multi = [
        name
        for name, spec in config.fields.items()
        if spec.kind == "multi" and spec.source == "opportunities" and name in frame
    ]
    order = list(frame.columns)
    grouped = frame.groupby("record_id", sort=False, dropna=False)
    first = grouped.first()
    for name in multi:
        first[name] = grouped[name].agg(_union_multi)
    return first.reset_index()[order]


def _union_multi(values: pd.Series) -> str | float:
    parts = {p for v in values.dropna() for p in str(v).split("|")}
    return "|".join(sorted(parts)) if parts else np.nan


def _prepare_records(frames, config: Config, log: _Log) -> pd.DataFrame:
    opps = frames["opportunities"]
    if "record_id" in opps:
        no_id = opps["record_id"].isna()
        opps = _drop_rows(opps, no_id, "opportunities", "rows without record id", log)
    else:
        ids = pd.Series([f"row-{i}" for i in opps.index], index=opps.index)
        opps = opps.assign(record_id=ids.astype("str"))
    opps = _collapse_repeats(opps.reset_index(drop=True), config, log)
    if "outcomes" in frames:
        opps = _join_outcomes(opps, frames["outcomes"], log)
    return opps


def _join_outcomes(opps: pd.DataFrame, outcomes: pd.DataFrame, log: _Log):
    if "record_id" not in outcomes or "record_id" not in opps:
        raise ConfigError(
            "the outcomes source is joined on record_id: map record_id under "
            "both sources.opportunities.columns and sources.outcomes.columns"
        )
    repeated = outcomes["record_id"].duplicated()
    outcomes = _drop_rows(outcomes, repeated, "outcomes", "repeated record id", log)
    unmatched = ~outcomes["record_id"].isin(opps["record_id"])
    log.count(
        "outcomes",
        "record_id",
        "no matching record",
        unmatched.sum(),
        tuple(outcomes.loc[unmatched, "record_id"].head(3)),
    )
    extra = [c for c in outcomes.columns if c == "record_id" or c not in opps]
    merged = opps.merge(
        outcomes[extra], on="record_id", how="left", validate="one_to_one"
    )
    if _FILLED in merged:
        merged[_FILLED] = merged[_FILLED].fillna(False).astype(bool)
    return merged


def _check_unique_key(accounts: pd.DataFrame, key: str) -> None:
    repeated = accounts[key].dropna()
    repeated = repeated[repeated.duplicated()].unique()
    if len(repeated):
        shown = ", ".join(repr(k) for k in repeated[:10])
        raise DataError(
            f"the accounts source repeats {len(repeated)} value(s) of the join "
            f"key {key!r} after exact duplicates were dropped: {shown}. Each "
            "account must appear once; de-duplicate the accounts export or "
            "join on another key (join.account_key)."
        )


def _join_accounts(frame: pd.DataFrame, accounts: pd.DataFrame, config: Config):
    key = config.join.account_key
    for role, table in (("opportunities", frame), ("accounts", accounts)):
        if key not in table:
            raise ConfigError(
                f"join.account_key is {key!r}, but sources.{role}.columns does "
                f"not map it; columns mapped: {sorted(table.columns)}"
            )
    accounts = accounts.drop(columns=[_FILLED], errors="ignore")
    _check_unique_key(accounts, key)
    owned = {n for n, s in config.fields.items() if s.source == "accounts"}
    keep_opp = [c for c in frame.columns if c == key or c not in owned]
    merged = frame[keep_opp].merge(
        accounts, on=key, how="left", suffixes=("", "__acct"), validate="many_to_one"
    )
    for column in [c for c in merged.columns if c.endswith("__acct")]:
        base = column.removesuffix("__acct")
        merged[base] = merged[base].fillna(merged[column])
        merged = merged.drop(columns=column)
    return merged


def _most_senior(values: pd.Series) -> str | float:
    ranks = [SENIORITY_LEVELS.index(v) for v in values.dropna()]
    return SENIORITY_LEVELS[min(ranks)] if ranks else np.nan


def _mode(values: pd.Series):
    counts = values.dropna().value_counts()
    return counts.index[0] if len(counts) else np.nan


def _contact_aggregator(name: str, spec: FieldConfig | None) -> Callable | str:
    if name == "seniority":
        return _most_senior
    kind = spec.kind if spec is not None else "categorical"
    if kind == "multi" or name == "department":
        return _union_multi
    if kind in ("numeric", "range", "boolean"):
        return "max"
    return _mode


def _aggregate_contacts(contacts: pd.DataFrame, config: Config) -> pd.DataFrame:
    key = config.join.account_key
    if key not in contacts:
        raise ConfigError(
            f"contacts are joined to accounts on {key!r} (join.account_key), "
            "but sources.contacts.columns does not map it; columns mapped: "
            f"{sorted(contacts.columns)}"
        )
    contacts = contacts.drop(columns=[_FILLED], errors="ignore")
    title = "title" if "title" in contacts else "seniority"
    if title in contacts:
        ranked = _clean.map_values(contacts[title], _clean.rank_seniority)
        contacts = contacts.assign(seniority=ranked.astype("str"))
    columns = [c for c in contacts.columns if c not in (key, "title", "account_id")]
    aggs = {c: _contact_aggregator(c, config.fields.get(c)) for c in columns}
    grouped = contacts.dropna(subset=[key]).groupby(key)
    return grouped.agg(aggs).reset_index() if aggs else grouped.size().reset_index()


def _join_contacts(frame: pd.DataFrame, contacts: pd.DataFrame, config: Config):
    per_account = _aggregate_contacts(contacts, config)
    per_account = per_account[
        [
            c
            for c in per_account.columns
            if c == config.join.account_key or c not in frame
        ]
    ]
    return frame.merge(
        per_account, on=config.join.account_key, how="left", validate="many_to_one"
    )


def _value_keys(value) -> set[str]:
    if isinstance(value, bool):
        return set(TRUE_TEXT if value else FALSE_TEXT)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    key = category_key(value)
    return {key} if key is not None else set()


def _keys_of(values) -> set[str]:
    return set().union(*(_value_keys(v) for v in values)) if values else set()


def _stage_outcome(frame: pd.DataFrame, config: Config) -> pd.Series:
    rule = config.outcome
    stage_keys = _clean.map_values(frame[rule.column], category_key)
    outcome = pd.Series(pd.NA, index=frame.index, dtype="str")
    for name, listed in (("won", rule.won), ("lost", rule.lost), ("open", rule.open)):
        hit = stage_keys.isin(_keys_of(listed)) & outcome.isna()
        outcome = outcome.where(~hit, name)
    if rule.unlisted != "error":
        return outcome.fillna(rule.unlisted)
    unlisted = frame.loc[outcome.isna(), rule.column].fillna("(missing)")
    if len(unlisted):
        counts = unlisted.value_counts()
        shown = ", ".join(f"{v!r} ({n})" for v, n in counts.head(15).items())
        raise DataError(
            f"{len(counts)} value(s) of {rule.column!r} are in none of "
            f"outcome.won, outcome.lost or outcome.open: {shown}. Add them to "
            "one of those lists, or set outcome.unlisted to 'open' or 'lost'."
        )
    return outcome


def _check_outcome_column(frame: pd.DataFrame, config: Config) -> None:
    column = config.outcome.column
    if column not in frame and _FILLED not in frame:
        raise ConfigError(
            f"outcome.column is {column!r}, but no source maps a column to "
            f"it; columns mapped: {sorted(c for c in frame.columns if c != _FILLED)}"
        )


def _add_outcome(frame: pd.DataFrame, config: Config) -> pd.DataFrame:
    _check_outcome_column(frame, config)
    rule = config.outcome
    if rule.rule == "filled":
        filled = frame[_FILLED].astype(bool)
        outcome = pd.Series(np.where(filled, "won", "lost"), index=frame.index)
        default_stage = outcome
    else:
        outcome = _stage_outcome(frame, config)
        default_stage = frame[rule.column]
    stage = frame["stage"] if "stage" in frame else default_stage
    stage_keys = _clean.map_values(stage, category_key)
    qualified = stage_keys.isin(_keys_of(rule.qualified)) | outcome.eq("won")
    won = outcome.map({"won": 1.0, "lost": 0.0}).astype("float64")
    frame = frame.drop(columns=[_FILLED], errors="ignore")
    return frame.assign(
        stage=stage.astype("str"),
        outcome=outcome.astype("str"),
        won=won,
        qualified=qualified.astype(bool),
    )


def _check_wins(frame: pd.DataFrame, config: Config) -> None:
    if frame["outcome"].eq("won").any():
        return
    rule = config.outcome
    if rule.rule == "filled":
        detail = (
            f"outcome.rule is 'filled' and {rule.column!r} is empty on every "
            "record; check that the outcomes source joins on record_id"
        )
    else:
        found = frame["stage"].fillna("(missing)").value_counts().head(10)
        detail = (
            f"outcome.won lists {list(rule.won)}, and the values of "
            f"{rule.column!r} found are {dict(found)}; check the spelling in "
            "outcome.won and the column mapped to it"
        )
    raise DataError(f"no record is won: {detail}.")


# --------------------------------------------------------------------------
# Unit of analysis and final shape


def _roll_up_accounts(frame: pd.DataFrame, config: Config, log: _Log):
    no_account = frame["account_id"].isna()
    log.count(
        "opportunities",
        "account_id",
        "records without account dropped",
        no_account.sum(),
        tuple(frame.loc[no_account, "record_id"].head(3)),
    )
    frame = frame[~no_account].sort_values("record_date", kind="stable")
    grouped = frame.groupby("account_id", sort=True)
    status = grouped["outcome"].agg(_account_outcome)
    won_amount = frame["amount"].where(frame["outcome"].eq("won"))
    rest = [c for c in frame.columns if c not in BASE_COLUMNS]
    multi = {n for n, s in config.fields.items() if s.kind == "multi"}
    aggs = {c: (_union_multi if c in multi else "first") for c in rest}
    table = grouped.agg(aggs) if aggs else pd.DataFrame(index=status.index)
    table = table.assign(
        record_date=grouped["record_date"].min(),
        close_date=grouped["close_date"].max(),
        amount=won_amount.groupby(frame["account_id"]).sum(min_count=1),
        stage=status,
        outcome=status,
        won=status.map({"won": 1.0, "lost": 0.0}).astype("float64"),
        qualified=grouped["qualified"].any(),
    )
    table.index.name = "account_id"
    table = table.reset_index()
    return table.assign(record_id=table["account_id"])


def _account_outcome(outcomes: pd.Series) -> str:
    if outcomes.eq("won").any():
        return "won"
    return "lost" if outcomes.eq("lost").all() else "open"


def _finish(frame: pd.DataFrame, config: Config) -> pd.DataFrame:
    key = config.join.account_key
    if "account_id" not in frame:
        account = frame[key] if key in frame else pd.Series(pd.NA, index=frame.index)
        frame = frame.assign(account_id=account)
    for column in ("record_date", "close_date"):
        if column not in frame:
            frame = frame.assign(**{column: pd.NaT})
    if "amount" not in frame:
        frame = frame.assign(amount=np.nan)
    frame = frame.assign(
        record_id=frame["record_id"].astype("str"),
        account_id=frame["account_id"].astype("str"),
        record_date=pd.to_datetime(frame["record_date"]).astype("datetime64[ns]"),
        close_date=pd.to_datetime(frame["close_date"]).astype("datetime64[ns]"),
        amount=frame["amount"].astype("float64"),
    )
    frame = frame.assign(quarter=quarters_of(frame["record_date"]))
    fields = [n for n in config.fields if n in frame]
    others = [c for c in frame.columns if c not in BASE_COLUMNS and c not in fields]
    return frame[[*BASE_COLUMNS, *fields, *others]].reset_index(drop=True)


def _field_specs(config: Config) -> tuple[FieldSpec, ...]:
    return tuple(
        FieldSpec(
            name=name,
            kind=spec.kind,
            label=spec.label or name,
            known_late=spec.known_late,
            source=spec.source,
            valid_range=tuple(spec.valid_range) if spec.valid_range else None,
            decision=spec.decision,
        )
        for name, spec in config.fields.items()
    )


def _check_fields(frame: pd.DataFrame, config: Config) -> None:
    for name, spec in config.fields.items():
        if name not in frame:
            mapped = sorted(config.sources[spec.source].columns)
            raise ConfigError(
                f"field {name!r} is read from source {spec.source!r}, but "
                f"sources.{spec.source}.columns does not map {name!r}"
                f"{' (or title, for seniority)' if name == 'seniority' else ''}; "
                f"columns mapped there: {mapped}"
            )


def _load_side(frames, role: str, columns: tuple[str, ...], log: _Log):
    if role not in frames:
        return None
    frame = frames[role].drop(columns=[_FILLED], errors="ignore")
    required = columns[:3]
    missing = [c for c in required if c not in frame]
    if missing:
        raise ConfigError(
            f"sources.{role}.columns must map {list(required)}; missing "
            f"{missing}; columns mapped: {sorted(frame.columns)}"
        )
    for column in columns[3:]:
        if column not in frame:
            frame = frame.assign(
                **{column: pd.Series(pd.NA, index=frame.index, dtype="str")}
            )
    if role == "feedback":
        frame = frame.assign(verdict=_read_verdicts(frame["verdict"], log))
    return frame[list(columns)].reset_index(drop=True)


def _read_verdicts(verdicts: pd.Series, log: _Log) -> pd.Series:
    keys = verdicts.map(category_key)
    read = keys.map(
        lambda k: next(
            (v for v in VERDICTS if isinstance(k, str) and k.startswith(v)), None
        )
    )
    unread = read.isna() & verdicts.notna()
    log.count(
        "feedback",
        "verdict",
        "unreadable verdict",
        unread.sum(),
        tuple(verdicts[unread].astype(str).unique()[:3]),
    )
    return read.astype("str")


def load_table(config: Config) -> ModelingTable:
    """Read, clean and join the configured sources into a modeling table.

    Parameters
    ----------
    config : Config
        A validated client config (:func:`icp_lib.config.load_config`).

    Returns
    -------
    ModelingTable
        All records (every segment), one row per unit of analysis.

    Raises
    ------
    DataError
        If a source is missing or unreadable, lacks a mapped column, repeats
        an account key, has stage values in no outcome list, or has no won
        record.
    ConfigError
        If the config refers to a column that no source maps.
    """
    log = _Log()
    frames, fingerprints = _load_sources(config, log)
    frame = _prepare_records(frames, config, log)
    if "accounts" in frames:
        frame = _join_accounts(frame, frames["accounts"], config)
    if "contacts" in frames:
        frame = _join_contacts(frame, frames["contacts"], config)
    _check_fields(frame, config)

    frame = _add_outcome(frame, config)
    _check_wins(frame, config)
    frame = _finish(frame, config)
    if config.unit == "account":
        frame = _finish(_roll_up_accounts(frame, config, log), config)
    return ModelingTable(
        frame=frame,
        fields=_field_specs(config),
        cleaning=tuple(log.steps),
        history=_load_side(frames, "history", HISTORY_COLUMNS, log),
        feedback=_load_side(frames, "feedback", FEEDBACK_COLUMNS, log),
        fingerprints=fingerprints,
        has_dates=bool(frame["record_date"].notna().any()),
    )


# --------------------------------------------------------------------------
# Segments


def _condition_mask(column: pd.Series, wanted) -> pd.Series:
    values = wanted if isinstance(wanted, list) else [wanted]
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        numbers = {_condition_number(v) for v in values} - {None}
        return column.isin(numbers)
    keys = column.map(lambda v: _value_keys(v) if pd.notna(v) else set())
    wanted_keys = _keys_of(values)
    return keys.map(lambda k: bool(k & wanted_keys)).astype(bool)


def _condition_number(value) -> float | None:
    flag = parse_bool(value)
    if flag is not None and not isinstance(value, int | float):
        return float(flag)
    return parse_number_text(value)


def select_segment(table: ModelingTable, segment: Segment) -> ModelingTable:
    """Keep the records of one segment.

    Every ``where`` condition must hold: a column equal to a value or in a
    list of values, compared as text ignoring case and spacing (numbers and
    yes/no fields compare as numbers).

    Raises
    ------
    ConfigError
        If a condition names a column the table does not have.
    DataError
        If no record matches.
    """
    frame = table.frame
    mask = pd.Series(True, index=frame.index)
    for column, wanted in segment.where.items():
        if column not in frame:
            raise ConfigError(
                f"segment {segment.name!r} filters on column {column!r}, which "
                f"the table does not have; columns available: {list(frame.columns)}"
            )
        mask &= _condition_mask(frame[column], wanted)
    if not mask.any():
        raise DataError(
            f"segment {segment.name!r} has no records: no row matches "
            f"{dict(segment.where)}; check the values against the data"
        )
    kept = frame[mask].reset_index(drop=True)
    return ModelingTable(
        frame=kept,
        fields=table.fields,
        cleaning=table.cleaning,
        history=_restrict(table.history, kept),
        feedback=_restrict(table.feedback, kept),
        fingerprints=dict(table.fingerprints),
        has_dates=bool(kept["record_date"].notna().any()),
    )


def _restrict(side: pd.DataFrame | None, kept: pd.DataFrame):
    if side is None:
        return None
    return side[side["record_id"].isin(kept["record_id"])].reset_index(drop=True)


# --------------------------------------------------------------------------
# Saving


def _replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    _replace_atomically(path, lambda tmp: frame.to_parquet(tmp, index=False))


def save_table(table: ModelingTable, folder: str | os.PathLike) -> None:
    """Save a modeling table to ``folder`` (parquet files + table.json).

    Files are written to a temporary name and renamed, so a reader never
    sees a half-written file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_parquet(table.frame, folder / "table.parquet")
    for name in ("history", "feedback"):
        side = getattr(table, name)
        if side is not None:
            _write_parquet(side, folder / f"{name}.parquet")
        else:
            (folder / f"{name}.parquet").unlink(missing_ok=True)
    meta = {
        "fields": [asdict(f) for f in table.fields],
        "cleaning": [asdict(s) for s in table.cleaning],
        "fingerprints": table.fingerprints,
        "has_dates": table.has_dates,
    }
    text = json.dumps(meta, indent=2)
    _replace_atomically(folder / "table.json", lambda tmp: tmp.write_text(text))


def read_table(folder: str | os.PathLike) -> ModelingTable:
    """Read a modeling table written by :func:`save_table`.

    Raises
    ------
    DataError
        If the folder does not hold a saved table.
    """
    folder = Path(folder)
    meta_path = folder / "table.json"
    if not meta_path.is_file() or not (folder / "table.parquet").is_file():
        raise DataError(
            f"{folder} holds no saved modeling table (table.json and "
            "table.parquet); write one with save_table"
        )
    meta = json.loads(meta_path.read_text())
    sides = {
        name: pd.read_parquet(folder / f"{name}.parquet")
        if (folder / f"{name}.parquet").is_file()
        else None
        for name in ("history", "feedback")
    }
    fields = tuple(
        FieldSpec(**{**f, "valid_range": _tuple_or_none(f["valid_range"])})
        for f in meta["fields"]
    )
    return ModelingTable(
        frame=pd.read_parquet(folder / "table.parquet"),
        fields=fields,
        cleaning=tuple(
            CleaningStep(**{**s, "examples": tuple(s["examples"])})
            for s in meta["cleaning"]
        ),
        history=sides["history"],
        feedback=sides["feedback"],
        fingerprints=meta["fingerprints"],
        has_dates=meta["has_dates"],
    )


def _tuple_or_none(value):
    return None if value is None else tuple(value)
