"""Write an image set out as PNG files plus a COCO annotation json (``icmbridge data export``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


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
