"""Verdicts on the host: the documented manual checklist
(peers-and-users.md) done by code, one list of :class:`~.codes.Finding` per
namespace, dax device, DAX mount and kernel capability.  Every finding names
a kernel rule (a model reason or a host code) and the remedy."""

from ..errors import UsageError
from ..model.geometry import namespace_layout
from ..units import format_size
from . import inventory as inv_mod
from . import kernel as kernel_mod
from . import mounts as mounts_mod
from .codes import HOST_CODES, Finding
from .codes import finding as _f
from .codes import ns_remedy as _ns_remedy
from .kernel import release_for_model

PAGE = 4096
PMD = 2 << 20
PUD = 1 << 30


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


def namespace_findings(ns, inv, release):
    out = []
    subj = ns.name
    if ns.mode == "raw":
        out.append(_f(subj, "namespace", "no-dax", "ns-raw", remedy=_ns_remedy(HOST_CODES["ns-raw"].remedy, subj)))
        return out
    if ns.mode == "sector":
        out.append(
            _f(subj, "namespace", "no-dax", "ns-sector", remedy=_ns_remedy(HOST_CODES["ns-sector"].remedy, subj))
        )
        return out
    if ns.mode.startswith("unknown"):
        out.append(
            _f(
                subj,
                "namespace",
                "warn",
                "ns-unknown-mode",
                f"namespace mode {ns.kernel_mode!r} not recognised (expected raw, memory, dax, safe)",
            )
        )
        return out
    if ns.mode == "devdax":
        dev = next((d for d in inv.dax_devices if d.nd_parent == (ns.pfn.name if ns.pfn else None)), None)
        out.append(
            _f(
                subj,
                "namespace",
                "info",
                "devdax-pmd" if (ns.pfn and ns.pfn.align == PMD) else "mount-dax",
                f"devdax namespace: its device is {dev.name if dev else (ns.pfn.name if ns.pfn else '?')} "
                f"(align {format_size(ns.pfn.align) if ns.pfn and ns.pfn.align else '?'})",
                remedy="",
                data_start=ns.data_start,
                data_size=ns.data_size,
            )
        )
        return out
    # fsdax
    data_start = ns.data_start
    details = dict(
        mode="fsdax",
        bus=ns.bus,
        resource=ns.resource,
        size=ns.size,
        data_start=data_start,
        data_size=ns.data_size,
        block=ns.block or (ns.pfn.block if ns.pfn else None),
    )
    pfn_map = {"ram": "mem", "pmem": "dev"}.get(ns.pfn.mode) if ns.pfn else None
    if ns.resource is not None and ns.size:
        try:
            lay = namespace_layout(
                ns.size,
                ns.resource,
                "fsdax" if ns.pfn else "raw",
                pfn_map or "mem",
                (ns.pfn.align if ns.pfn and ns.pfn.align in (PAGE, PMD, PUD) else PMD),
                release=release_for_model(release),
                bus=ns.bus,
            )
            details["model_layout"] = lay.to_json()
            if lay.error:
                out.append(_f(subj, "namespace", "error", "ns-layout-error", f"model: {lay.error}"))
            elif ns.pfn and ns.pfn.resource is not None and lay.data_start != ns.pfn.resource:
                details["model_disagrees"] = f"sysfs data start {ns.pfn.resource:#x}, model {lay.data_start:#x}"
        except UsageError as exc:
            details["model_layout_error"] = str(exc)
    if data_start is None:
        out.append(_f(subj, "namespace", "warn", "unreadable", "namespace data start not readable"))
    elif data_start % PMD:
        off = data_start % PMD
        out.append(
            _f(
                subj,
                "namespace",
                "pte",
                "ns-data-unaligned",
                f"namespace data starts {format_size(off)} past a 2 MiB boundary ({data_start:#x}): "
                f"every fsdax PMD fault falls back (pfn-unaligned)",
                _ns_remedy(HOST_CODES["ns-data-unaligned"].remedy, subj),
                reason="pfn-unaligned",
                **details,
            )
        )
    else:
        out.append(
            _f(
                subj,
                "namespace",
                "pmd",
                "pmd-capable",
                f"fsdax, data starts 2 MiB aligned at {data_start:#x}"
                + (
                    f" ({format_size(data_start - ns.resource)} into the namespace)"
                    if ns.resource is not None and data_start != ns.resource
                    else ""
                ),
                "",
                **details,
            )
        )
    npfns = (ns.data_size or ns.size or 0) // PAGE
    if ns.pfn is None or ns.pfn.mode == "ram":
        mb = 64 * npfns
        out.append(
            _f(
                subj,
                "namespace",
                "info",
                "memmap-ram",
                f"map=mem: struct pages use {format_size(mb) if mb % (1 << 20) == 0 else f'{mb / (1 << 20):.1f}M'} "
                f"of System RAM (64 B per 4 KiB)",
                "" if ns.bus == "e820" and ns.pfn is None else _ns_remedy(HOST_CODES["memmap-ram"].remedy, subj),
                memmap_bytes=mb,
            )
        )
    else:
        mb = 64 * npfns
        out.append(
            _f(
                subj,
                "namespace",
                "info",
                "memmap-device",
                f"map=dev: struct pages use {format_size(mb) if mb % (1 << 20) == 0 else f'{mb / (1 << 20):.1f}M'}"
                f" on the device (data offset {format_size((data_start or 0) - (ns.resource or 0))})",
                memmap_bytes=mb,
            )
        )
    return out


def dax_findings(dev):
    out = []
    subj = dev.name
    details = dict(
        align=dev.align,
        size=dev.size,
        driver=dev.driver,
        provider=dev.provider,
        ranges=[{"start": r.start, "end": r.end, "page_offset": r.page_offset} for r in dev.ranges],
        target_node=dev.target_node,
    )
    if dev.provider in ("cxl", "hmem", "unknown") and dev.nd_parent is None:
        out.append(_f(subj, "dax", "info", "dax-no-namespace", provider=dev.provider))
    if dev.mode == "system-ram":
        out.append(
            _f(
                subj,
                "dax",
                "no-dax",
                "dax-system-ram",
                remedy=f"daxctl reconfigure-device --mode=devdax {subj}",
                **details,
            )
        )
        return out
    if dev.mode == "fsdev":
        # famfs mounts it; /dev/daxX.Y itself cannot be mapped (the model's rule)
        out.append(
            _f(
                subj,
                "dax",
                "no-dax",
                "devdax-fsdev-no-mmap",
                remedy=f"map the famfs files on it, or daxctl reconfigure-device --mode=devdax {subj}",
                reason="devdax-fsdev-no-mmap",
                **details,
            )
        )
        return out
    if dev.mode == "unbound":
        out.append(_f(subj, "dax", "no-dax", "dax-unbound", remedy=f"daxctl enable-device {subj}", **details))
        return out
    align = dev.align or PAGE
    bad = [r for r in dev.ranges if r.start % align or r.length % align]
    if bad:
        out.append(
            _f(
                subj,
                "dax",
                "error",
                "dax-range-unaligned",
                f"range {bad[0].start:#x}-{bad[0].end:#x} is not {format_size(align)}-aligned",
                **details,
            )
        )
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
        out.append(
            _f(
                subj,
                "dax",
                "pte",
                "devdax-align-4k",
                f"device-dax align {format_size(align)}: only 4 KiB faults (devdax-align-smaller)",
                f"daxctl reconfigure-device --align=2M {subj}",
                reason="devdax-align-smaller",
                **details,
            )
        )
    return out


def geometry_finding(subj, geom):
    su = geom.stripe_unit or 0
    if geom.extsize and geom.extsize % PMD == 0:
        return _f(
            subj,
            "mount",
            "pmd",
            "fs-geometry-2m",
            f"{geom.fstype} extent size {format_size(geom.extsize)}",
            geometry=geom.to_json(),
        )
    if su and su % PMD == 0:
        return _f(
            subj,
            "mount",
            "pmd",
            "fs-geometry-2m",
            f"{geom.fstype} allocates on {format_size(su)} stripe units ({geom.source})",
            geometry=geom.to_json(),
        )
    what = (f"stripe unit {format_size(su)}" if su else "no stripe unit") + f" ({geom.source})"
    rem = (
        "mkfs.xfs -f -d su=2m,sw=1 (and xfs_io -c 'extsize 2m' on the directory)"
        if geom.fstype == "xfs"
        else "mkfs.ext4 -b 4096 -E stride=512,stripe_width=512"
    )
    return _f(
        subj,
        "mount",
        "pte",
        "fs-geometry-unaligned",
        f"{geom.fstype}: {what}: file data is not 2 MiB aligned, expect extent-too-short / pfn-unaligned fallbacks",
        rem + "; then fallocate files",
        reason="extent-too-short",
        geometry=geom.to_json(),
    )


def mount_findings(state, m, pmem_disks):
    out = []
    subj = m.mountpoint
    disk = inv_mod.disk_of(state.roots, m.major, m.minor)
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
        out.append(
            _f(subj, "mount", "info", "mount-dax", f"{m.fstype} on {m.source} mounted with dax={dax}", **details)
        )
    if disk and disk[1] is not None:
        part = state.inv.partition(disk[1])
        if part is not None and part.start % PMD:
            out.append(
                _f(
                    subj,
                    "partition",
                    "pte",
                    "partition-unaligned",
                    f"{part.name} starts at sector {part.start // 512} ({format_size(part.start)}): "
                    f"{format_size(part.start % PMD)} past a 2 MiB boundary (pfn-unaligned)",
                    reason="pfn-unaligned",
                    partition=part.name,
                    start=part.start,
                )
            )
    geom, why = mounts_mod.read_geometry(m, state.roots)
    if geom is not None:
        out.append(geometry_finding(subj, geom))
    else:
        out.append(_f(subj, "mount", "info", "fs-geometry-unknown", f"filesystem geometry not read: {why}"))
    return out


def kernel_findings(k, live=True):
    out = []
    d = {"release": k.release, "config": k.config}
    if k.thp_enabled is not None:
        out.append(
            _f(
                "kernel",
                "kernel",
                "info",
                "thp-sysfs-not-dax",
                f"transparent_hugepage/enabled is [{k.thp_enabled}]: this does not govern DAX mappings "
                f"(only MADV_NOHUGEPAGE and PR_SET_THP_DISABLE do)",
                thp_enabled=k.thp_enabled,
            )
        )
    if k.config.get("CONFIG_FS_DAX_PMD") == "n" or (
        k.config and "CONFIG_FS_DAX_PMD" not in k.config and "CONFIG_FS_DAX" in k.config
    ):
        out.append(
            Finding(
                "kernel",
                "kernel",
                "pte",
                "fs-dax-pmd-off",
                "CONFIG_FS_DAX_PMD is off: every fsdax PMD fault returns VM_FAULT_FALLBACK",
                "use a kernel with CONFIG_FS_DAX_PMD=y (needs TRANSPARENT_HUGEPAGE)",
                d,
            )
        )
    if not k.fs_dax_events:
        out.append(_f("kernel", "kernel", "info", "no-fs-dax-tracepoints"))
    if not live:
        if k.kprobes is False:
            out.append(_f("kernel", "kernel", "info", "bcc-unavailable", "bcc cannot run: CONFIG_KPROBES is off"))
    elif not k.bcc_ready:
        why = []
        if not k.bcc_importable:
            why.append(
                "bcc (python3-bpfcc) not importable by this Python (use /usr/bin/python3 or a venv with "
                "--system-site-packages)"
            )
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
        out.append(
            _f(
                "cmdline",
                "host",
                "info",
                "memmap-emulated",
                "memmap=" + ",".join(m["text"] for m in pmem_memmap) + ": emulated pmem "
                "(E820_TYPE_PRAM); contents are lost at reboot",
                memmap=pmem_memmap,
            )
        )
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
        out.append(
            _f(
                "host",
                "host",
                "warn",
                "unreadable",
                f"{len(state.roots.unreadable)} sysfs/procfs files could not be read: the diagnosis is partial",
                paths=state.roots.unreadable_json()[:20],
            )
        )
    return out
