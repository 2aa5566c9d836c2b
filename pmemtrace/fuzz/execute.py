"""Carry a case out on real DAX and record what the kernel did, per access.

The supervisor (this process) lays the file out as the case's extents say
(ftruncate, fallocate the unwritten and written pieces, pwrite the written
ones, the rest stays a hole), reads the extents the filesystem really gave
(FIEMAP), and forks one child per case that makes the mappings and does the
accesses through the cffi engine (:mod:`pmemtrace.workload.engine`).  The
child writes a marker into the trace before each access, so the fs_dax
events (and, for device-dax, kprobe hits on ``dev_dax_huge_fault``, which
has no tracepoint) are split per access; it reports the address of every
mapping and the errno of every refused call on a pipe.  A SIGBUS kills only
the child: the access it was in is recorded as ``sigbus`` and the later
accesses as not run.

A ``gup`` access is carried out as the generator means it
(:mod:`pmemtrace.fuzz.generate`): ``longterm``, an io_uring buffer
registration (FOLL_WRITE | FOLL_LONGTERM); ``fast``, an O_DIRECT read into
the mapping (``write``) or write out of it, against a partner file on a
non-DAX filesystem (``partner``: its directory; a case run without one
has its O_DIRECT GUPs taken out first, :func:`without_odirect`); otherwise
process_vm_writev/readv on the process itself (remote GUP: the slow path
only).  A GUP is at most :data:`GUP_MAX` long (the partner file and the
process_vm buffer are that size): :func:`execute` refuses a longer one.

The case the model is asked about is then rebuilt with the real extents,
addresses and device geometry (:func:`real_case`).
"""

import json
import mmap
import os
import re
import signal
from dataclasses import dataclass, field
from typing import Any, Optional

import msgspec

from ..errors import UsageError
from ..host import procmaps
from ..host.fsread import Roots
from ..live.tracefs import Instance, _append, remove_orphans_and_report, tracefs_root
from ..model.build import CaseBuilder, allocated_extents, case_to_json, dax_extents
from ..model.case import Case, File
from ..workload import engine as E
from ..workload.worker import edge_page_tables, own_maps
from .generate import GUP_MAX  # the longest GUP: the partner file and the process_vm buffer

PAGE = 4096
PROT_NONE = 0
PMD = 2 << 20
PUD = 1 << 30
MARK = "pmemtrace-fuzz "
# dev_dax_huge_fault(vmf, order) since Linux kernel commit 1d024e7a8dab
# ("mm: remove enum page_entry_size") (in v6.6); before: (vmf, pe_size) with
# PE_SIZE_PTE=0, PE_SIZE_PMD=1, PE_SIZE_PUD=2.  The values do not overlap.
_SIZE_NAME = {0: "pte", 1: "pmd", 2: "pud", 9: "pmd", 18: "pud"}
NOPAGE, FALLBACK, SIGBUS = 0x100, 0x800, 0x2


def _kprobe_defs(pid: int) -> dict[str, str]:
    """device-dax faults: dev_dax_fault() (the 4 KiB .fault handler) calls
    dev_dax_huge_fault(vmf, 0); both are probed in case it was inlined.
    Named pmemtrace_<pid>_* so that a killed run's probes are orphans
    :func:`remove_orphans_and_report` removes."""
    return {
        f"pmemtrace_{pid}_ddhf": "p dev_dax_huge_fault size=%si:u32",
        f"pmemtrace_{pid}_ddhf_ret": "r dev_dax_huge_fault ret=$retval:x32",
        f"pmemtrace_{pid}_ddf": "p dev_dax_fault",
        f"pmemtrace_{pid}_ddf_ret": "r dev_dax_fault ret=$retval:x32",
    }


class KernelTrace:
    """One private tracefs instance for a whole run (many cases): fs_dax
    events and, for device-dax, our kprobes, of this process and its
    children; cleared before each case."""

    def __init__(self, kprobes: bool = False):
        remove_orphans_and_report()
        self.root = tracefs_root()
        self.inst = Instance("fuzz", self.root, what="pmemtrace fuzz")
        self.kprobes: list[str] = []
        self.reason: Optional[str] = None
        self.inst.create()
        try:
            self.inst.set_buffer_kb(8192)
            self.inst.follow_pid(os.getpid())
            if os.path.isdir(os.path.join(self.inst.path, "events", "fs_dax")):
                self.inst.enable("fs_dax")
            else:
                self.reason = "this kernel has no fs_dax tracepoints"
            if kprobes:
                self._add_kprobes()
            self.inst.write("tracing_on", "1")
        except BaseException:
            self.close()
            raise

    def _add_kprobes(self) -> None:
        assert self.root is not None
        for name, spec in _kprobe_defs(os.getpid()).items():
            kind, rest = spec.split(" ", 1)
            try:
                _append(os.path.join(self.root, "kprobe_events"), f"{kind}:pmemtrace/{name} {rest}\n")
            except OSError as exc:
                self.reason = f"cannot probe {rest.split()[0]}: {exc.strerror}"
                continue
            self.kprobes.append(name)
            self.inst.write(f"events/pmemtrace/{name}/enable", "1")

    def clear(self) -> None:
        self.inst.write("trace", "")

    def lines(self) -> list[str]:
        with open(os.path.join(self.inst.path, "trace"), errors="replace") as f:
            return [ln.rstrip("\n") for ln in f if not ln.startswith("#")]

    def close(self) -> None:
        self.inst.close()
        for name in self.kprobes:
            try:
                _append(os.path.join(self.root or "", "kprobe_events"), f"-:pmemtrace/{name}\n")
            except OSError:
                pass
        self.kprobes = []


def mark(root: str, inst_path: str, text: str) -> None:
    fd = os.open(os.path.join(inst_path, "trace_marker"), os.O_WRONLY)
    try:
        os.write(fd, (MARK + text).encode())
    finally:
        os.close(fd)


_MARK_RE = re.compile(r"tracing_mark_write: " + MARK + r"(?P<text>.*)$")
_KPROBE_RE = re.compile(r"\s(?P<event>(?:pmemtrace_\d+|pmt)_\w+): \((?P<where>[^)]*)\)(?P<args>(?:\s+\w+=\S+)*)\s*$")


def split_by_marker(lines: list[str]) -> dict[Optional[str], list[str]]:
    out: dict[Optional[str], list[str]] = {None: []}
    cur: Optional[str] = None
    for ln in lines:
        m = _MARK_RE.search(ln)
        if m:
            cur = m.group("text").strip()
            out[cur] = []
        else:
            out[cur].append(ln)
    return out


def kprobe_hit(line: str) -> Optional[tuple[str, dict[str, Any]]]:
    """One of our kprobe events (``pmt_*``, ``pmemtrace_<pid>_*``) in a
    trace line: (event, {arg: int, or the text where it is not a number})."""
    m = _KPROBE_RE.search(line)
    if not m:
        return None
    args: dict[str, Any] = {}
    for a in m.group("args").split():
        k, _, v = a.partition("=")
        try:
            args[k] = int(v, 0)
        except ValueError:
            args[k] = v
    return m.group("event"), args


def devdax_outcome(lines: list[str]) -> str:
    """What our kprobe hits say one access got: pte/pmd/pud, sigbus, or none."""
    outcome, pending = "none", []
    for ln in lines:
        hit = kprobe_hit(ln)
        if hit is None:
            continue
        event, args = hit
        if not event.endswith("_ret"):
            size = args.get("size", 0)
            pending.append(_SIZE_NAME.get(size, f"size{size}"))
        elif pending:
            size_name = pending.pop()
            ret = args.get("ret", 0)
            ret = ret if isinstance(ret, int) else 0
            if ret & NOPAGE:
                outcome = size_name
            elif ret & ~FALLBACK:
                outcome = "sigbus" if ret & SIGBUS else f"error:{ret:#x}"
    return outcome


def fs_dax_events(lines: list[str]) -> list:
    from ..live.parse import parse_trace_text

    return list(parse_trace_text(lines))


# ---------------------------------------------------------------------------
# the file


def lay_out(path: str, case: Case) -> list[dict[str, Any]]:
    """Create *path* as the case's file says; returns its real FIEMAP extents."""
    f = case.file
    assert f is not None
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        E.ftruncate(fd, f.size)
        for e in f.extents:
            E.fallocate(fd, e.logical, e.length)
        for e in f.extents:
            if not e.unwritten:
                n = min(e.length, max(0, f.size - e.logical))
                if n:
                    _write_zeros(fd, e.logical, n)
        # fallocate() grew i_size to the end of the last extent (the page
        # rounded size): the case's size again, which ext4's MAP_SYNC rule
        # for a write spanning EOF reads (lab, 6.12: a write to the last
        # page of a file of 3,070,017 bytes had no NEEDDSYNC at i_size
        # 3,072,000)
        E.ftruncate(fd, f.size)
        E.fsync(fd)
        return [x.to_json() if hasattr(x, "to_json") else x for x in _fiemap(fd)]
    finally:
        os.close(fd)


# what lay_out() writes: the data does not matter, only that the blocks are
# written; one zero buffer (calloc'd, never touched) instead of a pattern
# filled and copied per extent, which took a fifth of a case under TCG
_ZEROS = memoryview(bytes(4 << 20))


def _write_zeros(fd: int, pos: int, n: int) -> None:
    while n > 0:
        k = min(n, len(_ZEROS))
        os.pwrite(fd, _ZEROS[:k], pos)
        pos, n = pos + k, n - k


def _fiemap(fd: int) -> list[dict[str, Any]]:
    return [
        {"logical": e.logical, "physical": e.physical, "length": e.length, "unwritten": e.unwritten}
        for e in E.fiemap(fd)
    ]


# ---------------------------------------------------------------------------
# the child


@dataclass
class Observation:
    """What the kernel did with one case."""

    addresses: dict[str, int] = field(default_factory=dict)
    page_tables: set[int] = field(default_factory=set)
    shared_blocks: set[int] = field(default_factory=set)
    fork_tables: set[int] = field(default_factory=set)  # blocks whose page table a fork copied
    errnos: dict[int, Optional[int]] = field(default_factory=dict)  # access -> errno (None: ok)
    remapped: dict[int, int] = field(default_factory=dict)  # mremap access -> address (tried or got)
    child_sigbus: set[int] = field(default_factory=set)  # accesses the forked child died of (SIGBUS)
    skipped: dict[int, str] = field(default_factory=dict)  # access -> why the child did not touch
    sigbus_at: Optional[int] = None
    died: Optional[str] = None
    run: int = 0  # accesses carried out (or died in)
    lines: list[str] = field(default_factory=list)
    extents: list[dict[str, Any]] = field(default_factory=list)
    extents_after: list[dict[str, Any]] = field(default_factory=list)  # FIEMAP after the run
    file_stat: Any = None


def _guard_edges(addr: int, length: int) -> set[int]:
    """Settle the page tables of the partly covered first and last 2 MiB
    blocks of a mapping the kernel placed, before edge_page_tables() records
    them.  Such a block is shared with whatever lies beside the mapping --
    whatever this process maps next lands right below the newest mapping
    (a malloc'd buffer written and freed leaves an emptied table there, as
    Roots.read()'s 1 MiB buffer did: see own_maps()), or an anonymous
    mapping inherited from the supervisor (fork copies a page table even
    where none of its entries is present): an empty page table there is
    invisible to the record (lab, every kernel: a PTE fault with no PMD
    attempt where the record said the block had no table).  So every free
    gap in those blocks gets a
    read-only mapping, and one page of each anonymous neighbour there is
    read through /proc/self/mem (no signal if it went meanwhile): the
    block then surely has a page table, and nothing else of this process
    can land there later.  Returns the blocks where a read succeeded: each
    has a page table from then on, even if what was read goes away (the
    mapping keeps it: free_pgtables()), so the record adds them to what
    edge_page_tables() sees present."""
    lo, end = addr & ~(PMD - 1), addr + length
    hi = (end + PMD - 1) & ~(PMD - 1)
    todo = [(b, b + PMD) for b in {lo, hi - PMD} if b < addr or b + PMD > end]
    tabled: set[int] = set()
    fd = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        # an arena freed between reading the maps and guarding leaves a gap
        # (and an empty table): again until each block has a guard of ours
        for _ in range(4):
            if not todo:
                break
            taken = sorted(own_maps())
            left = []
            for b0, b1 in todo:
                touch, guarded, pos = [], False, b0
                for v0, v1, path in taken + [(b1, b1, "")]:
                    if v1 <= pos and v0 < b1:
                        continue
                    if min(v0, b1) > pos and _guard(pos, min(v0, b1)):
                        touch.append(pos)
                        guarded = True
                    if v0 < b1 and v1 > b0 and not path and not (addr <= v0 and v1 <= end):
                        touch.append(max(v0, b0))
                    pos = max(pos, v1)
                    if pos >= b1:
                        break
                for t in touch:
                    try:
                        os.pread(fd, 1, t)  # a read fault (FOLL_FORCE): the zero page, so a page table
                    except OSError:
                        continue  # gone meanwhile
                    tabled.add(b0)
                if not guarded:
                    left.append((b0, b1))
            todo = left
    finally:
        os.close(fd)
    return tabled


def fork_tables(blocks: set[int], ino: int) -> list[int]:
    """The 2 MiB blocks among *blocks* whose page table a fork copied to
    the child because of a VMA outside the case (called in the child, whose
    VMAs are the parent's at the fork).  dup_mmap() ->
    copy_page_range() copies a VMA's page tables only when
    vma_needs_copy(): it has an anon_vma, or is VM_PFNMAP/VM_MIXEDMAP (smaps
    ``pf``/``mm``); then copy_pte_range() allocates the child's table for
    every block of the VMA where the parent has one.  An anon_vma is made by
    the first write to private memory (do_anonymous_page(), wp_page_copy()),
    so anonymous pages (smaps ``Anonymous:``) show it; the executor's own
    guards and covers are only read (the zero page, no anon_vma) and never
    make the child a table (lab, every kernel: a child's first access in such
    a block takes the PMD attempt).  The case's own mappings (its file) are
    the model's to judge."""
    # line by line, as worker.own_maps(): a whole-file read mallocs a 1 MiB
    # buffer the kernel may place in a block of the case, leaving a table
    maps, _ = procmaps.iter_process_maps(Roots(), "self", names=("smaps",))
    out: set[int] = set()
    for v in maps or ():
        if ino and v.inode == ino:
            continue
        anon = v.fields.get("Anonymous", "0").split()[0] not in ("0", "")
        if not (anon or "pf" in v.vmflags or "mm" in v.vmflags):
            continue
        out.update(b for b in blocks if v.start < b + PMD and v.end > b)
    return sorted(out)


def _guard(start: int, stop: int) -> bool:
    try:
        E.mmap(-1, stop - start, prot=mmap.PROT_READ, shared=False, addr=start, noreplace=True)
    except OSError:
        return False  # taken meanwhile: edge_page_tables() sees what is there
    _OURS.append((start, stop))
    return True


def is_odirect(a: Any) -> bool:
    """A GUP the executor carries out as O_DIRECT against the partner file."""
    return a.op == "gup" and a.fast and not a.longterm and not a.populate


def without_odirect(case_json: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """*case_json* less its O_DIRECT GUPs, and how many: what runs when no
    partner directory was given.  Taken out before the run, not skipped in
    it, so that the model is asked about what the kernel did (an O_DIRECT
    GUP faults pages in that later accesses then find mapped)."""
    from ..model import parse_case

    accesses = parse_case(case_json).accesses
    keep = [raw for raw, a in zip(case_json["accesses"], accesses) if not is_odirect(a)]
    return {**case_json, "accesses": keep}, len(accesses) - len(keep)


def refuse_what_cannot_run(case: Case) -> None:
    """UsageError (one line) for a case the executor cannot carry out as
    the model reads it: a GUP longer than :data:`GUP_MAX` (cutting it
    short would compare the kernel with a model of another case)."""
    for i, a in enumerate(case.accesses):
        if a.op == "gup" and not a.populate and a.length > GUP_MAX:
            raise UsageError(
                f"access {i}: a GUP of {a.length >> 10} KiB; cases are carried out with GUPs of at most "
                f"{GUP_MAX >> 10} KiB: split it into several"
            )


def _gup(mp: Any, a: Any, partner_fd: Optional[int], buf: Any) -> Optional[str]:
    """Carry out GUP access *a* on mapping *mp* (see the module docstring);
    raises OSError with the errno of a refused call; returns why it was
    not carried out, or None."""
    if a.offset >= mp.length:
        return "outside"
    addr, n = mp.addr + a.offset, a.length
    if a.longterm:
        E._check(E.lib.pmt_longterm_pin(addr, n), "longterm-pin")
    elif a.fast:
        assert partner_fd is not None, "execute() opens the partner for every O_DIRECT GUP"
        if a.write:
            E.pread_into(partner_fd, addr, n, 0)
        else:
            E.pwrite_from(partner_fd, addr, n, 0)
    elif a.write:
        E.process_vm_write(addr, buf.addr, n)
    else:
        E.process_vm_read(buf.addr, addr, n)
    return None


def _child(
    case: Case, fd: int, kernel_placed: set[str], out: int, inst_path: str, root: str, partner_fd: Optional[int] = None
) -> None:
    """Make the mappings and do the accesses; one JSON line per report."""

    def send(**msg: Any) -> None:
        os.write(out, (json.dumps(msg) + "\n").encode())

    # process_vm's local buffer, made and written before the case's holds
    # so that it lies in none of their blocks
    buf = None
    if any(a.op == "gup" and not a.fast and not a.longterm for a in case.accesses):
        buf = E.mmap(-1, GUP_MAX, prot=mmap.PROT_READ | mmap.PROT_WRITE, shared=False)
        buf.touch(0, GUP_MAX, PAGE, write=True)
    maps: dict[str, Any] = {}
    addr: dict[str, Optional[int]] = {}
    holds = []
    recorded: set[int] = set()  # the edge blocks recorded (tables, shared)
    _OURS.clear()
    align = max(PMD, case.device.align or 0)
    for m in case.mappings:
        if m.id in kernel_placed:
            addr[m.id] = None
            continue
        # the case's address colour (modulo 1 GiB) in a PROT_NONE hold with a
        # whole 2 MiB (or the align) beyond each end: no other mapping of this
        # process shares its first or last block
        colour = m.start % PUD if align >= PUD else m.start % PMD
        hold = E.mmap(-1, m.length + colour + 2 * PUD + 2 * align, prot=PROT_NONE, shared=False)
        base = (hold.addr + align + (PUD if align >= PUD else PMD) - 1) & ~((PUD if align >= PUD else PMD) - 1)
        addr[m.id] = base + colour
        holds.append(hold)

    def do_mmap(mid: str) -> None:
        m = next(x for x in case.mappings if x.id == mid)
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if m.writable else 0)
        a = addr[mid]
        mp = E.mmap(fd, m.length, offset=m.offset, prot=prot, shared=m.shared, sync=m.sync, addr=a, fixed=a is not None)
        maps[mid] = mp
        tabled: set[int] = set()
        if a is None:
            # guard first: whatever the process maps next lands right below
            # the new mapping, in its first block (a page table the record
            # would miss once it is gone)
            addr[mid] = mp.addr
            tabled = _guard_edges(mp.addr, mp.length)
        tables = sorted(tabled | set(edge_page_tables(mp.addr, mp.length)))
        # the partly covered edge blocks: the reservation (or the guard, or
        # whatever already lay there) shares them for the whole case
        shared = [b for b in {mp.addr & ~(PMD - 1), (mp.end - 1) & ~(PMD - 1)} if b < mp.addr or b + PMD > mp.end]
        recorded.update(tables, shared)
        send(mapped=mid, addr=mp.addr, page_tables=tables, shared_blocks=sorted(shared))
        if m.nohugepage:
            mp.madvise("nohugepage")

    for m in case.mappings:
        if m.mapped:
            try:
                do_mmap(m.id)
            except OSError as exc:
                send(setup=m.id, errno=exc.errno)
    byid = {m.id: m for m in case.mappings}
    moved_by_kernel: set[str] = set()

    def mid_placed_by_kernel(mid: str) -> bool:
        return mid in kernel_placed or mid in moved_by_kernel

    kid: Optional[_Kid] = None
    for i, a in enumerate(case.accesses):
        kid_sigbus = False
        mark(root, inst_path, f"access {i}")
        send(begin=i)
        err: Optional[int] = None
        skip = None
        try:
            if a.op == "fork":
                if kid is None:
                    edges = {b for mp in maps.values() if mp is not None for b in _edge_blocks(mp.addr, mp.end)}
                    kid = _Kid(case, maps, recorded | edges, os.fstat(fd).st_ino)
                    send(fork_tables=kid.fork_tables)
            elif a.op == "exit":
                if kid is not None:
                    kid.end()
                    kid = None
            elif a.child:
                if kid is None:
                    skip = "no-child"
                else:
                    err, skip = kid.do(i)
                    if skip == "sigbus":  # the child died of it: data, like the parent's SIGBUS
                        skip, kid_sigbus = None, True
                        kid = None
            elif a.op == "pwrite":
                os.pwrite(fd, E.pattern_bytes(0x7777, a.offset, a.length), a.offset)
            elif a.op == "mmap":
                if maps.get(a.mapping or "") is None:
                    do_mmap(a.mapping or "")
            else:
                mp = maps.get(a.mapping or "")
                m = byid[a.mapping or ""]
                if mp is None:
                    if a.op != "munmap":  # munmap(2) of nothing mapped succeeds
                        skip = "not-mapped"
                elif a.op == "munmap" and a.length:
                    _munmap_part(mp, a, send)
                elif a.op == "mremap":
                    if _mremap(mp, a, i, mid_placed_by_kernel(m.id), send, align):
                        moved_by_kernel.add(m.id)
                elif a.op == "munmap":
                    mp.unmap()
                    maps[m.id] = None
                    # cover the hole again so nothing else lands there (the
                    # next mmap of this mapping is MAP_FIXED over it)
                    _cover(mp.addr, mp.addr + m.length)
                elif a.op == "madvise":
                    # not Mapping.madvise(): its range check would refuse
                    # what a shrink left beyond the mapping (the kernel says)
                    advice = E.CONSTANTS["MADV_" + (a.advice or "").upper()]
                    ln = a.length or (mp.length - a.offset)
                    E._check(E.lib.pmt_madvise(mp.addr + a.offset, ln, advice), "madvise")
                elif a.op in ("read", "write"):
                    if a.offset >= mp.length:
                        skip = "outside"
                    elif a.op == "write" and not m.writable:
                        skip = "write-readonly"
                    else:
                        mp.touch(a.offset & ~(PAGE - 1), PAGE, PAGE, count=1, write=a.op == "write")
                elif a.op == "gup" and not a.populate:
                    skip = _gup(mp, a, partner_fd, buf)
                else:
                    skip = f"op {a.op} is not carried out"
        except OSError as exc:
            err = exc.errno
        send(done=i, errno=err, skip=skip, sigbus=kid_sigbus)
    if kid is not None:
        kid.end()
    mark(root, inst_path, "end")


class _Kid:
    """The child of a ``fork`` access: a forked process that makes the
    accesses marked ``child`` in its copy of the address space, one at a
    time as the parent asks (the parent writes the trace marker first and
    waits for the answer, so events stay in order)."""

    def __init__(self, case: Case, maps: dict[str, Any], blocks: set[int], ino: int) -> None:
        cmd_r, cmd_w = os.pipe()
        rep_r, rep_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(cmd_w)
                os.close(rep_r)
                # first, the VMAs the child got: exactly the parent's at the
                # fork (read in the parent, they raced with Python freeing
                # an arena in the block between the read and the fork: lab,
                # 6.1 seed 32 cases 66 and 563)
                os.write(rep_w, (json.dumps(fork_tables(blocks, ino)) + "\n").encode())
                with os.fdopen(cmd_r) as commands:
                    for line in commands:
                        os.write(rep_w, (json.dumps(_kid_access(case, maps, int(line))) + "\n").encode())
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(cmd_r)
        os.close(rep_w)
        self.pid, self.cmd = pid, cmd_w
        self.replies = os.fdopen(rep_r)
        line = self.replies.readline()
        #: the blocks whose page table the fork copied (see fork_tables())
        self.fork_tables: list[int] = json.loads(line) if line else []

    def do(self, i: int) -> tuple[Optional[int], Optional[str]]:
        os.write(self.cmd, f"{i}\n".encode())
        line = self.replies.readline()
        if not line:
            os.close(self.cmd)
            self.replies.close()
            _, status = os.waitpid(self.pid, 0)
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGBUS:
                return None, "sigbus"
            return None, "child-died"
        rep = json.loads(line)
        return rep.get("errno"), rep.get("skip")

    def end(self) -> None:
        os.close(self.cmd)
        self.replies.close()
        os.waitpid(self.pid, 0)


def _kid_access(case: Case, maps: dict[str, Any], i: int) -> dict[str, Any]:
    """Access *i* (a read or write) in the forked child."""
    a = case.accesses[i]
    m = next(x for x in case.mappings if x.id == a.mapping)
    mp = maps.get(a.mapping or "")
    if mp is None:
        return {"skip": "not-mapped"}
    if a.offset >= mp.length:
        return {"skip": "outside"}
    if a.op == "write" and not m.writable:
        return {"skip": "write-readonly"}
    try:
        mp.touch(a.offset & ~(PAGE - 1), PAGE, PAGE, count=1, write=a.op == "write")
    except OSError as exc:
        return {"errno": exc.errno}
    return {}


def _edge_blocks(start: int, end: int) -> list[int]:
    """The 2 MiB blocks at the ends of [start, end) it covers only in part."""
    out = set()
    if start % PMD:
        out.add(start & ~(PMD - 1))
    if end % PMD:
        out.add(end & ~(PMD - 1))
    return sorted(out)


#: the ranges the case's process mapped for itself: covers (PROT_NONE over
#: what a munmap or mremap emptied) and edge guards; per case: each case
#: runs in a fresh fork
_OURS: list[tuple[int, int]] = []


def _cover(start: int, end: int) -> None:
    """PROT_NONE over [start, end), so that nothing of this process lands
    in a range a munmap or mremap emptied (the next mmap of a mapping is
    MAP_FIXED over it)."""
    if end > start:
        E.mmap(-1, end - start, prot=PROT_NONE, shared=False, addr=start, fixed=True)
        _OURS.append((start, end))


def _punch_ours(start: int, end: int) -> list[tuple[int, int]]:
    """Unmap what is still a cover or guard of ours in [start, end) (an
    anonymous PROT_NONE or read-only VMA inside a range we mapped): the room
    a grow in place needs, as the model's process makes it (covers:
    remap.drop_covers(); guards the model does not see).  Never a mapping
    of the case (lab, 5.10..6.12 seed 32 case 1731: unmapping the whole
    rest of the edge block beyond a kernel-placed mapping's end took the
    head of the next mapping, and the forked child died touching it).
    Returns the ranges unmapped."""
    maps, _ = procmaps.iter_process_maps(Roots(), "self", names=("maps",))  # line by line: see fork_tables()
    out = []
    for v in maps or ():
        if v.path or v.perms[:3] not in ("---", "r--") or v.end <= start or v.start >= end:
            continue
        lo, hi = max(v.start, start), min(v.end, end)
        for c0, c1 in _OURS:
            a, b = max(lo, c0), min(hi, c1)
            if a < b and E.lib.pmt_munmap(a, b - a) == 0:
                out.append((a, b))
    return out


def _munmap_part(mp: Any, a: Any, send: Any) -> None:
    """munmap of [offset, offset+length) of mapping *mp* (offsets from where
    it is now), then the range covered again."""
    start = mp.addr + a.offset
    end = start + ((a.length + PAGE - 1) & ~(PAGE - 1))
    E._check(E.lib.pmt_munmap(start, end - start), "munmap", f"{start:#x}+{end - start:#x}")
    if a.cover:
        _cover(start, end)


def _mremap(mp: Any, a: Any, i: int, by_kernel: bool, send: Any, align: int) -> bool:
    """mremap of the whole mapping *mp* as access *a* says.  A fixed target
    is placed in a new PROT_NONE hold with the case's 2 MiB colour; a grow
    in place gets room by unmapping the hold beyond the end (what the model
    sees as free); the ranges the call empties are covered again.  True
    when the kernel moved the mapping to a place of its choosing."""
    old, old_len = mp.addr, mp.length
    new_len = (a.length + PAGE - 1) & ~(PAGE - 1)
    flags = (E.CONSTANTS["MREMAP_MAYMOVE"] if a.maymove else 0) | (E.CONSTANTS["MREMAP_FIXED"] if a.fixed else 0)
    target = 0
    punched = (0, 0)
    covers: list[tuple[int, int]] = []
    if a.fixed:
        colour = (a.new_start or 0) % PMD
        hold = E.mmap(-1, new_len + colour + 2 * PUD + 2 * align, prot=PROT_NONE, shared=False)
        target = ((hold.addr + align + PMD - 1) & ~(PMD - 1)) + colour
        send(remapped=i, addr=target)  # the target tried, even if refused
    elif new_len > old_len:
        end = old + old_len
        stop = old + new_len
        if by_kernel:  # only our edge guard and covers beyond the end are ours
            covers = _punch_ours(end, stop)
            stop = end
        if stop > end:
            E._check(E.lib.pmt_munmap(end, stop - end), "munmap", "room to grow")
            punched = (end, stop)
    out = E.ffi.new("uint64_t *")
    rc = E.lib.pmt_mremap(old, old_len, new_len, flags, target, out)
    if rc < 0:
        _cover(*punched)  # the hold again
        for c in covers:
            _cover(*c)
        if a.fixed:
            _cover(target, target + new_len)  # the hold again (mremap_to() unmapped it first)
            if a.cover and new_len < old_len:
                _cover(old + new_len, old + old_len)  # ... and the tail before it failed
        E._check(rc, "mremap")
    new = int(out[0])
    mp.addr, mp.length = new, new_len
    # the new range's partly covered edge blocks are shared all along with
    # the hold (fixed), the guard (the kernel placed it) or the hold beyond
    # a grown end, as the edges of a mapping made by mmap (a shrunk end
    # shares its block with the cover, which the case says itself)
    shared = set(_edge_blocks(new, new + new_len)) if new != old or new_len > old_len else set()
    tables: set[int] = set()
    if new != old:
        if a.cover:
            _cover(old, old + old_len)
        if not a.fixed:
            # the guard's page tables, as after an mmap the kernel placed
            tables = _guard_edges(new, new_len) | set(edge_page_tables(new, new_len))
    elif new_len < old_len:
        if a.cover:
            _cover(new + new_len, old + old_len)
    elif punched[1] > old + new_len:
        _cover(old + new_len, punched[1])  # the rest of the hold
    send(remapped=i, addr=new, shared_blocks=sorted(shared), page_tables=sorted(tables))
    return new != old and not a.fixed  # placed by the kernel


def _open_partner(directory: str) -> tuple[int, str]:
    """An O_DIRECT file of GUP_MAX written bytes in *directory* (a non-DAX
    filesystem): (fd, path)."""
    path = os.path.join(directory, f".pmemtrace-partner-{os.getpid()}.dat")
    try:
        with open(path, "wb") as f:
            f.write(E.pattern_bytes(0x5A5A, 0, GUP_MAX))
            os.fsync(f.fileno())
        return os.open(path, os.O_RDWR | os.O_DIRECT | os.O_CLOEXEC), path
    except OSError as exc:
        if os.path.exists(path):
            os.unlink(path)
        raise UsageError(
            f"--dio-dir {directory}: cannot use a file there with O_DIRECT ({exc.strerror}); "
            "give a directory on a non-DAX block filesystem (ext4, xfs)"
        ) from None


def execute(
    case: Case,
    trace: KernelTrace,
    path: str,
    kernel_placed: set[str] = frozenset(),  # type: ignore[assignment]
    partner: Optional[str] = None,
) -> Observation:
    """Carry *case* out on *path* (a file to create on a DAX filesystem, or
    a device-dax node) under *trace*; *partner*: a directory on a non-DAX
    filesystem for O_DIRECT GUPs.  Returns the :class:`Observation`."""
    obs = Observation()
    fsdax = case.device.mode == "fsdax"
    refuse_what_cannot_run(case)
    partner_fd, partner_path = None, None
    if any(is_odirect(a) for a in case.accesses):
        if not partner:
            raise UsageError("the case has O_DIRECT GUPs and no partner directory (without_odirect() first)")
        partner_fd, partner_path = _open_partner(partner)
    try:
        if fsdax:
            obs.extents = lay_out(path, case)
        _execute(case, trace, path, kernel_placed, partner_fd, obs)
    finally:
        if partner_fd is not None:
            os.close(partner_fd)
        if partner_path:
            os.unlink(partner_path)
    return obs


def _execute(
    case: Case, trace: KernelTrace, path: str, kernel_placed: set[str], partner_fd: Optional[int], obs: Observation
) -> None:
    fsdax = case.device.mode == "fsdax"
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        obs.file_stat = os.fstat(fd)
        trace.clear()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # ---- the child
            code = 0
            try:
                os.close(r)
                import faulthandler  # an expected SIGBUS is data, not a crash to dump

                faulthandler.disable()
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _child(case, fd, set(kernel_placed), w, trace.inst.path, trace.root or "", partner_fd)
            except BaseException as exc:  # reported, never raised out of the fork
                try:
                    os.write(w, (json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
                except OSError:
                    pass
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        current = None
        with os.fdopen(r) as rf:
            for line in rf:
                msg = json.loads(line)
                if "mapped" in msg:
                    obs.addresses[msg["mapped"]] = msg["addr"]
                    obs.page_tables.update(msg.get("page_tables") or ())
                    obs.shared_blocks.update(msg.get("shared_blocks") or ())
                elif "remapped" in msg:
                    obs.remapped[msg["remapped"]] = msg["addr"]
                    obs.shared_blocks.update(msg.get("shared_blocks") or ())
                    obs.page_tables.update(msg.get("page_tables") or ())
                elif "fork_tables" in msg:
                    obs.fork_tables.update(msg["fork_tables"])
                elif "setup" in msg:
                    obs.skipped[-1] = f"mmap of {msg['setup']} refused: errno {msg['errno']}"
                elif "begin" in msg:
                    current = msg["begin"]
                elif "done" in msg:
                    i = msg["done"]
                    obs.errnos[i] = msg["errno"]
                    if msg.get("sigbus"):
                        obs.child_sigbus.add(i)
                    if msg.get("skip"):
                        obs.skipped[i] = msg["skip"]
                    obs.run = i + 1
                    current = None
                elif "error" in msg:
                    obs.died = msg["error"]
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status)).name
            if sig == "SIGBUS" and current is not None:
                obs.sigbus_at = current
                obs.run = current + 1
            else:
                obs.died = obs.died or f"the child died of {sig}" + (f" in access {current}" if current else "")
        obs.lines = trace.lines()
        if fsdax:  # where the filesystem put the blocks the run allocated
            obs.extents_after = _fiemap(fd)
    finally:
        os.close(fd)


def real_case(case: Case, obs: Observation, device: Any, release: str) -> dict[str, Any]:
    """The case the kernel was really given: the real device geometry,
    FIEMAP extents, mapping addresses and page tables."""
    b = CaseBuilder(device, kernel=release, name=case.name, notes=case.notes)
    if case.file is not None:
        st = obs.file_stat
        b.file = File(
            size=case.file.size,
            ino=st.st_ino,
            fs=case.file.fs,
            extents=dax_extents(obs.extents),
            allocated=allocated_extents(obs.extents, obs.extents_after),
        )
    for m in case.mappings:
        b.mapping(
            m.id,
            obs.addresses.get(m.id, m.start),
            m.length,
            offset=m.offset,
            shared=m.shared,
            sync=m.sync,
            writable=m.writable,
            mapped=m.mapped,
            nohugepage=m.nohugepage,
        )
    b.accesses = [
        msgspec.structs.replace(a, new_start=obs.remapped[i]) if i in obs.remapped else a
        for i, a in enumerate(case.accesses)
    ]
    b.page_tables = set(obs.page_tables) | set(case.page_tables)
    b.shared_blocks = set(obs.shared_blocks) | set(case.shared_blocks)
    b.fork_tables = set(obs.fork_tables) | set(case.fork_tables)
    b.thp_disable = case.thp_disable
    return case_to_json(b.build())
