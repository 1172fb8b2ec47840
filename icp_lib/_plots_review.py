"""Charts of the quarterly review (notebook 04).

Every function draws on the Axes it is given (or a new one) and returns it,
so tests can check what was drawn.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import PercentFormatter

__all__ = [
    "plot_grade_conversion",
    "plot_drift",
    "plot_shares",
    "plot_feedback_trend",
    "plot_history",
]

_STATUS_COLORS = {
    "stable": "#4c72b0",
    "watch": "#dd8452",
    "shifted": "#c44e52",
    "not judged": "#8c8c8c",
}


def _axes(ax):
    return ax if ax is not None else plt.subplots(figsize=(7, 4))[1]


def plot_grade_conversion(result, *, ax=None):
    """Bar per grade: the quarter's conversion with its interval.

    A black tick marks the conversion calibration expected. Grades without
    closed records show no bar.
    """
    ax = _axes(ax)
    g = result.grades
    if g.empty:
        ax.set_title("No grades to show")
        return ax
    x = np.arange(len(g))
    conv = g["conversion"].astype(float).to_numpy()
    err = np.vstack(
        [conv - g["conversion_low"].astype(float), g["conversion_high"] - conv]
    )
    ax.bar(
        x,
        np.nan_to_num(conv),
        yerr=np.clip(np.nan_to_num(err), 0.0, None),
        color="#4c72b0",
        capsize=4,
        label=f"{result.quarter} (closed records)",
    )
    ax.scatter(
        x,
        g["expected_conversion"].astype(float),
        marker="_",
        s=600,
        color="black",
        label="expected (calibration)",
        zorder=3,
    )
    ax.set_xticks(x, list(g.index))
    ax.set_xlabel("Grade")
    ax.set_ylabel("Conversion")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(frameon=False)
    return ax


def plot_drift(result, *, ax=None):
    """Horizontal bar per variable: its PSI, coloured by status.

    A grey tick marks the PSI that would be significant for the sample
    sizes; the dashed line the material level 0.10.
    """
    ax = _axes(ax)
    checks = [d for d in result.drift if d.result is not None]
    if not checks:
        ax.set_title("Drift could not be judged")
        return ax
    y = np.arange(len(checks))[::-1]
    psi = [d.result.psi for d in checks]
    colors = [_STATUS_COLORS[d.status] for d in checks]
    ax.barh(y, np.nan_to_num(psi), color=colors)
    ax.scatter(
        [d.result.critical_psi for d in checks],
        y,
        marker="|",
        s=200,
        color="#555555",
        zorder=3,
    )
    ax.axvline(0.10, linestyle="--", color="#999999", linewidth=1)
    ax.set_yticks(y, [d.label for d in checks])
    ax.set_xlabel("Population stability index (PSI)")
    return ax


def plot_shares(check, *, ax=None):
    """Side-by-side share of each bin: training window against the quarter."""
    ax = _axes(ax)
    if check is None or check.result is None:
        ax.set_title("Nothing to show")
        return ax
    frame = check.result.to_frame()
    x = np.arange(len(frame))
    ax.bar(
        x - 0.2,
        frame["expected_share"],
        width=0.4,
        label="training window",
        color="#8c8c8c",
    )
    ax.bar(
        x + 0.2,
        frame["actual_share"],
        width=0.4,
        label="review quarter",
        color=_STATUS_COLORS[check.status],
    )
    ax.set_xticks(x, frame["bin"].astype(str), rotation=30, ha="right")
    ax.set_ylabel("Share of records")
    ax.set_title(check.label)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(frameon=False)
    return ax


def plot_feedback_trend(feedback, *, ax=None):
    """Negative feedback share by month with intervals and the alert level."""
    ax = _axes(ax)
    if feedback is None or feedback.by_month["rows"].sum() == 0:
        ax.set_title("No sales feedback to show")
        return ax
    m = feedback.by_month
    x = np.arange(len(m))
    share = m["bad_share"].astype(float).to_numpy()
    err = np.vstack([share - m["bad_low"].astype(float), m["bad_high"] - share])
    colors = ["#4c72b0" if q else "#b0b0b0" for q in m["in_quarter"]]
    ax.bar(
        x,
        np.nan_to_num(share),
        yerr=np.clip(np.nan_to_num(err), 0.0, None),
        color=colors,
        capsize=4,
    )
    ax.axhline(
        feedback.threshold,
        linestyle="--",
        color="#c44e52",
        label=f"alert level {feedback.threshold:.0%}",
    )
    ax.set_xticks(x, m["month"].astype(str))
    ax.set_ylabel("Share of 'bad fit' verdicts")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(frameon=False)
    return ax


def plot_history(result, *, ax=None):
    """Conversion per grade, quarter by quarter (one line per grade)."""
    ax = _axes(ax)
    h = result.history
    if h.empty:
        ax.set_title("No history yet")
        return ax
    wide = h.pivot_table(
        index="quarter", columns="grade", values="conversion", aggfunc="first"
    )
    for grade in wide.columns:
        ax.plot(
            wide.index.astype(str),
            wide[grade].astype(float),
            marker="o",
            label="All records" if grade == "all" else f"Grade {grade}",
        )
    ax.set_xlabel("Quarter")
    ax.set_ylabel("Conversion")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(frameon=False)
    return ax
