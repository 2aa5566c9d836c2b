/* SPDX-License-Identifier: Apache-2.0 */
/*
 * engine.h - pmemtrace's workload engine: the few system calls Python's mmap
 * module cannot make (address hints, MAP_SYNC, MAP_FIXED_NOREPLACE, mremap,
 * madvise), touch loops in C, O_DIRECT between a file and a DAX mapping,
 * FIEMAP, fallocate, /proc/self/pagemap and a SIGBUS-safe forked toucher.
 *
 * Convention: every function returns >= 0 on success and -errno on failure;
 * the Python wrapper (pmemtrace/workload/engine.py) turns -errno into an
 * OSError subclass naming the operation.  Nothing here calls exit() or
 * prints.
 *
 * The declarations between PMT_CDEF_BEGIN and PMT_CDEF_END are also fed to
 * cffi's cdef() by cffi_build/build_engine.py (preprocessor lines dropped),
 * so they must stay plain C declarations.
 */
#ifndef PMEMTRACE_ENGINE_H
#define PMEMTRACE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

/* PMT_CDEF_BEGIN */
struct pmt_extent {
	uint64_t logical;
	uint64_t physical;
	uint64_t length;
	uint32_t flags;      /* FIEMAP_EXTENT_* */
	uint32_t reserved;
};

struct pmt_child_result {
	int32_t status;      /* 0: exited 0; > 0: signal that killed the child; < 0: -errno (fork/wait) */
	int32_t exit_code;   /* exit status when the child exited (not signalled) */
	int64_t touched;     /* pages the child completed before it stopped */
	uint64_t fault_addr; /* si_addr of the SIGBUS/SIGSEGV, 0 if none */
	int32_t si_code;     /* si_code of that signal */
	int32_t mismatches;  /* pattern mismatches seen by a verifying child */
};

const char *pmt_version(void);
long pmt_page_size(void);

/* Capability constants: 1 when the build headers defined the flag. */
int pmt_has_map_sync(void);
int pmt_has_map_shared_validate(void);
int pmt_has_map_fixed_noreplace(void);
int pmt_has_madv_hugepage(void);

/* Flag values (0 when absent from the build headers). */
int pmt_const(const char *name, int64_t *value);

int pmt_mmap(uint64_t hint, uint64_t length, int prot, int flags, int fd,
	     int64_t offset, uint64_t *out_addr);
int pmt_munmap(uint64_t addr, uint64_t length);
int pmt_mremap(uint64_t old_addr, uint64_t old_length, uint64_t new_length,
	       int flags, uint64_t new_addr, uint64_t *out_addr);
int pmt_madvise(uint64_t addr, uint64_t length, int advice);
int pmt_mprotect(uint64_t addr, uint64_t length, int prot);
int pmt_msync(uint64_t addr, uint64_t length, int flags);

/* The pattern: 64-bit word at absolute position pos (a multiple of 8, e.g.
 * a file offset) for a seed.  Never zero, so a hole (zeros) never verifies. */
uint64_t pmt_pattern(uint64_t seed, uint64_t pos);

/* Touch count pages of [addr, addr+length) starting at byte offset `offset`
 * every `stride` bytes.  write: store the pattern word for position
 * base + page offset into the first 8 bytes of each page; read: load it.
 * Returns the pages touched (a fault that kills the process does not return:
 * use pmt_child_touch for ranges that may SIGBUS). */
int64_t pmt_touch(uint64_t addr, uint64_t length, uint64_t offset,
		  uint64_t stride, uint64_t count, int write, uint64_t seed,
		  uint64_t base);
/* Check what pmt_touch(write=1) stored; returns mismatches, *first_bad =
 * byte offset (from addr) of the first bad word or UINT64_MAX. */
int64_t pmt_touch_verify(uint64_t addr, uint64_t length, uint64_t offset,
			 uint64_t stride, uint64_t count, uint64_t seed,
			 uint64_t base, uint64_t *first_bad);
/* Fill every word of a buffer with the pattern / check it. */
int64_t pmt_fill(uint64_t addr, uint64_t length, uint64_t seed, uint64_t base);
int64_t pmt_check(uint64_t addr, uint64_t length, uint64_t seed, uint64_t base,
		  uint64_t *first_bad);

/* pread/pwrite on any fd (O_DIRECT or not) with a raw buffer address. */
int64_t pmt_pread(int fd, uint64_t buf, uint64_t length, int64_t offset);
int64_t pmt_pwrite(int fd, uint64_t buf, uint64_t length, int64_t offset);

/* FIEMAP: up to max extents from file offset start; *nr = extents filled.
 * flags: FIEMAP_FLAG_SYNC etc. */
int pmt_fiemap(int fd, uint64_t start, uint64_t length, uint32_t flags,
	       struct pmt_extent *out, uint32_t max, uint32_t *nr);
int pmt_fallocate(int fd, int mode, int64_t offset, int64_t length);
int pmt_ftruncate(int fd, int64_t length);
int pmt_fsync(int fd);

/* /proc/self/pagemap entries for npages pages from addr (raw 64-bit
 * entries: bit 63 present, bits 0-54 pfn (zero without CAP_SYS_ADMIN)). */
int pmt_pagemap(uint64_t addr, uint64_t npages, uint64_t *out);

/* Fork; the child touches like pmt_touch (verify=1: reads back and checks the
 * pattern), then exits 0.  The parent waits and fills *res.  A SIGBUS in the
 * child never reaches the caller. */
int pmt_child_touch(uint64_t addr, uint64_t length, uint64_t offset,
		    uint64_t stride, uint64_t count, int write, int verify,
		    uint64_t seed, uint64_t base, struct pmt_child_result *res);

int pmt_set_thp_disable(int disable);

/* process_vm_readv (write=0: remote -> local) / process_vm_writev (write=1:
 * local -> remote) on this process: get_user_pages on the remote range
 * without O_DIRECT.  Returns bytes moved or -errno. */
int64_t pmt_process_vm(int write, uint64_t local, uint64_t remote, uint64_t length);
/* A long-term pin (FOLL_LONGTERM) of [addr, addr+length): registers the
 * range as an io_uring fixed buffer (io_uring_register BUFFERS), then
 * unregisters it.  0 when the kernel pinned it, else -errno (fsdax:
 * -EOPNOTSUPP from check_vma_flags()). */
int pmt_longterm_pin(uint64_t addr, uint64_t length);
/* PMT_CDEF_END */

#endif /* PMEMTRACE_ENGINE_H */
