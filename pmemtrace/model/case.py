"""The case: a reproducible description of what the kernel was given.

A case names a kernel release, a device (fsdax or devdax geometry), for fsdax
a file (size and FIEMAP extents), the mappings, and the accesses in order.
Format version 1 is a stable contract (``pmemtrace run`` records it, users
write it by hand); see docs/case-format.md.  Integers may be numbers,
``"0x..."`` strings or sizes (``"2M"``).

:func:`parse_case` validates everything up front and raises
:class:`~pmemtrace.errors.CaseError` naming the offending key, so the model
itself never sees malformed input.
"""

import bisect
import json
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Optional, overload

import msgspec

from ..errors import CaseError
from ..units import parse_int

PAGE_SIZE = 4096
PMD_SIZE = 2 << 20
PUD_SIZE = 1 << 30
ALIGNS = (PAGE_SIZE, PMD_SIZE, PUD_SIZE)
#: dax bus drivers that give a device-dax a character device: device_dax
#: (mmap) and fsdev_dax (famfs's fs-dax binding, no mmap)
DEVDAX_DRIVERS = ("device_dax", "fsdev_dax")


@dataclass
class Range:
    start: int  # physical address
    length: int
    pgoff: int  # device page offset of the range's first page


@dataclass
class Device:
    mode: str  # fsdax | devdax
    align: int = PMD_SIZE
    size: Optional[int] = None
    data_start: int = 0  # physical address of byte 0 (block device / dax device)
    map: str = "mem"  # mem | dev | raw (where struct pages live; raw = e820 implicit)
    struct_pages: bool = True  # PFN_MAP: the pfns have struct pages (devmap)
    ranges: list[Range] = field(default_factory=list)
    dev: int = 0
    # devdax: the dax bus driver behind /dev/daxX.Y (fsdev_dax has no mmap)
    driver: str = "device_dax"  # dev_t as the kernel encodes it in trace events (MAJOR<<20|MINOR)


@dataclass
class Extent:
    logical: int
    physical: int  # relative to device.data_start
    length: int
    unwritten: bool = False


@dataclass
class File:
    size: int
    extents: list[Extent]
    ino: int = 0
    fs: str = "xfs"  # xfs | ext4 (differs in ->map_pages; see fsdax.py)
    dev: Optional[int] = None
    # where the filesystem placed the blocks it allocated in holes during the
    # run (FIEMAP after it; ``pmemtrace run --case`` records them): write
    # faults and pwrite into those holes get these blocks, not the model's
    # assumed 2 MiB-aligned ones
    allocated: list[Extent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._starts = [e.logical for e in self.extents]

    def extent_at(self, pos: int) -> int:
        """Index of the extent containing byte *pos*, or -1 (a hole)."""
        i = bisect.bisect_right(self._starts, pos) - 1
        if i >= 0 and pos < self.extents[i].logical + self.extents[i].length:
            return i
        return -1

    def next_extent_start(self, pos: int) -> Optional[int]:
        i = bisect.bisect_right(self._starts, pos)
        return self._starts[i] if i < len(self._starts) else None


@dataclass
class Mapping:
    id: str
    start: int
    length: int
    offset: int = 0
    shared: bool = True
    sync: bool = False
    nohugepage: bool = False
    writable: bool = True
    mapped: bool = True  # False: created later by an "mmap" access

    @property
    def end(self) -> int:
        return self.start + self.length


OPS = ("read", "write", "gup", "munmap", "mmap", "madvise", "pwrite", "mremap", "fork", "exit")
ADVICE = ("nohugepage", "hugepage", "dontneed")


class Access(msgspec.Struct, gc=False):
    """One access of a case.  A msgspec Struct (not a dataclass) so that
    :func:`decode_accesses` decodes a case's accesses straight into it; no
    cycles (``gc=False``: the collector never walks a million of them)."""

    op: str
    mapping: Optional[str]  # None: a pwrite (writes the file, no mapping)
    offset: int = 0
    length: int = 0
    write: bool = False  # gup: FOLL_WRITE
    longterm: bool = False  # gup: FOLL_LONGTERM
    fast: bool = True  # gup: try the lockless fast path first
    populate: bool = False  # gup: MAP_POPULATE/mm_populate(): fault in, pin nothing
    advice: Optional[str] = None
    new_start: Optional[int] = None  # mremap: where the mapping is after it (MREMAP_FIXED: the target)
    fixed: bool = False  # mremap: MREMAP_FIXED
    maymove: bool = False  # mremap: MREMAP_MAYMOVE
    cover: bool = False  # munmap/mremap: PROT_NONE mapped over what the call emptied
    child: bool = False  # read/write: made in the child of the last fork


class ColumnAccesses(Sequence[Access]):
    """A case's plain reads and writes kept as columns (op codes, mapping
    indexes, offsets, lengths), as the compiled explain core reads them
    (pmemtrace/model/core.py): an :class:`Access` is made only when one is
    asked for, so a big case costs 21 bytes an access, not an object."""

    #: no op but read and write (explain() need not look for a pwrite)
    plain_reads_writes = True

    def __init__(
        self, ops: bytes, maps: "array[int]", offsets: "array[int]", lengths: "array[int]", ids: tuple[str, ...]
    ):
        self.ops, self.maps, self.offsets, self.lengths, self.ids = ops, maps, offsets, lengths, ids

    def __len__(self) -> int:
        return len(self.ops)

    @overload
    def __getitem__(self, i: int) -> Access: ...
    @overload
    def __getitem__(self, i: slice) -> list[Access]: ...
    def __getitem__(self, i: "int | slice") -> "Access | list[Access]":
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        op = self.ops[i]  # raises IndexError past the end
        return Access(op=_RW[op], mapping=self.ids[self.maps[i]], offset=self.offsets[i], length=self.lengths[i])

    def __iter__(self) -> Iterator[Access]:
        ids = self.ids
        for op, m, off, ln in zip(self.ops, self.maps, self.offsets, self.lengths):
            yield Access(op=_RW[op], mapping=ids[m], offset=off, length=ln)


_RW = ("read", "write")


@dataclass
class Case:
    kernel: Optional[str]
    device: Device
    file: Optional[File]
    mappings: list[Mapping]
    accesses: Sequence[Access]  # a list, or ColumnAccesses (decode_accesses)
    thp_disable: bool = False  # prctl(PR_SET_THP_DISABLE) in the process
    #: 2 MiB-aligned virtual blocks that already hold a page table when the
    #: case starts (other mappings of the process sharing the block have
    #: 4 KiB pages there); no huge fault is tried in them
    page_tables: list[int] = field(default_factory=list)
    #: 2 MiB-aligned blocks where another VMA of the process (e.g. a
    #: PROT_NONE reservation) lies beside the case's mappings for the whole
    #: case: a munmap leaves the block's page table (free_pgtables())
    shared_blocks: list[int] = field(default_factory=list)
    #: 2 MiB-aligned blocks where a VMA outside the case has an anon_vma (or
    #: is PFNMAP/MIXEDMAP) at the fork: the child gets a page table there
    #: wherever the parent has one (copy_page_range()); elsewhere only the
    #: case's own COW'd private mappings give it tables
    fork_tables: list[int] = field(default_factory=list)
    name: Optional[str] = None
    notes: Optional[str] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def mapping(self, mid: Optional[str]) -> Mapping:
        return self._by_id[mid]

    def __post_init__(self) -> None:
        self._by_id: dict[Optional[str], Mapping] = {m.id: m for m in self.mappings}


# --------------------------------------------------------------------------
# validation helpers


def _int(
    d: dict[str, Any],
    key: str,
    path: str,
    default: Optional[int] = None,
    required: bool = False,
    minimum: Optional[int] = 0,
) -> Any:
    if key not in d or d[key] is None:
        if required:
            raise CaseError(f"{path}.{key}", "is required")
        return default
    try:
        v = parse_int(d[key])
    except ValueError as exc:
        raise CaseError(f"{path}.{key}", str(exc)) from None
    if minimum is not None and v < minimum:
        raise CaseError(f"{path}.{key}", f"must be >= {minimum}, got {v}")
    return v


def _bool(d: dict[str, Any], key: str, path: str, default: bool = False) -> bool:
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise CaseError(f"{path}.{key}", f"expected true or false, got {v!r}")
    return v


def _choice(
    d: dict[str, Any],
    key: str,
    path: str,
    choices: tuple[str, ...],
    default: Optional[str] = None,
    required: bool = False,
) -> Any:
    if key not in d:
        if required:
            raise CaseError(f"{path}.{key}", f"is required (one of {', '.join(choices)})")
        return default
    v = d[key]
    if v not in choices:
        raise CaseError(f"{path}.{key}", f"expected one of {', '.join(choices)}, got {v!r}")
    return v


def _obj(v: Any, path: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise CaseError(path, f"expected an object, got {type(v).__name__}")
    return v


def _dev_t(v: Any, path: str) -> int:
    """dev_t as in trace events: 'MAJ:MIN' or an int (MAJOR<<20 | MINOR)."""
    if isinstance(v, str) and ":" in v:
        try:
            maj, mnr = (int(x) for x in v.split(":"))
        except ValueError:
            raise CaseError(path, f"expected MAJOR:MINOR, got {v!r}") from None
        return (maj << 20) | mnr
    try:
        n: int = parse_int(v)
    except ValueError as exc:
        raise CaseError(path, str(exc)) from None
    return n


_NORMALISED: dict[tuple[str, ...], dict[str, str]] = {}


def _check_unknown(d: dict[str, Any], known: tuple[str, ...], path: str) -> None:
    # Extra optional keys are allowed by the contract, but a key that differs
    # from a known one only by case or a dash is almost certainly a typo.
    for k in d:
        if k not in known:
            break
    else:
        return
    norm = _NORMALISED.get(known)
    if norm is None:
        norm = _NORMALISED[known] = {k.lower().replace("-", "_"): k for k in known}
    for k in d:
        if k not in known and k.lower().replace("-", "_") in norm:
            raise CaseError(f"{path}.{k}", f"unknown key; did you mean {norm[k.lower().replace('-', '_')]!r}?")


def _parse_device(d: Any) -> Device:
    d = _obj(d, "device")
    mode = _choice(d, "mode", "device", ("fsdax", "devdax"), required=True)
    align = _int(d, "align", "device", default=PMD_SIZE)
    if align not in ALIGNS:
        raise CaseError("device.align", f"must be 4K, 2M or 1G, got {align:#x}")
    dev = Device(
        mode=mode,
        align=align,
        size=_int(d, "size", "device"),
        data_start=_int(d, "data_start", "device", default=0),
        map=_choice(d, "map", "device", ("mem", "dev", "raw"), default="mem"),
        struct_pages=_bool(d, "struct_pages", "device", True),
        dev=_dev_t(d["dev"], "device.dev") if "dev" in d else 0,
        driver=_choice(d, "driver", "device", DEVDAX_DRIVERS, default="device_dax"),
    )
    if dev.driver != "device_dax" and mode != "devdax":
        raise CaseError("device.driver", "only devdax devices have a dax bus driver")
    if "ranges" in d:
        if mode != "devdax":
            raise CaseError("device.ranges", "only devdax devices have ranges")
        rs = d["ranges"]
        if not isinstance(rs, list) or not rs:
            raise CaseError("device.ranges", "expected a non-empty list")
        pg = 0
        for i, r in enumerate(rs):
            p = f"device.ranges[{i}]"
            r = _obj(r, p)
            length = _int(r, "length", p, required=True, minimum=PAGE_SIZE)
            rng = Range(
                start=_int(r, "start", p, required=True),
                length=length,
                pgoff=_int(r, "pgoff", p, default=pg),
            )
            if rng.start % PAGE_SIZE or rng.length % PAGE_SIZE:
                raise CaseError(p, "start and length must be multiples of 4 KiB")
            dev.ranges.append(rng)
            pg = rng.pgoff + length // PAGE_SIZE
    elif mode == "devdax":
        if dev.size is None:
            raise CaseError("device.size", "is required for devdax (or give device.ranges)")
        dev.ranges.append(Range(start=dev.data_start, length=dev.size, pgoff=0))
    if dev.data_start % PAGE_SIZE:
        raise CaseError("device.data_start", "must be a multiple of 4 KiB")
    return dev


def _parse_extents(exts: Any, key: str, unwritten: bool) -> list[Extent]:
    """A list of extents under *key* (file.extents, file.allocated): 4 KiB
    multiples, sorted by logical offset; *unwritten* says whether the key
    carries that flag."""
    if not isinstance(exts, list):
        raise CaseError(key, "expected a list of FIEMAP extents")
    out = []
    for i, e in enumerate(exts):
        p = f"{key}[{i}]"
        e = _obj(e, p)
        ext = Extent(
            logical=_int(e, "logical", p, required=True),
            physical=_int(e, "physical", p, required=True),
            length=_int(e, "length", p, required=True, minimum=1),
            unwritten=_bool(e, "unwritten", p, False) if unwritten else False,
        )
        for k in ("logical", "physical", "length"):
            if getattr(ext, k) % PAGE_SIZE:
                raise CaseError(f"{p}.{k}", "must be a multiple of 4 KiB (DAX needs 4 KiB blocks)")
        out.append(ext)
    out.sort(key=lambda x: x.logical)
    return out


def _parse_file(d: Any, device: Device) -> File:
    d = _obj(d, "file")
    size = _int(d, "size", "file", required=True)
    out = _parse_extents(d.get("extents", []), "file.extents", unwritten=True)
    for a, b in zip(out, out[1:]):
        if a.logical + a.length > b.logical:
            raise CaseError("file.extents", f"extents overlap at logical {b.logical:#x}")
    if device.size is not None:
        for i, e in enumerate(out):
            if e.physical + e.length > device.size:
                raise CaseError(f"file.extents[{i}].physical", "extent ends beyond device.size")
    # where the filesystem placed blocks it allocated in holes during the run:
    # no overlap with each other or with the extents (those were not holes)
    allocated = _parse_extents(d.get("allocated", []), "file.allocated", unwritten=False)
    both = sorted(out + allocated, key=lambda x: x.logical)
    for a, b in zip(both, both[1:]):
        if a.logical + a.length > b.logical:
            raise CaseError("file.allocated", f"overlaps another extent at logical {b.logical:#x}")
    return File(
        size=size,
        extents=out,
        ino=_int(d, "ino", "file", default=0),
        fs=_choice(d, "fs", "file", ("xfs", "ext4"), default="xfs"),
        dev=_dev_t(d["dev"], "file.dev") if "dev" in d else None,
        allocated=allocated,
    )


def _parse_mapping(d: Any, i: int, device: Device) -> Mapping:
    p = f"mappings[{i}]"
    d = _obj(d, p)
    _check_unknown(d, ("id", "start", "length", "offset", "shared", "sync", "nohugepage", "writable", "mapped"), p)
    mid = d.get("id", f"m{i}")
    if not isinstance(mid, str):
        raise CaseError(f"{p}.id", "expected a string")
    m = Mapping(
        id=mid,
        start=_int(d, "start", p, required=True),
        length=_int(d, "length", p, required=True, minimum=1),
        offset=_int(d, "offset", p, default=0),
        shared=_bool(d, "shared", p, True),
        sync=_bool(d, "sync", p, False),
        nohugepage=_bool(d, "nohugepage", p, False),
        writable=_bool(d, "writable", p, True),
        mapped=_bool(d, "mapped", p, True),
    )
    if m.start % PAGE_SIZE:
        raise CaseError(f"{p}.start", "must be page aligned (mmap returns page-aligned addresses)")
    if m.offset % PAGE_SIZE:
        raise CaseError(f"{p}.offset", "must be a multiple of 4 KiB (mmap refuses others with EINVAL)")
    m.length = (m.length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    return m


ACCESS_KEYS = (
    "op",
    "mapping",
    "offset",
    "length",
    "write",
    "longterm",
    "fast",
    "populate",
    "advice",
    "new_start",
    "fixed",
    "maymove",
    "cover",
    "child",
)
_ACCESS_KEYSET = frozenset(ACCESS_KEYS)
_GUP_BOOLS = ("write", "longterm", "fast", "populate")


def _parse_access(d: Any, i: int, ids: dict[str, "Mapping"], only: Optional[str] = None) -> Access:
    """One access.  The common shape (a read or write with integer offset
    and length, known keys only) is decoded directly; anything else takes the
    careful path, which names what is wrong.  *only* is the mapping id when
    the case has exactly one (the default of ``"mapping"``)."""
    if d.__class__ is dict and d.keys() <= _ACCESS_KEYSET and "child" not in d:
        op = d.get("op")
        if op == "read" or op == "write":
            mid = d.get("mapping", only)
            offset = d.get("offset", 0)
            length = d.get("length", 0)
            if mid in ids and offset.__class__ is int and offset >= 0 and length.__class__ is int and length >= 0:
                for k in _GUP_BOOLS:
                    if k in d and d[k].__class__ is not bool:
                        break
                else:
                    return Access(
                        op,
                        mid,
                        offset,
                        length,
                        d.get("write", False),
                        d.get("longterm", False),
                        d.get("fast", True),
                        d.get("populate", False),
                        None,
                    )
    return _parse_access_careful(d, i, ids)


def _parse_access_careful(d: Any, i: int, ids: dict[str, "Mapping"]) -> Access:
    p = f"accesses[{i}]"
    d = _obj(d, p)
    _check_unknown(d, ACCESS_KEYS, p)
    op = _choice(d, "op", p, OPS, required=True)
    mid = d.get("mapping")
    if op in ("fork", "exit"):
        if mid is not None:
            raise CaseError(f"{p}.mapping", f'a {op} is of the process, not of a mapping: drop "mapping"')
    elif op == "pwrite":
        # write(2) to the file: no mapping; offset is the file offset
        if mid is not None:
            raise CaseError(
                f"{p}.mapping", 'a pwrite writes the file, not a mapping: drop "mapping" (offset is the file offset)'
            )
    else:
        if mid is None and len(ids) == 1:
            mid = next(iter(ids))
        if mid not in ids:
            raise CaseError(f"{p}.mapping", f"names no mapping (have: {', '.join(sorted(ids)) or 'none'})")
    a = Access(
        op=op,
        mapping=mid,
        offset=_int(d, "offset", p, default=0),
        length=_int(d, "length", p, default=0),
        write=_bool(d, "write", p, False),
        longterm=_bool(d, "longterm", p, False),
        fast=_bool(d, "fast", p, True),
        populate=_bool(d, "populate", p, False),
        advice=_choice(d, "advice", p, ADVICE) if op == "madvise" else None,
    )
    if op in ("munmap", "mremap"):
        a.cover = _bool(d, "cover", p, False)
    a.child = _bool(d, "child", p, False)
    if a.child and op not in ("read", "write"):
        raise CaseError(f"{p}.child", "only reads and writes are made in the child")
    if op == "mremap":
        a.new_start = _int(d, "new_start", p)
        a.fixed = _bool(d, "fixed", p, False)
        a.maymove = _bool(d, "maymove", p, False)
        if a.length <= 0:
            raise CaseError(f"{p}.length", "an mremap needs the new length (bytes)")
        if a.fixed and a.new_start is None:
            raise CaseError(f"{p}.new_start", "MREMAP_FIXED needs the target address")
    if op == "gup" and a.length <= 0:
        a.length = PAGE_SIZE
    if op == "pwrite" and a.length <= 0:
        raise CaseError(f"{p}.length", "a pwrite needs a positive length (bytes)")
    if op == "madvise" and a.advice is None:
        raise CaseError(f"{p}.advice", f"is required (one of {', '.join(ADVICE)})")
    return a


def parse_case(obj: Any) -> Case:
    """Validate a case (a dict as loaded from JSON) and return a :class:`Case`."""
    obj = _obj(obj, "case")
    version = obj.get("version", 1)
    if version != 1:
        raise CaseError("version", f"unsupported case format version {version!r} (this pmemtrace reads 1)")
    kernel = obj.get("kernel")
    if kernel is not None and not isinstance(kernel, str):
        raise CaseError("kernel", "expected a release string such as '6.12.95+deb12-amd64'")
    if kernel is not None:
        from ..errors import UsageError
        from .profiles import parse_release

        try:
            parse_release(kernel)
        except UsageError as exc:
            raise CaseError("kernel", str(exc)) from None
    if "device" not in obj:
        raise CaseError("device", "is required")
    device = _parse_device(obj["device"])
    file = None
    if device.mode == "fsdax":
        if "file" not in obj:
            raise CaseError("file", "is required for an fsdax device")
        file = _parse_file(obj["file"], device)
        if file.dev is None:
            file.dev = device.dev
    elif "file" in obj:
        raise CaseError("file", "devdax cases map the device itself and have no file")
    maps = obj.get("mappings")
    if not isinstance(maps, list) or not maps:
        raise CaseError("mappings", "expected a non-empty list")
    mappings = [_parse_mapping(m, i, device) for i, m in enumerate(maps)]
    ids: dict[str, Mapping] = {}
    for i, m in enumerate(mappings):
        if m.id in ids:
            raise CaseError(f"mappings[{i}].id", f"duplicate id {m.id!r}")
        ids[m.id] = m
    live = sorted((m for m in mappings if m.mapped), key=lambda m: m.start)
    for prev, nxt in zip(live, live[1:]):
        if nxt.start < prev.end:
            raise CaseError(
                "mappings",
                f'{prev.id!r} and {nxt.id!r} overlap; map one later with "mapped": false '
                'and an "mmap" access after the other\'s "munmap"',
            )
    accs = obj.get("accesses", [])
    if not isinstance(accs, list):
        raise CaseError("accesses", "expected a list")
    only = next(iter(ids)) if len(ids) == 1 else None
    accesses = [_parse_access(a, i, ids, only) for i, a in enumerate(accs)]
    alive = False
    for i, a in enumerate(accesses):
        if a.op == "pwrite" and file is None:
            raise CaseError(f"accesses[{i}].op", "pwrite writes the file: devdax cases have none")
        if a.child and not alive:
            raise CaseError(f"accesses[{i}].child", "no child: a fork comes first (and no exit since)")
        alive = (alive or a.op == "fork") and a.op != "exit"
    proc = obj.get("process", {})
    proc = _obj(proc, "process")
    page_tables = _blocks(proc, "page_tables")
    shared_blocks = _blocks(proc, "shared_blocks")
    fork_tables = _blocks(proc, "fork_tables")
    return Case(
        kernel=kernel,
        device=device,
        file=file,
        mappings=mappings,
        accesses=accesses,
        thp_disable=_bool(proc, "thp_disable", "process", False),
        page_tables=page_tables,
        shared_blocks=shared_blocks,
        fork_tables=fork_tables,
        name=obj.get("name"),
        notes=obj.get("notes"),
        raw=obj,
    )


# --------------------------------------------------------------------------
# typed decoding of the common shape: a big case's accesses decoded by
# msgspec straight into Access objects, validated as they are decoded

#: the top-level keys of format version 1 (docs/case-format.md)
CASE_KEYS = ("version", "kernel", "name", "notes", "device", "file", "mappings", "process")


class _CaseHead(msgspec.Struct, forbid_unknown_fields=True):
    """A case with its accesses left undecoded; a top-level key outside
    CASE_KEYS + accesses makes the decoding fail (not the common shape)."""

    version: Any = msgspec.UNSET
    kernel: Any = msgspec.UNSET
    name: Any = msgspec.UNSET
    notes: Any = msgspec.UNSET
    device: Any = msgspec.UNSET
    file: Any = msgspec.UNSET
    mappings: Any = msgspec.UNSET
    process: Any = msgspec.UNSET
    accesses: msgspec.Raw = msgspec.Raw()


_decode_head = msgspec.json.Decoder(_CaseHead).decode
#: a non-negative integer msgspec can bound (int64); larger ones, up to the
#: 64-bit limit of cli/_common.check_json_limits(), take the careful path
_U64 = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]


def split_case(data: bytes) -> tuple[dict[str, Any], Optional[msgspec.Raw]]:
    """The case in *data* as (its top level without ``accesses``, as plain
    JSON values; the undecoded ``accesses``, or None when absent).  Raises
    msgspec.DecodeError/ValidationError for malformed JSON or a top-level
    key outside the format."""
    h = _decode_head(data)
    head = {k: v for k in CASE_KEYS if (v := getattr(h, k)) is not msgspec.UNSET}
    return head, (h.accesses if len(h.accesses) else None)


def decode_accesses(raw: msgspec.Raw, mappings: list[Mapping]) -> Sequence[Access]:
    """The accesses in *raw* when every one is what _parse_access() decodes
    directly -- a read or write naming one of *mappings* (or none, when the
    case has one), with non-negative integer offset and length, boolean
    flags, no advice and no other key -- as the Access objects it would
    build.  Raises msgspec.ValidationError otherwise (the caller then takes
    the careful path, which names what is wrong)."""
    ids = tuple(m.id for m in mappings)
    from .core import scan_accesses  # the compiled core's reader, when built

    columns = scan_accesses(raw, ids)
    if columns is not None:
        return columns
    only: Any = ids[0] if len(ids) == 1 else msgspec.NODEFAULT
    typed = msgspec.defstruct(
        "Access",
        [
            ("op", Literal["read", "write"]),
            ("mapping", Literal[ids], only),
            ("offset", _U64, 0),
            ("length", _U64, 0),
            ("advice", type(None), None),
        ],
        bases=(Access,),
        forbid_unknown_fields=True,
        gc=False,
    )
    accesses: list[Access] = msgspec.json.decode(raw, type=list[typed])  # type: ignore[valid-type]
    return accesses


def _blocks(proc: dict[str, Any], key: str) -> list[int]:
    """``process.<key>``: addresses, each rounded down to its 2 MiB block."""
    vals = proc.get(key, [])
    if not isinstance(vals, list):
        raise CaseError(f"process.{key}", "expected a list of addresses")
    out = []
    for i, v in enumerate(vals):
        try:
            out.append(parse_int(v) & ~(PMD_SIZE - 1))
        except ValueError as exc:
            raise CaseError(f"process.{key}[{i}]", str(exc)) from None
    return out


def load_case(path: str) -> Case:
    """Read and validate a case file (JSON)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CaseError("file", f"{path}: no such case file") from None
    except OSError as exc:
        raise CaseError("file", f"{path}: {exc.strerror}") from None
    return parse_case(_decode_json(data, path))


def _decode_json(data: bytes, path: str) -> Any:
    # msgspec decodes a big case three times as fast as json.loads; what it
    # refuses (integers beyond 64 bits, NaN) or finds malformed goes to the
    # stdlib, which accepts the former and words the error users know.
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        pass
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise CaseError("json", f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise CaseError("json", f"{path}: not valid JSON: not UTF-8 text ({exc.reason})") from None
