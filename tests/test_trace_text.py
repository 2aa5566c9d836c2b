"""``tracefs.trace_text``: the trace_pipe lines ``pmemtrace run --out``
keeps beside a case (its events come from the binary capture).  Every
event of every embedded example, MAP_SYNC writebacks included, must come
back from the text parser with the same name, fields, pid, cpu and time."""

import glob
import os

import pytest

from pmemtrace.events import Event
from pmemtrace.live.parse import VM_SHARED, ParseStats, parse_trace_text
from pmemtrace.live.tracefs import trace_text
from pmemtrace.model import explain, load_case

EXAMPLES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "pmemtrace", "model", "examples", "*.json")))


def _model_events(path):
    out = []
    for i, r in enumerate(explain(load_case(path)).results):
        for e in r.events():
            if e.name.startswith("dax_"):  # fs_dax tracepoints (not probe hits)
                fields = dict(e.fields)
                if "vm_flags" in fields:  # the captured events keep the shared bit only, as the text does
                    fields["vm_flags"] &= VM_SHARED
                out.append(Event(e.name, fields, ts=100.0 + i / 1e3, pid=4242, comm="app x", cpu=i % 3))
    return out


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_trace_text_parses_back(path):
    events = _model_events(path)
    stats = ParseStats()
    back = list(parse_trace_text(trace_text(events).splitlines(), stats))
    assert stats.bad == 0 and stats.skipped == 0, stats.first_bad
    assert [(e.name, e.fields, e.pid, e.comm, e.cpu, e.ts) for e in back] == [
        (e.name, e.fields, e.pid, e.comm, e.cpu, e.ts) for e in events
    ]


def test_writebacks_parse_back():
    """The MAP_SYNC writeback events (no example's model emits them with
    fields), with the fields the binary capture decodes."""
    dev = (259 << 20) | 0
    events = [
        Event("dax_writeback_range", {"dev": dev, "ino": 12, "start_index": 0, "end_index": 511}, 1.0, 7, "a", 0),
        Event("dax_writeback_one", {"dev": dev, "ino": 12, "pgoff": 512, "pglen": 512}, 1.5, 7, "a", 1),
        Event("dax_writeback_range_done", {"dev": dev, "ino": 12, "start_index": 0, "end_index": 511}, 2.0, 7, "a", 0),
    ]
    stats = ParseStats()
    back = list(parse_trace_text(trace_text(events).splitlines(), stats))
    assert stats.bad == 0 and stats.skipped == 0, stats.first_bad
    assert [(e.name, e.fields, e.ts) for e in back] == [(e.name, e.fields, e.ts) for e in events]
