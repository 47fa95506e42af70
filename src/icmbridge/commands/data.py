"""``icmbridge data``: list the image sets (and whether each is found) and export one as PNGs +
COCO json."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from icmbridge.commands.options import HelpFormatter
from icmbridge.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="list or export the image sets",
        formatter_class=HelpFormatter,
        description="Image sets: packaged photos, the planted-face benchmarks, public data sets "
        "(Kodak, BSDS500, YOLO/coco128, WIDER FACE) and your own folders or COCO json files. "
        "A set spec is NAME[:PATH][:SPLIT][?KEY=VALUE,...]; bare names are found below "
        "$ICMBRIDGE_DATA.",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    dsub.add_parser(
        "list",
        help="list the sets and whether each is found under ICMBRIDGE_DATA",
        formatter_class=HelpFormatter,
    )
    e = dsub.add_parser(
        "export",
        help="write a set as PNG files plus a COCO annotation json",
        formatter_class=HelpFormatter,
    )
    e.add_argument("name", help="set spec, e.g. faces:test or bsds (see `icmbridge data list`)")
    e.add_argument(
        "--split",
        choices=["train", "val", "test", "trainval", "all"],
        help="split when the spec names none (default: test)",
    )
    e.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from icmbridge.data import DATA_ENV, available_sets, get_set, set_status
    from icmbridge.data.export import export_coco

    if args.data_command == "list":
        sets, status = available_sets(), set_status()
        width = max(len(n) for n in sets)
        swidth = max(len(v) for v in status.values()) + 2
        for name, desc in sets.items():
            print(f"{name:<{width}}  {'[' + status[name] + ']':<{swidth}}  {desc}")
        root = os.environ.get(DATA_ENV, "").strip() or "(not set)"
        print(
            "\nspec: NAME[:PATH][:SPLIT][?KEY=VALUE,...]; bare names are found below "
            f"{DATA_ENV}={root} (kodak/, bsds500/, coco128/, widerface-val200/)"
        )
        return 0
    if args.data_command == "export":
        samples = get_set(args.name, args.split)
        export_coco(samples, args.output)
        print(f"wrote {len(samples)} images and annotations.json to {args.output}")
        return 0
    raise InputError(f"unknown data action {args.data_command!r}")
