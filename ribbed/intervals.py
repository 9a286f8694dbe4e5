"""Means with 95% confidence intervals across seeds, and Welch's test of a difference: the two
statistics that reports and comparisons show, in one place so that both show the same numbers.

The interval is Student's t-interval of the mean of independent runs (seeds): it needs two runs
at least; one run has a mean and no interval.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
from scipy import stats

__all__ = ["Interval", "mean_ci", "welch_p"]


class Interval(NamedTuple):
    """A mean over ``n`` runs and its confidence interval (NaN bounds for fewer than two runs)."""

    mean: float
    lo: float
    hi: float
    n: int

    def text(self, digits: int = 4) -> str:
        """``0.8312 ± 0.0121`` (half the interval), or the mean alone for one run."""
        if self.n == 0 or math.isnan(self.mean):
            return "-"
        if self.n < 2 or math.isnan(self.lo):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {(self.hi - self.lo) / 2:.{digits}f}"


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """The mean of the finite ``values`` and its t-interval (``confidence``, two-sided)."""
    array = _finite(values)
    n = len(array)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(array.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * array.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


def welch_p(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """The two-sided p-value of Welch's t-test that ``a`` and ``b`` have the same mean; NaN when
    either has fewer than two finite values, or both have no spread (the test is undefined)."""
    x, y = _finite(a), _finite(b)
    if len(x) < 2 or len(y) < 2 or (x.std() == 0 and y.std() == 0):
        return math.nan
    return float(stats.ttest_ind(x, y, equal_var=False).pvalue)
