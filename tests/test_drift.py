"""Tests of population stability and conversion drift (icp_lib._drift)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from icp_lib._drift import (
    MATERIAL_PSI,
    bin_values,
    calibration_by_bin,
    conversion_drift,
    holm_adjust,
    population_stability,
    score_edges,
)


def test_psi_matches_hand_computation_on_tiny_example():
    # Reference a,a,b (c empty); review a,b,c,c. Add 0.5 to each of the 3 bins:
    # reference shares 2.5/4.5, 1.5/4.5, 0.5/4.5; review 1.5/5.5, 1.5/5.5, 2.5/5.5.
    # PSI = sum (q - p) * ln(q / p), computed here with plain numpy.
    p = np.array([2.5, 1.5, 0.5]) / 4.5
    q = np.array([1.5, 1.5, 2.5]) / 5.5
    expected_psi = float(np.sum((q - p) * np.log(q / p)))

    res = population_stability(["a", "a", "b"], ["a", "b", "c", "c"], bins=["a", "b"])

    # "c" is not a listed level, so it falls in the "other" bin.
    assert res.bins == ("a", "b", "other")
    assert res.expected_counts == (2, 1, 0)
    assert res.actual_counts == (1, 1, 2)
    assert res.psi == pytest.approx(expected_psi)
    assert np.isfinite(res.psi)


def test_psi_p_value_follows_chi_square_approximation():
    rng = np.random.default_rng(3)
    ref = rng.choice(list("abcd"), size=400, p=[0.4, 0.3, 0.2, 0.1])
    new = rng.choice(list("abcd"), size=150, p=[0.3, 0.3, 0.25, 0.15])

    res = population_stability(ref, new)

    # Independent: scipy's chi-square survival function at PSI / (1/n + 1/m).
    scale = 1 / 400 + 1 / 150
    assert res.dof == 3
    assert res.p_value == pytest.approx(stats.chi2.sf(res.psi / scale, 3))
    assert res.critical_psi == pytest.approx(stats.chi2.ppf(0.95, 3) * scale)


def test_psi_false_alarm_rate_is_near_alpha_without_change():
    # 400 pairs of samples from one population: about 5% should be significant.
    rng = np.random.default_rng(11)
    shares = [0.5, 0.3, 0.15, 0.05]
    hits = [
        population_stability(
            rng.choice(4, size=300, p=shares), rng.choice(4, size=200, p=shares)
        ).p_value
        < 0.05
        for _ in range(400)
    ]
    assert 0.02 <= np.mean(hits) <= 0.09


@pytest.mark.parametrize(
    ("n_ref", "n_new", "new_share", "status"),
    [
        (2000, 2000, 0.5, "stable"),  # no change at all
        (20000, 20000, 0.54, "watch"),  # tiny but significant with huge samples
        (12, 8, 0.85, "watch"),  # big PSI, too few records to be sure
        (2000, 800, 0.85, "shifted"),  # big and significant
    ],
)
def test_psi_status_takes_sample_size_into_account(n_ref, n_new, new_share, status):
    ref = ["x"] * (n_ref // 2) + ["y"] * (n_ref // 2)
    k = round(n_new * new_share)
    new = ["x"] * k + ["y"] * (n_new - k)

    res = population_stability(ref, new)

    assert res.status == status, res.reason


def test_psi_is_finite_when_a_bin_empties_and_missing_gets_its_own_bin():
    ref = ["a"] * 50 + ["b"] * 50 + [None] * 10
    new = ["a"] * 60

    res = population_stability(ref, new)

    assert res.bins == ("a", "b", "missing")
    assert res.actual_counts == (60, 0, 0)
    assert np.isfinite(res.psi) and res.psi > MATERIAL_PSI


def test_psi_is_nan_and_not_judged_when_review_sample_is_empty():
    res = population_stability([1.0, 2.0, 3.0], [])

    assert np.isnan(res.psi)
    assert res.status == "not judged"
    assert "no records in the review sample" in res.reason


def test_numeric_bins_include_lower_edge_and_exclude_upper():
    ref = pd.Series([0.0, 10.0, 20.0, np.nan])
    new = pd.Series([9.99, 10.0, 25.0])

    ref_lab, new_lab, order = bin_values(ref, new, bins=[10.0, 20.0])

    assert order == ["< 10", "10 to <20", ">= 20", "missing"]
    assert list(ref_lab) == ["< 10", "10 to <20", ">= 20", "missing"]
    assert list(new_lab) == ["< 10", "10 to <20", ">= 20"]


def test_score_edges_are_distinct_quantiles_above_the_minimum():
    values = pd.Series([0] * 50 + list(range(1, 51)))

    edges = score_edges(values, n_bins=4)

    # numpy quantiles of the same values at 25% and 75% (the 50% one is 0.5).
    assert edges == pytest.approx([0.5, 25.25])


def test_conversion_drift_matches_statsmodels_two_sided_z_test():
    ref = pd.DataFrame(
        {
            "bin": ["APAC"] * 100 + ["EMEA"] * 100,
            "won": [1.0] * 40 + [0.0] * 60 * 1 + [1.0] * 30 + [0.0] * 70,
        }
    )
    new = pd.DataFrame(
        {
            "bin": ["APAC"] * 80 + ["EMEA"] * 5 + ["APAC"] * 3,
            "won": [1.0] * 16 + [0.0] * 64 + [1.0] * 2 + [0.0] * 3 + [np.nan] * 3,
        }
    )

    out = conversion_drift(ref, new, levels=["APAC", "EMEA"]).set_index("level")

    # statsmodels on the same counts: review APAC 16/80 against reference 40/100.
    _, p = proportions_ztest([16, 40], [80, 100])
    assert out.loc["APAC", "p_value"] == pytest.approx(p)
    assert out.loc["APAC", "change"] == pytest.approx(0.2 - 0.4)
    assert out.loc["APAC", "review_closed"] == 80  # open records left out
    assert np.isnan(out.loc["EMEA", "p_value"])  # 5 closed: too few to test


def test_holm_adjust_keeps_missing_p_values_missing():
    out = holm_adjust([0.01, np.nan, 0.04])

    # Holm by hand: sorted 0.01 * 2 = 0.02, then max(0.02, 0.04 * 1) = 0.04.
    assert out[0] == pytest.approx(0.02)
    assert np.isnan(out[1])
    assert out[2] == pytest.approx(0.04)


def test_calibration_by_bin_matches_hand_computed_z():
    review = pd.DataFrame(
        {
            "bin": ["a"] * 20 + ["b"] * 20 + ["b"],
            "won": [1.0] * 4 + [0.0] * 16 + [1.0] * 12 + [0.0] * 8 + [np.nan],
            "expected": [0.5] * 20 + [0.4] * 20 + [0.9],
        }
    )

    out = calibration_by_bin(review, levels=["a", "b"]).set_index("level")

    # By hand: 16 wins against 10 + 8 = 18 expected, so expected rescales by
    # 16/18; bin a: p = 0.5 * 16/18, E = 20 p, z = (4 - E) / sqrt(20 p (1 - p)).
    p = 0.5 * 16 / 18
    z = (4 - 20 * p) / np.sqrt(20 * p * (1 - p))
    assert out.loc["a", "expected_wins"] == pytest.approx(20 * p)
    assert out.loc["a", "z"] == pytest.approx(z)
    assert out.loc["a", "calibration_p"] == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert out.loc["b", "closed"] == 20  # the open record is left out


def test_docstring_examples_run():
    import doctest

    from icp_lib import _drift

    assert doctest.testmod(_drift).failed == 0
