"""Kernel behaviour profiles: what differs between kernel releases, as data.

The reference model predicts kernels it is not running on, so (unlike the
live backends, which detect features) it selects a profile by release.  Each
entry carries the kernel change that introduced the behaviour.  A release
string selects the nearest profile at or below it.

Sources: ../shared/reference/kernel-dax-behavior.md (sections 2, 4.4, 4.5,
5.2, 9, 10) and the lab (docs/lab-findings.md), which overrides it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import UsageError


@dataclass(frozen=True)
class Profile:
    name: str
    version: tuple[int, int]
    #: function a DAX PMD fault calls to install the PMD (probe point)
    pmd_insert_function: str
    #: same for device-dax PUD faults
    pud_insert_function: str
    #: function a DAX PTE fault calls (read, write)
    pte_insert_function: tuple[str, str]
    #: pfn_t and the pXX_devmap bits exist
    has_pfn_t: bool
    #: DAX PTEs/PMDs carry the devmap bit, so GUP calls get_dev_pagemap()
    #: for every 4 KiB page it grabs
    gup_uses_get_dev_pagemap: bool
    #: dax_iomap_direct_access() refuses PMDs whose pfn lacks PFN_DEV|PFN_MAP
    pmd_needs_devmap: bool
    #: the huge zero page of a hole read is installed through the PMD insert
    #: function (True) or by set_pmd_at() inside dax_pmd_load_hole (False)
    zero_pmd_via_insert: bool
    #: dax_pmd_load_hole falls back when the PMD is no longer none
    load_hole_fallback_if_pmd_present: bool
    #: user faults are first tried under the per-VMA lock (FAULT_FLAG_VMA_LOCK
    #: in the event flags); ->huge_fault may run under it
    vma_lock_faults: bool
    #: field name of the zero page in dax_pmd_load_hole events
    zero_field: str
    #: fs_dax tracepoints that exist (emitted or merely defined)
    tracepoints: tuple[str, ...]
    #: get_dev_pagemap(pfn, pgmap) (2 args) or get_dev_pagemap(pfn) (1 arg)
    get_dev_pagemap_args: int
    #: FOLL_LONGTERM pins of fsdax pages are refused (check_vma_flags)
    longterm_fsdax_refused: bool = True
    #: wp_huge_pmd() calls ->huge_fault() for a write to a read-only PMD of a
    #: MAP_PRIVATE mapping too (6.1); later kernels call it for shared
    #: mappings only and go straight to split + PTE COW
    wp_huge_pmd_private_huge_fault: bool = False
    #: x86 user faults carry FAULT_FLAG_INTERRUPTIBLE (0x254/0x255 instead
    #: of 0x54/0x55)
    user_fault_interruptible: bool = True
    #: handle_pte_fault() sets FAULT_FLAG_ORIG_PTE_VALID when a page table
    #: exists (the 0x800 in PTE-path event flags)
    orig_pte_valid_flag: bool = True
    #: dax_iomap_pmd_fault() tests "PMD index at/after EOF" (SIGBUS) only
    #: after the colour/COW/VMA checks, which fall back first
    pmd_sigbus_after_vma_checks: bool = False
    #: FOLL_LONGTERM pins of fsdax are refused only after the pages were
    #: faulted in and grabbed (__gup_longterm_locked() -> check_dax_vmas());
    #: later kernels refuse in check_vma_flags() before any fault
    longterm_fsdax_refused_after_pin: bool = False
    #: dax_pte_fault_done's result includes VM_FAULT_MAJOR of a fault that
    #: allocated blocks (before 5.15 the event is emitted before "| major")
    pte_done_traces_major: bool = True
    #: MADV_DONTNEED over a whole 2 MiB block of a VMA frees the block's then
    #: empty PTE table (CONFIG_PT_RECLAIM, default y on x86-64), so the next
    #: fault there finds the PMD none and tries a huge fault again
    dontneed_frees_pte_tables: bool = False
    #: fsync's dax_writeback_one() write-protects every page of the entry it
    #: writes back in every shared mapping (pfn_mkclean_range()); before,
    #: dax_entry_mkclean() protected only the entry's first page
    mkclean_whole_entry: bool = True
    #: dax_insert_entry() tags the entry of every fault that is not
    #: synchronous dirty, reads and zero-page loads included ("dirty =
    #: !dax_fault_is_synchronous()"); elsewhere only write faults
    read_faults_dirty_entries: bool = False
    #: an mremap that only moves (MREMAP_FIXED, old length = new length) may
    #: span several VMAs (and gaps after the first); each moves on its own
    mremap_moves_multiple_vmas: bool = False
    #: a FOLL_LONGTERM pin (io_uring buffer registration) of a file-backed
    #: VMA that is neither hugetlbfs nor shmem is refused with -EOPNOTSUPP
    #: after the pages were pinned (io_uring's own VMA check, until v6.5)
    longterm_pin_refuses_file_vmas: bool = True
    #: io_uring's buffer registration pins with pin_user_pages_fast(): the
    #: fast path takes a private mapping's anonymous pages before the slow
    #: path's check_vma_flags() refuses fsdax (earlier: pin_user_pages(),
    #: the slow path only)
    longterm_pin_fast: bool = False
    #: the lab kernel this profile was checked against (docs/lab-findings.md),
    #: or None when it comes from reading kernel source and patches only
    verified_on: str | None = None
    #: what the selection of this profile for a release should warn about
    #: (set per release by select_profile(): backports, newer than known)
    release_note: str | None = None
    citations: dict[str, str] = field(default_factory=dict)

    @property
    def basis(self) -> str:
        """``"lab"`` if verified on a lab kernel, else ``"source"``."""
        return "lab" if self.verified_on else "source"

    def verification(self) -> dict[str, str | None]:
        """The basis of this profile, as explain's JSON reports it."""
        return {"basis": self.basis, "verified_on": self.verified_on, "note": self.release_note}

    def verification_text(self) -> str:
        """One line for text answers."""
        if self.verified_on:
            text = f"verified in the lab on {self.verified_on}"
        else:
            text = "from kernel source reading only (not verified in the lab)"
        if self.release_note:
            text += f"; {self.release_note}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pmd_insert_function": self.pmd_insert_function,
            "pud_insert_function": self.pud_insert_function,
            "pte_insert_function": list(self.pte_insert_function),
            "has_pfn_t": self.has_pfn_t,
            "gup_uses_get_dev_pagemap": self.gup_uses_get_dev_pagemap,
            "pmd_needs_devmap": self.pmd_needs_devmap,
            "zero_pmd_via_insert": self.zero_pmd_via_insert,
            "vma_lock_faults": self.vma_lock_faults,
            "tracepoints": list(self.tracepoints),
            "get_dev_pagemap_args": self.get_dev_pagemap_args,
            "verification": self.verification(),
        }


_TP_COMMON = (
    "dax_pmd_fault",
    "dax_pmd_fault_done",
    "dax_pmd_load_hole",
    "dax_pmd_load_hole_fallback",
    "dax_pte_fault",
    "dax_pte_fault_done",
    "dax_load_hole",
    "dax_insert_pfn_mkwrite_no_entry",
    "dax_insert_pfn_mkwrite",
    "dax_writeback_range",
    "dax_writeback_range_done",
    "dax_writeback_one",
)
# Defined but never emitted since Linux kernel commit c2436190e492 ("fsdax:
# factor out a dax_fault_actor() helper") (in v5.15); deleted by Linux kernel
# commit a4a45a9a72f3 ("fsdax: Remove unused trace events for dax insert
# mapping") (in v6.16).
_TP_DEAD = ("dax_pmd_insert_mapping", "dax_insert_mapping")

P_6_1 = Profile(
    name="6.1",
    version=(6, 1),
    # 6.1: vmf_insert_pfn_pmd() is a static inline wrapper around
    # vmf_insert_pfn_pmd_prot() (include/linux/huge_mm.h), so the probe point is
    # the _prot function (lab-recipe.md, probe points).
    pmd_insert_function="vmf_insert_pfn_pmd_prot",
    pud_insert_function="vmf_insert_pfn_pud_prot",
    pte_insert_function=("vmf_insert_mixed", "vmf_insert_mixed_mkwrite"),
    has_pfn_t=True,
    gup_uses_get_dev_pagemap=True,
    pmd_needs_devmap=True,
    zero_pmd_via_insert=False,
    load_hole_fallback_if_pmd_present=True,
    vma_lock_faults=False,
    zero_field="zero_page",
    tracepoints=_TP_COMMON + _TP_DEAD,
    get_dev_pagemap_args=2,
    # Lab, 6.1.0-50-amd64: a write to a read-only private PMD logs
    # dax_pmd_fault WRITE ... FALLBACK before the PTE COW; 6.12.95 and 7.2.13
    # log no PMD event there (mm/memory.c wp_huge_pmd() checks VM_SHARED).
    wp_huge_pmd_private_huge_fault=True,
    # Lab, 6.1.0-50-amd64 (lab fuzz seed 9, cases 240 and 253): a MAP_SYNC
    # fault's fsync walks the file after only reads and writes back a huge
    # zero page entry a read loaded.  "fsdax: replace mmap entry in case of
    # CoW" (in v5.19; mainline id not confirmed here) computed "dirty =
    # !dax_fault_is_synchronous(iter, vma)" in dax_insert_entry(), so every
    # fault that is not synchronous tags its entry dirty.
    read_faults_dirty_entries=True,
    verified_on="6.1.0-50-amd64",
    citations={
        "pmd_insert_function": "mm/huge_memory.c vmf_insert_pfn_pmd_prot() (v6.1)",
        "gup_uses_get_dev_pagemap": "mm/gup.c follow_devmap_pmd(), gup_pte_range(), __gup_device_huge() (v6.1)",
        "pmd_needs_devmap": "fs/dax.c dax_iomap_direct_access(): 'For larger pages we need devmap' (v6.1)",
        "zero_pmd_via_insert": "fs/dax.c dax_pmd_load_hole() set_pmd_at() (v6.1)",
        "read_faults_dirty_entries": '"fsdax: replace mmap entry in case of CoW" (in v5.19; id not confirmed); lab 6.1.0-50',
    },
)


# --------------------------------------------------------------------------
# Before 6.1: each older profile undoes, newest first, what a later kernel
# added (the commit that added it is cited at the field).

P_5_18 = replace(
    P_6_1,
    name="5.18",
    version=(5, 18),
    # Linux kernel commit f46f2adecdcc ("mm: check against orig_pte for
    # finish_fault()") (in v5.19) added FAULT_FLAG_ORIG_PTE_VALID (0x800),
    # which handle_pte_fault() sets when a page table exists.
    orig_pte_valid_flag=False,
    # before "fsdax: replace mmap entry in case of CoW" (v5.19) the callers
    # passed "write && !sync" as dax_insert_entry()'s dirty argument
    read_faults_dirty_entries=False,
    verified_on=None,
    citations=dict(
        P_6_1.citations,
        orig_pte_valid_flag='Linux kernel commit f46f2adecdcc ("mm: check against orig_pte for finish_fault()") (in v5.19)',
    ),
)

P_5_15 = replace(
    P_5_18,
    name="5.15",
    version=(5, 15),
    # Linux kernel commit 06083a0921fd ("dax: fix missing writeprotect the
    # pte entry") (in v5.18) made dax_writeback_one() write-protect all pages
    # of the entry (pfn_mkclean_range()); before, dax_entry_mkclean() looked
    # only at the entry's first page in each shared VMA.
    mkclean_whole_entry=False,
    citations=dict(
        P_5_18.citations,
        mkclean_whole_entry='Linux kernel commit 06083a0921fd ("dax: fix missing writeprotect the pte entry") (in v5.18)',
    ),
)

P_5_11 = replace(
    P_5_15,
    name="5.11",
    version=(5, 11),
    # Linux kernel commit 55f81639a715 ("fsdax: factor out helpers to simplify
    # the dax fault code") (in v5.15) moved the "PMD index at/after EOF ->
    # SIGBUS" test before dax_fault_check_fallback(); until then the colour,
    # COW and VMA-bounds checks ran first and fell back to the PTE path.
    pmd_sigbus_after_vma_checks=True,
    # Same commit pair (c2436190e492, v5.15): until then dax_iomap_pte_fault()
    # emits trace_dax_pte_fault_done(ret) and returns "ret | major", so a
    # write that allocates logs NOPAGE, not MAJOR|NOPAGE (lab, 5.10.0-46).
    pte_done_traces_major=False,
    # Linux kernel commit c2436190e492 ("fsdax: factor out a dax_fault_actor()
    # helper") (in v5.15) stopped emitting dax_pmd_insert_mapping and
    # dax_insert_mapping; before it they fire before every PMD/PTE insert
    # (the model does not compare them: pmemtrace compares the *_done events).
    citations=dict(
        P_5_15.citations,
        pmd_sigbus_after_vma_checks='Linux kernel commit 55f81639a715 ("fsdax: factor out helpers to simplify the dax fault code") (in v5.15)',
        tracepoints='Linux kernel commit c2436190e492 ("fsdax: factor out a dax_fault_actor() helper") (in v5.15): dax_pmd_insert_mapping/dax_insert_mapping emitted before it',
        pte_done_traces_major='Linux kernel commit c2436190e492 ("fsdax: factor out a dax_fault_actor() helper") (in v5.15)',
    ),
)

P_5_10 = replace(
    P_5_11,
    name="5.10",
    version=(5, 10),
    # Linux kernel commit 52650c8b466b ("mm/gup: remove the vma allocation
    # from gup_longterm_locked()") (in v5.11) moved the fsdax FOLL_LONGTERM
    # refusal into check_vma_flags(); in 5.10 __gup_longterm_locked() first
    # faults in and grabs the pages, then check_dax_vmas() puts them back and
    # returns -EOPNOTSUPP.
    longterm_fsdax_refused_after_pin=True,
    verified_on="5.10.0-46-amd64",
    citations=dict(
        P_5_11.citations,
        longterm_fsdax_refused_after_pin='Linux kernel commit 52650c8b466b ("mm/gup: remove the vma allocation from gup_longterm_locked()") (in v5.11)',
    ),
)

P_4_18 = replace(
    P_5_10,
    name="4.18",
    version=(4, 18),
    # Linux kernel commit 9a9731b18c9b ("mm: Add vmf_insert_pfn_xxx_prot() for
    # huge page-table entries") (in v5.7) turned vmf_insert_pfn_pmd/pud() into
    # inline wrappers of the _prot functions; before it they are the real
    # functions.
    pmd_insert_function="vmf_insert_pfn_pmd",
    pud_insert_function="vmf_insert_pfn_pud",
    # Linux kernel commit c270a7eedcf2 ("mm: introduce FAULT_FLAG_INTERRUPTIBLE")
    # (in v5.7): x86 user faults became FAULT_FLAG_DEFAULT|USER = 0x254; before
    # it ALLOW_RETRY|KILLABLE|USER = 0x54.
    user_fault_interruptible=False,
    verified_on=None,
    citations=dict(
        P_5_10.citations,
        pmd_insert_function='Linux kernel commit 9a9731b18c9b ("mm: Add vmf_insert_pfn_xxx_prot() for huge page-table entries") (in v5.7)',
        user_fault_interruptible='Linux kernel commit c270a7eedcf2 ("mm: introduce FAULT_FLAG_INTERRUPTIBLE") (in v5.7)',
    ),
)

# --------------------------------------------------------------------------
# Between 6.1 and 6.12 (source reading only)

P_6_2 = replace(
    P_6_1,
    name="6.2",
    version=(6, 2),
    # Linux kernel commit aea06577a900 ("mm: don't call vm_ops->huge_fault() in
    # wp_huge_pmd()/wp_huge_pud() for private mappings") (in v6.2)
    wp_huge_pmd_private_huge_fault=False,
    # Linux kernel commit 03e54f961bda ("fsdax,xfs: set the shared flag when
    # file extent is shared") (in v6.2): "dirty = write &&
    # !dax_fault_is_synchronous()" again -- only write faults tag entries
    read_faults_dirty_entries=False,
    verified_on=None,
    citations=dict(
        P_6_1.citations,
        read_faults_dirty_entries='Linux kernel commit 03e54f961bda ("fsdax,xfs: set the shared flag when file extent is shared") (in v6.2)',
        wp_huge_pmd_private_huge_fault='Linux kernel commit aea06577a900 ("mm: don\'t call vm_ops->huge_fault() in wp_huge_pmd()/wp_huge_pud() for private mappings") (in v6.2)',
    ),
)

P_6_4 = replace(
    P_6_2,
    name="6.4",
    version=(6, 4),
    # Linux kernel commit 7b806d229ef1 ("mm: remove vmf_insert_pfn_xxx_prot()
    # for huge page-table entries") (in v6.4): vmf_insert_pfn_pmd/pud() are real
    # functions again.  Per-VMA locks (v6.4) cover anonymous VMAs only, and
    # until v6.6 a file VMA's fault under the VMA lock retries under mmap_lock
    # before any DAX code runs: no VMA_LOCK in DAX event flags.
    pmd_insert_function="vmf_insert_pfn_pmd",
    pud_insert_function="vmf_insert_pfn_pud",
    citations=dict(
        P_6_2.citations,
        pmd_insert_function='Linux kernel commit 7b806d229ef1 ("mm: remove vmf_insert_pfn_xxx_prot() for huge page-table entries") (in v6.4)',
    ),
)

P_6_5 = replace(
    P_6_4,
    name="6.5",
    version=(6, 5),
    # Linux kernel commit 34ed8d0dcd69 ("io_uring: rsrc: delegate VMA
    # file-backed check to GUP") (in v6.5): io_pin_pages() no longer refuses
    # file-backed VMAs itself; GUP's check_vma_flags() refuses a long-term
    # pin of fsdax as before, and lets device-dax (no dirty tracking) pin
    longterm_pin_refuses_file_vmas=False,
    citations=dict(
        P_6_4.citations,
        longterm_pin_refuses_file_vmas='Linux kernel commit 34ed8d0dcd69 ("io_uring: rsrc: delegate VMA file-backed check to GUP") (in v6.5)',
    ),
)

P_6_6 = replace(
    P_6_5,
    name="6.6",
    version=(6, 6),
    # Linux kernel commit 40d49a3c9e4a ("mm: allow ->huge_fault() to be called
    # without the mmap_lock held") (in v6.6), with the "Handle most file-backed
    # faults under the VMA lock" series of the same release.
    vma_lock_faults=True,
    citations=dict(
        P_6_5.citations,
        vma_lock_faults='Linux kernel commit 40d49a3c9e4a ("mm: allow ->huge_fault() to be called without the mmap_lock held") (in v6.6)',
    ),
)

P_6_12 = replace(
    P_6_1,
    name="6.12",
    version=(6, 12),
    # vmf_insert_pfn_pmd() is a real function in 6.12: the _prot variants were
    # removed by Linux kernel commit 7b806d229ef1 ("mm: remove
    # vmf_insert_pfn_xxx_prot() for huge page-table entries") (in v6.4); seen
    # in 6.12's kallsyms (lab-recipe.md).
    pmd_insert_function="vmf_insert_pfn_pmd",
    pud_insert_function="vmf_insert_pfn_pud",
    # Faults are first tried under the per-VMA lock (FAULT_FLAG_VMA_LOCK, v6.4)
    # and ->huge_fault() may run under it: Linux kernel commit 40d49a3c9e4a
    # ("mm: allow ->huge_fault() to be called without the mmap_lock held")
    # (in v6.6: in mm-stable on 2023-08-25, before the 6.6 merge window; the
    # same as P_6_6); spec section 1.2 reads the 0x1254/0x1255 flags in 6.12's
    # arch/x86/mm/fault.c.
    vma_lock_faults=True,
    zero_field="zero_folio",
    wp_huge_pmd_private_huge_fault=False,
    # only write faults tag entries dirty again: Linux kernel commit
    # 03e54f961bda (v6.2), as P_6_2 (lab, 6.12: the 6.1 regressions
    # read-faults-dirty-* show no writeback walk here)
    read_faults_dirty_entries=False,
    # io_uring leaves the file-backed check to GUP: Linux kernel commit
    # 34ed8d0dcd69 (v6.5), as P_6_5
    longterm_pin_refuses_file_vmas=False,
    # Linux kernel commit 1943f96b3816 ("io_uring: unify io_pin_pages()")
    # (in v6.10): io_pin_pages() calls pin_user_pages_fast() (lab, 6.12:
    # a long-term pin of a private fsdax mapping's COW pages succeeds, one
    # that runs on into a DAX page is EFAULT)
    longterm_pin_fast=True,
    verified_on="6.12.95+deb12-amd64",
    citations=dict(
        P_6_1.citations,
        longterm_pin_refuses_file_vmas=P_6_5.citations["longterm_pin_refuses_file_vmas"],
        longterm_pin_fast='Linux kernel commit 1943f96b3816 ("io_uring: unify io_pin_pages()") (in v6.10)',
        read_faults_dirty_entries='Linux kernel commit 03e54f961bda ("fsdax,xfs: set the shared flag when file extent is shared") (in v6.2)',
        pmd_insert_function="mm/huge_memory.c vmf_insert_pfn_pmd() (v6.12)",
        vma_lock_faults="arch/x86/mm/fault.c lock_vma_under_rcu() + mm/memory.c create_huge_pmd() (v6.12)",
        zero_field='Linux kernel commit 5691753d73a2 ("mm: convert huge_zero_page to huge_zero_folio") (in v6.10), '
        'whose series ("dax: use huge_zero_folio") renamed the dax_pmd_load_hole field',
    ),
)

P_6_14 = replace(
    P_6_12,
    name="6.14",
    version=(6, 14),
    # zap_pte_range() with details->reclaim_pt (set by MADV_DONTNEED) frees a
    # PTE page whose entries are all none once its whole PMD range is zapped
    # (reclaim_pt_is_enabled(): end - start >= PMD_SIZE); x86-64 selects
    # ARCH_SUPPORTS_PT_RECLAIM and PT_RECLAIM defaults to y.  Seen by the
    # differential live test on 7.2 and 7.3 (an ext4 write after a whole-VMA
    # MADV_DONTNEED took a PMD fault, FALLBACK); 6.12 keeps the table.
    dontneed_frees_pte_tables=True,
    verified_on=None,
    citations=dict(
        P_6_12.citations,
        dontneed_frees_pte_tables='Linux kernel commit 6375e95f381e ("mm: pgtable: reclaim empty PTE page in '
        'madvise(MADV_DONTNEED)") (in v6.14)',
    ),
)

P_6_15 = replace(
    P_6_14,
    name="6.15",
    version=(6, 15),
    # The series "fs/dax: Fix ZONE_DEVICE page reference counts" (Alistair
    # Popple, in v6.15): Linux kernel commit 38607c62b34b ("fs/dax: properly
    # refcount fs dax pages") (in v6.15) makes fsdax insert refcounted folios
    # (vmf_insert_folio_pmd(), vmf_insert_page_mkwrite()) and Linux kernel
    # commit aed877c2b425 ("device/dax: properly refcount device dax pages when
    # mapping") (in v6.15) does the same for device-dax; the insert function
    # itself came with Linux kernel commit 6c88f72691f8 ("mm/huge_memory: add
    # vmf_insert_folio_pmd()") (in v6.15).  DAX PTEs/PMDs no longer carry the
    # devmap bit, so GUP treats them as normal pages (no get_dev_pagemap()).
    pmd_insert_function="vmf_insert_folio_pmd",
    pud_insert_function="vmf_insert_folio_pud",
    pte_insert_function=("vmf_insert_page_mkwrite", "vmf_insert_page_mkwrite"),
    gup_uses_get_dev_pagemap=False,
    verified_on=None,
    pmd_needs_devmap=False,
    citations=dict(
        P_6_14.citations,
        pmd_insert_function='Linux kernel commit 38607c62b34b ("fs/dax: properly refcount fs dax pages") (in v6.15); '
        'Linux kernel commit 6c88f72691f8 ("mm/huge_memory: add vmf_insert_folio_pmd()") (in v6.15)',
        pud_insert_function='Linux kernel commit aed877c2b425 ("device/dax: properly refcount device dax pages when '
        'mapping") (in v6.15)',
        gup_uses_get_dev_pagemap='Linux kernel commit 38607c62b34b ("fs/dax: properly refcount fs dax pages") (in v6.15), '
        'Linux kernel commit aed877c2b425 ("device/dax: properly refcount device dax pages when mapping") (in v6.15): '
        "DAX mappings are refcounted folios without pXX_devmap",
    ),
)

P_6_16 = replace(
    P_6_15,
    name="6.16",
    version=(6, 16),
    # Linux kernel commit a4a45a9a72f3 ("fsdax: Remove unused trace events for
    # dax insert mapping") (in v6.16: trace-v6.16-2, merged 2025-06-03, before
    # 6.16-rc1) deleted dax_pmd_insert_mapping and dax_insert_mapping.
    tracepoints=_TP_COMMON,
    citations=dict(
        P_6_15.citations,
        tracepoints='Linux kernel commit a4a45a9a72f3 ("fsdax: Remove unused trace events for dax insert mapping") '
        "(in v6.16)",
    ),
)

P_6_17 = replace(
    P_6_16,
    name="6.17",
    version=(6, 17),
    # The series "mm: Remove pXX_devmap page table bit and pfn_t type" (in
    # v6.17): Linux kernel commit fd2825b0760a ("mm/gup: remove pXX_devmap
    # usage from get_user_pages()") (in v6.17) removed follow_devmap_pmd() and
    # GUP's devmap paths (absent from 7.2's and 7.3's kallsyms), Linux kernel
    # commit 21aa65bf82a7 ("mm: remove callers of pfn_t functionality") (in
    # v6.17) the last pfn_t users before the type went.
    has_pfn_t=False,
    # "mm/mremap: permit mremap() move of multiple VMAs" (Lorenzo Stoakes, in
    # v6.17; mainline id not confirmed here, linux-next carried it under
    # several ids): remap_move() for MREMAP_FIXED moves of an unchanged
    # length; file VMAs whose get_unmapped_area is thp_get_unmapped_area
    # (ext4, xfs) may be batched, device-dax (dax_get_unmapped_area) not.
    # Lab: 7.2.13 moved a range of two xfs VMAs where 6.12 gives EFAULT.
    mremap_moves_multiple_vmas=True,
    citations=dict(
        P_6_16.citations,
        mremap_moves_multiple_vmas='"mm/mremap: permit mremap() move of multiple VMAs" (in v6.17; commit id not '
        "confirmed)",
        has_pfn_t='Linux kernel commit 21aa65bf82a7 ("mm: remove callers of pfn_t functionality") (in v6.17); '
        'Linux kernel commit fd2825b0760a ("mm/gup: remove pXX_devmap usage from get_user_pages()") (in v6.17)',
    ),
)

P_6_18 = replace(
    P_6_17,
    name="6.18",
    version=(6, 18),
    # "fs/dax: use vmf_insert_folio_pmd() to insert the huge zero folio" (David
    # Hildenbrand, merged for v6.18 with "mm/huge_memory: support huge zero
    # folio in vmf_insert_folio_pmd()"): hole reads go through the insert
    # function and only fall back when no zero folio can be had.  Its mainline
    # commit id could not be confirmed here (the kernel history is too large to
    # fetch; linux-next carried it under several ids), and no live case reads
    # a hole, so this rests on the posted series (kernel-dax-behavior.md 9.3).
    zero_pmd_via_insert=True,
    load_hole_fallback_if_pmd_present=False,
    # "mm/memremap: remove unused get_dev_pagemap() parameter" (Alistair Popple,
    # 2025-09-02, in v6.18; mainline id not confirmed here, as above):
    # get_dev_pagemap(pfn).  BTF of a 6.18 kernel shows the one-argument form
    # (kernel-dax-behavior.md section 2).
    get_dev_pagemap_args=1,
    citations=dict(
        P_6_17.citations,
        zero_pmd_via_insert='"fs/dax: use vmf_insert_folio_pmd() to insert the huge zero folio" (in v6.18; commit id '
        "not confirmed)",
        get_dev_pagemap_args='"mm/memremap: remove unused get_dev_pagemap() parameter" (in v6.18; commit id not '
        "confirmed); 6.18 BTF get_dev_pagemap(unsigned long pfn)",
    ),
)

P_7_0 = replace(P_6_18, name="7.0", version=(7, 0), verified_on="7.2.13+deb14-amd64")

PROFILES = (
    P_4_18,
    P_5_10,
    P_5_11,
    P_5_15,
    P_5_18,
    P_6_1,
    P_6_2,
    P_6_4,
    P_6_5,
    P_6_6,
    P_6_12,
    P_6_14,
    P_6_15,
    P_6_16,
    P_6_17,
    P_6_18,
    P_7_0,
)
DEFAULT_RELEASE = "6.12"

#: Every Linux release from 4.18 on, explicitly: (first, last, profile).
#: Releases inside a span behave like its profile for everything pmemtrace
#: models (the spans end where a cited commit changed something).
RELEASE_SPANS = (
    ((4, 18), (5, 6), P_4_18),
    ((5, 7), (5, 10), P_5_10),
    ((5, 11), (5, 14), P_5_11),
    ((5, 15), (5, 17), P_5_15),
    ((5, 18), (5, 18), P_5_18),
    ((5, 19), (6, 1), P_6_1),
    ((6, 2), (6, 3), P_6_2),
    ((6, 4), (6, 4), P_6_4),
    ((6, 5), (6, 5), P_6_5),
    ((6, 6), (6, 9), P_6_6),
    ((6, 10), (6, 13), P_6_12),
    ((6, 14), (6, 14), P_6_14),
    ((6, 15), (6, 15), P_6_15),
    ((6, 16), (6, 16), P_6_16),
    ((6, 17), (6, 17), P_6_17),
    ((6, 18), (6, 19), P_6_18),
    ((7, 0), (7, 3), P_7_0),
)
#: The last minor release of each major series (for telling "5.25" is no release).
_LAST_MINOR = {4: 20, 5: 19, 6: 19}
OLDEST = RELEASE_SPANS[0][0]
NEWEST_KNOWN = RELEASE_SPANS[-1][1]

#: Distribution kernels whose vendor backports later upstream changes: the
#: profile is chosen by the base release, which such a kernel only starts from.
_DISTRO_NOTES = (
    (
        re.compile(r"\.el(\d+)"),
        "a RHEL {0} kernel (or a rebuild): Red Hat backports later upstream "
        "changes, so it can behave like a newer profile in places",
    ),
    (
        re.compile(r"^\d+\.\d+\.\d+-\d+-(generic|lowlatency|aws|azure|gcp|oracle|kvm|ibm)\b"),
        "an Ubuntu kernel: Ubuntu adds stable updates and its own backports, so it can behave like "
        "a newer profile in places",
    ),
    (
        re.compile(r"-default$|\.\d+-default\b"),
        "a SUSE kernel: SUSE backports later upstream changes, so it can behave like a newer profile in places",
    ),
)
_REL_RE = re.compile(r"^\s*(\d+)\.(\d+)")


def parse_release(release: object) -> tuple[int, int]:
    """``"6.12.95+deb12-amd64"`` -> ``(6, 12)``; raises UsageError."""
    m = _REL_RE.match(str(release))
    if not m:
        raise UsageError(f"kernel release {release!r} is not of the form MAJOR.MINOR[...]")
    return int(m.group(1)), int(m.group(2))


def release_note(release: str) -> str | None:
    """What to say about a release's profile beyond the profile itself:
    distribution backports, or a release newer than any pmemtrace knows."""
    ver = parse_release(release)
    if ver > NEWEST_KNOWN:
        return (
            f"{ver[0]}.{ver[1]} is newer than {NEWEST_KNOWN[0]}.{NEWEST_KNOWN[1]}, the newest "
            f"release pmemtrace knows: the {RELEASE_SPANS[-1][2].name} profile is assumed"
        )
    for rx, text in _DISTRO_NOTES:
        m = rx.search(str(release))
        if m:
            return text.format(*m.groups())
    return None


def select_profile(release: str | None = None) -> Profile:
    """The profile for *release*, from the explicit table :data:`RELEASE_SPANS`
    (every release from 4.18 on; newer releases than the table get its
    newest profile, with a note).  The returned profile carries the
    release's note (:func:`release_note`) in ``release_note``.

    >>> select_profile("6.12.95+deb12-amd64").name
    '6.12'
    >>> select_profile("6.16.3").name
    '6.16'
    >>> select_profile("7.2.13+deb14-amd64").name
    '7.0'
    >>> select_profile("5.10.0-46-amd64").name
    '5.10'
    >>> select_profile("4.18.0-513.el8.x86_64").release_note.startswith("a RHEL 8 kernel")
    True
    """
    if release is None:
        release = DEFAULT_RELEASE
    ver = parse_release(release)
    if ver < OLDEST:
        raise UsageError(
            f"kernel {release} is older than 4.18, the oldest release pmemtrace models (RHEL 8's "
            "base): earlier DAX fault code (MAP_SYNC came in 4.15, vm_fault_t in 4.17) was not read"
        )
    if ver[0] in _LAST_MINOR and ver[1] > _LAST_MINOR[ver[0]]:
        raise UsageError(
            f"kernel {release}: there is no Linux {ver[0]}.{ver[1]} "
            f"(the {ver[0]}.x series ended with {ver[0]}.{_LAST_MINOR[ver[0]]})"
        )
    chosen = RELEASE_SPANS[-1][2]
    for first, last, profile in RELEASE_SPANS:
        if first <= ver <= last:
            chosen = profile
            break
    note = release_note(release)
    return replace(chosen, release_note=note) if note else chosen
