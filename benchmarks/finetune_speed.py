"""Step time of the paper's finetuning (first K=2 synthesis layers) against the whole decoder.

Same codec (the shipped ``base`` if present), same batch, same PatchGAN and patches; only the set
of trainable parameters differs. Interleaved repetitions, medians. Each step is what
``icmbridge finetune`` does: ŷ from the frozen encoder, g_s forward, one D update, one G update.

    python benchmarks/finetune_speed.py [--reps 9] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from icmbridge.codec.model import CONFIGS, ICMCodec
from icmbridge.codec.store import available_models, load_codec
from icmbridge.gan import GANLoss, PatchDiscriminator, extract_patches, init_weights_normal
from icmbridge.gan.patches import sample_patch_boxes
from icmbridge.train.finetune import select_layers


def make(layers: str):
    codec = load_codec("base") if "base" in available_models() else ICMCodec(CONFIGS["cpu"])
    params = codec.freeze_for_finetune(select_layers(codec, layers))
    codec.train()
    disc = init_weights_normal(PatchDiscriminator())
    return codec, disc, torch.optim.Adam(params, 1e-4), torch.optim.Adam(disc.parameters(), 2e-4)


def step(codec, disc, opt_g, opt_d, x, boxes, gan) -> None:
    y_hat = codec.quantized_latent(x)
    x_hat = codec.g_s(y_hat)
    real, fake = extract_patches(x, boxes, 64), extract_patches(x_hat, boxes, 64)
    loss_d = gan.discriminator_loss(disc(real), disc(fake.detach()))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    loss_g = F.mse_loss(fake, real) + 1e-3 * gan.generator_loss(disc(fake))
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 128, 128)
    boxes = sample_patch_boxes(args.batch, 128, 128, 64, 3, torch.Generator().manual_seed(0))
    gan = GANLoss("lsgan")
    setups = {"first:2": make("first:2"), "all": make("all")}
    times: dict[str, list[float]] = {k: [] for k in setups}
    for i in range(args.reps + 1):
        for name, (codec, disc, og, od) in setups.items():
            t = time.perf_counter()
            step(codec, disc, og, od, x, boxes, gan)
            if i:  # first round: warm-up
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    trainable = {
        k: sum(p.numel() for p in s[0].parameters() if p.requires_grad) for k, s in setups.items()
    }
    result = {
        "batch": args.batch,
        "threads": args.threads,
        "reps": args.reps,
        "k2_step_s": round(med["first:2"], 4),
        "whole_decoder_step_s": round(med["all"], 4),
        "step_ratio": round(med["first:2"] / med["all"], 3),
        "k2_trainable_params": trainable["first:2"],
        "whole_trainable_params": trainable["all"],
    }
    print(
        json.dumps(result) if args.json else "\n".join(f"{k:>24}: {v}" for k, v in result.items())
    )


if __name__ == "__main__":
    main()
