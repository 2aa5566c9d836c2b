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
  correctly").
* Where the VMA is copied, 4 KiB PTEs are copied (file and anonymous); a
  writable anonymous (COW'd) PTE is write-protected in both processes
  (copy_present_pte(): is_cow_mapping() && pte_write()), so the next write
  on either side goes to do_wp_page() (no fs_dax event).  A huge PMD of a
  file VMA is not copied: copy_huge_pmd() "Skip if can be re-fill on
  fault" ("thp: skip file huge pmd on copy_huge_pmd()", Kirill Shutemov's
  file-THP series (in v4.8; commit id not confirmed)).
* The file's DAX entries are the file's: both processes share them.
* The child ends at an ``exit`` access (or with the case); its page tables
  go with it, nothing of the parent changes.

The generator does not write(2) the file while a child lives (the zap of
invalidate_inode_pages2_range() would reach the child's mappings too, which
the model does not walk).
"""

from typing import Any

from .case import Access, Mapping
from .state import PMD_SHIFT, AddressSpace, HugePmd, PteTable, Vma


class Child:
    """The child's address space and mapping geometry."""

    def __init__(self, mm: AddressSpace, geom: dict[str, tuple[int, int]]) -> None:
        self.mm = mm
        self.geom = geom


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
    anon_ids = sim.anon_ids
    for v in parent.vmas:
        child.add(Vma(v.start, v.end, v.pgoff, v.shared, v.sync, v.writable, v.nohugepage, v.mapping))
        if v.shared or v.mapping not in anon_ids:
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
    # the blocks other (anonymous) mappings of the process have pages in:
    # their VMAs have an anon_vma, so the child has tables there too
    for key in sim.external_tables:
        child.pmds.setdefault(key, PteTable())
    sim.child = Child(child, dict(sim.geom))


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
