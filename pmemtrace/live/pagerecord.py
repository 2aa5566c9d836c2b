"""``watch --record``: what the kernel handed over, as read, not the events.

The JSON-lines recording (:mod:`pmemtrace.live.record`) decodes every event
and formats it in Python: 2.3-2.5 times the untraced workload where
``trace-cmd record``, which writes the pages its reads return, cost 1.3-2
(docs/watch.md).  Where the tracefs backend reads each CPU's
``trace_pipe_raw`` in binary, the recording is those pages instead, so the
session counts them in C as the default watch does (no event is decoded
for the file), and ``replay`` reads the file as it reads a trace-cmd .dat
(the same page decoder, compiled path included).

bcc's every-event session is recorded the same way: the ring buffer's
``struct pmt_event`` records as read (a RECORDS frame per read), written
before they are decoded for the views, none formatted as JSON.

Layout (``"pmemtrace_record": 2``, documented in docs/watch.md):

* line 1: the JSON header of version 1 (:func:`.record.make_header`) with
  ``"pmemtrace_record": 2`` and ``"pages": {"page_size", "header_page",
  "header_event", "formats": {event: format file}}``, what the pages are
  decoded with;
* then frames, each ``magic "PMTP", u16 type, u16 cpu, u32 length`` (little
  endian) and *length* bytes: ``PAGES`` (whole pages of one CPU, in the
  order read), ``COMMS`` (JSON ``{pid: comm}`` new in ``saved_cmdlines``),
  ``LOST`` (u64: events the kernel reported lost since the last),
  ``END`` (JSON: the end line of version 1), ``RECORDS`` (bcc: ring-buffer
  records of ``"records": {"struct", "version", "size", "stride",
  "offset"}``, each *stride* bytes with the record at *offset*).

Frames are written whole, once per drain, so a killed ``watch`` leaves a
file that replays up to its last drain; a last frame cut mid-write is
ignored and the recording, without its END frame, reported incomplete.
"""

from __future__ import annotations

import itertools
import json
import mmap
import os
import struct
from typing import Any

from ..errors import DataCorruption, UsageError
from .decode import EVENT_SIZE, DevdaxPairing, decode_records
from .ftrace_binary import FormatError, check_header_event, parse_event_format, parse_header_page

RECORD_VERSION = 2
FORMAT = "pmemtrace-pages"
RECORDS_FORMAT = "pmemtrace-records"
FRAME = struct.Struct("<4sHHI")
MAGIC = b"PMTP"
PAGES, COMMS, LOST, END, RECORDS = 1, 2, 3, 4, 5
_U64 = struct.Struct("<Q")
#: buffers one writev(2) takes (POSIX leaves it to the system; Linux: 1,024)
_IOV_MAX = 1024
#: the header line is read up to this size (formats of nine events: ~10 KiB)
HEADER_MAX = 1 << 20


def page_info(root: str, instance: str, events, page_size: int) -> dict:
    """The header's ``pages`` object: what the pages of *events* (fs_dax,
    enabled in *instance*) are decoded with."""

    def read(path: str) -> str:
        with open(path) as f:
            return f.read()

    return {
        "page_size": page_size,
        "header_page": read(os.path.join(root, "events", "header_page")),
        "header_event": read(os.path.join(root, "events", "header_event")),
        "formats": {ev: read(os.path.join(instance, "events", "fs_dax", ev, "format")) for ev in events},
    }


def record_info(stride: int, offset: int) -> dict:
    """The header's ``records`` object: bcc's ``struct pmt_event`` records
    (bpf/pmemtrace.h), each *stride* bytes of the ring with the record at
    *offset* (after the ring's record header)."""
    return {"struct": "pmt_event", "version": 1, "size": EVENT_SIZE, "stride": stride, "offset": offset}


class FrameWriter:
    """Frames into the open file *fd* (see the module docstring)."""

    def __init__(self, fd: int, page_size: int):
        self.fd = fd
        self.page_size = page_size
        self._frames: list[bytes] = []
        self.pages = 0

    def round(self, rnd) -> None:
        """A round of ``(cpu, pages)`` (:meth:`.rawpipe.RawPipes.next_round`):
        one PAGES frame per CPU's pages, a short last page padded to a whole
        one (its header says how much of it is data)."""
        ps = self.page_size
        for cpu, pages in rnd:
            if len(pages) % ps:
                pages = bytes(pages).ljust(-(-len(pages) // ps) * ps, b"\0")
            self._frames += [FRAME.pack(MAGIC, PAGES, cpu, len(pages)), pages]
            self.pages += len(pages) // ps

    def records(self, chunk: bytes) -> None:
        """Ring-buffer records as read (whole strides)."""
        self._frames += [FRAME.pack(MAGIC, RECORDS, 0, len(chunk)), chunk]

    def comms(self, new: dict) -> None:
        if new:
            data = json.dumps({str(k): v for k, v in new.items()}, separators=(",", ":")).encode()
            self._frames += [FRAME.pack(MAGIC, COMMS, 0, len(data)), data]

    def lost(self, n: int) -> None:
        self._frames += [FRAME.pack(MAGIC, LOST, 0, _U64.size), _U64.pack(n)]

    def end(self, obj: dict) -> None:
        data = json.dumps(obj, separators=(",", ":")).encode()
        self._frames += [FRAME.pack(MAGIC, END, 0, len(data)), data]

    def flush(self) -> None:
        """Write the frames buffered, in one write where the kernel takes it."""
        if not self._frames:
            return
        frames, self._frames = self._frames, []
        # writev: the pages go from the buffers read into, not joined first
        while len(frames) > 1:
            batch = frames[:_IOV_MAX]
            n = os.writev(self.fd, batch)
            done = sum(map(len, batch))
            if n < done:  # a short write (a full disk, a signal): the rest in order
                frames = [b"".join(frames)[n:]]
                break
            frames = frames[len(batch) :]
        view = memoryview(frames[0]) if frames else memoryview(b"")
        while view:
            n = os.write(self.fd, view)
            view = view[n:]


# ---------------------------------------------------------------------------
# Reading (replay)


def recording_kind(path: str) -> str | None:
    """``"pages"`` or ``"records"`` for a version-2 recording, else None."""
    try:
        with open(path, "rb") as f:
            if not f.read(64).startswith((b'{"pmemtrace_record":2,', b'{"pmemtrace_record": 2,')):
                return None
            f.seek(0)
            header = json.loads(f.readline(HEADER_MAX))
    except (OSError, ValueError):
        return "pages"  # a damaged header: the reader says what is wrong
    return "records" if isinstance(header, dict) and "records" in header else "pages"


def is_page_recording(path: str) -> bool:
    """True when *path* is a version-2 recording of ring-buffer pages."""
    return recording_kind(path) == "pages"


def open_page_recording(path: str) -> tuple[Any, Any]:
    """``(TraceDat, mmap)`` of a version-2 recording, as
    :func:`.tracedat.open_dat` gives them for a .dat: the pages of each CPU
    as extents of the file, the formats and command names it carries; its
    header, end frame, recorded losses and whether it was cut short in
    the TraceDat's ``recording``, ``trailer``, ``recorded_lost`` and
    ``incomplete``."""
    mm = _map(path)
    try:
        return _parse(path, mm), mm
    except BaseException:
        mm.close()
        raise


def _map(path: str):
    """*path* mapped read-only (an empty file: empty bytes)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    with f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size else b""


def _corrupt(path: str, what: str) -> DataCorruption:
    return DataCorruption(f"{path}: corrupt pmemtrace recording: {what}")


def _header(path: str, mm) -> tuple[dict, int]:
    """The recording's JSON header and the offset of its first frame."""
    nl = mm.find(b"\n", 0, HEADER_MAX)
    if nl < 0:
        raise _corrupt(path, f"no header line in its first {HEADER_MAX} bytes")
    try:
        header = json.loads(mm[:nl])
    except ValueError as e:
        raise _corrupt(path, f"header: {e}") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "the header is not a JSON object")
    return header, nl + 1


def _parse(path: str, mm):
    from .tracedat import CpuData, TraceDat

    def bad(what: str) -> DataCorruption:
        return _corrupt(path, what)

    header, first = _header(path, mm)
    try:
        pages = header["pages"]
        page_size = int(pages["page_size"])
        check_header_event(pages["header_event"])
        page_header = parse_header_page(pages["header_page"])
        formats = {}
        for text in pages["formats"].values():
            fmt = parse_event_format(text, "fs_dax")
            formats[fmt.id] = fmt
    except (ValueError, KeyError, TypeError, FormatError) as e:
        raise bad(f"header: {e}") from None
    if page_size < 64 or page_size & (page_size - 1):
        raise bad(f"page size {page_size}")
    dat = TraceDat(path, RECORD_VERSION, False, 8, page_size)
    dat.fmt = FORMAT
    dat.recording = header
    dat.header_page = page_header
    dat.formats = formats
    extents: dict[int, list] = {}
    frames = Frames(path, mm, first)
    for kind, cpu, body, length in frames:
        if kind == PAGES:
            if length % page_size:
                raise bad(f"a page frame at byte {body - FRAME.size} is not whole pages")
            extents.setdefault(cpu, []).append((body, length))
        elif kind == COMMS:
            dat.cmdlines.update(frames.comms(body, length))
    for cpu, ext in sorted(extents.items()):
        dat.cpus.append(CpuData(cpu, ext[0][0], sum(n for _o, n in ext), extents=ext))
    dat.trailer, dat.recorded_lost, dat.incomplete = frames.trailer, frames.lost, frames.incomplete()
    return dat


class Frames:
    """The frames of a recording's mmap *mm* from *pos* on: iterating gives
    ``(type, cpu, offset of the body, length)`` of each data frame, and
    keeps the LOST and END frames (:attr:`lost`, :attr:`trailer`); a last
    frame cut mid-write ends the iteration (:meth:`incomplete` says so)."""

    def __init__(self, path: str, mm, pos: int):
        self.path, self.mm, self.pos = path, mm, pos
        self.lost = 0
        self.trailer: dict | None = None
        self.cut = False

    def bad(self, what: str) -> DataCorruption:
        return _corrupt(self.path, what)

    def __iter__(self):
        mm, pos, size = self.mm, self.pos, len(self.mm)
        while pos < size:
            if pos + FRAME.size > size:
                self.cut = True
                return
            magic, kind, cpu, length = FRAME.unpack_from(mm, pos)
            if magic != MAGIC:
                raise self.bad(f"no frame at byte {pos}")
            body = pos + FRAME.size
            if body + length > size:
                self.cut = True
                return
            if kind == LOST:
                self.lost += _U64.unpack_from(mm, body)[0]
            elif kind == END:
                try:
                    self.trailer = json.loads(mm[body : body + length])
                except ValueError as e:
                    raise self.bad(f"end frame: {e}") from None
            else:
                yield kind, cpu, body, length
            pos = body + length

    def comms(self, body: int, length: int) -> dict:
        try:
            return {int(k): v for k, v in json.loads(self.mm[body : body + length]).items()}
        except (ValueError, AttributeError) as e:
            raise self.bad(f"command names at byte {body - FRAME.size}: {e}") from None

    def incomplete(self) -> str | None:
        """Why the recording is incomplete, or None (after iterating)."""
        if self.trailer is None:
            why = "the recording has no end frame (watch was killed or the disk filled)"
            return why + ("; its last frame was cut mid-write and is skipped" if self.cut else "")
        if self.trailer.get("complete") is False:
            return "the recording says it is incomplete (watch ended by an error)"
        return None


def read_event_records(path: str, stats) -> tuple[dict, Any]:
    """``(header, records)`` of a version-2 recording of bcc ring records:
    the text parser's ``(name, fields, ts, pid, comm, cpu)`` in the order
    recorded (one ring: the order the kernel committed them), decoded as
    the live session decodes them (:func:`.decode.decode_records`, device-
    dax faults paired with their returns); *stats* gets the format, the
    end frame, the losses and why the file is incomplete."""
    mm = _map(path)
    header, first = _header(path, mm)
    try:
        info = header["records"]
        size, stride, offset = int(info["size"]), int(info["stride"]), int(info["offset"])
        ok = info.get("struct") == "pmt_event" and info.get("version") == 1 and offset + size <= stride
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise _corrupt(path, f"header: {e}") from None
    if not ok or size != EVENT_SIZE:
        raise UsageError(f"{path}: records of another pmemtrace version ({info}): replay it with that version")
    stats.format = RECORDS_FORMAT

    def batches():
        frames = Frames(path, mm, first)
        pairing = DevdaxPairing()
        for kind, _cpu, body, length in frames:
            if kind != RECORDS:
                continue
            if length % stride:
                raise frames.bad(f"a record frame at byte {body - FRAME.size} is not whole records")
            chunk = mm[body : body + length]
            out = decode_records(
                [chunk[o + offset : o + offset + size] for o in range(0, length, stride)], slow=pairing
            )
            stats.lines += len(out)
            stats.events += len(out)
            yield [t[:6] for t in out]
        stats.lost += frames.lost
        stats.trailer, stats.incomplete = frames.trailer, frames.incomplete()

    return header, itertools.chain.from_iterable(batches())
