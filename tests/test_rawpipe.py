"""watch's tracefs backend reads each CPU's ``trace_pipe_raw`` in binary
(pmemtrace/live/rawpipe.py).  A tracefs tree is laid out from a real lab
recording (fixtures/trace-dat/7.2-fsdax.v6.dat: its header_page,
header_event, fs_dax formats, saved cmdlines, and each CPU's pages as that
CPU's trace_pipe_raw); the records must be those the .dat replay gives,
record for record, which are the text parser's (tests/test_replay_dat.py)."""

import os

import pytest

from pmemtrace.live import tracedat
from pmemtrace.live.ftrace_binary import FormatError
from pmemtrace.live.parse import ParseStats
from pmemtrace.live.rawpipe import RawPipes, saved_cmdlines

FIX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "trace-dat")
DAT = os.path.join(FIX, "7.2-fsdax.v6.dat")


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w" if isinstance(text, str) else "wb") as f:
        f.write(text)


def tracefs_from_dat(tmp_path, monkeypatch, dat_path=DAT):
    """(root, instance, events, dat) of a tracefs tree holding the data of
    the uncompressed .dat *dat_path* (benchmarks/bench_watch_decode.py
    lays out bigger ones)."""
    texts = {}
    real_header, real_check, real_format = (
        tracedat.parse_header_page,
        tracedat.check_header_event,
        tracedat.parse_event_format,
    )

    def header(text):
        texts["header_page"] = text
        return real_header(text)

    def check(text):
        texts["header_event"] = text
        return real_check(text)

    def fmt(text, system=None):
        ev = real_format(text, system)
        if system == "fs_dax":
            texts[ev.name] = text
        return ev

    monkeypatch.setattr(tracedat, "parse_header_page", header)
    monkeypatch.setattr(tracedat, "check_header_event", check)
    monkeypatch.setattr(tracedat, "parse_event_format", fmt)
    dat, mm = tracedat.open_dat(dat_path, want_systems={"fs_dax"})
    assert dat.page_size == 4096 and dat.compression == "none"
    root = str(tmp_path)
    inst = os.path.join(root, "instances", "pmemtrace-1-watch")
    _write(os.path.join(root, "events", "header_page"), texts.pop("header_page"))
    _write(os.path.join(root, "events", "header_event"), texts.pop("header_event"))
    _write(os.path.join(root, "saved_cmdlines"), "".join(f"{p} {c}\n" for p, c in dat.cmdlines.items()))
    for name, text in texts.items():
        _write(os.path.join(inst, "events", "fs_dax", name, "format"), text)
    for c in dat.cpus:
        _write(os.path.join(inst, "per_cpu", f"cpu{c.cpu}", "trace_pipe_raw"), b"".join(tracedat.cpu_pages(dat, mm, c)))
    return root, inst, sorted(texts), dat


def test_records_as_the_dat_replay_gives(tmp_path, monkeypatch):
    root, inst, events, _dat = tracefs_from_dat(tmp_path, monkeypatch)
    want_stats = ParseStats()
    _, recs = tracedat.read_dat_records(DAT, want_stats)
    want = list(recs)
    assert len(want) > 100
    stats = ParseStats()
    rp = RawPipes(root, inst, events, stats)
    try:
        got = rp.read()
        assert rp.read() == []  # every page read once
    finally:
        rp.close()
    assert got == want
    assert stats.events == len(want) and stats.lost == want_stats.lost


def test_unknown_pid_named_from_saved_cmdlines_later(tmp_path, monkeypatch):
    root, inst, events, dat = tracefs_from_dat(tmp_path, monkeypatch)
    pid = next(iter(p for p in dat.cmdlines if p))
    _write(os.path.join(root, "saved_cmdlines"), "")  # not known at start
    rp = RawPipes(root, inst, events, ParseStats())
    _write(os.path.join(root, "saved_cmdlines"), f"{pid} {dat.cmdlines[pid]}\n")
    got = rp.read()
    rp.close()
    mine = [r for r in got if r[3] == pid]
    assert mine and all(r[4] == dat.cmdlines[pid] for r in mine)
    assert saved_cmdlines(root) == {pid: dat.cmdlines[pid]}


def test_refuses_what_it_cannot_decode(tmp_path, monkeypatch):
    root, inst, events, _dat = tracefs_from_dat(tmp_path, monkeypatch)
    _write(os.path.join(root, "events", "header_event"), "# compressed: type_len : 4 bits\n")
    with pytest.raises(FormatError):
        RawPipes(root, inst, events, ParseStats())


def test_pages_are_read_ahead_and_decoded_a_round_at_a_time(tmp_path, monkeypatch):
    """The first read takes every page the CPUs hold into the backlog (one
    page per CPU a round here) and decodes one round; the rest follows,
    one round per read, nothing lost or repeated, and what waits is
    counted (backlog_events) for a final drain cut short."""
    from pmemtrace.live import rawpipe

    root, inst, events, _dat = tracefs_from_dat(tmp_path, monkeypatch)
    _, recs = tracedat.read_dat_records(DAT, ParseStats())
    want = list(recs)
    monkeypatch.setattr(rawpipe, "MAX_PAGES_PER_CPU", 1)
    rp = RawPipes(root, inst, events, ParseStats())
    try:
        first = rp.read()
        assert rp.pending() and first
        waiting = rp.backlog_events()
        assert waiting == len(want) - len(first)
        got = list(first)
        for _ in range(1000):
            more = rp.read()
            if not more and not rp.pending():
                break
            got += more
        assert rp.backlog_events() == 0
    finally:
        rp.close()
    assert sorted(got, key=lambda r: (r[2], r[5])) == sorted(want, key=lambda r: (r[2], r[5]))
    assert len(got) == len(want)


def test_reads_come_out_in_time_order_across_rounds(tmp_path, monkeypatch):
    """A round decodes at most MAX_PAGES_PER_CPU pages of a CPU: with a CPU
    more than a round behind, a round's records newer than that CPU's last
    one are held back for the next read, as its next pages are older.  The
    reads joined end to end are the .dat replay's order (joined rounds
    gave a long fault burst out of order, and check lost its alignment:
    6.12 CI, ndctl-mmap-flags on xfs).  Without the hold-back this
    recording's rounds do come out of order (both CPUs' events
    interleave), checked on the rounds themselves."""
    from pmemtrace.live import rawpipe

    root, inst, events, _dat = tracefs_from_dat(tmp_path, monkeypatch)
    _, recs = tracedat.read_dat_records(DAT, ParseStats())
    want = [(r[2], r[5], r[0], r[1]) for r in sorted(recs, key=lambda r: (r[2], r[5]))]
    monkeypatch.setattr(rawpipe, "MAX_PAGES_PER_CPU", 1)

    def joined(read):
        rp = RawPipes(root, inst, events, ParseStats())
        got = []
        try:
            for _ in range(1000):
                more = read(rp)
                if not more and not rp.pending():
                    break
                got += [(r[2], r[5], r[0], r[1]) for r in more]
        finally:
            rp.close()
        return got

    rounds = joined(lambda rp: rp.records(rp.next_round()))
    assert sorted(rounds) == sorted(want) and rounds != want
    assert joined(lambda rp: rp.read(hold=True)) == want
    assert joined(lambda rp: rp.read()) == rounds  # counting wants no hold-back


def test_watch_waits_by_how_fast_the_buffer_fills(tmp_path, monkeypatch):
    """The tracefs watch reads, then waits until the busiest CPU's buffer
    would be FILL_SHARE full at the rate it filled since the last read
    (capped by the session's timeout), and reads again at once only while
    pages wait (a cut read or rounds read ahead): reading again whenever a
    read found anything kept the reader busy the whole time a workload
    faulted (2.7 s of CPU in a 7.3 lab boot, trace-cmd's 1.2 s)."""
    from pmemtrace.live import pacing, rawpipe, tracefs

    root, inst, events, _dat = tracefs_from_dat(tmp_path, monkeypatch)
    clock, slept = [100.0], []
    monkeypatch.setattr(pacing.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(pacing.time, "sleep", lambda s: (slept.append(s), clock.__setitem__(0, clock[0] + s)))
    monkeypatch.setattr(rawpipe, "MAX_PAGES_PER_CPU", 4)
    for ev in events:
        os.makedirs(os.path.join(root, "events", "fs_dax", ev), exist_ok=True)
    backend = tracefs.TracefsBackend(root=root, buffer_kb=64)  # 64 KiB: 16 pages a CPU
    backend.raw = RawPipes(root, inst, events, backend.stats)
    backend.drain(0.5)  # nothing read yet: the session's timeout
    assert slept == [0.5]
    # CPU 1's nine pages: cut at 4, so the next read comes at once
    assert backend.raw.more_waiting()
    backend.drain(0.5)
    assert slept == [0.5]
    # 4 pages (16 KiB) of one CPU in 0 s since the last read: the shortest wait
    assert backend.pacer.nap == pacing.MIN_NAP
    backend.drain(0.5)  # the last page: no CPU cut, nothing read ahead
    assert not backend.raw.more_waiting() and slept == [0.5]
    pipe = os.path.join(inst, "per_cpu", "cpu1", "trace_pipe_raw")
    with open(pipe, "rb") as f:
        page = f.read(4096)

    def arrive(pages, after):
        with open(pipe, "ab") as f:
            f.write(page * pages)
        clock[0] += after
        backend.drain(0.5)
        return backend.pacer.nap

    # 2 pages (8 KiB) in 0.1 s: a quarter of 64 KiB fills in 0.2 s
    assert arrive(2, 0.1 - pacing.MIN_NAP) == pytest.approx(0.2)
    assert slept[-1] == pacing.MIN_NAP  # the wait the last read set
    # one page in 2 s: a quarter of the buffer in 8 s, capped
    assert arrive(1, 2.0 - 0.2) == pacing.MAX_NAP
    assert slept[-1] == pytest.approx(0.2)
    backend.drain(0.5)
    assert slept[-1] == 0.5  # the session's timeout is the lower cap
