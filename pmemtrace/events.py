"""The one event type: what the kernel did, whatever the source.

An :class:`Event` is produced by the model (the events the kernel would
emit), by the tracefs and bcc backends, and by the replay parsers.  Views
never need to know which.

``name`` is a fs_dax tracepoint name (``dax_pmd_fault_done``...) or, for probe
hits, the probe point's logical name (``insert_pmd``, ``get_dev_pagemap``,
``gup``, ``devdax_fault``...).  ``fields`` holds the kernel's field names with
integer values, exactly as in ``/sys/kernel/tracing/events/fs_dax/*/format``
(``ino``, ``vm_start``, ``vm_end``, ``vm_flags``, ``address``, ``pgoff``,
``max_pgoff``, ``dev``, ``flags``, ``result``, ``zero_folio``,
``radix_entry``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# --- enum vm_fault_reason (include/linux/mm_types.h; values identical 6.1..7.x,
# VM_FAULT_WRITE 0x8 exists in 6.1 only: removed by Linux kernel commit
# cb8d86331343 ("mm: remove VM_FAULT_WRITE") (in v6.2)).
VM_FAULT = {
    "OOM": 0x1,
    "SIGBUS": 0x2,
    "MAJOR": 0x4,
    "WRITE": 0x8,
    "HWPOISON": 0x10,
    "HWPOISON_LARGE": 0x20,
    "SIGSEGV": 0x40,
    "NOPAGE": 0x100,
    "LOCKED": 0x200,
    "RETRY": 0x400,
    "FALLBACK": 0x800,
    "DONE_COW": 0x1000,
    "NEEDDSYNC": 0x2000,
    "COMPLETED": 0x4000,
}

# --- enum fault_flag (include/linux/mm_types.h).  VMA_LOCK appears in v6.4.
FAULT_FLAG = {
    "WRITE": 0x1,
    "MKWRITE": 0x2,
    "ALLOW_RETRY": 0x4,
    "RETRY_NOWAIT": 0x8,
    "KILLABLE": 0x10,
    "TRIED": 0x20,
    "USER": 0x40,
    "REMOTE": 0x80,
    "INSTRUCTION": 0x100,
    "INTERRUPTIBLE": 0x200,
    "UNSHARE": 0x400,
    "ORIG_PTE_VALID": 0x800,
    "VMA_LOCK": 0x1000,
}

VM_SHARED = 0x8


def decode_flags(value: int, table: Mapping[str, int]) -> str:
    """Decode a bit mask the way the kernel's ``__print_flags`` does.

    >>> decode_flags(0x100, VM_FAULT)
    'NOPAGE'
    >>> decode_flags(0x104, VM_FAULT)
    'MAJOR|NOPAGE'
    >>> decode_flags(0, VM_FAULT)
    ''
    """
    names = []
    rest = value
    for name, bit in sorted(table.items(), key=lambda kv: kv[1]):
        if value & bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return "|".join(names)


def decode_vm_fault(result: int) -> str:
    """``VM_FAULT_*`` bits of a fault result as text (``0`` for none).

    >>> decode_vm_fault(0x800)
    'FALLBACK'
    """
    return decode_flags(result, VM_FAULT) or "0"


def encode_flags(text: str, table: Mapping[str, int]) -> int:
    """Inverse of :func:`decode_flags`; accepts ``0x..`` numbers too.

    >>> hex(encode_flags("WRITE|ALLOW_RETRY|KILLABLE|USER|INTERRUPTIBLE", FAULT_FLAG))
    '0x255'
    """
    value = 0
    for part in text.split("|"):
        part = part.strip()
        if not part or part == "0":
            continue
        if part.lower().startswith("0x"):
            value |= int(part, 16)
        elif part.isdigit():
            value |= int(part)
        else:
            value |= table[part]
    return value


_INT_LIMIT = 1 << 64


def _is_int(v: object, lo: int = -_INT_LIMIT, hi: int = _INT_LIMIT) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v < hi


def record_problem(d: object) -> str | None:
    """What is wrong with one JSON-lines record of a recording (a header,
    a ``lost``/``end`` marker or an :class:`Event` as ``to_json`` writes
    it), or None when its shape is right: replay checks every record
    before using it, so a damaged file gets an error naming the line."""
    if not isinstance(d, dict):
        return f"a {type(d).__name__}, not a JSON object"
    if "pmemtrace_record" in d:
        k = d.get("kernel")
        if k is not None and (not isinstance(k, str) or len(k) > 200):
            return "header: kernel is not a release string"
        return None
    if d.get("type") in ("lost", "end"):
        for key in ("count", "lost"):
            if key in d and not _is_int(d[key], 0, 1 << 63):
                return f"{key} is not a count"
        return None
    if "name" not in d:
        return None  # not an event: skipped
    if not isinstance(d["name"], str):
        return "name is not a string"
    f = d.get("fields", {})
    if not isinstance(f, dict):
        return "fields is not an object"
    for k, v in f.items():
        if not _is_int(v):
            return f"fields.{k} is not a 64-bit integer"
    for key in ("pid", "tid", "cpu", "access"):
        if d.get(key) is not None and not _is_int(d[key], 0, 1 << 32):
            return f"{key} is not a number"
    ts = d.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 <= ts < 1e12):
        return "ts is not a time in seconds"
    for key in ("comm", "source"):
        if d.get(key) is not None and not isinstance(d[key], str):
            return f"{key} is not a string"
    return None


@dataclass
class Event:
    """One kernel event: a tracepoint record or a probe hit."""

    name: str
    fields: dict[str, int] = field(default_factory=dict)
    ts: float | None = None  # seconds (trace clock), when known
    pid: int | None = None
    tid: int | None = None
    comm: str | None = None
    cpu: int | None = None
    source: str = "model"  # model | tracefs | bcc | replay
    access: int | None = None  # index of the access that caused it (model, check)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "fields": dict(self.fields)}
        for k in ("ts", "pid", "tid", "comm", "cpu", "access"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        d["source"] = self.source
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Event:
        return cls(
            name=d["name"],
            fields={k: int(v) for k, v in d.get("fields", {}).items()},
            ts=d.get("ts"),
            pid=d.get("pid"),
            tid=d.get("tid"),
            comm=d.get("comm"),
            cpu=d.get("cpu"),
            source=d.get("source", "replay"),
            access=d.get("access"),
        )

    def format(self) -> str:
        """The event as the kernel's print fmt renders it (fs_dax events)."""
        return format_event(self.name, self.fields)


def _dev(dev: int) -> str:
    return f"{dev >> 20}:{dev & 0xFFFFF}"


def format_event(name: str, f: Mapping[str, int]) -> str:
    """Render fs_dax fields with the print fmt of include/trace/events/fs_dax.h."""
    g = f.get
    share = "shared" if g("vm_flags", 0) & VM_SHARED else "private"
    if name in ("dax_pmd_fault", "dax_pmd_fault_done"):
        return (
            f"dev {_dev(g('dev', 0))} ino {g('ino', 0):#x} {share} "
            f"{decode_flags(g('flags', 0), FAULT_FLAG)} address {g('address', 0):#x} "
            f"vm_start {g('vm_start', 0):#x} vm_end {g('vm_end', 0):#x} pgoff {g('pgoff', 0):#x} "
            f"max_pgoff {g('max_pgoff', 0):#x} {decode_flags(g('result', 0), VM_FAULT)}"
        ).rstrip()
    if name in ("dax_pmd_load_hole", "dax_pmd_load_hole_fallback"):
        zf = g("zero_folio", g("zero_page", 0))
        return (
            f"dev {_dev(g('dev', 0))} ino {g('ino', 0):#x} {share} address {g('address', 0):#x} "
            f"zero_folio {zf:#x} radix_entry {g('radix_entry', 0):#x}"
        )
    if name in (
        "dax_pte_fault",
        "dax_pte_fault_done",
        "dax_load_hole",
        "dax_insert_pfn_mkwrite",
        "dax_insert_pfn_mkwrite_no_entry",
    ):
        return (
            f"dev {_dev(g('dev', 0))} ino {g('ino', 0):#x} {share} "
            f"{decode_flags(g('flags', 0), FAULT_FLAG)} address {g('address', 0):#x} "
            f"pgoff {g('pgoff', 0):#x} {decode_flags(g('result', 0), VM_FAULT)}"
        ).rstrip()
    if name in ("dax_writeback_range", "dax_writeback_range_done"):
        return f"dev {_dev(g('dev', 0))} ino {g('ino', 0):#x} pgoff {g('start_index', 0):#x}-{g('end_index', 0):#x}"
    if name == "dax_writeback_one":
        return f"dev {_dev(g('dev', 0))} ino {g('ino', 0):#x} pgoff {g('pgoff', 0):#x} pglen {g('pglen', 0):#x}"
    return " ".join(f"{k} {v:#x}" for k, v in f.items())
