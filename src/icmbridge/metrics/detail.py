"""How much of the original's fine detail a decoder keeps: ``hf_kept_db``.

A crude realism measure (from the discriminator-health study, ``weights/gan-health.md``): the
decoded image's luma power at radial frequencies ≥ 1/4 cycle/pixel over the original's, in dB
(0: as much fine detail as the original; a blur reads below 0). The bins of the 16-px latent
grid are left out, so an added block lattice does not count as detail; off-grid artifact
energy still does (a base codec with checkerboard patterns reads highest). Computed on the
8-bit images, in float64, over the largest top-left crop whose sides are multiples of 16.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Luma weights (ITU-R BT.601).
LUMA = np.array([0.299, 0.587, 0.114])
PERIOD = 16
HIGH = 0.25  # cycles per pixel


def luma(image: Any) -> np.ndarray:
    """HxW float64 luma in [0, 1] of an HxWx3 uint8 array or a (1×)3×H×W tensor in [0, 1]."""
    if hasattr(image, "detach"):  # a torch tensor, 3×H×W or 1×3×H×W: as its 8-bit image
        a = image.detach().cpu().double().numpy()
        a = np.round(np.clip(np.moveaxis(a.reshape(a.shape[-3:]), 0, -1), 0, 1) * 255) / 255
    else:
        a = np.asarray(image, dtype=np.float64) / 255.0
    return a[..., :3] @ LUMA


def hf_kept_db_luma(ref: np.ndarray, dec: np.ndarray, period: int = PERIOD) -> float | None:
    """``hf_kept_db`` of two luma planes; None when an image is smaller than two grid periods
    or the original holds no fine detail at all."""
    h, w = (ref.shape[0] // period) * period, (ref.shape[1] // period) * period
    if h < 2 * period or w < 2 * period:
        return None
    ref, dec = ref[:h, :w], dec[:h, :w]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    high = np.hypot(fy, fx) >= HIGH
    grid = np.zeros((h, w), bool)
    grid[:: h // period, :: w // period] = True
    mask = high & ~grid
    p_ref = (np.abs(np.fft.fft2(ref - ref.mean())) ** 2)[mask].sum()
    p_dec = (np.abs(np.fft.fft2(dec - dec.mean())) ** 2)[mask].sum()
    if p_ref <= 0 or p_dec <= 0:
        return None
    return float(10 * np.log10(p_dec / p_ref))


def hf_kept_db(x: Any, x_hat: Any) -> float | None:
    """``hf_kept_db`` of an original and its decoded image (uint8 arrays or tensors in [0, 1])."""
    return hf_kept_db_luma(luma(x), luma(x_hat))
