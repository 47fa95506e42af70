"""The container: header fields, refusal of every kind of bad file, fuzzing, determinism."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icmbridge.codec import bitstream
from icmbridge.codec.model import CONFIGS, ICMCodec
from icmbridge.errors import BitstreamError, ModelMismatchError


@pytest.fixture(scope="module")
def coded(tiny_model_dir, photo):
    from icmbridge.codec.store import load_codec

    codec = load_codec(tiny_model_dir)
    return codec, bitstream.encode(codec, photo)


def _recrc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_header_fields(coded, photo) -> None:
    codec, data = coded
    h = bitstream.parse_header(data)
    assert (h.height, h.width) == tuple(photo.shape[-2:])
    assert h.fingerprint == bitstream.fingerprint(codec)
    assert h.total_size == len(data) and h.version == bitstream.FORMAT_VERSION
    assert bitstream.bits_per_pixel(data) == pytest.approx(8 * len(data) / photo[0, 0].numel())


def test_same_image_same_bytes(coded, photo) -> None:
    codec, data = coded
    assert bitstream.encode(codec, photo) == data


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: b"", "empty"),
        (lambda d: d[:20], "truncated"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: d + b"\0", "oversized"),
        (lambda d: b"JUNK" + d[4:], "not an icmbridge"),
        (lambda d: bytes(range(256)) * 3, "not an icmbridge"),
        (lambda d: d[:40] + bytes([d[40] ^ 0x10]) + d[41:], "checksum"),
        (lambda d: _recrc(d[:4] + bytes([3]) + d[5:-4]), "newer"),
        (lambda d: _recrc(d[:4] + bytes([0]) + d[5:-4]), "unknown format version"),
        (lambda d: _recrc(d[:5] + bytes([1]) + d[6:-4]), "flags"),
        (lambda d: _recrc(d[:6] + struct.pack(">II", 100000, 100000) + d[14:-4]), "dimensions"),
        (lambda d: _recrc(d[:6] + struct.pack(">II", 0, 5) + d[14:-4]), "dimensions"),
    ],
)
def test_bad_bitstreams_refused(coded, mutate, message) -> None:
    codec, data = coded
    with pytest.raises(BitstreamError, match=message):
        bitstream.decode(codec, mutate(data))


def test_every_single_bit_flip_caught(coded) -> None:
    codec, data = coded
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BitstreamError):
            bitstream.parse_header(bytes(flipped))


def test_wrong_model_refused_naming_both(coded, photo) -> None:
    codec, data = coded
    torch.manual_seed(99)
    other = ICMCodec(CONFIGS["tiny"]).eval()
    with pytest.raises(ModelMismatchError) as err:
        bitstream.decode(other, data)
    assert bitstream.fingerprint(codec).hex() in str(err.value)
    assert bitstream.fingerprint(other).hex() in str(err.value)


def test_decoder_finetune_keeps_fingerprint(coded, photo) -> None:
    """Changing only g_s (what finetuning does) keeps the fingerprint: files stay readable."""
    codec, data = coded
    import copy

    human = copy.deepcopy(codec)
    with torch.no_grad():
        human.g_s[0].weight.mul_(1.1)
        human.g_s[6].bias.add_(0.5)
    assert bitstream.fingerprint(human) == bitstream.fingerprint(codec)
    assert bitstream.encode(human, photo) == data
    assert not torch.equal(bitstream.decode(human, data), bitstream.decode(codec, data))


def test_cached_fingerprint_follows_every_kind_of_change(coded) -> None:
    """The fingerprint is cached; in-place edits, a reassigned parameter, a replaced part and a
    rebuilt CDF table must each give a fresh one (and undoing the edit the old one)."""
    import copy

    base, _ = coded
    codec = copy.deepcopy(base)
    seen = {bitstream.fingerprint(codec)}

    def changed() -> bool:
        fp = bitstream.fingerprint(codec)
        new = fp not in seen
        seen.add(fp)
        return new

    with torch.no_grad():
        codec.g_a[0].bias.add_(1e-3)  # in place
    assert changed()
    codec.h_s[0].weight = torch.nn.Parameter(codec.h_s[0].weight.detach() * 1.01)  # reassigned
    assert changed()
    codec.h_a = copy.deepcopy(codec.h_a)  # same values in a new part: same fingerprint
    assert bitstream.fingerprint(codec) in seen
    with torch.no_grad():
        codec.h_a[0].weight.mul_(0.5)  # the new part is the one covered from now on
    assert changed()
    codec.entropy_bottleneck._quantized_cdf[0, 1] += 1  # a CDF table
    assert changed()
    codec.g_s[0].weight = torch.nn.Parameter(codec.g_s[0].weight.detach() * 2)  # decoder only
    assert not changed()


# deadline: a hang detector, not a timing test (one example is ~0.1 s here; a loaded 2-core
# machine has taken over 5 s)
@settings(
    max_examples=150, deadline=30000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=10_000), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    ),
    st.integers(min_value=-50, max_value=50),
    st.booleans(),
)
def test_fuzz_mutations_never_crash(coded, edits, resize, fix_crc) -> None:
    """Byte edits, truncations and extensions, with or without a recomputed checksum: each is
    refused with a BitstreamError or decodes to the size its header announces."""
    codec, data = coded
    body = bytearray(data[:-4])
    for pos, value in edits:
        body[pos % len(body)] = value
    if resize < 0:
        body = body[: max(0, len(body) + resize)]
    else:
        body += bytes(resize)
    mutated = _recrc(bytes(body)) if fix_crc else bytes(body) + data[-4:]
    try:
        x_hat = bitstream.decode(codec, mutated)
    except (BitstreamError, ModelMismatchError):
        return
    h = bitstream.parse_header(mutated)
    assert x_hat.shape == (1, 3, h.height, h.width)


def test_payload_fuzz_with_valid_header(coded) -> None:
    """Random payloads behind a valid header never crash the rANS decoder."""
    codec, data = coded
    h = bitstream.parse_header(data)
    gen = torch.Generator().manual_seed(0)
    for n in (0, 1, 7, 64, 1000):
        for _ in range(5):
            z = bytes(torch.randint(0, 256, (n,), generator=gen).tolist())
            y = bytes(torch.randint(0, 256, (n * 3,), generator=gen).tolist())
            forged = bitstream.pack((h.height, h.width, h.fingerprint), z, y)
            out = bitstream.decode(codec, forged)
            assert out.shape == (1, 3, h.height, h.width)


def _indexes(codec: ICMCodec, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        y = codec.g_a(x)
        z_hat = codec.entropy_bottleneck.quantize(
            codec.h_a(torch.abs(y)), "dequantize", codec.entropy_bottleneck._get_medians()
        )
        return codec._coding_indexes(z_hat)


def test_scale_indexes_independent_of_threads_and_batch(tiny_codec) -> None:
    x = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _indexes(tiny_codec, x)
        single = torch.cat([_indexes(tiny_codec, x[i : i + 1]) for i in range(4)])
        torch.set_num_threads(2)
        two = _indexes(tiny_codec, x)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, two) and torch.equal(one, single)


_DECODE_SCRIPT = """
import sys, hashlib, torch
torch.set_num_threads(int(sys.argv[3]))
from icmbridge.codec import bitstream
from icmbridge.codec.store import load_codec
from icmbridge.imageio import tensor_to_array
codec = load_codec(sys.argv[1])
x = bitstream.decode(codec, open(sys.argv[2], 'rb').read())
print(hashlib.sha256(tensor_to_array(x).tobytes()).hexdigest())
"""


def test_decode_identical_across_processes_and_threads(tiny_model_dir, tmp_path, astronaut):
    from icmbridge.codec.store import load_codec
    from icmbridge.imageio import array_to_tensor, tensor_to_array

    codec = load_codec(tiny_model_dir)
    x = array_to_tensor(astronaut[:200, :300])
    f = tmp_path / "a.icmb"
    f.write_bytes(bitstream.encode(codec, x))
    import hashlib

    here = hashlib.sha256(tensor_to_array(bitstream.decode(codec, f.read_bytes())).tobytes())
    digests = {
        subprocess.run(
            [sys.executable, "-c", _DECODE_SCRIPT, str(tiny_model_dir), str(f), str(t)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for t in (1, 2)
    }
    assert digests == {here.hexdigest()}


def test_pixel_limit_counts_padding(coded, monkeypatch) -> None:
    """A 1×N header costs 64·N pixels of decoding: the limit applies to the padded size."""
    codec, data = coded
    monkeypatch.setenv("ICMBRIDGE_MAX_PIXELS", str(64 * 64 * 4))
    skinny = _recrc(data[:6] + struct.pack(">II", 1, 64 * 5) + data[14:-4])
    with pytest.raises(BitstreamError, match="padded"):
        bitstream.parse_header(skinny)
    with pytest.raises(BitstreamError, match="padded"):
        bitstream.encode(codec, torch.rand(1, 3, 1, 64 * 5))
    assert bitstream.coded_pixels(1, 1) == 64 * 64
