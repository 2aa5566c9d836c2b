"""Partial munmap and mremap: what they do to a DAX mapping's VMAs and to
the page tables under it (mm/vma.c, mm/mmap.c, mm/mremap.c, v5.10..7.x).

A case names its accesses by mapping and offset; after an mremap that moved
a mapping, the mapping's current place is ``Sim.geom[id] = (start,
length)`` (the case's ``start`` stays where the mapping was first made, and
an ``mmap`` after a whole munmap makes it there again).

The rules, each as the kernel has it:

* munmap of part of a mapping (do_vmi_align_munmap()): the VMA is split at
  the range's ends -- a device-dax VMA only at a multiple of the device's
  align (drivers/dax/device.c dev_dax_may_split(), Linux kernel commit
  9702cffdbf21 ("device-dax: implement ->split() to catch invalid munmap
  attempts") (in v4.15)), else -EINVAL, a front split that worked stays --;
  a huge PMD across a split address is split, which for DAX clears it
  (vma_adjust_trans_huge() -> __split_huge_pmd_locked(): a file VMA's PMD is
  cleared, never remapped by PTEs); the range is zapped; free_pgtables()
  frees a PTE table only where no VMA is left in its 2 MiB block.
* mremap shrink: the tail is munmapped; grow: in place when the range ends
  at the VMA's end and nothing lies beyond (vma_expandable()), else moved
  with MREMAP_MAYMOVE (-ENOMEM without); MREMAP_FIXED (needs MAYMOVE, else
  -EINVAL) unmaps the target first and refuses overlapping ranges
  (-EINVAL); a range that is not inside one VMA is -EFAULT
  (vma_to_resize()); nothing mapped at the address is -EFAULT.
* the move (move_vma() -> move_page_tables()), one extent at a time, an
  extent ending at the next 2 MiB boundary of the old *or* the new address
  (get_extent()): a huge PMD (pmd_trans_huge/pmd_devmap: DAX PMDs since
  Linux kernel commit 5c7fb56e5e3f ("mm, dax: dax-pmd vs thp-pmd vs
  hugetlbfs-pmd") (in v4.5)) moves whole when the extent is 2 MiB
  (move_huge_pmd(): old and new address both 2 MiB aligned), else it is
  split (cleared) and the block faults again at its new place; a PTE table
  moves whole when the extent is 2 MiB (move_normal_pmd(), Linux kernel
  commit 2c91bd4a4e2e ("mm: speed up mremap by 20x on large regions") (in
  v5.0)), else its PTEs move one by one into a table allocated at the new
  place (pte_alloc() before move_ptes(), even when none is present); the
  old range is then munmapped (its tables freed as above).  No fs_dax event
  fires.  Not modelled: the v6.7 realignment of a move's start down to 2 MiB
  (try_realign_addr()), which needs the 2 MiB below both ranges free --
  ``pmemtrace run --case`` always has a reservation or guard there -- and
  moves of device-dax 1 GiB PUDs (they are cleared here; not lab-checked).
"""

from dataclasses import replace
from typing import Any, Optional

from .case import Access, Mapping
from .state import PAGE_SIZE, PMD_SHIFT, PMD_SIZE, HugePmd, PteTable

EINVAL, EFAULT, ENOMEM = 22, 14, 12
_MASK = PMD_SIZE - 1
#: the mapping id of a cover: PROT_NONE anonymous memory the process maps
#: over a range a munmap or mremap emptied (access key ``cover``)
COVER = "<cover>"


def _add_cover(sim: Any, start: int, end: int) -> None:
    """mmap(MAP_FIXED, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS) over [start,
    end).  An anonymous VMA's pgoff is its address in pages, and mmap_region()
    merges it with an adjacent one of equal flags and no anon_vma
    (vma_merge(), mm/mmap.c since before git history, v2.6.12): covers side
    by side are one VMA, which a later mremap of the whole range finds
    (lab, 5.10..7.3: an mremap over two covers that touch succeeds; seed 32
    cases 394, 1389)."""
    from .state import PAGE_SHIFT, Vma

    if end > start:
        v = Vma(start, end, start >> PAGE_SHIFT, False, False, False, None, COVER)
        sim.mm.add(v)
        sim.mm.merge_neighbours(v)


def drop_covers(sim: Any, start: int, end: int, free: bool = False) -> None:
    """Unmap the covers in [start, end) (a whole munmap of the range, or
    an mmap MAP_FIXED over it; *free*: free_pgtables() after them)."""
    mm = sim.mm
    gone = [v for v in mm.vmas_in(start, end) if v.mapping == COVER]
    if not gone:
        return
    # a cover that reaches past the range (covers merge) is split at its edge
    for addr in (start, end):
        v = mm.find(addr)
        if v is not None and v.mapping == COVER and v.start < addr:
            mm.split_at(addr)
    gone = [v for v in mm.vmas_in(start, end) if v.mapping == COVER]
    mm.vmas = [v for v in mm.vmas if v not in gone]
    mm._reindex()
    if free:
        for v in gone:
            _free_tables(sim, v.start, v.end)


def only_covers(sim: Any, start: int, end: int) -> bool:
    """Is [start, end) wholly in covers?"""
    vmas = sim.mm.vmas_in(start, end)
    return bool(vmas) and all(v.mapping == COVER for v in vmas) and not has_gap(sim, start, end)


def has_gap(sim: Any, start: int, end: int) -> bool:
    """Is some page of [start, end) in no VMA?  (madvise(2) then fails
    with -ENOMEM after doing the VMAs there are: madvise_walk_vmas())"""
    pos = start
    for v in sim.mm.vmas_in(start, end):
        if v.start > pos:
            return True
        pos = max(pos, v.end)
    return pos < end


def current(sim: Any, m: Mapping) -> Mapping:
    """*m* where it is now (its start and length after mremaps)."""
    g = sim.geom.get(m.id)
    if g is None:
        return m
    return replace(m, start=g[0], length=g[1])


def _free_tables(sim: Any, start: int, end: int) -> None:
    """free_pgtables() after unmapping [start, end): a PTE table goes where
    no VMA is left in its 2 MiB block (blocks the process shares with VMAs
    outside the case, ``process.shared_blocks``, keep theirs)."""
    mm = sim.mm
    for key in mm.pmd_keys(start >> PMD_SHIFT, (end - 1) >> PMD_SHIFT):
        if key in sim.external_tables or key in sim.shared_blocks:
            continue
        if not mm.overlaps(key << PMD_SHIFT, (key + 1) << PMD_SHIFT):
            del mm.pmds[key]


def _unshare_covered(sim: Any, start: int, end: int) -> None:
    """A grow in place took the free room beyond the end, where the VMA that
    shared the end block lay (``process.shared_blocks``: the process's
    reservation, which ``pmemtrace run --case`` unmaps for the room): a
    block the case's VMAs now cover whole is shared no more, and a munmap
    frees its table as free_pgtables() does for any block no VMA is left in
    (lab, 6.1 and 7.3 xfs: a mapping grown over its end block, munmapped and
    mapped again, takes the PMD attempt there; seed 32 case 67, seed 31
    case 13)."""
    for key in range(start >> PMD_SHIFT, ((end - 1) >> PMD_SHIFT) + 1):
        if key in sim.shared_blocks and not has_gap(sim, key << PMD_SHIFT, (key + 1) << PMD_SHIFT):
            sim.shared_blocks.discard(key)


def split(sim: Any, addr: int) -> None:
    """__split_vma() at *addr*: first vma_adjust_trans_huge() ->
    split_huge_pmd_if_needed(): where *addr* is not 2 MiB aligned and the
    VMA covers the whole 2 MiB block around it, a huge PMD there is split --
    for DAX cleared, not split into PTEs (__split_huge_pmd_locked(): "if
    (vma_is_special_huge(vma)) return" after pmdp_huge_clear_flush()), so
    the next access there faults again (lab, 6.12 ext4: a write after
    MADV_NOHUGEPAGE of a middle range takes a PMD fault that falls back at
    the new VMA end).  mm/huge_memory.c since "thp: avoid breaking huge pmd
    invariants in case of vma_adjust failures" (in v2.6.38; commit id not
    confirmed here)."""
    mm = sim.mm
    v = mm.find(addr)
    if v is None or v.start >= addr:
        return
    key = addr >> PMD_SHIFT
    covered = v.start <= key << PMD_SHIFT and (key + 1) << PMD_SHIFT <= v.end
    if addr & _MASK and covered and isinstance(mm.pmds.get(key), HugePmd):
        del mm.pmds[key]
        sim.counters["thp_split_pmd"] += 1
    mm.split_at(addr)


def unmap_range(sim: Any, start: int, end: int, cover: bool = False) -> Optional[tuple[int, str]]:
    """munmap(start, end - start); (errno, reason) when refused.  *cover*:
    the process then maps PROT_NONE over the range."""
    if start % PAGE_SIZE:
        return EINVAL, "munmap-unaligned"
    end = (end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    mm = sim.mm
    vmas = mm.vmas_in(start, end)
    if not vmas:
        if cover:
            _add_cover(sim, start, end)
        return None  # munmap(2) of nothing mapped succeeds
    if sim.device.mode == "devdax":
        # dev_dax_may_split() is the device-dax VMA's; a cover (anonymous)
        # splits anywhere
        align = sim.device.align
        if vmas[0].mapping != COVER and vmas[0].start < start and start % align:
            return EINVAL, "devdax-vma-unaligned"
        split(sim, start)
        if vmas[-1].mapping != COVER and vmas[-1].end > end and end % align:
            return EINVAL, "devdax-vma-unaligned"
    split(sim, start)
    split(sim, end)
    doomed = mm.vmas_in(start, end)
    mm.zap(start, end)
    mm.vmas = [v for v in mm.vmas if v not in doomed]
    mm._reindex()
    _free_tables(sim, start, end)
    for mid in {v.mapping for v in doomed}:
        if not mm.vmas_of(mid):
            sim.mapped.discard(mid)
    if cover:
        _add_cover(sim, start, end)
    return None


def munmap(sim: Any, m: Mapping, a: Access) -> Optional[tuple[int, str]]:
    """A munmap access over part of mapping *m* (offset/length)."""
    cur = current(sim, m)
    return unmap_range(sim, cur.start + a.offset, cur.start + a.offset + a.length, a.cover)


def _move_tables(sim: Any, old: int, new: int, length: int) -> None:
    """move_page_tables(old -> new, length)."""
    mm = sim.mm
    pmds = mm.pmds
    end = old + length
    for key in list(mm.puds):  # not lab-checked: cleared (see the module doc)
        if old >> 30 <= key <= (end - 1) >> 30:
            del mm.puds[key]
    while old < end:
        extent = min(PMD_SIZE - (old & _MASK), end - old, PMD_SIZE - (new & _MASK))
        okey, nkey = old >> PMD_SHIFT, new >> PMD_SHIFT
        slot = pmds.get(okey)
        if slot is not None:
            whole = extent == PMD_SIZE and nkey not in pmds
            if whole:  # move_huge_pmd() / move_normal_pmd()
                pmds[nkey] = pmds.pop(okey)
            elif isinstance(slot, HugePmd):
                del pmds[okey]  # split_huge_pmd(): cleared for DAX
                sim.counters["thp_split_pmd"] += 1
            else:  # move_ptes() into a table allocated at the new place
                dst = pmds.get(nkey)
                if not isinstance(dst, PteTable):
                    dst = pmds[nkey] = PteTable()  # (a huge PMD there: not possible, the range was unmapped)
                o0 = (old >> 12) & 511
                n0 = (new >> 12) & 511
                n = extent >> 12
                mask = ((1 << n) - 1) << o0
                for attr in ("present", "writable", "anon", "zero"):
                    bits = (getattr(slot, attr) & mask) >> o0
                    setattr(slot, attr, getattr(slot, attr) & ~mask)
                    setattr(dst, attr, getattr(dst, attr) | (bits << n0))
        old += extent
        new += extent


def _free_spot(sim: Any, length: int, pgoff: int) -> int:
    """get_unmapped_area() for a move the kernel places: above every VMA,
    with the file offset's 2 MiB colour (thp_get_unmapped_area(); device-dax
    aligns to its align, at least 2 MiB here)."""
    top = max((v.end for v in sim.mm.vmas), default=0x7F0000000000)
    align = max(PMD_SIZE, sim.device.align if sim.device.mode == "devdax" else PMD_SIZE)
    base = (top + 2 * align + align - 1) & ~(align - 1)
    return base + ((pgoff << 12) & _MASK)


def mremap(sim: Any, m: Mapping, a: Access) -> Optional[tuple[int, str]]:
    """mremap(2) of mapping *m* (its whole current range) to ``a.length``
    bytes: ``a.maymove`` (MREMAP_MAYMOVE), ``a.fixed`` (MREMAP_FIXED to
    ``a.new_start``), ``a.new_start`` without fixed: where the kernel put it
    (recorded), else the model places it.  (errno, reason) when refused."""
    cur = current(sim, m)
    mm = sim.mm
    old, old_len = cur.start, cur.length
    new_len = (a.length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    if new_len == 0 or (a.fixed and not a.maymove):
        return EINVAL, "mremap-flags"
    vma = mm.find(old)
    if vma is None:
        return EFAULT, "not-mapped"
    if a.fixed:
        new = a.new_start if a.new_start is not None else 0
        if new % PAGE_SIZE:
            return EINVAL, "mremap-unaligned"
        if new_len == old_len and sim.profile.mremap_moves_multiple_vmas:
            return _remap_move(sim, m, a, old, old_len, new)
        if old + old_len > new and new + new_len > old:
            return EINVAL, "mremap-overlap"
        err = unmap_range(sim, new, new + new_len)
        if err:
            return err
        if old_len > new_len:
            err = unmap_range(sim, old + new_len, old + old_len, a.cover)
            if err:
                return err
            old_len = new_len
        vma = mm.find(old)
        if vma is None or old_len > vma.end - old:
            return EFAULT, "mremap-spans-vmas"
        return _move(sim, m, vma, old, old_len, new, new_len, a.cover)
    if old_len >= new_len:  # always allowed: unmap the tail
        err = unmap_range(sim, old + new_len, old + old_len, a.cover)
        if err is None:
            sim.geom[m.id] = (old, new_len)
        return err
    if old_len > vma.end - old:
        return EFAULT, "mremap-spans-vmas"
    stays = a.new_start is None or a.new_start == old
    if a.cover and (old + old_len == vma.end or vma.mapping == COVER):
        # a process that covers what it empties makes room for a grow by
        # unmapping its covers beyond the end first (as run --case does),
        # a cover reaching past the end too (lab, seed 32 case 1415)
        drop_covers(sim, old + old_len, old + new_len, free=True)
        vma = mm.find(old)
        assert vma is not None  # only what lies beyond the end went
    if stays and old + old_len == vma.end and not mm.overlaps(vma.end, old + new_len):
        vma.end = old + new_len  # vma_expand(): the same VMA, grown
        vma._snapshot()
        sim.geom[m.id] = (old, new_len)
        _unshare_covered(sim, old, old + new_len)
        return None
    if not a.maymove:
        return ENOMEM, "mremap-no-room"
    new = a.new_start if a.new_start is not None and a.new_start != old else _free_spot(sim, new_len, vma.pgoff)
    return _move(sim, m, vma, old, old_len, new, new_len, a.cover)


def _multi_allowed(sim: Any, v: Any) -> bool:
    """vma_multi_allowed(): anonymous memory (a cover) and files whose
    get_unmapped_area is thp_get_unmapped_area (ext4, xfs DAX) may be moved
    with others; device-dax has its own dax_get_unmapped_area()."""
    return v.mapping == COVER or sim.device.mode == "fsdax"


def _remap_move(sim: Any, m: Mapping, a: Access, old: int, length: int, new: int) -> Optional[tuple[int, str]]:
    """remap_move() (v6.17+): every VMA of [old, old+length) moves on its
    own, the gaps between them kept; a gap at the start is -EFAULT, and so
    is a VMA that may not be batched when the range does not end in it:
    before anything moved when it is the first ("mm/mremap: catch invalid
    multi VMA moves earlier", in v6.17 with the multi-VMA move itself;
    mainline commit id not confirmed: lab, 7.3.4 device-dax, seed 31 cases
    767 and 1595), after the VMAs before it moved otherwise.  The process
    goes on using the range it asked to move when the call fails (as
    ``pmemtrace run --case`` does), so the mapping's place is kept then."""
    mm = sim.mm
    end = old + length
    vmas = mm.vmas_in(old, end)
    if not vmas or vmas[0].start > old:
        return EFAULT, "not-mapped"
    if not _multi_allowed(sim, vmas[0]) and vmas[0].end < end:
        return EFAULT, "mremap-spans-vmas"
    before = sim.geom.get(m.id)
    err = _remap_each(sim, m, vmas, old, end, new)
    if err is not None:
        if before is None:
            sim.geom.pop(m.id, None)
        else:
            sim.geom[m.id] = before
        return err
    if a.cover:
        _add_cover(sim, old, end)
    sim.geom[m.id] = (new, length)
    return None


def _remap_each(sim: Any, m: Mapping, vmas: list[Any], old: int, end: int, new: int) -> Optional[tuple[int, str]]:
    """The loop of remap_move(): each VMA moved with mremap_to()."""
    mm = sim.mm
    target, seen, last_end = new, False, 0
    for v in vmas:
        addr = max(v.start, old)
        ln = min(end, v.end) - addr
        offset = v.start - last_end if seen else 0
        last_end = v.end
        if seen and not _multi_allowed(sim, v):
            return EFAULT, "mremap-spans-vmas"
        dst = target + offset
        if addr + ln > dst and dst + ln > addr:
            return EINVAL, "mremap-overlap"
        err = unmap_range(sim, dst, dst + ln)
        if err:
            return err
        piece = mm.find(addr)
        assert piece is not None  # unmapping the target left the source alone (no overlap)
        _move(sim, m, piece, addr, ln, dst, ln, False)
        seen = True
        target = dst + ln
    return None


def _move(
    sim: Any, m: Mapping, vma: Any, old: int, old_len: int, new: int, new_len: int, cover: bool
) -> Optional[tuple[int, str]]:
    """move_vma(): a new VMA at *new*, the page tables moved, the old range
    unmapped."""
    mm = sim.mm
    from .state import Vma

    # copy_vma(): the moved VMA keeps its anon_vma (anon_vma_clone())
    nv = Vma(
        new,
        new + new_len,
        vma.pgoff_of(old),
        vma.shared,
        vma.sync,
        vma.writable,
        vma.nohugepage,
        vma.mapping,
        vma.anon_vma,
    )
    _move_tables(sim, old, new, old_len)
    mm.add(nv)
    # the old range goes as munmap does (nothing is left in it to zap)
    mm.vmas = [v for v in mm.vmas if v is not vma]
    mm._reindex()
    if vma.start < old or vma.end > old + old_len:  # only part of the VMA moved: keep the rest
        if vma.start < old:
            mm.add(_piece(vma, vma.start, old))
        if vma.end > old + old_len:
            mm.add(_piece(vma, old + old_len, vma.end))
    _free_tables(sim, old, old + old_len)
    if cover:
        _add_cover(sim, old, old + old_len)
    sim.geom[m.id] = (new, new_len)
    sim.mapped.add(m.id)
    return None


def _piece(v: Any, start: int, end: int) -> Any:
    from .state import Vma

    return Vma(start, end, v.pgoff_of(start), v.shared, v.sync, v.writable, v.nohugepage, v.mapping, v.anon_vma)
