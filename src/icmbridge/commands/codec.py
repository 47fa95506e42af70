"""``icmbridge compress | decompress | info``: real files in, real files out."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from icmbridge.commands.options import (
    AUTO_TILE_ABOVE,
    DEFAULT_TILE,
    add_command,
    set_threads,
)
from icmbridge.errors import InputError
from icmbridge.utils.atomic import check_input_file

if TYPE_CHECKING:
    import torch


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="base",
        help="shipped model name (see weights/) or path to a model folder / training run",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's own)"
    )
    p.add_argument(
        "--tile",
        type=_tile_setting,
        default=None,
        metavar="PIXELS|off",
        help="run the transforms over tiles of this many pixels (a multiple of 16) so memory "
        "stays bounded; 'off' codes the whole image at once. Default: tiles of "
        f"{DEFAULT_TILE} above {AUTO_TILE_ABOVE / 1e6:.1f} MP. Bitstreams do not depend on it",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="where the transforms run (cpu, cuda, cuda:1); entropy coding stays on the CPU",
    )


def _device(name: str) -> torch.device:
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here")
    return device


def _tile_setting(value: str) -> int:
    if value.lower() in ("off", "0", "none"):
        return 0
    try:
        tile = int(value)
    except ValueError:
        msg = f"expected a number of pixels or 'off', got {value!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if tile < 64 or tile % 16:
        raise argparse.ArgumentTypeError(f"tile must be a multiple of 16 and >= 64, got {tile}")
    return tile


def _coding_command(
    sub: argparse._SubParsersAction,
    name: str,
    texts: tuple[str, str],
    source: tuple[str, str],
    output_help: str,
    func: object,
) -> None:
    """``compress`` and ``decompress``: one input file, ``-o``, the model options."""
    p = add_command(sub, name, *texts)
    p.add_argument(source[0], help=source[1])
    p.add_argument("-o", "--output", help=output_help)
    _add_model(p)
    p.set_defaults(func=func)


def register(sub: argparse._SubParsersAction) -> None:
    _coding_command(
        sub,
        "compress",
        (
            "encode an image into an icmbridge bitstream",
            "Encode IMAGE with the codec's encoder and entropy models into a bitstream file. "
            "Any size and any image mode Pillow reads; non-RGB inputs are converted with a note.",
        ),
        ("image", "input image (PNG, JPEG, WebP, ...)"),
        "bitstream to write (default: IMAGE with suffix .icmb)",
        run_compress,
    )
    _coding_command(
        sub,
        "decompress",
        (
            "decode an icmbridge bitstream into an image",
            "Decode FILE with --model. Any decoder finetuned from the model that wrote the file "
            "reads it (e.g. --model human reads files of --model base).",
        ),
        ("file", "bitstream written by `icmbridge compress`"),
        "image to write (default: FILE with suffix .png)",
        run_decompress,
    )

    p = add_command(sub, "info", "show a bitstream's header and bitrate", INFO)
    p.add_argument("file", help="bitstream written by `icmbridge compress`")
    p.set_defaults(func=run_info)
    p = _model_command(sub, "export", EXPORT, ("run", "run folder, checkpoint folder or model"))
    p.add_argument(
        "--half",
        action="store_true",
        help="store the transforms' weights as float16 (about half the size; entropy models and "
        "CDF tables stay exact). The rounded model has its own fingerprint and scores: evaluate "
        "the exported folder, and export a base and its finetuned decoders alike",
    )
    p.set_defaults(func=run_export)
    source = ("checkpoint", "checkpoint file (.pth, .pth.tar, .pt, .safetensors)")
    p = _model_command(sub, "import", IMPORT, source)
    p.add_argument(
        "--arch",
        required=True,
        help="CompressAI model name (bmshj2018-factorized, bmshj2018-hyperprior, mbt2018-mean, "
        "mbt2018, cheng2020-anchor, cheng2020-attn) or module.path:ClassName of your own "
        "subclass of one of their classes",
    )
    p.set_defaults(func=run_import)
    p = add_command(
        sub, "layers", "list a model's synthesis stages (what --layers first:K selects)", LAYERS
    )
    p.add_argument("model", help="shipped model name or model folder")
    p.set_defaults(func=run_layers)


INFO = "Print the header fields of FILE (validated, checksum included) and its bpp."
EXPORT = (
    "write a model folder (weights + config) from a training run or checkpoint",
    "Copy the model of RUN (a run folder, checkpoint or model) to OUT without optimizer state, "
    "CDF tables included: what `weights/NAME/` holds.",
)
IMPORT = (
    "turn a CompressAI checkpoint into a model folder",
    "Read CHECKPOINT (a CompressAI training checkpoint {'state_dict': ...}, a bare state dict, "
    "DataParallel 'module.' keys, legacy entropy-bottleneck names, or .safetensors) as "
    "architecture ARCH and write a model folder every command takes (compress, decompress, "
    "evaluate, finetune, ...). Sizes come from the tensor shapes.",
)
LAYERS = (
    "Print the synthesis stages of MODEL from the latent outwards, each with its parameter "
    "names: `finetune --layers first:K` trains the first K of them."
)


def _model_command(
    sub: argparse._SubParsersAction, name: str, texts: tuple[str, str], source: tuple[str, str]
) -> argparse.ArgumentParser:
    """``export`` and ``import``: a source, the model folder to write, a note for its meta."""
    p = add_command(sub, name, *texts)
    p.add_argument(source[0], help=source[1])
    p.add_argument("-o", "--output", required=True, help="model folder to (re)place")
    p.add_argument("--note", help="free text stored in the config's meta")
    return p


def _read_bitstream(path: str) -> bytes:
    p = check_input_file(path, "a bitstream file")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path!r}: {exc.strerror}") from None


def run_compress(args: argparse.Namespace) -> int:
    from icmbridge.codec import bitstream
    from icmbridge.codec.store import load_codec
    from icmbridge.imageio import load_image
    from icmbridge.utils.atomic import atomic_write_bytes, check_output_path

    set_threads(args.threads)
    output = Path(args.output) if args.output else Path(args.image).with_suffix(".icmb")
    check_output_path(output)
    x, notes = load_image(args.image, max_pixels=bitstream.max_pixels(), as_uint8=True)
    for note in notes:
        print(f"note: {args.image}: {note}", file=sys.stderr)
    codec = load_codec(args.model).to(_device(args.device))
    start = time.perf_counter()
    data = bitstream.encode(codec, x, tile=args.tile)
    elapsed = time.perf_counter() - start
    atomic_write_bytes(output, data)
    h, w = x.shape[-2:]
    print(
        f"{args.image} ({w}x{h}) -> {output}: {len(data)} bytes, "
        f"{8 * len(data) / (h * w):.4f} bpp, {elapsed:.2f} s"
    )
    return 0


def run_decompress(args: argparse.Namespace) -> int:
    import torch

    from icmbridge.codec import bitstream
    from icmbridge.codec.store import load_codec
    from icmbridge.imageio import save_image
    from icmbridge.utils.atomic import check_output_path

    set_threads(args.threads)
    output = Path(args.output) if args.output else Path(args.file).with_suffix(".png")
    check_output_path(output)
    data = _read_bitstream(args.file)
    header = bitstream.parse_header(data)
    codec = load_codec(args.model).to(_device(args.device))
    start = time.perf_counter()
    x_hat = bitstream.decode(codec, data, tile=args.tile, dtype=torch.uint8)
    elapsed = time.perf_counter() - start
    save_image(x_hat, output)
    print(
        f"{args.file} -> {output} ({header.width}x{header.height}): {len(data)} bytes, "
        f"{8 * len(data) / (header.height * header.width):.4f} bpp, {elapsed:.2f} s"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from icmbridge.codec import bitstream
    from icmbridge.codec.store import load_codec, save_codec

    codec = load_codec(args.run)
    meta = dict(getattr(codec, "meta", {}))
    meta["exported_from"] = str(args.run)
    if args.note:
        meta["note"] = args.note
    if args.half:
        meta["stored_as"] = "float16 transforms"
    save_codec(codec, args.output, meta, half=args.half)
    saved = load_codec(args.output) if args.half else codec
    print(f"{args.run} -> {args.output} (fingerprint {bitstream.fingerprint(saved).hex()})")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from icmbridge.codec import bitstream
    from icmbridge.codec.importing import import_checkpoint
    from icmbridge.codec.store import save_codec

    parent = Path(args.output).parent
    if not parent.is_dir():
        raise InputError(f"output folder {str(parent)!r} does not exist")
    codec = import_checkpoint(args.arch, args.checkpoint)
    meta = {"imported_from": str(args.checkpoint)}
    if args.note:
        meta["note"] = args.note
    save_codec(codec, args.output, meta)
    sizes = ", ".join(f"{k}={v}" for k, v in codec.sizes().items())
    print(
        f"{args.checkpoint} -> {args.output}: {codec.arch} ({sizes}), "
        f"{len(codec.synthesis_layers())} synthesis stages, "
        f"fingerprint {bitstream.fingerprint(codec).hex()}"
    )
    return 0


def run_layers(args: argparse.Namespace) -> int:
    from icmbridge.codec.store import load_codec

    codec = load_codec(args.model)
    names = [n for n, _ in codec.named_parameters()]
    print(f"{args.model}: {codec.arch}, synthesis stages from the latent outwards")
    for k, stage in enumerate(codec.synthesis_layers(), 1):
        params = [n for n in names if any(n.startswith(m + ".") for m in stage)]
        kinds = ", ".join(type(codec.get_submodule(m)).__name__ for m in stage)
        print(f"  first:{k}  {' '.join(stage)}  ({kinds})")
        for n in params:
            print(f"      {n}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from icmbridge.codec import bitstream

    data = _read_bitstream(args.file)
    h = bitstream.parse_header(data)
    print(
        f"{args.file}: icmbridge format {h.version}, {h.arch}, {h.width}x{h.height}, model "
        f"{h.fingerprint_hex}, payload {h.z_length}+{h.y_length} bytes (hyper-latent+latent), "
        f"{len(data)} bytes, {8 * len(data) / (h.height * h.width):.4f} bpp, checksum ok"
    )
    return 0
