"""The compiled explain core (pmemtrace._explain_core): the bridge.

``explain --json/--indent/--jsonl`` of a case in the declared subset runs its
accesses in C (cffi_build/explain_core.c), which mirrors the fsdax fault
paths of this package function by function and writes each result's JSON
from a template that Python made with its own encoder (engine._template).
Python stays the one source of every rule: the core reports each new kind
of fault (a *shape*: outcome, result, reason and trace), Python turns it
into the model's own :class:`fsdax.Fault`, makes its JSON and its template,
and counts it in the summary; tests/test_explain_core.py compares the two
paths byte for byte on every embedded example, every scenario and random
cases.

The declared subset (:func:`prepare` and the C ``pmx_check()`` check it
before anything runs; docs/architecture.md, "The compiled explain core"):
in an fsdax case with a file and no pre-existing page tables, streamed
(no pwrite), with every address, offset, extent and size below 2**56 and
PMEMTRACE_PURE_PYTHON unset, a plain read or write inside a mapping mapped
from the start, writes to writable mappings only.  Within it the core
covers every path of fsdax.handle_mm_fault() for user faults (PMD and PTE
paths, huge zero pages, COW, unwritten conversion in
FileState.write_range()), except for the rules :func:`rules_not_mirrored`
names: a case that could meet one runs in Python whole.

The hand-off: the core runs the accesses before the first one outside the
subset; :func:`hand_over` then puts its state into the Python model's Sim
and the Python model runs the rest (nothing comes back).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Callable

from ..events import FAULT_FLAG, VM_FAULT
from . import fsdax

if TYPE_CHECKING:
    from .case import ColumnAccesses
    from .engine import Prediction, Sim

try:  # optional: built by setup.py where there is a C compiler
    from .. import _explain_core  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _explain_core = None

from ..compiled import PURE_ENV, pure_python_forced

#: codes shared with explain_core.c (its enums of the same order)
NAMES = [
    "dax_iomap_pmd_fault",
    "dax_pmd_fault",
    "dax_pmd_fault_done",
    "dax_pmd_load_hole",
    "dax_pmd_load_hole_fallback",
    "dax_iomap_pte_fault",
    "dax_pte_fault",
    "dax_pte_fault_done",
    "dax_load_hole",
    "dax_finish_sync_fault",
    "dax_insert_pfn_mkwrite",
]
OUTCOMES = ("none", "pmd", "huge-zero", "pte", "zero-pte", "cow", "sigbus")
LEVELS = (None, "pmd", "pte")
REASONS = (
    None,
    "sigbus-eof",
    "pmd-colour-mismatch",
    "private-write",
    "vma-start",
    "vma-end",
    "beyond-eof",
    "pte-entry-present",
    "extent-too-short",
    "pfn-unaligned",
    "pfn-no-devmap",
    "pte-table-present",
    "nohugepage",
    "thp-disabled",
)
OPS = ("read", "write")
_OPCODE = {"read": 0, "write": 1}
_LIMIT = 1 << 56
#: the output buffer of one pmx_run() call
BUF_SIZE = 1 << 20
_SLOT = re.compile(rb"%%|%\(([iafp])\)d")


def scan_accesses(raw: Any, ids: tuple[str, ...]) -> ColumnAccesses | None:
    """case.decode_accesses() through the core's reader: a
    :class:`case.ColumnAccesses` when every access is a plain read or write
    in the plain JSON it reads (explain_core.h pmx_scan_accesses()), else
    None (msgspec then decodes them, and says what is wrong).  What it
    accepts msgspec's typed decoding accepts too, as the same accesses
    (tests/test_explain_core.py)."""
    if not available() or not ids:
        return None
    from .case import ColumnAccesses

    ffi, lib = _explain_core.ffi, _explain_core.lib
    data = memoryview(raw)  # no copy
    cap = lib.pmx_count_objects(ffi.from_buffer(data), len(data))  # at least one '{' per access
    ops = bytearray(cap)
    maps, offsets, lengths = array("i", [0]) * cap, array("q", [0]) * cap, array("q", [0]) * cap
    id_bytes = [i.encode() for i in ids]
    n = lib.pmx_scan_accesses(
        ffi.from_buffer(data),
        len(data),
        b"".join(id_bytes),
        [len(b) for b in id_bytes],
        len(ids),
        0 if len(ids) == 1 else -1,
        ffi.from_buffer("uint8_t[]", ops),
        ffi.from_buffer("int32_t[]", maps),
        ffi.from_buffer("int64_t[]", offsets),
        ffi.from_buffer("int64_t[]", lengths),
        cap,
    )
    if n < 0:
        return None
    if n < cap:
        del ops[n:], maps[n:], offsets[n:], lengths[n:]
    return ColumnAccesses(bytes(ops), maps, offsets, lengths, ids)


def available() -> bool:
    """Is the compiled core there and not switched off?"""
    return _explain_core is not None and not pure_python_forced()


class CoreRun:
    """The core's state for one case, and the access arrays it reads: it
    runs accesses 0..k-1 (``k``: the first outside the subset)."""

    def __init__(
        self,
        sim: Sim,
        names: list[str],
        params: Any,
        vmas: list[Any],
        map_vma: list[int],
        columns: tuple[Any, Any, Any],
    ):
        ffi, lib = _explain_core.ffi, _explain_core.lib
        self.sim = sim
        self.sep = b","
        self.names = names
        self.vmas = vmas
        self.ops, self.maps, self.offsets = columns
        self.n = len(self.ops)
        f = sim.file
        assert f is not None
        exts = f.exts
        c_exts = ffi.new("struct pmx_ext[]", max(1, len(exts)))
        for k, e in enumerate(exts):
            c_exts[k] = (e.logical, e.physical, e.length, e.unwritten)
        c_vmas = ffi.new("struct pmx_vma[]", max(1, len(vmas)))
        for k, v in enumerate(vmas):
            c_vmas[k] = (v.start, v.end, v.pgoff, v.shared, v.sync, v.writable, v.nohugepage)
        self._keep = params  # params.sep points into memory owned by Python
        x = lib.pmx_new(params[0], c_vmas, len(vmas), map_vma, len(map_vma), c_exts, len(exts))
        if x == ffi.NULL:
            raise MemoryError("explain core: out of memory")
        self.x = ffi.gc(x, lib.pmx_free)
        self.k = lib.pmx_check(self.x, *_columns(self), self.n)


def rules_not_mirrored(case: Any, sim: Sim) -> str | None:
    """The model's rules the core does not mirror (yet), as the reason a case
    that could meet them runs in Python; None when it cannot meet them."""
    f = case.file
    if any(m.sync for m in case.mappings):
        # per-entry dirty marks, the MAP_SYNC fsync's writeback and its
        # write-protection (fsdax._finish_sync_fault()): the core keeps no
        # dirty marks, so not even a later MAP_SYNC mmap may follow it
        return "MAP_SYNC writeback"
    if sim.profile.read_faults_dirty_entries:
        return "read faults mark entries dirty (5.19..6.1), which write(2)'s invalidation keeps"
    if f.allocated:
        return "recorded placement of hole allocations (file.allocated)"
    covered, holes, unwritten = 0, False, False
    for e in sorted(f.extents, key=attrgetter("logical")):
        holes = holes or e.logical > covered
        unwritten = unwritten or e.unwritten
        covered = max(covered, e.logical + e.length)
    if holes or covered < f.size:
        # a write fault's mapping is the allocation, not merged with what
        # follows (fsdax.dax_iomap_pmd_fault()); FileState._placement()
        return "hole allocation"
    if unwritten and f.fs == "ext4":
        # FileState._ext4_zeroout() and ext4's capped conversion mapping
        return "ext4 unwritten conversion"
    return None


def prepare(case: Any, sim: Sim, sep: bytes) -> CoreRun | None:
    """A :class:`CoreRun` for *case* if it is in the declared subset (module
    docstring), else None (the Python model runs it)."""
    if not available() or case.device.mode != "fsdax" or sim.file is None or case.page_tables:
        return None
    if sim.mm.puds or len({m.id for m in case.mappings}) != len(case.mappings):
        return None
    if rules_not_mirrored(case, sim) is not None:
        return None
    vmas = list(sim.mm.vmas)  # those mapped from the start, one each
    at = {v.mapping: k for k, v in enumerate(vmas)}
    if len(at) != len(vmas):
        return None
    # an access to a mapping not mapped (yet), or refused, is the Python model's
    map_vma = [at.get(m.id, -1) if m.id not in sim.mapping_errors else -1 for m in case.mappings]
    vidx = {m.id: k for k, m in enumerate(case.mappings)}
    f = sim.file
    numbers = [case.device.data_start, f.size, f.hole_alloc_align, f._next_phys]
    numbers += [x for v in vmas for x in (v.start, v.end, v.pgoff << 12)]
    numbers += [x for e in f.exts for x in (e.logical, e.physical, e.length)]
    if any(not 0 <= x < _LIMIT for x in numbers) or f.hole_alloc_align <= 0:
        return None
    accesses = case.accesses
    from .case import ColumnAccesses

    try:
        if isinstance(accesses, ColumnAccesses) and accesses.ids == tuple(vidx):
            ops, maps, offsets = accesses.ops, accesses.maps, accesses.offsets
        else:
            ops, maps, offsets = _columns_of(accesses, vidx)
    except (OverflowError, TypeError):  # an offset beyond 64 bits
        return None
    prof = sim.profile
    names = list(NAMES)

    def code(name: str) -> int:
        if name not in names:
            names.append(name)
        return names.index(name)

    ffi = _explain_core.ffi
    p = ffi.new("struct pmx_params *")
    from .engine import USER_FAULT_FLAGS

    rflags = USER_FAULT_FLAGS
    if not prof.user_fault_interruptible:
        rflags &= ~FAULT_FLAG["INTERRUPTIBLE"]
    sep_c = ffi.new("char[]", sep)
    p.pmd_sigbus_after_vma_checks = prof.pmd_sigbus_after_vma_checks
    p.pmd_needs_devmap = prof.pmd_needs_devmap
    p.struct_pages = bool(sim.device.struct_pages)
    p.pmd_insert_function = code(prof.pmd_insert_function)
    p.zero_pmd_via_insert = prof.zero_pmd_via_insert
    p.load_hole_fallback_if_pmd_present = prof.load_hole_fallback_if_pmd_present
    p.pte_insert_function = [code(prof.pte_insert_function[0]), code(prof.pte_insert_function[1])]
    # fsdax._pte_level(): ->page_mkwrite (6.15+) passes exactly WRITE|MKWRITE
    p.pte_insert_is_page_mkwrite = prof.pte_insert_function[0] == "vmf_insert_page_mkwrite"
    p.pte_done_traces_major = prof.pte_done_traces_major
    p.vma_lock_faults = prof.vma_lock_faults
    p.orig_pte_valid_flag = prof.orig_pte_valid_flag
    p.wp_huge_pmd_private_huge_fault = prof.wp_huge_pmd_private_huge_fault
    p.thp_disable = bool(sim.thp_disable)
    p.fs_is_ext4 = f.fs == "ext4"
    p.rflags = rflags
    p.wflags = rflags | FAULT_FLAG["WRITE"]
    p.file_size = f.size
    p.max_pgoff = sim.max_pgoff
    p.data_start = sim.data_start
    p.hole_alloc_align = f.hole_alloc_align
    p.next_phys = f._next_phys
    p.datasync_dirty = f.datasync_dirty
    p.zero_page_alloc_seen = "thp_zero_page_alloc" in sim.flags_seen
    p.sep = sep_c
    p.sep_len = len(sep)
    p.vf_nopage, p.vf_fallback, p.vf_sigbus = VM_FAULT["NOPAGE"], VM_FAULT["FALLBACK"], VM_FAULT["SIGBUS"]
    p.vf_major, p.vf_done_cow, p.vf_needdsync = VM_FAULT["MAJOR"], VM_FAULT["DONE_COW"], VM_FAULT["NEEDDSYNC"]
    p.vf_retry = VM_FAULT["RETRY"]
    p.ff_write, p.ff_mkwrite = FAULT_FLAG["WRITE"], FAULT_FLAG["MKWRITE"]
    p.ff_vma_lock, p.ff_orig_pte_valid = FAULT_FLAG["VMA_LOCK"], FAULT_FLAG["ORIG_PTE_VALID"]
    run = CoreRun(sim, names, (p, sep_c), vmas, map_vma, (ops, maps, offsets))
    run.sep = sep
    return run if run.k else None


def _columns_of(accesses: Any, vidx: dict[str, int]) -> tuple[bytes, Any, Any]:
    """(op codes, mapping indexes, offsets) of Access objects: another op
    is code 2 and another mapping (a pwrite's None) -1, both outside the
    subset; raises OverflowError for an offset past 64 bits."""
    ops = bytes(_OPCODE.get(op, 2) for op in map(attrgetter("op"), accesses))
    if len(vidx) == 1 and all(map(vidx.__contains__, set(map(attrgetter("mapping"), accesses)))):
        maps = array("i", [0]) * len(accesses)
    else:
        maps = array("i", [vidx.get(m, -1) if m is not None else -1 for m in map(attrgetter("mapping"), accesses)])
    return ops, maps, array("q", map(attrgetter("offset"), accesses))


def _columns(run: CoreRun) -> tuple[Any, Any, Any]:
    ffi = _explain_core.ffi
    return (
        ffi.from_buffer("uint8_t[]", run.ops),
        ffi.from_buffer("int32_t[]", run.maps),
        ffi.from_buffer("int64_t[]", run.offsets),
    )


def _record(run: CoreRun, shape: Any, fault_addr: int) -> Any:
    """The model's own record of a shape: engine.HIT_PMD, or an fsdax.Fault
    as fsdax.handle_mm_fault() would have returned it."""
    from .engine import HIT_PMD

    if shape.hit:
        return HIT_PMD
    f = fsdax.Fault(run.vmas[shape.vma].trace_fields, fault_addr)
    f.outcome = OUTCOMES[shape.outcome]
    f.level = LEVELS[shape.level]
    f.result = shape.result
    f.reason = REASONS[shape.reason]
    names = run.names
    for k in range(shape.ntrace):
        t = shape.trace[k]
        name = names[t.name]
        if not t.is_event:
            f.trace.append(name)
        elif t.has_values:
            f.trace.append((name, t.flags, t.result))
        else:
            f.trace.append((name, None, None))
    return f


def _template_parts(tpl: bytes) -> tuple[bytes, list[int], bytes]:
    """engine._template()'s ``bytes % values`` template as the core takes
    it: the literal parts joined, their lengths, the value names."""
    lits, lens, slots = [], [], []
    cur = b""
    pos = 0
    for m in _SLOT.finditer(tpl):
        cur += tpl[pos : m.start()]
        pos = m.end()
        if m.group(1) is None:  # '%%'
            cur += b"%"
            continue
        lits.append(cur)
        lens.append(len(cur))
        slots.append(m.group(1))
        cur = b""
    cur += tpl[pos:]
    lits.append(cur)
    lens.append(len(cur))
    return b"".join(lits), lens, b"".join(slots)


def encoded_blocks(pred: Prediction, run: CoreRun, encode: Callable[[Any], bytes]) -> Iterator[bytes]:
    """The results of the case as Prediction.iter_blocks() yields them:
    blocks of results joined by the separator given to :func:`prepare`
    (bytes-like, each valid until the next is asked for: write it, do not
    keep it); sets the prediction's summary at the end."""
    from .engine import _Aggregate, _template

    ffi, lib = _explain_core.ffi, _explain_core.lib
    x = run.x
    ops, maps, offsets = _columns(run)
    buf = ffi.new("char[]", BUF_SIZE)
    pos = ffi.new("int64_t *", 0)
    used = ffi.new("int64_t *", 0)
    accesses = pred.case.accesses
    exact = pred._exact_json
    agg = _Aggregate()
    records: list[Any] = []  # by shape id
    while True:
        rc = lib.pmx_run(x, ops, maps, offsets, run.k, pos, buf, BUF_SIZE, used)
        if used[0]:
            yield ffi.buffer(buf, used[0])  # valid until the next block is asked for
        if rc == lib.PMX_DONE:
            break
        if rc == lib.PMX_FULL:
            continue
        if rc < 0:
            raise MemoryError("explain core: out of memory" if rc == lib.PMX_NOMEM else "explain core: trace too long")
        pend = lib.pmx_pending(x)
        i, address, fault_addr, sid = pend.index, pend.address, pend.fault_addr, pend.shape
        a = accesses[i]
        if rc == lib.PMX_NEW_SHAPE:
            rec = _record(run, lib.pmx_shape(x, sid), fault_addr)
            records.append(rec)
            agg.add(rec)  # the first of its shape, counted as _Aggregate counts it
            real = exact(i, a, address, rec)
            tpl = _template(real, exact, i, a, address, rec, encode)
            if tpl is not None and len(tpl) < BUF_SIZE // 4:
                lit, lens, slots = _template_parts(tpl)
                if lib.pmx_set_template(x, sid, lit, lens, slots, len(slots)) < 0:
                    raise MemoryError("explain core: out of memory")
            else:
                lib.pmx_set_template(x, sid, ffi.NULL, ffi.NULL, ffi.NULL, -1)
            yield encode(real)
        else:  # PMX_ENCODE: a shape without a template
            rec = records[sid]
            yield encode(exact(i, a, address, rec, None if rec.__class__ is not fsdax.Fault else fault_addr))
    # the summary: each shape's first was added above, the others counted
    for sid, rec in enumerate(records):
        n = lib.pmx_shape_count(x, sid) - 1
        if not n:
            continue
        if rec.__class__ is fsdax.Fault:
            agg.add_again(rec, n)
        else:
            agg.n += n
            agg.hits += n
    counters = ffi.new("int64_t[4]")
    lib.pmx_counters(x, counters)
    c = pred.counters
    for k, name in enumerate(("thp_fault_fallback", "thp_split_pmd", "thp_zero_page_alloc", "pgmajfault")):
        c[name] += counters[k]
    if run.k == run.n:
        pred._summary = agg.result(c, pred.mapping_errors)
        return
    # the hand-off: the Python model goes on from access k with the state
    # the core leaves, and adds to the same summary
    from .engine import _run

    hand_over(run)
    pred._stream = _run(pred.case, run.sim, run.k)
    blocks: list[bytes] = []
    for b in pred.iter_encoded(encode, start=run.k, agg=agg):
        blocks.append(b)
        if len(blocks) == 4096:
            yield run.sep.join(blocks)
            blocks = []
    if blocks:
        yield run.sep.join(blocks)


def _holds_anon(pmds: dict[int, Any], start: int, end: int) -> bool:
    """Is an anonymous (copied-on-write) page mapped in [start, end)?"""
    for key in range(start >> 21, ((end - 1) >> 21) + 1):
        t = pmds.get(key)
        anon = getattr(t, "anon", 0)
        if anon:
            lo = max(start, key << 21) - (key << 21) >> 12
            hi = (min(end, (key + 1) << 21) - (key << 21) - 1) >> 12
            if anon & (((1 << (hi - lo + 1)) - 1) << lo):
                return True
    return False


def hand_over(run: CoreRun) -> None:
    """Puts the core's state into the Python model's Sim (the PMD slots and
    page tables, the xarray entries, the block map in its chunks, the
    file's flags), as if the Python model had run the core's accesses."""
    from .state import PMD_ENTRY_DATA, PMD_ENTRY_EMPTY, PMD_ENTRY_ZERO, Ext, PteEntries, PteTable, huge_pmd

    ffi, lib = _explain_core.ffi, _explain_core.lib
    x, sim = run.x, run.sim
    fs = sim.file
    assert fs is not None

    def bitmap(words: Any, at: int) -> int:
        return int.from_bytes(ffi.buffer(words + at, 64), "little")

    cap = lib.pmx_table_count(x, 0)
    keys, kinds = ffi.new("int64_t[]", cap + 1), ffi.new("uint8_t[]", cap + 1)
    w, z, bits = ffi.new("uint8_t[]", cap + 1), ffi.new("uint8_t[]", cap + 1), ffi.new("uint64_t[]", 32 * cap + 1)
    pmds = sim.mm.pmds
    for k in range(lib.pmx_export_pmds(x, keys, kinds, w, z, bits, cap)):
        if kinds[k] == 1:
            pmds[keys[k]] = huge_pmd(w[k], bool(z[k]))
        else:
            t = pmds[keys[k]] = PteTable()
            t.present, t.writable = bitmap(bits, 32 * k), bitmap(bits, 32 * k + 8)
            t.anon, t.zero = bitmap(bits, 32 * k + 16), bitmap(bits, 32 * k + 24)
    cap = lib.pmx_table_count(x, 1)
    keys, kinds, bits = (
        ffi.new("int64_t[]", cap + 1),
        ffi.new("uint8_t[]", cap + 1),
        ffi.new("uint64_t[]", 16 * cap + 1),
    )
    pmd_entry = {1: PMD_ENTRY_EMPTY, 2: PMD_ENTRY_ZERO, 3: PMD_ENTRY_DATA}
    for k in range(lib.pmx_export_entries(x, keys, kinds, bits, cap)):
        if kinds[k] == 4:
            e = fs.entries[keys[k]] = PteEntries()
            e.present, e.zero = bitmap(bits, 16 * k), bitmap(bits, 16 * k + 8)
        else:
            fs.entries[keys[k]] = pmd_entry[kinds[k]]
    nch = lib.pmx_nchunks(x)
    lens = ffi.new("int64_t[]", nch)
    out = ffi.new("struct pmx_ext[]", lib.pmx_nextents(x) + 1)
    n = lib.pmx_export_extents(x, out, lens)
    exts = [Ext(e.logical, e.physical, e.length, bool(e.unwritten)) for e in (out[i] for i in range(n))]
    chunks, at = [], 0
    for c in range(nch):
        chunks.append(exts[at : at + lens[c]])
        at += lens[c]
    fs._chunks = chunks
    fs._starts = [[e.logical for e in ch] for ch in chunks]
    fs._heads = [st[0] for st in fs._starts if st]
    # the private VMAs a COW fault wrote get their anon_vma (Vma.anon_vma,
    # which fork.py reads for vma_needs_copy()): those holding an anonymous
    # page (the core's accesses zap nothing, so every COW page is still there)
    for v in run.vmas:
        if not v.shared and _holds_anon(pmds, v.start, v.end):
            sim.anon_vma_prepare(v)
    state = ffi.new("int64_t[3]")
    lib.pmx_file_state(x, state)
    fs.datasync_dirty, fs._next_phys = bool(state[0]), state[1]
    if state[2]:
        sim.flags_seen.add("thp_zero_page_alloc")


__all__ = ["available", "prepare", "encoded_blocks", "PURE_ENV"]
