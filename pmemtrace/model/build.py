"""Building a case: the one builder every producer uses, and the one writer
of the case JSON (format v1, docs/case-format.md).

``pmemtrace run`` (and its dry run), ``diagnose``, the attribution of watched
fallbacks and the live tests all describe what the kernel was given with the
dataclasses of :mod:`pmemtrace.model.case`, through :class:`CaseBuilder`, and
write it with :func:`case_to_json`.  So a case looks the same whoever made
it, and a producer cannot write a key the model does not read.

The JSON form is canonical: addresses, physical offsets and page tables are
hex strings, lengths and file offsets are integers, dev_t is ``"MAJ:MIN"``,
and keys that hold their default are left out where the format says so.
This module is pure (no I/O): it reads nothing from the host.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

from .case import PAGE_SIZE, Access, Case, Device, Extent, File, Mapping, Range

__all__ = ["CaseBuilder", "case_to_json", "dev_t", "fsdax_device", "devdax_device", "extent"]


def dev_t(major: int, minor: int) -> int:
    """dev_t as the kernel encodes it in trace events (``MAJOR << 20 | MINOR``)."""
    return (major << 20) | minor


def fsdax_device(
    data_start: int = 0, size: Optional[int] = None, map: str = "mem", align: int = 2 << 20, dev: int = 0
) -> Device:
    """An fsdax block device: byte 0 of the filesystem is at physical *data_start*."""
    return Device(mode="fsdax", align=align, size=size, data_start=data_start, map=map, dev=dev)


def devdax_device(
    align: int,
    size: Optional[int] = None,
    data_start: int = 0,
    ranges: Iterable[Range] = (),
    dev: int = 0,
    driver: str = "device_dax",
) -> Device:
    """A device-dax device; without *ranges*, one range [data_start, size)."""
    rs = list(ranges)
    if not rs and size is not None:
        rs = [Range(start=data_start, length=size, pgoff=0)]
    return Device(mode="devdax", align=align, size=size, data_start=data_start, ranges=rs, dev=dev, driver=driver)


def extent(logical: int, physical: int, length: int, unwritten: bool = False) -> Extent:
    return Extent(logical=logical, physical=physical, length=length, unwritten=bool(unwritten))


def allocated_extents(before: Iterable[dict[str, Any]], after: Iterable[dict[str, Any]]) -> list[Extent]:
    """The pieces of the FIEMAP extents *after* a run that were holes in the
    extents *before* it: where the filesystem placed the blocks the run
    allocated (the case key ``file.allocated``)."""
    had = sorted((e.logical, e.logical + e.length) for e in dax_extents(before))
    out = []
    for e in dax_extents(after):
        pos, end = e.logical, e.logical + e.length
        for lo, hi in had:
            if hi <= pos or lo >= end:
                continue
            if lo > pos:
                out.append(extent(pos, e.physical + (pos - e.logical), lo - pos))
            pos = max(pos, hi)
        if pos < end:
            out.append(extent(pos, e.physical + (pos - e.logical), end - pos))
    return out


def dax_extents(extents: Iterable[dict[str, Any]]) -> list[Extent]:
    """FIEMAP extents as dicts (logical, physical, length, unwritten) to
    :class:`Extent`, leaving out inline/tail extents that are not 4 KiB
    multiples: DAX cannot map those, so they stay holes in the case."""
    out = []
    for e in extents:
        if e["length"] % PAGE_SIZE or e["logical"] % PAGE_SIZE or e["physical"] % PAGE_SIZE:
            continue
        out.append(extent(e["logical"], e["physical"], e["length"], bool(e.get("unwritten"))))
    return out


@dataclass
class CaseBuilder:
    """Collects a case in the order it happened.

    >>> b = CaseBuilder(fsdax_device(size=1 << 30), kernel="6.12.95+deb12-amd64")
    >>> b.file = File(size=2 << 20, extents=[extent(0, 0x200000, 2 << 20)])
    >>> _ = b.mapping("m0", 0x7F0000000000, 2 << 20)
    >>> b.touch("m0", 0, write=True)
    >>> case_to_json(b.build())["accesses"]
    [{'mapping': 'm0', 'offset': 0, 'op': 'write'}]
    """

    device: Device
    kernel: Optional[str] = None
    name: Optional[str] = None
    notes: Optional[str] = None
    file: Optional[File] = None
    mappings: list[Mapping] = field(default_factory=list)
    accesses: list[Access] = field(default_factory=list)
    thp_disable: bool = False
    page_tables: set[int] = field(default_factory=set)
    shared_blocks: set[int] = field(default_factory=set)
    fork_tables: set[int] = field(default_factory=set)

    def mapping(
        self,
        id: str,
        start: int,
        length: int,
        offset: int = 0,
        shared: bool = True,
        sync: bool = False,
        writable: bool = True,
        mapped: bool = True,
        nohugepage: bool = False,
    ) -> Mapping:
        m = Mapping(
            id=id,
            start=start,
            length=length,
            offset=offset,
            shared=shared,
            sync=sync,
            nohugepage=nohugepage,
            writable=writable,
            mapped=mapped,
        )
        self.mappings.append(m)
        return m

    def touch(self, mapping: str, offset: int, write: bool) -> None:
        """A first load or store at *offset* into *mapping*."""
        self.accesses.append(Access(op="write" if write else "read", mapping=mapping, offset=offset))

    def mmap(self, mapping: str) -> None:
        self.accesses.append(Access(op="mmap", mapping=mapping))

    def munmap(self, mapping: str, offset: int = 0, length: int = 0, cover: bool = False) -> None:
        """munmap of the whole mapping (length 0) or of [offset, offset+length)
        (*cover*: PROT_NONE mapped over it after)."""
        self.accesses.append(Access(op="munmap", mapping=mapping, offset=offset, length=length, cover=cover))

    def mremap(
        self,
        mapping: str,
        length: int,
        new_start: Optional[int] = None,
        fixed: bool = False,
        maymove: bool = False,
        cover: bool = False,
    ) -> None:
        """mremap(2) of the mapping's whole current range to *length* bytes."""
        self.accesses.append(
            Access(
                op="mremap",
                mapping=mapping,
                length=length,
                new_start=new_start,
                fixed=fixed,
                maymove=maymove,
                cover=cover,
            )
        )

    def madvise(self, mapping: str, advice: str, offset: int, length: int) -> None:
        self.accesses.append(Access(op="madvise", mapping=mapping, offset=offset, length=length, advice=advice))

    def gup(
        self, mapping: str, offset: int, length: int, write: bool, fast: bool = True, longterm: bool = False
    ) -> None:
        self.accesses.append(
            Access(op="gup", mapping=mapping, offset=offset, length=length, write=write, fast=fast, longterm=longterm)
        )

    def populate(self, mapping: str, length: int, write: bool) -> None:
        """MAP_POPULATE / mm_populate(): fault the mapping in, pin nothing."""
        self.accesses.append(Access(op="gup", mapping=mapping, offset=0, length=length, write=write, populate=True))

    def fork(self) -> None:
        """fork(2): later accesses with child=True are the child's."""
        self.accesses.append(Access(op="fork", mapping=None))

    def exit_child(self) -> None:
        """The child of the last fork exits."""
        self.accesses.append(Access(op="exit", mapping=None))

    def child_touch(self, mapping: str, offset: int, write: bool) -> None:
        self.accesses.append(Access(op="write" if write else "read", mapping=mapping, offset=offset, child=True))

    def pwrite(self, offset: int, length: int) -> None:
        """write(2) to the file at *offset*: no mapping (a pwrite's Access.mapping is None)."""
        self.accesses.append(Access(op="pwrite", mapping=None, offset=offset, length=length))

    def build(self) -> Case:
        return Case(
            kernel=self.kernel,
            device=self.device,
            file=self.file,
            mappings=list(self.mappings),
            accesses=list(self.accesses),
            thp_disable=self.thp_disable,
            page_tables=sorted(self.page_tables),
            shared_blocks=sorted(self.shared_blocks),
            fork_tables=sorted(self.fork_tables),
            name=self.name,
            notes=self.notes,
        )


# --------------------------------------------------------------------------
# the case JSON


def _dev_json(dev: int) -> str:
    return f"{dev >> 20}:{dev & 0xFFFFF}"


def _device_json(d: Device) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": d.mode}
    if d.mode == "fsdax":
        out["map"] = d.map
    out["align"] = d.align
    if d.size is not None:
        out["size"] = d.size
    out["data_start"] = hex(d.data_start)
    if d.dev:
        out["dev"] = _dev_json(d.dev)
    implied = [Range(start=d.data_start, length=d.size, pgoff=0)] if d.size is not None else []
    if d.mode == "devdax" and d.ranges and d.ranges != implied:
        out["ranges"] = [{"start": hex(r.start), "length": r.length, "pgoff": r.pgoff} for r in d.ranges]
    if not d.struct_pages:
        out["struct_pages"] = False
    if d.driver != "device_dax":
        out["driver"] = d.driver
    return out


def _file_json(f: File, device: Device) -> dict[str, Any]:
    out: dict[str, Any] = {
        "size": f.size,
        "ino": f.ino,
        "extents": [
            {"logical": e.logical, "physical": hex(e.physical), "length": e.length, "unwritten": e.unwritten}
            for e in f.extents
        ],
        "fs": f.fs,
    }
    if f.allocated:
        out["allocated"] = [
            {"logical": e.logical, "physical": hex(e.physical), "length": e.length} for e in f.allocated
        ]
    if f.dev is not None and f.dev != device.dev:
        out["dev"] = _dev_json(f.dev)
    return out


def _mapping_json(m: Mapping) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": m.id,
        "start": hex(m.start),
        "length": m.length,
        "offset": m.offset,
        "shared": m.shared,
        "sync": m.sync,
        "writable": m.writable,
        "mapped": m.mapped,
    }
    if m.nohugepage:
        out["nohugepage"] = True
    return out


def _access_json(a: Access) -> dict[str, Any]:
    op = a.op
    if op == "pwrite":
        return {"op": op, "offset": a.offset, "length": a.length}
    if op in ("read", "write"):
        if a.child:
            return {"mapping": a.mapping, "offset": a.offset, "op": op, "child": True}
        return {"mapping": a.mapping, "offset": a.offset, "op": op}
    if op in ("fork", "exit"):
        return {"op": op}
    out: dict[str, Any] = {"mapping": a.mapping, "op": op}
    if op == "madvise":
        out.update(advice=a.advice, offset=a.offset, length=a.length)
    elif op == "munmap" and a.length:
        out.update(offset=a.offset, length=a.length)
    elif op == "mremap":
        out.update(length=a.length, maymove=a.maymove)
    if op in ("munmap", "mremap") and a.cover:
        out["cover"] = True
    if op == "mremap":
        if a.fixed:
            out["fixed"] = True
        if a.new_start is not None:
            out["new_start"] = hex(a.new_start)
    elif op == "gup":
        out.update(offset=a.offset, length=a.length)
        if a.populate:  # mm_populate() faults in on the slow path: "fast" does not apply
            out.update(populate=True, write=a.write)
        else:
            out.update(write=a.write, fast=a.fast)
        if a.longterm:
            out["longterm"] = True
    return out


def case_to_json(case: Case) -> dict[str, Any]:
    """The case as the JSON object of format v1 (what ``explain`` reads)."""
    out: dict[str, Any] = {"version": 1}
    if case.name is not None:
        out["name"] = case.name
    out["kernel"] = case.kernel
    if case.notes is not None:
        out["notes"] = case.notes
    out["device"] = _device_json(case.device)
    if case.file is not None:
        out["file"] = _file_json(case.file, case.device)
    out["mappings"] = [_mapping_json(m) for m in case.mappings]
    out["accesses"] = [_access_json(a) for a in case.accesses]
    proc: dict[str, Any] = {}
    if case.thp_disable:
        proc["thp_disable"] = True
    if case.page_tables:
        proc["page_tables"] = [hex(t) for t in case.page_tables]
    if case.shared_blocks:
        proc["shared_blocks"] = [hex(t) for t in case.shared_blocks]
    if case.fork_tables:
        proc["fork_tables"] = [hex(t) for t in case.fork_tables]
    if proc:
        out["process"] = proc
    return out
