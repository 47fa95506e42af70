"""Fuzz the bitstream container and the decoder behind it; report crashes, hangs and lies.

Mutations of real files written by a codec: single and multiple bit flips, byte edits,
truncations, extensions, header-field edits (with the checksum recomputed, so the decoder itself
is reached), random payloads behind a valid header, and random bytes. Each case must either be
refused with a BitstreamError / ModelMismatchError or decode to exactly the size its header
announces. Cases run in worker processes: a crash (signal) or a hang (> --hang-seconds) is
counted, never fatal to the run. The checksum is also checked against every single-bit flip of
every seed file.

    python benchmarks/fuzz_bitstream.py --cases 100000 [--model base] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import struct
import time
import zlib

_STATE: dict = {}


def _init(model: str, max_pixels: int) -> None:
    import os

    import torch

    # Bounded work per case: a header may announce any size up to this limit, and decoding a
    # legitimately huge image is slow, not hung. The limit itself is tested separately.
    os.environ["ICMBRIDGE_MAX_PIXELS"] = str(max_pixels)

    torch.set_num_threads(1)
    from icmbridge.codec.store import load_codec

    _STATE["codec"] = load_codec(model)


def _recrc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One mutation of a valid file, by kind."""
    from icmbridge.codec.bitstream import HEADER_SIZE

    body = bytearray(data[:-4])
    kind = rng.choice(["bitflip", "bytes", "truncate", "extend", "header", "payload", "random"])
    if kind == "bitflip":
        out = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 3, 8])):
            i = rng.randrange(len(out) * 8)
            out[i // 8] ^= 1 << (i % 8)
        return kind, bytes(out)
    if kind == "bytes":
        for _ in range(rng.randint(1, 8)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        return kind, _recrc(bytes(body)) if rng.random() < 0.5 else bytes(body) + data[-4:]
    if kind == "truncate":
        return kind, data[: rng.randrange(len(data))]
    if kind == "extend":
        return kind, data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    if kind == "header":
        field = rng.choice(["version", "flags", "height", "width", "zlen", "ylen", "fingerprint"])
        offsets = {
            "version": (4, ">B"),
            "flags": (5, ">B"),
            "height": (6, ">I"),
            "width": (10, ">I"),
            "zlen": (22, ">I"),
            "ylen": (26, ">I"),
        }
        if field == "fingerprint":
            body[14 + rng.randrange(8)] ^= 1 << rng.randrange(8)
        else:
            off, fmt = offsets[field]
            size = struct.calcsize(fmt)
            value = rng.choice([0, 1, 2, 255, 2**31, 2**32 - 1, rng.randrange(2 ** (8 * size))])
            struct.pack_into(fmt, body, off, value % 2 ** (8 * size))
        return kind, _recrc(bytes(body))
    if kind == "payload":
        payload = bytes(rng.randrange(256) for _ in range(rng.randint(0, 600)))
        cut = rng.randint(0, len(payload))
        head = bytearray(body[:HEADER_SIZE])
        struct.pack_into(">II", head, 22, cut, len(payload) - cut)
        return kind, _recrc(bytes(head) + payload)
    return kind, bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))


def _new_stats() -> dict:
    """Counters of a chunk of cases; the run's totals have the same shape."""
    return {
        "cases": 0,
        "refused": 0,
        "decoded": 0,
        "wrong_size": 0,
        "errors": [],
        "slowest_s": 0.0,
        "kinds": {},
    }


def _run_chunk(args: tuple[list[bytes], int, int]) -> dict:
    from icmbridge.codec import bitstream
    from icmbridge.errors import BitstreamError, ModelMismatchError

    seeds, start, count = args
    codec = _STATE["codec"]
    stats = _new_stats()
    for case in range(start, start + count):
        rng = random.Random(case)
        kind, data = mutate(rng.choice(seeds), rng)
        stats["kinds"][kind] = stats["kinds"].get(kind, 0) + 1
        t0 = time.perf_counter()
        try:
            x = bitstream.decode(codec, data)
        except (BitstreamError, ModelMismatchError):
            stats["refused"] += 1
        except Exception as exc:  # any other exception is a bug: record it
            stats["errors"].append(f"case {case} ({kind}): {type(exc).__name__}: {exc}")
        else:
            stats["decoded"] += 1
            h = bitstream.parse_header(data)
            if tuple(x.shape) != (1, 3, h.height, h.width):
                stats["wrong_size"] += 1
        stats["slowest_s"] = max(stats["slowest_s"], time.perf_counter() - t0)
        stats["cases"] += 1
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--model", default="base")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--hang-seconds", type=float, default=5.0)
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=1 << 20,
        help="largest image a fuzzed header may announce (ICMBRIDGE_MAX_PIXELS)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch
    from skimage import data as skdata

    from icmbridge.codec import bitstream
    from icmbridge.codec.store import load_codec
    from icmbridge.imageio import array_to_tensor

    torch.set_num_threads(1)
    codec = load_codec(args.model)
    photo = skdata.astronaut()
    seeds = [
        bitstream.encode(codec, array_to_tensor(photo[y : y + h, x : x + w]))
        for (y, x, h, w) in [(0, 0, 64, 64), (100, 150, 33, 97), (200, 200, 1, 1), (0, 0, 128, 128)]
    ]

    # every single-bit flip of every seed must be caught by the checksum
    flips_total = flips_caught = 0
    for data in seeds:
        for i in range(len(data) * 8):
            flipped = bytearray(data)
            flipped[i // 8] ^= 1 << (i % 8)
            flips_total += 1
            try:
                bitstream.parse_header(bytes(flipped))
            except bitstream.BitstreamError:
                flips_caught += 1

    total = _new_stats()
    crashes = hangs = 0
    start = time.perf_counter()
    ctx = mp.get_context("spawn")
    chunks = [(seeds, s, min(args.chunk, args.cases - s)) for s in range(0, args.cases, args.chunk)]
    with ctx.Pool(args.workers, initializer=_init, initargs=(args.model, args.max_pixels)) as pool:
        pending = [(c, pool.apply_async(_run_chunk, (c,))) for c in chunks]
        for chunk, res in pending:
            try:
                stats = res.get(timeout=args.hang_seconds * chunk[2] + 60)
            except mp.TimeoutError:
                hangs += 1
                continue
            except Exception:  # a worker killed by a signal surfaces here
                crashes += 1
                continue
            for k in ("cases", "refused", "decoded", "wrong_size"):
                total[k] += stats[k]
            total["errors"] += stats["errors"]
            total["slowest_s"] = max(total["slowest_s"], stats["slowest_s"])
            for k, v in stats["kinds"].items():
                total["kinds"][k] = total["kinds"].get(k, 0) + v
    if total["slowest_s"] > args.hang_seconds:  # a slow case inside a chunk that did finish
        hangs += 1
    result = {
        "model": args.model,
        "cases": total["cases"],
        "refused": total["refused"],
        "decoded": total["decoded"],
        "decoded_wrong_size": total["wrong_size"],
        "unexpected_exceptions": len(total["errors"]),
        "crashes": crashes,
        "hangs": hangs,
        "slowest_case_s": round(total["slowest_s"], 3),
        "kinds": total["kinds"],
        "single_bit_flips": flips_total,
        "single_bit_flips_caught": flips_caught,
        "seconds": round(time.perf_counter() - start, 1),
        "first_errors": total["errors"][:5],
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
