"""What a human decoder costs next to the base's decoder: parameters, MACs per pixel, decode time.

Every decoder reads the same Kodak bitstreams (written once by ``--base``). Times are per image,
at ``--threads`` (default 2), decoders interleaved image by image (so load on a shared machine
hits all alike), medians over images and the median of per-image ratios to the base:

* ``decode_s``: ``bitstream.decode`` end to end (rANS + hyper-synthesis + synthesis + clamp),
  what ``icmbridge decompress`` does after reading the file;
* ``synthesis_s``: ``g_s`` alone on the decoded ŷ (the part that differs between decoders).

    python benchmarks/decoder_cost.py --decoders human,human-control,runs/x/checkpoints/last \\
        --out results/benchmarks/decoder_cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from icmbridge.codec import bitstream
from icmbridge.codec.decoders import decoder_macs_per_pixel, decoder_spec
from icmbridge.codec.model import fixed_threads
from icmbridge.codec.store import load_codec
from icmbridge.data import get_set
from icmbridge.imageio import array_to_tensor


def label_and_path(item: str) -> tuple[str, str]:
    label, _, path = item.partition("=")
    return (label, path) if path else (item, item)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--base", default="base")
    p.add_argument("--decoders", default="human", help="comma separated; LABEL=PATH names one")
    p.add_argument("--set", default="kodak")
    p.add_argument("--limit", type=int, default=24)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=1, help="decodes per image and decoder")
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    base = load_codec(args.base)
    codecs = {"base": base}
    for item in filter(None, args.decoders.split(",")):
        label, path = label_and_path(item)
        codecs[label] = load_codec(path)
    images = get_set(args.set)[: args.limit]
    files = [bitstream.encode(base, array_to_tensor(s.image)) for s in images]
    dec: dict[str, list[float]] = {k: [] for k in codecs}
    syn: dict[str, list[float]] = {k: [] for k in codecs}
    for data in files:
        header = bitstream.parse_header(data)
        start = header.payload_offset
        zh_zw = base.latent_shape(header.height, header.width)
        strings = base.strings_from_container(
            data[start : start + header.z_length],
            data[start + header.z_length : start + header.z_length + header.y_length],
            zh_zw,
        )
        y_hat = base.latent_from_strings(strings, zh_zw)
        for name, codec in codecs.items():
            for _ in range(args.reps):
                t = time.perf_counter()
                bitstream.decode(codec, data)
                dec[name].append(time.perf_counter() - t)
                with torch.no_grad(), fixed_threads(args.threads):
                    t = time.perf_counter()
                    codec.g_s(y_hat.contiguous(memory_format=torch.channels_last))
                    syn[name].append(time.perf_counter() - t)

    def ratio(times: dict[str, list[float]], name: str) -> float:
        return statistics.median(a / b for a, b in zip(times[name], times["base"], strict=True))

    result = {
        "set": args.set,
        "images": len(files),
        "threads": args.threads,
        "reps": args.reps,
        "decoders": {
            name: {
                "decoder": decoder_spec(codec).to_dict(),
                "synthesis_params": sum(p.numel() for p in codec.g_s.parameters()),
                "macs_per_pixel": decoder_macs_per_pixel(codec),
                "decode_s_median": round(statistics.median(dec[name]), 4),
                "synthesis_s_median": round(statistics.median(syn[name]), 4),
                "decode_ratio_to_base": round(ratio(dec, name), 3),
                "synthesis_ratio_to_base": round(ratio(syn, name), 3),
            }
            for name, codec in codecs.items()
        },
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
