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
    citations: dict[str, str] = field(default_factory=dict)

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
    citations={
        "pmd_insert_function": "mm/huge_memory.c vmf_insert_pfn_pmd_prot() (v6.1)",
        "gup_uses_get_dev_pagemap": "mm/gup.c follow_devmap_pmd(), gup_pte_range(), __gup_device_huge() (v6.1)",
        "pmd_needs_devmap": "fs/dax.c dax_iomap_direct_access(): 'For larger pages we need devmap' (v6.1)",
        "zero_pmd_via_insert": "fs/dax.c dax_pmd_load_hole() set_pmd_at() (v6.1)",
    },
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
    # (in v6.7); spec section 1.2 reads the 0x1254/0x1255 flags in 6.12's
    # arch/x86/mm/fault.c.
    vma_lock_faults=True,
    zero_field="zero_folio",
    wp_huge_pmd_private_huge_fault=False,
    citations=dict(
        P_6_1.citations,
        pmd_insert_function="mm/huge_memory.c vmf_insert_pfn_pmd() (v6.12)",
        vma_lock_faults="arch/x86/mm/fault.c lock_vma_under_rcu() + mm/memory.c create_huge_pmd() (v6.12)",
    ),
)

P_6_15 = replace(
    P_6_12,
    name="6.15",
    version=(6, 15),
    # The patch series "fs/dax: Fix ZONE_DEVICE page reference counts"
    # (Alistair Popple, in v6.15): fsdax/devdax insert refcounted folios; DAX
    # PTEs/PMDs no longer carry the devmap bit, so GUP treats them as normal
    # pages.  TODO(citation): name its fs/dax.c commit by id.
    pmd_insert_function="vmf_insert_folio_pmd",
    pud_insert_function="vmf_insert_folio_pud",
    pte_insert_function=("vmf_insert_page_mkwrite", "vmf_insert_page_mkwrite"),
    gup_uses_get_dev_pagemap=False,
    pmd_needs_devmap=False,
    citations=dict(
        P_6_12.citations,
        pmd_insert_function="fs/dax.c dax_fault_iter() -> vmf_insert_folio_pmd() (v6.15)",
        gup_uses_get_dev_pagemap="DAX mappings are refcounted folios without pXX_devmap (v6.15)",
    ),
)

P_6_17 = replace(
    P_6_15,
    name="6.17",
    version=(6, 17),
    # TODO(citation): the series "mm: Remove pXX_devmap page table bit and pfn_t
    # type" (in v6.17), incl. "mm/gup: remove pXX_devmap usage from
    # get_user_pages()": name the commits by id.
    has_pfn_t=False,
    tracepoints=_TP_COMMON,
    citations=dict(P_6_15.citations, has_pfn_t="include/linux/pfn_t.h deleted (v6.17)"),
)

P_6_18 = replace(
    P_6_17,
    name="6.18",
    version=(6, 18),
    # TODO(citation): name by id the commit "fs/dax: use vmf_insert_folio_pmd()
    # to insert the huge zero folio" (David Hildenbrand, in v6.18): hole reads go through the insert function and only
    # fall back when no zero folio can be had.
    zero_pmd_via_insert=True,
    load_hole_fallback_if_pmd_present=False,
    # TODO(citation): name by id the commit "mm/memremap: remove unused
    # get_dev_pagemap() parameter" (in v6.18)
    get_dev_pagemap_args=1,
    citations=dict(
        P_6_17.citations,
        zero_pmd_via_insert="fs/dax.c dax_pmd_load_hole() -> vmf_insert_folio_pmd() (v6.18)",
    ),
)

P_7_0 = replace(P_6_18, name="7.0", version=(7, 0))

PROFILES = (P_6_1, P_6_12, P_6_15, P_6_17, P_6_18, P_7_0)
DEFAULT_RELEASE = "6.12"

_REL_RE = re.compile(r"^\s*(\d+)\.(\d+)")


def parse_release(release: object) -> tuple[int, int]:
    """``"6.12.95+deb12-amd64"`` -> ``(6, 12)``; raises UsageError."""
    m = _REL_RE.match(str(release))
    if not m:
        raise UsageError(f"kernel release {release!r} is not of the form MAJOR.MINOR[...]")
    return int(m.group(1)), int(m.group(2))


def select_profile(release: str | None = None) -> Profile:
    """The profile for *release*: the newest one at or below it.

    >>> select_profile("6.12.95+deb12-amd64").name
    '6.12'
    >>> select_profile("6.16.3").name
    '6.15'
    >>> select_profile("7.2.13+deb14-amd64").name
    '7.0'
    """
    if release is None:
        release = DEFAULT_RELEASE
    ver = parse_release(release)
    chosen = None
    for p in PROFILES:
        if p.version <= ver:
            chosen = p
    if chosen is None:
        raise UsageError(
            f"kernel {release} is older than the oldest profile ({PROFILES[0].name}); "
            "pmemtrace models 6.1 and later"
        )
    return chosen
