"""trace-cmd's binary ``trace.dat``, read directly (``pmemtrace replay trace.dat``).

The container (trace-cmd's Documentation/trace-cmd/trace-cmd.dat.v6.5.txt and
.v7.5.txt): magic ``\\x17\\x08\\x44tracing``, the file version, byte order,
long size and page size; then

* version 6: header_page / header_event, ftrace and event format files,
  kallsyms, printk formats, saved cmdlines, the CPU count, options and
  ``flyrecord`` with an (offset, size) of raw ring-buffer pages per CPU;
* version 7: the compression algorithm (``none``, ``zstd`` or ``zlib``,
  the ones trace-cmd ships) and the offset of the first options section;
  every part is a section (u16 id, u16 flags, u32 description, u64 size)
  found through options; flags bit 0 means the section is compressed
  (u32 compressed size, u32 size, data), and a compressed CPU buffer is
  chunks (u32 count, then per chunk u32 compressed size, u32 size, data).

Debian's trace-cmd 3.1 writes version 7 compressed with zstd by default.
The pages are decoded by :mod:`pmemtrace.live.ftrace_binary`; the fs_dax
events come out as the text parser's ``(name, fields, ts, pid, comm, cpu)``
records, field for field what ``trace-cmd report`` text of the same file
parses to, in the order ``trace-cmd report`` prints them (by timestamp,
the lower CPU first on a tie).  Anything this reader cannot take (a latency
trace, an unknown compression, a truncated file) is a
:class:`pmemtrace.errors.DataCorruption` or :class:`UsageError` naming
what is wrong.
"""

from __future__ import annotations

import itertools
import mmap
import os
import zlib
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Callable

from ..errors import DataCorruption, UsageError
from .ftrace_binary import (
    EventFormat,
    FormatError,
    PageDecoder,
    PageHeader,
    check_header_event,
    parse_event_format,
    parse_header_page,
)

MAGIC = b"\x17\x08\x44tracing"

# v7 option ids (trace-cmd.dat.v7.5.txt)
OPT_DONE = 0
OPT_BUFFER = 3
OPT_UNAME = 5
OPT_CPUCOUNT = 8
OPT_VERSION = 9
OPT_HEADER_INFO = 16
OPT_FTRACE_EVENTS = 17
OPT_EVENT_FORMATS = 18
OPT_CMDLINES = 21
OPT_BUFFER_TEXT = 22
SEC_FL_COMPRESS = 1

CHUNK_PAGES = 16  # pages decoded per step of one CPU: small batches stay in the CPU cache


def is_trace_dat(path: str) -> bool:
    """True when *path* starts with trace-cmd's magic."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def is_page_file(path: str) -> bool:
    """True for a file of ring-buffer pages: a trace-cmd .dat or a
    pmemtrace page recording (:mod:`.pagerecord`)."""
    from .pagerecord import is_page_recording

    return is_trace_dat(path) or is_page_recording(path)


def open_pages(path: str, want_systems: set | None = None) -> tuple[TraceDat, Any]:
    """:func:`open_dat` of a .dat, or of a pmemtrace page recording."""
    from .pagerecord import is_page_recording, open_page_recording

    if not is_trace_dat(path) and is_page_recording(path):
        return open_page_recording(path)
    return open_dat(path, want_systems)


@dataclass
class CpuData:
    cpu: int
    offset: int
    size: int
    compressed: bool = False
    #: (offset, size) pieces of whole pages, where the CPU's data is not in
    #: one piece (a pmemtrace page recording: :mod:`.pagerecord`)
    extents: list[tuple[int, int]] | None = None


@dataclass
class TraceDat:
    """What a .dat file says about itself (:func:`open_dat`)."""

    path: str
    version: int
    big_endian: bool
    long_size: int
    page_size: int
    compression: str = "none"
    header_page: PageHeader | None = None
    formats: dict[int, EventFormat] = field(default_factory=dict)
    cmdlines: dict[int, str] = field(default_factory=dict)
    cpus: list[CpuData] = field(default_factory=list)
    uname: str | None = None
    trace_cmd_version: str | None = None
    flyrecord_table: int = 0  # v6: file offset of the per-CPU (offset, size) table
    fmt: str = "trace-cmd.dat"
    # a pmemtrace page recording (:mod:`.pagerecord`): its JSON header and
    # end frame, the losses it recorded, why it is incomplete (None: it is not)
    recording: dict | None = None
    trailer: dict | None = None
    recorded_lost: int = 0
    incomplete: str | None = None

    @property
    def kernel(self) -> str | None:
        """The traced kernel's release, from the UNAME option (v7)."""
        parts = (self.uname or "").split()
        return parts[2] if len(parts) >= 3 else None

    def header(self) -> dict:
        if self.recording is not None:
            return self.recording
        h: dict[str, Any] = {
            "trace_dat": self.version,
            "compression": self.compression,
            "cpus": len(self.cpus),
            "page_size": self.page_size,
        }
        if self.kernel:
            h["kernel"] = self.kernel
        if self.trace_cmd_version:
            h["trace_cmd"] = self.trace_cmd_version
        return h


class _Reader:
    """Bounds-checked reads of a byte buffer in the file's byte order."""

    def __init__(self, buf, big_endian: bool, what: str):
        self.buf = buf
        self.pos = 0
        self.e = ">" if big_endian else "<"
        self.what = what

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise _Truncated(f"{self.what} ends early (at byte {self.pos}, {n} more needed)")

    def u(self, n: int) -> int:
        self.need(n)
        v = int.from_bytes(self.buf[self.pos : self.pos + n], "big" if self.e == ">" else "little")
        self.pos += n
        return int(v)

    def raw(self, n: int) -> bytes:
        self.need(n)
        v = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return v

    def cstr(self) -> str:
        end = self.buf.find(b"\0", self.pos) if isinstance(self.buf, (bytes, mmap.mmap)) else -1
        if end < 0:
            raise _Truncated(f"{self.what}: a string without its terminating NUL")
        s = bytes(self.buf[self.pos : end]).decode("utf-8", "replace")
        self.pos = end + 1
        return s


class _Truncated(Exception):
    pass


def open_dat(path: str, want_systems: set | None = None) -> tuple[TraceDat, Any]:
    """Parse the metadata of a .dat file: ``(TraceDat, mmap)``; the event
    formats of *want_systems* only (all when None)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise DataCorruption(f"{path}: empty file, not a trace-cmd .dat")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        dat = _parse(path, mm, want_systems)
    except _Truncated as e:
        mm.close()
        raise DataCorruption(f"{path}: truncated or corrupt trace-cmd .dat: {e}") from None
    except FormatError as e:
        mm.close()
        raise DataCorruption(f"{path}: corrupt trace-cmd .dat: {e}") from None
    except BaseException:
        mm.close()
        raise
    return dat, mm


def _parse(path: str, mm, want_systems: set | None) -> TraceDat:
    if mm[: len(MAGIC)] != MAGIC:
        raise DataCorruption(f"{path}: not a trace-cmd .dat (no tracing magic)")
    r = _Reader(mm, False, "file header")
    r.pos = len(MAGIC)
    vtext = r.cstr()
    if vtext not in ("6", "7"):
        raise UsageError(
            f"{path}: trace-cmd .dat version {vtext!r}; pmemtrace reads versions 6 and 7: "
            "run 'trace-cmd report' on it and replay the text"
        )
    endian = r.u(1)
    long_size = r.u(1)
    r.e = ">" if endian else "<"
    page_size = r.u(4)
    if page_size < 64 or page_size & (page_size - 1):
        raise DataCorruption(f"{path}: corrupt trace-cmd .dat: page size {page_size}")
    dat = TraceDat(path, int(vtext), bool(endian), long_size, page_size)
    if dat.version == 6:
        _parse_v6(dat, r, want_systems)
    else:
        _parse_v7(dat, r, want_systems)
    if dat.header_page is None:
        raise DataCorruption(f"{path}: corrupt trace-cmd .dat: no header_page")
    for c in dat.cpus:
        if c.size and c.offset + c.size > len(mm):
            raise _Truncated(f"CPU {c.cpu} data needs {c.offset + c.size} bytes, the file has {len(mm)}")
    return dat


def _headers(dat: TraceDat, r: _Reader) -> None:
    if r.raw(12) != b"header_page\0":
        raise FormatError("no header_page")
    hp = r.raw(r.u(8)).decode("utf-8", "replace")
    if r.raw(13) != b"header_event\0":
        raise FormatError("no header_event")
    he = r.raw(r.u(8)).decode("utf-8", "replace")
    dat.header_page = parse_header_page(hp)
    check_header_event(he)


def _event_formats(dat: TraceDat, r: _Reader, want: set | None) -> None:
    for _ in range(r.u(4)):
        system = r.cstr()
        for _ in range(r.u(4)):
            text = r.raw(r.u(8))
            if want is None or system in want:
                ev = parse_event_format(text.decode("utf-8", "replace"), system)
                dat.formats[ev.id] = ev


def _skip_ftrace_formats(r: _Reader) -> None:
    for _ in range(r.u(4)):
        r.raw(r.u(8))


def _cmdlines(dat: TraceDat, text: bytes) -> None:
    for line in text.decode("utf-8", "replace").splitlines():
        pid, _, comm = line.partition(" ")
        if pid.isdigit():
            dat.cmdlines[int(pid)] = comm


def _parse_v6(dat: TraceDat, r: _Reader, want: set | None) -> None:
    _headers(dat, r)
    _skip_ftrace_formats(r)
    _event_formats(dat, r, want)
    r.raw(r.u(4))  # kallsyms
    r.raw(r.u(4))  # printk formats
    _cmdlines(dat, r.raw(r.u(8)))
    ncpus = r.u(4)
    kind = r.raw(10)
    if kind == b"options  \0":
        while True:
            opt = r.u(2)
            if opt == OPT_DONE:
                break
            data = r.raw(r.u(4))
            _option(dat, opt, data, r.e)
        kind = r.raw(10)
    if kind == b"latency  \0":
        raise UsageError(f"{dat.path}: a latency trace (text), not a flyrecord: use 'trace-cmd report'")
    if kind != b"flyrecord\0":
        raise FormatError(f"unknown data kind {kind!r}")
    dat.flyrecord_table = r.pos
    for cpu in range(ncpus):
        off, size = r.u(8), r.u(8)
        dat.cpus.append(CpuData(cpu, off, size))


def _option(dat: TraceDat, opt: int, data: bytes, e: str) -> None:
    if opt == OPT_UNAME:
        dat.uname = data.split(b"\0", 1)[0].decode("utf-8", "replace")
    elif opt == OPT_VERSION:
        dat.trace_cmd_version = data.split(b"\0", 1)[0].decode("utf-8", "replace")


def _parse_v7(dat: TraceDat, r: _Reader, want: set | None) -> None:
    name = r.cstr()
    r.cstr()  # the compression library's version
    if name not in ("none", "zstd", "zlib"):
        raise UsageError(
            f"{dat.path}: compressed with {name!r}; pmemtrace reads zstd, zlib and uncompressed "
            ".dat files: run 'trace-cmd report' on it and replay the text"
        )
    dat.compression = name
    mm = r.buf
    decompress = _decompressor(name, dat.path)
    sections: dict[int, int] = {}
    buffers: list[bytes] = []
    next_opts = r.u(8)
    seen = set()
    while next_opts:
        if next_opts in seen:
            raise FormatError("options sections form a loop")
        seen.add(next_opts)
        sid, body = _section(mm, next_opts, r.e, decompress)
        if sid != OPT_DONE:
            raise FormatError(f"section at {next_opts} is not an options section (id {sid})")
        o = _Reader(body, dat.big_endian, "options section")
        next_opts = 0
        while o.pos < len(body):
            opt = o.u(2)
            data = o.raw(o.u(4))
            if opt == OPT_DONE:
                next_opts = _Reader(data, dat.big_endian, "DONE option").u(8)
                break
            if opt in (OPT_HEADER_INFO, OPT_FTRACE_EVENTS, OPT_EVENT_FORMATS, OPT_CMDLINES):
                sections[opt] = _Reader(data, dat.big_endian, "section option").u(8)
            elif opt == OPT_BUFFER:
                buffers.append(data)
            elif opt == OPT_BUFFER_TEXT:
                raise UsageError(f"{dat.path}: a latency trace (text), not a flyrecord: use 'trace-cmd report'")
            else:
                _option(dat, opt, data, r.e)
    for need in (OPT_HEADER_INFO, OPT_EVENT_FORMATS):
        if need not in sections:
            raise FormatError(f"no section of id {need}")
    _headers(dat, _Reader(_section(mm, sections[OPT_HEADER_INFO], r.e, decompress)[1], dat.big_endian, "header info"))
    _event_formats(
        dat, _Reader(_section(mm, sections[OPT_EVENT_FORMATS], r.e, decompress)[1], dat.big_endian, "formats"), want
    )
    if OPT_CMDLINES in sections:
        c = _Reader(_section(mm, sections[OPT_CMDLINES], r.e, decompress)[1], dat.big_endian, "cmdlines")
        _cmdlines(dat, c.raw(c.u(8)))
    for data in buffers:
        b = _Reader(data, dat.big_endian, "BUFFER option")
        sec_off = b.u(8)
        instance = b.cstr()
        b.cstr()  # trace clock
        page_size = b.u(4)
        if instance:
            continue  # only the top instance, as 'trace-cmd report' shows by default
        if page_size != dat.page_size:
            dat.page_size = page_size
        flags = _section_flags(mm, sec_off, r.e)
        for _ in range(b.u(4)):
            cpu, off, size = b.u(4), b.u(8), b.u(8)
            dat.cpus.append(CpuData(cpu, off, size, bool(flags & SEC_FL_COMPRESS)))


def _decompressor(name: str, path: str) -> Callable[[bytes, int], bytes] | None:
    if name == "none":
        return None
    if name == "zlib":
        return lambda data, size: zlib.decompress(data)
    try:
        import zstandard
    except ImportError:
        raise UsageError(
            f"{path}: zstd-compressed .dat and the Python package 'zstandard' is missing: "
            "pip install zstandard (or run scripts/install-deps.sh)"
        ) from None
    d = zstandard.ZstdDecompressor()
    return lambda data, size: d.decompress(data, max_output_size=size)


def _section_flags(mm, off: int, e: str) -> int:
    r = _Reader(mm, e == ">", "section header")
    r.e = e
    r.pos = off
    r.u(2)
    return r.u(2)


def _section(mm, off: int, e: str, decompress) -> tuple[int, bytes]:
    """(id, body) of the section at *off*, decompressed."""
    r = _Reader(mm, e == ">", f"section at {off}")
    r.e = e
    r.pos = off
    sid, flags, _desc, size = r.u(2), r.u(2), r.u(4), r.u(8)
    if flags & SEC_FL_COMPRESS:
        if decompress is None:
            raise FormatError(f"section {sid} is compressed in a file that names no compression")
        zsize, usize = r.u(4), r.u(4)
        return sid, _inflate(decompress, r.raw(zsize), usize, f"section {sid}")
    return sid, r.raw(size)


def _inflate(decompress, data: bytes, size: int, what: str) -> bytes:
    try:
        out = decompress(data, size)
    except Exception as e:  # zlib.error, zstd.ZstdError: corrupt data
        raise FormatError(f"{what}: cannot decompress ({e})") from None
    if len(out) != size:
        raise FormatError(f"{what}: decompressed to {len(out)} bytes, expected {size}")
    return bytes(out)


def _drop(mm, start: int, end: int) -> None:
    """Give back the mapped pages wholly inside [start, end) of *mm*, read
    once: the process's memory then holds what is being decoded, not the
    file (the page cache keeps them; a later read faults them in again)."""
    ps = mmap.PAGESIZE
    lo, hi = -(-start // ps) * ps, end // ps * ps
    if hi > lo and hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def cpu_pages(dat: TraceDat, mm, c: CpuData) -> Iterator[bytes | memoryview]:
    """The raw page data of one CPU, in pieces of whole pages, each read
    from *mm* when asked for (and its pages of *mm* given back)."""
    if not c.size:
        return
    if not c.compressed:
        step = CHUNK_PAGES * dat.page_size
        mv = memoryview(mm)
        for start, size in c.extents if c.extents is not None else [(c.offset, c.size)]:
            for off in range(start, start + size, step):
                end = min(off + step, start + size)
                piece = bytes(mv[off:end])  # struct reads bytes faster than an mmap view
                _drop(mm, off, end)
                yield piece
        return
    decompress = _decompressor(dat.compression, dat.path)
    r = _Reader(mm, dat.big_endian, f"CPU {c.cpu} data")
    r.pos = c.offset
    for i in range(r.u(4)):
        zsize, usize = r.u(4), r.u(4)
        start = r.pos
        data = r.raw(zsize)
        _drop(mm, start, r.pos)
        yield memoryview(_inflate(decompress, data, usize, f"CPU {c.cpu} chunk {i}"))


def cpu_batches(dat: TraceDat, mm, c: CpuData, decoder: PageDecoder, lost: list) -> Iterator[list]:
    """Lists of ``(ts_ns, cpu, event_id, values)`` of one CPU, in its order."""
    for piece in cpu_pages(dat, mm, c):
        out: list = []
        lost[0] += decoder.decode_pages(piece, dat.page_size, c.cpu, out)
        if out:
            yield out


def merged_batches(dat: TraceDat, mm, decoder: PageDecoder, lost: list) -> Iterator[list]:
    """All CPUs' records by timestamp, the lower CPU first on a tie (as
    ``trace-cmd report`` orders them), in lists.

    A window merge: what every CPU has decoded strictly before the lowest
    of their last timestamps is final; it is sorted (stable, CPUs taken in
    order) in one go, where a heap merge would cost a Python step per
    record."""
    its = [cpu_batches(dat, mm, c, decoder, lost) for c in sorted(dat.cpus, key=lambda c: c.cpu) if c.size]
    if len(its) == 1:
        yield from its[0]
        return
    bufs: list[list] = [[] for _ in its]
    live = list(range(len(its)))
    key = itemgetter(0)
    while live:
        for i in list(live):
            b = bufs[i]
            # refill a CPU whose buffer is empty or all at one timestamp:
            # its next records may share that timestamp
            while not b or b[0][0] == b[-1][0]:
                nxt = next(its[i], None)
                if nxt is None:
                    live.remove(i)
                    break
                b.extend(nxt)
        if not live:
            break
        bound = min(bufs[i][-1][0] for i in live)
        out: list = []
        for i, b in enumerate(bufs):
            if not b:
                continue
            if i not in live or b[-1][0] < bound:
                out.extend(b)
                bufs[i] = []
            else:
                n = bisect_left(b, bound, key=key)
                out.extend(b[:n])
                bufs[i] = b[n:]
        if not out:
            # only where a CPU's timestamps go back (a damaged file: the
            # kernel's are monotonic per CPU): nothing is below the bound
            # and refilling would never start again; what is buffered goes
            # out sorted, so the merge always ends
            out = [r for b in bufs for r in b]
            bufs = [[] for _ in its]
        if out:
            out.sort(key=key)
            yield out
    rest = [r for b in bufs for r in b]
    if rest:
        rest.sort(key=key)
        yield rest


def read_dat_records(path: str, stats) -> tuple[dict, Iterator[tuple]]:
    """``(header, records)``: the fs_dax events of a .dat (or a pmemtrace
    page recording) as the text parser's ``(name, fields, ts, pid, comm,
    cpu)`` (see the module docstring); *stats* (a ParseStats) counts events
    and lost events, and gets the file's ``format`` (and a recording's
    ``trailer`` and ``incomplete``)."""
    from .fsdax_binary import converters

    dat, mm = open_pages(path, want_systems={"fs_dax"})
    stats.format = dat.fmt
    if dat.recording is not None:
        stats.trailer, stats.incomplete = dat.trailer, dat.incomplete
    conv = converters(dat.formats, dat.cmdlines)
    formats = {i: dat.formats[i] for i in conv}
    decoder = PageDecoder(dat.header_page or PageHeader(), formats, dat.big_endian)

    def batches() -> Iterator[list]:
        lost = [0]
        try:
            for batch in merged_batches(dat, mm, decoder, lost):
                out = [conv[eid](ts, cpu, v) for ts, cpu, eid, v in batch]
                stats.lines += len(out)
                stats.events += len(out)
                yield out
        except _Truncated as e:
            raise DataCorruption(f"{path}: truncated or corrupt trace-cmd .dat: {e}") from None
        except FormatError as e:
            raise DataCorruption(f"{path}: corrupt trace-cmd .dat: {e}") from None
        finally:
            # a recording's LOST frames count what the pages' own counts
            # count too, and more (the per-CPU overruns): the larger
            stats.lost += max(lost[0], dat.recorded_lost)
            stats.skipped += decoder.skipped
            stats.lost_unknown += decoder.lost_unknown

    return dat.header(), itertools.chain.from_iterable(batches())
