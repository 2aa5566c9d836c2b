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
    rec = Recorder(str(out), make_header("tracefs", kernel="7.2.13"), pages=pages)
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
    assert rec.events == rec_json.events == 568 and rec.pages.pages == 10  # every page of the .dat
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
