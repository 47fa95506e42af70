"""The settings of the training commands and their presets, without torch.

``TrainConfig`` (``icmbridge train``: rate + task loss) and ``FinetuneConfig`` (``icmbridge
finetune``: the human decoder), each with its checks, and the finetuning presets (the paper's
recipe and rows), defined once: the command line shows them as defaults and ``ablate`` builds its
Table 1 from them. Nothing here imports torch, so the command-line parsers build without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from icmbridge.errors import InputError

#: Learning-rate schedules of ``train`` (see :func:`icmbridge.train.runtime.schedule_lr`).
LR_SCHEDULES = ("cosine", "constant")

TASK_LOSSES = ("distill", "supervised")


def check_task_loss(mode: str, data: Any = None, names: list[str] | None = None) -> None:
    """Refuse an unknown ``--task-loss``, and ``supervised`` on sets without annotations."""
    if mode not in TASK_LOSSES:
        raise InputError(f"--task-loss must be distill or supervised, not {mode!r}")
    annotated = data is None or any(getattr(s, "boxes", None) is not None for s in data.images)
    if mode == "supervised" and not annotated:
        raise InputError(f"--task-loss supervised needs annotated training sets; {names} have none")


@dataclass
class RunConfig:
    """What every training command is given (``add_runtime_options``): the run folder, the task
    and data, the schedule's length and the runtime. Subclasses set their own defaults of
    ``steps`` and ``checkpoint_every``."""

    out: str
    task: str = "face"
    task_weights: str | None = None
    task_options: list[str] = field(default_factory=list)  # KEY=VALUE for the factory
    task_loss: str = "distill"  # or "supervised": the task's loss against the annotations
    data: list[str] = field(default_factory=lambda: ["faces", "photos"])
    steps: int = 1000
    batch_size: int = 8
    crop: int = 128
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    max_bad_steps: int = 20
    device: str = "auto"
    threads: int | None = None
    tensorboard: bool = True
    stop_at: int | None = None  # end after this step (the schedule still follows `steps`)

    def validate(self) -> None:
        """Refuse settings that cannot train, with a message naming the option."""
        raise NotImplementedError


@dataclass
class TrainConfig(RunConfig):
    """``icmbridge train``: the shared options (:class:`RunConfig`), the codec and its loss."""

    steps: int = 4000  # (the shared options' defaults for this command)
    checkpoint_every: int = 250
    codec: str = "cpu"  # named configuration, see icmbridge.codec.model.CONFIGS
    arch: str = "icm"  # architecture, see icmbridge.codec.archs.ARCHITECTURES
    init: str | None = None  # start from this model instead of random weights
    lr: float = 1e-4
    aux_lr: float = 1e-3
    warmup: int = 100
    lambda_task: float = 1.0
    lambda_mse: float = 0.01
    target_bpp: float | None = None
    rate_gain: float = 0.02  # how fast w_rate follows target_bpp (per step, log scale)
    clip: float = 1.0
    lr_schedule: str = "cosine"  # or "constant" after the warm-up (open-ended runs)
    snapshot: str | None = None  # weights-only copy of the run, replaced at every checkpoint

    def validate(self) -> None:
        for name in ("lambda_task", "lambda_mse", "lr", "aux_lr", "clip"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise InputError(
                    f"--{name.replace('_', '-')} must be a finite number ≥ 0, got {value}"
                )
        if self.lambda_task == 0 and self.lambda_mse == 0:
            raise InputError("--lambda-task and --lambda-mse are both 0: nothing to learn but rate")
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise InputError("--steps, --batch-size and --checkpoint-every must be ≥ 1")
        if self.crop < 64 or self.crop % 16:
            raise InputError(f"--crop must be a multiple of 16 and ≥ 64, got {self.crop}")
        check_task_loss(self.task_loss)
        if self.task == "none" and self.lambda_task > 0:
            raise InputError("--task none trains without a task network: set --lambda-task 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(
                f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, not {self.lr_schedule!r}"
            )
        if self.target_bpp is not None and not (0 < self.target_bpp < 24):
            raise InputError(f"--target-bpp must lie in (0, 24), got {self.target_bpp}")


#: Discriminator normalisations: the PatchDiscriminator's, plus "batch-joint" (BatchNorm with real
#: and decoded patches in one batch, so batch statistics cannot tell them apart).
D_NORMS = ("batch", "batch-joint", "instance", "spectral", "none")

#: The paper's recipe (the defaults before issue 27): the base's own g_s, its first two synthesis
#: layers finetuned on re-encoded crops, MSE on the patches + a PatchGAN at λ_a = 1e-3, Adam
#: β1 = 0.5. ``ablate`` runs its rows on top of these; the presets below start from them.
PAPER_RECIPE: dict[str, Any] = {
    "decoder": "same",
    "layers": "first:2",
    "lambda_a": 1e-3,
    "lambda_mse": 1.0,
    "lambda_msssim": 0.0,
    "lambda_freq": 0.0,
    "mse_on": "patches",
    "cache": "off",
    "lr": 1e-4,
    "beta1": 0.5,
    "warmup": 20,
    "steps": 400,
    "crop": 128,
}

#: The paper's headline patches: 3 of 128×128 (they need crops larger than the patches).
PAPER_PATCHES: dict[str, Any] = {"patches": 3, "patch_size": 128, "crop": 256, "batch_size": 4}

#: The paper's "low impact" change: attenuated adversarial dynamics (λ_a and learning rates ÷ 4).
LOW_IMPACT: dict[str, Any] = {"lambda_a": 2.5e-4, "lr": 2.5e-5, "lr_d": 5e-5}

# Presets set several options at once; options given explicitly still win.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's headline row: its recipe on 3 patches of 128×128.
    "paper": {**PAPER_RECIPE, **PAPER_PATCHES},
    # The paper's "low impact" row.
    "li": {**PAPER_RECIPE, **LOW_IMPACT},
}


def apply_preset(values: dict[str, Any], preset: str | None, given: set[str]) -> dict[str, Any]:
    """``values`` with ``preset``'s settings, except those in ``given`` (the command line's)."""
    if preset is None:
        return values
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    return {**values, **{k: v for k, v in PRESETS[preset].items() if k not in given}}


@dataclass
class FinetuneConfig(RunConfig):
    """Defaults: the recipe of the decoder measured best for people (issue 27, ``weights/base.md``:
    all of the base's g_s, MSE on whole crops, cached ŷ, no D); ``--decoder latent`` measured
    level with it (+0.003 dB, +0.34 SSIMULACRA 2) at 1.4 M more parameters. The paper's recipe
    is ``--preset paper`` (:data:`PAPER_RECIPE`)."""

    steps: int = 900  # (the shared options' defaults for this command)
    checkpoint_every: int = 100
    base: str = "base"
    decoder: str = "same"  # human-decoder architecture (icmbridge.codec.decoders)
    decoder_channels: int = 32
    decoder_blocks: int = 2
    cache: str = "auto"  # ŷ of whole training images computed once: on, off, auto (frozen enc.)
    layers: str = "all"
    patch_size: int = 64
    patches: int = 3
    lambda_a: float = 0.0
    lambda_mse: float = 1.0
    # weight of 1 − MS-SSIM(x̂, x) (whole crop); 0.2: +0.022 JOD, +0.5 SSIMULACRA 2, −0.08 dB
    # against MSE alone on held-out photos (weights/base.md, "The decoder for people")
    lambda_msssim: float = 0.2
    lambda_freq: float = 0.0  # weight of the log-amplitude spectrum L1 (texture kept, not blurred)
    mse_on: str = "image"  # or "patches"
    lambda_task: float = 0.0
    lambda_a_mode: str = "fixed"  # or "adaptive": λ_a · clip(‖∇rec‖ / ‖∇adv‖) (Esser et al.)
    adaptive_max: float = 1e4  # clip of the adaptive ratio
    gan_mode: str = "lsgan"
    d_norm: str = "batch"  # batch (real, fake in separate batches), batch-joint, instance, ...
    d_cond: str = "none"  # or "latent": D also sees ŷ under each patch (HiFiC / MS-ILLM)
    d_cond_channels: int = 12
    ndf: int = 64
    d_layers: int = 3
    d_steps: int = 1  # discriminator updates per generator update
    d_warmup: int = 0  # D updates alone on the frozen base before the decoder moves
    health_set: str = "photos:test"  # held-out images of D's health check
    health_crops: int = 32  # crops of --crop² from them (× --patches fixed places each)
    health_every: int = 50  # steps between health checks (warm-up and training)
    r1: float = 0.0  # weight of the R1 penalty on real patches (0: off)
    lr: float = 1e-4
    lr_d: float = 2e-4
    beta1: float = 0.9  # Adam β1 of the decoder (the paper's recipe: 0.5, as for a GAN)
    warmup: int = 20
    collapse_steps: int = 50
    preset: str | None = None

    def validate(self) -> None:
        for name in (
            "lambda_a", "lambda_mse", "lambda_msssim", "lambda_freq", "lambda_task", "lr",
            "lr_d", "r1", "adaptive_max",
        ):  # fmt: skip
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise InputError(
                    f"--{name.replace('_', '-')} must be a finite number ≥ 0, got {value}"
                )
        weights = (self.lambda_mse, self.lambda_msssim, self.lambda_freq, self.lambda_a)
        if not any(weights) and self.lambda_task == 0:
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
        if self.lambda_a_mode not in ("fixed", "adaptive"):
            raise InputError(
                f"--lambda-a-mode must be fixed or adaptive, got {self.lambda_a_mode!r}"
            )
        if self.d_norm not in D_NORMS:
            raise InputError(f"--d-norm must be one of {', '.join(D_NORMS)}, got {self.d_norm!r}")
        if self.d_warmup < 0 or self.health_crops < 0 or self.health_every < 1:
            raise InputError("--d-warmup and --health-crops must be ≥ 0 and --health-every ≥ 1")
        self.decoder_spec().validate()
        if self.cache not in ("auto", "on", "off"):
            raise InputError(f"--cache must be auto, on or off, got {self.cache!r}")
        if self.uses_cache() and self.crop % 16:
            raise InputError(f"--crop must be a multiple of 16 with the latent cache: {self.crop}")
        if self.cache == "on" and self.lambda_task > 0 and self.task_loss == "supervised":
            raise InputError("--cache on cannot carry annotations: use --cache off")
        if not 0 <= self.beta1 < 1:
            raise InputError(f"--beta1 must be in [0, 1), got {self.beta1}")
        if self.gan_mode not in ("lsgan", "vanilla", "hinge"):
            raise InputError(f"--gan-mode must be lsgan, vanilla or hinge, got {self.gan_mode!r}")

    def decoder_spec(self) -> Any:
        from icmbridge.codec.decoders import DecoderSpec

        if self.decoder == "same":
            return DecoderSpec()
        return DecoderSpec(self.decoder, self.decoder_channels, self.decoder_blocks)

    def uses_cache(self) -> bool:
        """The latent cache: asked for, or ``auto`` with nothing that needs the crops' own
        annotations (a supervised task loss)."""
        if self.cache == "auto":
            return not (self.lambda_task > 0 and self.task_loss == "supervised")
        return self.cache == "on"
