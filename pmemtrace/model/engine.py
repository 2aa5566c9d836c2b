"""explain(case): run a case through the model, access by access.

Pure: no I/O, no clock, no globals.  The result, a :class:`Prediction`, keeps
compact per-access records; events and JSON are built only when asked for.
"""

import gc
from collections import Counter

from ..events import FAULT_FLAG, Event, decode_vm_fault
from . import devdax, fsdax, gup
from .profiles import select_profile
from .state import PAGE_SHIFT, PAGE_SIZE, AddressSpace, FileState, HugePmd, PteTable, Vma

# x86 user faults: FAULT_FLAG_DEFAULT (ALLOW_RETRY|KILLABLE|INTERRUPTIBLE) | USER
# (arch/x86/mm/fault.c do_user_addr_fault(), v6.1..7.x)
USER_FAULT_FLAGS = (FAULT_FLAG["ALLOW_RETRY"] | FAULT_FLAG["KILLABLE"] | FAULT_FLAG["INTERRUPTIBLE"]
                    | FAULT_FLAG["USER"])
SIGSEGV = 0x40


class AccessResult:
    __slots__ = ("index", "op", "mapping", "address", "outcome", "result", "reason", "faults", "calls",
                 "errno", "pinned", "pinned_fast", "length", "ctx")

    def __init__(self, index, op, mapping, address):
        self.index = index
        self.op = op
        self.mapping = mapping
        self.address = address
        self.outcome = "none"
        self.result = 0
        self.reason = None
        self.faults = []  # [(address, Fault)]
        self.calls = {}
        self.errno = None
        self.pinned = None
        self.pinned_fast = None
        self.length = None
        self.ctx = (0, 0, "zero_folio", 0)  # (dev, ino, zero field, max_pgoff) for rendering events

    def set_error(self, errno, reason):
        self.outcome = "error"
        self.errno = errno
        self.reason = reason

    # -- derived views ------------------------------------------------------
    def all_calls(self):
        c = dict(self.calls)
        for _, f in self.faults:
            for x in f.trace:
                if x.__class__ is str:
                    c[x] = c.get(x, 0) + 1
        return c

    def events(self):
        out = []
        dev, ino, zero_field, max_pgoff = self.ctx
        for _, f in self.faults:
            for t in f.trace:
                if t.__class__ is tuple:
                    name, fields = fsdax.render_event(f, t, max_pgoff, dev, ino, zero_field)
                    out.append(Event(name, fields, source="model", access=self.index))
        return out

    def to_json(self):
        d = {
            "access": self.index,
            "op": self.op,
            "mapping": self.mapping,
            "address": self.address,
            "outcome": self.outcome,
            "result": self.result,
            "result_text": decode_vm_fault(self.result),
            "reason": self.reason,
            "events": [{"name": e.name, "fields": e.fields} for e in self.events()],
            "calls": self.all_calls(),
        }
        if self.errno is not None:
            d["errno"] = self.errno
        if self.op == "gup":
            d["length"] = self.length
            d["pinned"] = self.pinned
            d["pinned_fast"] = self.pinned_fast
            d["faults"] = [
                {"address": a, "outcome": f.outcome, "result": f.result, "reason": f.reason}
                for a, f in self.faults
            ]
        return d


_MAPPED = ("pmd", "pud", "huge-zero", "none")


class _Hit:
    """An access that found its translation already there: nothing new, no
    fault (kept as one shared object per kind to keep explain() small)."""

    __slots__ = ("level",)

    def __init__(self, level):
        self.level = level


HIT_PMD = _Hit("pmd")
HIT_PTE = _Hit("pte")
HIT_PUD = _Hit("pud")


class _Aggregate:
    """Summary counts, built from per-access records as they come."""

    def __init__(self):
        self.outcomes = Counter()
        self.fallbacks = Counter()
        self.events = Counter()
        self.calls = Counter()
        self.faults = Counter()
        self.hits = 0
        self.n = 0

    def add(self, r):
        self.n += 1
        cls = r.__class__
        if cls is _Hit:
            self.hits += 1
            return
        if cls is fsdax.Fault:
            # a plain read/write fault, stored without its AccessResult
            self.outcomes[r.outcome] += 1
            self._fault(r)
            return
        self.outcomes[r.outcome] += 1
        for _, f in r.faults:
            self._fault(f)
        for k, v in r.calls.items():
            self.calls[k] += v

    def _fault(self, f):
        self.faults[f.outcome] += 1
        if f.reason and f.outcome not in _MAPPED:
            self.fallbacks[f.reason] += 1
        ev = self.events
        calls = self.calls
        for x in f.trace:
            if x.__class__ is str:
                calls[x] += 1
            else:
                ev[x[0]] += 1

    def result(self, counters, mapping_errors):
        outcomes = dict(self.outcomes)
        if self.hits:
            outcomes["none"] = outcomes.get("none", 0) + self.hits
        f = self.faults
        return {
            "accesses": self.n,
            "outcomes": outcomes,
            "faults": dict(f),
            "pmd": f.get("pmd", 0),
            "pud": f.get("pud", 0),
            "pte": f.get("pte", 0),
            "huge_zero": f.get("huge-zero", 0),
            "fallbacks": dict(self.fallbacks),
            "events": dict(self.events),
            "calls": dict(self.calls),
            "vmstat": dict(counters),
            "mapping_errors": dict(mapping_errors),
        }


class Prediction:
    def __init__(self, case, profile, records, counters, mapping_errors, ctx, summary=None):
        self._summary = summary
        self.case = case
        self.profile = profile
        self._records = records
        self._results = None
        self.counters = counters
        self.mapping_errors = mapping_errors
        self.ctx = ctx

    @property
    def results(self):
        """One :class:`AccessResult` per access (materialised on first use)."""
        if self._records is None:
            raise ValueError("explain(case, keep_results=False) keeps only the summary")
        if self._results is None:
            out = []
            for i, rec in enumerate(self._records):
                cls = rec.__class__
                if cls is AccessResult:
                    r = rec
                else:
                    a = self.case.accesses[i]
                    m = self.case.mapping(a.mapping)
                    r = AccessResult(i, a.op, a.mapping, (m.start + a.offset) & ~(PAGE_SIZE - 1))
                    if cls is fsdax.Fault:
                        r.faults.append((r.address, rec))
                        r.outcome = rec.outcome
                        r.result = rec.result
                        r.reason = None if rec.outcome in _MAPPED else rec.reason
                r.ctx = self.ctx
                out.append(r)
            self._results = out
        return self._results

    def summary(self):
        if self._summary is not None:
            return self._summary
        agg = _Aggregate()
        for r in self._records:
            agg.add(r)
        return agg.result(self.counters, self.mapping_errors)

    def to_json(self):
        return {
            "profile": self.profile.name,
            "kernel": self.case.kernel,
            "profile_detail": self.profile.to_json(),
            "results": [r.to_json() for r in self.results],
            "summary": self.summary(),
        }

    def events(self):
        for r in self.results:
            yield from r.events()


class Sim:
    """The mutable kernel state for one case."""

    def __init__(self, case, profile):
        self.case = case
        self.profile = profile
        self.device = case.device
        self.file = FileState(case.file) if case.file is not None else None
        self.dev = (case.file.dev if case.file is not None and case.file.dev is not None else case.device.dev)
        self.data_start = case.device.data_start
        # mm/memory.c handle_mm_fault() -> the VMA's fault handlers
        self.fault_handler = devdax.handle_mm_fault if case.device.mode == "devdax" else fsdax.handle_mm_fault
        self.mm = AddressSpace()
        self.max_pgoff = self.file.max_pgoff if self.file is not None else 0
        self.thp_disable = case.thp_disable
        self.counters = Counter(thp_fault_fallback=0, thp_split_pmd=0, thp_zero_page_alloc=0, pgmajfault=0)
        self.flags_seen = set()
        self.mapping_errors = {}
        self.mapped = set()
        # page tables other mappings of the process left in shared 2 MiB
        # blocks: __handle_mm_fault() sees !pmd_none() and goes straight to
        # the PTE path (lab, 6.12: a 3 MiB DAX mapping next to a touched
        # anonymous page takes no dax_pmd_fault at its last 2 MiB)
        self.external_tables = set()
        for addr in case.page_tables:
            self.mm.pmds[addr >> 21] = PteTable()
            self.external_tables.add(addr >> 21)

    def mmap(self, m):
        if any(v.start < m.end and v.end > m.start for v in self.mm.vmas):
            # mmap(MAP_FIXED_NOREPLACE) semantics: the model never replaces
            self.mapping_errors[m.id] = "mapping-overlap"
            return
        if self.device.mode == "devdax":
            err = devdax.check_vma(self.device, m.shared, m.start, m.end)
            if err:
                self.mapping_errors[m.id] = err
                return
        self.mapping_errors.pop(m.id, None)
        self.mm.add(Vma(m.start, m.end, m.offset >> PAGE_SHIFT, m.shared, m.sync, m.writable,
                        m.nohugepage, m.id))
        self.mapped.add(m.id)

    def munmap(self, m):
        mm = self.mm
        mm.remove_mapping(m.id)
        # free_pgtables(): a page table goes when no VMA is left in its 2 MiB
        # (tables other mappings of the process use stay)
        for key in range(m.start >> 21, ((m.end - 1) >> 21) + 1):
            if key in self.external_tables:
                continue
            lo, hi = key << 21, (key + 1) << 21
            if not any(v.start < hi and v.end > lo for v in mm.vmas):
                mm.pmds.pop(key, None)
        self.mapped.discard(m.id)

    def fault(self, vma, addr, write, flags, via_gup=False):
        return self.fault_handler(self, vma, addr, write, flags, via_gup)


def explain(case, keep_results=True):
    """Predict what the case's kernel does for every access.  Returns a
    :class:`Prediction`.  With ``keep_results=False`` only the summary is
    kept (memory then grows with the 2 MiB ranges touched, not with the
    number of accesses)."""
    profile = select_profile(case.kernel)
    sim = Sim(case, profile)
    for m in case.mappings:
        if m.mapped:
            sim.mmap(m)
    # The model allocates many small acyclic objects; the cyclic collector
    # would walk them all again and again (a third of the run time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        agg = None if keep_results else _Aggregate()
        records = _run(case, sim, agg)
    finally:
        if gc_was_enabled:
            gc.enable()
    ctx = (sim.dev, sim.file.ino if sim.file is not None else 0, profile.zero_field, sim.max_pgoff)
    summary = agg.result(sim.counters, sim.mapping_errors) if agg is not None else None
    return Prediction(case, profile, records, sim.counters, sim.mapping_errors, ctx, summary)


def _run(case, sim, agg=None):
    records = []
    # streaming (agg): each record is folded into the summary once complete
    append = records.append if agg is None else agg.add
    mm = sim.mm
    pmds = mm.pmds
    puds = mm.puds
    find = mm.find
    mapped = sim.mapped
    mapping_errors = sim.mapping_errors
    handle_fault = sim.fault_handler
    maps = {m.id: m for m in case.mappings}
    rflags = USER_FAULT_FLAGS
    if not sim.profile.user_fault_interruptible:
        # before FAULT_FLAG_INTERRUPTIBLE (v5.7): ALLOW_RETRY|KILLABLE|USER
        rflags &= ~FAULT_FLAG["INTERRUPTIBLE"]
    wflags = rflags | FAULT_FLAG["WRITE"]
    for i, a in enumerate(case.accesses):
        op = a.op
        if op == "pwrite":
            r = AccessResult(i, op, None, a.offset)
            append(r)
            _pwrite(sim, a, r)
            continue
        m = maps[a.mapping]
        offset = a.offset
        addr = m.start + offset
        if op == "read" or op == "write":
            write = op == "write"
            # fast path: the translation is there with the permission needed
            if m.id in mapped and offset < m.length and (m.writable or not write):
                slot = pmds.get(addr >> 21)
                if slot is not None:
                    if slot.__class__ is HugePmd:
                        if slot.writable or not write:
                            append(HIT_PMD)
                            continue
                    else:
                        bit = 1 << ((addr >> 12) & 511)
                        if slot.present & bit and (not write or slot.writable & bit):
                            append(HIT_PTE)
                            continue
                elif puds and (addr >> 30) in puds:
                    append(HIT_PUD)
                    continue
            vma = find(addr)
            if vma is None or offset >= m.length or m.id in mapping_errors:
                r = AccessResult(i, op, a.mapping, addr)
                if m.id in mapping_errors:
                    code = mapping_errors[m.id]
                    r.set_error(17 if code == "mapping-overlap" else 22, code)
                else:
                    r.set_error(None, "not-mapped")
                    r.result = SIGSEGV
                append(r)
                continue
            if write and not vma.writable:
                r = AccessResult(i, op, a.mapping, addr)
                r.set_error(None, "write-readonly")
                r.result = SIGSEGV
                append(r)
                continue
            append(handle_fault(sim, vma, addr & ~(PAGE_SIZE - 1), write, wflags if write else rflags))
            continue
        r = AccessResult(i, op, a.mapping, addr)
        if op == "mmap":
            sim.mmap(m)
            if m.id in mapping_errors:
                code = mapping_errors[m.id]
                r.set_error(17 if code == "mapping-overlap" else 22, code)
        elif op == "munmap":
            sim.munmap(m)
        elif m.id in mapping_errors:
            r.set_error(22, mapping_errors[m.id])
        elif op == "madvise" and a.offset >= m.length:
            # madvise(2) over no mapped page: -ENOMEM (mm/madvise.c
            # madvise_walk_vmas(), "unmapped_error")
            r.set_error(12, "not-mapped")
        elif op == "madvise":
            _madvise(sim, m, a)
        elif op == "gup":
            r.length = a.length
            gup.gup(sim, mm.find, lambda v, ad, w, fl: sim.fault(v, ad, w, fl, via_gup=True), a, addr, r)
            if r.outcome != "error":
                r.outcome = "populated" if a.populate else ("pinned" if r.pinned else "none")
                if r.faults:
                    r.result = r.faults[-1][1].result
                    r.reason = next((f.reason for _, f in r.faults if f.reason), None)
        append(r)
    if agg is not None:
        return None
    return records


def _pwrite(sim, a, r):
    """write(2) to the DAX file: fs/dax.c dax_iomap_rw() -> dax_iomap_iter()
    (v6.1..7.x).  ->iomap_begin(IOMAP_WRITE) allocates holes and converts
    unwritten blocks in fs-block (4 KiB) units (xfs_direct_write_iomap_begin()
    imap_needs_alloc(): IS_DAX && unwritten; ext4_iomap_alloc()), marking
    the mapping IOMAP_F_NEW; for those ranges dax_iomap_iter() calls
    invalidate_inode_pages2_range() so that "data written by write(2) is
    visible in mmap": clean entries go and unmap_mapping_pages(.., even_cows
    = false) zaps the file's translations there in every mapping -- a huge
    (zero) PMD over the range is zapped whole (zap_pmd_range() ->
    __split_huge_pmd() on a file VMA).  The next access faults again
    (fstests generic/428).  No fs_dax tracepoint fires.  i_size grows to the
    end of the write."""
    fs = sim.file
    r.length = a.length
    r.outcome = "written"
    pos, end = a.offset, a.offset + a.length
    p = pos & ~(PAGE_SIZE - 1)
    blk_end = (end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    new_ranges = []
    while p < blk_end:
        kind, ln, _ = fs.lookup(p, blk_end - p)
        ln = min(ln, blk_end - p)
        if kind != "mapped" and fs.write_range(p, ln):
            new_ranges.append((p, ln))
        p += ln
    if end > fs.size:
        fs.size = end
        sim.max_pgoff = fs.max_pgoff
    for p, ln in new_ranges:
        first, last = p >> PAGE_SHIFT, (p + ln - 1) >> PAGE_SHIFT
        fs.invalidate(first, last)
        for v in list(sim.mm.vmas):
            npages = (v.end - v.start) >> PAGE_SHIFT
            lo, hi = max(first, v.pgoff), min(last + 1, v.pgoff + npages)
            if lo < hi:
                sim.mm.zap(v.start + ((lo - v.pgoff) << PAGE_SHIFT), v.start + ((hi - v.pgoff) << PAGE_SHIFT),
                           even_cows=False)


def _madvise(sim, m, a):
    start = m.start + a.offset
    end = m.end if a.length == 0 else min(m.end, start + a.length)
    mm = sim.mm
    if a.advice == "dontneed":
        mm.zap(start, end)
        return
    # MADV_[NO]HUGEPAGE: split the VMA at the range boundaries (mm/madvise.c
    # madvise_update_vma() -> split_vma()) and set/clear VM_NOHUGEPAGE.
    mm.split_at(start)
    mm.split_at(end)
    for v in mm.vmas:
        if v.mapping == m.id and v.start >= start and v.end <= end:
            v.nohugepage = a.advice == "nohugepage"
            v.update_flags()


__all__ = ["explain", "Prediction", "AccessResult"]
