"""Training-step time of icmbridge's codec against CompressAI's bmshj2018 hyper-prior.

Both do rate + MSE on the same batch of crops (ours with its per-sample seeded noise, padding
and input checks), same N and M, same threads, interleaved repetitions, medians. The face task's
share of a full icmbridge step (distillation loss forward + backward) is measured separately.

    python benchmarks/train_speed.py [--reps 9] [--batch 8] [--crop 128] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from compressai.models import ScaleHyperprior

from icmbridge.codec.model import CONFIGS, ICMCodec
from icmbridge.tasks import build_task
from icmbridge.train.base import bpp_from_likelihoods


def step(model, opt, x, seeds=None, task=None) -> None:
    out = model(x) if seeds is None else model(x, sample_seeds=seeds)
    bpp = bpp_from_likelihoods(out["likelihoods"], x.shape[0] * x.shape[2] * x.shape[3])
    loss = bpp + 0.01 * 255**2 * F.mse_loss(out["x_hat"], x)
    if task is not None:
        loss = loss + task.loss(out["x_hat"], x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--config", default="cpu", choices=sorted(CONFIGS))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = CONFIGS[args.config]
    ours, peer = ICMCodec(cfg).train(), ScaleHyperprior(N=cfg.N, M=cfg.M).train()
    opt_o = torch.optim.Adam(ours.parameters(), 1e-5)
    opt_p = torch.optim.Adam(peer.parameters(), 1e-5)
    task = build_task("face")
    x = torch.rand(args.batch, 3, args.crop, args.crop)
    seeds = torch.arange(args.batch)
    times: dict[str, list[float]] = {"ours": [], "peer": [], "ours_with_task": []}
    for i in range(args.reps + 1):
        t = {
            "ours": timed(lambda: step(ours, opt_o, x, seeds)),
            "peer": timed(lambda: step(peer, opt_p, x)),
            "ours_with_task": timed(lambda: step(ours, opt_o, x, seeds, task)),
        }
        if i:  # the first round warms up allocators and kernels
            for k, v in t.items():
                times[k].append(v)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "N": cfg.N,
        "M": cfg.M,
        "batch": args.batch,
        "crop": args.crop,
        "threads": args.threads,
        "reps": args.reps,
        **{f"{k}_s": round(v, 4) for k, v in med.items()},
        "step_ratio": round(med["ours"] / med["peer"], 3),
        "task_share": round((med["ours_with_task"] - med["ours"]) / med["ours_with_task"], 3),
    }
    print(
        json.dumps(result) if args.json else "\n".join(f"{k:>18}: {v}" for k, v in result.items())
    )


if __name__ == "__main__":
    main()
