"""In-kernel aggregation (bcc, the default watch) as user space sees it:
the BTF offsets the header-free BPF program reads, the exact kallsyms
lookup, and kernel-counted rows folded into the same views rows the events
would reach (same counts, same rows, same events_by_name)."""

import collections
import os
import struct

import pytest

from pmemtrace.events import Event
from pmemtrace.live import btf
from pmemtrace.live.decode import COUNTERS, CountedRow, DevdaxPairing
from pmemtrace.live.probes import kernel_functions, resolve
from pmemtrace.live.session import Record, Session
from pmemtrace.live.views import Aggregator

PMD = 2 << 20
DEV = 259 << 20


def _write_btf(tmp_path, types, strings):
    """A vmlinux BTF file of *types* (struct btf_type records) and *strings*."""
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    p = tmp_path / "vmlinux"
    p.write_bytes(hdr + types + strings)
    return p


def _btf_blob():
    """A BTF blob: int (1), struct vm_area_struct { unsigned long vm_start;
    unsigned long vm_end; struct mm_struct *vm_mm; union { const
    vm_flags_t vm_flags; } } with an anonymous union (as 6.3+), and a
    forward declaration of the same name before it, which must be skipped."""
    strings = b"\0unsigned long\0vm_area_struct\0vm_start\0vm_end\0vm_flags\0vm_flags_t\0"

    def off(s):
        return strings.index(s.encode() + b"\0")

    types = b""
    types += struct.pack("<III", off("unsigned long"), 1 << 24, 8) + struct.pack("<I", 64)  # 1 INT
    types += struct.pack("<III", off("vm_area_struct"), 7 << 24, 0)  # 2 FWD
    types += struct.pack("<III", off("vm_flags_t"), 8 << 24, 1)  # 3 TYPEDEF -> int
    types += struct.pack("<III", 0, 10 << 24, 3)  # 4 CONST -> typedef
    types += struct.pack("<III", 0, (5 << 24) | 1, 8) + struct.pack("<III", off("vm_flags"), 4, 0)  # 5 UNION
    types += struct.pack("<III", off("vm_area_struct"), (4 << 24) | 3, 32)  # 6 STRUCT
    types += struct.pack("<III", off("vm_start"), 1, 0)
    types += struct.pack("<III", off("vm_end"), 1, 64)
    types += struct.pack("<III", 0, 5, 192)  # the anonymous union at byte 24
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def test_btf_member_offsets_through_anonymous_members(tmp_path):
    b = btf.BTF(_btf_blob())
    ids = b.find_structs({"vm_area_struct"})
    assert ids == {"vm_area_struct": 6}  # the definition, not the forward declaration
    assert b.member_offset(6, "vm_start") == 0
    assert b.member_offset(6, "vm_end") == 8
    assert b.member_offset(6, "vm_flags") == 24
    assert b.member_offset(6, "vm_mm") is None
    p = tmp_path / "vmlinux"
    p.write_bytes(_btf_blob())
    got = btf.offsets(str(p), cache=False)
    assert got == {"PMT_OFF_VMA_START": 0, "PMT_OFF_VMA_END": 8, "PMT_OFF_VMA_FLAGS": 24}
    p.write_bytes(b"not btf at all, not btf at all")
    assert btf.offsets(str(p), cache=False) == {}


@pytest.mark.skipif(not os.access(btf.VMLINUX, os.R_OK), reason="no readable kernel BTF on this host")
def test_btf_of_the_running_kernel_has_every_member():
    got = btf.offsets(cache=False)
    assert set(got) == set(btf.WANTED.values())
    assert got["PMT_OFF_VMA_START"] == 0 and got["PMT_OFF_VMA_END"] == 8  # unchanged since 2.6


def test_kallsyms_exact_names_and_modules(tmp_path):
    p = tmp_path / "kallsyms"
    p.write_text(
        "ffffffff81000000 T vmf_insert_pfn_pmd_prot\n"
        "ffffffff81000010 t gup_fast_fallback.isra.0\n"
        "ffffffff81000020 D get_dev_pagemap\n"
        "ffffffffc0000000 t dev_dax_huge_fault\t[device_dax]\n"
        "ffffffff81000030 T bpf_get_raw_tracepoint\n"
    )
    f = kernel_functions(str(p))
    assert f == {"vmf_insert_pfn_pmd_prot": None, "dev_dax_huge_fault": "device_dax", "bpf_get_raw_tracepoint": None}
    res = {r.point.name: r for r in resolve(f, {"dax_pte_fault_done", "dax_pmd_fault_done"}, raw_tracepoints=True)}
    assert res["insert_pmd"].winner == "vmf_insert_pfn_pmd_prot"  # not vmf_insert_pfn_pmd: exact names
    assert res["gup_fast"].winner is None  # a .isra clone is not the function
    assert res["devdax_fault"].note == "in module device_dax"
    assert res["dax_pte_fault_done"].mechanism == "raw_tracepoint"
    assert res["dax_pmd_fault_done"].mechanism == "raw_tracepoint"
    assert res["dax_load_hole"].mechanism == "tracepoint"  # only counted by name
    plain = {r.point.name: r for r in resolve(f, {"dax_pte_fault_done", "dax_pmd_fault_done"})}
    assert plain["dax_pmd_fault_done"].mechanism == "tracepoint"  # every event (--events, --record)
    assert res["insert_pmd"].to_json()["mechanism"] == "kprobe"


def _events(pid=9, vm_start=0x7F0000000000, n=3):
    """n PMD faults with insert hits, 2n 4 KiB faults, one huge zero page,
    5 get_dev_pagemap calls: what the views see one event at a time."""
    base = dict(dev=DEV, ino=5, vm_start=vm_start, vm_end=vm_start + 8 * PMD, vm_flags=0xFB, pgoff=0, max_pgoff=4096)
    out = []
    for k in range(n):
        a = vm_start + k * PMD
        out.append(Event("dax_pmd_fault", dict(base, address=a, flags=1, result=0), pid=pid, comm="w"))
        ins = dict(address=a, vm_start=vm_start, vm_end=vm_start + 8 * PMD, vm_flags=0xFB, pfn=0, write=1, order=9)
        out.append(Event("insert_pmd", ins, pid=pid, comm="w"))
        out.append(Event("dax_pmd_fault_done", dict(base, address=a, flags=1, result=0x100), pid=pid, comm="w"))
    for k in range(2 * n):
        f = dict(dev=DEV, ino=5, vm_flags=0xFB, address=vm_start + 4 * PMD + k * 4096, pgoff=0, flags=1, result=0x100)
        out.append(Event("dax_pte_fault_done", f, pid=pid, comm="w"))
    hole = dict(dev=DEV, ino=5, vm_flags=0xFB, address=vm_start + 6 * PMD, zero_folio=1)
    out.append(Event("dax_pmd_load_hole", hole, pid=pid, comm="w"))
    out += [Event("get_dev_pagemap", {"pfn": 7}, pid=pid, comm="w") for _ in range(5)]
    return out


def test_kernel_counts_fold_into_the_rows_events_reach():
    by_event = Aggregator()
    for ev in _events():
        by_event.add(ev)
    by_count = Aggregator()
    vs = 0x7F0000000000
    row = CountedRow(9, "w", DEV, 5, vs, vs + 8 * PMD, pmd=3, pte=6, huge_zero=1, insert_pmd=3)
    names = {"dax_pmd_fault": 3, "insert_pmd": 3, "dax_pmd_fault_done": 3, "dax_pte_fault_done": 6}
    by_count.add_counts(row, dict(names, dax_pmd_load_hole=1, get_dev_pagemap=5))
    by_count.add_counts(CountedRow(9, "w", 0, 0, 0, 0, get_dev_pagemap=5))
    assert by_count.to_json() == by_event.to_json()
    assert set(COUNTERS) <= set(by_count.to_json()["rows"][0])


def test_get_dev_pagemap_without_a_dax_row_is_outside_dax():
    agg = Aggregator()
    agg.add_counts(CountedRow(4, "x", 0, 0, 0, 0, get_dev_pagemap=7))
    assert agg.rows == {} and agg.totals()["outside_dax"] == {"get_dev_pagemap": 7}


class _CountingSource:
    """A backend that counted in the kernel: no records, counts() once."""

    name = "fake"

    def __init__(self, rows, by_name):
        self._counts = [(rows, by_name)]
        self.stopped = False

    def start(self):
        pass

    def drain(self, timeout):
        return []

    def counts(self):
        return self._counts.pop() if self._counts else ([], {})

    def lost(self):
        return 0

    def stop(self):
        self.stopped = True

    def close(self):
        pass


def test_session_folds_counts_at_the_end_and_filters_them():
    vs = 0x7F0000000000
    rows = [
        CountedRow(9, "w", 0, 0, 0, 0, get_dev_pagemap=2),  # listed first: still joins the DAX row
        CountedRow(9, "w", DEV, 5, vs, vs + PMD, pmd=1, insert_pmd=1),
        CountedRow(9, "w", DEV, 6, vs + PMD, vs + 2 * PMD, pte=4),
    ]
    views = Aggregator()
    seen = []
    keep = lambda r: r.fields.get("ino") in (None, 5)  # noqa: E731 - a --path filter
    s = Session(_CountingSource(rows, {"dax_pmd_fault_done": 1}), views, keep=keep, seen_pid=seen.append)
    s.started = True
    s.run(duration=0.01)
    (r,) = views.sorted_rows()
    assert (r.ino, r.pmd, r.insert_pmd, r.get_dev_pagemap, r.pte) == (5, 1, 1, 2, 0)
    assert views.by_name == {"dax_pmd_fault_done": 1} and views.events == 1
    assert seen and set(seen) == {9}


def test_one_feed_path_records_and_prints_file_records(tmp_path):
    """A record tuple source (replay's tokenizer) reaches the recorder and
    --events as Events, as a live backend's records do."""
    rec = Record("dax_pte_fault_done", {"dev": DEV, "ino": 5, "address": 0x1000, "result": 0x100}, 1.5, 3, "w", 0)
    printed = []

    class Rec:
        takes_records = True  # JSON lines: every record

        def __init__(self):
            self.events = []

        def event(self, ev):
            self.events.append(ev)

        def flush(self):
            pass

    views = Aggregator()
    r = Rec()
    Session(None, views, recorder=r, on_event=printed.append).feed([rec])
    assert [e.name for e in r.events] == ["dax_pte_fault_done"] and printed == r.events
    assert printed[0].tid == 3 and views.totals()["pte"] == 1


def test_ring_reader_reads_committed_records_and_advances_the_consumer():
    """The BPF ring buffer layout, faked in a memfd: consumer page, producer
    page, data; a discarded record is skipped, a busy one ends the pass."""
    import mmap

    from pmemtrace.live.ringbuf import BUSY, DISCARD, RingReader

    page, size = mmap.PAGESIZE, 4 * mmap.PAGESIZE
    fd = os.memfd_create("ring")
    try:
        os.ftruncate(fd, 2 * page + 2 * size)
        recs = [(0, b"first..."), (DISCARD, b"dropped!"), (0, b"second record"), (BUSY, b"not yet!")]
        data = b""
        for flag, body in recs:
            data += struct.pack("<II", len(body) | flag, 0) + body
            data += b"\0" * (-len(data) % 8)
        busy_at = len(data) - 16
        os.pwrite(fd, struct.pack("<Q", len(data)), page)  # producer position
        os.pwrite(fd, data, 2 * page)
        r = RingReader(fd, size)
        assert r.read() == [b"first...", b"second record"]
        assert struct.unpack("<Q", os.pread(fd, 8, 0))[0] == busy_at  # consumer stops at the busy record
        assert r.read() == []
        r.close()
    finally:
        os.close(fd)


def test_ring_reader_chunk_takes_committed_records_of_one_size():
    """read_chunk copies the committed records of one size in one slice:
    it stops before a busy record, and before one of another size or a
    discarded one (read() takes those), whatever comes after."""
    import mmap

    from pmemtrace.live.ringbuf import BUSY, DISCARD, RingReader, stride

    page, size = mmap.PAGESIZE, 4 * mmap.PAGESIZE
    step = stride(16)
    for tail in ([(BUSY, 16)], [(0, 8), (0, 16)], [(DISCARD, 16), (0, 16)], []):
        expect = 5
        fd = os.memfd_create("ring")
        try:
            os.ftruncate(fd, 2 * page + 2 * size)
            data = b""
            for i in range(5):
                data += struct.pack("<II", 16, 0) + i.to_bytes(16, "little")
            for flag, n in tail:
                data += struct.pack("<II", n | flag, 0) + bytes(n)
            os.pwrite(fd, struct.pack("<Q", len(data)), page)
            os.pwrite(fd, data, 2 * page)
            r = RingReader(fd, size)
            chunk, n = r.read_chunk(16, 1 << 20)
            assert n == expect and len(chunk) == n * step
            assert [int.from_bytes(chunk[k * step + 8 : (k + 1) * step], "little") for k in range(n)] == list(range(5))
            assert struct.unpack("<Q", os.pread(fd, 8, 0))[0] == n * step
            # a byte budget takes whole records only
            os.pwrite(fd, struct.pack("<Q", 0), 0)
            assert r.read_chunk(16, 2 * step + 5)[1] == 2
            r.close()
        finally:
            os.close(fd)


def test_a_sent_pte_fault_reaches_the_row_of_the_counted_ones():
    """bcc counting in the kernel: the first 4 KiB fault of a block is sent
    (entry state), later ones counted; both carry the VMA bounds (raw
    tracepoint), so a NOHUGEPAGE mapping has one row, not a '?' row too."""
    from pmemtrace.live.decode import decode, encode

    vs = 0x7F0000000000
    f = dict(dev=DEV, ino=5, vm_flags=0xFB, address=vs, pgoff=0, flags=1, result=0x100, vm_start=vs, vm_end=vs + PMD)
    ev = decode(encode(Event("dax_pte_fault_done", f, pid=9, comm="w")))
    assert (ev.fields["vm_start"], ev.fields["vm_end"]) == (vs, vs + PMD)
    no_bounds = dict(f, vm_start=0, vm_end=0)
    assert "vm_start" not in decode(encode(Event("dax_pte_fault_done", no_bounds, pid=9, comm="w"))).fields
    agg = Aggregator()
    agg.add(ev)
    agg.add_counts(CountedRow(9, "w", DEV, 5, vs, vs + PMD, pte=22))
    assert [(r.pte, r.vm_start) for r in agg.sorted_rows()] == [(23, vs)]


def test_bcc_drain_waits_by_how_fast_the_ring_fills(monkeypatch):
    """Records are submitted without a wake-up, so drain() sleeps, then
    reads: as long as a quarter of the ring takes to fill at the rate the
    last read found (pacing.Pacer), the session's timeout at most; reading
    again at once after every read that found records kept the reader busy
    while a workload faulted."""
    from pmemtrace.live import bcc_backend, pacing
    from pmemtrace.live.decode import encode

    clock, slept = [10.0], []
    monkeypatch.setattr(pacing.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(pacing.time, "sleep", lambda s: (slept.append(s), clock.__setitem__(0, clock[0] + s)))
    b = bcc_backend.BccBackend.__new__(bcc_backend.BccBackend)
    b.bpf, b._slow, b._ring_left = object(), DevdaxPairing(), False
    b._pending, b._pending_bytes = collections.deque(), 0
    b.pacer = pacing.Pacer(1 << 20)
    rec = encode(Event("get_dev_pagemap", {"pfn": 1}, pid=3, comm="w", ts=1.0))
    many = 4096  # records of STRIDE bytes each read
    # what each read finds, a drain reading until the ring is empty ([])
    reads = [[rec] * many, [], [], [rec], []]

    class Ring:
        size = 1 << 20

        def read_chunk(self, size, room):
            got = reads.pop(0) if reads else []
            return b"".join(bytes(8) + r for r in got), len(got)

        def read(self, limit):
            return []

    b.ring = Ring()
    assert len(b.drain(0.5)) == many
    assert slept == [0.5]  # nothing known yet: the session's timeout
    # 4,096 records in 0.5 s: a quarter of the 1 MiB ring fills in 0.5 * 256 KiB / (4,096 x STRIDE)
    want = 0.5 * (1 << 18) / (many * bcc_backend.STRIDE)
    assert b.pacer.nap == pytest.approx(want)
    assert len(b.drain(0.5)) == 0 and slept[-1] == pytest.approx(want)
    assert b.pacer.nap == pacing.MAX_NAP  # the ring was empty
    assert len(b.drain(0.5)) == 1 and slept[-1] == 0.5


def test_bcc_drain_empties_the_ring_and_decodes_in_batches(monkeypatch):
    """Behind a burst, each drain takes everything the ring holds (one
    copy) and decodes at most DECODE_BATCH records; what waits counts as
    unread, and a backlog of BACKLOG_RINGS rings leaves the ring alone."""
    from pmemtrace.live import bcc_backend
    from pmemtrace.live.decode import encode

    monkeypatch.setattr(bcc_backend, "DECODE_BATCH", 3)
    b = bcc_backend.BccBackend.__new__(bcc_backend.BccBackend)
    b.bpf, b._slow, b._ring_left = object(), DevdaxPairing(), False
    b._pending, b._pending_bytes = collections.deque(), 0
    b.pacer = bcc_backend.Pacer(1 << 20)
    recs = [encode(Event("get_dev_pagemap", {"pfn": i}, pid=3, comm="w", ts=1.0)) for i in range(7)]
    calls = []

    class Ring:
        size = 2 * bcc_backend.STRIDE  # so the backlog holds 16 records
        left = 7

        def read_chunk(self, size, room):
            calls.append(room)
            n = min(self.left, room // bcc_backend.STRIDE)
            got = recs[7 - self.left : 7 - self.left + n]
            self.left -= n
            return b"".join(bytes(8) + r for r in got), n

        def read(self, limit):
            return []

        def unread(self):
            return self.left

    b.ring = Ring()
    out = b.drain(0)
    assert [r.fields["pfn"] for r in out] == [0, 1, 2] and b.unread() == 4
    assert [r.fields["pfn"] for r in b.drain(0)] == [3, 4, 5]
    assert [r.fields["pfn"] for r in b.drain(0)] == [6] and b.unread() == 0
    # a full backlog: the ring is not read
    b._pending_bytes = bcc_backend.BACKLOG_RINGS * Ring.size
    calls.clear()
    assert b.drain(0) == [] and calls == []


class _EndlessSource(_CountingSource):
    """A backend whose probes keep firing after stop(): every drain has a
    record, and 7 more are always waiting in its buffer."""

    def drain(self, timeout):
        return [Record("dax_pte_fault_done", {"dev": DEV, "ino": 5, "address": 0}, 0.0, 9, "w", 0, 9, "fake")]

    def unread(self):
        return 7


def test_a_final_drain_cut_short_counts_what_is_left_as_lost(monkeypatch):
    from pmemtrace.live import session

    monkeypatch.setattr(session, "FINAL_DRAIN_SECONDS", 0.05)
    views = Aggregator()
    s = Session(_EndlessSource([], {}), views)
    s.started = True
    s.run(duration=0.01)
    assert views.lost == 7 and views.events >= 1


def test_decode_records_gives_what_decode_gives_for_every_kind():
    """The batch decoder (--events/--record's path) builds each kind's
    fields from generated code: the same keys, order and values as the
    one-record decode, the device-dax pairs left to the caller."""
    from pmemtrace.live.decode import KEEP, KIND_OF, SLOW_KINDS, decode, decode_records, encode

    vals = dict(dev=DEV, ino=5, vm_start=0x7F0000000000, vm_end=0x7F0000400000, vm_flags=0xFB, address=0x7F0000001000)
    vals.update(
        pgoff=1, max_pgoff=512, flags=0x55, result=0x100, pfn=77, nr_pages=3, gup_flags=0x1001, order=9, write=1
    )
    vals.update(ret=-14, aux=0xFFFF888000000000, zero_folio=0xFFFF888000000000)
    bufs = []
    for name in KEEP:
        fields = {k: vals[k] for k in (*KEEP[name], "vm_start", "vm_end") if k in vals}
        bufs.append(encode(Event(name, fields, pid=9, tid=10, comm="worker one", cpu=1, ts=12.5)))
    bufs.append(encode(Event("dax_pte_fault_done", dict(vals, vm_start=0, vm_end=0), pid=9, comm="w", ts=1.0)))
    slow = []
    got = decode_records(bufs, 0.25, slow=lambda b, out: slow.append(b))
    want = [decode(b, 0.25) for b in bufs]
    fast = [e for e in want if KIND_OF[e.name] not in SLOW_KINDS]
    assert len(slow) == len(want) - len(fast) == len(SLOW_KINDS)
    assert [(e.name, e.fields, list(e.fields), e.ts, e.pid, e.comm, e.cpu, e.tid, e.source) for e in fast] == [
        (n, f, list(f), ts, pid, comm, cpu, tid, src) for n, f, ts, pid, comm, cpu, tid, src in got
    ]
    assert any("zero_folio" in f for _, f, *_ in got) and any(
        "vm_end" in f for n, f, *_ in got if n == "dax_pte_fault_done"
    )
    # without a callback the slow kinds are decoded in place, in order
    assert [t[0] for t in decode_records(bufs)] == [e.name for e in want]


def test_recorder_record_writes_the_line_event_writes(tmp_path):
    """Recorder.record (the --record hot path, from a session Record) and
    Recorder.event (from an Event) write the same bytes, for the live
    sources' integer fields and for anything else (json fallback)."""
    from pmemtrace.live.record import Recorder

    recs = [
        Record(
            "dax_pte_fault_done", {"dev": DEV, "ino": 5, "address": 1 << 40}, 12.000001, 9, 'w\u00e9 "q"', 1, 10, "bcc"
        ),
        Record("dax_pmd_fault_done", {"dev": DEV, "result": 0x800}, 3.5, 9, "w", 0, None, "tracefs"),
        Record("dax_pmd_fault_done", {"dev": DEV, "note": "x"}, 3.5, 9, "w", 0, 9, "tracefs"),  # not an int
        Record("gup", {"nr_pages": 1}, None, 9, "w", 0, 9, "bcc"),  # no timestamp
        Record("dax_pte_fault", {"flags": True}, 1.0, 9, "w", 0, 9, "replay"),
    ]
    a, b = Recorder(str(tmp_path / "a"), {"h": 1}), Recorder(str(tmp_path / "b"), {"h": 1})
    for r in recs:
        a.record(r)
        b.event(r.event())
    a.flush()
    b.flush()
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert a.events == b.events == len(recs)


def test_btf_fentry_functions_refuse_a_struct_by_value_and_too_many_arguments(tmp_path):
    """fentry only where every kernel with trampolines takes it: a function
    with a struct argument by value (6.12's vmf_insert_pfn_pmd takes pfn_t)
    or more than 6 arguments (5.10's __get_user_pages) stays a kprobe."""
    strings = b"\0long\0pfn_t\0val\0vmf_insert_pfn_pmd\0get_dev_pagemap\0gup7\0"

    def off(s):
        return strings.index(s.encode() + b"\0")

    types = b""
    types += struct.pack("<III", off("long"), 1 << 24, 8) + struct.pack("<I", 64)  # 1 INT
    types += struct.pack("<III", 0, 2 << 24, 1)  # 2 PTR -> INT
    types += struct.pack("<III", 0, (4 << 24) | 1, 8) + struct.pack("<III", off("val"), 1, 0)  # 3 STRUCT
    types += struct.pack("<III", off("pfn_t"), 8 << 24, 3)  # 4 TYPEDEF pfn_t -> struct
    types += struct.pack("<III", 0, (13 << 24) | 2, 1) + struct.pack("<IIII", 0, 2, 0, 4)  # 5 PROTO(ptr, pfn_t)
    types += struct.pack("<III", 0, (13 << 24) | 2, 1) + struct.pack("<IIII", 0, 1, 0, 2)  # 6 PROTO(long, ptr)
    types += struct.pack("<III", 0, (13 << 24) | 7, 1) + struct.pack("<II", 0, 1) * 7  # 7 PROTO(7 x long)
    types += struct.pack("<III", off("vmf_insert_pfn_pmd"), 12 << 24, 5)  # 8 FUNC
    types += struct.pack("<III", off("get_dev_pagemap"), 12 << 24, 6)  # 9 FUNC
    types += struct.pack("<III", off("gup7"), 12 << 24, 7)  # 10 FUNC
    p = _write_btf(tmp_path, types, strings)
    names = {"vmf_insert_pfn_pmd", "get_dev_pagemap", "gup7", "not_in_btf"}
    assert btf.fentry_functions(names, str(p), cache=False) == {"get_dev_pagemap"}


def test_btf_tp_btf_events_are_the_tracepoints_with_a_btf_trace_typedef(tmp_path):
    """A tracepoint takes a tp_btf program where BTF has its
    btf_trace_<event> typedef (what the kernel resolves the attach to); a
    struct or function of that name is not one."""
    strings = b"\0long\0btf_trace_dax_pmd_fault_done\0btf_trace_dax_pte_fault_done\0"

    def off(s):
        return strings.index(s.encode() + b"\0")

    types = b""
    types += struct.pack("<III", off("long"), 1 << 24, 8) + struct.pack("<I", 64)  # 1 INT
    types += struct.pack("<III", off("btf_trace_dax_pmd_fault_done"), 8 << 24, 1)  # 2 TYPEDEF
    types += struct.pack("<III", off("btf_trace_dax_pte_fault_done"), 12 << 24, 1)  # 3 FUNC, not a typedef
    p = _write_btf(tmp_path, types, strings)
    events = {"dax_pmd_fault_done", "dax_pte_fault_done", "dax_pmd_load_hole"}
    assert btf.tp_btf_events(events, str(p), cache=False) == {"dax_pmd_fault_done"}
    assert btf.tp_btf_events(events, str(tmp_path / "absent"), cache=False) == set()


def test_btf_fentry_takes_small_structs_by_value_where_trampolines_do(tmp_path):
    """Where the kernel's BTF has struct btf_func_model's arg_flags (the
    trampolines take struct arguments, 6.1+), a function taking pfn_t by
    value (6.12's vmf_insert_pfn_pmd) gets fentry; a struct over 16 bytes
    or more than 6 argument registers (a 16-byte struct takes two) still
    stays a kprobe."""
    strings = b"\0long\0pfn_t\0val\0big\0btf_func_model\0arg_flags\0ins\0takes_big\0six_regs\0"

    def off(s):
        return strings.index(s.encode() + b"\0")

    types = b""
    types += struct.pack("<III", off("long"), 1 << 24, 8) + struct.pack("<I", 64)  # 1 INT
    types += struct.pack("<III", 0, 2 << 24, 1)  # 2 PTR -> INT
    types += struct.pack("<III", off("pfn_t"), (4 << 24) | 1, 8) + struct.pack("<III", off("val"), 1, 0)  # 3
    types += struct.pack("<III", off("big"), (4 << 24) | 1, 24) + struct.pack("<III", off("val"), 1, 0)  # 4
    types += struct.pack("<III", off("btf_func_model"), (4 << 24) | 1, 12) + struct.pack(
        "<III", off("arg_flags"), 1, 0
    )  # 5 STRUCT btf_func_model { arg_flags }
    types += struct.pack("<III", 0, (13 << 24) | 3, 1) + struct.pack(
        "<IIIIII", 0, 2, 0, 3, 0, 1
    )  # 6 (ptr, pfn_t, long)
    types += struct.pack("<III", 0, (13 << 24) | 2, 1) + struct.pack("<IIII", 0, 2, 0, 4)  # 7 (ptr, big)
    types += struct.pack("<III", 0, (13 << 24) | 6, 1) + struct.pack("<II", 0, 1) * 5 + struct.pack("<II", 0, 3)
    # 8: (5 x long, pfn_t): 6 registers
    types += struct.pack("<III", off("ins"), 12 << 24, 6)  # 9 FUNC
    types += struct.pack("<III", off("takes_big"), 12 << 24, 7)  # 10 FUNC
    types += struct.pack("<III", off("six_regs"), 12 << 24, 8)  # 11 FUNC
    p = _write_btf(tmp_path, types, strings)
    b = btf.BTF(p.read_bytes())
    assert b.trampoline_struct_args()
    assert btf.fentry_functions({"ins", "takes_big", "six_regs"}, str(p), cache=False) == {"ins", "six_regs"}
