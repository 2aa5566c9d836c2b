"""Run a scenario on the real host and record it as a case.

Two processes, so that a SIGBUS never kills pmemtrace and scratch files are
always removed:

* the **supervisor** (the pmemtrace process) creates the scratch file, reads
  its FIEMAP extents, sets up an fs_dax tracefs instance, forks the worker,
  collects its step reports from a pipe, removes scratch files (also on
  Ctrl-C, SIGTERM and errors) and writes the case;
* the **worker** (forked) maps, touches, does the O_DIRECT/GUP steps, tracks
  every byte it wrote in a shadow, verifies all of it at the end, and reports
  one JSON line per event.  A step that is expected to SIGBUS (or says
  ``"fork": true``) runs in a grandchild via :meth:`Mapping.child_touch`; an
  unexpected SIGBUS kills only the worker, and the supervisor records it.

This module is the supervisor (and, in its own section, the run's tracefs
instance); the worker is :mod:`.worker`, its shadow :mod:`.shadow`, and the
case it records is built by :mod:`.record`.
"""

import json
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Optional

from .. import __version__
from ..errors import UsageError
from ..model.build import case_to_json
from . import engine as E
from .record import build_case, step_records
from .scenario import PAGE
from .worker import SEED, Worker

MiB = 1 << 20
PMD = 2 * MiB


# ---- the supervisor ------------------------------------------------------


@dataclass
class RunResult:
    scenario: object
    case: dict
    steps: list
    verified_pages: int = 0
    corrupt: list = field(default_factory=list)
    error: Optional[str] = None
    worker_signal: Optional[str] = None
    trace_text: str = ""
    trace_reason: Optional[str] = None
    events: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def matches(self):
        return self.error is None and all(s["match"] for s in self.steps)

    def record(self):
        return {
            "pmemtrace_run": 1,
            "version": __version__,
            "scenario": self.scenario.name,
            "peer": self.scenario.peer,
            "peer_expects": self.scenario.expect,
            "matches": self.matches,
            "error": self.error,
            "worker_signal": self.worker_signal,
            "steps": self.steps,
            "verified_pages": self.verified_pages,
            "corrupt": self.corrupt,
            "trace": self.trace_reason or "recorded",
            "events": self.events,
            "notes": self.notes,
            "seconds": self.seconds,
        }


def _scratch_name(scen):
    return f".pmemtrace-{scen.name}-{os.getpid()}.dat"


def run_scenario(scen, target, dio_dir=None, trace=True, kernel=None, progress=None):
    """Run scen on target (a :class:`pmemtrace.workload.target.Target`);
    returns a :class:`RunResult`.  Never leaves scratch files, tracefs
    instances or the worker behind."""
    if scen.mode != target.mode:
        raise UsageError(
            f"scenario {scen.name} is a {scen.mode} scenario; give it "
            f"{'--dir DIR (a DAX mount)' if scen.mode == 'fsdax' else '--device /dev/daxX.Y'}"
        )
    dev_align = target.device.align or PMD
    if scen.mode == "devdax" and scen.device_align and scen.device_align != dev_align:
        raise UsageError(
            f"scenario {scen.name} needs a devdax device with align {scen.device_align >> 10}K; "
            f"{target.path} has align {dev_align >> 10}K (pass --reconfigure NAMESPACE to let "
            "pmemtrace run 'ndctl create-namespace -f -m devdax -a ALIGN' on it; that destroys its data)"
        )
    t_start = time.perf_counter()
    scratch = []
    fds = []
    trace_inst = None
    traced: list = []  # the fs_dax events of the worker (TraceCapture)
    pid = None
    res = RunResult(scen, {}, [])
    res.notes += target.notes
    old_term = signal.getsignal(signal.SIGTERM)

    def _term(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, _term)
    try:
        # -- setup in the supervisor: scratch file, extents --
        if scen.mode == "fsdax":
            path = os.path.join(target.path, _scratch_name(scen))
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            scratch.append(path)
            fds.append(fd)
            E.ftruncate(fd, scen.file_size)
            shadow_init = None
            if scen.alloc == "fallocate":
                E.fallocate(fd, 0, scen.file_size)
                shadow_init = "zero"
            elif scen.alloc == "write":
                chunk = 4 * MiB
                for off in range(0, scen.file_size, chunk):
                    n = min(chunk, scen.file_size - off)
                    os.pwrite(fd, E.pattern_bytes(SEED - 1, off, n), off)
                shadow_init = SEED - 1
            else:
                shadow_init = "zero"  # holes read as zeros
            E.fsync(fd)
            for off, ln in scen.holes:
                E.punch_hole(fd, off, ln)
            E.fsync(fd)
            try:
                extents = E.fiemap(fd)
            except E.EngineError as exc:
                extents = []
                res.notes.append(f"FIEMAP failed ({exc}): the case has no extents")
            st = os.fstat(fd)
            size = scen.file_size
        else:
            fd = os.open(target.path, os.O_RDWR | os.O_CLOEXEC)
            fds.append(fd)
            extents, st, shadow_init = [], None, None
            size = target.device.size
        dio_fd = None
        if dio_dir and any(s.op == "gup" for s in scen.steps):
            dpath = os.path.join(dio_dir, f".pmemtrace-dio-{os.getpid()}")
            dio_fd = os.open(dpath, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_DIRECT | os.O_CLOEXEC, 0o600)
            scratch.append(dpath)
            fds.append(dio_fd)
            E.ftruncate(dio_fd, max((s.length for s in scen.steps if s.op == "gup"), default=PAGE))

        if trace:
            from ..live.tracefs import TraceCapture, remove_orphans_and_report

            remove_orphans_and_report()
            trace_inst = TraceCapture("run")
            res.trace_reason = trace_inst.reason
        else:
            res.trace_reason = "tracing not requested (--no-trace)"

        out_r, out_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # ---- worker
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                import faulthandler  # an expected SIGBUS is data, not a crash to dump

                faulthandler.disable()
                os.close(out_r)
                os.close(go_w)
                w = Worker(scen, fd, size, dio_fd, out_w, go_r, dev_align=dev_align, devpath=target.path)
                if shadow_init is not None and scen.mode == "fsdax":
                    w.shadow.fill(0, scen.file_size, shadow_init)
                    for off, ln in scen.holes:
                        w.shadow.fill(off, ln, "zero")
                    w.shadow.limit = scen.file_size
                w.run()
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(out_w)
        os.close(go_r)

        msgs = []
        rf = os.fdopen(out_r, "r")
        placed = {}
        mapped_at_start = {}
        start_tables = set()
        current = None
        for line in rf:
            msg = json.loads(line)
            msgs.append(msg)
            if "placed" in msg:
                placed = msg["placed"]
            elif "mapped" in msg:
                mapped_at_start[msg["mapped"]] = msg["addr"]
                start_tables.update(msg.get("page_tables") or ())
            elif "ready" in msg:
                if trace_inst:
                    trace_inst.start(pid)
                    res.trace_reason = trace_inst.reason
                os.write(go_w, b"g")
            elif "begin" in msg:
                current = msg["begin"]
                if progress:
                    st_ = scen.steps[current]
                    progress(f"step {current}: {st_.op} {st_.mapping or ''}")
            elif "step" in msg:
                current = None
            elif "steps_done" in msg:
                if trace_inst:
                    traced = trace_inst.stop()
                    res.trace_reason = trace_inst.reason
                os.write(go_w, b"g")
            elif "verified" in msg:
                res.verified_pages = msg["verified"]
                if msg["nbad"]:
                    res.corrupt.append(
                        f"{msg['nbad']} words read back wrong at the end, first at file/device "
                        f"offsets {', '.join(msg['bad'][:8])}"
                    )
            elif "error" in msg:
                res.error = msg["error"]
        rf.close()
        os.close(go_w)
        _, status = os.waitpid(pid, 0)
        pid = None
        if os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status)).name
            res.worker_signal = sig
            if current is not None:
                msgs.append(
                    {
                        "step": current,
                        "outcome": "sigbus" if sig == "SIGBUS" else sig,
                        "detail": f"the worker died of {sig} in this step",
                    }
                )
            res.error = res.error or f"the worker died of {sig}" + (
                f" in step {current}" if current is not None else ""
            )
        res.steps = step_records(scen, msgs)
        for s in res.steps:
            for c in s.get("corrupt", []):
                res.corrupt.append(f"step {s['index']} ({s['op']}): {c}")
        res.case = case_to_json(
            build_case(
                scen, target, st, extents, placed, mapped_at_start, res.steps, kernel, dio_fd is not None, start_tables
            )
        )
        if traced:
            from ..live.tracefs import trace_text

            res.events = [e.to_json() for e in traced]
            res.trace_text = trace_text(traced)
        return res
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        if trace_inst:
            trace_inst.close()
        for f in fds:
            try:
                os.close(f)
            except OSError:
                pass
        for p in scratch:
            try:
                os.unlink(p)
            except OSError:
                pass
        res.seconds = round(time.perf_counter() - t_start, 3)
