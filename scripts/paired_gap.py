"""Paired difference of two codecs in one results.json, from its per-image rows.

    python scripts/paired_gap.py results/faces/tables/kodak/results.json human avif psnr cvvdp_jod

``compare`` pairs every codec with its reference (``base``); this pairs any two, e.g. a human
decoder with AVIF at the same bytes: the mean of per-image differences a − b and its 95 %
bootstrap interval over images, with the same resampling plan and interval as ``compare``
(``icmbridge.evaluation.stats``). Image metrics only: a set-level AP cannot be split into
per-image terms.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from icmbridge.evaluation.stats import interval, mean_replicates, resample_plan


def paired_gap(rows_a: list[dict], rows_b: list[dict], key: str) -> dict:
    by_name = {r["name"]: r for r in rows_b}
    d = np.array([ra[key] - by_name[ra["name"]][key] for ra in rows_a], dtype=np.float64)
    ci = interval(mean_replicates(d.tolist(), resample_plan(len(d))), float(d.mean()))
    return {"diff": float(d.mean()), "ci": ci, "n": len(d)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("results", help="a results.json of icmbridge compare/evaluate")
    p.add_argument("a", help="codec label (minuend)")
    p.add_argument("b", help="codec label (subtrahend), e.g. avif")
    p.add_argument("keys", nargs="+", help="per-image metrics, e.g. psnr cvvdp_jod ssimulacra2")
    args = p.parse_args()
    codecs = json.loads(Path(args.results).read_text())["codecs"]
    for label in (args.a, args.b):
        if label not in codecs:
            p.error(f"{label!r} is not in {args.results} (has: {', '.join(codecs)})")
    for key in args.keys:
        g = paired_gap(codecs[args.a]["images"], codecs[args.b]["images"], key)
        lo, hi = g["ci"]
        print(f"{args.a} − {args.b} {key}: {g['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] (n={g['n']})")


if __name__ == "__main__":
    main()
