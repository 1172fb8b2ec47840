"""Population stability (PSI) and conversion drift between two samples.

The review compares the records of the training window (the *expected*
sample) with the records of the review quarter (the *actual* sample). Both
are cut into the same bins, and the population stability index

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

sums the change of each bin's share. Empty bins would make the logarithm
infinite, so every bin count gets :data:`SMOOTHING` added before the shares
are taken; the index is then always a finite number when both samples hold
at least one record.

A fixed cut-off such as "0.1 means a change" ignores sample size: two small
samples from the same population easily differ by 0.1, two huge ones never
do. Under no change, ``PSI / (1/n + 1/m)`` is approximately chi-square with
``k - 1`` degrees of freedom (``k`` bins, ``n`` and ``m`` records), because
each term ``(a - e) ln(a / e)`` is close to ``(a - e)^2 / e``. The review
reports that p-value and the PSI a change must reach to be significant, and
calls a variable *shifted* only when the change is both significant and
material (PSI of at least :data:`MATERIAL_PSI`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from ._stats import two_proportion_test

__all__ = [
    "PSIResult",
    "population_stability",
    "bin_values",
    "conversion_drift",
    "calibration_by_bin",
    "score_edges",
    "categorical_levels",
    "holm_adjust",
    "MATERIAL_PSI",
    "SMOOTHING",
    "DRIFT_STATUSES",
]

logger = logging.getLogger(__name__)

SMOOTHING = 0.5
MATERIAL_PSI = 0.10
MISSING_BIN = "missing"
OTHER_BIN = "other"
DRIFT_STATUSES = ("stable", "watch", "shifted", "not judged")


@dataclass(frozen=True)
class PSIResult:
    """Population stability of one variable between two samples.

    Attributes
    ----------
    psi : float
        The smoothed population stability index (NaN when a sample is empty).
    bins : tuple of str
        Bin labels, in order.
    expected_counts, actual_counts : tuple of int
        Records per bin in the reference and in the new sample.
    contributions : tuple of float
        Each bin's share of the PSI; the largest names what moved.
    statistic : float
        ``psi / (1/n + 1/m)``, approximately chi-square under no change.
    dof : int
        Degrees of freedom: bins holding records, minus one.
    p_value : float
        Chance of a PSI this large with no change in the population.
    critical_psi : float
        The PSI that would be significant at ``alpha`` for these sizes.
    status : str
        One of ``stable``, ``watch``, ``shifted`` or ``not judged``.
    reason : str
        The status in words.
    """

    psi: float
    bins: tuple[str, ...]
    expected_counts: tuple[int, ...]
    actual_counts: tuple[int, ...]
    contributions: tuple[float, ...]
    n_expected: int
    n_actual: int
    statistic: float
    dof: int
    p_value: float
    critical_psi: float
    alpha: float
    status: str
    reason: str

    def to_frame(self) -> pd.DataFrame:
        """Return one row per bin: counts, shares and PSI contribution."""
        e = np.asarray(self.expected_counts, dtype=float)
        a = np.asarray(self.actual_counts, dtype=float)
        return pd.DataFrame(
            {
                "bin": list(self.bins),
                "expected_records": e.astype(int),
                "expected_share": _safe_share(e),
                "actual_records": a.astype(int),
                "actual_share": _safe_share(a),
                "psi_contribution": list(self.contributions),
            }
        )

    def top_movers(self, n: int = 2) -> list[str]:
        """Return the labels of the ``n`` bins that moved the PSI most."""
        order = np.argsort(-np.asarray(self.contributions, dtype=float))
        return [self.bins[i] for i in order[:n] if self.contributions[i] > 0]

    def to_json_dict(self) -> dict:
        """Return the result as JSON-ready values (NaN as None)."""
        raw = asdict(self)
        return {k: _json_value(v) for k, v in raw.items()}


def _json_value(value):
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _safe_share(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    if total == 0:
        return np.full(counts.shape, np.nan)
    return counts / total


def score_edges(values: pd.Series, *, n_bins: int = 10) -> list[float]:
    """Return cut points that split ``values`` into about ``n_bins`` groups.

    Cut points are quantiles of the non-missing values, duplicates dropped;
    each bin holds values ``lower <= v < upper``.
    """
    clean = pd.to_numeric(values, errors="coerce").dropna()
    if clean.empty:
        return []
    qs = np.linspace(0, 1, n_bins + 1)[1:-1]
    edges = np.unique(np.quantile(clean.to_numpy(float), qs))
    return [float(e) for e in edges if e > clean.min()]


def categorical_levels(
    values: pd.Series, *, min_share: float = 0.01, max_levels: int = 15
) -> list[str]:
    """Return the frequent levels of ``values``, most frequent first.

    Levels below ``min_share`` of the non-missing values, and any beyond
    ``max_levels``, are left out (they fall in the ``other`` bin).
    """
    counts = values.dropna().astype(str).value_counts()
    if counts.empty:
        return []
    shares = counts / counts.sum()
    kept = shares[shares >= min_share].index[:max_levels]
    return [str(v) for v in kept]


def _label_numeric(values: pd.Series, edges: Sequence[float]) -> pd.Series:
    nums = pd.to_numeric(values, errors="coerce").to_numpy(float)
    idx = np.searchsorted(np.asarray(edges, float), nums, side="right")
    labels = np.array(_edge_labels(edges), dtype=object)[np.minimum(idx, len(edges))]
    labels = np.where(np.isnan(nums), MISSING_BIN, labels)
    return pd.Series(labels, index=values.index, dtype=object)


def _short_number(value: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e4, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.4g}"


def _edge_labels(edges: Sequence[float]) -> list[str]:
    if not edges:
        return ["all values"]
    fmt = [_short_number(e) for e in edges]
    inner = [f"{lo} to <{hi}" for lo, hi in zip(fmt[:-1], fmt[1:], strict=True)]
    return [f"< {fmt[0]}", *inner, f">= {fmt[-1]}"]


def _label_categorical(values: pd.Series, levels: Sequence[str]) -> pd.Series:
    text = values.astype(object).where(values.notna(), None)
    known = set(levels)
    out = [
        MISSING_BIN if v is None else (str(v) if str(v) in known else OTHER_BIN)
        for v in text
    ]
    return pd.Series(out, index=values.index, dtype=object)


def bin_values(
    expected: pd.Series, actual: pd.Series, *, bins: Sequence | None = None
) -> tuple[pd.Series, pd.Series, list[str]]:
    """Cut two samples into the same bins (see :func:`population_stability`).

    Returns the bin label of each value of ``expected`` and of ``actual``,
    and the bin labels in order.
    """
    numeric = bins is None and pd.api.types.is_numeric_dtype(expected)
    if numeric or (bins is not None and _all_numbers(bins)):
        edges = score_edges(expected) if bins is None else [float(b) for b in bins]
        order = [*_edge_labels(edges), MISSING_BIN]
        return (
            _label_numeric(expected, edges),
            _label_numeric(actual, edges),
            order,
        )
    levels = categorical_levels(expected) if bins is None else [str(b) for b in bins]
    order = [*levels, OTHER_BIN, MISSING_BIN]
    return (
        _label_categorical(expected, levels),
        _label_categorical(actual, levels),
        order,
    )


def _all_numbers(bins) -> bool:
    return len(bins) > 0 and all(
        isinstance(b, int | float | np.number) and not isinstance(b, bool) for b in bins
    )


def population_stability(
    expected,
    actual,
    *,
    bins: Sequence | None = None,
    alpha: float = 0.05,
) -> PSIResult:
    """Compare the distribution of one variable in two samples.

    Parameters
    ----------
    expected : array-like
        Values in the reference sample (the training window).
    actual : array-like
        Values in the new sample (the review quarter).
    bins : sequence, optional
        Numbers are cut points (a value ``v`` falls in the bin with
        ``lower <= v < upper``); text values are the levels to keep apart
        (anything else goes to ``other``). Missing values always form their
        own ``missing`` bin. By default numeric data is cut at the deciles of
        ``expected`` and text keeps the levels holding 1% of ``expected``.
    alpha : float
        Significance level of the test of no change.

    Returns
    -------
    PSIResult
        The PSI, its p-value and critical value, counts per bin and a status:
        ``shifted`` (significant and PSI >= 0.10), ``watch`` (significant
        but small, or large but not significant) or ``stable``.

    Notes
    -----
    Each bin count gets 0.5 added before shares are taken (additive
    smoothing), so an empty bin gives a finite PSI. Bins empty in both
    samples are dropped. The p-value uses ``PSI / (1/n + 1/m) ~ chi2(k-1)``.

    Examples
    --------
    >>> res = population_stability(["a"] * 50 + ["b"] * 50, ["a"] * 80 + ["b"] * 20)
    >>> round(res.psi, 3), res.status
    (0.406, 'shifted')
    """
    exp = pd.Series(np.asarray(expected, dtype=object)).infer_objects()
    act = pd.Series(np.asarray(actual, dtype=object)).infer_objects()
    exp_lab, act_lab, order = bin_values(exp, act, bins=bins)
    e = exp_lab.value_counts().reindex(order, fill_value=0).to_numpy(int)
    a = act_lab.value_counts().reindex(order, fill_value=0).to_numpy(int)
    used = (e + a) > 0
    return _psi_from_counts(
        [b for b, u in zip(order, used, strict=True) if u], e[used], a[used], alpha
    )


def _psi_from_counts(labels, e, a, alpha: float) -> PSIResult:
    n, m = int(e.sum()), int(a.sum())
    if n == 0 or m == 0:
        side = "reference" if n == 0 else "review"
        return _empty_result(labels, e, a, alpha, f"no records in the {side} sample")

    ps = (e + SMOOTHING) / (n + SMOOTHING * len(e))
    qs = (a + SMOOTHING) / (m + SMOOTHING * len(a))
    contrib = (qs - ps) * np.log(qs / ps)
    psi = float(contrib.sum())
    dof = max(len(e) - 1, 0)
    scale = 1 / n + 1 / m
    stat = psi / scale
    p = float(stats.chi2.sf(stat, dof)) if dof > 0 else 1.0
    crit = float(stats.chi2.ppf(1 - alpha, dof) * scale) if dof > 0 else np.inf
    status, reason = _classify(psi, p, crit, alpha)
    return PSIResult(
        psi=psi,
        bins=tuple(labels),
        expected_counts=tuple(int(x) for x in e),
        actual_counts=tuple(int(x) for x in a),
        contributions=tuple(float(c) for c in contrib),
        n_expected=n,
        n_actual=m,
        statistic=float(stat),
        dof=dof,
        p_value=p,
        critical_psi=crit,
        alpha=alpha,
        status=status,
        reason=reason,
    )


def _empty_result(labels, e, a, alpha: float, why: str) -> PSIResult:
    return PSIResult(
        psi=float("nan"),
        bins=tuple(labels),
        expected_counts=tuple(int(x) for x in e),
        actual_counts=tuple(int(x) for x in a),
        contributions=tuple(float("nan") for _ in labels),
        n_expected=int(e.sum()),
        n_actual=int(a.sum()),
        statistic=float("nan"),
        dof=max(len(labels) - 1, 0),
        p_value=float("nan"),
        critical_psi=float("nan"),
        alpha=alpha,
        status="not judged",
        reason=f"not enough data: {why}",
    )


def _classify(psi: float, p: float, crit: float, alpha: float) -> tuple[str, str]:
    significant = p < alpha
    material = psi >= MATERIAL_PSI
    if significant and material:
        return "shifted", (
            f"the mix changed materially (PSI {psi:.2f} >= {MATERIAL_PSI:.2f}) "
            f"and more than chance explains (p = {p:.2g})"
        )
    if significant:
        return "watch", (
            f"a small but real change (PSI {psi:.3f}, p = {p:.2g}; "
            f"below the material level {MATERIAL_PSI:.2f})"
        )
    if material:
        return "watch", (
            f"a large change (PSI {psi:.2f}) that the sample sizes cannot "
            f"confirm (p = {p:.2g}; {crit:.2f} would be significant)"
        )
    return "stable", f"no real change (PSI {psi:.3f}, p = {p:.2g})"


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Return Holm step-down adjusted p-values; NaN entries stay NaN."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def conversion_drift(
    reference: pd.DataFrame,
    review: pd.DataFrame,
    *,
    levels: Sequence[str],
    min_closed: int = 10,
) -> pd.DataFrame:
    """Compare conversion per bin between two samples.

    Two tests per bin, each run when the bin holds at least ``min_closed``
    closed records on both sides:

    - ``p_value``: the bin's conversion in ``review`` against ``reference``
      (two-sided pooled two-proportion z-test);
    - ``relative_p``: did the bin's conversion change *relative to the other
      bins*? Woolf's test that the odds ratio of the bin against the rest is
      the same in both samples (0.5 added to every cell of a table holding
      a zero). A change that hits every bin alike, such as recent records
      whose quick losses closed first, does not show here.

    Parameters
    ----------
    reference, review : pandas.DataFrame
        Columns ``bin`` (the label from :func:`bin_values`) and ``won``
        (1.0, 0.0, or NaN for open records, which are left out).
    levels : sequence of str
        The bins to compare, in order.
    min_closed : int
        Bins with fewer closed records on either side are not tested.

    Returns
    -------
    pandas.DataFrame
        One row per bin with closed records: closed records and conversion
        on each side, ``change`` (review minus reference), ``p_value``,
        ``relative_change`` (log odds ratio against the rest, review minus
        reference) and ``relative_p``.
    """
    ref, new = _closed_by_bin(reference), _closed_by_bin(review)
    ref_all = tuple(map(sum, zip(*ref.values(), strict=True))) if ref else (0, 0)
    new_all = tuple(map(sum, zip(*new.values(), strict=True))) if new else (0, 0)
    rows = []
    for level in levels:
        (x1, n1), (x2, n2) = ref.get(level, (0.0, 0)), new.get(level, (0.0, 0))
        if n1 + n2 == 0:
            continue
        tested = min(n1, n2) >= min_closed
        rel, rel_p = _woolf((x1, n1), ref_all, (x2, n2), new_all)
        rows.append(
            {
                "level": level,
                "reference_closed": n1,
                "reference_conversion": x1 / n1 if n1 else np.nan,
                "review_closed": n2,
                "review_conversion": x2 / n2 if n2 else np.nan,
                "p_value": two_proportion_test(x2, n2, x1, n1).p_value
                if tested
                else np.nan,
                "relative_change": rel,
                "relative_p": rel_p if tested else np.nan,
            }
        )
    out = pd.DataFrame(rows, columns=_DRIFT_COLUMNS)
    return out.assign(change=out["review_conversion"] - out["reference_conversion"])


_DRIFT_COLUMNS = [
    "level",
    "reference_closed",
    "reference_conversion",
    "review_closed",
    "review_conversion",
    "p_value",
    "relative_change",
    "relative_p",
]


def _log_odds_ratio(level: tuple, total: tuple) -> tuple[float, float]:
    """Log odds ratio of a bin against the other bins, and its variance."""
    wins, n = level
    rest_wins, rest_n = total[0] - wins, total[1] - n
    cells = np.array([wins, n - wins, rest_wins, rest_n - rest_wins], dtype=float)
    if (cells == 0).any():
        cells = cells + 0.5
    a, b, c, d = cells
    return float(np.log(a * d / (b * c))), float(np.sum(1 / cells))


def _woolf(ref_level, ref_total, new_level, new_total) -> tuple[float, float]:
    if ref_level[1] in (0, ref_total[1]) or new_level[1] in (0, new_total[1]):
        return float("nan"), float("nan")
    lor_ref, var_ref = _log_odds_ratio(ref_level, ref_total)
    lor_new, var_new = _log_odds_ratio(new_level, new_total)
    diff = lor_new - lor_ref
    z = diff / np.sqrt(var_ref + var_new)
    return diff, float(2 * stats.norm.sf(abs(z)))


def _closed_by_bin(frame: pd.DataFrame) -> dict:
    closed = frame.loc[frame["won"].notna()]
    won = closed["won"].astype(float)
    grouped = won.groupby(closed["bin"]).agg(["sum", "count"])
    return {k: (float(r["sum"]), int(r["count"])) for k, r in grouped.iterrows()}


def calibration_by_bin(
    review: pd.DataFrame, *, levels: Sequence[str], min_closed: int = 10
) -> pd.DataFrame:
    """Test, per bin, whether the model still predicts the bin's conversion.

    Each closed record of ``review`` carries ``expected``: the conversion
    calibration promised for it (its grade's conversion). Expected wins are
    first rescaled so that they add up to the wins of the whole sample;
    a bin then stands out only when it did worse (or better) than the rest,
    given the scores of its records, and not when every bin moved alike.
    The test compares observed and rescaled expected wins,
    ``z = (O - E) / sqrt(sum p (1 - p))``, with a normal approximation.

    Parameters
    ----------
    review : pandas.DataFrame
        Columns ``bin``, ``won`` (NaN for open records, left out) and
        ``expected`` (probability between 0 and 1).
    levels : sequence of str
        The bins to test, in order.
    min_closed : int
        Bins with fewer closed records are not tested.

    Returns
    -------
    pandas.DataFrame
        ``level``, ``closed``, ``wins``, ``expected_wins`` (rescaled),
        ``z`` and ``calibration_p`` (two-sided; NaN when not tested).
    """
    closed = review.loc[review["won"].notna() & review["expected"].notna()]
    total_e = float(closed["expected"].sum())
    scale = float(closed["won"].sum()) / total_e if total_e > 0 else np.nan
    p = (closed["expected"] * scale).clip(1e-6, 1 - 1e-6)
    rows = []
    for level in levels:
        mask = (closed["bin"] == level).to_numpy()
        n, o = int(mask.sum()), float(closed.loc[mask, "won"].sum())
        e, v = float(p[mask].sum()), float((p[mask] * (1 - p[mask])).sum())
        z = (o - e) / np.sqrt(v) if n >= min_closed and v > 0 else np.nan
        pval = float(2 * stats.norm.sf(abs(z))) if not np.isnan(z) else np.nan
        rows.append(
            {
                "level": level,
                "closed": n,
                "wins": o,
                "expected_wins": e,
                "z": z,
                "calibration_p": pval,
            }
        )
    return pd.DataFrame(
        rows,
        columns=["level", "closed", "wins", "expected_wins", "z", "calibration_p"],
    )
