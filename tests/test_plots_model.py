"""Tests of the model charts: what they draw."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from icp_lib import _plots_model as plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def rates(n_rows: int, first: str) -> pd.DataFrame:
    return pd.DataFrame({
        first: range(n_rows), "records": [100] * n_rows, "wins": [10 * (i + 1)
        for i in range(n_rows)],
        "conversion": [0.1 * (i + 1) for i in range(n_rows)],
        "low": [0.1 * i for i in range(n_rows)],
        "high": [0.1 * (i + 2) for i in range(n_rows)],
    })  # fmt: skip


def test_match_chart_draws_one_bar_per_match_count():
    ax = plots.plot_match_conversion(rates(4, "matches"))
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [0.1, 0.2, 0.3, 0.4]
    assert ax.get_xticklabels()[0].get_text() == "0\n(n=100)"


def test_lift_chart_draws_deciles_and_the_average():
    lift = rates(10, "decile").assign(decile=range(1, 11))
    ax = plots.plot_lift(lift)
    assert len(ax.patches) == 10
    # the dashed line is the overall conversion: wins / records
    assert ax.lines[-1].get_ydata()[0] == pytest.approx(550 / 1000)


def test_level_chart_shows_levels_of_one_field_with_counts():
    levels = rates(3, "level").assign(field=["f", "f", "g"], level=["a", "b", "c"])
    ax = plots.plot_level_conversion(levels, "f", label="Field F")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["a (100)", "b (100)"]
    assert ax.get_title() == "Field F"


def test_screening_chart_marks_the_threshold():
    screening = pd.DataFrame({"label": ["A", "B"], "p_holm": [0.001, 0.5],
                              "decision": ["kept", "dropped"]})  # fmt: skip
    ax = plots.plot_screening(screening, alpha=0.05)
    assert len(ax.patches) == 2
    assert ax.lines[0].get_xdata()[0] == pytest.approx(1.30103, rel=1e-4)


@pytest.mark.parametrize(
    "draw",
    [
        lambda: plots.plot_lift(pd.DataFrame(columns=["decile"])),
        lambda: plots.plot_calibration(pd.DataFrame(columns=["predicted"])),
        lambda: plots.plot_match_conversion(rates(0, "matches")),
    ],
)
def test_empty_input_draws_a_note_instead_of_failing(draw):
    ax = draw()
    assert "not enough data" in ax.texts[0].get_text()
