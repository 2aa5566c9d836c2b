"""pmemtrace watch in a lab guest: exact counts for known workloads (23 of
each, a prime, so an off-by-one or a double count shows), reasons as the
model predicts, insert-function hits, and nothing left attached after exit.

Oracle: the workload's own arithmetic (23 touches, one per 2 MiB) and the
reference model run on the same layout.
"""

import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from .labkit import skip_or_fail

N = 23
PMD = 2 << 20
WATCH_READY_TIMEOUT = 1200  # bcc compiles the program under TCG: 1-5 min seen on a loaded 2-core host

GUP_BYTES = 5 * PMD + 3 * 4096  # 2,563 pages over 3 PMDs, not a round number

WORKLOAD = (
    r"""
import os, sys
from pmemtrace.workload import engine as E
path, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
PMD = 2 << 20
GUP_BYTES = """
    + f"{GUP_BYTES:d}"
    + r"""
size = n * PMD + PMD
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
E.fallocate(fd, 0, size)
addr = E.reserve(n * PMD + PMD)
if kind == "pmd":        # aligned, shared: one PMD fault per 2 MiB
    m = E.mmap(fd, n * PMD, 0, addr=addr, fixed=True)
    m.touch(0, n * PMD, stride=PMD, write=True)
elif kind == "colour":   # file offset 4 KiB off the 2 MiB colour: every PMD attempt falls back
    m = E.mmap(fd, n * PMD, 4096, addr=addr, fixed=True)
    m.touch(0, n * PMD, stride=PMD, write=True)
elif kind == "pte":      # MADV_NOHUGEPAGE: no PMD attempt, 4 KiB faults only
    m = E.mmap(fd, n * PMD, 0, addr=addr, fixed=True)
    m.madvise("nohugepage")
    m.touch(0, n * 4096, stride=4096, write=True)
elif kind == "gup":      # PMD-mapped, then O_DIRECT from a non-DAX file INTO it: DAX-GUP
    m = E.mmap(fd, n * PMD, 0, addr=addr, fixed=True)
    m.touch(0, n * PMD, stride=PMD, write=True)
    dfd = os.open(sys.argv[4], os.O_RDONLY | os.O_DIRECT)
    got = m.pread(dfd, GUP_BYTES, 0, 0)
    assert got == GUP_BYTES, got
print(os.getpid(), addr, flush=True)
"""
)


def _tracefs():
    for r in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.isdir(os.path.join(r, "events")):
            return r
    return None


def attached_state():
    """What tracing state exists outside pmemtrace's control: kprobe_events
    lines, global fs_dax enable, pmemtrace instances."""
    root = _tracefs()
    state = {}
    try:
        with open(os.path.join(root, "kprobe_events")) as f:
            state["kprobe_events"] = sorted(ln.strip() for ln in f if ln.strip())
    except OSError:
        state["kprobe_events"] = []
    with open(os.path.join(root, "events", "fs_dax", "enable")) as f:
        state["fs_dax_enable"] = f.read().strip()
    state["instances"] = sorted(d for d in os.listdir(os.path.join(root, "instances")) if d.startswith("pmemtrace"))
    return state


class Watch:
    def __init__(self, backend, mount, extra=(), env=None, interval=3600, opts=()):
        self.p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pmemtrace",
                *opts,
                "watch",
                "--backend",
                backend,
                "--json",
                "-i",
                str(interval),
                "--path",
                mount,
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, **(env or {})),
        )
        self.err = []
        buf = b""
        fd = self.p.stderr.fileno()
        deadline = time.time() + WATCH_READY_TIMEOUT
        while time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 1)
            if r:
                chunk = os.read(fd, 65536)  # raw reads: no lines stranded in a text buffer
                if not chunk:
                    break
                buf += chunk
                if b"Hit Ctrl-C" in buf:
                    self.err.append(buf.decode(errors="replace"))
                    return
            if self.p.poll() is not None:
                break
        self.p.kill()
        raise AssertionError("watch did not start: " + buf.decode(errors="replace")[-3000:])

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        out, err = self.p.communicate(timeout=120)
        self.err.append(err)
        assert self.p.returncode == 0, "".join(self.err)
        lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
        summary = [d for d in lines if d.get("type") == "summary"]
        assert summary, out
        return summary[-1]


def run_workload(path, kind, n=N, dio_file=None):
    """Run one workload process; returns (pid, mapping address)."""
    argv = [sys.executable, "-c", WORKLOAD, path, kind, str(n)] + ([dio_file] if dio_file else [])
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    pid, addr = p.stdout.split()[:2]
    return int(pid), int(addr)


def dio_source(nodax_mount):
    """A written (not sparse: a hole is zero-filled without GUP) file on the
    non-DAX filesystem, for O_DIRECT reads into the DAX mapping."""
    path = os.path.join(nodax_mount, "gup-source")
    with open(path, "wb") as f:
        f.write(os.urandom(GUP_BYTES))
        f.flush()
        os.fsync(f.fileno())
    return path


def _rows(summary, pid):
    return [r for r in summary["rows"] if r["pid"] == pid]


@pytest.fixture(scope="module")
def dax_setup(guest):
    return guest.fsdax(map="mem", align="2M", fs="xfs")


_BPF_CACHE: dict = {}  # the bcc sessions' cache directory (XDG_CACHE_HOME)


SESSIONS = ("bcc", "bcc-cached", "tracefs", "bcc-record", "tracefs-record")
KINDS = ("pmd", "colour", "pte", "gup")


@pytest.fixture(scope="module", params=SESSIONS)
def session(request, dax_setup, guest, tmp_path_factory):
    """One watch per backend (bcc compiles for minutes under TCG) over the
    three workloads, each its own process: {kind: row}, plus the summary.
    bcc: compiles (a fresh cache directory, pmemtrace/live/bpfcache.py) and
    saves the program there; bcc-cached loads it from there without bcc (a
    first bcc watch compiles and saves it if bcc did not run before: -k).
    -record: with --record (bcc: the counting program for the views and an
    every-event one for the file; tracefs: its pages), the file replayed
    too: the exact-count tests check its rows as well (``replayed``)."""
    backend, _, variant = request.param.partition("-")
    cached = variant == "cached"
    record = str(tmp_path_factory.mktemp("rec") / "watch.rec") if variant == "record" else None
    env = {}
    if backend == "bcc":
        if "bcc" not in _BPF_CACHE:  # one compile for both bcc sessions (a minute or more under TCG)
            _BPF_CACHE["bcc"] = str(tmp_path_factory.mktemp("xdg-cache"))
        env = {"XDG_CACHE_HOME": _BPF_CACHE["bcc"]}
    setup, dax = dax_setup, dax_setup["mount"]
    # the workload files of the sessions before (whose tests have run): five
    # sessions' files filled the 1 GiB namespace (ENOSPC)
    for name in {f"{k}-{p}" for k in KINDS for p in SESSIONS if p != request.param}:
        if os.path.exists(os.path.join(dax, name)):
            os.unlink(os.path.join(dax, name))
    if backend == "bcc":
        from pmemtrace.live.bcc_backend import why_not_bcc

        why = why_not_bcc()
        if why:
            skip_or_fail(f"bcc cannot run in this guest: missing {why}")
    try:
        src = dio_source(guest.nodax())
    except pytest.skip.Exception as exc:
        src, no_gup = None, str(exc)
    before = attached_state()
    saved = os.path.join(env.get("XDG_CACHE_HOME", ""), "pmemtrace", "bpf")
    if cached and not (os.path.isdir(saved) and os.listdir(saved)):
        first = Watch(backend, dax, env=env)
        first.stop()
        assert "compiled-program cache" not in "".join(first.err)
    w = Watch(backend, dax, env=env, extra=("--record", record) if record else ())
    loaded_from_cache = "compiled-program cache" in "".join(w.err)
    runs = {}
    try:
        for kind in KINDS[:3] + (KINDS[3:] if src else ()):
            # a name of this session's own: bcc and bcc-cached shared one, and the
            # file fallocated again right after its unlink is placed where xfs
            # finds room: in one lab run (5.10 and 6.1) every PMD fault of it fell back
            path = _fresh(dax, f"{kind}-{request.param}")
            runs[kind] = (path,) + run_workload(path, kind, dio_file=src if kind == "gup" else None)
    finally:
        s = w.stop()
    rows = {}
    for kind, (_path, pid, _addr) in runs.items():
        r = _rows(s, pid)
        assert len(r) == 1, (kind, s["rows"])
        rows[kind] = r[0]
    replayed = None
    if record:
        p = subprocess.run(
            [sys.executable, "-m", "pmemtrace", "replay", record, "--json"], capture_output=True, text=True
        )
        assert p.returncode == 0, p.stderr
        d = json.loads(p.stdout)
        want = "pmemtrace-pages" if backend == "tracefs" else "pmemtrace-records"
        assert d["input"]["format"] == want and "incomplete" not in d["input"], d["input"]
        assert d["totals"]["lost"] == 0, d["totals"]
        replayed = {}
        for kind, (_path, pid, _addr) in runs.items():
            r = _rows(d, pid)
            assert len(r) == 1, (kind, d["rows"])
            replayed[kind] = r[0]
    gup = None
    if src:
        path, pid, addr = runs["gup"]
        gup = {"row": rows.pop("gup"), "path": path, "addr": addr}
    else:
        gup = {"skip": no_gup}
    return {
        "backend": backend,
        "cached": bool(cached),
        "loaded_from_cache": loaded_from_cache,
        "rows": rows,
        "replayed": replayed,
        "summary": s,
        "before": before,
        "after": attached_state(),
        "gup": gup,
        "setup": setup,
        "unmatched": s.get("unmatched"),
    }


def _fresh(dax, name):
    path = os.path.join(dax, name)
    if os.path.exists(path):
        os.unlink(path)
    return path


def test_nothing_left_attached(session):
    assert session["after"] == session["before"]
    assert session["summary"]["totals"]["lost"] == 0


def test_the_second_bcc_start_loads_the_saved_program(session):
    """The counts below then come from the program loaded without bcc."""
    assert session["loaded_from_cache"] == session["cached"]


def _views(session, kind):
    """The row of *kind* in what watch showed, and in its replayed
    recording (-record sessions)."""
    return [session["rows"][kind]] + ([session["replayed"][kind]] if session["replayed"] else [])


def test_pmd_workload_exact_counts(session):
    for r in _views(session, "pmd"):
        assert (r["pmd"], r["fallback"], r["pte"], r["sigbus"]) == (N, 0, 0, 0), r
        assert r["vm_end"] - r["vm_start"] == N * PMD
        if session["backend"] == "bcc":
            assert r["insert_pmd"] == N, r  # one insert-function hit per PMD fault


def test_colour_mismatch_reason_from_model(session):
    for r in _views(session, "colour"):
        assert r["fallback"] == N and r["pmd"] == 0, r
        assert r["pte"] == N, r
        if session["backend"] == "bcc":
            assert r["insert_pmd"] == 0
    r = session["rows"]["colour"]
    assert r["fallback_reasons"] == {"pmd-colour-mismatch": N}, r


def test_gone_processes_are_counted_once_as_intervals_pass(dax_setup, tmp_path_factory):
    """A watch left running gives back what it kept of a process once the
    process is gone and its last counts are reported (bcc_backend
    counts(): the hash entry an interval later, the slot likewise): over
    one-second intervals, each of two workload processes in turn, each
    gone for three intervals before the watch stops, is counted exactly
    once, none twice after its state was dropped and none short."""
    from pmemtrace.live.bcc_backend import why_not_bcc

    why = why_not_bcc()
    if why:
        skip_or_fail(f"bcc cannot run in this guest: missing {why}")
    # the bcc sessions' program when they ran first, else a compile of its own
    cache = _BPF_CACHE.get("bcc") or str(tmp_path_factory.mktemp("xdg-gone"))
    dax = dax_setup["mount"]
    w = Watch("bcc", dax, env={"XDG_CACHE_HOME": cache}, interval=1, opts=("-v",))
    pids = []
    try:
        for i in range(2):
            path = _fresh(dax, f"gone-{i}")
            pids.append(run_workload(path, "pmd")[0])
            time.sleep(3.5)
            os.unlink(path)
    finally:
        s = w.stop()
    for pid in pids:
        r = _rows(s, pid)
        assert len(r) == 1, s["rows"]
        assert (r[0]["pmd"], r[0]["insert_pmd"], r[0]["fallback"], r[0]["pte"]) == (N, N, 0, 0), r
    # and their state was given back while the watch ran (the guest's pids are the kernel's)
    given = [int(m) for m in re.findall(r"gave back the counters of (\d+) mapping", "".join(w.err))]
    assert sum(given) >= len(pids), "".join(w.err)[-3000:]


def test_nohugepage_pte_only(session):
    for r in _views(session, "pte"):
        assert (r["pmd"], r["fallback"], r["pte"]) == (0, 0, N), r
        if session["backend"] == "bcc":
            assert r["insert_pmd"] == 0


def test_list_probes_winners_exist_exactly():
    p = subprocess.run(
        [sys.executable, "-m", "pmemtrace", "watch", "--list-probes", "--json"], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    funcs = set()
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if parts[1] in "tT":
                funcs.add(parts[2])
    winners = {x["point"]: x["winner"] for x in d["probes"]}
    for x in d["probes"]:
        if x["kind"] == "kprobe" and x["winner"]:
            assert x["winner"] in funcs
    assert winners["dax_pmd_fault_done"] == "fs_dax:dax_pmd_fault_done"
    assert winners["insert_pmd"] is not None and winners["get_dev_pagemap"] == "get_dev_pagemap"


def _gup_prediction(session):
    """The model's calls for the gup workload's recorded layout: N write
    touches (one per 2 MiB) then one O_DIRECT read of GUP_BYTES into the
    mapping (FOLL_WRITE, fast path first, as iov_iter_extract_pages()/
    iov_iter_get_pages() do)."""
    from types import SimpleNamespace

    from pmemtrace.model import explain, parse_case

    from .driver import fsdax_case

    g = session["gup"]
    m = SimpleNamespace(addr=g["addr"], length=N * PMD, offset=0, shared=True)
    acc = [{"mapping": "m0", "offset": k * PMD, "op": "write"} for k in range(N)]
    acc.append({"mapping": "m0", "offset": 0, "op": "gup", "length": GUP_BYTES, "write": True, "fast": True})
    pred = explain(parse_case(fsdax_case(session["setup"], g["path"], {"m0": m}, acc))).to_json()
    calls = {}
    for r in pred["results"]:
        for k, v in (r.get("calls") or {}).items():
            calls[k] = calls.get(k, 0) + v
    return pred, calls


def test_gup_get_dev_pagemap_as_profile_says(session):
    """DAX-GUP: an O_DIRECT read into a PMD-mapped DAX buffer.  Kernels
    whose DAX pages carry devmap (<= 6.14) call get_dev_pagemap() once per
    4 KiB page pinned (mm/gup.c __gup_device_huge() 6.1,
    gup_fast_devmap_leaf() 6.12); from 6.15 (devmap removed) never.  The
    exact count comes from the model run on the recorded layout, and the
    profile's flag says which of the two it is."""
    g = session["gup"]
    if "skip" in g:
        skip_or_fail(g["skip"])
    r = g["row"]
    assert (r["pmd"], r["fallback"], r["pte"]) == (N, 0, 0), r  # GUP found every PMD mapped: no fault
    if session["backend"] != "bcc":
        assert r["get_dev_pagemap"] == 0 and r["gup"] == 0, r  # tracefs sees no kprobes: counts stay 0
        return
    pred, calls = _gup_prediction(session)
    from pmemtrace.model.profiles import select_profile

    prof = select_profile(os.uname().release)
    pages = GUP_BYTES // 4096
    assert calls.get("get_dev_pagemap", 0) == (pages if prof.gup_uses_get_dev_pagemap else 0), calls
    assert r["get_dev_pagemap"] == calls.get("get_dev_pagemap", 0), (r, calls, pred["profile"])
    assert r["insert_pmd"] == N, r
    assert r["gup"] >= 1, r  # the pin calls themselves: how many depends on the bio batching
