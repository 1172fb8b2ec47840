"""Tests of the model fit: screening, points card, validation, scoring files."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from sklearn.metrics import roc_auc_score

from icp_lib import model
from icp_lib._card import ScoreCard, points_by_field, score_records
from icp_lib.config import Config, Segment
from icp_lib.data import FieldSpec, ModelingTable
from icp_lib.errors import FallbackWarning, ModelError

QUARTERS = ["2025Q3", "2025Q4", "2026Q1", "2026Q2", "2026Q3"]
REVIEW_Q = "2026Q3"
SEGMENT = Segment(name="all", label="All records")

# Planted log-odds of the synthetic data (the independent truth of these tests)
GOOD_EFFECT = {"Alpha": 1.2, "Beta": 0.4, "Gamma": 0.0, "Delta": -0.6}
SIZE_SLOPE = 0.8  # per unit of log10(size)
TECH_EFFECT = 0.9  # "Salesforce" present


def make_config(kinds: dict[str, str], **model_options) -> Config:
    fields = {
        name: {"kind": kind, "label": name.title()} for name, kind in kinds.items()
    }
    return Config.model_validate(
        {
            "client": "Test Co",
            "sources": {"opportunities": {"path": "x.csv"}},
            "outcome": {"won": ["Won"], "lost": ["Lost"]},
            "fields": fields,
            "model": model_options,
        }
    )


def make_frame(n: int = 2400, *, seed: int = 0, signal: bool = True) -> pd.DataFrame:
    """Closed records over five quarters with planted effects."""
    rng = np.random.default_rng(seed)
    good = rng.choice(list(GOOD_EFFECT), size=n, p=[0.25, 0.3, 0.3, 0.15])
    size = 10 ** rng.uniform(0, 4, size=n)
    tech = rng.choice(["Salesforce|Slack", "Slack", "HubSpot", "Salesforce"], size=n)
    noise = rng.choice(["n1", "n2", "n3"], size=n)
    logit = -0.8 + (
        pd.Series(good).map(GOOD_EFFECT).to_numpy()
        + SIZE_SLOPE * (np.log10(size) - 2)
        + TECH_EFFECT * pd.Series(tech).str.contains("Salesforce").to_numpy()
        if signal
        else 0.0
    )
    won = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(float)
    quarter = np.array(QUARTERS)[np.arange(n) % len(QUARTERS)]
    start = pd.PeriodIndex(quarter, freq="Q").start_time
    return pd.DataFrame(
        {
            "record_id": [f"r{i}" for i in range(n)],
            "account_id": [f"a{i}" for i in range(n)],
            "record_date": start,
            "close_date": start,
            "amount": 100.0,
            "stage": np.where(won == 1, "Won", "Lost"),
            "outcome": np.where(won == 1, "won", "lost"),
            "won": won,
            "qualified": won == 1,
            "quarter": pd.Series(quarter, dtype="str"),
            "good": pd.Series(good, dtype="str"),
            "size": size,
            "tech": pd.Series(tech, dtype="str"),
            "noise": pd.Series(noise, dtype="str"),
        }
    )


KINDS = {
    "good": "categorical",
    "size": "numeric",
    "tech": "multi",
    "noise": "categorical",
}


def make_table(frame: pd.DataFrame, kinds=KINDS, *, has_dates=True) -> ModelingTable:
    specs = tuple(
        FieldSpec(name, kind, name.title(), False, "opportunities", None, None)
        for name, kind in kinds.items()
    )
    return ModelingTable(
        frame=frame, fields=specs, cleaning=(), history=None, feedback=None,
        fingerprints={}, has_dates=has_dates,
    )  # fmt: skip


def make_audit(names, *, target="won") -> dict:
    return {
        "target": {"target": target, "reason": "test audit"},
        "fields": [{"name": n, "decision": "use"} for n in names],
    }


def fit(frame, kinds=KINDS, *, quarter=REVIEW_Q, has_dates=True, **options):
    config = make_config(kinds, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)
        return model.fit_model(
            make_table(frame, kinds, has_dates=has_dates),
            config=config,
            audit=make_audit(list(kinds)),
            quarter=quarter,
            segment=SEGMENT,
        )


@pytest.fixture(scope="module")
def planted_fit():
    return fit(make_frame())


# --------------------------------------------------------------------------
# Screening and the points card on planted data


def test_planted_drivers_are_kept_and_noise_dropped(planted_fit):
    decisions = dict(zip(planted_fit.screening["field"],
                         planted_fit.screening["decision"], strict=True))  # fmt: skip
    assert decisions == {"good": "kept", "size": "kept", "tech": "kept",
                         "noise": "dropped"}  # fmt: skip
    assert planted_fit.kept_fields == ("good", "size", "tech")


def test_card_points_are_non_negative_integers_and_ideal_scores_100(planted_fit):
    card = planted_fit.card
    table = card.card_frame()
    assert (table["points"] >= 0).all()
    assert table["points"].dtype == "int64"
    assert card.ideal_score() == 100
    # re-reading the file validates the same invariants independently
    assert ScoreCard.from_json(card.to_json_dict()).ideal_score() == 100


def test_card_follows_the_planted_order(planted_fit):
    field = {f.name: f for f in planted_fit.card.fields}
    good = {lv.label: lv.points for lv in field["good"].levels}
    # planted log-odds: Alpha > Beta > Gamma > Delta
    assert good["Alpha"] > good["Beta"] > good["Gamma"] > good["Delta"] == 0
    size_points = [b.points for b in field["size"].bins]
    assert size_points == sorted(size_points)  # monotone: bigger converts more
    assert [i.value for i in field["tech"].indicators] == ["Salesforce"]


def test_score_equals_sum_of_card_points(planted_fit):
    frame = make_frame(50, seed=9)
    scores = score_records(planted_fit.card, frame)
    per_field = points_by_field(planted_fit.card, frame)
    assert scores["score"].tolist() == per_field.sum(axis=1).tolist()


def test_unseen_and_missing_values_score_other_and_missing_points(planted_fit):
    card = planted_fit.card
    good = next(f for f in card.fields if f.name == "good")
    size = next(f for f in card.fields if f.name == "size")
    tech = next(f for f in card.fields if f.name == "tech")
    frame = pd.DataFrame(
        {"record_id": ["unseen", "missing"], "good": ["Omega", None],
         "size": ["lots", np.nan], "tech": ["Zoho", "Select"]}
    )  # fmt: skip
    scores = score_records(card, frame)["score"].tolist()
    # unseen category -> other_points; unreadable number -> missing_points;
    # unlisted tool -> 0; placeholder-only multi -> missing_points
    assert scores[0] == good.other_points + size.missing_points + 0
    assert scores[1] == good.missing_points + size.missing_points + tech.missing_points


def test_level_with_only_wins_is_merged_and_gets_no_extreme_points():
    frame = make_frame(seed=3)
    pure = frame.index[:60]
    frame = frame.assign(
        good=frame["good"].astype(object).where(~frame.index.isin(pure), "Zeta"),
        won=frame["won"].where(~frame.index.isin(pure), 1.0),
    )
    result = fit(frame)
    good = next(f for f in result.card.fields if f.name == "good")
    assert "Zeta" not in [lv.label for lv in good.levels]
    assert any("Zeta" in n and "only won or only" in n for n in result.notes)
    assert good.other_points <= good.max_points()


def test_allocate_points_sums_exactly_and_stays_within_one():
    from icp_lib._features import allocate_points

    raw = np.array([0.33, 1.0, 0.67, 2.0, 0.001])
    out = allocate_points(raw, 100)
    assert out.sum() == 100
    # expected shares: raw / raw.sum() * 100, computed directly
    assert np.all(np.abs(out - raw / raw.sum() * 100) < 1)


# --------------------------------------------------------------------------
# Statistics against independent computations


def test_likelihood_ratio_matches_two_statsmodels_fits_and_g_test():
    frame = make_frame(600, seed=4)
    x = pd.get_dummies(frame["good"], drop_first=True, dtype=float)
    result = model.likelihood_ratio_test(x, frame["won"])
    # hand computation: 2 * (llf of the full fit - llf of an intercept-only fit)
    full = sm.Logit(frame["won"], sm.add_constant(x)).fit(disp=0)
    null = sm.Logit(frame["won"], np.ones((len(frame), 1))).fit(disp=0)
    assert result.statistic == pytest.approx(2 * (full.llf - null.llf), rel=1e-6)
    # and the G statistic of the level-by-outcome table (scipy)
    table = pd.crosstab(frame["good"], frame["won"])
    g = stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
    assert result.statistic == pytest.approx(g.statistic, rel=1e-6)
    assert result.df == 3


def test_design_effect_grows_when_records_repeat_per_account():
    frame = make_frame(400, seed=5)
    doubled = pd.concat([frame, frame], ignore_index=True)
    x = pd.get_dummies(doubled["good"], drop_first=True, dtype=float)
    plain = model.likelihood_ratio_test(x, doubled["won"])
    grouped = model.likelihood_ratio_test(x, doubled["won"],
                                          groups=doubled["account_id"])  # fmt: skip
    # every record appears twice: the design effect is about 2
    assert grouped.design_effect == pytest.approx(2.0, abs=0.1)
    assert grouped.p_value > plain.p_value


def test_delong_auc_matches_sklearn_and_explicit_components():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, size=80)
    score = rng.integers(0, 6, size=80) + y  # ties on purpose
    auc, low, high = model.delong_auc(y, score)
    assert auc == pytest.approx(roc_auc_score(y, score))
    # DeLong's variance from its definition: psi(x, z) = 1, 1/2 or 0
    pos, neg = score[y == 1], score[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    se = np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))
    assert (high - low) / 2 == pytest.approx(1.959964 * se, rel=1e-6)


def test_delong_difference_of_a_score_with_itself_is_zero():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, size=100)
    score = rng.normal(size=100) + y
    diff, p = model.delong_difference(y, score, score)
    assert diff == 0
    assert np.isnan(p)


def test_ks_statistic_matches_scipy_two_sample_ks():
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, size=200)
    score = rng.normal(size=200) + y
    expected = stats.ks_2samp(score[y == 1], score[y == 0]).statistic
    assert model.ks_statistic(y, score) == pytest.approx(expected)


def test_information_value_matches_plain_pandas():
    from icp_lib._features import information_value

    frame = make_frame(500, seed=10)
    # plain pandas: sum over levels of (share of wins - share of losses) * WoE
    wins = frame.groupby("good")["won"].sum()
    losses = frame.groupby("good")["won"].count() - wins
    dist_w, dist_l = wins / wins.sum(), losses / losses.sum()
    expected = ((dist_w - dist_l) * np.log(dist_w / dist_l)).sum()
    assert information_value(frame["good"], frame["won"]) == pytest.approx(expected)


def test_holm_adjusted_p_values_follow_the_step_down_rule(planted_fit):
    s = planted_fit.screening.sort_values("p_value")
    p, m = s["p_value"].to_numpy(), len(s)
    # Holm by hand: multiply the i-th smallest by (m - i), running max, cap at 1
    expected = np.minimum(1, np.maximum.accumulate(p * (m - np.arange(m))))
    assert s["p_holm"].to_numpy() == pytest.approx(expected)


def test_lift_table_has_ten_deciles_with_top_scores_first():
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, size=1000)
    score = rng.normal(size=1000) + 2 * y
    lift = model.lift_table(y, score)
    assert len(lift) == 10
    assert lift["records"].sum() == 1000
    assert lift["conversion"].iloc[0] > lift["conversion"].iloc[-1]
    assert lift["wins"].sum() == y.sum()


# --------------------------------------------------------------------------
# Numeric binning


def test_numeric_bins_respect_minimum_share_and_are_monotone(planted_fit):
    size = next(f for f in planted_fit.card.fields if f.name == "size")
    records = [b.records for b in size.bins]
    assert min(records) >= 0.05 * sum(records)
    rates = [b.conversion for b in size.bins]
    assert rates == sorted(rates)
    assert len(size.bins) <= 5


# --------------------------------------------------------------------------
# Windows, verdicts and fallbacks


def test_validation_is_out_of_time_on_the_last_training_quarter(planted_fit):
    w = planted_fit.windows
    assert w.training == tuple(QUARTERS[:4])
    assert w.validation == ("2026Q2",)
    assert w.out_of_time
    assert planted_fit.usable
    assert planted_fit.validation.auc_low > 0.5


def test_no_signal_gives_an_unusable_verdict_said_plainly():
    result = fit(make_frame(seed=12, signal=False))
    assert not result.usable
    assert result.card.fields == ()
    assert result.summary_markdown().startswith("**Verdict: NOT usable")
    assert "noise" in " ".join(result.verdict["reasons"])


def test_data_without_dates_falls_back_to_a_random_holdout_with_a_warning():
    frame = make_frame(seed=13).assign(quarter=pd.NA, record_date=pd.NaT)
    config = make_config(KINDS)
    with pytest.warns(FallbackWarning, match="no record dates"):
        result = model.fit_model(
            make_table(frame, has_dates=False), config=config,
            audit=make_audit(list(KINDS)), quarter=None, segment=SEGMENT,
        )  # fmt: skip
    assert not result.windows.out_of_time
    assert any("random 30% holdout" in n for n in result.notes)


def test_training_window_without_closed_records_is_a_clear_error():
    frame = make_frame(seed=14)
    with pytest.raises(ModelError, match=r"2024Q3 to 2025Q2 holds no closed records"):
        fit(frame, quarter="2025Q3")


def test_too_small_segment_returns_an_unusable_fit_that_can_be_saved(tmp_path):
    config = make_config(KINDS)
    result = model.fit_model(
        make_table(make_frame(100, seed=15)), config=config,
        audit=make_audit(list(KINDS), target="too_small"), quarter=REVIEW_Q,
        segment=SEGMENT,
    )  # fmt: skip
    assert not result.usable
    assert "too small" in result.summary_markdown()
    saved = ScoreCard.read(result.card.save(tmp_path / "model.json"))
    assert saved.fields == ()
    assert not saved.usable


def test_model_json_records_windows_metrics_and_scoring_rules(planted_fit):
    data = planted_fit.card.to_json_dict()
    assert data["schema_version"] == 1
    assert data["training_window"]["quarters"] == QUARTERS[:4]
    assert data["validation_window"] == {"quarters": ["2026Q2"], "out_of_time": True}
    assert data["model_id"].startswith("test-co-all-2026Q3-")
    assert {"unseen_values", "missing_values"} <= set(data["scoring_rules"])
    assert data["metrics"]["validation"]["auc"] == pytest.approx(
        planted_fit.validation.auc
    )
    json.dumps(data, allow_nan=False)  # plain JSON, no NaN


def test_report_text_escapes_values_from_the_data():
    frame = make_frame(seed=16)
    frame = frame.assign(good=frame["good"].replace({"Alpha": "<b>*Alpha*</b>"}))
    result = fit(frame)
    text = result.matches_markdown()
    assert "<b>" not in text
    assert "&lt;b&gt;\\*Alpha\\*" in text


# --------------------------------------------------------------------------
# Scoring files


@pytest.fixture
def saved_model(planted_fit, tmp_path):
    return planted_fit.card.save(tmp_path / "model.json")


def test_score_file_scores_a_csv_with_unseen_values(saved_model, tmp_path):
    src = tmp_path / "new.csv"
    pd.DataFrame(
        {"record_id": ["x1", "x2"], "good": ["Alpha", "Brand new"],
         "size": ["$1,200", ""], "tech": ["Salesforce", "Zoho"]}
    ).to_csv(src, index=False)  # fmt: skip
    out = tmp_path / "scores.csv"
    scores = model.score_file(saved_model, src, out)
    written = pd.read_csv(out)
    assert list(written.columns) == ["record_id", "score", "grade", "reasons"]
    assert written["score"].tolist() == scores["score"].tolist()
    assert len(written) == 2


def test_score_file_missing_field_names_it_and_writes_nothing(saved_model, tmp_path):
    src = tmp_path / "new.csv"
    pd.DataFrame({"record_id": ["x1"], "good": ["Alpha"]}).to_csv(src, index=False)
    out = tmp_path / "scores.csv"
    with pytest.raises(ModelError, match=r"lack column\(s\) \['size', 'tech'\]"):
        model.score_file(saved_model, src, out)
    assert not out.exists()
    assert list(tmp_path.glob(".scores.csv*")) == []


def test_score_file_refuses_another_schema_version(saved_model, tmp_path):
    data = json.loads(saved_model.read_text()) | {"schema_version": 7}
    saved_model.write_text(json.dumps(data))
    src = tmp_path / "new.csv"
    pd.DataFrame({"record_id": ["x1"]}).to_csv(src, index=False)
    out = tmp_path / "scores.csv"
    with pytest.raises(ModelError, match="schema_version is 7"):
        model.score_file(saved_model, src, out)
    assert not out.exists()


def test_score_file_refuses_a_hand_edited_card(saved_model, tmp_path):
    data = json.loads(saved_model.read_text())
    levels = data["fields"][0]["levels"]
    max(levels, key=lambda lv: lv["points"])["points"] += 5  # the ideal value
    saved_model.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="ideal record scores 105"):
        model.score_file(saved_model, tmp_path / "in.csv", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_score_file_neutralizes_formulas_in_ids(saved_model, tmp_path):
    src = tmp_path / "new.csv"
    pd.DataFrame({"record_id": ["=HYPERLINK(1)"], "good": ["Alpha"], "size": [5],
                  "tech": [""]}).to_csv(src, index=False)  # fmt: skip
    out = tmp_path / "scores.csv"
    model.score_file(saved_model, src, out)
    assert out.read_text().splitlines()[1].startswith("'=HYPERLINK")


def test_segment_of_unknown_name_lists_the_segments():
    config = make_config(KINDS)
    assert model.segment_of(config, "all").name == "all"
    with pytest.raises(ModelError, match="segment 'nope' is not in the config"):
        model.segment_of(config, "nope")


@pytest.mark.parametrize(
    "tech", ["Salesforce;Slack", "Salesforce|Slack", " salesforce "]
)
def test_score_file_splits_multi_values_as_in_training(saved_model, tmp_path, tech):
    card = ScoreCard.read(saved_model)
    sf = next(f for f in card.fields if f.name == "tech").indicators[0]
    src = tmp_path / "new.csv"
    pd.DataFrame({"record_id": ["a", "b"], "good": ["Alpha"] * 2, "size": [5, 5],
                  "tech": [tech, "Slack"]}).to_csv(src, index=False)  # fmt: skip
    scores = model.score_file(saved_model, src, tmp_path / "scores.csv")
    # the config's separator (";") is kept in model.json as source_separator
    assert scores["score"][0] - scores["score"][1] == sf.points


def test_qualified_target_fits_on_all_records_including_open_ones():
    frame = make_frame(seed=17)
    open_rows = frame.index % 7 == 0
    frame = frame.assign(won=frame["won"].where(~open_rows))  # open: outcome unknown
    config = make_config(KINDS)
    result = model.fit_model(
        make_table(frame), config=config, audit=make_audit(list(KINDS),
        target="qualified"), quarter=REVIEW_Q, segment=SEGMENT,
    )  # fmt: skip
    in_window = frame["quarter"].isin(QUARTERS[:4])
    assert result.target == "qualified"
    assert result.training_records == int(in_window.sum())  # open records count
    assert "qualified = reached" in result.card.to_json_dict()["outcome_definition"]


def test_lr_test_of_values_that_always_occur_together_has_one_df():
    from icp_lib.model import likelihood_ratio_test

    rng = np.random.default_rng(3)
    a = rng.integers(0, 2, 400)
    y = pd.Series((rng.random(400) < 0.2 + 0.3 * a).astype(float))
    # two indicators that are the same column: one degree of freedom, and the
    # statistic equals that of the single indicator (independent computation)
    pair = pd.DataFrame({"AWS": a, "AWS Support": a})
    alone = pd.DataFrame({"AWS": a})
    both, single = likelihood_ratio_test(pair, y), likelihood_ratio_test(alone, y)
    assert both.df == 1
    assert both.statistic == pytest.approx(single.statistic)
