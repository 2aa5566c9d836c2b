/* SPDX-License-Identifier: Apache-2.0 */
/*
 * explain_core.h - the compiled core of 'pmemtrace explain --json/--jsonl':
 * plain fsdax read/write faults run in C, and their JSON written from
 * templates that Python made with its own encoder.
 *
 * The Python model (pmemtrace/model) is the one source of every rule.  This
 * core mirrors, function by function, the part of it that a case of the
 * declared subset reaches (docs/architecture.md, "The compiled explain
 * core"); pmemtrace/model/core.py decides which cases those are, turns the
 * core's compact records (a "shape" per distinct kind of fault) into the
 * model's own Fault objects, and tests/test_explain_core.py compares the
 * two paths byte for byte.  A rule changed in Python and not here makes that
 * test fail.
 *
 * The declarations between PMT_CDEF_BEGIN and PMT_CDEF_END are also fed to
 * cffi's cdef() by cffi_build/build_explain.py, so they must stay plain C.
 */
#ifndef PMEMTRACE_EXPLAIN_CORE_H
#define PMEMTRACE_EXPLAIN_CORE_H

#include <stddef.h>
#include <stdint.h>

/* PMT_CDEF_BEGIN */
/* What of the profile, device, file and process the fault paths read
 * (pmemtrace/model/profiles.py Profile, Sim, FileState); names of called
 * functions are codes into pmemtrace/model/core.py NAMES. */
struct pmx_params {
	int32_t pmd_sigbus_after_vma_checks;
	int32_t pmd_needs_devmap;
	int32_t struct_pages;
	int32_t pmd_insert_function;        /* name code */
	int32_t zero_pmd_via_insert;
	int32_t load_hole_fallback_if_pmd_present;
	int32_t pte_insert_function[2];     /* name codes */
	int32_t pte_insert_is_page_mkwrite; /* pte_insert_function[0] == "vmf_insert_page_mkwrite" */
	int32_t pte_done_traces_major;
	int32_t vma_lock_faults;
	int32_t orig_pte_valid_flag;
	int32_t wp_huge_pmd_private_huge_fault;
	int32_t thp_disable;
	int32_t fs_is_ext4;
	int64_t rflags;                     /* FAULT_FLAG_* of a user read fault */
	int64_t wflags;                     /* ... and of a write fault */
	int64_t file_size;
	int64_t max_pgoff;
	int64_t data_start;
	int64_t hole_alloc_align;
	int64_t next_phys;
	int32_t datasync_dirty;
	int32_t zero_page_alloc_seen;       /* "thp_zero_page_alloc" in Sim.flags_seen */
	const char *sep;                    /* between two results in the output */
	int32_t sep_len;
	/* VM_FAULT_* and FAULT_FLAG_* values (pmemtrace/events.py) */
	int64_t vf_nopage, vf_fallback, vf_sigbus, vf_major, vf_done_cow, vf_needdsync, vf_retry;
	int64_t ff_write, ff_mkwrite, ff_vma_lock, ff_orig_pte_valid;
};

struct pmx_vma {   /* one per mapping, in AddressSpace.vmas order */
	int64_t start;
	int64_t end;
	int64_t pgoff;
	int32_t shared;
	int32_t sync;
	int32_t writable;
	int32_t nohugepage;
};

struct pmx_ext {
	int64_t logical;
	int64_t physical;
	int64_t length;
	int32_t unwritten;
};

/* One entry of a fault's trace: a called function (is_event 0) or an
 * fs_dax event (name, flags, result; has_values 0: (name, None, None)). */
struct pmx_trace {
	int32_t name;
	int32_t is_event;
	int32_t has_values;
	int64_t flags;
	int64_t result;
};

enum { PMX_TRACE_MAX = 24 };

/* A shape: what two accesses share when their JSON differs only in the
 * access index, address, fault address and page offset. */
struct pmx_shape {
	int32_t hit;        /* 1: nothing new (no fault); the rest is unused */
	int32_t op;         /* 0 read, 1 write */
	int32_t vma;        /* index of the mapping/VMA */
	int32_t outcome;    /* code, core.py OUTCOMES */
	int32_t level;      /* code, core.py LEVELS */
	int32_t reason;     /* code, core.py REASONS (0: None) */
	int64_t result;
	int32_t ntrace;
	struct pmx_trace trace[24];
};

/* What pmx_run() stopped for: PMX_FULL, the output buffer is full (write
 * it, run again); PMX_NEW_SHAPE, the pending access has a shape without a
 * template yet; PMX_ENCODE, its shape has none (Python encodes it). */
enum { PMX_DONE = 0, PMX_FULL = 1, PMX_NEW_SHAPE = 2, PMX_ENCODE = 3, PMX_NOMEM = -1, PMX_OVERFLOW = -2 };

struct pmx_pending {
	int64_t index;
	int64_t address;
	int64_t fault_addr;
	int32_t shape;
};

struct pmx;

/* vmas: AddressSpace.vmas at the start; map_vma: for each of
 * case.mappings, the index of its VMA (-1: not mapped or refused). */
struct pmx *pmx_new(const struct pmx_params *p, const struct pmx_vma *vmas, int32_t nvma, const int32_t *map_vma,
		    int32_t nmaps, const struct pmx_ext *exts, int64_t next);
void pmx_free(struct pmx *x);
/* The first access outside the subset the core runs (a read or write at an
 * offset inside a mapped mapping, writes to writable mappings only), or n:
 * the core runs the accesses before it, the Python model the rest. */
int64_t pmx_check(const struct pmx *x, const uint8_t *ops, const int32_t *maps, const int64_t *offsets,
		  int64_t n);
/* Runs accesses from *pos on, writing their JSON to out (cap bytes);
 * returns PMX_*, with *used bytes written and *pos the next access. */
int32_t pmx_run(struct pmx *x, const uint8_t *ops, const int32_t *maps, const int64_t *offsets, int64_t n,
		int64_t *pos, char *out, int64_t cap, int64_t *used);
const struct pmx_shape *pmx_shape(const struct pmx *x, int32_t id);
const struct pmx_pending *pmx_pending(const struct pmx *x);
int64_t pmx_shape_count(const struct pmx *x, int32_t id);
int32_t pmx_nshapes(const struct pmx *x);
/* The template of a shape: literal parts (their lengths in lens[0..nslots])
 * around nslots values, each 'i' (index), 'a' (address), 'f' (fault
 * address) or 'p' (page offset); nslots -1: no template. */
int32_t pmx_set_template(struct pmx *x, int32_t id, const char *lit, const int64_t *lens, const char *slots,
			 int32_t nslots);
/* Counters at the end: thp_fault_fallback, thp_split_pmd,
 * thp_zero_page_alloc, pgmajfault (Sim.counters). */
void pmx_counters(const struct pmx *x, int64_t out[4]);
/* The state after the core's accesses, for the Python model to go on with
 * (core.hand_over()): PMD slots (kind 1 huge, 2 table; a table's present,
 * writable, anon, zero bitmaps as 32 words), xarray entries (kind 1 empty,
 * 2 zero, 3 data, 4 PTE-order: present, zero as 16 words), the extents in
 * their chunks, and datasync_dirty, next_phys, zero_page_alloc_seen.
 * pmx_export_pmds/entries return how many they wrote (at most cap). */
int64_t pmx_export_pmds(const struct pmx *x, int64_t *keys, uint8_t *kinds, uint8_t *w, uint8_t *z, uint64_t *bits,
			int64_t cap);
int64_t pmx_export_entries(const struct pmx *x, int64_t *keys, uint8_t *kinds, uint64_t *bits, int64_t cap);
int64_t pmx_nchunks(const struct pmx *x);
int64_t pmx_nextents(const struct pmx *x);
int64_t pmx_export_extents(const struct pmx *x, struct pmx_ext *out, int64_t *chunk_lens);
void pmx_file_state(const struct pmx *x, int64_t out[3]);
/* keys in the PMD slot (which 0) or entry (1) table: an upper bound of
 * what pmx_export_pmds/entries write */
int64_t pmx_table_count(const struct pmx *x, int32_t which);
/* The accesses of a case (the JSON array, msgspec.Raw) into columns when
 * each is {"op": "read"|"write", "mapping": ID, "offset": N, "length": N}
 * in plain JSON (keys in any order, offset/length optional, mapping too
 * when only >= 0 names the one mapping; ids: the mapping ids' UTF-8
 * bytes, concatenated); -1 for anything else (then msgspec decodes it, and
 * says what is wrong).  Returns the number of accesses (<= cap). */
/* The '{' in s: at least one per access. */
int64_t pmx_count_objects(const char *s, int64_t len);
int64_t pmx_scan_accesses(const char *s, int64_t len, const char *ids, const int64_t *id_lens, int32_t nids,
			  int32_t only, uint8_t *ops, int32_t *maps, int64_t *offsets, int64_t *lengths, int64_t cap);
/* PMT_CDEF_END */

#endif
