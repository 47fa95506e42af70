"""What every command's parser shares: the help formatter and the option groups declared once.

Nothing here imports torch or CompressAI: ``icmbridge --help`` and argument errors answer in
a fraction of a second. A default shown in help that the library also holds (the display model,
the tile size) is written here as a constant, and a test checks that the two agree.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util

from icmbridge.errors import InputError

#: ``--set`` help, for every command that reads an image set.
SET_HELP = (
    "image set, NAME[:PATH][:SPLIT][?KEY=VALUE,...], e.g. faces:test, kodak, bsds:test, "
    "yolo:data/coco128, widerface?min_size=30, coco128?take=0:32 (a fixed part of any set; "
    "bare names are found below $ICMBRIDGE_DATA; see `icmbridge data list`)"
)
#: ColorVideoVDP's display model by default (:data:`icmbridge.metrics.people.DEFAULT_DISPLAY`).
DEFAULT_DISPLAY = "standard_fhd"
#: Automatic tiling (:mod:`icmbridge.codec.tiling`): tiles of this side above this many pixels.
DEFAULT_TILE = 384
AUTO_TILE_ABOVE = 768 * 768


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults of every option and keep the descriptions' line breaks.

    Options whose parser default is None get theirs from :func:`document_defaults` instead.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def document_defaults(parser: argparse.ArgumentParser, defaults: dict[str, object]) -> None:
    """Append ``(default: …)`` from a config's defaults to options left at None in the parser.

    Training options keep None as the parser default so that options given on the command line
    can be told apart from defaults (presets and --resume need that).
    """
    for action in parser._actions:
        if action.default is None and action.dest in defaults and action.help:
            value = defaults[action.dest]
            if isinstance(value, list):
                value = ",".join(map(str, value))
            action.help += f" (default: {value})"


def add_command(
    sub: argparse._SubParsersAction, name: str, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand's parser with the shared formatter (description: ``help`` when None)."""
    return sub.add_parser(
        name, help=help, description=description or help, formatter_class=HelpFormatter
    )


def module_doc(module: str) -> str:
    """The docstring of ``module`` read from its source, without importing it (a workflow's
    docstring is its command's description; importing the workflow would cost its imports)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"icmbridge module {module} is missing: the installation is incomplete")
    with open(spec.origin, encoding="utf-8") as f:
        return ast.get_docstring(ast.parse(f.read())) or ""


def add_task_options(
    p: argparse.ArgumentParser, default: str | None = "face", allow_none: bool = True
) -> None:
    """``--task``, ``--task-weights``, ``--task-option``: the same three on every command."""
    none = ", or 'none' to skip task metrics" if allow_none else ""

    def task_name(value: str) -> str:
        if not allow_none and value == "none":
            raise argparse.ArgumentTypeError(f"{p.prog} needs a task network; 'none' is refused")
        return value

    p.add_argument(
        "--task",
        type=task_name,
        default=default,
        help=f"machine task: a name (see icmbridge.tasks), an 'icmbridge.tasks' entry point, "
        f"or module.path:factory{none}",
    )
    p.add_argument("--task-weights", help="local weights file of the task network")
    p.add_argument(
        "--task-option",
        dest="task_options",
        action="append",
        metavar="KEY=VALUE",
        help="keyword argument of the task's factory, repeatable (e.g. num_classes=3, "
        "box_score_thresh=0.3, min_size=512)",
    )


def add_people_options(p: argparse.ArgumentParser) -> None:
    """``--display`` and ``--no-people-metrics``: the same two on every command that scores."""
    p.add_argument(
        "--display",
        default=DEFAULT_DISPLAY,
        help="ColorVideoVDP's display model (any SDR display of the cvvdp package, e.g. "
        "standard_4k, standard_phone)",
    )
    p.add_argument(
        "--no-people-metrics",
        dest="people_metrics",
        action="store_false",
        help="skip ColorVideoVDP and SSIMULACRA 2 (about 1–2 s per Kodak image; faster runs)",
    )


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, help="CPU threads for torch")


def add_scoring_options(
    p: argparse.ArgumentParser, set_help: str = "", task_required: bool = False
) -> None:
    """What every scoring command asks: ``--set`` (default: the face benchmark's test split),
    the task (``task_required``: ``--task none`` refused) and the metrics for people."""
    p.add_argument("--set", default="faces:test", help=set_help + SET_HELP)
    add_task_options(p, allow_none=not task_required)
    add_people_options(p)


def comma_list(value: str) -> list[str]:
    """``a,b,,c`` → ``["a", "b", "c"]`` (an option's type)."""
    return [t for t in value.split(",") if t]


def set_threads(n: int | None) -> None:
    """``--threads``: torch's CPU threads (imports torch; only a running command calls it)."""
    if n is not None:
        if n < 1:
            raise InputError(f"--threads must be at least 1, got {n}")
        import torch

        torch.set_num_threads(n)
