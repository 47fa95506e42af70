"""Reading any image Pillow reads as 8-bit RGB, and writing decoded images safely.

Codecs here see float RGB in [0, 1]. Other modes (grayscale, palette, alpha, 16-bit, CMYK) are
converted, and each conversion is reported as a note so nothing happens silently.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from icmbridge.errors import InputError
from icmbridge.utils.atomic import atomic_file, check_input_file

_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def to_rgb8(im: Image.Image) -> tuple[np.ndarray, list[str]]:
    """Convert a Pillow image to an HxWx3 uint8 array, with a note for every conversion."""
    notes: list[str] = []
    mode = im.mode
    if mode in _SIXTEEN_BIT or mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 257.0 if mode != "F" and arr.max(initial=0) > 255 else 1.0
        if mode == "F" and arr.max(initial=0) <= 1.0:
            scale = 1 / 255
        gray = np.clip(np.round(arr / scale), 0, 255).astype(np.uint8)
        notes.append(f"converted {mode} (high bit depth) to 8-bit RGB")
        return np.repeat(gray[..., None], 3, axis=2), notes
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
        notes.append(f"converted {mode} to RGB (alpha composited on white)")
    elif mode != "RGB":
        notes.append(f"converted {mode} to RGB")
    rgb = im if im.mode == "RGB" else im.convert("RGB")
    return np.array(rgb, dtype=np.uint8), notes


def load_image(
    path: str | os.PathLike[str], max_pixels: int | None = None, as_uint8: bool = False
) -> tuple[Tensor, list[str]]:
    """Load an image file as a ``(1, 3, H, W)`` float tensor in [0, 1] plus conversion notes.

    EXIF orientation is applied. Images larger than ``max_pixels`` are refused before decoding.
    ``as_uint8`` returns the 8-bit values instead (a quarter of the memory; the codec reads them
    as value / 255).
    """
    path = check_input_file(path, "an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if max_pixels is not None and w * h > max_pixels:
                    raise InputError(
                        f"{str(path)!r} is {w}x{h}, above the limit of {max_pixels} pixels "
                        "(raise it with the environment variable ICMBRIDGE_MAX_PIXELS)"
                    )
                im.load()
                ImageOps.exif_transpose(im, in_place=True)  # no copy of a big image
                arr, notes = to_rgb8(im)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{str(path)!r} is not an image that Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{str(path)!r} is too large to decode safely: {exc}") from None
    except PermissionError:
        raise InputError(f"cannot read {str(path)!r}: permission denied") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{str(path)!r} is corrupt or truncated: {exc}") from None
    if as_uint8:
        return torch.from_numpy(arr).permute(2, 0, 1)[None], notes
    return array_to_tensor(arr), notes


def array_to_tensor(arr: np.ndarray) -> Tensor:
    """HxWx3 uint8 → (1, 3, H, W) float in [0, 1]."""
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # torch refuses to wrap read-only memory without a warning
        arr = arr.copy()
    return torch.from_numpy(arr).permute(2, 0, 1)[None].float().div_(255)


def tensor_to_array(x: Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float in [0, 1] (or uint8) → HxWx3 uint8 (rounded to nearest)."""
    if x.dim() == 4:
        x = x[0]
    if x.dtype == torch.uint8:
        return x.detach().cpu().permute(1, 2, 0).contiguous().numpy()
    return x.detach().cpu().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def save_image(x: Tensor | np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write an image atomically; the format follows the suffix (PNG recommended: lossless)."""
    arr = x if isinstance(x, np.ndarray) else tensor_to_array(x)
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"unknown image suffix {path.suffix!r} for {str(path)!r}; use .png")
    with atomic_file(path) as tmp:
        Image.fromarray(arr).save(tmp, format=fmt)
