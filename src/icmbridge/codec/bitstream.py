"""The icmbridge file format: a small checked header around the codec's two rANS strings.

Layout (big-endian)::

    offset size  field
    0      4     magic  b"ICMB"
    4      1     format version (1: the ``icm`` architecture; 2: any other)
    5      1     flags (reserved, 0)
    6      4     image height (pixels)
    10     4     image width (pixels)
    14     8     fingerprint of the encoder + entropy models that wrote the file
    22     4     length of the hyper-latent string ẑ
    26     4     length of the latent string ŷ
    (version 2 only)
    30     1     length A of the architecture name
    31     A     architecture name (ASCII), e.g. ``cheng2020-anchor``
    ...    ...   ẑ string (empty for codecs without hyper-prior), then ŷ string
    end-4  4     CRC32 over everything before it

Files of our own ``icm`` architecture are still written as version 1 (the architecture is implied),
so earlier icmbridge releases keep reading them; every other architecture writes version 2.

Any decoder whose entropy models share the fingerprint reads the file: a human decoder finetuned
from the base codec decodes the base codec's files. Every check runs before anything is allocated
or decoded, so hostile files are refused with a :class:`BitstreamError`, never a crash.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from icmbridge.errors import BitstreamError, ModelMismatchError

if TYPE_CHECKING:  # reading a header needs no torch (``icmbridge info`` starts fast)
    import torch
    from torch import Tensor

    from icmbridge.codec.model import CodecContract

MAGIC = b"ICMB"
FORMAT_VERSION = 1  # written for the icm architecture
ARCH_FORMAT_VERSION = 2  # written for every other architecture; the newest version read
_HEADER = struct.Struct(">4sBBII8sII")
HEADER_SIZE = _HEADER.size
CRC_SIZE = 4
OVERHEAD = HEADER_SIZE + CRC_SIZE

#: Largest image (in pixels) a header may announce. Tiled decoding keeps memory to ~20 bytes per
#: pixel above the interpreter's own, so 64 MP fit in ~2 GB. Override with the environment
#: variable ``ICMBRIDGE_MAX_PIXELS``.
DEFAULT_MAX_PIXELS = 8192 * 8192


def max_pixels() -> int:
    value = os.environ.get("ICMBRIDGE_MAX_PIXELS")
    if value is None:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        raise BitstreamError(f"ICMBRIDGE_MAX_PIXELS must be an integer, got {value!r}") from None
    return limit


@dataclass(frozen=True)
class Header:
    version: int
    height: int
    width: int
    fingerprint: bytes
    z_length: int
    y_length: int
    arch: str = "icm"

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @property
    def total_size(self) -> int:
        return self.payload_offset + self.z_length + self.y_length + CRC_SIZE

    @property
    def payload_offset(self) -> int:
        return HEADER_SIZE + (0 if self.version == 1 else 1 + len(self.arch))


def fingerprint(codec: CodecContract) -> bytes:
    """8-byte SHA-256 digest of every tensor the bitstream depends on: all of the model's
    parameters and buffers outside the synthesis transform (encoder, hyper-prior, context model,
    CDF tables), found by walking its state dict, after its architecture and sizes.

    The synthesis transform ``g_s`` is left out on purpose: finetuned decoders share the base's
    fingerprint, so they read the base's files.
    """
    codec._ensure_ready()
    # Cached until a tensor it covers changes (tracked by storage and version counters).
    key = codec.fingerprint_key()
    cached = codec.__dict__.get("_fingerprint")
    if cached is not None and cached[0] == key:
        return cached[1]
    tensors = codec.fingerprint_tensors()
    digest = hashlib.sha256()
    digest.update(codec.fingerprint_preamble())
    for name, tensor in tensors:
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes() if t.numel() else b"")
    codec.__dict__["_fingerprint"] = (key, digest.digest()[:8])
    return codec.__dict__["_fingerprint"][1]


def pack(
    header_fields: tuple[int, int, bytes], z_string: bytes, y_string: bytes, arch: str = "icm"
) -> bytes:
    height, width, fp = header_fields
    version = FORMAT_VERSION if arch == "icm" else ARCH_FORMAT_VERSION
    head = _HEADER.pack(MAGIC, version, 0, height, width, fp, len(z_string), len(y_string))
    if version == ARCH_FORMAT_VERSION:
        name = arch.encode("ascii")
        if not 0 < len(name) < 256:
            raise BitstreamError(f"architecture name {arch!r} must be 1..255 ASCII characters")
        head += bytes([len(name)]) + name
    body = head + z_string + y_string
    return body + struct.pack(">I", zlib.crc32(body))


def parse_header(data: bytes) -> Header:
    """Validate everything that can be validated without a model and return the header."""
    if len(data) == 0:
        raise BitstreamError("the file is empty")
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError(f"not an icmbridge bitstream (magic {data[:4]!r}, expected {MAGIC!r})")
    if len(data) < OVERHEAD:
        raise BitstreamError(
            f"truncated bitstream: {len(data)} bytes, shorter than the {OVERHEAD}-byte header"
        )
    magic, version, flags, height, width, fp, z_len, y_len = _HEADER.unpack_from(data)
    if version > ARCH_FORMAT_VERSION:
        raise BitstreamError(
            f"format version {version} is newer than this icmbridge reads "
            f"({ARCH_FORMAT_VERSION}); upgrade icmbridge"
        )
    if version < 1:
        raise BitstreamError(f"unknown format version {version}")
    arch = "icm"
    if version == ARCH_FORMAT_VERSION:
        if len(data) < HEADER_SIZE + 1 or len(data) < HEADER_SIZE + 1 + data[HEADER_SIZE]:
            raise BitstreamError(f"truncated bitstream: {len(data)} bytes end inside the header")
        raw = data[HEADER_SIZE + 1 : HEADER_SIZE + 1 + data[HEADER_SIZE]]
        try:
            arch = raw.decode("ascii")
        except UnicodeDecodeError:
            arch = ""
        if not arch.isprintable() or not arch:
            raise BitstreamError(f"bad architecture name {raw!r} in the header")
    header = Header(version, height, width, fp, z_len, y_len, arch)
    if len(data) != header.total_size:
        what = "truncated" if len(data) < header.total_size else "oversized"
        raise BitstreamError(
            f"{what} bitstream: header announces {header.total_size} bytes, file has {len(data)}"
        )
    stored_crc = struct.unpack_from(">I", data, len(data) - CRC_SIZE)[0]
    if zlib.crc32(data[: len(data) - CRC_SIZE]) != stored_crc:
        raise BitstreamError("checksum mismatch: the bitstream is corrupt")
    if flags != 0:
        raise BitstreamError(f"unknown header flags 0x{flags:02x}")
    limit = max_pixels()
    if height < 1 or width < 1 or coded_pixels(height, width) > limit:
        raise BitstreamError(
            f"header dimensions {width}x{height} are outside 1..{limit} pixels once padded to "
            "the codec's factor 64 (raise ICMBRIDGE_MAX_PIXELS to decode larger images)"
        )
    return header


def coded_pixels(height: int, width: int) -> int:
    """Pixels the codec actually processes: the image padded to multiples of 64 on each side.

    Limits apply to this, not to H·W, or a 1×N image would cost 64 times what it announces.
    """
    m = 64  # the largest padding factor of the architectures (g_a × h_a strides)
    return -(-height // m) * m * (-(-width // m) * m)


def encode(codec: CodecContract, x: Tensor, tile: int | None = None) -> bytes:
    """Encode one image ``(1, 3, H, W)`` (float in [0, 1] or uint8) into a bitstream.

    ``tile``: see :mod:`icmbridge.codec.tiling` (None: automatic, 0: whole image, N: pixels).
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise BitstreamError(f"encode takes a single image (1, 3, H, W), got {tuple(x.shape)}")
    height, width = x.shape[-2:]
    limit = max_pixels()
    if coded_pixels(height, width) > limit:
        raise BitstreamError(
            f"image {width}x{height} exceeds {limit} pixels once padded to the codec's factor "
            "64 (raise ICMBRIDGE_MAX_PIXELS)"
        )
    out = codec.compress(x, tile=tile)
    z_string, y_string = codec.container_strings(out["strings"])
    return pack((height, width, fingerprint(codec)), z_string, y_string, codec.arch)


def decode(
    codec: CodecContract, data: bytes, tile: int | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """Decode a bitstream into a ``(1, 3, H, W)`` image: float in [0, 1] (``dtype`` None: float32),
    or uint8 (rounded).

    ``tile`` as in :func:`encode`; the bitstream does not depend on it, the pixels only by float
    summation order (at most one grey level).
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    header = parse_header(data)
    expected = fingerprint(codec)
    if header.fingerprint != expected:
        archs = f" ({header.arch})" if header.arch != codec.arch else ""
        mine = f" ({codec.arch})" if archs else ""
        raise ModelMismatchError(
            f"bitstream was written by model {header.fingerprint_hex}{archs}, but the decoder's "
            f"encoder/entropy models are {expected.hex()}{mine}: decode with the model that "
            "wrote it (or one finetuned from it)"
        )
    zh, zw = codec.latent_shape(header.height, header.width)
    start = header.payload_offset
    z_string = data[start : start + header.z_length]
    y_string = data[start + header.z_length : start + header.z_length + header.y_length]
    if not codec.hyperprior and z_string:
        raise BitstreamError(f"a {codec.arch} bitstream holds no hyper-latent string")
    strings = codec.strings_from_container(z_string, y_string, (zh, zw))
    x_hat = codec.decompress(
        strings, (zh, zw), out_hw=(header.height, header.width), tile=tile, dtype=dtype
    )["x_hat"]
    return x_hat.to("cpu")


def bits_per_pixel(data: bytes) -> float:
    header = parse_header(data)
    return 8 * len(data) / (header.height * header.width)
