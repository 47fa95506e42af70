"""``icmbridge report``: turn a results folder into a static HTML page."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from icmbridge.commands.options import add_command
from icmbridge.errors import InputError

HELP = "write a static HTML report (tables, plots, zoomed crops, slider) of a results folder"
DESCRIPTION = """\
Read RESULTS_DIR (results.json, originals/, decoded/LABEL/ as written by
`icmbridge demo` or `icmbridge ablate`) and write REPORT_DIR/index.html with its
images under REPORT_DIR/assets/. The page needs no network. An existing REPORT_DIR
is replaced only if it is an earlier report (or empty)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "report", HELP, DESCRIPTION)
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="folder holding results.json")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR", help="report folder")
    p.add_argument(
        "--max-images", type=int, default=8, help="images shown as crops and in the slider"
    )
    p.add_argument("--crop-size", type=int, default=64, help="side of the zoomed crop, pixels")
    p.add_argument("--zoom", type=int, default=4, help="nearest-neighbour enlargement of crops")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from icmbridge.report.html import build_report

    if args.max_images < 0:
        raise InputError(f"--max-images must be ≥ 0, got {args.max_images}")
    if args.crop_size < 16:
        raise InputError(f"--crop-size must be ≥ 16 (one grid period), got {args.crop_size}")
    if not 1 <= args.zoom <= 16:
        raise InputError(f"--zoom must be between 1 and 16, got {args.zoom}")
    command = "icmbridge report " + shlex.join([str(args.results_dir), "-o", str(args.output)])
    page = build_report(
        Path(args.results_dir),
        Path(args.output),
        max_images=args.max_images,
        crop_size=args.crop_size,
        zoom=args.zoom,
        command=command,
    )
    print(page, file=sys.stdout)
    return 0
