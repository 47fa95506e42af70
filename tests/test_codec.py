"""The codec model: contract, padding, input checks, loading, freezing."""

from __future__ import annotations

import pytest
import torch

from icmbridge.codec import bitstream
from icmbridge.codec.model import CONFIGS, ICMCodec
from icmbridge.codec.store import load_codec, save_codec
from icmbridge.errors import InputError


def psnr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / torch.mean((x - y) ** 2)))


def test_forward_contract_and_any_size(tiny_codec: ICMCodec) -> None:
    x = torch.rand(2, 3, 37, 70)
    out = tiny_codec(x)
    assert out["x_hat"].shape == x.shape
    assert set(out["likelihoods"]) == {"y", "z"}
    assert out["likelihoods"]["y"].shape[1] == tiny_codec.config.M


@pytest.mark.parametrize("hw", [(1, 1), (1, 17), (17, 1), (64, 64), (65, 129)])
def test_compress_decompress_sizes(tiny_codec: ICMCodec, hw: tuple[int, int]) -> None:
    x = torch.rand(1, 3, *hw)
    data = bitstream.encode(tiny_codec, x)
    y = bitstream.decode(tiny_codec, data)
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1


def test_coding_matches_forward_in_eval(tiny_codec: ICMCodec, photo: torch.Tensor) -> None:
    """The real decoder output equals the eval-mode forward pass (same quantised latents)."""
    with torch.no_grad():
        ref = tiny_codec(photo)["x_hat"].clamp(0, 1)
    dec = bitstream.decode(tiny_codec, bitstream.encode(tiny_codec, photo))
    assert torch.allclose(dec, ref, atol=1e-4)


@pytest.mark.parametrize(
    "bad",
    [
        torch.rand(1, 3, 8, 8) * 2,
        -torch.rand(1, 3, 8, 8),
        torch.full((1, 3, 8, 8), float("nan")),
        torch.rand(1, 4, 8, 8),
        torch.rand(3, 8, 8),
        torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.int64),
    ],
)
def test_input_checked(tiny_codec: ICMCodec, bad: torch.Tensor) -> None:
    with pytest.raises(InputError):
        tiny_codec.compress(bad)


def test_uint8_coded_but_not_trained_on(tiny_codec: ICMCodec) -> None:
    """compress reads uint8 as value / 255 (big images stay 8-bit); training wants floats."""
    x8 = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    assert tiny_codec.compress(x8)["strings"] == tiny_codec.compress(x8.float() / 255)["strings"]
    with pytest.raises(InputError, match="float"):
        tiny_codec(x8)


def test_fresh_model_codes_without_update() -> None:
    codec = ICMCodec(CONFIGS["tiny"]).eval()
    assert not codec.ready_to_code()
    x = torch.rand(1, 3, 32, 32)
    assert bitstream.decode(codec, bitstream.encode(codec, x)).shape == x.shape


def test_save_load_roundtrip_keeps_fingerprint_and_output(tiny_codec, tmp_path, photo) -> None:
    save_codec(tiny_codec, tmp_path / "copy")
    again = load_codec(tmp_path / "copy")
    assert again.ready_to_code() and not again.training
    assert bitstream.fingerprint(again) == bitstream.fingerprint(tiny_codec)
    data = bitstream.encode(tiny_codec, photo)
    assert bitstream.encode(again, photo) == data
    assert torch.equal(bitstream.decode(again, data), bitstream.decode(tiny_codec, data))
    # the .safetensors path itself and a run folder (checkpoints/last) load too
    assert load_codec(tmp_path / "copy" / "model.safetensors").config == tiny_codec.config
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    save_codec(tiny_codec, tmp_path / "run" / "checkpoints" / "last")
    assert load_codec(tmp_path / "run").config == tiny_codec.config


def test_load_errors_are_clear(tmp_path, tiny_model_dir) -> None:
    with pytest.raises(InputError, match="no model"):
        load_codec("no-such-model")
    # weights that do not fit the sizes in the config
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes((tiny_model_dir / "model.safetensors").read_bytes())
    cfg = (tiny_model_dir / "config.json").read_text().replace('"N": 16', '"N": 32')
    (bad / "config.json").write_text(cfg)
    with pytest.raises(InputError, match="does not fit"):
        load_codec(bad)
    (bad / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot read"):
        load_codec(bad)


def test_freeze_for_finetune_returns_exactly_selected(tiny_codec: ICMCodec) -> None:
    layers = tiny_codec.synthesis_layers()
    assert len(layers) == 4 and layers[0] == ["g_s.0", "g_s.1"] and layers[-1] == ["g_s.6"]
    prefixes = layers[0] + layers[1]
    params = tiny_codec.freeze_for_finetune(prefixes)
    names = {n for n, p in tiny_codec.named_parameters() if p.requires_grad}
    assert {id(p) for p in params} == {
        id(p)
        for n, p in tiny_codec.named_parameters()
        if n.split(".")[0:2] in [["g_s", "0"], ["g_s", "1"], ["g_s", "2"], ["g_s", "3"]]
    }
    assert all(n.startswith(("g_s.0.", "g_s.1.", "g_s.2.", "g_s.3.")) for n in names)
    tiny_codec.train()
    assert not tiny_codec.g_a.training and not tiny_codec.entropy_bottleneck.training
    assert not tiny_codec.g_s[4].training and tiny_codec.g_s[0].training


def test_base_model_roundtrip_quality(base_codec: ICMCodec, astronaut) -> None:
    """The shipped base codec reconstructs a real photo at a low rate."""
    from icmbridge.imageio import array_to_tensor

    x = array_to_tensor(astronaut[:256, :256])
    data = bitstream.encode(base_codec, x)
    y = bitstream.decode(base_codec, data)
    bpp = 8 * len(data) / (256 * 256)
    assert bpp < 0.5
    assert psnr_db(x, y) > 20
