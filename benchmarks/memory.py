"""Peak resident memory and time of ``icmbridge compress`` / ``decompress`` for big images.

Each command runs in its own process (what a user runs, through ``icmbridge.cli.main``) and
reports its own peak resident set size (``VmHWM``) as it exits. The kernel's ``ru_maxrss`` of
the process tree is recorded beside it: it is higher because importing torch/CompressAI forks
helper programs (``ldconfig -p``, ``lscpu``) whose short-lived copies of the parent count there.
The test images are mosaics of the packaged photos at their native scale (offline,
deterministic), 4:3, at 1, 4, 12 and 50 MP.
The *floor* is the peak of ``icmbridge info`` on the same file: the interpreter with torch and
CompressAI imported, which no tiling can lower; the per-megapixel figure is the peak above it.

    python benchmarks/memory.py [--sizes 1,4,12,50] [--tile auto|off|PIXELS] [--model base]
                                [--device cpu|cuda] [--out results/memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icmbridge.data.packaged import PHOTOS, load_photo

#: Megapixels → (width, height), 4:3.
SIZES = {1: (1152, 864), 4: (2304, 1728), 12: (4096, 3072), 50: (8192, 6144)}


def mosaic(width: int, height: int, block: int = 512) -> np.ndarray:
    """A ``height × width`` RGB image tiled with 512² crops of the packaged photos."""
    photos = [p for p in (load_photo(n) for n in PHOTOS) if p is not None]
    out = np.empty((height, width, 3), np.uint8)
    k = 0
    for y in range(0, height, block):
        for x in range(0, width, block):
            photo = photos[k % len(photos)]
            k += 1
            py = (k * 97) % max(1, photo.shape[0] - block)
            px = (k * 61) % max(1, photo.shape[1] - block)
            crop = photo[py : py + block, px : px + block]
            h, w = min(block, height - y, crop.shape[0]), min(block, width - x, crop.shape[1])
            out[y : y + block, x : x + block] = 128  # photos smaller than a block: grey rest
            out[y : y + h, x : x + w] = crop[:h, :w]
    return out


# Runs the CLI, then prints the process's own peak RSS (kB) as the last line of stderr.
_WRAPPER = """
import sys
from icmbridge.cli import main
code = main(sys.argv[1:])
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(f"VmHWM_kB={hwm}", file=sys.stderr)
sys.exit(code)
"""


def run_measured(argv: list[str]) -> dict[str, float]:
    """Run ``icmbridge ARGV`` in a fresh process: wall time and peak resident memory (MiB)."""
    start = time.perf_counter()
    cmd = [sys.executable, "-W", "ignore", "-c", _WRAPPER, *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"icmbridge {' '.join(argv)} failed:\n{out}{err}")
    hwm = int(err.strip().splitlines()[-1].split("=")[1])
    coding = out.strip().rsplit(", ", 1)[-1]  # compress/decompress end their line with "X.XX s"
    return {
        "coding_s": float(coding[:-2]) if coding.endswith(" s") else None,
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(hwm / 1024, 1),
        "tree_ru_maxrss_mib": round(usage.ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,12,50", help="megapixels, from 1, 4, 12, 50")
    parser.add_argument("--tile", default=None, help="passed to --tile (default: automatic)")
    parser.add_argument("--model", default="base")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (transforms only)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="results/memory.json")
    args = parser.parse_args()

    common = ["--model", args.model, "--threads", str(args.threads)]
    if args.device != "cpu":
        common += ["--device", args.device]
    if args.tile is not None:
        common += ["--tile", args.tile]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mp in (int(s) for s in args.sizes.split(",")):
            width, height = SIZES[mp]
            src, coded, decoded = (Path(tmp) / n for n in ("in.png", "in.icmb", "out.png"))
            Image.fromarray(mosaic(width, height)).save(src, compress_level=1)
            enc = run_measured(["compress", str(src), "-o", str(coded), *common])
            dec = run_measured(["decompress", str(coded), "-o", str(decoded), *common])
            floor = run_measured(["info", str(coded)])
            pixels = width * height / 1e6
            row = {
                "megapixels": round(pixels, 2),
                "size": f"{width}x{height}",
                "bytes": coded.stat().st_size,
                "floor_mib": floor["peak_rss_mib"],
                "compress": enc,
                "decompress": dec,
            }
            for name in ("compress", "decompress"):
                r = row[name]
                r["coding_s_per_mp"] = round(r["coding_s"] / pixels, 3)
                r["mib_per_mp_above_floor"] = round(
                    (r["peak_rss_mib"] - row["floor_mib"]) / pixels, 1
                )
            rows.append(row)
            print(
                f"{row['size']:>10} ({pixels:5.1f} MP): compress {enc['peak_rss_mib']:5.0f} MiB "
                f"{enc['coding_s']:6.2f} s | decompress {dec['peak_rss_mib']:5.0f} MiB "
                f"{dec['coding_s']:6.2f} s | floor {row['floor_mib']:.0f} MiB",
                flush=True,
            )
            for f in (src, coded, decoded):
                f.unlink(missing_ok=True)
    result = {
        "benchmark": "memory",
        "note": "coding_s: the transform and entropy coding time the command prints; wall_s "
        "adds interpreter start and PNG reading/writing; peak_rss_mib: the process's VmHWM",
        "tile": args.tile or "auto",
        "model": args.model,
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
