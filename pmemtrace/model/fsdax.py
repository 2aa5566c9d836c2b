"""fsdax faults: mm/memory.c's fault entry and fs/dax.c's PMD and PTE paths.

Each function mirrors one kernel function; the checks run in kernel order and
every fallback carries its reason code (pmemtrace/model/reasons.py).
kernel-dax-behavior.md sections 3, 4, 6 and 7 are the source; where the lab
found otherwise, docs/lab-findings.md says so and the code follows the lab.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from ..events import FAULT_FLAG, VM_FAULT
from .fork import file_mms
from .state import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PG_PMD_COLOUR,
    PMD_ENTRY_DATA,
    PMD_ENTRY_EMPTY,
    PMD_ENTRY_ZERO,
    PMD_SHIFT,
    PMD_SIZE,
    AddressSpace,
    FileState,
    HugePmd,
    PmdEntry,
    PteEntries,
    PteTable,
    huge_pmd,
)

if TYPE_CHECKING:  # for annotations only: engine imports this module
    from .engine import Sim
    from .state import Vma

NOPAGE = VM_FAULT["NOPAGE"]
FALLBACK = VM_FAULT["FALLBACK"]
SIGBUS = VM_FAULT["SIGBUS"]
MAJOR = VM_FAULT["MAJOR"]
DONE_COW = VM_FAULT["DONE_COW"]
NEEDDSYNC = VM_FAULT["NEEDDSYNC"]
RETRY = VM_FAULT["RETRY"]
FF_WRITE = FAULT_FLAG["WRITE"]
FF_MKWRITE = FAULT_FLAG["MKWRITE"]
FF_VMA_LOCK = FAULT_FLAG["VMA_LOCK"]
FF_ORIG_PTE_VALID = FAULT_FLAG["ORIG_PTE_VALID"]


class Fault:
    """What one fault did (one trip through handle_mm_fault and below).

    ``trace`` is what the fault did, in order: each kernel function it called
    (a probe point, as a str) and each fs_dax event it emitted, as a compact
    ``(name, flags, result)`` tuple.  What all events of one fault share --
    the VMA (``vma``: :attr:`Vma.trace_fields`, a snapshot) and the address --
    is kept once, and :func:`render_event` builds an event's fields only when
    asked for: explain() must stay fast and small."""

    __slots__ = ("outcome", "result", "reason", "level", "trace", "vma", "addr", "again")

    def __init__(self, vma: tuple[int, int, int, int] | None = None, addr: int = 0) -> None:
        self.outcome: str = "none"
        self.result: int = 0
        self.reason: str | None = None
        self.level: str | None = None
        self.trace: list[str | tuple[str, int | None, int | None]] = []
        self.vma = vma
        self.addr = addr
        self.again = False  # nothing was mapped: the access faults again

    def call(self, fn: str) -> None:
        self.trace.append(fn)

    @property
    def calls(self) -> dict[str, int]:
        """{function: hits}, in the order first called."""
        c: dict[str, int] = {}
        for x in self.trace:
            if x.__class__ is str:
                c[x] = c.get(x, 0) + 1
        return c

    @property
    def events(self) -> list[tuple[str, int | None, int | None]]:
        """The compact event tuples, in order."""
        return [x for x in self.trace if isinstance(x, tuple)]


# --------------------------------------------------------------------------
# events: fields exactly as include/trace/events/fs_dax.h assigns them

_PMD_CLASS = ("dax_pmd_fault", "dax_pmd_fault_done")
_HOLE_CLASS = ("dax_pmd_load_hole", "dax_pmd_load_hole_fallback")
_WB_RANGE = ("dax_writeback_range", "dax_writeback_range_done")


def render_event(
    f: Fault, t: tuple[str, int | None, int | None], max_pgoff: int, dev: int, ino: int, zero_field: str
) -> tuple[str, dict[str, int | None]]:
    """Fields of the compact event *t* of fault *f*, exactly as
    include/trace/events/fs_dax.h assigns them (TP_fast_assign)."""
    name, flags, result = t
    assert f.vma is not None, "fs_dax events come from faults with a VMA"
    if name in _WB_RANGE:
        # (name, first index, last index); dax_writeback_range_done's
        # start_index is where the walk stopped, not modelled
        return name, {"dev": dev, "ino": ino, "start_index": flags, "end_index": result}
    if name == "dax_writeback_one":
        return name, {"dev": dev, "ino": ino, "pgoff": flags, "pglen": result}
    vm_start, vm_end, vm_flags, vm_pgoff = f.vma
    addr = f.addr
    pgoff = vm_pgoff + ((addr - vm_start) >> PAGE_SHIFT)
    if name in _PMD_CLASS:
        return name, {
            "dev": dev,
            "ino": ino,
            "vm_start": vm_start,
            "vm_end": vm_end,
            "vm_flags": vm_flags,
            "address": addr,
            "pgoff": pgoff,
            "max_pgoff": max_pgoff,
            "flags": flags,
            "result": result,
        }
    if name in _HOLE_CLASS:
        return name, {
            "dev": dev,
            "ino": ino,
            "vm_flags": vm_flags,
            "address": addr,
            zero_field: ZERO_FOLIO_PLACEHOLDER,
            "radix_entry": ZERO_PMD_ENTRY,
        }
    return name, {
        "dev": dev,
        "ino": ino,
        "vm_flags": vm_flags,
        "address": addr,
        "pgoff": pgoff,
        "flags": flags,
        "result": result,
    }


# The zero folio's address is a kernel pointer the model cannot know; a stable
# placeholder, so that traces compare structurally.
ZERO_FOLIO_PLACEHOLDER = 0xFFFFEA0000000000
# dax_pmd_load_hole's radix_entry: dax_make_entry(zero folio pfn, DAX_PMD |
# DAX_ZERO_PAGE) as xa_mk_value() encodes it
ZERO_PMD_ENTRY = (((ZERO_FOLIO_PLACEHOLDER >> PAGE_SHIFT) << 4 | 0x2 | 0x4) << 1) | 1


# --------------------------------------------------------------------------
# xarray: grab_mapping_entry() (fs/dax.c, v6.1..7.x)


def _unmap_zero(sim: Sim, block: int, index: int | None = None) -> None:
    """unmap_mapping_pages() of a zero-page mapping of the file: 512 pages of
    *block* (PMD zero entry) or the one page *index* (PTE zero entry), in every
    VMA that maps it -- a forked child's too (fork.file_mms())."""
    for mm in file_mms(sim):
        _unmap_zero_in(mm, block, index)


def _unmap_zero_in(mm: AddressSpace, block: int, index: int | None) -> None:
    for vma in mm.vmas:
        first = block << 9 if index is None else index
        n = 512 if index is None else 1
        lo = max(first, vma.pgoff)
        hi = min(first + n, vma.pgoff + ((vma.end - vma.start) >> PAGE_SHIFT))
        if lo >= hi:
            continue
        a0 = vma.start + ((lo - vma.pgoff) << PAGE_SHIFT)
        a1 = vma.start + ((hi - vma.pgoff) << PAGE_SHIFT)
        for key in range(a0 >> PMD_SHIFT, ((a1 - 1) >> PMD_SHIFT) + 1):
            slot = mm.pmds.get(key)
            if isinstance(slot, HugePmd):
                if slot.zero:
                    del mm.pmds[key]
            elif slot is not None and slot.zero:
                lo_a = max(a0, key << PMD_SHIFT)
                hi_a = min(a1, (key + 1) << PMD_SHIFT)
                for p in range((lo_a >> PAGE_SHIFT) & PG_PMD_COLOUR, (((hi_a - 1) >> PAGE_SHIFT) & PG_PMD_COLOUR) + 1):
                    bit = 1 << p
                    if slot.zero & bit:
                        slot.zero &= ~bit
                        slot.present &= ~bit
                        slot.writable &= ~bit


def grab_pmd_entry(sim: Sim, block: int) -> PmdEntry | None:
    """grab_mapping_entry(order=PMD_ORDER): returns the PmdEntry (a new one is
    empty), or None when a PTE-order entry anywhere in the 512 indices
    conflicts (FALLBACK)."""
    fs = sim.file
    assert fs is not None  # fsdax faults run only on a case with a file
    ent = fs.entries.setdefault(block, PMD_ENTRY_EMPTY)
    if ent.__class__ is PteEntries:
        return None
    return cast(PmdEntry, ent)


def grab_pte_entry(sim: Sim, index: int) -> PmdEntry | PteEntries:
    """grab_mapping_entry(order=0): a PMD zero/empty entry is downgraded (a zero
    one unmapped first); a PMD data entry is kept and returned as is."""
    block = index >> 9
    fs = sim.file
    assert fs is not None  # fsdax faults run only on a case with a file
    entries = fs.entries
    ent = entries.get(block)
    if ent.__class__ is PmdEntry:
        if ent is PMD_ENTRY_DATA:
            return ent
        if ent is PMD_ENTRY_ZERO:
            _unmap_zero(sim, block)
        # the PMD entry is deleted (xas_store(NULL)): its marks go with it
        fs.dirty_pmds.discard(block)
        ent = None
    if ent is None:
        ent = PteEntries()
        entries[block] = ent
    pte = cast(PteEntries, ent)  # the PmdEntry cases returned or were replaced above
    pte.present |= 1 << (index & PG_PMD_COLOUR)
    return pte


# --------------------------------------------------------------------------
# fs/dax.c dax_iomap_pmd_fault()


def _pmd_done(sim: Sim, f: Fault, addr: int, flags: int, ret: int, reason: str | None = None) -> int:
    """The tail of dax_iomap_pmd_fault(): fallback accounting
    (split_huge_pmd(), THP_FAULT_FALLBACK) and trace_dax_pmd_fault_done()."""
    if ret == FALLBACK:
        if not f.reason:
            f.reason = reason
        counters = sim.counters
        counters["thp_fault_fallback"] += 1
        # split_huge_pmd(): a huge PMD being write-upgraded is zapped
        key = addr >> PMD_SHIFT
        pmds = sim.mm.pmds
        if pmds.get(key).__class__ is HugePmd:
            del pmds[key]
            counters["thp_split_pmd"] += 1
    elif reason:
        f.reason = reason
    f.trace.append(("dax_pmd_fault_done", flags, ret))
    return ret


def dax_iomap_pmd_fault(sim: Sim, f: Fault, vma: Vma, addr: int, flags: int) -> int:
    """Returns the VM_FAULT_* result; fills f (trace, reason)."""
    write = flags & FF_WRITE
    vm_start = vma.start
    pgoff = vma.pgoff + ((addr - vm_start) >> PAGE_SHIFT)
    block = pgoff >> 9
    index = block << 9
    max_pgoff = sim.max_pgoff
    trace = f.trace
    trace.append("dax_iomap_pmd_fault")
    trace.append(("dax_pmd_fault", flags, 0))
    # P0: the PMD-aligned index at or after EOF (<= 5.14: after C1-C4)
    sigbus_late = sim.profile.pmd_sigbus_after_vma_checks
    if index >= max_pgoff and not sigbus_late:
        return _pmd_done(sim, f, addr, flags, SIGBUS, "sigbus-eof")
    # P1: dax_fault_check_fallback(), in order
    pmd_addr = addr & ~(PMD_SIZE - 1)
    if (pgoff & PG_PMD_COLOUR) != ((addr >> PAGE_SHIFT) & PG_PMD_COLOUR):
        return _pmd_done(sim, f, addr, flags, FALLBACK, "pmd-colour-mismatch")
    if write and not vma.shared:
        return _pmd_done(sim, f, addr, flags, FALLBACK, "private-write")
    if pmd_addr < vm_start:
        return _pmd_done(sim, f, addr, flags, FALLBACK, "vma-start")
    if pmd_addr + PMD_SIZE > vma.end:
        return _pmd_done(sim, f, addr, flags, FALLBACK, "vma-end")
    if index >= max_pgoff:
        return _pmd_done(sim, f, addr, flags, SIGBUS, "sigbus-eof")
    if (index | PG_PMD_COLOUR) >= max_pgoff:
        return _pmd_done(sim, f, addr, flags, FALLBACK, "beyond-eof")
    # P2: grab_mapping_entry(order 9)
    ent = grab_pmd_entry(sim, block)
    if ent is None:
        return _pmd_done(sim, f, addr, flags, FALLBACK, "pte-entry-present")
    # P4/P5: ->iomap_begin() over [index, +2 MiB)
    fs = sim.file
    assert fs is not None  # fsdax faults run only on a case with a file
    pos = index << PAGE_SHIFT
    kind, length, ext = fs.lookup(pos)
    if write and kind != "mapped":
        # IOMAP_WRITE: ext4/xfs ->iomap_begin() allocate (or convert) up to
        # the requested 2 MiB, bounded by the hole/unwritten extent, before
        # returning the mapping whose length is then checked.
        # ext4 converts an unwritten extent the same way: ext4_map_blocks()
        # returns the converted part only, even where the extent tree then
        # merges it with a following written extent (lab, 5.10 ext4: a PMD
        # write into the unwritten first half of a 2 MiB block whose second
        # half write(2) had converted falls back); xfs returns the merged
        # mapping for a conversion (xfs_bmapi_write() redoes the lookup
        # after the merge), so there only holes are capped
        capped = kind == "hole" or (kind == "unwritten" and fs.fs == "ext4")
        hole = length if capped else None
        fs.write_range(pos, min(length, PMD_SIZE))
        kind, length, ext = fs.lookup(pos)
        if hole is not None:
            # the mapping returned for a hole is what was allocated, not
            # merged with a following extent that happens to be physically
            # contiguous: fs/xfs/xfs_iomap.c xfs_direct_write_iomap_begin()
            # clips the allocation to the hole ("end_fsb = min(end_fsb,
            # imap.br_startoff + imap.br_blockcount)") and returns the imap
            # xfs_iomap_write_direct() allocated; ext4_iomap_alloc() the map
            # ext4_map_blocks() allocated (v5.10..7.x; lab, 6.12 xfs: a hole
            # of 1 MiB before a written extent falls back)
            length = min(length, hole)
    if length < PMD_SIZE:
        return _pmd_done(sim, f, addr, flags, FALLBACK, "extent-too-short")
    # I1: read of a hole or unwritten extent -> huge zero page
    if not write and kind != "mapped":
        return dax_pmd_load_hole(sim, f, addr, flags, block)
    # I3: dax_iomap_direct_access()
    assert ext is not None  # mapped (or just written): lookup() returns its extent
    phys = sim.data_start + ext.physical + (pos - ext.logical)
    if (phys >> PAGE_SHIFT) & PG_PMD_COLOUR:
        return _pmd_done(sim, f, addr, flags, FALLBACK, "pfn-unaligned")
    prof = sim.profile
    if prof.pmd_needs_devmap and not sim.device.struct_pages:
        return _pmd_done(sim, f, addr, flags, FALLBACK, "pfn-no-devmap")
    # I4: dax_insert_entry(DAX_PMD)
    if ent is PMD_ENTRY_ZERO:
        _unmap_zero(sim, block)
    fs.entries[block] = PMD_ENTRY_DATA
    # I6: MAP_SYNC write while the inode's metadata is not yet durable
    # (IOMAP_F_DIRTY: any allocation, conversion or size change since the
    # last fsync, this fault's or an earlier one's; FileState.datasync_dirty)
    sync = write and vma.sync and _iomap_dirty(fs, pos, PMD_SIZE)
    if (write or sim.profile.read_faults_dirty_entries) and not sync:
        # dax_insert_entry(): "dirty = write && !dax_fault_is_synchronous()"
        # (5.19..6.1: any fault that is not synchronous)
        fs.dirty_pmds.add(block)
    if sync:
        _pmd_done(sim, f, addr, flags, NEEDDSYNC)
        return dax_finish_sync_fault(sim, f, vma, addr, flags, pmd=True)
    # I7: insert the PMD
    trace.append(prof.pmd_insert_function)
    _install_pmd(sim, addr, write)
    f.outcome = f.level = "pmd"
    return _pmd_done(sim, f, addr, flags, NOPAGE)


def _install_pmd(sim: Sim, addr: int, writable: int, zero: bool = False) -> None:
    key = addr >> PMD_SHIFT
    pmds = sim.mm.pmds
    slot = pmds.get(key)
    if slot.__class__ is HugePmd:
        # insert_pfn_pmd()/insert_pmd() on a present PMD: a write upgrades it
        if writable:
            pmds[key] = huge_pmd(True, slot.zero, slot.level)
        return
    pmds[key] = huge_pmd(writable, zero)


_EV_LOAD_HOLE = ("dax_pmd_load_hole", None, None)
_EV_LOAD_HOLE_FALLBACK = ("dax_pmd_load_hole_fallback", None, None)


def dax_pmd_load_hole(sim: Sim, f: Fault, addr: int, flags: int, block: int) -> int:
    """fs/dax.c dax_pmd_load_hole(): map the huge zero page read-only."""
    prof = sim.profile
    fs = sim.file
    assert fs is not None  # fsdax faults run only on a case with a file
    fs.entries[block] = PMD_ENTRY_ZERO
    if prof.read_faults_dirty_entries:
        fs.dirty_pmds.add(block)  # dax_insert_entry(), 5.19..6.1
    if prof.zero_pmd_via_insert:
        # v6.18: vmf_insert_folio_pmd(vmf, zero_folio, false)
        f.trace.append(prof.pmd_insert_function)
    slot = sim.mm.pmds.get(addr >> PMD_SHIFT)
    if slot is not None and prof.load_hole_fallback_if_pmd_present:
        f.trace.append(_EV_LOAD_HOLE_FALLBACK)
        return _pmd_done(sim, f, addr, flags, FALLBACK, "pte-table-present")
    _install_pmd(sim, addr, writable=False, zero=True)
    if "thp_zero_page_alloc" not in sim.flags_seen:
        sim.flags_seen.add("thp_zero_page_alloc")
        sim.counters["thp_zero_page_alloc"] += 1
    f.trace.append(_EV_LOAD_HOLE)
    f.outcome, f.level = "huge-zero", "pmd"
    return _pmd_done(sim, f, addr, flags, NOPAGE)


def _iomap_dirty(fs: FileState, pos: int, length: int) -> bool:
    """IOMAP_F_DIRTY on the mapping ->iomap_begin() returns for a write of
    [pos, pos+length): the inode's metadata is not yet durable, or (ext4)
    the write spans EOF -- fs/ext4/inode.c ext4_set_iomap(): "if
    (ext4_inode_datasync_dirty(inode) || offset + length >
    i_size_read(inode)) iomap->flags |= IOMAP_F_DIRTY" (v6.1..7.x)."""
    return bool(fs.datasync_dirty or (fs.fs == "ext4" and pos + length > fs.size))


def dax_finish_sync_fault(sim: Sim, f: Fault, vma: Vma, addr: int, flags: int, pmd: bool) -> int:
    """fs/dax.c dax_finish_sync_fault(): vfs_fsync_range() over the fault's
    range -- vmf->pgoff (the faulting page, not the block's first one) for
    PAGE_SIZE << order bytes -- writes back the dirty entries there
    (:func:`_writeback_range`), then dax_insert_pfn_mkwrite() marks the
    fault's entry dirty and inserts the pfn writable (NOPAGE).  For a PTE
    fault on a PMD data entry it finds no PTE entry ("order == 0 &&
    !dax_is_pte_entry(entry)"): dax_insert_pfn_mkwrite_no_entry, nothing
    is mapped, and the access faults again (``f.again``)."""
    prof = sim.profile
    trace = f.trace
    fs = sim.file
    assert fs is not None  # MAP_SYNC faults are fsdax faults
    pgoff = vma.pgoff + ((addr - vma.start) >> PAGE_SHIFT)
    _writeback_range(sim, f, pgoff, pgoff + (PMD_SIZE >> PAGE_SHIFT if pmd else 1) - 1)
    # vfs_fsync_range(): the metadata is durable, the inode clean again
    fs.datasync_dirty = False
    f.result = NEEDDSYNC
    if not pmd and fs.entries.get(pgoff >> 9) is PMD_ENTRY_DATA:
        trace.append("dax_finish_sync_fault")
        trace.append(("dax_insert_pfn_mkwrite_no_entry", flags, NOPAGE))
        f.again = True
        return NEEDDSYNC
    fs.mark_dirty(pgoff)
    if pmd:
        trace.append(prof.pmd_insert_function)
        _install_pmd(sim, addr, writable=True)
        f.outcome, f.level = "pmd", "pmd"
    else:
        trace.append(prof.pte_insert_function[1])
        _set_pte(sim, addr, writable=True)
        f.outcome, f.level = "pte", "pte"
    trace.append("dax_finish_sync_fault")
    trace.append(("dax_insert_pfn_mkwrite", flags, NOPAGE))
    return NEEDDSYNC


def _writeback_range(sim: Sim, f: Fault, first: int, last: int) -> None:
    """The writeback of fsync over page indices first..last:
    mm/filemap.c filemap_fdatawrite_wbc() does nothing unless some entry of
    the file is tagged dirty; else xfs/ext4 ->writepages ->
    fs/dax.c dax_writeback_mapping_range(): dax_writeback_range, one
    dax_writeback_one per dirty entry overlapping the range (a PMD entry is
    found from any index inside it), dax_writeback_range_done.  Each entry
    written back is cleaned and every shared mapping of it write-protected,
    so the next write through any of them faults again: from v5.18 all of
    the entry's pages (pfn_mkclean_range(): Linux kernel commit 06083a0921fd
    ("dax: fix missing writeprotect the pte entry") (in v5.18)); before,
    dax_entry_mkclean() protected only the translation of the entry's first
    page (Profile.mkclean_whole_entry)."""
    fs = sim.file
    assert fs is not None  # fsync of an fsdax file
    if not fs.has_dirty():
        return
    trace = f.trace
    trace.append(("dax_writeback_range", first, last))
    whole = sim.profile.mkclean_whole_entry
    for index, count in fs.take_dirty(first, last):
        _mkclean(sim, index, count if whole else 1)
        trace.append(("dax_writeback_one", index, count))
    trace.append(("dax_writeback_range_done", first, last))


def _mkclean(sim: Sim, index: int, count: int) -> None:
    """Write-protect file pages [index, index+count) in every shared VMA
    (mm/rmap.c invalid_mkclean_vma(): private VMAs are skipped)."""
    for mm in file_mms(sim):  # a forked child's VMAs too
        for vma in mm.vmas:
            if not vma.shared:
                continue
            lo = max(index, vma.pgoff)
            hi = min(index + count, vma.pgoff + ((vma.end - vma.start) >> PAGE_SHIFT))
            if lo < hi:
                mm.wrprotect(vma.start + ((lo - vma.pgoff) << PAGE_SHIFT), vma.start + ((hi - vma.pgoff) << PAGE_SHIFT))


def _set_pte(sim: Sim, addr: int, writable: bool, zero: bool = False, anon: bool = False) -> None:
    # the page table under the PMD slot (a new one replaces pmd_none)
    key = addr >> PMD_SHIFT
    pmds = sim.mm.pmds
    t = pmds.get(key)
    if t.__class__ is not PteTable:
        t = pmds[key] = PteTable()
    bit = 1 << ((addr >> PAGE_SHIFT) & PG_PMD_COLOUR)
    t.present |= bit
    if writable:
        t.writable |= bit
    else:
        t.writable &= ~bit
    if zero:
        t.zero |= bit
    else:
        t.zero &= ~bit
    if anon:
        t.anon |= bit


# --------------------------------------------------------------------------
# fs/dax.c dax_iomap_pte_fault()


def _pte_done(f: Fault, flags: int, ret: int, reason: str | None = None, traced: int | None = None) -> int:
    """The tail of dax_iomap_pte_fault(): trace_dax_pte_fault_done() (with
    *traced* as the event's result when it differs from the return value)."""
    if reason and not f.reason:
        f.reason = reason
    f.trace.append(("dax_pte_fault_done", flags, ret if traced is None else traced))
    return ret


def dax_iomap_pte_fault(sim: Sim, f: Fault, vma: Vma, addr: int, flags: int, cow: bool) -> int:
    prof = sim.profile
    fs = sim.file
    assert fs is not None  # fsdax faults run only on a case with a file
    write = bool(flags & FF_WRITE)
    pgoff = vma.pgoff + ((addr - vma.start) >> PAGE_SHIFT)
    trace = f.trace
    trace.append("dax_iomap_pte_fault")
    trace.append(("dax_pte_fault", flags, 0))
    pos = pgoff << PAGE_SHIFT
    # T1
    if pos >= fs.size:
        f.outcome = "sigbus"
        f.reason = "sigbus-eof"
        return _pte_done(f, flags, SIGBUS, "sigbus-eof")
    # T2
    ent = grab_pte_entry(sim, pgoff)
    # T3: a huge PMD appeared meanwhile (only a race in the kernel)
    if sim.mm.pmds.get(addr >> PMD_SHIFT).__class__ is HugePmd:
        return _pte_done(f, flags, NOPAGE)
    # only the kind of the 4 KiB block is used: lookup() need not walk on
    # to merge the following extents, as it does for a 2 MiB request
    kind, _length, _ext = fs.lookup(pos, PAGE_SIZE)
    if cow:
        # dax_fault_cow_page(): copy (or clear) into the private page, no
        # IOMAP_WRITE, so nothing is allocated; finish_fault() maps it.
        _set_pte(sim, addr, writable=True, anon=True)
        f.outcome, f.level = "cow", "pte"
        return _pte_done(f, flags, DONE_COW)
    if not write and kind in ("hole", "unwritten"):
        # dax_load_hole(): the 4 KiB zero page, a zero PTE entry
        if ent.__class__ is PteEntries:
            ent.zero |= 1 << (pgoff & PG_PMD_COLOUR)
        if prof.read_faults_dirty_entries:
            fs.mark_dirty(pgoff)  # dax_insert_entry(), 5.19..6.1
        trace.append(prof.pte_insert_function[0])
        _set_pte(sim, addr, writable=False, zero=True)
        trace.append(("dax_load_hole", flags, NOPAGE))
        f.outcome, f.level = "zero-pte", "pte"
        return _pte_done(f, flags, NOPAGE)
    new = False
    if write and kind in ("hole", "unwritten"):
        new = fs.write_range(pos & ~(PAGE_SIZE - 1), PAGE_SIZE)
    if ent.__class__ is PteEntries:
        bit = 1 << (pgoff & PG_PMD_COLOUR)
        if ent.zero & bit:
            ent.zero &= ~bit
            _unmap_zero(sim, pgoff >> 9, pgoff)
    ret = 0
    if new:
        sim.counters["pgmajfault"] += 1
        ret |= MAJOR
    sync = write and vma.sync and _iomap_dirty(fs, pos, PAGE_SIZE)
    if (write or prof.read_faults_dirty_entries) and not sync:
        # dax_insert_entry(): "dirty = write && !dax_fault_is_synchronous()"
        # (5.19..6.1: any fault that is not synchronous)
        fs.mark_dirty(pgoff)
    if sync:
        _pte_done(f, flags, ret | NEEDDSYNC)
        dax_finish_sync_fault(sim, f, vma, addr, flags, pmd=False)
        return ret | NEEDDSYNC
    trace.append(prof.pte_insert_function[1 if write else 0])
    _set_pte(sim, addr, writable=write)
    f.outcome, f.level = "pte", "pte"
    if not prof.pte_done_traces_major:
        # <= 5.14: trace_dax_pte_fault_done(ret), then "return ret | major"
        return _pte_done(f, flags, ret | NOPAGE, traced=(ret | NOPAGE) & ~MAJOR)
    return _pte_done(f, flags, ret | NOPAGE)


# --------------------------------------------------------------------------
# mm/memory.c: __handle_mm_fault() for an fsdax VMA


def handle_mm_fault(sim: Sim, vma: Vma, addr: int, write: bool, flags: int, via_gup: bool = False) -> Fault:
    """One fault at *addr*; returns a Fault.  *flags* are the FAULT_FLAG_*
    the architecture passes (user faults) or GUP's faultin_page() flags."""
    f = Fault(vma.trace_fields, addr)
    ret = _handle_once(sim, f, vma, addr, write, flags, via_gup)
    if f.again:
        # the fault returned with nothing mapped (a MAP_SYNC PTE fault on a
        # PMD entry: dax_insert_pfn_mkwrite_no_entry): the instruction runs
        # again and faults again, now with the inode's metadata synced
        f.again = False
        ret = _handle_once(sim, f, vma, addr, write, flags, via_gup)
    f.result = ret
    if ret & SIGBUS:
        f.outcome = "sigbus"
    return f


def _handle_once(sim: Sim, f: Fault, vma: Vma, addr: int, write: bool, flags: int, via_gup: bool) -> int:
    # The lockless attempt under the per-VMA lock (lock_vma_under_rcu()); ext4's
    # DAX vm_ops have no ->map_pages, so vmf_can_call_fault() makes the PTE
    # path return VM_FAULT_RETRY and the fault is redone under mmap_lock (the
    # huge attempt then runs twice).  xfs_file_vm_ops has ->map_pages.
    # mm/memory.c vmf_can_call_fault(), do_read_fault(), do_shared_fault(),
    # do_cow_fault(), wp_pfn_shared() (v6.12).
    if sim.profile.vma_lock_faults and not via_gup:
        fs = sim.file
        assert fs is not None  # fsdax faults run only on a case with a file
        ret = _fault_once(sim, f, vma, addr, write, flags | FF_VMA_LOCK, fs.fs == "ext4")
        if ret == RETRY:
            ret = _fault_once(sim, f, vma, addr, write, flags, False)
    else:
        ret = _fault_once(sim, f, vma, addr, write, flags, False)
    return ret


def _fault_once(sim: Sim, f: Fault, vma: Vma, addr: int, write: bool, flags: int, retry_pte: bool) -> int:
    mm = sim.mm
    key = addr >> PMD_SHIFT
    slot = mm.pmds.get(key)
    huge_ok = not vma.nohugepage and not sim.thp_disable
    if slot is None:
        if huge_ok:
            # PUD: dax_iomap_fault(order PUD) returns FALLBACK with no event
            ret = dax_iomap_pmd_fault(sim, f, vma, addr, flags)
            if ret != FALLBACK:
                return ret
        else:
            f.reason = f.reason or ("nohugepage" if vma.nohugepage else "thp-disabled")
    elif slot.__class__ is HugePmd:
        if write and not slot.writable:
            # wp_huge_pmd(): shared VMAs retry the huge fault for write (6.1
            # also calls it for private VMAs, where C2 then falls back)
            if vma.shared or sim.profile.wp_huge_pmd_private_huge_fault:
                ret = dax_iomap_pmd_fault(sim, f, vma, addr, flags)
                if ret != FALLBACK:
                    return ret
            else:
                f.reason = "private-write"
            # __split_huge_pmd(): a DAX PMD is zapped, not split into PTEs
            if mm.pmds.get(key).__class__ is HugePmd:
                del mm.pmds[key]
                sim.counters["thp_split_pmd"] += 1
        else:
            # huge_pmd_set_accessed(): nothing new
            f.outcome = "none"
            f.level = "pmd"
            return 0
    else:
        f.reason = f.reason or "pte-table-present"
    return _pte_level(sim, f, vma, addr, write, flags, retry_pte)


def _pte_level(sim: Sim, f: Fault, vma: Vma, addr: int, write: bool, flags: int, retry_pte: bool) -> int:
    t = sim.mm.pmds.get(addr >> PMD_SHIFT)
    bit = 1 << ((addr >> PAGE_SHIFT) & PG_PMD_COLOUR)
    if t is not None and sim.profile.orig_pte_valid_flag:
        # handle_pte_fault(): a page table exists, so vmf->orig_pte is read and
        # FAULT_FLAG_ORIG_PTE_VALID set (printed as 0x800: the fs_dax print
        # table has no name for it).  Lab, 6.12: "WRITE|...|0x800"; the flag
        # exists from v5.19 (profiles.py).
        flags |= FF_ORIG_PTE_VALID
    if t.__class__ is PteTable and t.present & bit:
        if not write or t.writable & bit:
            f.outcome, f.level = "none", "pte"
            return 0
        # do_wp_page()
        if not vma.shared:
            # wp_page_copy(): private copy of the DAX page (no fs_dax event)
            _set_pte(sim, addr, writable=True, anon=True)
            f.outcome, f.level = "cow", "pte"
            f.reason = f.reason or "private-write"
            return 0
        # shared: ->pfn_mkwrite (<= 6.14, DAX PTEs are special) or
        # ->page_mkwrite via do_page_mkwrite() (6.15+, flags become exactly
        # WRITE|MKWRITE) -> the fs's dax fault handler
        if retry_pte:
            return RETRY
        if sim.profile.pte_insert_function[0] == "vmf_insert_page_mkwrite":
            mflags = FF_WRITE | FF_MKWRITE
        else:
            mflags = flags | FF_MKWRITE
        return dax_iomap_pte_fault(sim, f, vma, addr, mflags, cow=False)
    if retry_pte:
        return RETRY
    cow = write and not vma.shared
    return dax_iomap_pte_fault(sim, f, vma, addr, flags, cow=cow)
