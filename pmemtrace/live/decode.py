"""Decode ``struct pmt_event`` records (bpf/pmemtrace.h) into Events.

The layout is read from the header itself with cffi (the same text the BPF
side compiles), so the two cannot drift; :data:`STRUCT` is the equivalent
``struct`` format used on the hot path, and the unit tests check it against
the cffi layout field by field.
"""

import struct
from typing import NamedTuple

from ..events import Event

#: field order and struct codes, in declaration order (see bpf/pmemtrace.h)
FIELDS = (
    ("timestamp", "Q"),
    ("kind", "I"),
    ("pid", "I"),
    ("tid", "I"),
    ("cpu", "I"),
    ("comm", "16s"),
    ("dev", "I"),
    ("flags", "I"),
    ("ino", "Q"),
    ("address", "Q"),
    ("vm_start", "Q"),
    ("vm_end", "Q"),
    ("vm_flags", "Q"),
    ("pgoff", "Q"),
    ("max_pgoff", "Q"),
    ("pfn", "Q"),
    ("ret", "q"),
    ("nr_pages", "Q"),
    ("result", "I"),
    ("gup_flags", "I"),
    ("order", "I"),
    ("write", "I"),
    ("aux", "Q"),
    ("reserved", "Q"),
)
STRUCT = struct.Struct("<" + "".join(c for _, c in FIELDS))
EVENT_SIZE = 160
assert STRUCT.size == EVENT_SIZE

#: PMT_KIND_* -> Event name (fs_dax tracepoint names, or probe logical names)
KINDS = {
    1: "dax_pmd_fault",
    2: "dax_pmd_fault_done",
    3: "dax_pte_fault",
    4: "dax_pte_fault_done",
    5: "dax_pmd_load_hole",
    6: "dax_pmd_load_hole_fallback",
    7: "dax_load_hole",
    8: "dax_insert_pfn_mkwrite",
    9: "dax_insert_pfn_mkwrite_no_entry",
    20: "insert_pmd",
    21: "insert_pud",
    22: "insert_pmd_ret",
    30: "get_dev_pagemap",
    40: "gup",
    41: "gup_fast",
    42: "gup_ret",
    50: "devdax_fault",
    51: "devdax_fault_ret",
    99: "lost",
}
KIND_OF = {v: k for k, v in KINDS.items()}

#: which record fields each event keeps (the fs_dax format's fields)
_PMD = ("dev", "ino", "vm_start", "vm_end", "vm_flags", "address", "pgoff", "max_pgoff", "flags", "result")
_PTE = ("dev", "ino", "vm_flags", "address", "pgoff", "flags", "result")  # no VMA bounds in the tracepoint
_HOLE = ("dev", "ino", "vm_flags", "address", "aux")
KEEP = {
    "dax_pmd_fault": _PMD,
    "dax_pmd_fault_done": _PMD,
    "dax_pte_fault": _PTE,
    "dax_pte_fault_done": _PTE,
    "dax_load_hole": _PTE,
    "dax_insert_pfn_mkwrite": _PTE,
    "dax_insert_pfn_mkwrite_no_entry": _PTE,
    "dax_pmd_load_hole": _HOLE,
    "dax_pmd_load_hole_fallback": _HOLE,
    "insert_pmd": ("address", "vm_start", "vm_end", "vm_flags", "pfn", "write", "order"),
    "insert_pud": ("address", "vm_start", "vm_end", "vm_flags", "pfn", "write", "order"),
    "insert_pmd_ret": ("ret",),
    "get_dev_pagemap": ("pfn",),
    "gup": ("address", "nr_pages", "gup_flags"),
    "gup_fast": ("address", "nr_pages", "gup_flags"),
    "gup_ret": ("ret",),
    "devdax_fault": ("address", "vm_start", "vm_end", "vm_flags", "pgoff", "flags", "order"),
    "devdax_fault_ret": ("ret", "order", "result"),
    "lost": ("ret",),
}


#: struct pmt_counts' counters, in PMT_COUNT_* order (bpf/pmemtrace.h): the
#: views' row counters the kernel counts in aggregate mode
COUNTERS = ("pmd", "pte", "huge_zero", "insert_pmd", "get_dev_pagemap")


class CountedRow(NamedTuple):
    """Increments the kernel counted for one struct pmt_key since the last
    read.  dev 0 and vm_start 0: the process's get_dev_pagemap calls, no
    mapping known (the views give them to its last DAX row)."""

    pid: int
    comm: str
    dev: int
    ino: int
    vm_start: int
    vm_end: int
    pmd: int = 0
    pte: int = 0
    huge_zero: int = 0
    insert_pmd: int = 0
    get_dev_pagemap: int = 0


def header_text():
    """bpf/pmemtrace.h as installed (package ``pmemtrace._bpf``)."""
    from . import bpf_file

    with open(bpf_file("pmemtrace.h")) as f:
        return f.read()


def cdef_text():
    """The header with preprocessor lines dropped: what cffi's cdef() accepts."""
    return "\n".join(ln for ln in header_text().splitlines() if not ln.lstrip().startswith("#"))


def decode(buf, boot_offset=0.0):
    """One record (bytes-like of >= 160 bytes) -> Event (source 'bcc')."""
    vals = dict(zip((n for n, _ in FIELDS), STRUCT.unpack_from(buf)))
    name = KINDS.get(vals["kind"], f"kind{vals['kind']}")
    keep = KEEP.get(name, ())
    fields = {k: vals[k] for k in keep}
    if "aux" in fields:
        fields["zero_folio"] = fields.pop("aux")
    if name == "dax_pte_fault_done" and vals["vm_end"]:
        # from the raw tracepoint (bcc counting in the kernel): the VMA bounds
        # the format lacks, so the views key it as the counted faults
        fields["vm_start"], fields["vm_end"] = vals["vm_start"], vals["vm_end"]
    if name in ("devdax_fault_ret", "insert_pmd_ret"):
        fields["result"] = vals["ret"] & 0xFFFFFFFF
    if name == "lost":
        fields = {"count": vals["ret"]}
    return Event(
        name=name,
        fields=fields,
        ts=vals["timestamp"] / 1e9 + boot_offset,
        pid=vals["pid"],
        tid=vals["tid"],
        cpu=vals["cpu"],
        comm=vals["comm"].split(b"\0", 1)[0].decode("utf-8", "replace"),
        source="bcc",
    )


#: kinds :func:`decode_records` leaves to :func:`decode` (the backend pairs
#: device-dax entries with their returns; the rest are rare)
SLOW_KINDS = frozenset(KIND_OF[n] for n in ("devdax_fault", "devdax_fault_ret", "insert_pmd_ret", "lost"))
_INDEX = {n: i for i, (n, _) in enumerate(FIELDS)}


def _record_maker(name):
    """``(values, ts_offset, comm) -> (name, fields, ts, pid, comm, cpu,
    tid, "bcc")`` for one kind, with the same *fields* (keys, order,
    values) :func:`decode` gives: generated once per kind, so a batch
    builds no intermediate dict per record."""
    items = []
    for k in KEEP.get(name, ()):
        key = "zero_folio" if k == "aux" else k  # as decode() renames it
        items.append(f"{key!r}: v[{_INDEX[k]}]")
    extra = ""
    if name == "dax_pte_fault_done":  # the raw tracepoint's VMA bounds (see decode)
        extra = f"    if v[{_INDEX['vm_end']}]:\n        f['vm_start'], f['vm_end'] = v[{_INDEX['vm_start']}], v[{_INDEX['vm_end']}]\n"
    src = (
        "def make(v, off, comm):\n"
        f"    f = {{{', '.join(items)}}}\n"
        f"{extra}"
        f"    return (name, f, v[0] / 1e9 + off, v[{_INDEX['pid']}], comm, v[{_INDEX['cpu']}], v[{_INDEX['tid']}], 'bcc')\n"
    )
    env = {"name": name}
    exec(src, env)  # built above from field positions only
    return env["make"]


_MAKERS = {k: _record_maker(n) for k, n in KINDS.items() if k not in SLOW_KINDS and n in KEEP}


def decode_records(bufs, boot_offset=0.0, slow=None):
    """Many records at once -> a list of ``(name, fields, ts, pid, comm,
    cpu, tid, "bcc")`` tuples (a session ``Record``'s fields), the
    fields as :func:`decode` gives them.  Records of :data:`SLOW_KINDS`
    (and unknown kinds) are passed to *slow* (called with the bytes, in
    order) instead, or decoded by :func:`decode` when *slow* is None."""
    unpack = STRUCT.unpack_from
    makers = _MAKERS
    comms: dict = {}
    out = []
    append = out.append
    for buf in bufs:
        v = unpack(buf)
        make = makers.get(v[1])
        if make is None:
            if slow is not None:
                slow(buf, out)
            else:
                ev = decode(buf, boot_offset)
                append((ev.name, ev.fields, ev.ts, ev.pid, ev.comm, ev.cpu, ev.tid, ev.source))
            continue
        raw = v[5]
        comm = comms.get(raw)
        if comm is None:
            comm = comms[raw] = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        append(make(v, boot_offset, comm))
    return out


#: the device-dax fault's order field: enum page_entry_size (6.1) or order (6.6+)
DEVDAX_ORDER = {0: 0, 1: 9, 2: 18, 9: 9, 18: 18}


class DevdaxPairing:
    """The *slow* of :func:`decode_records` for a stream of records (live
    or recorded): a device-dax fault waits for its return (which gives
    its result, per thread), others go as they are."""

    def __init__(self) -> None:
        self._open: dict = {}

    def __call__(self, data, out) -> None:
        ev = decode(data)
        if ev.name == "devdax_fault":
            ev.fields["order"] = DEVDAX_ORDER.get(ev.fields.get("order", 0), ev.fields.get("order"))
            self._open[ev.tid] = ev
            return
        if ev.name == "devdax_fault_ret":
            entry = self._open.pop(ev.tid, None)
            if entry is None:
                return
            entry.fields["result"] = ev.fields.get("result", 0)
            ev = entry
        out.append((ev.name, ev.fields, ev.ts, ev.pid, ev.comm, ev.cpu, ev.tid, ev.source))


def encode(ev):
    """Inverse of :func:`decode` (tests, synthetic benchmarks)."""
    vals = {n: 0 for n, _ in FIELDS}
    vals.update({k: v for k, v in ev.fields.items() if k in vals})
    if "zero_folio" in ev.fields:
        vals["aux"] = ev.fields["zero_folio"]
    if ev.name == "lost":
        vals["ret"] = ev.fields.get("count", 0)
    vals["kind"] = KIND_OF[ev.name]
    vals["timestamp"] = round((ev.ts or 0) * 1e9)
    vals["pid"], vals["tid"], vals["cpu"] = ev.pid or 0, ev.tid or ev.pid or 0, ev.cpu or 0
    vals["comm"] = (ev.comm or "").encode()[:15]
    return STRUCT.pack(*(vals[n] for n, _ in FIELDS))
