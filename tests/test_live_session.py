"""The live session's seams without a kernel: orphan removal on a tracefs
tree, the file source (replay) including cut-short recordings, the row
bound of the views, and the one fs_dax result classifier."""

import json
import os
import subprocess
import sys

import pytest

from pmemtrace.cli import main
from pmemtrace.events import VM_FAULT, Event
from pmemtrace.live import tracefs
from pmemtrace.live.parse import ParseStats
from pmemtrace.live.record import Recorder, make_header
from pmemtrace.live.session import FileSource, Session, replay
from pmemtrace.live.views import Aggregator


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _tree(tmp_path, kprobes=""):
    root = tmp_path / "tracing"
    (root / "events" / "fs_dax").mkdir(parents=True)
    (root / "instances").mkdir()
    (root / "kprobe_events").write_text(kprobes)
    return root


def test_orphans_of_dead_pids_are_removed_live_ones_kept(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    root = _tree(
        tmp_path,
        kprobes=(
            f"p:kprobes/p_vmf_insert_pfn_pmd_bcc_{dead} vmf_insert_pfn_pmd\n"
            f"p:kprobes/p_vfs_read_bcc_{dead} vfs_read\n"  # not ours
            f"p:kprobes/p_vmf_insert_pfn_pmd_bcc_{alive} vmf_insert_pfn_pmd\n"
            f"p:pmt/pmemtrace_{dead}_gup __get_user_pages\n"
        ),
    )
    for name in (
        f"pmemtrace-{dead}-watch",
        f"pmemtrace-{dead}",
        f"pmemtrace-{alive}-run",
        "other-tool",
        f"pmemtrace-{dead}-x-y-z/",
    ):
        (root / "instances" / name).mkdir()
    from pmemtrace.live.probes import probe_functions

    found = tracefs.remove_orphans(str(root), probe_functions())
    got = sorted((o.kind, o.name, o.removed) for o in found)
    assert got == sorted(
        [
            ("instance", f"pmemtrace-{dead}-watch", True),
            ("instance", f"pmemtrace-{dead}", True),
            ("instance", f"pmemtrace-{dead}-x-y-z", True),
            ("kprobe", f"kprobes/p_vmf_insert_pfn_pmd_bcc_{dead}", True),
            ("kprobe", f"pmt/pmemtrace_{dead}_gup", True),
        ]
    )
    assert sorted(os.listdir(root / "instances")) == sorted([f"pmemtrace-{alive}-run", "other-tool"])
    # kprobe events are removed by writing "-:group/name" (a real kprobe_events drops the line)
    assert (
        (root / "kprobe_events")
        .read_text()
        .endswith(f"-:kprobes/p_vmf_insert_pfn_pmd_bcc_{dead}\n-:pmt/pmemtrace_{dead}_gup\n")
    )
    assert tracefs.find_orphans(str(root / "nonexistent")) == []


def test_instance_names_carry_the_pid():
    name = tracefs.instance_name("watch")
    assert name == f"pmemtrace-{os.getpid()}-watch"
    assert tracefs.INSTANCE_RE.match(name).group("pid") == str(os.getpid())
    assert tracefs.pid_alive(os.getpid()) and not tracefs.pid_alive(_dead_pid())


def test_cleanup_command_without_tracefs_exits_0(capsys, monkeypatch):
    monkeypatch.setattr(tracefs, "tracefs_root", lambda sys_root="/sys": None)
    assert main(["cleanup", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["leftovers"] == []


@pytest.mark.parametrize(
    "name,result,outcome,klass",
    [
        ("dax_pmd_fault_done", VM_FAULT["NOPAGE"], "pmd", "ok"),
        ("dax_pmd_fault_done", VM_FAULT["FALLBACK"], "fallback", "fallback"),
        ("dax_pmd_fault_done", VM_FAULT["SIGBUS"], "sigbus", "sigbus"),
        ("dax_pmd_fault_done", VM_FAULT["RETRY"], "pmd", "retry"),
        ("dax_pte_fault_done", VM_FAULT["NOPAGE"], "pte", "ok"),
        ("dax_pte_fault_done", VM_FAULT["SIGBUS"], "sigbus", "sigbus"),
        ("dax_pmd_load_hole", 0, "huge-zero", "ok"),
        ("dax_load_hole", 0, "pte", "ok"),
        ("dax_pmd_fault", 0, None, "ok"),
    ],
)
def test_one_classifier(name, result, outcome, klass):
    assert tracefs.fault_outcome(name, result) == outcome
    assert tracefs.result_class(name, result) == klass


def test_chunk_outcome():
    ev = lambda n, r=0: Event(n, {"result": r})  # noqa: E731
    assert tracefs.chunk_outcome([]) == "none"
    assert (
        tracefs.chunk_outcome(
            [ev("dax_pmd_fault_done", VM_FAULT["FALLBACK"]), ev("dax_pte_fault_done", VM_FAULT["NOPAGE"])]
        )
        == "pte"
    )
    assert tracefs.chunk_outcome([ev("dax_pmd_load_hole"), ev("dax_pmd_fault_done", VM_FAULT["NOPAGE"])]) == "huge-zero"
    assert tracefs.chunk_outcome([ev("dax_pte_fault_done"), ev("dax_pmd_fault_done", VM_FAULT["NOPAGE"])]) == "pmd"


def _events(n, mappings=1):
    out = []
    for i in range(n):
        m = i % mappings
        base = 0x7F0000000000 + m * (1 << 30)
        out.append(
            Event(
                "dax_pmd_fault_done",
                dict(
                    dev=259 << 20,
                    ino=12,
                    vm_start=base,
                    vm_end=base + (4 << 20),
                    vm_flags=0xFB,
                    address=base,
                    pgoff=0,
                    max_pgoff=1024,
                    flags=0x255,
                    result=VM_FAULT["NOPAGE"],
                ),
                pid=100 + m,
                comm="w",
                ts=1.0 + i,
            )
        )
    return out


def _record(path, events, close=True):
    rec = Recorder(str(path), make_header("tracefs", kernel="6.12.0"))
    for e in events:
        rec.event(e)
    rec.flush()
    if close:
        rec.close()
    return rec


def test_killed_recording_replays_and_is_incomplete(tmp_path, capsys):
    p = tmp_path / "r.jsonl"
    rec = _record(p, _events(10), close=False)
    os.close(rec.fd)  # as SIGKILL leaves it: whole lines, no end line
    agg, src = replay(str(p), reasons=False)
    assert agg.totals()["pmd"] == 10 and not src.complete and "no end line" in src.incomplete
    # a last line cut mid-write is skipped, not an error
    with open(p, "ab") as f:
        f.write(b'{"name":"dax_pmd_fa')
    agg, src = replay(str(p), reasons=False)
    assert agg.totals()["pmd"] == 10 and "cut mid-write" in src.incomplete
    assert main(["replay", str(p)]) == 0
    err = capsys.readouterr().err
    assert "incomplete" in err and "Traceback" not in err
    # the same garbage in the middle of a file is corruption, not a cut
    q = tmp_path / "bad.jsonl"
    q.write_text(p.read_text() + "\n" + json.dumps({"type": "end"}) + "\n")
    assert main(["replay", str(q)]) == 3


def test_complete_recording(tmp_path):
    p = tmp_path / "r.jsonl"
    _record(p, _events(4))
    agg, src = replay(str(p))
    assert src.complete and src.incomplete is None and agg.totals()["pmd"] == 4
    assert src.header["kernel"] == "6.12.0"


def test_record_in_missing_directory_is_a_usage_error(tmp_path):
    from pmemtrace.errors import UsageError

    with pytest.raises(UsageError, match="directory does not exist"):
        Recorder(str(tmp_path / "nope" / "r.jsonl"), make_header("tracefs"))


def test_max_rows_folds_into_other(tmp_path):
    p = tmp_path / "r.jsonl"
    _record(p, _events(100, mappings=20))
    full, _ = replay(str(p), reasons=False)
    bounded, _ = replay(str(p), reasons=False, max_rows=5)
    assert len(full.rows) == 20 and len(bounded.rows) == 5
    assert bounded.other is not None and bounded.folded_events == 75
    assert bounded.totals()["pmd"] == full.totals()["pmd"] == 100  # nothing is dropped
    assert bounded.to_json()["totals"]["other_row"] == {"max_rows": 5, "folded_events": 75}
    assert "(other)" in bounded.render()
    assert "other_row" not in full.to_json()["totals"]


def test_session_filters_and_records(tmp_path):
    src_path = tmp_path / "in.jsonl"
    _record(src_path, _events(30, mappings=3))
    out = tmp_path / "out.jsonl"
    rec = Recorder(str(out), make_header("file"))
    seen = []
    views = Aggregator()
    s = Session(FileSource(str(src_path)), views, keep=lambda e: e.pid == 101, recorder=rec, on_event=seen.append)
    assert s.run() is True
    rec.close(s.complete)
    assert len(seen) == 10 and views.totals()["pmd"] == 10
    again, src = replay(str(out), reasons=False)
    assert src.complete and again.totals()["pmd"] == 10


class _Counting:
    """A source that can count into the views itself (as tracefs in C) and
    keep its records in time order across drains when asked."""

    name = "fake"

    def __init__(self):
        self.in_time_order = False
        self.counted_by_source = False

    def count_into(self, views, feed):
        self.counted_by_source = True
        return True


class _CountingPages(_Counting):
    """A source that reads ring-buffer pages: a recorder writes those."""

    def __init__(self):
        super().__init__()
        self.stats = ParseStats()
        self.raw = type("Raw", (), {"comms": {}})()
        self.page_tap = None

    def page_info(self):
        return {"page_size": 4096, "header_page": "", "header_event": "", "formats": {}}


@pytest.mark.parametrize("wants", [None, "recorder", "events", "page-recorder", "jsonl-recorder"])
def test_a_session_that_keeps_every_event_asks_for_time_order(wants, tmp_path):
    """Counting needs no order (the source counts a round as it comes);
    --record (JSON lines) and --events write the events out one by one, so
    the source must hold back what a CPU's later pages may precede
    (RawPipes.read(hold=True)).  A recorder of the source's pages takes no
    event: the source counts."""
    src = _CountingPages() if wants in ("page-recorder", "jsonl-recorder") else _Counting()
    rec = None
    if wants and wants.endswith("recorder"):
        rec = Recorder(str(tmp_path / "r"), make_header("tracefs"), binary=wants != "jsonl-recorder")
    Session(src, Aggregator(), recorder=rec, on_event=print if wants == "events" else None)._source_counts()
    assert src.counted_by_source == (wants in (None, "page-recorder"))
    assert src.in_time_order == (wants in ("recorder", "events", "jsonl-recorder"))
    if rec is not None:
        assert (getattr(src, "page_tap", None) is not None) == (wants == "page-recorder")
        head = json.loads((tmp_path / "r").read_text().splitlines()[0])
        assert head["pmemtrace_record"] == (2 if wants == "page-recorder" else 1)


@pytest.mark.parametrize("all_events", [False, True])
def test_tracefs_counting_session_enables_no_fault_start(tmp_path, monkeypatch, all_events):
    """The counting session counts a fault from its done event: neither
    start is enabled (one event a PMD fault, not two); --events and
    --record enable both."""
    from pmemtrace.live import bcc_backend, session

    root = _tree(tmp_path)
    for ev in tracefs.FS_DAX_TRACEPOINTS:
        (root / "events" / "fs_dax" / ev).mkdir()
    monkeypatch.setattr(tracefs, "require_root", lambda sys_root="/sys": str(root))
    monkeypatch.setattr(bcc_backend, "why_not_bcc", lambda: "bcc (test)")
    backend, why = session.choose_backend("auto", None, all_events=all_events)
    assert backend.name == "tracefs" and why == "bcc (test)"
    assert backend.skip == (set() if all_events else {"dax_pmd_fault", "dax_pte_fault"})
    backend, why = session.choose_backend("tracefs", None, all_events=all_events)
    assert why is None


def test_a_signal_between_start_and_run_stops_the_session_cleanly(monkeypatch):
    """Once attached, SIGTERM and SIGINT only ask the session to stop, also
    before run() (watch prints its banner in between): the source is then
    drained and closed, and the handlers before start() are back after."""
    import signal as sig

    from pmemtrace.live import tracefs as tf

    monkeypatch.setattr(tf, "remove_orphans_and_report", lambda root=None: [])

    class Live:
        name = "live"
        closed = False

        def start(self):
            pass

        def drain(self, timeout):
            return []

        def lost(self):
            return 0

        def stop(self):
            pass

        def close(self):
            self.closed = True

    before = {s: sig.getsignal(s) for s in (sig.SIGINT, sig.SIGTERM)}
    src = Live()
    s = Session(src, Aggregator())
    s.start()
    os.kill(os.getpid(), sig.SIGTERM)  # the default handler would end pytest here
    assert s._stopping == [sig.SIGTERM]
    assert s.run(duration=30) is True and src.closed
    assert {k: sig.getsignal(k) for k in before} == before
