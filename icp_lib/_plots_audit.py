"""Charts of the data audit. Each takes ``ax=`` and returns the Axes it drew on."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

__all__ = [
    "plot_fill_heatmap",
    "plot_fill_by_outcome",
    "plot_conversion_by_fill",
    "style_fields",
    "style_quality",
]

_OUTCOME_COLORS = {"won": "#2a9d8f", "lost": "#e76f51", "open": "#adb5bd"}


def _axes(ax, size):
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def plot_fill_heatmap(audit, *, ax=None, cmap: str = "Blues"):
    """Fill rate of every field by quarter, as a heatmap.

    Parameters
    ----------
    audit : AuditResult
    ax : matplotlib Axes, optional
    cmap : str, default "Blues"

    Returns
    -------
    matplotlib.axes.Axes
        One row per field (its label), one column per quarter; cells show
        the percentage filled, blank where a quarter has no records.
    """
    fill = audit.fill_frame()
    ax = _axes(ax, (max(6, 0.7 * fill.shape[1] + 3), 0.45 * len(fill) + 1.5))
    if fill.empty or fill.shape[1] == 0:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "No dated records: no fill rate by quarter", ha="center")
        return ax
    sns.heatmap(
        fill * 100,
        ax=ax,
        vmin=0,
        vmax=100,
        cmap=cmap,
        annot=True,
        fmt=".0f",
        mask=fill.isna(),
        cbar_kws={"label": "% of records filled"},
        linewidths=0.5,
    )
    ax.set_xlabel("Quarter (record date)")
    ax.set_ylabel("")
    ax.set_title("How often each field is filled, by quarter")
    return ax


def plot_fill_by_outcome(audit, *, ax=None):
    """Fill rate of each field on won, lost and still-open records.

    A field filled far more often on won than on lost records is usually
    filled because of the outcome, which the chart makes easy to see.

    Returns
    -------
    matplotlib.axes.Axes
        Horizontal bars, one group per field, one bar per outcome.
    """
    items = list(audit.fields)
    ax = _axes(ax, (7, 0.6 * len(items) + 1.5))
    y = np.arange(len(items))
    height = 0.8 / len(_OUTCOME_COLORS)
    for k, (outcome, color) in enumerate(_OUTCOME_COLORS.items()):
        rates = [100 * np.nan_to_num(f.fill[outcome], nan=0.0) for f in items]
        ax.barh(y + k * height, rates, height=height, color=color, label=outcome)
    ax.set_yticks(y + height, [f.label for f in items])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of records filled")
    ax.set_title("Fill rate by outcome")
    ax.legend(title="Records", loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


def plot_conversion_by_fill(audit, *, ax=None):
    """Conversion of records with and without each field, with 95% intervals.

    Returns
    -------
    matplotlib.axes.Axes
        Points with Wilson intervals; the dashed line is the conversion of
        all records. Groups with no records are left out.
    """
    items = list(audit.fields)
    ax = _axes(ax, (7, 0.6 * len(items) + 1.5))
    styles = {"filled": ("#264653", "o", -0.15), "unfilled": ("#e9c46a", "s", 0.15)}
    for group, (color, marker, shift) in styles.items():
        rows = [
            (i + shift, f.conversion[group])
            for i, f in enumerate(items)
            if f.conversion[group].n > 0
        ]
        if not rows:
            continue
        ys = [r[0] for r in rows]
        rate = np.array([100 * r[1].rate for r in rows])
        # Rounding can leave an interval end a hair past the rate at 0% or
        # 100%; matplotlib refuses negative error bars.
        low = np.clip(rate - np.array([100 * r[1].low for r in rows]), 0, None)
        high = np.clip(np.array([100 * r[1].high for r in rows]) - rate, 0, None)
        ax.errorbar(
            rate,
            ys,
            xerr=[low, high],
            fmt=marker,
            color=color,
            capsize=3,
            label="with the field" if group == "filled" else "without it",
        )
    overall = items[0].conversion["all"].rate if items else np.nan
    if np.isfinite(overall):
        ax.axvline(100 * overall, ls="--", color="grey", label="all records")
    ax.set_yticks(range(len(items)), [f.label for f in items])
    ax.invert_yaxis()
    ax.set_xlabel("Conversion (%)")
    ax.set_title("Conversion of records with and without each field")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


_PERCENT_COLUMNS = (
    "Filled",
    "Filled (won)",
    "Filled (lost)",
    "Filled (open)",
    "Conversion with",
    "Conversion without",
    "Conversion (all)",
)


def _percent(value) -> str:
    return "not enough data" if value is None or np.isnan(value) else f"{value:.0%}"


def _p_value(value) -> str:
    return "not tested" if value is None or np.isnan(value) else f"{value:.2g}"


def _auc(value) -> str:
    return "not enough data" if value is None or np.isnan(value) else f"{value:.2f}"


def style_fields(audit):
    """The field table of the report as a pandas Styler (values HTML-escaped)."""
    frame = audit.field_frame()
    formats = dict.fromkeys(_PERCENT_COLUMNS, _percent)
    formats |= {"p-value": _p_value, "AUC alone": _auc}
    colors = {"use": "#d8f3dc", "exclude": "#ffe5d9", "needs_review": "#fff3bf"}
    return (
        frame.style.format(formats, escape="html")
        .map(lambda d: f"background-color: {colors.get(d, '')}", subset=["Decision"])
        .hide(axis="index")
    )


def style_quality(audit):
    """The quality findings as a pandas Styler (values HTML-escaped)."""
    frame = audit.quality_frame()
    return frame.style.format(
        {"Share": lambda v: "" if np.isnan(v) else f"{v:.1%}", "Rows": "{:,}"},
        escape="html",
    ).hide(axis="index")
