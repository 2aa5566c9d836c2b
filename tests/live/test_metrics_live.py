"""Fleet metrics end to end: the real Prometheus server and node_exporter
(Debian's ``prometheus`` and ``prometheus-node-exporter``, from the host's
/usr) scrape ``pmemtrace watch --prometheus`` and read its ``--textfile``
while two workloads run; PromQL over Prometheus' HTTP API must return the
counts of those workloads.

Oracle: the workloads of tests/live/test_watch_bcc.py, whose counts the
reference model predicts and test_watch_bcc checks against the watch table:
23 aligned 2 MiB faults = 23 PMD; 23 faults at a file offset 4 KiB off the
2 MiB colour = 23 fallbacks with the model's reason pmd-colour-mismatch,
each followed by one 4 KiB (PTE) fault.  Both paths (HTTP scrape, textfile
through node_exporter) must give the same numbers, and after watch ends
nothing is attached.  Also: a second exporter and a port in use are refused
in one line with exit status 4 while the first runs, attaching nothing.

Backend tracefs (bcc would compile for a minute or more under TCG).
"""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from .labkit import skip_or_fail
from .test_watch_bcc import WATCH_READY_TIMEOUT, N, _fresh, attached_state, run_workload

READY_TIMEOUT = 300  # Prometheus under TCG: its TSDB and web start take seconds to minutes on a loaded host
QUERY_TIMEOUT = 300
HTTP_TIMEOUT = 60  # one PromQL query under TCG on a loaded host: 10 s was seen to time out


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, timeout=HTTP_TIMEOUT):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def _wait_http(url, proc, what):
    deadline = time.time() + READY_TIMEOUT
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited {proc.returncode}")
        try:
            _get(url, timeout=5)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{what} not ready at {url} after {READY_TIMEOUT} s")


class Promql:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}/api/v1/query?query="

    def by(self, expr, label):
        """{label value: number} for an instant vector query."""
        d = json.loads(_get(self.base + urllib.parse.quote(expr)))
        assert d["status"] == "success", d
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in d["data"]["result"]}

    def wait_for(self, expr, label, want):
        deadline, got = time.time() + QUERY_TIMEOUT, None
        while time.time() < deadline:
            try:
                got = self.by(expr, label)
            except OSError as exc:  # a slow answer: ask again until the deadline
                got = exc
            if got == want:
                return got
            time.sleep(1)
        raise AssertionError(f"{expr}: {got} after {QUERY_TIMEOUT} s, want {want}")


@pytest.fixture()
def servers(tmp_path):
    """Start Prometheus and node_exporter (each on a free port, temp
    storage, 1 s scrapes); kill both afterwards."""
    prom, nodex = shutil.which("prometheus"), shutil.which("prometheus-node-exporter")
    if not prom or not nodex:
        skip_or_fail("Debian's prometheus and prometheus-node-exporter are not installed (scripts/install-deps.sh)")
    textdir = tmp_path / "textfile"
    textdir.mkdir()
    ports = {k: _free_port() for k in ("watch", "node", "prom")}
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: pmemtrace\n    static_configs: [{{targets: ['127.0.0.1:{ports['watch']}']}}]\n"
        f"  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{ports['node']}']}}]\n"
    )
    log = open(tmp_path / "servers.log", "w")
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(
            [nodex, f"--web.listen-address=127.0.0.1:{ports['node']}", "--collector.disable-defaults",
             "--collector.textfile", f"--collector.textfile.directory={textdir}"],
            stdout=log, stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [prom, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{ports['prom']}"],
            stdout=log, stderr=subprocess.STDOUT,
        ),
    ]  # fmt: skip
    try:
        _wait_http(f"http://127.0.0.1:{ports['node']}/metrics", procs[0], "node_exporter")
        _wait_http(f"http://127.0.0.1:{ports['prom']}/-/ready", procs[1], "prometheus")
        print(f"prometheus and node_exporter ready in {time.monotonic() - t0:.1f} s")
        yield {
            "ports": ports,
            "textdir": str(textdir),
            "promql": Promql(ports["prom"]),
            "log": tmp_path / "servers.log",
        }
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()


UNITS = os.path.join(os.path.dirname(__file__), "..", "..", "contrib", "systemd")


def unit_bounding_set(unit="pmemtrace-exporter.service"):
    """CapabilityBoundingSet= of a contrib unit, as setpriv's --bounding-set."""
    for line in open(os.path.join(UNITS, unit)):
        if line.startswith("CapabilityBoundingSet="):
            caps = line.split("=", 1)[1].split()
            return "-all," + ",".join("+" + c.lower().removeprefix("cap_") for c in caps)
    raise AssertionError("no CapabilityBoundingSet in " + unit)


class Exporter:
    """``pmemtrace watch`` as the unit runs it (tracefs, root uid, the
    unit's bounding set, no inherited capabilities), ready when it says so."""

    def __init__(self, bounding, mount, port, textdir):
        argv = ["setpriv", "--inh-caps=-all", f"--bounding-set={bounding}", "--", sys.executable, "-m", "pmemtrace",
                "watch", "--backend", "tracefs", "--path", mount, "-i", "1",
                "--prometheus", f"127.0.0.1:{port}", "--textfile", textdir]  # fmt: skip
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid = self.p.pid  # setpriv execs: the same process
        err, deadline = b"", time.time() + WATCH_READY_TIMEOUT
        fd = self.p.stderr.fileno()
        while time.time() < deadline and b"Hit Ctrl-C" not in err:
            if self.p.poll() is not None:
                err += os.read(fd, 65536)
                break
            r, _, _ = select.select([fd], [], [], 1)
            if r:
                err += os.read(fd, 65536)
        self.err = err.decode(errors="replace")
        if "Hit Ctrl-C" not in self.err:
            self.p.kill()
            raise AssertionError("the exporter did not start: " + self.err[-3000:])

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        out, err = self.p.communicate(timeout=120)
        assert self.p.returncode == 0, self.err + err
        return out


def _pmemtrace(*argv, prefix=()):
    return subprocess.run(
        [*prefix, sys.executable, "-m", "pmemtrace", *argv], capture_output=True, text=True, timeout=300
    )


def _concurrently(*calls):
    """Run pmemtrace commands at once (each costs a Python start under
    TCG: tens of seconds on a loaded host); their CompletedProcesses."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(calls)) as ex:
        return [f.result() for f in [ex.submit(_pmemtrace, *argv, **kw) for argv, kw in calls]]


def unrestricted_findings():
    """diagnose's host findings with every capability (this process: no
    Python start to pay for under TCG)."""
    from pmemtrace.host import HostState, Roots, diagnose_host

    return diagnose_host(HostState(Roots()))


class Phases:
    """Seconds per phase, printed: the test's cost per kernel."""

    def __init__(self):
        self.t = time.monotonic()

    def __call__(self, what):
        now = time.monotonic()
        print(f"metrics live: {what} {now - self.t:.1f} s")
        self.t = now


def test_prometheus_and_node_exporter_see_the_model_counts(guest, servers):
    phase = Phases()
    dax = guest.fsdax(map="mem", align="2M", fs="xfs")["mount"]
    before = attached_state()
    port, textdir, q = servers["ports"]["watch"], servers["textdir"], servers["promql"]
    # the exporter runs with the capability bounding set of the systemd unit
    w = Exporter(unit_bounding_set(), dax, port, textdir)
    phase("exporter started")
    try:
        # conflicts while it runs: one line, status 4, nothing attached
        during = attached_state()
        second, busy = _concurrently(
            (("watch", "--backend", "tracefs", "--textfile", textdir, "-d", "1"), {}),
            (("diagnose", "--prometheus", f"127.0.0.1:{port}"), {}),
        )
        assert second.returncode == 4, second.stderr
        assert "another pmemtrace exporter" in second.stderr and str(w.pid) in second.stderr, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert busy.returncode == 4 and "address already in use" in busy.stderr, busy.stderr
        assert attached_state() == during
        phase("conflicts refused")
        for kind in ("pmd", "colour"):
            run_workload(_fresh(dax, f"metrics-{kind}"), kind)
        phase("workloads ran")
        m = f'mount="{dax}"'
        both = {"pmemtrace": N, "node": N}
        q.wait_for(f'sum by (job) (pmemtrace_dax_faults_total{{{m},outcome="pmd"}})', "job", both)
        q.wait_for(f'sum by (job) (pmemtrace_dax_faults_total{{{m},outcome="pte"}})', "job", both)
        q.wait_for(f'sum by (job) (pmemtrace_dax_faults_total{{{m},outcome="fallback"}})', "job", both)
        got = q.by(f'sum by (reason) (pmemtrace_dax_pmd_fallbacks_total{{{m},job="pmemtrace"}})', "reason")
        assert got == {"pmd-colour-mismatch": N}, got
        got = q.by(f'sum by (reason) (pmemtrace_dax_pmd_fallbacks_total{{{m},job="node"}})', "reason")
        assert got == {"pmd-colour-mismatch": N}, got
        assert q.by("sum by (job) (pmemtrace_lost_events_total)", "job") == {"pmemtrace": 0, "node": 0}
        info = q.by('pmemtrace_build_info{job="pmemtrace"}', "backend")
        assert info == {"tracefs": 1}, info
        assert q.by("node_textfile_scrape_error", "job") == {"node": 0}
        phase("PromQL gave the counts")
        # diagnose from the timer's unit, with its bounding set: the same
        # namespace and mount verdicts as an unrestricted diagnose --json
        full = unrestricted_findings()
        want_ns = {f.subject: 1 if f.code == "pmd-capable" else 0 for f in full if f.kind == "namespace"
                   and f.code in ("pmd-capable", "ns-data-unaligned", "ns-raw", "ns-sector")}  # fmt: skip
        want_mount = {f.subject: 1 for f in full if f.code == "mount-dax"}
        assert want_ns and dax in want_mount, full
        bounding = unit_bounding_set("pmemtrace-diagnose.service")
        d = _pmemtrace(
            "-q",
            "diagnose",
            "--textfile",
            textdir,
            prefix=("setpriv", "--inh-caps=-all", f"--bounding-set={bounding}", "--"),
        )
        assert d.returncode == 0 and d.stderr.strip() == f"diagnose: wrote {textdir}/pmemtrace-diagnose.prom", d.stderr
        q.wait_for('pmemtrace_namespace_pmd_capable{job="node"}', "namespace", want_ns)
        q.wait_for('pmemtrace_mount_dax{job="node",mode="always"}', "mount", want_mount)
        phase("diagnose gauges through node_exporter")
    finally:
        out = w.stop()
    assert f"total: {N} PMD, {N} PTE, 0 huge zero, {N} fallbacks" in out, out
    assert attached_state() == before
    # the textfile holds the final counts; no temporary file is left
    assert sorted(os.listdir(textdir)) == ["pmemtrace-diagnose.prom", "pmemtrace.prom"]
    phase("exporter stopped")
