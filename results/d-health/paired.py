"""Paired differences between decoders of one `icmbridge compare` run, with a realism measure.

    python results/d-health/paired.py OUT A:B [A:B ...]

For each pair, the per-image mean of A − B and its 95 % paired bootstrap interval (1,000
resamples of the images) for PSNR, artifact (grid energy, dB), lattice (grey levels) and, where
the run has them, ColorVideoVDP (JOD) and SSIMULACRA 2; plus a realism measure computed here
from the decoded PNGs: the share of the original's high-frequency power (radial frequency
≥ 1/4 cycle/pixel, luma, grid bins of the 16-px lattice left out so an added lattice does not
count as detail) that the decoder keeps, in dB (0: all of it; blur reads below 0).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

METRICS = ["psnr", "artifact_db", "lattice", "cvvdp_jod", "ssimulacra2", "hf_kept_db"]


def luma(path: Path) -> np.ndarray:
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    return a @ np.array([0.299, 0.587, 0.114])


def hf_kept_db(ref: np.ndarray, dec: np.ndarray, period: int = 16) -> float:
    h, w = (ref.shape[0] // period) * period, (ref.shape[1] // period) * period
    ref, dec = ref[:h, :w], dec[:h, :w]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    high = np.hypot(fy, fx) >= 0.25
    grid = np.zeros((h, w), bool)
    grid[:: h // period, :: w // period] = True
    mask = high & ~grid
    p_ref = (np.abs(np.fft.fft2(ref - ref.mean())) ** 2)[mask].sum()
    p_dec = (np.abs(np.fft.fft2(dec - dec.mean())) ** 2)[mask].sum()
    return float(10 * np.log10(p_dec / p_ref))


def rows(out: Path, codec: str, doc: dict) -> dict[str, dict[str, float]]:
    table = {}
    for im in doc["codecs"][codec]["images"]:
        row = {k: im.get(k) for k in METRICS}
        stem = str(Path(im["name"]).with_suffix("")).replace("/", "__")  # compare's file names
        orig = next((out / "originals").glob(stem + ".*"), None)
        dec = next((out / "decoded" / codec).glob(stem + ".*"), None)
        if orig is not None and dec is not None:
            row["hf_kept_db"] = hf_kept_db(luma(orig), luma(dec))
        table[im["name"]] = row
    return table


def paired(
    a: np.ndarray, b: np.ndarray, n: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    d = a - b
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (n, len(d)))].mean(axis=1)
    return float(d.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    doc = json.loads((out / "results.json").read_text())
    cache: dict[str, dict] = {}
    print(f"{out}: {doc['n_images']} images, set {doc['set']}")
    print("| A − B | " + " | ".join(METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for pair in argv[1:]:
        a, b = pair.split(":")
        for c in (a, b):
            cache.setdefault(c, rows(out, c, doc))
        names = sorted(cache[a])
        cells = []
        for m in METRICS:
            va = [cache[a][n].get(m) for n in names]
            vb = [cache[b][n].get(m) for n in names]
            if any(v is None for v in va + vb):
                cells.append("")
                continue
            mean, lo, hi = paired(np.array(va, float), np.array(vb, float))
            mark = "~" if lo <= 0 <= hi else ""
            cells.append(f"{mark}{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]")
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
