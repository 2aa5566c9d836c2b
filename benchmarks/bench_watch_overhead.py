#!/usr/bin/env python3
"""Overhead and capacity of pmemtrace watch, run INSIDE a lab guest (root,
a DAX mount), all modes in the same boot:

  pmemtrace lab run --kernel 6.12 --icount 0 --prepare --fs xfs -- \\
      python benchmarks/bench_watch_overhead.py --dir /tmp/pmem

(--icount 0: the guest's clock counts instructions, so the figures repeat
from boot to boot and do not move with the host's load; docs/lab.md.)

Workloads (each a fresh process timing its whole workload):
  pmd  -- a 256 MiB file mapped shared, one write per 2 MiB, --pmd-passes
          passes (default 512; mmap, touch, munmap each pass, so every pass
          faults again): 65,536 PMD faults, a few seconds untraced in the
          lab (16 passes, 2,048 faults in ~0.1 s, were too short to measure:
          a tracer that reads every 0.5 s had not run yet when they ended,
          and traced runs came out faster than untraced)
  pte  -- the same file with MADV_NOHUGEPAGE, one write per 4 KiB over
          256 MiB, 4 passes: 262,144 PTE faults (the capacity run)
The time is the whole workload as its user waits for it: every pass's
mmap, touch loop and munmap, in one timed run (not the touch loops alone).
Modes: untraced, the default 'pmemtrace watch' (bcc, then tracefs; bcc
counts in the kernel), 'trace-cmd record -e fs_dax' (trace-cmd's banner
is not waited for: its start is a fixed 8 s), and on request (--modes)
bcc-record / tracefs-record ('watch --record', every event) and bcc-stats
(the default bcc watch with kernel.bpf_stats_enabled=1: prints each BPF
program's run count and time from /proc/PID/fdinfo, where the time in the
kernel goes) and tracefs-floor (the default tracefs watch's events,
filter and buffer enabled in an instance that nobody reads: what the
kernel's event writes cost, the floor under that backend),
tracefs-hist-floor (the same two done events counted by hist triggers
alone, in the kernel's soft mode: a record built for the trigger and
dropped, none written to the buffer; what counting in the kernel with
tracefs would cost at least), bcc-floor
(programs that return at once where the default bcc watch attaches for
these workloads: the attachment's own cost).  --repeat N runs each
workload N times per mode (one tracer session) and reports the fastest: on a shared, loaded host the noise only
ever adds time; untraced runs first and again after the last mode (the
faster of the two is the base of every ratio).  Prints
seconds, ratios to untraced, events seen and lost, and each tracer's start
(exec to attached), the workload's system time (its faults in the kernel,
tracepoints and probes included) and the tracer's CPU time over the
mode's runs (read from /proc, free of the host's wall-clock noise).
Then (--replay-passes, default 8) records a PTE workload of 524,288
faults (1,048,576 fs_dax events) with trace-cmd and times 'trace-cmd
report' on the .dat against 'pmemtrace replay' of its text (the same
trace).  Prints figures; asserts nothing.
"""

import argparse
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable

WORKLOAD = r"""
import json, os, sys, time
from pmemtrace.workload import engine as E
path, kind, passes = sys.argv[1], sys.argv[2], int(sys.argv[3])
PMD = 2 << 20
size = 256 << 20
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
E.fallocate(fd, 0, size)
n = 0
length, stride = size, (PMD if kind == "pmd" else 4096)
t0 = time.perf_counter()
for _ in range(passes):  # timed whole: what the user waits for
    addr = E.reserve(length + PMD)
    m = E.mmap(fd, length, 0, addr=addr, fixed=True)
    if kind == "pte":
        m.madvise("nohugepage")
    n += m.touch(0, length, stride=stride, write=True)
    m.unmap()
t = time.perf_counter() - t0
os.close(fd)
os.unlink(path)
print(json.dumps({"seconds": t, "touches": n, "pid": os.getpid()}), flush=True)
"""


#: passes of each workload (--pmd-passes sets the first)
PASSES = {"pmd": 512, "pte": 4}


def tree_cpu(pid):
    """CPU seconds (user, system) of process *pid* and of every
    descendant alive or reaped by them: the tracer's own cost, free of the
    wall-clock noise of a shared host (trace-cmd record forks a reader per
    CPU)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu = {}, {}  # pid: (user, system)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d)] = int(st[1])
        # utime stime cutime cstime
        cpu[int(d)] = ((int(st[11]) + int(st[13])) / tick, (int(st[12]) + int(st[14])) / tick)
    user = system = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        u, s = cpu.get(p, (0.0, 0.0))
        user, system = user + u, system + s
        todo += [c for c, pp in parent.items() if pp == p]
    return user, system


def hist_floor(dev):
    """Hist triggers on the two done events with the default watch's
    ``dev ==`` filter, the events themselves left disabled (the trigger
    puts them in soft mode: each record is built for the trigger and
    dropped, none reaches the buffer).  Returns (instance, triggers)."""
    from pmemtrace.live.tracefs import Instance

    inst = Instance("bench-hist-floor")
    inst.create()
    triggers = []
    try:
        for ev in ("dax_pmd_fault_done", "dax_pte_fault_done"):
            trig = f"hist:keys=common_pid,ino:vals=hitcount:size=2048 if dev == {dev}"
            inst.write(f"events/fs_dax/{ev}/trigger", trig)
            triggers.append((ev, trig))
    except BaseException:  # a kernel without hist triggers: nothing left behind
        remove_hist_floor((inst, triggers))
        raise
    return inst, triggers


def remove_hist_floor(hist):
    """Remove :func:`hist_floor`'s triggers, then its instance (a trigger
    holds its event: the instance cannot go first)."""
    inst, triggers = hist
    try:
        for ev, trig in triggers:
            inst.write(f"events/fs_dax/{ev}/trigger", "!" + trig)
    finally:
        inst.close()


def bcc_floor():
    """Programs that return at once, attached where the default bcc watch
    attaches for these workloads (the PMD and 4 KiB faults' done events,
    as raw tracepoints: the watch's tp_btf programs run from the same
    tracepoint call; the PMD insert's fentry): the cost of the attachment
    itself, the floor under that backend.  A bcc.BPF with .attached.
    Where the watch puts a kprobe on the insert (no BTF for it), this
    floor's fentry is cheaper than what the watch pays."""
    from bcc import BPF

    text = "RAW_TRACEPOINT_PROBE(dax_pmd_fault_done) { return 0; }\n"
    text += "RAW_TRACEPOINT_PROBE(dax_pte_fault_done) { return 0; }\n"
    attached = ["raw_tp/dax_pmd_fault_done", "raw_tp/dax_pte_fault_done"]
    for fn in ("vmf_insert_folio_pmd", "vmf_insert_pfn_pmd"):
        try:
            b = BPF(text=text + f"KFUNC_PROBE({fn}, void *vmf) {{ return 0; }}\n")
        except Exception:  # not in this kernel's BTF
            continue
        b.attached = attached + [f"fentry/{fn}"]
        return b
    b = BPF(text=text)
    b.attached = attached
    return b


def workload(d, kind, passes=None):
    passes = PASSES[kind] if passes is None else passes
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(
        [PY, "-c", WORKLOAD, os.path.join(d, f"bench-{kind}"), kind, str(passes)],
        capture_output=True,
        text=True,
        cwd=HERE,
    )
    if p.returncode:  # a run killed by a signal leaves stderr empty: say how it ended
        raise SystemExit(f"workload {kind} failed (exit {p.returncode}): {p.stderr[-2000:]}")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    # the workload's own CPU: its faults' time in the kernel, tracepoints and probes included
    out["user"], out["sys"] = ru1.ru_utime - ru0.ru_utime, ru1.ru_stime - ru0.ru_stime
    return out


class Tracer:
    def __init__(self, argv, ready, timeout=900):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)
        t0 = time.time()
        self.startup = None
        buf = b""
        if ready is None:  # trace-cmd's banner may sit in a pipe buffer: give it time instead
            time.sleep(8)
            self.startup = time.time() - t0
            return
        fds = [self.p.stderr.fileno(), self.p.stdout.fileno()]
        while time.time() - t0 < timeout:
            r, _, _ = select.select(fds, [], [], 1)
            for fd in r:
                buf += os.read(fd, 65536)
            if ready.encode() in buf:
                self.startup = time.time() - t0
                return
            if self.p.poll() is not None:
                break
        raise SystemExit(f"tracer did not start: {argv}: {buf[-2000:]!r}")

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        out, err = self.p.communicate(timeout=1800)
        return out, err


def bpf_prog_stats(pid):
    """[(prog name or tag, run_cnt, run_time_ns)] of process *pid*'s BPF
    programs, from /proc/PID/fdinfo (with kernel.bpf_stats_enabled=1)."""
    out = []
    fddir = f"/proc/{pid}/fdinfo"
    for fd in sorted(os.listdir(fddir), key=int):
        try:
            with open(os.path.join(fddir, fd)) as f:
                info = dict(ln.split(":", 1) for ln in f.read().splitlines() if ":" in ln)
        except OSError:
            continue
        if "run_cnt" not in info:
            continue
        try:
            name = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            name = ""
        out.append((info.get("prog_tag", "").strip() + " " + name, int(info["run_cnt"]), int(info["run_time_ns"])))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/pmem", help="directory on a DAX mount")
    ap.add_argument("--modes", default="untraced,bcc,tracefs,trace-cmd")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each workload N times per mode and report the fastest (faults seen: all N runs')",
    )
    ap.add_argument(
        "--replay-passes",
        type=int,
        default=8,
        help="PTE passes (65,536 faults each) recorded for the replay-rate run; 0 skips it",
    )
    ap.add_argument(
        "--pmd-passes",
        type=int,
        default=PASSES["pmd"],
        help="passes of the PMD workload (128 PMD faults each; default %(default)s)",
    )
    args = ap.parse_args()
    if args.pmd_passes < 1:
        ap.error("--pmd-passes must be at least 1")
    PASSES["pmd"] = args.pmd_passes
    modes = args.modes.split(",")
    results = {}
    dat = os.path.join("/tmp", "bench-fs_dax.dat")
    for kind in ("pmd", "pte"):  # warm-up, not reported (the first run paid ~0.8 s more in the lab)
        workload(args.dir, kind, 1)
    # untraced runs first and again last, the faster counting: a host that
    # slowed down (or warmed up) in between moves no ratio (6.12, lab: the
    # first untraced PTE runs were slower than every traced one)
    order = modes + (["untraced"] if "untraced" in modes and len(modes) > 1 else [])
    for mode in order:
        tr = None
        if mode.split("-")[0] in ("bcc", "tracefs") and not mode.endswith("-floor"):
            # the default watch (counts in the kernel, reasons on), or with
            # -record every event recorded (--record)
            backend, _, record = mode.partition("-")
            extra = ["--record", os.path.join("/tmp", f"bench-{mode}.rec")] if record == "record" else []
            tr = Tracer(
                [PY, "-m", "pmemtrace", "watch", "--backend", backend, "--json", "-i", "3600", "--path", args.dir]
                + extra,
                "Hit Ctrl-C",
            )
        elif mode == "trace-cmd":
            tr = Tracer(["trace-cmd", "record", "-e", "fs_dax", "-o", dat], None)
        floor = None
        if mode == "tracefs-floor":
            # the default tracefs watch's kernel side alone: the same events,
            # filter and buffer, nobody reading (the ring overwrites itself)
            from pmemtrace.live.files import kernel_dev
            from pmemtrace.live.session import TRACEFS_COUNTING_SKIPS
            from pmemtrace.live.tracefs import TracefsBackend

            dev = kernel_dev(os.stat(args.dir).st_dev)
            floor = TracefsBackend(
                buffer_kb=65536, skip=TRACEFS_COUNTING_SKIPS, file_filter=(dev, None), purpose="bench-floor"
            )
            floor.start()
            print(f"{mode:10} events enabled: {', '.join(floor.enabled)}; none read", flush=True)
        hist = None
        if mode == "tracefs-hist-floor":
            from pmemtrace.live.files import kernel_dev

            hist = hist_floor(kernel_dev(os.stat(args.dir).st_dev))
            print(f"{mode:10} hist triggers on: {', '.join(ev for ev, _t in hist[1])}; events disabled", flush=True)
        if mode == "bcc-floor":
            floor = bcc_floor()
            print(f"{mode:10} empty programs on: {', '.join(floor.attached)}", flush=True)
        if mode == "bcc-stats":
            with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                f.write("1")
        ws = {}
        cpu0 = tree_cpu(tr.p.pid) if tr else (0.0, 0.0)
        try:
            for _ in range(args.repeat):  # the fastest of the runs: a loaded host only ever adds time
                for kind in ("pmd", "pte"):
                    w = workload(args.dir, kind)
                    if kind not in ws or w["seconds"] < ws[kind]["seconds"]:
                        ws[kind] = dict(w, pids=ws.get(kind, {}).get("pids", []) + [w["pid"]])
                    else:
                        ws[kind]["pids"].append(w["pid"])
        finally:  # a floor's instance or programs never outlive the mode
            if mode == "bcc-floor":
                floor.cleanup()
            elif floor is not None:
                floor.close()
            if hist is not None:
                remove_hist_floor(hist)
        if tr:
            u, sy = (b - a for a, b in zip(cpu0, tree_cpu(tr.p.pid)))
            print(
                f"{mode:10} tracer cpu: {u + sy:.2f} s ({u:.2f} user, {sy:.2f} system) over the "
                f"{args.repeat} x 2 workload runs",
                flush=True,
            )
        summ = None
        if mode == "bcc-stats":
            for name, cnt, ns in bpf_prog_stats(tr.p.pid):
                if cnt:
                    print(f"bpf-stats {name}: {cnt} runs, {ns / 1e6:.1f} ms, {ns / cnt:.0f} ns/run", flush=True)
            with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                f.write("0")
        if tr:
            out, err = tr.stop()
            if mode.split("-")[0] in ("bcc", "tracefs"):
                # where losses were counted (ring full vs a final drain cut)
                for ln in err.splitlines():
                    if "lost" in ln or "final drain" in ln:
                        print(f"{mode:10} stderr: {ln.strip()}", flush=True)
                summ = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
                summ = [x for x in summ if x.get("type") == "summary"][-1]
        for kind, w in ws.items():
            row = {"seconds": w["seconds"], "touches": w["touches"] * args.repeat, "sys": round(w["sys"], 2)}
            if tr:
                row["startup"] = round(tr.startup, 1)
            if summ:
                mine = [r for r in summ["rows"] if r["pid"] in w["pids"]]
                row["pmd"] = sum(r["pmd"] for r in mine)
                row["pte"] = sum(r["pte"] for r in mine)
                row["lost"] = summ["totals"]["lost"]
            if (mode, kind) not in results or row["seconds"] < results[(mode, kind)]["seconds"]:
                results[(mode, kind)] = row
            print(f"{mode:10} {kind}: {json.dumps(row)}", flush=True)
        if mode == "trace-cmd" and os.path.exists(dat):
            print(f"{mode:10} file: {os.path.getsize(dat) / 1e6:.1f} MB", flush=True)
            os.unlink(dat)
        rec = f"/tmp/bench-{mode}.rec"
        if mode.endswith("-record") and os.path.exists(rec):
            # what was recorded replays: its format, size and fault counts
            r = subprocess.run(
                [PY, "-m", "pmemtrace", "replay", rec, "--json", "--no-reasons"], capture_output=True, text=True
            )
            if r.returncode == 0:
                d = json.loads(r.stdout)
                print(
                    f"{mode:10} file: {os.path.getsize(rec) / 1e6:.1f} MB, {d['input']['format']}, replayed "
                    f"{d['totals']['pmd']}/{d['totals']['pte']} pmd/pte faults, {d['totals']['lost']} lost"
                    + (f", incomplete: {d['input']['incomplete']}" if d["input"].get("incomplete") else ""),
                    flush=True,
                )
            else:
                print(f"{mode:10} file: replay failed: {r.stderr.strip()[-300:]}", flush=True)
            os.unlink(rec)
    print("\nworkload  mode        seconds  x untraced  faults seen (pmd/pte)  lost  start (s)")
    for kind in ("pmd", "pte"):
        base = results.get(("untraced", kind), {}).get("seconds")
        for mode in modes:
            r = results.get((mode, kind))
            if not r:
                continue
            ratio = f"{r['seconds'] / base:8.2f}" if base else "       -"
            seen = f"{r.get('pmd', '-')}/{r.get('pte', '-')}"
            print(
                f"{kind:9} {mode:10} {r['seconds']:8.2f} {ratio}    {seen:>20}  {r.get('lost', '-')!s:>4}"
                f"  {r.get('startup', '-')}"
            )
    if args.replay_passes:
        # (3) replay rate: a PTE workload of replay_passes x 65,536 faults
        # (8 passes: 524,288 faults = 1,048,576 fs_dax events) recorded by
        # trace-cmd; 'trace-cmd report' on the .dat against 'pmemtrace replay'
        # of the resulting text (parse + views; then with model reasons)
        tr = Tracer(["trace-cmd", "record", "-e", "fs_dax", "-o", dat], None)
        workload(args.dir, "pte", args.replay_passes)
        tr.stop()
        txt = "/tmp/bench-fs_dax.txt"
        t0 = time.perf_counter()
        with open(txt, "w") as f:
            subprocess.run(["trace-cmd", "report", "-i", dat], stdout=f, stderr=subprocess.DEVNULL)
        t_tc = time.perf_counter() - t0
        lines = sum(1 for line in open(txt) if ": dax_" in line)
        print(
            f"\nreplay: trace-cmd report of {lines} fs_dax events: {t_tc:.1f} s "
            f"({lines / max(t_tc, 1e-9):,.0f} events/s)",
            flush=True,
        )
        for extra, label in ((["--no-reasons"], "parse + views"), ([], "with model reasons")):
            t0 = time.perf_counter()
            p = subprocess.run(
                [PY, "-m", "pmemtrace", "replay", txt, "--json", *extra], capture_output=True, text=True, cwd=HERE
            )
            t_rp = time.perf_counter() - t0
            n = json.loads(p.stdout)["input"]["events"] if p.returncode == 0 else -1
            print(
                f"replay: pmemtrace replay ({label}) of the same text: {t_rp:.1f} s for {n} events "
                f"({n / max(t_rp, 1e-9):,.0f} events/s; x{t_rp / max(t_tc, 1e-9):.2f} trace-cmd report)",
                flush=True,
            )
        for f in (dat, txt):
            if os.path.exists(f):
                os.unlink(f)


if __name__ == "__main__":
    main()
