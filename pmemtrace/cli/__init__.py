"""The ``pmemtrace`` command line: one module per subcommand.

Each module in :data:`COMMANDS` provides ``add_parser(subparsers)``, which
registers its subparser and sets ``func`` to a callable ``(args) -> int``.
Errors the user can act on are :class:`pmemtrace.errors.PmemtraceError`:
printed as one line on stderr, never a traceback.
"""

import argparse
import importlib
import sys

from .. import __version__
from ..errors import PmemtraceError

# Order is the order shown in --help.
COMMANDS = [
    "explain",
    "model",
    "reasons",
    "run",
    "watch",
    "replay",
    "check",
    "diagnose",
    "lab",
    "cleanup",
]


def _load(name):
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:  # subcommand not written yet
        if exc.name == f"{__name__}.{name}":
            return None
        raise


def make_parser():
    parser = argparse.ArgumentParser(
        prog="pmemtrace",
        description="Explain Linux DAX mapping behaviour: which mappings get 2 MiB "
        "(PMD) pages, which fall back to 4 KiB, and why.",
    )
    parser.add_argument("--version", action="version", version=f"pmemtrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = _load(name)
        if mod is not None:
            mod.add_parser(sub)
    return parser


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except PmemtraceError as exc:
        print(f"pmemtrace: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("pmemtrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
