"""Tests of the points card: model.json validation and scoring rules."""

import json

import numpy as np
import pandas as pd
import pytest

from icp_lib._card import (
    ScoreCard,
    normalize_text,
    parse_bool_value,
    parse_number_value,
    score_records,
)
from icp_lib.errors import ModelError


def make_card_json() -> dict:
    """A hand-made card whose maxima add to 100: 40 + 30 + 10 + 20."""
    return {
        "schema_version": 1,
        "model_id": "demo-all-2026Q3-00000000",
        "max_score": 100,
        "fields": [
            {
                "name": "industry",
                "label": "Industry",
                "kind": "categorical",
                "levels": [
                    {
                        "values": ["Software", "SaaS"],
                        "label": "Software, SaaS",
                        "points": 40,
                    },
                    {"values": ["Retail"], "label": "Retail", "points": 10},
                ],
                "other_points": 5,
                "missing_points": 0,
            },
            {
                "name": "employees",
                "label": "Employees",
                "kind": "range",
                "bins": [
                    {"lower": None, "upper": 50.0, "label": "< 50", "points": 0},
                    {
                        "lower": 50.0,
                        "upper": 200.0,
                        "label": "50 to < 200",
                        "points": 20,
                    },
                    {"lower": 200.0, "upper": None, "label": ">= 200", "points": 30},
                ],
                "missing_points": 3,
            },
            {
                "name": "partner",
                "label": "Partner",
                "kind": "boolean",
                "levels": [
                    {"values": [True], "label": "Yes", "points": 10},
                    {"values": [False], "label": "No", "points": 0},
                ],
                "other_points": 0,
                "missing_points": 2,
            },
            {
                "name": "technologies",
                "label": "Tech",
                "kind": "multi",
                "separator": "|",
                "indicators": [
                    {"value": "Salesforce", "points": 15},
                    {"value": "Slack", "points": 5},
                ],
                "missing_points": 1,
            },
        ],
        "metrics": {},
        "verdict": {"usable": True, "reasons": ["test card"]},
        "grades": None,
    }


@pytest.fixture
def card() -> ScoreCard:
    return ScoreCard.from_json(make_card_json())


def test_ideal_record_of_hand_made_card_scores_max(card):
    assert card.ideal_score() == 100


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        # Software 40 + 200 -> 30 + yes 10 + both tools 20 = 100 (the ideal)
        (["  software ", "250", "yes", "Salesforce|Slack"], 100),
        # unseen industry -> other 5; "$1,200" -> >=200 bin 30; "no" 0; Slack 5
        (["Mining", "$1,200", "no", "slack"], 40),
        # placeholder industry -> missing 0; "51-200" midpoint 125.5 -> 20;
        # unparsable boolean -> missing 2; no value at all -> missing 1
        (["Select", "51-200", "maybe", None], 23),
        # all missing: 0 + 3 + 2 + 1
        ([None, None, None, None], 6),
        # bin edges: 50 is in "50 to < 200" (lower inclusive); placeholder-only
        # multi counts as no value at all
        (["Retail", 50, 1.0, "--None--"], 41),
        # 49.99 in "< 50"; unlisted tool only -> 0
        (["SAAS", 49.99, 0.0, "HubSpot"], 40),
    ],
)
def test_score_equals_sum_of_card_points_for_hand_made_records(card, row, expected):
    frame = pd.DataFrame(
        [["r1", *row]],
        columns=["record_id", "industry", "employees", "partner", "technologies"],
    )
    out = score_records(card, frame)
    assert out["score"].tolist() == [expected]


def test_score_records_returns_columns_and_na_grade_without_grades(card):
    frame = pd.DataFrame(
        {
            "record_id": ["a"],
            "industry": ["SaaS"],
            "employees": [10.0],
            "partner": [np.nan],
            "technologies": ["Salesforce"],
        }
    )
    out = score_records(card, frame)
    assert list(out.columns) == ["record_id", "score", "grade", "reasons"]
    assert out["grade"].isna().all()
    # reasons are the positive contributions, largest first
    assert out["reasons"][0] == [
        "Industry: Software, SaaS (+40)",
        "Tech: Salesforce (+15)",
        "Partner: missing (+2)",
    ]


def test_grades_follow_cuts(card):
    graded = card.with_grades({"method": "fixed", "cuts": {"A": 80, "B": 50, "C": 20}})
    frame = pd.DataFrame(
        {
            "record_id": list("abcd"),
            "industry": ["SaaS", "SaaS", "Retail", None],
            "employees": [500, 60, 10, None],
            "partner": ["y", "n", "n", None],
            "technologies": ["Salesforce|Slack", None, None, None],
        }
    )
    out = score_records(graded, frame)
    # 100 -> A; 40+20+0+1=61 -> B; 10+0+0+1=11 -> D; 0+3+2+1=6 -> D
    assert out["score"].tolist() == [100, 61, 11, 6]
    assert out["grade"].tolist() == ["A", "B", "D", "D"]


def test_missing_model_field_in_input_is_named(card):
    frame = pd.DataFrame({"record_id": ["a"], "industry": ["SaaS"]})
    with pytest.raises(ModelError, match=r"lack column\(s\) \['employees'"):
        score_records(card, frame)


def test_round_trip_through_json_file_keeps_card(card, tmp_path):
    path = card.save(tmp_path / "sub" / "model.json")
    again = ScoreCard.read(path)
    assert again.to_json_dict() == card.to_json_dict()
    assert not list(path.parent.glob(".model.json.*"))  # no temp file left


def test_card_frame_lists_every_value_with_points(card):
    table = card.card_frame()
    assert list(table.columns) == ["field", "value", "points", "records", "conversion"]
    industry = table[table["field"] == "Industry"]
    assert industry["value"].tolist() == [
        "Software, SaaS",
        "Retail",
        "other or never seen",
        "missing",
    ]
    assert industry["points"].tolist() == [40, 10, 5, 0]


def test_other_schema_version_is_refused():
    data = make_card_json() | {"schema_version": 2}
    with pytest.raises(ModelError, match="schema_version is 2 but this kit reads"):
        ScoreCard.from_json(data)


def _edit(path: list, value):
    data = make_card_json()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["fields", 0, "levels", 0, "points"], 41, "ideal record scores 101"),
        (["fields", 0, "levels", 1, "points"], -3, "must be a whole number >= 0"),
        (["fields", 0, "levels", 1, "points"], 2.5, "must be a whole number"),
        (["fields", 1, "bins", 1, "lower"], 60.0, "bins must be sorted and touch"),
        (["fields", 1, "bins", 0, "lower"], 0.0, "first bin must have lower null"),
        (["fields", 2, "kind"], "yesno", "allowed: categorical"),
        (["fields", 0, "levels", 1, "values"], ["saas"], "listed in two levels"),
        (["fields", 3, "separator"], "", "non-empty 'separator'"),
        (["verdict"], {"usable": "yes"}, "'verdict' must be an object"),
        (["max_score"], "100", "max_score must be a whole number"),
    ],
)
def test_hand_edited_invalid_model_is_refused(path, value, message):
    with pytest.raises(ModelError, match=message):
        ScoreCard.from_json(_edit(path, value))


def test_read_names_file_of_broken_json(tmp_path):
    path = tmp_path / "model.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match=r"model\.json is not valid JSON"):
        ScoreCard.read(path)


def test_read_names_file_with_invalid_content(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(_edit(["fields", 0, "kind"], "text")), encoding="utf-8")
    with pytest.raises(ModelError, match=r"model\.json: field 'industry' has kind"):
        ScoreCard.read(path)


def test_with_grades_refuses_cuts_that_do_not_fall(card):
    with pytest.raises(ModelError, match="grade cuts must fall"):
        card.with_grades({"cuts": {"A": 50, "B": 60, "C": 20}})


def test_unusable_card_without_fields_scores_zero():
    data = make_card_json() | {
        "fields": [],
        "verdict": {"usable": False, "reasons": ["no field"]},
    }
    card = ScoreCard.from_json(data)
    out = score_records(card, pd.DataFrame({"record_id": ["a", "b"]}))
    assert out["score"].tolist() == [0, 0]
    assert not card.usable


@pytest.mark.parametrize(
    ("value", "expected"),
    [("  Big   Co ", "big co"), ("--None--", None), ("SELECT", None), (np.nan, None)],
)
def test_normalize_text_collapses_spaces_and_placeholders(value, expected):
    assert normalize_text(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Yes", True),
        ("n", False),
        (1.0, True),
        (0, False),
        ("maybe", None),
        (None, None),
    ],
)
def test_parse_bool_value_reads_yes_no_text(value, expected):
    assert parse_bool_value(value) == expected


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("$1,200.00", "numeric", 1200.0),
        ("51-200", "range", 125.5),
        ("10,001+", "range", 10001.0),
        (7, "numeric", 7.0),
    ],
)
def test_parse_number_value_reads_currency_and_ranges(value, kind, expected):
    assert parse_number_value(value, kind=kind) == pytest.approx(expected)
