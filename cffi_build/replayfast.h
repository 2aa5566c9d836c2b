/* SPDX-License-Identifier: Apache-2.0 */
/*
 * replayfast.h - the hot path of 'pmemtrace replay' on fs_dax text traces:
 * a tokenizer for the plain fault lines (dax_pmd_fault[_done],
 * dax_pte_fault[_done]) and the views' counting for them, without a Python
 * object per line.
 *
 * What it decides is narrow on purpose (pmemtrace/live/fasttext.py drives it):
 *
 * - It takes only lines that pmemtrace.live.parse.tokenize_fault_line takes,
 *   with the same values (a stricter grammar: printable ASCII, spaces,
 *   numbers as 0x<hex> or canonical decimal that fit in 64 bits).  Every
 *   other line is handed back (RF_LINE) and Python parses it.
 * - Flag and result texts are decoded by Python (RF_TOKEN asks for one the
 *   first time; rf_set_token caches the answer), so the flag tables stay in
 *   pmemtrace.events.
 * - It counts into rows that Python created and registered (rf_add_row);
 *   an event whose row does not exist yet is handed back (RF_LINE).
 * - A PMD fallback, when there is an attributor (the Python model gives its
 *   reason), is handed back unless its situation - the reuse key of
 *   pmemtrace/live/attrcache.py CachedAttributor.situation, computed here
 *   from the event and the file's history - is one Python attributed
 *   before and told of (rf_learn), and its row already has that reason
 *   (rf_allow): then it is counted here.  Without an attributor
 *   (--no-reasons) it counts fallbacks too.
 * - The attributor's entry state (earlier faults on each file) is kept as
 *   the last few entries per file, every fault-done event in order: those
 *   counted here, and those Python observes itself (the ones handed back,
 *   rf_note for lines this code did not parse), so the situation key sees
 *   what Python's would.  Python takes the entries it has not seen
 *   (rf_take_history) before it runs the model or handles an event of that
 *   file.
 *
 * No function allocates per event; allocation failure returns RF_NOMEM.
 */
#ifndef PMEMTRACE_REPLAYFAST_H
#define PMEMTRACE_REPLAYFAST_H

#include <stddef.h>
#include <stdint.h>

/* PMT_CDEF_BEGIN */
#define RF_DONE 0     /* all complete lines of the buffer consumed */
#define RF_LINE 1     /* Python must handle the line [pos, line_end) */
#define RF_TOKEN 2    /* Python must decode the flag text [tok_off, tok_off + tok_len) */
#define RF_SWITCH 3   /* a line with '\r': Python reads the rest of the file from pos */
#define RF_NOMEM 4    /* out of memory */

struct rf_hist {
	uint64_t pgoff;
	uint64_t result;
	uint8_t write;
	uint8_t kind;        /* 1 dax_pmd_fault_done, 3 dax_pte_fault_done */
	uint8_t py;          /* Python observed it itself (not handed over by rf_take_history) */
};

struct rf_ctx {
	/* set by Python at creation */
	int64_t keep_pid;    /* -1: every process */
	int observe;         /* 1: keep the attributor's entry state */
	uint64_t write_flag, sigbus_bit, fallback_bit;
	/* reuse of attributions (pmemtrace.live.attrcache): 1 when C may count a
	 * fallback whose situation Python has attributed before; prior is the
	 * attributor's history (the entries a fallback's case replays), the bits
	 * those of VM_SHARED and VM_NOHUGEPAGE */
	int reuse;
	int prior;
	uint64_t shared_bit, nohuge_bit;
	/* 1 (watch): a dax_pte_fault start, which has no row of its own, is
	 * counted only where its process and file have one (the session's
	 * filter kept a record of theirs), else handed to Python */
	int pte_start_needs_file;
	/* out: counters since Python last read (and zeroed) them */
	int64_t lines, events;
	/* out: counts of the five event kinds (the four faults, dax_pmd_load_hole)
	 * that reached the views, and their sum */
	int64_t by_kind[5];
	int64_t view_events;
	/* out: where the last status points */
	size_t pos, line_end, tok_off, tok_len;
	int tok_kind;        /* 0 fault flags, 1 result */
	/* .dat: what the pages said (rf_dat_piece), and the record handed back (RF_LINE) */
	int64_t dat_records, dat_skipped, dat_lost, dat_lost_unknown;
	uint64_t rec_ts;
	int64_t rec_off, rec_eid, rec_slot;
	int need_slot;       /* RF_MORE: the slot whose next piece rf_dat_run needs */
	/* out: of the event handed back last: 1 when its entry is in the C
	 * history already (rec_noted: Python calls rf_note for the others it
	 * observes) and 1 when it is a fallback whose situation key C kept
	 * (rec_key: rf_learn may store it); fallbacks counted by reuse */
	int rec_noted, rec_key;
	int64_t reuse_hits;
	void *priv;
};

/* the interface's version: pmemtrace/live/fasttext.py uses a module whose
 * rf_abi() differs from its RF_ABI (a stale build) as if it were missing */
int rf_abi(void);
struct rf_ctx *rf_new(int history);
void rf_free(struct rf_ctx *ctx);
int rf_run(struct rf_ctx *ctx, const char *buf, size_t len, size_t pos);
int rf_set_token(struct rf_ctx *ctx, int kind, const char *text, size_t len, int64_t value);
int rf_add_row(struct rf_ctx *ctx, int64_t row, uint64_t pid, uint64_t dev, uint64_t ino,
	       int bounded, uint64_t vm_start, uint64_t vm_end);
/* which: 0 pmd, 1 pte, 2 sigbus, 3 fallback (counted only without an attributor),
 * 4 huge_zero (dax_pmd_load_hole, .dat only) */
int64_t rf_row_count(struct rf_ctx *ctx, int64_t row, int which);
/* the entries kept for (dev, ino) since the last take, oldest first, into
 * four arrays of max entries (arrays: Python unpacks them in one call each) */
int rf_take_history(struct rf_ctx *ctx, uint64_t dev, uint64_t ino, uint64_t *pgoff, uint64_t *result,
		    uint8_t *write, uint8_t *kind, int max);

/* An entry of a fault-done event Python observed that C did not hand back
 * (kind 1 or 3), at its place in the file's history; kind -1: Python
 * observed one C cannot hold (the file's fallbacks then always come back). */
int rf_note(struct rf_ctx *ctx, uint64_t dev, uint64_t ino, uint64_t pgoff, uint64_t result, int write, int kind);
/* The situation key of the fallback handed back last (rec_key) now stands
 * for reason code number code (Python's numbering). */
int rf_learn(struct rf_ctx *ctx, int64_t code);
/* Row row may count fallbacks of code in C from now on (Python has the code
 * among the row's reasons and keeps no more evidence of it), and how many
 * it counted. */
int rf_allow(struct rf_ctx *ctx, int64_t row, int64_t code);
int64_t rf_reason_count(struct rf_ctx *ctx, int64_t row, int64_t code);

/* trace-cmd .dat: ring-buffer pages decoded in C (little-endian files), the
 * CPUs merged by timestamp (the lower CPU first on a tie), and the fault
 * events counted as above; other fs_dax events, fallbacks and new rows are
 * handed back (RF_LINE with rec_*: Python unpacks that record itself).
 * The pages come a piece at a time, when the merge needs them (RF_MORE):
 * memory holds one piece per CPU, not the file.  Anything unusual in the
 * pages (what pmemtrace/live/ftrace_binary.py would call corrupt, a CPU
 * whose timestamps go back) is RF_BAD: Python then replays the whole file
 * through its own decoder, with new views. */
#define RF_BAD 5
#define RF_MORE 6     /* rf_dat_run needs the next piece of slot need_slot (rf_dat_piece or rf_dat_end) */
/* the page header's layout (ftrace_binary.PageHeader) and the number of
 * slots (the CPUs with data, in CPU order) */
int rf_dat_layout(struct rf_ctx *ctx, int page_size, int ts_offset, int commit_offset, int commit_size,
		  int data_offset, int slots);
/* an event id to decode: kind 0..3 (the fault events), 4 (dax_pmd_load_hole)
 * or 5 (handed back),
 * the bytes its record must have (struct size), and for each of pid, dev,
 * ino, vm_start, vm_end, address, pgoff, max_pgoff, flags, result, vm_flags
 * its offset, size and signedness (offset -1: absent) */
int rf_dat_event(struct rf_ctx *ctx, int eid, int kind, int size, const int32_t *fields);
/* the next piece (whole pages) of slot's data, when rf_dat_run asked for
 * it; buf must live until rf_dat_run next asks for this slot (or the
 * replay ends) */
int rf_dat_piece(struct rf_ctx *ctx, int slot, const char *buf, size_t len);
/* slot has no more pieces */
int rf_dat_end(struct rf_ctx *ctx, int slot);
/* merge and count from where the last call stopped: RF_DONE, RF_LINE or RF_MORE */
int rf_dat_run(struct rf_ctx *ctx);

/* Live reads (pmemtrace/live/fasttext.py RawCounting: each CPU's
 * trace_pipe_raw of a tracefs instance, a round of whole pages at a time,
 * the rounds merged by timestamp one by one as rawpipe.RawPipes.read does):
 * rf_dat_round starts a round of slots (its CPUs with pages), every slot
 * empty; Python then gives each slot its one piece (rf_dat_piece, which
 * decodes it all: RF_BAD before anything is counted) and ends it
 * (rf_dat_end) before rf_dat_run merges and counts. */
int rf_dat_round(struct rf_ctx *ctx, int slots);
/* The counters of the rows counted into since the last call, at most max
 * rows: their numbers into rows, their NCNT counters (pmd, pte, sigbus,
 * fallback, huge_zero, as rf_row_count's which) into counts[i * NCNT + k];
 * those counters are zeroed.  Returns how many rows it filled. */
#define RF_NCNT 5
int64_t rf_take_counts(struct rf_ctx *ctx, int64_t *rows, int64_t *counts, int64_t max);
/* PMT_CDEF_END */

#endif
