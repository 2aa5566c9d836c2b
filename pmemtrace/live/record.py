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
"""

import json
import os
import platform
import time
from typing import Optional

from .. import __version__
from ..errors import UsageError

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
    """Events as JSON lines into *path* (see the module docstring)."""

    def __init__(self, path: str, header: dict):
        self.path = path
        try:
            self.fd: Optional[int] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            raise UsageError(f"--record {path}: the directory does not exist") from None
        except IsADirectoryError:
            raise UsageError(f"--record {path}: is a directory") from None
        except PermissionError:
            raise UsageError(f"--record {path}: permission denied") from None
        self.events = 0
        self.lost = 0
        self._lines: list = []
        self._comm_json: dict = {}
        self._write(header)
        self.flush()

    def _write(self, obj) -> None:
        self._lines.append(json.dumps(obj, separators=(",", ":")))

    def event(self, ev) -> None:
        self.events += 1
        self._write(ev.to_json())

    def record(self, r) -> None:
        """A session ``Record`` of a live backend, as :meth:`event` writes
        its Event (the same line, byte for byte), without building the
        Event and its dict for json: the --record hot path."""
        self.events += 1
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
        if n:
            self.lost += n
            self._write({"type": "lost", "count": n})

    def flush(self) -> None:
        """Write the buffered lines (whole lines only: a kill between two
        flushes loses the batch, never leaves half a line but by a write
        cut short)."""
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
        self._write(
            {"type": "end", "events": self.events, "lost": self.lost, "ended": time.time(), "complete": complete}
        )
        try:
            self.flush()
        finally:
            os.close(self.fd)
            self.fd = None
        return self.path
