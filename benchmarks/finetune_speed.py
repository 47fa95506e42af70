"""Step time of the paper's finetuning (first K=2 synthesis layers) against the whole decoder,
and of decoder-only steps on cached ŷ (issue 27) against both.

Same codec (the shipped ``base`` if present), same batch, same PatchGAN and patches; only the set
of trainable parameters differs. Interleaved repetitions, medians. Each step is what
``icmbridge finetune`` does: ŷ from the frozen encoder, g_s forward, one D update, one G update.
The cached steps (``--preset``-free default of ``finetune``: no D, MSE on the whole crop) draw
aligned crops of ŷ from a :class:`LatentCache` of the packaged photos (encoded once, outside the
timing) and run only the decoder: the same decoder (all of g_s) and the refinement decoders.

    python benchmarks/finetune_speed.py [--reps 9] [--json] \
        [--out results/benchmarks/finetune_speed.json]
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


def make_cached(spec: dict | None):
    from icmbridge.codec.decoders import install_decoder

    codec = load_codec("base") if "base" in available_models() else ICMCodec(CONFIGS["cpu"])
    if spec:
        install_decoder(codec, spec)
    params = codec.freeze_for_finetune(select_layers(codec, "all"))
    codec.train()
    return codec, torch.optim.Adam(params, 1e-4, betas=(0.9, 0.999))


def cached_step(codec, opt, cache, index: int, batch: int) -> None:
    from icmbridge.train.finetune import FinetuneConfig, decode_cores

    b = cache.batch(index, batch, 128, seed=0)
    x_hat = decode_cores(codec.g_s, b.y_ext, b.offsets, FinetuneConfig(out="", crop=128))
    loss = F.mse_loss(x_hat, b.x)
    opt.zero_grad()
    loss.backward()
    opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", help="also write the result as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 128, 128)
    boxes = sample_patch_boxes(args.batch, 128, 128, 64, 3, torch.Generator().manual_seed(0))
    gan = GANLoss("lsgan")
    setups = {"first:2": make("first:2"), "all": make("all")}
    from icmbridge.train.latent_cache import LatentCache

    cache = LatentCache.build(setups["all"][0], ["photos"], min_side=128)
    cached = {
        "cached_same_all": make_cached(None),
        "cached_refine16x2": make_cached({"arch": "refine", "channels": 16, "blocks": 2}),
        "cached_refine32x2": make_cached({"arch": "refine", "channels": 32, "blocks": 2}),
    }
    times: dict[str, list[float]] = {k: [] for k in [*setups, *cached]}
    for i in range(args.reps + 1):
        for name, (codec, disc, og, od) in setups.items():
            t = time.perf_counter()
            step(codec, disc, og, od, x, boxes, gan)
            if i:  # first round: warm-up
                times[name].append(time.perf_counter() - t)
        for name, (codec, opt) in cached.items():
            t = time.perf_counter()
            cached_step(codec, opt, cache, i, args.batch)
            if i:
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
        # decoder-only steps on cached ŷ (128² cores decoded with a 2-latent margin), MSE, no D
        **{f"{k}_step_s": round(med[k], 4) for k in cached},
        "k2_steps_per_s": round(1 / med["first:2"], 3),
        **{f"{k}_steps_per_s": round(1 / med[k], 3) for k in cached},
        **{f"{k}_speedup_vs_k2": round(med["first:2"] / med[k], 3) for k in cached},
    }
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(
        json.dumps(result) if args.json else "\n".join(f"{k:>24}: {v}" for k, v in result.items())
    )


if __name__ == "__main__":
    main()
