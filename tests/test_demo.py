"""Tests of the demo data: determinism, the planted truth, messiness, docs.

The planted effects are checked with plain pandas and statsmodels on the
written CSV files, never through the generator's own internals; the
expected values come from ``icp_lib.demo.TRUTH``.
"""

import inspect
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
import yaml
from pydantic import BaseModel
from sklearn.metrics import roc_auc_score

from icp_lib import config as config_module
from icp_lib._clean import SENIORITY_LEVELS, rank_seniority
from icp_lib.config import load_config
from icp_lib.data import load_table, select_segment
from icp_lib.demo import (
    MARKER,
    TITLES,
    TRUTH,
    _expected_auc,
    salesforce_id18,
    title_seniority,
    true_auc,
    write_demo,
)
from icp_lib.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("accounts", "contacts", "opportunities", "field_history", "feedback")
BANDS = tuple(TRUTH.effects["employees"])  # in order, smallest first
CLOSED = ("Closed Won", "Closed Lost")


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _title_level(title: str) -> str:
    """An independent keyword rule for the demo's job titles."""
    if title.startswith("Chief"):
        return "C-level"
    if title.startswith(("VP", "Vice President")):
        return "VP"
    if "Director" in title:
        return "Director"
    return "Manager" if "Manager" in title else "Individual contributor"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, pd.DataFrame]:
    files = write_demo(tmp_path_factory.mktemp("demo") / "data")
    return {name: _read(getattr(files, name)) for name in TABLES}


def _account_table(demo: dict[str, pd.DataFrame]) -> pd.DataFrame:
    accounts = demo["accounts"].drop_duplicates()
    levels = list(TRUTH.effects["seniority"])
    contacts = demo["contacts"].assign(
        key=lambda d: d["Account ID"].str[:15],
        rank=lambda d: d["Title"].map(_title_level).map(levels.index),
    )
    top = contacts.groupby("key")["rank"].min().map(lambda r: levels[r])
    canonical = {name.casefold(): name for name in TRUTH.effects["industry"]}
    industry = accounts["Industry"].str.split().str.join(" ").str.casefold()
    techs = accounts["Tech Stack"].str.split(";")
    return accounts.assign(
        key=accounts["Account ID"].str[:15],
        industry=industry.map(canonical),
        band=accounts["Employees"].map({b: i for i, b in enumerate(BANDS)}),
        salesforce=techs.map(lambda v: "Salesforce" in [t.strip() for t in v]),
        region=accounts["Billing Region"],
    ).assign(seniority=lambda d: d["key"].map(top))


@pytest.fixture(scope="module")
def deals(demo) -> pd.DataFrame:
    """One row per opportunity with its account's attributes (plain pandas)."""
    opps = demo["opportunities"].drop_duplicates("Opportunity ID")
    opps = opps.assign(key=opps["Account ID"].str[:15])
    frame = opps.merge(_account_table(demo), on="key", how="left", validate="m:1")
    created = pd.to_datetime(frame["Created Date"])
    expansion = np.where(frame["Type"] == "Expansion", "b2b_expansion", "b2b_new")
    return frame.assign(
        quarter=created.dt.to_period("Q").astype(str),
        closed=frame["Stage"].isin(CLOSED),
        won=(frame["Stage"] == "Closed Won").astype(int),
        segment=np.where(frame["Business Model"] == "B2C", "b2c", expansion),
    )


@pytest.fixture(scope="module")
def closed(deals) -> pd.DataFrame:
    return deals[deals["closed"]]


# --- writing ---------------------------------------------------------------
def test_write_demo_gives_identical_bytes_for_the_same_seed(tmp_path):
    first = write_demo(tmp_path / "a", seed=3, n_accounts=300)
    second = write_demo(tmp_path / "b", seed=3, n_accounts=300)
    other = write_demo(tmp_path / "c", seed=4, n_accounts=300)
    for name in TABLES:
        same = getattr(first, name).read_bytes() == getattr(second, name).read_bytes()
        assert same, name
    assert first.opportunities.read_bytes() != other.opportunities.read_bytes()


def test_write_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("client data", encoding="utf-8")
    with pytest.raises(DataError, match="not written by write_demo"):
        write_demo(tmp_path, n_accounts=200)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_write_demo_refuses_a_file_path(tmp_path):
    target = tmp_path / "demo.csv"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="is a file"):
        write_demo(target, n_accounts=200)


def test_write_demo_replaces_its_own_folder_and_leaves_no_temp_files(tmp_path):
    write_demo(tmp_path / "demo", seed=1, n_accounts=200)
    files = write_demo(tmp_path / "demo", seed=2, n_accounts=200)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
    assert (files.folder / MARKER).is_file()
    assert '"seed": 2' in (files.folder / MARKER).read_text(encoding="utf-8")


def test_write_demo_rejects_too_few_accounts(tmp_path):
    with pytest.raises(DataError, match="n_accounts must be at least"):
        write_demo(tmp_path / "demo", n_accounts=5)


# --- ids -------------------------------------------------------------------
def test_salesforce_id18_matches_the_published_example():
    # the 15/18-character pair printed in Salesforce's own documentation
    assert salesforce_id18("0015000000VALDt") == "0015000000VALDtAAP"


def test_short_account_ids_extend_to_ids_of_the_accounts_file(demo):
    ids = demo["opportunities"]["Account ID"]
    short = ids[ids.str.len() == 15]
    known = set(demo["accounts"]["Account ID"])
    assert 0.15 < len(short) / len(ids) < 0.35
    assert {salesforce_id18(i) for i in short} <= known


# --- the planted truth -----------------------------------------------------
def test_overall_conversion_of_closed_deals_is_realistic(closed):
    assert 0.20 <= closed["won"].mean() <= 0.35


def test_true_effects_are_recovered_by_a_logit_on_the_written_data(closed):
    # expected coefficients: TRUTH.effects (differences to each reference
    # level); a plain statsmodels logit on the CSV files must land within
    # 3.5 standard errors of each
    data = closed.dropna(subset=["industry", "band", "seniority"]).assign(
        drift=lambda d: (
            (d["region"] == TRUTH.drift_region) & (d["quarter"] == TRUTH.drift_quarter)
        )
    )
    fit = smf.logit(
        "won ~ C(industry, Treatment('Manufacturing')) + band + salesforce"
        " + C(seniority, Treatment('Manager')) + C(region, Treatment('EMEA'))"
        " + C(segment, Treatment('b2b_new')) + drift",
        data=data.assign(salesforce=data["salesforce"].astype(int)),
    ).fit(disp=0)
    expected = _expected_coefficients()
    z = (fit.params[list(expected)] - pd.Series(expected)) / fit.bse[list(expected)]
    assert z.abs().max() < 3.5, z.round(2).to_dict()


def _expected_coefficients() -> dict[str, float]:
    effects = TRUTH.effects
    names = {
        "industry": ("C(industry, Treatment('Manufacturing'))", "Manufacturing"),
        "seniority": ("C(seniority, Treatment('Manager'))", "Manager"),
        "region": ("C(region, Treatment('EMEA'))", "EMEA"),
    }
    expected = {
        "band": TRUTH.employees_step,
        "salesforce": effects["technologies"]["Salesforce"],
        "drift[T.True]": TRUTH.drift_effect,
    }
    for field, (term, ref) in names.items():
        for level, effect in effects[field].items():
            if level != ref:
                expected[f"{term}[T.{level}]"] = effect - effects[field][ref]
    return expected


@pytest.mark.parametrize("field", ["industry", "seniority", "region"])
def test_won_rate_by_level_follows_the_planted_order(closed, field):
    # a plain groupby: the level with the largest TRUTH effect converts
    # best, the one with the smallest converts worst (before the drift
    # quarter, which lowers APAC on purpose)
    stable = closed[closed["quarter"] != TRUTH.drift_quarter]
    rates = stable.groupby(field)["won"].mean()
    effects = pd.Series(dict(TRUTH.effects[field]))
    assert rates.idxmax() == effects.idxmax() == TRUTH.ideal[field]
    assert rates.idxmin() == effects.idxmin()
    assert rates.corr(effects[rates.index], method="spearman") > 0.8


def test_won_rate_rises_with_company_size(closed):
    # TRUTH.employees_step > 0: each employee range converts better
    rates = closed.groupby("band")["won"].mean()
    assert rates.corr(pd.Series(rates.index, index=rates.index), "spearman") > 0.9
    assert rates.iloc[-1] - rates.iloc[0] > 0.15


def test_salesforce_users_convert_better(closed):
    rates = closed.groupby("salesforce")["won"].mean()
    assert rates[True] - rates[False] > 0.1


@pytest.mark.parametrize("column", ["Lead Source", "Founded Year"])
def test_noise_fields_carry_no_signal(closed, column):
    # TRUTH.noise_fields are drawn independently of everything: a logit of
    # won on the field alone explains nothing (likelihood-ratio p > 0.01)
    values = closed[column].where(closed[column] != "", "missing")
    if column == "Founded Year":
        values = pd.to_numeric(values, errors="coerce")
        data = pd.DataFrame({"won": closed["won"], "x": values}).dropna()
        fit = smf.logit("won ~ x", data=data).fit(disp=0)
    else:
        data = pd.DataFrame({"won": closed["won"], "x": values})
        fit = smf.logit("won ~ C(x)", data=data).fit(disp=0)
    assert fit.llr_pvalue > 0.01


def test_annual_revenue_is_sparse_and_without_lift(demo, closed):
    accounts = demo["accounts"].drop_duplicates()
    filled = ~accounts["Annual Revenue"].isin(["", "--None--"])
    assert abs(filled.mean() - TRUTH.sparse_fill) < 0.015
    has = ~closed["Annual Revenue"].isin(["", "--None--"])
    rates = closed.groupby(has)["won"].mean()
    assert abs(rates[True] - rates[False]) < 0.05


def test_budget_confirmed_is_filled_late_and_mostly_on_won_deals(demo, deals):
    history = demo["field_history"]
    budget = history[history["Field"] == "Budget Confirmed"]
    late = budget["Stage At Change"].isin(["Negotiation", "Closed Won"])
    known = budget["Stage At Change"] != ""
    assert late[known].mean() > 0.8

    dates = deals.set_index("Opportunity ID")[["Created Date", "Close Date"]]
    when = budget.join(dates, on="Opportunity ID")
    changed = pd.to_datetime(when["Changed At"]).dt.normalize()
    assert (changed >= pd.to_datetime(when["Created Date"])).all()
    lag = changed[late] - pd.to_datetime(when["Created Date"])[late]
    assert lag.median() > pd.Timedelta(days=20)

    fill = (
        deals[deals["closed"]]
        .groupby("won")["Budget Confirmed"]
        .apply(lambda s: (s != "").mean())
    )
    assert fill[1] > 3 * fill[0]


def test_lead_source_history_shows_it_set_at_creation(demo):
    history = demo["field_history"]
    source = history[history["Field"] == "Lead Source"]
    known = source["Stage At Change"] != ""
    assert (source.loc[known, "Stage At Change"] == "Prospecting").all()


def test_apac_share_jumps_and_its_conversion_drops_in_the_drift_quarter(deals):
    # TRUTH.drift_share_factor (2.5x share) and TRUTH.drift_effect (< 0)
    is_q = deals["quarter"] == TRUTH.drift_quarter
    before = deals["quarter"].between("2025Q3", "2026Q2")
    apac = deals["region"] == TRUTH.drift_region
    factor = apac[is_q].mean() / apac[before].mean()
    assert 2.0 < factor < 3.0

    closed_apac = deals[deals["closed"] & apac]
    rates = closed_apac.groupby(closed_apac["quarter"] == TRUTH.drift_quarter)["won"]
    assert rates.mean()[False] - rates.mean()[True] > 0.08


def test_every_segment_has_50_wins_in_every_four_quarter_window(deals):
    wins = deals[deals["won"] == 1].groupby(["quarter", "segment"]).size()
    per_window = wins.unstack("segment").sort_index().rolling(4).sum().dropna()
    assert len(per_window) == 8  # 11 quarters, 2024Q1..2026Q3
    assert per_window.min().min() >= 50


def test_recent_deals_are_more_often_open(deals):
    open_share = (~deals["closed"]).groupby(deals["quarter"]).mean()
    assert open_share["2026Q3"] > 0.3
    assert open_share["2025Q3"] < 0.01
    assert set(deals.loc[~deals["closed"], "Stage"]) <= {
        "Prospecting",
        "Qualification",
        "Proposal",
        "Negotiation",
    }


def test_feedback_is_worse_on_poor_fit_deals_and_lately(demo, deals):
    feedback = demo["feedback"].merge(
        deals[["Opportunity ID", "industry"]], on="Opportunity ID"
    )
    bad = feedback["Verdict"] == "bad"
    by_industry = bad.groupby(feedback["industry"]).mean()
    assert by_industry["Education"] > by_industry["Software"] + 0.1

    month = feedback["Date"].str.slice(0, 7)
    by_month = bad.groupby(month).mean()
    recent = by_month[list(TRUTH.feedback_trend)]
    assert recent.is_monotonic_increasing
    assert recent.iloc[-1] > by_month.drop(recent.index).mean() + 0.15


def test_true_auc_is_informative_but_not_perfect():
    assert 0.70 <= TRUTH.achievable_auc <= 0.80
    assert true_auc(n_accounts=3000) == pytest.approx(TRUTH.achievable_auc, abs=0.02)


def test_expected_auc_agrees_with_a_weighted_sklearn_auc():
    # each record counts as a win with weight p and a loss with weight 1 - p;
    # sklearn's weighted AUC then includes self-pairs, negligible at this size
    p = np.random.default_rng(0).choice([0.1, 0.2, 0.35, 0.6], size=4000)
    weighted = roc_auc_score(
        np.r_[np.ones(len(p)), np.zeros(len(p))],
        np.r_[p, p],
        sample_weight=np.r_[p, 1 - p],
    )
    assert _expected_auc(p) == pytest.approx(weighted, abs=2e-3)


# --- messiness -------------------------------------------------------------
def test_export_holds_the_documented_messiness(demo):
    opps, accounts = demo["opportunities"], demo["accounts"]
    amounts = opps["Amount"]
    assert amounts.str.startswith("$").any() and amounts.str.startswith("USD ").any()
    assert opps.duplicated().sum() > 20 and accounts.duplicated().sum() > 5

    lines = opps.drop_duplicates().groupby("Opportunity ID")
    repeated = lines.filter(lambda g: len(g) > 1).groupby("Opportunity ID")
    assert repeated.ngroups > 100
    assert (repeated["Amount"].nunique() == 1).all()
    assert (repeated["Product"].nunique() == repeated.size()).all()

    industry = accounts["Industry"]
    assert industry.isin(["Select", "--None--", "unknown"]).any()
    assert (industry.str.split().str.join(" ").str.casefold() != industry).any()
    assert (industry != industry.str.strip()).any()


# --- agreement with the data layer ----------------------------------------
def test_demo_titles_rank_the_same_in_the_data_layer():
    assert tuple(TRUTH.effects["seniority"]) == SENIORITY_LEVELS
    for level, titles in TITLES.items():
        for title, _ in titles:
            assert rank_seniority(title) == title_seniority(title) == level


def test_load_table_reads_the_demo_config_on_demo_data(tmp_path):
    files = write_demo(tmp_path / "demo", n_accounts=400)
    config = load_config(ROOT / "params" / "demo.yaml")
    config = config.model_copy(update={"data_dir": str(files.folder)})
    table = load_table(config)
    opps = _read(files.opportunities)
    assert len(table.frame) == opps["Opportunity ID"].nunique()
    assert table.frame["industry"].notna().mean() > 0.9
    assert set(table.frame["seniority"].dropna()) == set(TRUTH.effects["seniority"])
    for segment in config.segments:
        assert len(select_segment(table, segment).frame) > 0


# --- the config docs -------------------------------------------------------
def test_demo_config_loads():
    config = load_config(ROOT / "params" / "demo.yaml")
    assert config.demo and config.data_dir == "data/demo"
    assert [s.name for s in config.segments] == ["b2b_new", "b2b_expansion", "b2c"]
    assert not any(f.known_late for f in config.fields.values())
    assert set(TRUTH.drivers) <= set(config.fields)


def _config_models() -> list[type[BaseModel]]:
    return [
        obj
        for _, obj in inspect.getmembers(config_module, inspect.isclass)
        if issubclass(obj, BaseModel) and obj.__module__ == config_module.__name__
    ]


def test_params_readme_documents_every_config_key():
    readme = (ROOT / "params" / "README.md").read_text(encoding="utf-8")
    models = _config_models()
    assert len(models) >= 10
    missing = [
        f"{model.__name__}.{name}"
        for model in models
        for name in model.model_fields
        if f"`{name}`" not in readme
    ]
    assert not missing, f"params/README.md lacks {missing}"


@pytest.mark.parametrize(
    "values",
    [
        config_module.FIELD_KINDS,
        config_module.SOURCE_FORMATS,
        config_module.UNITS,
        config_module.SOURCE_ROLES,
    ],
)
def test_params_readme_lists_every_allowed_value(values):
    readme = (ROOT / "params" / "README.md").read_text(encoding="utf-8")
    assert [v for v in values if f"`{v}`" not in readme] == []


def test_params_readme_yaml_snippets_parse():
    readme = (ROOT / "params" / "README.md").read_text(encoding="utf-8")
    snippets = re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
    assert len(snippets) >= 5
    for snippet in snippets:
        assert isinstance(yaml.safe_load(snippet), dict), snippet
