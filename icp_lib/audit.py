"""The data audit: what to optimize for, and which fields can be trusted.

:func:`audit_table` runs the audit of one segment's modeling table and
returns an :class:`AuditResult`:

1. The point of optimization. With enough wins in the training window the
   model predicts closed-won; with fewer, it predicts reaching a qualified
   stage over recent months (the window widens as needed); below an absolute
   minimum the segment is too small to model.
2. Per candidate field: fill rates (overall, won, lost, open, by quarter),
   conversion of records with the field filled against records without it
   and against the whole population (Wilson intervals, z tests), and, when
   nearly every record is filled, whether conversion differs across values.
3. Leakage and trust flags, each with its reason in words, and a decision:
   ``use``, ``exclude`` or ``needs_review``.
4. Data quality findings, from the data layer's cleaning log and the frame.

:func:`fields_to_use` turns an audit into the list of fields the model may
use, honouring ``decision`` overrides in the config.

audit.json (schema_version 1)
-----------------------------
``client``, ``segment``, ``created_at``, ``thresholds`` (training and audit
settings used), ``fallbacks`` (list of text), ``evidence`` (``start``,
``end``, ``text``, ``records``, ``measured``: the records fields are judged
on), ``target`` (``target``: won, qualified or too_small; ``reason``;
``counts``: records, closed, won, lost, open, qualified; ``window``:
quarters, start, end, months; ``review_quarter``), ``quality`` (list of
check, column, rows, share, detail, examples) and ``fields``, one per
candidate field in config order: name, label, kind, source, ``fill``
(overall, won, lost, open, closed), ``by_quarter`` (quarter -> fill rate),
``conversion`` (filled, unfilled, all: count, n, rate, low, high),
``lift_test``, ``population_test``, ``value_test`` (method, statistic,
p_value, effect, note), ``test_used``, ``auc``, ``late_share``, ``flags``
(flag, reason), ``decision`` (use, exclude, needs_review),
``decision_reason`` and ``config_decision``. NaN is written as null.
"""

from __future__ import annotations

import difflib
import html
import json
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, fields
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from . import _stats
from ._files import write_text_atomic
from .data import last_complete_quarter, quarter_bounds, training_quarters
from .errors import ConfigError, DataError, FallbackWarning

__all__ = [
    "AuditResult",
    "FieldAudit",
    "Flag",
    "QualityFinding",
    "Rate",
    "TargetChoice",
    "audit_table",
    "fields_to_use",
    "read_audit",
    "segment_table",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
TARGETS = ("won", "qualified", "too_small")
DECISIONS = ("use", "exclude", "needs_review")
FLAGS = (
    "empty",
    "single_value",
    "known_late",
    "filled_late",
    "fill_asymmetry",
    "too_good",
    "sparse",
    "no_lift",
)
# Above this share filled, filled-vs-unfilled is not tested (too few without).
NEARLY_ALL_FILL = 0.95
# Fewest records in a group (filled, unfilled, a level) for it to be tested.
MIN_GROUP = 10
# Share of first fills that came late for a field to be flagged filled late.
LATE_SHARE = 0.5
# Fewest first fills in the field history to judge lateness.
MIN_HISTORY = 5
# Numeric fields are cut into at most this many quantile bins for the value test.
VALUE_BINS = 5
# A multi-value field is tested on its most common values, at most this many.
MAX_MULTI_VALUES = 10
# Category spellings at least this similar (difflib ratio) are reported.
SPELLING_SIMILARITY = 0.88
# Spelling checks: the most common levels checked, the common levels they are
# compared with, and the longest text compared (longer is free text or ids).
MAX_SPELLING_LEVELS = 300
COMMON_LEVELS = 30
MAX_SPELLING_LENGTH = 40
NOT_ENOUGH = "not enough data"


# --------------------------------------------------------------------------
# Result classes
# --------------------------------------------------------------------------


def _to_json(value):
    """Turn dataclasses, tuples, numpy scalars and NaN into plain JSON."""
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _nan(value) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class Rate:
    """A proportion with its Wilson interval (NaN when ``n`` is 0)."""

    count: int
    n: int
    rate: float
    low: float
    high: float

    @classmethod
    def of(cls, count: int, n: int, *, alpha: float = 0.05) -> Rate:
        """Build the rate of ``count`` out of ``n``."""
        low, high = _stats.wilson_interval(count, n, alpha=alpha)
        return cls(int(count), int(n), _stats.safe_ratio(count, n), low, high)

    @classmethod
    def from_json_dict(cls, data: dict) -> Rate:
        """Rebuild a rate written by ``to_json_dict``."""
        return cls(
            int(data["count"]),
            int(data["n"]),
            _nan(data["rate"]),
            _nan(data["low"]),
            _nan(data["high"]),
        )


@dataclass(frozen=True)
class Flag:
    """A leakage or trust flag with its reason in words."""

    flag: str
    reason: str


@dataclass(frozen=True)
class TargetChoice:
    """The point of optimization and the counts behind it.

    Attributes
    ----------
    target : {"won", "qualified", "too_small"}
    reason : str
        The decision in words, with the counts.
    counts : dict
        Records, closed, won, lost, open and qualified in the window.
    window : dict
        ``quarters`` (list), ``start`` and ``end`` (ISO dates, end
        exclusive) and ``months`` (qualified target) of the window used.
    review_quarter : str or None
        The quarter under review; None when the data has no dates.
    """

    target: str
    reason: str
    counts: dict
    window: dict
    review_quarter: str | None


@dataclass(frozen=True)
class FieldAudit:
    """Everything the audit found about one candidate field.

    ``fill`` holds fill rates (``overall``, ``won``, ``lost``, ``open``)
    and ``by_quarter`` maps each quarter to its fill rate. ``conversion``
    maps ``filled``, ``unfilled`` and ``all`` to a :class:`Rate`.
    ``lift_test`` compares filled with unfilled records, ``population_test``
    filled records with the whole population, ``value_test`` conversion
    across the field's values; ``test_used`` says which decided.
    """

    name: str
    label: str
    kind: str
    source: str
    fill: dict
    by_quarter: dict
    conversion: dict
    lift_test: _stats.TestResult
    population_test: _stats.TestResult
    value_test: _stats.TestResult
    test_used: str
    auc: float
    late_share: float
    flags: tuple[Flag, ...]
    decision: str
    decision_reason: str
    config_decision: str | None = None

    @classmethod
    def from_json_dict(cls, data: dict) -> FieldAudit:
        """Rebuild a field audit written by ``to_json_dict``."""
        tests = {
            k: _stats.TestResult.from_json_dict(data[k])
            for k in ("lift_test", "population_test", "value_test")
        }
        return cls(
            **{k: data[k] for k in ("name", "label", "kind", "source")},
            fill={k: _nan(v) for k, v in data["fill"].items()},
            by_quarter={k: _nan(v) for k, v in data["by_quarter"].items()},
            conversion={
                k: Rate.from_json_dict(v) for k, v in data["conversion"].items()
            },
            **tests,
            test_used=data["test_used"],
            auc=_nan(data["auc"]),
            late_share=_nan(data["late_share"]),
            flags=tuple(Flag(**f) for f in data["flags"]),
            decision=data["decision"],
            decision_reason=data["decision_reason"],
            config_decision=data.get("config_decision"),
        )


@dataclass(frozen=True)
class QualityFinding:
    """One data quality finding: what was checked, where, how many rows."""

    check: str
    column: str
    rows: int
    share: float
    detail: str
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditResult:
    """The audit of one segment; written to ``audit.json``.

    Build it with :func:`audit_table`; read a saved one with
    :func:`read_audit` (or :meth:`AuditResult.read`).
    """

    client: str
    segment: str
    target: TargetChoice
    fields: tuple[FieldAudit, ...]
    quality: tuple[QualityFinding, ...]
    evidence: dict = dataclass_field(default_factory=dict)
    fallbacks: tuple[str, ...] = ()
    thresholds: dict = dataclass_field(default_factory=dict)
    created_at: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def review_quarter(self) -> str | None:
        """The quarter under review (None without dates)."""
        return self.target.review_quarter

    def to_json_dict(self) -> dict:
        """Return the audit as plain JSON types (NaN written as null)."""
        return _to_json(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the audit as JSON, atomically; return the path."""
        return _write_json_atomic(self.to_json_dict(), Path(path))

    @classmethod
    def from_json_dict(cls, data: dict) -> AuditResult:
        """Rebuild an audit from the dict written by :meth:`to_json_dict`."""
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise DataError(
                f"audit.json has schema_version {version!r}; this kit reads "
                f"version {SCHEMA_VERSION}. Re-run notebook 01 to rewrite it."
            )
        return cls(
            client=data["client"],
            segment=data["segment"],
            target=TargetChoice(**data["target"]),
            fields=tuple(FieldAudit.from_json_dict(f) for f in data["fields"]),
            quality=tuple(
                QualityFinding(
                    **{**q, "share": _nan(q["share"]), "examples": tuple(q["examples"])}
                )
                for q in data["quality"]
            ),
            evidence=data.get("evidence", {}),
            fallbacks=tuple(data.get("fallbacks", ())),
            thresholds=data.get("thresholds", {}),
            created_at=data.get("created_at", ""),
        )

    @classmethod
    def read(cls, path: str | os.PathLike) -> AuditResult:
        """Read an ``audit.json`` written by :meth:`save`."""
        return read_audit(path)

    def field(self, name: str) -> FieldAudit:
        """Return the audit of field ``name``."""
        for item in self.fields:
            if item.name == name:
                return item
        names = ", ".join(f.name for f in self.fields)
        raise KeyError(f"field {name!r} is not in the audit; fields: {names}")

    def decided(self, decision: str) -> list[str]:
        """Names of the fields with the audit's own ``decision``."""
        return [f.name for f in self.fields if f.decision == decision]

    def field_frame(self) -> pd.DataFrame:
        """One row per field with its fill rates, tests, flags and decision."""
        return pd.DataFrame([_field_row(f) for f in self.fields])

    def fill_frame(self) -> pd.DataFrame:
        """Fill rate by quarter: one row per field (label), one column per quarter."""
        rows = {f.label: f.by_quarter for f in self.fields}
        frame = pd.DataFrame.from_dict(rows, orient="index", dtype=float)
        return frame.reindex(columns=sorted(frame.columns))

    def target_frame(self) -> pd.DataFrame:
        """The counts behind the point of optimization, one row per count."""
        labels = {
            "records": "Records in the window",
            "closed": "Closed (won or lost)",
            "won": "Won",
            "lost": "Lost",
            "open": "Still open",
            "qualified": "Reached a qualified stage (or won)",
        }
        counts = self.target.counts
        rows = [(text, counts.get(key, 0)) for key, text in labels.items()]
        return pd.DataFrame(rows, columns=["Count", "Records"]).set_index("Count")

    def quality_frame(self) -> pd.DataFrame:
        """The data quality findings as a table."""
        cols = ["Check", "Column", "Rows", "Share", "Detail", "Examples"]
        rows = [
            [q.check, q.column, q.rows, q.share, q.detail, "; ".join(q.examples)]
            for q in self.quality
        ]
        return pd.DataFrame(rows, columns=cols)

    def summary_markdown(self) -> str:
        """The plain-language summary that opens the report (Markdown)."""
        return _summary_markdown(self)


def segment_table(table, config, name: str):
    """Return the part of ``table`` in segment ``name`` of the config.

    ``"all"`` means the whole table unless the config defines a segment of
    that name.

    Raises
    ------
    ConfigError
        If the config has no segment ``name``.
    """
    from .data import select_segment

    for segment in config.segments:
        if segment.name == name:
            return select_segment(table, segment)
    if name == "all":
        return table
    names = ", ".join(s.name for s in config.segments)
    raise ConfigError(
        f"segment {name!r} is not in the config; segments defined: {names} "
        "(or 'all' for every record)"
    )


def read_audit(path: str | os.PathLike) -> AuditResult:
    """Read an ``audit.json`` file.

    Raises
    ------
    DataError
        If the file is missing, is not JSON or has another schema version.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"audit file {path} not found; run notebook 01 (the data audit) first"
        ) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"audit file {path} is not valid JSON: {exc}") from None
    return AuditResult.from_json_dict(data)


def _write_json_atomic(data: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    return write_text_atomic(path, text + "\n")


# --------------------------------------------------------------------------
# Point of optimization
# --------------------------------------------------------------------------

_QUARTER_RE = re.compile(r"^\d{4}Q[1-4]$")


def _check_quarter(quarter: str) -> str:
    text = str(quarter).strip().upper()
    if not _QUARTER_RE.match(text):
        raise ConfigError(
            f"quarter must look like '2026Q3' (year, Q, 1 to 4); found {quarter!r}"
        )
    return text


def _quarter_start(quarter: str) -> pd.Timestamp:
    return quarter_bounds(quarter)[0]


def _has_dates(table, frame: pd.DataFrame) -> bool:
    dated = frame["record_date"].notna().any() if "record_date" in frame else False
    return bool(getattr(table, "has_dates", True) and dated)


def _resolve_quarter(table, quarter: str | None, dated: bool) -> str | None:
    checked = _check_quarter(quarter) if quarter else None
    if not dated:
        return None  # without dates there are no quarters to window by
    return checked or last_complete_quarter(table)


def _count_outcomes(frame: pd.DataFrame) -> dict:
    won = frame["won"]
    return {
        "records": len(frame),
        "closed": int(won.notna().sum()),
        "won": int((won == 1).sum()),
        "lost": int((won == 0).sum()),
        "open": int((frame["outcome"] == "open").sum()),
        "qualified": int(frame["qualified"].fillna(False).astype(bool).sum()),
    }


def _quarter_window(frame: pd.DataFrame, review_q: str | None, n: int):
    """Mask and description of the training window (all records without dates)."""
    if review_q is None:
        mask = pd.Series(True, index=frame.index)
        return mask, {"quarters": [], "start": None, "end": None, "months": None}
    quarters = training_quarters(review_q, n)
    mask = frame["quarter"].isin(quarters).fillna(False).astype(bool)
    window = {
        "quarters": quarters,
        "start": _quarter_start(quarters[0]).date().isoformat(),
        "end": _quarter_start(review_q).date().isoformat(),
        "months": None,
    }
    return mask, window


def _month_windows(frame: pd.DataFrame, review_q: str | None, step: int):
    """Widening windows of recent months before the review quarter."""
    if review_q is None:
        yield (
            pd.Series(True, index=frame.index),
            {"quarters": [], "start": None, "end": None, "months": None},
        )
        return
    end = _quarter_start(review_q)
    first = frame["record_date"].min()
    for months in range(step, 37, step):
        start = end - pd.DateOffset(months=months)
        dates = frame["record_date"]
        mask = ((dates >= start) & (dates < end)).fillna(False).astype(bool)
        window = {
            "quarters": [],
            "start": start.date().isoformat(),
            "end": end.date().isoformat(),
            "months": months,
        }
        yield mask, window
        if pd.isna(first) or start <= first:
            return


def _window_text(window: dict) -> str:
    if window["months"]:
        return f"the {window['months']} months before {window['end']}"
    if window["quarters"]:
        q = window["quarters"]
        return f"the training window {q[0]} to {q[-1]} ({len(q)} quarters)"
    return "all records (the data has no usable dates)"


def _choose_target(frame, *, config, review_q):
    """Decide the point of optimization; return it with the window mask."""
    tr = config.training
    mask, window = _quarter_window(frame, review_q, tr.quarters)
    counts = _count_outcomes(frame[mask])
    enough_won = (
        counts["won"] >= tr.min_wins
        and counts["lost"] >= tr.min_outcomes
        and counts["closed"] >= tr.min_records
    )
    if enough_won:
        reason = (
            f"{counts['won']:,} wins and {counts['lost']:,} losses among "
            f"{counts['closed']:,} closed records in {_window_text(window)}; with "
            f"at least {tr.min_wins} wins the model predicts closed-won. "
            f"{counts['open']:,} records still open are shown but never counted "
            "as lost."
        )
        return TargetChoice("won", reason, counts, window, review_q), mask
    return _choose_qualified(
        frame, counts, window, mask, config=config, review_q=review_q
    )


def _qualified_window(frame, *, config, review_q):
    """The shortest window of recent months with enough qualified records."""
    tr = config.training
    for found in _month_windows(frame, review_q, tr.qualified_months):
        counts = _count_outcomes(frame[found[0]])
        others = counts["records"] - counts["qualified"]
        if counts["qualified"] >= tr.min_wins and others >= tr.min_outcomes:
            break
    return *found, counts


def _too_small(short: str, why: str, won_counts, won_window, won_mask, review_q):
    reason = (
        f"{short}; {why}. The segment is too small to model: the later "
        "notebooks say so instead of fitting."
    )
    choice = TargetChoice("too_small", reason, won_counts, won_window, review_q)
    return choice, won_mask


def _choose_qualified(frame, won_counts, won_window, won_mask, *, config, review_q):
    tr = config.training
    short = (
        f"{won_counts['won']:,} wins and {won_counts['lost']:,} losses in "
        f"{_window_text(won_window)} are too few to optimize for closed-won "
        f"(at least {tr.min_wins} wins, {tr.min_outcomes} losses and "
        f"{tr.min_records} closed records are needed)"
    )
    small = (won_counts, won_window, won_mask, review_q)
    if not config.outcome.qualified:
        why = (
            "the config names no qualified stages (outcome.qualified), so there "
            "is no earlier milestone to optimize for instead"
        )
        return _too_small(short, why, *small)

    mask, window, counts = _qualified_window(frame, config=config, review_q=review_q)
    stages = ", ".join(str(s) for s in config.outcome.qualified)
    detail = (
        f"{counts['qualified']:,} of {counts['records']:,} records in "
        f"{_window_text(window)} reached a qualified stage ({stages}) or were won"
    )
    others = counts["records"] - counts["qualified"]
    usable = (
        min(counts["qualified"], others) >= tr.min_outcomes
        and counts["records"] >= tr.min_records
    )
    if not usable:
        why = (
            f"and {detail}, where at least {tr.min_outcomes} qualified, "
            f"{tr.min_outcomes} not qualified and {tr.min_records} records are "
            "needed"
        )
        return _too_small(short, why, *small)
    rough = (
        ""
        if counts["qualified"] >= tr.min_wins
        else f" That is fewer than the {tr.min_wins} aimed for: results are rough."
    )
    reason = (
        f"{short}. The model predicts reaching a qualified stage instead: "
        f"{detail}.{rough}"
    )
    return TargetChoice("qualified", reason, counts, window, review_q), mask


# --------------------------------------------------------------------------
# Per-field statistics
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """What every field audit needs, computed once per segment."""

    window: pd.DataFrame  # records fields are judged on (all outcomes)
    pop: pd.DataFrame  # of those, records whose conversion is measured
    y: pd.Series  # outcome of pop: 1.0 converted, 0.0 not
    history_frame: pd.DataFrame  # segment records up to the review quarter
    history: pd.DataFrame | None
    late_stages: frozenset
    config: object


def _is_filled(series: pd.Series) -> pd.Series:
    filled = series.notna()
    if not (pd.api.types.is_numeric_dtype(series) or series.dtype == bool):
        text = series.astype("object").where(filled, "")
        filled = filled & (text.map(lambda v: str(v).strip() != ""))
    return filled.astype(bool)


def _fill_rates(name: str, ctx: _Context) -> dict:
    filled = _is_filled(ctx.window[name])
    outcome = ctx.window["outcome"]
    rates = {"overall": _stats.safe_ratio(filled.sum(), len(filled))}
    for group in ("won", "lost", "open"):
        part = filled[outcome == group]
        rates[group] = _stats.safe_ratio(part.sum(), len(part))
    rates["closed"] = _stats.safe_ratio(
        filled[outcome != "open"].sum(), int((outcome != "open").sum())
    )
    return rates


def _fill_by_quarter(name: str, ctx: _Context) -> dict:
    frame = ctx.history_frame
    dated = frame["quarter"].notna()
    filled = _is_filled(frame[name])[dated]
    rates = filled.groupby(frame["quarter"][dated].astype(str)).mean()
    return {str(q): float(r) for q, r in rates.sort_index().items()}


def _conversion(filled: pd.Series, y: pd.Series, alpha: float) -> dict:
    f = filled.to_numpy(bool)
    yv = y.to_numpy(float)
    return {
        "filled": Rate.of(yv[f].sum(), f.sum(), alpha=alpha),
        "unfilled": Rate.of(yv[~f].sum(), (~f).sum(), alpha=alpha),
        "all": Rate.of(yv.sum(), len(yv), alpha=alpha),
    }


def _lift_test(conv: dict, *, sparse: bool) -> _stats.TestResult:
    """Filled against unfilled records.

    For a sparse field the test is one-sided: enrichment that covers few
    records earns its place only if the records it covers convert better.
    """
    filled, unfilled = conv["filled"], conv["unfilled"]
    method = "two-proportion z test"
    total = filled.n + unfilled.n
    if total and unfilled.n / total < 1 - NEARLY_ALL_FILL:
        note = "nearly every record is filled; nothing to compare against"
        return _stats.TestResult(method, math.nan, math.nan, math.nan, note)
    if min(filled.n, unfilled.n) < MIN_GROUP:
        note = f"fewer than {MIN_GROUP} records with or without the field"
        return _stats.TestResult(method, math.nan, math.nan, math.nan, note)
    test = _stats.one_sided_proportion_test if sparse else _stats.two_proportion_test
    return test(filled.count, filled.n, unfilled.count, unfilled.n)


def _pool_rare(groups: pd.Series) -> pd.Series:
    counts = groups.value_counts()
    rare = counts.index[counts < MIN_GROUP]
    return groups.where(~groups.isin(rare), "(other)")


def _value_groups(values: pd.Series, kind: str) -> pd.Series:
    if kind not in ("numeric", "range"):
        return _pool_rare(values.astype(str))
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.nunique() <= VALUE_BINS:
        return numbers.astype(str)
    n_bins = min(VALUE_BINS, len(numbers) // MIN_GROUP)
    if n_bins < 2:
        return pd.Series("all", index=numbers.index)
    bins = pd.qcut(numbers, q=n_bins, duplicates="drop").astype(str)
    if bins.nunique() >= 2:
        return bins
    # one value holds nearly every record (like 999 for "never contacted"):
    # compare that value with all the others
    mode = numbers.mode().iloc[0]
    return pd.Series(np.where(numbers == mode, f"= {mode:g}", f"!= {mode:g}"))


def _value_test(values: pd.Series, y: pd.Series, kind: str) -> _stats.TestResult:
    """Does conversion differ across the values of the filled records?"""
    if kind == "multi":
        return _multi_value_test(values, y)
    groups = _value_groups(values, kind)
    agg = y.groupby(groups.to_numpy()).agg(["sum", "count"])
    agg = agg[agg["count"] >= MIN_GROUP]  # tiny groups make the test unreliable
    return _stats.chi_square_test(agg["sum"], agg["count"])


def _multi_value_test(values: pd.Series, y: pd.Series) -> _stats.TestResult:
    method = "presence of each common value (z tests, Bonferroni)"
    items = values.astype(str).str.split("|")
    counts = items.explode().value_counts()
    n = len(values)
    common = [v for v, c in counts.items() if MIN_GROUP <= c <= n - MIN_GROUP]
    common = common[:MAX_MULTI_VALUES]
    tests = []
    for value in common:
        has = items.map(lambda xs, v=value: v in xs).to_numpy(bool)
        yv = y.to_numpy(float)
        tests.append(
            _stats.two_proportion_test(
                yv[has].sum(), has.sum(), yv[~has].sum(), (~has).sum()
            )
        )
    tests = [t for t in tests if t.defined]
    if not tests:
        note = (
            f"no value is present on at least {MIN_GROUP} records and absent on as many"
        )
        return _stats.TestResult(method, math.nan, math.nan, math.nan, note)
    best = min(tests, key=lambda t: t.p_value)
    p = min(1.0, best.p_value * len(tests))
    return _stats.TestResult(method, best.statistic, p, best.effect)


def _normalize_stage(value) -> str:
    return " ".join(str(value).split()).casefold()


def _default_late_stages(config) -> frozenset:
    if config.audit.late_stages:
        stages = config.audit.late_stages
    else:
        out = config.outcome
        later = out.qualified if out.qualified else out.open[1:]
        stages = [*later, *out.won, *out.lost]
    return frozenset(_normalize_stage(s) for s in stages)


def _late_fills(name: str, label: str, ctx: _Context) -> pd.Series:
    """For each record's first fill of the field: was it late? (bool Series)."""
    history = ctx.history
    if history is None or history.empty or "field" not in history:
        return pd.Series(dtype=bool)
    keys = {name.casefold(), label.casefold()}
    mine = history[history["field"].astype(str).str.casefold().isin(keys)]
    dates = ctx.history_frame.set_index("record_id")["record_date"]
    mine = mine[mine["record_id"].isin(dates.index)]
    if mine.empty:
        return pd.Series(dtype=bool)
    first = mine.sort_values("changed_at").groupby("record_id").head(1)
    stage = first.get("stage", pd.Series(pd.NA, index=first.index))
    by_stage = stage.map(
        lambda s: not pd.isna(s) and _normalize_stage(s) in ctx.late_stages
    )
    delay = (
        pd.to_datetime(first["changed_at"]) - first["record_id"].map(dates).to_numpy()
    )
    limit = pd.Timedelta(days=ctx.config.audit.late_days)
    by_days = (delay > limit).fillna(False)
    return (by_stage.astype(bool) | by_days.astype(bool)).set_axis(first["record_id"])


# --------------------------------------------------------------------------
# Flags and decisions
# --------------------------------------------------------------------------


def _pct(value: float) -> str:
    return NOT_ENOUGH if value is None or math.isnan(value) else f"{value:.0%}"


def _p_text(test: _stats.TestResult) -> str:
    if not test.defined:
        return f"{test.method}: {test.note or NOT_ENOUGH}"
    return f"{test.method}, p = {test.p_value:.3g}"


def _emptiness_flags(name: str, ctx: _Context, fill: dict) -> list[Flag]:
    filled = _is_filled(ctx.window[name])
    if not filled.any():
        where = (
            "anywhere"
            if not _is_filled(ctx.history_frame[name]).any()
            else ("in the window used")
        )
        return [Flag("empty", f"never filled {where}; nothing to learn from it")]
    values = ctx.window[name][filled]
    if values.nunique() == 1 and fill["overall"] >= NEARLY_ALL_FILL:
        value = str(values.iloc[0])[:40]
        reason = (
            f"every filled record has the same value ('{value}'); "
            "it cannot tell records apart"
        )
        return [Flag("single_value", reason)]
    return []


def _late_flags(spec, late: pd.Series, ctx: _Context) -> list[Flag]:
    flags = []
    if spec.known_late:
        flags.append(
            Flag(
                "known_late",
                "the config marks it as filled late in the sales cycle (known_late), "
                "so it is not known when a record is scored",
            )
        )
    if len(late) >= MIN_HISTORY and late.mean() >= LATE_SHARE:
        stages = ", ".join(sorted(ctx.late_stages)) or "a later stage"
        flags.append(
            Flag(
                "filled_late",
                f"the field history shows {late.mean():.0%} of {len(late):,} first "
                f"fills came after the record reached a later stage ({stages}) "
                f"or more than {ctx.config.audit.late_days} days after its "
                "record date",
            )
        )
    return flags


def _asymmetric(hi: pd.Series, lo: pd.Series, ratio: float, alpha: float) -> bool:
    """Is ``hi`` filled at least ``ratio`` times as often as ``lo``, significantly?"""
    if len(hi) < MIN_GROUP or len(lo) < MIN_GROUP:
        return False
    rate_hi, rate_lo = hi.mean(), lo.mean()
    if rate_hi < ratio * rate_lo or rate_hi == 0:
        return False
    test = _stats.two_proportion_test(hi.sum(), len(hi), lo.sum(), len(lo))
    return test.significant(alpha)


def _asymmetry_flags(name: str, ctx: _Context) -> list[Flag]:
    audit = ctx.config.audit
    filled = _is_filled(ctx.window[name])
    outcome = ctx.window["outcome"]
    groups = {k: filled[outcome == k] for k in ("won", "lost", "open")}
    closed = filled[outcome != "open"]
    pairs = [
        ("won", "lost", groups["won"], groups["lost"]),
        ("lost", "won", groups["lost"], groups["won"]),
        ("closed", "still-open", closed, groups["open"]),
    ]
    for hi_name, lo_name, hi, lo in pairs:
        if _asymmetric(hi, lo, audit.asymmetry_ratio, audit.alpha):
            why = (
                "it seems filled as a deal progresses, so it may be missing when "
                "a new record is scored"
                if hi_name == "closed"
                else "it seems filled because of the outcome"
            )
            reason = (
                f"filled on {hi.mean():.0%} of {hi_name} records but only "
                f"{lo.mean():.0%} of {lo_name} ones (a ratio of "
                f"{audit.asymmetry_ratio:g} or more is flagged): {why}"
            )
            return [Flag("fill_asymmetry", reason)]
    return []


def _relevance(fill: float, lift, value, *, sparse_fill: float, alpha: float):
    """Which tests decide whether the field matters; is one significant?"""
    sparse = not math.isnan(fill) and fill < sparse_fill
    candidates = [lift] if sparse else [lift, value]
    used = [t for t in candidates if t.defined]
    significant = any(t.significant(alpha) for t in used)
    if not used:
        text = "none (" + NOT_ENOUGH + ")"
    else:
        text = " and ".join(
            "filled vs not filled" if t is lift else "across values" for t in used
        )
    return sparse, significant, text


def _relevance_flags(fill, lift, value, auc, ctx: _Context, label: str) -> list[Flag]:
    audit = ctx.config.audit
    sparse, significant, _ = _relevance(
        fill, lift, value, sparse_fill=audit.sparse_fill, alpha=audit.alpha
    )
    flags = []
    if not math.isnan(auc) and auc >= audit.too_good_auc:
        flags.append(
            Flag(
                "too_good",
                f"{label} alone separates won from lost almost perfectly (AUC "
                f"{auc:.2f}, threshold {audit.too_good_auc:g}); a person should "
                "confirm it is known before a deal closes",
            )
        )
    if sparse and not significant:
        flags.append(
            Flag(
                "sparse",
                f"filled on only {_pct(fill)} of records (below "
                f"{audit.sparse_fill:.0%}) and records with it filled do not convert "
                f"significantly better ({_p_text(lift)}); not used until its "
                "enrichment improves",
            )
        )
    elif not significant:
        tests = "; ".join(_p_text(t) for t in (lift, value))
        flags.append(
            Flag(
                "no_lift",
                "conversion does not differ significantly between records with and "
                f"without it, nor across its values ({tests})",
            )
        )
    return flags


_EXCLUDING = (
    "empty",
    "single_value",
    "known_late",
    "filled_late",
    "fill_asymmetry",
    "sparse",
    "no_lift",
)


def _use_reason(lift, value, alpha: float) -> str:
    parts = []
    if lift.significant(alpha):
        how = "better than" if "one-sided" in lift.method else "differently from"
        parts.append(
            f"records with it filled convert {how} records without it ({_p_text(lift)})"
        )
    if value.significant(alpha):
        parts.append(f"conversion differs across its values ({_p_text(value)})")
    return " and ".join(parts)


def _decide(flags: list[Flag], lift, value, alpha: float) -> tuple[str, str]:
    order = {name: k for k, name in enumerate(_EXCLUDING)}
    excluding = sorted(
        (f for f in flags if f.flag in order), key=lambda f: order[f.flag]
    )
    if excluding:
        reason = excluding[0].reason
        others = [f.flag.replace("_", " ") for f in excluding[1:]]
        if others:
            reason += f" (also flagged: {', '.join(others)})"
        return "exclude", reason
    if any(f.flag == "too_good" for f in flags):
        return "needs_review", next(f.reason for f in flags if f.flag == "too_good")
    return "use", _use_reason(lift, value, alpha)


def _audit_field(spec, ctx: _Context) -> FieldAudit:
    alpha = ctx.config.audit.alpha
    name = spec.name
    fill = _fill_rates(name, ctx)
    filled_pop = _is_filled(ctx.pop[name])
    conv = _conversion(filled_pop, ctx.y, alpha)
    sparse = fill["overall"] < ctx.config.audit.sparse_fill
    lift = _lift_test(conv, sparse=sparse)
    population = _stats.one_sample_proportion_test(
        conv["filled"].count, conv["filled"].n, conv["all"].rate
    )
    value = _value_test(ctx.pop[name][filled_pop], ctx.y[filled_pop], spec.kind)
    auc = _stats.single_field_auc(ctx.pop[name], ctx.y, kind=spec.kind)
    late = _late_fills(name, spec.label, ctx)

    flags = _emptiness_flags(name, ctx, fill)
    flags += _late_flags(spec, late, ctx)
    flags += _asymmetry_flags(name, ctx)
    if not any(f.flag in ("empty", "single_value") for f in flags):
        flags += _relevance_flags(fill["overall"], lift, value, auc, ctx, spec.label)
    _, _, test_used = _relevance(
        fill["overall"],
        lift,
        value,
        sparse_fill=ctx.config.audit.sparse_fill,
        alpha=alpha,
    )
    decision, reason = _decide(flags, lift, value, alpha)
    return FieldAudit(
        name=name,
        label=spec.label,
        kind=spec.kind,
        source=spec.source,
        fill=fill,
        by_quarter=_fill_by_quarter(name, ctx),
        conversion=conv,
        lift_test=lift,
        population_test=population,
        value_test=value,
        test_used=test_used,
        auc=auc,
        late_share=float(late.mean()) if len(late) else math.nan,
        flags=tuple(flags),
        decision=decision,
        decision_reason=reason,
        config_decision=spec.decision,
    )


# --------------------------------------------------------------------------
# Data quality
# --------------------------------------------------------------------------


def _finding(check, column, rows, total, detail, examples=()) -> QualityFinding:
    share = _stats.safe_ratio(rows, total)
    examples = tuple(str(e)[:80] for e in list(examples)[:3])
    return QualityFinding(check, column, int(rows), share, detail, examples)


def _cleaning_findings(table) -> list[QualityFinding]:
    # counts are of source rows, for every segment: no share of this segment
    return [
        _finding(
            step.rule,
            step.column,
            step.rows,
            0,
            f"cleaned while reading {step.source} (rows of the whole source)",
            step.examples,
        )
        for step in getattr(table, "cleaning", ()) or ()
        if step.rows
    ]


def _duplicate_findings(frame: pd.DataFrame) -> list[QualityFinding]:
    dup = frame["record_id"].duplicated(keep=False)
    if not dup.any():
        return []
    ids = frame["record_id"][dup].astype(str).unique()
    return [
        _finding(
            "duplicate record ids",
            "record_id",
            dup.sum(),
            len(frame),
            "the same record id appears on more than one row",
            ids,
        )
    ]


def _spelling_key(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.casefold())


def _looks_alike(a: str, b: str) -> bool:
    if a == b:
        return True
    if min(len(a), len(b)) < 5 or max(len(a), len(b)) > MAX_SPELLING_LENGTH:
        return False
    matcher = difflib.SequenceMatcher(None, a, b)
    return (
        matcher.real_quick_ratio() >= SPELLING_SIMILARITY
        and matcher.quick_ratio() >= SPELLING_SIMILARITY
        and matcher.ratio() >= SPELLING_SIMILARITY
    )


def _similar_pairs(counts: pd.Series):
    """Pairs (rare, common) of levels that look like variants of one value.

    Each level is compared with the more common levels among the first
    ``COMMON_LEVELS``: a typo is a rare spelling of a common value.
    """
    levels = [str(v) for v in counts.index[:MAX_SPELLING_LEVELS]]
    keys = [_spelling_key(v) for v in levels]
    for j in range(1, len(levels)):
        for i in range(min(j, COMMON_LEVELS)):
            if _looks_alike(keys[i], keys[j]):
                yield levels[j], levels[i]
                break


def _variant_findings(frame: pd.DataFrame, specs) -> list[QualityFinding]:
    findings = []
    for spec in specs:
        if spec.kind not in ("categorical", "multi"):
            continue
        values = frame[spec.name].dropna().astype(str)
        if spec.kind == "multi":
            values = values.str.split("|").explode()
        counts = values.value_counts()
        pairs = list(_similar_pairs(counts))
        if pairs:
            rows = sum(int(counts[rare]) for rare, _ in pairs)
            examples = [f"'{rare}' ~ '{common}'" for rare, common in pairs]
            findings.append(
                _finding(
                    "category variants (spelling)",
                    spec.name,
                    rows,
                    len(frame),
                    f"{len(pairs)} values look like variants of a more common "
                    "spelling; map them in the data or the config if they are the same",
                    examples,
                )
            )
    return findings


def _range_findings(frame: pd.DataFrame, specs) -> list[QualityFinding]:
    findings = []
    for spec in specs:
        if spec.kind not in ("numeric", "range") or not spec.valid_range:
            continue
        low, high = spec.valid_range
        values = pd.to_numeric(frame[spec.name], errors="coerce")
        bad = pd.Series(False, index=frame.index)
        if low is not None:
            bad |= (values < low).fillna(False)
        if high is not None:
            bad |= (values > high).fillna(False)
        if bad.any():
            findings.append(
                _finding(
                    "numbers out of range",
                    spec.name,
                    bad.sum(),
                    len(frame),
                    f"outside the valid range {low} to {high} set in the config",
                    values[bad].astype(str).unique(),
                )
            )
    return findings


def _date_findings(frame: pd.DataFrame, now: pd.Timestamp) -> list[QualityFinding]:
    created, closed = frame["record_date"], frame["close_date"]
    total = len(frame)
    findings = []
    before = (closed < created).fillna(False).astype(bool)
    if before.any():
        findings.append(
            _finding(
                "close date before create date",
                "close_date",
                before.sum(),
                total,
                "these records closed before they were created; check the date columns",
                frame["record_id"][before].astype(str),
            )
        )
    future = (created > now).fillna(False) | (
        (closed > now).fillna(False) & (frame["outcome"] != "open")
    )
    if future.any():
        findings.append(
            _finding(
                "dates in the future",
                "record_date/close_date",
                future.sum(),
                total,
                f"dated after today ({now.date().isoformat()})",
                frame["record_id"][future.astype(bool)].astype(str),
            )
        )
    missing = created.isna()
    if missing.any():
        findings.append(
            _finding(
                "missing record dates",
                "record_date",
                missing.sum(),
                total,
                "these records have no date and are left out of every time window",
            )
        )
    return findings


def _open_finding(frame: pd.DataFrame) -> list[QualityFinding]:
    is_open = frame["outcome"] == "open"
    return [
        _finding(
            "still open",
            "outcome",
            is_open.sum(),
            len(frame),
            "open records are counted and shown, never treated as lost",
        )
    ]


def _quality_findings(table, frame: pd.DataFrame, now) -> list[QualityFinding]:
    return [
        *_cleaning_findings(table),
        *_duplicate_findings(frame),
        *_variant_findings(frame, table.fields),
        *_range_findings(frame, table.fields),
        *_date_findings(frame, now),
        *_open_finding(frame),
    ]


# --------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------

REQUIRED_COLUMNS = (
    "record_id",
    "record_date",
    "close_date",
    "outcome",
    "won",
    "qualified",
    "quarter",
)


def _check_table(table) -> None:
    frame = table.frame
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    missing += [f.name for f in table.fields if f.name not in frame.columns]
    if missing:
        raise DataError(
            f"the modeling table lacks column(s) {missing}; columns present: "
            f"{list(frame.columns)}. Build the table with icp_lib.load_table."
        )


def _evidence(frame: pd.DataFrame, review_q: str | None):
    """Mask and description of the records every field is judged on.

    That is all records dated before the review quarter (all records when the
    data has no dates): more history gives the tests more power than the
    training window alone, which only decides the point of optimization.
    """
    if review_q is None:
        mask = pd.Series(True, index=frame.index)
        return mask, {"start": None, "end": None, "text": "all records"}
    dated = frame["quarter"].notna()
    before = frame["quarter"].astype(str) < review_q
    mask = (dated & before).astype(bool)
    first = frame["record_date"][mask].min()
    start = None if pd.isna(first) else first.date().isoformat()
    end = _quarter_start(review_q).date().isoformat()
    return mask, {"start": start, "end": end, "text": f"all records before {review_q}"}


def _population(frame, mask, target):
    window = frame[mask]
    if target == "qualified":
        y = window["qualified"].fillna(False).astype(float)
        return window, window, y
    pop = window[window["won"].notna()]
    return window, pop, pop["won"].astype(float)


def _history_frame(frame: pd.DataFrame, review_q: str | None) -> pd.DataFrame:
    if review_q is None:
        return frame
    keep = frame["quarter"].isna() | (frame["quarter"].astype(str) <= review_q)
    return frame[keep.astype(bool)]


def _fallback(message: str, fallbacks: list[str]) -> None:
    warnings.warn(message, FallbackWarning, stacklevel=3)
    fallbacks.append(message)


def audit_table(
    table,
    *,
    config,
    quarter: str | None = None,
    segment: str = "all",
) -> AuditResult:
    """Audit one segment's modeling table.

    Parameters
    ----------
    table : ModelingTable
        The segment's table (see :func:`icp_lib.data.select_segment`).
    config : Config
        The client config; ``training`` and ``audit`` hold the thresholds.
    quarter : str, optional
        The review quarter, e.g. ``"2026Q3"``; the training window is the
        ``config.training.quarters`` quarters before it. Default: the last
        complete quarter in the data.
    segment : str, default "all"
        The segment's name, recorded in the result.

    Returns
    -------
    AuditResult
        The point of optimization, one :class:`FieldAudit` per candidate
        field (in config order) and the data quality findings.

    Raises
    ------
    ConfigError
        If ``quarter`` is not like ``"2026Q3"``.
    DataError
        If the table lacks a canonical column or a candidate field.

    Warns
    -----
    FallbackWarning
        When the data has no dates (all records are used) or the model must
        optimize for qualified records; both are recorded in ``fallbacks``.
    """
    _check_table(table)
    frame = table.frame.reset_index(drop=True)
    fallbacks: list[str] = []
    dated = _has_dates(table, frame)
    if not dated:
        _fallback(
            "the data has no usable record dates: the audit uses all records and "
            "no training window; a quarterly review needs dates",
            fallbacks,
        )
    review_q = _resolve_quarter(table, quarter, dated)
    choice, mask = _choose_target(frame, config=config, review_q=review_q)
    if choice.target != "won":
        _fallback(f"point of optimization: {choice.target}. {choice.reason}", fallbacks)
    logger.info("segment %s: target %s", segment, choice.target)

    ev_mask, evidence = _evidence(frame, review_q)
    window, pop, y = _population(frame, ev_mask, choice.target)
    evidence |= {"records": len(window), "measured": len(pop)}
    ctx = _Context(
        window=window.reset_index(drop=True),
        pop=pop.reset_index(drop=True),
        y=y.reset_index(drop=True),
        history_frame=_history_frame(frame, review_q),
        history=table.history,
        late_stages=_default_late_stages(config),
        config=config,
    )
    now = pd.Timestamp.now(tz=None).normalize()
    return AuditResult(
        client=config.client,
        segment=segment,
        target=choice,
        fields=tuple(_audit_field(spec, ctx) for spec in table.fields),
        quality=tuple(_quality_findings(table, frame, now)),
        evidence=evidence,
        fallbacks=tuple(fallbacks),
        thresholds={**config.training.model_dump(), **config.audit.model_dump()},
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


# --------------------------------------------------------------------------
# Fields the model may use
# --------------------------------------------------------------------------


def _overrides(table_or_fields) -> dict[str, str]:
    if table_or_fields is None:
        return {}
    if isinstance(getattr(table_or_fields, "fields", None), dict):  # a Config
        items = table_or_fields.fields.items()
        return {name: f.decision for name, f in items if f.decision}
    specs = getattr(table_or_fields, "fields", table_or_fields)  # a ModelingTable
    if isinstance(specs, dict):
        return {k: v for k, v in specs.items() if v}
    return {s.name: s.decision for s in specs if getattr(s, "decision", None)}


def fields_to_use(audit, table_or_fields=None) -> list[str]:
    """Names of the fields the model may use, in config order.

    A field is used when the audit decided ``use``, unless the config
    overrides the decision by name (``decision: use`` or ``exclude`` under
    the field in the config). ``needs_review`` fields are left out until a
    person sets ``decision: use``.

    Parameters
    ----------
    audit : AuditResult or dict
        The audit, or the dict read from ``audit.json``.
    table_or_fields : ModelingTable, Config, iterable of FieldSpec, dict, optional
        Where the overrides come from; a dict maps field names to ``"use"``
        or ``"exclude"``. Default: the overrides recorded in the audit.

    Returns
    -------
    list of str

    Examples
    --------
    >>> fields_to_use({"fields": [{"name": "industry", "decision": "use"},
    ...                           {"name": "budget", "decision": "exclude"}]},
    ...               {"budget": "use"})
    ['industry', 'budget']
    """
    if isinstance(audit, AuditResult):
        rows = [(f.name, f.decision, f.config_decision) for f in audit.fields]
    else:
        rows = [
            (f["name"], f["decision"], f.get("config_decision"))
            for f in audit["fields"]
        ]
    overrides = _overrides(table_or_fields)
    chosen = []
    for name, decision, recorded in rows:
        final = overrides.get(name) or (None if table_or_fields else recorded)
        if (final or decision) == "use":
            chosen.append(name)
    return chosen


# --------------------------------------------------------------------------
# Report text
# --------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~$])")


def escape_markdown(text) -> str:
    """Escape ``text`` for Markdown rendered as HTML (data values are untrusted)."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))


_TARGET_TITLES = {
    "won": "closed-won opportunities",
    "qualified": "reaching a qualified stage",
    "too_small": "none: the segment is too small to model",
}


def _field_line(item: FieldAudit) -> str:
    return (
        f"- **{escape_markdown(item.label)}**: {escape_markdown(item.decision_reason)}"
    )


def _summary_fields(result: AuditResult) -> list[str]:
    lines = []
    groups = [
        ("use", "Fields to trust"),
        ("needs_review", "Fields a person must check before use"),
        ("exclude", "Fields not to use"),
    ]
    for decision, title in groups:
        items = [f for f in result.fields if f.decision == decision]
        if items:
            lines += ["", f"**{title} ({len(items)}):**", ""]
            lines += [_field_line(f) for f in items]
    overridden = [f for f in result.fields if f.config_decision]
    if overridden:
        lines += [
            "",
            "**Overridden by the config:** "
            + ", ".join(
                f"{escape_markdown(f.label)} ({f.config_decision})" for f in overridden
            )
            + ".",
        ]
    return lines


def _summary_quality(result: AuditResult) -> list[str]:
    serious = [q for q in result.quality if q.check != "still open"]
    if not serious:
        return ["", "**Data quality:** no problems found."]
    lines = ["", f"**Data quality ({len(serious)} findings):**", ""]
    for q in serious[:8]:
        share = "" if math.isnan(q.share) else f" ({q.share:.1%} of records)"
        lines.append(
            f"- {escape_markdown(q.check)} in {escape_markdown(q.column)}: "
            f"{q.rows:,} rows{share}"
        )
    if len(serious) > 8:
        lines.append(f"- and {len(serious) - 8} more, listed below")
    return lines


def _summary_markdown(result: AuditResult) -> str:
    choice = result.target
    lines = [
        f"**Point of optimization: {_TARGET_TITLES[choice.target]}.** "
        + escape_markdown(choice.reason)
    ]
    ev = result.evidence
    if ev.get("text"):
        unit = "closed records" if choice.target != "qualified" else "records"
        lines += [
            "",
            f"Each field is judged on {ev.get('measured', 0):,} {unit} "
            f"({escape_markdown(ev['text'])}); the training window only decides "
            "what to optimize for.",
        ]
    if choice.target == "too_small":
        lines += [
            "",
            "No model is fitted for this segment. The field findings "
            "below describe the data only.",
        ]
    lines += _summary_fields(result)
    lines += _summary_quality(result)
    for message in result.fallbacks:
        if not message.startswith("point of optimization"):
            lines += ["", f"**Note:** {escape_markdown(message)}"]
    return "\n".join(lines)


def _field_row(item: FieldAudit) -> dict:
    conv = item.conversion
    test = item.lift_test if item.lift_test.defined else item.value_test
    return {
        "Field": item.label,
        "Kind": item.kind,
        "Filled": item.fill["overall"],
        "Filled (won)": item.fill["won"],
        "Filled (lost)": item.fill["lost"],
        "Filled (open)": item.fill["open"],
        "Conversion with": conv["filled"].rate,
        "Conversion without": conv["unfilled"].rate,
        "Conversion (all)": conv["all"].rate,
        "Test": item.test_used,
        "p-value": test.p_value,
        "AUC alone": item.auc,
        "Flags": ", ".join(f.flag for f in item.flags),
        "Decision": item.config_decision or item.decision,
        "Why": item.decision_reason,
    }
