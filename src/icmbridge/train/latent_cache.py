"""Decoder-only training on a CPU: the frozen encoder's ŷ of every training image, computed once.

When the encoder is frozen, ŷ of an image never changes, so a finetune need not run ``g_a`` (and
the hyper-prior) at every step: whole training images are encoded once, ŷ kept beside them, and
each step decodes aligned random crops of the cache::

    image (H×W, uint8) ──► codec.quantized_latent (once) ──► ŷ (M × ⌈H/64⌉·4 × ⌈W/64⌉·4)
    step: core crop of c/16 latents ↔ c pixels at 16·(row, col); the decoder runs on the core
          plus a margin of latents (its receptive field), and only the core's pixels are kept

ŷ here is the whole image's (what the bitstream really holds), not a crop's re-encoding, and
the margin gives every kept pixel the latents it sees in a whole-image decode, as the tiled
decoder does (:mod:`icmbridge.codec.tiling`). Crops are drawn from each sample's own seed, so a
resumed run sees the very same batches. No flips: a flipped ŷ is not the ŷ of a flipped image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from icmbridge.errors import InputError

#: Latents of context around a crop's core: ±2 cells is g_s's exact receptive field (k5 s2 ×4);
#: a refinement's few pixels fit inside it.
MARGIN = 2


@dataclass
class Batch:
    """Aligned crops: images (B, 3, c, c) float, ŷ with margin, and where the core sits in it."""

    x: Tensor
    y_ext: Tensor
    offsets: list[tuple[int, int]]  # pixel offset of each core inside the decoded extent
    y_core: Tensor
    ids: Tensor
    origins: list[tuple[int, int, int]]  # (cached image, pixel row, pixel col) of each core


class LatentCache:
    """Whole training images (uint8) with their ŷ, and aligned random crops of both."""

    def __init__(self, images: list[Tensor], latents: list[Tensor], stride: int = 16) -> None:
        self.images, self.latents, self.stride = images, latents, stride

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def build(
        cls,
        codec: object,
        specs: list[str],
        path: str | os.PathLike[str] | None = None,
        min_side: int = 0,
        log: object = None,
    ) -> LatentCache:
        """Encode every image of ``specs`` (``train`` split) once; reuse ``path`` when it holds
        the cache of the same sets by the same encoder (fingerprint)."""
        from icmbridge.codec.bitstream import fingerprint
        from icmbridge.data import get_set
        from icmbridge.imageio import array_to_tensor

        key = {"fingerprint": fingerprint(codec).hex(), "specs": list(specs)}  # type: ignore[arg-type]
        if path is not None and Path(path).is_file():
            saved = torch.load(path, weights_only=True)
            if saved.get("key") == key:
                return cls(saved["images"], saved["latents"], codec.upsampling)  # type: ignore[attr-defined]
        images, latents = [], []
        for spec in specs:
            for sample in get_set(spec, "train"):
                if min(sample.image.shape[:2]) < min_side:
                    continue
                x = array_to_tensor(sample.image)
                images.append(x[0].mul(255).round().to(torch.uint8))
                latents.append(codec.quantized_latent(x)[0].float().cpu())  # type: ignore[attr-defined]
        if not images:
            raise InputError(f"no training image of {specs} is at least {min_side} px a side")
        if log is not None:
            log(f"cached ŷ of {len(images)} images from {', '.join(specs)}")  # type: ignore[operator]
        if path is not None:
            tmp = Path(f"{path}.tmp")
            torch.save({"key": key, "images": images, "latents": latents}, tmp)
            os.replace(tmp, path)
        return cls(images, latents, codec.upsampling)  # type: ignore[attr-defined]

    def sample(self, i: int, crop: int, seed: int, margin: int = MARGIN) -> tuple[Tensor, ...]:
        """Sample ``i`` of a run: (x core, ŷ extent, offset row, offset col, ŷ core, origin)."""
        s = self.stride
        cl = crop // s
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        k = int(torch.randint(len(self.images), (1,), generator=g))
        img, y = self.images[k], self.latents[k]
        gh, gw = y.shape[-2:]
        # core cells wholly inside the real image; the extent (core ± margin) inside ŷ's grid
        rows, cols = img.shape[-2] // s - cl, img.shape[-1] // s - cl
        r0 = int(torch.randint(rows + 1, (1,), generator=g))
        c0 = int(torch.randint(cols + 1, (1,), generator=g))
        e = cl + 2 * margin
        er = min(max(0, r0 - margin), max(0, gh - e))
        ec = min(max(0, c0 - margin), max(0, gw - e))
        x = img[:, r0 * s : (r0 + cl) * s, c0 * s : (c0 + cl) * s].float().div(255)
        y_ext = y[:, er : er + e, ec : ec + e]
        y_core = y[:, r0 : r0 + cl, c0 : c0 + cl]
        return x, y_ext, (r0 - er) * s, (c0 - ec) * s, y_core, (k, r0 * s, c0 * s)

    def batch(self, step: int, size: int, crop: int, seed: int, margin: int = MARGIN) -> Batch:
        """Global batch ``step`` (samples step·size … step·size + size − 1), each core with
        ``margin`` latents of context where the image has them."""
        if crop % self.stride:
            raise InputError(f"--crop must be a multiple of {self.stride} with a latent cache")
        ids = torch.arange(step * size, (step + 1) * size)
        parts = [self.sample(int(i), crop, seed, margin) for i in ids]
        # extents clipped by a small latent grid differ in shape: zeros below and to the right
        # (where the grid ends, as a whole-image decode's zero padding begins)
        eh = max(p[1].shape[-2] for p in parts)
        ew = max(p[1].shape[-1] for p in parts)
        y_ext = torch.stack(
            [F.pad(p[1], (0, ew - p[1].shape[-1], 0, eh - p[1].shape[-2])) for p in parts]
        )
        return Batch(
            x=torch.stack([p[0] for p in parts]),
            y_ext=y_ext,
            offsets=[(p[2], p[3]) for p in parts],
            y_core=torch.stack([p[4] for p in parts]),
            ids=ids,
            origins=[p[5] for p in parts],
        )

    @staticmethod
    def crop_cores(x_ext: Tensor, offsets: list[tuple[int, int]], crop: int) -> Tensor:
        """The core of each decoded extent (B, 3, crop, crop)."""
        return torch.stack(
            [x_ext[i, :, r : r + crop, c : c + crop] for i, (r, c) in enumerate(offsets)]
        )
