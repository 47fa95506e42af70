"""Adversarial losses on discriminator logits, pix2pix's ``GANLoss`` plus hinge and penalties.

All functions take raw logits (no sigmoid) of any shape, e.g. a PatchGAN map, and average over
every element. The discriminator loss is the mean of its real and fake terms (pix2pix's
``0.5 · (real + fake)``), so its scale does not change with the mode's number of terms.

=========  ==============================  =================================================
mode       discriminator                   generator
=========  ==============================  =================================================
lsgan      ½[(D(x)−1)² + D(x̂)²]            (D(x̂)−1)²            (Mao et al. 2017)
vanilla    ½[BCE(D(x),1) + BCE(D(x̂),0)]    BCE(D(x̂),1)          (non-saturating, Goodfellow)
hinge      ½[relu(1−D(x)) + relu(1+D(x̂))]  −D(x̂)                (Lim & Ye 2017; Miyato 2018)
=========  ==============================  =================================================
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icmbridge.errors import InputError

Mode = Literal["lsgan", "vanilla", "hinge"]
MODES: tuple[str, ...] = ("lsgan", "vanilla", "hinge")


class GANLoss(nn.Module):
    """Adversarial loss of one ``mode``; ``loss(logits, target_is_real)`` as in pix2pix."""

    def __init__(self, mode: Mode = "lsgan") -> None:
        super().__init__()
        if mode not in MODES:
            raise InputError(f"unknown GAN loss mode {mode!r}; choose one of {MODES}")
        self.mode = mode

    def forward(self, logits: Tensor, target_is_real: bool) -> Tensor:
        """Loss pushing ``logits`` towards "real" or "fake" (the discriminator's view)."""
        if self.mode == "lsgan":
            target = 1.0 if target_is_real else 0.0
            return F.mse_loss(logits, torch.full_like(logits, target))
        if self.mode == "vanilla":
            target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
            return F.binary_cross_entropy_with_logits(logits, target)
        sign = -1.0 if target_is_real else 1.0  # hinge
        return F.relu(1.0 + sign * logits).mean()

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        """Loss of the generator (decoder) whose outputs got ``fake_logits``; lower = more real."""
        if self.mode == "hinge":
            return -fake_logits.mean()
        return self(fake_logits, True)

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """Loss of D: real patches should score real, decoded ones fake (detach x̂ before D)."""
        return 0.5 * (self(real_logits, True) + self(fake_logits, False))


def r1_penalty(real_logits: Tensor, real_inputs: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): mean over the batch of ‖∇ₓ D(x)‖² on real inputs.

    ``real_inputs`` must have ``requires_grad=True`` before D is applied. The graph is kept, so
    the penalty backpropagates into D; add ``γ/2 · r1_penalty(...)`` to the D loss.
    """
    if not real_inputs.requires_grad:
        raise InputError("r1_penalty needs real_inputs.requires_grad_(True) before calling D")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def gradient_penalty(
    discriminator: nn.Module,
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
    **d_kwargs: Tensor,
) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(‖∇ D(x̃)‖ − 1)²] on random real/fake mixes x̃.

    ``generator`` seeds the mixing weights; extra keyword tensors (e.g. ``cond``) go to D.
    """
    if real.shape != fake.shape:
        raise InputError(
            f"real and fake differ in shape: {tuple(real.shape)} vs {tuple(fake.shape)}"
        )
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator)
    alpha = alpha.to(device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    logits = discriminator(mixed, **d_kwargs)
    (grad,) = torch.autograd.grad(logits.sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
