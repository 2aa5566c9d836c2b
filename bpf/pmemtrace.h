/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pmemtrace.h - the event record shared by the BPF programs (bpf/pmemtrace.bpf.c)
 * and user space (pmemtrace/live/, the cffi workload engine).
 *
 * Rules (so cffi can cdef this file after dropping every line that starts
 * with '#'):
 *   - fixed-width types only (__u8/__u32/__u64, typedef'd below when the
 *     kernel's are not available), no bitfields, no unions, no macros used
 *     inside the struct;
 *   - natural alignment, no implicit padding: every __u64 sits on an 8-byte
 *     boundary and the size is a multiple of 8 (asserted by the unit tests:
 *     sizeof(struct pmt_event) == PMT_EVENT_SIZE == 160);
 *   - append new fields at the end, never reorder (recorded files name the
 *     record version in their header: PMT_EVENT_VERSION).
 *
 * Field meanings follow the fs_dax tracepoints (include/trace/events/fs_dax.h)
 * where one exists; probe-specific fields are zero when not applicable.
 */
#ifndef PMEMTRACE_H
#define PMEMTRACE_H

/* BPF programs define __PMT_HAVE_KERNEL_TYPES (the kernel's __u8/__u32/__u64
 * are already there); user space and cffi get these typedefs. */
#ifndef __PMT_HAVE_KERNEL_TYPES
typedef unsigned char __u8;
typedef unsigned int __u32;
typedef unsigned long long __u64;
#endif

#define PMT_EVENT_VERSION 1
#define PMT_EVENT_SIZE 160
#define PMT_COMM_LEN 16

/* enum pmt_kind: what produced the record (values are stable). */
#define PMT_KIND_NONE 0
#define PMT_KIND_PMD_FAULT 1            /* tracepoint fs_dax:dax_pmd_fault */
#define PMT_KIND_PMD_FAULT_DONE 2       /* fs_dax:dax_pmd_fault_done */
#define PMT_KIND_PTE_FAULT 3            /* fs_dax:dax_pte_fault */
#define PMT_KIND_PTE_FAULT_DONE 4       /* fs_dax:dax_pte_fault_done */
#define PMT_KIND_PMD_LOAD_HOLE 5        /* fs_dax:dax_pmd_load_hole */
#define PMT_KIND_PMD_LOAD_HOLE_FALLBACK 6 /* fs_dax:dax_pmd_load_hole_fallback */
#define PMT_KIND_LOAD_HOLE 7            /* fs_dax:dax_load_hole */
#define PMT_KIND_INSERT_PFN_MKWRITE 8   /* fs_dax:dax_insert_pfn_mkwrite */
#define PMT_KIND_INSERT_PFN_MKWRITE_NO_ENTRY 9 /* fs_dax:dax_insert_pfn_mkwrite_no_entry */
#define PMT_KIND_INSERT_PMD 20          /* kprobe: vmf_insert_pfn_pmd(_prot) / vmf_insert_folio_pmd */
#define PMT_KIND_INSERT_PUD 21          /* kprobe: vmf_insert_pfn_pud(_prot) / vmf_insert_folio_pud */
#define PMT_KIND_INSERT_PMD_RET 22      /* kretprobe of the insert function: ret = vm_fault_t */
#define PMT_KIND_GET_DEV_PAGEMAP 30     /* kprobe get_dev_pagemap: pfn */
#define PMT_KIND_GUP 40                 /* kprobe pin_user_pages / get_user_pages*: address, nr_pages, gup_flags */
#define PMT_KIND_GUP_FAST 41            /* kprobe (pin|get)_user_pages_fast: address, nr_pages, gup_flags */
#define PMT_KIND_GUP_RET 42             /* kretprobe of either: ret = pages pinned or -errno */
#define PMT_KIND_DEVDAX_FAULT 50        /* kprobe dev_dax_huge_fault / __dev_dax_*_fault: order */
#define PMT_KIND_DEVDAX_FAULT_RET 51    /* kretprobe: ret = vm_fault_t */
#define PMT_KIND_LOST 99                /* synthetic: ret = number of records lost */

struct pmt_event {
	__u64 timestamp;     /*   0  bpf_ktime_get_ns() */
	__u32 kind;          /*   8  PMT_KIND_* */
	__u32 pid;           /*  12  tgid */
	__u32 tid;           /*  16  pid (thread) */
	__u32 cpu;           /*  20  bpf_get_smp_processor_id() */
	__u8 comm[16];       /*  24  task comm, NUL padded */
	__u32 dev;           /*  40  inode->i_sb->s_dev (kernel dev_t: major<<20|minor) */
	__u32 flags;         /*  44  vmf->flags (FAULT_FLAG_*) */
	__u64 ino;           /*  48  inode->i_ino */
	__u64 address;      /*  56  vmf->address, or GUP start */
	__u64 vm_start;      /*  64 */
	__u64 vm_end;        /*  72 */
	__u64 vm_flags;      /*  80 */
	__u64 pgoff;         /*  88  vmf->pgoff */
	__u64 max_pgoff;     /*  96  DIV_ROUND_UP(i_size, PAGE_SIZE) */
	__u64 pfn;           /* 104  get_dev_pagemap pfn / inserted pfn, when known */
	__u64 ret;           /* 112  signed: kretprobe return value (as __s64) */
	__u64 nr_pages;      /* 120  GUP nr_pages / insert size in pages */
	__u32 result;        /* 128  VM_FAULT_* (fs_dax result) */
	__u32 gup_flags;     /* 132  FOLL_* */
	__u32 order;         /* 136  fault order (devdax: 0 PTE, 9 PMD, 18 PUD) */
	__u32 write;         /* 140  insert/GUP write flag */
	__u64 aux;           /* 144  zero_folio / radix_entry / probe-specific */
	__u64 reserved;      /* 152  zero; keeps size a multiple of 8 */
};

/* In-kernel aggregation (the default watch, PMT_AGGREGATE): outcomes counted
 * per mapping in a per-CPU hash, read by user space once per interval.
 * tgid/dev/ino/vm_start/vm_end as in struct pmt_event; a key with dev 0 and
 * vm_start 0 counts the process's get_dev_pagemap calls (no mapping known). */
struct pmt_key {
	__u32 tgid;          /*   0 */
	__u32 dev;           /*   4 */
	__u64 ino;           /*   8 */
	__u64 vm_start;      /*  16 */
	__u64 vm_end;        /*  24 */
};

/* counters of one key, indexed by PMT_COUNT_* */
#define PMT_COUNT_PMD 0             /* dax_pmd_fault_done, neither FALLBACK nor SIGBUS */
#define PMT_COUNT_PTE 1             /* dax_pte_fault_done without SIGBUS */
#define PMT_COUNT_HUGE_ZERO 2       /* dax_pmd_load_hole inside a counted PMD fault */
#define PMT_COUNT_INSERT_PMD 3      /* PMD insert function inside a counted PMD fault */
#define PMT_COUNT_GET_DEV_PAGEMAP 4 /* get_dev_pagemap, by process */
#define PMT_NCOUNTS 5
struct pmt_counts {
	__u64 n[5];
};

/* One slot of the per-CPU counter table (`slots` in pmemtrace.bpf.c):
 * PMT_SLOTS per CPU, slot i of CPU c at index c * PMT_SLOTS + i.  A
 * program writes the key and counters of an EMPTY slot, then the state
 * LIVE, and later only counters of its own key; user space sets RETIRING,
 * and one interval later zeroes the slot and sets EMPTY last. */
#define PMT_SLOT_BITS 8
#define PMT_SLOTS (1 << PMT_SLOT_BITS)
#define PMT_SLOT_EMPTY 0
#define PMT_SLOT_LIVE 1
#define PMT_SLOT_RETIRING 2
struct pmt_slot {
	struct pmt_key k;    /*   0 */
	struct pmt_counts c; /*  32 */
	__u32 state;         /*  72  PMT_SLOT_* */
	__u32 pad;           /*  76 */
};

#endif /* PMEMTRACE_H */
