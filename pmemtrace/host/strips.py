"""Per-chunk verdicts of one file or one process mapping (what
``diagnose FILE`` and ``diagnose --pid`` print and svg.py draws): the model's
prediction for the first touch of every 2 MiB chunk, on a case built from
sysfs and FIEMAP (:mod:`pmemtrace.host.cases`).

A file is modelled chunk by chunk.  A process mapping can be any size (an
smaps range may cover the whole address space), so it is cut where its
prediction can change (its ends, extent and EOF boundaries, devdax ranges)
and each run between cuts is modelled by its first and last chunk: the work
grows with the mappings and their extents, not with the 2 MiB chunks.
"""

import os
import stat as stat_mod
from dataclasses import dataclass, field
from typing import Optional

from ..errors import CaseError, NoDaxMapping, UsageError
from ..model import explain, parse_case
from ..model.build import case_to_json, dax_extents
from ..model.case import File
from ..units import format_size
from . import cases, procmaps
from . import inventory as inv_mod
from . import mounts as mounts_mod
from .codes import Finding, advice_for
from .codes import finding as _f

PAGE = 4096
PMD = 2 << 20


@dataclass
class Chunk:
    index: int  # of the (first) 2 MiB chunk
    offset: int  # file (or mapping) offset of the chunk
    length: int
    outcome: str  # pmd | pud | pte | huge-zero | zero-pte | sigbus | error | none
    reason: Optional[str]
    layout: str  # hole | unwritten | aligned | unaligned | fragmented | partial | n/a
    extents: list[dict] = field(default_factory=list)
    observed: Optional[str] = None  # --observe: what fs_dax tracepoints showed
    observed_events: int = 0
    count: int = 1  # consecutive 2 MiB chunks with this verdict (a run, for mappings)

    def to_json(self):
        d = {
            "index": self.index,
            "offset": self.offset,
            "length": self.length,
            "count": self.count,
            "outcome": self.outcome,
            "reason": self.reason,
            "layout": self.layout,
            "extents": self.extents,
        }
        if self.observed is not None:
            d["observed"] = self.observed
            d["observed_events"] = self.observed_events
        return d


@dataclass
class Strip:
    """Per-chunk verdicts for one file or mapping: what svg.py draws."""

    subject: str
    kind: str  # file | mapping
    chunks: list[Chunk]
    findings: list[Finding] = field(default_factory=list)
    case: Optional[dict] = None
    advice: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def blocks(self):
        """How many 2 MiB chunks the strip covers."""
        return sum(ch.count for ch in self.chunks)

    def counts(self):
        c = {}
        for ch in self.chunks:
            c[ch.outcome] = c.get(ch.outcome, 0) + ch.count
        return c

    def reasons(self):
        c = {}
        for ch in self.chunks:
            if ch.reason:
                c[ch.reason] = c.get(ch.reason, 0) + ch.count
        return c

    def to_json(self):
        return {
            "subject": self.subject,
            "kind": self.kind,
            "counts": self.counts(),
            "reasons": self.reasons(),
            "chunks": [c.to_json() for c in self.chunks],
            "advice": self.advice,
            "findings": [f.to_json() for f in self.findings],
            "case": self.case,
            "details": self.details,
        }


def each_chunk(strip: Strip):
    """(offset, chunk) for every 2 MiB chunk of *strip*, runs expanded: the
    offset (in the file or mapping) where that chunk's first touch goes."""
    start = strip.details.get("start", 0) if strip.kind == "mapping" else 0
    for ch in strip.chunks:
        yield ch.offset, ch
        block = (start + ch.offset) // PMD * PMD
        for j in range(1, ch.count):
            yield block + j * PMD - start, ch


def _fs_of(mount) -> str:
    return "ext4" if mount and mount.fstype.startswith("ext") else "xfs"


def _model(case) -> tuple[Optional[object], Optional[dict], Optional[str]]:
    """(prediction, case JSON, error): the case goes through parse_case, so a
    geometry the model rejects is reported, not modelled."""
    js = case_to_json(case)
    try:
        return explain(parse_case(js)), js, None
    except CaseError as exc:
        return None, js, str(exc)


# ---------------------------------------------------------------------------
# files


def chunk_layout(extents, lo, hi, data_start):
    """How the file's extents cover [lo, hi): hole / unwritten / aligned /
    unaligned / fragmented / partial."""
    inside = [e for e in extents if e["logical"] < hi and e["logical"] + e["length"] > lo]
    if not inside:
        return "hole", []
    covered = sum(min(hi, e["logical"] + e["length"]) - max(lo, e["logical"]) for e in inside)
    desc = [
        {
            "logical": e["logical"],
            "physical": e["physical"],
            "length": e["length"],
            "unwritten": e.get("unwritten", False),
        }
        for e in inside
    ]
    if covered < hi - lo:
        return "partial", desc
    if len(inside) > 1:
        contiguous = all(
            a["physical"] + a["length"] == b["physical"] and a.get("unwritten") == b.get("unwritten")
            for a, b in zip(inside, inside[1:])
        )
        if not contiguous:
            return "fragmented", desc
    e = inside[0]
    phys = data_start + e["physical"] + (lo - e["logical"])
    if phys % PMD:
        return "unaligned", desc
    if all(x.get("unwritten") for x in inside):
        return "unwritten", desc
    return "aligned", desc


def read_extents(path, fiemap=None):
    """FIEMAP extents of *path* as dicts, via the workload engine
    (``pmemtrace.workload.engine.fiemap``) or an injected callable."""
    if fiemap is None:
        try:
            from ..workload.engine import fiemap
        except Exception as exc:
            raise NoDaxMapping(
                f"{path}: cannot read extents: the workload engine is not available ({exc}); "
                f"build it with pip install -e ."
            ) from None
    try:
        exts = fiemap(path)
    except OSError as exc:
        raise NoDaxMapping(f"{path}: FIEMAP failed: {exc.strerror or exc}") from None
    out = []
    for e in exts:
        if isinstance(e, dict):
            out.append(dict(e))
        else:
            out.append(
                {
                    "logical": e.logical,
                    "physical": e.physical,
                    "length": e.length,
                    "unwritten": bool(getattr(e, "unwritten", False)),
                }
            )
    return out


def file_device(state, st):
    """(namespace, partition, disk, data_start) for a file's st_dev."""
    d = inv_mod.disk_of(state.roots, os.major(st.st_dev), os.minor(st.st_dev))
    if d is None:
        return None, None, None, None
    disk, partname = d
    ns = state.inv.namespace_by_block(disk)
    part = state.inv.partition(partname) if partname else None
    if ns is None or ns.data_start is None:
        return ns, part, disk, None
    return ns, part, disk, ns.data_start + (part.start if part else 0)


def diagnose_file(state, path, op="write", fiemap=None, st=None):
    """Per-chunk verdicts for one file.  *fiemap* (path -> extents) and *st*
    (an ``os.stat_result``) may be injected to replay a recorded file on a
    fixture tree; by default both come from the live file."""
    if st is None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file") from None
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
    if not stat_mod.S_ISREG(st.st_mode):
        raise UsageError(
            f"{path}: not a regular file (diagnose FILE takes files on a DAX filesystem; "
            f"for device-dax use `pmemtrace diagnose` or --pid)"
        )
    strip = Strip(path, "file", [])
    mount = mounts_mod.mount_for_dev(state.mounts, os.major(st.st_dev), os.minor(st.st_dev))
    if mount is None and state.roots.live:
        mount = mounts_mod.mount_for_path(state.mounts, os.path.realpath(path))
    if mount is None or mount.dax in (None, "never"):
        fs = f"{mount.fstype} at {mount.mountpoint}" if mount else "an unknown filesystem"
        strip.findings.append(
            _f(
                path,
                "file",
                "no-dax",
                "mount-no-dax",
                f"{path} is on {fs}, not mounted with DAX: no DAX mappings (page cache)",
                "put it on a filesystem mounted -o dax on a pmem device",
            )
        )
        strip.details = {"size": st.st_size, "mount": mount.to_json() if mount else None}
        return strip
    if mount.dax == "inode":
        strip.findings.append(_f(path, "file", "info", "mount-dax-inode"))
    ns, part, disk, data_start = file_device(state, st)
    if data_start is None:
        strip.findings.append(_f(path, "file", "warn", "device-unknown", disk=disk))
        data_start = 0
    elif data_start % PMD:
        why = (
            f"partition {part.name} starts at sector {part.start // 512}"
            if part and part.start % PMD
            else f"namespace {ns.name} data starts at {ns.data_start:#x}"
        )
        strip.findings.append(
            _f(
                path,
                "file",
                "pte",
                "pfn-unaligned",
                f"the device's byte 0 is {format_size(data_start % PMD)} past a 2 MiB boundary "
                f"({why}): no chunk can be PMD-mapped",
                reason="pfn-unaligned",
            )
        )
    extents = read_extents(path, fiemap)
    device = cases.inventory_fsdax_device(ns, part, data_start, os.major(st.st_dev), os.minor(st.st_dev))
    pred, strip.case, err = _model(cases.file_case(state.release, path, st, _fs_of(mount), extents, device, op))
    if err is not None:
        strip.findings.append(Finding(path, "file", "error", "case-error", f"cannot model this file: {err}", ""))
        return strip
    size = st.st_size
    for i, r in enumerate(pred.results):
        off = i * PMD
        ln = min(PMD, size - off) if size > off else PMD
        layout, desc = chunk_layout(extents, off, off + ln, data_start)
        strip.chunks.append(Chunk(i, off, ln, r.outcome, r.reason, layout, desc))
    strip.advice = advice_for(strip.reasons())
    strip.details = {
        "size": st.st_size,
        "ino": st.st_ino,
        "mount": mount.to_json(),
        "namespace": ns.name if ns else None,
        "partition": part.name if part else None,
        "data_start": data_start,
        "extents": len(extents),
        "profile": pred.profile.name,
        "op": op,
    }
    return strip


# ---------------------------------------------------------------------------
# process mappings


def _dax_device_for_path(state, path):
    name = os.path.basename(path)
    for d in state.inv.dax_devices:
        if d.name == name:
            return d
    return None


class _Chunking:
    """The 2 MiB virtual chunks [start, end) overlaps: chunk k is
    [max(start, base + k*2M), min(end, base + (k+1)*2M))."""

    def __init__(self, start, end):
        self.start, self.end = start, end
        self.base = start & ~(PMD - 1)
        self.n = (end - self.base + PMD - 1) // PMD

    def lo(self, k):
        return max(self.start, self.base + k * PMD)

    def hi(self, k):
        return min(self.end, self.base + (k + 1) * PMD)


def mapping_runs(pm, device, file: Optional[File]) -> list[tuple[int, int]]:
    """Runs of chunks (first, last index) of *pm* whose first touch the
    kernel decides alike: every chunk of a run maps a file (or device) range
    that lies in one extent (or hole, or devdax range) at one physical
    colour, below or above EOF, and is neither end of the mapping.  The cuts
    are the mapping's ends and each boundary that falls inside it."""
    ch = _Chunking(pm.start, pm.end)
    bounds = []  # file (or device) offsets where what backs the mapping changes
    if file is not None:
        bounds.append(file.size)
        for e in file.extents:
            bounds += (e.logical, e.logical + e.length)
    else:
        for r in device.ranges:
            bounds += (r.pgoff * PAGE, r.pgoff * PAGE + r.length)
    starts = {0, 1, ch.n - 1, ch.n}  # the first and last chunk stand alone (vma-start, vma-end)
    for b in bounds:
        v = pm.start + (b - pm.offset)
        if not pm.start < v < pm.end:
            continue
        k, inside = divmod(v - ch.base, PMD)
        starts.update((k, k + 1) if inside else (k,))  # a chunk a boundary cuts stands alone
    cuts = sorted(s for s in starts if 0 <= s <= ch.n)
    return [(a, b - 1) for a, b in zip(cuts, cuts[1:])]


def _verdicts(release, pm, device, file, thp_disable):
    """(outcome, reason) per run of :func:`mapping_runs`, and the case JSON
    of the chunks modelled (or an error string).  A run whose first and last
    chunk disagree (the cut rules missed something) is halved until every
    run's ends agree, so a miss costs work, never a wrong verdict for its ends."""
    ch = _Chunking(pm.start, pm.end)
    known: dict[int, tuple[str, Optional[str]]] = {}
    pending = mapping_runs(pm, device, file)
    done = []
    js = None
    passes = 0
    while pending:
        passes += 1
        need = sorted({k for a, b in pending for k in (a, b)} - known.keys())
        if need:
            case = cases.mapping_case(release, pm, device, file, thp_disable, [ch.lo(k) - pm.start for k in need])
            pred, js, err = _model(case)
            if err is not None:
                return None, js, err
            merr = pred.mapping_errors.get("m0")
            for k, r in zip(need, pred.results):
                known[k] = ("error", merr) if merr else (r.outcome, r.reason)
        nxt = []
        for a, b in pending:
            if known[a] == known[b]:
                done.append((a, b))
            elif b - a <= 1:
                done += [(a, a), (b, b)]
            else:
                mid = (a + b) // 2
                nxt += [(a, mid), (mid + 1, b)]
        pending = nxt
    done.sort()
    if passes > 1:  # runs were halved: show every chunk modelled in one case
        js = case_to_json(
            cases.mapping_case(release, pm, device, file, thp_disable, [ch.lo(k) - pm.start for k in sorted(known)])
        )
    chunks: list[Chunk] = []
    for a, b in done:
        outcome, reason = known[a]
        last = chunks[-1] if chunks else None
        if last is not None and (last.outcome, last.reason) == (outcome, reason):
            last.count += b - a + 1
            last.length = ch.hi(b) - ch.lo(last.index)
            continue
        chunks.append(Chunk(a, ch.lo(a) - pm.start, ch.hi(b) - ch.lo(a), outcome, reason, "n/a", count=b - a + 1))
    return chunks, js, None


def diagnose_pid(state, pid, fiemap=None):
    """Strips for every DAX mapping of process *pid*, one run of like chunks
    per :class:`Chunk` (smaps is read line by line)."""
    maps, source = procmaps.iter_process_maps(state.roots, pid)
    if maps is None:
        if not state.roots.exists(state.roots.proc(str(pid))):
            raise UsageError(f"no process {pid}")
        raise UsageError(
            f"cannot read /proc/{pid}/smaps or maps (permission denied: run as the process's owner or root)"
        )
    status = procmaps.read_status(state.roots, pid)
    thp_dis = procmaps.thp_disabled(status) or False
    pmounts = mounts_mod.read_mounts(state.roots, pid) or state.mounts
    strips = []
    for pm in maps:
        strip = _mapping_strip(state, pm, pid, source, pmounts, thp_dis, fiemap)
        if strip is not None:
            strips.append(strip)
    return strips


def _mapping_strip(state, pm, pid, source, pmounts, thp_dis, fiemap) -> Optional[Strip]:
    if not pm.path.startswith("/"):
        return None
    dev = _dax_device_for_path(state, pm.path) if pm.path.startswith("/dev/dax") else None
    mount = None
    if dev is None:
        mount = mounts_mod.mount_for_dev(pmounts, pm.major, pm.minor)
        if mount is None or mount.dax in (None, "never"):
            return None
    subject = f"{pm.start:#x}-{pm.end:#x} {pm.path}"
    strip = Strip(subject, "mapping", [])
    strip.details = {
        "pid": pid,
        "start": pm.start,
        "end": pm.end,
        "offset": pm.offset,
        "perms": pm.perms,
        "vmflags": pm.vmflags,
        "path": pm.path,
        "source": source,
        "thp_disable": thp_dis,
    }
    file = None
    if dev is not None:
        device = cases.inventory_dax_device(dev)
    else:
        assert mount is not None  # no dax device: the mount was found above
        strip.details["mount"] = mount.mountpoint
        extents, size, ns, data_start = None, None, None, 0
        path = pm.path[: -len(" (deleted)")] if pm.path.endswith(" (deleted)") else pm.path
        if state.roots.live:
            try:
                st = os.stat(path)
                size = st.st_size
                ns, _part, _disk, data_start = file_device(state, st)
                extents = read_extents(path, fiemap)
            except (OSError, NoDaxMapping) as exc:
                strip.findings.append(
                    _f(
                        subject,
                        "mapping",
                        "warn",
                        "extents-unknown",
                        f"file extents not read ({exc}): predicted as one aligned extent",
                    )
                )
        else:
            strip.findings.append(_f(subject, "mapping", "info", "extents-unknown"))
        if extents is None:
            size = size if size is not None else pm.offset + pm.length
            extents = [{"logical": 0, "physical": 0, "length": (size + PAGE - 1) // PAGE * PAGE}]
        device = cases.mapped_file_device(ns, data_start, pm.major, pm.minor)
        file = File(
            size=size if size is not None else pm.offset + pm.length,
            extents=dax_extents(extents),
            ino=pm.inode,
            fs=_fs_of(mount),
        )
    chunks, strip.case, err = _verdicts(state.release, pm, device, file, thp_dis)
    if err is not None:
        strip.findings.append(Finding(subject, "mapping", "error", "case-error", f"cannot model: {err}", ""))
        return strip
    strip.chunks = chunks
    strip.advice = advice_for(strip.reasons())
    return strip
