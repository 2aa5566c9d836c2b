"""The C workload engine on ordinary files (no root, no pmem): mmap flags,
touch loops and verification, FIEMAP, fallocate/punch hole, O_DIRECT into a
mapping, pagemap, and the SIGBUS-safe child."""

import errno
import os

import pytest

from pmemtrace import __version__
from pmemtrace.workload import engine as E

MiB = 1 << 20


@pytest.fixture
def datafile(tmp_path):
    """A 4 MiB fully allocated file on the test filesystem."""
    path = tmp_path / "data"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    E.ftruncate(fd, 4 * MiB)
    try:
        E.fallocate(fd, 0, 4 * MiB)
    except E.EngineError as exc:
        os.close(fd)
        pytest.skip(f"{tmp_path} cannot fallocate ({exc}); run on ext4/xfs")
    yield path, fd
    os.close(fd)


def _fs_supports_fiemap(path):
    try:
        E.fiemap(path)
        return True
    except E.EngineError as exc:
        assert exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY)
        return False


def test_version_baked_in_and_capabilities():
    assert E.ffi.string(E.lib.pmt_version()).decode() == __version__
    # Debian 12's glibc headers have all of these; the constants match the kernel ABI
    assert E.PMEMTRACE_HAS_MAP_SYNC and E.MAP_SYNC == 0x80000
    assert E.PMEMTRACE_HAS_MAP_SHARED_VALIDATE and E.MAP_SHARED_VALIDATE == 0x03
    assert E.PMEMTRACE_HAS_MAP_FIXED_NOREPLACE and E.MAP_FIXED_NOREPLACE == 0x100000
    assert E.MADV_NOHUGEPAGE == 15 and E.MADV_HUGEPAGE == 14
    assert E.FIEMAP_EXTENT_UNWRITTEN == 0x800 and E.FIEMAP_EXTENT_LAST == 1


def test_event_struct_matches_header():
    ffi, size = E.event_ffi()
    assert size == 160
    assert ffi.offsetof("struct pmt_event", "comm") == 24
    assert ffi.offsetof("struct pmt_event", "address") == 56
    assert ffi.offsetof("struct pmt_event", "result") == 128
    assert ffi.offsetof("struct pmt_event", "reserved") == 152
    # decode a recorded sample through the same cdef
    raw = bytearray(160)
    raw[8:12] = (1).to_bytes(4, "little")  # kind PMT_KIND_PMD_FAULT
    raw[56:64] = (0x7F0000200000).to_bytes(8, "little")
    ev = ffi.from_buffer("struct pmt_event *", raw)
    assert ev.kind == 1 and ev.address == 0x7F0000200000


def test_touch_write_verify_and_readback(datafile):
    path, fd = datafile
    with E.mmap(fd, 4 * MiB) as m:
        assert m.addr % E.PAGE_SIZE == 0
        assert m.touch(write=True) == 4 * MiB // E.PAGE_SIZE
        assert m.touch(offset=MiB, length=MiB, stride=2 * E.PAGE_SIZE) == 128
        assert m.verify() == []
        m.msync()
    # the pattern is keyed on the file position: read it back with os.pread
    with open(path, "rb") as f:
        f.seek(3 * MiB)
        word = int.from_bytes(f.read(8), "little")
    assert word == E.pattern(0x706D656D, 3 * MiB) != 0


def test_verify_detects_corruption(datafile):
    _path, fd = datafile
    with E.mmap(fd, MiB) as m:
        m.touch(write=True)
        os.pwrite(fd, b"\xff" * 8, 5 * E.PAGE_SIZE)  # clobber page 5's word behind its back
        assert m.verify() == [5 * E.PAGE_SIZE]
        m.fill()
        assert m.check() is None
        os.pwrite(fd, b"\0" * 8, 4096 + 16)
        assert m.check() == 4096 + 16


def test_mmap_offset_and_hint_and_noreplace(datafile):
    _, fd = datafile
    want = E.reserve(2 * MiB)
    assert want % (2 * MiB) == 0
    with E.mmap(fd, 2 * MiB, offset=2 * MiB, addr=want, noreplace=True) as m:
        assert m.addr == want
        m.touch(write=True)
        assert m.verify() == []
        with pytest.raises(E.EngineError) as ei:
            E.mmap(fd, E.PAGE_SIZE, addr=want, noreplace=True)
        assert ei.value.errno == errno.EEXIST and ei.value.op == "mmap"
    # the words written through offset 2M are at file position 2M+
    assert int.from_bytes(os.pread(fd, 8, 2 * MiB), "little") == E.pattern(0x706D656D, 2 * MiB)


def test_map_sync_refused_on_non_dax_file(datafile):
    _, fd = datafile
    with pytest.raises(E.EngineError) as ei:
        E.mmap(fd, MiB, sync=True)
    assert ei.value.errno == errno.EOPNOTSUPP
    assert isinstance(ei.value, OSError) and "mmap" in str(ei.value)


def test_errors_name_the_operation():
    with pytest.raises(OSError) as ei:
        E.mmap(-1, 0)
    assert ei.value.errno == errno.EINVAL and ei.value.op == "mmap"
    with pytest.raises(E.EngineError) as ei:
        E.fallocate(999_999, 0, 4096)
    assert ei.value.errno == errno.EBADF and ei.value.op == "fallocate"


def test_madvise_and_mremap(datafile):
    _, fd = datafile
    m = E.mmap(fd, MiB)
    try:
        m.madvise("nohugepage")
        m.madvise("hugepage")
        m.touch(write=True)
        m.madvise("dontneed", 0, 2 * E.PAGE_SIZE)
        assert m.verify() == []  # shared file mapping: DONTNEED drops PTEs, not data
        with pytest.raises(ValueError):
            m.madvise("bogus")
        m.mremap(2 * MiB)
        assert m.length == 2 * MiB
        assert m.check(0, 8, base=0) is None or True  # mapping still readable
        assert m.verify() == []
    finally:
        m.unmap()


def test_child_touch_past_eof_reports_sigbus(datafile):
    _, fd = datafile
    with E.mmap(fd, 8 * MiB) as m:  # file is 4 MiB: the second half is past EOF
        ok = m.child_touch(length=4 * MiB, write=True)
        assert ok.signal is None and ok.touched == 1024 and ok.mismatches == 0
        bad = m.child_touch(offset=3 * MiB, length=2 * MiB, write=True)
        assert bad.sigbus and bad.signame == "SIGBUS"
        assert bad.touched == 256  # 1 MiB of pages before EOF completed
        assert bad.fault_addr == m.addr + 4 * MiB
        assert m.verify() == []
    # pmemtrace itself survived: we are here


def test_pagemap_present_bits():
    # anonymous private memory: no fault-around, so exactly the touched pages are present
    with E.mmap(-1, 64 * E.PAGE_SIZE, shared=False) as m:
        m.madvise("nohugepage")
        assert all(p is None for p in m.pfns())
        m.touch(count=4, write=True)
        entries = m.pagemap(0, 8 * E.PAGE_SIZE)
        assert [bool(e >> 63) for e in entries] == [True] * 4 + [False] * 4
        pfns = m.pfns(0, 4 * E.PAGE_SIZE)
        if os.geteuid() != 0:
            assert pfns == [0, 0, 0, 0]  # pfns hidden without CAP_SYS_ADMIN
        else:
            assert all(p and p > 0 for p in pfns)


def test_fiemap_extents_and_punch_hole(datafile):
    path, fd = datafile
    if not _fs_supports_fiemap(path):
        pytest.skip("filesystem has no FIEMAP (tmpfs?)")
    ext = E.fiemap(path)
    assert sum(e.length for e in ext) == 4 * MiB
    assert ext[-1].last and all(e.unwritten for e in ext)  # fallocated, never written
    os.pwrite(fd, b"x" * E.PAGE_SIZE, 0)
    E.fsync(fd)
    E.punch_hole(fd, MiB, MiB)
    ext = E.fiemap(path)
    covered = [(e.logical, e.logical + e.length) for e in ext]
    assert not any(a < 2 * MiB and b > MiB for a, b in covered), covered
    assert sum(e.length for e in ext) == 3 * MiB
    assert not ext[0].unwritten and ext[0].logical == 0
    assert os.fstat(fd).st_size == 4 * MiB  # KEEP_SIZE
    assert "last" in ext[-1].flag_names()
    case_ext = ext[0].to_case()
    assert set(case_ext) == {"logical", "physical", "length", "unwritten"}


def test_fiemap_on_tmpfs_is_an_engine_error():
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    path = f"/dev/shm/pmemtrace-test-{os.getpid()}"
    with open(path, "wb") as f:
        f.write(b"x" * 4096)
    try:
        try:
            E.fiemap(path)
        except E.EngineError as exc:
            assert exc.op == "fiemap" and exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY)
    finally:
        os.unlink(path)


def test_o_direct_between_file_and_mapping(tmp_path, datafile):
    """O_DIRECT pread INTO a file mapping and pwrite FROM it: the GUP path the
    DAX scenarios use (here the mapping is page cache, not DAX)."""
    _path, fd = datafile
    src = tmp_path / "direct"
    try:
        dfd = os.open(src, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError as exc:
        pytest.skip(f"O_DIRECT not supported here: {exc}")
    try:
        E.ftruncate(dfd, MiB)
        with E.mmap(fd, MiB) as m:
            m.fill()
            assert m.pwrite(dfd, MiB, 0) == MiB  # mapping -> file
            m.fill(seed=1)  # scribble
            assert m.pread(dfd, MiB, 0) == MiB  # file -> mapping
            assert m.check() is None  # original pattern is back
            with pytest.raises(E.EngineError) as ei:
                m.pread(dfd, 100, 0)  # misaligned length
            assert ei.value.errno == errno.EINVAL and ei.value.op == "pread"
    finally:
        os.close(dfd)


def test_thp_disable_is_inherited_by_child(datafile):
    _, _fd = datafile
    pid = os.fork()
    if pid == 0:
        try:
            E.set_thp_disable(True)
            with open("/proc/self/status") as f:
                ok = "THP_enabled:\t0" in f.read()
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_longterm_pin_anon_ok_file_refused(datafile):
    """FOLL_LONGTERM through io_uring fixed buffers: allowed on anonymous
    memory; a shared writable file mapping is refused (EFAULT on page-cache
    files since 6.5, EOPNOTSUPP on fsdax)."""
    with E.mmap(-1, 1 << 20, shared=False) as anon:
        try:
            anon.longterm_pin()
        except E.EngineError as exc:
            if exc.errno in (errno.ENOSYS, errno.EPERM):
                pytest.skip(f"io_uring unavailable here: {exc}")
            raise
    _, fd = datafile
    with E.mmap(fd, MiB) as m:
        m.touch(write=True)
        with pytest.raises(E.EngineError) as ei:
            m.longterm_pin()
        assert ei.value.op == "longterm-pin"
        assert ei.value.errno in (errno.EFAULT, errno.EOPNOTSUPP)


def test_version_mismatch_is_an_import_error_with_remedy(monkeypatch):
    monkeypatch.setattr(E, "__version__", "0.0.0-other")
    with pytest.raises(ImportError) as ei:
        E._verify_version()
    assert "pip install --no-build-isolation -e ." in str(ei.value)
    assert __version__ in str(ei.value)
