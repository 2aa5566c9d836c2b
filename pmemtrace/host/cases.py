"""The host's side of a case: the only code that turns sysfs (read through
the injectable :class:`~pmemtrace.host.fsread.Roots`) into ``case.device``,
and the cases ``diagnose`` models for a file or a process's mapping.

Everything here returns the typed dataclasses of
:mod:`pmemtrace.model.case`, assembled with
:class:`~pmemtrace.model.build.CaseBuilder`; ``run``, ``check``, ``watch``
and ``diagnose`` call these functions instead of reading sysfs themselves.
"""

import os
from collections.abc import Iterable, Iterator
from typing import Optional

from ..model.build import CaseBuilder, dax_extents, dev_t, devdax_device, fsdax_device
from ..model.case import DEVDAX_DRIVERS, Case, Device, File, Range
from .fsread import Roots
from .kernel import release_for_model

PAGE = 4096
PMD = 2 << 20
PUD = 1 << 30
MiB = 1 << 20
#: where diagnose maps a file it models (any 2 MiB-aligned user address works)
FILE_MAP_BASE = 0x7F0000000000

# nd pfn device "mode" attribute -> the case's device.map (where struct pages live)
_PFN_MAP = {"ram": "mem", "pmem": "dev"}


def _pfn_map(ns) -> str:
    """device.map of an inventory namespace: raw without a pfn device."""
    if ns is None or ns.pfn is None:
        return "raw"
    return _PFN_MAP.get(ns.pfn.mode, "mem")


# ---------------------------------------------------------------------------
# sysfs -> case.device


def block_device(roots: Roots, major: int, minor: int) -> tuple[Optional[Device], list[str]]:
    """The fsdax device of block device MAJ:MIN from sysfs, and notes on what
    was assumed; ``(None, [why])`` when it is not a pmem disk."""
    sysdev = roots.sys("dev", "block", f"{major}:{minor}")
    if not roots.exists(sysdev):
        return None, [f"no sysfs entry for block device {major}:{minor}"]
    real = roots.realpath(sysdev)
    part_start = 0
    if roots.exists(os.path.join(real, "partition")):
        part_start = (roots.read_int(os.path.join(real, "start"), 10) or 0) * 512
        real = os.path.dirname(real)
    disk = os.path.basename(real)
    devlink = os.path.join(real, "device")
    notes = []
    if not roots.exists(devlink):
        return None, [f"{disk} has no device link (not a pmem disk)"]
    nd = roots.realpath(devlink)
    name = os.path.basename(nd)
    if name.startswith("pfn"):
        loc = roots.read(os.path.join(nd, "mode")) or "ram"
        pfn_map = "dev" if loc == "pmem" else "mem"
        align = roots.read_int(os.path.join(nd, "align")) or 2 * MiB
    elif name.startswith("namespace"):
        pfn_map, align = "mem", 2 * MiB
        notes.append(f"{name} has no pfn device (memmap= namespace in memory mode: data offset 0)")
    else:
        return None, [f"{disk} sits on {name}, not an nvdimm namespace or pfn device"]
    start = roots.read_int(os.path.join(nd, "resource"))
    size = roots.read_int(os.path.join(nd, "size"))
    if size is None:
        size = (roots.read_int(os.path.join(real, "size"), 10) or 0) * 512
    if start is None:
        notes.append("namespace resource unreadable (not root?): data_start 0 assumed")
        start = 0
    if part_start:
        notes.append(f"partition starts {part_start:#x} into {disk}")
    return fsdax_device(
        data_start=start + part_start,
        size=size - part_start if part_start else size,
        map=pfn_map,
        align=align,
        dev=dev_t(major, minor),
    ), notes


def char_device_subsystem(roots: Roots, major: int, minor: int) -> str:
    """The sysfs subsystem of character device MAJ:MIN ('dax' for device-dax)."""
    sysdev = roots.realpath(roots.sys("dev", "char", f"{major}:{minor}"))
    return os.path.basename(roots.realpath(os.path.join(sysdev, "subsystem")))


def dax_device(roots: Roots, major: int, minor: int) -> tuple[Optional[Device], list[str]]:
    """The devdax device of character device MAJ:MIN from sysfs (align, size,
    ranges); ``(None, [why])`` when its size cannot be read."""
    base = roots.realpath(roots.sys("dev", "char", f"{major}:{minor}"))
    # attributes live on the dax bus device (sysfs class dax -> device)
    if not roots.exists(os.path.join(base, "size")) and roots.exists(os.path.join(base, "device")):
        base = roots.realpath(os.path.join(base, "device"))
    align = roots.read_int(os.path.join(base, "align")) or 2 * MiB
    size = roots.read_int(os.path.join(base, "size"))
    start = roots.read_int(os.path.join(base, "resource"))
    ranges = []
    i = 0
    while os.path.isdir(os.path.join(base, f"mapping{i}")):
        mp = os.path.join(base, f"mapping{i}")
        s, e = roots.read_int(os.path.join(mp, "start")), roots.read_int(os.path.join(mp, "end"))
        if s is not None and e is not None:
            ranges.append(Range(start=s, length=e - s + 1, pgoff=roots.read_int(os.path.join(mp, "page_offset")) or 0))
        i += 1
    if size is None:
        return None, [f"cannot read its size from {base}"]
    notes = []
    driver = roots.link_name(os.path.join(base, "driver"))
    if driver not in DEVDAX_DRIVERS:
        # kmem (system-ram) or unbound: no /dev node to map; the model
        # sees it as device_dax would (diagnose says why it is not)
        notes.append(f"bound to {driver or 'no driver'}, not device_dax")
        driver = "device_dax"
    if start is None and ranges:
        start = ranges[0].start
    if start is None:
        notes.append("device resource unreadable: data_start 0 assumed")
        start = 0
    # one range is the device itself; several are what the model must follow
    return devdax_device(
        align,
        size=size,
        data_start=start,
        ranges=ranges if len(ranges) > 1 else (),
        dev=dev_t(major, minor),
        driver=driver,
    ), notes


def namespace_geometry(roots: Roots, namespace: str = "namespace0.0") -> dict:
    """Data start, size, pfn/dax holder, its mode and align of an nd namespace
    (the holder's when it has one: that is where the data starts)."""
    base = roots.sys("bus", "nd", "devices", namespace)
    holder = roots.read(os.path.join(base, "holder")) or ""
    if holder and roots.exists(roots.sys("bus", "nd", "devices", holder, "resource")):
        hb = roots.sys("bus", "nd", "devices", holder)
        return {
            "data_start": roots.read_int(os.path.join(hb, "resource"), 16),
            "size": roots.read_int(os.path.join(hb, "size"), 10),
            "holder": holder,
            "pfn_mode": roots.read(os.path.join(hb, "mode")),
            "align": roots.read_int(os.path.join(hb, "align")) or 0,
        }
    return {
        "data_start": roots.read_int(os.path.join(base, "resource"), 16),
        "size": roots.read_int(os.path.join(base, "size"), 10),
        "holder": None,
        "pfn_mode": None,
        "align": 0,
    }


def inventory_fsdax_device(ns, part, data_start: Optional[int], major: int, minor: int) -> Device:
    """The fsdax device of an inventory namespace (and partition) as
    :mod:`pmemtrace.host.inventory` read it."""
    size = None
    if part is not None and part.size:
        size = part.size
    elif ns is not None and ns.data_size:
        size = ns.data_size
    align = ns.pfn.align if ns is not None and ns.pfn is not None and ns.pfn.align in (PAGE, PMD, PUD) else PMD
    return fsdax_device(data_start=data_start or 0, size=size, map=_pfn_map(ns), align=align, dev=dev_t(major, minor))


def mapped_file_device(ns, data_start: Optional[int], major: int, minor: int) -> Device:
    """The fsdax device behind a process's file mapping: where its data starts
    and where its struct pages live (size and align left to the model's
    defaults, as diagnose --pid has always modelled it)."""
    return fsdax_device(data_start=data_start or 0, map=_pfn_map(ns), dev=dev_t(major, minor))


def inventory_dax_device(dev) -> Device:
    """The devdax device of an inventory dax device (its ranges as sysfs lists them)."""
    ranges = [Range(start=r.start, length=r.length, pgoff=r.page_offset) for r in dev.ranges]
    driver = dev.driver if dev.driver in DEVDAX_DRIVERS else "device_dax"
    return devdax_device(dev.align or PAGE, size=None if ranges else (dev.size or 0), ranges=ranges, driver=driver)


# ---------------------------------------------------------------------------
# the cases diagnose models


def _round_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def file_case(
    release: Optional[str],
    path: str,
    st: os.stat_result,
    fs: str,
    extents: Iterable[dict],
    device: Device,
    op: str = "write",
) -> Case:
    """A file mapped whole (in 2 MiB multiples, so file-level reasons such as
    beyond-eof show rather than vma-end), first touch of every 2 MiB chunk."""
    size = st.st_size
    maplen = _round_up(max(size, PAGE), PMD)
    b = CaseBuilder(device, kernel=release_for_model(release), name=f"diagnose {path}")
    b.file = File(size=size, extents=dax_extents(extents), ino=st.st_ino, fs=fs)
    b.mapping("m0", FILE_MAP_BASE, maplen)
    for off in range(0, maplen, PMD):
        b.touch("m0", off, op == "write")
    return b.build()


def mapping_chunks(start: int, end: int) -> Iterator[tuple[int, int]]:
    """(offset into the mapping, length) of every 2 MiB virtual chunk that
    [start, end) overlaps (the first and last may be partial)."""
    lo = start
    while lo < end:
        hi = min((lo // PMD + 1) * PMD, end)
        yield lo - start, hi - lo
        lo = hi


def mapping_case(
    release: Optional[str], pm, device: Device, file: Optional[File], thp_disable: bool, offsets: Iterable[int]
) -> Case:
    """A /proc/PID/maps mapping as a case: first touches at *offsets* (op
    write when shared and writable, else read)."""
    b = CaseBuilder(
        device,
        kernel=release_for_model(release),
        name=f"mapping {pm.start:#x}-{pm.end:#x} {pm.path}",
        file=file,
        thp_disable=bool(thp_disable),
    )
    b.mapping(
        "m0",
        pm.start,
        pm.length,
        offset=pm.offset,
        shared=pm.shared,
        sync=pm.sync,
        nohugepage=pm.nohugepage,
        writable=pm.writable,
    )
    write = pm.writable and pm.shared
    for off in offsets:
        b.touch("m0", off, write)
    return b.build()
