"""The tracefs backend against the guest's real tracefs (the fs_dax
tracepoints exist on any CONFIG_FS_DAX kernel, even without pmem): it must
enable only inside its private instance and leave nothing behind, on a
normal end, on SIGTERM and on Ctrl-C.  Root-only, so in the live tier
(behind the lab gate) rather than the unit tier."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pmemtrace.live.tracefs import fs_dax_tracepoints, tracefs_root

from .labkit import skip_or_fail

ROOT = tracefs_root()


@pytest.fixture(autouse=True)
def _fs_dax_tracefs(lab_gate):
    if ROOT is None:
        skip_or_fail("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)")
    if "dax_pmd_fault_done" not in fs_dax_tracepoints(ROOT):
        skip_or_fail(f"the kernel {os.uname().release} has no fs_dax tracepoints")


def _ours():
    return [d for d in os.listdir(os.path.join(ROOT, "instances")) if d.startswith("pmemtrace-")]


def _global_enabled():
    with open(os.path.join(ROOT, "events", "fs_dax", "enable")) as f:
        return f.read().strip()


def test_backend_enables_in_instance_and_cleans_up():
    from pmemtrace.live.tracefs import TracefsBackend

    before = _global_enabled()
    b = TracefsBackend(pid=os.getpid())
    b.start()
    try:
        inst = b.instance
        assert os.path.isdir(inst)
        with open(os.path.join(inst, "events", "fs_dax", "dax_pmd_fault_done", "enable")) as f:
            assert f.read().strip() == "1"
        with open(os.path.join(inst, "set_event_pid")) as f:
            assert str(os.getpid()) in f.read().split()
        assert _global_enabled() == before  # the global buffer is not touched
        assert b.drain(0.1) == []
    finally:
        b.close()
    assert not os.path.exists(inst)
    b.close()  # idempotent


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_watch_signal_leaves_nothing(sig, tmp_path):
    rec = tmp_path / "r.jsonl"
    p = subprocess.Popen(
        [sys.executable, "-m", "pmemtrace", "watch", "--backend", "tracefs", "-i", "1", "--record", str(rec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # a wait, not a timing check: under TCG on a loaded host, starting Python
    # and importing pmemtrace alone took over 20 s (7.3, 6.12 in the lab)
    deadline = time.time() + 180
    while time.time() < deadline and p.poll() is None and f"pmemtrace-{p.pid}-watch" not in _ours():
        time.sleep(0.1)
    if f"pmemtrace-{p.pid}-watch" not in _ours():
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"watch did not create its instance (exit {p.returncode}): {err[-2000:]}")
    # the recording says it holds pages once the session runs (a signal
    # during the start ends watch before anything is read: JSON lines, empty)
    while time.time() < deadline and p.poll() is None and not _head(rec).startswith(b'{"pmemtrace_record":2'):
        time.sleep(0.1)
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert f"pmemtrace-{p.pid}-watch" not in _ours(), err
    assert "summary:" in out and "Traceback" not in err
    # the recording is the pages read (tracefs reads them in binary), complete
    r = subprocess.run(
        [sys.executable, "-m", "pmemtrace", "replay", str(rec), "--json"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["input"]["format"] == "pmemtrace-pages" and "incomplete" not in d["input"], d["input"]
    assert d["header"]["backend"] == "tracefs" and d["header"]["pmemtrace_record"] == 2


def _head(path):
    try:
        with open(path, "rb") as f:
            return f.read(32)
    except OSError:
        return b""


def test_watch_without_root_one_line():
    if subprocess.run(["id", "-u", "nobody"], capture_output=True).returncode != 0:
        skip_or_fail("no 'nobody' user to drop privileges to")
    code = (
        "import os,sys; os.setgid(65534); os.setuid(65534); "
        "from pmemtrace.cli import main; sys.exit(main(['watch','-d','1']))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert p.returncode != 0
    assert p.stderr.count("\n") == 1 and "root" in p.stderr, p.stderr


def test_run_trace_capture_reads_binary_and_cleans_up():
    """run/check/diagnose --observe capture through watch's backend: its
    private instance follows the pid, every fs_dax event the parsers know is
    enabled (the MAP_SYNC writebacks too), each CPU's trace_pipe_raw is read
    in binary, nothing is lost, and the instance is gone after close().
    (The events themselves: test_scenarios checks run's PMD faults address
    by address, test_diagnose_live the observed chunks.)"""
    from pmemtrace.live.parse import FS_DAX_EVENTS
    from pmemtrace.live.tracefs import TraceCapture

    before = _global_enabled()
    t = TraceCapture("test")
    assert t.reason is None and os.path.isdir(t.dir)
    t.start(os.getpid())
    try:
        assert t.reader == "trace_pipe_raw"
        with open(os.path.join(t.dir, "set_event_pid")) as f:
            assert str(os.getpid()) in f.read().split()
        for ev in set(FS_DAX_EVENTS) & fs_dax_tracepoints(ROOT):
            with open(os.path.join(t.dir, "events", "fs_dax", ev, "enable")) as f:
                assert f.read().strip() == "1", ev
        assert _global_enabled() == before
        time.sleep(0.3)
        events = t.stop()
    finally:
        t.close()
    assert events == []  # this process made no DAX fault
    assert t.lost == 0 and t.reason is None
    assert not [d for d in _ours() if d == f"pmemtrace-{os.getpid()}-test"]


def test_read_available_empties_trace_pipe_past_one_page():
    """trace_pipe returns at most a page per read(); read_available() must
    keep reading (a short read is not the end), or a drain leaves events."""
    from pmemtrace.live.tracefs import read_available

    inst = os.path.join(ROOT, "instances", f"pmemtrace-{os.getpid()}-test")
    os.mkdir(inst)
    fd = None
    try:
        fd = os.open(os.path.join(inst, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        with open(os.path.join(inst, "trace_marker"), "w") as f:
            for i in range(2000):
                f.write(f"pmemtrace-drain-{i}\n")
                f.flush()
        text = b"".join(read_available(fd)).decode()
        assert text.count("pmemtrace-drain-") == 2000
        assert read_available(fd) == []
    finally:
        if fd is not None:
            os.close(fd)
        os.rmdir(inst)
