"""fs_dax records from ftrace's binary data (``.dat`` files, ``trace_pipe_raw``).

:func:`converters` maps the event ids of a set of parsed formats
(:mod:`pmemtrace.live.ftrace_binary`) to functions ``values -> (name,
fields, pid)`` giving the same *fields* dict, key for key and in the same
order, as :func:`pmemtrace.live.parse.parse_fs_dax_text` gives for the
event's text: what the print fmt (include/trace/events/fs_dax.h) shows,
so a binary trace and its text replay alike.  That means ``vm_flags`` keeps
only VM_SHARED (the print fmt's ``shared``/``private``) and 6.1's
``zero_page`` is named ``zero_folio``.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Callable

from .ftrace_binary import EventFormat
from .parse import FS_DAX_EVENTS, VM_SHARED

#: field order of parse_fs_dax_text's dicts
_ORDER = (
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

Converter = Callable[[tuple], tuple]


def converters(formats: dict[int, EventFormat]) -> dict[int, Converter]:
    """``{event id: values -> (name, fields, pid)}`` for the fs_dax events
    among *formats* (other events are left out: the decoder skips them)."""
    out: dict[int, Converter] = {}
    for eid, f in formats.items():
        if f.name in FS_DAX_EVENTS and (f.system in (None, "fs_dax")):
            conv = _converter(f)
            if conv is not None:
                out[eid] = conv
    return out


def _converter(f: EventFormat):
    index = dict(f.index)
    if "zero_page" in index and "zero_folio" not in index:
        index["zero_folio"] = index.pop("zero_page")
    if "dev" not in index or "ino" not in index or "common_pid" not in index:
        return None
    keys = tuple(k for k in _ORDER if k in index)
    pick = itemgetter(*(index[k] for k in keys))
    pid_at = index["common_pid"]
    name = f.name
    if "vm_flags" in keys:
        vm_at = keys.index("vm_flags")

        def conv(values: tuple) -> tuple:
            v = list(pick(values))
            v[vm_at] &= VM_SHARED
            return name, dict(zip(keys, v)), values[pid_at]

    else:

        def conv(values: tuple) -> tuple:
            return name, dict(zip(keys, pick(values))), values[pid_at]

    return conv
