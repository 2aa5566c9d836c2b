"""Verdicts: the documented manual checklist (peers-and-users.md) done by
code.  Every finding names a kernel rule: a model reason code from
:data:`pmemtrace.model.reasons.REASONS` where one applies, otherwise a host
code from :data:`HOST_CODES`; and the remedy (ndctl/daxctl command, mkfs or
mount option).

- :func:`diagnose_host`: one verdict per namespace, dax device and DAX mount,
  plus kernel capability findings.
- :func:`diagnose_file`: a file's extents on 2 MiB chunks, per-chunk
  prediction from :func:`pmemtrace.model.explain` on a case built from sysfs
  and FIEMAP.
- :func:`diagnose_pid`: a process's DAX mappings predicted per 2 MiB chunk.
"""

import os
from dataclasses import dataclass, field
from typing import List, Optional

from ..errors import CaseError, NoDaxMapping, UsageError
from ..model import explain, parse_case
from ..model.geometry import namespace_layout
from ..model.reasons import REASONS
from ..units import format_size
from . import inventory as inv_mod
from . import kernel as kernel_mod
from . import mounts as mounts_mod
from . import procmaps

PAGE = 4096
PMD = 2 << 20
PUD = 1 << 30


@dataclass(frozen=True)
class HostCode:
    code: str
    summary: str
    remedy: str
    rule: str = ""


_H = [
    HostCode("pmd-capable", "2 MiB faults possible", ""),
    HostCode("ns-data-unaligned", "namespace data does not start on a 2 MiB boundary: every fsdax PMD fault falls back",
             "ndctl create-namespace -f -e NAMESPACE -m fsdax --align=2M (the data start is then 2 MiB aligned)",
             "dax_iomap_direct_access(): pfn & (PHYS_PFN(PMD_SIZE)-1) -> fallback (fs/dax.c)"),
    HostCode("ns-raw", "namespace in raw mode without struct pages: no DAX at all (mount -o dax fails)",
             "ndctl create-namespace -f -e NAMESPACE -m fsdax",
             "pmem_attach_disk(): QUEUE_FLAG_DAX only with PFN_MAP (drivers/nvdimm/pmem.c)"),
    HostCode("ns-sector", "namespace in sector (BTT) mode: no DAX", "ndctl create-namespace -f -e NAMESPACE -m fsdax",
             "BTT devices do not support dax_direct_access (drivers/nvdimm/btt.c)"),
    HostCode("ns-unknown-mode", "namespace mode not recognised", "check `ndctl list -N`"),
    HostCode("ns-layout-error", "the kernel rejects this namespace geometry",
             "ndctl create-namespace with a 2 MiB aligned start/size (or --align=2M)"),
    HostCode("memmap-emulated", "emulated pmem from memmap=nn!ss on the kernel command line (E820_TYPE_PRAM): "
             "contents are lost at reboot", "", "arch/x86/kernel/e820.c parse_memmap_one()"),
    HostCode("memmap-ram", "struct pages for this namespace live in System RAM", "ndctl create-namespace -f -e NAMESPACE "
             "-m fsdax --map=dev to keep them on the device (costs 64 B per 4 KiB of pmem there)"),
    HostCode("memmap-device", "struct pages for this namespace live on the device (--map=dev)", ""),
    HostCode("devdax-pmd", "device-dax align 2 MiB: 2 MiB faults", ""),
    HostCode("devdax-pud", "device-dax align 1 GiB: 1 GiB faults; mappings must be 1 GiB aligned and sized", ""),
    HostCode("devdax-align-4k", "device-dax align 4K: only 4 KiB faults",
             "daxctl reconfigure-device --align=2M DEVICE (or ndctl create-namespace -m devdax --align=2M)",
             "__dev_dax_pmd_fault(): PMD_SIZE > dev_dax->align -> VM_FAULT_FALLBACK (drivers/dax/device.c)"),
    HostCode("dax-range-unaligned", "a device-dax range is not aligned to the device's align",
             "recreate the device so every range is align-aligned (daxctl create-device --align ...)",
             "dax_pgoff_to_phys()/alloc_dev_dax_range() (drivers/dax/bus.c)"),
    HostCode("dax-system-ram", "device-dax memory onlined as System RAM (kmem): it is not mappable as DAX",
             "daxctl reconfigure-device --mode=devdax DEVICE (offline the memory first)"),
    HostCode("dax-unbound", "device-dax device bound to no driver: /dev/daxX.Y absent", "daxctl enable-device DEVICE"),
    HostCode("dax-no-namespace", "device-dax with no libnvdimm namespace behind it (CXL or hmem/Soft Reserved): "
             "ndctl does not manage it, daxctl does", ""),
    HostCode("partition-unaligned", "the partition does not start on a 2 MiB boundary: every physical block is off by "
             "its start", "repartition with the first partition at sector 4096 (parted -a optimal ... 2MiB), "
             "not fdisk's 2048; or use the whole device", "fs/dax.c dax_iomap_direct_access() pfn alignment"),
    HostCode("mount-no-dax", "filesystem on pmem mounted without DAX: the page cache is used, no DAX mappings",
             "mount -o dax (ext4, xfs: dax=always)"),
    HostCode("mount-dax-inode", "dax=inode: only files with FS_XFLAG_DAX set (xfs_io -c 'chattr +x', ext4 chattr +x) "
             "are DAX", "mount -o dax=always, or set the flag on the directory before creating files"),
    HostCode("mount-dax", "mounted with DAX", ""),
    HostCode("fs-geometry-unaligned", "the filesystem does not align file data to 2 MiB: files get extents that are "
             "short or not 2 MiB aligned physically", "mkfs.xfs -f -d su=2m,sw=1 (plus xfs_io -c 'extsize 2m' DIR), or "
             "mkfs.ext4 -b 4096 -E stride=512,stripe_width=512; then fallocate files"),
    HostCode("fs-geometry-2m", "the filesystem aligns allocations to 2 MiB (stripe unit)", ""),
    HostCode("fs-geometry-unknown", "filesystem geometry not readable", "run as root (dumpe2fs/xfs_info)"),
    HostCode("thp-sysfs-not-dax", "the sysfs THP setting does not govern DAX mappings (only MADV_NOHUGEPAGE and "
             "PR_SET_THP_DISABLE do)", "", "__thp_vma_allowable_orders(): vma_is_dax() -> in_pf ? orders : 0"),
    HostCode("no-fs-dax-tracepoints", "no fs_dax tracepoints visible: observed faults cannot be shown",
             "mount -t tracefs nodev /sys/kernel/tracing (as root)"),
    HostCode("bcc-unavailable", "bcc cannot run here", "install python3-bpfcc and kernel headers; needs kprobes"),
    HostCode("no-pmem", "no persistent memory devices found", "memmap=1G!4G on the kernel command line emulates some; "
             "`pmemtrace lab` boots such kernels"),
    HostCode("device-unknown", "the file's block device is not a pmem namespace pmemtrace can see: its physical "
             "alignment is unknown (assumed 2 MiB aligned)", ""),
    HostCode("extents-unknown", "file extents unknown (fixture tree or unreadable file): predicted as one aligned "
             "extent", ""),
    HostCode("unreadable", "some sysfs/procfs files could not be read: the diagnosis is partial", "run as root"),
]
HOST_CODES = {h.code: h for h in _H}


@dataclass
class Finding:
    subject: str  # namespace0.0, dax0.0, /mnt/pmem, kernel, ...
    kind: str  # namespace | dax | mount | partition | kernel | file | mapping | host
    verdict: str  # pmd | pud | pte | no-dax | error | info | warn
    code: str  # HOST_CODES or REASONS key
    message: str
    remedy: str = ""
    details: dict = field(default_factory=dict)

    def to_json(self):
        return {"subject": self.subject, "kind": self.kind, "verdict": self.verdict, "code": self.code,
                "message": self.message, "remedy": self.remedy, "details": self.details}


def _f(subject, kind, verdict, code, message=None, remedy=None, **details):
    h = HOST_CODES.get(code)
    r = REASONS.get(code)
    if message is None:
        message = h.summary if h else (r.summary if r else code)
    if remedy is None:
        remedy = h.remedy if h else (r.remedy if r else "")
    return Finding(subject, kind, verdict, code, message, remedy, details)


def _ns_remedy(text, ns):
    return text.replace("NAMESPACE", ns)


# ---------------------------------------------------------------------------
# host


class HostState:
    """Everything read once: inventory, mounts, kernel."""

    def __init__(self, roots):
        self.roots = roots
        self.inv = inv_mod.read_inventory(roots)
        self.mounts = mounts_mod.read_mounts(roots)
        self.kernel = kernel_mod.read_kernel(roots)

    @property
    def release(self):
        return self.kernel.release


def _release_for_model(release):
    from ..model.profiles import parse_release

    try:
        parse_release(release)
        return release
    except Exception:  # noqa: BLE001 - unknown release: the model's default profile
        return None


def namespace_findings(ns, inv, release):
    out = []
    subj = ns.name
    if ns.mode == "raw":
        out.append(_f(subj, "namespace", "no-dax", "ns-raw", remedy=_ns_remedy(HOST_CODES["ns-raw"].remedy, subj)))
        return out
    if ns.mode == "sector":
        out.append(_f(subj, "namespace", "no-dax", "ns-sector", remedy=_ns_remedy(HOST_CODES["ns-sector"].remedy, subj)))
        return out
    if ns.mode.startswith("unknown"):
        out.append(_f(subj, "namespace", "warn", "ns-unknown-mode",
                      f"namespace mode {ns.kernel_mode!r} not recognised (expected raw, memory, dax, safe)"))
        return out
    if ns.mode == "devdax":
        dev = next((d for d in inv.dax_devices if d.nd_parent == (ns.pfn.name if ns.pfn else None)), None)
        out.append(_f(subj, "namespace", "info", "devdax-pmd" if (ns.pfn and ns.pfn.align == PMD) else "mount-dax",
                      f"devdax namespace: its device is {dev.name if dev else (ns.pfn.name if ns.pfn else '?')} "
                      f"(align {format_size(ns.pfn.align) if ns.pfn and ns.pfn.align else '?'})", remedy="",
                      data_start=ns.data_start, data_size=ns.data_size))
        return out
    # fsdax
    data_start = ns.data_start
    details = dict(mode="fsdax", bus=ns.bus, resource=ns.resource, size=ns.size, data_start=data_start,
                   data_size=ns.data_size, block=ns.block or (ns.pfn.block if ns.pfn else None))
    pfn_map = {"ram": "mem", "pmem": "dev"}.get(ns.pfn.mode) if ns.pfn else None
    if ns.resource is not None and ns.size:
        try:
            lay = namespace_layout(ns.size, ns.resource, "fsdax" if ns.pfn else "raw", pfn_map or "mem",
                                   (ns.pfn.align if ns.pfn and ns.pfn.align in (PAGE, PMD, PUD) else PMD),
                                   release=_release_for_model(release), bus=ns.bus)
            details["model_layout"] = lay.to_json()
            if lay.error:
                out.append(_f(subj, "namespace", "error", "ns-layout-error", f"model: {lay.error}"))
            elif ns.pfn and ns.pfn.resource is not None and lay.data_start != ns.pfn.resource:
                details["model_disagrees"] = (f"sysfs data start {ns.pfn.resource:#x}, model "
                                              f"{lay.data_start:#x}")
        except UsageError as exc:
            details["model_layout_error"] = str(exc)
    if data_start is None:
        out.append(_f(subj, "namespace", "warn", "unreadable", "namespace data start not readable"))
    elif data_start % PMD:
        off = data_start % PMD
        out.append(_f(subj, "namespace", "pte", "ns-data-unaligned",
                      f"namespace data starts {format_size(off)} past a 2 MiB boundary ({data_start:#x}): "
                      f"every fsdax PMD fault falls back (pfn-unaligned)",
                      _ns_remedy(HOST_CODES["ns-data-unaligned"].remedy, subj), reason="pfn-unaligned", **details))
    else:
        out.append(_f(subj, "namespace", "pmd", "pmd-capable",
                      f"fsdax, data starts 2 MiB aligned at {data_start:#x}"
                      + (f" ({format_size(data_start - ns.resource)} into the namespace)"
                         if ns.resource is not None and data_start != ns.resource else ""), "", **details))
    npfns = (ns.data_size or ns.size or 0) // PAGE
    if ns.pfn is None or ns.pfn.mode == "ram":
        mb = 64 * npfns
        out.append(_f(subj, "namespace", "info", "memmap-ram",
                      f"map=mem: struct pages use {format_size(mb) if mb % (1 << 20) == 0 else f'{mb / (1 << 20):.1f}M'} "
                      f"of System RAM (64 B per 4 KiB)",
                      "" if ns.bus == "e820" and ns.pfn is None else _ns_remedy(HOST_CODES["memmap-ram"].remedy, subj),
                      memmap_bytes=mb))
    else:
        mb = 64 * npfns
        out.append(_f(subj, "namespace", "info", "memmap-device",
                      f"map=dev: struct pages use {format_size(mb) if mb % (1 << 20) == 0 else f'{mb / (1 << 20):.1f}M'}"
                      f" on the device (data offset {format_size((data_start or 0) - (ns.resource or 0))})",
                      memmap_bytes=mb))
    return out


def dax_findings(dev):
    out = []
    subj = dev.name
    details = dict(align=dev.align, size=dev.size, driver=dev.driver, provider=dev.provider,
                   ranges=[{"start": r.start, "end": r.end, "page_offset": r.page_offset} for r in dev.ranges],
                   target_node=dev.target_node)
    if dev.provider in ("cxl", "hmem", "unknown") and dev.nd_parent is None:
        out.append(_f(subj, "dax", "info", "dax-no-namespace", **{"provider": dev.provider}))
    if dev.mode == "system-ram":
        out.append(_f(subj, "dax", "no-dax", "dax-system-ram",
                      remedy=f"daxctl reconfigure-device --mode=devdax {subj}", **details))
        return out
    if dev.mode == "unbound":
        out.append(_f(subj, "dax", "no-dax", "dax-unbound", remedy=f"daxctl enable-device {subj}", **details))
        return out
    align = dev.align or PAGE
    bad = [r for r in dev.ranges if r.start % align or r.length % align]
    if bad:
        out.append(_f(subj, "dax", "error", "dax-range-unaligned",
                      f"range {bad[0].start:#x}-{bad[0].end:#x} is not {format_size(align)}-aligned", **details))
    if align >= PUD:
        out.append(_f(subj, "dax", "pud", "devdax-pud", **details))
    elif align >= PMD:
        pmd_bad = [r for r in dev.ranges if r.start % PMD or r.length % PMD]
        if not pmd_bad:
            msg = "device-dax align 2 MiB: 2 MiB faults"
            if len(dev.ranges) > 1:
                msg += f" across {len(dev.ranges)} ranges"
            out.append(_f(subj, "dax", "pmd", "devdax-pmd", msg, **details))
    else:
        out.append(_f(subj, "dax", "pte", "devdax-align-4k",
                      f"device-dax align {format_size(align)}: only 4 KiB faults (devdax-align-smaller)",
                      f"daxctl reconfigure-device --align=2M {subj}", reason="devdax-align-smaller", **details))
    return out


def geometry_finding(subj, geom):
    su = geom.stripe_unit or 0
    if geom.extsize and geom.extsize % PMD == 0:
        return _f(subj, "mount", "pmd", "fs-geometry-2m", f"{geom.fstype} extent size {format_size(geom.extsize)}",
                  geometry=geom.to_json())
    if su and su % PMD == 0:
        return _f(subj, "mount", "pmd", "fs-geometry-2m",
                  f"{geom.fstype} allocates on {format_size(su)} stripe units ({geom.source})", geometry=geom.to_json())
    what = (f"stripe unit {format_size(su)}" if su else "no stripe unit") + f" ({geom.source})"
    rem = ("mkfs.xfs -f -d su=2m,sw=1 (and xfs_io -c 'extsize 2m' on the directory)" if geom.fstype == "xfs"
           else "mkfs.ext4 -b 4096 -E stride=512,stripe_width=512")
    return _f(subj, "mount", "pte", "fs-geometry-unaligned",
              f"{geom.fstype}: {what}: file data is not 2 MiB aligned, expect extent-too-short / pfn-unaligned "
              f"fallbacks", rem + "; then fallocate files", reason="extent-too-short", geometry=geom.to_json())


def mount_findings(state, m, pmem_disks):
    out = []
    subj = m.mountpoint
    disk = _disk_of(state, m.major, m.minor)
    on_pmem = disk is not None and (disk[0] in pmem_disks)
    dax = m.dax
    details = dict(source=m.source, fstype=m.fstype, dax=dax, device=f"{m.major}:{m.minor}")
    if not on_pmem and dax in (None, "never"):
        return out
    if dax in (None, "never"):
        out.append(_f(subj, "mount", "no-dax", "mount-no-dax", **details))
        return out
    if dax == "inode":
        out.append(_f(subj, "mount", "info", "mount-dax-inode", **details))
    else:
        out.append(_f(subj, "mount", "info", "mount-dax", f"{m.fstype} on {m.source} mounted with dax={dax}", **details))
    if disk and disk[1] is not None:
        part = state.inv.partition(disk[1])
        if part is not None and part.start % PMD:
            out.append(_f(subj, "partition", "pte", "partition-unaligned",
                          f"{part.name} starts at sector {part.start // 512} ({format_size(part.start)}): "
                          f"{format_size(part.start % PMD)} past a 2 MiB boundary (pfn-unaligned)",
                          reason="pfn-unaligned", partition=part.name, start=part.start))
    geom, why = mounts_mod.read_geometry(m, state.roots)
    if geom is not None:
        out.append(geometry_finding(subj, geom))
    else:
        out.append(_f(subj, "mount", "info", "fs-geometry-unknown", f"filesystem geometry not read: {why}"))
    return out


def _disk_of(state, major, minor):
    """(disk, partition-or-None) for a block dev_t via /sys/dev/block."""
    p = state.roots.sys("dev", "block", f"{major}:{minor}")
    if state.roots.exists(p):
        real = state.roots.realpath(p)
    else:
        real = None
        for name, path in inv_mod.block_devices(state.roots).items():
            if state.roots.read(os.path.join(path, "dev"), note=False) == f"{major}:{minor}":
                real = path
                break
        if real is None:
            return None
    name = os.path.basename(real)
    if state.roots.exists(os.path.join(real, "partition")):
        return os.path.basename(os.path.dirname(real)), name
    return name, None


def kernel_findings(k, live=True):
    out = []
    d = {"release": k.release, "config": k.config}
    if k.thp_enabled is not None:
        out.append(_f("kernel", "kernel", "info", "thp-sysfs-not-dax",
                      f"transparent_hugepage/enabled is [{k.thp_enabled}]: this does not govern DAX mappings "
                      f"(only MADV_NOHUGEPAGE and PR_SET_THP_DISABLE do)", thp_enabled=k.thp_enabled))
    if k.config.get("CONFIG_FS_DAX_PMD") == "n" or (k.config and "CONFIG_FS_DAX_PMD" not in k.config
                                                     and "CONFIG_FS_DAX" in k.config):
        out.append(Finding("kernel", "kernel", "pte", "fs-dax-pmd-off",
                           "CONFIG_FS_DAX_PMD is off: every fsdax PMD fault returns VM_FAULT_FALLBACK",
                           "use a kernel with CONFIG_FS_DAX_PMD=y (needs TRANSPARENT_HUGEPAGE)", d))
    if not k.fs_dax_events:
        out.append(_f("kernel", "kernel", "info", "no-fs-dax-tracepoints"))
    if not live:
        if k.kprobes is False:
            out.append(_f("kernel", "kernel", "info", "bcc-unavailable", "bcc cannot run: CONFIG_KPROBES is off"))
    elif not k.bcc_ready:
        why = []
        if not k.bcc_importable:
            why.append("bcc (python3-bpfcc) not importable by this Python (use /usr/bin/python3 or a venv with "
                       "--system-site-packages)")
        if k.kprobes is False:
            why.append("CONFIG_KPROBES is off")
        if not k.headers and not k.btf:
            why.append("no kernel headers and no BTF")
        out.append(_f("kernel", "kernel", "info", "bcc-unavailable", "bcc cannot run here: " + "; ".join(why)))
    return out


def diagnose_host(state):
    """Findings for the whole host (list of :class:`Finding`)."""
    inv = state.inv
    out = []
    pmem_memmap = [m for m in inv.memmap if m["kind"] == "pmem"]
    if pmem_memmap:
        out.append(_f("cmdline", "host", "info", "memmap-emulated",
                      "memmap=" + ",".join(m["text"] for m in pmem_memmap) + ": emulated pmem "
                      "(E820_TYPE_PRAM); contents are lost at reboot", memmap=pmem_memmap))
    if not inv.namespaces and not inv.dax_devices:
        out.append(_f("host", "host", "no-dax", "no-pmem"))
    for ns in inv.namespaces:
        out.extend(namespace_findings(ns, inv, state.release))
    for dev in inv.dax_devices:
        out.extend(dax_findings(dev))
    pmem_disks = set()
    for ns in inv.namespaces:
        for b in (ns.block, ns.pfn.block if ns.pfn else None):
            if b:
                pmem_disks.add(b)
    for m in state.mounts:
        out.extend(mount_findings(state, m, pmem_disks))
    out.extend(kernel_findings(state.kernel, state.roots.live))
    if state.roots.unreadable:
        out.append(_f("host", "host", "warn", "unreadable",
                      f"{len(state.roots.unreadable)} sysfs/procfs files could not be read: the diagnosis is partial",
                      paths=state.roots.unreadable_json()[:20]))
    return out


# ---------------------------------------------------------------------------
# files


@dataclass
class Chunk:
    index: int
    offset: int  # file (or mapping) offset of the chunk
    length: int
    outcome: str  # pmd | pud | pte | huge-zero | zero-pte | sigbus | error | none
    reason: Optional[str]
    layout: str  # hole | unwritten | aligned | unaligned | fragmented | partial
    extents: List[dict] = field(default_factory=list)
    observed: Optional[str] = None  # --observe: what fs_dax tracepoints showed
    observed_events: int = 0

    def to_json(self):
        d = {"index": self.index, "offset": self.offset, "length": self.length, "outcome": self.outcome,
             "reason": self.reason, "layout": self.layout, "extents": self.extents}
        if self.observed is not None:
            d["observed"] = self.observed
            d["observed_events"] = self.observed_events
        return d


@dataclass
class Strip:
    """Per-chunk verdicts for one file or mapping: what svg.py draws."""

    subject: str
    kind: str  # file | mapping
    chunks: List[Chunk]
    findings: List[Finding] = field(default_factory=list)
    case: Optional[dict] = None
    advice: List[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def counts(self):
        c = {}
        for ch in self.chunks:
            c[ch.outcome] = c.get(ch.outcome, 0) + 1
        return c

    def reasons(self):
        c = {}
        for ch in self.chunks:
            if ch.reason:
                c[ch.reason] = c.get(ch.reason, 0) + 1
        return c

    def to_json(self):
        return {"subject": self.subject, "kind": self.kind, "counts": self.counts(), "reasons": self.reasons(),
                "chunks": [c.to_json() for c in self.chunks], "advice": self.advice,
                "findings": [f.to_json() for f in self.findings], "case": self.case, "details": self.details}


def chunk_layout(extents, lo, hi, data_start):
    """How the file's extents cover [lo, hi): hole / unwritten / aligned /
    unaligned / fragmented / partial."""
    inside = [e for e in extents if e["logical"] < hi and e["logical"] + e["length"] > lo]
    if not inside:
        return "hole", []
    covered = sum(min(hi, e["logical"] + e["length"]) - max(lo, e["logical"]) for e in inside)
    desc = [{"logical": e["logical"], "physical": e["physical"], "length": e["length"],
             "unwritten": e.get("unwritten", False)} for e in inside]
    if covered < hi - lo:
        return "partial", desc
    if len(inside) > 1:
        contiguous = all(a["physical"] + a["length"] == b["physical"] and a.get("unwritten") == b.get("unwritten")
                         for a, b in zip(inside, inside[1:]))
        if not contiguous:
            return "fragmented", desc
    e = inside[0]
    phys = data_start + e["physical"] + (lo - e["logical"])
    if phys % PMD:
        return "unaligned", desc
    if all(x.get("unwritten") for x in inside):
        return "unwritten", desc
    return "aligned", desc


def read_extents(path, fiemap=None):
    """FIEMAP extents of *path* as dicts, via the workload engine
    (``pmemtrace.workload.engine.fiemap``) or an injected callable."""
    if fiemap is None:
        try:
            from ..workload.engine import fiemap  # noqa: F811 - the cffi engine
        except Exception as exc:  # noqa: BLE001 - engine not built
            raise NoDaxMapping(f"{path}: cannot read extents: the workload engine is not available ({exc}); "
                               f"build it with pip install -e .") from None
    try:
        exts = fiemap(path)
    except OSError as exc:
        raise NoDaxMapping(f"{path}: FIEMAP failed: {exc.strerror or exc}") from None
    out = []
    for e in exts:
        if isinstance(e, dict):
            out.append(dict(e))
        else:
            out.append({"logical": e.logical, "physical": e.physical, "length": e.length,
                        "unwritten": bool(getattr(e, "unwritten", False))})
    return out


def _round_up(x, a):
    return (x + a - 1) // a * a


ADVICE = {
    "extent-too-short": "allocate the file in 2 MiB extents before use: on xfs `xfs_io -c 'extsize 2m'` on the "
                        "(empty) file or its directory, or mkfs.xfs -d su=2m,sw=1; on ext4 mkfs.ext4 -E stride=512; "
                        "then fallocate -l SIZE FILE",
    "pfn-unaligned": "the file's blocks are not 2 MiB aligned on the device: fix the namespace data start "
                     "(ndctl --align=2M), the partition start (sector 4096), and the fs allocation (su=2m / "
                     "stride=512), then rewrite the file",
    "beyond-eof": "make the file size a multiple of 2 MiB (truncate -s / fallocate)",
    "sigbus-eof": "extend the file before mapping past its end",
    "vma-end": "map a multiple of 2 MiB",
    "vma-start": "map at a 2 MiB aligned address (let the kernel choose: addr=NULL)",
    "pmd-colour-mismatch": "keep address and file offset congruent modulo 2 MiB",
    "private-write": "use MAP_SHARED",
    "nohugepage": "drop MADV_NOHUGEPAGE",
    "thp-disabled": "do not set PR_SET_THP_DISABLE",
}


def _advice(strip):
    out = []
    for code in strip.reasons():
        a = ADVICE.get(code) or (REASONS[code].remedy if code in REASONS else None)
        if a and a not in out:
            out.append(f"{code}: {a}")
    return out


def _chunks_from_prediction(pred, offsets, lengths, extents, data_start):
    chunks = []
    for i, (r, off, ln) in enumerate(zip(pred.results, offsets, lengths)):
        outcome = r.outcome
        # 'none' for a first touch means the access found nothing to do; keep it
        layout, desc = ("n/a", []) if extents is None else chunk_layout(extents, off, off + ln, data_start)
        chunks.append(Chunk(i, off, ln, outcome, r.reason, layout, desc))
    return chunks


def file_device(state, st):
    """(namespace, partition, disk, data_start) for a file's st_dev."""
    maj, mnr = os.major(st.st_dev), os.minor(st.st_dev)
    d = _disk_of(state, maj, mnr)
    if d is None:
        return None, None, None, None
    disk, partname = d
    ns = state.inv.namespace_by_block(disk)
    part = state.inv.partition(partname) if partname else None
    if ns is None or ns.data_start is None:
        return ns, part, disk, None
    return ns, part, disk, ns.data_start + (part.start if part else 0)


def build_file_case(state, path, st, mount, extents, ns, part, data_start, op="write"):
    size = st.st_size
    nchunks = max(1, _round_up(size, PMD) // PMD)
    dev_size = None
    if part is not None and part.size:
        dev_size = part.size
    elif ns is not None and ns.data_size:
        dev_size = ns.data_size
    pfn_map = "raw"
    if ns is not None and ns.pfn is not None:
        pfn_map = {"ram": "mem", "pmem": "dev"}.get(ns.pfn.mode, "mem")
    align = ns.pfn.align if ns is not None and ns.pfn is not None and ns.pfn.align in (PAGE, PMD, PUD) else PMD
    ext_case = []
    for e in extents:
        if e["length"] % PAGE or e["logical"] % PAGE or e["physical"] % PAGE:
            continue  # inline/tail extents: not DAX-mappable, leave as holes
        ext_case.append({"logical": e["logical"], "physical": e["physical"], "length": e["length"],
                         "unwritten": bool(e.get("unwritten"))})
    # map whole PMDs: the file-level reasons (beyond-eof) show, not the mapping length (vma-end)
    maplen = _round_up(max(size, PAGE), PMD)
    case = {
        "version": 1,
        "name": f"diagnose {path}",
        "kernel": _release_for_model(state.release),
        "device": {"mode": "fsdax", "map": pfn_map, "align": align, "data_start": data_start or 0,
                   "dev": f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"},
        "file": {"size": size, "ino": st.st_ino, "fs": "ext4" if mount and mount.fstype.startswith("ext") else "xfs",
                 "extents": ext_case},
        "mappings": [{"id": "m0", "start": 0x7F0000000000, "length": maplen, "offset": 0, "shared": True}],
        "accesses": [{"mapping": "m0", "offset": i * PMD, "op": op} for i in range(nchunks) if i * PMD < maplen],
    }
    if dev_size:
        case["device"]["size"] = dev_size
    return case


def diagnose_file(state, path, op="write", fiemap=None, st=None):
    """Per-chunk verdicts for one file.  *fiemap* (path -> extents) and *st*
    (an ``os.stat_result``) may be injected to replay a recorded file on a
    fixture tree; by default both come from the live file."""
    if st is None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file") from None
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
    import stat as stat_mod

    if not stat_mod.S_ISREG(st.st_mode):
        raise UsageError(f"{path}: not a regular file (diagnose FILE takes files on a DAX filesystem; "
                         f"for device-dax use `pmemtrace diagnose` or --pid)")
    strip = Strip(path, "file", [])
    mount = mounts_mod.mount_for_dev(state.mounts, os.major(st.st_dev), os.minor(st.st_dev))
    if mount is None and state.roots.live:
        mount = mounts_mod.mount_for_path(state.mounts, os.path.realpath(path))
    if mount is None or mount.dax in (None, "never"):
        fs = f"{mount.fstype} at {mount.mountpoint}" if mount else "an unknown filesystem"
        strip.findings.append(_f(path, "file", "no-dax", "mount-no-dax",
                                 f"{path} is on {fs}, not mounted with DAX: no DAX mappings (page cache)",
                                 "put it on a filesystem mounted -o dax on a pmem device"))
        strip.details = {"size": st.st_size, "mount": mount.to_json() if mount else None}
        return strip
    if mount.dax == "inode":
        strip.findings.append(_f(path, "file", "info", "mount-dax-inode"))
    ns, part, disk, data_start = file_device(state, st)
    if data_start is None:
        strip.findings.append(_f(path, "file", "warn", "device-unknown", disk=disk))
        data_start = 0
    elif data_start % PMD:
        why = (f"partition {part.name} starts at sector {part.start // 512}" if part and part.start % PMD
               else f"namespace {ns.name} data starts at {ns.data_start:#x}")
        strip.findings.append(_f(path, "file", "pte", "pfn-unaligned",
                                 f"the device's byte 0 is {format_size(data_start % PMD)} past a 2 MiB boundary "
                                 f"({why}): no chunk can be PMD-mapped", reason="pfn-unaligned"))
    extents = read_extents(path, fiemap)
    case = build_file_case(state, path, st, mount, extents, ns, part, data_start, op)
    try:
        pred = explain(parse_case(case))
    except CaseError as exc:
        strip.findings.append(Finding(path, "file", "error", "case-error", f"cannot model this file: {exc}", ""))
        strip.case = case
        return strip
    offs = [a["offset"] for a in case["accesses"]]
    lens = [min(PMD, case["file"]["size"] - o) if case["file"]["size"] > o else PMD for o in offs]
    strip.chunks = _chunks_from_prediction(pred, offs, lens, extents, data_start)
    strip.case = case
    strip.advice = _advice(strip)
    strip.details = {"size": st.st_size, "ino": st.st_ino, "mount": mount.to_json(),
                     "namespace": ns.name if ns else None, "partition": part.name if part else None,
                     "data_start": data_start, "extents": len(extents), "profile": pred.profile.name, "op": op}
    return strip


# ---------------------------------------------------------------------------
# processes


def _dax_device_for_path(state, path):
    name = os.path.basename(path)
    for d in state.inv.dax_devices:
        if d.name == name:
            return d
    return None


def build_mapping_case(state, pm, extents=None, data_start=0, dev=None, size=None, thp_disable=False, fs="xfs",
                       ns=None):
    """Case for one /proc/PID/maps mapping: first touch of every 2 MiB
    virtual chunk it overlaps (op write when shared+writable, else read)."""
    op = "write" if pm.writable and pm.shared else "read"
    lo = pm.start
    accesses = []
    while lo < pm.end:
        accesses.append({"mapping": "m0", "offset": lo - pm.start, "op": op})
        lo = (lo // PMD + 1) * PMD
    mapping = {"id": "m0", "start": pm.start, "length": pm.length, "offset": pm.offset, "shared": pm.shared,
               "sync": pm.sync, "nohugepage": pm.nohugepage, "writable": pm.writable}
    case = {"version": 1, "name": f"mapping {pm.start:#x}-{pm.end:#x} {pm.path}",
            "kernel": _release_for_model(state.release), "mappings": [mapping], "accesses": accesses,
            "process": {"thp_disable": bool(thp_disable)}}
    if dev is not None:
        case["device"] = {"mode": "devdax", "align": dev.align or PAGE,
                          "ranges": [{"start": r.start, "length": r.length, "pgoff": r.page_offset}
                                     for r in dev.ranges]}
        if not dev.ranges:
            case["device"]["size"] = dev.size or 0
    else:
        pfn_map = "raw"
        if ns is not None and ns.pfn is not None:
            pfn_map = {"ram": "mem", "pmem": "dev"}.get(ns.pfn.mode, "mem")
        case["device"] = {"mode": "fsdax", "map": pfn_map, "data_start": data_start or 0,
                          "dev": f"{pm.major}:{pm.minor}"}
        case["file"] = {"size": size if size is not None else pm.offset + pm.length, "ino": pm.inode, "fs": fs,
                        "extents": [{"logical": e["logical"], "physical": e["physical"], "length": e["length"],
                                     "unwritten": bool(e.get("unwritten"))} for e in (extents or [])
                                    if not (e["length"] % PAGE or e["logical"] % PAGE or e["physical"] % PAGE)]}
    return case


def diagnose_pid(state, pid, fiemap=None):
    """Strips for every DAX mapping of process *pid*."""
    maps, source = procmaps.read_process_maps(state.roots, pid)
    if maps is None:
        if not state.roots.exists(state.roots.proc(str(pid))):
            raise UsageError(f"no process {pid}")
        raise UsageError(f"cannot read /proc/{pid}/smaps or maps (permission denied: run as the process's owner "
                         f"or root)")
    status = procmaps.read_status(state.roots, pid)
    thp_dis = procmaps.thp_disabled(status) or False
    pmounts = mounts_mod.read_mounts(state.roots, pid) or state.mounts
    strips = []
    for pm in maps:
        if not pm.path.startswith("/"):
            continue
        dev = _dax_device_for_path(state, pm.path) if pm.path.startswith("/dev/dax") else None
        mount = None
        if dev is None:
            mount = mounts_mod.mount_for_dev(pmounts, pm.major, pm.minor)
            if mount is None or mount.dax in (None, "never"):
                continue
        subject = f"{pm.start:#x}-{pm.end:#x} {pm.path}"
        strip = Strip(subject, "mapping", [])
        strip.details = {"pid": pid, "start": pm.start, "end": pm.end, "offset": pm.offset, "perms": pm.perms,
                         "vmflags": pm.vmflags, "path": pm.path, "source": source, "thp_disable": thp_dis}
        extents, size, ns, data_start = None, None, None, 0
        if dev is None:
            strip.details["mount"] = mount.mountpoint
            path = pm.path[:-len(" (deleted)")] if pm.path.endswith(" (deleted)") else pm.path
            if state.roots.live:
                try:
                    st = os.stat(path)
                    size = st.st_size
                    ns, part, disk, data_start = file_device(state, st)
                    extents = read_extents(path, fiemap)
                except (OSError, NoDaxMapping) as exc:
                    strip.findings.append(_f(subject, "mapping", "warn", "extents-unknown",
                                             f"file extents not read ({exc}): predicted as one aligned extent"))
            else:
                strip.findings.append(_f(subject, "mapping", "info", "extents-unknown"))
            if extents is None:
                size = size if size is not None else pm.offset + pm.length
                extents = [{"logical": 0, "physical": 0, "length": _round_up(size, PAGE)}]
            data_start = data_start or 0
        case = build_mapping_case(state, pm, extents, data_start, dev, size, thp_dis,
                                  "ext4" if mount and mount.fstype.startswith("ext") else "xfs", ns)
        try:
            pred = explain(parse_case(case))
        except CaseError as exc:
            strip.findings.append(Finding(subject, "mapping", "error", "case-error", f"cannot model: {exc}", ""))
            strip.case = case
            strips.append(strip)
            continue
        offs = [a["offset"] for a in case["accesses"]]
        lens = [min((pm.start + o) // PMD * PMD + PMD, pm.end) - (pm.start + o) for o in offs]
        strip.chunks = []
        for i, (r, o, ln) in enumerate(zip(pred.results, offs, lens)):
            outcome, reason = r.outcome, r.reason
            if pred.mapping_errors.get("m0"):
                outcome, reason = "error", pred.mapping_errors["m0"]
            strip.chunks.append(Chunk(i, o, ln, outcome, reason, "n/a"))
        strip.case = case
        strip.advice = _advice(strip)
        strips.append(strip)
    return strips
