"""The scaling curve of a long run: quality against CPU-hours, a fit, and its forecast.

Reads the JSON lines of ``scripts/scaling_point.py`` and draws, against the CPU-hours the run had
spent (log axis), Kodak PSNR and ColorVideoVDP of the run beside AVIF at the same bytes, and the
paired gap to AVIF with its 95 % interval. Two fits of the gap, on the points at or after
``--fit-from`` hours, each solved for the hours at which the gap would reach ``--targets`` (dB):

* log-linear, ``a + b·log10(hours)``: keeps rising where training curves flatten, so its hours
  are an optimistic forecast, a lower bound;
* saturating, ``g∞ − c·hours^(−α)`` (from four points on): where ``g∞`` lies below a target, the
  fit says this model at this λ does not get there however long it trains.

    python scripts/scaling_plot.py results/scaling/mbt64-mse [--fit-from 0.2] [--targets -1,0]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def fit_log_linear(hours: np.ndarray, gap: np.ndarray) -> tuple[float, float] | None:
    """(a, b) of gap ≈ a + b·log10(hours), or None with fewer than two distinct points."""
    if len(set(hours.tolist())) < 2:
        return None
    b, a = np.polyfit(np.log10(hours), gap, 1)
    return float(a), float(b)


def fit_saturating(hours: np.ndarray, gap: np.ndarray) -> dict[str, float] | None:
    """g∞, c, α of gap ≈ g∞ − c·hours^(−α) (and g∞'s standard error), or None: too few
    points (4) or no convergence."""
    if len(hours) < 4:
        return None
    from scipy.optimize import curve_fit

    def model(h, g_inf, c, alpha):
        return g_inf - c * h ** (-alpha)

    try:
        p, cov = curve_fit(
            model,
            hours,
            gap,
            p0=(gap.max() + 1, 1.0, 0.5),
            bounds=([-50, 0, 0.01], [20, 1e3, 3]),
            maxfev=20000,
        )
    except (RuntimeError, ValueError):
        return None
    return {
        "g_inf": float(p[0]),
        "c": float(p[1]),
        "alpha": float(p[2]),
        "g_inf_se": float(np.sqrt(cov[0, 0])) if np.isfinite(cov[0, 0]) else None,
    }


def saturating_hours_to(target: float, fit: dict[str, float]) -> float | None:
    """Hours at which the saturating fit reaches ``target``; None when g∞ stays below it."""
    if fit["g_inf"] <= target or fit["c"] <= 0:
        return None
    return float((fit["c"] / (fit["g_inf"] - target)) ** (1 / fit["alpha"]))


def hours_to(target: float, a: float, b: float) -> float | None:
    """Hours at which the fitted gap reaches ``target`` (None if it never does: b ≤ 0)."""
    if b <= 0:
        return None
    return float(10 ** ((target - a) / b))


def markdown_table(rows: list[dict]) -> str:
    """One line per point: cost, the run's scores, AVIF's at the same bytes, paired gaps."""

    def gap(r: dict, key: str, fmt: str) -> str:
        g = r["anchor"].get(f"gap_{key}")
        return "—" if g is None else f"{g[0]:{fmt}} [{g[1]:{fmt}}, {g[2]:{fmt}}]"

    def num(v: float | None, fmt: str) -> str:
        return "—" if v is None else f"{v:{fmt}}"

    lines = [
        "| step | CPU-h | wall-h | bpp | PSNR dB | JOD | SSIMULACRA 2 | AVIF bpp | AVIF PSNR "
        "| AVIF JOD | ΔPSNR vs AVIF | ΔJOD vs AVIF |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r["anchor"]
        lines.append(
            f"| {r['step']} | {r['cpu_hours']:.2f} | {r['wall_hours']:.2f} | {r['bpp']:.3f} "
            f"| {r['psnr']:.2f} | {num(r.get('cvvdp_jod'), '.2f')} "
            f"| {num(r.get('ssimulacra2'), '.1f')} | {a['bpp']:.3f} | {a['psnr']:.2f} "
            f"| {num(a.get('cvvdp_jod'), '.2f')} | {gap(r, 'psnr', '+.2f')} "
            f"| {gap(r, 'cvvdp_jod', '+.2f')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="folder with curve.jsonl (the plot and fit go there too)")
    parser.add_argument("--fit-from", type=float, default=0.0, help="fit points from these hours")
    parser.add_argument("--targets", default="-1,0", help="gaps (dB) to forecast the hours of")
    args = parser.parse_args()
    folder = Path(args.folder)
    rows = [json.loads(s) for s in (folder / "curve.jsonl").read_text().splitlines() if s.strip()]
    rows = sorted((r for r in rows if r.get("anchor")), key=lambda r: r["cpu_hours"])
    if not rows:
        raise SystemExit(f"{folder / 'curve.jsonl'} has no point with an anchor yet")
    hours = np.array([r["cpu_hours"] for r in rows])
    gap = np.array([r["anchor"]["gap_psnr"][0] for r in rows])
    keep = hours >= args.fit_from
    fit = fit_log_linear(hours[keep], gap[keep])
    sat = fit_saturating(hours[keep], gap[keep])
    targets = [float(v) for v in args.targets.split(",")]
    forecast = {f"{t:+.1f} dB": hours_to(t, *fit) for t in targets} if fit else {}
    sat_forecast = {f"{t:+.1f} dB": saturating_hours_to(t, sat) for t in targets} if sat else {}
    summary = {
        "points": len(rows),
        "fit": None if fit is None else {"a": fit[0], "b_per_decade": fit[1]},
        "fit_from_hours": args.fit_from,
        "forecast_cpu_hours": forecast,
        "saturating_fit": sat,
        "saturating_forecast_cpu_hours": sat_forecast,
        "last": rows[-1],
    }
    (folder / "fit.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "table.md").write_text(markdown_table(rows))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    ax.plot(hours, [r["psnr"] for r in rows], "o-", label="run")
    ax.plot(hours, [r["anchor"]["psnr"] for r in rows], "s--", label="AVIF, same bytes")
    ax.set(xscale="log", xlabel="CPU-hours", ylabel="Kodak PSNR (dB)", title="PSNR")
    for r, h in zip(rows, hours, strict=True):
        ax.annotate(
            f"{r['bpp']:.3f}",
            (h, r["psnr"]),
            fontsize=7,
            xytext=(2, -9),
            textcoords="offset points",
        )
    ax.legend(fontsize=8)
    ax = axes[1]
    jod = [
        (h, r["cvvdp_jod"], r["anchor"].get("cvvdp_jod"))
        for h, r in zip(hours, rows, strict=True)
        if r.get("cvvdp_jod") is not None
    ]
    if jod:
        ax.plot([j[0] for j in jod], [j[1] for j in jod], "o-", label="run")
        ax.plot([j[0] for j in jod], [j[2] for j in jod], "s--", label="AVIF, same bytes")
        ax.legend(fontsize=8)
    ax.set(xscale="log", xlabel="CPU-hours", ylabel="ColorVideoVDP (JOD)", title="ColorVideoVDP")
    ax = axes[2]
    lo = [r["anchor"]["gap_psnr"][1] for r in rows]
    hi = [r["anchor"]["gap_psnr"][2] for r in rows]
    ax.errorbar(
        hours,
        gap,
        yerr=[gap - lo, np.array(hi) - gap],
        fmt="o",
        capsize=3,
        label="gap to AVIF (95 % CI)",
    )
    if fit is not None:
        ends = [h for h in forecast.values() if h] + [hours.max()]
        xs = np.logspace(math.log10(hours[keep].min()), math.log10(max(ends) * 1.2), 50)
        ax.plot(xs, fit[0] + fit[1] * np.log10(xs), ":", label=f"fit {fit[1]:+.2f} dB/decade")
        if sat is not None:
            ys = sat["g_inf"] - sat["c"] * xs ** (-sat["alpha"])
            ax.plot(xs, ys, "--", label=f"saturating, g∞ {sat['g_inf']:+.2f} dB")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axhline(-1, color="grey", lw=0.8, ls="--")
    ax.set(xscale="log", xlabel="CPU-hours", ylabel="PSNR − AVIF (dB)", title="Gap to AVIF")
    ax.legend(fontsize=8)
    from matplotlib.ticker import NullFormatter

    for ax in axes:  # decades only: minor labels of a short log axis collide
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(folder / "curve.png", dpi=110)
    print(
        json.dumps(
            {
                k: summary[k]
                for k in (
                    "fit",
                    "forecast_cpu_hours",
                    "saturating_fit",
                    "saturating_forecast_cpu_hours",
                )
            }
        )
    )


if __name__ == "__main__":
    main()
