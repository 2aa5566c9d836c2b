"""Helpers shared by subcommands: JSON output, tables, argument validators
and bounded reading of user files.

Every check of user input that more than one subcommand needs lives here, so
the same bad input gets the same one-line error and exit status everywhere
(docs/exit-status.md).  Argument validators are argparse ``type=`` callables:
they run while the command line is parsed, before any work or host change.
"""

import argparse
import codecs
import contextlib
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, NoReturn, Optional

from ..errors import EXIT_USAGE, CaseError, IncompleteData, UsageError

# -- output ------------------------------------------------------------------


def print_json(obj: Any, out: Optional[IO[str]] = None) -> None:
    out = out or sys.stdout
    # one write: json.dump() writes every token separately (800,000 writes
    # for a 50,000-mapping case, half the command's time)
    out.write(json.dumps(obj, indent=1, sort_keys=False))
    out.write("\n")


def _printable(cell: Any) -> Any:
    # a lone surrogate (from a JSON "\udc80" escape) cannot be encoded as
    # UTF-8: show it escaped rather than crash half-way through a table
    if isinstance(cell, str):
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError:
            return cell.encode("utf-8", "backslashreplace").decode("utf-8")
    return cell


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], out: Optional[IO[str]] = None) -> None:
    from tabulate import tabulate  # 50 ms of imports: only commands that print a table pay

    out = out or sys.stdout
    rows = [[_printable(c) for c in r] for r in rows]
    out.write(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
    out.write("\n")


def error_text(exc: BaseException, limit: int = 300) -> str:
    """An error message for stderr: each line cut to *limit* characters, so
    a value of any length echoed in it (a path, a name) stays readable."""
    return "\n".join(
        line if len(line) <= limit else line[: limit - 60] + " ... " + line[-50:] for line in str(exc).splitlines()[:3]
    )


def status(msg: str) -> None:
    """Status lines go to stderr so stdout stays parseable."""
    print(msg, file=sys.stderr)


# -- argument parsing ----------------------------------------------------------


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a short error: argparse prints the whole usage (a dozen
    lines for watch or run) before the message; users get the message and
    where to look, in two lines, with argparse's exit status 2."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())  # argparse may echo a value with newlines
        if len(message) > 300:  # ... or of any length
            message = message[:240] + " ... " + message[-50:]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\nTry '{self.prog} --help'.\n")


#: the largest pid Linux hands out (PID_MAX_LIMIT on 64-bit, include/linux/threads.h)
PID_MAX_LIMIT = 4 * 1024 * 1024


def pid_arg(text: str) -> int:
    """``--pid``: a positive process id (the kernel's pids are 1..4194304)."""
    try:
        pid = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a process id (a positive number)") from None
    if not 0 < pid <= PID_MAX_LIMIT:
        raise argparse.ArgumentTypeError(
            f"{pid if abs(pid) < 10**12 else text[:20] + '...'} is not a process id (1..{PID_MAX_LIMIT})"
        )
    return pid


def add_max_rows_arg(p: argparse.ArgumentParser) -> None:
    """``--max-rows N`` of watch and replay: the bound on mapping rows."""
    from ..live.views import DEFAULT_MAX_ROWS

    p.add_argument(
        "--max-rows",
        type=positive_int_arg,
        default=DEFAULT_MAX_ROWS,
        metavar="N",
        help=f"at most N mapping rows (default {DEFAULT_MAX_ROWS}, up to about 1.5 KB each); the "
        "events of further mappings are counted in one 'other' row",
    )


def positive_int_arg(text: str) -> int:
    """A whole number >= 1 (and at most 10**9)."""
    try:
        v = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
    if not 1 <= v <= 10**9:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: give a whole number from 1 to 1e9")
    return v


def running_pid(pid: int, procfs: str = "/proc") -> int:
    """*pid* if that process exists now; else a UsageError naming it."""
    if not os.path.isdir(os.path.join(procfs, str(pid))):
        raise UsageError(f"--pid {pid}: no such process; give the pid of a running process (ps, pgrep)")
    return pid


def seconds_arg(text: str) -> float:
    """``--interval``/``--duration``: a finite number of seconds > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number of seconds") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: give a finite number of seconds above 0")
    if v > 10**9:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: at most 1e9 seconds")
    return v


def release_arg(text: str) -> str:
    """``--kernel``: a kernel release pmemtrace has a model profile for."""
    from ..model.profiles import select_profile

    if not text.strip():
        raise argparse.ArgumentTypeError("empty kernel release; give one such as 6.12 or 6.12.95+deb12-amd64")
    if len(text) > 200:
        raise argparse.ArgumentTypeError("kernel release too long; give one such as 6.12")
    try:
        select_profile(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except ValueError:  # components beyond Python's int conversion limit
        raise argparse.ArgumentTypeError(
            f"kernel release {text[:20]!r}...: numbers too large; give one such as 6.12"
        ) from None
    return text


def out_path_arg(text: str) -> str:
    """An output file: its directory must exist and be writable, and it
    must not be a directory itself (checked before any work is done)."""
    if not text:
        raise argparse.ArgumentTypeError("empty file name")
    if "\0" in text:
        raise argparse.ArgumentTypeError("file name contains a NUL byte")
    parent = os.path.dirname(text) or "."
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{short(text)}: directory {short(parent)} does not exist; create it first")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{short(text)} is a directory; give a file name")
    if not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"{short(text)}: directory {short(parent)} is not writable")
    return text


def code_arg(text: str) -> str:
    """A reason code: non-empty (an empty string would mean 'all')."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty reason code; 'pmemtrace reasons' lists them")
    return text


# -- bounded reading of user files ----------------------------------------------


def short(path: str, limit: int = 100) -> str:
    """*path* for a one-line message: long names are cut in the middle."""
    return path if len(path) <= limit else path[: limit // 2] + "..." + path[-limit // 2 :]


#: a case or scenario file larger than this is not one (the largest case
#: 'pmemtrace run' records is a few MiB); the limit keeps /dev/zero or a
#: multi-GiB file from being read into memory
CASE_MAX_BYTES = 64 << 20
#: JSON nesting deeper than this is not a case (cases nest 4 levels)
JSON_MAX_DEPTH = 32
#: integers in a case are 64-bit quantities (addresses, sizes, offsets)
CASE_INT_LIMIT = 1 << 64


def read_bounded(path: str, limit: int, what: str) -> bytes:
    """The bytes of regular file *path*, at most *limit*; UsageError otherwise."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            import stat

            if not stat.S_ISREG(st.st_mode):
                raise UsageError(f"{short(path)}: not a regular file; give a {what} file")
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise UsageError(f"{short(path)}: no such {what} file") from None
    except IsADirectoryError:
        raise UsageError(f"{short(path)}: is a directory; give a {what} file") from None
    except OSError as exc:
        raise UsageError(f"{short(path)}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise UsageError(f"{short(path)}: larger than {limit >> 20} MiB: not a {what} file")
    return data


def _json_error(path: str, exc: ValueError) -> CaseError:
    if isinstance(exc, json.JSONDecodeError):
        return CaseError("json", f"{short(path)}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    # int('1' * 5000): Python refuses decimal integers beyond 4300 digits
    return CaseError("json", f"{short(path)}: a number has too many digits ({str(exc)[:60]})")


def _bad_string(s: str) -> Optional[str]:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (\\u escape of half a character); use valid Unicode"
    return None


#: keys whose values are strings wherever they appear in a case
_STRING_KEYS = frozenset(("id", "mapping", "op", "advice", "mode", "map", "fs", "kernel", "name", "notes"))

_NUMERIC_RE = re.compile(r"^\s*-?(0[xX][0-9a-fA-F]*|\d+)")


def _where(chain: Any) -> str:
    parts: list[str] = []
    while chain is not None:
        chain, key = chain
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    text = "".join(reversed(parts)).lstrip(".")
    return text or "case"


def check_json_limits(obj: Any) -> None:
    """Reject what no case holds but could stall or crash later stages:
    nesting deeper than JSON_MAX_DEPTH, integers (or numeric strings) of 64
    bits or more, lone surrogates in strings, non-strings where the format
    has strings.  Raises CaseError naming the key.  One pass; the key path
    is only spelled out for the error."""
    stack: list[tuple[Any, int, Any]] = [(obj, 0, None)]
    pop, push = stack.pop, stack.append
    while stack:
        v, depth, where = pop()
        t = type(v)
        if t is str:
            if not v.isascii() and _bad_string(v):
                raise CaseError(_where(where), _bad_string(v) or "")
            if len(v) > 20:
                m = _NUMERIC_RE.match(v)
                if m and len(m.group(1).lstrip("0xX")) > 20:
                    raise CaseError(_where(where), "number out of range (cases hold 64-bit values)")
        elif t is int:
            if not -CASE_INT_LIMIT < v < CASE_INT_LIMIT:
                raise CaseError(_where(where), "integer out of range (cases hold 64-bit values)")
        elif t is float:
            if not math.isfinite(v) or abs(v) >= CASE_INT_LIMIT:
                raise CaseError(_where(where), "number out of range (cases hold 64-bit values)")
        elif t is dict:
            if depth >= JSON_MAX_DEPTH:
                raise CaseError(_where(where), f"nested deeper than {JSON_MAX_DEPTH} levels; cases nest 4")
            for k, x in v.items():
                if not k.isascii() and _bad_string(k):
                    raise CaseError(_where(where) + f".{k!a}", _bad_string(k) or "")
                if k in _STRING_KEYS and x is not None and type(x) is not str:
                    raise CaseError(_where((where, k)), f"expected a string, got {type(x).__name__}")
                push((x, depth + 1, (where, k)))
        elif t is list:
            if depth >= JSON_MAX_DEPTH:
                raise CaseError(_where(where), f"nested deeper than {JSON_MAX_DEPTH} levels; cases nest 4")
            for i, x in enumerate(v):
                push((x, depth + 1, (where, i)))


def load_json_file(path: str, what: str = "case", limit: int = CASE_MAX_BYTES) -> Any:
    """A JSON file read within bounds: at most *limit* bytes of a regular
    file, strict UTF-8, bounded nesting, 64-bit integers.  CaseError
    (exit 2) names what is wrong."""
    return _decode_json_checked(read_bounded(path, limit, what), path, what)


def _decode_json_checked(data: bytes, path: str, what: str) -> Any:
    import msgspec  # imported where used: 30 ms that replay's start-up need not pay

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaseError("json", f"{short(path)}: not UTF-8 text (byte {exc.start}); a {what} file is JSON") from None
    try:
        # msgspec decodes a big case about three times as fast as json.loads;
        # what it refuses goes to the stdlib, whose messages users know
        obj = msgspec.json.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    except RecursionError:
        raise CaseError("json", f"{short(path)}: nested deeper than {JSON_MAX_DEPTH} levels") from None
    else:
        check_json_limits(obj)
        return obj
    try:
        obj = json.loads(text)
    except RecursionError:
        raise CaseError("json", f"{short(path)}: nested deeper than {JSON_MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise _json_error(path, exc) from None
    check_json_limits(obj)
    return obj


def load_case_file(path: str) -> Any:
    """Read and validate a case file within bounds; returns a model Case."""
    from ..model import parse_case

    data = read_bounded(path, CASE_MAX_BYTES, "case")
    case = _typed_case(data)
    if case is not None:
        return case
    obj = _decode_json_checked(data, path, "case")
    _check_case_top(obj)
    try:
        return parse_case(obj)
    except (TypeError, AttributeError, KeyError) as exc:
        # a value of a type the case format never has (parse_case checks
        # the common ones and names the key; this is the safety net)
        raise CaseError("case", f"{short(path)}: a value has the wrong type ({exc}); see docs/case-format.md") from None


def _check_case_top(obj: Any) -> None:
    if isinstance(obj, dict) and isinstance(obj.get("version"), bool):
        # JSON true == 1 in Python: not a format version
        raise CaseError("version", f"expected the number 1, got {json.dumps(obj['version'])}")
    kernel = obj.get("kernel") if isinstance(obj, dict) else None
    if isinstance(kernel, str) and len(kernel) > 200:
        raise CaseError("kernel", "release string too long; give one such as '6.12.95+deb12-amd64'")


def _check_utf8(data: bytes, step: int = 1 << 20) -> None:
    """Raises UnicodeDecodeError unless *data* is UTF-8, a slice at a time:
    the text of a big case is never made (it would be as big as the file)."""
    dec = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    for i in range(0, len(view), step):
        dec.decode(view[i : i + step])
    dec.decode(b"", final=True)


def _typed_case(data: bytes) -> Any:
    """The case in *data* when it has the common shape (the accesses all
    plain reads and writes, see model.case.decode_accesses), decoded with
    msgspec straight into the model's Access objects: what explain spends
    most of its reading time on for a big case.  None for anything else,
    valid or not; the careful path then reads it, and names what is wrong,
    so this path changes no result and no message.  The accesses need no
    check_json_limits(): their types (bounded integers, booleans, strings
    from a fixed set) are checked as they are decoded."""
    import msgspec

    from ..errors import PmemtraceError
    from ..model.case import decode_accesses, parse_case, split_case

    try:
        _check_utf8(data)
        head, accesses = split_case(data)
        check_json_limits(head)
        _check_case_top(head)
        case = parse_case(head)
        if accesses is not None:
            case.accesses = decode_accesses(accesses, case.mappings)
    except (
        PmemtraceError,
        msgspec.MsgspecError,
        UnicodeDecodeError,
        TypeError,
        AttributeError,
        KeyError,
        ValueError,
        RecursionError,
    ):
        return None
    return case


@contextlib.contextmanager
def replay_errors(path: str) -> Iterator[None]:
    """Turn what a damaged trace file raises while it is read into one-line
    errors: a truncated or corrupt .gz/.xz (or plain text named .gz) and
    records of the wrong shape are incomplete or corrupt data (exit 3)."""
    import lzma
    import zlib

    if path != "-" and os.path.exists(path) and not os.path.isdir(path):
        import stat

        if not stat.S_ISREG(os.stat(path).st_mode):
            raise UsageError(f"{short(path)}: not a regular file; give a trace file or '-' for stdin")
    try:
        yield
    except EOFError:
        raise IncompleteData(
            f"{short(path)}: compressed data ends early (truncated file); replay what is left by decompressing it first"
        ) from None
    except (lzma.LZMAError, zlib.error) as exc:
        raise IncompleteData(
            f"{short(path)}: corrupt compressed data ({exc}); check the file, or rename it if it is not compressed"
        ) from None
    except RecursionError:
        raise IncompleteData(f"{short(path)}: a record is nested too deeply: not a pmemtrace recording") from None
    except OSError as exc:  # gzip.BadGzipFile is an OSError
        raise IncompleteData(
            f"{short(path)}: cannot read: {exc}; check the file, or rename it if it is not compressed"
        ) from None
