"""A zoomed comparison strip for model cards: original | each model | classical codecs at its rate.

The crop sits where the first model's 16-px grid pattern is strongest (the report's crop picker).
Each panel is labelled with its whole-image bpp and PSNR; the figures are printed too.

    python scripts/zoom_strip.py base human human-li -o weights/cards/base-vs-human.png
    python scripts/zoom_strip.py base human --set kodak --index 22 --classical avif -o strip.png

Classical codecs code the image at the first model's bytes (the largest file not larger).
"""

from __future__ import annotations

import argparse

from PIL import Image, ImageDraw

from icmbridge.baselines.classical import code_at_bpp
from icmbridge.codec import bitstream
from icmbridge.codec.store import load_codec
from icmbridge.data import get_set
from icmbridge.imageio import array_to_tensor, tensor_to_array
from icmbridge.metrics.artifacts import artifact_db
from icmbridge.metrics.fidelity import psnr
from icmbridge.report.crops import cut, pick_crop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--set", default="photos:test")
    parser.add_argument("--index", type=int, default=0, help="which image of the set")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--zoom", type=int, default=4)
    parser.add_argument(
        "--classical",
        default="jpeg",
        help="classical codecs at the first model bytes, e.g. jpeg,avif",
    )
    args = parser.parse_args()

    name, _, split = args.set.partition(":")
    image = get_set(name, split or "test")[args.index].image
    x = array_to_tensor(image)
    data = bitstream.encode(load_codec(args.models[0]), x)
    bpp = 8 * len(data) / image[..., 0].size
    panels = [("original", image, "")]
    for m in args.models:  # decoders finetuned from the first read its very bitstream
        codec = load_codec(m)
        same = bitstream.fingerprint(codec) == bitstream.parse_header(data).fingerprint
        own = data if same else bitstream.encode(codec, x)
        y = tensor_to_array(bitstream.decode(codec, own))
        rate = 8 * len(own) / image[..., 0].size
        panels.append((m, y, f"{rate:.3f} bpp {psnr(x, array_to_tensor(y)):.2f} dB"))
    for name in filter(None, args.classical.split(",")):
        coded = code_at_bpp(name, image, bpp)
        caption = f"{coded.bpp:.3f} bpp {psnr(x, array_to_tensor(coded.decoded)):.2f} dB"
        panels.append((name.upper(), coded.decoded, caption))
    box = pick_crop(image, panels[1][1], args.size)
    tiles = []
    for label, img, caption in panels:
        tile = cut(img, box, args.zoom)
        canvas = Image.new("RGB", (tile.width, tile.height + 34), "white")
        canvas.paste(tile, (0, 0))
        draw = ImageDraw.Draw(canvas)
        draw.text((4, tile.height + 2), label, fill="black")
        draw.text((4, tile.height + 18), caption, fill="#444")
        tiles.append(canvas)
        if label != "original":
            print(f"{label}: {caption}, artifact {artifact_db(x, array_to_tensor(img)):+.2f} dB")
    strip = Image.new("RGB", (sum(t.width + 6 for t in tiles), tiles[0].height), "white")
    offset = 0
    for t in tiles:
        strip.paste(t, (offset, 0))
        offset += t.width + 6
    strip.save(args.output)
    print(f"crop at x={box.left}, y={box.top} ({args.size}² px ×{args.zoom}) -> {args.output}")


if __name__ == "__main__":
    main()
