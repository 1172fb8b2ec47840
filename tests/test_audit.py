"""Tests of icp_lib.audit on small constructed tables and on the demo data."""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from icp_lib import audit
from icp_lib.config import Config, load_config
from icp_lib.data import CleaningStep, ModelingTable, _field_specs, quarters_of
from icp_lib.errors import ConfigError, DataError, FallbackWarning

REVIEW_Q = "2026Q3"
STAGES = {"won": "Closed Won", "lost": "Closed Lost", "open": "Prospecting"}


def make_frame(n=1500, *, seed=0, win_rate=0.3, open_share=0.1, start="2025-01-01"):
    """Records dated 2025Q1..2026Q3 with outcomes; no candidate fields yet."""
    rng = np.random.default_rng(seed)
    first = pd.Timestamp(start)
    days = (pd.Timestamp("2026-09-30") - first).days
    dates = first + pd.to_timedelta(rng.integers(0, days, n), unit="D")
    outcome = rng.choice(
        ["won", "lost", "open"],
        p=[win_rate * (1 - open_share), (1 - win_rate) * (1 - open_share), open_share],
        size=n,
    )
    won = pd.Series(outcome).map({"won": 1.0, "lost": 0.0, "open": np.nan})
    return pd.DataFrame(
        {
            "record_id": [f"r{i:05d}" for i in range(n)],
            "account_id": [f"a{i:05d}" for i in range(n)],
            "record_date": pd.Series(dates).astype("datetime64[ns]"),
            "close_date": pd.Series(dates + pd.Timedelta(days=40)).astype(
                "datetime64[ns]"
            ),
            "amount": rng.uniform(1000, 5000, n),
            "stage": pd.Series(outcome).map(STAGES),
            "outcome": outcome,
            "won": won,
            "qualified": (outcome == "won") | (rng.random(n) < 0.3),
            "quarter": quarters_of(pd.Series(dates)),
        }
    )


def make_config(kinds: dict, *, known_late=(), decisions=None, **audit_opts):
    decisions = decisions or {}
    fields = {
        name: {"kind": kind, "known_late": name in known_late}
        | ({"decision": decisions[name]} if name in decisions else {})
        for name, kind in kinds.items()
    }
    return Config.model_validate(
        {
            "client": "Test Co",
            "sources": {"opportunities": {"path": "opps.csv"}},
            "outcome": {
                "won": ["Closed Won"],
                "lost": ["Closed Lost"],
                "open": ["Prospecting", "Qualification", "Proposal", "Negotiation"],
                "qualified": ["Proposal", "Negotiation"],
            },
            "fields": fields,
            "audit": audit_opts,
        }
    )


def make_table(frame, config, *, history=None, cleaning=(), has_dates=True):
    specs = _field_specs(config)  # the data layer's own FieldSpec builder
    return ModelingTable(
        frame=frame,
        fields=specs,
        cleaning=tuple(cleaning),
        history=history,
        has_dates=has_dates,
    )


def run_audit(frame, kinds, *, quarter=REVIEW_Q, history=None, cleaning=(), **kw):
    config = make_config(kinds, **kw)
    table = make_table(frame, config, history=history, cleaning=cleaning)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)
        return audit.audit_table(table, config=config, quarter=quarter)


def by_outcome(frame, seed, *, won_values, lost_values, p_won, p_lost):
    """A categorical column whose value distribution depends on the outcome."""
    rng = np.random.default_rng(seed)
    n = len(frame)
    a = rng.choice(won_values, p=p_won, size=n)
    b = rng.choice(lost_values, p=p_lost, size=n)
    return pd.Series(np.where(frame["won"] == 1, a, b), dtype="object")


def flags_of(result, name):
    return {f.flag for f in result.field(name).flags}


# --------------------------------------------------------------------------
# Fill rates and conversion against a plain pandas computation


@pytest.fixture
def mixed_frame():
    frame = make_frame(seed=1)
    rng = np.random.default_rng(2)
    values = rng.choice(["a", "b", "c"], size=len(frame)).astype(object)
    values[rng.random(len(frame)) < 0.3] = None
    return frame.assign(color=pd.Series(values, dtype="str"))


def test_fill_rates_match_a_plain_pandas_computation(mixed_frame):
    result = run_audit(mixed_frame, {"color": "categorical"})
    item = result.field("color")

    # expected: plain pandas over the records dated before the review quarter
    before = mixed_frame[mixed_frame["quarter"] < REVIEW_Q]
    filled = before["color"].notna()
    assert item.fill["overall"] == pytest.approx(filled.mean())
    for group in ("won", "lost", "open"):
        expected = filled[before["outcome"] == group].mean()
        assert item.fill[group] == pytest.approx(expected)

    up_to_q = mixed_frame[mixed_frame["quarter"] <= REVIEW_Q]
    expected_q = up_to_q["color"].notna().groupby(up_to_q["quarter"]).mean()
    assert item.by_quarter == pytest.approx(expected_q.to_dict())


def test_conversion_and_intervals_match_pandas_and_scipy(mixed_frame):
    result = run_audit(mixed_frame, {"color": "categorical"})
    conv = result.field("color").conversion

    # expected: win rate of closed records with and without the field
    closed = mixed_frame[(mixed_frame["quarter"] < REVIEW_Q)]
    closed = closed[closed["won"].notna()]
    has = closed["color"].notna()
    assert conv["filled"].rate == pytest.approx(closed["won"][has].mean())
    assert conv["unfilled"].rate == pytest.approx(closed["won"][~has].mean())
    assert conv["all"].rate == pytest.approx(closed["won"].mean())
    assert conv["all"].n == len(closed)

    # expected: scipy's Wilson interval of the same counts
    rate = conv["filled"]
    ci = stats.binomtest(rate.count, rate.n).proportion_ci(method="wilson")
    assert (rate.low, rate.high) == pytest.approx((ci.low, ci.high))


def test_lift_test_matches_hand_z_test(mixed_frame):
    result = run_audit(mixed_frame, {"color": "categorical"})
    conv = result.field("color").conversion
    f, u = conv["filled"], conv["unfilled"]
    # expected: pooled two-proportion z statistic by hand
    p = (f.count + u.count) / (f.n + u.n)
    z = (f.rate - u.rate) / math.sqrt(p * (1 - p) * (1 / f.n + 1 / u.n))
    assert result.field("color").lift_test.statistic == pytest.approx(z)


# --------------------------------------------------------------------------
# The point of optimization


def test_target_is_won_with_enough_wins():
    result = run_audit(make_frame(seed=3), {})
    assert result.target.target == "won"
    assert result.target.window["quarters"] == [
        "2025Q3",
        "2025Q4",
        "2026Q1",
        "2026Q2",
    ]
    frame = make_frame(seed=3)
    in_window = frame[frame["quarter"].isin(result.target.window["quarters"])]
    # expected: wins counted directly on the window
    assert result.target.counts["won"] == int((in_window["won"] == 1).sum())
    assert "wins" in result.target.reason


def test_target_falls_back_to_qualified_with_few_wins():
    frame = make_frame(n=1500, seed=4, win_rate=0.02)
    config = make_config({})
    table = make_table(frame, config)
    with pytest.warns(FallbackWarning, match="qualified"):
        result = audit.audit_table(table, config=config, quarter=REVIEW_Q)
    assert result.target.target == "qualified"
    assert result.target.window["months"] == config.training.qualified_months
    assert "qualified stage" in result.target.reason


def test_no_qualified_stages_in_the_config_means_too_small_with_few_wins():
    frame = make_frame(n=1500, seed=4, win_rate=0.02)
    config = make_config({})
    outcome = config.outcome.model_copy(update={"qualified": []})
    config = config.model_copy(update={"outcome": outcome})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)
        result = audit.audit_table(
            make_table(frame, config), config=config, quarter=REVIEW_Q
        )
    assert result.target.target == "too_small"
    assert "names no qualified stages" in result.target.reason


def test_qualified_window_widens_until_enough_qualified_records():
    frame = make_frame(n=400, seed=5, win_rate=0.02)
    result = run_audit(frame, {})
    assert result.target.target == "qualified"
    # expected: 6 months hold too few qualified records at this size
    assert result.target.window["months"] > 6
    assert result.target.counts["qualified"] >= 50


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_segment_with_a_single_outcome_is_too_small_and_completes(outcome):
    frame = make_frame(seed=6, open_share=0.0).assign(
        outcome=outcome,
        won=1.0 if outcome == "won" else 0.0,
        qualified=outcome == "won",
        stage=STAGES[outcome],
    )
    frame = frame.assign(color=pd.Series(["a", "b"] * (len(frame) // 2), dtype="str"))
    result = run_audit(frame, {"color": "categorical"})
    assert result.target.target == "too_small"
    assert "too small to model" in result.target.reason
    item = result.field("color")
    assert math.isnan(item.conversion["unfilled"].rate)
    assert not item.lift_test.defined
    assert "NaN" not in json.dumps(result.to_json_dict())


def test_tiny_segment_is_too_small():
    result = run_audit(make_frame(n=60, seed=7), {})
    assert result.target.target == "too_small"
    assert "notebooks say so" in result.target.reason


def test_bad_quarter_is_a_config_error():
    with pytest.raises(ConfigError, match="quarter must look like '2026Q3'"):
        run_audit(make_frame(n=50), {}, quarter="Q3-2026")


def test_missing_field_column_is_a_data_error():
    config = make_config({"color": "categorical"})
    table = make_table(make_frame(n=50), config)
    with pytest.raises(DataError, match=r"lacks column\(s\) \['color'\]"):
        audit.audit_table(table, config=config, quarter=REVIEW_Q)


# --------------------------------------------------------------------------
# Bad input: the audit completes and says what it found


def test_data_without_dates_uses_all_records_and_warns():
    frame = make_frame(seed=8).assign(record_date=pd.NaT, quarter=pd.NA)
    frame = frame.assign(record_date=frame["record_date"].astype("datetime64[ns]"))
    config = make_config({})
    table = make_table(frame, config, has_dates=False)
    with pytest.warns(FallbackWarning, match="no usable record dates"):
        result = audit.audit_table(table, config=config, quarter=None)
    assert result.review_quarter is None
    assert result.target.target == "won"
    assert result.target.counts["records"] == len(frame)
    assert "no usable dates" in result.target.reason
    assert any("no usable record dates" in m for m in result.fallbacks)
    assert "no usable record dates" in result.summary_markdown()


def test_unparsed_date_column_is_reported_and_audit_completes():
    frame = make_frame(n=300, seed=9)
    frame = frame.assign(record_date=pd.NaT, quarter=pd.NA).assign(
        record_date=lambda f: f["record_date"].astype("datetime64[ns]")
    )
    step = CleaningStep("opportunities", "record_date", "unparsed dates", 300, ("?",))
    result = run_audit(frame, {}, quarter=REVIEW_Q, cleaning=[step])
    assert result.review_quarter is None
    assert result.target.counts["records"] == len(frame)
    checks = {q.check for q in result.quality}
    assert {"unparsed dates", "missing record dates"} <= checks


def test_empty_field_is_excluded_without_numbers_from_zero_division():
    frame = make_frame(seed=10)
    frame = frame.assign(blank=pd.Series([None] * len(frame), dtype="str"))
    result = run_audit(frame, {"blank": "categorical"})
    item = result.field("blank")
    assert item.decision == "exclude"
    assert flags_of(result, "blank") == {"empty"}
    assert math.isnan(item.conversion["filled"].rate)
    data = result.to_json_dict()["fields"][0]
    assert data["conversion"]["filled"]["rate"] is None


def test_single_value_field_is_excluded():
    frame = make_frame(seed=11).assign(same="x")
    result = run_audit(frame, {"same": "categorical"})
    assert flags_of(result, "same") == {"single_value"}
    assert result.field("same").decision == "exclude"


# --------------------------------------------------------------------------
# Flags: each triggered on a frame built for it, and not on one without it


@pytest.fixture
def base():
    return make_frame(n=2000, seed=12)


def driver(frame, seed=13):
    return by_outcome(
        frame,
        seed,
        won_values=["a", "b"],
        lost_values=["a", "b"],
        p_won=[0.7, 0.3],
        p_lost=[0.3, 0.7],
    )


def noise(frame, seed=14):
    rng = np.random.default_rng(seed)
    return pd.Series(rng.choice(["a", "b", "c"], size=len(frame)), dtype="str")


def test_driver_is_used_and_noise_has_no_lift(base):
    frame = base.assign(good=driver(base), bad=noise(base))
    result = run_audit(frame, {"good": "categorical", "bad": "categorical"})
    assert result.field("good").decision == "use"
    assert result.field("good").flags == ()
    assert result.field("good").test_used == "across values"
    assert flags_of(result, "bad") == {"no_lift"}
    assert result.field("bad").decision == "exclude"


def test_known_late_flag_follows_the_config(base):
    frame = base.assign(good=driver(base))
    late = run_audit(frame, {"good": "categorical"}, known_late=("good",))
    assert "known_late" in flags_of(late, "good")
    assert late.field("good").decision == "exclude"
    plain = run_audit(frame, {"good": "categorical"})
    assert "known_late" not in flags_of(plain, "good")


def make_history(frame, *, stage, delay_days):
    return pd.DataFrame(
        {
            "record_id": frame["record_id"],
            "field": "good",
            "changed_at": frame["record_date"] + pd.Timedelta(days=delay_days),
            "stage": stage,
        }
    )


@pytest.mark.parametrize(
    ("stage", "delay", "expected"),
    [
        ("Negotiation", 1, True),  # filled at a late stage
        (pd.NA, 90, True),  # filled long after the record date
        ("Prospecting", 1, False),  # filled early
    ],
)
def test_filled_late_flag_from_field_history(base, stage, delay, expected):
    frame = base.assign(good=driver(base))
    history = make_history(frame, stage=stage, delay_days=delay)
    result = run_audit(frame, {"good": "categorical"}, history=history)
    assert ("filled_late" in flags_of(result, "good")) is expected
    if expected:
        assert "field history shows 100%" in result.field("good").decision_reason
        assert result.field("good").late_share == pytest.approx(1.0)


def test_late_stages_setting_overrides_the_default(base):
    frame = base.assign(good=driver(base))
    history = make_history(frame, stage="Negotiation", delay_days=1)
    result = run_audit(
        frame, {"good": "categorical"}, history=history, late_stages=["Closed Won"]
    )
    assert "filled_late" not in flags_of(result, "good")


def test_fill_asymmetry_flag_when_filled_mostly_on_won(base):
    rng = np.random.default_rng(15)
    p_fill = np.where(base["won"] == 1, 0.9, 0.2)
    values = np.where(rng.random(len(base)) < p_fill, "yes", None)
    frame = base.assign(
        skewed=pd.Series(values, dtype="str"),
        even=driver(base).where(rng.random(len(base)) < 0.6),
    )
    result = run_audit(frame, {"skewed": "categorical", "even": "categorical"})
    assert "fill_asymmetry" in flags_of(result, "skewed")
    assert "won records" in result.field("skewed").decision_reason
    assert result.field("skewed").decision == "exclude"
    assert "fill_asymmetry" not in flags_of(result, "even")


def test_fill_asymmetry_flag_when_filled_only_on_closed_records(base):
    values = driver(base).where(base["outcome"] != "open")
    frame = base.assign(closed_only=values)
    result = run_audit(frame, {"closed_only": "categorical"})
    reasons = [f.reason for f in result.field("closed_only").flags]
    assert any("still-open" in r for r in reasons)


def echo(frame):
    """The outcome as text on closed records; open records filled at random."""
    guess = pd.Series(np.where(frame.index % 2 == 0, "yes", "no"), index=frame.index)
    return frame["won"].map({1.0: "yes", 0.0: "no"}).fillna(guess).astype("str")


def test_too_good_flag_needs_review(base):
    frame = base.assign(
        outcome_echo=echo(base),
        good=driver(base),
    )
    result = run_audit(frame, {"outcome_echo": "categorical", "good": "categorical"})
    item = result.field("outcome_echo")
    assert flags_of(result, "outcome_echo") == {"too_good"}
    assert item.decision == "needs_review"
    assert item.auc == pytest.approx(1.0)
    assert "too_good" not in flags_of(result, "good")


def test_sparse_field_without_lift_is_excluded(base):
    rng = np.random.default_rng(16)
    sparse = noise(base).where(rng.random(len(base)) < 0.05)
    result = run_audit(base.assign(rare=sparse), {"rare": "categorical"})
    assert flags_of(result, "rare") == {"sparse"}
    assert "enrichment improves" in result.field("rare").decision_reason


def test_sparse_field_with_lift_is_not_flagged_sparse(base):
    rng = np.random.default_rng(17)
    p_fill = np.where(base["won"] == 1, 0.12, 0.06)
    rare = pd.Series(np.where(rng.random(len(base)) < p_fill, "x", None), dtype="str")
    result = run_audit(
        base.assign(rare=rare), {"rare": "categorical"}, asymmetry_ratio=3.0
    )
    assert "sparse" not in flags_of(result, "rare")
    assert result.field("rare").lift_test.significant(0.05)


def test_sparse_field_whose_records_convert_worse_is_still_sparse(base):
    rng = np.random.default_rng(22)
    p_fill = np.where(base["won"] == 1, 0.04, 0.10)
    rare = pd.Series(np.where(rng.random(len(base)) < p_fill, "x", None), dtype="str")
    result = run_audit(
        base.assign(rare=rare), {"rare": "categorical"}, asymmetry_ratio=3.0
    )
    item = result.field("rare")
    # the two-sided difference is real, but a lift means converting better
    assert item.conversion["filled"].rate < item.conversion["unfilled"].rate
    assert item.lift_test.method == "one-sided two-proportion z test"
    assert flags_of(result, "rare") == {"sparse"}


@pytest.mark.parametrize("kind", ["numeric", "range"])
def test_numeric_driver_is_tested_across_value_bins(base, kind):
    rng = np.random.default_rng(18)
    size = rng.normal(size=len(base)) + np.where(base["won"] == 1, 1.0, 0.0)
    result = run_audit(base.assign(size=size), {"size": kind})
    item = result.field("size")
    assert item.decision == "use"
    assert "across values" in item.test_used
    assert item.value_test.method == "likelihood-ratio (G) test"


def test_multi_field_is_tested_per_value(base):
    rng = np.random.default_rng(19)
    has_sf = rng.random(len(base)) < np.where(base["won"] == 1, 0.6, 0.3)
    other = rng.choice(["Slack", "AWS|Slack", "AWS"], size=len(base))
    joined = np.where(has_sf, pd.Series(other) + "|Salesforce", other)
    result = run_audit(base.assign(tech=joined), {"tech": "multi"})
    item = result.field("tech")
    assert item.decision == "use"
    assert "Bonferroni" in item.value_test.method


# --------------------------------------------------------------------------
# Quality findings


def test_quality_findings_from_the_frame(base):
    frame = base.assign(
        industry=pd.Series(["Software"] * 1990 + ["Sofware"] * 10, dtype="str"),
        size=np.r_[np.full(1995, 10.0), np.full(5, -3.0)],
    )
    frame = frame.assign(
        close_date=frame["close_date"].where(
            frame.index >= 3, frame["record_date"] - pd.Timedelta(days=5)
        ),
        record_date=frame["record_date"].where(
            frame.index != 10, pd.Timestamp("2099-01-01")
        ),
    )
    frame = frame.assign(
        close_date=frame["close_date"].where(
            frame.index != 10, pd.Timestamp("2099-02-01")
        )
    )
    config = make_config({"industry": "categorical", "size": "numeric"})
    config = config.model_copy(
        update={
            "fields": {
                **config.fields,
                "size": config.fields["size"].model_copy(
                    update={"valid_range": (0.0, None)}
                ),
            }
        }
    )
    step = CleaningStep(
        "accounts", "industry", "placeholder as missing", 7, ("Select",)
    )
    table = make_table(frame, config, cleaning=[step])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)
        result = audit.audit_table(table, config=config, quarter=REVIEW_Q)
    found = {q.check: q for q in result.quality}
    assert found["category variants (spelling)"].rows == 10
    assert "'Sofware' ~ 'Software'" in found["category variants (spelling)"].examples
    assert found["numbers out of range"].rows == 5
    assert found["close date before create date"].rows == 3
    assert found["dates in the future"].rows == 1
    assert found["placeholder as missing"].rows == 7
    # expected: open share counted directly
    assert found["still open"].share == pytest.approx(
        (base["outcome"] == "open").mean()
    )
    assert "duplicate record ids" not in found
    assert len(result.quality_frame()) == len(result.quality)


def test_duplicate_record_ids_are_reported():
    frame = make_frame(n=200, seed=20)
    frame = pd.concat([frame, frame.iloc[:3]], ignore_index=True)
    result = run_audit(frame, {})
    dup = next(q for q in result.quality if q.check == "duplicate record ids")
    assert dup.rows == 6


# --------------------------------------------------------------------------
# Outputs: audit.json, fields_to_use, the summary


@pytest.fixture
def small_result(base):
    frame = base.assign(good=driver(base), bad=noise(base))
    return run_audit(frame, {"good": "categorical", "bad": "categorical"})


def test_audit_json_round_trips_and_holds_no_nan(small_result, tmp_path):
    path = small_result.save(tmp_path / "out" / "audit.json")
    text = path.read_text()
    assert "NaN" not in text
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    again = audit.read_audit(path)
    assert again == audit.AuditResult.read(path)
    assert again.to_json_dict() == small_result.to_json_dict()
    data = json.loads(text)
    assert data["target"]["target"] == "won"
    assert set(data["fields"][0]) >= {"fill", "flags", "decision", "decision_reason"}


def test_read_audit_reports_missing_file_and_wrong_version(tmp_path):
    with pytest.raises(DataError, match="run notebook 01"):
        audit.read_audit(tmp_path / "audit.json")
    (tmp_path / "audit.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(DataError, match="schema_version 99"):
        audit.read_audit(tmp_path / "audit.json")


def test_fields_to_use_honours_config_overrides(small_result):
    assert audit.fields_to_use(small_result) == ["good"]
    as_dict = small_result.to_json_dict()
    assert audit.fields_to_use(as_dict) == ["good"]
    config = make_config(
        {"good": "categorical", "bad": "categorical"},
        decisions={"good": "exclude", "bad": "use"},
    )
    assert audit.fields_to_use(small_result, config) == ["bad"]
    assert audit.fields_to_use(as_dict, make_table(None, config)) == ["bad"]
    assert audit.fields_to_use(as_dict, {"bad": "use"}) == ["good", "bad"]


def test_fields_to_use_leaves_out_needs_review_until_overridden(base):
    frame = base.assign(echo=echo(base))
    result = run_audit(frame, {"echo": "categorical"})
    assert audit.fields_to_use(result) == []
    assert audit.fields_to_use(result, {"echo": "use"}) == ["echo"]


def test_summary_escapes_values_and_names_decisions(base):
    frame = base.assign(good=driver(base))
    config = make_config({"good": "categorical"})
    config = config.model_copy(
        update={
            "fields": {
                "good": config.fields["good"].model_copy(
                    update={"label": "<script>*bold*</script>"}
                )
            }
        }
    )
    table = make_table(frame, config)
    result = audit.audit_table(table, config=config, quarter=REVIEW_Q)
    text = result.summary_markdown()
    assert "<script>" not in text
    assert "&lt;script&gt;\\*bold\\*" in text
    assert "Fields to trust (1)" in text
    assert "Point of optimization: closed-won" in text


def test_field_frame_has_one_row_per_field(small_result):
    table = small_result.field_frame()
    assert list(table["Field"]) == ["good", "bad"]
    assert list(table["Decision"]) == ["use", "exclude"]
    fill = small_result.fill_frame()
    assert list(fill.index) == ["good", "bad"]
    assert list(fill.columns) == sorted(fill.columns)


# --------------------------------------------------------------------------
# The planted truth of the demo data


@pytest.fixture(scope="module")
def demo_audits(tmp_path_factory):
    from icp_lib.data import load_table, select_segment
    from icp_lib.demo import write_demo

    folder = tmp_path_factory.mktemp("demo")
    write_demo(folder, seed=7)
    config = load_config("params/demo.yaml").model_copy(
        update={"data_dir": str(folder)}
    )
    table = load_table(config)
    return {
        seg.name: audit.audit_table(
            select_segment(table, seg), config=config, segment=seg.name
        )
        for seg in config.segments
    }


@pytest.mark.slow
@pytest.mark.parametrize("segment", ["b2b_new", "b2b_expansion", "b2c"])
def test_demo_audit_finds_the_planted_truth(demo_audits, segment):
    from icp_lib.demo import TRUTH

    result = demo_audits[segment]
    assert result.target.target == "won"
    kept = audit.fields_to_use(result)
    for name in TRUTH.drivers:
        assert name in kept, result.field(name).decision_reason
    for name in TRUTH.late_fields:
        assert "filled_late" in flags_of(result, name)
        assert result.field(name).decision == "exclude"
    for name in TRUTH.sparse_fields:
        assert "sparse" in flags_of(result, name)
        assert result.field(name).decision == "exclude"
        # expected: the generator's documented fill share of accounts
        assert result.field(name).fill["overall"] == pytest.approx(
            TRUTH.sparse_fill, abs=0.04
        )


# --------------------------------------------------------------------------
# Charts


@pytest.fixture
def axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_fill_heatmap_shows_one_cell_per_field_and_quarter(small_result, axes):
    from icp_lib._plots_audit import plot_fill_heatmap

    ax = plot_fill_heatmap(small_result, ax=axes)
    fill = small_result.fill_frame()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["good", "bad"]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(fill.columns)
    # expected: the annotations are the fill rates in percent
    first = round(100 * fill.iloc[0, 0])
    assert ax.texts[0].get_text() == f"{first:.0f}"


def test_fill_by_outcome_draws_a_bar_per_field_and_outcome(small_result, axes):
    from icp_lib._plots_audit import plot_fill_by_outcome

    ax = plot_fill_by_outcome(small_result, ax=axes)
    assert len(ax.patches) == 2 * 3
    widths = [p.get_width() for p in ax.patches[:2]]
    won_fill = [100 * f.fill["won"] for f in small_result.fields]
    assert widths == pytest.approx(won_fill)


def test_conversion_by_fill_plots_rates_with_intervals(small_result, axes):
    from icp_lib._plots_audit import plot_conversion_by_fill

    ax = plot_conversion_by_fill(small_result, ax=axes)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["good", "bad"]
    xs = ax.lines[0].get_xdata()
    assert xs[0] == pytest.approx(
        100 * small_result.fields[0].conversion["filled"].rate
    )


def test_conversion_by_fill_draws_a_field_filled_only_on_won_records(axes):
    from icp_lib._plots_audit import plot_conversion_by_fill

    frame = make_frame(seed=5)
    before = frame["quarter"] < REVIEW_Q
    first_won = frame.index[frame["won"].eq(1) & before][:10]
    only_won = pd.Series(None, index=frame.index, dtype="object")
    only_won[first_won] = "x"
    result = run_audit(frame.assign(seg=only_won), {"seg": "categorical"})
    # 10 of 10 filled records won: the Wilson upper end rounds a hair below 1
    ax = plot_conversion_by_fill(result, ax=axes)
    assert ax.lines[0].get_xdata()[0] == pytest.approx(100)


def test_fill_heatmap_without_dates_says_so(axes):
    frame = make_frame(n=300, seed=21).assign(record_date=pd.NaT, quarter=pd.NA)
    frame = frame.assign(record_date=frame["record_date"].astype("datetime64[ns]"))
    result = run_audit(frame, {}, quarter=None)
    from icp_lib._plots_audit import plot_fill_heatmap

    ax = plot_fill_heatmap(result, ax=axes)
    assert "No dated records" in ax.texts[0].get_text()


# --------------------------------------------------------------------------
# Notebook 01


@pytest.mark.slow
def test_notebook_01_runs_on_demo_data_and_writes_audit_json(tmp_path):
    import papermill
    import yaml

    from icp_lib.demo import write_demo

    repo = Path(__file__).resolve().parents[1]
    write_demo(tmp_path / "demo", seed=3, n_accounts=1200)
    raw = yaml.safe_load((repo / "params" / "demo.yaml").read_text())
    config_path = tmp_path / "demo.yaml"
    config_path.write_text(
        yaml.safe_dump(raw | {"data_dir": str(tmp_path / "demo")}, sort_keys=False)
    )
    out = tmp_path / "out" / "b2b_new"

    papermill.execute_notebook(
        str(repo / "notebooks" / "01_data_audit.ipynb"),
        str(tmp_path / "01.ipynb"),
        parameters={
            "config_path": str(config_path),
            "segment": "b2b_new",
            "quarter": "",
            "output_dir": str(out),
        },
        kernel_name="python3",
        cwd=str(repo),
        progress_bar=False,
    )
    result = audit.read_audit(out / "audit.json")
    assert result.segment == "b2b_new"
    assert result.target.target in audit.TARGETS
    assert [f.name for f in result.fields] == list(raw["fields"])


def test_numeric_field_with_one_dominant_value_is_still_tested(base):
    # like "days since last contact": 999 (never) on most records
    rng = np.random.default_rng(23)
    contacted = rng.random(len(base)) < np.where(base["won"] == 1, 0.3, 0.05)
    days = np.where(contacted, rng.integers(0, 28, len(base)), 999).astype(float)
    result = run_audit(base.assign(pdays=days), {"pdays": "numeric"})
    item = result.field("pdays")
    assert item.value_test.defined
    assert item.decision == "use"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<b>", "&lt;b&gt;"),
        ("$1M-$10M", "\\$1M-\\$10M"),  # no accidental math in the report
        ("a_b *c*", "a\\_b \\*c\\*"),
        ("[link](x)", "\\[link\\](x)"),
    ],
)
def test_escape_markdown_neutralizes_markup(raw, expected):
    assert audit.escape_markdown(raw) == expected


def test_value_test_needs_enough_records_per_group():
    frame = make_frame(n=16, seed=1)  # about 12 closed records: one bin only
    frame = frame.assign(num=np.random.default_rng(0).normal(size=16))
    result = run_audit(frame, {"num": "numeric"})
    item = result.field("num")
    assert item.conversion["all"].n < 2 * audit.MIN_GROUP
    assert not item.value_test.defined
    assert item.decision == "exclude"
