"""Seeded, reproducible cases over the case format (format v1).

``generate(seed, index, kinds)`` always returns the same case for the same
arguments (one :class:`random.Random` per case, seeded from both), so a
disagreement found in a long run is replayed from its seed and index alone.

A generated case is a complete case (the model reads it as is, with
synthetic 2 MiB-aligned addresses and physical extents) plus a ``fuzz``
object the model ignores: the seed and index, the target kind, and which
mappings the kernel places (``kernel_placed``: mmap with no address).
:mod:`pmemtrace.fuzz.execute` lays the file out as the extents say,
records the extents and addresses it really got, and rebuilds the case from
them.

What is generated, and what is left out on purpose:

* fsdax on xfs and ext4: file sizes in 4 KiB steps with a misaligned tail
  sometimes, extents written / unwritten / hole in 1 or 2 MiB pieces (4 KiB
  pieces sometimes), mappings shared and private, read-only and writable,
  MAP_SYNC, offsets and addresses aligned and 4 KiB-misaligned, several
  mappings of one file, kernel-chosen and fixed addresses; reads, writes,
  madvise (nohugepage, hugepage, dontneed), munmap and mmap again, pwrite.
* GUP on both (``gup=True``, its own random stream, so the cases of a seed
  without it are the same accesses with the GUPs left out): O_DIRECT into
  and out of a mapping (``fast``: the partner file on a non-DAX filesystem,
  FOLL_WRITE when data goes into the mapping), io_uring fixed buffers
  (``longterm``: FOLL_WRITE | FOLL_LONGTERM) and process_vm_writev/readv
  (``fast=False``: the slow path only), over aligned and unaligned ranges,
  read-only mappings (EFAULT) and sometimes past the end of the file
  (the fault's SIGBUS is GUP's EFAULT or a short transfer, not a signal).
* device-dax at 4K, 2M (1G where the lab has the layout): shared and private
  (the kernel refuses private: EINVAL), aligned and misaligned addresses and
  lengths (EINVAL), reads, writes, madvise, munmap and mmap again.
* Never generated: a touch beyond the end of the file (SIGBUS kills the
  process that carries the case out, and every later access with it), a
  write through a read-only mapping (SIGSEGV, likewise); GUP in the forked
  child.
"""

import random
from collections.abc import Sequence
from typing import Any, Optional

from ..model.build import CaseBuilder, case_to_json, devdax_device, extent, fsdax_device
from ..model.case import File

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
PAGE = 4 * KiB
PMD = 2 * MiB
BASE = 0x7F0000000000
PHYS = 0x200000
#: the largest GUP generated: the executor's O_DIRECT partner file and
#: process_vm buffer are this long
GUP_MAX = 2 * PMD
DATA_START = 0x100000000

#: target kinds: fsdax-<fs> or devdax-<align>
KINDS = ("fsdax-xfs", "fsdax-ext4", "devdax-4K", "devdax-2M", "devdax-1G")
DEFAULT_KINDS = ("fsdax-xfs", "fsdax-ext4", "devdax-4K", "devdax-2M")
_WEIGHTS = {"fsdax-xfs": 5, "fsdax-ext4": 3, "devdax-4K": 1, "devdax-2M": 2, "devdax-1G": 1}
_ALIGN = {"4K": PAGE, "2M": PMD, "1G": GiB}


def kind_of(index: int, seed: int, kinds: Sequence[str]) -> str:
    r = random.Random(f"{seed}:{index}:kind")
    ks = list(kinds)
    return r.choices(ks, weights=[_WEIGHTS.get(k, 1) for k in ks])[0]


def generate(
    seed: int,
    index: int,
    kinds: Sequence[str] = DEFAULT_KINDS,
    kernel: str = "6.12",
    remap: bool = True,
    gup: bool = True,
) -> dict[str, Any]:
    """Case number *index* of the run seeded *seed* (a case JSON object).
    ``remap=False``: without partial munmaps, mremaps and forks, the cases
    the generator made before it had them (saved seeds replay unchanged);
    ``gup=False``: without GUP accesses (likewise)."""
    kind = kind_of(index, seed, kinds)
    r = random.Random(f"{seed}:{index}")
    rx = random.Random(f"{seed}:{index}:remap") if remap else None
    rg = random.Random(f"{seed}:{index}:gup") if gup else None
    if kind.startswith("fsdax"):
        case = _fsdax(r, kind.split("-", 1)[1], kernel, rx, rg)
    else:
        case = _devdax(r, _ALIGN[kind.split("-", 1)[1]], kernel, rx, rg)
    case["name"] = f"fuzz-{seed}-{index}"
    case["fuzz"] = dict(case.get("fuzz", {}), seed=seed, index=index, kind=kind)
    return case


# -- fsdax ------------------------------------------------------------------


def _file_size(r: random.Random) -> int:
    size = r.randint(1, 8) * PMD
    tail = r.random()
    if tail < 0.2:
        size -= r.randint(1, 511) * PAGE  # ends inside a PMD
    elif tail < 0.3:
        size -= r.randint(1, PMD - 1)  # ends inside a page
    return max(size, PAGE)


def _extents(r: random.Random, size: int) -> list:
    """Pieces of the file: written (w), unwritten (u) or hole (h)."""
    npages = (size + PAGE - 1) // PAGE
    style = r.random()
    out: list[tuple[int, int, str]] = []
    pos = 0
    while pos < npages:
        if style < 0.35:  # one kind for the whole file: the common case
            n = npages
            state = r.choices("wuh", weights=(6, 3, 1))[0] if not out else out[-1][2]
        else:
            n = r.choice((PMD // PAGE, PMD // PAGE // 2, r.randint(1, 64)))
            state = r.choices("wuh", weights=(5, 3, 2))[0]
        n = min(n, npages - pos)
        out.append((pos, n, state))
        pos += n
    # merge neighbours of one state: FIEMAP reports them as one extent
    merged: list = []
    for p, n, s in out:
        if merged and merged[-1][2] == s and merged[-1][0] + merged[-1][1] == p:
            merged[-1] = (merged[-1][0], merged[-1][1] + n, s)
        else:
            merged.append((p, n, s))
    return [extent(p * PAGE, PHYS + p * PAGE, n * PAGE, s == "u") for p, n, s in merged if s != "h"]


def _mapping_shape(r: random.Random, size: int, grain: int) -> tuple[int, int]:
    """(file offset, length) of one mapping of a file of *size* bytes."""
    fpages = (size + PAGE - 1) // PAGE
    c = r.random()
    if c < 0.5:
        off = 0
    elif c < 0.8:
        off = r.randrange(0, max(1, fpages * PAGE // grain)) * grain
    else:
        off = r.randrange(0, fpages) * PAGE
    c = r.random()
    room = max(PAGE, fpages * PAGE - off)
    if c < 0.5:
        length = room  # to the end of the file (page rounded)
    elif c < 0.8:
        length = max(grain, (room // grain) * grain) if room >= grain else room
        length = r.randint(1, max(1, length // grain)) * grain if length >= grain else length
    else:
        length = r.randint(1, room // PAGE) * PAGE
    if r.random() < 0.1:
        length += r.randint(1, 4) * PAGE  # beyond EOF: mapped, never touched there
    return off, length


def _place(r: random.Random, slot: int, length: int, align: int) -> tuple[int, int, str]:
    """(address, next slot, placement) of one mapping: fixed and aligned,
    fixed and 4 KiB-misaligned, or chosen by the kernel (synthetic here)."""
    c = r.random()
    slot = (slot + align - 1) & ~(align - 1)
    if c < 0.2:
        addr, how = slot + r.randint(1, 511) * PAGE, "fixed"
    elif c < 0.45:
        addr, how = slot, "kernel"
    else:
        addr, how = slot, "fixed"
    return addr, slot + length + 2 * align + (addr - slot), how


def _fsdax(
    r: random.Random, fs: str, kernel: str, rx: Optional[random.Random] = None, rg: Optional[random.Random] = None
) -> dict[str, Any]:
    size = _file_size(r)
    dev = fsdax_device(data_start=DATA_START, size=GiB, map="mem", align=PMD)
    b = CaseBuilder(dev, kernel=kernel, file=File(size=size, ino=12, fs=fs, extents=_extents(r, size)))
    kernel_placed = []
    slot = BASE
    nmaps = r.choices((1, 2, 3), weights=(5, 3, 2))[0]
    for i in range(nmaps):
        off, length = _mapping_shape(r, size, PMD)
        addr, slot, how = _place(r, slot, length, PMD)
        shared = r.random() < 0.7
        mid = f"m{i}"
        b.mapping(
            mid,
            addr,
            length,
            offset=off,
            shared=shared,
            sync=shared and r.random() < 0.1,
            writable=r.random() < 0.85,
            mapped=r.random() < 0.85,
            nohugepage=False,
        )
        if how == "kernel":
            kernel_placed.append(mid)
    _accesses(r, b, size, rx=rx, kernel_placed=set(kernel_placed), rg=rg)
    out = case_to_json(b.build())
    out["fuzz"] = {"kernel_placed": kernel_placed}
    return out


# -- device-dax -------------------------------------------------------------


def _devdax(
    r: random.Random, align: int, kernel: str, rx: Optional[random.Random] = None, rg: Optional[random.Random] = None
) -> dict[str, Any]:
    size = GiB if align < GiB else 2 * GiB
    dev = devdax_device(align, size=size, data_start=DATA_START)
    b = CaseBuilder(dev, kernel=kernel)
    grain = max(align, PMD)
    kernel_placed = []
    slot = BASE
    nmaps = r.choices((1, 2), weights=(3, 1))[0]
    refused = set()
    for i in range(nmaps):
        if align >= GiB:
            length, off = GiB, 0
        else:
            length = r.randint(1, 4) * grain
            off = r.randrange(0, 8) * grain
        mid = f"m{i}"
        # what check_vma() refuses at mmap time (EINVAL): private, an
        # address or a length off the align; such a mapping gets only its
        # mmap (and maybe a second try), the refusal is what is compared
        refuse = r.choices(("", "private", "address", "length"), weights=(88, 5, 4, 3))[0]
        if refuse == "length":
            length += PAGE
            if length % align == 0:
                refuse = ""  # a 4 KiB device takes any page multiple
        addr, slot, how = _place(r, slot, length, max(grain, GiB if align >= GiB else grain))
        if refuse == "address":
            addr, how = addr - addr % grain + r.randint(1, grain // PAGE - 1) * PAGE if grain > PAGE else addr, "fixed"
            if addr % align == 0:
                refuse = ""
        elif addr % align:
            addr -= addr % align  # only the "address" refusal is off the align
        slot = max(slot, addr + length + 2 * grain)  # the next mapping never overlaps this one
        if how == "kernel" and refuse != "address":
            kernel_placed.append(mid)
        b.mapping(
            mid, addr, length, offset=off, shared=refuse != "private", writable=r.random() < 0.9, mapped=not refuse
        )
        if refuse:
            refused.add(mid)
    _accesses(r, b, None, refused, rx=rx, kernel_placed=set(kernel_placed), align=align, rg=rg)
    out = case_to_json(b.build())
    out["fuzz"] = {"kernel_placed": kernel_placed}
    return out


# -- accesses ---------------------------------------------------------------


def _offset(r: random.Random, limit: int) -> int:
    c = r.random()
    if c < 0.4:
        o = r.randrange(0, max(1, limit // PMD)) * PMD
    elif c < 0.85:
        o = r.randrange(0, max(1, limit // PAGE)) * PAGE
    else:
        o = r.randrange(0, max(1, limit))
    return min(o, limit - 1)


def _accesses(
    r: random.Random,
    b: CaseBuilder,
    file_size: int | None,
    refused: set[str] = frozenset(),  # type: ignore[assignment]
    rx: Optional[random.Random] = None,
    kernel_placed: set[str] = frozenset(),  # type: ignore[assignment]
    align: int = PAGE,
    rg: Optional[random.Random] = None,
) -> None:
    live = {m.id: m.mapped for m in b.mappings}
    shape = {m.id: _Shape(m.start, m.length) for m in b.mappings}
    top = [max(m.start + m.length for m in b.mappings)]
    byid = {m.id: m for m in b.mappings if m.id not in refused}
    for m in b.mappings:
        if not m.mapped:
            b.mmap(m.id)
            live[m.id] = True
            if m.id in refused and r.random() < 0.3:
                b.mmap(m.id)  # a second try is refused the same way
    if not byid:
        return
    n = r.randint(2, 16)
    kid: Optional[dict[str, _Shape]] = None  # the forked child's view of the mappings
    forked = False
    for _ in range(n):
        if rx is not None and not forked and rx.random() < 0.06:
            b.fork()
            forked = True
            kid = {k: _Shape.copy(shape[k]) for k in byid if live[k]}
            continue
        if rx is not None and kid is not None:
            c = rx.random()
            if c < 0.08:
                b.exit_child()
                kid = None
                continue
            if c < 0.5 and kid:
                _child_touch(rx, b, byid[rx.choice(sorted(kid))], kid, file_size)
                continue
        if rg is not None and rg.random() < 0.2:
            # before the step the main stream makes, which stays as it was
            _gup_op(rg, b, byid, live, shape, file_size)
        m = byid[r.choice(sorted(byid))]
        ops = ["read", "write", "madvise", "munmap"]
        weights = [6, 6, 2, 1]
        if file_size is not None:
            ops.append("pwrite")
            weights.append(1)
        op = r.choices(ops, weights=weights)[0]
        if not live[m.id]:
            b.mmap(m.id)
            live[m.id] = True
            shape[m.id] = _Shape(m.start, m.length)
            continue
        sh = shape[m.id]
        if rx is not None and align < GiB and rx.random() < 0.15:
            others = [(o.start, o.start + o.length) for k, o in shape.items() if k != m.id and live[k]]
            _remap_op(rx, b, m, sh, top, m.id in kernel_placed, max(align, PAGE), others)
        if op in ("read", "write"):
            off = _touch_offset(r, m, sh, file_size)
            if off is not None:
                b.touch(m.id, off, op == "write" and m.writable)
        elif op == "madvise":
            advice = r.choice(("nohugepage", "hugepage", "dontneed"))
            if r.random() < 0.5 or sh.unknown:
                b.madvise(m.id, advice, 0, 0)
            else:
                # inside what the mapping covers now: beyond it, the kernel
                # answers for whatever the process has there
                off = r.randrange(0, max(1, sh.length // PAGE)) * PAGE
                ln = r.randint(1, max(1, (sh.length - off) // PAGE)) * PAGE
                b.madvise(m.id, advice, off, ln)
                if advice != "dontneed":
                    sh.split = True  # the VMA may be split: an mremap may get EFAULT
        elif op == "munmap":
            b.munmap(m.id)
            live[m.id] = False
        elif op == "pwrite" and file_size is not None:
            off = r.randrange(0, max(1, file_size // PAGE)) * PAGE
            length = r.choice((PAGE, 64 * KiB, PMD))
            if kid is None:  # its zap would reach the child (not modelled)
                b.pwrite(off, length)


# -- partial munmap and mremap (pmemtrace.model.remap) ----------------------


class _Shape:
    """What the generator knows of a mapping now: where it is, how long,
    which parts a partial munmap took (offsets from its first start), and
    whether an mremap the model may refuse left it unknown (no more touches
    until it is mapped again)."""

    def __init__(self, start: int, length: int) -> None:
        self.start, self.length = start, length
        self.holes: list[tuple[int, int]] = []
        self.split = False
        self.unknown = False
        self.kernel_placed = False  # a grow may have let the kernel move it

    def copy(self) -> "_Shape":
        c = _Shape(self.start, self.length)
        c.holes, c.split, c.unknown = list(self.holes), self.split, self.unknown
        c.kernel_placed = self.kernel_placed
        return c


def _touch_offset(r: random.Random, m: Any, sh: _Shape, file_size: Optional[int]) -> Optional[int]:
    """An offset to touch in mapping *m* as *sh* says it is now (an mremap
    may have grown it): inside the file (page rounded: the tail of the last
    page reads as zeros), never in what a partial munmap took (SIGSEGV is
    not generated); None when there is none."""
    limit = sh.length
    if file_size is not None:
        limit = min(limit, max(0, (file_size + PAGE - 1) // PAGE * PAGE - m.offset))
    if limit <= 0 or sh.unknown:
        return None
    off = _offset(r, limit)
    if any(lo <= off < hi for lo, hi in sh.holes):
        return None
    return off


def _gup_op(
    rg: random.Random,
    b: CaseBuilder,
    byid: dict[str, Any],
    live: dict[str, bool],
    shape: dict[str, "_Shape"],
    file_size: Optional[int],
) -> None:
    """One GUP of a live mapping (see the module docstring for the kinds)."""
    cands = sorted(k for k in byid if live[k] and not shape[k].unknown)
    if not cands:
        return
    m = byid[rg.choice(cands)]
    sh = shape[m.id]
    how = rg.choices(("odirect-in", "odirect-out", "longterm", "remote-in", "remote-out"), weights=(4, 3, 3, 1, 1))[0]
    limit = sh.length
    if file_size is not None and rg.random() < 0.9:
        # inside the file (page rounded); else sometimes on past its end
        limit = min(limit, max(0, (file_size + PAGE - 1) // PAGE * PAGE - m.offset))
    if limit < PAGE:
        return
    off = rg.randrange(0, max(1, limit // PMD)) * PMD if rg.random() < 0.4 else rg.randrange(0, limit // PAGE) * PAGE
    room = min(limit - off, GUP_MAX)
    length = rg.choice((PAGE, 4 * PAGE, 16 * PAGE, PMD // 2, PMD, GUP_MAX, room))
    length = max(PAGE, min(length, room))
    if any(lo < off + length and off < hi for lo, hi in sh.holes):
        return  # a partial munmap took part of it: EFAULT from its first unmapped page
    b.gup(
        m.id,
        off,
        length,
        write=how in ("odirect-in", "longterm", "remote-in"),
        fast=not how.startswith("remote"),
        longterm=how == "longterm",
    )


def _child_touch(rx: random.Random, b: CaseBuilder, m: Any, kid: dict[str, _Shape], file_size: Optional[int]) -> None:
    """A read or write in the forked child, where the mapping was at the fork."""
    off = _touch_offset(rx, m, kid[m.id], file_size)
    if off is not None:
        b.child_touch(m.id, off, m.writable and rx.random() < 0.5)


def _remap_op(
    rx: random.Random,
    b: CaseBuilder,
    m: Any,
    sh: _Shape,
    top: list[int],
    kernel_placed: bool,
    align: int,
    others: list[tuple[int, int]],
) -> None:
    """One partial munmap or mremap of mapping *m* (its current *sh*);
    *others*: where the other mappings are (a grow in place needs room)."""
    unit = max(align, PAGE)
    pages = sh.length // unit
    if rx.random() < 0.45:
        # partial munmap: the head, the tail or the middle; on device-dax
        # sometimes off the align (dev_dax_may_split(): EINVAL)
        grain = unit if align > PAGE and rx.random() < 0.8 else PAGE
        n = sh.length // grain
        if n < 2:
            return
        where = rx.choice(("head", "tail", "middle"))
        k = rx.randint(1, n - 1)
        if where == "head":
            lo, hi = 0, k * grain
        elif where == "tail":
            lo, hi = k * grain, sh.length
        else:
            if n < 3:
                return
            lo = rx.randint(1, n - 2) * grain
            hi = rx.randint(lo // grain + 1, n - 1) * grain
        b.munmap(m.id, lo, hi - lo, cover=True)
        if lo % align == 0 and hi % align == 0:
            sh.holes.append((lo, hi))
        else:  # refused, unless an earlier munmap left no VMA to split there
            sh.unknown = True
        return
    whole = not (sh.holes or sh.split or sh.unknown)
    c = rx.random()
    if c < 0.3 and pages >= 2:  # shrink in place
        new_len = rx.randint(1, pages - 1) * unit
        b.mremap(m.id, new_len, maymove=rx.random() < 0.5, cover=True)
        if whole:
            sh.length = new_len
        else:
            sh.unknown = True
        return
    grow = rx.randint(1, 4) * unit if align > PAGE else rx.choice((rx.randint(1, 511) * PAGE, PMD, 2 * PMD))
    end = sh.start + sh.length
    if c < 0.55 and not any(lo < end + grow + 2 * PMD and hi > end for lo, hi in others):
        # grow in place; where the kernel placed the mapping (at first, or
        # by moving it here before) what lies beyond is not the case's:
        # the kernel may move it (the coin is drawn as before either way)
        maymove = (kernel_placed or rx.random() < 0.5) or sh.kernel_placed
        b.mremap(m.id, sh.length + grow, maymove=maymove, cover=True)
        sh.kernel_placed = sh.kernel_placed or maymove
        top[0] = max(top[0], end + grow)
        if whole:
            sh.length += grow
        else:
            sh.unknown = True
        return
    # move to a fixed address: the colour kept, 2 MiB aligned or 4 KiB off
    new_len = rx.choice((sh.length, sh.length + grow, max(unit, sh.length - grow)))
    base = (top[0] + 4 * max(unit, PMD) + PMD - 1) & ~(PMD - 1)
    colour = rx.random()
    if align > PAGE:
        target = base
    elif colour < 0.4:
        target = base + sh.start % PMD
    elif colour < 0.7:
        target = base
    else:
        target = base + rx.randint(1, 511) * PAGE
    top[0] = target + new_len
    b.mremap(m.id, new_len, new_start=target, fixed=True, maymove=True, cover=True)
    if whole:
        sh.start, sh.length = target, new_len
    else:
        sh.unknown = True
