"""Grade calibration: how fast conversion falls with the score, and grades A-D.

The score of a record is an integer from 0 to ``max_score``. This module
answers three questions for notebook 03:

- :func:`falloff`: how conversion and revenue fall as the score drops
  (score bands with Wilson intervals; gains and lift curves);
- :func:`cut_grades`: where to cut the score into grades A, B, C and D,
  either at fixed thresholds from the config or at cut points chosen from
  the data;
- :func:`grade_table`: per grade, records, wins, conversion with interval,
  pipeline and revenue, one-sided tests between adjacent grades, a trend
  test over all four, and a verdict on whether the grades are ordered.

:func:`expected_baseline` and :func:`grades_entry` turn the grade table into
the ``grades`` entry of model.json, which the quarterly review checks.

Conventions: conversion counts closed records only (``won`` is 1 or 0);
open records (``won`` NaN) count as records and pipeline, never as lost.
Pipeline is the summed ``amount`` of every record of a grade; revenue the
summed ``amount`` of its won records.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ._stats import (
    cochran_armitage_trend,
    one_sided_proportion_test,
    safe_ratio,
    wilson_interval,
)
from .config import GradesConfig
from .errors import DataError, FallbackWarning, ModelError

__all__ = [
    "GRADES",
    "CUT_GRADES",
    "GradeCuts",
    "GradeTable",
    "Falloff",
    "cut_grades",
    "check_cuts",
    "assign_grades",
    "grade_table",
    "falloff",
    "expected_baseline",
    "grades_entry",
    "Calibration",
    "calibrate",
]

logger = logging.getLogger(__name__)

GRADES = ("A", "B", "C", "D")
CUT_GRADES = ("A", "B", "C")
# Above this many distinct scores the data method searches quantile edges.
_MAX_CANDIDATES = 120


# --- cut points ---------------------------------------------------------------


@dataclass(frozen=True)
class GradeCuts:
    """Where the score is cut into grades.

    Attributes
    ----------
    method : str
        ``"fixed"`` (thresholds from the config) or ``"data"``.
    cuts : dict
        The lowest score of grades A, B and C; D is everything below C.
    notes : tuple of str
        Fallbacks and remarks in plain words, shown in the report.
    """

    method: str
    cuts: dict[str, int]
    notes: tuple[str, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        """Return the cuts as a JSON-ready dict."""
        return {
            "method": self.method,
            "cuts": dict(self.cuts),
            "notes": list(self.notes),
        }


def check_cuts(cuts: Mapping[str, Any], *, max_score: int = 100) -> dict[str, int]:
    """Validate grade cut points and return them as integers.

    Parameters
    ----------
    cuts : mapping
        The lowest score of grades ``A``, ``B`` and ``C``.
    max_score : int, default 100
        The highest score the card gives.

    Returns
    -------
    dict
        ``{"A": int, "B": int, "C": int}``.

    Raises
    ------
    ModelError
        If a grade is missing, a cut is not a whole number, or the cuts do
        not fall strictly (``max_score >= A > B > C > 0``): equal or rising
        cuts would make grades overlap or leave one empty.
    """
    if not isinstance(cuts, Mapping) or set(cuts) != set(CUT_GRADES):
        raise ModelError(
            f"grade cuts need exactly the keys {list(CUT_GRADES)}; found {cuts!r}"
        )
    out = {}
    for g in CUT_GRADES:
        value = cuts[g]
        if isinstance(value, bool) or not float(value).is_integer():
            raise ModelError(f"grade cut {g} must be a whole number; found {value!r}")
        out[g] = int(value)
    if not max_score >= out["A"] > out["B"] > out["C"] > 0:
        raise ModelError(
            f"grade cuts must fall strictly, {max_score} >= A > B > C > 0, so that "
            f"grades neither overlap nor leave a gap; found A={out['A']}, "
            f"B={out['B']}, C={out['C']}; fix grades.thresholds in the config"
        )
    return out


def assign_grades(scores: pd.Series, cuts: Mapping[str, int]) -> pd.Series:
    """Return the grade letter of each score.

    A score ``s`` is A when ``s >= cuts["A"]``, else B when ``s >= cuts["B"]``,
    else C when ``s >= cuts["C"]``, else D. Missing scores stay missing.
    """
    s = pd.to_numeric(scores, errors="coerce")
    letters = np.select(
        [s >= cuts["A"], s >= cuts["B"], s >= cuts["C"], s.notna()],
        ["A", "B", "C", "D"],
        default="",
    )
    return pd.Series(letters, index=scores.index, dtype="str").replace("", pd.NA)


def cut_grades(
    scores: pd.Series,
    won: pd.Series,
    *,
    config: GradesConfig,
    max_score: int = 100,
) -> GradeCuts:
    """Choose the score cut points of grades A, B, C and D.

    Parameters
    ----------
    scores : Series of int
        The score of each record.
    won : Series of float
        1 for won, 0 for lost, NaN for open records (same index).
    config : GradesConfig
        ``method: fixed`` takes ``thresholds``; ``method: data`` searches the
        cut points that maximise how well the four grades separate winners
        (binomial log-likelihood) such that conversion falls strictly from A
        to D and each grade holds at least ``min_share`` of the records and
        ``min_wins`` wins.
    max_score : int, default 100
        The highest score of the card.

    Returns
    -------
    GradeCuts

    Raises
    ------
    ModelError
        If fixed thresholds overlap, leave a gap or exceed ``max_score``.
    DataError
        If a grade would hold no record (fixed thresholds outside the scores
        seen, or fewer than four distinct scores).

    Warns
    -----
    FallbackWarning
        When no cut points meet every rule of the data method and a weaker
        rule set was used; the notes say which.

    Examples
    --------
    >>> cuts = cut_grades(scored["score"], scored["won"], config=cfg.grades)
    >>> cuts.cuts
    {'A': 81, 'B': 62, 'C': 40}
    """
    s = pd.to_numeric(pd.Series(scores), errors="coerce")
    w = pd.to_numeric(pd.Series(won), errors="coerce").reindex(s.index)
    if config.method == "fixed":
        cuts = check_cuts(config.thresholds or {}, max_score=max_score)
        _check_not_empty(s, cuts)
        return GradeCuts("fixed", cuts, ())
    return _cut_from_data(s[s.notna()], w[s.notna()], config)


def _check_not_empty(scores: pd.Series, cuts: dict[str, int]) -> None:
    counts = assign_grades(scores, cuts).value_counts()
    empty = [g for g in GRADES if counts.get(g, 0) == 0]
    if empty:
        raise DataError(
            f"grade(s) {', '.join(empty)} would hold no record with thresholds "
            f"A={cuts['A']}, B={cuts['B']}, C={cuts['C']}; the scores run from "
            f"{_fmt(scores.min())} to {_fmt(scores.max())}; change "
            "grades.thresholds in the config or use grades.method: data"
        )


def _fmt(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:g}"


@dataclass(frozen=True)
class _Candidates:
    """Per distinct score (ascending): records, closed records and wins."""

    values: np.ndarray
    records: np.ndarray
    closed: np.ndarray
    wins: np.ndarray


def _candidates(scores: pd.Series, won: pd.Series) -> _Candidates:
    frame = pd.DataFrame({"s": scores.to_numpy(), "w": won.to_numpy()})
    g = frame.groupby("s", sort=True)["w"]
    return _Candidates(
        values=g.size().index.to_numpy(dtype=float),
        records=g.size().to_numpy(dtype=float),
        closed=g.count().to_numpy(dtype=float),
        wins=g.sum(min_count=0).to_numpy(dtype=float),
    )


def _edges(cand: _Candidates) -> np.ndarray:
    """Indices where a grade may start: every distinct score, or quantiles."""
    idx = np.arange(1, len(cand.values))
    if len(idx) <= _MAX_CANDIDATES:
        return idx
    share = np.cumsum(cand.records) / cand.records.sum()
    picks = np.searchsorted(share, np.linspace(0, 1, _MAX_CANDIDATES + 2)[1:-1])
    return np.unique(np.clip(picks, 1, len(cand.values) - 1))


def _group_sums(prefix: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Sum per grade D, C, B, A from prefix sums and (M, 3) start indices."""
    k = len(prefix) - 1
    starts = np.column_stack([np.zeros(len(bounds), int), bounds])
    ends = np.column_stack([bounds, np.full(len(bounds), k)])
    return prefix[ends] - prefix[starts]


def _loglik(wins: np.ndarray, closed: np.ndarray) -> np.ndarray:
    p = safe_ratio(wins, closed)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = wins * np.log(p) + (closed - wins) * np.log1p(-p)
    return np.nan_to_num(terms, nan=0.0).sum(axis=1)


def _cut_from_data(scores: pd.Series, won: pd.Series, config: GradesConfig):
    # Cuts are whole numbers: a record belongs to a grade by ceil(score), so
    # searching over those values gives exactly the partitions cuts can make.
    cand = _candidates(np.ceil(scores), won)
    if len(cand.values) < 4:
        raise DataError(
            f"the scores take only {len(cand.values)} distinct value(s) "
            f"({', '.join(_fmt(v) for v in cand.values)}); four grades need at "
            "least four; the model has too few fields or levels to grade"
        )
    bounds = np.array(list(itertools.combinations(_edges(cand), 3)))
    sums = {
        name: _group_sums(np.concatenate([[0.0], np.cumsum(arr)]), bounds)
        for name, arr in (
            ("records", cand.records),
            ("closed", cand.closed),
            ("wins", cand.wins),
        )
    }
    fit = _loglik(sums["wins"], sums["closed"])
    for rules, note in _rule_sets(config):
        ok = _feasible(sums, rules, config, scores.size)
        if ok.any():
            best = bounds[np.flatnonzero(ok)[np.argmax(fit[ok])]]
            found = {g: int(cand.values[i]) for g, i in zip("CBA", best, strict=True)}
            cuts = {g: found[g] for g in CUT_GRADES}
            if note:
                warnings.warn(note, FallbackWarning, stacklevel=3)
            return GradeCuts("data", cuts, (note,) if note else ())
    raise DataError("no cut points give four non-empty grades")  # pragma: no cover


def _rule_sets(config: GradesConfig):
    yield {"ordered", "share", "wins"}, ""
    yield (
        {"share", "wins"},
        "no cut points make conversion fall strictly from A to D while each "
        f"grade holds {config.min_share:.0%} of records and {config.min_wins} "
        "wins; the cuts below separate wins best but the grades are not "
        "ordered: treat them with care",
    )
    yield (
        set(),
        f"no cut points give every grade {config.min_share:.0%} of records and "
        f"{config.min_wins} wins; the cuts below only keep every grade "
        "non-empty: the grades rest on very few records",
    )


def _feasible(sums, rules, config: GradesConfig, total: int) -> np.ndarray:
    ok = (sums["records"] > 0).all(axis=1)
    if "share" in rules:
        ok &= (sums["records"] >= config.min_share * total).all(axis=1)
    if "wins" in rules:
        ok &= (sums["wins"] >= config.min_wins).all(axis=1)
    if "ordered" in rules:
        conv = safe_ratio(sums["wins"], sums["closed"])
        ok &= (np.diff(conv, axis=1) > 0).all(axis=1)  # D < C < B < A
    return ok


# --- grade table ----------------------------------------------------------------


@dataclass(frozen=True)
class GradeTable:
    """Size, conversion and money per grade, with ordering tests.

    Attributes
    ----------
    frame : DataFrame
        One row per grade A-D (index ``grade``): ``records``, ``share``,
        ``closed``, ``wins``, ``conversion``, ``conversion_low``,
        ``conversion_high``, ``pipeline``, ``revenue``, ``avg_deal``,
        ``pipeline_per_record``, ``revenue_per_record``.
    cuts : dict
        The cut points used.
    adjacent : DataFrame
        One row per pair (A vs B, B vs C, C vs D): ``upper``, ``lower``,
        ``difference``, ``z``, ``p_value``, ``significant``, ``note``.
    trend : dict
        Cochran-Armitage test that conversion falls from A to D:
        ``z``, ``p_value``, ``significant``, ``note``.
    ordered : bool
        True when conversion falls strictly A > B > C > D, every adjacent
        test and the trend test are significant at ``alpha``.
    verdict : str
        The verdict in plain words.
    alpha : float
        Significance level of the tests.
    """

    frame: pd.DataFrame
    cuts: dict[str, int]
    adjacent: pd.DataFrame
    trend: dict[str, Any]
    ordered: bool
    verdict: str
    alpha: float
    notes: tuple[str, ...] = field(default=())

    @property
    def falls(self) -> bool:
        """True when conversion falls strictly from A to D and the trend test
        is significant (adjacent steps may still be within noise)."""
        conv = self.frame["conversion"].to_numpy()
        return bool(np.all(np.diff(conv) < 0)) and bool(self.trend["significant"])

    def summary_markdown(self) -> str:
        """Return the verdict and the tests as a short Markdown text."""
        lines = [f"**{escape(self.verdict)}**", ""]
        for row in self.adjacent.itertuples():
            lines.append(f"- {_pair_sentence(row, self.alpha)}")
        lines.append(f"- {_trend_sentence(self.trend, self.alpha)}")
        lines += [f"- {escape(n)}" for n in self.notes]
        return "\n".join(lines)

    def display_frame(self) -> pd.DataFrame:
        """Return the table with readable column names for a report."""
        f, level = self.frame, f"{1 - self.alpha:.0%}"
        return pd.DataFrame(
            {
                "Score from": [self.cuts.get(g, 0) for g in f.index],
                "Records": f["records"],
                "Share": f["share"].map(_pct),
                "Wins": f["wins"],
                "Conversion": f["conversion"].map(_pct),
                f"{level} interval": _intervals(f, "conversion", _pct),
                "Pipeline": f["pipeline"].map(_money),
                "Revenue": f["revenue"].map(_money),
                "Average deal": f["avg_deal"].map(_money),
            },
            index=f.index,
        )


def _pct(x: float) -> str:
    return "not enough data" if pd.isna(x) else f"{x:.1%}"


def _money(x: float) -> str:
    return "not enough data" if pd.isna(x) else f"{x:,.0f}"


def _interval(lo: float, hi: float, fmt=_pct) -> str:
    return "not enough data" if pd.isna(lo) else f"{fmt(lo)} to {fmt(hi)}"


def _intervals(frame: pd.DataFrame, column: str, fmt) -> list[str]:
    lows, highs = frame[f"{column}_low"], frame[f"{column}_high"]
    return [_interval(lo, hi, fmt) for lo, hi in zip(lows, highs, strict=True)]


def _pair_sentence(row, alpha: float) -> str:
    head = f"{row.upper} against {row.lower}: "
    if pd.isna(row.p_value):
        return head + f"not enough data to test ({escape(row.note)})."
    word = "converts" if row.significant else "does not convert"
    return (
        head + f"{row.upper} {word} significantly better than {row.lower} "
        f"(difference {row.difference:+.1%}, one-sided p = {row.p_value:.3g})."
    )


def _trend_sentence(trend: Mapping[str, Any], alpha: float) -> str:
    if trend["p_value"] is None or pd.isna(trend["p_value"]):
        return f"Trend over A to D: not enough data ({escape(trend['note'])})."
    word = "falls" if trend["significant"] else "does not fall significantly"
    return (
        f"Trend over A to D: conversion {word} from grade to grade "
        f"(Cochran-Armitage, one-sided p = {trend['p_value']:.3g})."
    )


def require_columns(frame: pd.DataFrame, needed: tuple[str, ...], *, what: str):
    """Raise DataError naming the columns ``what`` needs and does not find."""
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what} needs columns {list(needed)}; missing {missing}; "
            f"columns present: {list(frame.columns)[:20]}"
        )


def _per_grade(frame: pd.DataFrame, alpha: float) -> pd.DataFrame:
    won = pd.to_numeric(frame["won"], errors="coerce")
    amount = pd.to_numeric(frame["amount"], errors="coerce")
    work = pd.DataFrame(
        {
            "grade": pd.Categorical(frame["grade"], categories=GRADES),
            "won": won,
            "amount": amount,
            "revenue": amount.where(won == 1),
        }
    )
    g = work.groupby("grade", observed=False)
    out = pd.DataFrame(
        {
            "records": g.size(),
            "closed": g["won"].count(),
            "wins": g["won"].sum(min_count=0).astype("int64"),
            "pipeline": g["amount"].sum(min_count=0),
            "revenue": g["revenue"].sum(min_count=0),
        }
    )
    out.index = pd.Index([str(i) for i in out.index], name="grade")
    return _add_rates(out, alpha)


def _add_rates(out: pd.DataFrame, alpha: float) -> pd.DataFrame:
    low, high = wilson_interval(out["wins"], out["closed"], alpha=alpha)
    records = out["records"]
    return out.assign(
        share=safe_ratio(records, records.sum()),
        conversion=safe_ratio(out["wins"], out["closed"]),
        conversion_low=low,
        conversion_high=high,
        avg_deal=safe_ratio(out["revenue"], out["wins"]),
        pipeline_per_record=safe_ratio(out["pipeline"], records),
        revenue_per_record=safe_ratio(out["revenue"], records),
    )[
        [
            "records",
            "share",
            "closed",
            "wins",
            "conversion",
            "conversion_low",
            "conversion_high",
            "pipeline",
            "revenue",
            "avg_deal",
            "pipeline_per_record",
            "revenue_per_record",
        ]
    ]


def _adjacent_tests(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    rows = []
    for upper, lower in itertools.pairwise(GRADES):
        a, b = table.loc[upper], table.loc[lower]
        res = one_sided_proportion_test(
            int(a["wins"]), int(a["closed"]), int(b["wins"]), int(b["closed"])
        )
        rows.append(
            {
                "upper": upper,
                "lower": lower,
                "difference": res.effect,
                "z": res.statistic,
                "p_value": res.p_value,
                "significant": res.significant(alpha),
                "note": res.note,
            }
        )
    return pd.DataFrame(rows)


def _trend_test(table: pd.DataFrame, alpha: float) -> dict[str, Any]:
    # Scores 3..0 for A..D: "larger" tests that conversion rises towards A.
    res = cochran_armitage_trend(
        table["wins"].to_numpy(),
        table["closed"].to_numpy(),
        scores=[3, 2, 1, 0],
        alternative="larger",
    )
    return {
        "method": res.method,
        "z": float(res.statistic),
        "p_value": float(res.p_value),
        "significant": res.significant(alpha),
        "note": res.note,
    }


def _verdict(table, adjacent, trend) -> tuple[bool, str]:
    conv = table["conversion"].to_numpy()
    falls = bool(np.all(np.diff(conv) < 0))
    all_adjacent = bool(adjacent["significant"].all())
    if falls and all_adjacent and trend["significant"]:
        return (
            True,
            "The grades are ordered: A converts better than B, B than C, C than D.",
        )
    if falls and trend["significant"]:
        return False, (
            "The grades are partly ordered: conversion falls from A to D overall, "
            "but not every step between neighbouring grades is significant."
        )
    if np.isnan(conv).any():
        return False, "The grades cannot be judged: a grade has no closed record."
    return False, (
        "The grades are not ordered: conversion does not fall from A to D; do not "
        "use these grades to prioritise records."
    )


def grade_table(
    frame: pd.DataFrame,
    *,
    cuts: Mapping[str, int],
    alpha: float = 0.05,
) -> GradeTable:
    """Summarise each grade and test whether the grades are ordered.

    Parameters
    ----------
    frame : DataFrame
        One row per record with ``score``, ``grade`` (A-D), ``won`` (1, 0 or
        NaN for open) and ``amount`` (NaN allowed).
    cuts : mapping
        The cut points that produced ``grade`` (shown in the table).
    alpha : float, default 0.05
        Significance level of the one-sided tests between adjacent grades
        and of the trend test; the intervals are ``1 - alpha`` Wilson
        intervals.

    Returns
    -------
    GradeTable

    Raises
    ------
    DataError
        If a needed column is missing.
    """
    require_columns(frame, ("score", "grade", "won", "amount"), what="the grade table")
    table = _per_grade(frame, alpha)
    adjacent = _adjacent_tests(table, alpha)
    trend = _trend_test(table, alpha)
    ordered, verdict = _verdict(table, adjacent, trend)
    empty = [g for g in GRADES if table.loc[g, "records"] == 0]
    notes = (f"grade(s) {', '.join(empty)} hold no record",) if empty else ()
    return GradeTable(
        table, dict(cuts), adjacent, trend, ordered, verdict, alpha, notes
    )


# --- fall-off -------------------------------------------------------------------


@dataclass(frozen=True)
class Falloff:
    """How conversion and revenue fall as the score drops.

    Attributes
    ----------
    bands : DataFrame
        One row per score band (highest first): ``band``, ``low``, ``high``,
        ``records``, ``closed``, ``wins``, ``conversion`` with
        ``conversion_low``/``conversion_high`` (Wilson), ``revenue``,
        ``revenue_per_record`` with ``revenue_per_record_low``/``_high``
        (normal interval of the mean; open records count as zero revenue).
    gains : DataFrame
        The gains curve over closed records sorted by score, highest first,
        one point per distinct score: ``score``, ``share_records``,
        ``share_wins``, ``share_revenue``, ``lift``. Records with tied
        scores enter together.
    capture : DataFrame
        Share of wins and of revenue captured by the top X% of closed
        records (``top`` 0.1, 0.2, 0.3, 0.5), and the lift there; ties are
        taken in random order on average (linear interpolation).
    overall_conversion : float
    alpha : float
        One minus the confidence level of the intervals.
    """

    bands: pd.DataFrame
    gains: pd.DataFrame
    capture: pd.DataFrame
    overall_conversion: float
    alpha: float = 0.05

    def display_frame(self) -> pd.DataFrame:
        """Return the score bands with readable column names for a report."""
        b, level = self.bands, f"{1 - self.alpha:.0%}"
        return pd.DataFrame(
            {
                "Score band": b["band"],
                "Records": b["records"],
                "Closed": b["closed"],
                "Wins": b["wins"],
                "Conversion": b["conversion"].map(_pct),
                f"{level} interval": _intervals(b, "conversion", _pct),
                "Revenue per record": b["revenue_per_record"].map(_money),
                f"{level} interval ": _intervals(b, "revenue_per_record", _money),
            }
        ).set_index("Score band")

    def summary_markdown(self) -> str:
        """Return the main fall-off numbers as a short Markdown text."""
        if self.capture.empty or pd.isna(self.overall_conversion):
            return "Not enough closed records to study the fall-off."
        lines = [
            f"Overall conversion of closed records: {_pct(self.overall_conversion)}."
        ]
        for row in self.capture.itertuples():
            lines.append(
                f"- The top {row.top:.0%} of records by score hold "
                f"{_pct(row.share_wins)} of the wins and {_pct(row.share_revenue)} "
                f"of the revenue (lift {row.lift:.2f})."
            )
        return "\n".join(lines)


def falloff(
    frame: pd.DataFrame,
    *,
    band_width: int = 10,
    max_score: int = 100,
    alpha: float = 0.05,
    tops: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5),
) -> Falloff:
    """Study how conversion and revenue fall off as the score drops.

    Parameters
    ----------
    frame : DataFrame
        One row per record with ``score``, ``won`` (1, 0, NaN for open) and
        ``amount``.
    band_width : int, default 10
        Width of the score bands (``0-9``, ``10-19``, ... the last band
        includes ``max_score``).
    max_score : int, default 100
    alpha : float, default 0.05
        One minus the confidence level of the Wilson intervals.
    tops : tuple of float
        The top shares of records for the capture table.

    Returns
    -------
    Falloff
    """
    require_columns(frame, ("score", "won", "amount"), what="the fall-off")
    if band_width < 1:
        raise ValueError(f"band_width must be at least 1; found {band_width}")
    bands = _bands(frame, band_width, max_score, alpha)
    gains = _gains(frame)
    closed = pd.to_numeric(frame["won"], errors="coerce").dropna()
    overall = float(closed.mean()) if len(closed) else math.nan
    return Falloff(bands, gains, _capture(gains, tops), overall, alpha)


def _bands(frame, width: int, max_score: int, alpha: float) -> pd.DataFrame:
    lows = np.arange(0, max_score + 1, width)
    lows = lows[lows < max_score] if len(lows) > 1 else lows
    score = pd.to_numeric(frame["score"], errors="coerce")
    idx = np.clip(np.floor(score / width), 0, len(lows) - 1)
    label = [f"{lo}-{lo + width - 1}" for lo in lows[:-1]] + [f"{lows[-1]}-{max_score}"]
    won = pd.to_numeric(frame["won"], errors="coerce")
    amount = pd.to_numeric(frame["amount"], errors="coerce")
    rev = amount.where(won == 1, 0.0).fillna(0.0)
    g = pd.DataFrame({"i": idx, "won": won, "rev": rev}).groupby("i")
    out = pd.DataFrame(
        {
            "records": g.size(),
            "closed": g["won"].count(),
            "wins": g["won"].sum(),
            "revenue": g["rev"].sum(),
        }
    ).reindex(range(len(lows)), fill_value=0)
    out = out.astype({"wins": "int64"})
    low, high = wilson_interval(out["wins"], out["closed"], alpha=alpha)
    rev_low, rev_high = _mean_interval(g["rev"], out.index, alpha)
    out = out.assign(
        band=label,
        low=lows,
        high=[*(lows[1:] - 1), max_score],
        conversion=safe_ratio(out["wins"], out["closed"]),
        conversion_low=low,
        conversion_high=high,
        revenue_per_record=safe_ratio(out["revenue"], out["records"]),
        revenue_per_record_low=rev_low,
        revenue_per_record_high=rev_high,
    )
    cols = ["band", "low", "high", "records", "closed", "wins", "conversion"]
    cols += ["conversion_low", "conversion_high", "revenue", "revenue_per_record"]
    cols += ["revenue_per_record_low", "revenue_per_record_high"]
    return out[cols].iloc[::-1].reset_index(drop=True)


def _mean_interval(groups, index, alpha: float):
    """Normal interval of a mean per group (NaN below two records), floored
    at zero: revenue per record cannot be negative."""
    mean = groups.mean().reindex(index)
    n = groups.count().reindex(index).fillna(0)
    half = stats.norm.ppf(1 - alpha / 2) * groups.std(ddof=1).reindex(index)
    half = half / np.sqrt(n.where(n > 1))
    return (mean - half).clip(lower=0.0).to_numpy(), (mean + half).to_numpy()


def _gains(frame: pd.DataFrame) -> pd.DataFrame:
    won = pd.to_numeric(frame["won"], errors="coerce")
    closed = frame.assign(
        won=won,
        rev=pd.to_numeric(frame["amount"], errors="coerce").where(won == 1).fillna(0.0),
    )[won.notna()]
    g = closed.groupby("score", sort=True).agg(n=("won", "size"), w=("won", "sum"))
    g["r"] = closed.groupby("score")["rev"].sum()
    g = g.iloc[::-1]
    n, w, r = g["n"].cumsum(), g["w"].cumsum(), g["r"].cumsum()
    share_records = safe_ratio(n, n.iloc[-1] if len(n) else 0)
    share_wins = safe_ratio(w, w.iloc[-1] if len(w) else 0)
    out = pd.DataFrame(
        {
            "score": g.index.to_numpy(),
            "share_records": share_records,
            "share_wins": share_wins,
            "share_revenue": safe_ratio(r, r.iloc[-1] if len(r) else 0),
            "lift": safe_ratio(share_wins, share_records),
        }
    )
    start = pd.DataFrame(
        {
            "score": [np.nan],
            "share_records": [0.0],
            "share_wins": [0.0],
            "share_revenue": [0.0],
            "lift": [np.nan],
        }
    )
    return pd.concat([start, out], ignore_index=True) if len(out) else out


def _capture(gains: pd.DataFrame, tops) -> pd.DataFrame:
    if gains.empty:
        return pd.DataFrame(columns=["top", "share_wins", "share_revenue", "lift"])
    x = gains["share_records"].to_numpy()
    wins = np.interp(tops, x, gains["share_wins"].to_numpy())
    rev = np.interp(tops, x, gains["share_revenue"].to_numpy())
    return pd.DataFrame(
        {
            "top": tops,
            "share_wins": wins,
            "share_revenue": rev,
            "lift": wins / np.asarray(tops),
        }
    )


# --- model.json -------------------------------------------------------------------


def _json_number(value: Any) -> float | int | None:
    if value is None or pd.isna(value):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    return float(value)


def expected_baseline(table: GradeTable) -> dict[str, dict[str, Any]]:
    """Return per grade the numbers the quarterly review checks against.

    Parameters
    ----------
    table : GradeTable

    Returns
    -------
    dict
        ``{grade: {records, conversion, conversion_low, conversion_high,
        pipeline_per_record, revenue_per_record}}``; undefined values
        (a grade without closed records) are ``None``.
    """
    keys = (
        "records",
        "conversion",
        "conversion_low",
        "conversion_high",
        "pipeline_per_record",
        "revenue_per_record",
    )
    return {g: {k: _json_number(table.frame.loc[g, k]) for k in keys} for g in GRADES}


def grades_entry(
    cuts: GradeCuts, table: GradeTable, *, not_for_deployment: bool
) -> dict[str, Any]:
    """Return the ``grades`` entry of model.json.

    Parameters
    ----------
    cuts : GradeCuts
    table : GradeTable
        The grade table on the training records.
    not_for_deployment : bool
        True when the model is not usable or the grades are not ordered.

    Returns
    -------
    dict
        ``method``, ``cuts``, ``not_for_deployment``, ``ordered``, ``notes``
        and ``expected`` (see :func:`expected_baseline`).
    """
    return {
        "method": cuts.method,
        "cuts": dict(cuts.cuts),
        "not_for_deployment": bool(not_for_deployment),
        "ordered": bool(table.ordered),
        "notes": [*cuts.notes, *table.notes],
        "expected": expected_baseline(table),
    }


# --- the whole step ---------------------------------------------------------------

STATUSES = ("ok", "not_for_deployment", "too_small", "no_score", "no_grades")


@dataclass(frozen=True)
class Calibration:
    """Everything notebook 03 shows and saves for one segment.

    Attributes
    ----------
    status : str
        ``"ok"``; ``"not_for_deployment"`` (grades shown, but the model is
        not usable or the grades are not ordered); ``"too_small"`` (the
        segment was too small to model); ``"no_score"`` (the model kept no
        field, so every record would score 0); ``"no_grades"`` (no valid
        grades could be cut; ``notes`` says why).
    records : DataFrame
        The training-window records: ``record_id``, ``score``, ``grade``,
        ``won`` (the model's outcome: won, or qualified) and ``amount``.
    scored : DataFrame
        Every record of the segment (open ones included), as returned by
        ``score_records`` with the grades: what the CRM imports.
    cuts, table, falloff
        The results of :func:`cut_grades`, :func:`grade_table` and
        :func:`falloff`; None when ``status`` is ``too_small``,
        ``no_score`` or ``no_grades`` (``falloff`` is still set for ``no_grades``).
    notes : tuple of str
        Fallbacks and reasons, in plain words.
    """

    status: str
    model_id: str
    target: str
    records: pd.DataFrame
    scored: pd.DataFrame
    cuts: GradeCuts | None
    table: GradeTable | None
    falloff: Falloff | None
    notes: tuple[str, ...] = ()

    @property
    def cut_points(self) -> dict[str, int] | None:
        """The grade cut points, or None when no grades were cut."""
        return None if self.cuts is None else dict(self.cuts.cuts)

    @property
    def deployable(self) -> bool:
        """True when the grades may go to the CRM."""
        return self.status == "ok"

    def grades_entry(self) -> dict[str, Any] | None:
        """Return the ``grades`` entry of model.json, or None."""
        if self.cuts is None or self.table is None:
            return None
        return grades_entry(
            self.cuts, self.table, not_for_deployment=not self.deployable
        )

    def banner_markdown(self) -> str:
        """Return the headline of the report: status and what it means."""
        lines = [_BANNERS[self.status]]
        lines += [f"- {escape(n)}" for n in self.notes]
        return "\n".join(lines)

    def cuts_markdown(self) -> str:
        """Return the cut points and how they were chosen, in words."""
        if self.cuts is None:
            return "No grades were cut."
        c = self.cuts.cuts
        how = (
            "fixed thresholds from the client config"
            if self.cuts.method == "fixed"
            else "cut points chosen from the data so that conversion falls from "
            "grade to grade and every grade holds enough records and wins"
        )
        return (
            f"Grades use {how}: **A** = score {c['A']} and above, **B** = "
            f"{c['B']} to {c['A'] - 1}, **C** = {c['C']} to {c['B'] - 1}, "
            f"**D** = below {c['C']}."
        )

    def table_frame(self) -> pd.DataFrame:
        """Return the grade table for display (empty when there is none)."""
        return pd.DataFrame() if self.table is None else self.table.display_frame()

    def table_markdown(self) -> str:
        """Return the verdict and the tests of the grade table."""
        if self.table is None:
            return "No grade table: no grades were cut."
        return self.table.summary_markdown()

    def falloff_frame(self) -> pd.DataFrame:
        """Return the score bands for display (empty when there are none)."""
        return pd.DataFrame() if self.falloff is None else self.falloff.display_frame()

    def falloff_markdown(self) -> str:
        """Return the fall-off numbers in words."""
        if self.falloff is None:
            return "Not enough data to study the fall-off."
        return self.falloff.summary_markdown()


_BANNERS = {
    "ok": "**The grades are ready for deployment.** They are saved in model.json "
    "and scores.csv holds every record of the segment for the CRM import.",
    "not_for_deployment": "**NOT FOR DEPLOYMENT.** The grades below are shown "
    "for information only; scores.csv is not written, so nothing reaches the "
    "CRM. Reasons:",
    "too_small": "**This segment was too small to model.** There is no score to "
    "grade; the data audit (notebook 01) says why. Nothing is exported.",
    "no_score": "**There is no score to grade.** The model fit kept no field "
    "(notebook 02 says why), so every record would score 0. Nothing is "
    "exported.",
    "no_grades": "**No grades could be cut.** Nothing is exported. Reasons:",
}


def _training_records(card, frame: pd.DataFrame) -> pd.DataFrame:
    quarters = (card.meta.get("training_window") or {}).get("quarters") or []
    if quarters and "quarter" in frame.columns:
        frame = frame[frame["quarter"].isin(quarters)]
    return frame


def _outcome(frame: pd.DataFrame, target: str) -> pd.Series:
    # With a qualified target every record has an outcome (qualified or not).
    if target == "qualified":
        return frame["qualified"].astype("float64")
    return pd.to_numeric(frame["won"], errors="coerce")


def _score_frame(card, frame: pd.DataFrame, target: str) -> pd.DataFrame:
    from ._card import score_records

    scored = score_records(card.with_grades(None), frame)
    return pd.DataFrame(
        {
            "record_id": scored["record_id"].to_numpy(),
            "score": scored["score"].to_numpy(),
            "won": _outcome(frame, target).to_numpy(),
            "amount": pd.to_numeric(frame["amount"], errors="coerce").to_numpy(),
        }
    )


def _not_deployable_reasons(card, table: GradeTable) -> list[str]:
    reasons = []
    if not card.usable:
        found = (
            "; ".join(map(str, card.verdict.get("reasons", []))) or "no reason given"
        )
        reasons.append(f"the model is not usable ({found})")
    if not table.falls:
        reasons.append(
            "conversion does not fall significantly from grade A to grade D on "
            "the training records"
        )
    return reasons


def calibrate(card, frame: pd.DataFrame, *, config) -> Calibration:
    """Run the grade calibration of one segment.

    Parameters
    ----------
    card : ScoreCard
        The model of notebook 02.
    frame : DataFrame
        The segment's modeling table (``ModelingTable.frame``): all its
        records. Cuts and statistics use the model's training window;
        every record is scored for the CRM export.
    config : Config
        The client config (``grades``, ``review.alpha``).

    Returns
    -------
    Calibration
    """
    target = str(card.meta.get("target", "won"))
    empty = pd.DataFrame(columns=["record_id", "score", "grade", "won", "amount"])
    if target == "too_small" or not card.fields:
        status = "too_small" if target == "too_small" else "no_score"
        return Calibration(
            status, card.model_id, target, empty, empty, None, None, None
        )
    records = _score_frame(card, _training_records(card, frame), target)
    fall = falloff(records, max_score=card.max_score, alpha=config.review.alpha)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FallbackWarning)
            cuts = cut_grades(
                records["score"], records["won"], config=config.grades,
                max_score=card.max_score,
            )  # fmt: skip
    except DataError as exc:
        return Calibration(
            "no_grades", card.model_id, target, records.assign(grade=pd.NA),
            empty, None, None, fall, (str(exc),),
        )  # fmt: skip
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    return _finish(card, frame, records, cuts, fall, config, target)


def _finish(card, frame, records, cuts: GradeCuts, fall, config, target):
    from ._card import score_records

    records = records.assign(grade=assign_grades(records["score"], cuts.cuts))
    table = grade_table(records, cuts=cuts.cuts, alpha=config.review.alpha)
    reasons = _not_deployable_reasons(card, table)
    status = "not_for_deployment" if reasons else "ok"
    notes = (*reasons, *cuts.notes, *table.notes)
    graded = card.with_grades({"method": cuts.method, "cuts": cuts.cuts})
    scored = score_records(graded, frame, top_reasons=config.export.top_reasons)
    return Calibration(
        status, card.model_id, target, records, scored, cuts, table, fall, notes
    )
