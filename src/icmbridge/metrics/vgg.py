"""VGG feature distance, the paper's "VGG" column, for users who have VGG-16 weights locally.

The paper does not publish which layers it used; we take torchvision's VGG-16 ``features`` up to
relu4_3 and report the relative squared error ‖φ(x) − φ(x̂)‖² / ‖φ(x)‖² on ImageNet-normalised
inputs. Weights never download: pass the path of a torchvision ``vgg16`` state dict.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from icmbridge.errors import InputError

_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
RELU4_3 = 23  # index of relu4_3 in torchvision's vgg16().features


class VGGDistance:
    def __init__(self, weights_path: str | os.PathLike[str]) -> None:
        from torchvision.models import vgg16

        model = vgg16(weights=None)
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise InputError(f"cannot read VGG weights {str(weights_path)!r}: {exc}") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise InputError(f"{str(weights_path)!r} is not a torchvision vgg16: {first}") from None
        self.features = model.features[: RELU4_3 + 1].eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, x: Tensor, x_hat: Tensor) -> float:
        a = self.features((x - _MEAN) / _STD)
        b = self.features((x_hat - _MEAN) / _STD)
        return float((a - b).pow(2).sum() / a.pow(2).sum().clamp_min(1e-12))
