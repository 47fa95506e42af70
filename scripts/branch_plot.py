"""Each branch of the long run against the main run: its return per CPU-hour, on one plot.

Reads the rows of ``scripts/base_diagnosis.py`` (main-run snapshots and forks; a fork's row
carries its branch name and the parent's CPU-hours) and draws, against cumulative CPU-hours, the
rate-distortion cost J = bpp + λ·255²·MSE on the training photos, on held-out photos and on
Kodak: the main run as a line, each fork as a segment from the main-run point it left. Beside
it, each step's return per CPU-hour, −ΔJ / Δh on held-out photos and on Kodak (the main run's
last segment is its current return). Lower J is better. Writes ``branches.png`` and
``branches.json`` next to the log.

    python scripts/branch_plot.py results/scaling/diagnosis.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def returns(rows: list[dict]) -> list[dict]:
    """−ΔJ per CPU-hour of the main run's last segment and of every fork from its parent."""
    main = sorted((r for r in rows if r.get("branch", "main") == "main"), key=lambda r: r["step"])
    out = []
    if len(main) >= 2:
        a, b = main[-2], main[-1]
        out.append(segment(f"main {a['label']}→{b['label']}", a, b))
    for r in rows:
        if r.get("branch", "main") == "main":
            continue
        same = [
            q for q in rows if q.get("branch") == r["branch"] and q["cpu_hours"] < r["cpu_hours"]
        ]
        if same:  # a stage with several points: each from the stage's previous one
            prev = max(same, key=lambda q: q["cpu_hours"])
            out.append(segment(f"{r['branch']} {prev['label']}→{r['label']}", prev, r))
        else:
            parent = parent_of(r, rows)
            out.append(segment(f"{r['branch']} from {parent['label']}", parent, r))
    return out


def parent_of(fork: dict, rows: list[dict]) -> dict:
    """The row a fork left: the one (main run or an earlier fork) at the parent's CPU-hours."""
    earlier = [r for r in rows if r is not fork and r["cpu_hours"] < fork["cpu_hours"]]
    return min(earlier, key=lambda r: abs(r["cpu_hours"] - fork["parent_cpu_hours"]))


def segment(name: str, a: dict, b: dict) -> dict:
    dh = b["cpu_hours"] - a["cpu_hours"]
    return {
        "name": name,
        "cpu_hours": round(dh, 4),
        **{
            f"return_{s}_J_per_cpu_hour": round(-(b[s]["J"] - a[s]["J"]) / dh, 4)
            for s in ("train", "held_out", "kodak")
        },
        **{f"delta_{s}_psnr": round(b[s]["psnr"] - a[s]["psnr"], 3) for s in ("held_out", "kodak")},
        **{f"delta_{s}_bpp": round(b[s]["bpp"] - a[s]["bpp"], 5) for s in ("held_out", "kodak")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", help="JSON lines of scripts/base_diagnosis.py")
    args = parser.parse_args()
    log = Path(args.log)
    rows = [json.loads(s) for s in log.read_text().splitlines() if s.strip()]
    segments = returns(rows)
    (log.parent / "branches.json").write_text(json.dumps(segments, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    main = sorted((r for r in rows if r.get("branch", "main") == "main"), key=lambda r: r["step"])
    colours = {"train": "tab:blue", "held_out": "tab:orange", "kodak": "tab:green"}
    for s, c in colours.items():
        ax.plot([r["cpu_hours"] for r in main], [r[s]["J"] for r in main], "o-", color=c, label=s)
        for r in rows:
            if r.get("branch", "main") == "main":
                continue
            parent = parent_of(r, rows)
            ax.plot(
                [parent["cpu_hours"], r["cpu_hours"]], [parent[s]["J"], r[s]["J"]], "--", color=c
            )
            ax.plot(r["cpu_hours"], r[s]["J"], "*", color=c, ms=10)
            if s == "kodak":
                ax.annotate(r["branch"], (r["cpu_hours"], r[s]["J"]), fontsize=7,
                            xytext=(3, -10), textcoords="offset points")  # fmt: skip
    ax.set(xlabel="CPU-hours (forks: parent's + their own)", ylabel="J = bpp + λ·255²·MSE",
           title="Main run (lines) and forks (stars)")  # fmt: skip
    ax.legend(fontsize=8)
    ax = axes[1]
    names = [g["name"] for g in segments]
    ys = range(len(segments))
    ax.barh([y - 0.2 for y in ys], [g["return_held_out_J_per_cpu_hour"] for g in segments],
            height=0.4, color=colours["held_out"], label="held-out BSDS500 test")  # fmt: skip
    ax.barh([y + 0.2 for y in ys], [g["return_kodak_J_per_cpu_hour"] for g in segments],
            height=0.4, color=colours["kodak"], label="Kodak")  # fmt: skip
    ax.set_yticks(list(ys), names, fontsize=8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set(xlabel="return: −ΔJ per CPU-hour (higher is better)", title="Return per CPU-hour")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(log.parent / "branches.png", dpi=110)
    print(json.dumps(segments, indent=2))


if __name__ == "__main__":
    main()
