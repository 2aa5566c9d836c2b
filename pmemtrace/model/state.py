"""Kernel state the model carries across accesses, as the kernel keeps it.

- :class:`AddressSpace`: the process's VMAs and, per 2 MiB of virtual address
  space, what its PMD slot holds: nothing (``pmd_none``), a huge mapping, or a
  page table of 4 KiB PTEs.  PTEs are kept as 512-bit bitmaps per slot, so
  memory grows with the 2 MiB ranges touched, never with the 4 KiB pages.
- :class:`FileState`: the file's DAX xarray entries (mapping->i_pages), per
  2 MiB block: one PMD entry (empty, zero or data) or a bitmap of PTE-order
  entries; and the file's block map (extents), which write faults change
  (unwritten -> written, holes -> allocated).  Entries outlive munmap, as in
  the kernel (they go with truncate, hole punch or inode eviction).

A huge mapping (:class:`HugePmd`) and a PMD-order xarray entry
(:class:`PmdEntry`) are small immutable values shared by every 2 MiB range
in the same state (:func:`huge_pmd`, ``PMD_ENTRY_*``): a range then costs a
dict slot, not an object of its own, and a state change stores another
shared value.
"""

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from typing import Any, Optional, TypeVar, Union

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PMD_SHIFT = 21
PMD_SIZE = 1 << PMD_SHIFT
PUD_SHIFT = 30
PUD_SIZE = 1 << PUD_SHIFT
PG_PMD_NR = 512
PG_PMD_COLOUR = PG_PMD_NR - 1

# vm_flags bits (include/linux/mm.h) used to render trace events
VM_READ = 0x1
VM_WRITE = 0x2
VM_SHARED = 0x8
VM_MAYREAD = 0x10
VM_MAYWRITE = 0x20
VM_MAYEXEC = 0x40
VM_MAYSHARE = 0x80
VM_SYNC = 0x800000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000


_V = TypeVar("_V")


def _keys_in(table: dict[int, _V], first: int, last: int) -> list[int]:
    """The keys of *table* in first..last, in order; costs
    min(range, table size), never more."""
    if last - first + 1 <= len(table):
        return [k for k in range(first, last + 1) if k in table]
    return sorted(k for k in table if first <= k <= last)


class Vma:
    __slots__ = (
        "start",
        "end",
        "pgoff",
        "shared",
        "sync",
        "writable",
        "nohugepage",
        "mapping",
        "anon_vma",
        "vm_flags",
        "trace_fields",
    )

    def __init__(
        self,
        start: int,
        end: int,
        pgoff: int,
        shared: bool,
        sync: bool,
        writable: bool,
        nohugepage: Optional[bool],
        mapping: str,
        anon_vma: Optional[int] = None,
    ) -> None:
        self.start = start
        self.end = end
        self.pgoff = pgoff  # file page index mapped at vm_start
        self.shared = shared
        self.sync = sync
        self.writable = writable
        # True: VM_NOHUGEPAGE, False: VM_HUGEPAGE, None: neither (anonymous
        # memory no madvise changed: a cover)
        self.nohugepage = nohugepage
        self.mapping = mapping  # the case's mapping id
        # the identity of the VMA's anon_vma, None until a COW fault in it
        # (anon_vma_prepare()); a fork copies the page tables of a private
        # VMA only when it has one (vma_needs_copy())
        self.anon_vma = anon_vma
        self.update_flags()

    def update_flags(self) -> None:
        f = VM_READ | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
        if self.writable:
            f |= VM_WRITE
        if self.shared:
            f |= VM_SHARED | VM_MAYSHARE
        if self.sync:
            f |= VM_SYNC
        # ext4/xfs/device-dax mmap set VM_HUGEPAGE on DAX VMAs
        # (fs/ext4/file.c ext4_file_mmap(), fs/xfs/xfs_file.c, drivers/dax/device.c)
        if self.nohugepage is not None:
            f |= VM_NOHUGEPAGE if self.nohugepage else VM_HUGEPAGE
        self.vm_flags = f
        self._snapshot()

    def _snapshot(self) -> None:
        # what fs_dax events print of the VMA (vm_start, vm_end, vm_flags) and
        # its pgoff, as of now: a fault keeps this tuple, not the VMA, which a
        # later madvise() may split or change
        self.trace_fields = (self.start, self.end, self.vm_flags, self.pgoff)

    def split(self, addr: int) -> "Vma":
        """Split at *addr*; self keeps [start, addr), returns [addr, end)."""
        new = Vma(
            addr,
            self.end,
            self.pgoff + ((addr - self.start) >> PAGE_SHIFT),
            self.shared,
            self.sync,
            self.writable,
            self.nohugepage,
            self.mapping,
            self.anon_vma,  # __split_vma(): anon_vma_clone()
        )
        self.end = addr
        self._snapshot()
        return new

    def pgoff_of(self, addr: int) -> int:
        return self.pgoff + ((addr - self.start) >> PAGE_SHIFT)


class PteTable:
    """A page table under one PMD slot: bitmaps of present, writable and
    copied-on-write (anonymous) PTEs, bit i = page i of the 2 MiB range."""

    __slots__ = ("present", "writable", "anon", "zero")

    def __init__(self) -> None:
        self.present = 0
        self.writable = 0
        self.anon = 0
        self.zero = 0  # maps the shared 4 KiB zero page


class HugePmd:
    """A huge mapping in a PMD (or, for device-dax, PUD) slot.  Immutable and
    shared: get one from :func:`huge_pmd`; to change a slot, store another."""

    __slots__ = ("writable", "zero", "level")

    def __init__(self, writable: bool, zero: bool, level: str = "pmd") -> None:
        self.writable = writable
        self.zero = zero
        self.level = level  # "pmd" or "pud" (device-dax 1 GiB)

    def __repr__(self) -> str:
        return f"HugePmd(writable={self.writable}, zero={self.zero}, level={self.level!r})"


_HUGE = {(w, z, lv): HugePmd(w, z, lv) for w in (False, True) for z in (False, True) for lv in ("pmd", "pud")}


def huge_pmd(writable: int, zero: bool = False, level: str = "pmd") -> HugePmd:
    """The shared :class:`HugePmd` for this state (*writable* is taken as a
    truth value: a fault's ``flags & FAULT_FLAG_WRITE`` will do)."""
    return _HUGE[bool(writable), bool(zero), level]


class AddressSpace:
    """The process's VMAs, sorted by start and never overlapping, with a
    parallel list of starts for bisection: adding, finding, splitting and
    overlap checks cost O(log n) comparisons (plus a list insert), so
    setting up n mappings is O(n log n), not O(n^2)."""

    def __init__(self) -> None:
        self.vmas: list[Vma] = []  # sorted by start
        self._starts: list[int] = []
        self.pmds: dict[int, Union[HugePmd, PteTable]] = {}  # vaddr >> PMD_SHIFT -> slot
        self.puds: dict[int, HugePmd] = {}  # vaddr >> PUD_SHIFT -> HugePmd (device-dax PUD mappings)

    def _reindex(self) -> None:
        self.vmas.sort(key=lambda v: v.start)
        self._starts = [v.start for v in self.vmas]

    def _insert(self, vma: Vma) -> None:
        # after any VMA with the same start, as the stable sort did
        i = bisect_right(self._starts, vma.start)
        self.vmas.insert(i, vma)
        self._starts.insert(i, vma.start)

    def add(self, vma: Vma) -> None:
        self._insert(vma)

    def find(self, addr: int) -> Optional[Vma]:
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.vmas[i].end:
            return self.vmas[i]
        return None

    def overlaps(self, start: int, end: int) -> bool:
        """Does any VMA overlap [start, end)?  VMAs do not overlap each
        other, so the last one starting below *end* has the highest end."""
        i = bisect_left(self._starts, end) - 1
        return i >= 0 and self.vmas[i].end > start

    def vmas_in(self, start: int, end: int) -> list[Vma]:
        """The VMAs overlapping [start, end), in order."""
        i = max(0, bisect_right(self._starts, start) - 1)
        j = bisect_left(self._starts, end)
        return [v for v in self.vmas[i:j] if v.end > start]

    def vmas_of(self, mapping: str) -> list[Vma]:
        return [v for v in self.vmas if v.mapping == mapping]

    def remove_mapping(self, mapping: str) -> None:
        for v in self.vmas_of(mapping):
            self.zap(v.start, v.end)
        self.vmas = [v for v in self.vmas if v.mapping != mapping]
        self._reindex()

    def split_at(self, addr: int) -> None:
        v = self.find(addr)
        if v is not None and v.start < addr:
            self._insert(v.split(addr))

    def merge_neighbours(self, vma: Vma) -> None:
        """mm/vma.c vma_merge(): *vma* absorbs the next VMA and is absorbed
        by the previous one where they are of the same mapping, adjacent,
        with contiguous pgoff and equal flags."""
        if vma not in self.vmas:
            return  # already merged into its predecessor

        def mergeable(a: Vma, b: Vma) -> bool:
            return (
                a.mapping == b.mapping
                and a.end == b.start
                and a.vm_flags == b.vm_flags
                and b.pgoff == a.pgoff + ((a.end - a.start) >> PAGE_SHIFT)
                # is_mergeable_anon_vma(): one without, or the same
                and (a.anon_vma is None or b.anon_vma is None or a.anon_vma == b.anon_vma)
            )

        i = self.vmas.index(vma)
        if i + 1 < len(self.vmas) and mergeable(vma, self.vmas[i + 1]):
            nxt = self.vmas.pop(i + 1)
            vma.end = nxt.end
            vma.anon_vma = vma.anon_vma if vma.anon_vma is not None else nxt.anon_vma
            vma._snapshot()
        if i > 0 and mergeable(self.vmas[i - 1], vma):
            prev = self.vmas[i - 1]
            prev.end = self.vmas.pop(i).end
            prev.anon_vma = prev.anon_vma if prev.anon_vma is not None else vma.anon_vma
            prev._snapshot()
        self._reindex()

    def pmd_keys(self, first: int, last: int) -> Iterable[int]:
        """The PMD slots in use among keys first..last: a walk of the range
        when it is smaller than the table, else of the table, so that a
        TiB-long munmap or madvise costs the slots touched, not the range."""
        return _keys_in(self.pmds, first, last)

    def wrprotect(self, start: int, end: int) -> None:
        """Write-protect the file's translations in [start, end) of a shared
        VMA (mm/rmap.c page_vma_mkclean_one(): a huge PMD is protected
        whole, PTEs one by one; copied-on-write pages are not the file's)."""
        first, last = start >> PMD_SHIFT, (end - 1) >> PMD_SHIFT
        for key in _keys_in(self.pmds, first, last):
            slot = self.pmds[key]
            if isinstance(slot, HugePmd):
                if slot.writable:
                    self.pmds[key] = huge_pmd(False, slot.zero, slot.level)
                continue
            lo = max(start, key << PMD_SHIFT)
            hi = min(end, (key + 1) << PMD_SHIFT)
            a, b = (lo >> PAGE_SHIFT) & PG_PMD_COLOUR, ((hi - 1) >> PAGE_SHIFT) & PG_PMD_COLOUR
            slot.writable &= ~((((1 << (b - a + 1)) - 1) << a) & ~slot.anon)

    def zap(self, start: int, end: int, even_cows: bool = True, free_empty_tables: bool = False) -> None:
        """Remove the translations for [start, end) (munmap, MADV_DONTNEED).

        A huge mapping partly inside the range is split (zapped whole), as
        zap_pmd_range()/__split_huge_pmd() do for DAX.  Page tables are freed
        only when the whole 2 MiB range goes (free_pgtables on munmap); for
        MADV_DONTNEED the (now empty) table stays.  ``even_cows=False`` is
        unmap_mapping_pages()'s file-only zap: anonymous COW copies in
        private mappings stay (mm/memory.c zap_skip_check_mapping()).
        ``free_empty_tables`` is MADV_DONTNEED from v6.14 on (one VMA at a
        time): a table whose whole 2 MiB range is inside [start, end) and
        that is empty afterwards is freed (Profile.dontneed_frees_pte_tables).
        """
        for key in _keys_in(self.puds, start >> PUD_SHIFT, (end - 1) >> PUD_SHIFT):
            del self.puds[key]
        first, last = start >> PMD_SHIFT, (end - 1) >> PMD_SHIFT
        for key in _keys_in(self.pmds, first, last):
            slot = self.pmds[key]
            if isinstance(slot, HugePmd):
                del self.pmds[key]
                continue
            lo = max(start, key << PMD_SHIFT)
            hi = min(end, (key + 1) << PMD_SHIFT)
            a, b = (lo >> PAGE_SHIFT) & PG_PMD_COLOUR, ((hi - 1) >> PAGE_SHIFT) & PG_PMD_COLOUR
            mask = ((1 << (b - a + 1)) - 1) << a
            if not even_cows:
                mask &= ~slot.anon
            slot.present &= ~mask
            slot.writable &= ~mask
            slot.anon &= ~mask
            slot.zero &= ~mask
            if free_empty_tables and not slot.present and lo == key << PMD_SHIFT and hi == (key + 1) << PMD_SHIFT:
                del self.pmds[key]


# --- xarray entries -------------------------------------------------------


class PmdEntry:
    """A PMD-order DAX entry.  Immutable and shared: one of ``PMD_ENTRY_EMPTY``,
    ``PMD_ENTRY_ZERO``, ``PMD_ENTRY_DATA``; a state change stores another."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "empty" | "zero" | "data"

    def __repr__(self) -> str:
        return f"PmdEntry({self.kind!r})"


PMD_ENTRY_EMPTY = PmdEntry("empty")  # locked empty entry (grab_mapping_entry)
PMD_ENTRY_ZERO = PmdEntry("zero")  # DAX_ZERO_PAGE: the huge zero page
PMD_ENTRY_DATA = PmdEntry("data")  # maps the file's blocks


class PteEntries:
    __slots__ = ("present", "zero")

    def __init__(self) -> None:
        self.present = 0  # bit i: a PTE-order entry exists at index (block*512 + i)
        self.zero = 0  # ... and it is a zero-page entry


class Ext:
    __slots__ = ("logical", "physical", "length", "unwritten")

    def __init__(self, logical: int, physical: int, length: int, unwritten: bool) -> None:
        self.logical = logical
        self.physical = physical
        self.length = length
        self.unwritten = unwritten

    @property
    def end(self) -> int:
        return self.logical + self.length


# extents per chunk of the block map, at most twice this (see FileState)
EXTENT_CHUNK = 256
# ext4's s_extent_max_zeroout_kb default (fs/ext4/super.c: 32)
EXT4_MAX_ZEROOUT = 32 << 10


def _abut(a: Ext, b: Ext) -> bool:
    """*b* follows *a* logically and physically."""
    return a.logical + a.length == b.logical and a.physical + a.length == b.physical


class FileState:
    """The file: size, block map and DAX xarray entries.

    The block map is the extents sorted by logical offset, kept in chunks of
    at most ``2 * EXTENT_CHUNK`` (with each chunk's first offset in
    ``_heads``): write faults split extents (unwritten -> written, one 2 MiB
    or 4 KiB piece at a time, as ext4/xfs do), and a split then moves one
    chunk's worth of pointers, not the whole map's."""

    def __init__(self, file: Any, hole_alloc_align: int = PMD_SIZE) -> None:
        self.size: int = file.size
        self.ino: int = file.ino
        self.fs: str = file.fs
        exts = [Ext(e.logical, e.physical, e.length, e.unwritten) for e in file.extents]
        n = EXTENT_CHUNK
        self._chunks = [exts[i : i + n] for i in range(0, len(exts), n)] or [[]]
        self._starts = [[e.logical for e in c] for c in self._chunks]
        self._heads = [s[0] for s in self._starts if s]
        self.entries: dict[int, Union[PmdEntry, PteEntries]] = {}  # file block (index >> 9) -> entry
        self.hole_alloc_align = hole_alloc_align
        # PAGECACHE_TAG_DIRTY on data entries: fs/dax.c dax_insert_entry()
        # marks the entry a write fault maps dirty unless the fault is
        # synchronous ("dirty = write && !dax_fault_is_synchronous()"),
        # dax_insert_pfn_mkwrite() marks it after a MAP_SYNC fault's fsync,
        # and dax_writeback_one() clears it.  PMD entries by block, PTE-order
        # entries as a bitmap per block (bit i: index block*512 + i).
        self.dirty_pmds: set[int] = set()
        self.dirty_ptes: dict[int, int] = {}
        # metadata changed since the last fsync (allocation, unwritten
        # conversion, i_size): ->iomap_begin() then sets IOMAP_F_DIRTY on
        # every mapping it returns, not only on new blocks -- xfs
        # xfs_bmbt_to_iomap(): "if (xfs_ipincount(ip) && (ili_fsync_fields &
        # ~XFS_ILOG_TIMESTAMP)) iomap->flags |= IOMAP_F_DIRTY"; ext4
        # ext4_set_iomap(): ext4_inode_datasync_dirty().  A case starts
        # clean (recorded files are fsynced); the journal's own periodic
        # commit (ext4: 5 s, xfs log worker: 30 s) is not modelled.
        self.datasync_dirty = False
        # where the filesystem really placed blocks it allocated in holes
        # (case key file.allocated), by logical offset
        self._placed = [(e.logical, e.physical, e.length) for e in file.allocated]
        self._placed_starts = [p[0] for p in self._placed]
        self._next_phys = max((e.physical + e.length for e in [*exts, *file.allocated]), default=0)

    @property
    def max_pgoff(self) -> int:
        return (self.size + PAGE_SIZE - 1) >> PAGE_SHIFT

    @property
    def exts(self) -> list[Ext]:
        """All extents, in logical order."""
        return [e for c in self._chunks for e in c]

    def _find(self, pos: int) -> tuple[int, int]:
        """(chunk, index) of the last extent starting at or before *pos*;
        (0, -1) when there is none."""
        c = bisect_right(self._heads, pos) - 1
        if c < 0:
            return 0, -1
        return c, bisect_right(self._starts[c], pos) - 1

    def _following(self, c: int, i: int) -> Iterator[Ext]:
        """The extents after (chunk c, index i), in order."""
        chunks = self._chunks
        yield from chunks[c][i + 1 :]
        for chunk in chunks[c + 1 :]:
            yield from chunk

    def _insert(self, c: int, i: int, e: Ext) -> None:
        """Insert extent *e* right after (chunk c, index i)."""
        chunk, starts = self._chunks[c], self._starts[c]
        chunk.insert(i + 1, e)
        starts.insert(i + 1, e.logical)
        if i < 0:  # a new first extent (chunk 0)
            if self._heads:
                self._heads[c] = e.logical
            else:
                self._heads.append(e.logical)
        if len(chunk) > 2 * EXTENT_CHUNK:
            half = len(chunk) // 2
            self._chunks.insert(c + 1, chunk[half:])
            self._starts.insert(c + 1, starts[half:])
            self._heads.insert(c + 1, starts[half])
            del chunk[half:], starts[half:]

    def lookup(self, pos: int, need: int = PMD_SIZE) -> tuple[str, int, Optional[Ext]]:
        """iomap of byte *pos*: (kind, length_from_pos, ext_or_None).

        kind is "mapped", "unwritten" or "hole"; a hole extends to the next
        extent (ext4/xfs ->iomap_begin report holes up to the next mapping).
        Physically contiguous neighbours of the same type count as one
        mapping (the filesystems merge them); the walk stops once *need*
        bytes are covered, which is all a caller compares against."""
        c = bisect_right(self._heads, pos) - 1
        if c >= 0:
            chunk = self._chunks[c]
            i = bisect_right(self._starts[c], pos) - 1
            e = chunk[i]
            end = e.logical + e.length
            if pos < end:
                length = end - pos
                if length < need:
                    a = e
                    for b in self._following(c, i):
                        if (
                            b.logical != a.logical + a.length
                            or b.physical != a.physical + a.length
                            or b.unwritten != e.unwritten
                        ):
                            break
                        length = b.logical + b.length - pos
                        if length >= need:
                            break
                        a = b
                return ("unwritten" if e.unwritten else "mapped"), length, e
        else:
            c, i = 0, -1
        nxt = next(self._following(c, i), None)
        return "hole", (nxt.logical - pos) if nxt is not None else (1 << 62), None

    def _split(self, pos: int) -> None:
        """Make *pos* an extent boundary (if inside an extent)."""
        c, i = self._find(pos)
        if i >= 0:
            e = self._chunks[c][i]
            if e.logical < pos < e.logical + e.length:
                cut = pos - e.logical
                new = Ext(pos, e.physical + cut, e.length - cut, e.unwritten)
                e.length = cut
                self._insert(c, i, new)

    def invalidate(self, first: int, last: int) -> None:
        """invalidate_inode_pages2_range(mapping, first, last) on a DAX file
        (mm/truncate.c -> invalidate_exceptional_entry2() ->
        fs/dax.c dax_invalidate_mapping_entry_sync(), v6.1..7.x): clean
        entries (hole/zero and empty ones) overlapping the page indices go;
        dirty data entries stay (the model keeps every data entry: the
        ranges a write(2) allocates hold none); so do zero entries tagged
        dirty (__dax_invalidate_entry(): "if (!trunc && (xas_get_mark(&xas,
        PAGECACHE_TAG_DIRTY) || ...)) goto out" -- 5.19..6.1, where reads
        tag entries dirty too)."""
        entries = self.entries
        for block in _keys_in(entries, first >> 9, last >> 9):
            ent = entries[block]
            if isinstance(ent, PmdEntry):
                if ent.kind != "data" and block not in self.dirty_pmds:
                    del entries[block]
                continue
            lo = max(first, block << 9) & PG_PMD_COLOUR
            hi = min(last, (block << 9) + PG_PMD_COLOUR) & PG_PMD_COLOUR
            mask = (((1 << (hi - lo + 1)) - 1) << lo) & ent.zero & ~self.dirty_ptes.get(block, 0)
            ent.present &= ~mask
            ent.zero &= ~mask
            if not ent.present:
                del entries[block]

    def mark_dirty(self, index: int) -> None:
        """PAGECACHE_TAG_DIRTY on the entry that maps page *index*: its
        PTE-order entry, or the PMD data entry covering it ("PTE writes will
        simply dirty the entire PMD entry", fs/dax.c dax_insert_entry())."""
        block = index >> 9
        ent = self.entries.get(block)
        if ent.__class__ is PmdEntry:
            self.dirty_pmds.add(block)
        elif ent.__class__ is PteEntries:
            self.dirty_ptes[block] = self.dirty_ptes.get(block, 0) | 1 << (index & PG_PMD_COLOUR)

    def has_dirty(self) -> bool:
        """mapping_tagged(mapping, PAGECACHE_TAG_DIRTY): any dirty entry in
        the file (filemap_fdatawrite_wbc() writes nothing back otherwise)."""
        return bool(self.dirty_pmds or self.dirty_ptes)

    def take_dirty(self, first: int, last: int) -> list[tuple[int, int]]:
        """The dirty entries overlapping page indices first..last, in index
        order, as (first index, pages); their dirty mark is cleared
        (tag_pages_for_writeback() + dax_writeback_one())."""
        out = []
        for block in range(first >> 9, (last >> 9) + 1):
            if block in self.dirty_pmds:
                self.dirty_pmds.discard(block)
                out.append((block << 9, PG_PMD_NR))
                continue
            bits = self.dirty_ptes.get(block, 0)
            lo = max(first, block << 9) & PG_PMD_COLOUR
            hi = min(last, (block << 9) | PG_PMD_COLOUR) & PG_PMD_COLOUR
            sel = bits & (((1 << (hi - lo + 1)) - 1) << lo)
            if not sel:
                continue
            out += [((block << 9) | i, 1) for i in range(lo, hi + 1) if sel >> i & 1]
            if bits & ~sel:
                self.dirty_ptes[block] = bits & ~sel
            else:
                del self.dirty_ptes[block]
        return out

    def _placement(self, pos: int, length: int) -> tuple[int, int]:
        """(physical, length) of the next piece of a hole allocation at
        *pos*: where the case says the filesystem placed it (file.allocated),
        up to the end of that record; elsewhere the allocator's choice is not
        knowable from the case, and the model allocates at hole_alloc_align,
        up to the next record."""
        i = bisect_right(self._placed_starts, pos) - 1
        if i >= 0:
            lo, phys, ln = self._placed[i]
            if pos < lo + ln:
                return phys + (pos - lo), min(length, lo + ln - pos)
        if i + 1 < len(self._placed):
            length = min(length, self._placed[i + 1][0] - pos)
        a = self.hole_alloc_align
        phys = (self._next_phys + a - 1) // a * a
        self._next_phys = phys + length
        return phys, length

    def _ext4_zeroout(self, pos: int, end: int) -> tuple[int, int]:
        """The range ext4 really converts when a write needs [pos, end) of
        an unwritten extent: fs/ext4/extents.c
        ext4_ext_convert_to_initialized() zeroes and converts the rest of
        the extent too when that tail is at most s_extent_max_zeroout_kb
        (32 KiB by default; "ext4: make the zero-out chunk size tunable",
        in v3.7, id not confirmed here), then the head when head and
        converted part together stay under it -- only for an extent inside
        i_size, and not when the blocks just move into an initialized
        neighbour they adjoin (its fast path).  Lab, 6.12 ext4: a write into
        a page between two written ones 12 KiB apart is no MAJOR fault."""
        c, i = self._find(pos)
        if i < 0:
            return pos, end
        chunk = self._chunks[c]
        e = chunk[i]
        lo, hi = e.logical, e.logical + e.length
        if not e.unwritten or pos >= hi or hi > ((self.size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)):
            return pos, end
        req = min(end, hi) - pos
        if req < hi - lo:
            chunks = self._chunks
            prev = chunk[i - 1] if i > 0 else (chunks[c - 1][-1] if c > 0 and chunks[c - 1] else None)
            nxt = chunk[i + 1] if i + 1 < len(chunk) else (chunks[c + 1][0] if c + 1 < len(chunks) else None)
            if pos == lo and prev is not None and not prev.unwritten and _abut(prev, e):
                return pos, end
            if pos + req == hi and nxt is not None and not nxt.unwritten and _abut(e, nxt):
                return pos, end
        mz = EXT4_MAX_ZEROOUT
        tail = hi - pos
        if tail > req:
            if tail <= mz:
                req = tail
            if pos - lo + req < mz:
                return lo, max(end, pos + req)
        return pos, max(end, pos + req)

    def write_range(self, pos: int, length: int) -> bool:
        """A write fault's ->iomap_begin(IOMAP_WRITE) over [pos, pos+length):
        converts unwritten blocks and allocates holes.  Returns True when any
        block was newly allocated or converted (IOMAP_F_NEW)."""
        new = False
        end = pos + length
        if self.fs == "ext4":
            pos, end = self._ext4_zeroout(pos, end)
        self._split(pos)
        self._split(end)
        p = pos
        while p < end:
            kind, ln, e = self.lookup(p, end - p)
            ln = min(ln, end - p)
            if kind == "unwritten":
                # lookup() merges physically contiguous unwritten extents into
                # one run; convert them one extent at a time
                assert e is not None  # lookup() returns the extent of a mapped/unwritten run
                ln = min(ln, e.logical + e.length - p)
                e.unwritten = False
                new = True
            elif kind == "hole":
                phys, ln = self._placement(p, ln)
                c, i = self._find(p)
                self._insert(c, i, Ext(p, phys, ln, False))
                new = True
            p += ln
        if new:
            self.datasync_dirty = True
        return new
