"""Crash recovery: ``pmemtrace watch`` killed with SIGKILL (no handler
runs) on each backend, then the next start -- and ``pmemtrace cleanup`` --
remove everything it left, and its ``--record`` file replays, marked
incomplete.

Oracle: the tracing state read from tracefs before the kill, right after
it, and after the next start (instances, kprobe_events, the global fs_dax
enable); the workload's own arithmetic (23 PMD faults) for the recording.
"""

import json
import os
import signal
import subprocess
import sys
import time

from .labkit import skip_or_fail
from .test_watch_bcc import N, Watch, _fresh, attached_state, run_workload


def _start_and_kill(backend, dax, record):
    """A watch that recorded one workload, then SIGKILL; returns its pid."""
    w = Watch(backend, dax, extra=("--record", record))
    path = _fresh(dax, f"kill-{backend}")
    run_workload(path, "pmd")
    time.sleep(2)  # a drain or two: the events reach the recording
    os.kill(w.p.pid, signal.SIGKILL)
    w.p.wait(timeout=60)
    return w.p.pid


def _pmemtrace(*argv, timeout=300):
    return subprocess.run([sys.executable, "-m", "pmemtrace", *argv], capture_output=True, text=True, timeout=timeout)


def _check_recording(record):
    """The killed watch's recording: kept where asked, replayable, incomplete."""
    assert os.path.exists(record) and not os.path.exists(record + ".part")
    p = _pmemtrace("replay", record, "--json", "--no-reasons")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    d = json.loads(p.stdout)
    # JSON lines (bcc) have no end line, tracefs's pages no end frame
    assert "no end" in d["input"]["incomplete"], d["input"]
    assert d["totals"]["pmd"] == N, d["totals"]
    assert "incomplete" in _pmemtrace("replay", record).stderr


def test_sigkill_then_next_start_removes_leftovers(guest, tmp_path):
    """Both backends; the next start is a short tracefs watch (bcc would
    compile for minutes under TCG: the removal happens before either
    backend attaches)."""
    from pmemtrace.live.bcc_backend import why_not_bcc

    dax = guest.fsdax(map="mem", align="2M", fs="xfs")["mount"]
    backends = ["tracefs"] + ([] if why_not_bcc() else ["bcc"])
    before = attached_state()
    for backend in backends:
        record = str(tmp_path / f"{backend}.jsonl")
        pid = _start_and_kill(backend, dax, record)
        left = attached_state()
        if backend == "tracefs":
            # what SIGKILL leaves: the instance, events enabled in it
            assert f"pmemtrace-{pid}-watch" in left["instances"], left
        else:
            # bcc's probes are perf-event fds (kprobe PMU): the kernel drops
            # them with the process; only the fallback kprobe_events could stay
            assert left["instances"] == before["instances"], left
        _check_recording(record)
        p = _pmemtrace("watch", "--backend", "tracefs", "-d", "0.5")
        assert p.returncode == 0, p.stderr
        if left != before:
            lines = [ln for ln in p.stderr.splitlines() if "leftover" in ln]
            assert len(lines) == 1 and str(pid) in lines[0], p.stderr
        assert attached_state() == before, (backend, p.stderr)
    if "bcc" not in backends:
        skip_or_fail(f"tracefs passed; bcc cannot run in this guest: missing {why_not_bcc()}")


def test_cleanup_command_removes_leftovers(guest, tmp_path):
    dax = guest.fsdax(map="mem", align="2M", fs="xfs")["mount"]
    before = attached_state()
    pid = _start_and_kill("tracefs", dax, str(tmp_path / "c.jsonl"))
    assert f"pmemtrace-{pid}-watch" in attached_state()["instances"]
    dry = _pmemtrace("cleanup", "--dry-run")
    assert dry.returncode == 0 and f"pmemtrace-{pid}-watch" in dry.stdout, dry
    assert f"pmemtrace-{pid}-watch" in attached_state()["instances"]  # a dry run removes nothing
    p = _pmemtrace("cleanup")
    assert p.returncode == 0, p.stderr
    assert f"removed tracefs instance pmemtrace-{pid}-watch (pid {pid} is gone)" in p.stdout, p.stdout
    assert attached_state() == before
    again = _pmemtrace("cleanup", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["leftovers"] == []
