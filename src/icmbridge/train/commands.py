"""``icmbridge train``: base ICM training from the command line (single process or torchrun)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from icmbridge.errors import InputError


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    """Options every training command shares."""
    p.add_argument("--steps", type=int, help="total optimisation steps of the run")
    p.add_argument("--batch-size", type=int, help="global batch (split over torchrun processes)")
    p.add_argument("--crop", type=int, help="training crop size in pixels (multiple of 16)")
    p.add_argument("--seed", type=int, help="seed of weights, crops and quantisation noise")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, help="steps between progress/TensorBoard updates")
    p.add_argument("--device", help="auto, cpu or cuda (torchrun: one GPU per process)")
    p.add_argument("--threads", type=int, help="CPU threads per process")
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=None,
                   help="do not write TensorBoard logs")
    p.add_argument("--data", type=lambda s: [t for t in s.split(",") if t],
                   help="training sets, comma separated (see `icmbridge data list`)")
    p.add_argument("--task", help="machine task (see icmbridge.tasks)")
    p.add_argument("--task-weights", help="local weights file of the task network")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (its saved settings "
                        "are used; only --steps may be raised)")


def register(sub: argparse._SubParsersAction) -> None:
    from icmbridge.cli import HelpFormatter
    from icmbridge.train.base import TrainConfig

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
    p.add_argument("--init", help="start from this model (name or path) instead of random weights")
    p.add_argument("--lr", type=float, help="learning rate of the codec (cosine schedule)")
    p.add_argument("--aux-lr", type=float, help="learning rate of the entropy bottleneck's aux loss")
    p.add_argument("--warmup", type=int, help="linear warm-up steps")
    p.add_argument("--lambda-task", type=float, help="weight of the task loss")
    p.add_argument("--lambda-mse", type=float, help="weight of 255²·MSE (0 for task-only)")
    p.add_argument("--target-bpp", type=float,
                   help="steer the rate weight towards this training-crop bpp (off: weight 1)")
    p.add_argument("--clip", type=float, help="gradient-norm clipping")
    add_runtime_options(p)
    p.set_defaults(func=run_train)


def config_from_args(cls, args: argparse.Namespace, saved: dict | None = None):
    """Defaults ← saved run settings (on --resume) ← options given on the command line."""
    values = {f.name: getattr(cls(out=""), f.name) for f in fields(cls)}
    if saved:
        values.update({k: v for k, v in saved.items() if k in values})
    given = {k: v for k, v in vars(args).items() if k in values and v is not None}
    if saved:
        changed = {k for k, v in given.items() if k not in ("steps", "out") and v != saved.get(k)}
        if changed:
            raise InputError(
                f"--resume continues a run with its saved settings; drop {sorted(changed)} "
                "(only --steps may change)"
            )
    values.update(given)
    return cls(**values)


def run_train(args: argparse.Namespace) -> int:
    from icmbridge.train.base import TrainConfig, train
    from icmbridge.train.runtime import read_run_config

    saved = read_run_config(args.out) if args.resume else None
    cfg = config_from_args(TrainConfig, args, saved)
    last = train(cfg, resume=args.resume)
    print(f"done: {last}", file=sys.stderr)
    return 0
