"""Training throughput of icmbridge's step against CompressAI's own, side by side in one run.

For each architecture (``icm`` against CompressAI's ``ScaleHyperprior``, whose transforms it
shares; ``mbt2018-mean`` against ``MeanScaleHyperprior``), the same N, M, batch and crop:

* ``peer``: CompressAI's example training step (``compressai/examples/train.py``): forward,
  ``RateDistortionLoss``, backward, gradient clipping at 1.0, Adam step, aux loss and its step;
* ``ours``: the step of ``icmbridge train`` (per-sample seeded noise, the same loss and steps),
  in the memory layout it trains in (contiguous) and in channels-last (``--layouts``);
* ``ours-ddp``: two one-thread processes under DistributedDataParallel (gloo), each half the
  batch, against one process with two threads (``--ddp``; the thread layout question);
* ``peer-16x256`` (``--peer-defaults``): CompressAI's step at its example's default shape,
  batch 16 of 256² patches (the crop-shape question: throughput is per pixel).

Variants alternate repetition by repetition (this machine is noisy; medians of the interleaved
times, so that load hits all alike). Throughput is pixels of forward + backward + optimiser per
second; the ratio is ours over CompressAI's.

    python benchmarks/train_speed.py [--reps 9] [--batch 8] [--crop 128] [--threads 2] [--ddp]
        [--peer-defaults]
        [--archs icm,mbt2018-mean] [--device cpu|cuda] [--json results/benchmarks/train_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from compressai.losses import RateDistortionLoss
from compressai.models import MeanScaleHyperprior, ScaleHyperprior

from icmbridge.codec.model import CONFIGS
from icmbridge.codec.store import build_codec
from icmbridge.train.base import bpp_from_likelihoods, net_aux_optimizer

PEERS = {"icm": ScaleHyperprior, "mbt2018-mean": MeanScaleHyperprior}
LAMBDA = 0.0018


def optimizers(model: torch.nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    opts = net_aux_optimizer(
        model, {"net": {"type": "Adam", "lr": 1e-5}, "aux": {"type": "Adam", "lr": 1e-5}}
    )
    return opts["net"], opts["aux"]


def peer_step(model, opt, aux_opt, x) -> None:
    """CompressAI's examples/train.py, one iteration of ``train_one_epoch``."""
    criterion = RateDistortionLoss(lmbda=LAMBDA)
    opt.zero_grad()
    aux_opt.zero_grad()
    out = model(x)
    loss = criterion(out, x)["loss"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    aux = model.aux_loss()
    aux.backward()
    aux_opt.step()


def ours_step(model, opt, aux_opt, x, seeds, ddp_model=None) -> None:
    """The arithmetic of ``icmbridge.train.base.train`` for one step (λ_task = 0)."""
    out = (ddp_model or model)(x, sample_seeds=seeds)
    bpp = bpp_from_likelihoods(out["likelihoods"], x.shape[0] * x.shape[2] * x.shape[3])
    loss = bpp + LAMBDA * 255**2 * F.mse_loss(out["x_hat"], x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], 1.0)
    opt.step()
    aux_opt.zero_grad(set_to_none=True)
    model.aux_loss().backward()
    aux_opt.step()


def timed(fn: Callable[[], None]) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def _ddp_worker(rank: int, arch: str, config: str, batch: int, crop: int, steps: int, q) -> None:
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["BENCH_PORT"])
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = build_codec(config, arch).train().to(memory_format=torch.channels_last)
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        model, [n for n, _ in model.named_parameters() if n.endswith("quantiles")]
    )
    ddp = DistributedDataParallel(model, broadcast_buffers=False)
    opt, aux_opt = optimizers(model)
    x = torch.rand(batch // 2, 3, crop, crop).contiguous(memory_format=torch.channels_last)
    seeds = torch.arange(batch // 2) + rank * batch
    for _ in range(2):
        ours_step(model, opt, aux_opt, x, seeds, ddp)
    times = []
    for _ in range(steps):
        torch.distributed.barrier()
        times.append(timed(lambda: ours_step(model, opt, aux_opt, x, seeds, ddp)))
    if rank == 0:
        q.put(times)
    torch.distributed.destroy_process_group()


def ddp_times(arch: str, config: str, batch: int, crop: int, steps: int) -> list[float]:
    import torch.multiprocessing as mp

    os.environ.setdefault("BENCH_PORT", str(29500 + os.getpid() % 1000))
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    mp.start_processes(
        _ddp_worker, args=(arch, config, batch, crop, steps, q), nprocs=2, start_method="spawn"
    )
    return q.get()


def bench_arch(arch: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    cfg = CONFIGS[args.config]
    dev = torch.device(args.device)
    x = torch.rand(args.batch, 3, args.crop, args.crop, device=dev)
    seeds = torch.arange(args.batch)
    peer = PEERS[arch](N=cfg.N, M=cfg.M).train().to(dev)
    variants: dict[str, Callable[[], None]] = {}
    p_opt = optimizers(peer)
    variants["peer"] = lambda: peer_step(peer, *p_opt, x)
    if args.peer_defaults:  # CompressAI's examples/train.py defaults: batch 16 of 256² patches
        x_default = torch.rand(16, 3, 256, 256, device=dev)
        variants["peer-16x256"] = lambda: peer_step(peer, *p_opt, x_default)
    for layout in args.layouts:
        ours = build_codec(args.config, arch).train().to(dev)
        xin = x
        if layout == "channels-last":
            ours = ours.to(memory_format=torch.channels_last)
            xin = x.contiguous(memory_format=torch.channels_last)
        o_opt = optimizers(ours)
        variants[f"ours-{layout}"] = lambda ours=ours, o_opt=o_opt, xin=xin: ours_step(
            ours, *o_opt, xin, seeds
        )
    times: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(args.reps + 1):
        for k, fn in variants.items():
            t = timed(fn)
            if i:  # the first round warms up allocators and kernels
                times[k].append(t)
    if args.ddp and dev.type == "cpu":
        # blocks of DDP steps between blocks of the in-process variants
        times["ours-ddp-2x1"] = ddp_times(arch, args.config, args.batch, args.crop, args.reps)
        for _ in range(args.reps):
            for k, fn in variants.items():
                times[k].append(timed(fn))
    pixels = {k: args.batch * args.crop**2 for k in times} | {"peer-16x256": 16 * 256**2}
    med = {k: statistics.median(v) for k, v in times.items()}
    mpx = {k: pixels[k] / v / 1e6 for k, v in med.items()}
    best = max((k for k in med if k.startswith("ours")), key=mpx.get)
    result = {
        "arch": arch,
        "peer": PEERS[arch].__name__,
        "median_step_s": {k: round(v, 4) for k, v in med.items()},
        "megapixels_per_s": {k: round(v, 4) for k, v in mpx.items()},
        "best": best,
        "ratio_best_vs_peer": round(mpx[best] / mpx["peer"], 3),
        "ratio_default_vs_peer": round(mpx[f"ours-{args.layouts[0]}"] / mpx["peer"], 3),
    }
    if "peer-16x256" in mpx:
        result["ratio_best_vs_peer_16x256"] = round(mpx[best] / mpx["peer-16x256"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--config", default="cpu", choices=sorted(CONFIGS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--archs", default="icm,mbt2018-mean")
    parser.add_argument(
        "--layouts",
        type=lambda s: s.split(","),
        default=["contiguous", "channels-last"],
        help="memory layouts of ours to time (the first is the default of icmbridge train)",
    )
    parser.add_argument("--ddp", action="store_true", help="also time 2 one-thread DDP processes")
    parser.add_argument(
        "--peer-defaults",
        action="store_true",
        help="also time CompressAI's step at its example's default shape (16 × 256²)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "config": args.config,
        **CONFIGS[args.config].to_dict(),
        "batch": args.batch,
        "crop": args.crop,
        "threads": args.threads,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
        "reps": args.reps,
        "archs": [bench_arch(a, args) for a in args.archs.split(",")],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
