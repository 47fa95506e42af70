"""The ``icmbridge`` command: one console script, one subcommand per job.

Each command lives next to the code it drives and exposes ``register(subparsers)``, which adds its
parser and sets ``func`` to a callable taking the parsed arguments and returning an exit code.
Errors meant for the user (:class:`~icmbridge.errors.IcmError`, unreadable files) end the program
with one ``error:`` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from icmbridge import __version__
from icmbridge.errors import IcmError

# Modules that contribute subcommands, in the order ``--help`` lists them.
COMMAND_MODULES = [
    "icmbridge.workflows.demo",
    "icmbridge.codec.commands",
    "icmbridge.data.commands",
    "icmbridge.train.commands",
    "icmbridge.evaluation.commands",
    "icmbridge.workflows.compare",
    "icmbridge.workflows.curves",
    "icmbridge.workflows.ablate",
    "icmbridge.report.commands",
    "icmbridge.server.commands",
]


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
    for name in COMMAND_MODULES:
        # a listed command module that is missing is a broken install, never a silent gap in
        # the command list
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise ImportError(
                f"icmbridge command module {name} cannot be imported ({exc}): the installation "
                "is incomplete"
            ) from exc
        module.register(sub)
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


if __name__ == "__main__":
    sys.exit(main())
