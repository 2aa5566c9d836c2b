"""`pmemtrace diagnose` against real kernels in the lab guest.

Oracle: the fs_dax tracepoints.  ``diagnose FILE`` predicts, per 2 MiB chunk,
what the first write through a MAP_SHARED mapping will do; the test then
maps the file at a 2 MiB aligned address, writes one byte per chunk (a
trace marker before each) and reads ``dax_pmd_fault_done`` /
``dax_pte_fault_done`` per chunk.  Three files on every kernel: xfs with
``su=2m`` (the lab default), ext4 with default mkfs, and a fragmented file
(written 1 MiB at a time, interleaved with a second file, so its extents
are 1 MiB long).
"""

import os

import pytest

from pmemtrace.host import HostState, Roots, diagnose_file, diagnose_host, diagnose_pid
from pmemtrace.host.strips import each_chunk
from pmemtrace.host.svg import terminal_strip
from pmemtrace.live.tracefs import chunk_outcome
from pmemtrace.workload import engine

from . import driver
from .driver import PMD, Mapping

MiB = 1 << 20
SIZE = 16 * MiB  # 8 chunks: enough to show a pattern, cheap under TCG


def observed_outcome(events):
    """pmd / pte / none for one chunk's first write, from fs_dax events
    (pmemtrace's one classifier of fs_dax results)."""
    return chunk_outcome(events)


def touch_and_observe(tracefs, path, size, op="write"):
    fd = os.open(path, os.O_RDWR)
    try:
        addr = driver.free_address(size)
        m = Mapping(fd, size, addr=addr)
        try:
            with tracefs.capture() as cap:
                for i in range(size // PMD):
                    tracefs.mark(f"chunk {i}")
                    if op == "write":
                        m.write(i * PMD)
                    else:
                        m.read(i * PMD)
                tracefs.mark("end")
        finally:
            m.unmap()
    finally:
        os.close(fd)
    groups = cap.groups()
    return [observed_outcome(cap.events(lines=groups.get(f"chunk {i}", []))) for i in range(size // PMD)]


def predicted(path):
    strip = diagnose_file(HostState(Roots()), path, op="write")
    assert not [f for f in strip.findings if f.verdict in ("no-dax", "error")], strip.to_json()
    return strip, [c.outcome for c in strip.chunks]


def _fresh(setup, name):
    path = os.path.join(setup["mount"], name)
    if os.path.exists(path):
        os.unlink(path)
    return driver.make_file(path, SIZE, written=True)


def _compare(tracefs, path, what):
    strip, want = predicted(path)
    got = touch_and_observe(tracefs, path, SIZE)
    if want != got:
        rows = "\n".join(
            f"  chunk {c.index}: predicted {c.outcome}/{c.reason} ({c.layout}, {c.extents}) observed {o}"
            for c, o in zip(strip.chunks, got)
        )
        pytest.fail(f"{what} on {os.uname().release}: diagnose and the kernel disagree\n{rows}", pytrace=False)
    # shown by `pytest -rA` (the lab's summary): the strip and the reasons
    print(
        f"{what} on {os.uname().release}: {''.join(terminal_strip(strip, colour=False))} "
        f"observed {got} reasons {strip.reasons()}"
    )
    return strip, got


class TestDiagnoseFileAgainstTracepoints:
    def test_xfs_su_2m(self, guest, tracefs):
        setup = guest.fsdax(map="mem", align="2M", fs="xfs")
        strip, got = _compare(tracefs, _fresh(setup, "diag-xfs"), "xfs su=2m")
        assert got == ["pmd"] * (SIZE // PMD), strip.to_json()

    def test_ext4_default_mkfs(self, guest, tracefs):
        setup = guest.fsdax(map="mem", align="2M", fs="ext4")
        strip, _got = _compare(tracefs, _fresh(setup, "diag-ext4"), "ext4 default mkfs")
        # whatever the kernel does, diagnose must say why for every non-PMD chunk
        assert all(c.reason for c in strip.chunks if c.outcome == "pte"), strip.to_json()

    def test_ext4_fallocated(self, guest, tracefs):
        """The lab-recipe case: a fallocated (unwritten) file on ext4 default mkfs."""
        setup = guest.fsdax(map="mem", align="2M", fs="ext4")
        path = os.path.join(setup["mount"], "diag-ext4-falloc")
        if os.path.exists(path):
            os.unlink(path)
        driver.make_file(path, SIZE, written=False)
        _compare(tracefs, path, "ext4 default mkfs, fallocated")

    def test_fragmented_file(self, guest, tracefs):
        setup = guest.fsdax(map="mem", align="2M", fs="xfs")
        paths = [os.path.join(setup["mount"], n) for n in ("diag-frag", "diag-frag-other")]
        for p in paths:
            if os.path.exists(p):
                os.unlink(p)
        fds = [os.open(p, os.O_CREAT | os.O_RDWR, 0o644) for p in paths]
        try:
            # 1 MiB at a time, alternating between the two files: each write
            # allocates at EOF and the neighbour's blocks are already taken
            for k in range(SIZE // MiB):
                for fd in fds:
                    os.pwrite(fd, b"\x5a" * MiB, k * MiB)
                    engine.fsync(fd)
        finally:
            for fd in fds:
                os.close(fd)
        strip, got = _compare(tracefs, paths[0], "fragmented xfs file")
        os.unlink(paths[1])
        assert "pte" in got and any(c.reason == "extent-too-short" for c in strip.chunks), strip.to_json()


class TestDiagnoseHostInGuest:
    def test_fsdax_xfs_mount(self, guest):
        setup = guest.fsdax(map="mem", align="2M", fs="xfs")
        st = HostState(Roots())
        fs = diagnose_host(st)
        codes = {(f.subject, f.code) for f in fs}
        assert ("namespace0.0", "pmd-capable") in codes, codes
        assert (setup["mount"], "mount-dax") in codes, codes
        assert (setup["mount"], "fs-geometry-2m") in codes, codes  # xfs_info sunit=512 blks
        assert ("cmdline", "memmap-emulated") in codes

    def test_ext4_default_geometry(self, guest):
        setup = guest.fsdax(map="mem", align="2M", fs="ext4")
        fs = diagnose_host(HostState(Roots()))
        assert (setup["mount"], "fs-geometry-unaligned") in {(f.subject, f.code) for f in fs}

    @pytest.mark.parametrize("align,code", [("4K", "devdax-align-4k"), ("2M", "devdax-pmd")])
    def test_devdax(self, guest, align, code):
        dev = guest.devdax(align)
        fs = diagnose_host(HostState(Roots()))
        name = os.path.basename(dev)
        assert (name, code) in {(f.subject, f.code) for f in fs}


class TestDiagnosePidAgainstTracepoints:
    def test_mapping_colour_and_nohugepage(self, guest, tracefs):
        """This process maps an xfs su=2m file twice: 1 MiB off colour, and
        aligned with MADV_NOHUGEPAGE; diagnose --pid predicts each 2 MiB
        virtual chunk's first write, the tracepoints show what it did."""
        setup = guest.fsdax(map="mem", align="2M", fs="xfs")
        path = _fresh(setup, "diag-pid")
        fd = os.open(path, os.O_RDWR)
        maps = []
        try:
            off = Mapping(fd, SIZE, addr=driver.free_address(SIZE, shift=MiB))
            maps.append(off)
            nh = Mapping(fd, SIZE, addr=driver.free_address(SIZE))
            maps.append(nh)
            nh.madvise("nohugepage")
            strips = {s.details["start"]: s for s in diagnose_pid(HostState(Roots()), os.getpid())}
            assert off.addr in strips and nh.addr in strips, sorted(hex(a) for a in strips)
            for m, want_reason in ((off, "pmd-colour-mismatch"), (nh, "nohugepage")):
                strip = strips[m.addr]
                chunks = list(each_chunk(strip))  # every 2 MiB chunk, not one per run
                with tracefs.capture() as cap:
                    for i, (offset, _ch) in enumerate(chunks):
                        tracefs.mark(f"chunk {i}")
                        m.write(offset)
                    tracefs.mark("end")
                groups = cap.groups()
                got = [observed_outcome(cap.events(lines=groups.get(f"chunk {i}", []))) for i in range(len(chunks))]
                want = [c.outcome for _o, c in chunks]
                assert len(chunks) == strip.blocks() == (9 if m is off else 8)  # 1 MiB off: 9 PMDs
                assert want == got, (want_reason, [(o, c.outcome, c.reason) for o, c in chunks], got)
                assert {c.reason for c in strip.chunks} == {want_reason}
                print(
                    f"pid mapping {want_reason} on {os.uname().release}: "
                    f"{''.join(terminal_strip(strip, colour=False))} observed {got}"
                )
        finally:
            for m in maps:
                m.unmap()
            os.close(fd)

    def test_observe_side_by_side(self, guest):
        """diagnose --pid --observe: the recorded fs_dax events laid on the
        predicted chunks agree with the prediction (aligned -> pmd, 1 MiB
        off colour -> pte), recorded in a private instance: the global
        buffer's settings are as they were found, and no instance is left."""
        from pmemtrace.host import observe

        def global_state(t):
            return {
                rel: open(os.path.join(t, rel)).read()
                for rel in ("tracing_on", "events/fs_dax/enable", "set_event_pid", "buffer_size_kb")
            }

        setup = guest.fsdax(map="mem", align="2M", fs="xfs")
        path = _fresh(setup, "diag-observe")
        fd = os.open(path, os.O_RDWR)
        maps = []
        try:
            maps.append(Mapping(fd, SIZE, addr=driver.free_address(SIZE)))
            maps.append(Mapping(fd, SIZE, addr=driver.free_address(SIZE, shift=MiB)))
            roots = Roots()
            strips = [
                s for s in diagnose_pid(HostState(roots), os.getpid()) if s.details["start"] in {m.addr for m in maps}
            ]
            assert len(strips) == 2

            def touch():
                for m in maps:
                    s = next(x for x in strips if x.details["start"] == m.addr)
                    for offset, _ch in each_chunk(s):
                        m.write(offset)

            t = observe.tracefs_dir(roots)
            before = global_state(t)
            events, lost = observe.collect(roots, os.getpid(), 0.2, during=touch)
            assert lost == 0
            observe.annotate(strips, events)
            for s in strips:
                got = [(c.outcome, c.observed) for c in s.chunks]
                assert all(a == b for a, b in got), got
            assert {c.outcome for c in strips[0].chunks} | {c.outcome for c in strips[1].chunks} == {"pmd", "pte"}
            assert global_state(t) == before
            assert not [d for d in os.listdir(os.path.join(t, "instances")) if d.startswith("pmemtrace-")]
        finally:
            for m in maps:
                m.unmap()
            os.close(fd)
