"""The paper's method: PatchGAN finetuning of the first synthesis layers of an ICM codec.

    x ─► frozen g_a ─► ŷ (exactly what the bitstream decodes to) ─► g_s [first K trainable] ─► x̂
    patches(x), patches(x̂) at the same random places ─► PatchGAN D
    loss_G = λ_mse · MSE(patches | image) + λ_a · adv_G(D(x̂ patches)) (+ λ_task · task(x̂, x))
    loss_D = adv_D(D(x patches), D(x̂ patches).detach())

:class:`Finetuning` fills in the shared loop (:mod:`icmbridge.train.loop`): build the parts;
optionally warm D up alone on the frozen base (``--d-warmup``: the decoder does not move until D
can judge patches); then per step one D step and one G step. The adversarial part is an object
decided once from the settings (:mod:`icmbridge.train.adversarial`: a PatchGAN, or none at
λ_a = 0). D's health (held-out per-patch AUC, :mod:`icmbridge.gan.health`) is measured at the
start, during warm-up, when the decoder starts to move and every ``--health-every`` steps; it
goes to TensorBoard, the progress bar, ``health.json`` in the run folder and the model's
metadata. ``--lambda-a-mode adaptive`` balances the two
gradients at the last trainable layer (Esser et al. 2021): λ = λ_a · clip(‖∇L_rec‖ / ‖∇L_adv‖).

Only the selected decoder parameters change. The encoder, hyper-prior and entropy models are
frozen (and kept in eval mode), so the finetuned "human" decoder reads the base codec's bitstreams
byte for byte, at the same rate and the same inference cost. The MSE here is on [0, 1] pixels,
without CompressAI's 255² factor, so λ_a compares directly with the paper's L_mse + λ_a·L_GAN.
"""

from __future__ import annotations

import fnmatch
import sys
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
from icmbridge.gan import extract_patches, latent_patches
from icmbridge.gan.health import health_warning
from icmbridge.gan.patches import sample_patch_boxes
from icmbridge.train import runtime as rtm
from icmbridge.train.adversarial import NoAdversary, adaptive_weight, judge
from icmbridge.train.base import build_training_data, compute_task_loss
from icmbridge.train.config import (
    D_NORMS,
    PAPER_RECIPE,
    PRESETS,
    FinetuneConfig,
    apply_preset,
    check_task_loss,
)
from icmbridge.train.latent_cache import LatentCache
from icmbridge.train.loop import Loop, LoopState, formatted

# re-exported: they were defined here before icmbridge.train.config / .adversarial
__all__ = [
    "D_NORMS",
    "PAPER_RECIPE",
    "PRESETS",
    "FinetuneConfig",
    "Finetuning",
    "adaptive_weight",
    "apply_preset",
    "finetune",
    "judge",
]


def select_layers(codec: CodecContract, spec: str) -> list[str]:
    """Parameter-name prefixes to train from ``first:K``, ``last:K``, ``all`` or name patterns."""
    layers = codec.synthesis_layers()
    end, _, count = spec.partition(":")
    if end in ("first", "last") and ":" in spec:
        try:
            k = int(count)
        except ValueError:
            raise InputError(f"--layers {spec!r}: expected {end}:K with an integer K") from None
        if not 1 <= k <= len(layers):
            raise InputError(
                f"--layers {end}:{k}: the decoder has {len(layers)} synthesis layers; "
                f"choose K in 1..{len(layers)}"
            )
        chosen = layers[:k] if end == "first" else layers[-k:]
        return [name for layer in chosen for name in layer]
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


# ---------------------------------------------------------------------------- one step's parts


@dataclass
class Batch:
    """One batch as both players see it: images, decoded images, paired patches, D's extra input."""

    x: Tensor
    ids: Tensor
    x_hat: Tensor
    real: Tensor
    fake: Tensor
    cond: tuple[Tensor, ...]


def draw_batch(
    codec: CodecContract,
    synthesis: torch.nn.Module,
    data: Any,
    index: int,
    box_seed: int,
    cfg: FinetuneConfig,
    rt: rtm.Runtime,
    decode_grad: bool = True,
) -> Batch:
    """Batch ``index`` of the data order, decoded by the current decoder, cut into patch pairs.

    ``data`` is a crop dataset (each crop encoded here) or a :class:`LatentCache` (ŷ of the whole
    images, computed once: the decoder runs on each crop's ŷ with its margin, the core kept)."""
    if isinstance(data, LatentCache):
        cb = data.batch(index, cfg.batch_size, cfg.crop, cfg.seed, cache_margin(codec))
        local = cfg.batch_size // rt.world_size
        part = slice(rt.rank * local, (rt.rank + 1) * local)
        x, ids, y_hat = cb.x[part].to(rt.device), cb.ids[part], cb.y_core[part].to(rt.device)
        with torch.set_grad_enabled(decode_grad):
            x_hat = decode_cores(synthesis, cb.y_ext[part].to(rt.device), cb.offsets[part], cfg)
    else:
        x, ids = rtm.step_batch(data, index, cfg.batch_size, rt)
        x = x.to(rt.device)
        y_hat = codec.quantized_latent(x)
        with torch.set_grad_enabled(decode_grad):
            x_hat = synthesis(y_hat)[..., : x.shape[2], : x.shape[3]]
    h, w = x.shape[2], x.shape[3]
    boxes = per_sample_boxes(ids, box_seed, h, w, cfg.patch_size, cfg.patches).to(rt.device)
    # D's extra input, the same for real and fake patches: ŷ under each patch.
    cond = (
        (latent_patches(y_hat, codec.upsampling, boxes, cfg.patch_size),)
        if cfg.d_cond == "latent"
        else ()
    )
    return Batch(
        x=x,
        ids=ids,
        x_hat=x_hat,
        real=extract_patches(x, boxes, cfg.patch_size),
        fake=extract_patches(x_hat, boxes, cfg.patch_size),
        cond=cond,
    )


def cache_margin(codec: CodecContract) -> int:
    """Latents of context a cached crop needs: g_s's 2, plus a latent refinement's reach."""
    latent = getattr(codec, codec.synthesis_name)._modules.get("latent")
    return 2 + (latent.radius if latent is not None else 0)


def _windows(
    offsets: list[tuple[int, int]], pad: int, window: int, size: tuple[int, int]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Windows of ``window`` around each core (``pad`` each side where the extent allows):
    their starts, and each core's offset inside its window."""
    starts = [
        (min(max(0, r - pad), size[0] - window), min(max(0, c - pad), size[1] - window))
        for r, c in offsets
    ]
    return starts, [(r - a, c - b) for (r, c), (a, b) in zip(offsets, starts, strict=True)]


def decode_cores(
    synthesis: torch.nn.Module, y_ext: Tensor, offsets: list[tuple[int, int]], cfg: FinetuneConfig
) -> Tensor:
    """x̂ of each crop's core from ŷ with its margin (pixel ``offsets`` of the cores in the
    decoded extent). Each stage runs on no more than it needs: a latent refinement
    (``g_s.latent``) on the whole extent, the base's g_s on the core ± 2 latents, a pixel
    refinement (``g_s.refine``) on the core ± 16 px — the same pixels as decoding the whole
    extent, at a fraction of the cost. NHWC: oneDNN's convolutions are faster so."""
    y = y_ext.contiguous(memory_format=torch.channels_last)
    parts = getattr(synthesis, "_modules", {})
    latent, refine = parts.get("latent"), parts.get("refine")
    if latent is None and refine is None:  # (also a DDP-wrapped decoder: it runs whole)
        return LatentCache.crop_cores(synthesis(y), offsets, cfg.crop)
    s = 16
    if latent is not None:
        y = latent(y)
        cells = [(r // s, c // s) for r, c in offsets]
        window = min(y.shape[-1], y.shape[-2], cfg.crop // s + 4)
        starts, inner = _windows(cells, 2, window, (y.shape[-2], y.shape[-1]))
        y = LatentCache.crop_cores(y, starts, window)
        offsets = [(r * s, c * s) for r, c in inner]
    x = y
    for name, module in synthesis.named_children():
        if name not in ("latent", "refine"):
            x = module(x)
    if refine is None:
        return LatentCache.crop_cores(x, offsets, cfg.crop)
    window = min(x.shape[-1], x.shape[-2], cfg.crop + 2 * s)
    starts, inner = _windows(offsets, s, window, (x.shape[-2], x.shape[-1]))
    x = refine(LatentCache.crop_cores(x, starts, window))
    return LatentCache.crop_cores(x, inner, cfg.crop)


def msssim_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """1 − MS-SSIM on [0, 1] images (pytorch_msssim's SSIM per scale, Wang et al. weights).
    Crops under 161 px use the scales that fit (weights renormalised): 4 of 5 at 128²."""
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    n = 5
    while n > 1 and min(x.shape[-2:]) <= 10 * 2 ** (n - 1):
        n -= 1
    w = x.new_tensor(weights[:n])
    w = w / w.sum()
    win = _fspecial_gauss_1d(11, 1.5).repeat(x.shape[1], 1, 1, 1).to(x)
    a, b = x_hat.clamp(0, 1), x
    levels = []
    for i in range(n):
        ssim_pc, cs = _ssim(a, b, win=win, data_range=1.0, size_average=False, K=(0.01, 0.03))
        if i < n - 1:
            levels.append(torch.relu(cs))
            pad = [d % 2 for d in a.shape[2:]]
            a, b = F.avg_pool2d(a, 2, padding=pad), F.avg_pool2d(b, 2, padding=pad)
    levels.append(torch.relu(ssim_pc))
    return 1 - torch.prod(torch.stack(levels) ** w.view(-1, 1, 1), dim=0).mean()


def spectrum_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """L1 between the log amplitude spectra of x̂ and x (per channel, orthonormal FFT): blur
    loses high-frequency amplitude, which MSE forgives and this term does not; phase is left to
    the MSE."""
    a = torch.fft.rfft2(x_hat, norm="ortho")
    b = torch.fft.rfft2(x, norm="ortho")
    amp = lambda z: torch.log1p(torch.sqrt(z.real**2 + z.imag**2 + 1e-8))  # noqa: E731
    return (amp(a) - amp(b)).abs().mean()


def health_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """What the model card needs: AUC at D's start, when the decoder starts to move, at the end."""
    if not history:
        return {}
    moving = [h for h in history if h["phase"] == "train"]
    return {
        "auc_init": history[0]["auc"],
        "auc_decoder_starts": moving[0]["auc"] if moving else None,
        "auc_last": history[-1]["auc"],
        "auc_min_training": min(h["auc"] for h in moving) if moving else None,
        "checks": len(history),
    }


# ---------------------------------------------------------------------------- the loop


def with_decoder(cfg: FinetuneConfig) -> CodecContract:
    """``cfg.base`` loaded and given ``cfg.decoder`` (unless it already has that decoder)."""
    from icmbridge.codec.decoders import decoder_spec, install_decoder

    codec = load_codec(cfg.base)
    want, have = cfg.decoder_spec(), decoder_spec(codec)
    if want.arch == "same" or want == have:
        return codec
    if have.arch != "same":
        raise InputError(
            f"--base {cfg.base} already has decoder {have.to_dict()}; finetune it with "
            f"--decoder same (keep it) or start from its base"
        )
    return install_decoder(codec, want)


@dataclass
class FinetuneState(LoopState):
    """The loop state of ``finetune``: D's updates and warm-up, its collapse count and health."""

    collapsed: int = 0  # steps in a row with D's loss below 1e-3
    warmup_done: int = 0  # D updates of the warm-up done
    d_updates: int = 0
    health: list[dict[str, Any]] = field(default_factory=list)  # every health check
    warned: int = 0  # 1 once the sick-D warning was given


class Finetuning(Loop):
    """``icmbridge finetune``: the selected decoder layers against a PatchGAN (or MSE alone)."""

    command = "finetune"
    bad_step_hint = "lower --lr/--lr-d or --lambda-a"
    cfg: FinetuneConfig
    state: FinetuneState

    def build(self) -> None:
        """The generator: the base codec (given the human decoder's architecture, initialised
        from the base's decoder), all frozen but the selected decoder layers; the adversary
        (:mod:`icmbridge.train.adversarial`), the task, the data, the optimizers."""
        cfg, rt = self.cfg, self.rt
        codec, self.saved = rtm.start_codec(self.ckpts, self.resume, rt, lambda: with_decoder(cfg))
        self.codec = codec
        self.base_fp = fingerprint(codec)
        trainable = codec.freeze_for_finetune(select_layers(codec, cfg.layers))
        last_layer = [p for p in trainable if p.dim() > 1][-1]  # where the adaptive λ looks
        codec.to(rt.device).train()
        self.adversary = NoAdversary.from_config(cfg, codec.config.M, rt, last_layer)
        self.task = None
        if cfg.lambda_task > 0:
            from icmbridge.tasks import build_task, parse_task_options

            self.task = build_task(
                cfg.task, weights_path=cfg.task_weights, **parse_task_options(cfg.task_options)
            ).to(rt.device)
        if cfg.uses_cache():
            self.data: Any = LatentCache.build(
                codec,
                cfg.data,
                self.run_dir / "latents.pt" if rt.is_main else None,
                min_side=cfg.crop,
                log=lambda m: print(m, file=sys.stderr),
            )
        else:
            self.data = build_training_data(cfg.data, cfg.crop, cfg.seed)
        if self.task is not None:
            check_task_loss(cfg.task_loss, None if cfg.uses_cache() else self.data, cfg.data)
        self.opt_g = torch.optim.Adam(trainable, lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.state = FinetuneState()
        if self.saved is not None:
            self.adversary.load_state_dict(self.saved)
            self.opt_g.load_state_dict(self.saved["optimizer_g"])
            self.state = FinetuneState.from_dict(self.saved["loop"])

    def prepare(self) -> None:
        """DDP (only g_s has trainable parameters: it is what DDP wraps), the held-out crop,
        D's health set (fixed held-out pairs, scored in eval mode, main rank only), D's warm-up."""
        rt, codec = self.rt, self.codec
        self.synthesis: torch.nn.Module = codec.g_s
        if rt.distributed:
            self.synthesis = DistributedDataParallel(codec.g_s, broadcast_buffers=False)
        self.adversary.distribute()
        self.val = validation_crop() if rt.is_main else None
        if rt.is_main and self.val is not None:
            start = measure_crop(codec, self.val)
            self.log.scalars(self.state.step, start, prefix="heldout")
            print(
                f"step {self.state.step}: held-out crop {start['psnr']:.2f} dB, "
                f"artifact {start['artifact_db']:+.2f} dB",
                file=sys.stderr,
            )
        if rt.is_main:
            self.adversary.build_health(codec)
        self.warm_up_discriminator()

    def warm_up_discriminator(self) -> None:
        """D alone against the frozen base, the decoder does not move. Its batches are the
        run's first ones (with their own patch places), so the decoder's data order is that of
        a run without warm-up (e.g. the λ_a = 0 control)."""
        cfg, state, adversary = self.cfg, self.state, self.adversary
        say = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
        if adversary.warmup_steps > 0 and state.warmup_done == 0 and not state.health:
            self.check_health(0, "init", say)
        if state.warmup_done >= adversary.warmup_steps or state.step != 0:
            return
        for w in range(state.warmup_done, adversary.warmup_steps):
            rtm.set_lr(adversary.opt, cfg.lr_d * min(1.0, (w + 1) / max(1, cfg.warmup)))
            batch = draw_batch(
                self.codec,
                self.synthesis,
                self.data,
                w,
                cfg.seed + 1_000_003 + w,
                cfg,
                self.rt,
                decode_grad=False,
            )
            adversary.discriminator_step(batch, updates=1)
            state.warmup_done = w + 1
            state.d_updates += 1
            if (w + 1) % cfg.health_every == 0 and w + 1 < adversary.warmup_steps:
                self.check_health(0, "warmup", say)
        self.save(0)

    def start(self) -> None:
        if self.state.step == 0:
            self.check_health(0, "train", self.bar.write)  # when the decoder starts to move
        self.auc_now = self.state.health[-1]["auc"] if self.state.health else float("nan")

    def step(self, step: int) -> tuple[bool, dict[str, float] | None]:
        cfg, adversary = self.cfg, self.adversary
        # Both learning rates decay (cosine) to 5 % by the last step: the adversarial game
        # settles instead of drifting into new patterns late in the run.
        rtm.set_lr(self.opt_g, rtm.cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup))
        rtm.set_lr(adversary.opt, rtm.cosine_lr(step, cfg.steps, cfg.lr_d, cfg.warmup))
        batch = draw_batch(
            self.codec, self.synthesis, self.data, step, cfg.seed + step, cfg, self.rt
        )
        d_out = adversary.discriminator_step(batch, adversary.d_steps)
        self.state.d_updates += adversary.d_steps
        ok, g_out = self.generator_step(batch, d_out["loss_d"], step)
        terms = rtm.mean_over_ranks(
            self.rt,
            {
                **{k: v.item() for k, v in g_out.items()},
                "loss_d": d_out["loss_d"].item(),
                "d_real": d_out["real"].mean().item(),
                "d_fake": d_out["fake"].mean().item(),
            },
        )
        return ok, terms

    def generator_step(
        self, batch: Batch, loss_d: Tensor, step: int
    ) -> tuple[bool, dict[str, Tensor]]:
        """One update of the selected decoder layers: rec + λ·adv, rec = λ_mse·MSE
        (+ λ_msssim·(1 − MS-SSIM) + λ_freq·spectrum + λ_task·task); skipped (False) when a
        loss is not finite on some rank."""
        cfg, x, x_hat = self.cfg, batch.x, batch.x_hat
        adv = self.adversary.generator_loss(batch)
        mse = (
            F.mse_loss(batch.fake, batch.real) if cfg.mse_on == "patches" else F.mse_loss(x_hat, x)
        )
        task_loss = (
            compute_task_loss(self.task, x_hat, x, self.data, batch.ids, cfg.task_loss)
            if self.task is not None
            else torch.zeros((), device=x.device)
        )
        zero = torch.zeros((), device=x.device)
        msssim = msssim_loss(x_hat, x) if cfg.lambda_msssim > 0 else zero
        freq = spectrum_loss(x_hat, x) if cfg.lambda_freq > 0 else zero
        rec = (
            cfg.lambda_mse * mse
            + cfg.lambda_msssim * msssim
            + cfg.lambda_freq * freq
            + cfg.lambda_task * task_loss
        )
        lam, balance = self.adversary.weight(rec, adv, step)
        loss_g = rec + lam * adv
        ok = rtm.all_finite(self.rt, loss_g, loss_d)
        if ok:
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
        return ok, {
            "loss_g": loss_g.detach(),
            "adv": adv.detach(),
            "mse": mse.detach(),
            "msssim": msssim.detach(),
            "freq": freq.detach(),
            "task": task_loss.detach(),
            "lambda_adv": lam.detach(),
            # ‖λ·∇adv‖ / ‖∇rec‖ at the last trainable layer: how much the adversarial term pushes
            "adv_grad_share": (lam / balance).detach(),
        }

    def after_step(self, terms: dict[str, float] | None) -> None:
        """D's collapse count (a warning once it lasts) and its health every --health-every."""
        cfg, state = self.cfg, self.state
        assert terms is not None
        state.collapsed = state.collapsed + 1 if self.adversary.collapsed(terms["loss_d"]) else 0
        if state.collapsed == cfg.collapse_steps and self.rt.is_main:
            self.bar.write(
                f"warning: discriminator loss < 1e-3 for {cfg.collapse_steps} steps "
                f"(step {state.step}): D has collapsed; lower --lr-d or raise --lambda-a"
            )
        if state.step % cfg.health_every == 0 or state.step == cfg.steps:
            self.check_health(state.step, "train", self.bar.write)
            self.auc_now = state.health[-1]["auc"] if state.health else self.auc_now

    def check_health(self, step: int, phase: str, write: Any = print) -> None:
        """Score D on the held-out pairs; log it, keep it in the state and ``health.json``."""
        h = self.adversary.health(self.codec)
        if h is None:
            return
        state = self.state
        entry = {"step": step, "d_updates": state.d_updates, "phase": phase, **h}
        state.health = [*state.health, entry]
        self.log.scalars(step if phase == "train" else state.d_updates, h, prefix=f"health_{phase}")
        write(
            f"D health ({phase}, step {step}, {state.d_updates} D updates): held-out "
            f"AUC {h['auc']:.3f}, paired {h['paired']:.2f}, real {h['real']:+.3f} / "
            f"decoded {h['fake']:+.3f}"
        )
        warning = health_warning(h["auc"], state.d_updates)
        if warning and not state.warned and state.d_updates >= 100:
            write(warning)  # once a run: D has had time to learn and still cannot judge
            state.warned = 1
        write_health(self.run_dir, state.health)

    def postfix(self, terms: dict[str, float]) -> dict[str, str]:
        shown = {**terms, "d_auc": self.auc_now, "adv_share": terms["adv_grad_share"]}
        return formatted(
            shown, d_real=".2f", d_fake=".2f", d_auc=".2f", adv_share=".3f", mse=".5f", adv=".3f"
        )

    def held_out(self, step: int) -> None:
        if self.val is None:
            return
        held_out = measure_crop(self.codec, self.val)
        self.log.scalars(step, held_out, prefix="heldout")
        self.bar.write(
            f"step {self.state.step}: held-out crop {held_out['psnr']:.2f} dB, "
            f"artifact {held_out['artifact_db']:+.2f} dB"
        )

    def meta(self, step: int) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "finetuned_from": str(cfg.base),
            "base_fingerprint": self.base_fp.hex(),
            "trainable": select_layers(self.codec, cfg.layers),
            "trained_steps": step,
            "finetune_config": asdict(cfg),
            "d_health": health_summary(self.state.health),
        }

    def training_state(self) -> dict[str, Any]:
        return {**self.adversary.state_dict(), "optimizer_g": self.opt_g.state_dict()}


def finetune(cfg: FinetuneConfig, resume: bool = False) -> Path:
    """Finetune the first decoder layers of ``cfg.base``; returns the final checkpoint folder."""
    return Finetuning(cfg, resume).run()


def write_health(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """``RUN/health.json``: every health check and the summary the model card quotes."""
    import json

    from icmbridge.utils.atomic import atomic_write_bytes

    doc = {"summary": health_summary(history), "checks": history}
    atomic_write_bytes(Path(run_dir) / "health.json", (json.dumps(doc, indent=1) + "\n").encode())
