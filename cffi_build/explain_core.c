// SPDX-License-Identifier: Apache-2.0
/*
 * explain_core.c - plain fsdax read/write faults of 'pmemtrace explain', in C.
 *
 * Every function here mirrors the Python function named in its comment
 * (pmemtrace/model/fsdax.py, state.py, engine.py): same checks, same order,
 * same reason codes.  No rule lives only here; tests/test_explain_core.py
 * runs both on every embedded example, every scenario and random cases and
 * compares the output byte for byte.  pmemtrace/model/core.py decides which
 * cases come here (the declared subset, docs/architecture.md).
 *
 * State, as the Python model keeps it: per 2 MiB of virtual address space
 * the PMD slot (none, huge, or a page table of 512-bit bitmaps), per 2 MiB
 * of file the DAX xarray entry (none, PMD empty/zero/data, or PTE-order
 * bitmaps), the block map (extents, in chunks as FileState keeps them), and
 * the counters.  Hash tables grow with the 2 MiB ranges touched.
 */
#include <stdlib.h>
#include <string.h>

#include "explain_core.h"

#define PAGE_SHIFT 12
#define PAGE_SIZE (1LL << PAGE_SHIFT)
#define PMD_SHIFT 21
#define PMD_SIZE (1LL << PMD_SHIFT)
#define COLOUR 511
#define EXTENT_CHUNK 256 /* state.py EXTENT_CHUNK */
#define PREFETCH 8       /* accesses ahead whose PMD slot pmx_run() prefetches */

/* name codes: core.py NAMES (the fixed part) */
enum {
	N_IOMAP_PMD_FAULT, N_PMD_FAULT, N_PMD_FAULT_DONE, N_PMD_LOAD_HOLE, N_PMD_LOAD_HOLE_FALLBACK,
	N_IOMAP_PTE_FAULT, N_PTE_FAULT, N_PTE_FAULT_DONE, N_LOAD_HOLE, N_FINISH_SYNC_FAULT, N_INSERT_PFN_MKWRITE,
};
/* core.py OUTCOMES, LEVELS, REASONS */
enum { O_NONE, O_PMD, O_HUGE_ZERO, O_PTE, O_ZERO_PTE, O_COW, O_SIGBUS };
enum { L_NONE, L_PMD, L_PTE };
enum {
	R_NONE, R_SIGBUS_EOF, R_COLOUR, R_PRIVATE_WRITE, R_VMA_START, R_VMA_END, R_BEYOND_EOF, R_PTE_ENTRY,
	R_EXTENT_SHORT, R_PFN_UNALIGNED, R_PFN_NO_DEVMAP, R_PTE_TABLE, R_NOHUGEPAGE, R_THP_DISABLED,
};
enum { K_MAPPED, K_UNWRITTEN, K_HOLE }; /* FileState.lookup() kinds */

/* PMD slots (AddressSpace.pmds) and xarray entries (FileState.entries) */
enum { S_NONE, S_HUGE, S_TABLE };
enum { E_NONE, E_EMPTY, E_ZERO, E_DATA, E_PTE };

struct bm {
	uint64_t w[8];
};
struct table { /* state.py PteTable */
	struct bm present, writable, anon, zero;
};
struct ptes { /* state.py PteEntries */
	struct bm present, zero;
};

struct hent {
	int64_t key;
	uint8_t used, kind, w, z;
	void *p; /* struct table * or struct ptes * */
};
struct htab {
	struct hent *e;
	uint64_t cap, n;
};

struct chunk {
	struct pmx_ext *e;
	int64_t n, cap;
};

struct shape {
	struct pmx_shape s;
	uint64_t hash;
	int64_t count;
	int32_t has_tpl; /* 0: not yet, 1: yes, -1: none (Python encodes) */
	char *lit;
	int64_t *lens;
	char *slots;
	int32_t nslots;
};

struct pmx {
	struct pmx_params p;
	struct pmx_vma *vmas;
	int32_t nvma;
	int32_t *map_vma; /* case.mappings index -> VMA index, -1: not mapped */
	int32_t nmaps;
	struct htab pmds, entries;
	struct chunk *chunks;
	int64_t nchunks, chunks_cap;
	int64_t *heads;
	int64_t nheads;
	int64_t counters[4];
	struct shape *shapes;
	int32_t nshapes, shapes_cap;
	int32_t *index; /* open addressing over shapes, -1 empty */
	int32_t index_cap;
	int64_t max_rec;
	struct pmx_pending pending;
	int failed; /* out of memory */
	struct pmx_shape cur; /* the fault being run */
};

enum { C_FALLBACK, C_SPLIT, C_ZERO_ALLOC, C_MAJFAULT };

/* ------------------------------------------------------------------ */
/* bitmaps of 512 pages */

static inline int bm_test(const struct bm *b, int i) { return (b->w[i >> 6] >> (i & 63)) & 1; }
static inline void bm_set(struct bm *b, int i) { b->w[i >> 6] |= 1ULL << (i & 63); }
static inline void bm_clear(struct bm *b, int i) { b->w[i >> 6] &= ~(1ULL << (i & 63)); }
static inline int bm_any(const struct bm *b)
{
	for (int k = 0; k < 8; k++)
		if (b->w[k])
			return 1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* hash tables keyed by 2 MiB block; a deleted key keeps its slot with kind 0
 * (the same as absent for every reader) */

static inline uint64_t hkey(int64_t k) { return (uint64_t)k * 0x9E3779B97F4A7C15ULL; }

static struct hent *h_find(const struct htab *h, int64_t key)
{
	if (!h->cap)
		return NULL;
	uint64_t m = h->cap - 1, i = (hkey(key) >> 20) & m;
	for (;;) {
		struct hent *e = &h->e[i];
		if (!e->used)
			return NULL;
		if (e->key == key)
			return e;
		i = (i + 1) & m;
	}
}

static int h_grow(struct htab *h)
{
	uint64_t cap = h->cap ? h->cap * 2 : 1024;
	struct hent *e = calloc(cap, sizeof(*e));
	if (!e)
		return -1;
	for (uint64_t k = 0; k < h->cap; k++) {
		if (!h->e[k].used)
			continue;
		uint64_t i = (hkey(h->e[k].key) >> 20) & (cap - 1);
		while (e[i].used)
			i = (i + 1) & (cap - 1);
		e[i] = h->e[k];
	}
	free(h->e);
	h->e = e;
	h->cap = cap;
	return 0;
}

/* the entry for key, made (kind 0) if absent; NULL when out of memory */
static struct hent *h_get(struct pmx *x, struct htab *h, int64_t key)
{
	struct hent *e = h_find(h, key);
	if (e)
		return e;
	if ((h->n + 1) * 2 > h->cap && h_grow(h)) {
		x->failed = 1;
		return NULL;
	}
	uint64_t m = h->cap - 1, i = (hkey(key) >> 20) & m;
	while (h->e[i].used)
		i = (i + 1) & m;
	e = &h->e[i];
	memset(e, 0, sizeof(*e));
	e->used = 1;
	e->key = key;
	h->n++;
	return e;
}

static inline int slot_kind(const struct pmx *x, int64_t key)
{
	const struct hent *e = h_find(&x->pmds, key);
	return e ? e->kind : S_NONE;
}

static void slot_clear(struct hent *e)
{
	if (e->kind == S_TABLE)
		free(e->p);
	e->kind = S_NONE;
	e->p = NULL;
}

/* ------------------------------------------------------------------ */
/* the fault's trace (Fault.trace) */

/* one entry of the trace: a called function (is_event 0) or an event, with
 * (flags, result) or, has_values 0, (None, None) */
static inline void trace_add(struct pmx *x, int32_t name, int is_event, int has_values, int64_t flags, int64_t result)
{
	struct pmx_shape *f = &x->cur;
	if (f->ntrace >= PMX_TRACE_MAX) {
		x->failed = 2;
		return;
	}
	struct pmx_trace *t = &f->trace[f->ntrace++];
	t->name = name;
	t->is_event = is_event;
	t->has_values = has_values;
	t->flags = flags;
	t->result = result;
}

static inline void call(struct pmx *x, int32_t name) { trace_add(x, name, 0, 0, 0, 0); }
static inline void event(struct pmx *x, int32_t name, int64_t flags, int64_t result)
{
	trace_add(x, name, 1, 1, flags, result);
}
static inline void event_novalues(struct pmx *x, int32_t name) { trace_add(x, name, 1, 0, 0, 0); }

/* ------------------------------------------------------------------ */
/* the block map: state.py FileState (lookup, _find, _split, _insert,
 * write_range), extents in chunks of at most 2 * EXTENT_CHUNK */

static int64_t bisect_right_heads(const struct pmx *x, int64_t pos)
{
	int64_t lo = 0, hi = x->nheads;
	while (lo < hi) {
		int64_t mid = (lo + hi) / 2;
		if (pos < x->heads[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static int64_t bisect_right_chunk(const struct chunk *c, int64_t pos)
{
	int64_t lo = 0, hi = c->n;
	while (lo < hi) {
		int64_t mid = (lo + hi) / 2;
		if (pos < c->e[mid].logical)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* FileState._find(): (chunk, index) of the last extent starting at or
 * before pos; (0, -1) when there is none */
static void ext_find(const struct pmx *x, int64_t pos, int64_t *c, int64_t *i)
{
	int64_t k = bisect_right_heads(x, pos) - 1;
	if (k < 0) {
		*c = 0;
		*i = -1;
		return;
	}
	*c = k;
	*i = bisect_right_chunk(&x->chunks[k], pos) - 1;
}

/* the extent after (c, i), advancing c/i; NULL at the end (FileState._following) */
static struct pmx_ext *ext_next(const struct pmx *x, int64_t *c, int64_t *i)
{
	int64_t cc = *c, ii = *i + 1;
	while (cc < x->nchunks && ii >= x->chunks[cc].n) {
		cc++;
		ii = 0;
	}
	if (cc >= x->nchunks)
		return NULL;
	*c = cc;
	*i = ii;
	return &x->chunks[cc].e[ii];
}

/* FileState._insert(): e right after (chunk c, index i) */
static int ext_insert(struct pmx *x, int64_t c, int64_t i, struct pmx_ext e)
{
	struct chunk *ch = &x->chunks[c];
	if (ch->n == ch->cap) {
		int64_t cap = ch->cap ? ch->cap * 2 : 16;
		struct pmx_ext *ne = realloc(ch->e, cap * sizeof(*ne));
		if (!ne)
			return -1;
		ch->e = ne;
		ch->cap = cap;
	}
	memmove(&ch->e[i + 2], &ch->e[i + 1], (ch->n - i - 1) * sizeof(*ch->e));
	ch->e[i + 1] = e;
	ch->n++;
	if (i < 0) { /* a new first extent (chunk 0) */
		if (x->nheads)
			x->heads[c] = e.logical;
		else
			x->heads[x->nheads++] = e.logical;
	}
	if (ch->n > 2 * EXTENT_CHUNK) {
		if (x->nchunks == x->chunks_cap) {
			int64_t cap = x->chunks_cap * 2;
			struct chunk *nc = realloc(x->chunks, cap * sizeof(*nc));
			if (!nc)
				return -1;
			x->chunks = nc;
			int64_t *nh = realloc(x->heads, cap * sizeof(*nh));
			if (!nh)
				return -1;
			x->heads = nh;
			x->chunks_cap = cap;
			ch = &x->chunks[c];
		}
		int64_t half = ch->n / 2;
		struct chunk tail = {NULL, ch->n - half, ch->n - half};
		tail.e = malloc(tail.cap * sizeof(*tail.e));
		if (!tail.e)
			return -1;
		memcpy(tail.e, &ch->e[half], tail.n * sizeof(*tail.e));
		ch->n = half;
		memmove(&x->chunks[c + 2], &x->chunks[c + 1], (x->nchunks - c - 1) * sizeof(*x->chunks));
		x->chunks[c + 1] = tail;
		x->nchunks++;
		memmove(&x->heads[c + 2], &x->heads[c + 1], (x->nheads - c - 1) * sizeof(*x->heads));
		x->heads[c + 1] = tail.e[0].logical;
		x->nheads++;
	}
	return 0;
}

/* FileState.lookup(): kind, length from pos; (ec, ei) the extent (mapped or
 * unwritten only) */
static int lookup(const struct pmx *x, int64_t pos, int64_t need, int64_t *length, int64_t *ec, int64_t *ei)
{
	int64_t c = bisect_right_heads(x, pos) - 1, i;
	if (c >= 0) {
		i = bisect_right_chunk(&x->chunks[c], pos) - 1;
		const struct pmx_ext *e = &x->chunks[c].e[i];
		int64_t end = e->logical + e->length;
		if (pos < end) {
			int64_t len = end - pos;
			if (len < need) {
				const struct pmx_ext *a = e;
				int64_t cc = c, ii = i;
				const struct pmx_ext *b;
				while ((b = ext_next(x, &cc, &ii))) {
					if (b->logical != a->logical + a->length || b->physical != a->physical + a->length ||
					    b->unwritten != e->unwritten)
						break;
					len = b->logical + b->length - pos;
					if (len >= need)
						break;
					a = b;
				}
			}
			*length = len;
			*ec = c;
			*ei = i;
			return e->unwritten ? K_UNWRITTEN : K_MAPPED;
		}
	} else {
		c = 0;
		i = -1;
	}
	const struct pmx_ext *n = ext_next(x, &c, &i);
	*length = n ? n->logical - pos : (1LL << 62);
	*ec = -1;
	*ei = -1;
	return K_HOLE;
}

/* FileState._split() */
static int ext_split(struct pmx *x, int64_t pos)
{
	int64_t c, i;
	ext_find(x, pos, &c, &i);
	if (i < 0)
		return 0;
	struct pmx_ext *e = &x->chunks[c].e[i];
	if (e->logical < pos && pos < e->logical + e->length) {
		int64_t cut = pos - e->logical;
		struct pmx_ext n = {pos, e->physical + cut, e->length - cut, e->unwritten};
		e->length = cut;
		return ext_insert(x, c, i, n);
	}
	return 0;
}

/* FileState.write_range(): returns IOMAP_F_NEW */
static int write_range(struct pmx *x, int64_t pos, int64_t length)
{
	int new = 0;
	int64_t end = pos + length;
	if (ext_split(x, pos) || ext_split(x, end)) {
		x->failed = 1;
		return 0;
	}
	int64_t p = pos;
	while (p < end) {
		int64_t ln, c, i;
		int kind = lookup(x, p, end - p, &ln, &c, &i);
		if (ln > end - p)
			ln = end - p;
		if (kind == K_UNWRITTEN) {
			struct pmx_ext *e = &x->chunks[c].e[i];
			if (ln > e->logical + e->length - p)
				ln = e->logical + e->length - p;
			e->unwritten = 0;
			new = 1;
		} else if (kind == K_HOLE) {
			int64_t a = x->p.hole_alloc_align;
			int64_t phys = (x->p.next_phys + a - 1) / a * a;
			x->p.next_phys = phys + ln;
			ext_find(x, p, &c, &i);
			struct pmx_ext n = {p, phys, ln, 0};
			if (ext_insert(x, c, i, n)) {
				x->failed = 1;
				return 0;
			}
			new = 1;
		}
		p += ln;
	}
	if (new)
		x->p.datasync_dirty = 1;
	return new;
}

/* ------------------------------------------------------------------ */
/* fsdax.py */

/* fsdax._unmap_zero(): index < 0 for the 512 pages of block */
static void unmap_zero(struct pmx *x, int64_t block, int64_t index)
{
	for (int32_t k = 0; k < x->nvma; k++) {
		const struct pmx_vma *v = &x->vmas[k];
		int64_t first = index < 0 ? block << 9 : index;
		int64_t n = index < 0 ? 512 : 1;
		int64_t lo = first > v->pgoff ? first : v->pgoff;
		int64_t vend = v->pgoff + ((v->end - v->start) >> PAGE_SHIFT);
		int64_t hi = first + n < vend ? first + n : vend;
		if (lo >= hi)
			continue;
		int64_t a0 = v->start + ((lo - v->pgoff) << PAGE_SHIFT);
		int64_t a1 = v->start + ((hi - v->pgoff) << PAGE_SHIFT);
		for (int64_t key = a0 >> PMD_SHIFT; key <= (a1 - 1) >> PMD_SHIFT; key++) {
			struct hent *s = h_find(&x->pmds, key);
			if (!s || s->kind == S_NONE)
				continue;
			if (s->kind == S_HUGE) {
				if (s->z)
					slot_clear(s);
				continue;
			}
			struct table *t = s->p;
			if (!bm_any(&t->zero))
				continue;
			int64_t lo_a = a0 > key << PMD_SHIFT ? a0 : key << PMD_SHIFT;
			int64_t hi_a = a1 < (key + 1) << PMD_SHIFT ? a1 : (key + 1) << PMD_SHIFT;
			for (int p = (lo_a >> PAGE_SHIFT) & COLOUR; p <= (((hi_a - 1) >> PAGE_SHIFT) & COLOUR); p++) {
				if (bm_test(&t->zero, p)) {
					bm_clear(&t->zero, p);
					bm_clear(&t->present, p);
					bm_clear(&t->writable, p);
				}
			}
		}
	}
}

/* fsdax._install_pmd() */
static void install_pmd(struct pmx *x, int64_t addr, int writable, int zero)
{
	struct hent *s = h_get(x, &x->pmds, addr >> PMD_SHIFT);
	if (!s)
		return;
	if (s->kind == S_HUGE) {
		if (writable)
			s->w = 1;
		return;
	}
	slot_clear(s);
	s->kind = S_HUGE;
	s->w = !!writable;
	s->z = !!zero;
}

/* fsdax._set_pte() */
static void set_pte(struct pmx *x, int64_t addr, int writable, int zero, int anon)
{
	struct hent *s = h_get(x, &x->pmds, addr >> PMD_SHIFT);
	if (!s)
		return;
	if (s->kind != S_TABLE) {
		struct table *t = calloc(1, sizeof(*t));
		if (!t) {
			x->failed = 1;
			return;
		}
		s->kind = S_TABLE;
		s->p = t;
	}
	struct table *t = s->p;
	int bit = (addr >> PAGE_SHIFT) & COLOUR;
	bm_set(&t->present, bit);
	if (writable)
		bm_set(&t->writable, bit);
	else
		bm_clear(&t->writable, bit);
	if (zero)
		bm_set(&t->zero, bit);
	else
		bm_clear(&t->zero, bit);
	if (anon)
		bm_set(&t->anon, bit);
}

/* fsdax._iomap_dirty() */
static int iomap_dirty(const struct pmx *x, int64_t pos, int64_t length)
{
	return x->p.datasync_dirty || (x->p.fs_is_ext4 && pos + length > x->p.file_size);
}

/* fsdax._pmd_done() */
static int64_t pmd_done(struct pmx *x, int64_t addr, int64_t flags, int64_t ret, int32_t reason)
{
	struct pmx_shape *f = &x->cur;
	if (ret == x->p.vf_fallback) {
		if (!f->reason)
			f->reason = reason;
		x->counters[C_FALLBACK]++;
		struct hent *s = h_find(&x->pmds, addr >> PMD_SHIFT);
		if (s && s->kind == S_HUGE) {
			slot_clear(s);
			x->counters[C_SPLIT]++;
		}
	} else if (reason) {
		f->reason = reason;
	}
	event(x, N_PMD_FAULT_DONE, flags, ret);
	return ret;
}

/* fsdax.dax_finish_sync_fault() */
static int64_t finish_sync_fault(struct pmx *x, int64_t addr, int64_t flags, int pmd)
{
	struct pmx_shape *f = &x->cur;
	if (pmd) {
		call(x, x->p.pmd_insert_function);
		install_pmd(x, addr, 1, 0);
		f->outcome = O_PMD;
		f->level = L_PMD;
	} else {
		call(x, x->p.pte_insert_function[1]);
		set_pte(x, addr, 1, 0, 0);
		f->outcome = O_PTE;
		f->level = L_PTE;
	}
	call(x, N_FINISH_SYNC_FAULT);
	event(x, N_INSERT_PFN_MKWRITE, flags, x->p.vf_nopage);
	x->p.datasync_dirty = 0;
	f->result = x->p.vf_needdsync;
	return x->p.vf_needdsync;
}

/* fsdax.dax_pmd_load_hole() */
static int64_t pmd_load_hole(struct pmx *x, int64_t addr, int64_t flags, int64_t block)
{
	struct hent *e = h_get(x, &x->entries, block);
	if (!e)
		return 0;
	e->kind = E_ZERO; /* a PMD entry replaces nothing with bitmaps here: grab_pmd_entry() refused those */
	if (x->p.zero_pmd_via_insert)
		call(x, x->p.pmd_insert_function);
	if (slot_kind(x, addr >> PMD_SHIFT) != S_NONE && x->p.load_hole_fallback_if_pmd_present) {
		event_novalues(x, N_PMD_LOAD_HOLE_FALLBACK);
		return pmd_done(x, addr, flags, x->p.vf_fallback, R_PTE_TABLE);
	}
	install_pmd(x, addr, 0, 1);
	if (!x->p.zero_page_alloc_seen) {
		x->p.zero_page_alloc_seen = 1;
		x->counters[C_ZERO_ALLOC]++;
	}
	event_novalues(x, N_PMD_LOAD_HOLE);
	x->cur.outcome = O_HUGE_ZERO;
	x->cur.level = L_PMD;
	return pmd_done(x, addr, flags, x->p.vf_nopage, R_NONE);
}

/* fsdax.dax_iomap_pmd_fault() */
static int64_t pmd_fault(struct pmx *x, const struct pmx_vma *v, int64_t addr, int64_t flags)
{
	const struct pmx_params *p = &x->p;
	int64_t write = flags & p->ff_write;
	int64_t pgoff = v->pgoff + ((addr - v->start) >> PAGE_SHIFT);
	int64_t block = pgoff >> 9, index = block << 9;
	int64_t max_pgoff = p->max_pgoff;
	call(x, N_IOMAP_PMD_FAULT);
	event(x, N_PMD_FAULT, flags, 0);
	if (index >= max_pgoff && !p->pmd_sigbus_after_vma_checks)
		return pmd_done(x, addr, flags, p->vf_sigbus, R_SIGBUS_EOF);
	int64_t pmd_addr = addr & ~(PMD_SIZE - 1);
	if ((pgoff & COLOUR) != ((addr >> PAGE_SHIFT) & COLOUR))
		return pmd_done(x, addr, flags, p->vf_fallback, R_COLOUR);
	if (write && !v->shared)
		return pmd_done(x, addr, flags, p->vf_fallback, R_PRIVATE_WRITE);
	if (pmd_addr < v->start)
		return pmd_done(x, addr, flags, p->vf_fallback, R_VMA_START);
	if (pmd_addr + PMD_SIZE > v->end)
		return pmd_done(x, addr, flags, p->vf_fallback, R_VMA_END);
	if (index >= max_pgoff)
		return pmd_done(x, addr, flags, p->vf_sigbus, R_SIGBUS_EOF);
	if ((index | COLOUR) >= max_pgoff)
		return pmd_done(x, addr, flags, p->vf_fallback, R_BEYOND_EOF);
	/* grab_pmd_entry(): setdefault(block, PMD_ENTRY_EMPTY) */
	struct hent *ent = h_get(x, &x->entries, block);
	if (!ent)
		return 0;
	if (ent->kind == E_NONE)
		ent->kind = E_EMPTY;
	if (ent->kind == E_PTE)
		return pmd_done(x, addr, flags, p->vf_fallback, R_PTE_ENTRY);
	int ent_kind = ent->kind;
	int64_t pos = index << PAGE_SHIFT, length, c, i;
	int kind = lookup(x, pos, PMD_SIZE, &length, &c, &i);
	if (write && kind != K_MAPPED) {
		write_range(x, pos, length < PMD_SIZE ? length : PMD_SIZE);
		kind = lookup(x, pos, PMD_SIZE, &length, &c, &i);
	}
	if (length < PMD_SIZE)
		return pmd_done(x, addr, flags, p->vf_fallback, R_EXTENT_SHORT);
	if (!write && kind != K_MAPPED)
		return pmd_load_hole(x, addr, flags, block);
	const struct pmx_ext *e = &x->chunks[c].e[i];
	int64_t phys = p->data_start + e->physical + (pos - e->logical);
	if ((phys >> PAGE_SHIFT) & COLOUR)
		return pmd_done(x, addr, flags, p->vf_fallback, R_PFN_UNALIGNED);
	if (p->pmd_needs_devmap && !p->struct_pages)
		return pmd_done(x, addr, flags, p->vf_fallback, R_PFN_NO_DEVMAP);
	if (ent_kind == E_ZERO)
		unmap_zero(x, block, -1);
	ent = h_get(x, &x->entries, block);
	if (!ent)
		return 0;
	ent->kind = E_DATA;
	if (write && v->sync && iomap_dirty(x, pos, PMD_SIZE)) {
		pmd_done(x, addr, flags, p->vf_needdsync, R_NONE);
		return finish_sync_fault(x, addr, flags, 1);
	}
	call(x, p->pmd_insert_function);
	install_pmd(x, addr, write != 0, 0);
	x->cur.outcome = O_PMD;
	x->cur.level = L_PMD;
	return pmd_done(x, addr, flags, p->vf_nopage, R_NONE);
}

/* fsdax._pte_done() (traced < 0: the return value) */
static int64_t pte_done(struct pmx *x, int64_t flags, int64_t ret, int32_t reason, int64_t traced)
{
	if (reason && !x->cur.reason)
		x->cur.reason = reason;
	event(x, N_PTE_FAULT_DONE, flags, traced < 0 ? ret : traced);
	return ret;
}

/* fsdax.grab_pte_entry(): the entry's kind (E_DATA or E_PTE), *out its
 * bitmaps when E_PTE */
static int grab_pte_entry(struct pmx *x, int64_t index, struct ptes **out)
{
	int64_t block = index >> 9;
	struct hent *e = h_get(x, &x->entries, block);
	*out = NULL;
	if (!e)
		return E_NONE;
	if (e->kind == E_DATA)
		return E_DATA;
	if (e->kind == E_ZERO) {
		unmap_zero(x, block, -1);
		e = h_find(&x->entries, block);
	}
	if (e->kind != E_PTE) {
		struct ptes *n = calloc(1, sizeof(*n));
		if (!n) {
			x->failed = 1;
			return E_NONE;
		}
		e->kind = E_PTE;
		e->p = n;
	}
	struct ptes *pt = e->p;
	bm_set(&pt->present, index & COLOUR);
	*out = pt;
	return E_PTE;
}

/* fsdax.dax_iomap_pte_fault() */
static int64_t pte_fault(struct pmx *x, const struct pmx_vma *v, int64_t addr, int64_t flags, int cow)
{
	const struct pmx_params *p = &x->p;
	struct pmx_shape *f = &x->cur;
	int write = (flags & p->ff_write) != 0;
	int64_t pgoff = v->pgoff + ((addr - v->start) >> PAGE_SHIFT);
	call(x, N_IOMAP_PTE_FAULT);
	event(x, N_PTE_FAULT, flags, 0);
	int64_t pos = pgoff << PAGE_SHIFT;
	if (pos >= p->file_size) {
		f->outcome = O_SIGBUS;
		f->reason = R_SIGBUS_EOF;
		return pte_done(x, flags, p->vf_sigbus, R_SIGBUS_EOF, -1);
	}
	struct ptes *ent;
	int ent_kind = grab_pte_entry(x, pgoff, &ent);
	if (slot_kind(x, addr >> PMD_SHIFT) == S_HUGE)
		return pte_done(x, flags, p->vf_nopage, R_NONE, -1);
	int64_t length, c, i;
	int kind = lookup(x, pos, PAGE_SIZE, &length, &c, &i);
	if (cow) {
		set_pte(x, addr, 1, 0, 1);
		f->outcome = O_COW;
		f->level = L_PTE;
		return pte_done(x, flags, p->vf_done_cow, R_NONE, -1);
	}
	int hole = kind == K_HOLE || kind == K_UNWRITTEN;
	if (!write && hole) {
		if (ent_kind == E_PTE)
			bm_set(&ent->zero, pgoff & COLOUR);
		call(x, p->pte_insert_function[0]);
		set_pte(x, addr, 0, 1, 0);
		event(x, N_LOAD_HOLE, flags, p->vf_nopage);
		f->outcome = O_ZERO_PTE;
		f->level = L_PTE;
		return pte_done(x, flags, p->vf_nopage, R_NONE, -1);
	}
	int new = 0;
	if (write && hole)
		new = write_range(x, pos & ~(PAGE_SIZE - 1), PAGE_SIZE);
	if (ent_kind == E_PTE && bm_test(&ent->zero, pgoff & COLOUR)) {
		bm_clear(&ent->zero, pgoff & COLOUR);
		unmap_zero(x, pgoff >> 9, pgoff);
	}
	int64_t ret = 0;
	if (new) {
		x->counters[C_MAJFAULT]++;
		ret |= p->vf_major;
	}
	if (write && v->sync && iomap_dirty(x, pos, PAGE_SIZE)) {
		pte_done(x, flags, ret | p->vf_needdsync, R_NONE, -1);
		finish_sync_fault(x, addr, flags, 0);
		return ret | p->vf_needdsync;
	}
	call(x, p->pte_insert_function[write ? 1 : 0]);
	set_pte(x, addr, write, 0, 0);
	f->outcome = O_PTE;
	f->level = L_PTE;
	if (!p->pte_done_traces_major)
		return pte_done(x, flags, ret | p->vf_nopage, R_NONE, (ret | p->vf_nopage) & ~p->vf_major);
	return pte_done(x, flags, ret | p->vf_nopage, R_NONE, -1);
}

/* fsdax._pte_level() */
static int64_t pte_level(struct pmx *x, const struct pmx_vma *v, int64_t addr, int write, int64_t flags,
			 int retry_pte)
{
	const struct pmx_params *p = &x->p;
	struct pmx_shape *f = &x->cur;
	struct hent *s = h_find(&x->pmds, addr >> PMD_SHIFT);
	int kind = s ? s->kind : S_NONE;
	int bit = (addr >> PAGE_SHIFT) & COLOUR;
	if (kind != S_NONE && p->orig_pte_valid_flag)
		flags |= p->ff_orig_pte_valid;
	if (kind == S_TABLE && bm_test(&((struct table *)s->p)->present, bit)) {
		if (!write || bm_test(&((struct table *)s->p)->writable, bit)) {
			f->outcome = O_NONE;
			f->level = L_PTE;
			return 0;
		}
		if (!v->shared) {
			set_pte(x, addr, 1, 0, 1);
			f->outcome = O_COW;
			f->level = L_PTE;
			if (!f->reason)
				f->reason = R_PRIVATE_WRITE;
			return 0;
		}
		if (retry_pte)
			return p->vf_retry;
		int64_t mflags = p->pte_insert_is_page_mkwrite ? (p->ff_write | p->ff_mkwrite) : (flags | p->ff_mkwrite);
		return pte_fault(x, v, addr, mflags, 0);
	}
	if (retry_pte)
		return p->vf_retry;
	return pte_fault(x, v, addr, flags, write && !v->shared);
}

/* fsdax._fault_once() */
static int64_t fault_once(struct pmx *x, const struct pmx_vma *v, int64_t addr, int write, int64_t flags,
			  int retry_pte)
{
	struct pmx_shape *f = &x->cur;
	int64_t key = addr >> PMD_SHIFT;
	struct hent *s = h_find(&x->pmds, key);
	int kind = s ? s->kind : S_NONE;
	int huge_ok = !v->nohugepage && !x->p.thp_disable;
	if (kind == S_NONE) {
		if (huge_ok) {
			int64_t ret = pmd_fault(x, v, addr, flags);
			if (ret != x->p.vf_fallback)
				return ret;
		} else if (!f->reason) {
			f->reason = v->nohugepage ? R_NOHUGEPAGE : R_THP_DISABLED;
		}
	} else if (kind == S_HUGE) {
		if (write && !s->w) {
			if (v->shared || x->p.wp_huge_pmd_private_huge_fault) {
				int64_t ret = pmd_fault(x, v, addr, flags);
				if (ret != x->p.vf_fallback)
					return ret;
			} else {
				f->reason = R_PRIVATE_WRITE;
			}
			s = h_find(&x->pmds, key);
			if (s && s->kind == S_HUGE) {
				slot_clear(s);
				x->counters[C_SPLIT]++;
			}
		} else {
			f->outcome = O_NONE;
			f->level = L_PMD;
			return 0;
		}
	} else if (!f->reason) {
		f->reason = R_PTE_TABLE;
	}
	return pte_level(x, v, addr, write, flags, retry_pte);
}

/* fsdax.handle_mm_fault() (user faults: never via GUP) */
static void handle_mm_fault(struct pmx *x, const struct pmx_vma *v, int64_t addr, int write, int64_t flags)
{
	int64_t ret;
	if (x->p.vma_lock_faults) {
		ret = fault_once(x, v, addr, write, flags | x->p.ff_vma_lock, x->p.fs_is_ext4);
		if (ret == x->p.vf_retry)
			ret = fault_once(x, v, addr, write, flags, 0);
	} else {
		ret = fault_once(x, v, addr, write, flags, 0);
	}
	x->cur.result = ret;
	if (ret & x->p.vf_sigbus)
		x->cur.outcome = O_SIGBUS;
}

/* ------------------------------------------------------------------ */
/* shapes and output */

static uint64_t shape_hash(const struct pmx_shape *s)
{
	/* the header and the used trace entries, a multiple of 8 bytes (memset
	 * to 0 before the fault ran, padding included) */
	const uint64_t *w = (const uint64_t *)s;
	size_t n = (offsetof(struct pmx_shape, trace) + s->ntrace * sizeof(s->trace[0])) / 8;
	uint64_t h = 0x9E3779B97F4A7C15ULL;
	for (size_t k = 0; k < n; k++) {
		h ^= w[k];
		h *= 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	return h;
}

static int shape_eq(const struct pmx_shape *a, const struct pmx_shape *b)
{
	size_t n = offsetof(struct pmx_shape, trace) + a->ntrace * sizeof(a->trace[0]);
	return a->ntrace == b->ntrace && !memcmp(a, b, n);
}

static int index_put(struct pmx *x, int32_t id)
{
	if ((x->nshapes + 1) * 2 > x->index_cap) {
		int32_t cap = x->index_cap ? x->index_cap * 2 : 64;
		int32_t *ix = malloc(cap * sizeof(*ix));
		if (!ix)
			return -1;
		memset(ix, 0xff, cap * sizeof(*ix));
		for (int32_t k = 0; k < x->nshapes; k++) {
			if (k == id)
				continue;
			uint32_t j = x->shapes[k].hash & (cap - 1);
			while (ix[j] >= 0)
				j = (j + 1) & (cap - 1);
			ix[j] = k;
		}
		free(x->index);
		x->index = ix;
		x->index_cap = cap;
	}
	uint32_t j = x->shapes[id].hash & (x->index_cap - 1);
	while (x->index[j] >= 0)
		j = (j + 1) & (x->index_cap - 1);
	x->index[j] = id;
	return 0;
}

/* the id of shape s, added if new (-1: out of memory) */
static int32_t shape_id(struct pmx *x, const struct pmx_shape *s)
{
	uint64_t h = shape_hash(s);
	if (x->index_cap) {
		uint32_t j = h & (x->index_cap - 1);
		while (x->index[j] >= 0) {
			struct shape *t = &x->shapes[x->index[j]];
			if (t->hash == h && shape_eq(&t->s, s))
				return x->index[j];
			j = (j + 1) & (x->index_cap - 1);
		}
	}
	if (x->nshapes == x->shapes_cap) {
		int32_t cap = x->shapes_cap ? x->shapes_cap * 2 : 32;
		struct shape *ns = realloc(x->shapes, cap * sizeof(*ns));
		if (!ns)
			return -1;
		x->shapes = ns;
		x->shapes_cap = cap;
	}
	int32_t id = x->nshapes++;
	struct shape *t = &x->shapes[id];
	memset(t, 0, sizeof(*t));
	t->s = *s;
	t->hash = h;
	if (index_put(x, id))
		return -1;
	return id;
}

static inline char *put_u64(char *o, uint64_t v)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = '0' + v % 10;
		v /= 10;
	} while (v);
	while (n)
		*o++ = tmp[--n];
	return o;
}

/* ------------------------------------------------------------------ */
/* API */

struct pmx *pmx_new(const struct pmx_params *p, const struct pmx_vma *vmas, int32_t nvma, const int32_t *map_vma,
		    int32_t nmaps, const struct pmx_ext *exts, int64_t next)
{
	struct pmx *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->p = *p;
	x->vmas = malloc((nvma ? nvma : 1) * sizeof(*vmas));
	x->nvma = nvma;
	x->map_vma = malloc((nmaps ? nmaps : 1) * sizeof(*map_vma));
	x->nmaps = nmaps;
	int64_t nch = next ? (next + EXTENT_CHUNK - 1) / EXTENT_CHUNK : 1;
	x->chunks_cap = nch * 2 + 4;
	x->chunks = calloc(x->chunks_cap, sizeof(*x->chunks));
	x->heads = calloc(x->chunks_cap, sizeof(*x->heads));
	char *sep = malloc(p->sep_len + 1);
	if (!x->vmas || !x->map_vma || !x->chunks || !x->heads || !sep) {
		free(sep);
		pmx_free(x);
		return NULL;
	}
	memcpy(sep, p->sep, p->sep_len);
	x->p.sep = sep;
	memcpy(x->vmas, vmas, nvma * sizeof(*vmas));
	memcpy(x->map_vma, map_vma, nmaps * sizeof(*map_vma));
	/* FileState.__init__(): chunks of EXTENT_CHUNK, heads of the non-empty ones */
	x->nchunks = nch;
	for (int64_t c = 0; c < nch; c++) {
		int64_t lo = c * EXTENT_CHUNK, n = next - lo < EXTENT_CHUNK ? next - lo : EXTENT_CHUNK;
		if (n < 0)
			n = 0;
		x->chunks[c].cap = n ? n : 16;
		x->chunks[c].e = malloc(x->chunks[c].cap * sizeof(struct pmx_ext));
		if (!x->chunks[c].e) {
			pmx_free(x);
			return NULL;
		}
		memcpy(x->chunks[c].e, exts + lo, n * sizeof(struct pmx_ext));
		x->chunks[c].n = n;
		if (n)
			x->heads[x->nheads++] = exts[lo].logical;
	}
	x->max_rec = p->sep_len;
	return x;
}

void pmx_free(struct pmx *x)
{
	if (!x)
		return;
	struct htab *hs[2] = {&x->pmds, &x->entries};
	for (int k = 0; k < 2; k++) {
		for (uint64_t i = 0; i < hs[k]->cap; i++)
			free(hs[k]->e[i].p);
		free(hs[k]->e);
	}
	for (int64_t c = 0; c < x->nchunks; c++)
		free(x->chunks[c].e);
	free(x->chunks);
	free(x->heads);
	for (int32_t k = 0; k < x->nshapes; k++) {
		free(x->shapes[k].lit);
		free(x->shapes[k].lens);
		free(x->shapes[k].slots);
	}
	free(x->shapes);
	free(x->index);
	free(x->vmas);
	free(x->map_vma);
	free((char *)x->p.sep);
	free(x);
}

static inline int32_t vma_of(const struct pmx *x, int32_t map)
{
	return map >= 0 && map < x->nmaps ? x->map_vma[map] : -1;
}

int64_t pmx_check(const struct pmx *x, const uint8_t *ops, const int32_t *maps, const int64_t *offsets, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		int32_t k = vma_of(x, maps[i]);
		if (ops[i] > 1 || k < 0)
			return i;
		const struct pmx_vma *v = &x->vmas[k];
		if (offsets[i] < 0 || offsets[i] >= v->end - v->start || (ops[i] && !v->writable))
			return i;
	}
	return n;
}

int32_t pmx_run(struct pmx *x, const uint8_t *ops, const int32_t *maps, const int64_t *offsets, int64_t n,
		int64_t *pos, char *out, int64_t cap, int64_t *used)
{
	char *o = out, *end = out + cap;
	const char *sep = x->p.sep;
	int32_t sep_len = x->p.sep_len;
	int64_t i = *pos;
	int32_t rc = PMX_DONE;
	for (; i < n; i++) {
		if (end - o < x->max_rec) {
			rc = PMX_FULL;
			break;
		}
		if (i + PREFETCH < n && x->pmds.cap) {
			/* the PMD slot of an access a few ahead: the table is far
			 * bigger than the caches, and the accesses are known */
			const struct pmx_vma *w = &x->vmas[vma_of(x, maps[i + PREFETCH])];
			int64_t k = (w->start + offsets[i + PREFETCH]) >> PMD_SHIFT;
			__builtin_prefetch(&x->pmds.e[(hkey(k) >> 20) & (x->pmds.cap - 1)]);
		}
		int32_t vi = vma_of(x, maps[i]);
		const struct pmx_vma *v = &x->vmas[vi];
		int write = ops[i];
		int64_t addr = v->start + offsets[i];
		int64_t page = addr & ~(PAGE_SIZE - 1);
		struct pmx_shape *f = &x->cur;
		memset(f, 0, offsetof(struct pmx_shape, trace));
		f->op = write;
		f->vma = vi;
		/* engine._run()'s fast path: the translation is there with the
		 * permission needed (a hit: one shape per op and mapping) */
		struct hent *s = h_find(&x->pmds, addr >> PMD_SHIFT);
		int hit = 0;
		if (s && s->kind == S_HUGE)
			hit = s->w || !write;
		else if (s && s->kind == S_TABLE) {
			struct table *t = s->p;
			int bit = (addr >> PAGE_SHIFT) & COLOUR;
			hit = bm_test(&t->present, bit) && (!write || bm_test(&t->writable, bit));
		}
		if (hit) {
			f->hit = 1;
		} else {
			memset(f->trace, 0, sizeof(f->trace));
			handle_mm_fault(x, v, page, write, write ? x->p.wflags : x->p.rflags);
			if (x->failed) {
				*pos = i;
				*used = o - out;
				return x->failed == 2 ? PMX_OVERFLOW : PMX_NOMEM;
			}
		}
		int32_t id = shape_id(x, f);
		if (id < 0) {
			*pos = i;
			*used = o - out;
			return PMX_NOMEM;
		}
		struct shape *t = &x->shapes[id];
		t->count++;
		if (t->has_tpl <= 0) {
			x->pending.index = i;
			x->pending.address = page;
			x->pending.fault_addr = page;
			x->pending.shape = id;
			rc = t->has_tpl == 0 ? PMX_NEW_SHAPE : PMX_ENCODE;
			i++;
			break;
		}
		/* engine.Prediction.iter_encoded(): the template with the values
		 * i, a, f, p */
		if (o != out) {
			memcpy(o, sep, sep_len);
			o += sep_len;
		}
		const char *lit = t->lit;
		for (int32_t k = 0;; k++) {
			memcpy(o, lit, t->lens[k]);
			o += t->lens[k];
			lit += t->lens[k];
			if (k == t->nslots)
				break;
			uint64_t val;
			switch (t->slots[k]) {
			case 'i':
				val = i;
				break;
			case 'a':
			case 'f':
				val = page;
				break;
			default: /* 'p' */
				val = v->pgoff + ((page - v->start) >> PAGE_SHIFT);
			}
			o = put_u64(o, val);
		}
	}
	*pos = i;
	*used = o - out;
	return rc;
}

const struct pmx_shape *pmx_shape(const struct pmx *x, int32_t id) { return &x->shapes[id].s; }
const struct pmx_pending *pmx_pending(const struct pmx *x) { return &x->pending; }
int64_t pmx_shape_count(const struct pmx *x, int32_t id) { return x->shapes[id].count; }
int32_t pmx_nshapes(const struct pmx *x) { return x->nshapes; }

int32_t pmx_set_template(struct pmx *x, int32_t id, const char *lit, const int64_t *lens, const char *slots,
			 int32_t nslots)
{
	struct shape *t = &x->shapes[id];
	if (nslots < 0) {
		t->has_tpl = -1;
		return 0;
	}
	int64_t total = 0;
	for (int32_t k = 0; k <= nslots; k++)
		total += lens[k];
	t->lit = malloc(total ? total : 1);
	t->lens = malloc((nslots + 1) * sizeof(*lens));
	t->slots = malloc(nslots ? nslots : 1);
	if (!t->lit || !t->lens || !t->slots)
		return PMX_NOMEM;
	memcpy(t->lit, lit, total);
	memcpy(t->lens, lens, (nslots + 1) * sizeof(*lens));
	memcpy(t->slots, slots, nslots);
	t->nslots = nslots;
	t->has_tpl = 1;
	int64_t rec = total + 20 * nslots + x->p.sep_len;
	if (rec > x->max_rec)
		x->max_rec = rec;
	return 0;
}

/* ------------------------------------------------------------------ */
/* the accesses of a case, read straight into columns */

static inline const char *ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* a JSON string without escapes at p (after its opening quote): its end */
static inline const char *plain_string(const char *p, const char *e)
{
	while (p < e && *p != '"') {
		if (*p == '\\' || (unsigned char)*p < 0x20)
			return NULL;
		p++;
	}
	return p < e ? p : NULL;
}

/* a non-negative integer below 2^56, as JSON writes it ('0' or no leading
 * zero, no sign, fraction or exponent) */
static inline const char *small_uint(const char *p, const char *e, int64_t *out)
{
	if (p >= e || *p < '0' || *p > '9')
		return NULL;
	if (*p == '0') {
		p++;
		*out = 0;
	} else {
		int64_t v = 0;
		while (p < e && *p >= '0' && *p <= '9') {
			v = v * 10 + (*p++ - '0');
			if (v >= (1LL << 56))
				return NULL;
		}
		*out = v;
	}
	if (p < e && (*p == '.' || *p == 'e' || *p == 'E'))
		return NULL;
	return p;
}

int64_t pmx_count_objects(const char *s, int64_t len)
{
	int64_t n = 0;
	for (const char *p = s; (p = memchr(p, '{', s + len - p)); p++)
		n++;
	return n;
}

int64_t pmx_scan_accesses(const char *s, int64_t len, const char *ids, const int64_t *id_lens, int32_t nids,
			  int32_t only, uint8_t *ops, int32_t *maps, int64_t *offsets, int64_t *lengths, int64_t cap)
{
	const char *p = s, *e = s + len;
	int64_t n = 0;
	p = ws(p, e);
	if (p >= e || *p++ != '[')
		return -1;
	p = ws(p, e);
	if (p < e && *p == ']')
		return ws(p + 1, e) == e ? 0 : -1;
	for (;;) {
		if (n >= cap || p >= e || *p++ != '{')
			return -1;
		int seen = 0; /* bits: op, mapping, offset, length */
		int op = -1;
		int32_t map = only;
		int64_t off = 0, ln = 0;
		p = ws(p, e);
		for (;;) {
			if (p >= e || *p++ != '"')
				return -1;
			const char *k = p, *ke = plain_string(p, e);
			if (!ke)
				return -1;
			p = ws(ke + 1, e);
			if (p >= e || *p++ != ':')
				return -1;
			p = ws(p, e);
			size_t kl = ke - k;
			int bit;
			if (kl == 2 && !memcmp(k, "op", 2)) {
				bit = 1;
				if (p >= e || *p++ != '"')
					return -1;
				const char *v = p, *ve = plain_string(p, e);
				if (!ve)
					return -1;
				if (ve - v == 4 && !memcmp(v, "read", 4))
					op = 0;
				else if (ve - v == 5 && !memcmp(v, "write", 5))
					op = 1;
				else
					return -1;
				p = ve + 1;
			} else if (kl == 7 && !memcmp(k, "mapping", 7)) {
				bit = 2;
				if (p >= e || *p++ != '"')
					return -1;
				const char *v = p, *ve = plain_string(p, e);
				if (!ve)
					return -1;
				map = -1;
				const char *id = ids;
				for (int32_t j = 0; j < nids; id += id_lens[j++]) {
					if (ve - v == id_lens[j] && !memcmp(v, id, id_lens[j])) {
						map = j;
						break;
					}
				}
				if (map < 0)
					return -1;
				p = ve + 1;
			} else if (kl == 6 && !memcmp(k, "offset", 6)) {
				bit = 4;
				if (!(p = small_uint(p, e, &off)))
					return -1;
			} else if (kl == 6 && !memcmp(k, "length", 6)) {
				bit = 8;
				if (!(p = small_uint(p, e, &ln)))
					return -1;
			} else {
				return -1;
			}
			if (seen & bit) /* a key twice */
				return -1;
			seen |= bit;
			p = ws(p, e);
			if (p < e && *p == ',') {
				p = ws(p + 1, e);
				continue;
			}
			if (p < e && *p == '}') {
				p++;
				break;
			}
			return -1;
		}
		if (op < 0 || map < 0)
			return -1;
		ops[n] = op;
		maps[n] = map;
		offsets[n] = off;
		lengths[n] = ln;
		n++;
		p = ws(p, e);
		if (p < e && *p == ',') {
			p = ws(p + 1, e);
			continue;
		}
		if (p < e && *p == ']')
			return ws(p + 1, e) == e ? n : -1;
		return -1;
	}
}

/* ------------------------------------------------------------------ */
/* the state, handed to the Python model (core.hand_over()) */

/* the used keys of h, their kinds (and w/z), and the bitmaps (words per
 * key) of those of kind bm_kind */
static int64_t export_table(const struct htab *h, int bm_kind, int64_t words, int64_t *keys, uint8_t *kinds,
			    uint8_t *w, uint8_t *z, uint64_t *bits, int64_t cap)
{
	int64_t n = 0;
	for (uint64_t i = 0; i < h->cap && n < cap; i++) {
		const struct hent *e = &h->e[i];
		if (!e->used || e->kind == 0) /* S_NONE, E_NONE: absent */
			continue;
		keys[n] = e->key;
		kinds[n] = e->kind;
		if (w) {
			w[n] = e->w;
			z[n] = e->z;
		}
		if (e->kind == bm_kind)
			memcpy(&bits[words * n], e->p, words * sizeof(uint64_t));
		n++;
	}
	return n;
}

int64_t pmx_export_pmds(const struct pmx *x, int64_t *keys, uint8_t *kinds, uint8_t *w, uint8_t *z, uint64_t *bits,
			int64_t cap)
{
	return export_table(&x->pmds, S_TABLE, sizeof(struct table) / 8, keys, kinds, w, z, bits, cap);
}

int64_t pmx_export_entries(const struct pmx *x, int64_t *keys, uint8_t *kinds, uint64_t *bits, int64_t cap)
{
	return export_table(&x->entries, E_PTE, sizeof(struct ptes) / 8, keys, kinds, NULL, NULL, bits, cap);
}

int64_t pmx_nchunks(const struct pmx *x) { return x->nchunks; }
int64_t pmx_nextents(const struct pmx *x)
{
	int64_t n = 0;
	for (int64_t c = 0; c < x->nchunks; c++)
		n += x->chunks[c].n;
	return n;
}
/* keys in the PMD slot (0) or entry (1) table: at least as many as export */
int64_t pmx_table_count(const struct pmx *x, int32_t which) { return which ? x->entries.n : x->pmds.n; }

int64_t pmx_export_extents(const struct pmx *x, struct pmx_ext *out, int64_t *chunk_lens)
{
	int64_t n = 0;
	for (int64_t c = 0; c < x->nchunks; c++) {
		memcpy(&out[n], x->chunks[c].e, x->chunks[c].n * sizeof(*out));
		n += x->chunks[c].n;
		chunk_lens[c] = x->chunks[c].n;
	}
	return n;
}

void pmx_file_state(const struct pmx *x, int64_t out[3])
{
	out[0] = x->p.datasync_dirty;
	out[1] = x->p.next_phys;
	out[2] = x->p.zero_page_alloc_seen;
}

void pmx_counters(const struct pmx *x, int64_t out[4]) { memcpy(out, x->counters, sizeof(x->counters)); }
