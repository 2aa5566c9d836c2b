"""A small in-process mapping driver for live checks (ctypes: mmap with
MAP_FIXED_NOREPLACE, madvise, touches, FIEMAP), and the case the model reads
for what it did (built with pmemtrace's one case builder, the device read
from sysfs by pmemtrace.host.cases).  Used until the cffi workload engine
drives these; kept deliberately small.

Touching a mapping beyond EOF raises SIGBUS in *this* process: callers must
only touch offsets the case says are inside the file.
"""

import ctypes
import ctypes.util
import errno as _errno
import fcntl
import os
import struct

from pmemtrace.host.cases import namespace_geometry
from pmemtrace.host.fsread import Roots
from pmemtrace.model.build import CaseBuilder, case_to_json, dax_extents, dev_t, devdax_device, fsdax_device
from pmemtrace.model.case import Access, File
from pmemtrace.units import parse_int

libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x1, 0x2, 0x10, 0x20
MAP_FIXED_NOREPLACE = 0x100000
MADV = {"dontneed": 4, "hugepage": 14, "nohugepage": 15}
MAP_FAILED = ctypes.c_void_p(-1).value

PAGE = 4096
PMD = 2 << 20

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_UNWRITTEN = 0x800


class MmapError(OSError):
    pass


def _mmap(addr, length, prot, flags, fd, offset):
    p = libc.mmap(addr, length, prot, flags, fd, offset)
    if p is None or p == MAP_FAILED:
        e = ctypes.get_errno()
        raise MmapError(e, f"mmap: {os.strerror(e)}")
    return p


def free_address(length, align=PMD, shift=0):
    """An address where *length* bytes fit, ``align``-aligned plus *shift*
    (reserve with PROT_NONE, then release)."""
    span = length + 2 * align
    base = _mmap(None, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    libc.munmap(base, span)
    return (base + align - 1) // align * align + shift


class Mapping:
    """One mmap of *fd*: ``read(off)``/``write(off)`` touch one byte."""

    def __init__(self, fd, length, offset=0, shared=True, addr=None, writable=True):
        self.length = length
        self.offset = offset
        self.shared = shared
        prot = PROT_READ | (PROT_WRITE if writable else 0)
        flags = MAP_SHARED if shared else MAP_PRIVATE
        if addr is not None:
            flags |= MAP_FIXED_NOREPLACE
        self.addr = _mmap(addr, length, prot, flags, fd, offset)
        if addr is not None and self.addr != addr:
            libc.munmap(self.addr, length)
            raise MmapError(_errno.EEXIST, "MAP_FIXED_NOREPLACE ignored (kernel too old?)")

    def read(self, off):
        return ctypes.c_ubyte.from_address(self.addr + off).value

    def write(self, off, value=0x5A):
        ctypes.c_ubyte.from_address(self.addr + off).value = value

    def madvise(self, advice, off=0, length=None):
        if libc.madvise(self.addr + off, length if length is not None else self.length - off, MADV[advice]) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))

    def unmap(self):
        if self.addr:
            libc.munmap(self.addr, self.length)
            self.addr = None


def fiemap(fd, max_extents=256):
    """The file's extents via FS_IOC_FIEMAP: [{logical, physical, length, unwritten}]."""
    hdr = struct.pack("=QQIIII", 0, 0xFFFFFFFFFFFFFFFF, FIEMAP_FLAG_SYNC, 0, max_extents, 0)
    buf = bytearray(hdr + b"\0" * (56 * max_extents))
    fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
    n = struct.unpack_from("=I", buf, 20)[0]
    out = []
    for i in range(n):
        lo, ph, ln, _, _, flags = struct.unpack_from("=QQQQQI", buf, 32 + 56 * i)
        out.append({"logical": lo, "physical": ph, "length": ln, "unwritten": bool(flags & FIEMAP_EXTENT_UNWRITTEN)})
    return out


def make_file(path, size, written=True):
    """Create *path* of *size* bytes: fallocated, then (if *written*)
    written with data so its extents are written, not unwritten."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    try:
        # one allocation for the whole file, so the filesystem can align it
        # (xfs su=2m); then write it all so the extents are not unwritten
        os.posix_fallocate(fd, 0, size)
        if written:
            chunk = b"\xa5" * (1 << 20)
            off = 0
            while off < size:
                n = min(len(chunk), size - off)
                os.pwrite(fd, chunk[:n], off)
                off += n
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def device_geometry(namespace="namespace0.0"):
    """What the case's ``device`` needs, from sysfs: data_start (where block
    0 / device offset 0 lives), data size, mode/map/align as configured."""
    return namespace_geometry(Roots(), namespace)


def _case(device, mappings, accesses, release, file=None):
    b = CaseBuilder(device, kernel=release or os.uname().release, file=file)
    for mid, m in mappings.items():
        b.mapping(mid, m.addr if m.addr else m.want_addr, m.length, offset=m.offset, shared=m.shared)
    b.accesses += [Access(**a) for a in accesses]  # the tests write them in case format
    return case_to_json(b.build())


def fsdax_case(setup, path, mappings, accesses, map="mem", align="2M", release=None):
    """A case v1 dict for *path* on the fsdax *setup* (from guest.fsdax()),
    with the real extents and the real mapping addresses.

    :param mappings: {id: Mapping}
    :param accesses: case access dicts, in the order they were performed
    """
    geo = device_geometry()
    st = os.stat(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        extents = fiemap(fd)
    finally:
        os.close(fd)
    device = fsdax_device(
        data_start=geo["data_start"],
        size=geo["size"],
        map=map,
        align=parse_int(align),
        dev=dev_t(os.major(st.st_dev), os.minor(st.st_dev)),
    )
    file = File(size=st.st_size, ino=st.st_ino, fs=setup["fs"], extents=dax_extents(extents))
    return _case(device, mappings, accesses, release, file)


def devdax_case(align, mappings, accesses, release=None):
    geo = device_geometry()
    device = devdax_device(parse_int(align), size=geo["size"], data_start=geo["data_start"])
    return _case(device, mappings, accesses, release)
