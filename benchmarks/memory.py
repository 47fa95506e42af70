"""Peak resident memory and time of ``icmbridge compress`` / ``decompress`` for big images.

Each command runs in its own process (what a user runs, through ``icmbridge.commands.main``) and
reports its own peak resident set size (``VmHWM``) as it exits. The kernel's ``ru_maxrss`` of
the process tree is recorded beside it: it is higher because importing torch/CompressAI forks
helper programs (``ldconfig -p``, ``lscpu``) whose short-lived copies of the parent count there.
The test images are mosaics of the packaged photos at their native scale (offline,
deterministic), 4:3, at 1, 4, 12 and 50 MP.
Each big-image command is compared with *the same command on a 64² image* (same model, same
options): that reference holds the interpreter, torch, CompressAI and the model, which no tiling
can lower, so ``above_64px_mib`` is what the image itself costs. The peak of ``icmbridge info``
(no model loaded) is recorded too, as ``info_mib``. ``--models`` measures several models in one
run (``results/benchmarks/memory.json`` holds the mean-scale ``base`` and the first COCO family's
scale-hyperprior ``coco-base``, an ``ICMCodec``; today's ``coco-base`` is mean-scale like ``base``).

    python benchmarks/memory.py [--sizes 1,4,12,50] [--tile auto|off|PIXELS]
                                [--models base,cheng-base] [--device cpu|cuda]
                                [--out results/benchmarks/memory.json]
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


def size_of(megapixels: str) -> tuple[int, int]:
    """(width, height) of a size named in ``--sizes``: one of :data:`SIZES`, else 4:3 of about
    that many megapixels, in multiples of 64 (e.g. ``0.1`` for a quick check)."""
    mp = float(megapixels)
    if mp in SIZES:
        return SIZES[int(mp)]
    side = max(1, round((mp * 1e6 / 12) ** 0.5 / 16))  # width = 4·16·side, height = 3·16·side
    return 64 * side, 48 * side


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
from icmbridge.commands import main
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


def measure_model(model: str, sizes: list[str], options: list[str], tmp: Path) -> dict:
    """Compress/decompress peaks of ``model`` at each size, against the same commands on 64²."""
    common = ["--model", model, *options]
    src, coded, decoded = (tmp / n for n in ("in.png", "in.icmb", "out.png"))

    def code(width: int, height: int) -> tuple[dict, dict, int]:
        Image.fromarray(mosaic(width, height)).save(src, compress_level=1)
        enc = run_measured(["compress", str(src), "-o", str(coded), *common])
        dec = run_measured(["decompress", str(coded), "-o", str(decoded), *common])
        return enc, dec, coded.stat().st_size

    small_enc, small_dec, _ = code(64, 64)
    info = run_measured(["info", str(coded)])["peak_rss_mib"]
    rows = []
    for mp in sizes:
        width, height = size_of(mp)
        enc, dec, nbytes = code(width, height)
        pixels = width * height / 1e6
        row = {"megapixels": round(pixels, 2), "size": f"{width}x{height}", "bytes": nbytes}
        for name, r, ref in (("compress", enc, small_enc), ("decompress", dec, small_dec)):
            r["above_64px_mib"] = round(r["peak_rss_mib"] - ref["peak_rss_mib"], 1)
            r["coding_s_per_mp"] = round(r["coding_s"] / pixels, 3)
            row[name] = r
        rows.append(row)
        print(
            f"{model:>10} {row['size']:>10} ({pixels:5.1f} MP): compress "
            f"{enc['peak_rss_mib']:5.0f} MiB (+{enc['above_64px_mib']:.0f}) "
            f"{enc['coding_s']:6.2f} s | decompress {dec['peak_rss_mib']:5.0f} MiB "
            f"(+{dec['above_64px_mib']:.0f}) {dec['coding_s']:6.2f} s",
            flush=True,
        )
        for f in (src, coded, decoded):
            f.unlink(missing_ok=True)
    return {
        "model": model,
        "reference_64px": {"compress": small_enc, "decompress": small_dec},
        "info_mib": info,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,12,50", help="megapixels: 1, 4, 12, 50, or any")
    parser.add_argument("--tile", default=None, help="passed to --tile (default: automatic)")
    parser.add_argument("--models", default="base", help="models, comma separated")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (transforms only)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="results/benchmarks/memory.json")
    parser.add_argument("--note", default="", help="a remark stored with the results")
    args = parser.parse_args()

    options = ["--threads", str(args.threads)]
    if args.device != "cpu":
        options += ["--device", args.device]
    if args.tile is not None:
        options += ["--tile", args.tile]
    sizes = args.sizes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        models = [measure_model(m, sizes, options, Path(tmp)) for m in args.models.split(",")]
    result = {
        "benchmark": "memory",
        "note": "coding_s: the transform and entropy coding time the command prints; wall_s "
        "adds interpreter start and PNG reading/writing; peak_rss_mib: the process's VmHWM; "
        "above_64px_mib: the peak above the same command on a 64x64 image",
        "remark": args.note,
        "tile": args.tile or "auto",
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "models": models,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
