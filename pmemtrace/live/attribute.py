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

PAGE = 4096
PMD = 2 << 20
VM_SHARED = 0x8
VM_NOHUGEPAGE = 0x40000000
UNEXPLAINED = "unexplained"
ALIAS_BASE = 0x100000000000  # where the PTE-entry alias mapping goes in built cases


class FileInfo:
    """What is known about one (dev, ino): extents, size, fs, device geometry."""

    def __init__(self, extents=None, size=None, fs=None, device=None):
        self.extents = extents  # list of dicts in case format, or None (unknown)
        self.size = size
        self.fs = fs
        self.device = device  # dict in case format, or None (unknown)


class Attributor:
    """Attributes reasons to observed fallbacks by running the model.

    *release* selects the model profile (the traced kernel's release);
    *file_info* is a callable ``(dev, ino) -> FileInfo or None``.
    """

    def __init__(self, release=None, file_info=None, history=64):
        self.release = release
        self.file_info = file_info or (lambda dev, ino: None)
        self.history = history
        self._seen = {}  # (dev, ino) -> list of (pgoff, write, kind)
        self.errors = 0

    def observe(self, ev):
        """Feed every fault-done event (in order) so the entry state is known."""
        f = ev.fields
        if ev.name not in ("dax_pmd_fault_done", "dax_pte_fault_done"):
            return
        key = (f.get("dev", 0), f.get("ino", 0))
        lst = self._seen.setdefault(key, [])
        lst.append((f.get("pgoff", 0), bool(f.get("flags", 0) & FAULT_FLAG["WRITE"]), ev.name,
                    f.get("result", 0)))
        if len(lst) > 4096:
            del lst[:2048]

    def build_case(self, ev):
        """The model case for the fallback *ev*, and the list of assumed inputs."""
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
            extents = info.extents
        else:
            # Optimistic: one written extent, physically PMD-aligned, same colour
            # as the file offsets.  Anything the model then blames on extents
            # cannot come from this, so extent reasons are never invented.
            extents = [{"logical": 0, "physical": "0x200000", "length": max(size, PAGE) + PMD,
                        "unwritten": False}]
            assumed.append("extents (no FIEMAP): one aligned written extent")
        if info.device is not None:
            device = dict(info.device)
        else:
            device = {"mode": "fsdax", "map": "mem", "align": "2M",
                      "size": max(1 << 30, 2 * (size + 2 * PMD)), "data_start": "0x100000000"}
            assumed.append("device geometry (no sysfs): 2 MiB-aligned pmem with struct pages")
        device["dev"] = f"{dev >> 20}:{dev & 0xFFFFF}"
        if vm_pgoff < 0:
            vm_pgoff = 0
        mapping = {"id": "m", "start": vm_start, "length": vm_end - vm_start,
                   "offset": vm_pgoff * PAGE, "shared": bool(f.get("vm_flags", 0) & VM_SHARED),
                   "nohugepage": bool(f.get("vm_flags", 0) & VM_NOHUGEPAGE)}
        accesses = []
        mappings = [mapping]
        # entry state: earlier faults on this file whose pgoff lies in the
        # mapping.  PMD-level ones replay through the same mapping; PTE-level
        # ones through a NOHUGEPAGE alias of the same file range, which leaves
        # exactly what the kernel's PTE fault left: 4 KiB entries in the file's
        # mapping (not page tables in this VMA).
        npages = (vm_end - vm_start) >> 12
        prior = self._seen.get((dev, ino), [])
        if prior and prior[-1][0] == pgoff and prior[-1][2] == "dax_pmd_fault_done":
            prior = prior[:-1]  # the event itself, when observed first
        used = 0
        for (p, w, name, res) in prior[-self.history:]:
            if not (vm_pgoff <= p < vm_pgoff + npages) or res & (VM_FAULT["SIGBUS"] | VM_FAULT["FALLBACK"]):
                continue
            if (p - vm_pgoff) >> 9 != (address - vm_start) >> 21:
                continue  # only this 2 MiB virtual range's entry state can decide its PMD fault
            used += 1
            if name == "dax_pte_fault_done":
                if len(mappings) == 1:
                    alias = ALIAS_BASE if not (vm_start <= ALIAS_BASE < vm_end + npages * PAGE) else ALIAS_BASE * 2
                    mappings.append(dict(mapping, id="pte", start=alias, nohugepage=True))
                accesses.append({"mapping": "pte", "offset": (p - vm_pgoff) * PAGE,
                                 "op": "write" if w else "read"})
            else:
                accesses.append({"mapping": "m", "offset": (p - vm_pgoff) * PAGE,
                                 "op": "write" if w else "read"})
        if used:
            assumed.append(f"entry state from {used} earlier traced faults on this file")
        write = bool(f.get("flags", 0) & FAULT_FLAG["WRITE"])
        accesses.append({"mapping": "m", "offset": address - vm_start, "op": "write" if write else "read"})
        case = {"version": 1, "device": device,
                "file": {"size": size, "ino": ino, "extents": extents},
                "mappings": mappings, "accesses": accesses}
        if info.fs:
            case["file"]["fs"] = info.fs
        if self.release:
            case["kernel"] = self.release
        return case, assumed

    def attribute(self, ev):
        """``(reason_code_or_'unexplained', evidence dict)`` for a FALLBACK event."""
        from ..errors import PmemtraceError
        from ..model import explain, parse_case

        f = ev.fields
        evidence = {k: f.get(k) for k in ("address", "vm_start", "vm_end", "vm_flags", "pgoff",
                                          "max_pgoff", "flags", "result")}
        if "vm_start" not in f or "vm_end" not in f:
            return UNEXPLAINED, dict(evidence, why="event has no VMA bounds")
        try:
            case, assumed = self.build_case(ev)
            pred = explain(parse_case(case))
            res = pred.results[-1]  # the fallback itself (no JSON of the whole case)
        except PmemtraceError as e:
            self.errors += 1
            return UNEXPLAINED, dict(evidence, why=f"model could not run: {e}")
        evidence["assumed"] = assumed
        evidence["model_outcome"] = res.outcome
        if res.outcome == "pmd" or not res.reason:
            return UNEXPLAINED, dict(evidence, why="the model predicts a PMD mapping here")
        return res.reason, evidence
