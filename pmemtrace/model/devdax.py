"""device-dax faults: drivers/dax/device.c (kernel-dax-behavior.md section 8).

device-dax emits no fs_dax tracepoints; what is observable is the VM_FAULT
result (SIGBUS or a mapping), the fault handler and insert-function probe
hits.  Faults are tried PUD -> PMD -> PTE (mm/memory.c __handle_mm_fault()),
each level only when its slot is empty and huge faults are allowed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .fsdax import FALLBACK, FF_VMA_LOCK, NOPAGE, RETRY, SIGBUS, Fault
from .state import PAGE_SHIFT, PAGE_SIZE, PG_PMD_COLOUR, PMD_SHIFT, PMD_SIZE, PUD_SHIFT, PUD_SIZE, HugePmd, PteTable

if TYPE_CHECKING:  # for annotations only: engine imports this module
    from .case import Device
    from .engine import Sim
    from .state import Vma


def check_vma(device: Device, mapping_shared: bool, start: int, end: int) -> str | None:
    """drivers/dax/device.c check_vma() at mmap time: the reason code, or None."""
    if device.driver == "fsdev_dax":
        # fsdev_dax's file_operations have no ->mmap, so do_mmap() fails with
        # -ENODEV before any check_vma(): Linux kernel commit d5406bd458b0
        # ("dax: add fsdev.c driver for fs-dax on character dax") (in v7.1)
        return "devdax-fsdev-no-mmap"
    if not mapping_shared:
        return "devdax-private"
    mask = device.align - 1
    if start & mask or end & mask:
        return "devdax-vma-unaligned"
    return None


def dax_pgoff_to_phys(device: Device, pgoff: int, size: int) -> int:
    """drivers/dax/device.c dax_pgoff_to_phys(): physical address or -1."""
    for r in device.ranges:
        npages = r.length >> PAGE_SHIFT
        if pgoff < r.pgoff or pgoff > r.pgoff + npages - 1:
            continue
        phys = ((pgoff - r.pgoff) << PAGE_SHIFT) + r.start
        if phys + size - 1 <= r.start + r.length - 1:
            return phys
        break
    return -1


def _dev_dax_fault(sim: Sim, f: Fault, vma: Vma, addr: int, write: bool, size: int) -> int:
    """__dev_dax_{pte,pmd,pud}_fault() for fault size *size*."""
    dev = sim.device
    prof = sim.profile
    f.call("dev_dax_huge_fault")
    align = dev.align
    if size == PAGE_SIZE:
        if align > PAGE_SIZE:
            # the SIGBUS rule wins over the gate that sent us here
            f.reason = "devdax-align-larger"
            return SIGBUS
    else:
        if size == PMD_SIZE and align > PMD_SIZE:
            f.reason = "devdax-align-larger"
            return SIGBUS
        if size < align:
            f.reason = "devdax-align-larger"
            return SIGBUS
        if size > align:
            f.reason = f.reason or "devdax-align-smaller"
            return FALLBACK
    base = addr & ~(size - 1)
    if base < vma.start or base + size > vma.end:
        # unreachable while check_vma() holds (VMA aligned to align); kept
        # because the kernel tests it
        f.reason = "devdax-vma-unaligned"
        return SIGBUS
    pgoff = vma.pgoff_of(base)
    if dax_pgoff_to_phys(dev, pgoff, size) == -1:
        f.reason = "devdax-beyond-device"
        return SIGBUS
    mm = sim.mm
    if size == PUD_SIZE:
        f.call(prof.pud_insert_function)
        mm.puds[addr >> PUD_SHIFT] = HugePmd(True, False, "pud")
        f.outcome, f.level = "pud", "pud"
    elif size == PMD_SIZE:
        f.call(prof.pmd_insert_function)
        mm.pmds[addr >> PMD_SHIFT] = HugePmd(True, False)
        f.outcome, f.level = "pmd", "pmd"
    else:
        f.call(prof.pte_insert_function[1 if write else 0])
        key = addr >> PMD_SHIFT
        t = mm.pmds.get(key)
        if not isinstance(t, PteTable):
            t = PteTable()
            mm.pmds[key] = t
        bit = 1 << ((addr >> PAGE_SHIFT) & PG_PMD_COLOUR)
        # no ->pfn_mkwrite/->page_mkwrite: a shared writable VMA maps writable
        t.present |= bit
        if vma.writable:
            t.writable |= bit
        f.outcome, f.level = "pte", "pte"
    return NOPAGE


def handle_mm_fault(sim: Sim, vma: Vma, addr: int, write: bool, flags: int, via_gup: bool = False) -> Fault:
    f = Fault()
    prof = sim.profile
    if prof.vma_lock_faults and not via_gup:
        # dax_vm_ops has no ->map_pages: a PTE-level fault under the VMA lock
        # returns VM_FAULT_RETRY and is redone under mmap_lock.
        ret = _fault_once(sim, f, vma, addr, write, flags | FF_VMA_LOCK, retry_pte=True)
        if ret != RETRY:
            f.result = ret
            return _finish(f)
    f.result = _fault_once(sim, f, vma, addr, write, flags, retry_pte=False)
    return _finish(f)


def _finish(f: Fault) -> Fault:
    if f.result & SIGBUS:
        f.outcome = "sigbus"
    return f


def _fault_once(sim: Sim, f: Fault, vma: Vma, addr: int, write: bool, flags: int, retry_pte: bool) -> int:
    mm = sim.mm
    huge_ok = not vma.nohugepage and not sim.thp_disable
    pud_key = addr >> PUD_SHIFT
    if pud_key in mm.puds:
        f.outcome, f.level = "none", "pud"
        return 0
    pmd_lo = pud_key << (PUD_SHIFT - PMD_SHIFT)
    pud_none = not any(k in mm.pmds for k in range(pmd_lo, pmd_lo + 512)) if len(mm.pmds) else True
    if pud_none and huge_ok:
        ret = _dev_dax_fault(sim, f, vma, addr, write, PUD_SIZE)
        if ret != FALLBACK:
            return ret
    slot = mm.pmds.get(addr >> PMD_SHIFT)
    if isinstance(slot, HugePmd):
        f.outcome, f.level = "none", "pmd"
        return 0
    if slot is None:
        if huge_ok:
            ret = _dev_dax_fault(sim, f, vma, addr, write, PMD_SIZE)
            if ret != FALLBACK:
                return ret
        else:
            f.reason = f.reason or ("nohugepage" if vma.nohugepage else "thp-disabled")
    else:
        bit = 1 << ((addr >> PAGE_SHIFT) & PG_PMD_COLOUR)
        if slot.present & bit:
            f.outcome, f.level = "none", "pte"
            return 0
        f.reason = f.reason or "pte-table-present"
    if retry_pte:
        return RETRY
    ret = _dev_dax_fault(sim, f, vma, addr, write, PAGE_SIZE)
    return ret
