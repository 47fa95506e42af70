"""``icmbridge evaluate``: every metric, per image and over a set, as JSON."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from icmbridge.commands.options import (
    SET_HELP,
    add_command,
    add_people_options,
    add_task_options,
    add_threads,
    set_threads,
)

HELP = "measure a codec: bpp, PSNR, SSIM, ColorVideoVDP, SSIMULACRA 2, artifacts, task AP"
DESCRIPTION = """\
Code every image to a real bitstream with --model, decode it, and measure it.
JSON: {'images': [{'name', 'bpp', 'psnr', 'ssim', 'ms_ssim', 'cvvdp_jod',
'ssimulacra2', 'artifact_db', 'task_ap', 'task_ap50', 'feature_distance',
'encode_s', 'decode_s', ...}], 'mean':
{...}}; 'mean' holds the COCO AP over the whole set for the task keys. Sets without
annotations are scored against the task's predictions on the uncompressed images
(flagged in 'ground_truth')."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "evaluate", HELP, DESCRIPTION)
    p.add_argument("--model", default="base", help="shipped model name or path")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--images", help="folder of images (recursive; jpg, png, webp)")
    src.add_argument(
        "--set",
        default="faces:test",
        help=SET_HELP,
    )
    add_task_options(p)
    add_people_options(p)
    p.add_argument("--vgg-weights", help="local torchvision vgg16 weights for vgg_distance")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--json", dest="json_out", help="write the results to this JSON file")
    add_threads(p)
    p.set_defaults(func=run)


def summary_line(label: str, mean: dict[str, Any], ci: dict[str, Any] | None = None) -> str:
    """One line of means, each with its 95 % interval over images when ``ci`` is given; names,
    units and formats from the metric catalogue."""
    from icmbridge.evaluation.stats import format_ci
    from icmbridge.metrics.catalogue import get

    ci = ci or {}
    keys = ["bpp", "psnr", "ssim"]
    keys += ["cvvdp_jod", "ssimulacra2"] if mean.get("cvvdp_jod") is not None else []
    keys += ["artifact_db", "lattice", "task_ap50", "task_ap"]
    keys += ["task_mask_ap50", "task_mask_ap"] if mean.get("task_mask_ap") is not None else []

    def f(key: str) -> str:
        m = get(key)
        text = format_ci(mean.get(key), ci.get(key), m.fmt)
        if m.unit == m.full:  # bpp: the unit names it
            return f"{text} {m.unit}"
        return f"{m.full} {text}" + (f" {m.unit}" if m.unit else "")

    return f"{label}: " + ", ".join(f(k) for k in keys)


def run(args: argparse.Namespace) -> int:
    import torch

    from icmbridge.codec.store import load_codec
    from icmbridge.data import load_samples
    from icmbridge.evaluation.core import code_with_model, score, task_reference
    from icmbridge.metrics.people import people_argv, people_from_args, people_info
    from icmbridge.utils.atomic import check_output_path

    set_threads(args.threads)
    if args.json_out:
        check_output_path(args.json_out)
    people = people_from_args(args)
    samples = load_samples(args.images, args.set, args.limit)
    codec = load_codec(args.model)
    from icmbridge.tasks import task_from_args

    task = task_from_args(args)
    vgg = None
    if args.vgg_weights:
        from icmbridge.metrics.vgg import VGGDistance

        vgg = VGGDistance(args.vgg_weights)
    coded = code_with_model(codec, samples, progress=sys.stderr.isatty())
    gts = [s.target() for s in samples]
    result = score(coded, task, gts, vgg, progress=sys.stderr.isatty(), people=people)
    set_name = args.images or args.set
    uncompressed = task_reference(task, samples) if task is not None else None
    head = f"{args.model} on {set_name} ({len(samples)} images)"
    print(summary_line(head, result["mean"], result["ci"]))
    print("[..]: 95 % bootstrap intervals over images (AP: the set resampled)")
    ref = uncompressed
    if ref and ref.get("task_ap50"):
        from icmbridge.evaluation.stats import format_ci

        rel = 100 * (result["mean"]["task_ap50"] / ref["task_ap50"] - 1)
        unc = {k: format_ci(ref.get(k), ref["ci"].get(k), ".3f") for k in ("task_ap", "task_ap50")}
        print(
            f"uncompressed: AP {unc['task_ap']}, AP50 {unc['task_ap50']}; relative change of "
            f"AP50 {rel:+.1f} %"
        )
    if "ground_truth" in result and result["ground_truth"].startswith("pseudo"):
        print("note: no annotations; task metrics are against the uncompressed predictions")
    if args.json_out:
        from icmbridge.evaluation.results import Results, codec_result
        from icmbridge.tasks import task_argv

        words = ["icmbridge", "evaluate", "--model", str(args.model)]
        words += ["--images", args.images] if args.images else ["--set", args.set]
        words += task_argv(args) + people_argv(args)
        words += ["--limit", str(args.limit)] if args.limit else []
        Results(
            kind="evaluate",
            title=f"icmbridge evaluate: {args.model} on {set_name}",
            command=shlex.join(words),
            set=set_name,
            n_images=len(samples),
            base=str(args.model),
            reference=None,
            task=task.name if task is not None else None,
            ground_truth=result.get("ground_truth"),
            uncompressed=uncompressed,
            people_metrics=people_info(people),
            threads=torch.get_num_threads(),
            codecs={model_label(args.model): codec_result("ours", f"{args.model}", result)},
            extra={"bootstrap": result["bootstrap"]},
        ).write(args.json_out)
    return 0


def model_label(model: str) -> str:
    """A short label for a model given by name or path (``runs/x/checkpoints/last`` → ``x``)."""
    from pathlib import Path

    parts = [p for p in Path(model).parts if p not in ("checkpoints", "last", "/")]
    return parts[-1] if parts else str(model)
