"""``icmbridge curves``: rate curves of our codecs and the classical ones, and their BD-rates.

Each of our models (rate points of one family, e.g. ``base-low,base,base-high``) codes the set;
each classical codec then codes every image at that image's rate under our model (the largest
quality whose file is not larger), so both curves have points at matched rates. Quality axes:
PSNR, the people's metrics ColorVideoVDP (JOD) and SSIMULACRA 2 (on the 8-bit decoded images;
--no-people-metrics skips them) and the task's AP50 and AP (COCO, over the set; face detection by
default, any task with --task).
BD-rate (PCHIP) of ours against each classical codec: negative means ours needs fewer bits for
the same quality. A single model gives the matched-rate comparison without a BD-rate (shown "—").

Every BD-rate carries a 95 % bootstrap interval: all points of all curves are scored on the same
fixed resampling plan (:mod:`icmbridge.evaluation.stats`), so each replicate is a whole resampled
image set, coded by every codec at every rate; the BD-rate recomputed on each replicate's means
(and set-level AP50s) gives the interval, paired like the curves themselves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from icmbridge.errors import InputError
from icmbridge.evaluation.results import Results
from icmbridge.metrics import catalogue

if TYPE_CHECKING:
    from icmbridge.metrics.people import PeopleMetrics


_CURVE_KEYS = catalogue.select(curve=True)
#: Quality axes that get a BD-rate when measured (in the order tables show them).
BD_KEYS = catalogue.select(bd_axis=True)


def _point(result: dict[str, Any]) -> dict[str, Any]:
    """One point of a rate curve: the means, and their 95 % intervals over images."""
    point = {k: result["mean"].get(k) for k in _CURVE_KEYS}
    point["ci"] = {k: result["ci"][k] for k in _CURVE_KEYS if k in result["ci"]}
    return point


def bd_rate_replicates(
    anchor: list[dict[str, np.ndarray]], test: list[dict[str, np.ndarray]], key: str
) -> np.ndarray:
    """BD-rate of ``test`` against ``anchor`` on every bootstrap replicate (NaN where undefined).

    Each list holds one curve's points (rising rate) as the replicates of their means, all drawn
    with the same resampling plan, so replicate ``r`` of every point describes the same images.
    """
    from icmbridge.evaluation.bdrate import bd_rate

    if not anchor or not test or any(key not in p for p in anchor + test):
        return np.array([])
    n = len(anchor[0]["bpp"])
    out = np.full(n, np.nan)
    for r in range(n):
        value = bd_rate(
            [p["bpp"][r] for p in anchor],
            [p[key][r] for p in anchor],
            [p["bpp"][r] for p in test],
            [p[key][r] for p in test],
        )
        if value is not None:
            out[r] = value
    return out


def bd_rate_texts(
    bd_rates: dict[str, dict[str, float | None]] | None,
    cis: dict[str, dict[str, Any]] | None,
) -> dict[str, dict[str, str]]:
    """Each codec's BD-rates as ``+x.x% [lo, hi]`` text (— where none exists), for terminals."""
    from icmbridge.evaluation.stats import format_ci

    cis = cis or {}
    bd = catalogue.BD_FMT
    return {
        c: {k: format_ci(x, (cis.get(c) or {}).get(k), bd, unit="%") for k, x in v.items()}
        for c, v in (bd_rates or {}).items()
    }


#: How terminals and tables name each quality axis (the catalogue's names).
AXIS_NAMES = {k: catalogue.get(k).label for k in BD_KEYS}


def bd_rate_line(texts: dict[str, str]) -> str:
    """One codec's BD-rate texts (from :func:`bd_rate_texts`) as ``PSNR …, JOD …, AP50 …``."""
    return ", ".join(f"{catalogue.get(k).label} {v}" for k, v in texts.items())


def run_curves(
    models: list[str],
    codecs: list[str],
    samples: list,
    task: Any,
    out: Path,
    set_name: str = "",
    command: str | None = None,
    people: PeopleMetrics | None = None,
) -> Results:
    """Code ``samples`` with each of ``models`` and each classical codec at the same rates, score
    them (with ``people``, a :class:`~icmbridge.metrics.people.PeopleMetrics`, when given) and
    write ``out/results.json`` with the curves and BD-rates on every quality axis measured."""
    from icmbridge.baselines.classical import available_codecs, code_at_bpp
    from icmbridge.codec.store import load_codec
    from icmbridge.evaluation.bdrate import bd_rate
    from icmbridge.evaluation.core import Coded, code_with_model, score
    from icmbridge.evaluation.stats import interval

    missing = {c: r for c, r in available_codecs().items() if c in codecs and r}
    codecs = [c for c in codecs if c not in missing]
    gts = [s.target() for s in samples]
    curves: dict[str, list[dict[str, Any]]] = {"ours": []}
    curves.update({c: [] for c in codecs})
    # bootstrap replicates of each point's means, for the BD-rate intervals
    replicates: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in curves}
    for m in models:
        print(f"[curves] {m}", file=sys.stderr, flush=True)
        ours = code_with_model(load_codec(m), samples, progress=False)
        scored = score(ours, task, gts, progress=False, people=people)
        curves["ours"].append({"model": m, **_point(scored)})
        replicates["ours"].append(scored.replicates)
        for c in codecs:
            coded, above = [], 0
            for s, o in zip(samples, ours, strict=True):
                res = code_at_bpp(c, s.image, 8 * o.num_bytes / s.image[..., 0].size)
                coded.append(Coded(s.name, s.image, res.decoded, len(res.data)))
                above += res.above_target
            # images where even the codec's lowest quality lies above our rate are counted
            scored = score(coded, task, gts, progress=False, people=people)
            curves[c].append({**_point(scored), "images_above_rate": above})
            replicates[c].append(scored.replicates)

    def bd(name: str, key: str) -> float | None:
        a, t = curves[name], curves["ours"]
        return bd_rate(
            [p["bpp"] for p in a], [p[key] for p in a], [p["bpp"] for p in t], [p[key] for p in t]
        )

    # every axis measured (--task none: no AP50; --no-people-metrics: no JOD, SSIMULACRA 2)
    skip = set(catalogue.select(group="task")) if task is None else set()
    skip |= set(catalogue.select(group="people")) if people is None else set()
    keys = [k for k in BD_KEYS if k not in skip]
    bd_rates = {c: {k: bd(c, k) for k in keys} for c in codecs}
    bd_cis = {
        c: {
            k: None
            if v is None
            else interval(bd_rate_replicates(replicates[c], replicates["ours"], k), v)
            for k, v in bd_rates[c].items()
        }
        for c in codecs
    }
    gt_kind = "annotations" if all(g is not None for g in gts) else "pseudo"
    results = Results(
        kind="curves",
        title="icmbridge rate curves",
        command=command or "icmbridge curves --models " + ",".join(models),
        set=set_name,
        n_images=len(samples),
        task=task.name if task is not None else "none",
        ground_truth=gt_kind,
        rate_curves=curves,
        bd_rate=bd_rates,
        bd_rate_ci=bd_cis,
        unavailable=missing,
        people_metrics=None if people is None else people.info(),
    )
    out.mkdir(parents=True, exist_ok=True)
    results.write(out / "results.json")
    return results


def run(args: argparse.Namespace) -> int:
    import shlex

    from icmbridge.data import load_samples
    from icmbridge.evaluation.stats import format_ci
    from icmbridge.metrics.people import people_argv, people_from_args
    from icmbridge.tasks import task_argv, task_from_args

    models = [m for m in args.models.split(",") if m]
    if not models:
        raise InputError("--models needs at least one model (two or more for BD-rates)")
    people = people_from_args(args)
    samples = load_samples(None, args.set, args.limit)
    words = ["icmbridge", "curves", "--models", args.models, "--codecs", args.codecs]
    words += ["--set", args.set, *task_argv(args), *people_argv(args)]
    words += (["--limit", str(args.limit)] if args.limit else []) + ["-o", args.out]
    res = run_curves(
        models,
        [c for c in args.codecs.split(",") if c],
        samples,
        task_from_args(args),
        Path(args.out),
        args.set,
        command=shlex.join(words),
        people=people,
    )
    for name, pts in (res.rate_curves or {}).items():
        row = "  ".join(
            f"{p['bpp']:.3f} bpp {format_ci(p['psnr'], p['ci'].get('psnr'), '.2f')} dB"
            + "".join(
                f" {AXIS_NAMES[k]} {format_ci(p.get(k), p['ci'].get(k), f)}"
                for k, f in (
                    ("cvvdp_jod", ".2f"),
                    ("ssimulacra2", "+.1f"),
                    ("task_ap50", ".3f"),
                    ("task_ap", ".3f"),
                )
                if p.get(k) is not None
            )
            for p in pts
        )
        print(f"{name:>6}: {row}")
    print("[..]: 95 % bootstrap intervals over images")
    for c, fmt in bd_rate_texts(res.bd_rate, res.bd_rate_ci).items():
        print(f"BD-rate ours vs {c}: {bd_rate_line(fmt)}")
    print(f"written: {Path(args.out) / 'results.json'}")
    return 0
