"""``pmemtrace replay trace.dat``: trace-cmd's binary file read directly.

The fixtures (fixtures/trace-dat/, README there) are real recordings made
in the lab by Debian's trace-cmd (``trace-cmd record -e fs_dax``: version 7,
zstd) with the ``trace-cmd report`` text of the same file; replaying either
must print the same."""

import glob
import json
import os
import re
import struct

import pytest

from pmemtrace.cli import main
from pmemtrace.live.parse import ParseStats, iter_trace_records
from pmemtrace.live.tracedat import open_dat, read_dat_records

FIX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "trace-dat")
DATS = sorted(glob.glob(os.path.join(FIX, "*.dat")))


def report_of(dat):
    base = re.sub(r"(\.v6)?\.dat$", "", os.path.basename(dat))  # 7.2-fsdax.v6.dat -> the 7.2-fsdax report
    return os.path.join(FIX, base + ".report.txt")


def replay_out(capsys, *argv):
    rc = main(["replay", *argv])
    c = capsys.readouterr()
    return rc, c.out, c.err


def test_fixtures_exist():
    assert len(DATS) >= 2 and all(os.path.exists(report_of(d)) for d in DATS)


def shared_only_pids(dat):
    """The processes whose mappings are all shared: trace-cmd report prints
    those faithfully (see :func:`misprints`)."""
    _h, recs = read_dat_records(dat, ParseStats())
    private, pids = set(), set()
    for r in recs:
        pids.add(r[3])
        if not r[1].get("vm_flags", 8):
            private.add(r[3])
    return sorted(pids - private)


@pytest.mark.parametrize("dat", DATS, ids=os.path.basename)
def test_dat_replays_like_its_report_text(dat, capsys):
    txt = report_of(dat)
    pids = shared_only_pids(dat)
    assert pids
    for pid in pids:
        for extra in ([], ["--no-reasons"], ["--wide"]):
            rc1, out1, _ = replay_out(capsys, dat, "--kernel", "6.12", "--pid", str(pid), *extra)
            rc2, out2, _ = replay_out(capsys, txt, "--kernel", "6.12", "--pid", str(pid), *extra)
            assert rc1 == rc2 == 0
            assert out1 == out2 and "PMD" in out1
        rc1, out1, _ = replay_out(capsys, dat, "--json", "--pid", str(pid))
        kernel = json.loads(out1)["header"]["kernel"]
        rc2, out2, _ = replay_out(capsys, txt, "--json", "--kernel", kernel, "--pid", str(pid))
        d1, d2 = json.loads(out1), json.loads(out2)
        assert d1.pop("input")["format"] == "trace-cmd.dat" and d2.pop("input")["format"] == "trace"
        assert d1.pop("header")["trace_dat"] in (6, 7)
        assert d1 == d2 and d1["rows"]


def misprints(g, w):
    """What Debian's trace-cmd report (3.1.6, libtraceevent) prints wrong
    in the fs_dax events, so that its text differs from the .dat:

    * on 7.2, whose print fmt tests ``vm_flags & (1UL << VMA_SHARED_BIT)``
      (an enum libtraceevent cannot evaluate: 0, so it tests VM_READ),
      every readable mapping shows "shared", private ones too (6.1's
      ``vm_flags & 0x00000008`` prints right);
    * it cannot evaluate the VM_FAULT_* names of the result table, and
      prints a zero result as the table's first name, OOM.  The entry
      events are always traced with result 0 (fs/dax.c
      dax_iomap_pmd_fault(): trace_dax_pmd_fault(..., 0);
      dax_iomap_pte_fault(): ret = 0 before trace_dax_pte_fault()).

    Returns the set of misprints that explain every difference of record
    *g* (from the .dat) and *w* (from the text), or None if some other
    difference remains."""
    fixed = dict(g[1])
    found = set()
    if fixed.get("vm_flags") == 0 and w[1].get("vm_flags") == 8:
        fixed["vm_flags"] = 8
        found.add("private shown as shared")
    if g[0] in ("dax_pmd_fault", "dax_pte_fault") and fixed["result"] == 0 and w[1]["result"] == 1:
        fixed["result"] = 1
        found.add("zero result shown as OOM")
    return found if (fixed == w[1] and g[0] == w[0] and g[2:] == w[2:]) else None


@pytest.mark.parametrize("dat", DATS, ids=os.path.basename)
def test_records_equal_the_text_parsers(dat):
    """Field for field (and key order), timestamp, pid, comm and CPU; the
    differences are trace-cmd report's misprints (:func:`misprints`)."""
    with open(report_of(dat)) as f:
        want = list(iter_trace_records(f))
    _h, got = read_dat_records(dat, ParseStats())
    got = list(got)
    assert len(got) == len(want) > 100
    zero_results = private = 0
    for g, w in zip(got, want):
        assert list(g[1]) == list(w[1])
        if g != w:
            found = misprints(g, w)
            assert found, (g, w)
            zero_results += "zero result shown as OOM" in found
            private += "private shown as shared" in found
    assert zero_results == sum(1 for g in got if g[0] in ("dax_pmd_fault", "dax_pte_fault"))
    privates = sum(1 for g in got if g[1].get("vm_flags") == 0)
    d, mm = open_dat(dat)
    mm.close()
    tests_the_enum = any("VMA_SHARED_BIT" in f.print_fmt for f in d.formats.values())
    assert privates and private == (privates if tests_the_enum else 0)


def test_events_print_the_kernels_values(capsys):
    """--events of a .dat shows the entry events' zero result as nothing
    (no flag), where the report text's misprint reads OOM."""
    dat = os.path.join(FIX, "7.2-fsdax.dat")
    _rc, out, _ = replay_out(capsys, dat, "--events", "--no-reasons")
    _rc, out_txt, _ = replay_out(capsys, report_of(dat), "--events", "--no-reasons")
    entry = [x for x in out.splitlines() if " dax_pmd_fault: " in x]
    assert entry and not any(x.endswith(" OOM") for x in entry)
    assert all(x.endswith(" OOM") for x in out_txt.splitlines() if " dax_pmd_fault: " in x)


def test_header_names_the_traced_kernel():
    dat, mm = open_dat(os.path.join(FIX, "7.2-fsdax.dat"))
    mm.close()
    assert (dat.version, dat.compression) == (7, "zstd")
    assert dat.kernel and dat.kernel.startswith("7.2.")
    assert {f.name for f in dat.formats.values() if f.system == "fs_dax"} >= {"dax_pmd_fault", "dax_pte_fault_done"}


def one_line_error(capsys, argv, status):
    rc = main(["replay", *argv])
    err = capsys.readouterr().err
    assert rc == status, err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("dat", DATS, ids=os.path.basename)
def test_truncated_dat_is_exit_3(dat, tmp_path, capsys):
    data = open(dat, "rb").read()
    d, mm = open_dat(dat)
    mm.close()
    inside_cpu_data = [c.offset + c.size // 2 for c in d.cpus if c.size]  # mid-page or mid-zstd-chunk
    for cut in (20, 200, 3000, *inside_cpu_data):
        p = tmp_path / f"cut{cut}.dat"
        p.write_bytes(data[:cut])
        err = one_line_error(capsys, [str(p)], 3)
        assert "trace-cmd .dat" in err and ("truncated" in err or "corrupt" in err)


def test_corrupt_dat_is_exit_3(tmp_path, capsys):
    src = os.path.join(FIX, "7.2-fsdax.v6.dat")
    dat, mm = open_dat(src)
    mm.close()
    data = bytearray(open(src, "rb").read())
    c = next(c for c in dat.cpus if c.size)
    struct.pack_into("<Q", data, c.offset + 8, 5000)  # a page commit beyond the page
    p = tmp_path / "commit.dat"
    p.write_bytes(bytes(data))
    assert "corrupt" in one_line_error(capsys, [str(p)], 3)
    zdata = bytearray(open(os.path.join(FIX, "7.2-fsdax.dat"), "rb").read())
    d7, mm = open_dat(os.path.join(FIX, "7.2-fsdax.dat"))
    mm.close()
    c = next(c for c in d7.cpus if c.size)
    zdata[c.offset + 20 : c.offset + 40] = b"\xff" * 20  # inside the zstd frame
    p = tmp_path / "zstd.dat"
    p.write_bytes(bytes(zdata))
    assert "decompress" in one_line_error(capsys, [str(p)], 3)


def test_unsupported_dat_is_a_usage_error(tmp_path, capsys):
    data = open(os.path.join(FIX, "7.2-fsdax.dat"), "rb").read()
    p = tmp_path / "v8.dat"
    p.write_bytes(data.replace(b"tracing7\0", b"tracing8\0", 1))
    assert "versions 6 and 7" in one_line_error(capsys, [str(p)], 2)
    p = tmp_path / "lz4.dat"
    p.write_bytes(data.replace(b"zstd\0", b"lz4x\0", 1))
    assert "'lz4x'" in one_line_error(capsys, [str(p)], 2)


def test_dat_events_and_pid_filter(capsys):
    dat = os.path.join(FIX, "7.2-fsdax.dat")
    rc, out, _ = replay_out(capsys, dat, "--json")
    pid = json.loads(out)["rows"][0]["pid"]
    rc, out, _ = replay_out(capsys, dat, "--json", "--pid", str(pid))
    assert rc == 0 and {r["pid"] for r in json.loads(out)["rows"]} == {pid}


def test_lost_events_in_pages_are_counted(tmp_path, capsys):
    """A page whose commit word says events were lost before it: with the
    count stored after its data (added to lost), or without (said apart)."""
    src = os.path.join(FIX, "7.2-fsdax.v6.dat")
    d, mm = open_dat(src)
    mm.close()
    c = max(d.cpus, key=lambda c: c.size)
    data = bytearray(open(src, "rb").read())
    first, second = c.offset, c.offset + d.page_size
    size = struct.unpack_from("<Q", data, first + 8)[0]
    struct.pack_into("<Q", data, first + 8, size | 1 << 31 | 1 << 30)
    struct.pack_into("<Q", data, first + 16 + size, 1234)  # the count after the data
    size2 = struct.unpack_from("<Q", data, second + 8)[0]
    struct.pack_into("<Q", data, second + 8, size2 | 1 << 31)  # lost, count unknown
    p = tmp_path / "lost.dat"
    p.write_bytes(bytes(data))
    assert main(["replay", str(p), "--json", "--no-reasons"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["totals"]["lost"] == 1234
    assert out["input"]["lost"] == 1234 and out["input"]["lost_uncounted_pages"] == 1
    assert main(["replay", str(p), "--no-reasons"]) == 0
    assert "before 1 ring-buffer pages without counting" in capsys.readouterr().err
