"""The one percentile definition behind every p95/p99 that edgecnn reports.

Latency figures from ``edgecnn benchmark``, the webcam loop and the benchmark scripts are compared with each
other, so they must all mean the same thing by "p95".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile of ``values``, linearly interpolated between the two nearest ranks.

    The definition is NumPy's default (``method="linear"``, Hyndman and Fan's type 7, as in R and Excel's
    PERCENTILE.INC): sort the n values, take the position ``q / 100 * (n - 1)`` counted from 0, and
    interpolate between the values either side of it. The 0th percentile is the minimum, the 100th the
    maximum, the 50th the median; a single value is every percentile of itself.

    Args:
        values: The samples, in any order.
        q: The percentile, from 0 to 100 (95 for p95).

    Returns:
        The percentile as a plain float.

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside 0-100.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be from 0 to 100, got {q}")
    if len(values) == 0:
        raise ValueError("percentile of no values")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q, method="linear"))
