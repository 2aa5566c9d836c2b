"""Print the fs_dax trace of three probes of kernel-profile rules that the
live tier's comparisons (result classes) do not see: fault flags
(INTERRUPTIBLE, ORIG_PTE_VALID) and the traced PTE result, the order of the
"PMD index past EOF" SIGBUS vs the VMA checks, and whether a FOLL_LONGTERM
pin of fsdax faults pages in before it is refused.  Run in a lab guest as
root on a DAX-mounted xfs (docs/lab-findings.md, 5.10):

    pmemtrace lab run --kernel 5.10 --prepare --fs xfs -- \
        /usr/bin/python3 scripts/lab_profile_rules.py /tmp/pmem

Uses the global tracefs buffer (a lab guest has nothing else tracing)."""

import ctypes
import ctypes.util
import os
import subprocess
import sys

T = "/sys/kernel/tracing"
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.syscall.restype = ctypes.c_long
M = 1 << 20
PROT_RW = 3
MAP_SHARED, MAP_FIXED, MAP_PRIVATE, MAP_ANON, MAP_NORESERVE = 1, 0x10, 2, 0x20, 0x4000


def w(path, val):
    with open(os.path.join(T, path), "w") as f:
        f.write(val)


def trace(label, fn):
    w("trace", "")
    w("events/fs_dax/enable", "1")
    try:
        out = fn()
    finally:
        w("events/fs_dax/enable", "0")
    lines = [ln.split(": ", 1)[1] for ln in open(os.path.join(T, "trace")) if "dax_" in ln and not ln.startswith("#")]
    print(f"== {label}: {out}")
    for ln in lines:
        print("   ", ln.strip()[:200])


def aligned_area(length):
    raw = libc.mmap(None, length + 4 * M, 0, MAP_PRIVATE | MAP_ANON | MAP_NORESERVE, -1, 0)
    return (raw + 2 * M - 1) & ~(2 * M - 1)


def mapfile(path, size, length, nohuge=False):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, 0)
    subprocess.run(["fallocate", "-l", str(size), path], check=True)
    a = aligned_area(length)
    p = libc.mmap(a, length, PROT_RW, MAP_SHARED | MAP_FIXED, fd, 0)
    assert p == a, ctypes.get_errno()
    if nohuge:
        libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(length), 15)  # MADV_NOHUGEPAGE
    return fd, a


d = sys.argv[1]
# 1. flags: read then write of neighbouring 4 KiB pages (no PMD: MADV_NOHUGEPAGE)
fd, a = mapfile(f"{d}/flags", 4 * M, 4 * M, nohuge=True)
trace(
    "read page 0, write page 2 (nohugepage)",
    lambda: (ctypes.c_char.from_address(a).value, ctypes.memset(a + 8192, 1, 1)) and "ok",
)
# 2. SIGBUS order: file 1 MiB, mapping 3 MiB from a 2 MiB-aligned address; read at +2 MiB
fd2, b = mapfile(f"{d}/eof", 1 * M, 3 * M)


def child():
    pid = os.fork()
    if pid == 0:
        _ = ctypes.c_char.from_address(b + 2 * M).value  # the read that faults
        os._exit(0)
    _, st = os.waitpid(pid, 0)
    return f"child signal {os.WTERMSIG(st) if os.WIFSIGNALED(st) else None}"


trace("read at +2M of a 3M mapping of a 1M file", child)
# 3. FOLL_LONGTERM: io_uring_register(IORING_REGISTER_BUFFERS) on a fresh fsdax mapping
fd3, c = mapfile(f"{d}/pin", 4 * M, 4 * M)
params = ctypes.create_string_buffer(120)
ring = libc.syscall(425, 4, params)  # io_uring_setup


class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


iov = iovec(c, 2 * M)


def pin():
    r = libc.syscall(427, ring, 0, ctypes.byref(iov), 1)  # io_uring_register(REGISTER_BUFFERS)
    return f"ring {ring} register -> {r} errno {ctypes.get_errno()}"


trace("io_uring REGISTER_BUFFERS of 2M not yet faulted", pin)
