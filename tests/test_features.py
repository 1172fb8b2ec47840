"""Tests of feature preparation: levels, bins and indicators."""

import numpy as np
import pandas as pd
import pytest

from icp_lib._features import (
    MISSING,
    OTHER,
    card_encoding,
    design_matrix,
    indicator_frame,
    level_labels,
    map_values,
    screen_encoding,
)

OPTIONS = {"min_level_count": 30, "min_bin_share": 0.05, "max_bins": 5}


def encode(values, kind, **kw):
    return screen_encoding(pd.Series(values), name="f", label="F", kind=kind,
                           **(OPTIONS | kw))  # fmt: skip


def test_rare_levels_are_grouped_as_other_and_missing_is_its_own_level():
    values = ["a"] * 50 + ["b"] * 40 + ["c"] * 5 + ["d"] * 3 + [None] * 35
    enc = encode(values, "categorical")
    assert [lab for lab, _ in enc.levels] == ["a", "b"]
    assert enc.has_other and enc.has_missing
    labels = level_labels(enc, pd.Series(values))
    # plain count of what each group should hold
    assert labels.value_counts().to_dict() == {"a": 50, "b": 40, MISSING: 35, OTHER: 8}
    assert "2 value(s) with fewer than 30 records" in enc.notes[0]


def test_few_missing_values_join_other_with_a_note():
    values = ["a"] * 50 + ["b"] * 40 + ["c"] * 5 + [None] * 4
    enc = encode(values, "categorical")
    assert not enc.has_missing
    assert level_labels(enc, pd.Series([None])).tolist() == [OTHER]
    assert any("only 4 records have no value" in n for n in enc.notes)


def test_case_and_space_variants_share_a_level():
    values = ["SaaS"] * 30 + ["saas "] * 10 + ["Retail"] * 40
    enc = encode(values, "categorical")
    labels = level_labels(enc, pd.Series(values))
    assert labels.value_counts()["SaaS"] == 40


def test_boolean_levels_read_yes_no_values():
    values = [1.0] * 40 + [0.0] * 40 + [np.nan] * 30
    enc = encode(values, "boolean")
    labels = level_labels(enc, pd.Series(["yes", "No", None]))
    assert labels.tolist() == ["Yes", "No", MISSING]


def test_numeric_screen_bins_hold_at_least_the_minimum_share():
    rng = np.random.default_rng(0)
    values = np.concatenate([np.zeros(300), rng.uniform(1, 100, 700)])  # a spike
    enc = encode(values, "numeric")
    counts = level_labels(enc, pd.Series(values)).value_counts()
    assert counts.min() >= 0.05 * len(values)
    assert len(counts) <= 5


def test_card_bins_are_monotone_where_the_data_has_a_trend():
    rng = np.random.default_rng(1)
    x = pd.Series(rng.uniform(0, 10, 3000))
    won = pd.Series((rng.uniform(size=3000) < 0.1 + 0.06 * x).astype(float))
    screen = encode(x, "numeric")
    enc = card_encoding(x, won, screen, alpha=0.05, min_bin_share=0.05, max_bins=5)
    rates = won.groupby(level_labels(enc, x).to_numpy(), sort=False).mean()
    rates = rates.loc[[lab for lab in enc.level_names if lab in rates.index]]
    assert rates.is_monotonic_increasing
    assert any("rises with the value" in n for n in enc.notes)


def test_pure_bin_is_merged_with_its_neighbour():
    x = pd.Series(np.arange(1000, dtype=float))
    won = pd.Series(np.where(x < 60, 0.0, (x % 2).astype(float)))  # first 6% lost
    screen = encode(x, "numeric")
    enc = card_encoding(x, won, screen, alpha=0.05, min_bin_share=0.05, max_bins=5)
    labels = level_labels(enc, x)
    by_bin = won.groupby(labels.to_numpy()).agg(["sum", "count"])
    assert ((by_bin["sum"] > 0) & (by_bin["sum"] < by_bin["count"])).all()


def test_multi_indicators_need_enough_records():
    values = ["A|B"] * 40 + ["A"] * 40 + ["C"] * 5 + [None] * 30
    enc = encode(values, "multi")
    assert enc.indicators == ("A", "B")
    ind = indicator_frame(enc, pd.Series(["a | b", "C", None]))
    assert ind.to_dict("list") == {"A": [1.0, 0.0, 0.0], "B": [1.0, 0.0, 0.0],
                                   MISSING: [0.0, 0.0, 1.0]}  # fmt: skip


def test_design_matrix_codes_new_records_like_the_fit():
    values = pd.Series(["a"] * 50 + ["b"] * 40 + ["c"] * 35)
    enc = encode(values, "categorical")
    x_fit, _ = design_matrix([enc], pd.DataFrame({"f": values}))
    other = pd.DataFrame({"f": ["c", "c", "b"]})  # "c" most frequent here
    x_new, _ = design_matrix([enc], other, columns=x_fit.columns)
    assert list(x_new.columns) == list(x_fit.columns) == ["f=b", "f=c"]
    assert x_new.to_numpy().tolist() == [[0, 1], [0, 1], [1, 0]]


@pytest.mark.parametrize("values", [["x", None, "x"], [1.0, np.nan, 1.0]])
def test_map_values_calls_once_per_distinct_value(values):
    calls = []
    out = map_values(pd.Series(values), lambda v: calls.append(v) or str(v))
    assert len(calls) == 2
    assert out.tolist() == [str(values[0]), "None", str(values[0])]
