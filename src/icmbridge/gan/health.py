"""Discriminator health: does D tell real from decoded patches it never trained on?

A discriminator's training losses say little: a BatchNorm PatchGAN fed real and decoded patches in
*separate* batches separates the two batches by their statistics (train-mode d_real 0.77 vs d_fake
0.40) while it scores held-out patches alike in eval mode (0.48 vs 0.48), and its gradient then
follows batch statistics rather than the artifacts. So D is scored the way it is used to judge:

    fixed held-out crops x ─► frozen g_a ─► ŷ (cached) ─► current g_s ─► x̂
    patches of x and x̂ at fixed places ─► D in eval mode ─► one score per patch (mean logit)
    AUC = P(score(real patch) > score(decoded patch)) over all real/decoded pairs

AUC 0.5: D cannot tell them apart; 1.0: every real patch scores above every decoded one.
``paired`` is the share of places where the real patch scores above its own decoded twin.
Everything D sees here comes from images outside the training data, at the same places in x and
x̂, so neither batch statistics nor memorised crops can make a sick D look healthy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from icmbridge.errors import InputError
from icmbridge.gan.patches import extract_patches, sample_patch_boxes

#: Below this held-out AUC a discriminator is reported as not telling patches apart.
SICK_AUC = 0.6


def auc(real: Tensor, fake: Tensor) -> float:
    """Mann–Whitney AUC of ``real`` scores above ``fake`` scores (ties count one half)."""
    real, fake = real.flatten().double(), fake.flatten().double()
    if real.numel() == 0 or fake.numel() == 0:
        raise InputError("auc needs at least one real and one fake score")
    diff = real[:, None] - fake[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


@dataclass
class HealthSet:
    """Held-out crops, their cached latents and fixed patch boxes (``(B, n, 2)``)."""

    x: Tensor
    y_hat: Tensor
    boxes: Tensor
    patch_size: int

    @property
    def pairs(self) -> int:
        return self.boxes.shape[0] * self.boxes.shape[1]


def crops_from_images(images: list[Tensor], crop: int, count: int, seed: int = 0) -> Tensor:
    """``count`` crops of ``crop``² at seeded places, cycling over ``images`` ((1|3, H, W) each)."""
    usable = [im for im in images if min(im.shape[-2:]) >= crop]
    if not usable:
        raise InputError(f"no held-out image is at least {crop}×{crop} pixels for D health")
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        im = usable[i % len(usable)]
        h, w = im.shape[-2:]
        top = int(torch.randint(0, h - crop + 1, (1,), generator=g))
        left = int(torch.randint(0, w - crop + 1, (1,), generator=g))
        out.append(im[..., top : top + crop, left : left + crop])
    return torch.stack(out)


@torch.no_grad()
def build_health_set(
    codec: nn.Module,
    images: list[Tensor],
    crop: int,
    patch_size: int,
    patches: int,
    count: int = 32,
    seed: int = 0,
) -> HealthSet:
    """Fixed held-out pairs: ``count`` crops, ``patches`` places each, ŷ computed once (the
    encoder is frozen, so only the decoder's output changes between checks)."""
    x = crops_from_images(images, crop, count, seed)
    device = next(codec.parameters()).device
    x = x.to(device)
    y_hat = codec.quantized_latent(x)  # type: ignore[operator]
    boxes = sample_patch_boxes(
        count, crop, crop, patch_size, patches, torch.Generator().manual_seed(seed + 1)
    )
    return HealthSet(x=x, y_hat=y_hat, boxes=boxes, patch_size=patch_size)


@torch.no_grad()
def measure_health(
    disc: nn.Module,
    synthesis: nn.Module,
    health: HealthSet,
    cond_of: object = None,
) -> dict[str, float]:
    """Score D in eval mode on the held-out pairs decoded by the current ``synthesis``.

    ``cond_of(y_hat, boxes, patch_size)`` gives D's extra input (a latent-conditioned D), or None.
    D and ``synthesis`` are put back in the training mode they were in.
    """
    was_d, was_s = disc.training, synthesis.training
    disc.eval()
    synthesis.eval()
    try:
        x = health.x
        x_hat = synthesis(health.y_hat)[..., : x.shape[2], : x.shape[3]].clamp(0, 1)
        real = extract_patches(x, health.boxes, health.patch_size)
        fake = extract_patches(x_hat, health.boxes, health.patch_size)
        cond = (cond_of(health.y_hat, health.boxes, health.patch_size),) if cond_of else ()  # type: ignore[operator]
        s_real = disc(real, *cond).flatten(1).mean(1)
        s_fake = disc(fake, *cond).flatten(1).mean(1)
    finally:
        disc.train(was_d)
        synthesis.train(was_s)
    return {
        "auc": auc(s_real, s_fake),
        "paired": float((s_real > s_fake).double().mean()),
        "real": float(s_real.mean()),
        "fake": float(s_fake.mean()),
    }


def health_warning(auc_value: float, d_steps: int) -> str | None:
    """A one-line warning when D, after ``d_steps`` updates, still cannot judge patches."""
    if auc_value >= SICK_AUC:
        return None
    return (
        f"warning: discriminator health: held-out per-patch AUC {auc_value:.2f} after "
        f"{d_steps} D updates (0.5 = chance): D does not tell real from decoded patches, so "
        "its gradient is noise or batch statistics; try --d-norm none or batch-joint, "
        "--d-warmup, or a higher --lr-d"
    )
