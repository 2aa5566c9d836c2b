"""The ``pmemtrace`` command line: one module per subcommand.

Each module in :data:`COMMANDS` provides ``add_parser(subparsers)``, which
registers its subparser and sets ``func`` to a callable ``(args) -> int``.
Errors the user can act on are :class:`pmemtrace.errors.PmemtraceError`:
printed as one line on stderr, never a traceback.

Library code reports progress through :mod:`logging` (loggers under
``pmemtrace``); the CLI owns the handler and the level: status lines
(INFO) by default, ``-q`` warnings only, ``-qq`` errors only, ``-v`` also
debug detail.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from .. import __version__
from ..errors import PmemtraceError
from ._common import ArgumentParser, error_text

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


class _Formatter(logging.Formatter):
    """``pmemtrace: message``; warnings and errors say so, debug names its logger."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            msg = f"{record.levelname.lower()}: {msg}"
        elif record.levelno < logging.INFO:
            msg = f"debug: {record.name}: {msg}"
        return f"pmemtrace: {msg}"


def log_level(verbose: int, quiet: int) -> int:
    """The level for ``-v``/``-q`` counts: INFO by default, one step per flag.

    >>> [logging.getLevelName(log_level(v, q)) for v, q in ((0, 0), (1, 0), (0, 1), (0, 2))]
    ['INFO', 'DEBUG', 'WARNING', 'ERROR']
    """
    return max(logging.DEBUG, min(logging.ERROR, logging.INFO + 10 * (quiet - verbose)))


def setup_logging(level: int) -> None:
    """One stderr handler on the ``pmemtrace`` logger (replaced, not added, on a second call)."""
    logger = logging.getLogger("pmemtrace")
    for h in list(logger.handlers):
        if getattr(h, "_pmemtrace_cli", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    handler._pmemtrace_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:  # subcommand not written yet
        if exc.name == f"{__name__}.{name}":
            return None
        raise


def _command_in(argv: list[str]) -> str | None:
    """The subcommand *argv* runs, if it names one of :data:`COMMANDS`.

    The global options before it take no values (``-v``, ``-q``, ``-h``,
    ``--version``), so the first word not starting with ``-`` is the
    command.  ``None`` (anything unusual: no command, ``--``, an unknown
    word) means "load every subcommand", so help and errors stay argparse's.

    >>> _command_in(["-q", "replay", "t.dat"]), _command_in(["--help"]), _command_in(["nope"])
    ('replay', None, None)
    """
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def make_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with *only*, just that subcommand's (start-up: each
    subcommand module imports what its command needs, and ``replay`` should
    not pay for ``diagnose``'s imports)."""
    parser = ArgumentParser(
        prog="pmemtrace",
        description="Explain Linux DAX mapping behaviour: which mappings get 2 MiB "
        "(PMD) pages, which fall back to 4 KiB, and why.",
    )
    parser.add_argument("--version", action="version", version=f"pmemtrace {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more detail on stderr (debug)")
    parser.add_argument(
        "-q", "--quiet", action="count", default=0, help="less on stderr: -q warnings and errors only, -qq errors only"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else [only]:
        mod = _load(name)
        if mod is not None:
            mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = make_parser(_command_in(argv))
    args = parser.parse_args(argv)
    setup_logging(log_level(args.verbose, args.quiet))
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except PmemtraceError as exc:
        print(f"pmemtrace: {error_text(exc)}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("pmemtrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
