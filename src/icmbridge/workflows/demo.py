"""``icmbridge demo``: the whole method on the embedded data and models, in minutes.

1. compress the demo images (the held-out face benchmark) with the shipped ``base`` codec into
   real ``.icmb`` files;
2. train a decoder for people live from ``base`` for a few minutes (``icmbridge finetune``'s
   default: the base's decoder plus a refinement CNN, on ŷ of the training images cached once);
3. decode the same files with the machine decoder (``base``), the human decoders (``human``,
   ``human-li``) and the live one — one bitstream, several decoders;
4. code the images with JPEG / WebP / AVIF at the base codec's rate, image by image, and apply the
   post-filters (parameters searched on training images) to the base decoder's output; with the
   shipped rate points (``base-low``, ``base``, ``base-high``), draw rate curves of ours and of
   each classical codec on the same images, with BD-rates (``icmbridge curves``, in small);
5. measure everything alike (bpp from real bytes, PSNR, SSIM, ColorVideoVDP and SSIMULACRA 2 on
   the 8-bit decoded images, artifact score, face AP50) and write ``results.json``, the decoded
   images and an HTML report.

Steps 1, 3 and 4 are one call of ``compare_decoders`` (as in ``compare`` and ``ablate``). The
defaults are the shipped models, the face benchmark and MTCNN; ``--base``, ``--set``, ``--task``
(``--task-weights``, ``--task-option``) run the same job on any base, image set and task network.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from icmbridge.errors import InputError
from icmbridge.metrics.people import DEFAULT_DISPLAY

RATE_POINTS = ("base-low", "base", "base-high")
"""Shipped models of one family at different rates: the demo's rate curves use those present."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _shipped_decoders(base: Any) -> dict[str, str]:
    """The shipped human decoders that read ``base``'s bitstreams (same encoder fingerprint)."""
    from icmbridge.codec.bitstream import fingerprint
    from icmbridge.codec.store import available_models, load_codec

    shipped = available_models()
    want = fingerprint(base)
    return {
        n: n for n in ("human", "human-li") if n in shipped and fingerprint(load_codec(n)) == want
    }


def run_demo(
    out: Path,
    quick: bool = False,
    n_images: int | None = None,
    finetune_steps: int | None = None,
    curves: bool | None = None,
    base: str = "base",
    set_spec: str = "faces:test",
    task: Any = None,
    decoders: dict[str, str] | None = None,
    filter_set: str | None = None,
    command: str | None = None,
    people_metrics: bool = True,
    display: str = DEFAULT_DISPLAY,
) -> dict[str, Any]:
    """The demo on any base, set and task (defaults: the shipped base, the face benchmark,
    MTCNN). ``task`` is a built :class:`~icmbridge.tasks.MachineTask` (None: ``face``).
    ``people_metrics``: score ColorVideoVDP (on ``display``) and SSIMULACRA 2 too."""
    from icmbridge.baselines.classical import available_codecs
    from icmbridge.codec.store import available_models, load_codec
    from icmbridge.data import get_set
    from icmbridge.metrics.people import PeopleMetrics
    from icmbridge.tasks import build_task
    from icmbridge.workflows.compare import compare_decoders

    start = time.perf_counter()
    people = PeopleMetrics(display) if people_metrics else None
    shipped = available_models()
    if base == "base" and "base" not in shipped:
        raise InputError("the shipped base model is missing from weights/ (see weights/base.md)")
    n_images = n_images or (3 if quick else 8)
    if finetune_steps is None:
        finetune_steps = 10 if quick else 150
    if n_images < 1 or finetune_steps < 0:
        raise InputError("--images must be ≥ 1 and --finetune-steps ≥ 0")
    task = task if task is not None else build_task("face")
    out.mkdir(parents=True, exist_ok=True)
    samples = get_set(set_spec, "test")[:n_images]
    if not samples:
        raise InputError(f"{set_spec} holds no images")
    base_codec = load_codec(base)
    decoders = dict(_shipped_decoders(base_codec) if decoders is None else decoders)

    # the method at work: a short live finetune from base
    if finetune_steps:
        decoders["live-finetune"] = _live_finetune(out, base, finetune_steps, quick)

    filter_set, filters = _searched_filters(base_codec, set_spec, filter_set, quick)

    names = ["jpeg"] if quick else ["jpeg", "webp", "avif"]
    names = [n for n in names if available_codecs().get(n) is None]
    _say(
        f"[2/3] {len(samples)} images coded once with {base}, decoded by "
        f"{', '.join(['base', *decoders])}; {', '.join(names)} at matched bytes; post-filters"
    )
    compared = compare_decoders(
        base_codec,
        decoders,
        names,
        samples,
        task,
        out,
        postfilters=filters,
        descriptions=_descriptions(base, finetune_steps, filter_set),
        people=people,
    )

    rate_points = [m for m in RATE_POINTS if m in shipped] if base == "base" else []
    curve_results = None
    if (not quick if curves is None else curves) and len(rate_points) >= 2:
        from icmbridge.workflows.curves import run_curves

        _say(f"[3/3] rate curves: {', '.join(rate_points)} vs {', '.join(names)}")
        curve_results = run_curves(
            rate_points,
            names,
            samples,
            task,
            out / "curves",
            f"{set_spec} (first {len(samples)})",
            people=people,
        )

    header = {
        "command": command or "icmbridge demo" + (" --quick" if quick else ""),
        "set_spec": set_spec,
        "base": base,
        "task": task,
        "people": people,
    }
    return _write_results(out, header, samples, compared, curve_results, start)


def _live_finetune(out: Path, base: str, finetune_steps: int, quick: bool) -> str:
    """Train a decoder for people from base for a few steps (finetune's default recipe)."""
    from icmbridge.train.finetune import FinetuneConfig, finetune

    _say(
        f"[1/3] live training of a decoder for people on {base}'s bitstreams "
        f"(finetune's default recipe), {finetune_steps} steps"
    )
    cfg = FinetuneConfig(
        out=str(out / "live-finetune"),
        base=str(base),
        steps=finetune_steps,
        checkpoint_every=max(finetune_steps, 1),
        tensorboard=False,
        batch_size=4 if quick else 8,
    )
    return str(finetune(cfg))


def _searched_filters(
    base_codec: Any, set_spec: str, filter_set: str | None, quick: bool
) -> tuple[str, dict[str, Any]]:
    """Post-filters on base's output, their parameters searched on training images.

    Returns (the set searched on, label → :class:`PostFilter`).
    """
    from icmbridge.baselines.postfilter import PostFilter, search_filter
    from icmbridge.codec import bitstream
    from icmbridge.data import get_set, train_split
    from icmbridge.imageio import array_to_tensor

    filter_set = filter_set or train_split(set_spec) or "photos:train"
    val = get_set(filter_set, "train")[: 2 if quick else 4]
    val_pairs = [
        (
            array_to_tensor(v.image)[0],
            bitstream.decode(base_codec, bitstream.encode(base_codec, array_to_tensor(v.image)))[0],
        )
        for v in val
    ]
    filters = {f"base+{k}": PostFilter(k, search_filter(k, val_pairs)[0]) for k in _FILTERS}
    return filter_set, filters


def _descriptions(base: str, finetune_steps: int, filter_set: str) -> dict[str, str]:
    """What the report says of each decoder and post-filter of the demo."""
    descriptions = {
        "base": f"machine decoder of {base} (writes the bitstreams)",
        "human": "human decoder: base's decoder + refinement CNN, trained for people (shipped)",
        "human-li": "human decoder, low-impact setting (shipped)",
        "live-finetune": f"decoder for people trained live in this demo ({finetune_steps} "
        "steps, finetune's default recipe)",
        "base+gaussian": f"base decoder + Gaussian filter (searched on {filter_set})",
        "base+bilateral": f"base decoder + bilateral filter (searched on {filter_set})",
    }
    if base == "base":
        descriptions["base"] = "machine decoder (ICM codec trained for rate + face detection)"
    return descriptions


def _write_results(
    out: Path,
    header: dict[str, Any],
    samples: list,
    compared: dict[str, Any],
    curve_results: Any,
    start: float,
) -> dict[str, Any]:
    """Write results.json and the HTML report; returns the results with the report's path.

    ``header``: the run's command, set_spec, base, task and people scorer.
    """
    from icmbridge.evaluation.core import task_reference
    from icmbridge.evaluation.results import CodecResult, Results
    from icmbridge.metrics.people import people_info

    set_spec, task, people = header["set_spec"], header["task"], header["people"]
    gts = [s.target() for s in samples]
    results = Results(
        kind="demo",
        title="icmbridge demo",
        command=header["command"],
        set=f"{set_spec} (first {len(samples)})",
        n_images=len(samples),
        base=str(header["base"]),
        reference="base",
        task=task.name,
        ground_truth="annotations" if all(g is not None for g in gts) else "pseudo",
        uncompressed=task_reference(task, samples),
        codecs={k: CodecResult.from_dict(v) for k, v in compared["codecs"].items()},
        unavailable=compared["unavailable"],
        people_metrics=people_info(people),
    )
    if curve_results is not None:
        results.rate_curves = curve_results.rate_curves
        results.bd_rate = curve_results.bd_rate
        results.bd_rate_ci = curve_results.bd_rate_ci
    results.seconds = round(time.perf_counter() - start, 1)
    results.write(out / "results.json")
    data = results.to_dict()
    try:
        from icmbridge.report.html import build_report

        data["report"] = str(build_report(out, out / "report"))
    except ImportError:
        data["report"] = None
    return data


_FILTERS = ("gaussian", "bilateral")


def summary_table(results: dict[str, Any]) -> str:
    """The demo's results as a terminal table: means with 95 % intervals over images, and the
    paired difference of each codec's AP50 and PSNR to base (``~``: the interval covers 0); then
    the same for people (ColorVideoVDP JOD, SSIMULACRA 2) where they were measured."""
    from icmbridge.evaluation.stats import format_ci, format_diff
    from icmbridge.metrics.catalogue import REL_FMT, get
    from icmbridge.workflows.curves import bd_rate_line, bd_rate_texts

    ref = results.get("uncompressed") or {}
    rows = [
        f"{'codec':<16}{'bpp':>7}  {'PSNR dB [95% CI]':<22}{'SSIM':>6}{'artifact':>9}  "
        f"{'AP50 [95% CI]':<22}{'vs base: ΔPSNR dB':<24}ΔAP50 rel."
    ]
    for label, entry in results["codecs"].items():
        m, ci = entry["mean"], entry.get("ci") or {}
        diff = (entry.get("vs") or {}).get("diff") or {}

        def f(key: str, m: dict = m) -> str:
            return get(key).text(m.get(key))

        def with_ci(key: str, m: dict = m, ci: dict = ci) -> str:
            return format_ci(m.get(key), ci.get(key), get(key).fmt)

        dpsnr = format_diff(diff.get("psnr"), get("psnr").diff_fmt) if diff else ""
        dap = format_diff(diff.get("task_ap50"), REL_FMT, rel=True) if diff else ""
        psnr, ap50 = with_ci("psnr"), with_ci("task_ap50")
        rows.append(
            f"{label:<16}{f('bpp'):>7}  {psnr:<22}{f('ssim'):>6}"
            f"{f('artifact_db'):>9}  {ap50:<22}{dpsnr:<24}{dap}"
        )
    if ref.get("task_ap50") is not None:
        unc = format_ci(
            ref["task_ap50"], (ref.get("ci") or {}).get("task_ap50"), get("task_ap50").fmt
        )
        rows.append(f"{'uncompressed':<16}{'':>7}  {'':<22}{'':>6}{'':>9}  {unc}")
    rows += people_rows(results)
    rows.append(
        "[..] 95 % bootstrap interval over images; differences to base are paired (same images);"
        " ~ marks one whose interval covers 0"
    )
    bd_texts = bd_rate_texts(results.get("bd_rate"), results.get("bd_rate_ci"))
    for codec, fmt in bd_texts.items():
        rows.append(f"BD-rate of our rate curve vs {codec}: {bd_rate_line(fmt)}")
    if any(v is None for bd in (results.get("bd_rate") or {}).values() for v in bd.values()):
        rows.append("(— : the two curves share no quality range, so no BD-rate exists)")
    return "\n".join(rows)


def people_rows(results: dict[str, Any]) -> list[str]:
    """The people's metrics block of the summary (empty when they were not measured)."""
    from icmbridge.evaluation.stats import format_ci, format_diff
    from icmbridge.metrics.catalogue import get

    codecs = results["codecs"]
    if not any(c["mean"].get("cvvdp_jod") is not None for c in codecs.values()):
        return []
    display = (results.get("people_metrics") or {}).get("display", "?")
    rows = [
        "",
        f"for people: ColorVideoVDP (JOD, 10 = no visible difference; display {display}) and "
        "SSIMULACRA 2 (90 visually lossless, 50 medium, < 0 heavy)",
        f"{'codec':<16}{'JOD [95% CI]':<22}{'SSIMULACRA 2 [95% CI]':<24}"
        f"{'vs base: ΔJOD':<24}ΔSSIMULACRA 2",
    ]
    for label, entry in codecs.items():
        m, ci = entry["mean"], entry.get("ci") or {}
        diff = (entry.get("vs") or {}).get("diff") or {}
        jod, s2 = (format_ci(m.get(k), ci.get(k), get(k).fmt) for k in ("cvvdp_jod", "ssimulacra2"))
        djod, ds2 = (
            format_diff(diff.get(k), get(k).diff_fmt) if diff else ""
            for k in ("cvvdp_jod", "ssimulacra2")
        )
        rows.append(f"{label:<16}{jod:<22}{s2:<24}{djod:<24}{ds2}")
    return rows


def run(args: argparse.Namespace) -> int:
    import shlex

    from icmbridge.metrics.people import people_argv, people_options
    from icmbridge.tasks import task_argv, task_from_args
    from icmbridge.workflows.compare import _decoders

    task = task_from_args(args)  # never None: the parser refuses --task none here
    words = ["icmbridge", "demo"] + (["--quick"] if args.quick else [])
    if (args.base, args.set, args.task) != ("base", "faces:test", "face"):
        words += ["--base", args.base, "--set", args.set, *task_argv(args)]
    words += people_argv(args)
    results = run_demo(
        Path(args.out),
        args.quick,
        args.images,
        args.finetune_steps,
        args.curves,
        base=args.base,
        set_spec=args.set,
        task=task,
        decoders=_decoders(args.decoders) if args.decoders is not None else None,
        filter_set=args.filter_set,
        command=shlex.join(words),
        **people_options(args),
    )
    print(summary_table(results))
    print(f"\nresults: {Path(args.out) / 'results.json'}  ({results['seconds']} s)")
    if results.get("report"):
        print(f"report:  {results['report']}")
    return 0
