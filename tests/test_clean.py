"""Tests of the cleaning rules in icp_lib._clean."""

import doctest
import importlib
import math

import pandas as pd
import pytest

from icp_lib import _clean
from icp_lib._clean import (
    PLACEHOLDERS,
    SENIORITY_LEVELS,
    normalize_category,
    parse_bool,
    parse_number_text,
    parse_range_text,
    rank_seniority,
    salesforce_id_18,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$1,200.50", 1200.5),
        ("USD 1200", 1200.0),
        ("(350.00)", -350.0),
        ("€1.200,50", 1200.5),
        ("1.200.000", 1200000.0),
        ("1200,5", 1200.5),
        (" 3 ", 3.0),
        ("-42", -42.0),
        ("1.5M", 1_500_000.0),
        ("2k", 2000.0),
        ("12%", 12.0),
        (1200, 1200.0),
        (7.5, 7.5),
    ],
)
def test_parse_number_text_reads_currency_and_separators(raw, expected):
    assert parse_number_text(raw) == pytest.approx(expected)


@pytest.mark.parametrize("raw", ["abc", "Select", "--None--", "", None, math.nan])
def test_parse_number_text_gives_none_for_text_and_placeholders(raw):
    assert parse_number_text(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("51-200", 125.5),  # midpoint of 51 and 200
        ("10,001+", 10001.0),  # open range: lower bound
        ("$1M-$10M", 5_500_000.0),  # (1e6 + 1e7) / 2
        ("1-10M", 5_500_000.0),  # the lower end borrows the scale
        ("1K", 1000.0),
        ("<50", 25.0),  # read as 0 to 50
        ("under 50", 25.0),
        ("5000 to 10000", 7500.0),
        ("1,001 – 5,000", 3000.5),
        ("over 500", 500.0),
        ("200", 200.0),
    ],
)
def test_parse_range_text_gives_midpoints_and_lower_bounds(raw, expected):
    assert parse_range_text(raw) == pytest.approx(expected)


@pytest.mark.parametrize("raw", ["n/a", "unknown", "big", None])
def test_parse_range_text_gives_none_for_unreadable_values(raw):
    assert parse_range_text(raw) is None


@pytest.mark.parametrize(
    "raw", ["Select", "SELECT", " --None-- ", "Unknown", "N/A", "none", "NULL", "-", ""]
)
def test_placeholders_are_missing_whatever_the_case(raw):
    assert normalize_category(raw) is None


def test_placeholders_constant_holds_the_documented_values():
    assert set(PLACEHOLDERS) == {
        "select",
        "--none--",
        "unknown",
        "n/a",
        "none",
        "null",
        "-",
        "",
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Health   Care ", "Health Care"),
        ("SaaS", "SaaS"),
        (2017.0, "2017"),
        ("NA", "NA"),  # a region code, not a placeholder
    ],
)
def test_normalize_category_strips_and_collapses_spaces(raw, expected):
    assert normalize_category(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Yes", True),
        ("y", True),
        ("TRUE", True),
        ("1", True),
        (True, True),
        ("no", False),
        ("N", False),
        ("false", False),
        ("0", False),
        ("maybe", None),
        ("Select", None),
        (None, None),
    ],
)
def test_parse_bool_reads_yes_no_text(raw, expected):
    assert parse_bool(raw) is expected


def test_salesforce_id_18_appends_the_case_checksum():
    # Worked by hand from the documented algorithm: split the 15 characters
    # into blocks of 5; bit i of a block is set when its i-th character is an
    # upper-case letter; the block's number indexes "A..Z012345".
    #   "001A0": only 'A' (position 3) is upper case -> 0b01000 = 8 -> 'I'
    #   "00001": no upper case                       -> 0           -> 'A'
    #   "D8dXr": 'D' (position 0) and 'X' (3)        -> 1 + 8 = 9   -> 'J'
    assert salesforce_id_18("001A000001D8dXr") == "001A000001D8dXrIAJ"


def test_salesforce_id_18_maps_all_upper_case_block_to_digit():
    # "ABCDE" has all five bits set: 31 -> '5'; "abcde" and "12345" -> 'A'.
    assert salesforce_id_18("ABCDEabcde12345") == "ABCDEabcde12345" + "5AA"


def test_normalize_salesforce_ids_merges_15_and_18_char_forms():
    ids = pd.Series(["001A000001D8dXr", "001A000001D8dXrIAJ", None])
    cleaned = _clean.normalize_salesforce_ids(ids)
    assert cleaned.values.tolist()[:2] == ["001A000001D8dXrIAJ"] * 2
    assert cleaned.rows == 1
    assert cleaned.examples == ("001A000001D8dXr",)


def test_normalize_salesforce_ids_leaves_other_keys_alone():
    names = pd.Series(["Acme Corporation", "001A000001D8dXr"])
    cleaned = _clean.normalize_salesforce_ids(names)
    assert cleaned.rows == 0
    assert cleaned.values.tolist() == names.tolist()


def test_merge_category_variants_takes_the_most_frequent_spelling():
    raw = pd.Series(["Software", "Software", "software ", "SOFTWARE", "Retail", None])
    cleaned = _clean.merge_category_variants(raw)
    assert cleaned.values.tolist()[:5] == ["Software"] * 4 + ["Retail"]
    assert pd.isna(cleaned.values.iloc[5])
    assert cleaned.rows == 2
    assert set(cleaned.examples) == {"software ", "SOFTWARE"}


def test_clean_placeholders_counts_placeholders_but_not_blanks():
    raw = pd.Series(["Select", "--None--", "", None, "Retail"])
    cleaned = _clean.clean_placeholders(raw)
    assert cleaned.values.isna().tolist() == [True, True, True, True, False]
    assert cleaned.rows == 2


def test_clean_multi_splits_dedupes_sorts_and_joins():
    raw = pd.Series(["Slack; Salesforce", "salesforce;Slack;Slack", "Select", None])
    cleaned = _clean.clean_multi(raw, separator=";")
    assert cleaned.values.tolist()[:2] == ["Salesforce|Slack"] * 2
    assert cleaned.values.iloc[2:].isna().all()


def test_clean_numbers_counts_rewritten_currency_texts():
    cleaned = _clean.clean_numbers(pd.Series(["$12,300.00", "5", None, "USD 1200"]))
    assert cleaned.values.tolist()[:2] == [12300.0, 5.0]
    assert cleaned.rows == 2


def test_clean_booleans_counts_unreadable_values():
    cleaned = _clean.clean_booleans(pd.Series(["Yes", "no", "maybe", "Select"]))
    assert cleaned.values.tolist()[:2] == [1.0, 0.0]
    assert cleaned.rows == 1
    assert cleaned.examples == ("maybe",)


@pytest.mark.parametrize(
    ("dayfirst", "expected"),
    [(True, pd.Timestamp("2024-04-03")), (False, pd.Timestamp("2024-03-04"))],
)
def test_parse_dates_follows_dayfirst(dayfirst, expected):
    cleaned = _clean.parse_dates(pd.Series(["03/04/2024"]), dayfirst=dayfirst)
    assert cleaned.values.iloc[0] == expected


@pytest.mark.parametrize(
    ("raw", "dayfirst", "expected"),
    [
        ("25/12/2024", True, pd.Timestamp("2024-12-25")),
        ("12/25/2024", False, pd.Timestamp("2024-12-25")),
        ("3.4.24 10:15", True, pd.Timestamp("2024-04-03 10:15")),
        ("Mar 5, 2024", True, pd.Timestamp("2024-03-05")),
        ("2024-03-04T10:00:00+02:00", False, pd.Timestamp("2024-03-04 08:00")),
    ],
)
def test_parse_dates_reads_common_export_formats(raw, dayfirst, expected):
    cleaned = _clean.parse_dates(pd.Series([raw]), dayfirst=dayfirst)
    assert cleaned.values.iloc[0] == expected


@pytest.mark.parametrize(
    ("raw", "dayfirst"), [("25/12/2024", False), ("12/25/2024", True)]
)
def test_parse_dates_never_swaps_day_and_month(raw, dayfirst):
    cleaned = _clean.parse_dates(pd.Series([raw]), dayfirst=dayfirst)
    assert pd.isna(cleaned.values.iloc[0])
    assert cleaned.rows == 1


def test_parse_dates_counts_unparsed_values_instead_of_guessing():
    raw = pd.Series(["2024-03-04", "not a date", None, "2018-02-26 19:58:54"])
    cleaned = _clean.parse_dates(raw)
    assert cleaned.rows == 1
    assert cleaned.examples == ("not a date",)
    assert str(cleaned.values.dtype) == "datetime64[ns]"


def test_parse_dates_with_a_format_rejects_other_formats():
    raw = pd.Series(["04.03.2024", "2024-03-04"])
    cleaned = _clean.parse_dates(raw, date_format="%d.%m.%Y")
    assert cleaned.values.iloc[0] == pd.Timestamp("2024-03-04")
    assert cleaned.rows == 1


@pytest.mark.parametrize(
    "marker",
    [
        "Total",
        "Grand Total",
        "Generated by Salesforce",
        "Copyright 2026",
        "Confidential",
    ],
)
def test_find_footer_rows_flags_report_footers(marker):
    frame = pd.DataFrame(
        {"id": ["006A", "006B", None], "name": ["Acme", "Total Gym", marker]}
    )
    flags = _clean.find_footer_rows(frame, id_column="id")
    # "Total Gym" has an id, so it is a real record.
    assert flags.tolist() == [False, False, True]


def test_find_footer_rows_flags_blank_rows_and_works_without_id():
    frame = pd.DataFrame({"a": ["x", "Grand Total", None], "b": ["y", "1200", None]})
    assert _clean.find_footer_rows(frame, id_column=None).tolist() == [
        False,
        True,
        True,
    ]


@pytest.mark.parametrize(
    ("title", "level"),
    [
        ("Chief Revenue Officer", "C-level"),
        ("CEO", "C-level"),
        ("Vice President, Sales", "VP"),
        ("SVP Marketing", "VP"),
        ("Director of IT", "Director"),
        ("Account Manager", "Manager"),
        ("Software Engineer", "Individual contributor"),
        ("vp", "VP"),
        ("Head of Marketing", "VP"),
        ("Managing Director", "C-level"),
        ("Partner Manager", "Manager"),
        ("Product Owner", "Individual contributor"),
        ("Select", None),
    ],
)
def test_rank_seniority_matches_title_keywords(title, level):
    assert rank_seniority(title) == level


def test_seniority_levels_are_ordered_most_senior_first():
    assert SENIORITY_LEVELS[0] == "C-level"
    assert SENIORITY_LEVELS[-1] == "Individual contributor"


@pytest.mark.parametrize("module", ["icp_lib._clean", "icp_lib.data"])
def test_docstring_examples_hold(module):
    results = doctest.testmod(importlib.import_module(module))
    assert results.attempted > 0
    assert results.failed == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1.2E+05", 120000.0), ("-3e2", -300.0), ("9" * 401, None), ("1e400", None)],
)
def test_scientific_and_overflowing_numbers(raw, expected):
    from icp_lib._clean import parse_number_text

    # expected: Python's own float() of the text; infinity is never a value
    assert parse_number_text(raw) == expected
