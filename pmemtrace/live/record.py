"""``pmemtrace watch --record FILE``: events as JSON lines.

Schema (version 1, documented in docs/watch.md):

* line 1, the header: ``{"pmemtrace_record": 1, "pmemtrace": <version>,
  "kernel": <uname -r>, "host": <nodename>, "backend": "bcc"|"tracefs",
  "started": <unix time>, "devices": [...], "probes": [...],
  "event_record": {"version": PMT_EVENT_VERSION, "size": 160}}``
* then one :meth:`pmemtrace.events.Event.to_json` object per event,
* ``{"type": "lost", "count": n}`` whenever the backend reports lost events,
* last, ``{"type": "end", "events": n, "lost": n, "ended": <unix time>}``.

The file is written to ``FILE.part`` and renamed on close, so an aborted
recording never looks complete; the ``.part`` file is kept (it is the user's
data) and its path is reported.
"""

import json
import os
import platform
import time

from .. import __version__

RECORD_VERSION = 1


def make_header(backend, probes=(), devices=(), kernel=None, extra=None):
    h = {"pmemtrace_record": RECORD_VERSION, "pmemtrace": __version__,
         "kernel": kernel or platform.release(), "host": platform.node(),
         "backend": backend, "started": time.time(),
         "devices": list(devices), "probes": list(probes),
         "event_record": {"version": 1, "size": 160}}
    if extra:
        h.update(extra)
    return h


class Recorder:
    def __init__(self, path, header):
        self.path = path
        self.part = path + ".part"
        self.f = open(self.part, "w")
        self.events = 0
        self.lost = 0
        self._write(header)

    def _write(self, obj):
        self.f.write(json.dumps(obj, separators=(",", ":")))
        self.f.write("\n")

    def event(self, ev):
        self.events += 1
        self._write(ev.to_json())

    def lost_events(self, n):
        if n:
            self.lost += n
            self._write({"type": "lost", "count": n})

    def close(self, complete=True):
        if self.f is None:
            return None
        self._write({"type": "end", "events": self.events, "lost": self.lost, "ended": time.time(),
                     "complete": complete})
        self.f.close()
        self.f = None
        if complete:
            os.replace(self.part, self.path)
            return self.path
        return self.part
