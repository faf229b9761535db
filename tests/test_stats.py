"""The percentile behind every reported p95/p99: linear interpolation between the nearest ranks."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.core.stats import percentile


def test_linear_interpolation_between_ranks():
    values = [4.0, 1.0, 3.0, 2.0, 5.0]  # order does not matter
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    # position 0.95 * 4 = 3.8: 4 + 0.8 * (5 - 4)
    assert percentile(values, 95) == pytest.approx(4.8)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


def test_matches_numpy_default_and_returns_a_float():
    rng = np.random.default_rng(0)
    times = rng.exponential(size=37)
    for q in (50, 90, 95, 99):
        value = percentile(times, q)
        assert type(value) is float
        assert value == pytest.approx(float(np.percentile(times, q)))


def test_a_single_value_is_every_percentile():
    assert percentile([0.25], 95) == 0.25


@pytest.mark.parametrize(("values", "q"), [([], 95), ([1.0], -1), ([1.0], 101), ([1.0], float("nan"))])
def test_refuses_no_values_and_q_outside_0_to_100(values: list[float], q: float):
    with pytest.raises(ValueError, match="percentile"):
        percentile(values, q)
