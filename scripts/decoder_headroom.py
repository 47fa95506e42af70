"""How much can a decoder for people still gain on a base's bitstream? Two probes (issue 27).

    python scripts/decoder_headroom.py oracle --model base --set 'bsds:val?take=70:'
    python scripts/decoder_headroom.py side --model base --variant side --steps 300

``oracle``: the base's own g_s on three latents of each image — the unquantized y (what the
bitstream does *not* hold: an upper reference for what quantization costs), ŷ (what it holds)
and E[y | ŷ, μ̂, σ̂] (the posterior mean of y in ŷ's quantization bin under the hyper-prior's
Gaussian, which a decoder could compute from the bitstream). Mean-scale architectures only.

``side``: a latent refinement (``ŷ + f(·)``, zero-initialised, 64 ch × 2 residual blocks)
before all of the base's g_s, trained for MSE on cached ŷ of ``--data`` like
``icmbridge finetune --decoder latent`` (its cached batches, seed, crop and learning rate; Adam
without its warm-up, the whole extent decoded instead of its windows). ``plain``
feeds f ŷ alone; ``side`` feeds it ŷ, μ̂ and log σ̂ from the hyper-prior (all in the bitstream):
whether a decoder conditioned on the hyper-latent knows more than one that is not. Scored as
ΔPSNR over the base's decoder on ``--set`` with a 95 % bootstrap interval over images.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from icmbridge.codec.decoders import ResBlock
from icmbridge.codec.model import pad_to_multiple
from icmbridge.codec.store import load_codec
from icmbridge.data import get_set
from icmbridge.evaluation.stats import interval, mean_replicates, resample_plan
from icmbridge.imageio import array_to_tensor
from icmbridge.metrics.fidelity import psnr as fidelity_psnr
from icmbridge.train.latent_cache import LatentCache


def hyper_params(codec: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(y, μ̂, σ̂) of an image (1, 3, H, W) under a mean-scale codec (float32, as trained)."""
    y = codec.g_a(pad_to_multiple(x, codec.downsampling))
    eb = codec.entropy_bottleneck
    z_hat = eb.quantize(codec.h_a(y), "dequantize", eb._get_medians())
    scales, means = codec.h_s(z_hat).chunk(2, 1)
    return y, means, codec.gaussian_conditional.lower_bound_scale(scales)


def posterior_mean(y_hat: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """E[y | y ∈ [ŷ − ½, ŷ + ½]] for y ~ N(μ, σ): the truncated normal's mean."""
    n = torch.distributions.Normal(0.0, 1.0)
    a, b = (y_hat - 0.5 - mu) / sigma, (y_hat + 0.5 - mu) / sigma
    mass = (n.cdf(b) - n.cdf(a)).clamp_min(1e-9)
    return mu + sigma * (n.log_prob(a).exp() - n.log_prob(b).exp()) / mass


def psnr(x_hat: Tensor, x: Tensor) -> float:
    """The project's PSNR of an unclamped decoder output (clamped as decoding does)."""
    return fidelity_psnr(x, x_hat.clamp(0, 1))


def summary(d: list[float]) -> dict:
    mean = sum(d) / len(d)
    return {
        "mean": round(mean, 4),
        "ci": [round(v, 4) for v in interval(mean_replicates(d, resample_plan(len(d))), mean)],
        "n": len(d),
    }


@torch.no_grad()
def oracle(args: argparse.Namespace) -> dict:
    codec = load_codec(args.model).eval()
    rows = []
    for sample in get_set(args.set, "test"):
        x = array_to_tensor(sample.image)
        h, w = x.shape[-2:]
        y, mu, sigma = hyper_params(codec, x)
        y_hat = torch.round(y - mu) + mu
        out = [
            psnr(codec.g_s(t)[..., :h, :w], x) for t in (y, y_hat, posterior_mean(y_hat, mu, sigma))
        ]
        rows.append(out + [float((y_hat == mu).float().mean())])
        print(sample.name, [round(v, 3) for v in rows[-1]], flush=True)
    return {
        "gs_y_minus_gs_yhat_db": summary([r[0] - r[1] for r in rows]),
        "gs_posterior_mean_minus_gs_yhat_db": summary([r[2] - r[1] for r in rows]),
        "share_of_latents_coded_as_their_mean": summary([r[3] for r in rows]),
    }


class LatentCorrection(nn.Module):
    """ŷ + tail(blocks(relu(head(t)))), t = ŷ alone or ŷ ‖ μ̂ ‖ log σ̂ (the first M channels)."""

    def __init__(self, cin: int, m: int, channels: int = 64, blocks: int = 2) -> None:
        super().__init__()
        self.m = m
        self.head = nn.Conv2d(cin, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(ResBlock(channels) for _ in range(blocks)))
        self.tail = nn.Conv2d(channels, m, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, t: Tensor) -> Tensor:
        return t[:, : self.m] + self.tail(self.blocks(torch.relu(self.head(t))))


def side(args: argparse.Namespace) -> dict:
    codec = load_codec(args.model).eval()
    m = codec.config.M
    with torch.no_grad():
        cache = LatentCache.build(codec, args.data.split(","), path=args.cache)
        if args.variant == "side":  # μ̂ ‖ log σ̂ beside each cached ŷ, on the same grid
            for k, img in enumerate(cache.images):
                _, mu, sigma = hyper_params(codec, img[None].float() / 255)
                cache.latents[k] = torch.cat([cache.latents[k], mu[0], sigma[0].log()])
    torch.manual_seed(args.seed)
    pre = LatentCorrection(m if args.variant == "plain" else 3 * m, m)
    g_s = copy.deepcopy(codec.g_s).train()
    opt = torch.optim.Adam([*pre.parameters(), *g_s.parameters()], lr=args.lr)
    margin = 2 + 2 + 2 * len(pre.blocks)  # g_s's 2 latents + the correction's reach
    t0 = time.time()
    for step in range(args.steps):
        b = cache.batch(step, args.batch_size, args.crop, args.seed, margin)
        x_hat = LatentCache.crop_cores(g_s(pre(b.y_ext)), b.offsets, args.crop)
        loss = ((x_hat - b.x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(
                f"step {step} train PSNR {-10 * math.log10(loss.item()):.2f} "
                f"{time.time() - t0:.0f} s",
                flush=True,
            )
    pre.eval()
    g_s.eval()
    deltas = []
    with torch.no_grad():
        for sample in get_set(args.set, "test"):
            x = array_to_tensor(sample.image)
            h, w = x.shape[-2:]
            _, mu, sigma = hyper_params(codec, x)
            y_hat = codec.quantized_latent(x)
            t = y_hat if args.variant == "plain" else torch.cat([y_hat, mu, sigma.log()], 1)
            deltas.append(
                psnr(g_s(pre(t))[..., :h, :w], x) - psnr(codec.g_s(y_hat)[..., :h, :w], x)
            )
    return {
        "variant": args.variant,
        "steps": args.steps,
        "train_s": round(time.time() - t0),
        "delta_psnr_db": summary(deltas),
        "per_image": [round(d, 4) for d in deltas],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("probe", choices=["oracle", "side"])
    p.add_argument("--model", default="base", help="a mean-scale codec (name or folder)")
    p.add_argument("--set", default="bsds:val?take=70:", help="held-out images scored")
    p.add_argument("--data", default="bsds:train,bsds:val?take=0:70", help="side: training sets")
    p.add_argument("--cache", help="side: a latents.pt of finetune's cache to reuse")
    p.add_argument("--variant", choices=["plain", "side"], default="side")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="write the result as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "probe": args.probe,
        "model": args.model,
        "set": args.set,
        **(oracle(args) if args.probe == "oracle" else side(args)),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
