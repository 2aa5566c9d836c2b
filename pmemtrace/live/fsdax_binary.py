"""fs_dax records from ftrace's binary data (``.dat`` files, ``trace_pipe_raw``).

:func:`converters` maps the event ids of a set of parsed formats
(:mod:`pmemtrace.live.ftrace_binary`) to functions ``(ts_ns, cpu, values)
-> (name, fields, ts, pid, comm, cpu)``: the text parser's record
(:func:`pmemtrace.live.parse.iter_trace_records`), with the same *fields*
dict, key for key and in the same order, as
:func:`pmemtrace.live.parse.parse_fs_dax_text` gives for the event's text:
what the print fmt (include/trace/events/fs_dax.h) shows, so a binary trace
and its text replay alike.  That means ``vm_flags`` keeps only VM_SHARED
(the print fmt's ``shared``/``private``), 6.1's ``zero_page`` is named
``zero_folio``, and *ts* is seconds rounded to the microsecond as
``trace-cmd report`` prints them (libtraceevent print_event_time()).
"""

from __future__ import annotations

from typing import Callable

from .ftrace_binary import EventFormat
from .parse import FS_DAX_EVENTS, FS_DAX_FIELD_ORDER, VM_SHARED

Converter = Callable[[int, int, tuple], tuple]


def converters(formats: dict[int, EventFormat], comms: dict[int, str]) -> dict[int, Converter]:
    """``{event id: (ts_ns, cpu, values) -> record}`` for the fs_dax events
    among *formats* (other events are left out: the decoder skips them);
    *comms* maps pids to command names (trace-cmd's saved cmdlines; an
    unknown pid is ``<...>``, pid 0 ``<idle>``, as trace-cmd report shows)."""
    out: dict[int, Converter] = {}
    for eid, f in formats.items():
        if f.name in FS_DAX_EVENTS and f.system in (None, "fs_dax"):
            conv = _converter(f, comms)
            if conv is not None:
                out[eid] = conv
    return out


def _converter(f: EventFormat, comms: dict[int, str]):
    index = dict(f.index)
    if "zero_page" in index and "zero_folio" not in index:
        index["zero_folio"] = index.pop("zero_page")
    if "dev" not in index or "ino" not in index or "common_pid" not in index:
        return None
    # one dict display per event, generated once per format: the hot path
    # of a .dat replay builds no intermediate lists
    items = []
    for k in FS_DAX_FIELD_ORDER:
        if k in index:
            v = f"v[{index[k]}]"
            items.append(f"{k!r}: {v} & {VM_SHARED}" if k == "vm_flags" else f"{k!r}: {v}")
    pid = f"v[{index['common_pid']}]"
    src = (
        f"def conv(ts, cpu, v):\n"
        f"    return (name, {{{', '.join(items)}}}, ((ts + 500) // 1000) / 1e6, {pid}, comm({pid}, '<...>'), cpu)\n"
    )
    env = {"name": f.name, "comm": comms.get}
    comms.setdefault(0, "<idle>")
    exec(src, env)  # the source is built above from field positions only
    return env["conv"]
