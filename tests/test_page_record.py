"""``watch --record`` on tracefs writes the ring-buffer pages it reads
(pmemtrace.live.pagerecord, version 2) and counts them in C as the default
watch does; ``replay`` of that file gives what replaying the JSON-lines
recording of the same session gives, on the compiled and the pure path and
with ``--events``; a file cut mid-frame replays up to its last whole frame
and says it is incomplete; a damaged one is a clear error.

The pages are a real lab recording (fixtures/trace-dat/7.2-fsdax.v6.dat)
laid out as a tracefs tree (test_rawpipe.tracefs_from_dat), read a page
per CPU a round where asked, so the file has many frames per CPU."""

import json
import os
import struct
import subprocess
import sys

import pytest
from test_rawpipe import tracefs_from_dat

from pmemtrace.live import fasttext, pagerecord, rawpipe
from pmemtrace.live.attribute import Attributor
from pmemtrace.live.pacing import Pacer
from pmemtrace.live.record import Recorder, make_header
from pmemtrace.live.session import Session, replay
from pmemtrace.live.tracefs import TracefsBackend
from pmemtrace.live.views import Aggregator


def _record(tmp_path, monkeypatch, out, pages=True, per_round=None):
    """Run a watch session with --record *out* over the tree's pages; the
    views it showed (JSON), and the recorder."""
    root, inst, events, _dat = tracefs_from_dat(tmp_path, monkeypatch)
    if per_round is not None:
        monkeypatch.setattr(rawpipe, "MAX_PAGES_PER_CPU", per_round)
    for ev in events:
        os.makedirs(os.path.join(root, "events", "fs_dax", ev), exist_ok=True)
    backend = TracefsBackend(root=root)
    backend.raw = rawpipe.RawPipes(root, inst, events, backend.stats)
    views = Aggregator(Attributor(release="7.2"))
    rec = Recorder(str(out), make_header("tracefs", kernel="7.2.13"), binary=pages)
    s = Session(backend, views, recorder=rec)
    s.started = True
    s._source_counts()
    assert (backend.counting is not None) == pages  # pages: counted in C, as the default watch
    for _ in range(10000):
        s.feed(backend.drain(0))
        if not backend.behind:
            break
    s.finish()
    rec.close(True)
    return views.to_json(), rec


def _replayed(path, monkeypatch, pure=False, events=False):
    with monkeypatch.context() as m:
        if pure:
            m.setenv(fasttext.PURE_ENV, "1")
        else:
            m.delenv(fasttext.PURE_ENV, raising=False)
        seen = []
        views, src = replay(str(path), on_event=seen.append if events else None)
    return views.to_json(), src, seen


def test_replay_of_the_pages_is_replay_of_the_json_lines(tmp_path, monkeypatch):
    live_pages, rec = _record(tmp_path / "a", monkeypatch, tmp_path / "rec.pages")
    live_json, rec_json = _record(tmp_path / "b", monkeypatch, tmp_path / "rec.jsonl", pages=False)
    assert rec.events == rec_json.events == 568 and rec.frames.pages == 10  # every page of the .dat
    head = json.loads(open(tmp_path / "rec.pages", "rb").readline())
    assert head["pmemtrace_record"] == 2 and head["kernel"] == "7.2.13" and "event_record" not in head
    assert live_pages == live_json  # the live views too: counted in C or record by record
    # read a page per CPU a round: many frames per CPU, replayed in time order
    _record(tmp_path / "c", monkeypatch, tmp_path / "rec.pages", per_round=1)
    want, src_json, ev_json = _replayed(tmp_path / "rec.jsonl", monkeypatch, events=True)
    assert want["totals"]["events"] == 568 and src_json.fmt == "jsonl"
    for pure in (False, True):
        got, src, _ = _replayed(tmp_path / "rec.pages", monkeypatch, pure=pure)
        assert got == want
        assert src.fmt == pagerecord.FORMAT and src.incomplete is None and src.header["kernel"] == "7.2.13"
    got, src, ev = _replayed(tmp_path / "rec.pages", monkeypatch, events=True)
    assert got == want
    assert [(e.name, e.fields, e.pid, e.comm, e.cpu) for e in ev] == [
        (e.name, e.fields, e.pid, e.comm, e.cpu) for e in ev_json
    ]
    # the pages are smaller than the lines
    assert os.path.getsize(tmp_path / "rec.pages") < os.path.getsize(tmp_path / "rec.jsonl")


def test_a_recording_cut_mid_frame_replays_to_its_last_whole_frame(tmp_path, monkeypatch):
    _record(tmp_path / "a", monkeypatch, tmp_path / "rec.pages", per_round=1)
    data = open(tmp_path / "rec.pages", "rb").read()
    # the offset of every frame, to cut the file inside the fifth page frame
    nl = data.index(b"\n") + 1
    frames, pos = [], nl
    while pos < len(data):
        magic, kind, _cpu, length = pagerecord.FRAME.unpack_from(data, pos)
        assert magic == pagerecord.MAGIC
        frames.append((pos, kind, length))
        pos += pagerecord.FRAME.size + length
    assert pos == len(data) and frames[-1][1] == pagerecord.END
    page_frames = [f for f in frames if f[1] == pagerecord.PAGES]
    cut_at = page_frames[4][0] + 100
    (tmp_path / "cut.pages").write_bytes(data[:cut_at])
    for pure in (False, True):
        got, src, _ = _replayed(tmp_path / "cut.pages", monkeypatch, pure=pure)
        assert "no end frame" in src.incomplete and "cut mid-write" in src.incomplete
        assert 0 < got["totals"]["events"] < 568
    # whole frames only: nothing cut, still incomplete (no end frame)
    (tmp_path / "whole.pages").write_bytes(data[: page_frames[4][0]])
    got, src, _ = _replayed(tmp_path / "whole.pages", monkeypatch)
    assert src.incomplete.startswith("the recording has no end frame") and "cut" not in src.incomplete


def test_recorded_losses_are_counted_once(tmp_path, monkeypatch):
    """A LOST frame (the per-CPU overruns the session saw) counts what the
    pages' own loss marks count too: replay takes the larger."""
    _record(tmp_path / "a", monkeypatch, tmp_path / "rec.pages")
    data = bytearray(open(tmp_path / "rec.pages", "rb").read())
    end = data.rindex(pagerecord.MAGIC)  # the END frame
    lost = pagerecord.FRAME.pack(pagerecord.MAGIC, pagerecord.LOST, 0, 8) + struct.pack("<Q", 41)
    (tmp_path / "lost.pages").write_bytes(bytes(data[:end]) + lost + lost + bytes(data[end:]))
    for pure in (False, True):
        got, _src, _ = _replayed(tmp_path / "lost.pages", monkeypatch, pure=pure)
        assert got["totals"]["lost"] == 82


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda d: d[:40], "no header line"),
        (lambda d: d.replace(b'"page_size":4096', b'"page_size":4000', 1), "page size 4000"),
        (lambda d: d[: d.index(b"\n") + 1] + b"XXXX" + d[d.index(b"\n") + 5 :], "no frame at byte"),
    ],
)
def test_a_damaged_recording_is_a_clear_error(tmp_path, monkeypatch, damage, says):
    _record(tmp_path / "a", monkeypatch, tmp_path / "rec.pages")
    (tmp_path / "bad.pages").write_bytes(damage(open(tmp_path / "rec.pages", "rb").read()))
    r = subprocess.run(
        [sys.executable, "-m", "pmemtrace", "replay", str(tmp_path / "bad.pages")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and r.returncode != 1
    assert says in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 3


# ---------------------------------------------------------------------------
# bcc: the ring's records as read


def _bcc_events():
    """A little of everything bcc's every-event session sends: PMD faults
    (one a fallback), PTE faults, an insert, GUP, a device-dax fault and
    its return (paired by thread), a loss record."""
    from pmemtrace.events import Event

    vma = {"dev": 0x10300001, "ino": 12, "vm_start": 0x7F0000000000, "vm_end": 0x7F0000800000, "vm_flags": 0xFB}
    out = []
    ts = 100.0
    for i in range(40):
        ts += 0.001
        addr = vma["vm_start"] + (i % 4) * (2 << 20)
        pmd = dict(vma, address=addr, pgoff=(addr - vma["vm_start"]) >> 12, max_pgoff=2047, flags=0x1)
        out.append(Event("dax_pmd_fault", dict(pmd, result=0), ts=ts, pid=7, tid=7, comm="touch", cpu=i % 2))
        out.append(
            Event(
                "dax_pmd_fault_done",
                dict(pmd, result=0x800 if i == 9 else 0x100),
                ts=ts,
                pid=7,
                tid=7,
                comm="touch",
                cpu=i % 2,
            )
        )
        if i == 9:
            pte = {k: pmd[k] for k in ("dev", "ino", "vm_flags", "address", "pgoff", "flags")}
            out.append(Event("dax_pte_fault_done", dict(pte, result=0x100), ts=ts, pid=7, tid=7, comm="touch", cpu=1))
    out.append(Event("gup", {"address": vma["vm_start"], "nr_pages": 1, "gup_flags": 1}, ts=ts, pid=7, tid=7, comm="t"))
    dd = {"address": 0x7E0000000000, "vm_start": 0x7E0000000000, "vm_end": 0x7E0040000000, "vm_flags": 0xFB}
    out.append(
        Event("devdax_fault", dict(dd, pgoff=0, flags=1, order=1), ts=ts, pid=8, tid=9, comm="dd", cpu=0, source="bcc")
    )
    out.append(Event("devdax_fault_ret", {"ret": 0x100, "order": 1}, ts=ts, pid=8, tid=9, comm="dd", cpu=0))
    out.append(Event("lost", {"count": 3}, ts=ts, pid=0, tid=0, comm="", cpu=0))
    return out


def _fake_bcc(events, aggregate=False, lost=0):
    """A BccBackend whose ring holds *events* (read 7 records at a time)."""
    import collections

    from pmemtrace.live import bcc_backend
    from pmemtrace.live.decode import DevdaxPairing, encode

    data = [encode(e) for e in events]

    class Ring:
        size = 1 << 20

        def read_chunk(self, size, room):
            got = data[:7]
            del data[:7]
            return b"".join(bytes(8) + r for r in got), len(got)

        def read(self, limit):
            return []

        def unread(self):
            return 0

        def close(self):
            pass

    b = bcc_backend.BccBackend.__new__(bcc_backend.BccBackend)
    b.bpf, b.loaded, b._slow, b.aggregate, b.maps = None, None, DevdaxPairing(), aggregate, {}
    b._pending, b._pending_bytes, b._ring_left, b.pacer = collections.deque(), 0, False, Pacer(1 << 20)
    b.ring = Ring()
    b.lost = lambda: lost
    return b


def _bcc_record(out, binary, source=None):
    """A bcc every-event session over :func:`_bcc_events` with --record
    *out* (or *source*'s session): its views and recorder."""
    b = source if source is not None else _fake_bcc(_bcc_events())
    views = Aggregator(Attributor(release="6.12"))
    rec = Recorder(str(out), make_header("bcc", kernel="6.12.95"), binary=binary)
    s = Session(b, views, recorder=rec)
    s.started = True
    s._source_counts()
    for _ in range(100):
        s.feed(b.drain(0))
        if not b.behind:
            break
    s.finish()
    rec.close(True)
    return views.to_json(), rec


def test_bcc_records_replay_as_their_json_lines(tmp_path, monkeypatch):
    live_bin, rec = _bcc_record(tmp_path / "rec.bin", binary=True)
    live_json, rec_json = _bcc_record(tmp_path / "rec.jsonl", binary=False)
    n = len(_bcc_events())
    assert rec.events == n and rec_json.events == n - 1  # the device-dax fault and its return: one event
    head = json.loads(open(tmp_path / "rec.bin", "rb").readline())
    assert head["pmemtrace_record"] == 2 and head["records"]["size"] == 160 and "pages" not in head
    assert live_bin == live_json
    want, _src, ev_json = _replayed(tmp_path / "rec.jsonl", monkeypatch, events=True)
    assert want["totals"]["fallback"] == 1 and want["totals"]["devdax"] == 1 and want["totals"]["lost"] == 3
    got, src, ev = _replayed(tmp_path / "rec.bin", monkeypatch, events=True)
    assert got == want and src.fmt == pagerecord.RECORDS_FORMAT and src.incomplete is None
    assert [(e.name, e.fields, e.ts, e.pid, e.comm) for e in ev] == [
        (e.name, e.fields, e.ts, e.pid, e.comm) for e in ev_json
    ]
    got, src, _ = _replayed(tmp_path / "rec.bin", monkeypatch)
    assert got == want
    # killed before its end: replays what it holds, says it is incomplete
    data = open(tmp_path / "rec.bin", "rb").read()
    (tmp_path / "cut.bin").write_bytes(data[: data.rindex(pagerecord.MAGIC) - 50])
    got, src, _ = _replayed(tmp_path / "cut.bin", monkeypatch)
    assert "no end frame" in src.incomplete and "cut mid-write" in src.incomplete
    assert 0 < got["totals"]["events"] < want["totals"]["events"]


def test_bcc_record_only_counts_for_the_views_and_writes_every_record(tmp_path, monkeypatch):
    """--record without --events (RecordingBcc): the views come from the
    counting program's ring (here only the fallback and the device-dax
    fault, as counting sends them), the file gets the every-event ring's
    records undecoded, and replays to the whole views; each ring's losses
    count where they belong."""
    from pmemtrace.live.bcc_backend import RecordingBcc

    every_events = [e for e in _bcc_events() if e.name != "lost"]
    sent = [e for e in every_events if e.name.startswith("devdax") or e.fields.get("result") == 0x800]
    counting, every = _fake_bcc(sent, aggregate=True, lost=2), _fake_bcc(every_events, lost=5)
    src = RecordingBcc(counting, every)
    live, rec = _bcc_record(tmp_path / "rec.bin", binary=True, source=src)
    # (the device-dax fault is the one PMD the counting ring's records give)
    assert every.tap_only and live["totals"]["fallback"] == 1 and live["totals"]["pmd"] == 1
    assert live["totals"]["lost"] == 7  # both rings'
    assert rec.events == len(every_events) and rec.lost == 5  # the recording's own
    got, src_file, _ = _replayed(tmp_path / "rec.bin", monkeypatch)
    assert src_file.incomplete is None and got["totals"]["lost"] == 5
    assert got["totals"]["pmd"] == 40 and got["totals"]["fallback"] == 1 and got["totals"]["devdax"] == 1


def test_a_binary_recording_on_stdin_says_to_give_its_path(tmp_path, monkeypatch):
    _record(tmp_path / "a", monkeypatch, tmp_path / "rec.pages")
    with open(tmp_path / "rec.pages", "rb") as f:
        r = subprocess.run(
            [sys.executable, "-m", "pmemtrace", "replay", "-"], stdin=f, capture_output=True, text=True, timeout=120
        )
    assert r.returncode == 2 and "give replay its path" in r.stderr and "Traceback" not in r.stderr
