"""The ``icmbridge`` command: one console script, one subcommand per job, at the top of the
package.

Layers, top down: ``icmbridge.commands`` (argparse and a thin ``run`` per command), then
``icmbridge.workflows`` (demo, ablate, compare, curves: jobs that chain the library), then the
library (codec, tasks, train, evaluation, ...). Imports go downwards only; a test reads the
import graph (``tests/test_architecture.py``). Each command module exposes ``register(sub)`` (or
one per command), which adds its parsers and sets ``func`` to a callable taking the parsed
arguments and returning an exit code; the callable imports what it runs, so ``--help`` and
argument errors answer without torch. Errors meant for the user
(:class:`~icmbridge.errors.IcmError`, unreadable files) end the program with one ``error:`` line
on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from icmbridge import __version__
from icmbridge.commands import codec, data, evaluate, report, serve, train, workflows
from icmbridge.commands.options import HelpFormatter
from icmbridge.errors import IcmError

#: What adds the subcommands, in the order ``--help`` lists them.
COMMANDS = [
    workflows.register_demo,
    codec.register,
    data.register,
    train.register,
    evaluate.register,
    workflows.register_compare,
    workflows.register_curves,
    workflows.register_ablate,
    report.register,
    serve.register,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icmbridge",
        description=(
            "Learned image coding for machines that humans can look at too: one bitstream, a "
            "machine decoder and a PatchGAN-finetuned human decoder."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"icmbridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # CompressAI 1.2.8 still calls torch.jit.script at import; that is not the user's business.
    warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except IcmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # files and folders: missing, unreadable, full disk
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "build_parser", "main"]
