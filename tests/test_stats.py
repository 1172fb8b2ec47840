"""Tests of icp_lib._stats against independent computations."""

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import Table

from icp_lib import _stats


@pytest.mark.parametrize(
    ("x", "n"), [(0, 10), (3, 10), (10, 10), (57, 400), (1, 1), (499, 1000)]
)
def test_wilson_interval_matches_scipy_binomtest(x, n):
    # expected: scipy's own Wilson interval
    ci = stats.binomtest(x, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = _stats.wilson_interval(x, n)
    assert low == pytest.approx(ci.low, abs=1e-12)
    assert high == pytest.approx(ci.high, abs=1e-12)


def test_wilson_interval_is_vectorized_and_nan_for_empty_groups():
    low, high = _stats.wilson_interval(np.array([3, 0]), np.array([10, 0]))
    ci = stats.binomtest(3, 10).proportion_ci(method="wilson")
    assert low[0] == pytest.approx(ci.low)
    assert high[0] == pytest.approx(ci.high)
    assert np.isnan(low[1]) and np.isnan(high[1])


def test_wilson_interval_widens_with_lower_alpha():
    narrow = _stats.wilson_interval(30, 100, alpha=0.1)
    wide = _stats.wilson_interval(30, 100, alpha=0.01)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_two_proportion_test_matches_hand_computation():
    x1, n1, x2, n2 = 45, 100, 30, 120
    # expected: pooled z by hand, p from the normal distribution
    p = (x1 + x2) / (n1 + n2)
    z = (x1 / n1 - x2 / n2) / math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    result = _stats.two_proportion_test(x1, n1, x2, n2)
    assert result.statistic == pytest.approx(z)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert result.effect == pytest.approx(0.45 - 0.25)


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "note"),
    [
        (0, 0, 3, 10, "no records"),
        (0, 10, 0, 20, "same outcome"),
        (10, 10, 20, 20, "same outcome"),
    ],
)
def test_two_proportion_test_is_nan_when_undefined(x1, n1, x2, n2, note):
    result = _stats.two_proportion_test(x1, n1, x2, n2)
    assert math.isnan(result.p_value)
    assert not result.defined
    assert not result.significant(0.05)
    assert note in result.note


def test_one_sided_proportion_test_halves_the_two_sided_p_in_its_direction():
    # expected: one-sided p = two-sided p / 2 when the effect is positive
    two = _stats.two_proportion_test(40, 100, 25, 100)
    one = _stats.one_sided_proportion_test(40, 100, 25, 100)
    assert one.p_value == pytest.approx(two.p_value / 2)
    reverse = _stats.one_sided_proportion_test(25, 100, 40, 100)
    assert reverse.p_value == pytest.approx(1 - two.p_value / 2)


def test_one_sample_proportion_test_matches_hand_score_test():
    # expected: z = (p_hat - p0) / sqrt(p0 (1 - p0) / n) by hand
    z = (30 / 80 - 0.25) / math.sqrt(0.25 * 0.75 / 80)
    result = _stats.one_sample_proportion_test(30, 80, 0.25)
    assert result.statistic == pytest.approx(z)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)))


def test_one_sample_proportion_test_is_nan_for_degenerate_reference():
    assert math.isnan(_stats.one_sample_proportion_test(3, 10, 0.0).p_value)
    assert math.isnan(_stats.one_sample_proportion_test(0, 0, 0.3).p_value)


def test_cochran_armitage_matches_statsmodels_linear_by_linear():
    successes = np.array([5, 12, 20, 31])
    totals = np.array([50, 60, 55, 62])
    table = np.column_stack([successes, totals - successes])
    # expected: statsmodels' linear-by-linear test statistic, which uses
    # N - 1 where Cochran-Armitage uses N: z_ca = z_lbl * sqrt(N / (N - 1))
    lbl = Table(table).test_ordinal_association(
        row_scores=np.arange(4), col_scores=np.array([1, 0])
    )
    z_lbl = lbl.zscore
    big_n = totals.sum()
    result = _stats.cochran_armitage_trend(successes, totals)
    assert result.statistic == pytest.approx(z_lbl * math.sqrt(big_n / (big_n - 1)))
    assert result.effect > 0


def test_cochran_armitage_one_sided_direction():
    up = _stats.cochran_armitage_trend([5, 10, 20], [50, 50, 50], alternative="larger")
    down = _stats.cochran_armitage_trend(
        [5, 10, 20], [50, 50, 50], alternative="smaller"
    )
    assert up.p_value < 0.01
    assert down.p_value > 0.99


@pytest.mark.parametrize(
    ("successes", "totals"), [([3], [10]), ([0, 0], [10, 10]), ([2, 0], [5, 0])]
)
def test_cochran_armitage_is_nan_when_undefined(successes, totals):
    assert math.isnan(_stats.cochran_armitage_trend(successes, totals).p_value)


def test_logistic_trend_test_matches_statsmodels_fit():
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    x = rng.normal(size=400)
    y = (rng.random(400) < 1 / (1 + np.exp(-(0.8 * x - 0.5)))).astype(float)
    # expected: the LR statistic reported by statsmodels' own Logit fit
    fit = sm.Logit(y, sm.add_constant(x)).fit(disp=0)
    result = _stats.logistic_trend_test(x, y)
    assert result.statistic == pytest.approx(fit.llr)
    assert result.p_value == pytest.approx(fit.llr_pvalue)
    assert result.effect == pytest.approx(fit.params[1])


def test_logistic_trend_test_is_nan_for_a_single_outcome():
    result = _stats.logistic_trend_test([1.0, 2.0, 3.0], [1, 1, 1])
    assert math.isnan(result.p_value)


@pytest.mark.parametrize("lambda_", ["log-likelihood", "pearson"])
def test_chi_square_test_matches_scipy_contingency(lambda_):
    successes = np.array([10, 25, 40])
    totals = np.array([100, 100, 100])
    # expected: scipy's chi2_contingency on the same 3 x 2 table
    table = np.column_stack([successes, totals - successes])
    stat, p, _, _ = stats.chi2_contingency(table, correction=False, lambda_=lambda_)
    result = _stats.chi_square_test(successes, totals, lambda_=lambda_)
    assert result.statistic == pytest.approx(stat)
    assert result.p_value == pytest.approx(p)
    assert result.effect == pytest.approx(0.30)


def test_chi_square_test_is_nan_with_one_group():
    assert math.isnan(_stats.chi_square_test([3, 0], [10, 0]).p_value)


def test_single_field_auc_is_one_for_a_perfect_separator():
    values = ["a", "a", "b", "b", None]
    assert _stats.single_field_auc(values, [1, 1, 0, 0, 0]) == pytest.approx(1.0)


def test_single_field_auc_takes_the_better_direction_for_numbers():
    from sklearn.metrics import roc_auc_score

    x = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 2.5])
    y = np.array([0, 0, 1, 1, 1, 0])
    # expected: sklearn's AUC of the negated value (higher x = lower win rate)
    expected = roc_auc_score(y, -x)
    assert _stats.single_field_auc(x, y, kind="numeric") == pytest.approx(expected)


def test_single_field_auc_is_nan_for_a_single_outcome():
    assert math.isnan(_stats.single_field_auc(["a", "b"], [1, 1]))


def test_population_stability_index_matches_hand_computation():
    e = np.array([50, 30, 20])
    a = np.array([30, 30, 40])
    # expected: sum((a - e) ln(a / e)) over shares, by hand
    es, as_ = e / e.sum(), a / a.sum()
    expected = float(((as_ - es) * np.log(as_ / es)).sum())
    assert _stats.population_stability_index(e, a) == pytest.approx(expected)
    assert _stats.population_stability_index(e, e) == pytest.approx(0.0)
    assert math.isnan(_stats.population_stability_index([0, 0], [1, 2]))


def test_population_stability_index_rejects_mismatched_bins():
    with pytest.raises(ValueError, match="same bins"):
        _stats.population_stability_index([1, 2], [1, 2, 3])


def test_safe_ratio_gives_nan_for_zero_denominators():
    out = _stats.safe_ratio([1.0, 2.0], [0.0, 4.0])
    assert np.isnan(out[0]) and out[1] == 0.5
    assert math.isnan(_stats.safe_ratio(1, 0))


def test_test_result_round_trips_through_json_dict():
    result = _stats.two_proportion_test(0, 10, 0, 10)
    again = _stats.TestResult.from_json_dict(result.to_json_dict())
    assert result.to_json_dict()["p_value"] is None
    assert again.method == result.method and math.isnan(again.p_value)


@pytest.mark.parametrize("n", [3, 10, 13, 25, 30, 842])
def test_wilson_interval_always_contains_the_estimate_at_the_edges(n):
    # expected: p = 1 and p = 0 must lie inside their own interval; before
    # clamping, float rounding left the upper end at 0.9999999 for these n
    low, high = _stats.wilson_interval(n, n)
    assert low < 1.0 <= high
    low, high = _stats.wilson_interval(0, n)
    assert low <= 0.0 < high
