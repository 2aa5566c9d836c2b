"""The reference model against real kernels (issue 3's live checks).

Each test sets up a real namespace/filesystem in the lab guest, maps and
touches it from this process (tests/live/driver.py), records what the
kernel did (fs_dax tracepoints; kprobe events on dev_dax_huge_fault for
device-dax, which has no tracepoints), builds the case file from FIEMAP,
sysfs and the real mapping addresses, and compares with
``pmemtrace.model.explain(case)`` access by access.

A disagreement is a finding for docs/lab-findings.md (the model is fixed
by its owner, never here).
"""

import errno
import json
import os

import pytest

from pmemtrace.errors import LabError
from pmemtrace.events import decode_vm_fault
from pmemtrace.fuzz.execute import devdax_outcome
from pmemtrace.live.tracefs import RESULT_EVENTS
from pmemtrace.model import explain, namespace_layout, parse_case

from . import driver
from .driver import Mapping

MiB = 1 << 20

# fs_dax events compared one to one, with their exact VM_FAULT flags (the
# *_fault entry events carry no result)
COMPARED = RESULT_EVENTS


def _sig(events):
    out = []
    for e in events:
        if e.name not in COMPARED:
            continue
        res = e.fields.get("result")
        out.append(
            (
                e.name,
                hex(e.fields.get("address", 0)),
                decode_vm_fault(res) if res is not None and "fault_done" in e.name else "",
            )
        )
    return out


def _observed_by_access(cap, n):
    groups = cap.groups()
    return [_sig(cap.events(lines=groups.get(f"access {i}", []))) for i in range(n)]


def _run_accesses(tracefs, maps, accesses, kprobes=False):
    """Perform *accesses* (case dicts) on *maps*, one marker per access."""
    with tracefs.capture(events=("pmt",) if kprobes else ()) as cap:
        for i, a in enumerate(accesses):
            tracefs.mark(f"access {i}")
            m = maps[a["mapping"]]
            op = a["op"]
            if op == "read":
                m.read(a["offset"])
            elif op == "write":
                m.write(a["offset"])
            elif op == "madvise":
                m.madvise(a["advice"], a.get("offset", 0), a.get("length"))
            else:
                raise AssertionError(f"driver cannot do {op}")
        tracefs.mark("end")
    return cap


def _compare(case, observed, what):
    pred = explain(parse_case(case))
    rows, bad = [], False
    for r, obs in zip(pred.results, observed):
        want = _sig(r.events())
        ok = want == obs
        bad |= not ok
        rows.append(
            f"  access {r.index} {r.op:<8} model {r.outcome}/{r.reason}: {want}\n"
            f"  {'':>17} kernel: {obs}{'' if ok else '   <-- differs'}"
        )
    if bad:
        pytest.fail(
            f"{what}: model and kernel {os.uname().release} disagree\n"
            + "\n".join(rows)
            + "\ncase: "
            + json.dumps(case),
            pytrace=False,
        )
    return pred


# ---------------------------------------------------------------------------
# Namespace layout: sysfs vs pmemtrace.model.geometry.namespace_layout


LAYOUTS = [
    ("fsdax", "mem", "2M"),
    ("fsdax", "dev", "2M"),
    ("fsdax", "dev", "4K"),
    ("fsdax", "dev", "1G"),
    ("devdax", "dev", "2M"),
    ("devdax", "dev", "4K"),
    ("devdax", "dev", "1G"),
]
_SIZES = {"4K": 4096, "2M": 2 * MiB, "1G": 1 << 30}


class TestNamespaceLayoutAgainstSysfs:
    @pytest.mark.parametrize("mode,map_,align", LAYOUTS, ids=["-".join(x) for x in LAYOUTS])
    def test_layout(self, guest, mode, map_, align):
        base = "/sys/bus/nd/devices/namespace0.0"
        start = int(guest.sysfs_attr(f"{base}/resource"), 16)
        size = int(guest.sysfs_attr(f"{base}/size"))
        model = namespace_layout(size, start, mode, map_, _SIZES[align], release=os.uname().release)
        try:
            guest.namespace(mode, map_, align)
        except LabError as exc:
            assert model.error, (
                f"kernel refused {mode} map={map_} align={align} ({exc}) but the "
                f"model computes a layout: {model.to_json()}"
            )
            return
        assert not model.error, f"kernel accepted {mode} map={map_} align={align} but the model says: {model.error}"
        geo = driver.device_geometry()
        got = {
            "data_start": geo["data_start"],
            "data_size": geo["size"],
            "memmap_location": {"pmem": "device", "ram": "ram", None: "ram"}[geo["pfn_mode"]],
        }
        want = {"data_start": model.data_start, "data_size": model.data_size, "memmap_location": model.memmap_location}
        assert got == want, f"sysfs {geo} vs model {model.to_json()}"


# ---------------------------------------------------------------------------
# fsdax per-access outcomes


def _fresh(setup, name, size, written=True):
    path = os.path.join(setup["mount"], name)
    if os.path.exists(path):
        os.unlink(path)
    return driver.make_file(path, size, written)


@pytest.fixture
def xfs(guest):
    return guest.fsdax(map="mem", align="2M", fs="xfs")


def _fsdax_check(tracefs, setup, path, maps, accesses, what, map_="mem"):
    try:
        cap = _run_accesses(tracefs, maps, accesses)
        case = driver.fsdax_case(setup, path, maps, accesses, map=map_)
    finally:
        for m in maps.values():
            m.unmap()
    return _compare(case, _observed_by_access(cap, len(accesses)), what)


def _open(path):
    return os.open(path, os.O_RDWR)


class TestFsdaxAgainstTracepoints:
    def test_aligned_shared_xfs_su2m(self, tracefs, xfs):
        path = _fresh(xfs, "aligned", 16 * MiB)
        fd = _open(path)
        try:
            maps = {"m0": Mapping(fd, 16 * MiB, addr=driver.free_address(16 * MiB))}
        finally:
            os.close(fd)
        acc = [
            {"mapping": "m0", "offset": o, "op": op}
            for o, op in [
                (0, "write"),
                (2 * MiB, "read"),
                (2 * MiB, "write"),
                (4 * MiB, "read"),
                (6 * MiB, "write"),
                (8 * MiB + 4096, "read"),
            ]
        ]
        pred = _fsdax_check(tracefs, xfs, path, maps, acc, "aligned shared xfs su=2m")
        assert pred.results[0].outcome == "pmd"

    def test_address_breaks_pmd_colour(self, tracefs, xfs):
        path = _fresh(xfs, "colour-addr", 8 * MiB)
        fd = _open(path)
        try:
            addr = driver.free_address(8 * MiB, shift=4096)
            maps = {"m0": Mapping(fd, 8 * MiB, addr=addr)}
        finally:
            os.close(fd)
        acc = [{"mapping": "m0", "offset": o, "op": "read"} for o in (0, 2 * MiB, 4 * MiB)]
        _fsdax_check(tracefs, xfs, path, maps, acc, "address off PMD colour")

    def test_file_offset_breaks_pmd_colour(self, tracefs, xfs):
        path = _fresh(xfs, "colour-off", 8 * MiB)
        fd = _open(path)
        try:
            maps = {"m0": Mapping(fd, 6 * MiB, offset=4096, addr=driver.free_address(6 * MiB))}
        finally:
            os.close(fd)
        acc = [{"mapping": "m0", "offset": o, "op": "read"} for o in (0, 2 * MiB)]
        _fsdax_check(tracefs, xfs, path, maps, acc, "file offset off PMD colour")

    def test_private_write(self, tracefs, xfs):
        path = _fresh(xfs, "private", 8 * MiB)
        fd = _open(path)
        try:
            maps = {"m0": Mapping(fd, 8 * MiB, shared=False, addr=driver.free_address(8 * MiB))}
        finally:
            os.close(fd)
        acc = [
            {"mapping": "m0", "offset": 0, "op": "read"},
            {"mapping": "m0", "offset": 2 * MiB, "op": "write"},
            {"mapping": "m0", "offset": 0, "op": "write"},
        ]
        _fsdax_check(tracefs, xfs, path, maps, acc, "private write")

    def test_mapping_end_cuts_a_pmd(self, tracefs, xfs):
        path = _fresh(xfs, "vma-end", 8 * MiB)
        fd = _open(path)
        try:
            maps = {"m0": Mapping(fd, 3 * MiB, addr=driver.free_address(4 * MiB))}
        finally:
            os.close(fd)
        acc = [{"mapping": "m0", "offset": 0, "op": "read"}, {"mapping": "m0", "offset": 2 * MiB, "op": "read"}]
        pred = _fsdax_check(tracefs, xfs, path, maps, acc, "mapping end cuts a PMD")
        assert pred.results[1].outcome == "pte"

    def test_file_size_ends_inside_a_pmd(self, tracefs, xfs):
        path = _fresh(xfs, "eof", 3 * MiB)
        fd = _open(path)
        try:
            maps = {"m0": Mapping(fd, 4 * MiB, addr=driver.free_address(4 * MiB))}
        finally:
            os.close(fd)
        # never touch beyond 3M: that is SIGBUS for this very process
        acc = [
            {"mapping": "m0", "offset": 0, "op": "read"},
            {"mapping": "m0", "offset": 2 * MiB, "op": "read"},
            {"mapping": "m0", "offset": 3 * MiB - 4096, "op": "write"},
        ]
        _fsdax_check(tracefs, xfs, path, maps, acc, "file size ends inside a PMD")

    def test_madv_nohugepage(self, tracefs, xfs):
        path = _fresh(xfs, "nohuge", 4 * MiB)
        fd = _open(path)
        try:
            maps = {"m0": Mapping(fd, 4 * MiB, addr=driver.free_address(4 * MiB))}
        finally:
            os.close(fd)
        acc = [
            {"mapping": "m0", "op": "madvise", "advice": "nohugepage", "offset": 0, "length": 4 * MiB},
            {"mapping": "m0", "offset": 0, "op": "read"},
            {"mapping": "m0", "offset": 2 * MiB, "op": "write"},
        ]
        _fsdax_check(tracefs, xfs, path, maps, acc, "MADV_NOHUGEPAGE")

    def test_4k_entry_before_2m_access(self, tracefs, xfs):
        path = _fresh(xfs, "pte-first", 4 * MiB)
        fd = _open(path)
        try:
            maps = {
                "m0": Mapping(fd, 4 * MiB, addr=driver.free_address(4 * MiB)),
                "m1": Mapping(fd, 4 * MiB, addr=driver.free_address(4 * MiB)),
            }
        finally:
            os.close(fd)
        acc = [
            {"mapping": "m0", "op": "madvise", "advice": "nohugepage", "offset": 0, "length": 4 * MiB},
            {"mapping": "m0", "offset": 0, "op": "read"},
            {"mapping": "m1", "offset": 0, "op": "read"},
            {"mapping": "m1", "offset": 2 * MiB, "op": "read"},
        ]
        _fsdax_check(tracefs, xfs, path, maps, acc, "4K entry before the 2M access")

    def test_ext4_default_mkfs(self, tracefs, guest):
        setup = guest.fsdax(map="mem", align="2M", fs="ext4", mkfs_options="")
        path = _fresh(setup, "ext4-default", 16 * MiB)
        fd = _open(path)
        try:
            maps = {"m0": Mapping(fd, 16 * MiB, addr=driver.free_address(16 * MiB))}
        finally:
            os.close(fd)
        acc = [{"mapping": "m0", "offset": o, "op": "write"} for o in range(0, 16 * MiB, 2 * MiB)]
        _fsdax_check(tracefs, setup, path, maps, acc, "ext4 default mkfs")


# ---------------------------------------------------------------------------
# device-dax: kprobe events on dev_dax_huge_fault (no tracepoints there)


def _devdax_outcomes(cap, n):
    """Per access the fault size our kprobes saw succeed (the one decoder:
    pmemtrace.fuzz.execute.devdax_outcome)."""
    groups = cap.groups()
    return [devdax_outcome(groups.get(f"access {i}", [])) for i in range(n)]


# dev_dax_fault() (the 4 KiB .fault handler) calls dev_dax_huge_fault(vmf, 0);
# probe both in case the compiler inlined the call.
DEVDAX_KPROBES = {
    "pmt_ddhf": "p dev_dax_huge_fault size=%si:u32",
    "pmt_ddhf_ret": "r dev_dax_huge_fault ret=$retval:x32",
    "pmt_ddf": "p dev_dax_fault",
    "pmt_ddf_ret": "r dev_dax_fault ret=$retval:x32",
}


class TestDevdaxAgainstKprobes:
    @pytest.mark.parametrize("align,expect", [("2M", "pmd"), ("4K", "pte")])
    def test_devdax_align(self, tracefs, guest, align, expect):
        dev = guest.devdax(align)
        fd = os.open(dev, os.O_RDWR)
        try:
            maps = {"m0": Mapping(fd, 8 * MiB, addr=driver.free_address(8 * MiB))}
        finally:
            os.close(fd)
        acc = [
            {"mapping": "m0", "offset": 0, "op": "read"},
            {"mapping": "m0", "offset": 2 * MiB, "op": "write"},
            {"mapping": "m0", "offset": 2 * MiB + 8192, "op": "read"},
        ]
        try:
            with tracefs.kprobes(DEVDAX_KPROBES):
                cap = _run_accesses(tracefs, maps, acc, kprobes=True)
            case = driver.devdax_case(align, maps, acc)
        finally:
            maps["m0"].unmap()
        observed = _devdax_outcomes(cap, len(acc))
        pred = explain(parse_case(case))
        model = [r.outcome for r in pred.results]
        assert observed == model, (
            f"devdax align {align} on {os.uname().release}: kernel "
            f"{observed} vs model {model}\ncase: {json.dumps(case)}"
        )
        assert observed[0] == expect

    def test_private_devdax_mmap_is_einval(self, guest):
        dev = guest.devdax("2M")
        fd = os.open(dev, os.O_RDWR)
        try:
            with pytest.raises(OSError) as exc:
                Mapping(fd, 2 * MiB, shared=False, addr=driver.free_address(2 * MiB))
        finally:
            os.close(fd)
        assert exc.value.errno == errno.EINVAL

        class _Want:  # the mapping the model is asked about
            addr, length, offset, shared = driver.free_address(2 * MiB), 2 * MiB, 0, False

        case = driver.devdax_case("2M", {"m0": _Want}, [{"mapping": "m0", "offset": 0, "op": "read"}])
        r = explain(parse_case(case)).results[0]
        assert (r.outcome, r.reason) == ("error", "devdax-private"), r.to_json()
