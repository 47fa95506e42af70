"""Tiled transforms and chunked entropy coding: same bitstreams, same pixels (±1 grey), no seams."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from icmbridge.codec import bitstream, rans
from icmbridge.codec.model import CONFIGS, ICMCodec, pad_to_multiple
from icmbridge.codec.tiling import AUTO_TILE_ABOVE, DEFAULT_TILE, read_padded, resolve_tile
from icmbridge.errors import InputError
from icmbridge.imageio import array_to_tensor, tensor_to_array


@pytest.fixture(scope="module")
def codec() -> ICMCodec:
    """A shipped ICMCodec (real weights, real checkerboard) when present, else a random one."""
    from icmbridge.codec.store import available_models, load_codec

    for name in ("coco-base", "base"):
        if name in available_models() and isinstance(c := load_codec(name), ICMCodec):
            return c
    torch.manual_seed(5)
    c = ICMCodec(CONFIGS["cpu"]).eval()
    c.update(force=True)
    return c


@pytest.fixture(scope="module")
def scene(astronaut) -> torch.Tensor:
    """A 300×430 crop: not a multiple of 64, so tiles meet the encoder's padding."""
    return array_to_tensor(astronaut[100:400, 40:470])


def _latent(codec: ICMCodec, x: torch.Tensor, tile: int) -> torch.Tensor:
    from icmbridge.codec.tiling import tiled_analysis

    zh, zw = codec.latent_shape(*x.shape[-2:])
    grid = (zh * 4, zw * 4)
    with torch.no_grad():
        return tiled_analysis(
            codec.g_a, x, grid, codec.config.M, 16, resolve_tile(tile, (1, 1), 16), 2
        )


@pytest.mark.parametrize("tile", [64, 96, 128, 208])
def test_tiled_analysis_equals_whole_image(codec, scene, tile) -> None:
    with torch.no_grad():
        whole = codec.g_a(pad_to_multiple(scene, codec.downsampling))
    tiled = _latent(codec, scene, tile)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-3, rtol=1e-4), (tiled - whole).abs().max()


def test_tiled_coding_decodes_within_one_grey_level(codec, scene) -> None:
    data = bitstream.encode(codec, scene, tile=0)
    whole = tensor_to_array(bitstream.decode(codec, data, tile=0)).astype(int)
    for tile in (64, 112, 256):
        # The bitstream is the whole-image one (an index or symbol flip would show as a
        # different file); the pixels differ by float summation order only.
        assert bitstream.encode(codec, scene, tile=tile) == data
        tiled = tensor_to_array(bitstream.decode(codec, data, tile=tile)).astype(int)
        assert np.abs(tiled - whole).max() <= 1, tile


def test_no_seam_on_a_smooth_gradient(codec) -> None:
    """A gradient is where a seam would show: the step across each tile border must be the
    step the whole-image decode has there, to within a small fraction of a grey level."""
    h, w = 256, 448
    xs, ys = torch.linspace(0.15, 0.85, w), torch.linspace(0.2, 0.8, h)
    x = torch.stack(
        [xs.expand(h, w), xs.flip(0).expand(h, w), 0.5 * xs[None, :] + 0.5 * ys[:, None]]
    )[None].contiguous()
    data = bitstream.encode(codec, x, tile=0)
    tile = 128
    whole = bitstream.decode(codec, data, tile=0)[0] * 255
    tiled = bitstream.decode(codec, data, tile=tile)[0] * 255
    step_whole = (whole[..., 1:] - whole[..., :-1]).abs().mean(dim=(0, 1))
    step_tiled = (tiled[..., 1:] - tiled[..., :-1]).abs().mean(dim=(0, 1))
    borders = torch.arange(tile, w, tile) - 1  # step between columns c-1 and c at each border
    excess = (step_tiled[borders] - step_whole[borders]).abs().max().item()
    assert excess < 0.01, f"step at tile borders differs by {excess:.4f} grey levels"
    rows = (tiled[..., 1:, :] - tiled[..., :-1, :]).abs().mean(dim=(0, 2))
    rows_whole = (whole[..., 1:, :] - whole[..., :-1, :]).abs().mean(dim=(0, 2))
    assert (rows[tile - 1] - rows_whole[tile - 1]).abs() < 0.01


def test_uint8_paths_equal_float_paths(codec, scene) -> None:
    x8 = (scene * 255).round().to(torch.uint8)
    data = bitstream.encode(codec, scene)
    assert bitstream.encode(codec, x8) == data  # uint8 input is read as value / 255
    for tile in (0, 128):
        as_float = tensor_to_array(bitstream.decode(codec, data, tile=tile))
        as_uint8 = bitstream.decode(codec, data, tile=tile, dtype=torch.uint8)
        assert as_uint8.dtype == torch.uint8
        assert np.array_equal(tensor_to_array(as_uint8), as_float)


def test_tiled_decoding_deterministic_across_threads_and_processes(codec, scene, tmp_path):
    from icmbridge.codec.store import save_codec

    folder = tmp_path / "model"
    save_codec(codec, folder)
    f = tmp_path / "a.icmb"
    f.write_bytes(bitstream.encode(codec, scene))
    script = (
        "import sys, hashlib, torch\n"
        "from icmbridge.codec import bitstream\n"
        "from icmbridge.codec.store import load_codec\n"
        "torch.set_num_threads(int(sys.argv[3]))\n"
        "x = bitstream.decode(load_codec(sys.argv[1]), open(sys.argv[2], 'rb').read(), tile=64,"
        " dtype=torch.uint8)\n"
        "print(hashlib.sha256(x.numpy().tobytes()).hexdigest())\n"
    )
    here = bitstream.decode(codec, f.read_bytes(), tile=64, dtype=torch.uint8)
    digests = {
        subprocess.run(
            [sys.executable, "-c", script, str(folder), str(f), str(t)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for t in (1, 2)
    }
    assert digests == {hashlib.sha256(here.numpy().tobytes()).hexdigest()}


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    r0=st.integers(0, 127),
    c0=st.integers(0, 127),
    rh=st.integers(1, 40),
    cw=st.integers(1, 40),
    as_uint8=st.booleans(),
)
def test_read_padded_equals_slicing_the_padded_image(h, w, r0, c0, rh, cw, as_uint8) -> None:
    x8 = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, generator=torch.Generator())
    x = x8.float() / 255
    padded = pad_to_multiple(x, 64)
    r1, c1 = min(r0 + rh, padded.shape[-2]), min(c0 + cw, padded.shape[-1])
    r0, c0 = min(r0, r1 - 1), min(c0, c1 - 1)
    got = read_padded(x8 if as_uint8 else x, (r0, r1), (c0, c1))
    assert torch.equal(got, padded[..., r0:r1, c0:c1])


def test_tile_setting() -> None:
    assert resolve_tile(0, (8192, 8192), 16) == 0
    assert resolve_tile(None, (512, 512), 16) == 0  # small: whole image
    big = int(AUTO_TILE_ABOVE**0.5) + 64
    assert resolve_tile(None, (big, big), 16) == DEFAULT_TILE // 16
    assert resolve_tile(128, (64, 64), 16) == 8
    for bad in (-16, 40, 100):
        with pytest.raises(InputError, match="tile"):
            resolve_tile(bad, (512, 512), 16)


def test_hyper_path_tiles_equal_whole(codec) -> None:
    """ẑ of a 1600×1216 image spans 25×19 cells: more than one fixed hyper tile (16)."""
    z_hat = torch.round(torch.randn(1, codec.config.N, 19, 25, generator=torch.Generator()) * 3)
    tiled = codec._coding_indexes(z_hat)
    try:
        codec.hyper_tile = 0  # one tile: the whole-image computation
        whole = codec._coding_indexes(z_hat)
    finally:
        del codec.hyper_tile
    assert tiled.dtype == torch.int32 and tiled.shape == (1, codec.config.M, 76, 100)
    assert torch.equal(tiled, whole)


@pytest.mark.parametrize("chunk", [1000, 1 << 20])
def test_chunked_rans_equals_compressai(codec, scene, monkeypatch, chunk) -> None:
    monkeypatch.setattr(rans, "CHUNK_SYMBOLS", chunk)
    gc = codec.gaussian_conditional
    with torch.no_grad():
        y = codec.g_a(pad_to_multiple(scene, 64))
        z = codec.h_a(torch.abs(y))
        z_hat = codec.entropy_bottleneck.decompress(
            codec.entropy_bottleneck.compress(z), z.shape[-2:]
        )
    indexes = codec._coding_indexes(z_hat)
    y2 = torch.cat([y, y.flip(-1)])  # a batch of two
    idx2 = torch.cat([indexes, indexes.flip(-1)])
    ours = rans.encode_latent(gc, y2, idx2)
    assert ours == gc.compress(y2, idx2)
    assert torch.equal(rans.decode_latent(gc, ours, idx2), gc.decompress(ours, idx2))
    assert torch.equal(rans.decode_latent(gc, ours, idx2), torch.round(y2))


def test_cli_tile_option(tmp_path, astronaut) -> None:
    from PIL import Image

    from icmbridge.commands import main

    src = tmp_path / "a.png"
    Image.fromarray(astronaut[:200, :260]).save(src)
    assert main(["compress", str(src), "-o", str(tmp_path / "w.icmb"), "--tile", "off"]) == 0
    assert main(["compress", str(src), "-o", str(tmp_path / "t.icmb"), "--tile", "64"]) == 0
    assert (tmp_path / "w.icmb").read_bytes() == (tmp_path / "t.icmb").read_bytes()
    out = tmp_path / "t.png"
    assert main(["decompress", str(tmp_path / "t.icmb"), "-o", str(out), "--tile", "64"]) == 0
    assert np.asarray(Image.open(out)).shape == (200, 260, 3)
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(src), "--tile", "50"])
    assert exc.value.code == 2


def test_cli_device_refused_clearly(tmp_path, astronaut, capsys) -> None:
    from PIL import Image

    from icmbridge.commands import main

    src = tmp_path / "a.png"
    Image.fromarray(astronaut[:64, :64]).save(src)
    assert main(["compress", str(src), "--device", "abacus"]) == 2
    assert "unknown device 'abacus'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["compress", str(src), "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "a.icmb").exists()


def test_table_indexes_equal_compressai_build_indexes(codec) -> None:
    gc = codec.gaussian_conditional
    table = gc.scale_table.double()
    scales = torch.cat(
        [
            table,  # exactly on an entry: `<=` counts it
            table * (1 + 1e-12),
            table * (1 - 1e-12),
            torch.rand(20000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
            * 300,
            torch.tensor([0.0, -3.0, 1e12], dtype=torch.float64),
        ]
    ).reshape(1, 1, -1, 1)
    for s in (scales, scales.float()):
        assert torch.equal(rans.table_indexes(gc, s), gc.build_indexes(s))


@pytest.fixture(scope="module")
def mean_scale():
    """The shipped mean-scale base when present, else a random mbt2018-mean."""
    from icmbridge.codec.archs import build_arch
    from icmbridge.codec.store import available_models, load_codec

    if "base" in available_models() and (c := load_codec("base")).arch == "mbt2018-mean":
        return c
    torch.manual_seed(6)
    c = build_arch("mbt2018-mean", {"N": 32, "M": 48}).eval()
    c.update(force=True)
    return c


def test_mean_scale_hyper_path_tiles_equal_compressai_whole(mean_scale) -> None:
    """μ̂ and table indexes over fixed ẑ tiles: those of one float64 h_s pass over all of ẑ."""
    codec = mean_scale
    gen = torch.Generator().manual_seed(2)
    z_hat = torch.round(torch.randn(1, int(codec.N), 19, 37, generator=gen) * 3)
    means, indexes = codec._coding_params(z_hat)  # 3 × 2 tiles of 16 cells
    with torch.no_grad():
        scales, whole_means = codec.float64_copy("h_s")(z_hat.double()).chunk(2, 1)
    assert means.shape == indexes.shape == (1, int(codec.M), 76, 148)
    assert indexes.dtype == torch.int32 and means.dtype == torch.float32
    assert torch.equal(indexes, codec.gaussian_conditional.build_indexes(scales))
    assert torch.equal(means, whole_means.float())


def _big_mosaic(width: int, height: int) -> torch.Tensor:
    """A uint8 (1, 3, H, W) mosaic of the packaged photos (real texture, deterministic)."""
    from icmbridge.data.packaged import PHOTOS, load_photo

    photos = [p for p in (load_photo(n) for n in PHOTOS) if p is not None]
    out = np.full((height, width, 3), 128, np.uint8)
    k = 0
    for y in range(0, height, 512):
        for x in range(0, width, 512):
            p = photos[k % len(photos)][:512, :512]
            k += 1
            h, w = min(p.shape[0], height - y), min(p.shape[1], width - x)
            out[y : y + h, x : x + w] = p[:h, :w]
    return torch.from_numpy(out).permute(2, 0, 1).unsqueeze(0).contiguous()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["base", "coco-base"])
def test_12mp_codes_alike_in_every_tile_and_thread_setting(model) -> None:
    """12.6 MP: one bitstream whatever the tiles and threads; its pixels identical across thread
    counts, and across tile settings within one grey level (float summation order)."""
    from icmbridge.codec.store import available_models, load_codec

    if model not in available_models():
        pytest.skip(f"weights/{model} not shipped")
    codec = load_codec(model)
    x = _big_mosaic(4096, 3072)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        data = bitstream.encode(codec, x)  # automatic: 384-pixel tiles
        torch.set_num_threads(2)
        assert bitstream.encode(codec, x, tile=512) == data
        one = bitstream.decode(codec, data, dtype=torch.uint8)
        torch.set_num_threads(1)
        assert torch.equal(bitstream.decode(codec, data, dtype=torch.uint8), one)
        other = bitstream.decode(codec, data, tile=512, dtype=torch.uint8)
    finally:
        torch.set_num_threads(before)
    assert one.shape == (1, 3, 3072, 4096)
    assert (one.int() - other.int()).abs().max() <= 1
