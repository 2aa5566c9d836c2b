"""explain(case): run a case through the model, access by access.

Pure: no I/O, no clock, no globals.  The result, a :class:`Prediction`, keeps
compact per-access records; events and JSON are built only when asked for.
"""

import gc
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Optional, cast

from ..events import FAULT_FLAG, Event, decode_vm_fault
from . import devdax, fsdax, gup, remap
from . import fork as forkmod
from .case import Access, Case, Mapping
from .profiles import select_profile
from .state import PAGE_SHIFT, PAGE_SIZE, AddressSpace, FileState, HugePmd, PteTable, Vma

# x86 user faults: FAULT_FLAG_DEFAULT (ALLOW_RETRY|KILLABLE|INTERRUPTIBLE) | USER
# (arch/x86/mm/fault.c do_user_addr_fault(), v6.1..7.x)
USER_FAULT_FLAGS = FAULT_FLAG["ALLOW_RETRY"] | FAULT_FLAG["KILLABLE"] | FAULT_FLAG["INTERRUPTIBLE"] | FAULT_FLAG["USER"]
SIGSEGV = 0x40


class AccessResult:
    __slots__ = (
        "index",
        "op",
        "mapping",
        "address",
        "outcome",
        "result",
        "reason",
        "faults",
        "calls",
        "errno",
        "pinned",
        "pinned_fast",
        "length",
        "ctx",
    )

    def __init__(self, index: int, op: str, mapping: Optional[str], address: Optional[int]) -> None:
        self.index = index
        self.op = op
        self.mapping = mapping
        self.address = address
        self.outcome = "none"
        self.result = 0
        self.reason: Optional[str] = None
        self.faults: list[tuple[int, fsdax.Fault]] = []  # [(address, Fault)]
        self.calls: dict[str, int] = {}
        self.errno: Optional[int] = None
        self.pinned: Optional[int] = None
        self.pinned_fast: Optional[int] = None
        self.length: Optional[int] = None
        self.ctx: tuple[int, int, str, int] = (
            0,
            0,
            "zero_folio",
            0,
        )  # (dev, ino, zero field, max_pgoff) for rendering events

    def set_error(self, errno: Optional[int], reason: str) -> None:
        self.outcome = "error"
        self.errno = errno
        self.reason = reason

    # -- derived views ------------------------------------------------------
    def all_calls(self) -> dict[str, int]:
        c = dict(self.calls)
        for _, f in self.faults:
            for x in f.trace:
                if x.__class__ is str:
                    c[x] = c.get(x, 0) + 1
        return c

    def events(self) -> list[Event]:
        dev, ino, zero_field, max_pgoff = self.ctx
        return [
            Event(name, fields, source="model", access=self.index)
            for _, f in self.faults
            for name, fields in _rendered(f, dev, ino, zero_field, max_pgoff)
        ]

    def to_json(self) -> dict[str, Any]:
        dev, ino, zero_field, max_pgoff = self.ctx
        d: dict[str, Any] = {
            "access": self.index,
            "op": self.op,
            "mapping": self.mapping,
            "address": self.address,
            "outcome": self.outcome,
            "result": self.result,
            "result_text": result_text(self.result),
            "reason": self.reason,
            "events": [
                {"name": name, "fields": fields}
                for _, f in self.faults
                for name, fields in _rendered(f, dev, ino, zero_field, max_pgoff)
            ],
            "calls": self.all_calls(),
        }
        if self.errno is not None:
            d["errno"] = self.errno
        if self.op == "gup":
            d["length"] = self.length
            d["pinned"] = self.pinned
            d["pinned_fast"] = self.pinned_fast
            d["faults"] = [
                {"address": a, "outcome": f.outcome, "result": f.result, "reason": f.reason} for a, f in self.faults
            ]
        return d


_RESULT_TEXT: dict[int, str] = {}


def result_text(result: int) -> str:
    """:func:`decode_vm_fault`, computed once per value (results are few)."""
    t = _RESULT_TEXT.get(result)
    if t is None:
        t = _RESULT_TEXT[result] = decode_vm_fault(result)
    return t


def _rendered(
    f: "fsdax.Fault", dev: int, ino: int, zero_field: str, max_pgoff: int
) -> list[tuple[str, dict[str, int]]]:
    """(name, fields) of every fs_dax event of fault *f*, in order."""
    # render_event() types its fields int | None, for the flags/result slots of
    # the trace tuples; the events whose slots are None (the load-hole ones)
    # render neither, so every field value is an int
    return cast(
        "list[tuple[str, dict[str, int]]]",
        [fsdax.render_event(f, t, max_pgoff, dev, ino, zero_field) for t in f.trace if t.__class__ is tuple],
    )


_MAPPED = ("pmd", "pud", "huge-zero", "none")


class _Hit:
    """An access that found its translation already there: nothing new, no
    fault (kept as one shared object per kind to keep explain() small)."""

    __slots__ = ("level",)

    def __init__(self, level: str) -> None:
        self.level = level


HIT_PMD = _Hit("pmd")
HIT_PTE = _Hit("pte")
HIT_PUD = _Hit("pud")


class _Aggregate:
    """Summary counts, built from per-access records as they come."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.fallbacks: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.hits = 0
        self.n = 0

    def add(self, r: Any) -> None:
        self.n += 1
        cls = r.__class__
        if cls is _Hit:
            self.hits += 1
            return
        if cls is fsdax.Fault:
            # a plain read/write fault, stored without its AccessResult
            self.outcomes[r.outcome] += 1
            self._fault(r)
            return
        self.outcomes[r.outcome] += 1
        for _, f in r.faults:
            self._fault(f)
        for k, v in r.calls.items():
            self.calls[k] += v

    def add_again(self, f: "fsdax.Fault", n: int) -> None:
        """Count the plain fault *f* (already :meth:`add`-ed once) *n* more
        times: the same counters in the same first-seen order as n adds."""
        self.n += n
        self.outcomes[f.outcome] += n
        self.faults[f.outcome] += n
        if f.reason and f.outcome not in _MAPPED:
            self.fallbacks[f.reason] += n
        for x in f.trace:
            if x.__class__ is str:
                self.calls[x] += n
            else:
                self.events[x[0]] += n

    def _fault(self, f: "fsdax.Fault") -> None:
        self.faults[f.outcome] += 1
        if f.reason and f.outcome not in _MAPPED:
            self.fallbacks[f.reason] += 1
        ev = self.events
        calls = self.calls
        for x in f.trace:
            if x.__class__ is str:
                calls[x] += 1
            else:
                ev[x[0]] += 1

    def result(self, counters: "Counter[str]", mapping_errors: dict[str, str]) -> dict[str, Any]:
        outcomes = dict(self.outcomes)
        if self.hits:
            outcomes["none"] = outcomes.get("none", 0) + self.hits
        f = self.faults
        return {
            "accesses": self.n,
            "outcomes": outcomes,
            "faults": dict(f),
            "pmd": f.get("pmd", 0),
            "pud": f.get("pud", 0),
            "pte": f.get("pte", 0),
            "huge_zero": f.get("huge-zero", 0),
            "fallbacks": dict(self.fallbacks),
            "events": dict(self.events),
            "calls": dict(self.calls),
            "vmstat": dict(counters),
            "mapping_errors": dict(mapping_errors),
        }


class Prediction:
    def __init__(
        self,
        case: Case,
        profile: Any,
        records: Optional[list[Any]],
        counters: "Counter[str]",
        mapping_errors: dict[str, str],
        ctx: tuple[int, int, str, int],
        summary: Optional[dict[str, Any]] = None,
        stream: Optional[Iterator[Any]] = None,
        sim: Optional["Sim"] = None,
    ) -> None:
        self._summary = summary
        self._sim = sim  # explain(stream=True, compiled=True): the state the compiled core may start from
        self._stream = stream  # explain(stream=True): the records, run as iter_encoded() takes them
        self.case = case
        self.profile = profile
        self._records = records
        self._results: Optional[list[AccessResult]] = None
        self.counters = counters
        self.mapping_errors = mapping_errors
        self.ctx = ctx

    @property
    def results(self) -> list[AccessResult]:
        """One :class:`AccessResult` per access (materialised on first use)."""
        if self._records is None:
            raise ValueError("explain(case, keep_results=False) keeps only the summary")
        if self._results is None:
            out: list[AccessResult] = []
            for i, rec in enumerate(self._records):
                cls = rec.__class__
                if cls is AccessResult:
                    r = rec
                else:
                    a = self.case.accesses[i]
                    m = self.case.mapping(a.mapping)
                    r = AccessResult(i, a.op, a.mapping, (m.start + a.offset) & ~(PAGE_SIZE - 1))
                    if cls is fsdax.Fault:
                        r.faults.append(((m.start + a.offset) & ~(PAGE_SIZE - 1), rec))
                        r.outcome = rec.outcome
                        r.result = rec.result
                        r.reason = None if rec.outcome in _MAPPED else rec.reason
                r.ctx = self.ctx
                out.append(r)
            self._results = out
        return self._results

    def summary(self) -> dict[str, Any]:
        if self._summary is not None:
            return self._summary
        if self._stream is not None:
            raise ValueError("explain(case, stream=True): the summary comes after iter_encoded()")
        agg = _Aggregate()
        for r in self._records or ():
            agg.add(r)
        return agg.result(self.counters, self.mapping_errors)

    def to_json(self) -> dict[str, Any]:
        d = self.head_json()
        d["results"] = list(self.iter_json())
        d["summary"] = self.summary()
        return d

    def head_json(self) -> dict[str, Any]:
        """The keys of :meth:`to_json` that come before ``results``."""
        return {"profile": self.profile.name, "kernel": self.case.kernel, "profile_detail": self.profile.to_json()}

    def iter_json(self) -> Iterator[dict[str, Any]]:
        """``to_json()["results"]``, one dict at a time, built straight from
        the compact records (no :class:`AccessResult` or :class:`Event` per
        access: this is what ``explain --json`` spends its time on)."""
        if self._records is None:
            raise ValueError("explain(case, keep_results=False) keeps only the summary")
        ctx = self.ctx
        accesses = self.case.accesses
        maps: dict[Optional[str], Mapping] = {m.id: m for m in self.case.mappings}
        page_mask = ~(PAGE_SIZE - 1)
        for i, rec in enumerate(self._records):
            cls = rec.__class__
            if cls is AccessResult:
                rec.ctx = ctx
                yield rec.to_json()
                continue
            a = accesses[i]
            mid = a.mapping
            address = (maps[mid].start + a.offset) & page_mask
            yield self._exact_json(i, a, address, rec)

    def iter_encoded(
        self, encode: Callable[[Any], bytes], start: int = 0, agg: Optional["_Aggregate"] = None
    ) -> Iterator[bytes]:
        """The objects of :meth:`iter_json`, each as *encode* (compact JSON,
        or a result of indented JSON: explain --indent) writes it.  Accesses that differ only in their index and address
        (hits, and faults with the same outcome, VMA and trace) share one
        template made by *encode* itself, so the bytes are encode()'s; a
        template that cannot be made safely is not used (see _template).
        *start*, *agg*: the records begin at access *start* and add to the
        summary *agg* (the compiled core ran the accesses before)."""
        records: Optional[Iterable[Any]] = self._records
        if records is None:
            records, self._stream = self._stream, None
            if records is None:
                raise ValueError("explain(case, keep_results=False) keeps only the summary; stream=True runs once")
        ctx = self.ctx
        accesses = self.case.accesses
        maps: dict[Optional[str], Mapping] = {m.id: m for m in self.case.mappings}
        page_mask = ~(PAGE_SIZE - 1)
        fault_cls = fsdax.Fault
        templates: dict[Any, Any] = {}
        exact = self._exact_json
        # the summary, folded in on the way: each shape of fault once, then
        # counted (see _Aggregate.add_again)
        if agg is None:
            agg = _Aggregate()
        again: dict[Any, list[Any]] = {}  # key -> [a fault of that shape, times seen after the first]
        key: tuple[Any, ...]
        for i, rec in enumerate(records, start):
            cls = rec.__class__
            if cls is AccessResult:
                agg.add(rec)
                rec.ctx = ctx
                yield encode(rec.to_json())
                continue
            a = accesses[i]
            address = (maps[a.mapping].start + a.offset) & page_mask
            if cls is fault_cls:
                vma = rec.vma
                if vma is None:
                    agg.add(rec)
                    yield encode(exact(i, a, address, rec))
                    continue
                key = (a.op, a.mapping, rec.outcome, rec.result, rec.reason, vma, tuple(rec.trace))
                values = {b"i": i, b"a": address, b"f": rec.addr, b"p": vma[3] + ((rec.addr - vma[0]) >> PAGE_SHIFT)}
            else:
                key = (a.op, a.mapping)
                values = {b"i": i, b"a": address}
            if cls is fault_cls:
                seen = again.get(key)
                if seen is None:
                    agg.add(rec)
                    again[key] = [rec, 0]
                else:
                    seen[1] += 1
            else:
                agg.add(rec)
            tpl = templates.get(key)
            if tpl is None:
                tpl = templates[key] = _template(exact(i, a, address, rec), exact, i, a, address, rec, encode)
            yield tpl % values if tpl else encode(exact(i, a, address, rec))
        for rec, n in again.values():
            if n:
                agg.add_again(rec, n)
        if self._summary is None:
            self._summary = agg.result(self.counters, self.mapping_errors)

    def iter_blocks(self, encode: Callable[[Any], bytes], sep: bytes, n: int = 4096) -> Iterator[bytes]:
        """The objects of :meth:`iter_encoded` joined by *sep*, in blocks
        (the writer puts *sep* between blocks too).  A block is bytes-like
        and valid until the next one is asked for.  A streamed case in the
        compiled core's subset runs there (pmemtrace/model/core.py), with
        the same bytes; any other runs in the Python model."""
        sim, self._sim = self._sim, None
        if sim is not None:
            from . import core

            run = core.prepare(self.case, sim, sep)
            if run is not None:
                self._stream = None
                yield from core.encoded_blocks(self, run, encode)
                return
        buf: list[bytes] = []
        for x in self.iter_encoded(encode):
            buf.append(x)
            if len(buf) == n:
                yield sep.join(buf)
                buf = []
        if buf:
            yield sep.join(buf)

    def _exact_json(self, i: int, a: Access, address: int, rec: Any, addr: Optional[int] = None) -> dict[str, Any]:
        """The :meth:`iter_json` object of a plain record; *addr*: the fault's
        address in its place (the template's marker)."""
        dev, ino, zero_field, max_pgoff = self.ctx
        if rec.__class__ is not fsdax.Fault:
            return {
                "access": i,
                "op": a.op,
                "mapping": a.mapping,
                "address": address,
                "outcome": "none",
                "result": 0,
                "result_text": "0",
                "reason": None,
                "events": [],
                "calls": {},
            }
        if addr is not None:
            rec = _with_addr(rec, addr)
        outcome = rec.outcome
        events = []
        calls: dict[str, int] = {}
        for t in rec.trace:
            if t.__class__ is str:
                calls[t] = calls.get(t, 0) + 1
            else:
                name, fields = fsdax.render_event(rec, t, max_pgoff, dev, ino, zero_field)
                events.append({"name": name, "fields": fields})
        return {
            "access": i,
            "op": a.op,
            "mapping": a.mapping,
            "address": address,
            "outcome": outcome,
            "result": rec.result,
            "result_text": result_text(rec.result),
            "reason": None if outcome in _MAPPED else rec.reason,
            "events": events,
            "calls": calls,
        }

    def events(self) -> Iterator[Event]:
        for r in self.results:
            yield from r.events()


#: markers for the templates of iter_encoded(): numbers no case produces
#: (checked: a template is used only if each marker shows up exactly where
#: it stands in, and the template reproduces the record it was made from)
_MARK_INDEX = 8_111_111_111_111_111_111
_MARK_ADDRESS = 8_222_222_222_222_222_222

#: the errno of a refused mmap, by reason code (EINVAL otherwise): a fixed
#: mapping over another is EEXIST (MAP_FIXED_NOREPLACE), a device without
#: ->mmap is ENODEV (do_mmap())
EINVAL = 22
MMAP_ERRNO = {"mapping-overlap": 17, "devdax-fsdev-no-mmap": 19}
_MARK_FAULT_ADDR = 0x7AAA_AAAA_AAAA_A000


def _with_addr(rec: "fsdax.Fault", addr: int) -> "fsdax.Fault":
    f = fsdax.Fault(rec.vma, addr)
    f.outcome, f.result, f.reason, f.level, f.trace = rec.outcome, rec.result, rec.reason, rec.level, rec.trace
    return f


def _template(
    real: dict[str, Any],
    exact: Callable[..., dict[str, Any]],
    i: int,
    a: Access,
    address: int,
    rec: Any,
    encode: Callable[[Any], bytes],
) -> Optional[bytes]:
    """A ``bytes % values`` template of *encode(real)* with the access index
    (``i``), address (``a``) and, for a fault, its address (``f``) and page
    offset (``p``) as fields; None when that is not exact."""
    is_fault = rec.__class__ is fsdax.Fault
    marked = exact(_MARK_INDEX, a, _MARK_ADDRESS, rec, _MARK_FAULT_ADDR if is_fault else None)
    text = encode(marked).replace(b"%", b"%%")
    marks = [(_MARK_INDEX, b"i", 1), (_MARK_ADDRESS, b"a", 1)]
    if is_fault:
        n_events = len(marked["events"])
        n_pgoff = sum(1 for e in marked["events"] if "pgoff" in e["fields"])
        vma = rec.vma
        marks += [
            (_MARK_FAULT_ADDR, b"f", n_events),
            (vma[3] + ((_MARK_FAULT_ADDR - vma[0]) >> PAGE_SHIFT), b"p", n_pgoff),
        ]
    for value, name, count in marks:
        v = str(value).encode()
        if text.count(v) != count:
            return None
        # a value after its key's colon (and the space of indented JSON),
        # before a comma, a closing brace or a new line (indented JSON)
        text, found = re.subn(rb"(: ?)" + v + rb"(?=[,}\n])", rb"\g<1>%(" + name + rb")d", text)
        if found != count:
            return None
    values = {b"i": i, b"a": address}
    if is_fault:
        values[b"f"] = rec.addr
        values[b"p"] = rec.vma[3] + ((rec.addr - rec.vma[0]) >> PAGE_SHIFT)
    if text % values != encode(real):
        return None
    return text


class Sim:
    """The mutable kernel state for one case."""

    def __init__(self, case: Case, profile: Any) -> None:
        self.case = case
        self.profile = profile
        self.device = case.device
        self.file = FileState(case.file) if case.file is not None else None
        self.dev = case.file.dev if case.file is not None and case.file.dev is not None else case.device.dev
        self.data_start = case.device.data_start
        # mm/memory.c handle_mm_fault() -> the VMA's fault handlers
        self.fault_handler = devdax.handle_mm_fault if case.device.mode == "devdax" else fsdax.handle_mm_fault
        self.mm = AddressSpace()
        self.max_pgoff = self.file.max_pgoff if self.file is not None else 0
        self.thp_disable = case.thp_disable
        self.counters = Counter(thp_fault_fallback=0, thp_split_pmd=0, thp_zero_page_alloc=0, pgmajfault=0)
        self.flags_seen: set[str] = set()
        self.mapping_errors: dict[str, str] = {}
        self.mapped: set[str] = set()
        # page tables other mappings of the process left in shared 2 MiB
        # blocks: __handle_mm_fault() sees !pmd_none() and goes straight to
        # the PTE path (lab, 6.12: a 3 MiB DAX mapping next to a touched
        # anonymous page takes no dax_pmd_fault at its last 2 MiB)
        self.external_tables = set()
        for addr in case.page_tables:
            self.mm.pmds[addr >> 21] = PteTable()
            self.external_tables.add(addr >> 21)
        # blocks another VMA of the process shares all along: munmap keeps
        # their page tables (mm/mmap.c free_pgtables() frees a PTE table
        # only where no VMA remains in its 2 MiB: floor and ceiling are the
        # neighbouring VMAs' ends)
        self.shared_blocks = {addr >> 21 for addr in case.shared_blocks}
        # blocks where a VMA outside the case has an anon_vma at the fork: its
        # page tables are copied to the child (model/fork.py)
        self.fork_tables = {addr >> 21 for addr in case.fork_tables}
        # mappings an mremap moved or resized: id -> (start, length) now
        self.geom: dict[str, tuple[int, int]] = {}
        # anon_vma identities handed out (Vma.anon_vma), and the forked
        # child (model/fork.py)
        self._anon_vmas = 0
        self.child: Optional[forkmod.Child] = None

    def anon_vma_prepare(self, vma: Any) -> None:
        """mm/rmap.c __anon_vma_prepare(), at a COW fault in *vma*: reuse
        the anon_vma of an adjacent compatible VMA (find_mergeable_anon_vma():
        same mapping, touching, contiguous pgoff, equal flags), else a new
        one.  The anon_vma is the VMA's, not the mapping's: a piece split off
        before it existed has none (Linux kernel commit 5beb49305251 ("mm:
        change anon_vma linking to fix multi-process server scalability
        issue") (in v2.6.34) made anon_vma_clone() the split's copy)."""
        if vma.anon_vma is not None:
            return
        vmas = self.mm.vmas
        i = vmas.index(vma)
        for near in (vmas[i - 1] if i else None, vmas[i + 1] if i + 1 < len(vmas) else None):
            if (
                near is not None
                and near.anon_vma is not None
                and near.mapping == vma.mapping
                and (near.end == vma.start or vma.end == near.start)
                and near.vm_flags == vma.vm_flags
                and near.pgoff_of(vma.start) == vma.pgoff
            ):
                vma.anon_vma = near.anon_vma
                return
        self._anon_vmas += 1
        vma.anon_vma = self._anon_vmas

    def mmap(self, m: Mapping) -> None:
        if self.mm.overlaps(m.start, m.end):
            # mmap(MAP_FIXED_NOREPLACE) semantics: the model never replaces
            self.mapping_errors[m.id] = "mapping-overlap"
            return
        if self.device.mode == "devdax":
            err = devdax.check_vma(self.device, m.shared, m.start, m.end)
            if err:
                self.mapping_errors[m.id] = err
                return
        self.mapping_errors.pop(m.id, None)
        self.mm.add(Vma(m.start, m.end, m.offset >> PAGE_SHIFT, m.shared, m.sync, m.writable, m.nohugepage, m.id))
        self.mapped.add(m.id)

    def munmap(self, m: Mapping) -> None:
        mm = self.mm
        mm.remove_mapping(m.id)
        # free_pgtables(): a page table goes when no VMA is left in its 2 MiB
        # (tables other mappings of the process use stay)
        for key in mm.pmd_keys(m.start >> 21, (m.end - 1) >> 21):
            if key in self.external_tables or key in self.shared_blocks:
                continue
            if not mm.overlaps(key << 21, (key + 1) << 21):
                del mm.pmds[key]
        self.mapped.discard(m.id)

    def fault(self, vma: Vma, addr: int, write: bool, flags: int, via_gup: bool = False) -> Any:
        return self.fault_handler(self, vma, addr, write, flags, via_gup)


def explain(case: Case, keep_results: bool = True, stream: bool = False, compiled: bool = True) -> "Prediction":
    """Predict what the case's kernel does for every access.  Returns a
    :class:`Prediction`.  With ``keep_results=False`` only the summary is
    kept (memory then grows with the 2 MiB ranges touched, not with the
    number of accesses).  With ``stream=True`` nothing runs yet: the one
    pass of :meth:`Prediction.iter_encoded` runs the accesses as it encodes
    them and keeps no record (``explain --json``); the summary is there
    after that pass.  A streamed case may run in the compiled core
    (:meth:`Prediction.iter_blocks`) unless *compiled* is False or
    PMEMTRACE_PURE_PYTHON=1."""
    profile = select_profile(case.kernel)
    sim = Sim(case, profile)
    for m in case.mappings:
        if m.mapped:
            sim.mmap(m)
    plain = getattr(case.accesses, "plain_reads_writes", False)  # case.ColumnAccesses: no pwrite
    if stream and (plain or not any(a.op == "pwrite" for a in case.accesses)):
        # events show max_pgoff as of the end of the run (ctx, below), and
        # only a pwrite changes it: without one it is known before the run
        return Prediction(
            case,
            profile,
            None,
            sim.counters,
            sim.mapping_errors,
            _ctx(sim),
            stream=_run(case, sim),
            sim=sim if compiled else None,
        )
    # The model allocates many small acyclic objects; the cyclic collector
    # would walk them all again and again (a third of the run time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if keep_results:
            records: Optional[list[Any]] = list(_run(case, sim))
            agg = None
        else:
            records = None
            agg = _Aggregate()
            add = agg.add
            for r in _run(case, sim):
                add(r)
    finally:
        if gc_was_enabled:
            gc.enable()
    summary = agg.result(sim.counters, sim.mapping_errors) if agg is not None else None
    return Prediction(case, profile, records, sim.counters, sim.mapping_errors, _ctx(sim), summary)


def _ctx(sim: Sim) -> tuple[int, int, str, int]:
    """(dev, ino, zero field, max_pgoff): what rendering an event needs."""
    return (sim.dev, sim.file.ino if sim.file is not None else 0, sim.profile.zero_field, sim.max_pgoff)


def _run(case: Case, sim: Sim, start: int = 0) -> Iterator[Any]:
    """The record of each access from *start* on, in order, as it is run
    (one per access: a shared hit object, a Fault, or an AccessResult)."""
    mm = sim.mm
    pmds = mm.pmds
    puds = mm.puds
    find = mm.find
    mapped = sim.mapped
    mapping_errors = sim.mapping_errors
    handle_fault = sim.fault_handler
    maps: dict[Optional[str], Mapping] = {m.id: m for m in case.mappings}
    rflags = USER_FAULT_FLAGS
    if not sim.profile.user_fault_interruptible:
        # before FAULT_FLAG_INTERRUPTIBLE (v5.7): ALLOW_RETRY|KILLABLE|USER
        rflags &= ~FAULT_FLAG["INTERRUPTIBLE"]
    wflags = rflags | FAULT_FLAG["WRITE"]
    for i, a in enumerate(case.accesses[start:] if start else case.accesses, start):
        op = a.op
        if op == "pwrite":
            r = AccessResult(i, op, None, a.offset)
            _pwrite(sim, a, r)
            yield r
            continue
        if op == "fork" or op == "exit":
            r = AccessResult(i, op, None, None)
            if op == "fork":
                forkmod.fork(sim)
            else:
                forkmod.exit_child(sim)
            yield r
            continue
        if a.child:
            flags = wflags if op == "write" else rflags
            yield forkmod.child_access(sim, i, a, maps[a.mapping], flags, _touch_moved)
            continue
        m = maps[a.mapping]
        offset = a.offset
        if sim.geom and m.id in sim.geom:
            # an mremap moved or resized it (pmemtrace.model.remap)
            m = remap.current(sim, m)
            if m.start != maps[a.mapping].start and (op == "read" or op == "write"):
                yield _touch_moved(sim, i, a, m, wflags if op == "write" else rflags)
                continue
        addr = m.start + offset
        if op == "read" or op == "write":
            write = op == "write"
            # fast path: the translation is there with the permission needed
            if m.id in mapped and offset < m.length and (m.writable or not write):
                hit = _hit(pmds, puds, addr, write)
                if hit is not None:
                    yield hit
                    continue
            vma = find(addr)
            if vma is None or offset >= m.length or m.id in mapping_errors or vma.mapping is remap.COVER:
                r = AccessResult(i, op, a.mapping, addr)
                if m.id in mapping_errors:
                    code = mapping_errors[m.id]
                    r.set_error(MMAP_ERRNO.get(code, EINVAL), code)
                else:
                    r.set_error(None, "not-mapped")
                    r.result = SIGSEGV
                yield r
                continue
            if write and not vma.writable:
                r = AccessResult(i, op, a.mapping, addr)
                r.set_error(None, "write-readonly")
                r.result = SIGSEGV
                yield r
                continue
            f = handle_fault(sim, vma, addr & ~(PAGE_SIZE - 1), write, wflags if write else rflags)
            if write and f.outcome == "cow":
                sim.anon_vma_prepare(vma)  # wp_page_copy()/do_cow_fault()
            yield f
            continue
        r = AccessResult(i, op, a.mapping, addr)
        if op == "mmap":
            if mm.vmas:
                remap.drop_covers(sim, m.start, m.end, free=True)  # MAP_FIXED over them
            sim.mmap(m)
            if m.id in mapping_errors:
                code = mapping_errors[m.id]
                r.set_error(MMAP_ERRNO.get(code, EINVAL), code)
        elif op == "munmap" and a.length:
            err = remap.munmap(sim, m, a)
            if err:
                r.set_error(*err)
        elif op == "munmap":
            remap.drop_covers(sim, m.start, m.end)  # munmap(2) of the whole range takes them too
            sim.munmap(m)
            sim.geom.pop(m.id, None)
        elif op == "mremap":
            err = remap.mremap(sim, m, a)
            if err:
                r.set_error(*err)
        elif m.id in mapping_errors:
            code = mapping_errors[m.id]
            r.set_error(MMAP_ERRNO.get(code, EINVAL), code)
        elif op == "madvise" and a.offset >= m.length:
            # madvise(2) over no mapped page: -ENOMEM (mm/madvise.c
            # madvise_walk_vmas(), "unmapped_error"); over covers only, the
            # anonymous VMAs take the advice
            if not remap.only_covers(sim, addr, addr + (a.length or PAGE_SIZE)):
                r.set_error(12, "not-mapped")
        elif op == "madvise":
            if not _madvise(sim, m, a):
                # a device-dax VMA split off its align (dev_dax_may_split())
                r.set_error(22, "devdax-vma-unaligned")
            elif _madvise_gap(sim, addr, m, a):
                # part of the range is unmapped (a partial munmap): -ENOMEM
                # after advising the VMAs there are (madvise_walk_vmas())
                r.set_error(12, "not-mapped")
        elif op == "gup":
            r.length = a.length
            gup.gup(sim, mm.find, lambda v, ad, w, fl: _gup_fault(sim, v, ad, w, fl), a, addr, r)
            if r.outcome != "error":
                r.outcome = "populated" if a.populate else ("pinned" if r.pinned else "none")
                if r.faults:
                    r.result = r.faults[-1][1].result
                    r.reason = next((f.reason for _, f in r.faults if f.reason), None)
        yield r


def _gup_fault(sim: Sim, vma: Vma, addr: int, write: bool, flags: int) -> Any:
    """A fault GUP takes (faultin_page()): a COW gives the VMA its anon_vma,
    as a user write fault does (wp_page_copy()/do_cow_fault())."""
    f = sim.fault(vma, addr, write, flags, via_gup=True)
    if write and f.outcome == "cow" and sim.child is None:
        sim.anon_vma_prepare(vma)
    return f


def _madvise_gap(sim: Sim, addr: int, m: Mapping, a: Access) -> bool:
    """Is part of madvise's range in no VMA?  (the range as given, not
    clipped to the mapping: beyond its end may lie a cover, or nothing)"""
    end = m.end if a.length == 0 else addr + ((a.length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
    return remap.has_gap(sim, addr, end)


def _hit(pmds: dict[int, Any], puds: Any, addr: int, write: bool) -> Optional[_Hit]:
    """The translation of *addr* already there with the permission the
    access needs (no fault), as the level it was found at; None: a fault."""
    slot = pmds.get(addr >> 21)
    if slot is not None:
        if slot.__class__ is HugePmd:
            return HIT_PMD if slot.writable or not write else None
        bit = 1 << ((addr >> 12) & 511)
        return HIT_PTE if slot.present & bit and (not write or slot.writable & bit) else None
    return HIT_PUD if puds and (addr >> 30) in puds else None


def _touch_moved(sim: Sim, i: int, a: Access, m: Mapping, flags: int) -> AccessResult:
    """A read or write of a mapping an mremap moved: the fast path's rules,
    kept as an AccessResult (the compact records take the address from the
    case's mapping start)."""
    write = a.op == "write"
    addr = m.start + a.offset
    r = AccessResult(i, a.op, a.mapping, addr & ~(PAGE_SIZE - 1))
    vma = sim.mm.find(addr)
    if m.id in sim.mapping_errors or vma is None or a.offset >= m.length or vma.mapping is remap.COVER:
        r.set_error(None, "not-mapped")
        r.result = SIGSEGV
        return r
    if write and not vma.writable:
        r.set_error(None, "write-readonly")
        r.result = SIGSEGV
        return r
    if _hit(sim.mm.pmds, sim.mm.puds, addr, write) is not None:
        return r
    f = sim.fault(vma, addr & ~(PAGE_SIZE - 1), write, flags)
    if write and f.outcome == "cow" and sim.child is None:
        sim.anon_vma_prepare(vma)
    r.faults.append((addr & ~(PAGE_SIZE - 1), f))
    r.outcome, r.result = f.outcome, f.result
    r.reason = None if f.outcome in _MAPPED else f.reason
    return r


def _pwrite(sim: Sim, a: Access, r: AccessResult) -> None:
    """write(2) to the DAX file: fs/dax.c dax_iomap_rw() -> dax_iomap_iter()
    (v6.1..7.x).  ->iomap_begin(IOMAP_WRITE) allocates holes and converts
    unwritten blocks in fs-block (4 KiB) units (xfs_direct_write_iomap_begin()
    imap_needs_alloc(): IS_DAX && unwritten; ext4_iomap_alloc()), marking
    the mapping IOMAP_F_NEW; for those ranges dax_iomap_iter() calls
    invalidate_inode_pages2_range() so that "data written by write(2) is
    visible in mmap": clean entries go and unmap_mapping_pages(.., even_cows
    = false) zaps the file's translations there in every mapping -- a huge
    (zero) PMD over the range is zapped whole (zap_pmd_range() ->
    __split_huge_pmd() on a file VMA).  The next access faults again
    (fstests generic/428).  No fs_dax tracepoint fires.  i_size grows to the
    end of the write."""
    fs = sim.file
    assert fs is not None  # parse_case refuses pwrite without a file
    r.length = a.length
    r.outcome = "written"
    pos, end = a.offset, a.offset + a.length
    p = pos & ~(PAGE_SIZE - 1)
    blk_end = (end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    new_ranges = []
    while p < blk_end:
        kind, ln, _ = fs.lookup(p, blk_end - p)
        ln = min(ln, blk_end - p)
        if kind != "mapped" and fs.write_range(p, ln):
            if kind == "unwritten" and fs.fs == "xfs":
                # xfs returns the converted blocks merged with the written
                # ones they now adjoin (xfs_bmapi_write() looks the merged
                # extent up again), and the whole iomap is IOMAP_F_NEW: the
                # invalidation covers written pages in it too (lab, 5.10 xfs:
                # a page written through a mapping, in the middle of an
                # unwritten range write(2) converted, faults again)
                ln = min(fs.lookup(p, blk_end - p)[1], blk_end - p)
            new_ranges.append((p, ln))
        p += ln
    if end > fs.size:
        fs.size = end
        fs.datasync_dirty = True  # i_size is logged (not a timestamp)
        sim.max_pgoff = fs.max_pgoff
    for p, ln in new_ranges:
        first, last = p >> PAGE_SHIFT, (p + ln - 1) >> PAGE_SHIFT
        fs.invalidate(first, last)
        for mm in forkmod.file_mms(sim):  # a forked child's mappings too
            for v in list(mm.vmas):
                npages = (v.end - v.start) >> PAGE_SHIFT
                lo, hi = max(first, v.pgoff), min(last + 1, v.pgoff + npages)
                if lo < hi:
                    mm.zap(
                        v.start + ((lo - v.pgoff) << PAGE_SHIFT),
                        v.start + ((hi - v.pgoff) << PAGE_SHIFT),
                        even_cows=False,
                    )


def _madvise(sim: Sim, m: Mapping, a: Access) -> bool:
    """MADV_DONTNEED / MADV_[NO]HUGEPAGE over the access's range; False when
    the kernel refuses a VMA split (-EINVAL)."""
    start = m.start + a.offset
    end = m.end if a.length == 0 else min(m.end, start + a.length)
    mm = sim.mm
    if a.advice == "dontneed":
        if not sim.profile.dontneed_frees_pte_tables:
            mm.zap(start, end)
            return True
        # madvise_dontneed_single_vma(): one zap per VMA, so only a block
        # inside one VMA's part of the range can lose its table
        for v in list(mm.vmas_in(start, end)):
            mm.zap(max(start, v.start), min(end, v.end), free_empty_tables=True)
        return True
    # MADV_[NO]HUGEPAGE (mm/madvise.c madvise_update_vma()): a VMA whose
    # flags already are what the advice sets is left alone -- "if (new_flags
    # == vma->vm_flags ...) return 0", no split (DAX VMAs start with
    # VM_HUGEPAGE, so MADV_HUGEPAGE on a fresh one changes nothing); the
    # others are split at the range boundaries and changed, and the changed
    # VMA merges back into a neighbour of the same file with contiguous pgoff
    # and now equal flags (vma_modify_flags() -> vma_merge(); DAX VMAs are
    # mergeable since Linux kernel commit e1fb4a086495 ("dax: remove
    # VM_MIXEDMAP for fsdax and device dax") (in v4.15)).
    want = a.advice == "nohugepage"
    changed = []
    ok = True
    for v in mm.vmas_in(start, end):
        # every VMA in the range, the process's covers too: anonymous memory
        # has neither flag until advised (hugepage_madvise()), so it splits
        # (lab, 7.3.4: an mremap over a cover MADV_NOHUGEPAGE had split
        # failed with EFAULT, seed 31 case 767)
        if (v.mapping != m.id and v.mapping != remap.COVER) or v.nohugepage == want:
            continue
        lo, hi = max(start, v.start), min(end, v.end)
        # a device-dax VMA splits only at its align: drivers/dax/device.c
        # dev_dax_may_split() "if (!IS_ALIGNED(addr, dev_dax->align)) return
        # -EINVAL" (mm/vma.c __split_vma() -> vm_ops->may_split); vma_modify()
        # splits the front first, so a front split that worked stays
        align = sim.device.align if sim.device.mode == "devdax" and v.mapping != remap.COVER else PAGE_SIZE
        if v.start < lo and lo % align:
            ok = False
            break
        # __split_vma() -> vma_adjust_trans_huge(): a DAX huge PMD across a
        # split address is cleared (remap.split())
        remap.split(sim, lo)
        if hi < v.end and hi % align:
            ok = False
            break
        remap.split(sim, hi)
        w = mm.find(lo)
        assert w is not None  # just split at lo
        w.nohugepage = want
        w.update_flags()
        changed.append(w)
    for w in changed:
        mm.merge_neighbours(w)
    return ok


__all__ = ["explain", "Prediction", "AccessResult"]
