"""Feature preparation for the model: levels, bins and indicators.

Each candidate field becomes an :class:`Encoding`, fitted on closed records:

- categorical: levels with at least ``min_level_count`` records keep their
  own level; rarer values are grouped as "Other";
- boolean: the levels "Yes" and "No";
- numeric and range: bins with at least ``min_bin_share`` of the records;
  a monotone trend is enforced where the data supports one;
- multi: one presence indicator per value with enough records;
- every kind: missing is a level of its own when it has enough records,
  else it joins "Other" (or the average, when there is no "Other").

Two encodings are used. :func:`screen_encoding` does not look at the
outcome (equal-count bins, count-based grouping), so that the
likelihood-ratio test of screening is not flattered by bins chosen to fit
the outcome. :func:`card_encoding` may look at the outcome (monotone bins,
pure levels merged) and is used for the points card of the kept fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from . import _clean
from ._stats import cochran_armitage_trend

__all__ = [
    "Encoding",
    "OTHER",
    "MISSING",
    "screen_encoding",
    "card_encoding",
    "level_labels",
    "design_matrix",
    "allocate_points",
    "information_value",
    "map_values",
]

OTHER = "(other)"
MISSING = "(missing)"
_FINE_BINS = 20


@dataclass(frozen=True)
class Encoding:
    """How one field's values map to model levels.

    Attributes
    ----------
    name, label, kind : str
        The field.
    levels : tuple of (label, tuple of values)
        Categorical and boolean levels (values as they appear in the data).
    edges : tuple of float
        Numeric cut points; bin ``i`` is ``edges[i-1] <= v < edges[i]``.
    indicators : tuple of str
        Multi-valued presence indicators.
    has_other, has_missing : bool
        Whether "Other" and "Missing" are levels of their own.
    notes : tuple of str
        What was merged and why, in words, for the report.
    """

    name: str
    label: str
    kind: str
    levels: tuple[tuple[str, tuple], ...] = ()
    edges: tuple[float, ...] = ()
    indicators: tuple[str, ...] = ()
    has_other: bool = False
    has_missing: bool = False
    notes: tuple[str, ...] = ()

    @property
    def level_names(self) -> tuple[str, ...]:
        """Labels of the single-valued levels, Other and Missing last."""
        if self.kind == "multi":
            return self.indicators
        names = [lab for lab, _ in self.levels] if self.edges == () else []
        if self.kind in ("numeric", "range"):
            names = list(bin_labels(self.edges))
        names += [OTHER] if self.has_other else []
        return tuple(names + ([MISSING] if self.has_missing else []))


# --- shared helpers -----------------------------------------------------------


def map_values(values: pd.Series, func) -> pd.Series:
    """Apply ``func`` once per distinct value (missing values included)."""
    obj = values.astype("object")
    filled = obj.where(obj.notna(), None)
    uniques = pd.unique(filled.to_numpy())
    lookup = {u: func(u) for u in uniques if u is not None}
    missing = func(None)
    out = [missing if v is None else lookup[v] for v in filled.to_numpy()]
    return pd.Series(out, index=values.index, dtype="object")


def _keys(values: pd.Series) -> pd.Series:
    return map_values(values, _clean.category_key)


def _format_edge(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.4g}"


def bin_labels(edges: tuple[float, ...]) -> list[str]:
    """Return readable labels of the bins cut at ``edges``."""
    if not edges:
        return ["any value"]
    out = [f"< {_format_edge(edges[0])}"]
    out += [
        f"{_format_edge(a)} to < {_format_edge(b)}"
        for a, b in zip(edges, edges[1:], strict=False)
    ]
    return out + [f">= {_format_edge(edges[-1])}"]


def _multi_sets(values: pd.Series) -> pd.Series:
    def split(v):
        if _clean.is_placeholder(v):
            return frozenset()
        keys = (_clean.category_key(p) for p in str(v).split("|"))
        return frozenset(k for k in keys if k is not None)

    return map_values(values, split)


# --- screening encoding (blind to the outcome) --------------------------------


def screen_encoding(
    values: pd.Series,
    *,
    name: str,
    label: str,
    kind: str,
    min_level_count: int,
    min_bin_share: float,
    max_bins: int,
) -> Encoding:
    """Encode a field without looking at the outcome.

    Parameters
    ----------
    values : Series
        The field on the records used for fitting (closed records).
    name, label, kind : str
        The field's canonical name, label and kind.
    min_level_count : int
        Fewest records a categorical level or indicator needs.
    min_bin_share : float
        Smallest share of the filled records a numeric bin may hold.
    max_bins : int
        Most numeric bins.

    Returns
    -------
    Encoding
    """
    base = Encoding(name=name, label=label, kind=kind)
    if kind in ("numeric", "range"):
        nums = pd.to_numeric(values, errors="coerce").astype("float64")
        edges = _quantile_edges(nums.dropna(), max_bins, min_bin_share)
        return _with_missing(replace(base, edges=edges), nums.isna(), min_level_count)
    if kind == "multi":
        return _multi_encoding(base, values, min_level_count)
    return _level_encoding(base, values, min_level_count)


def _quantile_edges(x: pd.Series, n_bins: int, min_share: float) -> tuple:
    if x.nunique() < 2:
        return ()
    n_bins = max(1, min(n_bins, math.floor(1 / min_share)))
    qs = np.quantile(x.to_numpy(), np.linspace(0, 1, n_bins + 1)[1:-1])
    edges = sorted({float(q) for q in qs if q > x.min()})
    return _merge_small_bins(x.to_numpy(), tuple(edges), min_share)


def _merge_small_bins(x: np.ndarray, edges: tuple, min_share: float) -> tuple:
    edges = list(edges)
    need = max(1, math.ceil(min_share * len(x)))
    while edges:
        counts = np.bincount(np.searchsorted(edges, x, side="right"))
        counts = np.pad(counts, (0, len(edges) + 1 - len(counts)))
        small = int(np.argmin(counts))
        if counts[small] >= need:
            break
        edges.pop(_edge_to_drop(counts, small))
    return tuple(edges)


def _edge_to_drop(counts: np.ndarray, i: int) -> int:
    """Index of the edge that merges bin ``i`` with its smaller neighbour."""
    if i == 0:
        return 0
    if i == len(counts) - 1:
        return i - 1
    return i - 1 if counts[i - 1] <= counts[i + 1] else i


def _with_missing(enc: Encoding, missing: pd.Series, min_count: int) -> Encoding:
    n_missing = int(missing.sum())
    if n_missing >= min_count:
        return replace(enc, has_missing=True)
    if n_missing == 0:
        return enc
    note = (
        f"{enc.label}: only {n_missing} records have no value; they are "
        f"scored with {'Other' if enc.has_other else 'the average'} "
        "instead of a level of their own"
    )
    return replace(enc, notes=(*enc.notes, note))


def _level_encoding(base: Encoding, values: pd.Series, min_count: int) -> Encoding:
    if base.kind == "boolean":
        flags = map_values(values, _clean.parse_bool)
        levels = tuple(
            (lab, (flag,))
            for lab, flag in (("Yes", True), ("No", False))
            if (flags == flag).sum() > 0
        )
        return _with_missing(replace(base, levels=levels), flags.isna(), min_count)

    keys = _keys(values)
    counts = keys.value_counts()
    common = [k for k, n in counts.items() if n >= min_count]
    spelling = _spellings(values, keys)
    levels = tuple((spelling[k], (spelling[k],)) for k in common)
    rare = counts.drop(common)
    enc = replace(base, levels=levels, has_other=int(rare.sum()) > 0)
    if len(rare):
        enc = replace(enc, notes=(_rare_note(base.label, rare, min_count),))
    return _with_missing(enc, keys.isna(), min_count)


def _spellings(values: pd.Series, keys: pd.Series) -> dict:
    text = map_values(values, _clean.normalize_category)
    frame = pd.DataFrame({"key": keys, "text": text}).dropna()
    return frame.groupby("key")["text"].agg(lambda s: s.value_counts().index[0])


def _rare_note(label: str, rare: pd.Series, min_count: int) -> str:
    return (
        f"{label}: {len(rare)} value(s) with fewer than {min_count} records "
        f"({int(rare.sum())} records in all) are grouped as Other"
    )


def _multi_encoding(base: Encoding, values: pd.Series, min_count: int) -> Encoding:
    sets = _multi_sets(values)
    counts = pd.Series([k for s in sets for k in s], dtype="object").value_counts()
    n = len(sets)
    keep = [k for k, c in counts.items() if min_count <= c <= n - min_count]
    spelling = _multi_spellings(values)
    indicators = tuple(spelling.get(k, k) for k in keep)
    enc = replace(base, indicators=indicators)
    dropped = len(counts) - len(keep)
    if dropped:
        note = (
            f"{base.label}: {dropped} value(s) present on fewer than {min_count} "
            "records (or on nearly all) get no indicator of their own"
        )
        enc = replace(enc, notes=(note,))
    return _with_missing(enc, sets.map(len) == 0, min_count)


def _multi_spellings(values: pd.Series) -> dict:
    parts = values.dropna().astype(str).str.split("|").explode()
    parts = parts.map(_clean.normalize_category).dropna().astype("object")
    keys = parts.map(_clean.category_key)
    frame = pd.DataFrame({"key": keys, "text": parts})
    return frame.groupby("key")["text"].agg(lambda s: s.value_counts().index[0])


# --- levels of records --------------------------------------------------------


def level_labels(enc: Encoding, values: pd.Series) -> pd.Series:
    """Return the level label of each record (single-valued kinds).

    Missing values get "Missing" when it is a level, else "Other" when that
    is a level, else NA (the caller scores them with the average).
    """
    if enc.kind in ("numeric", "range"):
        nums = pd.to_numeric(values, errors="coerce").to_numpy("float64")
        names = np.array(bin_labels(enc.edges), dtype=object)
        idx = np.searchsorted(np.array(enc.edges, float), nums, side="right")
        out = pd.Series(names[np.minimum(idx, len(names) - 1)], index=values.index)
        missing = pd.Series(np.isnan(nums), index=values.index)
    else:
        keys = _level_keys(enc, values)
        lookup = {_key_of(enc, v): lab for lab, vals in enc.levels for v in vals}
        out = keys.map(lambda k: lookup.get(k, OTHER if enc.has_other else None))
        missing = keys.isna()
    fill = MISSING if enc.has_missing else (OTHER if enc.has_other else None)
    return out.astype("object").where(~missing, fill)


def _key_of(enc: Encoding, value) -> object:
    if enc.kind == "boolean":
        return _clean.parse_bool(value)
    return _clean.category_key(value)


def _level_keys(enc: Encoding, values: pd.Series) -> pd.Series:
    return map_values(values, lambda v: _key_of(enc, v))


def indicator_frame(enc: Encoding, values: pd.Series) -> pd.DataFrame:
    """Return 0/1 presence columns of a multi-valued field (and Missing)."""
    sets = _multi_sets(values)
    keys = {ind: _clean.category_key(ind) for ind in enc.indicators}
    cols = {ind: sets.map(lambda s, k=key: float(k in s)) for ind, key in keys.items()}
    if enc.has_missing:
        cols[MISSING] = (sets.map(len) == 0).astype("float64")
    return pd.DataFrame(cols, index=values.index, dtype="float64")


def design_matrix(
    encodings: list[Encoding],
    frame: pd.DataFrame,
    *,
    columns: pd.Index | None = None,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Return dummy columns for the fields and, per field, its column names.

    Single-valued fields are dummy coded against their most frequent level
    (which gets no column); multi-valued fields contribute their indicators.
    With ``columns`` (the columns of a fit on other records) the result has
    exactly those columns, so records are coded as in that fit.
    """
    parts, names = [], {}
    for enc in encodings:
        part = _field_dummies(enc, frame[enc.name], drop=columns is None)
        part.columns = [f"{enc.name}={c}" for c in part.columns]
        parts.append(part)
        names[enc.name] = list(part.columns)
    x = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=frame.index)
    if columns is not None:
        x = x.reindex(columns=columns, fill_value=0.0)
    return x, names


def _field_dummies(enc: Encoding, values: pd.Series, *, drop: bool) -> pd.DataFrame:
    if enc.kind == "multi":
        return indicator_frame(enc, values)
    labels = level_labels(enc, values)
    dummies = pd.get_dummies(labels, dtype="float64")
    if drop and dummies.shape[1] > 0:
        dummies = dummies.drop(columns=labels.value_counts().index[0])
    return dummies


# --- outcome-aware card encoding ----------------------------------------------


def card_encoding(
    values: pd.Series,
    won: pd.Series,
    screen: Encoding,
    *,
    alpha: float,
    min_bin_share: float,
    max_bins: int,
) -> Encoding:
    """Refine a screening encoding for the points card.

    Numeric bins start from up to 20 equal-count bins; where a
    Cochran-Armitage test finds a trend (``p < alpha``), adjacent bins
    are merged until conversion is monotone; then the closest adjacent
    bins are merged down to ``max_bins``. Bins and categorical levels whose
    records are all won or all lost are merged (into a neighbour, or into
    Other), so that no level produces an extreme coefficient.

    Returns
    -------
    Encoding
        With notes on every merge.
    """
    if screen.kind in ("numeric", "range"):
        return _card_bins(values, won, screen, alpha, min_bin_share, max_bins)
    if screen.kind == "multi":
        return screen
    return _merge_pure_levels(values, won, screen)


def _card_bins(values, won, screen, alpha, min_share, max_bins) -> Encoding:
    nums = pd.to_numeric(values, errors="coerce").to_numpy("float64")
    keep = ~np.isnan(nums)
    x, y = nums[keep], won.to_numpy("float64")[keep]
    edges = list(_quantile_edges(pd.Series(x), _FINE_BINS, min_share))
    notes = list(screen.notes)
    trend = _bin_trend(x, y, edges)
    if trend.significant(alpha):
        edges = _monotone_edges(x, y, edges, rising=trend.effect > 0)
        way = "rises" if trend.effect > 0 else "falls"
        notes.append(
            f"{screen.label}: conversion {way} with the value "
            f"(trend test {_p_text(trend.p_value)}); bins merged until it is monotone"
        )
    edges = _merge_closest(x, y, edges, max_bins)
    edges = _merge_pure_bins(x, y, edges, screen.label, notes)
    return replace(screen, edges=tuple(edges), notes=tuple(notes))


def _p_text(p: float) -> str:
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"


def _bin_stats(x, y, edges) -> tuple[np.ndarray, np.ndarray]:
    idx = np.searchsorted(edges, x, side="right")
    n = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    wins = np.bincount(idx, weights=y, minlength=len(edges) + 1)
    return wins, n


def _bin_trend(x, y, edges):
    wins, n = _bin_stats(x, y, edges)
    return cochran_armitage_trend(wins, n)


def _monotone_edges(x, y, edges: list, *, rising: bool) -> list:
    edges = list(edges)
    while edges:
        wins, n = _bin_stats(x, y, edges)
        rate = wins / np.maximum(n, 1)
        step = np.diff(rate) if rising else -np.diff(rate)
        if (step >= 0).all():
            break
        edges.pop(int(np.argmin(step)))
    return edges


def _merge_closest(x, y, edges: list, max_bins: int) -> list:
    edges = list(edges)
    while len(edges) + 1 > max_bins:
        wins, n = _bin_stats(x, y, edges)
        rate = wins / np.maximum(n, 1)
        # the pair whose merge loses the least separation (weighted gap)
        cost = np.abs(np.diff(rate)) * (n[:-1] * n[1:]) / (n[:-1] + n[1:])
        edges.pop(int(np.argmin(cost)))
    return edges


def _merge_pure_bins(x, y, edges: list, label: str, notes: list) -> list:
    edges = list(edges)
    while edges:
        wins, n = _bin_stats(x, y, edges)
        pure = np.flatnonzero((wins == 0) | (wins == n))
        if not len(pure):
            break
        i = int(pure[0])
        notes.append(
            f"{label}: a bin whose records were all {'lost' if wins[i] == 0 else 'won'}"
            " was merged with its neighbour (no extreme points from a small bin)"
        )
        edges.pop(_edge_to_drop(n, i))
    return edges


def _merge_pure_levels(values: pd.Series, won: pd.Series, enc: Encoding) -> Encoding:
    labels = level_labels(enc, values)
    table = pd.DataFrame({"level": labels, "won": won.to_numpy()}).dropna()
    stats = table.groupby("level")["won"].agg(["sum", "count"])
    pure = stats[(stats["sum"] == 0) | (stats["sum"] == stats["count"])]
    pure = [lab for lab in pure.index if lab not in (OTHER, MISSING)]
    if not pure:
        return enc
    levels = tuple(lv for lv in enc.levels if lv[0] not in pure)
    note = (
        f"{enc.label}: level(s) {', '.join(map(str, pure))} had only won or only "
        "lost records and were merged into Other (no extreme points from them)"
    )
    return replace(enc, levels=levels, has_other=True, notes=(*enc.notes, note))


# --- points and information value ---------------------------------------------


def allocate_points(raw: np.ndarray, total: int) -> np.ndarray:
    """Round non-negative shares to integers that add up to ``total``.

    Largest-remainder rounding: every value is rounded down, then the units
    still missing go to the values with the largest remainders (ties to the
    first). Each result is within 1 of ``raw * total / raw.sum()``.

    Parameters
    ----------
    raw : array of float
        Non-negative shares (any scale; at least one positive).
    total : int
        The sum the integers must reach.

    Returns
    -------
    numpy.ndarray of int
    """
    raw = np.asarray(raw, dtype=float)
    scaled = raw * total / raw.sum()
    base = np.floor(scaled).astype("int64")
    short = int(total - base.sum())
    order = np.argsort(-(scaled - base), kind="stable")
    base[order[:short]] += 1
    return base


def information_value(labels: pd.Series, won: pd.Series) -> float:
    """Information value of a grouping of records.

    ``IV = sum over levels of (share of wins - share of losses) * WoE`` with
    ``WoE = ln(share of wins / share of losses)``; a level with no wins or no
    losses gets 0.5 added to both counts so that WoE stays finite.

    Returns
    -------
    float
        NaN when there are no wins or no losses at all.
    """
    frame = pd.DataFrame({"level": labels.astype("object"), "won": won.to_numpy()})
    frame = frame.assign(level=frame["level"].fillna(MISSING))
    wins = frame.groupby("level")["won"].sum()
    losses = frame.groupby("level")["won"].count() - wins
    if wins.sum() == 0 or losses.sum() == 0:
        return math.nan
    pad = ((wins == 0) | (losses == 0)).astype(float) * 0.5
    w, lo = wins + pad, losses + pad
    share_w, share_l = w / w.sum(), lo / lo.sum()
    return float(((share_w - share_l) * np.log(share_w / share_l)).sum())
