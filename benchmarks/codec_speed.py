"""Encode/decode time of icmbridge's codec against CompressAI's own coding of the same weights.

The peer is CompressAI's own class for the architecture of the model measured (``base`` is
``mbt2018-mean``: CompressAI's ``MeanScaleHyperprior``; an ``ICMCodec``, such as the first COCO
family's ``coco-base`` measured in ``results/benchmarks/codec_speed-coco-base.json``: its layers
are ``ScaleHyperprior``'s), built by ``icmbridge.codec.archs.compressai_peer`` with the
model's weights and CDF tables, so both code the same image with the same transforms and tables.
Ours goes through the full container path (header, fingerprint, checksum, float64 hyper path,
tiling, chunked rANS); CompressAI's through ``compress`` / ``decompress``. Repetitions are
interleaved (ours, peer, ours, ...) and medians compared, so machine noise hits both alike;
``--runs`` repeats the whole measurement, ``--threads 1,2`` measures each thread count.

It also reports how close the synthesis transform runs to the machine: its achieved GFLOP/s
(FLOPs counted from the layer shapes) against a dense float32 matmul measured on the same
threads, the practical ceiling for convolution arithmetic here.

    python benchmarks/codec_speed.py [--model base] [--runs 3] [--reps 9] [--threads 1,2]
                                     [--device cpu|cuda] [--out results/benchmarks/codec_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from compressai.layers import GDN
from compressai.models.base import CompressionModel
from skimage import data
from torch import nn

from icmbridge.codec import bitstream
from icmbridge.codec.archs import compressai_peer
from icmbridge.codec.model import CodecContract
from icmbridge.codec.store import load_codec
from icmbridge.imageio import array_to_tensor


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def run(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return run


def synthesis_flops(g_s: nn.Module, y_hat: torch.Tensor) -> float:
    """Multiply-adds × 2 of ``g_s`` on ``y_hat``, counted from each layer's shapes."""
    total = 0.0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        x = inputs[0]
        if isinstance(module, nn.ConvTranspose2d):  # every input pixel scatters k² × C_out
            k = module.kernel_size[0] * module.kernel_size[1]
            total += 2 * x.shape[1] * module.out_channels * k * x.shape[-2] * x.shape[-1]
        elif isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += 2 * x.shape[1] * module.out_channels * k * output.shape[-2] * output.shape[-1]
        elif isinstance(module, GDN):  # 1×1 conv over channels, then square, root, multiply
            c, pixels = x.shape[1], x.shape[-2] * x.shape[-1]
            total += (2 * c * c + 3 * c) * pixels

    handles = [m.register_forward_hook(hook) for m in g_s.modules() if m is not g_s]
    try:
        with torch.no_grad():
            g_s(y_hat)
    finally:
        for h in handles:
            h.remove()
    return total


def matmul_gflops(device: torch.device, n: int = 2048, reps: int = 7) -> float:
    """Dense float32 matmul throughput on this device and thread setting (GFLOP/s)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    timer = _timer(device)
    timer(lambda: a @ b)
    return 2 * n**3 / statistics.median(timer(lambda: a @ b) for _ in range(reps)) / 1e9


def measure(
    ours: CodecContract, peer: CompressionModel, x: torch.Tensor, reps: int, device
) -> dict:
    timer = _timer(device)
    with torch.no_grad():
        ours_bytes = bitstream.encode(ours, x)
        peer_out = peer.compress(x.to(device))
        for _ in range(2):  # warm-up: allocator, oneDNN primitive caches
            bitstream.decode(ours, bitstream.encode(ours, x))
            peer.decompress(peer.compress(x.to(device))["strings"], peer_out["shape"])
        times: dict[str, list[float]] = {
            k: [] for k in ("ours_enc", "peer_enc", "ours_dec", "peer_dec")
        }
        for _ in range(reps):
            times["ours_enc"].append(timer(lambda: bitstream.encode(ours, x)))
            times["peer_enc"].append(timer(lambda: peer.compress(x.to(device))))
            times["ours_dec"].append(timer(lambda: bitstream.decode(ours, ours_bytes)))
            times["peer_dec"].append(
                timer(lambda: peer.decompress(peer_out["strings"], peer_out["shape"]))
            )
    med = {k: statistics.median(v) for k, v in times.items()}
    header = bitstream.parse_header(ours_bytes)
    y_ours = ours_bytes[header.payload_offset + header.z_length : -bitstream.CRC_SIZE]
    return {
        **{f"{k}_s": round(v, 4) for k, v in med.items()},
        "encode_ratio": round(med["ours_enc"] / med["peer_enc"], 3),
        "decode_ratio": round(med["ours_dec"] / med["peer_dec"], 3),
        "images_per_s": {k: round(1 / v, 2) for k, v in med.items()},
        "same_latent_string": y_ours == peer_out["strings"][0][0],
        "bytes_ours_with_container": len(ours_bytes),
        "bytes_peer_payload": sum(len(s[0]) for s in peer_out["strings"]),
    }


def measure_threads(ours: CodecContract, peer: CompressionModel, x, args, device) -> dict:
    """Interleaved runs and the synthesis' GFLOP/s at the current thread setting."""
    runs = [measure(ours, peer, x, args.reps, device) for _ in range(args.runs)]
    for i, r in enumerate(runs, 1):
        print(
            f"threads {torch.get_num_threads()} run {i}: encode {r['ours_enc_s']:.4f} s vs "
            f"{r['peer_enc_s']:.4f} s (ratio {r['encode_ratio']:.3f}), decode "
            f"{r['ours_dec_s']:.4f} s vs {r['peer_dec_s']:.4f} s (ratio {r['decode_ratio']:.3f})"
            f"{'' if r['same_latent_string'] else ', LATENT STRINGS DIFFER'}",
            flush=True,
        )
    with torch.no_grad():
        y_hat = torch.round(ours.g_a(x.to(device)))  # type: ignore[attr-defined]
    flops = synthesis_flops(ours.g_s, y_hat)  # type: ignore[attr-defined]
    timer = _timer(device)
    with torch.no_grad():
        ys = y_hat.contiguous(memory_format=torch.channels_last)
        timer(lambda: ours.g_s(ys))  # type: ignore[attr-defined]
        g_s_time = statistics.median(
            timer(lambda: ours.g_s(ys))  # type: ignore[attr-defined]
            for _ in range(args.reps)
        )
    achieved = flops / g_s_time / 1e9
    peak = matmul_gflops(device)
    print(
        f"synthesis: {flops / 1e9:.2f} GFLOP in {g_s_time:.4f} s = {achieved:.1f} GFLOP/s; "
        f"dense matmul {peak:.1f} GFLOP/s ({achieved / peak:.0%})"
    )
    return {
        "threads": torch.get_num_threads(),
        "runs": runs,
        "encode_ratio_median": statistics.median(r["encode_ratio"] for r in runs),
        "decode_ratio_median": statistics.median(r["decode_ratio"] for r in runs),
        "same_latent_strings": all(r["same_latent_string"] for r in runs),
        "synthesis": {
            "gflop": round(flops / 1e9, 3),
            "seconds": round(g_s_time, 4),
            "achieved_gflops": round(achieved, 1),
            "matmul_gflops": round(peak, 1),
            "fraction_of_matmul": round(achieved / peak, 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base", help="model to measure (name or folder)")
    parser.add_argument("--runs", type=int, default=3, help="independent interleaved runs")
    parser.add_argument("--reps", type=int, default=9, help="repetitions per run (medians)")
    parser.add_argument(
        "--threads", default=str(torch.get_num_threads()), help="thread counts, e.g. 1,2"
    )
    parser.add_argument("--size", type=int, default=512, help="square crop of the test photo")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where transforms run")
    parser.add_argument("--out", default="results/benchmarks/codec_speed.json")
    args = parser.parse_args()
    device = torch.device(args.device)

    ours = load_codec(args.model).eval()
    peer = compressai_peer(ours)  # same weights and CDF tables, CompressAI's own coding
    ours, peer = ours.to(device), peer.to(device)
    if device.type == "cuda":
        ours.decode_threads = None
    photo = data.astronaut()
    x = array_to_tensor(photo[: args.size, : args.size])

    per_threads = []
    for n in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(n)
        per_threads.append(measure_threads(ours, peer, x, args, device))
    result = {
        "benchmark": "codec_speed",
        "model": args.model,
        "arch": ours.arch,
        "peer": f"compressai {type(peer).__name__}",
        **ours.sizes(),
        "image": f"astronaut {x.shape[-1]}x{x.shape[-2]}",
        "device": str(device),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "reps": args.reps,
        "threads": per_threads,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
