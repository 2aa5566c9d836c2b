"""Parsers for traces users already have, and for our own recordings.

Three inputs, one output (:class:`pmemtrace.events.Event`, ``source="replay"``):

* raw ``trace_pipe`` / ``trace`` text (ftrace's default output, with or
  without the latency-format flags column and the ``(tgid)`` column),
* ``trace-cmd report`` text (same line shape, no flags column by default,
  ``cpus=N`` / ``version = N`` header lines),
* pmemtrace JSON lines (``pmemtrace watch --record``): a header object
  ``{"pmemtrace_record": 1, ...}`` then one object per event.

The fs_dax print formats (include/trace/events/fs_dax.h) differ slightly by
kernel: 6.1 names the load-hole pointer ``zero_page`` (6.12+: ``zero_folio``;
see docs/reference kernel-dax-behavior.md section 5.2), 6.1 prints ``WRITE`` (VM_FAULT_WRITE 0x8) in results and no
``COMPLETED``; 6.4+ prints ``VMA_LOCK`` in fault flags.  The flag tables in
:mod:`pmemtrace.events` are the union of all of them, so one parser reads all.
"""

import io
import json
import re

from ..errors import DataCorruption, UsageError
from ..events import FAULT_FLAG, VM_FAULT, Event, encode_flags, record_problem

#: the part every ftrace text line shares:
#: ``<comm>-<pid> [(tgid)] [cpu] [flags] <ts>: <event>: <text>``
LINE_RE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d{1,10})\s+"
    r"(?:\(\s*(?:[\d-]+)\)\s+)?"
    r"\[(?P<cpu>\d{1,6})\]\s+"
    r"(?:[\w.]{4,5}\s+)?"
    r"(?P<ts>\d+\.\d+):\s+"
    r"(?:(?P<system>\w+):)?(?P<event>\w+):\s*(?P<text>.*)$"
)

_NUM = r"(0x[0-9a-fA-F]{1,16}|\d{1,20})"  # 64-bit values; longer ones make the line unparsed
_DEV = r"dev (?P<major>\d+):(?P<minor>\d+)"

PMD_FAULT_RE = re.compile(
    _DEV + r" ino " + _NUM.replace("(", "(?P<ino>", 1)
    + r" (?P<share>shared|private) (?P<flags>[\w|]*) ?address " + _NUM.replace("(", "(?P<address>", 1)
    + r" vm_start " + _NUM.replace("(", "(?P<vm_start>", 1)
    + r" vm_end " + _NUM.replace("(", "(?P<vm_end>", 1)
    + r" pgoff " + _NUM.replace("(", "(?P<pgoff>", 1)
    + r" max_pgoff " + _NUM.replace("(", "(?P<max_pgoff>", 1)
    + r" ?(?P<result>[\w|]*)\s*$"
)
PTE_FAULT_RE = re.compile(
    _DEV + r" ino " + _NUM.replace("(", "(?P<ino>", 1)
    + r" (?P<share>shared|private) (?P<flags>[\w|]*) ?address " + _NUM.replace("(", "(?P<address>", 1)
    + r" pgoff " + _NUM.replace("(", "(?P<pgoff>", 1)
    + r" ?(?P<result>[\w|]*)\s*$"
)
HOLE_RE = re.compile(
    _DEV + r" ino " + _NUM.replace("(", "(?P<ino>", 1)
    + r" (?P<share>shared|private) address " + _NUM.replace("(", "(?P<address>", 1)
    + r" (?P<zname>zero_folio|zero_page) (?P<zero>\S+) radix_entry " + _NUM.replace("(", "(?P<radix_entry>", 1)
    + r"\s*$"
)
WB_RANGE_RE = re.compile(
    _DEV + r" ino " + _NUM.replace("(", "(?P<ino>", 1)
    + r" pgoff " + _NUM.replace("(", "(?P<start_index>", 1) + "-" + _NUM.replace("(", "(?P<end_index>", 1) + r"\s*$"
)
WB_ONE_RE = re.compile(
    _DEV + r" ino " + _NUM.replace("(", "(?P<ino>", 1)
    + r" pgoff " + _NUM.replace("(", "(?P<pgoff>", 1) + r" pglen " + _NUM.replace("(", "(?P<pglen>", 1) + r"\s*$"
)

PMD_CLASS = ("dax_pmd_fault", "dax_pmd_fault_done")
PTE_CLASS = ("dax_pte_fault", "dax_pte_fault_done", "dax_load_hole",
             "dax_insert_pfn_mkwrite", "dax_insert_pfn_mkwrite_no_entry")
HOLE_CLASS = ("dax_pmd_load_hole", "dax_pmd_load_hole_fallback")
FS_DAX_EVENTS = PMD_CLASS + PTE_CLASS + HOLE_CLASS + (
    "dax_writeback_range", "dax_writeback_range_done", "dax_writeback_one")

VM_SHARED = 0x8


_FLAG_CACHE = {}  # flag texts are few: decode each once
_RESULT_CACHE = {}


def _int(s):
    return int(s, 0) if s else 0


def _ptr(s):
    """``%p`` output: hashed hex without 0x, ``0x...``, ``(null)`` or ``(____ptrval____)``."""
    if s.startswith("0x"):
        return int(s, 16)
    try:
        return int(s, 16)
    except ValueError:
        return 0 if s in ("(null)", "0") else 1  # unknown but non-NULL


def parse_fs_dax_text(name, text):
    """Fields of one fs_dax event from its print-fmt text, or ``None``.

    >>> parse_fs_dax_text("dax_pte_fault_done",
    ...     "dev 259:0 ino 0xc shared WRITE|USER address 0x7f0000001000 pgoff 0x1 NOPAGE")["result"]
    256
    """
    if name in PMD_CLASS:
        m = PMD_FAULT_RE.match(text)
    elif name in PTE_CLASS:
        m = PTE_FAULT_RE.match(text)
    elif name in HOLE_CLASS:
        m = HOLE_RE.match(text)
    elif name in ("dax_writeback_range", "dax_writeback_range_done"):
        m = WB_RANGE_RE.match(text)
    elif name == "dax_writeback_one":
        m = WB_ONE_RE.match(text)
    else:
        return None
    if not m:
        return None
    g = m.groupdict()
    f = {"dev": (int(g["major"]) << 20) | int(g["minor"]), "ino": _int(g["ino"])}
    if "share" in g:
        f["vm_flags"] = VM_SHARED if g["share"] == "shared" else 0
    for k in ("address", "vm_start", "vm_end", "pgoff", "max_pgoff", "radix_entry",
              "start_index", "end_index", "pglen"):
        if g.get(k) is not None:
            f[k] = _int(g[k])
    if "flags" in g:
        t = g["flags"]
        v = _FLAG_CACHE.get(t)
        if v is None:
            v = _FLAG_CACHE[t] = encode_flags(t, FAULT_FLAG)
        f["flags"] = v
    if "result" in g:
        t = g["result"]
        v = _RESULT_CACHE.get(t)
        if v is None:
            v = _RESULT_CACHE[t] = encode_flags(t, VM_FAULT)
        f["result"] = v
    if "zero" in g:
        f["zero_folio"] = _ptr(g["zero"])
    return f


class ParseStats:
    def __init__(self):
        self.lines = 0
        self.events = 0
        self.skipped = 0  # lines that are not fs_dax events (other events, headers)
        self.bad = 0  # fs_dax lines whose text did not match the print fmt
        self.lost = 0  # "CPU:N [LOST n EVENTS]" markers
        self.first_bad = None

    def to_json(self):
        return {"lines": self.lines, "events": self.events, "skipped": self.skipped,
                "unparsed": self.bad, "lost": self.lost}


LOST_RE = re.compile(r"CPU:\s*(\d+)\s+\[LOST (\d{1,19}) EVENTS\]")


def parse_trace_text(lines, stats=None, strict=False):
    """Yield Events from ``trace_pipe``/``trace``/``trace-cmd report`` lines."""
    stats = stats if stats is not None else ParseStats()
    match = LINE_RE.match
    for line in lines:
        stats.lines += 1
        m = match(line)
        if not m:
            lm = LOST_RE.search(line)
            if lm:
                stats.lost += int(lm.group(2))
            else:
                stats.skipped += 1
            continue
        name = m.group("event")
        if name not in FS_DAX_EVENTS:
            stats.skipped += 1
            continue
        try:
            fields = parse_fs_dax_text(name, m.group("text"))
        except (KeyError, ValueError):  # unknown flag name, bad hex, 4300+ digits
            fields = None
        if fields is None:
            stats.bad += 1
            if stats.first_bad is None:
                stats.first_bad = (stats.lines, line.rstrip("\n"))
            if strict:
                raise DataCorruption(f"line {stats.lines}: cannot parse {name} text: {m.group('text')!r}")
            continue
        stats.events += 1
        pid = int(m.group("pid"))
        yield Event(name=name, fields=fields, ts=float(m.group("ts")), pid=pid, tid=pid,
                    comm=m.group("comm").strip(), cpu=int(m.group("cpu")), source="replay")


RECORD_MAGIC = "pmemtrace_record"


def parse_jsonl(lines, stats=None):
    """Yield (header, Event) pairs... the header is returned via stats.header."""
    stats = stats if stats is not None else ParseStats()
    stats.header = None
    for line in lines:
        stats.lines += 1
        line = line.strip()
        if not line:
            continue
        try:
            d = json.loads(line)
        except ValueError as e:
            raise DataCorruption(f"line {stats.lines}: not JSON ({e})") from None
        why = record_problem(d)  # a record of the wrong shape: name its line
        if why:
            raise DataCorruption(f"line {stats.lines}: {why}; not a pmemtrace recording line")
        if RECORD_MAGIC in d:
            stats.header = d
            continue
        if d.get("type") == "lost":
            stats.lost += int(d.get("count", 0))
            continue
        if d.get("type") == "end":
            stats.lost = max(stats.lost, int(d.get("lost", 0)))
            stats.trailer = d
            continue
        if "name" not in d:
            stats.skipped += 1
            continue
        stats.events += 1
        ev = Event.from_json(d)
        yield ev


def sniff_format(first_lines):
    """'jsonl', 'trace' (trace_pipe / trace-cmd report), or None."""
    for line in first_lines:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("{"):
            return "jsonl"
        if LINE_RE.match(line) or s.startswith("cpus=") or s.startswith("version =") \
                or s.startswith("CPU ") or LOST_RE.search(s):
            return "trace"
    for line in first_lines:
        if LINE_RE.match(line):
            return "trace"
    return None


def open_trace(path):
    """Open a trace file (plain, .gz, .xz, .zst via stdlib when possible); '-' is stdin."""
    import sys
    if path == "-":
        return sys.stdin
    try:
        if path.endswith(".gz"):
            import gzip
            return gzip.open(path, "rt", errors="replace")
        if path.endswith(".xz"):
            import lzma
            return lzma.open(path, "rt", errors="replace")
        if path.endswith(".dat"):
            raise UsageError(f"{path}: binary trace-cmd data; run 'trace-cmd report -i {path} > trace.txt' "
                             f"and replay the text")
        return open(path, "r", errors="replace")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory") from None


def read_events(path, stats=None):
    """(format, header-or-None, iterator of Events) for any supported file."""
    stats = stats if stats is not None else ParseStats()
    f = open_trace(path)
    head = []
    for _ in range(50):
        line = f.readline()
        if not line:
            break
        head.append(line)
    fmt = sniff_format(head)
    if fmt is None:
        raise UsageError(f"{path}: not a pmemtrace recording, trace_pipe or trace-cmd report text "
                         f"(no fs_dax event lines in its first {len(head)} lines)")

    def chain():
        yield from head
        yield from f

    if fmt == "jsonl":
        return fmt, stats, parse_jsonl(chain(), stats)
    return fmt, stats, parse_trace_text(chain(), stats)
