"""The codes of ``pmemtrace diagnose``: host codes (what a namespace, dax
device, mount or kernel setting means for 2 MiB DAX mappings, with the
kernel rule and the remedy), the :class:`Finding` that carries one, and the
advice per fallback reason.  Model reason codes live in
:data:`pmemtrace.model.reasons.REASONS`; a finding names one or the other."""

from dataclasses import dataclass, field

from ..model.reasons import REASONS


@dataclass(frozen=True)
class HostCode:
    code: str
    summary: str
    remedy: str
    rule: str = ""


HOST_CODE_LIST = [
    HostCode("pmd-capable", "2 MiB faults possible", ""),
    HostCode(
        "ns-data-unaligned",
        "namespace data does not start on a 2 MiB boundary: every fsdax PMD fault falls back",
        "ndctl create-namespace -f -e NAMESPACE -m fsdax --align=2M (the data start is then 2 MiB aligned)",
        "dax_iomap_direct_access(): pfn & (PHYS_PFN(PMD_SIZE)-1) -> fallback (fs/dax.c)",
    ),
    HostCode(
        "ns-raw",
        "namespace in raw mode without struct pages: no DAX at all (mount -o dax fails)",
        "ndctl create-namespace -f -e NAMESPACE -m fsdax",
        "pmem_attach_disk(): QUEUE_FLAG_DAX only with PFN_MAP (drivers/nvdimm/pmem.c)",
    ),
    HostCode(
        "ns-sector",
        "namespace in sector (BTT) mode: no DAX",
        "ndctl create-namespace -f -e NAMESPACE -m fsdax",
        "BTT devices do not support dax_direct_access (drivers/nvdimm/btt.c)",
    ),
    HostCode("ns-unknown-mode", "namespace mode not recognised", "check `ndctl list -N`"),
    HostCode(
        "ns-layout-error",
        "the kernel rejects this namespace geometry",
        "ndctl create-namespace with a 2 MiB aligned start/size (or --align=2M)",
    ),
    HostCode(
        "memmap-emulated",
        "emulated pmem from memmap=nn!ss on the kernel command line (E820_TYPE_PRAM): contents are lost at reboot",
        "",
        "arch/x86/kernel/e820.c parse_memmap_one()",
    ),
    HostCode(
        "memmap-ram",
        "struct pages for this namespace live in System RAM",
        "ndctl create-namespace -f -e NAMESPACE "
        "-m fsdax --map=dev to keep them on the device (costs 64 B per 4 KiB of pmem there)",
    ),
    HostCode("memmap-device", "struct pages for this namespace live on the device (--map=dev)", ""),
    HostCode("devdax-pmd", "device-dax align 2 MiB: 2 MiB faults", ""),
    HostCode("devdax-pud", "device-dax align 1 GiB: 1 GiB faults; mappings must be 1 GiB aligned and sized", ""),
    HostCode(
        "devdax-align-4k",
        "device-dax align 4K: only 4 KiB faults",
        "daxctl reconfigure-device --align=2M DEVICE (or ndctl create-namespace -m devdax --align=2M)",
        "__dev_dax_pmd_fault(): PMD_SIZE > dev_dax->align -> VM_FAULT_FALLBACK (drivers/dax/device.c)",
    ),
    HostCode(
        "dax-range-unaligned",
        "a device-dax range is not aligned to the device's align",
        "recreate the device so every range is align-aligned (daxctl create-device --align ...)",
        "dax_pgoff_to_phys()/alloc_dev_dax_range() (drivers/dax/bus.c)",
    ),
    HostCode(
        "dax-system-ram",
        "device-dax memory onlined as System RAM (kmem): it is not mappable as DAX",
        "daxctl reconfigure-device --mode=devdax DEVICE (offline the memory first)",
    ),
    HostCode("dax-unbound", "device-dax device bound to no driver: /dev/daxX.Y absent", "daxctl enable-device DEVICE"),
    HostCode(
        "dax-no-namespace",
        "device-dax with no libnvdimm namespace behind it (CXL or hmem/Soft Reserved): "
        "ndctl does not manage it, daxctl does",
        "",
    ),
    HostCode(
        "partition-unaligned",
        "the partition does not start on a 2 MiB boundary: every physical block is off by its start",
        "repartition with the first partition at sector 4096 (parted -a optimal ... 2MiB), "
        "not fdisk's 2048; or use the whole device",
        "fs/dax.c dax_iomap_direct_access() pfn alignment",
    ),
    HostCode(
        "mount-no-dax",
        "filesystem on pmem mounted without DAX: the page cache is used, no DAX mappings",
        "mount -o dax (ext4, xfs: dax=always)",
    ),
    HostCode(
        "mount-dax-inode",
        "dax=inode: only files with FS_XFLAG_DAX set (xfs_io -c 'chattr +x', ext4 chattr +x) are DAX",
        "mount -o dax=always, or set the flag on the directory before creating files",
    ),
    HostCode("mount-dax", "mounted with DAX", ""),
    HostCode(
        "fs-geometry-unaligned",
        "the filesystem does not align file data to 2 MiB: files get extents that are "
        "short or not 2 MiB aligned physically",
        "mkfs.xfs -f -d su=2m,sw=1 (plus xfs_io -c 'extsize 2m' DIR), or "
        "mkfs.ext4 -b 4096 -E stride=512,stripe_width=512; then fallocate files",
    ),
    HostCode("fs-geometry-2m", "the filesystem aligns allocations to 2 MiB (stripe unit)", ""),
    HostCode("fs-geometry-unknown", "filesystem geometry not readable", "run as root (dumpe2fs/xfs_info)"),
    HostCode(
        "thp-sysfs-not-dax",
        "the sysfs THP setting does not govern DAX mappings (only MADV_NOHUGEPAGE and PR_SET_THP_DISABLE do)",
        "",
        "__thp_vma_allowable_orders(): vma_is_dax() -> in_pf ? orders : 0",
    ),
    HostCode(
        "no-fs-dax-tracepoints",
        "no fs_dax tracepoints visible: observed faults cannot be shown",
        "mount -t tracefs nodev /sys/kernel/tracing (as root)",
    ),
    HostCode("bcc-unavailable", "bcc cannot run here", "install python3-bpfcc and kernel headers; needs kprobes"),
    HostCode(
        "no-pmem",
        "no persistent memory devices found",
        "memmap=1G!4G on the kernel command line emulates some; `pmemtrace lab` boots such kernels",
    ),
    HostCode(
        "device-unknown",
        "the file's block device is not a pmem namespace pmemtrace can see: its physical "
        "alignment is unknown (assumed 2 MiB aligned)",
        "",
    ),
    HostCode(
        "extents-unknown", "file extents unknown (fixture tree or unreadable file): predicted as one aligned extent", ""
    ),
    HostCode("unreadable", "some sysfs/procfs files could not be read: the diagnosis is partial", "run as root"),
]
HOST_CODES = {h.code: h for h in HOST_CODE_LIST}


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
        return {
            "subject": self.subject,
            "kind": self.kind,
            "verdict": self.verdict,
            "code": self.code,
            "message": self.message,
            "remedy": self.remedy,
            "details": self.details,
        }


def finding(subject, kind, verdict, code, message=None, remedy=None, **details):
    """A :class:`Finding` whose message and remedy default to the code's own
    (a host code's, else a model reason's)."""
    h = HOST_CODES.get(code)
    r = REASONS.get(code)
    if message is None:
        message = h.summary if h else (r.summary if r else code)
    if remedy is None:
        remedy = h.remedy if h else (r.remedy if r else "")
    return Finding(subject, kind, verdict, code, message, remedy, details)


def ns_remedy(text, ns):
    """A remedy with the namespace's name in place of NAMESPACE."""
    return text.replace("NAMESPACE", ns)


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


def advice_for(reasons):
    """ "code: remedy" lines for the fallback *reasons* (an iterable of codes)."""
    out = []
    for code in reasons:
        a = ADVICE.get(code) or (REASONS[code].remedy if code in REASONS else None)
        if a and a not in out:
            out.append(f"{code}: {a}")
    return out
