"""Human-decoder architectures on a base's bitstream: any synthesis that reads the same ŷ.

The bitstream depends only on the encoder and the entropy models (the fingerprint leaves the
synthesis transform ``g_s`` out), so a decoder for people may differ from the base's ``g_s`` in
shape as well as in weights. A decoder architecture is a small spec stored in ``config.json``::

    "decoder": {"arch": "refine", "channels": 32, "blocks": 2}

* ``same``   — the base's ``g_s`` (the paper's human decoder; no ``decoder`` key is written);
* ``refine`` — the base's ``g_s`` (its weights, its module names) followed by a full-resolution
  residual CNN on x̂: a 3×3 head, ``blocks`` residual blocks of two 3×3 convs at ``channels``,
  a 3×3 tail initialised to zero, so the decoder starts as exactly the base's and learns only a
  correction (de-blotching, edge sharpening) where the 16-px latent grid cannot;
* ``latent`` — the same residual CNN on ŷ itself, *before* the base's ``g_s``: at 1/16 of the
  resolution a 3×3 conv costs 1/256 of its full-resolution MACs per pixel, so the decoder gains
  depth and a wide receptive field (``2 + 2·blocks`` latents: neighbouring cells inform a cell
  whose own bits are few) for little decode time.

The new parts are named children of ``g_s`` (an ``nn.Sequential``): ``refine`` last, ``latent``
first, so the base's keys (``g_s.0.weight`` ...) are unchanged and initialising from the base
is loading its state dict; everything that runs ``g_s`` (coding, tiling, finetuning, D's health
check) runs the new decoder unchanged. Their receptive field widens ``synthesis_halo`` by whole
latents, so tiled decoding stays exact up to float summation order.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from icmbridge.errors import InputError

#: Names of the refinement children inside ``g_s`` (after it, before it).
REFINE = "refine"
LATENT = "latent"


@dataclass(frozen=True)
class DecoderSpec:
    """A human decoder's architecture: what ``config.json`` stores under ``decoder``."""

    arch: str = "same"
    channels: int = 32
    blocks: int = 2

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch} if self.arch == "same" else asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DecoderSpec:
        if not d:
            return cls()
        unknown = set(d) - {"arch", "channels", "blocks"}
        if unknown:
            raise InputError(f"decoder spec: unknown keys {sorted(unknown)}")
        spec = cls(**d)
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.arch not in DECODERS:
            raise InputError(f"unknown decoder {self.arch!r}; known: {', '.join(DECODERS)}")
        if self.arch != "same" and not (1 <= self.channels <= 512 and 0 <= self.blocks <= 32):
            raise InputError(
                f"decoder {self.arch}: channels must be in 1..512 and blocks in 0..32, got "
                f"{self.channels} / {self.blocks}"
            )


class ResBlock(nn.Module):
    """conv3 → ReLU → conv3, added to the input."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class Refinement(nn.Module):
    """x + tail(blocks(relu(head(x)))): a residual correction (of x̂, or of ŷ before g_s).

    The tail is zero-initialised, so a fresh refinement is the identity and a decoder that
    gains one starts from exactly the base's pixels.
    """

    def __init__(self, channels: int = 32, blocks: int = 2, io: int = 3) -> None:
        super().__init__()
        self.head = nn.Conv2d(io, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(ResBlock(channels) for _ in range(blocks)))
        self.tail = nn.Conv2d(channels, io, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    @property
    def radius(self) -> int:
        """Receptive-field radius in pixels: one per 3×3 conv."""
        return 2 + 2 * len(self.blocks)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.tail(self.blocks(torch.relu(self.head(x))))


def _install_same(codec: Any, spec: DecoderSpec) -> None:
    return None


def _new_part(
    codec: Any, spec: DecoderSpec, name: str, io: int, what: str
) -> tuple[nn.Sequential, Refinement]:
    """The codec's Sequential synthesis and a fresh refinement ``name`` for it (on the
    synthesis' device and dtype), refused where it cannot be added."""
    g_s = getattr(codec, codec.synthesis_name)
    if not isinstance(g_s, nn.Sequential):
        raise InputError(f"decoder {spec.arch} needs a Sequential synthesis; {codec.arch}'s is not")
    if name in g_s._modules:
        raise InputError(f"this codec's decoder already has {what}")
    param = next(g_s.parameters())
    part = Refinement(spec.channels, spec.blocks, io=io).to(device=param.device, dtype=param.dtype)
    return g_s, part


def _install_refine(codec: Any, spec: DecoderSpec) -> None:
    g_s, refine = _new_part(codec, spec, REFINE, io=3, what="a refinement")
    g_s.add_module(REFINE, refine)
    if codec.synthesis_halo is not None:  # widen the tiles' halo by whole latents
        codec.synthesis_halo = type(codec).synthesis_halo + math.ceil(
            refine.radius / codec.upsampling
        )


def _install_latent(codec: Any, spec: DecoderSpec) -> None:
    g_s, pre = _new_part(codec, spec, LATENT, io=codec.config.M, what="a latent refinement")
    children = [(LATENT, pre), *g_s._modules.items()]
    g_s._modules.clear()
    for name, module in children:  # the latent refinement runs first; the base's names stay
        g_s.add_module(name, module)
    if codec.synthesis_halo is not None:
        codec.synthesis_halo = type(codec).synthesis_halo + pre.radius


#: Decoder architecture name → how it changes a base codec's synthesis in place.
DECODERS = {"same": _install_same, "refine": _install_refine, "latent": _install_latent}


def install_decoder(codec: Any, spec: DecoderSpec | dict[str, Any] | None) -> Any:
    """Give ``codec`` the decoder ``spec`` (in place; returns it). The base's ``g_s`` weights
    stay where they are, so a codec loaded from a base and then given a decoder starts as the
    base's decoder; new parts are initialised as their class documents."""
    spec = spec if isinstance(spec, DecoderSpec) else DecoderSpec.from_dict(spec)
    spec.validate()
    DECODERS[spec.arch](codec, spec)
    codec.decoder_spec = spec
    return codec


def decoder_spec(codec: Any) -> DecoderSpec:
    """The decoder architecture of a codec (``same`` unless one was installed)."""
    return getattr(codec, "decoder_spec", DecoderSpec())


def decoder_macs_per_pixel(codec: Any, hw: tuple[int, int] = (256, 256)) -> float:
    """Multiply-accumulates of the synthesis per output pixel, counted on a ``hw`` decode."""
    g_s = getattr(codec, codec.synthesis_name)
    total = [0]

    def hook(m: nn.Module, inp: tuple[Tensor, ...], out: Tensor) -> None:
        if isinstance(m, nn.ConvTranspose2d):  # every input pixel scatters a full kernel
            k = m.weight[0].numel()  # (out/groups) · kh · kw
            total[0] += inp[0].numel() // inp[0].shape[0] * k
        elif isinstance(m, nn.Conv2d):
            k = m.weight[0].numel()  # (in/groups) · kh · kw
            total[0] += out.numel() // out.shape[0] * k
        elif type(m).__name__ == "GDN":  # a 1×1 conv over channels
            total[0] += out.numel() // out.shape[0] * out.shape[1]

    hooks = [m.register_forward_hook(hook) for m in g_s.modules() if m is not g_s]
    try:
        s = codec.upsampling
        y = torch.zeros(1, codec.config.M, hw[0] // s, hw[1] // s)
        with torch.no_grad():
            g_s(y.to(next(g_s.parameters())))
    finally:
        for h in hooks:
            h.remove()
    return total[0] / (hw[0] * hw[1])
