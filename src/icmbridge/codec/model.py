"""The ICM codec: a scale hyper-prior with a transposed-convolution synthesis transform.

Architecture (Ballé et al., ICLR 2018, "Variational image compression with a scale hyperprior"),
the kind of codec the paper finetunes::

      x ──► g_a ──► y ──► Q ──► ŷ ──► g_s ──► x̂      g_a: 4 × (conv k5 s2) with GDN
                    │            ▲                      g_s: 4 × (ConvTranspose2d k5 s2), IGDN
                  |·|           σ̂
                    ▼            │
                   h_a ──► z ──► Q ──► ẑ ──► h_s

The strided ``ConvTranspose2d`` upsampling of ``g_s`` is what draws the checkerboard artifacts at
low rates; the paper removes them by finetuning the *first synthesis layers* (nearest ŷ) only.

Coding is made reproducible across thread counts, batch sizes and processes by two choices:

* the quantised CDF tables are buffers saved with the weights, so a decoder never rebuilds them
  from floats of its own (``update()`` runs only when a model has none);
* the hyper-synthesis ``h_s`` that yields the scale indices runs in float64 on the CPU when coding,
  so an index never flips at a table boundary because of a float32 summation order.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models.base import CompressionModel
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from icmbridge.codec.rans import decode_latent, encode_latent
from icmbridge.codec.tiling import (
    resolve_tile,
    tiled_analysis,
    tiled_synthesis,
    tiled_upsampling,
)
from icmbridge.errors import InputError

# Scale table of bmshj2018 (CompressAI's default): 64 log-spaced scales in [0.11, 256].
SCALES_MIN, SCALES_MAX, SCALES_LEVELS = 0.11, 256.0, 64


def scale_table() -> Tensor:
    return torch.exp(
        torch.linspace(
            torch.log(torch.tensor(SCALES_MIN)), torch.log(torch.tensor(SCALES_MAX)), SCALES_LEVELS
        )
    )


@dataclass(frozen=True)
class CodecConfig:
    """Sizes of the codec: N channels in the transforms, M latent channels."""

    N: int = 64
    M: int = 96

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


# Named configurations. ``cpu`` is what the shipped weights use: small enough to code a 512² image
# in well under a second on 2 CPU cores; ``bmshj2018`` is CompressAI's quality-1..5 size.
CONFIGS: dict[str, CodecConfig] = {
    "tiny": CodecConfig(N=16, M=24),
    "cpu": CodecConfig(N=64, M=96),
    "bmshj2018": CodecConfig(N=128, M=192),
}


class _SeededNoise:
    """Mixin for CompressAI entropy models: training noise drawn per sample from its own seed.

    The uniform noise that stands in for quantisation during training then depends only on a
    sample's identity, not on how samples are split over processes or where a run was resumed,
    so a 2-process DDP run and a resumed run reproduce the 1-process, uninterrupted one.
    """

    sample_seeds: Tensor | None = None

    @staticmethod
    def _uniform(shape: tuple[int, ...], seed: int) -> Tensor:
        return torch.empty(shape).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(seed))

    def _sample_noise(self, inputs: Tensor, seeds: Tensor) -> Tensor:
        raise NotImplementedError

    def quantize(self, inputs: Tensor, mode: str, means: Tensor | None = None) -> Tensor:
        if mode == "noise" and self.sample_seeds is not None:
            return inputs + self._sample_noise(inputs, self.sample_seeds).to(inputs)
        return super().quantize(inputs, mode, means)  # type: ignore[misc]


class SeededEntropyBottleneck(_SeededNoise, EntropyBottleneck):
    def _sample_noise(self, inputs: Tensor, seeds: Tensor) -> Tensor:
        # EntropyBottleneck quantises values laid out as (C, 1, B·H·W), sample-major.
        c, _, n = inputs.shape
        per = n // len(seeds)
        return torch.cat([self._uniform((c, 1, per), int(s)) for s in seeds], dim=-1)


class SeededGaussianConditional(_SeededNoise, GaussianConditional):
    def _sample_noise(self, inputs: Tensor, seeds: Tensor) -> Tensor:
        return torch.stack([self._uniform(tuple(inputs.shape[1:]), int(s)) for s in seeds])


class ICMCodec(CompressionModel):
    """Hyper-prior codec following CompressAI's ``CompressionModel`` contract.

    ``forward`` returns ``{"x_hat", "likelihoods"}`` (training, additive-noise proxy),
    ``compress``/``decompress`` code real strings with CompressAI's rANS coder. Inputs are float
    images in [0, 1] of any size; they are padded to a multiple of :attr:`downsampling` with edge
    replication and the output is cropped back.
    """

    downsampling = 64  # g_a (16) × h_a (4)
    upsampling = 16  # total stride of g_s, the period of its checkerboard
    #: Halos (in latents) that make tiled transforms exact: a latent sees pixels within ±30 of its
    #: 16-pixel cell (4 × k5 s2), a decoded pixel sees latents within ±2 cells.
    analysis_halo = 2
    synthesis_halo = 2
    #: The hyper-synthesis runs over tiles of this many ẑ cells (1024 pixels) with a 2-cell halo,
    #: always: images up to 1024 pixels a side see one tile, i.e. the whole-image computation.
    hyper_tile = 16
    hyper_halo = 2
    #: CPU threads of the synthesis transform when decoding bitstreams: a fixed number makes the
    #: decoded pixels identical whatever the caller's thread setting or batch (None: don't fix).
    decode_threads: int | None = 2

    def __init__(self, config: CodecConfig | None = None) -> None:
        super().__init__()
        self.config = config or CONFIGS["cpu"]
        N, M = self.config.N, self.config.M
        self.entropy_bottleneck = SeededEntropyBottleneck(N)
        self.gaussian_conditional = SeededGaussianConditional(None)
        self.g_a = nn.Sequential(
            conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M)
        )
        self.g_s = nn.Sequential(
            deconv(M, N),
            GDN(N, inverse=True),
            deconv(N, N),
            GDN(N, inverse=True),
            deconv(N, N),
            GDN(N, inverse=True),
            deconv(N, 3),
        )
        self.h_a = nn.Sequential(
            conv(M, N, stride=1, kernel_size=3),
            nn.ReLU(inplace=True),
            conv(N, N),
            nn.ReLU(inplace=True),
            conv(N, N),
        )
        self.h_s = nn.Sequential(
            deconv(N, N),
            nn.ReLU(inplace=True),
            deconv(N, N),
            nn.ReLU(inplace=True),
            conv(N, M, stride=1, kernel_size=3),
            nn.ReLU(inplace=True),
        )
        self._frozen_prefixes: tuple[str, ...] = ()

    # ------------------------------------------------------------------ structure
    def synthesis_layers(self) -> list[list[str]]:
        """Synthesis layers from the latent outwards, each as the ``g_s`` module names it groups.

        A layer is a transposed convolution with the IGDN that follows it; the last one has none.
        ``first:K`` finetuning selects the first K of these.
        """
        layers: list[list[str]] = []
        for name, module in self.g_s.named_children():
            if isinstance(module, nn.ConvTranspose2d):
                layers.append([f"g_s.{name}"])
            else:
                layers[-1].append(f"g_s.{name}")
        return layers

    def encoder_and_entropy_modules(self) -> dict[str, nn.Module]:
        """Everything the bitstream depends on: its fingerprint covers exactly these."""
        return {
            "g_a": self.g_a,
            "h_a": self.h_a,
            "h_s": self.h_s,
            "entropy_bottleneck": self.entropy_bottleneck,
            "gaussian_conditional": self.gaussian_conditional,
        }

    # ------------------------------------------------------------------ freezing
    def freeze_for_finetune(self, trainable_prefixes: list[str]) -> list[nn.Parameter]:
        """Freeze everything but the parameters under ``trainable_prefixes`` and return those.

        Frozen modules stay in eval mode even after ``.train()``, so no batch statistics or
        other state of the encoder and entropy models can drift during finetuning.
        """
        prefixes = tuple(trainable_prefixes)
        trainable: list[nn.Parameter] = []
        for name, p in self.named_parameters():
            keep = any(name == q or name.startswith(q + ".") for q in prefixes)
            p.requires_grad_(keep)
            if keep:
                trainable.append(p)
        if not trainable:
            raise InputError(f"no codec parameter matches {list(trainable_prefixes)}")
        self._frozen_prefixes = prefixes
        self.train(self.training)
        return trainable

    def train(self, mode: bool = True) -> ICMCodec:
        super().train(mode)
        if self._frozen_prefixes:
            for name, module in self.named_modules():
                if name and not any(
                    name == q or name.startswith(q + ".") or q.startswith(name + ".")
                    for q in self._frozen_prefixes
                ):
                    module.eval()
        return self

    # ------------------------------------------------------------------ training path
    def forward(
        self, x: Tensor, sample_seeds: Tensor | None = None
    ) -> dict[str, Tensor | dict[str, Tensor]]:
        """Training pass (noise proxy for quantisation; rounding in eval mode).

        ``sample_seeds`` (one integer per image) makes the training noise a function of each
        sample alone; without it the noise comes from torch's global generator.
        """
        check_image_tensor(x)
        self.entropy_bottleneck.sample_seeds = sample_seeds
        self.gaussian_conditional.sample_seeds = (
            None if sample_seeds is None else sample_seeds + (1 << 40)
        )
        h, w = x.shape[-2:]
        x_pad = pad_to_multiple(x, self.downsampling)
        y = self.g_a(x_pad)
        z = self.h_a(torch.abs(y))
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales_hat = self.h_s(z_hat)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales_hat)
        x_hat = self.g_s(y_hat)[..., :h, :w]
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    # ------------------------------------------------------------------ decoder finetuning path
    @torch.no_grad()
    def quantized_latent(self, x: Tensor) -> Tensor:
        """ŷ = round(g_a(x)): exactly the latent a decoder reconstructs from the bitstream."""
        check_image_tensor(x)
        return torch.round(self.g_a(pad_to_multiple(x, self.downsampling)))

    def synthesize(self, y_hat: Tensor, out_hw: tuple[int, int]) -> Tensor:
        """x̂ = g_s(ŷ) cropped to ``out_hw`` (differentiable; not clamped)."""
        return self.g_s(y_hat)[..., : out_hw[0], : out_hw[1]]

    # ------------------------------------------------------------------ coding path
    def ready_to_code(self) -> bool:
        return all(
            m._quantized_cdf.numel() > 0
            for m in (self.entropy_bottleneck, self.gaussian_conditional)
        )

    def update(self, scale_table: Tensor | None = None, force: bool = False) -> bool:
        """Build the CDF tables (CompressAI's ``update``) with this codec's scale table."""
        if scale_table is None:
            scale_table = globals()["scale_table"]()
        return super().update(scale_table=scale_table, force=force)

    def _ensure_ready(self) -> None:
        if not self.ready_to_code():
            self.update(force=True)

    def _coding_indexes(self, z_hat: Tensor) -> Tensor:
        """CDF table indexes of ŷ from ẑ, via σ̂ = h_s(ẑ) in float64 on the CPU.

        float64 makes the indexes identical on every decoder (no flip at a table boundary from a
        float32 summation order). h_s runs over fixed tiles of ẑ with an exact halo, whatever
        the image tile setting, so encoder and decoder compute alike and a 50 MP image never
        holds float64 scales (or their im2col buffers) whole.
        """
        # The float64 copy is rebuilt only when h_s's weights change (tracked by version counters).
        key = tuple((p.data_ptr(), p._version) for p in self.h_s.parameters())
        cached = self.__dict__.get("_h_s64")
        if cached is None or cached[0] != key:
            h_s64 = copy.deepcopy(self.h_s).to(device="cpu", dtype=torch.float64)
            self.__dict__["_h_s64"] = cached = (key, h_s64)
        stride = self.downsampling // self.upsampling
        zh, zw = z_hat.shape[-2:]
        return tiled_upsampling(
            cached[1],
            z_hat.to(device="cpu", dtype=torch.float64),
            (zh * stride, zw * stride),
            self.config.M,
            stride,
            self.hyper_tile,
            self.hyper_halo,
            torch.int32,
            finish=self.gaussian_conditional.build_indexes,
            channels_last=False,  # the float64 path stays the computation every decoder does
        )

    @torch.no_grad()
    def compress(self, x: Tensor, tile: int | None = None) -> dict[str, object]:
        """Code a batch of images ``(B, 3, H, W)`` to rANS strings.

        ``x`` is float in [0, 1] or uint8 (read as value / 255, so a big image need not exist as
        floats). ``tile`` runs the analysis transform over tiles (see :mod:`.tiling`; None:
        automatic above a size, 0: whole image); the bitstream does not depend on it.
        """
        check_image_tensor(x, allow_uint8=True)
        self._ensure_ready()
        h, w = x.shape[-2:]
        zh, zw = self.latent_shape(h, w)
        stride = self.upsampling
        grid = (zh * self.downsampling // stride, zw * self.downsampling // stride)
        tile_latents = resolve_tile(tile, (grid[0] * stride, grid[1] * stride), stride)
        device = next(self.g_a.parameters()).device
        y = tiled_analysis(
            self.g_a, x, grid, self.config.M, stride, tile_latents, self.analysis_halo, device
        )
        z = self.h_a(torch.abs(y))
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        indexes = self._coding_indexes(z_hat)
        del z_hat
        y_strings = encode_latent(self.gaussian_conditional, y.cpu(), indexes)
        return {"strings": [y_strings, z_strings], "shape": tuple(z.size()[-2:])}

    @torch.no_grad()
    def decompress(
        self,
        strings: list[list[bytes]],
        shape: tuple[int, int],
        out_hw: tuple[int, int] | None = None,
        tile: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> dict[str, Tensor]:
        """Decode strings of :meth:`compress`; ``out_hw`` crops away the encoder's padding.

        ``tile`` as in :meth:`compress`; ``dtype`` float32 (in [0, 1]) or uint8 (rounded to
        nearest, written tile by tile).
        """
        self._ensure_ready()
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        indexes = self._coding_indexes(z_hat)
        y_hat = decode_latent(self.gaussian_conditional, strings[0], indexes)
        del indexes
        stride = self.upsampling
        if out_hw is None:
            out_hw = (y_hat.shape[-2] * stride, y_hat.shape[-1] * stride)
        tile_latents = resolve_tile(
            tile, (y_hat.shape[-2] * stride, y_hat.shape[-1] * stride), stride
        )
        device = next(self.g_s.parameters()).device
        images = []
        # oneDNN's transposed convolutions sum in a thread-count dependent order; one image (and
        # one tile) at a time on a fixed number of threads gives the same pixels in every setting.
        fixed = device.type == "cpu" and self.decode_threads is not None
        with fixed_threads(self.decode_threads) if fixed else contextlib.nullcontext():
            for i in range(len(y_hat)):
                images.append(
                    tiled_synthesis(
                        self.g_s,
                        y_hat[i : i + 1].to(device),
                        out_hw,
                        stride,
                        tile_latents,
                        self.synthesis_halo,
                        dtype,
                    )
                )
        return {"x_hat": images[0] if len(images) == 1 else torch.cat(images)}

    def latent_shape(self, height: int, width: int) -> tuple[int, int]:
        """Spatial shape of ẑ for an image of ``height × width``."""
        d = self.downsampling
        return (-(-height // d), -(-width // d))


@contextlib.contextmanager
def fixed_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch CPU threads, restoring the caller's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad bottom/right to a multiple of ``multiple`` by edge replication (works for 1×1 too)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def check_image_tensor(x: Tensor, allow_uint8: bool = False) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"expected an image batch of shape (B, 3, H, W), got {shape}")
    if allow_uint8 and x.dtype == torch.uint8:
        return
    if not x.is_floating_point():
        raise InputError(f"expected a float image in [0, 1], got dtype {x.dtype}")
    if x.numel() and (x.min() < 0 or x.max() > 1 or not torch.isfinite(x).all()):
        raise InputError(
            f"image values must lie in [0, 1] (got min {x.min().item():.3g}, "
            f"max {x.max().item():.3g}); divide 8-bit images by 255"
        )
