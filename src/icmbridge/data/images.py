"""Image sets on disk: folders of photos, COCO instance annotations, reproducible training crops.

Everything here returns :class:`Sample` objects (name, HxWx3 uint8 RGB array, optional boxes) so
that packaged, generated and user data look the same to training and evaluation code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icmbridge.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class Sample:
    """One image with optional ground truth.

    ``boxes`` is a (K, 4) float32 array of xyxy pixel boxes, or None when the set has no
    annotations (evaluation then falls back to pseudo ground truth and says so). ``labels`` and
    ``masks`` are optional COCO extras (category ids; K HxW bool masks). ``ignore``, when not
    None, is a (K,) bool array aligned with ``boxes``: True marks an *ignore region* (a face too
    small to score, an ``invalid`` WIDER face, a COCO crowd) that a scorer treats like a COCO
    crowd box — a detection on it is neither a true nor a false positive.
    """

    name: str
    image: np.ndarray
    boxes: np.ndarray | None = None
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    ignore: np.ndarray | None = None

    def target(self) -> dict[str, torch.Tensor] | None:
        """Ground truth in the task convention (``{"boxes", "labels"[, "masks", "ignore"]}``).

        None when the sample has no annotations; ``"ignore"`` (bool, one per box) only when the
        sample carries ignore flags.
        """
        if self.boxes is None:
            return None
        boxes = torch.as_tensor(np.asarray(self.boxes, np.float32).reshape(-1, 4))
        labels = (
            torch.as_tensor(np.asarray(self.labels), dtype=torch.int64)
            if self.labels is not None
            else torch.ones(len(boxes), dtype=torch.int64)
        )
        out = {"boxes": boxes, "labels": labels}
        if self.masks is not None:
            out["masks"] = torch.as_tensor(np.asarray(self.masks, dtype=np.uint8))
        if self.ignore is not None:
            out["ignore"] = torch.as_tensor(np.asarray(self.ignore, dtype=bool).reshape(-1))
        return out

    def scored(self) -> Sample:
        """This sample without its ignore regions (boxes, labels, masks and meta arrays aligned
        with them are filtered), for code that knows nothing of ignore flags, e.g. a supervised
        loss. Samples without ignore flags are returned as they are."""
        if self.ignore is None or self.boxes is None:
            return self
        keep = ~np.asarray(self.ignore, dtype=bool).reshape(-1)
        k = len(keep)

        def cut(a):
            return a[keep] if isinstance(a, np.ndarray) and a.ndim >= 1 and len(a) == k else a

        return Sample(
            self.name,
            self.image,
            self.boxes[keep],
            None if self.labels is None else self.labels[keep],
            None if self.masks is None else self.masks[keep],
            {key: cut(v) for key, v in self.meta.items()},
            None,
        )


def list_images(folder: str | Path) -> list[Path]:
    """All jpg/jpeg/png/webp files below ``folder`` (recursive), sorted for a stable order."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"not a folder of images: {root}")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_rgb(path: str | Path) -> np.ndarray:
    """Read any Pillow-readable image as HxWx3 uint8 RGB (gray and alpha are converted)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {exc}") from exc


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Bring a gray, RGBA, bool or float image array to HxWx3 uint8."""
    a = np.asarray(image)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        scale = 255.0 if a.max() <= 1.0 else 1.0
        a = np.clip(np.rint(a.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., :3])


def load_folder(folder: str | Path) -> list[Sample]:
    """Every image below ``folder``, without annotations; names are paths relative to it."""
    root = Path(folder)
    paths = list_images(root)
    if not paths:
        raise InputError(f"no jpg/jpeg/png/webp images in {root}")
    return [Sample(str(p.relative_to(root)), _read_rgb(p)) for p in paths]


def load_coco(
    json_path: str | Path,
    images_dir: str | Path | None = None,
    with_masks: bool = False,
    crowd: str = "drop",
) -> list[Sample]:
    """COCO instance annotations as samples (xywh boxes → xyxy).

    ``images_dir`` defaults to the json's folder. Images with no annotation are kept with an empty
    (0, 4) box array: they count for false positives. ``with_masks`` decodes segmentations with
    pycocotools (for Mask R-CNN scoring). ``crowd``: "drop" (default) leaves ``iscrowd``
    annotations out; "ignore" keeps them as ignore regions (``Sample.ignore``), as COCO's own
    evaluation treats them.
    """
    if crowd not in ("drop", "ignore"):
        raise InputError(f"crowd must be drop or ignore, not {crowd!r}")
    json_path = Path(json_path)
    root = Path(images_dir) if images_dir is not None else json_path.parent
    try:
        data = json.loads(json_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{json_path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or "images" not in data:
        raise InputError(f"{json_path} is not a COCO annotation file (no 'images' list)")
    by_image: dict[int, list[dict]] = {}
    for ann in data.get("annotations", []):
        if ann.get("iscrowd", 0) and crowd == "drop":
            continue
        by_image.setdefault(ann["image_id"], []).append(ann)
    samples = []
    for info in sorted(data["images"], key=lambda i: i["id"]):
        image = _read_rgb(root / info["file_name"])
        anns = by_image.get(info["id"], [])
        boxes = np.array(
            [
                [
                    a["bbox"][0],
                    a["bbox"][1],
                    a["bbox"][0] + a["bbox"][2],
                    a["bbox"][1] + a["bbox"][3],
                ]
                for a in anns
            ],
            dtype=np.float32,
        ).reshape(-1, 4)
        labels = np.array([a.get("category_id", 1) for a in anns], dtype=np.int64)
        masks = None
        if with_masks:
            from pycocotools import mask as mask_utils

            h, w = image.shape[:2]
            masks = np.zeros((len(anns), h, w), dtype=bool)
            for k, a in enumerate(anns):
                seg = a.get("segmentation")
                if not seg:
                    continue
                rles = mask_utils.frPyObjects(seg, h, w) if isinstance(seg, list) else [seg]
                if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
                    rles = [mask_utils.frPyObjects(seg, h, w)]
                masks[k] = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
        ignore = None
        if crowd == "ignore":
            ignore = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
        samples.append(
            Sample(
                info["file_name"],
                image,
                boxes,
                labels,
                masks,
                meta={"coco_id": info["id"]},
                ignore=ignore,
            )
        )
    return samples


class TrainCrops(torch.utils.data.Dataset):
    """Random ``crop``-pixel crops with horizontal flips, reproducible per (seed, epoch, index).

    Each item's randomness comes from its own generator seeded by (seed, epoch, index), so the data
    are the same whatever the number of workers or the order of access; :meth:`set_epoch` moves to
    new crops. Images smaller than ``crop`` are padded by reflection (replicate when too small to
    reflect). One epoch is ``samples_per_epoch`` crops, cycling through the images.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        crop: int = 128,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        flip: bool = True,
    ) -> None:
        if not images:
            raise InputError("TrainCrops needs at least one image")
        self.images = [to_rgb(im) for im in images]
        self.crop = int(crop)
        self.samples_per_epoch = int(samples_per_epoch or len(self.images))
        self.seed = int(seed)
        self.flip = flip
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _pad(self, im: np.ndarray) -> np.ndarray:
        h, w = im.shape[:2]
        ph, pw = max(0, self.crop - h), max(0, self.crop - w)
        if ph == 0 and pw == 0:
            return im
        pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))
        mode = "reflect" if ph < h and pw < w else "edge"
        return np.pad(im, pads, mode=mode)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        # A per-epoch permutation of images keeps the mixture balanced yet reproducible.
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))
        im = self._pad(self.images[order[index % len(self.images)]])
        h, w = im.shape[:2]
        y = int(rng.integers(0, h - self.crop + 1))
        x = int(rng.integers(0, w - self.crop + 1))
        patch = im[y : y + self.crop, x : x + self.crop]
        if self.flip and rng.random() < 0.5:
            patch = patch[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1).float() / 255.0
