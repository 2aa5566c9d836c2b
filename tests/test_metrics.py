"""pmemtrace/metrics: the adapter, the watch and diagnose collectors, the
textfile writer, the one-exporter lock, names checked by promtool."""

import os
import socket
import subprocess
import threading
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pmemtrace.errors import ExporterConflict, HostUnsupported, PrivilegeError, UsageError
from pmemtrace.events import VM_FAULT, Event
from pmemtrace.live.views import Aggregator
from pmemtrace.metrics import families as fam
from pmemtrace.metrics.collect import snapshot
from pmemtrace.metrics.serve import (
    HostLock,
    HttpEndpoint,
    check_textfile_dir,
    parse_listen,
    remove_stale_temps,
    write_textfile,
)
from pmemtrace.metrics.watch_exporter import WatchExporter

DEV = (259 << 20) | 0  # the views' dev_t encoding (major << 20 | minor)
MB2 = 2 << 20


def need_tool(name):
    """The path of *name*, else skip -- or fail where the full suite is
    required (CI sets PMEMTRACE_RUN_LIVE_TESTS=1, and install-deps.sh
    installs Debian's prometheus, which brings promtool)."""
    import shutil

    path = shutil.which(name)
    if path is None:
        msg = f"{name} not installed (Debian package prometheus; scripts/install-deps.sh)"
        if os.environ.get("PMEMTRACE_RUN_LIVE_TESTS") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return path


class StubAttributor:
    """Every fallback at an address below 0x8000_0000_0000 is colour, the rest short extents."""

    def observe(self, ev):
        pass

    def attribute(self, ev):
        return ("pmd-colour-mismatch" if ev.fields["address"] < 0x800000000000 else "extent-too-short"), None


def fault(name, addr, result, pid=10, comm="db", dev=DEV, ino=12, vs=0x7F0000000000, size=64 * MB2):
    f = {"dev": dev, "ino": ino, "address": addr, "result": result}
    if name.startswith("dax_pmd"):
        f.update(vm_start=vs, vm_end=vs + size)
    return Event(name=name, fields=f, pid=pid, tid=pid, comm=comm, source="tracefs")


def scenario_views():
    """3 PMD faults, 2 fallbacks (colour) with their 1024 PTE faults, and a
    second process with 1 fallback of another reason; 7 lost events."""
    agg = Aggregator(StubAttributor())
    vs = 0x7F0000000000
    for i in range(3):
        agg.add(fault("dax_pmd_fault_done", vs + i * MB2, VM_FAULT["NOPAGE"]))
    for i in range(3, 5):
        agg.add(fault("dax_pmd_fault_done", vs + i * MB2, VM_FAULT["FALLBACK"]))
        for j in range(512):
            agg.add(fault("dax_pte_fault_done", vs + i * MB2 + j * 4096, VM_FAULT["NOPAGE"]))
    vs2 = 0x900000000000
    agg.add(fault("dax_pmd_fault_done", vs2, VM_FAULT["FALLBACK"], pid=11, comm="etl", ino=13, vs=vs2))
    agg.add(Event(name="lost", fields={"count": 7}))
    return agg


class FixedLabels:
    def __call__(self, dev):
        return ("other", "", "") if dev is None else (dev, "/mnt/pmem", "xfs")


def exported(exporter):
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(exporter)
    return generate_latest(reg).decode()


def samples(text):
    out = {}
    for mf in text_string_to_metric_families(text):
        for s in mf.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text, name, **labels):
    return samples(text).get((name, tuple(sorted(labels.items()))))


def test_snapshot_reads_the_views():
    snap = snapshot(scenario_views(), now=5.0)
    assert snap.taken == 5.0 and snap.lost == 7
    db = snap.by_key[("259:0", "db")]
    assert db.outcomes == {"pmd": 3, "pte": 1024, "huge_zero": 0, "fallback": 2, "sigbus": 0}
    assert db.reasons == {"pmd-colour-mismatch": 2}
    assert snap.by_key[("259:0", "etl")].reasons == {"extent-too-short": 1}


def test_watch_metrics_values_and_labels():
    exp = WatchExporter(scenario_views(), "tracefs", release="6.12.95+deb12-amd64", device_labels=FixedLabels())
    assert exp.publish()
    text = exported(exp)
    dl = dict(device="259:0", mount="/mnt/pmem", fs="xfs")
    assert value(text, "pmemtrace_dax_faults_total", outcome="pmd", **dl) == 3
    assert value(text, "pmemtrace_dax_faults_total", outcome="pte", **dl) == 1024
    assert value(text, "pmemtrace_dax_faults_total", outcome="fallback", **dl) == 3
    assert value(text, "pmemtrace_dax_pmd_fallbacks_total", reason="pmd-colour-mismatch", **dl) == 2
    assert value(text, "pmemtrace_dax_pmd_fallbacks_total", reason="extent-too-short", **dl) == 1
    assert value(text, "pmemtrace_lost_events_total") == 7
    info = [k for k in samples(text) if k[0] == "pmemtrace_build_info"]
    assert dict(info[0][1]) == {
        "version": "0.1.0",
        "kernel": "6.12.95+deb12-amd64",
        "profile": "6.12",
        "backend": "tracefs",
        "command": "watch",
    }
    # tracefs does not see GUP or inserts: not exported as zeros
    assert "pmemtrace_gup_calls" not in text and "pmemtrace_pmd_inserts" not in text
    # no process names, pids or inodes unless asked
    assert "comm=" not in text and "pid" not in text and "ino" not in text
    assert value(text, "pmemtrace_scrape_errors_total", command="watch", stage="snapshot") == 0


def test_process_names_only_when_asked_and_capped():
    exp = WatchExporter(scenario_views(), "bcc", release="6.12", max_comms=1, device_labels=FixedLabels())
    exp.publish()
    text = exported(exp)
    assert value(text, "pmemtrace_process_dax_faults_total", comm="db", outcome="pmd") == 3
    assert value(text, "pmemtrace_process_dax_faults_total", comm="other", outcome="fallback") == 1
    assert "etl" not in text  # beyond the cap of 1
    assert value(text, "pmemtrace_gup_calls_total", device="259:0", mount="/mnt/pmem", fs="xfs") == 0


def test_snapshot_errors_are_counted_and_the_last_good_one_stays():
    views = scenario_views()
    exp = WatchExporter(views, "tracefs", device_labels=FixedLabels())
    exp.publish()

    class Broken:
        def to_json(self):
            raise RuntimeError("views changed shape")

    exp.views = Broken()
    assert not exp.publish()
    text = exported(exp)
    assert value(text, "pmemtrace_scrape_errors_total", command="watch", stage="snapshot") == 1
    assert value(text, "pmemtrace_lost_events_total") == 7


def test_every_exported_family_is_declared_and_documented():
    exp = WatchExporter(scenario_views(), "bcc", max_comms=3, device_labels=FixedLabels())
    exp.publish()
    names = {mf.name for mf in text_string_to_metric_families(exported(exp))}
    # the text parser names a counter's family without _total, an info by its sample
    declared = {f.sample_name if f.type == "info" else f.name for f in fam.ALL_FAMILIES}
    assert names <= declared, names - declared
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "metrics.md")).read()
    for f in fam.ALL_FAMILIES:
        assert f"`{f.sample_name}`" in doc, f.sample_name


def test_promtool_check_metrics(tmp_path):
    promtool = need_tool("promtool")
    exp = WatchExporter(scenario_views(), "bcc", max_comms=2, device_labels=FixedLabels())
    exp.publish()
    text = exported(exp)
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr  # no lint warnings either


def test_textfile_is_atomic_and_cleans_up(tmp_path):
    exp = WatchExporter(scenario_views(), "tracefs", device_labels=FixedLabels())
    exp.publish()
    from prometheus_client.registry import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(exp)
    stale = tmp_path / ".pmemtrace.prom.999999999.tmp"  # a writer killed mid-write
    stale.write_text("x")
    remove_stale_temps(str(tmp_path), "pmemtrace.prom")
    path = write_textfile(str(tmp_path), "pmemtrace.prom", reg)
    assert sorted(os.listdir(tmp_path)) == ["pmemtrace.prom"]
    assert (
        value(
            open(path).read(), "pmemtrace_dax_faults_total", device="259:0", mount="/mnt/pmem", fs="xfs", outcome="pmd"
        )
        == 3
    )


def test_textfile_dir_errors(tmp_path):
    with pytest.raises(UsageError, match="not a directory"):
        check_textfile_dir(str(tmp_path / "missing"))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # root writes anywhere: /proc below is unwritable for all
            with pytest.raises(PrivilegeError, match="cannot write"):
                check_textfile_dir(str(ro))
    finally:
        ro.chmod(0o700)
    with pytest.raises(PrivilegeError, match="cannot write"):
        check_textfile_dir("/proc/self")  # not writable even for root


@pytest.mark.parametrize(
    "text,want",
    [("9101", ("0.0.0.0", 9101)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9101", ("::1", 9101))],
)
def test_parse_listen(text, want):
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["", "abc", "1:2:x", "70000", "-1"])
def test_parse_listen_rejects(text):
    with pytest.raises(ValueError):
        parse_listen(text)


def test_port_in_use_is_one_clear_error():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        ep = HttpEndpoint(("127.0.0.1", busy.getsockname()[1]), None)
        with pytest.raises(ExporterConflict, match="address already in use") as e:
            ep.start()
        assert e.value.exit_status == 4 and isinstance(e.value, HostUnsupported)
    finally:
        busy.close()


def test_http_endpoint_serves_the_collector():
    from prometheus_client.registry import CollectorRegistry

    exp = WatchExporter(scenario_views(), "tracefs", device_labels=FixedLabels())
    exp.publish()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(exp)
    ep = HttpEndpoint(("127.0.0.1", 0), reg)
    host, port = ep.start()
    try:
        body = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10).read().decode()
    finally:
        ep.stop()
    assert value(body, "pmemtrace_lost_events_total") == 7


def test_host_lock_refuses_a_second_exporter_and_names_it():
    name = f"\0pmemtrace-test-{os.getpid()}-{threading.get_ident()}".encode()
    a, b = HostLock(name), HostLock(name)
    a.acquire()
    try:
        with pytest.raises(ExporterConflict, match=f"pid {os.getpid()}"):
            b.acquire()
    finally:
        a.release()
    b.acquire()  # released with its holder
    b.release()


def test_cli_refusals_leave_nothing_and_exit_non_zero(tmp_path):
    """Argument errors (exit 2) before anything runs; run as a user watch
    stops at its root check, so the lock/port conflicts are covered above
    and in tests/live/test_metrics_live.py."""
    import sys

    base = [sys.executable, "-m", "pmemtrace"]
    for args, status, text in (
        (["watch", "--prometheus", "99999"], 2, "port number"),
        (["watch", "--textfile", str(tmp_path / "nope")], 2, "not a directory"),
        (["diagnose", "--textfile", str(tmp_path / "nope")], 2, "not a directory"),
        (["diagnose", "--textfile", "/proc/self"], 4, "cannot write"),
        (["diagnose", "--textfile", str(tmp_path), "--json"], 2, "go without"),
        (["watch", "--metrics-comm", "x"], 2, "process names"),
    ):
        r = subprocess.run(base + args, capture_output=True, text=True, timeout=120)
        assert r.returncode == status, (args, r.returncode, r.stderr)
        assert text in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) <= 3, r.stderr
    assert os.listdir(tmp_path) == []


HANDMADE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "handmade")


def diagnose_text(tree, tmp_path):
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "pmemtrace", "diagnose", "--sysfs-root", os.path.join(HANDMADE, tree, "sys"),
         "--procfs-root", os.path.join(HANDMADE, tree, "proc"), "--textfile", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["pmemtrace-diagnose.prom"]
    return (tmp_path / "pmemtrace-diagnose.prom").read_text()


def test_diagnose_gauges_per_namespace_mount_and_device(tmp_path):
    text = diagnose_text("nfit-unaligned-data", tmp_path)
    ns = dict(namespace="namespace0.0", mode="fsdax", device="pmem0")
    assert value(text, "pmemtrace_namespace_pmd_capable", **ns) == 0
    assert value(text, "pmemtrace_namespace_data_misalignment_bytes", **ns) == 1 << 20
    assert value(text, "pmemtrace_mount_dax", mount="/mnt/pmem0", fs="xfs", device="259:0", mode="always") == 1
    k = dict(kind="namespace", subject="namespace0.0", verdict="pte", code="ns-data-unaligned")
    assert value(text, "pmemtrace_diagnose_finding", **k) == 1
    # the partition at sector 2048 rules PMDs out on its mount
    text = diagnose_text("e820-partition-2048", tmp_path)
    assert value(text, "pmemtrace_mount_pmd_capable", mount="/mnt/pmem", fs="ext4", device="259:1") == 0


def test_diagnose_gauges_per_dax_device_pass_promtool(tmp_path):
    text = diagnose_text("cxl-hmem", tmp_path)
    assert value(text, "pmemtrace_dax_device_align_bytes", device="dax0.0", mode="devdax") == 2 << 20
    assert value(text, "pmemtrace_dax_device_pmd_capable", device="dax0.0", mode="devdax") == 1
    assert value(text, "pmemtrace_dax_device_pmd_capable", device="dax1.0", mode="system-ram") == 0
    assert value(text, "pmemtrace_dax_device_pmd_capable", device="dax2.0", mode="devdax") == 0  # a range off 2 MiB
    r = subprocess.run([need_tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_diagnose_file_chunks_per_mount():
    from types import SimpleNamespace

    from pmemtrace.metrics.diagnose_exporter import Diagnosis, samples

    chunk = lambda outcome, reason, count: SimpleNamespace(outcome=outcome, reason=reason, count=count)  # noqa: E731
    st = SimpleNamespace(
        mounts=[], inv=SimpleNamespace(namespaces=[], dax_devices=[]), roots=SimpleNamespace(unreadable=[])
    )
    strips = [
        SimpleNamespace(subject="/x/a", kind="file", chunks=[chunk("pmd", None, 3)], details={}),
        SimpleNamespace(subject="/x/b", kind="file", chunks=[chunk("pmd", None, 1), chunk("pte", "extent-too-short", 2)], details={}),
    ]  # fmt: skip
    got = samples(Diagnosis(st, [], strips, 1.0, 0.1))
    assert dict(got["pmemtrace_diagnose_chunks"]) == {("", "pmd", ""): 4, ("", "pte", "extent-too-short"): 2}
    assert dict(got["pmemtrace_diagnose_files_not_pmd"]) == {("",): 1}


def test_diagnose_prometheus_serves_until_sigterm():
    import re
    import signal
    import sys
    import time

    tree = os.path.join(HANDMADE, "cxl-hmem")
    p = subprocess.Popen(
        [sys.executable, "-m", "pmemtrace", "diagnose", "--sysfs-root", os.path.join(tree, "sys"),
         "--procfs-root", os.path.join(tree, "proc"), "--prometheus", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = p.stderr.readline()
        port = int(re.search(r"metrics at http://127\.0\.0\.1:(\d+)/metrics", line).group(1))
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
        assert value(body, "pmemtrace_dax_device_pmd_capable", device="dax0.0", mode="devdax") == 1
        first = value(body, "pmemtrace_diagnose_timestamp_seconds")
        time.sleep(0.2)  # a second scrape within max_age reuses the diagnosis
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
        assert value(body, "pmemtrace_diagnose_timestamp_seconds") == first
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and "Traceback" not in err, err
    assert out == ""
