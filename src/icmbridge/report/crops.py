"""Where to zoom: the crop on which the base decoder's checkerboard is strongest.

Picker (:func:`pick_crop`): take the luma residual r = Y(x̂_base) − Y(x), high-pass it by
subtracting its 16×16 box mean (a box of exactly one grid period removes any smooth error, such
as blur or colour shifts, yet keeps a period-16 pattern whole apart from its mean), cut it into
16×16 tiles aligned to the decoder's grid (which starts at the top-left corner), and score every
grid-aligned ``size``×``size`` window by the energy of its *phase-averaged* tile: the mean of the
window's tiles, pixel by pixel. A pattern locked to the 16-px grid survives that average at full
strength while edge and noise errors, whose sign varies from tile to tile, average out (for
n tiles their energy drops by about n). The window with the highest score wins; ties go to the
top-left one. This is the local version of the ``phase_variance`` score in
:mod:`icmbridge.metrics.artifacts`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter

from icmbridge.errors import InputError

#: The decoder's total upsampling: its checkerboard repeats every this many pixels.
GRID = 16
_LUMA = np.array([0.299, 0.587, 0.114])


class Box(NamedTuple):
    """A crop: top-left corner and size, in pixels of the original image."""

    top: int
    left: int
    height: int
    width: int


def read_rgb(path: Path) -> np.ndarray:
    """Any image Pillow reads, as HxWx3 uint8 (reports do not care about conversion notes)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read image {str(path)!r}: {exc}") from exc


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ _LUMA


def grid_scores(original: np.ndarray, decoded: np.ndarray, size: int = 64) -> np.ndarray:
    """Score of each grid-aligned ``size``×``size`` window: energy of its phase-averaged residual.

    Returns an array indexed by (tile row, tile column) of the window's top-left tile; empty when
    the image is smaller than one window.
    """
    h = min(original.shape[0], decoded.shape[0])
    w = min(original.shape[1], decoded.shape[1])
    residual = _luma(decoded[:h, :w]) - _luma(original[:h, :w])
    residual = residual - uniform_filter(residual, size=GRID, mode="reflect")
    th, tw = h // GRID, w // GRID
    n = max(1, size // GRID)
    if th < n or tw < n:
        return np.zeros((0, 0))
    tiles = residual[: th * GRID, : tw * GRID].reshape(th, GRID, tw, GRID).transpose(0, 2, 1, 3)
    # Sum of the tiles of every n×n window of tiles, via an integral image over tile indices.
    integral = np.zeros((th + 1, tw + 1, GRID, GRID))
    integral[1:, 1:] = tiles.cumsum(0).cumsum(1)
    sums = integral[n:, n:] - integral[:-n, n:] - integral[n:, :-n] + integral[:-n, :-n]
    pattern = sums / (n * n)
    pattern = pattern - pattern.mean(axis=(2, 3), keepdims=True)
    return (pattern**2).mean(axis=(2, 3))


def pick_crop(original: np.ndarray, decoded: np.ndarray | None, size: int = 64) -> Box:
    """The window where ``decoded`` carries the strongest 16-px grid pattern (centre if none).

    Images smaller than ``size`` get a crop of their own size; without a decoded image (or when
    it is too small to score) the centre crop is used.
    """
    h, w = original.shape[:2]
    ch, cw = min(size, h), min(size, w)
    centre = Box((h - ch) // 2, (w - cw) // 2, ch, cw)
    if decoded is None:
        return centre
    scores = grid_scores(original, decoded, size)
    if scores.size == 0 or not np.isfinite(scores).all() or scores.max() <= 0:
        return centre
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return Box(int(i) * GRID, int(j) * GRID, ch, cw)


def cut(image: np.ndarray, box: Box, zoom: int = 4) -> Image.Image:
    """The crop ``box`` of ``image``, enlarged ``zoom``× nearest-neighbour (keeps every pixel).

    Parts of the box outside a smaller image (a decoder that returned a different size) are
    filled with mid grey rather than failing.
    """
    out = np.full((box.height, box.width, 3), 128, dtype=np.uint8)
    part = image[box.top : box.top + box.height, box.left : box.left + box.width]
    out[: part.shape[0], : part.shape[1]] = part
    pil = Image.fromarray(out)
    return pil.resize((box.width * zoom, box.height * zoom), Image.Resampling.NEAREST)


def crop_psnr(original: np.ndarray, decoded: np.ndarray, box: Box) -> float | None:
    """PSNR (dB, 8-bit peak) of the crop alone: what the zoom shows, not the whole image."""
    a = original[box.top : box.top + box.height, box.left : box.left + box.width]
    b = decoded[box.top : box.top + box.height, box.left : box.left + box.width]
    if a.shape != b.shape or a.size == 0:
        return None
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
