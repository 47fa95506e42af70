"""Human decoders whose architecture differs from the base's: same bytes, same fingerprint,
exact start from the base, saved and loaded alike, tiled like the base, trained on cached ŷ."""

from __future__ import annotations

import json

import pytest
import torch
from quick import FINETUNE
from safetensors.torch import load_file

from icmbridge.codec import bitstream
from icmbridge.codec.decoders import (
    DecoderSpec,
    decoder_macs_per_pixel,
    decoder_spec,
    install_decoder,
)
from icmbridge.codec.store import available_models, load_codec, save_codec
from icmbridge.commands import main
from icmbridge.errors import InputError
from icmbridge.imageio import array_to_tensor
from icmbridge.train.finetune import (
    PAPER_RECIPE,
    PRESETS,
    FinetuneConfig,
    cache_margin,
    decode_cores,
    msssim_loss,
)
from icmbridge.train.latent_cache import LatentCache
from icmbridge.train.runtime import Checkpoints

REFINE = {"arch": "refine", "channels": 8, "blocks": 1}
LATENT = {"arch": "latent", "channels": 8, "blocks": 1}


def _perturb(codec, seed: int = 0) -> None:
    """Random weights in the refinements (their tails start at zero: the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in ("refine", "latent"):
            if name in codec.g_s._modules:
                for p in codec.g_s._modules[name].parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.fixture(params=[REFINE, LATENT], ids=["refine", "latent"])
def base_and_refined(tiny_model_dir, request):
    base = load_codec(tiny_model_dir)
    return base, install_decoder(load_codec(tiny_model_dir), request.param)


def test_refine_starts_as_the_base_and_reads_the_same_bytes(base_and_refined, photo) -> None:
    base, human = base_and_refined
    data = bitstream.encode(base, photo)
    assert bitstream.encode(human, photo) == data  # the encoder is the base's
    assert bitstream.fingerprint(human) == bitstream.fingerprint(base)
    # zero-initialised tail: exactly the base's pixels at step 0
    assert torch.equal(bitstream.decode(human, data), bitstream.decode(base, data))
    _perturb(human)
    assert bitstream.fingerprint(human) == bitstream.fingerprint(base)  # g_s is not hashed
    assert not torch.equal(bitstream.decode(human, data), bitstream.decode(base, data))
    # the base's g_s keys are unchanged: the refinement is one more named child
    assert set(base.state_dict()) < set(human.state_dict())
    new = set(human.state_dict()) - set(base.state_dict())
    assert all(k.startswith(("g_s.refine.", "g_s.latent.")) for k in new)


def test_saved_refined_decoder_loads_and_decodes_identically(
    base_and_refined, tmp_path, photo
) -> None:
    base, human = base_and_refined
    _perturb(human, 1)
    save_codec(human, tmp_path / "h", meta={"note": "test"})
    cfg = json.loads((tmp_path / "h" / "config.json").read_text())
    assert cfg["decoder"] == decoder_spec(human).to_dict() and cfg["format_version"] == 3
    loaded = load_codec(tmp_path / "h")
    assert decoder_spec(loaded) == decoder_spec(human)
    assert loaded.synthesis_halo == human.synthesis_halo
    data = bitstream.encode(base, photo)
    assert torch.equal(bitstream.decode(loaded, data), bitstream.decode(human, data))
    # a base folder is still written without a decoder key, as before
    save_codec(base, tmp_path / "b")
    assert "decoder" not in json.loads((tmp_path / "b" / "config.json").read_text())


def test_refined_decoder_tiles_without_seams(base_and_refined) -> None:
    base, human = base_and_refined
    _perturb(human, 2)
    # refine: radius 4 px < one 16-px cell; latent: 4 latents (head, 2 in the block, tail)
    assert human.synthesis_halo == base.synthesis_halo + (
        1 if "refine" in human.g_s._modules else 4
    )
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 200, 270, generator=g).clamp(0, 1)
    x = torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # some structure
    data = bitstream.encode(base, x)
    whole = bitstream.decode(human, data, tile=0, dtype=torch.uint8)
    tiled = bitstream.decode(human, data, tile=64, dtype=torch.uint8)
    assert (whole.int() - tiled.int()).abs().max() <= 1


def test_decoder_spec_is_checked(tiny_model_dir) -> None:
    with pytest.raises(InputError, match="unknown decoder"):
        install_decoder(load_codec(tiny_model_dir), {"arch": "huge"})
    with pytest.raises(InputError, match="unknown keys"):
        DecoderSpec.from_dict({"arch": "refine", "depth": 3})
    codec = install_decoder(load_codec(tiny_model_dir), REFINE)
    with pytest.raises(InputError, match="already"):
        install_decoder(codec, REFINE)


def test_macs_per_pixel_counts_the_refinement(tiny_model_dir) -> None:
    base = load_codec(tiny_model_dir)
    human = install_decoder(load_codec(tiny_model_dir), REFINE)
    extra = 3 * 8 * 9 + 2 * 8 * 8 * 9 + 8 * 3 * 9  # head, one block, tail (per pixel)
    assert decoder_macs_per_pixel(human) - decoder_macs_per_pixel(base) == extra


@pytest.mark.parametrize("spec", [None, REFINE, LATENT], ids=["same", "refine", "latent"])
def test_cache_holds_the_decoders_input_and_aligned_crops_decode_exactly(
    tiny_model_dir, astronaut, spec
) -> None:
    codec = load_codec(tiny_model_dir)
    if spec:
        install_decoder(codec, spec)
    _perturb(codec, 4)
    x = torch.from_numpy(astronaut[:200, :264].copy()).permute(2, 0, 1)[None].float() / 255
    y = codec.quantized_latent(x)
    # what a decoder reconstructs from the bitstream is what the cache holds
    data = bitstream.encode(codec, x)
    from icmbridge.codec.bitstream import parse_header

    h = parse_header(data)
    start = h.payload_offset
    strings = codec.strings_from_container(
        data[start : start + h.z_length],
        data[start + h.z_length : start + h.z_length + h.y_length],
        codec.latent_shape(h.height, h.width),
    )
    assert torch.equal(codec.latent_from_strings(strings, codec.latent_shape(200, 264)), y)
    cache = LatentCache([(x[0] * 255).round().to(torch.uint8)], [y[0]])
    whole = codec.g_s(y)
    cfg = FinetuneConfig(out="", crop=64)
    for step in range(6):
        b = cache.batch(step, 3, 64, seed=0, margin=cache_margin(codec))
        got = decode_cores(codec.g_s, b.y_ext, b.offsets, cfg)
        for i in range(3):
            _, r, c = b.origins[i]
            assert torch.equal(b.x[i], x[0, :, r : r + 64, c : c + 64].mul(255).round().div(255))
            assert torch.allclose(got[i], whole[0, :, r : r + 64, c : c + 64], atol=1e-4)
            assert torch.equal(b.y_core[i], y[0, :, r // 16 : r // 16 + 4, c // 16 : c // 16 + 4])


def test_finetune_trains_a_refined_decoder_on_the_base_bytes(
    tmp_path, tiny_model_dir, photo
) -> None:
    run = tmp_path / "refine"
    quick = FINETUNE[2:-6] + ["--lr", "1e-3"]  # no preset (the default recipe), no D
    args = ["finetune", "--base", str(tiny_model_dir), "--out", str(run), "--steps", "3"]
    args += ["--checkpoint-every", "3", "--decoder", "refine", "--decoder-channels", "8"]
    assert main([*args, "--decoder-blocks", "1", "--lambda-msssim", "0.1", *quick]) == 0
    assert (run / "latents.pt").is_file()  # ŷ cached once
    last = Checkpoints(run).last
    base = load_codec(tiny_model_dir)
    human = load_codec(last)
    assert decoder_spec(human) == DecoderSpec(**REFINE)
    data = bitstream.encode(base, photo)
    assert bitstream.encode(human, photo) == data
    assert bitstream.fingerprint(human) == bitstream.fingerprint(base)
    before, after = (
        load_file(tiny_model_dir / "model.safetensors"),
        load_file(last / "model.safetensors"),
    )
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("g_s.") for k in changed)
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in after.items() if "tail" in k)
    # resume goes on from the checkpoint with its decoder
    assert main(["finetune", "--out", str(run), "--resume", "--steps", "4"]) == 0


def test_msssim_term_of_the_default_recipe_ranks_distortions(astronaut) -> None:
    """The default objective's 1 − MS-SSIM: 0 on the image itself, larger for more noise, a
    gradient to the decoder, and defined on crops too small for all five scales."""
    assert FinetuneConfig(out="").lambda_msssim > 0  # the default for people mixes it in
    x = array_to_tensor(astronaut[100:228, 150:278])  # 1×3×128², a training crop
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    assert msssim_loss(x, x).item() < 1e-6
    light, heavy = (msssim_loss((x + s * noise).clamp(0, 1), x).item() for s in (0.02, 0.1))
    assert 0 < light < heavy
    x_hat = (x + 0.05 * noise).clamp(0, 1).requires_grad_(True)
    msssim_loss(x_hat, x).backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    small = x[..., :40, :40]  # 2 of 5 scales fit
    assert 0 < msssim_loss((small + 0.05 * noise[..., :40, :40]).clamp(0, 1), small).item() < 1


def test_paper_preset_is_the_paper_recipe() -> None:
    for name in ("paper", "li"):
        preset = PRESETS[name]
        assert preset["decoder"] == "same" and preset["layers"] == "first:2"
        assert preset["cache"] == "off" and preset["beta1"] == 0.5
        assert preset["lambda_msssim"] == preset["lambda_freq"] == 0
    assert PRESETS["paper"]["lambda_a"] == PAPER_RECIPE["lambda_a"] == 1e-3
    assert PRESETS["paper"]["patch_size"] == 128


def test_paper_preset_with_64_patches_is_the_former_default() -> None:
    """The shipped paper decoders were made with the defaults before issue 27; the paper preset
    with 64² patches gives exactly those settings back."""
    from dataclasses import asdict

    from icmbridge.train.finetune import apply_preset

    given = {"patch_size": 64, "crop": 128, "batch_size": 8}
    values = apply_preset(asdict(FinetuneConfig(out="")), "paper", set(given))
    cfg = FinetuneConfig(**{**values, **given})
    former = {
        "decoder": "same", "layers": "first:2", "patch_size": 64, "patches": 3,
        "lambda_a": 1e-3, "lambda_mse": 1.0, "mse_on": "patches", "lr": 1e-4, "lr_d": 2e-4,
        "beta1": 0.5, "warmup": 20, "steps": 400, "batch_size": 8, "crop": 128,
        "lambda_msssim": 0.0, "lambda_freq": 0.0,
    }  # fmt: skip
    assert {k: getattr(cfg, k) for k in former} == former
    assert not cfg.uses_cache()


@pytest.mark.skipif(
    not {"base", "human"} <= set(available_models()), reason="shipped base/human missing"
)
def test_shipped_human_reads_the_base_bytes(photo) -> None:
    base, human = load_codec("base"), load_codec("human")
    x = photo[..., :128, :192]
    data = bitstream.encode(base, x)
    assert bitstream.encode(human, x) == data
    assert bitstream.fingerprint(human) == bitstream.fingerprint(base)
    assert human.meta["base_fingerprint"] == bitstream.fingerprint(base).hex()
    out = bitstream.decode(human, data)
    assert out.shape == x.shape and not torch.equal(out, bitstream.decode(base, data))
