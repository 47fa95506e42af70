"""The icmbridge file format: a small checked header around the codec's two rANS strings.

Layout (big-endian)::

    offset size  field
    0      4     magic  b"ICMB"
    4      1     format version (1)
    5      1     flags (reserved, 0)
    6      4     image height (pixels)
    10     4     image width (pixels)
    14     8     fingerprint of the encoder + entropy models that wrote the file
    22     4     length of the hyper-latent string ẑ
    26     4     length of the latent string ŷ
    30     ...   ẑ string, then ŷ string
    end-4  4     CRC32 over everything before it

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

import torch
from torch import Tensor

from icmbridge.codec.model import ICMCodec
from icmbridge.codec.rans import bounded_string
from icmbridge.errors import BitstreamError, ModelMismatchError

MAGIC = b"ICMB"
FORMAT_VERSION = 1
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

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @property
    def total_size(self) -> int:
        return OVERHEAD + self.z_length + self.y_length


def fingerprint(codec: ICMCodec) -> bytes:
    """8-byte SHA-256 digest of every tensor the bitstream depends on (encoder, hyper-prior, CDFs).

    The synthesis transform ``g_s`` is left out on purpose: finetuned decoders share the base's
    fingerprint, so they read the base's files.
    """
    codec._ensure_ready()
    # Cached until a tensor it covers changes (tracked by storage and version counters).
    tensors = [
        t for m in codec.encoder_and_entropy_modules().values() for t in m.state_dict().values()
    ]
    key = tuple((t.data_ptr(), t._version, t.numel()) for t in tensors)
    cached = codec.__dict__.get("_fingerprint")
    if cached is not None and cached[0] == key:
        return cached[1]
    digest = hashlib.sha256()
    digest.update(repr(sorted(codec.config.to_dict().items())).encode())
    for prefix, module in codec.encoder_and_entropy_modules().items():
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            digest.update(f"{prefix}.{name}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.numpy().tobytes() if t.numel() else b"")
    codec.__dict__["_fingerprint"] = (key, digest.digest()[:8])
    return codec.__dict__["_fingerprint"][1]


def pack(header_fields: tuple[int, int, bytes], z_string: bytes, y_string: bytes) -> bytes:
    height, width, fp = header_fields
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, height, width, fp, len(z_string), len(y_string))
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
    if version > FORMAT_VERSION:
        raise BitstreamError(
            f"format version {version} is newer than this icmbridge reads ({FORMAT_VERSION}); "
            "upgrade icmbridge"
        )
    if version < 1:
        raise BitstreamError(f"unknown format version {version}")
    header = Header(version, height, width, fp, z_len, y_len)
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
    m = ICMCodec.downsampling
    return -(-height // m) * m * (-(-width // m) * m)


def encode(codec: ICMCodec, x: Tensor, tile: int | None = None) -> bytes:
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
    y_strings, z_strings = out["strings"]
    return pack((height, width, fingerprint(codec)), z_strings[0], y_strings[0])


def decode(
    codec: ICMCodec, data: bytes, tile: int | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Decode a bitstream into a ``(1, 3, H, W)`` image: float in [0, 1], or uint8 (rounded).

    ``tile`` as in :func:`encode`; the bitstream does not depend on it, the pixels only by float
    summation order (at most one grey level).
    """
    header = parse_header(data)
    expected = fingerprint(codec)
    if header.fingerprint != expected:
        raise ModelMismatchError(
            f"bitstream was written by model {header.fingerprint_hex}, but the decoder's encoder/"
            f"entropy models are {expected.hex()}: decode with the model that wrote it "
            "(or one finetuned from it)"
        )
    zh, zw = codec.latent_shape(header.height, header.width)
    z_string = data[HEADER_SIZE : HEADER_SIZE + header.z_length]
    y_string = data[HEADER_SIZE + header.z_length : HEADER_SIZE + header.z_length + header.y_length]
    # ẑ goes through CompressAI's own decoder: bound it here; ŷ's decoder bounds its string.
    strings = [[y_string], [bounded_string(z_string, codec.config.N * zh * zw)]]
    x_hat = codec.decompress(
        strings, (zh, zw), out_hw=(header.height, header.width), tile=tile, dtype=dtype
    )["x_hat"]
    return x_hat.to("cpu")


def bits_per_pixel(data: bytes) -> float:
    header = parse_header(data)
    return 8 * len(data) / (header.height * header.width)
