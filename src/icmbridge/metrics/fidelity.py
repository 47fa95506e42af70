"""Pixel fidelity: PSNR, SSIM and MS-SSIM between an original and its decoded image.

Canonical input (shared with :mod:`icmbridge.metrics.artifacts`): a float ``torch.Tensor`` in
[0, 1], one image ``(3, H, W)`` or a batch ``(B, 3, H, W)``, the codec's own output format. For
convenience a NumPy array ``(H, W, 3)`` / ``(B, H, W, 3)`` is also accepted: ``uint8`` is divided by
255, floats are taken as already in [0, 1]. Values are *not* rounded to 8 bits first: scores of a
float decoder output differ from those of the saved PNG by a few hundredths of a dB, which is below
anything the reports compare. Round (``(x * 255).round() / 255``) before calling to score files.

SSIM and MS-SSIM are pytorch-msssim's (Gaussian window 11, σ 1.5, ``data_range=1``) computed on
RGB and averaged over the channels, as CompressAI's evaluation does.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from pytorch_msssim import ssim as _ssim
from torch import Tensor

from icmbridge.errors import InputError

ImageLike = Tensor | np.ndarray

#: pytorch-msssim's default window; MS-SSIM downsamples 4 times, so it needs a side > 10 · 2**4.
SSIM_WIN = 11
MS_SSIM_MIN_SIDE = (SSIM_WIN - 1) * 2**4 + 1  # 161


def to_image_batch(x: ImageLike, name: str = "image") -> Tensor:
    """Return ``x`` as a ``(B, 3, H, W)`` float32 tensor in [0, 1] (inputs: see the module doc)."""
    if isinstance(x, np.ndarray):
        if x.ndim not in (3, 4) or x.shape[-1] != 3:
            raise InputError(
                f"{name}: expected a NumPy array (H, W, 3) or (B, H, W, 3), got {x.shape}"
            )
        t = torch.tensor(x)  # a copy: read-only arrays (e.g. PIL's) are fine
        t = t.float() / 255.0 if x.dtype == np.uint8 else t.float()
        t = t.movedim(-1, -3)
    elif isinstance(x, Tensor):
        t = x
    else:
        raise InputError(
            f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}"
        )
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[1] != 3:
        raise InputError(f"{name}: expected shape (3, H, W) or (B, 3, H, W), got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise InputError(f"{name}: expected a float tensor in [0, 1], got dtype {t.dtype}")
    t = t.detach()
    if t.numel() and (not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1):
        raise InputError(
            f"{name}: values must lie in [0, 1] (got min {t.min().item():.3g}, max "
            f"{t.max().item():.3g}); divide 8-bit images by 255"
        )
    return t.float()


def image_pair(x: ImageLike, x_hat: ImageLike) -> tuple[Tensor, Tensor]:
    """Both images as ``(B, 3, H, W)`` float tensors of the same shape, on the same device."""
    a, b = to_image_batch(x, "x"), to_image_batch(x_hat, "x_hat")
    if a.shape != b.shape:
        raise InputError(f"x and x_hat differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return a, b.to(a.device)


def _single(values: Tensor, what: str) -> float:
    if values.numel() != 1:
        raise InputError(
            f"{what}() scores one image; use {what}_batch() for a batch of {values.numel()}"
        )
    return float(values.item())


# ---------------------------------------------------------------------------------------- PSNR
def psnr_batch(x: ImageLike, x_hat: ImageLike) -> Tensor:
    """Per-image PSNR in dB (peak 1), shape ``(B,)``; ``inf`` where the images are identical."""
    a, b = image_pair(x, x_hat)
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    return (-10.0 * torch.log10(mse)).float()  # log10(0) = -inf -> +inf, no special case


def psnr(x: ImageLike, x_hat: ImageLike) -> float:
    """PSNR of one image in dB; ``math.inf`` for identical images (no cap: a cap hides bugs)."""
    return _single(psnr_batch(x, x_hat), "psnr")


# ---------------------------------------------------------------------------------------- SSIM
def ssim_batch(x: ImageLike, x_hat: ImageLike) -> Tensor:
    """Per-image SSIM, shape ``(B,)``; needs a side of at least 11 pixels (the window)."""
    a, b = image_pair(x, x_hat)
    if min(a.shape[-2:]) < SSIM_WIN:
        raise InputError(
            f"SSIM needs images of at least {SSIM_WIN}×{SSIM_WIN}, got {tuple(a.shape[-2:])}"
        )
    return _ssim(a, b, data_range=1.0, size_average=False, win_size=SSIM_WIN)


def ssim(x: ImageLike, x_hat: ImageLike) -> float:
    """SSIM of one image (1.0 for identical images)."""
    return _single(ssim_batch(x, x_hat), "ssim")


def ssim_or_none(x: ImageLike, x_hat: ImageLike) -> float | None:
    """SSIM of one image, or ``None`` when a side is below the 11-px window."""
    a, _ = image_pair(x, x_hat)
    return None if min(a.shape[-2:]) < SSIM_WIN else ssim(x, x_hat)


def ms_ssim_batch(x: ImageLike, x_hat: ImageLike) -> Tensor | None:
    """Per-image MS-SSIM, ``(B,)``, or ``None`` when a side is below 161 (5 scales don't fit)."""
    a, b = image_pair(x, x_hat)
    if min(a.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return None
    return _ms_ssim(a, b, data_range=1.0, size_average=False, win_size=SSIM_WIN)


def ms_ssim(x: ImageLike, x_hat: ImageLike) -> float | None:
    """MS-SSIM of one image, or ``None`` when it is too small (min side < 161) for 5 scales."""
    values = ms_ssim_batch(x, x_hat)
    return None if values is None else _single(values, "ms_ssim")


def mse_to_psnr(mse: float) -> float:
    """PSNR (peak 1) of a mean squared error; ``inf`` for 0."""
    return math.inf if mse <= 0 else -10.0 * math.log10(mse)
