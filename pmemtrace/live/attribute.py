"""Reason attribution: why did this PMD fault fall back?

For every observed ``dax_pmd_fault_done`` with ``FALLBACK`` we build a model
case (:mod:`pmemtrace.model.case`, format v1) from what was *observed*:

* the tracepoint fields: vm_start, vm_end, vm_flags, address, pgoff,
  max_pgoff, fault flags (write or read);
* the file's extents (FIEMAP) when the caller could read them (live, with
  the file still there), else one optimistic extent covering the file;
* the device geometry (sysfs) when known, else an optimistic 2 MiB-aligned
  device with struct pages;
* the entry state seen so far: earlier faults on the same file (their pgoffs),
  replayed as earlier accesses of the same mapping.

and run :func:`pmemtrace.model.explain` on it.  If the model falls back too,
its reason is the attribution.  If the model predicts a PMD, the row says
``unexplained`` and keeps the evidence, including which inputs were assumed
rather than observed: we never guess.
"""

from ..events import FAULT_FLAG, VM_FAULT
from ..model.build import CaseBuilder, case_to_json, dev_t, extent, fsdax_device
from ..model.case import File
from ..units import parse_int

PAGE = 4096
PMD = 2 << 20
VM_SHARED = 0x8
_WRITE = FAULT_FLAG["WRITE"]
_FAULT_DONE = frozenset(("dax_pmd_fault_done", "dax_pte_fault_done"))
VM_NOHUGEPAGE = 0x40000000
UNEXPLAINED = "unexplained"
ALIAS_BASE = 0x100000000000  # where the PTE-entry alias mapping goes in built cases


class FileInfo:
    """What is known about one (dev, ino): extents, size, fs, device geometry."""

    def __init__(self, extents=None, size=None, fs=None, device=None):
        self.extents = extents  # list of dicts in case format, or None (unknown)
        self.size = size
        self.fs = fs
        # a model Device (pmemtrace.host.cases gives one), a dict in case
        # format, or None (unknown)
        self.device = device

    def typed_device(self):
        """A fresh copy of :attr:`device` as a model Device."""
        import copy

        from ..model.case import Device

        if isinstance(self.device, Device):
            return copy.deepcopy(self.device)
        return device_from_json(self.device)


def device_from_json(obj):
    """A case-format device object (as watch's sysfs reader gives it) as a
    model Device, validated by the model's own parser."""
    from ..model import parse_case

    probe = {"version": 1, "device": dict(obj), "mappings": [{"id": "m", "start": 0, "length": PAGE}]}
    if probe["device"].get("mode") == "fsdax":
        probe["file"] = {"size": 0}
    return parse_case(probe).device


class Attributor:
    """Attributes reasons to observed fallbacks by running the model.

    *release* selects the model profile (the traced kernel's release);
    *file_info* is a callable ``(dev, ino) -> FileInfo or None``.
    """

    def __init__(self, release=None, file_info=None, history=64):
        self.release = release
        self.file_info_given = file_info is not None  # without: no file's layout is known (reuse keys hold for all)
        self.file_info = file_info or (lambda dev, ino: None)
        self.history = history
        self._seen = {}  # (dev, ino) -> list of (pgoff, write, kind)
        self.errors = 0

    def observe(self, ev):
        """Feed every fault-done event (in order) so the entry state is known."""
        name = ev.name
        if name not in _FAULT_DONE:
            return
        f = ev.fields
        key = (f.get("dev", 0), f.get("ino", 0))
        lst = self._seen.get(key)
        if lst is None:
            lst = self._seen[key] = []
        lst.append((f.get("pgoff", 0), bool(f.get("flags", 0) & _WRITE), name, f.get("result", 0)))
        if len(lst) > 4096:
            del lst[:2048]

    def observe_entries(self, key, entries):
        """:meth:`observe` of many fault-done events of one file at once:
        *key* ``(dev, ino)``, *entries* its ``(pgoff, write, name, result)``
        in order (the compiled replay path keeps the last ones per file).
        Only the last ``history + 1`` entries of a file are ever read."""
        lst = self._seen.get(key)
        if lst is None:
            lst = self._seen[key] = []
        lst.extend(entries)
        while len(lst) > 4096:
            del lst[:2048]

    def prior_faults(self, dev, ino, pgoff):
        """The earlier fault-done events on (dev, ino) a fallback's case
        replays: the last :attr:`history` of them, without the fallback at
        *pgoff* itself when it was observed first (sliced from the end: the
        list holds up to 4096)."""
        prior = self._seen.get((dev, ino), ())
        h = self.history
        if prior and prior[-1][0] == pgoff and prior[-1][2] == "dax_pmd_fault_done":
            return prior[-h - 1 : -1] if h > 0 else prior[:-1]
        return prior[-h:]

    def build_case(self, ev):
        """The model case (a :class:`~pmemtrace.model.case.Case`) for the
        fallback *ev*, and the list of assumed inputs."""
        f = ev.fields
        dev, ino = f.get("dev", 0), f.get("ino", 0)
        vm_start, vm_end = f["vm_start"], f["vm_end"]
        address = f["address"]
        pgoff = f["pgoff"]
        vm_pgoff = pgoff - ((address - vm_start) >> 12)
        assumed = []
        info = self.file_info(dev, ino) or FileInfo()
        max_pgoff = f.get("max_pgoff", 0)
        size = info.size if info.size is not None else max_pgoff * PAGE
        if info.size is None:
            assumed.append("file size = max_pgoff pages")
        if info.extents is not None:
            extents = [
                extent(
                    parse_int(e["logical"]), parse_int(e["physical"]), parse_int(e["length"]), bool(e.get("unwritten"))
                )
                for e in info.extents
            ]
        else:
            # Optimistic: one written extent, physically PMD-aligned, same colour
            # as the file offsets.  Anything the model then blames on extents
            # cannot come from this, so extent reasons are never invented.
            extents = [extent(0, PMD, max(size, PAGE) + PMD)]
            assumed.append("extents (no FIEMAP): one aligned written extent")
        if info.device is not None:
            device = info.typed_device()
        else:
            device = fsdax_device(data_start=0x100000000, size=max(1 << 30, 2 * (size + 2 * PMD)), map="mem", align=PMD)
            assumed.append("device geometry (no sysfs): 2 MiB-aligned pmem with struct pages")
        device.dev = dev_t(dev >> 20, dev & 0xFFFFF)
        if vm_pgoff < 0:
            vm_pgoff = 0
        b = CaseBuilder(device, kernel=self.release)
        b.file = File(size=size, extents=extents, ino=ino, fs=info.fs or "xfs")
        shared = bool(f.get("vm_flags", 0) & VM_SHARED)
        nohugepage = bool(f.get("vm_flags", 0) & VM_NOHUGEPAGE)
        b.mapping("m", vm_start, vm_end - vm_start, offset=vm_pgoff * PAGE, shared=shared, nohugepage=nohugepage)
        # entry state: earlier faults on this file whose pgoff lies in the
        # mapping.  PMD-level ones replay through the same mapping; PTE-level
        # ones through a NOHUGEPAGE alias of the same file range, which leaves
        # exactly what the kernel's PTE fault left: 4 KiB entries in the file's
        # mapping (not page tables in this VMA).
        npages = (vm_end - vm_start) >> 12
        used = 0
        alias = False
        for p, w, name, res in self.prior_faults(dev, ino, pgoff):
            if not (vm_pgoff <= p < vm_pgoff + npages) or res & (VM_FAULT["SIGBUS"] | VM_FAULT["FALLBACK"]):
                continue
            if (p - vm_pgoff) >> 9 != (address - vm_start) >> 21:
                continue  # only this 2 MiB virtual range's entry state can decide its PMD fault
            used += 1
            if name == "dax_pte_fault_done":
                if not alias:
                    at = ALIAS_BASE if not (vm_start <= ALIAS_BASE < vm_end + npages * PAGE) else ALIAS_BASE * 2
                    b.mapping("pte", at, vm_end - vm_start, offset=vm_pgoff * PAGE, shared=shared, nohugepage=True)
                    alias = True
                b.touch("pte", (p - vm_pgoff) * PAGE, w)
            else:
                b.touch("m", (p - vm_pgoff) * PAGE, w)
        if used:
            assumed.append(f"entry state from {used} earlier traced faults on this file")
        b.touch("m", address - vm_start, bool(f.get("flags", 0) & FAULT_FLAG["WRITE"]))
        return b.build(), assumed

    def attribute(self, ev):
        """``(reason_code_or_'unexplained', evidence dict)`` for a FALLBACK event."""
        from ..errors import PmemtraceError
        from ..model import explain, parse_case

        f = ev.fields
        evidence = {
            k: f.get(k) for k in ("address", "vm_start", "vm_end", "vm_flags", "pgoff", "max_pgoff", "flags", "result")
        }
        if "vm_start" not in f or "vm_end" not in f:
            return UNEXPLAINED, dict(evidence, why="event has no VMA bounds")
        try:
            case, assumed = self.build_case(ev)
            pred = explain(parse_case(case_to_json(case)))  # validated: sysfs and FIEMAP may say anything
            res = pred.results[-1]  # the fallback itself (no JSON of the whole case)
        except (PmemtraceError, ValueError, KeyError, TypeError) as e:  # FileInfo from FIEMAP/sysfs may be malformed
            self.errors += 1
            return UNEXPLAINED, dict(evidence, why=f"model could not run: {e}")
        evidence["assumed"] = assumed
        evidence["model_outcome"] = res.outcome
        if res.outcome == "pmd" or not res.reason:
            return UNEXPLAINED, dict(evidence, why="the model predicts a PMD mapping here")
        return res.reason, evidence
