"""Percentiles of the routing layer's latencies: linear interpolation between the two nearest
ranks. Expected figures are worked out by hand: for n sorted values x[0..n-1], the position
of percentile p is h = (n - 1) x p / 100, and the value x[floor(h)] + frac(h) x (x[floor(h)
+ 1] - x[floor(h)])."""

from __future__ import annotations

import random

import pytest

from cutover.errors import TerminalError
from cutover.routing.stats import LatencySample, percentile

pytestmark = pytest.mark.unit

ONE_TO_100 = [float(v) for v in range(1, 101)]


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        # 1..100: h = 99 x 0.99 = 98.01 -> 99 + 0.01 x (100 - 99); not the maximum
        (ONE_TO_100, 99, 99.01),
        # h = 99 x 0.5 = 49.5 -> 50 + 0.5 x (51 - 50)
        (ONE_TO_100, 50, 50.5),
        # h = 99 x 0.9 = 89.1 -> 90 + 0.1
        (ONE_TO_100, 90, 90.1),
        (ONE_TO_100, 0, 1.0),
        (ONE_TO_100, 100, 100.0),
        # given unsorted: 10 20 30 40; h = 3 x 0.5 = 1.5 -> 20 + 0.5 x 10
        ([40.0, 10.0, 30.0, 20.0], 50, 25.0),
        # h = 3 x 0.99 = 2.97 -> 30 + 0.97 x 10
        ([40.0, 10.0, 30.0, 20.0], 99, 39.7),
        # h = 3 x 0.25 = 0.75 -> 10 + 0.75 x 10
        ([40.0, 10.0, 30.0, 20.0], 25, 17.5),
        # two values: h = 0.99 -> 2 + 0.99 x (12 - 2)
        ([12.0, 2.0], 99, 11.9),
        # one value is every percentile of itself
        ([7.5], 50, 7.5),
        ([7.5], 99, 7.5),
    ],
)
def test_percentile_interpolates_between_ranks(
    values: list[float], pct: float, expected: float
) -> None:
    assert percentile(values, pct) == pytest.approx(expected, abs=1e-9)


def test_no_values_have_no_percentile() -> None:
    assert percentile([], 99) is None
    assert LatencySample().summary() == {"count": 0, "p50_ms": None, "p99_ms": None}


@pytest.mark.parametrize("pct", [-1, 100.5])
def test_a_percentile_outside_0_to_100_is_refused(pct: float) -> None:
    with pytest.raises(TerminalError, match="between 0 and 100"):
        percentile(ONE_TO_100, pct)


def test_a_latency_sample_summarises_its_p50_and_p99() -> None:
    sample = LatencySample(random.Random(1))
    for ms in reversed(ONE_TO_100):
        sample.add(ms)
    assert sample.summary() == {"count": 100, "p50_ms": 50.5, "p99_ms": 99.01}
