"""Charts of notebook 03 (grade calibration).

Each function draws on ``ax`` (a new figure when None) and returns the Axes,
so tests can check bars and labels. When there is nothing to draw the Axes
says so in words instead of raising.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import PercentFormatter

from .grades import GRADES, Falloff, GradeTable

__all__ = [
    "plot_score_distribution",
    "plot_conversion_by_band",
    "plot_gains",
    "plot_grade_conversion",
]

_GRADE_COLORS = {"A": "#1b7837", "B": "#7fbf7b", "C": "#f1a340", "D": "#b35806"}


def _axes(ax: Axes | None, size=(7, 3.5)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def _say_empty(ax: Axes, text: str) -> Axes:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return ax


def _error_bars(mid, low, high) -> np.ndarray:
    # Rounding can put an interval bound a hair past its point estimate
    # (conversion 0 or 1); matplotlib refuses negative error lengths.
    err = np.vstack([mid - np.asarray(low, float), np.asarray(high, float) - mid])
    return np.clip(np.nan_to_num(err), 0.0, None)


def plot_score_distribution(
    records: pd.DataFrame,
    *,
    cuts: dict[str, int] | None = None,
    max_score: int = 100,
    ax: Axes | None = None,
) -> Axes:
    """Histogram of scores, won and other records stacked, with grade cuts.

    Parameters
    ----------
    records : DataFrame
        ``score`` and ``won`` (1 won, 0 lost, NaN open).
    cuts : dict, optional
        Grade cut points, drawn as vertical lines.
    max_score : int, default 100
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax)
    if records.empty:
        return _say_empty(ax, "No scores to show")
    edges = np.arange(0, max_score + 6, 5)
    won = records["score"][records["won"] == 1]
    rest = records["score"][records["won"] != 1]
    ax.hist([won, rest], bins=edges, stacked=True, label=["won", "lost or open"],
            color=["#1b7837", "#bbbbbb"])  # fmt: skip
    for grade, cut in (cuts or {}).items():
        ax.axvline(cut, color="black", linestyle="--", linewidth=1)
        ax.text(cut, ax.get_ylim()[1] * 0.95, f" {grade}", va="top")
    ax.set(xlabel="Score", ylabel="Records", title="Score distribution")
    ax.legend(frameon=False)
    return ax


def plot_conversion_by_band(falloff: Falloff | None, *, ax: Axes | None = None) -> Axes:
    """Conversion per score band with its interval, highest band left.

    Returns
    -------
    Axes
        One bar per band; bands without closed records have no bar.
    """
    ax = _axes(ax)
    if falloff is None or falloff.bands["closed"].sum() == 0:
        return _say_empty(ax, "Not enough closed records")
    b = falloff.bands
    conv = b["conversion"].to_numpy(dtype=float)
    err = _error_bars(conv, b["conversion_low"], b["conversion_high"])
    ax.bar(b["band"], np.nan_to_num(conv), yerr=err, color="#4575b4", capsize=3)
    ax.axhline(falloff.overall_conversion, color="grey", linestyle=":", linewidth=1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(xlabel="Score band", ylabel="Conversion", title="Conversion by score band")
    return ax


def plot_gains(falloff: Falloff | None, *, ax: Axes | None = None) -> Axes:
    """Gains curve: share of wins and revenue captured by the top records.

    Returns
    -------
    Axes
        Lines "wins", "revenue" and the diagonal "random order".
    """
    ax = _axes(ax, size=(5, 4))
    if falloff is None or falloff.gains.empty:
        return _say_empty(ax, "Not enough closed records")
    g = falloff.gains
    ax.plot(g["share_records"], g["share_wins"], label="wins", color="#1b7837")
    ax.plot(g["share_records"], g["share_revenue"], label="revenue", color="#4575b4")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="random order")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(
        xlabel="Top share of records by score",
        ylabel="Share captured",
        title="Gains curve",
    )
    ax.legend(frameon=False)
    return ax


def plot_grade_conversion(table: GradeTable | None, *, ax: Axes | None = None) -> Axes:
    """Conversion per grade with its interval.

    Returns
    -------
    Axes
        One bar per grade A-D, labelled with the conversion.
    """
    ax = _axes(ax, size=(5, 3.5))
    if table is None:
        return _say_empty(ax, "No grades were cut")
    f = table.frame.reindex(list(GRADES))
    conv = f["conversion"].to_numpy(dtype=float)
    err = _error_bars(conv, f["conversion_low"], f["conversion_high"])
    bars = ax.bar(list(GRADES), np.nan_to_num(conv), yerr=err,
                  color=[_GRADE_COLORS[g] for g in GRADES], capsize=4)  # fmt: skip
    labels = ["n/a" if np.isnan(c) else f"{c:.0%}" for c in conv]
    ax.bar_label(bars, labels=labels, padding=2)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(xlabel="Grade", ylabel="Conversion", title="Conversion by grade")
    return ax
