"""``icmbridge data``: list the image sets (and whether each is found) and export one as PNGs +
COCO json."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from icmbridge.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    from icmbridge.cli import HelpFormatter  # lazy: cli imports this module

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


def export_coco(samples: list, out_dir: Path) -> Path:
    """Write samples as ``NAME.png`` plus ``annotations.json`` (COCO; category = the label, 1 for
    faces). Ignore regions (``Sample.ignore``) are written as ``iscrowd: 1`` annotations."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i, s in enumerate(samples):
        file_name = Path(s.name).with_suffix(".png").as_posix().replace("/", "_")
        Image.fromarray(s.image).save(out_dir / file_name)
        h, w = s.image.shape[:2]
        images.append({"id": i + 1, "file_name": file_name, "height": h, "width": w})
        if s.boxes is None:
            continue
        labels = s.labels if s.labels is not None else np.ones(len(s.boxes), np.int64)
        ignore = s.ignore if s.ignore is not None else np.zeros(len(s.boxes), bool)
        for b, c, crowd in zip(np.asarray(s.boxes, float), labels, ignore, strict=True):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(c),
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "area": float((b[2] - b[0]) * (b[3] - b[1])),
                    "iscrowd": int(bool(crowd)),
                }
            )
    cats = sorted({a["category_id"] for a in anns}) or [1]
    names = next((s.meta["class_names"] for s in samples if s.meta.get("class_names")), None)

    def cat_name(c: int) -> str:
        if names is not None:
            return names[c] if 0 <= c < len(names) else str(c)
        return "face" if c == 1 else str(c)

    data = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": cat_name(c)} for c in cats],
    }
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(data, indent=1))
    return path
