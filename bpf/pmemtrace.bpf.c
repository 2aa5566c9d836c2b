// SPDX-License-Identifier: Apache-2.0
/*
 * pmemtrace.bpf.c - DAX fault, insert, get_dev_pagemap, GUP and device-dax
 * probes, compiled by bcc at run time (pmemtrace/live/bcc_backend.py).
 *
 * It includes no kernel header: the few kernel struct members it reads are
 * reached through byte offsets read from the running kernel's BTF
 * (pmemtrace/live/btf.py, -DPMT_OFF_*), because clang parsing linux/mm.h
 * and friends was most of bcc's start time (60 of 76 s in the lab).
 *
 * Configuration is by -D flags only (no text substitution):
 *   PMT_FILTER_PID=n        only this process (tgid); 0 = all
 *   PMT_FILTER_DEV=d, PMT_FILTER_INO=i  fs_dax events of this device (kernel
 *                           dev_t) and inode only (watch --path); 0 = all
 *   PMT_TP_<event>=1        attach fs_dax:<event> (set for each tracepoint the
 *                           running kernel has, read from tracefs)
 *   PMT_RAW_<event>=1       (with PMT_AGGREGATE) attach fs_dax:<event> as a raw
 *                           tracepoint (dax_pmd_fault_done, dax_pmd_load_hole,
 *                           dax_pte_fault_done; dax_pmd_fault is then not
 *                           attached, see PMT_FAULT_KEY): no
 *                           formatted record is built for the program, and
 *                           dax_pte_fault_done's vm_fault gives the VMA bounds
 *                           the formatted event lacks
 *   PMT_BTF_<event>=1       the same events as BTF-typed tracepoints
 *                           (tpbtf__<event>, loaded and attached by user
 *                           space, live/bpfsys.py: bcc has no tp_btf), which
 *                           read their arguments' members with plain loads
 *                           (PMT_LD) instead of bpf_probe_read_kernel
 *   PMT_HOLE_ZERO_PAGE=1    the load-hole events name their pointer zero_page
 *                           (6.1) instead of zero_folio (6.12+), as read from
 *                           events/fs_dax/dax_pmd_load_hole/format
 *   PMT_RINGBUF_PAGES=n     ring buffer size in pages (power of two)
 *   PMT_AGGREGATE=1         count outcomes in the kernel (struct pmt_counts per
 *                           struct pmt_key); only what user space must see one
 *                           by one goes through the ring buffer: fallbacks,
 *                           SIGBUS, GUP, device-dax, and what found no key
 *   PMT_OBSERVE=1           (with PMT_AGGREGATE) also send the first fault of
 *                           each kind per 2 MiB of a file: the entry state the
 *                           fallback attribution replays
 *   PMT_VM_FAULT_STOP, PMT_VM_FAULT_SIGBUS, PMT_FAULT_FLAG_WRITE: the kernel's
 *                           VM_FAULT_(FALLBACK|SIGBUS), VM_FAULT_SIGBUS and
 *                           FAULT_FLAG_WRITE (pmemtrace/events.py)
 *   PMT_OFF_*               member offsets (pmemtrace/live/btf.py WANTED)
 * The kprobe functions below are attached by name from user space, to the
 * candidate that exists in this kernel (pmemtrace/live/probes.py); none of
 * them depends on a parameter's C type, only on its position.
 *
 * Records go to the ring buffer without a wake-up (BPF_RB_NO_WAKEUP): user
 * space consumes them on its own clock (every drain, at most 0.5 s), so a
 * burst of faults costs no wake-up of the reader per event.
 */
#define __PMT_HAVE_KERNEL_TYPES 1
#include "pmemtrace.h"

/* the fs_dax formats name this type (include/linux/mm_types.h), and bcc
 * writes each TRACEPOINT_PROBE's args struct from the format as text */
typedef unsigned long vm_flags_t;

#ifndef PMT_FILTER_PID
#define PMT_FILTER_PID 0
#endif
#ifndef PMT_FILTER_DEV
#define PMT_FILTER_DEV 0
#endif
#ifndef PMT_FILTER_INO
#define PMT_FILTER_INO 0
#endif
/* an fs_dax event of a file --path excludes */
#define PMT_OTHER_FILE(dev, ino) \
	((PMT_FILTER_DEV && (dev) != PMT_FILTER_DEV) || (PMT_FILTER_INO && (ino) != PMT_FILTER_INO))
#ifndef PMT_RINGBUF_PAGES
#define PMT_RINGBUF_PAGES 1024
#endif
#ifndef PMT_AGGREGATE
#define PMT_AGGREGATE 0
#endif
#ifndef PMT_OBSERVE
#define PMT_OBSERVE 0
#endif
#ifndef PMT_COUNT_KEYS
#define PMT_COUNT_KEYS 16384
#endif
#ifndef PMT_VM_FAULT_STOP
#define PMT_VM_FAULT_STOP 0x802
#endif
#ifndef PMT_VM_FAULT_SIGBUS
#define PMT_VM_FAULT_SIGBUS 0x2
#endif
#ifndef PMT_FAULT_FLAG_WRITE
#define PMT_FAULT_FLAG_WRITE 0x1
#endif
#ifndef BPF_RB_NO_WAKEUP
#define BPF_RB_NO_WAKEUP 1
#endif
#ifdef PMT_HOLE_ZERO_PAGE
#define PMT_HOLE_PTR(a) ((u64)(a)->zero_page)
#else
#define PMT_HOLE_PTR(a) ((u64)(a)->zero_folio)
#endif

/* x86-64 argument registers as the kprobe context holds them (struct
 * pt_regs, arch/x86/include/asm/ptrace.h), without including its header */
struct pmt_regs {
	u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
};
#define PMT_ARG1(ctx) (((struct pmt_regs *)(ctx))->di)
#define PMT_ARG2(ctx) (((struct pmt_regs *)(ctx))->si)
#define PMT_ARG3(ctx) (((struct pmt_regs *)(ctx))->dx)
#define PMT_ARG4(ctx) (((struct pmt_regs *)(ctx))->cx)
#define PMT_RET(ctx) (((struct pmt_regs *)(ctx))->ax)

BPF_RINGBUF_OUTPUT(events, PMT_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(lost, u64, 1);
/* devdax: the fault order seen at entry, by thread, for the return probe */
BPF_HASH(devdax_order, u32, u64, 4096);

#if PMT_AGGREGATE
struct pmt_comm {
	char comm[16];
};
struct pmt_block {
	u32 dev;
	u32 kind_write; /* PMT_KIND_* << 1 | write */
	u64 ino;
	u64 block;      /* pgoff >> 9: the file's 2 MiB block */
};
BPF_PERCPU_HASH(counts, struct pmt_key, struct pmt_counts, PMT_COUNT_KEYS);
/* The counters' fast path: per CPU, PMT_SLOTS slots direct-mapped by a
 * hash of the key, each one key's counters (struct pmt_slot,
 * pmemtrace.h).  A counted fault finds its key's slot with an array
 * lookup and four compares, where the per-CPU hash `counts` hashes and
 * compares the key in a bucket walk: most of a counted fault's cost once
 * the members are plain loads.  A slot is claimed by the first key that
 * finds it empty and keeps it until user space retires it (the process
 * is gone): it marks it RETIRING, reads it one interval later, when no
 * program can still be writing it, and empties it.  A key whose slot is
 * another's, or retiring, is counted in `counts` as before; user space
 * adds both (live/slots.py SlotTable).  Mmapable, so user space
 * reads every slot without a system call per key. */
#ifndef PMT_NCPUS
#define PMT_NCPUS 1
#endif
BPF_F_TABLE("array", u32, struct pmt_slot, slots, PMT_NCPUS * PMT_SLOTS, BPF_F_MMAPABLE);
/* events counted here rather than sent, by PMT_KIND_* (events_by_name) */
BPF_PERCPU_ARRAY(kinds, u64, 64);
BPF_TABLE("lru_hash", u32, struct pmt_comm, comms, PMT_COUNT_KEYS);
/* The mapping of the PMD fault each thread is in (dax_pmd_fault to _done),
 * for the insert and the huge zero page inside it: only where the fault
 * events are plain tracepoints, whose records hold no vm_fault.  With raw
 * tracepoints dax_pmd_fault is not attached at all (its count comes from
 * dax_pmd_fault_done, which fs/dax.c dax_iomap_pmd_fault() traces on
 * every path out) and those two key themselves from their own vm_fault:
 * a hash update and delete and one program run less per PMD fault. */
#ifdef PMT_TP_dax_pmd_fault
#define PMT_FAULT_KEY 1
BPF_HASH(fault_key, u32, struct pmt_key, 4096);
#else
#define PMT_FAULT_KEY 0
#endif
#if PMT_OBSERVE
BPF_TABLE("lru_hash", struct pmt_block, u8, observed, 65536);
/* The blocks this CPU found or put in `observed` lately, direct-mapped by
 * a hash of the block: a fault in one of them skips the LRU lookup (a
 * sequential run of 4 KiB faults, 512 per block, hits one slot; a
 * workload that maps the same file again finds its blocks here). */
#define PMT_SEEN_SLOTS 1024
BPF_PERCPU_ARRAY(seen_blocks, struct pmt_block, PMT_SEEN_SLOTS);
#endif
#endif

static __always_inline u64 pmt_read_u64(const void *base, u32 off)
{
	u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
	return v;
}

static __always_inline u32 pmt_read_u32(const void *base, u32 off)
{
	u32 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
	return v;
}

/* A plain load of a member through a pointer the verifier types from BTF
 * (a tp_btf or fentry program's argument, or a pointer loaded through
 * one): it becomes a PROBE_MEM load (a faulting address reads 0), a few
 * instructions where a raw tracepoint or kprobe program, whose arguments
 * are untyped numbers, calls bpf_probe_read_kernel (about 100 under TCG,
 * most of a counted fault's cost).  Inline asm because bcc's rewriter
 * turns C dereferences of a probe's arguments into bpf_probe_read calls;
 * it leaves asm alone.  The offset and width must be a member's as BTF
 * has it (the -D offsets come from live/btf.py). */
#define PMT_LD(bits, p, off)                                                              \
	({                                                                                \
		u##bits __v;                                                              \
		asm volatile("%0 = *(u" #bits " *)(%1 + %2)" : "=r"(__v) : "r"(p), "i"(off)); \
		__v;                                                                      \
	})
/* *direct* below is a constant: 1 in tp_btf and fentry programs */
#define PMT_GET64(direct, p, off) ((direct) ? PMT_LD(64, p, off) : pmt_read_u64(p, off))

/* Members read together: one bpf_probe_read_kernel of the bytes that span
 * them (a helper call per member was most of a counted fault's cost under
 * TCG), then taken from the copy.  The offsets are -D constants, so the
 * span is too; a span too large for the stack falls back to one read per
 * member. */
#define PMT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PMT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PMT_VMF_LO PMT_MIN(PMT_MIN(PMT_OFF_VMF_VMA, PMT_OFF_VMF_PGOFF), \
			   PMT_MIN(PMT_OFF_VMF_ADDRESS, PMT_OFF_VMF_FLAGS))
#define PMT_VMF_HI PMT_MAX(PMT_MAX(PMT_OFF_VMF_VMA + 8, PMT_OFF_VMF_PGOFF + 8), \
			   PMT_MAX(PMT_OFF_VMF_ADDRESS + 8, PMT_OFF_VMF_FLAGS + 4))
#define PMT_INODE_LO PMT_MIN(PMT_OFF_INODE_SB, PMT_OFF_INODE_INO)
#define PMT_INODE_HI (PMT_MAX(PMT_OFF_INODE_SB, PMT_OFF_INODE_INO) + 8)
#define PMT_SPAN_MAX 128
#define PMT_AT(buf, off, lo, type) (*(type *)((char *)(buf) + (off) - (lo)))

struct pmt_vmf_val {
	const void *vma;
	u64 pgoff;
	u64 address;
	u32 flags;
};

static __always_inline void pmt_vmf_read(const void *vmf, struct pmt_vmf_val *v, int direct)
{
	if (direct) {
		v->vma = (const void *)PMT_LD(64, vmf, PMT_OFF_VMF_VMA);
		v->pgoff = PMT_LD(64, vmf, PMT_OFF_VMF_PGOFF);
		v->address = PMT_LD(64, vmf, PMT_OFF_VMF_ADDRESS);
		v->flags = PMT_LD(32, vmf, PMT_OFF_VMF_FLAGS);
		return;
	}
#if PMT_VMF_HI - PMT_VMF_LO <= PMT_SPAN_MAX
	u64 buf[(PMT_VMF_HI - PMT_VMF_LO + 7) / 8];

	bpf_probe_read_kernel(buf, PMT_VMF_HI - PMT_VMF_LO, (const char *)vmf + PMT_VMF_LO);
	v->vma = PMT_AT(buf, PMT_OFF_VMF_VMA, PMT_VMF_LO, const void *);
	v->pgoff = PMT_AT(buf, PMT_OFF_VMF_PGOFF, PMT_VMF_LO, u64);
	v->address = PMT_AT(buf, PMT_OFF_VMF_ADDRESS, PMT_VMF_LO, u64);
	v->flags = PMT_AT(buf, PMT_OFF_VMF_FLAGS, PMT_VMF_LO, u32);
#else
	v->vma = (const void *)pmt_read_u64(vmf, PMT_OFF_VMF_VMA);
	v->pgoff = pmt_read_u64(vmf, PMT_OFF_VMF_PGOFF);
	v->address = pmt_read_u64(vmf, PMT_OFF_VMF_ADDRESS);
	v->flags = pmt_read_u32(vmf, PMT_OFF_VMF_FLAGS);
#endif
}

/* vm_start and vm_end: adjacent in every kernel (one 16-byte read) */
static __always_inline void pmt_vma_bounds(const void *vma, u64 *start, u64 *end, int direct)
{
	if (direct) {
		*start = PMT_LD(64, vma, PMT_OFF_VMA_START);
		*end = PMT_LD(64, vma, PMT_OFF_VMA_END);
		return;
	}
#if PMT_OFF_VMA_END == PMT_OFF_VMA_START + 8
	u64 b[2] = {};

	if (vma)
		bpf_probe_read_kernel(b, sizeof(b), (const char *)vma + PMT_OFF_VMA_START);
	*start = b[0];
	*end = b[1];
#else
	*start = vma ? pmt_read_u64(vma, PMT_OFF_VMA_START) : 0;
	*end = vma ? pmt_read_u64(vma, PMT_OFF_VMA_END) : 0;
#endif
}

static __always_inline int pmt_filtered(void)
{
	return PMT_FILTER_PID && (bpf_get_current_pid_tgid() >> 32) != PMT_FILTER_PID;
}

/* A record with its common fields set; the kind's own fields are set by the
 * caller (decode.KEEP reads only those), so no memset of the whole record. */
static __always_inline struct pmt_event *pmt_reserve(u32 kind)
{
	u64 id = bpf_get_current_pid_tgid();

	if (PMT_FILTER_PID && (id >> 32) != PMT_FILTER_PID)
		return 0;
	struct pmt_event *e = events.ringbuf_reserve(sizeof(struct pmt_event));
	if (!e) {
		u32 zero = 0;
		u64 *n = lost.lookup(&zero);
		if (n)
			(*n)++;
		return 0;
	}
	e->timestamp = bpf_ktime_get_ns();
	e->kind = kind;
	e->pid = id >> 32;
	e->tid = (u32)id;
	e->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	return e;
}

static __always_inline int pmt_submit(struct pmt_event *e)
{
	events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

/* a record's vm_fault fields, from the values read (pmt_vmf_read) */
static __always_inline void pmt_vmf_set(struct pmt_event *e, const struct pmt_vmf_val *v, int direct)
{
	e->address = v->address;
	e->pgoff = v->pgoff;
	e->flags = v->flags;
	e->vm_start = 0;
	e->vm_end = 0;
	e->vm_flags = 0;
	if (!v->vma)
		return;
	pmt_vma_bounds(v->vma, &e->vm_start, &e->vm_end, direct);
	e->vm_flags = PMT_GET64(direct, v->vma, PMT_OFF_VMA_FLAGS);
}

static __always_inline void pmt_vmf(struct pmt_event *e, const void *vmf, int direct)
{
	struct pmt_vmf_val v;

	pmt_vmf_read(vmf, &v, direct);
	pmt_vmf_set(e, &v, direct);
}

#if PMT_AGGREGATE
static __always_inline void pmt_kind_counted(u32 kind)
{
	u64 *n = kinds.lookup(&kind);

	if (n)
		(*n)++;
}

/* Count one outcome under *k*; nonzero when the map is full (the caller
 * then sends the event instead: nothing is dropped). */
static __always_inline int pmt_count(struct pmt_key *k, u32 which, u32 kind)
{
	/* this CPU's slot for the key (see `slots`); programs run with
	 * migration off, so nothing else writes it meanwhile */
	u64 x = (k->vm_start >> 12) ^ (k->ino << 20) ^ ((u64)k->tgid << 40) ^ k->dev;
	/* Fibonacci hashing: the product's top bits */
	u32 i = bpf_get_smp_processor_id() * PMT_SLOTS + (u32)((x * 0x9E3779B97F4A7C15ULL) >> (64 - PMT_SLOT_BITS));
	struct pmt_slot *s = slots.lookup(&i);

	if (s && which < PMT_NCOUNTS) {
		if (s->state == PMT_SLOT_LIVE && s->k.vm_start == k->vm_start && s->k.ino == k->ino &&
		    s->k.tgid == k->tgid && s->k.dev == k->dev && s->k.vm_end == k->vm_end) {
			s->c.n[which]++;
			pmt_kind_counted(kind);
			return 0;
		}
		if (s->state == PMT_SLOT_EMPTY) {
			struct pmt_comm comm = {};

			s->k = *k;
			s->c.n[which] = 1;
			/* the key and count before the state: user space reads
			 * a slot only once it is LIVE */
			asm volatile("" ::: "memory");
			s->state = PMT_SLOT_LIVE;
			bpf_get_current_comm(&comm.comm, sizeof(comm.comm));
			comms.update(&k->tgid, &comm);
			pmt_kind_counted(kind);
			return 0;
		}
	}
	struct pmt_counts *c = counts.lookup(k);

	if (!c) {
		struct pmt_counts zero = {};
		struct pmt_comm comm = {};

		counts.insert(k, &zero);
		c = counts.lookup(k);
		if (!c)
			return 1;
		bpf_get_current_comm(&comm.comm, sizeof(comm.comm));
		comms.update(&k->tgid, &comm);
	}
	if (which < PMT_NCOUNTS)
		c->n[which]++;
	pmt_kind_counted(kind);
	return 0;
}

/* With PMT_OBSERVE: nonzero for the first fault of its kind and write flag
 * in this 2 MiB block of the file (sent so the attributor sees the entry
 * state); later ones are only counted. */
static __always_inline int pmt_first(u32 dev, u64 ino, u64 pgoff, u32 kind, u32 flags)
{
#if PMT_OBSERVE
	struct pmt_block b = {};
	u8 one = 1;

	b.dev = dev;
	b.ino = ino;
	b.block = pgoff >> 9;
	b.kind_write = kind << 1 | !!(flags & PMT_FAULT_FLAG_WRITE);
	/* consecutive blocks of a file take consecutive slots */
	u32 slot = (u32)(b.block + b.ino * 0x9E3779B1 + b.kind_write * 0x85EBCA6B) & (PMT_SEEN_SLOTS - 1);
	struct pmt_block *seen = seen_blocks.lookup(&slot);
	int first;

	if (seen && seen->block == b.block && seen->ino == b.ino && seen->dev == b.dev &&
	    seen->kind_write == b.kind_write)
		return 0;
	/* look up first: an LRU map's insert takes a free node (and its
	 * locks) before it finds the key exists, which all but the first
	 * fault of a block do */
	first = !observed.lookup(&b) && observed.insert(&b, &one) == 0;
	if (seen)
		*seen = b;
	return first;
#else
	return 0;
#endif
}
#endif

/* the file of an fs_dax event: inode->i_sb->s_dev and inode->i_ino, as the
 * tracepoints' TP_fast_assign reads them */
static __always_inline void pmt_inode(const void *inode, u32 *dev, u64 *ino, int direct)
{
	const void *sb;

	if (direct) {
		sb = (const void *)PMT_LD(64, inode, PMT_OFF_INODE_SB);
		*ino = PMT_LD(64, inode, PMT_OFF_INODE_INO);
		*dev = PMT_LD(32, sb, PMT_OFF_SB_DEV);
		return;
	}
#if PMT_INODE_HI - PMT_INODE_LO <= PMT_SPAN_MAX
	u64 buf[(PMT_INODE_HI - PMT_INODE_LO + 7) / 8];

	bpf_probe_read_kernel(buf, PMT_INODE_HI - PMT_INODE_LO, (const char *)inode + PMT_INODE_LO);
	sb = PMT_AT(buf, PMT_OFF_INODE_SB, PMT_INODE_LO, const void *);
	*ino = PMT_AT(buf, PMT_OFF_INODE_INO, PMT_INODE_LO, u64);
#else
	sb = (const void *)pmt_read_u64(inode, PMT_OFF_INODE_SB);
	*ino = pmt_read_u64(inode, PMT_OFF_INODE_INO);
#endif
	*dev = pmt_read_u32(sb, PMT_OFF_SB_DEV);
}

#if PMT_AGGREGATE && !PMT_FAULT_KEY
/* The key of the fs_dax fault an insert function runs in, from its
 * vm_fault: 1 for a regular file (only DAX file systems insert PMDs for
 * one, in dax_iomap_pmd_fault() between its two tracepoints), -1 for a
 * file --path excludes, 0 otherwise (device-dax: its /dev/daxX.Y is a
 * character device), whose insert goes to user space as it is.  The file
 * is vma->vm_file->f_inode, the inode the fs_dax events name
 * (f_mapping->host, the same for a regular file). */
#define PMT_MODE_LO PMT_MIN(PMT_OFF_INODE_MODE, PMT_INODE_LO)
#define PMT_MODE_HI PMT_MAX(PMT_OFF_INODE_MODE + 2, PMT_INODE_HI)
#define PMT_S_IFMT 0170000
#define PMT_S_IFREG 0100000
static __always_inline int pmt_fsdax_key(const void *vmf, struct pmt_key *k, int direct)
{
	const void *vma = (const void *)PMT_GET64(direct, vmf, PMT_OFF_VMF_VMA);
	const void *file, *inode;
	unsigned short mode = 0;

	if (!vma)
		return 0;
	file = (const void *)PMT_GET64(direct, vma, PMT_OFF_VMA_FILE);
	if (!file)
		return 0;
	inode = (const void *)PMT_GET64(direct, file, PMT_OFF_FILE_INODE);
	if (!inode)
		return 0;
	if (direct) {
		mode = PMT_LD(16, inode, PMT_OFF_INODE_MODE);
		if ((mode & PMT_S_IFMT) != PMT_S_IFREG)
			return 0;
		pmt_inode(inode, &k->dev, &k->ino, 1);
		goto keyed;
	}
#if PMT_MODE_HI - PMT_MODE_LO <= PMT_SPAN_MAX
	{
		/* i_mode, i_sb and i_ino in one read (the first 72 bytes of
		 * struct inode on x86-64): a helper call less per PMD insert */
		u64 buf[(PMT_MODE_HI - PMT_MODE_LO + 7) / 8];
		const void *sb;

		bpf_probe_read_kernel(buf, PMT_MODE_HI - PMT_MODE_LO, (const char *)inode + PMT_MODE_LO);
		mode = PMT_AT(buf, PMT_OFF_INODE_MODE, PMT_MODE_LO, unsigned short);
		if ((mode & PMT_S_IFMT) != PMT_S_IFREG)
			return 0;
		sb = PMT_AT(buf, PMT_OFF_INODE_SB, PMT_MODE_LO, const void *);
		k->ino = PMT_AT(buf, PMT_OFF_INODE_INO, PMT_MODE_LO, u64);
		k->dev = pmt_read_u32(sb, PMT_OFF_SB_DEV);
	}
#else
	bpf_probe_read_kernel(&mode, sizeof(mode), (const char *)inode + PMT_OFF_INODE_MODE);
	if ((mode & PMT_S_IFMT) != PMT_S_IFREG)
		return 0;
	pmt_inode(inode, &k->dev, &k->ino, 0);
#endif
keyed:
	if (PMT_OTHER_FILE(k->dev, k->ino))
		return -1;
	k->tgid = bpf_get_current_pid_tgid() >> 32;
	pmt_vma_bounds(vma, &k->vm_start, &k->vm_end, direct);
	return 1;
}
#endif

/* ---- fs_dax tracepoints (include/trace/events/fs_dax.h) ---------------- */

/* bcc refuses map calls inside macro expansions and rewrites the `args`
 * struct of each TRACEPOINT_PROBE from its format file, so each probe is
 * written out and the common work is in helpers. */

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
	e->vm_start = 0; /* the format has no VMA bounds (the raw tracepoint sets them) */
	e->vm_end = 0;
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

#if PMT_AGGREGATE
/* events the views only count by name */
#define PMT_ONLY_COUNTED(kind)          \
	do {                            \
		if (!pmt_filtered())    \
			pmt_kind_counted(kind); \
		return 0;               \
	} while (0)
#else
#define PMT_ONLY_COUNTED(kind) do { } while (0)
#endif

#ifdef PMT_TP_dax_pmd_fault
TRACEPOINT_PROBE(fs_dax, dax_pmd_fault)
{
#if PMT_AGGREGATE
	struct pmt_key k = {};
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = (u32)id;

	if (pmt_filtered())
		return 0;
	if (PMT_OTHER_FILE(args->dev, args->ino)) {
		/* tgid 0: a fault --path excludes; its insert is not ours either */
		fault_key.update(&tid, &k);
		return 0;
	}
	k.tgid = id >> 32;
	k.dev = args->dev;
	k.ino = args->ino;
	k.vm_start = args->vm_start;
	k.vm_end = args->vm_end;
	fault_key.update(&tid, &k);
	pmt_kind_counted(PMT_KIND_PMD_FAULT);
	return 0;
#else
	if (PMT_OTHER_FILE(args->dev, args->ino))
		return 0;
	return pmt_pmd_tp(PMT_KIND_PMD_FAULT, args->dev, args->ino, args->vm_start, args->vm_end,
			  args->vm_flags, args->address, args->pgoff, args->max_pgoff,
			  args->flags, args->result);
#endif
}
#endif

#ifdef PMT_TP_dax_pmd_fault_done
TRACEPOINT_PROBE(fs_dax, dax_pmd_fault_done)
{
#if PMT_AGGREGATE
	struct pmt_key k = {};
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = (u32)id;

	if (pmt_filtered())
		return 0;
#if PMT_FAULT_KEY
	fault_key.delete(&tid);
#endif
	if (PMT_OTHER_FILE(args->dev, args->ino))
		return 0;
	if (!(args->result & PMT_VM_FAULT_STOP) &&
	    !pmt_first(args->dev, args->ino, args->pgoff, PMT_KIND_PMD_FAULT_DONE, args->flags)) {
		k.tgid = id >> 32;
		k.dev = args->dev;
		k.ino = args->ino;
		k.vm_start = args->vm_start;
		k.vm_end = args->vm_end;
		if (!pmt_count(&k, PMT_COUNT_PMD, PMT_KIND_PMD_FAULT_DONE))
			return 0;
	}
#else
	if (PMT_OTHER_FILE(args->dev, args->ino))
		return 0;
#endif
	return pmt_pmd_tp(PMT_KIND_PMD_FAULT_DONE, args->dev, args->ino, args->vm_start, args->vm_end,
			  args->vm_flags, args->address, args->pgoff, args->max_pgoff,
			  args->flags, args->result);
}
#endif

/* The counting session attaches the PMD fault's done event as a raw tracepoint
 * (-DPMT_RAW_<event>), or where BTF types its arguments as a tp_btf program
 * (-DPMT_BTF_<event>, *direct*: plain loads): the program gets the
 * tracepoint's arguments (*args*) directly, where a TRACEPOINT_PROBE runs
 * after the kernel has built the whole formatted perf record for it; the
 * members the format would show are read through the BTF offsets.
 * dax_pmd_fault_class: TP_PROTO(struct inode *inode, struct vm_fault *vmf,
 * pgoff_t max_pgoff, int result), the same since v4.11. */
#if PMT_AGGREGATE
static __always_inline int pmt_pmd_done(const u64 *args, int direct)
{
	const void *vmf = (const void *)args[1];
	u64 max_pgoff = args[2];
	u32 result = (u32)args[3];
	struct pmt_vmf_val v;
	struct pmt_key k = {};
	struct pmt_event *e;
	u64 id = bpf_get_current_pid_tgid();

	if (pmt_filtered())
		return 0;
	pmt_inode((const void *)args[0], &k.dev, &k.ino, direct);
	if (PMT_OTHER_FILE(k.dev, k.ino))
		return 0;
	pmt_kind_counted(PMT_KIND_PMD_FAULT); /* its dax_pmd_fault, not attached */
	pmt_vmf_read(vmf, &v, direct);
	if (!(result & PMT_VM_FAULT_STOP) &&
	    !pmt_first(k.dev, k.ino, v.pgoff, PMT_KIND_PMD_FAULT_DONE, v.flags)) {
		k.tgid = id >> 32;
		pmt_vma_bounds(v.vma, &k.vm_start, &k.vm_end, direct);
		if (!pmt_count(&k, PMT_COUNT_PMD, PMT_KIND_PMD_FAULT_DONE))
			return 0;
	}
	/* as fs_dax:dax_pmd_fault_done formats it */
	e = pmt_reserve(PMT_KIND_PMD_FAULT_DONE);
	if (!e)
		return 0;
	pmt_vmf_set(e, &v, direct);
	e->dev = k.dev;
	e->ino = k.ino;
	e->max_pgoff = max_pgoff;
	e->result = result;
	return pmt_submit(e);
}
#endif

#if defined(PMT_RAW_dax_pmd_fault_done) && PMT_AGGREGATE
RAW_TRACEPOINT_PROBE(dax_pmd_fault_done)
{
	return pmt_pmd_done(ctx->args, 0);
}
#endif

/* a tp_btf program's context: the tracepoint's arguments, each a u64 */
#if defined(PMT_BTF_dax_pmd_fault_done) && PMT_AGGREGATE
int tpbtf__dax_pmd_fault_done(u64 *ctx)
{
	return pmt_pmd_done(ctx, 1);
}
#endif

/* dax_pmd_load_hole_class: TP_PROTO(struct inode *inode, struct vm_fault
 * *vmf, struct page *zero_page (struct folio *zero_folio from v6.x), void
 * *radix_entry) */
#if PMT_AGGREGATE
static __always_inline int pmt_pmd_hole(const u64 *args, int direct)
{
	const void *vmf = (const void *)args[1];
	struct pmt_vmf_val v;
	struct pmt_key k = {};
	struct pmt_event *e;

	if (pmt_filtered())
		return 0;
	pmt_inode((const void *)args[0], &k.dev, &k.ino, direct);
	if (PMT_OTHER_FILE(k.dev, k.ino))
		return 0;
	/* the fault's mapping, as dax_pmd_fault_done keys it */
	pmt_vmf_read(vmf, &v, direct);
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	pmt_vma_bounds(v.vma, &k.vm_start, &k.vm_end, direct);
	if (!pmt_count(&k, PMT_COUNT_HUGE_ZERO, PMT_KIND_PMD_LOAD_HOLE))
		return 0;
	e = pmt_reserve(PMT_KIND_PMD_LOAD_HOLE);
	if (!e)
		return 0;
	e->dev = k.dev;
	e->ino = k.ino;
	e->vm_flags = v.vma ? PMT_GET64(direct, v.vma, PMT_OFF_VMA_FLAGS) : 0;
	e->address = v.address;
	e->aux = args[2];
	return pmt_submit(e);
}
#endif

#if defined(PMT_RAW_dax_pmd_load_hole) && PMT_AGGREGATE
RAW_TRACEPOINT_PROBE(dax_pmd_load_hole)
{
	return pmt_pmd_hole(ctx->args, 0);
}
#endif

#if defined(PMT_BTF_dax_pmd_load_hole) && PMT_AGGREGATE
int tpbtf__dax_pmd_load_hole(u64 *ctx)
{
	return pmt_pmd_hole(ctx, 1);
}
#endif

#ifdef PMT_TP_dax_pte_fault
TRACEPOINT_PROBE(fs_dax, dax_pte_fault)
{
	if (PMT_OTHER_FILE(args->dev, args->ino))
		return 0;
	PMT_ONLY_COUNTED(PMT_KIND_PTE_FAULT);
	return pmt_pte_tp(PMT_KIND_PTE_FAULT, args->dev, args->ino, args->vm_flags, args->address,
			  args->pgoff, args->flags, args->result);
}
#endif

#ifdef PMT_TP_dax_pte_fault_done
TRACEPOINT_PROBE(fs_dax, dax_pte_fault_done)
{
	if (PMT_OTHER_FILE(args->dev, args->ino))
		return 0;
	return pmt_pte_tp(PMT_KIND_PTE_FAULT_DONE, args->dev, args->ino, args->vm_flags, args->address,
			  args->pgoff, args->flags, args->result);
}
#endif

#if PMT_AGGREGATE
/* TP_PROTO(struct inode *inode, struct vm_fault *vmf, int result) */
static __always_inline int pmt_pte_done(const u64 *args, int direct)
{
	const void *inode = (const void *)args[0];
	const void *vmf = (const void *)args[1];
	u32 result = (u32)args[2];
	struct pmt_vmf_val v;
	struct pmt_key k = {};
	struct pmt_event *e;

	if (pmt_filtered())
		return 0;
	pmt_inode(inode, &k.dev, &k.ino, direct);
	if (PMT_OTHER_FILE(k.dev, k.ino))
		return 0;
	pmt_vmf_read(vmf, &v, direct);
	if (!(result & PMT_VM_FAULT_SIGBUS) &&
	    !pmt_first(k.dev, k.ino, v.pgoff, PMT_KIND_PTE_FAULT_DONE, v.flags)) {
		k.tgid = bpf_get_current_pid_tgid() >> 32;
		pmt_vma_bounds(v.vma, &k.vm_start, &k.vm_end, direct);
		if (!pmt_count(&k, PMT_COUNT_PTE, PMT_KIND_PTE_FAULT_DONE))
			return 0;
	}
	/* as fs_dax:dax_pte_fault_done formats it, plus the VMA bounds: the
	 * counted faults of this mapping are keyed by them, and this one must
	 * reach the same row before any of those is read */
	e = pmt_reserve(PMT_KIND_PTE_FAULT_DONE);
	if (!e)
		return 0;
	pmt_vmf_set(e, &v, direct);
	e->dev = k.dev;
	e->ino = k.ino;
	e->result = result;
	return pmt_submit(e);
}
#endif

#if defined(PMT_RAW_dax_pte_fault_done) && PMT_AGGREGATE
RAW_TRACEPOINT_PROBE(dax_pte_fault_done)
{
	return pmt_pte_done(ctx->args, 0);
}
#endif

#if defined(PMT_BTF_dax_pte_fault_done) && PMT_AGGREGATE
int tpbtf__dax_pte_fault_done(u64 *ctx)
{
	return pmt_pte_done(ctx, 1);
}
#endif

#ifdef PMT_TP_dax_load_hole
TRACEPOINT_PROBE(fs_dax, dax_load_hole)
{
	if (PMT_OTHER_FILE(args->dev, args->ino))
		return 0;
	PMT_ONLY_COUNTED(PMT_KIND_LOAD_HOLE);
	return pmt_pte_tp(PMT_KIND_LOAD_HOLE, args->dev, args->ino, args->vm_flags, args->address,
			  args->pgoff, args->flags, args->result);
}
#endif

#ifdef PMT_TP_dax_insert_pfn_mkwrite
TRACEPOINT_PROBE(fs_dax, dax_insert_pfn_mkwrite)
{
	if (PMT_OTHER_FILE(args->dev, args->ino))
		return 0;
	PMT_ONLY_COUNTED(PMT_KIND_INSERT_PFN_MKWRITE);
	return pmt_pte_tp(PMT_KIND_INSERT_PFN_MKWRITE, args->dev, args->ino, args->vm_flags, args->address,
			  args->pgoff, args->flags, args->result);
}
#endif

#ifdef PMT_TP_dax_insert_pfn_mkwrite_no_entry
TRACEPOINT_PROBE(fs_dax, dax_insert_pfn_mkwrite_no_entry)
{
	if (PMT_OTHER_FILE(args->dev, args->ino))
		return 0;
	PMT_ONLY_COUNTED(PMT_KIND_INSERT_PFN_MKWRITE_NO_ENTRY);
	return pmt_pte_tp(PMT_KIND_INSERT_PFN_MKWRITE_NO_ENTRY, args->dev, args->ino, args->vm_flags, args->address,
			  args->pgoff, args->flags, args->result);
}
#endif

#ifdef PMT_TP_dax_pmd_load_hole
TRACEPOINT_PROBE(fs_dax, dax_pmd_load_hole)
{
	if (PMT_OTHER_FILE(args->dev, args->ino))
		return 0;
#if PMT_AGGREGATE
#if PMT_FAULT_KEY
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct pmt_key *k;

	if (pmt_filtered())
		return 0;
	k = fault_key.lookup(&tid);
	if (k && !pmt_count(k, PMT_COUNT_HUGE_ZERO, PMT_KIND_PMD_LOAD_HOLE))
		return 0;
#endif
#endif
	return pmt_hole_tp(PMT_KIND_PMD_LOAD_HOLE, args->dev, args->ino, args->vm_flags, args->address,
			   PMT_HOLE_PTR(args));
}
#endif

#ifdef PMT_TP_dax_pmd_load_hole_fallback
TRACEPOINT_PROBE(fs_dax, dax_pmd_load_hole_fallback)
{
	if (PMT_OTHER_FILE(args->dev, args->ino))
		return 0;
	PMT_ONLY_COUNTED(PMT_KIND_PMD_LOAD_HOLE_FALLBACK);
	return pmt_hole_tp(PMT_KIND_PMD_LOAD_HOLE_FALLBACK, args->dev, args->ino, args->vm_flags, args->address,
			   PMT_HOLE_PTR(args));
}
#endif

/* ---- the same events as tp_btf programs (-DPMT_BTF_<event>) ------------ */
/* Where BTF types a tracepoint's arguments, each fs_dax event is a tp_btf
 * program instead of a TRACEPOINT_PROBE: the kernel builds no formatted
 * record for it (perf_trace_<event> does, for a tracepoint program), and
 * the members the format shows are plain loads from the arguments
 * (TP_fast_assign in include/trace/events/fs_dax.h reads the same ones).
 * A record of the 4 KiB class also gets the VMA bounds its format lacks.
 * Counting in the kernel, the events the views only count by name are
 * counted here (PMT_ONLY_COUNTED; the done events have their own programs
 * above). */
/* dax_pmd_fault_class: (inode, vmf, max_pgoff, result) */
static __always_inline int pmt_btf_pmd(const u64 *args, u32 kind)
{
	struct pmt_event *e;
	u32 dev;
	u64 ino;

	pmt_inode((const void *)args[0], &dev, &ino, 1);
	if (PMT_OTHER_FILE(dev, ino))
		return 0;
	e = pmt_reserve(kind);
	if (!e)
		return 0;
	pmt_vmf(e, (const void *)args[1], 1);
	e->dev = dev;
	e->ino = ino;
	e->max_pgoff = args[2];
	e->result = (u32)args[3];
	return pmt_submit(e);
}

/* dax_pte_fault_class: (inode, vmf, result) */
static __always_inline int pmt_btf_pte(const u64 *args, u32 kind, int counted)
{
	struct pmt_event *e;
	u32 dev;
	u64 ino;

	pmt_inode((const void *)args[0], &dev, &ino, 1);
	if (PMT_OTHER_FILE(dev, ino))
		return 0;
	if (counted)
		PMT_ONLY_COUNTED(kind);
	e = pmt_reserve(kind);
	if (!e)
		return 0;
	pmt_vmf(e, (const void *)args[1], 1);
	e->dev = dev;
	e->ino = ino;
	e->result = (u32)args[2];
	return pmt_submit(e);
}

/* dax_pmd_load_hole_class: (inode, vmf, zero_page or zero_folio, radix_entry) */
static __always_inline int pmt_btf_hole(const u64 *args, u32 kind)
{
	struct pmt_vmf_val v;
	struct pmt_event *e;
	u32 dev;
	u64 ino;

	pmt_inode((const void *)args[0], &dev, &ino, 1);
	if (PMT_OTHER_FILE(dev, ino))
		return 0;
	PMT_ONLY_COUNTED(kind);
	e = pmt_reserve(kind);
	if (!e)
		return 0;
	pmt_vmf_read((const void *)args[1], &v, 1);
	e->dev = dev;
	e->ino = ino;
	e->vm_flags = PMT_LD(64, v.vma, PMT_OFF_VMA_FLAGS);
	e->address = v.address;
	e->aux = args[2];
	return pmt_submit(e);
}

#if defined(PMT_BTF_dax_pmd_fault) && !PMT_AGGREGATE
int tpbtf__dax_pmd_fault(u64 *ctx)
{
	return pmt_btf_pmd(ctx, PMT_KIND_PMD_FAULT);
}
#endif

#if defined(PMT_BTF_dax_pmd_fault_done) && !PMT_AGGREGATE
int tpbtf__dax_pmd_fault_done(u64 *ctx)
{
	return pmt_btf_pmd(ctx, PMT_KIND_PMD_FAULT_DONE);
}
#endif

#ifdef PMT_BTF_dax_pte_fault
int tpbtf__dax_pte_fault(u64 *ctx)
{
	return pmt_btf_pte(ctx, PMT_KIND_PTE_FAULT, 1);
}
#endif

#if defined(PMT_BTF_dax_pte_fault_done) && !PMT_AGGREGATE
int tpbtf__dax_pte_fault_done(u64 *ctx)
{
	return pmt_btf_pte(ctx, PMT_KIND_PTE_FAULT_DONE, 0);
}
#endif

#ifdef PMT_BTF_dax_load_hole
int tpbtf__dax_load_hole(u64 *ctx)
{
	return pmt_btf_pte(ctx, PMT_KIND_LOAD_HOLE, 1);
}
#endif

#ifdef PMT_BTF_dax_insert_pfn_mkwrite
int tpbtf__dax_insert_pfn_mkwrite(u64 *ctx)
{
	return pmt_btf_pte(ctx, PMT_KIND_INSERT_PFN_MKWRITE, 1);
}
#endif

#ifdef PMT_BTF_dax_insert_pfn_mkwrite_no_entry
int tpbtf__dax_insert_pfn_mkwrite_no_entry(u64 *ctx)
{
	return pmt_btf_pte(ctx, PMT_KIND_INSERT_PFN_MKWRITE_NO_ENTRY, 1);
}
#endif

#if defined(PMT_BTF_dax_pmd_load_hole) && !PMT_AGGREGATE
int tpbtf__dax_pmd_load_hole(u64 *ctx)
{
	return pmt_btf_hole(ctx, PMT_KIND_PMD_LOAD_HOLE);
}
#endif

#ifdef PMT_BTF_dax_pmd_load_hole_fallback
int tpbtf__dax_pmd_load_hole_fallback(u64 *ctx)
{
	return pmt_btf_hole(ctx, PMT_KIND_PMD_LOAD_HOLE_FALLBACK);
}
#endif

/* ---- PMD/PUD insert functions, get_dev_pagemap, GUP --------------------- */
/* vmf_insert_pfn_pmd(vmf, pfn_t pfn, bool write): pfn_t is one u64, passed in
 * a register.  vmf_insert_pfn_pmd_prot(vmf, pfn, pgprot, write) (6.1, where
 * vmf_insert_pfn_pmd is an inline wrapper).  vmf_insert_folio_pmd(vmf,
 * folio, write) (DAX since the 6.15-7.x conversion; see lab-recipe.md). */

static __always_inline int pmt_insert(const void *vmf, u32 kind, u64 pfn, u64 write, int direct)
{
	struct pmt_event *e;

#if PMT_AGGREGATE && PMT_FAULT_KEY
	if (kind == PMT_KIND_INSERT_PMD) {
		u32 tid = (u32)bpf_get_current_pid_tgid();
		struct pmt_key *k;

		if (pmt_filtered())
			return 0;
		/* inside an fs_dax PMD fault: count it under that fault's mapping */
		k = fault_key.lookup(&tid);
		if (k && !k->tgid)
			return 0;
		if (k && !pmt_count(k, PMT_COUNT_INSERT_PMD, PMT_KIND_INSERT_PMD))
			return 0;
	}
#elif PMT_AGGREGATE
	if (kind == PMT_KIND_INSERT_PMD) {
		struct pmt_key k = {};
		int fsdax;

		if (pmt_filtered())
			return 0;
		/* a regular file's: an fs_dax PMD fault's, counted under its mapping */
		fsdax = pmt_fsdax_key(vmf, &k, direct);
		if (fsdax < 0)
			return 0;
		if (fsdax && !pmt_count(&k, PMT_COUNT_INSERT_PMD, PMT_KIND_INSERT_PMD))
			return 0;
	}
#endif
	e = pmt_reserve(kind);
	if (!e)
		return 0;
	pmt_vmf(e, vmf, direct);
	e->pfn = pfn;
	e->write = write & 1;
	e->order = kind == PMT_KIND_INSERT_PUD ? 18 : 9;
	return pmt_submit(e);
}

static __always_inline int pmt_get_dev_pagemap(u64 pfn)
{
	struct pmt_event *e;

#if PMT_AGGREGATE
	struct pmt_key k = {};

	if (pmt_filtered())
		return 0;
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	if (!pmt_count(&k, PMT_COUNT_GET_DEV_PAGEMAP, PMT_KIND_GET_DEV_PAGEMAP))
		return 0;
#endif
	e = pmt_reserve(PMT_KIND_GET_DEV_PAGEMAP);
	if (!e)
		return 0;
	e->pfn = pfn;
	return pmt_submit(e);
}

static __always_inline int pmt_gup(u32 kind, u64 start, u64 nr_pages, u64 gup_flags)
{
	struct pmt_event *e = pmt_reserve(kind);

	if (!e)
		return 0;
	e->address = start;
	e->nr_pages = nr_pages;
	e->gup_flags = gup_flags;
	return pmt_submit(e);
}

/* kprobes: the arguments from the registers (attached from user space) */

int kp_insert_pfn_pmd(void *ctx)
{
	return pmt_insert((const void *)PMT_ARG1(ctx), PMT_KIND_INSERT_PMD, PMT_ARG2(ctx), PMT_ARG3(ctx), 0);
}

int kp_insert_pfn_pmd_prot(void *ctx)
{
	return pmt_insert((const void *)PMT_ARG1(ctx), PMT_KIND_INSERT_PMD, PMT_ARG2(ctx), PMT_ARG4(ctx), 0);
}

int kp_insert_folio_pmd(void *ctx)
{
	return pmt_insert((const void *)PMT_ARG1(ctx), PMT_KIND_INSERT_PMD, 0, PMT_ARG3(ctx), 0);
}

int kp_insert_pfn_pud(void *ctx)
{
	return pmt_insert((const void *)PMT_ARG1(ctx), PMT_KIND_INSERT_PUD, PMT_ARG2(ctx), PMT_ARG3(ctx), 0);
}

int kp_insert_pfn_pud_prot(void *ctx)
{
	return pmt_insert((const void *)PMT_ARG1(ctx), PMT_KIND_INSERT_PUD, PMT_ARG2(ctx), PMT_ARG4(ctx), 0);
}

int kp_insert_folio_pud(void *ctx)
{
	return pmt_insert((const void *)PMT_ARG1(ctx), PMT_KIND_INSERT_PUD, 0, PMT_ARG3(ctx), 0);
}

/* get_dev_pagemap(unsigned long pfn, ...) */
int kp_get_dev_pagemap(void *ctx)
{
	return pmt_get_dev_pagemap(PMT_ARG1(ctx));
}

/* __get_user_pages(mm, start, nr_pages, gup_flags, ...): the slow path every
 * get/pin_user_pages* variant ends in.  The fast path's first function:
 * internal_get_user_pages_fast(start, nr_pages, gup_flags, pages) (6.1),
 * gup_fast_fallback(start, nr_pages, gup_flags, pages) (renamed in 6.11). */
int kp_gup_slow(void *ctx)
{
	return pmt_gup(PMT_KIND_GUP, PMT_ARG2(ctx), PMT_ARG3(ctx), PMT_ARG4(ctx));
}

int kp_gup_fast(void *ctx)
{
	return pmt_gup(PMT_KIND_GUP_FAST, PMT_ARG1(ctx), PMT_ARG2(ctx), PMT_ARG3(ctx));
}

/* fentry (bcc's KFUNC_PROBE, attached by bcc when the program loads): a
 * BPF trampoline called from the function's ftrace site, where a kprobe
 * saves the whole register set and runs the kprobe machinery.  Compiled in
 * by -DPMT_FENTRY_<function> only where user space found the function in
 * the kernel's BTF with at most 6 arguments, none a struct by value
 * (live/btf.py fentry_functions); the arguments are the registers' values,
 * so only their positions matter here.  An fentry program must return 0. */
#ifdef PMT_FENTRY_vmf_insert_pfn_pmd
KFUNC_PROBE(vmf_insert_pfn_pmd, void *vmf, u64 pfn, u64 write)
{
	pmt_insert(vmf, PMT_KIND_INSERT_PMD, pfn, write, 1);
	return 0;
}
#endif

/* vmf_insert_pfn_pmd_prot(vmf, pfn_t pfn, pgprot_t pgprot, bool write) (6.1):
 * each struct of 8 bytes takes one argument slot of the context */
#ifdef PMT_FENTRY_vmf_insert_pfn_pmd_prot
KFUNC_PROBE(vmf_insert_pfn_pmd_prot, void *vmf, u64 pfn, u64 pgprot, u64 write)
{
	pmt_insert(vmf, PMT_KIND_INSERT_PMD, pfn, write, 1);
	return 0;
}
#endif

#ifdef PMT_FENTRY_vmf_insert_pfn_pud_prot
KFUNC_PROBE(vmf_insert_pfn_pud_prot, void *vmf, u64 pfn, u64 pgprot, u64 write)
{
	pmt_insert(vmf, PMT_KIND_INSERT_PUD, pfn, write, 1);
	return 0;
}
#endif

#ifdef PMT_FENTRY_vmf_insert_folio_pmd
KFUNC_PROBE(vmf_insert_folio_pmd, void *vmf, void *folio, u64 write)
{
	pmt_insert(vmf, PMT_KIND_INSERT_PMD, 0, write, 1);
	return 0;
}
#endif

#ifdef PMT_FENTRY_vmf_insert_pfn_pud
KFUNC_PROBE(vmf_insert_pfn_pud, void *vmf, u64 pfn, u64 write)
{
	pmt_insert(vmf, PMT_KIND_INSERT_PUD, pfn, write, 1);
	return 0;
}
#endif

#ifdef PMT_FENTRY_vmf_insert_folio_pud
KFUNC_PROBE(vmf_insert_folio_pud, void *vmf, void *folio, u64 write)
{
	pmt_insert(vmf, PMT_KIND_INSERT_PUD, 0, write, 1);
	return 0;
}
#endif

#ifdef PMT_FENTRY_get_dev_pagemap
KFUNC_PROBE(get_dev_pagemap, u64 pfn)
{
	pmt_get_dev_pagemap(pfn);
	return 0;
}
#endif

#ifdef PMT_FENTRY___get_user_pages
KFUNC_PROBE(__get_user_pages, void *mm, u64 start, u64 nr_pages, u64 gup_flags)
{
	pmt_gup(PMT_KIND_GUP, start, nr_pages, gup_flags);
	return 0;
}
#endif

#ifdef PMT_FENTRY_gup_fast_fallback
KFUNC_PROBE(gup_fast_fallback, u64 start, u64 nr_pages, u64 gup_flags)
{
	pmt_gup(PMT_KIND_GUP_FAST, start, nr_pages, gup_flags);
	return 0;
}
#endif

#ifdef PMT_FENTRY_internal_get_user_pages_fast
KFUNC_PROBE(internal_get_user_pages_fast, u64 start, u64 nr_pages, u64 gup_flags)
{
	pmt_gup(PMT_KIND_GUP_FAST, start, nr_pages, gup_flags);
	return 0;
}
#endif

/* ---- device-dax faults (no tracepoints exist) -------------------------- */
/* dev_dax_huge_fault(vmf, enum page_entry_size pe_size) (6.1: 0 PTE, 1 PMD,
 * 2 PUD) or (vmf, unsigned int order) (6.6+: 0, 9, 18).  The raw value is
 * recorded; user space maps 1->9 and 2->18 (an order is never 1 or 2). */

int kp_devdax_fault(void *ctx)
{
	const void *vmf = (const void *)PMT_ARG1(ctx);
	u64 order = PMT_ARG2(ctx);
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct pmt_event *e;

	devdax_order.update(&tid, &order);
	e = pmt_reserve(PMT_KIND_DEVDAX_FAULT);
	if (!e)
		return 0;
	pmt_vmf(e, vmf, 0);
	e->order = order;
	return pmt_submit(e);
}

int kr_devdax_fault(void *ctx)
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
	e->ret = PMT_RET(ctx);
	e->result = (u32)PMT_RET(ctx);
	e->order = o;
	return pmt_submit(e);
}
