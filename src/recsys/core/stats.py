"""The one percentile definition used for every reported latency and freshness figure."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by the nearest-rank method: an observed value; nan for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be 0..100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
