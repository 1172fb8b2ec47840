"""Small statistical tests shared by the audit, model, grades and review steps.

Every function returns NaN (never a number from a division by zero) when the
data cannot answer the question: an empty group, a proportion of exactly 0 or
1 in both groups, a single level. Results of tests are :class:`TestResult`.

Functions
---------
wilson_interval
    Confidence interval of a proportion (vectorized).
two_proportion_test, one_sided_proportion_test, one_sample_proportion_test
    z tests of proportions (statsmodels ``proportions_ztest``).
cochran_armitage_trend, logistic_trend_test
    Does conversion rise (or fall) along ordered groups or a numeric value?
chi_square_test
    Does conversion differ across the levels of a field (Pearson or G test)?
single_field_auc
    How well one field alone separates won from lost.
population_stability_index
    Drift of a distribution between two periods.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

__all__ = [
    "TestResult",
    "wilson_interval",
    "two_proportion_test",
    "one_sided_proportion_test",
    "one_sample_proportion_test",
    "cochran_armitage_trend",
    "logistic_trend_test",
    "chi_square_test",
    "single_field_auc",
    "population_stability_index",
    "safe_ratio",
]

ALTERNATIVES = ("two-sided", "larger", "smaller")


@dataclass(frozen=True)
class TestResult:
    """The outcome of one hypothesis test.

    Attributes
    ----------
    method : str
        Name of the test in words, e.g. ``"two-proportion z test"``.
    statistic : float
        The test statistic (NaN when the test is undefined).
    p_value : float
        The p-value (NaN when the test is undefined).
    effect : float
        A difference or slope that says which way the effect goes (NaN when
        undefined); each function documents what it holds.
    note : str
        Why the test is undefined, in words; empty when it is defined.
    """

    __test__ = False  # not a pytest test class

    method: str
    statistic: float
    p_value: float
    effect: float = math.nan
    note: str = ""

    @property
    def defined(self) -> bool:
        """True when the test produced a p-value."""
        return not math.isnan(self.p_value)

    def significant(self, alpha: float) -> bool:
        """True when the p-value is defined and below ``alpha``."""
        return self.defined and self.p_value < alpha

    def to_json_dict(self) -> dict:
        """Return the result as a JSON-ready dict (NaN as None)."""
        return {k: _nan_to_none(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json_dict(cls, data: dict) -> TestResult:
        """Rebuild a result written by :meth:`to_json_dict`."""
        return cls(
            method=data["method"],
            statistic=_none_to_nan(data.get("statistic")),
            p_value=_none_to_nan(data.get("p_value")),
            effect=_none_to_nan(data.get("effect")),
            note=data.get("note", ""),
        )


def _nan_to_none(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _none_to_nan(value) -> float:
    return math.nan if value is None else float(value)


def _undefined(method: str, note: str) -> TestResult:
    return TestResult(method, math.nan, math.nan, math.nan, note)


def safe_ratio(numerator, denominator):
    """Divide, giving NaN where the denominator is zero or missing.

    Parameters
    ----------
    numerator, denominator : float or array-like

    Returns
    -------
    float or numpy.ndarray
        ``numerator / denominator`` with NaN where ``denominator`` is 0.
    """
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def wilson_interval(successes, n, *, alpha: float = 0.05):
    """Wilson score interval of a proportion.

    Parameters
    ----------
    successes : int or array-like
        Number of successes (for example wins).
    n : int or array-like
        Number of trials; where ``n`` is 0 the interval is NaN.
    alpha : float, default 0.05
        One minus the confidence level.

    Returns
    -------
    (low, high) : tuple of float or of numpy.ndarray
        The bounds, same shape as the inputs.

    Examples
    --------
    >>> low, high = wilson_interval(10, 40)
    >>> round(low, 3), round(high, 3)
    (0.142, 0.402)
    """
    x = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    z = stats.norm.ppf(1 - alpha / 2)
    ok = n > 0
    n_safe = np.where(ok, n, 1.0)
    p = x / n_safe
    denom = 1 + z**2 / n_safe
    centre = (p + z**2 / (2 * n_safe)) / denom
    half = z * np.sqrt(p * (1 - p) / n_safe + z**2 / (4 * n_safe**2)) / denom
    # At 0% or 100% rounding can leave an end a hair on the wrong side of
    # the estimate; the interval always contains it.
    low = np.where(ok, np.clip(np.minimum(centre - half, p), 0.0, 1.0), np.nan)
    high = np.where(ok, np.clip(np.maximum(centre + half, p), 0.0, 1.0), np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(
            f"alternative must be one of {ALTERNATIVES}; found {alternative!r}"
        )


def two_proportion_test(
    x1: int, n1: int, x2: int, n2: int, *, alternative: str = "two-sided"
) -> TestResult:
    """Pooled z test that two proportions differ.

    Parameters
    ----------
    x1, n1 : int
        Successes and trials of the first group.
    x2, n2 : int
        Successes and trials of the second group.
    alternative : {"two-sided", "larger", "smaller"}, default "two-sided"
        ``"larger"`` tests that the first proportion is the larger.

    Returns
    -------
    TestResult
        ``effect`` holds ``x1/n1 - x2/n2``. The p-value is NaN when a group
        is empty or both proportions are 0 or both are 1.
    """
    _check_alternative(alternative)
    method = "two-proportion z test"
    if n1 <= 0 or n2 <= 0:
        return _undefined(method, "a group has no records")
    pooled = (x1 + x2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        return _undefined(method, "every record has the same outcome")
    z, p = proportions_ztest(
        [x1, x2], [n1, n2], alternative=alternative, prop_var=False
    )
    return TestResult(method, float(z), float(p), x1 / n1 - x2 / n2)


def one_sided_proportion_test(x1: int, n1: int, x2: int, n2: int) -> TestResult:
    """One-sided z test that the first proportion is larger than the second.

    Used by the review to test that grade A converts better than grade B.
    Same as ``two_proportion_test(..., alternative="larger")``.
    """
    result = two_proportion_test(x1, n1, x2, n2, alternative="larger")
    return TestResult(
        "one-sided two-proportion z test",
        result.statistic,
        result.p_value,
        result.effect,
        result.note,
    )


def one_sample_proportion_test(
    x: int, n: int, p0: float, *, alternative: str = "two-sided"
) -> TestResult:
    """z test of one proportion against a reference value ``p0``.

    The variance uses ``p0`` (a score test), so a group with 0 or all
    successes still gets a p-value as long as ``0 < p0 < 1``.

    Returns
    -------
    TestResult
        ``effect`` holds ``x/n - p0``; NaN p-value when ``n`` is 0 or ``p0``
        is 0, 1 or NaN.
    """
    _check_alternative(alternative)
    method = "one-sample proportion z test"
    if n <= 0:
        return _undefined(method, "the group has no records")
    if not 0 < p0 < 1:
        return _undefined(method, "the reference proportion is 0, 1 or unknown")
    z, p = proportions_ztest(x, n, value=p0, alternative=alternative, prop_var=p0)
    return TestResult(method, float(z), float(p), x / n - p0)


def cochran_armitage_trend(
    successes, totals, *, scores=None, alternative: str = "two-sided"
) -> TestResult:
    """Cochran-Armitage test for a trend of a proportion over ordered groups.

    Parameters
    ----------
    successes : array-like of int
        Successes per group, groups in their natural order.
    totals : array-like of int
        Records per group.
    scores : array-like of float, optional
        Score of each group; default 0, 1, 2, ...
    alternative : {"two-sided", "larger", "smaller"}, default "two-sided"
        ``"larger"`` tests that the proportion rises with the score.

    Returns
    -------
    TestResult
        ``statistic`` is the z statistic; ``effect`` the slope of the
        least-squares line of the proportion on the score.
    """
    _check_alternative(alternative)
    method = "Cochran-Armitage trend test"
    x = np.asarray(successes, dtype=float)
    n = np.asarray(totals, dtype=float)
    s = np.arange(len(x), dtype=float) if scores is None else np.asarray(scores, float)
    keep = n > 0
    x, n, s = x[keep], n[keep], s[keep]
    big_n = n.sum()
    if len(x) < 2 or big_n == 0:
        return _undefined(method, "fewer than two groups with records")

    p_bar = x.sum() / big_n
    s_bar = (n * s).sum() / big_n
    sxx = (n * (s - s_bar) ** 2).sum()
    if p_bar in (0.0, 1.0) or sxx == 0:
        return _undefined(method, "every record has the same outcome or score")
    t = (s * (x - n * p_bar)).sum()
    z = t / math.sqrt(p_bar * (1 - p_bar) * sxx)
    return TestResult(method, z, _normal_p(z, alternative), t / sxx)


def _normal_p(z: float, alternative: str) -> float:
    if alternative == "larger":
        return float(stats.norm.sf(z))
    if alternative == "smaller":
        return float(stats.norm.cdf(z))
    return float(2 * stats.norm.sf(abs(z)))


def logistic_trend_test(values, outcome) -> TestResult:
    """Likelihood-ratio test of the slope of a one-variable logistic model.

    Parameters
    ----------
    values : array-like of float
        The predictor (a numeric field, or a score); NaN rows are dropped.
    outcome : array-like of 0/1
        The outcome (won = 1).

    Returns
    -------
    TestResult
        ``statistic`` is the LR chi-square (1 df); ``effect`` the slope on
        the log-odds scale. NaN when the model cannot be fitted (one
        outcome, one value, or perfect separation).
    """
    import statsmodels.api as sm

    method = "logistic regression likelihood-ratio test"
    x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
    y = np.asarray(outcome, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(y) < 3 or y.min() == y.max() or np.ptp(x) == 0:
        return _undefined(method, "one outcome or one value only")
    try:
        fit = sm.Logit(y, sm.add_constant(x)).fit(disp=0, warn_convergence=False)
    except Exception as exc:  # perfect separation, singular matrix
        return _undefined(method, f"model could not be fitted ({type(exc).__name__})")
    lr = float(2 * (fit.llf - fit.llnull))
    return TestResult(method, lr, float(stats.chi2.sf(lr, 1)), float(fit.params[1]))


def chi_square_test(
    successes, totals, *, lambda_: str = "log-likelihood"
) -> TestResult:
    """Test that a proportion is the same in every group (k x 2 table).

    Parameters
    ----------
    successes, totals : array-like of int
        Successes and records per group; empty groups are ignored.
    lambda_ : {"log-likelihood", "pearson"}, default "log-likelihood"
        The likelihood-ratio (G) test, or Pearson's chi-square.

    Returns
    -------
    TestResult
        ``effect`` holds the spread (max minus min) of the group
        proportions. NaN when fewer than two groups or a single outcome.
    """
    name = (
        "likelihood-ratio (G) test"
        if lambda_ == "log-likelihood"
        else ("Pearson chi-square test")
    )
    x = np.asarray(successes, dtype=float)
    n = np.asarray(totals, dtype=float)
    keep = n > 0
    x, n = x[keep], n[keep]
    if len(x) < 2:
        return _undefined(name, "fewer than two groups with records")
    if x.sum() in (0.0, n.sum()):
        return _undefined(name, "every record has the same outcome")
    table = np.column_stack([x, n - x])
    stat, p, _, _ = stats.chi2_contingency(table, correction=False, lambda_=lambda_)
    rates = x / n
    return TestResult(name, float(stat), float(p), float(rates.max() - rates.min()))


def single_field_auc(values, outcome, *, kind: str = "categorical") -> float:
    """Area under the ROC curve of one field alone, in its best direction.

    Categorical values (missing as a level of its own) are ranked by their
    own conversion rate, so the figure is optimistic: it is meant to catch
    a field that separates won from lost almost perfectly, not to rate a
    model. Numeric values (missing set below the minimum) are used as they
    are, in whichever direction separates better.

    Parameters
    ----------
    values : array-like
        The field on closed records.
    outcome : array-like of 0/1
        Won = 1, lost = 0.
    kind : str, default "categorical"
        ``"numeric"`` or ``"range"`` to use the values as numbers.

    Returns
    -------
    float
        AUC between 0.5 and 1; NaN when only one outcome is present.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(outcome, dtype=float)
    if len(y) == 0 or y.min() == y.max():
        return math.nan
    s = pd.Series(values).reset_index(drop=True)
    if kind in ("numeric", "range"):
        x = pd.to_numeric(s, errors="coerce")
        score = x.fillna(x.min() - 1 if x.notna().any() else 0.0)
    else:
        key = s.astype("object").where(s.notna(), "\0missing")
        score = pd.Series(y).groupby(key.to_numpy()).transform("mean")
    auc = float(roc_auc_score(y, score.to_numpy(float)))
    return max(auc, 1 - auc)


def population_stability_index(expected, actual, *, epsilon: float = 1e-4) -> float:
    """Population stability index between two distributions over the same bins.

    Parameters
    ----------
    expected, actual : array-like of float
        Counts (or shares) per bin in the reference and the new period.
    epsilon : float, default 1e-4
        Floor for a share of 0, so an empty bin adds a finite amount.

    Returns
    -------
    float
        ``sum((a - e) * ln(a / e))`` over bins of shares; NaN when either
        side has no records. Common reading: < 0.1 stable, 0.1-0.25 some
        shift, > 0.25 a large shift.
    """
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape:
        raise ValueError(
            f"expected and actual need the same bins; found {e.shape} and {a.shape}"
        )
    if e.sum() <= 0 or a.sum() <= 0:
        return math.nan
    e = np.clip(e / e.sum(), epsilon, None)
    a = np.clip(a / a.sum(), epsilon, None)
    return float(((a - e) * np.log(a / e)).sum())
