"""Reuse of fallback attributions for identical situations (replay).

Attributing a fallback runs the model on a case built from the event
(:mod:`pmemtrace.live.attribute`): about 80 µs.  A trace of a workload
falls back in the same situation again and again (every 2 MiB range of a
misaligned mapping, every range of a file with the same layout), so
:class:`CachedAttributor` keys each fallback by what the built case
depends on, relative to the 2 MiB block the fault is in:

* where the block lies against the VMA (inside at both ends or not),
* the VMA's pgoff colour (virtual vs file offset, modulo 2 MiB),
* how far the end of the file (``max_pgoff``) is from the block,
* write or read, shared or private, ``VM_NOHUGEPAGE``,
* the entry state the attributor would replay (earlier faults on the file
  in this block, relative to the block),

and reuses the reason (and the model's evidence) for the next fallback with
the same key; the event's own fields always come from the event.  Only
cases built without observed file layout are reused (text traces): with
FIEMAP extents or device geometry, where the block sits in the file
matters, and every fallback runs the model.

That the model gives the same answer for the same key is a claim about the
model, so ``verify=True`` (``pmemtrace replay --verify-reuse``) runs the
model for every fallback anyway and counts the reuses that would have
differed (:attr:`mismatches`; the first is kept in :attr:`first_mismatch`).
"""

import logging
from typing import Any, Optional

from ..events import FAULT_FLAG, VM_FAULT

log = logging.getLogger(__name__)

PAGE_SHIFT = 12
PMD = 2 << 20
VM_SHARED = 0x8
VM_NOHUGEPAGE = 0x40000000
#: the evidence keys copied from the event (never reused)
EVENT_KEYS = ("address", "vm_start", "vm_end", "vm_flags", "pgoff", "max_pgoff", "flags", "result")
_NOT_USED = VM_FAULT["SIGBUS"] | VM_FAULT["FALLBACK"]


class CachedAttributor:
    """Wraps an :class:`~pmemtrace.live.attribute.Attributor` (same
    ``observe``/``attribute`` interface) and reuses its answers."""

    def __init__(self, inner: Any, verify: bool = False) -> None:
        self.inner = inner
        self.verify = verify
        self.cache: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
        self.hits = 0
        self.misses = 0
        self.uncached = 0
        self.verified = 0
        self.mismatches = 0
        self.first_mismatch: Optional[dict[str, Any]] = None
        # every fault-done event passes here: no wrapper call in between
        self.observe = inner.observe  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Any:  # errors, release, file_info, history...
        return getattr(self.inner, name)

    def observe(self, ev: Any) -> None:
        self.inner.observe(ev)

    def situation(self, ev: Any) -> Optional[tuple[Any, ...]]:
        """The reuse key of a fallback event, or None (do not reuse)."""
        f = ev.fields
        inner = self.inner
        try:
            vm_start, vm_end, address, pgoff = f["vm_start"], f["vm_end"], f["address"], f["pgoff"]
        except KeyError:
            return None
        dev, ino = f.get("dev", 0), f.get("ino", 0)
        if inner.file_info(dev, ino) is not None:
            return None
        vm_pgoff = pgoff - ((address - vm_start) >> PAGE_SHIFT)
        if vm_pgoff < 0 or address < vm_start or address >= vm_end:
            return None
        block = address & ~(PMD - 1)
        block_pgoff = vm_pgoff + ((block - vm_start) >> PAGE_SHIFT)
        max_pgoff = f.get("max_pgoff", 0)
        vm_flags = f.get("vm_flags", 0)
        # the entry state build_case() replays: earlier fault-done events on
        # the file in this 2 MiB virtual range (same selection as there)
        npages = (vm_end - vm_start) >> PAGE_SHIFT
        # in the mapping and in this 2 MiB virtual range ((p - vm_pgoff) >> 9
        # == (address - vm_start) >> 21, address >= vm_start): one interval
        lo = vm_pgoff + (((address - vm_start) >> 21) << 9)
        hi = min(vm_pgoff + npages, lo + 512)
        # a list comprehension, not a generator into tuple(): this runs over
        # up to `history` entries for every fallback, and on Python 3.11 the
        # generator's frame switches cost about twice the filtering itself
        entries = tuple(
            [
                (p - block_pgoff, w, name)
                for (p, w, name, res) in inner.prior_faults(dev, ino, pgoff)
                if lo <= p < hi and not res & _NOT_USED
            ]
        )
        return (
            inner.release,
            block >= vm_start,
            block + PMD <= vm_end,
            ((vm_start >> PAGE_SHIFT) - vm_pgoff) & 511,
            (address - block) >> PAGE_SHIFT,
            min(max(max_pgoff - block_pgoff, -1), 1025),
            bool(f.get("flags", 0) & FAULT_FLAG["WRITE"]),
            bool(vm_flags & VM_SHARED),
            bool(vm_flags & VM_NOHUGEPAGE),
            ((vm_start - block) >> 21, (vm_end - block) >> 21) if vm_end - vm_start < 4 * PMD else None,
            entries,
        )

    def attribute(self, ev: Any) -> tuple[str, dict[str, Any]]:
        key = self.situation(ev)
        if key is None:
            self.uncached += 1
            return self.inner.attribute(ev)
        hit = self.cache.get(key)
        if hit is not None and not self.verify:
            self.hits += 1
            code, reused = hit
            f = ev.fields
            evidence = {k: f.get(k) for k in EVENT_KEYS}
            evidence.update(reused)
            return code, evidence
        errors = self.inner.errors
        code, evidence = self.inner.attribute(ev)
        if self.inner.errors != errors:
            return code, evidence  # the model could not run: nothing to reuse
        mine = (code, {k: v for k, v in evidence.items() if k not in EVENT_KEYS})
        if hit is None:
            self.misses += 1
            self.cache[key] = mine
        else:
            self.verified += 1
            if mine != hit:
                self.mismatches += 1
                if self.first_mismatch is None:
                    self.first_mismatch = {"event": dict(ev.fields), "model": mine[0], "reused": hit[0]}
                log.warning(
                    "attribution reuse would differ: model %s, reused %s (event %s)", mine[0], hit[0], ev.fields
                )
        return code, evidence

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"reused": self.hits, "computed": self.misses, "not_reusable": self.uncached}
        if self.verify:
            d.update(verified=self.verified, mismatches=self.mismatches)
            if self.first_mismatch:
                d["first_mismatch"] = self.first_mismatch
        return d
