/* SPDX-License-Identifier: Apache-2.0 */
/*
 * replayfast.c - see replayfast.h.  The grammar mirrors
 * pmemtrace/live/parse.py:tokenize_fault_line token for token; where that
 * function would accept more (tabs, 0X, 0o, underscores, numbers past 64
 * bits, non-ASCII), this code hands the line to Python instead.
 */
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "replayfast.h"

#define MAX_TOKENS 40
#define TOKEN_TEXT 64

/* K_HOLE (dax_pmd_load_hole) only from .dat files whose format of it has no
 * vm_start, vm_end (as 7.2's): text lines of it and other formats go to Python */
enum { K_PMD = 0, K_PMD_DONE = 1, K_PTE = 2, K_PTE_DONE = 3, K_HOLE = 4 };
#define NCNT RF_NCNT /* counters per row */

/* --- a small open-addressing hash of up to 5 u64 keys to an int64 --- */
struct hent {
	uint64_t k[5];
	int64_t v;
	int used;
};
struct htab {
	struct hent *e;
	size_t cap, n;
	size_t last; /* the entry found last: consecutive records mostly ask for it again */
};

/* a hash of n u64 words; seed picks one of several independent ones */
static uint64_t hash_words(const uint64_t *k, size_t n, uint64_t seed)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ seed;
	for (size_t i = 0; i < n; i++) {
		h ^= k[i] + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
		h *= 0xff51afd7ed558ccdull;
	}
	return h ^ (h >> 33);
}

static uint64_t hkey(const uint64_t *k)
{
	return hash_words(k, 5, 0);
}

static struct hent *hfind(struct htab *t, const uint64_t *k)
{
	if (!t->cap)
		return NULL;
	struct hent *l = &t->e[t->last];
	if (l->used && !memcmp(l->k, k, sizeof l->k))
		return l;
	size_t m = t->cap - 1, i = hkey(k) & m;
	while (t->e[i].used) {
		if (!memcmp(t->e[i].k, k, sizeof t->e[i].k)) {
			t->last = i;
			return &t->e[i];
		}
		i = (i + 1) & m;
	}
	return NULL;
}

static int hput(struct htab *t, const uint64_t *k, int64_t v)
{
	if ((t->n + 1) * 2 > t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 64;
		struct hent *ne = calloc(nc, sizeof *ne);
		if (!ne)
			return RF_NOMEM;
		for (size_t i = 0; i < t->cap; i++) {
			if (!t->e[i].used)
				continue;
			size_t j = hkey(t->e[i].k) & (nc - 1);
			while (ne[j].used)
				j = (j + 1) & (nc - 1);
			ne[j] = t->e[i];
		}
		free(t->e);
		t->e = ne;
		t->cap = nc;
		t->last = 0;
	}
	size_t m = t->cap - 1, i = hkey(k) & m;
	while (t->e[i].used) {
		if (!memcmp(t->e[i].k, k, sizeof t->e[i].k)) {
			t->e[i].v = v;
			return 0;
		}
		i = (i + 1) & m;
	}
	memcpy(t->e[i].k, k, sizeof t->e[i].k);
	t->e[i].v = v;
	t->e[i].used = 1;
	t->n++;
	return 0;
}

/* --- situation keys of attributed fallbacks: variable-length u64 arrays to
 * a code, kept in a pool ([code, words...] each), found through the table
 * above by two independent hashes and the length, and compared in full: a
 * collision of both hashes finds nothing (that key is never reused) --- */
struct ktab {
	struct htab index; /* {hash, hash, length} -> offset of the entry in pool */
	uint64_t *pool;
	size_t plen, pcap;
};

static void kindex(const uint64_t *k, size_t n, uint64_t *ik)
{
	ik[0] = hash_words(k, n, 1);
	ik[1] = hash_words(k, n, 2);
	ik[2] = n;
	ik[3] = ik[4] = 0;
}

/* the entry of key k (its code first), or NULL */
static uint64_t *kfind(struct ktab *t, const uint64_t *k, size_t n)
{
	uint64_t ik[5];
	kindex(k, n, ik);
	struct hent *h = hfind(&t->index, ik);
	if (!h)
		return NULL;
	uint64_t *e = t->pool + h->v;
	return memcmp(e + 1, k, n * sizeof *k) ? NULL : e;
}

static int kput(struct ktab *t, const uint64_t *k, size_t n, int64_t code)
{
	uint64_t ik[5];
	kindex(k, n, ik);
	struct hent *h = hfind(&t->index, ik);
	if (h) {
		uint64_t *e = t->pool + h->v;
		if (!memcmp(e + 1, k, n * sizeof *k))
			e[0] = (uint64_t)code;
		return 0; /* (or another key with both hashes: this one stays unlearned) */
	}
	if (t->plen + n + 1 > t->pcap) {
		size_t nc = t->pcap ? t->pcap * 2 : 1024;
		while (nc < t->plen + n + 1)
			nc *= 2;
		uint64_t *np = realloc(t->pool, nc * sizeof *np);
		if (!np)
			return RF_NOMEM;
		t->pool = np;
		t->pcap = nc;
	}
	if (hput(&t->index, ik, (int64_t)t->plen))
		return RF_NOMEM;
	t->pool[t->plen] = (uint64_t)code;
	memcpy(t->pool + t->plen + 1, k, n * sizeof *k);
	t->plen += n + 1;
	return 0;
}

/* --- .dat state --- */
#define DAT_SLOTS 1024
#define DAT_FIELDS 11 /* pid, dev, ino, vm_start, vm_end, address, pgoff, max_pgoff, flags, result, vm_flags */
struct drec {
	uint64_t ts;
	uint32_t off; /* into the slot's piece */
	int32_t ev;   /* index into dat.ev */
};
/* one CPU: the records of its current piece (the window: a piece is asked
 * for only when the records of the one before are all merged), so memory
 * holds one piece per CPU, not the file */
struct dslot {
	struct drec *r;
	size_t n, cap, next;
	uint64_t last_ts;
	const unsigned char *buf; /* the current piece (Python holds it) */
	int ended;                /* rf_dat_end: no piece after this one */
};
struct devent {
	int eid, kind, size;
	int32_t f[DAT_FIELDS][3];
	int counted;                /* its records may be counted here (else all go to Python) */
	int nf;                     /* fields present ... */
	uint8_t fi[DAT_FIELDS];     /* ... their indices */
};
struct dat {
	int page_size, ts_off, commit_off, commit_size, data_off;
	int16_t by_eid[65536]; /* index into ev + 1, 0: not wanted */
	struct devent *ev;
	size_t nev, evcap;
	struct dslot slot[DAT_SLOTS];
	int nslots;
};

/* --- state --- */
struct bound {
	uint64_t vs, ve;
	int64_t row;
};
struct file {              /* one (pid, dev, ino): the views' by_file list */
	struct bound *b;
	int nb, cap;
	int64_t unbounded; /* the row keyed (pid, dev, ino, None, None), or -1 */
};
struct hist {              /* one (dev, ino): the last fault-done events, as the attributor has them */
	struct rf_hist *ring;
	int head;           /* where the next entry goes */
	int count;          /* entries in the ring (at most priv.history) */
	int64_t unseen;     /* entries since Python last took them */
	int dirty;          /* Python observed an entry C cannot hold: no reuse on this file */
};
struct tokent {
	char text[TOKEN_TEXT];
	int len, kind, used;
	int64_t value;
};
struct priv {
	int history;
	struct htab files, pmdkeys, hists;
	struct file *fv;
	size_t nf, fcap;
	struct hist *hv;
	size_t nh, hcap;
	int64_t *cnt;      /* NCNT counters per row: pmd, pte, sigbus, fallback (without an attributor), huge_zero */
	size_t rows;
	int64_t *dirty;    /* the rows counted into since rf_take_counts, each once (room for every row) */
	uint8_t *isdirty;  /* per row: in dirty */
	size_t ndirty;
	struct ktab keys;      /* situation key -> reason code (rf_learn) */
	struct htab reasons;   /* (row, code) -> fallbacks counted here (rf_allow made the entry) */
	uint64_t *key;         /* the situation key of the fallback handed back last */
	size_t keylen, keycap;
	struct tokent tok[512];
	int ntok;
	int last[2]; /* the entry each kind found last (lines repeat their flags) */
	struct dat *dat;
};

int rf_abi(void)
{
	return 6; /* bump with every change of replayfast.h's interface (and RF_ABI in fasttext.py) */
}

struct rf_ctx *rf_new(int history)
{
	struct rf_ctx *c = calloc(1, sizeof *c);
	struct priv *p = calloc(1, sizeof *p);
	if (!c || !p) {
		free(c);
		free(p);
		return NULL;
	}
	p->history = history > 0 ? history : 1;
	p->keycap = 8 + (size_t)p->history;
	p->key = malloc(p->keycap * sizeof *p->key);
	if (!p->key) {
		free(c);
		free(p);
		return NULL;
	}
	c->priv = p;
	c->keep_pid = -1;
	return c;
}

void rf_free(struct rf_ctx *c)
{
	if (!c)
		return;
	struct priv *p = c->priv;
	for (size_t i = 0; i < p->nf; i++)
		free(p->fv[i].b);
	for (size_t i = 0; i < p->nh; i++)
		free(p->hv[i].ring);
	free(p->fv);
	free(p->hv);
	free(p->files.e);
	free(p->pmdkeys.e);
	free(p->hists.e);
	free(p->cnt);
	free(p->dirty);
	free(p->isdirty);
	free(p->keys.index.e);
	free(p->keys.pool);
	free(p->reasons.e);
	free(p->key);
	if (p->dat) {
		for (int i = 0; i < DAT_SLOTS; i++)
			free(p->dat->slot[i].r);
		free(p->dat->ev);
		free(p->dat);
	}
	free(p);
	free(c);
}

/* --- tokens of a line --- */
struct tok {
	const char *s;
	int n;
};

static int teq(struct tok t, const char *lit)
{
	size_t n = strlen(lit);
	return (size_t)t.n == n && !memcmp(t.s, lit, n);
}

static int all_digits(const char *s, int n)
{
	if (n <= 0)
		return 0;
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/* plain decimal of at most 9 digits (what isdigit() + int() take, bounded) */
static int small_dec(const char *s, int n, uint64_t *out)
{
	if (!all_digits(s, n) || n > 9)
		return 0;
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v * 10 + (uint64_t)(s[i] - '0');
	*out = v;
	return 1;
}

/* int(text, 0) for 0x<hex> and canonical decimal within 64 bits; 0 otherwise */
static int num(struct tok t, uint64_t *out)
{
	const char *s = t.s;
	int n = t.n;
	uint64_t v = 0;
	if (n >= 3 && s[0] == '0' && s[1] == 'x') {
		for (int i = 2; i < n; i++) {
			int d;
			char ch = s[i];
			if (ch >= '0' && ch <= '9')
				d = ch - '0';
			else if (ch >= 'a' && ch <= 'f')
				d = ch - 'a' + 10;
			else if (ch >= 'A' && ch <= 'F')
				d = ch - 'A' + 10;
			else
				return 0;
			if (v >> 60)
				return 0;
			v = (v << 4) | (uint64_t)d;
		}
		*out = v;
		return 1;
	}
	if (!all_digits(s, n) || (n > 1 && s[0] == '0'))
		return 0;
	for (int i = 0; i < n; i++) {
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(s[i] - '0'), &v))
			return 0;
	}
	*out = v;
	return 1;
}

static int is_word(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
}

static uint64_t text_hash(int kind, const char *s, int n)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)kind;
	for (int i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

/* 1 and *value, or 0 with the token unknown (ask Python), or -1: hand the line over */
static int token_value(struct priv *p, int kind, struct tok t, int64_t *value)
{
	if (t.n >= TOKEN_TEXT)
		return -1;
	struct tokent *l = &p->tok[p->last[kind]];
	if (l->used && l->kind == kind && l->len == t.n && !memcmp(l->text, t.s, (size_t)t.n) && l->value >= 0) {
		*value = l->value;
		return 1;
	}
	size_t i = text_hash(kind, t.s, t.n) & 511;
	for (int probes = 0; probes < 512; probes++, i = (i + 1) & 511) {
		struct tokent *e = &p->tok[i];
		if (!e->used)
			return 0;
		if (e->kind == kind && e->len == t.n && !memcmp(e->text, t.s, (size_t)t.n)) {
			if (e->value < 0)
				return -1;
			p->last[kind] = (int)i;
			*value = e->value;
			return 1;
		}
	}
	return -1;
}

int rf_set_token(struct rf_ctx *c, int kind, const char *text, size_t len, int64_t value)
{
	struct priv *p = c->priv;
	if (len >= TOKEN_TEXT || p->ntok >= 384)
		return 0; /* not cached: such lines go to Python */
	size_t i = text_hash(kind, text, (int)len) & 511;
	while (p->tok[i].used) {
		if (p->tok[i].kind == kind && (size_t)p->tok[i].len == len && !memcmp(p->tok[i].text, text, len))
			break;
		i = (i + 1) & 511;
	}
	struct tokent *e = &p->tok[i];
	if (!e->used)
		p->ntok++;
	memcpy(e->text, text, len);
	e->len = (int)len;
	e->kind = kind;
	e->value = value;
	e->used = 1;
	return 1;
}

/* room for one more element in the array *v of *cap elements of size, n in use */
static int room(void **v, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 1;
	size_t nc = *cap ? *cap * 2 : 16;
	void *nv = realloc(*v, nc * size);
	if (!nv)
		return 0;
	*v = nv;
	*cap = nc;
	return 1;
}

static struct file *file_of(struct priv *p, uint64_t pid, uint64_t dev, uint64_t ino, int create)
{
	uint64_t k[5] = {pid, dev, ino, 0, 0};
	struct hent *h = hfind(&p->files, k);
	if (h)
		return &p->fv[h->v];
	if (!create)
		return NULL;
	if (!room((void **)&p->fv, &p->fcap, p->nf, sizeof *p->fv) || hput(&p->files, k, (int64_t)p->nf))
		return NULL;
	struct file *f = &p->fv[p->nf++];
	memset(f, 0, sizeof *f);
	f->unbounded = -1;
	return f;
}

int rf_add_row(struct rf_ctx *c, int64_t row, uint64_t pid, uint64_t dev, uint64_t ino, int bounded,
	       uint64_t vm_start, uint64_t vm_end)
{
	struct priv *p = c->priv;
	if ((size_t)row >= p->rows) {
		size_t nr = ((size_t)row + 1) * 2;
		int64_t *nc = realloc(p->cnt, nr * NCNT * sizeof *nc);
		if (!nc)
			return RF_NOMEM;
		memset(nc + p->rows * NCNT, 0, (nr - p->rows) * NCNT * sizeof *nc);
		p->cnt = nc;
		int64_t *nd = realloc(p->dirty, nr * sizeof *nd);
		if (!nd)
			return RF_NOMEM;
		p->dirty = nd;
		uint8_t *ni = realloc(p->isdirty, nr);
		if (!ni)
			return RF_NOMEM;
		memset(ni + p->rows, 0, nr - p->rows);
		p->isdirty = ni;
		p->rows = nr;
	}
	struct file *f = file_of(p, pid, dev, ino, 1);
	if (!f)
		return RF_NOMEM;
	if (!bounded) {
		f->unbounded = row;
		return 0;
	}
	uint64_t k[5] = {pid, dev, ino, vm_start, vm_end};
	if (hput(&p->pmdkeys, k, row))
		return RF_NOMEM;
	if (f->nb == f->cap) {
		int nc = f->cap ? f->cap * 2 : 4;
		struct bound *nb = realloc(f->b, (size_t)nc * sizeof *nb);
		if (!nb)
			return RF_NOMEM;
		f->b = nb;
		f->cap = nc;
	}
	f->b[f->nb++] = (struct bound){vm_start, vm_end, row};
	return 0;
}

int64_t rf_row_count(struct rf_ctx *c, int64_t row, int which)
{
	struct priv *p = c->priv;
	if (row < 0 || (size_t)row >= p->rows || which < 0 || which >= NCNT)
		return 0;
	return p->cnt[row * NCNT + which];
}

/* one more event of counter which of row (remembered for rf_take_counts) */
static inline void bump(struct priv *p, int64_t row, int which)
{
	p->cnt[row * NCNT + which]++;
	if (!p->isdirty[row]) {
		p->isdirty[row] = 1;
		p->dirty[p->ndirty++] = row;
	}
}

int64_t rf_take_counts(struct rf_ctx *c, int64_t *rows, int64_t *counts, int64_t max)
{
	struct priv *p = c->priv;
	int64_t n = 0;
	while (p->ndirty && n < max) {
		int64_t row = p->dirty[--p->ndirty];
		p->isdirty[row] = 0;
		rows[n] = row;
		for (int k = 0; k < NCNT; k++) {
			counts[n * NCNT + k] = p->cnt[row * NCNT + k];
			p->cnt[row * NCNT + k] = 0;
		}
		n++;
	}
	return n;
}

static struct hist *hist_of(struct priv *p, uint64_t dev, uint64_t ino, int create)
{
	uint64_t k[5] = {dev, ino, 0, 0, 0};
	struct hent *h = hfind(&p->hists, k);
	if (h)
		return &p->hv[h->v];
	if (!create)
		return NULL;
	if (!room((void **)&p->hv, &p->hcap, p->nh, sizeof *p->hv))
		return NULL;
	struct rf_hist *ring = calloc((size_t)p->history, sizeof *ring);
	if (!ring || hput(&p->hists, k, (int64_t)p->nh)) {
		free(ring);
		return NULL;
	}
	struct hist *hs = &p->hv[p->nh++];
	memset(hs, 0, sizeof *hs);
	hs->ring = ring;
	return hs;
}

static void push(struct priv *p, struct hist *hs, uint64_t pgoff, uint64_t result, int write, int kind, int py)
{
	hs->ring[hs->head] = (struct rf_hist){pgoff, result, (uint8_t)write, (uint8_t)kind, (uint8_t)py};
	hs->head = (hs->head + 1) % p->history;
	if (hs->count < p->history)
		hs->count++;
	hs->unseen++;
}

/* a fault-done event Python observes itself (handed back): into the file's
 * history, 0 or RF_NOMEM */
static int push_py(struct rf_ctx *c, struct priv *p, uint64_t dev, uint64_t ino, uint64_t pgoff, uint64_t res,
		   uint64_t flags, int kind)
{
	struct hist *hs = hist_of(p, dev, ino, 1);
	if (!hs)
		return RF_NOMEM;
	push(p, hs, pgoff, res, (flags & c->write_flag) != 0, kind, 1);
	c->rec_noted = 1;
	return 0;
}

int rf_note(struct rf_ctx *c, uint64_t dev, uint64_t ino, uint64_t pgoff, uint64_t result, int write, int kind)
{
	struct priv *p = c->priv;
	struct hist *hs = hist_of(p, dev, ino, 1);
	if (!hs)
		return RF_NOMEM;
	if (kind != K_PMD_DONE && kind != K_PTE_DONE)
		hs->dirty = 1;
	else
		push(p, hs, pgoff, result, write != 0, kind, 1);
	return 0;
}

int rf_learn(struct rf_ctx *c, int64_t code)
{
	struct priv *p = c->priv;
	if (!c->rec_key)
		return 0;
	return kput(&p->keys, p->key, p->keylen, code);
}

int rf_allow(struct rf_ctx *c, int64_t row, int64_t code)
{
	struct priv *p = c->priv;
	uint64_t k[5] = {(uint64_t)row, (uint64_t)code, 0, 0, 0};
	if (hfind(&p->reasons, k))
		return 0;
	return hput(&p->reasons, k, 0);
}

int64_t rf_reason_count(struct rf_ctx *c, int64_t row, int64_t code)
{
	struct priv *p = c->priv;
	uint64_t k[5] = {(uint64_t)row, (uint64_t)code, 0, 0, 0};
	struct hent *h = hfind(&p->reasons, k);
	return h ? h->v : 0;
}

#define PMD_SIZE (2ull << 20)

/* CachedAttributor.situation of a fallback (pmemtrace/live/attrcache.py)
 * into p->key, component for component (an injective encoding of the same
 * tuple, the attributor's release left out: one per replay): 1, or 0 where
 * Python's is None or this file's history is not all here.  Its entry state
 * is the last `prior` entries before the fallback (Attributor.prior_faults:
 * the fallback itself is not in the ring yet).  Python's arithmetic is on
 * unbounded integers: 128 bits here, where values can leave 64. */
static int situation(struct rf_ctx *c, struct priv *p, struct hist *hs, uint64_t vs, uint64_t ve,
		     uint64_t addr, uint64_t pgoff, uint64_t maxpg, uint64_t flags, uint64_t vmflags)
{
#ifdef __SIZEOF_INT128__
	typedef __int128 i128;
	if (hs->dirty || c->prior <= 0 || (size_t)c->prior + 7 > p->keycap || c->prior > p->history)
		return 0;
	if (addr < vs || addr >= ve)
		return 0;
	uint64_t d = (addr - vs) >> 12;
	if (pgoff < d)
		return 0; /* vm_pgoff < 0 */
	uint64_t vm_pgoff = pgoff - d;
	uint64_t block = addr & ~(PMD_SIZE - 1);
	i128 VS = (i128)vs, VE = (i128)ve, B = (i128)block, VP = (i128)vm_pgoff;
	i128 block_pgoff = VP + ((B - VS) >> 12);
	i128 npages = (VE - VS) >> 12;
	i128 lo = VP + ((((i128)addr - VS) >> 21) << 9);
	i128 hi = VP + npages < lo + 512 ? VP + npages : lo + 512;
	i128 md = (i128)maxpg - block_pgoff;
	if (md < -1)
		md = -1;
	if (md > 1025)
		md = 1025;
	int small = VE - VS < 4 * (i128)PMD_SIZE;
	uint64_t *k = p->key;
	k[0] = (uint64_t)(B >= VS) | (uint64_t)(B + (i128)PMD_SIZE <= VE) << 1 | (uint64_t)((flags & c->write_flag) != 0) << 2 |
	       (uint64_t)((vmflags & c->shared_bit) != 0) << 3 | (uint64_t)((vmflags & c->nohuge_bit) != 0) << 4 |
	       (uint64_t)small << 5;
	k[1] = ((vs >> 12) - vm_pgoff) & 511;
	k[2] = (addr - block) >> 12;
	k[3] = (uint64_t)(int64_t)md;
	k[4] = small ? (uint64_t)(int64_t)((VS - B) >> 21) : 0;
	k[5] = small ? (uint64_t)(int64_t)((VE - B) >> 21) : 0;
	size_t n = 7;
	int take = hs->count < c->prior ? hs->count : c->prior;
	for (int i = 0; i < take; i++) {
		const struct rf_hist *h = &hs->ring[(hs->head - take + i + 2 * p->history) % p->history];
		i128 pg = (i128)h->pgoff;
		if (pg < lo || pg >= hi || (h->result & (c->sigbus_bit | c->fallback_bit)))
			continue;
		/* pg - block_pgoff is within [-512, 1024]: two bits to spare */
		int64_t rel = (int64_t)(pg - block_pgoff);
		k[n++] = ((uint64_t)rel << 2) | (uint64_t)h->write << 1 | (h->kind == K_PTE_DONE);
	}
	k[6] = n - 7;
	p->keylen = n;
	return 1;
#else
	return 0;
#endif
}

int rf_take_history(struct rf_ctx *c, uint64_t dev, uint64_t ino, uint64_t *pgoff, uint64_t *result,
		    uint8_t *write, uint8_t *kind, int max)
{
	struct priv *p = c->priv;
	struct hist *hs = hist_of(p, dev, ino, 0);
	if (!hs || !hs->unseen)
		return 0;
	int n = hs->unseen < hs->count ? (int)hs->unseen : hs->count;
	/* the last n entries, oldest first, but those Python observed itself;
	 * head is where the next one goes */
	int out = 0;
	for (int i = 0; i < n && out < max; i++) {
		const struct rf_hist *h = &hs->ring[(hs->head - n + i + 2 * p->history) % p->history];
		if (h->py)
			continue;
		pgoff[out] = h->pgoff;
		result[out] = h->result;
		write[out] = h->write;
		kind[out] = h->kind;
		out++;
	}
	hs->unseen = 0;
	return out;
}

/* A fallback counted by reuse: 1, or 0 (hand it back; rec_key says whether
 * its situation key is in p->key for rf_learn), RF_NOMEM. */
static int reuse(struct rf_ctx *c, struct priv *p, int64_t row, uint64_t dev, uint64_t ino, uint64_t vs, uint64_t ve,
		 uint64_t addr, uint64_t pgoff, uint64_t maxpg, uint64_t flags, uint64_t vmflags, uint64_t res)
{
	struct hist *hs = hist_of(p, dev, ino, 1);
	if (!hs)
		return RF_NOMEM;
	if (!situation(c, p, hs, vs, ve, addr, pgoff, maxpg, flags, vmflags))
		return 0;
	c->rec_key = 1;
	const uint64_t *k = kfind(&p->keys, p->key, p->keylen);
	if (!k)
		return 0;
	uint64_t rk[5] = {(uint64_t)row, k[0], 0, 0, 0};
	struct hent *a = hfind(&p->reasons, rk);
	if (!a)
		return 0; /* the row's first of this reason (its order in the row), or evidence still kept */
	a->v++;
	push(p, hs, pgoff, res, (flags & c->write_flag) != 0, K_PMD_DONE, 0);
	c->reuse_hits++;
	c->by_kind[K_PMD_DONE]++;
	c->view_events++;
	return 1;
}

/* One fault event of a kept process into the views, as Aggregator.add_record
 * folds it: 1 counted, 0 hand it to Python (a new row, or a fallback to
 * attribute), RF_NOMEM. */
static int count(struct rf_ctx *c, struct priv *p, int kind, uint64_t pid, uint64_t dev, uint64_t ino,
		 uint64_t vm_start, uint64_t vm_end, uint64_t address, uint64_t pgoff, uint64_t max_pgoff,
		 uint64_t flags, uint64_t vm_flags, uint64_t res)
{
	int64_t row = -1;
	int done = kind == K_PMD_DONE || kind == K_PTE_DONE;
	if (kind == K_PTE) {
		/* counted only: no row (watch: where the filter let its file in) */
		if (c->pte_start_needs_file && !file_of(p, pid, dev, ino, 0))
			return 0;
	} else if (kind == K_PTE_DONE || kind == K_HOLE) {
		/* no VMA bounds in the record: the row whose bounds hold the
		 * address, else the file's unbounded one (Aggregator._row_of) */
		struct file *f = file_of(p, pid, dev, ino, 0);
		if (f) {
			for (int i = 0; i < f->nb; i++)
				if (f->b[i].vs <= address && address < f->b[i].ve) {
					row = f->b[i].row;
					break;
				}
			if (row < 0)
				row = f->unbounded;
		}
	} else {
		int fallback = kind == K_PMD_DONE && !(res & c->sigbus_bit) && (res & c->fallback_bit);
		uint64_t key[5] = {pid, dev, ino, vm_start, vm_end};
		struct hent *h = hfind(&p->pmdkeys, key);
		row = h ? h->v : -1;
		if (fallback && c->observe) {
			/* Python's attributor gives its reason, unless reuse can */
			int r = row >= 0 && c->reuse ? reuse(c, p, row, dev, ino, vm_start, vm_end, address, pgoff, max_pgoff,
							      flags, vm_flags, res)
						     : 0;
			if (r)
				return r;
			row = -1; /* handed back */
		} else if (fallback && row >= 0) {
			/* no attributor: counted, its reason 'unattributed' added by Python */
			bump(p, row, 3);
			c->by_kind[kind]++;
			c->view_events++;
			return 1;
		}
	}
	if (row < 0 && kind != K_PTE) {
		/* a new row (Python makes it) or a fallback to attribute: Python
		 * observes a fault-done event itself, the history keeps its place */
		if (done && c->observe && push_py(c, p, dev, ino, pgoff, res, flags, kind))
			return RF_NOMEM;
		return 0;
	}
	if (done && c->observe) {
		struct hist *hs = hist_of(p, dev, ino, 1);
		if (!hs)
			return RF_NOMEM;
		push(p, hs, pgoff, res, (flags & c->write_flag) != 0, kind, 0);
	}
	if (kind == K_HOLE)
		bump(p, row, 4); /* a huge zero page (Aggregator.add) */
	else if (kind == K_PMD_DONE)
		bump(p, row, (res & c->sigbus_bit) ? 2 : 0);
	else if (kind == K_PTE_DONE)
		bump(p, row, (res & c->sigbus_bit) ? 2 : 1);
	c->by_kind[kind]++;
	c->view_events++;
	return 1;
}

/* The value of a flag (kind 0) or result (kind 1) text of the line at s: 1,
 * RF_TOKEN (Python is asked for it first), or 0 (the line goes to Python). */
static int flag_token(struct rf_ctx *c, struct priv *p, int kind, struct tok t, const char *s, int64_t *value)
{
	int r = token_value(p, kind, t, value);
	if (r == 1)
		return 1;
	if (r < 0)
		return 0;
	c->tok_off = (size_t)(t.s - s);
	c->tok_len = (size_t)t.n;
	c->tok_kind = kind;
	return RF_TOKEN;
}

/* The space-separated tokens of [s, e) into t: their number, -1 for a
 * byte Python splits or decodes otherwise (tab, control, non-ASCII), -2 for
 * more than MAX_TOKENS.  16 bytes a step where SSE2 is there (x86-64 always),
 * the bitmasks of spaces giving the token boundaries. */
static int split(const char *s, const char *e, struct tok *t)
{
	int n = 0;
	unsigned in_tok = 0; /* the byte before q was part of a token */
	const char *q = s;
#ifdef __SSE2__
	const __m128i space = _mm_set1_epi8(' '), lo = _mm_set1_epi8(0x21), hi = _mm_set1_epi8(0x7e);
	while (q + 16 <= e) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)q);
		unsigned sp = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, space));
		unsigned bad = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmplt_epi8(v, lo), _mm_cmpgt_epi8(v, hi)));
		if (bad & ~sp)
			return -1; /* signed compares: bytes >= 0x80 are below 0x21 */
		unsigned ns = ~sp & 0xffffu;
		unsigned before = ((ns << 1) | in_tok) & 0xffffu; /* bit i: byte i-1 is in a token */
		unsigned starts = ns & ~before, ends = sp & before;
		unsigned edges = starts | ends;
		while (edges) {
			int b = __builtin_ctz(edges);
			edges &= edges - 1;
			if (starts >> b & 1) {
				if (n == MAX_TOKENS)
					return -2;
				t[n].s = q + b;
			} else {
				t[n].n = (int)(q + b - t[n].s);
				n++;
			}
		}
		in_tok = ns >> 15;
		q += 16;
	}
#endif
	for (; q < e; q++) {
		unsigned char ch = (unsigned char)*q;
		if (ch == ' ') {
			if (in_tok) {
				t[n].n = (int)(q - t[n].s);
				n++;
			}
			in_tok = 0;
			continue;
		}
		if (ch < 0x21 || ch > 0x7e)
			return -1;
		if (!in_tok) {
			if (n == MAX_TOKENS)
				return -2;
			t[n].s = q;
		}
		in_tok = 1;
	}
	if (in_tok) {
		t[n].n = (int)(e - t[n].s);
		n++;
	}
	return n;
}

/* One line [s, e): 1 counted here, 0 hand it to Python, RF_TOKEN, RF_SWITCH, RF_NOMEM. */
static int line(struct rf_ctx *c, struct priv *p, const char *s, const char *e)
{
	struct tok t[MAX_TOKENS];
	c->rec_noted = c->rec_key = 0;
	int n = split(s, e, t);
	if (n == -1 && memchr(s, '\r', (size_t)(e - s)))
		return RF_SWITCH; /* Python's universal newlines split this line */
	if (n < 12)
		return 0;
	int cix;
	if (t[1].s[0] == '[')
		cix = 1;
	else if (t[1].s[0] == '(' && t[1].s[t[1].n - 1] == ')' && t[2].s[0] == '[')
		cix = 2;
	else
		return 0;
	int ev = t[cix + 1].s[t[cix + 1].n - 1] == ':' ? cix + 2 : cix + 3;
	if (n < ev + 10)
		return 0;
	/* the event name */
	struct tok nm = t[ev];
	int kind;
	if (nm.s[nm.n - 1] != ':')
		return 0;
	nm.n--;
	if (teq(nm, "dax_pmd_fault"))
		kind = K_PMD;
	else if (teq(nm, "dax_pmd_fault_done"))
		kind = K_PMD_DONE;
	else if (teq(nm, "dax_pte_fault"))
		kind = K_PTE;
	else if (teq(nm, "dax_pte_fault_done"))
		kind = K_PTE_DONE;
	else
		return 0;
	if (!teq(t[ev + 1], "dev") || !teq(t[ev + 3], "ino"))
		return 0;
	/* the timestamp: digits '.' digits ':' */
	struct tok ts = t[ev - 1];
	if (ts.s[ts.n - 1] != ':')
		return 0;
	{
		const char *dot = memchr(ts.s, '.', (size_t)(ts.n - 1));
		if (!dot || !all_digits(ts.s, (int)(dot - ts.s)) ||
		    !all_digits(dot + 1, (int)(ts.s + ts.n - 1 - dot - 1)))
			return 0;
	}
	/* comm-pid, [cpu], the flags column */
	uint64_t pid, cpu;
	{
		const char *dash = NULL;
		for (int i = t[0].n - 1; i >= 0; i--)
			if (t[0].s[i] == '-') {
				dash = t[0].s + i;
				break;
			}
		if (!dash || !small_dec(dash + 1, (int)(t[0].s + t[0].n - dash - 1), &pid))
			return 0;
		struct tok cp = t[cix];
		if (cp.n < 3 || cp.s[cp.n - 1] != ']' || !small_dec(cp.s + 1, cp.n - 2, &cpu))
			return 0;
		if (ev - cix == 3) {
			struct tok fl = t[cix + 1];
			if (fl.n < 4 || fl.n > 5)
				return 0;
			for (int i = 0; i < fl.n; i++)
				if (!is_word(fl.s[i]) && fl.s[i] != '.')
					return 0;
		}
	}
	/* dev M:m ino N shared|private [flags] address ... */
	uint64_t maj, mnr, ino, vm_flags;
	{
		struct tok d = t[ev + 2];
		const char *colon = memchr(d.s, ':', (size_t)d.n);
		if (!colon || !small_dec(d.s, (int)(colon - d.s), &maj) ||
		    !small_dec(colon + 1, (int)(d.s + d.n - colon - 1), &mnr))
			return 0;
	}
	if (!num(t[ev + 4], &ino))
		return 0;
	if (teq(t[ev + 5], "shared"))
		vm_flags = 0x8;
	else if (teq(t[ev + 5], "private"))
		vm_flags = 0;
	else
		return 0;
	uint64_t dev = (maj << 20) | mnr;
	int k;
	struct tok flags_text;
	if (teq(t[ev + 6], "address")) {
		flags_text = (struct tok){t[ev + 6].s, 0};
		k = ev + 6;
	} else {
		flags_text = t[ev + 6];
		k = ev + 7;
	}
	if (n < k + 4 || !teq(t[k], "address"))
		return 0;
	uint64_t address, vm_start = 0, vm_end = 0, pgoff, max_pgoff = 0;
	struct tok result_text;
	if (kind <= K_PMD_DONE) {
		if (n == k + 11)
			result_text = t[k + 10];
		else if (n == k + 10)
			result_text = (struct tok){t[k].s, 0};
		else
			return 0;
		if (!teq(t[k + 2], "vm_start") || !teq(t[k + 4], "vm_end") || !teq(t[k + 6], "pgoff") ||
		    !teq(t[k + 8], "max_pgoff"))
			return 0;
		if (!num(t[k + 1], &address) || !num(t[k + 3], &vm_start) || !num(t[k + 5], &vm_end) ||
		    !num(t[k + 7], &pgoff) || !num(t[k + 9], &max_pgoff))
			return 0;
	} else {
		if (n == k + 5)
			result_text = t[k + 4];
		else if (n == k + 4)
			result_text = (struct tok){t[k].s, 0};
		else
			return 0;
		if (!teq(t[k + 2], "pgoff"))
			return 0;
		if (!num(t[k + 1], &address) || !num(t[k + 3], &pgoff))
			return 0;
	}
	int64_t flags, result;
	int r = flag_token(c, p, 0, flags_text, s, &flags);
	if (r != 1)
		return r;
	r = flag_token(c, p, 1, result_text, s, &result);
	if (r != 1)
		return r;
	/* a line of the views' hot path */
	if (c->keep_pid >= 0 && pid != (uint64_t)c->keep_pid) {
		c->lines++;
		c->events++;
		return 1;
	}
	r = count(c, p, kind, pid, dev, ino, vm_start, vm_end, address, pgoff, max_pgoff, (uint64_t)flags, vm_flags,
		  (uint64_t)result);
	if (r == 1) {
		c->lines++;
		c->events++;
	}
	return r;
}

int rf_run(struct rf_ctx *c, const char *buf, size_t len, size_t pos)
{
	struct priv *p = c->priv;
	while (pos < len) {
		const char *s = buf + pos;
		const char *nl = memchr(s, '\n', len - pos);
		if (!nl)
			break; /* Python passes whole lines only */
		c->pos = pos;
		c->line_end = (size_t)(nl - buf);
		int r = line(c, p, s, nl);
		if (r == 0)
			return RF_LINE;
		if (r != 1)
			return r;
		pos = c->line_end + 1;
	}
	c->pos = pos;
	return RF_DONE;
}

/* --- trace-cmd .dat --- */

static struct dat *dat_of(struct priv *p)
{
	if (!p->dat)
		p->dat = calloc(1, sizeof *p->dat);
	return p->dat;
}

int rf_dat_layout(struct rf_ctx *c, int page_size, int ts_offset, int commit_offset, int commit_size,
		  int data_offset, int slots)
{
	struct dat *d = dat_of(c->priv);
	if (!d)
		return RF_NOMEM;
	if (slots < 0 || slots > DAT_SLOTS)
		return RF_BAD;
	d->nslots = slots;
	d->page_size = page_size;
	d->ts_off = ts_offset;
	d->commit_off = commit_offset;
	d->commit_size = commit_size;
	d->data_off = data_offset;
	return 0;
}

int rf_dat_event(struct rf_ctx *c, int eid, int kind, int size, const int32_t *fields)
{
	struct dat *d = dat_of(c->priv);
	if (!d || !room((void **)&d->ev, &d->evcap, d->nev, sizeof *d->ev))
		return RF_NOMEM;
	if (eid < 0 || eid > 65535 || d->nev >= 32000)
		return RF_BAD;
	struct devent *e = &d->ev[d->nev];
	e->eid = eid;
	e->kind = kind;
	e->size = size;
	memcpy(e->f, fields, sizeof e->f);
	/* once per event, not per record: which fields a record gives, and
	 * whether those absent may be (the others send every record to Python):
	 * PTE events have no vm_start, vm_end, max_pgoff; a load hole (taken
	 * only without vm_start, vm_end) has no pgoff, max_pgoff, flags, result
	 * either; vm_flags counts as 0 when absent (the converter leaves it out) */
	e->counted = kind <= K_HOLE;
	e->nf = 0;
	int pte = kind == K_PTE || kind == K_PTE_DONE;
	for (int i = 0; i < DAT_FIELDS; i++) {
		if (e->f[i][0] >= 0)
			e->fi[e->nf++] = (uint8_t)i;
		else if (i != 10 && !(pte && (i == 3 || i == 4 || i == 7)) && !(kind == K_HOLE && i != 5))
			e->counted = 0;
	}
	d->by_eid[eid] = (int16_t)(++d->nev);
	return 0;
}

/* a little-endian field (little-endian hosts and files only); the sizes
 * spelled out, so each is one load, not a call of memcpy whose result is
 * read back from the stack */
static inline uint64_t rd(const unsigned char *b, int size)
{
	switch (size) {
	case 1:
		return b[0];
	case 2: {
		uint16_t v;
		memcpy(&v, b, 2);
		return v;
	}
	case 4: {
		uint32_t v;
		memcpy(&v, b, 4);
		return v;
	}
	case 8: {
		uint64_t v;
		memcpy(&v, b, 8);
		return v;
	}
	default: {
		uint64_t v = 0;
		memcpy(&v, b, (size_t)size);
		return v;
	}
	}
}

/* a field of a record as the unpacker gives it: 1 and the value, or 0
 * (absent, or a negative signed value: the record goes to Python) */
static int field(const unsigned char *rec, const int32_t *f, uint64_t *v)
{
	if (f[0] < 0)
		return 0;
	uint64_t x = rd(rec + f[0], f[1]);
	if (f[2] && f[1] < 8 && (x >> (f[1] * 8 - 1)) & 1)
		return 0;
	if (f[2] && f[1] == 8 && (x >> 63))
		return 0;
	*v = x;
	return 1;
}

/* ftrace_binary.PageDecoder.decode for one page: 0, or RF_BAD where it raises */
static int dat_page(struct rf_ctx *c, struct dat *d, int slot, const unsigned char *base, size_t page_off,
		    size_t plen)
{
	const unsigned char *page = base + page_off;
	if ((size_t)d->ts_off + 8 > plen || (size_t)(d->commit_off + d->commit_size) > plen)
		return RF_BAD;
	uint64_t ts = rd(page + d->ts_off, 8);
	uint64_t commit = rd(page + d->commit_off, d->commit_size);
	uint64_t size = commit & ((1u << 27) - 1);
	size_t start = (size_t)d->data_off, end = start + size;
	if (end > plen)
		return RF_BAD;
	if (commit & (1ull << 31)) {
		if (commit & (1ull << 30)) {
			if (end + (size_t)d->commit_size > plen)
				return RF_BAD;
			c->dat_lost += (int64_t)rd(page + end, d->commit_size);
		} else {
			c->dat_lost_unknown++;
		}
	}
	struct dslot *s = &d->slot[slot];
	size_t pos = start;
	while (pos < end) {
		uint32_t word;
		int eid;
		if (pos + 6 <= end) {
			word = (uint32_t)rd(page + pos, 4);
			eid = (int)rd(page + pos + 4, 2);
		} else if (pos + 4 <= end) {
			word = (uint32_t)rd(page + pos, 4);
			eid = -1;
		} else {
			return RF_BAD;
		}
		uint32_t type_len = word & 31, delta = word >> 5;
		size_t data;
		if (type_len >= 1 && type_len <= 28) {
			if (__builtin_add_overflow(ts, delta, &ts))
				return RF_BAD;
			size_t nxt = pos + 4 + ((size_t)type_len << 2);
			if (nxt > end)
				return RF_BAD;
			data = pos + 4;
			pos = nxt;
		} else {
			pos += 4;
			if (pos + 4 > end) {
				if (type_len == 29)
					break;
				return RF_BAD;
			}
			uint64_t arg = rd(page + pos, 4);
			if (type_len == 0) {
				int64_t length = (((int64_t)arg - 4) + 3) & ~(int64_t)3;
				if (__builtin_add_overflow(ts, delta, &ts))
					return RF_BAD;
				pos += 4;
				if (length <= 0 || pos + (size_t)length > end)
					return RF_BAD;
				eid = (int)rd(page + pos, 2);
				data = pos;
				pos += (size_t)length;
			} else if (type_len == 30) {
				uint64_t add = (arg << 27) + delta;
				if (__builtin_add_overflow(ts, add, &ts))
					return RF_BAD;
				pos += 4;
				continue;
			} else if (type_len == 29) {
				if (delta == 0)
					break;
				if (__builtin_add_overflow(ts, delta, &ts))
					return RF_BAD;
				if (arg == 0)
					return RF_BAD;
				pos += arg;
				continue;
			} else {
				ts = ((arg << 27) + delta) | (ts & (0xF8ull << 56));
				pos += 4;
				continue;
			}
		}
		int ix = eid >= 0 ? d->by_eid[eid] : 0;
		if (!ix) {
			c->dat_skipped++;
			continue;
		}
		if (page_off + data + (size_t)d->ev[ix - 1].size > page_off + plen)
			return RF_BAD; /* the unpacker would read past the page */
		if (ts < s->last_ts)
			return RF_BAD; /* a CPU going back in time: the Python merge's order */
		s->last_ts = ts;
		if (!room((void **)&s->r, &s->cap, s->n, sizeof *s->r))
			return RF_NOMEM;
		s->r[s->n++] = (struct drec){ts, (uint32_t)(page_off + data), ix - 1};
		c->dat_records++;
	}
	return 0;
}

int rf_dat_piece(struct rf_ctx *c, int slot, const char *buf, size_t len)
{
	struct dat *d = dat_of(c->priv);
	if (!d || slot < 0 || slot >= d->nslots || d->page_size <= 0 || len > 0xffffffffu)
		return RF_BAD;
	struct dslot *s = &d->slot[slot];
	if (s->next < s->n || s->ended)
		return RF_BAD; /* only when rf_dat_run asked for it */
	s->n = s->next = 0;
	s->buf = (const unsigned char *)buf;
	/* decode_pages: every page_size step while a page header fits */
	for (size_t off = 0; off + (size_t)d->data_off <= len; off += (size_t)d->page_size) {
		size_t plen = len - off < (size_t)d->page_size ? len - off : (size_t)d->page_size;
		int r = dat_page(c, d, slot, (const unsigned char *)buf, off, plen);
		if (r)
			return r;
	}
	return 0;
}

int rf_dat_round(struct rf_ctx *c, int slots)
{
	struct dat *d = dat_of(c->priv);
	if (!d)
		return RF_NOMEM;
	if (slots < 0 || slots > DAT_SLOTS)
		return RF_BAD;
	for (int i = 0; i < DAT_SLOTS; i++) {
		struct dslot *s = &d->slot[i];
		s->n = s->next = 0;
		s->last_ts = 0;
		s->buf = NULL;
		s->ended = 0;
	}
	d->nslots = slots;
	return 0;
}

int rf_dat_end(struct rf_ctx *c, int slot)
{
	struct dat *d = dat_of(c->priv);
	if (!d || slot < 0 || slot >= d->nslots)
		return RF_BAD;
	d->slot[slot].ended = 1;
	return 0;
}

int rf_dat_run(struct rf_ctx *c)
{
	struct priv *p = c->priv;
	struct dat *d = p->dat;
	if (!d)
		return RF_DONE;
	for (;;) {
		/* the next record: the lowest timestamp, the lower slot on a tie */
		int best = -1;
		uint64_t bts = 0;
		for (int i = 0; i < d->nslots; i++) {
			struct dslot *s = &d->slot[i];
			if (s->next >= s->n) {
				if (s->ended)
					continue;
				c->need_slot = i; /* its next records may come first */
				return RF_MORE;
			}
			if (best < 0 || s->r[s->next].ts < bts) {
				best = i;
				bts = s->r[s->next].ts;
			}
		}
		if (best < 0)
			return RF_DONE;
		struct dslot *s = &d->slot[best];
		const struct drec *r = &s->r[s->next++];
		const struct devent *e = &d->ev[r->ev];
		const unsigned char *rec = s->buf + r->off;
		uint64_t v[DAT_FIELDS] = {0};
		int ok = e->counted;
		c->rec_noted = c->rec_key = 0;
		for (int j = 0; ok && j < e->nf; j++) {
			int i = e->fi[j];
			if (i == 10) /* vm_flags: its bits as they are (the converter masks VM_SHARED of any value) */
				v[i] = rd(rec + e->f[i][0], e->f[i][1]);
			else
				ok = field(rec, e->f[i], &v[i]);
		}
		if (ok && c->keep_pid >= 0 && v[0] != (uint64_t)c->keep_pid)
			continue; /* another process: not in the views */
		int rr = ok ? count(c, p, e->kind, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[10], v[9]) : 0;
		if (rr == 1)
			continue;
		if (rr != 0)
			return rr;
		c->rec_ts = r->ts;
		c->rec_off = r->off;
		c->rec_eid = e->eid;
		c->rec_slot = best;
		return RF_LINE;
	}
}
