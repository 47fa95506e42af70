"""Image sets on disk: folders of photos, COCO instance annotations, reproducible training crops.

Everything here returns :class:`Sample` objects (name, HxWx3 uint8 RGB array, optional boxes) so
that packaged, generated and user data look the same to training and evaluation code.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        masks = self.masks  # (a lazy sample decodes them on each access)
        if masks is not None:
            out["masks"] = torch.as_tensor(np.asarray(masks, dtype=np.uint8))
        if self.ignore is not None:
            out["ignore"] = torch.as_tensor(np.asarray(self.ignore, dtype=bool).reshape(-1))
        if self.meta.get("area") is not None:  # the annotation's own area (COCO), not the box's
            out["area"] = torch.as_tensor(np.asarray(self.meta["area"], dtype=np.float64))
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
            None if (masks := self.masks) is None else masks[keep],
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


@functools.lru_cache(maxsize=16)
def _read_rgb_cached(path: str) -> np.ndarray:
    return _read_rgb(path)


class LazySample(Sample):
    """A :class:`Sample` whose pixels (and masks) are read from disk each time they are asked
    for (the last few images stay in a small cache), so a set of 100k COCO images costs its
    annotations in memory, not its pixels. Everything else behaves as a :class:`Sample`."""

    def __init__(
        self,
        name: str,
        path: str | Path,
        boxes: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        meta: dict | None = None,
        ignore: np.ndarray | None = None,
        mask_loader: Callable[[], np.ndarray] | None = None,
    ) -> None:
        self.name = name
        self.path = Path(path)
        self.boxes = boxes
        self.labels = labels
        self.meta = meta if meta is not None else {}
        self.ignore = ignore
        self._mask_loader = mask_loader

    @property  # type: ignore[override]
    def image(self) -> np.ndarray:
        return _read_rgb_cached(str(self.path)).copy()

    @property  # type: ignore[override]
    def masks(self) -> np.ndarray | None:
        return None if self._mask_loader is None else self._mask_loader()

    def __repr__(self) -> str:
        n = "no" if self.boxes is None else len(self.boxes)
        return f"LazySample({self.name!r}, {str(self.path)!r}, {n} boxes)"


def load_coco(
    json_path: str | Path,
    images_dir: str | Path | None = None,
    with_masks: bool = False,
    crowd: str = "ignore",
) -> list[Sample]:
    """COCO instance annotations as samples whose images are read lazily (xywh boxes → xyxy).

    As COCO users expect: ``images_dir`` defaults to the json's folder; images with no
    annotation are kept with an empty (0, 4) box array (they count for false positives);
    ``iscrowd`` annotations are kept as ignore regions (``Sample.ignore``; ``crowd="drop"``
    leaves them out), the way ``COCOeval`` treats them; each annotation's own ``area`` travels
    with it (``meta["area"]``, ``target()["area"]``) so AP by object size and the crowd
    handling are those of ``COCOeval`` on the original file; ``with_masks`` gives each sample
    its instance masks, decoded on access with pycocotools' ``COCO.annToMask``.

    Images are not decoded here (only checked to exist): a json of 100k images loads in the
    time it takes to parse it.
    """
    from pycocotools.coco import COCO

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
    coco = COCO()
    coco.dataset = {"categories": [], "annotations": [], **data}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
        coco.createIndex()
    samples: list[Sample] = []
    for info in sorted(data["images"], key=lambda i: i["id"]):
        path = root / info["file_name"]
        if not path.is_file():
            raise InputError(f"{json_path} lists {info['file_name']} but {path} is missing")
        anns = [
            a
            for a in coco.imgToAnns.get(info["id"], [])
            if crowd == "ignore" or not a.get("iscrowd", 0)
        ]
        boxes = np.array(
            [[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (a["bbox"] for a in anns)],
            dtype=np.float32,
        ).reshape(-1, 4)
        labels = np.array([a.get("category_id", 1) for a in anns], dtype=np.int64)
        area = np.array(
            [a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns], dtype=np.float64
        )
        ignore = None
        if crowd == "ignore":
            ignore = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
        loader = None
        if with_masks:
            loader = functools.partial(_coco_masks, coco, anns, info)
        samples.append(
            LazySample(
                info["file_name"],
                path,
                boxes,
                labels,
                meta={"coco_id": info["id"], "area": area},
                ignore=ignore,
                mask_loader=loader,
            )
        )
    return samples


def _coco_masks(coco: Any, anns: list[dict], info: dict) -> np.ndarray:
    """(K, H, W) bool instance masks of ``anns`` (pycocotools' annToMask; an annotation without
    segmentation gets its filled box)."""
    h, w = int(info["height"]), int(info["width"])
    masks = np.zeros((len(anns), h, w), dtype=bool)
    for k, a in enumerate(anns):
        if a.get("segmentation"):
            masks[k] = coco.annToMask(a).astype(bool)
        else:
            x, y, bw, bh = (round(v) for v in a["bbox"])
            masks[k, max(y, 0) : y + bh, max(x, 0) : x + bw] = True
    return masks


class TrainCrops(torch.utils.data.Dataset):
    """Random ``crop``-pixel crops with horizontal flips, reproducible per (seed, epoch, index).

    Each item's randomness comes from its own generator seeded by (seed, epoch, index), so the data
    are the same whatever the number of workers or the order of access; :meth:`set_epoch` moves to
    new crops. Images smaller than ``crop`` are padded by reflection (replicate when too small to
    reflect). One epoch is ``samples_per_epoch`` crops, cycling through the images.

    ``images`` holds arrays or :class:`Sample` objects; samples are read only when a crop of
    theirs is asked for (a lazy COCO set is never held in memory), and :meth:`target` gives the
    annotations of crop ``index`` (boxes moved, clipped and flipped with it; ignore regions left
    out), for supervised task losses.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray | Sample],
        crop: int = 128,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        flip: bool = True,
    ) -> None:
        if not len(images):
            raise InputError("TrainCrops needs at least one image")
        self.images = [im if isinstance(im, Sample) else to_rgb(im) for im in images]
        self.crop = int(crop)
        self.samples_per_epoch = int(samples_per_epoch or len(self.images))
        self.seed = int(seed)
        self.flip = flip
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _pads(self, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
        ph, pw = max(0, self.crop - h), max(0, self.crop - w)
        return (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)

    def _pad(self, im: np.ndarray) -> np.ndarray:
        h, w = im.shape[:2]
        (t, b), (left, r) = self._pads(h, w)
        if t + b + left + r == 0:
            return im
        mode = "reflect" if t + b < h and left + r < w else "edge"
        return np.pad(im, ((t, b), (left, r), (0, 0)), mode=mode)

    def _geometry(self, index: int) -> tuple[int, int, int, bool, np.ndarray]:
        """(image index, top, left, flipped, the image) of crop ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        # A per-epoch permutation of images keeps the mixture balanced yet reproducible.
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))
        k = int(order[index % len(self.images)])
        item = self.images[k]
        im = to_rgb(item.image) if isinstance(item, Sample) else item
        h, w = self._pad(im).shape[:2] if min(im.shape[:2]) < self.crop else im.shape[:2]
        y = int(rng.integers(0, h - self.crop + 1))
        x = int(rng.integers(0, w - self.crop + 1))
        flipped = bool(self.flip and rng.random() < 0.5)
        return k, y, x, flipped, im

    def __getitem__(self, index: int) -> torch.Tensor:
        _, y, x, flipped, im = self._geometry(index)
        patch = self._pad(im)[y : y + self.crop, x : x + self.crop]
        if flipped:
            patch = patch[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1).float() / 255.0

    def target(self, index: int, min_side: float = 2.0) -> dict[str, torch.Tensor]:
        """The annotations inside crop ``index``: ``boxes`` (xyxy in crop pixels), ``labels``
        (and ``masks`` when the set has them); boxes left narrower than ``min_side`` pixels by
        the crop and ignore regions are dropped. Empty for images without annotations."""
        k, y, x, flipped, im = self._geometry(index)
        item = self.images[k]
        c = self.crop
        empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
        if not isinstance(item, Sample) or item.boxes is None or not len(item.boxes):
            return empty
        (top, _), (left, _) = self._pads(*im.shape[:2])
        keep = np.ones(len(item.boxes), bool)
        if item.ignore is not None:
            keep &= ~np.asarray(item.ignore, bool).reshape(-1)
        b = np.asarray(item.boxes, np.float32).reshape(-1, 4)[keep].copy()
        b += np.array([left - x, top - y, left - x, top - y], np.float32)
        b = np.clip(b, 0, c)
        inside = ((b[:, 2] - b[:, 0]) >= min_side) & ((b[:, 3] - b[:, 1]) >= min_side)
        b = b[inside]
        if flipped:
            b[:, [0, 2]] = c - b[:, [2, 0]]
        labels = (
            np.ones(len(keep), np.int64)
            if item.labels is None
            else np.asarray(item.labels, np.int64).reshape(-1)
        )
        out = {"boxes": torch.from_numpy(b), "labels": torch.from_numpy(labels[keep][inside])}
        masks = item.masks
        if masks is not None:
            m = np.asarray(masks, bool)[keep][inside]
            (t, bt), (lf, r) = self._pads(*im.shape[:2])
            m = np.pad(m, ((0, 0), (t, bt), (lf, r)))[:, y : y + c, x : x + c]
            out["masks"] = torch.from_numpy(np.ascontiguousarray(m[:, :, ::-1] if flipped else m))
        return out
