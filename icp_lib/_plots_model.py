"""Charts of the model fit (notebook 02).

Every function draws on ``ax`` (a new figure when None) and returns the
Axes, so that tests can check what was drawn. Empty inputs draw a short
"not enough data" note instead of failing.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = [
    "plot_screening",
    "plot_level_conversion",
    "plot_match_conversion",
    "plot_lift",
    "plot_calibration",
    "plot_all_levels",
]

_KEPT, _DROPPED = "#2a7ab0", "#b8b8b8"


def _axes(ax, size=(7, 4)):
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def _nothing(ax, text: str = "not enough data to draw"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return ax


def _error_bars(rate: pd.Series, low: pd.Series, high: pd.Series) -> np.ndarray:
    lower = (rate - low).clip(lower=0).fillna(0).to_numpy(float)
    upper = (high - rate).clip(lower=0).fillna(0).to_numpy(float)
    return np.vstack([lower, upper])


def plot_screening(screening: pd.DataFrame, *, alpha: float = 0.05, ax=None):
    """Bar per field: strength of evidence, ``-log10`` of the Holm p-value.

    Bars past the dashed line (``-log10(alpha)``) are kept fields.

    Parameters
    ----------
    screening : DataFrame
        ``ModelFit.screening``.
    alpha : float, default 0.05
        The significance level of screening.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax)
    s = screening.dropna(subset=["p_holm"])
    if s.empty:
        return _nothing(ax)
    strength = -np.log10(s["p_holm"].astype(float).clip(lower=1e-12))
    colors = [_KEPT if d == "kept" else _DROPPED for d in s["decision"]]
    ax.barh(s["label"].astype(str), strength, color=colors)
    ax.axvline(-math.log10(alpha), color="black", linestyle="--", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("strength of evidence, -log10(Holm-adjusted p)")
    ax.set_title("Which fields relate to conversion (blue: kept)")
    return ax


def plot_level_conversion(levels: pd.DataFrame, field: str, *, label=None, ax=None):
    """Conversion per level of one field, with 95% Wilson intervals.

    Parameters
    ----------
    levels : DataFrame
        ``ModelFit.levels``.
    field : str
        The field's canonical name.
    label : str, optional
        Title text; default the field name.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax, size=(7, 3.5))
    rows = levels[(levels["field"] == field) & (levels["records"] > 0)]
    if rows.empty:
        return _nothing(ax)
    names = [
        f"{lv} ({n:,})" for lv, n in zip(rows["level"], rows["records"], strict=True)
    ]
    err = _error_bars(rows["conversion"], rows["low"], rows["high"])
    ax.barh(names, rows["conversion"], xerr=err, color=_KEPT, capsize=3)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("conversion (95% interval); records in brackets")
    ax.set_title(str(label or field))
    return ax


def plot_match_conversion(table: pd.DataFrame, *, ax=None):
    """Conversion by number of ideal values matched, with 95% intervals.

    Parameters
    ----------
    table : DataFrame
        ``ModelFit.matches.table``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax)
    rows = table[table["records"] > 0]
    if rows.empty:
        return _nothing(ax)
    err = _error_bars(rows["conversion"], rows["low"], rows["high"])
    names = [f"{m}\n(n={n:,})" for m, n in zip(rows["matches"], rows["records"],
                                                 strict=True)]  # fmt: skip
    ax.bar(names, rows["conversion"], yerr=err, color=_KEPT, capsize=3)
    ax.set_ylim(0, 1)
    ax.set_xlabel("ideal values matched (records)")
    ax.set_ylabel("conversion")
    ax.set_title("More matches, more conversion?")
    return ax


def plot_lift(lift: pd.DataFrame, *, ax=None):
    """Conversion by score decile on the validation records.

    Parameters
    ----------
    lift : DataFrame
        ``ModelFit.validation.lift`` (decile 1 holds the top scores).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax)
    if lift.empty:
        return _nothing(ax)
    err = _error_bars(lift["conversion"], lift["low"], lift["high"])
    ax.bar(lift["decile"].astype(str), lift["conversion"], yerr=err, color=_KEPT,
           capsize=3)  # fmt: skip
    overall = lift["wins"].sum() / lift["records"].sum()
    ax.axhline(overall, color="black", linestyle="--", linewidth=1, label="average")
    ax.set_xlabel("score decile (1 = top tenth of scores)")
    ax.set_ylabel("conversion")
    ax.set_title("Validation: conversion by score decile")
    ax.legend(loc="upper right")
    return ax


def plot_calibration(calibration: pd.DataFrame, *, ax=None):
    """Predicted against observed conversion on the validation records.

    Parameters
    ----------
    calibration : DataFrame
        ``ModelFit.validation.calibration``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax, size=(4.5, 4.5))
    if calibration.empty:
        return _nothing(ax)
    err = _error_bars(calibration["conversion"], calibration["low"],
                      calibration["high"])  # fmt: skip
    ax.errorbar(calibration["predicted"], calibration["conversion"], yerr=err,
                fmt="o", color=_KEPT, capsize=3)  # fmt: skip
    top = float(np.nanmax([calibration["predicted"].max(),
                           calibration["high"].max(), 0.1]))  # fmt: skip
    ax.plot([0, top], [0, top], color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("predicted conversion")
    ax.set_ylabel("observed conversion (95% interval)")
    ax.set_title("Validation: calibration")
    return ax


def plot_all_levels(levels: pd.DataFrame, screening: pd.DataFrame, *, axes=None):
    """Conversion per level of every screened field, one panel per field.

    Parameters
    ----------
    levels, screening : DataFrame
        ``ModelFit.levels`` and ``ModelFit.screening``.
    axes : sequence of Axes, optional
        One per screened field; default a new figure with two columns.

    Returns
    -------
    list of matplotlib Axes
    """
    fields = list(zip(screening["field"], screening["label"], screening["decision"],
                      strict=True))  # fmt: skip
    if axes is None:
        rows = max(1, math.ceil(len(fields) / 2))
        _, grid = plt.subplots(rows, 2, figsize=(12, 3.2 * rows), squeeze=False)
        axes = list(grid.ravel())
        for ax in axes[len(fields) :]:
            ax.set_axis_off()
    if not fields:
        return [_nothing(axes[0], "no field was screened")]
    for ax, (name, label, decision) in zip(axes, fields, strict=False):
        plot_level_conversion(levels, name, label=f"{label} ({decision})", ax=ax)
    plt.tight_layout()
    return list(axes[: len(fields)])
