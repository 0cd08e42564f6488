"""Intervals over seeds and episodes (steerlab.eval.metrics.success_draws / draws_interval)."""

import numpy as np
import pytest
from scipy import stats

from steerlab.eval.metrics import draws_interval, success_draws


def test_one_seed_is_the_jeffreys_interval_and_draws_are_deterministic():
    a = success_draws([20], [50], draws=20_000, seed=3)
    assert np.array_equal(a, success_draws([20], [50], draws=20_000, seed=3))
    lo, hi = draws_interval(a)
    jeff = stats.beta(20.5, 30.5).ppf([0.025, 0.975])
    assert lo == pytest.approx(jeff[0], abs=0.01) and hi == pytest.approx(jeff[1], abs=0.01)


def test_all_failures_keep_a_nonzero_upper_bound():
    lo, hi = draws_interval(success_draws([0, 0], [50, 50]))
    assert lo < 0.01 and 0.01 < hi < 0.1


def test_seed_spread_widens_the_interval_beyond_the_pooled_episodes():
    # same pooled rate (0.5 over 100 episodes), but seeds that disagree: the seed level must show
    lo_pool, hi_pool = draws_interval(success_draws([50], [100]))
    lo, hi = draws_interval(success_draws([10, 40], [50, 50]))
    assert hi - lo > 1.5 * (hi_pool - lo_pool)
    assert lo < 0.5 < hi


def test_difference_of_draws_separates_a_clear_gap():
    a = success_draws([45, 44, 46], [50, 50, 50], seed=1)
    b = success_draws([20], [50], seed=0)
    lo, hi = draws_interval(a - b)
    assert 0.3 < lo < hi < 0.7


@pytest.mark.parametrize("k,n", [([], []), ([3], [2]), ([1, 2], [5]), ([-1], [5]), ([0], [0])])
def test_bad_counts_are_refused(k, n):
    with pytest.raises(ValueError):
        success_draws(k, n)
