"""What the kernel offers: release, config, fs_dax tracepoints, probe points,
whether bcc can run (kprobes, headers, BTF), THP settings.

All paths come from :class:`~pmemtrace.host.fsread.Roots`.  bcc is never
imported here: ``importlib.util.find_spec`` only looks for it.
"""

import gzip
import importlib.util
import os
from dataclasses import asdict, dataclass, field
from typing import Optional

FS_DAX_EVENTS = (
    "dax_pmd_fault",
    "dax_pmd_fault_done",
    "dax_pmd_load_hole",
    "dax_pmd_load_hole_fallback",
    "dax_pmd_insert_mapping",
    "dax_pte_fault",
    "dax_pte_fault_done",
    "dax_load_hole",
    "dax_insert_pfn_mkwrite",
    "dax_insert_pfn_mkwrite_no_entry",
    "dax_insert_mapping",
    "dax_writeback_range",
    "dax_writeback_range_done",
    "dax_writeback_one",
)

# Functions pmemtrace's probes use; which exist differs by kernel
# (lab-recipe.md "Probe points differ by kernel").
PROBE_POINTS = (
    "dax_iomap_pmd_fault",
    "dax_iomap_pte_fault",
    "vmf_insert_pfn_pmd",
    "vmf_insert_pfn_pmd_prot",
    "vmf_insert_folio_pmd",
    "vmf_insert_folio_pud",
    "insert_pmd",
    "get_dev_pagemap",
    "follow_devmap_pmd",
    "pin_user_pages_fast",
    "get_user_pages_fast",
    "__get_user_pages",
    "dev_dax_huge_fault",
    "__dev_dax_pmd_fault",
    "__dev_dax_pte_fault",
    "__dev_dax_pud_fault",
    "dax_fault_check_fallback",
)

CONFIG_KEYS = (
    "CONFIG_FS_DAX",
    "CONFIG_FS_DAX_PMD",
    "CONFIG_DEV_DAX",
    "CONFIG_DEV_DAX_PMEM",
    "CONFIG_DEV_DAX_HMEM",
    "CONFIG_DEV_DAX_CXL",
    "CONFIG_DEV_DAX_KMEM",
    "CONFIG_ZONE_DEVICE",
    "CONFIG_TRANSPARENT_HUGEPAGE",
    "CONFIG_X86_PMEM_LEGACY",
    "CONFIG_BLK_DEV_PMEM",
    "CONFIG_KPROBES",
    "CONFIG_BPF_SYSCALL",
    "CONFIG_DEBUG_INFO_BTF",
    "CONFIG_MODULES",
    "CONFIG_LIBNVDIMM",
    "CONFIG_ND_PFN",
)


@dataclass
class KernelInfo:
    release: Optional[str] = None
    config_source: Optional[str] = None
    config: dict[str, str] = field(default_factory=dict)  # only CONFIG_KEYS
    tracefs: Optional[str] = None
    fs_dax_events: list[str] = field(default_factory=list)
    probe_points: dict[str, bool] = field(default_factory=dict)
    kallsyms_readable: bool = False
    btf: bool = False
    kprobes: Optional[bool] = None
    headers: Optional[str] = None
    bcc_importable: bool = False
    thp_enabled: Optional[str] = None
    thp_defrag: Optional[str] = None

    @property
    def bcc_ready(self):
        return bool(self.bcc_importable and self.kprobes is not False and (self.headers or self.btf))

    def to_json(self):
        d = asdict(self)
        d["bcc_ready"] = self.bcc_ready
        return d


def parse_config(text):
    out = {}
    for line in (text or "").splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, _, v = line.partition("=")
            out[k] = v
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2:-11]] = "n"
    return out


def _selected(text):
    """THP sysfs: 'always [madvise] never' -> 'madvise'."""
    if not text:
        return None
    for w in text.split():
        if w.startswith("[") and w.endswith("]"):
            return w[1:-1]
    return text


def read_kernel(roots, modules_root="/lib/modules"):
    k = KernelInfo()
    k.release = roots.read(roots.proc("sys", "kernel", "osrelease"))
    if k.release is None and not roots.live:
        # recorded fixture trees name the kernel in META.json next to sys/
        try:
            import json

            with open(roots.sys("..", "META.json")) as f:
                k.release = json.load(f).get("kernel")
        except (OSError, ValueError, AttributeError):
            pass
    cfg = None
    try:
        with gzip.open(roots.proc("config.gz"), "rt") as f:
            cfg = f.read()
        k.config_source = roots.proc("config.gz")
    except (OSError, EOFError):
        pass
    if cfg is None and k.release:
        p = os.path.join(roots.boot, f"config-{k.release}")
        cfg = roots.read(p, note=False)
        if cfg:
            k.config_source = p
    if cfg is None:
        p = roots.sys("..", "config")  # fixture trees may carry config next to sys/
        cfg = roots.read(p, note=False)
        if cfg:
            k.config_source = p
    allcfg = parse_config(cfg)
    k.config = {key: allcfg[key] for key in CONFIG_KEYS if key in allcfg}
    for t in (roots.sys("kernel", "tracing"), roots.sys("kernel", "debug", "tracing")):
        ev = roots.listdir(os.path.join(t, "events", "fs_dax"))
        if ev:
            k.tracefs = t
            k.fs_dax_events = [e for e in ev if not e.startswith(("enable", "filter"))]
            break
    syms = roots.read(roots.proc("kallsyms"), note=False)
    names = set()
    if syms:
        k.kallsyms_readable = True
        for line in syms.splitlines():
            parts = line.split()
            if len(parts) >= 3:
                names.add(parts[2])
        k.probe_points = {p: p in names for p in PROBE_POINTS}
    k.btf = roots.exists(roots.sys("kernel", "btf", "vmlinux"))
    if "CONFIG_KPROBES" in k.config:
        k.kprobes = k.config["CONFIG_KPROBES"] == "y"
    elif roots.exists(roots.sys("bus", "event_source", "devices", "kprobe")):
        k.kprobes = True
    if roots.live and k.release:
        h = os.path.join(modules_root, k.release, "build")
        k.headers = h if os.path.exists(os.path.join(h, "include")) else None
        k.bcc_importable = importlib.util.find_spec("bcc") is not None
    k.thp_enabled = _selected(roots.read(roots.sys("kernel", "mm", "transparent_hugepage", "enabled"), note=False))
    k.thp_defrag = _selected(roots.read(roots.sys("kernel", "mm", "transparent_hugepage", "defrag"), note=False))
    return k


def release_for_model(release: Optional[str]) -> Optional[str]:
    """*release* when the model has a profile for it, else None (the model's
    default profile): an unparsable host release must not stop a diagnosis."""
    from ..errors import UsageError
    from ..model.profiles import parse_release

    if release is None:
        return None
    try:
        parse_release(release)
    except (UsageError, ValueError):  # ValueError: digits beyond int()'s limit
        return None
    return release
