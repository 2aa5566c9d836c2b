"""pmemtrace explain: run a case through the reference model."""

import argparse
import gc
import json
import os
import sys
from importlib import resources
from typing import IO, Any, Callable, Optional

import msgspec

from ..errors import UsageError
from ..events import decode_vm_fault
from ..model import explain, parse_case
from ..model.reasons import REASONS
from ._common import load_case_file, release_arg, table

EPILOG = """\
examples:
  pmemtrace explain --list-examples          # the embedded cases
  pmemtrace explain --example dax-pmd        # ndctl's dax-pmd test, predicted
  pmemtrace explain case.json                # a case recorded by 'pmemtrace run'
  pmemtrace explain case.json --kernel 7.2   # the same case on another kernel
  pmemtrace explain case.json --events       # plus the fs_dax events it would emit
  pmemtrace explain case.json --json         # machine-readable (compact JSON)
  pmemtrace explain case.json --indent 1     # indented JSON (the bytes --json wrote before it went compact)
  pmemtrace explain case.json --jsonl        # JSON Lines: a head line, one line per access, the summary

Outcomes: pmd / pud (a huge mapping), pte (4 KiB), huge-zero (the huge zero
page for a hole), zero-pte, cow (private copy), none (nothing new: already
mapped), sigbus, error (mmap or access refused), pinned (GUP).
Reasons are listed by 'pmemtrace reasons'.
"""


#: the largest --indent
MAX_INDENT = 64


def add_parser(sub):
    p = sub.add_parser(
        "explain",
        help="predict, access by access, what the kernel does for a case (no root, no pmem)",
        description="Predict what a kernel does for a device, a file's extents, mappings and "
        "accesses: PMD or PTE, the VM_FAULT result, the reason for every fallback, and the "
        "fs_dax events and probe hits it would produce.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("case", nargs="?", help="case file (JSON, format version 1)")
    p.add_argument("--example", metavar="NAME", help="run an embedded example case")
    p.add_argument("--list-examples", action="store_true", help="list the embedded example cases")
    p.add_argument(
        "--kernel", metavar="RELEASE", type=release_arg, help="override the case's kernel release (e.g. 6.1, 7.2.13)"
    )
    p.add_argument("--events", action="store_true", help="also print the fs_dax events the kernel would emit")
    p.add_argument("--json", action="store_true", help="JSON output (compact; see --indent)")
    p.add_argument(
        "--indent",
        type=int,
        metavar="N",
        help=f"indent JSON by N spaces (0-{MAX_INDENT}) as Python's json module does (implies --json; streamed too)",
    )
    p.add_argument(
        "--jsonl",
        action="store_true",
        help="JSON Lines for streaming consumers: a line with the profile, one line per "
        'access (the objects of --json\'s "results"), then {"summary": ...}',
    )
    p.set_defaults(func=run)
    return p


def example_names():
    root = resources.files("pmemtrace.model.examples")
    return sorted(e.name[:-5] for e in root.iterdir() if e.name.endswith(".json"))


def load_example(name):
    if name not in example_names():
        raise UsageError(f"no example named {name!r}; 'pmemtrace explain --list-examples' lists them")
    text = resources.files("pmemtrace.model.examples").joinpath(name + ".json").read_text()
    return parse_case(json.loads(text))


def _addr(a):
    return f"{a:#x}" if a is not None else "-"


def run(args):
    gc_was_enabled = gc.isenabled()
    try:
        return _run(args)
    finally:
        if gc_was_enabled:
            gc.enable()  # main() may run in-process (tests, embedding)


def _run(args):
    if args.list_examples:
        rows = []
        for name in example_names():
            c = load_example(name)
            rows.append((name, (c.notes or "").split(". ")[0][:70]))
        table(rows, ["example", "what it shows"])
        return 0
    if args.json or args.jsonl or args.indent is not None:
        # A case, its model state and its results are many small acyclic
        # objects: the cyclic collector would walk them again and again
        # (half the run time of a big case).  The process ends after this.
        gc.disable()
    if args.example:
        case = load_example(args.example)
    elif args.case:
        case = load_case_file(args.case)
    else:
        raise UsageError("explain needs a CASE file or --example NAME (see --list-examples)")
    if args.kernel:
        from ..model.profiles import parse_release

        parse_release(args.kernel)
        case.kernel = args.kernel
    if args.indent is not None and not 0 <= args.indent <= MAX_INDENT:
        # a bound, so that a mistyped number is an error, not gigabytes of spaces
        raise UsageError(f"--indent needs a number of spaces from 0 to {MAX_INDENT}")
    if args.jsonl and (args.json or args.indent is not None):
        raise UsageError("--jsonl and --json/--indent are different outputs: choose one")
    if args.json or args.jsonl or args.indent is not None:
        # JSON (compact or indented) and JSON Lines are written as the
        # model runs: no record of an access outlives its encoding
        pred = explain(case, stream=True)
        out = _binary_stdout()
        if args.jsonl:
            write_jsonl(pred, out)
        else:
            write_json(pred, out, indent=args.indent)
        out.flush()
        return 0
    pred = explain(case)
    src = args.example or os.path.basename(args.case)
    print(
        f"case {src}: kernel {case.kernel or '(none given)'} -> profile {pred.profile.name} "
        f"({pred.profile.verification_text()})"
    )
    rows = []
    for r in pred.results:
        what = r.outcome
        if r.op == "gup" and r.pinned is not None:
            what = f"pinned {r.pinned}/{(r.length + 4095) // 4096}"
        res = decode_vm_fault(r.result) if r.result else "-"
        if r.errno:
            res = {95: "EOPNOTSUPP", 22: "EINVAL", 14: "EFAULT"}.get(r.errno, f"errno {r.errno}")
        extra = ""
        if r.op in ("mmap", "munmap", "madvise"):
            what = r.outcome if r.outcome == "error" else "-"
        nf = len(r.faults)
        if r.op == "gup" and nf:
            extra = f" ({nf} fault{'s' if nf > 1 else ''})"
        rows.append((r.index, r.op, r.mapping, _addr(r.address), what + extra, res, r.reason or ""))
    table(rows, ["#", "op", "map", "address", "mapped", "result", "reason"])
    if args.events:
        print()
        for r in pred.results:
            for e in r.events():
                print(f"  [{r.index}] {e.name}: {e.format()}")
    s = pred.summary()
    print()
    parts = [f"{s['pmd']} PMD", f"{s['pte']} PTE"]
    if s["pud"]:
        parts.append(f"{s['pud']} PUD")
    if s["huge_zero"]:
        parts.append(f"{s['huge_zero']} huge zero")
    print("faults: " + ", ".join(parts) + f" ({sum(s['faults'].values())} in all)")
    if s["fallbacks"]:
        print("fallbacks by reason:")
        for code, n in sorted(s["fallbacks"].items(), key=lambda kv: -kv[1]):
            summary = REASONS[code].summary if code in REASONS else ""
            print(f"  {n:6d}  {code}: {summary}")
    if s["mapping_errors"]:
        for mid, code in s["mapping_errors"].items():
            print(f"mapping {mid} refused: {code}: {REASONS[code].summary}")
    if s["calls"]:
        print("probe hits: " + ", ".join(f"{k} {v}" for k, v in sorted(s["calls"].items())))
    vm = {k: v for k, v in s["vmstat"].items() if v}
    if vm:
        print("vmstat: " + ", ".join(f"{k} +{v}" for k, v in vm.items()))
    return 0


# --------------------------------------------------------------------------
# JSON output.  msgspec was measured against orjson and the stdlib on the
# benchmark case (benchmarks/bench_explain_e2e.py): it encodes the results
# about twice as fast as orjson and ten times as fast as json.dumps.  The
# results are encoded in chunks so that the whole text never sits in memory.

_encode: Callable[[Any], bytes] = msgspec.json.Encoder().encode


def _dumps(obj: Any) -> bytes:
    """Compact JSON; falls back to the stdlib for what msgspec refuses
    (integers beyond 64 bits), with the same bytes."""
    try:
        return _encode(obj)
    except (TypeError, OverflowError, msgspec.EncodeError):
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class _TextSink:
    """Bytes written to a text stream (sys.stdout replaced by a StringIO)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: Any) -> None:  # bytes-like
        self._stream.write(bytes(data).decode())

    def flush(self) -> None:
        self._stream.flush()


def _binary_stdout() -> Any:
    return getattr(sys.stdout, "buffer", None) or _TextSink(sys.stdout)


def write_json(pred: Any, out: IO[bytes], indent: Optional[int] = None) -> None:
    """``pred.to_json()`` as JSON, compact unless *indent* is given (then byte
    for byte what ``json.dump(..., indent=N)`` writes; ``indent=1`` is the
    output of pmemtrace before compact JSON).  Both are streamed: the results
    are encoded as the model runs, in blocks (:func:`_write_indented`)."""
    if indent is not None:
        _write_indented(pred, out, indent)
        return
    head = _dumps(pred.head_json())
    out.write(head[:-1] + b',"results":[')
    first = True
    for block in pred.iter_blocks(_dumps, b","):
        if not first:
            out.write(b",")
        first = False
        out.write(block)
    out.write(b'],"summary":' + _dumps(pred.summary()) + b"}\n")


def _write_indented(pred: Any, out: IO[bytes], n: int) -> None:
    """write_json(indent=n): the stdlib's layout (``"key": value``, one item
    a line, ``[]``/``{}`` when empty); the head and the summary by the
    stdlib itself, each result as :func:`_indented_result` writes it, and
    the results that share a template (Prediction.iter_encoded(), the
    compiled core) from an indented template."""
    pad1, pad2 = b"\n" + b" " * n, b"\n" + b" " * (2 * n)
    head = json.dumps(pred.head_json(), indent=n).encode()  # ends with "\n}"
    out.write(head[:-2] + b"," + pad1 + b'"results": [')
    first = True
    for block in pred.iter_blocks(lambda obj: _indented_result(obj, n), b"," + pad2):
        out.write(pad2 if first else b"," + pad2)
        first = False
        out.write(block)
    summary = json.dumps(pred.summary(), indent=n).replace("\n", "\n" + " " * n).encode()
    out.write((b"]" if first else pad1 + b"]") + b"," + pad1 + b'"summary": ' + summary + b"\n}\n")


def _indented_result(obj: Any, n: int) -> bytes:
    """A result as ``json.dumps(doc, indent=n)`` writes it inside
    ``doc["results"]`` (depth 2).  msgspec.json.format() lays out compact
    JSON as the stdlib does for n > 0 but copies strings and numbers as they
    are: the stdlib escapes non-ASCII, DEL and control characters its own
    way (and writes floats otherwise, which results never hold: integers,
    strings, null, lists and objects), so a result with any of those is
    dumped by the stdlib instead."""
    data = b"[[" + _dumps(obj) + b"]]"
    if n > 0 and data.isascii() and b"\x7f" not in data and b"\\u" not in data:
        text = msgspec.json.format(data, indent=n)
    else:
        text = json.dumps([[obj]], indent=n).encode()
    # strip "[\n<n>[\n<2n>" and "\n<n>]\n]"
    return text[4 + 3 * n : len(text) - (4 + n)]


def write_jsonl(pred: Any, out: IO[bytes]) -> None:
    """JSON Lines: ``{profile, kernel, profile_detail}``, one result object per
    access, then ``{"summary": ...}``."""
    out.write(_dumps(pred.head_json()) + b"\n")
    for block in pred.iter_blocks(_dumps, b"\n"):
        out.write(block)
        out.write(b"\n")
    out.write(_dumps({"summary": pred.summary()}) + b"\n")
