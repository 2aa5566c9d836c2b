"""Namespace geometry: where a namespace's data starts and where its memmap
(struct pages) lives, as the kernel computes it.

Mirrors drivers/nvdimm/pfn_devs.c ``nd_pfn_init()`` (info block at 4 KiB,
``SZ_8K`` reserved, ``align = max(nd_pfn->align, memremap_compat_align())``,
``MAX_STRUCT_PAGE_SIZE`` = 64 bytes per 4 KiB page for ``--map=dev``), the
raw/implicit mode of ``memmap=`` (e820) namespaces (drivers/nvdimm/pmem.c
``pmem_attach_disk()``), and the sub-section rule of mm/memory_hotplug.c
``check_pfn_span()``.  kernel-dax-behavior.md sections 11-12.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..units import format_size, parse_int
from .profiles import select_profile

SZ_4K = 4096
SZ_8K = 8192
SUBSECTION = 2 << 20  # memremap_compat_align() on x86 = SUBSECTION_SIZE
SECTION = 128 << 20  # SECTION_SIZE_BITS = 27
MAX_STRUCT_PAGE_SIZE = 64
ALIGNS = {4096: "4K", 2 << 20: "2M", 1 << 30: "1G"}


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _align_down(x: int, a: int) -> int:
    return x // a * a


@dataclass
class Layout:
    size: int
    start: int
    mode: str
    map: str
    align: int
    bus: str
    profile: str
    data_offset: int = 0
    data_size: int = 0
    end_trunc: int = 0
    npfns: int = 0
    memmap_bytes: int = 0
    memmap_location: str = "none"  # device | ram | none
    pfn_mode: str | None = None  # PFN_MODE_PMEM | PFN_MODE_RAM | None (raw)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def data_start(self) -> int:
        return self.start + self.data_offset

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "size": self.size,
            "start": self.start,
            "mode": self.mode,
            "map": self.map,
            "align": self.align,
            "bus": self.bus,
            "profile": self.profile,
        }
        if self.error:
            d["error"] = self.error
        else:
            d.update(
                data_offset=self.data_offset,
                data_start=self.data_start,
                data_size=self.data_size,
                end_trunc=self.end_trunc,
                npfns=self.npfns,
                memmap_bytes=self.memmap_bytes,
                memmap_location=self.memmap_location,
                pfn_mode=self.pfn_mode,
            )
        d["notes"] = list(self.notes)
        return d


def namespace_layout(
    size: int,
    start: int,
    mode: str = "fsdax",
    map: str = "dev",
    align: int = 2 << 20,
    release: str | None = None,
    bus: str = "e820",
) -> Layout:
    """Compute the layout the kernel gives a namespace.

    :param size: namespace size in bytes (its resource length)
    :param start: physical start of the namespace (resource start), bytes
    :param mode: ``fsdax``, ``devdax`` or ``raw``
    :param map: ``dev`` (memmap on the device, PFN_MODE_PMEM) or ``mem``
        (memmap in System RAM, PFN_MODE_RAM)
    :param align: the namespace's ``--align`` (4K, 2M or 1G)
    :param bus: ``e820`` (memmap= / legacy pmem) or ``nfit`` (ACPI NFIT)

    >>> l = namespace_layout(16 << 30, 12 << 30)
    >>> l.data_offset >> 20, l.data_size >> 20
    (258, 16126)
    """
    size, start, align = int(size), int(start), int(align)
    prof = select_profile(release)
    if mode not in ("fsdax", "devdax", "raw"):
        raise UsageError(f"mode must be fsdax, devdax or raw, got {mode!r}")
    if map not in ("dev", "mem"):
        raise UsageError(f"map must be dev or mem, got {map!r}")
    if align not in ALIGNS:
        raise UsageError(f"align must be 4K, 2M or 1G, got {align:#x}")
    lay = Layout(size=size, start=start, mode=mode, map=map, align=align, bus=bus, profile=prof.name)

    if mode == "fsdax" and map == "mem" and bus == "e820":
        # Lab observation (lab-recipe.md): on memmap= (e820) namespaces ndctl
        # --map=mem creates no pfn device; the namespace stays in its raw
        # "memory" mode, which already has struct pages in RAM because e820
        # regions set ND_REGION_PAGEMAP (drivers/nvdimm/e820.c) and
        # pmem_attach_disk() then devm_memremap_pages() the whole range.
        lay.notes.append(
            "e820 (memmap=) namespace: --map=mem keeps the implicit raw 'memory' mode "
            "(no pfn device, data offset 0, struct pages in RAM)"
        )
        mode = "raw"
    if mode == "raw":
        lay.pfn_mode = None
        # check_pfn_span(): !IS_ALIGNED(pfn | nr_pages, PAGES_PER_SUBSECTION) -> -EINVAL
        if bus == "e820" and (start % SUBSECTION or size % SUBSECTION):
            lay.error = (
                "raw e820 namespace not 2 MiB aligned: devm_memremap_pages() fails in "
                "check_pfn_span() with -EINVAL (mm/memory_hotplug.c), probe fails"
            )
            return lay
        lay.data_offset = 0
        lay.data_size = size
        lay.npfns = size // SZ_4K
        if bus == "e820":
            lay.memmap_location = "ram"
            lay.memmap_bytes = MAX_STRUCT_PAGE_SIZE * lay.npfns
        else:
            lay.notes.append("raw NFIT namespace: no struct pages, no DAX (QUEUE_FLAG_DAX is not set)")
        return lay

    # nd_pfn_init() (drivers/nvdimm/pfn_devs.c, v6.1 and v6.12)
    eff_align = max(align, SUBSECTION)
    if start % SUBSECTION:
        lay.error = f"start {start:#x} misaligned: nd_pfn_init() needs memremap_compat_align() (2 MiB) -> -EINVAL"
        return lay
    npfns = (size - SZ_8K) // SZ_4K
    end_trunc = start + size - _align_down(start + size, eff_align)
    if map == "dev":
        lay.pfn_mode = "PFN_MODE_PMEM"
        page_map_size = MAX_STRUCT_PAGE_SIZE * npfns
        offset = _align_up(start + SZ_8K + page_map_size, eff_align) - start
    else:
        lay.pfn_mode = "PFN_MODE_RAM"
        offset = _align_up(start + SZ_8K, eff_align) - start
    limit = size - end_trunc if prof.version >= (6, 12) else size
    if offset >= limit:
        lay.error = (
            f"data offset {format_size(offset)} at align {ALIGNS[align]} leaves no room in a "
            f"{format_size(size)} namespace: nd_pfn_init() -> -ENXIO"
        )
        return lay
    lay.data_offset = offset
    lay.end_trunc = end_trunc
    lay.data_size = size - offset - end_trunc
    lay.npfns = lay.data_size // SZ_4K
    lay.memmap_bytes = MAX_STRUCT_PAGE_SIZE * lay.npfns
    lay.memmap_location = "device" if map == "dev" else "ram"
    if map == "dev" and lay.data_size + offset < SECTION:
        lay.notes.append(
            "under 128 MiB: vmemmap_populate() uses base pages from System RAM for a partial "
            "section (arch/x86/mm/init_64.c), although the device reserves the space"
        )
    # alloc_dax_region() fails unless the data range is aligned to align
    # (drivers/dax/pmem.c, bus.c)
    if mode == "devdax" and ((start + offset) % align or lay.data_size % align):
        lay.error = (
            f"devdax data range {start + offset:#x}+{format_size(lay.data_size)} is not "
            f"{ALIGNS[align]}-aligned: alloc_dax_region() fails"
        )
    return lay


def layout_from_args(
    size: object, start: object, mode: str, map: str, align: object, release: str | None = None, bus: str = "e820"
) -> Layout:
    """:func:`namespace_layout` of command-line values (sizes like ``2M``); bad ones raise UsageError."""
    try:
        return namespace_layout(parse_int(size), parse_int(start), mode, map, parse_int(align), release, bus)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
