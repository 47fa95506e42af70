"""``icmbridge demo``: the whole method on the embedded data and models, in minutes.

1. compress the demo images (the held-out face benchmark) with the shipped ``base`` codec into
   real ``.icmb`` files;
2. finetune the first decoder layers live from ``base`` for a few minutes (the paper's method at
   work);
3. decode the same files with the machine decoder (``base``), the human decoders (``human``,
   ``human-li``) and the live one — one bitstream, several decoders;
4. code the images with JPEG / WebP / AVIF at the base codec's rate, image by image, and apply the
   post-filters (parameters searched on training images) to the base decoder's output; with the
   shipped rate points (``base-low``, ``base``, ``base-high``), draw rate curves of ours and of
   each classical codec on the same images, with BD-rates (``icmbridge curves``, in small);
5. measure everything alike (bpp from real bytes, PSNR, SSIM, artifact score, face AP50) and write
   ``results.json``, the decoded images and an HTML report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from icmbridge.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    from icmbridge.cli import HelpFormatter

    p = sub.add_parser(
        "demo",
        help="the main job: code, decode twice, finetune live, compare, report",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    p.add_argument("-o", "--out", default="out/demo", help="folder for files, results, report")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a ~2-minute version (fewer images, a short live finetune, JPEG only)",
    )
    p.add_argument("--images", type=int, help="number of demo images (default: 8; quick: 3)")
    p.add_argument(
        "--finetune-steps",
        type=int,
        help="steps of the live finetune (default: 150; quick: 10; 0 skips it)",
    )
    p.add_argument(
        "--no-curves",
        dest="curves",
        action="store_false",
        default=None,
        help="skip the rate curves over the shipped rate points (always skipped with --quick)",
    )
    p.add_argument(
        "--base",
        default="base",
        help="machine codec to demonstrate: a shipped name or a model folder of any "
        "architecture (e.g. from `icmbridge import`); the shipped human decoders join only "
        "if they read its bitstreams, the rate curves only for the shipped base",
    )
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.set_defaults(func=run)


RATE_POINTS = ("base-low", "base", "base-high")
"""Shipped models of one family at different rates: the demo's rate curves use those present."""


def _save_png(path: Path, image: np.ndarray) -> None:
    from icmbridge.imageio import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(image, path)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_demo(
    out: Path,
    quick: bool = False,
    n_images: int | None = None,
    finetune_steps: int | None = None,
    curves: bool | None = None,
    base_model: str = "base",
) -> dict[str, Any]:
    from icmbridge.baselines.classical import available_codecs, code_at_bpp
    from icmbridge.baselines.postfilter import PostFilter, search_filter
    from icmbridge.codec import bitstream
    from icmbridge.codec.store import available_models, load_codec
    from icmbridge.data import get_set
    from icmbridge.evaluation.core import (
        Coded,
        compare,
        decode_with_model,
        encode_with_model,
        task_reference,
    )
    from icmbridge.imageio import array_to_tensor, tensor_to_array
    from icmbridge.tasks import build_task

    start = time.perf_counter()
    shipped = available_models()
    if base_model == "base" and "base" not in shipped:
        raise InputError("the shipped base model is missing from weights/ (see weights/base.md)")
    n_images = n_images or (3 if quick else 8)
    if finetune_steps is None:
        finetune_steps = 10 if quick else 150
    if n_images < 1 or finetune_steps < 0:
        raise InputError("--images must be ≥ 1 and --finetune-steps ≥ 0")
    out.mkdir(parents=True, exist_ok=True)
    samples = get_set("faces", "test")[:n_images]
    for s in samples:
        _save_png(out / "originals" / f"{s.name}.png", s.image)

    # 1. one bitstream per image, from the machine codec's encoder
    _say(f"[1/5] compressing {len(samples)} images with {base_model} → {out / 'bitstreams'}")
    base = load_codec(base_model)
    streams, enc_times = encode_with_model(base, samples)
    (out / "bitstreams").mkdir(exist_ok=True)
    for s, data in zip(samples, streams, strict=True):
        (out / "bitstreams" / f"{s.name}.icmb").write_bytes(data)

    # the shipped decoders (they decode in step 3, with the live one)
    decoders = {"base": base}
    for name in ("human", "human-li"):
        if name in shipped:
            decoder = load_codec(name)
            if bitstream.fingerprint(decoder) == bitstream.fingerprint(base):
                decoders[name] = decoder

    # 2. the method at work: a short live finetune from base
    if finetune_steps:
        from icmbridge.train.finetune import FinetuneConfig, finetune

        _say(
            f"[2/5] live PatchGAN finetune of {base_model}'s first 2 decoder layers, "
            f"{finetune_steps} steps"
        )
        run_dir = out / "live-finetune"
        cfg = FinetuneConfig(
            out=str(run_dir),
            base=base_model,
            steps=finetune_steps,
            checkpoint_every=max(finetune_steps, 1),
            tensorboard=False,
            batch_size=4 if quick else 8,
        )
        decoders["live-finetune"] = load_codec(finetune(cfg))

    _say(f"[3/5] decoding the same bitstreams with {', '.join(decoders)}")
    coded: dict[str, list[Coded]] = {}
    for label, codec in decoders.items():
        coded[label] = decode_with_model(codec, streams, samples)
        if label == "base":
            for c, t in zip(coded[label], enc_times, strict=True):
                c.encode_s = t
        for c in coded[label]:
            _save_png(out / "decoded" / label / f"{c.name}.png", c.decoded)

    # 4. classical codecs at the base codec's rate, and post-filters on its output
    names = ["jpeg"] if quick else ["jpeg", "webp", "avif"]
    names = [n for n in names if available_codecs().get(n) is None]
    _say(f"[4/5] {', '.join(names)} at matched rate; post-filters on base")
    for name in names:
        coded[name] = []
        for s, c in zip(samples, coded["base"], strict=True):
            r = code_at_bpp(name, s.image, target_bpp=8 * c.num_bytes / s.image[..., 0].size)
            coded[name].append(
                Coded(s.name, s.image, r.decoded, len(r.data), r.encode_s, r.decode_s)
            )
            _save_png(out / "decoded" / name / f"{s.name}.png", r.decoded)
    val = get_set("faces", "train")[: 2 if quick else 4]
    val_pairs = [
        (
            array_to_tensor(v.image)[0],
            bitstream.decode(base, bitstream.encode(base, array_to_tensor(v.image)))[0],
        )
        for v in val
    ]
    filter_params = {}
    for kind in ("gaussian", "bilateral"):
        params, _ = search_filter(kind, val_pairs)
        filt = PostFilter(kind, params)
        label = f"base+{kind}"
        filter_params[label] = params
        coded[label] = []
        for c in coded["base"]:
            y = tensor_to_array(filt.apply(array_to_tensor(c.decoded)[0]))
            coded[label].append(Coded(c.name, c.original, y, c.num_bytes, c.encode_s, c.decode_s))
            _save_png(out / "decoded" / label / f"{c.name}.png", y)

    task = build_task("face")
    rate_points = [m for m in RATE_POINTS if m in shipped] if base_model == "base" else []
    curve_results = None
    if (not quick if curves is None else curves) and len(rate_points) >= 2:
        from icmbridge.evaluation.curves import run_curves

        _say(f"[4/5] rate curves: {', '.join(rate_points)} vs {', '.join(names)}")
        curve_results = run_curves(
            rate_points, names, samples, task, out / "curves", f"faces:test (first {len(samples)})"
        )

    # 5. the same metrics for all
    _say("[5/5] measuring (bpp, PSNR, SSIM, artifact score, face AP50) and writing the report")
    gts = [s.target() for s in samples]
    descriptions = {
        "base": "machine decoder (ICM codec trained for rate + face detection)",
        "human": "human decoder: first 2 decoder layers PatchGAN-finetuned (shipped)",
        "human-li": "human decoder, low-impact setting (shipped)",
        "live-finetune": f"first 2 decoder layers finetuned live in this demo ({finetune_steps} "
        "steps)",
        "base+gaussian": "base decoder + Gaussian filter (searched on training images)",
        "base+bilateral": "base decoder + bilateral filter (searched on training images)",
    }
    results: dict[str, Any] = {
        "title": "icmbridge demo",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "icmbridge demo"
        + (" --quick" if quick else "")
        + (f" --base {base_model}" if base_model != "base" else ""),
        "set": f"faces:test (first {len(samples)})",
        "task": task.name,
        "ground_truth": "annotations",
        "uncompressed": task_reference(task, samples),
        "codecs": {},
    }
    if curve_results is not None:
        results["rate_curves"] = curve_results["rate_curves"]
        results["bd_rate"] = curve_results["bd_rate"]
    for label, r in compare(coded, task, gts, reference="base").items():
        kind = "ours" if label in decoders else ("postfilter" if "+" in label else "classical")
        entry = {
            "kind": kind,
            "description": descriptions.get(label, f"{label} at matched bpp"),
            "mean": r["mean"],
            "ci": r["ci"],
            "images": r["images"],
        }
        if "vs" in r:
            entry["vs"] = r["vs"]
        if label in filter_params:
            entry["params"] = filter_params[label]
        results["codecs"][label] = entry
    results["seconds"] = round(time.perf_counter() - start, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    try:
        from icmbridge.report.html import build_report

        results["report"] = str(build_report(out, out / "report"))
    except ImportError:
        results["report"] = None
    return results


def summary_table(results: dict[str, Any]) -> str:
    """The demo's results as a terminal table: means with 95 % intervals over images, and the
    paired difference of each codec's AP50 and PSNR to base (``~``: the interval covers 0)."""
    from icmbridge.evaluation.stats import format_ci, format_diff

    ref = results.get("uncompressed") or {}
    rows = [
        f"{'codec':<16}{'bpp':>7}  {'PSNR dB [95% CI]':<22}{'SSIM':>6}{'artifact':>9}  "
        f"{'AP50 [95% CI]':<22}{'vs base: ΔPSNR dB':<24}ΔAP50 rel."
    ]
    for label, entry in results["codecs"].items():
        m, ci = entry["mean"], entry.get("ci") or {}
        diff = (entry.get("vs") or {}).get("diff") or {}

        def f(key: str, fmt: str, m: dict = m) -> str:
            return "—" if m.get(key) is None else format(m[key], fmt)

        dpsnr = format_diff(diff.get("psnr"), "+.2f") if diff else ""
        dap = format_diff(diff.get("task_ap50"), "+.1f", rel=True) if diff else ""
        psnr = format_ci(m.get("psnr"), ci.get("psnr"), ".2f")
        ap50 = format_ci(m.get("task_ap50"), ci.get("task_ap50"), ".3f")
        rows.append(
            f"{label:<16}{f('bpp', '.4f'):>7}  {psnr:<22}{f('ssim', '.3f'):>6}"
            f"{f('artifact_db', '+.2f'):>9}  {ap50:<22}{dpsnr:<24}{dap}"
        )
    if ref.get("task_ap50") is not None:
        unc = format_ci(ref["task_ap50"], (ref.get("ci") or {}).get("task_ap50"), ".3f")
        rows.append(f"{'uncompressed':<16}{'':>7}  {'':<22}{'':>6}{'':>9}  {unc}")
    rows.append(
        "[..] 95 % bootstrap interval over images; differences to base are paired (same images);"
        " ~ marks one whose interval covers 0"
    )
    for codec, bd in (results.get("bd_rate") or {}).items():
        fmt = {k: "—" if v is None else f"{v:+.1f}%" for k, v in bd.items()}
        rows.append(
            f"BD-rate of our rate curve vs {codec}: PSNR {fmt.get('psnr', '—')}, "
            f"AP50 {fmt.get('task_ap50', '—')}"
        )
    if any(v is None for bd in (results.get("bd_rate") or {}).values() for v in bd.values()):
        rows.append("(— : the two curves share no quality range, so no BD-rate exists)")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    results = run_demo(
        Path(args.out), args.quick, args.images, args.finetune_steps, args.curves, args.base
    )
    print(summary_table(results))
    print(f"\nresults: {Path(args.out) / 'results.json'}  ({results['seconds']} s)")
    if results.get("report"):
        print(f"report:  {results['report']}")
    return 0
