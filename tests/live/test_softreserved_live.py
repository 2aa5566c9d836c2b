"""Soft-reserved device-dax: a lab guest booted with ``--soft-reserved 1G``
(``memmap=1024M%0x100000000-1+0xefffffff``: RAM at 4 GiB retyped E820 Soft
Reserved, as firmware does for CXL memory) and no NVDIMM.  dax_hmem makes
it dax0.0; there is no namespace, so the case's device comes from the dax
bus in sysfs alone.  The range is 1 GiB aligned and 1 GiB long (no pfn info
block takes a piece of it, unlike the 1 GiB pmem namespace), so the device
takes a 1 GiB align and the PUD fault path runs for real; the scenarios
written for a 1 GiB device (beyond-device reads at 1G) hold as they are.

This file runs in its own boot (``lab.tier`` boots the soft-reserved layout
once per kernel for it); every other live test needs the pmem layout.
"""

import os
import subprocess

import pytest

from pmemtrace import units
from pmemtrace.host import HostState, diagnose_host
from pmemtrace.host import cases as host_cases
from pmemtrace.host.fsread import Roots
from pmemtrace.lab import guest as lab_guest
from pmemtrace.model import explain, parse_case
from pmemtrace.model.build import CaseBuilder, case_to_json
from pmemtrace.model.case import Access
from pmemtrace.workload import target
from pmemtrace.workload.runner import run_scenario
from pmemtrace.workload.scenario import embedded_names, load_embedded

from . import driver
from .driver import Mapping
from .test_model_vs_kernel import DEVDAX_KPROBES, _devdax_outcomes, _run_accesses

GiB, MiB = 1 << 30, 1 << 20
DEVDAX = [n for n in embedded_names() if load_embedded(n).mode == "devdax"]
ALIGN_NAME = {4096: "4K", 2 * MiB: "2M", GiB: "1G"}


def _booted_range():
    """(start, end) of the range the guest was booted with as Soft Reserved
    (``PMEMTRACE_LAB_SOFT_RESERVED``, e.g. ``1G@4G``)."""
    size, start = (units.parse_int(x) for x in os.environ["PMEMTRACE_LAB_SOFT_RESERVED"].split("@"))
    return start, start + size - 1


def _iomem_lines(lo, hi):
    """/proc/iomem's names for exactly [lo, hi]."""
    with open("/proc/iomem") as f:
        return [line.split(":", 1)[1].strip() for line in f if line.split(":")[0].strip() == f"{lo:x}-{hi:x}"]


def _sysfs_device(dev):
    st = os.stat(dev)
    return host_cases.dax_device(Roots(), os.major(st.st_rdev), os.minor(st.st_rdev))


def test_hmem_device_is_the_soft_reserved_range(guest):
    """No NVDIMM, one Soft Reserved range, and the case's device read from
    the dax bus is exactly that range (no pfn info block, no data offset)."""
    dev = guest.hmem("2M")
    assert not os.path.exists("/sys/bus/nd/devices/region0")
    lo, hi = _booted_range()
    # e820 names it Soft Reserved (up to 7.1); dax_hmem's device claims it
    names = _iomem_lines(lo, hi)
    assert os.path.basename(dev) in names, names
    name = os.path.basename(dev)
    assert "/platform/hmem" in os.path.realpath(f"/sys/bus/dax/devices/{name}")
    device, notes = _sysfs_device(dev)
    assert device is not None, notes
    assert (device.mode, device.align, device.data_start, device.size) == ("devdax", 2 * MiB, lo, hi - lo + 1)
    assert [(r.start, r.length, r.pgoff) for r in device.ranges] == [(lo, hi - lo + 1, 0)]
    listed = [d for r in lab_guest.daxctl_list() for d in r.get("devices", [])]
    assert [(d["chardev"], d["mode"]) for d in listed] == [(name, "devdax")]


@pytest.mark.parametrize("name", DEVDAX)
def test_devdax_scenario_on_hmem(name, guest, lab_gate):
    """Every embedded devdax scenario (4K, 2M and 1G align) on the
    soft-reserved device: the peer suite's outcome, and the recorded case's
    device is the dax bus's view."""
    scen = load_embedded(name)
    align = scen.device_align or 2 * MiB
    dev = guest.hmem(ALIGN_NAME[align])
    # in-process (run_scenario() is what `pmemtrace run` calls after parsing
    # its arguments; the pmem layout's tests run the command): a Python start
    # under TCG costs more than most of these scenarios; device-dax emits no
    # fs_dax events, so no trace
    res = run_scenario(scen, target.open_device(dev), trace=False)
    bad = [s for s in res.steps if not s["match"]]
    assert res.error is None and not bad and res.corrupt == [], (name, res.error, bad, res.corrupt, scen.notes)
    c = parse_case(res.case)
    lo, _hi = _booted_range()
    assert (c.device.mode, c.device.align, c.device.data_start) == ("devdax", align, lo)


def _case(align, maps, accesses):
    device, notes = _sysfs_device("/dev/" + lab_guest.hmem_devices()[0])
    assert device is not None and device.align == align, (device, notes)
    b = CaseBuilder(device, kernel=os.uname().release)
    for mid, m in maps.items():
        b.mapping(mid, m.addr, m.length, offset=m.offset, shared=m.shared)
    b.accesses += [Access(**a) for a in accesses]
    return case_to_json(b.build())


@pytest.mark.parametrize(
    "align,expect",
    [
        # the 1 GiB device: dev_dax_huge_fault() at PUD order returns
        # VM_FAULT_NOPAGE, one PUD maps the whole GiB; later touches are mapped
        ("1G", ["pud", "none", "none"]),
        # 2 MiB align: the PUD attempt falls back (devdax-align-smaller), PMD
        ("2M", ["pmd", "pmd", "none"]),
    ],
)
def test_hmem_fault_sizes_against_kprobes(tracefs, guest, align, expect):
    """dev_dax_huge_fault() observed with kprobes (order and VM_FAULT
    result) on the soft-reserved device, compared with the model."""
    a = {"1G": GiB, "2M": 2 * MiB}[align]
    dev = guest.hmem(align)
    fd = os.open(dev, os.O_RDWR)
    try:
        maps = {"m0": Mapping(fd, GiB, addr=driver.free_address(GiB, align=GiB))}
    finally:
        os.close(fd)
    acc = [
        {"mapping": "m0", "offset": 0, "op": "read"},
        {"mapping": "m0", "offset": 512 * MiB + 4096, "op": "write"},
        {"mapping": "m0", "offset": 8192, "op": "read"},
    ]
    try:
        with tracefs.kprobes(DEVDAX_KPROBES):
            cap = _run_accesses(tracefs, maps, acc, kprobes=True)
        case = _case(a, maps, acc)
    finally:
        maps["m0"].unmap()
    observed = _devdax_outcomes(cap, len(acc))
    model = [r.outcome for r in explain(parse_case(case)).results]
    assert observed == model, f"hmem align {align} on {os.uname().release}: kernel {observed} vs model {model}\n{case}"
    assert observed == expect


def _modinfo(name):
    return subprocess.run(["modinfo", "-F", "filename", name], capture_output=True, text=True).returncode == 0


def _release_at_least(major, minor):
    v = os.uname().release.split("-")[0].split(".")
    return (int(v[0]), int(v[1])) >= (major, minor)


def test_fsdev_dax_binding_has_no_mmap(guest, lab_gate):
    """famfs's fs-dax binding (fsdev_dax, Linux kernel commit d5406bd458b0,
    in v7.1): where the kernel has it, the device bound to it has no mmap
    (ENODEV), diagnose says so and the model predicts it; where it has not,
    the kernel is older than 7.1, as the model's citation says."""
    if not _modinfo("fsdev_dax"):
        assert not _release_at_least(7, 1), f"{os.uname().release} has no fsdev_dax module"
        return
    dev = guest.hmem("2M")
    name = os.path.basename(dev)
    base = f"/sys/bus/dax/devices/{name}"
    subprocess.run(["modprobe", "fsdev_dax"], check=True)
    lab_guest._write(f"{base}/driver/unbind", name)
    lab_guest._write("/sys/bus/dax/drivers/fsdev_dax/new_id", name)
    try:
        assert lab_guest.dax_driver(name) == "fsdev_dax"
        fd = os.open(dev, os.O_RDWR)
        try:
            with pytest.raises(OSError) as exc:
                Mapping(fd, 4 * MiB, addr=driver.free_address(4 * MiB))
        finally:
            os.close(fd)
        assert exc.value.errno == 19  # ENODEV
        device, notes = _sysfs_device(dev)
        assert device is not None and device.driver == "fsdev_dax", notes
        b = CaseBuilder(device, kernel=os.uname().release)
        b.mapping("m0", driver.free_address(4 * MiB), 4 * MiB)
        b.touch("m0", 0, False)
        res = explain(parse_case(case_to_json(b.build()))).results[0]
        assert (res.outcome, res.errno, res.reason) == ("error", 19, "devdax-fsdev-no-mmap")
        # what `pmemtrace diagnose` says, read in-process (HostState + diagnose_host)
        found = [(f.subject, f.code) for f in diagnose_host(HostState(Roots()))]
        assert (name, "devdax-fsdev-no-mmap") in found, found
    finally:
        lab_guest._write(f"{base}/driver/unbind", name)
        lab_guest._write("/sys/bus/dax/drivers/fsdev_dax/remove_id", name)
        lab_guest._write("/sys/bus/dax/drivers/device_dax/bind", name)
    assert lab_guest.dax_driver(name) == "device_dax"
