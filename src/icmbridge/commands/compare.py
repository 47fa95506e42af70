"""``icmbridge compare``: one set of bitstreams, several decoders, classical codecs at its bytes
(:mod:`icmbridge.workflows.compare`)."""

from __future__ import annotations

import argparse

from icmbridge.commands.options import add_command, add_scoring_options, add_threads, module_doc


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "compare",
        "decoders of one set of bitstreams vs classical codecs at the same bytes, with CIs",
        module_doc("icmbridge.workflows.compare"),
    )
    p.add_argument("--base", default="base", help="the codec that writes the bitstreams")
    p.add_argument(
        "--decoders",
        default="human,human-li",
        help="comma-separated decoders finetuned from --base (names or paths; LABEL=PATH names "
        "one); '' for none",
    )
    p.add_argument(
        "--codecs", default="jpeg,webp,avif,heif", help="classical codecs at matched bytes; ''"
    )
    add_scoring_options(p)
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument(
        "--no-images",
        dest="images",
        action="store_false",
        help="do not write originals and decoded images (the report then shows no crops)",
    )
    p.add_argument(
        "--reference",
        default="base",
        help="the codec every other one is compared with, image by image (e.g. a λ_a = 0 "
        "control, to see what the adversarial term adds)",
    )
    add_threads(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from icmbridge.workflows.compare import run as run_compare

    return run_compare(args)
