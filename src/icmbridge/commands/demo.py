"""``icmbridge demo``: the whole method on the shipped models and data, in minutes
(:mod:`icmbridge.workflows.demo`)."""

from __future__ import annotations

import argparse

from icmbridge.commands.options import add_command, add_scoring_options, add_threads, module_doc


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "demo",
        "the main job: code, decode twice, finetune live, compare, report",
        module_doc("icmbridge.workflows.demo"),
    )
    p.add_argument("-o", "--out", default="out/demo", help="folder for files, results, report")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a ~2-minute version (fewer images, a short live finetune, JPEG only)",
    )
    p.add_argument("--images", type=int, help="number of demo images (default: 8; quick: 3)")
    p.add_argument(
        "--finetune-steps",
        type=int,
        help="steps of the live finetune (default: 150; quick: 10; 0 skips it)",
    )
    p.add_argument(
        "--no-curves",
        dest="curves",
        action="store_false",
        default=None,
        help="skip the rate curves over the shipped rate points (always skipped with --quick)",
    )
    p.add_argument("--base", default="base", help="the codec that writes the bitstreams")
    p.add_argument(
        "--decoders",
        help="decoders finetuned from --base, comma separated (names, paths or LABEL=PATH); "
        "default: the shipped human decoders that read --base's bitstreams",
    )
    add_scoring_options(p, task_required=True)
    p.add_argument(
        "--filter-set",
        help="images the post-filters' parameters are searched on (default: the training split "
        "of --set, else photos:train)",
    )
    add_threads(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from icmbridge.workflows.demo import run as run_demo

    return run_demo(args)
