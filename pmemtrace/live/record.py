"""``pmemtrace watch --record FILE``: events as JSON lines.

Schema (version 1, documented in docs/watch.md):

* line 1, the header: ``{"pmemtrace_record": 1, "pmemtrace": <version>,
  "kernel": <uname -r>, "host": <nodename>, "backend": "bcc"|"tracefs",
  "started": <unix time>, "devices": [...], "probes": [...],
  "event_record": {"version": PMT_EVENT_VERSION, "size": 160}}``
* then one :meth:`pmemtrace.events.Event.to_json` object per event,
* ``{"type": "lost", "count": n}`` whenever the backend reports lost events,
* last, ``{"type": "end", "events": n, "lost": n, "ended": <unix time>,
  "complete": bool}``.

The file is written where asked from the start, complete lines at a time
(:meth:`Recorder.flush` after every batch of events), so a ``watch`` killed
with SIGKILL leaves a file that replays up to its last batch: without the
end line, ``pmemtrace replay`` reports it incomplete.

Where the source reads ring-buffer pages (tracefs's binary reader), the
recorder writes those instead (version 2, :mod:`.pagerecord`), chosen by
:meth:`Recorder.attach` before the first event.
"""

import json
import os
import platform
import time
from typing import Any, Optional

from .. import __version__
from ..errors import UsageError
from .pagerecord import RECORD_VERSION as PAGES_VERSION
from .pagerecord import FrameWriter

RECORD_VERSION = 1

#: sources whose event fields are all integers (decoded from binary
#: records), so :meth:`Recorder.record` can print them itself
_INT_FIELDS_SOURCES = ("bcc", "tracefs")


def make_header(backend, probes=(), devices=(), kernel=None, extra=None):
    h = {
        "pmemtrace_record": RECORD_VERSION,
        "pmemtrace": __version__,
        "kernel": kernel or platform.release(),
        "host": platform.node(),
        "backend": backend,
        "started": time.time(),
        "devices": list(devices),
        "probes": list(probes),
        "event_record": {"version": 1, "size": 160},
    }
    if extra:
        h.update(extra)
    return h


def recording_devices(sys_root: str = "/sys") -> list:
    """nd namespaces for the recording header (best effort, never fails)."""
    out = []
    base = os.path.join(sys_root, "bus", "nd", "devices")
    try:
        for n in sorted(os.listdir(base)):
            if n.startswith("namespace"):
                d = {"name": n}
                for k in ("mode", "size", "resource", "align"):
                    try:
                        with open(os.path.join(base, n, k)) as f:
                            d[k] = f.read().strip()
                    except OSError:
                        pass
                out.append(d)
    except OSError:
        pass
    return out


class Recorder:
    """Events as JSON lines into *path*, or what the source reads, in frames (see the
    module docstring).  *binary*: False keeps JSON lines (``--record-format
    jsonl``)."""

    def __init__(self, path: str, header: dict, binary: bool = True):
        self.path = path
        self.header = header
        self.binary = binary
        self.frames: Optional[FrameWriter] = None
        self._source_stats: Any = None  # the page source's ParseStats (events decoded)
        self._raw: Any = None  # its RawPipes: the command names
        self._stride = 0  # bytes a ring record takes (a recording of records)
        self._own_lost: Any = None  # the source's losses of what it records, where it says
        try:
            self.fd: Optional[int] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            raise UsageError(f"--record {path}: the directory does not exist") from None
        except IsADirectoryError:
            raise UsageError(f"--record {path}: is a directory") from None
        except PermissionError:
            raise UsageError(f"--record {path}: permission denied") from None
        self._events = 0
        self.lost = 0
        self._lines: list = []
        self._comm_json: dict = {}
        self._comms_written: dict = {}
        self._write(header)
        self.flush()

    @property
    def takes_records(self) -> bool:
        """True when the session hands it every record (JSON lines)."""
        return self.frames is None

    @property
    def events(self) -> int:
        """Events recorded (of pages: decoded from those written so far)."""
        if self._source_stats is not None:
            return self._source_stats.events
        return self._events

    def attach(self, source) -> None:
        """Record what *source* reads as it reads it, where it can say what
        that is and binary is allowed: tracefs's ring-buffer pages
        (``source.page_info()``), bcc's ring records (``source.record_info()``);
        else stay JSON lines.  Before the first event."""
        if not self.binary or self._events or self.fd is None:
            return
        pages = source.page_info() if hasattr(source, "page_info") else None
        records = source.record_info() if pages is None and hasattr(source, "record_info") else None
        if pages is None and records is None:
            return
        header = {k: v for k, v in self.header.items() if k != "event_record"}
        header["pmemtrace_record"] = PAGES_VERSION
        if pages is not None:
            header["pages"] = pages
        else:
            header["records"] = records
        os.ftruncate(self.fd, 0)  # the version-1 header written at the start
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.header = header
        self._write(header)
        self.flush()
        if pages is not None:
            self.frames = FrameWriter(self.fd, pages["page_size"])
            self._source_stats = source.stats
            self._raw = source.raw
            source.page_tap = self._round
        elif records is not None:
            self.frames = FrameWriter(self.fd, 0)
            self._stride = records["stride"]
            # a source recording with a ring of its own says what that lost
            self._own_lost = getattr(source, "record_lost", None)
            source.record_tap = self._records

    def _records(self, chunk) -> None:
        """Ring records read by the source: written at once."""
        assert self.frames is not None
        self.frames.records(chunk)
        self._events += len(chunk) // self._stride
        self._record_lost()
        self.frames.flush()

    def _record_lost(self) -> None:
        if self._own_lost is not None and self.frames is not None:
            n = self._own_lost() - self.lost
            if n > 0:
                self.lost += n
                self.frames.lost(n)

    def _round(self, rnd) -> None:
        """A round of pages read by the source: written at once, with the
        command names it learned since the last."""
        assert self.frames is not None
        self.frames.round(rnd)
        self._new_comms()
        self.frames.flush()

    def _new_comms(self) -> None:
        if self._raw is None:
            return  # records carry their command names
        comms, done = self._raw.comms, self._comms_written
        if self.frames is not None and comms != done:
            new = {k: v for k, v in comms.items() if done.get(k) != v}
            self.frames.comms(new)
            done.update(new)

    def _write(self, obj) -> None:
        self._lines.append(json.dumps(obj, separators=(",", ":")))

    def event(self, ev) -> None:
        self._events += 1
        self._write(ev.to_json())

    def record(self, r) -> None:
        """A session ``Record`` of a live backend, as :meth:`event` writes
        its Event (the same line, byte for byte), without building the
        Event and its dict for json: the --record hot path."""
        self._events += 1
        line = None
        if r.source in _INT_FIELDS_SOURCES and None not in (r.ts, r.pid, r.comm, r.cpu):
            comm = self._comm_json.get(r.comm)
            if comm is None:
                comm = self._comm_json[r.comm] = json.dumps(r.comm)
            # %d, not an f-string: it refuses a value that is not a number
            # (TypeError: json writes it instead)
            try:
                fields = ",".join(['"%s":%d' % kv for kv in r.fields.items()])  # noqa: UP031
                line = '{"name":"%s","fields":{%s},"ts":%r,"pid":%d,"tid":%d,"comm":%s,"cpu":%d,"source":"%s"}' % (  # noqa: UP031
                    r.name,
                    fields,
                    float(r.ts),
                    r.pid,
                    r.tid if r.tid is not None else r.pid,
                    comm,
                    r.cpu,
                    r.source,
                )
            except TypeError:
                line = None
        if line is None:
            self._write(r.event().to_json())
        else:
            self._lines.append(line)

    def lost_events(self, n: int) -> None:
        if self._own_lost is not None:
            self._record_lost()  # the session's count has the views' ring too
            return
        if n:
            self.lost += n
            if self.frames is not None:
                self.frames.lost(n)
            else:
                self._write({"type": "lost", "count": n})

    def flush(self) -> None:
        """Write the buffered lines (whole lines only: a kill between two
        flushes loses the batch, never leaves half a line but by a write
        cut short)."""
        if self.frames is not None:
            self.frames.flush()
            return
        if self._lines and self.fd is not None:
            data = ("\n".join(self._lines) + "\n").encode()
            self._lines = []
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]

    def discard(self) -> None:
        """Close and remove the file (nothing was recorded)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def close(self, complete: bool = True):
        """Write the end line and close; returns the path (None if closed)."""
        if self.fd is None:
            return None
        self._record_lost()
        end = {"type": "end", "events": self.events, "lost": self.lost, "ended": time.time(), "complete": complete}
        if self.frames is not None:
            try:
                if self._raw is not None:
                    self._raw.refresh_comms()  # the names of pids first seen in the last round
            except OSError:
                pass
            self._new_comms()
            self.frames.end(end)
        else:
            self._write(end)
        try:
            self.flush()
        finally:
            os.close(self.fd)
            self.fd = None
        return self.path
