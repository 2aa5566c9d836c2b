// SPDX-License-Identifier: Apache-2.0
/*
 * pmemtrace.bpf.c - DAX fault, insert, get_dev_pagemap, GUP and device-dax
 * probes, compiled by bcc at run time (pmemtrace/live/bcc_backend.py).
 *
 * Configuration is by -D flags only (no text substitution):
 *   PMT_FILTER_PID=n        only this process (tgid); 0 = all
 *   PMT_TP_<event>=1        attach fs_dax:<event> (set for each tracepoint the
 *                           running kernel has, read from tracefs)
 *   PMT_HOLE_ZERO_PAGE=1    the load-hole events name their pointer zero_page
 *                           (6.1) instead of zero_folio (6.12+), as read from
 *                           events/fs_dax/dax_pmd_load_hole/format
 *   PMT_RINGBUF_PAGES=n     ring buffer size in pages (power of two)
 * The kprobe functions below are attached by name from user space, to the
 * candidate that exists in this kernel (pmemtrace/live/probes.py); none of
 * them depends on a parameter's C type, only on its position.
 */
#include <uapi/linux/ptrace.h>
/* 7.x headers carry static_asserts on struct layouts (e.g. struct filename
 * in fs.h) that bcc's clang evaluates differently from the kernel's
 * compiler; they check nothing this program relies on, so drop them. */
#include <linux/build_bug.h>
#undef static_assert
#define static_assert(expr, ...)
#include <linux/sched.h>
#include <linux/mm.h>
#include <linux/mm_types.h>

#define __PMT_HAVE_KERNEL_TYPES 1
#include "pmemtrace.h"

#ifndef PMT_FILTER_PID
#define PMT_FILTER_PID 0
#endif
#ifndef PMT_RINGBUF_PAGES
#define PMT_RINGBUF_PAGES 1024
#endif
#ifdef PMT_HOLE_ZERO_PAGE
#define PMT_HOLE_PTR(a) ((u64)(a)->zero_page)
#else
#define PMT_HOLE_PTR(a) ((u64)(a)->zero_folio)
#endif

BPF_RINGBUF_OUTPUT(events, PMT_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(lost, u64, 1);
/* devdax: the fault order seen at entry, by thread, for the return probe */
BPF_HASH(devdax_order, u32, u64, 4096);

static __always_inline struct pmt_event *pmt_reserve(u32 kind)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;

	if (PMT_FILTER_PID && tgid != PMT_FILTER_PID)
		return 0;
	struct pmt_event *e = events.ringbuf_reserve(sizeof(struct pmt_event));
	if (!e) {
		u32 zero = 0;
		u64 *n = lost.lookup(&zero);
		if (n)
			(*n)++;
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->timestamp = bpf_ktime_get_ns();
	e->kind = kind;
	e->pid = tgid;
	e->tid = (u32)id;
	e->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	return e;
}

/* Explicit bpf_probe_read_kernel: no reliance on bcc's pointer rewriting
 * through inline helpers. */
static __always_inline void pmt_vmf(struct pmt_event *e, struct vm_fault *vmf)
{
	struct vm_area_struct *vma = 0;
	unsigned long v = 0;
	unsigned int fl = 0;

	bpf_probe_read_kernel(&vma, sizeof(vma), &vmf->vma);
	bpf_probe_read_kernel(&v, sizeof(v), &vmf->address);
	e->address = v;
	bpf_probe_read_kernel(&v, sizeof(v), &vmf->pgoff);
	e->pgoff = v;
	bpf_probe_read_kernel(&fl, sizeof(fl), &vmf->flags);
	e->flags = fl;
	if (!vma)
		return;
	bpf_probe_read_kernel(&v, sizeof(v), &vma->vm_start);
	e->vm_start = v;
	bpf_probe_read_kernel(&v, sizeof(v), &vma->vm_end);
	e->vm_end = v;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)&vma->vm_flags);
	e->vm_flags = v;
}

/* ---- fs_dax tracepoints (include/trace/events/fs_dax.h) ---------------- */

/* bcc refuses map calls inside macro expansions and rewrites the `args`
 * struct of each TRACEPOINT_PROBE from its format file, so each probe is
 * written out and the common work is in helpers. */

static __always_inline int pmt_submit(struct pmt_event *e)
{
	events.ringbuf_submit(e, 0);
	return 0;
}

static __always_inline int pmt_pmd_tp(u32 kind, u32 dev, u64 ino, u64 vm_start, u64 vm_end,
				      u64 vm_flags, u64 address, u64 pgoff, u64 max_pgoff,
				      u32 flags, u32 result)
{
	struct pmt_event *e = pmt_reserve(kind);

	if (!e)
		return 0;
	e->dev = dev;
	e->ino = ino;
	e->vm_start = vm_start;
	e->vm_end = vm_end;
	e->vm_flags = vm_flags;
	e->address = address;
	e->pgoff = pgoff;
	e->max_pgoff = max_pgoff;
	e->flags = flags;
	e->result = result;
	return pmt_submit(e);
}

static __always_inline int pmt_pte_tp(u32 kind, u32 dev, u64 ino, u64 vm_flags, u64 address,
				      u64 pgoff, u32 flags, u32 result)
{
	struct pmt_event *e = pmt_reserve(kind);

	if (!e)
		return 0;
	e->dev = dev;
	e->ino = ino;
	e->vm_flags = vm_flags;
	e->address = address;
	e->pgoff = pgoff;
	e->flags = flags;
	e->result = result;
	return pmt_submit(e);
}

static __always_inline int pmt_hole_tp(u32 kind, u32 dev, u64 ino, u64 vm_flags, u64 address,
				       u64 zero)
{
	struct pmt_event *e = pmt_reserve(kind);

	if (!e)
		return 0;
	e->dev = dev;
	e->ino = ino;
	e->vm_flags = vm_flags;
	e->address = address;
	e->aux = zero;
	return pmt_submit(e);
}

#ifdef PMT_TP_dax_pmd_fault
TRACEPOINT_PROBE(fs_dax, dax_pmd_fault)
{
	return pmt_pmd_tp(PMT_KIND_PMD_FAULT, args->dev, args->ino, args->vm_start, args->vm_end,
			  args->vm_flags, args->address, args->pgoff, args->max_pgoff,
			  args->flags, args->result);
}
#endif

#ifdef PMT_TP_dax_pmd_fault_done
TRACEPOINT_PROBE(fs_dax, dax_pmd_fault_done)
{
	return pmt_pmd_tp(PMT_KIND_PMD_FAULT_DONE, args->dev, args->ino, args->vm_start, args->vm_end,
			  args->vm_flags, args->address, args->pgoff, args->max_pgoff,
			  args->flags, args->result);
}
#endif

#ifdef PMT_TP_dax_pte_fault
TRACEPOINT_PROBE(fs_dax, dax_pte_fault)
{
	return pmt_pte_tp(PMT_KIND_PTE_FAULT, args->dev, args->ino, args->vm_flags, args->address,
			  args->pgoff, args->flags, args->result);
}
#endif

#ifdef PMT_TP_dax_pte_fault_done
TRACEPOINT_PROBE(fs_dax, dax_pte_fault_done)
{
	return pmt_pte_tp(PMT_KIND_PTE_FAULT_DONE, args->dev, args->ino, args->vm_flags, args->address,
			  args->pgoff, args->flags, args->result);
}
#endif

#ifdef PMT_TP_dax_load_hole
TRACEPOINT_PROBE(fs_dax, dax_load_hole)
{
	return pmt_pte_tp(PMT_KIND_LOAD_HOLE, args->dev, args->ino, args->vm_flags, args->address,
			  args->pgoff, args->flags, args->result);
}
#endif

#ifdef PMT_TP_dax_insert_pfn_mkwrite
TRACEPOINT_PROBE(fs_dax, dax_insert_pfn_mkwrite)
{
	return pmt_pte_tp(PMT_KIND_INSERT_PFN_MKWRITE, args->dev, args->ino, args->vm_flags, args->address,
			  args->pgoff, args->flags, args->result);
}
#endif

#ifdef PMT_TP_dax_insert_pfn_mkwrite_no_entry
TRACEPOINT_PROBE(fs_dax, dax_insert_pfn_mkwrite_no_entry)
{
	return pmt_pte_tp(PMT_KIND_INSERT_PFN_MKWRITE_NO_ENTRY, args->dev, args->ino, args->vm_flags, args->address,
			  args->pgoff, args->flags, args->result);
}
#endif

#ifdef PMT_TP_dax_pmd_load_hole
TRACEPOINT_PROBE(fs_dax, dax_pmd_load_hole)
{
	return pmt_hole_tp(PMT_KIND_PMD_LOAD_HOLE, args->dev, args->ino, args->vm_flags, args->address,
			   PMT_HOLE_PTR(args));
}
#endif

#ifdef PMT_TP_dax_pmd_load_hole_fallback
TRACEPOINT_PROBE(fs_dax, dax_pmd_load_hole_fallback)
{
	return pmt_hole_tp(PMT_KIND_PMD_LOAD_HOLE_FALLBACK, args->dev, args->ino, args->vm_flags, args->address,
			   PMT_HOLE_PTR(args));
}
#endif

/* ---- PMD/PUD insert functions ------------------------------------------ */
/* vmf_insert_pfn_pmd(vmf, pfn_t pfn, bool write): pfn_t is one u64, passed in
 * a register.  vmf_insert_pfn_pmd_prot(vmf, pfn, pgprot, write) (6.1, where
 * vmf_insert_pfn_pmd is an inline wrapper).  vmf_insert_folio_pmd(vmf,
 * folio, write) (DAX since the 6.15-7.x conversion; see lab-recipe.md). */

static __always_inline int pmt_insert(struct pt_regs *ctx, u32 kind, u64 pfn, u64 write)
{
	struct vm_fault *vmf = (struct vm_fault *)PT_REGS_PARM1(ctx);
	struct pmt_event *e = pmt_reserve(kind);

	if (!e)
		return 0;
	pmt_vmf(e, vmf);
	e->pfn = pfn;
	e->write = write & 1;
	e->order = kind == PMT_KIND_INSERT_PUD ? 18 : 9;
	return pmt_submit(e);
}

int kp_insert_pfn_pmd(struct pt_regs *ctx)
{
	return pmt_insert(ctx, PMT_KIND_INSERT_PMD, PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx));
}

int kp_insert_pfn_pmd_prot(struct pt_regs *ctx)
{
	return pmt_insert(ctx, PMT_KIND_INSERT_PMD, PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx));
}

int kp_insert_folio_pmd(struct pt_regs *ctx)
{
	return pmt_insert(ctx, PMT_KIND_INSERT_PMD, 0, PT_REGS_PARM3(ctx));
}

int kp_insert_pfn_pud(struct pt_regs *ctx)
{
	return pmt_insert(ctx, PMT_KIND_INSERT_PUD, PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx));
}

int kp_insert_pfn_pud_prot(struct pt_regs *ctx)
{
	return pmt_insert(ctx, PMT_KIND_INSERT_PUD, PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx));
}

int kp_insert_folio_pud(struct pt_regs *ctx)
{
	return pmt_insert(ctx, PMT_KIND_INSERT_PUD, 0, PT_REGS_PARM3(ctx));
}

/* ---- get_dev_pagemap(unsigned long pfn, ...) ---------------------------- */

int kp_get_dev_pagemap(struct pt_regs *ctx)
{
	struct pmt_event *e = pmt_reserve(PMT_KIND_GET_DEV_PAGEMAP);

	if (!e)
		return 0;
	e->pfn = PT_REGS_PARM1(ctx);
	return pmt_submit(e);
}

/* ---- GUP ---------------------------------------------------------------- */
/* __get_user_pages(mm, start, nr_pages, gup_flags, ...): the slow path every
 * get/pin_user_pages* variant ends in.  The fast path's first function:
 * internal_get_user_pages_fast(start, nr_pages, gup_flags, pages) (6.1),
 * gup_fast_fallback(start, nr_pages, gup_flags, pages) (renamed in 6.11). */

int kp_gup_slow(struct pt_regs *ctx)
{
	struct pmt_event *e = pmt_reserve(PMT_KIND_GUP);

	if (!e)
		return 0;
	e->address = PT_REGS_PARM2(ctx);
	e->nr_pages = PT_REGS_PARM3(ctx);
	e->gup_flags = PT_REGS_PARM4(ctx);
	return pmt_submit(e);
}

int kp_gup_fast(struct pt_regs *ctx)
{
	struct pmt_event *e = pmt_reserve(PMT_KIND_GUP_FAST);

	if (!e)
		return 0;
	e->address = PT_REGS_PARM1(ctx);
	e->nr_pages = PT_REGS_PARM2(ctx);
	e->gup_flags = PT_REGS_PARM3(ctx);
	return pmt_submit(e);
}

/* ---- device-dax faults (no tracepoints exist) -------------------------- */
/* dev_dax_huge_fault(vmf, enum page_entry_size pe_size) (6.1: 0 PTE, 1 PMD,
 * 2 PUD) or (vmf, unsigned int order) (6.6+: 0, 9, 18).  The raw value is
 * recorded; user space maps 1->9 and 2->18 (an order is never 1 or 2). */

int kp_devdax_fault(struct pt_regs *ctx)
{
	struct vm_fault *vmf = (struct vm_fault *)PT_REGS_PARM1(ctx);
	u64 order = PT_REGS_PARM2(ctx);
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct pmt_event *e;

	devdax_order.update(&tid, &order);
	e = pmt_reserve(PMT_KIND_DEVDAX_FAULT);
	if (!e)
		return 0;
	pmt_vmf(e, vmf);
	e->order = order;
	return pmt_submit(e);
}

int kr_devdax_fault(struct pt_regs *ctx)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	u64 *order = devdax_order.lookup(&tid);
	struct pmt_event *e;
	u64 o = 0;

	if (order) {
		o = *order;
		devdax_order.delete(&tid);
	}
	e = pmt_reserve(PMT_KIND_DEVDAX_FAULT_RET);
	if (!e)
		return 0;
	e->ret = PT_REGS_RC(ctx);
	e->result = (u32)PT_REGS_RC(ctx);
	e->order = o;
	return pmt_submit(e);
}
