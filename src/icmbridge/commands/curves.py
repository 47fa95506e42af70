"""``icmbridge curves``: rate curves of our codecs and the classical ones, and their BD-rates
(:mod:`icmbridge.workflows.curves`)."""

from __future__ import annotations

import argparse

from icmbridge.commands.options import add_command, add_scoring_options, add_threads, module_doc


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "curves",
        "rate curves (PSNR, JOD, SSIMULACRA 2, task AP50 vs bpp) and BD-rates",
        module_doc("icmbridge.workflows.curves"),
    )
    p.add_argument(
        "--models",
        default="base-low,base,base-high",
        help="our rate points, comma separated names or paths",
    )
    p.add_argument("--codecs", default="jpeg,webp,avif,heif", help="classical codecs")
    add_scoring_options(p)
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("-o", "--out", default="results/curves", help="output folder")
    add_threads(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from icmbridge.workflows.curves import run as run_curves

    return run_curves(args)
