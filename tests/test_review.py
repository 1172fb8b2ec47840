"""Tests of the quarterly review (icp_lib.review) and its charts.

Two kinds of data: a small synthetic table built here, whose truth is set
by hand, and the demo data set, whose planted truth is ``icp_lib.demo.TRUTH``.
"""

import json
import math
import warnings
from dataclasses import replace
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportions_ztest

matplotlib.use("Agg")

from icp_lib import _plots_review as plots  # noqa: E402
from icp_lib._card import ScoreCard, assign_grades, score_records  # noqa: E402
from icp_lib._drift import SMOOTHING  # noqa: E402
from icp_lib.config import Config  # noqa: E402
from icp_lib.data import FieldSpec, ModelingTable  # noqa: E402
from icp_lib.errors import ConfigError, FallbackWarning  # noqa: E402
from icp_lib.review import (  # noqa: E402
    feedback_summary,
    read_deployed_model,
    review_quarter,
)

TRAIN_Q = ["2025Q3", "2025Q4", "2026Q1", "2026Q2"]
REVIEW_Q = "2026Q3"
REGIONS = ["NA", "EMEA", "APAC", "LATAM"]
CUTS = {"A": 90, "B": 70, "C": 45}  # scores are 20, 50, 75 or 100: D, C, B, A


def _config(**review) -> Config:
    return Config.model_validate(
        {
            "client": "Test Co",
            "sources": {"opportunities": {"path": "x.csv"}},
            "outcome": {"won": ["Won"], "lost": ["Lost"]},
            "fields": {
                "size": {"kind": "numeric"},
                "region": {"kind": "categorical"},
            },
            "review": review,
        }
    )


def _quarter_rows(rng, quarter: str, n: int, apac_share: float, apac_shift: float):
    shares = np.array([0.4, 0.3, 0.0, 0.3]) * (1 - apac_share)
    shares[2] = apac_share
    region = rng.choice(REGIONS, size=n, p=shares / shares.sum())
    size = rng.uniform(0, 100, size=n)
    logit = -2.0 + 0.035 * size + np.where(region == "APAC", apac_shift, 0.0)
    won = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(float)
    start = pd.Period(quarter, freq="Q").start_time
    return pd.DataFrame(
        {
            "quarter": quarter,
            "record_date": start + pd.to_timedelta(rng.integers(0, 90, n), "D"),
            "size": size,
            "region": region,
            "won": won,
            "amount": rng.gamma(2.0, 5000.0, size=n).round(),
        }
    )


def _synthetic_table(
    seed: int = 1, *, open_share: float = 0.2, drift: bool = True
) -> ModelingTable:
    """Four training quarters, then a review quarter where APAC share triples
    (0.15 -> 0.45) and APAC conversion drops (-1.5 on the log-odds scale)."""
    rng = np.random.default_rng(seed)
    parts = [_quarter_rows(rng, q, 600, 0.15, 0.0) for q in TRAIN_Q]
    shares, shift = (0.45, -1.5) if drift else (0.15, 0.0)
    parts.append(_quarter_rows(rng, REVIEW_Q, 900, shares, shift))
    frame = pd.concat(parts, ignore_index=True)
    is_open = (frame["quarter"] == REVIEW_Q) & (
        rng.uniform(size=len(frame)) < open_share
    )
    won = frame["won"].where(~is_open)
    frame = frame.assign(
        record_id=[f"r{i:05d}" for i in range(len(frame))],
        account_id=pd.NA,
        close_date=pd.NaT,
        stage="x",
        won=won,
        outcome=np.select([won == 1, won == 0], ["won", "lost"], default="open"),
        qualified=False,
    )
    return ModelingTable(
        frame=frame,
        fields=(
            FieldSpec("size", "numeric", "Size", False, "opportunities", None, None),
            FieldSpec("region", "categorical", "Region", False, "accounts", None, None),
        ),
        cleaning=(),
        feedback=None,
        has_dates=True,
    )


def _card_json() -> dict:
    return {
        "schema_version": 1,
        "model_id": "test-all-2026Q3-00000000",
        "review_quarter": REVIEW_Q,
        "training_window": {"quarters": TRAIN_Q},
        "max_score": 100,
        "fields": [
            {
                "name": "size",
                "label": "Size",
                "kind": "numeric",
                "bins": [
                    {"lower": None, "upper": 25.0, "label": "< 25", "points": 0},
                    {"lower": 25.0, "upper": 50.0, "label": "25 to 49", "points": 30},
                    {"lower": 50.0, "upper": 75.0, "label": "50 to 74", "points": 55},
                    {"lower": 75.0, "upper": None, "label": ">= 75", "points": 80},
                ],
                "missing_points": 0,
            },
            {
                "name": "region",
                "label": "Region",
                "kind": "categorical",
                "levels": [
                    {"values": [r], "label": r, "points": p}
                    for r, p in zip(REGIONS, [20, 20, 20, 20], strict=True)
                ],
                "other_points": 0,
                "missing_points": 0,
            },
        ],
        "verdict": {"usable": True, "reasons": []},
        "grades": None,
    }


def _calibrated_card(table: ModelingTable, card_json: dict | None = None) -> ScoreCard:
    """Attach grades whose expected figures come from the training window."""
    from icp_lib import grades as G

    card = ScoreCard.from_json(card_json or _card_json())
    train = table.frame[table.frame["quarter"].isin(TRAIN_Q)]
    scores = score_records(card, train)["score"].to_numpy()
    frame = train.assign(
        score=scores, grade=assign_grades(pd.Series(scores), {"cuts": CUTS})
    )
    table_g = G.grade_table(frame.reset_index(drop=True), cuts=CUTS)
    expected = G.expected_baseline(table_g)
    return card.with_grades({"method": "fixed", "cuts": CUTS, "expected": expected})


@pytest.fixture(scope="module")
def synthetic():
    table = _synthetic_table()
    return table, _calibrated_card(table)


@pytest.fixture(scope="module")
def stable():
    """The same design without any drift in the review quarter."""
    table = _synthetic_table(seed=5, drift=False)
    return table, _calibrated_card(table)


@pytest.fixture(scope="module")
def synthetic_result(synthetic):
    table, card = synthetic
    return review_quarter(table, card, config=_config(), quarter=REVIEW_Q)


# --- grade ordering -------------------------------------------------------------


def test_adjacent_grade_tests_match_statsmodels_one_sided_z(
    synthetic, synthetic_result
):
    table, card = synthetic
    review = table.frame[table.frame["quarter"] == REVIEW_Q]
    grades = score_records(card, review)["grade"].to_numpy()
    closed = review.assign(grade=grades).dropna(subset=["won"])
    wins = closed.groupby("grade")["won"].agg(["sum", "count"])

    for test in synthetic_result.ordering:
        hi, lo = wins.loc[test.higher], wins.loc[test.lower]
        # Independent: statsmodels' pooled z-test, alternative "larger".
        z, p = proportions_ztest(
            [hi["sum"], lo["sum"]], [hi["count"], lo["count"]], alternative="larger"
        )
        assert test.higher_closed == hi["count"]
        assert test.z == pytest.approx(z)
        assert test.p_value == pytest.approx(p)


def test_grade_ordering_is_confirmed_when_score_drives_conversion(stable):
    table, card = stable

    result = review_quarter(table, card, config=_config(), quarter=REVIEW_Q)

    # Conversion rises steeply with size, which gives most of the points.
    assert [t.answer for t in result.ordering] == ["yes", "yes", "yes"]
    assert result.ordering_verdict == "confirmed"


def test_reversed_grades_are_answered_no(synthetic):
    table, _ = synthetic
    # A card that gives points for being small: A records convert worst.
    card_json = _card_json()
    for b, pts in zip(card_json["fields"][0]["bins"], [80, 55, 30, 0], strict=True):
        b["points"] = pts
    card = _calibrated_card(_synthetic_table(seed=2), card_json)
    flipped = replace(card, grades={**card.grades, "expected": _card_expected_gap()})

    result = review_quarter(table, flipped, config=_config(), quarter=REVIEW_Q)

    assert result.ordering[0].answer == "no"
    assert result.ordering_verdict == "broken"
    assert result.verdict.decision == "rerun"


def _card_expected_gap() -> dict:
    rates = {"A": 0.6, "B": 0.45, "C": 0.3, "D": 0.15}
    return {
        g: {
            "records": 100,
            "conversion": r,
            "conversion_low": r - 0.05,
            "conversion_high": r + 0.05,
            "pipeline_per_record": 10000.0,
            "revenue_per_record": 4000.0,
        }
        for g, r in rates.items()
    }


def test_open_records_are_counted_but_not_as_lost(synthetic, synthetic_result):
    table, _ = synthetic
    review = table.frame[table.frame["quarter"] == REVIEW_Q]
    counts = synthetic_result.counts

    assert counts["open"] == int(review["won"].isna().sum()) > 0
    assert counts["lost"] == int((review["won"] == 0).sum())
    g = synthetic_result.grades
    assert (g["open"] + g["closed"] == g["records"]).all()
    assert g["conversion"].loc["A"] == pytest.approx(
        g["wins"].loc["A"] / g["closed"].loc["A"]
    )


def test_pipeline_difference_and_interval_match_hand_computation(
    synthetic, synthetic_result
):
    table, card = synthetic
    review = table.frame[table.frame["quarter"] == REVIEW_Q]
    grades = score_records(card, review)["grade"].to_numpy()
    amounts = review.loc[grades == "A", "amount"].to_numpy(float)
    exp = card.grades["expected"]["A"]
    # By hand: total minus n * calibration mean; variance of the total
    # n * sd^2 plus the calibration mean's n^2 * sd^2 / calibration records.
    n, sd = len(amounts), amounts.std(ddof=1)
    diff = amounts.sum() - n * exp["pipeline_per_record"]
    half = 1.959964 * sd * np.sqrt(n + n**2 / exp["records"])

    row = synthetic_result.grades.loc["A"]

    assert row["pipeline_diff"] == pytest.approx(diff)
    assert row["pipeline_diff_low"] == pytest.approx(diff - half, rel=1e-5)
    assert row["pipeline_diff_high"] == pytest.approx(diff + half, rel=1e-5)


# --- drift ----------------------------------------------------------------------


def test_region_drift_matches_hand_computed_psi(synthetic, synthetic_result):
    table, _ = synthetic
    f = table.frame
    ref = f.loc[f["quarter"].isin(TRAIN_Q), "region"].value_counts()
    new = f.loc[f["quarter"] == REVIEW_Q, "region"].value_counts()
    ref, new = (
        ref.reindex(REGIONS).to_numpy(float),
        new.reindex(REGIONS).to_numpy(float),
    )
    # Smoothed shares as documented: (count + 0.5) / (total + 0.5 * bins).
    p = (ref + SMOOTHING) / (ref.sum() + SMOOTHING * 4)
    q = (new + SMOOTHING) / (new.sum() + SMOOTHING * 4)
    expected_psi = float(np.sum((q - p) * np.log(q / p)))

    check = next(d for d in synthetic_result.drift if d.variable == "region")

    assert check.result.psi == pytest.approx(expected_psi)
    assert check.status == "shifted"
    assert check.result.top_movers(1) == ["APAC"]


def test_planted_conversion_drop_is_found_in_its_level(synthetic_result):
    conv = synthetic_result.conversion_drift.set_index(["variable", "level"])

    assert conv.loc[("region", "APAC"), "direction"] == "dropped"
    assert conv.loc[("region", "NA"), "direction"] != "dropped"
    assert synthetic_result.verdict.decision == "rerun"
    assert any("APAC" in r for r in synthetic_result.verdict.reasons)


def test_stable_population_keeps_the_model(stable):
    table, card = stable

    result = review_quarter(table, card, config=_config(), quarter=REVIEW_Q)

    assert [d.status for d in result.drift if d.in_model] == ["stable"] * 3
    assert result.verdict.decision in ("keep", "watch")
    assert not any("Drift" in r for r in result.verdict.reasons)


# --- bad input --------------------------------------------------------------------


def test_quarter_without_records_says_so_and_watches(synthetic):
    table, card = synthetic

    result = review_quarter(table, card, config=_config(), quarter="2027Q1")

    assert result.counts["records"] == 0
    assert result.verdict.decision == "watch"
    assert any("no records" in n for n in result.verdict.not_judged)
    assert all(d.status == "not judged" for d in result.drift)
    assert result.ordering_verdict == "not yet clear"


def test_quarter_without_closed_records_is_not_yet_clear(synthetic):
    table, card = synthetic
    f = table.frame
    in_q = f["quarter"] == REVIEW_Q
    young = replace(
        table,
        frame=f.assign(
            won=f["won"].where(~in_q), outcome=f["outcome"].where(~in_q, "open")
        ),
    )

    result = review_quarter(young, card, config=_config(), quarter=REVIEW_Q)

    assert {t.answer for t in result.ordering} == {"not yet clear"}
    assert any("closed yet" in n for n in result.verdict.not_judged)
    assert result.verdict.decision != "keep"
    assert result.counts["open"] == int(in_q.sum())


def test_missing_model_field_warns_and_asks_for_rerun(synthetic):
    table, card = synthetic
    gone = replace(table, frame=table.frame.drop(columns=["region"]))

    with pytest.warns(FallbackWarning, match="no longer has the model field"):
        result = review_quarter(gone, card, config=_config(), quarter=REVIEW_Q)

    assert result.model["missing_fields"] == ["region"]
    assert result.verdict.decision == "rerun"
    region = next(d for d in result.drift if d.variable == "region")
    assert region.status == "not judged" and "no longer has" in region.note


def test_data_without_dates_still_gives_a_verdict(synthetic, tmp_path):
    table, card = synthetic

    result = review_quarter(
        replace(table, has_dates=False), card, config=_config(), quarter=""
    )
    path = result.save(tmp_path / "review.json")

    data = json.loads(path.read_text())
    assert data["status"] == "not reviewed"
    assert data["verdict"]["decision"] == "watch"
    assert "no record dates" in data["verdict"]["reasons"][0]


def test_no_model_asks_for_rerun(synthetic, tmp_path):
    table, _ = synthetic
    deployed = read_deployed_model(_config(), segment="all", output_dir=tmp_path)

    result = review_quarter(
        table, deployed.card, config=_config(), quarter=REVIEW_Q, model_source=deployed
    )

    assert deployed.card is None and "not found" in deployed.problem
    assert result.verdict.decision == "rerun"


def test_bad_quarter_text_is_a_config_error(synthetic):
    table, card = synthetic
    with pytest.raises(ConfigError, match="quarter must look like 2026Q3"):
        review_quarter(table, card, config=_config(), quarter="Q3-2026")


def test_deployed_model_path_is_formatted_with_segment(synthetic, tmp_path):
    _, card = synthetic
    card.save(tmp_path / "b2b" / "model.json")
    config = _config(model=str(tmp_path / "{segment}" / "model.json"))

    deployed = read_deployed_model(config, segment="b2b", output_dir="unused")

    assert deployed.source == "deployed"
    assert deployed.card is not None and deployed.problem == ""


# --- feedback ---------------------------------------------------------------------


def _feedback_rows() -> pd.DataFrame:
    rows = []
    for month, n_bad in [
        ("2026-04", 2),
        ("2026-05", 3),
        ("2026-07", 4),
        ("2026-09", 8),
    ]:
        for i in range(10):
            rows.append((f"r{i:05d}", f"{month}-15", "bad" if i < n_bad else "Good"))
    rows += [
        ("nobody", "2026-08-01", "bad"),  # unknown id
        ("r00001", "2026-08-01", "maybe"),  # unknown verdict word
        ("r00002", "2026-11-02", "bad"),  # after the quarter
        ("r00003", None, "good"),  # no date
    ]
    frame = pd.DataFrame(rows, columns=["record_id", "date", "verdict"])
    return frame.assign(date=pd.to_datetime(frame["date"]), reason="Too small", rep="x")


def test_feedback_counts_bad_input_and_raises_alert_when_share_rises():
    grades = pd.DataFrame({"record_id": [f"r{i:05d}" for i in range(10)], "grade": "B"})

    fb = feedback_summary(_feedback_rows(), grades, quarter=REVIEW_Q, threshold=0.3)

    assert fb.rows_used == 40
    problems = " ".join(fb.problems)
    for text in (
        "1 feedback row(s) name a record id",
        "1 feedback row(s) have no readable verdict",
        "1 feedback row(s) are dated after",
        "1 feedback row(s) have no",
    ):
        assert text in problems
    months = fb.by_month.set_index("month")
    assert months.loc["2026-09", "bad_share"] == pytest.approx(0.8)
    assert months.loc["2026-08", "rows"] == 0
    assert fb.bad_share == pytest.approx(12 / 20)
    assert any("rose past the alert level of 30%" in a for a in fb.alerts)
    assert any("grade B" in a for a in fb.alerts)
    assert fb.trend_slope > 0


def test_feedback_trend_matches_cochran_armitage_by_hand():
    grades = pd.DataFrame({"record_id": [f"r{i:05d}" for i in range(10)], "grade": "B"})
    fb = feedback_summary(_feedback_rows(), grades, quarter=REVIEW_Q)
    m = fb.by_month
    # Cochran-Armitage by hand over month positions 0..5 with rows > 0.
    keep = m["rows"] > 0
    x, n = m.loc[keep, "bad"].to_numpy(float), m.loc[keep, "rows"].to_numpy(float)
    s = np.arange(len(m), dtype=float)[keep.to_numpy()]
    pbar, sbar = x.sum() / n.sum(), (n * s).sum() / n.sum()
    z = (s * (x - n * pbar)).sum() / math.sqrt(
        pbar * (1 - pbar) * (n * (s - sbar) ** 2).sum()
    )
    from scipy import stats

    assert fb.trend_p_value == pytest.approx(2 * stats.norm.sf(abs(z)))


# --- history, json, charts --------------------------------------------------------


def test_history_reads_earlier_reviews(synthetic, tmp_path):
    table, card = synthetic
    earlier = review_quarter(table, card, config=_config(), quarter="2026Q2")
    earlier.save(tmp_path / "2026Q2" / "all" / "review.json")
    (tmp_path / "2026Q1" / "all").mkdir(parents=True)
    (tmp_path / "2026Q1" / "all" / "review.json").write_text("{broken")

    result = review_quarter(
        table, card, config=_config(), quarter=REVIEW_Q, history_root=tmp_path
    )

    assert sorted(set(result.history["quarter"])) == ["2026Q2", REVIEW_Q]
    assert "2 reviewed quarters" in result.section_markdown("history")


def test_history_leaves_out_another_clients_reviews(synthetic, tmp_path):
    table, card = synthetic
    other = _config().model_copy(update={"client": "Other Co"})
    earlier = review_quarter(table, card, config=other, quarter="2026Q2")
    earlier.save(tmp_path / "2026Q2" / "all" / "review.json")

    result = review_quarter(
        table, card, config=_config(), quarter=REVIEW_Q, history_root=tmp_path
    )

    assert sorted(set(result.history["quarter"])) == [REVIEW_Q]


def test_review_json_has_index_fields_and_no_nan(synthetic_result, tmp_path):
    path = synthetic_result.save(tmp_path / "review.json")
    text = path.read_text()
    data = json.loads(text)

    assert "NaN" not in text
    for key in (
        "verdict",
        "grade_ordering",
        "drift_alerts",
        "feedback_alerts",
        "headline",
        "model",
        "grades",
        "drift",
        "history",
    ):
        assert key in data
    assert data["verdict"]["decision"] in ("keep", "watch", "rerun")
    assert data["grade_ordering"]["verdict"] == synthetic_result.ordering_verdict
    assert {a["variable"] for a in data["drift_alerts"]} >= {"region"}
    assert data["headline"]["records"] == synthetic_result.counts["records"]


def test_markdown_escapes_values_from_data(synthetic):
    table, card = synthetic
    f = table.frame
    evil = f.assign(region=f["region"].replace({"APAC": "<b>APAC</b>"}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = review_quarter(
            replace(table, frame=evil), card, config=_config(), quarter=REVIEW_Q
        )

    text = result.section_markdown("drift") + result.summary_markdown()
    assert "<b>" not in text and "\\<b\\>APAC" in text


def test_charts_draw_one_bar_per_grade_and_variable(synthetic_result):
    ax = plots.plot_grade_conversion(synthetic_result)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B", "C", "D"]
    assert len(ax.patches) == 4

    ax = plots.plot_drift(synthetic_result)
    assert len(ax.patches) == len(synthetic_result.drift)

    ax = plots.plot_shares(synthetic_result.most_shifted())
    assert ax.get_title() == "Region"


# --- demo data: the planted truth -------------------------------------------------

DEMO_MAX = {"industry": 28, "employees": 27, "seniority": 20, "region": 11}
EMPLOYEE_LOWER = [11, 51, 201, 501, 1001, 5001, 10001]  # lower bounds of the bands


def _truth_levels(name: str) -> list[dict]:
    from icp_lib.demo import TRUTH

    effects = dict(TRUTH.effects[name])
    low, span = min(effects.values()), max(effects.values()) - min(effects.values())
    return [
        {"values": [v], "label": v, "points": round(DEMO_MAX[name] * (e - low) / span)}
        for v, e in effects.items()
    ]


def _truth_card_json() -> dict:
    """A points card built from TRUTH, not fitted: points follow the effects."""
    bounds = [None, *EMPLOYEE_LOWER, None]
    bins = [
        {"lower": lo, "upper": hi, "label": f"band {i}", "points": round(27 * i / 7)}
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
    ]
    fields = [
        {
            "name": n,
            "label": n.title(),
            "kind": "categorical",
            "levels": _truth_levels(n),
            "other_points": 0,
            "missing_points": 0,
        }
        for n in ("industry", "seniority", "region")
    ]
    fields.append(
        {
            "name": "employees",
            "label": "Employees",
            "kind": "range",
            "bins": bins,
            "missing_points": 0,
        }
    )
    fields.append(
        {
            "name": "technologies",
            "label": "Tech stack",
            "kind": "multi",
            "separator": "|",
            "indicators": [{"value": "Salesforce", "points": 14}],
            "missing_points": 0,
        }
    )
    card = _card_json()
    return {**card, "model_id": "demo-b2b_new-2026Q3-truth", "fields": fields}


def _demo_setup(folder: Path, n_accounts: int):
    from icp_lib import grades as G
    from icp_lib.config import load_config
    from icp_lib.data import load_table, select_segment
    from icp_lib.demo import write_demo

    write_demo(folder / "data", n_accounts=n_accounts)
    config = load_config(REPO / "params" / "demo.yaml")
    config = config.model_copy(update={"data_dir": str(folder / "data")})
    segment = next(s for s in config.segments if s.name == "b2b_new")
    table = select_segment(load_table(config), segment)

    card = ScoreCard.from_json(_truth_card_json())
    train = table.frame[table.frame["quarter"].isin(TRAIN_Q)].reset_index(drop=True)
    scores = score_records(card, train)["score"]
    q = np.quantile(scores, [0.85, 0.55, 0.25]).round().astype(int)
    cuts = {"A": int(q[0]), "B": int(q[1]), "C": int(q[2])}
    frame = train.assign(score=scores, grade=assign_grades(scores, {"cuts": cuts}))
    expected = G.expected_baseline(G.grade_table(frame, cuts=cuts))
    card = card.with_grades({"method": "data", "cuts": cuts, "expected": expected})
    return config, table, card


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_setup(tmp_path_factory):
    # 8,000 accounts: enough closed records in the review quarter that the
    # grade steps the truth implies are large against their sampling error.
    return _demo_setup(tmp_path_factory.mktemp("demo"), 8000)


@pytest.fixture(scope="module")
def demo_table(demo_setup):
    _, table, card = demo_setup
    return table, card


@pytest.fixture(scope="module")
def demo_review(demo_setup):
    config, table, card = demo_setup
    return review_quarter(table, card, config=config, quarter="", segment="b2b_new")


def test_demo_region_shift_is_detected_as_planted(demo_review):
    from icp_lib.demo import TRUTH

    assert demo_review.quarter == TRUTH.drift_quarter
    region = next(d for d in demo_review.drift if d.variable == "region")
    shares = region.result.to_frame().set_index("bin")
    ratio = shares.loc["APAC", "actual_share"] / shares.loc["APAC", "expected_share"]

    assert region.status == "shifted"
    assert region.result.top_movers(1) == [TRUTH.drift_region]
    assert ratio == pytest.approx(TRUTH.drift_share_factor, rel=0.3)


def test_demo_apac_conversion_drop_shows_in_the_verdict(demo_review):
    from icp_lib.demo import TRUTH

    conv = demo_review.conversion_drift.set_index(["variable", "level"])
    apac = conv.loc[("region", TRUTH.drift_region)]

    assert TRUTH.drift_effect < 0 and apac["direction"] == "dropped"
    assert demo_review.verdict.decision == "rerun"
    assert any(TRUTH.drift_region in r for r in demo_review.verdict.reasons)


def _true_probability(frame: pd.DataFrame, segment: str) -> np.ndarray:
    """Each record's chance to win, rebuilt from TRUTH and its cleaned fields."""
    from icp_lib.demo import TRUTH

    fx = TRUTH.effects
    band = np.searchsorted(EMPLOYEE_LOWER, frame["employees"].fillna(0), side="right")
    salesforce = (
        frame["technologies"].fillna("").str.split("|").map(lambda v: "Salesforce" in v)
    )
    drifted = (frame["region"] == TRUTH.drift_region) & (
        frame["quarter"] == TRUTH.drift_quarter
    )
    logit = (
        TRUTH.intercept
        + TRUTH.segment_effects[segment]
        + frame["industry"].map(dict(fx["industry"])).fillna(0.0)
        + TRUTH.employees_step * band
        + fx["technologies"]["Salesforce"] * salesforce.astype(float)
        + frame["seniority"].map(dict(fx["seniority"])).fillna(0.0)
        + frame["region"].map(dict(fx["region"])).fillna(0.0)
        + TRUTH.drift_effect * drifted.astype(float)
    )
    return (1 / (1 + np.exp(-logit))).to_numpy(float)


def test_demo_grade_ordering_holds_where_truth_says(demo_review, demo_table):
    table, card = demo_table
    review = table.frame[table.frame["quarter"] == demo_review.quarter]
    closed = review.assign(
        p=_true_probability(review, "b2b_new"),
        grade=score_records(card, review)["grade"].to_numpy(),
    ).dropna(subset=["won"])
    truth = closed.groupby("grade")["p"].agg(["mean", "count"])

    confirmed_by_truth = 0
    for test in demo_review.ordering:
        hi, lo = truth.loc[test.higher], truth.loc[test.lower]
        # The z a test would expect if conversion followed the truth exactly.
        se = np.sqrt(
            hi["mean"] * (1 - hi["mean"]) / hi["count"]
            + lo["mean"] * (1 - lo["mean"]) / lo["count"]
        )
        expected_z = (hi["mean"] - lo["mean"]) / se
        assert expected_z > 0  # the truth orders every pair of this card
        assert test.answer != "no"
        if expected_z >= 3.5:  # a test this strong finds the gap 96% of the time
            confirmed_by_truth += 1
            assert test.answer == "yes", test.reason
    assert confirmed_by_truth >= 1


def test_demo_feedback_trend_rises_as_planted(demo_review):
    from icp_lib.demo import TRUTH

    fb = demo_review.feedback
    months = fb.by_month.set_index("month")
    planted = list(TRUTH.feedback_trend)  # months with a raised bad-fit chance

    assert fb.trend_slope > 0 and fb.trend_p_value < 0.05
    assert months.loc[planted, "bad"].sum() / months.loc[planted, "rows"].sum() > (
        months.drop(index=planted)["bad"].sum()
        / months.drop(index=planted)["rows"].sum()
    )
    assert fb.alerts


@pytest.mark.slow
def test_notebook_runs_on_small_demo_and_writes_review_json(tmp_path):
    import papermill
    import yaml

    config, table, card = _demo_setup(tmp_path, 1200)
    out = tmp_path / "reports" / "2026Q3" / "b2b_new"
    card.save(out / "model.json")
    raw = yaml.safe_load((REPO / "params" / "demo.yaml").read_text())
    config_path = tmp_path / "demo.yaml"
    config_path.write_text(yaml.safe_dump({**raw, "data_dir": str(tmp_path / "data")}))

    papermill.execute_notebook(
        str(REPO / "notebooks" / "04_quarterly_review.ipynb"),
        str(out / "04_quarterly_review.ipynb"),
        parameters={
            "config_path": str(config_path),
            "segment": "b2b_new",
            "quarter": "2026Q3",
            "output_dir": str(out),
            "table_dir": "",
        },
        kernel_name="python3",
        cwd=str(REPO),
        progress_bar=False,
    )

    data = json.loads((out / "review.json").read_text())
    assert data["quarter"] == "2026Q3" and data["segment"] == "b2b_new"
    assert data["verdict"]["decision"] in ("keep", "watch", "rerun")
    assert data["model"]["out_of_time"] is True


def test_empty_feedback_file_gives_no_alert_and_no_trend():
    empty = pd.DataFrame(columns=["record_id", "date", "verdict", "reason", "rep"])
    grades = pd.DataFrame({"record_id": ["r1"], "grade": ["A"]})

    fb = feedback_summary(empty, grades, quarter=REVIEW_Q)

    assert fb.rows_used == 0 and fb.alerts == ()
    assert math.isnan(fb.trend_p_value) and math.isnan(fb.bad_share)
