"""Demo data: a synthetic B2B CRM export with a known, planted truth.

:func:`write_demo` writes five CSV files that look like a messy Salesforce
export of a software vendor selling to companies:

``accounts.csv``
    One row per account: industry, employee range, billing region, tech
    stack, business model (B2B or B2C), annual revenue (rarely filled) and
    founded year.
``contacts.csv``
    People at the accounts with their job titles. The most senior title of
    an account is one of the drivers of conversion.
``opportunities.csv``
    Deals created from 2024-01-01 to 2026-09-30 with stage, dates, amount,
    type (New Business or Expansion), lead source and a "Budget Confirmed"
    flag. The export is taken at the end of 2026-09-30, so recent deals are
    more often still open.
``field_history.csv``
    When "Budget Confirmed" and "Lead Source" were filled, and the stage of
    the deal at that moment.
``feedback.csv``
    Sales reps' verdicts ("good" or "bad" fit) on recent deals.

How outcomes are drawn
----------------------
Every opportunity has a true probability of being won from a logistic
model::

    logit p = intercept + segment + industry + employees_step * band
              + salesforce * [Salesforce in tech stack] + seniority + region
              + drift * [APAC and created in 2026Q3]

where ``band`` is the position of the employee range (0 for "1-10" up to 7
for "10,001+") and ``seniority`` is the effect of the most senior contact's
title. Each deal is then won with probability ``p``. Lead source, founded
year and annual revenue are drawn independently of the outcome.

A planted fact should hold for the data as written, not just on average
over seeds. So the outcomes are redrawn (a few times at most, as a rule)
until every driver is clearly significant in every segment's training
windows, and the three fields without effect are redrawn until they show
no chance association there (see ``SIGNAL_MAX_P`` and ``NOISE_MIN_P``). The values and
the facts a correct analysis should find are in :data:`TRUTH`;
:func:`true_auc` computes the best AUC any score can reach on this data.

Messiness
---------
Amounts are currency text in several styles, picklists hold placeholders
("Select", "--None--", "unknown"), some rows are exact duplicates, some
opportunities are repeated once per product line with the same amount on
each line, account ids appear in both the 15- and the 18-character
Salesforce form, and industry names come in case and spacing variants.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
from scipy.special import chdtrc

from .errors import DataError

__all__ = [
    "DemoFiles",
    "DemoTruth",
    "TRUTH",
    "salesforce_id18",
    "title_seniority",
    "true_auc",
    "write_demo",
]

logger = logging.getLogger(__name__)

MARKER = ".icp-demo.json"
MIN_ACCOUNTS = 100
START = pd.Timestamp("2024-01-01")
SNAPSHOT = pd.Timestamp("2026-10-01")  # the export is taken at this instant
LAST_DAY = (SNAPSHOT - START).days  # day offsets run from 0 to LAST_DAY
DRIFT_START = (pd.Timestamp("2026-07-01") - START).days
STAGES = ("Prospecting", "Qualification", "Proposal", "Negotiation")
WON, LOST = "Closed Won", "Closed Lost"
PLACEHOLDERS = ("Select", "--None--", "unknown")

# --- the planted truth: shares of each level and log-odds effects ----------
INTERCEPT = -2.35
SEGMENT_EFFECTS = {"b2b_new": 0.0, "b2b_expansion": 0.45, "b2c": -0.1}
INDUSTRIES = {  # level: (share of accounts, log-odds effect)
    "Software": (0.22, 0.8),
    "Financial Services": (0.15, 0.45),
    "Healthcare": (0.14, 0.15),
    "Manufacturing": (0.16, 0.0),
    "Media": (0.09, -0.25),
    "Retail": (0.14, -0.55),
    "Education": (0.10, -0.8),
}
EMPLOYEE_BANDS = (
    "1-10",
    "11-50",
    "51-200",
    "201-500",
    "501-1,000",
    "1,001-5,000",
    "5,001-10,000",
    "10,001+",
)
EMPLOYEE_SHARES = (0.14, 0.2, 0.2, 0.14, 0.11, 0.11, 0.05, 0.05)
EMPLOYEES_STEP = 0.22
TECHNOLOGIES = {  # value: (share of accounts using it, log-odds effect)
    "Salesforce": (0.35, 0.9),
    "HubSpot": (0.3, 0.0),
    "Slack": (0.45, 0.0),
    "AWS": (0.4, 0.0),
    "Google Workspace": (0.35, 0.0),
    "Zendesk": (0.2, 0.0),
}
SENIORITY = {  # level of the most senior contact: (share, log-odds effect)
    "C-level": (0.12, 0.8),
    "VP": (0.2, 0.5),
    "Director": (0.25, 0.25),
    "Manager": (0.25, 0.0),
    "Individual contributor": (0.18, -0.45),
}
NO_CONTACT_SHARE = 0.05
TITLES = {  # seniority level: ((title, department), ...)
    "C-level": (
        ("Chief Revenue Officer", "Sales"),
        ("Chief Technology Officer", "IT"),
        ("Chief Financial Officer", "Finance"),
        ("Chief Marketing Officer", "Marketing"),
        ("Chief Executive Officer", "Executive"),
    ),
    "VP": (
        ("VP Sales", "Sales"),
        ("VP of Marketing", "Marketing"),
        ("Vice President, Operations", "Operations"),
        ("VP Engineering", "IT"),
    ),
    "Director": (
        ("Director of IT", "IT"),
        ("Sales Director", "Sales"),
        ("Director, Procurement", "Procurement"),
        ("Marketing Director", "Marketing"),
    ),
    "Manager": (
        ("IT Manager", "IT"),
        ("Sales Manager", "Sales"),
        ("Procurement Manager", "Procurement"),
        ("Marketing Manager", "Marketing"),
    ),
    "Individual contributor": (
        ("Sales Engineer", "Sales"),
        ("Systems Administrator", "IT"),
        ("Marketing Specialist", "Marketing"),
        ("Business Analyst", "Operations"),
        ("Software Engineer", "IT"),
    ),
}
REGIONS = {  # billing region: (share of accounts, log-odds effect)
    "NA": (0.4, 0.5),
    "EMEA": (0.3, 0.05),
    "APAC": (0.17, -0.15),
    "LATAM": (0.13, -0.55),
}
DRIFT_REGION, DRIFT_QUARTER = "APAC", "2026Q3"
DRIFT_SHARE_FACTOR = 2.5
DRIFT_EFFECT = -1.0
B2C_SHARE = 0.3
EXPANSION_SHARE = {"B2B": 0.35, "B2C": 0.2}
SPARSE_FILL = 0.08
REVENUE_BANDS = ("$0-$1M", "$1M-$10M", "$10M-$50M", "$50M-$100M", "$100M-$500M")
LEAD_SOURCES = ("Web", "Referral", "Partner", "Event", "Outbound", "Paid Search")
PRODUCTS = ("Core Platform", "Analytics Add-on", "Support Plus", "Integrations")
REPS = (
    "Avery Chen",
    "Jordan Patel",
    "Maria Lopez",
    "Sam Okafor",
    "Lena Fischer",
    "Kenji Watanabe",
    "Priya Nair",
    "Tom Brennan",
)
FEEDBACK_FROM = (pd.Timestamp("2025-10-01") - START).days
FEEDBACK_TREND = {"2026-07": 0.5, "2026-08": 1.0, "2026-09": 1.5}
BAD_REASONS = ("Too small", "Wrong industry", "No budget", "Not a decision maker")
GOOD_REASONS = ("Strong use case", "Right size", "Engaged buyer")
# training windows of the default review quarter (with and without the
# validation quarter) in which noise fields must show no signal
NOISE_WINDOWS = (("2025Q3", "2026Q2"), ("2025Q3", "2026Q1"), ("2024Q1", "2026Q3"))
NOISE_MIN_P = 0.2
# the same windows without the whole history: where drivers must show
SIGNAL_WINDOWS = NOISE_WINDOWS[:2]
SIGNAL_MAX_P = 0.005
REDRAW_TRIES = 60


def _frozen(mapping: Mapping) -> MappingProxyType:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class DemoTruth:
    """The truth planted in the demo data, for tests and for the docs.

    Attributes
    ----------
    seed, n_accounts : int
        Defaults of :func:`write_demo`.
    intercept : float
        Log-odds of a b2b_new deal whose every driver sits at its zero level.
    segment_effects : Mapping[str, float]
        Log-odds added per segment (b2b_new, b2b_expansion, b2c).
    effects : Mapping[str, Mapping[str, float]]
        For each driver (canonical field name), the log-odds of each value.
        ``employees`` gives ``employees_step`` per range step; for
        ``technologies`` each listed value adds its effect when present.
    employees_step : float
        Log-odds per step up the employee ranges (a monotone effect).
    ideal : Mapping[str, str]
        The value of each driver with the highest effect.
    late_fields, sparse_fields, noise_fields : tuple of str
        Fields filled after the outcome is nearly known, rarely filled,
        and without any effect.
    sparse_fill : float
        Share of accounts with ``annual_revenue`` filled.
    drift_region, drift_quarter : str
        Where and when the population drifts.
    drift_share_factor, drift_effect : float
        How much the drift region's share of records grows in the drift
        quarter, and the log-odds added to its deals then.
    feedback_trend : Mapping[str, float]
        Log-odds added to the chance of a "bad" verdict by feedback month.
    achievable_auc : float
        Expected AUC of the true probabilities over all closed-or-open
        deals of a large sample (:func:`true_auc`, 20,000 accounts).
    achievable_auc_by_segment : Mapping[str, float]
        The same within each segment, the best a per-segment score can do.
    """

    seed: int
    n_accounts: int
    intercept: float
    segment_effects: Mapping[str, float]
    effects: Mapping[str, Mapping[str, float]]
    employees_step: float
    ideal: Mapping[str, str]
    late_fields: tuple[str, ...]
    sparse_fields: tuple[str, ...]
    noise_fields: tuple[str, ...]
    sparse_fill: float
    drift_region: str
    drift_quarter: str
    drift_share_factor: float
    drift_effect: float
    feedback_trend: Mapping[str, float]
    achievable_auc: float
    achievable_auc_by_segment: Mapping[str, float]

    @property
    def drivers(self) -> tuple[str, ...]:
        """Canonical names of the fields that drive conversion."""
        return tuple(self.effects)


def _effects_of(levels: Mapping[str, tuple[float, float]]) -> MappingProxyType:
    return _frozen({name: effect for name, (_, effect) in levels.items()})


TRUTH = DemoTruth(
    seed=7,
    n_accounts=3000,
    intercept=INTERCEPT,
    segment_effects=_frozen(SEGMENT_EFFECTS),
    effects=_frozen(
        {
            "industry": _effects_of(INDUSTRIES),
            "employees": _frozen(
                {b: EMPLOYEES_STEP * i for i, b in enumerate(EMPLOYEE_BANDS)}
            ),
            "technologies": _frozen({"Salesforce": TECHNOLOGIES["Salesforce"][1]}),
            "seniority": _effects_of(SENIORITY),
            "region": _effects_of(REGIONS),
        }
    ),
    employees_step=EMPLOYEES_STEP,
    ideal=_frozen(
        {
            "industry": "Software",
            "employees": "10,001+",
            "technologies": "Salesforce",
            "seniority": "C-level",
            "region": "NA",
        }
    ),
    late_fields=("budget_confirmed",),
    sparse_fields=("annual_revenue",),
    noise_fields=("lead_source", "founded_year"),
    sparse_fill=SPARSE_FILL,
    drift_region=DRIFT_REGION,
    drift_quarter=DRIFT_QUARTER,
    drift_share_factor=DRIFT_SHARE_FACTOR,
    drift_effect=DRIFT_EFFECT,
    feedback_trend=_frozen(FEEDBACK_TREND),
    # from true_auc() and true_auc(segment=...) with the defaults
    achievable_auc=0.748,
    achievable_auc_by_segment=_frozen(
        {"b2b_new": 0.743, "b2b_expansion": 0.742, "b2c": 0.747}
    ),
)


@dataclass(frozen=True)
class DemoFiles:
    """Paths of the files written by :func:`write_demo`."""

    folder: Path
    accounts: Path
    contacts: Path
    opportunities: Path
    field_history: Path
    feedback: Path


# --- Salesforce ids --------------------------------------------------------
_BASE62 = np.array(
    list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
)
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def salesforce_id18(id15: str) -> str:
    """Return the 18-character form of a 15-character Salesforce id.

    Each block of five characters adds one suffix character that encodes
    which of its characters are upper case, so the id survives tools that
    ignore case.

    Examples
    --------
    >>> salesforce_id18("0015000000VALDt")
    '0015000000VALDtAAP'
    """
    suffix = ""
    for start in (0, 5, 10):
        block = id15[start : start + 5]
        bits = sum(1 << i for i, ch in enumerate(block) if "A" <= ch <= "Z")
        suffix += _SUFFIX[bits]
    return id15 + suffix


def _make_ids(rng: np.random.Generator, prefix: str, n: int) -> np.ndarray:
    """Draw ``n`` distinct 15-character ids starting with ``prefix``."""
    width = 15 - len(prefix)
    while True:
        codes = rng.integers(0, 62, size=(n, width))
        chars = np.concatenate([np.tile(list(prefix), (n, 1)), _BASE62[codes]], axis=1)
        ids = chars.view(f"<U{chars.shape[1]}").ravel().astype(object)
        if len(set(ids)) == n:
            return ids


def _to_id18(ids15: np.ndarray) -> np.ndarray:
    """Vectorized :func:`salesforce_id18`."""
    chars = np.asarray(ids15, dtype="<U15")[:, None].view("<U1")
    upper = ((chars >= "A") & (chars <= "Z")).reshape(-1, 3, 5)
    bits = (upper * (1 << np.arange(5))).sum(axis=2)
    suffix = np.array(list(_SUFFIX))[bits]
    whole = np.concatenate([chars, suffix], axis=1)
    return whole.view("<U18").ravel().astype(object)


# --- seniority from titles -------------------------------------------------
def title_seniority(title: str) -> str | None:
    """Return the seniority level of a demo job title (None if unknown).

    This is the rule the generator plants the effect through; the data
    layer derives seniority with its own, more general rule.
    """
    for level, titles in TITLES.items():
        if any(title == t for t, _ in titles):
            return level
    return None


# --- accounts --------------------------------------------------------------
def _draw_levels(rng, levels: Mapping[str, tuple[float, float]], n: int):
    names = list(levels)
    shares = np.array([levels[k][0] for k in names])
    idx = rng.choice(len(names), size=n, p=shares / shares.sum())
    return np.array(names, dtype=object)[idx]


def _draw_techs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    names = list(TECHNOLOGIES)
    shares = np.array([TECHNOLOGIES[k][0] for k in names])
    used = rng.random((n, len(names))) < shares
    stacks = np.array(
        [";".join(np.array(names)[row]) for row in used],
        dtype=object,
    )
    return stacks, used[:, names.index("Salesforce")]


def _draw_accounts(rng: np.random.Generator, n: int) -> pd.DataFrame:
    ids15 = _make_ids(rng, "0015g", n)
    stacks, has_sf = _draw_techs(rng, n)
    frame = pd.DataFrame(
        {
            "id15": ids15,
            "id18": _to_id18(ids15),
            "name": _company_names(rng, n),
            "industry": _draw_levels(rng, INDUSTRIES, n),
            "band": rng.choice(len(EMPLOYEE_BANDS), size=n, p=EMPLOYEE_SHARES),
            "region": _draw_levels(rng, REGIONS, n),
            "stack": stacks,
            "salesforce": has_sf,
            "model": np.where(rng.random(n) < B2C_SHARE, "B2C", "B2B"),
            "seniority": _draw_levels(rng, SENIORITY, n),
        }
    )
    no_contact = rng.random(n) < NO_CONTACT_SHARE
    return frame.assign(seniority=frame["seniority"].where(~no_contact, None))


def _company_names(rng: np.random.Generator, n: int) -> np.ndarray:
    first = np.array(
        ["Blue", "North", "Apex", "Silver", "Harbor", "Summit", "Bright", "Iron"]
        + ["Cedar", "Nova", "Quartz", "Red", "Pioneer", "Vector", "Atlas", "Lumen"],
        dtype=object,
    )
    second = np.array(
        ["Labs", "Systems", "Group", "Health", "Works", "Partners", "Logistics"]
        + ["Analytics", "Foods", "Media", "Capital", "Learning", "Retail"],
        dtype=object,
    )
    suffix = np.array(["Inc.", "LLC", "Ltd", "GmbH", "Co."], dtype=object)
    parts = [rng.choice(a, size=n) for a in (first, second, suffix)]
    return parts[0] + " " + parts[1] + " " + parts[2]


def _account_logit(accounts: pd.DataFrame) -> np.ndarray:
    """Log-odds contributed by the account's drivers (no intercept)."""
    effects = TRUTH.effects
    seniority = accounts["seniority"].map(effects["seniority"]).fillna(0.0)
    return (
        accounts["industry"].map(effects["industry"]).to_numpy(float)
        + EMPLOYEES_STEP * accounts["band"].to_numpy(float)
        + effects["technologies"]["Salesforce"] * accounts["salesforce"].to_numpy()
        + seniority.to_numpy(float)
        + accounts["region"].map(effects["region"]).to_numpy(float)
    )


# --- contacts --------------------------------------------------------------
def _draw_contacts(rng: np.random.Generator, accounts: pd.DataFrame) -> pd.DataFrame:
    """Contacts whose most senior title matches the account's seniority."""
    levels = list(SENIORITY)
    top = accounts["seniority"].map({k: i for i, k in enumerate(levels)})
    has = top.notna().to_numpy()
    counts = np.where(has, 1 + np.minimum(rng.poisson(1.3, len(top)), 5), 0)
    owner = np.repeat(np.arange(len(top)), counts)
    first = np.r_[0, np.cumsum(counts)[:-1]][owner]
    is_top = np.arange(len(owner)) == first
    top_level = top.to_numpy()[owner].astype(float).astype(int)

    # other contacts are at the top contact's level or below it
    below = top_level + rng.integers(0, len(levels) - top_level)
    level_idx = np.where(is_top, top_level, below)
    titles, departments = _draw_titles(rng, np.array(levels)[level_idx])
    ids15 = _make_ids(rng, "0035g", len(owner))
    return pd.DataFrame(
        {
            "id18": _to_id18(ids15),
            "account": owner,
            "title": titles,
            "department": departments,
        }
    )


def _draw_titles(rng: np.random.Generator, levels: np.ndarray):
    titles = np.empty(len(levels), dtype=object)
    departments = np.empty(len(levels), dtype=object)
    for level, options in TITLES.items():
        rows = np.flatnonzero(levels == level)
        pick = rng.integers(0, len(options), size=len(rows))
        titles[rows] = [options[k][0] for k in pick]
        departments[rows] = [options[k][1] for k in pick]
    return titles, departments


# --- opportunities ---------------------------------------------------------
def _draw_created_days(rng: np.random.Generator, n: int) -> np.ndarray:
    """Creation days with volume growing by half over the period."""
    growth = 0.5
    u = rng.random(n) * (1 + growth / 2)
    x = (np.sqrt(1 + 2 * growth * u) - 1) / growth
    return np.minimum((x * LAST_DAY).astype(int), LAST_DAY - 1)


def _drift_extra(rng, accounts: pd.DataFrame, account: np.ndarray, day: np.ndarray):
    """Extra deals of the drift region in the drift quarter (share x2.5)."""
    in_region = (accounts["region"].to_numpy() == DRIFT_REGION)[account]
    before, during = day < DRIFT_START, day >= DRIFT_START
    share = min(0.9, DRIFT_SHARE_FACTOR * in_region[before].mean())
    n_now, n_region = during.sum(), (in_region & during).sum()
    n_extra = max(0, round((share * n_now - n_region) / (1 - share)))
    pool = np.flatnonzero(accounts["region"].to_numpy() == DRIFT_REGION)
    extra_account = rng.choice(pool, size=n_extra)
    extra_day = rng.integers(DRIFT_START, LAST_DAY, size=n_extra)
    return extra_account, extra_day


def _draw_deal_keys(rng: np.random.Generator, accounts: pd.DataFrame):
    counts = rng.poisson(3.4, size=len(accounts))
    account = np.repeat(np.arange(len(accounts)), counts)
    day = _draw_created_days(rng, len(account))
    extra_account, extra_day = _drift_extra(rng, accounts, account, day)
    account, day = np.r_[account, extra_account], np.r_[day, extra_day]
    order = np.lexsort((account, day))
    return account[order], day[order]


def _quarter_of(days: np.ndarray) -> np.ndarray:
    stamps = START + pd.to_timedelta(days, unit="D")
    return np.asarray(stamps.to_period("Q").astype(str), dtype=object)


def _segment_of(model: np.ndarray, deal_type: np.ndarray) -> np.ndarray:
    expansion = np.where(deal_type == "Expansion", "b2b_expansion", "b2b_new")
    return np.where(model == "B2C", "b2c", expansion)


def _draw_opportunities(rng: np.random.Generator, accounts: pd.DataFrame):
    account, day = _draw_deal_keys(rng, accounts)
    n = len(account)
    model = accounts["model"].to_numpy()[account]
    p_expansion = np.where(
        model == "B2C", EXPANSION_SHARE["B2C"], EXPANSION_SHARE["B2B"]
    )
    deal_type = np.where(rng.random(n) < p_expansion, "Expansion", "New Business")
    segment = _segment_of(model, deal_type)
    drifted = (accounts["region"].to_numpy()[account] == DRIFT_REGION) & (
        day >= DRIFT_START
    )
    logit = (
        INTERCEPT
        + pd.Series(segment).map(SEGMENT_EFFECTS).to_numpy(float)
        + _account_logit(accounts)[account]
        + DRIFT_EFFECT * drifted
    )
    p = 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(
        {
            "id18": _to_id18(_make_ids(rng, "0065g", n)),
            "account": account,
            "day": day,
            "quarter": _quarter_of(day),
            "deal_type": deal_type,
            "segment": segment,
            "p": p,
            "cycle": 5 + rng.gamma(2.0, 20.0, size=n),
        }
    )
    frame = frame.assign(won=_draw_wins(rng, frame, accounts))
    return _add_progress(rng, frame, accounts)


def _draw_wins(rng, frame: pd.DataFrame, accounts: pd.DataFrame) -> np.ndarray:
    """Outcomes drawn from ``p``, redrawn while a driver fails to show.

    A true but mild effect can hide by chance in a small segment. So that
    the demo's promise "every driver is kept" holds for the data as written,
    outcomes are redrawn until every driver shows (p < SIGNAL_MAX_P) in
    every segment's training windows. Salesforce must show ten times more
    strongly: a model tests the whole tech stack, one value at a time.
    """
    account = frame["account"].to_numpy()
    closed = (frame["day"] + frame["cycle"] < LAST_DAY).to_numpy()
    drivers = {"industry": 1, "band": 1, "salesforce": 0.1, "seniority": 1, "region": 1}
    labelings = [accounts[c].astype(str).to_numpy()[account] for c in drivers]
    limits = np.array(list(drivers.values())) * SIGNAL_MAX_P
    masks = _window_masks(frame, closed, SIGNAL_WINDOWS)

    def shortfall(won: np.ndarray) -> float:
        worst = [max(_p_values(labels, won, masks)) for labels in labelings]
        return float(np.max(np.array(worst) / limits))

    return _redraw(
        lambda: rng.random(len(frame)) < frame["p"].to_numpy(), shortfall, "outcomes"
    )


def _redraw(draw, shortfall, what: str):
    """Draw until ``shortfall`` is below 1; else keep the best of the tries.

    Small data sets may never reach the goal; they get the closest draw.
    """
    best, best_score = None, np.inf
    for attempt in range(1, REDRAW_TRIES + 1):
        values = draw()
        score = shortfall(values)
        if score < 1:
            logger.debug("%s drawn %s time(s)", what, attempt)
            return values
        if score < best_score:
            best, best_score = values, score
    logger.debug("%s: best of %s draws kept (%.3g)", what, REDRAW_TRIES, best_score)
    return best


def _add_progress(rng, frame: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    """Add the stage reached, dates, amount, lead source and owner."""
    n = len(frame)
    end = frame["day"] + frame["cycle"]
    closed = (end < LAST_DAY).to_numpy()
    elapsed = (LAST_DAY - frame["day"]) / frame["cycle"]
    open_stage = np.minimum((elapsed * 4).astype(int), 3).to_numpy()
    lost_stage = rng.choice(4, size=n, p=[0.25, 0.35, 0.25, 0.15])
    won = frame["won"].to_numpy()
    furthest = np.where(closed, np.where(won, 3, lost_stage), open_stage)
    outcome = np.where(closed, np.where(won, "won", "lost"), "open")
    stage = np.where(
        closed, np.where(won, WON, LOST), np.array(STAGES, dtype=object)[open_stage]
    )
    band = accounts["band"].to_numpy()[frame["account"]]
    amount = np.exp(8.6 + 0.3 * band + rng.normal(0, 0.7, n))
    amount *= np.where(frame["deal_type"] == "Expansion", 0.5, 1.0)
    return frame.assign(
        end=end,
        outcome=outcome,
        furthest=furthest,
        stage=stage,
        amount=np.round(amount, -2),
        owner=rng.choice(np.array(REPS, dtype=object), size=n),
    )


# --- noise fields ----------------------------------------------------------
def _draw_noise(rng: np.random.Generator, opps: pd.DataFrame, n_accounts: int):
    """Founded year and annual revenue per account, lead source per deal.

    All three are drawn independently of the outcome, but independent
    draws still show a chance association now and then (one test in twenty
    at the 5% level). So that the demo's promises (noise and the sparse
    field are dropped) hold for the data as written, each field is redrawn
    until it shows none (p > NOISE_MIN_P) in every segment's windows.
    """
    account = opps["account"].to_numpy()
    founded = _redraw_until_silent(
        lambda: _draw_years(rng, n_accounts),
        (lambda years: _year_labels(years)[account],),
        opps,
    )
    revenue = _redraw_until_silent(
        lambda: _draw_revenue(rng, n_accounts),
        (lambda values: values[account], lambda values: (values == "")[account]),
        opps,
    )
    source = _redraw_until_silent(
        lambda: _draw_sources(rng, len(opps)), (lambda values: values,), opps
    )
    return founded, revenue, source


def _draw_revenue(rng: np.random.Generator, n: int) -> np.ndarray:
    bands = rng.choice(np.array(REVENUE_BANDS, dtype=object), size=n)
    return np.where(rng.random(n) < SPARSE_FILL, bands, "")


def _draw_years(rng: np.random.Generator, n: int) -> np.ndarray:
    years = rng.integers(1950, 2023, size=n).astype(str).astype(object)
    return np.where(rng.random(n) < 0.08, "", years)


def _year_labels(years: np.ndarray) -> np.ndarray:
    """Quintile bins of the years, with missing as a bin of its own."""
    numbers = pd.to_numeric(pd.Series(years), errors="coerce")
    bins = pd.qcut(numbers, 5, labels=False, duplicates="drop")
    return bins.fillna(-1).astype(int).to_numpy()


def _draw_sources(rng: np.random.Generator, n: int) -> np.ndarray:
    source = rng.choice(np.array(LEAD_SOURCES, dtype=object), size=n)
    unset = rng.choice(np.array(PLACEHOLDERS[:2], dtype=object), size=n)
    return np.where(rng.random(n) < 0.04, unset, source)


def _redraw_until_silent(draw, labelings, opps: pd.DataFrame):
    """Draw values until no labeling of them is associated with winning."""
    won = (opps["outcome"] == "won").to_numpy()
    masks = _window_masks(opps, (opps["outcome"] != "open").to_numpy(), NOISE_WINDOWS)

    def shortfall(values) -> float:
        p_values = [min(_p_values(label(values), won, masks)) for label in labelings]
        return NOISE_MIN_P / max(min(p_values), 1e-300)

    return _redraw(draw, shortfall, "noise field")


def _window_masks(deals: pd.DataFrame, closed: np.ndarray, windows) -> list:
    """Closed deals of each segment in each window of quarters."""
    segment, quarter = deals["segment"].to_numpy(), deals["quarter"].to_numpy()
    return [
        closed & (segment == name) & (quarter >= first) & (quarter <= last)
        for name in SEGMENT_EFFECTS
        for first, last in windows
    ]


def _p_values(labels: np.ndarray, won: np.ndarray, masks: list) -> list[float]:
    """Chi-square p-values of labels against winning, one per mask."""
    codes, levels = pd.factorize(labels, use_na_sentinel=False)
    cells = codes * 2 + won.astype(int)
    p_values = []
    for mask in masks:
        table = np.bincount(cells[mask], minlength=2 * len(levels)).reshape(-1, 2)
        p_values.append(_chi_square_p(table[table.sum(axis=1) > 0]))
    return p_values


def _chi_square_p(table: np.ndarray) -> float:
    """P-value of Pearson's chi-square test of independence (no correction)."""
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = np.sum((table - expected) ** 2 / np.where(expected > 0, expected, 1))
    dof = (table.shape[0] - 1) * (table.shape[1] - 1)
    return float(chdtrc(dof, statistic)) if dof > 0 else 1.0


# --- the late field and the field history ----------------------------------
def _draw_budget(rng: np.random.Generator, opps: pd.DataFrame):
    """Budget Confirmed values and when they were filled.

    Deals that reached Negotiation are filled there (won deals sometimes
    only at closing); the few others are filled at an early stage.
    """
    n = len(opps)
    day, cycle = opps["day"].to_numpy(), opps["cycle"].to_numpy()
    outcome, furthest = opps["outcome"].to_numpy(), opps["furthest"].to_numpy()
    stop = np.minimum(opps["end"].to_numpy(), LAST_DAY)
    reached = furthest == 3
    by_outcome = pd.Series(outcome)

    fill = np.where(
        reached, by_outcome.map({"won": 0.9, "lost": 0.65, "open": 0.55}), 0.05
    )
    filled = rng.random(n) < fill
    negotiation = day + 0.75 * cycle
    late_day = negotiation + rng.random(n) * (stop - negotiation)
    at_close = (outcome == "won") & (rng.random(n) < 0.2)
    late_day = np.where(at_close, stop, late_day)
    late_stage = np.where(at_close, WON, "Negotiation")

    early_stop = np.minimum(day + cycle * (furthest + 1) / 4, stop)
    early_day = day + rng.random(n) * (early_stop - day)
    early_idx = np.minimum(((early_day - day) / cycle * 4).astype(int), furthest)
    early_stage = np.array(STAGES, dtype=object)[early_idx]

    yes = np.where(
        reached, by_outcome.map({"won": 0.92, "lost": 0.4, "open": 0.6}), 0.5
    )
    value = np.where(rng.random(n) < yes, "Yes", "No")
    changes = pd.DataFrame(
        {
            "id18": opps["id18"],
            "field": "Budget Confirmed",
            "day": np.where(reached, late_day, early_day),
            "stage": np.where(reached, late_stage, early_stage),
            "value": value,
        }
    )
    return np.where(filled, value, ""), changes[filled]


def _draw_history(rng: np.random.Generator, opps: pd.DataFrame, budget_changes):
    """Field history rows: lead source set at creation, budget confirmed later."""
    has_source = ~opps["lead_source"].isin(PLACEHOLDERS)
    source_changes = pd.DataFrame(
        {
            "id18": opps["id18"],
            "field": "Lead Source",
            "day": opps["day"] + rng.random(len(opps)) * 0.05,
            "stage": STAGES[0],
            "value": opps["lead_source"],
        }
    )[has_source]
    rows = pd.concat([source_changes, budget_changes], ignore_index=True)
    rows = rows.sort_values(["day", "id18"], kind="stable", ignore_index=True)
    unknown = rng.random(len(rows)) < 0.03
    return pd.DataFrame(
        {
            "Opportunity ID": rows["id18"],
            "Field": rows["field"],
            "Changed At": _format_times(rows["day"].to_numpy()),
            "Stage At Change": rows["stage"].where(~unknown, ""),
            "New Value": rows["value"],
        }
    )


def _format_times(days: np.ndarray) -> pd.Series:
    seconds = np.floor(days * 86400).astype("int64")
    stamps = START + pd.to_timedelta(seconds, unit="s")
    return pd.Series(stamps.strftime("%Y-%m-%d %H:%M:%S"))


def _format_dates(days: np.ndarray) -> pd.Series:
    stamps = START + pd.to_timedelta(np.floor(days).astype("int64"), unit="D")
    return pd.Series(stamps.strftime("%Y-%m-%d"))


# --- feedback --------------------------------------------------------------
def _draw_feedback(rng: np.random.Generator, opps: pd.DataFrame, fit: np.ndarray):
    """Reps' verdicts: more often bad on low-fit deals and lately."""
    n = len(opps)
    given = opps["day"].to_numpy() + 2 + rng.random(n) * 28
    chosen = (opps["day"].to_numpy() >= FEEDBACK_FROM) & (rng.random(n) < 0.35)
    keep = chosen & (given < LAST_DAY)
    month = _format_dates(given).str.slice(0, 7)
    trend = month.map(FEEDBACK_TREND).fillna(0.0).to_numpy(float)
    z_fit = (fit - fit.mean()) / fit.std()
    bad = rng.random(n) < 1 / (1 + np.exp(1.2 + 0.9 * z_fit - trend))
    reason = np.where(
        bad,
        rng.choice(np.array(BAD_REASONS, dtype=object), size=n),
        rng.choice(np.array(GOOD_REASONS, dtype=object), size=n),
    )
    frame = pd.DataFrame(
        {
            "Opportunity ID": opps["id18"],
            "Date": _format_dates(given),
            "Verdict": np.where(bad, "bad", "good"),
            "Reason": reason,
            "Rep": opps["owner"],
        }
    )[keep]
    return frame.sort_values(["Date", "Opportunity ID"], ignore_index=True)


# --- messy export ----------------------------------------------------------
def _messy_industry(rng: np.random.Generator, industry: pd.Series) -> pd.Series:
    """Case and spacing variants on 6% of rows, placeholders on 3%."""
    n = len(industry)
    variants = (
        industry.str.lower(),
        industry.str.upper(),
        industry + " ",
        industry.str.replace(" ", "  ", regex=False),
    )
    kind = rng.integers(0, len(variants), size=n)
    varied = industry.copy()
    for k, variant in enumerate(variants):
        varied = varied.where(kind != k, variant)
    u = rng.random(n)
    placeholder = pd.Series(rng.choice(np.array(PLACEHOLDERS, dtype=object), size=n))
    keep_placeholder = (u >= 0.06) & (u < 0.09)
    return industry.where(u >= 0.06, varied).where(~keep_placeholder, placeholder)


def _blank_some(rng, values: pd.Series, share: float, blanks=("",)) -> pd.Series:
    pick = pd.Series(rng.choice(np.array(blanks, dtype=object), size=len(values)))
    return values.where(rng.random(len(values)) >= share, pick)


def _format_accounts(rng: np.random.Generator, accounts: pd.DataFrame) -> pd.DataFrame:
    n = len(accounts)
    bands = pd.Series(np.array(EMPLOYEE_BANDS, dtype=object)[accounts["band"]])
    revenue = _blank_some(rng, accounts["revenue"], 0.1, ("--None--",))
    revenue = revenue.where(accounts["revenue"] == "", accounts["revenue"])
    spaced = accounts["stack"].str.replace(";", "; ", regex=False)
    stack = accounts["stack"].where(rng.random(n) >= 0.15, spaced)
    frame = pd.DataFrame(
        {
            "Account ID": accounts["id18"],
            "Account Name": accounts["name"],
            "Industry": _messy_industry(rng, accounts["industry"]),
            "Employees": _blank_some(rng, bands, 0.03, ("Select", "")),
            "Annual Revenue": revenue,
            "Billing Region": accounts["region"],
            "Tech Stack": stack,
            "Business Model": accounts["model"],
            "Founded Year": accounts["founded"],
        }
    )
    return _duplicate_some(rng, frame, 0.01)


def _duplicate_some(rng, frame: pd.DataFrame, share: float) -> pd.DataFrame:
    """Repeat a share of rows exactly, right after the original."""
    times = np.where(rng.random(len(frame)) < share, 2, 1)
    return frame.iloc[np.repeat(np.arange(len(frame)), times)].reset_index(drop=True)


def _format_contacts(rng, contacts: pd.DataFrame, accounts: pd.DataFrame):
    account = contacts["account"].to_numpy()
    short = rng.random(len(contacts)) < 0.2
    first = np.array(
        ["Alex", "Sam", "Dana", "Chris", "Robin", "Kim", "Lee"], dtype=object
    )
    last = np.array(
        ["Smith", "Garcia", "Kumar", "Novak", "Berg", "Ito", "Moss"], dtype=object
    )
    return pd.DataFrame(
        {
            "Contact ID": contacts["id18"],
            "Account ID": np.where(
                short,
                accounts["id15"].to_numpy()[account],
                accounts["id18"].to_numpy()[account],
            ),
            "First Name": rng.choice(first, size=len(contacts)),
            "Last Name": rng.choice(last, size=len(contacts)),
            "Title": contacts["title"],
            "Department": contacts["department"],
        }
    )


def _format_amounts(rng: np.random.Generator, amount: np.ndarray) -> np.ndarray:
    style = rng.choice(4, size=len(amount), p=[0.5, 0.2, 0.25, 0.05])
    styles = (
        lambda a: f"${a:,.2f}",
        lambda a: f"USD {a:.0f}",
        lambda a: f"{a:.0f}",
        lambda a: "",
    )
    return np.array(
        [styles[s](a) for s, a in zip(style, amount, strict=True)], dtype=object
    )


def _format_opportunities(rng, opps: pd.DataFrame, accounts, budget) -> pd.DataFrame:
    n = len(opps)
    account = opps["account"].to_numpy()
    short = rng.random(n) < 0.25
    frame = pd.DataFrame(
        {
            "Opportunity ID": opps["id18"],
            "Opportunity Name": accounts["name"].to_numpy()[account]
            + " - "
            + opps["deal_type"],
            "Account ID": np.where(
                short,
                accounts["id15"].to_numpy()[account],
                accounts["id18"].to_numpy()[account],
            ),
            "Type": opps["deal_type"],
            "Stage": opps["stage"],
            "Created Date": _format_dates(opps["day"].to_numpy()),
            "Close Date": _format_dates(opps["end"].to_numpy()),
            "Amount": _format_amounts(rng, opps["amount"].to_numpy()),
            "Lead Source": opps["lead_source"],
            "Budget Confirmed": budget,
            "Opportunity Owner": opps["owner"],
        }
    )
    return _duplicate_some(rng, _split_product_lines(rng, frame), 0.01)


def _split_product_lines(rng, frame: pd.DataFrame) -> pd.DataFrame:
    """One product per deal; 5% of deals repeated once per product line."""
    n = len(frame)
    lines = np.where(rng.random(n) < 0.05, rng.integers(2, 4, size=n), 1)
    products = rng.permuted(np.tile(np.arange(len(PRODUCTS)), (n, 1)), axis=1)
    row = np.repeat(np.arange(n), lines)
    within = np.arange(len(row)) - np.repeat(np.cumsum(lines) - lines, lines)
    product = np.array(PRODUCTS, dtype=object)[products[row, within]]
    out = frame.iloc[row].reset_index(drop=True)
    return out.assign(Product=product)


# --- the whole data set ----------------------------------------------------
@dataclass(frozen=True)
class _Simulation:
    accounts: pd.DataFrame
    contacts: pd.DataFrame
    opportunities: pd.DataFrame
    fit: np.ndarray  # account drivers' log-odds, per opportunity


def _simulate(seed: int, n_accounts: int) -> _Simulation:
    rng = np.random.default_rng(seed)
    accounts = _draw_accounts(rng, n_accounts)
    contacts = _draw_contacts(rng, accounts)
    opps = _draw_opportunities(rng, accounts)
    founded, revenue, source = _draw_noise(rng, opps, len(accounts))
    accounts = accounts.assign(founded=founded, revenue=revenue)
    opps = opps.assign(lead_source=source)
    fit = _account_logit(accounts)[opps["account"].to_numpy()]
    return _Simulation(accounts, contacts, opps, fit)


def _build_tables(seed: int, n_accounts: int) -> dict[str, pd.DataFrame]:
    sim = _simulate(seed, n_accounts)
    rng = np.random.default_rng([seed, 1])
    budget, budget_changes = _draw_budget(rng, sim.opportunities)
    return {
        "accounts": _format_accounts(rng, sim.accounts),
        "contacts": _format_contacts(rng, sim.contacts, sim.accounts),
        "opportunities": _format_opportunities(
            rng, sim.opportunities, sim.accounts, budget
        ),
        "field_history": _draw_history(rng, sim.opportunities, budget_changes),
        "feedback": _draw_feedback(rng, sim.opportunities, sim.fit),
    }


# --- writing ---------------------------------------------------------------
def _check_target(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(
            f"demo data folder {out_dir} is a file; pass a folder path "
            "(it is created if missing)"
        )
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).is_file():
            raise DataError(
                f"demo data folder {out_dir} is not empty and was not written "
                f"by write_demo (no {MARKER} in it); refusing to overwrite it. "
                "Pass an empty or new folder, or delete this one first."
            )


def _replace_folder(tmp: Path, out_dir: Path) -> None:
    """Move the finished temp folder into place, dropping an old demo."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        out_dir.rename(old / "data")
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_demo(
    out_dir: str | Path, *, seed: int = 7, n_accounts: int = 3000
) -> DemoFiles:
    """Write the demo CRM export (five CSV files) into ``out_dir``.

    The files are written into a temporary folder beside ``out_dir`` and
    moved into place at the end, so a reader never sees half a data set.
    A folder written earlier by this function is replaced.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write; created if missing. It must be empty, missing,
        or a folder written by :func:`write_demo`.
    seed : int, default 7
        Seed of the random generator; the same seed gives the same bytes.
    n_accounts : int, default 3000
        Number of accounts (about 3.6 opportunities each).

    Returns
    -------
    DemoFiles
        The paths of the written files.

    Raises
    ------
    DataError
        If ``out_dir`` holds other files, or ``n_accounts`` is too small.

    Examples
    --------
    >>> files = write_demo("data/demo")  # doctest: +SKIP
    >>> files.opportunities.name  # doctest: +SKIP
    'opportunities.csv'
    """
    if n_accounts < MIN_ACCOUNTS:
        raise DataError(
            f"n_accounts must be at least {MIN_ACCOUNTS} for every segment "
            f"to have deals; found {n_accounts}"
        )
    out_dir = Path(out_dir)
    _check_target(out_dir)
    tables = _build_tables(seed, n_accounts)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        for name, frame in tables.items():
            frame.to_csv(tmp / f"{name}.csv", index=False, lineterminator="\n")
        marker = {"written_by": "icp_lib.demo.write_demo", "seed": seed}
        marker["n_accounts"] = n_accounts
        (tmp / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
        _replace_folder(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info(
        "wrote demo data (seed %s, %s accounts) to %s", seed, n_accounts, out_dir
    )
    return DemoFiles(out_dir, *(out_dir / f"{name}.csv" for name in tables))


# --- the best achievable AUC -----------------------------------------------
def _expected_auc(p: np.ndarray) -> float:
    """Expected AUC of scoring with ``p`` when outcomes are drawn from ``p``.

    Over all ordered pairs of distinct records (i won, j lost), weighted by
    p_i (1 - p_j); ties count one half.
    """
    values, inverse = np.unique(p, return_inverse=True)
    pos = np.bincount(inverse, weights=p)
    neg = np.bincount(inverse, weights=1 - p)
    below = np.cumsum(neg) - neg
    self_pairs = np.sum(p * (1 - p))
    numerator = np.sum(pos * (below + 0.5 * neg)) - 0.5 * self_pairs
    return float(numerator / (pos.sum() * neg.sum() - self_pairs))


def true_auc(
    *, seed: int = 7, n_accounts: int = 20000, segment: str | None = None
) -> float:
    """Return the best AUC any score can reach on the demo data.

    The true probabilities of the simulated deals rank them as well as is
    possible; this is their expected AUC over the won/lost outcomes they
    generate (open deals included as if they had closed).

    Parameters
    ----------
    seed : int, default 7
        Seed of the simulation.
    n_accounts : int, default 20000
        Size of the simulated sample; large by default so the value is stable.
    segment : str, optional
        "b2b_new", "b2b_expansion" or "b2c"; all deals when None.

    Returns
    -------
    float
        The expected AUC.

    Raises
    ------
    DataError
        If ``segment`` is not one of the demo segments.
    """
    if segment is not None and segment not in SEGMENT_EFFECTS:
        raise DataError(
            f"segment must be one of {sorted(SEGMENT_EFFECTS)} or None; "
            f"found {segment!r}"
        )
    opps = _simulate(seed, n_accounts).opportunities
    if segment is not None:
        opps = opps[opps["segment"] == segment]
    return _expected_auc(opps["p"].to_numpy())
