"""``icmbridge train``: base ICM training from the command line (single process or torchrun)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, fields

from icmbridge.errors import InputError


def add_runtime_options(p: argparse.ArgumentParser, task_optional: bool = False) -> None:
    """Options every training command shares (``task_optional``: ``--task none`` accepted)."""
    p.add_argument("--steps", type=int, help="total optimisation steps of the run")
    p.add_argument("--batch-size", type=int, help="global batch (split over torchrun processes)")
    p.add_argument("--crop", type=int, help="training crop size in pixels (multiple of 16)")
    p.add_argument("--seed", type=int, help="seed of weights, crops and quantisation noise")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, help="steps between progress/TensorBoard updates")
    p.add_argument("--device", help="auto, cpu or cuda (torchrun: one GPU per process)")
    p.add_argument("--threads", type=int, help="CPU threads per process")
    p.add_argument(
        "--no-tensorboard",
        dest="tensorboard",
        action="store_false",
        default=None,
        help="do not write TensorBoard logs",
    )
    p.add_argument(
        "--data",
        type=lambda s: [t for t in s.split(",") if t],
        help="training sets, comma separated (see `icmbridge data list`)",
    )
    from icmbridge.tasks import add_task_arguments

    add_task_arguments(p, default=None, allow_none=task_optional)
    p.add_argument(
        "--task-loss",
        choices=["distill", "supervised"],
        help="distill: the task's outputs on x̂ towards those on x (any images); supervised: "
        "the task's own loss against the training sets' annotations (e.g. --data coco:ANN.json)",
    )
    p.add_argument(
        "--stop-at",
        type=int,
        help="end the run after this step, checkpoint written; the learning-rate schedule "
        "still follows --steps (staged recipes)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (its saved settings "
        "are used; only --steps, --stop-at, --device and --threads may change)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    from icmbridge.cli import HelpFormatter, document_defaults
    from icmbridge.train.config import TrainConfig

    d = TrainConfig(out="")
    p = sub.add_parser(
        "train",
        help="train a base ICM codec (rate + task loss)",
        description=(
            "Train an ICM codec for a machine task:\n"
            "  loss = w_rate·bpp + λ_task·task(x̂, x) + λ_mse·255²·MSE(x̂, x)\n"
            "Checkpoints go to OUT/checkpoints (atomic; --resume continues exactly). Under\n"
            "`torchrun --nproc_per_node=K -m icmbridge.cli train ...` it trains with DDP.\n"
            f"Defaults: codec {d.codec}, task {d.task}, data {','.join(d.data)}, steps {d.steps}, "
            f"batch {d.batch_size}×{d.crop}², lr {d.lr}, λ_task {d.lambda_task}, "
            f"λ_mse {d.lambda_mse}."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, run.json)")
    p.add_argument("--codec", help="named codec configuration (tiny, cpu, bmshj2018)")
    p.add_argument(
        "--arch",
        help="architecture: icm (ours) or a CompressAI name (bmshj2018-factorized, "
        "bmshj2018-hyperprior, mbt2018-mean, mbt2018, cheng2020-anchor, cheng2020-attn); "
        "--codec gives its sizes (cheng2020: N only, M = N)",
    )
    p.add_argument("--init", help="start from this model (name or path) instead of random weights")
    p.add_argument("--lr", type=float, help="learning rate of the codec (cosine schedule)")
    p.add_argument(
        "--aux-lr", type=float, help="learning rate of the entropy bottleneck's aux loss"
    )
    p.add_argument("--warmup", type=int, help="linear warm-up steps")
    p.add_argument("--lambda-task", type=float, help="weight of the task loss")
    p.add_argument("--lambda-mse", type=float, help="weight of 255²·MSE (0 for task-only)")
    p.add_argument(
        "--target-bpp",
        type=float,
        help="steer the rate weight towards this training-crop bpp (off: weight 1)",
    )
    p.add_argument("--clip", type=float, help="gradient-norm clipping")
    p.add_argument(
        "--rate-gain",
        type=float,
        help="how fast the rate weight follows --target-bpp (log scale, per step)",
    )
    p.add_argument(
        "--lr-schedule",
        choices=["cosine", "constant"],
        help="cosine: warm-up then decay over --steps; constant: warm-up then flat (an "
        "open-ended run that accumulates over sessions, measured at its checkpoints)",
    )
    p.add_argument(
        "--snapshot",
        help="also keep a weights-only copy of the run in this folder (model, settings, step; "
        "no optimizer state), replaced at every checkpoint: small enough to commit, so that "
        "--resume on a machine without OUT's checkpoints goes on from it",
    )
    add_runtime_options(p, task_optional=True)
    document_defaults(p, {k: v for k, v in asdict(d).items() if k != "out"})
    p.set_defaults(func=run_train)
    register_finetune(sub)


# What a resumed run may change: the schedule's end, and where and on how many threads it runs
# (each start's device and threads are recorded in run.json: float sums may round differently).
RESUME_MAY_CHANGE = ("out", "steps", "stop_at", "device", "threads")


def config_from_args(cls, args: argparse.Namespace, saved: dict | None = None):
    """Defaults ← preset ← saved run settings (on --resume) ← options given on the command line."""
    values = {f.name: getattr(cls(out=""), f.name) for f in fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in values and v is not None}
    if "preset" in values and not saved:
        from icmbridge.train.config import apply_preset

        values = apply_preset(values, given.get("preset"), set(given))
    if saved:
        values.update({k: v for k, v in saved.items() if k in values})
        changed = {k for k, v in given.items() if k not in RESUME_MAY_CHANGE and v != saved.get(k)}
        if changed:
            raise InputError(
                f"--resume continues a run with its saved settings; drop {sorted(changed)} "
                f"(only {', '.join('--' + k.replace('_', '-') for k in RESUME_MAY_CHANGE[1:])} "
                "may change)"
            )
    values.update(given)
    return cls(**values)


def register_finetune(sub: argparse._SubParsersAction) -> None:
    from icmbridge.cli import HelpFormatter, document_defaults
    from icmbridge.train.config import PRESETS, FinetuneConfig

    d = FinetuneConfig(out="")
    p = sub.add_parser(
        "finetune",
        help="train a decoder for people on a base's bitstreams (the human decoder)",
        description=(
            "Train a human decoder on --base's bitstreams: encoder and entropy models stay\n"
            "frozen, so the result decodes the base codec's files byte for byte. The decoder may\n"
            "differ from the base's (--decoder refine: the base's g_s + a full-resolution\n"
            "residual CNN, initialised to the base's output). With the encoder frozen, ŷ of\n"
            "the training images is computed once (--cache) and steps run the decoder only.\n"
            "  loss_G = λ_mse·MSE + λ_msssim·(1−MS-SSIM) + λ_freq·spectrum + λ_a·adv\n"
            "           (+ λ_task·task),  loss_D = adv(real, fake)  (no D at λ_a = 0)\n"
            f"Defaults: decoder {d.decoder} ({d.decoder_channels} ch × {d.decoder_blocks} "
            f"blocks), layers {d.layers}, λ_a {d.lambda_a}, λ_msssim {d.lambda_msssim}, "
            f"{d.steps} steps of {d.batch_size}×{d.crop}², lr {d.lr}.\n"
            "--preset paper: the paper's recipe (Le et al., ICIP 2022: first 2 layers of the\n"
            "base's own decoder, PatchGAN on 3×128² patches, λ_a 1e-3); --preset li: its\n"
            "low-impact row. Presets: " + "; ".join(f"{k} = {v}" for k, v in PRESETS.items())
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--base", help="model to finetune (name or path)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, run.json)")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="paper: the paper's recipe (first 2 layers, PatchGAN, 3×128² patches); li: its "
        "low-impact row",
    )
    p.add_argument(
        "--decoder",
        choices=["same", "refine", "latent"],
        help="human-decoder architecture: same (the base's g_s), refine (g_s + a "
        "full-resolution residual CNN on x̂) or latent (a residual CNN on ŷ before g_s); the new "
        "parts are zero-initialised, so training starts from the base's decoder",
    )
    p.add_argument("--decoder-channels", type=int, help="width of the refinement CNN")
    p.add_argument("--decoder-blocks", type=int, help="residual blocks of the refinement CNN")
    p.add_argument(
        "--cache",
        choices=["auto", "on", "off"],
        help="compute ŷ of the whole training images once and train on aligned crops of it "
        "(auto: on unless a supervised task loss needs the crops' annotations)",
    )
    p.add_argument("--lambda-msssim", type=float, help="weight of 1 − MS-SSIM(x̂, x)")
    p.add_argument(
        "--lambda-freq", type=float, help="weight of the log-amplitude spectrum L1 (texture)"
    )
    p.add_argument("--beta1", type=float, help="Adam β1 of the decoder (paper recipe: 0.5)")
    p.add_argument(
        "--layers",
        help="first:K (the K synthesis layers nearest the latent, each a "
        "transposed conv with its IGDN), last:K (nearest the image), all, or name patterns "
        "(g_s.refine: the refinement alone)",
    )
    p.add_argument("--patch-size", type=int, help="side of the discriminator's patches")
    p.add_argument("--patches", type=int, help="patches per image, same places in x and x̂")
    p.add_argument("--lambda-a", type=float, help="weight of the adversarial loss")
    p.add_argument("--lambda-mse", type=float, help="weight of the MSE (on [0, 1] pixels)")
    p.add_argument("--mse-on", choices=["patches", "image"], help="MSE on the patches or image")
    p.add_argument(
        "--lambda-task", type=float, help="weight of an optional task loss (not in the paper)"
    )
    p.add_argument("--gan-mode", choices=["lsgan", "vanilla", "hinge"], help="adversarial loss")
    p.add_argument(
        "--d-norm",
        choices=["batch", "batch-joint", "instance", "spectral", "none"],
        help="discriminator normalisation (batch-joint: BatchNorm over real and decoded "
        "patches in one batch, so D judges patches, not batch statistics)",
    )
    p.add_argument(
        "--lambda-a-mode",
        choices=["fixed", "adaptive"],
        help="adaptive: λ = λ_a·clip(‖∇rec‖/‖∇adv‖) at the last trainable layer (Esser et al. "
        "2021), so λ_a is the size of the adversarial gradient relative to the MSE's",
    )
    p.add_argument("--adaptive-max", type=float, help="clip of the adaptive ratio")
    p.add_argument(
        "--d-warmup", type=int, help="D updates alone on the frozen base before the decoder moves"
    )
    p.add_argument(
        "--health-set",
        help="held-out images (a set spec) whose patch pairs D is scored on in eval mode",
    )
    p.add_argument("--health-crops", type=int, help="crops of the health set (0: no health check)")
    p.add_argument("--health-every", type=int, help="steps between D health checks")
    p.add_argument(
        "--d-cond",
        choices=["none", "latent"],
        help="latent: D also sees the decoded latent ŷ under each patch (HiFiC / MS-ILLM), so "
        "it can judge whether a patch fits its latents, not only whether it looks natural",
    )
    p.add_argument("--d-cond-channels", type=int, help="channels ŷ is projected to for D")
    p.add_argument("--ndf", type=int, help="discriminator base width")
    p.add_argument("--d-layers", type=int, help="discriminator strided layers")
    p.add_argument("--d-steps", type=int, help="discriminator updates per generator update")
    p.add_argument("--r1", type=float, help="R1 penalty weight on real patches (0: off)")
    p.add_argument("--lr", type=float, help="learning rate of the finetuned layers")
    p.add_argument("--lr-d", type=float, help="learning rate of the discriminator")
    p.add_argument("--warmup", type=int, help="linear warm-up steps (then cosine decay)")
    p.add_argument(
        "--collapse-steps", type=int, help="warn when D's loss stays below 1e-3 this many steps"
    )
    add_runtime_options(p)
    document_defaults(p, {k: v for k, v in asdict(d).items() if k != "out"})
    p.set_defaults(func=run_finetune)


def run_finetune(args: argparse.Namespace) -> int:
    from icmbridge.train.finetune import FinetuneConfig, finetune
    from icmbridge.train.runtime import read_run_config

    saved = read_run_config(args.out) if args.resume else None
    cfg = config_from_args(FinetuneConfig, args, saved)
    last = finetune(cfg, resume=args.resume)
    print(f"done: {last}", file=sys.stderr)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from icmbridge.train.base import TrainConfig, train
    from icmbridge.train.runtime import read_run_config

    saved = None
    if args.resume:
        saved = snapshot_run_config(args.out, args.snapshot) or read_run_config(args.out)
    cfg = config_from_args(TrainConfig, args, saved)
    last = train(cfg, resume=args.resume)
    print(f"done: {last}", file=sys.stderr)
    return 0


def snapshot_run_config(out: str, snapshot: str | None) -> dict | None:
    """The settings of a run to resume from its ``--snapshot`` when that is further along than
    OUT's checkpoints (a new machine, or a stretch run elsewhere), else None: OUT's run.json."""
    from pathlib import Path

    from icmbridge.train.runtime import Checkpoints, snapshot_ahead

    if snapshot is None or snapshot_ahead(Checkpoints(Path(out)), Path(snapshot)) is None:
        return None
    import json

    meta = json.loads((Path(snapshot) / "config.json").read_text()).get("meta", {})
    return {**meta.get("train_config", {}), "out": out}
