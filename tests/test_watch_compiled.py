"""watch's tracefs backend on the compiled path (pmemtrace.live.fasttext
RawCounting: each round of trace_pipe_raw pages decoded, merged and counted
in C) against the pure-Python reader it stands in for (rawpipe.RawPipes.read
and Session.feed): the same views after every round (JSON, table, reasons),
the same counts of lines, events and lost events.  The pages are a real lab
recording laid out as a tracefs tree (test_rawpipe.tracefs_from_dat:
fixtures/trace-dat/7.2-fsdax.v6.dat, 5 PMD fallbacks among 568 events),
read whole, a page per CPU a round, with losses marked in the pages, with a
CPU's pages out of time order (the C side refuses the round and Python
reads it), with --pid, --no-reasons and --max-rows."""

import json
import os
import struct

import pytest
from test_rawpipe import tracefs_from_dat

from pmemtrace.live import fasttext, rawpipe
from pmemtrace.live.attrcache import CachedAttributor
from pmemtrace.live.attribute import Attributor
from pmemtrace.live.session import TRACEFS_COUNTING_SKIPS, Session
from pmemtrace.live.tracefs import TracefsBackend
from pmemtrace.live.views import Aggregator

PAGE = 4096
MISSED_EVENTS, MISSED_STORED = 1 << 31, 1 << 30


@pytest.fixture(autouse=True)
def _compiled_path_built():
    # the unit tier runs where scripts/install-deps.sh built the module
    # (PMEMTRACE_REQUIRE_ENGINE=1): its absence is a failure, not a skip
    assert fasttext._replayfast is not None, "pmemtrace._replayfast is not built: pip install -e . with a C compiler"


def _pipe(inst, cpu):
    return os.path.join(inst, "per_cpu", f"cpu{cpu}", "trace_pipe_raw")


def _mark_lost(inst, cpu, page, count):
    """Set the page's missed-events bit, with *count* stored after its
    data (None: a loss of unknown size), as ring_buffer_read_page() does."""
    path = _pipe(inst, cpu)
    data = bytearray(open(path, "rb").read())
    off = page * PAGE
    (commit,) = struct.unpack_from("<Q", data, off + 8)
    size = commit & ((1 << 27) - 1)
    if count is None:
        commit |= MISSED_EVENTS
    else:
        commit |= MISSED_EVENTS | MISSED_STORED
        struct.pack_into("<Q", data, off + 16 + size, count)
    struct.pack_into("<Q", data, off + 8, commit)
    open(path, "wb").write(bytes(data))


def _swap_pages(inst, cpu, a, b):
    path = _pipe(inst, cpu)
    data = bytearray(open(path, "rb").read())
    pa, pb = bytes(data[a * PAGE : (a + 1) * PAGE]), bytes(data[b * PAGE : (b + 1) * PAGE])
    data[a * PAGE : (a + 1) * PAGE], data[b * PAGE : (b + 1) * PAGE] = pb, pa
    open(path, "wb").write(bytes(data))


def _watch(root, inst, events, monkeypatch, pure, attributor="plain", pid=None, max_rows=None, starts=False):
    """The views after every drain, and at the end, of a watch session
    over the tree's pages (the tracefs backend's binary reader, not started:
    its pages are there already).  Without *starts*, dax_pte_fault is not
    read, nor dax_pmd_fault, as watch does not enable them
    (session.TRACEFS_COUNTING_SKIPS)."""
    if not starts:
        events = [e for e in events if e not in TRACEFS_COUNTING_SKIPS]
    if pure:
        monkeypatch.setenv(fasttext.PURE_ENV, "1")
    else:
        monkeypatch.delenv(fasttext.PURE_ENV, raising=False)
    for ev in events:
        os.makedirs(os.path.join(root, "events", "fs_dax", ev), exist_ok=True)
    backend = TracefsBackend(root=root, pid=pid)
    backend.raw = rawpipe.RawPipes(root, inst, events, backend.stats)
    att = {
        None: None,
        "plain": Attributor(release="7.2"),
        "cached": CachedAttributor(Attributor(release="7.2")),
    }[attributor]
    views = Aggregator(att, max_rows=max_rows)
    keep = None if pid is None else (lambda r: r.pid == pid)
    seen = []
    s = Session(backend, views, keep=keep, seen_pid=seen.append)
    s.started = True
    fed = []
    real_feed = s.feed
    s.feed = lambda records: (fed.extend(records), real_feed(records))  # type: ignore[method-assign]
    s._source_counts()
    assert (backend.counting is None) == pure  # the path asked for runs
    snaps = []
    for _ in range(10000):
        s.feed(backend.drain(0))
        snaps.append(json.dumps(views.to_json()))
        if not backend.behind:
            break
    s.finish()
    st = backend.stats
    return {
        "snapshots": snaps,
        "json_text": json.dumps(views.to_json()),
        "table": views.render(),
        "wide": views.render(wide=True),
        "reasons": {k: dict(r.reasons) for k, r in views.rows.items()},  # the order of keys too
        "rows": list(views.rows),  # the order they were made in
        "lost": views.lost,
        "events": views.events,
        "by_name": dict(sorted(views.by_name.items())),
        "folded": views.folded_events,
        "stats": (st.lines, st.events, st.lost, st.lost_unknown),
        "seen": sorted(set(seen)),
        "fed": len(fed),  # records Python saw (not compared)
    }


def _both(tmp_path, monkeypatch, setup=None, **kw):
    root, inst, events, dat = tracefs_from_dat(tmp_path, monkeypatch)
    if setup is not None:
        setup(inst)
    got = {}
    for pure in (True, False):
        with monkeypatch.context() as m:
            got[pure] = _watch(root, inst, events, m, pure, **kw)  # (reading the tree consumes nothing)
    fed = {pure: got[pure].pop("fed") for pure in got}
    assert got[False] == got[True]
    assert fed[True] == got[True]["stats"][1]  # the Python reader feeds every record it reads
    return dict(got[False], fed=fed[False]), dat


@pytest.mark.parametrize("attributor", ["plain", "cached", None])
def test_the_same_views_as_the_python_reader(tmp_path, monkeypatch, attributor):
    out, _dat = _both(tmp_path, monkeypatch, attributor=attributor)
    assert out["events"] == 286 and out["stats"][:2] == (286, 286) and out["lost"] == 0
    totals = json.loads(out["json_text"])["totals"]
    assert totals["fallback"] == 5 and totals["pmd"] == 16 and totals["pte"] == 261
    if attributor is None:
        assert {c for r in out["reasons"].values() for c in r} == {"unattributed"}
    else:
        assert out["fed"] < 40  # new rows, fallbacks and the events not counted in C (286 in Python)


def test_the_same_views_with_every_event_read(tmp_path, monkeypatch):
    """dax_pte_fault read too (a backend made with skip=(), as --record
    does): it has no row to count it in, so the C side counts it only where
    its process and file have a row (the session's filter let them in) and
    hands the rest back; the views are alike, and the 261 starts are not
    all handed to Python."""
    out, _dat = _both(tmp_path, monkeypatch, starts=True)
    assert out["events"] == 568 and out["stats"][:2] == (568, 568)
    assert out["fed"] < 60, out["fed"]


def test_the_same_views_after_every_round(tmp_path, monkeypatch):
    monkeypatch.setattr(rawpipe, "MAX_PAGES_PER_CPU", 1)
    out, _dat = _both(tmp_path, monkeypatch)
    assert len(out["snapshots"]) >= 9  # CPU 1's nine pages: a round each
    assert len(set(out["snapshots"])) > 5  # the views grew round by round, alike


@pytest.mark.parametrize("count", [1234, None], ids=["stored", "unknown"])
def test_losses_in_the_pages_are_counted_alike(tmp_path, monkeypatch, count):
    def setup(inst):
        _mark_lost(inst, 1, 0, count)
        _mark_lost(inst, 1, 8, count)
        _mark_lost(inst, 0, 0, count)

    out, _dat = _both(tmp_path, monkeypatch, setup=setup)
    lines, events, lost, lost_unknown = out["stats"]
    assert (lines, events) == (286, 286)
    if count is None:
        assert lost == 0 and lost_unknown == 3
    else:
        assert lost == out["lost"] == 3 * count and lost_unknown == 0


def test_a_round_the_c_side_refuses_is_read_by_python(tmp_path, monkeypatch):
    """CPU 1's pages out of time order: the C merge refuses the round
    before counting any of it, and the Python reader sorts it, as the pure
    path does; the losses marked in it are counted once."""

    def setup(inst):
        _swap_pages(inst, 1, 2, 5)
        _mark_lost(inst, 1, 8, 77)

    refused = []
    real = fasttext.RawCounting._c_round

    def spy(self, rnd):
        ok = real(self, rnd)
        refused.append(not ok)
        return ok

    monkeypatch.setattr(fasttext.RawCounting, "_c_round", spy)
    out, _dat = _both(tmp_path, monkeypatch, setup=setup)
    assert any(refused)
    assert out["stats"] == (286, 286, 77, 0) and out["lost"] == 77


def test_pid_filter_and_max_rows(tmp_path, monkeypatch):
    root, inst, events, _dat = tracefs_from_dat(tmp_path, monkeypatch)
    with monkeypatch.context() as m:
        every = _watch(root, inst, events, m, True)
    rows = json.loads(every["json_text"])["rows"]
    pid = max(rows, key=lambda r: r["pmd"] + r["pte"] + r["fallback"])["pid"]  # the busiest process
    assert len({r["pid"] for r in rows}) > 1
    out, _dat = _both(tmp_path / "p", monkeypatch, pid=pid)
    assert out["seen"] == [pid] and all(row[0] == pid for row in out["rows"])
    # with every event read: the other processes' dax_pte_fault starts are
    # handed to the filter, not counted in C (the views stay alike)
    out_starts, _dat = _both(tmp_path / "ps", monkeypatch, pid=pid, starts=True)
    assert out_starts["seen"] == [pid] and out_starts["rows"] == out["rows"]
    out, _dat = _both(tmp_path / "m", monkeypatch, max_rows=1)
    assert len(out["rows"]) == 1 and out["folded"] > 0


def test_without_the_compiled_module_watch_reads_in_python(tmp_path, monkeypatch):
    root, inst, events, _dat = tracefs_from_dat(tmp_path, monkeypatch)
    monkeypatch.setattr(fasttext, "_replayfast", None)
    for ev in events:
        os.makedirs(os.path.join(root, "events", "fs_dax", ev), exist_ok=True)
    backend = TracefsBackend(root=root)
    backend.raw = rawpipe.RawPipes(root, inst, events, backend.stats)
    assert backend.count_into(Aggregator(), lambda records: None) is False
    assert backend.counting is None and len(backend.drain(0)) == 568
    backend.close()


def test_every_event_wanted_keeps_the_records():
    """A recorder or --events: the session does not let the source count."""

    class Src:
        name = "fake"
        asked = False

        def count_into(self, views, feed):
            self.asked = True
            return True

    for kw in ({"on_event": print}, {}):
        src = Src()
        Session(src, Aggregator(), **kw)._source_counts()
        assert src.asked == (not kw)
