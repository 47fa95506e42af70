"""Every CompressAI architecture (and a user's subclass of one) under icmbridge's codec contract.

The registry is keyed by CompressAI's own model names, plus ``icm`` (our :class:`ICMCodec`)::

    bmshj2018-factorized   FactorizedPrior                      ŷ = round(y − median) + median
    bmshj2018-hyperprior   ScaleHyperprior                      ŷ = round(y)
    mbt2018-mean           MeanScaleHyperprior                  ŷ = round(y − μ) + μ
    mbt2018                JointAutoregressiveHierarchicalPriors ŷ from the serial decode
    cheng2020-anchor       Cheng2020Anchor                      ŷ from the serial decode
    cheng2020-attn         Cheng2020Attention                   ŷ from the serial decode

Each entry is CompressAI's class with a *recipe* mixin in front (:class:`FactorizedRecipe`,
:class:`ScaleRecipe`, :class:`MeanScaleRecipe`, :class:`AutoregressiveRecipe`). The mixin keeps
CompressAI's transforms, entropy models, ``forward``, ``from_state_dict`` and state-dict loading
(legacy key names included) and replaces only the coding path, so that it is bit-exact on every
decoder:

* whatever selects a CDF table or shifts a latent (the hyper-synthesis, the context model and the
  entropy-parameter network) runs in float64 on the CPU, on a fixed number of threads, one image
  at a time — the autoregressive loop is CompressAI's own ``_compress_ar``/``_decompress_ar``
  run on float64 copies of those modules;
* the synthesis runs one image at a time on ``decode_threads`` threads;
* :meth:`quantized_latent` returns exactly the ŷ a decoder reconstructs from the bitstream, the
  decoder input that finetuning must train on.

Images of any size are padded to a multiple of ``downsampling`` by edge replication and cropped
back. Every registered architecture runs ``g_a``/``g_s`` over tiles with exact halos and its
hyper-synthesis over fixed ẑ tiles in float64 (bounded memory, see :mod:`.tiling`): the halos
are the transforms' receptive fields (2 latents for the bmshj2018/mbt2018 layers; cheng2020's
residual and attention blocks are summed on each class), checked by tests against the whole-image
transforms. A user's subclass codes the whole image at once (its halos are unknown).
"""

from __future__ import annotations

import importlib
import types
from typing import Any

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import MaskedConv2d
from compressai.models import (
    Cheng2020Anchor,
    Cheng2020Attention,
    FactorizedPrior,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)
from compressai.models.base import CompressionModel
from torch import Tensor

from icmbridge.codec.model import (
    CONFIGS,
    CodecConfig,
    CodecContract,
    ICMCodec,
    SeededEntropyBottleneck,
    SeededGaussianConditional,
    check_image_tensor,
    fixed_threads,
    pad_to_multiple,
)
from icmbridge.codec.rans import bounded_string, decode_latent, encode_latent, table_indexes
from icmbridge.errors import InputError


class CompressAIRecipe(CodecContract):
    """The contract for a CompressAI model class; a recipe subclass codes one prior family."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Training noise drawn per sample from its own seed (see ICMCodec); same classes, so
        # state dicts and CompressAI's loading are unchanged.
        for module in self.modules():
            if type(module) is EntropyBottleneck:
                module.__class__ = SeededEntropyBottleneck
            elif type(module) is GaussianConditional:
                module.__class__ = SeededGaussianConditional
        self._frozen_prefixes: tuple[str, ...] = ()

    @property
    def config(self) -> CodecConfig:  # type: ignore[override]
        return CodecConfig(N=int(self.N), M=int(self.M))  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ training path
    def forward(self, x: Tensor, sample_seeds: Tensor | None = None) -> dict[str, Any]:
        """CompressAI's ``forward`` on the padded image, x̂ cropped back (see ICMCodec)."""
        check_image_tensor(x)
        for module in self.modules():
            if isinstance(module, SeededEntropyBottleneck):
                module.sample_seeds = sample_seeds
            elif isinstance(module, SeededGaussianConditional):
                module.sample_seeds = None if sample_seeds is None else sample_seeds + (1 << 40)
        h, w = x.shape[-2:]
        out = super().forward(pad_to_multiple(x, self.downsampling))  # type: ignore[misc]
        out["x_hat"] = out["x_hat"][..., :h, :w]
        return out

    # ------------------------------------------------------------------ coding path
    def _hyper_input(self, y: Tensor) -> Tensor:
        return y

    def _encode_latent(self, y: Tensor) -> tuple[list[list[bytes]], Tensor]:
        """(strings, ŷ) of one image's latent ``y`` (1, M, h, w)."""
        raise NotImplementedError

    def latent_from_strings(self, strings: list[list[bytes]], shape: tuple[int, int]) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def quantized_latent(self, x: Tensor) -> Tensor:
        """ŷ exactly as a decoder rebuilds it from the bitstream of ``x``, element for element."""
        check_image_tensor(x)
        self._ensure_ready()
        y = self._analysis(x)
        out = [self._encode_latent(y[i : i + 1])[1] for i in range(len(y))]
        return torch.cat(out).to(y.device)

    @torch.no_grad()
    def compress(self, x: Tensor, tile: int | None = None) -> dict[str, Any]:
        """Code a batch ``(B, 3, H, W)`` (float in [0, 1] or uint8); ``tile`` as in ICMCodec
        where the architecture's halos are known (else the whole image at once)."""
        check_image_tensor(x, allow_uint8=True)
        self._ensure_ready()
        y = self._analysis(x, tile)
        per_image = [self._encode_latent(y[i : i + 1])[0] for i in range(len(y))]
        strings = [[s[k][0] for s in per_image] for k in range(len(per_image[0]))]
        shape = self.latent_shape(*x.shape[-2:])
        return {"strings": strings, "shape": shape}


class FactorizedRecipe(CompressAIRecipe):
    """bmshj2018-factorized: ŷ coded by the entropy bottleneck, ŷ = round(y − m) + m."""

    downsampling = 16
    hyperprior = False

    def _encode_latent(self, y: Tensor) -> tuple[list[list[bytes]], Tensor]:
        eb = self.entropy_bottleneck  # type: ignore[attr-defined]
        y_hat = eb.quantize(y, "dequantize", eb._get_medians().detach())
        return [eb.compress(y)], y_hat

    def latent_from_strings(self, strings: list[list[bytes]], shape: tuple[int, int]) -> Tensor:
        return self.entropy_bottleneck.decompress(strings[0], shape)  # type: ignore


class ScaleRecipe(CompressAIRecipe):
    """bmshj2018-hyperprior: zero-mean Gaussians of scales σ̂ = h_s(ẑ), ŷ = round(y).

    σ̂ (and μ̂ below) come from :meth:`hyper_synthesis` over fixed tiles of ẑ, so a big image
    never holds the float64 parameters whole; the latent is shifted and coded in place.
    """

    hyper_halo = 2  # h_s: 2 × (deconv k5 s2) and a k3 conv, as ICMCodec's

    def _hyper_input(self, y: Tensor) -> Tensor:
        return torch.abs(y)

    def _coding_params(self, z_hat: Tensor) -> tuple[Tensor | None, Tensor]:
        """(μ̂ float32 or None, CDF table indexes int32) of ŷ from ẑ."""
        m = int(self.M)  # type: ignore[attr-defined]
        gc = self.gaussian_conditional  # type: ignore[attr-defined]
        return None, self.hyper_synthesis(z_hat, m, torch.int32, lambda p: table_indexes(gc, p))

    def _z_hat(self, z_strings: list[bytes], shape: tuple[int, int]) -> Tensor:
        return self.entropy_bottleneck.decompress(z_strings, shape)  # type: ignore[attr-defined]

    def _encode_latent(self, y: Tensor) -> tuple[list[list[bytes]], Tensor]:
        """(strings, ŷ) of one image's latent; ``y`` is consumed (shifted and rounded in place:
        a 50 MP latent is 75 MB that need not exist twice)."""
        z = self.h_a(self._hyper_input(y))  # type: ignore[attr-defined]
        eb = self.entropy_bottleneck  # type: ignore[attr-defined]
        z_strings = eb.compress(z)
        # what the decoder's rANS decode of z_strings gives, without decoding: round(z − m) + m
        means, indexes = self._coding_params(eb.quantize(z, "dequantize", eb._get_medians()))
        del z
        shifted = y.cpu() if means is None else y.cpu().sub_(means)
        y_strings = encode_latent(self.gaussian_conditional, shifted, indexes)  # type: ignore
        del indexes
        y_hat = shifted.round_() if means is None else shifted.round_().add_(means)
        return [y_strings, z_strings], y_hat

    def latent_from_strings(self, strings: list[list[bytes]], shape: tuple[int, int]) -> Tensor:
        means, indexes = self._coding_params(self._z_hat(strings[1], shape))
        y_hat = decode_latent(self.gaussian_conditional, strings[0], indexes)  # type: ignore
        del indexes
        return y_hat if means is None else y_hat.add_(means)


class MeanScaleRecipe(ScaleRecipe):
    """mbt2018-mean: Gaussians of (σ̂, μ̂) = h_s(ẑ), ŷ = round(y − μ̂) + μ̂ (μ̂ float64 → float32)."""

    def _hyper_input(self, y: Tensor) -> Tensor:
        return y

    def _coding_params(self, z_hat: Tensor) -> tuple[Tensor | None, Tensor]:
        m = int(self.M)  # type: ignore[attr-defined]
        gc = self.gaussian_conditional  # type: ignore[attr-defined]

        def finish(params: Tensor) -> Tensor:  # indexes (small integers, exact) beside μ̂
            scales, means = params.chunk(2, 1)
            return torch.cat([table_indexes(gc, scales).float(), means.float()], 1)

        both = self.hyper_synthesis(z_hat, 2 * m, torch.float32, finish)
        return both[:, m:], both[:, :m].int()


class AutoregressiveRecipe(MeanScaleRecipe):
    """mbt2018, cheng2020: a masked 5×5 context model; ŷ comes from the serial decode.

    CompressAI's own serial loops run on a float64 copy of the context model, the entropy
    parameters and the Gaussian conditional, on one thread: the decoder's means and table
    indexes, hence ŷ and the next positions' contexts, are those the encoder computed.
    """

    def _hyper(self, y: Tensor) -> tuple[list[bytes], Tensor]:
        """ẑ's string and the float64 output of the hyper-synthesis from it (one image): the
        serial loops need them whole."""
        z = self.h_a(self._hyper_input(y))  # type: ignore[attr-defined]
        z_strings = self.entropy_bottleneck.compress(z)  # type: ignore[attr-defined]
        return z_strings, self._hyper_params(z_strings, tuple(z.shape[-2:]))

    def _hyper_params(self, z_strings: list[bytes], shape: tuple[int, int]) -> Tensor:
        """The float64 hyper-parameters of the whole latent, which the serial loops read, from
        :meth:`hyper_synthesis` (fixed ẑ tiles: no whole-image im2col buffers in float64)."""
        z_hat = self.entropy_bottleneck.decompress(z_strings, shape)  # type: ignore
        return self.hyper_synthesis(z_hat, 2 * int(self.M), torch.float64)  # type: ignore

    def _ar_modules(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(
            context_prediction=self.float64_copy("context_prediction"),
            entropy_parameters=self.float64_copy("entropy_parameters"),
            gaussian_conditional=self.float64_copy("gaussian_conditional"),
        )

    def _ar_geometry(self) -> tuple[int, int]:
        k = self.context_prediction.kernel_size[0]  # type: ignore[attr-defined]
        return k, (k - 1) // 2

    def _encode_latent(self, y: Tensor) -> tuple[list[list[bytes]], Tensor]:
        z_strings, params = self._hyper(y)
        k, p = self._ar_geometry()
        h, w = y.shape[-2:]
        y_hat = F.pad(y.to(device="cpu", dtype=torch.float64), (p, p, p, p))
        with fixed_threads(1):
            string = JointAutoregressiveHierarchicalPriors._compress_ar(
                self._ar_modules(), y_hat, params, h, w, k, p
            )
        return [[string], z_strings], y_hat[..., p : p + h, p : p + w].float()

    def latent_from_strings(self, strings: list[list[bytes]], shape: tuple[int, int]) -> Tensor:
        params = self._hyper_params(strings[1], shape)
        k, p = self._ar_geometry()
        h, w = params.shape[-2:]
        m = int(self.M)  # type: ignore[attr-defined]
        y_hat = torch.zeros((1, m, h + 2 * p, w + 2 * p), dtype=torch.float64)
        # CompressAI's decoder does not check the end of its input: bound the string.
        string = bounded_string(strings[0][0], m * h * w)
        with fixed_threads(1):
            JointAutoregressiveHierarchicalPriors._decompress_ar(
                self._ar_modules(), string, y_hat, params, h, w, k, p
            )
        return y_hat[..., p : p + h, p : p + w].float()


# ---------------------------------------------------------------------- the registered classes
class BalleTransforms:
    """Ballé et al.'s g_a and g_s (bmshj2018, mbt2018): ICMCodec's 4 × k5 s2 layers, so a tile
    needs ±2 latents of context in each (listed first: its halos win over the recipes' None)."""

    analysis_halo = synthesis_halo = 2


class Bmshj2018Factorized(BalleTransforms, FactorizedRecipe, FactorizedPrior):
    arch = "bmshj2018-factorized"


class Bmshj2018Hyperprior(BalleTransforms, ScaleRecipe, ScaleHyperprior):
    arch = "bmshj2018-hyperprior"


class Mbt2018Mean(BalleTransforms, MeanScaleRecipe, MeanScaleHyperprior):
    arch = "mbt2018-mean"


class Mbt2018(BalleTransforms, AutoregressiveRecipe, JointAutoregressiveHierarchicalPriors):
    arch = "mbt2018"
    hyper_halo = 2  # h_s: mean-scale's (2 × deconv k5 s2, a k3 conv)


class Cheng2020AnchorCodec(AutoregressiveRecipe, Cheng2020Anchor):
    arch = "cheng2020-anchor"
    # Receptive fields summed layer by layer (±1 per 3×3 conv, ±2 per residual block, at each
    # layer's resolution, in latents): g_a 3.6, g_s 6.5 (its sub-pixel upsampling adds ±1 on
    # both sides of each shuffle), h_s 3.3 (two sub-pixel stages).
    analysis_halo, synthesis_halo, hyper_halo = 4, 7, 4

    def sizes(self) -> dict[str, int]:
        return {"N": int(self.N)}  # M = N in cheng2020


class Cheng2020AttnCodec(AutoregressiveRecipe, Cheng2020Attention):
    arch = "cheng2020-attn"
    # anchor's, plus the "attention" blocks (local: 3 residual units of 1×1–3×3–1×1, ±3 at their
    # resolution): one at 1/4 and one at the latent's resolution in g_a and in g_s
    analysis_halo, synthesis_halo, hyper_halo = 8, 11, 4

    def sizes(self) -> dict[str, int]:
        return {"N": int(self.N)}


#: Architecture name → codec class. ``icm`` is ours; the others are CompressAI's names.
ARCHITECTURES: dict[str, type] = {
    "icm": ICMCodec,
    "bmshj2018-factorized": Bmshj2018Factorized,
    "bmshj2018-hyperprior": Bmshj2018Hyperprior,
    "mbt2018-mean": Mbt2018Mean,
    "mbt2018": Mbt2018,
    "cheng2020-anchor": Cheng2020AnchorCodec,
    "cheng2020-attn": Cheng2020AttnCodec,
}

#: CompressAI base class → the recipe that codes it, most specific first.
RECIPES: list[tuple[type, type]] = [
    (JointAutoregressiveHierarchicalPriors, AutoregressiveRecipe),
    (MeanScaleHyperprior, MeanScaleRecipe),
    (ScaleHyperprior, ScaleRecipe),
    (FactorizedPrior, FactorizedRecipe),
]

_USER_CLASSES: dict[str, type] = {}


def is_user_arch(arch: str) -> bool:
    return ":" in arch


def codec_class(arch: str) -> type:
    """The codec class of an architecture name or a ``module.path:ClassName``."""
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    if not is_user_arch(arch):
        raise InputError(
            f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}, "
            "or module.path:ClassName for your own CompressionModel subclass"
        )
    if arch in _USER_CLASSES:
        return _USER_CLASSES[arch]
    module_name, _, class_name = arch.partition(":")
    try:
        user_cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"--arch {arch}: cannot import it ({exc})") from None
    if not isinstance(user_cls, type) or not issubclass(user_cls, CompressionModel):
        raise InputError(f"--arch {arch}: not a subclass of compressai's CompressionModel")
    recipe = next((r for base, r in RECIPES if issubclass(user_cls, base)), None)
    if recipe is None:
        known = ", ".join(base.__name__ for base, _ in RECIPES)
        raise InputError(
            f"--arch {arch}: icmbridge codes subclasses of {known} (their coding recipes are "
            f"known exactly); {class_name} derives from none of them"
        )
    cls = type(class_name, (recipe, user_cls), {"arch": arch, "__module__": user_cls.__module__})
    _USER_CLASSES[arch] = cls
    return cls


def build_arch(arch: str, sizes: dict[str, int] | str | None = None) -> CodecContract:
    """A randomly initialised codec of ``arch`` with ``sizes`` (N, M) or a named size config."""
    cls = codec_class(arch)
    if isinstance(sizes, str):
        if sizes not in CONFIGS:
            raise InputError(f"unknown codec configuration {sizes!r}; known: {sorted(CONFIGS)}")
        sizes = CONFIGS[sizes].to_dict()
        if arch.startswith("cheng2020"):
            sizes = {"N": sizes["N"]}
    if cls is ICMCodec:
        return ICMCodec(CodecConfig(**(sizes or {})))
    try:
        return cls(**(sizes or {}))
    except TypeError as exc:
        raise InputError(f"{arch}: bad sizes {sizes} ({exc})") from None


def canonicalize(codec: CodecContract) -> None:
    """Zero the masked-out context-model weights (CompressAI's forward does it on the fly)."""
    with torch.no_grad():
        for module in codec.modules():  # type: ignore[attr-defined]
            if isinstance(module, MaskedConv2d):
                module.weight.mul_(module.mask)


def compressai_peer(codec: CodecContract) -> CompressionModel:
    """CompressAI's own class for ``codec``'s architecture, holding the same weights and tables.

    The class is the CompressAI model the codec's class derives from (ICMCodec: its module names
    and layers are ``ScaleHyperprior``'s), so the peer codes with CompressAI's own ``compress`` /
    ``decompress`` what ours codes through the container: the speed and memory benchmarks'
    reference, built from whatever model they load.
    """
    if isinstance(codec, ICMCodec):
        base: type = ScaleHyperprior
    else:
        base = next(
            (c for c in type(codec).__mro__ if c.__module__.startswith("compressai.models")),
            None,
        )
        if base is None:
            raise InputError(f"{codec.arch}: no CompressAI class to compare with")
    peer = base(**codec.sizes())
    peer.load_state_dict(codec.state_dict())
    return peer.eval()
