"""Random patch sampling: the paper's "random sampling" block (Fig. 3).

Patches are cut at the *same* random places from the original x and the decoded x̂, so D compares
like with like and the MSE term can be taken on the same pixels. Sampling is driven by an explicit
``torch.Generator``: the same seed gives the same boxes on every machine and thread count.
"""

from __future__ import annotations

import torch
from torch import Tensor

from icmbridge.errors import InputError


def sample_patch_boxes(
    batch: int,
    height: int,
    width: int,
    patch_size: int,
    n_patches: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Top-left corners ``(top, left)`` of ``n_patches`` patches per image: int64 ``(B, n, 2)``.

    Corners are uniform over every position where the whole patch fits in the image. Drawn on the
    CPU (pass a CPU generator); move the result with ``.to(device)`` if needed.
    """
    if batch < 0 or n_patches < 1 or patch_size < 1:
        raise InputError(
            f"invalid patch sampling: batch={batch}, n_patches={n_patches}, patch_size={patch_size}"
        )
    if patch_size > min(height, width):
        raise InputError(
            f"patch size {patch_size} does not fit in images of {height}×{width}: use patches of "
            f"at most {min(height, width)} pixels or larger training crops"
        )
    tops = torch.randint(0, height - patch_size + 1, (batch, n_patches), generator=generator)
    lefts = torch.randint(0, width - patch_size + 1, (batch, n_patches), generator=generator)
    return torch.stack([tops, lefts], dim=-1)


def extract_patches(images: Tensor, boxes: Tensor, patch_size: int) -> Tensor:
    """Cut ``(B·n, C, p, p)`` patches at ``boxes`` ``(B, n, 2)``; gradients flow to ``images``.

    Patch ``b·n + k`` comes from image ``b`` at ``boxes[b, k]``: the order is the same for x and x̂.
    """
    if images.dim() != 4:
        raise InputError(f"expected images (B, C, H, W), got {tuple(images.shape)}")
    b, _, h, w = images.shape
    if boxes.dim() != 3 or boxes.shape[0] != b or boxes.shape[2] != 2:
        raise InputError(f"expected boxes of shape ({b}, n, 2), got {tuple(boxes.shape)}")
    boxes = boxes.to(device=images.device, dtype=torch.long)
    if boxes.numel() and (
        boxes.min() < 0
        or (boxes[..., 0] + patch_size).max() > h
        or (boxes[..., 1] + patch_size).max() > w
    ):
        raise InputError(f"a {patch_size}-pixel patch box falls outside the {h}×{w} images")
    n = boxes.shape[1]
    offsets = torch.arange(patch_size, device=images.device)
    rows = (boxes[..., 0, None] + offsets)[:, :, :, None]  # (B, n, p, 1)
    cols = (boxes[..., 1, None] + offsets)[:, :, None, :]  # (B, n, 1, p)
    batch_index = torch.arange(b, device=images.device)[:, None, None, None]
    # advanced indices around a slice: the result is (B, n, p, p, C)
    patches = images[batch_index, :, rows, cols]
    return patches.permute(0, 1, 4, 2, 3).reshape(b * n, images.shape[1], patch_size, patch_size)


def paired_patches(
    x: Tensor,
    x_hat: Tensor,
    patch_size: int,
    n_patches: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Patches of x and x̂ at the same random places: ``(B·n, C, p, p)`` each."""
    if x.shape != x_hat.shape:
        raise InputError(f"x and x_hat differ in shape: {tuple(x.shape)} vs {tuple(x_hat.shape)}")
    boxes = sample_patch_boxes(x.shape[0], x.shape[2], x.shape[3], patch_size, n_patches, generator)
    return extract_patches(x, boxes, patch_size), extract_patches(x_hat, boxes, patch_size)
