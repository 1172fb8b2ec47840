"""Model fit: screening, combined model, points card and scoring.

This module is step 2 of the method (notebook 02). :func:`fit_model` takes
the modeling table of one segment and the audit's decisions and returns a
:class:`ModelFit`:

1. each field the audit decided to use is encoded (:mod:`icp_lib._features`)
   and screened alone: a logistic regression (statsmodels) with a
   likelihood-ratio test, conversion per level with Wilson intervals and
   information value; fields significant after Holm's correction are kept;
2. the kept fields enter one ridge-penalized logistic regression, whose
   coefficients become integer points (the ideal record scores
   ``config.model.max_score``);
3. the card is fitted on the training window minus its last quarter and
   validated out of time on that quarter (AUC with a DeLong interval, KS,
   lift by decile, calibration), against a regularized logistic regression
   on every audited field; the final card is then refitted on the whole
   window;
4. records matching more ideal values should convert more: a trend test.

The points card itself, its model.json form and the scoring rules live in
:mod:`icp_lib._card`; :func:`score_file` applies a saved card to a file.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from . import _clean
from ._card import (
    CardBin,
    CardField,
    CardIndicator,
    CardLevel,
    ScoreCard,
    points_by_field,
    score_records,
    write_text_atomic,
)
from ._features import (
    MISSING,
    OTHER,
    Encoding,
    allocate_points,
    bin_labels,
    card_encoding,
    design_matrix,
    indicator_frame,
    information_value,
    level_labels,
    screen_encoding,
)
from ._stats import TestResult, cochran_armitage_trend, wilson_interval
from .config import Config, Segment
from .errors import FallbackWarning, ModelError

__all__ = [
    "ModelFit",
    "ScoreCard",
    "fit_model",
    "read_audit",
    "score_records",
    "score_file",
    "delong_auc",
]

logger = logging.getLogger(__name__)

HOLDOUT_SHARE = 0.3
MIN_VALIDATION_OUTCOMES = 10
RIDGE_C = 1.0
_SCREEN_COLUMNS = [
    "field", "label", "kind", "levels", "records", "wins", "lr_stat", "df",
    "design_effect", "p_value", "p_holm", "iv", "decision", "reason",
]  # fmt: skip
_LEVEL_COLUMNS = ["field", "level", "records", "wins", "conversion", "low", "high"]
_MATCH_COLUMNS = ["matches", "records", "wins", "conversion", "low", "high"]


# --- results ------------------------------------------------------------------


@dataclass(frozen=True)
class Windows:
    """Which quarters trained, validated and refitted the card."""

    review_quarter: str | None
    training: tuple[str, ...]
    development: tuple[str, ...]
    validation: tuple[str, ...]
    out_of_time: bool
    start: str | None = None
    end: str | None = None


@dataclass(frozen=True)
class Validation:
    """How the card ranked records it had not seen."""

    auc: float
    auc_low: float
    auc_high: float
    ks: float
    records: int
    wins: int
    lift: pd.DataFrame
    calibration: pd.DataFrame
    brier: float = math.nan
    method: str = "DeLong"


@dataclass(frozen=True)
class Comparison:
    """The card against a regularized model on every audited field."""

    fields: tuple[str, ...]
    auc: float
    auc_low: float
    auc_high: float
    difference: float
    difference_p: float


@dataclass(frozen=True)
class MatchAnalysis:
    """Conversion by the number of ideal values a record matches."""

    ideal: Mapping[str, tuple[str, ...]]
    table: pd.DataFrame
    trend: TestResult
    validation_trend: TestResult | None = None

    @property
    def more_is_better(self) -> bool:
        """True when conversion rises significantly with the match count."""
        return self.trend.significant(0.05) and self.trend.effect > 0


@dataclass(frozen=True)
class ModelFit:
    """Everything notebook 02 reports, and the card it writes.

    Attributes
    ----------
    segment, target : str
        The segment and the point of optimization ("won" or "qualified").
    windows : Windows
        Training, development and validation quarters.
    screening : DataFrame
        One row per audited field: test results, decision and reason.
    levels : DataFrame
        Conversion per level of every screened field, with intervals.
    matches : MatchAnalysis
    validation : Validation
    comparison : Comparison
    card : ScoreCard
        The final card (refitted on the whole training window).
    verdict : Mapping
        ``{"usable": bool, "reasons": [...]}``.
    notes : tuple of str
        Merges, penalties and fallbacks, in words.
    """

    segment: str
    target: str
    windows: Windows
    screening: pd.DataFrame
    levels: pd.DataFrame
    matches: MatchAnalysis
    validation: Validation
    comparison: Comparison
    card: ScoreCard
    verdict: Mapping[str, Any]
    notes: tuple[str, ...] = ()
    training_records: int = 0
    training_wins: int = 0

    @property
    def usable(self) -> bool:
        """Whether the card may be deployed."""
        return bool(self.verdict["usable"])

    @property
    def kept_fields(self) -> tuple[str, ...]:
        """Names of the fields on the card."""
        return tuple(f.name for f in self.card.fields)

    def summary_markdown(self) -> str:
        """Return the verdict and headline numbers as Markdown."""
        return _summary_markdown(self)

    def screening_markdown(self) -> str:
        """Return what screening kept and dropped, in words."""
        return _screening_markdown(self)

    def matches_markdown(self) -> str:
        """Return whether more matches mean more conversion, in words."""
        return _matches_markdown(self)

    def validation_markdown(self) -> str:
        """Return the validation and the comparison, in words."""
        return _validation_markdown(self)

    def notes_markdown(self) -> str:
        """Return merges, penalties and fallbacks as a Markdown list."""
        return _notes_markdown(self)

    def screening_table(self) -> pd.DataFrame:
        """Return the screening table with readable column names."""
        return _readable_screening(self.screening)

    def match_table(self) -> pd.DataFrame:
        """Return conversion by match count with readable column names."""
        return _readable_rates(self.matches.table, first="Ideal values matched")


# --- entry point --------------------------------------------------------------


def fit_model(
    table,
    *,
    config: Config,
    audit: Mapping[str, Any],
    quarter: str | None,
    segment: Segment,
) -> ModelFit:
    """Fit the ICP points card of one segment.

    Parameters
    ----------
    table : ModelingTable
        The segment's modeling table (``select_segment`` output).
    config : Config
        The client config (``config.model``, ``config.training``).
    audit : mapping
        The segment's audit.json content: the point of optimization
        (``target``) and each field's decision.
    quarter : str or None
        The review quarter ("2026Q3"); None or "" takes the last complete
        quarter of the data.
    segment : Segment
        The segment (name, label, conditions), written into model.json.

    Returns
    -------
    ModelFit
        When the audit found the segment too small to model, or no field
        passes screening, the fit still returns, with an empty card and a
        verdict that says why it is not usable.

    Raises
    ------
    ModelError
        If the training window holds no closed records, or a field the
        audit kept is not in the table.

    Examples
    --------
    >>> fit = fit_model(table, config=cfg, audit=audit, quarter="2026Q3",
    ...                 segment=seg)
    >>> fit.card.save("reports/2026Q3/b2b_new/model.json")
    """
    target, _ = _audit_target(audit)
    specs = _audited_specs(table, audit, config)
    if target == "too_small":
        return _too_small_fit(table, config, audit, quarter, segment)
    windows, dev, val, notes = _split(table, quarter, config, target)
    return _fit_all(
        _Context(table, config, segment, target, windows, specs),
        dev,
        val,
        notes,
    )


@dataclass(frozen=True)
class _Context:
    table: Any
    config: Config
    segment: Segment
    target: str
    windows: Windows
    specs: tuple


def _fit_all(ctx: _Context, dev: pd.DataFrame, val: pd.DataFrame, notes) -> ModelFit:
    dev_stage = _fit_stage(dev, ctx)
    validation = _validate(dev_stage, dev, val, ctx)
    comparison = _compare(dev, val, ctx, validation, dev_stage)

    full = pd.concat([dev, val]) if ctx.windows.out_of_time else _all_closed(ctx)
    final = _fit_stage(full, ctx)
    matches = _match_analysis(final.card, full, dev_stage.card, val)
    verdict = _verdict(final, dev_stage.card, validation, comparison, matches, ctx)
    notes = (*notes, *final.notes, *_dev_differs(dev_stage, final))
    card = _finish_card(final, validation, comparison, matches, verdict, ctx, full)
    return ModelFit(
        segment=ctx.segment.name,
        target=ctx.target,
        windows=ctx.windows,
        screening=final.screening,
        levels=final.levels,
        matches=matches,
        validation=validation,
        comparison=comparison,
        card=card,
        verdict=verdict,
        notes=tuple(dict.fromkeys(notes)),
        training_records=len(full),
        training_wins=int(full["_y"].sum()),
    )


def read_audit(output_dir: str | os.PathLike) -> dict[str, Any]:
    """Read audit.json from a segment's output folder.

    Raises
    ------
    ModelError
        If the file is missing or not JSON, saying to run notebook 01 first.
    """
    path = Path(output_dir) / "audit.json"
    if not path.is_file():
        raise ModelError(
            f"{path} not found; notebook 01 (data audit) writes it: run it for "
            "this segment first, or run the whole chain with make quarterly"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        msg = f"{path} is not valid JSON ({exc}); re-run notebook 01"
        raise ModelError(msg) from None


# --- inputs and windows -------------------------------------------------------


def _audit_target(audit: Mapping[str, Any]) -> tuple[str, str]:
    raw = audit.get("target", "won")
    if isinstance(raw, Mapping):
        return str(raw.get("target", "won")), str(raw.get("reason", ""))
    return str(raw), str(audit.get("reason", ""))


def _audited_specs(table, audit: Mapping[str, Any], config: Config) -> tuple:
    from .audit import fields_to_use

    names = fields_to_use(audit, config)
    by_name = {f.name: f for f in table.fields}
    absent = [n for n in names if n not in by_name or n not in table.frame.columns]
    if absent:
        raise ModelError(
            f"the audit keeps field(s) {absent} that the modeling table lacks; "
            f"fields in the table: {sorted(by_name)}; re-run notebook 01 with "
            "the same config and data"
        )
    return tuple(by_name[n] for n in names)


def _outcome(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """Rows that enter fits, with the outcome in column ``_y``."""
    if target == "qualified":
        return frame.assign(_y=frame["qualified"].astype("float64"))
    closed = frame[frame["won"].notna()]
    return closed.assign(_y=closed["won"].astype("float64"))


def _review_quarter(table, quarter: str | None) -> str | None:
    if not table.has_dates:
        return None
    if quarter:
        return quarter
    from .data import last_complete_quarter

    return last_complete_quarter(table)


def _split(table, quarter, config: Config, target: str):
    """Return the windows, development rows, validation rows and notes."""
    from .data import quarter_bounds, training_quarters

    review = _review_quarter(table, quarter)
    if review is None:
        rows = _outcome(table.frame, target)
        _check_rows(rows, "the whole data (it has no dates)", config)
        dev, val = _holdout(rows, config)
        windows = Windows(None, (), (), (), out_of_time=False)
        return windows, dev, val, (_no_dates_note(),)

    quarters = tuple(training_quarters(review, config.training.quarters))
    rows = _outcome(table.frame[table.frame["quarter"].isin(quarters)], target)
    span = f"training window {quarters[0]} to {quarters[-1]}"
    _check_rows(rows, span, config)
    start, end = quarter_bounds(quarters[0])[0], quarter_bounds(quarters[-1])[1]
    windows = Windows(
        review,
        quarters,
        quarters[:-1],
        quarters[-1:],
        out_of_time=True,
        start=start.date().isoformat(),
        end=(end - pd.Timedelta(days=1)).date().isoformat(),
    )
    dev = rows[rows["quarter"].isin(windows.development)]
    val = rows[rows["quarter"].isin(windows.validation)]
    if _enough(dev) and _enough(val):
        return windows, dev, val, ()
    return _holdout_fallback(rows, windows, val, config)


def _check_rows(rows: pd.DataFrame, where: str, config: Config) -> None:
    if rows.empty or rows["_y"].nunique() < 2:
        found = "no closed records" if rows.empty else "only one outcome"
        raise ModelError(
            f"the {where} holds {found} ({len(rows)} records, "
            f"{int(rows['_y'].sum()) if len(rows) else 0} won); a model needs won "
            "and lost records. Choose another review quarter (quarter parameter) "
            f"or more quarters (training.quarters, now {config.training.quarters}), "
            "or check the outcome stages in the config"
        )


def _enough(rows: pd.DataFrame) -> bool:
    wins = int(rows["_y"].sum())
    return min(wins, len(rows) - wins) >= MIN_VALIDATION_OUTCOMES


def _holdout(rows: pd.DataFrame, config: Config):
    from sklearn.model_selection import train_test_split

    strat = rows["_y"] if _enough(rows) else None
    dev, val = train_test_split(
        rows,
        test_size=HOLDOUT_SHARE,
        stratify=strat,
        random_state=config.training.random_state,
    )
    return dev.sort_index(), val.sort_index()


def _no_dates_note() -> str:
    msg = (
        "The data has no record dates, so the card was validated on a random 30% "
        "holdout of the records (stratified by outcome), not out of time; an "
        "out-of-time check needs dates"
    )
    warnings.warn(msg, FallbackWarning, stacklevel=4)
    return msg


def _holdout_fallback(rows, windows: Windows, val, config: Config):
    wins = int(val["_y"].sum())
    msg = (
        f"The validation quarter {windows.validation[0]} has too few outcomes "
        f"({wins} won, {len(val) - wins} lost; at least {MIN_VALIDATION_OUTCOMES} "
        "of each are needed), so the card was validated on a random 30% holdout "
        "of the training window instead of out of time"
    )
    warnings.warn(msg, FallbackWarning, stacklevel=4)
    dev, val = _holdout(rows, config)
    windows = Windows(
        windows.review_quarter,
        windows.training,
        windows.training,
        windows.training,
        out_of_time=False,
        start=windows.start,
        end=windows.end,
    )
    return windows, dev, val, (msg,)


def _all_closed(ctx: _Context) -> pd.DataFrame:
    frame = ctx.table.frame
    if ctx.windows.training:
        frame = frame[frame["quarter"].isin(ctx.windows.training)]
    return _outcome(frame, ctx.target)


# --- screening ----------------------------------------------------------------


@dataclass(frozen=True)
class _Stage:
    """One run of the procedure (screen, encode, fit, points) on some rows."""

    screening: pd.DataFrame
    levels: pd.DataFrame
    encodings: tuple[Encoding, ...]
    card: ScoreCard
    coefficients: Mapping[str, float]
    notes: tuple[str, ...]


def _screen_one(spec, rows: pd.DataFrame, mc) -> tuple[Encoding, dict, pd.DataFrame]:
    enc = screen_encoding(
        rows[spec.name],
        name=spec.name,
        label=spec.label,
        kind=spec.kind,
        min_level_count=mc.min_level_count,
        min_bin_share=mc.min_bin_share,
        max_bins=mc.max_bins,
    )
    x, _ = design_matrix([enc], rows)
    test = likelihood_ratio_test(x, rows["_y"], groups=_accounts(rows))
    levels = _level_rates(enc, rows)
    row = {
        "field": spec.name,
        "label": spec.label,
        "kind": spec.kind,
        "levels": len(levels),
        "records": len(rows),
        "wins": int(rows["_y"].sum()),
        "lr_stat": test.statistic,
        "df": test.df,
        "design_effect": test.design_effect,
        "p_value": test.p_value,
        "iv": _field_iv(enc, rows),
    }
    return enc, row, levels


@dataclass(frozen=True)
class LRTest:
    """A likelihood-ratio test of a logistic model against no predictor.

    ``statistic`` is ``2 * (llf - llnull)``; ``design_effect`` (>= 1) is the
    Rao-Scott first-order correction for records that share an account;
    ``p_value`` comes from ``statistic / design_effect`` on ``df`` degrees of
    freedom.
    """

    statistic: float
    df: int
    design_effect: float
    p_value: float


def likelihood_ratio_test(
    x: pd.DataFrame, y: pd.Series, *, groups: pd.Series | None = None
) -> LRTest:
    """Test a logistic model of ``y`` on the columns of ``x`` (statsmodels).

    When a level holds only wins or only losses the maximum likelihood is
    approached, not reached; the log-likelihood still converges, so the
    statistic stays valid (it equals the G statistic of the level-by-outcome
    table). With ``groups`` (the account of each record) the statistic is
    divided by the mean design effect of the coefficients, the ratio of
    their cluster-robust to their model-based variance (Rao and Scott's
    first-order correction), because records of one account are not
    independent.

    Returns
    -------
    LRTest
        NaN statistic and df 0 when there is nothing to test.
    """
    import statsmodels.api as sm

    x = _independent_columns(x.loc[:, x.std() > 0])
    df = x.shape[1]
    if df == 0 or y.nunique() < 2:
        return LRTest(math.nan, 0, math.nan, math.nan)
    design = sm.add_constant(x.to_numpy(), has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.Logit(y.to_numpy(), design).fit(
            disp=0, maxiter=200, method="newton", warn_convergence=False
        )
    lr = max(0.0, float(2 * (fit.llf - fit.llnull)))
    deff = 1.0 if groups is None else _design_effect(design, y, fit, groups)
    return LRTest(lr, df, deff, float(stats.chi2.sf(lr / deff, df)))


def _independent_columns(x: pd.DataFrame) -> pd.DataFrame:
    """Keep columns that add information beyond the intercept and each other.

    Values that always occur together (two technologies always bought as a
    pair) give identical indicators; the logit would have no unique fit.
    """
    keep: list = []
    ones = np.ones((len(x), 1))
    for col in x.columns:
        trial = np.hstack([ones, x[[*keep, col]].to_numpy(dtype=float)])
        if np.linalg.matrix_rank(trial) == trial.shape[1]:
            keep.append(col)
    return x[keep]


def _design_effect(design, y: pd.Series, fit, groups: pd.Series) -> float:
    keys = groups.astype("object")
    alone = pd.Series([f"\0{i}" for i in range(len(keys))], index=keys.index)
    codes, uniques = pd.factorize(keys.where(keys.notna(), alone))
    if len(uniques) >= len(codes) or len(uniques) < 2:
        return 1.0
    p = fit.predict(design)
    w = p * (1 - p)
    with np.errstate(all="ignore"):
        bread = np.linalg.pinv(design.T @ (design * w[:, None]))
        scores = design * (y.to_numpy(float) - p)[:, None]
        sums = np.zeros((len(uniques), design.shape[1]))
        np.add.at(sums, codes, scores)
        g = len(uniques)
        robust = bread @ (sums.T @ sums) @ bread * g / (g - 1)
        naive = bread[1:, 1:]
        ratio = np.trace(np.linalg.pinv(naive) @ robust[1:, 1:]) / naive.shape[0]
    return float(ratio) if np.isfinite(ratio) and ratio > 1 else 1.0


def _level_rates(enc: Encoding, rows: pd.DataFrame) -> pd.DataFrame:
    y = rows["_y"]
    if enc.kind == "multi":
        ind = indicator_frame(enc, rows[enc.name])
        names = [f"has {c}" if c != MISSING else MISSING for c in ind.columns]
        n = ind.sum().to_numpy()
        wins = ind.mul(y, axis=0).sum().to_numpy()
    else:
        labels = level_labels(enc, rows[enc.name]).fillna("(average)")
        grouped = y.groupby(labels.to_numpy(), sort=False).agg(["sum", "count"])
        order = [lv for lv in enc.level_names if lv in grouped.index]
        grouped = grouped.loc[order + [i for i in grouped.index if i not in order]]
        names, n, wins = list(grouped.index), grouped["count"], grouped["sum"]
    return _rate_frame(enc.name, names, np.asarray(wins), np.asarray(n))


def _rate_frame(name: str, levels, wins, n) -> pd.DataFrame:
    low, high = wilson_interval(wins, n)
    conv = np.where(n > 0, wins / np.where(n > 0, n, 1), np.nan)
    return pd.DataFrame(
        {
            "field": name,
            "level": list(levels),
            "records": np.asarray(n, dtype="int64"),
            "wins": np.asarray(wins, dtype="int64"),
            "conversion": conv,
            "low": low,
            "high": high,
        },
        columns=_LEVEL_COLUMNS,
    )


def _field_iv(enc: Encoding, rows: pd.DataFrame) -> float:
    if enc.kind != "multi":
        return information_value(level_labels(enc, rows[enc.name]), rows["_y"])
    ind = indicator_frame(enc, rows[enc.name])
    ivs = [information_value(ind[c], rows["_y"]) for c in ind.columns]
    return float(np.nanmax(ivs)) if ivs and not np.all(np.isnan(ivs)) else math.nan


def _screen(rows: pd.DataFrame, ctx: _Context):
    from statsmodels.stats.multitest import multipletests

    results = [_screen_one(spec, rows, ctx.config.model) for spec in ctx.specs]
    encs = {e.name: e for e, _, _ in results}
    cols = [c for c in _SCREEN_COLUMNS if c not in ("p_holm", "decision", "reason")]
    table = pd.DataFrame([r for _, r, _ in results], columns=cols)
    tested = table["p_value"].notna()
    p_holm = pd.Series(np.nan, index=table.index)
    if tested.any():
        p_holm[tested] = multipletests(table.loc[tested, "p_value"], method="holm")[1]
    table = table.assign(p_holm=p_holm.to_numpy())
    table = _decide(table, ctx.config.model.alpha)
    levels = [lv for _, _, lv in results]
    levels = pd.concat(levels, ignore_index=True) if levels else _empty(_LEVEL_COLUMNS)
    return table, encs, levels


def _decide(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    n = int(table["p_value"].notna().sum())
    decisions, reasons = [], []
    for row in table.itertuples():
        if math.isnan(row.p_value):
            decisions.append("dropped")
            reasons.append("could not be tested: a single level or a single outcome")
        elif row.p_holm < alpha:
            decisions.append("kept")
            reasons.append(
                f"significant: {_fmt_p(row.p_value)}; after Holm's correction "
                f"for {n} fields {_fmt_p(row.p_holm)}, below {alpha:g}"
            )
        else:
            decisions.append("dropped")
            reasons.append(
                f"no significant relation: {_fmt_p(row.p_value)}; after Holm's "
                f"correction for {n} fields {_fmt_p(row.p_holm)}, not below "
                f"{alpha:g}"
            )
    return table.assign(decision=decisions, reason=reasons)[_SCREEN_COLUMNS]


def _fmt_p(p: float) -> str:
    """Return "p = 0.031", "p < 0.0001" or "p not available"."""
    if p is None or math.isnan(p):
        return "p not available"
    if p < 1e-4:
        return "p < 0.0001"
    return f"p = {p:.2g}" if p < 0.01 else f"p = {p:.3f}"


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})


# --- combined fit and points --------------------------------------------------


def _fit_stage(rows: pd.DataFrame, ctx: _Context) -> _Stage:
    screening, encs, levels = _screen(rows, ctx)
    kept = screening.loc[screening["decision"] == "kept", "field"].tolist()
    card_encs = tuple(_card_encoding(encs[name], rows, ctx) for name in kept)
    coefs = _combined_coefficients(card_encs, rows)
    fields = _card_fields(card_encs, coefs, rows, ctx.config.model.max_score)
    fields = tuple(_with_source_separator(f, ctx.config) for f in fields)
    notes = [n for e in card_encs for n in e.notes] + _cluster_note(rows, screening)
    if card_encs:
        notes.append(_penalty_note())
    card = ScoreCard(
        fields=fields,
        max_score=ctx.config.model.max_score,
        verdict={"usable": False, "reasons": []},
    )
    return _Stage(screening, levels, card_encs, card, coefs, tuple(notes))


def _with_source_separator(f: CardField, config: Config) -> CardField:
    from dataclasses import replace

    spec = config.fields.get(f.name)
    if spec is None:
        return f
    if f.kind in ("numeric", "range") and spec.valid_range is not None:
        return replace(f, valid_range=tuple(spec.valid_range))
    if f.kind != "multi":
        return f
    return replace(f, source_separator=spec.separator)


def _cluster_note(rows: pd.DataFrame, screening: pd.DataFrame) -> list[str]:
    deff = screening["design_effect"].max() if len(screening) else math.nan
    if not deff > 1.0:
        return []
    n_acc = rows["account_id"].nunique()
    return [
        f"{len(rows):,} records come from {n_acc:,} accounts; records of one "
        "account are not independent, so each test statistic was divided by its "
        f"design effect (up to {deff:.2f}; Rao-Scott correction)"
    ]


def _penalty_note() -> str:
    return (
        "The combined model is a logistic regression with a ridge penalty "
        f"(C = {RIDGE_C:g} on 0/1 level indicators), so a small level, or one "
        "whose records are nearly all won or all lost, cannot produce extreme "
        "coefficients or points"
    )


def _card_encoding(enc: Encoding, rows: pd.DataFrame, ctx: _Context) -> Encoding:
    mc = ctx.config.model
    if enc.kind == "multi":
        return _select_indicators(enc, rows, mc.alpha)
    return card_encoding(
        rows[enc.name],
        rows["_y"],
        enc,
        alpha=mc.alpha,
        min_bin_share=mc.min_bin_share,
        max_bins=mc.max_bins,
    )


def _select_indicators(enc: Encoding, rows: pd.DataFrame, alpha: float) -> Encoding:
    from dataclasses import replace

    from statsmodels.stats.multitest import multipletests

    ind = indicator_frame(enc, rows[enc.name])
    p = [_single_p(ind[[c]], rows) for c in enc.indicators]
    if not p:
        return enc
    p_holm = multipletests(np.nan_to_num(p, nan=1.0), method="holm")[1]
    y = rows["_y"]
    lifts = [y[ind[c] > 0].mean() > y[ind[c] == 0].mean() for c in enc.indicators]
    keep = [
        c
        for c, q, up in zip(enc.indicators, p_holm, lifts, strict=True)
        if q < alpha and up
    ]
    keep = keep or [enc.indicators[int(np.argmin(p_holm))]]
    dropped = len(enc.indicators) - len(keep)
    notes = enc.notes
    if dropped:
        notes = (
            *notes,
            f"{enc.label}: the card gives points for {', '.join(keep)}; "
            f"{dropped} other value(s) showed no significant lift on their own "
            "(points are given only for values whose presence raises conversion)",
        )
    return replace(enc, indicators=tuple(keep), notes=notes)


def _single_p(x: pd.DataFrame, rows: pd.DataFrame) -> float:
    return likelihood_ratio_test(x, rows["_y"], groups=_accounts(rows)).p_value


def _accounts(rows: pd.DataFrame) -> pd.Series | None:
    """The account of each record, when several records share accounts."""
    if "account_id" not in rows or rows["account_id"].isna().all():
        return None
    return rows["account_id"]


def _combined_coefficients(encs, rows: pd.DataFrame) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    x, _ = design_matrix(list(encs), rows)
    if x.shape[1] == 0:
        return {}
    model = LogisticRegression(C=RIDGE_C, max_iter=2000)
    model.fit(x.to_numpy(), rows["_y"].to_numpy())
    return dict(zip(x.columns, model.coef_[0], strict=True))


def _card_fields(encs, coefs, rows: pd.DataFrame, max_score: int) -> tuple:
    raws = [_raw_points(e, coefs, rows) for e in encs]
    maxima = np.array([r.maximum for r in raws], dtype=float)
    if not len(raws) or maxima.sum() <= 1e-9:
        return ()
    totals = allocate_points(maxima, max_score)
    return tuple(r.to_field(int(t)) for r, t in zip(raws, totals, strict=True))


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


@dataclass(frozen=True)
class _RawField:
    """Points of one field before scaling: log-odds above the field's worst."""

    enc: Encoding
    items: Mapping[str, float]  # level/bin label or indicator -> raw points
    stats: Mapping[str, tuple[int, float]]  # label -> (records, conversion)
    other: float
    missing: float

    @property
    def maximum(self) -> float:
        if self.enc.kind == "multi":
            return max(sum(self.items.values()), self.missing)
        return max([*self.items.values(), self.other, self.missing])

    def to_field(self, total: int) -> CardField:
        if self.enc.kind == "multi":
            return self._multi_field(total)
        scale = total / self.maximum if self.maximum > 0 else 0.0
        pts = {k: min(total, _round_half_up(v * scale)) for k, v in self.items.items()}
        other = min(total, _round_half_up(self.other * scale))
        missing = min(total, _round_half_up(self.missing * scale))
        return self._field(pts, other, missing)

    def _multi_field(self, total: int) -> CardField:
        raw = np.array(list(self.items.values()), dtype=float)
        present = raw.sum()
        if present >= self.missing:
            pts = allocate_points(raw, total) if present > 0 else raw * 0
            missing = _round_half_up(self.missing * total / present) if present else 0
        else:
            missing = total
            share = _round_half_up(present * total / self.missing)
            pts = allocate_points(raw, share) if present > 0 else raw * 0
        return self._field(
            dict(zip(self.items, map(int, pts), strict=True)), 0, missing
        )

    def _field(self, pts: dict, other: int, missing: int) -> CardField:
        enc = self.enc
        miss_n, miss_c = self.stats.get(MISSING, (None, None))
        base = {
            "name": enc.name,
            "label": enc.label,
            "kind": enc.kind,
            "missing_points": int(missing),
            "missing_records": miss_n,
            "missing_conversion": miss_c,
        }
        if enc.kind in ("numeric", "range"):
            return CardField(**base, bins=self._bins(pts))
        if enc.kind == "multi":
            inds = tuple(
                CardIndicator(k, int(p), *self.stats.get(k, (None, None)))
                for k, p in pts.items()
            )
            return CardField(**base, indicators=inds, separator="|")
        return CardField(**base, levels=self._levels(pts), other_points=int(other))

    def _bins(self, pts: dict) -> tuple[CardBin, ...]:
        edges = [None, *self.enc.edges, None]
        labels = bin_labels(self.enc.edges)
        return tuple(
            CardBin(lo, hi, lab, int(pts.get(lab, 0)), *self.stats.get(lab, (0, None)))
            for lo, hi, lab in zip(edges[:-1], edges[1:], labels, strict=True)
        )

    def _levels(self, pts: dict) -> tuple[CardLevel, ...]:
        return tuple(
            CardLevel(
                tuple(values), lab, int(pts[lab]), *self.stats.get(lab, (0, None))
            )
            for lab, values in self.enc.levels
            if lab in pts
        )


def _raw_points(enc: Encoding, coefs: Mapping[str, float], rows) -> _RawField:
    if enc.kind == "multi":
        return _raw_multi(enc, coefs, rows)
    labels = level_labels(enc, rows[enc.name])
    y = rows["_y"]
    grouped = y.groupby(labels.to_numpy()).agg(["count", "mean"])
    beta = {lv: coefs.get(f"{enc.name}={lv}", 0.0) for lv in grouped.index}
    low = min(beta.values())
    raw = {lv: b - low for lv, b in beta.items()}
    counts = grouped["count"]
    average = float(sum(raw[lv] * counts[lv] for lv in raw) / counts.sum())
    other = raw.pop(OTHER, average)
    missing = raw.pop(MISSING, other if enc.has_other else average)
    stats_ = {lv: (int(r["count"]), float(r["mean"])) for lv, r in grouped.iterrows()}
    return _RawField(enc, raw, stats_, other, missing)


def _raw_multi(enc: Encoding, coefs: Mapping[str, float], rows) -> _RawField:
    ind = indicator_frame(enc, rows[enc.name])
    y = rows["_y"]
    raw = {v: max(0.0, coefs.get(f"{enc.name}={v}", 0.0)) for v in enc.indicators}
    missing = max(0.0, coefs.get(f"{enc.name}={MISSING}", 0.0))
    stats_ = {}
    for col in ind.columns:
        on = ind[col] > 0
        n = int(on.sum())
        stats_[col] = (n, float(y[on].mean()) if n else None)
    return _RawField(enc, raw, stats_, 0.0, missing)


# --- validation ---------------------------------------------------------------


def _delong_components(y, score) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and its DeLong structural components (via midranks)."""
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    pos, neg = score[y == 1], score[y == 0]
    m, n = len(pos), len(neg)
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    v10 = (ranks[:m] - stats.rankdata(pos)) / n
    v01 = 1.0 - (ranks[m:] - stats.rankdata(neg)) / m
    return float(v10.mean()), v10, v01


def delong_auc(y, score, *, alpha: float = 0.05) -> tuple[float, float, float]:
    """AUC of a score with DeLong's confidence interval.

    Parameters
    ----------
    y : array-like of 0/1
        The outcome (won = 1).
    score : array-like of float
        Higher means more likely to be won.
    alpha : float, default 0.05
        One minus the confidence level.

    Returns
    -------
    (auc, low, high) : tuple of float
        NaN when one outcome is missing; the bounds are clipped to 0..1.
    """
    y = np.asarray(y, dtype=float)
    if (y == 1).sum() < 2 or (y == 0).sum() < 2:
        return math.nan, math.nan, math.nan
    auc, v10, v01 = _delong_components(y, score)
    se = math.sqrt(v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01))
    z = stats.norm.ppf(1 - alpha / 2)
    return auc, max(0.0, auc - z * se), min(1.0, auc + z * se)


def delong_difference(y, score_a, score_b) -> tuple[float, float]:
    """Difference of two AUCs on the same records, with DeLong's p-value.

    Returns
    -------
    (difference, p_value) : tuple of float
        ``AUC(a) - AUC(b)``; NaN when undefined.
    """
    y = np.asarray(y, dtype=float)
    if (y == 1).sum() < 2 or (y == 0).sum() < 2:
        return math.nan, math.nan
    auc_a, v10a, v01a = _delong_components(y, score_a)
    auc_b, v10b, v01b = _delong_components(y, score_b)
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / len(v10a)
    var += (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / len(v01a)
    diff = auc_a - auc_b
    if var <= 0:
        return diff, math.nan
    return diff, float(2 * stats.norm.sf(abs(diff) / math.sqrt(var)))


def ks_statistic(y, score) -> float:
    """Largest gap between the score distributions of won and lost records."""
    from sklearn.metrics import roc_curve

    y = np.asarray(y, dtype=float)
    if y.min() == y.max():
        return math.nan
    fpr, tpr, _ = roc_curve(y, np.asarray(score, dtype=float))
    return float(np.max(np.abs(tpr - fpr)))


def lift_table(y, score, *, groups: int = 10) -> pd.DataFrame:
    """Conversion and lift by score decile (decile 1 holds the top scores).

    Ties are split by record order, so every decile holds a tenth of the
    records even when many share a score.
    """
    y = pd.Series(np.asarray(y, dtype=float))
    score = pd.Series(np.asarray(score, dtype=float))
    groups = max(1, min(groups, len(y)))
    rank = score.rank(method="first", ascending=False)
    decile = pd.qcut(rank, groups, labels=range(1, groups + 1)).astype("int64")
    frame = pd.DataFrame({"decile": decile, "y": y, "score": score})
    out = frame.groupby("decile").agg(
        records=("y", "size"),
        wins=("y", "sum"),
        score_min=("score", "min"),
        score_max=("score", "max"),
    )
    out = _with_rates(out.reset_index())
    overall = y.mean() if len(y) else math.nan
    lift = out["conversion"] / overall if overall > 0 else math.nan
    return out.assign(lift=lift)


def _with_rates(frame: pd.DataFrame) -> pd.DataFrame:
    wins, n = frame["wins"].to_numpy(float), frame["records"].to_numpy(float)
    low, high = wilson_interval(wins, n)
    conv = np.where(n > 0, wins / np.where(n > 0, n, 1), np.nan)
    return frame.assign(wins=wins.astype("int64"), conversion=conv, low=low, high=high)


def _score_model(score, y) -> tuple[float, float]:
    """Intercept and slope of a logistic model of the outcome on the score."""
    import statsmodels.api as sm

    score = np.asarray(score, dtype=float)
    if np.ptp(score) == 0 or len(set(y)) < 2:
        p = float(np.mean(y))
        return math.log(p / (1 - p)) if 0 < p < 1 else math.nan, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.Logit(np.asarray(y, float), sm.add_constant(score)).fit(disp=0)
    return float(fit.params[0]), float(fit.params[1])


def calibration_table(y, predicted, *, groups: int = 10) -> pd.DataFrame:
    """Predicted against observed conversion by group of predicted value."""
    frame = lift_table(y, predicted, groups=groups).rename(
        columns={"score_min": "predicted_min", "score_max": "predicted_max"}
    )
    pred = pd.Series(np.asarray(predicted, float))
    rank = pred.rank(method="first", ascending=False)
    n = max(1, min(groups, len(pred)))
    group = pd.qcut(rank, n, labels=range(1, n + 1)).astype("int64")
    mean = pred.groupby(group.to_numpy()).mean().to_numpy()
    return frame.assign(predicted=mean).drop(columns=["lift"])


def _validate(stage: _Stage, dev, val, ctx: _Context) -> Validation:
    y = val["_y"].to_numpy()
    if not stage.card.fields:
        empty = lift_table([], [])
        return Validation(math.nan, math.nan, math.nan, math.nan, len(val),
                          int(y.sum()), empty, calibration_table([], []))  # fmt: skip
    score = score_records(stage.card, val)["score"].to_numpy()
    dev_score = score_records(stage.card, dev)["score"].to_numpy()
    a, b = _score_model(dev_score, dev["_y"].to_numpy())
    predicted = 1 / (1 + np.exp(-(a + b * score)))
    auc, low, high = delong_auc(y, score)
    return Validation(
        auc=auc,
        auc_low=low,
        auc_high=high,
        ks=ks_statistic(y, score),
        records=len(val),
        wins=int(y.sum()),
        lift=lift_table(y, score),
        calibration=calibration_table(y, predicted),
        brier=float(np.mean((predicted - y) ** 2)),
    )


def _compare(dev, val, ctx: _Context, validation: Validation, stage) -> Comparison:
    from sklearn.linear_model import LogisticRegressionCV

    mc = ctx.config.model
    encs = [
        screen_encoding(
            dev[s.name], name=s.name, label=s.label, kind=s.kind,
            min_level_count=mc.min_level_count, min_bin_share=mc.min_bin_share,
            max_bins=mc.max_bins,
        )
        for s in ctx.specs
    ]  # fmt: skip
    names = tuple(s.name for s in ctx.specs)
    x_dev, _ = design_matrix(encs, dev)
    if x_dev.shape[1] == 0 or dev["_y"].nunique() < 2:
        return Comparison(names, math.nan, math.nan, math.nan, math.nan, math.nan)
    x_val, _ = design_matrix(encs, val, columns=x_dev.columns)
    model = LogisticRegressionCV(
        Cs=8, cv=5, l1_ratios=(0,), scoring="neg_log_loss", max_iter=2000,
        random_state=ctx.config.training.random_state, use_legacy_attributes=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x_dev.to_numpy(), dev["_y"].to_numpy())
    prob = model.predict_proba(x_val.to_numpy())[:, 1]
    y = val["_y"].to_numpy()
    auc, low, high = delong_auc(y, prob)
    diff, p = math.nan, math.nan
    if stage.card.fields:
        score = score_records(stage.card, val)["score"].to_numpy()
        diff, p = delong_difference(y, score, prob)
    return Comparison(names, auc, low, high, diff, p)


# --- more matches, more conversion --------------------------------------------


def _thresholds(card: ScoreCard) -> dict[str, int]:
    """Points a field must give for the record to match its ideal values."""
    return {f.name: max(1, math.ceil(f.max_points() / 2)) for f in card.fields}


def ideal_values(card: ScoreCard) -> dict[str, tuple[str, ...]]:
    """Return, per field, the values that earn at least half its points."""
    need = _thresholds(card)
    out = {}
    for f in card.fields:
        if f.kind in ("numeric", "range"):
            items = [(b.label, b.points) for b in f.bins]
        elif f.kind == "multi":
            items = [(f"has {i.value}", i.points) for i in f.indicators]
        else:
            items = [(lv.label, lv.points) for lv in f.levels]
        out[f.name] = tuple(lab for lab, p in items if p >= need[f.name])
    return out


def match_counts(card: ScoreCard, frame: pd.DataFrame) -> pd.Series:
    """Count, per record, the fields whose ideal values it matches."""
    pts = points_by_field(card, frame)
    need = pd.Series(_thresholds(card))
    return (pts >= need).sum(axis=1).astype("int64")


def _match_rates(card: ScoreCard, rows: pd.DataFrame):
    counts = match_counts(card, rows)
    full = pd.Index(range(len(card.fields) + 1), name="matches")
    grouped = rows["_y"].groupby(counts.to_numpy()).agg(["count", "sum"])
    grouped = grouped.reindex(full, fill_value=0)
    table = _with_rates(
        pd.DataFrame(
            {"matches": full, "records": grouped["count"], "wins": grouped["sum"]}
        ).reset_index(drop=True)
    )[_MATCH_COLUMNS]
    trend = cochran_armitage_trend(
        table["wins"], table["records"], scores=table["matches"], alternative="larger"
    )
    return table, trend


def _match_analysis(card, rows, dev_card, val) -> MatchAnalysis:
    if not card.fields:
        empty = TestResult("Cochran-Armitage trend test", math.nan, math.nan)
        return MatchAnalysis({}, _empty(_MATCH_COLUMNS), empty, None)
    table, trend = _match_rates(card, rows)
    val_trend = _match_rates(dev_card, val)[1] if dev_card.fields else None
    return MatchAnalysis(ideal_values(card), table, trend, val_trend)


# --- verdict and model file ---------------------------------------------------


def _verdict(final: _Stage, dev_card, validation, comparison, matches, ctx) -> dict:
    n_tested = len(final.screening)
    reasons, usable = [], True
    if not final.card.fields:
        usable = False
        reasons.append(
            f"No field has a significant relation to conversion after correcting "
            f"for the {n_tested} field(s) tested, so a score would rank records by "
            "noise"
            if n_tested
            else "The audit left no field to model: it excluded every candidate "
            "field (notebook 01 gives each reason), so there is no score"
        )
    else:
        labels = ", ".join(f.label for f in final.card.fields)
        reasons.append(f"{len(final.card.fields)} field(s) kept: {labels}")
    ok, text = _auc_reason(validation, ctx.windows, dev_card)
    usable = usable and ok
    if final.card.fields:
        reasons.append(text)
    if usable:
        reasons += _cautions(validation, comparison, matches, ctx.windows)
    return {"usable": usable, "reasons": reasons}


def _where_validated(windows: Windows) -> str:
    if windows.out_of_time:
        return f"on {windows.validation[0]}, the quarter after the fitting quarters"
    return "on a random 30% holdout (not out of time)"


def _auc_reason(v: Validation, windows: Windows, dev_card) -> tuple[bool, str]:
    where = _where_validated(windows)
    if not dev_card.fields:
        return False, (
            "Fitted without the validation records, no field was significant, so "
            f"there was no card to validate {where}: the relation found on the whole "
            "window is not confirmed on records the card has not seen"
        )
    if math.isnan(v.auc) or math.isnan(v.auc_low):
        return False, f"The card could not be validated {where}: not enough data"
    auc = f"{v.auc:.2f} (95% interval {v.auc_low:.2f} to {v.auc_high:.2f})"
    if v.auc_low <= 0.5:
        return False, (
            f"Validated {where}, the card's AUC is {auc}: the interval includes "
            "0.5, a coin flip, so the card does not rank records better than chance"
        )
    return True, f"Validated {where}, the card's AUC is {auc}: better than chance"


def _cautions(v: Validation, c: Comparison, m: MatchAnalysis, w: Windows) -> list:
    out = []
    if not w.out_of_time:
        out.append("Caution: the validation was not out of time")
    if not m.more_is_better:
        out.append(
            "Caution: records matching more ideal values do not clearly convert more"
        )
    if not math.isnan(c.difference_p) and c.difference_p < 0.05 and c.difference < 0:
        out.append(
            f"The card ranks less well than a model on every audited field "
            f"(AUC {c.auc:.2f}); consider the fields it leaves out"
        )
    return out


def _outcome_definition(config: Config, target: str) -> str:
    oc = config.outcome
    if oc.rule == "filled":
        text = f"won = {oc.column} is filled; lost = {oc.column} is empty"
    else:
        text = f"won = {oc.column} in {list(map(str, oc.won))}; lost = " + (
            f"{oc.column} in {list(map(str, oc.lost))}"
            if oc.lost
            else "any stage not listed"
        )
    if target == "qualified":
        text += f"; qualified = reached {list(map(str, oc.qualified))} or won"
    return text


SCORING_RULES = {
    "categorical": (
        "values compare after trimming, collapsing spaces and ignoring case; "
        "placeholders (Select, --None--, unknown, n/a, none, -) count as missing"
    ),
    "unseen_values": (
        "a value never seen in training, or a rare value grouped as Other, scores "
        "other_points: the points of the rare values grouped as Other when the "
        "training data had them, else the field's average points in training"
    ),
    "missing_values": (
        "an empty value scores missing_points: the points of records without a "
        "value in training when there were enough of them, else the points of "
        "Other, else the field's average points in training; for a multi-valued "
        "field, a record with no value at all scores missing_points and a record "
        "whose values are all unlisted scores 0"
    ),
    "numeric": "a number v falls in the bin with lower <= v < upper",
}


def _jsonable(value):
    """Plain JSON values: NaN as None, numpy scalars as Python ones."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _metrics(fit_parts: dict) -> dict:
    v, c, m = fit_parts["validation"], fit_parts["comparison"], fit_parts["matches"]
    top = v.lift["lift"].iloc[0] if len(v.lift) else math.nan
    out = {
        "validation": {
            "auc": v.auc, "auc_low": v.auc_low, "auc_high": v.auc_high,
            "auc_method": v.method, "ks": v.ks, "records": v.records,
            "wins": v.wins, "brier": v.brier, "top_decile_lift": top,
        },
        "comparison": {
            "model": "ridge logistic regression on every audited field",
            "fields": list(c.fields), "auc": c.auc, "auc_low": c.auc_low,
            "auc_high": c.auc_high, "card_minus_model": c.difference,
            "difference_p": c.difference_p,
        },
        "matches": {
            "trend_p": m.trend.p_value,
            "more_matches_convert_more": m.more_is_better,
        },
        "training": fit_parts["training"],
        "score_to_probability": fit_parts["calibration"],
    }  # fmt: skip
    return _jsonable(out)


def _slug(text: str) -> str:
    out = "".join(ch.lower() if ch.isalnum() else "-" for ch in text)
    return "-".join(p for p in out.split("-") if p) or "client"


def _finish_card(final, validation, comparison, matches, verdict, ctx, rows):
    a, b = math.nan, math.nan
    if final.card.fields:
        score = score_records(final.card, rows)["score"].to_numpy()
        a, b = _score_model(score, rows["_y"].to_numpy())
    parts = {
        "validation": validation,
        "comparison": comparison,
        "matches": matches,
        "training": {
            "records": len(rows),
            "wins": int(rows["_y"].sum()),
            "conversion": float(rows["_y"].mean()) if len(rows) else None,
        },
        "calibration": {"intercept": a, "slope": b, "fitted_on": "training window"},
    }
    meta = _meta(ctx, _metrics(parts), final)
    card = ScoreCard(final.card.fields, final.card.max_score, verdict, None, meta)
    return ScoreCard(card.fields, card.max_score, verdict, None, _with_id(card, ctx))


def _meta(ctx: _Context, metrics: dict, final: _Stage) -> dict:
    from . import __version__

    w = ctx.windows
    seg = ctx.segment.model_dump(mode="json")
    screening = final.screening[["field", "decision", "reason", "p_value", "p_holm"]]
    return {
        "kit_version": __version__,
        "model_id": "",
        "client": ctx.config.client,
        "segment": {k: seg.get(k) for k in ("name", "label", "where")},
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "review_quarter": w.review_quarter,
        "training_window": {"quarters": list(w.training), "start": w.start,
                            "end": w.end},
        "validation_window": {"quarters": list(w.validation),
                              "out_of_time": w.out_of_time},
        "target": ctx.target,
        "outcome_definition": _outcome_definition(ctx.config, ctx.target),
        "metrics": metrics,
        "screening": json.loads(
            screening.to_json(orient="records", double_precision=6)
        ),
        "scoring_rules": SCORING_RULES,
        "fit_notes": list(final.notes),
    }  # fmt: skip


def _with_id(card: ScoreCard, ctx: _Context) -> dict:
    content = card.to_json_dict()
    content.pop("created_at", None)
    content.pop("model_id", None)
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    quarter = ctx.windows.review_quarter or "nodates"
    model_id = f"{_slug(ctx.config.client)}-{ctx.segment.name}-{quarter}-{digest[:8]}"
    return {**card.meta, "model_id": model_id}


def _dev_differs(dev: _Stage, final: _Stage) -> tuple[str, ...]:
    a = [f.name for f in dev.card.fields]
    b = [f.name for f in final.card.fields]
    if a == b:
        return ()
    return (
        "The fields kept on the fitting quarters alone "
        f"({', '.join(a) or 'none'}) differ from those kept on the whole window "
        f"({', '.join(b) or 'none'}); the validation figures describe the former",
    )


def _too_small_fit(table, config, audit, quarter, segment) -> ModelFit:
    _, reason = _audit_target(audit)
    window = audit.get("target", {})
    window = window.get("window", {}) if isinstance(window, Mapping) else {}
    quarters = tuple(window.get("quarters") or ())
    review = quarter or (
        audit["target"].get("review_quarter")
        if isinstance(audit.get("target"), Mapping)
        else None
    )
    windows = Windows(review, quarters, (), (), out_of_time=bool(quarters))
    ctx = _Context(table, config, segment, "too_small", windows, ())
    stage = _Stage(
        _empty(_SCREEN_COLUMNS), _empty(_LEVEL_COLUMNS), (),
        ScoreCard(fields=(), max_score=config.model.max_score), {}, (),
    )  # fmt: skip
    text = "The data audit found this segment too small to model"
    verdict = {"usable": False, "reasons": [f"{text}: {reason}" if reason else text]}
    empty_val = Validation(math.nan, math.nan, math.nan, math.nan, 0, 0,
                           lift_table([], []), calibration_table([], []))  # fmt: skip
    comparison = Comparison((), math.nan, math.nan, math.nan, math.nan, math.nan)
    matches = _match_analysis(stage.card, None, stage.card, None)
    empty_rows = pd.DataFrame({"_y": pd.Series(dtype="float64")})
    card = _finish_card(stage, empty_val, comparison, matches, verdict, ctx, empty_rows)
    return ModelFit(
        segment.name, "too_small", windows, stage.screening, stage.levels, matches,
        empty_val, comparison, card, verdict,
    )  # fmt: skip


def segment_of(config: Config, name: str) -> Segment:
    """Return the config's segment called ``name``.

    ``"all"`` means every record unless the config defines a segment of
    that name.

    Raises
    ------
    ModelError
        If the config has no such segment; the message lists those it has.
    """
    for seg in config.segments:
        if seg.name == name:
            return seg
    if name == "all":
        return Segment(name="all", label="All records")
    names = ", ".join(s.name for s in config.segments)
    raise ModelError(
        f"segment {name!r} is not in the config; segments defined: {names} "
        "(or 'all' for every record)"
    )


def example_scores(card: ScoreCard, table, *, n: int = 5) -> pd.DataFrame:
    """Return the top and bottom ``n`` scored records with their reasons.

    The records are the most recent quarter's (all records without dates);
    reasons are joined into one text per record.
    """
    frame = table.frame
    if not card.fields or frame.empty:
        return pd.DataFrame(columns=["record_id", "score", "reasons"])
    if frame["quarter"].notna().any():
        frame = frame[frame["quarter"] == frame["quarter"].dropna().max()]
    scores = score_records(card, frame).sort_values("score", ascending=False)
    picked = pd.concat([scores.head(n), scores.tail(n)]).drop_duplicates("record_id")
    picked = picked.assign(reasons=picked["reasons"].map("; ".join))
    return picked[["record_id", "score", "reasons"]].reset_index(drop=True)


# --- report text --------------------------------------------------------------

_MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]#|<>"})


def md_escape(value: Any) -> str:
    """Escape a value from the data for Markdown (no markup, no HTML)."""
    return html.escape(str(value), quote=False).translate(_MD_SPECIAL)


def _pct(x: float) -> str:
    return "not enough data" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def _summary_markdown(fit: ModelFit) -> str:
    head = (
        "**Verdict: the score is usable.**"
        if fit.usable
        else "**Verdict: NOT usable. Do not deploy these scores; later steps mark "
        "their grades as not for deployment.**"
    )
    lines = [head, ""] + [f"- {md_escape(r)}" for r in fit.verdict["reasons"]]
    lines += ["", _window_text(fit)]
    return "\n".join(lines)


def _window_text(fit: ModelFit) -> str:
    w = fit.windows
    target = {"won": "won deals", "qualified": "qualified records"}.get(
        fit.target, "nothing (segment too small)"
    )
    if fit.target == "too_small":
        return "No model was fitted for this segment."
    span = (
        f"records dated {w.training[0]} to {w.training[-1]}"
        if w.training
        else "all records (the data has no dates)"
    )
    return (
        f"The card predicts {target}. It was fitted on {span}: "
        f"{fit.training_records:,} closed records, {fit.training_wins:,} of them "
        f"converted ({_pct(fit.training_wins / fit.training_records)})."
        if fit.training_records
        else f"The card predicts {target}."
    )


def _screening_markdown(fit: ModelFit) -> str:
    s = fit.screening
    if s.empty:
        return "No field was screened: the audit left none to model."
    kept = s[s["decision"] == "kept"]
    dropped = s[s["decision"] != "kept"]
    lines = [
        f"Of {len(s)} field(s) the audit passed, {len(kept)} relate to conversion "
        "strongly enough to be trusted, after correcting for testing several "
        "fields at once (Holm):",
        "",
    ]
    for row in kept.itertuples():
        lines.append(f"- **Kept: {md_escape(row.label)}**: {md_escape(row.reason)}")
    for row in dropped.itertuples():
        lines.append(f"- Dropped: {md_escape(row.label)}: {md_escape(row.reason)}")
    return "\n".join(lines)


def _matches_markdown(fit: ModelFit) -> str:
    m = fit.matches
    if not fit.card.fields:
        return "There is no card, so there are no ideal values to match."
    ideal = "; ".join(
        f"{md_escape(_label(fit, k))}: {md_escape(', '.join(v) or 'none')}"
        for k, v in m.ideal.items()
    )
    t = m.table[m.table["records"] > 0]
    low, high = t.iloc[0], t.iloc[-1]
    rise = (
        f"Conversion goes from {_pct(low.conversion)} for records matching "
        f"{int(low.matches)} ideal value(s) to {_pct(high.conversion)} for those "
        f"matching {int(high.matches)}"
    )
    answer = (
        f"**Yes: more matches mean more conversion** (trend test "
        f"{_fmt_p(m.trend.p_value)})."
        if m.more_is_better
        else f"**No: more matches do not clearly mean more conversion** (trend "
        f"test {_fmt_p(m.trend.p_value)})."
    )
    lines = [f"Ideal values (at least half a field's points): {ideal}.", "",
             f"{rise}. {answer}"]  # fmt: skip
    vt = m.validation_trend
    if vt is not None:
        held = "holds" if vt.significant(0.05) and vt.effect > 0 else "does not hold"
        lines.append(
            f"On the validation records the trend {held} ({_fmt_p(vt.p_value)})."
        )
    return "\n".join(lines)


def _label(fit: ModelFit, name: str) -> str:
    return next((f.label for f in fit.card.fields if f.name == name), name)


def _validation_markdown(fit: ModelFit) -> str:
    v, c = fit.validation, fit.comparison
    if math.isnan(v.auc):
        return "The card could not be validated (no card, or not enough data)."
    where = _where_validated(fit.windows)
    lines = [
        f"Validated {where} ({v.records:,} closed records, {v.wins:,} converted). "
        f"AUC {v.auc:.2f} (95% interval {v.auc_low:.2f} to {v.auc_high:.2f}, "
        "DeLong): the chance that a converted record scores above one that did "
        f"not; 0.5 is a coin flip. KS {v.ks:.2f}.",
    ]
    if len(v.lift):
        top = v.lift.iloc[0]
        lines.append(
            f"The top tenth of scores converted at {_pct(top.conversion)}, "
            f"{top.lift:.1f} times the average."
        )
    if not math.isnan(c.auc):
        lines.append(_comparison_text(c))
    return " ".join(lines)


def _comparison_text(c: Comparison) -> str:
    base = (
        f"A regularized logistic regression on all {len(c.fields)} audited field(s) "
        f"reaches AUC {c.auc:.2f} ({c.auc_low:.2f} to {c.auc_high:.2f}) on the "
        "same records"
    )
    if math.isnan(c.difference):
        return base + "."
    side = "below" if c.difference < 0 else "above"
    gap = f"the card is {abs(c.difference):.3f} {side}"
    sig = c.difference_p < 0.05
    verdict = (
        "a real difference" if sig else "a difference within chance"
    ) + f" ({_fmt_p(c.difference_p)})"
    return f"{base}; {gap}, {verdict}."


def _notes_markdown(fit: ModelFit) -> str:
    if not fit.notes:
        return "No level was merged and no fallback was needed."
    return "\n".join(f"- {md_escape(n)}" for n in fit.notes)


def _readable_screening(s: pd.DataFrame) -> pd.DataFrame:
    return s[["label", "kind", "levels", "lr_stat", "df", "design_effect",
              "p_value", "p_holm", "iv",
              "decision", "reason"]].rename(columns={  # fmt: skip
        "label": "Field", "kind": "Kind", "levels": "Levels",
        "lr_stat": "LR statistic", "df": "df",
        "design_effect": "Design effect", "p_value": "p-value",
        "p_holm": "p-value (Holm)", "iv": "Information value",
        "decision": "Decision", "reason": "Reason",
    })  # fmt: skip


def _readable_rates(t: pd.DataFrame, *, first: str) -> pd.DataFrame:
    names = {"matches": first, "level": "Level", "field": "Field",
             "records": "Records", "wins": "Converted", "conversion": "Conversion",
             "low": "Low (95%)", "high": "High (95%)"}  # fmt: skip
    return t.rename(columns=names)


# --- scoring files ------------------------------------------------------------

_READERS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "excel",
            ".xls": "excel", ".parquet": "parquet", ".pq": "parquet"}  # fmt: skip


def score_file(
    model_path: str | os.PathLike,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    config: Config | None = None,
    top_reasons: int = 3,
    allow_undeployable: bool = False,
) -> pd.DataFrame:
    """Score the records of a file with a saved model.

    Parameters
    ----------
    model_path : str or path-like
        A model.json written by notebook 02 (or 03, with grades).
    input_path : str or path-like
        CSV/TSV (encoding and delimiter detected), Excel or Parquet, one row
        per record, with ``record_id`` and one column per model field.
    output_path : str or path-like
        The scores CSV: record_id, score, grade, reasons. Written atomically;
        nothing is written when scoring fails.
    config : Config, optional
        With a config, the client's column names (``sources.*.columns``) are
        accepted and renamed to the canonical names, and multi-valued fields
        are split on the config's separator, as in training.
    top_reasons : int, default 3
        Reasons listed per record.
    allow_undeployable : bool, default False
        Score with a model that the fit judged not usable, or whose grades
        are marked not for deployment (for analysis, never for the CRM).

    Returns
    -------
    DataFrame
        The scores written.

    Raises
    ------
    ModelError
        If the model file is invalid, the model is not usable (unless
        ``allow_undeployable``), or the input lacks a field the model
        needs. Values never seen in training do not fail: they score the
        field's ``other_points``.
    DataError
        If the input file cannot be read.
    """
    card = ScoreCard.read(model_path)
    if not allow_undeployable:
        _require_deployable(card, model_path)
    frame = _read_input(Path(input_path))
    if config is not None:
        frame = _rename_to_canonical(frame, config)
    frame = _join_multi_values(frame, card, config)
    scores = score_records(card, frame, top_reasons=top_reasons)
    _write_scores(scores, Path(output_path))
    logger.info("scored %d records from %s", len(scores), input_path)
    return scores


def _require_deployable(card: ScoreCard, path) -> None:
    grades = card.grades or {}
    if card.usable and card.fields and not grades.get("not_for_deployment"):
        return
    reasons = "; ".join(card.verdict.get("reasons", [])) or "no reason recorded"
    raise ModelError(
        f"model {path} is not for deployment ({reasons}); scores from it would "
        "mislead sales. Re-run the analysis, or pass --allow-undeployable to "
        "score anyway for analysis"
    )


def _read_input(path: Path) -> pd.DataFrame:
    from .errors import DataError

    kind = _READERS.get(path.suffix.lower())
    if not path.is_file() or kind is None:
        problem = "not found" if not path.is_file() else "has an unknown suffix"
        raise DataError(
            f"input file {path} {problem}; pass a CSV, TSV, Excel or Parquet file "
            f"({', '.join(sorted(_READERS))})"
        )
    try:
        if kind == "excel":
            return pd.read_excel(path, dtype=str)
        if kind == "parquet":
            return pd.read_parquet(path)
        return _read_delimited(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"input file {path} could not be read: {exc}") from None


def _read_delimited(path: Path) -> pd.DataFrame:
    import io

    from ._io import _sniff_delimiter, decode_bytes

    text, _ = decode_bytes(path.read_bytes())
    # The data layer's sniffer only picks real delimiters: a one-column file
    # is never split on a letter of its header.
    sep = _sniff_delimiter(text, default=",")
    return pd.read_csv(
        io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""]
    )


def _rename_to_canonical(frame: pd.DataFrame, config: Config) -> pd.DataFrame:
    frame = frame.rename(columns=lambda c: str(c).strip())
    renames = {}
    for source in config.sources.values():
        for canonical, column in source.columns.items():
            if canonical not in frame.columns and column in frame.columns:
                renames[column] = canonical
    return frame.rename(columns=renames)


def _join_multi_values(frame: pd.DataFrame, card: ScoreCard, config) -> pd.DataFrame:
    """Split multi-valued text on the client's separator, as in training."""
    for f in card.fields:
        spec = config.fields.get(f.name) if config is not None else None
        sep = spec.separator if spec is not None else f.source_separator
        if f.kind == "multi" and sep and f.name in frame.columns:
            cleaned = _clean.clean_multi(frame[f.name], separator=sep)
            frame = frame.assign(**{f.name: cleaned.values})
    return frame


def _safe_cell(value: Any) -> Any:
    from .export import neutralize_cell  # export imports this module's peers

    return neutralize_cell(value) if isinstance(value, str) else value


def _write_scores(scores: pd.DataFrame, path: Path) -> Path:
    out = scores.assign(reasons=scores["reasons"].map("; ".join))
    out = out.assign(
        record_id=out["record_id"].map(_safe_cell),
        reasons=out["reasons"].map(_safe_cell),
    )
    return write_text_atomic(path, out.to_csv(index=False, lineterminator="\n"))
