"""Coding speed of imported CompressAI architectures against CompressAI's own coding, same weights.

For each architecture, a CompressAI model (random weights of the given sizes, the last analysis
layer scaled so that the latent has a trained codec's magnitude, CDF tables built by its
``update()``; or ``--checkpoint`` for one architecture) is written as a CompressAI checkpoint
file and brought in through ``icmbridge import``'s code path. Then, on the same image, ours codes
through the full container path (header, fingerprint, checksum, float64 entropy-parameter path,
fixed-thread synthesis) and the peer through CompressAI's ``compress`` / ``decompress``.
Repetitions are interleaved (ours, peer, ours, ...) and medians compared, so load on the machine
hits both alike. Ratios below 1 mean ours is faster.

    python benchmarks/arch_speed.py [--archs mbt2018-mean,cheng2020-anchor] [--size 256]
                                    [--runs 3] [--reps 5] [--sizes 64,96]
                                    [--out results/benchmarks/arch_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import compressai.models as cm
import torch
from skimage import data

from icmbridge.codec import bitstream
from icmbridge.codec.archs import compressai_peer
from icmbridge.codec.importing import import_checkpoint
from icmbridge.imageio import array_to_tensor

PEERS = {
    "bmshj2018-factorized": lambda n, m: cm.FactorizedPrior(n, m),
    "bmshj2018-hyperprior": lambda n, m: cm.ScaleHyperprior(n, m),
    "mbt2018-mean": lambda n, m: cm.MeanScaleHyperprior(n, m),
    "mbt2018": lambda n, m: cm.JointAutoregressiveHierarchicalPriors(n, m),
    "cheng2020-anchor": lambda n, m: cm.Cheng2020Anchor(n),
    "cheng2020-attn": lambda n, m: cm.Cheng2020Attention(n),
}


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(arch: str, x: torch.Tensor, n: int, m: int, reps: int, checkpoint: str | None):
    with tempfile.TemporaryDirectory() as tmp:
        if checkpoint is None:
            torch.manual_seed(0)
            peer = PEERS[arch](n, m).eval()
            with torch.no_grad():  # latents of a trained codec's magnitude (std 4): real symbols
                last = [c for c in peer.g_a.children() if isinstance(c, torch.nn.Conv2d)][-1]
                gain = 4 / float(peer.g_a(x).std())
                last.weight.mul_(gain)
                last.bias.mul_(gain)
            peer.update(force=True)
            checkpoint = str(Path(tmp) / "peer.pth.tar")
            torch.save({"state_dict": peer.state_dict()}, checkpoint)
        ours = import_checkpoint(arch, checkpoint)
    peer = compressai_peer(ours)  # CompressAI's class, the imported weights and CDF tables
    times: dict[str, list[float]] = {
        k: [] for k in ("ours_enc", "peer_enc", "ours_dec", "peer_dec")
    }
    with torch.no_grad():
        ours_bytes = bitstream.encode(ours, x)
        peer_out = peer.compress(x)
        bitstream.decode(ours, ours_bytes)  # warm-up (float64 copies, caches)
        peer.decompress(peer_out["strings"], peer_out["shape"])
        for _ in range(reps):
            times["ours_enc"].append(_time(lambda: bitstream.encode(ours, x)))
            times["peer_enc"].append(_time(lambda: peer.compress(x)))
            times["ours_dec"].append(_time(lambda: bitstream.decode(ours, ours_bytes)))
            times["peer_dec"].append(
                _time(lambda: peer.decompress(peer_out["strings"], peer_out["shape"]))
            )
        x_ours = bitstream.decode(ours, ours_bytes)
        x_peer = peer.decompress(peer_out["strings"], peer_out["shape"])["x_hat"]
    med = {k: statistics.median(v) for k, v in times.items()}
    header = bitstream.parse_header(ours_bytes)
    y_start = header.payload_offset + header.z_length
    return {
        "arch": arch,
        "sizes": ours.sizes(),
        **{f"{k}_s": round(v, 4) for k, v in med.items()},
        "encode_ratio": round(med["ours_enc"] / med["peer_enc"], 3),
        "decode_ratio": round(med["ours_dec"] / med["peer_dec"], 3),
        "same_latent_string": ours_bytes[y_start:-4] == peer_out["strings"][0][0],
        "bytes_ours_with_container": len(ours_bytes),
        "bytes_peer_payload": sum(len(s[0]) for s in peer_out["strings"]),
        "max_abs_pixel_difference": round(float((x_ours - x_peer).abs().max()), 5),
    }


def main() -> None:
    warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="bmshj2018-hyperprior,mbt2018-mean,cheng2020-anchor")
    parser.add_argument("--sizes", default="64,96", help="N,M of the random-weight models")
    parser.add_argument("--checkpoint", help="a CompressAI checkpoint (with a single --archs)")
    parser.add_argument("--size", type=int, default=256, help="square crop of the test photo")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions per run")
    parser.add_argument("--runs", type=int, default=3, help="independent runs (medians of ratios)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="results/benchmarks/arch_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Random GDN weights have exactly-zero off-diagonal γ; their products with x² are subnormal
    # floats, which run several times slower and would dominate both sides' time (trained
    # weights do not produce them: measured equal with and without this on `base`).
    torch.set_flush_denormal(True)
    archs = [a for a in args.archs.split(",") if a]
    if args.checkpoint and len(archs) != 1:
        parser.error("--checkpoint needs exactly one architecture in --archs")
    n, m = (int(v) for v in args.sizes.split(","))
    x = array_to_tensor(data.astronaut()[: args.size, : args.size])
    rows = []
    for arch in archs:
        runs = [measure(arch, x, n, m, args.reps, args.checkpoint) for _ in range(args.runs)]
        r = {
            **runs[0],
            "runs": runs,
            "encode_ratio_median": statistics.median(r["encode_ratio"] for r in runs),
            "decode_ratio_median": statistics.median(r["decode_ratio"] for r in runs),
        }
        rows.append(r)
        print(
            f"{arch}: encode ratio {r['encode_ratio_median']:.3f}, decode ratio "
            f"{r['decode_ratio_median']:.3f} (ours / CompressAI, median of {args.runs} runs; "
            f"run 1: encode {r['ours_enc_s']:.3f} s vs {r['peer_enc_s']:.3f} s, decode "
            f"{r['ours_dec_s']:.3f} s vs {r['peer_dec_s']:.3f} s), same ŷ string: "
            f"{r['same_latent_string']}",
            flush=True,
        )
    result = {
        "benchmark": "arch_speed",
        "image": f"astronaut {x.shape[-1]}x{x.shape[-2]}",
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "weights": args.checkpoint or f"random, N={n}, M={m}, latent std 4",
        "reps": args.reps,
        "flush_denormal": True,
        "command": "python benchmarks/arch_speed.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
