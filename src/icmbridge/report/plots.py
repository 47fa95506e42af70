"""The report's figures, drawn with matplotlib's object API (no pyplot: no global state, no GUI).

Each function writes ``NAME.png`` (2× DPI, sharp on high-density screens) and ``NAME.svg`` into
a folder and returns the PNG's file name, or None when the results hold nothing to draw, so the
page simply leaves that figure out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from icmbridge.metrics import catalogue

DPI = 200  # 2× matplotlib's 100 dpi figure units
# Our decoders get fixed colours so they read the same in every plot and on the page.
# "ours" is the rate curve of the machine codec's family (base-low, base, ...): base's colour.
_FIXED = {"base": "#d62728", "human": "#1f77b4", "human-li": "#17becf", "ours": "#d62728"}
_PALETTE = [
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
]


def num(value: Any) -> float | None:
    """A finite float, or None for null, NaN, infinities and anything not a number."""
    if isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def codec_colors(labels: Sequence[str]) -> dict[str, str]:
    """A stable colour per codec label: fixed ones for our decoders, the palette for the rest."""
    colors: dict[str, str] = {}
    i = 0
    for label in labels:
        if label in _FIXED:
            colors[label] = _FIXED[label]
        elif label.startswith("base+"):
            colors[label] = ["#ff9896", "#c5b0d5", "#f7b6d2"][i % 3]
            i += 1
        else:
            colors[label] = _PALETTE[len(colors) % len(_PALETTE)]
    return colors


def _save(fig: Figure, folder: Path, name: str) -> str:
    fig.savefig(folder / f"{name}.png", dpi=DPI, bbox_inches="tight", facecolor="white")
    fig.savefig(folder / f"{name}.svg", bbox_inches="tight", facecolor="white")
    return f"{name}.png"


def _style(ax: Any, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _label_dots(ax: Any, dots: Sequence[tuple[str, float, float]], gap_pt: float = 10.0) -> None:
    """Label points so that no two labels overlap: codecs compared at one rate share an x, so
    labels that would collide are pushed apart (up and down alike) with a thin leader line."""
    ax.autoscale_view()
    scale = ax.figure.dpi / 72.0  # display pixels per point
    gap, near = gap_pt * scale, 70 * scale
    xy = [ax.transData.transform((x, y)) for _, x, y in dots]
    ys = [float(p[1]) for p in xy]
    for _ in range(200):  # relax: push apart every close pair of y-neighbours, half each way
        moved = False
        order = sorted(range(len(ys)), key=ys.__getitem__)
        for a, b in zip(order, order[1:], strict=False):
            overlap = gap - (ys[b] - ys[a])
            if abs(xy[a][0] - xy[b][0]) < near and overlap > 1e-3 * gap:
                ys[a] -= overlap / 2
                ys[b] += overlap / 2
                moved = True
        if not moved:
            break
    for (label, x, y), p, ly in zip(dots, xy, ys, strict=True):
        dy = (ly - p[1]) / scale
        arrow = {"arrowstyle": "-", "color": "#999", "lw": 0.5} if abs(dy) > 4 else None
        ax.annotate(label, (x, y), xytext=(9, dy), textcoords="offset points", fontsize=8,
                    va="center", arrowprops=arrow)  # fmt: skip


def _ci(point: Mapping[str, Any], key: str) -> tuple[float, float] | None:
    """The point's 95 % interval of ``key`` when results carry one (``point["ci"][key]``)."""
    ci = point.get("ci")
    pair = ci.get(key) if isinstance(ci, Mapping) else None
    if not isinstance(pair, Sequence) or len(pair) != 2:
        return None
    lo, hi = num(pair[0]), num(pair[1])
    return None if lo is None or hi is None else (min(lo, hi), max(lo, hi))


#: The rate plot's quality axes, in panel order (JOD and SSIMULACRA 2 where measured).
RATE_PANELS = tuple((k, catalogue.get(k).axis_label) for k in catalogue.RATE_AXES)


def rate_plot(
    points: Mapping[str, Mapping[str, Any]],
    curves: Mapping[str, Sequence[Mapping[str, Any]]] | None,
    colors: Mapping[str, str],
    uncompressed_ap50: float | None,
    folder: Path,
) -> str | None:
    """Quality vs bpp, one panel per axis measured (PSNR always; task AP50, ColorVideoVDP JOD,
    SSIMULACRA 2 where the results have them): rate curves as lines, each codec's mean as a
    labelled dot."""

    def measured(key: str) -> bool:
        pts = [p for c in (curves or {}).values() if isinstance(c, Sequence) for p in c]
        values = [*points.values(), *(p for p in pts if isinstance(p, Mapping))]
        return any(num(v.get(key)) is not None for v in values)

    panels = [(k, t) for k, t in RATE_PANELS if k == "psnr" or measured(k)]
    drawn = False
    rows = 1 if len(panels) <= 3 else 2
    cols = math.ceil(len(panels) / rows)
    fig = Figure(figsize=(4.8 * cols if rows == 1 else 9.6, 3.8 * rows))
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    palette = dict(colors)
    for ax, (key, ylabel) in zip(axes, panels, strict=False):
        for name, curve in (curves or {}).items():
            if not isinstance(curve, Sequence):
                continue
            pts = [p for p in curve if isinstance(p, Mapping)]
            xy = [(num(p.get("bpp")), num(p.get(key)), _ci(p, key)) for p in pts]
            xy = sorted((x, y, ci) for x, y, ci in xy if x is not None and y is not None)
            if not xy:
                continue
            color = palette.get(name) or _FIXED.get(name) or _PALETTE[len(palette) % 10]
            palette[name] = color
            models = [str(p["model"]) for p in pts if "model" in p]
            label = f"{name} ({', '.join(models)})" if models else name
            xs, ys, cis = zip(*xy, strict=True)
            ax.plot(xs, ys, "o-", color=color, lw=1.6, ms=3.5, alpha=0.8, label=label)
            bars = [(x, y, ci) for x, y, ci in xy if ci is not None]
            if bars:  # the 95 % interval over images of each point
                bx, by, bci = zip(*bars, strict=True)
                err = [[max(0.0, y - c[0]) for y, c in zip(by, bci, strict=True)],
                       [max(0.0, c[1] - y) for y, c in zip(by, bci, strict=True)]]  # fmt: skip
                ax.errorbar(bx, by, yerr=err, fmt="none", ecolor=color, elinewidth=1,
                            capsize=2, alpha=0.6)  # fmt: skip
            drawn = True
        dots = []
        for label, mean in points.items():
            x, y = num(mean.get("bpp")), num(mean.get(key))
            if x is None or y is None:
                continue
            ax.scatter([x], [y], s=46, color=colors.get(label, "#333"), zorder=3,
                       edgecolor="white", linewidth=0.8)  # fmt: skip
            dots.append((label, x, y))
            drawn = True
        if key == "task_ap50" and uncompressed_ap50 is not None:
            ax.axhline(uncompressed_ap50, color="#555", ls="--", lw=1)
            ax.annotate(
                "uncompressed",
                (0, uncompressed_ap50),
                xycoords=("axes fraction", "data"),
                xytext=(4, 3),
                textcoords="offset points",
                fontsize=8,
                color="#555",
            )
        _style(ax, "bits per pixel", ylabel)
        _label_dots(ax, dots)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    legend_ax = axes[cols - 1]  # top right: one legend, outside, so it hides no curve
    if legend_ax.get_legend_handles_labels()[0]:
        legend_ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    if not drawn:
        return None
    fig.tight_layout()
    return _save(fig, folder, "rate")


def tradeoff_plot(
    sweep: Sequence[Mapping[str, Any]],
    base: Mapping[str, Any] | None,
    folder: Path,
) -> str | None:
    """The λ_a sweep: task AP50 against PSNR and against artifact_db, points labelled by λ_a.

    The base decoder (no adversarial finetuning) is drawn as a star for reference.
    """
    rows = [r for r in sweep if isinstance(r, Mapping)]
    rows.sort(key=lambda r: num(r.get("lambda_a")) or 0.0)
    panels = [("psnr", "PSNR (dB) →  better"), ("artifact_db", "artifact dB  ← less grid")]
    fig = Figure(figsize=(9.6, 3.8))
    axes = fig.subplots(1, 2)
    drawn = False
    for ax, (key, xlabel) in zip(axes, panels, strict=True):
        pts = [(num(r.get(key)), num(r.get("task_ap50")), num(r.get("lambda_a"))) for r in rows]
        pts = [(x, y, lam) for x, y, lam in pts if x is not None and y is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", color="#1f77b4", ms=5,
                    lw=1.2, alpha=0.9, label="human decoder, λ_a sweep")  # fmt: skip
            for i, (x, y, lam) in enumerate(pts):
                text = "λ=?" if lam is None else f"λ={lam:g}"
                # neighbours of a sweep often sit close: alternate the label above / below
                offset = (5, 4) if i % 2 == 0 else (5, -11)
                ax.annotate(text, (x, y), xytext=offset, textcoords="offset points", fontsize=8)
            drawn = True
        if base is not None:
            bx, by = num(base.get(key)), num(base.get("task_ap50"))
            if bx is not None and by is not None:
                ax.scatter([bx], [by], marker="*", s=140, color="#d62728", zorder=3,
                           label="base decoder")  # fmt: skip
        _style(ax, xlabel, "task AP50")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, frameon=False)
    if not drawn:
        return None
    fig.tight_layout()
    return _save(fig, folder, "tradeoff")


def artifact_bars(
    values: Mapping[str, float | None], colors: Mapping[str, str], folder: Path
) -> str | None:
    """artifact_db per codec as horizontal bars; 0 dB (no added grid) is marked."""
    items = [(k, v) for k, v in values.items() if v is not None]
    if not items:
        return None
    fig = Figure(figsize=(6.4, 0.42 * len(items) + 1.1))
    ax = fig.subplots()
    labels = [k for k, _ in items][::-1]
    vals = [v for _, v in items][::-1]
    ax.barh(labels, vals, color=[colors.get(k, "#777") for k in labels], height=0.62)
    span = max(abs(v) for v in vals) or 1.0
    for y, v in enumerate(vals):
        ax.annotate(f"{v:+.1f} dB", (v, y), xytext=(4 if v >= 0 else -4, 0),
                    textcoords="offset points", va="center", ha="left" if v >= 0 else "right",
                    fontsize=8)  # fmt: skip
    ax.axvline(0, color="#333", lw=1)
    ax.set_xlim(min(0.0, min(vals)) - 0.25 * span, max(0.0, max(vals)) + 0.25 * span)
    _style(ax, "artifact dB (grid energy of x̂ over x; 0 = no added grid)", "")
    ax.grid(True, axis="x", color="#e5e5e5")
    ax.grid(False, axis="y")
    fig.tight_layout()
    return _save(fig, folder, "artifacts")
