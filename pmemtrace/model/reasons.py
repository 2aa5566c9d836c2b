"""Reason codes: one per kernel rule that keeps an access from a 2 MiB (or
1 GiB) mapping, or makes it fail.  The codes are a stable interface: tools,
JSON output and users' scripts key on them.  ``pmemtrace reasons`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    code: str
    summary: str  # one line: what happened
    rule: str  # the kernel rule, in words and code
    citation: str  # file, function, kernel version
    remedy: str  # what the user usually does about it
    kind: str = "fallback"  # fallback | sigbus | error | gate

    def to_json(self) -> dict[str, str]:
        return {
            "code": self.code,
            "kind": self.kind,
            "summary": self.summary,
            "rule": self.rule,
            "citation": self.citation,
            "remedy": self.remedy,
        }


_R = [
    # ---- gates in mm/ before the DAX handler is even called -------------
    Reason(
        "nohugepage",
        "the VMA has VM_NOHUGEPAGE, so no huge fault is attempted (no dax_pmd_fault event)",
        "vma_thp_disabled(): vm_flags & VM_NOHUGEPAGE -> no huge orders",
        "mm/huge_memory.c hugepage_vma_check() (v6.1), __thp_vma_allowable_orders() (v6.12)",
        "drop madvise(MADV_NOHUGEPAGE) on the range (the sysfs THP setting does not govern DAX)",
        "gate",
    ),
    Reason(
        "thp-disabled",
        "the process disabled THP with prctl(PR_SET_THP_DISABLE): no huge fault attempted",
        "MMF_DISABLE_THP in mm->flags -> no huge orders",
        "mm/huge_memory.c hugepage_vma_check() (v6.1), vma_thp_disabled() (v6.12)",
        "do not set PR_SET_THP_DISABLE in the process (or its parent: it is inherited)",
        "gate",
    ),
    Reason(
        "pte-table-present",
        "a 4 KiB page table already covers this 2 MiB virtual range (an earlier 4 KiB fault here, or another "
        "mapping sharing the 2 MiB block), so the fault goes straight to the PTE path",
        "__handle_mm_fault(): the huge fault is tried only if pmd_none(*pmd)",
        "mm/memory.c __handle_mm_fault() (v6.1, v6.12; lab 6.12 and 7.2)",
        "fault the range at 2 MiB first; keep DAX mappings 2 MiB-aligned at both ends so no other mapping "
        "shares their first or last 2 MiB",
        "gate",
    ),
    # ---- fs/dax.c dax_iomap_pmd_fault() in kernel order ----------------
    Reason(
        "sigbus-eof",
        "the access is beyond the end of the file",
        "xas.xa_index >= max_pgoff (PMD path) / pos >= i_size (PTE path) -> VM_FAULT_SIGBUS",
        "fs/dax.c dax_iomap_pmd_fault(), dax_iomap_pte_fault() (v6.1..7.x)",
        "extend the file (ftruncate/fallocate) before mapping past its end",
        "sigbus",
    ),
    Reason(
        "pmd-colour-mismatch",
        "virtual address and file offset are not congruent modulo 2 MiB",
        "(vmf->pgoff & PG_PMD_COLOUR) != ((vmf->address >> PAGE_SHIFT) & PG_PMD_COLOUR)",
        "fs/dax.c dax_fault_check_fallback() (v6.1..7.x)",
        "map at an address whose offset within 2 MiB equals the file offset's (let the kernel choose: addr=NULL, 2 MiB-aligned offset)",
    ),
    Reason(
        "private-write",
        "write fault on a MAP_PRIVATE mapping: the kernel copies on write at 4 KiB",
        "write && !(vma->vm_flags & VM_SHARED)",
        "fs/dax.c dax_fault_check_fallback() (v6.1..7.x)",
        "use MAP_SHARED for data written through the mapping",
    ),
    Reason(
        "vma-start",
        "the 2 MiB block around the address starts before the mapping",
        "(address & PMD_MASK) < vma->vm_start",
        "fs/dax.c dax_fault_check_fallback() (v6.1..7.x)",
        "start the mapping on a 2 MiB boundary (and keep the offset 2 MiB aligned)",
    ),
    Reason(
        "vma-end",
        "the 2 MiB block around the address ends after the mapping",
        "(address & PMD_MASK) + PMD_SIZE > vma->vm_end",
        "fs/dax.c dax_fault_check_fallback() (v6.1..7.x)",
        "make the mapping length a multiple of 2 MiB",
    ),
    Reason(
        "beyond-eof",
        "the 2 MiB block extends beyond the end of the file",
        "(xas.xa_index | PG_PMD_COLOUR) >= DIV_ROUND_UP(i_size, PAGE_SIZE)",
        "fs/dax.c dax_fault_check_fallback() (v6.1..7.x)",
        "make the file size a multiple of 2 MiB",
    ),
    Reason(
        "pte-entry-present",
        "the file already has 4 KiB entries in this 2 MiB block (an earlier 4 KiB fault); the kernel never upgrades them",
        "grab_mapping_entry(order 9): a PTE-order entry in the range -> VM_FAULT_FALLBACK",
        "fs/dax.c grab_mapping_entry(), dax_iomap_pmd_fault() (v6.1..7.x)",
        "the entries go only with truncate, hole punch or inode eviction (e.g. drop caches / remount); fault at 2 MiB first",
    ),
    Reason(
        "extent-too-short",
        "the file's block mapping at this 2 MiB block is shorter than 2 MiB (fragmented, or a hole/unwritten boundary)",
        "iomap_length(&iter) < PMD_SIZE",
        "fs/dax.c dax_iomap_pmd_fault() (v6.1..7.x)",
        "allocate the file in 2 MiB extents: mkfs.xfs -d su=2m,sw=1 / xfs_io -c 'extsize 2m', mkfs.ext4 -E stride=512, then fallocate",
    ),
    Reason(
        "pfn-unaligned",
        "the physical address of the block is not 2 MiB aligned",
        "pfn & (PHYS_PFN(PMD_SIZE) - 1) in dax_iomap_direct_access()",
        "fs/dax.c dax_iomap_direct_access() (v6.1..7.x)",
        "align the namespace data start (ndctl --align=2M), the partition start, and the filesystem's allocation (su=2m / stride=512)",
    ),
    Reason(
        "pfn-no-devmap",
        "the device's pfns have no struct pages (PFN_DEV without PFN_MAP): no PMD before 6.15",
        "length > 1 && !pfn_t_devmap(pfn) in dax_iomap_direct_access()",
        "fs/dax.c dax_iomap_direct_access() (v6.1, v6.12; gone with the v6.15 folio rework)",
        "reconfigure the namespace to fsdax: ndctl create-namespace -f -e NAMESPACE -m fsdax",
    ),
    # ---- GUP -----------------------------------------------------------
    Reason(
        "longterm-pin-fsdax",
        "FOLL_LONGTERM pin (RDMA, io_uring fixed buffers, VFIO) of an fsdax mapping is refused with EOPNOTSUPP",
        "check_vma_flags(): (gup_flags & FOLL_LONGTERM) && vma_is_fsdax(vma) -> -EOPNOTSUPP",
        "mm/gup.c check_vma_flags() (v6.1, v6.12; also folio_is_longterm_pinnable() from v6.15)",
        "register device-dax memory (/dev/daxX.Y) instead of a file on an fsdax mount",
        "error",
    ),
    Reason(
        "longterm-pin-file-vma",
        "io_uring refuses to register a buffer in a file-backed mapping (device-dax included) with EOPNOTSUPP, after pinning it",
        "io_sqe_buffer_register()/io_pin_pages(): vma->vm_file && !is_file_hugepages() && !vma_is_shmem() -> -EOPNOTSUPP",
        'io_uring/rsrc.c io_pin_pages() (v5.10, v6.1); gone with Linux kernel commit 34ed8d0dcd69 ("io_uring: rsrc: delegate VMA file-backed check to GUP") (in v6.5)',
        "run kernel 6.5 or later for device-dax fixed buffers, or register anonymous or hugetlbfs memory and copy",
        "error",
    ),
    Reason(
        "longterm-pin-partial",
        "io_uring registered only part of the buffer (GUP stopped at a page it could not pin): the whole registration fails with EFAULT",
        "io_pin_pages(): pret != nr_pages -> unpin what was pinned, ret = pret < 0 ? pret : -EFAULT",
        "io_uring/rsrc.c io_pin_pages() (v5.10..7.x)",
        "register only the part of the mapping that lies inside the file and stays mapped",
        "error",
    ),
    # ---- device-dax ----------------------------------------------------
    Reason(
        "devdax-private",
        "device-dax refuses MAP_PRIVATE mappings (mmap fails with EINVAL)",
        "check_vma(): (vma->vm_flags & VM_MAYSHARE) != VM_MAYSHARE -> -EINVAL",
        "drivers/dax/device.c check_vma() (v6.1..7.x)",
        "map device-dax with MAP_SHARED",
        "error",
    ),
    Reason(
        "devdax-fsdev-no-mmap",
        "the device-dax is bound to fsdev_dax (famfs's fs-dax binding), whose character device has no mmap "
        "(mmap fails with ENODEV)",
        "do_mmap(): !file->f_op->mmap -> -ENODEV; fsdev_fops has no .mmap",
        'drivers/dax/fsdev.c fsdev_fops, Linux kernel commit d5406bd458b0 ("dax: add fsdev.c driver for '
        'fs-dax on character dax") (in v7.1)',
        "map the files of the famfs mounted on it, or rebind the device to device_dax "
        "(daxctl reconfigure-device --mode=devdax DEVICE) to map it raw",
        "error",
    ),
    Reason(
        "devdax-vma-unaligned",
        "the mapping's start or end is not a multiple of the device's align (mmap fails with EINVAL)",
        "check_vma(): vma->vm_start & (align-1) || vma->vm_end & (align-1) -> -EINVAL",
        "drivers/dax/device.c check_vma() (v6.1..7.x)",
        "map a multiple of the align at an aligned address (let the kernel choose it: addr=NULL)",
        "error",
    ),
    Reason(
        "devdax-align-smaller",
        "the device's align is smaller than this fault size, so the kernel falls back to the next smaller size",
        "fault_size > dev_dax->align -> VM_FAULT_FALLBACK",
        "drivers/dax/device.c __dev_dax_pmd_fault(), __dev_dax_pud_fault() (v6.1..7.x)",
        "daxctl reconfigure / ndctl create-namespace -m devdax --align=2M (or 1G)",
    ),
    Reason(
        "devdax-align-larger",
        "the fault is smaller than the device's align (a huge fault was not attempted): device-dax answers SIGBUS",
        "fault_size < dev_dax->align (or align > PAGE_SIZE in the PTE handler) -> VM_FAULT_SIGBUS",
        "drivers/dax/device.c __dev_dax_pte_fault(), __dev_dax_pmd_fault() (v6.1..7.x)",
        "do not madvise(MADV_NOHUGEPAGE) or mremap device-dax mappings into pieces smaller than align",
        "sigbus",
    ),
    Reason(
        "devdax-beyond-device",
        "the offset is beyond the device's ranges: SIGBUS",
        "dax_pgoff_to_phys() == -1 -> VM_FAULT_SIGBUS",
        "drivers/dax/device.c dax_pgoff_to_phys() (v6.1..7.x)",
        "map no more than the device size",
        "sigbus",
    ),
    # ---- generic --------------------------------------------------------
    Reason(
        "not-mapped",
        "the address is in no mapping (SIGSEGV)",
        "find_vma() finds nothing -> SIGSEGV",
        "arch/x86/mm/fault.c do_user_addr_fault()",
        "check the access offsets against the mapping length",
        "error",
    ),
    Reason(
        "mapping-overlap",
        "an mmap access asks for a range another live mapping of the case still covers (EEXIST)",
        "the model maps with MAP_FIXED_NOREPLACE semantics: do_mmap() -> -EEXIST",
        "mm/mmap.c do_mmap() (MAP_FIXED_NOREPLACE, v4.17+)",
        'munmap the earlier mapping first (an "munmap" access), or use another address',
        "error",
    ),
    Reason(
        "write-readonly",
        "write to a mapping without PROT_WRITE (SIGSEGV)",
        "access_error(): write to a VMA without VM_WRITE",
        "arch/x86/mm/fault.c access_error()",
        "map with PROT_WRITE",
        "error",
    ),
]

REASONS = {r.code: r for r in _R}


def reason(code: str) -> Reason:
    """The :class:`Reason` for *code* (KeyError if there is none)."""
    return REASONS[code]
