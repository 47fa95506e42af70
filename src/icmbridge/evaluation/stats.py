"""How sure a figure is: bootstrap intervals over images and paired differences between decoders.

Every mean icmbridge reports is an average over a few dozen or hundred images, so it carries a
95 % percentile-bootstrap interval over images. Set-level COCO AP is bootstrapped the same way, by
resampling images and recomputing AP on the resampled set (see
:class:`icmbridge.tasks.scoring.APResampler`), not by averaging per-image APs.

Why one fixed resampling plan: the plan (which images each replicate draws, as counts) depends
only on the number of images and a seed. Two decoders scored on the same images therefore get
their replicates from the same draws, and the difference of their replicates is a *paired*
bootstrap of the difference: image-to-image variation that both decoders share cancels, which is
what makes a small decoder-vs-base effect visible at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

N_RESAMPLES = 1000
LEVEL = 0.95
SEED = 0


def resample_plan(n: int, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(n_resamples, n) int counts: how often each image is drawn in each bootstrap replicate."""
    if n < 1:
        return np.zeros((n_resamples, 0), dtype=np.int64)
    rng = np.random.default_rng([seed, n])
    draws = rng.integers(0, n, size=(n_resamples, n))
    counts = np.zeros((n_resamples, n), dtype=np.int64)
    np.add.at(counts, (np.arange(n_resamples)[:, None], draws), 1)
    return counts


def mean_replicates(values: Sequence[float | None], plan: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of the mean of ``values`` (None = undefined for that image)."""
    v = np.array([math.nan if x is None else float(x) for x in values], dtype=np.float64)
    ok = np.isfinite(v)
    if not ok.any():
        return np.full(len(plan), math.nan)
    w = plan[:, ok].astype(np.float64)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = (w @ v[ok]) / total
    reps[total == 0] = math.nan
    return reps


def interval(
    replicates: np.ndarray | Sequence[float], point: float | None = None, level: float = LEVEL
) -> list[float] | None:
    """Percentile interval ``[lo, hi]`` of the finite replicates (None if there are none).

    With the full-set value ``point``, the replicates are first shifted so that their median
    is ``point``. Why: set-level AP over many classes is not a mean, and its bootstrap
    distribution is not centred on the full-set value: a resample that misses every object of
    a rare class drops that class from the class average (on coco128 with YOLOX-Nano the
    replicates' median lies 0.02 above the full-set AP). The spread of the replicates is what
    the bootstrap measures well; their location is an artefact of resampling classes away.
    For plain means the shift is ~0 and this is the ordinary percentile interval.
    """
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return None
    if point is not None and math.isfinite(point):
        r = r - np.median(r) + point
    tail = (1 - level) / 2
    lo, hi = np.quantile(r, [tail, 1 - tail])
    return [float(lo), float(hi)]


def covers_zero(ci: Sequence[float] | None) -> bool | None:
    """True when the interval contains 0 (no difference can be told from chance)."""
    if ci is None:
        return None
    return bool(ci[0] <= 0 <= ci[1])


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def paired_difference(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    keys: Sequence[str] | None = None,
    relative: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Differences ``a − b`` of two score results on the same images, with paired intervals.

    ``a`` and ``b`` are what :func:`icmbridge.evaluation.core.score` returns (their ``mean`` and
    their in-memory ``replicates``). Per key: ``diff`` (point estimate), ``ci`` (95 % paired
    bootstrap interval), ``covers_zero``; keys in ``relative`` also get ``rel`` / ``rel_ci`` in
    per cent of ``b`` (the paper's "ΔmAP rel."); by default the catalogue's ``relative`` metrics.
    """
    from icmbridge.metrics import catalogue

    if relative is None:
        relative = catalogue.select(relative=True)
    reps_a, reps_b = getattr(a, "replicates", None), getattr(b, "replicates", None)
    if reps_a is None or reps_b is None:
        raise ValueError("paired_difference needs score results that carry their replicates")
    if a.get("n_images") != b.get("n_images"):
        raise ValueError("paired differences need the same images on both sides")
    out: dict[str, dict[str, Any]] = {}
    for key in keys or [k for k in reps_a if k in reps_b]:
        ma, mb = _finite(a["mean"].get(key)), _finite(b["mean"].get(key))
        if ma is None or mb is None or key not in reps_a or key not in reps_b:
            continue
        ra, rb = np.asarray(reps_a[key]), np.asarray(reps_b[key])
        ci = interval(ra - rb, ma - mb)
        entry: dict[str, Any] = {"diff": ma - mb, "ci": ci, "covers_zero": covers_zero(ci)}
        if key in relative and mb != 0:
            with np.errstate(invalid="ignore", divide="ignore"):
                rel_ci = interval(100 * (ra / rb - 1), 100 * (ma / mb - 1))
            entry.update(rel=100 * (ma / mb - 1), rel_ci=rel_ci)
        out[key] = entry
    return out


def format_ci(value: float | None, ci: Sequence[float] | None, fmt: str, unit: str = "") -> str:
    """``value [lo, hi]`` for tables and logs, ``unit`` after the value (— for a missing one)."""
    if value is None:
        return "—"
    text = format(value, fmt) + unit
    if ci is None:
        return text
    return f"{text} [{format(ci[0], fmt)}, {format(ci[1], fmt)}]"


def format_diff(entry: Mapping[str, Any] | None, fmt: str = "+.3f", rel: bool = False) -> str:
    """A paired difference as text; a ``~`` marks one whose interval covers 0."""
    if not entry:
        return "—"
    value, ci = (entry.get("rel"), entry.get("rel_ci")) if rel else (entry["diff"], entry["ci"])
    if value is None:
        return "—"
    unit = "%" if rel else ""
    text = f"{format(value, fmt)}{unit}"
    if ci is not None:
        text += f" [{format(ci[0], fmt)}{unit}, {format(ci[1], fmt)}{unit}]"
    zero = covers_zero(ci)
    return f"~{text}" if zero else text


__all__ = [
    "LEVEL",
    "N_RESAMPLES",
    "covers_zero",
    "format_ci",
    "format_diff",
    "interval",
    "mean_replicates",
    "paired_difference",
    "resample_plan",
]
