"""``icmbridge demo | compare | curves | ablate``: the jobs of :mod:`icmbridge.workflows`.

Each command's description is its workflow module's docstring (read without importing it);
``run`` imports the workflow when the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from icmbridge.commands import options as opt

Sub = argparse._SubParsersAction


def _registrar(name: str, help: str) -> Callable[[Sub], None]:
    """``register(sub)`` of one workflow's command: its options, then ``--threads``."""

    def register(sub: Sub) -> None:
        p = opt.add_command(sub, name, help, opt.module_doc(f"icmbridge.workflows.{name}"))
        OPTIONS[name](p)
        opt.add_threads(p)
        p.set_defaults(func=run, workflow=name)

    register.__name__ = register.__qualname__ = f"register_{name}"
    return register


def run(args: argparse.Namespace) -> int:
    """Run the command's workflow: ``icmbridge.workflows.<name>.run(args)``."""
    from icmbridge.workflows import ablate, compare, curves, demo

    opt.set_threads(args.threads)
    job = {"demo": demo, "compare": compare, "curves": curves, "ablate": ablate}[args.workflow]
    return job.run(args)


def _demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", default="out/demo", help="folder for files, results, report")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a ~2-minute version (fewer images, a short live finetune, JPEG only)",
    )
    p.add_argument("--images", type=int, help="number of demo images (default: 8; quick: 3)")
    steps = "steps of the live finetune (default: 150; quick: 10; 0 skips it)"
    p.add_argument("--finetune-steps", type=int, help=steps)
    p.add_argument(
        "--no-curves",
        dest="curves",
        action="store_false",
        default=None,
        help="skip the rate curves over the shipped rate points (always skipped with --quick)",
    )
    p.add_argument("--base", default="base", help="the codec that writes the bitstreams")
    p.add_argument(
        "--decoders",
        help="decoders finetuned from --base, comma separated (names, paths or LABEL=PATH); "
        "default: the shipped human decoders that read --base's bitstreams",
    )
    opt.add_scoring_options(p, task_required=True)
    p.add_argument(
        "--filter-set",
        help="images the post-filters' parameters are searched on (default: the training split "
        "of --set, else photos:train)",
    )


def _compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", default="base", help="the codec that writes the bitstreams")
    p.add_argument(
        "--decoders",
        default="human,human-li",
        help="comma-separated decoders finetuned from --base (names or paths; LABEL=PATH names "
        "one); '' for none",
    )
    codecs = "classical codecs at matched bytes; ''"
    p.add_argument("--codecs", default="jpeg,webp,avif,heif", help=codecs)
    opt.add_scoring_options(p)
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument(
        "--no-images",
        dest="images",
        action="store_false",
        help="do not write originals and decoded images (the report then shows no crops)",
    )
    p.add_argument(
        "--reference",
        default="base",
        help="the codec every other one is compared with, image by image (e.g. a λ_a = 0 "
        "control, to see what the adversarial term adds)",
    )


def _curves(p: argparse.ArgumentParser) -> None:
    models = "our rate points, comma separated names or paths"
    p.add_argument("--models", default="base-low,base,base-high", help=models)
    p.add_argument("--codecs", default="jpeg,webp,avif,heif", help="classical codecs")
    opt.add_scoring_options(p)
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("-o", "--out", default="out/curves", help="output folder")


def _ablate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", default="base", help="base model to finetune (name or path)")
    p.add_argument("-o", "--out", default="out/ablation", help="output folder")
    p.add_argument("--steps", type=int, default=400, help="finetuning steps per row")
    p.add_argument("--seed", type=int, default=0, help="seed of every row")
    opt.add_scoring_options(p, set_help="held-out images to score: ", task_required=True)
    p.add_argument("--images", type=int, default=24, help="held-out images to score (the first N)")
    data = "finetuning sets, comma separated (default: finetune's, faces,photos)"
    p.add_argument("--data", type=opt.comma_list, help=data)
    p.add_argument(
        "--only",
        choices=["table1", "lambda", "layers"],
        action="append",
        help="run only these parts (repeatable; default: all)",
    )


OPTIONS = {"demo": _demo, "compare": _compare, "curves": _curves, "ablate": _ablate}
register_demo = _registrar(
    "demo", "the main job: code, decode twice, finetune live, compare, report"
)
register_compare = _registrar(
    "compare", "decoders of one set of bitstreams vs classical codecs at the same bytes, with CIs"
)
register_curves = _registrar(
    "curves", "rate curves (PSNR, JOD, SSIMULACRA 2, task AP50 vs bpp) and BD-rates"
)
register_ablate = _registrar("ablate", "run the paper's Table 1 rows, λ_a and layer sweeps")
