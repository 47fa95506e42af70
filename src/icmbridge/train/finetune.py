"""The paper's method: PatchGAN finetuning of the first synthesis layers of an ICM codec.

    x ─► frozen g_a ─► ŷ (exactly what the bitstream decodes to) ─► g_s [first K trainable] ─► x̂
    patches(x), patches(x̂) at the same random places ─► PatchGAN D
    loss_G = λ_mse · MSE(patches | image) + λ_a · adv_G(D(x̂ patches)) (+ λ_task · task(x̂, x))
    loss_D = adv_D(D(x patches), D(x̂ patches).detach())

The loop, top to bottom: build the parts; optionally warm D up alone on the frozen base
(``--d-warmup``: the decoder does not move until D can judge patches); then per step one
:func:`discriminator_step` and one :func:`generator_step`. D's health (held-out per-patch AUC,
:mod:`icmbridge.gan.health`) is measured at the start, during warm-up, when the decoder starts to
move and every ``--health-every`` steps; it goes to TensorBoard, the progress bar, ``health.json``
in the run folder and the model's metadata. ``--lambda-a-mode adaptive`` balances the two
gradients at the last trainable layer (Esser et al. 2021): λ = λ_a · clip(‖∇L_rec‖ / ‖∇L_adv‖).

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
from dataclasses import asdict, dataclass
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
from icmbridge.gan.health import (
    HealthSet,
    build_health_set,
    health_warning,
    measure_health,
)
from icmbridge.gan.losses import r1_penalty
from icmbridge.gan.patches import sample_patch_boxes
from icmbridge.train import runtime as rtm
from icmbridge.train.base import build_training_data, check_task_loss, compute_task_loss
from icmbridge.train.config import (  # noqa: F401 (re-exported)
    D_NORMS,
    PAPER_RECIPE,
    PRESETS,
    FinetuneConfig,
    apply_preset,
)
from icmbridge.train.latent_cache import LatentCache


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


def judge(
    disc: torch.nn.Module, real: Tensor, fake: Tensor, cond: tuple[Tensor, ...], joint: bool
) -> tuple[Tensor, Tensor]:
    """D's logits for real and fake patches; ``joint`` runs them as one batch, so a BatchNorm D
    normalises both with the same statistics and has to judge each patch, not each batch."""
    if not joint:
        return disc(real, *cond), disc(fake, *cond)
    logits = disc(torch.cat([real, fake]), *(torch.cat([c, c]) for c in cond))
    return logits[: real.shape[0]], logits[real.shape[0] :]


def discriminator_step(
    disc: torch.nn.Module,
    opt_d: torch.optim.Optimizer,
    gan: GANLoss,
    batch: Batch,
    cfg: FinetuneConfig,
    rt: rtm.Runtime,
    updates: int,
) -> dict[str, Tensor]:
    """``updates`` D updates on the batch (x̂ detached); returns the last update's loss/logits.
    A non-finite loss skips the rest (every rank alike); the caller's finiteness check sees it."""
    joint = cfg.d_norm == "batch-joint"
    for _ in range(updates):
        real_in = batch.real.detach().requires_grad_(cfg.r1 > 0)
        real_logits, fake_logits = judge(disc, real_in, batch.fake.detach(), batch.cond, joint)
        loss_d = gan.discriminator_loss(real_logits, fake_logits)
        if cfg.r1 > 0:
            loss_d = loss_d + cfg.r1 * r1_penalty(real_logits, real_in)
        if not rtm.all_finite(rt, loss_d):
            break
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
    return {"loss_d": loss_d.detach(), "real": real_logits.detach(), "fake": fake_logits.detach()}


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


def generator_step(
    disc: torch.nn.Module,
    disc_model: torch.nn.Module,
    opt_g: torch.optim.Optimizer,
    gan: GANLoss,
    batch: Batch,
    cfg: FinetuneConfig,
    rt: rtm.Runtime,
    task: Any,
    data: Any,
    last_layer: Tensor,
    loss_d: Tensor,
    state: dict[str, Any],
    step: int,
) -> dict[str, Tensor]:
    """One update of the selected decoder layers: λ_mse·MSE + λ·adv (+ λ_task·task)."""
    adv = torch.zeros((), device=batch.x.device)
    if cfg.lambda_a > 0:  # (at λ_a = 0 its gradient would be exactly 0: D is not even run)
        for p in disc.parameters():
            p.requires_grad_(False)
        if (
            cfg.d_norm == "batch-joint"
        ):  # the fakes judged in a batch with the reals, as in D's step
            _, fake_logits = judge(disc_model, batch.real.detach(), batch.fake, batch.cond, True)
        else:
            fake_logits = disc_model(batch.fake, *batch.cond)
        adv = gan.generator_loss(fake_logits)
        for p in disc.parameters():
            p.requires_grad_(True)
    x, x_hat = batch.x, batch.x_hat
    mse = F.mse_loss(batch.fake, batch.real) if cfg.mse_on == "patches" else F.mse_loss(x_hat, x)
    task_loss = (
        compute_task_loss(task, x_hat, x, data, batch.ids, cfg.task_loss)
        if task is not None
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
    # balance: the λ that would give the adversarial gradient the reconstruction's size at the
    # last trainable layer (every step when adaptive, at logging steps otherwise, for the log)
    balance = torch.full((), float("nan"), device=x.device)
    if cfg.lambda_a > 0 and (cfg.lambda_a_mode == "adaptive" or step % cfg.log_every == 0):
        balance = adaptive_weight(rec, adv, last_layer, 1.0, math.inf)
    if cfg.lambda_a_mode == "adaptive" and cfg.lambda_a > 0:
        lam = cfg.lambda_a * balance.clamp(0, cfg.adaptive_max)
    else:
        lam = torch.full((), cfg.lambda_a, device=x.device)
    loss_g = rec + lam * adv
    if not rtm.all_finite(rt, loss_g, loss_d):
        # every rank skips the step together; the run goes on to its checkpoints
        rtm.count_bad_step(state, step, cfg.max_bad_steps, "lower --lr/--lr-d or --lambda-a")
    else:
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        state["bad_steps"] = 0
    return {
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


def build_discriminator(cfg: FinetuneConfig, latent_channels: int) -> torch.nn.Module:
    norm = "batch" if cfg.d_norm == "batch-joint" else cfg.d_norm
    d_sizes = {"ndf": cfg.ndf, "n_layers": cfg.d_layers, "norm": norm}
    return init_weights_normal(
        LatentConditionedDiscriminator(latent_channels, cfg.d_cond_channels, **d_sizes)
        if cfg.d_cond == "latent"
        else PatchDiscriminator(**d_sizes)
    )


def health_images(spec: str) -> list[Tensor]:
    from icmbridge.data import get_set
    from icmbridge.imageio import array_to_tensor

    return [array_to_tensor(s.image)[0] for s in get_set(spec)]


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


def finetune(cfg: FinetuneConfig, resume: bool = False) -> Path:
    """Finetune the first decoder layers of ``cfg.base``; returns the final checkpoint folder."""
    cfg.validate()
    rt = rtm.setup_runtime(cfg.device, cfg.threads)
    run_dir = Path(cfg.out)
    ckpts = rtm.Checkpoints(run_dir)
    try:
        rtm.prepare_run_dir(rt, run_dir, {"command": "finetune", **asdict(cfg)})
        torch.manual_seed(cfg.seed)

        # --- generator: the base codec (given the human decoder's architecture, initialised
        # from the base's decoder), all frozen but the selected decoder layers
        codec, saved = rtm.start_codec(ckpts, resume, rt, lambda: with_decoder(cfg))
        base_fp = fingerprint(codec)
        trainable = codec.freeze_for_finetune(select_layers(codec, cfg.layers))
        last_layer = [p for p in trainable if p.dim() > 1][-1]  # where the adaptive λ looks
        codec.to(rt.device).train()

        # --- discriminator, losses, data
        disc = build_discriminator(cfg, codec.config.M).to(rt.device)
        gan = GANLoss(cfg.gan_mode)
        task = None
        if cfg.lambda_task > 0:
            from icmbridge.tasks import build_task, parse_task_options

            task = build_task(
                cfg.task, weights_path=cfg.task_weights, **parse_task_options(cfg.task_options)
            ).to(rt.device)
        if cfg.uses_cache():
            data: Any = LatentCache.build(
                codec,
                cfg.data,
                run_dir / "latents.pt" if rt.is_main else None,
                min_side=cfg.crop,
                log=lambda m: print(m, file=sys.stderr),
            )
        else:
            data = build_training_data(cfg.data, cfg.crop, cfg.seed)
        if task is not None:
            check_task_loss(cfg.task_loss, None if cfg.uses_cache() else data, cfg.data)
        opt_g = torch.optim.Adam(trainable, lr=cfg.lr, betas=(cfg.beta1, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
        state: dict[str, Any] = {"step": 0, "bad_steps": 0, "skipped": 0, "collapsed": 0}
        if saved is not None:
            disc.load_state_dict(saved["discriminator"])
            opt_g.load_state_dict(saved["optimizer_g"])
            opt_d.load_state_dict(saved["optimizer_d"])
            state = saved["loop"]
        for key, value in (("warmup_done", 0), ("d_updates", 0), ("health", []), ("warned", 0)):
            state.setdefault(key, value)
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

        # --- D's health: fixed held-out pairs, scored in eval mode (main rank only)
        health: HealthSet | None = None
        if rt.is_main and cfg.health_crops > 0 and cfg.lambda_a > 0:
            health = build_health_set(
                codec,
                health_images(cfg.health_set),
                cfg.crop,
                cfg.patch_size,
                cfg.patches,
                cfg.health_crops,
                cfg.seed,
            )

        def check_health(step: int, phase: str, write: Any = print) -> None:
            if health is None:
                return
            cond_of = (
                (lambda y, b, p: latent_patches(y, codec.upsampling, b, p))
                if cfg.d_cond == "latent"
                else None
            )
            h = measure_health(disc, codec.g_s, health, cond_of)
            entry = {"step": step, "d_updates": state["d_updates"], "phase": phase, **h}
            state["health"] = [*state["health"], entry]
            log.scalars(
                step if phase == "train" else state["d_updates"], h, prefix=f"health_{phase}"
            )
            write(
                f"D health ({phase}, step {step}, {state['d_updates']} D updates): held-out "
                f"AUC {h['auc']:.3f}, paired {h['paired']:.2f}, real {h['real']:+.3f} / "
                f"decoded {h['fake']:+.3f}"
            )
            warning = health_warning(h["auc"], state["d_updates"])
            if warning and not state["warned"] and state["d_updates"] >= 100:
                write(warning)  # once a run: D has had time to learn and still cannot judge
                state["warned"] = 1
            write_health(run_dir, state["health"])

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
                    "d_health": health_summary(state["health"]),
                },
                lambda: {
                    "discriminator": disc.state_dict(),
                    "optimizer_g": opt_g.state_dict(),
                    "optimizer_d": opt_d.state_dict(),
                    "loop": dict(state),
                    "rng": rngs,
                },
            )

        # --- D warm-up: D alone against the frozen base, the decoder does not move. Its batches
        # are the run's first ones (with their own patch places), so the decoder's data order is
        # that of a run without warm-up (e.g. the λ_a = 0 control).
        say = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
        if cfg.d_warmup > 0 and state["warmup_done"] == 0 and not state["health"]:
            check_health(0, "init", say)
        if state["warmup_done"] < cfg.d_warmup and state["step"] == 0:
            for w in range(state["warmup_done"], cfg.d_warmup):
                rtm.set_lr(opt_d, cfg.lr_d * min(1.0, (w + 1) / max(1, cfg.warmup)))
                batch = draw_batch(
                    codec, synthesis, data, w, cfg.seed + 1_000_003 + w, cfg, rt, decode_grad=False
                )
                discriminator_step(disc_model, opt_d, gan, batch, cfg, rt, updates=1)
                state["warmup_done"] = w + 1
                state["d_updates"] += 1
                if (w + 1) % cfg.health_every == 0 and w + 1 < cfg.d_warmup:
                    check_health(0, "warmup", say)
            save(0)

        # the global generators as they were when the checkpoint was written (task networks
        # draw from them, e.g. torchvision's proposal samplers): resume is exact for every task
        rtm.restore_rng_states(rt, saved.get("rng") if saved is not None else None)
        bar = rtm.progress(rt, cfg.steps, state["step"], "finetune")
        if state["step"] == 0:
            check_health(0, "train", bar.write)  # D's health when the decoder starts to move
        t0 = time.perf_counter()
        adversarial = cfg.lambda_a > 0
        auc_now = state["health"][-1]["auc"] if state["health"] else float("nan")
        for step in bar:
            # Both learning rates decay (cosine) to 5 % by the last step: the adversarial game
            # settles instead of drifting into new patterns late in the run.
            rtm.set_lr(opt_g, rtm.cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup))
            rtm.set_lr(opt_d, rtm.cosine_lr(step, cfg.steps, cfg.lr_d, cfg.warmup))
            batch = draw_batch(codec, synthesis, data, step, cfg.seed + step, cfg, rt)
            if adversarial:
                d_out = discriminator_step(disc_model, opt_d, gan, batch, cfg, rt, cfg.d_steps)
                state["d_updates"] += cfg.d_steps
            else:  # λ_a = 0 (the control): D cannot reach the decoder, so it is not trained
                nan = torch.full((1,), float("nan"))
                d_out = {"loss_d": torch.zeros(()), "real": nan, "fake": nan}
            g_out = generator_step(
                disc, disc_model, opt_g, gan, batch, cfg, rt, task, data, last_layer,
                d_out["loss_d"], state, step,
            )  # fmt: skip
            state["step"] = step + 1

            terms = rtm.mean_over_ranks(
                rt,
                {
                    **{k: v.item() for k, v in g_out.items()},
                    "loss_d": d_out["loss_d"].item(),
                    "d_real": d_out["real"].mean().item(),
                    "d_fake": d_out["fake"].mean().item(),
                },
            )
            state["collapsed"] = (
                state["collapsed"] + 1 if adversarial and terms["loss_d"] < 1e-3 else 0
            )
            if state["collapsed"] == cfg.collapse_steps and rt.is_main:
                bar.write(
                    f"warning: discriminator loss < 1e-3 for {cfg.collapse_steps} steps "
                    f"(step {step + 1}): D has collapsed; lower --lr-d or raise --lambda-a"
                )
            if state["step"] % cfg.health_every == 0 or state["step"] == cfg.steps:
                check_health(state["step"], "train", bar.write)
                auc_now = state["health"][-1]["auc"] if state["health"] else auc_now
            if rt.is_main and (step % cfg.log_every == 0 or step + 1 == cfg.steps):
                bar.set_postfix(
                    d_real=f"{terms['d_real']:.2f}",
                    d_fake=f"{terms['d_fake']:.2f}",
                    d_auc=f"{auc_now:.2f}",
                    adv_share=f"{terms['adv_grad_share']:.3f}",
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


def write_health(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """``RUN/health.json``: every health check and the summary the model card quotes."""
    import json

    from icmbridge.utils.atomic import atomic_write_bytes

    doc = {"summary": health_summary(history), "checks": history}
    atomic_write_bytes(Path(run_dir) / "health.json", (json.dumps(doc, indent=1) + "\n").encode())
