"""The adversarial half of a finetuning step, decided once from the settings.

pix2pix's ``optimize_parameters`` splits a step into ``backward_D`` and ``backward_G``; here they
are methods of one object built from the :class:`~icmbridge.train.config.FinetuneConfig`:

* :class:`PatchGAN` (λ_a > 0): a PatchGAN discriminator with its optimizer and loss;
  :meth:`~PatchGAN.discriminator_step` updates D on real and decoded patches (x̂ detached),
  :meth:`~PatchGAN.generator_loss` is the decoder's adversarial loss (D frozen), and
  :meth:`~PatchGAN.weight` the λ it gets (fixed λ_a, or balanced against the reconstruction's
  gradient at the last trainable layer, Esser et al. 2021). It also scores D's health.
* :class:`NoAdversary` (λ_a = 0, the MSE-only control): no D step, an adversarial loss of 0.

The finetuning loop calls the same methods on either, with no ``if λ_a > 0`` of its own. Both
hold a discriminator and its optimizer (a λ_a = 0 run's stays at its initial weights): checkpoints
keep one format, and the random stream after setup is the same with and without D.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from icmbridge.gan import (
    GANLoss,
    LatentConditionedDiscriminator,
    PatchDiscriminator,
    init_weights_normal,
    latent_patches,
)
from icmbridge.gan.health import HealthSet, build_health_set, measure_health
from icmbridge.gan.losses import r1_penalty
from icmbridge.train import runtime as rtm
from icmbridge.train.config import FinetuneConfig


def build_discriminator(cfg: FinetuneConfig, latent_channels: int) -> torch.nn.Module:
    """The PatchGAN of ``cfg`` (latent-conditioned with ``--d-cond latent``), pix2pix's init."""
    norm = "batch" if cfg.d_norm == "batch-joint" else cfg.d_norm
    d_sizes = {"ndf": cfg.ndf, "n_layers": cfg.d_layers, "norm": norm}
    return init_weights_normal(
        LatentConditionedDiscriminator(latent_channels, cfg.d_cond_channels, **d_sizes)
        if cfg.d_cond == "latent"
        else PatchDiscriminator(**d_sizes)
    )


def judge(
    disc: torch.nn.Module, real: Tensor, fake: Tensor, cond: tuple[Tensor, ...], joint: bool
) -> tuple[Tensor, Tensor]:
    """D's logits for real and fake patches; ``joint`` runs them as one batch, so a BatchNorm D
    normalises both with the same statistics and has to judge each patch, not each batch."""
    if not joint:
        return disc(real, *cond), disc(fake, *cond)
    logits = disc(torch.cat([real, fake]), *(torch.cat([c, c]) for c in cond))
    return logits[: real.shape[0]], logits[real.shape[0] :]


def adaptive_weight(rec: Tensor, adv: Tensor, layer: Tensor, factor: float, clip: float) -> Tensor:
    """Esser et al. 2021 ("Taming Transformers"): ``factor · clip(‖∇rec‖ / ‖∇adv‖, 0, clip)``,
    the gradients taken at ``layer`` (the last trainable weight), so the adversarial gradient
    arrives there with ``factor`` times the reconstruction gradient's size. Not differentiated."""
    (g_rec,) = torch.autograd.grad(rec, layer, retain_graph=True, allow_unused=True)
    (g_adv,) = torch.autograd.grad(adv, layer, retain_graph=True, allow_unused=True)
    if g_rec is None or g_adv is None:
        return torch.zeros((), device=rec.device)
    ratio = g_rec.norm() / (g_adv.norm() + 1e-12)
    return (factor * ratio.clamp(0, clip)).detach()


class NoAdversary:
    """λ_a = 0: the decoder learns from the reconstruction terms alone; D is never run."""

    d_steps = 0  # D updates per step
    warmup_steps = 0  # D updates alone before the decoder moves

    def __init__(
        self, cfg: FinetuneConfig, latent_channels: int, rt: rtm.Runtime, last_layer: Tensor
    ) -> None:
        self.cfg, self.rt, self.last_layer = cfg, rt, last_layer
        self.disc = build_discriminator(cfg, latent_channels).to(rt.device)
        self.model: torch.nn.Module = self.disc  # DDP-wrapped by distribute()
        self.gan = GANLoss(cfg.gan_mode)
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))

    @staticmethod
    def from_config(
        cfg: FinetuneConfig, latent_channels: int, rt: rtm.Runtime, last_layer: Tensor
    ) -> NoAdversary:
        """:class:`PatchGAN` when ``cfg.lambda_a > 0``, else :class:`NoAdversary`;
        ``last_layer``: the last trainable weight, where an adaptive λ compares gradients."""
        return (PatchGAN if cfg.lambda_a > 0 else NoAdversary)(cfg, latent_channels, rt, last_layer)

    def distribute(self) -> None:
        if self.rt.distributed:
            self.model = DistributedDataParallel(self.disc)

    def state_dict(self) -> dict[str, Any]:
        return {"discriminator": self.disc.state_dict(), "optimizer_d": self.opt.state_dict()}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.disc.load_state_dict(saved["discriminator"])
        self.opt.load_state_dict(saved["optimizer_d"])

    def discriminator_step(self, batch: Any, updates: int) -> dict[str, Tensor]:
        """No D update; its loss 0 and its logits NaN (nothing judged)."""
        nan = torch.full((1,), float("nan"))
        return {"loss_d": torch.zeros(()), "real": nan, "fake": nan}

    def generator_loss(self, batch: Any) -> Tensor:
        """0 (its gradient would be exactly 0: D is not even run)."""
        return torch.zeros((), device=batch.x.device)

    def weight(self, rec: Tensor, adv: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """(λ of the adversarial loss, the λ that would balance the two gradients; NaN here)."""
        return torch.full((), self.cfg.lambda_a, device=rec.device), torch.full(
            (), float("nan"), device=rec.device
        )

    def collapsed(self, loss_d: float) -> bool:
        """Whether D's loss says it has collapsed (no D: never)."""
        return False

    def build_health(self, codec: Any) -> None:
        """Fixed held-out patch pairs to score D on (no D: none)."""

    def health(self, codec: Any) -> dict[str, float] | None:
        """D's held-out scores now (:func:`icmbridge.gan.health.measure_health`), or None."""
        return None


class PatchGAN(NoAdversary):
    """λ_a > 0: a PatchGAN D against the decoder (LSGAN, vanilla or hinge; optional R1)."""

    def __init__(
        self, cfg: FinetuneConfig, latent_channels: int, rt: rtm.Runtime, last_layer: Tensor
    ) -> None:
        super().__init__(cfg, latent_channels, rt, last_layer)
        self.d_steps = cfg.d_steps
        self.warmup_steps = cfg.d_warmup
        self.joint = cfg.d_norm == "batch-joint"
        self.health_set: HealthSet | None = None

    def discriminator_step(self, batch: Any, updates: int) -> dict[str, Tensor]:
        """``updates`` D updates on the batch (x̂ detached); returns the last update's
        loss/logits. A non-finite loss skips the rest (every rank alike); the generator step's
        finiteness check sees it."""
        cfg, disc, gan = self.cfg, self.model, self.gan
        for _ in range(updates):
            real_in = batch.real.detach().requires_grad_(cfg.r1 > 0)
            real, fake = judge(disc, real_in, batch.fake.detach(), batch.cond, self.joint)
            loss_d = gan.discriminator_loss(real, fake)
            if cfg.r1 > 0:
                loss_d = loss_d + cfg.r1 * r1_penalty(real, real_in)
            if not rtm.all_finite(self.rt, loss_d):
                break
            self.opt.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt.step()
        return {"loss_d": loss_d.detach(), "real": real.detach(), "fake": fake.detach()}

    def generator_loss(self, batch: Any) -> Tensor:
        """The decoder's adversarial loss on its patches, D's parameters frozen meanwhile."""
        for p in self.disc.parameters():
            p.requires_grad_(False)
        if self.joint:  # the fakes judged in a batch with the reals, as in D's step
            _, fake_logits = judge(self.model, batch.real.detach(), batch.fake, batch.cond, True)
        else:
            fake_logits = self.model(batch.fake, *batch.cond)
        adv = self.gan.generator_loss(fake_logits)
        for p in self.disc.parameters():
            p.requires_grad_(True)
        return adv

    def weight(self, rec: Tensor, adv: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """λ_a (``fixed``) or λ_a · clip(balance) (``adaptive``); the balance is the λ that
        would give the adversarial gradient the reconstruction's size at the last trainable
        layer (every step when adaptive, at logging steps otherwise, for the log)."""
        cfg = self.cfg
        balance = torch.full((), float("nan"), device=rec.device)
        if cfg.lambda_a_mode == "adaptive" or step % cfg.log_every == 0:
            balance = adaptive_weight(rec, adv, self.last_layer, 1.0, math.inf)
        if cfg.lambda_a_mode == "adaptive":
            return cfg.lambda_a * balance.clamp(0, cfg.adaptive_max), balance
        return torch.full((), cfg.lambda_a, device=rec.device), balance

    def collapsed(self, loss_d: float) -> bool:
        return loss_d < 1e-3

    def build_health(self, codec: Any) -> None:
        cfg = self.cfg
        if cfg.health_crops > 0:
            self.health_set = build_health_set(
                codec,
                health_images(cfg.health_set),
                cfg.crop,
                cfg.patch_size,
                cfg.patches,
                cfg.health_crops,
                cfg.seed,
            )

    def health(self, codec: Any) -> dict[str, float] | None:
        if self.health_set is None:
            return None
        cond_of = (
            (lambda y, b, p: latent_patches(y, codec.upsampling, b, p))
            if self.cfg.d_cond == "latent"
            else None
        )
        return measure_health(self.disc, codec.g_s, self.health_set, cond_of)


def health_images(spec: str) -> list[Tensor]:
    from icmbridge.data import get_set
    from icmbridge.imageio import array_to_tensor

    return [array_to_tensor(s.image)[0] for s in get_set(spec)]
