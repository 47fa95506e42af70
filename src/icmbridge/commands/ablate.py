"""``icmbridge ablate``: the paper's Table 1 and the questions it leaves open, on our data
(:mod:`icmbridge.workflows.ablate`)."""

from __future__ import annotations

import argparse

from icmbridge.commands.options import (
    add_command,
    add_scoring_options,
    add_threads,
    comma_list,
    module_doc,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "ablate",
        "run the paper's Table 1 rows, λ_a and layer sweeps",
        module_doc("icmbridge.workflows.ablate"),
    )
    p.add_argument("--base", default="base", help="base model to finetune (name or path)")
    p.add_argument("-o", "--out", default="results/ablation", help="output folder")
    p.add_argument("--steps", type=int, default=400, help="finetuning steps per row")
    p.add_argument("--seed", type=int, default=0, help="seed of every row")
    add_scoring_options(p, set_help="held-out images to score: ", task_required=True)
    p.add_argument("--images", type=int, default=24, help="held-out images to score (the first N)")
    p.add_argument(
        "--data",
        type=comma_list,
        help="finetuning sets, comma separated (default: finetune's, faces,photos)",
    )
    p.add_argument(
        "--only",
        choices=["table1", "lambda", "layers"],
        action="append",
        help="run only these parts (repeatable; default: all)",
    )
    add_threads(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from icmbridge.workflows.ablate import run as run_ablation

    return run_ablation(args)
