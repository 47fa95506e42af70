"""Paired differences between decoders of one `icmbridge compare` run, with a realism measure.

    python scripts/d_health/paired.py OUT A:B [A:B ...]

For each pair, the per-image mean of A − B and its 95 % paired bootstrap interval over the images
(:mod:`icmbridge.evaluation.stats`: the same resampling plan for both decoders) for PSNR, artifact
(grid energy, dB), lattice (grey levels) and, where the run has them, ColorVideoVDP (JOD) and
SSIMULACRA 2; plus ``hf_kept_db`` (:mod:`icmbridge.metrics.detail`: the share of the original's
high-frequency luma power the decoder keeps, in dB, grid bins of the 16-px lattice left out),
taken from the run's rows where ``compare`` measured it, else computed from the decoded PNGs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from icmbridge.evaluation.results import Results
from icmbridge.evaluation.stats import format_diff, interval, mean_replicates, resample_plan
from icmbridge.metrics.detail import hf_kept_db

METRICS = ["psnr", "artifact_db", "lattice", "cvvdp_jod", "ssimulacra2", "hf_kept_db"]
FMT = "+.3f"  # the study's tables (results/gan-health/eval-*/paired.md)


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def rows(out: Path, codec: str, results: Results) -> dict[str, dict[str, Any]]:
    table = {}
    for im in results.codecs[codec].images:
        row = {k: im.get(k) for k in METRICS}
        stem = str(Path(im["name"]).with_suffix("")).replace("/", "__")  # compare's file names
        orig = next((out / "originals").glob(stem + ".*"), None)
        dec = next((out / "decoded" / codec).glob(stem + ".*"), None)
        if row["hf_kept_db"] is None and orig is not None and dec is not None:
            row["hf_kept_db"] = hf_kept_db(_rgb(orig), _rgb(dec))
        table[im["name"]] = row
    return table


def paired(a: list[float], b: list[float]) -> dict[str, Any]:
    """Mean of a − b with its paired 95 % bootstrap interval (stats.py's plan and interval)."""
    plan = resample_plan(len(a))
    diff = float(np.mean(a) - np.mean(b))
    ci = interval(mean_replicates(a, plan) - mean_replicates(b, plan), diff)
    return {"diff": diff, "ci": ci}


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    results = Results.read(out / "results.json")
    cache: dict[str, dict] = {}
    print(f"{out}: {results.n_images} images, set {results.set}")
    print("| A − B | " + " | ".join(METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for pair in argv[1:]:
        a, b = pair.split(":")
        for c in (a, b):
            cache.setdefault(c, rows(out, c, results))
        names = sorted(cache[a])
        cells = []
        for m in METRICS:
            va = [cache[a][n].get(m) for n in names]
            vb = [cache[b][n].get(m) for n in names]
            if any(v is None for v in va + vb):
                cells.append("")
                continue
            cells.append(format_diff(paired(va, vb), FMT))
        print(f"| {a} − {b} | " + " | ".join(cells) + " |")
    print()
    print("| decoder | " + " | ".join(METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for c in cache:
        means = []
        for m in METRICS:
            v = [cache[c][n].get(m) for n in cache[c]]
            means.append("" if any(x is None for x in v) else f"{np.mean(v):.3f}")
        print(f"| {c} | " + " | ".join(means) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
