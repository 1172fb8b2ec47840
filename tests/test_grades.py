"""Grade cuts, grade table and fall-off, checked against plain pandas.

Expected values come from independent computations: pandas groupbys over
the same records, statsmodels' Wilson interval and z test, a brute-force
search over every cut triple, and numpy for the gains curve.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from icp_lib.config import GradesConfig
from icp_lib.data import save_table, select_segment
from icp_lib.errors import DataError, FallbackWarning, ModelError
from icp_lib.export import save_calibration, to_sql
from icp_lib.grades import (
    GRADES,
    assign_grades,
    calibrate,
    check_cuts,
    cut_grades,
    expected_baseline,
    falloff,
    grade_table,
    grades_entry,
)


def _records(n: int = 4000, *, seed: int = 1, step: int = 5) -> pd.DataFrame:
    """Integer scores in steps of ``step`` (heavy ties); conversion rises."""
    rng = np.random.default_rng(seed)
    score = rng.integers(0, 100 // step + 1, n) * step
    p = 1 / (1 + np.exp(-(score - 50) / 12))
    won = (rng.random(n) < p).astype(float)
    won[rng.random(n) < 0.15] = np.nan
    amount = np.round(rng.gamma(2.0, 5000.0, n), 2)
    amount[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({"score": score, "won": won, "amount": amount})


def _graded(frame: pd.DataFrame, cuts: dict) -> pd.DataFrame:
    return frame.assign(grade=assign_grades(frame["score"], cuts))


CUTS = {"A": 70, "B": 50, "C": 30}


# --- cut points ---------------------------------------------------------------


def test_assign_grades_uses_lowest_score_of_each_grade():
    scores = pd.Series([100, 70, 69, 50, 49, 30, 29, 0])
    got = assign_grades(scores, CUTS).tolist()
    assert got == ["A", "A", "B", "B", "C", "C", "D", "D"]


def test_fixed_thresholds_come_from_the_config():
    frame = _records()
    config = GradesConfig(method="fixed", thresholds={"A": 90, "B": 83, "C": 75})
    cuts = cut_grades(frame["score"], frame["won"], config=config)
    assert cuts.method == "fixed"
    assert cuts.cuts == {"A": 90, "B": 83, "C": 75}


def test_config_rejects_thresholds_that_overlap():
    with pytest.raises(ValidationError, match="thresholds must fall strictly"):
        GradesConfig(method="fixed", thresholds={"A": 80, "B": 85, "C": 70})


@pytest.mark.parametrize(
    ("cuts", "message"),
    [
        ({"A": 80, "B": 80, "C": 70}, "must fall strictly"),
        ({"A": 120, "B": 80, "C": 70}, r"100 >= A > B > C > 0"),
        ({"A": 80, "B": 60}, "exactly the keys"),
        ({"A": 80.5, "B": 60, "C": 40}, "whole number"),
    ],
)
def test_check_cuts_rejects_overlaps_gaps_and_bad_values(cuts, message):
    with pytest.raises(ModelError, match=message):
        check_cuts(cuts, max_score=100)


def test_fixed_thresholds_bypassing_validation_still_fail_clearly():
    config = GradesConfig.model_construct(
        method="fixed", thresholds={"A": 50, "B": 60, "C": 10}, min_share=0.05,
        min_wins=5,
    )  # fmt: skip
    frame = _records()
    with pytest.raises(ModelError, match="A=50, B=60, C=10"):
        cut_grades(frame["score"], frame["won"], config=config)


def test_fixed_thresholds_that_leave_a_grade_empty_are_an_error():
    frame = _records().assign(score=lambda d: d["score"].clip(upper=80))
    config = GradesConfig(method="fixed", thresholds={"A": 90, "B": 83, "C": 75})
    message = r"grade\(s\) A, B would hold no record.*from 0 to 80"
    with pytest.raises(DataError, match=message):
        cut_grades(frame["score"], frame["won"], config=config)


def test_data_cuts_make_conversion_fall_and_respect_minimums():
    frame = _records()
    config = GradesConfig(min_share=0.1, min_wins=20)
    cuts = cut_grades(frame["score"], frame["won"], config=config)
    graded = _graded(frame, cuts.cuts)
    # Independent check with a plain groupby.
    g = graded.groupby("grade")
    conv = g["won"].mean().reindex(list(GRADES))
    assert conv.is_monotonic_decreasing and conv.is_unique
    assert (g.size() >= 0.1 * len(frame)).all()
    assert (g["won"].sum() >= 20).all()
    assert cuts.method == "data" and cuts.notes == ()


def _brute_force(frame: pd.DataFrame, config: GradesConfig) -> dict:
    """Best cut triple by exhaustive search, written without the library."""
    values = sorted(frame["score"].unique())
    best, best_fit = None, -math.inf
    for c, b, a in itertools.combinations(values[1:], 3):
        graded = _graded(frame, {"A": a, "B": b, "C": c})
        g = graded.groupby("grade")["won"]
        size, wins = graded.groupby("grade").size(), g.sum()
        conv = g.mean().reindex(list(GRADES))
        if len(size) < 4 or not (np.diff(conv.to_numpy()) < 0).all():
            continue
        if (size < config.min_share * len(frame)).any():
            continue
        if (wins < config.min_wins).any():
            continue
        closed = g.count()
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = wins * np.log(wins / closed) + (closed - wins) * np.log1p(
                -wins / closed
            )
        fit = float(np.nan_to_num(ll).sum())
        if fit > best_fit:
            best, best_fit = {"A": a, "B": b, "C": c}, fit
    return best


def test_data_cuts_equal_an_exhaustive_search():
    frame = _records(n=1500, seed=3, step=10)
    config = GradesConfig(min_share=0.05, min_wins=5)
    cuts = cut_grades(frame["score"], frame["won"], config=config)
    assert cuts.cuts == _brute_force(frame, config)


def test_heavily_tied_scores_give_four_non_empty_grades():
    # Five distinct scores only: quantile edges repeat, no grade may be empty.
    rng = np.random.default_rng(5)
    score = rng.choice([0, 10, 20, 60, 100], size=2000, p=[0.5, 0.3, 0.1, 0.05, 0.05])
    won = (rng.random(2000) < score / 120 + 0.05).astype(float)
    cuts = cut_grades(pd.Series(score), pd.Series(won), config=GradesConfig())
    counts = assign_grades(pd.Series(score), cuts.cuts).value_counts()
    assert set(counts.index) == set(GRADES)


def test_many_distinct_scores_search_quantile_edges_and_stay_ordered():
    # 1,000 distinct scores: candidate cuts come from repeated-free quantiles.
    rng = np.random.default_rng(8)
    score = pd.Series(rng.permutation(1000) / 10)
    won = pd.Series((rng.random(1000) < score / 120 + 0.02).astype(float))
    cuts = cut_grades(score, won, config=GradesConfig(), max_score=100)
    graded = pd.DataFrame({"grade": assign_grades(score, cuts.cuts), "won": won})
    conv = graded.groupby("grade")["won"].mean().reindex(list(GRADES))
    assert conv.is_monotonic_decreasing and conv.is_unique
    assert (graded["grade"].value_counts() >= 50).all()


def test_fewer_than_four_distinct_scores_is_a_clear_error():
    scores = pd.Series([0, 10, 20] * 50)
    won = pd.Series([0.0, 1.0, 1.0] * 50)
    with pytest.raises(DataError, match=r"only 3 distinct value\(s\)"):
        cut_grades(scores, won, config=GradesConfig())


def test_unordered_data_falls_back_with_a_warning_and_a_note():
    rng = np.random.default_rng(11)
    score = pd.Series(rng.integers(0, 11, 3000) * 10)
    # Conversion rises as the score drops: no cut triple makes it fall A to D.
    won = pd.Series((rng.random(3000) < 0.9 - score / 150).astype(float))
    config = GradesConfig(min_share=0.15, min_wins=5)
    with pytest.warns(FallbackWarning, match="conversion fall strictly"):
        cuts = cut_grades(score, won, config=config)
    assert "not ordered" in cuts.notes[0]


# --- grade table --------------------------------------------------------------


def test_grade_table_matches_a_plain_groupby():
    frame = _graded(_records(), CUTS)
    table = grade_table(frame, cuts=CUTS).frame
    # Independent computation with pandas.
    g = frame.groupby("grade")
    closed = frame.dropna(subset=["won"]).groupby("grade")["won"]
    revenue = frame[frame["won"] == 1].groupby("grade")["amount"].sum()
    expected = pd.DataFrame(
        {
            "records": g.size(),
            "share": g.size() / len(frame),
            "wins": closed.sum().astype("int64"),
            "conversion": closed.mean(),
            "pipeline": g["amount"].sum(),
            "revenue": revenue,
            "avg_deal": revenue / closed.sum(),
        }
    ).reindex(list(GRADES))
    got = table[expected.columns]
    pd.testing.assert_frame_equal(got, expected, check_names=False, check_dtype=False)


def test_grade_intervals_are_wilson_intervals():
    frame = _graded(_records(), CUTS)
    table = grade_table(frame, cuts=CUTS, alpha=0.1).frame
    for grade, row in table.iterrows():
        # Expected from statsmodels' own Wilson interval.
        low, high = proportion_confint(
            row["wins"], row["closed"], alpha=0.1, method="wilson"
        )
        assert row["conversion_low"] == pytest.approx(low, rel=1e-9), grade
        assert row["conversion_high"] == pytest.approx(high, rel=1e-9), grade


def test_adjacent_grade_tests_are_one_sided_z_tests():
    frame = _graded(_records(), CUTS)
    result = grade_table(frame, cuts=CUTS)
    closed = frame.dropna(subset=["won"]).groupby("grade")["won"]
    wins, n = closed.sum(), closed.count()
    for row in result.adjacent.itertuples():
        # Expected from statsmodels' pooled two-proportion z test.
        _, p = proportions_ztest(
            [wins[row.upper], wins[row.lower]],
            [n[row.upper], n[row.lower]],
            alternative="larger",
        )
        assert row.p_value == pytest.approx(p, rel=1e-9)


def test_trend_test_is_cochran_armitage_over_grades():
    frame = _graded(_records(), CUTS)
    result = grade_table(frame, cuts=CUTS)
    closed = frame.dropna(subset=["won"])
    # Cochran-Armitage z from its textbook formula, grades scored 3..0.
    s = closed["grade"].map({"A": 3, "B": 2, "C": 1, "D": 0}).to_numpy(float)
    y = closed["won"].to_numpy()
    p = y.mean()
    t = np.sum(s * (y - p))
    z = t / math.sqrt(p * (1 - p) * np.sum((s - s.mean()) ** 2))
    assert result.trend["z"] == pytest.approx(z, rel=1e-9)


def test_ordered_grades_get_an_ordered_verdict():
    result = grade_table(_graded(_records(), CUTS), cuts=CUTS)
    assert result.ordered
    assert result.verdict.startswith("The grades are ordered")
    assert "A converts significantly better than B" in result.summary_markdown()


def test_reversed_grades_get_a_not_ordered_verdict():
    frame = _records().assign(score=lambda d: 100 - d["score"])
    result = grade_table(_graded(frame, CUTS), cuts=CUTS)
    assert not result.ordered
    assert "not ordered" in result.verdict


def test_grade_without_closed_records_shows_not_enough_data():
    frame = _graded(_records(), CUTS)
    frame = frame.assign(won=frame["won"].where(frame["grade"] != "A"))
    result = grade_table(frame, cuts=CUTS)
    assert math.isnan(result.frame.loc["A", "conversion"])
    assert "not enough data" in result.display_frame().loc["A", "Conversion"]
    assert "not enough data to test" in result.summary_markdown()
    assert not result.ordered


def test_grade_table_names_missing_columns():
    with pytest.raises(DataError, match=r"missing \['amount'\]"):
        grade_table(
            pd.DataFrame({"score": [1], "grade": ["A"], "won": [1.0]}), cuts=CUTS
        )


# --- baseline for model.json --------------------------------------------------


def test_expected_baseline_is_strict_json_with_none_for_undefined():
    frame = _graded(_records(), CUTS)
    frame = frame.assign(won=frame["won"].where(frame["grade"] != "D"))
    baseline = expected_baseline(grade_table(frame, cuts=CUTS))
    text = json.dumps(baseline, allow_nan=False)
    assert json.loads(text)["D"]["conversion"] is None
    # Expected from a plain groupby.
    a = frame[frame["grade"] == "A"]
    assert baseline["A"]["records"] == len(a)
    assert baseline["A"]["conversion"] == pytest.approx(a["won"].mean())
    assert baseline["A"]["revenue_per_record"] == pytest.approx(
        a.loc[a["won"] == 1, "amount"].sum() / len(a)
    )


def test_grades_entry_carries_cuts_flag_and_expected():
    frame = _records()
    cuts = cut_grades(frame["score"], frame["won"], config=GradesConfig())
    table = grade_table(_graded(frame, cuts.cuts), cuts=cuts.cuts)
    entry = grades_entry(cuts, table, not_for_deployment=True)
    assert entry["cuts"] == cuts.cuts and entry["method"] == "data"
    assert entry["not_for_deployment"] is True
    assert set(entry["expected"]) == set(GRADES)
    json.dumps(entry, allow_nan=False)


# --- fall-off -------------------------------------------------------------------


def test_falloff_bands_match_a_groupby():
    frame = _records()
    bands = falloff(frame, band_width=20).bands.set_index("band")
    # Expected: pandas cut into 0-19, 20-39, ..., 80-100.
    band = pd.cut(frame["score"], [0, 20, 40, 60, 80, 101], right=False)
    closed = frame.dropna(subset=["won"])
    conv = closed.groupby(band[closed.index], observed=False)["won"].mean()
    assert bands["conversion"].tolist() == pytest.approx(conv.iloc[::-1].tolist())
    assert bands.index.tolist() == ["80-100", "60-79", "40-59", "20-39", "0-19"]
    assert bands["records"].sum() == len(frame)


def test_band_revenue_interval_is_a_normal_interval_of_the_mean():
    frame = _records()
    bands = falloff(frame, band_width=50, alpha=0.1).bands.set_index("band")
    # Expected: revenue per record (0 unless won) in the top band, by hand.
    top = frame[frame["score"] >= 50]
    rev = top["amount"].where(top["won"] == 1, 0.0).fillna(0.0)
    half = 1.6448536269514722 * rev.std(ddof=1) / math.sqrt(len(rev))
    assert bands.loc["50-100", "revenue_per_record"] == pytest.approx(rev.mean())
    assert bands.loc["50-100", "revenue_per_record_low"] == pytest.approx(
        rev.mean() - half
    )
    assert bands.loc["50-100", "revenue_per_record_high"] == pytest.approx(
        rev.mean() + half
    )


def test_gains_curve_runs_from_zero_to_all_wins():
    gains = falloff(_records()).gains
    assert gains["share_records"].iloc[0] == 0 and gains["share_wins"].iloc[0] == 0
    assert gains["share_records"].iloc[-1] == pytest.approx(1.0)
    assert gains["share_wins"].iloc[-1] == pytest.approx(1.0)
    assert gains["share_wins"].is_monotonic_increasing


def test_capture_equals_direct_top_share_without_ties():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {
            "score": rng.permutation(1000),
            "won": (rng.random(1000) < 0.3).astype(float),
            "amount": rng.gamma(2.0, 100.0, 1000),
        }
    )
    cap = falloff(frame, max_score=1000).capture.set_index("top")
    # Expected: wins among the 200 highest scores, counted directly.
    top = frame.nlargest(200, "score")
    share = top["won"].sum() / frame["won"].sum()
    assert cap.loc[0.2, "share_wins"] == pytest.approx(share)
    assert cap.loc[0.2, "lift"] == pytest.approx(share / 0.2)


def test_falloff_summary_says_when_there_is_no_closed_record():
    frame = _records().assign(won=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = falloff(frame)
    assert "Not enough closed records" in result.summary_markdown()


# --- the calibration step on the demo data --------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's b2b_new segment with a model fitted as notebook 02 does."""
    from icp_lib import audit, model
    from icp_lib.config import load_config
    from icp_lib.data import load_table
    from icp_lib.demo import write_demo

    root = tmp_path_factory.mktemp("demo")
    write_demo(root / "data")
    raw = yaml.safe_load(Path("params/demo.yaml").read_text(encoding="utf-8"))
    config_path = root / "demo.yaml"
    config_path.write_text(yaml.safe_dump(raw | {"data_dir": str(root / "data")}))
    config = load_config(config_path)
    segment = next(s for s in config.segments if s.name == "b2b_new")
    full = load_table(config)
    save_table(full, root / "table")  # as the runner does, for the notebooks
    table = select_segment(full, segment)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = audit.audit_table(table, config=config, segment=segment.name)
        result.save(root / "audit.json")
        found = json.loads((root / "audit.json").read_text(encoding="utf-8"))
        fit = model.fit_model(
            table, config=config, audit=found, quarter=None, segment=segment
        )
    return SimpleNamespace(
        root=root, config=config, config_path=config_path, table=table, card=fit.card
    )


def test_demo_grades_are_ordered_a_to_d(demo):
    cal = calibrate(demo.card, demo.table.frame, config=demo.config)
    assert cal.status == "ok", cal.notes
    assert cal.table.ordered
    # Independent check: conversion per grade from a plain groupby.
    conv = cal.records.groupby("grade")["won"].mean().reindex(list(GRADES))
    assert conv.is_monotonic_decreasing and conv.is_unique
    assert len(cal.scored) == len(demo.table.frame)


def test_unusable_model_grades_are_shown_but_not_exported(demo, tmp_path):
    card = replace(demo.card, verdict={"usable": False, "reasons": ["weak signal"]})
    card.save(tmp_path / "model.json")
    (tmp_path / "scores.csv").write_text("stale\n", encoding="utf-8")
    cal = calibrate(card, demo.table.frame, config=demo.config)
    assert cal.status == "not_for_deployment"
    assert cal.table is not None and "weak signal" in cal.notes[0]
    assert "NOT FOR DEPLOYMENT" in cal.banner_markdown()
    text = save_calibration(cal, card, tmp_path, config=demo.config)
    assert "not** written" in text
    assert not (tmp_path / "scores.csv").exists()
    saved = json.loads((tmp_path / "model.json").read_text(encoding="utf-8"))
    assert saved["grades"]["not_for_deployment"] is True


def test_too_small_segment_says_so_and_exports_nothing(demo, tmp_path):
    meta = {**demo.card.meta, "target": "too_small"}
    card = replace(demo.card, fields=(), meta=meta)
    cal = calibrate(card, demo.table.frame, config=demo.config)
    assert cal.status == "too_small"
    assert "too small to model" in cal.banner_markdown()
    assert save_calibration(cal, card, tmp_path, config=demo.config).startswith(
        "- scores.csv was **not** written"
    )
    assert list(tmp_path.iterdir()) == []


def test_card_without_fields_says_there_is_no_score(demo, tmp_path):
    card = replace(demo.card, fields=())
    cal = calibrate(card, demo.table.frame, config=demo.config)
    assert cal.status == "no_score"
    assert "model fit kept no field" in cal.banner_markdown()
    assert "too small" not in cal.banner_markdown()
    save_calibration(cal, card, tmp_path, config=demo.config)
    assert list(tmp_path.iterdir()) == []


def _run_notebook(demo, out: Path, tmp_path: Path) -> None:
    import papermill

    repo = Path(__file__).resolve().parents[1]
    papermill.execute_notebook(
        str(repo / "notebooks" / "03_grade_calibration.ipynb"),
        str(tmp_path / "03.ipynb"),
        parameters={
            "config_path": str(demo.config_path),
            "segment": "b2b_new",
            "quarter": "",
            "output_dir": str(out),
            "table_dir": str(demo.root / "table"),
        },
        kernel_name="python3",
        cwd=str(repo),
        progress_bar=False,
    )


@pytest.mark.slow
def test_notebook_03_writes_grades_and_scores_csv(demo, tmp_path):
    out = tmp_path / "b2b_new"
    out.mkdir()
    demo.card.save(out / "model.json")
    _run_notebook(demo, out, tmp_path)
    saved = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert saved["grades"]["not_for_deployment"] is False
    assert set(saved["grades"]["expected"]) == set(GRADES)
    scores = pd.read_csv(out / "scores.csv", dtype=str, keep_default_na=False)
    assert len(scores) == len(demo.table.frame)
    assert set(scores["ICP_Grade__c"]) == set(GRADES)


@pytest.mark.slow
def test_notebook_03_runs_for_a_segment_too_small_to_model(demo, tmp_path):
    out = tmp_path / "b2b_new"
    out.mkdir()
    meta = {**demo.card.meta, "target": "too_small"}
    replace(demo.card, fields=(), meta=meta).save(out / "model.json")
    _run_notebook(demo, out, tmp_path)
    executed = (tmp_path / "03.ipynb").read_text(encoding="utf-8")
    assert "too small to model" in executed
    assert not (out / "scores.csv").exists()


@pytest.mark.parametrize("engine", ["duckdb", "sqlite"])
def test_sql_export_grades_demo_records_exactly_like_python(demo, engine):
    import sqlite3

    import duckdb

    cal = calibrate(demo.card, demo.table.frame, config=demo.config)
    card = demo.card.with_grades({"method": "data", "cuts": cal.cut_points})
    columns = ["record_id", *(f.name for f in card.fields)]
    source = demo.table.frame[columns]
    sql = to_sql(card, dialect=engine)
    if engine == "duckdb":
        got = duckdb.connect().execute(
            "CREATE TABLE source_table AS SELECT * FROM source"
        )
        got = got.execute(sql).df()
    else:
        con = sqlite3.connect(":memory:")
        source.to_sql("source_table", con, index=False)
        got = pd.read_sql_query(sql, con)
    # Expected: the Python scores written to scores.csv.
    expected = cal.scored[["record_id", "score", "grade"]]
    got = got.sort_values("record_id").reset_index(drop=True)
    expected = expected.sort_values("record_id").reset_index(drop=True)
    assert got["record_id"].astype(str).tolist() == expected["record_id"].tolist()
    assert got["score"].astype(int).tolist() == expected["score"].tolist()
    assert got["grade"].astype(str).tolist() == expected["grade"].tolist()


# --- charts -------------------------------------------------------------------------


def test_grade_chart_draws_one_labelled_bar_per_grade():
    import matplotlib.pyplot as plt

    from icp_lib._plots_grades import plot_grade_conversion

    table = grade_table(_graded(_records(), CUTS), cuts=CUTS)
    ax = plot_grade_conversion(table)
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx(table.frame["conversion"].tolist())
    assert [t.get_text() for t in ax.texts] == [
        f"{c:.0%}" for c in table.frame["conversion"]
    ]
    plt.close(ax.figure)


def test_fall_off_charts_say_when_there_is_nothing_to_draw():
    import matplotlib.pyplot as plt

    from icp_lib._plots_grades import (
        plot_conversion_by_band,
        plot_gains,
        plot_grade_conversion,
    )

    for draw in (plot_conversion_by_band, plot_gains, plot_grade_conversion):
        ax = draw(None)
        assert ax.texts[0].get_text().startswith(("No ", "Not enough"))
        plt.close(ax.figure)


def test_band_chart_copes_with_bands_won_or_lost_entirely():
    import matplotlib.pyplot as plt

    from icp_lib._plots_grades import plot_conversion_by_band

    # Every top record won, every bottom record lost: intervals touch 0 and 1.
    frame = pd.DataFrame(
        {"score": [95] * 7 + [5] * 9, "won": [1.0] * 7 + [0.0] * 9, "amount": 1.0}
    )
    ax = plot_conversion_by_band(falloff(frame))
    heights = [p.get_height() for p in ax.patches]
    assert heights[0] == 1.0 and heights[-1] == 0.0
    plt.close(ax.figure)


def test_gains_chart_draws_wins_revenue_and_diagonal():
    import matplotlib.pyplot as plt

    from icp_lib._plots_grades import plot_gains

    ax = plot_gains(falloff(_records()))
    assert [line.get_label() for line in ax.lines] == [
        "wins",
        "revenue",
        "random order",
    ]
    plt.close(ax.figure)
