"""The probe table: logical probe points -> candidates, in preference order.

Matched EXACTLY against the running kernel's symbols (``/proc/kallsyms``,
text symbols only) and tracepoints (``events/fs_dax/*``): never with bcc's
``BPF.get_kprobe_functions``, which takes a regular expression, so on 6.1
``vmf_insert_pfn_pmd`` would "exist" because ``vmf_insert_pfn_pmd_prot``
does, and attaching would fail (lab-recipe.md).  ``pmemtrace watch
--list-probes`` prints the table with the winners.

Candidates are detected, not chosen by kernel version; each alternative
names where it comes from.
"""

import os
from dataclasses import dataclass, field
from typing import Optional

from .tracefs import FS_DAX_TRACEPOINTS

KALLSYMS = "/proc/kallsyms"


@dataclass
class Point:
    name: str  # logical point (Event name / views counter)
    kind: str  # tracepoint | kprobe
    # (target, BPF function) in preference order; for tracepoints target is
    # "fs_dax:<event>" and the BPF function is compiled in by -DPMT_TP_<event>
    candidates: list[tuple[str, str]]
    retprobe: Optional[str] = None  # BPF function for a kretprobe on the winner
    why: str = ""
    module: Optional[str] = None  # kernel module that provides the symbol
    required: bool = False  # watch cannot run without it


PROBES = [
    *(
        Point(
            tp,
            "tracepoint",
            [(f"fs_dax:{tp}", f"tracepoint__fs_dax__{tp}")],
            why="fs/dax.c tracepoint (include/trace/events/fs_dax.h)",
            required=tp in ("dax_pmd_fault_done", "dax_pte_fault_done"),
        )
        for tp in FS_DAX_TRACEPOINTS
    ),
    Point(
        "insert_pmd",
        "kprobe",
        [
            ("vmf_insert_folio_pmd", "kp_insert_folio_pmd"),  # DAX PMD inserts on 7.x (lab-recipe.md)
            ("vmf_insert_pfn_pmd_prot", "kp_insert_pfn_pmd_prot"),  # 6.1: vmf_insert_pfn_pmd is an inline wrapper
            ("vmf_insert_pfn_pmd", "kp_insert_pfn_pmd"),  # 6.12: a real function
        ],
        why="mm/huge_memory.c PMD insert for DAX",
    ),
    Point(
        "insert_pud",
        "kprobe",
        [
            ("vmf_insert_folio_pud", "kp_insert_folio_pud"),
            ("vmf_insert_pfn_pud_prot", "kp_insert_pfn_pud_prot"),
            ("vmf_insert_pfn_pud", "kp_insert_pfn_pud"),
        ],
        why="mm/huge_memory.c PUD insert (device-dax 1 GiB)",
    ),
    Point(
        "get_dev_pagemap",
        "kprobe",
        [("get_dev_pagemap", "kp_get_dev_pagemap")],
        why="mm/memremap.c: DAX-GUP looks up the pgmap (follow_devmap_pmd, gup fast devmap)",
    ),
    Point(
        "gup",
        "kprobe",
        [("__get_user_pages", "kp_gup_slow")],
        why="mm/gup.c slow path of every get/pin_user_pages* variant",
    ),
    Point(
        "gup_fast",
        "kprobe",
        [
            ("gup_fast_fallback", "kp_gup_fast"),  # renamed from internal_get_user_pages_fast in the 6.11 cycle
            ("internal_get_user_pages_fast", "kp_gup_fast"),  # 6.1
        ],
        why="mm/gup.c fast path entry of get/pin_user_pages_fast",
    ),
    Point(
        "devdax_fault",
        "kprobe",
        [("dev_dax_huge_fault", "kp_devdax_fault")],
        retprobe="kr_devdax_fault",
        module="device_dax",
        why="drivers/dax/device.c: device-dax has no tracepoints",
    ),
]


#: kernel functions whose presence says raw tracepoints work (4.17+), as
#: bcc's BPF.support_raw_tracepoint() checks
RAW_TRACEPOINT_SYMBOLS = ("bpf_find_raw_tracepoint", "bpf_get_raw_tracepoint")

#: the kernel function whose presence says BPF trampolines (fentry) work,
#: as bcc's BPF.support_kfunc() checks (x86-64 only)
FENTRY_SYMBOL = "bpf_trampoline_link_prog"

#: functions bpf/pmemtrace.bpf.c has an fentry program for (KFUNC_PROBE,
#: compiled in by -DPMT_FENTRY_<function>); the module's dev_dax_huge_fault
#: (it has a return probe) stays a kprobe.  Those taking a struct by value
#: (pfn_t, pgprot_t: 6.1's and 6.12's PMD inserts) only where the
#: trampolines take struct arguments (live/btf.py trampoline_struct_args)
FENTRY_FUNCTIONS = (
    "vmf_insert_pfn_pmd",
    "vmf_insert_pfn_pmd_prot",
    "vmf_insert_folio_pmd",
    "vmf_insert_pfn_pud",
    "vmf_insert_pfn_pud_prot",
    "vmf_insert_folio_pud",
    "get_dev_pagemap",
    "__get_user_pages",
    "gup_fast_fallback",
    "internal_get_user_pages_fast",
)


def wanted_functions(table=None):
    """The kernel functions pmemtrace asks kallsyms about."""
    table = PROBES if table is None else table
    return set(probe_functions(table)) | set(RAW_TRACEPOINT_SYMBOLS) | {FENTRY_SYMBOL}


def fentry_candidates(functions) -> set:
    """The probe functions that may take an fentry program here (trampolines
    exist: x86-64 and :data:`FENTRY_SYMBOL`); :func:`resolve` also wants
    them in BTF (live/btf.py fentry_functions)."""
    import platform

    if not functions or FENTRY_SYMBOL not in functions or platform.machine() != "x86_64":
        return set()
    return {f for f in FENTRY_FUNCTIONS if f in functions and functions[f] is None}


def kernel_functions(path=KALLSYMS, names=None):
    """{name: module or None} of text symbols (types t/T) among *names*
    (default: :func:`wanted_functions`), matched exactly: ``foo.isra.0``
    or ``foo_prot`` is not ``foo``.  One regular-expression scan of the
    file's bytes instead of a Python loop over its ~150,000 lines (1.7 s of
    the start in the lab)."""
    import re

    names = wanted_functions() if names is None else set(names)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    syms = {}
    if not names:
        return syms
    alt = b"|".join(re.escape(n.encode()) for n in sorted(names))
    pat = re.compile(rb"^[0-9a-fA-F]+ [tT] (" + alt + rb")(?:\t\[([^\]\n]+)\])?$", re.M)
    for m in pat.finditer(data):
        syms.setdefault(m.group(1).decode(), m.group(2).decode() if m.group(2) else None)
    return syms


def hole_field(root):
    """The load-hole pointer's field name: zero_page (6.1) or zero_folio (6.12+)."""
    try:
        with open(os.path.join(root, "events", "fs_dax", "dax_pmd_load_hole", "format")) as f:
            text = f.read()
    except (OSError, TypeError):
        return None
    for name in ("zero_folio", "zero_page"):
        if f" {name};" in text:
            return name
    return None


@dataclass
class Resolved:
    point: Point
    winner: Optional[str] = None  # target name
    function: Optional[str] = None  # BPF function
    missing: list[str] = field(default_factory=list)
    note: str = ""

    #: how it is attached: tracepoint, raw_tracepoint, tp_btf, fentry or kprobe;
    #: counted: not attached, its done event's program counts it
    mechanism: str = ""

    def to_json(self):
        return {
            "point": self.point.name,
            "kind": self.point.kind,
            "mechanism": self.mechanism if self.winner else None,
            "winner": self.winner,
            "bpf_function": self.function,
            "candidates": [c for c, _ in self.point.candidates],
            "note": self.note,
        }


def probe_functions(table=PROBES):
    """Every kernel function the table may probe (what a dead pmemtrace's
    bcc kprobe events can name)."""
    return sorted({target for p in table if p.kind == "kprobe" for target, _ in p.candidates})


#: tracepoints attached as raw tracepoints when the session aggregates in the
#: kernel and raw tracepoints work: the program gets the tracepoint's
#: arguments (inode, vm_fault, ...) and reads what it needs through the BTF
#: offsets, where a (perf) tracepoint program runs after the kernel has
#: built the whole formatted record for it; dax_pte_fault_done's vm_fault
#: also gives the VMA bounds its format lacks.  The others (the PTE-class
#: events the counting session only counts by name, and the rare
#: dax_pmd_load_hole_fallback) stay tracepoints.
RAW_TRACEPOINTS = ("dax_pmd_fault_done", "dax_pmd_load_hole", "dax_pte_fault_done")

#: start events the counting session does not attach where it has raw
#: tracepoints: each is counted by its done event's program (fs/dax.c
#: dax_iomap_pmd_fault() traces dax_pmd_fault_done on every path out), and
#: the insert inside the fault keys itself from its vm_fault, so nothing
#: pairs the two: one program run and a hash update and delete less per
#: PMD fault (bpf/pmemtrace.bpf.c PMT_FAULT_KEY)
COUNTED_BY_DONE = {"dax_pmd_fault": "dax_pmd_fault_done"}


def resolve(functions, tracepoints, table=PROBES, raw_tracepoints=False, fentry=(), btf_tracepoints=()):
    """Pick, per point, the first candidate present in this kernel (exact
    names), and how to attach it: an event in *btf_tracepoints* as tp_btf
    (its arguments typed by BTF: no formatted record, plain loads), else
    (with *raw_tracepoints*, for :data:`RAW_TRACEPOINTS`) raw_tracepoint,
    else tracepoint; a function: fentry when the winner is in *fentry*
    (the functions an fentry program can attach to here), else kprobe."""
    out = []
    for p in table:
        r = Resolved(p)
        r.mechanism = p.kind
        if p.kind == "tracepoint" and raw_tracepoints and p.name in COUNTED_BY_DONE:
            r.mechanism = "counted"  # not attached
        elif p.kind == "tracepoint" and p.name in btf_tracepoints:
            r.mechanism = "tp_btf"
        elif p.kind == "tracepoint" and raw_tracepoints and p.name in RAW_TRACEPOINTS:
            r.mechanism = "raw_tracepoint"
        for target, fn in p.candidates:
            if p.kind == "tracepoint":
                ok = target.split(":", 1)[1] in tracepoints
            else:
                ok = functions is not None and target in functions
            if ok:
                r.winner, r.function = target, fn
                if p.kind == "kprobe" and functions.get(target):
                    r.note = f"in module {functions[target]}"
                if p.kind == "kprobe" and target in fentry and not p.retprobe:
                    r.mechanism = "fentry"
                if r.mechanism == "counted":
                    r.note = f"not attached: counted by {COUNTED_BY_DONE[p.name]}"
                break
            r.missing.append(target)
        if r.winner is None:
            if p.kind == "kprobe" and functions is None:
                r.note = "cannot read /proc/kallsyms"
            elif p.module and functions is not None:
                r.note = f"not in this kernel, or module {p.module} not loaded"
            else:
                r.note = "not in this kernel"
        out.append(r)
    return out


def render(resolved):
    lines = [f"{'POINT':<31} {'ATTACH':<14} {'WINNER':<34} NOTE"]
    for r in resolved:
        w = r.winner or "-"
        if r.point.kind == "tracepoint" and w.startswith("fs_dax:"):
            w = w[len("fs_dax:") :]
        how = r.mechanism if r.winner else "-"
        lines.append(f"{r.point.name:<31} {how:<14} {w:<34} {r.note}".rstrip())
    return "\n".join(lines)
