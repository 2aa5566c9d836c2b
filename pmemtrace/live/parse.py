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

import itertools
import json
import re
from typing import Any

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
    _DEV
    + r" ino "
    + _NUM.replace("(", "(?P<ino>", 1)
    + r" (?P<share>shared|private) (?P<flags>[\w|]*) ?address "
    + _NUM.replace("(", "(?P<address>", 1)
    + r" vm_start "
    + _NUM.replace("(", "(?P<vm_start>", 1)
    + r" vm_end "
    + _NUM.replace("(", "(?P<vm_end>", 1)
    + r" pgoff "
    + _NUM.replace("(", "(?P<pgoff>", 1)
    + r" max_pgoff "
    + _NUM.replace("(", "(?P<max_pgoff>", 1)
    + r" ?(?P<result>[\w|]*)\s*$"
)
PTE_FAULT_RE = re.compile(
    _DEV
    + r" ino "
    + _NUM.replace("(", "(?P<ino>", 1)
    + r" (?P<share>shared|private) (?P<flags>[\w|]*) ?address "
    + _NUM.replace("(", "(?P<address>", 1)
    + r" pgoff "
    + _NUM.replace("(", "(?P<pgoff>", 1)
    + r" ?(?P<result>[\w|]*)\s*$"
)
HOLE_RE = re.compile(
    _DEV
    + r" ino "
    + _NUM.replace("(", "(?P<ino>", 1)
    + r" (?P<share>shared|private) address "
    + _NUM.replace("(", "(?P<address>", 1)
    + r" (?P<zname>zero_folio|zero_page) (?P<zero>\S+) radix_entry "
    + _NUM.replace("(", "(?P<radix_entry>", 1)
    + r"\s*$"
)
WB_RANGE_RE = re.compile(
    _DEV
    + r" ino "
    + _NUM.replace("(", "(?P<ino>", 1)
    + r" pgoff "
    + _NUM.replace("(", "(?P<start_index>", 1)
    + "-"
    + _NUM.replace("(", "(?P<end_index>", 1)
    + r"\s*$"
)
WB_ONE_RE = re.compile(
    _DEV
    + r" ino "
    + _NUM.replace("(", "(?P<ino>", 1)
    + r" pgoff "
    + _NUM.replace("(", "(?P<pgoff>", 1)
    + r" pglen "
    + _NUM.replace("(", "(?P<pglen>", 1)
    + r"\s*$"
)

PMD_CLASS = ("dax_pmd_fault", "dax_pmd_fault_done")
PTE_CLASS = (
    "dax_pte_fault",
    "dax_pte_fault_done",
    "dax_load_hole",
    "dax_insert_pfn_mkwrite",
    "dax_insert_pfn_mkwrite_no_entry",
)
HOLE_CLASS = ("dax_pmd_load_hole", "dax_pmd_load_hole_fallback")
FS_DAX_EVENTS = (
    PMD_CLASS + PTE_CLASS + HOLE_CLASS + ("dax_writeback_range", "dax_writeback_range_done", "dax_writeback_one")
)

VM_SHARED = 0x8

#: the keys of an fs_dax record's fields, in the order of every parser's
#: dicts (text and binary alike)
FS_DAX_FIELD_ORDER = (
    "dev",
    "ino",
    "vm_flags",
    "address",
    "vm_start",
    "vm_end",
    "pgoff",
    "max_pgoff",
    "radix_entry",
    "start_index",
    "end_index",
    "pglen",
    "flags",
    "result",
    "zero_folio",
)
_NUMBER_FIELDS = FS_DAX_FIELD_ORDER[3:12]  # printed as plain numbers


_FLAG_CACHE: dict[str, int] = {}  # flag texts are few: decode each once
_RESULT_CACHE: dict[str, int] = {}


def _int(s):
    # the regexes accept 0x... and decimal digits; int(s, 0) would refuse "010"
    if not s:
        return 0
    return int(s, 16) if s.startswith("0x") else int(s, 10)


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
    for k in _NUMBER_FIELDS:
        if g.get(k) is not None:
            f[k] = _int(g[k])
    if "flags" in g:
        v = _flag_value(g["flags"], _FLAG_CACHE, FAULT_FLAG)
        if v is None:
            return None  # a flag name no kernel prints: an unparsed line, not a crash
        f["flags"] = v
    if "result" in g:
        v = _flag_value(g["result"], _RESULT_CACHE, VM_FAULT)
        if v is None:
            return None
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
        self.lost_unknown = 0  # binary pages after a loss the kernel did not count
        self.first_bad = None
        self.format = None  # a page file's (tracedat.TraceDat.fmt)

    def to_json(self):
        return {
            "lines": self.lines,
            "events": self.events,
            "skipped": self.skipped,
            "unparsed": self.bad,
            "lost": self.lost,
            **({"lost_uncounted_pages": self.lost_unknown} if self.lost_unknown else {}),
        }


LOST_RE = re.compile(r"CPU:\s*(\d+)\s+\[LOST (\d{1,19}) EVENTS\]")


_FAULT_EVENTS = frozenset(("dax_pmd_fault", "dax_pmd_fault_done", "dax_pte_fault", "dax_pte_fault_done"))
_FLAGS_TEXT_OK = re.compile(r"[\w|]*\Z").match  # what the careful regexes accept as flags/result text
_FLAGS_COLUMN_OK = re.compile(r"[\w.]+\Z").match  # the latency-format column (irqs-off, need-resched...)


def _flag_value(t, cache, table):
    """The value of a ``__print_flags`` text (decoded once per text), or
    None for text the kernel does not print (unknown names)."""
    v = cache.get(t)
    if v is None:
        if not _FLAGS_TEXT_OK(t):
            return None
        try:
            v = encode_flags(t, table)
        except (KeyError, ValueError):
            return None
        cache[t] = v
    return v


def tokenize_fault_line(line):
    """``(name, fields, ts, pid, comm, cpu)`` of a plain fs_dax fault line
    (``dax_pmd_fault[_done]``, ``dax_pte_fault[_done]``; a comm without
    spaces), split on whitespace without a regex; ``None`` for any other
    shape, which then goes to the careful parser (:data:`LINE_RE` and the
    print-fmt regexes).  Gives what the careful parser gives for every line
    it accepts (tests compare them); it is laxer only about runs of spaces
    and numbers the kernel never prints (``0X1``, ``0o7``, ``1_0``)."""
    t = line.split()
    n = len(t)
    if n < 12:
        return None
    # comm-pid [(tgid)] [cpu] [flags] ts: name: dev M:m ino ...
    c = 1 if t[1][0] == "[" else (2 if t[1][0] == "(" and t[1][-1] == ")" and t[2][0] == "[" else 0)
    if not c:
        return None
    e = c + 2 if t[c + 1][-1] == ":" else c + 3
    if n < e + 10:  # the shortest: a PTE event with no flags and no result
        return None
    name = t[e][:-1]
    if name not in _FAULT_EVENTS or t[e][-1] != ":" or t[e + 1] != "dev" or t[e + 3] != "ino":
        return None
    ts_text = t[e - 1][:-1]
    sec, dot, usec = ts_text.partition(".")
    if not (dot and sec.isdigit() and usec.isdigit() and t[e - 1][-1] == ":"):
        return None
    # what repeats line after line (the task, the file, the flags) is
    # checked and decoded once
    who_key = tuple(t[: e - 1])
    who = _WHO_CACHE.get(who_key)
    if who is None:
        who = _WHO_CACHE[who_key] = _who(t, c, e)
        if len(_WHO_CACHE) > 4096:
            _WHO_CACHE.clear()
    if not who:
        return None
    what_key = (t[e + 2], t[e + 4], t[e + 5], t[e + 6])
    what = _WHAT_CACHE.get(what_key)
    if what is None:
        what = _WHAT_CACHE[what_key] = _what(*what_key)
        if len(_WHAT_CACHE) > 4096:
            _WHAT_CACHE.clear()
    if not what:
        return None
    dev, ino, vm_flags, flags, k = what
    k += e
    if n < k + 4 or t[k] != "address":
        return None
    try:
        if name[5] == "m":  # dax_pmd_*
            if n == k + 11:
                result_text = t[k + 10]
            elif n == k + 10:
                result_text = ""
            else:
                return None
            if t[k + 2] != "vm_start" or t[k + 4] != "vm_end" or t[k + 6] != "pgoff" or t[k + 8] != "max_pgoff":
                return None
            fields = {
                "dev": dev,
                "ino": ino,
                "vm_flags": vm_flags,
                "address": int(t[k + 1], 0),
                "vm_start": int(t[k + 3], 0),
                "vm_end": int(t[k + 5], 0),
                "pgoff": int(t[k + 7], 0),
                "max_pgoff": int(t[k + 9], 0),
                "flags": flags,
            }
        else:
            if n == k + 5:
                result_text = t[k + 4]
            elif n == k + 4:
                result_text = ""
            else:
                return None
            if t[k + 2] != "pgoff":
                return None
            fields = {
                "dev": dev,
                "ino": ino,
                "vm_flags": vm_flags,
                "address": int(t[k + 1], 0),
                "pgoff": int(t[k + 3], 0),
                "flags": flags,
            }
    except ValueError:
        return None
    if (fields["address"] | fields.get("vm_end", 0) | fields["pgoff"] | fields.get("max_pgoff", 0)) >> 64:
        return None  # not a kernel's 64-bit value: the careful parser says why
    result = _RESULT_CACHE.get(result_text)
    if result is None:
        result = _flag_value(result_text, _RESULT_CACHE, VM_FAULT)
        if result is None:
            return None
    fields["result"] = result
    comm, pid, cpu = who
    return name, fields, float(ts_text), pid, comm, cpu


_WHO_CACHE: dict[Any, Any] = {}  # the tokens before the timestamp -> (comm, pid, cpu) or False
# (dev, ino, share, flags-or-"address") -> (dev, ino, vm_flags, flags, offset) or False
_WHAT_CACHE: dict[Any, Any] = {}


def _who(t, c, e):
    """(comm, pid, cpu) of the tokens before a fault line's timestamp, or False."""
    comm, dash, pid_text = t[0].rpartition("-")
    cpu_text = t[c][1:-1]
    if not (dash and pid_text.isdigit() and cpu_text.isdigit() and t[c][-1] == "]"):
        return False
    if e - c == 3 and not (4 <= len(t[c + 1]) <= 5 and _FLAGS_COLUMN_OK(t[c + 1])):
        return False
    return comm, int(pid_text), int(cpu_text)


def _what(dev_text, ino_text, share, flags_or_address):
    """(dev, ino, vm_flags, fault flags, offset of "address" from the event
    name) of the fields every fault event starts with, or False."""
    maj, colon, mnr = dev_text.partition(":")
    if not colon or not maj.isdigit() or not mnr.isdigit():
        return False
    try:
        ino = int(ino_text, 0)
    except ValueError:
        return False
    if share == "shared":
        vm_flags = VM_SHARED
    elif share == "private":
        vm_flags = 0
    else:
        return False
    if flags_or_address == "address":
        flags_text, k = "", 6
    else:
        flags_text, k = flags_or_address, 7
    flags = _flag_value(flags_text, _FLAG_CACHE, FAULT_FLAG)
    if flags is None:
        return False
    return (int(maj) << 20) | int(mnr), ino, vm_flags, flags, k


def iter_trace_records(lines, stats=None, strict=False):
    """Yield ``(name, fields, ts, pid, comm, cpu)`` from ``trace_pipe`` /
    ``trace`` / ``trace-cmd report`` lines: the fault lines through
    :func:`tokenize_fault_line`, every other line through the careful parser."""
    stats = stats if stats is not None else ParseStats()
    for line in lines:
        rec = trace_line_record(line, stats, strict)
        if rec is not None:
            yield rec


def trace_line_record(line, stats, strict=False):
    """The record of one trace line (counted in *stats*), or None: the
    tokenizer, then the careful parser."""
    stats.lines += 1
    rec = tokenize_fault_line(line)
    if rec is None:
        rec = _careful(line, stats, strict)
        if rec is None:
            return None
    stats.events += 1
    return rec


def _careful(line, stats, strict):
    """The record of a line the tokenizer does not take, through
    :data:`LINE_RE` and the print-fmt regexes, or None (counted: skipped,
    lost, or unparsed)."""
    m = LINE_RE.match(line)
    if not m:
        lm = LOST_RE.search(line)
        if lm:
            stats.lost += int(lm.group(2))
        else:
            stats.skipped += 1
        return None
    name = m.group("event")
    if name not in FS_DAX_EVENTS:
        stats.skipped += 1
        return None
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
        return None
    pid = int(m.group("pid"))
    return name, fields, float(m.group("ts")), pid, m.group("comm").strip(), int(m.group("cpu"))


def parse_trace_text(lines, stats=None, strict=False):
    """Yield Events from ``trace_pipe``/``trace``/``trace-cmd report`` lines."""
    return _events_of(iter_trace_records(lines, stats, strict))


RECORD_MAGIC = "pmemtrace_record"
_RELEASE_OK = re.compile(r"\d{1,4}\.\d{1,4}(?:[.\w+~-]{0,120})\Z").match


def is_release(text):
    """True for text of the shape of a kernel release (``6.12``,
    ``6.12.95+deb12-amd64``): what ``uname -r`` gives."""
    return bool(_RELEASE_OK(text))


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
            if d[RECORD_MAGIC] != 1:
                # version 2 is binary after its header: read by path (pagerecord)
                raise UsageError(
                    f"a binary pmemtrace recording (version {d[RECORD_MAGIC]!r}) is read from its file, "
                    "not a pipe: give replay its path"
                )
            k = d.get("kernel")
            if k is not None and not (isinstance(k, str) and is_release(k)):
                raise DataCorruption(
                    f"line {stats.lines}: the header's kernel {str(k)[:40]!r} is not a kernel release "
                    "(MAJOR.MINOR...): a damaged recording; fix the header line or replay the events' text"
                )
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
        if LINE_RE.match(line) or s.startswith(("cpus=", "version =", "CPU ")) or LOST_RE.search(s):
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
        return open(path, errors="replace")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory") from None


#: a line is held in memory up to this many characters; a longer one (no
#: trace or recording line is near it) is skipped and counted as unparsed,
#: or in a recording is an error
MAX_LINE = 1 << 20


class _LongLines:
    """What to do with a line longer than :data:`MAX_LINE`: decided once
    the format is known (those met while sniffing wait until then)."""

    def __init__(self, stats):
        self.stats = stats
        self.fmt = None
        self.pending = []

    def __call__(self, number):
        if self.fmt is None:
            self.pending.append(number)
            return
        st = self.stats
        if self.fmt == "jsonl":
            raise DataCorruption(f"line {number}: longer than {MAX_LINE} characters: not a pmemtrace recording line")
        # counted as a line and as unparsed, where the careful parser would have counted it
        st.lines += 1
        st.bad += 1
        if st.first_bad is None:
            st.first_bad = (number, f"(a line longer than {MAX_LINE} characters, skipped)")

    def sniffed(self, fmt):
        self.fmt = fmt or "trace"
        for n in self.pending:
            self(n)
        self.pending = []


def _line_blocks(f, on_long, block=MAX_LINE, start=0):
    """Lists of lines (without their newline) of text file *f*, read a
    block at a time so that memory stays bounded by :data:`MAX_LINE` however
    long a line is; *on_long(line_number)* is called for each line that is
    too long (it is not yielded); *start*: the lines before *f*'s position."""
    carry = ""
    dropping = False
    number = start  # lines yielded or dropped so far
    while True:
        chunk = f.read(block)
        if not chunk:
            break
        if dropping:
            nl = chunk.find("\n")
            if nl < 0:
                continue
            chunk = chunk[nl + 1 :]
            dropping = False
        lines = (carry + chunk).split("\n") if carry else chunk.split("\n")
        carry = lines.pop()
        number += len(lines)
        if len(carry) > MAX_LINE:
            if lines:
                yield lines
                lines = []
            number += 1
            on_long(number)
            carry = ""
            dropping = True
        if lines:
            yield lines
    if carry and not dropping:
        yield [carry]


def _sniffed_lines(path, stats=None):
    """(format, iterator of all lines) of a trace file."""
    fmt, blocks = _sniffed_blocks(path, stats)
    return fmt, itertools.chain.from_iterable(blocks)


def _sniffed_blocks(path, stats=None):
    """(format, iterator of lists of lines) of a trace file."""
    f = open_trace(path)
    long_lines = _LongLines(stats if stats is not None else ParseStats())
    blocks = _line_blocks(f, long_lines)
    first: list = []
    n = 0
    for block in blocks:
        first.append(block)
        n += len(block)
        if n >= 50:
            break
    head = list(itertools.islice(itertools.chain.from_iterable(first), 50))
    fmt = sniff_format(head)
    if fmt is not None:
        long_lines.sniffed(fmt)
    if fmt is None and head and head[0].startswith("\x17\x08Dtracing"):
        raise UsageError(f"{path}: a trace-cmd .dat on a pipe: give its file name, it is read in place")
    if fmt is None:
        raise UsageError(
            f"{path}: not a pmemtrace recording, trace_pipe or trace-cmd report text "
            f"(no fs_dax event lines in its first {len(head)} lines)"
        )

    return fmt, itertools.chain(first, blocks)


DAT_FORMAT = "trace-cmd.dat"


def _dat_records(path, stats):
    """A trace-cmd .dat (:mod:`pmemtrace.live.tracedat`): its records, and
    what it says about itself as ``stats.header``."""
    from .tracedat import read_dat_records

    stats.header, records = read_dat_records(path, stats)
    return stats.format, stats, records


def _is_dat(path):
    """A file of ring-buffer pages: a trace-cmd .dat or a pmemtrace page
    recording (tracefs ``watch --record``)."""
    if path == "-":
        return False
    from .tracedat import is_page_file

    return is_page_file(path)


def _bcc_recording(path, stats):
    """A version-2 recording of bcc's ring records, or None."""
    if path == "-":
        return None
    from .pagerecord import read_event_records, recording_kind

    if recording_kind(path) != "records":
        return None
    stats.header, records = read_event_records(path, stats)
    return stats.format, stats, records


def read_events(path, stats=None):
    """(format, stats, iterator of Events) for any supported file."""
    stats = stats if stats is not None else ParseStats()
    got = _bcc_recording(path, stats)
    if got is not None:
        return got[0], stats, _events_of(got[2])
    if _is_dat(path):
        fmt, stats, records = _dat_records(path, stats)
        return fmt, stats, _events_of(records)
    fmt, lines = _sniffed_lines(path, stats)
    if fmt == "jsonl":
        return fmt, stats, parse_jsonl(lines, stats)
    return fmt, stats, parse_trace_text(lines, stats)


def _events_of(records):
    for name, fields, ts, pid, comm, cpu in records:
        yield Event(name=name, fields=fields, ts=ts, pid=pid, tid=pid, comm=comm, cpu=cpu, source="replay")


def read_records(path, stats=None):
    """:func:`read_events` as ``(name, fields, ts, pid, comm, cpu)`` tuples:
    text traces through the tokenizer without an Event per line (the replay
    hot path); recordings (JSON lines) from their Events."""
    stats = stats if stats is not None else ParseStats()
    got = _bcc_recording(path, stats)
    if got is not None:
        return got
    if _is_dat(path):
        return _dat_records(path, stats)
    fmt, blocks = _sniffed_blocks(path, stats)
    if fmt == "jsonl":
        lines = itertools.chain.from_iterable(blocks)
        return fmt, stats, ((e.name, e.fields, e.ts, e.pid, e.comm, e.cpu) for e in parse_jsonl(lines, stats))
    return fmt, stats, iter_trace_records(itertools.chain.from_iterable(blocks), stats)
