"""ftrace's binary event data: event format files and ring-buffer pages.

One decoder for everything that carries ftrace's raw ring-buffer pages:
trace-cmd ``.dat`` files (:mod:`pmemtrace.live.tracedat`) and each CPU's
``per_cpu/cpuN/trace_pipe_raw`` in tracefs (which reads whole pages).

API
===

``parse_event_format(text, system=None) -> EventFormat``
    parse one ``events/<system>/<name>/format`` file.  An :class:`EventFormat`
    has ``name``, ``system``, ``id``, ``fields`` (a list of :class:`Field`:
    ``name``, ``type``, ``offset``, ``size``, ``signed``, ``array``,
    ``data_loc``), ``print_fmt`` and :meth:`EventFormat.unpack_from`.
    ``EventFormat.unpacker`` is a ``struct.Struct.unpack_from`` bound to the
    record layout (every field, common ones first, in format order: scalars
    of 1/2/4/8 bytes as integers, anything else as ``bytes``; a
    ``__data_loc`` field as its raw u32 ``len << 16 | offset``, see
    :func:`data_loc_bytes`); ``EventFormat.index[name]`` is a field's
    position in the tuple it returns.

``parse_header_page(text) -> PageHeader``
    the page layout from ``events/header_page`` (``timestamp`` at 0,
    ``commit`` of the kernel's long size, ``data`` after it).

``check_header_event(text)``
    refuse a ``events/header_event`` that is not the 5-bit type_len /
    27-bit time_delta layout every kernel since 2.6.31 writes (raises
    :class:`FormatError`).

``PageDecoder(header, formats, big_endian=False)``
    *formats*: ``{event id: EventFormat}`` of the events to decode; records
    of other ids are skipped (counted in :attr:`PageDecoder.skipped`).
    ``decode(page, cpu, out) -> lost`` appends ``(ts_ns, cpu, event_id,
    values)`` for each wanted record of one page (*page*: ``bytes`` or a
    ``memoryview`` of at least the page's header + commit bytes; *values*
    is ``formats[event_id].unpack_from`` of the record) to the list *out*,
    and returns the lost-events count the page carries: 0, n, or
    :data:`LOST_UNKNOWN` (-1) when the kernel dropped events without
    storing how many.  ``decode_pages(buf, page_size, cpu, out)`` does it
    for every page of a buffer and returns the summed known losses (and
    counts unknown ones in :attr:`PageDecoder.lost_unknown`).

A page (include/linux/ring_buffer.h, kernel/trace/ring_buffer.c): a u64
timestamp, a ``local_t commit`` (bytes of data; bit 31 set when events were
lost before this page, bit 30 when the count is stored as a long after the
data), then records: a u32 ``type_len:5 time_delta:27`` header and

* type_len 1..28: data of type_len * 4 bytes;
* 0: a u32 length (including itself) then the data;
* 29 PADDING: a discarded record (u32 length of what follows), or with
  time_delta 0 the end of the page's data;
* 30 TIME_EXTEND: time_delta |= u32 << 27;
* 31 TIME_STAMP: an absolute timestamp (u32 << 27 | time_delta) whose top
  5 bits come from the running timestamp.

Timestamps accumulate deltas from the page's timestamp as libtraceevent's
kbuffer does (a discarded record's delta counts too), so the values agree
with ``trace-cmd report``'s.  Malformed data raises :class:`FormatError`
(a length past the page, a header that does not parse): never an
IndexError or struct.error.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

LOST_UNKNOWN = -1

MISSED_EVENTS = 1 << 31
MISSED_STORED = 1 << 30
COMMIT_MASK = (1 << 27) - 1
TS_SHIFT = 27
TS_MSB = 0xF8 << 56

TYPE_PADDING = 29
TYPE_TIME_EXTEND = 30
TYPE_TIME_STAMP = 31


class FormatError(ValueError):
    """Binary trace data or a format file that cannot be decoded."""


@dataclass
class Field:
    name: str
    type: str
    offset: int
    size: int
    signed: bool
    array: int | None = None  # element count of ``type name[N]``
    data_loc: bool = False  # ``__data_loc`` (dynamic array: u32 len << 16 | offset)


@dataclass
class EventFormat:
    name: str
    system: str | None
    id: int
    fields: list[Field]
    print_fmt: str = ""
    index: dict[str, int] = field(default_factory=dict)
    size: int = 0  # bytes of the fixed part of a record
    unpacker: struct.Struct = field(default_factory=lambda: struct.Struct(""))

    def layout(self, big_endian: bool = False) -> None:
        """(Re)build :attr:`unpacker` for the file's byte order."""
        fmt = [">" if big_endian else "<"]
        pos = 0
        self.index = {}
        for f in sorted(self.fields, key=lambda f: f.offset):
            if f.offset < pos:  # overlapping fields (a union): keep the first
                continue
            if f.offset > pos:
                fmt.append(f"{f.offset - pos}x")
            if f.data_loc:
                code = "I" if f.size == 4 else f"{f.size}s"
            elif f.array is None and f.size in _INT_CODES:
                code = _INT_CODES[f.size].lower() if f.signed else _INT_CODES[f.size]
            else:
                code = f"{f.size}s"
            fmt.append(code)
            self.index[f.name] = len(self.index)
            pos = f.offset + f.size
        self.size = pos
        self.unpacker = struct.Struct("".join(fmt))

    def unpack_from(self, buf, offset: int = 0) -> tuple:
        return self.unpacker.unpack_from(buf, offset)


_INT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}

_FIELD_RE = re.compile(
    r"^\s*field:(?P<decl>[^;]*);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);(?:\s*signed:(?P<signed>\d+);)?"
)
_DECL_RE = re.compile(r"^(?P<type>.*?)\s*(?P<name>[A-Za-z_]\w*)\s*(?:\[(?P<count>[^\]]*)\])?\s*$")


def parse_event_format(text: str, system: str | None = None) -> EventFormat:
    """One ``events/<system>/<name>/format`` file (see the module docstring)."""
    name = None
    eid = None
    fields: list[Field] = []
    print_fmt = ""
    for line in text.splitlines():
        if line.startswith("name:"):
            name = line[5:].strip()
        elif line.startswith("ID:"):
            try:
                eid = int(line[3:].strip())
            except ValueError:
                raise FormatError(f"event format: bad ID line {line!r}") from None
        elif line.startswith("print fmt:"):
            print_fmt = line[10:].strip()
        else:
            m = _FIELD_RE.match(line)
            if m:
                fields.append(_field(m))
    if name is None or eid is None:
        raise FormatError("event format: no 'name:' or 'ID:' line")
    ev = EventFormat(name=name, system=system, id=eid, fields=fields, print_fmt=print_fmt)
    ev.layout()
    return ev


def _field(m: re.Match) -> Field:
    decl = m.group("decl").strip()
    data_loc = False
    if decl.startswith("__data_loc "):
        data_loc = True
        decl = decl[len("__data_loc ") :]
    elif decl.startswith("__rel_loc "):
        data_loc = True
        decl = decl[len("__rel_loc ") :]
    d = _DECL_RE.match(decl)
    if not d:
        raise FormatError(f"event format: cannot read field {decl!r}")
    count = d.group("count")
    array = None
    if count is not None and not data_loc:
        try:
            array = int(count, 0) if count else 0
        except ValueError:  # a symbolic length (TASK_COMM_LEN): the size says it
            array = 0
    signed = m.group("signed")
    return Field(
        name=d.group("name"),
        type=d.group("type"),
        offset=int(m.group("offset")),
        size=int(m.group("size")),
        signed=bool(int(signed)) if signed is not None else False,
        array=array,
        data_loc=data_loc,
    )


def data_loc_bytes(record: bytes, raw: int) -> bytes:
    """The bytes of a ``__data_loc`` field whose raw u32 is *raw*, from the
    record (the event's data, common fields first)."""
    off, length = raw & 0xFFFF, raw >> 16
    return bytes(record[off : off + length])


@dataclass
class PageHeader:
    ts_offset: int = 0
    commit_offset: int = 8
    commit_size: int = 8  # the kernel's long: 8 on 64-bit, 4 on 32-bit
    data_offset: int = 16


def parse_header_page(text: str) -> PageHeader:
    """``events/header_page``: where the timestamp, commit and data are."""
    got: dict[str, Field] = {}
    for line in text.splitlines():
        m = _FIELD_RE.match(line)
        if m:
            f = _field(m)
            got.setdefault(f.name, f)
    try:
        ts, commit, data = got["timestamp"], got["commit"], got["data"]
    except KeyError as e:
        raise FormatError(f"header_page: no {e.args[0]!r} field") from None
    if ts.size != 8 or commit.size not in (4, 8):
        raise FormatError(f"header_page: unsupported layout (timestamp size {ts.size}, commit size {commit.size})")
    return PageHeader(ts.offset, commit.offset, commit.size, data.offset)


def check_header_event(text: str) -> None:
    """Refuse a record header that is not ``type_len:5 time_delta:27``."""
    compact = " ".join(text.split())
    if "type_len : 5 bits" not in compact or "time_delta : 27 bits" not in compact:
        raise FormatError("header_event: not the type_len:5/time_delta:27 record header this reader knows")


class PageDecoder:
    """Decode ring-buffer pages (see the module docstring)."""

    def __init__(self, header: PageHeader, formats: dict[int, EventFormat], big_endian: bool = False):
        self.header = header
        self.formats = formats
        self.big_endian = big_endian
        e = ">" if big_endian else "<"
        for f in formats.values():
            f.layout(big_endian)
        self._unpackers = {i: f.unpacker.unpack_from for i, f in formats.items()}
        self._u32 = struct.Struct(e + "I").unpack_from
        self._u16 = struct.Struct(e + "H").unpack_from
        self._head = struct.Struct(e + "IH").unpack_from  # a record's header word and its event id
        self._ts = struct.Struct(e + "Q").unpack_from
        self._commit = struct.Struct(e + ("Q" if header.commit_size == 8 else "I")).unpack_from
        self.skipped = 0  # records of events not in *formats*
        self.lost_unknown = 0  # pages after a loss of unknown size

    def decode(self, page, cpu: int, out: list) -> int:
        """Append the page's wanted records to *out*; return its lost count."""
        h = self.header
        try:
            ts = self._ts(page, h.ts_offset)[0]
            commit = self._commit(page, h.commit_offset)[0]
        except struct.error:
            raise FormatError(f"cpu {cpu}: page shorter than its header") from None
        size = commit & COMMIT_MASK
        start = h.data_offset
        end = start + size
        if end > len(page):
            raise FormatError(f"cpu {cpu}: page commit {size} runs past the page ({len(page)} bytes)")
        lost = 0
        if commit & MISSED_EVENTS:
            if commit & MISSED_STORED:
                try:
                    lost = self._commit(page, end)[0]
                except struct.error:
                    raise FormatError(f"cpu {cpu}: lost-events count past the page") from None
            else:
                lost = LOST_UNKNOWN
        u32 = self._u32
        u16 = self._u16
        head = self._head
        unpackers = self._unpackers
        big = self.big_endian
        append = out.append
        skipped = 0
        pos = start
        while pos < end:
            if pos + 6 <= end:
                word, eid = head(page, pos)
            elif pos + 4 <= end:
                word, eid = u32(page, pos)[0], -1
            else:
                raise FormatError(f"cpu {cpu}: record header past the page's data at {pos}")
            if big:
                type_len, delta = word >> 27, word & COMMIT_MASK
            else:
                type_len, delta = word & 31, word >> 5
            if 0 < type_len <= 28:  # the common case: a small data record
                ts += delta
                nxt = pos + 4 + (type_len << 2)
                if nxt > end:
                    raise FormatError(f"cpu {cpu}: record of {type_len << 2} bytes runs past the page's data")
                unpack = unpackers.get(eid)
                if unpack is None:
                    skipped += 1
                else:
                    try:
                        append((ts, cpu, eid, unpack(page, pos + 4)))
                    except struct.error:
                        raise FormatError(f"cpu {cpu}: event {eid} record shorter than its format") from None
                pos = nxt
                continue
            pos += 4
            if pos + 4 > end:
                if type_len == TYPE_PADDING:
                    break  # a padding header at the very end
                raise FormatError(f"cpu {cpu}: record length past the page's data at {pos}")
            arg = u32(page, pos)[0]
            if type_len == 0:  # a data record with its length in a word of its own
                length = ((arg - 4) + 3) & ~3
                ts += delta
                pos += 4
                nxt = pos + length
                if length <= 0 or nxt > end:
                    raise FormatError(f"cpu {cpu}: record of {length} bytes runs past the page's data")
                eid = u16(page, pos)[0]
                unpack = unpackers.get(eid)
                if unpack is None:
                    skipped += 1
                else:
                    try:
                        append((ts, cpu, eid, unpack(page, pos)))
                    except struct.error:
                        raise FormatError(f"cpu {cpu}: event {eid} record shorter than its format") from None
                pos = nxt
            elif type_len == TYPE_TIME_EXTEND:
                ts += (arg << TS_SHIFT) + delta
                pos += 4
            elif type_len == TYPE_PADDING:
                if delta == 0:  # the rest of the page is empty
                    break
                ts += delta  # a discarded record: its delta counts (kbuffer)
                if arg <= 0:
                    raise FormatError(f"cpu {cpu}: padding of {arg} bytes")
                pos += arg
            else:  # TIME_STAMP: absolute, the top bits from the running timestamp
                ts = ((arg << TS_SHIFT) + delta) | (ts & TS_MSB)
                pos += 4
        self.skipped += skipped
        return lost

    def decode_pages(self, buf, page_size: int, cpu: int, out: list) -> int:
        """:meth:`decode` every *page_size* page of *buf*; the summed known
        losses (unknown ones are counted in :attr:`lost_unknown`)."""
        mv = memoryview(buf)
        lost = 0
        for off in range(0, len(mv) - self.header.data_offset + 1, page_size):
            n = self.decode(mv[off : off + page_size], cpu, out)
            if n == LOST_UNKNOWN:
                self.lost_unknown += 1
            else:
                lost += n
        return lost
