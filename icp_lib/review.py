"""Quarterly review: does the deployed ICP model still hold? (notebook 04)

The review scores the records created in the review quarter with the model
fitted before it (an honest out-of-time check) and answers four questions:

1. Do grades still convert in order? A one-sided two-proportion z-test per
   adjacent pair (A over B, B over C, C over D) answers *yes* (significant),
   *no* (the data rule out even half the gap calibration expected) or *not
   yet clear*. Open records are counted and shown, never as lost.
2. Did pipeline and revenue per grade come in as calibration expected?
3. Has the population drifted? Population stability of the score and of
   every model and candidate field, with a test that accounts for sample
   size (:mod:`icp_lib._drift`), and conversion drift per field level.
4. What does sales feedback say, month by month?

The verdict (keep, watch or re-run) gives its reasons in words; what could
not be judged is said plainly and keeps the verdict from "keep".
"""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from . import __version__
from ._card import ScoreCard, score_records, write_text_atomic
from ._drift import (
    PSIResult,
    bin_values,
    calibration_by_bin,
    categorical_levels,
    conversion_drift,
    holm_adjust,
    population_stability,
    score_edges,
)
from ._stats import cochran_armitage_trend, wilson_interval
from .config import Config
from .errors import ConfigError, FallbackWarning, ModelError
from .grades import grade_table

__all__ = [
    "ReviewResult",
    "DeployedModel",
    "FeedbackSummary",
    "OrderingTest",
    "DriftCheck",
    "Verdict",
    "review_quarter",
    "read_deployed_model",
    "feedback_summary",
    "population_stability",
    "PSIResult",
    "VERDICTS",
    "ANSWERS",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
GRADES = ("A", "B", "C", "D")
VERDICTS = ("keep", "watch", "rerun")
ANSWERS = ("yes", "no", "not yet clear", "not judged")
FEEDBACK_VERDICTS = {"good": "good", "good fit": "good", "bad": "bad", "bad fit": "bad"}
MIN_CLOSED = 10  # closed records a grade needs before its ordering is tested
MIN_FEEDBACK = 10  # feedback rows a month or grade needs before an alert
FEEDBACK_MONTHS = 6  # months of feedback shown, ending with the review quarter
_QUARTER_RE = re.compile(r"^\d{4}Q[1-4]$")


# --- which model ----------------------------------------------------------------


@dataclass(frozen=True)
class DeployedModel:
    """The model under review and where it came from.

    Attributes
    ----------
    card : ScoreCard or None
        The card, or None when it could not be read (see ``problem``).
    path : str
        The model.json file.
    source : str
        ``deployed`` (named by ``review.model`` in the config) or
        ``backtest`` (the model notebook 02/03 wrote in ``output_dir``).
    problem : str
        Why no card could be read, in words; empty when it was read.
    """

    card: ScoreCard | None
    path: str
    source: str
    problem: str = ""


def read_deployed_model(
    config: Config, *, segment: str, output_dir: str | Path
) -> DeployedModel:
    """Find and read the model the review checks.

    Parameters
    ----------
    config : Config
        ``review.model`` names a deployed model.json (``{segment}`` is
        replaced by the segment name; a relative path is taken from the
        current folder, then from the config's folder).
    segment : str
        The segment under review.
    output_dir : str or Path
        This segment's output folder; its model.json is used when the config
        names no deployed model.

    Returns
    -------
    DeployedModel
        Never raises on a missing or broken file: ``problem`` says what is
        wrong and ``card`` is None.
    """
    if config.review.model:
        path = _resolve_model_path(config, config.review.model.format(segment=segment))
        source = "deployed"
    else:
        path, source = Path(output_dir) / "model.json", "backtest"
    try:
        return DeployedModel(ScoreCard.read(path), str(path), source)
    except ModelError as exc:
        return DeployedModel(None, str(path), source, str(exc))


def _resolve_model_path(config: Config, name: str) -> Path:
    path = Path(name)
    if path.is_absolute() or path.exists() or not config.path:
        return path
    beside = Path(config.path).parent / path
    return beside if beside.exists() else path


# --- result pieces ----------------------------------------------------------------


@dataclass(frozen=True)
class OrderingTest:
    """Does the ``higher`` grade convert better than the ``lower`` one?

    ``answer`` is ``yes`` when a one-sided pooled two-proportion z-test is
    significant; ``no`` when the one-sided upper confidence bound of the
    difference falls below ``margin`` (half the gap calibration expected,
    at least 0): the quarter rules out the advantage the model promised;
    ``not yet clear`` otherwise; ``not judged`` without enough closed records.
    """

    higher: str
    lower: str
    higher_won: int
    higher_closed: int
    lower_won: int
    lower_closed: int
    difference: float
    z: float
    p_value: float
    upper_bound: float
    margin: float
    answer: str
    reason: str

    def to_json_dict(self) -> dict:
        """Return the test as JSON-ready values."""
        return _jsonable(self.__dict__)


@dataclass(frozen=True)
class DriftCheck:
    """Population stability of one variable (the score or a field)."""

    variable: str
    label: str
    in_model: bool
    result: PSIResult | None
    note: str = ""

    @property
    def status(self) -> str:
        """``stable``, ``watch``, ``shifted`` or ``not judged``."""
        return self.result.status if self.result else "not judged"

    def describe(self) -> str:
        """Return the finding in words, naming the bins that moved most."""
        if self.result is None:
            return f"{self.label}: not judged ({self.note})."
        frame = self.result.to_frame()
        moves = [
            f"{b} {_pct(r.expected_share)} -> {_pct(r.actual_share)}"
            for b in self.result.top_movers(2)
            for r in frame.loc[frame["bin"] == b].itertuples()
        ]
        tail = f"; moved most: {', '.join(moves)}" if moves else ""
        return f"{self.label}: {self.status}, {self.result.reason}{tail}."

    def to_json_dict(self) -> dict:
        """Return the check as JSON-ready values."""
        out = {
            "variable": self.variable,
            "label": self.label,
            "in_model": self.in_model,
            "status": self.status,
            "note": self.note,
            "detail": self.describe(),
        }
        if self.result is not None:
            out |= self.result.to_json_dict()
        return out


@dataclass(frozen=True)
class FeedbackSummary:
    """Sales feedback on the quarter: volume, negative share, trend, reasons.

    Attributes
    ----------
    by_month : DataFrame
        ``month``, ``in_quarter``, ``rows``, ``bad``, ``bad_share``,
        ``bad_low``, ``bad_high`` for the months shown.
    by_grade : DataFrame
        The same per grade, for the quarter's rows.
    by_grade_month : DataFrame
        ``month``, ``grade``, ``rows``, ``bad``, ``bad_share``.
    top_reasons : DataFrame
        ``reason``, ``rows``, ``share`` of the quarter's negative feedback.
    trend_p_value, trend_slope : float
        Cochran-Armitage test that the negative share changes over the months
        shown, and the change in share per month.
    alerts : tuple of str
        Alerts in words (negative share past ``review.feedback_alert``).
    problems : tuple of str
        Rows left out and why (unknown ids or verdicts, no date, a date
        after the quarter).
    older_rows : int
        Rows dated before the months shown (not used).
    """

    rows_read: int
    rows_used: int
    by_month: pd.DataFrame
    by_grade: pd.DataFrame
    by_grade_month: pd.DataFrame
    top_reasons: pd.DataFrame
    trend_p_value: float
    trend_slope: float
    threshold: float
    alerts: tuple[str, ...]
    problems: tuple[str, ...]
    older_rows: int = 0

    @property
    def bad_share(self) -> float:
        """Negative share of the quarter's feedback (NaN without any)."""
        inside = self.by_month[self.by_month["in_quarter"]]
        rows = inside["rows"].sum()
        return float(inside["bad"].sum() / rows) if rows else math.nan

    def to_json_dict(self) -> dict:
        """Return the summary as JSON-ready values."""
        return {
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "bad_share": _num(self.bad_share),
            "threshold": self.threshold,
            "trend_p_value": _num(self.trend_p_value),
            "trend_slope": _num(self.trend_slope),
            "alerts": list(self.alerts),
            "problems": list(self.problems),
            "older_rows": self.older_rows,
            "by_month": _records(self.by_month),
            "by_grade": _records(self.by_grade),
            "by_grade_month": _records(self.by_grade_month),
            "top_reasons": _records(self.top_reasons),
        }


@dataclass(frozen=True)
class Verdict:
    """Keep, watch or re-run, with the reasons in words."""

    decision: str
    headline: str
    reasons: tuple[str, ...]
    not_judged: tuple[str, ...]

    def to_json_dict(self) -> dict:
        """Return the verdict as JSON-ready values."""
        return {
            "decision": self.decision,
            "headline": self.headline,
            "reasons": list(self.reasons),
            "not_judged": list(self.not_judged),
        }


@dataclass(frozen=True)
class ReviewResult:
    """Everything the quarterly review found (written as review.json).

    Attributes
    ----------
    status : str
        ``reviewed`` (every part judged), ``partial`` or ``not reviewed``.
    model : dict
        Which model was reviewed: id, file, source, training quarters,
        whether the check is out of time, fields the data no longer has.
    counts : dict
        Records of the quarter: ``records``, ``won``, ``lost``, ``open``.
    grades : DataFrame
        Per grade: records, open, closed, wins, conversion with interval,
        expected conversion, pipeline and revenue against expected with the
        difference and its interval.
    ordering : tuple of OrderingTest
        A over B, B over C, C over D.
    drift : tuple of DriftCheck
        The score first, then model fields, then other candidate fields.
    conversion_drift : DataFrame
        Per field level: conversion in training and in the quarter, the
        change, Holm-adjusted p-value and ``direction``.
    feedback : FeedbackSummary or None
    history : DataFrame
        Grade conversion quarter by quarter (earlier review.json files).
    verdict : Verdict
    findings : tuple of str
        Fallbacks and limits, in words.
    """

    client: str
    segment: str
    quarter: str
    status: str
    model: dict[str, Any]
    counts: dict[str, int]
    grades: pd.DataFrame
    ordering: tuple[OrderingTest, ...]
    drift: tuple[DriftCheck, ...]
    conversion_drift: pd.DataFrame
    feedback: FeedbackSummary | None
    history: pd.DataFrame
    verdict: Verdict
    findings: tuple[str, ...] = ()
    alpha: float = 0.05
    created_at: str = field(default_factory=lambda: _now())

    @property
    def ordering_verdict(self) -> str:
        """``confirmed``, ``broken``, ``not yet clear`` or ``not judged``."""
        return _ordering_verdict(self.ordering)

    def drift_alerts(self) -> list[DriftCheck]:
        """Return score and model-field checks that are ``shifted`` or ``watch``.

        Fields outside the model are in :attr:`drift` but raise no alert.
        """
        alerting = ("shifted", "watch")
        return [d for d in self.drift if d.in_model and d.status in alerting]

    def most_shifted(self) -> DriftCheck | None:
        """Return the field (not the score) whose mix moved most, if any."""
        judged = [
            d for d in self.drift if d.variable != "score" and d.result is not None
        ]
        judged = [d for d in judged if not math.isnan(d.result.psi)]
        return max(judged, key=lambda d: d.result.psi, default=None)

    def feedback_display(self) -> pd.DataFrame:
        """Return negative feedback per grade with readable columns."""
        if self.feedback is None:
            return pd.DataFrame()
        g = self.feedback.by_grade
        g = g[g["rows"] > 0]
        return pd.DataFrame(
            {
                "Grade": g["grade"],
                "Verdicts": g["rows"],
                "Bad fit": g["bad"],
                "Bad-fit share": g["bad_share"].map(_pct),
            }
        ).set_index("Grade")

    def history_display(self) -> pd.DataFrame:
        """Return conversion per quarter (rows) and grade (columns) as text."""
        h = self.history
        if h.empty:
            return pd.DataFrame()
        wide = h.pivot_table(
            index="quarter", columns="grade", values="conversion", aggfunc="first"
        )
        return wide.apply(lambda col: col.map(_pct)).rename(columns={"all": "All"})

    def headline_numbers(self) -> dict[str, Any]:
        """Return the few numbers the index page shows."""
        return _headline(self)

    def to_json_dict(self) -> dict[str, Any]:
        """Return review.json content: machine-readable, NaN as null."""
        return _result_json(self)

    def save(self, path: str | Path) -> Path:
        """Write review.json atomically (temporary file, then rename)."""
        text = json.dumps(self.to_json_dict(), indent=2, ensure_ascii=False)
        return write_text_atomic(Path(path), text + "\n")

    def summary_markdown(self) -> str:
        """Return the verdict and its reasons as Markdown for a report."""
        return _summary_markdown(self)

    def section_markdown(self, section: str) -> str:
        """Return the narrative of one report section as Markdown.

        ``section`` is one of ``model``, ``outcomes``, ``ordering``,
        ``pipeline``, ``drift``, ``feedback``, ``history``.
        """
        writer = _SECTIONS.get(section)
        if writer is None:
            raise ValueError(
                f"section must be one of {sorted(_SECTIONS)}; found {section!r}"
            )
        return writer(self)

    def grade_display(self) -> pd.DataFrame:
        """Return the grade table with readable columns for a report."""
        return _grade_display(self.grades)

    def drift_display(self) -> pd.DataFrame:
        """Return one readable row per drift check."""
        return _drift_display(self.drift)


# --- the review -------------------------------------------------------------------


def review_quarter(
    table,
    card: ScoreCard | None,
    *,
    config: Config,
    quarter: str = "",
    segment: str = "all",
    history_root: Path | str | None = None,
    model_source: DeployedModel | None = None,
) -> ReviewResult:
    """Review one quarter of a segment against its model.

    Parameters
    ----------
    table : ModelingTable
        The segment's records (all quarters), with feedback when available.
    card : ScoreCard or None
        The model to review; None when it could not be read.
    config : Config
        Uses ``review.alpha``, ``review.feedback_alert`` and
        ``training.quarters`` (when the card does not list its window).
    quarter : str
        The review quarter, e.g. ``"2026Q3"``; ``""`` takes the last
        complete quarter of the data.
    segment : str
        Segment name, for review.json and the history lookup.
    history_root : Path, optional
        Folder holding earlier reports as ``<Q>/<segment>/review.json``.
    model_source : DeployedModel, optional
        Where ``card`` came from, shown in the report.

    Returns
    -------
    ReviewResult
        Parts that cannot be judged (no dates, no records, no closed
        records, no model, fields missing) are marked so, with the reason.

    Raises
    ------
    ConfigError
        If ``quarter`` is not of the form ``2026Q3``.
    """
    alpha = config.review.alpha
    ctx = _Context(config=config, segment=segment, alpha=alpha)
    model = _model_info(card, model_source, table.frame)
    if not table.has_dates:
        why = (
            "the data has no record dates, so no quarter can be reviewed; a "
            "quarterly review needs the date each record was created"
        )
        return _not_reviewed(ctx, quarter or "", model, why)
    quarter = _resolve_quarter(table, quarter)
    if card is None:
        # Outcomes, field drift and feedback can still be reviewed.
        model["problem"] = model.get("problem") or "no model was given"
        card = ScoreCard(fields=(), verdict={"usable": False, "reasons": []})
    return _review(table, card, ctx, quarter, model, history_root)


@dataclass
class _Context:
    config: Config
    segment: str
    alpha: float
    findings: list[str] = field(default_factory=list)
    not_judged: list[str] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _resolve_quarter(table, quarter: str) -> str:
    if not quarter:
        from .data import last_complete_quarter

        return last_complete_quarter(table)
    if not _QUARTER_RE.match(quarter):
        raise ConfigError(
            f"quarter must look like 2026Q3 (year, Q, 1-4); found {quarter!r}; "
            "pass an empty string for the last complete quarter"
        )
    return quarter


def _model_info(card, source: DeployedModel | None, frame: pd.DataFrame) -> dict:
    info = {
        "path": source.path if source else "",
        "source": source.source if source else "given",
        "problem": source.problem if source else "",
        "training_quarters": [],
        "fields": [],
        "missing_fields": [],
        "has_grades": False,
    }
    if card is None:
        return info
    window = dict(card.meta.get("training_window") or {})
    names = [f.name for f in card.fields]
    return info | {
        "model_id": card.model_id,
        "review_quarter": card.meta.get("review_quarter"),
        "training_quarters": list(window.get("quarters") or []),
        "usable": card.usable,
        "verdict_reasons": [str(r) for r in card.verdict.get("reasons", [])],
        "fields": names,
        "missing_fields": [n for n in names if n not in frame.columns],
        "has_grades": bool(card.grades and card.grades.get("cuts")),
    }


def _training_quarters(model: dict, config: Config, quarter: str) -> list[str]:
    listed = model.get("training_quarters") or []
    if listed:
        return [str(q) for q in listed]
    end = pd.Period(quarter, freq="Q")
    n = config.training.quarters
    return [str(end - k) for k in range(n, 0, -1)]


def _review(table, card, ctx: _Context, quarter, model, history_root) -> ReviewResult:
    frame = table.frame
    train_q = _training_quarters(model, ctx.config, quarter)
    model["out_of_time"] = bool(train_q) and max(train_q) < quarter
    _note_model_limits(ctx, card, model, quarter)
    scored = _score(card, frame, model, ctx)
    review = scored[scored["quarter"] == quarter]
    reference = scored[scored["quarter"].isin(train_q)]

    counts = _count_outcomes(review)
    grades = _grade_frame(review, card, ctx)
    ordering = _ordering_tests(grades, ctx)
    drift = _drift_checks(table, card, reference, review, ctx)
    conv = _conversion_drift(table, card, reference, review, ctx)
    fb = _feedback(table, scored, quarter, ctx)
    history = _history(history_root, ctx, quarter, grades, counts)
    parts = (counts, grades, ordering, drift, conv, fb)
    verdict = _decide(ctx, model, *parts)
    return _build(ctx, quarter, model, parts, history, verdict)


def _note_model_limits(ctx: _Context, card, model: dict, quarter: str) -> None:
    if model.get("problem"):
        ctx.not_judged.append("grade outcomes and score drift: there is no model")
        return
    if not model["out_of_time"]:
        ctx.findings.append(
            f"the model's training window ({', '.join(model['training_quarters'])}) "
            f"does not end before {quarter}: this is not an out-of-time check, and "
            "the grades will look better than they will on new records"
        )
    if not model["has_grades"]:
        ctx.not_judged.append(
            "grade outcomes: the model has no grade cut points (notebook 03 sets "
            "none for a model that is not usable, or it did not run)"
        )


def _score(card, frame: pd.DataFrame, model: dict, ctx: _Context) -> pd.DataFrame:
    missing = model["missing_fields"]
    if missing:
        msg = (
            f"the data no longer has the model field(s) {', '.join(missing)}; they "
            "were scored as missing, so scores and grades understate every record"
        )
        warnings.warn(msg, FallbackWarning, stacklevel=3)
        ctx.findings.append(msg)
        frame = frame.assign(**{name: pd.NA for name in missing})
    scores = score_records(card, frame, top_reasons=0)
    base = frame.reset_index(drop=True)
    return base.assign(score=scores["score"], grade=scores["grade"])


def _count_outcomes(review: pd.DataFrame) -> dict[str, int]:
    outcome = review["outcome"].astype(str)
    return {
        "records": len(review),
        "won": int((outcome == "won").sum()),
        "lost": int((outcome == "lost").sum()),
        "open": int((outcome == "open").sum()),
    }


# --- grades: conversion, pipeline and revenue -------------------------------------

_GRADE_COLUMNS = [
    "records",
    "open",
    "closed",
    "wins",
    "conversion",
    "conversion_low",
    "conversion_high",
    "expected_conversion",
    "conversion_diff",
    "conversion_diff_low",
    "conversion_diff_high",
    "pipeline",
    "expected_pipeline",
    "pipeline_diff",
    "pipeline_diff_low",
    "pipeline_diff_high",
    "revenue",
    "expected_revenue",
    "revenue_diff",
    "revenue_diff_low",
    "revenue_diff_high",
]


def _grade_frame(review: pd.DataFrame, card, ctx: _Context) -> pd.DataFrame:
    if not (card.grades and card.grades.get("cuts")):
        return pd.DataFrame(columns=_GRADE_COLUMNS, index=pd.Index([], name="grade"))
    table = grade_table(review, cuts=card.grades["cuts"], alpha=ctx.alpha).frame
    expected = card.grades.get("expected") or {}
    z = stats.norm.ppf(1 - ctx.alpha / 2)
    rows = [
        _grade_row(table.loc[g], review[review["grade"] == g], expected.get(g), z)
        for g in GRADES
    ]
    return pd.DataFrame(rows, index=pd.Index(GRADES, name="grade"))[_GRADE_COLUMNS]


def _grade_row(row: pd.Series, records: pd.DataFrame, exp: dict | None, z: float):
    exp = exp or {}
    n, closed = int(row["records"]), int(row["closed"])
    out = {
        "records": n,
        "open": n - closed,
        "closed": closed,
        "wins": int(row["wins"]),
        "conversion": row["conversion"],
        "conversion_low": row["conversion_low"],
        "conversion_high": row["conversion_high"],
    }
    out |= _conversion_vs_expected(row["conversion"], closed, exp, z)
    amount = pd.to_numeric(records["amount"], errors="coerce").fillna(0.0)
    revenue = amount.where(records["won"] == 1, 0.0)
    calib_n = _num_or_nan(exp.get("records"))
    for name, values in (("pipeline", amount), ("revenue", revenue)):
        per_record = exp.get(f"{name}_per_record")
        out |= _total_vs_expected(name, values, per_record, calib_n, z)
    return out


def _conversion_vs_expected(p: float, n: int, exp: dict, z: float) -> dict:
    e = _num_or_nan(exp.get("conversion"))
    lo, hi = (
        _num_or_nan(exp.get("conversion_low")),
        _num_or_nan(exp.get("conversion_high")),
    )
    se_actual = math.sqrt(p * (1 - p) / n) if n > 0 else math.nan
    se_expected = (hi - lo) / (2 * z) if not math.isnan(hi - lo) else 0.0
    diff = p - e if n > 0 else math.nan
    half = z * math.hypot(se_actual, se_expected)
    return {
        "expected_conversion": e,
        "conversion_diff": diff,
        "conversion_diff_low": diff - half,
        "conversion_diff_high": diff + half,
    }


def _total_vs_expected(
    name: str, values: pd.Series, per_record, calib_n: float, z: float
) -> dict:
    n = len(values)
    total = float(values.sum())
    expected = n * _num_or_nan(per_record)
    # The total is n times a mean: its variance is n * sd^2. The expectation
    # is n times calibration's mean over calib_n records, with variance
    # n^2 * sd^2 / calib_n (sd taken from this quarter; calibration keeps
    # only its mean). Without calib_n that term is left out.
    sd = float(values.std(ddof=1)) if n > 1 else math.nan
    calib = n**2 / calib_n if calib_n and calib_n > 0 else 0.0
    se = sd * math.sqrt(n + calib)
    diff = total - expected
    return {
        name: total,
        f"expected_{name}": expected,
        f"{name}_diff": diff,
        f"{name}_diff_low": diff - z * se,
        f"{name}_diff_high": diff + z * se,
    }


def _num_or_nan(value) -> float:
    return math.nan if value is None or pd.isna(value) else float(value)


# --- grade ordering ---------------------------------------------------------------


def _ordering_tests(grades: pd.DataFrame, ctx: _Context) -> tuple[OrderingTest, ...]:
    if grades.empty:
        return tuple(
            _untested(hi, lo, "not judged", "the model has no grades")
            for hi, lo in zip(GRADES[:-1], GRADES[1:], strict=True)
        )
    return tuple(
        _ordering_test(grades.loc[hi], grades.loc[lo], hi, lo, ctx.alpha)
        for hi, lo in zip(GRADES[:-1], GRADES[1:], strict=True)
    )


def _untested(hi: str, lo: str, answer: str, reason: str, counts=(0, 0, 0, 0)):
    nan = math.nan
    return OrderingTest(hi, lo, *counts, nan, nan, nan, nan, nan, answer, reason)


def _ordering_test(a: pd.Series, b: pd.Series, hi: str, lo: str, alpha: float):
    from ._stats import one_sided_proportion_test

    xa, na, xb, nb = int(a["wins"]), int(a["closed"]), int(b["wins"]), int(b["closed"])
    counts = (xa, na, xb, nb)
    if min(na, nb) < MIN_CLOSED:
        why = (
            f"too few closed records to test ({na} closed {hi}, {nb} closed {lo}; "
            f"at least {MIN_CLOSED} each needed)"
        )
        return _untested(hi, lo, "not yet clear", why, counts)
    test = one_sided_proportion_test(xa, na, xb, nb)
    pa, pb = xa / na, xb / nb
    se = math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    upper = pa - pb + stats.norm.ppf(1 - alpha) * se
    gap = a["expected_conversion"] - b["expected_conversion"]
    margin = max(0.0, 0.5 * gap) if not pd.isna(gap) else 0.0
    answer, reason = _answer(hi, lo, pa, pb, test.p_value, upper, margin, alpha)
    return OrderingTest(
        hi,
        lo,
        *counts,
        pa - pb,
        test.statistic,
        test.p_value,
        upper,
        margin,
        answer,
        reason,
    )


def _answer(hi, lo, pa, pb, p, upper, margin, alpha) -> tuple[str, str]:
    rates = f"{hi} {pa:.1%} against {lo} {pb:.1%}"
    if not pd.isna(p) and p < alpha:
        return "yes", f"{rates}; one-sided p = {p:.2g}"
    if upper < margin:
        promised = (
            f"half the gap calibration expected ({margin:.1%})"
            if margin > 0
            else "any advantage"
        )
        return "no", (
            f"{rates}; the best case for {hi} (+{max(upper, 0):.1%} at most) "
            f"is below {promised}"
        )
    p_text = "undefined" if pd.isna(p) else f"{p:.2g}"
    return "not yet clear", f"{rates}; one-sided p = {p_text}, not significant"


def _ordering_verdict(tests) -> str:
    answers = [t.answer for t in tests]
    if not answers or all(a == "not judged" for a in answers):
        return "not judged"
    if "no" in answers:
        return "broken"
    if all(a == "yes" for a in answers):
        return "confirmed"
    return "not yet clear"


# --- drift ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Variable:
    name: str
    label: str
    kind: str
    in_model: bool
    bins: list | None


def _variables(table, card) -> list[_Variable]:
    out = []
    for f in card.fields:
        edges = [b.lower for b in f.bins if b.lower is not None] or None
        numeric = f.kind in ("numeric", "range")
        out.append(_Variable(f.name, f.label, f.kind, True, edges if numeric else None))
    in_card = {f.name for f in card.fields}
    for spec in table.fields:
        if spec.name not in in_card:
            out.append(_Variable(spec.name, spec.label, spec.kind, False, None))
    return out


def _field_values(values: pd.Series, kind: str) -> pd.Series:
    if kind in ("numeric", "range"):
        return pd.to_numeric(values, errors="coerce").astype(float)
    if kind == "boolean":
        nums = pd.to_numeric(values, errors="coerce")
        return nums.map({1.0: "yes", 0.0: "no"}).astype(object)
    return values.astype(object).where(values.notna(), None)


def _var_bins(var: _Variable, ref: pd.Series) -> list:
    if var.bins is not None:
        return var.bins
    if var.kind in ("numeric", "range"):
        return score_edges(ref, n_bins=5)
    return categorical_levels(ref)


def _drift_checks(table, card, reference, review, ctx) -> tuple[DriftCheck, ...]:
    # Scores are whole numbers: whole-number cut points give the same bins.
    score_bins = sorted({math.ceil(e) for e in score_edges(reference["score"])})
    checks = [
        DriftCheck(
            "score",
            "ICP score",
            True,
            _psi(reference["score"], review["score"], score_bins, ctx),
        )
    ]
    if not card.fields:
        checks = []
    for var in _variables(table, card):
        if var.name not in table.frame.columns:
            note = "the data no longer has this field, so its drift cannot be judged"
            checks.append(DriftCheck(var.name, var.label, var.in_model, None, note))
            continue
        ref = _field_values(reference[var.name], var.kind)
        new = _field_values(review[var.name], var.kind)
        result = _psi(ref, new, _var_bins(var, ref), ctx)
        checks.append(DriftCheck(var.name, var.label, var.in_model, result))
    return tuple(checks)


def _psi(ref: pd.Series, new: pd.Series, bins, ctx: _Context) -> PSIResult:
    return population_stability(
        ref.to_numpy(), new.to_numpy(), bins=bins or None, alpha=ctx.alpha
    )


_CONV_COLUMNS = [
    "variable",
    "label",
    "in_model",
    "level",
    "reference_closed",
    "reference_conversion",
    "review_closed",
    "review_conversion",
    "change",
    "p_value",
    "relative_change",
    "relative_p",
    "expected_wins",
    "calibration_p",
    "test",
    "p_adjusted",
    "direction",
]


def _conversion_drift(table, card, reference, review, ctx) -> pd.DataFrame:
    expected = (card.grades or {}).get("expected") or {}
    rates = {g: _num_or_nan((v or {}).get("conversion")) for g, v in expected.items()}
    promised = review["grade"].astype(object).map(rates).astype(float).to_numpy()
    parts = []
    for var in _variables(table, card):
        if var.name not in table.frame.columns or var.kind == "multi":
            continue
        ref = _field_values(reference[var.name], var.kind)
        new = _field_values(review[var.name], var.kind)
        ref_lab, new_lab, order = bin_values(ref, new, bins=_var_bins(var, ref) or None)
        new_frame = pd.DataFrame(
            {"bin": new_lab, "won": review["won"].to_numpy(), "expected": promised}
        )
        out = conversion_drift(
            pd.DataFrame({"bin": ref_lab, "won": reference["won"].to_numpy()}),
            new_frame,
            levels=order,
        )
        calib = calibration_by_bin(new_frame, levels=list(out["level"]))
        out = out.assign(
            expected_wins=calib["expected_wins"].to_numpy(),
            calibration_p=calib["calibration_p"].to_numpy(),
        )
        parts.append(
            out.assign(variable=var.name, label=var.label, in_model=var.in_model)
        )
    if not parts:
        return pd.DataFrame(columns=_CONV_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    # Judge each level against the rest of its field, so that a drop hitting
    # every level alike (young records' quick losses) is not blamed on one:
    # against what the model promised for its records when the card has
    # calibrated grades, else against the other levels' change since training.
    # Holm within each field: the levels of one field form one family.
    use_calib = out["calibration_p"].notna().any()
    if not use_calib and out["relative_p"].notna().any():
        ctx.findings.append(
            "the card has no calibrated grades, so conversion drift compares each "
            "level's change with the other levels' change since training"
        )
    test_p = out["calibration_p"] if use_calib else out["relative_p"]
    out = out.assign(test_p=test_p, test="calibration" if use_calib else "relative")
    adjusted = out.groupby("variable", sort=False)["test_p"].transform(holm_adjust)
    out = out.assign(p_adjusted=adjusted)
    return out.assign(direction=_directions(out, ctx.alpha))[_CONV_COLUMNS]


def _directions(out: pd.DataFrame, alpha: float) -> list[str]:
    result = []
    signs = np.where(
        out["test"] == "calibration",
        out["review_closed"] * out["review_conversion"] - out["expected_wins"],
        out["relative_change"],
    )
    for p, change in zip(out["p_adjusted"], signs, strict=True):
        if pd.isna(p):
            result.append("too few closed records")
        elif p < alpha:
            result.append("dropped" if change < 0 else "rose")
        else:
            result.append("no clear change")
    return result


# --- sales feedback ---------------------------------------------------------------


def feedback_summary(
    feedback: pd.DataFrame,
    grades: pd.DataFrame,
    *,
    quarter: str,
    threshold: float = 0.3,
    months: int = FEEDBACK_MONTHS,
) -> FeedbackSummary:
    """Summarise sales feedback for a review quarter.

    Parameters
    ----------
    feedback : DataFrame
        ``record_id``, ``date``, ``verdict`` (``good`` or ``bad``, also
        ``good fit``/``bad fit`` in any case), ``reason``, ``rep``.
    grades : DataFrame
        ``record_id`` and ``grade`` of every record of the segment.
    quarter : str
        The review quarter, e.g. ``"2026Q3"``.
    threshold : float
        Negative share above which an alert is raised
        (``review.feedback_alert``).
    months : int
        Months shown in the trend, ending with the quarter's last month.

    Returns
    -------
    FeedbackSummary
        Rows with an id not among ``grades``, an unknown verdict, no date or
        a date after the quarter or before the months shown are left out and
        counted in ``problems``.
    """
    end = pd.Period(quarter, freq="Q").asfreq("M", how="end")
    shown = pd.period_range(end - (months - 1), end, freq="M")
    work, problems, older = _clean_feedback(feedback, grades, shown)
    in_q = work["month"].map(lambda m: str(m.asfreq("Q")) == quarter)
    by_month = _bad_by(work, "month", list(shown)).assign(
        in_quarter=[str(m.asfreq("Q")) == quarter for m in shown]
    )
    inside = work[in_q.astype(bool).to_numpy()] if len(work) else work
    trend = cochran_armitage_trend(by_month["bad"], by_month["rows"])
    return FeedbackSummary(
        rows_read=len(feedback),
        rows_used=len(work),
        by_month=by_month.assign(month=by_month["month"].astype(str)),
        by_grade=_bad_by(inside, "grade", [*GRADES, "no grade"]),
        by_grade_month=_bad_by_grade_month(work),
        top_reasons=_top_reasons(inside),
        trend_p_value=trend.p_value,
        trend_slope=trend.effect,
        threshold=threshold,
        alerts=_feedback_alerts(by_month, inside, threshold, quarter),
        problems=tuple(problems),
        older_rows=older,
    )


def _clean_feedback(feedback: pd.DataFrame, grades: pd.DataFrame, shown):
    frame = feedback.reset_index(drop=True)
    verdict = frame["verdict"].map(
        lambda v: (
            None if pd.isna(v) else FEEDBACK_VERDICTS.get(str(v).strip().casefold())
        )
    )
    dates = pd.to_datetime(frame["date"], errors="coerce")
    month = dates.dt.to_period("M")
    grade_of = dict(zip(grades["record_id"].astype(str), grades["grade"], strict=True))
    ids = frame["record_id"].astype(str)
    checks = [
        (
            ~ids.isin(grade_of),
            "name a record id that is not among this segment's "
            "records (unknown id, or another segment)",
        ),
        (verdict.isna(), "have no readable verdict (good or bad)"),
        (dates.isna(), "have no readable date"),
        (month > shown[-1], "are dated after the review quarter"),
    ]
    keep = pd.Series(True, index=frame.index)
    problems = []
    for bad, text in checks:
        hit = keep & bad.fillna(False).astype(bool)
        if hit.any():
            problems.append(f"{int(hit.sum())} feedback row(s) {text}; left out")
        keep &= ~hit
    older = keep & (month < shown[0]).fillna(False).astype(bool)
    keep &= ~older
    grade = ids.map(grade_of).fillna("no grade").astype(str)
    reason = frame.get("reason", pd.Series(pd.NA, index=frame.index))
    work = pd.DataFrame(
        {
            "month": month,
            "bad": (verdict == "bad").astype(int),
            "grade": grade,
            "reason": reason.astype(object),
        }
    )
    return work[keep.to_numpy()], problems, int(older.sum())


def _bad_by(work: pd.DataFrame, key: str, levels: list) -> pd.DataFrame:
    g = work.groupby(key)["bad"].agg(["size", "sum"]) if len(work) else None
    rows = []
    for level in levels:
        n, bad = (0, 0) if g is None or level not in g.index else g.loc[level]
        rows.append({key: level, "rows": int(n), "bad": int(bad)})
    out = pd.DataFrame(rows, columns=[key, "rows", "bad"])
    low, high = wilson_interval(out["bad"], out["rows"])
    share = np.where(out["rows"] > 0, out["bad"] / out["rows"].clip(lower=1), np.nan)
    return out.assign(bad_share=share, bad_low=low, bad_high=high)


def _bad_by_grade_month(work: pd.DataFrame) -> pd.DataFrame:
    if work.empty:
        return pd.DataFrame(columns=["month", "grade", "rows", "bad", "bad_share"])
    g = (
        work.groupby(["month", "grade"])["bad"]
        .agg(rows="size", bad="sum")
        .reset_index()
    )
    return g.assign(month=g["month"].astype(str), bad_share=g["bad"] / g["rows"])


def _top_reasons(inside: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    bad = inside[inside["bad"] == 1]
    counts = bad["reason"].dropna().astype(str).str.strip()
    counts = counts[counts != ""].value_counts().head(n)
    total = len(bad)
    return pd.DataFrame(
        {
            "reason": counts.index.astype(str),
            "rows": counts.to_numpy(int),
            "share": counts.to_numpy(float) / total if total else np.nan,
        }
    )


def _feedback_alerts(by_month, inside, threshold: float, quarter: str):
    alerts = []
    months = by_month[by_month["in_quarter"] & (by_month["rows"] >= MIN_FEEDBACK)]
    above = months[months["bad_share"] > threshold]
    if len(above):
        first = above.iloc[0]
        before = by_month[by_month["month"] < first["month"]]
        rose = len(before) and (before["bad_share"].dropna() <= threshold).any()
        verb = "rose past" if rose else "is above"
        alerts.append(
            f"negative feedback {verb} the alert level of {threshold:.0%}: "
            f"{first['bad_share']:.0%} of {int(first['rows'])} verdicts in "
            f"{first['month']} said bad fit"
            + (
                f", {above.iloc[-1]['bad_share']:.0%} in {above.iloc[-1]['month']}"
                if len(above) > 1
                else ""
            )
        )
    by_grade = _bad_by(inside, "grade", ["A", "B"])
    for row in by_grade.itertuples():
        if row.rows >= MIN_FEEDBACK and row.bad_share > threshold:
            alerts.append(
                f"{row.bad_share:.0%} of {row.rows} verdicts on grade {row.grade} "
                f"records in {quarter} said bad fit (alert level {threshold:.0%})"
            )
    return tuple(alerts)


def _feedback(table, scored, quarter: str, ctx: _Context) -> FeedbackSummary | None:
    if table.feedback is None:
        ctx.findings.append(
            "no sales feedback file is configured, so reps' verdicts are not part "
            "of this review"
        )
        return None
    summary = feedback_summary(
        table.feedback,
        scored[["record_id", "grade"]].assign(
            grade=scored["grade"].astype(object).where(scored["grade"].notna(), None)
        ),
        quarter=quarter,
        threshold=ctx.config.review.feedback_alert,
    )
    if not summary.by_month["in_quarter"].pipe(
        lambda m: summary.by_month.loc[m, "rows"].sum()
    ):
        ctx.not_judged.append(
            f"sales feedback: no usable feedback row is dated in {quarter}"
        )
    return summary


# --- history ----------------------------------------------------------------------


_HISTORY_COLUMNS = [
    "quarter",
    "grade",
    "closed",
    "wins",
    "conversion",
    "conversion_low",
    "conversion_high",
]


def _history(root, ctx: _Context, quarter: str, grades, counts) -> pd.DataFrame:
    rows = []
    earlier = _earlier_reviews(root, ctx.segment, quarter)
    # Another client's reports can sit in the same folder with the same
    # segment names; only this client's quarters belong in its history.
    for q, data in (e for e in earlier if e[1].get("client") == ctx.config.client):
        rows.append(_overall_row(q, data.get("counts") or {}))
        for g in data.get("grades") or []:
            rows.append({"quarter": q, **{k: g.get(k) for k in _HISTORY_COLUMNS[1:]}})
    rows.append(_overall_row(quarter, counts))
    for g, r in grades.iterrows():
        rows.append(
            {"quarter": quarter, "grade": g, **{k: r[k] for k in _HISTORY_COLUMNS[2:]}}
        )
    out = pd.DataFrame(rows, columns=_HISTORY_COLUMNS)
    return out.sort_values(["quarter", "grade"], ignore_index=True)


def _overall_row(quarter: str, counts: dict) -> dict:
    wins, closed = counts.get("won", 0), counts.get("won", 0) + counts.get("lost", 0)
    low, high = wilson_interval(wins, closed)
    conv = wins / closed if closed else math.nan
    return {
        "quarter": quarter,
        "grade": "all",
        "closed": closed,
        "wins": wins,
        "conversion": conv,
        "conversion_low": low,
        "conversion_high": high,
    }


def _earlier_reviews(root, segment: str, quarter: str):
    if root is None or not Path(root).is_dir():
        return []
    found = []
    for path in sorted(Path(root).glob(f"*/{segment}/review.json")):
        q = path.parent.parent.name
        if not _QUARTER_RE.match(q) or q >= quarter:
            continue
        try:
            found.append((q, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("earlier review %s could not be read: %s", path, exc)
    return found


# --- verdict ----------------------------------------------------------------------


def _decide(ctx, model, counts, grades, ordering, drift, conv, fb) -> Verdict:
    rerun, watch = [], []
    _judge_model(model, rerun)
    _judge_ordering(ordering, rerun, watch)
    _judge_expected(grades, watch)
    _judge_drift(drift, conv, rerun, watch)
    if fb is not None:
        watch += [f"Sales feedback: {a}." for a in fb.alerts]
    if counts["records"] == 0:
        ctx.not_judged.insert(0, "outcomes: no records were created in the quarter")
    elif counts["won"] + counts["lost"] == 0:
        ctx.not_judged.insert(
            0, "grade conversion: no record of the quarter has closed yet"
        )
    not_judged = tuple(ctx.not_judged)
    watch += [f"Could not judge {n}." for n in not_judged]
    decision = "rerun" if rerun else ("watch" if watch else "keep")
    reasons = tuple(rerun + watch) or (
        "Every grade converted better than the next one down, the population is "
        "stable and sales feedback is below the alert level.",
    )
    no_model = bool(model.get("problem")) or model.get("usable") is False
    headline = _NO_MODEL if no_model else _HEADLINES[decision]
    return Verdict(decision, headline, reasons, not_judged)


_NO_MODEL = "Re-run the analysis: there is no usable model to review."


_HEADLINES = {
    "keep": "Keep the model: it still sorts records as calibrated.",
    "watch": "Keep using the model but watch it: something changed or is unclear.",
    "rerun": "Re-run the analysis: the model no longer holds as calibrated.",
}


def _judge_model(model: dict, rerun: list) -> None:
    if model.get("problem"):
        rerun.append(
            f"No model could be reviewed: {model['problem']}. Only outcomes, "
            "field drift and feedback were checked."
        )
    elif model.get("usable") is False:
        why = "; ".join(model.get("verdict_reasons") or []) or "no reason given"
        rerun.append(
            f"The model fit judged the model not usable ({why}); there is no "
            "working score to keep. Re-run the analysis when the data changes."
        )
    if model.get("missing_fields"):
        rerun.append(
            "The data no longer has the model field(s) "
            f"{', '.join(model['missing_fields'])}, so every score is understated."
        )


def _judge_ordering(ordering, rerun: list, watch: list) -> None:
    for t in ordering:
        if t.answer == "no":
            rerun.append(
                f"{t.higher} did not convert better than {t.lower}: {t.reason}."
            )
        elif t.answer == "not yet clear":
            watch.append(
                f"Not yet clear that {t.higher} converts better than {t.lower}: "
                f"{t.reason}."
            )


def _judge_expected(grades: pd.DataFrame, watch: list) -> None:
    for g in ("A", "B"):
        if g not in grades.index:
            continue
        row = grades.loc[g]
        if row["conversion_diff_high"] < 0:
            young = row["open"] > 0.2 * row["records"]
            watch.append(
                f"Grade {g} converted below calibration: {row['conversion']:.1%} "
                f"against {row['expected_conversion']:.1%} expected"
                + (
                    f" ({int(row['open'])} records still open; their outcomes can "
                    "still change this)."
                    if young
                    else "."
                )
            )


def _judge_drift(drift, conv: pd.DataFrame, rerun: list, watch: list) -> None:
    moved = conv[conv["direction"].isin(["dropped", "rose"]) & conv["in_model"]]
    for d in drift:
        if d.status != "shifted" or not d.in_model:
            continue
        levels = moved[moved["variable"] == d.variable]
        text = f"Drift in {d.describe()}"
        if len(levels):
            text += " Conversion " + "; ".join(
                _level_change(r) for r in levels.itertuples()
            )
            text += "."
        (
            rerun if d.in_model and len(levels) and d.variable != "score" else watch
        ).append(text)
    shifted = {d.variable for d in drift if d.status == "shifted"}
    for _, rows in moved[~moved["variable"].isin(shifted)].groupby(
        "variable", sort=False
    ):
        changes = "; ".join(_level_change(r) for r in rows.itertuples())
        watch.append(f"Conversion drift in {rows['label'].iloc[0]}: {changes}.")


def _level_change(r) -> str:
    side = "worse" if r.direction == "dropped" else "better"
    than = (
        f"than the model expected for these records ({r.expected_wins:.0f} wins "
        f"expected, {r.review_closed * r.review_conversion:.0f} won)"
        if r.test == "calibration"
        else "than the other levels moved"
    )
    return (
        f"{r.level} went from {r.reference_conversion:.0%} to "
        f"{r.review_conversion:.0%}, {side} {than}; {r.review_closed} closed in "
        f"the quarter, adjusted p = {r.p_adjusted:.2g}"
    )


def _build(ctx, quarter, model, parts, history, verdict) -> ReviewResult:
    counts, grades, ordering, drift, conv, fb = parts
    return ReviewResult(
        client=ctx.config.client,
        segment=ctx.segment,
        quarter=quarter,
        status="partial" if verdict.not_judged else "reviewed",
        model=model,
        counts=counts,
        grades=grades,
        ordering=ordering,
        drift=drift,
        conversion_drift=conv,
        feedback=fb,
        history=history,
        verdict=verdict,
        findings=tuple(ctx.findings),
        alpha=ctx.alpha,
    )


def _not_reviewed(ctx, quarter, model, why: str):
    headline = "The quarter could not be reviewed."
    empty = pd.DataFrame(columns=_GRADE_COLUMNS, index=pd.Index([], name="grade"))
    return ReviewResult(
        client=ctx.config.client,
        segment=ctx.segment,
        quarter=quarter,
        status="not reviewed",
        model=model,
        counts={"records": 0, "won": 0, "lost": 0, "open": 0},
        grades=empty,
        ordering=tuple(
            _untested(hi, lo, "not judged", why)
            for hi, lo in zip(GRADES[:-1], GRADES[1:], strict=True)
        ),
        drift=(),
        conversion_drift=pd.DataFrame(columns=_CONV_COLUMNS),
        feedback=None,
        history=pd.DataFrame(columns=_HISTORY_COLUMNS),
        verdict=Verdict("watch", headline, (why[0].upper() + why[1:] + ".",), (why,)),
        findings=tuple(ctx.findings),
        alpha=ctx.alpha,
    )


# --- review.json ------------------------------------------------------------------


def _num(value) -> float | int | None:
    if value is None or (
        isinstance(value, float | np.floating) and not np.isfinite(value)
    ):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return _num(value)


def _records(frame: pd.DataFrame) -> list[dict]:
    return [_jsonable(r) for r in frame.to_dict(orient="records")]


def _headline(result: ReviewResult) -> dict[str, Any]:
    c, g = result.counts, result.grades
    closed = c["won"] + c["lost"]
    score = next((d for d in result.drift if d.variable == "score"), None)
    fb = result.feedback
    return _jsonable(
        {
            "records": c["records"],
            "closed": closed,
            "won": c["won"],
            "open": c["open"],
            "conversion": c["won"] / closed if closed else None,
            "conversion_by_grade": {k: g.loc[k, "conversion"] for k in g.index},
            "pipeline": float(g["pipeline"].sum()) if len(g) else None,
            "revenue": float(g["revenue"].sum()) if len(g) else None,
            "score_psi": score.result.psi if score and score.result else None,
            "score_drift": score.status if score else "not judged",
            "fields_shifted": [
                d.variable
                for d in result.drift
                if d.status == "shifted" and d.variable != "score" and d.in_model
            ],
            "other_fields_shifted": [
                d.variable
                for d in result.drift
                if d.status == "shifted" and not d.in_model
            ],
            "negative_feedback_share": fb.bad_share if fb else None,
        }
    )


def _result_json(r: ReviewResult) -> dict[str, Any]:
    grades = r.grades.reset_index()
    return {
        "schema_version": SCHEMA_VERSION,
        "kit_version": __version__,
        "client": r.client,
        "segment": r.segment,
        "quarter": r.quarter,
        "created_at": r.created_at,
        "status": r.status,
        "verdict": r.verdict.to_json_dict(),
        "grade_ordering": {
            "verdict": r.ordering_verdict,
            "tests": [t.to_json_dict() for t in r.ordering],
        },
        "drift_alerts": [_drift_alert(d) for d in r.drift_alerts()],
        "feedback_alerts": list(r.feedback.alerts) if r.feedback else [],
        "headline": r.headline_numbers(),
        "model": _jsonable(r.model),
        "counts": r.counts,
        "grades": _records(grades),
        "drift": [d.to_json_dict() for d in r.drift],
        "conversion_drift": _records(r.conversion_drift),
        "feedback": r.feedback.to_json_dict() if r.feedback else None,
        "history": _records(r.history),
        "findings": list(r.findings),
        "alpha": r.alpha,
    }


def _drift_alert(d: DriftCheck) -> dict:
    res = d.result
    return _jsonable(
        {
            "variable": d.variable,
            "label": d.label,
            "in_model": d.in_model,
            "status": d.status,
            "psi": res.psi if res else None,
            "p_value": res.p_value if res else None,
            "critical_psi": res.critical_psi if res else None,
            "detail": d.describe(),
        }
    )


# --- Markdown and display tables --------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}<>#|!~])")


def _md(text: Any) -> str:
    """Escape text that came from data so Markdown shows it literally."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("&", "&amp;")


def _pct(x) -> str:
    return "not enough data" if x is None or pd.isna(x) else f"{x:.1%}"


def _money(x) -> str:
    return "not enough data" if x is None or pd.isna(x) else f"{x:,.0f}"


def _bullets(items) -> str:
    return "\n".join(f"- {_md(i)}" for i in items)


def _summary_markdown(r: ReviewResult) -> str:
    v = r.verdict
    lines = [f"**{_md(v.headline)}**", "", _bullets(v.reasons)]
    if r.findings:
        lines += ["", "Also worth knowing:", "", _bullets(r.findings)]
    return "\n".join(lines)


def _model_md(r: ReviewResult) -> str:
    m = r.model
    if not m.get("model_id"):
        return f"No model could be reviewed: {_md(m.get('problem') or 'none given')}."
    kind = (
        "the deployed model named in the config"
        if m["source"] == "deployed"
        else "the model fitted on the quarters before the review quarter"
    )
    window = ", ".join(m.get("training_quarters") or []) or "not recorded"
    text = (
        f"This review checks {kind} ({_md(m['model_id'])}), trained on {_md(window)}. "
    )
    text += (
        f"Its training ended before {_md(r.quarter)}, so this is an honest "
        "out-of-time check: the model never saw these records."
        if m.get("out_of_time")
        else f"Its training window overlaps {_md(r.quarter)}, so results look "
        "better than they will on new records."
    )
    return text


def _outcomes_md(r: ReviewResult) -> str:
    c = r.counts
    if c["records"] == 0:
        return (
            f"No records were created in {_md(r.quarter)}: there is nothing to judge."
        )
    closed = c["won"] + c["lost"]
    conv = f"{c['won'] / closed:.1%}" if closed else "not known yet"
    return (
        f"{c['records']:,} records were created in {_md(r.quarter)}: {c['won']:,} won, "
        f"{c['lost']:,} lost and {c['open']:,} still open. Open records have no "
        "outcome yet: they are shown but never counted as lost. Conversion of the "
        f"closed records: {conv}. While many deals are open, conversion rests on "
        "the deals that closed first, which can differ from the rest."
    )


def _ordering_md(r: ReviewResult) -> str:
    verdict = {
        "confirmed": "The grades still sort records in the right order.",
        "broken": "The grade order broke: a higher grade did not convert better.",
        "not yet clear": "The grade order is not yet clear from this quarter's data.",
        "not judged": "The grade order could not be judged.",
    }[r.ordering_verdict]
    lines = [f"**{verdict}**", ""]
    for t in r.ordering:
        lines.append(
            f"- Do {t.higher}s convert better than {t.lower}s? **{t.answer}** "
            f"({_md(t.reason)})"
        )
    return "\n".join(lines)


def _pipeline_md(r: ReviewResult) -> str:
    g = r.grades
    if g.empty:
        return "Pipeline and revenue per grade cannot be compared: no grades."
    lines = []
    for grade, row in g.iterrows():
        lines.append(
            f"- Grade {grade}: conversion {_pct(row['conversion'])} against "
            f"{_pct(row['expected_conversion'])} expected "
            f"({_diff(row, 'conversion', _pct_points)}); pipeline "
            f"{_money(row['pipeline'])} against {_money(row['expected_pipeline'])} "
            f"({_diff(row, 'pipeline', _money)}); revenue won "
            f"{_money(row['revenue'])} against {_money(row['expected_revenue'])} "
            f"({_diff(row, 'revenue', _money)}); {int(row['open'])} records open."
        )
    lines.append(
        "\nExpected figures are calibration's conversion, and its pipeline and "
        "revenue per record times this quarter's records. The range after each "
        "difference is its 95% interval: a range that straddles zero means the "
        "quarter is in line with expectations. Revenue from records still open is "
        "not in yet, so revenue below expectation is normal early on."
    )
    return "\n".join(lines)


def _pct_points(x) -> str:
    return "not enough data" if pd.isna(x) else f"{100 * x:+.1f} points"


def _diff(row: pd.Series, name: str, fmt) -> str:
    diff = row[f"{name}_diff"]
    if pd.isna(diff):
        return "difference: not enough data"
    lo, hi = row[f"{name}_diff_low"], row[f"{name}_diff_high"]
    if pd.isna(lo):
        return f"difference {fmt(diff)}"
    return f"difference {fmt(diff)}, 95% interval {fmt(lo)} to {fmt(hi)}"


def _drift_md(r: ReviewResult) -> str:
    alerts = r.drift_alerts()
    if not r.drift:
        return "Drift could not be judged."
    head = (
        "Neither the score nor any model field changed beyond what chance explains."
        if not alerts
        else "In the score and the model's fields, these changed between the "
        "training window and the quarter:"
    )
    lines = [head, ""] + [f"- {_md(d.describe())}" for d in alerts]
    others = [d for d in r.drift if not d.in_model and d.status == "shifted"]
    if others:
        lines += ["", "Fields the model does not use that shifted (context only):", ""]
        lines += [f"- {_md(d.describe())}" for d in others]
    moved = r.conversion_drift[
        r.conversion_drift["direction"].isin(["dropped", "rose"])
    ]
    if len(moved):
        lines += ["", "Conversion changed for these levels:", ""]
        lines += [
            f"- {_md(row.label)}: {_md(_level_change(row))}"
            for row in moved.itertuples()
        ]
    lines += [
        "",
        "PSI measures how much a mix changed (0 = none; 0.10 and more is material). "
        "Its p-value says whether the change is larger than sampling noise for "
        "these sample sizes; a field is *shifted* when both hold.",
    ]
    return "\n".join(lines)


def _feedback_md(r: ReviewResult) -> str:
    fb = r.feedback
    if fb is None:
        return "No sales feedback is configured, so reps' verdicts cannot be reviewed."
    trend = (
        "not enough data for a trend"
        if pd.isna(fb.trend_p_value)
        else f"the negative share {'rises' if fb.trend_slope > 0 else 'falls'} by "
        f"{abs(fb.trend_slope):.1%} a month (p = {fb.trend_p_value:.2g})"
    )
    lines = [
        f"{fb.rows_used:,} of {fb.rows_read:,} feedback rows were used. Negative "
        f"share in {_md(r.quarter)}: {_pct(fb.bad_share)}; over the months shown, "
        f"{trend}.",
    ]
    if len(fb.top_reasons):
        reasons = [
            f"{r.reason}: {r.rows} ({r.share:.0%} of bad-fit verdicts)"
            for r in fb.top_reasons.itertuples()
        ]
        lines += ["", "Top reasons given for a bad fit:", "", _bullets(reasons)]
    if fb.alerts:
        lines += ["", "**Alerts:**", "", _bullets(fb.alerts)]
    if fb.problems:
        lines += ["", "Left out:", "", _bullets(fb.problems)]
    return "\n".join(lines)


def _history_md(r: ReviewResult) -> str:
    quarters = sorted(set(r.history["quarter"]))
    if len(quarters) <= 1:
        return "No earlier quarterly reviews were found, so there is no history yet."
    overall = r.history[r.history["grade"] == "all"]
    shown = ", ".join(
        f"{_md(row.quarter)} {_pct(row.conversion)}" for row in overall.itertuples()
    )
    return (
        f"Conversion over {len(quarters)} reviewed quarters, all records: {shown}. "
        "The table shows each grade quarter by quarter; figures of the latest "
        "quarters rise as their open records close."
    )


_SECTIONS = {
    "model": _model_md,
    "outcomes": _outcomes_md,
    "ordering": _ordering_md,
    "pipeline": _pipeline_md,
    "drift": _drift_md,
    "feedback": _feedback_md,
    "history": _history_md,
}


def _grade_display(g: pd.DataFrame) -> pd.DataFrame:
    if g.empty:
        return pd.DataFrame()
    interval = [
        "not enough data" if pd.isna(lo) else f"{lo:.1%} to {hi:.1%}"
        for lo, hi in zip(g["conversion_low"], g["conversion_high"], strict=True)
    ]
    return pd.DataFrame(
        {
            "Records": g["records"],
            "Still open": g["open"],
            "Won": g["wins"],
            "Closed": g["closed"],
            "Conversion": g["conversion"].map(_pct),
            "95% interval": interval,
            "Expected": g["expected_conversion"].map(_pct),
            "Pipeline": g["pipeline"].map(_money),
            "Expected pipeline": g["expected_pipeline"].map(_money),
            "Revenue won": g["revenue"].map(_money),
            "Expected revenue": g["expected_revenue"].map(_money),
        },
        index=g.index,
    )


def _drift_display(drift) -> pd.DataFrame:
    rows = []
    for d in drift:
        res = d.result
        rows.append(
            {
                "Variable": d.label,
                "In model": "yes" if d.in_model else "no",
                "PSI": "not judged"
                if res is None or pd.isna(res.psi)
                else f"{res.psi:.3f}",
                "Significant from": "" if res is None else f"{res.critical_psi:.3f}",
                "p-value": "" if res is None else f"{res.p_value:.2g}",
                "Status": d.status,
                "Moved most": "" if res is None else ", ".join(res.top_movers(2)),
            }
        )
    # The variable names each row; a row number would only distract.
    return pd.DataFrame(rows).set_index("Variable") if rows else pd.DataFrame(rows)
