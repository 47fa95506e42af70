"""The paper's method: PatchGAN finetuning of the first synthesis layers of an ICM codec.

    x ─► frozen g_a ─► ŷ (exactly what the bitstream decodes to) ─► g_s [first K trainable] ─► x̂
    patches(x), patches(x̂) at the same random places ─► PatchGAN D
    loss_G = λ_mse · MSE(patches | image) + λ_a · adv_G(D(x̂ patches)) (+ λ_task · task(x̂, x))
    loss_D = adv_D(D(x patches), D(x̂ patches).detach())

Only the selected decoder parameters change. The encoder, hyper-prior and entropy models are
frozen (and kept in eval mode), so the finetuned "human" decoder reads the base codec's bitstreams
byte for byte, at the same rate and the same inference cost. The MSE here is on [0, 1] pixels,
without CompressAI's 255² factor, so λ_a compares directly with the paper's L_mse + λ_a·L_GAN.
"""

from __future__ import annotations

import fnmatch
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from icmbridge.codec.bitstream import fingerprint
from icmbridge.codec.model import CodecContract
from icmbridge.codec.store import load_codec
from icmbridge.errors import InputError
from icmbridge.gan import (
    GANLoss,
    LatentConditionedDiscriminator,
    PatchDiscriminator,
    extract_patches,
    init_weights_normal,
    latent_patches,
)
from icmbridge.gan.losses import r1_penalty
from icmbridge.gan.patches import sample_patch_boxes
from icmbridge.train import runtime as rtm
from icmbridge.train.base import build_training_data, check_task_loss, compute_task_loss

# Presets set several options at once; options given explicitly still win.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's headline row: 3 patches of 128×128 (needs crops larger than the patches).
    "paper": {"patches": 3, "patch_size": 128, "crop": 256, "batch_size": 4},
    # The paper's "low impact" row: attenuated adversarial dynamics (λ_a and learning rates ÷ 4).
    "li": {"lambda_a": 2.5e-4, "lr": 2.5e-5, "lr_d": 5e-5},
}


@dataclass
class FinetuneConfig:
    out: str
    base: str = "base"
    layers: str = "first:2"
    patch_size: int = 64
    patches: int = 3
    lambda_a: float = 1e-3
    lambda_mse: float = 1.0
    mse_on: str = "patches"  # or "image"
    lambda_task: float = 0.0
    task: str = "face"
    task_weights: str | None = None
    task_options: list[str] = field(default_factory=list)  # KEY=VALUE for the factory
    task_loss: str = "distill"  # or "supervised" (with --lambda-task > 0 and annotated data)
    gan_mode: str = "lsgan"
    d_norm: str = "batch"
    d_cond: str = "none"  # or "latent": D also sees ŷ under each patch (HiFiC / MS-ILLM)
    d_cond_channels: int = 12
    ndf: int = 64
    d_layers: int = 3
    d_steps: int = 1  # discriminator updates per generator update
    r1: float = 0.0  # weight of the R1 penalty on real patches (0: off)
    lr: float = 1e-4
    lr_d: float = 2e-4
    warmup: int = 20
    steps: int = 400
    batch_size: int = 8
    crop: int = 128
    data: list[str] = field(default_factory=lambda: ["faces", "photos"])
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    collapse_steps: int = 50
    max_bad_steps: int = 20
    device: str = "auto"
    threads: int | None = None
    tensorboard: bool = True
    stop_at: int | None = None  # end after this step (the schedule still follows `steps`)
    preset: str | None = None

    def validate(self) -> None:
        for name in ("lambda_a", "lambda_mse", "lambda_task", "lr", "lr_d", "r1"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise InputError(
                    f"--{name.replace('_', '-')} must be a finite number ≥ 0, got {value}"
                )
        if self.lambda_mse == 0 and self.lambda_a == 0 and self.lambda_task == 0:
            raise InputError("all generator loss weights are 0: nothing to finetune for")
        check_task_loss(self.task_loss)
        if self.mse_on not in ("patches", "image"):
            raise InputError(f"--mse-on must be patches or image, got {self.mse_on!r}")
        if self.patch_size > self.crop:
            raise InputError(
                f"--patch-size {self.patch_size} is larger than the training crop {self.crop}: "
                "lower it or raise --crop"
            )
        if self.patch_size < 24:
            raise InputError(
                f"--patch-size must be ≥ 24 (the discriminator's minimum), got {self.patch_size}"
            )
        if min(self.patches, self.steps, self.batch_size, self.d_steps, self.checkpoint_every) < 1:
            raise InputError(
                "--patches, --steps, --batch-size, --d-steps, --checkpoint-every must be ≥ 1"
            )
        if self.d_cond not in ("none", "latent"):
            raise InputError(f"--d-cond must be none or latent, got {self.d_cond!r}")
        if self.d_cond_channels < 1:
            raise InputError(f"--d-cond-channels must be ≥ 1, got {self.d_cond_channels}")
        if self.gan_mode not in ("lsgan", "vanilla", "hinge"):
            raise InputError(f"--gan-mode must be lsgan, vanilla or hinge, got {self.gan_mode!r}")


def apply_preset(values: dict[str, Any], preset: str | None, given: set[str]) -> dict[str, Any]:
    if preset is None:
        return values
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    return {**values, **{k: v for k, v in PRESETS[preset].items() if k not in given}}


def select_layers(codec: CodecContract, spec: str) -> list[str]:
    """Parameter-name prefixes to train from ``first:K`` or comma-separated name patterns."""
    layers = codec.synthesis_layers()
    if spec.startswith("first:"):
        try:
            k = int(spec.split(":", 1)[1])
        except ValueError:
            raise InputError(f"--layers {spec!r}: expected first:K with an integer K") from None
        if not 1 <= k <= len(layers):
            raise InputError(
                f"--layers first:{k}: the decoder has {len(layers)} synthesis layers; "
                f"choose K in 1..{len(layers)}"
            )
        return [name for layer in layers[:k] for name in layer]
    if spec == "all":
        return [name for layer in layers for name in layer]
    names = [n for n, _ in codec.named_parameters()]
    chosen = []
    for pattern in (p.strip() for p in spec.split(",") if p.strip()):
        hits = [n for n in names if fnmatch.fnmatch(n, pattern) or n.startswith(pattern + ".")]
        if not hits:
            raise InputError(
                f"--layers pattern {pattern!r} matches no codec parameter "
                "(e.g. g_s.0, 'g_s.[0-3].*', first:2)"
            )
        bad = [n for n in hits if not n.startswith(codec.synthesis_name + ".")]
        if bad:
            raise InputError(f"--layers may select decoder (g_s) parameters only, not {bad[0]}")
        chosen += hits
    return sorted(set(chosen))


def per_sample_boxes(ids: Tensor, seed: int, h: int, w: int, size: int, n: int) -> Tensor:
    """Patch positions drawn from each sample's own seed (DDP- and resume-invariant)."""
    return torch.cat(
        [
            sample_patch_boxes(
                1, h, w, size, n, torch.Generator().manual_seed(seed * 7919 + int(i))
            )
            for i in ids
        ]
    )


def validation_crop() -> Tensor:
    """A fixed held-out crop (the astronaut's face region) for PSNR/artifact logging."""
    from icmbridge.data import get_set
    from icmbridge.imageio import array_to_tensor

    sample = get_set("photos", "test")[0]
    return array_to_tensor(sample.image[:256, 128:384])


@torch.no_grad()
def measure_crop(codec: CodecContract, x: Tensor) -> dict[str, float]:
    from icmbridge.metrics.artifacts import artifact_db
    from icmbridge.metrics.fidelity import psnr

    x_hat = codec.synthesize(codec.quantized_latent(x), tuple(x.shape[-2:])).clamp(0, 1)
    return {"psnr": psnr(x, x_hat), "artifact_db": artifact_db(x, x_hat)}


def finetune(cfg: FinetuneConfig, resume: bool = False) -> Path:
    """Finetune the first decoder layers of ``cfg.base``; returns the final checkpoint folder."""
    cfg.validate()
    rt = rtm.setup_runtime(cfg.device, cfg.threads)
    run_dir = Path(cfg.out)
    ckpts = rtm.Checkpoints(run_dir)
    try:
        rtm.prepare_run_dir(rt, run_dir, {"command": "finetune", **asdict(cfg)})
        torch.manual_seed(cfg.seed)

        # --- generator: the base codec, all frozen but the selected decoder layers
        codec, saved = rtm.start_codec(ckpts, resume, rt, lambda: load_codec(cfg.base))
        base_fp = fingerprint(codec)
        trainable = codec.freeze_for_finetune(select_layers(codec, cfg.layers))
        codec.to(rt.device).train()

        # --- discriminator, losses, data
        d_sizes = {"ndf": cfg.ndf, "n_layers": cfg.d_layers, "norm": cfg.d_norm}
        disc = init_weights_normal(
            LatentConditionedDiscriminator(codec.config.M, cfg.d_cond_channels, **d_sizes)
            if cfg.d_cond == "latent"
            else PatchDiscriminator(**d_sizes)
        ).to(rt.device)
        gan = GANLoss(cfg.gan_mode)
        task = None
        if cfg.lambda_task > 0:
            from icmbridge.tasks import build_task, parse_task_options

            task = build_task(
                cfg.task, weights_path=cfg.task_weights, **parse_task_options(cfg.task_options)
            ).to(rt.device)
        data = build_training_data(cfg.data, cfg.crop, cfg.seed)
        if task is not None:
            check_task_loss(cfg.task_loss, data, cfg.data)
        opt_g = torch.optim.Adam(trainable, lr=cfg.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
        state: dict[str, Any] = {"step": 0, "bad_steps": 0, "skipped": 0, "collapsed": 0}
        if saved is not None:
            disc.load_state_dict(saved["discriminator"])
            opt_g.load_state_dict(saved["optimizer_g"])
            opt_d.load_state_dict(saved["optimizer_d"])
            state = saved["loop"]
        if state["step"] >= min(cfg.steps, cfg.stop_at or cfg.steps):
            return ckpts.last or run_dir

        # Only g_s has trainable parameters: it is what DDP wraps (gradients all-reduced).
        synthesis: torch.nn.Module = codec.g_s
        disc_model: torch.nn.Module = disc
        if rt.distributed:
            synthesis = DistributedDataParallel(codec.g_s, broadcast_buffers=False)
            disc_model = DistributedDataParallel(disc)
        log = rtm.Logger(rt, run_dir, cfg.tensorboard)
        val = validation_crop() if rt.is_main else None
        if rt.is_main and val is not None:
            start = measure_crop(codec, val)
            log.scalars(state["step"], start, prefix="heldout")
            print(
                f"step {state['step']}: held-out crop {start['psnr']:.2f} dB, "
                f"artifact {start['artifact_db']:+.2f} dB",
                file=sys.stderr,
            )

        def save(step: int) -> None:
            rngs = rtm.rng_states(rt)  # on every rank (a collective under torchrun)
            rtm.save_checkpoint(
                rt,
                ckpts,
                step,
                codec,
                lambda: {
                    "finetuned_from": str(cfg.base),
                    "base_fingerprint": base_fp.hex(),
                    "trainable": select_layers(codec, cfg.layers),
                    "trained_steps": step,
                    "finetune_config": asdict(cfg),
                },
                lambda: {
                    "discriminator": disc.state_dict(),
                    "optimizer_g": opt_g.state_dict(),
                    "optimizer_d": opt_d.state_dict(),
                    "loop": dict(state),
                    "rng": rngs,
                },
            )

        # the global generators as they were when the checkpoint was written (task networks
        # draw from them, e.g. torchvision's proposal samplers): resume is exact for every task
        rtm.restore_rng_states(rt, saved.get("rng") if saved is not None else None)
        bar = rtm.progress(rt, cfg.steps, state["step"], "finetune")
        t0 = time.perf_counter()
        for step in bar:
            # Both learning rates decay (cosine) to 5 % by the last step: the adversarial game
            # settles instead of drifting into new patterns late in the run.
            rtm.set_lr(opt_g, rtm.cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup))
            rtm.set_lr(opt_d, rtm.cosine_lr(step, cfg.steps, cfg.lr_d, cfg.warmup))
            x, ids = rtm.step_batch(data, step, cfg.batch_size, rt)
            x = x.to(rt.device)
            y_hat = codec.quantized_latent(x)
            x_hat = synthesis(y_hat)[..., : x.shape[2], : x.shape[3]]
            boxes = per_sample_boxes(
                ids, cfg.seed + step, x.shape[2], x.shape[3], cfg.patch_size, cfg.patches
            ).to(rt.device)
            real = extract_patches(x, boxes, cfg.patch_size)
            fake = extract_patches(x_hat, boxes, cfg.patch_size)
            # D's extra input, the same for real and fake patches: ŷ under each patch.
            cond = (
                (latent_patches(y_hat, codec.upsampling, boxes, cfg.patch_size),)
                if cfg.d_cond == "latent"
                else ()
            )

            # --- discriminator
            for _ in range(cfg.d_steps):
                real_in = real.detach().requires_grad_(cfg.r1 > 0)
                real_logits = disc_model(real_in, *cond)
                fake_logits = disc_model(fake.detach(), *cond)
                loss_d = gan.discriminator_loss(real_logits, fake_logits)
                if cfg.r1 > 0:
                    loss_d = loss_d + cfg.r1 * r1_penalty(real_logits, real_in)
                if not rtm.all_finite(rt, loss_d):
                    break
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()

            # --- generator (the selected decoder layers)
            for p in disc.parameters():
                p.requires_grad_(False)
            adv = gan.generator_loss(disc_model(fake, *cond))
            for p in disc.parameters():
                p.requires_grad_(True)
            mse = F.mse_loss(fake, real) if cfg.mse_on == "patches" else F.mse_loss(x_hat, x)
            task_loss = (
                compute_task_loss(task, x_hat, x, data, ids, cfg.task_loss)
                if task is not None
                else torch.zeros((), device=x.device)
            )
            loss_g = cfg.lambda_mse * mse + cfg.lambda_a * adv + cfg.lambda_task * task_loss
            ok = rtm.all_finite(rt, loss_g, loss_d)
            state["step"] = step + 1
            if not ok:  # every rank skips the step together; the run goes on to its checkpoints
                rtm.count_bad_step(
                    state, step, cfg.max_bad_steps, "lower --lr/--lr-d or --lambda-a"
                )
            else:
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                state["bad_steps"] = 0

            terms = rtm.mean_over_ranks(
                rt,
                {
                    "loss_g": loss_g.item(),
                    "loss_d": loss_d.item(),
                    "adv": adv.item(),
                    "mse": mse.item(),
                    "task": task_loss.item(),
                    "d_real": real_logits.mean().item(),
                    "d_fake": fake_logits.mean().item(),
                },
            )
            state["collapsed"] = state["collapsed"] + 1 if terms["loss_d"] < 1e-3 else 0
            if state["collapsed"] == cfg.collapse_steps and rt.is_main:
                bar.write(
                    f"warning: discriminator loss < 1e-3 for {cfg.collapse_steps} steps "
                    f"(step {step + 1}): D has collapsed; lower --lr-d or raise --lambda-a"
                )
            if rt.is_main and (step % cfg.log_every == 0 or step + 1 == cfg.steps):
                bar.set_postfix(
                    d_real=f"{terms['d_real']:.2f}",
                    d_fake=f"{terms['d_fake']:.2f}",
                    mse=f"{terms['mse']:.5f}",
                    adv=f"{terms['adv']:.3f}",
                )
                log.scalars(
                    step,
                    {
                        **terms,
                        "sec_per_step": (time.perf_counter() - t0) / (step + 1 - bar.initial),
                    },
                )
            due = rtm.checkpoint_due(state["step"], cfg.checkpoint_every, cfg.steps)
            if due:
                if rt.is_main and val is not None:
                    held_out = measure_crop(codec, val)
                    log.scalars(step, held_out, prefix="heldout")
                    bar.write(
                        f"step {state['step']}: held-out crop {held_out['psnr']:.2f} dB, "
                        f"artifact {held_out['artifact_db']:+.2f} dB"
                    )
                save(state["step"])
            if cfg.stop_at is not None and state["step"] >= cfg.stop_at:
                if not due:
                    save(state["step"])
                break
        log.close()
        return ckpts.last or run_dir
    finally:
        rtm.teardown_runtime(rt)
