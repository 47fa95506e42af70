"""The latent ŷ through CompressAI's rANS coder, fed in chunks.

``GaussianConditional.compress`` / ``decompress`` hand the whole latent to the coder as Python
lists (symbols, indexes) and convert the CDF tables to lists on every call: for a 50 MP image
that is ~19 M symbols, over a gigabyte of Python objects, and a fixed per-call cost on small
images. Here the same coder (``BufferedRansEncoder`` / ``RansDecoder`` from ``compressai.ans``)
receives the symbols a slab of channels at a time, in the same order, and the CDF lists are built
once per table: the strings are byte-identical to CompressAI's, memory stays bounded.
"""

from __future__ import annotations

import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import GaussianConditional
from torch import Tensor

#: Symbols handed to the coder per call: ~1 M keeps the Python lists to tens of MB.
CHUNK_SYMBOLS = 1 << 20


def _tables(gc: GaussianConditional) -> tuple[list[list[int]], list[int], list[int]]:
    """The CDF tables as the coder takes them, cached until the tables change."""
    key = tuple(
        (t.data_ptr(), t._version, t.numel())
        for t in (gc._quantized_cdf, gc._cdf_length, gc._offset)
    )
    cached = gc.__dict__.get("_icm_cdf_lists")
    if cached is None or cached[0] != key:
        lists = (
            gc._quantized_cdf.tolist(),
            gc._cdf_length.reshape(-1).int().tolist(),
            gc._offset.reshape(-1).int().tolist(),
        )
        gc.__dict__["_icm_cdf_lists"] = cached = (key, lists)
    return cached[1]


def table_indexes(gc: GaussianConditional, scales: Tensor) -> Tensor:
    """CDF table index of each scale: ``gc.build_indexes(scales)``, the same integers.

    CompressAI compares the scales with each of the 64 table entries in turn (63 passes over
    the latent, ~10× the time of the rest of the hyper path); one sorted search counts the
    entries below each scale in one pass. The table is cast to the scales' dtype (exact for
    float32 → float64), so each comparison is the one ``build_indexes`` makes.
    """
    table = gc.scale_table[:-1].to(dtype=scales.dtype, device=scales.device)
    return torch.bucketize(scales.contiguous(), table, right=False).int()


def _channel_chunks(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """Channel ranges of a (C, H, W) latent holding about CHUNK_SYMBOLS symbols each."""
    c, plane = shape[0], shape[1] * shape[2]
    step = max(1, CHUNK_SYMBOLS // max(1, plane))
    return [(i, min(c, i + step)) for i in range(0, c, step)]


def encode_latent(gc: GaussianConditional, y: Tensor, indexes: Tensor) -> list[bytes]:
    """One rANS string per image of ``y`` (B, C, H, W); equal to ``gc.compress(y, indexes)``."""
    if y.shape != indexes.shape:
        raise ValueError(f"latent {tuple(y.shape)} and indexes {tuple(indexes.shape)} differ")
    cdfs, lengths, offsets = _tables(gc)
    strings = []
    for i in range(y.shape[0]):
        encoder = BufferedRansEncoder()
        for c0, c1 in _channel_chunks(tuple(y.shape[1:])):
            symbols = torch.round(y[i, c0:c1]).int().reshape(-1).tolist()
            idx = indexes[i, c0:c1].int().reshape(-1).tolist()
            encoder.encode_with_indexes(symbols, idx, cdfs, lengths, offsets)
        strings.append(encoder.flush())
    return strings


def bounded_string(string: bytes, symbols: int) -> bytes:
    """Pad a rANS string with zero words so that no corrupt stream can read past its end.

    CompressAI's decoder does not bounds-check its input. Each symbol reads at most one 32-bit
    word to renormalise, plus bypass-coded words bounded by the string's own length; after the
    real data, zero words end any bypass run.
    """
    return string + bytes(4 * (2 * symbols + 4 * len(string) + 4))


def decode_latent(gc: GaussianConditional, strings: list[bytes], indexes: Tensor) -> Tensor:
    """ŷ (float32, on the CPU) from strings of :func:`encode_latent`; ``gc.decompress``'s result.

    Safe on corrupt strings: each is padded (:func:`bounded_string`) before decoding, and the
    padded copy is dropped as soon as the coder holds its own.
    """
    cdfs, lengths, offsets = _tables(gc)
    out = torch.empty(indexes.shape, dtype=torch.float32)
    for i, string in enumerate(strings):
        decoder = RansDecoder()
        padded = bounded_string(string, indexes[i].numel())
        decoder.set_stream(padded)
        del padded
        for c0, c1 in _channel_chunks(tuple(indexes.shape[1:])):
            values = decoder.decode_stream(
                indexes[i, c0:c1].int().reshape(-1).tolist(), cdfs, lengths, offsets
            )
            out[i, c0:c1] = torch.tensor(values, dtype=torch.float32).reshape(out[i, c0:c1].shape)
    return out
