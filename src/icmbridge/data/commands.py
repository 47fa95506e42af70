"""``icmbridge data``: list the named image sets and export one as PNGs + COCO json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from icmbridge.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    from icmbridge.cli import HelpFormatter  # lazy: cli imports this module

    p = sub.add_parser(
        "data",
        help="list or export the built-in image sets",
        formatter_class=HelpFormatter,
        description="Image sets: packaged photos, the planted-face benchmark, "
        "and your own folders or COCO json files.",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    dsub.add_parser("list", help="list the named sets", formatter_class=HelpFormatter)
    e = dsub.add_parser(
        "export",
        help="write a set as PNG files plus a COCO annotation json",
        formatter_class=HelpFormatter,
    )
    e.add_argument("name", help="set name (see `icmbridge data list`)")
    e.add_argument("--split", default="test", choices=["train", "test", "all"])
    e.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from icmbridge.data import available_sets, get_set

    if args.data_command == "list":
        sets = available_sets()
        width = max(len(n) for n in sets)
        for name, desc in sets.items():
            print(f"{name:<{width}}  {desc}")
        return 0
    if args.data_command == "export":
        if args.split == "all" and args.name == "faces":
            raise InputError("the faces set has splits train and test, not all")
        samples = get_set(args.name, args.split)
        export_coco(samples, args.output)
        print(f"wrote {len(samples)} images and annotations.json to {args.output}")
        return 0
    raise InputError(f"unknown data action {args.data_command!r}")


def export_coco(samples: list, out_dir: Path) -> Path:
    """Write samples as ``NAME.png`` plus ``annotations.json`` (COCO; boxes as category 1)."""
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
        for b, c in zip(np.asarray(s.boxes, float), labels, strict=True):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(c),
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "area": float((b[2] - b[0]) * (b[3] - b[1])),
                    "iscrowd": 0,
                }
            )
    cats = sorted({a["category_id"] for a in anns}) or [1]
    data = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": "face" if c == 1 else str(c)} for c in cats],
    }
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(data, indent=1))
    return path
