"""Encode/decode time of icmbridge's codec against CompressAI's bmshj2018_hyperprior.

Same N and M (ours: the shipped ``base`` sizes, or the ``cpu`` configuration until it exists;
CompressAI's with random weights and ``update(force=True)``), the same 512×512 photo, the same
threads, interleaved repetitions, medians. Ours goes through the full container path (header,
fingerprint, checksum, float64 scale path); CompressAI's through ``compress``/``decompress``.

    python benchmarks/codec_speed.py [--reps 7] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from compressai.zoo import bmshj2018_hyperprior
from skimage import data

from icmbridge.codec import bitstream
from icmbridge.codec.model import CONFIGS, ICMCodec
from icmbridge.codec.store import available_models, load_codec
from icmbridge.imageio import array_to_tensor


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ours: ICMCodec = (
        load_codec("base") if "base" in available_models() else ICMCodec(CONFIGS["cpu"]).eval()
    )
    n, m = ours.config.N, ours.config.M
    peer = bmshj2018_hyperprior(quality=1, pretrained=False).eval()
    if (n, m) != (peer.N, peer.M):  # the zoo fixes sizes per quality; build the same sizes
        from compressai.models import ScaleHyperprior

        peer = ScaleHyperprior(N=n, M=m).eval()
    peer.update(force=True)
    x = array_to_tensor(data.astronaut()[:512, :512])

    with torch.no_grad():
        ours_bytes = bitstream.encode(ours, x)
        peer_out = peer.compress(x)
        times: dict[str, list[float]] = {
            k: [] for k in ("ours_enc", "ours_dec", "peer_enc", "peer_dec")
        }
        for _ in range(args.reps):
            times["ours_enc"].append(_time(lambda: bitstream.encode(ours, x)))
            times["peer_enc"].append(_time(lambda: peer.compress(x)))
            times["ours_dec"].append(_time(lambda: bitstream.decode(ours, ours_bytes)))
            times["peer_dec"].append(
                _time(lambda: peer.decompress(peer_out["strings"], peer_out["shape"]))
            )
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "N": n,
        "M": m,
        "threads": args.threads,
        "reps": args.reps,
        "image": "astronaut 512x512",
        **{f"{k}_s": round(v, 4) for k, v in med.items()},
        "encode_ratio": round(med["ours_enc"] / med["peer_enc"], 3),
        "decode_ratio": round(med["ours_dec"] / med["peer_dec"], 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>14}: {v}")


if __name__ == "__main__":
    main()
