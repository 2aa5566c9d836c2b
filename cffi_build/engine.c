/* SPDX-License-Identifier: Apache-2.0 */
/* engine.c - see engine.h.  Built by cffi_build/build_engine.py into
 * pmemtrace._engine. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/fs.h>
#include <linux/fiemap.h>
#include <linux/falloc.h>
#include <linux/io_uring.h>

#include "engine.h"

#ifndef PMEMTRACE_VERSION
#error "PMEMTRACE_VERSION must be defined by the build script"
#endif

const char *pmt_version(void) { return PMEMTRACE_VERSION; }
long pmt_page_size(void) { return sysconf(_SC_PAGESIZE); }

int pmt_has_map_sync(void)
{
#ifdef MAP_SYNC
	return 1;
#else
	return 0;
#endif
}
int pmt_has_map_shared_validate(void)
{
#ifdef MAP_SHARED_VALIDATE
	return 1;
#else
	return 0;
#endif
}
int pmt_has_map_fixed_noreplace(void)
{
#ifdef MAP_FIXED_NOREPLACE
	return 1;
#else
	return 0;
#endif
}
int pmt_has_madv_hugepage(void)
{
#ifdef MADV_HUGEPAGE
	return 1;
#else
	return 0;
#endif
}

struct pmt_named { const char *name; int64_t value; };
#define C(x) { #x, (int64_t)(x) }
static const struct pmt_named pmt_consts[] = {
	C(PROT_NONE), C(PROT_READ), C(PROT_WRITE), C(PROT_EXEC),
	C(MAP_SHARED), C(MAP_PRIVATE), C(MAP_FIXED), C(MAP_ANONYMOUS),
	C(MAP_POPULATE), C(MAP_NORESERVE),
#ifdef MAP_SHARED_VALIDATE
	C(MAP_SHARED_VALIDATE),
#endif
#ifdef MAP_SYNC
	C(MAP_SYNC),
#endif
#ifdef MAP_FIXED_NOREPLACE
	C(MAP_FIXED_NOREPLACE),
#endif
	C(MREMAP_MAYMOVE), C(MREMAP_FIXED),
#ifdef MREMAP_DONTUNMAP
	C(MREMAP_DONTUNMAP),
#endif
	C(MADV_NORMAL), C(MADV_DONTNEED), C(MADV_WILLNEED),
#ifdef MADV_HUGEPAGE
	C(MADV_HUGEPAGE), C(MADV_NOHUGEPAGE),
#endif
#ifdef MADV_REMOVE
	C(MADV_REMOVE),
#endif
	C(MS_SYNC), C(MS_ASYNC), C(MS_INVALIDATE),
	C(FALLOC_FL_KEEP_SIZE), C(FALLOC_FL_PUNCH_HOLE),
#ifdef FALLOC_FL_ZERO_RANGE
	C(FALLOC_FL_ZERO_RANGE),
#endif
	C(FIEMAP_FLAG_SYNC), C(FIEMAP_FLAG_XATTR),
	C(FIEMAP_EXTENT_LAST), C(FIEMAP_EXTENT_UNKNOWN),
	C(FIEMAP_EXTENT_DELALLOC), C(FIEMAP_EXTENT_ENCODED),
	C(FIEMAP_EXTENT_DATA_ENCRYPTED), C(FIEMAP_EXTENT_NOT_ALIGNED),
	C(FIEMAP_EXTENT_DATA_INLINE), C(FIEMAP_EXTENT_DATA_TAIL),
	C(FIEMAP_EXTENT_UNWRITTEN), C(FIEMAP_EXTENT_MERGED),
	C(FIEMAP_EXTENT_SHARED),
	C(O_DIRECT),
	{ NULL, 0 }
};
#undef C

int pmt_const(const char *name, int64_t *value)
{
	for (const struct pmt_named *c = pmt_consts; c->name; c++) {
		if (strcmp(c->name, name) == 0) {
			*value = c->value;
			return 0;
		}
	}
	return -ENOENT;
}

int pmt_mmap(uint64_t hint, uint64_t length, int prot, int flags, int fd,
	     int64_t offset, uint64_t *out_addr)
{
	void *p = mmap((void *)(uintptr_t)hint, (size_t)length, prot, flags, fd,
		       (off_t)offset);
	if (p == MAP_FAILED)
		return -errno;
	*out_addr = (uint64_t)(uintptr_t)p;
	return 0;
}

int pmt_munmap(uint64_t addr, uint64_t length)
{
	return munmap((void *)(uintptr_t)addr, (size_t)length) ? -errno : 0;
}

int pmt_mremap(uint64_t old_addr, uint64_t old_length, uint64_t new_length,
	       int flags, uint64_t new_addr, uint64_t *out_addr)
{
	void *p = mremap((void *)(uintptr_t)old_addr, (size_t)old_length,
			 (size_t)new_length, flags, (void *)(uintptr_t)new_addr);
	if (p == MAP_FAILED)
		return -errno;
	*out_addr = (uint64_t)(uintptr_t)p;
	return 0;
}

int pmt_madvise(uint64_t addr, uint64_t length, int advice)
{
	return madvise((void *)(uintptr_t)addr, (size_t)length, advice) ? -errno : 0;
}

int pmt_mprotect(uint64_t addr, uint64_t length, int prot)
{
	return mprotect((void *)(uintptr_t)addr, (size_t)length, prot) ? -errno : 0;
}

int pmt_msync(uint64_t addr, uint64_t length, int flags)
{
	return msync((void *)(uintptr_t)addr, (size_t)length, flags) ? -errno : 0;
}

uint64_t pmt_pattern(uint64_t seed, uint64_t pos)
{
	/* splitmix64 of (seed, pos): cheap, position-dependent, never 0 */
	uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (pos / 8 + 1);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	z ^= z >> 31;
	return z ? z : 1;
}

/* Number of pages a touch loop visits inside [offset, length). */
static uint64_t touch_count(uint64_t length, uint64_t offset, uint64_t stride,
			    uint64_t count)
{
	if (stride == 0 || offset >= length)
		return 0;
	uint64_t avail = (length - offset + stride - 1) / stride;
	return count < avail ? count : avail;
}

static int64_t touch_loop(uint64_t addr, uint64_t length, uint64_t offset,
			  uint64_t stride, uint64_t count, int write,
			  uint64_t seed, uint64_t base, volatile int64_t *progress)
{
	uint64_t n = touch_count(length, offset, stride, count);
	volatile uint64_t sink = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = (offset + i * stride) & ~7ULL;
		volatile uint64_t *w = (volatile uint64_t *)(uintptr_t)(addr + off);
		if (write)
			*w = pmt_pattern(seed, base + off);
		else
			sink += *w;
		if (progress)
			*progress = (int64_t)(i + 1);
	}
	(void)sink;
	return (int64_t)n;
}

int64_t pmt_touch(uint64_t addr, uint64_t length, uint64_t offset,
		  uint64_t stride, uint64_t count, int write, uint64_t seed,
		  uint64_t base)
{
	if (stride == 0)
		return -EINVAL;
	return touch_loop(addr, length, offset, stride, count, write, seed, base, NULL);
}

int64_t pmt_touch_verify(uint64_t addr, uint64_t length, uint64_t offset,
			 uint64_t stride, uint64_t count, uint64_t seed,
			 uint64_t base, uint64_t *first_bad)
{
	if (stride == 0)
		return -EINVAL;
	uint64_t n = touch_count(length, offset, stride, count);
	int64_t bad = 0;
	*first_bad = UINT64_MAX;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = (offset + i * stride) & ~7ULL;
		uint64_t v = *(volatile uint64_t *)(uintptr_t)(addr + off);
		if (v != pmt_pattern(seed, base + off)) {
			if (!bad)
				*first_bad = off;
			bad++;
		}
	}
	return bad;
}

int64_t pmt_fill(uint64_t addr, uint64_t length, uint64_t seed, uint64_t base)
{
	uint64_t *w = (uint64_t *)(uintptr_t)addr;
	uint64_t n = length / 8;
	for (uint64_t i = 0; i < n; i++)
		w[i] = pmt_pattern(seed, base + i * 8);
	return (int64_t)n;
}

int64_t pmt_check(uint64_t addr, uint64_t length, uint64_t seed, uint64_t base,
		  uint64_t *first_bad)
{
	const uint64_t *w = (const uint64_t *)(uintptr_t)addr;
	uint64_t n = length / 8;
	int64_t bad = 0;
	*first_bad = UINT64_MAX;
	for (uint64_t i = 0; i < n; i++) {
		if (w[i] != pmt_pattern(seed, base + i * 8)) {
			if (!bad)
				*first_bad = i * 8;
			bad++;
		}
	}
	return bad;
}

int64_t pmt_pread(int fd, uint64_t buf, uint64_t length, int64_t offset)
{
	ssize_t r = pread(fd, (void *)(uintptr_t)buf, (size_t)length, (off_t)offset);
	return r < 0 ? -errno : (int64_t)r;
}

int64_t pmt_pwrite(int fd, uint64_t buf, uint64_t length, int64_t offset)
{
	ssize_t r = pwrite(fd, (const void *)(uintptr_t)buf, (size_t)length, (off_t)offset);
	return r < 0 ? -errno : (int64_t)r;
}

int pmt_fiemap(int fd, uint64_t start, uint64_t length, uint32_t flags,
	       struct pmt_extent *out, uint32_t max, uint32_t *nr)
{
	size_t sz = sizeof(struct fiemap) + (size_t)max * sizeof(struct fiemap_extent);
	struct fiemap *fm = calloc(1, sz);
	if (!fm)
		return -ENOMEM;
	fm->fm_start = start;
	fm->fm_length = length;
	fm->fm_flags = flags;
	fm->fm_extent_count = max;
	if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0) {
		int e = errno;
		free(fm);
		return -e;
	}
	for (uint32_t i = 0; i < fm->fm_mapped_extents && i < max; i++) {
		out[i].logical = fm->fm_extents[i].fe_logical;
		out[i].physical = fm->fm_extents[i].fe_physical;
		out[i].length = fm->fm_extents[i].fe_length;
		out[i].flags = fm->fm_extents[i].fe_flags;
		out[i].reserved = 0;
	}
	*nr = fm->fm_mapped_extents < max ? fm->fm_mapped_extents : max;
	free(fm);
	return 0;
}

int pmt_fallocate(int fd, int mode, int64_t offset, int64_t length)
{
	return fallocate(fd, mode, (off_t)offset, (off_t)length) ? -errno : 0;
}

int pmt_ftruncate(int fd, int64_t length)
{
	return ftruncate(fd, (off_t)length) ? -errno : 0;
}

int pmt_fsync(int fd)
{
	return fsync(fd) ? -errno : 0;
}

int pmt_pagemap(uint64_t addr, uint64_t npages, uint64_t *out)
{
	long ps = sysconf(_SC_PAGESIZE);
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t want = (size_t)npages * 8;
	off_t off = (off_t)(addr / (uint64_t)ps) * 8;
	size_t got = 0;
	while (got < want) {
		ssize_t r = pread(fd, (char *)out + got, want - got, off + (off_t)got);
		if (r < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	return got == want ? 0 : -EIO;
}

/* Shared page between parent and child: progress and fault info survive the
 * child's death by signal. */
struct pmt_shared {
	volatile int64_t progress;
	volatile uint64_t fault_addr;
	volatile int32_t si_code;
	volatile int32_t mismatches;
};
static struct pmt_shared *child_shared;

static void child_fault(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (child_shared) {
		child_shared->fault_addr = (uint64_t)(uintptr_t)si->si_addr;
		child_shared->si_code = si->si_code;
	}
	/* die of the same signal now, without re-executing the access (that
	 * would fault, and emit fault events, a second time): the signal stays
	 * blocked inside the handler and is delivered, with the default action,
	 * when the handler returns */
	signal(sig, SIG_DFL);
	raise(sig);
}

int pmt_child_touch(uint64_t addr, uint64_t length, uint64_t offset,
		    uint64_t stride, uint64_t count, int write, int verify,
		    uint64_t seed, uint64_t base, struct pmt_child_result *res)
{
	if (stride == 0)
		return -EINVAL;
	memset(res, 0, sizeof(*res));
	struct pmt_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return -errno;
	memset((void *)sh, 0, sizeof(*sh));
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		munmap(sh, sizeof(*sh));
		return -e;
	}
	if (pid == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = child_fault;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		child_shared = sh;
		sigaction(SIGBUS, &sa, NULL);
		sigaction(SIGSEGV, &sa, NULL);
		touch_loop(addr, length, offset, stride, count, write, seed, base,
			   &sh->progress);
		if (verify && write) {
			uint64_t first;
			int64_t bad = pmt_touch_verify(addr, length, offset, stride,
						       count, seed, base, &first);
			sh->mismatches = (int32_t)(bad > 0x7fffffff ? 0x7fffffff : bad);
		}
		_exit(0);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			int e = errno;
			munmap(sh, sizeof(*sh));
			return -e;
		}
	}
	res->touched = sh->progress;
	res->fault_addr = sh->fault_addr;
	res->si_code = sh->si_code;
	res->mismatches = sh->mismatches;
	if (WIFSIGNALED(status)) {
		res->status = WTERMSIG(status);
	} else {
		res->status = 0;
		res->exit_code = WEXITSTATUS(status);
	}
	munmap(sh, sizeof(*sh));
	return 0;
}

int pmt_set_thp_disable(int disable)
{
	return prctl(PR_SET_THP_DISABLE, disable ? 1 : 0, 0, 0, 0) ? -errno : 0;
}

int64_t pmt_process_vm(int write, uint64_t local, uint64_t remote, uint64_t length)
{
	struct iovec l = { (void *)(uintptr_t)local, (size_t)length };
	struct iovec r = { (void *)(uintptr_t)remote, (size_t)length };
	ssize_t n = write ? process_vm_writev(getpid(), &l, 1, &r, 1, 0)
			  : process_vm_readv(getpid(), &l, 1, &r, 1, 0);
	return n < 0 ? -errno : (int64_t)n;
}

int pmt_longterm_pin(uint64_t addr, uint64_t length)
{
#if defined(__NR_io_uring_setup) && defined(__NR_io_uring_register)
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	int ring = (int)syscall(__NR_io_uring_setup, 1, &p);
	if (ring < 0)
		return -errno;
	struct iovec iov = { (void *)(uintptr_t)addr, (size_t)length };
	int rc = (int)syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, &iov, 1);
	int e = rc < 0 ? errno : 0;
	if (rc == 0)
		syscall(__NR_io_uring_register, ring, IORING_UNREGISTER_BUFFERS, NULL, 0);
	close(ring);
	return rc < 0 ? -e : 0;
#else
	return -ENOSYS;
#endif
}
