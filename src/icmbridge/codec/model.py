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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, EntropyModel, GaussianConditional
from compressai.layers import GDN
from compressai.models.base import CompressionModel
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from icmbridge.codec.rans import bounded_string, decode_latent, encode_latent, table_indexes
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


class CodecContract:
    """What icmbridge needs of a codec, shared by :class:`ICMCodec` and the CompressAI family.

    A codec following it is a CompressAI ``CompressionModel`` with a synthesis transform ``g_s``
    and these extra pieces: its synthesis *stages* (for ``first:K`` finetuning), freezing for
    decoder finetuning, the tensors its bitstreams depend on (for the fingerprint), the exact
    decoder input ``quantized_latent`` and the differentiable ``synthesize``.
    """

    #: Registry name of the architecture (see :mod:`icmbridge.codec.archs`).
    arch: str = "icm"
    #: Name of the synthesis transform: the only part a finetuned decoder may change.
    synthesis_name = "g_s"
    #: Groups (top-level modules) the fingerprint hashes first, in this order; the remaining ones
    #: follow sorted by name. Only :class:`ICMCodec` sets it, to keep its published fingerprints.
    fingerprint_order: tuple[str, ...] = ()
    #: Images are padded to a multiple of this; the synthesis upsamples ŷ by ``upsampling``.
    downsampling = 64
    upsampling = 16
    #: The bitstream holds a hyper-latent string ẑ before the latent string ŷ.
    hyperprior = True
    #: CPU threads of the synthesis (and, for other architectures, the float64 entropy-parameter
    #: path) when decoding: a fixed number makes decoded pixels identical in every setting.
    decode_threads: int | None = 2
    #: Halos (in latents) of exact tiled transforms (see :mod:`.tiling`); None codes the whole
    #: image at once.
    analysis_halo: int | None = None
    synthesis_halo: int | None = None
    #: The hyper-synthesis runs over fixed tiles of this many ẑ cells (1024 pixels) with a halo of
    #: ``hyper_halo`` cells where that is known (None: whole ẑ at once). Fixed, never the user's
    #: tile setting: encoder and decoder compute alike, and images up to 1024 pixels a side see
    #: one tile, i.e. the whole-image computation.
    hyper_tile = 16
    hyper_halo: int | None = None

    config: CodecConfig
    _frozen_prefixes: tuple[str, ...]

    # ------------------------------------------------------------------ transforms for coding
    def _tile(self, tile: int | None, padded_hw: tuple[int, int]) -> int:
        """Tile side in latents for a setting (see :mod:`.tiling`); 0 without known halos."""
        if self.analysis_halo is None or self.synthesis_halo is None:
            return 0
        return resolve_tile(tile, padded_hw, self.upsampling)

    def _analysis(self, x: Tensor, tile: int | None = None) -> Tensor:
        """y = g_a(pad(x)) for a float or uint8 image, over tiles where the halos are known."""
        h, w = x.shape[-2:]
        d, s = self.downsampling, self.upsampling
        grid = (-(-h // d) * d // s, -(-w // d) * d // s)
        tiles = self._tile(tile, (grid[0] * s, grid[1] * s))
        device = next(self.g_a.parameters()).device  # type: ignore[attr-defined]
        halo = self.analysis_halo or 0
        return tiled_analysis(self.g_a, x, grid, self.config.M, s, tiles, halo, device)  # type: ignore[attr-defined]

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
        device = next(self.g_s.parameters()).device  # type: ignore[attr-defined]
        s = self.upsampling
        images = []
        for i in range(len(strings[0])):
            y_hat = self.latent_from_strings([[part[i]] for part in strings], tuple(shape))
            hw = out_hw or (y_hat.shape[-2] * s, y_hat.shape[-1] * s)
            tiles = self._tile(tile, (y_hat.shape[-2] * s, y_hat.shape[-1] * s))
            halo = self.synthesis_halo or 0
            # oneDNN's transposed convolutions sum in a thread-count dependent order; one image
            # (and one tile) at a time on a fixed number of threads gives the same pixels in
            # every setting.
            fixed = device.type == "cpu" and self.decode_threads is not None
            with fixed_threads(self.decode_threads) if fixed else contextlib.nullcontext():  # type: ignore[arg-type]
                images.append(
                    tiled_synthesis(self.g_s, y_hat.to(device), hw, s, tiles, halo, dtype)  # type: ignore[attr-defined]
                )
        return {"x_hat": images[0] if len(images) == 1 else torch.cat(images)}

    # ------------------------------------------------------------------ structure
    def synthesis_layers(self) -> list[list[str]]:
        """Synthesis stages from the latent outwards, each as the ``g_s`` child names it groups.

        A stage is one upsampling step (a strided transposed convolution, a sub-pixel
        convolution, a residual upsampling block, ...) and every module after it that runs at
        its output resolution; modules before the first upsampling (at the latent's resolution:
        residual or attention blocks) belong to the first stage. ``first:K`` selects K stages.
        """
        layers: list[list[str]] = []
        pending: list[str] = []
        g_s = getattr(self, self.synthesis_name)
        for name, module in g_s.named_children():
            full = f"{self.synthesis_name}.{name}"
            if upsamples(module):
                layers.append([*pending, full])
                pending = []
            elif layers:
                layers[-1].append(full)
            else:
                pending.append(full)
        if pending:
            layers.append(pending)
        return layers

    def fingerprint_tensors(self) -> list[tuple[str, Tensor]]:
        """Every parameter and buffer outside the synthesis transform, in fingerprint order.

        Found by walking the state dict, so a codec with more entropy-model parts (a context
        model, entropy parameters) has them covered without a list kept by hand.
        """
        state = self.state_dict()  # type: ignore[attr-defined]
        groups: dict[str, list[str]] = {}
        for key in state:
            group = key.split(".", 1)[0]
            if group != self.synthesis_name:
                groups.setdefault(group, []).append(key)
        order = [g for g in self.fingerprint_order if g in groups]
        order += sorted(g for g in groups if g not in order)
        return [(key, state[key]) for g in order for key in sorted(groups[g])]

    def fingerprint_key(self) -> tuple:
        """A cheap key that changes whenever a fingerprinted tensor does (by storage or in place).

        Walking the state dict costs more than coding a small image's hyper-latent, so the walk
        is done once and remembered as (module, slot, name) references; the key re-reads those
        slots (a reassigned parameter or buffer shows as a new storage) and is rebuilt from a
        new walk when a top-level part of the codec is replaced.
        """

        def walk() -> list[tuple[str, dict, str]]:
            refs = []
            for key, _ in self.fingerprint_tensors():
                path, _, local = key.rpartition(".")
                owner = self.get_submodule(path) if path else self  # type: ignore[attr-defined]
                slot = owner._parameters if local in owner._parameters else owner._buffers
                refs.append((key, slot, local))
            return refs

        return tuple(
            (key, (t := slot[local]).data_ptr(), t._version, t.numel())
            for key, slot, local in self._per_structure("fingerprint_refs", walk)
        )

    def _per_structure(self, name: str, build: Callable[[], Any]) -> Any:
        """``build()``, remembered until a top-level submodule of the codec is replaced."""
        top = tuple(self._modules.values())  # type: ignore[attr-defined]
        cache = self.__dict__.setdefault("_structure_cache", {})
        hit = cache.get(name)
        stale = hit is None or len(hit[0]) != len(top)
        if stale or any(a is not b for a, b in zip(hit[0], top, strict=True)):
            cache[name] = hit = (top, build())
        return hit[1]

    def sizes(self) -> dict[str, int]:
        """Constructor arguments that rebuild this architecture (N, M), saved in config.json."""
        return self.config.to_dict()

    def fingerprint_preamble(self) -> bytes:
        """What the fingerprint hashes before the tensors: the architecture and its sizes."""
        items = self.config.to_dict()
        if self.arch != "icm":
            items = {"arch": self.arch, **items}
        return repr(sorted(items.items())).encode()

    # ------------------------------------------------------------------ freezing
    def freeze_for_finetune(self, trainable_prefixes: list[str]) -> list[nn.Parameter]:
        """Freeze everything but the parameters under ``trainable_prefixes`` and return those.

        Frozen modules stay in eval mode even after ``.train()``, so no batch statistics or
        other state of the encoder and entropy models can drift during finetuning.
        """
        prefixes = tuple(trainable_prefixes)
        trainable: list[nn.Parameter] = []
        for name, p in self.named_parameters():  # type: ignore[attr-defined]
            keep = any(name == q or name.startswith(q + ".") for q in prefixes)
            p.requires_grad_(keep)
            if keep:
                trainable.append(p)
        if not trainable:
            raise InputError(f"no codec parameter matches {list(trainable_prefixes)}")
        self._frozen_prefixes = prefixes
        self.train(self.training)  # type: ignore[attr-defined]
        return trainable

    def train(self, mode: bool = True):  # type: ignore[no-untyped-def]
        super().train(mode)  # type: ignore[misc]
        if getattr(self, "_frozen_prefixes", ()):
            for name, module in self.named_modules():  # type: ignore[attr-defined]
                if name and not any(
                    name == q or name.startswith(q + ".") or q.startswith(name + ".")
                    for q in self._frozen_prefixes
                ):
                    module.eval()
        return self

    # ------------------------------------------------------------------ decoder finetuning path
    def synthesize(self, y_hat: Tensor, out_hw: tuple[int, int]) -> Tensor:
        """x̂ = g_s(ŷ) cropped to ``out_hw`` (differentiable; not clamped)."""
        g_s = getattr(self, self.synthesis_name)
        return g_s(y_hat)[..., : out_hw[0], : out_hw[1]]

    # ------------------------------------------------------------------ coding helpers
    def ready_to_code(self) -> bool:
        """Whether every entropy model has its CDF tables (built by :meth:`update`)."""
        models = self._per_structure(
            "entropy_models",
            lambda: [m for m in self.modules() if isinstance(m, EntropyModel)],  # type: ignore[attr-defined]
        )
        return all(m._quantized_cdf.numel() > 0 for m in models)

    def update(self, scale_table: Tensor | None = None, force: bool = False) -> bool:
        """Build the CDF tables (CompressAI's ``update``) with this codec's scale table."""
        if scale_table is None:
            scale_table = globals()["scale_table"]()
        return super().update(scale_table=scale_table, force=force)  # type: ignore[misc]

    def _ensure_ready(self) -> None:
        if not self.ready_to_code():
            self.update(force=True)

    def float64_copy(self, name: str) -> nn.Module:
        """A float64 CPU copy of the submodule ``name``, rebuilt only when its tensors change.

        Whatever selects a CDF table or shifts a decoded latent runs on such copies: float64
        makes a table index or a mean identical on every decoder.
        """
        module = self.get_submodule(name)  # type: ignore[attr-defined]
        tensors = [*module.parameters(), *module.buffers()]
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        cache = self.__dict__.setdefault("_float64", {})
        cached = cache.get(name)
        if cached is None or cached[0] != key:
            copied = copy.deepcopy(module).to(device="cpu", dtype=torch.float64).eval()
            for p in copied.parameters():
                p.requires_grad_(False)
            cache[name] = cached = (key, copied)
        return cached[1]

    def hyper_synthesis(
        self,
        z_hat: Tensor,
        channels: int,
        dtype: torch.dtype,
        finish: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor:
        """``finish(h_s(ẑ))`` in float64 on the CPU, over fixed tiles of ẑ (see ``hyper_tile``).

        Whatever selects a CDF table or shifts a latent comes from here. ``finish`` maps a tile's
        float64 parameters to what coding keeps (``channels`` maps of ``dtype``), so a big
        image never holds float64 parameters, or their im2col buffers, whole.
        """
        stride = self.downsampling // self.upsampling
        zh, zw = z_hat.shape[-2:]
        tile = self.hyper_tile if self.hyper_halo is not None else 0
        with fixed_threads(self.decode_threads or 1):
            return tiled_upsampling(
                self.float64_copy("h_s"),
                z_hat.to(device="cpu", dtype=torch.float64),
                (zh * stride, zw * stride),
                channels,
                stride,
                tile,
                self.hyper_halo or 0,
                dtype,
                finish=finish,
                channels_last=False,  # the float64 path stays what every decoder computes
            )

    def latent_shape(self, height: int, width: int) -> tuple[int, int]:
        """Spatial shape of the first string's latent (ẑ, or ŷ without hyper-prior)."""
        d = self.downsampling
        return (-(-height // d), -(-width // d))

    def latent_from_strings(self, strings: list[list[bytes]], shape: tuple[int, int]) -> Tensor:
        """ŷ decoded from the strings of one image's :meth:`compress` (the decoder's input)."""
        raise NotImplementedError

    def container_strings(self, strings: list[list[bytes]]) -> tuple[bytes, bytes]:
        """(ẑ string, ŷ string) of a one-image :meth:`compress` result (ẑ empty if none)."""
        if self.hyperprior:
            return strings[1][0], strings[0][0]
        return b"", strings[0][0]

    def strings_from_container(
        self, z_string: bytes, y_string: bytes, shape: tuple[int, int]
    ) -> list[list[bytes]]:
        """The ``strings`` argument of :meth:`decompress`, strings bounded for CompressAI's own
        decoders (which do not check the end of their input)."""
        eb = self.entropy_bottleneck  # type: ignore[attr-defined]
        symbols = eb.channels * shape[0] * shape[1]
        if self.hyperprior:
            return [[y_string], [bounded_string(z_string, symbols)]]
        return [[bounded_string(y_string, symbols)]]


def upsamples(module: nn.Module) -> bool:
    """Whether a module changes resolution upwards (transposed conv, sub-pixel, interpolation)."""
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d) and max(m.stride) > 1:
            return True
        if isinstance(m, (nn.PixelShuffle, nn.Upsample)):
            return True
    return False


class ICMCodec(CodecContract, CompressionModel):
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
    hyper_halo = 2  # h_s: 2 × k5 s2 and a k3 conv, as g_s's halo
    #: CPU threads of the synthesis transform when decoding bitstreams: a fixed number makes the
    #: decoded pixels identical whatever the caller's thread setting or batch (None: don't fix).
    decode_threads: int | None = 2
    #: The published fingerprints (e.g. ``weights/base``) hash the groups in this order.
    fingerprint_order = ("g_a", "h_a", "h_s", "entropy_bottleneck", "gaussian_conditional")

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

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, Tensor]) -> ICMCodec:
        """A codec with the sizes read from the tensor shapes, holding ``state_dict``."""
        config = CodecConfig(
            N=state_dict["g_a.0.weight"].size(0), M=state_dict["g_a.6.weight"].size(0)
        )
        codec = cls(config)
        codec.load_state_dict(state_dict)
        return codec

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

    # ------------------------------------------------------------------ coding path
    def _coding_indexes(self, z_hat: Tensor) -> Tensor:
        """CDF table indexes of ŷ from ẑ, via σ̂ = h_s(ẑ) (:meth:`hyper_synthesis`, float64)."""
        gc = self.gaussian_conditional
        return self.hyper_synthesis(
            z_hat, self.config.M, torch.int32, lambda p: table_indexes(gc, p)
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
        y = self._analysis(x, tile)
        z = self.h_a(torch.abs(y))
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        indexes = self._coding_indexes(z_hat)
        del z_hat
        y_strings = encode_latent(self.gaussian_conditional, y.cpu(), indexes)
        return {"strings": [y_strings, z_strings], "shape": tuple(z.size()[-2:])}

    @torch.no_grad()
    def latent_from_strings(self, strings: list[list[bytes]], shape: tuple[int, int]) -> Tensor:
        """ŷ (float32, CPU) decoded from the strings of :meth:`compress`: the decoder's input."""
        self._ensure_ready()
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        indexes = self._coding_indexes(z_hat)
        return decode_latent(self.gaussian_conditional, strings[0], indexes)


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
    if not x.numel():
        return
    lo, hi = (float(v) for v in torch.aminmax(x))  # one pass; NaN propagates, ±inf shows
    if not (lo >= 0 and hi <= 1):
        raise InputError(
            f"image values must lie in [0, 1] (got min {lo:.3g}, max {hi:.3g}); "
            "divide 8-bit images by 255"
        )
