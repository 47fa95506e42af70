"""Bjøntegaard delta rate: the average bitrate difference between two rate-quality curves.

Piecewise cubic (PCHIP) interpolation of log-rate against quality over the overlapping quality
range, as in the current VCEG/JVET practice (the 2001 cubic fit misbehaves on few points).
Negative BD-rate: the test codec needs fewer bits than the anchor for the same quality.

A point that costs more bits than another of the same curve without better quality is dropped
first (the curve is reduced to its operational, Pareto-optimal points): nobody would code at it,
and PCHIP needs quality to rise strictly with rate. Measured curves have such points, e.g. a
codec pinned at its lowest setting for two target rates.

Why not the ``bjontegaard`` package (1.3.0, ``bd_rate(..., method="pchip")``): on well-formed
curves it gives the same number to 1e-13 (a test pins its values), but it raises ``ValueError:
`x` must be strictly increasing`` on a curve with a non-operational point, which our measured
classical curves have, and returns NaN where the curves share no quality range (here: None, which
tables show as —). What is left here is that reduction plus scipy's PCHIP and its integral.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator


def _curve(rates: Sequence[float], quality: Sequence[float]) -> PchipInterpolator | None:
    measured = sorted(
        (math.log(r), q)
        for r, q in zip(rates, quality, strict=True)
        if r and r > 0 and q is not None and math.isfinite(q)
    )
    points: list[tuple[float, float]] = []
    for lr, q in measured:  # by rising rate: keep a point only if it beats every cheaper one
        if not points or q > points[-1][1]:
            points.append((lr, q))
    if len(points) < 2:
        return None
    return PchipInterpolator(np.array([p[1] for p in points]), np.array([p[0] for p in points]))


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
) -> float | None:
    """BD-rate of test against anchor in percent, or None when a curve has fewer than two
    operational points or the curves share no quality range."""
    a, t = _curve(anchor_rates, anchor_quality), _curve(test_rates, test_quality)
    if a is None or t is None:
        return None
    lo, hi = max(a.x[0], t.x[0]), min(a.x[-1], t.x[-1])
    if hi <= lo:
        return None
    diff = (t.integrate(lo, hi) - a.integrate(lo, hi)) / (hi - lo)
    return float((math.exp(diff) - 1) * 100)
