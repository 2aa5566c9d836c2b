"""The case a scenario would record on an ideal device, without running it:
synthetic 2 MiB-aligned addresses and physical extents, every step taking
its first expected outcome.  Used by ``pmemtrace run --dry-run`` and by the
unit tests that check each reason scenario against the model."""

from types import SimpleNamespace

from ..model.build import case_to_json, dev_t, devdax_device, extent, fsdax_device
from .record import PMD, build_case
from .scenario import PAGE
from .target import Target

BASE = 0x7F0000000000
PHYS = 0x200000  # 2 MiB-aligned first block
DATA_START = 0x100000000  # memmap=1G!4G


def dry_device(scen):
    if scen.mode == "fsdax":
        size = max(1 << 30, (scen.file_size + PHYS + PMD - 1) & ~(PMD - 1))
        return fsdax_device(data_start=DATA_START, size=size, map="mem", align=PMD, dev=dev_t(259, 0))
    align = scen.device_align or PMD
    return devdax_device(align, size=max(1 << 30, 2 * align), data_start=DATA_START, dev=dev_t(252, 0))


def dry_extents(scen):
    """One extent, minus the scenario's holes."""
    unwritten = scen.alloc == "fallocate"
    if scen.alloc == "sparse":
        return []
    pieces = [(0, scen.file_size)]
    for off, ln in scen.holes:
        nxt = []
        for a, b in pieces:
            if off + ln <= a or off >= b:
                nxt.append((a, b))
                continue
            if a < off:
                nxt.append((a, off))
            if off + ln < b:
                nxt.append((off + ln, b))
        pieces = nxt
    return [extent(a, PHYS + a, b - a, unwritten) for a, b in pieces]


def dry_case(scen, kernel=None):
    """The case JSON (format v1) of *scen* on an ideal device."""
    target = Target(scen.mode, "<dry-run>", dry_device(scen), fs="xfs")
    placed, slot = {}, BASE
    for m in scen.mappings:
        if m.at is not None:
            placed[m.id] = placed[m.at]
            continue
        a = max(m.align or 0, PMD, scen.device_align or 0)
        slot = (slot + a - 1) & ~(a - 1)
        placed[m.id] = slot + (m.misalign if m.place == "misaligned" else 0)
        slot += m.length + (m.misalign if m.place == "misaligned" else 0) + a
    steps = []
    anon_pages = set()  # pages of anonymous mappings touched so far
    for i, st in enumerate(scen.steps):
        out = st.expect[0]
        rec = {"index": i, "op": st.op, "mapping": st.mapping, "outcome": out}
        m = scen.mapping(st.mapping) if st.mapping else None
        if m is not None and m.anon and st.op in ("read", "write") and out == "ok":
            base = placed[m.id]
            anon_pages.update(range(base + st.offset, base + st.offset + st.length, PAGE))
        if st.op == "mremap" and out == "ok":
            rec["addr"] = dst = placed[st.to]
            # mremap replaces [dst, dst+length) of the landing pad; the pad's
            # other touched pages keep their page table in the block
            # (mm/memory.c __handle_mm_fault(): no huge fault when the pmd is
            # not none), as edge_page_tables() records on a real run
            anon_pages.difference_update(range(dst, dst + st.length, PAGE))
            rec["page_tables"] = sorted(
                {p & ~(PMD - 1) for p in anon_pages} & set(range(dst & ~(PMD - 1), dst + st.length, PMD))
            )
        steps.append(rec)
    st = SimpleNamespace(st_ino=12)
    return case_to_json(
        build_case(scen, target, st, dry_extents(scen), placed, {}, steps, kernel=kernel or "6.12.95+deb12-amd64")
    )
