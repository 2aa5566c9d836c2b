"""fork(2) in a case: a child process with its own page tables, accesses
made in it (``"child": true``), and what the fork does to the parent.

The rules (kernel/fork.c dup_mmap() -> mm/memory.c copy_page_range(),
v5.10..7.x):

* The child gets every VMA, but page tables only for VMAs
  vma_needs_copy() says need them: VM_PFNMAP/VM_MIXEDMAP (DAX VMAs have
  neither since Linux kernel commit e1fb4a086495 ("dax: remove VM_MIXEDMAP
  for fsdax and device dax") (in v4.15)) or an anon_vma -- a private
  mapping that has taken a copy-on-write fault.  A shared DAX mapping, or a
  private one never written, starts empty in the child: its accesses fault
  as on a fresh mapping ("Don't copy ptes where a page fault will fill them
  correctly").  The same holds for the other VMAs of the process: a 2 MiB
  block a DAX mapping shares with one of them has a table in the child only
  when that VMA has an anon_vma (the case key ``process.fork_tables``,
  recorded at the fork) and the parent has a table there.
* Where the VMA is copied, 4 KiB PTEs are copied (file and anonymous); a
  writable anonymous (COW'd) PTE is write-protected in both processes
  (copy_present_pte(): is_cow_mapping() && pte_write()), so the next write
  on either side goes to do_wp_page() (no fs_dax event).  A huge PMD of a
  file VMA is not copied: copy_huge_pmd() "Skip if can be re-fill on
  fault" ("thp: skip file huge pmd on copy_huge_pmd()", Kirill Shutemov's
  file-THP series (in v4.8; commit id not confirmed)).
* The file's DAX entries are the file's: both processes share them.
* The file's address_space (i_mmap) holds the child's VMAs too
  (dup_mmap() -> vma_interval_tree_insert_after()), so every file-wide
  rmap walk reaches both processes: unmap_mapping_pages() of a zero entry
  a write or a PTE-order grab replaces (fs/dax.c dax_insert_entry(),
  grab_mapping_entry()), write(2)'s invalidation, and the writeback's
  write-protection (dax_entry_mkclean()/pfn_mkclean_range()).  A fault in
  one process therefore zaps the other's zero page or huge zero PMD
  (:func:`file_mms`).
* The child ends at an ``exit`` access (or with the case); its page tables
  go with it, nothing of the parent changes.

The generator still makes no write(2) while a child lives (it did not when
the model walked the parent alone; kept so that saved seeds replay).
"""

from typing import Any

from .case import Access, Mapping
from .state import PMD_SHIFT, AddressSpace, HugePmd, PteTable, Vma


class Child:
    """The child's address space and mapping geometry."""

    def __init__(self, mm: AddressSpace, geom: dict[str, tuple[int, int]], parent: AddressSpace) -> None:
        self.mm = mm
        self.geom = geom
        self.parent = parent


def file_mms(sim: Any) -> list[AddressSpace]:
    """The address spaces mapping the case's file, for the file-wide rmap
    walks (unmap_mapping_pages(), the writeback's mkclean): the process's,
    and while a child lives both the parent's and the child's."""
    c = sim.child
    return [sim.mm] if c is None else [c.parent, c.mm]


def _range_mask(lo: int, hi: int, key: int) -> int:
    """Bits of block *key* that [lo, hi) covers."""
    base = key << PMD_SHIFT
    a = max(lo, base)
    b = min(hi, base + (1 << PMD_SHIFT))
    if a >= b:
        return 0
    first, last = (a - base) >> 12, ((b - base) >> 12) - 1
    return ((1 << (last - first + 1)) - 1) << first


def fork(sim: Any) -> None:
    """dup_mmap(): the child's VMAs and the page tables it inherits."""
    parent = sim.mm
    child = AddressSpace()
    for v in parent.vmas:
        # anon_vma_fork(): the child's VMA gets an anon_vma where the parent's has one
        child.add(Vma(v.start, v.end, v.pgoff, v.shared, v.sync, v.writable, v.nohugepage, v.mapping, v.anon_vma))
        if v.shared or v.anon_vma is None:
            continue  # vma_needs_copy(): no anon_vma, no PFNMAP/MIXEDMAP
        for key in parent.pmd_keys(v.start >> PMD_SHIFT, (v.end - 1) >> PMD_SHIFT):
            slot = parent.pmds[key]
            if isinstance(slot, HugePmd):
                continue  # copy_huge_pmd(): a file VMA's PMD refaults
            mask = _range_mask(v.start, v.end, key)
            dst = child.pmds.get(key)
            if not isinstance(dst, PteTable):
                dst = child.pmds[key] = PteTable()
            # COW'd pages are write-protected on both sides
            slot.writable &= ~(slot.anon & mask)
            dst.present |= slot.present & mask
            dst.writable |= slot.writable & mask
            dst.anon |= slot.anon & mask
            dst.zero |= slot.zero & mask
    # a VMA outside the case with an anon_vma (process.fork_tables) gets its
    # range copied: the child has a table in its blocks wherever the parent
    # has one.  The other tables of the process (process.page_tables, or the
    # case's faults next to a neighbour that never wrote) stay the parent's:
    # copy_page_range() skips a VMA without an anon_vma (Linux kernel commit
    # d992895ba2b2 ("[PATCH] Lazy page table copies in fork()") (in
    # v2.6.14)), and one only ever read has none -- a read fault maps the
    # zero page without anon_vma_prepare() (do_anonymous_page(), Linux
    # kernel commit a13ea5b75964 ("mm: reinstate ZERO_PAGE") (in v2.6.32)),
    # as the executor's guards are.
    for key in sim.fork_tables:
        if isinstance(parent.pmds.get(key), PteTable):
            child.pmds.setdefault(key, PteTable())
    sim.child = Child(child, dict(sim.geom), parent)


def exit_child(sim: Any) -> None:
    sim.child = None


def child_access(sim: Any, i: int, a: Access, m: Mapping, flags: int, touch: Any) -> Any:
    """A read or write in the child: the parent's state swapped for the
    child's around the same slow path as a moved mapping's access."""
    from .engine import AccessResult

    c = sim.child
    if c is None:
        r = AccessResult(i, a.op, a.mapping, None)
        r.set_error(None, "no-child")
        return r
    saved = sim.mm, sim.geom
    sim.mm, sim.geom = c.mm, c.geom
    try:
        g = c.geom.get(m.id)
        cur = m if g is None else Mapping(m.id, g[0], g[1], m.offset, m.shared, m.sync, m.nohugepage, m.writable)
        r = touch(sim, i, a, cur, flags)
    finally:
        sim.mm, sim.geom = saved
    if r.outcome == "sigbus":
        sim.child = None  # the child died of it
    return r
