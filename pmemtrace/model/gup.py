"""get_user_pages on DAX mappings (DAX-GUP): mm/gup.c.

Direct I/O whose user buffer is a DAX mapping pins the buffer's pages with
get_user_pages_fast()/pin_user_pages_fast(): the lockless fast path takes
what is already mapped with the right permission, the slow path
(__get_user_pages) faults in the rest one page at a time (faultin_page()) and
looks each page up again (follow_page_mask()).  On kernels whose DAX
mappings carry the devmap bit (<= 6.14), every page grabbed calls
get_dev_pagemap() (gup_pte_range()/__gup_device_huge() on the fast path,
follow_devmap_pmd()/follow_page_pte() on the slow path).  FOLL_LONGTERM pins
of fsdax memory are refused (check_vma_flags(): -EOPNOTSUPP; <= 5.10 only
after faulting the pages in, profiles.py).
kernel-dax-behavior.md section 10.
"""

from typing import Any, Callable, Optional

from ..events import FAULT_FLAG
from .state import PAGE_SHIFT, PAGE_SIZE, PG_PMD_COLOUR, PMD_SHIFT, PUD_SHIFT, AddressSpace, HugePmd, PteTable, Vma

EOPNOTSUPP = 95
EFAULT = 14
# faultin_page(): FOLL_UNLOCKABLE -> ALLOW_RETRY|KILLABLE; FOLL_WRITE -> WRITE;
# no FAULT_FLAG_USER and no VMA lock (GUP holds mmap_lock).
GUP_FAULT_FLAGS = FAULT_FLAG["ALLOW_RETRY"] | FAULT_FLAG["KILLABLE"]


def _present(sim: Any, addr: int, write: bool) -> bool:
    mm: AddressSpace = sim.mm
    pud = mm.puds.get(addr >> PUD_SHIFT)
    if pud is not None:
        return not write or pud.writable
    slot = mm.pmds.get(addr >> PMD_SHIFT)
    if slot is None:
        return False
    if isinstance(slot, HugePmd):
        # follow_devmap_pmd(): FOLL_WRITE && !pmd_write(*pmd) -> NULL (fault)
        if slot.zero:
            # the huge zero page is never pinned for write; for read, GUP
            # takes it (follow_trans_huge_pmd) without get_dev_pagemap()
            return not write
        return not write or slot.writable
    bit = 1 << ((addr >> PAGE_SHIFT) & PG_PMD_COLOUR)
    if not slot.present & bit:
        return False
    return not write or bool(slot.writable & bit)


def _is_devmap(sim: Any, addr: int) -> bool:
    """Does the page at *addr* carry pXX_devmap (so GUP calls get_dev_pagemap)?"""
    mm: AddressSpace = sim.mm
    if addr >> PUD_SHIFT in mm.puds:
        return True
    slot = mm.pmds.get(addr >> PMD_SHIFT)
    if isinstance(slot, HugePmd):
        return not slot.zero
    if isinstance(slot, PteTable):
        bit = 1 << ((addr >> PAGE_SHIFT) & PG_PMD_COLOUR)
        return not (slot.zero & bit or slot.anon & bit)
    return False


def _huge_span(sim: Any, addr: int, write: bool) -> Optional[tuple[int, bool]]:
    """When *addr* lies in a huge (PUD or PMD) mapping GUP can take as is:
    (end of that mapping, whether it carries devmap); else None.  Every 4 KiB
    page of a huge mapping looks the same to _present() and _is_devmap(),
    so GUP walks it in one step: cost grows with the 2 MiB (or 1 GiB) ranges
    of the length, not with its pages."""
    mm: AddressSpace = sim.mm
    pud = mm.puds.get(addr >> PUD_SHIFT)
    if pud is not None:
        if write and not pud.writable:
            return None
        return ((addr >> PUD_SHIFT) + 1) << PUD_SHIFT, True
    slot = mm.pmds.get(addr >> PMD_SHIFT)
    if not isinstance(slot, HugePmd):
        return None
    if write and (slot.zero or not slot.writable):
        return None
    return ((addr >> PMD_SHIFT) + 1) << PMD_SHIFT, not slot.zero


def gup(
    sim: Any,
    vma_lookup: Callable[[int], Optional[Vma]],
    fault_fn: Callable[..., Any],
    access: Any,
    start: int,
    result: Any,
) -> None:
    """Pin [start, start+length).  Fills *result* (an AccessResult) with the
    faults taken, the pages pinned and the probe hits; returns nothing."""
    prof = sim.profile
    length = access.length
    write = access.write
    npages = (length + PAGE_SIZE - 1) >> PAGE_SHIFT
    first = start & ~(PAGE_SIZE - 1)
    calls: dict[str, int] = result.calls
    gdp = "get_dev_pagemap"

    def hit(fn: str, n: int = 1) -> None:
        calls[fn] = calls.get(fn, 0) + n

    vma = vma_lookup(first)
    if vma is None:
        result.set_error(EFAULT, "not-mapped")
        return
    is_fsdax = sim.device.mode == "fsdax"
    refuse_after_pin = False
    if access.longterm and is_fsdax and prof.longterm_fsdax_refused:
        if prof.longterm_fsdax_refused_after_pin:
            # <= 5.10: __gup_longterm_locked() faults in and grabs the pages
            # first, then check_dax_vmas() puts them back -> -EOPNOTSUPP
            refuse_after_pin = True
        else:
            # Fast path: devmap + FOLL_LONGTERM (<= 6.14) or
            # !folio_is_longterm_pinnable() (6.15+) -> gives up before
            # get_dev_pagemap(); slow path: check_vma_flags() -> -EOPNOTSUPP,
            # tested before VM_WRITE (so a read-only mapping gets it too):
            # Linux kernel commit 52650c8b466b ("mm/gup: remove the vma
            # allocation from gup_longterm_locked()") (in v5.11)
            fast = 0
            if prof.longterm_pin_fast:
                # pin_user_pages_fast() first takes what is mapped with the
                # permission asked: the anonymous (COW) pages of a private
                # mapping pin, a DAX page stops it
                hit("gup_fast")
                fast = _anon_prefix(sim, first, npages, write)
            if fast == npages:
                result.pinned = result.pinned_fast = fast
                return
            hit("check_vma_flags")
            if fast:
                # the slow path's -EOPNOTSUPP after a partial fast pin is a
                # short count (gup_fast_fallback() returns nr_pinned)
                _io_uring_buffer(prof, result, fast, npages)
            else:
                result.set_error(EOPNOTSUPP, "longterm-pin-fsdax")
            return
    if write and not vma.writable and not access.populate:
        # check_vma_flags(): FOLL_WRITE on a VMA without VM_WRITE (and no
        # FOLL_FORCE) -> -EFAULT (mm/gup.c, v6.1..7.x); the fast path finds
        # no writable PTE first.  fstests generic/462: O_DIRECT read into a
        # read-only DAX mapping fails with EFAULT.
        hit("check_vma_flags")
        result.set_error(EFAULT, "write-readonly")
        return
    i = 0
    pinned_fast = 0
    populate = access.populate
    # populate: mm_populate() -> populate_vma_page_range() -> __get_user_pages()
    # without FOLL_GET/FOLL_PIN: faults pages in, grabs none, so no
    # get_dev_pagemap() (follow_devmap_pmd() returns -EEXIST first, v6.1)
    access_fast = False if populate else access.fast
    if access_fast:
        hit("gup_fast")
        while i < npages:
            addr = first + (i << PAGE_SHIFT)
            span = _huge_span(sim, addr, write)
            if span is not None:
                devmap = prof.gup_uses_get_dev_pagemap and span[1]
                if access.longterm and devmap:
                    break  # gup_fast: pXX_devmap with FOLL_LONGTERM -> slow path
                n = min(npages - i, (span[0] - addr) >> PAGE_SHIFT)
                if devmap:
                    hit(gdp, n)
                i += n
                continue
            if not _present(sim, addr, write):
                break
            if access.longterm and prof.gup_uses_get_dev_pagemap and _is_devmap(sim, addr):
                # gup_fast: pXX_devmap with FOLL_LONGTERM -> slow path
                break
            if prof.gup_uses_get_dev_pagemap and _is_devmap(sim, addr):
                hit(gdp)
            i += 1
        pinned_fast = i
    if i < npages:
        hit("__get_user_pages")
    flags = GUP_FAULT_FLAGS | (FAULT_FLAG["WRITE"] if write else 0)
    if refuse_after_pin:
        # 5.10 __gup_longterm_locked() calls __get_user_pages_locked() with no
        # `locked`, so faultin_page() adds neither ALLOW_RETRY nor KILLABLE
        # (lab, 5.10.0-46: io_uring buffer registration faults "shared WRITE")
        flags &= ~GUP_FAULT_FLAGS
    while i < npages:
        addr = first + (i << PAGE_SHIFT)
        v = vma_lookup(addr)
        if v is None:
            break
        if not _present(sim, addr, write):
            f = fault_fn(v, addr, write, flags)
            result.faults.append((addr, f))
            if f.result & 0x2:  # VM_FAULT_SIGBUS -> -EFAULT
                if i == 0:
                    result.set_error(EFAULT, f.reason)
                elif not populate and not access.longterm:
                    for _ in range(_caller_retries(access, result, i, f)):
                        result.faults.append((addr, fault_fn(v, addr, write, flags)))
                break
            # the fault left nothing we can grab (e.g. a private COW)
            if not _present(sim, addr, write) and not _present(sim, addr, False):
                break
        span = _huge_span(sim, addr, write)
        if span is not None:
            # this page and the rest of the huge mapping in this VMA
            n = min(npages - i, (min(span[0], v.end) - addr) >> PAGE_SHIFT)
            if not populate and prof.gup_uses_get_dev_pagemap and span[1]:
                hit(gdp, n)
            i += n
            continue
        if not populate and prof.gup_uses_get_dev_pagemap and _is_devmap(sim, addr):
            hit(gdp)
        i += 1
    result.pinned = 0 if populate else i
    result.pinned_fast = pinned_fast
    if refuse_after_pin and i:
        hit("__gup_longterm_locked")
        result.pinned = result.pinned_fast = 0
        result.set_error(EOPNOTSUPP, "longterm-pin-fsdax")
    elif access.longterm and result.outcome != "error":
        _io_uring_buffer(prof, result, i, npages)


def _anon_prefix(sim: Any, first: int, npages: int, write: bool) -> int:
    """How many pages from *first* on are anonymous (COW copies) and mapped
    with the permission asked: what GUP's fast path pins long-term in an
    fsdax mapping before it meets a DAX page."""
    i = 0
    pmds = sim.mm.pmds
    while i < npages:
        addr = first + (i << PAGE_SHIFT)
        slot = pmds.get(addr >> PMD_SHIFT)
        if not isinstance(slot, PteTable):
            break  # none, or a huge DAX (or zero) PMD
        bit = 1 << ((addr >> PAGE_SHIFT) & PG_PMD_COLOUR)
        if not (slot.present & slot.anon & bit) or (write and not slot.writable & bit):
            break
        i += 1
    return i


#: process_vm_rw_single_vec() pins PVM_MAX_PP_ARRAY_COUNT pages a call
#: (PAGE_SIZE / sizeof(struct page *): 512 on x86-64)
PVM_PAGES = 512
#: faults of the page that stops an O_DIRECT pin after others were pinned,
#: in all (lab, ext4 partner: 6.12.95 inside a bio, 5.10.0-46 on a bio's
#: first page; 7.3.4 faulted one on a bio's first page twice, a known limit)
ODIRECT_STOP_FAULTS = 4


def _caller_retries(access: Any, result: Any, i: int, stop: Any) -> int:
    """GUP stopped at page *i* > 0 on fault *stop* that failed (SIGBUS):
    what its caller does next; returns how many times it faults that page
    again.  process_vm_readv/writev (``fast=False``) pins 512
    pages a call and calls again at the page that stopped it, which faults
    once more and ends the copy short, no error (mm/process_vm_access.c
    process_vm_rw_single_vec(): "if (pinned_pages <= 0) rc = -EFAULT"; the
    bytes copied are returned); a stop on a call's first page is that
    call's own.  O_DIRECT (``fast``): bio_iov_iter_get_pages() asks again
    while the bio has room (its "return bio->bi_vcnt ? 0 : ret"), the next
    bio of iomap_dio_bio_iter() asks once more, and after it returned the
    bytes sent the next iomap iteration asks a last time, which fails: the
    read or write fails with EFAULT, the bios already sent notwithstanding
    (iomap_dio_rw() keeps a partial transfer only with IOMAP_DIO_PARTIAL,
    which ext4 does not pass): four faults of that page in all (lab, 6.12;
    5.10 too for a stop on a bio's first page, which 7.3 faults twice:
    docs/model-validation.md, known limits)."""
    if access.fast:
        result.set_error(EFAULT, stop.reason)
        return ODIRECT_STOP_FAULTS - 1
    return 1 if i % PVM_PAGES else 0


def _io_uring_buffer(prof: Any, result: Any, pinned: int, npages: int) -> None:
    """What io_uring's buffer registration (io_sqe_buffer_register(),
    io_pin_pages()) makes of its FOLL_LONGTERM pin: a case's ``longterm``
    GUP is that registration, the one long-term pin an unprivileged process
    can make.  A partial pin is -EFAULT, its pages put back ("pret < 0 ?
    pret : -EFAULT"); a whole pin of a file-backed VMA other than
    hugetlbfs/shmem -- fsdax and device-dax both -- was -EOPNOTSUPP until
    Linux kernel commit 34ed8d0dcd69 ("io_uring: rsrc: delegate VMA
    file-backed check to GUP") (in v6.5) left the check to GUP."""
    if pinned < npages:
        result.pinned = result.pinned_fast = 0
        result.set_error(EFAULT, "longterm-pin-partial")
    elif prof.longterm_pin_refuses_file_vmas:
        result.pinned = result.pinned_fast = 0
        result.set_error(EOPNOTSUPP, "longterm-pin-file-vma")
