"""Replay parsers fed kernel text (TestTraceTextMocks) and the model's own
events rendered with the kernel's print fmt (round trip), plus the JSONL
recorder and the per-mapping views."""

import glob
import io
import json
import os

import pytest

from pmemtrace.cli import main
from pmemtrace.errors import DataCorruption
from pmemtrace.events import FAULT_FLAG, VM_FAULT, Event, format_event
from pmemtrace.live.attribute import Attributor, FileInfo
from pmemtrace.live.parse import ParseStats, parse_trace_text, read_events, sniff_format
from pmemtrace.live.record import Recorder, make_header
from pmemtrace.live.views import Aggregator
from pmemtrace.model import explain, load_case

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "pmemtrace", "model", "examples")

# Lines in the shapes the kernel prints.  fs_dax print fmt: include/trace/events/fs_dax.h;
# line prefix: kernel/trace/trace_output.c trace_print_context() (default) and
# trace_print_lat_context (flags column "d..1." 5 chars since v5.18, 4 before).
TRACE_61 = """\
# tracer: nop
#
# entries-in-buffer/entries-written: 5/5   #P:2
#
           mmap1-412     [001] .....    61.104514: dax_pmd_fault: dev 259:0 ino 0x43 shared WRITE|ALLOW_RETRY|KILLABLE|USER|INTERRUPTIBLE address 0x7f2000000000 vm_start 0x7f2000000000 vm_end 0x7f2000400000 pgoff 0x0 max_pgoff 0x20000 
           mmap1-412     [001] .....    61.104600: dax_pmd_fault_done: dev 259:0 ino 0x43 shared WRITE|ALLOW_RETRY|KILLABLE|USER|INTERRUPTIBLE address 0x7f2000000000 vm_start 0x7f2000000000 vm_end 0x7f2000400000 pgoff 0x0 max_pgoff 0x20000 NOPAGE
           mmap1-412     [001] .....    61.104700: dax_pmd_fault_done: dev 259:0 ino 0x43 private WRITE|ALLOW_RETRY|KILLABLE|USER address 0x7f2000201000 vm_start 0x7f2000000000 vm_end 0x7f2000400000 pgoff 0x201 max_pgoff 0x20000 FALLBACK
           mmap1-412     [001] .....    61.104800: dax_pte_fault_done: dev 259:0 ino 0x43 private WRITE|ALLOW_RETRY|KILLABLE|USER address 0x7f2000201000 pgoff 0x201 MAJOR|WRITE
           mmap1-412     [000] .....    61.104900: dax_pmd_load_hole: dev 259:0 ino 0x43 shared address 0x7f2000200000 zero_page 0000000012345678 radix_entry 0x4
"""
TRACE_618 = """\
 stress-1022 (   1020) [000] d..1.  7.5: dax_pmd_fault_done: dev 259:1 ino 0xc shared ALLOW_RETRY|KILLABLE|USER|INTERRUPTIBLE|VMA_LOCK address 0x7f0000000000 vm_start 0x7f0000000000 vm_end 0x7f0001000000 pgoff 0x0 max_pgoff 0x1000 NOPAGE|COMPLETED
 stress-1022 (   1020) [000] d..1.  7.6: dax_pmd_load_hole_fallback: dev 259:1 ino 0xc shared address 0x7f0000200000 zero_folio (____ptrval____) radix_entry 0x0
"""
TRACE_CMD = """\
cpus=2
       <...>-530   [000]   101.000001: dax_pte_fault:        dev 259:0 ino 0x43 shared  address 0x7f2000000000 pgoff 0x0 
       <...>-530   [000]   101.000002: dax_pte_fault_done:   dev 259:0 ino 0x43 shared  address 0x7f2000000000 pgoff 0x0 NOPAGE
       <...>-530   [000]   101.000003: sched_switch:         prev_comm=a prev_pid=1
CPU:1 [LOST 17 EVENTS]
"""


def parse(text):
    st = ParseStats()
    evs = list(parse_trace_text(io.StringIO(text), st))
    return evs, st


class TestTraceTextMocks:
    def test_61_fields(self):
        evs, st = parse(TRACE_61)
        assert st.events == 5 and st.bad == 0 and st.skipped == 4
        e = evs[1]
        assert e.name == "dax_pmd_fault_done" and e.pid == 412 and e.comm == "mmap1" and e.cpu == 1
        assert e.fields["dev"] == (259 << 20) and e.fields["ino"] == 0x43
        assert e.fields["vm_end"] == 0x7F2000400000 and e.fields["max_pgoff"] == 0x20000
        assert e.fields["result"] == VM_FAULT["NOPAGE"]
        assert e.fields["flags"] == 0x255  # WRITE|ALLOW_RETRY|KILLABLE|USER|INTERRUPTIBLE
        assert evs[0].fields["result"] == 0  # entry event: empty result text
        # 6.1's VM_FAULT_WRITE (0x8) is decoded
        assert evs[3].fields["result"] == VM_FAULT["MAJOR"] | 0x8
        assert evs[3].fields["vm_flags"] == 0  # private
        # 6.1 zero_page
        assert evs[4].fields["zero_folio"] == 0x12345678 and evs[4].fields["radix_entry"] == 4

    def test_618_vma_lock_completed_tgid_column(self):
        evs, st = parse(TRACE_618)
        assert st.events == 2
        assert evs[0].fields["flags"] & FAULT_FLAG["VMA_LOCK"]
        assert evs[0].fields["result"] == VM_FAULT["NOPAGE"] | VM_FAULT["COMPLETED"]
        assert evs[0].fields["dev"] == (259 << 20) | 1 and evs[0].pid == 1022
        assert evs[1].name == "dax_pmd_load_hole_fallback" and evs[1].fields["zero_folio"] == 1

    def test_trace_cmd_report_and_lost(self):
        evs, st = parse(TRACE_CMD)
        assert [e.name for e in evs] == ["dax_pte_fault", "dax_pte_fault_done"]
        assert evs[0].comm == "<...>" and evs[0].fields["flags"] == 0
        assert st.lost == 17 and st.skipped == 2  # cpus= line, sched_switch

    def test_bad_fs_dax_line_counted_or_strict(self):
        text = "  a-1 [000] .... 1.0: dax_pmd_fault_done: dev 259:0 garbled\n"
        evs, st = parse(text)
        assert evs == [] and st.bad == 1 and st.first_bad[0] == 1
        with pytest.raises(DataCorruption):
            list(parse_trace_text(io.StringIO(text), strict=True))

    def test_sniff(self):
        assert sniff_format(TRACE_61.splitlines(True)) == "trace"
        assert sniff_format(['{"pmemtrace_record": 1}\n']) == "jsonl"
        assert sniff_format(["hello world\n"]) is None


def _fsdax_examples():
    out = []
    for p in sorted(glob.glob(os.path.join(EXAMPLES, "*.json"))):
        c = load_case(p)
        if c.device.mode == "fsdax":
            out.append(p)
    return out


def _render(events, pid=7, comm="w"):
    lines = []
    for i, e in enumerate(events):
        lines.append(f"{comm}-{pid} [000] ..... {100 + i / 1e6:.6f}: {e.name}: {format_event(e.name, e.fields)}\n")
    return "".join(lines)


@pytest.mark.parametrize("path", _fsdax_examples(), ids=lambda p: os.path.basename(p)[:-5])
def test_roundtrip_model_events_through_print_fmt(path):
    """Every event the model emits, printed with the kernel's fmt, parses back."""
    evs = list(explain(load_case(path)).events())
    got, st = parse(_render(evs))
    assert st.bad == 0 and len(got) == len(evs)
    for a, b in zip(evs, got):
        assert a.name == b.name
        for k, v in a.fields.items():
            if k == "vm_flags":
                assert b.fields[k] == v & 0x8  # the text shows only shared/private
            elif k in ("zero_folio", "zero_page"):
                continue  # %p is hashed in kernel output
            else:
                assert b.fields[k] == v, k


def _case_json(name):
    with open(os.path.join(EXAMPLES, name + ".json")) as f:
        return json.load(f)


@pytest.mark.parametrize(
    "name,reason",
    [
        ("pmd-colour-mismatch", "pmd-colour-mismatch"),
        ("private-write", "private-write"),
        ("vma-start", "vma-start"),
        ("vma-end", "vma-end"),
        ("beyond-eof", "beyond-eof"),
    ],
)
def test_reason_from_trace_fields_alone(name, reason):
    """Reasons decidable from tracepoint fields come out of a text trace."""
    c = load_case(os.path.join(EXAMPLES, name + ".json"))
    evs, _ = parse(_render(explain(c).events()))
    agg = Aggregator(Attributor(release=c.kernel))
    for e in evs:
        agg.add(e)
    t = agg.totals()
    assert set(t["fallback_reasons"]) == {reason}
    assert t["fallback"] == sum(
        1 for e in evs if e.name == "dax_pmd_fault_done" and e.fields["result"] & VM_FAULT["FALLBACK"]
    )


@pytest.mark.parametrize(
    "name,reason",
    [
        ("extent-too-short", "extent-too-short"),
        ("pfn-unaligned", "pfn-unaligned"),
        ("pfn-no-devmap", "pfn-no-devmap"),
        ("pte-entry-present", "pte-entry-present"),
    ],
)
def test_reason_needs_extents_else_unexplained(name, reason):
    """Without FIEMAP/sysfs the row says 'unexplained' and keeps evidence; with them, the reason."""
    c = load_case(os.path.join(EXAMPLES, name + ".json"))
    d = _case_json(name)
    evs = list(explain(c).events())
    for e in evs:
        e.pid = 1
    info = FileInfo(extents=d["file"]["extents"], size=c.file.size, fs=d["file"].get("fs"), device=d["device"])
    with_info = Aggregator(Attributor(release=c.kernel, file_info=lambda dev, ino: info))
    for e in evs:
        with_info.add(e)
    assert set(with_info.totals()["fallback_reasons"]) == {reason}
    if reason == "pte-entry-present":
        return  # decidable from the entry state alone: checked above
    blind = Aggregator(Attributor(release=c.kernel))
    for e in evs:
        blind.add(e)
    t = blind.totals()
    assert set(t["fallback_reasons"]) == {"unexplained"}
    row = next(r for r in blind.rows.values() if r.evidence)
    assert row.evidence[0]["model_outcome"] == "pmd"
    assert any("extents" in a for a in row.evidence[0]["assumed"])


def test_views_count_dax_pmd_example():
    c = load_case(os.path.join(EXAMPLES, "dax-pmd.json"))
    evs, _ = parse(_render(explain(c).events()))
    agg = Aggregator(Attributor(release=c.kernel))
    for e in evs:
        agg.add(e)
    t = agg.totals()
    assert t["pmd"] == 10 and t["fallback"] == 0 and t["pte"] == 0
    text = agg.render()
    assert "total: 10 PMD" in text and max(len(ln) for ln in text.splitlines()) <= 80


def test_pte_rows_join_known_vma():
    evs, _ = parse(TRACE_61)
    agg = Aggregator()
    for e in evs:
        agg.add(e)
    assert len(agg.rows) == 1  # PTE and hole events joined the PMD event's VMA row
    r = next(iter(agg.rows.values()))
    assert (r.pmd, r.fallback, r.pte, r.huge_zero) == (1, 1, 1, 1)
    assert r.reasons == {"unattributed": 1}


def test_recorder_roundtrip(tmp_path):
    path = str(tmp_path / "rec.jsonl")
    rec = Recorder(path, make_header("tracefs", probes=[{"point": "pmd_fault", "winner": "fs_dax:dax_pmd_fault"}]))
    evs, _ = parse(TRACE_61)
    for e in evs:
        rec.event(e)
    rec.lost_events(3)
    rec.flush()
    assert '"type":"end"' not in open(path).read()  # no end line until closed: incomplete
    assert rec.close() == path and not os.path.exists(path + ".part")
    st = ParseStats()
    fmt, st, it = read_events(path, st)
    got = list(it)
    assert fmt == "jsonl" and st.header["backend"] == "tracefs" and st.lost == 3
    assert [(e.name, e.fields, e.pid) for e in got] == [(e.name, e.fields, e.pid) for e in evs]


def test_cli_replay_json(tmp_path, capsys):
    p = tmp_path / "t.txt"
    p.write_text(TRACE_61)
    assert main(["replay", str(p), "--json", "--kernel", "6.1"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["totals"]["pmd"] == 1 and d["totals"]["fallback"] == 1
    assert d["totals"]["fallback_reasons"] == {"private-write": 1}
    assert d["input"]["format"] == "trace" and d["input"]["events"] == 5


def test_cli_replay_errors(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    p = tmp_path / "junk.txt"
    p.write_text("hello\nworld\n")
    assert main(["replay", str(p)]) == 2
    assert "not a pmemtrace recording" in capsys.readouterr().err


def test_bcc_probe_hits_join_the_fault_row():
    """bcc order: dax_pmd_fault, insert probe (VMA, no dev/ino), dax_pmd_fault_done."""
    from pmemtrace.live.decode import decode, encode

    base = dict(
        dev=259 << 20,
        ino=5,
        vm_start=0x7F0000000000,
        vm_end=0x7F0000400000,
        vm_flags=0xFB,
        pgoff=0,
        max_pgoff=0x400,
        flags=0x255,
    )
    agg = Aggregator()
    for k in range(2):
        addr = base["vm_start"] + k * (2 << 20)
        seq = [
            Event("dax_pmd_fault", dict(base, address=addr, result=0), pid=9, comm="w", ts=1.0),
            Event(
                "insert_pmd",
                dict(
                    address=addr,
                    vm_start=base["vm_start"],
                    vm_end=base["vm_end"],
                    vm_flags=0xFB,
                    pfn=0x200,
                    write=1,
                    order=9,
                ),
                pid=9,
                comm="w",
                ts=1.0,
            ),
            Event("dax_pmd_fault_done", dict(base, address=addr, result=0x100), pid=9, comm="w", ts=1.0),
        ]
        for e in seq:
            agg.add(decode(encode(e)))
    assert len(agg.rows) == 1
    r = next(iter(agg.rows.values()))
    assert (r.pmd, r.insert_pmd) == (2, 2)


def test_watch_buffer_and_start_event_options():
    """--buffer-mb sizes the kernel buffer (bcc ring buffers are a power of
    two pages); without --events/--record the PTE fault-start tracepoint is
    left out (counts come from the done events), halving a 4 KiB-fault burst."""
    from pmemtrace.live.bcc_backend import BccBackend
    from pmemtrace.live.session import START_EVENTS, ringbuf_pages

    assert ringbuf_pages(64) == 16384 and ringbuf_pages(48) == 8192 and ringbuf_pages(1) == 256
    b = BccBackend(skip=START_EVENTS)
    b.tracepoints = {"dax_pte_fault", "dax_pte_fault_done", "dax_pmd_fault", "dax_pmd_fault_done"}
    from pmemtrace.live.probes import resolve

    b.resolved = resolve(set(), b.tracepoints)
    flags = b.cflags()
    assert "-DPMT_TP_dax_pte_fault_done=1" in flags and "-DPMT_TP_dax_pmd_fault=1" in flags
    assert "-DPMT_TP_dax_pte_fault=1" not in flags
    b.skip = set()
    assert "-DPMT_TP_dax_pte_fault=1" in b.cflags()


def test_counting_with_raw_tracepoints_leaves_the_pmd_fault_start_out():
    """With raw tracepoints the counting session compiles no dax_pmd_fault
    program (its done event's program counts it, the insert keys itself):
    --list-probes says so; with plain tracepoints (no raw ones, or every
    event wanted) the start is attached as before."""
    from pmemtrace.live.bcc_backend import BccBackend
    from pmemtrace.live.probes import render, resolve

    b = BccBackend(aggregate=True)
    b.tracepoints = {"dax_pmd_fault", "dax_pmd_fault_done", "dax_pmd_load_hole", "dax_pte_fault_done"}
    b.resolved = resolve(set(), b.tracepoints, raw_tracepoints=True)
    flags = b.cflags()
    assert "-DPMT_RAW_dax_pmd_fault_done=1" in flags
    assert not [f for f in flags if f.endswith("_dax_pmd_fault=1")], flags
    line = next(x for x in render(b.resolved).splitlines() if x.startswith("dax_pmd_fault "))
    assert "counted" in line and "not attached: counted by dax_pmd_fault_done" in line
    b.resolved = resolve(set(), b.tracepoints)
    assert "-DPMT_TP_dax_pmd_fault=1" in b.cflags()


def test_watch_rejects_zero_buffer(capsys):
    from pmemtrace.cli import main

    assert main(["watch", "--buffer-mb", "0"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("buffer-mb" in err or "root" in err)


def test_counting_uses_tp_btf_where_btf_types_the_event_and_falls_back_when_refused(monkeypatch):
    """Where the kernel's BTF has btf_trace_<event>, the counting session's
    done events are tp_btf programs (-DPMT_BTF_: plain loads, no
    bpf_probe_read_kernel) and --list-probes says tp_btf; a kernel whose
    verifier refuses them gets raw tracepoints, and the table says why."""
    from pmemtrace.live import bcc_backend, bpfsys
    from pmemtrace.live.probes import render

    tps = {"dax_pmd_fault", "dax_pmd_fault_done", "dax_pmd_load_hole", "dax_pte_fault_done"}
    fns = {"bpf_get_raw_tracepoint": None}
    offsets = dict.fromkeys(set(bcc_backend.BTF_OFFSETS.values()), 8)
    monkeypatch.setattr(bcc_backend, "tp_btf_events", lambda events: set(events) - {"dax_pmd_load_hole"})
    plan = {r.point.name: r.mechanism for r in bcc_backend.attach_plan(fns, tps, True, offsets)}
    assert plan["dax_pmd_fault_done"] == plan["dax_pte_fault_done"] == "tp_btf"
    assert plan["dax_pmd_load_hole"] == "raw_tracepoint" and plan["dax_pmd_fault"] == "counted"
    # every event (--events/--record): each event BTF types is tp_btf too, the start included
    every = {r.point.name: r.mechanism for r in bcc_backend.attach_plan(fns, tps, False, offsets) if r.winner}
    assert every == {
        "dax_pmd_fault": "tp_btf",
        "dax_pmd_fault_done": "tp_btf",
        "dax_pte_fault_done": "tp_btf",
        "dax_pmd_load_hole": "tracepoint",
    }
    monkeypatch.setattr(bcc_backend, "hole_field", lambda root: "zero_folio")
    b = bcc_backend.BccBackend(aggregate=False)
    b.tracepoints, b.resolved = tps, bcc_backend.attach_plan(fns, tps, False, offsets)
    b.root = "/tracefs"  # hole_field (patched) reads it: a host without tracefs mounted has none
    assert "-DPMT_BTF_dax_pmd_fault=1" in b.cflags() and "-DPMT_TP_dax_pmd_load_hole=1" in b.cflags()
    # without the offsets the programs read: tracepoints
    assert {r.mechanism for r in bcc_backend.attach_plan(fns, tps, False, {}) if r.winner} == {"tracepoint"}

    b = bcc_backend.BccBackend(aggregate=True)
    b.functions, b.tracepoints, b.offsets, b.root = fns, tps, offsets, "/tracefs"
    b.resolved = bcc_backend.attach_plan(fns, tps, True, offsets)
    flags = b.cflags()
    assert "-DPMT_BTF_dax_pmd_fault_done=1" in flags and "-DPMT_RAW_dax_pmd_load_hole=1" in flags
    assert "-DPMT_RAW_dax_pmd_fault_done=1" not in flags

    tried = []

    def load_or_compile():
        mechs = {r.point.name: r.mechanism for r in b.resolved}
        tried.append(mechs["dax_pmd_fault_done"])
        if mechs["dax_pmd_fault_done"] == "tp_btf":
            raise bpfsys.BpfError(22, "loading tp_btf dax_pmd_fault_done: Invalid argument: R1 invalid mem access")
        b.loaded = None

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(b, "_load_or_compile", load_or_compile)
    monkeypatch.setattr(bcc_backend, "RingReader", lambda *a: None)
    monkeypatch.setattr(b, "_bcc_maps", lambda: {"events": 99})
    b.start()
    assert tried == ["tp_btf", "raw_tracepoint"]
    assert "-DPMT_RAW_dax_pmd_fault_done=1" in b.cflags()
    line = next(x for x in render(b.resolved).splitlines() if x.startswith("dax_pmd_fault_done "))
    assert "raw_tracepoint" in line and "tp_btf refused" in line and "invalid mem access" in line
    # dax_pmd_load_hole was a raw tracepoint before the refusal (no BTF here): not labelled with it
    line = next(x for x in render(b.resolved).splitlines() if x.startswith("dax_pmd_load_hole "))
    assert "raw_tracepoint" in line and "tp_btf refused" not in line
    assert "invalid mem access" in b.tp_btf_refused
