"""Inventory of persistent-memory devices as sysfs shows them.

Attribute names follow the kernel (v6.1..7.x):

- ``/sys/bus/nd/devices/regionN``: ``size``, ``resource``, ``align``,
  ``nstype``, ``devtype`` (drivers/nvdimm/region_devs.c); the bus above it
  (``ndbusN/provider``: ``e820`` for ``memmap=``, ``ACPI.NFIT`` ...,
  drivers/nvdimm/bus.c).
- ``namespaceN.M``: ``mode`` (``raw``, ``memory`` = fsdax, ``dax`` = devdax,
  ``safe`` = sector; drivers/nvdimm/namespace_devs.c ``mode_show()``; an
  e820 namespace with no pfn device but struct pages in RAM reads
  ``memory``), ``size``, ``resource``, ``holder``, ``devtype``
  (``nd_namespace_io`` for e820, ``nd_namespace_pmem``), ``block/pmemN``.
- ``pfnN.M`` / ``daxN.M`` (nd_pfn / nd_dax): ``mode`` (``ram`` = --map=mem,
  ``pmem`` = --map=dev), ``align``, ``supported_alignments``, ``namespace``,
  ``resource`` = data start, ``size`` = data size
  (drivers/nvdimm/pfn_devs.c).
- ``/sys/bus/dax/devices/daxN.M``: ``size``, ``align``, ``target_node``,
  ``numa_node``, ``resource``, ``mappingK/{start,end,page_offset}`` per range,
  ``driver`` -> ``device_dax`` (devdax), ``kmem`` (system-ram) or
  ``fsdev_dax`` (famfs's fs-dax binding, 7.1 and later: no mmap)
  (drivers/dax/bus.c).
- ``/proc/iomem`` (needs root for addresses), ``/proc/cmdline`` (``memmap=``).
"""

import os
import re
from dataclasses import asdict, dataclass, field
from typing import Optional

from ..units import parse_int

ND_MODES = {
    "memory": "fsdax",
    "dax": "devdax",
    "safe": "sector",
    "raw": "raw",
    "sector": "sector",
    "fsdax": "fsdax",
    "devdax": "devdax",
}


@dataclass
class PfnDevice:
    name: str
    kind: str  # pfn | dax (nd_pfn / nd_dax)
    mode: Optional[str] = None  # ram | pmem | none
    align: Optional[int] = None
    supported_alignments: list[int] = field(default_factory=list)
    namespace: Optional[str] = None
    resource: Optional[int] = None  # physical data start
    size: Optional[int] = None  # data size
    block: Optional[str] = None


@dataclass
class Namespace:
    name: str
    region: Optional[str]
    bus_provider: Optional[str]
    mode: str  # fsdax | devdax | sector | raw | unknown:<x>
    kernel_mode: Optional[str]
    devtype: Optional[str]
    size: Optional[int]
    resource: Optional[int]
    holder: Optional[str] = None
    block: Optional[str] = None
    pfn: Optional[PfnDevice] = None

    @property
    def bus(self):
        p = (self.bus_provider or "").lower()
        if "e820" in p or self.devtype == "nd_namespace_io":
            return "e820"
        return "nfit"

    @property
    def data_start(self):
        if self.pfn is not None and self.pfn.resource is not None:
            return self.pfn.resource
        return self.resource

    @property
    def data_size(self):
        if self.pfn is not None and self.pfn.size is not None:
            return self.pfn.size
        return self.size


@dataclass
class Region:
    name: str
    bus_provider: Optional[str]
    size: Optional[int]
    resource: Optional[int]
    align: Optional[int]
    devtype: Optional[str]
    namespaces: list[str] = field(default_factory=list)


@dataclass
class DaxRange:
    start: int
    end: int  # inclusive, as sysfs prints it
    page_offset: int

    @property
    def length(self):
        return self.end - self.start + 1


@dataclass
class DaxDevice:
    name: str
    size: Optional[int]
    align: Optional[int]
    target_node: Optional[int]
    numa_node: Optional[int]
    resource: Optional[int]
    driver: Optional[str]
    ranges: list[DaxRange] = field(default_factory=list)
    nd_parent: Optional[str] = None  # the nd_dax device behind it, if any
    provider: str = "unknown"  # nvdimm | hmem | cxl | unknown

    @property
    def mode(self):
        return {"device_dax": "devdax", "kmem": "system-ram", "fsdev_dax": "fsdev", None: "unbound"}.get(
            self.driver, self.driver
        )


@dataclass
class Partition:
    name: str
    disk: str
    start: int  # bytes from the start of the disk
    size: Optional[int]


@dataclass
class IomemEntry:
    start: int
    end: int
    name: str
    depth: int


@dataclass
class Inventory:
    regions: list[Region] = field(default_factory=list)
    namespaces: list[Namespace] = field(default_factory=list)
    dax_devices: list[DaxDevice] = field(default_factory=list)
    partitions: list[Partition] = field(default_factory=list)
    iomem: list[IomemEntry] = field(default_factory=list)
    iomem_hidden: bool = False  # addresses read as 0 (not root)
    cmdline: Optional[str] = None
    memmap: list[dict] = field(default_factory=list)

    def namespace_by_block(self, disk):
        for ns in self.namespaces:
            if ns.block == disk or (ns.pfn is not None and ns.pfn.block == disk):
                return ns
        return None

    def partition(self, name):
        for p in self.partitions:
            if p.name == name:
                return p
        return None

    def to_json(self):
        return asdict(self)


def _int(roots, *parts):
    return roots.read_int(roots.sys(*parts))


def _bus_provider(roots, real):
    """Walk up from a device's real path to its ndbusN and read provider."""
    d = real
    for _ in range(8):
        if re.match(r"ndbus\d+$", os.path.basename(d)):
            return roots.read(os.path.join(d, "provider"))
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    return None


def _block_under(roots, path):
    names = roots.listdir(os.path.join(path, "block"))
    return names[0] if names else None


def _alignments(text):
    out = []
    for w in (text or "").split():
        try:
            out.append(int(w, 0))
        except ValueError:
            pass
    return out


def read_pfn(roots, path, name, kind):
    g = lambda a: roots.read(os.path.join(path, a))  # noqa: E731
    gi = lambda a: roots.read_int(os.path.join(path, a))  # noqa: E731
    return PfnDevice(
        name=name,
        kind=kind,
        mode=g("mode"),
        align=gi("align"),
        supported_alignments=_alignments(g("supported_alignments")),
        namespace=g("namespace") or None,
        resource=gi("resource"),
        size=gi("size"),
        block=_block_under(roots, path),
    )


def read_nd(roots, inv):
    base = roots.sys("bus", "nd", "devices")
    pfns = {}
    for name in roots.listdir(base):
        path = os.path.join(base, name)
        real = roots.realpath(path)
        if name.startswith("region"):
            inv.regions.append(
                Region(
                    name=name,
                    bus_provider=_bus_provider(roots, real),
                    size=roots.read_int(os.path.join(path, "size")),
                    resource=roots.read_int(os.path.join(path, "resource"), 16),
                    align=roots.read_int(os.path.join(path, "align")),
                    devtype=roots.read(os.path.join(path, "devtype")),
                )
            )
        elif name.startswith(("pfn", "dax")) and re.match(r"(pfn|dax)\d+\.\d+$", name):
            p = read_pfn(roots, path, name, name[:3])
            if p.namespace:
                pfns[p.namespace] = p
    for name in roots.listdir(base):
        if not re.match(r"namespace\d+\.\d+$", name):
            continue
        path = os.path.join(base, name)
        real = roots.realpath(path)
        km = roots.read(os.path.join(path, "mode"))
        region = os.path.basename(os.path.dirname(real))
        ns = Namespace(
            name=name,
            region=region if region.startswith("region") else None,
            bus_provider=_bus_provider(roots, real),
            mode=ND_MODES.get(km, f"unknown:{km}") if km is not None else "unknown",
            kernel_mode=km,
            devtype=roots.read(os.path.join(path, "devtype")),
            size=roots.read_int(os.path.join(path, "size")),
            resource=roots.read_int(os.path.join(path, "resource"), 16),
            holder=roots.read(os.path.join(path, "holder")) or None,
            block=_block_under(roots, path),
        )
        ns.pfn = pfns.get(name)
        if ns.pfn is None and ns.holder and ns.holder in {p.name for p in pfns.values()}:
            ns.pfn = next(p for p in pfns.values() if p.name == ns.holder)
        inv.namespaces.append(ns)
        for r in inv.regions:
            if r.name == ns.region:
                r.namespaces.append(name)


def read_dax(roots, inv):
    base = roots.sys("bus", "dax", "devices")
    for name in roots.listdir(base):
        path = os.path.join(base, name)
        real = roots.realpath(path)
        gi = lambda a, b=0, path=path: roots.read_int(os.path.join(path, a), b)  # noqa: E731
        dev = DaxDevice(
            name=name,
            size=gi("size"),
            align=gi("align"),
            target_node=gi("target_node"),
            numa_node=gi("numa_node"),
            resource=gi("resource", 16),
            driver=roots.link_name(os.path.join(path, "driver")),
        )
        for m in roots.listdir(path):
            if not re.match(r"mapping\d+$", m):
                continue
            mp = os.path.join(path, m)
            s = roots.read_int(os.path.join(mp, "start"), 16)
            e = roots.read_int(os.path.join(mp, "end"), 16)
            po = roots.read_int(os.path.join(mp, "page_offset"), 16)
            if s is not None and e is not None:
                dev.ranges.append(DaxRange(s, e, po or 0))
        dev.ranges.sort(key=lambda r: r.page_offset)
        parent = os.path.basename(os.path.dirname(real))
        # classify on the path below the sysfs root (a fixture root's own name must not count)
        real = "/" + os.path.relpath(real, roots.realpath(roots.sysfs))
        if "/ndbus" in real or (
            re.match(r"dax\d+\.\d+$", parent) and roots.exists(roots.sys("bus", "nd", "devices", parent))
        ):
            dev.provider = "nvdimm"
            dev.nd_parent = parent
        elif "/hmem" in real:
            dev.provider = "hmem"
        elif "cxl" in real or "/region" in real or "ACPI0017" in real:
            dev.provider = "cxl"
        if not dev.ranges and dev.resource is not None and dev.size:
            # kernels without mappingN (or unreadable): one range from resource
            dev.ranges.append(DaxRange(dev.resource, dev.resource + dev.size - 1, 0))
        inv.dax_devices.append(dev)


def block_devices(roots):
    """{name: real sysfs dir} of block devices and partitions, from
    /sys/class/block, else /sys/block/* and their partition subdirectories
    (recorded fixtures carry sys/block only)."""
    out = {}
    base = roots.sys("class", "block")
    for name in roots.listdir(base):
        out[name] = roots.realpath(os.path.join(base, name))
    base = roots.sys("block")
    for disk in roots.listdir(base):
        real = roots.realpath(os.path.join(base, disk))
        out.setdefault(disk, real)
        for sub in roots.listdir(real):
            if sub.startswith(disk) and roots.exists(os.path.join(real, sub, "partition")):
                out.setdefault(sub, os.path.join(real, sub))
    return out


def disk_of(roots, major, minor):
    """(disk, partition-or-None) for a block dev_t via /sys/dev/block."""
    p = roots.sys("dev", "block", f"{major}:{minor}")
    if roots.exists(p):
        real = roots.realpath(p)
    else:
        real = None
        for _name, path in block_devices(roots).items():
            if roots.read(os.path.join(path, "dev"), note=False) == f"{major}:{minor}":
                real = path
                break
        if real is None:
            return None
    name = os.path.basename(real)
    if roots.exists(os.path.join(real, "partition")):
        return os.path.basename(os.path.dirname(real)), name
    return name, None


def namespace_summary(roots):
    """name, mode, size, resource and align of every nd namespace as sysfs
    shows them (strings; missing attributes left out): a recording's header."""
    base = roots.sys("bus", "nd", "devices")
    out = []
    for name in roots.listdir(base):
        if name.startswith("namespace"):
            d = {"name": name}
            for k in ("mode", "size", "resource", "align"):
                v = roots.read(os.path.join(base, name, k), note=False)
                if v is not None:
                    d[k] = v
            out.append(d)
    return out


def read_partitions(roots, inv):
    for name, real in sorted(block_devices(roots).items()):
        if not roots.exists(os.path.join(real, "partition")):
            continue
        start = roots.read_int(os.path.join(real, "start"))
        size = roots.read_int(os.path.join(real, "size"))
        if start is None:
            continue
        inv.partitions.append(
            Partition(
                name=name,
                disk=os.path.basename(os.path.dirname(real)),
                start=start * 512,
                size=size * 512 if size is not None else None,
            )
        )


_IOMEM_RE = re.compile(r"^(\s*)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$")


def parse_iomem(text):
    out = []
    for line in (text or "").splitlines():
        m = _IOMEM_RE.match(line)
        if m:
            out.append(IomemEntry(int(m.group(2), 16), int(m.group(3), 16), m.group(4).strip(), len(m.group(1)) // 2))
    return out


_MEMMAP_RE = re.compile(r"(?:^|\s)memmap=(\S+)")


def parse_memmap(cmdline):
    """``memmap=`` options from a kernel command line.  ``nn!ss`` is
    E820_TYPE_PRAM, i.e. emulated pmem (arch/x86/kernel/e820.c
    parse_memmap_one()); several may be comma-separated."""
    out = []
    for m in _MEMMAP_RE.finditer(cmdline or ""):
        for item in m.group(1).split(","):
            for sep, kind in (("!", "pmem"), ("$", "reserved"), ("#", "acpi"), ("@", "ram"), ("%", "retype")):
                if sep in item:
                    size, _, start = item.partition(sep)
                    try:
                        d = {"text": item, "kind": kind, "size": parse_int(size), "start": parse_int(start)}
                    except ValueError:
                        d = {"text": item, "kind": kind, "size": None, "start": None}
                    out.append(d)
                    break
            else:
                out.append({"text": item, "kind": "limit", "size": None, "start": None})
    return out


def read_inventory(roots):
    inv = Inventory()
    read_nd(roots, inv)
    read_dax(roots, inv)
    read_partitions(roots, inv)
    text = roots.read(roots.proc("iomem"))
    inv.iomem = parse_iomem(text)
    inv.iomem_hidden = bool(inv.iomem) and all(e.start == 0 and e.end == 0 for e in inv.iomem)
    inv.cmdline = roots.read(roots.proc("cmdline"))
    inv.memmap = parse_memmap(inv.cmdline)
    return inv


def iomem_pmem(inv):
    """Top-level iomem entries for pmem: 'Persistent Memory (legacy)' is
    memmap= (E820_TYPE_PRAM), 'Persistent Memory' is NFIT."""
    return [
        e
        for e in inv.iomem
        if e.name.startswith("Persistent Memory") or e.name.startswith(("namespace", "dax", "hmem", "Soft Reserved"))
    ]
