"""The workload engine: the ONLY module that touches the C extension
``pmemtrace._engine`` (built from cffi_build/ by ``pip install``).

Everything returns plain Python values; a failed system call raises
:class:`EngineError` (an ``OSError`` with ``errno`` and ``op``, the operation
name).  A touch that may SIGBUS runs in a forked child
(:meth:`Mapping.child_touch`) so the signal never reaches pmemtrace.

Quick use::

    from pmemtrace.workload import engine
    fd = os.open(path, os.O_RDWR)
    with engine.mmap(fd, 4 << 20, sync=True) as m:      # MAP_SHARED_VALIDATE|MAP_SYNC
        m.touch(write=True)                             # C loop, one word per 4 KiB page
        assert m.verify() == 0
        print(hex(m.addr), m.pfns()[:2])
    engine.fiemap(path)                                 # [Extent(logical, physical, length, flags)]
"""

from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass

from .. import __version__
from ..errors import PmemtraceError


class EngineNotBuilt(PmemtraceError, ImportError):
    """The C engine is missing (installed where no C compiler was, see
    setup.py): an ImportError for code that treats the engine as optional,
    and a PmemtraceError so the CLI prints this one line, not a traceback."""


try:
    from .._engine import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the install
    raise EngineNotBuilt(
        "this command needs pmemtrace's C workload engine, which was not built when pmemtrace was "
        "installed (no C compiler?): install gcc and libc6-dev, then reinstall pmemtrace"
    ) from exc


def _verify_version():
    built = ffi.string(lib.pmt_version()).decode()
    if built != __version__:
        raise ImportError(
            f"pmemtrace._engine was built for pmemtrace {built} but the package is "
            f"{__version__}; rebuild it: 'pip install --no-build-isolation -e .'"
        )


_verify_version()

PAGE_SIZE = lib.pmt_page_size()
PMD_SIZE = 2 << 20
PUD_SIZE = 1 << 30

#: Capability constants: was the flag in the build's headers?
PMEMTRACE_HAS_MAP_SYNC = bool(lib.pmt_has_map_sync())
PMEMTRACE_HAS_MAP_SHARED_VALIDATE = bool(lib.pmt_has_map_shared_validate())
PMEMTRACE_HAS_MAP_FIXED_NOREPLACE = bool(lib.pmt_has_map_fixed_noreplace())
PMEMTRACE_HAS_MADV_HUGEPAGE = bool(lib.pmt_has_madv_hugepage())

#: names that exist only when the capability is present (cryptography's
#: CONDITIONAL_NAMES): pruned from the constants below when absent.
CONDITIONAL_NAMES = {
    "PMEMTRACE_HAS_MAP_SYNC": ["MAP_SYNC"],
    "PMEMTRACE_HAS_MAP_SHARED_VALIDATE": ["MAP_SHARED_VALIDATE"],
    "PMEMTRACE_HAS_MAP_FIXED_NOREPLACE": ["MAP_FIXED_NOREPLACE"],
    "PMEMTRACE_HAS_MADV_HUGEPAGE": ["MADV_HUGEPAGE", "MADV_NOHUGEPAGE"],
}

_CONST_NAMES = [
    "PROT_NONE",
    "PROT_READ",
    "PROT_WRITE",
    "PROT_EXEC",
    "MAP_SHARED",
    "MAP_PRIVATE",
    "MAP_FIXED",
    "MAP_ANONYMOUS",
    "MAP_POPULATE",
    "MAP_NORESERVE",
    "MAP_SHARED_VALIDATE",
    "MAP_SYNC",
    "MAP_FIXED_NOREPLACE",
    "MREMAP_MAYMOVE",
    "MREMAP_FIXED",
    "MREMAP_DONTUNMAP",
    "MADV_NORMAL",
    "MADV_DONTNEED",
    "MADV_WILLNEED",
    "MADV_HUGEPAGE",
    "MADV_NOHUGEPAGE",
    "MADV_REMOVE",
    "MS_SYNC",
    "MS_ASYNC",
    "MS_INVALIDATE",
    "FALLOC_FL_KEEP_SIZE",
    "FALLOC_FL_PUNCH_HOLE",
    "FALLOC_FL_ZERO_RANGE",
    "FIEMAP_FLAG_SYNC",
    "FIEMAP_FLAG_XATTR",
    "FIEMAP_EXTENT_LAST",
    "FIEMAP_EXTENT_UNKNOWN",
    "FIEMAP_EXTENT_DELALLOC",
    "FIEMAP_EXTENT_ENCODED",
    "FIEMAP_EXTENT_DATA_ENCRYPTED",
    "FIEMAP_EXTENT_NOT_ALIGNED",
    "FIEMAP_EXTENT_DATA_INLINE",
    "FIEMAP_EXTENT_DATA_TAIL",
    "FIEMAP_EXTENT_UNWRITTEN",
    "FIEMAP_EXTENT_MERGED",
    "FIEMAP_EXTENT_SHARED",
    "O_DIRECT",
]


def _load_consts():
    out = {}
    val = ffi.new("int64_t *")
    for name in _CONST_NAMES:
        if lib.pmt_const(name.encode(), val) == 0:
            out[name] = int(val[0])
    for cap, names in CONDITIONAL_NAMES.items():
        if not globals()[cap]:
            for n in names:
                out.pop(n, None)
    return out


CONSTANTS = _load_consts()
globals().update(CONSTANTS)

FIEMAP_EXTENT_FLAG_NAMES = {
    "last": "FIEMAP_EXTENT_LAST",
    "unknown": "FIEMAP_EXTENT_UNKNOWN",
    "delalloc": "FIEMAP_EXTENT_DELALLOC",
    "encoded": "FIEMAP_EXTENT_ENCODED",
    "encrypted": "FIEMAP_EXTENT_DATA_ENCRYPTED",
    "not_aligned": "FIEMAP_EXTENT_NOT_ALIGNED",
    "inline": "FIEMAP_EXTENT_DATA_INLINE",
    "tail": "FIEMAP_EXTENT_DATA_TAIL",
    "unwritten": "FIEMAP_EXTENT_UNWRITTEN",
    "merged": "FIEMAP_EXTENT_MERGED",
    "shared": "FIEMAP_EXTENT_SHARED",
}

_SIGNAMES = {int(s): s.name for s in __import__("signal").Signals}


class EngineError(OSError):
    """A system call made by the engine failed.  ``errno``, ``strerror`` as
    for OSError; ``op`` names the operation (``"mmap"``, ``"fiemap"`` ...)."""

    def __init__(self, errnum, op, detail=""):
        msg = f"{op}: {os.strerror(errnum)}" + (f" ({detail})" if detail else "")
        super().__init__(errnum, msg)
        self.op = op
        self.detail = detail

    @property
    def errname(self):
        return errname(self.errno)

    def __str__(self):
        return self.strerror


#: errno aliases: the name pmemtrace prints (and scenarios expect)
_ERRNO_PREFERRED = {_errno.EOPNOTSUPP: "EOPNOTSUPP", _errno.EAGAIN: "EAGAIN", _errno.EDEADLK: "EDEADLK"}


def errname(num):
    """errno -> its usual name (EOPNOTSUPP rather than glibc's alias ENOTSUP)."""
    return _ERRNO_PREFERRED.get(num) or _errno.errorcode.get(num, str(num))


def _check(rc, op, detail=""):
    if rc < 0:
        raise EngineError(-rc, op, detail)
    return rc


def _fileno(f):
    return f if isinstance(f, int) else f.fileno()


def pattern(seed, pos):
    """The 64-bit word the engine writes at absolute position ``pos`` (multiple of 8)."""
    return int(lib.pmt_pattern(seed, pos))


# ---- mappings -----------------------------------------------------------


@dataclass
class ChildResult:
    """What a forked toucher did: ``signal`` is None when it completed."""

    signal: int | None
    touched: int
    fault_addr: int | None
    si_code: int
    exit_code: int
    mismatches: int

    @property
    def signame(self):
        return _SIGNAMES.get(self.signal) if self.signal else None

    @property
    def sigbus(self):
        return self.signal == __import__("signal").SIGBUS

    def to_json(self):
        return {
            "signal": self.signame,
            "touched": self.touched,
            "fault_addr": self.fault_addr,
            "si_code": self.si_code,
            "exit_code": self.exit_code,
            "mismatches": self.mismatches,
        }


class Mapping:
    """A mapping made by :func:`mmap`.  ``addr`` and ``length`` are ints;
    offsets given to methods are relative to ``addr``.  Unmapped by
    :meth:`unmap` or on leaving a ``with`` block (never by garbage
    collection: explicit is safer with DAX)."""

    def __init__(self, addr, length, fd=-1, offset=0, prot=0, flags=0):
        self.addr = addr
        self.length = length
        self.fd = fd
        self.offset = offset
        self.prot = prot
        self.flags = flags
        self.mapped = True
        self.seed = 0x706D656D  # "pmem"
        self.written = []  # (offset, stride, count, seed) of write touches, for verify()

    def __repr__(self):
        return (
            f"<Mapping {self.addr:#x}+{self.length:#x} off={self.offset:#x} {'mapped' if self.mapped else 'unmapped'}>"
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unmap()

    @property
    def end(self):
        return self.addr + self.length

    def _range(self, offset, length):
        if length is None:
            length = self.length - offset
        if offset < 0 or length < 0 or offset + length > self.length:
            raise ValueError(f"range {offset:#x}+{length:#x} outside mapping of {self.length:#x}")
        return offset, length

    def unmap(self):
        if self.mapped:
            _check(lib.pmt_munmap(self.addr, self.length), "munmap", f"{self.addr:#x}+{self.length:#x}")
            self.mapped = False

    def touch(self, offset=0, length=None, stride=PAGE_SIZE, count=None, write=False, seed=None):
        """Touch one 8-byte word every ``stride`` bytes of [offset, offset+length)
        in C; a write stores the pattern for the file position (mapping offset +
        position), which :meth:`verify` checks.  Returns pages touched.
        May SIGBUS the process: use :meth:`child_touch` where that is possible."""
        offset, length = self._range(offset, length)
        count = (1 << 62) if count is None else count
        seed = self.seed if seed is None else seed
        n = _check(
            lib.pmt_touch(self.addr + offset, length, 0, stride, count, 1 if write else 0, seed, self.offset + offset),
            "touch",
        )
        if write and n:
            self.written.append((offset, length, stride, n, seed))
        return n

    def verify(self):
        """Re-read every word written by :meth:`touch` (write=True).  Returns a
        list of mismatching mapping offsets (empty = all good)."""
        bad = []
        first = ffi.new("uint64_t *")
        for offset, length, stride, n, seed in self.written:
            k = lib.pmt_touch_verify(self.addr + offset, length, 0, stride, n, seed, self.offset + offset, first)
            if k:
                bad.append(offset + int(first[0]))
        return bad

    def fill(self, offset=0, length=None, seed=None):
        """Write the pattern into every word of the range (a full write, not a touch)."""
        offset, length = self._range(offset, length)
        seed = self.seed if seed is None else seed
        return int(lib.pmt_fill(self.addr + offset, length, seed, self.offset + offset))

    def check(self, offset=0, length=None, seed=None, base=None):
        """Check every word against the pattern; returns the first bad offset or None."""
        offset, length = self._range(offset, length)
        seed = self.seed if seed is None else seed
        base = self.offset + offset if base is None else base
        first = ffi.new("uint64_t *")
        k = lib.pmt_check(self.addr + offset, length, seed, base, first)
        return None if k == 0 else offset + int(first[0])

    def child_touch(self, offset=0, length=None, stride=PAGE_SIZE, count=None, write=False, verify=True, seed=None):
        """Touch like :meth:`touch` in a forked child; returns a :class:`ChildResult`
        (``sigbus`` True if it died of SIGBUS).  Writes made by the child land in
        a shared mapping, so they are recorded for :meth:`verify` when the child
        completed."""
        offset, length = self._range(offset, length)
        count = (1 << 62) if count is None else count
        seed = self.seed if seed is None else seed
        res = ffi.new("struct pmt_child_result *")
        _check(
            lib.pmt_child_touch(
                self.addr + offset,
                length,
                0,
                stride,
                count,
                1 if write else 0,
                1 if verify else 0,
                seed,
                self.offset + offset,
                res,
            ),
            "fork-touch",
        )
        r = ChildResult(
            signal=int(res.status) or None,
            touched=int(res.touched),
            fault_addr=int(res.fault_addr) or None,
            si_code=int(res.si_code),
            exit_code=int(res.exit_code),
            mismatches=int(res.mismatches),
        )
        if write and r.signal is None and r.touched and self.flags & MAP_SHARED:
            self.written.append((offset, length, stride, r.touched, seed))
        return r

    def madvise(self, advice, offset=0, length=None):
        """advice: an int or "nohugepage" / "hugepage" / "dontneed" / "normal" / "willneed"."""
        if isinstance(advice, str):
            name = "MADV_" + advice.upper()
            if name not in CONSTANTS:
                raise ValueError(f"unknown or unsupported madvise advice {advice!r}")
            advice = CONSTANTS[name]
        offset, length = self._range(offset, length)
        _check(lib.pmt_madvise(self.addr + offset, length, advice), "madvise")

    def mprotect(self, prot):
        _check(lib.pmt_mprotect(self.addr, self.length, prot), "mprotect")
        self.prot = prot

    def msync(self, flags=None):
        _check(lib.pmt_msync(self.addr, self.length, MS_SYNC if flags is None else flags), "msync")

    def mremap(self, new_length, new_addr=None, maymove=True):
        """mremap this mapping; returns self, updated (addr may change)."""
        flags = MREMAP_MAYMOVE if maymove else 0
        if new_addr is not None:
            flags |= MREMAP_FIXED | MREMAP_MAYMOVE
        out = ffi.new("uint64_t *")
        _check(lib.pmt_mremap(self.addr, self.length, new_length, flags, new_addr or 0, out), "mremap")
        self.addr, self.length = int(out[0]), new_length
        return self

    def pagemap(self, offset=0, length=None):
        """Raw /proc/self/pagemap entries for the pages of the range."""
        offset, length = self._range(offset, length)
        return pagemap(self.addr + offset, (length + PAGE_SIZE - 1) // PAGE_SIZE)

    def pfns(self, offset=0, length=None):
        """The pfn behind each page (None when not present; 0 without CAP_SYS_ADMIN)."""
        return [e & ((1 << 55) - 1) if e >> 63 else None for e in self.pagemap(offset, length)]

    def longterm_pin(self, offset=0, length=None):
        """Pin the range long-term (FOLL_LONGTERM, as RDMA/io_uring fixed
        buffers do) and release it.  Raises EngineError("longterm-pin"):
        EOPNOTSUPP on fsdax (mm/gup.c check_vma_flags())."""
        offset, length = self._range(offset, length)
        _check(lib.pmt_longterm_pin(self.addr + offset, length), "longterm-pin")

    def pread(self, fd, length, file_offset, offset=0):
        """pread(fd) INTO this mapping at ``offset`` (O_DIRECT fd: DAX-GUP with write)."""
        self._range(offset, length)
        return pread_into(fd, self.addr + offset, length, file_offset)

    def pwrite(self, fd, length, file_offset, offset=0):
        """pwrite(fd) FROM this mapping at ``offset`` (O_DIRECT fd: DAX-GUP read-only)."""
        self._range(offset, length)
        return pwrite_from(fd, self.addr + offset, length, file_offset)


def mmap(
    fd,
    length,
    offset=0,
    prot=None,
    shared=True,
    addr=None,
    fixed=False,
    noreplace=False,
    sync=False,
    validate=None,
    populate=False,
    flags=0,
):
    """mmap(2) with everything Python's mmap module cannot say.

    ``addr``: a hint (or the exact address with ``fixed``/``noreplace``);
    ``sync``: MAP_SYNC, which implies MAP_SHARED_VALIDATE; ``validate``:
    MAP_SHARED_VALIDATE alone; ``populate``: MAP_POPULATE; ``fd`` -1 for
    anonymous memory.  Returns a :class:`Mapping`; raises EngineError("mmap").
    """
    fd = _fileno(fd) if fd != -1 else -1
    if prot is None:
        prot = PROT_READ | PROT_WRITE
    f = flags
    if sync:
        if not PMEMTRACE_HAS_MAP_SYNC:
            raise EngineError(_errno.EOPNOTSUPP, "mmap", "MAP_SYNC was not in the build headers")
        f |= MAP_SHARED_VALIDATE | MAP_SYNC
    elif validate:
        f |= MAP_SHARED_VALIDATE
    elif shared:
        f |= MAP_SHARED
    else:
        f |= MAP_PRIVATE
    if fd == -1:
        f |= MAP_ANONYMOUS
    if fixed:
        f |= MAP_FIXED
    if noreplace:
        f |= MAP_FIXED_NOREPLACE
    if populate:
        f |= MAP_POPULATE
    out = ffi.new("uint64_t *")
    _check(
        lib.pmt_mmap(addr or 0, length, prot, f, fd, offset, out),
        "mmap",
        f"length={length:#x} offset={offset:#x} flags={f:#x}",
    )
    return Mapping(int(out[0]), length, fd, offset, prot, f)


def reserve(length, align=PMD_SIZE):
    """An address where ``length`` bytes fit with ``align`` alignment: maps
    and unmaps anonymous PROT_NONE memory.  Use as a MAP_FIXED_NOREPLACE or hint
    address so a scenario controls the virtual alignment."""
    m = mmap(-1, length + align, prot=PROT_NONE, shared=False)
    a = (m.addr + align - 1) & ~(align - 1)
    m.unmap()
    return a


def pread_into(fd, addr, length, file_offset):
    return int(
        _check(
            lib.pmt_pread(_fileno(fd), addr, length, file_offset),
            "pread",
            f"fd -> {addr:#x}+{length:#x} at {file_offset:#x}",
        )
    )


def pwrite_from(fd, addr, length, file_offset):
    return int(
        _check(
            lib.pmt_pwrite(_fileno(fd), addr, length, file_offset),
            "pwrite",
            f"{addr:#x}+{length:#x} -> fd at {file_offset:#x}",
        )
    )


def process_vm_write(remote, local, length):
    """process_vm_writev on ourselves: copy local -> remote through GUP (write) on remote."""
    return int(_check(lib.pmt_process_vm(1, local, remote, length), "process_vm_writev"))


def process_vm_read(local, remote, length):
    """process_vm_readv on ourselves: copy remote -> local through GUP (read) on remote."""
    return int(_check(lib.pmt_process_vm(0, local, remote, length), "process_vm_readv"))


def read_mapping(m, offset, length):
    """Bytes of a mapping (faults it in: reads through the page tables)."""
    m._range(offset, length)
    return bytes(ffi.buffer(ffi.cast("char *", m.addr + offset), length))


def pattern_bytes(seed, base, length):
    """The pattern for positions [base, base+length) as bytes (length multiple of 8)."""
    buf = bytearray(length)
    lib.pmt_fill(ffi.cast("uint64_t", ffi.from_buffer(buf)), length, seed, base)
    return bytes(buf)


def check_bytes(data, seed, base):
    """First offset in data whose word differs from the pattern, or None."""
    first = ffi.new("uint64_t *")
    cdata = ffi.from_buffer(data)
    k = lib.pmt_check(ffi.cast("uint64_t", cdata), len(data), seed, base, first)
    return None if k == 0 else int(first[0])


def pagemap(addr, npages):
    out = ffi.new("uint64_t[]", max(npages, 1))
    _check(lib.pmt_pagemap(addr, npages, out), "pagemap")
    return [int(out[i]) for i in range(npages)]


class AlignedBuffer(Mapping):
    """Page-aligned anonymous memory for O_DIRECT (an ordinary, non-DAX buffer)."""

    def __init__(self, length):
        m = mmap(-1, length, shared=False)
        super().__init__(m.addr, m.length, -1, 0, m.prot, m.flags)


# ---- files --------------------------------------------------------------


@dataclass(frozen=True)
class Extent:
    logical: int
    physical: int
    length: int
    flags: int

    @property
    def unwritten(self):
        return bool(self.flags & FIEMAP_EXTENT_UNWRITTEN)

    @property
    def last(self):
        return bool(self.flags & FIEMAP_EXTENT_LAST)

    def flag_names(self):
        return [k for k, v in FIEMAP_EXTENT_FLAG_NAMES.items() if v in CONSTANTS and self.flags & CONSTANTS[v]]

    def to_case(self):
        """The extent in the model's case format."""
        return {
            "logical": self.logical,
            "physical": hex(self.physical),
            "length": self.length,
            "unwritten": self.unwritten,
        }

    def to_json(self):
        return {"logical": self.logical, "physical": self.physical, "length": self.length, "flags": self.flag_names()}


def fiemap(path_or_fd, start=0, length=None, sync=True, batch=256):
    """All extents of a file (FS_IOC_FIEMAP, FIEMAP_FLAG_SYNC by default), as
    :class:`Extent` objects.  Raises EngineError("fiemap") with EOPNOTSUPP on a
    filesystem without FIEMAP (tmpfs)."""
    own = not isinstance(path_or_fd, int) and not hasattr(path_or_fd, "fileno")
    fd = os.open(path_or_fd, os.O_RDONLY | os.O_CLOEXEC) if own else _fileno(path_or_fd)
    try:
        end = (1 << 64) - 1 if length is None else start + length
        out = ffi.new("struct pmt_extent[]", batch)
        nr = ffi.new("uint32_t *")
        extents = []
        pos = start
        flags = FIEMAP_FLAG_SYNC if sync else 0
        while pos < end:
            _check(lib.pmt_fiemap(fd, pos, end - pos, flags, out, batch, nr), "fiemap")
            if nr[0] == 0:
                break
            for i in range(nr[0]):
                e = out[i]
                extents.append(Extent(int(e.logical), int(e.physical), int(e.length), int(e.flags)))
            last = extents[-1]
            if last.last:
                break
            pos = last.logical + last.length
            flags = 0
        return extents
    finally:
        if own:
            os.close(fd)


def fallocate(fd, offset, length, mode=0):
    _check(lib.pmt_fallocate(_fileno(fd), mode, offset, length), "fallocate")


def punch_hole(fd, offset, length):
    fallocate(fd, offset, length, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)


def ftruncate(fd, length):
    _check(lib.pmt_ftruncate(_fileno(fd), length), "ftruncate")


def fsync(fd):
    _check(lib.pmt_fsync(_fileno(fd)), "fsync")


def set_thp_disable(disable=True):
    """prctl(PR_SET_THP_DISABLE) for this process (inherited by children)."""
    _check(lib.pmt_set_thp_disable(1 if disable else 0), "prctl")


def event_ffi():
    """(ffi, sizeof struct pmt_event): decode bpf/pmemtrace.h records with
    ``ffi.from_buffer("struct pmt_event *", data)``."""
    return ffi, ffi.sizeof("struct pmt_event")
