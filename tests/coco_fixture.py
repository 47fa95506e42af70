"""A small COCO-format set written the way COCO ships: JPEGs next to an instances json with
polygon and RLE segmentations, annotation areas that are the polygons' (not the boxes'), a crowd
region, two categories and an image without objects. Built from the packaged face benchmark, so
it needs no download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def _diamond(b: np.ndarray) -> list[float]:
    """A polygon inside box ``b`` (xyxy) touching its four sides: half the box's area."""
    x0, y0, x1, y1 = (float(v) for v in b)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return [cx, y0, x1, cy, cx, y1, x0, cy]


def make_coco(root: Path, n_images: int = 3, size: int = 128) -> Path:
    """Write ``root/images/*.jpg`` and ``root/instances.json``; return the json's path."""
    from pycocotools import mask as mask_utils

    from icmbridge.data import get_set

    samples = get_set("faces:test")[:n_images]
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i, s in enumerate(samples):
        image = s.image[:size, :size]
        name = f"images/{1000 + i:012d}.jpg"
        Image.fromarray(image).save(root / name, quality=95)
        images.append({"id": 1000 + i, "file_name": name, "height": size, "width": size})
        if i == n_images - 1:
            continue  # the last image has no object: every detection on it is a false positive
        boxes = np.clip(np.asarray(s.boxes, float), 0, size)
        boxes = boxes[(boxes[:, 2] - boxes[:, 0] > 4) & (boxes[:, 3] - boxes[:, 1] > 4)]
        for k, b in enumerate(boxes):
            poly = _diamond(b)
            rle = mask_utils.frPyObjects([poly], size, size)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 1000 + i,
                    "category_id": 1 + k % 2,  # two categories
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "area": float(mask_utils.area(rle)[0]),
                    "segmentation": [poly],
                    "iscrowd": 0,
                }
            )
        # a crowd region (uncompressed RLE, as COCO writes crowds) in the top-left corner
        crowd = np.zeros((size, size), np.uint8)
        crowd[2:30, 2:40] = 1
        enc = mask_utils.encode(np.asfortranarray(crowd))
        counts = _uncompressed_counts(crowd)
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": 1000 + i,
                "category_id": 1,
                "bbox": [2.0, 2.0, 38.0, 28.0],
                "area": float(mask_utils.area(enc)),
                "segmentation": {"size": [size, size], "counts": counts},
                "iscrowd": 1,
            }
        )
    data = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "face"}, {"id": 2, "name": "other face"}],
    }
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts (column-major runs, starting with zeros)."""
    flat = np.asarray(mask, np.uint8).flatten(order="F")
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return counts
